/* hvp virtual disks: raw, VHD (fixed, dynamic, differencing) and VHDX (fixed,
 * dynamic, differencing), modelled on the Windows virtual-disk API.
 *
 * Every function returns 0 (or a count) on success and a negative errno on
 * failure. A failing call on an open disk leaves a one-line explanation that
 * hvp_disk_error() returns; calls that have no handle yet (open, create,
 * check, merge, ...) write it into the caller's buffer. The message names the
 * problem, not the file, unless the file is another one (a parent).
 * The library never prints and never exits.
 */
#ifndef HVP_DISK_H
#define HVP_DISK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hvp_disk hvp_disk;

enum hvp_disk_format {
    HVP_DISK_FMT_AUTO = 0, /* open: probe; create: not allowed */
    HVP_DISK_FMT_RAW,
    HVP_DISK_FMT_VHD,
    HVP_DISK_FMT_VHDX,
};

enum hvp_disk_type {
    HVP_DISK_TYPE_DEFAULT = 0, /* create: dynamic for VHD/VHDX, fixed for raw */
    HVP_DISK_TYPE_FIXED,
    HVP_DISK_TYPE_DYNAMIC,
    HVP_DISK_TYPE_DIFF,
};

/* Open flags. */
#define HVP_DISK_RDONLY    0x1u /* never writes the file (a VHDX with a dirty log is refused) */
#define HVP_DISK_NO_PARENT 0x2u /* do not open the parent: parent-backed sectors read as zero */
#define HVP_DISK_NO_LOCK   0x4u /* do not take the writer lock (tests only) */

#define HVP_DISK_SECTOR 512u

/* Largest virtual sizes accepted on create. */
#define HVP_DISK_VHD_MAX  (2040ull << 30)
#define HVP_DISK_VHDX_MAX (64ull << 40)
#define HVP_DISK_RAW_MAX  (1ull << 62)

struct hvp_disk_create_params {
    enum hvp_disk_format format;
    enum hvp_disk_type type;
    uint64_t size;       /* bytes; 0 for a differencing disk = the parent's size */
    uint32_t block_size; /* 0 = default (VHD 2 MiB, VHDX 32 MiB) */
    const char *parent;  /* differencing: the parent file */
};

struct hvp_disk_info {
    enum hvp_disk_format format;
    enum hvp_disk_type type;
    uint64_t virtual_size;
    uint64_t file_size;
    uint64_t allocated;       /* bytes of virtual disk stored in this file */
    uint32_t block_size;      /* 0 for raw */
    uint32_t logical_sector;  /* 512 */
    uint32_t physical_sector; /* 512 or 4096 */
    uint8_t id[16];           /* VHD UniqueId, VHDX DataWriteGuid (RFC 4122 byte order) */
    const char *parent_path;  /* resolved parent file, or NULL (valid while open) */
};

/* Progress callback for long operations: done out of total (bytes). */
typedef void (*hvp_disk_progress_fn)(void *ctx, uint64_t done, uint64_t total);
/* Problem callback for check: one line, no trailing newline. */
typedef void (*hvp_disk_problem_fn)(void *ctx, const char *problem);

const char *hvp_disk_format_name(enum hvp_disk_format f);
const char *hvp_disk_type_name(enum hvp_disk_type t);
/* "raw", "vhd", "vhdx" (case-insensitive) -> format; -EINVAL otherwise. */
int hvp_disk_parse_format(const char *s, enum hvp_disk_format *out);

/* Creates a new image; fails with -EEXIST if the file exists. */
int hvp_disk_create(const char *path, const struct hvp_disk_create_params *p, char *err,
                    size_t errlen);

/* Opens an image (and, for a differencing disk, its whole parent chain,
 * read-only). A read-write open takes an exclusive lock: a second writer gets
 * -EAGAIN. */
int hvp_disk_open(const char *path, unsigned flags, hvp_disk **out, char *err, size_t errlen);
/* Flushes, finalizes metadata (VHDX: clears the log) and closes the chain.
 * Returns the first error met while finishing. */
int hvp_disk_close(hvp_disk *d);

const char *hvp_disk_error(const hvp_disk *d);
uint64_t hvp_disk_size(const hvp_disk *d);
int hvp_disk_info(hvp_disk *d, struct hvp_disk_info *out);
/* The parent of a differencing disk (owned by d), or NULL. */
hvp_disk *hvp_disk_parent(hvp_disk *d);
const char *hvp_disk_path(const hvp_disk *d);

/* Byte-granular I/O inside [0, size); unaligned edges are read-modify-write.
 * Safe to call from several threads at once on one handle. */
int hvp_disk_read(hvp_disk *d, uint64_t off, void *buf, size_t len);
int hvp_disk_write(hvp_disk *d, uint64_t off, const void *buf, size_t len);
int hvp_disk_flush(hvp_disk *d);
/* Afterwards the range reads as zeros; whole blocks are released. */
int hvp_disk_discard(hvp_disk *d, uint64_t off, uint64_t len);

enum hvp_disk_status {
    HVP_DISK_STATUS_DATA = 1, /* stored somewhere in the chain */
    HVP_DISK_STATUS_ZERO = 2, /* known to read as zeros */
};
/* Status of the run starting at off (through the whole chain); *run gets its
 * length (<= len, > 0). Returns the status or a negative errno. */
int hvp_disk_block_status(hvp_disk *d, uint64_t off, uint64_t len, uint64_t *run);

/* Checks the structure of an image. Calls problem() once per problem found and
 * returns their number (0 = clean), or a negative errno (with err) when the
 * file cannot be read at all. With repair, fixes what it can and returns the
 * number of problems that remain. */
int hvp_disk_check(const char *path, int repair, hvp_disk_problem_fn problem, void *ctx, char *err,
                   size_t errlen);

/* Copies the content of in into a new image out (overwritten if it exists). */
int hvp_disk_convert(hvp_disk *in, const char *out, const struct hvp_disk_create_params *p,
                     hvp_disk_progress_fn progress, void *ctx, char *err, size_t errlen);

/* Compares content. Returns 0 identical, 1 different (*where = first
 * differing offset, or the smaller size when the larger image's tail is not
 * zero), negative errno on error. Sizes may differ if the extra tail is zero. */
int hvp_disk_compare(hvp_disk *a, hvp_disk *b, uint64_t *where, hvp_disk_progress_fn progress,
                     void *ctx, char *err, size_t errlen);

/* Merges a differencing disk into its parent and deletes the child file. */
int hvp_disk_merge(const char *child, hvp_disk_progress_fn progress, void *ctx, char *err,
                   size_t errlen);
/* Rewrites a dynamic or differencing image without blocks that are all zero
 * or discarded (identity and parent linkage kept). Returns bytes reclaimed
 * (>= 0) through *saved when not NULL. */
int hvp_disk_compact(const char *path, uint64_t *saved, hvp_disk_progress_fn progress, void *ctx,
                     char *err, size_t errlen);
/* Grows an image; shrinks only when the cut tail holds no data. */
int hvp_disk_resize(const char *path, uint64_t size, hvp_disk_progress_fn progress, void *ctx,
                    char *err, size_t errlen);

/* ---- Block-device interface for the VM worker ----
 * Sector-granular asynchronous requests served by a small thread pool; up to
 * queue_depth requests in flight. Completions are delivered by calling cb from
 * a pool thread (result 0 or -errno). */
typedef struct hvp_blkdev hvp_blkdev;

enum hvp_blk_op { HVP_BLK_READ, HVP_BLK_WRITE, HVP_BLK_FLUSH, HVP_BLK_DISCARD };

struct hvp_blk_req {
    enum hvp_blk_op op;
    uint64_t sector; /* 512-byte sectors */
    uint32_t nsectors;
    void *buf; /* nsectors * 512 bytes for READ/WRITE */
    void (*cb)(struct hvp_blk_req *req, int result);
    void *opaque;
    struct hvp_blk_req *next_; /* private */
};

/* The blkdev does not own d. threads: 0 = default (4). */
int hvp_blkdev_create(hvp_disk *d, unsigned queue_depth, unsigned threads, hvp_blkdev **out);
/* Queues a request; -EAGAIN when queue_depth requests are in flight. */
int hvp_blkdev_submit(hvp_blkdev *b, struct hvp_blk_req *req);
/* Waits until every submitted request has completed. */
void hvp_blkdev_drain(hvp_blkdev *b);
uint64_t hvp_blkdev_sectors(const hvp_blkdev *b);
/* Drains and stops the pool. */
void hvp_blkdev_destroy(hvp_blkdev *b);

#ifdef __cplusplus
}
#endif
#endif
