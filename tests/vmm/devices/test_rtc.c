/* MC146818 RTC: what Linux's mc146818 library and rtc-cmos rely on. */
#include <criterion/criterion.h>
#include <time.h>

#include "fake_machine.h"

static uint8_t cmos(struct hvp_vm *vm, uint8_t reg)
{
    fake_outb(vm, 0x70, reg);
    return fake_inb(vm, 0x71);
}

static void cmos_set(struct hvp_vm *vm, uint8_t reg, uint8_t v)
{
    fake_outb(vm, 0x70, reg);
    fake_outb(vm, 0x71, v);
}

static int bcd(uint8_t v)
{
    return (v >> 4) * 10 + (v & 15);
}

/* Reads the clock as mc146818_get_time does (BCD, 24 h) into seconds. */
static time_t read_clock(struct hvp_vm *vm)
{
    struct tm tm = {0};
    tm.tm_sec = bcd(cmos(vm, 0));
    tm.tm_min = bcd(cmos(vm, 2));
    tm.tm_hour = bcd(cmos(vm, 4));
    tm.tm_mday = bcd(cmos(vm, 7));
    tm.tm_mon = bcd(cmos(vm, 8)) - 1;
    tm.tm_year = bcd(cmos(vm, 0x32)) * 100 + bcd(cmos(vm, 9)) - 1900;
    return timegm(&tm);
}

Test(rtc, time_is_the_hosts_and_follows_guest_time)
{
    struct hvp_vm *vm = fake_vm_new();
    time_t host = time(NULL);
    struct vmm_rtc *r = vmm_rtc_new(vm, 512 << 20, 0);
    cr_assert_not_null(r);
    time_t t = read_clock(vm);
    cr_assert(t >= host && t <= host + 2, "RTC %lld, host %lld", (long long)t, (long long)host);
    cr_assert_eq(cmos(vm, 0x0D), 0x80, "VRT: battery good");
    cr_assert_eq(cmos(vm, 0x0B) & 0x06, 0x02, "BCD, 24-hour");
    struct tm tm;
    gmtime_r(&t, &tm);
    cr_assert_eq(cmos(vm, 6), tm.tm_wday + 1, "weekday 1 = Sunday");
    /* Three hours of guest time later. */
    fake_advance(vm, 3 * 3600 * 1000000000ull);
    time_t t2 = read_clock(vm);
    cr_assert(t2 - t >= 3 * 3600 - 1 && t2 - t <= 3 * 3600 + 1);
    /* Binary and 12-hour formats show the same time. */
    uint8_t h24 = (uint8_t)bcd(cmos(vm, 4));
    cmos_set(vm, 0x0B, 0x04); /* binary, 12-hour */
    uint8_t h12 = cmos(vm, 4);
    unsigned h = h12 & 0x7F;
    cr_assert(h >= 1 && h <= 12);
    cr_assert_eq((h % 12) + ((h12 & 0x80) ? 12 : 0), h24);
    gmtime_r(&t2, &tm);
    cr_assert_eq(cmos(vm, 9), tm.tm_year % 100, "binary year");
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, uip_precedes_each_update)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    unsigned uip = 0, changes = 0;
    uint8_t sec = cmos(vm, 0);
    bool was_uip = false;
    for (unsigned i = 0; i < 25000; i++) { /* 2.5 s in 100 us steps */
        fake_advance(vm, 100000);
        bool u = cmos(vm, 0x0A) & 0x80;
        uint8_t s = cmos(vm, 0);
        if (u) uip++;
        if (s != sec) {
            changes++;
            cr_assert(was_uip, "the seconds changed right after UIP");
            sec = s;
        }
        was_uip = u;
    }
    cr_assert(changes == 2 || changes == 3);
    cr_assert(uip >= changes * 2 && uip <= changes * 3, "UIP for ~244 us per update: %u", uip);
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, update_ended_interrupt_and_register_c)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    cr_assert_eq(fake_armed_timers(vm, NULL), 0, "no interrupts enabled: no host wakeups");
    (void)cmos(vm, 0x0C);
    cmos_set(vm, 0x0B, 0x12); /* UIE */
    cr_assert_eq(fake_armed_timers(vm, NULL), 1);
    cr_assert(!vm->level[8]);
    fake_advance(vm, 1000000000);
    cr_assert(vm->level[8], "IRQ 8 at the update");
    cr_assert_eq(fake_armed_timers(vm, NULL), 0, "IRQF set: nothing more until C is read");
    uint8_t c = cmos(vm, 0x0C);
    cr_assert_eq(c & 0x90, 0x90, "IRQF | UF");
    cr_assert(!vm->level[8]);
    cr_assert_eq(cmos(vm, 0x0C), 0, "reading C cleared it");
    /* Five seconds, handled each time: five interrupts. */
    unsigned n = 0;
    for (unsigned i = 0; i < 50; i++) {
        fake_advance(vm, 100000000);
        if (vm->level[8]) {
            n++;
            (void)cmos(vm, 0x0C);
        }
    }
    cr_assert_eq(n, 5);
    /* Flags are set even with interrupts off (polling), without the IRQ. */
    cmos_set(vm, 0x0B, 0x02);
    (void)cmos(vm, 0x0C);
    fake_advance(vm, 1000000000);
    cr_assert(!vm->level[8]);
    cr_assert_eq(cmos(vm, 0x0C) & 0x90, 0x10, "UF without IRQF");
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, periodic_interrupt_rate)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    cmos_set(vm, 0x0A, 0x26); /* 1024 Hz */
    (void)cmos(vm, 0x0C);
    cmos_set(vm, 0x0B, 0x42); /* PIE */
    unsigned n = 0;
    uint64_t end = vm->now_ns + 1000000000;
    uint64_t next;
    while (fake_armed_timers(vm, &next) && next <= end) {
        fake_advance(vm, next - vm->now_ns);
        cr_assert(vm->level[8]);
        uint8_t c = cmos(vm, 0x0C);
        cr_assert_eq(c & 0xC0, 0xC0, "IRQF | PF");
        n++;
    }
    cr_assert(n >= 1023 && n <= 1025, "%u periodic interrupts in 1 s", n);
    /* Rate 15 is 2 Hz. */
    cmos_set(vm, 0x0A, 0x2F);
    n = 0;
    end = vm->now_ns + 1000000000;
    while (fake_armed_timers(vm, &next) && next <= end) {
        fake_advance(vm, next - vm->now_ns);
        (void)cmos(vm, 0x0C);
        n++;
    }
    cr_assert(n >= 2 && n <= 3, "%u", n);
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, alarm_interrupt)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    cmos_set(vm, 0x0B, 0x06); /* binary, 24 h */
    uint8_t s = cmos(vm, 0), m = cmos(vm, 2);
    unsigned target = (s + 3) % 60;
    cmos_set(vm, 0x01, (uint8_t)target);
    cmos_set(vm, 0x03, 0xFF); /* any minute */
    cmos_set(vm, 0x05, 0xFF); /* any hour */
    (void)cmos(vm, 0x0C);
    cmos_set(vm, 0x0B, 0x26); /* AIE */
    unsigned fired_at = 99;
    for (unsigned i = 0; i < 50 && fired_at == 99; i++) {
        fake_advance(vm, 100000000);
        if (vm->level[8]) {
            cr_assert_eq(cmos(vm, 0x0C) & 0xA0, 0xA0, "IRQF | AF");
            fired_at = cmos(vm, 0);
        }
    }
    cr_assert_eq(fired_at, target, "alarm at second %u (start %u:%u)", fired_at, m, s);
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, set_bit_freezes_and_sets_the_time)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    /* mc146818_set_time: SET, write the fields, clear SET. */
    cmos_set(vm, 0x0B, 0x82);
    cmos_set(vm, 0x00, 0x58);
    cmos_set(vm, 0x02, 0x59);
    cmos_set(vm, 0x04, 0x23);
    cmos_set(vm, 0x07, 0x31);
    cmos_set(vm, 0x08, 0x12);
    cmos_set(vm, 0x09, 0x99);
    cmos_set(vm, 0x32, 0x19);
    fake_advance(vm, 5000000000ull);
    cr_assert_eq(cmos(vm, 0), 0x58, "frozen while SET");
    cr_assert_eq(cmos(vm, 0x0A) & 0x80, 0, "no UIP while SET");
    cmos_set(vm, 0x0B, 0x02);
    struct tm tm = {
        .tm_sec = 58, .tm_min = 59, .tm_hour = 23, .tm_mday = 31, .tm_mon = 11, .tm_year = 99};
    time_t set = timegm(&tm);
    cr_assert_eq(read_clock(vm), set);
    fake_advance(vm, 2000000000ull);
    cr_assert_eq(read_clock(vm), set + 2, "rolls over into 2000");
    cr_assert_eq(cmos(vm, 0x32), 0x20);
    cr_assert_eq(cmos(vm, 0x09), 0x00);
    cr_assert_eq(cmos(vm, 0x08), 0x01);
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, nvram_and_memory_size)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 512ull << 20, 1ull << 32);
    cr_assert_eq(cmos(vm, 0x15) | cmos(vm, 0x16) << 8, 640);
    cr_assert_eq(cmos(vm, 0x17) | cmos(vm, 0x18) << 8, 0xFFFF, "extended KiB, capped");
    cr_assert_eq(cmos(vm, 0x34) | cmos(vm, 0x35) << 8, (512 - 16) * 16,
                 "64 KiB units above 16 MiB");
    cr_assert_eq(cmos(vm, 0x5B) | cmos(vm, 0x5C) << 8 | cmos(vm, 0x5D) << 16, 0x10000,
                 "4 GiB above 4 GiB");
    for (unsigned i = 0x0E; i < 0x80; i++)
        if (i != 0x32) cmos_set(vm, (uint8_t)i, (uint8_t)(i * 7));
    for (unsigned i = 0x0E; i < 0x80; i++)
        if (i != 0x32) cr_assert_eq(cmos(vm, (uint8_t)i), (uint8_t)(i * 7));
    /* NMI mask bit in the index is ignored. */
    fake_outb(vm, 0x70, 0x80 | 0x40);
    cr_assert_eq(fake_inb(vm, 0x71), (uint8_t)(0x40 * 7));
    /* Upper bank at 0x72/0x73. */
    fake_outb(vm, 0x72, 0x10);
    fake_outb(vm, 0x73, 0xAB);
    fake_outb(vm, 0x72, 0x10);
    cr_assert_eq(fake_inb(vm, 0x73), 0xAB);
    cr_assert_eq(cmos(vm, 0x10), (uint8_t)(0x10 * 7), "banks are separate");
    vmm_rtc_free(r);
    fake_vm_free(vm);
}

Test(rtc, hostile_dates_are_clamped_not_fatal)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_rtc *r = vmm_rtc_new(vm, 0, 0);
    /* Year 9999, BCD garbage, binary 255s: the clock must stay sane (UBSan
     * would stop on an overflow here). */
    cmos_set(vm, 0x0B, 0x82);
    cmos_set(vm, 0x32, 0x99);
    cmos_set(vm, 0x09, 0x99);
    cmos_set(vm, 0x08, 0xFF);
    cmos_set(vm, 0x07, 0xFF);
    cmos_set(vm, 0x0B, 0x12); /* clear SET, UIE on */
    fake_advance(vm, 3000000000ull);
    int year = bcd(cmos(vm, 0x32)) * 100 + bcd(cmos(vm, 0x09));
    cr_assert(year >= 2199 && year <= 2200, "clamped to the top: %d", year);
    cr_assert(vm->level[8], "updates go on");
    cmos_set(vm, 0x0B, 0x06);
    cmos_set(vm, 0x32, 0);
    cmos_set(vm, 0x09, 0);
    cr_assert_eq(cmos(vm, 0x32), 19, "before 1970: 1970");
    cr_assert_eq(cmos(vm, 0x09), 70);
    vmm_rtc_free(r);
    fake_vm_free(vm);
}
