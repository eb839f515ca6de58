/* Test helper driving the disk library from scripts.
 *   disk_tool randwrite IMG REF SEED COUNT MAXLEN   random writes to IMG (library) and REF (raw)
 *   disk_tool crashwriter IMG SEED COUNT             non-overlapping allocating writes; prints
 *                                                    "flushed N" after each successful flush
 *   disk_tool verify IMG SEED N                      reopens read-write (log replay), checks
 *                                                    that writes 0..N-1 are present
 *   disk_tool dirty IMG REF SEED COUNT MAXLEN       as randwrite, then exits without closing
 *   disk_tool discard IMG REF OFF LEN                discard in IMG, zeros in REF
 */
#include "hvp/disk.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static hvp_disk *open_or_die(const char *path, unsigned flags)
{
    hvp_disk *d;
    char err[1024];
    if (hvp_disk_open(path, flags, &d, err, sizeof err)) {
        fprintf(stderr, "disk_tool: %s: %s\n", path, err);
        exit(2);
    }
    return d;
}

#define SLOT (64 * 1024)

static void slot_write(uint64_t seed, uint64_t i, uint64_t nslots, uint64_t *off, uint32_t *len,
                       uint8_t *buf)
{
    /* write i goes to slot (i * prime) % nslots: distinct for i < nslots */
    uint64_t slot = (i * 7919 + seed) % nslots;
    uint64_t s = seed * 1000003 + i + 1;
    uint32_t l = (uint32_t)(512 * (1 + rng_next(&s) % (SLOT / 512)));
    *off = slot * SLOT;
    *len = l;
    for (uint32_t k = 0; k < l; k += 8) {
        uint64_t v = rng_next(&s) | 1;
        memcpy(buf + k, &v, 8);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *cmd = argv[1];
    bool dirty = !strcmp(cmd, "dirty");
    if ((dirty || !strcmp(cmd, "randwrite")) && argc == 7) {
        hvp_disk *d = open_or_die(argv[2], 0);
        int ref = open(argv[3], O_RDWR);
        if (ref < 0) return 2;
        uint64_t s = strtoull(argv[4], NULL, 0) | 1;
        long n = atol(argv[5]);
        uint64_t maxlen = strtoull(argv[6], NULL, 0);
        uint64_t size = hvp_disk_size(d);
        uint8_t *buf = malloc(maxlen);
        for (long i = 0; i < n; i++) {
            uint64_t len = 1 + rng_next(&s) % maxlen;
            if (len > size) len = size;
            uint64_t off = rng_next(&s) % (size - len + 1);
            if (rng_next(&s) % 4 == 0) { /* sector aligned */
                off &= ~511ull;
                len = (len + 511) & ~511ull;
                if (off + len > size) len = size - off;
            }
            uint8_t pat = (uint8_t)rng_next(&s);
            for (uint64_t k = 0; k < len; k++)
                buf[k] = (uint8_t)(pat + k * 7);
            if (hvp_disk_write(d, off, buf, len)) {
                fprintf(stderr, "disk_tool: write: %s\n", hvp_disk_error(d));
                return 1;
            }
            if (pwrite(ref, buf, len, (off_t)off) != (ssize_t)len) return 2;
        }
        free(buf);
        close(ref);
        if (dirty) {
            /* flushed but never closed: a VHDX keeps its log active */
            if (hvp_disk_flush(d)) return 1;
            _exit(0);
        }
        if (hvp_disk_close(d)) return 1;
        return 0;
    }
    if (!strcmp(cmd, "discard") && argc == 6) {
        hvp_disk *d = open_or_die(argv[2], 0);
        int ref = open(argv[3], O_RDWR);
        uint64_t off = strtoull(argv[4], NULL, 0), len = strtoull(argv[5], NULL, 0);
        if (hvp_disk_discard(d, off, len)) {
            fprintf(stderr, "disk_tool: discard: %s\n", hvp_disk_error(d));
            return 1;
        }
        uint8_t *z = calloc(1, len);
        if (pwrite(ref, z, len, (off_t)off) != (ssize_t)len) return 2;
        free(z);
        close(ref);
        return hvp_disk_close(d) ? 1 : 0;
    }
    if (!strcmp(cmd, "crashwriter") && argc == 5) {
        hvp_disk *d = open_or_die(argv[2], 0);
        uint64_t seed = strtoull(argv[3], NULL, 0);
        long n = atol(argv[4]);
        uint64_t nslots = hvp_disk_size(d) / SLOT;
        uint8_t *buf = malloc(SLOT);
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (long i = 0; i < n && (uint64_t)i < nslots; i++) {
            uint64_t off;
            uint32_t len;
            slot_write(seed, (uint64_t)i, nslots, &off, &len, buf);
            if (hvp_disk_write(d, off, buf, len)) {
                fprintf(stderr, "disk_tool: write: %s\n", hvp_disk_error(d));
                return 1;
            }
            if (i % 4 == 3) {
                if (hvp_disk_flush(d)) {
                    fprintf(stderr, "disk_tool: flush: %s\n", hvp_disk_error(d));
                    return 1;
                }
                printf("flushed %ld\n", i + 1);
            }
        }
        hvp_disk_close(d);
        printf("done\n");
        return 0;
    }
    if (!strcmp(cmd, "verify") && argc == 5) {
        hvp_disk *d = open_or_die(argv[2], 0);
        uint64_t seed = strtoull(argv[3], NULL, 0);
        long n = atol(argv[4]);
        uint64_t nslots = hvp_disk_size(d) / SLOT;
        uint8_t *buf = malloc(SLOT), *got = malloc(SLOT);
        int bad = 0;
        for (long i = 0; i < n; i++) {
            uint64_t off;
            uint32_t len;
            slot_write(seed, (uint64_t)i, nslots, &off, &len, buf);
            if (hvp_disk_read(d, off, got, len)) {
                fprintf(stderr, "disk_tool: read: %s\n", hvp_disk_error(d));
                return 1;
            }
            if (memcmp(buf, got, len)) {
                fprintf(stderr, "disk_tool: write %ld (offset %llu, %u bytes) is missing\n", i,
                        (unsigned long long)off, len);
                bad = 1;
            }
        }
        if (hvp_disk_close(d)) return 1;
        return bad;
    }
    fprintf(stderr, "disk_tool: bad arguments\n");
    return 2;
}
