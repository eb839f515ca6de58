/* Platform conformance suite: the same cases against every backend.
 *
 * Plain TAP rather than Criterion so that it links statically and runs in
 * the nested-KVM initramfs (nested-kvm.sh). Each case runs in a child
 * process (a crash or hang fails that case only). A backend that does not
 * open here makes each of its cases SKIP with the reason; when no backend
 * opens, every case is a SKIP with the reason (exit 0: TAP carries it).
 *
 *   conformance [-b BACKEND] [CASE...]
 */
#include <hvp/platform.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUEST(n) extern const uint8_t n[], n##_end[]
GUEST(g_io);
GUEST(g_mmio);
GUEST(g_string);
GUEST(g_mmio_modrm);
GUEST(g_cpuid);
GUEST(g_msr);
GUEST(g_int3);
GUEST(g_spin);
GUEST(g_trap);
GUEST(g_timer);
GUEST(g_x2timer);
GUEST(g_ipi);
GUEST(g_dirty);
GUEST(g_ud2);
GUEST(g_apic);
GUEST(g_window);
GUEST(g_long);
GUEST(g64_timer);
GUEST(g64_inject);
GUEST(g64_x2apic);
GUEST(g64_ipi);
GUEST(g64_window);
GUEST(g64_remap);
GUEST(g64_dirty);
GUEST(g64_sipi);
GUEST(g16_ap);
GUEST(g64_exits);

enum { PASS = 0, FAIL = 1, SKIP = 77 };

struct t {
    const char *backend;
    struct hvp *h;
    struct hvp_partition *p;
    struct hvp_vcpu *v;
    uint8_t *ram;
    size_t ram_size;
    char why[512];
};

static int fail(struct t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof(t->why), fmt, ap);
    va_end(ap);
    return FAIL;
}

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) return fail(t, __VA_ARGS__);                                                     \
    } while (0)
/* A call that must succeed; the message has the handle's error. */
#define OK(call, msg)                                                                              \
    do {                                                                                           \
        int r_ = (call);                                                                           \
        if (r_ < 0) return fail(t, "%s: %s (%s)", #call, strerror(-r_), msg);                      \
    } while (0)
#define POK(call) OK(call, hvp_partition_error(t->p))
#define VOK(call) OK(call, hvp_vcpu_error(t->v))

/* ---- set-up helpers ---------------------------------------------------- */

struct props {
    uint32_t apic_mode;
    uint64_t ext_exits;
    uint64_t exc_bitmap;
    const struct hvp_cpuid_result *cpuid;
    size_t ncpuid;
    const struct hvp_msr_action *msr;
    size_t nmsr;
    uint32_t map_flags;
};

/* Partition with 1 MiB of RAM at GPA 0 and vCPU 0. */
static int make(struct t *t, const struct props *pr)
{
    static const struct props none;
    if (!pr) pr = &none;
    OK(hvp_partition_create(t->h, &t->p), hvp_error(t->h));
    uint32_t one = 1;
    POK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &one, 4));
    POK(hvp_partition_set_property(t->p, HVP_PROP_LOCAL_APIC_EMULATION_MODE, &pr->apic_mode, 4));
    if (pr->ext_exits)
        POK(hvp_partition_set_property(t->p, HVP_PROP_EXTENDED_VM_EXITS, &pr->ext_exits, 8));
    if (pr->exc_bitmap)
        POK(hvp_partition_set_property(t->p, HVP_PROP_EXCEPTION_EXIT_BITMAP, &pr->exc_bitmap, 8));
    if (pr->ncpuid)
        POK(hvp_partition_set_property(t->p, HVP_PROP_CPUID_RESULT_LIST, pr->cpuid,
                                       pr->ncpuid * sizeof(*pr->cpuid)));
    if (pr->nmsr)
        POK(hvp_partition_set_property(t->p, HVP_PROP_MSR_ACTION_LIST, pr->msr,
                                       pr->nmsr * sizeof(*pr->msr)));
    POK(hvp_partition_setup(t->p));
    t->ram_size = 1 << 20;
    t->ram = mmap(NULL, t->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t->ram != MAP_FAILED, "mmap: %s", strerror(errno));
    uint32_t fl = pr->map_flags ? pr->map_flags : HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE;
    POK(hvp_map_gpa(t->p, t->ram, 0, t->ram_size, fl));
    POK(hvp_vcpu_create(t->p, 0, &t->v));
    return PASS;
}

static struct hvp_segment seg(uint16_t sel, uint64_t base, uint32_t limit, uint16_t attr)
{
    return (struct hvp_segment){.base = base, .limit = limit, .selector = sel, .attributes = attr};
}

/* Real mode at CS = 0x100 (base 0x1000), IP = 0, with the guest copied there. */
static int real_mode(struct t *t, const uint8_t *code, const uint8_t *end)
{
    memcpy(t->ram + 0x1000, code, end - code);
    uint32_t names[] = {HVP_REG_CS,  HVP_REG_DS,     HVP_REG_ES,  HVP_REG_SS,
                        HVP_REG_RIP, HVP_REG_RFLAGS, HVP_REG_RSP, HVP_REG_IDTR};
    union hvp_reg_value v[8] = {0};
    v[0].segment = seg(0x100, 0x1000, 0xffff, 0x9b);
    v[1].segment = v[2].segment = v[3].segment = seg(0, 0, 0xffff, 0x93);
    v[4].reg64 = 0;
    v[5].reg64 = 2;
    v[6].reg64 = 0x8000;
    v[7].table.limit = 0x3ff;
    VOK(hvp_vcpu_set_registers(t->v, names, 8, v));
    return PASS;
}

/* A backend stopping on something it does not implement yet (soft's CPU:
 * a mode it cannot run so far) makes the case SKIP with its words, never
 * pass. */
static int unsupported(struct t *t, const struct hvp_exit *x)
{
    const char *e = hvp_vcpu_error(t->v);
    if (x->reason == HVP_EXIT_INTERNAL_ERROR &&
        (strstr(e, "so far") || strstr(e, "not implemented") || strstr(e, "not yet"))) {
        snprintf(t->why, sizeof(t->why), "%s cannot run this yet: %s", t->backend, e);
        return SKIP;
    }
    return PASS;
}

static int run(struct t *t, struct hvp_exit *x)
{
    VOK(hvp_vcpu_run(t->v, x));
    return unsupported(t, x);
}

#define RUN(x)                                                                                     \
    do {                                                                                           \
        int r_ = run(t, x);                                                                        \
        if (r_) return r_;                                                                         \
    } while (0)
#define SETUP(call)                                                                                \
    do {                                                                                           \
        if ((call) != PASS) return FAIL;                                                           \
    } while (0)

static int expect_out(struct t *t, struct hvp_exit *x, uint16_t port, uint32_t value, unsigned size)
{
    CHECK(x->reason == HVP_EXIT_IO_PORT, "expected OUT to port 0x%x, got exit %s", port,
          hvp_exit_name(x->reason));
    CHECK(x->flags & HVP_EXIT_F_DECODED, "the kvm I/O exit is not decoded");
    CHECK(x->io.access.is_write && x->io.access.addr == port && x->io.access.size == size,
          "expected OUT port 0x%x size %u, got %s port 0x%llx size %u", port, size,
          x->io.access.is_write ? "OUT" : "IN", (unsigned long long)x->io.access.addr,
          x->io.access.size);
    uint32_t got = 0;
    memcpy(&got, x->io.access.data, size);
    CHECK(got == value, "OUT 0x%x: value 0x%x, expected 0x%x", port, got, value);
    CHECK(x->io.ctx.port == port && x->io.ctx.is_write && x->io.ctx.instruction_byte_count > 0,
          "the WHP-style I/O context (port, bytes) is not filled");
    return PASS;
}
#define EXPECT_OUT(x, port, val, size)                                                             \
    do {                                                                                           \
        if (expect_out(t, x, port, val, size)) return FAIL;                                        \
    } while (0)

static uint64_t reg(struct t *t, uint32_t name)
{
    union hvp_reg_value v = {0};
    hvp_vcpu_get_registers(t->v, &name, 1, &v);
    return v.reg64;
}

/* ---- cases ------------------------------------------------------------- */

static int c_capabilities(struct t *t)
{
    uint32_t present = 0;
    uint64_t feat = 0;
    size_t w = 0;
    OK(hvp_get_capability(t->h, HVP_CAP_HYPERVISOR_PRESENT, &present, 4, &w), hvp_error(t->h));
    CHECK(present == 1 && w == 4, "HypervisorPresent: %u (%zu bytes)", present, w);
    OK(hvp_get_capability(t->h, HVP_CAP_FEATURES, &feat, 8, &w), hvp_error(t->h));
    CHECK(feat & HVP_FEATURE_PARTIAL_UNMAP && feat & HVP_FEATURE_DIRTY_PAGE_TRACKING,
          "Features 0x%llx lack partial unmap or dirty tracking", (unsigned long long)feat);
    CHECK(hvp_get_capability(t->h, 0x7777, &feat, 8, &w) == -ENOENT,
          "an unknown capability is not -ENOENT");
    CHECK(hvp_get_capability(t->h, HVP_CAP_FEATURES, &feat, 4, &w) == -ENOSPC && w == 8,
          "a short buffer is not -ENOSPC with the size needed");
    CHECK(strcmp(hvp_backend_name(t->h), t->backend) == 0, "backend name %s",
          hvp_backend_name(t->h));
    return PASS;
}

static int c_open_errors(struct t *t)
{
    struct hvp *h = (struct hvp *)1;
    char why[256];
    CHECK(hvp_open("bogus", &h, why, sizeof(why)) == -EINVAL && h == NULL,
          "an unknown backend is not -EINVAL");
    CHECK(strstr(why, "bogus"), "the message does not name the backend: %s", why);
    /* soft needs nothing from the host: it always opens, and "auto"
     * gives kvm where /dev/kvm opens, else soft. */
    int r = hvp_open("soft", &h, why, sizeof(why));
    CHECK(r == 0 && h && strcmp(hvp_backend_name(h), "soft") == 0, "soft does not open: %d '%s'", r,
          why);
    hvp_close(h);
    struct hvp *a = NULL;
    r = hvp_open("auto", &a, why, sizeof(why));
    CHECK(r == 0 && a, "auto does not open: %d '%s'", r, why);
    bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
    CHECK(strcmp(hvp_backend_name(a), kvm ? "kvm" : "soft") == 0, "auto chose %s (/dev/kvm %s)",
          hvp_backend_name(a), kvm ? "usable" : "absent");
    hvp_close(a);
    return PASS;
}

static int c_properties(struct t *t)
{
    OK(hvp_partition_create(t->h, &t->p), hvp_error(t->h));
    uint32_t n = 2, got = 0;
    uint64_t big = 0;
    size_t w;
    CHECK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &big, 8) == -EINVAL,
          "ProcessorCount with 8 bytes is not -EINVAL");
    CHECK(strlen(hvp_partition_error(t->p)) > 0, "no message for a bad property size");
    CHECK(hvp_partition_set_property(t->p, 0x4242, &n, 4) == -ENOENT,
          "an unknown property is not -ENOENT");
    uint32_t zero = 0;
    CHECK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &zero, 4) == -EINVAL,
          "ProcessorCount 0 is accepted");
    POK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &n, 4));
    POK(hvp_partition_get_property(t->p, HVP_PROP_PROCESSOR_COUNT, &got, 4, &w));
    CHECK(got == 2 && w == 4, "ProcessorCount reads back %u", got);
    struct hvp_cpuid_result cr[2] = {{.function = 0x40000000, .eax = 1}, {.function = 7}};
    POK(hvp_partition_set_property(t->p, HVP_PROP_CPUID_RESULT_LIST, cr, sizeof(cr)));
    CHECK(hvp_partition_set_property(t->p, HVP_PROP_CPUID_RESULT_LIST, cr, sizeof(cr) - 4) ==
              -EINVAL,
          "a CpuidResultList of a partial entry is accepted");
    struct hvp_cpuid_result back[2];
    CHECK(hvp_partition_get_property(t->p, HVP_PROP_CPUID_RESULT_LIST, back, 10, &w) == -ENOSPC &&
              w == sizeof(cr),
          "a short buffer for CpuidResultList is not -ENOSPC with the size");
    POK(hvp_partition_get_property(t->p, HVP_PROP_CPUID_RESULT_LIST, back, sizeof(back), &w));
    CHECK(memcmp(back, cr, sizeof(cr)) == 0, "CpuidResultList does not read back");
    uint64_t bits;
    uint64_t caps = 0;
    hvp_get_capability(t->h, HVP_CAP_EXTENDED_VM_EXITS, &caps, 8, NULL);
    if (!(caps & HVP_EXTENDED_EXIT_CPUID)) {
        bits = HVP_EXTENDED_EXIT_CPUID;
        CHECK(hvp_partition_set_property(t->p, HVP_PROP_EXTENDED_VM_EXITS, &bits, 8) == -EOPNOTSUPP,
              "CPUID exits are accepted though the capability does not offer them");
    }
    CHECK(hvp_vcpu_create(t->p, 0, &t->v) == -EBUSY, "a vCPU before setup is not -EBUSY");
    POK(hvp_partition_setup(t->p));
    CHECK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &n, 4) == -EBUSY,
          "ProcessorCount after setup is not -EBUSY");
    CHECK(hvp_partition_setup(t->p) == -EBUSY, "a second setup is not -EBUSY");
    CHECK(hvp_vcpu_create(t->p, 2, &t->v) == -EINVAL, "vCPU 2 of 2 is not -EINVAL");
    POK(hvp_vcpu_create(t->p, 1, &t->v));
    struct hvp_vcpu *dup;
    CHECK(hvp_vcpu_create(t->p, 1, &dup) == -EEXIST, "vCPU 1 twice is not -EEXIST");
    uint32_t out[4];
    VOK(hvp_vcpu_get_cpuid(t->v, 0x40000000, 0, out));
    CHECK(out[0] == 1, "CPUID 0x40000000.EAX = 0x%x, the result list said 1", out[0]);
    VOK(hvp_vcpu_get_cpuid(t->v, 1, 0, out));
    CHECK(out[1] >> 24 == 1, "vCPU 1's APIC ID in CPUID.1:EBX is %u", out[1] >> 24);
    return PASS;
}

static int c_memory_map(struct t *t)
{
    SETUP(make(t, NULL));
    uint8_t *m = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap");
    CHECK(hvp_map_gpa(t->p, m, 0x80000, 0x10000, HVP_MAP_READ) == -EEXIST,
          "a map overlapping RAM is not -EEXIST");
    CHECK(strstr(hvp_partition_error(t->p), "overlaps"), "the message: %s",
          hvp_partition_error(t->p));
    CHECK(hvp_map_gpa(t->p, m, 0x200800, 0x1000, HVP_MAP_READ) == -EINVAL,
          "an unaligned GPA is not -EINVAL");
    CHECK(hvp_map_gpa(t->p, m, 0x200000, 0x10000, HVP_MAP_WRITE) == -EINVAL,
          "a map without read is not -EINVAL");
    POK(hvp_map_gpa(t->p, m, 0x200000, 0x10000, HVP_MAP_READ | HVP_MAP_WRITE));
    /* Punch a hole in the middle: both sides stay. */
    POK(hvp_unmap_gpa(t->p, 0x204000, 0x2000));
    m[0x3000] = 0xa5;
    m[0x6000] = 0x5a;
    uint8_t b;
    POK(hvp_read_gpa(t->p, 0x203000, &b, 1));
    CHECK(b == 0xa5, "the part below the hole reads 0x%x", b);
    POK(hvp_read_gpa(t->p, 0x206000, &b, 1));
    CHECK(b == 0x5a, "the part above the hole reads 0x%x", b);
    CHECK(hvp_read_gpa(t->p, 0x204000, &b, 1) == -ERANGE, "the hole reads (not -ERANGE)");
    /* The hole can be mapped again; overlapping its neighbours cannot. */
    CHECK(hvp_map_gpa(t->p, m + 0x4000, 0x204000, 0x3000, HVP_MAP_READ) == -EEXIST,
          "a map larger than the hole is not -EEXIST");
    POK(hvp_map_gpa(t->p, m + 0x4000, 0x204000, 0x2000, HVP_MAP_READ));
    /* Unmap across several ranges and holes. */
    POK(hvp_unmap_gpa(t->p, 0x202000, 0x20000));
    POK(hvp_read_gpa(t->p, 0x201000, &b, 1));
    CHECK(hvp_read_gpa(t->p, 0x202000, &b, 1) == -ERANGE, "0x202000 still mapped");
    void *hva;
    POK(hvp_gpa_to_hva(t->p, 0x1000, 16, &hva));
    CHECK(hva == t->ram + 0x1000, "gpa_to_hva gives %p, not %p", hva, (void *)(t->ram + 0x1000));
    munmap(m, 0x10000);
    return PASS;
}

static int c_io_decoded(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_io, g_io_end));
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x5a, 1);
    CHECK(x.vp.rip == 2 && x.vp.instruction_length == 2,
          "OUT at RIP 0x%llx length %u, expected 2/2", (unsigned long long)x.vp.rip,
          x.vp.instruction_length);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    CHECK(reg(t, HVP_REG_RIP) == 4, "RIP after completing the OUT is 0x%llx, not 4",
          (unsigned long long)reg(t, HVP_REG_RIP));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && !x.io.access.is_write && x.io.access.addr == 0x20,
          "expected IN from 0x20, got %s", hvp_exit_name(x.reason));
    CHECK(hvp_vcpu_complete_io(t->v, NULL, 0) == -EINVAL, "an IN completed without data");
    uint8_t val = 0x42;
    VOK(hvp_vcpu_complete_io(t->v, &val, 1));
    CHECK((reg(t, HVP_REG_RAX) & 0xff) == 0x42, "AL after IN is 0x%llx",
          (unsigned long long)reg(t, HVP_REG_RAX));
    RUN(&x);
    EXPECT_OUT(&x, 0x21, 0x42, 1);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    CHECK(hvp_vcpu_complete_io(t->v, NULL, 0) == -EINVAL, "completing twice is not -EINVAL");
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "expected Halt, got %s", hvp_exit_name(x.reason));
    CHECK(x.vp.rip == 9, "Halt RIP 0x%llx, expected 9 (past the HLT)",
          (unsigned long long)x.vp.rip);
    return PASS;
}

static int c_io_string(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_string, g_string_end));
    memcpy(t->ram + 0x6000, "\x11\x22\x33\x44", 4);
    struct hvp_exit x;
    uint8_t seen[4];
    unsigned got = 0;
    while (got < 4) { /* a backend may split the REP into several exits */
        RUN(&x);
        if (strcmp(t->backend, "soft") == 0 && !got && x.reason != HVP_EXIT_IO_PORT)
            return snprintf(t->why, sizeof(t->why),
                            "the soft CPU has no string I/O (INS/OUTS) yet: %s instead",
                            hvp_exit_name(x.reason)),
                   SKIP;
        CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.is_write && x.io.access.addr == 0x30 &&
                  x.io.ctx.string_op && x.io.ctx.rep_prefix,
              "expected REP OUTSB to 0x30, got %s port 0x%llx string %u rep %u",
              hvp_exit_name(x.reason), (unsigned long long)x.io.access.addr, x.io.ctx.string_op,
              x.io.ctx.rep_prefix);
        CHECK(got + x.io.access.count <= 4, "OUTSB carried %u bytes", x.io.access.count);
        memcpy(seen + got, x.io.access.buf, x.io.access.count);
        got += x.io.access.count;
        VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    }
    CHECK(memcmp(seen, "\x11\x22\x33\x44", 4) == 0, "OUTSB data %02x %02x %02x %02x", seen[0],
          seen[1], seen[2], seen[3]);
    unsigned put = 0;
    while (put < 4) {
        RUN(&x);
        CHECK(x.reason == HVP_EXIT_IO_PORT && !x.io.access.is_write && x.io.ctx.string_op,
              "expected REP INSB, got %s", hvp_exit_name(x.reason));
        uint8_t data[4] = {0xa0, 0xa1, 0xa2, 0xa3};
        CHECK(put + x.io.access.count <= 4, "INSB asked for %u bytes", x.io.access.count);
        VOK(hvp_vcpu_complete_io(t->v, data + put, x.io.access.count));
        put += x.io.access.count;
    }
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0xa2, 1);
    CHECK(memcmp(t->ram + 0x6100, "\xa0\xa1\xa2\xa3", 4) == 0, "INSB stored %02x %02x %02x %02x",
          t->ram[0x6100], t->ram[0x6101], t->ram[0x6102], t->ram[0x6103]);
    return PASS;
}

/* Emulator callbacks over the platform. */
static uint8_t emu_in_value;
static uint32_t emu_out_seen;
static int e_io(void *ctx, struct hvp_emu_io_access *io)
{
    (void)ctx;
    if (io->direction == HVP_EMU_IO_IN)
        io->data = emu_in_value;
    else
        emu_out_seen = io->data | (uint32_t)io->port << 16;
    return 0;
}
static uint8_t emu_mmio_written;
static int e_mem(void *ctx, struct hvp_emu_memory_access *m)
{
    (void)ctx;
    if (m->gpa != 0x4000 || m->access_size != 1)
        return -EFAULT; /* the guests touch one device byte only */
    if (m->direction == HVP_EMU_MEM_READ)
        m->data[0] = 0x6b;
    else
        emu_mmio_written = m->data[0];
    return 0;
}
static int e_get(void *ctx, const uint32_t *n, uint32_t c, union hvp_emu_reg_value *v)
{
    return hvp_vcpu_get_registers(ctx, n, c, (union hvp_reg_value *)v);
}
static int e_set(void *ctx, const uint32_t *n, uint32_t c, const union hvp_emu_reg_value *v)
{
    return hvp_vcpu_set_registers(ctx, n, c, (const union hvp_reg_value *)v);
}
static int e_tr(void *ctx, uint64_t gva, uint32_t fl, enum hvp_emu_translate_result *res,
                uint64_t *gpa)
{
    uint32_t r;
    int e = hvp_vcpu_translate_gva(ctx, gva, fl, &r, gpa);
    *res = r;
    *gpa &= ~0xfffull;
    return e;
}

static int c_io_emulator(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_io, g_io_end));
    static const struct hvp_emulator_callbacks cb = {sizeof(cb), 0,     e_io, e_mem,
                                                     e_get,      e_set, e_tr};
    struct hvp_emulator *emu;
    CHECK(hvp_emulator_create(&cb, &emu) == 0, "emulator create");
    struct hvp_exit x;
    emu_in_value = 0x77;
    int outs = 0;
    for (int i = 0; i < 4; i++) {
        RUN(&x);
        if (x.reason == HVP_EXIT_HALT) break;
        CHECK(x.reason == HVP_EXIT_IO_PORT, "exit %s", hvp_exit_name(x.reason));
        uint32_t st = 0;
        CHECK(hvp_emulator_try_io(emu, t->v, &x.vp, &x.io.ctx, &st, NULL) == 0 &&
                  st & HVP_EMU_STATUS_SUCCESS,
              "the emulator failed on port 0x%x: status 0x%x (%s)", x.io.ctx.port, st,
              hvp_vcpu_error(t->v));
        if (x.io.ctx.is_write) {
            outs++;
            if (outs == 2)
                CHECK(emu_out_seen == (0x21u << 16 | 0x77),
                      "OUT 0x21 saw 0x%x, expected 0x77 (the IN's value)", emu_out_seen & 0xffff);
        }
    }
    hvp_emulator_destroy(emu);
    CHECK(x.reason == HVP_EXIT_HALT && outs == 2, "ended with %s after %d OUTs",
          hvp_exit_name(x.reason), outs);
    CHECK(x.vp.rip == 9, "Halt RIP 0x%llx: the emulator's RIP updates were not kept",
          (unsigned long long)x.vp.rip);
    return PASS;
}

/* MMIO completed WHP's way: the emulator decodes the bytes of the exit and
 * writes the registers; the kvm backend must drop its own completion. */
static int mmio_emulator(struct t *t, const uint8_t *g, const uint8_t *g_end, int want_outs)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g, g_end));
    POK(hvp_unmap_gpa(t->p, 0x4000, 0x1000));
    t->ram[0x6000] = 0x33;
    static const struct hvp_emulator_callbacks cb = {sizeof(cb), 0,     e_io, e_mem,
                                                     e_get,      e_set, e_tr};
    struct hvp_emulator *emu;
    CHECK(hvp_emulator_create(&cb, &emu) == 0, "emulator create");
    struct hvp_exit x;
    int mmio = 0, outs = 0;
    emu_mmio_written = 0;
    for (int i = 0; i < 8; i++) {
        RUN(&x);
        if (x.reason == HVP_EXIT_HALT) break;
        uint32_t st = 0;
        int r;
        if (x.reason == HVP_EXIT_MEMORY_ACCESS && x.flags & HVP_EXIT_F_RETIRED) {
            /* Only the data is left to deliver (kvm's MMIO writes). */
            mmio++;
            struct hvp_emu_memory_access m = {.gpa = x.mmio.access.addr,
                                              .direction = HVP_EMU_MEM_WRITE,
                                              .access_size = x.mmio.access.size};
            memcpy(m.data, x.mmio.access.data, 8);
            r = e_mem(NULL, &m);
            st = r == 0 ? HVP_EMU_STATUS_SUCCESS : 0;
        } else if (x.reason == HVP_EXIT_MEMORY_ACCESS) {
            mmio++;
            r = hvp_emulator_try_mmio(emu, t->v, &x.vp, &x.mmio.ctx, &st, NULL);
        } else if (x.reason == HVP_EXIT_IO_PORT) {
            if (x.io.access.addr == 0x11 && x.io.access.data[0] != 0x6b) {
                hvp_emulator_destroy(emu);
                return fail(t, "OUT 0x11 after the emulated MMIO read: 0x%x, expected 0x6b",
                            x.io.access.data[0]);
            }
            outs++;
            r = hvp_emulator_try_io(emu, t->v, &x.vp, &x.io.ctx, &st, NULL);
        } else
            break;
        if (r != 0 || !(st & HVP_EMU_STATUS_SUCCESS)) {
            hvp_emulator_destroy(emu);
            return fail(t, "the emulator failed on %s: status 0x%x (%s)", hvp_exit_name(x.reason),
                        st, hvp_vcpu_error(t->v));
        }
    }
    hvp_emulator_destroy(emu);
    CHECK(x.reason == HVP_EXIT_HALT && mmio == 2 && outs == want_outs,
          "ended with %s after %d MMIO and %d I/O exits", hvp_exit_name(x.reason), mmio, outs);
    CHECK(emu_mmio_written == 0x77, "the MMIO write delivered 0x%x", emu_mmio_written);
    return PASS;
}

static int c_mmio_emulator(struct t *t)
{
    return mmio_emulator(t, g_mmio, g_mmio_end, 2);
}

static int c_mmio_emulator_modrm(struct t *t)
{
    return mmio_emulator(t, g_mmio_modrm, g_mmio_modrm_end, 1);
}

static int inline_pio(void *ctx, struct hvp_vcpu *v, uint16_t port, uint8_t size, bool w,
                      uint64_t *d)
{
    (void)v, (void)size;
    int *calls = ctx;
    if (port != 0x20 || w) return HVP_IO_UNHANDLED;
    ++*calls;
    *d = 0x99;
    return 0;
}

static int c_io_inline(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_io, g_io_end));
    int calls = 0;
    struct hvp_io_handler h = {.size = sizeof(h), .pio = inline_pio};
    POK(hvp_partition_set_io_handler(t->p, &h, &calls));
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x5a, 1);
    RUN(&x);
    EXPECT_OUT(&x, 0x21, 0x99, 1);
    CHECK(calls == 1, "the inline handler ran %d times", calls);
    return PASS;
}

static int c_mmio(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_mmio, g_mmio_end));
    POK(hvp_unmap_gpa(t->p, 0x4000, 0x1000)); /* partial unmap: the MMIO hole */
    t->ram[0x6000] = 0x33;
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x33, 1); /* RAM next to the hole still works */
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MEMORY_ACCESS, "expected MemoryAccess at 0x4000, got %s",
          hvp_exit_name(x.reason));
    CHECK(x.mmio.ctx.gpa == 0x4000 && x.mmio.ctx.access_type == HVP_EMU_ACCESS_READ &&
              x.mmio.ctx.gpa_unmapped && x.mmio.access.size == 1,
          "MMIO read context: gpa 0x%llx type %u unmapped %u size %u",
          (unsigned long long)x.mmio.ctx.gpa, x.mmio.ctx.access_type, x.mmio.ctx.gpa_unmapped,
          x.mmio.access.size);
    CHECK(x.mmio.ctx.instruction_byte_count >= 3 && x.mmio.ctx.instruction_bytes[0] == 0xa0,
          "MMIO instruction bytes: %u, first 0x%x", x.mmio.ctx.instruction_byte_count,
          x.mmio.ctx.instruction_bytes[0]);
    uint8_t v = 0x5a;
    VOK(hvp_vcpu_complete_io(t->v, &v, 1));
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x5a, 1);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MEMORY_ACCESS && x.mmio.access.is_write &&
              x.mmio.access.data[0] == 0x77 && x.mmio.access.addr == 0x4000,
          "expected an MMIO write of 0x77 at 0x4000, got %s", hvp_exit_name(x.reason));
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "expected Halt, got %s", hvp_exit_name(x.reason));
    return PASS;
}

static int c_cpuid(struct t *t)
{
    struct hvp_cpuid_result cr = {.function = 0x40000000, .eax = 0x12345678, .ebx = 0x68767068};
    struct props pr = {.cpuid = &cr, .ncpuid = 1};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_cpuid, g_cpuid_end));
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x12345678, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x68767068, 4);
    uint64_t caps = 0;
    hvp_get_capability(t->h, HVP_CAP_EXTENDED_VM_EXITS, &caps, 8, NULL);
    if (!(caps & HVP_EXTENDED_EXIT_CPUID)) {
        snprintf(t->why, sizeof(t->why),
                 "CpuidResultList seen by the guest; %s cannot exit on CPUID", t->backend);
        return PASS;
    }
    return PASS;
}

static int c_msr(struct t *t)
{
    uint64_t caps = 0;
    hvp_get_capability(t->h, HVP_CAP_EXTENDED_VM_EXITS, &caps, 8, NULL);
    if (!(caps & HVP_EXTENDED_EXIT_MSR))
        return snprintf(t->why, sizeof(t->why), "%s offers no MSR exits here", t->backend), SKIP;
    struct hvp_msr_action a[2] = {
        {.index = 0x40000100,
         .read_action = HVP_MSR_ACTION_EXIT,
         .write_action = HVP_MSR_ACTION_EXIT},
        {.index = 0x40000101, .read_action = HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO}};
    struct props pr = {.ext_exits = HVP_EXTENDED_EXIT_MSR, .msr = a, .nmsr = 2};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_msr, g_msr_end));
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MSR_ACCESS && !x.msr.is_write && x.msr.index == 0x40000100,
          "expected RDMSR 0x40000100, got %s index 0x%x", hvp_exit_name(x.reason), x.msr.index);
    VOK(hvp_vcpu_complete_msr(t->v, 0xaabbccdd00112233ull, false));
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x00112233, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0xaabbccdd, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MSR_ACCESS && x.msr.is_write && x.msr.rax == 0x11223344 &&
              x.msr.rdx == 0x55667788,
          "expected WRMSR 0x55667788:11223344, got %s 0x%llx:0x%llx", hvp_exit_name(x.reason),
          (unsigned long long)x.msr.rdx, (unsigned long long)x.msr.rax);
    VOK(hvp_vcpu_complete_msr(t->v, 0, false));
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 0, 4); /* IgnoreWriteReadZero: no exit, reads 0 */
    return PASS;
}

/* QEMU's TCG, which runs the nested-KVM tests, does not apply SVM's
 * exception intercepts to INT3 (a software interrupt there); hardware does. */
static bool under_qemu_tcg(void)
{
    uint32_t a = 0x40000000, b, c, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    return b == 0x54474354 && c == 0x43544743 && d == 0x47435447; /* "TCGTCGTCGTCG" */
}

static int c_exception_bp(struct t *t)
{
    struct props pr = {.ext_exits = HVP_EXTENDED_EXIT_EXCEPTION, .exc_bitmap = 1u << 3};
    SETUP(make(t, &pr));
    uint64_t bad = 1u << 6;
    uint64_t caps = 0;
    hvp_get_capability(t->h, HVP_CAP_EXCEPTION_EXIT_BITMAP, &caps, 8, NULL);
    if (!(caps & bad))
        CHECK(hvp_partition_set_property(t->p, HVP_PROP_EXCEPTION_EXIT_BITMAP, &bad, 8) ==
                  -EOPNOTSUPP,
              "an exception bitmap beyond the capability is accepted");
    if (strcmp(t->backend, "kvm") == 0 && under_qemu_tcg())
        return snprintf(t->why, sizeof(t->why),
                        "INT3 under QEMU TCG's SVM never hits the #BP intercept (emulation gap)"),
               SKIP;
    SETUP(real_mode(t, g_int3, g_int3_end));
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_EXCEPTION && x.exception.vector == 3,
          "expected Exception #BP, got %s vector %u", hvp_exit_name(x.reason), x.exception.vector);
    CHECK(x.exception.instruction_bytes[0] == 0xcc, "the exception's instruction byte is 0x%x",
          x.exception.instruction_bytes[0]);
    return PASS;
}

static int c_exception_db(struct t *t)
{
    struct props pr = {.ext_exits = HVP_EXTENDED_EXIT_EXCEPTION, .exc_bitmap = 1u << 1};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_trap, g_trap_end));
    uint32_t n = HVP_REG_RFLAGS;
    union hvp_reg_value fl = {.reg64 = 0x102}; /* TF */
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &fl));
    struct hvp_exit x;
    RUN(&x);
    if (strcmp(t->backend, "soft") == 0 && x.reason == HVP_EXIT_HALT)
        return snprintf(t->why, sizeof(t->why),
                        "the soft CPU does not single-step (RFLAGS.TF) yet: the guest ran on"),
               SKIP;
    CHECK(x.reason == HVP_EXIT_EXCEPTION && x.exception.vector == 1,
          "expected Exception #DB, got %s vector %u", hvp_exit_name(x.reason), x.exception.vector);
    CHECK(x.exception.parameter & 0x4000, "DR6 0x%llx lacks BS (single step)",
          (unsigned long long)x.exception.parameter);
    CHECK(x.vp.rip == 1, "the #DB trap is at RIP 0x%llx, expected 1 (after the NOP)",
          (unsigned long long)x.vp.rip);
    /* Without the bit the guest's own handler gets it: no exit. */
    uint64_t none = 0;
    POK(hvp_partition_set_property(t->p, HVP_PROP_EXCEPTION_EXIT_BITMAP, &none, 8));
    uint32_t names[2] = {HVP_REG_RFLAGS, HVP_REG_RIP};
    union hvp_reg_value v[2] = {{.reg64 = 2}, {.reg64 = 1}};
    VOK(hvp_vcpu_set_registers(t->v, names, 2, v));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "after clearing the bitmap: %s", hvp_exit_name(x.reason));
    return PASS;
}

static int c_triple_fault(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_ud2, g_ud2_end));
    uint32_t n = HVP_REG_IDTR;
    union hvp_reg_value v = {0}; /* limit 0: every vector faults */
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &v));
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_UNRECOVERABLE_EXCEPTION, "expected UnrecoverableException, got %s",
          hvp_exit_name(x.reason));
    return PASS;
}

struct canceler {
    struct hvp_vcpu *v;
    int delay_ms;
};
static void *cancel_thread(void *arg)
{
    struct canceler *c = arg;
    struct timespec ts = {0, c->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    hvp_vcpu_cancel(c->v);
    return NULL;
}

static int c_cancel(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_spin, g_spin_end));
    struct hvp_exit x;
    /* Before the run: the next run returns at once. */
    VOK(hvp_vcpu_cancel(t->v));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_CANCELED, "a cancel before run gave %s", hvp_exit_name(x.reason));
    /* While the guest spins, from another thread, twice. */
    for (int i = 0; i < 2; i++) {
        struct canceler c = {t->v, 100};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, cancel_thread, &c) == 0, "pthread_create");
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int r = hvp_vcpu_run(t->v, &x);
        clock_gettime(CLOCK_MONOTONIC, &b);
        pthread_join(th, NULL);
        if (r == 0 && unsupported(t, &x)) return SKIP;
        CHECK(r == 0 && x.reason == HVP_EXIT_CANCELED, "run %d: %d, exit %s", i, r,
              hvp_exit_name(x.reason));
        double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
        CHECK(ms >= 90, "the run returned after %.0f ms, before the cancel", ms);
        CHECK(x.vp.rip == 0, "the spinning guest's RIP is 0x%llx", (unsigned long long)x.vp.rip);
    }
    return PASS;
}

static int c_dirty(struct t *t)
{
    struct props pr = {.map_flags =
                           HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE | HVP_MAP_TRACK_DIRTY};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_dirty, g_dirty_end));
    uint64_t bm[1];
    POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8)); /* clear what set-up wrote */
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "expected Halt, got %s", hvp_exit_name(x.reason));
    POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8));
    CHECK(bm[0] >> 3 & 1 && bm[0] >> 5 & 1, "dirty bitmap 0x%llx lacks pages 3 and 5",
          (unsigned long long)bm[0]);
    CHECK(!(bm[0] >> 7 & 1) && !(bm[0] >> 9 & 1), "dirty bitmap 0x%llx has untouched pages",
          (unsigned long long)bm[0]);
    POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8));
    CHECK(!(bm[0] >> 3 & 1) && !(bm[0] >> 5 & 1), "the query did not clear: 0x%llx",
          (unsigned long long)bm[0]);
    /* A split keeps the bits of the pieces. */
    t->ram[0x20000] = 1;
    SETUP(real_mode(t, g_dirty, g_dirty_end));
    RUN(&x);
    POK(hvp_unmap_gpa(t->p, 0x4000, 0x1000));
    POK(hvp_query_dirty_bitmap(t->p, 0, 0x4000, bm, 8));
    CHECK(bm[0] >> 3 & 1, "page 3's dirty bit was lost by the split: 0x%llx",
          (unsigned long long)bm[0]);
    CHECK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8) == -ERANGE,
          "a query across the hole is not -ERANGE");
    CHECK(hvp_query_dirty_bitmap(t->p, 0x5000, 0x1000, bm, 0) == -ENOSPC,
          "a 0-byte bitmap accepted");
    return PASS;
}

/* Long mode: identity paging of the first GiB with 2 MiB pages, and 4 KiB
 * pages at GVA 0x40000000 for the translation case. */
static int long_mode(struct t *t, const uint8_t *code, const uint8_t *end)
{
    uint64_t *pml4 = (uint64_t *)(t->ram + 0x10000), *pdpt = (uint64_t *)(t->ram + 0x11000);
    uint64_t *pd = (uint64_t *)(t->ram + 0x12000), *pd2 = (uint64_t *)(t->ram + 0x13000);
    uint64_t *pt = (uint64_t *)(t->ram + 0x14000);
    pml4[0] = 0x11000 | 7;
    pdpt[0] = 0x12000 | 7;
    pdpt[1] = 0x13000 | 7;
    for (int i = 0; i < 512; i++)
        pd[i] = (uint64_t)i << 21 | 0x83;
    pd2[0] = 0x14000 | 7;
    pt[0] = 0x5000 | 7;              /* user, writable */
    pt[1] = 0x6000 | 1;              /* supervisor, read only */
    pt[2] = 0;                       /* not present */
    pt[3] = 0x7000 | 3 | 1ull << 63; /* no execute */
    pt[4] = 0x300000 | 3;            /* GPA not mapped */
    memcpy(t->ram + 0x1000, code, end - code);
    uint32_t names[] = {HVP_REG_CR3, HVP_REG_CR4,    HVP_REG_EFER, HVP_REG_CR0,
                        HVP_REG_CS,  HVP_REG_DS,     HVP_REG_ES,   HVP_REG_SS,
                        HVP_REG_RIP, HVP_REG_RFLAGS, HVP_REG_RSP};
    union hvp_reg_value v[11] = {0};
    v[0].reg64 = 0x10000;
    v[1].reg64 = 0x20;
    v[2].reg64 = 0xd00; /* LME, LMA, NXE */
    v[3].reg64 = 0x80010011;
    v[4].segment = seg(8, 0, 0xffffffff, 0xa09b);
    v[5].segment = v[6].segment = v[7].segment = seg(0x10, 0, 0xffffffff, 0xc093);
    v[8].reg64 = 0x1000;
    v[9].reg64 = 2;
    v[10].reg64 = 0x8000;
    VOK(hvp_vcpu_set_registers(t->v, names, 11, v));
    return PASS;
}

/* ---- 64-bit cases: the platform's LAPIC, injection, SMP ---------------- */

/* Long mode (long_mode() above) plus: the 4th GiB identity-mapped (the
 * LAPIC page), a GDT for IRETQ and an empty IDT at 0xA000. */
static int long_mode64(struct t *t, struct hvp_vcpu *v, const uint8_t *code, const uint8_t *end,
                       uint64_t rip)
{
    struct hvp_vcpu *keep = t->v;
    t->v = v;
    int r = long_mode(t, code, end);
    t->v = keep;
    if (r) return r;
    uint64_t *pdpt = (uint64_t *)(t->ram + 0x11000), *pd3 = (uint64_t *)(t->ram + 0x15000);
    pdpt[3] = 0x15000 | 3;
    for (int i = 0; i < 512; i++)
        pd3[i] = (0xC0000000ull + ((uint64_t)i << 21)) | 0x83;
    uint64_t gdt[3] = {0, 0x00209b0000000000ull, 0x00cf93000000ffffull};
    memcpy(t->ram + 0x9000, gdt, sizeof(gdt));
    uint32_t names[3] = {HVP_REG_GDTR, HVP_REG_IDTR, HVP_REG_RIP};
    union hvp_reg_value val[3] = {0};
    val[0].table.base = 0x9000, val[0].table.limit = sizeof(gdt) - 1;
    val[1].table.base = 0xA000, val[1].table.limit = 0xfff;
    val[2].reg64 = rip;
    r = hvp_vcpu_set_registers(v, names, 3, val);
    if (r < 0) return fail(t, "long mode registers: %s", hvp_vcpu_error(v));
    return PASS;
}

/* A 64-bit interrupt gate: vector -> handler at linear `to`. */
static void gate(struct t *t, unsigned vec, uint64_t to)
{
    uint8_t *g = t->ram + 0xA000 + 16 * vec;
    memset(g, 0, 16);
    uint16_t lo = (uint16_t)to, sel = 8, mid = (uint16_t)(to >> 16);
    uint32_t hi = (uint32_t)(to >> 32);
    memcpy(g, &lo, 2);
    memcpy(g + 2, &sel, 2);
    g[5] = 0x8e;
    memcpy(g + 6, &mid, 2);
    memcpy(g + 8, &hi, 4);
}

static double ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1e3 + (b.tv_nsec - a->tv_nsec) / 1e6;
}

static uint32_t out_val(const struct hvp_exit *x)
{
    uint32_t v = 0;
    memcpy(&v, x->io.access.data, x->io.access.size);
    return v;
}

static int c_apic_timer_modes(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_XAPIC};
    SETUP(make(t, &pr));
    uint32_t id[4];
    VOK(hvp_vcpu_get_cpuid(t->v, 1, 0, id));
    CHECK(id[2] >> 24 & 1, "CPUID.1:ECX lacks TSC-deadline with the platform's APIC");
    SETUP(long_mode64(t, t->v, g64_timer, g64_timer_end, 0x1000));
    gate(t, 0x40, 0x1200);
    gate(t, 0x41, 0x1220);
    gate(t, 0x42, 0x1240);
    struct hvp_exit x;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == 0x13,
          "expected the current-count report, got %s", hvp_exit_name(x.reason));
    uint32_t cc = out_val(&x);
    CHECK(cc > 0 && cc <= 20000000, "current count right after the start: %u", cc);
    RUN(&x);
    double ms = ms_since(&t0);
    EXPECT_OUT(&x, 0x10, 0, 4);
    CHECK(ms >= 20, "the 20 ms one-shot fired after %.3f ms", ms);
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    RUN(&x);
    ms = ms_since(&t1);
    CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == 0x11 && out_val(&x) >= 3,
          "expected 3 periodic ticks on port 0x11, got %s %u", hvp_exit_name(x.reason),
          out_val(&x));
    CHECK(ms >= 0.9, "3 periodic ticks of 300 us took %.3f ms", ms);
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 0, 4); /* TSC-deadline fired; the MSR reads 0 */
    return PASS;
}

/* Collects exits until OUT `port` and an EOI exit for `vec` were both
 * seen (the EOI exit may come before or after the handler's OUT). */
static int out_and_eoi(struct t *t, uint16_t port, uint32_t vec)
{
    bool out = false, eoi = false, kvm = strcmp(t->backend, "kvm") == 0;
    struct hvp_exit x;
    for (int i = 0; i < 6 && !(out && (eoi || kvm)); i++) {
        RUN(&x);
        if (x.reason == HVP_EXIT_APIC_EOI) {
            CHECK(x.apic_eoi.vector == vec, "EOI exit for vector 0x%x, expected 0x%x",
                  x.apic_eoi.vector, vec);
            eoi = true;
        } else if (x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == port) {
            out = true;
            VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
        } else
            return fail(t, "waiting for OUT 0x%x and EOI 0x%x: %s", port, vec,
                        hvp_exit_name(x.reason));
    }
    /* kvm's in-kernel irqchip keeps level EOIs to itself (no split
     * irqchip yet, see platform.h): only the handler's OUT is required. */
    bool want_eoi = strcmp(t->backend, "kvm") != 0;
    CHECK(out && (eoi || !want_eoi), "OUT 0x%x seen: %d, EOI exit seen: %d", port, out, eoi);
    return PASS;
}

static int c_apic_inject(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_XAPIC};
    SETUP(make(t, &pr));
    SETUP(long_mode64(t, t->v, g64_inject, g64_inject_end, 0x1000));
    gate(t, 0x50, 0x1200);
    gate(t, 0x60, 0x1220);
    gate(t, 0x70, 0x1240);
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, x.io.access.data[0], 1);
    struct hvp_interrupt lvl = {.type = HVP_INTERRUPT_FIXED, .level_triggered = 1, .vector = 0x50};
    POK(hvp_request_interrupt(t->p, &lvl));
    if (out_and_eoi(t, 0x11, 0x50)) return FAIL;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == 0x12, "expected OUT 0x12, got %s",
          hvp_exit_name(x.reason));
    struct hvp_interrupt a = {.type = HVP_INTERRUPT_FIXED, .vector = 0x60};
    struct hvp_interrupt b = {.type = HVP_INTERRUPT_FIXED, .vector = 0x70};
    POK(hvp_request_interrupt(t->p, &a));
    POK(hvp_request_interrupt(t->p, &b));
    RUN(&x);
    EXPECT_OUT(&x, 0x13, 0, 4); /* 0x70 came, 0x60 waits below TPR 0x60 */
    RUN(&x);
    EXPECT_OUT(&x, 0x15, 0x60, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x14, 1, 4); /* CR8 = 0: 0x60 delivered */
    uint8_t page[HVP_LAPIC_STATE_SIZE];
    VOK(hvp_vcpu_get_lapic(t->v, page, sizeof(page), NULL));
    uint32_t isr2;
    memcpy(&isr2, page + 0x100 + 16 * 2, 4);
    CHECK(isr2 == 0, "ISR still holds 0x%x after the EOIs", isr2);
    return PASS;
}

static int c_x2apic_msrs(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_X2APIC};
    SETUP(make(t, &pr));
    SETUP(long_mode64(t, t->v, g64_x2apic, g64_x2apic_end, 0x1000));
    gate(t, 0x45, 0x1200);
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0, 4); /* x2APIC ID of vCPU 0 */
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && (out_val(&x) & 0xff) >= 0x10, "version register 0x%x",
          out_val(&x));
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 1, 4); /* LDR: cluster 0, bit 0 */
    RUN(&x);
    EXPECT_OUT(&x, 0x13, 0x30, 4); /* PPR follows TPR */
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == 0x14,
          "the self IPI never arrived: %s", hvp_exit_name(x.reason));
    /* Without the platform's x2APIC the guest could not enable it. */
    uint32_t n = HVP_REG_APIC_BASE;
    union hvp_reg_value ab;
    VOK(hvp_vcpu_get_registers(t->v, &n, 1, &ab));
    CHECK((ab.reg64 & 0xc00) == 0xc00, "ApicBase 0x%llx", (unsigned long long)ab.reg64);
    return PASS;
}

struct ap64_run {
    struct hvp_vcpu *v;
    struct hvp_exit x;
    int r;
};
/* Runs v on its own thread until an exit other than a completed OUT 0x12. */
static void *ap64_thread(void *arg)
{
    struct ap64_run *a = arg;
    for (;;) {
        a->r = hvp_vcpu_run(a->v, &a->x);
        if (a->r < 0 || a->x.reason != HVP_EXIT_IO_PORT || a->x.io.access.addr != 0x12) break;
        hvp_vcpu_complete_io(a->v, NULL, 0);
    }
    return NULL;
}

static int two_vcpus(struct t *t, uint32_t mode, struct hvp_vcpu **ap)
{
    OK(hvp_partition_create(t->h, &t->p), hvp_error(t->h));
    uint32_t two = 2;
    POK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &two, 4));
    POK(hvp_partition_set_property(t->p, HVP_PROP_LOCAL_APIC_EMULATION_MODE, &mode, 4));
    POK(hvp_partition_setup(t->p));
    t->ram_size = 1 << 20;
    t->ram = mmap(NULL, t->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t->ram != MAP_FAILED, "mmap");
    POK(hvp_map_gpa(t->p, t->ram, 0, t->ram_size, HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE));
    POK(hvp_vcpu_create(t->p, 0, &t->v));
    POK(hvp_vcpu_create(t->p, 1, ap));
    return PASS;
}

static int c_apic_ipi64(struct t *t)
{
    struct hvp_vcpu *ap;
    SETUP(two_vcpus(t, HVP_APIC_MODE_XAPIC, &ap));
    SETUP(long_mode64(t, t->v, g64_ipi, g64_ipi_end, 0x1000));
    SETUP(long_mode64(t, ap, g64_ipi, g64_ipi_end, 0x1080));
    gate(t, 0x43, 0x1200);
    gate(t, 0x44, 0x1220);
    gate(t, 2, 0x1240);
    struct hvp_vcpu *bsp = t->v;
    t->v = ap;
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 0, 1); /* vCPU 1 ready */
    VOK(hvp_vcpu_complete_io(ap, NULL, 0));
    struct ap64_run a = {.v = ap};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ap64_thread, &a) == 0, "pthread_create");
    t->v = bsp;
    int r = run(t, &x);
    int bsp_ok = r ? r : expect_out(t, &x, 0x10, x.io.access.data[0], 1);
    for (int i = 0; i < 200 && !a.r && a.x.reason == 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    hvp_vcpu_cancel(ap); /* in case it is stuck */
    pthread_join(th, NULL);
    if (bsp_ok) return bsp_ok;
    t->v = ap;
    CHECK(a.r == 0, "vCPU 1's run: %s", hvp_vcpu_error(ap));
    CHECK(a.x.reason != HVP_EXIT_CANCELED, "vCPU 1 never got the IPI or its own NMI");
    return expect_out(t, &a.x, 0x11, a.x.io.access.data[0], 1);
}

static int c_init_sipi(struct t *t)
{
    struct hvp_vcpu *ap;
    SETUP(two_vcpus(t, HVP_APIC_MODE_XAPIC, &ap));
    SETUP(long_mode64(t, t->v, g64_sipi, g64_sipi_end, 0x1000));
    SETUP(long_mode64(t, ap, g64_sipi, g64_sipi_end, 0x1080));
    memcpy(t->ram + 0x8000, g16_ap, g16_ap_end - g16_ap);
    struct ap64_run a = {.v = ap};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ap64_thread, &a) == 0, "pthread_create");
    struct timespec ts = {0, 20000000}; /* let vCPU 1 reach its HLT */
    nanosleep(&ts, NULL);
    struct hvp_exit x;
    int r = run(t, &x);
    int bsp_ok = r ? r : expect_out(t, &x, 0x10, x.io.access.data[0], 1);
    for (int i = 0; i < 200 && !a.r && a.x.reason == 0; i++) {
        struct timespec w = {0, 10000000};
        nanosleep(&w, NULL);
    }
    hvp_vcpu_cancel(ap);
    pthread_join(th, NULL);
    if (bsp_ok) return bsp_ok;
    t->v = ap;
    CHECK(a.r == 0, "vCPU 1's run: %s", hvp_vcpu_error(ap));
    if (unsupported(t, &a.x)) return SKIP;
    CHECK(a.x.reason != HVP_EXIT_CANCELED, "vCPU 1 never started after INIT/SIPI");
    if (expect_out(t, &a.x, 0x11, 0x5a, 1)) return FAIL;
    CHECK(a.x.vp.cs.selector == 0x0800 && a.x.vp.cs.base == 0x8000 && !a.x.vp.cr0_pe,
          "the AP started at CS %04x base 0x%llx PE %u, expected real mode 0800:0",
          a.x.vp.cs.selector, (unsigned long long)a.x.vp.cs.base, a.x.vp.cr0_pe);
    return PASS;
}

static int c_exits64(struct t *t)
{
    uint64_t caps = 0;
    hvp_get_capability(t->h, HVP_CAP_EXTENDED_VM_EXITS, &caps, 8, NULL);
    if (!(caps & HVP_EXTENDED_EXIT_CPUID) || !(caps & HVP_EXTENDED_EXIT_MSR))
        return snprintf(t->why, sizeof(t->why), "%s offers no CPUID or no MSR exits", t->backend),
               SKIP;
    struct hvp_cpuid_result cr = {.function = 0x40000000, .eax = 0x12345678, .ebx = 0x68767068};
    struct hvp_msr_action a[2] = {
        {.index = 0x40000100, .read_action = HVP_MSR_ACTION_EXIT},
        {.index = 0x40000101, .read_action = HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO}};
    uint64_t ext = HVP_EXTENDED_EXIT_CPUID | HVP_EXTENDED_EXIT_MSR;
    uint32_t leaf = 0x40000000;
    OK(hvp_partition_create(t->h, &t->p), hvp_error(t->h));
    POK(hvp_partition_set_property(t->p, HVP_PROP_EXTENDED_VM_EXITS, &ext, 8));
    POK(hvp_partition_set_property(t->p, HVP_PROP_CPUID_EXIT_LIST, &leaf, 4));
    POK(hvp_partition_set_property(t->p, HVP_PROP_CPUID_RESULT_LIST, &cr, sizeof(cr)));
    POK(hvp_partition_set_property(t->p, HVP_PROP_MSR_ACTION_LIST, a, sizeof(a)));
    POK(hvp_partition_setup(t->p));
    t->ram_size = 1 << 20;
    t->ram = mmap(NULL, t->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t->ram != MAP_FAILED, "mmap");
    POK(hvp_map_gpa(t->p, t->ram, 0, t->ram_size, HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE));
    POK(hvp_vcpu_create(t->p, 0, &t->v));
    SETUP(long_mode64(t, t->v, g64_exits, g64_exits_end, 0x1000));
    gate(t, 13, 0x1200);
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_CPUID && x.cpuid.rax == 0x40000000 &&
              x.cpuid.default_rax == 0x12345678 && x.cpuid.default_rbx == 0x68767068,
          "expected a CPUID exit for 0x40000000 with the table's answer, got %s rax 0x%llx "
          "default 0x%llx",
          hvp_exit_name(x.reason), (unsigned long long)x.cpuid.rax,
          (unsigned long long)x.cpuid.default_rax);
    /* WHP's way: the VMM writes the result and moves RIP. */
    uint32_t names[3] = {HVP_REG_RAX, HVP_REG_RBX, HVP_REG_RIP};
    union hvp_reg_value v[3] = {{.reg64 = 0x11111111}, {.reg64 = 0x22222222}};
    v[2].reg64 = x.vp.rip + 2;
    VOK(hvp_vcpu_set_registers(t->v, names, 3, v));
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x11111111, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x22222222, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_CPUID, "the second CPUID: %s", hvp_exit_name(x.reason));
    RUN(&x); /* not completed: the table's answer */
    EXPECT_OUT(&x, 0x16, 0x12345678, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MSR_ACCESS && !x.msr.is_write && x.msr.index == 0x40000100,
          "expected RDMSR 0x40000100, got %s 0x%x", hvp_exit_name(x.reason), x.msr.index);
    VOK(hvp_vcpu_complete_msr(t->v, 0xaabbccdd00112233ull, false));
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 0x00112233, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x13, 0xaabbccdd, 4);
    RUN(&x);
    EXPECT_OUT(&x, 0x14, 0, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_IO_PORT && x.io.access.addr == 0x15,
          "an unimplemented MSR did not raise #GP in the guest: %s", hvp_exit_name(x.reason));
    return PASS;
}

static int c_window64(struct t *t)
{
    SETUP(make(t, NULL)); /* APIC mode None: the VMM injects */
    SETUP(long_mode64(t, t->v, g64_window, g64_window_end, 0x1000));
    gate(t, 0x41, 0x1200);
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, x.io.access.data[0], 1);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    uint32_t n = HVP_REG_DELIVERABILITY_NOTIFICATIONS;
    union hvp_reg_value d = {.deliverability = {.interrupt = 1}};
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &d));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_INTERRUPT_WINDOW, "expected InterruptWindow, got %s",
          hvp_exit_name(x.reason));
    CHECK(x.vp.rflags & 0x200, "the window opened with IF clear");
    union hvp_reg_value back;
    VOK(hvp_vcpu_get_registers(t->v, &n, 1, &back));
    CHECK(!back.deliverability.interrupt, "the window request was not cleared by its exit");
    n = HVP_REG_PENDING_INTERRUPTION;
    union hvp_reg_value pi = {
        .pending_interruption = {.pending = 1, .type = HVP_PENDING_TYPE_EXT_INT, .vector = 0x41}};
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &pi));
    RUN(&x);
    EXPECT_OUT(&x, 0x11, x.io.access.data[0], 1);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "APIC mode None: HLT is an exit, got %s",
          hvp_exit_name(x.reason));
    return PASS;
}

struct remap_run {
    struct hvp_vcpu *v;
    struct hvp_exit x;
    int r, mmio;
};
static void *remap_thread(void *arg)
{
    struct remap_run *a = arg;
    for (;;) {
        a->r = hvp_vcpu_run(a->v, &a->x);
        if (a->r < 0 || a->x.reason != HVP_EXIT_MEMORY_ACCESS) break;
        /* The page was unmapped for a moment: reads give 0, writes drop. */
        a->mmio++;
        if (a->x.flags & HVP_EXIT_F_RETIRED) continue;
        uint64_t z = 0;
        hvp_vcpu_complete_io(a->v, &z, a->x.mmio.access.is_write ? 0 : a->x.mmio.access.size);
    }
    return NULL;
}

static int c_smp_remap(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(long_mode64(t, t->v, g64_remap, g64_remap_end, 0x1000));
    size_t pg = 4096;
    uint8_t *a = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED, "mmap");
    uint8_t *b = a + pg;
    uint32_t one = 1, two = 2;
    memcpy(a, &one, 4);
    memcpy(b, &two, 4);
    POK(hvp_map_gpa(t->p, a, 0x200000, pg, HVP_MAP_READ | HVP_MAP_WRITE));
    struct remap_run r = {.v = t->v};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, remap_thread, &r) == 0, "pthread_create");
    struct timespec ts = {0, 30000000};
    nanosleep(&ts, NULL);
    uint64_t ca = 0;
    memcpy(&ca, a + 8, 8);
    int res = PASS;
    if (!ca) res = fail(t, "the vCPU did not run before the remap");
    POK(hvp_unmap_gpa(t->p, 0x200000, pg));
    uint64_t snap;
    memcpy(&snap, a + 8, 8);
    POK(hvp_map_gpa(t->p, b, 0x200000, pg, HVP_MAP_READ | HVP_MAP_WRITE));
    nanosleep(&ts, NULL);
    uint64_t after;
    memcpy(&after, a + 8, 8);
    if (!res && after != snap)
        res = fail(t, "the old page was written after unmap returned (%llu -> %llu)",
                   (unsigned long long)snap, (unsigned long long)after);
    for (int i = 0; i < 200 && !r.r && r.x.reason == 0; i++) {
        struct timespec w = {0, 10000000};
        nanosleep(&w, NULL);
    }
    hvp_vcpu_cancel(t->v);
    pthread_join(th, NULL);
    if (res) return res;
    CHECK(r.r == 0, "run: %s", hvp_vcpu_error(t->v));
    if (unsupported(t, &r.x)) return SKIP;
    EXPECT_OUT(&r.x, 0x11, 2, 4);
    snprintf(t->why, sizeof(t->why), "%llu rounds on the old page, %d MMIO exits in the gap",
             (unsigned long long)snap, r.mmio);
    munmap(a, 2 * pg);
    return PASS;
}

static int c_dirty64(struct t *t)
{
    struct props pr = {.map_flags =
                           HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE | HVP_MAP_TRACK_DIRTY};
    SETUP(make(t, &pr));
    SETUP(long_mode64(t, t->v, g64_dirty, g64_dirty_end, 0x1000));
    uint64_t bm[1];
    POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8));
    for (int round = 0; round < 2; round++) {
        struct hvp_exit x;
        RUN(&x);
        CHECK(x.reason == HVP_EXIT_HALT, "round %d: expected Halt, got %s", round,
              hvp_exit_name(x.reason));
        POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8));
        CHECK(bm[0] >> 3 & 1 && bm[0] >> 5 & 1, "round %d: bitmap 0x%llx lacks pages 3 and 5",
              round, (unsigned long long)bm[0]);
        CHECK(!(bm[0] >> 7 & 1) && !(bm[0] >> 9 & 1), "round %d: untouched pages in 0x%llx", round,
              (unsigned long long)bm[0]);
        CHECK(t->ram[0x3000] == 1 && t->ram[0x5000] == 2, "the writes did not land");
        POK(hvp_query_dirty_bitmap(t->p, 0, 0x10000, bm, 8));
        CHECK(!(bm[0] >> 3 & 1), "the query did not clear: 0x%llx", (unsigned long long)bm[0]);
        /* Again from the start: the pages were write-protected anew. */
        uint32_t n = HVP_REG_RIP;
        union hvp_reg_value rip = {.reg64 = 0x1000};
        VOK(hvp_vcpu_set_registers(t->v, &n, 1, &rip));
        t->ram[0x3000] = t->ram[0x5000] = 0;
    }
    return PASS;
}

static int c_long_mode(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(long_mode(t, g_long, g_long_end));
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0x55667788, 4);
    CHECK(x.vp.efer_lma && x.vp.cs.attributes & HVP_SEG_L, "the exit's context is not long mode");
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x11223344, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MEMORY_ACCESS && x.mmio.access.addr == 0x100000 &&
              x.mmio.access.size == 4 && !x.mmio.access.is_write,
          "expected a 4-byte MMIO read at 0x100000, got %s", hvp_exit_name(x.reason));
    uint32_t v = 0xfeedf00d;
    VOK(hvp_vcpu_complete_io(t->v, &v, 4));
    RUN(&x);
    EXPECT_OUT(&x, 0x12, 0xfeedf00d, 4);
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_MEMORY_ACCESS && x.mmio.access.is_write &&
              x.mmio.access.addr == 0x100010 && x.mmio.access.size == 4,
          "expected an MMIO write at 0x100010, got %s", hvp_exit_name(x.reason));
    uint32_t w;
    memcpy(&w, x.mmio.access.data, 4);
    CHECK(w == 0xcafe, "MMIO write data 0x%x", w);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_HALT, "expected Halt, got %s", hvp_exit_name(x.reason));
    return PASS;
}

static int c_translate(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(long_mode(t, g_long, g_long_end));
    struct {
        uint64_t gva;
        uint32_t flags, result;
        uint64_t gpa;
    } cases[] = {
        {0x1234, HVP_TRANSLATE_VALIDATE_READ, HVP_TRANSLATE_SUCCESS, 0x1234},
        {0x40000123, HVP_TRANSLATE_VALIDATE_WRITE, HVP_TRANSLATE_SUCCESS, 0x5123},
        {0x40001123, HVP_TRANSLATE_VALIDATE_READ, HVP_TRANSLATE_SUCCESS, 0x6123},
        {0x40001123, HVP_TRANSLATE_VALIDATE_WRITE, HVP_TRANSLATE_PRIVILEGE_VIOLATION, 0},
        {0x40002123, HVP_TRANSLATE_VALIDATE_READ, HVP_TRANSLATE_PAGE_NOT_PRESENT, 0},
        {0x40003123, HVP_TRANSLATE_VALIDATE_READ, HVP_TRANSLATE_SUCCESS, 0x7123},
        {0x40003123, HVP_TRANSLATE_VALIDATE_EXECUTE, HVP_TRANSLATE_PRIVILEGE_VIOLATION, 0},
        {0x40004123, HVP_TRANSLATE_VALIDATE_READ, HVP_TRANSLATE_GPA_UNMAPPED, 0x300123},
        {0x8000000000000000ull, 0, HVP_TRANSLATE_INVALID_PAGE_TABLE_FLAGS, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t res = 99;
        uint64_t gpa = 0;
        VOK(hvp_vcpu_translate_gva(t->v, cases[i].gva, cases[i].flags, &res, &gpa));
        CHECK(res == cases[i].result, "GVA 0x%llx flags 0x%x: result %u, expected %u",
              (unsigned long long)cases[i].gva, cases[i].flags, res, cases[i].result);
        if (cases[i].gpa)
            CHECK(gpa == cases[i].gpa, "GVA 0x%llx: GPA 0x%llx, expected 0x%llx",
                  (unsigned long long)cases[i].gva, (unsigned long long)gpa,
                  (unsigned long long)cases[i].gpa);
    }
    uint64_t *pt = (uint64_t *)(t->ram + 0x14000);
    uint32_t res;
    uint64_t gpa;
    VOK(hvp_vcpu_translate_gva(
        t->v, 0x40000000, HVP_TRANSLATE_VALIDATE_WRITE | HVP_TRANSLATE_SET_PT_BITS, &res, &gpa));
    CHECK((pt[0] & 0x60) == 0x60, "SetPageTableBits left the PTE at 0x%llx (no A/D)",
          (unsigned long long)pt[0]);
    return PASS;
}

struct rv {
    uint32_t name;
    union hvp_reg_value v;
};

static int c_registers(struct t *t)
{
    SETUP(make(t, NULL));
    static struct rv tab[128];
    int n = 0;
#define R64(nm, val)                                                                               \
    tab[n++] = (struct rv)                                                                         \
    {                                                                                              \
        nm,                                                                                        \
        {                                                                                          \
            .reg64 = (val)                                                                         \
        }                                                                                          \
    }
    for (uint32_t i = 0; i < 16; i++)
        R64(HVP_REG_RAX + i, 0x1111111111111111ull * (i + 1) ^ 0xabcdef);
    R64(HVP_REG_RIP, 0x1234);
    R64(HVP_REG_RFLAGS, 0x202);
    for (uint32_t s = HVP_REG_ES; s <= HVP_REG_GS; s++)
        tab[n++] = (struct rv){
            s,
            {.segment = seg(s == HVP_REG_CS ? 0x100 : 0x18, s == HVP_REG_CS ? 0x1000 : 0x10000 + s,
                            0xffff, s == HVP_REG_CS ? 0x9b : 0x93)}};
    tab[n++] = (struct rv){HVP_REG_LDTR, {.segment = seg(0x28, 0x3000, 0xffff, 0x82)}};
    tab[n++] = (struct rv){HVP_REG_TR, {.segment = seg(0x30, 0x4000, 0x67, 0x8b)}};
    tab[n].name = HVP_REG_IDTR, tab[n].v.table.base = 0x7000, tab[n++].v.table.limit = 0x3ff;
    tab[n].name = HVP_REG_GDTR, tab[n].v.table.base = 0x7800, tab[n++].v.table.limit = 0x7f;
    R64(HVP_REG_CR0, 0x30);
    R64(HVP_REG_CR2, 0x1234000);
    R64(HVP_REG_CR3, 0x5000);
    R64(HVP_REG_CR4, 0x40600); /* OSFXSR, OSXMMEXCPT, OSXSAVE */
    R64(HVP_REG_CR8, 5);
    R64(HVP_REG_DR0, 0x1000);
    R64(HVP_REG_DR1, 0x2000);
    R64(HVP_REG_DR2, 0x3000);
    R64(HVP_REG_DR3, 0x4000);
    R64(HVP_REG_DR6, 0xffff0ff0);
    R64(HVP_REG_DR7, 0x400);
    R64(HVP_REG_XCR0, 3);
    for (uint32_t i = 0; i < 16; i++)
        tab[n].name = HVP_REG_XMM0 + i, tab[n].v.reg128.low = 0x0102030405060708ull * (i + 1),
        tab[n++].v.reg128.high = ~0ull - i;
    for (uint32_t i = 0; i < 8; i++)
        tab[n].name = HVP_REG_FPMMX0 + i, tab[n].v.fp.mantissa = 0x8000000000000000ull | i,
        tab[n++].v.fp.exponent_sign = 0x3fff + i;
    tab[n].name = HVP_REG_FP_CONTROL_STATUS;
    tab[n].v.fp_control_status = (struct hvp_fp_control_status){
        .fcw = 0x37f, .fsw = 0x0, .ftw = 0xff, .last_opcode = 0x123, .last_ip = 0x1000};
    n++;
    tab[n].name = HVP_REG_XMM_CONTROL_STATUS;
    tab[n].v.xmm_control_status.last_dp = 0x2000;
    tab[n++].v.xmm_control_status.mxcsr = 0x7f80;
    R64(HVP_REG_TSC, 0x100000000ull);
    R64(HVP_REG_EFER, 0x801);
    R64(HVP_REG_KERNEL_GS_BASE, 0xffff800000001000ull);
    R64(HVP_REG_APIC_BASE, 0xfee00900);
    R64(HVP_REG_PAT, 0x0007040600070406ull);
    R64(HVP_REG_SYSENTER_CS, 0x10);
    R64(HVP_REG_SYSENTER_EIP, 0x81000000); /* 32 bits: AMD keeps no more */
    R64(HVP_REG_SYSENTER_ESP, 0x81001000);
    R64(HVP_REG_STAR, 0x0023001000000000ull);
    R64(HVP_REG_LSTAR, 0xffffffff81002000ull);
    R64(HVP_REG_CSTAR, 0xffffffff81003000ull);
    R64(HVP_REG_SFMASK, 0x47700);
    R64(HVP_REG_MTRR_DEF_TYPE, 0xc06);
    R64(HVP_REG_TSC_AUX, 7);
    tab[n].name = HVP_REG_PENDING_INTERRUPTION;
    tab[n].v.pending_interruption.pending = 1;
    tab[n].v.pending_interruption.type = HVP_PENDING_TYPE_EXT_INT;
    tab[n++].v.pending_interruption.vector = 0x30;
    tab[n].name = HVP_REG_INTERRUPT_STATE;
    tab[n].v.interrupt_state.interrupt_shadow = 1;
    tab[n++].v.interrupt_state.nmi_masked = 1;
    tab[n].name = HVP_REG_DELIVERABILITY_NOTIFICATIONS;
    tab[n++].v.deliverability.interrupt = 1;
#undef R64

    /* Every name hvp knows is in the table. */
    for (uint64_t nm = 0; nm <= 0x80000010u; nm++) {
        if (nm == 0x3000) nm = 0x80000000u;
        if (!hvp_reg_name((uint32_t)nm)) continue;
        bool found = false;
        for (int i = 0; i < n; i++)
            found |= tab[i].name == nm;
        CHECK(found, "register %s (0x%x) is named but not tested", hvp_reg_name((uint32_t)nm),
              (unsigned)nm);
    }

    uint32_t names[128];
    union hvp_reg_value in[128], out[128];
    for (int i = 0; i < n; i++)
        names[i] = tab[i].name, in[i] = tab[i].v;
    VOK(hvp_vcpu_set_registers(t->v, names, n, in));
    memset(out, 0xee, sizeof(out));
    VOK(hvp_vcpu_get_registers(t->v, names, n, out));
    for (int i = 0; i < n; i++) {
        const char *nm = hvp_reg_name(names[i]);
        if (names[i] == HVP_REG_TSC) {
            CHECK(out[i].reg64 >= in[i].reg64 && out[i].reg64 - in[i].reg64 < (1ull << 40),
                  "Tsc: wrote 0x%llx, read 0x%llx", (unsigned long long)in[i].reg64,
                  (unsigned long long)out[i].reg64);
            continue;
        }
        if (names[i] == HVP_REG_XMM_CONTROL_STATUS) {
            CHECK(out[i].xmm_control_status.mxcsr == in[i].xmm_control_status.mxcsr &&
                      out[i].xmm_control_status.last_dp == in[i].xmm_control_status.last_dp,
                  "XmmControlStatus: mxcsr 0x%x last_dp 0x%llx", out[i].xmm_control_status.mxcsr,
                  (unsigned long long)out[i].xmm_control_status.last_dp);
            continue;
        }
        CHECK(memcmp(&out[i], &in[i], 16) == 0, "%s: wrote %016llx%016llx, read %016llx%016llx", nm,
              (unsigned long long)in[i].reg128.high, (unsigned long long)in[i].reg128.low,
              (unsigned long long)out[i].reg128.high, (unsigned long long)out[i].reg128.low);
    }
    /* One at a time, too. */
    for (int i = 0; i < n; i++) {
        if (names[i] == HVP_REG_TSC || names[i] == HVP_REG_XMM_CONTROL_STATUS) continue;
        union hvp_reg_value o;
        VOK(hvp_vcpu_get_registers(t->v, &names[i], 1, &o));
        CHECK(memcmp(&o, &in[i], 16) == 0, "%s alone reads differently", hvp_reg_name(names[i]));
    }
    /* A batch with an unknown name fails as a whole. */
    uint32_t bad[2] = {HVP_REG_RBX, 0x2fff};
    union hvp_reg_value bv[2] = {{.reg64 = 1}, {.reg64 = 2}};
    CHECK(hvp_vcpu_set_registers(t->v, bad, 2, bv) == -EINVAL, "an unknown name is not -EINVAL");
    CHECK(strstr(hvp_vcpu_error(t->v), "0x2fff"), "the message does not name it: %s",
          hvp_vcpu_error(t->v));
    CHECK(reg(t, HVP_REG_RBX) == in[3].reg64, "RBX changed by the failed batch");
    CHECK(hvp_vcpu_get_registers(t->v, bad, 2, bv) == -EINVAL, "get with an unknown name");
    return PASS;
}

static int c_apic_interrupt(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_XAPIC};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_apic, g_apic_end));
    uint32_t ivt = 0x100u << 16 | 0x100; /* vector 0x40 -> 0100:0100 */
    memcpy(t->ram + 0x40 * 4, &ivt, 4);
    uint32_t n = HVP_REG_DS;
    union hvp_reg_value ds = {.segment = seg(0, 0xfee00000, 0xffff, 0x93)};
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &ds));
    uint8_t lapic[HVP_LAPIC_STATE_SIZE];
    size_t w;
    VOK(hvp_vcpu_get_lapic(t->v, lapic, sizeof(lapic), &w));
    CHECK(w == HVP_LAPIC_STATE_SIZE && (lapic[0x30] & 0xff) != 0, "LAPIC version register is 0");
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0, 1);
    VOK(hvp_vcpu_get_lapic(t->v, lapic, sizeof(lapic), &w));
    uint32_t svr;
    memcpy(&svr, lapic + 0xf0, 4);
    CHECK(svr == 0x1ff, "the guest's SVR write reads back as 0x%x in the LAPIC state", svr);
    struct hvp_interrupt irq = {.type = HVP_INTERRUPT_FIXED, .destination = 0, .vector = 0x40};
    POK(hvp_request_interrupt(t->p, &irq));
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x40, 1);
    /* LAPIC state round trip: the TPR. */
    lapic[0x80] = 0x20;
    VOK(hvp_vcpu_set_lapic(t->v, lapic, sizeof(lapic)));
    uint8_t again[HVP_LAPIC_STATE_SIZE];
    VOK(hvp_vcpu_get_lapic(t->v, again, sizeof(again), &w));
    CHECK(again[0x80] == 0x20, "TPR set through the LAPIC state reads 0x%x", again[0x80]);
    return PASS;
}

static int apic_ds(struct t *t, struct hvp_vcpu *v)
{
    uint32_t n = HVP_REG_DS;
    union hvp_reg_value ds = {.segment = seg(0, 0xfee00000, 0xffff, 0x93)};
    int r = hvp_vcpu_set_registers(v, &n, 1, &ds);
    if (r < 0) return fail(t, "DS: %s", hvp_vcpu_error(v));
    return PASS;
}

static int c_apic_timer(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_XAPIC};
    SETUP(make(t, &pr));
    SETUP(real_mode(t, g_timer, g_timer_end));
    uint32_t ivt = 0x100u << 16 | 0x100;
    memcpy(t->ram + 0x42 * 4, &ivt, 4);
    SETUP(apic_ds(t, t->v));
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x42, 1);
    return PASS;
}

static int c_x2apic_timer(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_X2APIC};
    SETUP(make(t, &pr));
    uint32_t id[4];
    VOK(hvp_vcpu_get_cpuid(t->v, 1, 0, id));
    CHECK(id[2] >> 21 & 1, "X2Apic mode but CPUID.1:ECX lacks x2APIC");
    SETUP(real_mode(t, g_x2timer, g_x2timer_end));
    uint32_t ivt = 0x100u << 16 | 0x100;
    memcpy(t->ram + 0x44 * 4, &ivt, 4);
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x44, 1);
    uint32_t n = HVP_REG_APIC_BASE;
    union hvp_reg_value ab;
    VOK(hvp_vcpu_get_registers(t->v, &n, 1, &ab));
    CHECK((ab.reg64 & 0xc00) == 0xc00, "ApicBase 0x%llx: x2APIC not enabled",
          (unsigned long long)ab.reg64);
    return PASS;
}

struct ap_run {
    struct hvp_vcpu *v;
    struct hvp_exit x;
    int r;
};
static void *ap_thread(void *arg)
{
    struct ap_run *a = arg;
    a->r = hvp_vcpu_run(a->v, &a->x);
    return NULL;
}

static int c_apic_ipi(struct t *t)
{
    struct props pr = {.apic_mode = HVP_APIC_MODE_XAPIC};
    OK(hvp_partition_create(t->h, &t->p), hvp_error(t->h));
    uint32_t two = 2;
    POK(hvp_partition_set_property(t->p, HVP_PROP_PROCESSOR_COUNT, &two, 4));
    POK(hvp_partition_set_property(t->p, HVP_PROP_LOCAL_APIC_EMULATION_MODE, &pr.apic_mode, 4));
    POK(hvp_partition_setup(t->p));
    t->ram_size = 1 << 20;
    t->ram = mmap(NULL, t->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(t->ram != MAP_FAILED, "mmap");
    POK(hvp_map_gpa(t->p, t->ram, 0, t->ram_size, HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE));
    POK(hvp_vcpu_create(t->p, 0, &t->v));
    struct hvp_vcpu *ap;
    POK(hvp_vcpu_create(t->p, 1, &ap));
    SETUP(real_mode(t, g_ipi, g_ipi_end));
    SETUP(apic_ds(t, t->v));
    struct hvp_vcpu *bsp = t->v;
    t->v = ap;
    SETUP(real_mode(t, g_ipi, g_ipi_end));
    SETUP(apic_ds(t, ap));
    uint32_t n = HVP_REG_RIP;
    union hvp_reg_value rip = {.reg64 = 0x80};
    VOK(hvp_vcpu_set_registers(ap, &n, 1, &rip));
    uint32_t ivt = 0x100u << 16 | 0x100;
    memcpy(t->ram + 0x43 * 4, &ivt, 4);
    struct hvp_exit x;
    RUN(&x); /* vCPU 1: APIC enabled */
    EXPECT_OUT(&x, 0x12, 0, 1);
    VOK(hvp_vcpu_complete_io(ap, NULL, 0));
    struct ap_run a = {.v = ap};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ap_thread, &a) == 0, "pthread_create");
    t->v = bsp;
    RUN(&x); /* vCPU 0 sends the IPI */
    int bsp_ok = expect_out(t, &x, 0x10, 0, 1);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    hvp_vcpu_cancel(ap); /* in case the IPI never came */
    pthread_join(th, NULL);
    if (bsp_ok) return bsp_ok;
    t->v = ap;
    if (a.r == 0 && unsupported(t, &a.x)) return SKIP;
    CHECK(a.r == 0, "vCPU 1's run: %s", hvp_vcpu_error(ap));
    CHECK(a.x.reason != HVP_EXIT_CANCELED, "vCPU 1 never received the IPI");
    return expect_out(t, &a.x, 0x11, 0x43, 1);
}

static int c_invalid_state(struct t *t)
{
    SETUP(make(t, NULL));
    SETUP(real_mode(t, g_io, g_io_end));
    /* Paging without protection: no CPU can enter that. The backend refuses
     * it when the registers are written or reports it on entry. */
    uint32_t n = HVP_REG_CR0;
    union hvp_reg_value cr0 = {.reg64 = 0x80000010};
    int r = hvp_vcpu_set_registers(t->v, &n, 1, &cr0);
    if (r == -EINVAL)
        return snprintf(t->why, sizeof(t->why), "refused when written: %s", hvp_vcpu_error(t->v)),
               PASS;
    CHECK(r == 0, "CR0 write: %d", r);
    struct hvp_exit x;
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_INVALID_VP_REGISTER_VALUE, "expected InvalidVpRegisterValue, got %s",
          hvp_exit_name(x.reason));
    return PASS;
}

static int c_interrupt_window(struct t *t)
{
    SETUP(make(t, NULL)); /* APIC mode None: the VMM injects */
    SETUP(real_mode(t, g_window, g_window_end));
    uint32_t ivt = 0x100u << 16 | 0x100;
    memcpy(t->ram + 0x41 * 4, &ivt, 4);
    struct hvp_interrupt irq = {.type = HVP_INTERRUPT_FIXED, .vector = 0x41};
    CHECK(hvp_request_interrupt(t->p, &irq) == -EOPNOTSUPP,
          "request_interrupt in APIC mode None is not -EOPNOTSUPP");
    CHECK(hvp_vcpu_get_lapic(t->v, (uint8_t[1024]){0}, 1024, NULL) == -EOPNOTSUPP,
          "LAPIC state in APIC mode None is not -EOPNOTSUPP");
    struct hvp_exit x;
    RUN(&x);
    EXPECT_OUT(&x, 0x10, 0, 1);
    VOK(hvp_vcpu_complete_io(t->v, NULL, 0));
    uint32_t n = HVP_REG_DELIVERABILITY_NOTIFICATIONS;
    union hvp_reg_value d = {.deliverability = {.interrupt = 1}};
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &d));
    RUN(&x);
    CHECK(x.reason == HVP_EXIT_INTERRUPT_WINDOW, "expected InterruptWindow, got %s",
          hvp_exit_name(x.reason));
    CHECK(x.vp.rflags & 0x200, "the window opened with IF clear");
    n = HVP_REG_PENDING_INTERRUPTION;
    union hvp_reg_value pi = {
        .pending_interruption = {.pending = 1, .type = HVP_PENDING_TYPE_EXT_INT, .vector = 0x41}};
    VOK(hvp_vcpu_set_registers(t->v, &n, 1, &pi));
    RUN(&x);
    EXPECT_OUT(&x, 0x11, 0x41, 1);
    return PASS;
}

static int c_state(struct t *t)
{
    SETUP(make(t, NULL));
    size_t w = 0;
    CHECK(hvp_vcpu_get_xsave(t->v, NULL, 0, &w) == -ENOSPC && w >= 512, "XSAVE size query: %zu", w);
    uint8_t *xs = calloc(1, w);
    VOK(hvp_vcpu_get_xsave(t->v, xs, w, &w));
    memset(xs + 160, 0x5c, 16); /* XMM0 in the legacy area */
    xs[512] |= 2;               /* XSTATE_BV: SSE state present */
    VOK(hvp_vcpu_set_xsave(t->v, xs, w));
    free(xs);
    uint32_t n = HVP_REG_XMM0;
    union hvp_reg_value x0;
    VOK(hvp_vcpu_get_registers(t->v, &n, 1, &x0));
    CHECK(x0.reg128.low == 0x5c5c5c5c5c5c5c5cull, "XMM0 after XSAVE set: 0x%llx",
          (unsigned long long)x0.reg128.low);
    POK(hvp_partition_suspend_time(t->p));
    POK(hvp_partition_resume_time(t->p));
    /* Reset puts the vCPU at F000:FFF0. */
    SETUP(real_mode(t, g_io, g_io_end));
    POK(hvp_partition_reset(t->p));
    uint32_t names[2] = {HVP_REG_RIP, HVP_REG_CS};
    union hvp_reg_value v[2];
    VOK(hvp_vcpu_get_registers(t->v, names, 2, v));
    CHECK(v[0].reg64 == 0xfff0 && v[1].segment.selector == 0xf000 &&
              v[1].segment.base == 0xffff0000,
          "after reset CS:IP = %04x:%llx base 0x%llx", v[1].segment.selector,
          (unsigned long long)v[0].reg64, (unsigned long long)v[1].segment.base);
    return PASS;
}

static int c_vcpu_errors(struct t *t)
{
    SETUP(make(t, NULL));
    struct hvp_exit x;
    CHECK(hvp_vcpu_complete_io(t->v, NULL, 0) == -EINVAL, "completing with nothing pending");
    CHECK(hvp_vcpu_complete_msr(t->v, 0, false) == -EINVAL,
          "completing an MSR with nothing pending");
    uint8_t b;
    CHECK(hvp_read_gpa(t->p, 0x100000, &b, 1) == -ERANGE, "reading unmapped GPA is not -ERANGE");
    hvp_vcpu_destroy(t->v);
    CHECK(hvp_vcpu_run(t->v, &x) == -ESHUTDOWN, "running a destroyed vCPU is not -ESHUTDOWN");
    CHECK(strstr(hvp_vcpu_error(t->v), "destroyed"), "message: %s", hvp_vcpu_error(t->v));
    uint32_t nm = HVP_REG_RAX;
    union hvp_reg_value v;
    CHECK(hvp_vcpu_get_registers(t->v, &nm, 1, &v) == -ESHUTDOWN, "registers of a destroyed vCPU");
    /* The index is free again. */
    struct hvp_vcpu *v2;
    POK(hvp_vcpu_create(t->p, 0, &v2));
    t->v = v2;
    return PASS;
}

/* ---- the runner -------------------------------------------------------- */

struct tcase {
    const char *name;
    int (*fn)(struct t *);
};
static const struct tcase cases[] = {
    {"capabilities", c_capabilities},
    {"open-errors", c_open_errors},
    {"properties", c_properties},
    {"memory-map", c_memory_map},
    {"io-decoded", c_io_decoded},
    {"io-string", c_io_string},
    {"io-emulator", c_io_emulator},
    {"io-inline-handler", c_io_inline},
    {"mmio", c_mmio},
    {"mmio-emulator", c_mmio_emulator},
    {"mmio-emulator-modrm", c_mmio_emulator_modrm},
    {"cpuid", c_cpuid},
    {"msr", c_msr},
    {"exception-bp", c_exception_bp},
    {"exception-db", c_exception_db},
    {"triple-fault", c_triple_fault},
    {"cancel", c_cancel},
    {"dirty", c_dirty},
    {"long-mode", c_long_mode},
    {"translate-gva", c_translate},
    {"registers", c_registers},
    {"apic-interrupt", c_apic_interrupt},
    {"apic-timer", c_apic_timer},
    {"apic-ipi", c_apic_ipi},
    {"x2apic-timer", c_x2apic_timer},
    {"interrupt-window", c_interrupt_window},
    {"invalid-state", c_invalid_state},
    {"state", c_state},
    {"vcpu-errors", c_vcpu_errors},
    {"apic-timer-modes", c_apic_timer_modes},
    {"apic-inject-eoi-tpr", c_apic_inject},
    {"x2apic-msrs", c_x2apic_msrs},
    {"apic-ipi-64", c_apic_ipi64},
    {"interrupt-window-64", c_window64},
    {"smp-remap", c_smp_remap},
    {"dirty-64", c_dirty64},
    {"init-sipi", c_init_sipi},
    {"cpuid-msr-exits-64", c_exits64},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static int run_case(const char *backend, const struct tcase *c, char *why, size_t len)
{
    int pfd[2];
    if (pipe(pfd) < 0) return snprintf(why, len, "pipe: %s", strerror(errno)), FAIL;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        alarm(60);
        struct t t = {.backend = backend};
        char err[256];
        int r = hvp_open(backend, &t.h, err, sizeof(err));
        if (r < 0) {
            snprintf(t.why, sizeof(t.why), "%s", err);
            r = SKIP;
        } else {
            r = c->fn(&t);
            hvp_partition_destroy(t.p);
            if (t.ram) munmap(t.ram, t.ram_size);
            hvp_close(t.h);
        }
        if (write(pfd[1], t.why, strlen(t.why)) < 0) _exit(FAIL);
        _exit(r);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], why, len - 1);
    why[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
        snprintf(why, len, "killed by signal %d%s", WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
        return FAIL;
    }
    return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
    const char *only_backend = NULL;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "-b") == 0) only_backend = argv[2], first = 3;
    const char *backends[] = {"kvm", "soft"};
    unsigned total = 0;
    for (int b = 0; b < 2; b++)
        for (size_t i = 0; i < NCASES; i++) {
            if (only_backend && strcmp(only_backend, backends[b])) continue;
            bool sel = first >= argc;
            for (int a = first; a < argc; a++)
                sel |= strcmp(argv[a], cases[i].name) == 0;
            total += sel;
        }
    printf("1..%u\n", total);
    unsigned num = 0, passed = 0, failed = 0, skipped = 0;
    for (int b = 0; b < 2; b++) {
        if (only_backend && strcmp(only_backend, backends[b])) continue;
        for (size_t i = 0; i < NCASES; i++) {
            bool sel = first >= argc;
            for (int a = first; a < argc; a++)
                sel |= strcmp(argv[a], cases[i].name) == 0;
            if (!sel) continue;
            char why[512];
            fflush(stdout);
            int r = run_case(backends[b], &cases[i], why, sizeof(why));
            num++;
            if (r == PASS) {
                passed++;
                printf("ok %u - %s: %s%s%s\n", num, backends[b], cases[i].name, why[0] ? " # " : "",
                       why);
            } else if (r == SKIP) {
                skipped++;
                printf("ok %u - %s: %s # SKIP %s\n", num, backends[b], cases[i].name, why);
            } else {
                failed++;
                printf("not ok %u - %s: %s: %s\n", num, backends[b], cases[i].name, why);
            }
        }
    }
    printf("# %u passed, %u failed, %u skipped\n", passed, failed, skipped);
    fflush(stdout);
    /* Under meson's TAP protocol an all-SKIP plan is what makes the test a
     * SKIP (exit 77 would read as an error there). */
    return failed ? 1 : 0;
}
