/* VHDX (MS-VHDX v1.0): fixed, dynamic, differencing. Little-endian, CRC-32C.
 * Metadata (BAT and sector-bitmap) updates go through the log: one entry at
 * the start of the log, flushed, applied in place, flushed. The log stays
 * active (LogGuid set) while the file is open for writing and is cleared on
 * close; a log left by a crash is replayed by the next read-write open. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEEP_ID DISK_KEEP_ID

#define HDR1_OFF         (64 * KiB)
#define HDR2_OFF         (128 * KiB)
#define RT1_OFF          (192 * KiB)
#define RT2_OFF          (256 * KiB)
#define RT_SIZE          (64 * KiB)
#define SB_SIZE          (1 * MiB)
#define MAX_BLOCK        (256u << 20)
#define MAX_LOG          (256ull << 20)
#define MAX_TX           64
#define HVP_DISK_CREATOR "0.1"

enum {
    PB_NOT_PRESENT = 0,
    PB_UNDEFINED = 1,
    PB_ZERO = 2,
    PB_UNMAPPED = 3,
    PB_UNMAPPED_Q = 5,
    PB_FULLY = 6,
    PB_PARTIAL = 7,
};

/* GUIDs in on-disk (MS) byte order */
static const uint8_t G_BAT[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                  0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
static const uint8_t G_META[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                   0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
static const uint8_t G_FILEPARAM[16] = {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                        0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
static const uint8_t G_VSIZE[16] = {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
                                    0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8};
static const uint8_t G_PAGE83[16] = {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                     0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46};
static const uint8_t G_LSS[16] = {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                  0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
static const uint8_t G_PSS[16] = {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
                                  0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56};
static const uint8_t G_PLOC[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                   0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};
static const uint8_t G_PLOC_TYPE[16] = {0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a,
                                        0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13};

struct tx_sector {
    uint64_t off;
    uint8_t data[4096];
};

struct vhdx {
    int cur_slot;
    uint64_t seq;
    uint8_t fwg[16], dwg[16], lg[16]; /* MS byte order */
    uint64_t log_off;
    uint32_t log_len;
    uint64_t bat_off, bat_len, meta_off, meta_len;
    uint64_t *bat;
    uint64_t nentries;
    uint32_t cr; /* chunk ratio */
    uint64_t data_blocks;
    uint8_t **sbm;
    uint64_t nchunks;
    uint8_t page83[16];
    uint64_t vsize_off; /* file offset of the virtual size item */
    bool session;
    uint64_t log_seq;
    struct tx_sector *tx;
    int ntx;
};

static uint64_t bat_idx(const struct vhdx *v, uint64_t blk)
{
    return blk + blk / v->cr;
}

static uint64_t sb_idx(const struct vhdx *v, uint64_t chunk)
{
    return chunk * (v->cr + 1) + v->cr;
}

/* ---- headers ---- */

static void header_build(uint8_t h[4096], uint64_t seq, const uint8_t fwg[16],
                         const uint8_t dwg[16], const uint8_t lg[16], uint64_t log_off,
                         uint32_t log_len)
{
    memset(h, 0, 4096);
    memcpy(h, "head", 4);
    wr_le64(h + 8, seq);
    memcpy(h + 16, fwg, 16);
    memcpy(h + 32, dwg, 16);
    memcpy(h + 48, lg, 16);
    wr_le16(h + 64, 0);
    wr_le16(h + 66, 1);
    wr_le32(h + 68, log_len);
    wr_le64(h + 72, log_off);
    wr_le32(h + 4, crc32c(0, h, 4096));
}

/* Writes the non-current header slot (sequence + 1) and flushes it, then the
 * other slot with sequence + 2. A torn or lost second write leaves the first,
 * already durable, as the current header. */
static int header_update(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    uint8_t h[4096];
    for (int i = 0; i < 2; i++) {
        int slot = 1 - v->cur_slot;
        header_build(h, v->seq + 1, v->fwg, v->dwg, v->lg, v->log_off, v->log_len);
        int r = disk_pwrite(d, h, 4096, slot ? HDR2_OFF : HDR1_OFF);
        if (!r && i == 0) r = disk_sync(d);
        if (r) return r;
        v->seq++;
        v->cur_slot = slot;
    }
    return 0;
}

static int session_begin(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    if (v->session) return 0;
    if (d->flags & DISK_BULK) {
        v->session = true;
        return 0;
    }
    uint8_t g[16];
    uuid_generate_v4(g);
    guid_to_ms(v->fwg, g);
    if (!(d->flags & KEEP_ID)) {
        uuid_generate_v4(g);
        guid_to_ms(v->dwg, g);
        memcpy(d->id, g, 16);
    }
    uuid_generate_v4(g);
    guid_to_ms(v->lg, g);
    int r = header_update(d);
    if (r) return r;
    v->session = true;
    v->log_seq = 1;
    return 0;
}

/* ---- log ---- */

static int tx_add(struct hvp_disk *d, uint64_t off, const void *src)
{
    struct vhdx *v = d->priv;
    for (int i = 0; i < v->ntx; i++)
        if (v->tx[i].off == off) {
            memcpy(v->tx[i].data, src, 4096);
            return 0;
        }
    if (!v->tx) {
        v->tx = malloc(sizeof *v->tx * MAX_TX);
        if (!v->tx) return disk_err(d, ENOMEM, "out of memory");
    }
    if (v->ntx == MAX_TX) return -EAGAIN;
    v->tx[v->ntx].off = off;
    memcpy(v->tx[v->ntx].data, src, 4096);
    v->ntx++;
    return 0;
}

static void bat_sector(const struct vhdx *v, uint64_t idx, uint64_t *off, uint8_t out[4096])
{
    uint64_t first = idx & ~511ull; /* 512 entries per 4 KiB */
    *off = v->bat_off + first * 8;
    for (uint64_t i = 0; i < 512; i++)
        wr_le64(out + i * 8, first + i < v->nentries ? v->bat[first + i] : 0);
}

static int tx_commit(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    if (!v->ntx) return 0;
    int r = session_begin(d);
    if (r) return r;
    if (d->flags & DISK_BULK) {
        for (int i = 0; i < v->ntx && !r; i++)
            r = disk_pwrite(d, v->tx[i].data, 4096, v->tx[i].off);
        v->ntx = 0;
        return r;
    }
    uint32_t n = (uint32_t)v->ntx;
    uint32_t hdr_secs = (uint32_t)((64 + 32 * (uint64_t)n + 4095) / 4096);
    uint64_t len = (uint64_t)(hdr_secs + n) * 4096;
    if (len > v->log_len) return disk_err(d, ENOSPC, "log too small for a metadata update");
    uint8_t *e = calloc(1, len);
    if (!e) return disk_err(d, ENOMEM, "out of memory");
    uint64_t seq = v->log_seq++;
    memcpy(e, "loge", 4);
    wr_le32(e + 8, (uint32_t)len);
    wr_le32(e + 12, 0); /* tail: this entry is the whole active sequence */
    wr_le64(e + 16, seq);
    wr_le32(e + 24, n);
    memcpy(e + 32, v->lg, 16);
    wr_le64(e + 48, d->file_end);
    wr_le64(e + 56, d->file_end);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *ds = e + 64 + i * 32;
        const uint8_t *src = v->tx[i].data;
        memcpy(ds, "desc", 4);
        memcpy(ds + 4, src + 4092, 4);
        memcpy(ds + 8, src, 8);
        wr_le64(ds + 16, v->tx[i].off);
        wr_le64(ds + 24, seq);
        uint8_t *sec = e + (uint64_t)(hdr_secs + i) * 4096;
        memcpy(sec, "data", 4);
        wr_le32(sec + 4, (uint32_t)(seq >> 32));
        memcpy(sec + 8, src + 8, 4084);
        wr_le32(sec + 4092, (uint32_t)seq);
    }
    wr_le32(e + 4, crc32c(0, e, len));
    r = disk_pwrite(d, e, len, v->log_off);
    free(e);
    if (!r) r = disk_sync(d);
    for (int i = 0; i < v->ntx && !r; i++)
        r = disk_pwrite(d, v->tx[i].data, 4096, v->tx[i].off);
    if (!r) r = disk_sync(d);
    v->ntx = 0;
    return r;
}

static int tx_add_bat(struct hvp_disk *d, uint64_t idx)
{
    struct vhdx *v = d->priv;
    uint8_t sec[4096];
    uint64_t off;
    bat_sector(v, idx, &off, sec);
    int r = tx_add(d, off, sec);
    if (r == -EAGAIN) {
        r = tx_commit(d);
        if (!r) r = tx_add(d, off, sec);
    }
    return r;
}

struct log_entry {
    uint64_t pos, seq, len, flushed, last;
    uint32_t tail;
};

/* Validates the entry at pos (wrapping); copies it into *out (malloc). */
static bool log_entry_valid(const uint8_t *log, uint64_t loglen, uint64_t pos, const uint8_t lg[16],
                            struct log_entry *le, uint8_t **out)
{
    const uint8_t *h = log + pos;
    if (memcmp(h, "loge", 4)) return false;
    uint64_t len = rd_le32(h + 8);
    if (len < 4096 || len % 4096 || len > loglen) return false;
    if (memcmp(h + 32, lg, 16)) return false;
    uint8_t *e = malloc(len);
    if (!e) return false;
    for (uint64_t i = 0; i < len; i += 4096)
        memcpy(e + i, log + (pos + i) % loglen, 4096);
    uint32_t stored = rd_le32(e + 4);
    wr_le32(e + 4, 0);
    bool ok = crc32c(0, e, len) == stored;
    wr_le32(e + 4, stored);
    uint64_t seq = rd_le64(e + 16);
    uint32_t n = rd_le32(e + 24);
    uint32_t tail = rd_le32(e + 12);
    uint64_t hdr_secs = (64 + 32 * (uint64_t)n + 4095) / 4096;
    if (!ok || seq == 0 || tail % 4096 || tail >= loglen || hdr_secs * 4096 > len) ok = false;
    uint64_t ndata = 0;
    for (uint32_t i = 0; ok && i < n; i++) {
        const uint8_t *ds = e + 64 + (uint64_t)i * 32;
        if (!memcmp(ds, "desc", 4)) {
            uint64_t s = (hdr_secs + ndata) * 4096;
            if (s + 4096 > len || rd_le64(ds + 24) != seq || rd_le64(ds + 16) % 4096) {
                ok = false;
                break;
            }
            const uint8_t *sec = e + s;
            if (memcmp(sec, "data", 4) || rd_le32(sec + 4) != (uint32_t)(seq >> 32) ||
                rd_le32(sec + 4092) != (uint32_t)seq)
                ok = false;
            ndata++;
        } else if (!memcmp(ds, "zero", 4)) {
            if (rd_le64(ds + 24) != seq || rd_le64(ds + 16) % 4096 || rd_le64(ds + 8) % 4096)
                ok = false;
        } else {
            ok = false;
        }
    }
    if (ok && (hdr_secs + ndata) * 4096 != len) ok = false;
    if (!ok) {
        free(e);
        return false;
    }
    le->pos = pos;
    le->seq = seq;
    le->len = len;
    le->tail = tail;
    le->flushed = rd_le64(e + 48);
    le->last = rd_le64(e + 56);
    *out = e;
    return true;
}

static int log_apply_entry(struct hvp_disk *d, const uint8_t *e, uint64_t last)
{
    uint32_t n = rd_le32(e + 24);
    uint64_t hdr_secs = (64 + 32 * (uint64_t)n + 4095) / 4096, ndata = 0;
    uint8_t sec[4096];
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *ds = e + 64 + (uint64_t)i * 32;
        uint64_t off = rd_le64(ds + 16);
        uint64_t nb = !memcmp(ds, "desc", 4) ? 4096 : rd_le64(ds + 8);
        if (off < MiB || off > last || nb > last - off)
            return disk_err(d, EINVAL,
                            "log entry writes outside the file (offset %llu, %llu bytes)",
                            (unsigned long long)off, (unsigned long long)nb);
        int r;
        if (!memcmp(ds, "desc", 4)) {
            const uint8_t *src = e + (hdr_secs + ndata++) * 4096;
            memcpy(sec, ds + 8, 8);
            memcpy(sec + 8, src + 8, 4084);
            memcpy(sec + 4092, ds + 4, 4);
            r = disk_pwrite(d, sec, 4096, off);
        } else {
            r = 0;
            if (d->rdonly)
                r = disk_err(d, EBADF, "opened read-only");
            else if (fallocate(d->fd, FALLOC_FL_ZERO_RANGE, (off_t)off, (off_t)nb) < 0) {
                static const uint8_t z[65536];
                for (uint64_t o = 0; o < nb && !r; o += sizeof z)
                    r = disk_pwrite(d, z, min_u64(sizeof z, nb - o), off + o);
            }
        }
        if (r) return r;
    }
    return 0;
}

static int log_replay(struct hvp_disk *d, uint64_t fs)
{
    struct vhdx *v = d->priv;
    uint64_t ll = v->log_len;
    uint8_t *log = malloc(ll);
    if (!log) return disk_err(d, ENOMEM, "out of memory");
    int r = disk_pread(d, log, ll, v->log_off);
    if (r) {
        free(log);
        return r;
    }
    /* candidate heads, by sequence number */
    struct log_entry best = {0};
    bool have = false;
    uint64_t nent = ll / 4096;
    struct log_entry *all = calloc(nent, sizeof *all);
    uint8_t **bufs = calloc(nent, sizeof *bufs);
    if (!all || !bufs) {
        free(all);
        free(bufs);
        free(log);
        return disk_err(d, ENOMEM, "out of memory");
    }
    for (uint64_t p = 0; p < ll; p += 4096) {
        struct log_entry le;
        uint8_t *e;
        if (log_entry_valid(log, ll, p, v->lg, &le, &e)) {
            all[p / 4096] = le;
            bufs[p / 4096] = e;
        }
    }
    /* the valid sequence ending at the highest sequence number: try heads
     * from the highest sequence number down */
    uint64_t order[64];
    int norder = 0;
    uint64_t below = UINT64_MAX;
    for (;;) {
        have = false;
        uint64_t hi = 0;
        for (uint64_t i = 0; i < nent; i++)
            if (bufs[i] && all[i].seq < below && all[i].seq > hi)
                hi = all[i].seq, best = all[i], have = true;
        if (!have) break;
        below = best.seq;
        uint64_t pos = best.tail;
        norder = 0;
        bool ok = false;
        uint64_t prev = 0;
        for (int steps = 0; steps < 64; steps++) {
            struct log_entry *le = bufs[pos / 4096] ? &all[pos / 4096] : NULL;
            if (!le || (prev && le->seq != prev + 1) || le->seq > best.seq) break;
            order[norder++] = pos / 4096;
            prev = le->seq;
            if (le->pos == best.pos) {
                ok = true;
                break;
            }
            pos = (pos + le->len) % ll;
        }
        if (ok) break;
    }
    if (have && (best.last > fs + (16ull << 30) || best.flushed > best.last)) {
        r = disk_err(d, EINVAL, "the log's file offsets are invalid");
    } else if (have) {
        if (fs < best.flushed) {
            r = disk_err(d, EINVAL,
                         "file is shorter (%llu bytes) than its log requires (%llu): truncated",
                         (unsigned long long)fs, (unsigned long long)best.flushed);
        } else {
            for (int i = 0; i < norder && !r; i++)
                r = log_apply_entry(d, bufs[order[i]], best.last);
            if (!r && fs < best.last) r = disk_truncate(d, best.last);
        }
    }
    for (uint64_t i = 0; i < nent; i++)
        free(bufs[i]);
    free(bufs);
    free(all);
    free(log);
    if (r) return r;
    r = disk_sync(d);
    if (r) return r;
    memset(v->lg, 0, 16);
    return header_update(d);
}

/* ---- map / write ---- */

static uint8_t *get_sbm(struct hvp_disk *d, uint64_t chunk, bool create, int *err)
{
    struct vhdx *v = d->priv;
    if (!v->sbm) {
        v->sbm = calloc(v->nchunks, sizeof *v->sbm);
        if (!v->sbm) {
            *err = disk_err(d, ENOMEM, "out of memory");
            return NULL;
        }
    }
    if (v->sbm[chunk]) return v->sbm[chunk];
    uint64_t e = v->bat[sb_idx(v, chunk)];
    if ((e & 7) != PB_FULLY && !create) return NULL;
    uint8_t *b = calloc(1, SB_SIZE);
    if (!b) {
        *err = disk_err(d, ENOMEM, "out of memory");
        return NULL;
    }
    if ((e & 7) == PB_FULLY) {
        int r = disk_pread(d, b, SB_SIZE, e & ~0xFFFFFull);
        if (r) {
            free(b);
            *err = r;
            return NULL;
        }
    }
    v->sbm[chunk] = b;
    return b;
}

static int vhdx_map(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *foff, uint64_t *run)
{
    struct vhdx *v = d->priv;
    uint64_t bs = d->block_size;
    uint64_t blk = off / bs, in = off % bs;
    *run = min_u64(len, bs - in);
    uint64_t e = v->bat[bat_idx(v, blk)];
    switch (e & 7) {
    case PB_FULLY: *foff = (e & ~0xFFFFFull) + in; return MAP_DATA;
    case PB_PARTIAL: {
        *foff = (e & ~0xFFFFFull) + in;
        int r = 0;
        uint64_t chunk = blk / v->cr;
        uint8_t *bm = get_sbm(d, chunk, false, &r);
        if (!bm) return r ? r : MAP_PARENT;
        uint64_t s = (blk % v->cr) * (bs / 512) + in / 512;
        uint64_t end = s + (*run + 511) / 512;
        bool set = bm[s / 8] & (1u << (s % 8));
        uint64_t x = s + 1;
        while (x < end && !!(bm[x / 8] & (1u << (x % 8))) == set)
            x++;
        *run = min_u64(*run, (x - s) * 512);
        return set ? MAP_DATA : MAP_PARENT;
    }
    case PB_NOT_PRESENT: return d->type == HVP_DISK_TYPE_DIFF ? MAP_PARENT : MAP_ZERO;
    default: return MAP_ZERO;
    }
}

static int alloc_space(struct hvp_disk *d, uint64_t len, uint64_t *off)
{
    uint64_t o = round_up(d->file_end, MiB);
    int r = disk_truncate(d, o + len);
    if (r) return r;
    d->file_end = o + len;
    *off = o;
    return 0;
}

static int set_bits(struct hvp_disk *d, uint64_t blk, uint64_t in, uint64_t n)
{
    struct vhdx *v = d->priv;
    uint64_t chunk = blk / v->cr;
    int r = 0;
    uint64_t sbi = sb_idx(v, chunk);
    if ((v->bat[sbi] & 7) != PB_FULLY) {
        uint64_t o;
        r = alloc_space(d, SB_SIZE, &o);
        if (r) return r;
        v->bat[sbi] = o | PB_FULLY;
        r = tx_add_bat(d, sbi);
        if (r) return r;
    }
    uint8_t *bm = get_sbm(d, chunk, true, &r);
    if (!bm) return r;
    uint64_t s0 = (blk % v->cr) * (d->block_size / 512) + in / 512, s1 = s0 + n / 512;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t s = s0; s < s1; s++) {
        if (!(bm[s / 8] & (1u << (s % 8)))) {
            bm[s / 8] |= (uint8_t)(1u << (s % 8));
            if (lo == UINT64_MAX) lo = s / 8 / 4096;
            hi = s / 8 / 4096;
        }
    }
    uint64_t base = v->bat[sbi] & ~0xFFFFFull;
    for (uint64_t sec = lo; lo != UINT64_MAX && sec <= hi && !r; sec++) {
        r = tx_add(d, base + sec * 4096, bm + sec * 4096);
        if (r == -EAGAIN) {
            r = tx_commit(d);
            if (!r) r = tx_add(d, base + sec * 4096, bm + sec * 4096);
        }
    }
    return r;
}

static int vhdx_write(struct hvp_disk *d, uint64_t off, const void *buf, uint64_t len)
{
    struct vhdx *v = d->priv;
    const uint8_t *p = buf;
    uint64_t bs = d->block_size;
    int r = session_begin(d);
    while (!r && len) {
        uint64_t blk = off / bs, in = off % bs;
        uint64_t n = min_u64(len, bs - in);
        uint64_t idx = bat_idx(v, blk);
        uint64_t e = v->bat[idx];
        unsigned st = e & 7;
        if (st == PB_FULLY || st == PB_PARTIAL) {
            r = disk_pwrite(d, p, n, (e & ~0xFFFFFull) + in);
            if (!r && st == PB_PARTIAL) r = set_bits(d, blk, in, n);
        } else {
            uint64_t o;
            r = alloc_space(d, bs, &o);
            if (!r) r = disk_pwrite(d, p, n, o + in);
            if (r) break;
            bool whole = in == 0 && (n == bs || off + n >= d->size);
            if (d->type == HVP_DISK_TYPE_DIFF && st == PB_NOT_PRESENT && !whole) {
                v->bat[idx] = o | PB_PARTIAL;
                r = set_bits(d, blk, in, n);
            } else {
                v->bat[idx] = o | PB_FULLY;
            }
            if (!r) r = tx_add_bat(d, idx);
        }
        off += n, p += n, len -= n;
    }
    if (!r)
        r = tx_commit(d);
    else
        v->ntx = 0;
    return r;
}

static int vhdx_discard(struct hvp_disk *d, uint64_t off, uint64_t len)
{
    struct vhdx *v = d->priv;
    uint64_t bs = d->block_size;
    int r = session_begin(d);
    uint8_t *z = NULL;
    while (!r && len) {
        uint64_t blk = off / bs, in = off % bs;
        uint64_t n = min_u64(len, bs - in);
        uint64_t idx = bat_idx(v, blk);
        unsigned st = v->bat[idx] & 7;
        bool whole = in == 0 && (n == bs || off + n >= d->size);
        if (whole && d->type != HVP_DISK_TYPE_FIXED) {
            if (st != PB_ZERO) {
                v->bat[idx] = PB_ZERO;
                r = tx_add_bat(d, idx);
            }
        } else if (st == PB_FULLY && d->type == HVP_DISK_TYPE_FIXED &&
                   fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             (off_t)((v->bat[idx] & ~0xFFFFFull) + in), (off_t)n) == 0) {
            /* punched */
        } else if (st == PB_FULLY || st == PB_PARTIAL ||
                   (d->type == HVP_DISK_TYPE_DIFF && st == PB_NOT_PRESENT)) {
            if (!z && !(z = calloc(1, MiB))) r = disk_err(d, ENOMEM, "out of memory");
            for (uint64_t o = 0; !r && o < n; o += MiB) {
                r = vhdx_write(d, off + o, z, min_u64(MiB, n - o));
            }
        }
        off += n, len -= n;
    }
    free(z);
    if (!r)
        r = tx_commit(d);
    else
        v->ntx = 0;
    return r;
}

static int vhdx_flush(struct hvp_disk *d)
{
    return tx_commit(d);
}

static int vhdx_close(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    if (!v) return 0;
    int r = 0;
    if (v->session && !d->rdonly && !(d->flags & DISK_BULK)) {
        /* metadata is already in place and durable; the header's flush
         * also makes the data durable */
        memset(v->lg, 0, 16);
        r = header_update(d);
    }
    if (v->sbm)
        for (uint64_t i = 0; i < v->nchunks; i++)
            free(v->sbm[i]);
    free(v->sbm);
    free(v->bat);
    free(v->tx);
    free(v);
    d->priv = NULL;
    return r;
}

static uint64_t vhdx_allocated(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    uint64_t n = 0;
    for (uint64_t b = 0; b < v->data_blocks; b++) {
        unsigned st = v->bat[bat_idx(v, b)] & 7;
        if (st == PB_FULLY || st == PB_PARTIAL) n++;
    }
    return n * d->block_size;
}

static int vhdx_check(struct hvp_disk *d)
{
    struct vhdx *v = d->priv;
    if (!d->repairing || !d->nproblems || d->rdonly) return 0;
    /* rewrite the sanitized BAT through the log, and both headers */
    for (uint64_t i = 0; i < v->nentries; i += 512) {
        int r = tx_add_bat(d, i);
        if (r) return r;
    }
    int r = tx_commit(d);
    if (!r) r = header_update(d);
    return r;
}

static int vhdx_resize(struct hvp_disk *d, uint64_t size)
{
    struct vhdx *v = d->priv;
    if (d->type == HVP_DISK_TYPE_DIFF) return -ENOTSUP;
    uint64_t bs = d->block_size, old = d->size;
    uint64_t db = (size + bs - 1) / bs;
    uint64_t ne = db + (db - 1) / v->cr;
    if (ne * 8 > v->bat_len) return -ENOTSUP;
    int r;
    /* the grown part of the old last block must read as zero */
    uint64_t lastb = old / bs;
    if (size > old && old % bs && lastb < v->data_blocks) {
        uint64_t e = v->bat[bat_idx(v, lastb)];
        if ((e & 7) == PB_FULLY) {
            static const uint8_t z[4096];
            uint64_t end = min_u64((lastb + 1) * bs, size);
            r = 0;
            for (uint64_t o = old; o < end && !r; o += sizeof z)
                r = disk_pwrite(d, z, min_u64(sizeof z, end - o), (e & ~0xFFFFFull) + o % bs);
            if (r) return r;
        }
    }
    uint64_t *nb = malloc(ne * 8);
    if (!nb) return disk_err(d, ENOMEM, "out of memory");
    memset(nb, 0, ne * 8);
    memcpy(nb, v->bat, min_u64(ne, v->nentries) * 8);
    uint64_t *oldbat = v->bat;
    uint64_t oldn = v->nentries;
    v->bat = nb;
    v->nentries = ne;
    r = 0;
    for (uint64_t b = v->data_blocks; b < db && !r; b++) {
        if (d->type == HVP_DISK_TYPE_FIXED) {
            uint64_t o = 0;
            r = alloc_space(d, bs, &o);
            v->bat[bat_idx(v, b)] = o | PB_FULLY;
        }
    }
    /* every BAT sector that changed, and the cut entries (now zero) */
    uint64_t hi = ne > oldn ? ne : oldn;
    for (uint64_t i = 0; i < hi && !r; i += 512) {
        uint64_t n = min_u64(512, hi - i);
        bool changed = false;
        for (uint64_t k = i; k < i + n; k++) {
            uint64_t a = k < oldn ? oldbat[k] : 0, b = k < ne ? nb[k] : 0;
            if (a != b || (k >= oldn) != (k >= ne)) changed = true;
        }
        if (changed && i < ne)
            r = tx_add_bat(d, i);
        else if (changed) {
            uint8_t sec[4096] = {0};
            r = tx_add(d, v->bat_off + i * 8, sec);
            if (r == -EAGAIN && !(r = tx_commit(d))) r = tx_add(d, v->bat_off + i * 8, sec);
        }
    }
    uint8_t sec[4096];
    uint64_t so = v->vsize_off & ~4095ull;
    if (!r) r = disk_pread(d, sec, 4096, so);
    if (!r) {
        wr_le64(sec + (v->vsize_off - so), size);
        r = tx_add(d, so, sec);
        if (r == -EAGAIN && !(r = tx_commit(d))) r = tx_add(d, so, sec);
    }
    if (!r) r = tx_commit(d);
    if (r) {
        v->ntx = 0;
        free(nb);
        v->bat = oldbat;
        v->nentries = oldn;
        return r;
    }
    free(oldbat);
    d->size = size;
    v->data_blocks = db;
    v->nchunks = (db + v->cr - 1) / v->cr;
    return 0;
}

static const struct disk_driver vhdx_driver = {
    .map = vhdx_map,
    .write = vhdx_write,
    .discard = vhdx_discard,
    .flush = vhdx_flush,
    .close = vhdx_close,
    .allocated = vhdx_allocated,
    .check = vhdx_check,
    .resize = vhdx_resize,
};

/* ---- open ---- */

static bool header_valid(const uint8_t *h)
{
    if (memcmp(h, "head", 4)) return false;
    uint8_t t[4096];
    memcpy(t, h, 4096);
    wr_le32(t + 4, 0);
    if (crc32c(0, t, 4096) != rd_le32(h + 4)) return false;
    return rd_le16(h + 66) == 1;
}

static bool region_valid(const uint8_t *rt)
{
    if (memcmp(rt, "regi", 4)) return false;
    uint8_t *t = malloc(RT_SIZE);
    if (!t) return false;
    memcpy(t, rt, RT_SIZE);
    wr_le32(t + 4, 0);
    bool ok = crc32c(0, t, RT_SIZE) == rd_le32(rt + 4) && rd_le32(rt + 8) <= 2047;
    free(t);
    return ok;
}

struct rng {
    uint64_t s, e;
    uint64_t idx;
};

static int cmp_rng(const void *a, const void *b)
{
    const struct rng *x = a, *y = b;
    return x->s < y->s ? -1 : x->s > y->s;
}

static int parse_locator(struct hvp_disk *d, const uint8_t *it, uint32_t len)
{
    if (len < 20 || memcmp(it, G_PLOC_TYPE, 16))
        return disk_problem(d, "parent locator has an unknown type");
    uint16_t cnt = rd_le16(it + 18);
    if (20 + (uint64_t)cnt * 12 > len)
        return disk_problem(d, "parent locator entries run past the item");
    char *rel = NULL, *abs = NULL, *vol = NULL;
    bool have_link = false;
    int r = 0;
    for (uint16_t i = 0; i < cnt && !r; i++) {
        const uint8_t *en = it + 20 + i * 12;
        uint32_t ko = rd_le32(en), vo = rd_le32(en + 4);
        uint16_t kl = rd_le16(en + 8), vl = rd_le16(en + 10);
        if ((uint64_t)ko + kl > len || (uint64_t)vo + vl > len || kl == 0) {
            r = disk_problem(d, "parent locator entry %u runs past the item", i);
            break;
        }
        char key[256], val[2048];
        if (utf16_to_utf8(it + ko, kl, true, key, sizeof key) < 0 ||
            utf16_to_utf8(it + vo, vl, true, val, sizeof val) < 0) {
            r = disk_problem(d, "parent locator entry %u is not valid UTF-16", i);
            break;
        }
        if (!strcmp(key, "parent_linkage")) {
            if (guid_parse(val, d->pref.linkage)) {
                r = disk_problem(d, "parent_linkage \"%s\" is not a GUID", val);
                break;
            }
            have_link = true;
        } else if (!strcmp(key, "relative_path") && !rel) {
            rel = strdup(val);
        } else if (!strcmp(key, "absolute_win32_path") && !abs) {
            abs = strdup(val);
        } else if (!strcmp(key, "volume_path") && !vol) {
            vol = strdup(val);
        }
    }
    if (!r && !have_link) r = disk_problem(d, "parent locator has no parent_linkage");
    struct disk_parent_ref *pr = &d->pref;
    if (!r) {
        if (rel) pr->cand[pr->ncand++] = path_resolve_rel(d->path, rel);
        if (abs) {
            for (char *p = abs; *p; p++)
                if (*p == '\\') *p = '/';
            pr->cand[pr->ncand++] = strdup(abs);
        }
        pr->name = strdup(rel ? rel : abs ? abs : vol ? vol : "(no path)");
    }
    free(rel);
    free(abs);
    free(vol);
    return r;
}

static int read_metadata(struct hvp_disk *d, uint64_t fs)
{
    struct vhdx *v = d->priv;
    uint8_t *m = malloc(64 * KiB);
    if (!m) return disk_err(d, ENOMEM, "out of memory");
    int r = disk_pread(d, m, 64 * KiB, v->meta_off);
    if (r) goto out;
    if (memcmp(m, "metadata", 8)) {
        r = disk_err(d, EINVAL, "metadata table signature is missing");
        goto out;
    }
    uint16_t cnt = rd_le16(m + 10);
    if (cnt > 2047) {
        r = disk_err(d, EINVAL, "metadata table has %u entries (at most 2047)", cnt);
        goto out;
    }
    bool have_fp = false, have_size = false, have_lss = false;
    uint32_t flags = 0;
    for (uint16_t i = 0; i < cnt; i++) {
        const uint8_t *e = m + 32 + i * 32;
        uint32_t io = rd_le32(e + 16), il = rd_le32(e + 20), fl = rd_le32(e + 24);
        if (il == 0) continue;
        if (io < 64 * KiB || (uint64_t)io + il > v->meta_len || il > MiB) {
            r = disk_err(d, EINVAL, "metadata item %u lies outside the metadata region", i);
            goto out;
        }
        uint8_t *it = malloc(il);
        if (!it) {
            r = disk_err(d, ENOMEM, "out of memory");
            goto out;
        }
        r = disk_pread(d, it, il, v->meta_off + io);
        if (r) {
            free(it);
            goto out;
        }
        if (!memcmp(e, G_FILEPARAM, 16) && il >= 8) {
            d->block_size = rd_le32(it);
            flags = rd_le32(it + 4);
            have_fp = true;
        } else if (!memcmp(e, G_VSIZE, 16) && il >= 8) {
            d->size = rd_le64(it);
            v->vsize_off = v->meta_off + io;
            have_size = true;
        } else if (!memcmp(e, G_PAGE83, 16) && il >= 16) {
            memcpy(v->page83, it, 16);
        } else if (!memcmp(e, G_LSS, 16) && il >= 4) {
            uint32_t lss = rd_le32(it);
            have_lss = true;
            if (lss != 512)
                r = disk_err(d, ENOTSUP, "logical sector size %u is not supported (only 512)", lss);
        } else if (!memcmp(e, G_PSS, 16) && il >= 4) {
            uint32_t pss = rd_le32(it);
            if (pss != 512 && pss != 4096)
                r = disk_problem(d, "physical sector size %u is invalid", pss);
            else
                d->phys_sector = pss;
        } else if (!memcmp(e, G_PLOC, 16)) {
            r = parse_locator(d, it, il);
        } else if (fl & 4) {
            r = disk_err(d, ENOTSUP, "unknown required metadata item %u", i);
        }
        free(it);
        if (r) goto out;
    }
    if (!have_fp || !have_size || !have_lss) {
        r = disk_err(d, EINVAL, "required metadata (%s) is missing",
                     !have_fp     ? "file parameters"
                     : !have_size ? "virtual disk size"
                                  : "logical sector size");
        goto out;
    }
    uint32_t bs = d->block_size;
    if (!is_pow2(bs) || bs < MiB || bs > MAX_BLOCK) {
        r = disk_err(d, EINVAL, "block size %u is not a power of two between 1 and 256 MiB", bs);
        goto out;
    }
    if (d->size == 0 || d->size % 512 || d->size > HVP_DISK_VHDX_MAX) {
        r = disk_err(d, EINVAL, "virtual size %llu is invalid", (unsigned long long)d->size);
        goto out;
    }
    if (flags & 2) {
        d->type = HVP_DISK_TYPE_DIFF;
        if (!d->pref.ncand && !d->checking) {
            r = disk_err(d, EINVAL, "differencing disk without a parent locator");
            goto out;
        }
    } else {
        d->type = flags & 1 ? HVP_DISK_TYPE_FIXED : HVP_DISK_TYPE_DYNAMIC;
    }
    (void)fs;
out:
    free(m);
    return r;
}

static int read_bat(struct hvp_disk *d, uint64_t fs)
{
    struct vhdx *v = d->priv;
    uint64_t bs = d->block_size;
    v->cr = (uint32_t)((1ull << 23) * 512 / bs);
    v->data_blocks = (d->size + bs - 1) / bs;
    v->nchunks = (v->data_blocks + v->cr - 1) / v->cr;
    v->nentries = d->type == HVP_DISK_TYPE_DIFF ? v->nchunks * (v->cr + 1)
                                                : v->data_blocks + (v->data_blocks - 1) / v->cr;
    if (v->nentries * 8 > v->bat_len)
        return disk_err(d, EINVAL, "BAT region (%llu bytes) is too small for %llu entries",
                        (unsigned long long)v->bat_len, (unsigned long long)v->nentries);
    v->bat = malloc(v->nentries * 8);
    if (!v->bat) return disk_err(d, ENOMEM, "out of memory");
    int r = disk_pread(d, v->bat, v->nentries * 8, v->bat_off);
    if (r) return r;
    for (uint64_t i = 0; i < v->nentries; i++)
        v->bat[i] = rd_le64(&v->bat[i]);
    struct rng fixed[4] = {
        {0, 1 * MiB, 0},
        {v->log_off, v->log_off + v->log_len, 0},
        {v->bat_off, v->bat_off + v->bat_len, 0},
        {v->meta_off, v->meta_off + v->meta_len, 0},
    };
    struct rng *used = malloc(sizeof *used * (v->nentries + 1));
    if (!used) return disk_err(d, ENOMEM, "out of memory");
    uint64_t nu = 0;
    for (uint64_t i = 0; i < v->nentries && !r; i++) {
        uint64_t e = v->bat[i];
        unsigned st = e & 7;
        bool is_sb = (i % (v->cr + 1)) == v->cr;
        uint64_t blen;
        if (is_sb) {
            if (st == 0) continue;
            if (st != PB_FULLY) {
                r = disk_problem(d, "BAT entry %llu: invalid sector-bitmap state %u",
                                 (unsigned long long)i, st);
                v->bat[i] = 0;
                continue;
            }
            if (d->type != HVP_DISK_TYPE_DIFF) continue; /* ignored outside differencing disks */
            blen = SB_SIZE;
        } else {
            uint64_t blk = i - i / (v->cr + 1);
            if (st == PB_UNMAPPED_Q) {
                v->bat[i] = (e & ~7ull) | PB_UNMAPPED;
                continue;
            }
            if (st == 4 || (st == PB_PARTIAL && d->type != HVP_DISK_TYPE_DIFF)) {
                r = disk_problem(d, "BAT entry %llu: invalid payload state %u",
                                 (unsigned long long)i, st);
                v->bat[i] = PB_ZERO;
                continue;
            }
            if (st != PB_FULLY && st != PB_PARTIAL) continue;
            if (blk >= v->data_blocks) continue;
            blen = min_u64(bs, d->size - blk * bs);
        }
        uint64_t o = e & ~0xFFFFFull;
        if (o > fs || blen > fs - o) {
            r = disk_problem(d, "BAT entry %llu points past the end of the file (offset %llu)",
                             (unsigned long long)i, (unsigned long long)o);
            v->bat[i] = is_sb ? 0 : PB_ZERO;
            continue;
        }
        bool bad = false;
        for (int k = 0; k < 4; k++)
            if (o < fixed[k].e && fixed[k].s < o + blen) bad = true;
        if (bad) {
            r = disk_problem(d, "BAT entry %llu overlaps the metadata (offset %llu)",
                             (unsigned long long)i, (unsigned long long)o);
            v->bat[i] = is_sb ? 0 : PB_ZERO;
            continue;
        }
        used[nu++] = (struct rng){o, o + blen, i};
    }
    if (!r && nu > 1) {
        qsort(used, nu, sizeof *used, cmp_rng);
        for (uint64_t k = 1; k < nu && !r; k++)
            if (used[k].s < used[k - 1].e) {
                r = disk_problem(d, "BAT entries %llu and %llu overlap",
                                 (unsigned long long)used[k - 1].idx,
                                 (unsigned long long)used[k].idx);
                v->bat[used[k].idx] = PB_ZERO;
            }
    }
    free(used);
    return r;
}

int vhdx_open(struct hvp_disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0) return disk_err(d, errno, "%s", strerror(errno));
    uint64_t fs = (uint64_t)st.st_size;
    struct vhdx *v = calloc(1, sizeof *v);
    if (!v) return disk_err(d, ENOMEM, "out of memory");
    d->priv = v;
    d->drv = &vhdx_driver;
    d->format = HVP_DISK_FMT_VHDX;
    if (fs < 1 * MiB)
        return disk_err(d, EINVAL, "file too small to be a VHDX (%llu bytes; truncated?)",
                        (unsigned long long)fs);
    uint8_t h[2][4096];
    int r = disk_pread(d, h[0], 4096, HDR1_OFF);
    if (!r) r = disk_pread(d, h[1], 4096, HDR2_OFF);
    if (r) return r;
    bool ok0 = header_valid(h[0]), ok1 = header_valid(h[1]);
    if (!ok0 && !ok1)
        return disk_err(d, EINVAL, "both VHDX headers are damaged (bad signature or checksum)");
    int cur = !ok0 ? 1 : !ok1 ? 0 : rd_le64(h[1] + 8) > rd_le64(h[0] + 8) ? 1 : 0;
    if (!ok0 || !ok1) {
        if (d->checking) {
            r = disk_problem(d, "VHDX header %d is damaged (the other copy is used)", ok0 ? 2 : 1);
            if (r) return r;
        }
    }
    const uint8_t *hh = h[cur];
    v->cur_slot = cur;
    v->seq = rd_le64(hh + 8);
    memcpy(v->fwg, hh + 16, 16);
    memcpy(v->dwg, hh + 32, 16);
    memcpy(v->lg, hh + 48, 16);
    guid_from_ms(d->id, v->dwg);
    v->log_len = rd_le32(hh + 68);
    v->log_off = rd_le64(hh + 72);
    if (v->log_len % MiB || v->log_off % MiB || v->log_off < MiB || v->log_len > MAX_LOG ||
        v->log_off > fs || v->log_len > fs - v->log_off)
        return disk_err(d, EINVAL, "log (offset %llu, %u bytes) lies outside the file",
                        (unsigned long long)v->log_off, v->log_len);
    static const uint8_t zero16[16];
    if (memcmp(v->lg, zero16, 16)) {
        if (d->rdonly) {
            if (!d->checking)
                return disk_err(d, EROFS,
                                "the log must be replayed, which needs a read-write open (run "
                                "'hvp disk check --repair')");
            r = disk_problem(d, "the log holds updates that must be replayed");
            if (r) return r;
        } else {
            if (d->checking) {
                r = disk_problem(d, "the log holds updates that must be replayed (replayed)");
                if (r) return r;
            }
            r = log_replay(d, fs);
            if (r) return r;
            if (fstat(d->fd, &st) == 0) fs = (uint64_t)st.st_size;
        }
    }
    uint8_t *rt = malloc(RT_SIZE);
    if (!rt) return disk_err(d, ENOMEM, "out of memory");
    r = disk_pread(d, rt, RT_SIZE, RT1_OFF);
    if (!r && !region_valid(rt)) {
        if (d->checking) r = disk_problem(d, "region table 1 is damaged (the copy is used)");
        if (!r) r = disk_pread(d, rt, RT_SIZE, RT2_OFF);
        if (!r && !region_valid(rt))
            r = disk_err(d, EINVAL, "both region tables are damaged (bad signature or checksum)");
    }
    uint32_t cnt = r ? 0 : rd_le32(rt + 8);
    bool have_bat = false, have_meta = false;
    for (uint32_t i = 0; i < cnt && !r; i++) {
        const uint8_t *e = rt + 16 + i * 32;
        uint64_t off = rd_le64(e + 16);
        uint32_t len = rd_le32(e + 24), fl = rd_le32(e + 28);
        bool bat = !memcmp(e, G_BAT, 16), meta = !memcmp(e, G_META, 16);
        if (!bat && !meta) {
            if (fl & 1) r = disk_err(d, ENOTSUP, "unknown required region %u", i);
            continue;
        }
        if (off % MiB || len % MiB || len == 0 || off < MiB || off > fs || len > fs - off) {
            r = disk_err(d, EINVAL, "%s region (offset %llu, %u bytes) lies outside the file",
                         bat ? "BAT" : "metadata", (unsigned long long)off, len);
            break;
        }
        if (bat)
            v->bat_off = off, v->bat_len = len, have_bat = true;
        else
            v->meta_off = off, v->meta_len = len, have_meta = true;
    }
    free(rt);
    if (r) return r;
    if (!have_bat || !have_meta)
        return disk_err(d, EINVAL, "the region table has no %s region",
                        have_bat ? "metadata" : "BAT");
    struct rng regs[3] = {{v->log_off, v->log_off + v->log_len, 0},
                          {v->bat_off, v->bat_off + v->bat_len, 1},
                          {v->meta_off, v->meta_off + v->meta_len, 2}};
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++)
            if (regs[a].s < regs[b].e && regs[b].s < regs[a].e)
                return disk_err(d, EINVAL, "the log, BAT and metadata regions overlap");
    r = read_metadata(d, fs);
    if (r) return r;
    r = read_bat(d, fs);
    if (r) return r;
    d->file_end = round_up(fs, MiB);
    return 0;
}

void vhdx_get_ident(struct hvp_disk *d, struct disk_ident *id)
{
    struct vhdx *v = d->priv;
    id->set = true;
    memcpy(id->id, d->id, 16);
    memcpy(id->page83, v->page83, 16);
}

/* ---- create ---- */

static size_t put_kv(uint8_t *item, size_t *pos, uint8_t *entry, const char *k, const char *val)
{
    ssize_t kl = utf8_to_utf16(k, item + *pos, 4096, true);
    if (kl <= 0) return 0;
    wr_le32(entry, (uint32_t)*pos);
    wr_le16(entry + 8, (uint16_t)kl);
    *pos += (size_t)kl;
    ssize_t vl = utf8_to_utf16(val, item + *pos, 4096, true);
    if (vl <= 0) return 0;
    wr_le32(entry + 4, (uint32_t)*pos);
    wr_le16(entry + 10, (uint16_t)vl);
    *pos += (size_t)vl;
    return 1;
}

int vhdx_create(const struct disk_create_args *a, char *err, size_t errlen)
{
    struct hvp_disk tmp = {.fd = -1};
    struct hvp_disk *d = &tmp;
    uint64_t bs = a->block_size ? a->block_size : 32 * MiB;
    if (!is_pow2(bs) || bs < MiB || bs > MAX_BLOCK) {
        snprintf(err, errlen, "block size %llu is not a power of two between 1 and 256 MiB",
                 (unsigned long long)bs);
        return -EINVAL;
    }
    uint64_t cr = (1ull << 23) * 512 / bs;
    uint64_t nblocks = (a->size + bs - 1) / bs;
    uint64_t nchunks = (nblocks + cr - 1) / cr;
    uint64_t nentries =
        a->type == HVP_DISK_TYPE_DIFF ? nchunks * (cr + 1) : nblocks + (nblocks - 1) / cr;
    uint64_t log_off = 1 * MiB, log_len = 1 * MiB;
    uint64_t meta_off = 2 * MiB, meta_len = 1 * MiB;
    uint64_t bat_off = 3 * MiB, bat_len = round_up(nentries * 8, MiB);
    uint64_t data_off = bat_off + bat_len;
    uint8_t *buf = calloc(1, MiB);
    uint8_t *bat = NULL;
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    d->fd = open(a->path, O_RDWR | O_CREAT | O_CLOEXEC | (a->overwrite ? O_TRUNC : O_EXCL), 0644);
    if (d->fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s", e == EEXIST ? "file exists" : strerror(e));
        free(buf);
        return -e;
    }
    int r;
    /* file type identifier */
    memcpy(buf, "vhdxfile", 8);
    utf8_to_utf16("hvp " HVP_DISK_CREATOR, buf + 8, 512, true);
    r = disk_pwrite(d, buf, 64 * KiB, 0);
    /* headers */
    uint8_t fwg[16], dwg[16], lg[16] = {0}, g[16];
    uuid_generate_v4(g);
    guid_to_ms(fwg, g);
    if (a->ident && a->ident->set)
        memcpy(g, a->ident->id, 16);
    else
        uuid_generate_v4(g);
    guid_to_ms(dwg, g);
    uint8_t h[4096];
    header_build(h, 1, fwg, dwg, lg, log_off, (uint32_t)log_len);
    if (!r) r = disk_pwrite(d, h, 4096, HDR1_OFF);
    header_build(h, 2, fwg, dwg, lg, log_off, (uint32_t)log_len);
    if (!r) r = disk_pwrite(d, h, 4096, HDR2_OFF);
    /* region tables */
    memset(buf, 0, RT_SIZE);
    memcpy(buf, "regi", 4);
    wr_le32(buf + 8, 2);
    memcpy(buf + 16, G_BAT, 16);
    wr_le64(buf + 32, bat_off);
    wr_le32(buf + 40, (uint32_t)bat_len);
    wr_le32(buf + 44, 1);
    memcpy(buf + 48, G_META, 16);
    wr_le64(buf + 64, meta_off);
    wr_le32(buf + 72, (uint32_t)meta_len);
    wr_le32(buf + 76, 1);
    wr_le32(buf + 4, crc32c(0, buf, RT_SIZE));
    if (!r) r = disk_pwrite(d, buf, RT_SIZE, RT1_OFF);
    if (!r) r = disk_pwrite(d, buf, RT_SIZE, RT2_OFF);
    /* metadata */
    memset(buf, 0, MiB);
    memcpy(buf, "metadata", 8);
    uint8_t *it = buf + 64 * KiB;
    int ne = 0;
    struct {
        const uint8_t *g;
        uint32_t off, len, flags;
    } items[6];
    wr_le32(it, (uint32_t)bs);
    wr_le32(it + 4,
            (a->type == HVP_DISK_TYPE_FIXED ? 1u : 0u) | (a->type == HVP_DISK_TYPE_DIFF ? 2u : 0u));
    items[ne++] = (typeof(items[0])){G_FILEPARAM, 64 * KiB, 8, 4};
    wr_le64(it + 8, a->size);
    items[ne++] = (typeof(items[0])){G_VSIZE, 64 * KiB + 8, 8, 6};
    if (a->ident && a->ident->set)
        memcpy(it + 16, a->ident->page83, 16);
    else {
        uuid_generate_v4(g);
        guid_to_ms(it + 16, g);
    }
    items[ne++] = (typeof(items[0])){G_PAGE83, 64 * KiB + 16, 16, 6};
    wr_le32(it + 32, 512);
    items[ne++] = (typeof(items[0])){G_LSS, 64 * KiB + 32, 4, 6};
    wr_le32(it + 36, 512);
    items[ne++] = (typeof(items[0])){G_PSS, 64 * KiB + 36, 4, 6};
    if (a->type == HVP_DISK_TYPE_DIFF) {
        uint8_t *pl = it + 64;
        memcpy(pl, G_PLOC_TYPE, 16);
        wr_le16(pl + 18, 3);
        size_t pos = 20 + 3 * 12;
        char link[39], relw[4096];
        guid_format(link, a->parent->id);
        snprintf(relw, sizeof relw, "%s", a->parent_rel);
        for (char *p = relw; *p; p++)
            if (*p == '/') *p = '\\';
        if (!put_kv(pl, &pos, pl + 20, "parent_linkage", link) ||
            !put_kv(pl, &pos, pl + 32, "relative_path", relw) ||
            !put_kv(pl, &pos, pl + 44, "absolute_win32_path", a->parent_abs) || pos > 60 * KiB) {
            r = disk_err(d, ENAMETOOLONG, "parent path too long");
        }
        items[ne++] = (typeof(items[0])){G_PLOC, 64 * KiB + 64, (uint32_t)pos, 4};
    }
    wr_le16(buf + 10, (uint16_t)ne);
    for (int i = 0; i < ne; i++) {
        uint8_t *e = buf + 32 + i * 32;
        memcpy(e, items[i].g, 16);
        wr_le32(e + 16, items[i].off);
        wr_le32(e + 20, items[i].len);
        wr_le32(e + 24, items[i].flags);
    }
    if (!r) r = disk_pwrite(d, buf, MiB, meta_off);
    /* BAT */
    bat = calloc(1, bat_len);
    if (!bat && !r) r = disk_err(d, ENOMEM, "out of memory");
    if (!r && a->type == HVP_DISK_TYPE_FIXED)
        for (uint64_t b = 0; b < nblocks; b++)
            wr_le64(bat + (b + b / cr) * 8, (data_off + b * bs) | PB_FULLY);
    if (!r) r = disk_pwrite(d, bat, bat_len, bat_off);
    uint64_t end = data_off + (a->type == HVP_DISK_TYPE_FIXED ? nblocks * bs : 0);
    if (!r) r = disk_truncate(d, end);
    if (!r && fsync(d->fd) < 0) r = disk_err(d, errno, "flush: %s", strerror(errno));
    free(buf);
    free(bat);
    close(d->fd);
    if (r) {
        unlink(a->path);
        snprintf(err, errlen, "%s", d->err);
    }
    return r;
}
