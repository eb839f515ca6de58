/* Helpers: error messages, full-length file I/O, CRC-32C, GUIDs, UTF-16, paths. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

int disk_err(struct hvp_disk *d, int e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, sizeof d->err, fmt, ap);
    va_end(ap);
    return -e;
}

int disk_problem(struct hvp_disk *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!d->checking) {
        snprintf(d->err, sizeof d->err, "%s", msg);
        return -EINVAL;
    }
    d->nproblems++;
    if (d->problem_cb) d->problem_cb(d->problem_ctx, msg);
    return 0;
}

int disk_pread(struct hvp_disk *d, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(d->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return disk_err(d, errno, "read at offset %llu: %s", (unsigned long long)off,
                            strerror(errno));
        }
        if (n == 0)
            return disk_err(d, EIO, "file ends early (read at offset %llu)",
                            (unsigned long long)off);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int disk_pwrite(struct hvp_disk *d, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    if (d->rdonly) return disk_err(d, EBADF, "opened read-only");
    while (len) {
        ssize_t n = pwrite(d->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return disk_err(d, errno, "write at offset %llu: %s", (unsigned long long)off,
                            strerror(errno));
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int disk_sync(struct hvp_disk *d)
{
    if (d->rdonly) return 0;
    if (fdatasync(d->fd) < 0) return disk_err(d, errno, "flush: %s", strerror(errno));
    return 0;
}

int disk_truncate(struct hvp_disk *d, uint64_t len)
{
    if (d->rdonly) return disk_err(d, EBADF, "opened read-only");
    if (ftruncate(d->fd, (off_t)len) < 0)
        return disk_err(d, errno, "cannot extend the file: %s", strerror(errno));
    return 0;
}

/* CRC-32C: the SSE4.2 instruction where the CPU has it, else bit by bit (the
 * checksummed structures are metadata: at most a few hundred KiB per open). */
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hw(crc, p, len);
#endif
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

void disk_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0) {
            /* Fall back to something unique enough. */
            for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(rand() ^ (getpid() >> (i % 8)));
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

void uuid_generate_v4(uint8_t out[16])
{
    disk_random(out, 16);
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
}

void guid_from_ms(uint8_t out[16], const uint8_t ms[16])
{
    uint8_t t[16];
    t[0] = ms[3], t[1] = ms[2], t[2] = ms[1], t[3] = ms[0];
    t[4] = ms[5], t[5] = ms[4], t[6] = ms[7], t[7] = ms[6];
    memcpy(t + 8, ms + 8, 8);
    memcpy(out, t, 16);
}

void guid_to_ms(uint8_t ms[16], const uint8_t in[16])
{
    guid_from_ms(ms, in); /* the swap is its own inverse */
}

int guid_parse(const char *s, uint8_t out[16])
{
    size_t n = strlen(s);
    if (n == 38 && s[0] == '{' && s[37] == '}') s++, n = 36;
    if (n != 36) return -1;
    int k = 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return -1;
            continue;
        }
        int hi, lo;
        char c1 = s[i], c2 = s[i + 1];
        hi = c1 >= '0' && c1 <= '9'   ? c1 - '0'
             : c1 >= 'a' && c1 <= 'f' ? c1 - 'a' + 10
             : c1 >= 'A' && c1 <= 'F' ? c1 - 'A' + 10
                                      : -1;
        lo = c2 >= '0' && c2 <= '9'   ? c2 - '0'
             : c2 >= 'a' && c2 <= 'f' ? c2 - 'a' + 10
             : c2 >= 'A' && c2 <= 'F' ? c2 - 'A' + 10
                                      : -1;
        if (hi < 0 || lo < 0) return -1;
        out[k++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    return 0;
}

void guid_format(char out[39], const uint8_t g[16])
{
    snprintf(out, 39, "{%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
             g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

bool buf_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len && ((uintptr_t)p & 7)) {
        if (*p) return false;
        p++, len--;
    }
    const uint64_t *q = (const uint64_t *)(const void *)p;
    while (len >= 64) {
        if (q[0] | q[1] | q[2] | q[3] | q[4] | q[5] | q[6] | q[7]) return false;
        q += 8;
        len -= 64;
    }
    p = (const uint8_t *)q;
    while (len--)
        if (*p++) return false;
    return true;
}

ssize_t utf8_to_utf16(const char *s, uint8_t *out, size_t outlen, bool le)
{
    size_t o = 0;
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        uint32_t c;
        if (*p < 0x80)
            c = *p++;
        else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80)
            c = (uint32_t)(*p & 0x1f) << 6 | (p[1] & 0x3f), p += 2;
        else if ((*p & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80)
            c = (uint32_t)(*p & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f), p += 3;
        else if ((*p & 0xf8) == 0xf0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
                 (p[3] & 0xc0) == 0x80)
            c = (uint32_t)(*p & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f),
            p += 4;
        else
            return -1;
        uint16_t u[2];
        int nu = 1;
        if (c >= 0x10000) {
            c -= 0x10000;
            u[0] = (uint16_t)(0xd800 | (c >> 10));
            u[1] = (uint16_t)(0xdc00 | (c & 0x3ff));
            nu = 2;
        } else {
            u[0] = (uint16_t)c;
        }
        for (int i = 0; i < nu; i++) {
            if (o + 2 > outlen) return -1;
            if (le)
                wr_le16(out + o, u[i]);
            else
                wr_be16(out + o, u[i]);
            o += 2;
        }
    }
    return (ssize_t)o;
}

int utf16_to_utf8(const uint8_t *in, size_t inlen, bool le, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i + 1 < inlen; i += 2) {
        uint32_t c = le ? rd_le16(in + i) : rd_be16(in + i);
        if (c == 0) break;
        if (c >= 0xd800 && c < 0xdc00 && i + 3 < inlen) {
            uint32_t c2 = le ? rd_le16(in + i + 2) : rd_be16(in + i + 2);
            if (c2 >= 0xdc00 && c2 < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (c2 - 0xdc00);
                i += 2;
            }
        }
        char tmp[4];
        int n;
        if (c < 0x80)
            tmp[0] = (char)c, n = 1;
        else if (c < 0x800)
            tmp[0] = (char)(0xc0 | c >> 6), tmp[1] = (char)(0x80 | (c & 0x3f)), n = 2;
        else if (c < 0x10000)
            tmp[0] = (char)(0xe0 | c >> 12), tmp[1] = (char)(0x80 | ((c >> 6) & 0x3f)),
            tmp[2] = (char)(0x80 | (c & 0x3f)), n = 3;
        else
            tmp[0] = (char)(0xf0 | c >> 18), tmp[1] = (char)(0x80 | ((c >> 12) & 0x3f)),
            tmp[2] = (char)(0x80 | ((c >> 6) & 0x3f)), tmp[3] = (char)(0x80 | (c & 0x3f)), n = 4;
        if (o + (size_t)n + 1 > outlen) return -1;
        memcpy(out + o, tmp, (size_t)n);
        o += (size_t)n;
    }
    if (o + 1 > outlen) return -1;
    out[o] = 0;
    return (int)o;
}

char *path_resolve_rel(const char *child_path, const char *rel)
{
    char *r = strdup(rel);
    if (!r) return NULL;
    for (char *p = r; *p; p++)
        if (*p == '\\') *p = '/';
    const char *q = r;
    while (q[0] == '.' && q[1] == '/')
        q += 2;
    if (q[0] == '/') {
        char *res = strdup(q);
        free(r);
        return res;
    }
    const char *slash = strrchr(child_path, '/');
    size_t dl = slash ? (size_t)(slash - child_path + 1) : 0;
    char *res = malloc(dl + strlen(q) + 1);
    if (res) {
        memcpy(res, child_path, dl);
        strcpy(res + dl, q);
    }
    free(r);
    return res;
}

/* Both arguments are absolute, normalized paths (realpath). */
char *path_relative(const char *from, const char *target)
{
    /* common directory prefix */
    size_t common = 0;
    for (size_t i = 0; from[i] && from[i] == target[i]; i++)
        if (from[i] == '/') common = i + 1;
    int ups = 0;
    for (const char *p = from + common; *p; p++)
        if (*p == '/') ups++;
    size_t n = (size_t)ups * 3 + strlen(target + common) + 3;
    char *res = malloc(n);
    if (!res) return NULL;
    res[0] = 0;
    if (!ups) strcpy(res, "./");
    for (int i = 0; i < ups; i++)
        strcat(res, "../");
    strcat(res, target + common);
    return res;
}
