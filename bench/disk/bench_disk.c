/* bench-disk: hvp's disk library beside qemu-img / qemu-io, in one run.
 *   - convert a raw image with mixed data (zero runs, random, repeated) to
 *     dynamic VHD and VHDX and back, with hvp and with qemu-img;
 *   - random 4 KiB reads and writes on the same images through the library
 *     and through qemu-io (its start-up time is measured and subtracted).
 * Prints min / median seconds of REPS runs and the ratio hvp / qemu
 * (median; below 1 means hvp is faster). Not a test.
 * Environment: BENCH_DISK_MB (default 1024), BENCH_DISK_REPS (default 3),
 * TMPDIR (where the images go). */
#define _GNU_SOURCE
#include "hvp/disk.h"

#include <fcntl.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXREP 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct row {
    const char *name;
    double hvp[MAXREP], qemu[MAXREP];
};

static void print_row(const struct row *r, int reps)
{
    double h[MAXREP], q[MAXREP];
    memcpy(h, r->hvp, sizeof h);
    memcpy(q, r->qemu, sizeof q);
    qsort(h, (size_t)reps, sizeof(double), cmp_d);
    qsort(q, (size_t)reps, sizeof(double), cmp_d);
    double hm = h[reps / 2], qm = q[reps / 2];
    printf("%-30s %9.3f %9.3f   %9.3f %9.3f   %6.2f%s\n", r->name, h[0], hm, q[0], qm,
           qm > 0 ? hm / qm : 0.0, qm > 0 && hm > qm ? "  (slower)" : "");
    fflush(stdout);
}

static int run(const char *cmd)
{
    int r = system(cmd);
    if (r != 0) fprintf(stderr, "bench-disk: command failed (%d): %s\n", r, cmd);
    return r;
}

static double timed(const char *cmd)
{
    double t = now();
    if (run(cmd)) return -1;
    return now() - t;
}

static char dir[256];

static const char *pth(const char *n)
{
    static char b[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(b[k], sizeof b[k], "%s/%s", dir, n);
    return b[k];
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int make_raw(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    const size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (uint64_t off = 0; off < size; off += chunk) {
        switch (rnd(&s) % 3) {
        case 0: memset(buf, 0, chunk); break; /* a zero run, written out */
        case 1:
            for (size_t i = 0; i < chunk; i += 8) {
                uint64_t v = rnd(&s);
                memcpy(buf + i, &v, 8);
            }
            break;
        default: /* a repeated 4 KiB pattern */
            for (size_t i = 0; i < 4096; i++)
                buf[i] = (uint8_t)(i * 31 + off / chunk);
            for (size_t i = 4096; i < chunk; i += 4096)
                memcpy(buf + i, buf, 4096);
        }
        if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
            free(buf);
            close(fd);
            return -1;
        }
    }
    free(buf);
    fsync(fd);
    close(fd);
    return 0;
}

static double hvp_convert(const char *in, const char *out, enum hvp_disk_format f)
{
    char err[1024];
    double t = now();
    hvp_disk *d;
    if (hvp_disk_open(in, HVP_DISK_RDONLY, &d, err, sizeof err)) {
        fprintf(stderr, "bench-disk: %s: %s\n", in, err);
        return -1;
    }
    struct hvp_disk_create_params p = {.format = f, .type = HVP_DISK_TYPE_DYNAMIC};
    if (f == HVP_DISK_FMT_RAW) p.type = HVP_DISK_TYPE_FIXED;
    int r = hvp_disk_convert(d, out, &p, NULL, NULL, err, sizeof err);
    hvp_disk_close(d);
    if (r) {
        fprintf(stderr, "bench-disk: %s: %s\n", out, err);
        return -1;
    }
    return now() - t;
}

static uint64_t *offsets(uint64_t size, int n, uint64_t seed)
{
    uint64_t *o = malloc(sizeof *o * (size_t)n);
    uint64_t s = seed | 1;
    for (int i = 0; i < n; i++)
        o[i] = rnd(&s) % (size / 4096) * 4096;
    return o;
}

static double hvp_random(const char *img, const uint64_t *off, int n, bool write)
{
    char err[1024];
    hvp_disk *d;
    double t = now();
    if (hvp_disk_open(img, write ? 0 : HVP_DISK_RDONLY, &d, err, sizeof err)) {
        fprintf(stderr, "bench-disk: %s: %s\n", img, err);
        return -1;
    }
    uint8_t buf[4096];
    memset(buf, 0x5c, sizeof buf);
    for (int i = 0; i < n; i++) {
        int r = write ? hvp_disk_write(d, off[i], buf, 4096) : hvp_disk_read(d, off[i], buf, 4096);
        if (r) {
            fprintf(stderr, "bench-disk: %s: %s\n", img, hvp_disk_error(d));
            hvp_disk_close(d);
            return -1;
        }
    }
    hvp_disk_close(d);
    return now() - t;
}

static double qemu_random(const char *fmt, const char *img, const uint64_t *off, int n, bool write,
                          double startup)
{
    const char *cmds = pth("cmds.txt");
    FILE *f = fopen(cmds, "w");
    if (!f) return -1;
    for (int i = 0; i < n; i++)
        fprintf(f, "%s -q %llu 4k\n", write ? "write -P 0x5c" : "read", (unsigned long long)off[i]);
    fclose(f);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "qemu-io -t writeback -f %s %s '%s' < '%s' > /dev/null", fmt,
             write ? "" : "-r", img, cmds);
    double t = timed(cmd);
    return t < 0 ? t : t - startup;
}

int main(void)
{
    if (system("command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1")) {
        printf("bench-disk: qemu-img/qemu-io not found (Debian: qemu-utils); nothing to compare\n");
        return 0;
    }
    const char *e = getenv("BENCH_DISK_MB");
    uint64_t size = (e ? strtoull(e, NULL, 0) : 1024) << 20;
    e = getenv("BENCH_DISK_REPS");
    int reps = e ? atoi(e) : 3;
    if (reps < 1) reps = 1;
    if (reps > MAXREP) reps = MAXREP;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/hvp-bench-disk.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("bench-disk: %llu MiB raw image (1/3 zero runs, 1/3 random, 1/3 repeated), %d runs\n",
           (unsigned long long)(size >> 20), reps);
    if (make_raw(pth("in.raw"), size)) {
        perror("bench-disk: writing the raw image");
        nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
        return 1;
    }
    printf("%-30s %19s   %19s   %6s\n", "", "hvp (s)", "qemu (s)", "ratio");
    printf("%-30s %9s %9s   %9s %9s   %6s\n", "operation", "min", "median", "min", "median",
           "hvp/qemu");
    char cmd[2048];
    struct row rows[4] = {{"convert raw -> vhd", {0}, {0}},
                          {"convert raw -> vhdx", {0}, {0}},
                          {"convert vhd -> raw", {0}, {0}},
                          {"convert vhdx -> raw", {0}, {0}}};
    int failed = 0;
    for (int i = 0; i < reps && !failed; i++) {
        double x;
        sync();
        failed |= (x = hvp_convert(pth("in.raw"), pth("h.vhd"), HVP_DISK_FMT_VHD)) < 0;
        rows[0].hvp[i] = x;
        snprintf(cmd, sizeof cmd,
                 "qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on '%s' '%s'",
                 pth("in.raw"), pth("q.vhd"));
        failed |= (rows[0].qemu[i] = timed(cmd)) < 0;
        failed |= (x = hvp_convert(pth("in.raw"), pth("h.vhdx"), HVP_DISK_FMT_VHDX)) < 0;
        rows[1].hvp[i] = x;
        snprintf(cmd, sizeof cmd, "qemu-img convert -f raw -O vhdx -o subformat=dynamic '%s' '%s'",
                 pth("in.raw"), pth("q.vhdx"));
        failed |= (rows[1].qemu[i] = timed(cmd)) < 0;
        failed |= (x = hvp_convert(pth("h.vhd"), pth("h.raw"), HVP_DISK_FMT_RAW)) < 0;
        rows[2].hvp[i] = x;
        snprintf(cmd, sizeof cmd, "qemu-img convert -f vpc -O raw '%s' '%s'", pth("q.vhd"),
                 pth("q.raw"));
        failed |= (rows[2].qemu[i] = timed(cmd)) < 0;
        failed |= (x = hvp_convert(pth("h.vhdx"), pth("h.raw"), HVP_DISK_FMT_RAW)) < 0;
        rows[3].hvp[i] = x;
        snprintf(cmd, sizeof cmd, "qemu-img convert -f vhdx -O raw '%s' '%s'", pth("q.vhdx"),
                 pth("q.raw"));
        failed |= (rows[3].qemu[i] = timed(cmd)) < 0;
    }
    if (!failed) {
        for (int k = 0; k < 4; k++)
            print_row(&rows[k], reps);
        /* the outputs must agree */
        snprintf(cmd, sizeof cmd,
                 "qemu-img compare -q -f raw -F vpc '%s' '%s' && "
                 "qemu-img compare -q -f raw -F vhdx '%s' '%s'",
                 pth("in.raw"), pth("h.vhd"), pth("in.raw"), pth("h.vhdx"));
        if (run(cmd)) printf("bench-disk: WARNING: hvp's images differ from the input\n");
    }
    /* random 4 KiB I/O on the hvp-made images (qemu reads them too) */
    const int nread = 20000, nwrite = 5000;
    uint64_t *ro = offsets(size, nread, 7), *wo = offsets(size, nwrite, 11);
    struct row io[4] = {{"random 4K read, vhd", {0}, {0}},
                        {"random 4K read, vhdx", {0}, {0}},
                        {"random 4K write, vhd", {0}, {0}},
                        {"random 4K write, vhdx", {0}, {0}}};
    const char *fmts[2] = {"vpc", "vhdx"}, *imgs[2] = {"h.vhd", "h.vhdx"};
    for (int i = 0; i < reps && !failed; i++) {
        for (int k = 0; k < 2; k++) {
            snprintf(cmd, sizeof cmd,
                     "echo 'read -q 0 4k' | qemu-io -t writeback -r -f %s '%s' > /dev/null",
                     fmts[k], pth(imgs[k]));
            double startup = timed(cmd);
            failed |= (io[k].hvp[i] = hvp_random(pth(imgs[k]), ro, nread, false)) < 0;
            failed |=
                (io[k].qemu[i] = qemu_random(fmts[k], pth(imgs[k]), ro, nread, false, startup)) < 0;
            /* writes: each tool on its own fresh copy */
            snprintf(cmd, sizeof cmd,
                     "cp --sparse=always '%s' '%s' && cp --sparse=always '%s' '%s' && sync",
                     pth(imgs[k]), pth("w1"), pth(imgs[k]), pth("w2"));
            failed |= run(cmd) != 0;
            failed |= (io[2 + k].hvp[i] = hvp_random(pth("w1"), wo, nwrite, true)) < 0;
            failed |= (io[2 + k].qemu[i] =
                           qemu_random(fmts[k], pth("w2"), wo, nwrite, true, startup)) < 0;
        }
    }
    if (!failed)
        for (int k = 0; k < 4; k++)
            print_row(&io[k], reps);
    free(ro);
    free(wo);
    nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    if (failed) printf("bench-disk: a run failed (see above)\n");
    return failed ? 1 : 0;
}
