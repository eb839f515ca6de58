/* Whole-image operations: check, convert, compare, merge, compact, resize. */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (2 * MiB)
#define ZUNIT (64 * KiB)

int disk_create_common(const char *path, const struct hvp_disk_create_params *p, bool overwrite,
                       const struct disk_ident *ident, char *err, size_t errlen);

static void seterr(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen) snprintf(err, errlen, fmt, a, b);
}

int hvp_disk_check(const char *path, int repair, hvp_disk_problem_fn problem, void *ctx, char *err,
                   size_t errlen)
{
    struct hvp_disk *d;
    int r = disk_open_ex(path, repair ? 0 : HVP_DISK_RDONLY, &d, true, repair, problem, ctx, err,
                         errlen, 0, NULL, NULL);
    if (r) return r;
    if (d->drv->check) {
        r = d->drv->check(d);
        if (r) {
            seterr(err, errlen, "%s%s", d->err, "");
            hvp_disk_close(d);
            return r;
        }
    }
    int n = d->nproblems;
    r = hvp_disk_close(d);
    if (r) {
        seterr(err, errlen, "%s%s", "cannot finish", "");
        return r;
    }
    if (repair && n) {
        r = disk_open_ex(path, HVP_DISK_RDONLY, &d, true, false, NULL, NULL, err, errlen, 0, NULL,
                         NULL);
        if (r) return r;
        if (d->drv->check) d->drv->check(d);
        n = d->nproblems;
        hvp_disk_close(d);
    }
    return n;
}

static void progress_call(hvp_disk_progress_fn fn, void *ctx, uint64_t done, uint64_t total)
{
    if (fn) fn(ctx, done, total);
}

/* Copies [0, min(size of in, size of out)) of in into out, skipping zeros.
 * layer_only: in is read without its parent, PARENT runs are skipped.
 * zero_over: zero runs are applied where out does not read as zero yet. */
static int copy_content(struct hvp_disk *in, struct hvp_disk *out, bool layer_only, bool zero_over,
                        hvp_disk_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    uint64_t size = min_u64(in->size, out->size);
    uint8_t *buf = aligned_alloc(4096, CHUNK);
    uint8_t *pbuf = NULL;
    if (!buf) {
        seterr(err, errlen, "%s%s", "out of memory", "");
        return -ENOMEM;
    }
    int r = 0;
    uint64_t off = 0;
    while (off < size) {
        uint64_t len = min_u64(CHUNK - off % CHUNK, size - off), run;
        int st;
        if (layer_only) {
            st = disk_layer_status(in, off, len, &run);
            if (st == MAP_PARENT) {
                off += run;
                continue;
            }
        } else {
            st = hvp_disk_block_status(in, off, len, &run);
            st = st == HVP_DISK_STATUS_DATA ? MAP_DATA : st == HVP_DISK_STATUS_ZERO ? MAP_ZERO : st;
        }
        if (st < 0) {
            seterr(err, errlen, "%s: %s", in->path, in->err);
            r = st;
            break;
        }
        if (st == MAP_DATA) {
            r = layer_only ? disk_read_chain(in, off, buf, run) : hvp_disk_read(in, off, buf, run);
            if (r) {
                seterr(err, errlen, "%s: %s", in->path, in->err);
                break;
            }
        } else {
            memset(buf, 0, run);
        }
        /* write the non-zero 64 KiB units; zero units only where out must
         * hide its parent's data */
        uint64_t i = 0;
        while (i < run && !r) {
            uint64_t n = min_u64(ZUNIT - (off + i) % ZUNIT, run - i);
            bool z = buf_is_zero(buf + i, n);
            uint64_t j = i + n;
            while (j < run) {
                uint64_t m = min_u64(ZUNIT, run - j);
                if (buf_is_zero(buf + j, m) != z) break;
                j += m;
            }
            if (!z) {
                r = hvp_disk_write(out, off + i, buf + i, j - i);
            } else if (zero_over) {
                /* zeros must replace what out shows there now (its own
                 * older data or its parent's) */
                if (!pbuf) pbuf = aligned_alloc(4096, CHUNK);
                if (!pbuf) {
                    r = -ENOMEM;
                    break;
                }
                r = hvp_disk_read(out, off + i, pbuf, j - i);
                if (!r && !buf_is_zero(pbuf, j - i)) r = hvp_disk_discard(out, off + i, j - i);
            }
            if (r) seterr(err, errlen, "%s: %s", out->path, out->err);
            i = j;
        }
        if (r) break;
        off += run;
        progress_call(progress, ctx, off, size);
    }
    free(buf);
    free(pbuf);
    return r;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int hvp_disk_convert(hvp_disk *in, const char *out, const struct hvp_disk_create_params *p,
                     hvp_disk_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    if (same_file(in->path, out)) {
        seterr(err, errlen, "%s%s", "output is the input file", "");
        return -EINVAL;
    }
    struct hvp_disk_create_params cp = *p;
    if (cp.type == HVP_DISK_TYPE_DIFF || cp.parent) {
        seterr(err, errlen, "%s%s", "convert makes fixed or dynamic images only", "");
        return -EINVAL;
    }
    cp.size = in->size;
    if (cp.format != HVP_DISK_FMT_RAW) cp.size = round_up(cp.size, 512);
    int r = disk_create_common(out, &cp, true, NULL, err, errlen);
    if (r) return r;
    struct hvp_disk *o;
    r = hvp_disk_open(out, DISK_BULK, &o, err, errlen);
    if (r) {
        unlink(out);
        return r;
    }
    r = copy_content(in, o, false, false, progress, ctx, err, errlen);
    int r2 = hvp_disk_close(o);
    if (!r && r2) {
        r = r2;
        seterr(err, errlen, "%s%s", "cannot finish the output", "");
    }
    if (r) unlink(out);
    return r;
}

static int find_nonzero(struct hvp_disk *d, uint64_t off, uint64_t end, uint8_t *buf,
                        uint64_t *where)
{
    while (off < end) {
        uint64_t run;
        int st = hvp_disk_block_status(d, off, min_u64(CHUNK, end - off), &run);
        if (st < 0) return st;
        if (st == HVP_DISK_STATUS_DATA) {
            int r = hvp_disk_read(d, off, buf, run);
            if (r) return r;
            for (uint64_t i = 0; i < run; i++)
                if (buf[i]) {
                    *where = off + i;
                    return 1;
                }
        }
        off += run;
    }
    return 0;
}

int hvp_disk_compare(hvp_disk *a, hvp_disk *b, uint64_t *where, hvp_disk_progress_fn progress,
                     void *ctx, char *err, size_t errlen)
{
    uint64_t common = min_u64(a->size, b->size);
    uint8_t *ba = malloc(CHUNK), *bb = malloc(CHUNK);
    int r = 0;
    if (!ba || !bb) {
        r = -ENOMEM;
        seterr(err, errlen, "%s%s", "out of memory", "");
        goto out;
    }
    uint64_t off = 0;
    while (off < common) {
        uint64_t len = min_u64(CHUNK, common - off), ra, rb;
        int sa = hvp_disk_block_status(a, off, len, &ra);
        if (sa < 0) {
            seterr(err, errlen, "%s: %s", a->path, a->err);
            r = sa;
            goto out;
        }
        int sb = hvp_disk_block_status(b, off, len, &rb);
        if (sb < 0) {
            seterr(err, errlen, "%s: %s", b->path, b->err);
            r = sb;
            goto out;
        }
        uint64_t run = min_u64(ra, rb);
        if (sa == HVP_DISK_STATUS_ZERO && sb == HVP_DISK_STATUS_ZERO) {
            off += run;
            continue;
        }
        if ((r = hvp_disk_read(a, off, ba, run))) {
            seterr(err, errlen, "%s: %s", a->path, a->err);
            goto out;
        }
        if ((r = hvp_disk_read(b, off, bb, run))) {
            seterr(err, errlen, "%s: %s", b->path, b->err);
            goto out;
        }
        if (memcmp(ba, bb, run)) {
            for (uint64_t i = 0; i < run; i++)
                if (ba[i] != bb[i]) {
                    *where = off + i;
                    break;
                }
            r = 1;
            goto out;
        }
        off += run;
        progress_call(progress, ctx, off, common);
    }
    struct hvp_disk *big = a->size > b->size ? a : b;
    r = find_nonzero(big, common, big->size, ba, where);
    if (r < 0) seterr(err, errlen, "%s: %s", big->path, big->err);
out:
    free(ba);
    free(bb);
    return r;
}

int hvp_disk_merge(const char *child, hvp_disk_progress_fn progress, void *ctx, char *err,
                   size_t errlen)
{
    struct hvp_disk *c, *p;
    int r = hvp_disk_open(child, HVP_DISK_RDONLY, &c, err, errlen);
    if (r) return r;
    if (c->type != HVP_DISK_TYPE_DIFF || !c->parent) {
        hvp_disk_close(c);
        seterr(err, errlen, "%s%s", "not a differencing disk: nothing to merge into", "");
        return -EINVAL;
    }
    char *ppath = strdup(c->parent->path);
    hvp_disk_close(c);
    if (!ppath) return -ENOMEM;
    char perr[1024];
    r = hvp_disk_open(ppath, 0, &p, perr, sizeof perr);
    if (r) {
        seterr(err, errlen, "parent %s: %s", ppath, perr);
        free(ppath);
        return r;
    }
    r = hvp_disk_open(child, HVP_DISK_NO_PARENT, &c, err, errlen);
    if (r) {
        hvp_disk_close(p);
        free(ppath);
        return r;
    }
    if (memcmp(c->pref.linkage, p->id, 16)) {
        seterr(err, errlen, "parent %s changed: it no longer matches the child%s", ppath, "");
        r = -EINVAL;
        goto out;
    }
    r = copy_content(c, p, true, true, progress, ctx, err, errlen);
    if (!r && (r = hvp_disk_flush(p))) seterr(err, errlen, "parent %s: %s", ppath, p->err);
out:;
    int r2 = hvp_disk_close(p);
    if (!r && r2) {
        r = r2;
        seterr(err, errlen, "parent %s: %s", ppath, "cannot finish the merge");
    }
    hvp_disk_close(c);
    if (!r && unlink(child) < 0) {
        r = -errno;
        seterr(err, errlen, "merged, but cannot remove the child: %s%s", strerror(errno), "");
    }
    free(ppath);
    return r;
}

static void get_ident(struct hvp_disk *d, struct disk_ident *id)
{
    memset(id, 0, sizeof *id);
    if (d->format == HVP_DISK_FMT_VHD)
        vhd_get_ident(d, id);
    else if (d->format == HVP_DISK_FMT_VHDX)
        vhdx_get_ident(d, id);
}

/* Rewrites path into a new file with the given size (identity kept). */
static int rewrite(const char *path, uint64_t size, bool compact, uint64_t *saved,
                   hvp_disk_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    struct hvp_disk *d, *o = NULL;
    int r = hvp_disk_open(path, 0, &d, err, errlen);
    if (r) return r;
    char *tmp = NULL;
    if (compact) size = d->size;
    if (compact && (d->format == HVP_DISK_FMT_RAW || d->type == HVP_DISK_TYPE_FIXED)) {
        seterr(err, errlen, "%s%s", "only dynamic and differencing images can be compacted", "");
        r = -EINVAL;
        goto out;
    }
    if (!compact && d->type == HVP_DISK_TYPE_DIFF) {
        seterr(err, errlen, "%s%s", "a differencing disk has its parent's size; resize the parent",
               "");
        r = -EINVAL;
        goto out;
    }
    if (size < d->size) {
        /* shrink only when the cut tail holds nothing */
        uint8_t *buf = malloc(CHUNK);
        uint64_t where;
        r = buf ? find_nonzero(d, size, d->size, buf, &where) : -ENOMEM;
        free(buf);
        if (r < 0) {
            seterr(err, errlen, "%s%s", d->err, "");
            goto out;
        }
        if (r == 1) {
            char why[200];
            snprintf(why, sizeof why, "cannot shrink: data at offset %llu is beyond the new size",
                     (unsigned long long)where);
            seterr(err, errlen, "%s%s", why, "");
            r = -ENOSPC;
            goto out;
        }
    }
    if (d->format == HVP_DISK_FMT_RAW) {
        if (ftruncate(d->fd, (off_t)size) < 0) {
            r = -errno;
            seterr(err, errlen, "%s%s", strerror(errno), "");
        }
        goto out;
    }
    if (d->drv->resize && !compact) {
        pthread_mutex_lock(&d->mu);
        r = d->drv->resize(d, size);
        pthread_mutex_unlock(&d->mu);
        if (r != -ENOTSUP) {
            if (r) seterr(err, errlen, "%s%s", d->err, "");
            goto out;
        }
        r = 0; /* no room in the metadata: rewrite */
    }
    struct disk_ident id;
    get_ident(d, &id);
    struct hvp_disk_create_params cp = {
        .format = d->format,
        .type = d->type,
        .size = size,
        .block_size = d->block_size,
        .parent = d->parent ? d->parent->path : NULL,
    };
    tmp = malloc(strlen(path) + 16);
    if (!tmp) {
        r = -ENOMEM;
        goto out;
    }
    sprintf(tmp, "%s.hvp-tmp", path);
    r = disk_create_common(tmp, &cp, true, &id, err, errlen);
    if (r) goto out;
    r = hvp_disk_open(tmp, HVP_DISK_NO_PARENT | DISK_KEEP_ID | DISK_BULK, &o, err, errlen);
    if (r) goto out_unlink;
    if (d->type == HVP_DISK_TYPE_DIFF) {
        /* the new file needs the parent to tell which zeros matter */
        o->parent = d->parent;
    }
    r = copy_content(d, o, d->type == HVP_DISK_TYPE_DIFF, d->type == HVP_DISK_TYPE_DIFF, progress,
                     ctx, err, errlen);
    /* durable before it replaces the original */
    if (!r && (r = hvp_disk_flush(o))) seterr(err, errlen, "%s: %s", tmp, o->err);
    o->parent = NULL;
    int r2 = hvp_disk_close(o);
    o = NULL;
    if (!r && r2) r = r2;
    if (r) goto out_unlink;
    struct stat s0, s1;
    if (saved && fstat(d->fd, &s0) == 0 && stat(tmp, &s1) == 0)
        *saved = s0.st_size > s1.st_size ? (uint64_t)(s0.st_size - s1.st_size) : 0;
    if (rename(tmp, path) < 0) {
        r = -errno;
        seterr(err, errlen, "cannot replace the file: %s%s", strerror(errno), "");
        goto out_unlink;
    }
    goto out;
out_unlink:
    unlink(tmp);
out:
    free(tmp);
    hvp_disk_close(d);
    return r < 0 ? r : 0;
}

int hvp_disk_compact(const char *path, uint64_t *saved, hvp_disk_progress_fn progress, void *ctx,
                     char *err, size_t errlen)
{
    if (saved) *saved = 0;
    struct stat st;
    if (stat(path, &st) < 0) {
        seterr(err, errlen, "%s%s", strerror(errno), "");
        return -errno;
    }
    return rewrite(path, UINT64_MAX, true, saved, progress, ctx, err, errlen);
}

int hvp_disk_resize(const char *path, uint64_t size, hvp_disk_progress_fn progress, void *ctx,
                    char *err, size_t errlen)
{
    struct hvp_disk *d;
    int r = hvp_disk_open(path, HVP_DISK_RDONLY | HVP_DISK_NO_PARENT, &d, err, errlen);
    if (r) return r;
    enum hvp_disk_format f = d->format;
    hvp_disk_close(d);
    if (size == 0) {
        seterr(err, errlen, "%s%s", "size must be greater than zero", "");
        return -EINVAL;
    }
    if (f != HVP_DISK_FMT_RAW && size % 512) {
        seterr(err, errlen, "%s%s", "size is not a multiple of 512 bytes", "");
        return -EINVAL;
    }
    uint64_t max = f == HVP_DISK_FMT_VHD    ? HVP_DISK_VHD_MAX
                   : f == HVP_DISK_FMT_VHDX ? HVP_DISK_VHDX_MAX
                                            : HVP_DISK_RAW_MAX;
    if (size > max) {
        seterr(err, errlen, "size is too large for a %s image%s", hvp_disk_format_name(f), "");
        return -EFBIG;
    }
    return rewrite(path, size, false, NULL, progress, ctx, err, errlen);
}
