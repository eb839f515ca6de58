/* Integer instructions against the host CPU: each form runs natively (inline
 * asm) and on the software CPU with the same random registers and flags;
 * registers and the defined flags must match. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "hvp/cpu.h"

#define CF    0x001
#define PF    0x004
#define AF    0x010
#define ZF    0x040
#define SF    0x080
#define OF    0x800
#define ARITH (CF | PF | AF | ZF | SF | OF)

struct form {
    const char *name;
    const uint8_t *code, *end;
    void (*host)(uint64_t r[5]);
    unsigned undef;             /* flags the SDM leaves undefined */
    void (*fix)(uint64_t r[5]); /* adjusts inputs (e.g. no #DE) */
};

/* r: rax rbx rcx rdx rflags. The CPU snippet ends by moving RCX to R8,
 * since SYSCALL overwrites RCX. */
#define FORM(id, text)                                                                             \
    extern const uint8_t f_##id[], f_##id##_end[];                                                 \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\nf_" #id ":\n push rsi\n popfq\n" text   \
            "\n pushfq\n pop rsi\n mov r8, rcx\n syscall\nf_" #id                                  \
            "_end:\n.att_syntax prefix\n.popsection\n");                                           \
    static void host_##id(uint64_t r[5])                                                           \
    {                                                                                              \
        register uint64_t a __asm__("rax") = r[0], b __asm__("rbx") = r[1],                        \
                            c __asm__("rcx") = r[2], d __asm__("rdx") = r[3],                      \
                            f __asm__("rsi") = r[4];                                               \
        __asm__ volatile(".intel_syntax noprefix\n sub rsp, 128\n push rsi\n popfq\n" text         \
                         "\n pushfq\n pop rsi\n add rsp, 128\n.att_syntax prefix\n"                \
                         : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(f)                             \
                         :                                                                         \
                         : "cc", "memory");                                                        \
        r[0] = a;                                                                                  \
        r[1] = b;                                                                                  \
        r[2] = c;                                                                                  \
        r[3] = d;                                                                                  \
        r[4] = f;                                                                                  \
    }

FORM(add64, "add rax, rbx")
FORM(add32, "add eax, ebx")
FORM(add16, "add ax, bx")
FORM(add8, "add al, bl")
FORM(add8h, "add ah, bl")
FORM(adc64, "adc rax, rbx")
FORM(adc8, "adc al, bl")
FORM(sbb32, "sbb eax, ebx")
FORM(sbb16, "sbb ax, bx")
FORM(sub64, "sub rax, rbx")
FORM(sub8, "sub al, bl")
FORM(cmp32, "cmp eax, ebx")
FORM(cmpi64, "cmp rax, -5")
FORM(and64, "and rax, rbx")
FORM(or32, "or eax, ebx")
FORM(xor16, "xor ax, bx")
FORM(test8, "test al, bl")
FORM(andi32, "and eax, 0x8000ff0f")
FORM(inc64, "inc rax")
FORM(inc8, "inc al")
FORM(dec32, "dec eax")
FORM(dec16, "dec ax")
FORM(neg64, "neg rax")
FORM(neg8, "neg bl")
FORM(not32, "not eax")
FORM(shl64, "shl rax, cl")
FORM(shl32, "shl eax, cl")
FORM(shl8, "shl al, cl")
FORM(shl1, "shl rax, 1")
FORM(shr64, "shr rax, cl")
FORM(shr16, "shr ax, cl")
FORM(shr1, "shr eax, 1")
FORM(sar64, "sar rax, cl")
FORM(sar8, "sar al, cl")
FORM(sar1, "sar ax, 1")
FORM(rol64, "rol rax, cl")
FORM(rol8, "rol al, cl")
FORM(ror32, "ror eax, cl")
FORM(ror1, "ror rax, 1")
FORM(rcl64, "rcl rax, cl")
FORM(rcl8, "rcl al, cl")
FORM(rcr32, "rcr eax, cl")
FORM(rcr16, "rcr ax, cl")
FORM(rcl1, "rcl eax, 1")
FORM(shld64, "shld rax, rbx, cl")
FORM(shrd32, "shrd eax, ebx, cl")
FORM(shld16, "shld ax, bx, 5")
FORM(mul64, "mul rbx")
FORM(mul8, "mul bl")
FORM(imul1_32, "imul ebx")
FORM(imul64, "imul rax, rbx")
FORM(imul16i, "imul ax, bx, -300")
FORM(div64, "div rbx")
FORM(div32, "div ebx")
FORM(idiv64, "idiv rbx")
FORM(idiv16, "idiv bx")
FORM(bt64, "bt rax, rbx")
FORM(bts32, "bts eax, ebx")
FORM(btr16, "btr ax, bx")
FORM(btc64i, "btc rax, 45")
FORM(bsf64, "bsf rax, rbx")
FORM(bsr32, "bsr eax, ebx")
FORM(tzcnt64, "tzcnt rax, rbx")
FORM(popcnt32, "popcnt eax, ebx")
FORM(cbw, "cbw")
FORM(cwde, "cwde")
FORM(cdqe, "cdqe")
FORM(cwd, "cwd")
FORM(cdq, "cdq")
FORM(cqo, "cqo")
FORM(setcc, "setb al\n setl bl\n setbe cl\n setp dl")
FORM(setcc2, "cmp rax, rbx\n setg al\n seta bl\n sets cl\n seto dl")
FORM(cmov, "cmp eax, ebx\n cmovl eax, ebx\n cmovae ecx, edx")
FORM(lahf, "lahf")
FORM(sahf, "sahf")
FORM(cmc, "cmc")
FORM(xadd32, "xadd eax, ebx")
FORM(cmpxchg64, "cmpxchg rbx, rdx")
FORM(cmpxchg8, "cmpxchg bl, dl")
FORM(bswap64, "bswap rax")
FORM(xchg16, "xchg ax, bx")
FORM(movzx, "movzx eax, bl\n movsx rcx, bx\n movsxd rdx, ebx")
FORM(andn, "andn rax, rbx, rcx")
FORM(bextr, "bextr rax, rbx, rcx")
FORM(blsi, "blsi rax, rbx")
FORM(blsmsk32, "blsmsk eax, ebx")
FORM(blsr, "blsr rax, rbx")
FORM(bzhi, "bzhi rax, rbx, rcx")
FORM(mulx, "mulx rax, rcx, rbx")
FORM(pdep, "pdep rax, rbx, rcx")
FORM(pext32, "pext eax, ebx, ecx")
FORM(rorx, "rorx rax, rbx, 13")
FORM(sarx, "sarx rax, rbx, rcx")
FORM(shlx32, "shlx eax, ebx, ecx")
FORM(shrx, "shrx rax, rbx, rcx")
FORM(adcx, "adcx rax, rbx")
FORM(adox32, "adox eax, ebx")

static void fix_div(uint64_t r[5])
{
    if (r[1] == 0) r[1] = 7;
    r[3] %= r[1]; /* quotient fits */
}
static void fix_div32(uint64_t r[5])
{
    r[1] = (uint32_t)r[1] ? r[1] : 7;
    r[3] = (uint32_t)r[3] % (uint32_t)r[1];
}
static void fix_idiv(uint64_t r[5])
{
    if (r[1] == 0 || r[1] == ~0ull) r[1] = 3;
    r[3] = (int64_t)r[0] < 0 ? ~0ull : 0; /* sign-extended dividend fits */
}
static void fix_idiv16(uint64_t r[5])
{
    if ((uint16_t)r[1] == 0 || (uint16_t)r[1] == 0xffff) r[1] = 3;
    r[3] = (int16_t)r[0] < 0 ? 0xffff : 0;
}
static void fix_cl(uint64_t r[5])
{
    r[2] &= 0xff; /* small counts, some above the width */
    if (r[2] > 70) r[2] %= 70;
}

#define F(id, undef)                                                                               \
    {                                                                                              \
#id, f_##id, f_##id##_end, host_##id, undef, NULL                                          \
    }
#define FX(id, undef, fix)                                                                         \
    {                                                                                              \
#id, f_##id, f_##id##_end, host_##id, undef, fix                                           \
    }
static const struct form forms[] = {
    F(add64, 0),
    F(add32, 0),
    F(add16, 0),
    F(add8, 0),
    F(add8h, 0),
    F(adc64, 0),
    F(adc8, 0),
    F(sbb32, 0),
    F(sbb16, 0),
    F(sub64, 0),
    F(sub8, 0),
    F(cmp32, 0),
    F(cmpi64, 0),
    F(and64, AF),
    F(or32, AF),
    F(xor16, AF),
    F(test8, AF),
    F(andi32, AF),
    F(inc64, 0),
    F(inc8, 0),
    F(dec32, 0),
    F(dec16, 0),
    F(neg64, 0),
    F(neg8, 0),
    F(not32, 0),
    /* count forms: OF is defined for count 1 only, AF never; 8/16-bit CF
     * beyond the width is undefined */
    FX(shl64, OF | AF, fix_cl),
    FX(shl32, OF | AF, fix_cl),
    FX(shl8, OF | AF | CF, fix_cl),
    F(shl1, AF),
    FX(shr64, OF | AF, fix_cl),
    FX(shr16, OF | AF | CF, fix_cl),
    F(shr1, AF),
    FX(sar64, OF | AF, fix_cl),
    FX(sar8, OF | AF | CF, fix_cl),
    F(sar1, AF),
    FX(rol64, OF, fix_cl),
    FX(rol8, OF, fix_cl),
    FX(ror32, OF, fix_cl),
    F(ror1, 0),
    FX(rcl64, OF, fix_cl),
    FX(rcl8, OF, fix_cl),
    FX(rcr32, OF, fix_cl),
    FX(rcr16, OF, fix_cl),
    F(rcl1, 0),
    FX(shld64, OF | AF, fix_cl),
    FX(shrd32, OF | AF, fix_cl),
    F(shld16, OF | AF),
    F(mul64, SF | ZF | AF | PF),
    F(mul8, SF | ZF | AF | PF),
    F(imul1_32, SF | ZF | AF | PF),
    F(imul64, SF | ZF | AF | PF),
    F(imul16i, SF | ZF | AF | PF),
    FX(div64, ARITH, fix_div),
    FX(div32, ARITH, fix_div32),
    FX(idiv64, ARITH, fix_idiv),
    FX(idiv16, ARITH, fix_idiv16),
    F(bt64, OF | SF | AF | PF),
    F(bts32, OF | SF | AF | PF),
    F(btr16, OF | SF | AF | PF),
    F(btc64i, OF | SF | AF | PF),
    F(bsf64, CF | OF | SF | AF | PF),
    F(bsr32, CF | OF | SF | AF | PF),
    F(tzcnt64, OF | SF | AF | PF),
    F(popcnt32, 0),
    F(cbw, 0),
    F(cwde, 0),
    F(cdqe, 0),
    F(cwd, 0),
    F(cdq, 0),
    F(cqo, 0),
    F(setcc, 0),
    F(setcc2, 0),
    F(cmov, 0),
    F(lahf, 0),
    F(sahf, 0),
    F(cmc, 0),
    F(xadd32, 0),
    F(cmpxchg64, 0),
    F(cmpxchg8, 0),
    F(bswap64, 0),
    F(xchg16, 0),
    F(movzx, 0),
    F(andn, AF | PF),
    F(bextr, AF | SF | PF),
    F(blsi, AF | PF),
    F(blsmsk32, AF | PF),
    F(blsr, AF | PF),
    F(bzhi, AF | PF),
    F(mulx, 0),
    F(pdep, 0),
    F(pext32, 0),
    F(rorx, 0),
    F(sarx, 0),
    F(shlx32, 0),
    F(shrx, 0),
    F(adcx, 0),
    F(adox32, 0),
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t interesting(uint64_t *s)
{
    static const uint64_t v[] = {0,
                                 1,
                                 2,
                                 0x7f,
                                 0x80,
                                 0xff,
                                 0x7fff,
                                 0x8000,
                                 0xffff,
                                 0x7fffffff,
                                 0x80000000,
                                 0xffffffff,
                                 0x7fffffffffffffff,
                                 0x8000000000000000,
                                 ~0ull,
                                 0x100,
                                 0xf,
                                 0x10};
    uint64_t x = rnd(s);
    switch (x % 4) {
    case 0: return v[(x >> 8) % (sizeof v / sizeof v[0])];
    case 1: return rnd(s) & 0xff;
    default: return rnd(s);
    }
}

Test(host, integer_forms_match_host)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    struct hvp_cpu *cpu;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    uint8_t *code =
        mmap(NULL, 0x1000 * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *stack = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t nforms = sizeof forms / sizeof forms[0];
    cr_assert_leq(nforms, 128);
    /* two forms per page */
    for (size_t i = 0; i < nforms; i++)
        memcpy(code + i * 0x200, forms[i].code, (size_t)(forms[i].end - forms[i].code));
    cr_assert_eq(hvp_cpu_map(cpu, 0x400000, 0x1000 * 64, code, 5), 0);
    cr_assert_eq(hvp_cpu_map(cpu, 0x800000, 0x1000, stack, 3), 0);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    unsigned fails = 0;
    for (size_t i = 0; i < nforms; i++) {
        const struct form *fm = &forms[i];
        for (int t = 0; t < 3000 && fails < 20; t++) {
            uint64_t in[5] = {interesting(&seed), interesting(&seed), interesting(&seed),
                              interesting(&seed), (rnd(&seed) & ARITH) | 0x202};
            if (fm->fix) fm->fix(in);
            uint64_t h[5];
            memcpy(h, in, sizeof h);
            fm->host(h);
            struct hvp_cpu_state st;
            hvp_cpu_get_state(cpu, &st);
            memset(st.gpr, 0, sizeof st.gpr);
            st.gpr[0] = in[0];
            st.gpr[3] = in[1];
            st.gpr[1] = in[2];
            st.gpr[2] = in[3];
            st.gpr[6] = in[4];
            st.gpr[4] = 0x801000;
            st.rip = 0x400000 + i * 0x200;
            hvp_cpu_set_state(cpu, &st);
            struct hvp_cpu_exit ex;
            hvp_cpu_run(cpu, 100, &ex);
            hvp_cpu_get_state(cpu, &st);
            cr_assert_eq(ex.reason, HVP_CPU_EXIT_SYSCALL, "%s: exit %u vector %u", fm->name,
                         ex.reason, ex.u.exception.vector);
            unsigned mask = ARITH & ~fm->undef;
            uint64_t got[5] = {st.gpr[0], st.gpr[3], st.gpr[8], st.gpr[2], st.gpr[6]};
            bool bad = false;
            for (int k = 0; k < 4; k++)
                bad |= got[k] != h[k];
            bad |= ((got[4] ^ h[4]) & mask) != 0;
            if (bad) {
                fails++;
                cr_log_error("%s: in rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx fl=%#lx\n"
                             "  host rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx fl=%#lx\n"
                             "  cpu  rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx fl=%#lx",
                             fm->name, in[0], in[1], in[2], in[3], in[4], h[0], h[1], h[2], h[3],
                             h[4] & mask, got[0], got[1], got[2], got[3], got[4] & mask);
            }
        }
    }
    cr_assert_eq(fails, 0, "%u mismatches", fails);
    hvp_cpu_destroy(cpu);
    munmap(code, 0x1000 * 64);
    munmap(stack, 0x1000);
}

/* ---- SSE/SSE2 against the host ---- */

struct xform {
    const char *name;
    const uint8_t *code, *end;
    void (*host)(uint64_t r[5], uint8_t x[40]);
};

/* x: xmm0 (16) xmm1 (16) mxcsr (4) scratch (4) */
#define XFORM(id, text)                                                                            \
    extern const uint8_t x_##id[], x_##id##_end[];                                                 \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\nx_" #id ":\n push rsi\n popfq\n" text   \
            "\n pushfq\n pop rsi\n mov r8, rcx\n syscall\nx_" #id                                  \
            "_end:\n.att_syntax prefix\n.popsection\n");                                           \
    static void xhost_##id(uint64_t r[5], uint8_t x[40])                                           \
    {                                                                                              \
        register uint64_t a __asm__("rax") = r[0], b __asm__("rbx") = r[1],                        \
                            c __asm__("rcx") = r[2], d __asm__("rdx") = r[3],                      \
                            f __asm__("rsi") = r[4];                                               \
        register uint8_t *p __asm__("rdi") = x;                                                    \
        __asm__ volatile(".intel_syntax noprefix\n sub rsp, 128\n stmxcsr [rdi+36]\n"              \
                         " movdqu xmm0, [rdi]\n movdqu xmm1, [rdi+16]\n ldmxcsr [rdi+32]\n"        \
                         " push rsi\n popfq\n" text "\n pushfq\n pop rsi\n"                        \
                         " movdqu [rdi], xmm0\n movdqu [rdi+16], xmm1\n stmxcsr [rdi+32]\n"        \
                         " ldmxcsr [rdi+36]\n add rsp, 128\n.att_syntax prefix\n"                  \
                         : "+r"(a), "+r"(b), "+r"(c), "+r"(d), "+r"(f)                             \
                         : "r"(p)                                                                  \
                         : "cc", "memory", "xmm0", "xmm1");                                        \
        r[0] = a;                                                                                  \
        r[1] = b;                                                                                  \
        r[2] = c;                                                                                  \
        r[3] = d;                                                                                  \
        r[4] = f;                                                                                  \
    }

XFORM(paddb, "paddb xmm0, xmm1")
XFORM(paddq, "paddq xmm0, xmm1")
XFORM(psubusw, "psubusw xmm0, xmm1")
XFORM(pcmpeqb, "pcmpeqb xmm0, xmm1\n pmovmskb eax, xmm0")
XFORM(pcmpgtd, "pcmpgtd xmm0, xmm1")
XFORM(pminub, "pminub xmm0, xmm1")
XFORM(pmulhw, "pmulhw xmm0, xmm1")
XFORM(pmuludq, "pmuludq xmm0, xmm1")
XFORM(psadbw, "psadbw xmm0, xmm1")
XFORM(punpcklbw, "punpcklbw xmm0, xmm1")
XFORM(punpckhqdq, "punpckhqdq xmm0, xmm1")
XFORM(packsswb, "packsswb xmm0, xmm1")
XFORM(packuswb, "packuswb xmm0, xmm1")
XFORM(psllw, "psllw xmm0, xmm1")
XFORM(psrad_i, "psrad xmm0, 5")
XFORM(psrlq_i, "psrlq xmm1, 33")
XFORM(pslldq, "pslldq xmm0, 3\n psrldq xmm1, 7")
XFORM(pshufd, "pshufd xmm0, xmm1, 0x1b")
XFORM(pshuflw, "pshuflw xmm0, xmm1, 0xb1\n pshufhw xmm1, xmm0, 0x4e")
XFORM(shufps, "shufps xmm0, xmm1, 0x93")
XFORM(shufpd, "shufpd xmm0, xmm1, 2")
XFORM(pand, "pand xmm0, xmm1\n pandn xmm1, xmm0")
XFORM(xorps, "xorps xmm0, xmm1\n orpd xmm1, xmm0")
XFORM(unpcklps, "unpcklps xmm0, xmm1\n unpckhpd xmm1, xmm0")
XFORM(addps, "addps xmm0, xmm1")
XFORM(addsd, "addsd xmm0, xmm1")
XFORM(subss, "subss xmm0, xmm1")
XFORM(mulpd, "mulpd xmm0, xmm1")
XFORM(divsd, "divsd xmm0, xmm1")
XFORM(divps, "divps xmm0, xmm1")
XFORM(minsd, "minsd xmm0, xmm1")
XFORM(maxps, "maxps xmm0, xmm1")
XFORM(sqrtsd, "sqrtsd xmm0, xmm1")
XFORM(sqrtps, "sqrtps xmm0, xmm1")
XFORM(cmpltpd, "cmpltpd xmm0, xmm1")
XFORM(cmpunordss, "cmpunordss xmm0, xmm1")
XFORM(cmpnlesd, "cmpnlesd xmm0, xmm1")
XFORM(ucomisd, "ucomisd xmm0, xmm1")
XFORM(comiss, "comiss xmm0, xmm1")
XFORM(cvtsi2sd, "cvtsi2sd xmm0, rax\n cvtsi2ss xmm1, ebx")
XFORM(cvttsd2si, "cvttsd2si rax, xmm0\n cvtss2si ebx, xmm1")
XFORM(cvtsd2si, "cvtsd2si eax, xmm1\n cvttss2si rbx, xmm0")
XFORM(cvtps2pd, "cvtps2pd xmm0, xmm1")
XFORM(cvtpd2ps, "cvtpd2ps xmm0, xmm1")
XFORM(cvtsd2ss, "cvtsd2ss xmm0, xmm1\n cvtss2sd xmm1, xmm0")
XFORM(cvtdq2ps, "cvtdq2ps xmm0, xmm1\n cvttps2dq xmm1, xmm1")
XFORM(cvtpd2dq, "cvtpd2dq xmm0, xmm1\n cvtdq2pd xmm1, xmm0")
XFORM(movd, "movd eax, xmm0\n movq rbx, xmm1\n movd xmm0, ecx\n movq xmm1, rdx")
XFORM(movq, "movq xmm0, xmm1")
XFORM(movss, "movss xmm0, xmm1\n movsd xmm1, xmm0")
XFORM(movhlps, "movhlps xmm0, xmm1\n movlhps xmm1, xmm0")
XFORM(movmsk, "movmskps eax, xmm0\n movmskpd ebx, xmm1")
XFORM(pinsrw, "pinsrw xmm0, eax, 5\n pextrw ebx, xmm1, 3")
XFORM(movaps, "movaps xmm0, xmm1\n movdqa xmm1, xmm0")

#define XF(id)                                                                                     \
    {                                                                                              \
#id, x_##id, x_##id##_end, xhost_##id                                                      \
    }
static const struct xform xforms[] = {
    XF(paddb),    XF(paddq),    XF(psubusw),  XF(pcmpeqb),   XF(pcmpgtd),    XF(pminub),
    XF(pmulhw),   XF(pmuludq),  XF(psadbw),   XF(punpcklbw), XF(punpckhqdq), XF(packsswb),
    XF(packuswb), XF(psllw),    XF(psrad_i),  XF(psrlq_i),   XF(pslldq),     XF(pshufd),
    XF(pshuflw),  XF(shufps),   XF(shufpd),   XF(pand),      XF(xorps),      XF(unpcklps),
    XF(addps),    XF(addsd),    XF(subss),    XF(mulpd),     XF(divsd),      XF(divps),
    XF(minsd),    XF(maxps),    XF(sqrtsd),   XF(sqrtps),    XF(cmpltpd),    XF(cmpunordss),
    XF(cmpnlesd), XF(ucomisd),  XF(comiss),   XF(cvtsi2sd),  XF(cvttsd2si),  XF(cvtsd2si),
    XF(cvtps2pd), XF(cvtpd2ps), XF(cvtsd2ss), XF(cvtdq2ps),  XF(cvtpd2dq),   XF(movd),
    XF(movq),     XF(movss),    XF(movhlps),  XF(movmsk),    XF(pinsrw),     XF(movaps),
};

static void rnd_lane(uint64_t *s, uint8_t *p)
{
    static const double dv[] = {0.0, -0.0, 1.0, -1.5, 3.0, 1e300, -1e-310, 2.5e-320, 1e18, -7e9};
    static const float fv[] = {0.0f, -0.0f, 1.0f, -2.5f, 3e38f, 1e-40f, 0.1f, 16777217.0f};
    uint64_t x = rnd(s);
    switch (x % 6) {
    case 0: memcpy(p, &dv[(x >> 8) % 10], 8); break;
    case 1: {
        float f[2] = {fv[(x >> 8) % 8], fv[(x >> 16) % 8]};
        memcpy(p, f, 8);
        break;
    }
    case 2: { /* NaNs and infinities */
        uint64_t v = (x >> 8) & 1 ? 0x7ff8000000000001ull : 0xfff0000000000000ull;
        if ((x >> 9) & 1) v = 0x7fc00000ff800000ull;
        memcpy(p, &v, 8);
        break;
    }
    default: {
        uint64_t v = rnd(s);
        memcpy(p, &v, 8);
        break;
    }
    }
}

Test(host, sse_forms_match_host)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    struct hvp_cpu *cpu;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    uint8_t *code =
        mmap(NULL, 0x1000 * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *stack = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t n = sizeof xforms / sizeof xforms[0];
    for (size_t i = 0; i < n; i++)
        memcpy(code + i * 0x200, xforms[i].code, (size_t)(xforms[i].end - xforms[i].code));
    cr_assert_eq(hvp_cpu_map(cpu, 0x400000, 0x1000 * 64, code, 5), 0);
    cr_assert_eq(hvp_cpu_map(cpu, 0x800000, 0x1000, stack, 3), 0);
    uint64_t seed = 0x5eed5eed12345ull;
    unsigned fails = 0;
    for (size_t i = 0; i < n; i++) {
        const struct xform *fm = &xforms[i];
        for (int t = 0; t < 2000 && fails < 20; t++) {
            uint64_t in[5] = {interesting(&seed), interesting(&seed), interesting(&seed),
                              interesting(&seed), (rnd(&seed) & ARITH) | 0x202};
            uint8_t x[40];
            for (int l = 0; l < 4; l++)
                rnd_lane(&seed, x + l * 8);
            uint32_t mx =
                0x1f80 | (uint32_t)(rnd(&seed) & 0x6000) | ((rnd(&seed) & 7) == 0 ? 0x8040 : 0);
            memcpy(x + 32, &mx, 4);
            uint64_t h[5];
            uint8_t hx[40];
            memcpy(h, in, sizeof h);
            memcpy(hx, x, sizeof hx);
            fm->host(h, hx);
            struct hvp_cpu_state st;
            hvp_cpu_get_state(cpu, &st);
            memset(st.gpr, 0, sizeof st.gpr);
            st.gpr[0] = in[0];
            st.gpr[3] = in[1];
            st.gpr[1] = in[2];
            st.gpr[2] = in[3];
            st.gpr[6] = in[4];
            st.gpr[4] = 0x801000;
            memcpy(st.fpu.xmm[0], x, 16);
            memcpy(st.fpu.xmm[1], x + 16, 16);
            st.fpu.mxcsr = mx;
            st.rip = 0x400000 + i * 0x200;
            hvp_cpu_set_state(cpu, &st);
            struct hvp_cpu_exit ex;
            hvp_cpu_run(cpu, 100, &ex);
            hvp_cpu_get_state(cpu, &st);
            cr_assert_eq(ex.reason, HVP_CPU_EXIT_SYSCALL, "%s: exit %u vector %u", fm->name,
                         ex.reason, ex.u.exception.vector);
            uint64_t got[5] = {st.gpr[0], st.gpr[3], st.gpr[8], st.gpr[2], st.gpr[6]};
            uint32_t hmx;
            memcpy(&hmx, hx + 32, 4);
            bool bad = memcmp(st.fpu.xmm[0], hx, 16) || memcmp(st.fpu.xmm[1], hx + 16, 16) ||
                       st.fpu.mxcsr != hmx || ((got[4] ^ h[4]) & ARITH);
            for (int k = 0; k < 4; k++)
                bad |= got[k] != h[k];
            if (bad) {
                fails++;
                uint64_t hq[4], gq[4], iq[4];
                memcpy(hq, hx, 32);
                memcpy(iq, x, 32);
                memcpy(gq, st.fpu.xmm[0], 16);
                memcpy(gq + 2, st.fpu.xmm[1], 16);
                cr_log_error(
                    "%s: in xmm0=%016lx:%016lx xmm1=%016lx:%016lx mxcsr=%#x rax=%#lx rbx=%#lx\n"
                    "  host xmm0=%016lx:%016lx xmm1=%016lx:%016lx mxcsr=%#x rax=%#lx rbx=%#lx "
                    "fl=%#lx\n"
                    "  cpu  xmm0=%016lx:%016lx xmm1=%016lx:%016lx mxcsr=%#x rax=%#lx rbx=%#lx "
                    "fl=%#lx",
                    fm->name, iq[1], iq[0], iq[3], iq[2], mx, in[0], in[1], hq[1], hq[0], hq[3],
                    hq[2], hmx, h[0], h[1], h[4] & ARITH, gq[1], gq[0], gq[3], gq[2], st.fpu.mxcsr,
                    got[0], got[1], got[4] & ARITH);
            }
        }
    }
    cr_assert_eq(fails, 0, "%u mismatches", fails);
    hvp_cpu_destroy(cpu);
    munmap(code, 0x1000 * 64);
    munmap(stack, 0x1000);
}
