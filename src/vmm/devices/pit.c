/* 8254 PIT at 0x40-0x43 with port B (0x61). Counters are not stepped:
 * each value is computed from guest time (vmm_now_ns) at 1.193182 MHz, so
 * reading them costs nothing and they agree with the PM timer and any
 * other device on the same clock. Channel 0's OUT drives GSI 0: a timer
 * is armed for its next rising edge only, so a stopped or one-shot
 * channel costs no host wakeups. Channel 2's gate is port 0x61 bit 0 and
 * its OUT is bit 5, as the kernel's TSC calibration uses them. */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

#define PIT_HZ  1193182u
#define PIT_GSI 0

enum { RW_LATCH = 0, RW_LSB = 1, RW_MSB = 2, RW_WORD = 3 };

struct channel {
    uint8_t mode, rw, bcd;
    uint32_t count;  /* reload value, 1..65536 (1..10000 in BCD) */
    bool loaded;     /* a count was written since the control word */
    bool null_count; /* status bit 6: count written but not yet in the counter */
    bool gate;
    bool triggered;      /* modes 1 and 5: a gate edge started the count */
    bool running;        /* counting (gate allows, count loaded) */
    uint64_t start_ns;   /* when counting (re)started */
    uint64_t base_ticks; /* ticks counted before start_ns (mode 0/4 gate pauses) */
    uint8_t write_lsb;   /* RW_WORD: the LSB waiting for its MSB */
    bool write_msb_next;
    bool read_msb_next; /* RW_WORD flip-flop for unlatched reads */
    bool count_latched, status_latched;
    uint16_t latch;      /* latched count, as the guest reads it */
    uint8_t latch_reads; /* bytes of the latch still to read */
    bool latch_msb_next;
    uint8_t status;
};

struct vmm_pit {
    struct hvp_vm *vm;
    struct vmm_timer *timer; /* channel 0's next rising edge */
    uint64_t armed_tick;     /* the edge the timer waits for */
    struct channel ch[3];
    uint8_t port61; /* bits 0-3 as written */
};

static uint64_t ns_to_ticks(uint64_t ns)
{
    return (uint64_t)((unsigned __int128)ns * PIT_HZ / 1000000000u);
}

static uint64_t
ticks_to_ns(uint64_t ticks) /* rounded up: the first ns at which ticks have passed */
{
    return (uint64_t)(((unsigned __int128)ticks * 1000000000u + PIT_HZ - 1) / PIT_HZ);
}

static uint64_t elapsed(struct vmm_pit *pit, const struct channel *c)
{
    uint64_t t = c->base_ticks;
    if (c->running) t += ns_to_ticks(vmm_now_ns(pit->vm) - c->start_ns);
    return t;
}

static uint32_t modulus(const struct channel *c)
{
    return c->bcd ? 10000 : 65536;
}

/* The counting element's value as a number 0..modulus-1. */
static uint32_t counter_value(struct vmm_pit *pit, const struct channel *c)
{
    if (!c->loaded) return 0;
    uint64_t t = elapsed(pit, c);
    uint32_t n = c->count, m = modulus(c), v;
    switch (c->mode) {
    case 2: v = n - (uint32_t)(t % n); break;
    case 3: v = n - (uint32_t)((2 * t) % n); break; /* counts down by two */
    case 1:
    case 5:
        if (!c->triggered) return n % m;
        /* fall through */
    default: /* 0, 4: wraps around after terminal count */
        v = (uint32_t)((n + m - t % m) % m);
        break;
    }
    return v % m;
}

static bool out_level(struct vmm_pit *pit, const struct channel *c)
{
    if (!c->loaded) return c->mode != 0;
    uint64_t t = elapsed(pit, c);
    uint32_t n = c->count;
    switch (c->mode) {
    case 0: return t >= n;
    case 1: return !c->triggered || t >= n;
    case 2: return !c->running || t % n != n - 1u;
    case 3: return !c->running || t % n < (n + 1) / 2;
    case 4: return t != n;
    case 5: return !c->triggered || t != n;
    default: return true;
    }
}

static uint16_t to_guest(const struct channel *c, uint32_t v)
{
    if (!c->bcd) return (uint16_t)v;
    return (uint16_t)((v / 1000 % 10) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10);
}

static uint32_t from_guest(const struct channel *c, uint16_t v)
{
    if (!c->bcd) return v ? v : 65536;
    uint32_t b = (v >> 12 & 0xF) * 1000 + (v >> 8 & 0xF) * 100 + (v >> 4 & 0xF) * 10 + (v & 0xF);
    return b ? b : 10000;
}

/* Channel 0: the tick of OUT's next rising edge after `now`, 0 if none. */
static uint64_t next_edge(struct vmm_pit *pit, const struct channel *c)
{
    if (!c->loaded || !c->running) return 0;
    uint64_t t = elapsed(pit, c);
    uint32_t n = c->count;
    switch (c->mode) {
    case 0: return t < n ? n : 0;
    case 2:
    case 3: return (t / n + 1) * n; /* OUT goes high again at each reload */
    case 4: return t < n + 1u ? n + 1u : 0;
    default: return 0; /* 1, 5: channel 0's gate never rises */
    }
}

static void arm_channel0(struct vmm_pit *pit)
{
    struct channel *c = &pit->ch[0];
    uint64_t edge = next_edge(pit, c);
    pit->armed_tick = edge;
    if (!edge) {
        vmm_timer_cancel(pit->timer);
        return;
    }
    vmm_timer_arm(pit->timer, c->start_ns + ticks_to_ns(edge - c->base_ticks));
}

static void channel0_fired(void *dev)
{
    struct vmm_pit *pit = dev;
    struct channel *c = &pit->ch[0];
    /* A late timer delivers one edge, not the ones it missed: the
     * kernel's clocksource, not the tick count, keeps the time. */
    if (pit->armed_tick && elapsed(pit, c) >= pit->armed_tick) vmm_irq_pulse(pit->vm, PIT_GSI);
    arm_channel0(pit);
}

static void start(struct vmm_pit *pit, struct channel *c)
{
    c->running = true;
    c->start_ns = vmm_now_ns(pit->vm);
    c->base_ticks = 0;
    c->null_count = false;
}

static void load_count(struct vmm_pit *pit, struct channel *c, uint16_t raw)
{
    c->count = from_guest(c, raw);
    if (c->count == 1 && (c->mode == 2 || c->mode == 3)) c->count = 2; /* illegal; keep it sane */
    c->loaded = true;
    c->null_count = true;
    c->triggered = false;
    c->running = false;
    switch (c->mode) {
    case 1:
    case 5: c->null_count = true; break; /* waits for a gate edge */
    default:
        /* Modes 0 and 4 count only while the gate is high; 2 and 3 start
         * on the gate too. (A new count in 2/3 restarts the period at once
         * rather than at the next reload: Linux reprograms with a control
         * word first anyway.) */
        if (c->gate) start(pit, c);
        break;
    }
}

static void set_gate(struct vmm_pit *pit, struct channel *c, bool gate)
{
    if (gate == c->gate) return;
    c->gate = gate;
    if (!c->loaded) return;
    switch (c->mode) {
    case 0:
    case 4: /* the gate pauses the count */
        if (!gate && c->running) {
            c->base_ticks = elapsed(pit, c);
            c->running = false;
        } else if (gate && !c->running) {
            c->running = true;
            c->start_ns = vmm_now_ns(pit->vm);
            c->null_count = false;
        }
        break;
    case 1:
    case 5: /* a rising edge (re)triggers */
        if (gate) {
            start(pit, c);
            c->triggered = true;
        }
        break;
    default: /* 2, 3: low stops (OUT high), rising edge reloads */
        if (gate)
            start(pit, c);
        else
            c->running = false;
        break;
    }
}

static void latch_count(struct vmm_pit *pit, struct channel *c)
{
    if (c->count_latched) return; /* a second latch before reading is ignored */
    c->count_latched = true;
    c->latch = to_guest(c, counter_value(pit, c));
    c->latch_reads = c->rw == RW_WORD ? 2 : 1;
    c->latch_msb_next = c->rw == RW_MSB;
}

static void latch_status(struct vmm_pit *pit, struct channel *c)
{
    if (c->status_latched) return;
    c->status_latched = true;
    c->status = (uint8_t)((out_level(pit, c) ? 0x80 : 0) | (c->null_count ? 0x40 : 0) | c->rw << 4 |
                          c->mode << 1 | c->bcd);
}

static void control_word(struct vmm_pit *pit, uint8_t v)
{
    unsigned sc = v >> 6, rw = (v >> 4) & 3;
    if (sc == 3) { /* read-back: bits 5/4 low select count/status latching */
        for (unsigned i = 0; i < 3; i++) {
            if (!(v & (2u << i))) continue;
            if (!(v & 0x20)) latch_count(pit, &pit->ch[i]);
            if (!(v & 0x10)) latch_status(pit, &pit->ch[i]);
        }
        return;
    }
    struct channel *c = &pit->ch[sc];
    if (rw == RW_LATCH) {
        latch_count(pit, c);
        return;
    }
    unsigned mode = (v >> 1) & 7;
    if (mode > 5) mode -= 4; /* 6 and 7 are 2 and 3 */
    c->mode = (uint8_t)mode;
    c->rw = (uint8_t)rw;
    c->bcd = v & 1;
    c->loaded = c->running = c->triggered = false;
    c->null_count = true;
    c->write_msb_next = c->read_msb_next = false;
    c->count_latched = false;
    if (sc == 0) arm_channel0(pit);
}

static void counter_write(struct vmm_pit *pit, unsigned i, uint8_t v)
{
    struct channel *c = &pit->ch[i];
    switch (c->rw) {
    case RW_LSB: load_count(pit, c, v); break;
    case RW_MSB: load_count(pit, c, (uint16_t)(v << 8)); break;
    default:
        if (!c->write_msb_next) {
            c->write_lsb = v;
            c->write_msb_next = true;
            /* Mode 0: writing the first byte stops the count. */
            if (c->mode == 0 && c->loaded) {
                c->base_ticks = elapsed(pit, c);
                c->running = false;
                c->loaded = false;
            }
        } else {
            c->write_msb_next = false;
            load_count(pit, c, (uint16_t)(c->write_lsb | v << 8));
        }
        break;
    }
    if (i == 0) arm_channel0(pit);
}

static uint8_t counter_read(struct vmm_pit *pit, unsigned i)
{
    struct channel *c = &pit->ch[i];
    if (c->status_latched) {
        c->status_latched = false;
        return c->status;
    }
    if (c->count_latched) {
        uint8_t b = c->latch_msb_next ? (uint8_t)(c->latch >> 8) : (uint8_t)c->latch;
        c->latch_msb_next = !c->latch_msb_next;
        if (!--c->latch_reads) c->count_latched = false;
        return b;
    }
    uint16_t v = to_guest(c, counter_value(pit, c));
    switch (c->rw) {
    case RW_LSB: return (uint8_t)v;
    case RW_MSB: return (uint8_t)(v >> 8);
    default:
        c->read_msb_next = !c->read_msb_next;
        return c->read_msb_next ? (uint8_t)v : (uint8_t)(v >> 8);
    }
}

static uint64_t pit_read(void *dev, uint64_t offset, unsigned size)
{
    (void)size;
    if (offset == 3) return 0xFF; /* the control word is write-only */
    return counter_read(dev, (unsigned)offset);
}

static void pit_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    (void)size;
    if (offset == 3)
        control_word(dev, (uint8_t)value);
    else
        counter_write(dev, (unsigned)offset, (uint8_t)value);
}

static uint64_t port61_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_pit *pit = dev;
    (void)offset;
    (void)size;
    /* Bit 4 toggles with the DRAM refresh, every 15.085 us. */
    bool refresh = (vmm_now_ns(pit->vm) / 15085) & 1;
    return (uint8_t)((pit->port61 & 0x0F) | (refresh ? 0x10 : 0) |
                     (out_level(pit, &pit->ch[2]) ? 0x20 : 0));
}

static void port61_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_pit *pit = dev;
    (void)offset;
    (void)size;
    pit->port61 = (uint8_t)(value & 0x0F); /* gate 2, speaker data, parity/IOCHK enables */
    set_gate(pit, &pit->ch[2], value & 1);
}

static const struct vmm_io_ops pit_ops = {pit_read, pit_write};
static const struct vmm_io_ops port61_ops = {port61_read, port61_write};

struct vmm_pit *vmm_pit_new(struct hvp_vm *vm)
{
    struct vmm_pit *pit = calloc(1, sizeof *pit);
    if (!pit) return NULL;
    pit->vm = vm;
    for (unsigned i = 0; i < 3; i++)
        pit->ch[i] = (struct channel){.rw = RW_WORD, .gate = i != 2};
    pit->timer = vmm_timer_new(vm, channel0_fired, pit);
    if (!pit->timer) goto fail;
    if (vmm_bus_claim(vm, VMM_PIO, 0x40, 4, &pit_ops, pit, "pit") < 0) goto fail_timer;
    if (vmm_bus_claim(vm, VMM_PIO, 0x61, 1, &port61_ops, pit, "port61") < 0) goto fail_pit;
    return pit;
fail_pit:
    vmm_bus_release(vm, VMM_PIO, 0x40);
fail_timer:
    vmm_timer_free(pit->timer);
fail:
    free(pit);
    return NULL;
}

void vmm_pit_free(struct vmm_pit *pit)
{
    if (!pit) return;
    vmm_bus_release(pit->vm, VMM_PIO, 0x40);
    vmm_bus_release(pit->vm, VMM_PIO, 0x61);
    vmm_timer_free(pit->timer);
    free(pit);
}
