/* x87 FPU tests: every instruction runs natively (FXRSTOR64, the
 * instruction, FXSAVE64) and through hvp's software CPU from the same random
 * state; registers, FSW, tags, RFLAGS and memory must match bit for bit. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hvp/cpu.h"

#define CODE 0x100000ull
#define DATA 0x200000ull

/* FXSAVE area, then rax in/out for FNSTSW AX. */
struct fx {
    uint16_t fcw, fsw;
    uint8_t ftw, r0;
    uint16_t fop;
    uint64_t fip, fdp;
    uint32_t mxcsr, mxmask;
    uint8_t st[8][16];
    uint8_t xmm[16][16];
    uint8_t pad[96];
    uint64_t rax_out, rax_in;
} __attribute__((aligned(16)));

/* Native runner: name_n(fx, mem, rflags) -> rflags after; the instruction's
 * bytes lie between name_i and name_e. */
#define X87T(name, insn)                                                                           \
    extern const uint8_t name##_i[], name##_e[];                                                   \
    uint64_t name##_n(struct fx *fx, void *mem, uint64_t fl);                                      \
    __asm__(".pushsection .text\n.intel_syntax noprefix\n" #name "_n:\n push rdx\n popfq\n"        \
            " fxrstor64 [rdi]\n mov rax, [rdi + 520]\n" #name "_i:\n " insn "\n" #name "_e:\n"     \
            " mov [rdi + 512], rax\n fxsave64 [rdi]\n pushfq\n pop rax\n fninit\n"                 \
            " push 0x1f80\n ldmxcsr [rsp]\n add rsp, 8\n ret\n.att_syntax prefix\n.popsection\n")

/* memory operand kinds */
enum { M_NONE, M_F32, M_F64, M_F80, M_I16, M_I32, M_I64, M_BCD, M_CW, M_ENV, M_SAVE, M_FX, M_RAW };

/* X(name, instruction, memory kind, memory size, stores) */
#define ARITH(X, op)                                                                               \
    X(op##_st0, "f" #op " st, st(0)", M_NONE, 0)                                                   \
    X(op##_st1, "f" #op " st, st(1)", M_NONE, 0)                                                   \
    X(op##_st6, "f" #op " st, st(6)", M_NONE, 0)                                                   \
    X(op##_to3, "f" #op " st(3), st", M_NONE, 0)                                                   \
    X(op##_to1, "f" #op " st(1), st", M_NONE, 0)                                                   \
    X(op##p_1, "f" #op "p st(1), st", M_NONE, 0)                                                   \
    X(op##p_5, "f" #op "p st(5), st", M_NONE, 0)                                                   \
    X(op##_m32, "f" #op " dword ptr [rsi]", M_F32, 4)                                              \
    X(op##_m64, "f" #op " qword ptr [rsi]", M_F64, 8)                                              \
    X(op##_i16, "fi" #op " word ptr [rsi]", M_I16, 2)                                              \
    X(op##_i32, "fi" #op " dword ptr [rsi]", M_I32, 4)

#define INSNS_ARITH(X)                                                                             \
    ARITH(X, add) ARITH(X, mul) ARITH(X, sub) ARITH(X, subr) ARITH(X, div) ARITH(X, divr)

#define INSNS_LDST(X)                                                                              \
    X(fld_m32, "fld dword ptr [rsi]", M_F32, 4)                                                    \
    X(fld_m64, "fld qword ptr [rsi]", M_F64, 8)                                                    \
    X(fld_m80, "fld tbyte ptr [rsi]", M_F80, 10)                                                   \
    X(fld_st0, "fld st(0)", M_NONE, 0)                                                             \
    X(fld_st5, "fld st(5)", M_NONE, 0)                                                             \
    X(fld_st2, "fld st(2)", M_NONE, 0)                                                             \
    X(fld_st7, "fld st(7)", M_NONE, 0)                                                             \
    X(fild_16, "fild word ptr [rsi]", M_I16, 2)                                                    \
    X(fild_32, "fild dword ptr [rsi]", M_I32, 4)                                                   \
    X(fild_64, "fild qword ptr [rsi]", M_I64, 8)                                                   \
    X(fbld, "fbld tbyte ptr [rsi]", M_BCD, 10)                                                     \
    X(fld1, "fld1", M_NONE, 0)                                                                     \
    X(fldz, "fldz", M_NONE, 0)                                                                     \
    X(fldpi, "fldpi", M_NONE, 0)                                                                   \
    X(fldl2e, "fldl2e", M_NONE, 0)                                                                 \
    X(fldl2t, "fldl2t", M_NONE, 0)                                                                 \
    X(fldlg2, "fldlg2", M_NONE, 0)                                                                 \
    X(fldln2, "fldln2", M_NONE, 0)                                                                 \
    X(fst_m32, "fst dword ptr [rsi]", M_F32, 4)                                                    \
    X(fst_m64, "fst qword ptr [rsi]", M_F64, 8)                                                    \
    X(fstp_m32, "fstp dword ptr [rsi]", M_F32, 4)                                                  \
    X(fstp_m64, "fstp qword ptr [rsi]", M_F64, 8)                                                  \
    X(fstp_m80, "fstp tbyte ptr [rsi]", M_F80, 10)                                                 \
    X(fst_st4, "fst st(4)", M_NONE, 0)                                                             \
    X(fstp_st0, "fstp st(0)", M_NONE, 0)                                                           \
    X(fstp_st1, "fstp st(1)", M_NONE, 0)                                                           \
    X(fstp_st6, "fstp st(6)", M_NONE, 0)                                                           \
    X(fist_16, "fist word ptr [rsi]", M_I16, 2)                                                    \
    X(fist_32, "fist dword ptr [rsi]", M_I32, 4)                                                   \
    X(fistp_16, "fistp word ptr [rsi]", M_I16, 2)                                                  \
    X(fistp_32, "fistp dword ptr [rsi]", M_I32, 4)                                                 \
    X(fistp_64, "fistp qword ptr [rsi]", M_I64, 8)                                                 \
    X(fisttp_16, "fisttp word ptr [rsi]", M_I16, 2)                                                \
    X(fisttp_32, "fisttp dword ptr [rsi]", M_I32, 4)                                               \
    X(fisttp_64, "fisttp qword ptr [rsi]", M_I64, 8)                                               \
    X(fbstp, "fbstp tbyte ptr [rsi]", M_BCD, 10)                                                   \
    X(fxch1, "fxch st(1)", M_NONE, 0)                                                              \
    X(fxch5, "fxch st(5)", M_NONE, 0)                                                              \
    X(fcmovb, "fcmovb st, st(1)", M_NONE, 0)                                                       \
    X(fcmove, "fcmove st, st(2)", M_NONE, 0)                                                       \
    X(fcmovbe, "fcmovbe st, st(7)", M_NONE, 0)                                                     \
    X(fcmovu, "fcmovu st, st(3)", M_NONE, 0)                                                       \
    X(fcmovnb, "fcmovnb st, st(1)", M_NONE, 0)                                                     \
    X(fcmovne, "fcmovne st, st(4)", M_NONE, 0)                                                     \
    X(fcmovnbe, "fcmovnbe st, st(0)", M_NONE, 0)                                                   \
    X(fcmovnu, "fcmovnu st, st(6)", M_NONE, 0)

#define INSNS_MISC(X)                                                                              \
    X(fchs, "fchs", M_NONE, 0)                                                                     \
    X(fabs, "fabs", M_NONE, 0)                                                                     \
    X(fsqrt, "fsqrt", M_NONE, 0)                                                                   \
    X(fprem, "fprem", M_NONE, 0)                                                                   \
    X(fprem1, "fprem1", M_NONE, 0)                                                                 \
    X(frndint, "frndint", M_NONE, 0)                                                               \
    X(fscale, "fscale", M_NONE, 0)                                                                 \
    X(fxtract, "fxtract", M_NONE, 0)                                                               \
    X(ftst, "ftst", M_NONE, 0)                                                                     \
    X(fxam, "fxam", M_NONE, 0)                                                                     \
    X(f2xm1, "f2xm1", M_NONE, 0)                                                                   \
    X(fyl2x, "fyl2x", M_NONE, 0)                                                                   \
    X(fyl2xp1, "fyl2xp1", M_NONE, 0)                                                               \
    X(fptan, "fptan", M_NONE, 0)                                                                   \
    X(fpatan, "fpatan", M_NONE, 0)                                                                 \
    X(fsin, "fsin", M_NONE, 0)                                                                     \
    X(fcos, "fcos", M_NONE, 0)                                                                     \
    X(fsincos, "fsincos", M_NONE, 0)

#define INSNS_CMP(X)                                                                               \
    X(fcom1, "fcom st(1)", M_NONE, 0)                                                              \
    X(fcom4, "fcom st(4)", M_NONE, 0)                                                              \
    X(fcomp3, "fcomp st(3)", M_NONE, 0)                                                            \
    X(fcompp, "fcompp", M_NONE, 0)                                                                 \
    X(fucom2, "fucom st(2)", M_NONE, 0)                                                            \
    X(fucomp1, "fucomp st(1)", M_NONE, 0)                                                          \
    X(fucompp, "fucompp", M_NONE, 0)                                                               \
    X(fcomi1, "fcomi st, st(1)", M_NONE, 0)                                                        \
    X(fcomi5, "fcomi st, st(5)", M_NONE, 0)                                                        \
    X(fcomip2, "fcomip st, st(2)", M_NONE, 0)                                                      \
    X(fucomi1, "fucomi st, st(1)", M_NONE, 0)                                                      \
    X(fucomip7, "fucomip st, st(7)", M_NONE, 0)                                                    \
    X(fcom_m32, "fcom dword ptr [rsi]", M_F32, 4)                                                  \
    X(fcom_m64, "fcom qword ptr [rsi]", M_F64, 8)                                                  \
    X(fcomp_m32, "fcomp dword ptr [rsi]", M_F32, 4)                                                \
    X(fcomp_m64, "fcomp qword ptr [rsi]", M_F64, 8)                                                \
    X(ficom_16, "ficom word ptr [rsi]", M_I16, 2)                                                  \
    X(ficom_32, "ficom dword ptr [rsi]", M_I32, 4)                                                 \
    X(ficomp_16, "ficomp word ptr [rsi]", M_I16, 2)                                                \
    X(ficomp_32, "ficomp dword ptr [rsi]", M_I32, 4)

#define INSNS_CTL(X)                                                                               \
    X(ffree3, "ffree st(3)", M_NONE, 0)                                                            \
    X(ffreep1, "ffreep st(1)", M_NONE, 0)                                                          \
    X(fincstp, "fincstp", M_NONE, 0)                                                               \
    X(fdecstp, "fdecstp", M_NONE, 0)                                                               \
    X(fnop, "fnop", M_NONE, 0)                                                                     \
    X(fneni, ".byte 0xdb, 0xe0", M_NONE, 0)                                                        \
    X(fndisi, ".byte 0xdb, 0xe1", M_NONE, 0)                                                       \
    X(fnsetpm, ".byte 0xdb, 0xe4", M_NONE, 0)                                                      \
    X(fnclex, "fnclex", M_NONE, 0)                                                                 \
    X(fninit, "fninit", M_NONE, 0)                                                                 \
    X(fnstsw_ax, "fnstsw ax", M_NONE, 0)                                                           \
    X(fnstsw_m, "fnstsw [rsi]", M_RAW, 2)                                                          \
    X(fnstcw_m, "fnstcw [rsi]", M_RAW, 2)                                                          \
    X(fldcw_m, "fldcw [rsi]", M_CW, 2)                                                             \
    X(fnstenv, "fnstenv [rsi]", M_RAW, 28)                                                         \
    X(fnstenv16, ".byte 0x66, 0xd9, 0x36", M_RAW, 14)                                              \
    X(fldenv16, ".byte 0x66, 0xd9, 0x26", M_ENV, 14)                                               \
    X(fnsave16, ".byte 0x66, 0xdd, 0x36", M_RAW, 94)                                               \
    X(fldenv, "fldenv [rsi]", M_ENV, 28)                                                           \
    X(fnsave, "fnsave [rsi]", M_RAW, 108)                                                          \
    X(frstor, "frstor [rsi]", M_SAVE, 108)                                                         \
    X(frstor16, ".byte 0x66, 0xdd, 0x26", M_SAVE, 94)                                              \
    X(fxsave64, "fxsave64 [rsi]", M_RAW, 512)                                                      \
    X(fxsave32, "fxsave [rsi]", M_RAW, 512)                                                        \
    X(fxrstor64, "fxrstor64 [rsi]", M_FX, 512)                                                     \
    X(fxrstor32, "fxrstor [rsi]", M_FX, 512)

#define DEFINE(name, insn, mk, msz) X87T(name, insn);
INSNS_ARITH(DEFINE)
INSNS_LDST(DEFINE)
INSNS_MISC(DEFINE)
INSNS_CMP(DEFINE)
INSNS_CTL(DEFINE)

struct xt {
    const char *name;
    const uint8_t *b, *e;
    uint64_t (*native)(struct fx *, void *, uint64_t);
    unsigned mk, msz;
};
#define ENTRY(name, insn, mk, msz) {#name, name##_i, name##_e, name##_n, mk, msz},

/* ---- random operands ---- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* An 80-bit value from one of the interesting classes. */
static void rand_f80(uint64_t *s, uint8_t out[10])
{
    uint64_t m = rnd(s), r = rnd(s);
    unsigned sign = (r >> 20) & 1, e;
    switch (r % 16) {
    case 0: e = 0, m = 0; break;                                             /* zero */
    case 1: e = 0, m &= ~(1ull << 63); break;                                /* denormal */
    case 2: e = 0, m |= 1ull << 63; break;                                   /* pseudo-denormal */
    case 3: e = 1 + (unsigned)(r >> 24) % 0x7ffe, m &= ~(1ull << 63); break; /* unnormal */
    case 4: e = 0x7fff, m = 1ull << 63; break;                               /* infinity */
    case 5: e = 0x7fff, m |= 3ull << 62; break;                              /* QNaN */
    case 6: e = 0x7fff, m = (m | 1) & ~(1ull << 62), m |= 1ull << 63; break; /* SNaN */
    case 7: e = 0x7fff, m &= ~(1ull << 63); break;                           /* pseudo-NaN/inf */
    case 8:
        e = (unsigned)(r >> 24) & 0x7ffe, m |= 1ull << 63;
        if (!e) e = 1;
        break;                                                             /* any */
    case 9: e = 1 + (unsigned)(r >> 24) % 3, m |= 1ull << 63; break;       /* tiny */
    case 10: e = 0x7ffe - (unsigned)(r >> 24) % 3, m |= 1ull << 63; break; /* huge */
    case 11: /* small integers, halves */
        e = 0x3fff + (unsigned)(r >> 24) % 12, m = (m | 1ull << 63) & ~((1ull << 50) - 1);
        break;
    case 12: /* 2^63-ish, int64 bounds */
        e = 0x403c + (unsigned)(r >> 24) % 4, m |= 1ull << 63;
        break;
    default: e = 0x3fff - 40 + (unsigned)(r >> 24) % 80, m |= 1ull << 63; break;
    }
    memcpy(out, &m, 8);
    uint16_t se = (uint16_t)(e | sign << 15);
    memcpy(out + 8, &se, 2);
}

static void rand_mem(uint64_t *s, unsigned mk, uint8_t *mem, unsigned msz)
{
    for (unsigned i = 0; i < 512; i += 8) {
        uint64_t x = rnd(s);
        memcpy(mem + i, &x, 8);
    }
    uint64_t r = rnd(s);
    uint8_t f[10];
    rand_f80(s, f);
    long double ld;
    memcpy(&ld, f, 10);
    switch (mk) {
    case M_F32:
        if (r & 1) {
            float v = (float)ld;
            memcpy(mem, &v, 4);
        }
        break;
    case M_F64:
        if (r & 1) {
            double v = (double)ld;
            memcpy(mem, &v, 8);
        }
        break;
    case M_F80: memcpy(mem, f, 10); break;
    case M_I16:
    case M_I32:
    case M_I64:
        if (r & 1) { /* small values, bounds */
            int64_t v = (int64_t)(rnd(s) % 2001) - 1000;
            if ((r & 6) == 2) v = (r & 8) ? INT64_MIN : INT64_MAX;
            memcpy(mem, &v, 8);
            if (mk == M_I16 && (r & 6) == 4) mem[0] = 0, mem[1] = 0x80;
        }
        break;
    case M_BCD:
        if (r & 1)
            for (unsigned i = 0; i < 9; i++)
                mem[i] = (uint8_t)((rnd(s) % 10) << 4 | rnd(s) % 10);
        mem[9] &= 0x80 | ((r & 2) ? 0x7f : 0);
        break;
    case M_CW: break;
    case M_ENV:
    case M_SAVE:
        /* 32-bit layout; the 16-bit one only reads the first words */
        if (r & 1) mem[0] |= 0x3f; /* often all masked */
        for (unsigned k = 0; k < 8; k++)
            rand_f80(s, mem + (msz == 94 ? 14 : 28) + 10 * k);
        break;
    case M_FX: {
        uint32_t mx = (uint32_t)rnd(s) & 0xffbf;
        mx = (mx & ~0x3fu) | 0x1f80; /* masked: the host keeps running */
        memcpy(mem + 24, &mx, 4);
        for (unsigned k = 0; k < 8; k++)
            rand_f80(s, mem + 32 + 16 * k);
        break;
    }
    default: break;
    }
    (void)msz;
}

/* A random x87 state with no exception pending. */
/* A random state; pending: unmasked exception flags may be set (only for
 * the non-waiting instructions, which do not trap on the host). */
static void rand_state(uint64_t *s, struct fx *fx, bool pending)
{
    memset(fx, 0, sizeof *fx);
    uint64_t r = rnd(s);
    static const uint16_t pc[] = {0x000, 0x200, 0x300, 0x300};
    fx->fcw = (uint16_t)(0x40 | pc[r & 3] | ((r >> 2) & 3) << 10);
    fx->fcw |= (r >> 4) % 5 ? 0x3f : (uint16_t)((r >> 8) & 0x3f);
    fx->fsw =
        (uint16_t)((r >> 16) & 0x7f00) | ((uint16_t)(r >> 32) & 0x7f & (pending ? 0x7f : fx->fcw));
    if (fx->fsw & 0x3f & ~fx->fcw) fx->fsw |= 0x80;
    if ((fx->fsw & 0x3f) == 0) fx->fsw &= (uint16_t)~0x40;
    unsigned tk = (r >> 40) % 4;
    fx->ftw = tk == 0 ? 0xff : tk == 1 ? 0 : (uint8_t)(r >> 48);
    fx->mxcsr = 0x1f80;
    for (unsigned k = 0; k < 8; k++)
        rand_f80(s, fx->st[k]);
    for (unsigned k = 0; k < 16; k++)
        for (unsigned j = 0; j < 16; j += 8) {
            uint64_t x = rnd(s);
            memcpy(&fx->xmm[k][j], &x, 8);
        }
    fx->rax_in = rnd(s);
    fx->fip = rnd(s) & 0x7fffffffffffull; /* canonical user addresses */
    fx->fdp = rnd(s) & 0x7fffffffffffull;
    fx->fop = (uint16_t)(rnd(s) & 0x7ff);
}

static bool nowait(const char *name)
{
    return (strncmp(name, "fn", 2) == 0 && strcmp(name, "fnop") != 0) ||
           strncmp(name, "fxsave", 6) == 0;
}

/* ---- hvp side ---- */

struct vm {
    struct hvp_cpu *cpu;
    uint8_t *code, *data;
    struct hvp_cpu_state st0;
};

static void vm_init(struct vm *v, const uint8_t *b, const uint8_t *e)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    cr_assert_eq(hvp_cpu_create(&cfg, &v->cpu), 0);
    v->code = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v->data = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(v->code != MAP_FAILED && v->data != MAP_FAILED);
    memset(v->code, 0xcc, 0x2000);
    memcpy(v->code, b, (size_t)(e - b));
    cr_assert_eq(hvp_cpu_map(v->cpu, CODE, 0x2000, v->code, 7), 0);
    cr_assert_eq(hvp_cpu_map(v->cpu, DATA, 0x2000, v->data, 3), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st0), 0);
}

static void vm_fini(struct vm *v)
{
    hvp_cpu_destroy(v->cpu);
    munmap(v->code, 0x2000);
    munmap(v->data, 0x2000);
}

static void state_from_fx(struct hvp_cpu_state *st, const struct fx *fx)
{
    st->fpu.fcw = fx->fcw;
    st->fpu.fsw = fx->fsw;
    st->fpu.ftw = fx->ftw;
    st->fpu.fop = fx->fop;
    st->fpu.fip = fx->fip;
    st->fpu.fdp = fx->fdp;
    st->fpu.mxcsr = fx->mxcsr;
    for (unsigned k = 0; k < 8; k++) {
        memset(st->fpu.st[k], 0, 16);
        memcpy(st->fpu.st[k], fx->st[k], 10);
    }
    memcpy(st->fpu.xmm, fx->xmm, sizeof fx->xmm);
}

static void hexs(char *o, const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(o + 2 * i, "%02x", p[n - 1 - i]);
}

/* Runs n random cases of one instruction both ways; returns cases run. */
static unsigned diff_insn(const struct xt *t, unsigned n, uint64_t seed)
{
    struct vm v;
    vm_init(&v, t->b, t->e);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (unsigned c = 0; c < n; c++) {
        struct fx in, nat;
        uint8_t mem0[512] __attribute__((aligned(16))), mnat[512] __attribute__((aligned(16)));
        rand_state(&s, &in, nowait(t->name));
        rand_mem(&s, t->mk, mem0, t->msz);
        uint64_t fl = 0x202 | (rnd(&s) & 0x45);
        nat = in;
        memcpy(mnat, mem0, 512);
        uint64_t nfl = t->native(&nat, mnat, fl);

        struct hvp_cpu_state st = v.st0;
        st.rip = CODE;
        st.rflags = fl;
        st.gpr[0] = in.rax_in;
        st.gpr[6] = DATA;
        state_from_fx(&st, &in);
        cr_assert_eq(hvp_cpu_set_state(v.cpu, &st), 0);
        memcpy(v.data, mem0, 512);
        struct hvp_cpu_exit ex;
        cr_assert_eq(hvp_cpu_run(v.cpu, 1, &ex), 0);
        cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET, "%s: exit %u vector %u", t->name, ex.reason,
                     ex.u.exception.vector);
        cr_assert_eq(hvp_cpu_get_state(v.cpu, &st), 0);
        const struct hvp_cpu_fpu *f = &st.fpu;
        char a[64], b[64];
        cr_assert_eq(st.rip, CODE + (uint64_t)(t->e - t->b), "%s", t->name);
        cr_assert_eq(f->fsw, nat.fsw, "%s case %u: fsw %#x native %#x (in fsw %#x fcw %#x)",
                     t->name, c, f->fsw, nat.fsw, in.fsw, in.fcw);
        cr_assert_eq(f->ftw, nat.ftw, "%s case %u: ftw %#x native %#x", t->name, c, f->ftw,
                     nat.ftw);
        cr_assert_eq(f->fcw, nat.fcw, "%s case %u: fcw %#x native %#x", t->name, c, f->fcw,
                     nat.fcw);
        for (unsigned k = 0; k < 8; k++) {
            hexs(a, f->st[k], 10);
            hexs(b, nat.st[k], 10);
            cr_assert(memcmp(f->st[k], nat.st[k], 10) == 0,
                      "%s case %u: st(%u) %s native %s (fcw %#x)", t->name, c, k, a, b, in.fcw);
        }
        cr_assert_eq(st.rflags & 0x8d5, nfl & 0x8d5, "%s case %u: rflags %#lx native %#lx", t->name,
                     c, (unsigned long)st.rflags, (unsigned long)nfl);
        cr_assert_eq(st.gpr[0], nat.rax_out, "%s: rax", t->name);
        cr_assert_eq(f->mxcsr, nat.mxcsr, "%s: mxcsr", t->name);
        cr_assert(memcmp(f->xmm, nat.xmm, sizeof nat.xmm) == 0, "%s: xmm", t->name);
        if (t->mk != M_NONE) {
            uint8_t *h = v.data;
            /* MXCSR_MASK is the host's; with no x87 operation in between, the
             * host's FIP/FDP/FOP in an environment are the loaded ones, and its
             * FCS/FDS are 0 after FXRSTOR64 as hvp's always are */
            if (t->mk == M_RAW && t->msz == 512) memcpy(h + 28, mnat + 28, 4);
            /* a context switch between FXRSTOR64 and the instruction loses the
             * host's pointers on AMD (the kernel clears them when ES is 0) */
            static const uint8_t z[8];
            if (t->mk == M_RAW && (t->msz == 28 || t->msz == 108) && !memcmp(mnat + 12, z, 4) &&
                !memcmp(mnat + 20, z, 4)) {
                memcpy(h + 12, mnat + 12, 4);
                memcpy(h + 16, mnat + 16, 4);
                memcpy(h + 20, mnat + 20, 4);
            }
            if (t->mk == M_RAW && (t->msz == 14 || t->msz == 94) && !memcmp(mnat + 6, z, 2) &&
                !memcmp(mnat + 10, z, 2)) {
                memcpy(h + 6, mnat + 6, 2);
                memcpy(h + 10, mnat + 10, 2);
            }
            for (unsigned i = 0; i < 512; i++)
                cr_assert_eq(h[i], mnat[i],
                             "%s case %u: memory byte %u: %#x native %#x (fsw %#x fcw %#x fip %#lx "
                             "fdp %#lx ftw %#x)",
                             t->name, c, i, h[i], mnat[i], in.fsw, in.fcw, (unsigned long)in.fip,
                             (unsigned long)in.fdp, in.ftw);
        }
        /* FIP/FOP/FDP: native FXSAVE shows them only while ES is set */
        /* ... unless a context switch on the host lost them: an instruction
         * that raised ES from clear (FLDCW unmasking a pending flag) may have
         * been preempted while ES was 0, and AMD's XSAVE then drops the
         * pointers (all of them read back as 0) */
        bool lost = nat.fop == 0 && nat.fip == 0 && !(in.fsw & 0x80);
        if (nat.fsw & 0x80 && !lost && t->mk != M_FX && t->mk != M_ENV && t->mk != M_SAVE) {
            cr_assert_eq(f->fop, nat.fop, "%s: fop %#x native %#x", t->name, f->fop, nat.fop);
            /* control instructions leave the pointers alone */
            bool upd = nat.fip != in.fip;
            cr_assert_eq(f->fip, upd ? CODE : in.fip, "%s: fip %#lx native %#lx in %#lx", t->name,
                         (unsigned long)f->fip, (unsigned long)nat.fip, (unsigned long)in.fip);
            cr_assert_eq(f->fdp, upd && t->mk != M_NONE ? DATA : in.fdp, "%s: fdp", t->name);
        }
    }
    vm_fini(&v);
    return n;
}

static unsigned diff_table(const struct xt *t, size_t nt, unsigned n, const char *what)
{
    unsigned total = 0;
    for (size_t i = 0; i < nt; i++)
        total += diff_insn(&t[i], n, i + 1);
    cr_log_info("%s: %zu instructions, %u random host comparisons", what, nt, total);
    fprintf(stderr, "x87 %s: %zu instructions, %u random host comparisons\n", what, nt, total);
    return total;
}

#define NCASES 3000

Test(x87, arith)
{
    static const struct xt t[] = {INSNS_ARITH(ENTRY)};
    diff_table(t, sizeof t / sizeof t[0], NCASES, "arith");
}

Test(x87, load_store)
{
    static const struct xt t[] = {INSNS_LDST(ENTRY)};
    diff_table(t, sizeof t / sizeof t[0], NCASES, "load/store");
}

Test(x87, misc_transcendental)
{
    static const struct xt t[] = {INSNS_MISC(ENTRY)};
    diff_table(t, sizeof t / sizeof t[0], NCASES, "misc/transcendental");
}

Test(x87, compare)
{
    static const struct xt t[] = {INSNS_CMP(ENTRY)};
    diff_table(t, sizeof t / sizeof t[0], NCASES, "compare");
}

Test(x87, control)
{
    static const struct xt t[] = {INSNS_CTL(ENTRY)};
    diff_table(t, sizeof t / sizeof t[0], NCASES, "control");
}

/* ---- faults: #MF, #NM, #GP ---- */

static struct hvp_cpu_exit run_code(struct vm *v, const uint8_t *b, const uint8_t *e,
                                    struct hvp_cpu_state *st, uint64_t budget)
{
    memset(v->code, 0xcc, 0x2000);
    memcpy(v->code, b, (size_t)(e - b));
    hvp_cpu_invalidate_code(v->cpu, CODE, 0x2000);
    st->rip = CODE;
    st->gpr[6] = DATA;
    cr_assert_eq(hvp_cpu_set_state(v->cpu, st), 0);
    struct hvp_cpu_exit ex;
    cr_assert_eq(hvp_cpu_run(v->cpu, budget, &ex), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, st), 0);
    return ex;
}

static void expect_exc(const struct hvp_cpu_exit *ex, unsigned vec)
{
    cr_assert_eq(ex->reason, HVP_CPU_EXIT_EXCEPTION, "exit %u", ex->reason);
    cr_assert_eq(ex->u.exception.vector, vec, "vector %u, want %u", ex->u.exception.vector, vec);
}

X87T(p_fadd, "fadd st, st(1)");
X87T(p_fnstsw, "fnstsw ax");
X87T(p_divz, "fld1\n fldz\n fdivp st(1), st\n fld1");
X87T(p_fldcw, "fldcw [rsi]\n fld1");
X87T(p_fxsave, "fxsave64 [rsi + 8]");
X87T(p_fxrstor, "fxrstor64 [rsi]");
X87T(p_fwait, "fwait");

Test(x87, pending_exception_mf)
{
    struct vm v;
    vm_init(&v, p_fadd_i, p_fadd_e);
    struct hvp_cpu_state st = v.st0, st0;
    st.fpu.fcw = 0x37b; /* ZE unmasked */
    st.fpu.fsw = 0x0004 | 0x80 | 0x8000;
    st.fpu.ftw = 0xff;
    st0 = st;
    /* a waiting instruction faults before doing anything */
    struct hvp_cpu_exit ex = run_code(&v, p_fadd_i, p_fadd_e, &st, 1);
    expect_exc(&ex, 16);
    cr_assert_eq(st.rip, CODE);
    cr_assert(memcmp(&st.fpu, &st0.fpu, sizeof st.fpu) == 0);
    /* FNSTSW does not wait */
    st = st0;
    ex = run_code(&v, p_fnstsw_i, p_fnstsw_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(st.gpr[0] & 0xffff, 0x8084);
    /* an unmasked #Z retires the division (nothing stored, no pop); the next x87
     * instruction faults */
    st = st0;
    st.fpu.fsw = 0;
    st.fpu.ftw = 0;
    ex = run_code(&v, p_divz_i, p_divz_e, &st, 0);
    expect_exc(&ex, 16);
    cr_assert_eq(st.rip, CODE + (uint64_t)(p_divz_e - p_divz_i) - 2, "rip %#lx",
                 (unsigned long)st.rip);
    cr_assert_eq(st.fpu.fsw & 0xbfff, 0x8084 | 6u << 11, "fsw %#x", st.fpu.fsw);
    cr_assert_eq(st.fpu.fip, CODE + 4); /* the FDIVP */
    cr_assert_eq(st.fpu.fop, 0x6f9);
    /* unmasking a set flag with FLDCW makes it pending */
    st = v.st0;
    st.fpu.fsw = 0x0001;
    uint16_t cw = 0x37e;
    memcpy(v.data, &cw, 2);
    ex = run_code(&v, p_fldcw_i, p_fldcw_e, &st, 0);
    expect_exc(&ex, 16);
    cr_assert_eq(st.rip, CODE + 2);
    cr_assert_eq(st.fpu.fsw, 0x8081);
    /* FWAIT: #MF too */
    st = st0;
    ex = run_code(&v, p_fwait_i, p_fwait_e, &st, 1);
    expect_exc(&ex, 16);
    cr_assert_eq(st.rip, CODE);
    /* nothing pending: FWAIT retires; #NM only with CR0.MP and TS both set */
    st = v.st0;
    ex = run_code(&v, p_fwait_i, p_fwait_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    st = v.st0;
    st.cr0 = (st.cr0 & ~0xeull) | 8; /* TS */
    ex = run_code(&v, p_fwait_i, p_fwait_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    st = v.st0;
    st.cr0 = (st.cr0 & ~0xeull) | 0xa; /* MP, TS */
    ex = run_code(&v, p_fwait_i, p_fwait_e, &st, 1);
    expect_exc(&ex, 7);
    vm_fini(&v);
}

Test(x87, nm_and_gp)
{
    struct vm v;
    vm_init(&v, p_fadd_i, p_fadd_e);
    struct hvp_cpu_state st = v.st0;
    st.cr0 |= 8; /* TS */
    struct hvp_cpu_exit ex = run_code(&v, p_fadd_i, p_fadd_e, &st, 1);
    expect_exc(&ex, 7);
    st = v.st0;
    st.cr0 |= 4; /* EM: #NM for x87, #UD for FXSAVE */
    ex = run_code(&v, p_fadd_i, p_fadd_e, &st, 1);
    expect_exc(&ex, 7);
    st = v.st0;
    st.cr0 |= 4;
    ex = run_code(&v, p_fxsave_i, p_fxsave_e, &st, 1);
    expect_exc(&ex, 6);
    st = v.st0;
    ex = run_code(&v, p_fxsave_i, p_fxsave_e, &st, 1); /* misaligned */
    expect_exc(&ex, 13);
    /* reserved MXCSR bits: #GP, nothing loaded */
    memset(v.data, 0, 512);
    uint32_t mx = 0x11f80;
    memcpy(v.data + 24, &mx, 4);
    st = v.st0;
    ex = run_code(&v, p_fxrstor_i, p_fxrstor_e, &st, 1);
    expect_exc(&ex, 13);
    cr_assert_eq(st.fpu.fcw, 0x37f);
    mx = 0x1f80;
    memcpy(v.data + 24, &mx, 4);
    ex = run_code(&v, p_fxrstor_i, p_fxrstor_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(st.fpu.fcw, 0x40);
    vm_fini(&v);
}

/* ---- long-double program paths (glibc expl/logl/sinl-like kernels) ---- */

X87T(k_expl, "fld tbyte ptr [rsi]\n fldl2e\n fmulp st(1), st\n fld st(0)\n frndint\n"
             " fsub st(1), st\n fxch st(1)\n f2xm1\n fld1\n faddp st(1), st\n fscale\n"
             " fstp st(1)\n fstp tbyte ptr [rsi + 16]\n fnstsw ax\n");
X87T(k_logl, "fldln2\n fld tbyte ptr [rsi]\n fyl2x\n fstp tbyte ptr [rsi + 32]\n"
             " fldln2\n fld tbyte ptr [rsi]\n fyl2xp1\n fstp tbyte ptr [rsi + 48]\n fld tbyte ptr "
             "[rsi + 48]\n"
             " fxam\n fnstsw ax\n");
X87T(k_sinl, "fld tbyte ptr [rsi]\n fldpi\n fadd st, st(0)\n fxch st(1)\n"
             "2: fprem1\n fnstsw ax\n test ah, 4\n jnz 2b\n fstp st(1)\n fsincos\n"
             " fstp tbyte ptr [rsi + 16]\n fstp tbyte ptr [rsi + 32]\n fld tbyte ptr [rsi]\n"
             " fpatan\n fstp tbyte ptr [rsi + 48]\n");
X87T(k_misc, "fld tbyte ptr [rsi]\n fld qword ptr [rsi + 16]\n fcomi st, st(1)\n"
             " fcmovb st, st(1)\n fucomip st, st(1)\n fnstcw [rsi + 64]\n movzx eax, word ptr "
             "[rsi + 64]\n or ah, 0xc\n mov [rsi + 66], ax\n fldcw [rsi + 66]\n fld st(0)\n"
             " fistp qword ptr [rsi + 72]\n fldcw [rsi + 64]\n fxtract\n fstp tbyte ptr [rsi + "
             "80]\n fsqrt\n fstp dword ptr [rsi + 96]\n fninit\n fbld tbyte ptr [rsi + 100]\n"
             " fchs\n fbstp tbyte ptr [rsi + 112]\n fnstsw ax\n");

static unsigned diff_program(const uint8_t *b, const uint8_t *e,
                             uint64_t (*native)(struct fx *, void *, uint64_t), unsigned n,
                             uint64_t seed)
{
    struct vm v;
    vm_init(&v, b, e);
    uint64_t s = seed;
    for (unsigned c = 0; c < n; c++) {
        struct fx in, nat;
        uint8_t mem[512] __attribute__((aligned(16)));
        memset(&in, 0, sizeof in);
        in.fcw = 0x37f;
        in.mxcsr = 0x1f80;
        memset(mem, 0, sizeof mem);
        rand_f80(&s, mem);
        double dv = (double)(rnd(&s) % 2000) / 7.0 - 140.0;
        memcpy(mem + 16, &dv, 8);
        for (unsigned i = 0; i < 9; i++)
            mem[100 + i] = (uint8_t)((rnd(&s) % 10) << 4 | rnd(&s) % 10);
        mem[109] = (uint8_t)(rnd(&s) & 0x80);
        nat = in;
        uint8_t mnat[512];
        memcpy(mnat, mem, 512);
        uint64_t nfl = native(&nat, mnat, 0x202);
        struct hvp_cpu_state st = v.st0;
        st.rflags = 0x202;
        state_from_fx(&st, &in);
        memcpy(v.data, mem, 512);
        struct hvp_cpu_exit ex = run_code(&v, b, e, &st, 0);
        expect_exc(&ex, 3); /* the INT3 after the program */
        cr_assert(memcmp(v.data, mnat, 512) == 0, "program %u: memory", c);
        cr_assert_eq(st.fpu.fsw, nat.fsw, "fsw %#x native %#x", st.fpu.fsw, nat.fsw);
        cr_assert_eq(st.fpu.ftw, nat.ftw);
        cr_assert_eq(st.fpu.fcw, nat.fcw);
        cr_assert(memcmp(st.fpu.st, nat.st, sizeof nat.st) == 0);
        cr_assert_eq(st.gpr[0], nat.rax_out);
        cr_assert_eq(st.rflags & 0x8d5, nfl & 0x8d5);
    }
    vm_fini(&v);
    return n;
}

Test(x87, long_double_programs)
{
    unsigned n = 0;
    n += diff_program(k_expl_i, k_expl_e, k_expl_n, 2000, 11);
    n += diff_program(k_logl_i, k_logl_e, k_logl_n, 2000, 12);
    n += diff_program(k_sinl_i, k_sinl_e, k_sinl_n, 2000, 13);
    n += diff_program(k_misc_i, k_misc_e, k_misc_n, 2000, 14);
    fprintf(stderr, "x87 programs: %u random host comparisons\n", n);
}

/* ---- memory operands across pages; a faulting store changes nothing ---- */

X87T(p_cross,
     "fld tbyte ptr [rsi + 0xffa]\n fld1\n faddp st(1), st\n fstp tbyte ptr [rsi + 0xff8]");
X87T(p_pf, "fld1\n fstp tbyte ptr [rsi + 0x1ffa]");

Test(x87, page_crossing_and_faults)
{
    struct vm v;
    vm_init(&v, p_cross_i, p_cross_e);
    struct hvp_cpu_state st = v.st0;
    long double x = 1234.5L, y;
    memcpy(v.data + 0xffa, &x, 10);
    struct hvp_cpu_exit ex = run_code(&v, p_cross_i, p_cross_e, &st, 4);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    memset(&y, 0, sizeof y);
    memcpy(&y, v.data + 0xff8, 10);
    cr_assert(y == 1235.5L);
    cr_assert_eq(st.fpu.ftw, 0);
    cr_assert_eq(st.fpu.fsw & 0x3800, 0);
    cr_assert_eq(st.fpu.fdp, DATA + 0xff8);
    /* the store's second page is not mapped: #PF, the stack keeps ST(0) */
    st = v.st0;
    ex = run_code(&v, p_pf_i, p_pf_e, &st, 0);
    expect_exc(&ex, 14);
    cr_assert_eq(ex.u.exception.cr2, DATA + 0x2000);
    cr_assert_eq(st.rip, CODE + 2);
    cr_assert_eq(st.fpu.fsw, 7u << 11);
    cr_assert_eq(st.fpu.ftw, 0x80);
    for (unsigned i = 0; i < 6; i++)
        cr_assert_eq(v.data[0x1ffa + i], 0);
    vm_fini(&v);
}

/* ---- FLD ST(7) pushes into ST(7)'s own register; suppressed stores still
 * check their destination; FXSAVE's whole 512 bytes and #SS ---- */

X87T(p_fld7, "fld st(7)");
X87T(p_fisttp_pf, "fisttp word ptr [rsi + 0x1fff]");
X87T(p_fist_ok, "fist dword ptr [rsi]");
X87T(p_fxsave_end, "fxsave64 [rsi + 0x1e80]");
X87T(p_fxsave_ss, "fxsave64 [rsp]");
X87T(p_fxsave_ds, "fxsave64 [rax]");
X87T(p_fldt_rbp, "fld tbyte ptr [rbp]");

Test(x87, stack_fault_and_suppressed_store_checks)
{
    struct vm v;
    vm_init(&v, p_fld7_i, p_fld7_e);
    static const uint8_t indef[10] = {0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff};
    static const uint8_t stale[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0x40};
    static const uint8_t one[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f};
    /* FLD ST(7), ST(7) empty: underflow, the indefinite is the new ST(0) */
    struct hvp_cpu_state st = v.st0;
    st.fpu.fsw = 3u << 11;
    st.fpu.ftw = 0x18; /* ST(0), ST(1) valid */
    memcpy(st.fpu.st[0], one, 10);
    memcpy(st.fpu.st[1], one, 10);
    memcpy(st.fpu.st[7], stale, 10);
    struct hvp_cpu_exit ex = run_code(&v, p_fld7_i, p_fld7_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert(memcmp(st.fpu.st[0], indef, 10) == 0);
    cr_assert(memcmp(st.fpu.st[1], one, 10) == 0);
    cr_assert(memcmp(st.fpu.st[2], one, 10) == 0);
    cr_assert_eq(st.fpu.fsw, (2u << 11) | 0x41, "fsw %#x", st.fpu.fsw);
    cr_assert_eq(st.fpu.ftw, 0x1c);
    /* ST(7) valid: overflow, the indefinite replaces it as ST(0) */
    st = v.st0;
    st.fpu.fsw = 3u << 11;
    st.fpu.ftw = 0x1c;
    memcpy(st.fpu.st[0], one, 10);
    memcpy(st.fpu.st[1], one, 10);
    memcpy(st.fpu.st[7], stale, 10);
    ex = run_code(&v, p_fld7_i, p_fld7_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert(memcmp(st.fpu.st[0], indef, 10) == 0);
    cr_assert(memcmp(st.fpu.st[1], one, 10) == 0);
    cr_assert_eq(st.fpu.fsw, (2u << 11) | 0x241, "fsw %#x", st.fpu.fsw);

    /* FISTTP out of range with IE unmasked: no store, but the destination
     * (straddling into an unmapped page) faults first; nothing changes */
    static const uint8_t big[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0x3e, 0x40}; /* 2^63 */
    st = v.st0;
    st.fpu.fcw = 0x37e;
    st.fpu.fsw = 7u << 11;
    st.fpu.ftw = 0x80;
    memcpy(st.fpu.st[0], big, 10);
    struct hvp_cpu_fpu f0 = st.fpu;
    ex = run_code(&v, p_fisttp_pf_i, p_fisttp_pf_e, &st, 1);
    expect_exc(&ex, 14);
    cr_assert_eq(ex.u.exception.cr2, DATA + 0x2000);
    cr_assert_eq(st.rip, CODE);
    cr_assert(memcmp(&st.fpu, &f0, sizeof f0) == 0);
    /* a good destination: the store is suppressed, IE becomes pending */
    st = v.st0;
    st.fpu = f0;
    memset(v.data, 0x5a, 4);
    ex = run_code(&v, p_fist_ok_i, p_fist_ok_e, &st, 1);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_BUDGET);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(v.data[i], 0x5a);
    cr_assert_eq(st.fpu.fsw & 0x80ff, 0x8081, "fsw %#x", st.fpu.fsw);

    /* FXSAVE writes 416 bytes but checks all 512 */
    st = v.st0;
    ex = run_code(&v, p_fxsave_end_i, p_fxsave_end_e, &st, 1);
    expect_exc(&ex, 14);
    cr_assert_eq(ex.u.exception.cr2 >> 12, (DATA + 0x2000) >> 12);
    for (unsigned i = 0x1e80; i < 0x2000; i++)
        cr_assert_eq(v.data[i], 0);
    /* non-canonical through RSP: #SS(0) even when misaligned; through RAX #GP(0) */
    st = v.st0;
    st.gpr[4] = 0x8000000000000004ull;
    ex = run_code(&v, p_fxsave_ss_i, p_fxsave_ss_e, &st, 1);
    expect_exc(&ex, 12);
    /* only the end non-canonical: alignment first (#GP), then #SS */
    st = v.st0;
    st.gpr[4] = 0x7ffffffffff4ull;
    ex = run_code(&v, p_fxsave_ss_i, p_fxsave_ss_e, &st, 1);
    expect_exc(&ex, 13);
    st = v.st0;
    st.gpr[4] = 0x7ffffffffff0ull;
    ex = run_code(&v, p_fxsave_ss_i, p_fxsave_ss_e, &st, 1);
    expect_exc(&ex, 12);
    /* a load or store ending past the canonical boundary: #SS, not #PF on
     * its (unmapped) first page */
    st = v.st0;
    st.gpr[5] = 0x7ffffffffffaull;
    ex = run_code(&v, p_fldt_rbp_i, p_fldt_rbp_e, &st, 1);
    expect_exc(&ex, 12);
    st = v.st0;
    st.gpr[0] = 0x8000000000000004ull;
    ex = run_code(&v, p_fxsave_ds_i, p_fxsave_ds_e, &st, 1);
    expect_exc(&ex, 13);
    vm_fini(&v);
}
