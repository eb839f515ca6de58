/* Decoder unit tests: lengths, identities and fields of hand-picked
 * encodings in each mode; error codes; no over-read on truncated input. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "hvp/x86.h"

#define HVP_X86_REG_RSP (HVP_X86_REG_RAX + 4)
#define HVP_X86_REG_ESP (HVP_X86_REG_EAX + 4)
#define HVP_X86_REG_DX  (HVP_X86_REG_AX + 2)
#define HVP_X86_REG_CL  (HVP_X86_REG_AL + 1)
#define HVP_X86_REG_SS  (HVP_X86_REG_ES + 2)
#define HVP_X86_REG_DS  (HVP_X86_REG_ES + 3)
#define HVP_X86_REG_FS  (HVP_X86_REG_ES + 4)

/* Decodes a hex string ("48 8b 05 ...") in `mode`; returns decode's result. */
static int dec(struct hvp_x86_insn *in, unsigned mode, const char *hex)
{
    uint8_t buf[32];
    size_t n = 0;
    while (*hex && n < sizeof(buf)) {
        if (*hex == ' ') {
            hex++;
            continue;
        }
        char t[3] = {hex[0], hex[1], 0};
        buf[n++] = (uint8_t)strtoul(t, NULL, 16);
        hex += 2;
    }
    /* decode from a heap copy of exactly n bytes so ASan catches over-reads */
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, buf, n);
    int r = hvp_x86_decode(in, p, n, mode);
    free(p);
    return r;
}

#define OK(in, mode, hex, want, opid)                                                              \
    do {                                                                                           \
        int r_ = dec(in, mode, hex);                                                               \
        cr_assert_eq(r_, want, "%s (mode %u): got %d, want %d", hex, mode, r_, want);              \
        cr_assert_eq((in)->len, want);                                                             \
        cr_assert_eq((in)->op, HVP_X86_OP_##opid, "%s: op %s, want %s", hex,                       \
                     hvp_x86_op_name((in)->op), #opid);                                            \
    } while (0)

#define BAD(mode, hex, err)                                                                        \
    do {                                                                                           \
        struct hvp_x86_insn b_;                                                                    \
        int r_ = dec(&b_, mode, hex);                                                              \
        cr_assert_eq(r_, -(err), "%s (mode %u): got %d, want %d", hex, mode, r_, -(err));          \
    } while (0)

#define REG(in, k, r)                                                                              \
    do {                                                                                           \
        cr_assert_eq((in)->ops[k].kind, HVP_X86_OPK_REG);                                          \
        cr_assert_eq((in)->ops[k].reg, r, "operand %d: %s", k,                                     \
                     hvp_x86_reg_name((in)->ops[k].reg));                                          \
    } while (0)

Test(decode, alu_and_mov_64)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "48 01 c0", 3, ADD);
    cr_assert_eq(in.nops, 2);
    REG(&in, 0, HVP_X86_REG_RAX);
    REG(&in, 1, HVP_X86_REG_RAX);
    cr_assert_eq(in.opsize, 8);
    cr_assert(in.ops[0].flags & HVP_X86_OPF_WRITE);

    OK(&in, 64, "8b 04 24", 3, MOV);
    cr_assert_eq(in.ops[1].kind, HVP_X86_OPK_MEM);
    cr_assert_eq(in.mem.base, HVP_X86_REG_RSP);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_SS);
    cr_assert(in.flags & HVP_X86_F_SIB);

    /* 64-bit immediate and sign-extended imm8 */
    OK(&in, 64, "48 b8 88 77 66 55 44 33 22 11", 10, MOV);
    cr_assert_eq(in.imm, 0x1122334455667788LL);
    cr_assert_eq(in.imm_off, 2);
    OK(&in, 64, "48 83 c0 ff", 4, ADD);
    cr_assert_eq(in.imm, -1);
    OK(&in, 64, "e4 80", 2, IN);
    cr_assert_eq(in.imm, 0x80); /* port numbers are unsigned */
}

Test(decode, byte_registers_and_rex)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "88 e0", 2, MOV); /* mov al, ah */
    REG(&in, 0, HVP_X86_REG_AL);
    REG(&in, 1, HVP_X86_REG_AH);
    OK(&in, 64, "40 88 e0", 3, MOV); /* any REX: spl instead of ah */
    REG(&in, 1, HVP_X86_REG_AL + 4);
    /* REX followed by a legacy prefix is ignored */
    OK(&in, 64, "48 66 01 c0", 4, ADD);
    REG(&in, 0, HVP_X86_REG_AX);
    cr_assert_eq(in.rex, 0);
    /* two REX: the last counts */
    OK(&in, 64, "48 41 01 c0", 4, ADD);
    REG(&in, 0, HVP_X86_REG_EAX + 8);
    /* 40..4f are INC/DEC outside 64-bit mode */
    OK(&in, 32, "48", 1, DEC);
    REG(&in, 0, HVP_X86_REG_EAX);
    OK(&in, 16, "40", 1, INC);
    REG(&in, 0, HVP_X86_REG_AX);
}

Test(decode, rip_relative_and_moffs)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "48 8b 05 10 00 00 00", 7, MOV);
    cr_assert_eq(in.mem.base, HVP_X86_REG_RIP);
    cr_assert_eq(in.mem.disp, 0x10);
    cr_assert(in.flags & HVP_X86_F_RIPREL);
    cr_assert_eq(in.disp_off, 3);
    OK(&in, 64, "67 8b 05 f0 ff ff ff", 7, MOV);
    cr_assert_eq(in.mem.base, HVP_X86_REG_EIP);
    cr_assert_eq(in.mem.disp, -16);
    /* in 32-bit mode the same ModRM is an absolute disp32 */
    OK(&in, 32, "8b 05 10 00 00 00", 6, MOV);
    cr_assert_eq(in.mem.base, HVP_X86_REG_NONE);
    /* moffs: address-size wide */
    OK(&in, 64, "a1 11 22 33 44 55 66 77 88", 9, MOV);
    cr_assert_eq((uint64_t)in.mem.disp, 0x8877665544332211ULL);
    OK(&in, 64, "67 a1 11 22 33 44", 6, MOV);
    OK(&in, 16, "a0 34 12", 3, MOV);
    cr_assert_eq(in.mem.disp, 0x1234);
}

Test(decode, addressing_16bit)
{
    struct hvp_x86_insn in;
    OK(&in, 16, "8b 00", 2, MOV); /* mov ax, [bx+si] */
    REG(&in, 0, HVP_X86_REG_AX);
    cr_assert_eq(in.mem.base, HVP_X86_REG_AX + 3);
    cr_assert_eq(in.mem.index, HVP_X86_REG_AX + 6);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_DS);
    OK(&in, 16, "8b 46 fe", 3, MOV); /* mov ax, [bp-2] */
    cr_assert_eq(in.mem.base, HVP_X86_REG_AX + 5);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_SS);
    cr_assert_eq(in.mem.disp, -2);
    OK(&in, 16, "8b 06 34 12", 4, MOV); /* mov ax, [0x1234] */
    cr_assert_eq(in.mem.base, HVP_X86_REG_NONE);
    OK(&in, 16, "66 8b 00", 3, MOV);
    REG(&in, 0, HVP_X86_REG_EAX);
    OK(&in, 16, "67 8b 04 24", 4, MOV); /* 32-bit addressing with SIB */
    cr_assert_eq(in.mem.base, HVP_X86_REG_ESP);
    OK(&in, 32, "67 8b 00", 3, MOV);
    cr_assert_eq(in.mem.base, HVP_X86_REG_AX + 3);
}

Test(decode, segment_overrides)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "64 8b 00", 3, MOV);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_FS);
    /* CS/DS/ES/SS overrides are ignored in 64-bit mode */
    OK(&in, 64, "26 8b 00", 3, MOV);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_DS);
    OK(&in, 64, "64 2e 8b 00", 4, MOV);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_FS);
    /* last override wins */
    OK(&in, 32, "64 26 8b 00", 4, MOV);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_ES);
    cr_assert(in.prefixes & HVP_X86_PFX_SEG);
}

Test(decode, prefixes_and_length_limit)
{
    struct hvp_x86_insn in;
    /* 14 prefixes + 1 opcode = 15 bytes: fine */
    OK(&in, 64, "66 66 66 66 66 66 66 66 66 66 66 66 66 66 90", 15, NOP);
    /* 16 bytes: #GP */
    BAD(64, "66 66 66 66 66 66 66 66 66 66 66 66 66 66 66 90", HVP_X86_ETOOLONG);
    BAD(64, "66 66 66 66 66 66 66 66 66 66 66 48 c7 c0 01 00 00 00", HVP_X86_ETOOLONG);
    OK(&in, 64, "f3 90", 2, PAUSE);
    OK(&in, 64, "41 90", 2, XCHG);
    REG(&in, 0, HVP_X86_REG_EAX + 8);
    /* repeated, conflicting F2/F3: the last one chooses */
    OK(&in, 64, "f2 f3 0f b8 c0", 5, POPCNT);
    cr_assert_eq(in.pfx_count, 2);
    OK(&in, 64, "66 f3 0f b8 c0", 5, POPCNT);
    REG(&in, 0, HVP_X86_REG_AX);
}

Test(decode, lock_rules)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "f0 01 00", 3, ADD);
    cr_assert(in.prefixes & HVP_X86_PFX_LOCK);
    cr_assert(in.flags & HVP_X86_F_LOCKABLE);
    BAD(64, "f0 01 c0", HVP_X86_EINVALID); /* register destination */
    BAD(64, "f0 90", HVP_X86_EINVALID);    /* not lockable */
    BAD(64, "f0 8b 00", HVP_X86_EINVALID); /* mov */
    OK(&in, 64, "f0 0f c7 08", 4, CMPXCHG8B);
    OK(&in, 64, "f0 48 0f c7 08", 5, CMPXCHG16B);
    OK(&in, 32, "f0 0f b1 0b", 4, CMPXCHG);
    OK(&in, 32, "f0 0f c1 0b", 4, XADD);
    OK(&in, 64, "f0 87 03", 3, XCHG);
}

Test(decode, invalid_in_64)
{
    struct hvp_x86_insn in;
    BAD(64, "06", HVP_X86_EINVALID); /* push es */
    BAD(64, "37", HVP_X86_EINVALID); /* aaa */
    BAD(64, "ea 00 00 00 00 00 00", HVP_X86_EINVALID);
    BAD(64, "d6", HVP_X86_EINVALID);
    OK(&in, 32, "06", 1, PUSH);
    REG(&in, 0, HVP_X86_REG_ES);
    OK(&in, 32, "37", 1, AAA);
    BAD(64, "8e c8", HVP_X86_EINVALID);    /* mov cs, ax */
    BAD(64, "0f 20 c8", HVP_X86_EINVALID); /* mov rax, cr1 */
    OK(&in, 64, "0f 20 d8", 3, MOV);
    REG(&in, 0, HVP_X86_REG_RAX);
    REG(&in, 1, HVP_X86_REG_CR0 + 3);
    OK(&in, 64, "44 0f 22 c0", 4, MOV); /* mov cr8, rax */
    REG(&in, 0, HVP_X86_REG_CR0 + 8);
}

Test(decode, branches)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "e8 fb ff ff ff", 5, CALL);
    cr_assert_eq(in.ops[0].kind, HVP_X86_OPK_REL);
    cr_assert_eq(in.imm, -5);
    cr_assert(in.flags & HVP_X86_F_BRANCH);
    /* 66 is ignored by near branches in 64-bit mode (Intel) */
    OK(&in, 64, "66 e9 00 00 00 00", 6, JMP);
    cr_assert_eq(in.opsize, 8);
    OK(&in, 32, "66 e9 00 00", 4, JMP);
    OK(&in, 64, "74 fe", 2, JZ);
    cr_assert(in.flags & HVP_X86_F_COND);
    OK(&in, 64, "e3 fe", 2, JRCXZ);
    OK(&in, 64, "67 e3 fe", 3, JECXZ);
    OK(&in, 16, "e3 fe", 2, JCXZ);
    OK(&in, 64, "ff d0", 2, CALL);
    REG(&in, 0, HVP_X86_REG_RAX);
    /* far pointer */
    OK(&in, 16, "ea 11 22 33 44", 5, JMP);
    cr_assert_eq(in.ops[0].kind, HVP_X86_OPK_FAR);
    cr_assert_eq(in.imm, 0x2211);
    cr_assert_eq(in.imm2, 0x4433);
    OK(&in, 32, "9a 11 22 33 44 55 66", 7, CALL);
    cr_assert_eq(in.imm, 0x44332211);
    cr_assert_eq(in.imm2, 0x6655);
    OK(&in, 64, "c2 08 00", 3, RET);
    OK(&in, 64, "cb", 1, RETF);
}

Test(decode, enter_push_pop_sizes)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "c8 10 00 01", 4, ENTER);
    cr_assert_eq(in.imm, 16);
    cr_assert_eq(in.imm2, 1);
    cr_assert_eq(in.ops[1].index, 1);
    OK(&in, 64, "50", 1, PUSH);
    REG(&in, 0, HVP_X86_REG_RAX);
    OK(&in, 64, "66 50", 2, PUSH);
    REG(&in, 0, HVP_X86_REG_AX);
    OK(&in, 64, "41 5f", 2, POP);
    REG(&in, 0, HVP_X86_REG_RAX + 15);
    OK(&in, 64, "9c", 1, PUSHFQ);
    OK(&in, 64, "66 9c", 2, PUSHF);
    OK(&in, 32, "9c", 1, PUSHFD);
    OK(&in, 64, "6a ff", 2, PUSH);
    cr_assert_eq(in.imm, -1);
}

Test(decode, string_and_io)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "f3 48 a5", 3, MOVSQ);
    cr_assert(in.prefixes & HVP_X86_PFX_REP);
    cr_assert(in.flags & HVP_X86_F_STRING);
    OK(&in, 32, "66 ad", 2, LODSW);
    OK(&in, 16, "6c", 1, INSB);
    OK(&in, 16, "66 6d", 2, INSD);
    OK(&in, 64, "ee", 1, OUT);
    REG(&in, 0, HVP_X86_REG_DX);
    REG(&in, 1, HVP_X86_REG_AL);
    OK(&in, 64, "66 ed", 2, IN);
    REG(&in, 0, HVP_X86_REG_AX);
    OK(&in, 64, "48 ed", 2, IN); /* no 64-bit port I/O */
    REG(&in, 0, HVP_X86_REG_EAX);
}

Test(decode, movzx_bt_cmpxchg)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "48 0f b6 c1", 4, MOVZX);
    REG(&in, 0, HVP_X86_REG_RAX);
    REG(&in, 1, HVP_X86_REG_CL);
    OK(&in, 64, "0f bf 03", 3, MOVSX);
    cr_assert_eq(in.ops[1].size, 2);
    OK(&in, 64, "48 63 c1", 3, MOVSXD);
    OK(&in, 64, "0f ba e0 05", 4, BT);
    cr_assert_eq(in.imm, 5);
    OK(&in, 64, "0f a3 c8", 3, BT);
    OK(&in, 64, "0f b0 0b", 3, CMPXCHG);
    OK(&in, 64, "0f c8", 2, BSWAP);
}

Test(decode, vex_vs_les_lds)
{
    struct hvp_x86_insn in;
    OK(&in, 32, "c4 00", 2, LES);
    OK(&in, 32, "c5 00", 2, LDS);
    OK(&in, 16, "c4 06 34 12", 4, LES);
    BAD(64, "f0 c5 f8 77", HVP_X86_EINVALID); /* no prefix before VEX */
}

Test(decode, truncation_never_overreads)
{
    static const char *const samples[] = {
        "48 b8 88 77 66 55 44 33 22 11", "66 67 f0 2e 81 84 c8 44 33 22 11 78 56 34 12",
        "0f 38 f0 04 25 00 00 00 10",    "c8 10 00 01",
        "9a 11 22 33 44 55 66",          "a1 11 22 33 44 55 66 77 88",
        "f3 48 0f b8 44 24 08",          "0f 01 d0",
    };
    for (size_t k = 0; k < sizeof(samples) / sizeof(samples[0]); k++) {
        for (unsigned mode = 16; mode <= 64; mode *= 2) {
            struct hvp_x86_insn in;
            int full = dec(&in, mode, samples[k]);
            if (full <= 0) continue;
            uint8_t buf[32];
            size_t n = 0;
            for (const char *h = samples[k]; *h;) {
                if (*h == ' ') {
                    h++;
                    continue;
                }
                char t[3] = {h[0], h[1], 0};
                buf[n++] = (uint8_t)strtoul(t, NULL, 16);
                h += 2;
            }
            for (int cut = 0; cut < full; cut++) {
                uint8_t *p = malloc(cut ? (size_t)cut : 1);
                memcpy(p, buf, (size_t)cut);
                int r = hvp_x86_decode(&in, p, (size_t)cut, mode);
                free(p);
                cr_assert_eq(r, -HVP_X86_ETRUNCATED, "%s mode %u cut %d: %d", samples[k], mode, cut,
                             r);
            }
        }
    }
}

/* Hand-picked encodings from every part of the opcode space: length and
 * identity in the given mode, or the error. */
static const struct {
    unsigned mode;
    const char *hex;
    int len; /* or -error */
    unsigned op;
    unsigned nops;
} table[] = {
    /* x87 */
    {64, "d9 ee", 2, HVP_X86_OP_FLDZ, 0},
    {64, "d8 c1", 2, HVP_X86_OP_FADD, 2},
    {64, "dd 04 24", 3, HVP_X86_OP_FLD, 1},
    {64, "db 2c 24", 3, HVP_X86_OP_FLD, 1},
    {64, "df e0", 2, HVP_X86_OP_FNSTSW, 1},
    {64, "d9 08", -HVP_X86_EINVALID, 0, 0},
    {16, "66 d9 30", 3, HVP_X86_OP_FNSTENV, 1},
    /* MMX / SSE */
    {64, "0f 6f c1", 3, HVP_X86_OP_MOVQ, 2},
    {64, "66 0f 6f 00", 4, HVP_X86_OP_MOVDQA, 2},
    {64, "f3 0f 6f 00", 4, HVP_X86_OP_MOVDQU, 2},
    {64, "0f 10 00", 3, HVP_X86_OP_MOVUPS, 2},
    {64, "66 0f 10 00", 4, HVP_X86_OP_MOVUPD, 2},
    {64, "f2 0f 10 00", 4, HVP_X86_OP_MOVSD_SSE, 2},
    {64, "f3 0f 10 00", 4, HVP_X86_OP_MOVSS, 2},
    {64, "66 48 0f 6e c0", 5, HVP_X86_OP_MOVQ, 2},
    {64, "66 0f 7e c0", 4, HVP_X86_OP_MOVD, 2},
    {64, "0f 28 c1", 3, HVP_X86_OP_MOVAPS, 2},
    {64, "66 0f 3a 0f c1 08", 6, HVP_X86_OP_PALIGNR, 3},
    {64, "66 0f 38 00 c1", 5, HVP_X86_OP_PSHUFB, 2},
    {64, "f2 0f 38 f1 c1", 5, HVP_X86_OP_CRC32, 2},
    {64, "0f 0f c1 9e", 4, HVP_X86_OP_PFADD, 2},
    /* string vs SSE2 movsd/cmpsd share a name, not an id */
    {64, "a5", 1, HVP_X86_OP_MOVSD, 0},
    {64, "a7", 1, HVP_X86_OP_CMPSD, 0},
    {64, "f2 0f c2 c1 00", 5, HVP_X86_OP_CMPSD_SSE, 3},
    /* VEX */
    {64, "c5 f8 77", 3, HVP_X86_OP_VZEROUPPER, 0},
    {64, "c5 fc 77", 3, HVP_X86_OP_VZEROALL, 0},
    {64, "c5 f4 58 c2", 4, HVP_X86_OP_VADDPS, 3},
    {64, "c4 e2 7d 18 00", 5, HVP_X86_OP_VBROADCASTSS, 2},
    {64, "c4 e2 f8 f2 c1", 5, HVP_X86_OP_ANDN, 3},
    {64, "c4 e3 79 4a c1 20", 6, HVP_X86_OP_VBLENDVPS, 4},
    {64, "c4 e2 69 90 04 88", 6, HVP_X86_OP_VPGATHERDD, 3},
    {64, "c5 f0 10 00", -HVP_X86_EINVALID, 0, 0}, /* vvvv must be 1111 */
    {64, "66 c5 f8 58 c0", -HVP_X86_EINVALID, 0, 0},
    {32, "c4 e1 78 58 c0", 5, HVP_X86_OP_VADDPS, 3},
    /* EVEX */
    {64, "62 f1 7c 48 58 c2", 6, HVP_X86_OP_VADDPS, 3},
    {64, "62 f1 fd 08 7f 4c 24 05", 8, HVP_X86_OP_VMOVDQA64, 2},
    {64, "62 f1 7c 88 58 c0", -HVP_X86_EINVALID, 0, 0}, /* zeroing with k0 */
    {64, "62 f1 7c 68 58 c0", -HVP_X86_EINVALID, 0, 0}, /* L'L = 3 */
    {64, "62 f1 fc 08 58 c0", -HVP_X86_EINVALID, 0, 0}, /* vaddps is W0 */
    {32, "62 00 00 00", 2, HVP_X86_OP_BOUND, 2},
    /* XOP and AMD forms */
    {64, "8f e8 78 a2 c1 30", 6, HVP_X86_OP_VPCMOV, 4},
    {64, "8f e9 78 01 c9", 5, HVP_X86_OP_BLCFILL, 2},
    {64, "8f 00", 2, HVP_X86_OP_POP, 1},
    /* system */
    {64, "0f 01 d0", 3, HVP_X86_OP_XGETBV, 0},
    {64, "0f 01 f8", 3, HVP_X86_OP_SWAPGS, 0},
    {32, "0f 01 f8", -HVP_X86_EINVALID, 0, 0},
    {64, "0f 05", 2, HVP_X86_OP_SYSCALL, 0},
    {64, "0f 01 10", 3, HVP_X86_OP_LGDT, 1},
    {64, "f3 0f 1e fa", 4, HVP_X86_OP_ENDBR64, 0},
    {64, "0f ae f0", 3, HVP_X86_OP_MFENCE, 0},
    {64, "0f 0b", 2, HVP_X86_OP_UD2, 0},
    {64, "0f ff", -HVP_X86_ETRUNCATED, 0, 0},
};

Test(decode, opcode_space_samples)
{
    for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++) {
        struct hvp_x86_insn in;
        int r = dec(&in, table[k].mode, table[k].hex);
        cr_assert_eq(r, table[k].len, "%s (mode %u): got %d, want %d", table[k].hex, table[k].mode,
                     r, table[k].len);
        if (r < 0) continue;
        cr_assert_eq(in.op, table[k].op, "%s: %s, want %s", table[k].hex, hvp_x86_op_name(in.op),
                     hvp_x86_op_name(table[k].op));
        cr_assert_eq(in.nops, table[k].nops, "%s: %u operands, want %u", table[k].hex, in.nops,
                     table[k].nops);
    }
}

Test(decode, vector_fields)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "c4 41 74 58 c2", 5, VADDPS); /* vaddps ymm8, ymm1, ymm10 */
    cr_assert_eq(in.enc, HVP_X86_ENC_VEX);
    cr_assert_eq(in.vl, 1);
    cr_assert_eq(in.vvvv, 1);
    REG(&in, 0, HVP_X86_REG_YMM0 + 8);
    REG(&in, 1, HVP_X86_REG_YMM0 + 1);
    REG(&in, 2, HVP_X86_REG_YMM0 + 10);
    /* EVEX: zmm, mask, compressed disp8 (N = 64) */
    OK(&in, 64, "62 f1 7c 49 58 40 01", 7, VADDPS);
    cr_assert_eq(in.enc, HVP_X86_ENC_EVEX);
    cr_assert_eq(in.vl, 2);
    cr_assert_eq(in.mask, 1);
    REG(&in, 0, HVP_X86_REG_ZMM0);
    cr_assert_eq(in.mem.disp, 64);
    cr_assert_eq(in.ops[2].size, 64);
    /* embedded broadcast: one element, disp8 scaled by 4 */
    OK(&in, 64, "62 f1 7c 58 58 40 01", 7, VADDPS);
    cr_assert(in.ops[2].flags & HVP_X86_OPF_BCST);
    cr_assert_eq(in.ops[2].size, 4);
    cr_assert_eq(in.mem.disp, 4);
    /* registers 16-31 through EVEX.R' and V' */
    OK(&in, 64, "62 e1 74 00 58 c2", 6, VADDPS);
    REG(&in, 0, HVP_X86_REG_XMM0 + 16);
    REG(&in, 1, HVP_X86_REG_XMM0 + 17);
    /* VSIB */
    OK(&in, 64, "c4 e2 69 90 04 88", 6, VPGATHERDD);
    cr_assert(in.ops[1].flags & HVP_X86_OPF_VSIB);
    cr_assert_eq(in.mem.index, HVP_X86_REG_XMM0 + 1);
    cr_assert_eq(in.mem.scale, 4);
    /* is4 register operand */
    OK(&in, 64, "c4 e3 79 4a c1 20", 6, VBLENDVPS);
    REG(&in, 3, HVP_X86_REG_XMM0 + 2);
    /* opmask instructions */
    OK(&in, 64, "c5 f8 90 c1", 4, KMOVW);
    REG(&in, 0, HVP_X86_REG_K0);
    REG(&in, 1, HVP_X86_REG_K0 + 1);
}

Test(decode, x87_and_sse_operands)
{
    struct hvp_x86_insn in;
    OK(&in, 64, "dc c1", 2, FADD); /* fadd st1, st0 */
    REG(&in, 0, HVP_X86_REG_ST0 + 1);
    REG(&in, 1, HVP_X86_REG_ST0);
    OK(&in, 64, "db 28", 2, FLD);
    cr_assert_eq(in.ops[0].size, 10);
    OK(&in, 64, "dd 30", 2, FNSAVE);
    cr_assert_eq(in.ops[0].size, 108);
    OK(&in, 64, "66 44 0f 6f 08", 5, MOVDQA);
    REG(&in, 0, HVP_X86_REG_XMM0 + 9);
    cr_assert_eq(in.ops[1].size, 16);
    OK(&in, 64, "0f 6f 08", 3, MOVQ);
    REG(&in, 0, HVP_X86_REG_MM0 + 1);
    cr_assert_eq(in.ops[1].size, 8);
    OK(&in, 64, "f3 0f 10 08", 4, MOVSS);
    cr_assert_eq(in.ops[1].size, 4);
    OK(&in, 64, "0f ae 00", 3, FXSAVE);
    cr_assert_eq(in.ops[0].size, 512);
}

/* Tiny deterministic generator for the random tests. */
static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes from exactly-sized heap buffers (ASan catches any read past
 * the end); whatever decodes must decode the same from exactly its own
 * bytes, and every shorter cut must say "truncated". */
Test(decode, random_bytes_never_overread)
{
    static const uint8_t pfx[] = {0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x64,
                                  0x48, 0x0f, 0xc4, 0xc5, 0x62, 0x8f};
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (unsigned it = 0; it < 60000; it++) {
        uint8_t buf[16];
        for (unsigned k = 0; k < sizeof(buf); k++)
            buf[k] = (uint8_t)xs(&seed);
        unsigned np = xs(&seed) % 4;
        for (unsigned k = 0; k < np; k++)
            buf[k] = pfx[xs(&seed) % sizeof(pfx)];
        unsigned mode = 16u << (xs(&seed) % 3);
        size_t n = xs(&seed) % 17;
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        struct hvp_x86_insn in;
        int r = hvp_x86_decode(&in, p, n, mode);
        free(p);
        cr_assert(r == -HVP_X86_EINVALID || r == -HVP_X86_ETOOLONG || r == -HVP_X86_ETRUNCATED ||
                  (r > 0 && r <= 15 && (size_t)r <= n));
        if (r <= 0) continue;
        cr_assert_eq(in.len, r);
        cr_assert(in.nops <= 5);
        for (int cut = 0; cut <= r; cut++) {
            struct hvp_x86_insn t;
            uint8_t *q = malloc(cut ? (size_t)cut : 1);
            memcpy(q, buf, (size_t)cut);
            int rt = hvp_x86_decode(&t, q, (size_t)cut, mode);
            free(q);
            if (cut == r) {
                cr_assert_eq(rt, r);
                cr_assert_eq(t.op, in.op);
            } else {
                cr_assert_eq(rt, -HVP_X86_ETRUNCATED, "mode %u cut %d of %d: %d", mode, cut, r, rt);
            }
        }
    }
}

Test(decode, offsets_and_prefix_fields)
{
    struct hvp_x86_insn in;
    /* lock add dword [fs:rax+rbx*4+0x12345678], 0x11223344 */
    OK(&in, 64, "f0 64 81 84 98 78 56 34 12 44 33 22 11", 13, ADD);
    cr_assert_eq(in.pfx_count, 2);
    cr_assert_eq(in.disp_off, 5);
    cr_assert_eq(in.imm_off, 9);
    cr_assert_eq(in.imm, 0x11223344);
    cr_assert_eq(in.mem.scale, 4);
    cr_assert_eq(in.mem.seg, HVP_X86_REG_FS);
    cr_assert_eq(in.modrm, 0x84);
    cr_assert_eq(in.sib, 0x98);
    cr_assert(in.prefixes & HVP_X86_PFX_LOCK);
    cr_assert(in.flags & HVP_X86_F_MODRM);
    cr_assert_eq(in.addrsize, 8);
    cr_assert_eq(in.opsize, 4);
    cr_assert_eq(in.map, HVP_X86_MAP_1BYTE);
    cr_assert_eq(in.opcode, 0x81);
    /* 0F 38 map and REX.W */
    OK(&in, 64, "48 0f 38 f0 06", 5, MOVBE);
    cr_assert_eq(in.map, HVP_X86_MAP_0F38);
    cr_assert_eq(in.rex, 0x48);
    cr_assert(in.prefixes & HVP_X86_PFX_REXW);
    cr_assert_eq(in.opsize, 8);
    /* a VEX header that runs past 15 bytes is "too long", not truncated */
    BAD(32, "65 65 36 2e 26 67 3e 3e 2e 2e 36 3e 65 c4 c3", HVP_X86_ETOOLONG);
    /* serializing and privileged forms say so */
    OK(&in, 64, "0f a2", 2, CPUID);
    cr_assert(in.flags & HVP_X86_F_SERIALIZE);
    OK(&in, 64, "0f 22 d8", 3, MOV);
    cr_assert(in.flags & HVP_X86_F_PRIV);
    cr_assert(in.ops[0].flags & HVP_X86_OPF_WRITE);
}
