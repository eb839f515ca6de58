/* 8254: the channel 0 tick and the channel 2 calibration paths of Linux. */
#include <criterion/criterion.h>

#include "fake_machine.h"

#define PIT_HZ 1193182ull

static uint64_t ticks_at(uint64_t ns)
{
    return (uint64_t)((unsigned __int128)ns * PIT_HZ / 1000000000u);
}

/* LSB then MSB, in that order. */
static uint16_t read16(struct hvp_vm *vm, unsigned ch)
{
    uint8_t lo = fake_inb(vm, 0x40 + ch);
    uint8_t hi = fake_inb(vm, 0x40 + ch);
    return (uint16_t)(lo | hi << 8);
}

static uint16_t latch_read(struct hvp_vm *vm, unsigned ch)
{
    fake_outb(vm, 0x43, (uint8_t)(ch << 6)); /* counter latch command */
    return read16(vm, ch);
}

Test(pit, mode2_periodic_tick_and_count)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    cr_assert_not_null(pit);
    cr_assert_eq(fake_armed_timers(vm, NULL), 0, "idle PIT: no host wakeups");
    fake_advance(vm, 12345); /* start at an odd moment */
    uint64_t t0 = vm->now_ns;
    const unsigned latch = (PIT_HZ + 125) / 250; /* Linux's LATCH for HZ=250 */
    fake_outb(vm, 0x43, 0x34);                   /* ch0, lobyte/hibyte, mode 2 */
    fake_outb(vm, 0x40, latch & 0xFF);
    fake_outb(vm, 0x40, latch >> 8);
    cr_assert_eq(fake_armed_timers(vm, NULL), 1);
    fake_advance(vm, 1000000000);
    uint64_t expect = ticks_at(vm->now_ns - t0) / latch;
    cr_assert_eq(vm->edges[0], expect, "%u edges in 1 s, want %llu", vm->edges[0],
                 (unsigned long long)expect);
    cr_assert(expect >= 249 && expect <= 250);
    cr_assert_eq(fake_armed_timers(vm, NULL), 1, "one timer, for the next edge only");
    cr_assert(vm->timer_arms <= vm->edges[0] + 3, "no busy re-arming");
    /* The count read back follows guest time. */
    for (unsigned i = 0; i < 5; i++) {
        fake_advance(vm, 777777);
        uint64_t t = ticks_at(vm->now_ns - t0);
        cr_assert_eq(latch_read(vm, 0), latch - t % latch);
    }
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

Test(pit, mode3_square_wave_counts_by_two)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    fake_outb(vm, 0x43, 0x36); /* ch0 mode 3, as firmware programs it */
    fake_outb(vm, 0x40, 0x00);
    fake_outb(vm, 0x40, 0x00); /* 65536: 18.2 Hz */
    fake_advance(vm, 1000000); /* 1 ms = 1193 ticks */
    uint16_t v = latch_read(vm, 0);
    cr_assert_eq(v, (uint16_t)(65536 - 2 * ticks_at(1000000)));
    fake_advance(vm, 1000000000);
    cr_assert(vm->edges[0] >= 18 && vm->edges[0] <= 19, "%u", vm->edges[0]);
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

Test(pit, mode4_and_mode0_one_shots_fire_once)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    /* Linux's oneshot clockevent: 0x38 (mode 4), then the delta. */
    fake_outb(vm, 0x43, 0x38);
    fake_outb(vm, 0x40, 0xE8);
    fake_outb(vm, 0x40, 0x03); /* 1000 ticks = 838 us */
    fake_advance(vm, 830000);
    cr_assert_eq(vm->edges[0], 0);
    fake_advance(vm, 20000);
    cr_assert_eq(vm->edges[0], 1);
    fake_advance(vm, 1000000000);
    cr_assert_eq(vm->edges[0], 1, "one shot only");
    cr_assert_eq(fake_armed_timers(vm, NULL), 0);
    /* Shutdown as i8253 does: mode 0 with count 0 = 65536 ticks, one edge. */
    fake_outb(vm, 0x43, 0x30);
    fake_outb(vm, 0x40, 0);
    fake_outb(vm, 0x40, 0);
    fake_advance(vm, 1000000000);
    cr_assert_eq(vm->edges[0], 2);
    cr_assert_eq(fake_armed_timers(vm, NULL), 0);
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

Test(pit, channel2_calibration_with_gate_and_out2)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    /* pit_calibrate_tsc: gate high, speaker off, mode 0, 50 ms. */
    fake_outb(vm, 0x61, (uint8_t)((fake_inb(vm, 0x61) & ~0x02) | 0x01));
    fake_outb(vm, 0x43, 0xB0);
    const unsigned latch = PIT_HZ / 20;
    fake_outb(vm, 0x42, latch & 0xFF);
    fake_outb(vm, 0x42, latch >> 8);
    uint64_t t0 = vm->now_ns;
    cr_assert_eq(fake_inb(vm, 0x61) & 0x20, 0, "OUT2 low while counting");
    unsigned polls = 0;
    while (!(fake_inb(vm, 0x61) & 0x20)) {
        fake_advance(vm, 100000);
        polls++;
        cr_assert(polls < 1000);
    }
    uint64_t took = vm->now_ns - t0;
    cr_assert(took >= 49900000 && took <= 50100000, "OUT2 rose after %llu ns",
              (unsigned long long)took);
    cr_assert_eq(vm->edges[0], 0, "channel 2 raises no IRQ");

    /* quick_pit_calibrate: mode 0 from 0xFFFF, MSB read through LSB+MSB. */
    fake_outb(vm, 0x43, 0xB0);
    fake_outb(vm, 0x42, 0xFF);
    fake_outb(vm, 0x42, 0xFF);
    t0 = vm->now_ns;
    for (unsigned i = 1; i < 40; i++) {
        fake_advance(vm, 256 * 1000000000ull / PIT_HZ + 1); /* one MSB step */
        (void)fake_inb(vm, 0x42);
        uint8_t msb = fake_inb(vm, 0x42);
        uint64_t t = ticks_at(vm->now_ns - t0);
        cr_assert_eq(msb, (uint8_t)((0xFFFF - t) >> 8));
    }
    /* The gate pauses mode 0: with bit 0 clear, the count holds. */
    uint16_t before = latch_read(vm, 2);
    fake_outb(vm, 0x61, 0x00);
    fake_advance(vm, 5000000);
    cr_assert_eq(latch_read(vm, 2), before);
    fake_outb(vm, 0x61, 0x01);
    fake_advance(vm, 1000000);
    cr_assert_lt(latch_read(vm, 2), before);
    /* Bits 0-1 read back, speaker data included. */
    fake_outb(vm, 0x61, 0x03);
    cr_assert_eq(fake_inb(vm, 0x61) & 0x03, 0x03);
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

Test(pit, readback_status_and_count)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    fake_outb(vm, 0x43, 0x34);
    cr_assert_eq(fake_armed_timers(vm, NULL), 0);
    /* Read-back of status only, channel 0: null count before a count. */
    fake_outb(vm, 0x43, 0xE2);
    uint8_t st = fake_inb(vm, 0x40);
    cr_assert_eq(st & 0x3F, 0x34, "rw=3, mode 2, binary");
    cr_assert_eq(st & 0x40, 0x40, "null count");
    fake_outb(vm, 0x40, 0x00);
    fake_outb(vm, 0x40, 0x10); /* 4096 */
    fake_advance(vm, 100000);  /* 119 ticks */
    /* Both latched: status first, then the count (LSB, MSB). */
    fake_outb(vm, 0x43, 0xC2);
    st = fake_inb(vm, 0x40);
    cr_assert_eq(st & 0x40, 0, "count loaded");
    cr_assert_eq(st & 0x80, 0x80, "OUT high in mode 2");
    uint16_t v = read16(vm, 0);
    cr_assert_eq(v, 4096 - ticks_at(100000));
    /* A latched count holds while time passes, until it is read. */
    fake_outb(vm, 0x43, 0x00);
    fake_advance(vm, 500000);
    uint16_t l = read16(vm, 0);
    cr_assert_eq(l, v);
    /* LSB-only and MSB-only access modes. */
    fake_outb(vm, 0x43, 0x90); /* ch2, LSB only, mode 0 */
    fake_outb(vm, 0x42, 200);
    fake_outb(vm, 0x61, 0x01);
    cr_assert_leq(fake_inb(vm, 0x42), 200);
    fake_outb(vm, 0x43, 0xA0); /* ch2, MSB only */
    fake_outb(vm, 0x42, 0x20);
    cr_assert_eq(fake_inb(vm, 0x42), 0x20);
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

Test(pit, bcd_counting)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    fake_outb(vm, 0x43, 0x35); /* ch0, mode 2, BCD */
    fake_outb(vm, 0x40, 0x00);
    fake_outb(vm, 0x40, 0x10); /* BCD 1000 */
    fake_advance(vm, 100000);  /* 119 ticks: 881 */
    uint16_t v = latch_read(vm, 0);
    unsigned dec = 1000 - (unsigned)ticks_at(100000);
    cr_assert_eq(v, (dec / 100) << 8 | (dec / 10 % 10) << 4 | dec % 10, "BCD %x", v);
    fake_advance(vm, 1000000000 - 100000);
    cr_assert_eq(vm->edges[0], ticks_at(1000000000) / 1000);
    vmm_pit_free(pit);
    fake_vm_free(vm);
}

static bool out2(struct hvp_vm *vm)
{
    return fake_inb(vm, 0x61) & 0x20;
}

Test(pit, gate_triggered_modes_1_and_5_and_square_wave_out2)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pit *pit = vmm_pit_new(vm);
    /* Mode 1: the count starts on a rising gate; OUT low until it ends. */
    fake_outb(vm, 0x61, 0x00);
    fake_outb(vm, 0x43, 0xB2);
    fake_outb(vm, 0x42, 0xE8);
    fake_outb(vm, 0x42, 0x03); /* 1000 ticks */
    fake_advance(vm, 2000000);
    cr_assert(out2(vm), "no trigger yet: OUT high");
    fake_outb(vm, 0x61, 0x01);
    cr_assert(!out2(vm), "triggered: OUT low");
    fake_advance(vm, 800000);
    cr_assert(!out2(vm));
    fake_advance(vm, 100000);
    cr_assert(out2(vm), "one shot over after 838 us");
    fake_outb(vm, 0x61, 0x00);
    fake_outb(vm, 0x61, 0x01); /* retriggered */
    cr_assert(!out2(vm));
    /* Mode 5: a one-tick low strobe at the end of a gate-triggered count. */
    fake_outb(vm, 0x61, 0x00);
    fake_outb(vm, 0x43, 0xBA);
    fake_outb(vm, 0x42, 0x64);
    fake_outb(vm, 0x42, 0x00); /* 100 ticks */
    fake_outb(vm, 0x61, 0x01);
    uint64_t t0 = vm->now_ns;
    unsigned low = 0;
    for (unsigned i = 0; i < 300; i++) {
        fake_advance(vm, 419); /* half a tick */
        if (!out2(vm)) {
            low++;
            uint64_t t = ticks_at(vm->now_ns - t0);
            cr_assert_eq(t, 100, "low only at terminal count");
        }
    }
    cr_assert(low >= 1 && low <= 3);
    /* Mode 3 on channel 2 (the speaker): OUT is a square wave. */
    fake_outb(vm, 0x43, 0xB6);
    fake_outb(vm, 0x42, 0xA9);
    fake_outb(vm, 0x42, 0x04); /* 1193 ticks: ~1 kHz */
    t0 = vm->now_ns;
    unsigned high = 0, samples = 0;
    for (unsigned i = 0; i < 10000; i++) {
        fake_advance(vm, 1000);
        samples++;
        if (out2(vm)) high++;
    }
    cr_assert(high > samples * 45 / 100 && high < samples * 55 / 100, "duty %u/%u", high, samples);
    /* Gate low stops mode 3 with OUT high. */
    fake_outb(vm, 0x61, 0x00);
    cr_assert(out2(vm));
    vmm_pit_free(pit);
    fake_vm_free(vm);
}
