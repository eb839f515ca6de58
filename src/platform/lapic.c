/* The local APIC model of the soft backend (see lapic.h). Facts from the
 * Intel SDM vol. 3 ch. 10-11 and reference/pc-machine.md section 5. */
#include "lapic.h"

#include <string.h>
#include <time.h>

uint64_t lapic_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint32_t rd(const struct lapic *l, uint32_t off)
{
    uint32_t v;
    memcpy(&v, l->regs + off, 4);
    return v;
}

static inline void wr(struct lapic *l, uint32_t off, uint32_t v)
{
    memcpy(l->regs + off, &v, 4);
}

/* 256-bit registers (ISR, TMR, IRR): eight words 16 bytes apart. */
static inline bool bit_get(const struct lapic *l, uint32_t base, unsigned v)
{
    return rd(l, base + 16 * (v / 32)) >> (v % 32) & 1;
}

static inline void bit_put(struct lapic *l, uint32_t base, unsigned v, bool on)
{
    uint32_t w = rd(l, base + 16 * (v / 32));
    w = on ? w | 1u << (v % 32) : w & ~(1u << (v % 32));
    wr(l, base + 16 * (v / 32), w);
}

static int highest(const struct lapic *l, uint32_t base)
{
    for (int i = 7; i >= 0; i--) {
        uint32_t w = rd(l, base + 16 * (unsigned)i);
        if (w) return i * 32 + 31 - __builtin_clz(w);
    }
    return -1;
}

static uint32_t apic_id(const struct lapic *l)
{
    return lapic_x2apic(l) ? l->id : rd(l, LAPIC_ID) >> 24;
}

static uint32_t x2_ldr(uint32_t id)
{
    return (id >> 4) << 16 | 1u << (id & 15);
}

static void update_ppr(struct lapic *l)
{
    uint32_t tpr = rd(l, LAPIC_TPR) & 0xff;
    int isr = highest(l, LAPIC_ISR);
    uint32_t isrv = isr < 0 ? 0 : (uint32_t)isr;
    wr(l, LAPIC_PPR, (tpr >> 4) >= (isrv >> 4) ? tpr : (isrv & 0xf0));
}

bool lapic_pending_locked(struct lapic *l)
{
    if (!(l->apic_base & 0x800) || !(rd(l, LAPIC_SVR) & 0x100)) return false;
    int v = highest(l, LAPIC_IRR);
    return v >= 0 && ((uint32_t)v & 0xf0) > (rd(l, LAPIC_PPR) & 0xf0);
}

static void update_intr(struct lapic *l)
{
    l->env.intr(l->env.ctx, lapic_pending_locked(l));
}

/* ---- timer ---- */

static unsigned divider(const struct lapic *l)
{
    uint32_t d = rd(l, LAPIC_TDCR);
    unsigned v = (d & 3) | (d >> 1 & 4);
    return v == 7 ? 1 : 2u << v;
}

static unsigned timer_mode(const struct lapic *l)
{
    return rd(l, LAPIC_LVTT) >> 17 & 3; /* 0 one-shot, 1 periodic, 2 TSC-deadline */
}

static void arm(struct lapic *l, uint64_t deadline)
{
    l->deadline_ns = deadline;
    if (deadline) l->env.timer_armed(l->env.ctx, deadline);
}

/* (Re)loads the count from TMICT. */
static void timer_start(struct lapic *l, uint64_t now)
{
    uint32_t count = rd(l, LAPIC_TMICT);
    if (!count || timer_mode(l) == 2) {
        l->deadline_ns = 0;
        return;
    }
    l->period_ns = (uint64_t)count * divider(l) * (1000000000ull / LAPIC_BUS_HZ);
    /* A periodic timer faster than 50 us would only burn the host. */
    if (timer_mode(l) == 1 && l->period_ns < 50000) l->period_ns = 50000;
    l->start_ns = now;
    arm(l, now + l->period_ns);
}

static uint32_t current_count(const struct lapic *l, uint64_t now)
{
    if (!l->deadline_ns && timer_mode(l) != 1) return 0;
    if (timer_mode(l) == 2 || !l->period_ns) return 0;
    uint64_t el = now > l->start_ns ? now - l->start_ns : 0;
    uint64_t left;
    if (timer_mode(l) == 1)
        left = l->period_ns - el % l->period_ns;
    else
        left = el >= l->period_ns ? 0 : l->period_ns - el;
    return (uint32_t)(left / divider(l) / (1000000000ull / LAPIC_BUS_HZ));
}

static void raise_vector(struct lapic *l, uint8_t vec, bool level)
{
    bit_put(l, LAPIC_IRR, vec, true);
    bit_put(l, LAPIC_TMR, vec, level);
    update_intr(l);
}

uint64_t lapic_timer_poll(struct lapic *l, uint64_t now)
{
    pthread_mutex_lock(&l->lock);
    if (l->deadline_ns && now >= l->deadline_ns) {
        uint32_t lvt = rd(l, LAPIC_LVTT);
        if (!(lvt & 0x10000) && (lvt & 0xff) >= 16) raise_vector(l, lvt & 0xff, false);
        l->fired++;
        if (timer_mode(l) == 1 && l->period_ns) {
            uint64_t n = (now - l->start_ns) / l->period_ns + 1;
            l->deadline_ns = l->start_ns + n * l->period_ns;
        } else {
            l->deadline_ns = 0;
            if (timer_mode(l) == 2) l->tsc_deadline = 0;
        }
    }
    uint64_t d = l->deadline_ns;
    pthread_mutex_unlock(&l->lock);
    return d;
}

void lapic_shift_time(struct lapic *l, uint64_t delta)
{
    pthread_mutex_lock(&l->lock);
    if (l->deadline_ns) {
        l->deadline_ns += delta;
        l->start_ns += delta;
        l->env.timer_armed(l->env.ctx, l->deadline_ns);
    }
    pthread_mutex_unlock(&l->lock);
}

static void set_tsc_deadline(struct lapic *l, uint64_t val, uint64_t tsc_now)
{
    if (timer_mode(l) != 2) return; /* ignored in the other modes */
    l->tsc_deadline = val;
    if (!val) {
        l->deadline_ns = 0;
        return;
    }
    uint64_t now = lapic_now_ns();
    uint64_t ns = 0;
    if (val > tsc_now && l->env.tsc_hz)
        ns = (uint64_t)((unsigned __int128)(val - tsc_now) * 1000000000u / l->env.tsc_hz);
    arm(l, now + ns + 1);
}

/* ---- lifetime ---- */

void lapic_reset(struct lapic *l, bool bsp)
{
    pthread_mutex_lock(&l->lock);
    memset(l->regs, 0, sizeof(l->regs));
    wr(l, LAPIC_ID, l->id << 24);
    wr(l, LAPIC_VER, 0x00050014); /* version 0x14, LVT entries 0..5 */
    wr(l, LAPIC_DFR, 0xffffffff);
    wr(l, LAPIC_SVR, 0xff);
    for (uint32_t o = LAPIC_LVTT; o <= LAPIC_LVTERR; o += 0x10)
        wr(l, o, 0x10000);
    l->apic_base = 0xfee00000ull | 0x800 | (bsp ? 0x100 : 0);
    l->deadline_ns = 0;
    l->tsc_deadline = 0;
    l->period_ns = 0;
    update_intr(l);
    pthread_mutex_unlock(&l->lock);
}

void lapic_init(struct lapic *l, uint32_t id, bool bsp, bool allow_x2apic,
                const struct lapic_env *env)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    l->env = *env;
    l->id = id;
    l->allow_x2apic = allow_x2apic;
    lapic_reset(l, bsp);
}

void lapic_destroy(struct lapic *l)
{
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
}

/* ---- interrupts ---- */

int lapic_ack(struct lapic *l)
{
    pthread_mutex_lock(&l->lock);
    int v = -1;
    if (lapic_pending_locked(l)) {
        v = highest(l, LAPIC_IRR);
        bit_put(l, LAPIC_IRR, (unsigned)v, false);
        bit_put(l, LAPIC_ISR, (unsigned)v, true);
        update_ppr(l);
    }
    update_intr(l);
    pthread_mutex_unlock(&l->lock);
    return v;
}

/* EOI: the highest in-service vector is done; returns it when it was
 * level-triggered (the IOAPIC wants to hear), else -1. */
static int do_eoi(struct lapic *l)
{
    int v = highest(l, LAPIC_ISR);
    if (v < 0) return -1;
    bit_put(l, LAPIC_ISR, (unsigned)v, false);
    bool level = bit_get(l, LAPIC_TMR, (unsigned)v);
    update_ppr(l);
    update_intr(l);
    return level ? v : -1;
}

bool lapic_accept(struct lapic *l, const struct lapic_msg *m)
{
    if (m->mode != DM_FIXED && m->mode != DM_LOWEST) return false;
    pthread_mutex_lock(&l->lock);
    if (m->vector < 16)
        wr(l, LAPIC_ESR, rd(l, LAPIC_ESR) | 0x40); /* received illegal vector */
    else
        raise_vector(l, m->vector, m->level);
    pthread_mutex_unlock(&l->lock);
    return true;
}

bool lapic_match(struct lapic *l, const struct lapic_msg *m)
{
    pthread_mutex_lock(&l->lock);
    bool x2 = lapic_x2apic(l), r;
    uint32_t id = apic_id(l);
    if (!m->logical) {
        r = x2 ? (m->dest == 0xffffffffu || m->dest == id)
               : ((m->dest & 0xff) == 0xff || (m->dest & 0xff) == (id & 0xff));
    } else if (x2) {
        uint32_t ldr = x2_ldr(id);
        r = m->dest == 0xffffffffu || ((m->dest >> 16) == (ldr >> 16) && (m->dest & ldr & 0xffff));
    } else {
        uint32_t mda = m->dest & 0xff, ldr = rd(l, LAPIC_LDR) >> 24;
        if (mda == 0xff)
            r = true;
        else if ((rd(l, LAPIC_DFR) >> 28) == 0xf) /* flat */
            r = (mda & ldr) != 0;
        else /* cluster */
            r = (mda >> 4) == (ldr >> 4) && (mda & ldr & 0xf);
    }
    pthread_mutex_unlock(&l->lock);
    return r;
}

uint8_t lapic_priority(struct lapic *l)
{
    pthread_mutex_lock(&l->lock);
    uint8_t p = (uint8_t)rd(l, LAPIC_TPR);
    pthread_mutex_unlock(&l->lock);
    return p;
}

void lapic_set_tpr(struct lapic *l, uint8_t cr8)
{
    pthread_mutex_lock(&l->lock);
    wr(l, LAPIC_TPR, (uint32_t)(cr8 & 15) << 4);
    update_ppr(l);
    update_intr(l);
    pthread_mutex_unlock(&l->lock);
}

uint8_t lapic_get_tpr(struct lapic *l)
{
    pthread_mutex_lock(&l->lock);
    uint8_t v = (uint8_t)(rd(l, LAPIC_TPR) >> 4 & 15);
    pthread_mutex_unlock(&l->lock);
    return v;
}

/* ---- register access ---- */

static uint32_t read_reg(struct lapic *l, uint32_t off, uint64_t now)
{
    switch (off) {
    case LAPIC_TMCCT: return current_count(l, now);
    case LAPIC_ID: return lapic_x2apic(l) ? l->id : rd(l, LAPIC_ID);
    case LAPIC_LDR: return lapic_x2apic(l) ? x2_ldr(l->id) : rd(l, LAPIC_LDR);
    case LAPIC_ICR: return rd(l, LAPIC_ICR) & ~(1u << 12); /* delivery status: idle */
    default: return rd(l, off);
    }
}

/* After a register write, what remains to do without the lock. */
struct after {
    int eoi;
    bool ipi;
    struct lapic_msg msg;
};

static void msg_from_icr(struct lapic *l, uint32_t lo, uint32_t hi, struct lapic_msg *m)
{
    *m = (struct lapic_msg){.mode = lo >> 8 & 7,
                            .vector = lo & 0xff,
                            .logical = lo >> 11 & 1,
                            .assert = lo >> 14 & 1,
                            .level = lo >> 15 & 1,
                            .shorthand = lo >> 18 & 3,
                            .dest = lapic_x2apic(l) ? hi : hi >> 24};
}

static int write_reg(struct lapic *l, uint32_t off, uint32_t v, uint32_t hi, struct after *a)
{
    uint64_t now = lapic_now_ns();
    bool sw_on = rd(l, LAPIC_SVR) & 0x100;
    switch (off) {
    case LAPIC_ID:
        if (!lapic_x2apic(l)) wr(l, off, v & 0xff000000u);
        break;
    case LAPIC_TPR:
        wr(l, off, v & 0xff);
        update_ppr(l);
        update_intr(l);
        break;
    case LAPIC_EOI: a->eoi = do_eoi(l); break;
    case LAPIC_LDR: wr(l, off, v & 0xff000000u); break;
    case LAPIC_DFR: wr(l, off, v | 0x0fffffffu); break;
    case LAPIC_SVR:
        wr(l, off, v & 0x11ff);
        if (!(v & 0x100)) /* software disable masks every LVT */
            for (uint32_t o = LAPIC_LVTT; o <= LAPIC_LVTERR; o += 0x10)
                wr(l, o, rd(l, o) | 0x10000);
        update_intr(l);
        break;
    case LAPIC_ESR: wr(l, off, 0); break;
    case LAPIC_ICR:
        wr(l, LAPIC_ICR, v & ~(1u << 12));
        if (lapic_x2apic(l)) wr(l, LAPIC_ICR2, hi);
        msg_from_icr(l, v, rd(l, LAPIC_ICR2), &a->msg);
        a->ipi = true;
        break;
    case LAPIC_ICR2: wr(l, off, v & 0xff000000u); break;
    case LAPIC_LVTT: {
        unsigned old = timer_mode(l);
        uint32_t nv = v & (0x70000 | 0xff);
        if (!sw_on) nv |= 0x10000;
        wr(l, off, nv);
        if (timer_mode(l) != old) { /* a mode change stops the timer */
            l->deadline_ns = 0;
            l->tsc_deadline = 0;
            if (old == 2 || timer_mode(l) == 2) wr(l, LAPIC_TMICT, 0);
        }
        break;
    }
    case LAPIC_LVTTHM:
    case LAPIC_LVTPC:
    case LAPIC_LVT0:
    case LAPIC_LVT1:
    case LAPIC_LVTERR:
    case LAPIC_CMCI: wr(l, off, (v & 0x1a7ff) | (sw_on ? 0 : 0x10000)); break;
    case LAPIC_TMICT:
        if (timer_mode(l) == 2) break;
        wr(l, off, v);
        timer_start(l, now);
        break;
    case LAPIC_TDCR: wr(l, off, v & 0xb); break;
    case LAPIC_SELF:
        if (!lapic_x2apic(l)) break;
        a->msg = (struct lapic_msg){.mode = DM_FIXED, .vector = v & 0xff, .shorthand = 1};
        a->ipi = true;
        break;
    default: break; /* read-only or reserved: ignored (xAPIC) */
    }
    return 0;
}

static void finish(struct lapic *l, struct after *a)
{
    if (a->eoi >= 0) l->env.eoi(l->env.ctx, (uint8_t)a->eoi);
    if (a->ipi) l->env.ipi(l->env.ctx, &a->msg);
}

int lapic_mmio_read(struct lapic *l, uint32_t off, unsigned size, uint64_t *val)
{
    pthread_mutex_lock(&l->lock);
    uint32_t v = read_reg(l, off & 0xff0, lapic_now_ns());
    pthread_mutex_unlock(&l->lock);
    unsigned sh = (off & 3) * 8;
    *val = size >= 4 ? v >> sh : (v >> sh) & ((1u << (size * 8)) - 1);
    return 0;
}

int lapic_mmio_write(struct lapic *l, uint32_t off, unsigned size, uint64_t val)
{
    if (off & 0xf) return 0; /* only the aligned dword of a register counts */
    (void)size;
    struct after a = {.eoi = -1};
    pthread_mutex_lock(&l->lock);
    write_reg(l, off & 0xff0, (uint32_t)val, 0, &a);
    pthread_mutex_unlock(&l->lock);
    finish(l, &a);
    return 0;
}

int lapic_msr_read(struct lapic *l, uint32_t index, uint64_t *val)
{
    if (index == 0x6e0) {
        pthread_mutex_lock(&l->lock);
        *val = l->tsc_deadline;
        pthread_mutex_unlock(&l->lock);
        return 0;
    }
    if (!lapic_x2apic(l)) return -1;
    uint32_t off = (index - 0x800) << 4;
    switch (off) {
    case LAPIC_DFR:
    case LAPIC_EOI:
    case LAPIC_ICR2:
    case LAPIC_SELF:
    case LAPIC_APR:
    case LAPIC_RRD: return -1;
    default: break;
    }
    if (off >= LAPIC_PAGE) return -1;
    pthread_mutex_lock(&l->lock);
    uint64_t v = read_reg(l, off, lapic_now_ns());
    if (off == LAPIC_ICR) v |= (uint64_t)rd(l, LAPIC_ICR2) << 32;
    pthread_mutex_unlock(&l->lock);
    *val = v;
    return 0;
}

int lapic_msr_write(struct lapic *l, uint32_t index, uint64_t val)
{
    if (index == 0x6e0) {
        uint64_t tsc = l->env.guest_tsc(l->env.ctx);
        pthread_mutex_lock(&l->lock);
        set_tsc_deadline(l, val, tsc);
        pthread_mutex_unlock(&l->lock);
        return 0;
    }
    if (!lapic_x2apic(l)) return -1;
    uint32_t off = (index - 0x800) << 4;
    switch (off) {
    case LAPIC_ID:
    case LAPIC_VER:
    case LAPIC_PPR:
    case LAPIC_LDR:
    case LAPIC_DFR:
    case LAPIC_ICR2:
    case LAPIC_TMCCT:
    case LAPIC_APR:
    case LAPIC_RRD: return -1;
    default: break;
    }
    if (off >= LAPIC_PAGE || (off >= LAPIC_ISR && off < LAPIC_ESR)) return -1;
    if (off != LAPIC_ICR && val >> 32) return -1;
    struct after a = {.eoi = -1};
    pthread_mutex_lock(&l->lock);
    write_reg(l, off, (uint32_t)val, (uint32_t)(val >> 32), &a);
    pthread_mutex_unlock(&l->lock);
    finish(l, &a);
    return 0;
}

int lapic_set_base(struct lapic *l, uint64_t val)
{
    pthread_mutex_lock(&l->lock);
    uint64_t old = l->apic_base;
    int r = 0;
    if ((val & 0x400) && !l->allow_x2apic)
        r = -1;
    else if ((val & 0xc00) == 0x400) /* EXTD without EN */
        r = -1;
    else if ((old & 0xc00) == 0xc00 && (val & 0xc00) == 0x800) /* x2APIC -> xAPIC */
        r = -1;
    else if (val & ~0xFFFFFFFFFD00ull)
        r = -1;
    if (r == 0) {
        l->apic_base = val;
        if ((val & 0xc00) == 0xc00 && (old & 0xc00) != 0xc00) wr(l, LAPIC_ID, l->id);
        if ((val & 0xc00) == 0x800 && (old & 0xc00) != 0x800) wr(l, LAPIC_ID, l->id << 24);
        update_intr(l);
    }
    pthread_mutex_unlock(&l->lock);
    return r;
}

void lapic_get_page(struct lapic *l, uint8_t *page)
{
    pthread_mutex_lock(&l->lock);
    memcpy(page, l->regs, LAPIC_PAGE);
    uint32_t c = current_count(l, lapic_now_ns());
    memcpy(page + LAPIC_TMCCT, &c, 4);
    pthread_mutex_unlock(&l->lock);
}

void lapic_set_page(struct lapic *l, const uint8_t *page)
{
    pthread_mutex_lock(&l->lock);
    memcpy(l->regs, page, LAPIC_PAGE);
    if (lapic_x2apic(l)) wr(l, LAPIC_ID, l->id);
    update_ppr(l);
    l->deadline_ns = 0;
    timer_start(l, lapic_now_ns());
    update_intr(l);
    pthread_mutex_unlock(&l->lock);
}
