/* libFuzzer target: every disk parser (raw, VHD: footer, dynamic header,
 * BAT, parent locators; VHDX: headers, region table, log replay refusal,
 * metadata, parent locator, BAT) and the read, write, check and repair
 * paths. The format is detected from the bytes, so one target serves all;
 * tests/disk/fuzz.sh picks the seed corpus (vhd or vhdx). See
 * tests/disk/README.md for a long run. */
#define _GNU_SOURCE
#include "hvp/disk.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static void noop(void *ctx, const char *msg)
{
    (void)ctx, (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    hvp_disk *d;
    char err[1024];
    if (hvp_disk_open(path, HVP_DISK_RDONLY | HVP_DISK_NO_PARENT, &d, err, sizeof err) == 0) {
        struct hvp_disk_info in;
        hvp_disk_info(d, &in);
        uint64_t sz = hvp_disk_size(d);
        static uint8_t buf[1 << 17];
        /* a few reads spread over the disk, and block status */
        for (int i = 0; i < 8 && sz; i++) {
            uint64_t off = sz / 8 * (uint64_t)i;
            size_t n = sz - off < sizeof buf ? (size_t)(sz - off) : sizeof buf;
            hvp_disk_read(d, off, buf, n);
            uint64_t run;
            hvp_disk_block_status(d, off, n, &run);
        }
        hvp_disk_close(d);
    }
    hvp_disk_check(path, 0, noop, NULL, err, sizeof err);
    /* the memfd is a scratch copy: also replay logs, write and repair */
    if (hvp_disk_open(path, HVP_DISK_NO_PARENT | HVP_DISK_NO_LOCK, &d, err, sizeof err) == 0) {
        uint64_t sz = hvp_disk_size(d);
        static const uint8_t pat[1536] = {1, 2, 3};
        if (sz >= sizeof pat) {
            hvp_disk_write(d, 100, pat, sizeof pat);
            hvp_disk_write(d, sz / 2 & ~511ull, pat, 512);
            uint8_t back[1536];
            hvp_disk_read(d, 100, back, sizeof back);
            hvp_disk_discard(d, 0, sz < (1u << 21) ? sz : (1u << 21));
        }
        hvp_disk_close(d);
    }
    hvp_disk_check(path, 1, noop, NULL, err, sizeof err);
    close(fd);
    return 0;
}
