/* MC146818 CMOS RTC at 0x70/0x71 (0x72/0x73: the upper 128 bytes of
 * NVRAM), IRQ on GSI 8. The clock is the host's UTC time when the VM is
 * created, advancing with guest time (so it stands still while the VM is
 * paused). Register values are computed when read; the update-ended,
 * alarm and periodic flags are worked out from guest time when register
 * C is read, and a timer is armed only while an enabled interrupt can
 * still be raised (IRQF clear). */
#include "vmm/vmm_internal.h"

#include <stdlib.h>
#include <time.h>

#define RTC_GSI 8
#define NS      1000000000ull

enum {
    R_SEC = 0x00,
    R_ASEC = 0x01,
    R_MIN = 0x02,
    R_AMIN = 0x03,
    R_HOUR = 0x04,
    R_AHOUR = 0x05,
    R_WDAY = 0x06,
    R_MDAY = 0x07,
    R_MON = 0x08,
    R_YEAR = 0x09,
    R_A = 0x0A,
    R_B = 0x0B,
    R_C = 0x0C,
    R_D = 0x0D,
    R_CENTURY = 0x32,
};

#define A_UIP    0x80
#define A_DV     0x70
#define A_DV_RUN 0x20 /* 32.768 kHz time base */
#define A_RS     0x0F
#define B_SET    0x80
#define B_PIE    0x40
#define B_AIE    0x20
#define B_UIE    0x10
#define B_DM_BIN 0x04
#define B_24H    0x02
#define C_IRQF   0x80
#define C_PF     0x40
#define C_AF     0x20
#define C_UF     0x10
#define D_VRT    0x80
#define UIP_NS   244000 /* UIP rises 244 us before each update */

struct vmm_rtc {
    struct hvp_vm *vm;
    struct vmm_timer *timer;
    uint8_t index, index_hi;
    uint8_t ram[256];   /* registers A, B, alarms, NVRAM; time fields are computed */
    uint8_t c;          /* register C flags */
    int64_t epoch_base; /* RTC time (ns since 1970) at guest time guest_base */
    uint64_t guest_base;
    uint64_t div_start; /* guest time the divider chain last started (periodic phase) */
    uint64_t last_eval; /* guest time register C flags were brought up to date */
    bool frozen;        /* SET or divider in reset: the clock does not run */
    int64_t frozen_ns;  /* the RTC time while frozen */
    struct tm set_tm;   /* the fields while SET is on (the guest writes them) */
};

static bool bin(const struct vmm_rtc *r)
{
    return r->ram[R_B] & B_DM_BIN;
}

static uint8_t to_reg(const struct vmm_rtc *r, int v)
{
    return bin(r) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
}

static int from_reg(const struct vmm_rtc *r, uint8_t v)
{
    return bin(r) ? v : (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t hour_to_reg(const struct vmm_rtc *r, int h)
{
    if (r->ram[R_B] & B_24H) return to_reg(r, h);
    int h12 = h % 12 ? h % 12 : 12;
    return (uint8_t)(to_reg(r, h12) | (h >= 12 ? 0x80 : 0));
}

static int hour_from_reg(const struct vmm_rtc *r, uint8_t v)
{
    if (r->ram[R_B] & B_24H) return from_reg(r, v);
    int h = from_reg(r, v & 0x7F) % 12;
    return (v & 0x80) ? h + 12 : h;
}

static int64_t rtc_ns(struct vmm_rtc *r)
{
    if (r->frozen) return r->frozen_ns;
    return r->epoch_base + (int64_t)(vmm_now_ns(r->vm) - r->guest_base);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static struct tm tm_of(struct vmm_rtc *r)
{
    time_t t = (time_t)floor_div(rtc_ns(r), NS);
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm;
}

/* Restarts the clock at the time in tm (a whole second), now. */
/* The clock keeps nanoseconds since 1970 in 64 bits: a guest that sets
 * a date outside 1970..2199 gets the nearest end of that range. */
#define MAX_SECS 7258118400ll /* 2200-01-01 */

static void set_clock(struct vmm_rtc *r, struct tm *tm, int64_t subsec)
{
    int64_t secs = (int64_t)timegm(tm);
    if (secs < 0) secs = 0;
    if (secs > MAX_SECS) secs = MAX_SECS;
    int64_t ns = secs * (int64_t)NS + subsec;
    if (r->frozen) {
        r->frozen_ns = ns;
    } else {
        r->epoch_base = ns;
        r->guest_base = vmm_now_ns(r->vm);
    }
}

static bool running(const struct vmm_rtc *r)
{
    return !r->frozen;
}

/* Periodic interrupt period in 32.768 kHz cycles (0: off). */
static uint64_t periodic_cycles(const struct vmm_rtc *r)
{
    unsigned rs = r->ram[R_A] & A_RS;
    if (!rs) return 0;
    return rs <= 2 ? 1ull << (rs + 6) : 1ull << (rs - 1);
}

static uint64_t cycles_at(const struct vmm_rtc *r, uint64_t g)
{
    return (uint64_t)((unsigned __int128)(g - r->div_start) * 32768 / NS);
}

/* Does the second of the day sod match the alarm (0xC0-0xFF: don't care)? */
static bool alarm_matches(const struct vmm_rtc *r, int64_t sod)
{
    int s = (int)(sod % 60), m = (int)(sod / 60 % 60), h = (int)(sod / 3600);
    uint8_t as = r->ram[R_ASEC], am = r->ram[R_AMIN], ah = r->ram[R_AHOUR];
    return ((as & 0xC0) == 0xC0 || from_reg(r, as) == s) &&
           ((am & 0xC0) == 0xC0 || from_reg(r, am) == m) &&
           ((ah & 0xC0) == 0xC0 || hour_from_reg(r, ah) == h);
}

static void update_irq(struct vmm_rtc *r)
{
    uint8_t b = r->ram[R_B];
    if ((r->c & C_PF && b & B_PIE) || (r->c & C_AF && b & B_AIE) || (r->c & C_UF && b & B_UIE))
        r->c |= C_IRQF;
    vmm_irq_set(r->vm, RTC_GSI, r->c & C_IRQF);
}

/* Sets the flags for everything that happened in (last_eval, now]. */
static void catch_up(struct vmm_rtc *r)
{
    uint64_t now = vmm_now_ns(r->vm), last = r->last_eval;
    r->last_eval = now;
    if (!running(r) || now <= last) {
        update_irq(r);
        return;
    }
    int64_t e0 = r->epoch_base + (int64_t)(last - r->guest_base);
    int64_t e1 = r->epoch_base + (int64_t)(now - r->guest_base);
    int64_t s0 = floor_div(e0, NS), s1 = floor_div(e1, NS);
    if (s1 > s0) {
        r->c |= C_UF;
        /* Each update compares the alarm; a day covers every time of day. */
        int64_t first = s1 - s0 > 86400 ? s1 - 86400 : s0 + 1;
        for (int64_t s = first; s <= s1; s++) {
            if (alarm_matches(r, ((s % 86400) + 86400) % 86400)) {
                r->c |= C_AF;
                break;
            }
        }
    }
    uint64_t p = periodic_cycles(r);
    if (p && cycles_at(r, now) / p > cycles_at(r, last) / p) r->c |= C_PF;
    update_irq(r);
}

/* Arms the timer for the next event that can raise the IRQ. */
static void rearm(struct vmm_rtc *r)
{
    uint8_t b = r->ram[R_B];
    if ((r->c & C_IRQF) || !running(r) || !(b & (B_PIE | B_AIE | B_UIE))) {
        vmm_timer_cancel(r->timer);
        return;
    }
    uint64_t now = vmm_now_ns(r->vm), next = UINT64_MAX;
    if (b & (B_AIE | B_UIE)) { /* the next update (alarms are compared there) */
        int64_t e = r->epoch_base + (int64_t)(now - r->guest_base);
        int64_t boundary = (floor_div(e, NS) + 1) * (int64_t)NS;
        next = r->guest_base + (uint64_t)(boundary - r->epoch_base);
    }
    uint64_t p = periodic_cycles(r);
    if ((b & B_PIE) && p) {
        uint64_t c = (cycles_at(r, now) / p + 1) * p;
        uint64_t t = r->div_start + (uint64_t)(((unsigned __int128)c * NS + 32767) / 32768);
        if (t < next) next = t;
    }
    if (next == UINT64_MAX)
        vmm_timer_cancel(r->timer);
    else
        vmm_timer_arm(r->timer, next);
}

static void timer_fired(void *dev)
{
    struct vmm_rtc *r = dev;
    catch_up(r);
    rearm(r);
}

static uint8_t read_reg(struct vmm_rtc *r, unsigned i)
{
    if (i <= R_YEAR || i == R_CENTURY) {
        if (i & 1 && i < R_WDAY) return r->ram[i]; /* alarm registers */
        struct tm tm = (r->ram[R_B] & B_SET) ? r->set_tm : tm_of(r);
        int year = tm.tm_year + 1900;
        switch (i) {
        case R_SEC: return to_reg(r, tm.tm_sec);
        case R_MIN: return to_reg(r, tm.tm_min);
        case R_HOUR: return hour_to_reg(r, tm.tm_hour);
        case R_WDAY: return to_reg(r, tm.tm_wday + 1);
        case R_MDAY: return to_reg(r, tm.tm_mday);
        case R_MON: return to_reg(r, tm.tm_mon + 1);
        case R_YEAR: return to_reg(r, year % 100);
        default: return to_reg(r, year / 100);
        }
    }
    switch (i) {
    case R_A: {
        uint8_t a = r->ram[R_A] & 0x7F;
        if (running(r) && !(r->ram[R_B] & B_SET)) {
            int64_t frac = rtc_ns(r) - floor_div(rtc_ns(r), NS) * (int64_t)NS;
            if (frac >= (int64_t)(NS - UIP_NS)) a |= A_UIP;
        }
        return a;
    }
    case R_C: {
        catch_up(r);
        uint8_t c = r->c;
        r->c = 0; /* reading C clears the flags and the IRQ */
        update_irq(r);
        rearm(r);
        return c;
    }
    case R_D: return D_VRT;
    default: return r->ram[i];
    }
}

static void write_time_field(struct vmm_rtc *r, unsigned i, uint8_t v)
{
    bool set = r->ram[R_B] & B_SET;
    struct tm tm = set ? r->set_tm : tm_of(r);
    int64_t ns = rtc_ns(r), subsec = ns - floor_div(ns, NS) * (int64_t)NS;
    int year = tm.tm_year + 1900;
    switch (i) {
    case R_SEC: tm.tm_sec = from_reg(r, v & 0x7F); break;
    case R_MIN: tm.tm_min = from_reg(r, v); break;
    case R_HOUR: tm.tm_hour = hour_from_reg(r, v); break;
    case R_WDAY: tm.tm_wday = from_reg(r, v) - 1; break; /* derived from the date anyway */
    case R_MDAY: tm.tm_mday = from_reg(r, v); break;
    case R_MON: tm.tm_mon = from_reg(r, v) - 1; break;
    case R_YEAR: year = year / 100 * 100 + from_reg(r, v) % 100; break;
    default: year = from_reg(r, v) * 100 + year % 100; break;
    }
    tm.tm_year = year - 1900;
    if (set)
        r->set_tm = tm; /* takes effect when SET is cleared */
    else
        set_clock(r, &tm, subsec);
}

static void write_reg(struct vmm_rtc *r, unsigned i, uint8_t v)
{
    catch_up(r); /* events so far count against the old settings */
    if (i <= R_YEAR || i == R_CENTURY) {
        if (i & 1 && i < R_WDAY)
            r->ram[i] = v;
        else
            write_time_field(r, i, v);
        return;
    }
    switch (i) {
    case R_A: {
        bool was_reset = (r->ram[R_A] & A_DV) != A_DV_RUN;
        bool reset = (v & A_DV) != A_DV_RUN;
        if (!was_reset && reset && !r->frozen) {
            r->frozen_ns = rtc_ns(r);
            r->frozen = true;
        } else if (was_reset && !reset && !(r->ram[R_B] & B_SET)) {
            /* Leaving reset: the first update comes half a second later. */
            r->epoch_base = floor_div(r->frozen_ns, NS) * (int64_t)NS + (int64_t)NS / 2;
            r->guest_base = r->div_start = vmm_now_ns(r->vm);
            r->frozen = false;
        }
        r->ram[R_A] = v & 0x7F;
        break;
    }
    case R_B: {
        uint8_t old = r->ram[R_B];
        if ((v & B_SET) && !(old & B_SET)) {
            r->set_tm = tm_of(r);
            r->frozen_ns = rtc_ns(r);
            r->frozen = true;
            v &= (uint8_t)~B_UIE; /* SET clears UIE */
        }
        r->ram[R_B] = v;
        if (!(v & B_SET) && (old & B_SET)) {
            r->frozen = (r->ram[R_A] & A_DV) != A_DV_RUN;
            set_clock(r, &r->set_tm, 0);
        }
        update_irq(r);
        break;
    }
    case R_C:
    case R_D: break; /* read-only */
    default: r->ram[i] = v; break;
    }
    rearm(r);
}

static uint64_t rtc_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_rtc *r = dev;
    (void)size;
    switch (offset) {
    case 1: return read_reg(r, r->index);
    case 3: return r->ram[128 + r->index_hi];
    default: return 0xFF; /* the index registers are write-only */
    }
}

static void rtc_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_rtc *r = dev;
    uint8_t v = (uint8_t)value;
    (void)size;
    switch (offset) {
    case 0: r->index = v & 0x7F; break; /* bit 7 masks NMIs: nothing to mask here */
    case 1: write_reg(r, r->index, v); break;
    case 2: r->index_hi = v & 0x7F; break;
    default: r->ram[128 + r->index_hi] = v; break;
    }
}

static const struct vmm_io_ops rtc_ops = {rtc_read, rtc_write};

static void put_word(uint8_t *ram, unsigned lo, uint64_t v, uint64_t max)
{
    if (v > max) v = max;
    ram[lo] = (uint8_t)v;
    ram[lo + 1] = (uint8_t)(v >> 8);
}

struct vmm_rtc *vmm_rtc_new(struct hvp_vm *vm, uint64_t mem_below_4g, uint64_t mem_above_4g)
{
    struct vmm_rtc *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->vm = vm;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->epoch_base = (int64_t)ts.tv_sec * (int64_t)NS + ts.tv_nsec;
    r->guest_base = r->div_start = r->last_eval = vmm_now_ns(vm);
    r->ram[R_A] = A_DV_RUN | 0x06; /* 32.768 kHz, 1024 Hz periodic rate */
    r->ram[R_B] = B_24H;           /* BCD, 24-hour */
    /* What firmware (and the BIOS conventions QEMU follows) stores. */
    const uint64_t mib = 1 << 20;
    put_word(r->ram, 0x15, 640, 640); /* base memory, KiB */
    uint64_t ext = mem_below_4g > mib ? (mem_below_4g - mib) >> 10 : 0;
    put_word(r->ram, 0x17, ext, 0xFFFF); /* extended memory, KiB */
    put_word(r->ram, 0x30, ext, 0xFFFF);
    uint64_t above16 = mem_below_4g > 16 * mib ? (mem_below_4g - 16 * mib) >> 16 : 0;
    put_word(r->ram, 0x34, above16, 0xFFFF); /* above 16 MiB, 64 KiB units */
    uint64_t high = mem_above_4g >> 16;      /* above 4 GiB, 64 KiB units, 3 bytes */
    if (high > 0xFFFFFF) high = 0xFFFFFF;
    r->ram[0x5B] = (uint8_t)high;
    r->ram[0x5C] = (uint8_t)(high >> 8);
    r->ram[0x5D] = (uint8_t)(high >> 16);
    r->timer = vmm_timer_new(vm, timer_fired, r);
    if (!r->timer) goto fail;
    if (vmm_bus_claim(vm, VMM_PIO, 0x70, 4, &rtc_ops, r, "rtc") < 0) goto fail_timer;
    return r;
fail_timer:
    vmm_timer_free(r->timer);
fail:
    free(r);
    return NULL;
}

void vmm_rtc_free(struct vmm_rtc *r)
{
    if (!r) return;
    vmm_bus_release(r->vm, VMM_PIO, 0x70);
    vmm_timer_free(r->timer);
    free(r);
}
