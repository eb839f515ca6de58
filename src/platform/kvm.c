/* The kvm backend: the platform on /dev/kvm.
 *
 * Exits that KVM completes on the next KVM_RUN (I/O, MMIO, RDMSR/WRMSR)
 * are "pending". They are finished in one of three ways:
 * - hvp_vcpu_complete_io/_msr: data into kvm_run, then KVM_RUN with
 *   immediate_exit so that RIP is final when the call returns;
 * - WHP style, the VMM writes registers (the emulator does): before the
 *   first register write the pending access is completed with zeros the
 *   same way and the general registers are put back as they were, so that
 *   only the VMM's writes count;
 * - neither: the next run completes it (reads give zeros).
 * Cancel: immediate_exit plus HVP_KICK_SIGNAL to the vCPU thread, which
 * keeps the signal blocked except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so
 * no handler is ever needed; pending kicks are drained with sigtimedwait.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <hvp/x86.h>

#define MAX_SLOTS 512

struct kvm_sys {
    int fd;
    int run_size;
    struct kvm_cpuid2 *supported;
    bool user_msr;
};

struct kvm_part {
    int vm;
    uint64_t slots[MAX_SLOTS / 64];
    int nslots;
    struct kvm_cpuid2 *cpuid;
    struct kvm_vcpu_priv *parked[HVP_MAX_VCPUS]; /* destroyed vCPUs: KVM keeps their ids */
    bool irqchip;
    bool clock_saved;
    struct kvm_clock_data clock;
};

enum { PEND_NONE, PEND_IO, PEND_MMIO, PEND_MSR };

struct kvm_vcpu_priv {
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_ready;
    atomic_int cancel;
    int pending;
    bool req_window;
    bool queued;
    struct hvp_exit queued_exit;
};

#define SYS(h)  ((struct kvm_sys *)(h)->priv)
#define PART(p) ((struct kvm_part *)(p)->priv)
#define VCPU(v) ((struct kvm_vcpu_priv *)(v)->priv)

static int kerr(char *buf, const char *what)
{
    int e = errno ? errno : EIO;
    return hvp__set_error(buf, -e, "kvm: %s: %s", what, strerror(e));
}

/* ---- platform ---------------------------------------------------------- */

static struct kvm_cpuid2 *get_supported(int fd)
{
    for (int n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        if (!c) return NULL;
        c->nent = n;
        if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, c) == 0) return c;
        free(c);
        if (errno != E2BIG) return NULL;
    }
    return NULL;
}

static int kvm_open(struct hvp *h, char *why, size_t len)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(why, len, "kvm: /dev/kvm: %s", strerror(e));
        return e == ENOENT || e == ENXIO || e == ENODEV ? -ENODEV : -e;
    }
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        snprintf(why, len, "kvm: API version %d, expected %d", api, KVM_API_VERSION);
        close(fd);
        return -ENODEV;
    }
    if (ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0 ||
        ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
        snprintf(why, len,
                 "kvm: the kernel lacks immediate_exit or read-only memory (Linux >= 4.11)");
        close(fd);
        return -ENODEV;
    }
    struct kvm_sys *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->fd = fd;
    s->run_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    s->supported = get_supported(fd);
    s->user_msr = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR) > 0 &&
                  ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER) > 0;
    if (s->run_size <= 0 || !s->supported) {
        snprintf(why, len, "kvm: cannot read the vCPU area size or the supported CPUID");
        free(s->supported);
        free(s);
        close(fd);
        return -ENODEV;
    }
    h->priv = s;
    return 0;
}

static void kvm_close(struct hvp *h)
{
    struct kvm_sys *s = SYS(h);
    close(s->fd);
    free(s->supported);
    free(s);
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == fn && (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
            return e;
    }
    return NULL;
}

static uint64_t exception_vectors_supported(void)
{
    return (1ull << 1) | (1ull << 3);
}

static int kvm_get_capability(struct hvp *h, uint32_t code, void *buf, size_t len, size_t *written)
{
    struct kvm_sys *s = SYS(h);
    uint64_t v64 = 0;
    uint32_t v32;
    uint8_t v8;
    const void *src = &v64;
    size_t n = 8;
    struct kvm_cpuid_entry2 *e;
    switch (code) {
    case HVP_CAP_HYPERVISOR_PRESENT: v32 = 1, src = &v32, n = 4; break;
    case HVP_CAP_FEATURES:
        v64 = HVP_FEATURE_PARTIAL_UNMAP | HVP_FEATURE_LOCAL_APIC_EMULATION | HVP_FEATURE_XSAVE |
              HVP_FEATURE_DIRTY_PAGE_TRACKING;
        break;
    case HVP_CAP_EXTENDED_VM_EXITS:
        v64 = HVP_EXTENDED_EXIT_EXCEPTION | (s->user_msr ? HVP_EXTENDED_EXIT_MSR : 0);
        break;
    case HVP_CAP_EXCEPTION_EXIT_BITMAP: v64 = exception_vectors_supported(); break;
    case HVP_CAP_X64_MSR_EXIT_BITMAP: v64 = s->user_msr ? HVP_MSR_EXIT_UNHANDLED_MSRS : 0; break;
    case HVP_CAP_PROCESSOR_VENDOR:
        e = cpuid_find(s->supported, 0, 0);
        v32 = !e ? 1 : e->ebx == 0x68747541 ? 0 : e->ebx == 0x6f677948 ? 2 : 1;
        src = &v32, n = 4;
        break;
    case HVP_CAP_PROCESSOR_CLFLUSH_SIZE:
        e = cpuid_find(s->supported, 1, 0);
        v8 = e ? (e->ebx >> 8) & 0xff : 8;
        src = &v8, n = 1;
        break;
    case HVP_CAP_PROCESSOR_XSAVE_FEATURES:
        e = cpuid_find(s->supported, 0xd, 0);
        v64 = e ? e->eax | (uint64_t)e->edx << 32 : 0;
        break;
    case HVP_CAP_INTERRUPT_CLOCK_FREQUENCY:
        v64 = 1000000000ull; /* KVM's APIC timer counts nanoseconds */
        break;
    case HVP_CAP_PROCESSOR_CLOCK_FREQUENCY:
        return hvp__set_error(h->err, -EOPNOTSUPP,
                              "kvm: the TSC frequency is per vCPU (read it in the guest)");
    default: return hvp__set_error(h->err, -ENOENT, "capability 0x%x: unknown", code);
    }
    if (written) *written = n;
    if (len < n)
        return hvp__set_error(h->err, -ENOSPC, "capability 0x%x: %zu bytes needed", code, n);
    memcpy(buf, src, n);
    return 0;
}

/* ---- partitions -------------------------------------------------------- */

static int kvm_check_property(struct hvp_partition *p, uint32_t code, const void *buf, size_t len)
{
    uint64_t v = 0;
    if (len == 8) memcpy(&v, buf, 8);
    switch (code) {
    case HVP_PROP_EXTENDED_VM_EXITS:
        if (v & HVP_EXTENDED_EXIT_CPUID)
            return hvp__perr(p, -EOPNOTSUPP,
                             "kvm: CPUID exits are not possible (KVM answers "
                             "CPUID in the kernel; use CpuidResultList)");
        if (v & HVP_EXTENDED_EXIT_MSR && !SYS(p->h)->user_msr)
            return hvp__perr(p, -EOPNOTSUPP, "kvm: the kernel has no user-space MSR exits (5.10+)");
        return 0;
    case HVP_PROP_EXCEPTION_EXIT_BITMAP:
        if (v & ~exception_vectors_supported())
            return hvp__perr(p, -EOPNOTSUPP,
                             "kvm: only #DB (1) and #BP (3) can exit, bitmap 0x%llx asks more",
                             (unsigned long long)v);
        return 0;
    case HVP_PROP_CPUID_EXIT_LIST:
        if (len) return hvp__perr(p, -EOPNOTSUPP, "kvm: CPUID exits are not possible");
        return 0;
    case HVP_PROP_MSR_ACTION_LIST: {
        size_t n = 0;
        const struct hvp_msr_action *a = buf;
        for (size_t i = 0; i < len / sizeof(*a); i++)
            n += a[i].read_action || a[i].write_action;
        if (n > KVM_MSR_FILTER_MAX_RANGES)
            return hvp__perr(p, -ENOSPC, "kvm: %zu MSR actions, at most %d", n,
                             KVM_MSR_FILTER_MAX_RANGES);
        return 0;
    }
    }
    return 0;
}

static int set_msr_filter(struct hvp_partition *p)
{
    struct kvm_part *k = PART(p);
    if (!(p->extended_exits & HVP_EXTENDED_EXIT_MSR)) return 0;
    struct kvm_enable_cap cap = {.cap = KVM_CAP_X86_USER_SPACE_MSR};
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
    if (p->msr_exit_bitmap & HVP_MSR_EXIT_UNHANDLED_MSRS ||
        p->unimplemented_msr_action != HVP_MSR_ACTION_DEFAULT)
        cap.args[0] |= KVM_MSR_EXIT_REASON_UNKNOWN;
    if (ioctl(k->vm, KVM_ENABLE_CAP, &cap) < 0) return kerr(p->err, "KVM_CAP_X86_USER_SPACE_MSR");
    struct kvm_msr_filter f = {.flags = KVM_MSR_FILTER_DEFAULT_ALLOW};
    uint8_t deny[1] = {0}; /* bit clear: the access exits (KVM copies it) */
    int n = 0;
    for (size_t i = 0; i < p->n_msr_actions; i++) {
        const struct hvp_msr_action *a = &p->msr_actions[i];
        uint32_t fl = (a->read_action ? KVM_MSR_FILTER_READ : 0) |
                      (a->write_action ? KVM_MSR_FILTER_WRITE : 0);
        if (!fl) continue;
        f.ranges[n++] = (struct kvm_msr_filter_range){
            .flags = fl, .nmsrs = 1, .base = a->index, .bitmap = deny};
    }
    if (n && ioctl(k->vm, KVM_X86_SET_MSR_FILTER, &f) < 0)
        return kerr(p->err, "KVM_X86_SET_MSR_FILTER");
    return 0;
}

/* GSI n drives PIC pin n (n < 16) and IOAPIC pin n, like KVM_CREATE_IRQCHIP's
 * default table, except GSI 2: the master's pin 2 is the slave's cascade
 * input, which nothing on the board drives. KVM's default routes GSI 2
 * there too, so a device on IOAPIC pin 2 (the PIT, by the MADT's override
 * 0 -> 2) would also raise the cascade pin, and each of its edges would
 * come back from the slave as a spurious IRQ 15. */
static int set_irq_routing(struct hvp_partition *p, int vm)
{
    enum { NPIN = 24, NPIC = 16 };
    struct kvm_irq_routing *t =
        calloc(1, sizeof(*t) + (NPIN + NPIC) * sizeof(struct kvm_irq_routing_entry));
    if (!t) return hvp__perr(p, -ENOMEM, "kvm: out of memory");
    uint32_t n = 0;
    for (uint32_t gsi = 0; gsi < NPIN; gsi++) {
        if (gsi < NPIC && gsi != 2) {
            t->entries[n].gsi = gsi;
            t->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
            t->entries[n].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                      : KVM_IRQCHIP_PIC_SLAVE;
            t->entries[n++].u.irqchip.pin = gsi & 7;
        }
        t->entries[n].gsi = gsi;
        t->entries[n].type = KVM_IRQ_ROUTING_IRQCHIP;
        t->entries[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        t->entries[n++].u.irqchip.pin = gsi;
    }
    t->nr = n;
    int r = ioctl(vm, KVM_SET_GSI_ROUTING, t) < 0 ? kerr(p->err, "KVM_SET_GSI_ROUTING") : 0;
    free(t);
    return r;
}

static int kvm_partition_setup(struct hvp_partition *p)
{
    struct kvm_sys *s = SYS(p->h);
    struct kvm_part *k = calloc(1, sizeof(*k));
    if (!k) return hvp__perr(p, -ENOMEM, "kvm: out of memory");
    p->priv = k;
    int r;
    k->vm = ioctl(s->fd, KVM_CREATE_VM, 0);
    if (k->vm < 0) {
        r = kerr(p->err, "KVM_CREATE_VM");
        goto fail;
    }
    k->nslots = ioctl(s->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
    if (k->nslots <= 0 || k->nslots > MAX_SLOTS) k->nslots = k->nslots <= 0 ? 32 : MAX_SLOTS;
    /* Intel needs a TSS and an identity map below 4 GiB for real mode. */
    if (ioctl(k->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0) {
        r = kerr(p->err, "KVM_SET_TSS_ADDR");
        goto fail;
    }
    if (p->apic_mode != HVP_APIC_MODE_NONE) {
        if (ioctl(k->vm, KVM_CREATE_IRQCHIP, 0) < 0) {
            r = kerr(p->err, "KVM_CREATE_IRQCHIP");
            goto fail;
        }
        k->irqchip = true;
        if ((r = set_irq_routing(p, k->vm)) < 0) goto fail;
    }
    if ((r = set_msr_filter(p)) < 0) goto fail;
    /* The CPUID table: KVM's defaults with the result list on top. */
    size_t n = s->supported->nent + p->n_cpuid_results;
    k->cpuid = calloc(1, sizeof(*k->cpuid) + n * sizeof(k->cpuid->entries[0]));
    if (!k->cpuid) {
        r = hvp__perr(p, -ENOMEM, "kvm: out of memory");
        goto fail;
    }
    k->cpuid->nent = s->supported->nent;
    memcpy(k->cpuid->entries, s->supported->entries,
           s->supported->nent * sizeof(k->cpuid->entries[0]));
    /* CPUID.1:ECX[31], "hypervisor present": KVM leaves it to the VMM (WHP
     * sets it). Without it Linux ignores KVM's leaves at 0x40000000 (no
     * kvmclock, no PV features) and calibrates the TSC against the PIT as
     * on bare metal, which fails when exits are slow. */
    for (uint32_t j = 0; j < k->cpuid->nent; j++)
        if (k->cpuid->entries[j].function == 1) k->cpuid->entries[j].ecx |= 1u << 31;
    for (size_t i = 0; i < p->n_cpuid_results; i++) {
        const struct hvp_cpuid_result *c = &p->cpuid_results[i];
        bool found = false;
        for (uint32_t j = 0; j < k->cpuid->nent; j++) {
            struct kvm_cpuid_entry2 *e = &k->cpuid->entries[j];
            if (e->function == c->function &&
                (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == 0)) {
                e->eax = c->eax, e->ebx = c->ebx, e->ecx = c->ecx, e->edx = c->edx;
                found = true;
            }
        }
        if (!found)
            k->cpuid->entries[k->cpuid->nent++] = (struct kvm_cpuid_entry2){.function = c->function,
                                                                            .eax = c->eax,
                                                                            .ebx = c->ebx,
                                                                            .ecx = c->ecx,
                                                                            .edx = c->edx};
    }
    /* KVM's in-kernel LAPIC has the TSC-deadline timer, but
     * KVM_GET_SUPPORTED_CPUID does not say so (QEMU sets the bit itself). */
    if (k->irqchip && ioctl(s->fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
        for (uint32_t j = 0; j < k->cpuid->nent; j++)
            if (k->cpuid->entries[j].function == 1) k->cpuid->entries[j].ecx |= 1u << 24;
    return 0;
fail:
    if (k->vm > 0) close(k->vm);
    free(k->cpuid);
    free(k);
    p->priv = NULL;
    return r;
}

static void free_vcpu_priv(struct hvp_partition *p, struct kvm_vcpu_priv *k)
{
    if (k->run) munmap(k->run, SYS(p->h)->run_size);
    if (k->fd >= 0) close(k->fd);
    free(k);
}

static void kvm_partition_destroy(struct hvp_partition *p)
{
    struct kvm_part *k = PART(p);
    if (!k) return;
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++)
        if (k->parked[i]) free_vcpu_priv(p, k->parked[i]);
    close(k->vm);
    free(k->cpuid);
    free(k);
}

static int set_guest_debug(struct hvp_vcpu *v)
{
    uint64_t b = v->p->exception_bitmap;
    if (!(v->p->extended_exits & HVP_EXTENDED_EXIT_EXCEPTION)) b = 0;
    struct kvm_guest_debug d = {0};
    if (b)
        d.control = KVM_GUESTDBG_ENABLE | (b & (1u << 3) ? KVM_GUESTDBG_USE_SW_BP : 0) |
                    (b & (1u << 1) ? KVM_GUESTDBG_USE_HW_BP : 0);
    if (ioctl(VCPU(v)->fd, KVM_SET_GUEST_DEBUG, &d) < 0) return kerr(v->err, "KVM_SET_GUEST_DEBUG");
    return 0;
}

static int kvm_property_changed(struct hvp_partition *p, uint32_t code)
{
    if (code != HVP_PROP_EXCEPTION_EXIT_BITMAP) return 0;
    int r = 0;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < HVP_MAX_VCPUS && r == 0; i++)
        if (p->vcpus[i] && (r = set_guest_debug(p->vcpus[i])) < 0)
            hvp__perr(p, r, "%s", p->vcpus[i]->err);
    pthread_mutex_unlock(&p->lock);
    return r;
}

static int kvm_suspend_time(struct hvp_partition *p)
{
    struct kvm_part *k = PART(p);
    if (ioctl(k->vm, KVM_GET_CLOCK, &k->clock) < 0) return kerr(p->err, "KVM_GET_CLOCK");
    k->clock_saved = true;
    return 0;
}

static int kvm_resume_time(struct hvp_partition *p)
{
    struct kvm_part *k = PART(p);
    if (!k->clock_saved) return 0;
    struct kvm_clock_data c = {.clock = k->clock.clock};
    if (ioctl(k->vm, KVM_SET_CLOCK, &c) < 0) return kerr(p->err, "KVM_SET_CLOCK");
    k->clock_saved = false;
    return 0;
}

/* ---- memory ------------------------------------------------------------ */

static int set_slot(struct hvp_partition *p, struct hvp_mem_range *r, uint64_t size)
{
    struct kvm_userspace_memory_region m = {
        .slot = (uint32_t)r->slot,
        .flags = (r->flags & HVP_MAP_WRITE ? 0 : KVM_MEM_READONLY) |
                 (r->flags & HVP_MAP_TRACK_DIRTY ? KVM_MEM_LOG_DIRTY_PAGES : 0),
        .guest_phys_addr = r->gpa,
        .memory_size = size,
        .userspace_addr = (uintptr_t)r->hva};
    if (ioctl(PART(p)->vm, KVM_SET_USER_MEMORY_REGION, &m) < 0)
        return kerr(p->err, "KVM_SET_USER_MEMORY_REGION");
    return 0;
}

static int kvm_map(struct hvp_partition *p, struct hvp_mem_range *r)
{
    struct kvm_part *k = PART(p);
    int slot = -1;
    for (int i = 0; i < k->nslots; i++)
        if (!(k->slots[i / 64] >> (i % 64) & 1)) {
            slot = i;
            break;
        }
    if (slot < 0) return hvp__perr(p, -ENOSPC, "kvm: all %d memory slots are in use", k->nslots);
    r->slot = slot;
    int e = set_slot(p, r, r->size);
    if (e < 0) {
        r->slot = -1;
        return e;
    }
    k->slots[slot / 64] |= 1ull << (slot % 64);
    return 0;
}

static void kvm_unmap(struct hvp_partition *p, struct hvp_mem_range *r)
{
    if (r->slot < 0) return;
    set_slot(p, r, 0);
    PART(p)->slots[r->slot / 64] &= ~(1ull << (r->slot % 64));
    r->slot = -1;
}

static int kvm_fetch_dirty(struct hvp_partition *p, struct hvp_mem_range *r)
{
    size_t words = (r->size / HVP_PAGE + 63) / 64;
    uint64_t *b = calloc(words, 8);
    if (!b) return hvp__perr(p, -ENOMEM, "kvm: out of memory");
    struct kvm_dirty_log d = {.slot = (uint32_t)r->slot, .dirty_bitmap = b};
    int ret = 0;
    if (ioctl(PART(p)->vm, KVM_GET_DIRTY_LOG, &d) < 0)
        ret = kerr(p->err, "KVM_GET_DIRTY_LOG");
    else
        for (size_t i = 0; i < words; i++)
            r->dirty[i] |= b[i];
    free(b);
    return ret;
}

/* ---- vCPUs ------------------------------------------------------------- */

static int vcpu_set_cpuid(struct hvp_vcpu *v)
{
    struct kvm_cpuid2 *t = PART(v->p)->cpuid;
    size_t sz = sizeof(*t) + t->nent * sizeof(t->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);
    if (!c) return hvp__verr(v, -ENOMEM, "kvm: out of memory");
    memcpy(c, t, sz);
    /* The APIC ID is the vCPU index. */
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1) e->ebx = (e->ebx & 0x00ffffff) | v->index << 24;
        if (e->function == 0xb || e->function == 0x1f) e->edx = v->index;
    }
    int r = ioctl(VCPU(v)->fd, KVM_SET_CPUID2, c) < 0 ? kerr(v->err, "KVM_SET_CPUID2") : 0;
    free(c);
    return r;
}

/* KVM cannot delete a vCPU: its fd is parked and taken again when the
 * index is created anew. */
static void kvm_vcpu_destroy(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    if (!k) return;
    if (k->fd >= 0 && k->run)
        PART(v->p)->parked[v->index] = k;
    else
        free_vcpu_priv(v->p, k);
    v->priv = NULL;
}

static int kvm_vcpu_reset(struct hvp_vcpu *v);

static int kvm_vcpu_create(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = PART(v->p)->parked[v->index];
    if (k) {
        PART(v->p)->parked[v->index] = NULL;
        k->thread_ready = false;
        atomic_store(&k->cancel, 0);
        k->run->immediate_exit = 0;
        v->priv = k;
        int r = kvm_vcpu_reset(v);
        if (r == 0) r = set_guest_debug(v);
        if (r < 0) {
            free_vcpu_priv(v->p, k);
            v->priv = NULL;
        }
        return r;
    }
    k = calloc(1, sizeof(*k));
    if (!k) return hvp__verr(v, -ENOMEM, "kvm: out of memory");
    v->priv = k;
    k->fd = ioctl(PART(v->p)->vm, KVM_CREATE_VCPU, (unsigned long)v->index);
    int r;
    if (k->fd < 0) {
        r = kerr(v->err, "KVM_CREATE_VCPU");
        free(k);
        v->priv = NULL;
        return r;
    }
    k->run = mmap(NULL, SYS(v->p->h)->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, 0);
    if (k->run == MAP_FAILED) {
        k->run = NULL;
        r = kerr(v->err, "mmap of the vCPU area");
        goto fail;
    }
    if ((r = vcpu_set_cpuid(v)) < 0 || (r = set_guest_debug(v)) < 0) goto fail;
    /* With the in-kernel APIC, KVM parks vCPUs other than 0 in
     * wait-for-SIPI; WHP's VPs all run from creation (the VMM starts APs
     * itself, or sends INIT/SIPI with hvp_request_interrupt). */
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (PART(v->p)->irqchip && ioctl(k->fd, KVM_SET_MP_STATE, &mp) < 0) {
        r = kerr(v->err, "KVM_SET_MP_STATE");
        goto fail;
    }
    return 0;
fail:
    free_vcpu_priv(v->p, k);
    v->priv = NULL;
    return r;
}

/* Runs KVM_RUN with immediate_exit: KVM finishes a pending access and
 * returns without entering the guest. A new exit produced by the completion
 * (the next chunk of a string instruction) is kept for the next run. */
static int translate_exit(struct hvp_vcpu *v, struct hvp_exit *exit);
static int complete_now(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    k->pending = PEND_NONE;
    k->run->immediate_exit = 1;
    int r = ioctl(k->fd, KVM_RUN, 0);
    int e = errno;
    k->run->immediate_exit = atomic_load(&k->cancel) ? 1 : 0;
    if (r < 0 && e == EINTR) return 0;
    if (r < 0) {
        errno = e;
        return kerr(v->err, "KVM_RUN (completion)");
    }
    memset(&k->queued_exit, 0, sizeof(k->queued_exit));
    r = translate_exit(v, &k->queued_exit);
    if (r < 0) return r;
    k->queued = true;
    return 0;
}

/* ---- registers --------------------------------------------------------- */

enum { G_REGS = 1, G_SREGS = 2, G_FPU = 4, G_DEBUG = 8, G_XCRS = 16, G_EVENTS = 32, G_MSRS = 64 };

struct regset {
    unsigned have, dirty;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xsave xsave; /* x87/SSE state: the legacy (FXSAVE) area */
    struct kvm_debugregs dbg;
    struct kvm_xcrs xcrs;
    struct kvm_vcpu_events ev;
};

static uint32_t msr_index(uint32_t name)
{
    switch (name) {
    case HVP_REG_TSC: return 0x10;
    case HVP_REG_KERNEL_GS_BASE: return 0xC0000102;
    case HVP_REG_PAT: return 0x277;
    case HVP_REG_SYSENTER_CS: return 0x174;
    case HVP_REG_SYSENTER_ESP: return 0x175;
    case HVP_REG_SYSENTER_EIP: return 0x176;
    case HVP_REG_STAR: return 0xC0000081;
    case HVP_REG_LSTAR: return 0xC0000082;
    case HVP_REG_CSTAR: return 0xC0000083;
    case HVP_REG_SFMASK: return 0xC0000084;
    case HVP_REG_MTRR_CAP: return 0xFE;
    case HVP_REG_MTRR_DEF_TYPE: return 0x2FF;
    case HVP_REG_TSC_AUX: return 0xC0000103;
    }
    return 0;
}

static unsigned group_of(uint32_t n)
{
    if (n <= HVP_REG_RFLAGS) return G_REGS;
    if (n <= HVP_REG_CR8 || n == HVP_REG_EFER || n == HVP_REG_APIC_BASE) return G_SREGS;
    if (n <= HVP_REG_DR7) return G_DEBUG;
    if (n == HVP_REG_XCR0) return G_XCRS;
    if (n >= HVP_REG_XMM0 && n <= HVP_REG_XMM_CONTROL_STATUS) return G_FPU;
    if (n >= 0x80000000u) return G_EVENTS;
    return G_MSRS;
}

/* x87/SSE registers in the FXSAVE layout at the start of the XSAVE area.
 * KVM_SET_FPU would not mark the state present in the XSAVE header (the
 * guest could then see init values) and ignores MXCSR; XSAVE does both. */
#define FX_FCW        0
#define FX_FSW        2
#define FX_FTW        4
#define FX_FOP        6
#define FX_FIP        8
#define FX_FDP        16
#define FX_MXCSR      24
#define FX_MXCSR_MASK 28
#define FX_ST         32
#define FX_XMM        160
#define XSTATE_BV     512

static void fx_get(const __u32 *region, uint32_t nm, union hvp_reg_value *o)
{
    const uint8_t *fx = (const uint8_t *)region;
    if (nm < HVP_REG_FPMMX0)
        memcpy(&o->reg128, fx + FX_XMM + 16 * (nm - HVP_REG_XMM0), 16);
    else if (nm < HVP_REG_FP_CONTROL_STATUS) {
        uint16_t es;
        memcpy(&o->fp.mantissa, fx + FX_ST + 16 * (nm - HVP_REG_FPMMX0), 8);
        memcpy(&es, fx + FX_ST + 16 * (nm - HVP_REG_FPMMX0) + 8, 2);
        o->fp.exponent_sign = es;
    } else if (nm == HVP_REG_FP_CONTROL_STATUS) {
        memcpy(&o->fp_control_status.fcw, fx + FX_FCW, 2);
        memcpy(&o->fp_control_status.fsw, fx + FX_FSW, 2);
        o->fp_control_status.ftw = fx[FX_FTW];
        memcpy(&o->fp_control_status.last_opcode, fx + FX_FOP, 2);
        memcpy(&o->fp_control_status.last_ip, fx + FX_FIP, 8);
    } else {
        memcpy(&o->xmm_control_status.last_dp, fx + FX_FDP, 8);
        memcpy(&o->xmm_control_status.mxcsr, fx + FX_MXCSR, 4);
        memcpy(&o->xmm_control_status.mxcsr_mask, fx + FX_MXCSR_MASK, 4);
    }
}

static void fx_set(__u32 *region, uint32_t nm, const union hvp_reg_value *o)
{
    uint8_t *fx = (uint8_t *)region;
    uint64_t bv;
    memcpy(&bv, fx + XSTATE_BV, 8);
    bv |= 3; /* x87 and SSE state present */
    memcpy(fx + XSTATE_BV, &bv, 8);
    if (nm < HVP_REG_FPMMX0)
        memcpy(fx + FX_XMM + 16 * (nm - HVP_REG_XMM0), &o->reg128, 16);
    else if (nm < HVP_REG_FP_CONTROL_STATUS) {
        uint16_t es = (uint16_t)o->fp.exponent_sign;
        memcpy(fx + FX_ST + 16 * (nm - HVP_REG_FPMMX0), &o->fp.mantissa, 8);
        memcpy(fx + FX_ST + 16 * (nm - HVP_REG_FPMMX0) + 8, &es, 2);
    } else if (nm == HVP_REG_FP_CONTROL_STATUS) {
        memcpy(fx + FX_FCW, &o->fp_control_status.fcw, 2);
        memcpy(fx + FX_FSW, &o->fp_control_status.fsw, 2);
        fx[FX_FTW] = o->fp_control_status.ftw;
        memcpy(fx + FX_FOP, &o->fp_control_status.last_opcode, 2);
        memcpy(fx + FX_FIP, &o->fp_control_status.last_ip, 8);
    } else {
        memcpy(fx + FX_FDP, &o->xmm_control_status.last_dp, 8);
        memcpy(fx + FX_MXCSR, &o->xmm_control_status.mxcsr, 4);
    }
}

static int load(struct hvp_vcpu *v, struct regset *s, unsigned g)
{
    int fd = VCPU(v)->fd;
    unsigned need = g & ~s->have;
    if (need & G_REGS && ioctl(fd, KVM_GET_REGS, &s->regs) < 0) return kerr(v->err, "KVM_GET_REGS");
    if (need & G_SREGS && ioctl(fd, KVM_GET_SREGS, &s->sregs) < 0)
        return kerr(v->err, "KVM_GET_SREGS");
    if (need & G_FPU && ioctl(fd, KVM_GET_XSAVE, &s->xsave) < 0)
        return kerr(v->err, "KVM_GET_XSAVE");
    if (need & G_DEBUG && ioctl(fd, KVM_GET_DEBUGREGS, &s->dbg) < 0)
        return kerr(v->err, "KVM_GET_DEBUGREGS");
    if (need & G_XCRS && ioctl(fd, KVM_GET_XCRS, &s->xcrs) < 0) return kerr(v->err, "KVM_GET_XCRS");
    if (need & G_EVENTS && ioctl(fd, KVM_GET_VCPU_EVENTS, &s->ev) < 0)
        return kerr(v->err, "KVM_GET_VCPU_EVENTS");
    s->have |= need;
    return 0;
}

static void seg_from_kvm(struct hvp_segment *o, const struct kvm_segment *s)
{
    bool p = s->present && !s->unusable;
    o->base = s->base;
    o->limit = s->limit;
    o->selector = s->selector;
    o->attributes = (s->type & 15) | (s->s ? HVP_SEG_S : 0) | (s->dpl & 3) << HVP_SEG_DPL_SHIFT |
                    (p ? HVP_SEG_P : 0) | (s->avl ? HVP_SEG_AVL : 0) | (s->l ? HVP_SEG_L : 0) |
                    (s->db ? HVP_SEG_DB : 0) | (s->g ? HVP_SEG_G : 0);
}

static void seg_to_kvm(struct kvm_segment *s, const struct hvp_segment *o)
{
    uint16_t a = o->attributes;
    s->base = o->base;
    s->limit = o->limit;
    s->selector = o->selector;
    s->type = a & 15;
    s->s = !!(a & HVP_SEG_S);
    s->dpl = a >> HVP_SEG_DPL_SHIFT & 3;
    s->present = !!(a & HVP_SEG_P);
    s->avl = !!(a & HVP_SEG_AVL);
    s->l = !!(a & HVP_SEG_L);
    s->db = !!(a & HVP_SEG_DB);
    s->g = !!(a & HVP_SEG_G);
    s->unusable = !s->present;
}

static struct kvm_segment *sreg_seg(struct kvm_sregs *s, uint32_t n)
{
    switch (n) {
    case HVP_REG_ES: return &s->es;
    case HVP_REG_CS: return &s->cs;
    case HVP_REG_SS: return &s->ss;
    case HVP_REG_DS: return &s->ds;
    case HVP_REG_FS: return &s->fs;
    case HVP_REG_GS: return &s->gs;
    case HVP_REG_LDTR: return &s->ldt;
    case HVP_REG_TR: return &s->tr;
    }
    return NULL;
}

static __u64 *gpr(struct kvm_regs *r, uint32_t n)
{
    __u64 *t[] = {&r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp,
                  &r->rsi, &r->rdi, &r->r8,  &r->r9,  &r->r10, &r->r11,
                  &r->r12, &r->r13, &r->r14, &r->r15, &r->rip, &r->rflags};
    return t[n];
}

static __u64 *dreg(struct kvm_debugregs *d, uint32_t n)
{
    if (n <= HVP_REG_DR3) return &d->db[n - HVP_REG_DR0];
    return n == HVP_REG_DR6 ? &d->dr6 : &d->dr7;
}

static __u64 *creg(struct kvm_sregs *s, uint32_t n)
{
    switch (n) {
    case HVP_REG_CR0: return &s->cr0;
    case HVP_REG_CR2: return &s->cr2;
    case HVP_REG_CR3: return &s->cr3;
    case HVP_REG_CR4: return &s->cr4;
    case HVP_REG_CR8: return &s->cr8;
    case HVP_REG_EFER: return &s->efer;
    }
    return &s->apic_base;
}

static int msr_batch(struct hvp_vcpu *v, const uint32_t *names, uint32_t n, uint64_t *vals,
                     bool set)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[64];
    } m = {0};
    uint32_t map[64];
    for (uint32_t i = 0; i < n; i++) {
        if (group_of(names[i]) != G_MSRS) continue;
        if (m.hdr.nmsrs == 64)
            return hvp__verr(v, -E2BIG, "registers: more than 64 MSRs in one batch");
        map[m.hdr.nmsrs] = i;
        m.e[m.hdr.nmsrs].index = msr_index(names[i]);
        m.e[m.hdr.nmsrs++].data = set ? vals[i] : 0;
    }
    if (!m.hdr.nmsrs) return 0;
    int r = ioctl(VCPU(v)->fd, set ? KVM_SET_MSRS : KVM_GET_MSRS, &m);
    if (r < 0) return kerr(v->err, set ? "KVM_SET_MSRS" : "KVM_GET_MSRS");
    if ((uint32_t)r != m.hdr.nmsrs)
        return hvp__verr(v, -EINVAL, "registers: KVM refused %s (MSR 0x%x) = 0x%llx",
                         hvp_reg_name(names[map[r]]), m.e[r].index,
                         (unsigned long long)m.e[r].data);
    if (!set)
        for (uint32_t j = 0; j < m.hdr.nmsrs; j++)
            vals[map[j]] = m.e[j].data;
    return 0;
}

static int kvm_get_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                             union hvp_reg_value *vals)
{
    struct regset s = {0};
    unsigned g = 0;
    for (uint32_t i = 0; i < n; i++)
        g |= group_of(names[i]);
    int r = load(v, &s, g & ~G_MSRS);
    if (r < 0) return r;
    uint64_t *mv = calloc(n ? n : 1, 8);
    if (!mv) return hvp__verr(v, -ENOMEM, "kvm: out of memory");
    if (g & G_MSRS && (r = msr_batch(v, names, n, mv, false)) < 0) {
        free(mv);
        return r;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nm = names[i];
        union hvp_reg_value *o = &vals[i];
        memset(o, 0, sizeof(*o));
        switch (group_of(nm)) {
        case G_REGS: o->reg64 = *gpr(&s.regs, nm); break;
        case G_SREGS:
            if (sreg_seg(&s.sregs, nm))
                seg_from_kvm(&o->segment, sreg_seg(&s.sregs, nm));
            else if (nm == HVP_REG_IDTR || nm == HVP_REG_GDTR) {
                struct kvm_dtable *t = nm == HVP_REG_IDTR ? &s.sregs.idt : &s.sregs.gdt;
                o->table.base = t->base;
                o->table.limit = t->limit;
            } else
                o->reg64 = *creg(&s.sregs, nm);
            break;
        case G_DEBUG: o->reg64 = *dreg(&s.dbg, nm); break;
        case G_XCRS:
            for (uint32_t j = 0; j < s.xcrs.nr_xcrs; j++)
                if (s.xcrs.xcrs[j].xcr == 0) o->reg64 = s.xcrs.xcrs[j].value;
            break;
        case G_FPU: fx_get(s.xsave.region, nm, o); break;
        case G_EVENTS:
            if (nm == HVP_REG_PENDING_INTERRUPTION) {
                struct hvp_pending_interruption *pi = &o->pending_interruption;
                if (s.ev.exception.injected) {
                    pi->pending = 1, pi->type = HVP_PENDING_TYPE_EXCEPTION;
                    pi->vector = s.ev.exception.nr;
                    pi->deliver_error_code = !!s.ev.exception.has_error_code;
                    pi->error_code = s.ev.exception.error_code;
                } else if (s.ev.interrupt.injected) {
                    pi->pending = 1;
                    pi->type =
                        s.ev.interrupt.soft ? HVP_PENDING_TYPE_SOFT_INT : HVP_PENDING_TYPE_EXT_INT;
                    pi->vector = s.ev.interrupt.nr;
                } else if (s.ev.nmi.injected) {
                    pi->pending = 1, pi->type = HVP_PENDING_TYPE_NMI, pi->vector = 2;
                }
            } else if (nm == HVP_REG_INTERRUPT_STATE) {
                o->interrupt_state.interrupt_shadow = !!s.ev.interrupt.shadow;
                o->interrupt_state.nmi_masked = !!s.ev.nmi.masked;
            } else {
                o->deliverability.interrupt = VCPU(v)->req_window;
            }
            break;
        case G_MSRS: o->reg64 = mv[i]; break;
        }
    }
    free(mv);
    return 0;
}

/* Finishes a pending access before the VMM writes registers itself, keeping
 * the general registers as they were (see the top of the file). */
static int flush_pending(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    if (k->pending == PEND_NONE) return 0;
    struct kvm_regs saved;
    if (ioctl(k->fd, KVM_GET_REGS, &saved) < 0) return kerr(v->err, "KVM_GET_REGS");
    switch (k->pending) {
    case PEND_IO:
        memset((uint8_t *)k->run + k->run->io.data_offset, 0, k->run->io.size * k->run->io.count);
        break;
    case PEND_MMIO: memset(k->run->mmio.data, 0, 8); break;
    case PEND_MSR:
        k->run->msr.data = 0;
        k->run->msr.error = 0;
        break;
    }
    int r = complete_now(v);
    if (r < 0) return r;
    k->queued = false; /* the VMM emulated the instruction: a continuation is void */
    if (ioctl(k->fd, KVM_SET_REGS, &saved) < 0) return kerr(v->err, "KVM_SET_REGS");
    return 0;
}

static int kvm_set_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                             const union hvp_reg_value *vals)
{
    int r = flush_pending(v);
    if (r < 0) return r;
    struct regset s = {0};
    unsigned g = 0;
    for (uint32_t i = 0; i < n; i++)
        g |= group_of(names[i]);
    if ((r = load(v, &s, g & ~G_MSRS)) < 0) return r;
    uint64_t *mv = calloc(n ? n : 1, 8);
    if (!mv) return hvp__verr(v, -ENOMEM, "kvm: out of memory");
    bool window = VCPU(v)->req_window;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nm = names[i];
        const union hvp_reg_value *o = &vals[i];
        switch (group_of(nm)) {
        case G_REGS: *gpr(&s.regs, nm) = o->reg64; break;
        case G_SREGS:
            if (sreg_seg(&s.sregs, nm))
                seg_to_kvm(sreg_seg(&s.sregs, nm), &o->segment);
            else if (nm == HVP_REG_IDTR || nm == HVP_REG_GDTR) {
                struct kvm_dtable *t = nm == HVP_REG_IDTR ? &s.sregs.idt : &s.sregs.gdt;
                t->base = o->table.base;
                t->limit = o->table.limit;
            } else
                *creg(&s.sregs, nm) = o->reg64;
            break;
        case G_DEBUG: *dreg(&s.dbg, nm) = o->reg64; break;
        case G_XCRS:
            s.xcrs.nr_xcrs = 1;
            s.xcrs.xcrs[0].xcr = 0;
            s.xcrs.xcrs[0].value = o->reg64;
            break;
        case G_FPU: fx_set(s.xsave.region, nm, o); break;
        case G_EVENTS:
            if (nm == HVP_REG_PENDING_INTERRUPTION) {
                const struct hvp_pending_interruption *pi = &o->pending_interruption;
                s.ev.exception.injected = 0;
                s.ev.interrupt.injected = 0;
                s.ev.nmi.injected = 0;
                if (pi->pending && pi->type == HVP_PENDING_TYPE_NMI)
                    s.ev.nmi.injected = 1;
                else if (pi->pending && (pi->type == HVP_PENDING_TYPE_EXT_INT ||
                                         pi->type == HVP_PENDING_TYPE_SOFT_INT)) {
                    s.ev.interrupt.injected = 1;
                    s.ev.interrupt.nr = (uint8_t)pi->vector;
                    s.ev.interrupt.soft = pi->type == HVP_PENDING_TYPE_SOFT_INT;
                } else if (pi->pending) {
                    s.ev.exception.injected = 1;
                    s.ev.exception.nr = (uint8_t)pi->vector;
                    s.ev.exception.has_error_code = pi->deliver_error_code;
                    s.ev.exception.error_code = pi->error_code;
                }
                s.ev.flags &= ~(KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SMM |
                                KVM_VCPUEVENT_VALID_PAYLOAD);
            } else if (nm == HVP_REG_INTERRUPT_STATE) {
                s.ev.interrupt.shadow = o->interrupt_state.interrupt_shadow ? 1 : 0;
                s.ev.nmi.masked = o->interrupt_state.nmi_masked;
                s.ev.flags |= KVM_VCPUEVENT_VALID_SHADOW;
            } else {
                window = o->deliverability.interrupt;
            }
            break;
        case G_MSRS: mv[i] = o->reg64; break;
        }
    }
    int fd = VCPU(v)->fd;
    /* Order matters: CR4.OSXSAVE before XCR0, EFER before anything in
     * long mode. */
    if (g & G_SREGS && ioctl(fd, KVM_SET_SREGS, &s.sregs) < 0)
        r = kerr(v->err, "KVM_SET_SREGS");
    else if (g & G_REGS && ioctl(fd, KVM_SET_REGS, &s.regs) < 0)
        r = kerr(v->err, "KVM_SET_REGS");
    else if (g & G_FPU && ioctl(fd, KVM_SET_XSAVE, &s.xsave) < 0)
        r = kerr(v->err, "KVM_SET_XSAVE");
    else if (g & G_DEBUG && ioctl(fd, KVM_SET_DEBUGREGS, &s.dbg) < 0)
        r = kerr(v->err, "KVM_SET_DEBUGREGS");
    else if (g & G_XCRS && ioctl(fd, KVM_SET_XCRS, &s.xcrs) < 0)
        r = kerr(v->err, "KVM_SET_XCRS");
    else if (g & G_MSRS && (r = msr_batch(v, names, n, mv, true)) < 0)
        ;
    else if (g & G_EVENTS && ioctl(fd, KVM_SET_VCPU_EVENTS, &s.ev) < 0)
        r = kerr(v->err, "KVM_SET_VCPU_EVENTS");
    else
        VCPU(v)->req_window = window;
    free(mv);
    return r;
}

static int kvm_vcpu_reset(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    k->pending = PEND_NONE;
    k->queued = false;
    k->req_window = false;
    struct kvm_regs regs = {.rflags = 2, .rip = 0xfff0, .rdx = 0x600};
    struct kvm_sregs s;
    if (ioctl(k->fd, KVM_GET_SREGS, &s) < 0) return kerr(v->err, "KVM_GET_SREGS");
    struct kvm_segment data = {.limit = 0xffff, .type = 3, .present = 1, .s = 1};
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cs = data;
    s.cs.selector = 0xf000, s.cs.base = 0xffff0000, s.cs.type = 0xb;
    s.ldt = (struct kvm_segment){.limit = 0xffff, .type = 2, .present = 1};
    s.tr = (struct kvm_segment){.limit = 0xffff, .type = 0xb, .present = 1};
    s.gdt = (struct kvm_dtable){.limit = 0xffff};
    s.idt = (struct kvm_dtable){.limit = 0xffff};
    s.cr0 = 0x60000010, s.cr2 = s.cr3 = s.cr4 = s.cr8 = 0, s.efer = 0;
    struct kvm_vcpu_events ev = {0};
    if (ioctl(k->fd, KVM_SET_SREGS, &s) < 0) return kerr(v->err, "KVM_SET_SREGS");
    if (ioctl(k->fd, KVM_SET_REGS, &regs) < 0) return kerr(v->err, "KVM_SET_REGS");
    if (ioctl(k->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) return kerr(v->err, "KVM_SET_VCPU_EVENTS");
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (PART(v->p)->irqchip && ioctl(k->fd, KVM_SET_MP_STATE, &mp) < 0)
        return kerr(v->err, "KVM_SET_MP_STATE");
    return 0;
}

/* ---- run --------------------------------------------------------------- */

static unsigned code_mode(const struct kvm_sregs *s)
{
    if (s->efer & (1u << 10) && s->cs.l) return 64;
    return s->cs.db ? 32 : 16;
}

/* The common VpContext plus the instruction bytes at CS:RIP. */
static void fill_vp(struct hvp_vcpu *v, struct hvp_exit *x, struct kvm_regs *regs,
                    struct kvm_sregs *s, uint8_t *bytes, uint8_t *nbytes)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    if (ioctl(k->fd, KVM_GET_REGS, regs) < 0 || ioctl(k->fd, KVM_GET_SREGS, s) < 0) return;
    x->vp.rip = regs->rip;
    x->vp.rflags = regs->rflags;
    seg_from_kvm((struct hvp_segment *)&x->vp.cs, &s->cs); /* same layout, asserted below */
    x->vp.cpl = s->ss.dpl;
    x->vp.cr0_pe = s->cr0 & 1;
    x->vp.cr0_am = s->cr0 >> 18 & 1;
    x->vp.efer_lma = s->efer >> 10 & 1;
    x->vp.cr4_la57 = s->cr4 >> 12 & 1;
    x->cr8 = (uint8_t)s->cr8;
    if (!bytes) return;
    *nbytes = 0;
    struct hvp_paging_state st = {s->cr0, s->cr3, s->cr4, s->efer, s->ss.dpl};
    uint64_t lin = s->cs.base + regs->rip;
    if (code_mode(s) != 64) lin &= 0xFFFFFFFFull;
    while (*nbytes < 16) {
        uint32_t res;
        uint64_t gpa;
        uint64_t a = lin + *nbytes;
        if (hvp__walk(v->p, &st, a, HVP_TRANSLATE_PRIVILEGE_EXEMPT, &res, &gpa) < 0 ||
            res != HVP_TRANSLATE_SUCCESS)
            break;
        size_t n = HVP_PAGE - (a & (HVP_PAGE - 1));
        if (n > 16u - *nbytes) n = 16u - *nbytes;
        if (hvp_read_gpa(v->p, gpa, bytes + *nbytes, n) < 0) break;
        *nbytes += n;
    }
    struct hvp_x86_insn insn;
    int len = hvp_x86_decode(&insn, bytes, *nbytes, code_mode(s));
    x->vp.instruction_length = len > 0 ? (uint8_t)len : 0;
}

/* String and REP prefixes of an IN/OUT from its bytes. */
static void io_kind(const uint8_t *b, unsigned n, bool long_mode, uint8_t *string, uint8_t *rep)
{
    unsigned i = 0;
    *rep = 0;
    for (; i < n; i++) {
        uint8_t c = b[i];
        if (c == 0xF3 || c == 0xF2)
            *rep = 1;
        else if (c == 0x66 || c == 0x67 || c == 0x2E || c == 0x36 || c == 0x3E || c == 0x26 ||
                 c == 0x64 || c == 0x65 || c == 0xF0 || (long_mode && (c & 0xF0) == 0x40))
            continue;
        else
            break;
    }
    *string = i < n && b[i] >= 0x6C && b[i] <= 0x6F;
    if (!*string) *rep = 0;
}

static int translate_exit(struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    struct kvm_run *run = k->run;
    struct kvm_regs regs;
    struct kvm_sregs s;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        struct hvp_exit_io *io = &x->io;
        x->reason = HVP_EXIT_IO_PORT;
        x->flags = HVP_EXIT_F_DECODED;
        fill_vp(v, x, &regs, &s, io->ctx.instruction_bytes, &io->ctx.instruction_byte_count);
        io->ctx.is_write = run->io.direction == KVM_EXIT_IO_OUT;
        io->ctx.access_size = run->io.size;
        io->ctx.port = run->io.port;
        io_kind(io->ctx.instruction_bytes, io->ctx.instruction_byte_count, code_mode(&s) == 64,
                &io->ctx.string_op, &io->ctx.rep_prefix);
        io->rax = regs.rax, io->rcx = regs.rcx, io->rsi = regs.rsi, io->rdi = regs.rdi;
        seg_from_kvm(&io->ds, &s.ds);
        seg_from_kvm(&io->es, &s.es);
        io->access = (struct hvp_access){.addr = run->io.port,
                                         .size = run->io.size,
                                         .is_write = io->ctx.is_write,
                                         .string_op = io->ctx.string_op,
                                         .rep = io->ctx.rep_prefix,
                                         .count = run->io.count};
        io->access.buf = (uint8_t *)run + run->io.data_offset;
        if (io->ctx.is_write && run->io.size <= 8)
            memcpy(io->access.data, io->access.buf, run->io.size);
        else
            memset(io->access.buf, 0, (size_t)run->io.size * run->io.count);
        if (run->io.count == 1) io->access.buf = io->access.data;
        k->pending = PEND_IO;
        return 0;
    }
    case KVM_EXIT_MMIO: {
        struct hvp_exit_mmio *m = &x->mmio;
        x->reason = HVP_EXIT_MEMORY_ACCESS;
        x->flags = HVP_EXIT_F_DECODED;
        fill_vp(v, x, &regs, &s, m->ctx.instruction_bytes, &m->ctx.instruction_byte_count);
        m->ctx.access_type = run->mmio.is_write ? HVP_EMU_ACCESS_WRITE : HVP_EMU_ACCESS_READ;
        m->ctx.gpa = run->mmio.phys_addr;
        pthread_mutex_lock(&v->p->lock);
        m->ctx.gpa_unmapped = hvp__find_range(v->p, run->mmio.phys_addr) == NULL;
        pthread_mutex_unlock(&v->p->lock);
        m->access = (struct hvp_access){.addr = run->mmio.phys_addr,
                                        .size = (uint8_t)run->mmio.len,
                                        .is_write = run->mmio.is_write,
                                        .count = 1};
        m->access.buf = m->access.data;
        if (run->mmio.is_write) {
            memcpy(m->access.data, run->mmio.data, 8);
            /* KVM wrote back RIP and the registers before exiting: the
             * bytes at RIP belong to the next instruction. */
            x->flags |= HVP_EXIT_F_RETIRED;
            memset(m->ctx.instruction_bytes, 0, sizeof(m->ctx.instruction_bytes));
            m->ctx.instruction_byte_count = 0;
            x->vp.instruction_length = 0;
        } else
            memset(run->mmio.data, 0, 8);
        k->pending = PEND_MMIO;
        return 0;
    }
    case KVM_EXIT_HLT:
        x->reason = HVP_EXIT_HALT;
        fill_vp(v, x, &regs, &s, NULL, NULL);
        return 0;
    case KVM_EXIT_X86_RDMSR:
    case KVM_EXIT_X86_WRMSR:
        x->reason = HVP_EXIT_MSR_ACCESS;
        fill_vp(v, x, &regs, &s, NULL, NULL);
        x->vp.instruction_length = 2;
        x->msr.index = run->msr.index;
        x->msr.is_write = run->exit_reason == KVM_EXIT_X86_WRMSR;
        if (x->msr.is_write) {
            x->msr.rax = (uint32_t)run->msr.data;
            x->msr.rdx = run->msr.data >> 32;
        } else {
            x->msr.rax = regs.rax;
            x->msr.rdx = regs.rdx;
            run->msr.data = 0;
        }
        run->msr.error = 0;
        k->pending = PEND_MSR;
        return 0;
    case KVM_EXIT_DEBUG:
        x->reason = HVP_EXIT_EXCEPTION;
        fill_vp(v, x, &regs, &s, x->exception.instruction_bytes,
                &x->exception.instruction_byte_count);
        x->exception.vector = (uint8_t)run->debug.arch.exception;
        x->exception.parameter = x->exception.vector == 1 ? run->debug.arch.dr6 : 0;
        return 0;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        x->reason = HVP_EXIT_INTERRUPT_WINDOW;
        x->interrupt_window.deliverable_type = HVP_WINDOW_INTERRUPT;
        k->req_window = false;
        fill_vp(v, x, &regs, &s, NULL, NULL);
        return 0;
    case KVM_EXIT_SHUTDOWN:
        x->reason = HVP_EXIT_UNRECOVERABLE_EXCEPTION;
        fill_vp(v, x, &regs, &s, NULL, NULL);
        return 0;
    case KVM_EXIT_FAIL_ENTRY:
        x->reason = HVP_EXIT_INVALID_VP_REGISTER_VALUE;
        x->internal.backend_reason = KVM_EXIT_FAIL_ENTRY;
        x->internal.data[0] = run->fail_entry.hardware_entry_failure_reason;
        fill_vp(v, x, &regs, &s, NULL, NULL);
        return 0;
    case KVM_EXIT_SYSTEM_EVENT:
        x->reason = HVP_EXIT_SHUTDOWN;
        x->internal.backend_reason = KVM_EXIT_SYSTEM_EVENT;
        x->internal.suberror = run->system_event.type;
        return 0;
    case KVM_EXIT_INTERNAL_ERROR:
        x->reason = HVP_EXIT_INTERNAL_ERROR;
        x->internal.backend_reason = KVM_EXIT_INTERNAL_ERROR;
        x->internal.suberror = run->internal.suberror;
        for (uint32_t i = 0; i < run->internal.ndata && i < 4; i++)
            x->internal.data[i] = run->internal.data[i];
        fill_vp(v, x, &regs, &s, NULL, NULL);
        return 0;
    default:
        x->reason = HVP_EXIT_INTERNAL_ERROR;
        x->internal.backend_reason = run->exit_reason;
        return 0;
    }
}

static int kick_signal(void)
{
    return HVP_KICK_SIGNAL;
}

static void drain_kicks(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) > 0)
        ;
}

/* First run on a thread: block the kick signal here, open it inside KVM_RUN. */
static int thread_setup(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    pthread_t self = pthread_self();
    if (k->thread_ready && pthread_equal(k->thread, self)) return 0;
    sigset_t block, cur;
    sigemptyset(&block);
    sigaddset(&block, kick_signal());
    if (pthread_sigmask(SIG_BLOCK, &block, &cur) != 0)
        return hvp__verr(v, -EINVAL, "kvm: cannot block the kick signal");
    sigdelset(&cur, kick_signal());
    struct {
        struct kvm_signal_mask m;
        uint8_t set[8];
    } sm;
    sm.m.len = 8;
    memcpy(sm.set, &cur, 8);
    if (ioctl(k->fd, KVM_SET_SIGNAL_MASK, &sm) < 0) return kerr(v->err, "KVM_SET_SIGNAL_MASK");
    k->thread = self;
    k->thread_ready = true;
    return 0;
}

static bool take_cancel(struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    if (!atomic_exchange(&k->cancel, 0)) return false;
    k->run->immediate_exit = 0;
    drain_kicks();
    memset(x, 0, sizeof(*x));
    x->reason = HVP_EXIT_CANCELED;
    struct kvm_regs regs;
    struct kvm_sregs s;
    fill_vp(v, x, &regs, &s, NULL, NULL);
    return true;
}

/* The inline handler: true when it completed the access. */
static int try_inline(struct hvp_vcpu *v, struct hvp_exit *x, bool *done)
{
    struct hvp_partition *p = v->p;
    struct kvm_vcpu_priv *k = VCPU(v);
    *done = false;
    if (!p->has_io_handler) return 0;
    struct hvp_access *a = x->reason == HVP_EXIT_IO_PORT ? &x->io.access : &x->mmio.access;
    if (a->count != 1 || a->string_op || a->size > 8) return 0;
    uint64_t data = 0;
    memcpy(&data, a->data, a->size);
    int r;
    if (x->reason == HVP_EXIT_IO_PORT) {
        if (!p->io_handler.pio) return 0;
        r = p->io_handler.pio(p->io_ctx, v, (uint16_t)a->addr, a->size, a->is_write, &data);
    } else {
        if (!p->io_handler.mmio) return 0;
        r = p->io_handler.mmio(p->io_ctx, v, a->addr, a->size, a->is_write, &data);
    }
    if (r < 0)
        return hvp__verr(v, r, "I/O handler failed at 0x%llx: %s", (unsigned long long)a->addr,
                         strerror(-r));
    if (r == HVP_IO_UNHANDLED) return 0;
    if (!a->is_write) {
        if (x->reason == HVP_EXIT_IO_PORT)
            memcpy((uint8_t *)k->run + k->run->io.data_offset, &data, a->size);
        else
            memcpy(k->run->mmio.data, &data, a->size);
    }
    k->pending = PEND_NONE; /* the next KVM_RUN completes it */
    *done = true;
    return 0;
}

static int kvm_vcpu_run(struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    int r = thread_setup(v);
    if (r < 0) return r;
    for (;;) {
        if (k->queued) {
            *x = k->queued_exit;
            k->queued = false;
            return 0;
        }
        if (take_cancel(v, x)) return 0;
        k->run->request_interrupt_window = k->req_window;
        r = ioctl(k->fd, KVM_RUN, 0);
        k->pending = PEND_NONE;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                if (take_cancel(v, x)) return 0;
                continue;
            }
            return kerr(v->err, "KVM_RUN");
        }
        if (k->run->exit_reason == KVM_EXIT_INTR) {
            if (take_cancel(v, x)) return 0;
            continue;
        }
        memset(x, 0, sizeof(*x));
        if ((r = translate_exit(v, x)) < 0) return r;
        if (x->reason == HVP_EXIT_MSR_ACCESS) {
            /* IgnoreWriteReadZero is the platform's own answer. */
            uint32_t act = v->p->unimplemented_msr_action;
            if (k->run->msr.reason == KVM_MSR_EXIT_REASON_FILTER)
                for (size_t i = 0; i < v->p->n_msr_actions; i++)
                    if (v->p->msr_actions[i].index == x->msr.index)
                        act = x->msr.is_write ? v->p->msr_actions[i].write_action
                                              : v->p->msr_actions[i].read_action;
            if (act == HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO) {
                k->pending = PEND_NONE;
                continue;
            }
            if (act == HVP_MSR_ACTION_DEFAULT &&
                k->run->msr.reason == KVM_MSR_EXIT_REASON_UNKNOWN &&
                !(v->p->msr_exit_bitmap & HVP_MSR_EXIT_UNHANDLED_MSRS)) {
                k->run->msr.error = 1; /* #GP, as without the exit */
                k->pending = PEND_NONE;
                continue;
            }
        }
        if (x->flags & HVP_EXIT_F_DECODED) {
            bool done;
            if ((r = try_inline(v, x, &done)) < 0) return r;
            if (done) continue;
        }
        return 0;
    }
}

static int kvm_vcpu_cancel(struct hvp_vcpu *v)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    atomic_store(&k->cancel, 1);
    __atomic_store_n(&k->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (atomic_load(&v->running) && k->thread_ready) pthread_kill(k->thread, kick_signal());
    return 0;
}

static int kvm_complete_io(struct hvp_vcpu *v, const void *data, size_t len)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    struct kvm_run *run = k->run;
    if (k->pending == PEND_IO) {
        size_t need =
            run->io.direction == KVM_EXIT_IO_OUT ? 0 : (size_t)run->io.size * run->io.count;
        if (len != need)
            return hvp__verr(v, -EINVAL, "complete I/O: %zu bytes given, %zu expected", len, need);
        if (len) memcpy((uint8_t *)run + run->io.data_offset, data, len);
    } else if (k->pending == PEND_MMIO) {
        size_t need = run->mmio.is_write ? 0 : run->mmio.len;
        if (len != need)
            return hvp__verr(v, -EINVAL, "complete MMIO: %zu bytes given, %zu expected", len, need);
        if (len) memcpy(run->mmio.data, data, len);
    } else
        return hvp__verr(v, -EINVAL, "complete I/O: no I/O or MMIO exit is pending");
    return complete_now(v);
}

static int kvm_complete_msr(struct hvp_vcpu *v, uint64_t value, bool inject_gp)
{
    struct kvm_vcpu_priv *k = VCPU(v);
    if (k->pending != PEND_MSR)
        return hvp__verr(v, -EINVAL, "complete MSR: no MSR exit is pending");
    k->run->msr.data = value;
    k->run->msr.error = inject_gp;
    return complete_now(v);
}

static int kvm_get_xsave(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    struct kvm_xsave xs;
    if (written) *written = sizeof(xs);
    if (len < sizeof(xs)) return hvp__verr(v, -ENOSPC, "XSAVE: %zu bytes needed", sizeof(xs));
    if (ioctl(VCPU(v)->fd, KVM_GET_XSAVE, &xs) < 0) return kerr(v->err, "KVM_GET_XSAVE");
    memcpy(buf, &xs, sizeof(xs));
    return 0;
}

static int kvm_set_xsave(struct hvp_vcpu *v, const void *buf, size_t len)
{
    struct kvm_xsave xs;
    if (len != sizeof(xs))
        return hvp__verr(v, -EINVAL, "XSAVE: %zu bytes, expected %zu", len, sizeof(xs));
    int r = flush_pending(v);
    if (r < 0) return r;
    memcpy(&xs, buf, sizeof(xs));
    if (ioctl(VCPU(v)->fd, KVM_SET_XSAVE, &xs) < 0) return kerr(v->err, "KVM_SET_XSAVE");
    return 0;
}

static int kvm_get_lapic(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    if (!PART(v->p)->irqchip)
        return hvp__verr(v, -EOPNOTSUPP, "LAPIC: LocalApicEmulationMode is None");
    if (written) *written = HVP_LAPIC_STATE_SIZE;
    if (len < HVP_LAPIC_STATE_SIZE)
        return hvp__verr(v, -ENOSPC, "LAPIC: %u bytes needed", HVP_LAPIC_STATE_SIZE);
    struct kvm_lapic_state st;
    if (ioctl(VCPU(v)->fd, KVM_GET_LAPIC, &st) < 0) return kerr(v->err, "KVM_GET_LAPIC");
    memcpy(buf, st.regs, HVP_LAPIC_STATE_SIZE);
    return 0;
}

static int kvm_set_lapic(struct hvp_vcpu *v, const void *buf, size_t len)
{
    if (!PART(v->p)->irqchip)
        return hvp__verr(v, -EOPNOTSUPP, "LAPIC: LocalApicEmulationMode is None");
    if (len != HVP_LAPIC_STATE_SIZE)
        return hvp__verr(v, -EINVAL, "LAPIC: %zu bytes, expected %u", len, HVP_LAPIC_STATE_SIZE);
    struct kvm_lapic_state st;
    memcpy(st.regs, buf, HVP_LAPIC_STATE_SIZE);
    if (ioctl(VCPU(v)->fd, KVM_SET_LAPIC, &st) < 0) return kerr(v->err, "KVM_SET_LAPIC");
    return 0;
}

static int kvm_get_cpuid(struct hvp_vcpu *v, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
    struct kvm_cpuid_entry2 *e = cpuid_find(PART(v->p)->cpuid, leaf, subleaf);
    if (!e) {
        memset(out, 0, 16);
        return 0;
    }
    out[0] = e->eax, out[1] = e->ebx, out[2] = e->ecx, out[3] = e->edx;
    if (leaf == 1) out[1] = (out[1] & 0x00ffffff) | v->index << 24;
    if (leaf == 0xb || leaf == 0x1f) out[3] = v->index;
    return 0;
}

/* ---- interrupts -------------------------------------------------------- */

static int kvm_request_interrupt(struct hvp_partition *p, const struct hvp_interrupt *irq)
{
    if (!PART(p)->irqchip) return hvp__perr(p, -EOPNOTSUPP, "kvm: no in-kernel APIC");
    uint32_t dm;
    switch (irq->type) {
    case HVP_INTERRUPT_FIXED: dm = 0; break;
    case HVP_INTERRUPT_LOWEST_PRIORITY: dm = 1; break;
    case HVP_INTERRUPT_NMI: dm = 4; break;
    case HVP_INTERRUPT_INIT: dm = 5; break;
    case HVP_INTERRUPT_SIPI: dm = 6; break;
    default: return hvp__perr(p, -EINVAL, "interrupt: type %u cannot be sent as an MSI", irq->type);
    }
    if ((dm <= 1) && (irq->vector < 16 || irq->vector > 255))
        return hvp__perr(p, -EINVAL, "interrupt: vector %u, not 16..255", irq->vector);
    /* MSI format: address FEEx_xxxx with the destination, data with the
     * vector, delivery mode and trigger. */
    struct kvm_msi msi = {
        .address_lo =
            0xFEE00000u | (irq->destination & 0xff) << 12 | (irq->logical_dest ? 1u << 2 : 0),
        .address_hi = irq->destination & 0xffffff00u,
        .data = (irq->vector & 0xff) | dm << 8 | (irq->level_triggered ? 3u << 14 : 1u << 14),
    };
    int r = ioctl(PART(p)->vm, KVM_SIGNAL_MSI, &msi);
    if (r < 0) return kerr(p->err, "KVM_SIGNAL_MSI");
    return 0;
}

static int kvm_set_irq_line(struct hvp_partition *p, uint32_t gsi, bool level)
{
    if (!PART(p)->irqchip) return hvp__perr(p, -EOPNOTSUPP, "kvm: no in-kernel irqchip");
    struct kvm_irq_level l = {.irq = gsi, .level = level};
    if (ioctl(PART(p)->vm, KVM_IRQ_LINE, &l) < 0) return kerr(p->err, "KVM_IRQ_LINE");
    return 0;
}

const struct hvp_backend_ops hvp_kvm_ops = {
    .version = HVP_BACKEND_OPS_VERSION,
    .name = "kvm",
    .open = kvm_open,
    .close = kvm_close,
    .get_capability = kvm_get_capability,
    .check_property = kvm_check_property,
    .partition_setup = kvm_partition_setup,
    .partition_destroy = kvm_partition_destroy,
    .property_changed = kvm_property_changed,
    .suspend_time = kvm_suspend_time,
    .resume_time = kvm_resume_time,
    .map = kvm_map,
    .unmap = kvm_unmap,
    .fetch_dirty = kvm_fetch_dirty,
    .vcpu_create = kvm_vcpu_create,
    .vcpu_destroy = kvm_vcpu_destroy,
    .vcpu_reset = kvm_vcpu_reset,
    .vcpu_run = kvm_vcpu_run,
    .vcpu_cancel = kvm_vcpu_cancel,
    .complete_io = kvm_complete_io,
    .complete_msr = kvm_complete_msr,
    .get_registers = kvm_get_registers,
    .set_registers = kvm_set_registers,
    .get_xsave = kvm_get_xsave,
    .set_xsave = kvm_set_xsave,
    .get_lapic = kvm_get_lapic,
    .set_lapic = kvm_set_lapic,
    .get_cpuid = kvm_get_cpuid,
    .request_interrupt = kvm_request_interrupt,
    .set_irq_line = kvm_set_irq_line,
};

_Static_assert(sizeof(struct hvp_segment) == sizeof(struct hvp_emu_segment) &&
                   offsetof(struct hvp_segment, attributes) ==
                       offsetof(struct hvp_emu_segment, attributes),
               "the emulator's segment is the platform's");
