/* The format-independent layer: probe, open (with the parent chain and the
 * writer lock), byte-granular I/O over the drivers' sector maps, create. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CHAIN 64

const char *hvp_disk_format_name(enum hvp_disk_format f)
{
    switch (f) {
    case HVP_DISK_FMT_RAW: return "raw";
    case HVP_DISK_FMT_VHD: return "vhd";
    case HVP_DISK_FMT_VHDX: return "vhdx";
    default: return "auto";
    }
}

const char *hvp_disk_type_name(enum hvp_disk_type t)
{
    switch (t) {
    case HVP_DISK_TYPE_FIXED: return "fixed";
    case HVP_DISK_TYPE_DYNAMIC: return "dynamic";
    case HVP_DISK_TYPE_DIFF: return "differencing";
    default: return "default";
    }
}

int hvp_disk_parse_format(const char *s, enum hvp_disk_format *out)
{
    if (!strcasecmp(s, "raw"))
        *out = HVP_DISK_FMT_RAW;
    else if (!strcasecmp(s, "vhd") || !strcasecmp(s, "vpc"))
        *out = HVP_DISK_FMT_VHD;
    else if (!strcasecmp(s, "vhdx"))
        *out = HVP_DISK_FMT_VHDX;
    else
        return -EINVAL;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static void disk_free(struct hvp_disk *d)
{
    if (!d) return;
    if (d->fd >= 0) close(d->fd);
    for (int i = 0; i < d->pref.ncand; i++)
        free(d->pref.cand[i]);
    free(d->pref.name);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d);
}

static int probe(struct hvp_disk *d, enum hvp_disk_format *fmt)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0) return disk_err(d, errno, "%s", strerror(errno));
    uint8_t sig[8] = {0};
    uint64_t sz = (uint64_t)st.st_size;
    if (sz >= 8) {
        int r = disk_pread(d, sig, 8, 0);
        if (r) return r;
    }
    if (!memcmp(sig, "vhdxfile", 8)) {
        *fmt = HVP_DISK_FMT_VHDX;
        return 0;
    }
    if (!memcmp(sig, "conectix", 8)) {
        *fmt = HVP_DISK_FMT_VHD;
        return 0;
    }
    if (sz >= 512 && sz % 512 == 0) {
        int r = disk_pread(d, sig, 8, sz - 512);
        if (r) return r;
        if (!memcmp(sig, "conectix", 8)) {
            *fmt = HVP_DISK_FMT_VHD;
            return 0;
        }
    }
    *fmt = HVP_DISK_FMT_RAW;
    return 0;
}

static int open_parent(struct hvp_disk *d, int depth, const dev_t *devs, const ino_t *inos)
{
    struct disk_parent_ref *pr = &d->pref;
    char perr[1024] = "";
    bool found_any = false;
    char *mismatch = NULL;
    for (int i = 0; i < pr->ncand; i++) {
        struct stat st;
        if (stat(pr->cand[i], &st) < 0) continue;
        found_any = true;
        struct hvp_disk *p = NULL;
        unsigned fl = HVP_DISK_RDONLY | (d->flags & HVP_DISK_NO_LOCK);
        int r = disk_open_ex(pr->cand[i], fl, &p, false, false, NULL, NULL, perr, sizeof perr,
                             depth + 1, devs, inos);
        if (r < 0) {
            if (r == -ELOOP) return disk_problem(d, "%s", perr) ? -ELOOP : 0;
            int e = disk_problem(d, "parent %s: %s", pr->cand[i], perr);
            return e ? r : 0;
        }
        if (p->format != d->format) {
            int e = disk_problem(d, "parent %s is %s, not %s", pr->cand[i],
                                 hvp_disk_format_name(p->format), hvp_disk_format_name(d->format));
            hvp_disk_close(p);
            return e;
        }
        if (memcmp(p->id, pr->linkage, 16)) {
            if (!mismatch) mismatch = strdup(pr->cand[i]);
            hvp_disk_close(p);
            continue;
        }
        free(mismatch);
        d->parent = p;
        return 0;
    }
    int e;
    if (mismatch)
        e = disk_problem(d,
                         "parent %s does not match the child's link (%s) - it was modified or "
                         "replaced after the child was created",
                         mismatch,
                         d->format == HVP_DISK_FMT_VHD ? "ParentUniqueId" : "parent_linkage");
    else
        e = disk_problem(d, "parent %s not found%s", pr->name ? pr->name : "(unnamed)",
                         found_any ? "" : "");
    free(mismatch);
    return e ? -ENOENT : 0;
}

int disk_open_ex(const char *path, unsigned flags, struct hvp_disk **out, bool checking,
                 bool repairing, hvp_disk_problem_fn cb, void *ctx, char *err, size_t errlen,
                 int depth, const dev_t *devs, const ino_t *inos)
{
    *out = NULL;
    struct hvp_disk *d = calloc(1, sizeof *d);
    if (!d) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    d->fd = -1;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&d->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    d->path = strdup(path);
    d->flags = flags;
    d->rdonly = flags & HVP_DISK_RDONLY;
    d->checking = checking;
    d->repairing = repairing;
    d->problem_cb = cb;
    d->problem_ctx = ctx;
    d->phys_sector = 512;
    int r;
    dev_t mydevs[MAX_CHAIN + 1];
    ino_t myinos[MAX_CHAIN + 1];

    d->fd = open(path, (d->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (d->fd < 0) {
        r = disk_err(d, errno, "%s", strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(d->fd, &st) < 0) {
        r = disk_err(d, errno, "%s", strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        r = disk_err(d, EISDIR, "is a directory");
        goto fail;
    }
    for (int i = 0; i < depth; i++)
        if (devs[i] == st.st_dev && inos[i] == st.st_ino) {
            r = disk_err(d, ELOOP, "parent chain is cyclic (%s is its own ancestor)", path);
            goto fail;
        }
    if (depth >= MAX_CHAIN) {
        r = disk_err(d, ELOOP, "parent chain is deeper than %d", MAX_CHAIN);
        goto fail;
    }
    for (int i = 0; i < depth; i++)
        mydevs[i] = devs[i], myinos[i] = inos[i];
    mydevs[depth] = st.st_dev;
    myinos[depth] = st.st_ino;

    if (!d->rdonly && !(flags & HVP_DISK_NO_LOCK)) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(d->fd, F_OFD_SETLK, &fl) < 0) {
            if (errno == EAGAIN || errno == EACCES)
                r = disk_err(d, EAGAIN, "in use: another process has it open for writing");
            else
                r = disk_err(d, errno, "cannot lock: %s", strerror(errno));
            goto fail;
        }
    }

    enum hvp_disk_format fmt = HVP_DISK_FMT_RAW;
    r = probe(d, &fmt);
    if (r) goto fail;
    d->format = fmt;
    switch (fmt) {
    case HVP_DISK_FMT_VHD: r = vhd_open(d); break;
    case HVP_DISK_FMT_VHDX: r = vhdx_open(d); break;
    default: r = raw_open(d); break;
    }
    if (r) goto fail_drv;
    if (d->type == HVP_DISK_TYPE_DIFF && !(flags & HVP_DISK_NO_PARENT)) {
        r = open_parent(d, depth + 1, mydevs, myinos);
        if (r) goto fail_drv;
    }
    *out = d;
    return 0;
fail_drv:
    if (d->drv && d->drv->close) {
        bool ro = d->rdonly;
        d->rdonly = true; /* a failed open writes nothing more */
        d->drv->close(d);
        d->rdonly = ro;
    }
    if (d->parent) hvp_disk_close(d->parent);
fail:
    set_err(err, errlen, d->err);
    disk_free(d);
    return r < 0 ? r : -EINVAL;
}

int hvp_disk_open(const char *path, unsigned flags, hvp_disk **out, char *err, size_t errlen)
{
    return disk_open_ex(path, flags, out, false, false, NULL, NULL, err, errlen, 0, NULL, NULL);
}

int hvp_disk_close(hvp_disk *d)
{
    if (!d) return 0;
    int r = 0;
    pthread_mutex_lock(&d->mu);
    /* a bulk-filled new file (convert) is left to the page cache, as cp and
     * qemu-img convert do; everything else is durable when close returns */
    if (!d->rdonly && d->dirty && !(d->flags & DISK_BULK)) r = disk_sync(d);
    if (!r && !d->rdonly && d->drv && d->drv->flush) r = d->drv->flush(d);
    if (d->drv && d->drv->close) {
        int r2 = d->drv->close(d);
        if (!r) r = r2;
    }
    pthread_mutex_unlock(&d->mu);
    if (d->parent) hvp_disk_close(d->parent);
    disk_free(d);
    return r;
}

const char *hvp_disk_error(const hvp_disk *d)
{
    return d->err;
}

uint64_t hvp_disk_size(const hvp_disk *d)
{
    return d->size;
}

hvp_disk *hvp_disk_parent(hvp_disk *d)
{
    return d->parent;
}

const char *hvp_disk_path(const hvp_disk *d)
{
    return d->path;
}

int hvp_disk_info(hvp_disk *d, struct hvp_disk_info *o)
{
    memset(o, 0, sizeof *o);
    struct stat st;
    if (fstat(d->fd, &st) < 0) return disk_err(d, errno, "%s", strerror(errno));
    o->format = d->format;
    o->type = d->type;
    o->virtual_size = d->size;
    o->file_size = (uint64_t)st.st_size;
    pthread_mutex_lock(&d->mu);
    o->allocated = d->drv->allocated ? d->drv->allocated(d) : (uint64_t)st.st_blocks * 512;
    pthread_mutex_unlock(&d->mu);
    o->block_size = d->block_size;
    o->logical_sector = 512;
    o->physical_sector = d->phys_sector;
    memcpy(o->id, d->id, 16);
    o->parent_path = d->parent ? d->parent->path : NULL;
    return 0;
}

int disk_layer_status(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *run)
{
    uint64_t foff;
    pthread_mutex_lock(&d->mu);
    int st = d->drv->map(d, off, len, &foff, run);
    pthread_mutex_unlock(&d->mu);
    if (st > 0 && *run > len) *run = len;
    return st;
}

int disk_read_chain(struct hvp_disk *d, uint64_t off, void *buf, uint64_t len)
{
    uint8_t *p = buf;
    if (d->format == HVP_DISK_FMT_RAW) return disk_pread(d, p, len, off);
    while (len) {
        uint64_t foff = 0, run = 0;
        pthread_mutex_lock(&d->mu);
        int st = d->drv->map(d, off, len, &foff, &run);
        pthread_mutex_unlock(&d->mu);
        if (st < 0) return st;
        if (run == 0 || run > len) run = len;
        if (st == MAP_DATA) {
            int r = disk_pread(d, p, run, foff);
            if (r) return r;
        } else if (st == MAP_PARENT && d->parent) {
            struct hvp_disk *par = d->parent;
            uint64_t n = off < par->size ? min_u64(run, par->size - off) : 0;
            if (n) {
                int r = disk_read_chain(par, off, p, n);
                if (r) return disk_err(d, -r, "parent %s: %s", par->path, par->err);
            }
            memset(p + n, 0, run - n);
        } else {
            memset(p, 0, run);
        }
        p += run;
        off += run;
        len -= run;
    }
    return 0;
}

int hvp_disk_read(hvp_disk *d, uint64_t off, void *buf, size_t len)
{
    if (off > d->size || len > d->size - off)
        return disk_err(d, EINVAL, "read beyond the end of the disk (offset %llu, %zu bytes)",
                        (unsigned long long)off, len);
    return disk_read_chain(d, off, buf, len);
}

static int write_locked(struct hvp_disk *d, uint64_t off, const uint8_t *p, uint64_t len)
{
    if (d->format == HVP_DISK_FMT_RAW) return d->drv->write(d, off, p, len);
    uint8_t sec[512];
    if (off % 512) {
        uint64_t s = off & ~511ull;
        uint64_t n = min_u64(len, s + 512 - off);
        int r = disk_read_chain(d, s, sec, 512);
        if (r) return r;
        memcpy(sec + (off - s), p, n);
        r = d->drv->write(d, s, sec, 512);
        if (r) return r;
        off += n, p += n, len -= n;
    }
    uint64_t mid = len & ~511ull;
    if (mid) {
        int r = d->drv->write(d, off, p, mid);
        if (r) return r;
        off += mid, p += mid, len -= mid;
    }
    if (len) {
        int r = disk_read_chain(d, off, sec, 512);
        if (r) return r;
        memcpy(sec, p, len);
        r = d->drv->write(d, off, sec, 512);
        if (r) return r;
    }
    return 0;
}

int hvp_disk_write(hvp_disk *d, uint64_t off, const void *buf, size_t len)
{
    if (d->rdonly) return disk_err(d, EBADF, "opened read-only");
    if (off > d->size || len > d->size - off)
        return disk_err(d, EINVAL, "write beyond the end of the disk (offset %llu, %zu bytes)",
                        (unsigned long long)off, len);
    if (!len) return 0;
    pthread_mutex_lock(&d->mu);
    d->dirty = true;
    int r = write_locked(d, off, buf, len);
    pthread_mutex_unlock(&d->mu);
    return r;
}

int hvp_disk_flush(hvp_disk *d)
{
    if (d->rdonly) return 0;
    pthread_mutex_lock(&d->mu);
    int r = disk_sync(d);
    if (!r && d->drv->flush) r = d->drv->flush(d);
    if (!r) d->dirty = false;
    pthread_mutex_unlock(&d->mu);
    return r;
}

int hvp_disk_discard(hvp_disk *d, uint64_t off, uint64_t len)
{
    if (d->rdonly) return disk_err(d, EBADF, "opened read-only");
    if (off > d->size || len > d->size - off)
        return disk_err(d, EINVAL, "discard beyond the end of the disk");
    pthread_mutex_lock(&d->mu);
    d->dirty = true;
    int r = 0;
    uint64_t a = round_up(off, 512), b = (off + len) & ~511ull;
    static const uint8_t zero[512];
    if (d->format == HVP_DISK_FMT_RAW || a >= b) {
        if (d->format == HVP_DISK_FMT_RAW)
            r = d->drv->discard(d, off, len);
        else
            for (uint64_t o = off; !r && o < off + len;) {
                uint64_t n = min_u64(512 - o % 512, off + len - o);
                r = write_locked(d, o, zero, n);
                o += n;
            }
        goto out;
    }
    if (off < a) r = write_locked(d, off, zero, a - off);
    if (!r) r = d->drv->discard(d, a, b - a);
    if (!r && b < off + len) r = write_locked(d, b, zero, off + len - b);
out:
    pthread_mutex_unlock(&d->mu);
    return r;
}

int hvp_disk_block_status(hvp_disk *d, uint64_t off, uint64_t len, uint64_t *run)
{
    if (off >= d->size) return disk_err(d, EINVAL, "status beyond the end of the disk");
    len = min_u64(len, d->size - off);
    uint64_t foff = 0;
    pthread_mutex_lock(&d->mu);
    int st = d->drv->map(d, off, len, &foff, run);
    pthread_mutex_unlock(&d->mu);
    if (st < 0) return st;
    if (*run > len || *run == 0) *run = len;
    if (st == MAP_DATA) {
        if (d->format == HVP_DISK_FMT_RAW) return HVP_DISK_STATUS_DATA;
        /* a hole in the file (a sparse fixed image) reads as zeros */
        off_t data = lseek(d->fd, (off_t)foff, SEEK_DATA);
        if (data < 0 && errno == ENXIO) return HVP_DISK_STATUS_ZERO;
        if (data > (off_t)foff) {
            *run = min_u64(*run, (uint64_t)data - foff);
            return HVP_DISK_STATUS_ZERO;
        }
        if (data == (off_t)foff) {
            off_t hole = lseek(d->fd, (off_t)foff, SEEK_HOLE);
            if (hole > (off_t)foff) *run = min_u64(*run, (uint64_t)hole - foff);
        }
        return HVP_DISK_STATUS_DATA;
    }
    if (st == MAP_ZERO || !d->parent) return HVP_DISK_STATUS_ZERO;
    if (off >= d->parent->size) return HVP_DISK_STATUS_ZERO;
    uint64_t prun;
    int pst = hvp_disk_block_status(d->parent, off, min_u64(*run, d->parent->size - off), &prun);
    if (pst < 0) return disk_err(d, -pst, "parent %s: %s", d->parent->path, d->parent->err);
    *run = prun;
    return pst;
}

/* ---- create ---- */

static char *abs_path_new(const char *path)
{
    /* realpath of the directory + the base name (the file need not exist) */
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX], rdir[PATH_MAX];
    const char *base;
    if (slash) {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1;
        if (n >= sizeof dir) return NULL;
        memcpy(dir, path, n);
        dir[n] = 0;
        base = slash + 1;
    } else {
        strcpy(dir, ".");
        base = path;
    }
    if (!realpath(dir, rdir)) return NULL;
    char *res = malloc(strlen(rdir) + strlen(base) + 2);
    if (res) sprintf(res, "%s%s%s", rdir, strcmp(rdir, "/") ? "/" : "", base);
    return res;
}

int disk_create_common(const char *path, const struct hvp_disk_create_params *p, bool overwrite,
                       const struct disk_ident *ident, char *err, size_t errlen);

int disk_create_common(const char *path, const struct hvp_disk_create_params *p, bool overwrite,
                       const struct disk_ident *ident, char *err, size_t errlen)
{
    struct disk_create_args a = {
        .path = path,
        .type = p->type,
        .size = p->size,
        .block_size = p->block_size,
        .overwrite = overwrite,
        .ident = ident,
    };
    char *pabs = NULL, *cabs = NULL, *rel = NULL;
    int r = 0;
    if (p->format == HVP_DISK_FMT_AUTO) {
        set_err(err, errlen, "no format given");
        return -EINVAL;
    }
    if (p->parent) a.type = HVP_DISK_TYPE_DIFF;
    if (a.type == HVP_DISK_TYPE_DIFF && !p->parent) {
        set_err(err, errlen, "a differencing disk needs a parent");
        return -EINVAL;
    }
    if (a.type == HVP_DISK_TYPE_DEFAULT)
        a.type = p->format == HVP_DISK_FMT_RAW ? HVP_DISK_TYPE_FIXED : HVP_DISK_TYPE_DYNAMIC;
    if (p->format == HVP_DISK_FMT_RAW && a.type == HVP_DISK_TYPE_DIFF) {
        set_err(err, errlen, "a raw image cannot have a parent");
        return -EINVAL;
    }
    if (a.type == HVP_DISK_TYPE_DIFF) {
        char perr[1024];
        r = hvp_disk_open(p->parent, HVP_DISK_RDONLY, &a.parent, perr, sizeof perr);
        if (r) {
            if (err) snprintf(err, errlen, "parent %s: %s", p->parent, perr);
            return r;
        }
        if (a.parent->format != p->format) {
            if (err)
                snprintf(err, errlen, "parent %s is %s; a %s child needs a %s parent", p->parent,
                         hvp_disk_format_name(a.parent->format), hvp_disk_format_name(p->format),
                         hvp_disk_format_name(p->format));
            r = -EINVAL;
            goto out;
        }
        if (a.size == 0)
            a.size = a.parent->size;
        else if (a.size != a.parent->size) {
            if (err)
                snprintf(err, errlen, "size %llu differs from the parent's (%llu)",
                         (unsigned long long)a.size, (unsigned long long)a.parent->size);
            r = -EINVAL;
            goto out;
        }
        pabs = realpath(p->parent, NULL);
        cabs = abs_path_new(path);
        if (!pabs || !cabs) {
            set_err(err, errlen, "cannot resolve the parent's path");
            r = -ENOENT;
            goto out;
        }
        if (!strcmp(pabs, cabs)) {
            set_err(err, errlen, "a disk cannot be its own parent");
            r = -EINVAL;
            goto out;
        }
        rel = path_relative(cabs, pabs);
        a.parent_rel = rel;
        a.parent_abs = pabs;
    }
    if (a.size == 0) {
        set_err(err, errlen, "size must be greater than zero");
        r = -EINVAL;
        goto out;
    }
    uint64_t max = p->format == HVP_DISK_FMT_VHD    ? HVP_DISK_VHD_MAX
                   : p->format == HVP_DISK_FMT_VHDX ? HVP_DISK_VHDX_MAX
                                                    : HVP_DISK_RAW_MAX;
    if (a.size > max) {
        if (err)
            snprintf(err, errlen, "size %llu is too large (a %s image holds at most %llu GiB)",
                     (unsigned long long)a.size, hvp_disk_format_name(p->format),
                     (unsigned long long)(max >> 30));
        r = -EFBIG;
        goto out;
    }
    if (p->format != HVP_DISK_FMT_RAW && a.size % 512) {
        if (err)
            snprintf(err, errlen, "size %llu is not a multiple of 512 bytes",
                     (unsigned long long)a.size);
        r = -EINVAL;
        goto out;
    }
    switch (p->format) {
    case HVP_DISK_FMT_RAW: r = raw_create(&a, err, errlen); break;
    case HVP_DISK_FMT_VHD: r = vhd_create(&a, err, errlen); break;
    default: r = vhdx_create(&a, err, errlen); break;
    }
out:
    if (a.parent) hvp_disk_close(a.parent);
    free(pabs);
    free(cabs);
    free(rel);
    return r;
}

int hvp_disk_create(const char *path, const struct hvp_disk_create_params *p, char *err,
                    size_t errlen)
{
    return disk_create_common(path, p, false, NULL, err, errlen);
}
