/* hvp software x86-64 CPU: SSE and SSE2 (legacy encodings, XMM registers).
 *
 * Most instructions run as the host's own SSE instruction on copies of the
 * guest operands (the host is x86-64, so SSE2 is always there): a "stub"
 * loads xmm0 (destination) and xmm1 (source) from memory, executes the
 * instruction and stores xmm0 back. Floating-point stubs run with the
 * guest's MXCSR (rounding, DAZ, FTZ) and every exception masked; the
 * exception flags they raise are merged into the guest MXCSR, and an
 * exception the guest left unmasked raises #XM before anything is written.
 * Shuffles and moves are plain C.
 *
 * MMX forms (MM registers), SSE3 and later are not handled here (#UD), and
 * CPUID does not advertise SSE/SSE2 until the set is complete. */
#include "cpu_internal.h"

typedef void (*sse_stub)(void *d, const void *s);

#define XMM(cpu, i) ((uint8_t *)(cpu)->st.fpu.xmm[(i)])

#define STUB(name, insn)                                                                          \
    static void s_##name(void *d, const void *s)                                                  \
    {                                                                                             \
        __asm__ volatile("movdqu (%0), %%xmm0\n\tmovdqu (%1), %%xmm1\n\t" insn                    \
                         " %%xmm1, %%xmm0\n\tmovdqu %%xmm0, (%0)"                                 \
                         :                                                                        \
                         : "r"(d), "r"(s)                                                         \
                         : "xmm0", "xmm1", "memory");                                             \
    }

/* integer */
STUB(paddb, "paddb")
STUB(paddw, "paddw")
STUB(paddd, "paddd")
STUB(paddq, "paddq")
STUB(psubb, "psubb")
STUB(psubw, "psubw")
STUB(psubd, "psubd")
STUB(psubq, "psubq")
STUB(paddusb, "paddusb")
STUB(paddusw, "paddusw")
STUB(psubusb, "psubusb")
STUB(psubusw, "psubusw")
STUB(paddsb, "paddsb")
STUB(paddsw, "paddsw")
STUB(psubsb, "psubsb")
STUB(psubsw, "psubsw")
STUB(pcmpeqb, "pcmpeqb")
STUB(pcmpeqw, "pcmpeqw")
STUB(pcmpeqd, "pcmpeqd")
STUB(pcmpgtb, "pcmpgtb")
STUB(pcmpgtw, "pcmpgtw")
STUB(pcmpgtd, "pcmpgtd")
STUB(pminub, "pminub")
STUB(pmaxub, "pmaxub")
STUB(pminsw, "pminsw")
STUB(pmaxsw, "pmaxsw")
STUB(pavgb, "pavgb")
STUB(pavgw, "pavgw")
STUB(pmullw, "pmullw")
STUB(pmulhw, "pmulhw")
STUB(pmulhuw, "pmulhuw")
STUB(pmuludq, "pmuludq")
STUB(pmaddwd, "pmaddwd")
STUB(psadbw, "psadbw")
STUB(punpcklbw, "punpcklbw")
STUB(punpcklwd, "punpcklwd")
STUB(punpckldq, "punpckldq")
STUB(punpcklqdq, "punpcklqdq")
STUB(punpckhbw, "punpckhbw")
STUB(punpckhwd, "punpckhwd")
STUB(punpckhdq, "punpckhdq")
STUB(punpckhqdq, "punpckhqdq")
STUB(packsswb, "packsswb")
STUB(packssdw, "packssdw")
STUB(packuswb, "packuswb")
STUB(psllw, "psllw")
STUB(pslld, "pslld")
STUB(psllq, "psllq")
STUB(psrlw, "psrlw")
STUB(psrld, "psrld")
STUB(psrlq, "psrlq")
STUB(psraw, "psraw")
STUB(psrad, "psrad")
STUB(pand, "pand")
STUB(pandn, "pandn")
STUB(por, "por")
STUB(pxor, "pxor")
STUB(andnps, "andnps")
STUB(unpcklps, "unpcklps")
STUB(unpcklpd, "unpcklpd")
STUB(unpckhps, "unpckhps")
STUB(unpckhpd, "unpckhpd")
/* floating point (run under the guest MXCSR) */
STUB(addps, "addps")
STUB(addpd, "addpd")
STUB(addss, "addss")
STUB(addsd, "addsd")
STUB(subps, "subps")
STUB(subpd, "subpd")
STUB(subss, "subss")
STUB(subsd, "subsd")
STUB(mulps, "mulps")
STUB(mulpd, "mulpd")
STUB(mulss, "mulss")
STUB(mulsd, "mulsd")
STUB(divps, "divps")
STUB(divpd, "divpd")
STUB(divss, "divss")
STUB(divsd, "divsd")
STUB(minps, "minps")
STUB(minpd, "minpd")
STUB(minss, "minss")
STUB(minsd, "minsd")
STUB(maxps, "maxps")
STUB(maxpd, "maxpd")
STUB(maxss, "maxss")
STUB(maxsd, "maxsd")
STUB(sqrtps, "sqrtps")
STUB(sqrtpd, "sqrtpd")
STUB(sqrtss, "sqrtss")
STUB(sqrtsd, "sqrtsd")
STUB(rcpps, "rcpps")
STUB(rcpss, "rcpss")
STUB(rsqrtps, "rsqrtps")
STUB(rsqrtss, "rsqrtss")
STUB(cvtps2pd, "cvtps2pd")
STUB(cvtpd2ps, "cvtpd2ps")
STUB(cvtss2sd, "cvtss2sd")
STUB(cvtsd2ss, "cvtsd2ss")
STUB(cvtdq2ps, "cvtdq2ps")
STUB(cvtps2dq, "cvtps2dq")
STUB(cvttps2dq, "cvttps2dq")
STUB(cvtdq2pd, "cvtdq2pd")
STUB(cvtpd2dq, "cvtpd2dq")
STUB(cvttpd2dq, "cvttpd2dq")

#define CMPSTUBS(sfx)                                                                             \
    STUB(cmp##sfx##0, "cmpeq" #sfx)                                                               \
    STUB(cmp##sfx##1, "cmplt" #sfx)                                                               \
    STUB(cmp##sfx##2, "cmple" #sfx)                                                               \
    STUB(cmp##sfx##3, "cmpunord" #sfx)                                                            \
    STUB(cmp##sfx##4, "cmpneq" #sfx)                                                              \
    STUB(cmp##sfx##5, "cmpnlt" #sfx)                                                              \
    STUB(cmp##sfx##6, "cmpnle" #sfx)                                                              \
    STUB(cmp##sfx##7, "cmpord" #sfx)                                                              \
    static const sse_stub cmp_##sfx[8] = {s_cmp##sfx##0, s_cmp##sfx##1, s_cmp##sfx##2,             \
                                          s_cmp##sfx##3, s_cmp##sfx##4, s_cmp##sfx##5,             \
                                          s_cmp##sfx##6, s_cmp##sfx##7};
CMPSTUBS(ps)
CMPSTUBS(pd)
CMPSTUBS(ss)
CMPSTUBS(sd)

/* ---- MXCSR around host floating point ---- */

#define MXCSR_FLAGS 0x3fu

static inline uint32_t host_mxcsr_get(void)
{
    uint32_t m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return m;
}
static inline void host_mxcsr_set(uint32_t m)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
}

/* Runs fn on (dst, src) under the guest MXCSR; result in dst only when no
 * unmasked exception occurred (else #XM, vector 19). */
static void run_fp(struct hvp_cpu *cpu, sse_stub fn, uint8_t *dst, const uint8_t *src)
{
    uint8_t tmp[16];
    memcpy(tmp, dst, 16);
    uint32_t g = cpu->st.fpu.mxcsr, saved = host_mxcsr_get();
    host_mxcsr_set((g & ~MXCSR_FLAGS) | 0x1f80);
    fn(tmp, src);
    uint32_t out = host_mxcsr_get();
    host_mxcsr_set(saved);
    uint32_t fl = out & MXCSR_FLAGS;
    cpu->st.fpu.mxcsr = g | fl;
    if (fl & ~(g >> 7) & MXCSR_FLAGS)
        hvp_raise(cpu, 19, -1);
    memcpy(dst, tmp, 16);
}

/* ---- operand fetch ---- */

#define SSE_FP 0x0100     /* d->fl: run under MXCSR */
#define SSE_ALIGN 0x0200  /* d->fl: a 16-byte memory operand must be aligned */
#define SSE_IMMCNT 0x0400 /* d->fl: shift count from the immediate (aux) */

/* the source: XMM r1 or memory of `size` bytes (zero-padded to 16) */
static inline void src_load(struct hvp_cpu *cpu, const struct hvp_dinsn *d, unsigned size,
                            uint8_t out[16])
{
    if (d->fl & HVP_DF_M1) {
        uint64_t a = hvp_ea(cpu, d);
        if (size == 16 && (d->fl & SSE_ALIGN) && (a & 15))
            hvp_raise_gp0(cpu);
        memset(out, 0, 16);
        hvp_rd_block(cpu, a, out, size);
    } else {
        memcpy(out, XMM(cpu, d->r1), 16);
    }
}

/* d->imm holds the stub, d->osz the memory source size */
HVP_HANDLER(h_sse_op)
{
    uint8_t s[16];
    sse_stub fn = (sse_stub)(uintptr_t)d->imm;
    if (d->fl & SSE_IMMCNT) {
        memset(s, 0, 16);
        s[0] = d->aux;
    } else {
        src_load(cpu, d, d->osz, s);
    }
    if (d->fl & SSE_FP)
        run_fp(cpu, fn, XMM(cpu, d->r0), s);
    else
        fn(XMM(cpu, d->r0), s);
    return NEXT(cpu, d);
}

/* CMPPS/PD/SS/SD: d->imm = the table of 8 stubs, aux = predicate */
HVP_HANDLER(h_sse_cmp)
{
    uint8_t s[16];
    const sse_stub *t = (const sse_stub *)(uintptr_t)d->imm;
    src_load(cpu, d, d->osz, s);
    run_fp(cpu, t[d->aux & 7], XMM(cpu, d->r0), s);
    return NEXT(cpu, d);
}

/* ---- moves ---- */

/* 128-bit move: load/reg (to XMM r0) or store (from XMM r1) */
HVP_HANDLER(h_mov128)
{
    if (d->fl & HVP_DF_M0) {
        uint64_t a = hvp_ea(cpu, d);
        if ((d->fl & SSE_ALIGN) && (a & 15))
            hvp_raise_gp0(cpu);
        hvp_wr_block(cpu, a, XMM(cpu, d->r1), 16);
    } else {
        uint8_t s[16];
        src_load(cpu, d, 16, s);
        memcpy(XMM(cpu, d->r0), s, 16);
    }
    return NEXT(cpu, d);
}

/* MOVSS/MOVSD (osz 4/8): reg-reg merges the low element, a load zeroes the
 * rest, a store writes the low element */
HVP_HANDLER(h_movs)
{
    unsigned n = d->osz;
    if (d->fl & HVP_DF_M0) {
        hvp_wr_block(cpu, hvp_ea(cpu, d), XMM(cpu, d->r1), n);
    } else if (d->fl & HVP_DF_M1) {
        uint8_t s[16] = {0};
        hvp_rd_block(cpu, hvp_ea(cpu, d), s, n);
        memcpy(XMM(cpu, d->r0), s, 16);
    } else {
        memcpy(XMM(cpu, d->r0), XMM(cpu, d->r1), n);
    }
    return NEXT(cpu, d);
}

/* MOVD/MOVQ. aux: 0 xmm <- gpr/mem (zero-extend), 1 gpr/mem <- xmm low,
 * 2 xmm <- xmm/m64 low qword (zero upper), 3 m64/xmm <- xmm low qword */
HVP_HANDLER(h_movdq)
{
    unsigned n = d->osz;
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    switch (d->aux) {
    case 0: {
        uint64_t v = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), n)
                                          : hvp_reg_rd(cpu, hvp_gpr_code(xi->ops[1].reg), n);
        uint8_t *x = XMM(cpu, d->r0);
        memset(x, 0, 16);
        memcpy(x, &v, n);
        break;
    }
    case 1: {
        uint64_t v = 0;
        memcpy(&v, XMM(cpu, d->r1), n);
        if (d->fl & HVP_DF_M0)
            hvp_wrn(cpu, hvp_ea(cpu, d), n, v);
        else
            hvp_reg_wr(cpu, hvp_gpr_code(xi->ops[0].reg), n, v);
        break;
    }
    case 2: {
        uint8_t s[16] = {0};
        if (d->fl & HVP_DF_M1)
            hvp_rd_block(cpu, hvp_ea(cpu, d), s, 8);
        else
            memcpy(s, XMM(cpu, d->r1), 8);
        memcpy(XMM(cpu, d->r0), s, 16);
        break;
    }
    default:
        if (d->fl & HVP_DF_M0) {
            hvp_wr_block(cpu, hvp_ea(cpu, d), XMM(cpu, d->r1), 8);
        } else {
            uint8_t s[16] = {0};
            memcpy(s, XMM(cpu, d->r1), 8);
            memcpy(XMM(cpu, d->r0), s, 16);
        }
        break;
    }
    return NEXT(cpu, d);
}

/* MOVLPS/MOVLPD (aux 0), MOVHPS/MOVHPD (1), MOVHLPS (2), MOVLHPS (3) */
HVP_HANDLER(h_movhl)
{
    unsigned hi = d->aux == 1 ? 8 : 0;
    if (d->aux >= 2) {
        uint8_t *x = XMM(cpu, d->r0), *y = XMM(cpu, d->r1);
        if (d->aux == 2)
            memmove(x, y + 8, 8);
        else
            memmove(x + 8, y, 8);
    } else if (d->fl & HVP_DF_M0) {
        hvp_wr_block(cpu, hvp_ea(cpu, d), XMM(cpu, d->r1) + hi, 8);
    } else {
        uint8_t s[8];
        hvp_rd_block(cpu, hvp_ea(cpu, d), s, 8);
        memcpy(XMM(cpu, d->r0) + hi, s, 8);
    }
    return NEXT(cpu, d);
}

/* MOVMSKPS (aux 0), MOVMSKPD (1), PMOVMSKB (2): r0 is a GPR code */
HVP_HANDLER(h_movmsk)
{
    const uint8_t *x = XMM(cpu, d->r1);
    uint32_t m = 0;
    if (d->aux == 0)
        for (int i = 0; i < 4; i++)
            m |= (uint32_t)(x[i * 4 + 3] >> 7) << i;
    else if (d->aux == 1)
        for (int i = 0; i < 2; i++)
            m |= (uint32_t)(x[i * 8 + 7] >> 7) << i;
    else
        for (int i = 0; i < 16; i++)
            m |= (uint32_t)(x[i] >> 7) << i;
    hvp_reg_wr(cpu, d->r0, d->osz, m);
    return NEXT(cpu, d);
}

/* PSHUFD (0) PSHUFLW (1) PSHUFHW (2) SHUFPS (3) SHUFPD (4) PSLLDQ (5) PSRLDQ (6) */
HVP_HANDLER(h_shuf)
{
    uint8_t s[16], r[16];
    uint8_t *x = XMM(cpu, d->r0);
    unsigned imm = (uint8_t)d->imm;
    if (d->aux < 5)
        src_load(cpu, d, 16, s);
    switch (d->aux) {
    case 0:
        for (int i = 0; i < 4; i++)
            memcpy(r + i * 4, s + ((imm >> (2 * i)) & 3) * 4, 4);
        break;
    case 1:
        memcpy(r + 8, s + 8, 8);
        for (int i = 0; i < 4; i++)
            memcpy(r + i * 2, s + ((imm >> (2 * i)) & 3) * 2, 2);
        break;
    case 2:
        memcpy(r, s, 8);
        for (int i = 0; i < 4; i++)
            memcpy(r + 8 + i * 2, s + 8 + ((imm >> (2 * i)) & 3) * 2, 2);
        break;
    case 3:
        memcpy(r, x + (imm & 3) * 4, 4);
        memcpy(r + 4, x + ((imm >> 2) & 3) * 4, 4);
        memcpy(r + 8, s + ((imm >> 4) & 3) * 4, 4);
        memcpy(r + 12, s + ((imm >> 6) & 3) * 4, 4);
        break;
    case 4:
        memcpy(r, x + (imm & 1) * 8, 8);
        memcpy(r + 8, s + ((imm >> 1) & 1) * 8, 8);
        break;
    case 5:
        memset(r, 0, 16);
        if (imm < 16)
            memcpy(r + imm, x, 16 - imm);
        break;
    default:
        memset(r, 0, 16);
        if (imm < 16)
            memcpy(r, x + imm, 16 - imm);
        break;
    }
    memcpy(x, r, 16);
    return NEXT(cpu, d);
}

/* PINSRW (aux 0) / PEXTRW (aux 1) */
HVP_HANDLER(h_pinsrw)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned imm = (uint8_t)d->imm;
    if (d->aux == 0) {
        uint16_t v = (uint16_t)((d->fl & HVP_DF_M1)
                                    ? hvp_rd16(cpu, hvp_ea(cpu, d))
                                    : hvp_reg_rd(cpu, hvp_gpr_code(xi->ops[1].reg), 2));
        memcpy(XMM(cpu, d->r0) + (imm & 7) * 2, &v, 2);
    } else {
        uint16_t v;
        memcpy(&v, XMM(cpu, d->r1) + (imm & 7) * 2, 2);
        hvp_reg_wr(cpu, hvp_gpr_code(xi->ops[0].reg), xi->ops[0].size, v);
    }
    return NEXT(cpu, d);
}

#define COMIS(insn)                                                                               \
    __asm__ volatile("movdqu (%3), %%xmm0\n\tmovdqu (%4), %%xmm1\n\t" insn " %%xmm1, %%xmm0"      \
                     : "=@ccz"(zf), "=@ccp"(pf), "=@ccc"(cf)                                      \
                     : "r"(x), "r"(s)                                                             \
                     : "xmm0", "xmm1")

/* UCOMISS (0) UCOMISD (1) COMISS (2) COMISD (3) */
HVP_HANDLER(h_comis)
{
    uint8_t s[16];
    src_load(cpu, d, d->osz, s);
    const uint8_t *x = XMM(cpu, d->r0);
    uint32_t g = cpu->st.fpu.mxcsr, saved = host_mxcsr_get();
    bool zf, pf, cf;
    host_mxcsr_set((g & ~MXCSR_FLAGS) | 0x1f80);
    switch (d->aux) {
    case 0: COMIS("ucomiss"); break;
    case 1: COMIS("ucomisd"); break;
    case 2: COMIS("comiss"); break;
    default: COMIS("comisd"); break;
    }
    uint32_t fl = host_mxcsr_get() & MXCSR_FLAGS;
    host_mxcsr_set(saved);
    cpu->st.fpu.mxcsr = g | fl;
    if (fl & ~(g >> 7) & MXCSR_FLAGS)
        hvp_raise(cpu, 19, -1);
    hvp_flags_materialize(cpu);
    cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | (zf ? HVP_ZF : 0) | (pf ? HVP_PF : 0) |
                  (cf ? HVP_CF : 0);
    return NEXT(cpu, d);
}

#define CVT_TO_X(insn, val)                                                                       \
    __asm__ volatile("movdqu (%0), %%xmm0\n\t" insn " %1, %%xmm0\n\tmovdqu %%xmm0, (%0)"          \
                     :                                                                            \
                     : "r"(x), "r"(val)                                                           \
                     : "xmm0", "memory")
#define CVT_TO_R(insn, out)                                                                       \
    __asm__ volatile("movdqu (%1), %%xmm1\n\t" insn " %%xmm1, %0" : "=r"(out) : "r"(s) : "xmm1")

/* Conversions between a GPR/memory integer and a scalar:
 * aux: 0 cvtsi2ss 1 cvtsi2sd 2 cvtss2si 3 cvtsd2si 4 cvttss2si 5 cvttsd2si;
 * osz: integer size (4/8). */
HVP_HANDLER(h_cvtint)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned isz = d->osz, k = d->aux;
    uint32_t g = cpu->st.fpu.mxcsr, saved;
    uint64_t iv = 0;
    uint8_t s[16] = {0};
    if (k < 2)
        iv = (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), isz)
                                 : hvp_reg_rd(cpu, hvp_gpr_code(xi->ops[1].reg), isz);
    else
        src_load(cpu, d, (k & 1) ? 8 : 4, s);
    uint8_t x[16];
    memcpy(x, XMM(cpu, d->r0 < 16 ? d->r0 : 0), 16);
    uint32_t i32 = (uint32_t)iv, o32 = 0;
    uint64_t r = 0;
    saved = host_mxcsr_get();
    host_mxcsr_set((g & ~MXCSR_FLAGS) | 0x1f80);
    switch (k * 2 + (isz == 8)) {
    case 0: CVT_TO_X("cvtsi2ssl", i32); break;
    case 1: CVT_TO_X("cvtsi2ssq", iv); break;
    case 2: CVT_TO_X("cvtsi2sdl", i32); break;
    case 3: CVT_TO_X("cvtsi2sdq", iv); break;
    case 4: CVT_TO_R("cvtss2si", o32); break;
    case 5: CVT_TO_R("cvtss2si", r); break;
    case 6: CVT_TO_R("cvtsd2si", o32); break;
    case 7: CVT_TO_R("cvtsd2si", r); break;
    case 8: CVT_TO_R("cvttss2si", o32); break;
    case 9: CVT_TO_R("cvttss2si", r); break;
    case 10: CVT_TO_R("cvttsd2si", o32); break;
    default: CVT_TO_R("cvttsd2si", r); break;
    }
    uint32_t fl = host_mxcsr_get() & MXCSR_FLAGS;
    host_mxcsr_set(saved);
    cpu->st.fpu.mxcsr = g | fl;
    if (fl & ~(g >> 7) & MXCSR_FLAGS)
        hvp_raise(cpu, 19, -1);
    if (k < 2)
        memcpy(XMM(cpu, d->r0), x, 16);
    else
        hvp_reg_wr(cpu, hvp_gpr_code(xi->ops[0].reg), isz, isz == 8 ? r : o32);
    return NEXT(cpu, d);
}

/* LDMXCSR (aux 0) / STMXCSR (aux 1) */
HVP_HANDLER(h_mxcsr)
{
    uint64_t a = hvp_ea(cpu, d);
    if (d->aux == 0) {
        uint32_t v = (uint32_t)hvp_rd32(cpu, a);
        if (v & ~0xffffu)
            hvp_raise_gp0(cpu);
        cpu->st.fpu.mxcsr = v;
    } else {
        hvp_wr32(cpu, a, cpu->st.fpu.mxcsr);
    }
    return NEXT(cpu, d);
}

/* ---- the builder ---- */

struct sse_ent {
    uint16_t op;
    uint8_t fp;  /* 1: under MXCSR */
    uint8_t msz; /* memory source size; 16 = aligned m128 */
    sse_stub fn;
};

#define I(op, fn) {HVP_X86_OP_##op, 0, 16, s_##fn}
#define P(op, fn) {HVP_X86_OP_##op, 1, 16, s_##fn}
#define S4(op, fn) {HVP_X86_OP_##op, 1, 4, s_##fn}
#define S8(op, fn) {HVP_X86_OP_##op, 1, 8, s_##fn}
static const struct sse_ent sse_tab[] = {
    I(PADDB, paddb), I(PADDW, paddw), I(PADDD, paddd), I(PADDQ, paddq), I(PSUBB, psubb),
    I(PSUBW, psubw), I(PSUBD, psubd), I(PSUBQ, psubq), I(PADDUSB, paddusb), I(PADDUSW, paddusw),
    I(PSUBUSB, psubusb), I(PSUBUSW, psubusw), I(PADDSB, paddsb), I(PADDSW, paddsw),
    I(PSUBSB, psubsb), I(PSUBSW, psubsw), I(PCMPEQB, pcmpeqb), I(PCMPEQW, pcmpeqw),
    I(PCMPEQD, pcmpeqd), I(PCMPGTB, pcmpgtb), I(PCMPGTW, pcmpgtw), I(PCMPGTD, pcmpgtd),
    I(PMINUB, pminub), I(PMAXUB, pmaxub), I(PMINSW, pminsw), I(PMAXSW, pmaxsw), I(PAVGB, pavgb),
    I(PAVGW, pavgw), I(PMULLW, pmullw), I(PMULHW, pmulhw), I(PMULHUW, pmulhuw),
    I(PMULUDQ, pmuludq), I(PMADDWD, pmaddwd), I(PSADBW, psadbw), I(PUNPCKLBW, punpcklbw),
    I(PUNPCKLWD, punpcklwd), I(PUNPCKLDQ, punpckldq), I(PUNPCKLQDQ, punpcklqdq),
    I(PUNPCKHBW, punpckhbw), I(PUNPCKHWD, punpckhwd), I(PUNPCKHDQ, punpckhdq),
    I(PUNPCKHQDQ, punpckhqdq), I(PACKSSWB, packsswb), I(PACKSSDW, packssdw),
    I(PACKUSWB, packuswb), I(PAND, pand), I(PANDN, pandn), I(POR, por), I(PXOR, pxor),
    I(ANDPS, pand), I(ANDPD, pand), I(ORPS, por), I(ORPD, por), I(XORPS, pxor), I(XORPD, pxor),
    I(ANDNPS, andnps), I(ANDNPD, andnps), I(UNPCKLPS, unpcklps), I(UNPCKLPD, unpcklpd),
    I(UNPCKHPS, unpckhps), I(UNPCKHPD, unpckhpd), P(ADDPS, addps), P(ADDPD, addpd),
    S4(ADDSS, addss), S8(ADDSD, addsd), P(SUBPS, subps), P(SUBPD, subpd), S4(SUBSS, subss),
    S8(SUBSD, subsd), P(MULPS, mulps), P(MULPD, mulpd), S4(MULSS, mulss), S8(MULSD, mulsd),
    P(DIVPS, divps), P(DIVPD, divpd), S4(DIVSS, divss), S8(DIVSD, divsd), P(MINPS, minps),
    P(MINPD, minpd), S4(MINSS, minss), S8(MINSD, minsd), P(MAXPS, maxps), P(MAXPD, maxpd),
    S4(MAXSS, maxss), S8(MAXSD, maxsd), P(SQRTPS, sqrtps), P(SQRTPD, sqrtpd), S4(SQRTSS, sqrtss),
    S8(SQRTSD, sqrtsd), P(RCPPS, rcpps), S4(RCPSS, rcpss), P(RSQRTPS, rsqrtps),
    S4(RSQRTSS, rsqrtss), S8(CVTPS2PD, cvtps2pd), P(CVTPD2PS, cvtpd2ps), S4(CVTSS2SD, cvtss2sd),
    S8(CVTSD2SS, cvtsd2ss), P(CVTDQ2PS, cvtdq2ps), P(CVTPS2DQ, cvtps2dq), P(CVTTPS2DQ, cvttps2dq),
    S8(CVTDQ2PD, cvtdq2pd), P(CVTPD2DQ, cvtpd2dq), P(CVTTPD2DQ, cvttpd2dq),
};

static unsigned xmm_of(const struct hvp_x86_operand *o)
{
    if (o->kind != HVP_X86_OPK_REG || o->reg < HVP_X86_REG_XMM0 || o->reg >= HVP_X86_REG_XMM0 + 16)
        return 0xff;
    return o->reg - HVP_X86_REG_XMM0;
}

static bool is_gpr(const struct hvp_x86_operand *o)
{
    return o->kind == HVP_X86_OPK_REG && hvp_gpr_code(o->reg) != 0xff;
}

/* operand k is an XMM register or memory */
static bool xm(const struct hvp_x86_insn *xi, unsigned k)
{
    return xi->nops > k && (xmm_of(&xi->ops[k]) != 0xff || xi->ops[k].kind == HVP_X86_OPK_MEM);
}

static sse_stub shift_stub(unsigned op)
{
    switch (op) {
    case HVP_X86_OP_PSLLW: return s_psllw;
    case HVP_X86_OP_PSLLD: return s_pslld;
    case HVP_X86_OP_PSLLQ: return s_psllq;
    case HVP_X86_OP_PSRLW: return s_psrlw;
    case HVP_X86_OP_PSRLD: return s_psrld;
    case HVP_X86_OP_PSRLQ: return s_psrlq;
    case HVP_X86_OP_PSRAW: return s_psraw;
    case HVP_X86_OP_PSRAD: return s_psrad;
    default: return NULL;
    }
}

int hvp_cpu_build_sse(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY)
        return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    if (d->fl & HVP_DF_LOCK)
        return HVP_B_NONE;
    unsigned op = xi->op;
    d->r0 = xi->nops > 0 ? (uint8_t)xmm_of(&xi->ops[0]) : 0xff;
    d->r1 = xi->nops > 1 ? (uint8_t)xmm_of(&xi->ops[1]) : 0xff;
    bool x0 = d->r0 != 0xff, x1 = d->r1 != 0xff;
    bool m0 = d->fl & HVP_DF_M0, m1 = d->fl & HVP_DF_M1;

    for (size_t i = 0; i < sizeof sse_tab / sizeof sse_tab[0]; i++) {
        const struct sse_ent *e = &sse_tab[i];
        if (e->op != op)
            continue;
        if (!x0 || !xm(xi, 1) || xi->nops != 2)
            return HVP_B_NONE; /* MMX form */
        d->imm = (int64_t)(uintptr_t)e->fn;
        d->osz = e->msz;
        d->fl |= (uint16_t)((e->fp ? SSE_FP : 0) | (e->msz == 16 ? SSE_ALIGN : 0));
        d->fn = h_sse_op;
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
    case HVP_X86_OP_PSRAD:
        if (!x0)
            return HVP_B_NONE;
        if (xi->ops[1].kind == HVP_X86_OPK_IMM) {
            d->aux = (uint8_t)xi->imm;
            d->fl |= SSE_IMMCNT;
        } else if (!xm(xi, 1)) {
            return HVP_B_NONE;
        }
        d->fl |= SSE_ALIGN;
        d->osz = 16;
        d->imm = (int64_t)(uintptr_t)shift_stub(op);
        d->fn = h_sse_op;
        return HVP_B_OK;
    case HVP_X86_OP_PSLLDQ:
    case HVP_X86_OP_PSRLDQ:
        if (!x0)
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_PSLLDQ ? 5 : 6;
        d->imm = xi->imm;
        d->fn = h_shuf;
        return HVP_B_OK;
    case HVP_X86_OP_PSHUFD:
    case HVP_X86_OP_PSHUFLW:
    case HVP_X86_OP_PSHUFHW:
    case HVP_X86_OP_SHUFPS:
    case HVP_X86_OP_SHUFPD:
        if (!x0 || !xm(xi, 1))
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_PSHUFD    ? 0
                 : op == HVP_X86_OP_PSHUFLW ? 1
                 : op == HVP_X86_OP_PSHUFHW ? 2
                 : op == HVP_X86_OP_SHUFPS  ? 3
                                            : 4;
        d->imm = xi->imm;
        d->fl |= SSE_ALIGN;
        d->fn = h_shuf;
        return HVP_B_OK;
    case HVP_X86_OP_CMPPS:
    case HVP_X86_OP_CMPPD:
    case HVP_X86_OP_CMPSS:
    case HVP_X86_OP_CMPSD_SSE:
        if (!x0 || !xm(xi, 1) || (xi->imm & 0xff) > 7)
            return HVP_B_NONE;
        d->aux = (uint8_t)xi->imm;
        d->imm = (int64_t)(uintptr_t)(op == HVP_X86_OP_CMPPS   ? cmp_ps
                                      : op == HVP_X86_OP_CMPPD ? cmp_pd
                                      : op == HVP_X86_OP_CMPSS ? cmp_ss
                                                               : cmp_sd);
        d->osz = op == HVP_X86_OP_CMPSS ? 4 : op == HVP_X86_OP_CMPSD_SSE ? 8 : 16;
        if (d->osz == 16)
            d->fl |= SSE_ALIGN;
        d->fn = h_sse_cmp;
        return HVP_B_OK;
    case HVP_X86_OP_MOVAPS:
    case HVP_X86_OP_MOVAPD:
    case HVP_X86_OP_MOVDQA:
    case HVP_X86_OP_MOVUPS:
    case HVP_X86_OP_MOVUPD:
    case HVP_X86_OP_MOVDQU:
    case HVP_X86_OP_MOVNTPS:
    case HVP_X86_OP_MOVNTPD:
    case HVP_X86_OP_MOVNTDQ:
        if (!xm(xi, 0) || !xm(xi, 1))
            return HVP_B_NONE;
        if (op != HVP_X86_OP_MOVUPS && op != HVP_X86_OP_MOVUPD && op != HVP_X86_OP_MOVDQU)
            d->fl |= SSE_ALIGN;
        d->fn = h_mov128;
        return HVP_B_OK;
    case HVP_X86_OP_MOVSS:
    case HVP_X86_OP_MOVSD_SSE:
        if (!xm(xi, 0) || !xm(xi, 1))
            return HVP_B_NONE;
        d->osz = op == HVP_X86_OP_MOVSS ? 4 : 8;
        d->fn = h_movs;
        return HVP_B_OK;
    case HVP_X86_OP_MOVD:
    case HVP_X86_OP_MOVQ:
        if (xi->nops != 2)
            return HVP_B_NONE;
        if (x0 && (is_gpr(&xi->ops[1]) || (m1 && op == HVP_X86_OP_MOVD))) {
            d->aux = 0;
            d->osz = (uint8_t)xi->ops[1].size;
        } else if (x1 && (is_gpr(&xi->ops[0]) || (m0 && op == HVP_X86_OP_MOVD))) {
            d->aux = 1;
            d->osz = (uint8_t)xi->ops[0].size;
        } else if (x0 && (x1 || m1)) {
            d->aux = 2;
        } else if (x1 && m0) {
            d->aux = 3;
        } else {
            return HVP_B_NONE; /* MMX */
        }
        if (d->aux < 2 && d->osz != 4 && d->osz != 8)
            return HVP_B_NONE;
        d->fn = h_movdq;
        return HVP_B_OK;
    case HVP_X86_OP_MOVLPS:
    case HVP_X86_OP_MOVLPD:
    case HVP_X86_OP_MOVHPS:
    case HVP_X86_OP_MOVHPD:
        if (!(x0 && m1) && !(m0 && x1))
            return HVP_B_NONE;
        d->aux = (op == HVP_X86_OP_MOVHPS || op == HVP_X86_OP_MOVHPD) ? 1 : 0;
        d->fn = h_movhl;
        return HVP_B_OK;
    case HVP_X86_OP_MOVHLPS:
    case HVP_X86_OP_MOVLHPS:
        if (!x0 || !x1)
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_MOVHLPS ? 2 : 3;
        d->fn = h_movhl;
        return HVP_B_OK;
    case HVP_X86_OP_MOVMSKPS:
    case HVP_X86_OP_MOVMSKPD:
    case HVP_X86_OP_PMOVMSKB:
        if (!is_gpr(&xi->ops[0]) || !x1)
            return HVP_B_NONE;
        d->r0 = (uint8_t)hvp_gpr_code(xi->ops[0].reg);
        d->osz = (uint8_t)xi->ops[0].size;
        d->aux = op == HVP_X86_OP_MOVMSKPS ? 0 : op == HVP_X86_OP_MOVMSKPD ? 1 : 2;
        d->fn = h_movmsk;
        return HVP_B_OK;
    case HVP_X86_OP_PINSRW:
        if (!x0)
            return HVP_B_NONE;
        d->aux = 0;
        d->imm = xi->imm;
        d->fn = h_pinsrw;
        return HVP_B_OK;
    case HVP_X86_OP_PEXTRW:
        if (!x1 || !is_gpr(&xi->ops[0]))
            return HVP_B_NONE;
        d->aux = 1;
        d->imm = xi->imm;
        d->fn = h_pinsrw;
        return HVP_B_OK;
    case HVP_X86_OP_UCOMISS:
    case HVP_X86_OP_UCOMISD:
    case HVP_X86_OP_COMISS:
    case HVP_X86_OP_COMISD:
        if (!x0 || !xm(xi, 1))
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_UCOMISS   ? 0
                 : op == HVP_X86_OP_UCOMISD ? 1
                 : op == HVP_X86_OP_COMISS  ? 2
                                            : 3;
        d->osz = (d->aux & 1) ? 8 : 4;
        d->fn = h_comis;
        return HVP_B_OK;
    case HVP_X86_OP_CVTSI2SS:
    case HVP_X86_OP_CVTSI2SD:
        if (!x0 || xi->nops != 2 || (xi->ops[1].size != 4 && xi->ops[1].size != 8))
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_CVTSI2SD;
        d->osz = (uint8_t)xi->ops[1].size;
        d->fn = h_cvtint;
        return HVP_B_OK;
    case HVP_X86_OP_CVTSS2SI:
    case HVP_X86_OP_CVTSD2SI:
    case HVP_X86_OP_CVTTSS2SI:
    case HVP_X86_OP_CVTTSD2SI:
        if (!is_gpr(&xi->ops[0]) || !xm(xi, 1))
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_CVTSS2SI    ? 2
                 : op == HVP_X86_OP_CVTSD2SI  ? 3
                 : op == HVP_X86_OP_CVTTSS2SI ? 4
                                              : 5;
        d->osz = (uint8_t)xi->ops[0].size;
        d->fn = h_cvtint;
        return HVP_B_OK;
    case HVP_X86_OP_LDMXCSR:
    case HVP_X86_OP_STMXCSR:
        if (!(xi->flags & HVP_X86_F_MEM))
            return HVP_B_NONE;
        d->aux = op == HVP_X86_OP_STMXCSR;
        d->fn = h_mxcsr;
        return HVP_B_OK;
    default: return HVP_B_NONE;
    }
}
