/* The platform layer: handles, properties, the GPA map, register names,
 * error messages and backend selection. Backends see validated calls. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The backends "auto" walks, in order. */
static const struct hvp_backend_ops *const backends[] = {&hvp_kvm_ops, &hvp_soft_ops};

int hvp__set_error(char *buf, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, HVP_ERRLEN, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- platform ---------------------------------------------------------- */

static int open_one(const struct hvp_backend_ops *ops, struct hvp **out, char *why, size_t len)
{
    if (ops->version != HVP_BACKEND_OPS_VERSION) {
        snprintf(why, len, "%s: ops table version %u, expected %u", ops->name, ops->version,
                 HVP_BACKEND_OPS_VERSION);
        return -ENODEV;
    }
    struct hvp *h = calloc(1, sizeof(*h));
    if (!h) return -ENOMEM;
    h->ops = ops;
    int r = ops->open(h, why, len);
    if (r < 0) {
        free(h);
        return r;
    }
    *out = h;
    return 0;
}

int hvp_open(const char *backend, struct hvp **out, char *errbuf, size_t errlen)
{
    char why[HVP_ERRLEN] = "";
    char tmp[HVP_ERRLEN];
    if (!out) return -EINVAL;
    *out = NULL;
    if (!backend) backend = "auto";
    bool is_auto = strcmp(backend, "auto") == 0;
    int r = -ENODEV;
    bool known = is_auto;
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        if (!is_auto && strcmp(backend, backends[i]->name) != 0) continue;
        known = true;
        tmp[0] = 0;
        r = open_one(backends[i], out, tmp, sizeof(tmp));
        if (r == 0) return 0;
        snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", why[0] ? "; " : "", tmp);
    }
    if (!known) {
        snprintf(why, sizeof(why), "unknown backend '%s' (kvm, soft or auto)", backend);
        r = -EINVAL;
    }
    if (errbuf && errlen) snprintf(errbuf, errlen, "%s", why);
    return r;
}

void hvp_close(struct hvp *h)
{
    if (!h) return;
    if (h->ops->close) h->ops->close(h);
    free(h);
}

const char *hvp_backend_name(const struct hvp *h)
{
    return h ? h->ops->name : "?";
}
const char *hvp_error(const struct hvp *h)
{
    return h ? h->err : "no handle";
}

int hvp_get_capability(struct hvp *h, uint32_t code, void *buf, size_t len, size_t *written)
{
    if (!h || (!buf && len)) return -EINVAL;
    return h->ops->get_capability(h, code, buf, len, written);
}

/* ---- partitions -------------------------------------------------------- */

int hvp_partition_create(struct hvp *h, struct hvp_partition **out)
{
    if (!h || !out) return -EINVAL;
    struct hvp_partition *p = calloc(1, sizeof(*p));
    if (!p) return hvp__set_error(h->err, -ENOMEM, "partition: out of memory");
    p->h = h;
    p->ops = h->ops;
    p->processor_count = 1;
    p->apic_mode = HVP_APIC_MODE_NONE; /* WHP's default */
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

const char *hvp_partition_error(const struct hvp_partition *p)
{
    return p ? p->err : "no handle";
}

/* Copies a list property of `esize`-byte entries. */
static int set_list(struct hvp_partition *p, const char *what, void **dst, size_t *n,
                    const void *buf, size_t len, size_t esize, size_t max)
{
    if (len % esize)
        return hvp__perr(p, -EINVAL, "%s: %zu bytes is not a whole number of %zu-byte entries",
                         what, len, esize);
    if (len / esize > max)
        return hvp__perr(p, -ENOSPC, "%s: %zu entries, at most %zu", what, len / esize, max);
    void *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) return hvp__perr(p, -ENOMEM, "%s: out of memory", what);
        memcpy(copy, buf, len);
    }
    free(*dst);
    *dst = copy;
    *n = len / esize;
    return 0;
}

static int want_size(struct hvp_partition *p, const char *what, size_t len, size_t need)
{
    if (len != need)
        return hvp__perr(p, -EINVAL, "%s: value is %zu bytes, not %zu", what, need, len);
    return 0;
}

int hvp_partition_set_property(struct hvp_partition *p, uint32_t code, const void *buf, size_t len)
{
    if (!p || (!buf && len)) return -EINVAL;
    bool runtime = code == HVP_PROP_EXCEPTION_EXIT_BITMAP;
    if (p->state != HVP_PART_CREATED && !runtime)
        return hvp__perr(p, -EBUSY, "property 0x%x: can only be set before setup", code);
    int r;
    uint64_t v64 = 0;
    uint32_t v32 = 0;
    switch (code) {
    case HVP_PROP_EXTENDED_VM_EXITS:
    case HVP_PROP_EXCEPTION_EXIT_BITMAP:
    case HVP_PROP_X64_MSR_EXIT_BITMAP:
        if ((r = want_size(p, "64-bit property", len, 8))) return r;
        memcpy(&v64, buf, 8);
        break;
    case HVP_PROP_PROCESSOR_COUNT:
    case HVP_PROP_LOCAL_APIC_EMULATION_MODE:
    case HVP_PROP_UNIMPLEMENTED_MSR_ACTION:
        if ((r = want_size(p, "32-bit property", len, 4))) return r;
        memcpy(&v32, buf, 4);
        break;
    case HVP_PROP_CPUID_EXIT_LIST:
    case HVP_PROP_CPUID_RESULT_LIST:
    case HVP_PROP_MSR_ACTION_LIST: break;
    default: return hvp__perr(p, -ENOENT, "property 0x%x: unknown", code);
    }
    if (p->ops->check_property && (r = p->ops->check_property(p, code, buf, len)) < 0) return r;
    switch (code) {
    case HVP_PROP_EXTENDED_VM_EXITS:
        if (v64 & ~(HVP_EXTENDED_EXIT_CPUID | HVP_EXTENDED_EXIT_MSR | HVP_EXTENDED_EXIT_EXCEPTION))
            return hvp__perr(p, -EINVAL, "ExtendedVmExits: unknown bits 0x%llx",
                             (unsigned long long)v64);
        p->extended_exits = v64;
        return 0;
    case HVP_PROP_EXCEPTION_EXIT_BITMAP:
        if (v64 >> 32) return hvp__perr(p, -EINVAL, "ExceptionExitBitmap: vectors above 31");
        p->exception_bitmap = v64;
        if (p->state == HVP_PART_READY && p->ops->property_changed)
            return p->ops->property_changed(p, code);
        return 0;
    case HVP_PROP_X64_MSR_EXIT_BITMAP: p->msr_exit_bitmap = v64; return 0;
    case HVP_PROP_PROCESSOR_COUNT:
        if (v32 < 1 || v32 > HVP_MAX_VCPUS)
            return hvp__perr(p, -EINVAL, "ProcessorCount: %u, not 1..%u", v32, HVP_MAX_VCPUS);
        p->processor_count = v32;
        return 0;
    case HVP_PROP_LOCAL_APIC_EMULATION_MODE:
        if (v32 > HVP_APIC_MODE_X2APIC)
            return hvp__perr(p, -EINVAL, "LocalApicEmulationMode: %u, not 0..2", v32);
        p->apic_mode = v32;
        return 0;
    case HVP_PROP_UNIMPLEMENTED_MSR_ACTION:
        if (v32 > HVP_MSR_ACTION_EXIT)
            return hvp__perr(p, -EINVAL, "UnimplementedMsrAction: %u, not 0..2", v32);
        p->unimplemented_msr_action = v32;
        return 0;
    case HVP_PROP_CPUID_EXIT_LIST:
        return set_list(p, "CpuidExitList", (void **)&p->cpuid_exits, &p->n_cpuid_exits, buf, len,
                        sizeof(uint32_t), 256);
    case HVP_PROP_CPUID_RESULT_LIST:
        return set_list(p, "CpuidResultList", (void **)&p->cpuid_results, &p->n_cpuid_results, buf,
                        len, sizeof(struct hvp_cpuid_result), 256);
    case HVP_PROP_MSR_ACTION_LIST:
        return set_list(p, "MsrActionList", (void **)&p->msr_actions, &p->n_msr_actions, buf, len,
                        sizeof(struct hvp_msr_action), 256);
    }
    return -ENOENT;
}

static int put(struct hvp_partition *p, void *buf, size_t len, size_t *written, const void *src,
               size_t n)
{
    if (written) *written = n;
    if (len < n) return hvp__perr(p, -ENOSPC, "buffer of %zu bytes, %zu needed", len, n);
    if (n) memcpy(buf, src, n);
    return 0;
}

int hvp_partition_get_property(struct hvp_partition *p, uint32_t code, void *buf, size_t len,
                               size_t *written)
{
    if (!p || (!buf && len)) return -EINVAL;
    switch (code) {
    case HVP_PROP_EXTENDED_VM_EXITS: return put(p, buf, len, written, &p->extended_exits, 8);
    case HVP_PROP_EXCEPTION_EXIT_BITMAP: return put(p, buf, len, written, &p->exception_bitmap, 8);
    case HVP_PROP_X64_MSR_EXIT_BITMAP: return put(p, buf, len, written, &p->msr_exit_bitmap, 8);
    case HVP_PROP_PROCESSOR_COUNT: return put(p, buf, len, written, &p->processor_count, 4);
    case HVP_PROP_LOCAL_APIC_EMULATION_MODE: return put(p, buf, len, written, &p->apic_mode, 4);
    case HVP_PROP_UNIMPLEMENTED_MSR_ACTION:
        return put(p, buf, len, written, &p->unimplemented_msr_action, 4);
    case HVP_PROP_CPUID_EXIT_LIST:
        return put(p, buf, len, written, p->cpuid_exits, p->n_cpuid_exits * sizeof(uint32_t));
    case HVP_PROP_CPUID_RESULT_LIST:
        return put(p, buf, len, written, p->cpuid_results,
                   p->n_cpuid_results * sizeof(struct hvp_cpuid_result));
    case HVP_PROP_MSR_ACTION_LIST:
        return put(p, buf, len, written, p->msr_actions,
                   p->n_msr_actions * sizeof(struct hvp_msr_action));
    }
    return hvp__perr(p, -ENOENT, "property 0x%x: unknown", code);
}

int hvp_partition_setup(struct hvp_partition *p)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_CREATED)
        return hvp__perr(p, -EBUSY, "setup: the partition is already set up");
    int r = p->ops->partition_setup(p);
    if (r < 0) return r;
    p->state = HVP_PART_READY;
    return 0;
}

int hvp_partition_reset(struct hvp_partition *p)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "reset: the partition is not set up");
    if (!p->ops->vcpu_reset)
        return hvp__perr(p, -EOPNOTSUPP, "reset: not supported by %s", p->ops->name);
    pthread_mutex_lock(&p->lock);
    int r = 0;
    for (uint32_t i = 0; i < HVP_MAX_VCPUS && r == 0; i++) {
        struct hvp_vcpu *v = p->vcpus[i];
        if (!v) continue;
        if (atomic_load(&v->running))
            r = hvp__perr(p, -EBUSY, "reset: vCPU %u is running", i);
        else if ((r = p->ops->vcpu_reset(v)) < 0)
            hvp__perr(p, r, "reset: vCPU %u: %s", i, v->err);
    }
    pthread_mutex_unlock(&p->lock);
    return r;
}

void hvp_partition_destroy(struct hvp_partition *p)
{
    if (!p) return;
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++)
        hvp_vcpu_destroy(p->vcpus[i]);
    while (p->dead) {
        struct hvp_vcpu *v = p->dead;
        p->dead = v->next_dead;
        free(v);
    }
    for (size_t i = 0; i < p->n_ranges; i++) {
        if (p->state == HVP_PART_READY) p->ops->unmap(p, &p->ranges[i]);
        free(p->ranges[i].dirty);
    }
    if (p->state == HVP_PART_READY) p->ops->partition_destroy(p);
    free(p->ranges);
    free(p->cpuid_exits);
    free(p->cpuid_results);
    free(p->msr_actions);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int hvp_partition_suspend_time(struct hvp_partition *p)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "suspend time: the partition is not set up");
    return p->ops->suspend_time ? p->ops->suspend_time(p)
                                : hvp__perr(p, -EOPNOTSUPP, "suspend time: not supported");
}

int hvp_partition_resume_time(struct hvp_partition *p)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "resume time: the partition is not set up");
    return p->ops->resume_time ? p->ops->resume_time(p)
                               : hvp__perr(p, -EOPNOTSUPP, "resume time: not supported");
}

int hvp_partition_set_io_handler(struct hvp_partition *p, const struct hvp_io_handler *h, void *ctx)
{
    if (!p) return -EINVAL;
    if (h && h->size < sizeof(*h))
        return hvp__perr(p, -EINVAL, "I/O handler: size %u, expected %zu", h->size, sizeof(*h));
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        if (p->vcpus[i] && atomic_load(&p->vcpus[i]->running)) {
            pthread_mutex_unlock(&p->lock);
            return hvp__perr(p, -EBUSY, "I/O handler: vCPU %u is running", i);
        }
    }
    p->has_io_handler = h != NULL;
    if (h) p->io_handler = *h;
    p->io_ctx = ctx;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* ---- memory ------------------------------------------------------------ */

struct hvp_mem_range *hvp__find_range(struct hvp_partition *p, uint64_t gpa)
{
    size_t lo = 0, hi = p->n_ranges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        struct hvp_mem_range *r = &p->ranges[mid];
        if (gpa < r->gpa)
            hi = mid;
        else if (gpa - r->gpa >= r->size)
            lo = mid + 1;
        else
            return r;
    }
    return NULL;
}

/* Index where a range starting at gpa goes. */
static size_t insert_pos(struct hvp_partition *p, uint64_t gpa)
{
    size_t i = 0;
    while (i < p->n_ranges && p->ranges[i].gpa < gpa)
        i++;
    return i;
}

static int insert_range(struct hvp_partition *p, const struct hvp_mem_range *r)
{
    if (p->n_ranges == p->cap_ranges) {
        size_t cap = p->cap_ranges ? p->cap_ranges * 2 : 8;
        struct hvp_mem_range *n = realloc(p->ranges, cap * sizeof(*n));
        if (!n) return -ENOMEM;
        p->ranges = n;
        p->cap_ranges = cap;
    }
    size_t i = insert_pos(p, r->gpa);
    memmove(&p->ranges[i + 1], &p->ranges[i], (p->n_ranges - i) * sizeof(*r));
    p->ranges[i] = *r;
    p->n_ranges++;
    return 0;
}

static uint64_t *alloc_bits(uint64_t pages)
{
    return calloc((pages + 63) / 64, sizeof(uint64_t));
}

static bool test_bit(const uint64_t *b, uint64_t i)
{
    return b[i / 64] >> (i % 64) & 1;
}

int hvp_map_gpa(struct hvp_partition *p, void *hva, uint64_t gpa, uint64_t size, uint32_t flags)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY) return hvp__perr(p, -EBUSY, "map: the partition is not set up");
    if (!size || (gpa | size | (uintptr_t)hva) & (HVP_PAGE - 1) || gpa + size < gpa)
        return hvp__perr(p, -EINVAL, "map: GPA 0x%llx, size 0x%llx, host %p: not page aligned",
                         (unsigned long long)gpa, (unsigned long long)size, hva);
    if (flags & ~(HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE | HVP_MAP_TRACK_DIRTY))
        return hvp__perr(p, -EINVAL, "map: unknown flags 0x%x", flags);
    if (!(flags & HVP_MAP_READ))
        return hvp__perr(p, -EINVAL, "map: ranges must be readable (HVP_MAP_READ)");
    pthread_mutex_lock(&p->lock);
    int r = 0;
    for (size_t i = 0; i < p->n_ranges; i++) {
        struct hvp_mem_range *o = &p->ranges[i];
        if (gpa < o->gpa + o->size && o->gpa < gpa + size) {
            r = hvp__perr(p, -EEXIST, "map: [0x%llx, 0x%llx) overlaps the mapped [0x%llx, 0x%llx)",
                          (unsigned long long)gpa, (unsigned long long)(gpa + size),
                          (unsigned long long)o->gpa, (unsigned long long)(o->gpa + o->size));
            goto out;
        }
    }
    struct hvp_mem_range nr = {.gpa = gpa, .size = size, .hva = hva, .flags = flags, .slot = -1};
    if (flags & HVP_MAP_TRACK_DIRTY && !(nr.dirty = alloc_bits(size / HVP_PAGE))) {
        r = hvp__perr(p, -ENOMEM, "map: out of memory");
        goto out;
    }
    if ((r = p->ops->map(p, &nr)) < 0) {
        free(nr.dirty);
        goto out;
    }
    if ((r = insert_range(p, &nr)) < 0) {
        p->ops->unmap(p, &nr);
        free(nr.dirty);
        hvp__perr(p, r, "map: out of memory");
    }
out:
    pthread_mutex_unlock(&p->lock);
    if (p->ops->sync) p->ops->sync(p);
    return r;
}

/* The piece [off, off+len) of r as a range of its own, with its dirty bits. */
static int piece(struct hvp_mem_range *r, uint64_t off, uint64_t len, struct hvp_mem_range *out)
{
    *out = (struct hvp_mem_range){
        .gpa = r->gpa + off, .size = len, .hva = r->hva + off, .flags = r->flags, .slot = -1};
    if (r->dirty) {
        if (!(out->dirty = alloc_bits(len / HVP_PAGE))) return -ENOMEM;
        for (uint64_t i = 0; i < len / HVP_PAGE; i++)
            if (test_bit(r->dirty, off / HVP_PAGE + i)) out->dirty[i / 64] |= 1ull << (i % 64);
    }
    return 0;
}

int hvp_unmap_gpa(struct hvp_partition *p, uint64_t gpa, uint64_t size)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "unmap: the partition is not set up");
    if (!size || (gpa | size) & (HVP_PAGE - 1) || gpa + size < gpa)
        return hvp__perr(p, -EINVAL, "unmap: GPA 0x%llx, size 0x%llx: not page aligned",
                         (unsigned long long)gpa, (unsigned long long)size);
    uint64_t end = gpa + size;
    int r = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n_ranges;) {
        struct hvp_mem_range *o = &p->ranges[i];
        uint64_t oend = o->gpa + o->size;
        if (oend <= gpa || o->gpa >= end) {
            i++;
            continue;
        }
        /* Keep what lies outside [gpa, end): up to two pieces. Dirty bits
         * are fetched first so that the pieces keep them. */
        struct hvp_mem_range keep[2];
        int nkeep = 0;
        if (o->dirty && p->ops->fetch_dirty) p->ops->fetch_dirty(p, o);
        if (o->gpa < gpa && (r = piece(o, 0, gpa - o->gpa, &keep[nkeep++])) < 0) break;
        if (oend > end && (r = piece(o, end - o->gpa, oend - end, &keep[nkeep++])) < 0) break;
        struct hvp_mem_range old = *o;
        p->ops->unmap(p, &old);
        free(old.dirty);
        memmove(&p->ranges[i], &p->ranges[i + 1], (p->n_ranges - i - 1) * sizeof(*o));
        p->n_ranges--;
        for (int k = 0; k < nkeep; k++) {
            if ((r = p->ops->map(p, &keep[k])) < 0 || (r = insert_range(p, &keep[k])) < 0) {
                /* The backend refused the remainder: it stays unmapped and
                 * the caller hears about it. */
                hvp__perr(p, r, "unmap: re-mapping the rest [0x%llx, 0x%llx) failed: %s",
                          (unsigned long long)keep[k].gpa,
                          (unsigned long long)(keep[k].gpa + keep[k].size), strerror(-r));
                free(keep[k].dirty);
            }
        }
        /* The pieces were inserted in order; restart the scan past them. */
        i = insert_pos(p, end);
    }
    pthread_mutex_unlock(&p->lock);
    if (p->ops->sync) p->ops->sync(p);
    return r < 0 ? r : 0;
}

/* Copies between guest memory and buf; dir 0 reads, 1 writes. */
static int copy_gpa(struct hvp_partition *p, uint64_t gpa, void *buf, size_t len, int dir)
{
    if (!p || (!buf && len)) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    uint8_t *b = buf;
    while (len) {
        struct hvp_mem_range *r = hvp__find_range(p, gpa);
        if (!r) {
            pthread_mutex_unlock(&p->lock);
            return hvp__perr(p, -ERANGE, "GPA 0x%llx is not mapped", (unsigned long long)gpa);
        }
        size_t n = r->gpa + r->size - gpa;
        if (n > len) n = len;
        if (dir)
            memcpy(r->hva + (gpa - r->gpa), b, n);
        else
            memcpy(b, r->hva + (gpa - r->gpa), n);
        b += n;
        gpa += n;
        len -= n;
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int hvp_read_gpa(struct hvp_partition *p, uint64_t gpa, void *buf, size_t len)
{
    return copy_gpa(p, gpa, buf, len, 0);
}

int hvp_write_gpa(struct hvp_partition *p, uint64_t gpa, const void *buf, size_t len)
{
    return copy_gpa(p, gpa, (void *)buf, len, 1);
}

int hvp_gpa_to_hva(struct hvp_partition *p, uint64_t gpa, size_t len, void **hva)
{
    if (!p || !hva) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    struct hvp_mem_range *r = hvp__find_range(p, gpa);
    int ret = 0;
    if (!r || len > r->gpa + r->size - gpa)
        ret = hvp__perr(p, -ERANGE, "[0x%llx, +0x%zx) is not inside one mapped range",
                        (unsigned long long)gpa, len);
    else
        *hva = r->hva + (gpa - r->gpa);
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int hvp_query_dirty_bitmap(struct hvp_partition *p, uint64_t gpa, uint64_t size, uint64_t *bitmap,
                           size_t bitmap_bytes)
{
    if (!p || !bitmap) return -EINVAL;
    if (!size || (gpa | size) & (HVP_PAGE - 1))
        return hvp__perr(p, -EINVAL, "dirty bitmap: GPA 0x%llx, size 0x%llx: not page aligned",
                         (unsigned long long)gpa, (unsigned long long)size);
    uint64_t pages = size / HVP_PAGE;
    if (bitmap_bytes < (pages + 63) / 64 * 8)
        return hvp__perr(p, -ENOSPC, "dirty bitmap: %zu bytes for %llu pages", bitmap_bytes,
                         (unsigned long long)pages);
    pthread_mutex_lock(&p->lock);
    struct hvp_mem_range *r = hvp__find_range(p, gpa);
    int ret = 0;
    if (!r || size > r->gpa + r->size - gpa) {
        ret =
            hvp__perr(p, -ERANGE, "dirty bitmap: [0x%llx, +0x%llx) is not inside one mapped range",
                      (unsigned long long)gpa, (unsigned long long)size);
        goto out;
    }
    if (!r->dirty) {
        ret =
            hvp__perr(p, -EINVAL, "dirty bitmap: the range is not mapped with HVP_MAP_TRACK_DIRTY");
        goto out;
    }
    if (p->ops->fetch_dirty && (ret = p->ops->fetch_dirty(p, r)) < 0) goto out;
    memset(bitmap, 0, (pages + 63) / 64 * 8);
    uint64_t first = (gpa - r->gpa) / HVP_PAGE;
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t j = first + i;
        if (test_bit(r->dirty, j)) {
            bitmap[i / 64] |= 1ull << (i % 64);
            r->dirty[j / 64] &= ~(1ull << (j % 64));
        }
    }
out:
    pthread_mutex_unlock(&p->lock);
    if (p->ops->sync) p->ops->sync(p);
    return ret;
}

/* ---- vCPUs ------------------------------------------------------------- */

int hvp_vcpu_create(struct hvp_partition *p, uint32_t index, struct hvp_vcpu **out)
{
    if (!p || !out) return -EINVAL;
    *out = NULL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "vCPU %u: the partition is not set up", index);
    if (index >= p->processor_count)
        return hvp__perr(p, -EINVAL, "vCPU %u: ProcessorCount is %u", index, p->processor_count);
    struct hvp_vcpu *v = calloc(1, sizeof(*v));
    if (!v) return hvp__perr(p, -ENOMEM, "vCPU %u: out of memory", index);
    v->p = p;
    v->index = index;
    pthread_mutex_lock(&p->lock);
    int r = 0;
    if (p->vcpus[index])
        r = hvp__perr(p, -EEXIST, "vCPU %u: already exists", index);
    else if ((r = p->ops->vcpu_create(v)) < 0)
        hvp__perr(p, r, "vCPU %u: %s", index, v->err);
    else
        p->vcpus[index] = v;
    pthread_mutex_unlock(&p->lock);
    if (r < 0) {
        free(v);
        return r;
    }
    *out = v;
    return 0;
}

void hvp_vcpu_destroy(struct hvp_vcpu *v)
{
    if (!v || v->destroyed) return;
    struct hvp_partition *p = v->p;
    p->ops->vcpu_destroy(v);
    pthread_mutex_lock(&p->lock);
    p->vcpus[v->index] = NULL;
    v->destroyed = true;
    v->next_dead = p->dead;
    p->dead = v;
    pthread_mutex_unlock(&p->lock);
}

#define CHECK_LIVE(v)                                                                              \
    do {                                                                                           \
        if (!(v)) return -EINVAL;                                                                  \
        if ((v)->destroyed) return hvp__verr(v, -ESHUTDOWN, "vCPU %u was destroyed", (v)->index);  \
    } while (0)

uint32_t hvp_vcpu_index(const struct hvp_vcpu *v)
{
    return v ? v->index : UINT32_MAX;
}
const char *hvp_vcpu_error(const struct hvp_vcpu *v)
{
    return v ? v->err : "no handle";
}

int hvp_vcpu_run(struct hvp_vcpu *v, struct hvp_exit *exit)
{
    CHECK_LIVE(v);
    if (!v || !exit) return -EINVAL;
    int expect = 0;
    if (!atomic_compare_exchange_strong(&v->running, &expect, 1))
        return hvp__verr(v, -EBUSY, "run: vCPU %u is already running", v->index);
    memset(exit, 0, sizeof(*exit));
    int r = v->p->ops->vcpu_run(v, exit);
    atomic_store(&v->running, 0);
    return r;
}

int hvp_vcpu_cancel(struct hvp_vcpu *v)
{
    CHECK_LIVE(v);
    if (!v) return -EINVAL;
    return v->p->ops->vcpu_cancel(v);
}

int hvp_vcpu_complete_io(struct hvp_vcpu *v, const void *data, size_t len)
{
    CHECK_LIVE(v);
    if (!v || (!data && len)) return -EINVAL;
    return v->p->ops->complete_io(v, data, len);
}

int hvp_vcpu_complete_msr(struct hvp_vcpu *v, uint64_t value, bool inject_gp)
{
    CHECK_LIVE(v);
    if (!v) return -EINVAL;
    return v->p->ops->complete_msr(v, value, inject_gp);
}

static int check_names(struct hvp_vcpu *v, const uint32_t *names, uint32_t n, const void *vals)
{
    if (!names || !vals) return hvp__verr(v, -EINVAL, "registers: NULL names or values");
    for (uint32_t i = 0; i < n; i++)
        if (!hvp_reg_name(names[i]))
            return hvp__verr(v, -EINVAL, "registers: unknown name 0x%x (entry %u)", names[i], i);
    return 0;
}

int hvp_vcpu_get_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t count,
                           union hvp_reg_value *values)
{
    CHECK_LIVE(v);
    if (!v) return -EINVAL;
    int r = check_names(v, names, count, values);
    return r < 0 ? r : v->p->ops->get_registers(v, names, count, values);
}

int hvp_vcpu_set_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t count,
                           const union hvp_reg_value *values)
{
    CHECK_LIVE(v);
    if (!v) return -EINVAL;
    int r = check_names(v, names, count, values);
    return r < 0 ? r : v->p->ops->set_registers(v, names, count, values);
}

#define VCPU_OP(v, op, ...)                                                                        \
    ((v)->destroyed ? hvp__verr(v, -ESHUTDOWN, "vCPU %u was destroyed", (v)->index)                \
     : (v)->p->ops->op                                                                             \
         ? (v)->p->ops->op(v, __VA_ARGS__)                                                         \
         : hvp__verr(v, -EOPNOTSUPP, #op ": not supported by %s", (v)->p->ops->name))

int hvp_vcpu_get_xsave(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    return v && (buf || !len) ? VCPU_OP(v, get_xsave, buf, len, written) : -EINVAL;
}

int hvp_vcpu_set_xsave(struct hvp_vcpu *v, const void *buf, size_t len)
{
    return v && buf ? VCPU_OP(v, set_xsave, buf, len) : -EINVAL;
}

int hvp_vcpu_get_lapic(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    return v && (buf || !len) ? VCPU_OP(v, get_lapic, buf, len, written) : -EINVAL;
}

int hvp_vcpu_set_lapic(struct hvp_vcpu *v, const void *buf, size_t len)
{
    return v && buf ? VCPU_OP(v, set_lapic, buf, len) : -EINVAL;
}

int hvp_vcpu_get_cpuid(struct hvp_vcpu *v, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
    return v && out ? VCPU_OP(v, get_cpuid, leaf, subleaf, out) : -EINVAL;
}

int hvp_vcpu_translate_gva(struct hvp_vcpu *v, uint64_t gva, uint32_t flags, uint32_t *result,
                           uint64_t *gpa)
{
    CHECK_LIVE(v);
    if (!v || !result || !gpa) return -EINVAL;
    if (flags & ~0x1Fu) return hvp__verr(v, -EINVAL, "translate: unknown flags 0x%x", flags);
    static const uint32_t names[] = {HVP_REG_CR0, HVP_REG_CR3, HVP_REG_CR4, HVP_REG_EFER,
                                     HVP_REG_SS};
    union hvp_reg_value vals[5];
    int r = v->p->ops->get_registers(v, names, 5, vals);
    if (r < 0) return r;
    struct hvp_paging_state st = {vals[0].reg64, vals[1].reg64, vals[2].reg64, vals[3].reg64,
                                  (vals[4].segment.attributes >> HVP_SEG_DPL_SHIFT) & 3};
    return hvp__walk(v->p, &st, gva, flags, result, gpa);
}

/* ---- interrupts -------------------------------------------------------- */

int hvp_request_interrupt(struct hvp_partition *p, const struct hvp_interrupt *irq)
{
    if (!p || !irq) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "interrupt: the partition is not set up");
    if (p->apic_mode == HVP_APIC_MODE_NONE)
        return hvp__perr(
            p, -EOPNOTSUPP,
            "interrupt: LocalApicEmulationMode is None (inject with PendingInterruption)");
    if (!p->ops->request_interrupt)
        return hvp__perr(p, -EOPNOTSUPP, "interrupt: not supported by %s", p->ops->name);
    return p->ops->request_interrupt(p, irq);
}

int hvp_set_irq_line(struct hvp_partition *p, uint32_t gsi, bool level)
{
    if (!p) return -EINVAL;
    if (p->state != HVP_PART_READY)
        return hvp__perr(p, -EBUSY, "IRQ line: the partition is not set up");
    if (p->apic_mode == HVP_APIC_MODE_NONE || !p->ops->set_irq_line)
        return hvp__perr(p, -EOPNOTSUPP, "IRQ line: the platform emulates no interrupt controller");
    return p->ops->set_irq_line(p, gsi, level);
}

/* ---- names ------------------------------------------------------------- */

const char *hvp_reg_name(uint32_t n)
{
    static const char *const low[] = {
        "Rax", "Rcx", "Rdx", "Rbx", "Rsp",  "Rbp", "Rsi",  "Rdi",    "R8",  "R9",
        "R10", "R11", "R12", "R13", "R14",  "R15", "Rip",  "Rflags", "Es",  "Cs",
        "Ss",  "Ds",  "Fs",  "Gs",  "Ldtr", "Tr",  "Idtr", "Gdtr",   "Cr0", "Cr2",
        "Cr3", "Cr4", "Cr8", "Dr0", "Dr1",  "Dr2", "Dr3",  "Dr6",    "Dr7", "XCr0"};
    static const char *const xmm[] = {"Xmm0",
                                      "Xmm1",
                                      "Xmm2",
                                      "Xmm3",
                                      "Xmm4",
                                      "Xmm5",
                                      "Xmm6",
                                      "Xmm7",
                                      "Xmm8",
                                      "Xmm9",
                                      "Xmm10",
                                      "Xmm11",
                                      "Xmm12",
                                      "Xmm13",
                                      "Xmm14",
                                      "Xmm15",
                                      "FpMmx0",
                                      "FpMmx1",
                                      "FpMmx2",
                                      "FpMmx3",
                                      "FpMmx4",
                                      "FpMmx5",
                                      "FpMmx6",
                                      "FpMmx7",
                                      "FpControlStatus",
                                      "XmmControlStatus"};
    static const char *const msr[] = {"Tsc",  "Efer",       "KernelGsBase", "ApicBase",
                                      "Pat",  "SysenterCs", "SysenterEip",  "SysenterEsp",
                                      "Star", "Lstar",      "Cstar",        "Sfmask",
                                      NULL,   NULL,         "MtrrDefType"};
    if (n < sizeof(low) / sizeof(low[0])) return low[n];
    if (n >= 0x1000 && n - 0x1000 < sizeof(xmm) / sizeof(xmm[0])) return xmm[n - 0x1000];
    if (n >= 0x2000 && n - 0x2000 < sizeof(msr) / sizeof(msr[0])) return msr[n - 0x2000];
    switch (n) {
    case HVP_REG_TSC_AUX: return "TscAux";
    case HVP_REG_PENDING_INTERRUPTION: return "PendingInterruption";
    case HVP_REG_INTERRUPT_STATE: return "InterruptState";
    case HVP_REG_DELIVERABILITY_NOTIFICATIONS: return "DeliverabilityNotifications";
    }
    return NULL;
}

const char *hvp_exit_name(uint32_t reason)
{
    switch (reason) {
    case HVP_EXIT_NONE: return "None";
    case HVP_EXIT_MEMORY_ACCESS: return "MemoryAccess";
    case HVP_EXIT_IO_PORT: return "IoPortAccess";
    case HVP_EXIT_UNRECOVERABLE_EXCEPTION: return "UnrecoverableException";
    case HVP_EXIT_INVALID_VP_REGISTER_VALUE: return "InvalidVpRegisterValue";
    case HVP_EXIT_UNSUPPORTED_FEATURE: return "UnsupportedFeature";
    case HVP_EXIT_INTERRUPT_WINDOW: return "InterruptWindow";
    case HVP_EXIT_HALT: return "Halt";
    case HVP_EXIT_APIC_EOI: return "ApicEoi";
    case HVP_EXIT_MSR_ACCESS: return "MsrAccess";
    case HVP_EXIT_CPUID: return "Cpuid";
    case HVP_EXIT_EXCEPTION: return "Exception";
    case HVP_EXIT_CANCELED: return "Canceled";
    case HVP_EXIT_SHUTDOWN: return "Shutdown";
    case HVP_EXIT_INTERNAL_ERROR: return "InternalError";
    }
    return "?";
}
