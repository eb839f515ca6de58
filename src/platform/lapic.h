/* The local APIC the platform emulates for the soft backend: one per vCPU,
 * xAPIC (the MMIO page) and x2APIC (MSRs 0x800..0x8FF), timer one-shot,
 * periodic and TSC-deadline, IPIs, TPR/PPR arbitration, EOI.
 *
 * The model keeps its registers in the xAPIC page layout (what
 * hvp_vcpu_get/set_lapic exchange) and talks to the backend through
 * struct lapic_env: the INTR line, NMI/INIT/SIPI, level-triggered EOIs,
 * timer deadlines and IPIs (which the backend routes to the other vCPUs).
 * `lock` guards everything; callbacks are called without it except
 * intr() and timer_armed(), which must not take it.
 */
#ifndef HVP_PLATFORM_LAPIC_H
#define HVP_PLATFORM_LAPIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Register offsets in the xAPIC page. */
#define LAPIC_ID     0x020
#define LAPIC_VER    0x030
#define LAPIC_TPR    0x080
#define LAPIC_APR    0x090
#define LAPIC_PPR    0x0A0
#define LAPIC_EOI    0x0B0
#define LAPIC_RRD    0x0C0
#define LAPIC_LDR    0x0D0
#define LAPIC_DFR    0x0E0
#define LAPIC_SVR    0x0F0
#define LAPIC_ISR    0x100
#define LAPIC_TMR    0x180
#define LAPIC_IRR    0x200
#define LAPIC_ESR    0x280
#define LAPIC_CMCI   0x2F0
#define LAPIC_ICR    0x300
#define LAPIC_ICR2   0x310
#define LAPIC_LVTT   0x320
#define LAPIC_LVTTHM 0x330
#define LAPIC_LVTPC  0x340
#define LAPIC_LVT0   0x350
#define LAPIC_LVT1   0x360
#define LAPIC_LVTERR 0x370
#define LAPIC_TMICT  0x380
#define LAPIC_TMCCT  0x390
#define LAPIC_TDCR   0x3E0
#define LAPIC_SELF   0x3F0 /* x2APIC self IPI */

#define LAPIC_PAGE 1024u

/* Delivery modes (ICR, MSI data, hvp_interrupt types map onto them). */
enum {
    DM_FIXED = 0,
    DM_LOWEST = 1,
    DM_SMI = 2,
    DM_NMI = 4,
    DM_INIT = 5,
    DM_SIPI = 6,
    DM_EXTINT = 7
};

/* An interrupt message on the APIC bus. */
struct lapic_msg {
    uint8_t mode; /* DM_* */
    uint8_t vector;
    bool logical;
    bool level;        /* trigger mode: level */
    bool assert;       /* level assert (INIT de-assert is ignored) */
    uint8_t shorthand; /* 0 none, 1 self, 2 all including self, 3 all excluding self */
    uint32_t dest;
};

struct lapic_env {
    void *ctx;
    /* The INTR line: asserted while an interrupt can be accepted (under lock). */
    void (*intr)(void *ctx, bool asserted);
    /* Called without the lock. */
    void (*eoi)(void *ctx, uint8_t vector); /* a level-triggered vector was EOIed */
    void (*ipi)(void *ctx, const struct lapic_msg *m);
    /* A new timer deadline (CLOCK_MONOTONIC ns); called under lock. */
    void (*timer_armed)(void *ctx, uint64_t deadline_ns);
    /* The guest's TSC now (for TSC-deadline), and its rate in Hz. */
    uint64_t (*guest_tsc)(void *ctx);
    uint64_t tsc_hz;
};

struct lapic {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the vCPU waits here while halted */
    struct lapic_env env;
    uint8_t regs[LAPIC_PAGE];
    uint32_t id;        /* the vCPU index */
    uint64_t apic_base; /* IA32_APIC_BASE */
    bool allow_x2apic;
    /* timer */
    uint64_t deadline_ns; /* 0: not armed */
    uint64_t start_ns;    /* when the current count was last loaded */
    uint64_t period_ns;   /* initial count x divider (ns at 1 GHz) */
    uint64_t tsc_deadline;
    uint32_t fired; /* timer interrupts raised (tests, statistics) */
};

/* The bus clock: one tick per nanosecond before the divider, as KVM. */
#define LAPIC_BUS_HZ 1000000000ull

uint64_t lapic_now_ns(void);

void lapic_init(struct lapic *l, uint32_t id, bool bsp, bool allow_x2apic,
                const struct lapic_env *env);
void lapic_destroy(struct lapic *l);
/* Power-on reset (INIT keeps the ID and the base's BSP/enable bits as
 * the caller sets them). Takes the lock. */
void lapic_reset(struct lapic *l, bool bsp);

static inline bool lapic_x2apic(const struct lapic *l)
{
    return (l->apic_base & 0xc00) == 0xc00;
}
static inline bool lapic_xapic(const struct lapic *l)
{
    return (l->apic_base & 0xc00) == 0x800;
}
static inline uint64_t lapic_mmio_base(const struct lapic *l)
{
    return l->apic_base & 0xFFFFFF000ull;
}

/* Guest accesses. Return 0 or -1 for #GP (x2APIC rules). */
int lapic_mmio_read(struct lapic *l, uint32_t off, unsigned size, uint64_t *val);
int lapic_mmio_write(struct lapic *l, uint32_t off, unsigned size, uint64_t val);
int lapic_msr_read(struct lapic *l, uint32_t index, uint64_t *val);
int lapic_msr_write(struct lapic *l, uint32_t index, uint64_t val);
/* IA32_APIC_BASE written: -1 for #GP (x2APIC not offered, bad transition). */
int lapic_set_base(struct lapic *l, uint64_t val);
/* CR8 (TPR bits 7:4). */
void lapic_set_tpr(struct lapic *l, uint8_t cr8);
uint8_t lapic_get_tpr(struct lapic *l);

/* Interrupt acknowledge: the highest deliverable vector moves IRR -> ISR;
 * -1 when there is none. */
int lapic_ack(struct lapic *l);
/* True when an interrupt is deliverable (lock held by the caller). */
bool lapic_pending_locked(struct lapic *l);

/* Accepts a message this APIC is a destination of: fixed/lowest go to
 * IRR (and TMR); the rest is returned to the caller (NMI/INIT/SIPI are the
 * backend's). Returns true when the message was consumed here. */
bool lapic_accept(struct lapic *l, const struct lapic_msg *m);
/* Whether this APIC is a destination of m (not shorthands). */
bool lapic_match(struct lapic *l, const struct lapic_msg *m);
uint8_t lapic_priority(struct lapic *l); /* TPR, for lowest priority */

/* The timer: fires when due (now >= deadline). Returns the next deadline
 * (0 if none). Takes the lock. */
uint64_t lapic_timer_poll(struct lapic *l, uint64_t now_ns);
/* Moves every deadline by delta ns (time resumed). */
void lapic_shift_time(struct lapic *l, uint64_t delta_ns);

/* State page. */
void lapic_get_page(struct lapic *l, uint8_t *page);
void lapic_set_page(struct lapic *l, const uint8_t *page);

#endif
