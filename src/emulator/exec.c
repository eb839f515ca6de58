/* Instruction semantics for I/O-port and MMIO exits.
 *
 * MMIO forms: MOV (incl. moffs and MOV m16, Sreg), MOVNTI, MOVDIRI,
 * MOVZX/MOVSX/MOVSXD, MOVBE, ADD/OR/ADC/SBB/AND/SUB/XOR/CMP/TEST,
 * NOT/NEG/INC/DEC, SHL/SHR/SAR/ROL/ROR/RCL/RCR, SHLD/SHRD, BT/BTS/BTR/BTC,
 * MUL/IMUL/DIV/IDIV, BSF/BSR/TZCNT/LZCNT/POPCNT, PUSH/POP, XLAT,
 * XCHG, XADD, CMPXCHG, CMPXCHG8B/16B, SETcc, CMOVcc, MOVS/CMPS/STOS/LODS/SCAS
 * (REP/REPE/REPNE), MOVD/MOVQ (XMM and MMX), MOVDQA/MOVDQU/MOVAPS/MOVUPS/
 * MOVAPD/MOVUPD, MOVNTPS/MOVNTPD/MOVNTDQ/MOVNTDQA/MOVNTQ, LDDQU, MOVSS/MOVSD,
 * MOVLPS/MOVLPD/MOVHPS/MOVHPD; of the VEX forms, the 128-bit stores.
 * I/O forms: IN/OUT (imm8 and DX), INS/OUTS with REP.
 */
#include <string.h>

#include "internal.h"

enum { R_AX = 0, R_CX = 1, R_DX = 2, R_SI = 6, R_DI = 7 };

static bool is_gpr(unsigned reg)
{
    return reg >= HVP_X86_REG_AL && reg < HVP_X86_REG_ES;
}

static bool is_xmm(unsigned reg)
{
    return reg >= HVP_X86_REG_XMM0 && reg < HVP_X86_REG_XMM0 + 16;
}

static bool is_mmx(unsigned reg)
{
    return reg >= HVP_X86_REG_MM0 && reg < HVP_X86_REG_MM0 + 8;
}

static uint64_t addr_mask(const struct emu *e)
{
    return alu_mask(e->insn.addrsize);
}

/* The segment of the ModRM/moffs memory operand. */
static unsigned mem_segment(const struct emu *e)
{
    unsigned s = e->insn.mem.seg;
    if (s >= HVP_X86_REG_ES && s < HVP_X86_REG_ES + 6) return s - HVP_X86_REG_ES;
    unsigned b = e->insn.mem.base;
    if (b != HVP_X86_REG_NONE && is_gpr(b)) {
        unsigned n = (b >= HVP_X86_REG_RAX)   ? b - HVP_X86_REG_RAX
                     : (b >= HVP_X86_REG_EAX) ? b - HVP_X86_REG_EAX
                                              : b - HVP_X86_REG_AX;
        if (n == 4 || n == 5) return SEG_SS;
    }
    return SEG_DS;
}

/* The last segment-override prefix, read from the bytes themselves (string
 * instructions carry no ModRM operand to hold it). */
static unsigned string_src_segment(const struct emu *e)
{
    unsigned seg = SEG_DS;
    for (unsigned i = 0; i < e->insn.len && i < e->nbytes; i++) {
        switch (e->bytes[i]) {
        case 0x26: seg = SEG_ES; break;
        case 0x2e: seg = SEG_CS; break;
        case 0x36: seg = SEG_SS; break;
        case 0x3e: seg = SEG_DS; break;
        case 0x64: seg = SEG_FS; break;
        case 0x65: seg = SEG_GS; break;
        case 0xf0:
        case 0xf2:
        case 0xf3:
        case 0x66:
        case 0x67: break;
        default: return seg;
        }
    }
    return seg;
}

static uint64_t effective_address(struct emu *e)
{
    const struct hvp_x86_mem *m = &e->insn.mem;
    uint64_t a = (uint64_t)m->disp;
    if (m->base == HVP_X86_REG_RIP || m->base == HVP_X86_REG_EIP || m->base == HVP_X86_REG_IP)
        a += e->rip_next;
    else if (m->base != HVP_X86_REG_NONE)
        a += emu_gpr_read(e, m->base);
    if (m->index != HVP_X86_REG_NONE && is_gpr(m->index))
        a += emu_gpr_read(e, m->index) * (m->scale ? m->scale : 1);
    return a & addr_mask(e);
}

/* Prepares the memory operand, displaced by `extra` bytes (BT forms). */
static int mem_prep(struct emu *e, int64_t extra, unsigned size, unsigned acc, unsigned align,
                    struct memref *m)
{
    uint64_t off = (effective_address(e) + (uint64_t)extra) & addr_mask(e);
    return emu_prepare(e, mem_segment(e), off, size, acc, align, m);
}

static uint64_t load_le(const uint8_t *p, unsigned size)
{
    uint64_t v = 0;
    memcpy(&v, p, size > 8 ? 8 : size);
    return v;
}

/* Scalar operands (up to 8 bytes). */
static int opnd_get(struct emu *e, const struct hvp_x86_operand *o, const struct memref *m,
                    unsigned size, uint64_t *v)
{
    switch (o->kind) {
    case HVP_X86_OPK_REG:
        if (o->reg >= HVP_X86_REG_ES && o->reg < HVP_X86_REG_ES + 6) {
            /* MOV r/m, Sreg: the selector (a memory destination is 16 bits). */
            struct hvp_emu_segment sg;
            if (emu_get_segment(e, o->reg - HVP_X86_REG_ES, &sg)) return STOP;
            *v = sg.selector;
            return 0;
        }
        if (!is_gpr(o->reg)) return emu_internal(e);
        *v = emu_gpr_read(e, o->reg);
        return 0;
    case HVP_X86_OPK_IMM:
        *v = (uint64_t)(o->index ? e->insn.imm2 : e->insn.imm) & alu_mask(size);
        return 0;
    case HVP_X86_OPK_MEM: {
        uint8_t buf[8];
        if (!m) return emu_internal(e); /* a form that cannot have memory here */
        if (emu_read(e, m, buf)) return STOP;
        *v = load_le(buf, size);
        return 0;
    }
    default: return emu_internal(e);
    }
}

static int opnd_put(struct emu *e, const struct hvp_x86_operand *o, const struct memref *m,
                    unsigned size, uint64_t v)
{
    switch (o->kind) {
    case HVP_X86_OPK_REG:
        if (!is_gpr(o->reg)) return emu_internal(e);
        emu_gpr_write(e, o->reg, v);
        return 0;
    case HVP_X86_OPK_MEM: {
        uint8_t buf[8];
        if (!m) return emu_internal(e);
        memcpy(buf, &v, 8);
        (void)size;
        return emu_write(e, m, buf);
    }
    default: return emu_internal(e);
    }
}

static unsigned opsize_of(const struct emu *e, const struct hvp_x86_operand *o)
{
    unsigned s = o->size;
    if (s != 1 && s != 2 && s != 4 && s != 8) s = e->insn.opsize;
    return s;
}

/* Prepares an operand if it is in memory. */
static int opnd_prep(struct emu *e, const struct hvp_x86_operand *o, unsigned size, unsigned acc,
                     struct memref *m)
{
    if (o->kind != HVP_X86_OPK_MEM) return 0;
    return mem_prep(e, 0, size, acc, 0, m);
}

/* The instruction completed: RIP moves on and RF clears, as after any
 * instruction the CPU retires. */
static int done(struct emu *e)
{
    e->advance_rip = true;
    e->rflags &= ~(uint64_t)FL_RF;
    return 0;
}

static bool cond_true(uint64_t fl, unsigned cc)
{
    bool r;
    switch (cc >> 1) {
    case 0: r = fl & FL_OF; break;
    case 1: r = fl & FL_CF; break;
    case 2: r = fl & FL_ZF; break;
    case 3: r = fl & (FL_CF | FL_ZF); break;
    case 4: r = fl & FL_SF; break;
    case 5: r = fl & FL_PF; break;
    case 6: r = !(fl & FL_SF) != !(fl & FL_OF); break;
    default: r = (fl & FL_ZF) || (!(fl & FL_SF) != !(fl & FL_OF)); break;
    }
    return (cc & 1) ? !r : r;
}

static int exec_alu2(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    bool writes = in->op != HVP_X86_OP_CMP && in->op != HVP_X86_OP_TEST;
    struct memref md, ms;
    if (opnd_prep(e, d, size, writes ? ACC_R | ACC_W : ACC_R, &md)) return STOP;
    if (opnd_prep(e, s, size, ACC_R, &ms)) return STOP;
    uint64_t a, b, r;
    if (opnd_get(e, d, &md, size, &a) || opnd_get(e, s, &ms, size, &b)) return STOP;
    uint64_t fl = e->rflags;
    unsigned cf = (fl & FL_CF) ? 1 : 0;
    switch (in->op) {
    case HVP_X86_OP_ADD: r = alu_add(a, b, 0, size, &fl); break;
    case HVP_X86_OP_ADC: r = alu_add(a, b, cf, size, &fl); break;
    case HVP_X86_OP_SUB:
    case HVP_X86_OP_CMP: r = alu_sub(a, b, 0, size, &fl); break;
    case HVP_X86_OP_SBB: r = alu_sub(a, b, cf, size, &fl); break;
    case HVP_X86_OP_OR: r = alu_logic(a | b, size, &fl); break;
    case HVP_X86_OP_XOR: r = alu_logic(a ^ b, size, &fl); break;
    default: r = alu_logic(a & b, size, &fl); break; /* AND, TEST */
    }
    if (writes && opnd_put(e, d, &md, size, r)) return STOP;
    e->rflags = fl;
    return done(e);
}

static int exec_alu1(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 1) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0];
    unsigned size = opsize_of(e, d);
    struct memref md;
    if (opnd_prep(e, d, size, ACC_R | ACC_W, &md)) return STOP;
    uint64_t a, r, fl = e->rflags;
    if (opnd_get(e, d, &md, size, &a)) return STOP;
    switch (in->op) {
    case HVP_X86_OP_NOT: r = ~a & alu_mask(size); break;
    case HVP_X86_OP_NEG: r = alu_sub(0, a, 0, size, &fl); break;
    case HVP_X86_OP_INC:
        r = alu_add(a, 1, 0, size, &fl);
        fl = (fl & ~(uint64_t)FL_CF) | (e->rflags & FL_CF);
        break;
    default: /* DEC */
        r = alu_sub(a, 1, 0, size, &fl);
        fl = (fl & ~(uint64_t)FL_CF) | (e->rflags & FL_CF);
        break;
    }
    if (opnd_put(e, d, &md, size, r)) return STOP;
    e->rflags = fl;
    return done(e);
}

static int exec_bt(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d), bits = size * 8;
    uint64_t bit;
    int64_t extra = 0;
    if (s->kind == HVP_X86_OPK_IMM) {
        bit = (uint64_t)in->imm & (bits - 1);
    } else {
        uint64_t off;
        if (opnd_get(e, s, NULL, size, &off)) return STOP;
        int64_t soff = (int64_t)alu_sext(off, size);
        bit = (uint64_t)soff & (bits - 1);
        /* The register form addresses the bit string beyond the operand. */
        if (d->kind == HVP_X86_OPK_MEM) extra = (soff >> __builtin_ctz(bits)) * (int64_t)size;
    }
    bool writes = in->op != HVP_X86_OP_BT;
    struct memref md;
    if (d->kind == HVP_X86_OPK_MEM &&
        mem_prep(e, extra, size, writes ? ACC_R | ACC_W : ACC_R, 0, &md))
        return STOP;
    uint64_t a;
    if (opnd_get(e, d, &md, size, &a)) return STOP;
    uint64_t mask = 1ull << bit, r = a;
    switch (in->op) {
    case HVP_X86_OP_BTS: r = a | mask; break;
    case HVP_X86_OP_BTR: r = a & ~mask; break;
    case HVP_X86_OP_BTC: r = a ^ mask; break;
    default: break;
    }
    if (writes && opnd_put(e, d, &md, size, r)) return STOP;
    /* CF = the bit; OF/SF/AF/PF are undefined and left as they were. */
    e->rflags = (e->rflags & ~(uint64_t)FL_CF) | ((a & mask) ? FL_CF : 0);
    return done(e);
}

static uint64_t msb(uint64_t v, unsigned bits)
{
    return (v >> (bits - 1)) & 1;
}

/* SHL/SHR/SAR/ROL/ROR/RCL/RCR and SHLD/SHRD. The count is masked to 5 bits
 * (6 with 64-bit operands); a masked count of 0 changes nothing. Flags the
 * SDM leaves undefined (AF, OF for counts above 1, CF for SHL/SHR counts
 * beyond the width) get whatever the formulas below produce. */
static int exec_shift(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    bool dbl = in->op == HVP_X86_OP_SHLD || in->op == HVP_X86_OP_SHRD;
    if (in->nops < (dbl ? 3 : 2)) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *c = &in->ops[dbl ? 2 : 1];
    unsigned size = opsize_of(e, d), bits = size * 8;
    uint64_t m = alu_mask(size);
    struct memref md;
    if (opnd_prep(e, d, size, ACC_R | ACC_W, &md)) return STOP;
    uint64_t a, b = 0, raw;
    if (opnd_get(e, d, &md, size, &a)) return STOP;
    if (dbl && opnd_get(e, &in->ops[1], NULL, size, &b)) return STOP;
    if (c->kind == HVP_X86_OPK_IMM)
        raw = (uint64_t)in->imm & 0xff;
    else if (c->kind == HVP_X86_OPK_REG && is_gpr(c->reg))
        raw = emu_gpr_read(e, c->reg) & 0xff;
    else
        return emu_internal(e);
    unsigned cnt = (unsigned)raw & (size == 8 ? 63 : 31);
    if (!cnt) return done(e);

    uint64_t fl = e->rflags, r;
    unsigned cf = (fl & FL_CF) ? 1 : 0, of;
    bool szp = true; /* rotates leave SF/ZF/PF alone */
    switch (in->op) {
    case HVP_X86_OP_SHL:
        r = cnt < 64 ? (a << cnt) & m : 0;
        cf = cnt <= bits ? (unsigned)((a >> (bits - cnt)) & 1) : 0;
        of = (unsigned)msb(r, bits) ^ cf;
        break;
    case HVP_X86_OP_SHR:
        r = a >> cnt;
        cf = (unsigned)((a >> (cnt - 1)) & 1);
        of = (unsigned)msb(a, bits);
        break;
    case HVP_X86_OP_SAR: {
        int64_t sa = (int64_t)alu_sext(a, size);
        r = (uint64_t)(sa >> (cnt > 63 ? 63 : cnt)) & m;
        cf = (unsigned)((sa >> (cnt - 1 > 63 ? 63 : cnt - 1)) & 1);
        of = 0;
        break;
    }
    case HVP_X86_OP_ROL: {
        unsigned k = cnt % bits;
        r = k ? ((a << k) | (a >> (bits - k))) & m : a;
        cf = (unsigned)(r & 1);
        of = (unsigned)msb(r, bits) ^ cf;
        szp = false;
        break;
    }
    case HVP_X86_OP_ROR: {
        unsigned k = cnt % bits;
        r = k ? ((a >> k) | (a << (bits - k))) & m : a;
        cf = (unsigned)msb(r, bits);
        of = cf ^ (unsigned)((r >> (bits - 2)) & 1);
        szp = false;
        break;
    }
    case HVP_X86_OP_RCL:
    case HVP_X86_OP_RCR: {
        unsigned k = size == 1 ? cnt % 9 : size == 2 ? cnt % 17 : cnt;
        r = a;
        of = (unsigned)msb(a, bits) ^ cf; /* RCR's OF: from the operand before */
        for (unsigned i = 0; i < k; i++) {
            unsigned t;
            if (in->op == HVP_X86_OP_RCL) {
                t = (unsigned)msb(r, bits);
                r = ((r << 1) | cf) & m;
            } else {
                t = (unsigned)(r & 1);
                r = (r >> 1) | ((uint64_t)cf << (bits - 1));
            }
            cf = t;
        }
        if (in->op == HVP_X86_OP_RCL) of = (unsigned)msb(r, bits) ^ cf;
        szp = false;
        break;
    }
    case HVP_X86_OP_SHLD:
    case HVP_X86_OP_SHRD:
        if (bits == 16) {
            /* 16-bit: shift through dest:src:dest, 48 bits (counts above
             * 16 are undefined; this gives a stable answer). */
            if (in->op == HVP_X86_OP_SHLD) {
                uint64_t x = (a << 32) | (b << 16) | a;
                r = ((x << cnt) >> 32) & m;
                cf = (unsigned)((x >> (48 - cnt)) & 1);
            } else {
                uint64_t x = (a << 32) | (b << 16) | a;
                r = (x >> cnt) & m;
                cf = (unsigned)((x >> (cnt - 1)) & 1);
            }
        } else if (in->op == HVP_X86_OP_SHLD) {
            r = ((a << cnt) | (b >> (bits - cnt))) & m;
            cf = (unsigned)((a >> (bits - cnt)) & 1);
        } else {
            r = ((a >> cnt) | (b << (bits - cnt))) & m;
            cf = (unsigned)((a >> (cnt - 1)) & 1);
        }
        of = (unsigned)(msb(r, bits) ^ msb(a, bits));
        break;
    default: return emu_internal(e);
    }
    if (opnd_put(e, d, &md, size, r)) return STOP;
    uint64_t keep = szp ? ~(uint64_t)FL_ARITH : ~(uint64_t)(FL_CF | FL_OF);
    fl &= keep;
    if (szp) fl |= alu_szp(r, size);
    if (cf) fl |= FL_CF;
    if (of) fl |= FL_OF;
    e->rflags = fl;
    return done(e);
}

/* MUL/IMUL (one, two and three operands), DIV/IDIV (#DE on a zero divisor
 * or a quotient that does not fit). Flags the SDM leaves undefined: SF/ZF/
 * AF/PF for multiplies are set from the low half, all six for divides are
 * left alone. */
static int exec_muldiv(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 1) return emu_internal(e);
    unsigned op = in->op;
    uint64_t fl = e->rflags;
    if (op == HVP_X86_OP_IMUL && in->nops >= 2) {
        /* imul r, r/m [, imm] */
        const struct hvp_x86_operand *d = &in->ops[0], *s1 = &in->ops[in->nops == 2 ? 0 : 1],
                                     *s2 = &in->ops[in->nops == 2 ? 1 : 2];
        unsigned size = opsize_of(e, d);
        struct memref m1, m2;
        if (opnd_prep(e, s1, size, ACC_R, &m1) || opnd_prep(e, s2, size, ACC_R, &m2)) return STOP;
        uint64_t a, b;
        if (opnd_get(e, s1, &m1, size, &a) || opnd_get(e, s2, &m2, size, &b)) return STOP;
        __int128 p = (__int128)(int64_t)alu_sext(a, size) * (int64_t)alu_sext(b, size);
        uint64_t r = (uint64_t)p & alu_mask(size);
        bool ovf = (__int128)(int64_t)alu_sext(r, size) != p;
        fl = (fl & ~(uint64_t)FL_ARITH) | alu_szp(r, size) | (ovf ? FL_CF | FL_OF : 0);
        if (opnd_put(e, d, NULL, size, r)) return STOP;
        e->rflags = fl;
        return done(e);
    }
    const struct hvp_x86_operand *o = &in->ops[0];
    unsigned size = opsize_of(e, o), bits = size * 8;
    struct memref m;
    if (opnd_prep(e, o, size, ACC_R, &m)) return STOP;
    uint64_t src;
    if (opnd_get(e, o, &m, size, &src)) return STOP;
    uint64_t mask = alu_mask(size);
    uint64_t lo = e->gpr[R_AX] & mask;
    uint64_t hi = size == 1 ? (e->gpr[R_AX] >> 8) & 0xff : e->gpr[R_DX] & mask;
    unsigned __int128 wide = ((unsigned __int128)hi << bits) | lo;
    uint64_t rlo, rhi;
    if (op == HVP_X86_OP_MUL || op == HVP_X86_OP_IMUL) {
        bool ovf;
        if (op == HVP_X86_OP_MUL) {
            unsigned __int128 p = (unsigned __int128)lo * src;
            rlo = (uint64_t)p & mask;
            rhi = (uint64_t)(p >> bits) & mask;
            ovf = rhi != 0;
        } else {
            __int128 p = (__int128)(int64_t)alu_sext(lo, size) * (int64_t)alu_sext(src, size);
            rlo = (uint64_t)p & mask;
            rhi = (uint64_t)(p >> bits) & mask;
            ovf = (__int128)(int64_t)alu_sext(rlo, size) != p;
        }
        fl = (fl & ~(uint64_t)FL_ARITH) | alu_szp(rlo, size) | (ovf ? FL_CF | FL_OF : 0);
    } else {
        if (!src) return emu_fault(e, VEC_DE, 0, 0);
        if (op == HVP_X86_OP_DIV) {
            unsigned __int128 q = wide / src;
            if (q > mask) return emu_fault(e, VEC_DE, 0, 0);
            rlo = (uint64_t)q;
            rhi = (uint64_t)(wide % src);
        } else {
            /* Sign-extend the 2*size-bit dividend into 128 bits. */
            __int128 n = (__int128)(wide << (128 - 2 * bits)) >> (128 - 2 * bits);
            __int128 d = (int64_t)alu_sext(src, size);
            __int128 q = n / d;
            __int128 lim = (__int128)1 << (bits - 1);
            if (q >= lim || q < -lim) return emu_fault(e, VEC_DE, 0, 0);
            rlo = (uint64_t)q & mask;
            rhi = (uint64_t)(n % d) & mask;
        }
    }
    if (size == 1) {
        emu_gpr_write(e, HVP_X86_REG_AX, rlo | (rhi << 8));
    } else {
        emu_gpr_write(e, hvp_x86_gpr(size, R_AX), rlo);
        emu_gpr_write(e, hvp_x86_gpr(size, R_DX), rhi);
    }
    e->rflags = fl;
    return done(e);
}

/* BSF/BSR/TZCNT/LZCNT/POPCNT r, r/m (as decoded: F3 0F BC/BD are taken as
 * TZCNT/LZCNT, which CPUs without BMI1/LZCNT run as BSF/BSR). */
static int exec_bitscan(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d), bits = size * 8;
    struct memref ms;
    if (opnd_prep(e, s, size, ACC_R, &ms)) return STOP;
    uint64_t v;
    if (opnd_get(e, s, &ms, size, &v)) return STOP;
    v &= alu_mask(size);
    uint64_t fl = e->rflags & ~(uint64_t)FL_ARITH, r;
    switch (in->op) {
    case HVP_X86_OP_BSF:
    case HVP_X86_OP_BSR:
        /* A zero source sets ZF and leaves the destination as it was;
         * the other flags are undefined and kept. */
        fl = e->rflags & ~(uint64_t)FL_ZF;
        if (!v) {
            e->rflags = fl | FL_ZF;
            return done(e);
        }
        r = in->op == HVP_X86_OP_BSF ? (uint64_t)__builtin_ctzll(v)
                                     : 63u - (uint64_t)__builtin_clzll(v);
        break;
    case HVP_X86_OP_TZCNT:
    case HVP_X86_OP_LZCNT:
        if (!v)
            r = bits;
        else
            r = in->op == HVP_X86_OP_TZCNT ? (uint64_t)__builtin_ctzll(v)
                                           : (uint64_t)__builtin_clzll(v) - (64 - bits);
        if (!v) fl |= FL_CF;
        if (!r) fl |= FL_ZF;
        break;
    default: /* POPCNT */
        r = (uint64_t)__builtin_popcountll(v);
        if (!v) fl |= FL_ZF;
        break;
    }
    if (opnd_put(e, d, NULL, size, r)) return STOP;
    e->rflags = fl;
    return done(e);
}

/* Stack pointer arithmetic at the stack's address size (SS.B outside
 * 64-bit mode): a 16-bit stack keeps the upper bits of RSP. */
static uint64_t sp_add(uint64_t sp, int64_t delta, unsigned ssize)
{
    if (ssize == 8) return sp + (uint64_t)delta;
    if (ssize == 4) return (uint32_t)(sp + (uint64_t)delta);
    return (sp & ~0xffffull) | ((sp + (uint64_t)delta) & 0xffff);
}

/* PUSH r/m|reg|imm and POP r/m|reg, for a memory operand or a stack in
 * device memory. POP computes a memory destination's address with RSP
 * already incremented, as the SDM specifies. */
static int exec_pushpop(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 1) return emu_internal(e);
    const struct hvp_x86_operand *o = &in->ops[0];
    unsigned size = in->opsize;
    if (size != 2 && size != 4 && size != 8) return emu_internal(e);
    unsigned ssize = 8;
    if (e->mode != 64) {
        struct hvp_emu_segment ss;
        if (emu_get_segment(e, SEG_SS, &ss)) return STOP;
        ssize = (ss.attributes & HVP_EMU_SEG_DB) ? 4 : 2;
    }
    uint64_t sm = alu_mask(ssize), sp = e->gpr[4];
    struct memref ms, mo;
    if (in->op == HVP_X86_OP_PUSH) {
        if (o->kind == HVP_X86_OPK_REG && o->reg >= HVP_X86_REG_ES && o->reg < HVP_X86_REG_ES + 6)
            return emu_internal(e); /* PUSH Sreg: not a memory-operand form */
        uint64_t v;
        if (opnd_prep(e, o, size, ACC_R, &mo)) return STOP;
        if (o->kind == HVP_X86_OPK_IMM)
            v = (uint64_t)in->imm & alu_mask(size);
        else if (opnd_get(e, o, &mo, size, &v))
            return STOP;
        uint64_t nsp = sp_add(sp, -(int64_t)size, ssize);
        if (emu_prepare(e, SEG_SS, nsp & sm, size, ACC_W, 0, &ms)) return STOP;
        if (emu_write(e, &ms, &v)) return STOP;
        emu_gpr_set64(e, 4, nsp);
        return done(e);
    }
    uint8_t buf[8] = {0};
    if (emu_prepare(e, SEG_SS, sp & sm, size, ACC_R, 0, &ms)) return STOP;
    uint64_t nsp = sp_add(sp, (int64_t)size, ssize);
    e->gpr[4] = nsp; /* for the destination's address only, until it is written */
    int r = opnd_prep(e, o, size, ACC_W, &mo);
    e->gpr[4] = sp;
    if (r) return STOP;
    if (emu_read(e, &ms, buf)) return STOP;
    if (opnd_put(e, o, &mo, size, load_le(buf, size))) return STOP;
    /* POP rSP leaves the popped value in rSP. */
    bool to_sp = o->kind == HVP_X86_OPK_REG &&
                 (o->reg == HVP_X86_REG_RAX + 4 || o->reg == HVP_X86_REG_EAX + 4 ||
                  o->reg == HVP_X86_REG_AX + 4);
    if (!to_sp) emu_gpr_set64(e, 4, nsp);
    return done(e);
}

/* XLAT: AL = [seg:rBX + AL], DS unless overridden. */
static int exec_xlat(struct emu *e)
{
    uint64_t off = (e->gpr[3] + (e->gpr[R_AX] & 0xff)) & addr_mask(e);
    struct memref m;
    uint8_t v;
    if (emu_prepare(e, string_src_segment(e), off, 1, ACC_R, 0, &m) || emu_read(e, &m, &v))
        return STOP;
    emu_gpr_write(e, HVP_X86_REG_AL, v);
    return done(e);
}

static int exec_xchg(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    struct memref md, ms;
    if (opnd_prep(e, d, size, ACC_R | ACC_W, &md) || opnd_prep(e, s, size, ACC_R | ACC_W, &ms))
        return STOP;
    uint64_t a, b;
    if (opnd_get(e, d, &md, size, &a) || opnd_get(e, s, &ms, size, &b)) return STOP;
    /* Memory first: if it fails the register keeps its value. */
    if (d->kind == HVP_X86_OPK_MEM) {
        if (opnd_put(e, d, &md, size, b) || opnd_put(e, s, &ms, size, a)) return STOP;
    } else {
        if (opnd_put(e, s, &ms, size, a) || opnd_put(e, d, &md, size, b)) return STOP;
    }
    return done(e);
}

static int exec_xadd(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    struct memref md;
    if (opnd_prep(e, d, size, ACC_R | ACC_W, &md)) return STOP;
    uint64_t a, b, fl = e->rflags;
    if (opnd_get(e, d, &md, size, &a) || opnd_get(e, s, NULL, size, &b)) return STOP;
    uint64_t sum = alu_add(a, b, 0, size, &fl);
    if (opnd_put(e, d, &md, size, sum)) return STOP;
    if (s->kind == HVP_X86_OPK_REG && opnd_put(e, s, NULL, size, a)) return STOP;
    e->rflags = fl;
    return done(e);
}

static int exec_cmpxchg(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    struct memref md;
    if (opnd_prep(e, d, size, ACC_R | ACC_W, &md)) return STOP;
    uint64_t dv, sv, fl = e->rflags;
    if (opnd_get(e, d, &md, size, &dv) || opnd_get(e, s, NULL, size, &sv)) return STOP;
    unsigned acc = hvp_x86_gpr(size, 0);
    uint64_t av = emu_gpr_read(e, acc);
    alu_sub(av, dv, 0, size, &fl);
    if (fl & FL_ZF) {
        if (opnd_put(e, d, &md, size, sv)) return STOP;
    } else {
        /* The destination always sees a write cycle (of its own value). */
        if (d->kind == HVP_X86_OPK_MEM && opnd_put(e, d, &md, size, dv)) return STOP;
        emu_gpr_write(e, acc, dv);
    }
    e->rflags = fl;
    return done(e);
}

static int exec_cmpxchg8b(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 1 || in->ops[0].kind != HVP_X86_OPK_MEM) return emu_internal(e);
    bool wide = in->op == HVP_X86_OP_CMPXCHG16B || (in->prefixes & HVP_X86_PFX_REXW);
    unsigned half = wide ? 8 : 4;
    struct memref m;
    if (mem_prep(e, 0, half * 2, ACC_R | ACC_W, wide ? 16 : 0, &m)) return STOP;
    uint8_t buf[16];
    if (emu_read(e, &m, buf)) return STOP;
    uint64_t lo = load_le(buf, half), hi = load_le(buf + half, half);
    uint64_t hm = alu_mask(half);
    bool eq = lo == (e->gpr[0] & hm) && hi == (e->gpr[2] & hm);
    if (eq) {
        uint64_t b = e->gpr[3] & hm, c = e->gpr[1] & hm;
        memcpy(buf, &b, half);
        memcpy(buf + half, &c, half);
    }
    if (emu_write(e, &m, buf)) return STOP;
    if (!eq) {
        emu_gpr_set64(e, 0, lo);
        emu_gpr_set64(e, 2, hi);
    }
    e->rflags = (e->rflags & ~(uint64_t)FL_ZF) | (eq ? FL_ZF : 0);
    return done(e);
}

static int exec_mov(struct emu *e, bool sign, bool zero)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned dsize = opsize_of(e, d);
    unsigned ssize = (sign || zero) ? opsize_of(e, s) : dsize;
    struct memref md, ms;
    if (opnd_prep(e, s, ssize, ACC_R, &ms) || opnd_prep(e, d, dsize, ACC_W, &md)) return STOP;
    uint64_t v;
    if (opnd_get(e, s, &ms, ssize, &v)) return STOP;
    if (sign) v = alu_sext(v, ssize);
    if (opnd_put(e, d, &md, dsize, v & alu_mask(dsize))) return STOP;
    return done(e);
}

static int exec_movbe(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    struct memref md, ms;
    if (opnd_prep(e, s, size, ACC_R, &ms) || opnd_prep(e, d, size, ACC_W, &md)) return STOP;
    uint64_t v;
    if (opnd_get(e, s, &ms, size, &v)) return STOP;
    v = __builtin_bswap64(v) >> (64 - size * 8);
    if (opnd_put(e, d, &md, size, v)) return STOP;
    return done(e);
}

static int exec_setcc(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 1) return emu_internal(e);
    struct memref m;
    if (opnd_prep(e, &in->ops[0], 1, ACC_W, &m)) return STOP;
    if (opnd_put(e, &in->ops[0], &m, 1, cond_true(e->rflags, in->opcode & 0xf))) return STOP;
    return done(e);
}

static int exec_cmov(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = opsize_of(e, d);
    struct memref ms;
    /* The source is read whatever the condition. */
    if (opnd_prep(e, s, size, ACC_R, &ms)) return STOP;
    uint64_t v, old;
    if (opnd_get(e, s, &ms, size, &v) || opnd_get(e, d, NULL, size, &old)) return STOP;
    bool c = cond_true(e->rflags, in->opcode & 0xf);
    /* A 32-bit CMOV zero-extends its destination even when false. */
    if (c || size == 4) emu_gpr_write(e, d->reg, c ? v : old);
    return done(e);
}

/* Vector and MMX moves. */
static int vget(struct emu *e, const struct hvp_x86_operand *o, const struct memref *m,
                unsigned size, uint64_t v[2])
{
    v[0] = v[1] = 0;
    if (o->kind == HVP_X86_OPK_MEM) {
        uint8_t buf[16] = {0};
        if (emu_read(e, m, buf)) return STOP;
        memcpy(v, buf, 16);
        return 0;
    }
    if (o->kind != HVP_X86_OPK_REG) return emu_internal(e);
    if (is_xmm(o->reg)) return emu_get_xmm(e, o->reg - HVP_X86_REG_XMM0, v);
    if (is_mmx(o->reg)) return emu_get_mmx(e, o->reg - HVP_X86_REG_MM0, &v[0]);
    if (is_gpr(o->reg)) {
        v[0] = emu_gpr_read(e, o->reg);
        return 0;
    }
    (void)size;
    return emu_internal(e);
}

static int vput(struct emu *e, const struct hvp_x86_operand *o, const struct memref *m,
                unsigned size, const uint64_t v[2])
{
    uint64_t t[2] = {v[0], v[1]};
    if (size < 16) {
        t[1] = 0;
        if (size < 8) t[0] &= alu_mask(size);
    }
    if (o->kind == HVP_X86_OPK_MEM) return emu_write(e, m, t);
    if (o->kind != HVP_X86_OPK_REG) return emu_internal(e);
    if (is_xmm(o->reg)) {
        /* Legacy-SSE MOVD/MOVQ loads zero the rest of the register. */
        emu_set_xmm(e, o->reg - HVP_X86_REG_XMM0, t);
        return 0;
    }
    if (is_mmx(o->reg)) {
        emu_set_mmx(e, o->reg - HVP_X86_REG_MM0, t[0]);
        return 0;
    }
    if (is_gpr(o->reg)) {
        emu_gpr_write(e, o->reg, t[0]);
        return 0;
    }
    return emu_internal(e);
}

static unsigned vsize(const struct hvp_x86_operand *o)
{
    if (o->kind == HVP_X86_OPK_REG) {
        if (is_xmm(o->reg)) return 16;
        if (is_mmx(o->reg)) return 8;
    }
    return o->size;
}

/* How a vector move treats the XMM register it loads. */
enum vpart {
    VP_ZERO, /* the value, zero-extended to 128 bits (memory loads) */
    VP_LOW,  /* merged into the low bytes (MOVLPS/MOVLPD, MOVSS/MOVSD reg-reg) */
    VP_HIGH, /* the high quadword (MOVHPS/MOVHPD) */
};

/* `op` is the legacy-SSE identity of the move (VEX stores map onto it). */
static int exec_vmove(struct emu *e, unsigned op)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->nops < 2) return emu_internal(e);
    const struct hvp_x86_operand *d = &in->ops[0], *s = &in->ops[1];
    unsigned size = 16, align = 0;
    enum vpart part = VP_ZERO;
    switch (op) {
    case HVP_X86_OP_MOVD:
    case HVP_X86_OP_MOVQ: {
        unsigned a = vsize(d), b = vsize(s);
        size = a < b ? a : b;
        if (size != 4 && size != 8) size = op == HVP_X86_OP_MOVD ? 4 : 8;
        break;
    }
    case HVP_X86_OP_MOVDQA:
    case HVP_X86_OP_MOVAPS:
    case HVP_X86_OP_MOVAPD:
    case HVP_X86_OP_MOVNTPS:
    case HVP_X86_OP_MOVNTPD:
    case HVP_X86_OP_MOVNTDQ:
    case HVP_X86_OP_MOVNTDQA: align = 16; break;
    case HVP_X86_OP_MOVNTQ: size = 8; break;
    case HVP_X86_OP_MOVSS:
    case HVP_X86_OP_MOVSD_SSE:
        size = op == HVP_X86_OP_MOVSS ? 4 : 8;
        if (d->kind == HVP_X86_OPK_REG && s->kind == HVP_X86_OPK_REG) part = VP_LOW;
        break;
    case HVP_X86_OP_MOVLPS:
    case HVP_X86_OP_MOVLPD:
        size = 8;
        part = VP_LOW;
        break;
    case HVP_X86_OP_MOVHPS:
    case HVP_X86_OP_MOVHPD:
        size = 8;
        part = VP_HIGH;
        break;
    default: break; /* MOVDQU, MOVUPS, MOVUPD, LDDQU */
    }
    struct memref md, ms;
    if (s->kind == HVP_X86_OPK_MEM && mem_prep(e, 0, size, ACC_R, align, &ms)) return STOP;
    if (d->kind == HVP_X86_OPK_MEM && mem_prep(e, 0, size, ACC_W, align, &md)) return STOP;
    uint64_t v[2];
    if (vget(e, s, &ms, size, v)) return STOP;
    if (part == VP_HIGH && s->kind == HVP_X86_OPK_REG) v[0] = v[1];
    if (part != VP_ZERO && d->kind == HVP_X86_OPK_REG && is_xmm(d->reg)) {
        unsigned n = d->reg - HVP_X86_REG_XMM0;
        uint64_t cur[2];
        if (emu_get_xmm(e, n, cur)) return STOP;
        if (part == VP_HIGH)
            cur[1] = v[0];
        else if (size == 8)
            cur[0] = v[0];
        else
            cur[0] = (cur[0] & ~0xffffffffull) | (v[0] & 0xffffffffu);
        emu_set_xmm(e, n, cur);
        return done(e);
    }
    if (vput(e, d, &md, size, v)) return STOP;
    return done(e);
}

/* VEX.128 stores: they only read an XMM register, so they behave as their
 * legacy forms. VEX loads are refused: they zero bits 255:128 of the YMM
 * register, which WHP's register names (Xmm0..15) cannot express, and
 * 256-bit forms need the upper halves too. */
static int exec_vex_store(struct emu *e)
{
    static const struct {
        uint16_t vex, legacy;
    } map[] = {
        {HVP_X86_OP_VMOVDQA, HVP_X86_OP_MOVDQA},   {HVP_X86_OP_VMOVDQU, HVP_X86_OP_MOVDQU},
        {HVP_X86_OP_VMOVAPS, HVP_X86_OP_MOVAPS},   {HVP_X86_OP_VMOVUPS, HVP_X86_OP_MOVUPS},
        {HVP_X86_OP_VMOVAPD, HVP_X86_OP_MOVAPD},   {HVP_X86_OP_VMOVUPD, HVP_X86_OP_MOVUPD},
        {HVP_X86_OP_VMOVNTDQ, HVP_X86_OP_MOVNTDQ}, {HVP_X86_OP_VMOVNTPS, HVP_X86_OP_MOVNTPS},
        {HVP_X86_OP_VMOVNTPD, HVP_X86_OP_MOVNTPD}, {HVP_X86_OP_VMOVD, HVP_X86_OP_MOVD},
        {HVP_X86_OP_VMOVQ, HVP_X86_OP_MOVQ},       {HVP_X86_OP_VMOVSS, HVP_X86_OP_MOVSS},
        {HVP_X86_OP_VMOVSD, HVP_X86_OP_MOVSD_SSE}, {HVP_X86_OP_VMOVLPS, HVP_X86_OP_MOVLPS},
        {HVP_X86_OP_VMOVLPD, HVP_X86_OP_MOVLPD},   {HVP_X86_OP_VMOVHPS, HVP_X86_OP_MOVHPS},
        {HVP_X86_OP_VMOVHPD, HVP_X86_OP_MOVHPD},
    };
    const struct hvp_x86_insn *in = &e->insn;
    if (in->enc != HVP_X86_ENC_VEX || in->vl != 0 || in->nops != 2) return emu_internal(e);
    if (in->ops[0].kind != HVP_X86_OPK_MEM || in->ops[1].kind != HVP_X86_OPK_REG ||
        !is_xmm(in->ops[1].reg))
        return emu_internal(e);
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].vex == in->op) return exec_vmove(e, map[i].legacy);
    return emu_internal(e);
}

/* Adds delta to an address register at the address size: 32-bit updates
 * zero-extend, 16-bit ones keep the upper bits. */
static void areg_add(struct emu *e, unsigned n, int64_t delta)
{
    uint64_t v = e->gpr[n];
    switch (e->insn.addrsize) {
    case 8: v += (uint64_t)delta; break;
    case 4: v = (uint32_t)(v + (uint64_t)delta); break;
    default: v = (v & ~0xffffull) | ((v + (uint64_t)delta) & 0xffff); break;
    }
    emu_gpr_set64(e, n, v);
}

/* MOVS/CMPS/STOS/LODS/SCAS. */
static int exec_string(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    unsigned kind = in->opcode & 0xfe;
    unsigned size = (in->opcode & 1) ? in->opsize : 1;
    uint64_t am = addr_mask(e);
    unsigned sseg = string_src_segment(e);
    bool rep = in->prefixes & (HVP_X86_PFX_REP | HVP_X86_PFX_REPNE);
    int64_t delta = (e->rflags & FL_DF) ? -(int64_t)size : (int64_t)size;
    unsigned acc = hvp_x86_gpr(size, 0);
    uint32_t iter = 0;

    if (rep && !(e->gpr[R_CX] & am)) return done(e);
    for (;;) {
        struct memref ms, md;
        uint8_t sb[8] = {0}, db[8] = {0};
        uint64_t si = e->gpr[R_SI] & am, di = e->gpr[R_DI] & am;
        uint64_t fl = e->rflags;
        switch (kind) {
        case 0xa4: /* movs */
            if (emu_prepare(e, sseg, si, size, ACC_R, 0, &ms) ||
                emu_prepare(e, SEG_ES, di, size, ACC_W, 0, &md))
                return STOP;
            if (emu_read(e, &ms, sb) || emu_write(e, &md, sb)) return STOP;
            areg_add(e, R_SI, delta);
            areg_add(e, R_DI, delta);
            break;
        case 0xa6: /* cmps: flags of [rSI] - [rDI] */
            if (emu_prepare(e, sseg, si, size, ACC_R, 0, &ms) ||
                emu_prepare(e, SEG_ES, di, size, ACC_R, 0, &md))
                return STOP;
            if (emu_read(e, &ms, sb) || emu_read(e, &md, db)) return STOP;
            alu_sub(load_le(sb, size), load_le(db, size), 0, size, &fl);
            areg_add(e, R_SI, delta);
            areg_add(e, R_DI, delta);
            break;
        case 0xaa: { /* stos */
            if (emu_prepare(e, SEG_ES, di, size, ACC_W, 0, &md)) return STOP;
            uint64_t v = e->gpr[R_AX];
            if (emu_write(e, &md, &v)) return STOP;
            areg_add(e, R_DI, delta);
            break;
        }
        case 0xac: /* lods */
            if (emu_prepare(e, sseg, si, size, ACC_R, 0, &ms) || emu_read(e, &ms, sb)) return STOP;
            emu_gpr_write(e, acc, load_le(sb, size));
            areg_add(e, R_SI, delta);
            break;
        case 0xae: /* scas: flags of rAX - [rDI] */
            if (emu_prepare(e, SEG_ES, di, size, ACC_R, 0, &md) || emu_read(e, &md, db))
                return STOP;
            alu_sub(e->gpr[R_AX], load_le(db, size), 0, size, &fl);
            areg_add(e, R_DI, delta);
            break;
        default: return emu_internal(e);
        }
        e->rflags = fl;
        if (!rep) break;
        areg_add(e, R_CX, -1);
        if (!(e->gpr[R_CX] & am)) break;
        if (kind == 0xa6 || kind == 0xae) {
            if ((in->prefixes & HVP_X86_PFX_REPNE) ? (fl & FL_ZF) : !(fl & FL_ZF)) break;
        }
        if (++iter >= HVP_EMULATOR_MAX_REP) return 0; /* resume by re-execution */
    }
    return done(e);
}

int emu_exec_mmio(struct emu *e)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->map == HVP_X86_MAP_1BYTE && in->enc == HVP_X86_ENC_LEGACY && in->opcode >= 0xa4 &&
        in->opcode <= 0xaf && in->opcode != 0xa8 && in->opcode != 0xa9)
        return exec_string(e);
    switch (in->op) {
    case HVP_X86_OP_MOV:
    case HVP_X86_OP_MOVNTI:
    case HVP_X86_OP_MOVDIRI: return exec_mov(e, false, false);
    case HVP_X86_OP_MOVZX: return exec_mov(e, false, true);
    case HVP_X86_OP_MOVSX:
    case HVP_X86_OP_MOVSXD: return exec_mov(e, true, false);
    case HVP_X86_OP_MOVBE: return exec_movbe(e);
    case HVP_X86_OP_ADD:
    case HVP_X86_OP_OR:
    case HVP_X86_OP_ADC:
    case HVP_X86_OP_SBB:
    case HVP_X86_OP_AND:
    case HVP_X86_OP_SUB:
    case HVP_X86_OP_XOR:
    case HVP_X86_OP_CMP:
    case HVP_X86_OP_TEST: return exec_alu2(e);
    case HVP_X86_OP_NOT:
    case HVP_X86_OP_NEG:
    case HVP_X86_OP_INC:
    case HVP_X86_OP_DEC: return exec_alu1(e);
    case HVP_X86_OP_BT:
    case HVP_X86_OP_BTS:
    case HVP_X86_OP_BTR:
    case HVP_X86_OP_BTC: return exec_bt(e);
    case HVP_X86_OP_SHL:
    case HVP_X86_OP_SHR:
    case HVP_X86_OP_SAR:
    case HVP_X86_OP_ROL:
    case HVP_X86_OP_ROR:
    case HVP_X86_OP_RCL:
    case HVP_X86_OP_RCR:
    case HVP_X86_OP_SHLD:
    case HVP_X86_OP_SHRD: return exec_shift(e);
    case HVP_X86_OP_MUL:
    case HVP_X86_OP_IMUL:
    case HVP_X86_OP_DIV:
    case HVP_X86_OP_IDIV: return exec_muldiv(e);
    case HVP_X86_OP_BSF:
    case HVP_X86_OP_BSR:
    case HVP_X86_OP_TZCNT:
    case HVP_X86_OP_LZCNT:
    case HVP_X86_OP_POPCNT: return exec_bitscan(e);
    case HVP_X86_OP_PUSH:
    case HVP_X86_OP_POP: return exec_pushpop(e);
    case HVP_X86_OP_XLAT: return exec_xlat(e);
    case HVP_X86_OP_XCHG: return exec_xchg(e);
    case HVP_X86_OP_XADD: return exec_xadd(e);
    case HVP_X86_OP_CMPXCHG: return exec_cmpxchg(e);
    case HVP_X86_OP_CMPXCHG8B:
    case HVP_X86_OP_CMPXCHG16B: return exec_cmpxchg8b(e);
    case HVP_X86_OP_MOVD:
    case HVP_X86_OP_MOVQ:
    case HVP_X86_OP_MOVDQA:
    case HVP_X86_OP_MOVDQU:
    case HVP_X86_OP_MOVAPS:
    case HVP_X86_OP_MOVAPD:
    case HVP_X86_OP_MOVUPS:
    case HVP_X86_OP_MOVUPD:
    case HVP_X86_OP_MOVNTPS:
    case HVP_X86_OP_MOVNTPD:
    case HVP_X86_OP_MOVNTDQ:
    case HVP_X86_OP_MOVNTDQA:
    case HVP_X86_OP_MOVNTQ:
    case HVP_X86_OP_LDDQU:
    case HVP_X86_OP_MOVSS:
    case HVP_X86_OP_MOVSD_SSE:
    case HVP_X86_OP_MOVLPS:
    case HVP_X86_OP_MOVLPD:
    case HVP_X86_OP_MOVHPS:
    case HVP_X86_OP_MOVHPD:
        if (in->enc != HVP_X86_ENC_LEGACY) return emu_internal(e);
        return exec_vmove(e, in->op);
    case HVP_X86_OP_VMOVDQA:
    case HVP_X86_OP_VMOVDQU:
    case HVP_X86_OP_VMOVAPS:
    case HVP_X86_OP_VMOVUPS:
    case HVP_X86_OP_VMOVAPD:
    case HVP_X86_OP_VMOVUPD:
    case HVP_X86_OP_VMOVNTDQ:
    case HVP_X86_OP_VMOVNTPS:
    case HVP_X86_OP_VMOVNTPD:
    case HVP_X86_OP_VMOVD:
    case HVP_X86_OP_VMOVQ:
    case HVP_X86_OP_VMOVSS:
    case HVP_X86_OP_VMOVSD:
    case HVP_X86_OP_VMOVLPS:
    case HVP_X86_OP_VMOVLPD:
    case HVP_X86_OP_VMOVHPS:
    case HVP_X86_OP_VMOVHPD: return exec_vex_store(e);
    default: break;
    }
    /* SETcc and CMOVcc: the condition comes from the opcode's low nibble. */
    if (in->map == HVP_X86_MAP_0F && in->enc == HVP_X86_ENC_LEGACY) {
        if ((in->opcode & 0xf0) == 0x90) return exec_setcc(e);
        if ((in->opcode & 0xf0) == 0x40) return exec_cmov(e);
    }
    return emu_internal(e);
}

/* IN/OUT/INS/OUTS. */
int emu_exec_io(struct emu *e, const struct hvp_emu_io_context *io)
{
    const struct hvp_x86_insn *in = &e->insn;
    if (in->map != HVP_X86_MAP_1BYTE || in->enc != HVP_X86_ENC_LEGACY) return emu_internal(e);
    unsigned opc = in->opcode;
    bool string, out;
    uint16_t port;
    switch (opc & 0xfe) {
    case 0xe4: string = false, out = false, port = (uint16_t)(in->imm & 0xff); break;
    case 0xe6: string = false, out = true, port = (uint16_t)(in->imm & 0xff); break;
    case 0xec: string = false, out = false, port = (uint16_t)e->gpr[R_DX]; break;
    case 0xee: string = false, out = true, port = (uint16_t)e->gpr[R_DX]; break;
    case 0x6c: string = true, out = false, port = (uint16_t)e->gpr[R_DX]; break;
    case 0x6e: string = true, out = true, port = (uint16_t)e->gpr[R_DX]; break;
    default: return emu_internal(e);
    }
    unsigned size = (opc & 1) ? (in->opsize == 2 ? 2 : 4) : 1;
    /* The exit must describe this instruction; anything else means the
     * bytes are not what the CPU executed. */
    if (!io->is_write != !out || io->access_size != size || io->port != port ||
        !io->string_op != !string)
        return emu_internal(e);

    struct hvp_emu_io_access a;
    if (!string) {
        memset(&a, 0, sizeof(a));
        a.direction = out ? HVP_EMU_IO_OUT : HVP_EMU_IO_IN;
        a.port = port;
        a.access_size = (uint16_t)size;
        if (out) a.data = (uint32_t)(e->gpr[R_AX] & alu_mask(size));
        if (e->cb->io_port(e->ctx, &a) < 0) {
            e->status |= HVP_EMU_STATUS_IO_PORT_CALLBACK_FAILED;
            return STOP;
        }
        if (!out) emu_gpr_write(e, hvp_x86_gpr(size, 0), a.data & alu_mask(size));
        return done(e);
    }

    uint64_t am = addr_mask(e);
    bool rep = in->prefixes & (HVP_X86_PFX_REP | HVP_X86_PFX_REPNE);
    int64_t delta = (e->rflags & FL_DF) ? -(int64_t)size : (int64_t)size;
    unsigned sseg = string_src_segment(e);
    uint32_t iter = 0;
    if (rep && !(e->gpr[R_CX] & am)) return done(e);
    for (;;) {
        struct memref m;
        memset(&a, 0, sizeof(a));
        a.port = port;
        a.access_size = (uint16_t)size;
        if (out) {
            /* OUTS: [seg:rSI] -> port */
            uint8_t buf[8] = {0};
            if (emu_prepare(e, sseg, e->gpr[R_SI] & am, size, ACC_R, 0, &m) || emu_read(e, &m, buf))
                return STOP;
            a.direction = HVP_EMU_IO_OUT;
            a.data = (uint32_t)load_le(buf, size);
            if (e->cb->io_port(e->ctx, &a) < 0) {
                e->status |= HVP_EMU_STATUS_IO_PORT_CALLBACK_FAILED;
                return STOP;
            }
            areg_add(e, R_SI, delta);
        } else {
            /* INS: port -> [ES:rDI]; translated first so a fault does not
             * lose a port read. */
            if (emu_prepare(e, SEG_ES, e->gpr[R_DI] & am, size, ACC_W, 0, &m)) return STOP;
            a.direction = HVP_EMU_IO_IN;
            if (e->cb->io_port(e->ctx, &a) < 0) {
                e->status |= HVP_EMU_STATUS_IO_PORT_CALLBACK_FAILED;
                return STOP;
            }
            uint32_t v = a.data;
            if (emu_write(e, &m, &v)) return STOP;
            areg_add(e, R_DI, delta);
        }
        if (!rep) break;
        areg_add(e, R_CX, -1);
        if (!(e->gpr[R_CX] & am)) break;
        if (++iter >= HVP_EMULATOR_MAX_REP) return 0;
    }
    return done(e);
}
