/* The soft backend: the platform on hvp's own x86-64 CPU (hvp/cpu.h).
 *
 * One struct hvp_cpu per vCPU, run on the caller's thread. The platform
 * emulates the local APIC (lapic.c) when LocalApicEmulationMode is XApic or
 * X2Apic: its MMIO page and MSRs are answered inline through the CPU's
 * hooks, HLT waits here for an interrupt, and a timer thread per partition
 * raises timer interrupts (no polling).
 *
 * Memory changes and SMP. Each CPU has its own copy of the GPA map. A map,
 * unmap or write-protect is queued on every vCPU and applied by that vCPU
 * at its next block boundary (it is kicked), or by the caller when the vCPU
 * is outside hvp_cpu_run (run_lock free). The call does not return until
 * every vCPU has applied it (ops->sync, called by the platform without
 * p->lock held, so that a vCPU's inline I/O handler may use the partition
 * meanwhile). A vCPU that changes the map from inside its own inline
 * handler applies the change when its current block of instructions ends.
 *
 * Dirty tracking: tracked ranges are mapped read-only in the CPUs; the
 * first write to a page exits, sets the page's bit under p->lock and makes
 * the page writable in that CPU. A query write-protects the dirty pages
 * again on every vCPU before it returns.
 *
 * Exits follow WHP: I/O exits report RIP at the instruction (the CPU has
 * already moved past it; the pending state shows the instruction until it
 * is completed). IN, MSR and CPUID exits are completed by the CPU
 * (hvp_cpu_complete); a decoded MMIO exit by running the instruction for
 * exactly one step with the VMM's answer in the mmio hook.
 */
#include "internal.h"
#include "lapic.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include <hvp/cpu.h>
#include <hvp/x86.h>

struct soft_sys {
    uint64_t tsc_hz;
};

enum { OP_MAP, OP_UNMAP, OP_PROTECT, OP_EXC_BITMAP, OP_TSC_SHIFT };
struct memop {
    struct memop *next;
    int kind;
    uint64_t gpa, size;
    uint8_t *hva;
    unsigned prot;
    uint64_t value;
};

/* The vCPU's own view of the GPA map (used inside the hooks, where p->lock
 * must not be needed). */
struct view {
    uint64_t gpa, size;
    uint32_t flags;
};

enum { PEND_NONE, PEND_IO, PEND_MMIO, PEND_MSR, PEND_CPUID };
enum { ANS_MMIO = 1 };

struct soft_part;

struct soft_vcpu {
    struct hvp_vcpu *v;
    struct soft_part *sp;
    struct hvp_cpu *cpu; /* NULL once destroyed (under run_lock and apic.lock) */
    uint32_t index;
    bool dead;
    pthread_mutex_t run_lock; /* held by whoever uses the CPU */
    pthread_t owner;
    atomic_bool in_run;
    atomic_bool in_sync;
    /* queued memory operations */
    pthread_mutex_t mq_lock;
    pthread_cond_t mq_cv;
    struct memop *mq_head, **mq_tail;
    uint64_t mq_gen, applied_gen;
    struct view *view;
    size_t nview, capview;
    /* exits */
    atomic_int cancel;
    int pending;
    uint8_t pend_len;  /* I/O: instruction length (RIP is past it in the CPU) */
    uint8_t pend_size; /* I/O, MMIO: access size */
    bool pend_write;
    bool queued;
    struct hvp_cpu_exit queued_exit;
    struct {
        int kind; /* ANS_* while completing, else 0 */
        bool used, gp;
        uint64_t addr, val;
    } ans;
    bool retired_valid; /* an MMIO write made during a completion */
    struct hvp_access retired;
    struct hvp_cpu_exit pend_cx; /* the CPU's exit of the pending I/O, MSR, CPUID */
    int hook_err;
    /* events (flags changed under apic.lock) */
    bool halted, halt_if, wait_sipi;
    bool init_pending, sipi_pending, nmi_wake;
    uint8_t sipi_vector;
    struct hvp_deliverability notif;
    uint64_t mtrr_def_type;
    uint64_t eoi_bits[4]; /* level-triggered EOIs to report (own thread) */
    struct lapic apic;
    struct soft_vcpu *next_dead;
};

struct track {
    uint64_t gpa, size;
    uint64_t *bits; /* under p->lock */
};

struct soft_part {
    struct hvp_partition *p;
    _Atomic(struct soft_vcpu *) vcpus[HVP_MAX_VCPUS];
    struct soft_vcpu *dead;
    struct track *trk;
    size_t ntrk, captrk;
    uint64_t tsc_hz;
    struct hvp_cpuid_entry def[32];
    size_t ndef;
    /* the timer thread */
    pthread_t timer;
    bool timer_started;
    pthread_mutex_t tlock;
    pthread_cond_t tcv;
    bool tstop, rescan, tsuspended;
    uint64_t susp_ns, susp_tsc;
};

#define SYS(h)  ((struct soft_sys *)(h)->priv)
#define PART(p) ((struct soft_part *)(p)->priv)
#define VCPU(v) ((struct soft_vcpu *)(v)->priv)

static bool apic_on(const struct soft_vcpu *sv)
{
    return sv->sp->p->apic_mode != HVP_APIC_MODE_NONE;
}

/* ---- platform ---------------------------------------------------------- */

/* The host TSC rate (the guest's TSC runs at it): 2 ms against the
 * monotonic clock. */
static uint64_t measure_tsc_hz(void)
{
    uint64_t t0 = lapic_now_ns(), c0 = __rdtsc();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    uint64_t t1 = lapic_now_ns(), c1 = __rdtsc();
    if (t1 <= t0 || c1 <= c0) return 1000000000ull;
    uint64_t hz = (uint64_t)((unsigned __int128)(c1 - c0) * 1000000000u / (t1 - t0));
    return (hz + 500000) / 1000000 * 1000000; /* MHz resolution */
}

static int soft_open(struct hvp *h, char *why, size_t len)
{
    (void)why, (void)len;
    struct soft_sys *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    s->tsc_hz = measure_tsc_hz();
    h->priv = s;
    return 0;
}

static void soft_close(struct hvp *h)
{
    free(h->priv);
}

static int soft_get_capability(struct hvp *h, uint32_t code, void *buf, size_t len, size_t *written)
{
    uint64_t v64 = 0;
    uint32_t v32;
    uint8_t v8;
    const void *src = &v64;
    size_t n = 8;
    switch (code) {
    case HVP_CAP_HYPERVISOR_PRESENT: v32 = 1, src = &v32, n = 4; break;
    case HVP_CAP_FEATURES:
        v64 = HVP_FEATURE_PARTIAL_UNMAP | HVP_FEATURE_LOCAL_APIC_EMULATION | HVP_FEATURE_XSAVE |
              HVP_FEATURE_DIRTY_PAGE_TRACKING;
        break;
    case HVP_CAP_EXTENDED_VM_EXITS:
        v64 = HVP_EXTENDED_EXIT_CPUID | HVP_EXTENDED_EXIT_MSR | HVP_EXTENDED_EXIT_EXCEPTION;
        break;
    case HVP_CAP_EXCEPTION_EXIT_BITMAP: v64 = 0xffffffffull; break;
    case HVP_CAP_X64_MSR_EXIT_BITMAP: v64 = HVP_MSR_EXIT_UNHANDLED_MSRS; break;
    case HVP_CAP_PROCESSOR_VENDOR: v32 = 1, src = &v32, n = 4; break;
    case HVP_CAP_PROCESSOR_CLFLUSH_SIZE: v8 = 8, src = &v8, n = 1; break;
    case HVP_CAP_PROCESSOR_XSAVE_FEATURES: v64 = 3; break;
    case HVP_CAP_PROCESSOR_CLOCK_FREQUENCY: v64 = SYS(h)->tsc_hz; break;
    case HVP_CAP_INTERRUPT_CLOCK_FREQUENCY: v64 = LAPIC_BUS_HZ; break;
    default: return hvp__set_error(h->err, -ENOENT, "capability 0x%x: unknown", code);
    }
    if (written) *written = n;
    if (len < n)
        return hvp__set_error(h->err, -ENOSPC, "capability 0x%x: %zu bytes needed", code, n);
    memcpy(buf, src, n);
    return 0;
}

/* ---- the timer thread -------------------------------------------------- */

static void *timer_main(void *arg)
{
    struct soft_part *sp = arg;
    pthread_mutex_lock(&sp->tlock);
    while (!sp->tstop) {
        bool susp = sp->tsuspended;
        pthread_mutex_unlock(&sp->tlock);
        uint64_t next = 0;
        if (!susp) {
            uint64_t now = lapic_now_ns();
            for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
                struct soft_vcpu *sv = atomic_load(&sp->vcpus[i]);
                if (!sv) continue;
                uint64_t d = lapic_timer_poll(&sv->apic, now);
                if (d && (!next || d < next)) next = d;
            }
        }
        pthread_mutex_lock(&sp->tlock);
        if (sp->tstop) break;
        if (sp->rescan) {
            sp->rescan = false;
            continue;
        }
        if (!next || susp) {
            pthread_cond_wait(&sp->tcv, &sp->tlock);
        } else {
            struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
            pthread_cond_timedwait(&sp->tcv, &sp->tlock, &ts);
        }
        sp->rescan = false;
    }
    pthread_mutex_unlock(&sp->tlock);
    return NULL;
}

/* lapic env: a deadline was set (called under the LAPIC's lock). */
static void env_timer_armed(void *ctx, uint64_t deadline)
{
    (void)deadline;
    struct soft_vcpu *sv = ctx;
    struct soft_part *sp = sv->sp;
    pthread_mutex_lock(&sp->tlock);
    sp->rescan = true;
    pthread_cond_signal(&sp->tcv);
    pthread_mutex_unlock(&sp->tlock);
}

/* ---- partitions -------------------------------------------------------- */

static int soft_partition_setup(struct hvp_partition *p)
{
    struct soft_part *sp = calloc(1, sizeof(*sp));
    if (!sp) return hvp__perr(p, -ENOMEM, "soft: out of memory");
    sp->p = p;
    sp->tsc_hz = SYS(p->h)->tsc_hz;
    sp->ndef = hvp_cpu_default_cpuid(HVP_CPU_MODEL_SYSTEM, sp->def, 32);
    if (sp->ndef > 32) sp->ndef = 32;
    pthread_mutex_init(&sp->tlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->tcv, &ca);
    pthread_condattr_destroy(&ca);
    if (p->apic_mode != HVP_APIC_MODE_NONE) {
        /* The library's thread takes no signal: they stay the VMM's. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int e = pthread_create(&sp->timer, NULL, timer_main, sp);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e != 0) {
            pthread_cond_destroy(&sp->tcv);
            pthread_mutex_destroy(&sp->tlock);
            free(sp);
            return hvp__perr(p, -EAGAIN, "soft: cannot start the APIC timer thread");
        }
        sp->timer_started = true;
    }
    p->priv = sp;
    return 0;
}

static void free_vcpu(struct soft_vcpu *sv)
{
    lapic_destroy(&sv->apic);
    while (sv->mq_head) {
        struct memop *o = sv->mq_head;
        sv->mq_head = o->next;
        free(o);
    }
    free(sv->view);
    pthread_mutex_destroy(&sv->run_lock);
    pthread_mutex_destroy(&sv->mq_lock);
    pthread_cond_destroy(&sv->mq_cv);
    free(sv);
}

static void soft_partition_destroy(struct hvp_partition *p)
{
    struct soft_part *sp = PART(p);
    if (!sp) return;
    if (sp->timer_started) {
        pthread_mutex_lock(&sp->tlock);
        sp->tstop = true;
        pthread_cond_signal(&sp->tcv);
        pthread_mutex_unlock(&sp->tlock);
        pthread_join(sp->timer, NULL);
    }
    while (sp->dead) {
        struct soft_vcpu *sv = sp->dead;
        sp->dead = sv->next_dead;
        free_vcpu(sv);
    }
    for (size_t i = 0; i < sp->ntrk; i++)
        free(sp->trk[i].bits);
    free(sp->trk);
    pthread_cond_destroy(&sp->tcv);
    pthread_mutex_destroy(&sp->tlock);
    free(sp);
    p->priv = NULL;
}

/* ---- queued memory operations ------------------------------------------ */

static unsigned cpu_prot(uint32_t flags)
{
    unsigned prot = 0;
    if (flags & HVP_MAP_READ) prot |= HVP_CPU_PROT_READ;
    if (flags & HVP_MAP_WRITE && !(flags & HVP_MAP_TRACK_DIRTY)) prot |= HVP_CPU_PROT_WRITE;
    if (flags & HVP_MAP_EXECUTE) prot |= HVP_CPU_PROT_EXEC;
    return prot;
}

static const struct view *view_find(const struct soft_vcpu *sv, uint64_t gpa)
{
    for (size_t i = 0; i < sv->nview; i++)
        if (gpa - sv->view[i].gpa < sv->view[i].size) return &sv->view[i];
    return NULL;
}

static void view_add(struct soft_vcpu *sv, uint64_t gpa, uint64_t size, uint32_t flags)
{
    if (sv->nview == sv->capview) {
        size_t cap = sv->capview ? sv->capview * 2 : 8;
        struct view *n = realloc(sv->view, cap * sizeof(*n));
        if (!n) return; /* only the hooks' fast answer for this range is lost */
        sv->view = n;
        sv->capview = cap;
    }
    sv->view[sv->nview++] = (struct view){gpa, size, flags};
}

static void view_del(struct soft_vcpu *sv, uint64_t gpa)
{
    for (size_t i = 0; i < sv->nview; i++)
        if (sv->view[i].gpa == gpa) {
            sv->view[i] = sv->view[--sv->nview];
            return;
        }
}

/* Applies the vCPU's queued operations; run_lock held, CPU not running. */
static void apply_memops(struct soft_vcpu *sv)
{
    pthread_mutex_lock(&sv->mq_lock);
    struct memop *o = sv->mq_head;
    uint64_t gen = sv->mq_gen;
    sv->mq_head = NULL;
    sv->mq_tail = &sv->mq_head;
    pthread_mutex_unlock(&sv->mq_lock);
    while (o) {
        struct memop *next = o->next;
        int r = 0;
        if (sv->cpu) switch (o->kind) {
            case OP_MAP:
                r = hvp_cpu_map(sv->cpu, o->gpa, o->size, o->hva, o->prot);
                view_add(sv, o->gpa, o->size, (uint32_t)o->value);
                break;
            case OP_UNMAP:
                r = hvp_cpu_unmap(sv->cpu, o->gpa, o->size);
                view_del(sv, o->gpa);
                break;
            case OP_PROTECT:
                hvp_cpu_protect(sv->cpu, o->gpa, o->size, o->prot); /* gone meanwhile: fine */
                break;
            case OP_EXC_BITMAP: hvp_cpu_set_exception_bitmap(sv->cpu, (uint32_t)o->value); break;
            case OP_TSC_SHIFT: {
                struct hvp_cpu_state st;
                hvp_cpu_get_state(sv->cpu, &st);
                st.tsc -= o->value;
                hvp_cpu_set_state(sv->cpu, &st);
                break;
            }
            }
        if (r < 0)
            hvp__verr(sv->v, r, "soft: a memory change could not be applied to vCPU %u: %s",
                      sv->index, hvp_cpu_error(sv->cpu));
        free(o);
        o = next;
    }
    pthread_mutex_lock(&sv->mq_lock);
    if (gen > sv->applied_gen) sv->applied_gen = gen;
    pthread_cond_broadcast(&sv->mq_cv);
    pthread_mutex_unlock(&sv->mq_lock);
}

static void kick_vcpu(struct soft_vcpu *sv)
{
    pthread_mutex_lock(&sv->apic.lock);
    if (!sv->dead) hvp_cpu_kick(sv->cpu);
    pthread_mutex_unlock(&sv->apic.lock);
}

/* Queues an operation on every vCPU (p->lock held) and kicks them. */
static int queue_all(struct hvp_partition *p, const struct memop *tmpl)
{
    struct soft_part *sp = PART(p);
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        struct soft_vcpu *sv = atomic_load(&sp->vcpus[i]);
        if (!sv) continue;
        struct memop *o = malloc(sizeof(*o));
        if (!o) return hvp__perr(p, -ENOMEM, "soft: out of memory");
        *o = *tmpl;
        o->next = NULL;
        pthread_mutex_lock(&sv->mq_lock);
        *sv->mq_tail = o;
        sv->mq_tail = &o->next;
        sv->mq_gen++;
        pthread_mutex_unlock(&sv->mq_lock);
        kick_vcpu(sv);
        if (pthread_mutex_trylock(&sv->run_lock) == 0) {
            if (!atomic_load(&sv->in_run)) apply_memops(sv);
            pthread_mutex_unlock(&sv->run_lock);
        }
    }
    return 0;
}

/* Waits until every vCPU applied what was queued (p->lock not held). */
static void soft_sync(struct hvp_partition *p)
{
    struct soft_part *sp = PART(p);
    if (!sp) return;
    pthread_t self = pthread_self();
    struct soft_vcpu *me = NULL;
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        struct soft_vcpu *sv = atomic_load(&sp->vcpus[i]);
        if (sv && atomic_load(&sv->in_run) && pthread_equal(sv->owner, self)) me = sv;
    }
    if (me) atomic_store(&me->in_sync, true);
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        struct soft_vcpu *sv = atomic_load(&sp->vcpus[i]);
        if (!sv || sv == me) continue;
        pthread_mutex_lock(&sv->mq_lock);
        uint64_t target = sv->mq_gen;
        pthread_mutex_unlock(&sv->mq_lock);
        for (;;) {
            pthread_mutex_lock(&sv->mq_lock);
            bool done = sv->applied_gen >= target;
            pthread_mutex_unlock(&sv->mq_lock);
            /* A vCPU inside its own I/O handler that waits for us applies
             * at the end of its block (see the top of the file). */
            if (done || atomic_load(&sv->in_sync)) break;
            if (pthread_mutex_trylock(&sv->run_lock) == 0) {
                if (!atomic_load(&sv->in_run)) apply_memops(sv);
                pthread_mutex_unlock(&sv->run_lock);
                continue;
            }
            kick_vcpu(sv);
            pthread_mutex_lock(&sv->mq_lock);
            if (sv->applied_gen < target) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 200000;
                if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
                pthread_cond_timedwait(&sv->mq_cv, &sv->mq_lock, &ts);
            }
            pthread_mutex_unlock(&sv->mq_lock);
        }
    }
    if (me) atomic_store(&me->in_sync, false);
}

static struct track *track_find(struct soft_part *sp, uint64_t gpa)
{
    for (size_t i = 0; i < sp->ntrk; i++)
        if (gpa - sp->trk[i].gpa < sp->trk[i].size) return &sp->trk[i];
    return NULL;
}

static int soft_map(struct hvp_partition *p, struct hvp_mem_range *r)
{
    struct soft_part *sp = PART(p);
    if (r->flags & HVP_MAP_TRACK_DIRTY) {
        if (sp->ntrk == sp->captrk) {
            size_t cap = sp->captrk ? sp->captrk * 2 : 4;
            struct track *n = realloc(sp->trk, cap * sizeof(*n));
            if (!n) return hvp__perr(p, -ENOMEM, "soft: out of memory");
            sp->trk = n;
            sp->captrk = cap;
        }
        uint64_t *bits = calloc((r->size / HVP_PAGE + 63) / 64, 8);
        if (!bits) return hvp__perr(p, -ENOMEM, "soft: out of memory");
        sp->trk[sp->ntrk++] = (struct track){r->gpa, r->size, bits};
    }
    struct memop o = {.kind = OP_MAP,
                      .gpa = r->gpa,
                      .size = r->size,
                      .hva = r->hva,
                      .prot = cpu_prot(r->flags),
                      .value = r->flags};
    r->slot = 0;
    return queue_all(p, &o);
}

static void soft_unmap(struct hvp_partition *p, struct hvp_mem_range *r)
{
    struct soft_part *sp = PART(p);
    for (size_t i = 0; i < sp->ntrk; i++)
        if (sp->trk[i].gpa == r->gpa) {
            free(sp->trk[i].bits);
            sp->trk[i] = sp->trk[--sp->ntrk];
            break;
        }
    struct memop o = {.kind = OP_UNMAP, .gpa = r->gpa, .size = r->size};
    queue_all(p, &o);
    r->slot = -1;
}

/* Moves the dirty bits into r->dirty and write-protects those pages again
 * on every vCPU (the platform syncs before the query returns). */
static int soft_fetch_dirty(struct hvp_partition *p, struct hvp_mem_range *r)
{
    struct track *t = track_find(PART(p), r->gpa);
    if (!t) return 0;
    uint64_t pages = t->size / HVP_PAGE;
    uint64_t run = 0, start = 0;
    for (uint64_t i = 0; i <= pages; i++) {
        bool d = i < pages && (t->bits[i / 64] >> (i % 64) & 1);
        if (d) {
            if (!run) start = i;
            run++;
            r->dirty[i / 64] |= 1ull << (i % 64);
            continue;
        }
        if (run) {
            struct memop o = {.kind = OP_PROTECT,
                              .gpa = t->gpa + start * HVP_PAGE,
                              .size = run * HVP_PAGE,
                              .prot = cpu_prot(r->flags)};
            int e = queue_all(p, &o);
            if (e < 0) return e;
            run = 0;
        }
    }
    memset(t->bits, 0, (pages + 63) / 64 * 8);
    return 0;
}

/* The first write to a tracked page: record it, make it writable here. */
static bool dirty_fault(struct soft_vcpu *sv, uint64_t gpa)
{
    const struct view *vw = view_find(sv, gpa);
    if (!vw || !(vw->flags & HVP_MAP_TRACK_DIRTY) || !(vw->flags & HVP_MAP_WRITE)) return false;
    uint32_t flags = vw->flags;
    struct hvp_partition *p = sv->sp->p;
    pthread_mutex_lock(&p->lock);
    struct track *t = track_find(sv->sp, gpa);
    if (t) {
        uint64_t i = (gpa - t->gpa) / HVP_PAGE;
        t->bits[i / 64] |= 1ull << (i % 64);
    }
    pthread_mutex_unlock(&p->lock);
    if (!t) return false;
    hvp_cpu_protect(sv->cpu, gpa & ~(HVP_PAGE - 1), HVP_PAGE,
                    cpu_prot(flags & ~HVP_MAP_TRACK_DIRTY));
    return true;
}

static int soft_property_changed(struct hvp_partition *p, uint32_t code)
{
    if (code != HVP_PROP_EXCEPTION_EXIT_BITMAP) return 0;
    uint64_t b = p->extended_exits & HVP_EXTENDED_EXIT_EXCEPTION ? p->exception_bitmap : 0;
    struct memop o = {.kind = OP_EXC_BITMAP, .value = b};
    pthread_mutex_lock(&p->lock);
    int r = queue_all(p, &o);
    pthread_mutex_unlock(&p->lock);
    soft_sync(p);
    return r;
}

static int soft_suspend_time(struct hvp_partition *p)
{
    struct soft_part *sp = PART(p);
    pthread_mutex_lock(&sp->tlock);
    if (!sp->tsuspended) {
        sp->tsuspended = true;
        sp->susp_ns = lapic_now_ns();
        sp->susp_tsc = __rdtsc();
    }
    pthread_mutex_unlock(&sp->tlock);
    return 0;
}

static int soft_resume_time(struct hvp_partition *p)
{
    struct soft_part *sp = PART(p);
    pthread_mutex_lock(&sp->tlock);
    bool was = sp->tsuspended;
    uint64_t dns = lapic_now_ns() - sp->susp_ns, dtsc = __rdtsc() - sp->susp_tsc;
    pthread_mutex_unlock(&sp->tlock);
    if (!was) return 0;
    /* The guest saw no time pass: TSC and timer deadlines move back. */
    struct memop o = {.kind = OP_TSC_SHIFT, .value = dtsc};
    pthread_mutex_lock(&p->lock);
    int r = queue_all(p, &o);
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        struct soft_vcpu *sv = atomic_load(&sp->vcpus[i]);
        if (sv) lapic_shift_time(&sv->apic, dns);
    }
    pthread_mutex_unlock(&p->lock);
    soft_sync(p);
    pthread_mutex_lock(&sp->tlock);
    sp->tsuspended = false;
    sp->rescan = true;
    pthread_cond_signal(&sp->tcv);
    pthread_mutex_unlock(&sp->tlock);
    return r;
}

/* ---- CPUID ------------------------------------------------------------- */

/* Feature bits a result list may not turn on beyond what the CPU and the
 * platform implement: leaf, register index (eax..edx = 0..3). */
static uint32_t feature_mask(struct soft_part *sp, uint32_t leaf, uint32_t sub, unsigned reg)
{
    bool feat = (leaf == 1 && reg >= 2) || (leaf == 7 && sub == 0 && reg >= 1) ||
                (leaf == 0x80000001 && reg >= 2);
    if (!feat) return ~0u;
    uint32_t m = 0;
    for (size_t i = 0; i < sp->ndef; i++)
        if (sp->def[i].leaf == leaf) m = (&sp->def[i].eax)[reg];
    if (leaf == 1 && reg == 2) m |= 1u << 21 | 1u << 24 | 1u << 31; /* x2APIC, TSC-deadline, HV */
    if (leaf == 1 && reg == 3) m |= 1u << 9;                        /* APIC */
    return m;
}

/* What the guest sees: the CPU's table, the result list over it, and the
 * platform's part (APIC, APIC ID). */
static void cpuid_effective(struct soft_vcpu *sv, uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    struct soft_part *sp = sv->sp;
    struct hvp_partition *p = sp->p;
    for (size_t i = 0; i < p->n_cpuid_results; i++) {
        const struct hvp_cpuid_result *c = &p->cpuid_results[i];
        if (c->function != leaf) continue;
        const uint32_t in[4] = {c->eax, c->ebx, c->ecx, c->edx};
        for (unsigned k = 0; k < 4; k++)
            r[k] = in[k] & feature_mask(sp, leaf, sub, k);
    }
    if (leaf == 1) {
        r[1] = (r[1] & 0x00ffffff) | sv->index << 24;
        if (apic_on(sv)) {
            r[3] |= 1u << 9;
            r[2] |= 1u << 24;
        } else {
            r[3] &= ~(1u << 9);
            r[2] &= ~(1u << 24);
        }
        if (p->apic_mode == HVP_APIC_MODE_X2APIC)
            r[2] |= 1u << 21;
        else
            r[2] &= ~(1u << 21);
    }
    if (leaf == 0xb || leaf == 0x1f) r[3] = sv->index;
}

static bool cpuid_exits(struct hvp_partition *p, uint32_t leaf)
{
    if (!(p->extended_exits & HVP_EXTENDED_EXIT_CPUID)) return false;
    for (size_t i = 0; i < p->n_cpuid_exits; i++)
        if (p->cpuid_exits[i] == leaf) return true;
    return false;
}

static int soft_get_cpuid(struct hvp_vcpu *v, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    struct soft_vcpu *sv = VCPU(v);
    memset(out, 0, 16);
    for (size_t i = 0; i < sv->sp->ndef; i++) {
        const struct hvp_cpuid_entry *e = &sv->sp->def[i];
        if (e->leaf == leaf && (!(e->flags & HVP_CPUID_F_SUBLEAF) || e->subleaf == sub)) {
            out[0] = e->eax, out[1] = e->ebx, out[2] = e->ecx, out[3] = e->edx;
            break;
        }
    }
    cpuid_effective(sv, leaf, sub, out);
    return 0;
}

/* ---- hooks (on the vCPU's thread, inside hvp_cpu_run) ------------------ */

static int hook_pio(void *ctx, uint16_t port, unsigned size, bool write, uint32_t *val)
{
    struct soft_vcpu *sv = ctx;
    struct hvp_partition *p = sv->sp->p;
    if (!p->has_io_handler || !p->io_handler.pio) return HVP_CPU_HOOK_EXIT;
    uint64_t d = write ? *val : 0;
    int r = p->io_handler.pio(p->io_ctx, sv->v, port, (uint8_t)size, write, &d);
    if (r == 0) {
        if (!write) *val = (uint32_t)d;
        return 0;
    }
    if (r < 0) sv->hook_err = r;
    return HVP_CPU_HOOK_EXIT;
}

static int hook_mmio(void *ctx, uint64_t gpa, unsigned size, bool write, uint64_t *val)
{
    struct soft_vcpu *sv = ctx;
    struct hvp_partition *p = sv->sp->p;
    if (sv->ans.kind == ANS_MMIO && !sv->ans.used && sv->ans.addr == gpa) {
        if (!write) *val = sv->ans.val;
        sv->ans.used = true;
        return 0;
    }
    if (apic_on(sv) && lapic_xapic(&sv->apic) && gpa - lapic_mmio_base(&sv->apic) < 0x1000) {
        uint32_t off = (uint32_t)(gpa & 0xfff);
        if (off >= LAPIC_PAGE) {
            if (!write) *val = 0;
            return 0;
        }
        return write ? lapic_mmio_write(&sv->apic, off, size, *val)
                     : lapic_mmio_read(&sv->apic, off, size, val);
    }
    if (sv->ans.kind && write && !sv->retired_valid) {
        /* A second access of the instruction being completed: delivered
         * as an MMIO write that has retired (HVP_EXIT_F_RETIRED). */
        sv->retired_valid = true;
        sv->retired =
            (struct hvp_access){.addr = gpa, .size = (uint8_t)size, .is_write = 1, .count = 1};
        memcpy(sv->retired.data, val, 8);
        return 0;
    }
    if (view_find(sv, gpa)) return HVP_CPU_HOOK_EXIT; /* mapped but protected */
    if (!p->has_io_handler || !p->io_handler.mmio || sv->ans.kind) return HVP_CPU_HOOK_EXIT;
    uint64_t d = write ? *val : 0;
    int r = p->io_handler.mmio(p->io_ctx, sv->v, gpa, (uint8_t)size, write, &d);
    if (r == 0) {
        if (!write) *val = d;
        return 0;
    }
    if (r < 0) sv->hook_err = r;
    return HVP_CPU_HOOK_EXIT;
}

static int msr_action(struct hvp_partition *p, uint32_t index, bool write)
{
    if (!(p->extended_exits & HVP_EXTENDED_EXIT_MSR)) return -1;
    for (size_t i = 0; i < p->n_msr_actions; i++)
        if (p->msr_actions[i].index == index) {
            int a = write ? p->msr_actions[i].write_action : p->msr_actions[i].read_action;
            if (a != HVP_MSR_ACTION_DEFAULT) return a;
        }
    return -1;
}

static int hook_msr(void *ctx, uint32_t index, bool write, uint64_t *val)
{
    struct soft_vcpu *sv = ctx;
    struct hvp_partition *p = sv->sp->p;
    int act = msr_action(p, index, write);
    if (act == HVP_MSR_ACTION_EXIT) return HVP_CPU_HOOK_EXIT;
    if (act == HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO) {
        if (!write) *val = 0;
        return 0;
    }
    if (index == 0x1b) {
        if (!write) return HVP_CPU_HOOK_EXIT; /* the CPU answers reads itself */
        if (!apic_on(sv)) return 0;
        return lapic_set_base(&sv->apic, *val) < 0 ? HVP_CPU_HOOK_GP : 0;
    }
    if (apic_on(sv) && (index == 0x6e0 || (index >= 0x800 && index <= 0x8ff))) {
        int r =
            write ? lapic_msr_write(&sv->apic, index, *val) : lapic_msr_read(&sv->apic, index, val);
        return r < 0 ? HVP_CPU_HOOK_GP : 0;
    }
    switch (index) {
    case 0x2ff: /* MTRRdefType: kept, no MTRRs behind it */
        if (write)
            sv->mtrr_def_type = *val;
        else
            *val = sv->mtrr_def_type;
        return 0;
    case 0xfe: /* MTRRcap: none */
        if (write) return HVP_CPU_HOOK_GP;
        *val = 0;
        return 0;
    }
    if (p->extended_exits & HVP_EXTENDED_EXIT_MSR) {
        if (p->unimplemented_msr_action == HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO) {
            if (!write) *val = 0;
            return 0;
        }
        if (p->msr_exit_bitmap & HVP_MSR_EXIT_UNHANDLED_MSRS ||
            p->unimplemented_msr_action == HVP_MSR_ACTION_EXIT)
            return HVP_CPU_HOOK_EXIT;
    }
    return HVP_CPU_HOOK_GP;
}

static int hook_cpuid(void *ctx, uint32_t leaf, uint32_t sub, uint32_t regs[4])
{
    struct soft_vcpu *sv = ctx;
    if (cpuid_exits(sv->sp->p, leaf)) return HVP_CPU_HOOK_EXIT;
    cpuid_effective(sv, leaf, sub, regs);
    return 0;
}

static int hook_intr_ack(void *ctx)
{
    struct soft_vcpu *sv = ctx;
    if (sv->ans.kind) return -1; /* completing an instruction: no interrupt before it */
    return lapic_ack(&sv->apic);
}

static void hook_tpr_write(void *ctx, uint8_t cr8)
{
    lapic_set_tpr(&((struct soft_vcpu *)ctx)->apic, cr8);
}

static uint8_t hook_tpr_read(void *ctx)
{
    return lapic_get_tpr(&((struct soft_vcpu *)ctx)->apic);
}

/* ---- the LAPIC's environment ------------------------------------------- */

static void env_intr(void *ctx, bool asserted)
{
    struct soft_vcpu *sv = ctx;
    if (sv->dead || !sv->cpu) return;
    hvp_cpu_set_intr(sv->cpu, asserted);
    if (asserted) pthread_cond_signal(&sv->apic.wake);
}

static void env_eoi(void *ctx, uint8_t vector)
{
    struct soft_vcpu *sv = ctx;
    sv->eoi_bits[vector / 64] |= 1ull << (vector % 64);
    hvp_cpu_kick(sv->cpu); /* the exit comes at the end of the block */
}

static uint64_t env_guest_tsc(void *ctx)
{
    struct soft_vcpu *sv = ctx;
    struct hvp_cpu_state st;
    if (hvp_cpu_get_state(sv->cpu, &st) < 0) return __rdtsc();
    return st.tsc;
}

static void deliver(struct soft_vcpu *t, const struct lapic_msg *m)
{
    if (lapic_accept(&t->apic, m)) return;
    pthread_mutex_lock(&t->apic.lock);
    if (!t->dead) {
        switch (m->mode) {
        case DM_NMI:
            hvp_cpu_nmi(t->cpu);
            t->nmi_wake = true;
            break;
        case DM_INIT:
            if (m->level && !m->assert) break; /* INIT level de-assert */
            t->init_pending = true;
            hvp_cpu_kick(t->cpu);
            break;
        case DM_SIPI:
            if (t->wait_sipi || t->init_pending) {
                t->sipi_pending = true;
                t->sipi_vector = m->vector;
            }
            break;
        default: break; /* SMI, ExtINT: not on this bus */
        }
        pthread_cond_signal(&t->apic.wake);
    }
    pthread_mutex_unlock(&t->apic.lock);
}

/* Routes a message to its destinations (src: the sending vCPU or NULL). */
static void route(struct soft_part *sp, struct soft_vcpu *src, const struct lapic_msg *m)
{
    struct soft_vcpu *lowest = NULL;
    uint8_t lowest_pri = 0xff;
    for (uint32_t i = 0; i < HVP_MAX_VCPUS; i++) {
        struct soft_vcpu *t = atomic_load(&sp->vcpus[i]);
        if (!t) continue;
        bool hit;
        switch (m->shorthand) {
        case 1: hit = t == src; break;
        case 2: hit = true; break;
        case 3: hit = t != src; break;
        default: hit = lapic_match(&t->apic, m); break;
        }
        if (!hit) continue;
        if (m->mode == DM_LOWEST && !m->shorthand) {
            uint8_t pri = lapic_priority(&t->apic);
            if (!lowest || pri < lowest_pri) lowest = t, lowest_pri = pri;
            continue;
        }
        deliver(t, m);
    }
    if (lowest) deliver(lowest, m);
}

static void env_ipi(void *ctx, const struct lapic_msg *m)
{
    struct soft_vcpu *sv = ctx;
    route(sv->sp, sv, m);
}

static int soft_request_interrupt(struct hvp_partition *p, const struct hvp_interrupt *irq)
{
    uint8_t mode;
    switch (irq->type) {
    case HVP_INTERRUPT_FIXED: mode = DM_FIXED; break;
    case HVP_INTERRUPT_LOWEST_PRIORITY: mode = DM_LOWEST; break;
    case HVP_INTERRUPT_NMI:
    case HVP_INTERRUPT_LOCAL_INT1: mode = DM_NMI; break;
    case HVP_INTERRUPT_INIT: mode = DM_INIT; break;
    case HVP_INTERRUPT_SIPI: mode = DM_SIPI; break;
    default: return hvp__perr(p, -EINVAL, "interrupt: unknown type %u", irq->type);
    }
    if (mode <= DM_LOWEST && (irq->vector < 16 || irq->vector > 255))
        return hvp__perr(p, -EINVAL, "interrupt: vector %u, not 16..255", irq->vector);
    struct lapic_msg m = {.mode = mode,
                          .vector = (uint8_t)irq->vector,
                          .logical = irq->logical_dest,
                          .level = irq->level_triggered,
                          .assert = true,
                          .dest = irq->destination};
    route(PART(p), NULL, &m);
    return 0;
}

static int soft_set_irq_line(struct hvp_partition *p, uint32_t gsi, bool level)
{
    (void)gsi, (void)level;
    return hvp__perr(p, -EOPNOTSUPP,
                     "soft: the platform has no IOAPIC/PIC (the VMM emulates them and "
                     "delivers with hvp_request_interrupt or PendingInterruption)");
}

/* ---- vCPUs ------------------------------------------------------------- */

static void set_hooks(struct soft_vcpu *sv)
{
    struct hvp_cpu_hooks hk = {.ctx = sv,
                               .pio = hook_pio,
                               .mmio = hook_mmio,
                               .msr = hook_msr,
                               .cpuid = hook_cpuid,
                               .intr_ack = hook_intr_ack};
    if (apic_on(sv)) {
        hk.tpr_write = hook_tpr_write;
        hk.tpr_read = hook_tpr_read;
    }
    hvp_cpu_set_hooks(sv->cpu, &hk);
}

/* The CPU's IA32_APIC_BASE follows the LAPIC (BSP bit for vCPU 0 only). */
static void sync_apic_base(struct soft_vcpu *sv)
{
    struct hvp_cpu_state st;
    hvp_cpu_get_state(sv->cpu, &st);
    st.apic_base = sv->apic.apic_base;
    hvp_cpu_set_state(sv->cpu, &st);
}

static int soft_vcpu_create(struct hvp_vcpu *v)
{
    struct hvp_partition *p = v->p;
    struct soft_part *sp = PART(p);
    struct soft_vcpu *sv = calloc(1, sizeof(*sv));
    if (!sv) return hvp__verr(v, -ENOMEM, "soft: out of memory");
    sv->v = v;
    sv->sp = sp;
    sv->index = v->index;
    pthread_mutex_init(&sv->run_lock, NULL);
    pthread_mutex_init(&sv->mq_lock, NULL);
    pthread_cond_init(&sv->mq_cv, NULL);
    sv->mq_tail = &sv->mq_head;
    struct hvp_cpu_config cfg = {
        .size = sizeof(cfg),
        .model = HVP_CPU_MODEL_SYSTEM,
        .exception_exit_bitmap =
            p->extended_exits & HVP_EXTENDED_EXIT_EXCEPTION ? (uint32_t)p->exception_bitmap : 0,
    };
    /* The CPU's own table knows the platform's APIC features too (it
     * checks x2APIC enables against it); the cpuid hook adds the rest. */
    struct hvp_cpuid_entry tab[32];
    memcpy(tab, sp->def, sp->ndef * sizeof(tab[0]));
    for (size_t i = 0; i < sp->ndef; i++) {
        if (tab[i].leaf != 1) continue;
        tab[i].ebx = (tab[i].ebx & 0x00ffffff) | v->index << 24;
        if (p->apic_mode != HVP_APIC_MODE_NONE) tab[i].ecx |= 1u << 24;
        if (p->apic_mode == HVP_APIC_MODE_X2APIC) tab[i].ecx |= 1u << 21;
    }
    cfg.cpuid = tab;
    cfg.ncpuid = sp->ndef;
    int r = hvp_cpu_create(&cfg, &sv->cpu);
    if (r < 0) {
        free(sv);
        return hvp__verr(v, r, "soft: cannot create the CPU");
    }
    struct lapic_env env = {.ctx = sv,
                            .intr = env_intr,
                            .eoi = env_eoi,
                            .ipi = env_ipi,
                            .timer_armed = env_timer_armed,
                            .guest_tsc = env_guest_tsc,
                            .tsc_hz = sp->tsc_hz};
    lapic_init(&sv->apic, v->index, v->index == 0, p->apic_mode == HVP_APIC_MODE_X2APIC, &env);
    set_hooks(sv);
    sync_apic_base(sv);
    for (size_t i = 0; i < p->n_ranges && r == 0; i++) {
        struct hvp_mem_range *m = &p->ranges[i];
        r = hvp_cpu_map(sv->cpu, m->gpa, m->size, m->hva, cpu_prot(m->flags));
        view_add(sv, m->gpa, m->size, m->flags);
    }
    if (r < 0) {
        hvp__verr(v, r, "soft: cannot map guest memory: %s", hvp_cpu_error(sv->cpu));
        hvp_cpu_destroy(sv->cpu);
        sv->cpu = NULL;
        free_vcpu(sv);
        return r;
    }
    v->priv = sv;
    atomic_store(&sp->vcpus[v->index], sv);
    return 0;
}

static void soft_vcpu_destroy(struct hvp_vcpu *v)
{
    struct soft_vcpu *sv = VCPU(v);
    if (!sv) return;
    struct soft_part *sp = sv->sp;
    atomic_store(&sp->vcpus[v->index], NULL);
    pthread_mutex_lock(&sv->run_lock);
    pthread_mutex_lock(&sv->apic.lock);
    sv->dead = true;
    sv->apic.deadline_ns = 0;
    struct hvp_cpu *cpu = sv->cpu;
    sv->cpu = NULL;
    pthread_mutex_unlock(&sv->apic.lock);
    hvp_cpu_destroy(cpu);
    pthread_mutex_unlock(&sv->run_lock);
    pthread_mutex_lock(&v->p->lock);
    sv->next_dead = sp->dead;
    sp->dead = sv;
    pthread_mutex_unlock(&v->p->lock);
    v->priv = NULL;
}

static void clear_run_state(struct soft_vcpu *sv)
{
    sv->pending = PEND_NONE;
    sv->queued = false;
    sv->retired_valid = false;
    sv->hook_err = 0;
    memset(sv->eoi_bits, 0, sizeof(sv->eoi_bits));
    memset(&sv->notif, 0, sizeof(sv->notif));
    pthread_mutex_lock(&sv->apic.lock);
    sv->halted = sv->wait_sipi = sv->init_pending = sv->sipi_pending = sv->nmi_wake = false;
    pthread_mutex_unlock(&sv->apic.lock);
}

static int soft_vcpu_reset(struct hvp_vcpu *v)
{
    struct soft_vcpu *sv = VCPU(v);
    pthread_mutex_lock(&sv->run_lock);
    int r = hvp_cpu_reset(sv->cpu, false);
    clear_run_state(sv);
    hvp_cpu_request_window(sv->cpu, false, false);
    lapic_reset(&sv->apic, sv->index == 0);
    sync_apic_base(sv);
    sv->mtrr_def_type = 0;
    pthread_mutex_unlock(&sv->run_lock);
    if (r < 0) return hvp__verr(v, r, "soft: reset: %s", hvp_cpu_error(sv->cpu));
    return 0;
}

/* ---- registers --------------------------------------------------------- */

/* get_state with the pending I/O instruction shown (RIP at it). */
static void load_state(struct soft_vcpu *sv, struct hvp_cpu_state *st, uint64_t *tsc_off)
{
    uint64_t h0 = __rdtsc();
    hvp_cpu_get_state(sv->cpu, st);
    if (tsc_off) *tsc_off = st->tsc - h0;
    if (sv->pending == PEND_IO) st->rip -= sv->pend_len;
}

static void seg_out(struct hvp_segment *o, const struct hvp_cpu_segment *s)
{
    *o = (struct hvp_segment){
        .base = s->base, .limit = s->limit, .selector = s->selector, .attributes = s->attr};
}

static void seg_in(struct hvp_cpu_segment *s, const struct hvp_segment *o)
{
    *s = (struct hvp_cpu_segment){
        .base = o->base, .limit = o->limit, .selector = o->selector, .attr = o->attributes};
}

static uint64_t *reg64_ptr(struct hvp_cpu_state *st, uint32_t n)
{
    if (n <= HVP_REG_R15) return &st->gpr[n];
    switch (n) {
    case HVP_REG_RIP: return &st->rip;
    case HVP_REG_RFLAGS: return &st->rflags;
    case HVP_REG_CR0: return &st->cr0;
    case HVP_REG_CR2: return &st->cr2;
    case HVP_REG_CR3: return &st->cr3;
    case HVP_REG_CR4: return &st->cr4;
    case HVP_REG_CR8: return &st->cr8;
    case HVP_REG_DR0:
    case HVP_REG_DR1:
    case HVP_REG_DR2:
    case HVP_REG_DR3: return &st->dr[n - HVP_REG_DR0];
    case HVP_REG_DR6: return &st->dr[6];
    case HVP_REG_DR7: return &st->dr[7];
    case HVP_REG_XCR0: return &st->xcr0;
    case HVP_REG_TSC: return &st->tsc;
    case HVP_REG_EFER: return &st->efer;
    case HVP_REG_KERNEL_GS_BASE: return &st->kernel_gs_base;
    case HVP_REG_APIC_BASE: return &st->apic_base;
    case HVP_REG_PAT: return &st->pat;
    case HVP_REG_SYSENTER_CS: return &st->sysenter_cs;
    case HVP_REG_SYSENTER_EIP: return &st->sysenter_eip;
    case HVP_REG_SYSENTER_ESP: return &st->sysenter_esp;
    case HVP_REG_STAR: return &st->star;
    case HVP_REG_LSTAR: return &st->lstar;
    case HVP_REG_CSTAR: return &st->cstar;
    case HVP_REG_SFMASK: return &st->sfmask;
    case HVP_REG_TSC_AUX: return &st->tsc_aux;
    }
    return NULL;
}

static struct hvp_cpu_segment *seg_ptr(struct hvp_cpu_state *st, uint32_t n)
{
    if (n >= HVP_REG_ES && n <= HVP_REG_GS) return &st->seg[n - HVP_REG_ES];
    if (n == HVP_REG_LDTR) return &st->ldtr;
    if (n == HVP_REG_TR) return &st->tr;
    return NULL;
}

static void pending_out(const struct hvp_cpu_event *ev, struct hvp_pending_interruption *pi)
{
    memset(pi, 0, sizeof(*pi));
    if (!ev->pending) return;
    pi->pending = 1;
    pi->type = ev->type;
    pi->vector = ev->vector;
    pi->deliver_error_code = ev->has_error_code;
    pi->error_code = ev->error_code;
    pi->instruction_length = ev->insn_len & 15;
}

static int soft_get_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                              union hvp_reg_value *vals)
{
    struct soft_vcpu *sv = VCPU(v);
    pthread_mutex_lock(&sv->run_lock);
    struct hvp_cpu_state st;
    load_state(sv, &st, NULL);
    struct hvp_cpu_event ev = {0};
    hvp_cpu_get_event(sv->cpu, &ev);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nm = names[i];
        union hvp_reg_value *o = &vals[i];
        memset(o, 0, sizeof(*o));
        struct hvp_cpu_segment *s = seg_ptr(&st, nm);
        uint64_t *p64 = reg64_ptr(&st, nm);
        if (s)
            seg_out(&o->segment, s);
        else if (nm == HVP_REG_IDTR || nm == HVP_REG_GDTR) {
            const struct hvp_cpu_table *t = nm == HVP_REG_IDTR ? &st.idtr : &st.gdtr;
            o->table.base = t->base;
            o->table.limit = t->limit;
        } else if (nm == HVP_REG_CR8 && apic_on(sv))
            o->reg64 = lapic_get_tpr(&sv->apic);
        else if (nm == HVP_REG_APIC_BASE && apic_on(sv))
            o->reg64 = sv->apic.apic_base;
        else if (p64)
            o->reg64 = *p64;
        else if (nm >= HVP_REG_XMM0 && nm < HVP_REG_FPMMX0)
            memcpy(&o->reg128, st.fpu.xmm[nm - HVP_REG_XMM0], 16);
        else if (nm >= HVP_REG_FPMMX0 && nm < HVP_REG_FP_CONTROL_STATUS) {
            uint16_t es;
            memcpy(&o->fp.mantissa, st.fpu.st[nm - HVP_REG_FPMMX0], 8);
            memcpy(&es, st.fpu.st[nm - HVP_REG_FPMMX0] + 8, 2);
            o->fp.exponent_sign = es;
        } else if (nm == HVP_REG_FP_CONTROL_STATUS) {
            o->fp_control_status = (struct hvp_fp_control_status){.fcw = st.fpu.fcw,
                                                                  .fsw = st.fpu.fsw,
                                                                  .ftw = st.fpu.ftw,
                                                                  .last_opcode = st.fpu.fop,
                                                                  .last_ip = st.fpu.fip};
        } else if (nm == HVP_REG_XMM_CONTROL_STATUS) {
            o->xmm_control_status = (struct hvp_xmm_control_status){
                .last_dp = st.fpu.fdp, .mxcsr = st.fpu.mxcsr, .mxcsr_mask = 0xffff};
        } else if (nm == HVP_REG_MTRR_DEF_TYPE)
            o->reg64 = sv->mtrr_def_type;
        else if (nm == HVP_REG_PENDING_INTERRUPTION)
            pending_out(&ev, &o->pending_interruption);
        else if (nm == HVP_REG_INTERRUPT_STATE) {
            o->interrupt_state.interrupt_shadow = st.interrupt_shadow;
            o->interrupt_state.nmi_masked = st.nmi_masked;
        } else if (nm == HVP_REG_DELIVERABILITY_NOTIFICATIONS)
            o->deliverability = sv->notif;
    }
    pthread_mutex_unlock(&sv->run_lock);
    return 0;
}

static int soft_set_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t n,
                              const union hvp_reg_value *vals)
{
    struct soft_vcpu *sv = VCPU(v);
    pthread_mutex_lock(&sv->run_lock);
    struct hvp_cpu_state st;
    uint64_t tsc_off;
    load_state(sv, &st, &tsc_off);
    /* The VMM writes registers: a pending access is its business now (it
     * emulated it, or will run the instruction again). */
    sv->pending = PEND_NONE;
    bool tsc_set = false, state = false, ev_set = false, window = false;
    struct hvp_cpu_event ev = {0};
    int r = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t nm = names[i];
        const union hvp_reg_value *o = &vals[i];
        struct hvp_cpu_segment *s = seg_ptr(&st, nm);
        uint64_t *p64 = reg64_ptr(&st, nm);
        state = true;
        if (s)
            seg_in(s, &o->segment);
        else if (nm == HVP_REG_IDTR || nm == HVP_REG_GDTR) {
            struct hvp_cpu_table *t = nm == HVP_REG_IDTR ? &st.idtr : &st.gdtr;
            t->base = o->table.base;
            t->limit = o->table.limit;
        } else if (nm == HVP_REG_CR8 && apic_on(sv)) {
            lapic_set_tpr(&sv->apic, (uint8_t)o->reg64);
            st.cr8 = o->reg64 & 15;
        } else if (nm == HVP_REG_APIC_BASE && apic_on(sv)) {
            if (lapic_set_base(&sv->apic, o->reg64) < 0) {
                r = hvp__verr(v, -EINVAL, "ApicBase 0x%llx: not a valid APIC state",
                              (unsigned long long)o->reg64);
                break;
            }
            st.apic_base = o->reg64;
        } else if (p64) {
            *p64 = o->reg64;
            tsc_set |= nm == HVP_REG_TSC;
        } else if (nm >= HVP_REG_XMM0 && nm < HVP_REG_FPMMX0)
            memcpy(st.fpu.xmm[nm - HVP_REG_XMM0], &o->reg128, 16);
        else if (nm >= HVP_REG_FPMMX0 && nm < HVP_REG_FP_CONTROL_STATUS) {
            uint16_t es = (uint16_t)o->fp.exponent_sign;
            memset(st.fpu.st[nm - HVP_REG_FPMMX0], 0, 16);
            memcpy(st.fpu.st[nm - HVP_REG_FPMMX0], &o->fp.mantissa, 8);
            memcpy(st.fpu.st[nm - HVP_REG_FPMMX0] + 8, &es, 2);
        } else if (nm == HVP_REG_FP_CONTROL_STATUS) {
            st.fpu.fcw = o->fp_control_status.fcw;
            st.fpu.fsw = o->fp_control_status.fsw;
            st.fpu.ftw = o->fp_control_status.ftw;
            st.fpu.fop = o->fp_control_status.last_opcode;
            st.fpu.fip = o->fp_control_status.last_ip;
        } else if (nm == HVP_REG_XMM_CONTROL_STATUS) {
            st.fpu.fdp = o->xmm_control_status.last_dp;
            st.fpu.mxcsr = o->xmm_control_status.mxcsr;
        } else if (nm == HVP_REG_MTRR_DEF_TYPE)
            sv->mtrr_def_type = o->reg64;
        else if (nm == HVP_REG_PENDING_INTERRUPTION) {
            const struct hvp_pending_interruption *pi = &o->pending_interruption;
            ev = (struct hvp_cpu_event){.pending = pi->pending,
                                        .type = (uint8_t)pi->type,
                                        .vector = (uint8_t)pi->vector,
                                        .has_error_code = pi->deliver_error_code,
                                        .error_code = pi->error_code,
                                        .insn_len = (uint8_t)pi->instruction_length};
            ev_set = true;
        } else if (nm == HVP_REG_INTERRUPT_STATE) {
            st.interrupt_shadow = (uint8_t)o->interrupt_state.interrupt_shadow;
            st.nmi_masked = (uint8_t)o->interrupt_state.nmi_masked;
        } else if (nm == HVP_REG_DELIVERABILITY_NOTIFICATIONS) {
            sv->notif = o->deliverability;
            window = true;
        }
    }
    if (r == 0 && state && (st.cr0 & 0x80000001) == 0x80000000)
        r = hvp__verr(v, -EINVAL, "CR0 0x%llx: paging without protection cannot be entered",
                      (unsigned long long)st.cr0);
    if (r == 0 && state) {
        if (!tsc_set) st.tsc = __rdtsc() + tsc_off;
        r = hvp_cpu_set_state(sv->cpu, &st);
        if (r < 0) hvp__verr(v, r, "soft: registers: %s", hvp_cpu_error(sv->cpu));
    }
    if (r == 0 && ev_set && (r = hvp_cpu_set_event(sv->cpu, &ev)) < 0)
        hvp__verr(v, r, "soft: PendingInterruption: %s", hvp_cpu_error(sv->cpu));
    if (window) hvp_cpu_request_window(sv->cpu, sv->notif.interrupt, sv->notif.nmi);
    if (ev_set && ev.pending) {
        pthread_mutex_lock(&sv->apic.lock);
        sv->halted = false; /* an injected event ends HLT */
        pthread_mutex_unlock(&sv->apic.lock);
    }
    pthread_mutex_unlock(&sv->run_lock);
    return r;
}

/* XSAVE: the legacy (FXSAVE) region and the header; x87 and SSE. */
#define XSAVE_SIZE 4096u

static int soft_get_xsave(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    struct soft_vcpu *sv = VCPU(v);
    if (written) *written = XSAVE_SIZE;
    if (len < XSAVE_SIZE) return hvp__verr(v, -ENOSPC, "XSAVE: %u bytes needed", XSAVE_SIZE);
    pthread_mutex_lock(&sv->run_lock);
    struct hvp_cpu_state st;
    load_state(sv, &st, NULL);
    pthread_mutex_unlock(&sv->run_lock);
    uint8_t *x = buf;
    memset(x, 0, XSAVE_SIZE);
    memcpy(x + 0, &st.fpu.fcw, 2);
    memcpy(x + 2, &st.fpu.fsw, 2);
    x[4] = st.fpu.ftw;
    memcpy(x + 6, &st.fpu.fop, 2);
    memcpy(x + 8, &st.fpu.fip, 8);
    memcpy(x + 16, &st.fpu.fdp, 8);
    memcpy(x + 24, &st.fpu.mxcsr, 4);
    uint32_t mask = 0xffff;
    memcpy(x + 28, &mask, 4);
    for (int i = 0; i < 8; i++)
        memcpy(x + 32 + 16 * i, st.fpu.st[i], 10);
    memcpy(x + 160, st.fpu.xmm, 256);
    uint64_t bv = 3;
    memcpy(x + 512, &bv, 8);
    return 0;
}

static int soft_set_xsave(struct hvp_vcpu *v, const void *buf, size_t len)
{
    struct soft_vcpu *sv = VCPU(v);
    if (len < 576) return hvp__verr(v, -EINVAL, "XSAVE: %zu bytes, at least 576", len);
    const uint8_t *x = buf;
    uint64_t bv;
    memcpy(&bv, x + 512, 8);
    pthread_mutex_lock(&sv->run_lock);
    struct hvp_cpu_state st;
    uint64_t off;
    load_state(sv, &st, &off);
    sv->pending = PEND_NONE;
    if (bv & 1) {
        memcpy(&st.fpu.fcw, x + 0, 2);
        memcpy(&st.fpu.fsw, x + 2, 2);
        st.fpu.ftw = x[4];
        memcpy(&st.fpu.fop, x + 6, 2);
        memcpy(&st.fpu.fip, x + 8, 8);
        memcpy(&st.fpu.fdp, x + 16, 8);
        for (int i = 0; i < 8; i++) {
            memset(st.fpu.st[i], 0, 16);
            memcpy(st.fpu.st[i], x + 32 + 16 * i, 10);
        }
    } else { /* init state */
        st.fpu.fcw = 0x37f, st.fpu.fsw = 0, st.fpu.ftw = 0, st.fpu.fop = 0;
        st.fpu.fip = st.fpu.fdp = 0;
        memset(st.fpu.st, 0, sizeof(st.fpu.st));
    }
    memcpy(&st.fpu.mxcsr, x + 24, 4);
    if (bv & 2)
        memcpy(st.fpu.xmm, x + 160, 256);
    else
        memset(st.fpu.xmm, 0, sizeof(st.fpu.xmm));
    st.tsc = __rdtsc() + off;
    int r = hvp_cpu_set_state(sv->cpu, &st);
    pthread_mutex_unlock(&sv->run_lock);
    return r < 0 ? hvp__verr(v, r, "soft: XSAVE: %s", hvp_cpu_error(sv->cpu)) : 0;
}

static int soft_get_lapic(struct hvp_vcpu *v, void *buf, size_t len, size_t *written)
{
    struct soft_vcpu *sv = VCPU(v);
    if (!apic_on(sv)) return hvp__verr(v, -EOPNOTSUPP, "LAPIC: LocalApicEmulationMode is None");
    if (written) *written = HVP_LAPIC_STATE_SIZE;
    if (len < HVP_LAPIC_STATE_SIZE)
        return hvp__verr(v, -ENOSPC, "LAPIC: %u bytes needed", HVP_LAPIC_STATE_SIZE);
    lapic_get_page(&sv->apic, buf);
    return 0;
}

static int soft_set_lapic(struct hvp_vcpu *v, const void *buf, size_t len)
{
    struct soft_vcpu *sv = VCPU(v);
    if (!apic_on(sv)) return hvp__verr(v, -EOPNOTSUPP, "LAPIC: LocalApicEmulationMode is None");
    if (len != HVP_LAPIC_STATE_SIZE)
        return hvp__verr(v, -EINVAL, "LAPIC: %zu bytes, expected %u", len, HVP_LAPIC_STATE_SIZE);
    lapic_set_page(&sv->apic, buf);
    return 0;
}

/* ---- exits ------------------------------------------------------------- */

static void fill_vp(struct soft_vcpu *sv, struct hvp_exit *x, struct hvp_cpu_state *st)
{
    hvp_cpu_get_state(sv->cpu, st);
    const struct hvp_cpu_segment *cs = &st->seg[1];
    x->vp.rip = st->rip;
    x->vp.rflags = st->rflags;
    x->vp.cs = (struct hvp_emu_segment){cs->base, cs->limit, cs->selector, cs->attr};
    x->vp.cr0_pe = st->cr0 & 1;
    x->vp.cpl = x->vp.cr0_pe ? (st->seg[2].attr >> 5) & 3 : 0;
    x->vp.cr0_am = st->cr0 >> 18 & 1;
    x->vp.efer_lma = st->efer >> 10 & 1;
    x->vp.cr4_la57 = st->cr4 >> 12 & 1;
    x->cr8 = apic_on(sv) ? lapic_get_tpr(&sv->apic) : (uint8_t)st->cr8;
    x->interrupt_shadow = st->interrupt_shadow;
    struct hvp_cpu_event ev;
    if (hvp_cpu_get_event(sv->cpu, &ev) == 0) x->vp.interruption_pending = ev.pending;
}

/* Instruction bytes at CS:RIP through the guest's page tables. */
static uint8_t fetch_bytes(struct soft_vcpu *sv, const struct hvp_cpu_state *st, uint8_t *b)
{
    struct hvp_paging_state ps = {st->cr0, st->cr3, st->cr4, st->efer,
                                  (unsigned)(st->seg[2].attr >> 5 & 3)};
    bool l64 = (st->efer >> 10 & 1) && (st->seg[1].attr & 0x2000);
    uint64_t lin = st->seg[1].base + st->rip;
    if (!l64) lin &= 0xffffffffull;
    uint8_t n = 0;
    while (n < 15) {
        uint32_t res;
        uint64_t gpa, a = lin + n;
        if (hvp__walk(sv->sp->p, &ps, a, HVP_TRANSLATE_PRIVILEGE_EXEMPT, &res, &gpa) < 0 ||
            res != HVP_TRANSLATE_SUCCESS)
            break;
        size_t c = HVP_PAGE - (a & (HVP_PAGE - 1));
        if (c > 15u - n) c = 15u - n;
        if (hvp_read_gpa(sv->sp->p, gpa, b + n, c) < 0) break;
        n += (uint8_t)c;
    }
    return n;
}

static bool io_rep(const uint8_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (b[i] == 0xf3 || b[i] == 0xf2) return true;
        if (b[i] >= 0x6c && b[i] <= 0x6f) break;
    }
    return false;
}

/* Translates a CPU exit. Returns 1 when it goes to the VMM, 0 when it was
 * handled here (the loop goes on). */
static int translate(struct soft_vcpu *sv, const struct hvp_cpu_exit *cx, struct hvp_exit *x)
{
    struct hvp_cpu_state st;
    memset(x, 0, sizeof(*x));
    switch (cx->reason) {
    case HVP_CPU_EXIT_NONE:
    case HVP_CPU_EXIT_BUDGET:
    case HVP_CPU_EXIT_KICK: return 0;
    case HVP_CPU_EXIT_HLT:
        fill_vp(sv, x, &st);
        if (!apic_on(sv)) {
            x->reason = HVP_EXIT_HALT;
            return 1;
        }
        pthread_mutex_lock(&sv->apic.lock);
        sv->halted = true;
        sv->halt_if = st.rflags & 0x200;
        pthread_mutex_unlock(&sv->apic.lock);
        return 0;
    case HVP_CPU_EXIT_IO: {
        fill_vp(sv, x, &st);
        struct hvp_exit_io *io = &x->io;
        x->reason = HVP_EXIT_IO_PORT;
        x->flags = HVP_EXIT_F_DECODED;
        x->vp.rip -= cx->insn_len;
        x->vp.instruction_length = cx->insn_len;
        memcpy(io->ctx.instruction_bytes, cx->insn_bytes, 16);
        io->ctx.instruction_byte_count = cx->insn_len;
        io->ctx.is_write = cx->u.io.write;
        io->ctx.access_size = cx->u.io.size;
        io->ctx.port = cx->u.io.port;
        io->ctx.string_op = cx->u.io.string;
        io->ctx.rep_prefix = cx->u.io.rep || (cx->u.io.string && io_rep(cx->insn_bytes, 15));
        io->rax = st.gpr[0], io->rcx = st.gpr[1], io->rsi = st.gpr[6], io->rdi = st.gpr[7];
        seg_out(&io->ds, &st.seg[3]);
        seg_out(&io->es, &st.seg[0]);
        io->access = (struct hvp_access){.addr = cx->u.io.port,
                                         .size = cx->u.io.size,
                                         .is_write = cx->u.io.write,
                                         .string_op = io->ctx.string_op,
                                         .rep = io->ctx.rep_prefix,
                                         .count = 1};
        if (cx->u.io.write) memcpy(io->access.data, &cx->u.io.data, cx->u.io.size);
        io->access.buf = io->access.data;
        sv->pending = PEND_IO;
        sv->pend_cx = *cx;
        sv->pend_len = cx->insn_len;
        sv->pend_size = cx->u.io.size;
        sv->pend_write = cx->u.io.write;
        return 1;
    }
    case HVP_CPU_EXIT_MMIO: {
        if (cx->u.mmio.write && cx->u.mmio.size && dirty_fault(sv, cx->u.mmio.gpa)) return 0;
        fill_vp(sv, x, &st);
        struct hvp_exit_mmio *m = &x->mmio;
        x->reason = HVP_EXIT_MEMORY_ACCESS;
        x->vp.instruction_length = cx->insn_len;
        memcpy(m->ctx.instruction_bytes, cx->insn_bytes, 16);
        m->ctx.instruction_byte_count = cx->insn_len;
        m->ctx.access_type = !cx->u.mmio.size   ? HVP_EMU_ACCESS_EXECUTE
                             : cx->u.mmio.write ? HVP_EMU_ACCESS_WRITE
                                                : HVP_EMU_ACCESS_READ;
        m->ctx.gpa = cx->u.mmio.gpa;
        m->ctx.gpa_unmapped = view_find(sv, cx->u.mmio.gpa) == NULL;
        if (cx->u.mmio.size && cx->u.mmio.size <= 8) {
            x->flags = HVP_EXIT_F_DECODED;
            m->access = (struct hvp_access){.addr = cx->u.mmio.gpa,
                                            .size = cx->u.mmio.size,
                                            .is_write = cx->u.mmio.write,
                                            .count = 1};
            if (cx->u.mmio.write) memcpy(m->access.data, &cx->u.mmio.data, 8);
            m->access.buf = m->access.data;
            sv->pending = PEND_MMIO;
            sv->pend_size = cx->u.mmio.size;
            sv->pend_write = cx->u.mmio.write;
            sv->ans.addr = cx->u.mmio.gpa;
        }
        return 1;
    }
    case HVP_CPU_EXIT_MSR:
        fill_vp(sv, x, &st);
        x->reason = HVP_EXIT_MSR_ACCESS;
        x->vp.instruction_length = 2;
        x->msr.index = cx->u.msr.index;
        x->msr.is_write = cx->u.msr.write;
        x->msr.rax = cx->u.msr.write ? (uint32_t)cx->u.msr.value : st.gpr[0];
        x->msr.rdx = cx->u.msr.write ? cx->u.msr.value >> 32 : st.gpr[2];
        sv->pending = PEND_MSR;
        sv->pend_cx = *cx;
        sv->pend_write = cx->u.msr.write;
        return 1;
    case HVP_CPU_EXIT_CPUID:
        fill_vp(sv, x, &st);
        x->reason = HVP_EXIT_CPUID;
        x->vp.instruction_length = 2;
        x->cpuid.rax = st.gpr[0], x->cpuid.rcx = st.gpr[1];
        x->cpuid.rdx = st.gpr[2], x->cpuid.rbx = st.gpr[3];
        sv->pending = PEND_CPUID;
        sv->pend_cx = *cx;
        cpuid_effective(sv, cx->u.cpuid.leaf, cx->u.cpuid.subleaf, sv->pend_cx.u.cpuid.regs);
        x->cpuid.default_rax = sv->pend_cx.u.cpuid.regs[0];
        x->cpuid.default_rbx = sv->pend_cx.u.cpuid.regs[1];
        x->cpuid.default_rcx = sv->pend_cx.u.cpuid.regs[2];
        x->cpuid.default_rdx = sv->pend_cx.u.cpuid.regs[3];
        return 1;
    case HVP_CPU_EXIT_EXCEPTION: {
        fill_vp(sv, x, &st);
        if (cx->u.exception.vector == 3 || cx->u.exception.vector == 4) {
            /* INT3/INTO are traps in the CPU (RIP past them); WHP and VMX
             * report them at the instruction, as a debugger wants. */
            uint8_t b[15];
            uint64_t off;
            st.rip--;
            if (fetch_bytes(sv, &st, b) && (b[0] == 0xcc || b[0] == 0xce)) {
                load_state(sv, &st, &off);
                st.rip--;
                st.tsc = __rdtsc() + off;
                hvp_cpu_set_state(sv->cpu, &st);
                fill_vp(sv, x, &st);
                x->vp.instruction_length = 1;
            } else
                st.rip++;
        }
        struct hvp_exit_exception *e = &x->exception;
        x->reason = HVP_EXIT_EXCEPTION;
        e->vector = cx->u.exception.vector;
        e->error_code_valid = cx->u.exception.has_error_code;
        e->error_code = cx->u.exception.error_code;
        e->parameter = e->vector == 14 ? cx->u.exception.cr2 : e->vector == 1 ? st.dr[6] : 0;
        if (cx->insn_len && e->vector != 3 && e->vector != 4) {
            memcpy(e->instruction_bytes, cx->insn_bytes, 16);
            e->instruction_byte_count = cx->insn_len;
        } else
            e->instruction_byte_count = fetch_bytes(sv, &st, e->instruction_bytes);
        return 1;
    }
    case HVP_CPU_EXIT_SHUTDOWN:
        fill_vp(sv, x, &st);
        x->reason = HVP_EXIT_UNRECOVERABLE_EXCEPTION;
        return 1;
    case HVP_CPU_EXIT_WINDOW:
        fill_vp(sv, x, &st);
        x->reason = HVP_EXIT_INTERRUPT_WINDOW;
        x->interrupt_window.deliverable_type =
            cx->u.window.nmi ? HVP_WINDOW_NMI : HVP_WINDOW_INTERRUPT;
        if (cx->u.window.nmi)
            sv->notif.nmi = 0;
        else
            sv->notif.interrupt = 0;
        /* the CPU drops both requests with one exit: keep the other one */
        if (sv->notif.nmi || sv->notif.interrupt)
            hvp_cpu_request_window(sv->cpu, sv->notif.interrupt, sv->notif.nmi);
        return 1;
    case HVP_CPU_EXIT_INTERNAL:
    default:
        fill_vp(sv, x, &st);
        x->reason = HVP_EXIT_INTERNAL_ERROR;
        x->internal.backend_reason = cx->reason;
        hvp__verr(sv->v, 0, "soft: the CPU stopped: %s", hvp_cpu_error(sv->cpu));
        return 1;
    }
}

/* Runs the instruction at RIP once more with `val` as the answer of its
 * MMIO access or MSR (the hooks give it); anything else it does is queued. */
static int complete_step(struct soft_vcpu *sv, int kind, uint64_t val, bool gp)
{
    sv->ans.kind = kind;
    sv->ans.used = false;
    sv->ans.val = val;
    sv->ans.gp = gp;
    struct hvp_cpu_exit cx;
    int r = 0;
    for (int tries = 0; tries < 16; tries++) {
        r = hvp_cpu_run(sv->cpu, 1, &cx);
        if (r < 0) break;
        if (cx.reason == HVP_CPU_EXIT_KICK && !sv->ans.used) continue;
        if (cx.reason != HVP_CPU_EXIT_BUDGET && cx.reason != HVP_CPU_EXIT_KICK) {
            sv->queued = true; /* the next run reports it */
            sv->queued_exit = cx;
        }
        break;
    }
    sv->ans.kind = 0;
    sv->pending = PEND_NONE;
    return r < 0 ? hvp__verr(sv->v, r, "soft: completion: %s", hvp_cpu_error(sv->cpu)) : 0;
}

/* Completes the pending IN, MSR or CPUID exit with the CPU's own
 * completion (the value in the saved exit). */
static int complete_cpu(struct soft_vcpu *sv)
{
    sv->pending = PEND_NONE;
    int r = hvp_cpu_complete(sv->cpu, &sv->pend_cx);
    return r < 0 ? hvp__verr(sv->v, r, "soft: completion: %s", hvp_cpu_error(sv->cpu)) : 0;
}

static int complete_in(struct soft_vcpu *sv, const void *data)
{
    uint32_t v = 0;
    memcpy(&v, data, sv->pend_size);
    sv->pend_cx.u.io.data = v;
    return complete_cpu(sv);
}

static int complete_msr(struct soft_vcpu *sv, uint64_t value, bool gp)
{
    if (gp) { /* #GP(0) instead of the instruction */
        sv->pending = PEND_NONE;
        struct hvp_cpu_event ev = {
            .pending = true, .type = HVP_CPU_EVENT_EXCEPTION, .vector = 13, .has_error_code = true};
        int r = hvp_cpu_set_event(sv->cpu, &ev);
        return r < 0 ? hvp__verr(sv->v, r, "soft: #GP: %s", hvp_cpu_error(sv->cpu)) : 0;
    }
    sv->pend_cx.u.msr.value = value;
    return complete_cpu(sv);
}

/* What a pending exit becomes when the VMM runs again without completing
 * it: reads give zeros, writes are dropped, CPUID gives the table's
 * answer. */
static int finish_default(struct soft_vcpu *sv)
{
    static const uint8_t zero[8];
    switch (sv->pending) {
    case PEND_IO:
        if (sv->pend_write) {
            sv->pending = PEND_NONE;
            return 0;
        }
        return complete_in(sv, zero);
    case PEND_MMIO: return complete_step(sv, ANS_MMIO, 0, false);
    case PEND_MSR: return complete_msr(sv, 0, false);
    case PEND_CPUID: return complete_cpu(sv); /* the table's answer */
    }
    return 0;
}

static int soft_complete_io(struct hvp_vcpu *v, const void *data, size_t len)
{
    struct soft_vcpu *sv = VCPU(v);
    if (sv->pending != PEND_IO && sv->pending != PEND_MMIO)
        return hvp__verr(v, -EINVAL, "complete I/O: no I/O or MMIO exit is pending");
    size_t need = sv->pend_write ? 0 : sv->pend_size;
    if (len != need)
        return hvp__verr(v, -EINVAL, "complete %s: %zu bytes given, %zu expected",
                         sv->pending == PEND_IO ? "I/O" : "MMIO", len, need);
    pthread_mutex_lock(&sv->run_lock);
    int r = 0;
    if (sv->pending == PEND_IO) {
        if (sv->pend_write)
            sv->pending = PEND_NONE;
        else
            r = complete_in(sv, data);
    } else {
        uint64_t val = 0;
        if (len) memcpy(&val, data, len);
        r = complete_step(sv, ANS_MMIO, val, false);
    }
    pthread_mutex_unlock(&sv->run_lock);
    return r;
}

static int soft_complete_msr(struct hvp_vcpu *v, uint64_t value, bool inject_gp)
{
    struct soft_vcpu *sv = VCPU(v);
    if (sv->pending != PEND_MSR)
        return hvp__verr(v, -EINVAL, "complete MSR: no MSR exit is pending");
    pthread_mutex_lock(&sv->run_lock);
    int r = complete_msr(sv, value, inject_gp);
    pthread_mutex_unlock(&sv->run_lock);
    return r;
}

static int soft_vcpu_cancel(struct hvp_vcpu *v)
{
    struct soft_vcpu *sv = VCPU(v);
    atomic_store(&sv->cancel, 1);
    pthread_mutex_lock(&sv->apic.lock);
    if (!sv->dead) hvp_cpu_kick(sv->cpu);
    pthread_cond_signal(&sv->apic.wake);
    pthread_mutex_unlock(&sv->apic.lock);
    return 0;
}

/* INIT and SIPI (own thread, run_lock held). */
static void take_init_sipi(struct soft_vcpu *sv)
{
    pthread_mutex_lock(&sv->apic.lock);
    bool init = sv->init_pending, sipi = sv->sipi_pending;
    uint8_t vec = sv->sipi_vector;
    sv->init_pending = false;
    if (init) {
        sv->halted = false;
        sv->wait_sipi = !(sv->apic.apic_base & 0x100); /* APs wait for SIPI */
    }
    if (sipi && sv->wait_sipi) {
        sv->wait_sipi = false;
        sv->sipi_pending = false;
    } else
        sipi = false;
    pthread_mutex_unlock(&sv->apic.lock);
    if (init) {
        uint64_t base = sv->apic.apic_base;
        hvp_cpu_reset(sv->cpu, true);
        lapic_reset(&sv->apic, base & 0x100);
        lapic_set_base(&sv->apic, base & ~0x400ull); /* INIT leaves x2APIC mode */
        sync_apic_base(sv);
    }
    if (sipi) { /* real mode at vector << 12 */
        struct hvp_cpu_state st;
        uint64_t off;
        load_state(sv, &st, &off);
        st.seg[1] =
            (struct hvp_cpu_segment){(uint64_t)vec << 12, 0xffff, (uint16_t)(vec << 8), 0x9b};
        st.rip = 0;
        st.tsc = __rdtsc() + off;
        hvp_cpu_set_state(sv->cpu, &st);
    }
}

/* Waits (run_lock not held) while halted or waiting for SIPI. Returns
 * true when the vCPU can run (or must look at a request). */
static void wait_wakeup(struct soft_vcpu *sv)
{
    pthread_mutex_lock(&sv->apic.lock);
    for (;;) {
        if (atomic_load(&sv->cancel) || sv->init_pending) break;
        if (sv->wait_sipi) {
            if (sv->sipi_pending) break;
        } else if (sv->halted) {
            if (sv->nmi_wake || (sv->halt_if && lapic_pending_locked(&sv->apic))) {
                sv->halted = false;
                sv->nmi_wake = false;
                break;
            }
        } else
            break;
        pthread_cond_wait(&sv->apic.wake, &sv->apic.lock);
    }
    pthread_mutex_unlock(&sv->apic.lock);
}

static int soft_vcpu_run(struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct soft_vcpu *sv = VCPU(v);
    pthread_mutex_lock(&sv->run_lock);
    sv->owner = pthread_self();
    int r = 0;
    struct hvp_cpu_state st;
    if (sv->pending != PEND_NONE && (r = finish_default(sv)) < 0) goto out;
    for (;;) {
        apply_memops(sv);
        if (atomic_exchange(&sv->cancel, 0)) {
            memset(x, 0, sizeof(*x));
            fill_vp(sv, x, &st);
            x->reason = HVP_EXIT_CANCELED;
            break;
        }
        if (sv->retired_valid) {
            memset(x, 0, sizeof(*x));
            fill_vp(sv, x, &st);
            x->reason = HVP_EXIT_MEMORY_ACCESS;
            x->flags = HVP_EXIT_F_DECODED | HVP_EXIT_F_RETIRED;
            x->mmio.ctx.access_type = HVP_EMU_ACCESS_WRITE;
            x->mmio.ctx.gpa = sv->retired.addr;
            x->mmio.ctx.gpa_unmapped = view_find(sv, sv->retired.addr) == NULL;
            x->mmio.access = sv->retired;
            x->mmio.access.buf = x->mmio.access.data;
            sv->retired_valid = false; /* nothing left to complete */
            break;
        }
        if (sv->queued) {
            sv->queued = false;
            if (translate(sv, &sv->queued_exit, x)) break;
            continue;
        }
        int eoi = -1;
        for (int i = 0; i < 4 && eoi < 0; i++)
            if (sv->eoi_bits[i]) {
                int b = __builtin_ctzll(sv->eoi_bits[i]);
                sv->eoi_bits[i] &= ~(1ull << b);
                eoi = i * 64 + b;
            }
        if (eoi >= 0) {
            memset(x, 0, sizeof(*x));
            fill_vp(sv, x, &st);
            x->reason = HVP_EXIT_APIC_EOI;
            x->apic_eoi.vector = (uint32_t)eoi;
            break;
        }
        if (sv->init_pending || sv->sipi_pending) take_init_sipi(sv);
        if (sv->halted || sv->wait_sipi) {
            if (sv->halted && sv->halt_if && sv->notif.interrupt) {
                /* The VMM wants to inject: the window is open in HLT. */
                memset(x, 0, sizeof(*x));
                fill_vp(sv, x, &st);
                x->reason = HVP_EXIT_INTERRUPT_WINDOW;
                x->interrupt_window.deliverable_type = HVP_WINDOW_INTERRUPT;
                sv->notif.interrupt = 0;
                hvp_cpu_request_window(sv->cpu, false, sv->notif.nmi);
                sv->halted = false;
                break;
            }
            pthread_mutex_unlock(&sv->run_lock);
            wait_wakeup(sv);
            pthread_mutex_lock(&sv->run_lock);
            continue;
        }
        struct hvp_cpu_exit cx;
        atomic_store(&sv->in_run, true);
        r = hvp_cpu_run(sv->cpu, 0, &cx);
        atomic_store(&sv->in_run, false);
        if (r < 0) {
            hvp__verr(v, r, "soft: run: %s", hvp_cpu_error(sv->cpu));
            break;
        }
        if (sv->hook_err) {
            r = sv->hook_err;
            sv->hook_err = 0;
            hvp__verr(v, r, "I/O handler failed: %s", strerror(-r));
            translate(sv, &cx, x);
            break;
        }
        if (translate(sv, &cx, x)) break;
    }
out:
    pthread_mutex_unlock(&sv->run_lock);
    return r;
}

const struct hvp_backend_ops hvp_soft_ops = {
    .version = HVP_BACKEND_OPS_VERSION,
    .name = "soft",
    .open = soft_open,
    .close = soft_close,
    .get_capability = soft_get_capability,
    .partition_setup = soft_partition_setup,
    .partition_destroy = soft_partition_destroy,
    .property_changed = soft_property_changed,
    .suspend_time = soft_suspend_time,
    .resume_time = soft_resume_time,
    .map = soft_map,
    .unmap = soft_unmap,
    .fetch_dirty = soft_fetch_dirty,
    .sync = soft_sync,
    .vcpu_create = soft_vcpu_create,
    .vcpu_destroy = soft_vcpu_destroy,
    .vcpu_reset = soft_vcpu_reset,
    .vcpu_run = soft_vcpu_run,
    .vcpu_cancel = soft_vcpu_cancel,
    .complete_io = soft_complete_io,
    .complete_msr = soft_complete_msr,
    .get_registers = soft_get_registers,
    .set_registers = soft_set_registers,
    .get_xsave = soft_get_xsave,
    .set_xsave = soft_set_xsave,
    .get_lapic = soft_get_lapic,
    .set_lapic = soft_set_lapic,
    .get_cpuid = soft_get_cpuid,
    .request_interrupt = soft_request_interrupt,
    .set_irq_line = soft_set_irq_line,
};
