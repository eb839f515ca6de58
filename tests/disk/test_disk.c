/* Disk library: content round trips against in-memory references, parent
 * chains, merge/compact/resize, bad input, locking, the log, the queue. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "hvp/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/hvp-disk-test.XXXXXX", t && *t ? t : "/tmp");
    cr_assert(mkdtemp(dir));
}

static void teardown(void)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(disk, .init = setup, .fini = teardown);

static char *pth(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void mk(const char *name, enum hvp_disk_format f, enum hvp_disk_type t, uint64_t size,
               uint32_t bs, const char *parent)
{
    struct hvp_disk_create_params p = {.format = f,
                                       .type = t,
                                       .size = size,
                                       .block_size = bs,
                                       .parent = parent ? pth(parent) : NULL};
    char err[1024] = "";
    int r = hvp_disk_create(pth(name), &p, err, sizeof err);
    cr_assert_eq(r, 0, "create %s: %s", name, err);
}

static hvp_disk *op(const char *name, unsigned flags)
{
    hvp_disk *d = NULL;
    char err[1024] = "";
    int r = hvp_disk_open(pth(name), flags, &d, err, sizeof err);
    cr_assert_eq(r, 0, "open %s: %s", name, err);
    return d;
}

static int open_err(const char *name, unsigned flags, char *err, size_t n)
{
    hvp_disk *d = NULL;
    int r = hvp_disk_open(pth(name), flags, &d, err, n);
    if (r == 0) hvp_disk_close(d);
    return r;
}

/* random writes (some unaligned) to d and ref */
static void scribble(hvp_disk *d, uint8_t *ref, uint64_t size, uint64_t seed, int n,
                     uint64_t maxlen)
{
    uint8_t *buf = malloc(maxlen);
    uint64_t s = seed | 1;
    for (int i = 0; i < n; i++) {
        uint64_t len = 1 + rnd(&s) % maxlen, off = rnd(&s) % (size - len + 1);
        if (i % 3 == 0) {
            off &= ~511ull;
            len = (len + 511) & ~511ull;
            if (off + len > size) len = size - off;
        }
        for (uint64_t k = 0; k < len; k++)
            buf[k] = (uint8_t)(rnd(&s) | 1);
        cr_assert_eq(hvp_disk_write(d, off, buf, len), 0, "write: %s", hvp_disk_error(d));
        memcpy(ref + off, buf, len);
    }
    free(buf);
}

#define expect_content(d, r, s) expect_content_(d, r, s, __LINE__)
static void expect_content_(hvp_disk *d, const uint8_t *ref, uint64_t size, int line)
{
    cr_assert_eq(hvp_disk_size(d), size);
    uint8_t *got = malloc(size);
    cr_assert_eq(hvp_disk_read(d, 0, got, size), 0, "read: %s", hvp_disk_error(d));
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != ref[i])
            cr_assert_fail("line %d: content differs at offset %llu (got %02x, want %02x)", line,
                           (unsigned long long)i, got[i], ref[i]);
    free(got);
}

static void roundtrip(enum hvp_disk_format f, enum hvp_disk_type t, uint64_t size, uint32_t bs)
{
    mk("img", f, t, size, bs, NULL);
    uint8_t *ref = calloc(1, size);
    hvp_disk *d = op("img", 0);
    scribble(d, ref, size, size ^ bs ^ (uint64_t)t, 60, 200000);
    expect_content(d, ref, size);
    cr_assert_eq(hvp_disk_close(d), 0);
    d = op("img", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    hvp_disk_close(d);
    char err[1024];
    cr_assert_eq(hvp_disk_check(pth("img"), 0, NULL, NULL, err, sizeof err), 0);
    free(ref);
}

Test(disk, raw_roundtrip)
{
    roundtrip(HVP_DISK_FMT_RAW, HVP_DISK_TYPE_FIXED, 3 * 1048576 + 77, 0);
}
Test(disk, vhd_fixed_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_FIXED, 5 * 1048576 + 512, 0);
}
Test(disk, vhd_dynamic_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 5 * 1048576 + 512, 0);
}
Test(disk, vhd_dynamic_small_blocks_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 3 * 1048576 + 1024, 64 * 1024);
}
Test(disk, vhdx_fixed_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_FIXED, 5 * 1048576 + 512, 1048576);
}
Test(disk, vhdx_dynamic_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 5 * 1048576 + 512, 1048576);
}
Test(disk, vhdx_dynamic_default_blocks_roundtrip)
{
    roundtrip(HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 3 * 1048576, 0);
}

static void chain(enum hvp_disk_format f, uint32_t bs)
{
    const uint64_t size = 6 * 1048576 + 1536;
    uint8_t *ref = calloc(1, size);
    mk("base", f, HVP_DISK_TYPE_DYNAMIC, size, bs, NULL);
    hvp_disk *d = op("base", 0);
    scribble(d, ref, size, 1, 40, 300000);
    cr_assert_eq(hvp_disk_close(d), 0);
    mk("mid", f, HVP_DISK_TYPE_DIFF, 0, bs, "base");
    d = op("mid", 0);
    expect_content(d, ref, size);
    scribble(d, ref, size, 2, 40, 100000);
    /* discard in a child hides the parent's data */
    cr_assert_eq(hvp_disk_discard(d, 1048576 - 1000, 1048576 + 3000), 0, "%s", hvp_disk_error(d));
    memset(ref + 1048576 - 1000, 0, 1048576 + 3000);
    expect_content(d, ref, size);
    cr_assert_eq(hvp_disk_close(d), 0);
    d = op("mid", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    cr_assert_eq(hvp_disk_close(d), 0);
    mk("top", f, HVP_DISK_TYPE_DIFF, 0, bs, "mid");
    d = op("top", 0);
    scribble(d, ref, size, 3, 60, 20000);
    expect_content(d, ref, size);
    struct hvp_disk_info in;
    cr_assert_eq(hvp_disk_info(d, &in), 0);
    cr_assert_eq(in.type, HVP_DISK_TYPE_DIFF);
    cr_assert(hvp_disk_parent(d) && hvp_disk_parent(hvp_disk_parent(d)));
    cr_assert_null(hvp_disk_parent(hvp_disk_parent(hvp_disk_parent(d))));
    cr_assert_eq(hvp_disk_close(d), 0);
    d = op("top", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    hvp_disk_close(d);
    char err[1024] = "";
    cr_assert_eq(hvp_disk_check(pth("top"), 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    /* merge top into mid, then mid into base */
    cr_assert_eq(hvp_disk_merge(pth("top"), NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_neq(access(pth("top"), F_OK), 0, "merged child still exists");
    d = op("mid", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    hvp_disk_close(d);
    cr_assert_eq(hvp_disk_merge(pth("mid"), NULL, NULL, err, sizeof err), 0, "%s", err);
    d = op("base", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    hvp_disk_close(d);
    cr_assert_eq(hvp_disk_check(pth("base"), 0, NULL, NULL, err, sizeof err), 0, "%s", err);
    free(ref);
}

Test(disk, vhd_chain_write_read_merge)
{
    chain(HVP_DISK_FMT_VHD, 512 * 1024);
}
Test(disk, vhdx_chain_write_read_merge)
{
    chain(HVP_DISK_FMT_VHDX, 1048576);
}

Test(disk, parent_found_by_absolute_path_after_move)
{
    const uint64_t size = 2 * 1048576;
    mk("p.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, size, 1048576, NULL);
    mk("c.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DIFF, 0, 1048576, "p.vhdx");
    cr_assert_eq(mkdir(pth("sub"), 0755), 0);
    cr_assert_eq(rename(pth("c.vhdx"), pth("sub/c.vhdx")), 0);
    hvp_disk *d = op("sub/c.vhdx", HVP_DISK_RDONLY);
    cr_assert_not_null(hvp_disk_parent(d));
    hvp_disk_close(d);
}

Test(disk, missing_parent)
{
    mk("p.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    mk("c.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DIFF, 0, 0, "p.vhd");
    unlink(pth("p.vhd"));
    char err[1024];
    cr_assert_lt(open_err("c.vhd", HVP_DISK_RDONLY, err, sizeof err), 0);
    cr_assert(strstr(err, "parent") && strstr(err, "not found"), "message: %s", err);
}

Test(disk, mismatched_parent)
{
    for (int f = 0; f < 2; f++) {
        enum hvp_disk_format fmt = f ? HVP_DISK_FMT_VHDX : HVP_DISK_FMT_VHD;
        mk("p", fmt, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
        mk("c", fmt, HVP_DISK_TYPE_DIFF, 0, 0, "p");
        unlink(pth("p"));
        mk("p", fmt, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
        char err[1024];
        cr_assert_lt(open_err("c", HVP_DISK_RDONLY, err, sizeof err), 0);
        cr_assert(strstr(err, "does not match"), "message: %s", err);
        unlink(pth("p"));
        unlink(pth("c"));
    }
}

Test(disk, vhdx_parent_written_after_child_is_orphaned)
{
    mk("p", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    mk("c", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DIFF, 0, 0, "p");
    hvp_disk *d = op("p", 0);
    cr_assert_eq(hvp_disk_write(d, 0, "x", 1), 0);
    hvp_disk_close(d);
    char err[1024];
    cr_assert_lt(open_err("c", HVP_DISK_RDONLY, err, sizeof err), 0);
    cr_assert(strstr(err, "does not match"), "message: %s", err);
}

static uint32_t vhd_sum(const uint8_t *p, size_t n, size_t skip)
{
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++)
        if (i < skip || i >= skip + 4) s += p[i];
    return ~s;
}

static void patch(const char *name, uint64_t off, const void *data, size_t n)
{
    int fd = open(pth(name), O_RDWR);
    cr_assert(fd >= 0);
    cr_assert_eq(pwrite(fd, data, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void readat(const char *name, uint64_t off, void *data, size_t n)
{
    int fd = open(pth(name), O_RDONLY);
    cr_assert(fd >= 0);
    cr_assert_eq(pread(fd, data, n, (off_t)off), (ssize_t)n);
    close(fd);
}

Test(disk, cyclic_chain)
{
    mk("base.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    mk("y.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DIFF, 0, 0, "base.vhd");
    mk("x.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DIFF, 0, 0, "y.vhd");
    /* x replaces base: y -> base.vhd (= x) -> y */
    cr_assert_eq(rename(pth("x.vhd"), pth("base.vhd")), 0);
    uint8_t foot[512], hdr[1024];
    readat("base.vhd", 0, foot, 512);
    readat("y.vhd", 512, hdr, 1024);
    memcpy(hdr + 40, foot + 68, 16);
    uint32_t s = vhd_sum(hdr, 1024, 36);
    uint8_t be[4] = {(uint8_t)(s >> 24), (uint8_t)(s >> 16), (uint8_t)(s >> 8), (uint8_t)s};
    memcpy(hdr + 36, be, 4);
    patch("y.vhd", 512, hdr, 1024);
    char err[1024];
    cr_assert_lt(open_err("y.vhd", HVP_DISK_RDONLY, err, sizeof err), 0);
    cr_assert(strstr(err, "cyclic"), "message: %s", err);
}

static void file_sum(const char *name, uint8_t out[64])
{
    /* a cheap fingerprint: size + xor of all 64-byte lines */
    memset(out, 0, 64);
    int fd = open(pth(name), O_RDONLY);
    uint8_t buf[65536];
    ssize_t n;
    uint64_t total = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            out[(total + (uint64_t)i) % 56] ^= buf[i];
        total += (uint64_t)n;
    }
    memcpy(out + 56, &total, 8);
    close(fd);
}

static void expect_open_error(const char *name, const char *needle)
{
    uint8_t before[64], after[64];
    file_sum(name, before);
    char err[1024] = "";
    cr_assert_lt(open_err(name, HVP_DISK_RDONLY, err, sizeof err), 0, "%s opened", name);
    cr_assert(strstr(err, needle), "%s: message \"%s\" lacks \"%s\"", name, err, needle);
    file_sum(name, after);
    cr_assert_eq(memcmp(before, after, 64), 0, "a read-only open modified %s", name);
    /* check reports it and exits with problems or unreadable */
    int r = hvp_disk_check(pth(name), 0, NULL, NULL, err, sizeof err);
    cr_assert_neq(r, 0, "check says %s is clean", name);
    file_sum(name, after);
    cr_assert_eq(memcmp(before, after, 64), 0, "check modified %s", name);
}

static void fill(const char *name, uint64_t size)
{
    hvp_disk *d = op(name, 0);
    uint8_t *b = malloc(size);
    memset(b, 0x5a, size);
    cr_assert_eq(hvp_disk_write(d, 0, b, size), 0, "%s", hvp_disk_error(d));
    free(b);
    cr_assert_eq(hvp_disk_close(d), 0);
}

Test(disk, bad_vhd_inputs)
{
    mk("a.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 0, NULL);
    fill("a.vhd", 4 * 1048576);
    struct stat st;
    stat(pth("a.vhd"), &st);
    /* truncated */
    cr_assert_eq(truncate(pth("a.vhd"), st.st_size / 2), 0);
    expect_open_error("a.vhd", "footer at the end of the file is missing");
    unlink(pth("a.vhd"));
    /* wrong footer checksum */
    mk("a.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_FIXED, 1048576, 0, NULL);
    patch("a.vhd", 1048576 + 100, "x", 1);
    expect_open_error("a.vhd", "footer checksum is wrong");
    unlink(pth("a.vhd"));
    /* wrong dynamic header checksum */
    mk("a.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    patch("a.vhd", 512 + 800, "x", 1);
    expect_open_error("a.vhd", "dynamic header checksum is wrong");
    unlink(pth("a.vhd"));
    /* BAT entry past EOF, BAT entry over the metadata, overlapping entries */
    mk("a.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 0, NULL);
    fill("a.vhd", 4 * 1048576);
    uint8_t e[4] = {0x00, 0x10, 0x00, 0x00};
    patch("a.vhd", 1536, e, 4);
    expect_open_error("a.vhd", "BAT entry 0 points past the end of the file");
    uint8_t m[4] = {0, 0, 0, 1};
    patch("a.vhd", 1536, m, 4);
    expect_open_error("a.vhd", "BAT entry 0 overlaps the metadata");
    uint8_t bat1[4];
    readat("a.vhd", 1536 + 4, bat1, 4);
    patch("a.vhd", 1536, bat1, 4);
    expect_open_error("a.vhd", "overlap");
    unlink(pth("a.vhd"));
    /* absurd virtual size in a dynamic disk's footer (checksums fixed) */
    mk("a.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    uint8_t f[512];
    readat("a.vhd", 0, f, 512);
    memset(f + 48, 0x7f, 8);
    f[55] = 0;
    f[54] = 0;
    uint32_t s = vhd_sum(f, 512, 64);
    uint8_t be[4] = {(uint8_t)(s >> 24), (uint8_t)(s >> 16), (uint8_t)(s >> 8), (uint8_t)s};
    memcpy(f + 64, be, 4);
    patch("a.vhd", 0, f, 512);
    stat(pth("a.vhd"), &st);
    patch("a.vhd", (uint64_t)st.st_size - 512, f, 512);
    expect_open_error("a.vhd", "larger than a VHD can be");
}

static void wr_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

Test(disk, bad_vhdx_inputs)
{
    mk("a.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 1048576, NULL);
    fill("a.vhdx", 4 * 1048576);
    /* our layout: BAT at 3 MiB */
    uint8_t e[8];
    wr_le64(e, (1000ull << 20) | 6);
    patch("a.vhdx", 3 << 20, e, 8);
    expect_open_error("a.vhdx", "BAT entry 0 points past the end of the file");
    wr_le64(e, (1ull << 20) | 6);
    patch("a.vhdx", 3 << 20, e, 8);
    expect_open_error("a.vhdx", "BAT entry 0 overlaps the metadata");
    uint8_t e1[8];
    readat("a.vhdx", (3 << 20) + 8, e1, 8);
    patch("a.vhdx", 3 << 20, e1, 8);
    expect_open_error("a.vhdx", "overlap");
    /* both headers damaged */
    patch("a.vhdx", 64 * 1024 + 200, "x", 1);
    patch("a.vhdx", 128 * 1024 + 200, "x", 1);
    expect_open_error("a.vhdx", "both VHDX headers are damaged");
    unlink(pth("a.vhdx"));
    /* one damaged header: the other copy is used */
    mk("a.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 1048576, NULL);
    patch("a.vhdx", 128 * 1024 + 200, "x", 1);
    hvp_disk *d = op("a.vhdx", HVP_DISK_RDONLY);
    hvp_disk_close(d);
    /* truncated into the BAT */
    cr_assert_eq(truncate(pth("a.vhdx"), (3 << 20) + 4096), 0);
    expect_open_error("a.vhdx", "BAT region");
    unlink(pth("a.vhdx"));
    /* damaged region tables */
    mk("a.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 1048576, NULL);
    patch("a.vhdx", 192 * 1024 + 40, "x", 1);
    patch("a.vhdx", 256 * 1024 + 40, "x", 1);
    expect_open_error("a.vhdx", "region tables are damaged");
    unlink(pth("a.vhdx"));
    /* absurd virtual size (metadata item at 2 MiB + 64 KiB + 8) */
    mk("a.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 4 * 1048576, 1048576, NULL);
    wr_le64(e, 1ull << 62);
    patch("a.vhdx", (2 << 20) + 65536 + 8, e, 8);
    expect_open_error("a.vhdx", "virtual size");
}

Test(disk, absurd_create_sizes)
{
    struct hvp_disk_create_params p = {.format = HVP_DISK_FMT_VHD, .size = 3ull << 40};
    char err[1024];
    cr_assert_lt(hvp_disk_create(pth("a"), &p, err, sizeof err), 0);
    cr_assert(strstr(err, "too large"), "%s", err);
    p.format = HVP_DISK_FMT_VHDX;
    p.size = 100ull << 40;
    cr_assert_lt(hvp_disk_create(pth("a"), &p, err, sizeof err), 0);
    cr_assert(strstr(err, "too large"), "%s", err);
    p.size = 1000;
    cr_assert_lt(hvp_disk_create(pth("a"), &p, err, sizeof err), 0);
    cr_assert(strstr(err, "multiple of 512"), "%s", err);
    p.size = 0;
    cr_assert_lt(hvp_disk_create(pth("a"), &p, err, sizeof err), 0);
    cr_assert_neq(access(pth("a"), F_OK), 0, "a failed create left a file");
}

Test(disk, writer_lock)
{
    for (int f = 0; f < 2; f++) {
        const char *n = f ? "l.vhdx" : "l.vhd";
        mk(n, f ? HVP_DISK_FMT_VHDX : HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
        hvp_disk *a = op(n, 0);
        char err[1024];
        cr_assert_eq(open_err(n, 0, err, sizeof err), -EAGAIN);
        cr_assert(strstr(err, "another process"), "%s", err);
        hvp_disk *r = op(n, HVP_DISK_RDONLY); /* readers are not locked out */
        hvp_disk_close(r);
        hvp_disk_close(a);
        a = op(n, 0); /* released on close */
        hvp_disk_close(a);
    }
}

Test(disk, vhdx_log_replay_after_crash)
{
    const uint64_t size = 4 * 1048576;
    mk("c.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, size, 1048576, NULL);
    uint8_t *ref = calloc(1, size);
    pid_t pid = fork();
    if (pid == 0) {
        hvp_disk *d;
        char err[256];
        if (hvp_disk_open(pth("c.vhdx"), 0, &d, err, sizeof err)) _exit(3);
        uint8_t b[4096];
        memset(b, 0xc3, sizeof b);
        for (int i = 0; i < 4; i++)
            if (hvp_disk_write(d, (uint64_t)i * 1048576 + 4096, b, sizeof b)) _exit(4);
        if (hvp_disk_flush(d)) _exit(5);
        _exit(0); /* "crash": the log stays active */
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 4; i++)
        memset(ref + (uint64_t)i * 1048576 + 4096, 0xc3, 4096);
    expect_open_error("c.vhdx", "the log must be replayed");
    /* lose the in-place BAT update: only the log has the last one */
    uint8_t bat[32];
    readat("c.vhdx", 3 << 20, bat, 32);
    uint8_t z[8] = {0};
    patch("c.vhdx", (3 << 20) + 3 * 8, z, 8);
    hvp_disk *d = op("c.vhdx", 0); /* replays */
    expect_content(d, ref, size);
    hvp_disk_close(d);
    char err[1024];
    cr_assert_eq(hvp_disk_check(pth("c.vhdx"), 0, NULL, NULL, err, sizeof err), 0);
    free(ref);
}

struct qctx {
    pthread_mutex_t mu;
    int done, failed;
};

static void qcb(struct hvp_blk_req *q, int r)
{
    struct qctx *c = q->opaque;
    pthread_mutex_lock(&c->mu);
    c->done++;
    if (r) c->failed++;
    pthread_mutex_unlock(&c->mu);
}

Test(disk, blkdev_queue)
{
    const uint64_t size = 8 * 1048576;
    mk("q.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, size, 1048576, NULL);
    hvp_disk *d = op("q.vhdx", 0);
    hvp_blkdev *b;
    cr_assert_eq(hvp_blkdev_create(d, 16, 4, &b), 0);
    cr_assert_eq(hvp_blkdev_sectors(b), size / 512);
    enum { N = 256 };
    static struct hvp_blk_req reqs[N];
    static uint8_t bufs[N][4096], back[N][4096];
    struct qctx c = {PTHREAD_MUTEX_INITIALIZER, 0, 0};
    for (int i = 0; i < N; i++) {
        memset(bufs[i], i + 1, 4096);
        reqs[i] = (struct hvp_blk_req){.op = HVP_BLK_WRITE,
                                       .sector = (uint64_t)(i * 37 % N) * 64,
                                       .nsectors = 8,
                                       .buf = bufs[i],
                                       .cb = qcb,
                                       .opaque = &c};
        while (hvp_blkdev_submit(b, &reqs[i]) == -EAGAIN)
            usleep(100);
    }
    hvp_blkdev_drain(b);
    struct hvp_blk_req fl = {.op = HVP_BLK_FLUSH, .cb = qcb, .opaque = &c};
    cr_assert_eq(hvp_blkdev_submit(b, &fl), 0);
    hvp_blkdev_drain(b);
    for (int i = 0; i < N; i++) {
        reqs[i].op = HVP_BLK_READ;
        reqs[i].buf = back[i];
        while (hvp_blkdev_submit(b, &reqs[i]) == -EAGAIN)
            usleep(100);
    }
    hvp_blkdev_drain(b);
    cr_assert_eq(c.done, 2 * N + 1);
    cr_assert_eq(c.failed, 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(memcmp(bufs[i], back[i], 4096), 0, "request %d read back differs", i);
    /* out of range */
    struct hvp_blk_req bad = {.op = HVP_BLK_READ,
                              .sector = size / 512,
                              .nsectors = 1,
                              .buf = back[0],
                              .cb = qcb,
                              .opaque = &c};
    cr_assert_eq(hvp_blkdev_submit(b, &bad), 0);
    hvp_blkdev_destroy(b);
    cr_assert_eq(c.failed, 1);
    hvp_disk_close(d);
}

static void compact_case(enum hvp_disk_format f, uint32_t bs)
{
    const uint64_t size = 8 * (uint64_t)bs;
    mk("k", f, HVP_DISK_TYPE_DYNAMIC, size, bs, NULL);
    uint8_t *ref = calloc(1, size);
    hvp_disk *d = op("k", 0);
    uint8_t *blk = malloc(bs);
    for (int i = 0; i < 8; i++) {
        memset(blk, i == 2 || i == 5 ? 0 : 0x40 + i, bs);
        cr_assert_eq(hvp_disk_write(d, (uint64_t)i * bs, blk, bs), 0);
        memcpy(ref + (uint64_t)i * bs, blk, bs);
    }
    cr_assert_eq(hvp_disk_discard(d, 6ull * bs, bs), 0);
    memset(ref + 6ull * bs, 0, bs);
    hvp_disk_close(d);
    struct stat s0, s1;
    stat(pth("k"), &s0);
    uint64_t saved;
    char err[1024] = "";
    cr_assert_eq(hvp_disk_compact(pth("k"), &saved, NULL, NULL, err, sizeof err), 0, "%s", err);
    stat(pth("k"), &s1);
    cr_assert_geq((uint64_t)(s0.st_size - s1.st_size), 3ull * bs, "compact kept zero blocks");
    d = op("k", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    struct hvp_disk_info in;
    hvp_disk_info(d, &in);
    cr_assert_eq(in.allocated, 5ull * bs);
    hvp_disk_close(d);
    cr_assert_eq(hvp_disk_check(pth("k"), 0, NULL, NULL, err, sizeof err), 0);
    free(blk);
    free(ref);
}

Test(disk, vhd_compact)
{
    compact_case(HVP_DISK_FMT_VHD, 512 * 1024);
}
Test(disk, vhdx_compact)
{
    compact_case(HVP_DISK_FMT_VHDX, 1048576);
}

static void resize_case_bs(enum hvp_disk_format f, enum hvp_disk_type t, uint32_t bs, uint64_t big)
{
    const uint64_t size = 3 * 1048576 + 1024;
    mk("r", f, t, size, bs, NULL);
    uint8_t *ref = calloc(1, big);
    hvp_disk *d = op("r", 0);
    scribble(d, ref, size, 9, 20, 100000);
    hvp_disk_close(d);
    char err[1024] = "";
    cr_assert_eq(hvp_disk_resize(pth("r"), big, NULL, NULL, err, sizeof err), 0, "%s", err);
    d = op("r", 0);
    expect_content(d, ref, big);
    uint8_t x = 0x99;
    cr_assert_eq(hvp_disk_write(d, big - 1, &x, 1), 0);
    hvp_disk_close(d);
    cr_assert_lt(hvp_disk_resize(pth("r"), size, NULL, NULL, err, sizeof err), 0);
    cr_assert(strstr(err, "cannot shrink"), "%s", err);
    d = op("r", 0);
    x = 0;
    cr_assert_eq(hvp_disk_write(d, big - 1, &x, 1), 0);
    hvp_disk_close(d);
    cr_assert_eq(hvp_disk_resize(pth("r"), size, NULL, NULL, err, sizeof err), 0, "%s", err);
    d = op("r", HVP_DISK_RDONLY);
    expect_content(d, ref, size);
    hvp_disk_close(d);
    cr_assert_eq(hvp_disk_check(pth("r"), 0, NULL, NULL, err, sizeof err), 0);
    free(ref);
}

static void resize_case(enum hvp_disk_format f, enum hvp_disk_type t)
{
    resize_case_bs(f, t, f == HVP_DISK_FMT_VHDX ? 1048576 : 0, 7 * 1048576 + 512);
}

Test(disk, resize_vhd_dynamic_beyond_bat_room)
{
    /* 64 KiB blocks: the grown BAT does not fit its padding: rewritten */
    resize_case_bs(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 65536, 41 * 1048576);
}
Test(disk, resize_vhdx_fixed)
{
    resize_case(HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_FIXED);
}

Test(disk, resize_vhd_dynamic)
{
    resize_case(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC);
}
Test(disk, resize_vhd_fixed)
{
    resize_case(HVP_DISK_FMT_VHD, HVP_DISK_TYPE_FIXED);
}
Test(disk, resize_vhdx_dynamic)
{
    resize_case(HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC);
}
Test(disk, resize_raw)
{
    resize_case(HVP_DISK_FMT_RAW, HVP_DISK_TYPE_FIXED);
}

Test(disk, read_only_handle_refuses_writes)
{
    mk("ro.vhdx", HVP_DISK_FMT_VHDX, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    uint8_t before[64], after[64];
    file_sum("ro.vhdx", before);
    hvp_disk *d = op("ro.vhdx", HVP_DISK_RDONLY);
    cr_assert_eq(hvp_disk_write(d, 0, "abc", 3), -EBADF);
    cr_assert_str_eq(hvp_disk_error(d), "opened read-only");
    cr_assert_eq(hvp_disk_discard(d, 0, 4096), -EBADF);
    cr_assert_eq(hvp_disk_flush(d), 0);
    hvp_disk_close(d);
    file_sum("ro.vhdx", after);
    cr_assert_eq(memcmp(before, after, 64), 0);
}

Test(disk, out_of_range_io)
{
    mk("o.vhd", HVP_DISK_FMT_VHD, HVP_DISK_TYPE_DYNAMIC, 1048576, 0, NULL);
    hvp_disk *d = op("o.vhd", 0);
    uint8_t b[16];
    cr_assert_eq(hvp_disk_read(d, 1048576 - 8, b, 16), -EINVAL);
    cr_assert_eq(hvp_disk_write(d, UINT64_MAX - 4, b, 16), -EINVAL);
    hvp_disk_close(d);
}
