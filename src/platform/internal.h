/* Platform internals: the handles and the backend ops table. */
#ifndef HVP_PLATFORM_INTERNAL_H
#define HVP_PLATFORM_INTERNAL_H

#include <hvp/platform.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#define HVP_ERRLEN 256
#define HVP_PAGE   4096ull

/* One mapped GPA range. `slot` belongs to the backend; `dirty` accumulates
 * dirty bits fetched from the backend until the VMM queries them. */
struct hvp_mem_range {
    uint64_t gpa, size;
    uint8_t *hva;
    uint32_t flags;
    int slot;
    uint64_t *dirty; /* size / 4096 bits, NULL without HVP_MAP_TRACK_DIRTY */
};

/* A backend: SQLite-VFS style. Any op may be NULL where said; the platform
 * then answers -EOPNOTSUPP. Backends keep their state in the `priv` fields
 * of struct hvp, hvp_partition and hvp_vcpu. */
#define HVP_BACKEND_OPS_VERSION 1
struct hvp_backend_ops {
    uint32_t version; /* HVP_BACKEND_OPS_VERSION */
    const char *name;
    /* Opens the backend on h (h->priv); -ENODEV plus a reason when absent. */
    int (*open)(struct hvp *h, char *why, size_t len);
    void (*close)(struct hvp *h);
    int (*get_capability)(struct hvp *h, uint32_t code, void *buf, size_t len, size_t *written);
    /* Validation of a property against what the backend can do, before
     * the platform stores it (may be NULL: everything accepted). */
    int (*check_property)(struct hvp_partition *p, uint32_t code, const void *buf, size_t len);
    int (*partition_setup)(struct hvp_partition *p);
    void (*partition_destroy)(struct hvp_partition *p);
    /* A property that may change after setup (exception bitmap). */
    int (*property_changed)(struct hvp_partition *p, uint32_t code);
    int (*suspend_time)(struct hvp_partition *p);
    int (*resume_time)(struct hvp_partition *p);
    /* Memory: map allocates r->slot; unmap releases it. fetch_dirty ORs the
     * backend's dirty bits for r into r->dirty and clears them there. */
    int (*map)(struct hvp_partition *p, struct hvp_mem_range *r);
    void (*unmap)(struct hvp_partition *p, struct hvp_mem_range *r);
    int (*fetch_dirty)(struct hvp_partition *p, struct hvp_mem_range *r);
    /* Called after map, unmap and fetch_dirty once p->lock is released:
     * returns when every vCPU uses the new map (may be NULL). */
    void (*sync)(struct hvp_partition *p);
    int (*vcpu_create)(struct hvp_vcpu *v);
    void (*vcpu_destroy)(struct hvp_vcpu *v);
    int (*vcpu_reset)(struct hvp_vcpu *v);
    int (*vcpu_run)(struct hvp_vcpu *v, struct hvp_exit *exit);
    int (*vcpu_cancel)(struct hvp_vcpu *v);
    int (*complete_io)(struct hvp_vcpu *v, const void *data, size_t len);
    int (*complete_msr)(struct hvp_vcpu *v, uint64_t value, bool inject_gp);
    /* Names are already checked with hvp_reg_name(). */
    int (*get_registers)(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                         union hvp_reg_value *vals);
    int (*set_registers)(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                         const union hvp_reg_value *vals);
    int (*get_xsave)(struct hvp_vcpu *v, void *buf, size_t len, size_t *written);
    int (*set_xsave)(struct hvp_vcpu *v, const void *buf, size_t len);
    int (*get_lapic)(struct hvp_vcpu *v, void *buf, size_t len, size_t *written);
    int (*set_lapic)(struct hvp_vcpu *v, const void *buf, size_t len);
    int (*get_cpuid)(struct hvp_vcpu *v, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
    int (*request_interrupt)(struct hvp_partition *p, const struct hvp_interrupt *irq);
    int (*set_irq_line)(struct hvp_partition *p, uint32_t gsi, bool level);
};

extern const struct hvp_backend_ops hvp_kvm_ops;
extern const struct hvp_backend_ops hvp_soft_ops;

struct hvp {
    const struct hvp_backend_ops *ops;
    void *priv;
    char err[HVP_ERRLEN];
};

enum { HVP_PART_CREATED, HVP_PART_READY };

struct hvp_partition {
    struct hvp *h;
    const struct hvp_backend_ops *ops;
    void *priv;
    int state;
    pthread_mutex_t lock; /* memory map, vCPU table */

    /* Properties. */
    uint32_t processor_count;
    uint64_t extended_exits;
    uint64_t exception_bitmap;
    uint64_t msr_exit_bitmap;
    uint32_t apic_mode;
    uint32_t unimplemented_msr_action;
    uint32_t *cpuid_exits;
    size_t n_cpuid_exits;
    struct hvp_cpuid_result *cpuid_results;
    size_t n_cpuid_results;
    struct hvp_msr_action *msr_actions;
    size_t n_msr_actions;

    struct hvp_mem_range *ranges; /* sorted by gpa, never overlapping */
    size_t n_ranges, cap_ranges;

    struct hvp_vcpu *vcpus[HVP_MAX_VCPUS];
    struct hvp_io_handler io_handler;
    void *io_ctx;
    bool has_io_handler;
    struct hvp_vcpu *dead; /* destroyed vCPU handles */

    char err[HVP_ERRLEN];
};

struct hvp_vcpu {
    struct hvp_partition *p;
    uint32_t index;
    void *priv;
    atomic_int running;
    bool destroyed; /* handle kept until the partition goes: calls give -ESHUTDOWN */
    struct hvp_vcpu *next_dead;
    char err[HVP_ERRLEN];
};

/* Sets the handle's message and returns err (negative errno). */
int hvp__set_error(char *buf, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define hvp__perr(p, e_, ...) hvp__set_error((p)->err, (e_), __VA_ARGS__)
#define hvp__verr(v, e_, ...) hvp__set_error((v)->err, (e_), __VA_ARGS__)

/* The range holding gpa, or NULL (caller holds p->lock or runs the vCPU). */
struct hvp_mem_range *hvp__find_range(struct hvp_partition *p, uint64_t gpa);

/* Walks the page tables with the given control state (shared by the
 * backends; kvm passes its registers). */
struct hvp_paging_state {
    uint64_t cr0, cr3, cr4, efer;
    unsigned cpl;
};
int hvp__walk(struct hvp_partition *p, const struct hvp_paging_state *st, uint64_t gva,
              uint32_t flags, uint32_t *result, uint64_t *gpa);

#endif
