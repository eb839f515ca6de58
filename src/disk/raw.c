/* Raw images: the file is the disk. Holes are reported as zero runs. */
#define _GNU_SOURCE
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int raw_map(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *foff, uint64_t *run)
{
    *foff = off;
    *run = len;
    /* SEEK_DATA / SEEK_HOLE make convert and compare skip holes. */
    off_t data = lseek(d->fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) return MAP_ZERO; /* a hole up to EOF */
        return MAP_DATA;
    }
    if ((uint64_t)data > off) {
        *run = min_u64(len, (uint64_t)data - off);
        return MAP_ZERO;
    }
    off_t hole = lseek(d->fd, (off_t)off, SEEK_HOLE);
    if (hole > (off_t)off) *run = min_u64(len, (uint64_t)hole - off);
    return MAP_DATA;
}

static int raw_write(struct hvp_disk *d, uint64_t off, const void *buf, uint64_t len)
{
    return disk_pwrite(d, buf, len, off);
}

static int raw_discard(struct hvp_disk *d, uint64_t off, uint64_t len)
{
    if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    static const uint8_t zero[65536];
    while (len) {
        uint64_t n = min_u64(len, sizeof zero);
        int r = disk_pwrite(d, zero, n, off);
        if (r) return r;
        off += n, len -= n;
    }
    return 0;
}

static int raw_close(struct hvp_disk *d)
{
    (void)d;
    return 0;
}

static uint64_t raw_allocated(struct hvp_disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0) return 0;
    return min_u64((uint64_t)st.st_blocks * 512, (uint64_t)st.st_size);
}

static const struct disk_driver raw_driver = {
    .map = raw_map,
    .write = raw_write,
    .discard = raw_discard,
    .close = raw_close,
    .allocated = raw_allocated,
};

int raw_open(struct hvp_disk *d)
{
    struct stat st;
    if (fstat(d->fd, &st) < 0) return disk_err(d, errno, "%s", strerror(errno));
    d->drv = &raw_driver;
    d->format = HVP_DISK_FMT_RAW;
    d->type = HVP_DISK_TYPE_FIXED;
    d->size = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode)) {
        off_t end = lseek(d->fd, 0, SEEK_END);
        if (end > 0) d->size = (uint64_t)end;
    }
    return 0;
}

int raw_create(const struct disk_create_args *a, char *err, size_t errlen)
{
    int fd = open(a->path, O_RDWR | O_CREAT | O_CLOEXEC | (a->overwrite ? O_TRUNC : O_EXCL), 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s", errno == EEXIST ? "file exists" : strerror(errno));
        return -errno;
    }
    if (ftruncate(fd, (off_t)a->size) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot set the size: %s", strerror(e));
        close(fd);
        unlink(a->path);
        return -e;
    }
    close(fd);
    return 0;
}
