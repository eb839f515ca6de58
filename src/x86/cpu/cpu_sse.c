/* hvp software x86-64 CPU: MMX, SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2, AES,
 * PCLMULQDQ, SHA.
 *
 * Floating point runs the host's own SSE instruction on the operands with
 * the guest's MXCSR loaded (all exceptions masked, flags cleared), so
 * results, NaN propagation, DAZ/FTZ, rounding and the sticky flags are the
 * host's exactly. An exception the guest left unmasked raises #XM (vector
 * 19) before the destination is written. Integer SIMD is plain C.
 *
 * XMM registers live in cpu->st.fpu.xmm; the array is not 16-byte aligned,
 * so handlers copy registers into aligned locals (memcpy, one movdqu).
 * MMX registers alias the x87 registers (cpu->st.fpu.st, ST(i) order):
 * every MMX instruction but EMMS sets TOP = 0 and tags all valid, and a
 * write stores the value with exponent bits 0xFFFF. */
#include <immintrin.h>

#include "cpu_internal.h"

typedef union {
    uint8_t b[16];
    int8_t sb[16];
    uint16_t w[8];
    int16_t sw[8];
    uint32_t d[4];
    int32_t sd[4];
    uint64_t q[2];
    int64_t sq[2];
    float f[4];
    double g[2];
    __m128i v;
} xmm_t;

/* d->fl bits private to this file */
#define SF_ALIGN 0x1000 /* the memory operand must be 16-byte aligned */
#define SF_MMX   0x2000 /* MMX form (64-bit registers) */
#define SF_W     0x4000 /* REX.W (64-bit GPR operand) */

#define MX_IE 0x01u
#define MX_DE 0x02u
#define MX_ZE 0x04u
#define MX_OE 0x08u
#define MX_UE 0x10u
#define MX_PE 0x20u

/* ---- register access ---- */

static inline xmm_t xget(const struct hvp_cpu *cpu, unsigned r)
{
    xmm_t x;
    memcpy(&x, cpu->st.fpu.xmm[r], 16);
    return x;
}

static inline void xset(struct hvp_cpu *cpu, unsigned r, const xmm_t *x)
{
    memcpy(cpu->st.fpu.xmm[r], x, 16);
}

static inline unsigned fpu_top(const struct hvp_cpu *cpu)
{
    return (cpu->st.fpu.fsw >> 11) & 7;
}

/* MMX register i (physical x87 register i = ST((i - TOP) & 7)). */
static inline uint64_t mm_get(const struct hvp_cpu *cpu, unsigned i)
{
    uint64_t v;
    memcpy(&v, cpu->st.fpu.st[(i - fpu_top(cpu)) & 7], 8);
    return v;
}

/* Before an MMX instruction: CR0.TS -> #NM, a pending unmasked x87
 * exception -> #MF (as the x87 instructions in cpu_x87.c check it). */
static inline void mmx_check(struct hvp_cpu *cpu)
{
    if (unlikely(cpu->st.cr0 & 0x8)) hvp_raise(cpu, 7, -1);
    if (unlikely(cpu->st.fpu.fsw & ~cpu->st.fpu.fcw & 0x3f)) hvp_raise(cpu, 16, -1);
}

/* What every MMX instruction but EMMS does to the x87 state: TOP = 0 (the
 * ST(i) array rotates so that ST(i) = physical register i), all valid.
 * Call after every fault check. */
static inline void mmx_top0(struct hvp_cpu *cpu)
{
    unsigned top = fpu_top(cpu);
    if (unlikely(top)) {
        uint8_t tmp[8][16];
        for (unsigned p = 0; p < 8; p++)
            memcpy(tmp[p], cpu->st.fpu.st[(p - top) & 7], 16);
        memcpy(cpu->st.fpu.st, tmp, sizeof tmp);
        cpu->st.fpu.fsw &= (uint16_t) ~(7u << 11);
    }
}

static inline void mmx_enter(struct hvp_cpu *cpu)
{
    mmx_top0(cpu);
    cpu->st.fpu.ftw = 0xff;
}

static inline void mm_set(struct hvp_cpu *cpu, unsigned i, uint64_t v)
{
    memcpy(cpu->st.fpu.st[i], &v, 8);
    cpu->st.fpu.st[i][8] = 0xff;
    cpu->st.fpu.st[i][9] = 0xff;
}

/* ---- memory ---- */

static inline uint64_t sse_ea(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    uint64_t a = hvp_ea(cpu, d);
    if ((d->fl & SF_ALIGN) && (a & 15)) hvp_raise_gp0(cpu);
    return a;
}

/* Loads d->osz bytes (4, 8 or 16; 1 and 2 for a few) at a into x, rest 0. */
static inline void ld(struct hvp_cpu *cpu, uint64_t a, unsigned n, xmm_t *x)
{
    x->q[0] = x->q[1] = 0;
    switch (n) {
    case 16: {
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
        if (likely(e->tag_r == (a & HVP_PAGE_MASK) && (a & 0xfff) <= 0x1000 - 16))
            memcpy(x, (const void *)(uintptr_t)(a + e->addend), 16);
        else
            hvp_rd_block(cpu, a, x, 16);
        break;
    }
    case 8: x->q[0] = hvp_rd64(cpu, a); break;
    case 4: x->d[0] = (uint32_t)hvp_rd32(cpu, a); break;
    case 2: x->w[0] = (uint16_t)hvp_rd16(cpu, a); break;
    default: x->b[0] = (uint8_t)hvp_rd8(cpu, a); break;
    }
}

static inline void st(struct hvp_cpu *cpu, uint64_t a, unsigned n, const xmm_t *x)
{
    switch (n) {
    case 16: {
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
        if (likely(e->tag_w == (a & HVP_PAGE_MASK) && (a & 0xfff) <= 0x1000 - 16))
            memcpy((void *)(uintptr_t)(a + e->addend), x, 16);
        else
            hvp_wr_block(cpu, a, x, 16);
        break;
    }
    case 8: hvp_wr64(cpu, a, x->q[0]); break;
    case 4: hvp_wr32(cpu, a, x->d[0]); break;
    case 2: hvp_wr16(cpu, a, x->w[0]); break;
    default: hvp_wr8(cpu, a, x->b[0]); break;
    }
}

/* The source operand (operand 1): an XMM register or d->osz bytes of memory. */
static inline void src1(struct hvp_cpu *cpu, const struct hvp_dinsn *d, xmm_t *b)
{
    if (d->fl & HVP_DF_M1)
        ld(cpu, sse_ea(cpu, d), d->osz, b);
    else
        *b = xget(cpu, d->r1);
}

/* ---- MXCSR and the host's FP unit ---- */

/* Runs `insn %[b], %[a]` on the host with MXCSR = *mx; *mx gets the
 * resulting MXCSR. The host's MXCSR is restored in the same asm. */
#define HOST2(name, insn)                                                                          \
    static inline void name(xmm_t *a, const xmm_t *b, uint32_t *mx)                                \
    {                                                                                              \
        __m128i va = a->v, vb = b->v;                                                              \
        uint32_t save, m = *mx;                                                                    \
        __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                                \
                         " %[vb], %[va]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                        \
                         : [va] "+x"(va), [save] "=m"(save), [m] "+m"(m)                           \
                         : [vb] "x"(vb));                                                          \
        a->v = va;                                                                                 \
        *mx = m;                                                                                   \
    }

/* The same with an immediate: one asm per value (a literal in the text). */
#define ASMI(insn, k)                                                                              \
    __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn " $" #k                            \
                     ", %[vb], %[va]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                           \
                     : [va] "+x"(va), [save] "=m"(save), [m] "+m"(m)                               \
                     : [vb] "x"(vb))

/* #XM with the flags the host leaves: when a pre-computation exception
 * (IE, DE, ZE) is unmasked, only those are recorded.
 * With OE or UE unmasked the host rounds with an unbounded exponent:
 * post_exact() recomputes the flags for the basic operations and for each
 * step of DPPS/DPPD (dp_end()). */
_Noreturn static void xm_raise(struct hvp_cpu *cpu, uint32_t g, uint32_t nf)
{
    uint32_t pre = nf & (MX_IE | MX_DE | MX_ZE);
    if (pre & ~(g >> 7)) nf = pre;
    cpu->st.fpu.mxcsr = g | nf;
    hvp_raise(cpu, 19, -1);
}

/* MXCSR to run a host op under: the guest's modes, everything masked,
 * flags clear. */
static inline uint32_t mx_begin(const struct hvp_cpu *cpu)
{
    return (cpu->st.fpu.mxcsr & ~0x3fu) | 0x1f80u;
}

/* Accounts the flags an op raised; #XM when one is unmasked (nothing
 * written yet). */
static inline void mx_end(struct hvp_cpu *cpu, uint32_t m)
{
    uint32_t g = cpu->st.fpu.mxcsr, nf = m & 0x3f;
    if (unlikely(nf & ~(g >> 7) & 0x3f)) xm_raise(cpu, g, nf);
    cpu->st.fpu.mxcsr = g | nf;
}

/* ---- handler shapes ---- */

/* op(cpu, a, b, imm): a = dest and first source (a copy), b = source. */
#define OP(name)                                                                                   \
    static inline void op_##name(struct hvp_cpu *cpu, xmm_t *a, const xmm_t *b, unsigned imm)
#define UNUSED_OP                                                                                  \
    (void)cpu;                                                                                     \
    (void)imm

/* xmm op= xmm/mem */
#define H_X(name)                                                                                  \
    HVP_HANDLER(h_##name)                                                                          \
    {                                                                                              \
        xmm_t a, b;                                                                                \
        src1(cpu, d, &b);                                                                          \
        a = xget(cpu, d->r0);                                                                      \
        op_##name(cpu, &a, &b, (unsigned)d->imm);                                                  \
        xset(cpu, d->r0, &a);                                                                      \
        return NEXT(cpu, d);                                                                       \
    }

/* ---- floating point ---- */

/* Unmasked overflow/underflow (OE or UE unmasked in the guest MXCSR): the
 * host then rounds with an unbounded exponent, so PE tells whether that
 * rounding was inexact and an exact tiny result still raises UE. For the
 * basic operations post_exact() recomputes the flags lane by lane. */
enum { PX_ADD, PX_SUB, PX_MUL, PX_DIV, PX_SQRT, PX_CVT, PX_HADD, PX_HSUB, PX_ADDSUB };
static uint32_t post_exact(struct hvp_cpu *cpu, unsigned kind, bool dbl, unsigned lanes,
                           const xmm_t *a, const xmm_t *b, uint32_t m);

#define FPX(name, insn, kind, dbl, lanes)                                                          \
    HOST2(host_##name, insn)                                                                       \
    OP(name)                                                                                       \
    {                                                                                              \
        (void)imm;                                                                                 \
        xmm_t a0 = *a;                                                                             \
        uint32_t m = mx_begin(cpu);                                                                \
        host_##name(a, b, &m);                                                                     \
        if (unlikely((cpu->st.fpu.mxcsr & 0xc00u) != 0xc00u))                                      \
            m = post_exact(cpu, kind, dbl, lanes, &a0, b, m);                                      \
        mx_end(cpu, m);                                                                            \
    }                                                                                              \
    H_X(name)

#define FP(name, insn)                                                                             \
    HOST2(host_##name, insn)                                                                       \
    OP(name)                                                                                       \
    {                                                                                              \
        (void)imm;                                                                                 \
        uint32_t m = mx_begin(cpu);                                                                \
        host_##name(a, b, &m);                                                                     \
        mx_end(cpu, m);                                                                            \
    }                                                                                              \
    H_X(name)

FPX(addps, "addps", PX_ADD, false, 4)
FPX(addpd, "addpd", PX_ADD, true, 2)
FPX(addss, "addss", PX_ADD, false, 1)
FPX(addsd, "addsd", PX_ADD, true, 1)
FPX(subps, "subps", PX_SUB, false, 4)
FPX(subpd, "subpd", PX_SUB, true, 2)
FPX(subss, "subss", PX_SUB, false, 1)
FPX(subsd, "subsd", PX_SUB, true, 1)
FPX(mulps, "mulps", PX_MUL, false, 4)
FPX(mulpd, "mulpd", PX_MUL, true, 2)
FPX(mulss, "mulss", PX_MUL, false, 1)
FPX(mulsd, "mulsd", PX_MUL, true, 1)
FPX(divps, "divps", PX_DIV, false, 4)
FPX(divpd, "divpd", PX_DIV, true, 2)
FPX(divss, "divss", PX_DIV, false, 1)
FPX(divsd, "divsd", PX_DIV, true, 1)
FP(minps, "minps")
FP(minpd, "minpd")
FP(minss, "minss")
FP(minsd, "minsd")
FP(maxps, "maxps")
FP(maxpd, "maxpd")
FP(maxss, "maxss")
FP(maxsd, "maxsd")
FPX(sqrtps, "sqrtps", PX_SQRT, false, 4)
FPX(sqrtpd, "sqrtpd", PX_SQRT, true, 2)
FPX(sqrtss, "sqrtss", PX_SQRT, false, 1)
FPX(sqrtsd, "sqrtsd", PX_SQRT, true, 1)
FP(rcpps, "rcpps")
FP(rcpss, "rcpss")
FP(rsqrtps, "rsqrtps")
FP(rsqrtss, "rsqrtss")
FPX(haddps, "haddps", PX_HADD, false, 4)
FPX(haddpd, "haddpd", PX_HADD, true, 2)
FPX(hsubps, "hsubps", PX_HSUB, false, 4)
FPX(hsubpd, "hsubpd", PX_HSUB, true, 2)
FPX(addsubps, "addsubps", PX_ADDSUB, false, 4)
FPX(addsubpd, "addsubpd", PX_ADDSUB, true, 2)
FP(cvtps2pd, "cvtps2pd")
FPX(cvtpd2ps, "cvtpd2ps", PX_CVT, false, 2)
FP(cvtss2sd, "cvtss2sd")
FPX(cvtsd2ss, "cvtsd2ss", PX_CVT, false, 1)
FP(cvtdq2ps, "cvtdq2ps")
FP(cvtps2dq, "cvtps2dq")
FP(cvttps2dq, "cvttps2dq")
FP(cvtdq2pd, "cvtdq2pd")
FP(cvtpd2dq, "cvtpd2dq")
FP(cvttpd2dq, "cvttpd2dq")

/* The scalar operations post_exact() runs per lane (masked semantics). */
HOST2(px_addss, "addss")
HOST2(px_addsd, "addsd")
HOST2(px_subss, "subss")
HOST2(px_subsd, "subsd")
HOST2(px_mulss, "mulss")
HOST2(px_mulsd, "mulsd")
HOST2(px_divss, "divss")
HOST2(px_divsd, "divsd")
HOST2(px_sqrtss, "sqrtss")
HOST2(px_sqrtsd, "sqrtsd")
HOST2(px_cvtsd2ss, "cvtsd2ss")

/* x87 sequences: result of a op b (or op b) in ST0, rounded to the
 * precision control with the x87's 15-bit exponent. */
#define X87_SEQ(text)                                                                              \
    __asm__ volatile("fnstenv %[env]\n\tfldcw %[cw]\n\tfnclex\n\t" text                            \
                     "\n\tfstpt %[out]\n\tfnstsw %[sw]\n\tfldenv %[env]"                           \
                     : [env] "=m"(env), [out] "=m"(out), [sw] "=m"(sw)                             \
                     : [cw] "m"(cw), [a] "m"(va), [b] "m"(vb))

/* Returns the x87 status word; out = the unbounded-exponent result. */
static uint16_t x87_unbounded(unsigned kind, bool dbl, unsigned rc, const uint64_t *pa,
                              const uint64_t *pb, uint8_t res[10])
{
    uint8_t env[28], out[10];
    uint64_t va = *pa, vb = *pb;
    uint16_t sw = 0, cw = (uint16_t)(0x7fu | ((dbl ? 2u : 0u) << 8) | (rc << 10));
    switch (kind * 2 + dbl) {
    case PX_ADD * 2: X87_SEQ("flds %[a]\n\tfadds %[b]"); break;
    case PX_ADD * 2 + 1: X87_SEQ("fldl %[a]\n\tfaddl %[b]"); break;
    case PX_SUB * 2: X87_SEQ("flds %[a]\n\tfsubs %[b]"); break;
    case PX_SUB * 2 + 1: X87_SEQ("fldl %[a]\n\tfsubl %[b]"); break;
    case PX_MUL * 2: X87_SEQ("flds %[a]\n\tfmuls %[b]"); break;
    case PX_MUL * 2 + 1: X87_SEQ("fldl %[a]\n\tfmull %[b]"); break;
    case PX_DIV * 2: X87_SEQ("flds %[a]\n\tfdivs %[b]"); break;
    case PX_DIV * 2 + 1: X87_SEQ("fldl %[a]\n\tfdivl %[b]"); break;
    case PX_SQRT * 2: X87_SEQ("flds %[b]\n\tfsqrt"); break;
    case PX_SQRT * 2 + 1: X87_SEQ("fldl %[b]\n\tfsqrt"); break;
    default: X87_SEQ("fldl %[b]\n\tfld1\n\tfmulp"); break; /* CVT: double -> float precision */
    }
    memcpy(res, out, 10);
    return sw;
}

static uint64_t daz_lane(uint64_t v, bool wide)
{
    if (wide) return ((v >> 52) & 0x7ff) == 0 ? v & (1ull << 63) : v;
    return ((v >> 23) & 0xff) == 0 ? v & 0x80000000u : v;
}

static uint32_t post_exact(struct hvp_cpu *cpu, unsigned kind, bool dbl, unsigned lanes,
                           const xmm_t *a, const xmm_t *b, uint32_t m)
{
    uint32_t g = cpu->st.fpu.mxcsr, rc = (g >> 13) & 3, total = 0;
    bool wide = dbl || kind == PX_CVT; /* input lanes are doubles */
    unsigned w = wide ? 8 : 4;
    for (unsigned i = 0; i < lanes; i++) {
        /* the lane's operands and operation */
        const xmm_t *pa = a, *pb = b;
        unsigned ia = i, ib = i, k = kind;
        if (kind == PX_HADD || kind == PX_HSUB) {
            unsigned half = lanes / 2, j = i % half;
            pa = pb = i < half ? a : b;
            ia = 2 * j;
            ib = 2 * j + 1;
            k = kind == PX_HADD ? PX_ADD : PX_SUB;
        } else if (kind == PX_ADDSUB) {
            k = (i & 1) ? PX_ADD : PX_SUB;
        }
        xmm_t x = {0}, y = {0};
        memcpy(&x, pa->b + ia * w, w);
        memcpy(&y, pb->b + ib * w, w);
        uint32_t ml = mx_begin(cpu);
        switch (k * 2 + dbl) {
        case PX_ADD * 2: px_addss(&x, &y, &ml); break;
        case PX_ADD * 2 + 1: px_addsd(&x, &y, &ml); break;
        case PX_SUB * 2: px_subss(&x, &y, &ml); break;
        case PX_SUB * 2 + 1: px_subsd(&x, &y, &ml); break;
        case PX_MUL * 2: px_mulss(&x, &y, &ml); break;
        case PX_MUL * 2 + 1: px_mulsd(&x, &y, &ml); break;
        case PX_DIV * 2: px_divss(&x, &y, &ml); break;
        case PX_DIV * 2 + 1: px_divsd(&x, &y, &ml); break;
        case PX_SQRT * 2: px_sqrtss(&x, &y, &ml); break;
        case PX_SQRT * 2 + 1: px_sqrtsd(&x, &y, &ml); break;
        default: px_cvtsd2ss(&x, &y, &ml); break;
        }
        uint32_t fl = ml & 0x3f;
        if (!(fl & (MX_IE | MX_ZE))) {
            uint64_t va = 0, vb = 0;
            memcpy(&va, pa->b + ia * w, w);
            memcpy(&vb, pb->b + ib * w, w);
            if (g & 0x40) { /* DAZ */
                va = daz_lane(va, wide);
                vb = daz_lane(vb, wide);
            }
            uint8_t r[10];
            uint16_t sw = x87_unbounded(k, dbl, rc, &va, &vb, r);
            unsigned ex = ((unsigned)(r[9] & 0x7f) << 8) | r[8];
            uint64_t mant;
            memcpy(&mant, r, 8);
            if (ex != 0x7fff && (ex || mant)) {
                int e = (int)ex - 16383, emax = dbl ? 1023 : 127, emin = dbl ? -1022 : -126;
                uint32_t pe = (sw & 0x20) ? MX_PE : 0;
                if (e > emax && !(g & 0x400))
                    fl = (fl & MX_DE) | MX_OE | pe;
                else if (e < emin && !(g & 0x800))
                    fl = (fl & MX_DE) | MX_UE | pe;
            }
        }
        total |= fl;
    }
    return (m & ~0x3fu) | total;
}

/* With an 8-bit immediate: the value the instruction looks at (imm & maskv)
 * picks one of 16 asm instances. */
#define FPI8(name, insn, maskv)                                                                    \
    OP(name)                                                                                       \
    {                                                                                              \
        __m128i va = a->v, vb = b->v;                                                              \
        uint32_t save, m = mx_begin(cpu);                                                          \
        switch (imm & (maskv)) {                                                                   \
        case 0: ASMI(insn, 0); break;                                                              \
        case 1: ASMI(insn, 1); break;                                                              \
        case 2: ASMI(insn, 2); break;                                                              \
        case 3: ASMI(insn, 3); break;                                                              \
        case 4: ASMI(insn, 4); break;                                                              \
        case 5: ASMI(insn, 5); break;                                                              \
        case 6: ASMI(insn, 6); break;                                                              \
        case 7: ASMI(insn, 7); break;                                                              \
        case 8: ASMI(insn, 8); break;                                                              \
        case 9: ASMI(insn, 9); break;                                                              \
        case 10: ASMI(insn, 10); break;                                                            \
        case 11: ASMI(insn, 11); break;                                                            \
        case 12: ASMI(insn, 12); break;                                                            \
        case 13: ASMI(insn, 13); break;                                                            \
        case 14: ASMI(insn, 14); break;                                                            \
        default: ASMI(insn, 15); break;                                                            \
        }                                                                                          \
        mx_end(cpu, m);                                                                            \
        a->v = va;                                                                                 \
    }                                                                                              \
    H_X(name)

/* legacy CMPxx looks at imm[2:0] only */
FPI8(cmpps, "cmpps", 7)
FPI8(cmppd, "cmppd", 7)
FPI8(cmpss, "cmpss", 7)
FPI8(cmpsd, "cmpsd", 7)

/* SSE4.1 (the host's: checked in the builder) */
FPI8(roundps, "roundps", 15)
FPI8(roundpd, "roundpd", 15)
FPI8(roundss, "roundss", 15)
FPI8(roundsd, "roundsd", 15)

/* DPPS/DPPD run in steps (SDM DP_primitive): the products (lanes not in
 * imm[7:4] are +0.0), then for DPPS the pair sums p0+p1 and p2+p3, then
 * their sum; for DPPD p0+p1. With everything masked the host's own flags
 * stand. Otherwise each step is evaluated here (post_exact() for the flags,
 * which gets unmasked OE/UE right: the host rounds with an unbounded
 * exponent, an exact tiny result raises UE, PE only when inexact); an
 * unmasked exception stops at the step that raised it, with the flags of
 * the steps so far (only the pre-computation ones of the faulting step
 * when one of those is unmasked). */
static uint32_t dp_step(struct hvp_cpu *cpu, uint32_t acc, uint32_t f, uint32_t um)
{
    uint32_t pre = MX_IE | MX_DE | MX_ZE;
    if (f & um) {
        if (f & um & pre) f &= pre;
        cpu->st.fpu.mxcsr |= acc | f;
        hvp_raise(cpu, 19, -1);
    }
    return acc | f;
}

static void dp_end(struct hvp_cpu *cpu, uint32_t m, const xmm_t *a, const xmm_t *b, unsigned imm,
                   bool dbl)
{
    uint32_t g = cpu->st.fpu.mxcsr, um = ~(g >> 7) & 0x3f, nf = m & 0x3f;
    if (likely(!(nf & um) && (g & 0xc00u) == 0xc00u)) {
        cpu->st.fpu.mxcsr = g | nf;
        return;
    }
    unsigned lanes = dbl ? 2u : 4u;
    xmm_t p = *a, q = *b;
    for (unsigned i = 0; i < lanes; i++)
        if (!(imm & (0x10u << i))) {
            if (dbl)
                p.q[i] = q.q[i] = 0;
            else
                p.d[i] = q.d[i] = 0;
        }
    /* step 1: the products */
    xmm_t pr = p;
    uint32_t m1 = mx_begin(cpu);
    if (dbl)
        host_mulpd(&pr, &q, &m1);
    else
        host_mulps(&pr, &q, &m1);
    uint32_t acc = dp_step(cpu, 0, post_exact(cpu, PX_MUL, dbl, lanes, &p, &q, 0) & 0x3f, um);
    if (dbl) {
        /* step 2: p0 + p1 */
        xmm_t x = {0}, y = {0};
        x.q[0] = pr.q[0];
        y.q[0] = pr.q[1];
        acc = dp_step(cpu, acc, post_exact(cpu, PX_ADD, true, 1, &x, &y, 0) & 0x3f, um);
    } else {
        /* step 2: p0 + p1, p2 + p3 */
        xmm_t x = {0}, y = {0};
        x.d[0] = pr.d[0];
        y.d[0] = pr.d[1];
        x.d[1] = pr.d[2];
        y.d[1] = pr.d[3];
        acc = dp_step(cpu, acc, post_exact(cpu, PX_ADD, false, 2, &x, &y, 0) & 0x3f, um);
        xmm_t s = x;
        uint32_t m2 = mx_begin(cpu);
        host_addps(&s, &y, &m2);
        /* step 3: (p0 + p1) + (p2 + p3) */
        xmm_t u = {0}, v = {0};
        u.d[0] = s.d[0];
        v.d[0] = s.d[1];
        acc = dp_step(cpu, acc, post_exact(cpu, PX_ADD, false, 1, &u, &v, 0) & 0x3f, um);
    }
    cpu->st.fpu.mxcsr = g | acc;
}

/* DPPS/DPPD: the input mask (imm[7:4]) picks one of 16 (4) host asm
 * instances computing every output lane; the output mask is applied here
 * (it does not change the flags). */
OP(dpps)
{
    __m128i va = a->v, vb = b->v;
    uint32_t save, m = mx_begin(cpu);
    switch ((imm >> 4) & 15) {
    case 0: ASMI("dpps", 0x0f); break;
    case 1: ASMI("dpps", 0x1f); break;
    case 2: ASMI("dpps", 0x2f); break;
    case 3: ASMI("dpps", 0x3f); break;
    case 4: ASMI("dpps", 0x4f); break;
    case 5: ASMI("dpps", 0x5f); break;
    case 6: ASMI("dpps", 0x6f); break;
    case 7: ASMI("dpps", 0x7f); break;
    case 8: ASMI("dpps", 0x8f); break;
    case 9: ASMI("dpps", 0x9f); break;
    case 10: ASMI("dpps", 0xaf); break;
    case 11: ASMI("dpps", 0xbf); break;
    case 12: ASMI("dpps", 0xcf); break;
    case 13: ASMI("dpps", 0xdf); break;
    case 14: ASMI("dpps", 0xef); break;
    case 15: ASMI("dpps", 0xff); break;
    default: break;
    }
    dp_end(cpu, m, a, b, imm, false);
    a->v = va;
    for (unsigned i = 0; i < 4; i++)
        if (!(imm & (1u << i))) a->d[i] = 0;
}
H_X(dpps)

OP(dppd)
{
    __m128i va = a->v, vb = b->v;
    uint32_t save, m = mx_begin(cpu);
    switch ((imm >> 4) & 3) {
    case 0: ASMI("dppd", 0x03); break;
    case 1: ASMI("dppd", 0x13); break;
    case 2: ASMI("dppd", 0x23); break;
    case 3: ASMI("dppd", 0x33); break;
    default: break;
    }
    dp_end(cpu, m, a, b, imm, true);
    a->v = va;
    for (unsigned i = 0; i < 2; i++)
        if (!(imm & (1u << i))) a->q[i] = 0;
}
H_X(dppd)

/* (U)COMISS/SD: ZF PF CF from the compare, OF SF AF cleared. */
#define COMI(name, insn)                                                                           \
    HVP_HANDLER(h_##name)                                                                          \
    {                                                                                              \
        xmm_t b;                                                                                   \
        src1(cpu, d, &b);                                                                          \
        xmm_t a = xget(cpu, d->r0);                                                                \
        __m128i va = a.v, vb = b.v;                                                                \
        uint32_t save, m = mx_begin(cpu);                                                          \
        bool zf, pf, cf;                                                                           \
        __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                                \
                         " %[vb], %[va]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                        \
                         : "=@ccz"(zf), "=@ccp"(pf), "=@ccc"(cf), [save] "=m"(save), [m] "+m"(m)   \
                         : [va] "x"(va), [vb] "x"(vb));                                            \
        mx_end(cpu, m);                                                                            \
        hvp_flags_materialize(cpu);                                                                \
        cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | (zf ? HVP_ZF : 0) |                   \
                      (pf ? HVP_PF : 0) | (cf ? HVP_CF : 0);                                       \
        return NEXT(cpu, d);                                                                       \
    }
COMI(ucomiss, "ucomiss")
COMI(ucomisd, "ucomisd")
COMI(comiss, "comiss")
COMI(comisd, "comisd")

/* CVTSI2SS/SD xmm, r/m32/64 */
#define CVT_FROM_INT(name, insn)                                                                   \
    HVP_HANDLER(h_##name)                                                                          \
    {                                                                                              \
        uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), d->osz) : cpu->gpr[d->r1]; \
        xmm_t a = xget(cpu, d->r0);                                                                \
        __m128i va = a.v;                                                                          \
        uint32_t save, m = mx_begin(cpu);                                                          \
        if (d->osz == 8)                                                                           \
            __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                            \
                             "q %[v], %[va]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                    \
                             : [va] "+x"(va), [save] "=m"(save), [m] "+m"(m)                       \
                             : [v] "r"(v));                                                        \
        else                                                                                       \
            __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                            \
                             "l %[v], %[va]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                    \
                             : [va] "+x"(va), [save] "=m"(save), [m] "+m"(m)                       \
                             : [v] "r"((uint32_t)v));                                              \
        mx_end(cpu, m);                                                                            \
        a.v = va;                                                                                  \
        xset(cpu, d->r0, &a);                                                                      \
        return NEXT(cpu, d);                                                                       \
    }
CVT_FROM_INT(cvtsi2ss, "cvtsi2ss")
CVT_FROM_INT(cvtsi2sd, "cvtsi2sd")

/* CVT(T)SS/SD2SI r32/64, xmm/m */
#define CVT_TO_INT(name, insn)                                                                     \
    HVP_HANDLER(h_##name)                                                                          \
    {                                                                                              \
        xmm_t b;                                                                                   \
        src1(cpu, d, &b);                                                                          \
        __m128i vb = b.v;                                                                          \
        uint32_t save, m = mx_begin(cpu);                                                          \
        uint64_t r;                                                                                \
        if (d->fl & SF_W) {                                                                        \
            __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                            \
                             " %[vb], %q[r]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                    \
                             : [r] "=r"(r), [save] "=m"(save), [m] "+m"(m)                         \
                             : [vb] "x"(vb));                                                      \
        } else {                                                                                   \
            uint32_t r32;                                                                          \
            __asm__ volatile("stmxcsr %[save]\n\tldmxcsr %[m]\n\t" insn                            \
                             " %[vb], %k[r]\n\tstmxcsr %[m]\n\tldmxcsr %[save]"                    \
                             : [r] "=r"(r32), [save] "=m"(save), [m] "+m"(m)                       \
                             : [vb] "x"(vb));                                                      \
            r = r32;                                                                               \
        }                                                                                          \
        mx_end(cpu, m);                                                                            \
        cpu->gpr[d->r0] = r;                                                                       \
        return NEXT(cpu, d);                                                                       \
    }
CVT_TO_INT(cvtss2si, "cvtss2si")
CVT_TO_INT(cvtsd2si, "cvtsd2si")
CVT_TO_INT(cvttss2si, "cvttss2si")
CVT_TO_INT(cvttsd2si, "cvttsd2si")

/* MMX conversions: CVTPI2PS xmm, mm/m64; CVTPI2PD xmm, mm/m64;
 * CVT(T)PS2PI mm, xmm/m64; CVT(T)PD2PI mm, xmm/m128. Computed with the
 * packed-integer forms (same rounding and flags per element). */
HVP_HANDLER(h_cvtpi2ps)
{
    if (d->fl & SF_MMX) mmx_check(cpu);
    xmm_t b = {0};
    b.q[0] = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : mm_get(cpu, d->r1);
    xmm_t a = xget(cpu, d->r0), t = a;
    uint32_t m = mx_begin(cpu);
    host_cvtdq2ps(&t, &b, &m);
    if (!(d->fl & HVP_DF_M1)) mmx_enter(cpu); /* even when #XM follows (host) */
    mx_end(cpu, m);
    a.q[0] = t.q[0];
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_cvtpi2pd)
{
    if (d->fl & SF_MMX) mmx_check(cpu);
    xmm_t b = {0};
    b.q[0] = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, sse_ea(cpu, d)) : mm_get(cpu, d->r1);
    xmm_t a = {0};
    uint32_t m = mx_begin(cpu);
    host_cvtdq2pd(&a, &b, &m);
    if (!(d->fl & HVP_DF_M1)) mmx_enter(cpu); /* even when #XM follows (host) */
    mx_end(cpu, m);
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

#define CVT_TO_PI(name, via, lanes)                                                                \
    HVP_HANDLER(h_##name)                                                                          \
    {                                                                                              \
        xmm_t b, a = {0};                                                                          \
        mmx_check(cpu);                                                                            \
        src1(cpu, d, &b);                                                                          \
        if (lanes == 2) b.q[1] = 0; /* only the low two floats convert */                          \
        uint32_t m = mx_begin(cpu);                                                                \
        host_##via(&a, &b, &m);                                                                    \
        mmx_enter(cpu); /* even when #XM follows (host) */                                         \
        mx_end(cpu, m);                                                                            \
        mm_set(cpu, d->r0, a.q[0]);                                                                \
        return NEXT(cpu, d);                                                                       \
    }
CVT_TO_PI(cvtps2pi, cvtps2dq, 2)
CVT_TO_PI(cvttps2pi, cvttps2dq, 2)
CVT_TO_PI(cvtpd2pi, cvtpd2dq, 4)
CVT_TO_PI(cvttpd2pi, cvttpd2dq, 4)

/* ---- LDMXCSR / STMXCSR ---- */

HVP_HANDLER(h_ldmxcsr)
{
    uint32_t v = (uint32_t)hvp_rd32(cpu, hvp_ea(cpu, d));
    if (v & ~0xffffu) hvp_raise_gp0(cpu); /* reserved bits (MXCSR_MASK 0xFFFF) */
    cpu->st.fpu.mxcsr = v;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_stmxcsr)
{
    hvp_wr32(cpu, hvp_ea(cpu, d), cpu->st.fpu.mxcsr);
    return NEXT(cpu, d);
}

/* ---- moves ---- */

HVP_HANDLER(h_mov_rr)
{
    xmm_t x = xget(cpu, d->r1);
    xset(cpu, d->r0, &x);
    return NEXT(cpu, d);
}

/* xmm <- m: d->osz bytes, the rest zeroed (MOVDQA/MOVUPS/MOVSS m32/MOVQ m64/MOVD m32) */
HVP_HANDLER(h_mov_rm)
{
    xmm_t x;
    ld(cpu, sse_ea(cpu, d), d->osz, &x);
    xset(cpu, d->r0, &x);
    return NEXT(cpu, d);
}

/* m <- xmm: the low d->osz bytes */
HVP_HANDLER(h_mov_mr)
{
    xmm_t x = xget(cpu, d->r1);
    st(cpu, sse_ea(cpu, d), d->osz, &x);
    return NEXT(cpu, d);
}

/* m64 <- high half of xmm (MOVHPS/MOVHPD store) */
HVP_HANDLER(h_movh_mr)
{
    xmm_t x = xget(cpu, d->r1);
    hvp_wr64(cpu, hvp_ea(cpu, d), x.q[1]);
    return NEXT(cpu, d);
}

/* xmm.low <- m64 / xmm.high <- m64 (MOVLPS/MOVHPS loads), aux = half */
HVP_HANDLER(h_movlh_rm)
{
    uint64_t v = hvp_rd64(cpu, hvp_ea(cpu, d));
    xmm_t x = xget(cpu, d->r0);
    x.q[d->aux] = v;
    xset(cpu, d->r0, &x);
    return NEXT(cpu, d);
}

/* MOVSS/MOVSD xmm, xmm: low element only; aux = bytes */
HVP_HANDLER(h_movs_rr)
{
    xmm_t a = xget(cpu, d->r0), b = xget(cpu, d->r1);
    memcpy(&a, &b, d->aux);
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

/* MOVQ xmm, xmm (F3 0F 7E / 66 0F D6): low quadword, upper zeroed */
HVP_HANDLER(h_movq_rr)
{
    xmm_t b = xget(cpu, d->r1);
    b.q[1] = 0;
    xset(cpu, d->r0, &b);
    return NEXT(cpu, d);
}

OP(movhlps)
{
    UNUSED_OP;
    a->q[0] = b->q[1];
}
H_X(movhlps)
OP(movlhps)
{
    UNUSED_OP;
    a->q[1] = b->q[0];
}
H_X(movlhps)

/* MOVD/MOVQ xmm, r32/r64 */
HVP_HANDLER(h_movd_xg)
{
    xmm_t x = {0};
    x.q[0] = cpu->gpr[d->r1] & hvp_size_mask(d->osz);
    xset(cpu, d->r0, &x);
    return NEXT(cpu, d);
}

/* MOVD/MOVQ r32/r64, xmm */
HVP_HANDLER(h_movd_gx)
{
    xmm_t x = xget(cpu, d->r1);
    cpu->gpr[d->r0] = x.q[0] & hvp_size_mask(d->osz);
    return NEXT(cpu, d);
}

OP(movsldup)
{
    UNUSED_OP;
    a->d[0] = a->d[1] = b->d[0];
    a->d[2] = a->d[3] = b->d[2];
}
H_X(movsldup)
OP(movshdup)
{
    UNUSED_OP;
    a->d[0] = a->d[1] = b->d[1];
    a->d[2] = a->d[3] = b->d[3];
}
H_X(movshdup)
OP(movddup)
{
    UNUSED_OP;
    a->q[0] = a->q[1] = b->q[0];
}
H_X(movddup)

HVP_HANDLER(h_movmskps)
{
    xmm_t x = xget(cpu, d->r1);
    cpu->gpr[d->r0] = (unsigned)_mm_movemask_ps(_mm_castsi128_ps(x.v));
    return NEXT(cpu, d);
}

HVP_HANDLER(h_movmskpd)
{
    xmm_t x = xget(cpu, d->r1);
    cpu->gpr[d->r0] = (unsigned)_mm_movemask_pd(_mm_castsi128_pd(x.v));
    return NEXT(cpu, d);
}

HVP_HANDLER(h_pmovmskb)
{
    xmm_t x = xget(cpu, d->r1);
    cpu->gpr[d->r0] = (unsigned)_mm_movemask_epi8(x.v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_pmovmskb_mm)
{
    mmx_check(cpu);
    uint64_t v = mm_get(cpu, d->r1);
    unsigned r = 0;
    for (unsigned i = 0; i < 8; i++)
        r |= (unsigned)((v >> (i * 8 + 7)) & 1) << i;
    mmx_enter(cpu);
    cpu->gpr[d->r0] = r;
    return NEXT(cpu, d);
}

/* MASKMOVDQU xmm1, xmm2: bytes of xmm1 where xmm2's byte has bit 7 set go
 * to [rdi] (address-size, DS or override). Every byte is checked first. */
HVP_HANDLER(h_maskmov)
{
    if (d->fl & SF_MMX) mmx_check(cpu);
    unsigned n = (d->fl & SF_MMX) ? 8 : 16;
    xmm_t v = {0}, k = {0};
    if (n == 8) {
        v.q[0] = mm_get(cpu, d->r0);
        k.q[0] = mm_get(cpu, d->r1);
    } else {
        v = xget(cpu, d->r0);
        k = xget(cpu, d->r1);
    }
    uint64_t a = cpu->gpr[7];
    if (d->asz == 4) a = (uint32_t)a;
    if (d->seg & HVP_SEG_LEGACY)
        a = hvp_seg_lin(cpu, d->seg & 7, a, n, true);
    else if (d->seg)
        a += d->seg == HVP_SEG_FS ? cpu->fs_base : cpu->gs_base;
    unsigned mask = 0;
    for (unsigned i = 0; i < n; i++)
        mask |= (unsigned)(k.b[i] >> 7) << i;
    if (mask) {
        /* probe like one n-byte write so that a fault leaves memory untouched */
        xmm_t old;
        hvp_rd_block(cpu, a, &old, n);
        for (unsigned i = 0; i < n; i++)
            if (mask & (1u << i)) old.b[i] = v.b[i];
        hvp_wr_block(cpu, a, &old, n);
    }
    if (n == 8) mmx_enter(cpu);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_movnti)
{
    hvp_wrn(cpu, hvp_ea(cpu, d), d->osz, cpu->gpr[d->r1]);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_nop)
{
    (void)cpu;
    return NEXT(cpu, d);
}

/* ---- integer SIMD (also the MMX forms, on the low 64 bits) ---- */

static inline int8_t ss8(int v)
{
    return (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
}
static inline uint8_t su8(int v)
{
    return (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
}
static inline int16_t ss16(int v)
{
    return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}
static inline uint16_t su16(int v)
{
    return (uint16_t)(v > 65535 ? 65535 : v < 0 ? 0 : v);
}

#define EW(name, T, n, expr)                                                                       \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        for (unsigned i = 0; i < (n); i++) {                                                       \
            __typeof__(a->T[0]) x = a->T[i], y = b->T[i];                                          \
            (void)x;                                                                               \
            (void)y;                                                                               \
            a->T[i] = (__typeof__(a->T[0]))(expr);                                                 \
        }                                                                                          \
    }

EW(paddb, b, 16, x + y)
EW(paddw, w, 8, x + y)
EW(paddd, d, 4, x + y)
EW(paddq, q, 2, x + y)
EW(psubb, b, 16, x - y)
EW(psubw, w, 8, x - y)
EW(psubd, d, 4, x - y)
EW(psubq, q, 2, x - y)
EW(paddsb, sb, 16, ss8(x + y))
EW(paddsw, sw, 8, ss16(x + y))
EW(psubsb, sb, 16, ss8(x - y))
EW(psubsw, sw, 8, ss16(x - y))
EW(paddusb, b, 16, su8(x + y))
EW(paddusw, w, 8, su16(x + y))
EW(psubusb, b, 16, su8(x - y))
EW(psubusw, w, 8, su16(x - y))
EW(pmullw, sw, 8, x *y)
EW(pmulhw, sw, 8, ((int32_t)x * y) >> 16)
EW(pmulhuw, w, 8, ((uint32_t)x * y) >> 16)
EW(pmulld, sd, 4, (int64_t)x *y)
EW(pmulhrsw, sw, 8, ((((int32_t)x * y) >> 14) + 1) >> 1)
EW(pavgb, b, 16, (x + y + 1) >> 1)
EW(pavgw, w, 8, ((uint32_t)x + y + 1) >> 1)
EW(pminub, b, 16, x < y ? x : y)
EW(pmaxub, b, 16, x > y ? x : y)
EW(pminsw, sw, 8, x < y ? x : y)
EW(pmaxsw, sw, 8, x > y ? x : y)
EW(pminsb, sb, 16, x < y ? x : y)
EW(pmaxsb, sb, 16, x > y ? x : y)
EW(pminuw, w, 8, x < y ? x : y)
EW(pmaxuw, w, 8, x > y ? x : y)
EW(pminsd, sd, 4, x < y ? x : y)
EW(pmaxsd, sd, 4, x > y ? x : y)
EW(pminud, d, 4, x < y ? x : y)
EW(pmaxud, d, 4, x > y ? x : y)
EW(pand, q, 2, x &y)
EW(pandn, q, 2, ~x &y)
EW(por, q, 2, x | y)
EW(pxor, q, 2, x ^ y)
EW(pcmpeqb, b, 16, x == y ? 0xff : 0)
EW(pcmpeqw, w, 8, x == y ? 0xffff : 0)
EW(pcmpeqd, d, 4, x == y ? ~0u : 0)
EW(pcmpeqq, q, 2, x == y ? ~0ull : 0)
EW(pcmpgtb, sb, 16, x > y ? -1 : 0)
EW(pcmpgtw, sw, 8, x > y ? -1 : 0)
EW(pcmpgtd, sd, 4, x > y ? -1 : 0)
EW(pcmpgtq, sq, 2, x > y ? -1 : 0)
EW(psignb, sb, 16, y < 0 ? -x : y == 0 ? 0 : x)
EW(psignw, sw, 8, y < 0 ? -x : y == 0 ? 0 : x)
EW(psignd, sd, 4, y < 0 ? -(int64_t)x : y == 0 ? 0 : x)
EW(pabsb, sb, 16, y < 0 ? -y : y)
EW(pabsw, sw, 8, y < 0 ? -y : y)
EW(pabsd, sd, 4, y < 0 ? -(int64_t)y : y)

#define H_EW(name) H_X(name)
H_EW(paddb)
H_EW(paddw)
H_EW(paddd)
H_EW(paddq)
H_EW(psubb)
H_EW(psubw)
H_EW(psubd)
H_EW(psubq)
H_EW(paddsb)
H_EW(paddsw)
H_EW(psubsb)
H_EW(psubsw)
H_EW(paddusb)
H_EW(paddusw)
H_EW(psubusb)
H_EW(psubusw)
H_EW(pmullw)
H_EW(pmulhw)
H_EW(pmulhuw)
H_EW(pmulld)
H_EW(pmulhrsw)
H_EW(pavgb)
H_EW(pavgw)
H_EW(pminub)
H_EW(pmaxub)
H_EW(pminsw)
H_EW(pmaxsw)
H_EW(pminsb)
H_EW(pmaxsb)
H_EW(pminuw)
H_EW(pmaxuw)
H_EW(pminsd)
H_EW(pmaxsd)
H_EW(pminud)
H_EW(pmaxud)
H_EW(pand)
H_EW(pandn)
H_EW(por)
H_EW(pxor)
H_EW(pcmpeqb)
H_EW(pcmpeqw)
H_EW(pcmpeqd)
H_EW(pcmpeqq)
H_EW(pcmpgtb)
H_EW(pcmpgtw)
H_EW(pcmpgtd)
H_EW(pcmpgtq)
H_EW(psignb)
H_EW(psignw)
H_EW(psignd)
H_EW(pabsb)
H_EW(pabsw)
H_EW(pabsd)

OP(pmuludq)
{
    UNUSED_OP;
    a->q[0] = (uint64_t)a->d[0] * b->d[0];
    a->q[1] = (uint64_t)a->d[2] * b->d[2];
}
H_X(pmuludq)
OP(pmuldq)
{
    UNUSED_OP;
    a->sq[0] = (int64_t)a->sd[0] * b->sd[0];
    a->sq[1] = (int64_t)a->sd[2] * b->sd[2];
}
H_X(pmuldq)
OP(pmaddwd)
{
    UNUSED_OP;
    for (unsigned i = 0; i < 4; i++)
        a->d[i] = (uint32_t)((int64_t)a->sw[2 * i] * b->sw[2 * i] +
                             (int64_t)a->sw[2 * i + 1] * b->sw[2 * i + 1]);
}
H_X(pmaddwd)
OP(pmaddubsw)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 8; i++)
        r.sw[i] = ss16(a->b[2 * i] * b->sb[2 * i] + a->b[2 * i + 1] * b->sb[2 * i + 1]);
    *a = r;
}
H_X(pmaddubsw)
OP(psadbw)
{
    UNUSED_OP;
    for (unsigned h = 0; h < 2; h++) {
        unsigned s = 0;
        for (unsigned i = 0; i < 8; i++) {
            int t = a->b[h * 8 + i] - b->b[h * 8 + i];
            s += (unsigned)(t < 0 ? -t : t);
        }
        a->q[h] = s;
    }
}
H_X(psadbw)

/* horizontal add/sub (SSSE3) */
#define HOR(name, T, n, expr)                                                                      \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        xmm_t r;                                                                                   \
        for (unsigned i = 0; i < (n) / 2; i++) {                                                   \
            __typeof__(a->T[0]) x = a->T[2 * i], y = a->T[2 * i + 1];                              \
            r.T[i] = (__typeof__(a->T[0]))(expr);                                                  \
            x = b->T[2 * i];                                                                       \
            y = b->T[2 * i + 1];                                                                   \
            r.T[(n) / 2 + i] = (__typeof__(a->T[0]))(expr);                                        \
        }                                                                                          \
        *a = r;                                                                                    \
    }                                                                                              \
    H_X(name)
HOR(phaddw, w, 8, x + y)
HOR(phaddd, d, 4, x + y)
HOR(phaddsw, sw, 8, ss16(x + y))
HOR(phsubw, w, 8, x - y)
HOR(phsubd, d, 4, x - y)
HOR(phsubsw, sw, 8, ss16(x - y))

/* ---- pack / unpack / shuffle ---- */

OP(packsswb)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 8; i++) {
        r.sb[i] = ss8(a->sw[i]);
        r.sb[8 + i] = ss8(b->sw[i]);
    }
    *a = r;
}
H_X(packsswb)
OP(packuswb)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 8; i++) {
        r.b[i] = su8(a->sw[i]);
        r.b[8 + i] = su8(b->sw[i]);
    }
    *a = r;
}
H_X(packuswb)
OP(packssdw)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 4; i++) {
        int32_t x = a->sd[i], y = b->sd[i];
        r.sw[i] = (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : x);
        r.sw[4 + i] = (int16_t)(y > 32767 ? 32767 : y < -32768 ? -32768 : y);
    }
    *a = r;
}
H_X(packssdw)
OP(packusdw)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 4; i++) {
        int32_t x = a->sd[i], y = b->sd[i];
        r.w[i] = (uint16_t)(x > 65535 ? 65535 : x < 0 ? 0 : x);
        r.w[4 + i] = (uint16_t)(y > 65535 ? 65535 : y < 0 ? 0 : y);
    }
    *a = r;
}
H_X(packusdw)

#define UNPCK(name, T, n, hi)                                                                      \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        xmm_t r;                                                                                   \
        for (unsigned i = 0; i < (n) / 2; i++) {                                                   \
            r.T[2 * i] = a->T[(hi) * (n) / 2 + i];                                                 \
            r.T[2 * i + 1] = b->T[(hi) * (n) / 2 + i];                                             \
        }                                                                                          \
        *a = r;                                                                                    \
    }                                                                                              \
    H_X(name)
UNPCK(punpcklbw, b, 16, 0)
UNPCK(punpcklwd, w, 8, 0)
UNPCK(punpckldq, d, 4, 0)
UNPCK(punpcklqdq, q, 2, 0)
UNPCK(punpckhbw, b, 16, 1)
UNPCK(punpckhwd, w, 8, 1)
UNPCK(punpckhdq, d, 4, 1)
UNPCK(punpckhqdq, q, 2, 1)

OP(shufps)
{
    (void)cpu;
    xmm_t r;
    r.d[0] = a->d[imm & 3];
    r.d[1] = a->d[(imm >> 2) & 3];
    r.d[2] = b->d[(imm >> 4) & 3];
    r.d[3] = b->d[(imm >> 6) & 3];
    *a = r;
}
H_X(shufps)
OP(shufpd)
{
    (void)cpu;
    xmm_t r;
    r.q[0] = a->q[imm & 1];
    r.q[1] = b->q[(imm >> 1) & 1];
    *a = r;
}
H_X(shufpd)
OP(pshufd)
{
    (void)cpu;
    for (unsigned i = 0; i < 4; i++)
        a->d[i] = b->d[(imm >> (2 * i)) & 3];
}
H_X(pshufd)
OP(pshuflw)
{
    (void)cpu;
    *a = *b;
    for (unsigned i = 0; i < 4; i++)
        a->w[i] = b->w[(imm >> (2 * i)) & 3];
}
H_X(pshuflw)
OP(pshufhw)
{
    (void)cpu;
    *a = *b;
    for (unsigned i = 0; i < 4; i++)
        a->w[4 + i] = b->w[4 + ((imm >> (2 * i)) & 3)];
}
H_X(pshufhw)
OP(pshufb)
{
    UNUSED_OP;
    xmm_t r;
    for (unsigned i = 0; i < 16; i++)
        r.b[i] = (b->b[i] & 0x80) ? 0 : a->b[b->b[i] & 15];
    *a = r;
}
H_X(pshufb)
OP(palignr)
{
    (void)cpu;
    uint8_t t[32] = {0};
    uint8_t s[48] = {0};
    memcpy(s, b, 16);
    memcpy(s + 16, a, 16);
    for (unsigned i = 0; i < 16; i++)
        t[i] = imm + i < 32 ? s[imm + i] : 0;
    memcpy(a, t, 16);
}
H_X(palignr)

/* SSE4.1 blends; the variable ones take the mask from XMM0 */
OP(pblendw)
{
    (void)cpu;
    for (unsigned i = 0; i < 8; i++)
        if (imm & (1u << i)) a->w[i] = b->w[i];
}
H_X(pblendw)
OP(blendps)
{
    (void)cpu;
    for (unsigned i = 0; i < 4; i++)
        if (imm & (1u << i)) a->d[i] = b->d[i];
}
H_X(blendps)
OP(blendpd)
{
    (void)cpu;
    for (unsigned i = 0; i < 2; i++)
        if (imm & (1u << i)) a->q[i] = b->q[i];
}
H_X(blendpd)
OP(pblendvb)
{
    (void)imm;
    xmm_t k = xget(cpu, 0);
    for (unsigned i = 0; i < 16; i++)
        if (k.b[i] & 0x80) a->b[i] = b->b[i];
}
H_X(pblendvb)
OP(blendvps)
{
    (void)imm;
    xmm_t k = xget(cpu, 0);
    for (unsigned i = 0; i < 4; i++)
        if (k.d[i] >> 31) a->d[i] = b->d[i];
}
H_X(blendvps)
OP(blendvpd)
{
    (void)imm;
    xmm_t k = xget(cpu, 0);
    for (unsigned i = 0; i < 2; i++)
        if (k.q[i] >> 63) a->q[i] = b->q[i];
}
H_X(blendvpd)

/* PMOVZX/PMOVSX: source is the low bytes of b (memory: exactly osz bytes) */
#define PMOVX(name, TD, TS, n)                                                                     \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        xmm_t r;                                                                                   \
        for (unsigned i = 0; i < (n); i++)                                                         \
            r.TD[i] = b->TS[i];                                                                    \
        *a = r;                                                                                    \
    }                                                                                              \
    H_X(name)
PMOVX(pmovzxbw, w, b, 8)
PMOVX(pmovzxbd, d, b, 4)
PMOVX(pmovzxbq, q, b, 2)
PMOVX(pmovzxwd, d, w, 4)
PMOVX(pmovzxwq, q, w, 2)
PMOVX(pmovzxdq, q, d, 2)
PMOVX(pmovsxbw, sw, sb, 8)
PMOVX(pmovsxbd, sd, sb, 4)
PMOVX(pmovsxbq, sq, sb, 2)
PMOVX(pmovsxwd, sd, sw, 4)
PMOVX(pmovsxwq, sq, sw, 2)
PMOVX(pmovsxdq, sq, sd, 2)

OP(phminposuw)
{
    UNUSED_OP;
    unsigned best = 0;
    for (unsigned i = 1; i < 8; i++)
        if (b->w[i] < b->w[best]) best = i;
    a->q[1] = 0;
    a->q[0] = b->w[best] | ((uint64_t)best << 16);
}
H_X(phminposuw)

OP(mpsadbw)
{
    (void)cpu;
    unsigned ao = ((imm >> 2) & 1) * 4, bo = (imm & 3) * 4;
    xmm_t r;
    for (unsigned i = 0; i < 8; i++) {
        unsigned s = 0;
        for (unsigned j = 0; j < 4; j++) {
            int t = a->b[ao + i + j] - b->b[bo + j];
            s += (unsigned)(t < 0 ? -t : t);
        }
        r.w[i] = (uint16_t)s;
    }
    *a = r;
}
H_X(mpsadbw)

OP(insertps)
{
    (void)cpu;
    /* register source: element imm[7:6]; memory: the loaded dword (b.d[0]) */
    uint32_t v = b->d[(imm >> 6) & 3];
    a->d[(imm >> 4) & 3] = v;
    for (unsigned i = 0; i < 4; i++)
        if (imm & (1u << i)) a->d[i] = 0;
}
HVP_HANDLER(h_insertps)
{
    xmm_t a, b;
    src1(cpu, d, &b);
    unsigned imm = (unsigned)d->imm;
    if (d->fl & HVP_DF_M1) imm &= 0x3f; /* memory: the dword itself */
    a = xget(cpu, d->r0);
    op_insertps(cpu, &a, &b, imm);
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

/* ---- shifts ---- */

#define SHIFT(name, T, bits, kind)                                                                 \
    static inline void sh_##name(xmm_t *a, uint64_t c)                                             \
    {                                                                                              \
        for (unsigned i = 0; i < 128 / (bits); i++) {                                              \
            if (kind == 0)                                                                         \
                a->T[i] = c >= (bits) ? 0 : (__typeof__(a->T[0]))(a->T[i] << c);                   \
            else if (kind == 1)                                                                    \
                a->T[i] = c >= (bits) ? 0 : (__typeof__(a->T[0]))(a->T[i] >> c);                   \
            else                                                                                   \
                a->T[i] = (__typeof__(a->T[0]))(a->T[i] >> (c >= (bits) ? (bits)-1 : c));          \
        }                                                                                          \
    }                                                                                              \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        sh_##name(a, b->q[0]);                                                                     \
    }                                                                                              \
    H_X(name)                                                                                      \
    HVP_HANDLER(h_##name##_i)                                                                      \
    {                                                                                              \
        xmm_t a = xget(cpu, d->r0);                                                                \
        sh_##name(&a, (uint8_t)d->imm);                                                            \
        xset(cpu, d->r0, &a);                                                                      \
        return NEXT(cpu, d);                                                                       \
    }
SHIFT(psllw, w, 16, 0)
SHIFT(pslld, d, 32, 0)
SHIFT(psllq, q, 64, 0)
SHIFT(psrlw, w, 16, 1)
SHIFT(psrld, d, 32, 1)
SHIFT(psrlq, q, 64, 1)
SHIFT(psraw, sw, 16, 2)
SHIFT(psrad, sd, 32, 2)

HVP_HANDLER(h_pslldq)
{
    xmm_t a = xget(cpu, d->r0), r = {0};
    unsigned n = (uint8_t)d->imm;
    for (unsigned i = n; i < 16; i++)
        r.b[i] = a.b[i - n];
    xset(cpu, d->r0, &r);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_psrldq)
{
    xmm_t a = xget(cpu, d->r0), r = {0};
    unsigned n = (uint8_t)d->imm;
    for (unsigned i = 0; i + n < 16; i++)
        r.b[i] = a.b[i + n];
    xset(cpu, d->r0, &r);
    return NEXT(cpu, d);
}

/* ---- insert / extract ---- */

/* PINSRB/W/D/Q xmm, r32/64/m, imm: aux = element bytes */
HVP_HANDLER(h_pinsr)
{
    unsigned n = d->aux;
    uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), n) : cpu->gpr[d->r1];
    xmm_t a = xget(cpu, d->r0);
    unsigned i = (unsigned)d->imm & (16 / n - 1);
    memcpy(&a.b[i * n], &v, n);
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

/* PEXTRB/W/D/Q, EXTRACTPS r/m, xmm, imm: aux = element bytes */
HVP_HANDLER(h_pextr)
{
    unsigned n = d->aux;
    xmm_t b = xget(cpu, d->r1);
    unsigned i = (unsigned)d->imm & (16 / n - 1);
    uint64_t v = 0;
    memcpy(&v, &b.b[i * n], n);
    if (d->fl & HVP_DF_M0)
        hvp_wrn(cpu, hvp_ea(cpu, d), n, v);
    else
        cpu->gpr[d->r0] = v; /* zero-extended to the full register */
    return NEXT(cpu, d);
}

/* ---- PTEST ---- */

HVP_HANDLER(h_ptest)
{
    xmm_t a, b;
    src1(cpu, d, &b);
    a = xget(cpu, d->r0);
    bool zf = !((a.q[0] & b.q[0]) | (a.q[1] & b.q[1]));
    bool cf = !((~a.q[0] & b.q[0]) | (~a.q[1] & b.q[1]));
    hvp_flags_materialize(cpu);
    cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | (zf ? HVP_ZF : 0) | (cf ? HVP_CF : 0);
    return NEXT(cpu, d);
}

/* ---- PCMPxSTRx (SSE4.2) ---- */

static unsigned str_len_implicit(const xmm_t *x, bool words)
{
    unsigned n = words ? 8 : 16;
    for (unsigned i = 0; i < n; i++)
        if ((words ? x->w[i] : x->b[i]) == 0) return i;
    return n;
}

static unsigned str_len_explicit(uint64_t r, bool w64, unsigned n)
{
    int64_t v = w64 ? (int64_t)r : (int64_t)(int32_t)r;
    if (v < 0) v = v == INT64_MIN ? INT64_MAX : -v;
    return v > (int64_t)n ? n : (unsigned)v;
}

static inline int str_el(const xmm_t *x, unsigned i, unsigned fmt)
{
    switch (fmt) {
    case 0: return x->b[i];
    case 1: return x->w[i];
    case 2: return x->sb[i];
    default: return x->sw[i];
    }
}

/* IntRes2 of the SDM, and the flags */
static unsigned pcmpstr(const xmm_t *a, const xmm_t *b, unsigned la, unsigned lb, unsigned imm,
                        uint64_t *flags)
{
    unsigned fmt = imm & 3, n = (fmt & 1) ? 8 : 16, agg = (imm >> 2) & 3;
    unsigned res = 0;
    for (unsigned j = 0; j < n; j++) {
        bool r = false;
        switch (agg) {
        case 0: /* equal any */
            if (j < lb)
                for (unsigned i = 0; i < la && !r; i++)
                    r = str_el(a, i, fmt) == str_el(b, j, fmt);
            break;
        case 1: /* ranges */
            if (j < lb)
                for (unsigned i = 0; i + 1 < la && !r; i += 2) /* both bounds valid */
                    r = str_el(b, j, fmt) >= str_el(a, i, fmt) &&
                        str_el(b, j, fmt) <= str_el(a, i + 1, fmt);
            break;
        case 2: /* equal each */
            if (j >= la && j >= lb)
                r = true;
            else if (j >= la || j >= lb)
                r = false;
            else
                r = str_el(a, j, fmt) == str_el(b, j, fmt);
            break;
        default: /* equal ordered */
            r = true;
            for (unsigned k = 0; k < n - j && r; k++) {
                if (k >= la) break; /* needle ended: true */
                if (j + k >= lb) {
                    r = false;
                    break;
                }
                r = str_el(a, k, fmt) == str_el(b, j + k, fmt);
            }
            break;
        }
        res |= (unsigned)r << j;
    }
    unsigned all = (1u << n) - 1;
    switch ((imm >> 4) & 3) {
    case 1: res ^= all; break;
    case 3: res ^= (1u << lb) - 1; break;
    default: break;
    }
    res &= all;
    *flags = (res ? HVP_CF : 0) | (lb < n ? HVP_ZF : 0) | (la < n ? HVP_SF : 0) |
             ((res & 1) ? HVP_OF : 0);
    return res;
}

/* aux: bit 0 = explicit lengths, bit 1 = mask (else index) */
HVP_HANDLER(h_pcmpstr)
{
    xmm_t a, b;
    src1(cpu, d, &b);
    a = xget(cpu, d->r0);
    unsigned imm = (uint8_t)d->imm, n = (imm & 1) ? 8 : 16, la, lb;
    if (d->aux & 1) {
        bool w = d->fl & SF_W;
        la = str_len_explicit(cpu->gpr[0], w, n);
        lb = str_len_explicit(cpu->gpr[2], w, n);
    } else {
        la = str_len_implicit(&a, imm & 1);
        lb = str_len_implicit(&b, imm & 1);
    }
    uint64_t fl;
    unsigned res = pcmpstr(&a, &b, la, lb, imm, &fl);
    if (d->aux & 2) {
        xmm_t m = {0};
        if (imm & 0x40) {
            for (unsigned i = 0; i < n; i++)
                if (res & (1u << i)) {
                    if (n == 16)
                        m.b[i] = 0xff;
                    else
                        m.w[i] = 0xffff;
                }
        } else {
            m.d[0] = res;
        }
        xset(cpu, 0, &m);
    } else {
        unsigned idx = n;
        if (res)
            idx = (imm & 0x40) ? 31u - (unsigned)__builtin_clz(res) : (unsigned)__builtin_ctz(res);
        cpu->gpr[1] = idx;
    }
    hvp_flags_materialize(cpu);
    cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | fl;
    return NEXT(cpu, d);
}

/* ---- CRC32 (SSE4.2, Castagnoli, reflected) ---- */

HVP_HANDLER(h_crc32)
{
    unsigned n = d->aux;
    uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), n) : hvp_reg_rd(cpu, d->r1, n);
    uint32_t c = (uint32_t)cpu->gpr[d->r0];
    for (unsigned i = 0; i < n * 8; i++) {
        c ^= (uint32_t)(v >> i) & 1;
        c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
    }
    cpu->gpr[d->r0] = c;
    return NEXT(cpu, d);
}

/* ---- AES-NI and PCLMULQDQ (AES: the host's instructions) ---- */

#define AES(name, insn)                                                                            \
    OP(name)                                                                                       \
    {                                                                                              \
        UNUSED_OP;                                                                                 \
        __m128i va = a->v;                                                                         \
        __asm__(insn " %[vb], %[va]" : [va] "+x"(va) : [vb] "x"(b->v));                            \
        a->v = va;                                                                                 \
    }                                                                                              \
    H_X(name)
AES(aesenc, "aesenc")
AES(aesenclast, "aesenclast")
AES(aesdec, "aesdec")
AES(aesdeclast, "aesdeclast")
AES(aesimc, "aesimc")

OP(aeskeygenassist)
{
    (void)cpu;
    /* the round constant is only XORed into dwords 1 and 3 */
    __m128i va;
    __asm__("aeskeygenassist $0, %[vb], %[va]" : [va] "=x"(va) : [vb] "x"(b->v));
    a->v = va;
    a->d[1] ^= imm & 0xff;
    a->d[3] ^= imm & 0xff;
}
H_X(aeskeygenassist)

static inline void clmul64(uint64_t x, uint64_t y, uint64_t r[2])
{
    uint64_t lo = 0, hi = 0;
    for (unsigned i = 0; i < 64; i++)
        if (y & ((uint64_t)1 << i)) {
            lo ^= x << i;
            if (i) hi ^= x >> (64 - i);
        }
    r[0] = lo;
    r[1] = hi;
}
OP(pclmulqdq)
{
    (void)cpu;
    uint64_t r[2];
    clmul64(a->q[imm & 1], b->q[(imm >> 4) & 1], r);
    a->q[0] = r[0];
    a->q[1] = r[1];
}
H_X(pclmulqdq)

/* ---- SHA (plain C, SDM definitions; dword 3 is the most significant) ---- */

static inline uint32_t rol32(uint32_t x, unsigned n)
{
    return (x << n) | (x >> (32 - n));
}

static inline uint32_t ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

OP(sha1rnds4)
{
    (void)cpu;
    static const uint32_t k[4] = {0x5a827999u, 0x6ed9eba1u, 0x8f1bbcdcu, 0xca62c1d6u};
    uint32_t A = a->d[3], B = a->d[2], C = a->d[1], D = a->d[0], E = 0;
    unsigned fn = imm & 3;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t f = fn == 0   ? (B & C) ^ (~B & D)
                     : fn == 2 ? (B & C) ^ (B & D) ^ (C & D)
                               : B ^ C ^ D;
        uint32_t t = f + rol32(A, 5) + b->d[3 - i] + E + k[fn];
        E = D;
        D = C;
        C = rol32(B, 30);
        B = A;
        A = t;
    }
    a->d[3] = A;
    a->d[2] = B;
    a->d[1] = C;
    a->d[0] = D;
}
H_X(sha1rnds4)

OP(sha1nexte)
{
    UNUSED_OP;
    uint32_t t = rol32(a->d[3], 30);
    *a = *b;
    a->d[3] += t;
}
H_X(sha1nexte)

OP(sha1msg1)
{
    UNUSED_OP;
    uint32_t w0 = a->d[3], w1 = a->d[2], w2 = a->d[1], w3 = a->d[0], w4 = b->d[3], w5 = b->d[2];
    a->d[3] = w2 ^ w0;
    a->d[2] = w3 ^ w1;
    a->d[1] = w4 ^ w2;
    a->d[0] = w5 ^ w3;
}
H_X(sha1msg1)

OP(sha1msg2)
{
    UNUSED_OP;
    uint32_t w16 = rol32(a->d[3] ^ b->d[2], 1);
    uint32_t w17 = rol32(a->d[2] ^ b->d[1], 1);
    uint32_t w18 = rol32(a->d[1] ^ b->d[0], 1);
    uint32_t w19 = rol32(a->d[0] ^ w16, 1);
    a->d[3] = w16;
    a->d[2] = w17;
    a->d[1] = w18;
    a->d[0] = w19;
}
H_X(sha1msg2)

/* SHA256RNDS2 xmm1, xmm2/m128, <XMM0>: two rounds, WK from XMM0[63:0] */
HVP_HANDLER(h_sha256rnds2)
{
    xmm_t b, a, wk;
    src1(cpu, d, &b);
    a = xget(cpu, d->r0);
    wk = xget(cpu, 0);
    uint32_t A = b.d[3], B = b.d[2], C = a.d[3], D = a.d[2];
    uint32_t E = b.d[1], F = b.d[0], G = a.d[1], H = a.d[0];
    for (unsigned i = 0; i < 2; i++) {
        uint32_t ch = (E & F) ^ (~E & G), maj = (A & B) ^ (A & C) ^ (B & C);
        uint32_t s0 = ror32(A, 2) ^ ror32(A, 13) ^ ror32(A, 22);
        uint32_t s1 = ror32(E, 6) ^ ror32(E, 11) ^ ror32(E, 25);
        uint32_t t = ch + s1 + wk.d[i] + H;
        H = G;
        G = F;
        F = E;
        E = t + D;
        D = C;
        C = B;
        B = A;
        A = t + maj + s0;
    }
    a.d[3] = A;
    a.d[2] = B;
    a.d[1] = E;
    a.d[0] = F;
    xset(cpu, d->r0, &a);
    return NEXT(cpu, d);
}

static inline uint32_t sha256_s0(uint32_t w)
{
    return ror32(w, 7) ^ ror32(w, 18) ^ (w >> 3);
}

static inline uint32_t sha256_s1(uint32_t w)
{
    return ror32(w, 17) ^ ror32(w, 19) ^ (w >> 10);
}

OP(sha256msg1)
{
    UNUSED_OP;
    uint32_t w4 = b->d[0], w3 = a->d[3], w2 = a->d[2], w1 = a->d[1], w0 = a->d[0];
    a->d[3] = w3 + sha256_s0(w4);
    a->d[2] = w2 + sha256_s0(w3);
    a->d[1] = w1 + sha256_s0(w2);
    a->d[0] = w0 + sha256_s0(w1);
}
H_X(sha256msg1)

OP(sha256msg2)
{
    UNUSED_OP;
    uint32_t w14 = b->d[2], w15 = b->d[3];
    uint32_t w16 = a->d[0] + sha256_s1(w14);
    uint32_t w17 = a->d[1] + sha256_s1(w15);
    uint32_t w18 = a->d[2] + sha256_s1(w16);
    uint32_t w19 = a->d[3] + sha256_s1(w17);
    a->d[3] = w19;
    a->d[2] = w18;
    a->d[1] = w17;
    a->d[0] = w16;
}
H_X(sha256msg2)

/* ---- MMX ---- */

/* MMX form of an xmm op: aux selects how the 64-bit operands are placed
 * (EW: zero-extended, low 64 bits of the result; PAIR: a | b << 64 as the
 * first operand, for packs and horizontal ops; HI: the high dwords, for
 * the high unpacks). The op function comes from the table below. */
enum { MM_EW, MM_PAIR, MM_HI };

#define MMX_OPS(X)                                                                                 \
    X(PADDB, paddb, MM_EW)                                                                         \
    X(PADDW, paddw, MM_EW)                                                                         \
    X(PADDD, paddd, MM_EW)                                                                         \
    X(PADDQ, paddq, MM_EW)                                                                         \
    X(PSUBB, psubb, MM_EW)                                                                         \
    X(PSUBW, psubw, MM_EW)                                                                         \
    X(PSUBD, psubd, MM_EW)                                                                         \
    X(PSUBQ, psubq, MM_EW)                                                                         \
    X(PADDSB, paddsb, MM_EW)                                                                       \
    X(PADDSW, paddsw, MM_EW)                                                                       \
    X(PSUBSB, psubsb, MM_EW)                                                                       \
    X(PSUBSW, psubsw, MM_EW)                                                                       \
    X(PADDUSB, paddusb, MM_EW)                                                                     \
    X(PADDUSW, paddusw, MM_EW)                                                                     \
    X(PSUBUSB, psubusb, MM_EW)                                                                     \
    X(PSUBUSW, psubusw, MM_EW)                                                                     \
    X(PMULLW, pmullw, MM_EW)                                                                       \
    X(PMULHW, pmulhw, MM_EW)                                                                       \
    X(PMULHUW, pmulhuw, MM_EW)                                                                     \
    X(PMULHRSW, pmulhrsw, MM_EW)                                                                   \
    X(PMULUDQ, pmuludq, MM_EW)                                                                     \
    X(PMADDWD, pmaddwd, MM_EW)                                                                     \
    X(PMADDUBSW, pmaddubsw, MM_EW)                                                                 \
    X(PSADBW, psadbw, MM_EW)                                                                       \
    X(PAVGB, pavgb, MM_EW)                                                                         \
    X(PAVGW, pavgw, MM_EW)                                                                         \
    X(PMINUB, pminub, MM_EW)                                                                       \
    X(PMAXUB, pmaxub, MM_EW)                                                                       \
    X(PMINSW, pminsw, MM_EW)                                                                       \
    X(PMAXSW, pmaxsw, MM_EW)                                                                       \
    X(PAND, pand, MM_EW)                                                                           \
    X(PANDN, pandn, MM_EW)                                                                         \
    X(POR, por, MM_EW)                                                                             \
    X(PXOR, pxor, MM_EW)                                                                           \
    X(PCMPEQB, pcmpeqb, MM_EW)                                                                     \
    X(PCMPEQW, pcmpeqw, MM_EW)                                                                     \
    X(PCMPEQD, pcmpeqd, MM_EW)                                                                     \
    X(PCMPGTB, pcmpgtb, MM_EW)                                                                     \
    X(PCMPGTW, pcmpgtw, MM_EW)                                                                     \
    X(PCMPGTD, pcmpgtd, MM_EW)                                                                     \
    X(PSIGNB, psignb, MM_EW)                                                                       \
    X(PSIGNW, psignw, MM_EW)                                                                       \
    X(PSIGND, psignd, MM_EW)                                                                       \
    X(PABSB, pabsb, MM_EW)                                                                         \
    X(PABSW, pabsw, MM_EW)                                                                         \
    X(PABSD, pabsd, MM_EW)                                                                         \
    X(PSLLW, psllw, MM_EW)                                                                         \
    X(PSLLD, pslld, MM_EW)                                                                         \
    X(PSLLQ, psllq, MM_EW)                                                                         \
    X(PSRLW, psrlw, MM_EW)                                                                         \
    X(PSRLD, psrld, MM_EW)                                                                         \
    X(PSRLQ, psrlq, MM_EW)                                                                         \
    X(PSRAW, psraw, MM_EW)                                                                         \
    X(PSRAD, psrad, MM_EW)                                                                         \
    X(PUNPCKLBW, punpcklbw, MM_EW)                                                                 \
    X(PUNPCKLWD, punpcklwd, MM_EW)                                                                 \
    X(PUNPCKLDQ, punpckldq, MM_EW)                                                                 \
    X(PUNPCKHBW, punpcklbw, MM_HI)                                                                 \
    X(PUNPCKHWD, punpcklwd, MM_HI)                                                                 \
    X(PUNPCKHDQ, punpckldq, MM_HI)                                                                 \
    X(PACKSSWB, packsswb, MM_PAIR)                                                                 \
    X(PACKUSWB, packuswb, MM_PAIR)                                                                 \
    X(PACKSSDW, packssdw, MM_PAIR)                                                                 \
    X(PHADDW, phaddw, MM_PAIR)                                                                     \
    X(PHADDD, phaddd, MM_PAIR)                                                                     \
    X(PHADDSW, phaddsw, MM_PAIR)                                                                   \
    X(PHSUBW, phsubw, MM_PAIR)                                                                     \
    X(PHSUBD, phsubd, MM_PAIR)                                                                     \
    X(PHSUBSW, phsubsw, MM_PAIR)

#define MMX_FN(OPN, name, kind)                                                                    \
    HVP_HANDLER(h_mm_##name##_##kind)                                                              \
    {                                                                                              \
        mmx_check(cpu);                                                                            \
        uint64_t y =                                                                               \
            (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), d->osz) : mm_get(cpu, d->r1);       \
        uint64_t x = mm_get(cpu, d->r0);                                                           \
        xmm_t a = {0}, b = {0};                                                                    \
        if (kind == MM_EW) {                                                                       \
            a.q[0] = x;                                                                            \
            b.q[0] = y;                                                                            \
        } else if (kind == MM_PAIR) {                                                              \
            a.q[0] = x;                                                                            \
            a.q[1] = y;                                                                            \
        } else {                                                                                   \
            a.q[0] = x >> 32;                                                                      \
            b.q[0] = y >> 32;                                                                      \
        }                                                                                          \
        op_##name(cpu, &a, &b, (unsigned)d->imm);                                                  \
        mmx_enter(cpu);                                                                            \
        mm_set(cpu, d->r0, a.q[0]);                                                                \
        return NEXT(cpu, d);                                                                       \
    }
MMX_OPS(MMX_FN)

/* the same shifts by an immediate */
#define MMX_SHI(name)                                                                              \
    HVP_HANDLER(h_mm_##name##_i)                                                                   \
    {                                                                                              \
        mmx_check(cpu);                                                                            \
        xmm_t a = {0};                                                                             \
        a.q[0] = mm_get(cpu, d->r0);                                                               \
        sh_##name(&a, (uint8_t)d->imm);                                                            \
        mmx_enter(cpu);                                                                            \
        mm_set(cpu, d->r0, a.q[0]);                                                                \
        return NEXT(cpu, d);                                                                       \
    }
MMX_SHI(psllw)
MMX_SHI(pslld)
MMX_SHI(psllq)
MMX_SHI(psrlw)
MMX_SHI(psrld)
MMX_SHI(psrlq)
MMX_SHI(psraw)
MMX_SHI(psrad)

static hvp_handler mmx_handler(unsigned op)
{
    switch (op) {
#define MMX_CASE(OPN, name, kind)                                                                  \
    case HVP_X86_OP_##OPN: return h_mm_##name##_##kind;
        MMX_OPS(MMX_CASE)
#undef MMX_CASE
    default: return NULL;
    }
}

HVP_HANDLER(h_mm_pshufb)
{
    mmx_check(cpu);
    uint64_t y = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : mm_get(cpu, d->r1);
    uint64_t x = mm_get(cpu, d->r0), r = 0;
    for (unsigned i = 0; i < 8; i++) {
        unsigned k = (unsigned)(y >> (8 * i)) & 0xff;
        if (!(k & 0x80)) r |= ((x >> (8 * (k & 7))) & 0xff) << (8 * i);
    }
    mmx_enter(cpu);
    mm_set(cpu, d->r0, r);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mm_palignr)
{
    mmx_check(cpu);
    uint64_t y = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : mm_get(cpu, d->r1);
    uint64_t x = mm_get(cpu, d->r0);
    unsigned n = (uint8_t)d->imm;
    uint8_t s[16];
    memcpy(s, &y, 8);
    memcpy(s + 8, &x, 8);
    uint8_t r[8];
    for (unsigned i = 0; i < 8; i++)
        r[i] = n + i < 16 ? s[n + i] : 0;
    uint64_t v;
    memcpy(&v, r, 8);
    mmx_enter(cpu);
    mm_set(cpu, d->r0, v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mm_pshufw)
{
    mmx_check(cpu);
    uint64_t y = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : mm_get(cpu, d->r1);
    unsigned imm = (uint8_t)d->imm;
    uint64_t r = 0;
    for (unsigned i = 0; i < 4; i++)
        r |= ((y >> (16 * ((imm >> (2 * i)) & 3))) & 0xffff) << (16 * i);
    mmx_enter(cpu);
    mm_set(cpu, d->r0, r);
    return NEXT(cpu, d);
}

/* MOVD/MOVQ mm, r/m32/64 */
HVP_HANDLER(h_mm_movd_in)
{
    mmx_check(cpu);
    uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), d->osz)
                                     : cpu->gpr[d->r1] & hvp_size_mask(d->osz);
    mmx_enter(cpu);
    mm_set(cpu, d->r0, v);
    return NEXT(cpu, d);
}

/* MOVD/MOVQ r/m32/64, mm */
HVP_HANDLER(h_mm_movd_out)
{
    mmx_check(cpu);
    uint64_t v = mm_get(cpu, d->r1) & hvp_size_mask(d->osz);
    if (d->fl & HVP_DF_M0)
        hvp_wrn(cpu, hvp_ea(cpu, d), d->osz, v);
    else
        cpu->gpr[d->r0] = v;
    mmx_enter(cpu);
    return NEXT(cpu, d);
}

/* MOVQ mm, mm/m64 */
HVP_HANDLER(h_mm_movq_in)
{
    mmx_check(cpu);
    uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : mm_get(cpu, d->r1);
    mmx_enter(cpu);
    mm_set(cpu, d->r0, v);
    return NEXT(cpu, d);
}

/* MOVQ/MOVNTQ m64, mm */
HVP_HANDLER(h_mm_movq_out)
{
    mmx_check(cpu);
    hvp_wr64(cpu, hvp_ea(cpu, d), mm_get(cpu, d->r1));
    mmx_enter(cpu);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_movq2dq)
{
    mmx_check(cpu);
    xmm_t x = {0};
    x.q[0] = mm_get(cpu, d->r1);
    mmx_enter(cpu);
    xset(cpu, d->r0, &x);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_movdq2q)
{
    mmx_check(cpu);
    xmm_t x = xget(cpu, d->r1);
    mmx_enter(cpu);
    mm_set(cpu, d->r0, x.q[0]);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mm_pinsrw)
{
    mmx_check(cpu);
    uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rd16(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r1] & 0xffff;
    unsigned i = (unsigned)d->imm & 3;
    uint64_t x = mm_get(cpu, d->r0);
    x = (x & ~((uint64_t)0xffff << (16 * i))) | (v << (16 * i));
    mmx_enter(cpu);
    mm_set(cpu, d->r0, x);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mm_pextrw)
{
    mmx_check(cpu);
    uint64_t x = mm_get(cpu, d->r1);
    mmx_enter(cpu);
    cpu->gpr[d->r0] = (x >> (16 * ((unsigned)d->imm & 3))) & 0xffff;
    return NEXT(cpu, d);
}

/* EMMS: TOP = 0, all tags empty */
HVP_HANDLER(h_emms)
{
    mmx_check(cpu);
    mmx_top0(cpu); /* TOP = 0 as well (the host does so) */
    cpu->st.fpu.ftw = 0;
    return NEXT(cpu, d);
}

/* ---- the builder ---- */

static inline bool is_xmm(unsigned reg)
{
    return reg >= HVP_X86_REG_XMM0 && reg < HVP_X86_REG_XMM0 + 16;
}

static inline bool is_mm(unsigned reg)
{
    return reg >= HVP_X86_REG_MM0 && reg < HVP_X86_REG_MM0 + 8;
}

/* Register number of operand k (XMM 0..15, MM 0..7, GPR 0..15). */
static unsigned vreg(const struct hvp_x86_insn *xi, unsigned k)
{
    unsigned r = xi->ops[k].reg;
    if (is_xmm(r)) return r - HVP_X86_REG_XMM0;
    if (is_mm(r)) return r - HVP_X86_REG_MM0;
    return hvp_gpr_code(r) & 15;
}

static bool host_has_sse41(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.1");
}

static bool host_has_aes(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes");
}

/* Packed forms whose legacy memory operand must be aligned. */
static bool needs_align(unsigned op)
{
    switch (op) {
    case HVP_X86_OP_MOVUPS:
    case HVP_X86_OP_MOVUPD:
    case HVP_X86_OP_MOVDQU:
    case HVP_X86_OP_LDDQU:
    case HVP_X86_OP_MOVSS:
    case HVP_X86_OP_MOVSD_SSE:
    case HVP_X86_OP_MOVD:
    case HVP_X86_OP_MOVQ:
    case HVP_X86_OP_MOVDDUP:
    case HVP_X86_OP_ADDSS:
    case HVP_X86_OP_ADDSD:
    case HVP_X86_OP_SUBSS:
    case HVP_X86_OP_SUBSD:
    case HVP_X86_OP_MULSS:
    case HVP_X86_OP_MULSD:
    case HVP_X86_OP_DIVSS:
    case HVP_X86_OP_DIVSD:
    case HVP_X86_OP_MINSS:
    case HVP_X86_OP_MINSD:
    case HVP_X86_OP_MAXSS:
    case HVP_X86_OP_MAXSD:
    case HVP_X86_OP_SQRTSS:
    case HVP_X86_OP_SQRTSD:
    case HVP_X86_OP_RCPSS:
    case HVP_X86_OP_RSQRTSS:
    case HVP_X86_OP_CMPSS:
    case HVP_X86_OP_CMPSD_SSE:
    case HVP_X86_OP_COMISS:
    case HVP_X86_OP_COMISD:
    case HVP_X86_OP_UCOMISS:
    case HVP_X86_OP_UCOMISD:
    case HVP_X86_OP_CVTSS2SD:
    case HVP_X86_OP_CVTSD2SS:
    case HVP_X86_OP_CVTSS2SI:
    case HVP_X86_OP_CVTSD2SI:
    case HVP_X86_OP_CVTTSS2SI:
    case HVP_X86_OP_CVTTSD2SI:
    case HVP_X86_OP_CVTPS2PD:  /* m64 */
    case HVP_X86_OP_CVTDQ2PD:  /* m64 */
    case HVP_X86_OP_CVTPS2PI:  /* m64 */
    case HVP_X86_OP_CVTTPS2PI: /* m64 */
    case HVP_X86_OP_ROUNDSS:
    case HVP_X86_OP_ROUNDSD:
    case HVP_X86_OP_PMOVZXBW:
    case HVP_X86_OP_PMOVZXBD:
    case HVP_X86_OP_PMOVZXBQ:
    case HVP_X86_OP_PMOVZXWD:
    case HVP_X86_OP_PMOVZXWQ:
    case HVP_X86_OP_PMOVZXDQ:
    case HVP_X86_OP_PMOVSXBW:
    case HVP_X86_OP_PMOVSXBD:
    case HVP_X86_OP_PMOVSXBQ:
    case HVP_X86_OP_PMOVSXWD:
    case HVP_X86_OP_PMOVSXWQ:
    case HVP_X86_OP_PMOVSXDQ:
    case HVP_X86_OP_INSERTPS:
    case HVP_X86_OP_PCMPESTRI:
    case HVP_X86_OP_PCMPESTRM:
    case HVP_X86_OP_PCMPISTRI:
    case HVP_X86_OP_PCMPISTRM:
    case HVP_X86_OP_MOVLPS:
    case HVP_X86_OP_MOVLPD:
    case HVP_X86_OP_MOVHPS:
    case HVP_X86_OP_MOVHPD:
    case HVP_X86_OP_CVTPI2PS:
    case HVP_X86_OP_CVTPI2PD:
    /* SHA: no alignment check on the host (AMD) */
    case HVP_X86_OP_SHA1RNDS4:
    case HVP_X86_OP_SHA1NEXTE:
    case HVP_X86_OP_SHA1MSG1:
    case HVP_X86_OP_SHA1MSG2:
    case HVP_X86_OP_SHA256RNDS2:
    case HVP_X86_OP_SHA256MSG1:
    case HVP_X86_OP_SHA256MSG2: return false;
    default: return true;
    }
}

int hvp_cpu_build_sse(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY) return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    if (d->fl & HVP_DF_LOCK) return HVP_B_NONE; /* LOCK on SSE: #UD */
    unsigned op = xi->op;
    unsigned n = xi->nops;
    bool m0 = n > 0 && xi->ops[0].kind == HVP_X86_OPK_MEM;
    bool m1 = n > 1 && xi->ops[1].kind == HVP_X86_OPK_MEM;
    bool mmx = false;
    for (unsigned k = 0; k < n && k < 2; k++)
        if (xi->ops[k].kind == HVP_X86_OPK_REG && is_mm(xi->ops[k].reg)) mmx = true;
    if (n > 0 && xi->ops[0].kind == HVP_X86_OPK_REG) d->r0 = (uint8_t)vreg(xi, 0);
    if (n > 1 && xi->ops[1].kind == HVP_X86_OPK_REG) d->r1 = (uint8_t)vreg(xi, 1);
    if (m0) d->osz = (uint8_t)xi->ops[0].size;
    if (m1) d->osz = (uint8_t)xi->ops[1].size;
    if ((m0 || m1) && needs_align(op) && !mmx) d->fl |= SF_ALIGN;
    if (mmx) d->fl |= SF_MMX;
    if (xi->prefixes & HVP_X86_PFX_REXW) d->fl |= SF_W;
    d->imm = (uint8_t)xi->imm;
    if ((op == HVP_X86_OP_MASKMOVDQU || op == HVP_X86_OP_MASKMOVQ) &&
        (xi->prefixes & HVP_X86_PFX_SEG) && !(d->seg & HVP_SEG_LEGACY) &&
        (xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_FS || xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_GS))
        d->seg = (uint8_t)(xi->mem.seg - HVP_X86_REG_ES); /* implicit [rdi] */

    if (mmx) {
        hvp_handler h = mmx_handler(op);
        if (h && xi->ops[0].kind == HVP_X86_OPK_REG && xi->ops[1].kind != HVP_X86_OPK_IMM) {
            d->fn = h;
            return HVP_B_OK;
        }
        switch (op) {
        case HVP_X86_OP_PSLLW:
        case HVP_X86_OP_PSLLD:
        case HVP_X86_OP_PSLLQ:
        case HVP_X86_OP_PSRLW:
        case HVP_X86_OP_PSRLD:
        case HVP_X86_OP_PSRLQ:
        case HVP_X86_OP_PSRAW:
        case HVP_X86_OP_PSRAD: break; /* immediate forms below */
        case HVP_X86_OP_PSHUFB: d->fn = h_mm_pshufb; return HVP_B_OK;
        case HVP_X86_OP_PALIGNR: d->fn = h_mm_palignr; return HVP_B_OK;
        case HVP_X86_OP_PSHUFW: d->fn = h_mm_pshufw; return HVP_B_OK;
        case HVP_X86_OP_PINSRW: d->fn = h_mm_pinsrw; return HVP_B_OK;
        case HVP_X86_OP_PEXTRW: d->fn = h_mm_pextrw; return HVP_B_OK;
        case HVP_X86_OP_PMOVMSKB: d->fn = h_pmovmskb_mm; return HVP_B_OK;
        case HVP_X86_OP_MASKMOVQ: d->fn = h_maskmov; return HVP_B_OK;
        case HVP_X86_OP_MOVQ2DQ: d->fn = h_movq2dq; return HVP_B_OK;
        case HVP_X86_OP_MOVDQ2Q: d->fn = h_movdq2q; return HVP_B_OK;
        case HVP_X86_OP_CVTPI2PS: d->fn = h_cvtpi2ps; return HVP_B_OK;
        case HVP_X86_OP_CVTPI2PD: d->fn = h_cvtpi2pd; return HVP_B_OK;
        case HVP_X86_OP_CVTPS2PI: d->fn = h_cvtps2pi; return HVP_B_OK;
        case HVP_X86_OP_CVTTPS2PI: d->fn = h_cvttps2pi; return HVP_B_OK;
        case HVP_X86_OP_CVTPD2PI:
            d->fn = h_cvtpd2pi;
            d->fl |= m1 ? SF_ALIGN : 0;
            return HVP_B_OK;
        case HVP_X86_OP_CVTTPD2PI:
            d->fn = h_cvttpd2pi;
            d->fl |= m1 ? SF_ALIGN : 0;
            return HVP_B_OK;
        case HVP_X86_OP_MOVNTQ: d->fn = h_mm_movq_out; return HVP_B_OK;
        case HVP_X86_OP_MOVD:
        case HVP_X86_OP_MOVQ:
            if (xi->ops[0].kind == HVP_X86_OPK_REG && is_mm(xi->ops[0].reg)) {
                d->osz = (uint8_t)xi->ops[1].size;
                d->fn = (xi->ops[1].kind == HVP_X86_OPK_REG && is_mm(xi->ops[1].reg))
                            ? h_mm_movq_in
                            : h_mm_movd_in;
            } else {
                d->osz = (uint8_t)xi->ops[0].size;
                d->fn = h_mm_movd_out;
            }
            return HVP_B_OK;
        default: return HVP_B_NONE;
        }
        switch (op) { /* shifts by immediate */
        case HVP_X86_OP_PSLLW: d->fn = h_mm_psllw_i; break;
        case HVP_X86_OP_PSLLD: d->fn = h_mm_pslld_i; break;
        case HVP_X86_OP_PSLLQ: d->fn = h_mm_psllq_i; break;
        case HVP_X86_OP_PSRLW: d->fn = h_mm_psrlw_i; break;
        case HVP_X86_OP_PSRLD: d->fn = h_mm_psrld_i; break;
        case HVP_X86_OP_PSRLQ: d->fn = h_mm_psrlq_i; break;
        case HVP_X86_OP_PSRAW: d->fn = h_mm_psraw_i; break;
        default: d->fn = h_mm_psrad_i; break;
        }
        return HVP_B_OK;
    }

    switch (op) {
    /* moves */
    case HVP_X86_OP_MOVAPS:
    case HVP_X86_OP_MOVAPD:
    case HVP_X86_OP_MOVDQA:
    case HVP_X86_OP_MOVUPS:
    case HVP_X86_OP_MOVUPD:
    case HVP_X86_OP_MOVDQU:
    case HVP_X86_OP_LDDQU:
    case HVP_X86_OP_MOVNTPS:
    case HVP_X86_OP_MOVNTPD:
    case HVP_X86_OP_MOVNTDQ:
    case HVP_X86_OP_MOVNTDQA: d->fn = m0 ? h_mov_mr : m1 ? h_mov_rm : h_mov_rr; return HVP_B_OK;
    case HVP_X86_OP_MOVSS:
    case HVP_X86_OP_MOVSD_SSE:
        d->aux = op == HVP_X86_OP_MOVSS ? 4 : 8;
        d->fn = m0 ? h_mov_mr : m1 ? h_mov_rm : h_movs_rr;
        return HVP_B_OK;
    case HVP_X86_OP_MOVD:
    case HVP_X86_OP_MOVQ:
        if (m0 || m1) {
            d->fn = m0 ? h_mov_mr : h_mov_rm;
        } else if (is_xmm(xi->ops[0].reg) && is_xmm(xi->ops[1].reg)) {
            d->fn = h_movq_rr;
        } else if (is_xmm(xi->ops[0].reg)) {
            d->osz = (uint8_t)xi->ops[1].size;
            d->fn = h_movd_xg;
        } else {
            d->osz = (uint8_t)xi->ops[0].size;
            d->fn = h_movd_gx;
        }
        return HVP_B_OK;
    case HVP_X86_OP_MOVLPS:
    case HVP_X86_OP_MOVLPD:
    case HVP_X86_OP_MOVHPS:
    case HVP_X86_OP_MOVHPD: {
        bool hi = op == HVP_X86_OP_MOVHPS || op == HVP_X86_OP_MOVHPD;
        if (m0) {
            d->osz = 8;
            d->fn = hi ? h_movh_mr : h_mov_mr;
        } else if (m1) {
            d->aux = hi;
            d->fn = h_movlh_rm;
        } else {
            return HVP_B_NONE;
        }
        return HVP_B_OK;
    }
    case HVP_X86_OP_MOVHLPS: d->fn = h_movhlps; return HVP_B_OK;
    case HVP_X86_OP_MOVLHPS: d->fn = h_movlhps; return HVP_B_OK;
    case HVP_X86_OP_MOVSLDUP: d->fn = h_movsldup; return HVP_B_OK;
    case HVP_X86_OP_MOVSHDUP: d->fn = h_movshdup; return HVP_B_OK;
    case HVP_X86_OP_MOVDDUP: d->fn = h_movddup; return HVP_B_OK;
    case HVP_X86_OP_MOVMSKPS: d->fn = h_movmskps; return HVP_B_OK;
    case HVP_X86_OP_MOVMSKPD: d->fn = h_movmskpd; return HVP_B_OK;
    case HVP_X86_OP_PMOVMSKB: d->fn = h_pmovmskb; return HVP_B_OK;
    case HVP_X86_OP_MASKMOVDQU: d->fn = h_maskmov; return HVP_B_OK;
    case HVP_X86_OP_MOVNTI:
        if (!m0) return HVP_B_NONE;
        d->osz = (uint8_t)xi->ops[0].size;
        d->fn = h_movnti;
        return HVP_B_OK;
    case HVP_X86_OP_LDMXCSR: d->fn = h_ldmxcsr; return HVP_B_OK;
    case HVP_X86_OP_STMXCSR: d->fn = h_stmxcsr; return HVP_B_OK;
    case HVP_X86_OP_EMMS: d->fn = h_emms; return HVP_B_OK;
    case HVP_X86_OP_CLFLUSH:
    case HVP_X86_OP_CLFLUSHOPT:
        d->fn = h_nop;
        return HVP_B_OK;

        /* floating point */
#define C(OPN, h)                                                                                  \
    case HVP_X86_OP_##OPN: d->fn = h; return HVP_B_OK;
        C(ADDPS, h_addps)
        C(ADDPD, h_addpd)
        C(ADDSS, h_addss)
        C(ADDSD, h_addsd)
        C(SUBPS, h_subps)
        C(SUBPD, h_subpd)
        C(SUBSS, h_subss)
        C(SUBSD, h_subsd)
        C(MULPS, h_mulps)
        C(MULPD, h_mulpd)
        C(MULSS, h_mulss)
        C(MULSD, h_mulsd)
        C(DIVPS, h_divps)
        C(DIVPD, h_divpd)
        C(DIVSS, h_divss)
        C(DIVSD, h_divsd)
        C(MINPS, h_minps)
        C(MINPD, h_minpd)
        C(MINSS, h_minss)
        C(MINSD, h_minsd)
        C(MAXPS, h_maxps)
        C(MAXPD, h_maxpd)
        C(MAXSS, h_maxss)
        C(MAXSD, h_maxsd)
        C(SQRTPS, h_sqrtps)
        C(SQRTPD, h_sqrtpd)
        C(SQRTSS, h_sqrtss)
        C(SQRTSD, h_sqrtsd)
        C(RCPPS, h_rcpps)
        C(RCPSS, h_rcpss)
        C(RSQRTPS, h_rsqrtps)
        C(RSQRTSS, h_rsqrtss)
        C(HADDPS, h_haddps)
        C(HADDPD, h_haddpd)
        C(HSUBPS, h_hsubps)
        C(HSUBPD, h_hsubpd)
        C(ADDSUBPS, h_addsubps)
        C(ADDSUBPD, h_addsubpd)
        C(CVTPS2PD, h_cvtps2pd)
        C(CVTPD2PS, h_cvtpd2ps)
        C(CVTSS2SD, h_cvtss2sd)
        C(CVTSD2SS, h_cvtsd2ss)
        C(CVTDQ2PS, h_cvtdq2ps)
        C(CVTPS2DQ, h_cvtps2dq)
        C(CVTTPS2DQ, h_cvttps2dq)
        C(CVTDQ2PD, h_cvtdq2pd)
        C(CVTPD2DQ, h_cvtpd2dq)
        C(CVTTPD2DQ, h_cvttpd2dq)
        C(CMPPS, h_cmpps)
        C(CMPPD, h_cmppd)
        C(CMPSS, h_cmpss)
        C(CMPSD_SSE, h_cmpsd)
        C(UCOMISS, h_ucomiss)
        C(UCOMISD, h_ucomisd)
        C(COMISS, h_comiss)
        C(COMISD, h_comisd)
        C(CVTSS2SI, h_cvtss2si)
        C(CVTSD2SI, h_cvtsd2si)
        C(CVTTSS2SI, h_cvttss2si)
        C(CVTTSD2SI, h_cvttsd2si)
        C(ANDPS, h_pand)
        C(ANDPD, h_pand)
        C(ANDNPS, h_pandn)
        C(ANDNPD, h_pandn)
        C(ORPS, h_por)
        C(ORPD, h_por)
        C(XORPS, h_pxor)
        C(XORPD, h_pxor)
        C(UNPCKLPS, h_punpckldq)
        C(UNPCKHPS, h_punpckhdq)
        C(UNPCKLPD, h_punpcklqdq)
        C(UNPCKHPD, h_punpckhqdq)
        C(SHUFPS, h_shufps)
        C(SHUFPD, h_shufpd)
        C(CVTPI2PS, h_cvtpi2ps)
        C(CVTPI2PD, h_cvtpi2pd)
    case HVP_X86_OP_CVTSI2SS:
    case HVP_X86_OP_CVTSI2SD:
        d->osz = (uint8_t)xi->ops[1].size;
        d->fn = op == HVP_X86_OP_CVTSI2SS ? h_cvtsi2ss : h_cvtsi2sd;
        return HVP_B_OK;

        /* integer */
        C(PADDB, h_paddb)
        C(PADDW, h_paddw)
        C(PADDD, h_paddd)
        C(PADDQ, h_paddq)
        C(PSUBB, h_psubb)
        C(PSUBW, h_psubw)
        C(PSUBD, h_psubd)
        C(PSUBQ, h_psubq)
        C(PADDSB, h_paddsb)
        C(PADDSW, h_paddsw)
        C(PSUBSB, h_psubsb)
        C(PSUBSW, h_psubsw)
        C(PADDUSB, h_paddusb)
        C(PADDUSW, h_paddusw)
        C(PSUBUSB, h_psubusb)
        C(PSUBUSW, h_psubusw)
        C(PMULLW, h_pmullw)
        C(PMULHW, h_pmulhw)
        C(PMULHUW, h_pmulhuw)
        C(PMULLD, h_pmulld)
        C(PMULHRSW, h_pmulhrsw)
        C(PMULUDQ, h_pmuludq)
        C(PMULDQ, h_pmuldq)
        C(PMADDWD, h_pmaddwd)
        C(PMADDUBSW, h_pmaddubsw)
        C(PSADBW, h_psadbw)
        C(PAVGB, h_pavgb)
        C(PAVGW, h_pavgw)
        C(PMINUB, h_pminub)
        C(PMAXUB, h_pmaxub)
        C(PMINSW, h_pminsw)
        C(PMAXSW, h_pmaxsw)
        C(PMINSB, h_pminsb)
        C(PMAXSB, h_pmaxsb)
        C(PMINUW, h_pminuw)
        C(PMAXUW, h_pmaxuw)
        C(PMINSD, h_pminsd)
        C(PMAXSD, h_pmaxsd)
        C(PMINUD, h_pminud)
        C(PMAXUD, h_pmaxud)
        C(PAND, h_pand)
        C(PANDN, h_pandn)
        C(POR, h_por)
        C(PXOR, h_pxor)
        C(PCMPEQB, h_pcmpeqb)
        C(PCMPEQW, h_pcmpeqw)
        C(PCMPEQD, h_pcmpeqd)
        C(PCMPEQQ, h_pcmpeqq)
        C(PCMPGTB, h_pcmpgtb)
        C(PCMPGTW, h_pcmpgtw)
        C(PCMPGTD, h_pcmpgtd)
        C(PCMPGTQ, h_pcmpgtq)
        C(PSIGNB, h_psignb)
        C(PSIGNW, h_psignw)
        C(PSIGND, h_psignd)
        C(PABSB, h_pabsb)
        C(PABSW, h_pabsw)
        C(PABSD, h_pabsd)
        C(PHADDW, h_phaddw)
        C(PHADDD, h_phaddd)
        C(PHADDSW, h_phaddsw)
        C(PHSUBW, h_phsubw)
        C(PHSUBD, h_phsubd)
        C(PHSUBSW, h_phsubsw)
        C(PACKSSWB, h_packsswb)
        C(PACKUSWB, h_packuswb)
        C(PACKSSDW, h_packssdw)
        C(PACKUSDW, h_packusdw)
        C(PUNPCKLBW, h_punpcklbw)
        C(PUNPCKLWD, h_punpcklwd)
        C(PUNPCKLDQ, h_punpckldq)
        C(PUNPCKLQDQ, h_punpcklqdq)
        C(PUNPCKHBW, h_punpckhbw)
        C(PUNPCKHWD, h_punpckhwd)
        C(PUNPCKHDQ, h_punpckhdq)
        C(PUNPCKHQDQ, h_punpckhqdq)
        C(PSHUFD, h_pshufd)
        C(PSHUFLW, h_pshuflw)
        C(PSHUFHW, h_pshufhw)
        C(PSHUFB, h_pshufb)
        C(PALIGNR, h_palignr)
        C(PBLENDW, h_pblendw)
        C(BLENDPS, h_blendps)
        C(BLENDPD, h_blendpd)
        C(PBLENDVB, h_pblendvb)
        C(BLENDVPS, h_blendvps)
        C(BLENDVPD, h_blendvpd)
        C(PMOVZXBW, h_pmovzxbw)
        C(PMOVZXBD, h_pmovzxbd)
        C(PMOVZXBQ, h_pmovzxbq)
        C(PMOVZXWD, h_pmovzxwd)
        C(PMOVZXWQ, h_pmovzxwq)
        C(PMOVZXDQ, h_pmovzxdq)
        C(PMOVSXBW, h_pmovsxbw)
        C(PMOVSXBD, h_pmovsxbd)
        C(PMOVSXBQ, h_pmovsxbq)
        C(PMOVSXWD, h_pmovsxwd)
        C(PMOVSXWQ, h_pmovsxwq)
        C(PMOVSXDQ, h_pmovsxdq)
        C(PHMINPOSUW, h_phminposuw)
        C(MPSADBW, h_mpsadbw)
        C(INSERTPS, h_insertps)
        C(PTEST, h_ptest)
    case HVP_X86_OP_PSLLW:
    case HVP_X86_OP_PSLLD:
    case HVP_X86_OP_PSLLQ:
    case HVP_X86_OP_PSRLW:
    case HVP_X86_OP_PSRLD:
    case HVP_X86_OP_PSRLQ:
    case HVP_X86_OP_PSRAW:
    case HVP_X86_OP_PSRAD: {
        bool im = xi->ops[1].kind == HVP_X86_OPK_IMM;
        switch (op) {
        case HVP_X86_OP_PSLLW: d->fn = im ? h_psllw_i : h_psllw; break;
        case HVP_X86_OP_PSLLD: d->fn = im ? h_pslld_i : h_pslld; break;
        case HVP_X86_OP_PSLLQ: d->fn = im ? h_psllq_i : h_psllq; break;
        case HVP_X86_OP_PSRLW: d->fn = im ? h_psrlw_i : h_psrlw; break;
        case HVP_X86_OP_PSRLD: d->fn = im ? h_psrld_i : h_psrld; break;
        case HVP_X86_OP_PSRLQ: d->fn = im ? h_psrlq_i : h_psrlq; break;
        case HVP_X86_OP_PSRAW: d->fn = im ? h_psraw_i : h_psraw; break;
        default: d->fn = im ? h_psrad_i : h_psrad; break;
        }
        return HVP_B_OK;
    }
        C(PSLLDQ, h_pslldq)
        C(PSRLDQ, h_psrldq)
    case HVP_X86_OP_PINSRB:
    case HVP_X86_OP_PINSRW:
    case HVP_X86_OP_PINSRD:
    case HVP_X86_OP_PINSRQ:
        d->aux = op == HVP_X86_OP_PINSRB   ? 1
                 : op == HVP_X86_OP_PINSRW ? 2
                 : op == HVP_X86_OP_PINSRD ? 4
                                           : 8;
        d->fn = h_pinsr;
        return HVP_B_OK;
    case HVP_X86_OP_PEXTRB:
    case HVP_X86_OP_PEXTRW:
    case HVP_X86_OP_PEXTRD:
    case HVP_X86_OP_PEXTRQ:
    case HVP_X86_OP_EXTRACTPS:
        d->aux = op == HVP_X86_OP_PEXTRB   ? 1
                 : op == HVP_X86_OP_PEXTRW ? 2
                 : op == HVP_X86_OP_PEXTRQ ? 8
                                           : 4;
        d->fn = h_pextr;
        return HVP_B_OK;
    case HVP_X86_OP_PCMPESTRI:
    case HVP_X86_OP_PCMPESTRM:
    case HVP_X86_OP_PCMPISTRI:
    case HVP_X86_OP_PCMPISTRM:
        d->aux = (op == HVP_X86_OP_PCMPESTRI || op == HVP_X86_OP_PCMPESTRM ? 1 : 0) |
                 (op == HVP_X86_OP_PCMPESTRM || op == HVP_X86_OP_PCMPISTRM ? 2 : 0);
        d->fn = h_pcmpstr;
        return HVP_B_OK;
    case HVP_X86_OP_CRC32:
        d->aux = (uint8_t)xi->ops[1].size;
        d->r1 = xi->ops[1].kind == HVP_X86_OPK_REG ? (uint8_t)hvp_gpr_code(xi->ops[1].reg) : 0;
        d->fn = h_crc32;
        return HVP_B_OK;
    case HVP_X86_OP_ROUNDPS:
    case HVP_X86_OP_ROUNDPD:
    case HVP_X86_OP_ROUNDSS:
    case HVP_X86_OP_ROUNDSD:
    case HVP_X86_OP_DPPS:
    case HVP_X86_OP_DPPD:
        if (!host_has_sse41()) return HVP_B_NONE;
        d->fn = op == HVP_X86_OP_ROUNDPS   ? h_roundps
                : op == HVP_X86_OP_ROUNDPD ? h_roundpd
                : op == HVP_X86_OP_ROUNDSS ? h_roundss
                : op == HVP_X86_OP_ROUNDSD ? h_roundsd
                : op == HVP_X86_OP_DPPS    ? h_dpps
                                           : h_dppd;
        return HVP_B_OK;
    case HVP_X86_OP_AESENC:
    case HVP_X86_OP_AESENCLAST:
    case HVP_X86_OP_AESDEC:
    case HVP_X86_OP_AESDECLAST:
    case HVP_X86_OP_AESIMC:
    case HVP_X86_OP_AESKEYGENASSIST:
        if (!host_has_aes()) return HVP_B_NONE;
        d->fn = op == HVP_X86_OP_AESENC       ? h_aesenc
                : op == HVP_X86_OP_AESENCLAST ? h_aesenclast
                : op == HVP_X86_OP_AESDEC     ? h_aesdec
                : op == HVP_X86_OP_AESDECLAST ? h_aesdeclast
                : op == HVP_X86_OP_AESIMC     ? h_aesimc
                                              : h_aeskeygenassist;
        return HVP_B_OK;
        C(PCLMULQDQ, h_pclmulqdq)
        C(SHA1RNDS4, h_sha1rnds4)
        C(SHA1NEXTE, h_sha1nexte)
        C(SHA1MSG1, h_sha1msg1)
        C(SHA1MSG2, h_sha1msg2)
        C(SHA256RNDS2, h_sha256rnds2)
        C(SHA256MSG1, h_sha256msg1)
        C(SHA256MSG2, h_sha256msg2)
#undef C
    default: return HVP_B_NONE;
    }
}
