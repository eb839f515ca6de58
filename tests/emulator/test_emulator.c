/* Functional tests of the emulator against the fake VM: the API, I/O and
 * string I/O, MMIO moves and strings, page splits, faults and callback
 * failures. (ALU flags are compared with the host CPU in test_host.c.) */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "fakevm.h"

#define OK     HVP_EMU_STATUS_SUCCESS
#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8 };

static uint64_t rd(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    memcpy(&v, p, n);
    return v;
}

/* ---------------------------------------------------------------- API */

static int nop_io(void *c, struct hvp_emu_io_access *a)
{
    (void)c, (void)a;
    return 0;
}

Test(api, create_rejects_bad_callbacks)
{
    struct hvp_emulator *emu = NULL;
    struct hvp_emulator_callbacks cb = {0};
    cr_assert_eq(hvp_emulator_create(NULL, &emu), -EINVAL);
    cr_assert_eq(hvp_emulator_create(&cb, &emu), -EINVAL);
    cb.size = sizeof(cb);
    cb.io_port = nop_io;
    cr_assert_eq(hvp_emulator_create(&cb, &emu), -EINVAL, "missing callbacks");
    cr_assert_null(emu);
    hvp_emulator_destroy(NULL);
}

Test(api, try_rejects_null_arguments)
{
    struct fakevm *vm = fvm_new(64);
    struct hvp_emu_vp_context vp = {0};
    struct hvp_emu_mmio_context m = {0};
    struct hvp_emu_io_context io = {0};
    uint32_t st;
    cr_assert_eq(hvp_emulator_try_mmio(NULL, vm, &vp, &m, &st, NULL), -EINVAL);
    cr_assert_eq(hvp_emulator_try_mmio(vm->emu, vm, NULL, &m, &st, NULL), -EINVAL);
    cr_assert_eq(hvp_emulator_try_mmio(vm->emu, vm, &vp, NULL, &st, NULL), -EINVAL);
    cr_assert_eq(hvp_emulator_try_mmio(vm->emu, vm, &vp, &m, NULL, NULL), -EINVAL);
    cr_assert_eq(hvp_emulator_try_io(vm->emu, vm, &vp, NULL, &st, NULL), -EINVAL);
    cr_assert_eq(hvp_emulator_try_io(vm->emu, vm, &vp, &io, NULL, NULL), -EINVAL);
    fvm_free(vm);
}

Test(api, interrupt_caused_intercept)
{
    struct fakevm *vm = fvm_new(64);
    vm->interruption_pending = 1;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0);
    uint32_t st = fvm_mmio(vm, B(0x89, 0x03), NULL);
    cr_assert_eq(st, HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT);
    cr_assert_eq(vm->n_mem, 0);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    fvm_free(vm);
}

Test(api, undecodable_is_internal_failure)
{
    struct fakevm *vm = fvm_new(64);
    /* ud2 is no memory access */
    uint32_t st = fvm_mmio(vm, B(0x0f, 0x0b), NULL);
    cr_assert_eq(st, HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- I/O */

Test(io, in_out_all_forms)
{
    struct fakevm *vm = fvm_new(64);
    const uint64_t junk = 0x1122334455667788ull;
    struct {
        const uint8_t *b;
        size_t n;
        bool out;
        unsigned size;
        bool dx;
    } c[] = {
        {B(0xe4, 0x60), false, 1, false}, {B(0x66, 0xe5, 0x60), false, 2, false},
        {B(0xe5, 0x60), false, 4, false}, {B(0xec), false, 1, true},
        {B(0x66, 0xed), false, 2, true},  {B(0xed), false, 4, true},
        {B(0xe6, 0x60), true, 1, false},  {B(0x66, 0xe7, 0x60), true, 2, false},
        {B(0xe7, 0x60), true, 4, false},  {B(0xee), true, 1, true},
        {B(0x66, 0xef), true, 2, true},   {B(0xef), true, 4, true},
    };
    for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        uint16_t port = c[i].dx ? 0xcf8 : 0x60;
        vm->rip = FVM_CODE_GVA;
        vm->gpr[RAX] = junk;
        vm->gpr[RDX] = 0xabcd0000u | (c[i].dx ? 0xcf8 : 0x1234);
        vm->io_in_next = 0xa5b6c7d8u;
        uint32_t st = fvm_io(vm, c[i].b, c[i].n, c[i].out, c[i].size, false, port, NULL);
        cr_assert_eq(st, OK, "case %u: status %#x", i, st);
        cr_assert_eq(vm->rip, FVM_CODE_GVA + c[i].n, "case %u: rip", i);
        cr_assert_eq(vm->n_io, 1);
        cr_assert_eq(vm->io_log[0].port, port);
        cr_assert_eq(vm->io_log[0].size, c[i].size);
        uint64_t m = c[i].size == 4 ? 0xffffffffu : (1u << (8 * c[i].size)) - 1;
        if (c[i].out) {
            cr_assert_eq(vm->io_log[0].dir, HVP_EMU_IO_OUT);
            cr_assert_eq(vm->io_log[0].data, junk & m, "case %u", i);
            cr_assert_eq(vm->gpr[RAX], junk);
        } else {
            cr_assert_eq(vm->io_log[0].dir, HVP_EMU_IO_IN);
            /* 8/16-bit IN merges into RAX, 32-bit zero-extends. */
            uint64_t want = c[i].size == 4 ? 0xa5b6c7d8u : (junk & ~m) | (0xa5b6c7d8u & m);
            cr_assert_eq(vm->gpr[RAX], want, "case %u: rax %#llx", i,
                         (unsigned long long)vm->gpr[RAX]);
        }
    }
    fvm_free(vm);
}

Test(io, exit_mismatch_is_internal_failure)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RDX] = 0x80;
    cr_assert_eq(fvm_io(vm, B(0xec), false, 1, false, 0x81, NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(fvm_io(vm, B(0xec), true, 1, false, 0x80, NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(fvm_io(vm, B(0xec), false, 2, false, 0x80, NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(vm->n_io, 0);
    cr_assert_eq(fvm_io(vm, B(0x89, 0x03), true, 4, false, 0x80, NULL),
                 HVP_EMU_STATUS_INTERNAL_FAILURE, "mov is no port access");
    fvm_free(vm);
}

Test(io, port_callback_failure)
{
    struct fakevm *vm = fvm_new(64);
    vm->io_fails = true;
    cr_assert_eq(fvm_io(vm, B(0xe4, 0x60), false, 1, false, 0x60, NULL),
                 HVP_EMU_STATUS_IO_PORT_CALLBACK_FAILED);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    fvm_free(vm);
}

/* REP INS/OUTS in every address size and both directions. */
static void string_io(unsigned mode, bool a67, unsigned size, bool out, bool rep, bool df,
                      uint64_t count)
{
    struct fakevm *vm = fvm_new(mode);
    unsigned asize = mode == 64 ? (a67 ? 4 : 8) : mode == 32 ? (a67 ? 2 : 4) : (a67 ? 4 : 2);
    uint8_t b[8];
    size_t n = 0;
    if (rep) b[n++] = 0xf3;
    if (a67) b[n++] = 0x67;
    if (size == 2 && mode != 16) b[n++] = 0x66;
    if (size == 4 && mode == 16) b[n++] = 0x66;
    b[n++] = (uint8_t)((out ? 0x6e : 0x6c) | (size > 1));
    uint64_t hi = asize == 8 ? 0 : asize == 4 ? 0xdead00000000ull : 0xdeadbeef0000ull;
    /* The buffer lies at 0x8000 (ES/DS base 0x2000 outside 64-bit mode). */
    uint64_t base = mode == 64 ? 0 : 0x2000;
    vm->seg[0].base = vm->seg[3].base = base;
    uint64_t start = 0x6000 + (df ? 0x400 : 0);
    vm->gpr[RDI] = hi | start;
    vm->gpr[RSI] = hi | start;
    vm->gpr[RCX] = hi | count;
    vm->gpr[RDX] = 0x3f8;
    if (df) vm->rflags |= 0x400;
    for (unsigned i = 0; i < 0x800; i++)
        vm->ram[base + 0x5c00 + i] = (uint8_t)(i * 7 + 1);
    uint8_t before[0x800];
    memcpy(before, vm->ram + base + 0x5c00, sizeof(before));
    vm->io_in_next = 0x10203040;
    uint32_t st = fvm_io(vm, b, n, out, size, true, 0x3f8, NULL);
    cr_assert_eq(st, OK, "mode %u a67 %d size %u out %d rep %d: status %#x", mode, a67, size, out,
                 rep, st);
    uint64_t iters = rep ? count : 1;
    cr_assert_eq(vm->n_io, iters);
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t addr = df ? start - i * size : start + i * size;
        uint8_t *p = vm->ram + base + addr;
        cr_assert_eq(vm->io_log[i].size, size);
        if (out)
            cr_assert_eq(vm->io_log[i].data, rd(p, size), "iteration %llu", (unsigned long long)i);
        else
            cr_assert_eq(rd(p, size),
                         (0x10203040u + i) & (size == 4 ? 0xffffffffu : (1u << 8 * size) - 1),
                         "iteration %llu", (unsigned long long)i);
    }
    if (out) cr_assert_eq(memcmp(before, vm->ram + base + 0x5c00, sizeof(before)), 0);
    /* Registers advance at the address size; 32-bit updates zero-extend. */
    uint64_t moved = df ? start - iters * size : start + iters * size;
    uint64_t am = asize == 8 ? ~0ull : (1ull << (8 * asize)) - 1;
    uint64_t keep = asize == 2 ? hi : 0;
    unsigned r = out ? RSI : RDI;
    /* A zero count writes nothing at all. */
    uint64_t want = iters ? keep | (moved & am) : hi | start;
    cr_assert_eq(vm->gpr[r], want, "mode %u a67 %d size %u out %d rep %d df %d: pointer %#llx",
                 mode, a67, size, out, rep, df, (unsigned long long)vm->gpr[r]);
    cr_assert_eq(vm->gpr[out ? RDI : RSI], hi | start);
    if (rep && count)
        cr_assert_eq(vm->gpr[RCX], asize == 2 ? hi : 0);
    else
        cr_assert_eq(vm->gpr[RCX], hi | count);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + n);
    fvm_free(vm);
}

Test(io, string_forms)
{
    static const unsigned modes[] = {16, 32, 64};
    for (unsigned mi = 0; mi < 3; mi++)
        for (unsigned a67 = 0; a67 < 2; a67++)
            for (unsigned size = 1; size <= 4; size *= 2)
                for (unsigned out = 0; out < 2; out++)
                    for (unsigned df = 0; df < 2; df++) {
                        string_io(modes[mi], a67, size, out, false, df, 5);
                        string_io(modes[mi], a67, size, out, true, df, 0);
                        string_io(modes[mi], a67, size, out, true, df, 1);
                        string_io(modes[mi], a67, size, out, true, df, 37);
                    }
}

Test(io, real_mode_rep_insw)
{
    /* BIOS-style ATA PIO: rep insw into ES:DI in real mode. */
    struct fakevm *vm = fvm_new(16);
    vm->cr0_pe = 0;
    vm->seg[0].base = 0x9000; /* ES = 0x900 */
    vm->seg[0].attributes = 0x93;
    vm->gpr[RDI] = 0x0100;
    vm->gpr[RCX] = 256;
    vm->gpr[RDX] = 0x1f0;
    vm->io_in_next = 0x4000;
    cr_assert_eq(fvm_io(vm, B(0xf3, 0x6d), false, 2, true, 0x1f0, NULL), OK);
    cr_assert_eq(vm->n_io, 256);
    cr_assert_eq(rd(vm->ram + 0x9100, 2), 0x4000);
    cr_assert_eq(rd(vm->ram + 0x9100 + 510, 2), 0x40ff);
    cr_assert_eq(vm->gpr[RDI], 0x0300);
    cr_assert_eq(vm->gpr[RCX], 0);
    /* DI wraps at 64 KiB ... */
    vm->gpr[RDI] = 0xfffc;
    vm->gpr[RCX] = 4;
    vm->rip = FVM_CODE_GVA;
    cr_assert_eq(fvm_io(vm, B(0xf3, 0x6d), false, 2, true, 0x1f0, NULL), OK);
    cr_assert_eq(vm->gpr[RDI], 0x0004);
    cr_assert_eq(rd(vm->ram + 0x9000, 2), 0x4000 + 256 + 2);
    /* ... but a word straddling the limit faults, after the words that fit. */
    vm->gpr[RDI] = 0xfffb;
    vm->gpr[RCX] = 5;
    vm->rip = FVM_CODE_GVA;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_io(vm, B(0xf3, 0x6d), false, 2, true, 0x1f0, &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    cr_assert_eq(vm->n_io, 2);
    cr_assert_eq(vm->gpr[RDI], 0xffff);
    cr_assert_eq(vm->gpr[RCX], 3);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    fvm_free(vm);
}

Test(io, outs_segment_override)
{
    struct fakevm *vm = fvm_new(32);
    vm->seg[4].base = 0x3000; /* FS */
    vm->gpr[RSI] = 0x10;
    vm->gpr[RDX] = 0x80;
    vm->ram[0x3010] = 0x5a;
    vm->ram[0x0010] = 0x11;
    cr_assert_eq(fvm_io(vm, B(0x64, 0x6e), true, 1, true, 0x80, NULL), OK);
    cr_assert_eq(vm->io_log[0].data, 0x5a);
    /* In 64-bit mode FS keeps its base, DS has none. */
    struct fakevm *v64 = fvm_new(64);
    v64->seg[4].base = 0x3000;
    v64->seg[3].base = 0x5000;
    v64->gpr[RSI] = 0x10;
    v64->gpr[RDX] = 0x80;
    v64->ram[0x3010] = 0x77;
    v64->ram[0x0010] = 0x66;
    cr_assert_eq(fvm_io(v64, B(0x64, 0x6e), true, 1, true, 0x80, NULL), OK);
    cr_assert_eq(v64->io_log[0].data, 0x77);
    cr_assert_eq(v64->gpr[RSI], 0x11);
    v64->gpr[RSI] = 0x10;
    cr_assert_eq(fvm_io(v64, B(0x6e), true, 1, true, 0x80, NULL), OK);
    cr_assert_eq(v64->io_log[0].data, 0x66);
    fvm_free(vm);
    fvm_free(v64);
}

Test(io, rep_ins_faults_midway)
{
    struct fakevm *vm = fvm_new(64);
    /* 8 dwords from 0x6ff0 upwards: the fifth lands on page 0x7000. */
    vm->fail_enabled = true;
    vm->fail_page = 0x7000;
    vm->fail_result = HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT;
    vm->gpr[RDI] = 0x6ff0;
    vm->gpr[RCX] = 8;
    vm->gpr[RDX] = 0x1f0;
    vm->io_in_next = 1;
    struct hvp_emu_fault f;
    uint32_t st = fvm_io(vm, B(0xf3, 0x6d), false, 4, true, 0x1f0, &f);
    cr_assert_eq(st, HVP_EMU_STATUS_EXCEPTION, "status %#x", st);
    cr_assert_eq(f.vector, 14);
    cr_assert_eq(f.error_code, 0x2, "write, not present, supervisor");
    cr_assert_eq(f.cr2, 0x7000);
    cr_assert_eq(vm->n_io, 4, "no port read for the faulting iteration");
    cr_assert_eq(vm->gpr[RCX], 4);
    cr_assert_eq(vm->gpr[RDI], 0x7000);
    cr_assert_eq(vm->rip, FVM_CODE_GVA, "RIP stays on the instruction");
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(rd(vm->ram + 0x6ff0 + 4 * i, 4), 1 + i);
    fvm_free(vm);
}

Test(io, rep_outs_fault_without_fault_struct)
{
    struct fakevm *vm = fvm_new(64);
    vm->cpl = 3;
    vm->fail_enabled = true;
    vm->fail_page = 0x6000;
    vm->fail_result = HVP_EMU_TRANSLATE_PRIVILEGE_VIOLATION;
    vm->gpr[RSI] = 0x6000;
    vm->gpr[RCX] = 3;
    vm->gpr[RDX] = 0x1f0;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_io(vm, B(0xf3, 0x6e), true, 1, true, 0x1f0, &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.error_code, 0x5, "read, protection, user");
    cr_assert_eq(fvm_io(vm, B(0xf3, 0x6e), true, 1, true, 0x1f0, NULL),
                 HVP_EMU_STATUS_GUEST_CANNOT_BE_FAULTED);
    cr_assert_eq(vm->n_io, 0);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- MMIO moves */

Test(mmio, mov_store_and_load_sizes)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x100);
    vm->gpr[RAX] = 0x8877665544332211ull;
    struct {
        const uint8_t *b;
        size_t n;
        unsigned size;
    } st[] = {
        {B(0x88, 0x03), 1}, {B(0x66, 0x89, 0x03), 2}, {B(0x89, 0x03), 4}, {B(0x48, 0x89, 0x03), 8}};
    for (unsigned i = 0; i < 4; i++) {
        memset(vm->mmio + 0x100, 0xee, 16);
        vm->rip = FVM_CODE_GVA;
        cr_assert_eq(fvm_mmio(vm, st[i].b, st[i].n, NULL), OK);
        cr_assert_eq(vm->n_mem, 1);
        cr_assert_eq(vm->mem_log[0].size, st[i].size);
        cr_assert_eq(vm->mem_log[0].dir, HVP_EMU_MEM_WRITE);
        cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0x100);
        cr_assert_eq(rd(vm->mmio + 0x100, st[i].size), rd((uint8_t *)&vm->gpr[RAX], st[i].size));
        cr_assert_eq(vm->mmio[0x100 + st[i].size], 0xee);
        cr_assert_eq(vm->rip, FVM_CODE_GVA + st[i].n);
    }
    /* Loads: 8/16 merge, 32 zero-extends, AH form. */
    memcpy(vm->mmio + 0x100, "\x81\x82\x83\x84\x85\x86\x87\x88", 8);
    vm->gpr[RCX] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0x8a, 0x0b), NULL), OK);
    cr_assert_eq(vm->gpr[RCX], 0xffffffffffffff81ull);
    cr_assert_eq(fvm_mmio(vm, B(0x8a, 0x2b), NULL), OK); /* mov ch, [rbx] */
    cr_assert_eq(vm->gpr[RCX], 0xffffffffffff8181ull);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x8b, 0x0b), NULL), OK);
    cr_assert_eq(vm->gpr[RCX], 0xffffffffffff8281ull);
    cr_assert_eq(fvm_mmio(vm, B(0x8b, 0x0b), NULL), OK);
    cr_assert_eq(vm->gpr[RCX], 0x84838281ull);
    cr_assert_eq(fvm_mmio(vm, B(0x4c, 0x8b, 0x03), NULL), OK); /* mov r8, [rbx] */
    cr_assert_eq(vm->gpr[R8], 0x8887868584838281ull);
    fvm_free(vm);
}

Test(mmio, mov_immediates_and_extensions)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x200);
    /* mov qword [rbx+8], -2 (imm32 sign-extended) */
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0xc7, 0x43, 0x08, 0xfe, 0xff, 0xff, 0xff), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x208, 8), 0xfffffffffffffffeull);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0xc7, 0x03, 0x34, 0x12), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x200, 2), 0x1234);
    cr_assert_eq(fvm_mmio(vm, B(0xc6, 0x43, 0x02, 0x9a), NULL), OK);
    cr_assert_eq(vm->mmio[0x202], 0x9a);
    /* movzx/movsx/movsxd */
    memcpy(vm->mmio + 0x210, "\x80\x90\xa0\xb0", 4);
    vm->gpr[RSI] = fvm_mmio_gva(vm, 0x210);
    vm->gpr[RAX] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0xb6, 0x06), NULL), OK); /* movzx eax, byte [rsi] */
    cr_assert_eq(vm->gpr[RAX], 0x80);
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x0f, 0xbe, 0x06), NULL), OK); /* movsx rax, byte */
    cr_assert_eq(vm->gpr[RAX], 0xffffffffffffff80ull);
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0xbf, 0x06), NULL), OK); /* movsx eax, word */
    cr_assert_eq(vm->gpr[RAX], 0xffff9080u);
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x63, 0x06), NULL), OK); /* movsxd rax, dword */
    cr_assert_eq(vm->gpr[RAX], 0xffffffffb0a09080ull);
    fvm_free(vm);
}

Test(mmio, moffs)
{
    struct fakevm *vm = fvm_new(64);
    uint64_t a = fvm_mmio_gva(vm, 0x300);
    uint8_t b[10] = {0x48, 0xa3};
    memcpy(b + 2, &a, 8);
    vm->gpr[RAX] = 0x0102030405060708ull;
    cr_assert_eq(fvm_mmio(vm, b, 10, NULL), OK); /* mov [moffs64], rax */
    cr_assert_eq(rd(vm->mmio + 0x300, 8), 0x0102030405060708ull);
    b[0] = 0xa0;
    memcpy(b + 1, &a, 8);
    vm->gpr[RAX] = 0;
    cr_assert_eq(fvm_mmio(vm, b, 9, NULL), OK); /* mov al, [moffs64] */
    cr_assert_eq(vm->gpr[RAX], 0x08);
    /* 32-bit code: 4-byte offsets, DS base applies. */
    struct fakevm *v32 = fvm_new(32);
    v32->seg[3].base = FVM_MMIO_GPA;
    v32->gpr[RAX] = 0xcafef00d;
    cr_assert_eq(fvm_mmio(v32, B(0xa3, 0x40, 0x00, 0x00, 0x00), NULL), OK);
    cr_assert_eq(rd(v32->mmio + 0x40, 4), 0xcafef00d);
    v32->rip = FVM_CODE_GVA;
    cr_assert_eq(fvm_mmio(v32, B(0x66, 0xa1, 0x40, 0x00, 0x00, 0x00), NULL), OK);
    cr_assert_eq(v32->gpr[RAX], 0xcafef00d);
    cr_assert_eq(v32->rip, FVM_CODE_GVA + 6);
    fvm_free(vm);
    fvm_free(v32);
}

Test(mmio, addressing_forms)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RAX] = 0x600dcafe;
    /* RIP-relative: next RIP 0x1006 + disp = window + 0x20. */
    uint32_t disp = (uint32_t)(fvm_mmio_gva(vm, 0x20) - (FVM_CODE_GVA + 6));
    uint8_t b[6] = {0x89, 0x05};
    memcpy(b + 2, &disp, 4);
    cr_assert_eq(fvm_mmio(vm, b, 6, NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x20, 4), 0x600dcafe);
    /* SIB: [rbx + rcx*4 + disp8]. */
    vm->rip = FVM_CODE_GVA;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x100);
    vm->gpr[RCX] = 3;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x44, 0x8b, 0x04), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x110, 4), 0x600dcafe);
    /* FS/GS bases apply in 64-bit mode. */
    vm->seg[5].base = fvm_mmio_gva(vm, 0x200);
    vm->gpr[RBX] = 0x30;
    cr_assert_eq(fvm_mmio(vm, B(0x65, 0x89, 0x03), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x230, 4), 0x600dcafe);
    vm->seg[4].base = fvm_mmio_gva(vm, 0x300) - 0x100010;
    cr_assert_eq(fvm_mmio(vm, B(0x64, 0x48, 0xa3, 0x10, 0x00, 0x10, 0x00, 0, 0, 0, 0), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x300, 8), 0x600dcafe);
    /* 32-bit address size truncates the sum: 0xffffffff + 0x11 wraps to 0x10. */
    vm->gpr[RBX] = 0xdead0000ffffffffull;
    vm->seg[5].base = fvm_mmio_gva(vm, 0x400);
    cr_assert_eq(fvm_mmio(vm, B(0x65, 0x67, 0x89, 0x43, 0x11), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x410, 4), 0x600dcafe);
    /* 32-bit code with 16-bit addressing. */
    struct fakevm *v32 = fvm_new(32);
    v32->seg[3].base = FVM_MMIO_GPA;
    v32->gpr[RBX] = 0x12340080;
    v32->gpr[RAX] = 0xabcdef01;
    cr_assert_eq(fvm_mmio(v32, B(0x67, 0x89, 0x07), NULL), OK); /* mov [bx], eax */
    cr_assert_eq(rd(v32->mmio + 0x80, 4), 0xabcdef01);
    fvm_free(v32);
    fvm_free(vm);
}

Test(mmio, divide_error)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x40);
    vm->gpr[RAX] = 100;
    vm->gpr[RDX] = 0;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0xf7, 0x33), &f), HVP_EMU_STATUS_EXCEPTION); /* div dword [rbx] */
    cr_assert_eq(f.vector, 0);
    cr_assert_eq(f.has_error_code, 0);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    vm->mmio[0x40] = 7;
    cr_assert_eq(fvm_mmio(vm, B(0xf7, 0x33), &f), OK);
    cr_assert_eq(vm->gpr[RAX], 14);
    cr_assert_eq(vm->gpr[RDX], 2);
    vm->rip = FVM_CODE_GVA;
    vm->gpr[RDX] = 7; /* quotient overflows 32 bits */
    cr_assert_eq(fvm_mmio(vm, B(0xf7, 0x33), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 0);
    fvm_free(vm);
}

Test(mmio, push_pop_memory)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x80);
    vm->gpr[RSP] = 0x9000;
    memcpy(vm->mmio + 0x80, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    cr_assert_eq(fvm_mmio(vm, B(0xff, 0x33), NULL), OK); /* push qword [rbx] */
    cr_assert_eq(vm->gpr[RSP], 0x8ff8);
    cr_assert_eq(rd(vm->ram + 0x8ff8, 8), 0x0807060504030201ull);
    vm->rip = FVM_CODE_GVA;
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0xff, 0x33), NULL), OK); /* push word [rbx] */
    cr_assert_eq(vm->gpr[RSP], 0x8ff6);
    cr_assert_eq(rd(vm->ram + 0x8ff6, 2), 0x0201);
    /* pop qword [rsp+8]: the address uses the incremented RSP. */
    vm->gpr[RSP] = fvm_mmio_gva(vm, 0x100);
    memcpy(vm->mmio + 0x100, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
    vm->rip = FVM_CODE_GVA;
    cr_assert_eq(fvm_mmio(vm, B(0x8f, 0x44, 0x24, 0x08), NULL), OK);
    cr_assert_eq(vm->gpr[RSP], fvm_mmio_gva(vm, 0x108));
    cr_assert_eq(rd(vm->mmio + 0x110, 8), 0x8877665544332211ull);
    /* A faulting destination leaves RSP alone. */
    vm->gpr[RSP] = fvm_mmio_gva(vm, 0x100);
    vm->gpr[RBX] = 0x0000900000000000ull;
    vm->rip = FVM_CODE_GVA;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x8f, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(vm->gpr[RSP], fvm_mmio_gva(vm, 0x100));
    /* 16-bit stack in 32-bit code: SP wraps, ESP's upper half stays. */
    struct fakevm *v32 = fvm_new(32);
    v32->seg[2].attributes &= (uint16_t)~HVP_EMU_SEG_DB;
    v32->seg[2].base = 0x20000;
    v32->seg[3].base = FVM_MMIO_GPA;
    v32->gpr[RSP] = 0xabcd0002;
    v32->gpr[RBX] = 0x80;
    cr_assert_eq(fvm_mmio(v32, B(0xff, 0x33), NULL), OK); /* push dword [ebx] */
    cr_assert_eq(v32->gpr[RSP], 0xabcdfffe);
    fvm_free(v32);
    fvm_free(vm);
}

Test(mmio, xlat)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x100);
    vm->gpr[RAX] = 0x12345680; /* AL = 0x80: unsigned index */
    vm->mmio[0x180] = 0x5e;
    cr_assert_eq(fvm_mmio(vm, B(0xd7), NULL), OK);
    cr_assert_eq(vm->gpr[RAX], 0x1234565e);
    fvm_free(vm);
}

Test(mmio, completion_clears_rf)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0);
    vm->rflags |= 0x10000;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), OK);
    cr_assert_eq(vm->rflags & 0x10000, 0);
    fvm_free(vm);
}

Test(mmio, sixteen_bit_addressing)
{
    struct fakevm *vm = fvm_new(16);
    vm->cr0_pe = 0;
    for (unsigned i = 0; i < 6; i++)
        vm->seg[i].base = 0;
    vm->seg[3].base = FVM_MMIO_GPA; /* real-mode DS = 0x10000 -> window */
    vm->seg[1].base = 0;
    vm->gpr[RBX] = 0xffff0010;
    vm->gpr[RSI] = 0x0008;
    vm->gpr[RAX] = 0x1234;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x40, 0x02), NULL), OK); /* mov [bx+si+2], ax */
    cr_assert_eq(rd(vm->mmio + 0x1a, 2), 0x1234);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + 3);
    /* A word at offset 0xffff runs past the 64 KiB limit: #GP(0). */
    vm->gpr[RBX] = 0xffff;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x07), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    fvm_free(vm);
}

Test(mmio, xmm_moves)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x400);
    for (unsigned i = 0; i < 16; i++)
        vm->mmio[0x400 + i] = (uint8_t)(0xa0 + i);
    vm->xmm[1][0] = vm->xmm[1][1] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x6f, 0x0b), NULL), OK); /* movdqa xmm1, [rbx] */
    cr_assert_eq(vm->xmm[1][0], rd(vm->mmio + 0x400, 8));
    cr_assert_eq(vm->xmm[1][1], rd(vm->mmio + 0x408, 8));
    cr_assert_eq(vm->mem_log[0].size, 16);
    vm->xmm[9][0] = 0x1111111111111111ull;
    vm->xmm[9][1] = 0x2222222222222222ull;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x503);
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0x44, 0x0f, 0x7f, 0x0b), NULL), OK); /* movdqu [rbx], xmm9 */
    cr_assert_eq(rd(vm->mmio + 0x503, 8), 0x1111111111111111ull);
    cr_assert_eq(rd(vm->mmio + 0x50b, 8), 0x2222222222222222ull);
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0x11, 0x0b), NULL), OK); /* movups [rbx], xmm1 */
    cr_assert_eq(rd(vm->mmio + 0x503, 8), vm->xmm[1][0]);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x10, 0x13), NULL), OK); /* movupd xmm2, [rbx] */
    cr_assert_eq(vm->xmm[2][1], vm->xmm[1][1]);
    /* Aligned forms fault on a misaligned address. */
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0x28, 0x0b), &f), HVP_EMU_STATUS_EXCEPTION); /* movaps */
    cr_assert_eq(f.vector, 13);
    cr_assert_eq(f.error_code, 0);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x29, 0x0b), &f),
                 HVP_EMU_STATUS_EXCEPTION); /* movapd */
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x7f, 0x0b), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(vm->n_mem, 0);
    /* movd/movq loads zero the rest; stores write only their size. */
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x400);
    vm->xmm[3][0] = vm->xmm[3][1] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x6e, 0x1b), NULL), OK); /* movd xmm3, [rbx] */
    cr_assert_eq(vm->xmm[3][0], rd(vm->mmio + 0x400, 4));
    cr_assert_eq(vm->xmm[3][1], 0);
    vm->xmm[3][1] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0x0f, 0x7e, 0x1b), NULL), OK); /* movq xmm3, [rbx] */
    cr_assert_eq(vm->xmm[3][0], rd(vm->mmio + 0x400, 8));
    cr_assert_eq(vm->xmm[3][1], 0);
    vm->xmm[4][0] = 0x0123456789abcdefull;
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0xd6, 0x63, 0x10), NULL), OK); /* movq [rbx+16], xmm4 */
    cr_assert_eq(rd(vm->mmio + 0x410, 8), 0x0123456789abcdefull);
    cr_assert_eq(vm->mem_log[0].size, 8);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x7e, 0x63, 0x20), NULL), OK); /* movd [rbx+32], xmm4 */
    cr_assert_eq(rd(vm->mmio + 0x420, 8) & 0xffffffffu, 0x89abcdefu);
    cr_assert_eq(vm->mem_log[0].size, 4);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x48, 0x0f, 0x7e, 0x63, 0x30), NULL),
                 OK); /* movq [rbx+48], xmm4 */
    cr_assert_eq(rd(vm->mmio + 0x430, 8), 0x0123456789abcdefull);
    /* MMX */
    vm->mmx[2][0] = 0x5555aaaa5555aaaaull;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0x7f, 0x53, 0x40), NULL), OK); /* movq [rbx+64], mm2 */
    cr_assert_eq(rd(vm->mmio + 0x440, 8), 0x5555aaaa5555aaaaull);
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0x6e, 0x0b), NULL), OK); /* movd mm1, [rbx] */
    cr_assert_eq(vm->mmx[1][0], rd(vm->mmio + 0x400, 4));
    fvm_free(vm);
}

Test(mmio, more_vector_moves)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x600);
    for (unsigned i = 0; i < 32; i++)
        vm->mmio[0x600 + i] = (uint8_t)(0x40 + i);
    uint64_t lo = rd(vm->mmio + 0x600, 8), hi = rd(vm->mmio + 0x608, 8);
    /* Non-temporal stores: 16 bytes, aligned; MOVNTQ from MMX. */
    vm->xmm[5][0] = 0x1010101010101010ull;
    vm->xmm[5][1] = 0x2020202020202020ull;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0x2b, 0x6b, 0x10), NULL), OK); /* movntps [rbx+16], xmm5 */
    cr_assert_eq(rd(vm->mmio + 0x618, 8), 0x2020202020202020ull);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0xe7, 0x6b, 0x10), NULL), OK); /* movntdq */
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x2b, 0x6b, 0x10), NULL), OK); /* movntpd */
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0xe7, 0x6b, 0x08), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    vm->mmx[3][0] = 0x3333444455556666ull;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0xe7, 0x5b, 0x08), NULL), OK); /* movntq [rbx+8], mm3 */
    cr_assert_eq(rd(vm->mmio + 0x608, 8), 0x3333444455556666ull);
    hi = 0x3333444455556666ull;
    /* Loads: LDDQU (unaligned), MOVNTDQA (aligned). */
    vm->gpr[RSI] = fvm_mmio_gva(vm, 0x601);
    cr_assert_eq(fvm_mmio(vm, B(0xf2, 0x0f, 0xf0, 0x0e), NULL), OK); /* lddqu xmm1, [rsi] */
    cr_assert_eq(vm->xmm[1][0], rd(vm->mmio + 0x601, 8));
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0x38, 0x2a, 0x13), NULL),
                 OK); /* movntdqa xmm2, [rbx] */
    cr_assert_eq(vm->xmm[2][0], lo);
    cr_assert_eq(vm->xmm[2][1], hi);
    /* MOVSS/MOVSD: loads zero the rest, stores write their size. */
    vm->xmm[6][0] = vm->xmm[6][1] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0x0f, 0x10, 0x33), NULL), OK); /* movss xmm6, [rbx] */
    cr_assert_eq(vm->xmm[6][0], lo & 0xffffffffu);
    cr_assert_eq(vm->xmm[6][1], 0);
    vm->xmm[6][1] = ~0ull;
    cr_assert_eq(fvm_mmio(vm, B(0xf2, 0x0f, 0x10, 0x33), NULL), OK); /* movsd xmm6, [rbx] */
    cr_assert_eq(vm->xmm[6][0], lo);
    cr_assert_eq(vm->xmm[6][1], 0);
    vm->xmm[7][0] = 0xaaaabbbbccccddddull;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0x0f, 0x11, 0x7b, 0x20), NULL),
                 OK); /* movss [rbx+32], xmm7 */
    cr_assert_eq(vm->mem_log[0].size, 4);
    cr_assert_eq(rd(vm->mmio + 0x620, 4), 0xccccddddu);
    /* MOVLPS/MOVHPS merge one half. */
    vm->xmm[8][0] = 1;
    vm->xmm[8][1] = 2;
    cr_assert_eq(fvm_mmio(vm, B(0x44, 0x0f, 0x12, 0x03), NULL), OK); /* movlps xmm8, [rbx] */
    cr_assert_eq(vm->xmm[8][0], lo);
    cr_assert_eq(vm->xmm[8][1], 2);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x44, 0x0f, 0x16, 0x03), NULL), OK); /* movhpd xmm8, [rbx] */
    cr_assert_eq(vm->xmm[8][0], lo);
    cr_assert_eq(vm->xmm[8][1], lo);
    vm->xmm[8][1] = 0x7777777788888888ull;
    cr_assert_eq(fvm_mmio(vm, B(0x44, 0x0f, 0x17, 0x43, 0x28), NULL),
                 OK); /* movhps [rbx+40], xmm8 */
    cr_assert_eq(rd(vm->mmio + 0x628, 8), 0x7777777788888888ull);
    cr_assert_eq(vm->mem_log[0].size, 8);
    fvm_free(vm);
}

Test(mmio, vex_stores_only)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x800);
    vm->xmm[2][0] = 0x0102030405060708ull;
    vm->xmm[2][1] = 0x1112131415161718ull;
    cr_assert_eq(fvm_mmio(vm, B(0xc5, 0xfa, 0x7f, 0x13), NULL), OK); /* vmovdqu [rbx], xmm2 */
    cr_assert_eq(rd(vm->mmio + 0x808, 8), 0x1112131415161718ull);
    /* Loads would zero YMM bits 255:128; 256-bit forms need them: refused. */
    cr_assert_eq(fvm_mmio(vm, B(0xc5, 0xfa, 0x6f, 0x13), NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(fvm_mmio(vm, B(0xc5, 0xfe, 0x7f, 0x13), NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    cr_assert_eq(vm->n_mem, 0);
    fvm_free(vm);
}

Test(mmio, mov_store_segment_register)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x700);
    vm->seg[3].selector = 0x2b;
    memset(vm->mmio + 0x700, 0xff, 4);
    cr_assert_eq(fvm_mmio(vm, B(0x8c, 0x1b), NULL), OK); /* mov [rbx], ds */
    cr_assert_eq(rd(vm->mmio + 0x700, 4), 0xffff002bu, "16-bit store");
    /* Loading a segment register needs a descriptor: refused. */
    cr_assert_eq(fvm_mmio(vm, B(0x8e, 0x1b), NULL), HVP_EMU_STATUS_INTERNAL_FAILURE);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- MMIO strings */

struct strcase {
    unsigned op; /* a4 a6 aa ac ae */
    unsigned size;
    uint8_t rep; /* 0, f3, f2 */
    bool df;
    uint64_t count;
};

/* Checks a MOVS/STOS/LODS with a model of the hardware. */
static void string_mmio(const struct strcase *c)
{
    struct fakevm *vm = fvm_new(64);
    uint8_t b[4];
    size_t n = 0;
    if (c->rep) b[n++] = c->rep;
    if (c->size == 2) b[n++] = 0x66;
    if (c->size == 8) b[n++] = 0x48;
    b[n++] = (uint8_t)(c->op | (c->size > 1));
    for (unsigned i = 0; i < FVM_MMIO_SIZE; i++)
        vm->mmio[i] = (uint8_t)(i * 13);
    for (unsigned i = 0; i < 0x1000; i++)
        vm->ram[0x8000 + i] = (uint8_t)(i * 5 + 3);
    uint8_t mmio0[FVM_MMIO_SIZE], ram0[0x1000];
    memcpy(mmio0, vm->mmio, sizeof(mmio0));
    memcpy(ram0, vm->ram + 0x8000, sizeof(ram0));
    /* RSI in RAM, RDI in MMIO (and the other way for LODS). */
    uint64_t si = c->op == 0xac ? fvm_mmio_gva(vm, 0x800) : 0x8800;
    uint64_t di = fvm_mmio_gva(vm, 0x1800);
    vm->gpr[RSI] = si;
    vm->gpr[RDI] = di;
    vm->gpr[RCX] = c->count;
    vm->gpr[RAX] = 0xf1e2d3c4b5a69788ull;
    if (c->df) vm->rflags |= 0x400;
    uint32_t st = fvm_mmio(vm, b, n, NULL);
    cr_assert_eq(st, OK);
    uint64_t iters = c->rep ? c->count : 1;
    int64_t d = c->df ? -(int64_t)c->size : (int64_t)c->size;
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t so = (si + (uint64_t)((int64_t)i * d)), dof = di + (uint64_t)((int64_t)i * d);
        if (c->op == 0xa4)
            cr_assert_eq(rd(fvm_ptr(vm, dof), c->size), rd(ram0 + (so - 0x8000), c->size));
        if (c->op == 0xaa)
            cr_assert_eq(rd(fvm_ptr(vm, dof), c->size),
                         vm->gpr[RAX] & (c->size == 8 ? ~0ull : (1ull << 8 * c->size) - 1));
    }
    if (c->op == 0xac && iters) {
        uint64_t last = si + (uint64_t)((int64_t)(iters - 1) * d);
        uint64_t m = c->size == 8 ? ~0ull : (1ull << 8 * c->size) - 1;
        uint64_t keep = c->size == 4 ? 0 : 0xf1e2d3c4b5a69788ull & ~m;
        cr_assert_eq(vm->gpr[RAX], keep | rd(mmio0 + (last - fvm_mmio_gva(vm, 0)), c->size));
    }
    if (c->op != 0xac) cr_assert_eq(vm->gpr[RDI], di + (uint64_t)((int64_t)iters * d));
    if (c->op != 0xaa) cr_assert_eq(vm->gpr[RSI], si + (uint64_t)((int64_t)iters * d));
    cr_assert_eq(vm->gpr[RCX], c->rep ? 0 : c->count);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + n);
    /* Nothing else was written. */
    if (c->op == 0xac) cr_assert_eq(memcmp(mmio0, vm->mmio, sizeof(mmio0)), 0);
    cr_assert_eq(memcmp(ram0, vm->ram + 0x8000, sizeof(ram0)), 0);
    unsigned writes = 0;
    for (unsigned i = 0; i < vm->n_mem; i++)
        writes += vm->mem_log[i].dir == HVP_EMU_MEM_WRITE;
    cr_assert_eq(writes, c->op == 0xac ? 0 : iters);
    fvm_free(vm);
}

Test(mmio, movs_stos_lods)
{
    static const unsigned ops[] = {0xa4, 0xaa, 0xac};
    static const uint8_t reps[] = {0, 0xf3, 0xf2};
    static const uint64_t counts[] = {0, 1, 2, 100};
    for (unsigned o = 0; o < 3; o++)
        for (unsigned size = 1; size <= 8; size *= 2)
            for (unsigned r = 0; r < 3; r++)
                for (unsigned df = 0; df < 2; df++)
                    for (unsigned k = 0; k < 4; k++) {
                        struct strcase c = {ops[o], size, reps[r], df, counts[k]};
                        string_mmio(&c);
                    }
}

Test(mmio, real_mode_rep_movsw_backwards)
{
    /* Real mode: source FS:SI (override), destination ES:DI in the MMIO
     * window, DF = 1, 16-bit registers with junk above. */
    struct fakevm *vm = fvm_new(16);
    vm->cr0_pe = 0;
    vm->seg[4].base = 0x20000; /* FS */
    vm->seg[0].base = FVM_MMIO_GPA;
    for (unsigned i = 0; i < 16; i++)
        vm->ram[0x20000 + 0x100 + i] = (uint8_t)(0xc0 + i);
    vm->gpr[RSI] = 0x77770000 | 0x10e;
    vm->gpr[RDI] = 0x88880000 | 0x20e;
    vm->gpr[RCX] = 0x99990000 | 8;
    vm->rflags |= 0x400;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0x64, 0xa5), NULL), OK);
    cr_assert_eq(vm->gpr[RCX], 0x99990000);
    cr_assert_eq(vm->gpr[RSI], 0x77770000 | 0x0fe);
    cr_assert_eq(vm->gpr[RDI], 0x88880000 | 0x1fe);
    cr_assert_eq(memcmp(vm->mmio + 0x200, vm->ram + 0x20100, 16), 0);
    cr_assert_eq(vm->n_mem, 8);
    cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0x20e, "highest word first");
    fvm_free(vm);
}

Test(mmio, repe_cmps_and_repne_scas_stop)
{
    struct fakevm *vm = fvm_new(64);
    memcpy(vm->ram + 0x8000, "abcdefgh", 8);
    memcpy(vm->mmio + 0x10, "abcdXfgh", 8);
    vm->gpr[RSI] = 0x8000;
    vm->gpr[RDI] = fvm_mmio_gva(vm, 0x10);
    vm->gpr[RCX] = 8;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0xa6), NULL), OK); /* repe cmpsb */
    cr_assert_eq(vm->gpr[RCX], 3, "stops after the mismatch");
    cr_assert_eq(vm->gpr[RSI], 0x8005);
    cr_assert(!(vm->rflags & 0x40), "ZF clear");
    cr_assert(!(vm->rflags & 0x1), "CF clear: 'e' - 'X' does not borrow");
    vm->gpr[RDI] = fvm_mmio_gva(vm, 0x10);
    vm->gpr[RCX] = 100;
    vm->gpr[RAX] = 'X';
    vm->rip = FVM_CODE_GVA;
    cr_assert_eq(fvm_mmio(vm, B(0xf2, 0xae), NULL), OK); /* repne scasb */
    cr_assert_eq(vm->gpr[RCX], 95);
    cr_assert_eq(vm->gpr[RDI], fvm_mmio_gva(vm, 0x15));
    cr_assert(vm->rflags & 0x40, "ZF set");
    fvm_free(vm);
}

Test(mmio, rep_movs_faults_midway)
{
    struct fakevm *vm = fvm_new(64);
    /* Destination runs from MMIO page 1 into page 2, which is not present. */
    vm->fail_enabled = true;
    vm->fail_page = fvm_mmio_gva(vm, 0x2000);
    vm->fail_result = HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT;
    vm->cpl = 3;
    vm->gpr[RSI] = 0x8000;
    vm->gpr[RDI] = fvm_mmio_gva(vm, 0x1ff8);
    vm->gpr[RCX] = 10;
    for (unsigned i = 0; i < 80; i++)
        vm->ram[0x8000 + i] = (uint8_t)i;
    struct hvp_emu_fault f;
    uint32_t st = fvm_mmio(vm, B(0xf3, 0x48, 0xa5), &f); /* rep movsq */
    cr_assert_eq(st, HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 14);
    cr_assert_eq(f.error_code, 0x6, "user write to a non-present page");
    cr_assert_eq(f.cr2, fvm_mmio_gva(vm, 0x2000));
    cr_assert_eq(vm->gpr[RCX], 9);
    cr_assert_eq(vm->gpr[RSI], 0x8008);
    cr_assert_eq(vm->gpr[RDI], fvm_mmio_gva(vm, 0x2000));
    cr_assert_eq(rd(vm->mmio + 0x1ff8, 8), 0x0706050403020100ull, "first iteration committed");
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    fvm_free(vm);
}

Test(mmio, rep_beyond_max_resumes)
{
    /* 32-bit code, ES:EDI in RAM; more iterations than one call does. */
    struct fakevm *vm = fvm_new(32);
    vm->gpr[RDI] = 0x10000;
    vm->gpr[RCX] = HVP_EMULATOR_MAX_REP + 5;
    vm->gpr[RAX] = 0x5a;
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0xaa), NULL), OK);
    cr_assert_eq(vm->rip, FVM_CODE_GVA, "re-executed to finish");
    cr_assert_eq(vm->gpr[RCX], 5);
    cr_assert_eq(vm->gpr[RDI], 0x10000 + HVP_EMULATOR_MAX_REP);
    cr_assert_eq(fvm_mmio(vm, B(0xf3, 0xaa), NULL), OK);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + 2);
    cr_assert_eq(vm->gpr[RCX], 0);
    cr_assert_eq(vm->ram[0x10000 + HVP_EMULATOR_MAX_REP + 4], 0x5a);
    cr_assert_eq(vm->ram[0x10000 + HVP_EMULATOR_MAX_REP + 5], 0);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- splits, faults */

Test(mmio, access_split_across_pages)
{
    struct fakevm *vm = fvm_new(64);
    /* RAM page 0x8000 followed by... use the window: pages 0 and 1. */
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x0ffd);
    vm->gpr[RAX] = 0x8877665544332211ull;
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x89, 0x03), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0xffd, 8), 0x8877665544332211ull);
    /* 3 bytes on the first page (2 + 1), 5 on the second (4 + 1). */
    cr_assert_eq(vm->n_mem, 4);
    cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0xffd);
    cr_assert_eq(vm->mem_log[0].size, 2);
    cr_assert_eq(vm->mem_log[1].size, 1);
    cr_assert_eq(vm->mem_log[2].gpa, FVM_MMIO_GPA + 0x1000);
    cr_assert_eq(vm->mem_log[2].size, 4);
    cr_assert_eq(vm->mem_log[3].size, 1);
    /* With a shifted mapping, each page is translated separately. */
    vm->va_base = 0xffff800000000000ull;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x1ffe);
    vm->gpr[RAX] = 0xa1b2c3d4;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x1ffe, 4), 0xa1b2c3d4);
    cr_assert_eq(vm->n_translate, 2, "one translation per data page");
    fvm_free(vm);
}

Test(mmio, split_write_faults_before_writing)
{
    struct fakevm *vm = fvm_new(64);
    vm->fail_enabled = true;
    vm->fail_page = fvm_mmio_gva(vm, 0x1000);
    vm->fail_result = HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x0ffe);
    memset(vm->mmio + 0xff0, 0x33, 16);
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 14);
    cr_assert_eq(f.cr2, fvm_mmio_gva(vm, 0x1000));
    cr_assert_eq(f.error_code, 0x2);
    cr_assert_eq(vm->n_mem, 0, "the first page was not written");
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    /* A read of the same: error code without W; reserved-bit fault. */
    vm->fail_result = HVP_EMU_TRANSLATE_INVALID_PAGE_TABLE_FLAGS;
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x8b, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.error_code, 0x9);
    fvm_free(vm);
}

Test(mmio, non_canonical_is_gp)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = 0x0000800000000000ull;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    cr_assert_eq(f.error_code, 0);
    /* Last byte non-canonical. */
    vm->gpr[RBX] = 0x00007ffffffffffeull;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    /* Stack-based: #SS. */
    vm->gpr[RBP] = 0x0000800000000000ull;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x45, 0x00), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 12);
    cr_assert_eq(vm->n_mem, 0);
    /* With 5-level paging the same address is canonical: it gets translated
     * (and is not mapped here: #PF). */
    vm->la57 = 1;
    vm->gpr[RBX] = 0x0000800000000000ull;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 14);
    vm->gpr[RBX] = 0x0100000000000000ull;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    fvm_free(vm);
}

Test(mmio, segment_limit_and_rights)
{
    struct fakevm *vm = fvm_new(32);
    vm->seg[3].base = FVM_MMIO_GPA;
    vm->seg[3].limit = 0xfff;
    vm->gpr[RBX] = 0xffe;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    vm->gpr[RBX] = 0xffc;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), OK);
    /* Read-only data segment refuses writes, allows reads. */
    vm->seg[3].attributes &= (uint16_t)~0x2;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(fvm_mmio(vm, B(0x8b, 0x03), &f), OK);
    /* SS-relative: #SS. */
    vm->seg[2].limit = 0xff;
    vm->gpr[RBP] = 0x100;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x45, 0x00), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 12);
    /* Expand-down (type 7): valid offsets lie above the limit. */
    vm->seg[3].attributes = (uint16_t)((vm->seg[3].attributes & ~0xf) | 0x7);
    vm->seg[3].limit = 0xfff;
    vm->gpr[RBX] = 0x800;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    vm->gpr[RBX] = 0x1000;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), OK);
    cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0x1000);
    /* A not-present segment faults. */
    vm->seg[3].attributes &= (uint16_t)~HVP_EMU_SEG_P;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    fvm_free(vm);
}

Test(mmio, alignment_check_at_cpl3)
{
    struct fakevm *vm = fvm_new(64);
    vm->cpl = 3;
    vm->cr0_am = 1;
    vm->rflags |= 0x40000;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x102);
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 17);
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x89, 0x03), &f), OK);
    vm->cpl = 0;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), &f), OK);
    fvm_free(vm);
}

Test(mmio, cmpxchg16b_alignment)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x108);
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x0f, 0xc7, 0x0b), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 13);
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0xc7, 0x0b), &f), OK, "cmpxchg8b needs no alignment");
    fvm_free(vm);
}

Test(mmio, bt_register_offset_addresses_beyond_operand)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x800);
    vm->gpr[RCX] = (uint64_t)-33; /* dword -2, bit 31 */
    vm->mmio[0x7fb] = 0x80;
    cr_assert_eq(fvm_mmio(vm, B(0x0f, 0xab, 0x0b), NULL), OK); /* bts [rbx], ecx */
    cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0x7f8);
    cr_assert(vm->rflags & 1, "CF = old bit");
    vm->gpr[RCX] = 0xffff0000u | 17;                                 /* 16-bit: word 1, bit 1 */
    cr_assert_eq(fvm_mmio(vm, B(0x66, 0x0f, 0xb3, 0x0b), NULL), OK); /* btr [rbx], cx */
    cr_assert_eq(vm->mem_log[0].gpa, FVM_MMIO_GPA + 0x802);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- fetch, callbacks */

Test(mmio, fetches_missing_instruction_bytes)
{
    struct fakevm *vm = fvm_new(64);
    vm->deliver = 2;
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x10);
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0xc7, 0x03, 0x78, 0x56, 0x34, 0x12), NULL), OK);
    cr_assert_eq(rd(vm->mmio + 0x10, 8), 0x12345678);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + 7);
    /* An instruction ending at a page end: the next page is never touched. */
    vm->deliver = 0;
    vm->rip = 0x2000 - 2;
    vm->fail_enabled = true;
    vm->fail_page = 0x2000;
    vm->fail_result = HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), OK);
    /* One crossing into the missing page: #PF for the fetch. */
    vm->rip = 0x2000 - 2;
    struct hvp_emu_fault f;
    cr_assert_eq(fvm_mmio(vm, B(0x48, 0x89, 0x03), &f), HVP_EMU_STATUS_EXCEPTION);
    cr_assert_eq(f.vector, 14);
    cr_assert_eq(f.error_code, 0x10, "instruction fetch");
    cr_assert_eq(f.cr2, 0x2000);
    fvm_free(vm);
}

Test(mmio, callback_failures_map_to_status)
{
    struct fakevm *vm = fvm_new(64);
    vm->gpr[RBX] = fvm_mmio_gva(vm, 0x10);
    vm->mem_cb_fails = true;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_MEMORY_CALLBACK_FAILED);
    cr_assert_eq(vm->rip, FVM_CODE_GVA);
    vm->mem_cb_fails = false;
    vm->translate_cb_fails = true;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_TRANSLATE_CALLBACK_FAILED);
    vm->translate_cb_fails = false;
    vm->gpa_misaligned = true;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_TRANSLATE_GPA_NOT_ALIGNED);
    vm->gpa_misaligned = false;
    vm->get_fails = true;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_GET_REGISTERS_FAILED);
    vm->get_fails = false;
    vm->set_fails = true;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_SET_REGISTERS_FAILED);
    vm->set_fails = false;
    vm->fail_enabled = true;
    vm->fail_page = fvm_mmio_gva(vm, 0);
    vm->fail_result = HVP_EMU_TRANSLATE_INTERCEPT;
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL), HVP_EMU_STATUS_TRANSLATE_CALLBACK_FAILED);
    cr_assert_eq(fvm_mmio(vm, B(0x89, 0x03), NULL) & HVP_EMU_STATUS_SUCCESS, 0);
    fvm_free(vm);
}

/* ---------------------------------------------------------------- robustness */

static uint64_t xs(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random bytes and registers: whatever the guest executes, the emulator
 * returns a status, never touches memory outside the callbacks, and RIP
 * either stays or moves by at most 15. (Run under ASan+UBSan too.) */
Test(robust, random_instructions_never_crash)
{
    static const uint8_t starts[] = {0x89, 0x8b, 0x01, 0x31, 0x80, 0x81, 0xf6, 0xf7, 0xfe,
                                     0xff, 0x0f, 0xa4, 0xa5, 0xa6, 0xab, 0xac, 0xaf, 0xc6,
                                     0xc7, 0x86, 0x87, 0xd1, 0xd3, 0xa1, 0xa3, 0x6c, 0x6f};
    uint64_t x = 0x1234567887654321ull;
    unsigned ok = 0;
    struct fakevm *vms[3] = {fvm_new(16), fvm_new(32), fvm_new(64)};
    for (unsigned i = 0; i < 20000; i++) {
        struct fakevm *vm = vms[i % 3];
        vm->rip = FVM_CODE_GVA;
        uint8_t b[16];
        for (unsigned k = 0; k < 16; k++)
            b[k] = (uint8_t)xs(&x);
        if (xs(&x) % 3) b[xs(&x) % 3] = starts[xs(&x) % sizeof(starts)];
        for (unsigned r = 0; r < 16; r++)
            vm->gpr[r] = (xs(&x) & 1) ? fvm_mmio_gva(vm, xs(&x) % FVM_MMIO_SIZE) : xs(&x);
        vm->gpr[RCX] = xs(&x) % 64;
        vm->rflags = 0x2 | (xs(&x) & 0xcd5);
        vm->cpl = (xs(&x) & 1) ? 3 : 0;
        vm->deliver = (int)(xs(&x) % 17);
        struct hvp_emu_fault f;
        uint32_t st;
        if (xs(&x) % 4 == 0)
            st =
                fvm_io(vm, b, 15, xs(&x) & 1, 1u << (xs(&x) % 3), xs(&x) & 1, (uint16_t)xs(&x), &f);
        else
            st = fvm_mmio(vm, b, 15, &f);
        cr_assert_neq(st, 0xdead0000u);
        cr_assert_neq(st, 0, "some status bit is always set");
        if (st == OK) {
            ok++;
            cr_assert(vm->rip >= FVM_CODE_GVA && vm->rip <= FVM_CODE_GVA + 15, "rip %#llx",
                      (unsigned long long)vm->rip);
        } else {
            cr_assert_eq(st & OK, 0);
        }
        if (st & HVP_EMU_STATUS_EXCEPTION)
            cr_assert(f.vector == 0 || f.vector == 12 || f.vector == 13 || f.vector == 14 ||
                          f.vector == 17,
                      "vector %u", f.vector);
    }
    for (unsigned m = 0; m < 3; m++)
        fvm_free(vms[m]);
    cr_log_info("%u of 20000 random instructions emulated", ok);
}
