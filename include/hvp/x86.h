/* hvp x86 core: the x86-64 instruction decoder and formatter.
 *
 * The decoder turns raw bytes into a compact, fixed-size record meant to be
 * consumed by the interpreter (src/x86 CPU) and the instruction emulator, not
 * text. hvp_x86_format() turns a record into Intel-syntax text for traces,
 * `hvp dis` and error messages.
 *
 * The x86 core knows nothing of partitions, devices or backends.
 */
#ifndef HVP_X86_H
#define HVP_X86_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest legal instruction; a longer one raises #GP. */
#define HVP_X86_MAX_INSN_LEN 15

/* Instruction identities (mnemonics), spelled like Zydis and the Intel SDM in
 * lower case: HVP_X86_OP_ADD <-> "add". The list lives in x86_ops.def so that
 * tables, the formatter and tests share one source. */
enum hvp_x86_op {
#define HVP_X86_OP(id, name) HVP_X86_OP_##id,
#include "hvp/x86_ops.def"
#undef HVP_X86_OP
    HVP_X86_OP_COUNT
};

/* Registers: one flat namespace, in blocks so that "number = reg - block
 * base". Block order and sizes are part of the API. */
enum hvp_x86_reg {
    HVP_X86_REG_NONE = 0,
    HVP_X86_REG_AL,   /* 16 byte registers as with REX: al cl dl bl spl bpl sil dil r8b..r15b */
    HVP_X86_REG_AH = HVP_X86_REG_AL + 16, /* ah ch dh bh (no REX, encodings 4..7) */
    HVP_X86_REG_AX = HVP_X86_REG_AH + 4,  /* 16 word registers */
    HVP_X86_REG_EAX = HVP_X86_REG_AX + 16,
    HVP_X86_REG_RAX = HVP_X86_REG_EAX + 16,
    HVP_X86_REG_ES = HVP_X86_REG_RAX + 16, /* es cs ss ds fs gs */
    HVP_X86_REG_CR0 = HVP_X86_REG_ES + 6,
    HVP_X86_REG_DR0 = HVP_X86_REG_CR0 + 16,
    HVP_X86_REG_ST0 = HVP_X86_REG_DR0 + 16,
    HVP_X86_REG_MM0 = HVP_X86_REG_ST0 + 8,
    HVP_X86_REG_XMM0 = HVP_X86_REG_MM0 + 8,
    HVP_X86_REG_YMM0 = HVP_X86_REG_XMM0 + 32,
    HVP_X86_REG_ZMM0 = HVP_X86_REG_YMM0 + 32,
    HVP_X86_REG_K0 = HVP_X86_REG_ZMM0 + 32,
    HVP_X86_REG_BND0 = HVP_X86_REG_K0 + 8,
    HVP_X86_REG_IP = HVP_X86_REG_BND0 + 4, /* ip eip rip: RIP-relative base */
    HVP_X86_REG_EIP,
    HVP_X86_REG_RIP,
    HVP_X86_REG_TMM0, /* tmm0..tmm7: AMX tiles (appended block) */
    HVP_X86_REG_COUNT = HVP_X86_REG_TMM0 + 8
};

/* The general-purpose register of `size` bytes (1, 2, 4, 8) numbered n
 * (0..15), as encoded with a REX prefix present. */
static inline unsigned hvp_x86_gpr(unsigned size, unsigned n)
{
    switch (size) {
    case 1: return HVP_X86_REG_AL + n;
    case 2: return HVP_X86_REG_AX + n;
    case 4: return HVP_X86_REG_EAX + n;
    default: return HVP_X86_REG_RAX + n;
    }
}

/* Operand kinds. */
enum hvp_x86_opkind {
    HVP_X86_OPK_NONE = 0,
    HVP_X86_OPK_REG, /* .reg */
    HVP_X86_OPK_MEM, /* the instruction's memory operand: insn.mem */
    HVP_X86_OPK_IMM, /* insn.imm (or insn.imm2 when .index == 1) */
    HVP_X86_OPK_REL, /* branch displacement in insn.imm; target = next RIP + imm */
    HVP_X86_OPK_FAR, /* ptr16:16/32: offset in insn.imm, selector in insn.imm2 */
};

struct hvp_x86_operand {
    uint8_t kind;  /* enum hvp_x86_opkind */
    uint8_t reg;   /* enum hvp_x86_reg for REG */
    uint8_t index; /* IMM: 0 = insn.imm, 1 = insn.imm2 */
    uint8_t flags; /* HVP_X86_OPF_* */
    uint16_t size; /* bytes read/written: register width, memory access size
                      (e.g. 10 for m80, 512 for FXSAVE), immediate width
                      after extension */
    uint16_t elem; /* element size in bytes for vector/broadcast forms, else 0 */
};

#define HVP_X86_OPF_READ 0x01
#define HVP_X86_OPF_WRITE 0x02
#define HVP_X86_OPF_IMPLICIT 0x04 /* not encoded (e.g. AL in "add al, imm8" is explicit; 1 in "shl r, 1") */
#define HVP_X86_OPF_VSIB 0x08     /* memory operand uses a vector index */
#define HVP_X86_OPF_BCST 0x10     /* EVEX embedded broadcast */

/* The memory operand. base/index are enum hvp_x86_reg (HVP_X86_REG_RIP etc.
 * for RIP-relative, a vector register for VSIB), NONE when absent. disp is
 * sign-extended to 64 bits; the effective address is computed modulo the
 * address size. */
struct hvp_x86_mem {
    uint8_t seg;   /* effective segment register (override or default) */
    uint8_t base;
    uint8_t index;
    uint8_t scale; /* 1, 2, 4, 8 */
    int32_t pad_;
    int64_t disp;
};

/* Encodings. */
enum hvp_x86_enc {
    HVP_X86_ENC_LEGACY = 0,
    HVP_X86_ENC_VEX,
    HVP_X86_ENC_EVEX,
    HVP_X86_ENC_XOP,
    HVP_X86_ENC_3DNOW,
};

/* Opcode maps. */
enum hvp_x86_map {
    HVP_X86_MAP_1BYTE = 0,
    HVP_X86_MAP_0F,
    HVP_X86_MAP_0F38,
    HVP_X86_MAP_0F3A,
};

/* Prefix bits in insn.prefixes: what the bytes said. */
#define HVP_X86_PFX_LOCK 0x0001
#define HVP_X86_PFX_REP 0x0002   /* F3 (REP/REPE/REPZ) in effect */
#define HVP_X86_PFX_REPNE 0x0004 /* F2 in effect */
#define HVP_X86_PFX_OPSIZE 0x0008
#define HVP_X86_PFX_ADDRSIZE 0x0010
#define HVP_X86_PFX_SEG 0x0020 /* a segment override is present: see mem.seg */
#define HVP_X86_PFX_REX 0x0040
#define HVP_X86_PFX_REXW 0x0080
#define HVP_X86_PFX_VEX 0x0100
#define HVP_X86_PFX_EVEX 0x0200
#define HVP_X86_PFX_XOP 0x0400

/* Properties of the decoded instruction in insn.flags. */
#define HVP_X86_F_MODRM 0x0001   /* has a ModRM byte */
#define HVP_X86_F_SIB 0x0002     /* has a SIB byte */
#define HVP_X86_F_MEM 0x0004     /* has a ModRM memory operand (insn.mem) */
#define HVP_X86_F_RIPREL 0x0008  /* memory operand is RIP/EIP-relative */
#define HVP_X86_F_BRANCH 0x0010  /* changes control flow (jmp, jcc, call, ret, int, loop, ...) */
#define HVP_X86_F_COND 0x0020    /* conditional branch */
#define HVP_X86_F_STRING 0x0040  /* string instruction (movs, stos, ins, ...) */
#define HVP_X86_F_PRIV 0x0080    /* CPL 0 only */
#define HVP_X86_F_LOCKABLE 0x0100 /* LOCK is legal with this form */
#define HVP_X86_F_SERIALIZE 0x0200

/* Decoder results (negative returns of hvp_x86_decode). */
#define HVP_X86_EINVALID 1   /* no such instruction or illegal form: #UD */
#define HVP_X86_ETOOLONG 2   /* longer than 15 bytes: #GP(0) */
#define HVP_X86_ETRUNCATED 3 /* ran out of bytes before the instruction ended; never
                                returned when 16 or more bytes were available */

/* Feature sets, for CPUID checks and #UD on unimplemented features. */
enum hvp_x86_isa {
    HVP_X86_ISA_BASE = 0, /* 8086..x86-64 integer, system */
    HVP_X86_ISA_X87,
    HVP_X86_ISA_CMOV,
    HVP_X86_ISA_MMX,
    HVP_X86_ISA_SSE,
    HVP_X86_ISA_SSE2,
    HVP_X86_ISA_SSE3,
    HVP_X86_ISA_SSSE3,
    HVP_X86_ISA_SSE41,
    HVP_X86_ISA_SSE42,
    HVP_X86_ISA_SSE4A,
    HVP_X86_ISA_POPCNT,
    HVP_X86_ISA_LZCNT,
    HVP_X86_ISA_BMI1,
    HVP_X86_ISA_BMI2,
    HVP_X86_ISA_ADX,
    HVP_X86_ISA_MOVBE,
    HVP_X86_ISA_CX16,
    HVP_X86_ISA_AES,
    HVP_X86_ISA_PCLMUL,
    HVP_X86_ISA_SHA,
    HVP_X86_ISA_RDRAND,
    HVP_X86_ISA_RDSEED,
    HVP_X86_ISA_FSGSBASE,
    HVP_X86_ISA_XSAVE,
    HVP_X86_ISA_AVX,
    HVP_X86_ISA_AVX2,
    HVP_X86_ISA_FMA,
    HVP_X86_ISA_F16C,
    HVP_X86_ISA_AVX512,
    HVP_X86_ISA_VMX,
    HVP_X86_ISA_SVM,
    HVP_X86_ISA_OTHER,
    HVP_X86_ISA_COUNT
};

/* One decoded instruction. Fixed size, no pointers: it can be cached,
 * copied and compared. Operands are the explicit ones, in Intel order
 * (destination first). */
struct hvp_x86_insn {
    uint16_t op;      /* enum hvp_x86_op */
    uint8_t len;      /* total length in bytes, 1..15 */
    uint8_t mode;     /* 16, 32 or 64: the code size it was decoded for */
    uint8_t opsize;   /* effective operand size in bytes: 1, 2, 4 or 8 */
    uint8_t addrsize; /* effective address size in bytes: 2, 4 or 8 */
    uint8_t enc;      /* enum hvp_x86_enc */
    uint8_t map;      /* enum hvp_x86_map (VEX/EVEX map select folds in) */
    uint8_t opcode;   /* last opcode byte */
    uint8_t modrm;    /* valid with HVP_X86_F_MODRM */
    uint8_t sib;      /* valid with HVP_X86_F_SIB */
    uint8_t rex;      /* the REX byte, 0 if none */
    uint8_t vl;       /* vector length for VEX/EVEX: 0 = 128, 1 = 256, 2 = 512 */
    uint8_t vvvv;     /* VEX/EVEX extra register number (0..31), 0 if none */
    uint8_t nops;     /* number of entries used in ops[] */
    uint8_t isa;      /* enum hvp_x86_isa */
    uint8_t mask;     /* EVEX opmask register number, 0 = none */
    uint8_t pfx_count;/* number of legacy prefix bytes */
    uint8_t imm_off;  /* offset of the first immediate byte, 0 if none */
    uint8_t disp_off; /* offset of the displacement, 0 if none */
    uint16_t prefixes; /* HVP_X86_PFX_* */
    uint16_t flags;   /* HVP_X86_F_* */
    uint16_t pad_;
    struct hvp_x86_mem mem;
    int64_t imm;  /* first immediate, sign- or zero-extended as the operand defines */
    int64_t imm2; /* second immediate (ENTER's nesting level, far pointer selector) */
    struct hvp_x86_operand ops[5];
};

/* Decodes one instruction from code[0..avail) in `mode` (16, 32 or 64).
 * Returns its length (> 0) or a negative HVP_X86_E* code. On error *out is
 * still filled as far as decoding got (len = bytes examined). */
int hvp_x86_decode(struct hvp_x86_insn *out, const uint8_t *code, size_t avail, unsigned mode);

/* Intel-syntax text of insn, e.g. "mov qword ptr [rip+0x10], rax". `rip` is
 * the address of the instruction, used to print branch targets. Writes at
 * most size bytes including the terminating NUL; returns the length the
 * full text would have (like snprintf). */
int hvp_x86_format(const struct hvp_x86_insn *insn, uint64_t rip, char *buf, size_t size);

/* Names; "?" for values out of range. */
const char *hvp_x86_op_name(unsigned op);
const char *hvp_x86_reg_name(unsigned reg);

#ifdef __cplusplus
}
#endif

#endif
