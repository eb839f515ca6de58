/* Differential tests: every ALU and data-moving MMIO form runs both on the
 * host CPU (the same instruction bytes, on ordinary memory) and in the
 * emulator (against the fake VM's MMIO window), with random operands; the
 * memory, the registers and the defined arithmetic flags must agree. */
#include <cpuid.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "fakevm.h"

/* ---- the host side: run instruction bytes with a chosen register file ---- */

struct hstate {
    uint64_t gpr[16];
    uint64_t rflags;
    uint64_t xmm[16][2];
};

/* hvp_test_host_exec(state, code): loads RFLAGS, XMM0-15 and every GPR but
 * RSP from *state, calls code (the instruction followed by RET), stores
 * them back. */
void hvp_test_host_exec(struct hstate *s, const void *code);
__asm__(".text\n"
        ".globl hvp_test_host_exec\n"
        ".type hvp_test_host_exec,@function\n"
        "hvp_test_host_exec:\n"
        "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
        "  push %rdi\n"
        "  push %rsi\n"
        "  movdqu 136(%rdi),%xmm0\n movdqu 152(%rdi),%xmm1\n movdqu 168(%rdi),%xmm2\n"
        "  movdqu 184(%rdi),%xmm3\n movdqu 200(%rdi),%xmm4\n movdqu 216(%rdi),%xmm5\n"
        "  movdqu 232(%rdi),%xmm6\n movdqu 248(%rdi),%xmm7\n movdqu 264(%rdi),%xmm8\n"
        "  movdqu 280(%rdi),%xmm9\n movdqu 296(%rdi),%xmm10\n movdqu 312(%rdi),%xmm11\n"
        "  movdqu 328(%rdi),%xmm12\n movdqu 344(%rdi),%xmm13\n movdqu 360(%rdi),%xmm14\n"
        "  movdqu 376(%rdi),%xmm15\n"
        "  pushq 128(%rdi)\n"
        "  popfq\n"
        "  mov 0(%rdi),%rax\n mov 8(%rdi),%rcx\n mov 16(%rdi),%rdx\n mov 24(%rdi),%rbx\n"
        "  mov 40(%rdi),%rbp\n mov 48(%rdi),%rsi\n mov 64(%rdi),%r8\n mov 72(%rdi),%r9\n"
        "  mov 80(%rdi),%r10\n mov 88(%rdi),%r11\n mov 96(%rdi),%r12\n mov 104(%rdi),%r13\n"
        "  mov 112(%rdi),%r14\n mov 120(%rdi),%r15\n mov 56(%rdi),%rdi\n"
        "  call *(%rsp)\n"
        "  pushfq\n"
        "  push %rdi\n"
        "  mov 24(%rsp),%rdi\n"
        "  popq 56(%rdi)\n"
        "  popq 128(%rdi)\n"
        "  mov %rax,0(%rdi)\n mov %rcx,8(%rdi)\n mov %rdx,16(%rdi)\n mov %rbx,24(%rdi)\n"
        "  mov %rbp,40(%rdi)\n mov %rsi,48(%rdi)\n mov %r8,64(%rdi)\n mov %r9,72(%rdi)\n"
        "  mov %r10,80(%rdi)\n mov %r11,88(%rdi)\n mov %r12,96(%rdi)\n mov %r13,104(%rdi)\n"
        "  mov %r14,112(%rdi)\n mov %r15,120(%rdi)\n"
        "  movdqu %xmm0,136(%rdi)\n movdqu %xmm1,152(%rdi)\n movdqu %xmm2,168(%rdi)\n"
        "  movdqu %xmm3,184(%rdi)\n movdqu %xmm4,200(%rdi)\n movdqu %xmm5,216(%rdi)\n"
        "  movdqu %xmm6,232(%rdi)\n movdqu %xmm7,248(%rdi)\n movdqu %xmm8,264(%rdi)\n"
        "  movdqu %xmm9,280(%rdi)\n movdqu %xmm10,296(%rdi)\n movdqu %xmm11,312(%rdi)\n"
        "  movdqu %xmm12,328(%rdi)\n movdqu %xmm13,344(%rdi)\n movdqu %xmm14,360(%rdi)\n"
        "  movdqu %xmm15,376(%rdi)\n"
        "  add $16,%rsp\n"
        "  cld\n"
        "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
        "  ret\n"
        ".size hvp_test_host_exec, .-hvp_test_host_exec\n");

#define ALLF 0x8d5u /* OF SF ZF AF PF CF */
#define LOGF 0x8c5u /* AF undefined */
#define BTF  0x041u /* CF, and ZF unaffected */
#define RBX  3
#define RSI  6
#define RDI  7
#define WIN  FVM_MMIO_SIZE

struct env {
    struct fakevm *vm;
    uint8_t *host; /* the host copy of the MMIO window */
    uint8_t *code; /* executable page */
    bool low;      /* the host window lies below 4 GiB: 32-bit addressing works */
    uint64_t rng;
    unsigned runs;
};

static uint64_t rnd(struct env *e)
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return e->rng;
}

/* Random operand values with the edge cases well represented. */
static uint64_t rnd_val(struct env *e)
{
    static const uint64_t special[] = {0,
                                       1,
                                       ~0ull,
                                       0x7f,
                                       0x80,
                                       0xff,
                                       0x7fff,
                                       0x8000,
                                       0xffff,
                                       0x7fffffff,
                                       0x80000000,
                                       0xffffffff,
                                       0x7fffffffffffffffull,
                                       0x8000000000000000ull,
                                       0x0f,
                                       0x10};
    switch (rnd(e) % 4) {
    case 0: return special[rnd(e) % 16];
    case 1: return special[rnd(e) % 16] + (rnd(e) % 3) - 1;
    default: return rnd(e);
    }
}

static void env_init(struct env *e, uint64_t seed)
{
    e->vm = fvm_new(64);
    cr_assert_not_null(e->vm);
    /* Below 2 GiB when possible, so 0x67 (32-bit address) forms run natively. */
    e->host =
        mmap(NULL, WIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (e->host == MAP_FAILED)
        e->host = mmap(NULL, WIN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    e->low = e->host != MAP_FAILED && (uintptr_t)e->host + WIN < 0x80000000u;
    e->code =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(e->host != MAP_FAILED, "mmap");
    if (e->code == MAP_FAILED) cr_skip_test("no writable+executable memory to run the host side");
    e->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    for (unsigned i = 0; i < WIN; i++)
        e->host[i] = (uint8_t)rnd(e);
    memcpy(e->vm->mmio, e->host, WIN);
    e->runs = 0;
}

static void env_fini(struct env *e)
{
    munmap(e->host, WIN);
    munmap(e->code, 4096);
    fvm_free(e->vm);
}

static void hex(char *buf, const uint8_t *b, size_t n)
{
    buf[0] = 0;
    for (size_t i = 0; i < n; i++)
        sprintf(buf + 3 * i, "%02x ", b[i]);
}

/* Runs `insn` natively and in the emulator. ptr_mask: registers that hold
 * window offsets (turned into a host pointer / a guest address); the
 * accesses must stay within [lo, hi) of the window. */
static void compare(struct env *e, const uint8_t *insn, size_t len, struct hstate *in,
                    unsigned ptr_mask, uint64_t fmask, unsigned lo, unsigned hi)
{
    struct fakevm *vm = e->vm;
    struct hstate h = *in;
    char bytes[64];
    hex(bytes, insn, len);
    for (unsigned r = 0; r < 16; r++)
        if (ptr_mask & (1u << r)) h.gpr[r] = (uint64_t)(uintptr_t)e->host + in->gpr[r];
    memcpy(e->code, insn, len);
    e->code[len] = 0xc3;
    hvp_test_host_exec(&h, e->code);

    for (unsigned r = 0; r < 16; r++)
        vm->gpr[r] = (ptr_mask & (1u << r)) ? fvm_mmio_gva(vm, in->gpr[r]) : in->gpr[r];
    vm->rflags = in->rflags;
    memcpy(vm->xmm, in->xmm, sizeof(vm->xmm));
    vm->rip = FVM_CODE_GVA;
    struct hvp_emu_fault f;
    uint32_t st = fvm_mmio(vm, insn, len, &f);
    cr_assert_eq(st, HVP_EMU_STATUS_SUCCESS, "%s: status %#x", bytes, st);
    cr_assert_eq(vm->rip, FVM_CODE_GVA + len, "%s: rip", bytes);
    for (unsigned r = 0; r < 16; r++) {
        if (r == 4) continue;
        uint64_t hv = h.gpr[r], gv = vm->gpr[r];
        if (ptr_mask & (1u << r)) {
            hv -= (uint64_t)(uintptr_t)e->host;
            gv -= fvm_mmio_gva(vm, 0);
        }
        cr_assert_eq(gv, hv, "%s: reg %u emulator %#llx host %#llx (in %#llx)", bytes, r,
                     (unsigned long long)gv, (unsigned long long)hv,
                     (unsigned long long)in->gpr[r]);
    }
    for (unsigned r = 0; r < 16; r++)
        cr_assert(vm->xmm[r][0] == h.xmm[r][0] && vm->xmm[r][1] == h.xmm[r][1],
                  "%s: xmm%u emulator %016llx:%016llx host %016llx:%016llx", bytes, r,
                  (unsigned long long)vm->xmm[r][1], (unsigned long long)vm->xmm[r][0],
                  (unsigned long long)h.xmm[r][1], (unsigned long long)h.xmm[r][0]);
    cr_assert_eq(vm->rflags & fmask, h.rflags & fmask,
                 "%s: flags emulator %#llx host %#llx (in %#llx)", bytes,
                 (unsigned long long)(vm->rflags & fmask), (unsigned long long)(h.rflags & fmask),
                 (unsigned long long)in->rflags);
    if (memcmp(vm->mmio + lo, e->host + lo, hi - lo)) {
        unsigned i = lo;
        while (vm->mmio[i] == e->host[i])
            i++;
        cr_assert_fail("%s: memory at +%#x emulator %#x host %#x", bytes, i, vm->mmio[i],
                       e->host[i]);
    }
    e->runs++;
}

static void rnd_state(struct env *e, struct hstate *s, uint64_t df)
{
    for (unsigned r = 0; r < 16; r++)
        s->gpr[r] = rnd_val(e);
    s->gpr[4] = 0;
    for (unsigned r = 0; r < 16; r++)
        s->xmm[r][0] = rnd(e), s->xmm[r][1] = rnd(e);
    s->rflags = 0x2 | (rnd(e) & ALLF) | df;
}

/* A window offset for a `size`-byte access: mostly anywhere, often right
 * before a page boundary so the access splits. */
static unsigned rnd_off(struct env *e, unsigned size, unsigned align)
{
    unsigned off;
    if (rnd(e) % 3 == 0)
        off = 0x1000u * (1 + (unsigned)(rnd(e) % 2)) - 1 - (unsigned)(rnd(e) % (size + 1));
    else
        off = 0x400 + (unsigned)(rnd(e) % 0x2000);
    if (align) off &= ~(align - 1);
    return off;
}

/* ---- ModRM forms against [rbx] / [rbx+disp8] ---- */

enum kind { K_PLAIN, K_BTREG, K_CMPXCHG, K_CX8, K_MOVX, K_SHIFT, K_DIV };

/* Shift families, for the flags each count defines. */
enum { SH_NONE, SH_SHIFT, SH_SAR, SH_ROT, SH_DOUBLE };

struct tmpl {
    uint8_t op[3];
    uint8_t nop;
    int ext;        /* ModRM.reg = /digit, or -1: a register operand */
    unsigned imm;   /* 0, 1 (ib), 2 (iz: 2 or 4 bytes) */
    unsigned sizes; /* bit mask: 1, 2, 4, 8 */
    uint64_t fmask;
    enum kind kind;
    unsigned msize; /* memory size for MOVZX/MOVSX forms */
    unsigned sh;    /* SH_*, for K_SHIFT */
};

/* The flags a shift or rotate by `raw` defines. */
static uint64_t shift_flags(unsigned sh, unsigned size, unsigned raw, bool *skip)
{
    unsigned bits = size * 8, cnt = raw & (size == 8 ? 63 : 31);
    uint64_t m = ALLF;
    *skip = false;
    if (!cnt) return ALLF;           /* nothing changes */
    if (sh != SH_ROT) m &= ~0x10ull; /* AF */
    if (cnt > 1) m &= ~0x800ull;     /* OF */
    if (sh == SH_SHIFT && cnt >= bits) m &= ~0x1ull;
    if (sh == SH_DOUBLE && size == 2 && cnt > 16) *skip = true; /* result undefined */
    return m;
}

static unsigned pick_reg(struct env *e, unsigned size, bool *rex)
{
    static const uint8_t pool1[] = {0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    static const uint8_t pool[] = {0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    unsigned r = size == 1 ? pool1[rnd(e) % sizeof(pool1)] : pool[rnd(e) % sizeof(pool)];
    /* Byte registers 5/6 as BPL/SIL (with REX) or CH/DH (without). */
    *rex = r >= 8 || (size == 1 && (r == 5 || r == 6) && (rnd(e) & 1));
    return r;
}

static void run_tmpl(struct env *e, const struct tmpl *t, unsigned size, unsigned trials)
{
    for (unsigned n = 0; n < trials; n++) {
        uint8_t b[16];
        size_t len = 0;
        bool rex = false;
        unsigned reg = 0;
        if (t->ext < 0)
            reg = pick_reg(e, t->kind == K_MOVX ? 2 : size, &rex);
        else
            reg = (unsigned)t->ext;
        if (t->kind == K_MOVX && size == 1) continue;
        bool w = size == 8;
        /* Now and then 32-bit addressing, with noise in the upper half of
         * the base register that the address size must drop. */
        bool a67 = e->low && rnd(e) % 4 == 0;
        if (a67) b[len++] = 0x67;
        if (size == 2) b[len++] = 0x66;
        unsigned i0 = 0;
        if (t->op[0] == 0xf3 || t->op[0] == 0xf2) b[len++] = t->op[i0++]; /* before REX */
        if (w || rex) b[len++] = (uint8_t)(0x40 | (w ? 8 : 0) | ((reg & 8) ? 4 : 0));
        for (unsigned i = i0; i < t->nop; i++)
            b[len++] = t->op[i];
        bool d8 = rnd(e) & 1;
        int8_t disp = d8 ? (int8_t)(rnd(e) % 64 - 32) : 0;
        /* CMPXCHG8B/16B use RBX as data: address through RSI instead. */
        unsigned base = t->kind == K_CX8 ? RSI : RBX;
        b[len++] = (uint8_t)((d8 ? 0x40 : 0) | ((reg & 7) << 3) | base);
        if (d8) b[len++] = (uint8_t)disp;
        unsigned isz = t->imm == 1 ? 1 : t->imm == 2 ? (size == 2 ? 2 : 4) : 0;
        for (unsigned i = 0; i < isz; i++)
            b[len++] = (uint8_t)rnd_val(e);

        struct hstate s;
        rnd_state(e, &s, 0);
        uint64_t fmask = t->fmask;
        if (t->kind == K_SHIFT) {
            /* Counts around and beyond the width, CL with noise above. */
            if (t->imm) b[len - 1] = (uint8_t)(rnd(e) % 70);
            s.gpr[1] = (rnd(e) & ~0xffull) | (rnd(e) % 70);
            unsigned raw = t->imm ? b[len - 1] : (t->op[0] & 2) && t->nop == 1 ? 1 : 0;
            bool skip;
            if (t->nop == 1 && (t->op[0] & 0xfe) == 0xd2) raw = (unsigned)(s.gpr[1] & 0xff);
            if (t->nop == 2 && (t->op[1] & 1)) raw = (unsigned)(s.gpr[1] & 0xff);
            if (t->nop == 1 && (t->op[0] & 0xfe) == 0xd0) raw = 1;
            fmask = shift_flags(t->sh, size, raw, &skip);
            if (skip) continue;
        }
        unsigned msize = t->kind == K_MOVX ? t->msize : t->kind == K_CX8 ? size * 2 : size;
        unsigned align = t->kind == K_CX8 && size == 8 ? 16 : 0;
        unsigned off = rnd_off(e, msize, align);
        s.gpr[base] = (uint64_t)((int64_t)off - disp);
        if (a67) s.gpr[base] |= rnd(e) << 32;
        unsigned lo = off - 8, hi = off + msize + 8;
        if (t->kind == K_BTREG) {
            /* A bit offset reaching +-1000 bits around the operand; bits
             * above the operand size are noise the CPU must ignore. */
            int64_t bo = (int64_t)(rnd(e) % 2001) - 1000;
            uint64_t m = size == 8 ? ~0ull : (1ull << (size * 8)) - 1;
            s.gpr[reg] = (rnd(e) & ~m) | ((uint64_t)bo & m);
            lo = off - 140;
            hi = off + 140;
        }
        if (t->kind == K_DIV) {
            /* Operands that do not raise #DE on the host. */
            uint64_t m = size == 8 ? ~0ull : (1ull << (size * 8)) - 1, d = 0;
            memcpy(&d, e->host + off, size);
            int64_t sd =
                size == 8 ? (int64_t)d : ((int64_t)(d << (64 - 8 * size)) >> (64 - 8 * size));
            if (d == 0 || sd == -1) {
                d = 3;
                memcpy(e->host + off, &d, size);
                memcpy(e->vm->mmio + off, &d, size);
            }
            uint64_t lo = s.gpr[0] & m;
            uint64_t hi = t->ext == 6 ? rnd(e) % d : ((lo >> (size * 8 - 1)) & 1) ? m : 0;
            if (size == 1)
                s.gpr[0] = (s.gpr[0] & ~0xffffull) | lo | (hi << 8);
            else
                s.gpr[2] = (s.gpr[2] & ~m) | hi;
        }
        if (t->kind == K_CMPXCHG && (rnd(e) & 1)) {
            /* Make the comparison succeed half of the time. */
            uint64_t v = 0;
            memcpy(&v, e->host + off, size);
            s.gpr[0] = (s.gpr[0] & ~(size == 8 ? ~0ull : (1ull << (size * 8)) - 1)) | v;
        }
        if (t->kind == K_CX8 && (rnd(e) & 1)) {
            uint64_t lo64 = 0, hi64 = 0;
            memcpy(&lo64, e->host + off, size);
            memcpy(&hi64, e->host + off + size, size);
            s.gpr[0] = lo64;
            s.gpr[2] = hi64;
        }
        compare(e, b, len, &s, 1u << base, fmask, lo, hi);
    }
}

/* Forms the host CPU must have to run natively (CPUID bits). */
static bool host_runs(const struct tmpl *t)
{
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if (t->nop == 3 && t->op[1] == 0x38 && (t->op[2] & 0xfe) == 0xf0)
        return c & (1u << 22);                                                      /* movbe */
    if (t->nop == 3 && t->op[0] == 0xf3 && t->op[2] == 0xb8) return c & (1u << 23); /* popcnt */
    if (t->kind == K_CX8) return c & (1u << 13);                                    /* cmpxchg16b */
    if (t->nop == 3 && t->op[0] == 0xf3 && t->op[2] == 0xbc) {
        __cpuid_count(7, 0, a, b, c, d);
        return b & (1u << 3); /* tzcnt: BMI1 */
    }
    return true;
}

static void run_tmpls(const struct tmpl *t, size_t n, unsigned trials, uint64_t seed)
{
    struct env e;
    env_init(&e, seed);
    for (size_t i = 0; i < n; i++) {
        if (!host_runs(&t[i])) {
            cr_log_warn("template %zu skipped: the host CPU lacks the feature", i);
            continue;
        }
        for (unsigned size = 1; size <= 8; size <<= 1)
            if (t[i].sizes & size) run_tmpl(&e, &t[i], size, trials);
    }
    cr_log_info("%u native/emulated comparisons", e.runs);
    env_fini(&e);
}

#define TRIALS 1000
#define S1     1u
#define SW     (2u | 4u | 8u)

Test(host, alu_binary)
{
    struct tmpl t[8 * 7];
    size_t n = 0;
    for (uint8_t f = 0; f < 8; f++) {
        uint64_t m = (f == 1 || f == 4 || f == 6) ? LOGF : ALLF;
        uint8_t o = (uint8_t)(f * 8);
        t[n++] = (struct tmpl){{o}, 1, -1, 0, S1, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{(uint8_t)(o + 1)}, 1, -1, 0, SW, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{(uint8_t)(o + 2)}, 1, -1, 0, S1, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{(uint8_t)(o + 3)}, 1, -1, 0, SW, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{0x80}, 1, f, 1, S1, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{0x81}, 1, f, 2, SW, m, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{0x83}, 1, f, 1, SW, m, K_PLAIN, 0, 0};
    }
    run_tmpls(t, n, TRIALS, 1);
}

Test(host, alu_unary_test)
{
    static const struct tmpl t[] = {
        {{0x84}, 1, -1, 0, S1, LOGF, K_PLAIN, 0, 0}, {{0x85}, 1, -1, 0, SW, LOGF, K_PLAIN, 0, 0},
        {{0xf6}, 1, 0, 1, S1, LOGF, K_PLAIN, 0, 0},  {{0xf7}, 1, 0, 2, SW, LOGF, K_PLAIN, 0, 0},
        {{0xf6}, 1, 2, 0, S1, ALLF, K_PLAIN, 0, 0},  {{0xf7}, 1, 2, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0xf6}, 1, 3, 0, S1, ALLF, K_PLAIN, 0, 0},  {{0xf7}, 1, 3, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0xfe}, 1, 0, 0, S1, ALLF, K_PLAIN, 0, 0},  {{0xff}, 1, 0, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0xfe}, 1, 1, 0, S1, ALLF, K_PLAIN, 0, 0},  {{0xff}, 1, 1, 0, SW, ALLF, K_PLAIN, 0, 0},
    };
    run_tmpls(t, sizeof(t) / sizeof(t[0]), TRIALS, 2);
}

Test(host, bit_test)
{
    static const struct tmpl t[] = {
        {{0x0f, 0xa3}, 2, -1, 0, SW, BTF, K_BTREG, 0, 0},
        {{0x0f, 0xab}, 2, -1, 0, SW, BTF, K_BTREG, 0, 0},
        {{0x0f, 0xb3}, 2, -1, 0, SW, BTF, K_BTREG, 0, 0},
        {{0x0f, 0xbb}, 2, -1, 0, SW, BTF, K_BTREG, 0, 0},
        {{0x0f, 0xba}, 2, 4, 1, SW, BTF, K_PLAIN, 0, 0},
        {{0x0f, 0xba}, 2, 5, 1, SW, BTF, K_PLAIN, 0, 0},
        {{0x0f, 0xba}, 2, 6, 1, SW, BTF, K_PLAIN, 0, 0},
        {{0x0f, 0xba}, 2, 7, 1, SW, BTF, K_PLAIN, 0, 0},
    };
    run_tmpls(t, sizeof(t) / sizeof(t[0]), TRIALS, 3);
}

Test(host, exchange)
{
    static const struct tmpl t[] = {
        {{0x86}, 1, -1, 0, S1, ALLF, K_PLAIN, 0, 0},
        {{0x87}, 1, -1, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0x0f, 0xc0}, 2, -1, 0, S1, ALLF, K_PLAIN, 0, 0},
        {{0x0f, 0xc1}, 2, -1, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0x0f, 0xb0}, 2, -1, 0, S1, ALLF, K_CMPXCHG, 0, 0},
        {{0x0f, 0xb1}, 2, -1, 0, SW, ALLF, K_CMPXCHG, 0, 0},
        {{0x0f, 0xc7}, 2, 1, 0, 4u | 8u, ALLF, K_CX8, 0, 0}, /* cmpxchg8b / cmpxchg16b */
    };
    run_tmpls(t, sizeof(t) / sizeof(t[0]), TRIALS, 4);
}

Test(host, moves)
{
    static const struct tmpl t[] = {
        {{0x88}, 1, -1, 0, S1, ALLF, K_PLAIN, 0, 0},
        {{0x89}, 1, -1, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0x8a}, 1, -1, 0, S1, ALLF, K_PLAIN, 0, 0},
        {{0x8b}, 1, -1, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0xc6}, 1, 0, 1, S1, ALLF, K_PLAIN, 0, 0},
        {{0xc7}, 1, 0, 2, SW, ALLF, K_PLAIN, 0, 0},
        {{0x0f, 0xb6}, 2, -1, 0, SW, ALLF, K_MOVX, 1, 0},
        {{0x0f, 0xb7}, 2, -1, 0, 4u | 8u, ALLF, K_MOVX, 2, 0},
        {{0x0f, 0xbe}, 2, -1, 0, SW, ALLF, K_MOVX, 1, 0},
        {{0x0f, 0xbf}, 2, -1, 0, 4u | 8u, ALLF, K_MOVX, 2, 0},
        {{0x63}, 1, -1, 0, 8u, ALLF, K_MOVX, 4, 0},
        {{0x0f, 0xc3}, 2, -1, 0, 4u | 8u, ALLF, K_PLAIN, 0, 0},  /* movnti */
        {{0x0f, 0x38, 0xf0}, 3, -1, 0, SW, ALLF, K_PLAIN, 0, 0}, /* movbe r, m */
        {{0x0f, 0x38, 0xf1}, 3, -1, 0, SW, ALLF, K_PLAIN, 0, 0}, /* movbe m, r */
    };
    run_tmpls(t, sizeof(t) / sizeof(t[0]), TRIALS, 5);
}

Test(host, setcc_cmovcc)
{
    struct tmpl t[32];
    size_t n = 0;
    for (uint8_t c = 0; c < 16; c++) {
        t[n++] = (struct tmpl){{0x0f, (uint8_t)(0x90 + c)}, 2, 0, 0, S1, ALLF, K_PLAIN, 0, 0};
        t[n++] = (struct tmpl){{0x0f, (uint8_t)(0x40 + c)}, 2, -1, 0, SW, ALLF, K_PLAIN, 0, 0};
    }
    run_tmpls(t, n, 200, 6);
}

Test(host, shifts_rotates)
{
    static const uint8_t ext[] = {0, 1, 2, 3, 4, 5, 7};
    static const unsigned fam[] = {SH_ROT, SH_ROT, SH_ROT, SH_ROT, SH_SHIFT, SH_SHIFT, SH_SAR};
    struct tmpl t[7 * 6 + 4];
    size_t n = 0;
    for (unsigned i = 0; i < 7; i++) {
        int x = ext[i];
        unsigned f = fam[i];
        t[n++] = (struct tmpl){{0xd0}, 1, x, 0, S1, 0, K_SHIFT, 0, f};
        t[n++] = (struct tmpl){{0xd1}, 1, x, 0, SW, 0, K_SHIFT, 0, f};
        t[n++] = (struct tmpl){{0xd2}, 1, x, 0, S1, 0, K_SHIFT, 0, f};
        t[n++] = (struct tmpl){{0xd3}, 1, x, 0, SW, 0, K_SHIFT, 0, f};
        t[n++] = (struct tmpl){{0xc0}, 1, x, 1, S1, 0, K_SHIFT, 0, f};
        t[n++] = (struct tmpl){{0xc1}, 1, x, 1, SW, 0, K_SHIFT, 0, f};
    }
    t[n++] = (struct tmpl){{0x0f, 0xa4}, 2, -1, 1, SW, 0, K_SHIFT, 0, SH_DOUBLE};
    t[n++] = (struct tmpl){{0x0f, 0xa5}, 2, -1, 0, SW, 0, K_SHIFT, 0, SH_DOUBLE};
    t[n++] = (struct tmpl){{0x0f, 0xac}, 2, -1, 1, SW, 0, K_SHIFT, 0, SH_DOUBLE};
    t[n++] = (struct tmpl){{0x0f, 0xad}, 2, -1, 0, SW, 0, K_SHIFT, 0, SH_DOUBLE};
    run_tmpls(t, n, 600, 8);
}

#define MULF 0x801u /* CF, OF */

Test(host, multiply_divide_bitscan)
{
    static const struct tmpl t[] = {
        {{0xf6}, 1, 4, 0, S1, MULF, K_PLAIN, 0, 0},
        {{0xf7}, 1, 4, 0, SW, MULF, K_PLAIN, 0, 0},
        {{0xf6}, 1, 5, 0, S1, MULF, K_PLAIN, 0, 0},
        {{0xf7}, 1, 5, 0, SW, MULF, K_PLAIN, 0, 0},
        {{0x0f, 0xaf}, 2, -1, 0, SW, MULF, K_PLAIN, 0, 0},
        {{0x6b}, 1, -1, 1, SW, MULF, K_PLAIN, 0, 0},
        {{0x69}, 1, -1, 2, SW, MULF, K_PLAIN, 0, 0},
        {{0xf6}, 1, 6, 0, S1, 0, K_DIV, 0, 0},
        {{0xf7}, 1, 6, 0, SW, 0, K_DIV, 0, 0},
        {{0xf6}, 1, 7, 0, S1, 0, K_DIV, 0, 0},
        {{0xf7}, 1, 7, 0, SW, 0, K_DIV, 0, 0},
        {{0x0f, 0xbc}, 2, -1, 0, SW, 0x40, K_PLAIN, 0, 0},
        {{0x0f, 0xbd}, 2, -1, 0, SW, 0x40, K_PLAIN, 0, 0},
        {{0xf3, 0x0f, 0xb8}, 3, -1, 0, SW, ALLF, K_PLAIN, 0, 0},
        {{0xf3, 0x0f, 0xbc}, 3, -1, 0, SW, 0x41, K_PLAIN, 0, 0},
    };
    run_tmpls(t, sizeof(t) / sizeof(t[0]), TRIALS, 10);
}

/* ---- SSE moves: XMM registers through the register callbacks ---- */

struct vtmpl {
    uint8_t pfx; /* mandatory prefix: 0, 0x66, 0xf2, 0xf3 */
    bool w;      /* REX.W */
    uint8_t op[3];
    uint8_t nop;
    unsigned msize, align;
    bool vex; /* 2-byte VEX.128 form of the same (map 0F) */
};

Test(host, sse_moves)
{
    static const struct vtmpl t[] = {
        {0x66, 0, {0x0f, 0x6f}, 2, 16, 16, 0},
        {0x66, 0, {0x0f, 0x7f}, 2, 16, 16, 0}, /* movdqa */
        {0xf3, 0, {0x0f, 0x6f}, 2, 16, 0, 0},
        {0xf3, 0, {0x0f, 0x7f}, 2, 16, 0, 0}, /* movdqu */
        {0, 0, {0x0f, 0x28}, 2, 16, 16, 0},
        {0, 0, {0x0f, 0x29}, 2, 16, 16, 0}, /* movaps */
        {0, 0, {0x0f, 0x10}, 2, 16, 0, 0},
        {0, 0, {0x0f, 0x11}, 2, 16, 0, 0}, /* movups */
        {0x66, 0, {0x0f, 0x28}, 2, 16, 16, 0},
        {0x66, 0, {0x0f, 0x29}, 2, 16, 16, 0}, /* movapd */
        {0x66, 0, {0x0f, 0x10}, 2, 16, 0, 0},
        {0x66, 0, {0x0f, 0x11}, 2, 16, 0, 0}, /* movupd */
        {0x66, 0, {0x0f, 0x6e}, 2, 4, 0, 0},
        {0x66, 0, {0x0f, 0x7e}, 2, 4, 0, 0}, /* movd */
        {0x66, 1, {0x0f, 0x6e}, 2, 8, 0, 0},
        {0x66, 1, {0x0f, 0x7e}, 2, 8, 0, 0}, /* movq r/m64 */
        {0xf3, 0, {0x0f, 0x7e}, 2, 8, 0, 0},
        {0x66, 0, {0x0f, 0xd6}, 2, 8, 0, 0}, /* movq */
        {0xf3, 0, {0x0f, 0x10}, 2, 4, 0, 0},
        {0xf3, 0, {0x0f, 0x11}, 2, 4, 0, 0}, /* movss */
        {0xf2, 0, {0x0f, 0x10}, 2, 8, 0, 0},
        {0xf2, 0, {0x0f, 0x11}, 2, 8, 0, 0}, /* movsd */
        {0, 0, {0x0f, 0x12}, 2, 8, 0, 0},
        {0, 0, {0x0f, 0x13}, 2, 8, 0, 0}, /* movlps */
        {0x66, 0, {0x0f, 0x12}, 2, 8, 0, 0},
        {0x66, 0, {0x0f, 0x13}, 2, 8, 0, 0}, /* movlpd */
        {0, 0, {0x0f, 0x16}, 2, 8, 0, 0},
        {0, 0, {0x0f, 0x17}, 2, 8, 0, 0}, /* movhps */
        {0x66, 0, {0x0f, 0x16}, 2, 8, 0, 0},
        {0x66, 0, {0x0f, 0x17}, 2, 8, 0, 0}, /* movhpd */
        {0, 0, {0x0f, 0x2b}, 2, 16, 16, 0},
        {0x66, 0, {0x0f, 0x2b}, 2, 16, 16, 0}, /* movntps/pd */
        {0x66, 0, {0x0f, 0xe7}, 2, 16, 16, 0},
        {0xf2, 0, {0x0f, 0xf0}, 2, 16, 0, 0},        /* movntdq, lddqu */
        {0x66, 0, {0x0f, 0x38, 0x2a}, 3, 16, 16, 0}, /* movntdqa */
        /* VEX.128 stores */
        {0x66, 0, {0x0f, 0x7f}, 2, 16, 16, 1},
        {0xf3, 0, {0x0f, 0x7f}, 2, 16, 0, 1},
        {0, 0, {0x0f, 0x29}, 2, 16, 16, 1},
        {0, 0, {0x0f, 0x11}, 2, 16, 0, 1},
        {0x66, 0, {0x0f, 0x29}, 2, 16, 16, 1},
        {0x66, 0, {0x0f, 0x11}, 2, 16, 0, 1},
        {0x66, 0, {0x0f, 0xe7}, 2, 16, 16, 1},
        {0, 0, {0x0f, 0x2b}, 2, 16, 16, 1},
        {0x66, 0, {0x0f, 0x2b}, 2, 16, 16, 1},
        {0x66, 0, {0x0f, 0x7e}, 2, 4, 0, 1},
        {0x66, 0, {0x0f, 0xd6}, 2, 8, 0, 1},
        {0xf3, 0, {0x0f, 0x11}, 2, 4, 0, 1},
        {0xf2, 0, {0x0f, 0x11}, 2, 8, 0, 1},
        {0, 0, {0x0f, 0x13}, 2, 8, 0, 1},
        {0x66, 0, {0x0f, 0x13}, 2, 8, 0, 1},
        {0, 0, {0x0f, 0x17}, 2, 8, 0, 1},
        {0x66, 0, {0x0f, 0x17}, 2, 8, 0, 1},
    };
    unsigned a, b_, c, d;
    __cpuid(1, a, b_, c, d);
    bool avx = (c & (1u << 28)) && (c & (1u << 27)); /* AVX and OSXSAVE */
    struct env e;
    env_init(&e, 9);
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (t[i].vex && !avx) continue;
        for (unsigned n = 0; n < 400; n++) {
            uint8_t b[16];
            size_t len = 0;
            unsigned reg = (unsigned)(rnd(&e) % 16);
            if (t[i].vex) {
                unsigned pp = t[i].pfx == 0x66   ? 1
                              : t[i].pfx == 0xf3 ? 2
                              : t[i].pfx == 0xf2 ? 3
                                                 : 0;
                b[len++] = 0xc5;
                b[len++] = (uint8_t)((reg < 8 ? 0x80 : 0) | 0x78 | pp);
                b[len++] = t[i].op[1];
            } else {
                if (t[i].pfx) b[len++] = t[i].pfx;
                if (t[i].w || reg >= 8)
                    b[len++] = (uint8_t)(0x40 | (t[i].w ? 8 : 0) | (reg >= 8 ? 4 : 0));
                for (unsigned k = 0; k < t[i].nop; k++)
                    b[len++] = t[i].op[k];
            }
            bool d8 = rnd(&e) & 1;
            int8_t disp = d8 ? (int8_t)(rnd(&e) % 64 - 32) : 0;
            b[len++] = (uint8_t)((d8 ? 0x40 : 0) | ((reg & 7) << 3) | RBX);
            if (d8) b[len++] = (uint8_t)disp;
            struct hstate s;
            rnd_state(&e, &s, 0);
            unsigned off = rnd_off(&e, t[i].msize, t[i].align);
            s.gpr[RBX] = (uint64_t)((int64_t)off - disp);
            compare(&e, b, len, &s, 1u << RBX, ALLF, off - 8, off + t[i].msize + 8);
        }
    }
    cr_log_info("%u native/emulated SSE comparisons", e.runs);
    env_fini(&e);
}

/* ---- string instructions: RSI/RDI in the window, RCX small ---- */

Test(host, strings)
{
    static const uint8_t ops[] = {0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf};
    static const uint8_t reps[] = {0, 0xf3, 0xf2};
    struct env e;
    env_init(&e, 7);
    /* Few distinct byte values, so CMPS/SCAS find equal elements. */
    for (unsigned i = 0; i < WIN; i++)
        e.host[i] = (uint8_t)(rnd(&e) % 2);
    memcpy(e.vm->mmio, e.host, WIN);
    for (unsigned oi = 0; oi < sizeof(ops); oi++) {
        for (unsigned ri = 0; ri < sizeof(reps); ri++) {
            for (unsigned v = 0; v < 8; v++) {
                unsigned size = 1u << (v & 3);
                bool a67 = v >= 4;
                if (a67 && !e.low) continue;
                if (!(ops[oi] & 1) && size != 1) continue;
                if ((ops[oi] & 1) && size == 1) continue;
                for (unsigned n = 0; n < 200; n++) {
                    uint8_t b[5];
                    size_t len = 0;
                    if (reps[ri]) b[len++] = reps[ri];
                    if (a67) b[len++] = 0x67;
                    if (size == 2) b[len++] = 0x66;
                    if (size == 8) b[len++] = 0x48;
                    b[len++] = ops[oi];
                    struct hstate s;
                    uint64_t df = (rnd(&e) & 1) ? 0x400 : 0;
                    rnd_state(&e, &s, df);
                    s.gpr[1] = n % 4 == 0 ? 0 : rnd(&e) % 40; /* REP count, often 0 */
                    s.gpr[0] = rnd(&e) % 2 ? 0 : 1;
                    unsigned si = 0x800 + (unsigned)(rnd(&e) % 0x2800);
                    unsigned di = 0x800 + (unsigned)(rnd(&e) % 0x2800);
                    if (n % 5 == 0) si = 0x1000 - 7 * size; /* cross a page */
                    if (n % 7 == 0) di = 0x2000 - 5 * size;
                    s.gpr[RSI] = si;
                    s.gpr[RDI] = di;
                    if (a67) {
                        /* ECX/ESI/EDI only: the upper halves are noise. */
                        s.gpr[1] |= rnd(&e) << 32;
                        s.gpr[RSI] |= rnd(&e) << 32;
                        s.gpr[RDI] |= rnd(&e) << 32;
                    }
                    compare(&e, b, len, &s, (1u << RSI) | (1u << RDI), ALLF | 0x400, 0x400, 0x3c00);
                }
            }
        }
    }
    cr_log_info("%u native/emulated string comparisons", e.runs);
    env_fini(&e);
}
