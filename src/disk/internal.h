/* Internals shared by the disk drivers. */
#ifndef HVP_DISK_INTERNAL_H
#define HVP_DISK_INTERNAL_H

#include "hvp/disk.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* Internal open flags. */
#define DISK_KEEP_ID 0x100u /* writes keep the VHDX DataWriteGuid (rewrites) */
#define DISK_BULK                                                                                  \
    0x200u /* a new file being filled (convert, rewrite): metadata is                              \
              written in place without the log; durable at close */

enum map_state { MAP_DATA = 1, MAP_ZERO = 2, MAP_PARENT = 3 };

struct hvp_disk;

struct disk_driver {
    /* State of the run at off in this layer only; *foff = file offset (DATA),
     * *run = length (> 0, <= len). Called with d->mu held. */
    int (*map)(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *foff, uint64_t *run);
    /* Sector-aligned write inside the size. Called with d->mu held. */
    int (*write)(struct hvp_disk *d, uint64_t off, const void *buf, uint64_t len);
    /* Make [off, off+len) read zero; may release whole blocks. d->mu held. */
    int (*discard)(struct hvp_disk *d, uint64_t off, uint64_t len);
    /* Make metadata durable (after fdatasync of data). d->mu held. */
    int (*flush)(struct hvp_disk *d);
    /* Finish and free private state (no I/O when the disk is read-only). */
    int (*close)(struct hvp_disk *d);
    /* Bytes of virtual disk stored in this file. */
    uint64_t (*allocated)(struct hvp_disk *d);
    /* Structural checks beyond those of open (check mode). */
    int (*check)(struct hvp_disk *d);
    /* Changes the virtual size in place (the cut tail is known to be zero);
     * -ENOTSUP when the metadata has no room (the caller rewrites). */
    int (*resize)(struct hvp_disk *d, uint64_t size);
};

struct disk_parent_ref {
    char *cand[4]; /* candidate paths, already resolved against the child's dir */
    int ncand;
    uint8_t linkage[16]; /* VHD parent UniqueId or VHDX parent DataWriteGuid */
    char *name;          /* for messages */
};

struct hvp_disk {
    const struct disk_driver *drv;
    int fd;
    char *path;
    unsigned flags;
    bool rdonly;
    bool dirty; /* written since the last flush: close syncs */
    enum hvp_disk_format format;
    enum hvp_disk_type type;
    uint64_t size;
    uint32_t block_size;
    uint32_t phys_sector;
    uint64_t file_end; /* where the next allocation goes / current EOF */
    uint8_t id[16];    /* identity children link to */
    struct hvp_disk *parent;
    struct disk_parent_ref pref;
    pthread_mutex_t mu;
    /* check mode: problems are reported through cb instead of failing */
    bool checking;
    bool repairing;
    hvp_disk_problem_fn problem_cb;
    void *problem_ctx;
    int nproblems;
    void *priv;
    char err[1024];
};

/* Sets d->err and returns -e (e > 0). */
int disk_err(struct hvp_disk *d, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A structural problem: in check mode it is reported and 0 returned (the
 * caller sanitizes and goes on); otherwise it is an error (-EINVAL). */
int disk_problem(struct hvp_disk *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int disk_pread(struct hvp_disk *d, void *buf, size_t len, uint64_t off);
int disk_pwrite(struct hvp_disk *d, const void *buf, size_t len, uint64_t off);
int disk_sync(struct hvp_disk *d);
int disk_truncate(struct hvp_disk *d, uint64_t len);

/* Reads through the chain (no locking of d itself; takes d->mu per map). */
int disk_read_chain(struct hvp_disk *d, uint64_t off, void *buf, uint64_t len);
/* Layer-only status (MAP_*), with *run. Takes d->mu. */
int disk_layer_status(struct hvp_disk *d, uint64_t off, uint64_t len, uint64_t *run);

/* Identity preserved across a rewrite (compact, resize). */
struct disk_ident {
    bool set;
    uint8_t id[16];     /* VHD UniqueId / VHDX DataWriteGuid */
    uint8_t page83[16]; /* VHDX virtual disk id */
    uint32_t vhd_timestamp;
};

struct disk_create_args {
    const char *path;
    enum hvp_disk_type type;
    uint64_t size;
    uint32_t block_size;
    bool overwrite;
    const struct disk_ident *ident;
    /* differencing */
    struct hvp_disk *parent;
    const char *parent_rel; /* relative path from the child's dir */
    const char *parent_abs;
};

int raw_create(const struct disk_create_args *a, char *err, size_t errlen);
int vhd_create(const struct disk_create_args *a, char *err, size_t errlen);
int vhdx_create(const struct disk_create_args *a, char *err, size_t errlen);
int raw_open(struct hvp_disk *d);
int vhd_open(struct hvp_disk *d);
int vhdx_open(struct hvp_disk *d);
void vhd_get_ident(struct hvp_disk *d, struct disk_ident *id);
void vhdx_get_ident(struct hvp_disk *d, struct disk_ident *id);

/* Opens a disk with a check-mode problem sink (used by check). */
int disk_open_ex(const char *path, unsigned flags, struct hvp_disk **out, bool checking,
                 bool repairing, hvp_disk_problem_fn cb, void *ctx, char *err, size_t errlen,
                 int depth, const dev_t *devs, const ino_t *inos);

/* ---- helpers ---- */
static inline uint16_t rd_be16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] << 8 | b[1]);
}
static inline uint32_t rd_be32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}
static inline uint64_t rd_be64(const void *p)
{
    return (uint64_t)rd_be32(p) << 32 | rd_be32((const uint8_t *)p + 4);
}
static inline void wr_be16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = v >> 8;
    b[1] = (uint8_t)v;
}
static inline void wr_be32(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = v >> 24;
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}
static inline void wr_be64(void *p, uint64_t v)
{
    wr_be32(p, (uint32_t)(v >> 32));
    wr_be32((uint8_t *)p + 4, (uint32_t)v);
}
static inline uint16_t rd_le16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | b[1] << 8);
}
static inline uint32_t rd_le32(const void *p)
{
    const uint8_t *b = p;
    return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static inline uint64_t rd_le64(const void *p)
{
    return rd_le32(p) | (uint64_t)rd_le32((const uint8_t *)p + 4) << 32;
}
static inline void wr_le16(void *p, uint16_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = v >> 8;
}
static inline void wr_le32(void *p, uint32_t v)
{
    uint8_t *b = p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = v >> 24;
}
static inline void wr_le64(void *p, uint64_t v)
{
    wr_le32(p, (uint32_t)v);
    wr_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

static inline bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}
static inline uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}
static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
void disk_random(void *buf, size_t len);
void uuid_generate_v4(uint8_t out[16]);
/* MS GUID (mixed endian, on disk) <-> RFC 4122 byte order */
void guid_from_ms(uint8_t out[16], const uint8_t ms[16]);
void guid_to_ms(uint8_t ms[16], const uint8_t in[16]);
/* "{xxxxxxxx-...}" (braces optional) <-> RFC byte order. */
int guid_parse(const char *s, uint8_t out[16]);
void guid_format(char out[39], const uint8_t in[16]); /* with braces, upper case */
bool buf_is_zero(const void *buf, size_t len);

/* UTF-8 <-> UTF-16 (le = little endian). Return bytes/chars written or -1. */
ssize_t utf8_to_utf16(const char *s, uint8_t *out, size_t outlen, bool le);
int utf16_to_utf8(const uint8_t *in, size_t inlen, bool le, char *out, size_t outlen);

/* Resolves a locator path (Windows or POSIX form) against the child's dir. */
char *path_resolve_rel(const char *child_path, const char *rel);
/* Relative path of target as seen from the directory of from (both files). */
char *path_relative(const char *from, const char *target);

#endif
