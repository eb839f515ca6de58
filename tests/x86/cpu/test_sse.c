/* SSE/MMX against the host CPU: every form runs natively (its bytes copied
 * between a prologue and an epilogue into an executable buffer) and on the
 * software CPU with the same random XMM/MMX registers, GPRs, flags, MXCSR
 * (rounding mode, DAZ, FTZ, sticky flags) and memory; results, MXCSR,
 * EFLAGS and memory must match bit for bit. Then focused tests: alignment
 * #GP, MXCSR reserved bits, #XM, the MMX/x87 aliasing. */
#include <criterion/criterion.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "hvp/cpu.h"

#define CF    0x001
#define PF    0x004
#define AF    0x010
#define ZF    0x040
#define SF    0x080
#define OF    0x800
#define ARITH (CF | PF | AF | ZF | SF | OF)

#define CODE 0x100000ull
#define DATA 0x200000ull
#define MOFF 0x100 /* the memory operand [rsi] lies at DATA + MOFF */
#define MLEN 64

/* The register file both sides run on. Offsets are used by the prologue. */
struct ctx {
    uint8_t x[4][16]; /* 0: xmm0..3 */
    uint64_t mm[4];   /* 64: mm0..3 */
    uint64_t g[4];    /* 96: rax rbx rcx rdx */
    uint64_t fl;      /* 128 */
    uint32_t mxcsr;   /* 136 */
    uint32_t host_mx; /* 140 */
    uint64_t mem;     /* 144: [rsi] = [rdi] */
    unsigned skew;    /* [rsi] lies skew bytes past DATA + MOFF (not in the prologue) */
};

#define ASM_RO(name, text)                                                                         \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.att_syntax prefix\n.popsection\n")

ASM_RO(pro, "push rbx\n push rbp\n push r12\n push r13\n push r14\n push r15\n mov r15, rdi\n"
            "stmxcsr [r15+140]\n ldmxcsr [r15+136]\n"
            "movdqu xmm0, [r15]\n movdqu xmm1, [r15+16]\n movdqu xmm2, [r15+32]\n"
            "movdqu xmm3, [r15+48]\n movq mm0, [r15+64]\n movq mm1, [r15+72]\n"
            "movq mm2, [r15+80]\n movq mm3, [r15+88]\n mov rax, [r15+96]\n mov rbx, [r15+104]\n"
            "mov rcx, [r15+112]\n mov rdx, [r15+120]\n mov rsi, [r15+144]\n mov rdi, rsi\n"
            "push qword ptr [r15+128]\n popfq\n");
ASM_RO(epi, "pushfq\n pop qword ptr [r15+128]\n stmxcsr [r15+136]\n"
            "movdqu [r15], xmm0\n movdqu [r15+16], xmm1\n movdqu [r15+32], xmm2\n"
            "movdqu [r15+48], xmm3\n movq [r15+64], mm0\n movq [r15+72], mm1\n"
            "movq [r15+80], mm2\n movq [r15+88], mm3\n mov [r15+96], rax\n mov [r15+104], rbx\n"
            "mov [r15+112], rcx\n mov [r15+120], rdx\n emms\n ldmxcsr [r15+140]\n cld\n"
            "pop r15\n pop r14\n pop r13\n pop r12\n pop rbp\n pop rbx\n ret\n");

/* input kinds */
enum { K_INT, K_PS, K_PD, K_STR, K_STRW, K_CVT };

struct form {
    const char *name;
    const uint8_t *code, *end;
    unsigned kind;
};

#define FORMS(X)                                                                                   \
    /* moves */                                                                                    \
    X(movaps_rr, "movaps xmm0, xmm1", K_INT)                                                       \
    X(movaps_rm, "movaps xmm0, [rsi]", K_INT)                                                      \
    X(movaps_mr, "movaps [rsi+16], xmm2", K_INT)                                                   \
    X(movups_rm, "movups xmm1, [rsi+3]", K_INT)                                                    \
    X(movups_mr, "movups [rsi+5], xmm1", K_INT)                                                    \
    X(movdqa_rm, "movdqa xmm3, [rsi+32]", K_INT)                                                   \
    X(movdqu_rm, "movdqu xmm3, [rsi+9]", K_INT)                                                    \
    X(movdqu_mr, "movdqu [rsi+7], xmm0", K_INT)                                                    \
    X(movapd_rr, "movapd xmm2, xmm3", K_INT)                                                       \
    X(movupd_rm, "movupd xmm2, [rsi+1]", K_INT)                                                    \
    X(lddqu, "lddqu xmm2, [rsi+1]", K_INT)                                                         \
    X(movntdq, "movntdq [rsi+16], xmm1", K_INT)                                                    \
    X(movntps, "movntps [rsi], xmm3", K_INT)                                                       \
    X(movntpd, "movntpd [rsi], xmm3", K_INT)                                                       \
    X(movnti32, "movnti [rsi+3], eax", K_INT)                                                      \
    X(movnti64, "movnti [rsi+3], rbx", K_INT)                                                      \
    X(movntdqa, "movntdqa xmm1, [rsi+16]", K_INT)                                                  \
    X(movss_rr, "movss xmm0, xmm1", K_INT)                                                         \
    X(movss_rm, "movss xmm0, [rsi+2]", K_INT)                                                      \
    X(movss_mr, "movss [rsi+2], xmm1", K_INT)                                                      \
    X(movsd_rr, "movsd xmm0, xmm1", K_INT)                                                         \
    X(movsd_rm, "movsd xmm0, [rsi+2]", K_INT)                                                      \
    X(movsd_mr, "movsd [rsi+2], xmm1", K_INT)                                                      \
    X(movd_xr, "movd xmm0, eax", K_INT)                                                            \
    X(movq_xr, "movq xmm0, rbx", K_INT)                                                            \
    X(movd_rx, "movd ecx, xmm1", K_INT)                                                            \
    X(movq_rx, "movq rdx, xmm1", K_INT)                                                            \
    X(movd_xm, "movd xmm2, [rsi+1]", K_INT)                                                        \
    X(movd_mx, "movd [rsi+1], xmm2", K_INT)                                                        \
    X(movq_xm, "movq xmm2, [rsi+1]", K_INT)                                                        \
    X(movq_mx, "movq [rsi+1], xmm2", K_INT)                                                        \
    X(movq_xx, "movq xmm2, xmm3", K_INT)                                                           \
    X(movlps_rm, "movlps xmm1, [rsi+8]", K_INT)                                                    \
    X(movlps_mr, "movlps [rsi+8], xmm1", K_INT)                                                    \
    X(movhps_rm, "movhps xmm1, [rsi+8]", K_INT)                                                    \
    X(movhps_mr, "movhps [rsi+8], xmm1", K_INT)                                                    \
    X(movlpd_rm, "movlpd xmm1, [rsi+8]", K_INT)                                                    \
    X(movhpd_mr, "movhpd [rsi+8], xmm1", K_INT)                                                    \
    X(movhlps, "movhlps xmm1, xmm2", K_INT)                                                        \
    X(movlhps, "movlhps xmm1, xmm2", K_INT)                                                        \
    X(movsldup, "movsldup xmm1, xmm2", K_INT)                                                      \
    X(movshdup, "movshdup xmm1, [rsi]", K_INT)                                                     \
    X(movddup, "movddup xmm1, [rsi+8]", K_INT)                                                     \
    X(movmskps, "movmskps eax, xmm1", K_INT)                                                       \
    X(movmskpd, "movmskpd rax, xmm1", K_INT)                                                       \
    X(pmovmskb, "pmovmskb ecx, xmm2", K_INT)                                                       \
    X(maskmovdqu, "maskmovdqu xmm1, xmm2", K_INT)                                                  \
    X(ldst_mxcsr, "stmxcsr [rsi+4]", K_INT)                                                        \
    /* packed integer */                                                                           \
    X(paddb, "paddb xmm0, xmm1", K_INT)                                                            \
    X(paddw, "paddw xmm0, [rsi]", K_INT)                                                           \
    X(paddd, "paddd xmm0, xmm1", K_INT)                                                            \
    X(paddq, "paddq xmm0, xmm1", K_INT)                                                            \
    X(psubb, "psubb xmm0, xmm1", K_INT)                                                            \
    X(psubw, "psubw xmm0, xmm1", K_INT)                                                            \
    X(psubd, "psubd xmm0, xmm1", K_INT)                                                            \
    X(psubq, "psubq xmm0, xmm1", K_INT)                                                            \
    X(paddsb, "paddsb xmm0, xmm1", K_INT)                                                          \
    X(paddsw, "paddsw xmm0, xmm1", K_INT)                                                          \
    X(psubsb, "psubsb xmm0, xmm1", K_INT)                                                          \
    X(psubsw, "psubsw xmm0, xmm1", K_INT)                                                          \
    X(paddusb, "paddusb xmm0, xmm1", K_INT)                                                        \
    X(paddusw, "paddusw xmm0, xmm1", K_INT)                                                        \
    X(psubusb, "psubusb xmm0, xmm1", K_INT)                                                        \
    X(psubusw, "psubusw xmm0, xmm1", K_INT)                                                        \
    X(pmullw, "pmullw xmm0, xmm1", K_INT)                                                          \
    X(pmulhw, "pmulhw xmm0, xmm1", K_INT)                                                          \
    X(pmulhuw, "pmulhuw xmm0, xmm1", K_INT)                                                        \
    X(pmulld, "pmulld xmm0, xmm1", K_INT)                                                          \
    X(pmulhrsw, "pmulhrsw xmm0, xmm1", K_INT)                                                      \
    X(pmuludq, "pmuludq xmm0, xmm1", K_INT)                                                        \
    X(pmuldq, "pmuldq xmm0, xmm1", K_INT)                                                          \
    X(pmaddwd, "pmaddwd xmm0, xmm1", K_INT)                                                        \
    X(pmaddubsw, "pmaddubsw xmm0, xmm1", K_INT)                                                    \
    X(psadbw, "psadbw xmm0, xmm1", K_INT)                                                          \
    X(pavgb, "pavgb xmm0, xmm1", K_INT)                                                            \
    X(pavgw, "pavgw xmm0, xmm1", K_INT)                                                            \
    X(pminub, "pminub xmm0, xmm1", K_INT)                                                          \
    X(pmaxub, "pmaxub xmm0, [rsi]", K_INT)                                                         \
    X(pminsw, "pminsw xmm0, xmm1", K_INT)                                                          \
    X(pmaxsw, "pmaxsw xmm0, xmm1", K_INT)                                                          \
    X(pminsb, "pminsb xmm0, xmm1", K_INT)                                                          \
    X(pmaxsb, "pmaxsb xmm0, xmm1", K_INT)                                                          \
    X(pminuw, "pminuw xmm0, xmm1", K_INT)                                                          \
    X(pmaxuw, "pmaxuw xmm0, xmm1", K_INT)                                                          \
    X(pminsd, "pminsd xmm0, xmm1", K_INT)                                                          \
    X(pmaxsd, "pmaxsd xmm0, xmm1", K_INT)                                                          \
    X(pminud, "pminud xmm0, xmm1", K_INT)                                                          \
    X(pmaxud, "pmaxud xmm0, xmm1", K_INT)                                                          \
    X(pand, "pand xmm0, xmm1", K_INT)                                                              \
    X(pandn, "pandn xmm0, xmm1", K_INT)                                                            \
    X(por, "por xmm0, xmm1", K_INT)                                                                \
    X(pxor, "pxor xmm0, [rsi+16]", K_INT)                                                          \
    X(andps, "andps xmm0, xmm1", K_INT)                                                            \
    X(andnpd, "andnpd xmm0, xmm1", K_INT)                                                          \
    X(orps, "orps xmm0, xmm1", K_INT)                                                              \
    X(xorpd, "xorpd xmm0, xmm1", K_INT)                                                            \
    X(andnps, "andnps xmm0, xmm1", K_INT)                                                          \
    X(andpd, "andpd xmm0, [rsi]", K_INT)                                                           \
    X(orpd, "orpd xmm0, xmm1", K_INT)                                                              \
    X(xorps, "xorps xmm0, xmm0", K_INT)                                                            \
    X(clflush, "clflush [rsi]", K_INT)                                                             \
    X(pcmpeqb, "pcmpeqb xmm0, xmm1", K_INT)                                                        \
    X(pcmpeqw, "pcmpeqw xmm0, xmm1", K_INT)                                                        \
    X(pcmpeqd, "pcmpeqd xmm0, xmm1", K_INT)                                                        \
    X(pcmpeqq, "pcmpeqq xmm0, xmm1", K_INT)                                                        \
    X(pcmpgtb, "pcmpgtb xmm0, xmm1", K_INT)                                                        \
    X(pcmpgtw, "pcmpgtw xmm0, xmm1", K_INT)                                                        \
    X(pcmpgtd, "pcmpgtd xmm0, xmm1", K_INT)                                                        \
    X(pcmpgtq, "pcmpgtq xmm0, xmm1", K_INT)                                                        \
    X(psignb, "psignb xmm0, xmm1", K_INT)                                                          \
    X(psignw, "psignw xmm0, xmm1", K_INT)                                                          \
    X(psignd, "psignd xmm0, xmm1", K_INT)                                                          \
    X(pabsb, "pabsb xmm0, xmm1", K_INT)                                                            \
    X(pabsw, "pabsw xmm0, xmm1", K_INT)                                                            \
    X(pabsd, "pabsd xmm0, xmm1", K_INT)                                                            \
    X(phaddw, "phaddw xmm0, xmm1", K_INT)                                                          \
    X(phaddd, "phaddd xmm0, xmm1", K_INT)                                                          \
    X(phaddsw, "phaddsw xmm0, xmm1", K_INT)                                                        \
    X(phsubw, "phsubw xmm0, xmm1", K_INT)                                                          \
    X(phsubd, "phsubd xmm0, xmm1", K_INT)                                                          \
    X(phsubsw, "phsubsw xmm0, xmm1", K_INT)                                                        \
    X(packsswb, "packsswb xmm0, xmm1", K_INT)                                                      \
    X(packuswb, "packuswb xmm0, xmm1", K_INT)                                                      \
    X(packssdw, "packssdw xmm0, xmm1", K_INT)                                                      \
    X(packusdw, "packusdw xmm0, xmm1", K_INT)                                                      \
    X(punpcklbw, "punpcklbw xmm0, xmm1", K_INT)                                                    \
    X(punpcklwd, "punpcklwd xmm0, xmm1", K_INT)                                                    \
    X(punpckldq, "punpckldq xmm0, xmm1", K_INT)                                                    \
    X(punpcklqdq, "punpcklqdq xmm0, xmm1", K_INT)                                                  \
    X(punpckhbw, "punpckhbw xmm0, xmm1", K_INT)                                                    \
    X(punpckhwd, "punpckhwd xmm0, xmm1", K_INT)                                                    \
    X(punpckhdq, "punpckhdq xmm0, xmm1", K_INT)                                                    \
    X(punpckhqdq, "punpckhqdq xmm0, [rsi]", K_INT)                                                 \
    X(unpcklps, "unpcklps xmm0, xmm1", K_INT)                                                      \
    X(unpckhps, "unpckhps xmm0, xmm1", K_INT)                                                      \
    X(unpcklpd, "unpcklpd xmm0, xmm1", K_INT)                                                      \
    X(unpckhpd, "unpckhpd xmm0, xmm1", K_INT)                                                      \
    X(shufps, "shufps xmm0, xmm1, 0x9c", K_INT)                                                    \
    X(shufpd, "shufpd xmm0, xmm1, 2", K_INT)                                                       \
    X(pshufd, "pshufd xmm0, xmm1, 0x1b", K_INT)                                                    \
    X(pshuflw, "pshuflw xmm0, xmm1, 0xe4", K_INT)                                                  \
    X(pshufhw, "pshufhw xmm0, [rsi], 0x4e", K_INT)                                                 \
    X(pshufb, "pshufb xmm0, xmm1", K_INT)                                                          \
    X(palignr3, "palignr xmm0, xmm1, 3", K_INT)                                                    \
    X(palignr20, "palignr xmm0, xmm1, 20", K_INT)                                                  \
    X(palignr40, "palignr xmm0, xmm1, 40", K_INT)                                                  \
    X(pblendw, "pblendw xmm0, xmm1, 0xa5", K_INT)                                                  \
    X(blendps, "blendps xmm0, xmm1, 6", K_INT)                                                     \
    X(blendpd, "blendpd xmm0, xmm1, 1", K_INT)                                                     \
    X(pblendvb, "pblendvb xmm1, xmm2", K_INT)                                                      \
    X(blendvps, "blendvps xmm1, xmm2", K_INT)                                                      \
    X(blendvpd, "blendvpd xmm1, [rsi]", K_INT)                                                     \
    X(pmovzxbw, "pmovzxbw xmm0, xmm1", K_INT)                                                      \
    X(pmovzxbd, "pmovzxbd xmm0, [rsi+1]", K_INT)                                                   \
    X(pmovzxbq, "pmovzxbq xmm0, [rsi+1]", K_INT)                                                   \
    X(pmovzxwd, "pmovzxwd xmm0, xmm1", K_INT)                                                      \
    X(pmovzxwq, "pmovzxwq xmm0, xmm1", K_INT)                                                      \
    X(pmovzxdq, "pmovzxdq xmm0, [rsi+1]", K_INT)                                                   \
    X(pmovsxbw, "pmovsxbw xmm0, [rsi+1]", K_INT)                                                   \
    X(pmovsxbd, "pmovsxbd xmm0, xmm1", K_INT)                                                      \
    X(pmovsxbq, "pmovsxbq xmm0, xmm1", K_INT)                                                      \
    X(pmovsxwd, "pmovsxwd xmm0, xmm1", K_INT)                                                      \
    X(pmovsxwq, "pmovsxwq xmm0, xmm1", K_INT)                                                      \
    X(pmovsxdq, "pmovsxdq xmm0, xmm1", K_INT)                                                      \
    X(phminposuw, "phminposuw xmm0, xmm1", K_INT)                                                  \
    X(mpsadbw0, "mpsadbw xmm0, xmm1, 0", K_INT)                                                    \
    X(mpsadbw7, "mpsadbw xmm0, xmm1, 7", K_INT)                                                    \
    X(ptest, "ptest xmm0, xmm1", K_INT)                                                            \
    X(ptest_m, "ptest xmm0, [rsi]", K_INT)                                                         \
    X(psllw, "psllw xmm0, xmm1", K_INT)                                                            \
    X(pslld, "pslld xmm0, xmm1", K_INT)                                                            \
    X(psllq, "psllq xmm0, xmm1", K_INT)                                                            \
    X(psrlw, "psrlw xmm0, xmm1", K_INT)                                                            \
    X(psrld, "psrld xmm0, xmm1", K_INT)                                                            \
    X(psrlq, "psrlq xmm0, xmm1", K_INT)                                                            \
    X(psraw, "psraw xmm0, xmm1", K_INT)                                                            \
    X(psrad, "psrad xmm0, xmm1", K_INT)                                                            \
    X(psllwi, "psllw xmm0, 5", K_INT)                                                              \
    X(pslldi, "pslld xmm0, 31", K_INT)                                                             \
    X(psllqi, "psllq xmm0, 64", K_INT)                                                             \
    X(psrlwi, "psrlw xmm0, 15", K_INT)                                                             \
    X(psrldi, "psrld xmm0, 7", K_INT)                                                              \
    X(psrlqi, "psrlq xmm0, 33", K_INT)                                                             \
    X(psrawi, "psraw xmm0, 200", K_INT)                                                            \
    X(psradi, "psrad xmm0, 3", K_INT)                                                              \
    X(pslldq, "pslldq xmm0, 5", K_INT)                                                             \
    X(psrldq, "psrldq xmm0, 11", K_INT)                                                            \
    X(psrldq17, "psrldq xmm0, 17", K_INT)                                                          \
    X(pinsrb, "pinsrb xmm0, eax, 9", K_INT)                                                        \
    X(pinsrw, "pinsrw xmm0, ebx, 3", K_INT)                                                        \
    X(pinsrd, "pinsrd xmm0, [rsi+3], 2", K_INT)                                                    \
    X(pinsrq, "pinsrq xmm0, rcx, 1", K_INT)                                                        \
    X(pextrb, "pextrb eax, xmm1, 13", K_INT)                                                       \
    X(pextrw, "pextrw ebx, xmm1, 6", K_INT)                                                        \
    X(pextrw_m, "pextrw [rsi+1], xmm1, 2", K_INT)                                                  \
    X(pextrd, "pextrd ecx, xmm1, 3", K_INT)                                                        \
    X(pextrq, "pextrq [rsi+3], xmm1, 1", K_INT)                                                    \
    X(extractps, "extractps eax, xmm1, 1", K_INT)                                                  \
    X(insertps, "insertps xmm0, xmm1, 0x9a", K_INT)                                                \
    X(insertps_m, "insertps xmm0, [rsi+4], 0xd1", K_INT)                                           \
    X(crc32b, "crc32 eax, bl", K_INT)                                                              \
    X(crc32w, "crc32 eax, bx", K_INT)                                                              \
    X(crc32d, "crc32 eax, dword ptr [rsi]", K_INT)                                                 \
    X(crc32q, "crc32 rax, rbx", K_INT)                                                             \
    X(pclmul00, "pclmulqdq xmm0, xmm1, 0x00", K_INT)                                               \
    X(pclmul11, "pclmulqdq xmm0, xmm1, 0x11", K_INT)                                               \
    X(aesenc, "aesenc xmm0, xmm1", K_INT)                                                          \
    X(aesenclast, "aesenclast xmm0, xmm1", K_INT)                                                  \
    X(aesdec, "aesdec xmm0, xmm1", K_INT)                                                          \
    X(aesdeclast, "aesdeclast xmm0, xmm1", K_INT)                                                  \
    X(aesimc, "aesimc xmm0, xmm1", K_INT)                                                          \
    X(aeskga, "aeskeygenassist xmm0, xmm1, 0x36", K_INT)                                           \
    /* string compares (SSE4.2) */                                                                 \
    X(pcmpistri_00, "pcmpistri xmm0, xmm1, 0x00", K_STR)                                           \
    X(pcmpistri_04, "pcmpistri xmm0, xmm1, 0x04", K_STR)                                           \
    X(pcmpistri_08, "pcmpistri xmm0, xmm1, 0x08", K_STR)                                           \
    X(pcmpistri_0c, "pcmpistri xmm0, xmm1, 0x0c", K_STR)                                           \
    X(pcmpistri_1a, "pcmpistri xmm0, xmm1, 0x1a", K_STR)                                           \
    X(pcmpistri_3a, "pcmpistri xmm0, xmm1, 0x3a", K_STR)                                           \
    X(pcmpistri_46, "pcmpistri xmm0, [rsi], 0x46", K_STR)                                          \
    X(pcmpistri_4c, "pcmpistri xmm0, xmm1, 0x4c", K_STR)                                           \
    X(pcmpistri_w, "pcmpistri xmm0, xmm1, 0x0d", K_STRW)                                           \
    X(pcmpistri_sw, "pcmpistri xmm0, xmm1, 0x07", K_STRW)                                          \
    X(pcmpistrm_40, "pcmpistrm xmm1, xmm2, 0x40", K_STR)                                           \
    X(pcmpistrm_18, "pcmpistrm xmm1, xmm2, 0x18", K_STR)                                           \
    X(pcmpistrm_w, "pcmpistrm xmm1, xmm2, 0x45", K_STRW)                                           \
    X(pcmpestri_00, "pcmpestri xmm0, xmm1, 0x00", K_STR)                                           \
    X(pcmpestri_0c, "pcmpestri xmm0, xmm1, 0x0c", K_STR)                                           \
    X(pcmpestri_36, "pcmpestri xmm0, xmm1, 0x36", K_STR)                                           \
    X(pcmpestri_w, "pcmpestri xmm0, xmm1, 0x19", K_STRW)                                           \
    X(pcmpestrm_68, "pcmpestrm xmm1, [rsi], 0x68", K_STR)                                          \
    X(pcmpestrm_q, "pcmpestrm xmm1, xmm2, 0x44", K_STR)                                            \
    /* floating point */                                                                           \
    X(addps, "addps xmm0, xmm1", K_PS)                                                             \
    X(addpd, "addpd xmm0, xmm1", K_PD)                                                             \
    X(addss, "addss xmm0, xmm1", K_PS)                                                             \
    X(addsd, "addsd xmm0, [rsi+8]", K_PD)                                                          \
    X(subps, "subps xmm0, [rsi]", K_PS)                                                            \
    X(subpd, "subpd xmm0, xmm1", K_PD)                                                             \
    X(subss, "subss xmm0, [rsi+4]", K_PS)                                                          \
    X(subsd, "subsd xmm0, xmm1", K_PD)                                                             \
    X(mulps, "mulps xmm0, xmm1", K_PS)                                                             \
    X(mulpd, "mulpd xmm0, xmm1", K_PD)                                                             \
    X(mulss, "mulss xmm0, xmm1", K_PS)                                                             \
    X(mulsd, "mulsd xmm0, xmm1", K_PD)                                                             \
    X(divps, "divps xmm0, xmm1", K_PS)                                                             \
    X(divpd, "divpd xmm0, xmm1", K_PD)                                                             \
    X(divss, "divss xmm0, xmm1", K_PS)                                                             \
    X(divsd, "divsd xmm0, xmm1", K_PD)                                                             \
    X(minps, "minps xmm0, xmm1", K_PS)                                                             \
    X(minpd, "minpd xmm0, xmm1", K_PD)                                                             \
    X(minss, "minss xmm0, xmm1", K_PS)                                                             \
    X(minsd, "minsd xmm0, xmm1", K_PD)                                                             \
    X(maxps, "maxps xmm0, xmm1", K_PS)                                                             \
    X(maxpd, "maxpd xmm0, xmm1", K_PD)                                                             \
    X(maxss, "maxss xmm0, xmm1", K_PS)                                                             \
    X(maxsd, "maxsd xmm0, xmm1", K_PD)                                                             \
    X(sqrtps, "sqrtps xmm0, xmm1", K_PS)                                                           \
    X(sqrtpd, "sqrtpd xmm0, xmm1", K_PD)                                                           \
    X(sqrtss, "sqrtss xmm0, xmm1", K_PS)                                                           \
    X(sqrtsd, "sqrtsd xmm0, xmm1", K_PD)                                                           \
    X(rcpps, "rcpps xmm0, xmm1", K_PS)                                                             \
    X(rcpss, "rcpss xmm0, xmm1", K_PS)                                                             \
    X(rsqrtps, "rsqrtps xmm0, xmm1", K_PS)                                                         \
    X(rsqrtss, "rsqrtss xmm0, xmm1", K_PS)                                                         \
    X(haddps, "haddps xmm0, xmm1", K_PS)                                                           \
    X(haddpd, "haddpd xmm0, xmm1", K_PD)                                                           \
    X(hsubps, "hsubps xmm0, xmm1", K_PS)                                                           \
    X(hsubpd, "hsubpd xmm0, xmm1", K_PD)                                                           \
    X(addsubps, "addsubps xmm0, xmm1", K_PS)                                                       \
    X(addsubpd, "addsubpd xmm0, xmm1", K_PD)                                                       \
    X(cmpps0, "cmpps xmm0, xmm1, 0", K_PS)                                                         \
    X(cmpps1, "cmpps xmm0, xmm1, 1", K_PS)                                                         \
    X(cmpps2, "cmpps xmm0, xmm1, 2", K_PS)                                                         \
    X(cmpps3, "cmpps xmm0, xmm1, 3", K_PS)                                                         \
    X(cmpps4, "cmpps xmm0, xmm1, 4", K_PS)                                                         \
    X(cmpps5, "cmpps xmm0, xmm1, 5", K_PS)                                                         \
    X(cmpps6, "cmpps xmm0, xmm1, 6", K_PS)                                                         \
    X(cmpps7, "cmpps xmm0, xmm1, 7", K_PS)                                                         \
    X(cmppd1, "cmppd xmm0, xmm1, 1", K_PD)                                                         \
    X(cmpss2, "cmpss xmm0, xmm1, 2", K_PS)                                                         \
    X(cmpsd3, "cmpsd xmm0, xmm1, 3", K_PD)                                                         \
    X(cmpsd5m, "cmpsd xmm0, [rsi+8], 5", K_PD)                                                     \
    X(ucomiss, "ucomiss xmm0, xmm1", K_PS)                                                         \
    X(ucomisd, "ucomisd xmm0, xmm1", K_PD)                                                         \
    X(comiss, "comiss xmm0, [rsi]", K_PS)                                                          \
    X(comisd, "comisd xmm0, xmm1", K_PD)                                                           \
    X(cvtps2pd, "cvtps2pd xmm0, xmm1", K_PS)                                                       \
    X(cvtpd2ps, "cvtpd2ps xmm0, xmm1", K_PD)                                                       \
    X(cvtss2sd, "cvtss2sd xmm0, xmm1", K_PS)                                                       \
    X(cvtsd2ss, "cvtsd2ss xmm0, xmm1", K_PD)                                                       \
    X(cvtdq2ps, "cvtdq2ps xmm0, xmm1", K_INT)                                                      \
    X(cvtps2dq, "cvtps2dq xmm0, xmm1", K_CVT)                                                      \
    X(cvttps2dq, "cvttps2dq xmm0, xmm1", K_CVT)                                                    \
    X(cvtdq2pd, "cvtdq2pd xmm0, xmm1", K_INT)                                                      \
    X(cvtpd2dq, "cvtpd2dq xmm0, xmm1", K_PD)                                                       \
    X(cvttpd2dq, "cvttpd2dq xmm0, xmm1", K_PD)                                                     \
    X(cvtsi2ss32, "cvtsi2ss xmm0, eax", K_INT)                                                     \
    X(cvtsi2ss64, "cvtsi2ss xmm0, rax", K_INT)                                                     \
    X(cvtsi2sd32, "cvtsi2sd xmm0, dword ptr [rsi]", K_INT)                                         \
    X(cvtsi2sd64, "cvtsi2sd xmm0, rbx", K_INT)                                                     \
    X(cvtss2si32, "cvtss2si eax, xmm1", K_CVT)                                                     \
    X(cvtss2si64, "cvtss2si rax, xmm1", K_CVT)                                                     \
    X(cvtsd2si32, "cvtsd2si ecx, xmm1", K_PD)                                                      \
    X(cvtsd2si64, "cvtsd2si rcx, qword ptr [rsi]", K_PD)                                           \
    X(cvttss2si32, "cvttss2si edx, xmm1", K_CVT)                                                   \
    X(cvttss2si64, "cvttss2si rdx, xmm1", K_CVT)                                                   \
    X(cvttsd2si32, "cvttsd2si eax, xmm1", K_PD)                                                    \
    X(cvttsd2si64, "cvttsd2si rax, xmm1", K_PD)                                                    \
    X(roundps, "roundps xmm0, xmm1, 4", K_PS)                                                      \
    X(roundps9, "roundps xmm0, xmm1, 9", K_PS)                                                     \
    X(roundpd, "roundpd xmm0, xmm1, 2", K_PD)                                                      \
    X(roundss, "roundss xmm0, xmm1, 3", K_PS)                                                      \
    X(roundsd, "roundsd xmm0, [rsi], 12", K_PD)                                                    \
    X(dpps, "dpps xmm0, xmm1, 0xf3", K_PS)                                                         \
    X(dpps2, "dpps xmm0, xmm1, 0x5c", K_PS)                                                        \
    X(dppd, "dppd xmm0, xmm1, 0x31", K_PD)                                                         \
    /* MMX */                                                                                      \
    X(mm_movd_in, "movd mm0, eax", K_INT)                                                          \
    X(mm_movq_in, "movq mm1, rbx", K_INT)                                                          \
    X(mm_movd_out, "movd ecx, mm2", K_INT)                                                         \
    X(mm_movq_out, "movq rdx, mm3", K_INT)                                                         \
    X(mm_movq_mm, "movq mm0, mm3", K_INT)                                                          \
    X(mm_movq_m, "movq mm0, [rsi+1]", K_INT)                                                       \
    X(mm_movq_st, "movq [rsi+1], mm2", K_INT)                                                      \
    X(mm_movd_st, "movd [rsi+1], mm2", K_INT)                                                      \
    X(mm_movntq, "movntq [rsi], mm1", K_INT)                                                       \
    X(mm_paddb, "paddb mm0, mm1", K_INT)                                                           \
    X(mm_paddsw, "paddsw mm0, mm1", K_INT)                                                         \
    X(mm_psubusb, "psubusb mm0, [rsi]", K_INT)                                                     \
    X(mm_pmulhw, "pmulhw mm0, mm1", K_INT)                                                         \
    X(mm_pmaddwd, "pmaddwd mm0, mm1", K_INT)                                                       \
    X(mm_pmuludq, "pmuludq mm0, mm1", K_INT)                                                       \
    X(mm_psadbw, "psadbw mm0, mm1", K_INT)                                                         \
    X(mm_pcmpgtw, "pcmpgtw mm0, mm1", K_INT)                                                       \
    X(mm_pxor, "pxor mm0, mm1", K_INT)                                                             \
    X(mm_punpcklbw, "punpcklbw mm0, mm1", K_INT)                                                   \
    X(mm_punpcklwd_m, "punpcklwd mm0, [rsi+2]", K_INT)                                             \
    X(mm_punpckhbw, "punpckhbw mm0, mm1", K_INT)                                                   \
    X(mm_punpckhdq, "punpckhdq mm0, mm1", K_INT)                                                   \
    X(mm_packsswb, "packsswb mm0, mm1", K_INT)                                                     \
    X(mm_packuswb, "packuswb mm0, mm1", K_INT)                                                     \
    X(mm_packssdw, "packssdw mm0, mm1", K_INT)                                                     \
    X(mm_phaddw, "phaddw mm0, mm1", K_INT)                                                         \
    X(mm_phsubd, "phsubd mm0, mm1", K_INT)                                                         \
    X(mm_pshufb, "pshufb mm0, mm1", K_INT)                                                         \
    X(mm_palignr, "palignr mm0, mm1, 5", K_INT)                                                    \
    X(mm_palignr12, "palignr mm0, mm1, 12", K_INT)                                                 \
    X(mm_pshufw, "pshufw mm0, mm1, 0x6c", K_INT)                                                   \
    X(mm_psllw, "psllw mm0, mm1", K_INT)                                                           \
    X(mm_psrad, "psrad mm0, [rsi]", K_INT)                                                         \
    X(mm_psrlqi, "psrlq mm0, 13", K_INT)                                                           \
    X(mm_psrawi, "psraw mm0, 3", K_INT)                                                            \
    X(mm_pinsrw, "pinsrw mm0, eax, 2", K_INT)                                                      \
    X(mm_pextrw, "pextrw eax, mm1, 3", K_INT)                                                      \
    X(mm_pmovmskb, "pmovmskb eax, mm1", K_INT)                                                     \
    X(mm_pabsb, "pabsb mm0, mm1", K_INT)                                                           \
    X(mm_pmulhrsw, "pmulhrsw mm0, mm1", K_INT)                                                     \
    X(mm_maskmovq, "maskmovq mm0, mm1", K_INT)                                                     \
    X(movq2dq, "movq2dq xmm0, mm1", K_INT)                                                         \
    X(movdq2q, "movdq2q mm0, xmm1", K_INT)                                                         \
    X(cvtpi2ps, "cvtpi2ps xmm0, mm1", K_INT)                                                       \
    X(cvtpi2pd, "cvtpi2pd xmm0, mm1", K_INT)                                                       \
    X(cvtpi2ps_m, "cvtpi2ps xmm0, [rsi]", K_INT)                                                   \
    X(cvtps2pi, "cvtps2pi mm0, xmm1", K_CVT)                                                       \
    X(cvttps2pi, "cvttps2pi mm0, xmm1", K_CVT)                                                     \
    X(cvtpd2pi, "cvtpd2pi mm0, xmm1", K_PD)                                                        \
    X(cvttpd2pi, "cvttpd2pi mm0, xmm1", K_PD)                                                      \
    X(paddb_m, "paddb xmm0, [rsi]", K_INT)                                                         \
    X(psadbw_m, "psadbw xmm0, [rsi]", K_INT)                                                       \
    X(pshufb_m, "pshufb xmm0, [rsi]", K_INT)                                                       \
    X(palignr_m, "palignr xmm0, [rsi], 7", K_INT)                                                  \
    X(pmovzxwq_m, "pmovzxwq xmm0, [rsi]", K_INT)                                                   \
    X(pmovsxbq_m, "pmovsxbq xmm0, [rsi]", K_INT)                                                   \
    X(pmovzxbw_m, "pmovzxbw xmm0, [rsi]", K_INT)                                                   \
    X(pmovsxwd_m, "pmovsxwd xmm0, [rsi]", K_INT)                                                   \
    X(pinsrb_m, "pinsrb xmm0, [rsi], 15", K_INT)                                                   \
    X(pinsrw_m, "pinsrw xmm0, [rsi], 7", K_INT)                                                    \
    X(pinsrq_m, "pinsrq xmm0, [rsi], 0", K_INT)                                                    \
    X(pextrb_m, "pextrb [rsi], xmm1, 5", K_INT)                                                    \
    X(pextrd_m, "pextrd [rsi], xmm1, 2", K_INT)                                                    \
    X(extractps_m, "extractps [rsi], xmm1, 3", K_INT)                                              \
    X(pextrq_r, "pextrq rdx, xmm1, 1", K_INT)                                                      \
    X(pinsrd_r, "pinsrd xmm0, ecx, 1", K_INT)                                                      \
    X(pcmpistri_m, "pcmpistri xmm0, [rsi], 0x0c", K_STR)                                           \
    X(pcmpestri_m, "pcmpestri xmm0, [rsi], 0x04", K_STR)                                           \
    X(pcmpestri_rexw, ".byte 0x66, 0x48, 0x0f, 0x3a, 0x61, 0xc1, 0x08", K_STR)                     \
    X(ptest_m2, "ptest xmm1, [rsi]", K_INT)                                                        \
    X(pblendvb_m, "pblendvb xmm1, [rsi]", K_INT)                                                   \
    X(movsldup_m, "movsldup xmm1, [rsi]", K_INT)                                                   \
    X(movddup_r, "movddup xmm1, xmm2", K_INT)                                                      \
    X(psrlw_m, "psrlw xmm0, [rsi]", K_INT)                                                         \
    X(psllq_m, "psllq xmm0, [rsi]", K_INT)                                                         \
    X(pmaddwd_m, "pmaddwd xmm0, [rsi]", K_INT)                                                     \
    X(phaddw_m, "phaddw xmm0, [rsi]", K_INT)                                                       \
    X(packusdw_m, "packusdw xmm0, [rsi]", K_INT)                                                   \
    X(pcmpgtq_m, "pcmpgtq xmm0, [rsi]", K_INT)                                                     \
    X(unpcklps_m, "unpcklps xmm0, [rsi]", K_INT)                                                   \
    X(shufps_m, "shufps xmm0, [rsi], 0x27", K_INT)                                                 \
    X(pshufd_m, "pshufd xmm0, [rsi], 0x93", K_INT)                                                 \
    X(andps_m, "andps xmm0, [rsi]", K_INT)                                                         \
    X(crc32b_m, "crc32 ecx, byte ptr [rsi]", K_INT)                                                \
    X(crc32q_m, "crc32 rcx, qword ptr [rsi]", K_INT)                                               \
    X(crc32w_h, "crc32 edx, ax", K_INT)                                                            \
    X(aesenc_m, "aesenc xmm0, [rsi]", K_INT)                                                       \
    X(pclmul_m, "pclmulqdq xmm0, [rsi], 0x01", K_INT)                                              \
    X(addps_m, "addps xmm0, [rsi]", K_PS)                                                          \
    X(mulpd_m, "mulpd xmm0, [rsi]", K_PD)                                                          \
    X(sqrtss_m, "sqrtss xmm0, [rsi]", K_PS)                                                        \
    X(sqrtpd_m, "sqrtpd xmm0, [rsi]", K_PD)                                                        \
    X(divss_m, "divss xmm0, [rsi]", K_PS)                                                          \
    X(maxsd_m, "maxsd xmm0, [rsi]", K_PD)                                                          \
    X(minps_m, "minps xmm0, [rsi]", K_PS)                                                          \
    X(cmpps_m, "cmpps xmm0, [rsi], 6", K_PS)                                                       \
    X(cmpss_m, "cmpss xmm0, [rsi], 1", K_PS)                                                       \
    X(ucomiss_m, "ucomiss xmm0, [rsi]", K_PS)                                                      \
    X(comisd_m, "comisd xmm0, [rsi]", K_PD)                                                        \
    X(cvtss2sd_m, "cvtss2sd xmm0, [rsi]", K_PS)                                                    \
    X(cvtsd2ss_m, "cvtsd2ss xmm0, [rsi]", K_PD)                                                    \
    X(cvtps2pd_m, "cvtps2pd xmm0, [rsi]", K_PS)                                                    \
    X(cvtpd2ps_m, "cvtpd2ps xmm0, [rsi]", K_PD)                                                    \
    X(cvtdq2pd_m, "cvtdq2pd xmm0, [rsi]", K_INT)                                                   \
    X(cvtdq2ps_m, "cvtdq2ps xmm0, [rsi]", K_INT)                                                   \
    X(cvttps2dq_m, "cvttps2dq xmm0, [rsi]", K_CVT)                                                 \
    X(cvtss2si_m, "cvtss2si eax, dword ptr [rsi]", K_CVT)                                          \
    X(cvttsd2si_m, "cvttsd2si rax, qword ptr [rsi]", K_PD)                                         \
    X(cvtsi2ss_m64, "cvtsi2ss xmm0, qword ptr [rsi]", K_INT)                                       \
    X(haddps_m, "haddps xmm0, [rsi]", K_PS)                                                        \
    X(addsubpd_m, "addsubpd xmm0, [rsi]", K_PD)                                                    \
    X(rcpss_m, "rcpss xmm0, [rsi]", K_PS)                                                          \
    X(rsqrtps_m, "rsqrtps xmm0, [rsi]", K_PS)                                                      \
    X(roundps_m, "roundps xmm0, [rsi], 1", K_PS)                                                   \
    X(roundss_m, "roundss xmm0, [rsi], 10", K_PS)                                                  \
    X(dpps_m, "dpps xmm0, [rsi], 0x71", K_PS)                                                      \
    X(dppd_m, "dppd xmm0, [rsi], 0x22", K_PD)                                                      \
    X(movmskpd_r, "movmskpd ecx, xmm3", K_PD)                                                      \
    X(cvtpi2pd_m, "cvtpi2pd xmm0, [rsi]", K_INT)                                                   \
    X(cvtps2pi_m, "cvtps2pi mm0, [rsi]", K_CVT)                                                    \
    X(cvttpd2pi_m, "cvttpd2pi mm0, [rsi]", K_PD)                                                   \
    X(mm_paddw, "paddw mm0, mm1", K_INT)                                                           \
    X(mm_paddd, "paddd mm0, mm1", K_INT)                                                           \
    X(mm_paddq, "paddq mm0, mm1", K_INT)                                                           \
    X(mm_psubb, "psubb mm0, mm1", K_INT)                                                           \
    X(mm_psubw, "psubw mm0, mm1", K_INT)                                                           \
    X(mm_psubd, "psubd mm0, mm1", K_INT)                                                           \
    X(mm_psubq, "psubq mm0, mm1", K_INT)                                                           \
    X(mm_paddsb, "paddsb mm0, mm1", K_INT)                                                         \
    X(mm_psubsb, "psubsb mm0, mm1", K_INT)                                                         \
    X(mm_psubsw, "psubsw mm0, mm1", K_INT)                                                         \
    X(mm_paddusb, "paddusb mm0, mm1", K_INT)                                                       \
    X(mm_paddusw, "paddusw mm0, mm1", K_INT)                                                       \
    X(mm_psubusw, "psubusw mm0, mm1", K_INT)                                                       \
    X(mm_pmullw, "pmullw mm0, mm1", K_INT)                                                         \
    X(mm_pmulhuw, "pmulhuw mm0, mm1", K_INT)                                                       \
    X(mm_pmaddubsw, "pmaddubsw mm0, mm1", K_INT)                                                   \
    X(mm_pavgb, "pavgb mm0, mm1", K_INT)                                                           \
    X(mm_pavgw, "pavgw mm0, mm1", K_INT)                                                           \
    X(mm_pminub, "pminub mm0, mm1", K_INT)                                                         \
    X(mm_pmaxub, "pmaxub mm0, mm1", K_INT)                                                         \
    X(mm_pminsw, "pminsw mm0, mm1", K_INT)                                                         \
    X(mm_pmaxsw, "pmaxsw mm0, mm1", K_INT)                                                         \
    X(mm_pand, "pand mm0, mm1", K_INT)                                                             \
    X(mm_pandn, "pandn mm0, mm1", K_INT)                                                           \
    X(mm_por, "por mm0, mm1", K_INT)                                                               \
    X(mm_pcmpeqb, "pcmpeqb mm0, mm1", K_INT)                                                       \
    X(mm_pcmpeqw, "pcmpeqw mm0, mm1", K_INT)                                                       \
    X(mm_pcmpeqd, "pcmpeqd mm0, mm1", K_INT)                                                       \
    X(mm_pcmpgtb, "pcmpgtb mm0, mm1", K_INT)                                                       \
    X(mm_pcmpgtd, "pcmpgtd mm0, mm1", K_INT)                                                       \
    X(mm_psignb, "psignb mm0, mm1", K_INT)                                                         \
    X(mm_psignw, "psignw mm0, mm1", K_INT)                                                         \
    X(mm_psignd, "psignd mm0, mm1", K_INT)                                                         \
    X(mm_pabsw, "pabsw mm0, mm1", K_INT)                                                           \
    X(mm_pabsd, "pabsd mm0, mm1", K_INT)                                                           \
    X(mm_pslld, "pslld mm0, mm1", K_INT)                                                           \
    X(mm_psllq, "psllq mm0, mm1", K_INT)                                                           \
    X(mm_psrlw, "psrlw mm0, mm1", K_INT)                                                           \
    X(mm_psrld, "psrld mm0, mm1", K_INT)                                                           \
    X(mm_psrlq, "psrlq mm0, mm1", K_INT)                                                           \
    X(mm_psraw, "psraw mm0, mm1", K_INT)                                                           \
    X(mm_psllwi, "psllw mm0, 9", K_INT)                                                            \
    X(mm_pslldi, "pslld mm1, 40", K_INT)                                                           \
    X(mm_psllqi, "psllq mm2, 63", K_INT)                                                           \
    X(mm_psrlwi, "psrlw mm3, 1", K_INT)                                                            \
    X(mm_psrldi, "psrld mm0, 17", K_INT)                                                           \
    X(mm_psradi, "psrad mm0, 31", K_INT)                                                           \
    X(mm_punpckldq, "punpckldq mm0, mm1", K_INT)                                                   \
    X(mm_punpckhwd, "punpckhwd mm0, mm1", K_INT)                                                   \
    X(mm_punpckhwd_m, "punpckhwd mm0, [rsi]", K_INT)                                               \
    X(mm_phaddd, "phaddd mm0, mm1", K_INT)                                                         \
    X(mm_phaddsw, "phaddsw mm0, mm1", K_INT)                                                       \
    X(mm_phsubw, "phsubw mm0, mm1", K_INT)                                                         \
    X(mm_phsubsw, "phsubsw mm0, mm1", K_INT)                                                       \
    X(mm_pshufb_m, "pshufb mm0, [rsi]", K_INT)                                                     \
    X(mm_pshufw_m, "pshufw mm0, [rsi], 0xb1", K_INT)                                               \
    X(mm_palignr_m, "palignr mm0, [rsi], 3", K_INT)                                                \
    X(mm_palignr17, "palignr mm0, mm1, 17", K_INT)                                                 \
    X(mm_pinsrw_m, "pinsrw mm0, [rsi], 1", K_INT)                                                  \
    X(mm_movq_mm2, "movq mm3, mm0", K_INT)                                                         \
    X(mm_movd_m, "movd mm1, [rsi]", K_INT)                                                         \
    X(mm_pmulhrsw_m, "pmulhrsw mm0, [rsi]", K_INT)                                                 \
    X(mm_psadbw_m, "psadbw mm1, [rsi]", K_INT)                                                     \
    X(mm_packssdw_m, "packssdw mm1, [rsi]", K_INT)

#define DEF_FORM(id, text, kind) ASM_RO(f_##id, text);
FORMS(DEF_FORM)
#define TAB_FORM(id, text, kind) {#id, f_##id, f_##id##_end, kind},
static const struct form forms[] = {FORMS(TAB_FORM)};

/* ---- random inputs ---- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint32_t fp32(uint64_t *s)
{
    static const uint32_t sp[] = {0,          0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
                                  0xffc00001, 0x7f800001, 0xff812345, 0x00000001, 0x807fffff,
                                  0x00400000, 0x00800000, 0x3f800000, 0xbf800000, 0x7f7fffff,
                                  0x4f000000, 0xcf000000, 0x4effffff, 0x3f000000, 0x3fc00000};
    uint64_t r = rnd(s);
    switch (r % 8) {
    case 0:
    case 1: return sp[(r >> 8) % (sizeof sp / sizeof sp[0])];
    case 2: return (uint32_t)(r >> 16) & 0x807fffff; /* denormal */
    case 3: {                                        /* small integers and halves */
        float f = (float)((int)((r >> 16) % 41) - 20) / 2.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }
    case 4: return (uint32_t)(((r >> 16) & 0x807fffff) | 0x00800000); /* tiny normal */
    default: return (uint32_t)(r >> 20);
    }
}

static uint64_t fp64(uint64_t *s)
{
    static const uint64_t sp[] = {0,
                                  0x8000000000000000ull,
                                  0x7ff0000000000000ull,
                                  0xfff0000000000000ull,
                                  0x7ff8000000000000ull,
                                  0xfff8000000000123ull,
                                  0x7ff0000000000001ull,
                                  0xfff4000000000000ull,
                                  0x0000000000000001ull,
                                  0x800fffffffffffffull,
                                  0x0010000000000000ull,
                                  0x3ff0000000000000ull,
                                  0xbff0000000000000ull,
                                  0x7fefffffffffffffull,
                                  0x41e0000000000000ull,
                                  0xc1e0000000000000ull,
                                  0x43e0000000000000ull,
                                  0x41dfffffffffffffull,
                                  0x3fe0000000000000ull,
                                  0x3690000000000000ull /* ~2^-150: below float */};
    uint64_t r = rnd(s);
    switch (r % 8) {
    case 0:
    case 1: return sp[(r >> 8) % (sizeof sp / sizeof sp[0])];
    case 2: return rnd(s) & 0x800fffffffffffffull;
    case 3: {
        double f = (double)((int)((r >> 16) % 41) - 20) / 2.0;
        uint64_t u;
        memcpy(&u, &f, 8);
        return u;
    }
    case 4: { /* around float's range edges */
        uint64_t e = 0x380 + (r >> 8) % 0x100 - 0x18;
        return (rnd(s) & 0x800fffffffffffffull) | (e << 52);
    }
    default: return rnd(s);
    }
}

static void fill_reg(uint64_t *s, uint8_t x[16], unsigned kind)
{
    uint64_t r = rnd(s);
    for (unsigned i = 0; i < 16; i += 8) {
        uint64_t v = rnd(s);
        memcpy(x + i, &v, 8);
    }
    if (kind == K_PS || kind == K_CVT) {
        for (unsigned i = 0; i < 4; i++) {
            uint32_t v = fp32(s);
            if (kind == K_CVT && (rnd(s) & 1)) { /* near the integer range */
                float f = (float)((double)(int64_t)rnd(s) / (double)(1ull << (rnd(s) % 64)));
                memcpy(&v, &f, 4);
            }
            memcpy(x + 4 * i, &v, 4);
        }
    } else if (kind == K_PD) {
        for (unsigned i = 0; i < 2; i++) {
            uint64_t v = fp64(s);
            if (rnd(s) % 4 == 0) {
                double f = (double)(int64_t)rnd(s) / (double)(1ull << (rnd(s) % 64));
                memcpy(&v, &f, 8);
            }
            memcpy(x + 8 * i, &v, 8);
        }
    } else if (kind == K_STR || kind == K_STRW) {
        /* a small alphabet with a few NULs */
        for (unsigned i = 0; i < 16; i++)
            x[i] = (uint8_t)("abcz\0AZ~"[rnd(s) % 8]);
        if (kind == K_STRW)
            for (unsigned i = 1; i < 16; i += 2)
                x[i] = rnd(s) % 4 ? 0 : 0x80;
        if (r % 4 == 0) memset(x, 'a', 16);
    } else if (r % 4 == 0) { /* K_INT: boundary bytes */
        static const uint8_t b[] = {0, 0xff, 0x80, 0x7f, 1, 0xfe};
        for (unsigned i = 0; i < 16; i++)
            if (rnd(s) & 1) x[i] = b[rnd(s) % 6];
    }
}

static void random_ctx(uint64_t *s, struct ctx *c, uint8_t mem[MLEN], unsigned kind)
{
    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < 4; i++)
        fill_reg(s, c->x[i], kind);
    /* some lanes equal between the operands (compares, equal strings) */
    for (unsigned i = 0; i < 16; i += 4)
        if (rnd(s) % 4 == 0) memcpy(c->x[1] + i, c->x[0] + i, 4);
    for (unsigned i = 0; i < MLEN; i += 16)
        fill_reg(s, mem + i, kind);
    for (unsigned i = 0; i < 4; i++) {
        c->mm[i] = rnd(s);
        c->g[i] = rnd(s);
        if (rnd(s) % 3 == 0) c->g[i] = (uint64_t)(int64_t)((int)(rnd(s) % 41) - 20);
        if (rnd(s) % 5 == 0) c->g[i] &= 0xffffffff;
    }
    c->fl = 0x202 | (rnd(s) & ARITH);
    /* every rounding mode, DAZ, FTZ, sticky flags; exceptions masked */
    c->mxcsr = 0x1f80 | (uint32_t)(rnd(s) & 0xe07f);
}

/* ---- the two runners ---- */

struct runner {
    uint8_t *hostcode; /* RWX: prologue, instruction, epilogue */
    struct hvp_cpu *cpu;
    uint8_t *gcode, *gdata;
    uint8_t *hdata;
};

static void runner_init(struct runner *r)
{
    r->hostcode =
        mmap(NULL, 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(r->hostcode != MAP_FAILED);
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    cr_assert_eq(hvp_cpu_create(&cfg, &r->cpu), 0);
    r->gcode = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r->gdata = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    r->hdata = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(r->gcode != MAP_FAILED && r->gdata != MAP_FAILED && r->hdata != MAP_FAILED);
    cr_assert_eq(hvp_cpu_map(r->cpu, CODE, 0x1000, r->gcode, 7), 0);
    cr_assert_eq(hvp_cpu_map(r->cpu, DATA, 0x1000, r->gdata, 3), 0);
}

static void runner_fini(struct runner *r)
{
    hvp_cpu_destroy(r->cpu);
    munmap(r->hostcode, 0x1000);
    munmap(r->gcode, 0x1000);
    munmap(r->gdata, 0x1000);
    munmap(r->hdata, 0x1000);
}

/* Loads one instruction into both runners (a fresh CPU: no stale traces). */
static void runner_load(struct runner *r, const uint8_t *code, size_t len)
{
    size_t np = (size_t)(pro_end - pro), ne = (size_t)(epi_end - epi);
    memcpy(r->hostcode, pro, np);
    memcpy(r->hostcode + np, code, len);
    memcpy(r->hostcode + np + len, epi, ne);
    __builtin___clear_cache((char *)r->hostcode, (char *)r->hostcode + np + len + ne);
    hvp_cpu_destroy(r->cpu);
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    cr_assert_eq(hvp_cpu_create(&cfg, &r->cpu), 0);
    cr_assert_eq(hvp_cpu_map(r->cpu, CODE, 0x1000, r->gcode, 7), 0);
    cr_assert_eq(hvp_cpu_map(r->cpu, DATA, 0x1000, r->gdata, 3), 0);
    memset(r->gcode, 0xcc, 0x1000);
    memcpy(r->gcode, code, len);
}

static void run_host(struct runner *r, struct ctx *c, const uint8_t mem[MLEN])
{
    memcpy(r->hdata + MOFF, mem, MLEN);
    c->mem = (uint64_t)(uintptr_t)(r->hdata + MOFF + c->skew);
    ((void (*)(struct ctx *))(void *)r->hostcode)(c);
}

/* Runs the instruction at CODE on hvp with c's registers; returns the
 * exit (BUDGET when it retired) and updates c. */
static struct hvp_cpu_exit run_guest(struct runner *r, struct ctx *c, const uint8_t mem[MLEN],
                                     uint64_t *rip)
{
    struct hvp_cpu_state st;
    cr_assert_eq(hvp_cpu_get_state(r->cpu, &st), 0);
    memcpy(r->gdata + MOFF, mem, MLEN);
    st.rip = CODE;
    st.rflags = c->fl;
    st.gpr[0] = c->g[0];
    st.gpr[3] = c->g[1];
    st.gpr[1] = c->g[2];
    st.gpr[2] = c->g[3];
    st.gpr[6] = st.gpr[7] = DATA + MOFF + c->skew;
    st.fpu.mxcsr = c->mxcsr;
    for (unsigned i = 0; i < 4; i++)
        memcpy(st.fpu.xmm[i], c->x[i], 16);
    st.fpu.fsw &= (uint16_t) ~(7u << 11);
    for (unsigned i = 0; i < 8; i++) {
        memset(st.fpu.st[i], 0, 16);
        if (i < 4) memcpy(st.fpu.st[i], &c->mm[i], 8);
        st.fpu.st[i][8] = st.fpu.st[i][9] = 0xff;
    }
    st.fpu.ftw = 0xff;
    cr_assert_eq(hvp_cpu_set_state(r->cpu, &st), 0);
    struct hvp_cpu_exit ex;
    cr_assert_eq(hvp_cpu_run(r->cpu, 1, &ex), 0);
    cr_assert_eq(hvp_cpu_get_state(r->cpu, &st), 0);
    c->fl = st.rflags;
    c->g[0] = st.gpr[0];
    c->g[1] = st.gpr[3];
    c->g[2] = st.gpr[1];
    c->g[3] = st.gpr[2];
    c->mxcsr = st.fpu.mxcsr;
    for (unsigned i = 0; i < 4; i++)
        memcpy(c->x[i], st.fpu.xmm[i], 16);
    unsigned top = (st.fpu.fsw >> 11) & 7;
    for (unsigned i = 0; i < 4; i++)
        memcpy(&c->mm[i], st.fpu.st[(i - top) & 7], 8);
    if (rip) *rip = st.rip;
    return ex;
}

static void dump(const char *who, const struct ctx *c)
{
    fprintf(stderr, "  %s: mxcsr %#x fl %#lx rax %#lx rbx %#lx rcx %#lx rdx %#lx\n", who, c->mxcsr,
            (unsigned long)c->fl, (unsigned long)c->g[0], (unsigned long)c->g[1],
            (unsigned long)c->g[2], (unsigned long)c->g[3]);
    for (unsigned i = 0; i < 4; i++) {
        fprintf(stderr, "    xmm%u ", i);
        for (unsigned k = 16; k-- > 0;)
            fprintf(stderr, "%02x", c->x[i][k]);
        fprintf(stderr, "  mm%u %016lx\n", i, (unsigned long)c->mm[i]);
    }
}

#define ITER 3000

Test(sse, forms_match_host, .timeout = 300)
{
    struct runner r;
    runner_init(&r);
    uint64_t seed = 0x2545f4914f6cdd1dull;
    unsigned long total = 0, bad_forms = 0;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        const struct form *fm = &forms[f];
        size_t len = (size_t)(fm->end - fm->code);
        runner_load(&r, fm->code, len);
        for (unsigned it = 0; it < ITER; it++) {
            struct ctx in, h, g;
            uint8_t mem[MLEN];
            random_ctx(&seed, &in, mem, fm->kind);
            h = g = in;
            run_host(&r, &h, mem);
            uint64_t rip;
            struct hvp_cpu_exit ex = run_guest(&r, &g, mem, &rip);
            total++;
            bool ok = ex.reason == HVP_CPU_EXIT_BUDGET && rip == CODE + len;
            ok = ok && !memcmp(h.x, g.x, sizeof h.x) && !memcmp(h.mm, g.mm, sizeof h.mm) &&
                 !memcmp(h.g, g.g, sizeof h.g) && (h.fl & ARITH) == (g.fl & ARITH) &&
                 h.mxcsr == g.mxcsr && !memcmp(r.hdata + MOFF, r.gdata + MOFF, MLEN);
            if (!ok) {
                fprintf(stderr, "%s: mismatch at iteration %u (exit %u vector %u)\n", fm->name, it,
                        ex.reason, ex.u.exception.vector);
                dump("in  ", &in);
                dump("host", &h);
                dump("hvp ", &g);
                bad_forms++;
                break;
            }
        }
    }
    fprintf(stderr, "sse: %zu forms, %lu random host comparisons\n", sizeof forms / sizeof forms[0],
            total);
    runner_fini(&r);
    cr_assert_eq(bad_forms, 0, "%lu forms differ from the host", bad_forms);
}

/* ---- unmasked exceptions against the host: SIGFPE there, #XM here ---- */

/* The signal handler's way out (test process only). */
static sigjmp_buf fpe_jb;
static volatile uint32_t fpe_mxcsr;

static void on_fpe(int sig, siginfo_t *si, void *uc_)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = uc_;
    fpe_mxcsr = uc->uc_mcontext.fpregs->mxcsr;
    siglongjmp(fpe_jb, 1);
}

#define ITER_XM 1500

static bool post_exact_form(const char *name)
{
    static const char *const pre[] = {"add",  "sub",  "mul",      "div",     "sqrt",
                                      "hadd", "hsub", "cvtsd2ss", "cvtpd2ps"};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        if (!strncmp(name, pre[i], strlen(pre[i]))) return true;
    return false;
}

/* ---- misaligned memory operands against the host: SIGSEGV there (#GP), #GP here ---- */

static void on_segv(int sig, siginfo_t *si, void *uc_)
{
    (void)sig;
    (void)si;
    (void)uc_;
    siglongjmp(fpe_jb, 2);
}

#define ITER_AL 200

Test(sse, misaligned_operands_match_host, .timeout = 300)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
    cr_assert_eq(sigaction(SIGBUS, &sa, NULL), 0);
    struct runner r;
    runner_init(&r);
    uint64_t seed = 0x1234567887654321ull;
    unsigned long total = 0, faults = 0, bad_forms = 0;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        const struct form *fm = &forms[f];
        size_t len = (size_t)(fm->end - fm->code);
        runner_load(&r, fm->code, len);
        for (unsigned it = 0; it < ITER_AL; it++) {
            struct ctx in, h, g;
            uint8_t mem[MLEN];
            random_ctx(&seed, &in, mem, fm->kind);
            in.skew = 1 + (unsigned)(rnd(&seed) % 15);
            h = g = in;
            volatile bool host_fault = false;
            if (sigsetjmp(fpe_jb, 1) == 0) {
                run_host(&r, &h, mem);
            } else {
                host_fault = true;
                uint32_t def = 0x1f80;
                __asm__ volatile("ldmxcsr %0\n\temms\n\tcld" : : "m"(def));
            }
            uint64_t rip;
            struct hvp_cpu_exit ex = run_guest(&r, &g, mem, &rip);
            total++;
            bool ok;
            if (host_fault) {
                faults++;
                ok = ex.reason == HVP_CPU_EXIT_EXCEPTION && ex.u.exception.vector == 13 &&
                     rip == CODE && !memcmp(g.x, in.x, sizeof g.x) && g.mxcsr == in.mxcsr;
            } else {
                ok = ex.reason == HVP_CPU_EXIT_BUDGET && !memcmp(h.x, g.x, sizeof h.x) &&
                     !memcmp(h.mm, g.mm, sizeof h.mm) && !memcmp(h.g, g.g, sizeof h.g) &&
                     h.mxcsr == g.mxcsr;
            }
            if (!ok) {
                fprintf(stderr, "%s: skew %u: host %s, hvp exit %u vector %u\n", fm->name, in.skew,
                        host_fault ? "#GP" : "ok", ex.reason, ex.u.exception.vector);
                bad_forms++;
                break;
            }
        }
    }
    fprintf(stderr, "sse: %lu misaligned comparisons, %lu #GP on the host\n", total, faults);
    runner_fini(&r);
    cr_assert_eq(bad_forms, 0, "%lu forms differ from the host", bad_forms);
}

Test(sse, unmasked_exceptions_match_host, .timeout = 300)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fpe;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    cr_assert_eq(sigaction(SIGFPE, &sa, NULL), 0);
    struct runner r;
    runner_init(&r);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    unsigned long total = 0, faults = 0, bad_forms = 0;
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        const struct form *fm = &forms[f];
        if (fm->kind != K_PS && fm->kind != K_PD && fm->kind != K_CVT) continue;
        size_t len = (size_t)(fm->end - fm->code);
        runner_load(&r, fm->code, len);
        for (unsigned it = 0; it < ITER_XM; it++) {
            struct ctx in, h, g;
            uint8_t mem[MLEN];
            random_ctx(&seed, &in, mem, fm->kind);
            /* unmask a random subset (often one). OE and UE only for the
             * operations whose unbounded-exponent flags hvp recomputes (see
             * post_exact in cpu_sse.c). */
            uint32_t um = rnd(&seed) % 2 ? 1u << (rnd(&seed) % 6) : (uint32_t)rnd(&seed) & 0x3f;
            if (!post_exact_form(fm->name)) um &= 0x27;
            in.mxcsr &= ~(um << 7);
            in.mxcsr &= ~0x3fu; /* no stale flag may fault on the host */
            h = g = in;
            volatile bool host_fault = false;
            volatile uint32_t host_mx = 0;
            if (sigsetjmp(fpe_jb, 1) == 0) {
                run_host(&r, &h, mem);
            } else {
                host_fault = true;
                host_mx = fpe_mxcsr;
                uint32_t def = 0x1f80;
                __asm__ volatile("ldmxcsr %0\n\temms" : : "m"(def));
            }
            uint64_t rip;
            struct hvp_cpu_exit ex = run_guest(&r, &g, mem, &rip);
            total++;
            bool ok;
            if (host_fault) {
                faults++;
                ok = ex.reason == HVP_CPU_EXIT_EXCEPTION && ex.u.exception.vector == 19 &&
                     rip == CODE && g.mxcsr == host_mx && !memcmp(g.x, in.x, sizeof g.x) &&
                     !memcmp(g.mm, in.mm, sizeof g.mm) && !memcmp(g.g, in.g, sizeof g.g) &&
                     !memcmp(r.gdata + MOFF, mem, MLEN);
            } else {
                ok = ex.reason == HVP_CPU_EXIT_BUDGET && rip == CODE + len &&
                     !memcmp(h.x, g.x, sizeof h.x) && !memcmp(h.mm, g.mm, sizeof h.mm) &&
                     !memcmp(h.g, g.g, sizeof h.g) && (h.fl & ARITH) == (g.fl & ARITH) &&
                     h.mxcsr == g.mxcsr;
            }
            if (!ok) {
                fprintf(stderr,
                        "%s: unmasked mismatch at iteration %u: host %s mxcsr %#x, hvp exit %u "
                        "vector %u mxcsr %#x\n",
                        fm->name, it, host_fault ? "#XM" : "ok", host_fault ? host_mx : h.mxcsr,
                        ex.reason, ex.u.exception.vector, g.mxcsr);
                dump("in  ", &in);
                bad_forms++;
                break;
            }
        }
    }
    fprintf(stderr, "sse: %lu unmasked-exception comparisons, %lu #XM on the host\n", total,
            faults);
    runner_fini(&r);
    cr_assert_eq(bad_forms, 0, "%lu forms differ from the host", bad_forms);
}

/* ---- focused tests ---- */

struct vm {
    struct hvp_cpu *cpu;
    uint8_t *code, *data;
    struct hvp_cpu_state st;
    struct hvp_cpu_exit ex;
};

static void vm_init(struct vm *v, const uint8_t *code, const uint8_t *end)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    cr_assert_eq(hvp_cpu_create(&cfg, &v->cpu), 0);
    v->code = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    v->data = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(v->code, 0xcc, 0x1000);
    memcpy(v->code, code, (size_t)(end - code));
    cr_assert_eq(hvp_cpu_map(v->cpu, CODE, 0x1000, v->code, 7), 0);
    cr_assert_eq(hvp_cpu_map(v->cpu, DATA, 0x2000, v->data, 3), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
    v->st.rip = CODE;
    v->st.gpr[6] = DATA;
}

static void vm_run(struct vm *v, uint64_t budget)
{
    cr_assert_eq(hvp_cpu_set_state(v->cpu, &v->st), 0);
    cr_assert_eq(hvp_cpu_run(v->cpu, budget, &v->ex), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
}

static void vm_fini(struct vm *v)
{
    hvp_cpu_destroy(v->cpu);
    munmap(v->code, 0x1000);
    munmap(v->data, 0x2000);
}

static void expect_exc(struct vm *v, unsigned vector)
{
    cr_assert_eq(v->ex.reason, HVP_CPU_EXIT_EXCEPTION, "exit %u", v->ex.reason);
    cr_assert_eq(v->ex.u.exception.vector, vector, "vector %u, want %u", v->ex.u.exception.vector,
                 vector);
    cr_assert_eq(v->st.rip, CODE, "a fault leaves RIP at the instruction");
}

ASM_RO(s_movaps_unaligned, "movaps xmm0, [rsi+8]");
ASM_RO(s_movdqa_st_unaligned, "movdqa [rsi+4], xmm1");
ASM_RO(s_addps_unaligned, "addps xmm0, [rsi+1]");
ASM_RO(s_addss_unaligned, "addss xmm0, [rsi+1]\n movups xmm1, [rsi+3]\n movsd xmm2, [rsi+5]");

Test(sse, alignment)
{
    struct vm v;
    vm_init(&v, s_movaps_unaligned, s_movaps_unaligned_end);
    memset(v.st.fpu.xmm[0], 0x5a, 16);
    vm_run(&v, 1);
    expect_exc(&v, 13);
    cr_assert_eq(v.ex.u.exception.error_code, 0);
    cr_assert_eq(v.st.fpu.xmm[0][0], 0x5a, "xmm0 untouched");
    vm_fini(&v);

    vm_init(&v, s_movdqa_st_unaligned, s_movdqa_st_unaligned_end);
    memset(v.st.fpu.xmm[1], 0x77, 16);
    vm_run(&v, 1);
    expect_exc(&v, 13);
    cr_assert_eq(v.data[4], 0, "memory untouched");
    vm_fini(&v);

    vm_init(&v, s_addps_unaligned, s_addps_unaligned_end);
    vm_run(&v, 1);
    expect_exc(&v, 13);
    vm_fini(&v);

    /* scalar and unaligned forms do not fault */
    vm_init(&v, s_addss_unaligned, s_addss_unaligned_end);
    vm_run(&v, 3);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.rip, CODE + (uint64_t)(s_addss_unaligned_end - s_addss_unaligned));
    vm_fini(&v);
}

/* A 16-byte access that crosses into an unmapped page: #PF, nothing written. */
ASM_RO(s_movups_cross, "movups [rsi+0x1ff8], xmm0");

Test(sse, page_crossing_fault)
{
    struct vm v;
    vm_init(&v, s_movups_cross, s_movups_cross_end);
    cr_assert_eq(hvp_cpu_unmap(v.cpu, DATA + 0x1000, 0x1000), 0);
    v.st.gpr[6] = DATA - 0x1000;
    memset(v.st.fpu.xmm[0], 0x11, 16);
    vm_run(&v, 1);
    expect_exc(&v, 14);
    cr_assert_eq(v.ex.u.exception.cr2, DATA + 0x1000);
    cr_assert_eq(v.data[0xff8], 0, "first page untouched");
    vm_fini(&v);
}

ASM_RO(s_ldmxcsr, "ldmxcsr [rsi]");

Test(sse, ldmxcsr_reserved_bits)
{
    struct vm v;
    vm_init(&v, s_ldmxcsr, s_ldmxcsr_end);
    uint32_t good = 0xffff;
    memcpy(v.data, &good, 4);
    vm_run(&v, 1);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.fpu.mxcsr, 0xffff);
    vm_fini(&v);

    vm_init(&v, s_ldmxcsr, s_ldmxcsr_end);
    uint32_t bad = 0x10000 | 0x1f80;
    memcpy(v.data, &bad, 4);
    vm_run(&v, 1);
    expect_exc(&v, 13);
    cr_assert_eq(v.st.fpu.mxcsr, 0x1f80, "MXCSR unchanged");
    vm_fini(&v);
}

ASM_RO(s_divss, "divss xmm0, xmm1");
ASM_RO(s_addps_pe, "addps xmm0, xmm1");

Test(sse, xm_on_unmasked_exception)
{
    struct vm v;
    float one = 1.0f, zero = 0.0f;
    /* 1/0 with ZE unmasked: #XM, ZE set, xmm0 unchanged */
    vm_init(&v, s_divss, s_divss_end);
    memcpy(v.st.fpu.xmm[0], &one, 4);
    memcpy(v.st.fpu.xmm[1], &zero, 4);
    v.st.fpu.mxcsr = 0x1f80 & ~0x200u;
    vm_run(&v, 1);
    expect_exc(&v, 19);
    cr_assert_eq(v.st.fpu.mxcsr & 0x3f, 0x04);
    cr_assert_eq(memcmp(v.st.fpu.xmm[0], &one, 4), 0, "destination unchanged");
    vm_fini(&v);

    /* the same masked: inf and ZE */
    vm_init(&v, s_divss, s_divss_end);
    memcpy(v.st.fpu.xmm[0], &one, 4);
    memcpy(v.st.fpu.xmm[1], &zero, 4);
    v.st.fpu.mxcsr = 0x1f80;
    vm_run(&v, 1);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.fpu.mxcsr, 0x1f84);
    float r;
    memcpy(&r, v.st.fpu.xmm[0], 4);
    cr_assert(isinf(r));
    vm_fini(&v);

    /* inexact with PE unmasked: #XM, PE set */
    vm_init(&v, s_addps_pe, s_addps_pe_end);
    float a = 1.0f, b = 1e-10f;
    memcpy(v.st.fpu.xmm[0], &a, 4);
    memcpy(v.st.fpu.xmm[1], &b, 4);
    v.st.fpu.mxcsr = 0x1f80 & ~0x1000u;
    vm_run(&v, 1);
    expect_exc(&v, 19);
    cr_assert_eq(v.st.fpu.mxcsr & 0x3f, 0x20);
    vm_fini(&v);
}

ASM_RO(s_mmx, "movq mm2, rax\n paddb mm2, mm2\n movq rbx, mm2\n emms\n");

Test(sse, mmx_aliases_x87)
{
    struct vm v;
    vm_init(&v, s_mmx, s_mmx_end);
    v.st.gpr[0] = 0x0102030405060708ull;
    v.st.fpu.fsw = 5u << 11; /* TOP = 5 */
    v.st.fpu.ftw = 0;
    vm_run(&v, 3);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.gpr[3], 0x020406080a0c0e10ull);
    cr_assert_eq((v.st.fpu.fsw >> 11) & 7, 0, "TOP = 0");
    cr_assert_eq(v.st.fpu.ftw, 0xff, "all tags valid");
    cr_assert_eq(v.st.fpu.st[2][8], 0xff, "exponent bits all ones");
    cr_assert_eq(v.st.fpu.st[2][9], 0xff);
    uint64_t m;
    memcpy(&m, v.st.fpu.st[2], 8);
    cr_assert_eq(m, 0x020406080a0c0e10ull, "MM2 is ST(2) with TOP = 0");
    vm_run(&v, 1); /* EMMS */
    cr_assert_eq(v.st.fpu.ftw, 0, "EMMS empties the tags");
    vm_fini(&v);
}

/* A compiled loop of the kind glibc and gcc produce: strlen with SSE2. */
ASM_RO(s_strlen, "mov rdi, rsi\n pxor xmm0, xmm0\n"
                 "1: movdqa xmm1, [rsi]\n pcmpeqb xmm1, xmm0\n pmovmskb eax, xmm1\n"
                 "test eax, eax\n jnz 2f\n add rsi, 16\n jmp 1b\n"
                 "2: bsf eax, eax\n sub rsi, rdi\n add rax, rsi\n syscall\n");

Test(sse, strlen_loop)
{
    struct vm v;
    vm_init(&v, s_strlen, s_strlen_end);
    memset(v.data, 'x', 1000);
    v.data[777] = 0;
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_SYSCALL);
    cr_assert_eq(v.st.gpr[0], 777);
    vm_fini(&v);
}

ASM_RO(s_mmx_mf, "paddb mm0, mm1");

Test(sse, mmx_pending_x87_exception_is_mf)
{
    struct vm v;
    vm_init(&v, s_mmx_mf, s_mmx_mf_end);
    v.st.fpu.fcw = 0x37e;           /* IE unmasked */
    v.st.fpu.fsw = 0x0001 | 0x8080; /* IE pending: ES, B */
    v.st.fpu.ftw = 0;
    vm_run(&v, 1);
    expect_exc(&v, 16);
    cr_assert_eq(v.st.fpu.ftw, 0, "the x87 state is untouched");
    vm_fini(&v);
}

/* ---- MMX transitions, DPPD flags, SHA ---- */

ASM_RO(s_emms, "emms");

Test(sse, emms_sets_top_0)
{
    struct vm v;
    vm_init(&v, s_emms, s_emms_end);
    v.st.fpu.fsw = 5u << 11; /* TOP = 5 */
    v.st.fpu.ftw = 0xff;
    memset(v.st.fpu.st[0], 0x5a, 10); /* ST(0) = physical register 5 */
    vm_run(&v, 1);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.fpu.fsw, 0, "TOP = 0");
    cr_assert_eq(v.st.fpu.ftw, 0, "all tags empty");
    cr_assert_eq(v.st.fpu.st[5][0], 0x5a, "physical register 5 is ST(5) now");
    vm_fini(&v);
}

ASM_RO(s_cvtpi2ps_r, "cvtpi2ps xmm0, mm1");
ASM_RO(s_cvtpi2ps_m, "cvtpi2ps xmm0, [rsi]");
ASM_RO(s_cvtps2pi, "cvtps2pi mm1, xmm1");

/* An unmasked precision exception: #XM, but the MMX transition (TOP = 0,
 * all tags valid) has happened already for an mm operand (as the host). */
Test(sse, cvt_mmx_transition_before_xm)
{
    static const struct {
        const uint8_t *code, *end;
        bool mmx;
    } t[] = {
        {s_cvtpi2ps_r, s_cvtpi2ps_r_end, true},
        {s_cvtpi2ps_m, s_cvtpi2ps_m_end, false},
        {s_cvtps2pi, s_cvtps2pi_end, true},
    };
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct vm v;
        vm_init(&v, t[i].code, t[i].end);
        v.st.fpu.fsw = 3u << 11; /* TOP = 3: MM1 is ST(6) */
        v.st.fpu.ftw = 0;
        v.st.fpu.mxcsr = 0x1f80 & ~0x1000u;   /* PE unmasked */
        uint64_t big = 0x7fffffff7fffffffull; /* inexact as floats */
        memcpy(v.st.fpu.st[6], &big, 8);
        memcpy(v.data, &big, 8);
        float f[4] = {1.5f, 2.5f, 0, 0}; /* inexact as integers */
        memcpy(v.st.fpu.xmm[1], f, 16);
        vm_run(&v, 1);
        expect_exc(&v, 19);
        cr_assert_eq(v.st.fpu.mxcsr & 0x3f, 0x20, "form %u: PE", i);
        cr_assert_eq((v.st.fpu.fsw >> 11) & 7, t[i].mmx ? 0u : 3u, "form %u: TOP", i);
        cr_assert_eq(v.st.fpu.ftw, t[i].mmx ? 0xff : 0, "form %u: tags", i);
        vm_fini(&v);
    }
}

ASM_RO(s_dppd, "dppd xmm0, xmm1, 0x31");

/* A tiny product that is exact with an unbounded exponent: UE unmasked
 * raises #XM with UE alone; masked, the denormal is inexact: UE and PE. */
Test(sse, dppd_unmasked_underflow_exact)
{
    for (unsigned masked = 0; masked < 2; masked++) {
        struct vm v;
        vm_init(&v, s_dppd, s_dppd_end);
        double a[2] = {0x1p-600, 1.0}, b[2] = {0x1p-600, 1.0};
        memcpy(v.st.fpu.xmm[0], a, 16);
        memcpy(v.st.fpu.xmm[1], b, 16);
        v.st.fpu.mxcsr = masked ? 0x1f80 : 0x1f80 & ~0x800u;
        vm_run(&v, 1);
        if (masked) {
            cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
            cr_assert_eq(v.st.fpu.mxcsr & 0x3f, 0x30, "UE PE");
        } else {
            expect_exc(&v, 19);
            cr_assert_eq(v.st.fpu.mxcsr & 0x3f, 0x10, "UE alone");
        }
        vm_fini(&v);
    }
}

/* SHA: known answers (from the host's SHA instructions) for
 * xmm1 = 0123456789abcdef fedcba9876543210, xmm2 = 0f1e2d3c4b5a6978
 * 8796a5b4c3d2e1f0, xmm0 = 1111111122222222 428a2f9871374491. */
ASM_RO(s_sha1rnds4_0, "sha1rnds4 xmm1, xmm2, 0");
ASM_RO(s_sha1rnds4_3, "sha1rnds4 xmm1, xmm2, 3");
ASM_RO(s_sha1nexte, "sha1nexte xmm1, xmm2");
ASM_RO(s_sha1msg1, "sha1msg1 xmm1, xmm2");
ASM_RO(s_sha1msg2, "sha1msg2 xmm1, xmm2");
ASM_RO(s_sha256rnds2, "sha256rnds2 xmm1, xmm2, xmm0");
ASM_RO(s_sha256msg1, "sha256msg1 xmm1, xmm2");
ASM_RO(s_sha256msg2_m, "sha256msg2 xmm1, [rsi+3]"); /* misaligned: no #GP */

Test(sse, sha_known_answers)
{
    static const struct {
        const char *name;
        const uint8_t *code, *end;
        uint64_t lo, hi;
    } t[] = {
        {"sha1rnds4 0", s_sha1rnds4_0, s_sha1rnds4_0_end, 0x6dfc76b363398393ull,
         0x933e756dc17a2516ull},
        {"sha1rnds4 3", s_sha1rnds4_3, s_sha1rnds4_3_end, 0x62d0a5487fc33856ull,
         0x705b4d41965789ceull},
        {"sha1nexte", s_sha1nexte, s_sha1nexte_end, 0x8796a5b4c3d2e1f0ull, 0xcf66fe954b5a6978ull},
        {"sha1msg1", s_sha1msg1, s_sha1msg1_end, 0xf1c297a43d0e5b68ull, 0xffffffffffffffffull},
        {"sha1msg2", s_sha1msg2, s_sha1msg2_end, 0x7a1cb6d0c54cd45dull, 0x94f2583e1c7ad0b6ull},
        {"sha256rnds2", s_sha256rnds2, s_sha256rnds2_end, 0x2489d1d01cee7249ull,
         0x756d99f6b0f01558ull},
        {"sha256msg1", s_sha256msg1, s_sha256msg1_end, 0x3c3a86e476d443a1ull,
         0x42a50e70a92bbc5dull},
        {"sha256msg2 m", s_sha256msg2_m, s_sha256msg2_m_end, 0xd216fc7fefd62c6cull,
         0xa2a7dc5d5d2bed89ull},
    };
    const uint64_t x0[2] = {0x428a2f9871374491ull, 0x1111111122222222ull};
    const uint64_t x1[2] = {0xfedcba9876543210ull, 0x0123456789abcdefull};
    const uint64_t x2[2] = {0x8796a5b4c3d2e1f0ull, 0x0f1e2d3c4b5a6978ull};
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct vm v;
        vm_init(&v, t[i].code, t[i].end);
        memcpy(v.st.fpu.xmm[0], x0, 16);
        memcpy(v.st.fpu.xmm[1], x1, 16);
        memcpy(v.st.fpu.xmm[2], x2, 16);
        memcpy(v.data + 3, x2, 16);
        vm_run(&v, 1);
        cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET, "%s: exit %u", t[i].name, v.ex.reason);
        uint64_t r[2];
        memcpy(r, v.st.fpu.xmm[1], 16);
        cr_assert(r[0] == t[i].lo && r[1] == t[i].hi, "%s: %016lx%016lx", t[i].name,
                  (unsigned long)r[1], (unsigned long)r[0]);
        vm_fini(&v);
    }
}

#define SHA_FORMS(X)                                                                               \
    X(sha1rnds4_0, "sha1rnds4 xmm0, xmm1, 0", K_INT)                                               \
    X(sha1rnds4_1, "sha1rnds4 xmm0, xmm1, 1", K_INT)                                               \
    X(sha1rnds4_2, "sha1rnds4 xmm0, xmm1, 2", K_INT)                                               \
    X(sha1rnds4_3m, "sha1rnds4 xmm0, [rsi], 3", K_INT)                                             \
    X(sha1nexte, "sha1nexte xmm0, xmm1", K_INT)                                                    \
    X(sha1msg1, "sha1msg1 xmm0, xmm1", K_INT)                                                      \
    X(sha1msg2_m, "sha1msg2 xmm0, [rsi]", K_INT)                                                   \
    X(sha256rnds2, "sha256rnds2 xmm1, xmm2, xmm0", K_INT)                                          \
    X(sha256rnds2_m, "sha256rnds2 xmm3, [rsi], xmm0", K_INT)                                       \
    X(sha256msg1, "sha256msg1 xmm0, xmm1", K_INT)                                                  \
    X(sha256msg2, "sha256msg2 xmm2, xmm3", K_INT)

SHA_FORMS(DEF_FORM)
static const struct form sha_forms[] = {SHA_FORMS(TAB_FORM)};

/* Random inputs against the host's SHA instructions (where it has them),
 * the memory operand aligned or not. */
Test(sse, sha_match_host, .timeout = 120)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("sha")) cr_skip_test("the host has no SHA instructions");
    struct runner r;
    runner_init(&r);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t f = 0; f < sizeof sha_forms / sizeof sha_forms[0]; f++) {
        const struct form *fm = &sha_forms[f];
        size_t len = (size_t)(fm->end - fm->code);
        runner_load(&r, fm->code, len);
        for (unsigned it = 0; it < ITER; it++) {
            struct ctx in, h, g;
            uint8_t mem[MLEN];
            random_ctx(&seed, &in, mem, fm->kind);
            in.skew = it % 3 ? 0 : 5;
            h = g = in;
            run_host(&r, &h, mem);
            uint64_t rip;
            struct hvp_cpu_exit ex = run_guest(&r, &g, mem, &rip);
            bool ok = ex.reason == HVP_CPU_EXIT_BUDGET && rip == CODE + len &&
                      !memcmp(h.x, g.x, sizeof h.x) && h.mxcsr == g.mxcsr &&
                      (h.fl & ARITH) == (g.fl & ARITH);
            if (!ok) {
                dump("in  ", &in);
                dump("host", &h);
                dump("hvp ", &g);
            }
            cr_assert(ok, "%s: mismatch at iteration %u (exit %u vector %u)", fm->name, it,
                      ex.reason, ex.u.exception.vector);
        }
    }
    runner_fini(&r);
}
