/* VHD (Virtual PC / Hyper-V v1): fixed, dynamic and differencing. Big-endian.
 * Block allocation order (crash safe): new footer at the new end of file,
 * sector bitmap, data, then the BAT entry. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VHD_UNALLOC     0xFFFFFFFFu
#define VHD_EPOCH       946684800ll
#define VHD_TYPE_FIXED  2
#define VHD_TYPE_DYN    3
#define VHD_TYPE_DIFF   4
#define PLAT_W2RU       0x57327275u
#define PLAT_W2KU       0x57326B75u
#define MAX_BLOCK       (256u << 20)
#define MAX_BAT_BYTES   (256u << 20)
#define MAX_LOCATOR_LEN 65536u

struct vhd {
    uint8_t footer[512];
    uint8_t hdr[1024];
    uint64_t hdr_off;
    uint32_t *bat;
    uint32_t entries;
    uint64_t bat_off;
    uint32_t bitmap_size;
    uint64_t footer_off;
    uint8_t **bitmaps;
    bool footer_bad, copy_bad;
};

static uint32_t vhd_checksum(const uint8_t *p, size_t len, size_t csum_off)
{
    uint32_t s = 0;
    for (size_t i = 0; i < len; i++)
        if (i < csum_off || i >= csum_off + 4) s += p[i];
    return ~s;
}

static void vhd_chs(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
    uint64_t t = size / 512;
    uint32_t s, h, cth;
    if (t > 65535ull * 16 * 255) t = 65535ull * 16 * 255;
    if (t >= 65535ull * 16 * 63) {
        s = 255;
        h = 16;
        cth = (uint32_t)(t / s);
    } else {
        s = 17;
        cth = (uint32_t)(t / 17);
        h = (cth + 1023) / 1024;
        if (h < 4) h = 4;
        if (cth >= h * 1024 || h > 16) {
            s = 31;
            h = 16;
            cth = (uint32_t)(t / 31);
        }
        if (cth >= h * 1024) {
            s = 63;
            h = 16;
            cth = (uint32_t)(t / 63);
        }
    }
    uint32_t c = cth / h;
    *cyl = (uint16_t)(c > 65535 ? 65535 : c);
    *heads = (uint8_t)h;
    *spt = (uint8_t)s;
}

static void footer_build(uint8_t f[512], int type, uint64_t orig, uint64_t size,
                         const uint8_t uuid[16], uint32_t ts)
{
    memset(f, 0, 512);
    memcpy(f, "conectix", 8);
    wr_be32(f + 8, 2);
    wr_be32(f + 12, 0x00010000);
    wr_be64(f + 16, type == VHD_TYPE_FIXED ? ~0ull : 512);
    wr_be32(f + 24, ts);
    memcpy(f + 28, "win ", 4); /* Hyper-V semantics: CurrentSize is the size */
    wr_be32(f + 32, 0x000a0000);
    memcpy(f + 36, "Wi2k", 4);
    wr_be64(f + 40, orig);
    wr_be64(f + 48, size);
    uint16_t c;
    uint8_t h, s;
    vhd_chs(size, &c, &h, &s);
    wr_be16(f + 56, c);
    f[58] = h;
    f[59] = s;
    wr_be32(f + 60, (uint32_t)type);
    memcpy(f + 68, uuid, 16);
    wr_be32(f + 64, vhd_checksum(f, 512, 64));
}

static bool is_dynamic(const struct hvp_disk *d)
{
    return d->type != HVP_DISK_TYPE_FIXED;
}

static uint8_t *get_bitmap(struct hvp_disk *d, uint32_t blk, int *err)
{
    struct vhd *v = d->priv;
    if (!v->bitmaps) {
        v->bitmaps = calloc(v->entries, sizeof *v->bitmaps);
        if (!v->bitmaps) {
            *err = disk_err(d, ENOMEM, "out of memory");
            return NULL;
        }
    }
    if (!v->bitmaps[blk]) {
        uint8_t *b = malloc(v->bitmap_size);
        if (!b) {
            *err = disk_err(d, ENOMEM, "out of memory");
            return NULL;
        }
        int r = disk_pread(d, b, v->bitmap_size, (uint64_t)v->bat[blk] * 512);
        if (r) {
            free(b);
            *err = r;
            return NULL;
        }
        v->bitmaps[blk] = b;
    }
    return v->bitmaps[blk];
}

static int vhd_map(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *foff, uint64_t *run)
{
    struct vhd *v = d->priv;
    if (!is_dynamic(d)) {
        *foff = off;
        *run = len;
        return MAP_DATA;
    }
    uint64_t bs = d->block_size;
    uint32_t blk = (uint32_t)(off / bs);
    uint64_t in = off % bs;
    *run = min_u64(len, bs - in);
    if (blk >= v->entries || v->bat[blk] == VHD_UNALLOC)
        return d->type == HVP_DISK_TYPE_DIFF ? MAP_PARENT : MAP_ZERO;
    *foff = (uint64_t)v->bat[blk] * 512 + v->bitmap_size + in;
    if (d->type != HVP_DISK_TYPE_DIFF) return MAP_DATA;
    int r = 0;
    uint8_t *bm = get_bitmap(d, blk, &r);
    if (!bm) return r;
    uint64_t s = in / 512, end = (in + *run + 511) / 512;
    bool set = bm[s / 8] & (0x80 >> (s % 8));
    uint64_t e = s + 1;
    while (e < end && !!(bm[e / 8] & (0x80 >> (e % 8))) == set)
        e++;
    *run = min_u64(*run, e * 512 - in);
    return set ? MAP_DATA : MAP_PARENT;
}

static int write_footer_at(struct hvp_disk *d, uint64_t pos)
{
    struct vhd *v = d->priv;
    return disk_pwrite(d, v->footer, 512, pos);
}

static int vhd_alloc(struct hvp_disk *d, uint32_t blk, uint64_t in, uint64_t n, const uint8_t *data)
{
    struct vhd *v = d->priv;
    uint64_t bs = d->block_size;
    uint64_t pos = v->footer_off;
    uint64_t new_footer = pos + v->bitmap_size + bs;
    int r = write_footer_at(d, new_footer);
    if (r) return r;
    uint8_t *bm = calloc(1, v->bitmap_size);
    if (!bm) return disk_err(d, ENOMEM, "out of memory");
    if (d->type == HVP_DISK_TYPE_DIFF) {
        for (uint64_t s = in / 512; s < (in + n) / 512; s++)
            bm[s / 8] |= (uint8_t)(0x80 >> (s % 8));
    } else {
        memset(bm, 0xff, v->bitmap_size);
    }
    r = disk_pwrite(d, bm, v->bitmap_size, pos);
    if (!r && v->bitmap_size > 512) {
        /* the old footer lay in the first bitmap sector only; the rest of the
         * new block is beyond the old end of file and reads as zeros */
    }
    if (!r) r = disk_pwrite(d, data, n, pos + v->bitmap_size + in);
    if (r) {
        free(bm);
        return r;
    }
    uint8_t be[4];
    wr_be32(be, (uint32_t)(pos / 512));
    r = disk_pwrite(d, be, 4, v->bat_off + (uint64_t)blk * 4);
    if (r) {
        free(bm);
        return r;
    }
    v->bat[blk] = (uint32_t)(pos / 512);
    v->footer_off = new_footer;
    d->file_end = new_footer;
    if (d->type == HVP_DISK_TYPE_DIFF && v->bitmaps) {
        free(v->bitmaps[blk]);
        v->bitmaps[blk] = bm;
    } else {
        free(bm);
    }
    return 0;
}

static int vhd_write(struct hvp_disk *d, uint64_t off, const void *buf, uint64_t len)
{
    struct vhd *v = d->priv;
    const uint8_t *p = buf;
    if (!is_dynamic(d)) return disk_pwrite(d, buf, len, off);
    uint64_t bs = d->block_size;
    while (len) {
        uint32_t blk = (uint32_t)(off / bs);
        uint64_t in = off % bs;
        uint64_t n = min_u64(len, bs - in);
        int r;
        if (v->bat[blk] == VHD_UNALLOC) {
            r = vhd_alloc(d, blk, in, n, p);
        } else {
            uint64_t base = (uint64_t)v->bat[blk] * 512;
            r = disk_pwrite(d, p, n, base + v->bitmap_size + in);
            if (!r && d->type == HVP_DISK_TYPE_DIFF) {
                uint8_t *bm = get_bitmap(d, blk, &r);
                if (!bm) return r;
                uint64_t s0 = in / 512, s1 = (in + n) / 512;
                uint64_t lo = UINT64_MAX, hi = 0;
                for (uint64_t s = s0; s < s1; s++) {
                    uint8_t m = (uint8_t)(0x80 >> (s % 8));
                    if (!(bm[s / 8] & m)) {
                        bm[s / 8] |= m;
                        if (s / 8 < lo) lo = s / 8;
                        hi = s / 8;
                    }
                }
                if (lo != UINT64_MAX) r = disk_pwrite(d, bm + lo, hi - lo + 1, base + lo);
            }
        }
        if (r) return r;
        off += n, p += n, len -= n;
    }
    return 0;
}

static int write_zeros(struct hvp_disk *d, uint64_t off, uint64_t len)
{
    uint64_t chunk = min_u64(len, 1 * MiB);
    uint8_t *z = calloc(1, chunk);
    if (!z) return disk_err(d, ENOMEM, "out of memory");
    int r = 0;
    while (len && !r) {
        uint64_t n = min_u64(len, chunk);
        r = vhd_write(d, off, z, n);
        off += n, len -= n;
    }
    free(z);
    return r;
}

static int vhd_discard(struct hvp_disk *d, uint64_t off, uint64_t len)
{
    struct vhd *v = d->priv;
    if (!is_dynamic(d)) {
        if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) ==
            0)
            return 0;
        return write_zeros(d, off, len);
    }
    if (d->type == HVP_DISK_TYPE_DIFF) return write_zeros(d, off, len);
    uint64_t bs = d->block_size;
    while (len) {
        uint32_t blk = (uint32_t)(off / bs);
        uint64_t in = off % bs;
        uint64_t n = min_u64(len, bs - in);
        int r = 0;
        if (v->bat[blk] != VHD_UNALLOC) {
            bool whole = in == 0 && (n == bs || off + n == d->size);
            if (whole) {
                uint8_t be[4];
                wr_be32(be, VHD_UNALLOC);
                r = disk_pwrite(d, be, 4, v->bat_off + (uint64_t)blk * 4);
                if (!r) v->bat[blk] = VHD_UNALLOC;
            } else {
                r = write_zeros(d, off, n);
            }
        }
        if (r) return r;
        off += n, len -= n;
    }
    return 0;
}

static int vhd_close(struct hvp_disk *d)
{
    struct vhd *v = d->priv;
    if (!v) return 0;
    if (v->bitmaps)
        for (uint32_t i = 0; i < v->entries; i++)
            free(v->bitmaps[i]);
    free(v->bitmaps);
    free(v->bat);
    free(v);
    d->priv = NULL;
    return 0;
}

static uint64_t vhd_allocated(struct hvp_disk *d)
{
    struct vhd *v = d->priv;
    if (!is_dynamic(d)) return d->size;
    uint64_t n = 0;
    for (uint32_t i = 0; i < v->entries; i++)
        if (v->bat[i] != VHD_UNALLOC) n++;
    return n * d->block_size;
}

/* Rewrites every structure from the (sanitized) in-memory state. */
static int vhd_repair(struct hvp_disk *d)
{
    struct vhd *v = d->priv;
    int r;
    wr_be32(v->footer + 64, vhd_checksum(v->footer, 512, 64));
    if (!is_dynamic(d)) {
        r = disk_pwrite(d, v->footer, 512, d->size);
        if (!r) r = disk_truncate(d, d->size + 512);
        return r;
    }
    wr_be32(v->hdr + 36, vhd_checksum(v->hdr, 1024, 36));
    r = disk_pwrite(d, v->hdr, 1024, v->hdr_off);
    if (r) return r;
    uint8_t *bat = malloc((size_t)v->entries * 4);
    if (!bat) return disk_err(d, ENOMEM, "out of memory");
    for (uint32_t i = 0; i < v->entries; i++)
        wr_be32(bat + (size_t)i * 4, v->bat[i]);
    r = disk_pwrite(d, bat, (size_t)v->entries * 4, v->bat_off);
    free(bat);
    if (!r) r = disk_pwrite(d, v->footer, 512, 0);
    if (!r) r = disk_pwrite(d, v->footer, 512, v->footer_off);
    if (!r) r = disk_truncate(d, v->footer_off + 512);
    if (!r) r = disk_sync(d);
    return r;
}

static int vhd_check(struct hvp_disk *d)
{
    if (d->repairing && d->nproblems) return vhd_repair(d);
    return 0;
}

static int zero_range(struct hvp_disk *d, uint64_t off, uint64_t len)
{
    static const uint8_t z[4096];
    int r = 0;
    for (uint64_t o = 0; o < len && !r; o += sizeof z)
        r = disk_pwrite(d, z, min_u64(sizeof z, len - o), off + o);
    return r;
}

static void footer_set_size(uint8_t *f, uint64_t size)
{
    wr_be64(f + 48, size);
    uint16_t c;
    uint8_t h, s;
    vhd_chs(size, &c, &h, &s);
    wr_be16(f + 56, c);
    f[58] = h;
    f[59] = s;
    wr_be32(f + 64, vhd_checksum(f, 512, 64));
}

static int vhd_resize(struct hvp_disk *d, uint64_t size)
{
    struct vhd *v = d->priv;
    uint64_t old = d->size;
    int r;
    if (!is_dynamic(d)) {
        uint8_t f[512];
        memcpy(f, v->footer, 512);
        footer_set_size(f, size);
        r = disk_pwrite(d, f, 512, size); /* new footer first */
        if (!r && size > old)
            r = zero_range(d, old, min_u64(512, size - old)); /* the old one is data now */
        if (!r) r = disk_truncate(d, size + 512);
        if (!r) r = disk_sync(d);
        if (r) return r;
        memcpy(v->footer, f, 512);
        d->size = size;
        v->footer_off = size;
        d->file_end = size;
        return 0;
    }
    if (d->type == HVP_DISK_TYPE_DIFF) return -ENOTSUP;
    uint64_t bs = d->block_size;
    uint64_t need = (size + bs - 1) / bs;
    if (need > v->entries) {
        /* room between the BAT and the first thing after it */
        uint64_t limit = v->footer_off;
        for (uint32_t i = 0; i < v->entries; i++)
            if (v->bat[i] != VHD_UNALLOC && (uint64_t)v->bat[i] * 512 < limit)
                limit = (uint64_t)v->bat[i] * 512;
        for (int i = 0; i < 8; i++) {
            uint64_t lo = rd_be64(v->hdr + 576 + i * 24 + 16);
            if (rd_be32(v->hdr + 576 + i * 24) && lo > v->bat_off && lo < limit) limit = lo;
        }
        if (v->hdr_off > v->bat_off && v->hdr_off < limit) limit = v->hdr_off;
        if (v->bat_off + need * 4 > limit || need * 4 > MAX_BAT_BYTES) return -ENOTSUP;
        uint32_t *nb = realloc(v->bat, need * 4 + 1);
        if (!nb) return disk_err(d, ENOMEM, "out of memory");
        v->bat = nb;
        uint8_t *ff = malloc((need - v->entries) * 4);
        if (!ff) return disk_err(d, ENOMEM, "out of memory");
        memset(ff, 0xff, (need - v->entries) * 4);
        r = disk_pwrite(d, ff, (need - v->entries) * 4, v->bat_off + (uint64_t)v->entries * 4);
        free(ff);
        if (r) return r;
        if (v->bitmaps) {
            uint8_t **bm = realloc(v->bitmaps, need * sizeof *bm);
            if (!bm) return disk_err(d, ENOMEM, "out of memory");
            memset(bm + v->entries, 0, (need - v->entries) * sizeof *bm);
            v->bitmaps = bm;
        }
        for (uint64_t i = v->entries; i < need; i++)
            v->bat[i] = VHD_UNALLOC;
        v->entries = (uint32_t)need;
        wr_be32(v->hdr + 28, v->entries);
        wr_be32(v->hdr + 36, vhd_checksum(v->hdr, 1024, 36));
        r = disk_pwrite(d, v->hdr, 1024, v->hdr_off);
        if (r) return r;
    }
    /* the grown part of the old last block must read as zero */
    uint32_t last = (uint32_t)(old / bs);
    if (size > old && old % bs && last < v->entries && v->bat[last] != VHD_UNALLOC) {
        uint64_t end = min_u64((uint64_t)(last + 1) * bs, size);
        r = zero_range(d, (uint64_t)v->bat[last] * 512 + v->bitmap_size + old % bs, end - old);
        if (r) return r;
    }
    uint8_t f[512];
    memcpy(f, v->footer, 512);
    footer_set_size(f, size);
    r = disk_pwrite(d, f, 512, v->footer_off);
    if (!r) r = disk_pwrite(d, f, 512, 0);
    if (!r) r = disk_sync(d);
    if (r) return r;
    memcpy(v->footer, f, 512);
    d->size = size;
    return 0;
}

static const struct disk_driver vhd_driver = {
    .map = vhd_map,
    .write = vhd_write,
    .discard = vhd_discard,
    .close = vhd_close,
    .allocated = vhd_allocated,
    .check = vhd_check,
    .resize = vhd_resize,
};

struct range {
    uint64_t start, end;
    uint32_t idx;
};

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1)
{
    return a0 < b1 && b0 < a1;
}

static int read_locators(struct hvp_disk *d, uint64_t fs, struct range *meta, int *nmeta)
{
    struct vhd *v = d->priv;
    char *rel = NULL, *abs = NULL;
    for (int i = 0; i < 8; i++) {
        const uint8_t *e = v->hdr + 576 + i * 24;
        uint32_t code = rd_be32(e), len = rd_be32(e + 8);
        uint64_t off = rd_be64(e + 16);
        if (code != PLAT_W2RU && code != PLAT_W2KU) continue;
        if (len == 0 || len > MAX_LOCATOR_LEN || off > fs || len > fs - off) {
            int r = disk_problem(d, "parent locator %d lies outside the file", i);
            if (r) {
                free(rel);
                free(abs);
                return r;
            }
            continue;
        }
        meta[(*nmeta)++] = (struct range){off, off + len, 0};
        uint8_t *buf = malloc(len);
        char *s = malloc((size_t)len * 2 + 4);
        if (!buf || !s) {
            free(buf);
            free(s);
            free(rel);
            free(abs);
            return disk_err(d, ENOMEM, "out of memory");
        }
        int r = disk_pread(d, buf, len, off);
        if (!r && utf16_to_utf8(buf, len, true, s, (size_t)len * 2 + 4) < 0)
            r = disk_problem(d, "parent locator %d is not valid UTF-16", i);
        free(buf);
        if (r) {
            free(s);
            free(rel);
            free(abs);
            return r;
        }
        if (code == PLAT_W2RU && !rel)
            rel = s;
        else if (code == PLAT_W2KU && !abs)
            abs = s;
        else
            free(s);
    }
    struct disk_parent_ref *pr = &d->pref;
    if (rel) pr->cand[pr->ncand++] = path_resolve_rel(d->path, rel);
    if (abs) {
        for (char *p = abs; *p; p++)
            if (*p == '\\') *p = '/';
        pr->cand[pr->ncand++] = strdup(abs);
    }
    char name[1100];
    if (utf16_to_utf8(v->hdr + 64, 512, false, name, sizeof name) > 0) {
        pr->name = strdup(name);
        if (!rel && !abs) pr->cand[pr->ncand++] = path_resolve_rel(d->path, name);
    } else {
        pr->name = strdup(rel ? rel : abs ? abs : "(unnamed)");
    }
    free(rel);
    free(abs);
    memcpy(pr->linkage, v->hdr + 40, 16);
    return 0;
}

static int validate_bat(struct hvp_disk *d, struct range *meta, int nmeta)
{
    struct vhd *v = d->priv;
    uint64_t bs = d->block_size;
    struct range *blocks = malloc(sizeof *blocks * (v->entries ? v->entries : 1));
    if (!blocks) return disk_err(d, ENOMEM, "out of memory");
    uint32_t nb = 0;
    int r = 0;
    for (uint32_t i = 0; i < v->entries && !r; i++) {
        if (v->bat[i] == VHD_UNALLOC) continue;
        uint64_t start = (uint64_t)v->bat[i] * 512;
        uint64_t need = (uint64_t)i * bs < d->size ? min_u64(bs, d->size - (uint64_t)i * bs) : 0;
        uint64_t end = start + v->bitmap_size + round_up(need, 512);
        if (end > v->footer_off) {
            r = disk_problem(d, "BAT entry %u points past the end of the file (offset %llu)", i,
                             (unsigned long long)start);
            v->bat[i] = VHD_UNALLOC;
            continue;
        }
        bool bad = false;
        for (int k = 0; k < nmeta; k++)
            if (overlaps(start, end, meta[k].start, meta[k].end)) bad = true;
        if (bad) {
            r = disk_problem(d, "BAT entry %u overlaps the metadata (offset %llu)", i,
                             (unsigned long long)start);
            v->bat[i] = VHD_UNALLOC;
            continue;
        }
        blocks[nb++] = (struct range){start, end, i};
    }
    if (!r && nb > 1) {
        qsort(blocks, nb, sizeof *blocks, cmp_range);
        for (uint32_t k = 1; k < nb && !r; k++)
            if (blocks[k].start < blocks[k - 1].end) {
                r = disk_problem(d, "BAT entries %u and %u overlap", blocks[k - 1].idx,
                                 blocks[k].idx);
                v->bat[blocks[k].idx] = VHD_UNALLOC;
            }
    }
    free(blocks);
    return r;
}

int vhd_open(struct hvp_disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0) return disk_err(d, errno, "%s", strerror(errno));
    uint64_t fs = (uint64_t)st.st_size;
    struct vhd *v = calloc(1, sizeof *v);
    if (!v) return disk_err(d, ENOMEM, "out of memory");
    d->priv = v;
    d->drv = &vhd_driver;
    d->format = HVP_DISK_FMT_VHD;
    int r;
    if (fs < 512)
        return disk_err(d, EINVAL, "file too small to be a VHD (%llu bytes)",
                        (unsigned long long)fs);
    uint8_t copy[512] = {0};
    bool have_copy = false;
    if (fs >= 512 + 1024) {
        r = disk_pread(d, copy, 512, 0);
        if (r) return r;
        have_copy = !memcmp(copy, "conectix", 8) &&
                    vhd_checksum(copy, 512, 64) == rd_be32(copy + 64) &&
                    (rd_be32(copy + 60) == VHD_TYPE_DYN || rd_be32(copy + 60) == VHD_TYPE_DIFF);
    }
    r = disk_pread(d, v->footer, 512, fs & ~511ull ? (fs & ~511ull) - 512 : 0);
    if (r) return r;
    v->footer_off = (fs & ~511ull) - 512;
    bool foot_ok = !memcmp(v->footer, "conectix", 8);
    if (!foot_ok) {
        if (!have_copy)
            return disk_err(d, EINVAL,
                            "no VHD footer (cookie \"conectix\") at the end of the file");
        r = disk_problem(d, "the footer at the end of the file is missing (file truncated?)");
        if (r) return r;
        memcpy(v->footer, copy, 512);
        v->footer_off = fs & ~511ull;
        v->footer_bad = true;
    } else {
        uint32_t want = vhd_checksum(v->footer, 512, 64), got = rd_be32(v->footer + 64);
        if (want != got) {
            r = disk_problem(d, "footer checksum is wrong (stored 0x%08x, computed 0x%08x)", got,
                             want);
            if (r) return r;
            if (have_copy) {
                memcpy(v->footer, copy, 512);
            }
            v->footer_bad = true;
        }
    }
    if (rd_be32(v->footer + 12) >> 16 != 1)
        return disk_err(d, EINVAL, "unsupported VHD version 0x%08x", rd_be32(v->footer + 12));
    uint32_t type = rd_be32(v->footer + 60);
    if (type != VHD_TYPE_FIXED && type != VHD_TYPE_DYN && type != VHD_TYPE_DIFF)
        return disk_err(d, EINVAL, "unsupported VHD disk type %u", type);
    d->type = type == VHD_TYPE_FIXED ? HVP_DISK_TYPE_FIXED
              : type == VHD_TYPE_DYN ? HVP_DISK_TYPE_DYNAMIC
                                     : HVP_DISK_TYPE_DIFF;
    memcpy(d->id, v->footer + 68, 16);
    d->size = rd_be64(v->footer + 48);
    if (d->size % 512) {
        r = disk_problem(d, "virtual size %llu is not a multiple of 512",
                         (unsigned long long)d->size);
        if (r) return r;
        d->size &= ~511ull;
    }
    if (d->size > HVP_DISK_VHD_MAX)
        return disk_err(d, EINVAL, "virtual size %llu is larger than a VHD can be",
                        (unsigned long long)d->size);
    if (type == VHD_TYPE_FIXED) {
        if (d->size > v->footer_off)
            return disk_err(d, EINVAL, "file is shorter than the virtual size %llu (truncated?)",
                            (unsigned long long)d->size);
        d->file_end = v->footer_off;
        return 0;
    }
    if (have_copy && foot_ok && !v->footer_bad && memcmp(copy, v->footer, 512)) {
        r = disk_problem(d, "the footer copy at offset 0 differs from the footer at the end");
        if (r) return r;
    }
    v->hdr_off = rd_be64(v->footer + 16);
    if (v->hdr_off > fs || fs - v->hdr_off < 1024 || v->hdr_off % 512)
        return disk_err(d, EINVAL, "dynamic header offset %llu is outside the file",
                        (unsigned long long)v->hdr_off);
    r = disk_pread(d, v->hdr, 1024, v->hdr_off);
    if (r) return r;
    if (memcmp(v->hdr, "cxsparse", 8))
        return disk_err(d, EINVAL, "no dynamic header (cookie \"cxsparse\") at offset %llu",
                        (unsigned long long)v->hdr_off);
    uint32_t want = vhd_checksum(v->hdr, 1024, 36), got = rd_be32(v->hdr + 36);
    if (want != got) {
        r = disk_problem(d, "dynamic header checksum is wrong (stored 0x%08x, computed 0x%08x)",
                         got, want);
        if (r) return r;
    }
    v->bat_off = rd_be64(v->hdr + 16);
    v->entries = rd_be32(v->hdr + 28);
    uint32_t bs = rd_be32(v->hdr + 32);
    if (!is_pow2(bs) || bs < 512 || bs > MAX_BLOCK)
        return disk_err(d, EINVAL, "block size %u is not a power of two between 512 and 256 MiB",
                        bs);
    d->block_size = bs;
    v->bitmap_size = (uint32_t)round_up((bs / 512 + 7) / 8, 512);
    uint64_t need = (d->size + bs - 1) / bs;
    if (v->entries < need)
        return disk_err(d, EINVAL, "BAT has %u entries but the disk size needs %llu", v->entries,
                        (unsigned long long)need);
    if ((uint64_t)v->entries * 4 > MAX_BAT_BYTES || v->bat_off > fs ||
        (uint64_t)v->entries * 4 > fs - v->bat_off)
        return disk_err(d, EINVAL,
                        "BAT (%u entries at offset %llu) extends past the end of the file",
                        v->entries, (unsigned long long)v->bat_off);
    v->bat = malloc((size_t)v->entries * 4 + 1);
    if (!v->bat) return disk_err(d, ENOMEM, "out of memory");
    r = disk_pread(d, v->bat, (size_t)v->entries * 4, v->bat_off);
    if (r) return r;
    for (uint32_t i = 0; i < v->entries; i++)
        v->bat[i] = rd_be32(&v->bat[i]);
    struct range meta[12];
    int nmeta = 0;
    meta[nmeta++] = (struct range){0, 512, 0};
    meta[nmeta++] = (struct range){v->hdr_off, v->hdr_off + 1024, 0};
    meta[nmeta++] =
        (struct range){v->bat_off, v->bat_off + round_up((uint64_t)v->entries * 4, 512), 0};
    if (type == VHD_TYPE_DIFF) {
        r = read_locators(d, fs, meta, &nmeta);
        if (r) return r;
    }
    uint64_t meta_end = 0;
    for (int k = 0; k < nmeta; k++)
        if (meta[k].end > meta_end) meta_end = meta[k].end;
    if (v->footer_off < meta_end)
        return disk_err(d, EINVAL, "file ends inside its metadata (truncated?)");
    r = validate_bat(d, meta, nmeta);
    if (r) return r;
    d->file_end = v->footer_off;
    return 0;
}

void vhd_get_ident(struct hvp_disk *d, struct disk_ident *id)
{
    struct vhd *v = d->priv;
    id->set = true;
    memcpy(id->id, v->footer + 68, 16);
    id->vhd_timestamp = rd_be32(v->footer + 24);
}

int vhd_create(const struct disk_create_args *a, char *err, size_t errlen)
{
    struct hvp_disk tmp = {.fd = -1};
    struct hvp_disk *d = &tmp;
    uint32_t bs = a->block_size ? a->block_size : 2 * MiB;
    if (a->type != HVP_DISK_TYPE_FIXED && (!is_pow2(bs) || bs < 512 || bs > MAX_BLOCK)) {
        snprintf(err, errlen, "block size %u is not a power of two between 512 and 256 MiB", bs);
        return -EINVAL;
    }
    uint64_t entries = (a->size + bs - 1) / bs;
    if (a->type != HVP_DISK_TYPE_FIXED && entries * 4 > MAX_BAT_BYTES) {
        snprintf(err, errlen, "block size %u is too small for this size", bs);
        return -EINVAL;
    }
    uint8_t uuid[16];
    uint32_t ts = (uint32_t)(time(NULL) - VHD_EPOCH);
    if (a->ident && a->ident->set) {
        memcpy(uuid, a->ident->id, 16);
        ts = a->ident->vhd_timestamp;
    } else {
        uuid_generate_v4(uuid);
    }
    int type = a->type == HVP_DISK_TYPE_FIXED     ? VHD_TYPE_FIXED
               : a->type == HVP_DISK_TYPE_DYNAMIC ? VHD_TYPE_DYN
                                                  : VHD_TYPE_DIFF;
    uint8_t footer[512];
    footer_build(footer, type, a->size, a->size, uuid, ts);
    d->fd = open(a->path, O_RDWR | O_CREAT | O_CLOEXEC | (a->overwrite ? O_TRUNC : O_EXCL), 0644);
    if (d->fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s", e == EEXIST ? "file exists" : strerror(e));
        return -e;
    }
    int r;
    uint8_t *buf = NULL;
    if (type == VHD_TYPE_FIXED) {
        r = disk_truncate(d, a->size);
        if (!r) r = disk_pwrite(d, footer, 512, a->size);
        goto out;
    }
    uint64_t bat_off = 1536, bat_len = round_up(entries * 4, 512);
    uint64_t pos = bat_off + bat_len;
    uint8_t hdr[1024] = {0};
    memcpy(hdr, "cxsparse", 8);
    wr_be64(hdr + 8, ~0ull);
    wr_be64(hdr + 16, bat_off);
    wr_be32(hdr + 24, 0x00010000);
    wr_be32(hdr + 28, (uint32_t)entries);
    wr_be32(hdr + 32, bs);
    uint8_t loc_buf[2][8192];
    size_t loc_len[2] = {0, 0};
    if (type == VHD_TYPE_DIFF) {
        memcpy(hdr + 40, a->parent->id, 16);
        struct stat pst;
        if (fstat(a->parent->fd, &pst) == 0)
            wr_be32(hdr + 56, (uint32_t)(pst.st_mtime - VHD_EPOCH));
        const char *base = strrchr(a->parent_abs, '/');
        base = base ? base + 1 : a->parent_abs;
        if (utf8_to_utf16(base, hdr + 64, 510, false) < 0) {
            r = disk_err(d, ENAMETOOLONG, "parent file name too long");
            goto out;
        }
        /* W2ru: relative, Windows separators; W2ku: absolute */
        char relw[4096];
        snprintf(relw, sizeof relw, "%s", a->parent_rel);
        for (char *p = relw; *p; p++)
            if (*p == '/') *p = '\\';
        const char *paths[2] = {relw, a->parent_abs};
        const uint32_t codes[2] = {PLAT_W2RU, PLAT_W2KU};
        for (int i = 0; i < 2; i++) {
            ssize_t n = utf8_to_utf16(paths[i], loc_buf[i], sizeof loc_buf[i], true);
            if (n <= 0) {
                r = disk_err(d, ENAMETOOLONG, "parent path too long");
                goto out;
            }
            loc_len[i] = (size_t)n;
            uint8_t *e = hdr + 576 + i * 24;
            uint64_t space = round_up((uint64_t)n, 512);
            wr_be32(e, codes[i]);
            wr_be32(e + 4, (uint32_t)space);
            wr_be32(e + 8, (uint32_t)n);
            wr_be64(e + 16, pos);
            pos += space;
        }
    }
    wr_be32(hdr + 36, vhd_checksum(hdr, 1024, 36));
    buf = malloc(bat_len);
    if (!buf) {
        r = disk_err(d, ENOMEM, "out of memory");
        goto out;
    }
    memset(buf, 0xff, bat_len);
    r = disk_pwrite(d, footer, 512, 0);
    if (!r) r = disk_pwrite(d, hdr, 1024, 512);
    if (!r) r = disk_pwrite(d, buf, bat_len, bat_off);
    for (int i = 0; i < 2 && !r; i++)
        if (loc_len[i]) {
            uint8_t *e = hdr + 576 + i * 24;
            r = disk_pwrite(d, loc_buf[i], loc_len[i], rd_be64(e + 16));
        }
    if (!r) r = disk_pwrite(d, footer, 512, pos);
    if (!r) r = disk_truncate(d, pos + 512);
out:
    if (!r && fsync(d->fd) < 0) r = disk_err(d, errno, "flush: %s", strerror(errno));
    free(buf);
    close(d->fd);
    if (r) {
        unlink(a->path);
        snprintf(err, errlen, "%s", d->err);
    }
    return r;
}
