/* hvp dis: disassemble a raw file of x86 code, one instruction per line:
 *
 *   00000000: 48 89 e5                                      mov rbp, rsp
 *
 * The offset is the file offset (also the address branch targets are
 * computed from). The hex column is padded to the longest legal instruction
 * so that mnemonics line up. An undecodable byte, or an instruction cut off
 * by the end of the range, prints as "(bad)" with length 1, and decoding goes
 * on with the next byte.
 */
#include "cli.h"
#include "hvp/x86.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEX_COL (HVP_X86_MAX_INSN_LEN * 3 - 1)

static void usage(FILE *f)
{
    fprintf(f, "usage: hvp dis [--bits 16|32|64] [--start OFFSET] [--length N] FILE\n"
               "\n"
               "Disassembles FILE, raw x86 code, one instruction per line:\n"
               "  OFFSET: BYTES  MNEMONIC OPERANDS\n"
               "\n"
               "  --bits 16|32|64   code size to decode for (default 64)\n"
               "  --start OFFSET    first byte to decode (default 0)\n"
               "  --length N        bytes to decode (default: to the end of FILE)\n"
               "  -h, --help        this text\n"
               "\n"
               "OFFSET and N are decimal or 0x-hex. Undecodable bytes print as (bad).\n");
}

/* Output buffer: one write(2)-sized block at a time through stdio. */
struct line_out {
    char *buf;
    size_t len, cap;
};

static int flush_out(struct line_out *lo)
{
    if (lo->len && fwrite(lo->buf, 1, lo->len, stdout) != lo->len) return -1;
    lo->len = 0;
    return 0;
}

/* Decodes code[0..n), the bytes at file offset base. */
static int disassemble(const uint8_t *code, uint64_t n, uint64_t base, unsigned bits)
{
    static const char hexd[] = "0123456789abcdef";
    struct line_out lo = {NULL, 0, 1 << 16};
    lo.buf = malloc(lo.cap);
    if (!lo.buf) {
        hvp_cli_error("dis", "out of memory");
        return 2;
    }
    unsigned offw = base + n > 0xffffffffu ? 16 : 8;
    struct hvp_x86_insn insn;
    char text[256];
    for (uint64_t pos = 0; pos < n;) {
        uint64_t avail = n - pos, addr = base + pos;
        int len = hvp_x86_decode(&insn, code + pos, avail, bits);
        int tlen;
        if (len <= 0 || len > HVP_X86_MAX_INSN_LEN || (uint64_t)len > avail) {
            len = 1;
            memcpy(text, "(bad)", 6);
            tlen = 5;
        } else {
            tlen = hvp_x86_format(&insn, addr, text, sizeof(text));
            if (tlen >= (int)sizeof(text)) tlen = sizeof(text) - 1;
        }
        if (lo.cap - lo.len < 16 + 2 + HEX_COL + 2 + (size_t)tlen + 1 && flush_out(&lo)) break;
        char *p = lo.buf + lo.len;
        for (int s = (int)offw * 4 - 4; s >= 0; s -= 4)
            *p++ = hexd[(addr >> s) & 15];
        *p++ = ':';
        *p++ = ' ';
        char *col = p;
        for (int i = 0; i < len; i++) {
            if (i) *p++ = ' ';
            *p++ = hexd[code[pos + i] >> 4];
            *p++ = hexd[code[pos + i] & 15];
        }
        while (p < col + HEX_COL)
            *p++ = ' ';
        *p++ = ' ';
        *p++ = ' ';
        memcpy(p, text, (size_t)tlen);
        p += tlen;
        *p++ = '\n';
        lo.len = (size_t)(p - lo.buf);
        pos += (unsigned)len;
    }
    int rc = 0;
    if (flush_out(&lo) || fflush(stdout) || ferror(stdout)) {
        hvp_cli_error("dis", "write error: %s", strerror(errno));
        rc = 2;
    }
    free(lo.buf);
    return rc;
}

/* "--name VALUE" or "--name=VALUE": returns the value, or NULL when argv[*i]
 * is not this option. Sets *missing when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n)) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n]) return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int hvp_cmd_dis(int argc, char **argv)
{
    unsigned bits = 64;
    uint64_t start = 0, length = 0;
    int have_length = 0;
    const char *file = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if ((v = opt_value(argc, argv, &i, "--bits", &missing))) {
            if (strcmp(v, "16") && strcmp(v, "32") && strcmp(v, "64")) {
                hvp_cli_error("dis", "--bits must be 16, 32 or 64, not '%s'", v);
                return 2;
            }
            bits = (unsigned)atoi(v);
        } else if ((v = opt_value(argc, argv, &i, "--start", &missing))) {
            if (hvp_cli_parse_u64(v, &start)) {
                hvp_cli_error("dis", "--start: not an offset: '%s'", v);
                return 2;
            }
        } else if ((v = opt_value(argc, argv, &i, "--length", &missing))) {
            if (hvp_cli_parse_u64(v, &length)) {
                hvp_cli_error("dis", "--length: not a byte count: '%s'", v);
                return 2;
            }
            have_length = 1;
        } else if (missing) {
            hvp_cli_error("dis", "%s needs a value", a);
            return 2;
        } else if (a[0] == '-' && a[1]) {
            hvp_cli_error("dis", "unknown option '%s' (see 'hvp dis --help')", a);
            return 2;
        } else if (file) {
            hvp_cli_error("dis", "more than one FILE ('%s', '%s')", file, a);
            return 2;
        } else {
            file = a;
        }
    }
    if (!file) {
        hvp_cli_error("dis", "missing FILE (see 'hvp dis --help')");
        return 2;
    }

    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        hvp_cli_error(file, "%s", strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        hvp_cli_error(file, "%s", strerror(errno));
        close(fd);
        return 2;
    }
    if (S_ISDIR(st.st_mode)) {
        hvp_cli_error(file, "%s", strerror(EISDIR));
        close(fd);
        return 2;
    }
    if (!S_ISREG(st.st_mode)) {
        hvp_cli_error(file, "not a regular file");
        close(fd);
        return 2;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (start > size) {
        hvp_cli_error("dis", "--start 0x%" PRIx64 " is past the end of %s (0x%" PRIx64 " bytes)",
                      start, file, size);
        close(fd);
        return 2;
    }
    uint64_t end = have_length && length < size - start ? start + length : size;
    if (end == start) {
        close(fd);
        return 0;
    }
    /* Map from the page holding `start` to `end` only. */
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t map_off = start & ~(page - 1);
    size_t map_len = (size_t)(end - map_off);
    void *map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)map_off);
    if (map == MAP_FAILED) {
        hvp_cli_error(file, "%s", strerror(errno));
        close(fd);
        return 2;
    }
    close(fd);
    madvise(map, map_len, MADV_SEQUENTIAL);
    int rc = disassemble((const uint8_t *)map + (start - map_off), end - start, start, bits);
    munmap(map, map_len);
    return rc;
}
