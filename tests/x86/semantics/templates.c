/* Instruction templates: the forms tested, and a generator that turns a
 * template plus a case number into machine code and an input state.
 *
 * Each template names its encoding (prefix, map, opcode, ModRM use), its
 * operand kinds and sizes, the flags the Intel SDM leaves undefined, and
 * special input needs (shift counts, divisors, string pointers...). The
 * generator picks random registers (REX high registers, AH..BH where
 * encodable), random addressing forms into the data page and random
 * immediates, then checks with hvp_x86_decode that the bytes decode to the
 * intended instruction.
 */
#include <cpuid.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hvp/x86.h"
#include "sem.h"

enum { K_NONE, K_GPR, K_XMM, K_MMX, K_ST };
enum { RM_ANY, RM_MEM, RM_REG };
enum { FM_NONE, FM_RM, FM_EXT, FM_OPREG, FM_FIX, FM_REL };
enum {
    I_BASE,
    I_X87,
    I_MMX,
    I_SSE,
    I_SSE2,
    I_SSE3,
    I_SSSE3,
    I_SSE41,
    I_SSE42,
    I_POPCNT,
    I_LZCNT,
    I_BMI1,
    I_BMI2,
    I_ADX,
    I_MOVBE,
    I_CX16,
    I_AES,
    I_PCLMUL,
    I_SHA,
    I_LAHF,
    I_COUNT
};

/* Special input handling. */
#define S_LOCK     0x00000001u /* LOCK prefix sometimes (memory forms; #UD otherwise) */
#define S_SHIFT    0x00000002u /* shl/shr/sar: count-dependent undefined flags */
#define S_ROT      0x00000004u /* rol/ror/rcl/rcr */
#define S_SHD      0x00000008u /* shld/shrd */
#define S_CL       0x00000010u /* count in CL */
#define S_DIV      0x00000020u /* div: dividend/divisor without overflow mostly */
#define S_IDIV     0x00000040u
#define S_STR      0x00000080u /* string instruction: rsi/rdi/rcx in the data page */
#define S_BRANCH   0x00000100u /* rel displacement = SEM_BRANCH_DISP */
#define S_STACK    0x00000200u /* uses the stack: rsp fixed */
#define S_RET      0x00000400u /* [rsp] = the taken landing address */
#define S_POPF     0x00000800u /* [rsp] = a harmless RFLAGS image */
#define S_CMPX     0x00001000u /* cmpxchg: accumulator equal to the operand half the time */
#define S_CX8      0x00002000u /* cmpxchg8b/16b */
#define S_BITOFF   0x00004000u /* bt* m, r: small signed bit offset */
#define S_ALIGN    0x00008000u /* memory operand must be aligned (misaligned sometimes: #GP) */
#define S_FPMEM    0x00010000u /* memory holds a floating-point value of msz bytes */
#define S_INTMEM   0x00020000u /* memory holds an interesting integer */
#define S_X87      0x00040000u /* x87 instruction */
#define S_LEA      0x00080000u /* memory operand not accessed: random base/index */
#define S_ZSRC     0x00100000u /* source operand zero sometimes */
#define S_XLAT     0x00200000u
#define S_LOOP     0x00400000u /* rcx small */
#define S_PCMPSTR  0x00800000u
#define S_BCD      0x01000000u /* fbld: memory holds packed BCD */
#define S_FCW      0x02000000u /* fldcw: memory holds a control word */
#define S_MXCSR    0x04000000u /* ldmxcsr: memory holds an MXCSR value */
#define S_SHORTSRC 0x08000000u /* shifts by register: small counts in the low qword */
#define S_STRREP   0x10000000u /* REP string: rcx small */
#define S_PRIV     0x20000000u /* privileged at CPL 3: hvp's #UD is a mismatch, not "unimplemented" */
#define S_MOFFS    0x40000000u /* mov moffs: the immediate is an address in the data page */
#define S_ENTER    0x80000000u /* enter: rbp in the data page */
#define S_LEAVE    0x100000000ull
#define S_MASKMOV  0x200000000ull /* maskmovq/maskmovdqu: rdi in the data page */
#define S_FXSAVE   0x400000000ull /* stores an FXSAVE image: FIP/FDP/FOP, MXCSR_MASK not compared */
#define S_FXRSTOR  0x800000000ull /* loads an FXSAVE image: memory holds a plausible one */
#define S_ENV      0x1000000000ull /* stores an x87 environment: FIP/FDP/FOP, reserved not compared */
#define S_INVALID  0x2000000000ull /* no such instruction in 64-bit mode: #UD, does not decode */
#define S_INDIRECT 0x4000000000ull /* jmp/call r/m64: the operand is the taken landing address */

struct sem_tmpl {
    char name[72];
    const char *mn;
    uint8_t pfx, map, opc, form, ext;
    uint8_t osz; /* GPR operand size; 0 = none */
    uint8_t regk, rmk, rm;
    uint16_t msz; /* memory access size */
    uint8_t imm;  /* immediate bytes */
    uint8_t vex, vexw, vexk;
    uint8_t isa;
    uint8_t rmsz;      /* size of a GPR r/m operand when it differs from osz */
    uint16_t undef;    /* RFLAGS bits left undefined */
    uint16_t fswundef; /* x87 status bits left undefined */
    uint16_t fixed;    /* implicit GPRs with special values */
    uint64_t spec;
    uint32_t hash;
};

#define MAXT 1600
static struct sem_tmpl tt[MAXT];
static unsigned nt;

#define RAX (1u << 0)
#define RCX (1u << 1)
#define RDX (1u << 2)
#define RBX (1u << 3)
#define RSP (1u << 4)
#define RSI (1u << 6)
#define RDI (1u << 7)
#define RBP (1u << 5)

#define FSW_C0   0x0100
#define FSW_C1   0x0200
#define FSW_C2   0x0400
#define FSW_C3   0x4000
#define FSW_C023 (FSW_C0 | FSW_C2 | FSW_C3)
#define FSW_CALL (FSW_C023 | FSW_C1)

/* ---- table building ---- */

static struct sem_tmpl *add(const char *mn, const char *ops, uint8_t pfx, uint8_t map, uint8_t opc,
                            uint8_t form, uint8_t ext, uint8_t osz)
{
    if (nt >= MAXT) {
        fprintf(stderr, "semantics: template table full\n");
        exit(2);
    }
    struct sem_tmpl *t = &tt[nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s%s%s", mn, *ops ? " " : "", ops);
    t->mn = mn;
    t->pfx = pfx;
    t->map = map;
    t->opc = opc;
    t->form = form;
    t->ext = ext;
    t->osz = osz;
    t->regk = t->rmk = K_GPR;
    t->msz = osz;
    return t;
}

static const char *bits(unsigned osz)
{
    return osz == 1 ? "8" : osz == 2 ? "16" : osz == 4 ? "32" : osz == 8 ? "64" : "128";
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    static char buf[8][64];
    static unsigned i;
    char *b = buf[i++ & 7];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, 64, f, ap);
    va_end(ap);
    return b;
}

static const uint8_t vsz[] = {2, 4, 8};
static uint8_t immz(unsigned osz)
{
    return osz == 2 ? 2 : 4;
}

static void integer_templates(void)
{
    static const char *alu[] = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
    struct sem_tmpl *t;
    for (unsigned k = 0; k < 8; k++) {
        const char *mn = alu[k];
        uint16_t u = (k == 1 || k == 4 || k == 6) ? FL_AF : 0;
        uint32_t lk = k != 7 ? S_LOCK : 0;
        t = add(mn, "r/m8, r8", 0, 0, k * 8, FM_RM, 0, 1), t->undef = u, t->spec = lk;
        t = add(mn, "r8, r/m8", 0, 0, k * 8 + 2, FM_RM, 0, 1), t->undef = u;
        t = add(mn, "al, imm8", 0, 0, k * 8 + 4, FM_NONE, 0, 1), t->undef = u, t->imm = 1;
        t = add(mn, "r/m8, imm8", 0, 0, 0x80, FM_EXT, k, 1), t->undef = u, t->imm = 1, t->spec = lk;
        for (unsigned i = 0; i < 3; i++) {
            unsigned s = vsz[i];
            const char *b = bits(s);
            t = add(mn, fmt("r/m%s, r%s", b, b), 0, 0, k * 8 + 1, FM_RM, 0, s), t->undef = u,
            t->spec = lk;
            t = add(mn, fmt("r%s, r/m%s", b, b), 0, 0, k * 8 + 3, FM_RM, 0, s), t->undef = u;
            t = add(mn,
                    fmt("%s, imm", s == 2   ? "ax"
                                   : s == 4 ? "eax"
                                            : "rax"),
                    0, 0, k * 8 + 5, FM_NONE, 0, s),
            t->undef = u, t->imm = immz(s);
            t = add(mn, fmt("r/m%s, imm", b), 0, 0, 0x81, FM_EXT, k, s), t->undef = u,
            t->imm = immz(s), t->spec = lk;
            t = add(mn, fmt("r/m%s, imm8", b), 0, 0, 0x83, FM_EXT, k, s), t->undef = u, t->imm = 1,
            t->spec = lk;
        }
    }
    /* test, inc/dec, neg/not, mul/imul/div/idiv */
    t = add("test", "r/m8, r8", 0, 0, 0x84, FM_RM, 0, 1), t->undef = FL_AF;
    t = add("test", "al, imm8", 0, 0, 0xa8, FM_NONE, 0, 1), t->undef = FL_AF, t->imm = 1;
    t = add("test", "r/m8, imm8", 0, 0, 0xf6, FM_EXT, 0, 1), t->undef = FL_AF, t->imm = 1;
    t = add("inc", "r/m8", 0, 0, 0xfe, FM_EXT, 0, 1), t->spec = S_LOCK;
    t = add("dec", "r/m8", 0, 0, 0xfe, FM_EXT, 1, 1), t->spec = S_LOCK;
    t = add("not", "r/m8", 0, 0, 0xf6, FM_EXT, 2, 1), t->spec = S_LOCK;
    t = add("neg", "r/m8", 0, 0, 0xf6, FM_EXT, 3, 1), t->spec = S_LOCK;
    t = add("mul", "r/m8", 0, 0, 0xf6, FM_EXT, 4, 1), t->undef = FL_SF | FL_ZF | FL_AF | FL_PF;
    t = add("imul", "r/m8", 0, 0, 0xf6, FM_EXT, 5, 1), t->undef = FL_SF | FL_ZF | FL_AF | FL_PF;
    t = add("div", "r/m8", 0, 0, 0xf6, FM_EXT, 6, 1), t->undef = FL_STATUS, t->spec = S_DIV,
    t->fixed = RAX;
    t = add("idiv", "r/m8", 0, 0, 0xf6, FM_EXT, 7, 1), t->undef = FL_STATUS, t->spec = S_IDIV,
    t->fixed = RAX;
    for (unsigned i = 0; i < 3; i++) {
        unsigned s = vsz[i];
        const char *b = bits(s);
        t = add("test", fmt("r/m%s, r%s", b, b), 0, 0, 0x85, FM_RM, 0, s), t->undef = FL_AF;
        t = add("test",
                fmt("%s, imm", s == 2   ? "ax"
                               : s == 4 ? "eax"
                                        : "rax"),
                0, 0, 0xa9, FM_NONE, 0, s),
        t->undef = FL_AF, t->imm = immz(s);
        t = add("test", fmt("r/m%s, imm", b), 0, 0, 0xf7, FM_EXT, 0, s), t->undef = FL_AF,
        t->imm = immz(s);
        t = add("inc", fmt("r/m%s", b), 0, 0, 0xff, FM_EXT, 0, s), t->spec = S_LOCK;
        t = add("dec", fmt("r/m%s", b), 0, 0, 0xff, FM_EXT, 1, s), t->spec = S_LOCK;
        t = add("not", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 2, s), t->spec = S_LOCK;
        t = add("neg", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 3, s), t->spec = S_LOCK;
        t = add("mul", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 4, s),
        t->undef = FL_SF | FL_ZF | FL_AF | FL_PF;
        t = add("imul", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 5, s),
        t->undef = FL_SF | FL_ZF | FL_AF | FL_PF;
        t = add("div", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 6, s), t->undef = FL_STATUS,
        t->spec = S_DIV, t->fixed = RAX | RDX;
        t = add("idiv", fmt("r/m%s", b), 0, 0, 0xf7, FM_EXT, 7, s), t->undef = FL_STATUS,
        t->spec = S_IDIV, t->fixed = RAX | RDX;
        t = add("imul", fmt("r%s, r/m%s", b, b), 0, 1, 0xaf, FM_RM, 0, s),
        t->undef = FL_SF | FL_ZF | FL_AF | FL_PF;
        t = add("imul", fmt("r%s, r/m%s, imm", b, b), 0, 0, 0x69, FM_RM, 0, s),
        t->undef = FL_SF | FL_ZF | FL_AF | FL_PF, t->imm = immz(s);
        t = add("imul", fmt("r%s, r/m%s, imm8", b, b), 0, 0, 0x6b, FM_RM, 0, s),
        t->undef = FL_SF | FL_ZF | FL_AF | FL_PF, t->imm = 1;
    }
    /* shifts and rotates: by 1, by CL, by imm8 */
    static const char *sh[] = {"rol", "ror", "rcl", "rcr", "shl", "shr", "shl", "sar"};
    for (unsigned k = 0; k < 8; k++) {
        uint32_t sp = k < 4 ? S_ROT : S_SHIFT;
        for (unsigned s = 1; s <= 8; s *= 2) {
            const char *b = bits(s);
            unsigned w = s == 1 ? 0 : 1;
            const char *alias = k == 6 ? " (/6)" : "";
            t = add(sh[k], fmt("r/m%s, 1%s", b, alias), 0, 0, 0xd0 + w, FM_EXT, k, s), t->spec = sp;
            t = add(sh[k], fmt("r/m%s, cl%s", b, alias), 0, 0, 0xd2 + w, FM_EXT, k, s),
            t->spec = sp | S_CL, t->fixed = RCX;
            t = add(sh[k], fmt("r/m%s, imm8%s", b, alias), 0, 0, 0xc0 + w, FM_EXT, k, s),
            t->spec = sp, t->imm = 1;
        }
    }
    for (unsigned i = 0; i < 3; i++) {
        unsigned s = vsz[i];
        const char *b = bits(s);
        t = add("shld", fmt("r/m%s, r%s, imm8", b, b), 0, 1, 0xa4, FM_RM, 0, s), t->spec = S_SHD,
        t->imm = 1;
        t = add("shld", fmt("r/m%s, r%s, cl", b, b), 0, 1, 0xa5, FM_RM, 0, s),
        t->spec = S_SHD | S_CL, t->fixed = RCX;
        t = add("shrd", fmt("r/m%s, r%s, imm8", b, b), 0, 1, 0xac, FM_RM, 0, s), t->spec = S_SHD,
        t->imm = 1;
        t = add("shrd", fmt("r/m%s, r%s, cl", b, b), 0, 1, 0xad, FM_RM, 0, s),
        t->spec = S_SHD | S_CL, t->fixed = RCX;
        /* bit tests */
        static const char *bt[] = {"bt", "bts", "btr", "btc"};
        for (unsigned j = 0; j < 4; j++) {
            uint16_t u = FL_OF | FL_SF | FL_AF | FL_PF;
            t = add(bt[j], fmt("r/m%s, r%s", b, b), 0, 1, 0xa3 + 8 * j, FM_RM, 0, s), t->undef = u,
            t->spec = S_BITOFF | (j ? S_LOCK : 0);
            t = add(bt[j], fmt("r/m%s, imm8", b), 0, 1, 0xba, FM_EXT, 4 + j, s), t->undef = u,
            t->imm = 1, t->spec = j ? S_LOCK : 0;
        }
        uint16_t bsu = FL_CF | FL_OF | FL_SF | FL_AF | FL_PF;
        t = add("bsf", fmt("r%s, r/m%s", b, b), 0, 1, 0xbc, FM_RM, 0, s), t->undef = bsu,
        t->spec = S_ZSRC;
        t = add("bsr", fmt("r%s, r/m%s", b, b), 0, 1, 0xbd, FM_RM, 0, s), t->undef = bsu,
        t->spec = S_ZSRC;
        uint16_t lzu = FL_OF | FL_SF | FL_AF | FL_PF;
        t = add("tzcnt", fmt("r%s, r/m%s", b, b), 0xf3, 1, 0xbc, FM_RM, 0, s), t->undef = lzu,
        t->spec = S_ZSRC, t->isa = I_BMI1;
        t = add("lzcnt", fmt("r%s, r/m%s", b, b), 0xf3, 1, 0xbd, FM_RM, 0, s), t->undef = lzu,
        t->spec = S_ZSRC, t->isa = I_LZCNT;
        t = add("popcnt", fmt("r%s, r/m%s", b, b), 0xf3, 1, 0xb8, FM_RM, 0, s), t->spec = S_ZSRC,
        t->isa = I_POPCNT;
        /* exchanges */
        t = add("cmpxchg", fmt("r/m%s, r%s", b, b), 0, 1, 0xb1, FM_RM, 0, s),
        t->spec = S_LOCK | S_CMPX, t->fixed = RAX;
        t = add("xadd", fmt("r/m%s, r%s", b, b), 0, 1, 0xc1, FM_RM, 0, s), t->spec = S_LOCK;
        t = add("xchg", fmt("r/m%s, r%s", b, b), 0, 0, 0x87, FM_RM, 0, s), t->spec = S_LOCK;
        t = add("xchg",
                fmt("r%s, %s", b,
                    s == 2   ? "ax"
                    : s == 4 ? "eax"
                             : "rax"),
                0, 0, 0x90, FM_OPREG, 0, s);
        /* moves */
        t = add("mov", fmt("r/m%s, r%s", b, b), 0, 0, 0x89, FM_RM, 0, s);
        t = add("mov", fmt("r%s, r/m%s", b, b), 0, 0, 0x8b, FM_RM, 0, s);
        t = add("mov", fmt("r/m%s, imm", b), 0, 0, 0xc7, FM_EXT, 0, s), t->imm = immz(s);
        t = add("mov", fmt("r%s, imm%s", b, b), 0, 0, 0xb8, FM_OPREG, 0, s), t->imm = s;
        t = add("movzx", fmt("r%s, r/m8", b), 0, 1, 0xb6, FM_RM, 0, s), t->rmsz = 1;
        t = add("movsx", fmt("r%s, r/m8", b), 0, 1, 0xbe, FM_RM, 0, s), t->rmsz = 1;
        if (s != 2) {
            t = add("movzx", fmt("r%s, r/m16", b), 0, 1, 0xb7, FM_RM, 0, s), t->rmsz = 2;
            t = add("movsx", fmt("r%s, r/m16", b), 0, 1, 0xbf, FM_RM, 0, s), t->rmsz = 2;
            t = add("bswap", fmt("r%s", b), 0, 1, 0xc8, FM_OPREG, 0, s);
            t = add("adcx", fmt("r%s, r/m%s", b, b), 0x66, 2, 0xf6, FM_RM, 0, s), t->isa = I_ADX;
            t = add("adox", fmt("r%s, r/m%s", b, b), 0xf3, 2, 0xf6, FM_RM, 0, s), t->isa = I_ADX;
        }
        t = add("movbe", fmt("r%s, m%s", b, b), 0, 2, 0xf0, FM_RM, 0, s), t->rm = RM_MEM,
        t->isa = I_MOVBE;
        t = add("movbe", fmt("m%s, r%s", b, b), 0, 2, 0xf1, FM_RM, 0, s), t->rm = RM_MEM,
        t->isa = I_MOVBE;
        t = add("lea", fmt("r%s, m", b), 0, 0, 0x8d, FM_RM, 0, s), t->rm = RM_MEM, t->spec = S_LEA;
        for (unsigned cc = 0; cc < 16; cc++) {
            static const char *ccn[] = {"o", "no", "b", "nb", "z", "nz", "be", "nbe",
                                        "s", "ns", "p", "np", "l", "nl", "le", "nle"};
            t = add(fmt("cmov%s", ccn[cc]), fmt("r%s, r/m%s", b, b), 0, 1, 0x40 + cc, FM_RM, 0, s);
            t->mn = strdup(t->mn);
        }
    }
    t = add("movsxd", "r64, r/m32", 0, 0, 0x63, FM_RM, 0, 8), t->rmsz = 4;
    t = add("cmpxchg", "r/m8, r8", 0, 1, 0xb0, FM_RM, 0, 1), t->spec = S_LOCK | S_CMPX,
    t->fixed = RAX;
    t = add("xadd", "r/m8, r8", 0, 1, 0xc0, FM_RM, 0, 1), t->spec = S_LOCK;
    t = add("xchg", "r/m8, r8", 0, 0, 0x86, FM_RM, 0, 1), t->spec = S_LOCK;
    t = add("mov", "r/m8, r8", 0, 0, 0x88, FM_RM, 0, 1);
    t = add("mov", "r8, r/m8", 0, 0, 0x8a, FM_RM, 0, 1);
    t = add("mov", "r/m8, imm8", 0, 0, 0xc6, FM_EXT, 0, 1), t->imm = 1;
    t = add("mov", "r8, imm8", 0, 0, 0xb0, FM_OPREG, 0, 1), t->imm = 1;
    t = add("cmpxchg8b", "m64", 0, 1, 0xc7, FM_EXT, 1, 0), t->rm = RM_MEM, t->msz = 8,
    t->spec = S_LOCK | S_CX8, t->fixed = RAX | RDX | RBX | RCX;
    t = add("cmpxchg16b", "m128", 0, 1, 0xc7, FM_EXT, 1, 8), t->rm = RM_MEM, t->msz = 16,
    t->spec = S_LOCK | S_CX8 | S_ALIGN, t->fixed = RAX | RDX | RBX | RCX, t->isa = I_CX16;
    for (unsigned cc = 0; cc < 16; cc++) {
        static const char *ccn[] = {"o", "no", "b", "nb", "z", "nz", "be", "nbe",
                                    "s", "ns", "p", "np", "l", "nl", "le", "nle"};
        t = add(strdup(fmt("set%s", ccn[cc])), "r/m8", 0, 1, 0x90 + cc, FM_EXT, 0, 1);
        t = add(strdup(fmt("j%s", ccn[cc])), "rel8", 0, 0, 0x70 + cc, FM_REL, 0, 0), t->imm = 1,
        t->spec = S_BRANCH;
        t = add(strdup(fmt("j%s", ccn[cc])), "rel32", 0, 1, 0x80 + cc, FM_REL, 0, 0), t->imm = 4,
        t->spec = S_BRANCH;
    }
    t = add("jmp", "rel8", 0, 0, 0xeb, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH;
    t = add("jmp", "rel32", 0, 0, 0xe9, FM_REL, 0, 0), t->imm = 4, t->spec = S_BRANCH;
    t = add("jrcxz", "rel8", 0, 0, 0xe3, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH | S_LOOP,
    t->fixed = RCX;
    t = add("jecxz", "rel8", 0x67, 0, 0xe3, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH | S_LOOP,
    t->fixed = RCX;
    t = add("loop", "rel8", 0, 0, 0xe2, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH | S_LOOP,
    t->fixed = RCX;
    t = add("loope", "rel8", 0, 0, 0xe1, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH | S_LOOP,
    t->fixed = RCX;
    t = add("loopne", "rel8", 0, 0, 0xe0, FM_REL, 0, 0), t->imm = 1, t->spec = S_BRANCH | S_LOOP,
    t->fixed = RCX;
    t = add("jmp", "r/m64", 0, 0, 0xff, FM_EXT, 4, 0), t->spec = S_INDIRECT, t->msz = 8;
    t = add("call", "r/m64", 0, 0, 0xff, FM_EXT, 2, 0), t->spec = S_INDIRECT | S_STACK, t->msz = 8,
    t->fixed = RSP;
    t = add("call", "rel32", 0, 0, 0xe8, FM_REL, 0, 0), t->imm = 4, t->spec = S_BRANCH | S_STACK,
    t->fixed = RSP;
    t = add("ret", "", 0, 0, 0xc3, FM_NONE, 0, 0), t->spec = S_STACK | S_RET, t->fixed = RSP;
    t = add("ret", "imm16", 0, 0, 0xc2, FM_NONE, 0, 0), t->spec = S_STACK | S_RET, t->fixed = RSP,
    t->imm = 2;
    /* string instructions, with and without REP, both directions */
    static const struct {
        const char *mn;
        uint8_t opc;
        uint16_t fixed;
    } str[] = {{"movs", 0xa4, RSI | RDI},
               {"cmps", 0xa6, RSI | RDI},
               {"stos", 0xaa, RDI | RAX},
               {"lods", 0xac, RSI | RAX},
               {"scas", 0xae, RDI | RAX}};
    for (unsigned i = 0; i < 5; i++) {
        bool cond = str[i].opc == 0xa6 || str[i].opc == 0xae;
        for (unsigned s = 1; s <= 8; s *= 2) {
            char mn[16];
            snprintf(mn, sizeof mn, "%s%c", str[i].mn, "?bw?d???q"[s]);
            for (unsigned r = 0; r < (cond ? 3u : 2u); r++) {
                static const uint8_t rp[] = {0, 0xf3, 0xf2};
                static const char *rn[] = {"", "rep ", "repne "};
                char nm[32];
                snprintf(nm, sizeof nm, "%s%s", r == 1 && cond ? "repe " : rn[r], mn);
                t = add(strdup(mn), "", rp[r], 0, str[i].opc + (s > 1), FM_NONE, 0, s);
                snprintf(t->name, sizeof t->name, "%s", nm);
                t->spec = S_STR | (r ? S_STRREP : 0);
                t->fixed = str[i].fixed | (r ? RCX : 0);
            }
        }
    }
    t = add("cbw", "", 0, 0, 0x98, FM_NONE, 0, 2);
    t = add("cwde", "", 0, 0, 0x98, FM_NONE, 0, 4);
    t = add("cdqe", "", 0, 0, 0x98, FM_NONE, 0, 8);
    t = add("cwd", "", 0, 0, 0x99, FM_NONE, 0, 2);
    t = add("cdq", "", 0, 0, 0x99, FM_NONE, 0, 4);
    t = add("cqo", "", 0, 0, 0x99, FM_NONE, 0, 8);
    t = add("lahf", "", 0, 0, 0x9f, FM_NONE, 0, 0), t->isa = I_LAHF;
    t = add("sahf", "", 0, 0, 0x9e, FM_NONE, 0, 0), t->isa = I_LAHF;
    t = add("clc", "", 0, 0, 0xf8, FM_NONE, 0, 0);
    t = add("stc", "", 0, 0, 0xf9, FM_NONE, 0, 0);
    t = add("cmc", "", 0, 0, 0xf5, FM_NONE, 0, 0);
    t = add("cld", "", 0, 0, 0xfc, FM_NONE, 0, 0);
    t = add("std", "", 0, 0, 0xfd, FM_NONE, 0, 0);
    t = add("nop", "", 0, 0, 0x90, FM_NONE, 0, 0);
    t = add("nop", "r/m32", 0, 1, 0x1f, FM_EXT, 0, 4), t->spec = S_LEA;
    t = add("xlat", "", 0, 0, 0xd7, FM_NONE, 0, 0), t->spec = S_XLAT, t->fixed = RBX;
    for (unsigned s = 2; s <= 8; s += 6) {
        const char *b = bits(s);
        t = add("push", fmt("r%s", b), 0, 0, 0x50, FM_OPREG, 0, s), t->spec = S_STACK,
        t->fixed = RSP;
        t = add("pop", fmt("r%s", b), 0, 0, 0x58, FM_OPREG, 0, s), t->spec = S_STACK,
        t->fixed = RSP;
        t = add("push", fmt("r/m%s", b), 0, 0, 0xff, FM_EXT, 6, s), t->spec = S_STACK,
        t->fixed = RSP;
        t = add("pop", fmt("r/m%s", b), 0, 0, 0x8f, FM_EXT, 0, s), t->spec = S_STACK,
        t->fixed = RSP;
        t = add("push", fmt("imm8 (o%s)", b), 0, 0, 0x6a, FM_NONE, 0, s), t->spec = S_STACK,
        t->fixed = RSP, t->imm = 1;
        t = add("push", fmt("imm (o%s)", b), 0, 0, 0x68, FM_NONE, 0, s), t->spec = S_STACK,
        t->fixed = RSP, t->imm = immz(s);
        t = add(s == 2 ? "pushf" : "pushfq", "", 0, 0, 0x9c, FM_NONE, 0, s), t->spec = S_STACK,
        t->fixed = RSP;
        t = add(s == 2 ? "popf" : "popfq", "", 0, 0, 0x9d, FM_NONE, 0, s),
        t->spec = S_STACK | S_POPF, t->fixed = RSP;
    }
    /* BMI1, BMI2 (VEX) */
    for (unsigned w = 0; w < 2; w++) {
        unsigned s = w ? 8 : 4;
        const char *b = bits(s);
        uint16_t u = FL_AF | FL_PF;
        t = add("andn", fmt("r%s, r%s, r/m%s", b, b, b), 0, 2, 0xf2, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->undef = u, t->isa = I_BMI1;
        t = add("bextr", fmt("r%s, r/m%s, r%s", b, b, b), 0, 2, 0xf7, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->undef = u | FL_SF, t->isa = I_BMI1;
        static const char *bl[] = {"blsr", "blsmsk", "blsi"};
        for (unsigned j = 0; j < 3; j++)
            t = add(bl[j], fmt("r%s, r/m%s", b, b), 0, 2, 0xf3, FM_EXT, 1 + j, s), t->vex = 1,
            t->vexw = w, t->vexk = K_GPR, t->undef = u, t->isa = I_BMI1;
        t = add("bzhi", fmt("r%s, r/m%s, r%s", b, b, b), 0, 2, 0xf5, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->undef = u, t->isa = I_BMI2;
        t = add("pext", fmt("r%s, r%s, r/m%s", b, b, b), 0xf3, 2, 0xf5, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
        t = add("pdep", fmt("r%s, r%s, r/m%s", b, b, b), 0xf2, 2, 0xf5, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
        t = add("mulx", fmt("r%s, r%s, r/m%s", b, b, b), 0xf2, 2, 0xf6, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
        t = add("rorx", fmt("r%s, r/m%s, imm8", b, b), 0xf2, 3, 0xf0, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->imm = 1, t->isa = I_BMI2;
        t = add("sarx", fmt("r%s, r/m%s, r%s", b, b, b), 0xf3, 2, 0xf7, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
        t = add("shlx", fmt("r%s, r/m%s, r%s", b, b, b), 0x66, 2, 0xf7, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
        t = add("shrx", fmt("r%s, r/m%s, r%s", b, b, b), 0xf2, 2, 0xf7, FM_RM, 0, s), t->vex = 1,
        t->vexw = w, t->vexk = K_GPR, t->isa = I_BMI2;
    }
    /* CRC32 */
    t = add("crc32", "r32, r/m8", 0xf2, 2, 0xf0, FM_RM, 0, 4), t->rmsz = 1, t->isa = I_SSE42;
    t = add("crc32", "r32, r/m16", 0xf2, 2, 0xf1, FM_RM, 0, 2), t->rmsz = 2, t->isa = I_SSE42,
    t = add("movnti", "m32, r32", 0, 1, 0xc3, FM_RM, 0, 4), t->rm = RM_MEM, t->isa = I_SSE2;
    t = add("movnti", "m64, r64", 0, 1, 0xc3, FM_RM, 0, 8), t->rm = RM_MEM, t->isa = I_SSE2;
    /* absolute moffs forms */
    t = add("mov", "al, moffs8", 0, 0, 0xa0, FM_NONE, 0, 1), t->imm = 8, t->spec = S_MOFFS;
    t = add("mov", "moffs8, al", 0, 0, 0xa2, FM_NONE, 0, 1), t->imm = 8, t->spec = S_MOFFS;
    for (unsigned i = 0; i < 3; i++) {
        unsigned s = vsz[i];
        const char *a = s == 2 ? "ax" : s == 4 ? "eax" : "rax";
        t = add("mov", fmt("%s, moffs%s", a, bits(s)), 0, 0, 0xa1, FM_NONE, 0, s), t->imm = 8,
        t->spec = S_MOFFS;
        t = add("mov", fmt("moffs%s, %s", bits(s), a), 0, 0, 0xa3, FM_NONE, 0, s), t->imm = 8,
        t->spec = S_MOFFS;
    }
    t = add("leave", "", 0, 0, 0xc9, FM_NONE, 0, 8), t->spec = S_STACK | S_LEAVE,
    t->fixed = RSP | RBP;
    t = add("leave", "(o16)", 0, 0, 0xc9, FM_NONE, 0, 2), t->spec = S_STACK | S_LEAVE,
    t->fixed = RSP | RBP;
    t = add("enter", "imm16, imm8", 0, 0, 0xc8, FM_NONE, 0, 8), t->imm = 3,
    t->spec = S_STACK | S_ENTER, t->fixed = RSP | RBP;
    t = add("pause", "", 0xf3, 0, 0x90, FM_NONE, 0, 0);
    /* exceptions: traps, and what CPL 3 may not do (#GP) */
    t = add("ud2", "", 0, 1, 0x0b, FM_NONE, 0, 0);
    /* gone in 64-bit mode, and LOCK where it is not allowed: #UD */
    static const struct {
        const char *name;
        uint8_t pfx, opc, ext;
    } inv[] = {{"push es", 0, 0x06, 0},
               {"pop es", 0, 0x07, 0},
               {"push cs", 0, 0x0e, 0},
               {"push ss", 0, 0x16, 0},
               {"push ds", 0, 0x1e, 0},
               {"daa", 0, 0x27, 0},
               {"das", 0, 0x2f, 0},
               {"aaa", 0, 0x37, 0},
               {"aas", 0, 0x3f, 0},
               {"pusha", 0, 0x60, 0},
               {"popa", 0, 0x61, 0},
               {"into", 0, 0xce, 0},
               {"aam", 0, 0xd4, 0x0a},
               {"aad", 0, 0xd5, 0x0a},
               {"salc", 0, 0xd6, 0},
               {"lock nop", 0xf0, 0x90, 0},
               {"lock mov r/m32, r32", 0xf0, 0x89, 0xc8}};
    for (size_t i = 0; i < sizeof inv / sizeof inv[0]; i++) {
        t = add("(bad)", "", inv[i].pfx, 0, inv[i].opc, inv[i].ext ? FM_FIX : FM_NONE, inv[i].ext,
                0);
        snprintf(t->name, sizeof t->name, "%s (invalid)", inv[i].name);
        t->rm = RM_REG;
        t->spec = S_INVALID;
    }
    t = add("int3", "", 0, 0, 0xcc, FM_NONE, 0, 0);
    static const struct {
        const char *mn, *ops;
        uint8_t map, opc, fix;
    } priv[] = {{"hlt", "", 0, 0xf4, 0},
                {"cli", "", 0, 0xfa, 0},
                {"sti", "", 0, 0xfb, 0},
                {"in", "al, dx", 0, 0xec, 0},
                {"out", "dx, al", 0, 0xee, 0},
                {"in", "al, imm8", 0, 0xe4, 1},
                {"rdmsr", "", 1, 0x32, 0},
                {"wrmsr", "", 1, 0x30, 0},
                {"wbinvd", "", 1, 0x09, 0},
                {"mov", "rax, cr0", 1, 0x20, 0xc0},
                {"mov", "cr0, rax", 1, 0x22, 0xc0},
                {"clts", "", 1, 0x06, 0}};
    for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++) {
        t = add(priv[i].mn, priv[i].ops, 0, priv[i].map, priv[i].opc,
                priv[i].fix > 1 ? FM_FIX : FM_NONE, priv[i].fix, 0);
        t->spec = S_PRIV;
        t->rm = RM_REG;
        if (priv[i].fix == 1) t->imm = 1;
    }
    t = add("crc32", "r32, r/m32", 0xf2, 2, 0xf1, FM_RM, 0, 4), t->isa = I_SSE42;
    t = add("crc32", "r64, r/m8", 0xf2, 2, 0xf0, FM_RM, 0, 8), t->rmsz = 1, t->isa = I_SSE42;
    t = add("crc32", "r64, r/m64", 0xf2, 2, 0xf1, FM_RM, 0, 8), t->isa = I_SSE42;
}

/* ---- SSE / MMX ---- */

#define X_IMM  0x01
#define X_UNAL 0x02  /* memory operand need not be aligned */
#define X_MEM  0x04  /* memory form only */
#define X_REG  0x08  /* register form only */
#define X_GREG 0x10  /* ModRM.reg is a GPR */
#define X_GRM  0x20  /* ModRM.rm is a GPR (or memory) */
#define X_W    0x40  /* REX.W form (64-bit GPR) */
#define X_MMR  0x80  /* ModRM.reg is an MMX register */
#define X_MMM  0x100 /* ModRM.rm is an MMX register */
#define X_XRM  0x200 /* ModRM.rm is an XMM register even in an MMX template */
#define X_XR   0x400 /* ModRM.reg is an XMM register even in an MMX template */

struct xdef {
    uint8_t pfx, map, opc;
    const char *mn;
    uint8_t msz;
    uint16_t f;
    uint8_t isa;
    int8_t ext; /* -1: ModRM.reg is an operand; else /digit */
};

static const struct xdef xdefs[] = {
    /* SSE */
    {0, 1, 0x58, "addps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x58, "addss", 4, 0, I_SSE, -1},
    {0, 1, 0x59, "mulps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x59, "mulss", 4, 0, I_SSE, -1},
    {0, 1, 0x5c, "subps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x5c, "subss", 4, 0, I_SSE, -1},
    {0, 1, 0x5d, "minps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x5d, "minss", 4, 0, I_SSE, -1},
    {0, 1, 0x5e, "divps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x5e, "divss", 4, 0, I_SSE, -1},
    {0, 1, 0x5f, "maxps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x5f, "maxss", 4, 0, I_SSE, -1},
    {0, 1, 0x51, "sqrtps", 16, 0, I_SSE, -1},
    {0xf3, 1, 0x51, "sqrtss", 4, 0, I_SSE, -1},
    {0, 1, 0x54, "andps", 16, 0, I_SSE, -1},
    {0, 1, 0x55, "andnps", 16, 0, I_SSE, -1},
    {0, 1, 0x56, "orps", 16, 0, I_SSE, -1},
    {0, 1, 0x57, "xorps", 16, 0, I_SSE, -1},
    {0, 1, 0x14, "unpcklps", 16, 0, I_SSE, -1},
    {0, 1, 0x15, "unpckhps", 16, 0, I_SSE, -1},
    {0, 1, 0xc2, "cmpps", 16, X_IMM, I_SSE, -1},
    {0xf3, 1, 0xc2, "cmpss", 4, X_IMM, I_SSE, -1},
    {0, 1, 0xc6, "shufps", 16, X_IMM, I_SSE, -1},
    {0, 1, 0x2e, "ucomiss", 4, 0, I_SSE, -1},
    {0, 1, 0x2f, "comiss", 4, 0, I_SSE, -1},
    {0, 1, 0x10, "movups", 16, X_UNAL, I_SSE, -1},
    {0, 1, 0x11, "movups", 16, X_UNAL, I_SSE, -1},
    {0xf3, 1, 0x10, "movss", 4, 0, I_SSE, -1},
    {0xf3, 1, 0x11, "movss", 4, 0, I_SSE, -1},
    {0, 1, 0x28, "movaps", 16, 0, I_SSE, -1},
    {0, 1, 0x29, "movaps", 16, 0, I_SSE, -1},
    {0, 1, 0x12, "movlps", 8, X_MEM, I_SSE, -1},
    {0, 1, 0x12, "movhlps", 16, X_REG, I_SSE, -1},
    {0, 1, 0x13, "movlps", 8, X_MEM, I_SSE, -1},
    {0, 1, 0x16, "movhps", 8, X_MEM, I_SSE, -1},
    {0, 1, 0x16, "movlhps", 16, X_REG, I_SSE, -1},
    {0, 1, 0x17, "movhps", 8, X_MEM, I_SSE, -1},
    {0, 1, 0x50, "movmskps", 16, X_REG | X_GREG, I_SSE, -1},
    {0, 1, 0x2a, "cvtpi2ps", 8, X_MMM, I_SSE, -1},
    {0xf3, 1, 0x2a, "cvtsi2ss", 4, X_GRM, I_SSE, -1},
    {0xf3, 1, 0x2a, "cvtsi2ss", 8, X_GRM | X_W, I_SSE, -1},
    {0, 1, 0x2c, "cvttps2pi", 8, X_MMR, I_SSE, -1},
    {0, 1, 0x2d, "cvtps2pi", 8, X_MMR, I_SSE, -1},
    {0xf3, 1, 0x2c, "cvttss2si", 4, X_GREG, I_SSE, -1},
    {0xf3, 1, 0x2c, "cvttss2si", 4, X_GREG | X_W, I_SSE, -1},
    {0xf3, 1, 0x2d, "cvtss2si", 4, X_GREG, I_SSE, -1},
    {0xf3, 1, 0x2d, "cvtss2si", 4, X_GREG | X_W, I_SSE, -1},
    {0, 1, 0x2b, "movntps", 16, X_MEM, I_SSE, -1},
    {0, 1, 0xae, "ldmxcsr", 4, X_MEM, I_SSE, 2},
    {0, 1, 0xae, "stmxcsr", 4, X_MEM, I_SSE, 3},
    /* SSE2 floating point */
    {0x66, 1, 0x58, "addpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x58, "addsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x59, "mulpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x59, "mulsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x5c, "subpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x5c, "subsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x5d, "minpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x5d, "minsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x5e, "divpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x5e, "divsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x5f, "maxpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x5f, "maxsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x51, "sqrtpd", 16, 0, I_SSE2, -1},
    {0xf2, 1, 0x51, "sqrtsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x54, "andpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x55, "andnpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x56, "orpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x57, "xorpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x14, "unpcklpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x15, "unpckhpd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0xc2, "cmppd", 16, X_IMM, I_SSE2, -1},
    {0xf2, 1, 0xc2, "cmpsd", 8, X_IMM, I_SSE2, -1},
    {0x66, 1, 0xc6, "shufpd", 16, X_IMM, I_SSE2, -1},
    {0x66, 1, 0x2e, "ucomisd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x2f, "comisd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x10, "movupd", 16, X_UNAL, I_SSE2, -1},
    {0x66, 1, 0x11, "movupd", 16, X_UNAL, I_SSE2, -1},
    {0xf2, 1, 0x10, "movsd", 8, 0, I_SSE2, -1},
    {0xf2, 1, 0x11, "movsd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x28, "movapd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x29, "movapd", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x12, "movlpd", 8, X_MEM, I_SSE2, -1},
    {0x66, 1, 0x13, "movlpd", 8, X_MEM, I_SSE2, -1},
    {0x66, 1, 0x16, "movhpd", 8, X_MEM, I_SSE2, -1},
    {0x66, 1, 0x17, "movhpd", 8, X_MEM, I_SSE2, -1},
    {0x66, 1, 0x50, "movmskpd", 16, X_REG | X_GREG, I_SSE2, -1},
    {0, 1, 0x5a, "cvtps2pd", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x5a, "cvtpd2ps", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0x5a, "cvtss2sd", 4, 0, I_SSE2, -1},
    {0xf2, 1, 0x5a, "cvtsd2ss", 8, 0, I_SSE2, -1},
    {0, 1, 0x5b, "cvtdq2ps", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x5b, "cvtps2dq", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0x5b, "cvttps2dq", 16, 0, I_SSE2, -1},
    {0x66, 1, 0xe6, "cvttpd2dq", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0xe6, "cvtdq2pd", 8, 0, I_SSE2, -1},
    {0xf2, 1, 0xe6, "cvtpd2dq", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x2a, "cvtpi2pd", 8, X_MMM, I_SSE2, -1},
    {0xf2, 1, 0x2a, "cvtsi2sd", 4, X_GRM, I_SSE2, -1},
    {0xf2, 1, 0x2a, "cvtsi2sd", 8, X_GRM | X_W, I_SSE2, -1},
    {0x66, 1, 0x2c, "cvttpd2pi", 16, X_MMR, I_SSE2, -1},
    {0x66, 1, 0x2d, "cvtpd2pi", 16, X_MMR, I_SSE2, -1},
    {0xf2, 1, 0x2c, "cvttsd2si", 8, X_GREG, I_SSE2, -1},
    {0xf2, 1, 0x2c, "cvttsd2si", 8, X_GREG | X_W, I_SSE2, -1},
    {0xf2, 1, 0x2d, "cvtsd2si", 8, X_GREG, I_SSE2, -1},
    {0xf2, 1, 0x2d, "cvtsd2si", 8, X_GREG | X_W, I_SSE2, -1},
    {0x66, 1, 0x2b, "movntpd", 16, X_MEM, I_SSE2, -1},
    {0x66, 1, 0xe7, "movntdq", 16, X_MEM, I_SSE2, -1},
    /* SSE2 integer (xmm); the MMX forms are derived below */
    {0x66, 1, 0x6e, "movd", 4, X_GRM, I_SSE2, -1},
    {0x66, 1, 0x6e, "movq", 8, X_GRM | X_W, I_SSE2, -1},
    {0x66, 1, 0x7e, "movd", 4, X_GRM, I_SSE2, -1},
    {0x66, 1, 0x7e, "movq", 8, X_GRM | X_W, I_SSE2, -1},
    {0x66, 1, 0x6f, "movdqa", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0x6f, "movdqu", 16, X_UNAL, I_SSE2, -1},
    {0x66, 1, 0x7f, "movdqa", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0x7f, "movdqu", 16, X_UNAL, I_SSE2, -1},
    {0xf3, 1, 0x7e, "movq", 8, 0, I_SSE2, -1},
    {0x66, 1, 0xd6, "movq", 8, 0, I_SSE2, -1},
    {0x66, 1, 0x70, "pshufd", 16, X_IMM, I_SSE2, -1},
    {0xf3, 1, 0x70, "pshufhw", 16, X_IMM, I_SSE2, -1},
    {0xf2, 1, 0x70, "pshuflw", 16, X_IMM, I_SSE2, -1},
    {0x66, 1, 0x73, "psrldq", 16, X_IMM | X_REG, I_SSE2, 3},
    {0x66, 1, 0x73, "pslldq", 16, X_IMM | X_REG, I_SSE2, 7},
    {0x66, 1, 0x6c, "punpcklqdq", 16, 0, I_SSE2, -1},
    {0x66, 1, 0x6d, "punpckhqdq", 16, 0, I_SSE2, -1},
    {0xf3, 1, 0xd6, "movq2dq", 8, X_REG | X_MMM, I_SSE2, -1},
    {0xf2, 1, 0xd6, "movdq2q", 8, X_REG | X_MMR, I_SSE2, -1},
    {0x66, 1, 0xd7, "pmovmskb", 16, X_REG | X_GREG, I_SSE2, -1},
    {0x66, 1, 0xc4, "pinsrw", 2, X_GRM | X_IMM, I_SSE2, -1},
    {0x66, 1, 0xc5, "pextrw", 16, X_REG | X_GREG | X_IMM, I_SSE2, -1},
    /* SSE3 */
    {0xf2, 1, 0x7c, "haddps", 16, 0, I_SSE3, -1},
    {0x66, 1, 0x7c, "haddpd", 16, 0, I_SSE3, -1},
    {0xf2, 1, 0x7d, "hsubps", 16, 0, I_SSE3, -1},
    {0x66, 1, 0x7d, "hsubpd", 16, 0, I_SSE3, -1},
    {0xf2, 1, 0xd0, "addsubps", 16, 0, I_SSE3, -1},
    {0x66, 1, 0xd0, "addsubpd", 16, 0, I_SSE3, -1},
    {0xf3, 1, 0x12, "movsldup", 16, 0, I_SSE3, -1},
    {0xf3, 1, 0x16, "movshdup", 16, 0, I_SSE3, -1},
    {0xf2, 1, 0x12, "movddup", 8, 0, I_SSE3, -1},
    {0xf2, 1, 0xf0, "lddqu", 16, X_MEM | X_UNAL, I_SSE3, -1},
    /* SSE4.1 */
    {0x66, 2, 0x10, "pblendvb", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x14, "blendvps", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x15, "blendvpd", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x17, "ptest", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x20, "pmovsxbw", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x21, "pmovsxbd", 4, 0, I_SSE41, -1},
    {0x66, 2, 0x22, "pmovsxbq", 2, 0, I_SSE41, -1},
    {0x66, 2, 0x23, "pmovsxwd", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x24, "pmovsxwq", 4, 0, I_SSE41, -1},
    {0x66, 2, 0x25, "pmovsxdq", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x28, "pmuldq", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x29, "pcmpeqq", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x2a, "movntdqa", 16, X_MEM, I_SSE41, -1},
    {0x66, 2, 0x2b, "packusdw", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x30, "pmovzxbw", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x31, "pmovzxbd", 4, 0, I_SSE41, -1},
    {0x66, 2, 0x32, "pmovzxbq", 2, 0, I_SSE41, -1},
    {0x66, 2, 0x33, "pmovzxwd", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x34, "pmovzxwq", 4, 0, I_SSE41, -1},
    {0x66, 2, 0x35, "pmovzxdq", 8, 0, I_SSE41, -1},
    {0x66, 2, 0x37, "pcmpgtq", 16, 0, I_SSE42, -1},
    {0x66, 2, 0x38, "pminsb", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x39, "pminsd", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3a, "pminuw", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3b, "pminud", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3c, "pmaxsb", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3d, "pmaxsd", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3e, "pmaxuw", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x3f, "pmaxud", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x40, "pmulld", 16, 0, I_SSE41, -1},
    {0x66, 2, 0x41, "phminposuw", 16, 0, I_SSE41, -1},
    {0x66, 3, 0x08, "roundps", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x09, "roundpd", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x0a, "roundss", 4, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x0b, "roundsd", 8, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x0c, "blendps", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x0d, "blendpd", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x0e, "pblendw", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x14, "pextrb", 1, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x15, "pextrw", 2, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x16, "pextrd", 4, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x16, "pextrq", 8, X_GRM | X_IMM | X_W, I_SSE41, -1},
    {0x66, 3, 0x17, "extractps", 4, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x20, "pinsrb", 1, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x21, "insertps", 4, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x22, "pinsrd", 4, X_GRM | X_IMM, I_SSE41, -1},
    {0x66, 3, 0x22, "pinsrq", 8, X_GRM | X_IMM | X_W, I_SSE41, -1},
    {0x66, 3, 0x40, "dpps", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x41, "dppd", 16, X_IMM, I_SSE41, -1},
    {0x66, 3, 0x42, "mpsadbw", 16, X_IMM, I_SSE41, -1},
    /* SSE4.2 string compares (no alignment requirement) */
    {0x66, 3, 0x60, "pcmpestrm", 16, X_IMM | X_UNAL, I_SSE42, -1},
    {0x66, 3, 0x61, "pcmpestri", 16, X_IMM | X_UNAL, I_SSE42, -1},
    {0x66, 3, 0x62, "pcmpistrm", 16, X_IMM | X_UNAL, I_SSE42, -1},
    {0x66, 3, 0x63, "pcmpistri", 16, X_IMM | X_UNAL, I_SSE42, -1},
    /* AES, PCLMULQDQ, SHA */
    {0x66, 2, 0xdb, "aesimc", 16, 0, I_AES, -1},
    {0x66, 2, 0xdc, "aesenc", 16, 0, I_AES, -1},
    {0x66, 2, 0xdd, "aesenclast", 16, 0, I_AES, -1},
    {0x66, 2, 0xde, "aesdec", 16, 0, I_AES, -1},
    {0x66, 2, 0xdf, "aesdeclast", 16, 0, I_AES, -1},
    {0x66, 3, 0xdf, "aeskeygenassist", 16, X_IMM, I_AES, -1},
    {0x66, 3, 0x44, "pclmulqdq", 16, X_IMM, I_PCLMUL, -1},
    {0, 2, 0xc8, "sha1nexte", 16, 0, I_SHA, -1},
    {0, 2, 0xc9, "sha1msg1", 16, 0, I_SHA, -1},
    {0, 2, 0xca, "sha1msg2", 16, 0, I_SHA, -1},
    {0, 2, 0xcb, "sha256rnds2", 16, 0, I_SHA, -1},
    {0, 2, 0xcc, "sha256msg1", 16, 0, I_SHA, -1},
    {0, 2, 0xcd, "sha256msg2", 16, 0, I_SHA, -1},
    {0, 3, 0xcc, "sha1rnds4", 16, X_IMM, I_SHA, -1},
};

/* Integer SIMD opcodes that exist as MMX (no prefix, mm) and SSE2 (66, xmm). */
static const struct {
    uint8_t map, opc;
    const char *mn;
    uint8_t isa_mmx; /* I_MMX, I_SSE (MMX extensions), I_SSE2, I_SSSE3 */
    uint8_t f;
    int8_t ext;
} idefs[] = {
    {1, 0x60, "punpcklbw", I_MMX, 0, -1},
    {1, 0x61, "punpcklwd", I_MMX, 0, -1},
    {1, 0x62, "punpckldq", I_MMX, 0, -1},
    {1, 0x63, "packsswb", I_MMX, 0, -1},
    {1, 0x64, "pcmpgtb", I_MMX, 0, -1},
    {1, 0x65, "pcmpgtw", I_MMX, 0, -1},
    {1, 0x66, "pcmpgtd", I_MMX, 0, -1},
    {1, 0x67, "packuswb", I_MMX, 0, -1},
    {1, 0x68, "punpckhbw", I_MMX, 0, -1},
    {1, 0x69, "punpckhwd", I_MMX, 0, -1},
    {1, 0x6a, "punpckhdq", I_MMX, 0, -1},
    {1, 0x6b, "packssdw", I_MMX, 0, -1},
    {1, 0x74, "pcmpeqb", I_MMX, 0, -1},
    {1, 0x75, "pcmpeqw", I_MMX, 0, -1},
    {1, 0x76, "pcmpeqd", I_MMX, 0, -1},
    {1, 0xd1, "psrlw", I_MMX, 0, -1},
    {1, 0xd2, "psrld", I_MMX, 0, -1},
    {1, 0xd3, "psrlq", I_MMX, 0, -1},
    {1, 0xd4, "paddq", I_SSE2, 0, -1},
    {1, 0xd5, "pmullw", I_MMX, 0, -1},
    {1, 0xd8, "psubusb", I_MMX, 0, -1},
    {1, 0xd9, "psubusw", I_MMX, 0, -1},
    {1, 0xda, "pminub", I_SSE, 0, -1},
    {1, 0xdb, "pand", I_MMX, 0, -1},
    {1, 0xdc, "paddusb", I_MMX, 0, -1},
    {1, 0xdd, "paddusw", I_MMX, 0, -1},
    {1, 0xde, "pmaxub", I_SSE, 0, -1},
    {1, 0xdf, "pandn", I_MMX, 0, -1},
    {1, 0xe0, "pavgb", I_SSE, 0, -1},
    {1, 0xe1, "psraw", I_MMX, 0, -1},
    {1, 0xe2, "psrad", I_MMX, 0, -1},
    {1, 0xe3, "pavgw", I_SSE, 0, -1},
    {1, 0xe4, "pmulhuw", I_SSE, 0, -1},
    {1, 0xe5, "pmulhw", I_MMX, 0, -1},
    {1, 0xe8, "psubsb", I_MMX, 0, -1},
    {1, 0xe9, "psubsw", I_MMX, 0, -1},
    {1, 0xea, "pminsw", I_SSE, 0, -1},
    {1, 0xeb, "por", I_MMX, 0, -1},
    {1, 0xec, "paddsb", I_MMX, 0, -1},
    {1, 0xed, "paddsw", I_MMX, 0, -1},
    {1, 0xee, "pmaxsw", I_SSE, 0, -1},
    {1, 0xef, "pxor", I_MMX, 0, -1},
    {1, 0xf1, "psllw", I_MMX, 0, -1},
    {1, 0xf2, "pslld", I_MMX, 0, -1},
    {1, 0xf3, "psllq", I_MMX, 0, -1},
    {1, 0xf4, "pmuludq", I_SSE2, 0, -1},
    {1, 0xf5, "pmaddwd", I_MMX, 0, -1},
    {1, 0xf6, "psadbw", I_SSE, 0, -1},
    {1, 0xf8, "psubb", I_MMX, 0, -1},
    {1, 0xf9, "psubw", I_MMX, 0, -1},
    {1, 0xfa, "psubd", I_MMX, 0, -1},
    {1, 0xfb, "psubq", I_SSE2, 0, -1},
    {1, 0xfc, "paddb", I_MMX, 0, -1},
    {1, 0xfd, "paddw", I_MMX, 0, -1},
    {1, 0xfe, "paddd", I_MMX, 0, -1},
    {1, 0x71, "psrlw", I_MMX, X_IMM | X_REG, 2},
    {1, 0x71, "psraw", I_MMX, X_IMM | X_REG, 4},
    {1, 0x71, "psllw", I_MMX, X_IMM | X_REG, 6},
    {1, 0x72, "psrld", I_MMX, X_IMM | X_REG, 2},
    {1, 0x72, "psrad", I_MMX, X_IMM | X_REG, 4},
    {1, 0x72, "pslld", I_MMX, X_IMM | X_REG, 6},
    {1, 0x73, "psrlq", I_MMX, X_IMM | X_REG, 2},
    {1, 0x73, "psllq", I_MMX, X_IMM | X_REG, 6},
    {2, 0x00, "pshufb", I_SSSE3, 0, -1},
    {2, 0x01, "phaddw", I_SSSE3, 0, -1},
    {2, 0x02, "phaddd", I_SSSE3, 0, -1},
    {2, 0x03, "phaddsw", I_SSSE3, 0, -1},
    {2, 0x04, "pmaddubsw", I_SSSE3, 0, -1},
    {2, 0x05, "phsubw", I_SSSE3, 0, -1},
    {2, 0x06, "phsubd", I_SSSE3, 0, -1},
    {2, 0x07, "phsubsw", I_SSSE3, 0, -1},
    {2, 0x08, "psignb", I_SSSE3, 0, -1},
    {2, 0x09, "psignw", I_SSSE3, 0, -1},
    {2, 0x0a, "psignd", I_SSSE3, 0, -1},
    {2, 0x0b, "pmulhrsw", I_SSSE3, 0, -1},
    {2, 0x1c, "pabsb", I_SSSE3, 0, -1},
    {2, 0x1d, "pabsw", I_SSSE3, 0, -1},
    {2, 0x1e, "pabsd", I_SSSE3, 0, -1},
    {3, 0x0f, "palignr", I_SSSE3, X_IMM, -1},
};

static void simd_one(uint8_t pfx, uint8_t map, uint8_t opc, const char *mn, uint8_t msz, uint16_t f,
                     uint8_t isa, int ext, bool mmx)
{
    unsigned xk = mmx ? K_MMX : K_XMM;
    unsigned regk = (f & X_GREG) ? K_GPR : (f & X_MMR) ? K_MMX : (f & X_XR) ? K_XMM : xk;
    unsigned rmk = (f & X_GRM) ? K_GPR : (f & X_MMM) ? K_MMX : (f & X_XRM) ? K_XMM : xk;
    if (ext >= 0) regk = K_NONE;
    unsigned rm = (f & X_MEM) ? RM_MEM : (f & X_REG) ? RM_REG : RM_ANY;
    static const char *kn[] = {"", "r", "xmm", "mm", "st"};
    char ops[64];
    const char *rmn = kn[rmk];
    char rmb[24];
    if (rmk == K_GPR)
        snprintf(rmb, sizeof rmb, "r%s", (f & X_W) ? "64" : "32");
    else
        snprintf(rmb, sizeof rmb, "%s", rmn);
    char rmt[32];
    if (rm == RM_MEM)
        snprintf(rmt, sizeof rmt, "m%u", msz * 8);
    else if (rm == RM_REG)
        snprintf(rmt, sizeof rmt, "%s", rmb);
    else
        snprintf(rmt, sizeof rmt, "%s/m%u", rmb, msz * 8);
    const char *regn = regk == K_GPR ? ((f & X_W) ? "r64" : "r32") : kn[regk];
    snprintf(ops, sizeof ops, "%s%s%s%s (%s%s%02x)", regk != K_NONE ? regn : "",
             regk != K_NONE ? ", " : "", rmt, (f & X_IMM) ? ", imm8" : "",
             pfx ? (pfx == 0x66   ? "66 "
                    : pfx == 0xf3 ? "f3 "
                                  : "f2 ")
                 : "",
             map == 1   ? "0f "
             : map == 2 ? "0f38 "
                        : "0f3a ",
             opc);
    struct sem_tmpl *t = add(mn, ops, pfx, map, opc, ext >= 0 ? FM_EXT : FM_RM, ext >= 0 ? ext : 0,
                             (f & X_W)                         ? 8
                             : (regk == K_GPR || rmk == K_GPR) ? 4
                                                               : 0);
    t->regk = regk;
    t->rmk = rmk;
    t->rm = rm;
    t->msz = msz;
    t->imm = (f & X_IMM) ? 1 : 0;
    t->isa = isa;
    if (msz == 16 && !(f & X_UNAL) && !mmx) t->spec |= S_ALIGN;
    if (strstr(mn, "pcmpestr"))
        t->spec |= S_PCMPSTR, t->fixed = RAX | RDX;
    else if (strstr(mn, "pcmpistr"))
        t->spec |= S_PCMPSTR;
    if (!strcmp(mn, "ldmxcsr")) t->spec |= S_MXCSR;
    if (rmk == K_GPR && (f & X_W) == 0 && msz < 4) t->rmsz = msz;
}

static void simd_templates(void)
{
    for (size_t i = 0; i < sizeof xdefs / sizeof xdefs[0]; i++) {
        const struct xdef *x = &xdefs[i];
        simd_one(x->pfx, x->map, x->opc, x->mn, x->msz, x->f, x->isa, x->ext, false);
    }
    for (size_t i = 0; i < sizeof idefs / sizeof idefs[0]; i++) {
        uint8_t isa = idefs[i].isa_mmx;
        simd_one(0, idefs[i].map, idefs[i].opc, idefs[i].mn, 8, idefs[i].f, isa, idefs[i].ext,
                 true);
        simd_one(0x66, idefs[i].map, idefs[i].opc, idefs[i].mn, 16, idefs[i].f,
                 isa == I_SSSE3 ? I_SSSE3 : I_SSE2, idefs[i].ext, false);
    }
    /* MMX-only forms */
    simd_one(0, 1, 0x6e, "movd", 4, X_GRM, I_MMX, -1, true);
    simd_one(0, 1, 0x6e, "movq", 8, X_GRM | X_W, I_MMX, -1, true);
    simd_one(0, 1, 0x7e, "movd", 4, X_GRM, I_MMX, -1, true);
    simd_one(0, 1, 0x7e, "movq", 8, X_GRM | X_W, I_MMX, -1, true);
    simd_one(0, 1, 0x6f, "movq", 8, 0, I_MMX, -1, true);
    simd_one(0, 1, 0x7f, "movq", 8, 0, I_MMX, -1, true);
    simd_one(0, 1, 0x70, "pshufw", 8, X_IMM, I_SSE, -1, true);
    simd_one(0, 1, 0xc4, "pinsrw", 2, X_GRM | X_IMM, I_SSE, -1, true);
    simd_one(0, 1, 0xc5, "pextrw", 8, X_REG | X_GREG | X_IMM, I_SSE, -1, true);
    simd_one(0, 1, 0xd7, "pmovmskb", 8, X_REG | X_GREG, I_SSE, -1, true);
    simd_one(0, 1, 0xe7, "movntq", 8, X_MEM, I_SSE, -1, true);
    simd_one(0, 1, 0xf7, "maskmovq", 8, X_REG, I_SSE, -1, true);
    tt[nt - 1].spec |= S_MASKMOV, tt[nt - 1].fixed = RDI;
    simd_one(0x66, 1, 0xf7, "maskmovdqu", 16, X_REG, I_SSE2, -1, false);
    tt[nt - 1].spec |= S_MASKMOV, tt[nt - 1].fixed = RDI;
    struct sem_tmpl *t = add("emms", "", 0, 1, 0x77, FM_NONE, 0, 0);
    t->isa = I_MMX;
}

/* ---- x87 ---- */

static struct sem_tmpl *x87(const char *mn, const char *ops, uint8_t opc, uint8_t form, uint8_t ext,
                            uint16_t fswundef)
{
    struct sem_tmpl *t = add(mn, ops, 0, 0, opc, form, ext, 0);
    t->regk = K_NONE;
    t->rmk = K_ST;
    t->rm = form == FM_EXT ? RM_MEM : RM_REG;
    t->spec = S_X87;
    t->fswundef = fswundef;
    t->isa = I_X87;
    return t;
}

static void x87_templates(void)
{
    static const char *ar[] = {"fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr"};
    static const char *ari[] = {"fiadd", "fimul",  "ficom", "ficomp",
                                "fisub", "fisubr", "fidiv", "fidivr"};
    static const char *arr[] = {"fadd", "fmul", "?", "?", "fsubr", "fsub", "fdivr", "fdiv"};
    static const char *arp[] = {"faddp", "fmulp", "?", "?", "fsubrp", "fsubp", "fdivrp", "fdivp"};
    struct sem_tmpl *t;
    for (unsigned k = 0; k < 8; k++) {
        bool cmp = k == 2 || k == 3;
        uint16_t u = cmp ? 0 : FSW_C023;
        t = x87(ar[k], "st0, st(i)", 0xd8, FM_FIX, 0xc0 + 8 * k, u);
        t = x87(ar[k], "m32fp", 0xd8, FM_EXT, k, u), t->msz = 4, t->spec |= S_FPMEM;
        t = x87(ar[k], "m64fp", 0xdc, FM_EXT, k, u), t->msz = 8, t->spec |= S_FPMEM;
        t = x87(ari[k], "m32int", 0xda, FM_EXT, k, u), t->msz = 4, t->spec |= S_INTMEM;
        t = x87(ari[k], "m16int", 0xde, FM_EXT, k, u), t->msz = 2, t->spec |= S_INTMEM;
        if (!cmp) {
            t = x87(arr[k], "st(i), st0", 0xdc, FM_FIX, 0xc0 + 8 * k, u);
            t = x87(arp[k], "st(i), st0", 0xde, FM_FIX, 0xc0 + 8 * k, u);
        }
    }
    t = x87("fcompp", "", 0xde, FM_FIX, 0xd9, 0), t->rm = RM_REG;
    t = x87("fucom", "st(i)", 0xdd, FM_FIX, 0xe0, 0);
    t = x87("fucomp", "st(i)", 0xdd, FM_FIX, 0xe8, 0);
    t = x87("fucompp", "", 0xda, FM_FIX, 0xe9, 0);
    t = x87("fucomi", "st0, st(i)", 0xdb, FM_FIX, 0xe8, 0);
    t = x87("fcomi", "st0, st(i)", 0xdb, FM_FIX, 0xf0, 0);
    t = x87("fucomip", "st0, st(i)", 0xdf, FM_FIX, 0xe8, 0);
    t = x87("fcomip", "st0, st(i)", 0xdf, FM_FIX, 0xf0, 0);
    t = x87("fld", "st(i)", 0xd9, FM_FIX, 0xc0, FSW_C023);
    t = x87("fxch", "st(i)", 0xd9, FM_FIX, 0xc8, FSW_C023);
    t = x87("fst", "st(i)", 0xdd, FM_FIX, 0xd0, FSW_C023);
    t = x87("fstp", "st(i)", 0xdd, FM_FIX, 0xd8, FSW_C023);
    t = x87("ffree", "st(i)", 0xdd, FM_FIX, 0xc0, FSW_CALL);
    static const char *fcm[] = {"fcmovb",  "fcmove",  "fcmovbe",  "fcmovu",
                                "fcmovnb", "fcmovne", "fcmovnbe", "fcmovnu"};
    for (unsigned k = 0; k < 8; k++)
        t = x87(fcm[k], "st0, st(i)", k < 4 ? 0xda : 0xdb, FM_FIX, 0xc0 + 8 * (k & 3), FSW_C023);
    static const struct {
        uint8_t b;
        const char *mn;
        uint16_t u;
    } d9[] = {{0xe0, "fchs", FSW_C023},   {0xe1, "fabs", FSW_C023},    {0xe4, "ftst", 0},
              {0xe5, "fxam", 0},          {0xe8, "fld1", FSW_C023},    {0xe9, "fldl2t", FSW_C023},
              {0xea, "fldl2e", FSW_C023}, {0xeb, "fldpi", FSW_C023},   {0xec, "fldlg2", FSW_C023},
              {0xed, "fldln2", FSW_C023}, {0xee, "fldz", FSW_C023},    {0xf4, "fxtract", FSW_C023},
              {0xf5, "fprem1", 0},        {0xf6, "fdecstp", FSW_C023}, {0xf7, "fincstp", FSW_C023},
              {0xf8, "fprem", 0},         {0xfa, "fsqrt", FSW_C023},   {0xfc, "frndint", FSW_C023},
              {0xfd, "fscale", FSW_C023}, {0xd0, "fnop", FSW_CALL}};
    for (size_t i = 0; i < sizeof d9 / sizeof d9[0]; i++)
        t = x87(d9[i].mn, "", 0xd9, FM_FIX, d9[i].b, d9[i].u), t->rm = RM_REG;
    t = x87("fnclex", "", 0xdb, FM_FIX, 0xe2, FSW_CALL), t->rm = RM_REG;
    t = x87("fninit", "", 0xdb, FM_FIX, 0xe3, 0), t->rm = RM_REG;
    t = x87("fnstsw", "ax", 0xdf, FM_FIX, 0xe0, FSW_CALL), t->rm = RM_REG;
    t = x87("fld", "m32fp", 0xd9, FM_EXT, 0, FSW_C023), t->msz = 4, t->spec |= S_FPMEM;
    t = x87("fld", "m64fp", 0xdd, FM_EXT, 0, FSW_C023), t->msz = 8, t->spec |= S_FPMEM;
    t = x87("fld", "m80fp", 0xdb, FM_EXT, 5, FSW_C023), t->msz = 10, t->spec |= S_FPMEM;
    t = x87("fst", "m32fp", 0xd9, FM_EXT, 2, FSW_C023), t->msz = 4;
    t = x87("fstp", "m32fp", 0xd9, FM_EXT, 3, FSW_C023), t->msz = 4;
    t = x87("fst", "m64fp", 0xdd, FM_EXT, 2, FSW_C023), t->msz = 8;
    t = x87("fstp", "m64fp", 0xdd, FM_EXT, 3, FSW_C023), t->msz = 8;
    t = x87("fstp", "m80fp", 0xdb, FM_EXT, 7, FSW_C023), t->msz = 10;
    t = x87("fild", "m16int", 0xdf, FM_EXT, 0, FSW_C023), t->msz = 2, t->spec |= S_INTMEM;
    t = x87("fild", "m32int", 0xdb, FM_EXT, 0, FSW_C023), t->msz = 4, t->spec |= S_INTMEM;
    t = x87("fild", "m64int", 0xdf, FM_EXT, 5, FSW_C023), t->msz = 8, t->spec |= S_INTMEM;
    t = x87("fist", "m16int", 0xdf, FM_EXT, 2, FSW_C023), t->msz = 2;
    t = x87("fistp", "m16int", 0xdf, FM_EXT, 3, FSW_C023), t->msz = 2;
    t = x87("fist", "m32int", 0xdb, FM_EXT, 2, FSW_C023), t->msz = 4;
    t = x87("fistp", "m32int", 0xdb, FM_EXT, 3, FSW_C023), t->msz = 4;
    t = x87("fistp", "m64int", 0xdf, FM_EXT, 7, FSW_C023), t->msz = 8;
    t = x87("fisttp", "m16int", 0xdf, FM_EXT, 1, FSW_C023), t->msz = 2, t->isa = I_SSE3;
    t = x87("fisttp", "m32int", 0xdb, FM_EXT, 1, FSW_C023), t->msz = 4, t->isa = I_SSE3;
    t = x87("fisttp", "m64int", 0xdd, FM_EXT, 1, FSW_C023), t->msz = 8, t->isa = I_SSE3;
    t = x87("fldcw", "m16", 0xd9, FM_EXT, 5, FSW_CALL), t->msz = 2, t->spec |= S_FCW;
    t = x87("fnstcw", "m16", 0xd9, FM_EXT, 7, FSW_CALL), t->msz = 2;
    t = x87("fnstsw", "m16", 0xdd, FM_EXT, 7, FSW_CALL), t->msz = 2;
    t = x87("fbld", "m80bcd", 0xdf, FM_EXT, 4, FSW_C023), t->msz = 10, t->spec |= S_BCD;
    t = x87("fbstp", "m80bcd", 0xdf, FM_EXT, 6, FSW_C023), t->msz = 10;
    /* transcendentals (C2 is defined where the argument may be out of range) */
    static const struct {
        uint8_t b;
        const char *mn;
        uint16_t u;
    } tr[] = {{0xf0, "f2xm1", FSW_C023},        {0xf1, "fyl2x", FSW_C023},
              {0xf2, "fptan", FSW_C0 | FSW_C3}, {0xf3, "fpatan", FSW_C023},
              {0xf9, "fyl2xp1", FSW_C023},      {0xfb, "fsincos", FSW_C0 | FSW_C3},
              {0xfe, "fsin", FSW_C0 | FSW_C3},  {0xff, "fcos", FSW_C0 | FSW_C3}};
    for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++)
        t = x87(tr[i].mn, "", 0xd9, FM_FIX, tr[i].b, tr[i].u), t->rm = RM_REG;
    /* environments and whole-state save/restore */
    t = x87("fnstenv", "m28", 0xd9, FM_EXT, 6, FSW_CALL), t->msz = 28, t->spec |= S_ENV;
    t = x87("fldenv", "m28", 0xd9, FM_EXT, 4, FSW_CALL), t->msz = 28;
    t = x87("fnsave", "m108", 0xdd, FM_EXT, 6, 0), t->msz = 108, t->spec |= S_ENV;
    t = x87("frstor", "m108", 0xdd, FM_EXT, 4, 0), t->msz = 108;
    for (unsigned w = 0; w < 2; w++) {
        t = add(w ? "fxsave64" : "fxsave", "m512", 0, 1, 0xae, FM_EXT, 0, w ? 8 : 0);
        t->regk = K_NONE, t->rm = RM_MEM, t->msz = 512, t->spec = S_FXSAVE | S_ALIGN,
        t->isa = I_SSE;
        t = add(w ? "fxrstor64" : "fxrstor", "m512", 0, 1, 0xae, FM_EXT, 1, w ? 8 : 0);
        t->regk = K_NONE, t->rm = RM_MEM, t->msz = 512, t->spec = S_FXRSTOR | S_ALIGN,
        t->isa = I_SSE;
    }
}

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

unsigned sem_tmpl_init(void)
{
    if (nt) return nt;
    integer_templates();
    simd_templates();
    x87_templates();
    /* unique names: the name is the handle for --filter and the seed */
    for (unsigned i = 0; i < nt; i++) {
        for (unsigned j = 0, dup = 1; j < i; j++)
            if (!strcmp(tt[i].name, tt[j].name)) {
                size_t l = strlen(tt[i].name);
                snprintf(tt[i].name + l, sizeof tt[i].name - l, " #%u", ++dup);
                j = (unsigned)-1;
            }
        tt[i].hash = fnv(tt[i].name);
    }
    return nt;
}

const char *sem_tmpl_name(unsigned t)
{
    return tt[t].name;
}
const char *sem_tmpl_mnemonic(unsigned t)
{
    return tt[t].mn;
}

static bool host_has(unsigned isa)
{
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    unsigned c1 = c, d1 = d;
    unsigned b7 = 0;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        b7 = b;
    }
    __cpuid(0x80000000, a, b, c, d);
    unsigned ce = 0;
    if (a >= 0x80000001) {
        __cpuid(0x80000001, a, b, c, d);
        ce = c;
    }
    switch (isa) {
    case I_BASE: return true;
    case I_X87: return d1 & 1;
    case I_MMX: return d1 & (1u << 23);
    case I_SSE: return d1 & (1u << 25);
    case I_SSE2: return d1 & (1u << 26);
    case I_SSE3: return c1 & 1;
    case I_SSSE3: return c1 & (1u << 9);
    case I_SSE41: return c1 & (1u << 19);
    case I_SSE42: return c1 & (1u << 20);
    case I_POPCNT: return c1 & (1u << 23);
    case I_LZCNT: return ce & (1u << 5);
    case I_BMI1: return b7 & (1u << 3);
    case I_BMI2: return b7 & (1u << 8);
    case I_ADX: return b7 & (1u << 19);
    case I_MOVBE: return c1 & (1u << 22);
    case I_CX16: return c1 & (1u << 13);
    case I_AES: return c1 & (1u << 25);
    case I_PCLMUL: return c1 & (1u << 1);
    case I_SHA: return b7 & (1u << 29);
    case I_LAHF: return ce & 1;
    }
    return false;
}

bool sem_tmpl_strict(unsigned t)
{
    return tt[t].spec & S_PRIV;
}

bool sem_tmpl_host_ok(unsigned t)
{
    static signed char known[I_COUNT]; /* CPUID traps in a VM: ask once per feature */
    unsigned isa = tt[t].isa;
    if (!known[isa]) known[isa] = host_has(isa) ? 1 : -1;
    return known[isa] > 0;
}

/* ---- random values ---- */

static uint64_t rv(struct sem_rng *r)
{
    static const uint64_t edge[] = {
        0,      1,       ~0ull,      0x7f,       0x80,       0xff,      0x7fff,
        0x8000, 0xffff,  0x7fffffff, 0x80000000, 0xffffffff, INT64_MAX, (uint64_t)INT64_MIN,
        0x100,  0x10000, 0x100000000};
    uint64_t x = sem_rand(r);
    switch (x & 7) {
    case 0:
    case 1:
    case 2: return sem_rand(r);
    case 3: return (x >> 8) & 0xff;
    case 4: return -((x >> 8) & 0xff);
    case 5: {
        uint64_t v = 1ull << ((x >> 8) & 63);
        switch ((x >> 16) & 3) {
        case 0: return v;
        case 1: return v - 1;
        case 2: return -v;
        default: return ~v;
        }
    }
    case 6: return (uint32_t)sem_rand(r);
    default: return edge[(x >> 8) % (sizeof edge / sizeof edge[0])];
    }
}

static uint32_t f32gen(struct sem_rng *r)
{
    uint64_t x = sem_rand(r);
    uint32_t sign = (x & 1) << 31;
    switch ((x >> 1) & 15) {
    case 0: return sign;                                            /* zero */
    case 1: return sign | 0x7f800000;                               /* inf */
    case 2: return sign | 0x7fc00000 | ((x >> 8) & 0x3fffff);       /* qnan */
    case 3: return sign | 0x7f800000 | (((x >> 8) & 0x3fffff) | 1); /* snan */
    case 4: return sign | ((x >> 8) & 0x7fffff);                    /* denormal */
    case 5: {
        float f = (float)((int)((x >> 8) & 0xffff) - 0x8000);
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }
    case 6: return sign | 0x7f7fffff;
    case 7: return sign | 0x00800000;
    case 8: return sign | 0x3f800000;
    default:
        return sign | (uint32_t)((127 + (int)((x >> 8) % 40) - 20) << 23) | ((x >> 16) & 0x7fffff);
    }
}

static uint64_t f64gen(struct sem_rng *r)
{
    uint64_t x = sem_rand(r), m = sem_rand(r) & 0xfffffffffffffull;
    uint64_t sign = (x & 1) << 63;
    switch ((x >> 1) & 15) {
    case 0: return sign;
    case 1: return sign | 0x7ff0000000000000ull;
    case 2: return sign | 0x7ff8000000000000ull | (m >> 1);
    case 3: return sign | 0x7ff0000000000000ull | (m >> 1) | 1;
    case 4: return sign | m;
    case 5: {
        double f = (double)((int64_t)((x >> 8) & 0xffffff) - 0x800000);
        uint64_t u;
        memcpy(&u, &f, 8);
        return u;
    }
    case 6: return sign | 0x7fefffffffffffffull;
    case 7: return sign | 0x0010000000000000ull;
    case 8: { /* a float's value: exact conversions */
        uint32_t f = f32gen(r);
        float ff;
        memcpy(&ff, &f, 4);
        double d = ff;
        uint64_t u;
        memcpy(&u, &d, 8);
        return u;
    }
    default: return sign | ((uint64_t)(1023 + (int)((x >> 8) % 80) - 40) << 52) | m;
    }
}

/* An 80-bit extended value into p[0..10). */
static void f80gen(struct sem_rng *r, uint8_t *p)
{
    uint64_t x = sem_rand(r), m = sem_rand(r);
    uint16_t se;
    uint16_t sign = (x & 1) << 15;
    switch ((x >> 1) & 15) {
    case 0: m = 0, se = sign; break;                                                 /* zero */
    case 1: m = 1ull << 63, se = sign | 0x7fff; break;                               /* inf */
    case 2: m |= 3ull << 62, se = sign | 0x7fff; break;                              /* qnan */
    case 3: m = (m | 1) & ~(1ull << 62), m |= 1ull << 63, se = sign | 0x7fff; break; /* snan */
    case 4: m &= ~(1ull << 63), se = sign; break;                                    /* denormal */
    case 5: m &= ~(1ull << 63), se = sign | ((x >> 8) & 0x7ffe); break; /* unnormal: invalid */
    case 6: {                                                           /* an integer */
        long double v = (long double)((int64_t)((x >> 8) & 0xffff) - 0x8000);
        memcpy(p, &v, 10);
        return;
    }
    case 7:
    case 8: { /* a double's value */
        uint64_t u = f64gen(r);
        double d;
        memcpy(&d, &u, 8);
        long double v = d;
        memcpy(p, &v, 10);
        return;
    }
    default: m |= 1ull << 63, se = sign | (uint16_t)(16383 + (int)((x >> 8) % 200) - 100); break;
    }
    memcpy(p, &m, 8);
    memcpy(p + 8, &se, 2);
}

static void xmmgen(struct sem_rng *r, uint8_t *p, unsigned n)
{
    unsigned how = sem_rand(r) & 7;
    for (unsigned i = 0; i < n;) {
        if (how <= 1 && n - i >= 4) {
            uint32_t v = f32gen(r);
            memcpy(p + i, &v, 4), i += 4;
        } else if (how <= 3 && n - i >= 8) {
            uint64_t v = f64gen(r);
            memcpy(p + i, &v, 8), i += 8;
        } else if (how == 4 && n - i >= 2) {
            uint16_t v = (uint16_t)rv(r);
            memcpy(p + i, &v, 2), i += 2;
        } else if (how == 5) {
            p[i++] = (uint8_t) "abcd\0\xff\x80\x7f"[sem_rand(r) & 7];
        } else {
            p[i++] = (uint8_t)sem_rand(r);
        }
    }
}

/* ---- the generator ---- */

struct gen {
    struct sem_rng r;
    const struct sem_tmpl *t;
    struct sem_case *c;
    bool rex; /* a REX prefix is present (byte registers 4..7 are spl..dil) */
    unsigned reg, rmreg, vreg;
    bool mem;
    /* memory operand */
    int mform; /* 0 [b], 1 [b+d8], 2 [b+d32], 3 [b+i*s+d], 4 [i*s+d32], 5 [d32], 6 [rip+d32] */
    int base, index, scale, dsz;
    int32_t disp;
    bool a32;
    bool away;    /* the operand is outside the data page: a fault */
    bool gs;      /* gs: override */
    uint64_t lin; /* the operand's linear address */
    uint64_t ea;
};

static unsigned pick(struct gen *g, unsigned kind)
{
    switch (kind) {
    case K_GPR:
    case K_XMM: return sem_rand(&g->r) & 15;
    case K_MMX:
    case K_ST: return sem_rand(&g->r) & 7;
    default: return 0;
    }
}

static uint64_t *gpr(struct gen *g, unsigned n)
{
    return &g->c->in.gpr[n];
}

/* Sized register access with the byte-register rules. */
static void set_sized(struct gen *g, unsigned n, unsigned size, uint64_t v)
{
    uint64_t *p;
    switch (size) {
    case 1:
        if (!g->rex && n >= 4 && n < 8) {
            p = gpr(g, n - 4);
            *p = (*p & ~0xff00ull) | (v & 0xff) << 8;
        } else {
            p = gpr(g, n);
            *p = (*p & ~0xffull) | (v & 0xff);
        }
        break;
    case 2: p = gpr(g, n), *p = (*p & ~0xffffull) | (v & 0xffff); break;
    case 4: p = gpr(g, n), *p = (*p & ~0xffffffffull) | (v & 0xffffffff); break;
    default: *gpr(g, n) = v;
    }
}
static uint64_t get_sized(struct gen *g, unsigned n, unsigned size)
{
    if (size == 1 && !g->rex && n >= 4 && n < 8) return (*gpr(g, n - 4) >> 8) & 0xff;
    uint64_t v = *gpr(g, n);
    return size >= 8 ? v : v & ((1ull << (size * 8)) - 1);
}
static uint8_t *dptr(struct gen *g, uint64_t addr)
{
    return g->c->data + (addr - SEM_DATA_ADDR);
}

static void setup_state(struct gen *g)
{
    struct sem_case *c = g->c;
    struct sem_rng *r = &g->r;
    for (unsigned i = 0; i < 16; i++)
        c->in.gpr[i] = rv(r);
    c->in.gpr[4] = SEM_DATA_ADDR + 0xc00 + 8 * sem_below(r, 64) + ((sem_rand(r) & 15) ? 0 : 4);
    c->in.rip = SEM_INSN_ADDR;
    c->in.rflags = 0x202 | (sem_rand(r) & FL_STATUS) | ((sem_rand(r) & 3) ? 0 : FL_DF);
    uint8_t *fx = c->in.fx;
    memset(fx, 0, 512);
    bool x87 = g->t->spec & S_X87;
    uint16_t fcw = 0x037f;
    if (x87 && (sem_rand(r) & 1)) fcw = (fcw & ~0x0300) | (uint16_t)(sem_below(r, 4) << 8);
    if (sem_rand(r) & 1) fcw = (fcw & ~0x0c00) | (uint16_t)((sem_rand(r) & 3) << 10);
    if (x87 && !(sem_rand(r) & 15)) fcw &= (uint16_t) ~(sem_rand(r) & 0x3f);
    unsigned top = sem_rand(r) & 7;
    uint16_t fsw = (uint16_t)(top << 11);
    if (!(sem_rand(r) & 3))
        fsw |= (uint16_t)(sem_rand(r) & fcw & 0x3f); /* sticky flags of masked exceptions */
    if (!(sem_rand(r) & 3)) fsw |= (uint16_t)(sem_rand(r) & (FSW_CALL));
    uint8_t ftw = 0;
    for (unsigned i = 0; i < 8; i++) {
        bool valid = x87 ? (i < 3 ? (sem_rand(r) & 7) != 0 : (sem_rand(r) & 1)) : (sem_rand(r) & 1);
        if (valid) ftw |= (uint8_t)(1u << ((top + i) & 7));
        f80gen(r, fx + FX_ST(i));
        if (!x87 && (sem_rand(r) & 1)) { /* MMX-looking registers */
            uint64_t v = rv(r);
            memcpy(fx + FX_ST(i), &v, 8);
        }
    }
    if (!(sem_rand(r) & (x87 ? 31 : 63))) {
        /* a pending unmasked x87 exception: waiting x87 and MMX instructions raise #MF */
        unsigned k = (unsigned)sem_below(r, 6);
        fcw &= (uint16_t) ~(1u << k);
        fsw |= (uint16_t)((1u << k) | 0x8080);
    }
    memcpy(fx + FX_FCW, &fcw, 2);
    memcpy(fx + FX_FSW, &fsw, 2);
    fx[FX_FTW] = ftw;
    uint32_t mxcsr = 0x1f80;
    if (sem_rand(r) & 1) mxcsr |= (uint32_t)(sem_rand(r) & 3) << 13;
    if (!(sem_rand(r) & 3)) mxcsr |= 0x8000; /* FTZ */
    if (!(sem_rand(r) & 3)) mxcsr |= 0x40;   /* DAZ */
    if (!(sem_rand(r) & 3)) mxcsr |= sem_rand(r) & 0x3f;
    if (!(sem_rand(r) & 7)) mxcsr &= ~(uint32_t)(sem_rand(r) & 0x1f80);
    memcpy(fx + FX_MXCSR, &mxcsr, 4);
    uint32_t mxmask = 0xffff;
    memcpy(fx + 28, &mxmask, 4);
    for (unsigned i = 0; i < 16; i++)
        xmmgen(r, fx + FX_XMM(i), 16);
    /* the data page: interesting integers */
    /* (cheap: raw random bits, every 8th qword interesting; memory operands
     * get an interesting value of their own when placed) */
    for (unsigned i = 0; i < SEM_DATA_SIZE; i += 8) {
        uint64_t v = (i & 63) ? sem_rand(r) : rv(r);
        memcpy(c->data + i, &v, 8);
    }
}

static int32_t sdisp8(struct gen *g)
{
    return (int8_t)sem_rand(&g->r);
}

/* Chooses the memory operand's form and registers (values come later). */
static void choose_mem(struct gen *g, uint16_t excl)
{
    struct sem_rng *r = &g->r;
    g->a32 = !(sem_rand(r) & 7);
    unsigned f = sem_below(r, 16);
    g->mform = f < 3 ? 0 : f < 5 ? 1 : f < 6 ? 2 : f < 12 ? 3 : f < 13 ? 4 : f < 14 ? 5 : 6;
    unsigned tries = 0;
    do {
        g->base = (int)(sem_rand(r) & 15);
    } while ((excl >> g->base) & 1 && ++tries < 100);
    tries = 0;
    do {
        g->index = (int)(sem_rand(r) & 15);
    } while (((excl >> g->index) & 1 || g->index == 4 || g->index == g->base) && ++tries < 100);
    if (tries >= 100 || ((excl >> g->base) & 1)) g->mform = 5; /* no free register: absolute */
    g->scale = 1 << (sem_rand(r) & 3);
    g->dsz = g->mform == 1 ? 1 : (g->mform == 0 || (g->mform == 3 && (sem_rand(r) & 1))) ? 0 : 4;
    if (g->mform == 3 && g->dsz == 4 && (sem_rand(r) & 1)) g->dsz = 1;
    if (g->mform == 0 && (g->base & 7) == 5) g->dsz = 1; /* [rbp]/[r13] need a displacement */
}

/* Places the memory operand at ea: fixes displacement and register values. */
static void place_mem(struct gen *g, uint64_t ea, bool random_regs)
{
    struct sem_rng *r = &g->r;
    g->ea = ea;
    uint64_t amask = g->a32 ? 0xffffffffull : ~0ull;
    g->disp = g->dsz == 1   ? sdisp8(g)
              : g->dsz == 4 ? (int32_t)(sem_rand(r) % 0x20000) - 0x10000
                            : 0;
    if (g->mform == 6) return; /* disp patched after encoding */
    if (random_regs) {
        if (g->mform <= 4) {
            *gpr(g, (unsigned)g->base) = rv(r);
            *gpr(g, (unsigned)g->index) = rv(r);
        }
        g->disp = (int32_t)sem_rand(r);
        if (g->dsz == 1) g->disp = (int8_t)g->disp;
        if (g->dsz == 0) g->disp = 0;
        return;
    }
    uint64_t idx = 0;
    if (g->mform == 3 || g->mform == 4) {
        idx = (sem_rand(r) & 1) ? sem_below(r, 64) : -(uint64_t)sem_below(r, 64);
        if (g->a32) idx = (idx & 0xffffffff) | (sem_rand(r) << 32);
        *gpr(g, (unsigned)g->index) = idx;
        if (g->a32) idx &= 0xffffffff;
    }
    uint64_t scaled = idx * (uint64_t)g->scale;
    switch (g->mform) {
    case 0:
    case 1:
    case 2:
    case 3: {
        uint64_t b = (ea - scaled - (uint64_t)(int64_t)g->disp) & amask;
        if (g->a32) b |= sem_rand(r) << 32;
        *gpr(g, (unsigned)g->base) = b;
        break;
    }
    case 4: g->disp = (int32_t)(ea - scaled); break;
    case 5: g->disp = (int32_t)ea; break;
    }
}

struct enc {
    uint8_t b[32];
    unsigned n;
    int disp_off; /* where the disp32 of a RIP-relative operand sits */
};
static void eb(struct enc *e, unsigned x)
{
    e->b[e->n++] = (uint8_t)x;
}
static void eimm(struct enc *e, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        eb(e, (uint8_t)(v >> (8 * i)));
}

/* ModRM (+SIB, disp) with `regf` in the reg field. */
static void modrm(struct gen *g, struct enc *e, unsigned regf)
{
    regf &= 7;
    if (!g->mem) {
        eb(e, 0xc0 | regf << 3 | (g->rmreg & 7));
        return;
    }
    unsigned b = (unsigned)g->base & 7, x = (unsigned)g->index & 7;
    unsigned ss = g->scale == 1 ? 0 : g->scale == 2 ? 1 : g->scale == 4 ? 2 : 3;
    unsigned mod = g->dsz == 0 ? 0 : g->dsz == 1 ? 1 : 2;
    switch (g->mform) {
    case 0:
    case 1:
    case 2:
        if (b == 4) {
            eb(e, mod << 6 | regf << 3 | 4);
            eb(e, 0x20 | b); /* no index */
        } else {
            eb(e, mod << 6 | regf << 3 | b);
        }
        break;
    case 3:
        if (mod == 0 && b == 5) mod = 1, g->dsz = 1, g->disp = 0;
        eb(e, mod << 6 | regf << 3 | 4);
        eb(e, ss << 6 | x << 3 | b);
        break;
    case 4:
        eb(e, regf << 3 | 4);
        eb(e, ss << 6 | x << 3 | 5);
        g->dsz = 4;
        break;
    case 5:
        eb(e, regf << 3 | 4);
        eb(e, 0x25);
        g->dsz = 4;
        break;
    case 6:
        eb(e, regf << 3 | 5);
        e->disp_off = (int)e->n;
        g->dsz = 4;
        break;
    }
    eimm(e, (uint64_t)(int64_t)g->disp, (unsigned)g->dsz);
}

static unsigned regbits(unsigned kind, unsigned n)
{
    return (kind == K_GPR || kind == K_XMM) ? n : 0;
}

static bool is_rex_reg(unsigned kind, unsigned n)
{
    return (kind == K_GPR || kind == K_XMM) && n >= 8;
}

static uint64_t gen_imm(struct gen *g)
{
    const struct sem_tmpl *t = g->t;
    uint64_t v = rv(&g->r);
    /* legacy CMPPS..CMPSD define predicates 0..7 only; larger ones seldom */
    if (t->regk == K_XMM && !strncmp(t->mn, "cmp", 3) && (sem_rand(&g->r) & 7)) return v & 7;
    if (t->spec & (S_SHIFT | S_ROT | S_SHD)) {
        switch (sem_rand(&g->r) & 7) {
        case 0: return 0;
        case 1: return 1;
        case 2:
        case 3:
        case 4: return sem_below(&g->r, t->osz * 8 + 1);
        default: return sem_rand(&g->r) & 0xff;
        }
    }
    return v;
}

/* Count-dependent undefined flags of shifts and rotates. */
static uint32_t shift_undef(const struct sem_tmpl *t, unsigned count, bool *dest_undef)
{
    unsigned c = count & (t->osz == 8 ? 63 : 31), w = t->osz * 8;
    uint32_t u = 0;
    *dest_undef = false;
    if (!c) return 0;
    if (t->spec & S_ROT) {
        if (c != 1) u |= FL_OF;
    } else if (t->spec & S_SHIFT) {
        u |= FL_AF;
        if (c != 1) u |= FL_OF;
        if (c >= w && t->ext != 7) u |= FL_CF;
    } else {
        u |= FL_AF;
        if (c != 1) u |= FL_OF;
        if (c > w) {
            u |= FL_STATUS; /* shld/shrd: count > size leaves result and flags undefined */
            *dest_undef = true;
        }
    }
    return u;
}

void sem_tmpl_gen(unsigned ti, uint64_t seed, uint64_t k, struct sem_case *c, struct sem_mask *m)
{
    const struct sem_tmpl *t = &tt[ti];
    struct gen g = {.t = t, .c = c};
    sem_seed(&g.r, seed ^ ((uint64_t)t->hash << 32) ^ (k * 0x9e3779b97f4a7c15ull));
    struct sem_rng *r = &g.r;
    setup_state(&g);
    m->flags = (FL_STATUS | FL_DF) & ~(uint32_t)t->undef;
    m->gpr_skip = 0;
    m->fsw = (uint16_t)~t->fswundef;
    m->st_approx = false;
    memset(m->dskip, 0, sizeof m->dskip);

    /* registers and operand kinds */
    g.reg = pick(&g, t->regk);
    g.vreg = pick(&g, t->vexk);
    g.mem = t->rm == RM_MEM || (t->rm == RM_ANY && t->form != FM_FIX && (sem_rand(r) & 1));
    if (t->form == FM_NONE || t->form == FM_REL || t->form == FM_OPREG) g.mem = false;
    g.rmreg = pick(&g, t->rmk);
    if (t->form == FM_OPREG) g.rmreg = sem_rand(r) & 15;
    if (t->form == FM_OPREG && t->opc == 0x90 && g.rmreg == 0)
        g.rmreg = 1 + (unsigned)sem_below(r, 15); /* 90 is nop */
    uint16_t excl = t->fixed | ((t->spec & S_STACK) ? RSP : 0);
    if ((t->spec & S_BITOFF) && t->regk == K_GPR) excl |= (uint16_t)(1u << g.reg);
    if (t->vexk == K_GPR)
        excl |= (uint16_t)(1u << g.vreg); /* bextr/bzhi/shifts: keep control values */
    if (g.mem) choose_mem(&g, excl);
    if ((t->spec & S_INDIRECT) && (t->spec & S_STACK) && !g.mem && g.rmreg == 4) g.rmreg = 3;
    if (t->spec & S_STACK) {
        /* the instruction's own operands must not be rsp */
        if (t->form == FM_OPREG && g.rmreg == 4) g.rmreg = 3;
    }

    /* REX: needed for high registers and REX.W; sometimes present anyway */
    bool need = t->osz == 8 || is_rex_reg(t->regk, g.reg) ||
                (!g.mem && is_rex_reg(t->rmk, g.rmreg)) || (t->form == FM_OPREG && g.rmreg >= 8) ||
                (g.mem && g.mform <= 4 && (g.base >= 8 || (g.mform >= 3 && g.index >= 8)));
    if (t->vex)
        g.rex = false;
    else
        g.rex = need || (sem_rand(r) & 1);
    if ((t->spec & S_STR) || t->form == FM_NONE || t->form == FM_REL)
        g.rex = t->osz == 8 || (!t->osz ? false : (sem_rand(r) & 3) == 0 && t->osz != 2);
    if (t->osz != 8 && t->form == FM_NONE && t->osz && t->osz != 1 && !(t->spec & S_STACK) &&
        !(t->spec & S_STR))
        g.rex = false;

    /* special register inputs */
    unsigned osz = t->osz ? t->osz : 8;
    uint64_t imm = gen_imm(&g);
    unsigned count = 0;
    if (t->spec & (S_SHIFT | S_ROT | S_SHD)) {
        if (t->spec & S_CL) {
            count = (unsigned)gen_imm(&g) & 0xff;
            *gpr(&g, 1) = (*gpr(&g, 1) & ~0xffull) | count;
        } else if (t->imm) {
            count = (unsigned)imm & 0xff;
        } else {
            count = 1;
        }
        if ((t->spec & S_SHD) && osz == 2 && (count & 31) > 16) {
            count &= 15;
            if (t->spec & S_CL)
                *gpr(&g, 1) = (*gpr(&g, 1) & ~0xffull) | count;
            else
                imm = count;
        }
        bool dundef;
        m->flags &= ~shift_undef(t, count, &dundef);
    }
    if (t->spec & (S_DIV | S_IDIV)) {
        uint64_t d = rv(r);
        if (!(sem_rand(r) & 15)) d = 0;
        uint64_t mask = osz == 8 ? ~0ull : (1ull << (osz * 8)) - 1;
        d &= mask;
        uint64_t lo = rv(r) & mask, hi;
        if (t->spec & S_DIV)
            hi = (sem_rand(r) & 3) && d ? sem_below(r, d) : rv(r) & mask;
        else
            hi = (sem_rand(r) & 3) ? (((lo >> (osz * 8 - 1)) & 1) ? mask : 0) : rv(r) & mask;
        if (osz == 1) {
            *gpr(&g, 0) = (*gpr(&g, 0) & ~0xffffull) | (hi & 0xff) << 8 | (lo & 0xff);
        } else {
            set_sized(&g, 0, osz, lo);
            set_sized(&g, 2, osz, hi);
        }
        if (!g.mem)
            set_sized(&g, g.rmreg, osz, d);
        else
            imm = d; /* written to memory below */
    }
    if (t->spec & S_STR) {
        unsigned n = (t->spec & S_STRREP) ? (unsigned)sem_below(r, 9) : 1;
        if (t->spec & S_STRREP) {
            *gpr(&g, 1) = n;
            if (!(sem_rand(r) & 7)) *gpr(&g, 1) = 0;
        }
        uint64_t si = SEM_DATA_ADDR + 0x100 + sem_below(r, 0x900);
        uint64_t di = SEM_DATA_ADDR + 0x100 + sem_below(r, 0x900);
        if (!(sem_rand(r) & 7)) di = si + sem_below(r, 2 * t->osz + 1) - t->osz; /* overlapping */
        if ((t->spec & S_STRREP) && n > 1 && !(sem_rand(r) & 15)) {
            /* runs off the end of the data page after some elements: #PF with RCX/RSI/RDI
             * updated for the elements done */
            uint64_t *p = (sem_rand(r) & 1) ? &si : &di;
            *p = SEM_DATA_ADDR + SEM_DATA_SIZE - t->osz * (1 + sem_below(r, n - 1));
            if (c->in.rflags & FL_DF) *p = SEM_DATA_ADDR + t->osz * sem_below(r, n - 1);
            if (!(sem_rand(r) & 3)) *p += 1 + sem_below(r, t->osz); /* an element straddles */
        }
        *gpr(&g, 6) = si;
        *gpr(&g, 7) = di;
        if (!(sem_rand(r) & 3)) {
            /* 32-bit address size: ESI/EDI/ECX only, the upper halves are ignored (and cleared) */
            g.a32 = true;
            *gpr(&g, 6) |= sem_rand(r) << 32;
            *gpr(&g, 7) |= sem_rand(r) << 32;
            if (t->spec & S_STRREP) *gpr(&g, 1) |= sem_rand(r) << 32;
        }
        unsigned s = t->osz, len = n * s;
        bool down = c->in.rflags & FL_DF;
        uint64_t s0 = down ? si + s - len : si, d0 = down ? di + s - len : di;
        if ((t->opc & 0xfe) == 0xa6 && (sem_rand(r) & 1) && len) {
            memmove(dptr(&g, d0), dptr(&g, s0), len);
            if (sem_rand(r) & 3)
                dptr(&g, d0)[sem_below(r, len)] ^= (uint8_t)(1 + sem_below(r, 255));
        }
        if ((t->opc & 0xfe) == 0xae && (sem_rand(r) & 1) && len) {
            for (unsigned i = 0; i < len; i++)
                dptr(&g, d0)[i] = (uint8_t)(*gpr(&g, 0) >> (8 * (i % s)));
            if (sem_rand(r) & 3)
                dptr(&g, d0)[sem_below(r, len)] ^= (uint8_t)(1 + sem_below(r, 255));
        }
    }
    if ((t->spec & S_LOOP) && t->opc != 0xe3 && !(sem_rand(r) & 3)) g.a32 = true; /* ecx */
    if (t->spec & S_LOOP) {
        static const uint64_t v[] = {0, 1, 2, 0x100000000ull, 0xffffffffull, 0x100000001ull};
        if (sem_rand(r) & 1) *gpr(&g, 1) = v[sem_below(r, 6)];
    }
    if (t->spec & S_XLAT) *gpr(&g, 3) = SEM_DATA_ADDR + 0x100 + sem_below(r, 0x800);
    if (t->spec & S_MASKMOV) *gpr(&g, 7) = SEM_DATA_ADDR + 0x100 + sem_below(r, 0x800);
    if (t->spec & S_MOFFS) imm = SEM_DATA_ADDR + 0x40 + sem_below(r, 0xa00);
    if (t->spec & S_LEAVE) *gpr(&g, 5) = SEM_DATA_ADDR + 0xc00 + 8 * sem_below(r, 64);
    if (t->spec & S_ENTER) {
        /* size, then nesting level (mostly 0..2; the frame pointers read come from [rbp]) */
        unsigned level = (sem_rand(r) & 3) ? (unsigned)sem_below(r, 3) : (unsigned)sem_below(r, 32);
        imm = (sem_below(r, 64) * 8) | (uint64_t)level << 16;
        *gpr(&g, 5) = SEM_DATA_ADDR + 0x900 + 8 * sem_below(r, 64);
    }
    if ((t->spec & S_PCMPSTR) && (sem_rand(r) & 3)) {
        *gpr(&g, 0) = (uint64_t)(int64_t)((int)sem_below(r, 41) - 20);
        *gpr(&g, 2) = (uint64_t)(int64_t)((int)sem_below(r, 41) - 20);
    }
    if ((t->spec & S_PCMPSTR) && (sem_rand(r) & 1)) {
        /* strings from a small alphabet so that they match somewhere */
        for (unsigned i = 0; i < 16; i++)
            for (unsigned j = 0; j < 16; j++)
                c->in.fx[FX_XMM(i) + j] = (uint8_t) "abcabc\0ab"[sem_below(r, 9)];
    }
    if ((t->spec & S_BITOFF) && g.mem)
        set_sized(&g, g.reg, osz, (uint64_t)((int64_t)sem_below(r, 4096) - 2048));
    if ((t->spec & S_ZSRC) && !g.mem && !(sem_rand(r) & 7)) set_sized(&g, g.rmreg, osz, 0);

    /* memory placement */
    if (g.mem) {
        unsigned msz = t->msz ? t->msz : osz;
        if (t->rmsz && t->rmk == K_GPR) msz = t->rmsz;
        uint64_t lo = SEM_DATA_ADDR + 0x40, hi = SEM_DATA_ADDR + 0xb00 - 16;
        if (t->spec & S_BITOFF) lo = SEM_DATA_ADDR + 0x500, hi = SEM_DATA_ADDR + 0x700;
        uint64_t ea = lo + sem_below(r, hi - lo);
        unsigned al = msz >= 16 ? 16 : msz;
        if ((t->spec & S_ALIGN) || (sem_rand(r) & 1)) ea &= ~(uint64_t)(al - 1);
        if ((t->spec & S_ALIGN) && !(sem_rand(r) & 15))
            ea += 1 + sem_below(r, al - 1); /* misaligned: #GP */
        if (!(t->spec & S_LEA) && g.mform <= 4 && !(sem_rand(r) % 48)) {
            /* sometimes a bad address: non-canonical (#GP, #SS via rsp/rbp) or unmapped (#PF) */
            unsigned how = sem_rand(r) % 3;
            if (!g.a32 && g.mform <= 3 && how == 0)
                ea = 0x0000800000000000ull | (sem_rand(r) & 0x00007ffffffff000ull) | (ea & 0xfff);
            else if (how == 1 && msz >= 2)
                ea = SEM_DATA_ADDR + SEM_DATA_SIZE - 1 -
                     sem_below(r, msz - 1); /* straddles the end */
            else
                ea = SEM_DATA_ADDR + 0x10000 + (ea & 0xfff);
            g.away = true;
        }
        if (!(sem_rand(r) & 15)) g.gs = true, ea -= SEM_GS_BASE; /* gs: the base is added */
        place_mem(&g, ea, t->spec & S_LEA);
        ea += g.gs ? SEM_GS_BASE : 0;
        g.lin = ea;
        uint8_t *p = (t->spec & S_LEA) || g.away ? NULL : dptr(&g, ea);
        if (p && (t->rmk == K_XMM || t->rmk == K_MMX)) xmmgen(r, p, msz);
        if (p && t->rmk == K_GPR && msz <= 8 && (sem_rand(r) & 3)) {
            uint64_t v = rv(r);
            memcpy(p, &v, msz);
        }
        if (p) {
            if (t->spec & (S_DIV | S_IDIV)) memcpy(p, &imm, msz);
            if (t->spec & S_FPMEM) {
                if (msz == 4) {
                    uint32_t v = f32gen(r);
                    memcpy(p, &v, 4);
                } else if (msz == 8) {
                    uint64_t v = f64gen(r);
                    memcpy(p, &v, 8);
                } else {
                    f80gen(r, p);
                }
            }
            if (t->spec & S_INTMEM) {
                uint64_t v = rv(r);
                if (sem_rand(r) & 1) v = (uint64_t)(int64_t)(int16_t)v;
                memcpy(p, &v, msz);
            }
            if (t->spec & S_FXRSTOR) {
                /* another random state's image; sometimes a reserved MXCSR bit (#GP) */
                struct sem_case *save = g.c;
                struct sem_case other;
                g.c = &other;
                setup_state(&g);
                g.c = save;
                memcpy(p, other.in.fx, 512);
                if (!(sem_rand(r) & 15))
                    p[FX_MXCSR + 3] |= (uint8_t)(1u << (sem_rand(r) & 7)); /* bits 24..31 */
            }
            if (t->spec & S_FXSAVE) {
                unsigned o = (unsigned)(ea - SEM_DATA_ADDR);
                m->dskip[0].off = (uint16_t)(o + 6), m->dskip[0].len = 18; /* FOP FIP FCS FDP FDS */
                m->dskip[1].off = (uint16_t)(o + 28), m->dskip[1].len = 4; /* MXCSR_MASK */
                m->dskip[2].off = (uint16_t)(o + 416),
                m->dskip[2].len = 96; /* reserved, available */
            }
            if (t->spec & S_ENV) {
                unsigned o = (unsigned)(ea - SEM_DATA_ADDR);
                m->dskip[0].off = (uint16_t)(o + 2), m->dskip[0].len = 2;
                m->dskip[1].off = (uint16_t)(o + 6), m->dskip[1].len = 2;
                m->dskip[2].off = (uint16_t)(o + 10), m->dskip[2].len = 18;
            }
            if (t->spec & S_BCD) {
                for (unsigned i = 0; i < 9; i++)
                    p[i] = (uint8_t)(sem_below(r, 10) | sem_below(r, 10) << 4);
                p[9] = (sem_rand(r) & 1) ? 0x80 : 0;
                if (!(sem_rand(r) & 7)) p[sem_below(r, 9)] |= 0xa0; /* an invalid digit */
            }
            if (t->spec & S_FCW) {
                uint16_t v = (uint16_t)(0x0040 | (sem_rand(r) & 0x0f3f));
                if (!(sem_rand(r) & 7))
                    v = (uint16_t)sem_rand(r);
                else
                    v |= 0x3f; /* keep exceptions masked mostly */
                memcpy(p, &v, 2);
            }
            if (t->spec & S_MXCSR) {
                uint32_t v = (uint32_t)(sem_rand(r) & 0xffff);
                if (!(sem_rand(r) & 7))
                    v = (uint32_t)sem_rand(r) & ~0x20000u; /* not AMD's MM bit (17) */
                else
                    v |= 0x1f80;
                memcpy(p, &v, 4);
            }
            if ((t->spec & S_ZSRC) && !(sem_rand(r) & 7)) memset(p, 0, msz);
        }
    }
    if ((t->spec & S_CMPX) && !g.away) {
        if (sem_rand(r) & 1) {
            uint64_t v;
            if (g.mem)
                memcpy(&v, dptr(&g, g.lin), 8);
            else
                v = get_sized(&g, g.rmreg, osz);
            set_sized(&g, 0, osz, v);
        }
    }
    if ((t->spec & S_CX8) && !g.away && (sem_rand(r) & 1)) {
        uint64_t lo, hi = 0;
        unsigned h = t->osz == 8 ? 8 : 4;
        memcpy(&lo, dptr(&g, g.lin), 8);
        if (h == 8)
            memcpy(&hi, dptr(&g, g.lin) + 8, 8);
        else
            hi = lo >> 32, lo &= 0xffffffff;
        set_sized(&g, 0, h, lo);
        set_sized(&g, 2, h, hi);
    }

    /* encode */
    struct enc e = {.n = 0, .disp_off = -1};
    bool lock = false;
    if (t->spec & S_LOCK) lock = g.mem ? (sem_rand(r) & 3) == 0 : (sem_rand(r) & 31) == 0;
    if (lock) eb(&e, 0xf0);
    if (g.a32) eb(&e, 0x67);
    if (g.gs)
        eb(&e, 0x65);
    else if (g.mem && !(sem_rand(r) & 15))
        eb(&e, (uint8_t) "\x2e\x36\x3e\x26"[sem_rand(r) & 3]); /* no-op segment override */
    if (t->vex) {
        unsigned R = !(g.reg & 8), X = !(g.mem && g.mform >= 3 && g.mform <= 4 && (g.index & 8)),
                 B = g.mem ? !(g.mform <= 3 && (g.base & 8)) : !(g.rmreg & 8);
        if (t->form == FM_EXT) R = 1;
        unsigned pp = t->pfx == 0x66 ? 1 : t->pfx == 0xf3 ? 2 : t->pfx == 0xf2 ? 3 : 0;
        eb(&e, 0xc4);
        eb(&e, R << 7 | X << 6 | B << 5 | t->map);
        unsigned vv = t->vexk ? g.vreg : 0;
        if (t->form == FM_EXT) vv = g.reg; /* BLS*: the destination is vvvv */
        eb(&e, t->vexw << 7 | ((~vv & 15) << 3) | pp);
        eb(&e, t->opc);
    } else {
        if (t->osz == 2 && t->pfx != 0x66 && t->regk != K_XMM) eb(&e, 0x66);
        if (t->pfx) eb(&e, t->pfx);
        if (g.rex) {
            unsigned rex = 0x40;
            if (t->osz == 8) rex |= 8;
            if (t->form == FM_RM && (g.reg & 8) && (t->regk == K_GPR || t->regk == K_XMM)) rex |= 4;
            if (g.mem) {
                if (g.mform <= 4 && g.mform != 4 && (g.base & 8)) rex |= 1;
                if ((g.mform == 3 || g.mform == 4) && (g.index & 8)) rex |= 2;
            } else if ((t->form == FM_RM || t->form == FM_EXT) && is_rex_reg(t->rmk, g.rmreg)) {
                rex |= 1;
            } else if (t->form == FM_OPREG && (g.rmreg & 8)) {
                rex |= 1;
            }
            eb(&e, rex);
        }
        if (t->map >= 1) eb(&e, 0x0f);
        if (t->map == 2) eb(&e, 0x38);
        if (t->map == 3) eb(&e, 0x3a);
        eb(&e, t->form == FM_OPREG ? t->opc + (g.rmreg & 7) : t->opc);
    }
    switch (t->form) {
    case FM_RM: modrm(&g, &e, regbits(t->regk, g.reg) | (t->regk == K_MMX ? g.reg : 0)); break;
    case FM_EXT: modrm(&g, &e, t->ext); break;
    case FM_FIX: {
        unsigned b = t->ext;
        if ((b & 7) == 0 && t->rm == RM_REG && strchr(t->name, '(')) b |= g.rmreg & 7;
        eb(&e, b);
        break;
    }
    default: break;
    }
    unsigned immn = t->imm;
    if (t->form == FM_REL) {
        eimm(&e, SEM_BRANCH_DISP, immn);
    } else if (immn) {
        if ((t->spec & S_STACK) && immn == 2 && (t->opc == 0xc2))
            imm = sem_below(r, 4) * 8 + ((sem_rand(r) & 3) ? 0 : sem_below(r, 8));
        if (t->form == FM_OPREG && immn == 8 && !g.rex) {
            immn = 4; /* B8+r with no REX.W: imm32 */
        }
        eimm(&e, imm, immn);
    }
    if (e.disp_off >= 0) {
        int64_t d = (int64_t)g.ea - (int64_t)(SEM_INSN_ADDR + e.n);
        if (g.a32) d = (int64_t)(int32_t)(uint32_t)d;
        uint32_t d32 = (uint32_t)d;
        memcpy(e.b + e.disp_off, &d32, 4);
    }
    if ((t->spec & S_INDIRECT) && !g.away) {
        uint64_t target = SEM_INSN_ADDR + e.n + SEM_BRANCH_DISP;
        if (sem_rand(r) & 1) target = SEM_INSN_ADDR + e.n; /* the fall-through stub */
        if (!(sem_rand(r) & 15))
            target = 0x0000800000000000ull | (sem_rand(r) & 0x7fffffffffffull); /* #GP */
        if (g.mem)
            memcpy(dptr(&g, g.lin), &target, 8);
        else
            *gpr(&g, g.rmreg) = target;
    }
    if (t->spec & S_RET) {
        uint64_t target = SEM_INSN_ADDR + e.n + SEM_BRANCH_DISP;
        memcpy(dptr(&g, c->in.gpr[4] & ~7ull) + (c->in.gpr[4] & 7), &target, 8);
    }
    if (t->spec & S_POPF) {
        uint64_t v = 2 | (sem_rand(r) & (FL_STATUS | FL_DF));
        uint64_t sp = c->in.gpr[4];
        memcpy(dptr(&g, sp), &v, 8);
    }
    if (e.n > 15) {
        /* too long with the optional prefixes: drop the segment override */
        e.n = 0;
    }
    c->len = (uint8_t)e.n;
    memcpy(c->code, e.b, e.n > 16 ? 16 : e.n);

    /* what the encoding must decode to */
    struct hvp_x86_insn insn;
    int n = e.n ? hvp_x86_decode(&insn, c->code, c->len, 64) : -1;
    if (((lock && !g.mem) || (t->spec & S_INVALID)) && n == -HVP_X86_EINVALID)
        return; /* LOCK on a register form: #UD on both sides */
    if (n != (int)e.n || strcmp(hvp_x86_op_name(insn.op), t->mn))
        c->code[15] = (uint8_t)(e.n < 15 ? e.n : 15),
        c->len = 0; /* reported as an encoding error */
}
