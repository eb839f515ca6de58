/* hvp software x86-64 CPU: the general-purpose (integer) instruction set.
 *
 * hvp_cpu_build() picks a handler for each decoded instruction and fills
 * the compact entry; hot forms get specialised handlers (fixed size,
 * register-only, base+disp addressing). */
#include <x86intrin.h>

#include "cpu_internal.h"

#define M(sz)     hvp_size_mask(sz)
#define HVP_DF_SX 0x8000 /* MOVSX/MOVSXD: sign-extend */

unsigned hvp_gpr_code(unsigned reg)
{
    if (reg >= HVP_X86_REG_AL && reg < HVP_X86_REG_AL + 16) return reg - HVP_X86_REG_AL;
    if (reg >= HVP_X86_REG_AH && reg < HVP_X86_REG_AH + 4) return HVP_R8H | (reg - HVP_X86_REG_AH);
    if (reg >= HVP_X86_REG_AX && reg < HVP_X86_REG_RAX + 16) return (reg - HVP_X86_REG_AX) & 15;
    return 0xff;
}

static unsigned mem_reg(unsigned reg)
{
    if (reg == HVP_X86_REG_NONE) return HVP_EA_NONE;
    if (reg == HVP_X86_REG_RIP || reg == HVP_X86_REG_EIP || reg == HVP_X86_REG_IP)
        return HVP_EA_RIP;
    return hvp_gpr_code(reg) & 15;
}

void hvp_build_common(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    d->len = xi->len;
    d->osz = xi->opsize;
    d->asz = xi->addrsize;
    d->base = d->index = HVP_EA_NONE;
    bool mem = xi->flags & HVP_X86_F_MEM; /* moffs forms have no ModRM: look at the operands */
    for (unsigned k = 0; k < xi->nops; k++)
        mem |= xi->ops[k].kind == HVP_X86_OPK_MEM;
    if (mem) {
        d->base = (uint8_t)mem_reg(xi->mem.base);
        d->index = (uint8_t)mem_reg(xi->mem.index);
        d->scale = (uint8_t)__builtin_ctz(xi->mem.scale ? xi->mem.scale : 1);
        if (xi->mem.disp == (int32_t)xi->mem.disp) {
            d->disp = (int32_t)xi->mem.disp;
        } else {
            d->base = HVP_EA_ABS; /* moffs64: no base, no index, no immediate */
            d->index = HVP_EA_NONE;
            d->imm = xi->mem.disp;
        }
        if (xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_FS ||
            xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_GS)
            d->seg = (uint8_t)(xi->mem.seg - HVP_X86_REG_ES);
        /* 16/32-bit modes: every operand goes through its segment */
        if (cpu->model == HVP_CPU_MODEL_SYSTEM && cpu->mode != 64)
            d->seg = (uint8_t)(HVP_SEG_LEGACY | ((xi->mem.seg - HVP_X86_REG_ES) & 7));
        if (d->base > 16 || d->index > 16 || d->asz != 8 || d->seg) d->fl |= HVP_DF_EAX;
    }
    for (unsigned k = 0; k < xi->nops && k < 3; k++) {
        const struct hvp_x86_operand *o = &xi->ops[k];
        if (o->kind == HVP_X86_OPK_REG) {
            if (k == 0)
                d->r0 = (uint8_t)hvp_gpr_code(o->reg);
            else if (k == 1)
                d->r1 = (uint8_t)hvp_gpr_code(o->reg);
        } else if (o->kind == HVP_X86_OPK_MEM) {
            d->fl |= k == 0 ? HVP_DF_M0 : k == 1 ? HVP_DF_M1 : HVP_DF_M2;
        } else if (o->kind == HVP_X86_OPK_IMM && k >= 1) {
            if (d->base != HVP_EA_ABS) d->imm = o->index ? xi->imm2 : xi->imm;
            d->fl |= HVP_DF_IMM;
        } else if (o->kind == HVP_X86_OPK_REL) {
            d->imm = xi->imm;
        }
    }
    if (xi->prefixes & HVP_X86_PFX_LOCK) d->fl |= HVP_DF_LOCK;
    if (xi->prefixes & HVP_X86_PFX_REP) d->fl |= HVP_DF_REP;
    if (xi->prefixes & HVP_X86_PFX_REPNE) d->fl |= HVP_DF_REPNE;
}

/* ---- generic operand access through the full decoded record ---- */

static uint64_t xop_rd(struct hvp_cpu *cpu, const struct hvp_dinsn *d, unsigned k)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    const struct hvp_x86_operand *o = &xi->ops[k];
    switch (o->kind) {
    case HVP_X86_OPK_REG: return hvp_reg_rd(cpu, hvp_gpr_code(o->reg), o->size);
    case HVP_X86_OPK_MEM: return hvp_rdn(cpu, hvp_ea(cpu, d), o->size);
    case HVP_X86_OPK_IMM: return (uint64_t)(o->index ? xi->imm2 : xi->imm) & M(o->size);
    default: return 0;
    }
}

static void xop_wr(struct hvp_cpu *cpu, const struct hvp_dinsn *d, unsigned k, uint64_t v)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    const struct hvp_x86_operand *o = &xi->ops[k];
    if (o->kind == HVP_X86_OPK_REG)
        hvp_reg_wr(cpu, hvp_gpr_code(o->reg), o->size, v);
    else
        hvp_wrn(cpu, hvp_ea(cpu, d), o->size, v);
}

/* ---- ALU ---- */

enum { K_ADD, K_OR, K_ADC, K_SBB, K_AND, K_SUB, K_XOR, K_CMP, K_TEST };

static inline uint64_t alu_pure(unsigned k, uint64_t a, uint64_t b, unsigned cin)
{
    switch (k) {
    case K_ADD: return a + b;
    case K_OR: return a | b;
    case K_ADC: return a + b + cin;
    case K_SBB: return a - b - cin;
    case K_AND:
    case K_TEST: return a & b;
    case K_SUB:
    case K_CMP: return a - b;
    default: return a ^ b;
    }
}

static inline unsigned alu_cin(struct hvp_cpu *cpu, unsigned k)
{
    return (k == K_ADC || k == K_SBB) ? hvp_get_cf(cpu) : 0;
}

static inline void alu_flags(struct hvp_cpu *cpu, unsigned k, unsigned sz, uint64_t a, uint64_t b,
                             uint64_t r, unsigned cin)
{
    unsigned op = (k == K_ADD || k == K_ADC)                 ? HVP_LF_ADD
                  : (k == K_SUB || k == K_SBB || k == K_CMP) ? HVP_LF_SUB
                                                             : HVP_LF_LOGIC;
    hvp_lf(cpu, op, sz, a & M(sz), b & M(sz), r & M(sz));
    cpu->lf_cin = (uint8_t)cin;
}

static inline uint64_t alu(struct hvp_cpu *cpu, unsigned k, unsigned sz, uint64_t a, uint64_t b)
{
    unsigned cin = alu_cin(cpu, k);
    uint64_t r = alu_pure(k, a, b, cin) & M(sz);
    alu_flags(cpu, k, sz, a, b, r, cin);
    return r;
}

/* rr/ri take the size in bytes, rm in bits: generate with both */
#define ALU_K(k)                                                                                   \
    HVP_HANDLER(h_alu_rr_##k##_1)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 1, hvp_reg_rd(cpu, d->r0, 1), hvp_reg_rd(cpu, d->r1, 1));         \
        if (k != K_CMP && k != K_TEST) hvp_reg_wr(cpu, d->r0, 1, r);                               \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_rr_##k##_2)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 2, cpu->gpr[d->r0] & 0xffff, cpu->gpr[d->r1] & 0xffff);           \
        if (k != K_CMP && k != K_TEST) hvp_reg_wr(cpu, d->r0, 2, r);                               \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_rr_##k##_4)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 4, (uint32_t)cpu->gpr[d->r0], (uint32_t)cpu->gpr[d->r1]);         \
        if (k != K_CMP && k != K_TEST) cpu->gpr[d->r0] = r;                                        \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_rr_##k##_8)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 8, cpu->gpr[d->r0], cpu->gpr[d->r1]);                             \
        if (k != K_CMP && k != K_TEST) cpu->gpr[d->r0] = r;                                        \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_ri_##k##_1)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 1, hvp_reg_rd(cpu, d->r0, 1), (uint64_t)d->imm);                  \
        if (k != K_CMP && k != K_TEST) hvp_reg_wr(cpu, d->r0, 1, r);                               \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_ri_##k##_2)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 2, cpu->gpr[d->r0] & 0xffff, (uint64_t)d->imm);                   \
        if (k != K_CMP && k != K_TEST) hvp_reg_wr(cpu, d->r0, 2, r);                               \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_ri_##k##_4)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 4, (uint32_t)cpu->gpr[d->r0], (uint64_t)d->imm);                  \
        if (k != K_CMP && k != K_TEST) cpu->gpr[d->r0] = r;                                        \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_ri_##k##_8)                                                                  \
    {                                                                                              \
        uint64_t r = alu(cpu, k, 8, cpu->gpr[d->r0], (uint64_t)d->imm);                            \
        if (k != K_CMP && k != K_TEST) cpu->gpr[d->r0] = r;                                        \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_rm_##k)                                                                      \
    {                                                                                              \
        unsigned sz = d->osz;                                                                      \
        uint64_t b = hvp_rdn(cpu, hvp_ea(cpu, d), sz);                                             \
        uint64_t r = alu(cpu, k, sz, hvp_reg_rd(cpu, d->r0, sz), b);                               \
        if (k != K_CMP && k != K_TEST) hvp_reg_wr(cpu, d->r0, sz, r);                              \
        return NEXT(cpu, d);                                                                       \
    }                                                                                              \
    HVP_HANDLER(h_alu_m_##k)                                                                       \
    {                                                                                              \
        unsigned sz = d->osz;                                                                      \
        uint64_t a = hvp_ea(cpu, d);                                                               \
        uint64_t b = (d->fl & HVP_DF_IMM) ? (uint64_t)d->imm : hvp_reg_rd(cpu, d->r1, sz);         \
        uint64_t x = hvp_rdn(cpu, a, sz);                                                          \
        uint64_t r = alu(cpu, k, sz, x, b);                                                        \
        if (k != K_CMP && k != K_TEST) hvp_wrn(cpu, a, sz, r);                                     \
        return NEXT(cpu, d);                                                                       \
    }

ALU_K(K_ADD)
ALU_K(K_OR)
ALU_K(K_ADC)
ALU_K(K_SBB)
ALU_K(K_AND)
ALU_K(K_SUB)
ALU_K(K_XOR)
ALU_K(K_CMP)
ALU_K(K_TEST)

#define ALU_ROW(k)                                                                                 \
    {                                                                                              \
        h_alu_rr_##k##_1, h_alu_rr_##k##_2, h_alu_rr_##k##_4, h_alu_rr_##k##_8, h_alu_ri_##k##_1,  \
            h_alu_ri_##k##_2, h_alu_ri_##k##_4, h_alu_ri_##k##_8, h_alu_rm_##k, h_alu_m_##k        \
    }
static const hvp_handler alu_tab[9][10] = {ALU_ROW(K_ADD), ALU_ROW(K_OR),  ALU_ROW(K_ADC),
                                           ALU_ROW(K_SBB), ALU_ROW(K_AND), ALU_ROW(K_SUB),
                                           ALU_ROW(K_XOR), ALU_ROW(K_CMP), ALU_ROW(K_TEST)};

static inline unsigned szi(unsigned sz)
{
    return sz == 1 ? 0 : sz == 2 ? 1 : sz == 4 ? 2 : 3;
}

/* Atomic read-modify-write on host memory: CAS loop over a pure function. */
#define ATOMIC_RMW(p, sz, old, expr_new)                                                           \
    do {                                                                                           \
        switch (sz) {                                                                              \
        case 1: {                                                                                  \
            uint8_t o_ = __atomic_load_n((uint8_t *)(p), __ATOMIC_RELAXED), n_;                    \
            do {                                                                                   \
                old = o_;                                                                          \
                n_ = (uint8_t)(expr_new);                                                          \
            } while (!__atomic_compare_exchange_n((uint8_t *)(p), &o_, n_, true, __ATOMIC_SEQ_CST, \
                                                  __ATOMIC_RELAXED));                              \
            break;                                                                                 \
        }                                                                                          \
        case 2: {                                                                                  \
            uint16_t o_ = __atomic_load_n((uint16_t *)(p), __ATOMIC_RELAXED), n_;                  \
            do {                                                                                   \
                old = o_;                                                                          \
                n_ = (uint16_t)(expr_new);                                                         \
            } while (!__atomic_compare_exchange_n((uint16_t *)(p), &o_, n_, true,                  \
                                                  __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));            \
            break;                                                                                 \
        }                                                                                          \
        case 4: {                                                                                  \
            uint32_t o_ = __atomic_load_n((uint32_t *)(p), __ATOMIC_RELAXED), n_;                  \
            do {                                                                                   \
                old = o_;                                                                          \
                n_ = (uint32_t)(expr_new);                                                         \
            } while (!__atomic_compare_exchange_n((uint32_t *)(p), &o_, n_, true,                  \
                                                  __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));            \
            break;                                                                                 \
        }                                                                                          \
        default: {                                                                                 \
            uint64_t o_ = __atomic_load_n((uint64_t *)(p), __ATOMIC_RELAXED), n_;                  \
            do {                                                                                   \
                old = o_;                                                                          \
                n_ = (uint64_t)(expr_new);                                                         \
            } while (!__atomic_compare_exchange_n((uint64_t *)(p), &o_, n_, true,                  \
                                                  __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));            \
            break;                                                                                 \
        }                                                                                          \
        }                                                                                          \
    } while (0)

HVP_HANDLER(h_alu_lock)
{
    unsigned sz = d->osz, k = d->aux;
    uint64_t a = hvp_ea(cpu, d);
    uint64_t b = (d->fl & HVP_DF_IMM) ? (uint64_t)d->imm & M(sz) : hvp_reg_rd(cpu, d->r1, sz);
    void *p = hvp_rmw_ptr(cpu, a, sz);
    unsigned cin = alu_cin(cpu, k);
    uint64_t old;
    if (p) {
        ATOMIC_RMW(p, sz, old, alu_pure(k, old, b, cin));
    } else {
        old = hvp_rdn(cpu, a, sz);
        hvp_wrn(cpu, a, sz, alu_pure(k, old, b, cin));
    }
    alu_flags(cpu, k, sz, old, b, alu_pure(k, old, b, cin), cin);
    return NEXT(cpu, d);
}

/* ---- unary: INC DEC NEG NOT ---- */

enum { U_INC, U_DEC, U_NEG, U_NOT };

static inline uint64_t unary(struct hvp_cpu *cpu, unsigned k, unsigned sz, uint64_t x, bool flags)
{
    uint64_t r;
    switch (k) {
    case U_INC: r = (x + 1) & M(sz); break;
    case U_DEC: r = (x - 1) & M(sz); break;
    case U_NEG: r = (0 - x) & M(sz); break;
    default: r = ~x & M(sz); break;
    }
    if (!flags || k == U_NOT) return r;
    if (k == U_NEG) {
        hvp_lf(cpu, HVP_LF_SUB, sz, 0, x & M(sz), r);
        cpu->lf_cin = 0;
    } else {
        unsigned cf = hvp_get_cf(cpu);
        hvp_lf(cpu, k == U_INC ? HVP_LF_INC : HVP_LF_DEC, sz, x & M(sz), 1, r);
        cpu->lf_cin = (uint8_t)cf;
    }
    return r;
}

HVP_HANDLER(h_unary_r)
{
    unsigned sz = d->osz;
    hvp_reg_wr(cpu, d->r0, sz, unary(cpu, d->aux, sz, hvp_reg_rd(cpu, d->r0, sz), true));
    return NEXT(cpu, d);
}

HVP_HANDLER(h_inc64_r)
{
    uint64_t x = cpu->gpr[d->r0];
    unsigned cf = hvp_get_cf(cpu);
    cpu->gpr[d->r0] = x + 1;
    hvp_lf(cpu, HVP_LF_INC, 8, x, 1, x + 1);
    cpu->lf_cin = (uint8_t)cf;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_dec64_r)
{
    uint64_t x = cpu->gpr[d->r0];
    unsigned cf = hvp_get_cf(cpu);
    cpu->gpr[d->r0] = x - 1;
    hvp_lf(cpu, HVP_LF_DEC, 8, x, 1, x - 1);
    cpu->lf_cin = (uint8_t)cf;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_inc32_r)
{
    uint32_t x = (uint32_t)cpu->gpr[d->r0];
    unsigned cf = hvp_get_cf(cpu);
    cpu->gpr[d->r0] = (uint32_t)(x + 1);
    hvp_lf(cpu, HVP_LF_INC, 4, x, 1, (uint32_t)(x + 1));
    cpu->lf_cin = (uint8_t)cf;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_dec32_r)
{
    uint32_t x = (uint32_t)cpu->gpr[d->r0];
    unsigned cf = hvp_get_cf(cpu);
    cpu->gpr[d->r0] = (uint32_t)(x - 1);
    hvp_lf(cpu, HVP_LF_DEC, 4, x, 1, (uint32_t)(x - 1));
    cpu->lf_cin = (uint8_t)cf;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_unary_m)
{
    unsigned sz = d->osz;
    uint64_t a = hvp_ea(cpu, d);
    if (d->fl & HVP_DF_LOCK) {
        void *p = hvp_rmw_ptr(cpu, a, sz);
        if (p) {
            uint64_t old;
            unsigned k = d->aux;
            ATOMIC_RMW(p, sz, old, unary(cpu, k, sz, old, false));
            unary(cpu, k, sz, old, true);
            return NEXT(cpu, d);
        }
    } else {
        hvp_rmw_ptr(cpu, a, sz); /* fault before any change */
    }
    uint64_t x = hvp_rdn(cpu, a, sz);
    hvp_wrn(cpu, a, sz, unary(cpu, d->aux, sz, x, true));
    return NEXT(cpu, d);
}

/* ---- MOV family ---- */

HVP_HANDLER(h_mov_rr64)
{
    cpu->gpr[d->r0] = cpu->gpr[d->r1];
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_rr32)
{
    cpu->gpr[d->r0] = (uint32_t)cpu->gpr[d->r1];
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_rr)
{
    hvp_reg_wr(cpu, d->r0, d->osz, hvp_reg_rd(cpu, d->r1, d->osz));
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_ri)
{
    hvp_reg_wr(cpu, d->r0, d->osz, (uint64_t)d->imm);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_ri64)
{
    cpu->gpr[d->r0] = (uint64_t)d->imm;
    return NEXT(cpu, d);
}
HVP_HANDLER(h_ld64_bd) /* mov r64, [base + disp32] */
{
    cpu->gpr[d->r0] = hvp_rd64(cpu, cpu->gpr[d->base] + (uint64_t)(int64_t)d->disp);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_st64_bd) /* mov [base + disp32], r64 */
{
    hvp_wr64(cpu, cpu->gpr[d->base] + (uint64_t)(int64_t)d->disp, cpu->gpr[d->r1]);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_ld32_bd)
{
    cpu->gpr[d->r0] = hvp_rd32(cpu, cpu->gpr[d->base] + (uint64_t)(int64_t)d->disp);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_st32_bd)
{
    hvp_wr32(cpu, cpu->gpr[d->base] + (uint64_t)(int64_t)d->disp, cpu->gpr[d->r1]);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_rm)
{
    hvp_reg_wr(cpu, d->r0, d->osz, hvp_rdn(cpu, hvp_ea(cpu, d), d->osz));
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_mr)
{
    hvp_wrn(cpu, hvp_ea(cpu, d), d->osz, hvp_reg_rd(cpu, d->r1, d->osz));
    return NEXT(cpu, d);
}
HVP_HANDLER(h_mov_mi)
{
    hvp_wrn(cpu, hvp_ea(cpu, d), d->osz, (uint64_t)d->imm);
    return NEXT(cpu, d);
}

/* MOVZX / MOVSX / MOVSXD: aux = source size, fl bit: signed in r1 flag */
HVP_HANDLER(h_movx)
{
    unsigned ss = d->aux;
    uint64_t v =
        (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), ss) : hvp_reg_rd(cpu, d->r1, ss);
    if (d->fl & HVP_DF_SX) {
        unsigned sh = 64 - ss * 8;
        v = (uint64_t)((int64_t)(v << sh) >> sh);
    }
    hvp_reg_wr(cpu, d->r0, d->osz, v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lea)
{
    hvp_reg_wr(cpu, d->r0, d->osz, hvp_ea(cpu, d));
    return NEXT(cpu, d);
}
HVP_HANDLER(h_lea64_bd)
{
    cpu->gpr[d->r0] = cpu->gpr[d->base] + (uint64_t)(int64_t)d->disp;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_xchg_rr)
{
    unsigned sz = d->osz;
    uint64_t a = hvp_reg_rd(cpu, d->r0, sz), b = hvp_reg_rd(cpu, d->r1, sz);
    hvp_reg_wr(cpu, d->r0, sz, b);
    hvp_reg_wr(cpu, d->r1, sz, a);
    return NEXT(cpu, d);
}

/* xchg with memory is always locked; r = the register operand (r0 or r1) */
HVP_HANDLER(h_xchg_m)
{
    unsigned sz = d->osz, r = d->aux;
    uint64_t a = hvp_ea(cpu, d), v = hvp_reg_rd(cpu, r, sz), old;
    void *p = hvp_rmw_ptr(cpu, a, sz);
    if (p) {
        switch (sz) {
        case 1: old = __atomic_exchange_n((uint8_t *)p, (uint8_t)v, __ATOMIC_SEQ_CST); break;
        case 2: old = __atomic_exchange_n((uint16_t *)p, (uint16_t)v, __ATOMIC_SEQ_CST); break;
        case 4: old = __atomic_exchange_n((uint32_t *)p, (uint32_t)v, __ATOMIC_SEQ_CST); break;
        default: old = __atomic_exchange_n((uint64_t *)p, v, __ATOMIC_SEQ_CST); break;
        }
    } else {
        old = hvp_rdn(cpu, a, sz);
        hvp_wrn(cpu, a, sz, v);
    }
    hvp_reg_wr(cpu, r, sz, old);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_nop)
{
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fence)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return NEXT(cpu, d);
}

/* ---- stack ---- */

static inline void push(struct hvp_cpu *cpu, unsigned sz, uint64_t v)
{
    uint64_t sp = cpu->gpr[4] - sz;
    hvp_wrn(cpu, sp, sz, v);
    cpu->gpr[4] = sp;
}

HVP_HANDLER(h_push_r64)
{
    uint64_t sp = cpu->gpr[4] - 8;
    hvp_wr64(cpu, sp, cpu->gpr[d->r0]);
    cpu->gpr[4] = sp;
    return NEXT(cpu, d);
}
HVP_HANDLER(h_pop_r64)
{
    uint64_t v = hvp_rd64(cpu, cpu->gpr[4]);
    cpu->gpr[4] += 8;
    cpu->gpr[d->r0] = v; /* pop rsp: the popped value wins */
    return NEXT(cpu, d);
}
HVP_HANDLER(h_push)
{
    /* push r/m/imm of d->osz (2 or 8); the source is read before RSP moves */
    unsigned sz = d->osz;
    uint64_t v = (d->fl & HVP_DF_IMM)  ? (uint64_t)d->imm
                 : (d->fl & HVP_DF_M0) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz)
                                       : hvp_reg_rd(cpu, d->r0, sz);
    push(cpu, sz, v);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_pop)
{
    unsigned sz = d->osz;
    uint64_t v = hvp_rdn(cpu, cpu->gpr[4], sz);
    if (d->fl & HVP_DF_M0) {
        /* the address is computed with RSP already incremented */
        uint64_t old = cpu->gpr[4];
        cpu->gpr[4] += sz;
        uint64_t a = hvp_ea(cpu, d);
        cpu->gpr[4] = old;
        hvp_wrn(cpu, a, sz, v);
        cpu->gpr[4] += sz;
    } else {
        cpu->gpr[4] += sz;
        hvp_reg_wr(cpu, d->r0, sz, v);
    }
    return NEXT(cpu, d);
}

HVP_HANDLER(h_leave)
{
    unsigned sz = d->osz;
    uint64_t v = hvp_rdn(cpu, cpu->gpr[5], sz);
    cpu->gpr[4] = cpu->gpr[5] + sz;
    hvp_reg_wr(cpu, 5, sz, v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_enter)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned sz = d->osz, level = (unsigned)xi->imm2 & 31;
    uint64_t alloc = (uint64_t)xi->imm & 0xffff;
    uint64_t sp = cpu->gpr[4], bp = cpu->gpr[5];
    /* probe the whole frame first so that a fault changes nothing */
    uint64_t frame = sp - sz;
    hvp_rmw_ptr(cpu, sp - sz, sz);
    uint64_t t = frame;
    for (unsigned i = 1; i < level; i++)
        hvp_rdn(cpu, bp - i * sz, sz);
    sp -= sz;
    hvp_wrn(cpu, sp, sz, bp);
    for (unsigned i = 1; i < level; i++) {
        uint64_t v = hvp_rdn(cpu, bp - i * sz, sz);
        sp -= sz;
        hvp_wrn(cpu, sp, sz, v);
    }
    if (level) {
        sp -= sz;
        hvp_wrn(cpu, sp, sz, t);
    }
    sp -= alloc;
    if (alloc) /* the new stack top must be writable (the SDM checks it) */
        hvp_rmw_ptr(cpu, sp, 1);
    hvp_reg_wr(cpu, 5, sz, t);
    cpu->gpr[4] = sp;
    return NEXT(cpu, d);
}

/* ---- branches (they end the trace) ---- */

static inline void check_target(struct hvp_cpu *cpu, uint64_t t)
{
    if (unlikely((uint64_t)((int64_t)(t << 16) >> 16) != t)) hvp_raise_gp0(cpu);
}

HVP_HANDLER(h_jmp)
{
    uint64_t t = cpu->rip + d->len + (uint64_t)d->imm;
    check_target(cpu, t);
    cpu->rip = t;
    return d + 1;
}
/* Jcc specialised per condition: hvp_cond folds to a few instructions */
#define JCC(cc)                                                                                    \
    HVP_HANDLER(h_jcc_##cc)                                                                        \
    {                                                                                              \
        if (hvp_cond(cpu, cc)) {                                                                   \
            uint64_t t = cpu->rip + d->len + (uint64_t)d->imm;                                     \
            check_target(cpu, t);                                                                  \
            cpu->rip = t;                                                                          \
            return d + d->disp; /* the side exit (HVP_B_SIDE) */                                   \
        }                                                                                          \
        cpu->rip += d->len;                                                                        \
        return d + 1;                                                                              \
    }
JCC(0)
JCC(1)
JCC(2)
JCC(3)
JCC(4)
JCC(5)
JCC(6)
JCC(7)
JCC(8)
JCC(9)
JCC(10)
JCC(11)
JCC(12)
JCC(13)
JCC(14)
JCC(15)
static const hvp_handler jcc_tab[16] = {h_jcc_0,  h_jcc_1,  h_jcc_2,  h_jcc_3, h_jcc_4,  h_jcc_5,
                                        h_jcc_6,  h_jcc_7,  h_jcc_8,  h_jcc_9, h_jcc_10, h_jcc_11,
                                        h_jcc_12, h_jcc_13, h_jcc_14, h_jcc_15};

HVP_HANDLER(h_jmp_ind)
{
    uint64_t t = (d->fl & HVP_DF_M0) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r0];
    check_target(cpu, t);
    cpu->rip = t;
    return d + 1;
}
HVP_HANDLER(h_call)
{
    uint64_t ret = cpu->rip + d->len, t = ret + (uint64_t)d->imm;
    check_target(cpu, t);
    push(cpu, 8, ret);
    cpu->rip = t;
    return d + 1;
}
HVP_HANDLER(h_call_ind)
{
    uint64_t ret = cpu->rip + d->len;
    uint64_t t = (d->fl & HVP_DF_M0) ? hvp_rd64(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r0];
    check_target(cpu, t);
    push(cpu, 8, ret);
    cpu->rip = t;
    return d + 1;
}
HVP_HANDLER(h_ret)
{
    uint64_t t = hvp_rd64(cpu, cpu->gpr[4]);
    check_target(cpu, t);
    cpu->gpr[4] += 8 + (uint64_t)d->imm;
    cpu->rip = t;
    return d + 1;
}
/* LOOP/LOOPE/LOOPNE/JRCXZ: aux 0 loop, 1 loope, 2 loopne, 3 jrcxz */
HVP_HANDLER(h_loop)
{
    uint64_t m = M(d->asz), c = cpu->gpr[1] & m;
    bool take;
    if (d->aux == 3) {
        take = c == 0;
    } else {
        c = (c - 1) & m;
        bool zf = d->aux ? hvp_cond(cpu, 4) : false;
        take = c != 0 && (d->aux == 0 || (d->aux == 1 ? zf : !zf));
    }
    uint64_t t = cpu->rip + d->len + (uint64_t)d->imm;
    if (take) check_target(cpu, t);
    if (d->aux != 3) hvp_reg_wr(cpu, 1, d->asz, c);
    cpu->rip = take ? t : cpu->rip + d->len;
    return d + 1;
}

HVP_HANDLER(h_setcc)
{
    uint64_t v = hvp_cond(cpu, d->aux);
    if (d->fl & HVP_DF_M0)
        hvp_wr8(cpu, hvp_ea(cpu, d), v);
    else
        hvp_reg_wr(cpu, d->r0, 1, v);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_cmov)
{
    unsigned sz = d->osz;
    uint64_t v =
        (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz) : hvp_reg_rd(cpu, d->r1, sz);
    if (hvp_cond(cpu, d->aux))
        hvp_reg_wr(cpu, d->r0, sz, v);
    else if (sz == 4)
        cpu->gpr[d->r0] = (uint32_t)cpu->gpr[d->r0];
    return NEXT(cpu, d);
}

/* ---- system-ish ---- */

HVP_HANDLER(h_syscall)
{
    uint64_t next = cpu->rip + d->len;
    hvp_flags_materialize(cpu);
    cpu->gpr[1] = next;
    cpu->gpr[11] = cpu->rflags & ~(uint64_t)0x10000; /* RF cleared */
    cpu->rip = next;
    cpu->exit->reason = HVP_CPU_EXIT_SYSCALL;
    cpu->stop = true;
    return d + 1;
}
HVP_HANDLER(h_ud)
{
    (void)d;
    hvp_raise_ud(cpu);
}
HVP_HANDLER(h_gp)
{
    (void)d;
    hvp_raise_gp0(cpu);
}
HVP_HANDLER(h_int3)
{
    cpu->rip += d->len;
    hvp_raise_trap(cpu, 3);
}
HVP_HANDLER(h_int1)
{
    cpu->rip += d->len;
    hvp_raise_trap(cpu, 1);
}
/* INT n: reported as an exception exit with vector n after the instruction */
HVP_HANDLER(h_intn)
{
    cpu->rip += d->len;
    hvp_raise_trap(cpu, (unsigned)d->imm & 0xff);
}
HVP_HANDLER(h_cpuid)
{
    uint32_t r[4];
    hvp_cpu_cpuid(cpu, (uint32_t)cpu->gpr[0], (uint32_t)cpu->gpr[1], r);
    if (unlikely(cpu->hooks.cpuid != NULL)) {
        int rc = cpu->hooks.cpuid(cpu->hooks.ctx, (uint32_t)cpu->gpr[0], (uint32_t)cpu->gpr[1], r);
        if (rc != 0) { /* exit with the table's answer; RIP at the CPUID */
            struct hvp_cpu_exit *ex = cpu->exit;
            hvp_cpu_cpuid(cpu, (uint32_t)cpu->gpr[0], (uint32_t)cpu->gpr[1], ex->u.cpuid.regs);
            ex->reason = HVP_CPU_EXIT_CPUID;
            ex->u.cpuid.leaf = (uint32_t)cpu->gpr[0];
            ex->u.cpuid.subleaf = (uint32_t)cpu->gpr[1];
            hvp_sys_insn_bytes(cpu, ex);
            cpu->stop = true;
            return NULL;
        }
    }
    cpu->gpr[0] = r[0];
    cpu->gpr[3] = r[1];
    cpu->gpr[1] = r[2];
    cpu->gpr[2] = r[3];
    return NEXT(cpu, d);
}
HVP_HANDLER(h_rdtsc)
{
    uint64_t t = hvp_cpu_rdtsc(cpu);
    cpu->gpr[0] = (uint32_t)t;
    cpu->gpr[2] = t >> 32;
    if (d->aux) cpu->gpr[1] = (uint32_t)cpu->st.tsc_aux;
    return NEXT(cpu, d);
}

/* ---- flags instructions ---- */

#define USER_FLAGS (HVP_ARITH | HVP_TF | HVP_DFLAG | 0x4000u | 0x40000u | 0x200000u)

HVP_HANDLER(h_flagop) /* aux: 0 clc 1 stc 2 cmc 3 cld 4 std 5 lahf 6 sahf */
{
    hvp_flags_materialize(cpu);
    uint64_t f = cpu->rflags;
    switch (d->aux) {
    case 0: f &= ~(uint64_t)HVP_CF; break;
    case 1: f |= HVP_CF; break;
    case 2: f ^= HVP_CF; break;
    case 3: f &= ~(uint64_t)HVP_DFLAG; break;
    case 4: f |= HVP_DFLAG; break;
    case 5: hvp_reg_wr(cpu, HVP_R8H | 0, 1, (f & 0xd5) | 2); break;
    default: f = (f & ~(uint64_t)0xd5) | ((cpu->gpr[0] >> 8) & 0xd5); break;
    }
    cpu->rflags = f | 2;
    return NEXT(cpu, d);
}
HVP_HANDLER(h_pushf)
{
    uint64_t f = hvp_flags_get(cpu) & ~(uint64_t)0x30000; /* RF, VM read as 0 */
    push(cpu, d->osz, f);
    return NEXT(cpu, d);
}
HVP_HANDLER(h_popf)
{
    unsigned sz = d->osz;
    uint64_t v = hvp_rdn(cpu, cpu->gpr[4], sz);
    cpu->gpr[4] += sz;
    uint64_t f = hvp_flags_get(cpu);
    uint64_t mask = USER_FLAGS & M(sz);
    hvp_flags_set(cpu, (f & ~mask) | (v & mask));
    return NEXT(cpu, d);
}

/* CBW/CWDE/CDQE (aux 0) and CWD/CDQ/CQO (aux 1) */
HVP_HANDLER(h_cext)
{
    unsigned sz = d->osz, sh = 64 - sz * 4;
    if (d->aux == 0) {
        uint64_t v = (uint64_t)((int64_t)(cpu->gpr[0] << sh) >> sh);
        hvp_reg_wr(cpu, 0, sz, v);
    } else {
        unsigned s2 = 64 - sz * 8;
        uint64_t v = (int64_t)(cpu->gpr[0] << s2) < 0 ? ~(uint64_t)0 : 0;
        hvp_reg_wr(cpu, 2, sz, v);
    }
    return NEXT(cpu, d);
}

HVP_HANDLER(h_xlat)
{
    uint64_t a = cpu->gpr[3] + (cpu->gpr[0] & 0xff);
    if (d->asz == 4) a = (uint32_t)a;
    if (d->seg) a += d->seg == HVP_SEG_FS ? cpu->fs_base : cpu->gs_base;
    hvp_reg_wr(cpu, 0, 1, hvp_rd8(cpu, a));
    return NEXT(cpu, d);
}

HVP_HANDLER(h_bswap)
{
    if (d->osz == 8)
        cpu->gpr[d->r0] = __builtin_bswap64(cpu->gpr[d->r0]);
    else if (d->osz == 4)
        cpu->gpr[d->r0] = __builtin_bswap32((uint32_t)cpu->gpr[d->r0]);
    else
        hvp_reg_wr(cpu, d->r0, 2, 0); /* undefined; hardware gives 0 */
    return NEXT(cpu, d);
}

HVP_HANDLER(h_movbe)
{
    unsigned sz = d->osz;
    if (d->fl & HVP_DF_M1) {
        uint64_t v = hvp_rdn(cpu, hvp_ea(cpu, d), sz);
        v = sz == 2   ? __builtin_bswap16((uint16_t)v)
            : sz == 4 ? __builtin_bswap32((uint32_t)v)
                      : __builtin_bswap64(v);
        hvp_reg_wr(cpu, d->r0, sz, v);
    } else {
        uint64_t v = hvp_reg_rd(cpu, d->r1, sz);
        v = sz == 2   ? __builtin_bswap16((uint16_t)v)
            : sz == 4 ? __builtin_bswap32((uint32_t)v)
                      : __builtin_bswap64(v);
        hvp_wrn(cpu, hvp_ea(cpu, d), sz, v);
    }
    return NEXT(cpu, d);
}

/* ---- shifts and rotates ---- */

enum { S_ROL, S_ROR, S_RCL, S_RCR, S_SHL, S_SHR, S_SAL, S_SAR };

static void set_cf_of(struct hvp_cpu *cpu, unsigned cf, unsigned of)
{
    hvp_flags_materialize(cpu);
    cpu->rflags =
        (cpu->rflags & ~(uint64_t)(HVP_CF | HVP_OF)) | (cf ? HVP_CF : 0) | (of ? HVP_OF : 0);
}

static uint64_t shift(struct hvp_cpu *cpu, unsigned k, unsigned sz, uint64_t x, unsigned cnt)
{
    unsigned bits = sz * 8;
    cnt &= sz == 8 ? 63 : 31;
    if (!cnt) return x;
    uint64_t m = M(sz), sb = (uint64_t)1 << (bits - 1);
    uint64_t r;
    switch (k) {
    case S_SHL:
    case S_SAL:
        r = cnt < 64 ? (x << cnt) & m : 0;
        hvp_lf(cpu, HVP_LF_SHL, sz, x, cnt, r);
        cpu->lf_cin = 0;
        return r;
    case S_SHR:
        r = cnt < 64 ? x >> cnt : 0;
        hvp_lf(cpu, HVP_LF_SHR, sz, x, cnt, r);
        cpu->lf_cin = 0;
        return r;
    case S_SAR: {
        int64_t s = (int64_t)(x << (64 - bits)) >> (64 - bits);
        r = (uint64_t)(s >> (cnt < 64 ? cnt : 63)) & m;
        hvp_lf(cpu, HVP_LF_SAR, sz, x, cnt, r);
        cpu->lf_cin = 0;
        return r;
    }
    case S_ROL: {
        unsigned c = cnt % bits;
        r = c ? ((x << c) | (x >> (bits - c))) & m : x;
        unsigned cf = r & 1;
        set_cf_of(cpu, cf, !!(r & sb) ^ cf);
        return r;
    }
    case S_ROR: {
        unsigned c = cnt % bits;
        r = c ? ((x >> c) | (x << (bits - c))) & m : x;
        set_cf_of(cpu, !!(r & sb), !!(r & sb) ^ !!(r & (sb >> 1)));
        return r;
    }
    case S_RCL: {
        unsigned c = cnt % (bits + 1);
        unsigned cf = hvp_get_cf(cpu);
        r = x;
        for (unsigned i = 0; i < c; i++) {
            unsigned out = !!(r & sb);
            r = ((r << 1) | cf) & m;
            cf = out;
        }
        if (c) set_cf_of(cpu, cf, !!(r & sb) ^ cf);
        return r;
    }
    default: { /* RCR */
        unsigned c = cnt % (bits + 1);
        unsigned cf = hvp_get_cf(cpu);
        r = x;
        unsigned of = !!(r & sb) ^ cf;
        for (unsigned i = 0; i < c; i++) {
            unsigned out = r & 1;
            r = (r >> 1) | ((uint64_t)cf << (bits - 1));
            cf = out;
        }
        if (c) set_cf_of(cpu, cf, of);
        return r;
    }
    }
}

HVP_HANDLER(h_shift)
{
    unsigned sz = d->osz;
    unsigned cnt = (d->fl & HVP_DF_IMM) ? (unsigned)d->imm : (unsigned)cpu->gpr[1] & 0xff;
    if (d->fl & HVP_DF_M0) {
        uint64_t a = hvp_ea(cpu, d);
        hvp_rmw_ptr(cpu, a, sz);
        hvp_wrn(cpu, a, sz, shift(cpu, d->aux, sz, hvp_rdn(cpu, a, sz), cnt));
    } else {
        uint64_t r = shift(cpu, d->aux, sz, hvp_reg_rd(cpu, d->r0, sz), cnt);
        if ((cnt & (sz == 8 ? 63 : 31)) || sz != 4)
            hvp_reg_wr(cpu, d->r0, sz, r);
        else
            hvp_reg_wr(cpu, d->r0, sz, r); /* count 0 still zero-extends a 32-bit register */
    }
    return NEXT(cpu, d);
}

/* SHLD (aux 0) / SHRD (aux 1): dest, src reg, count imm or CL */
HVP_HANDLER(h_shd)
{
    unsigned sz = d->osz, bits = sz * 8;
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned cnt = xi->ops[2].kind == HVP_X86_OPK_IMM ? (unsigned)xi->imm : (unsigned)cpu->gpr[1];
    cnt &= sz == 8 ? 63 : 31;
    uint64_t a = 0, x;
    if (d->fl & HVP_DF_M0) {
        a = hvp_ea(cpu, d);
        hvp_rmw_ptr(cpu, a, sz);
        x = hvp_rdn(cpu, a, sz);
    } else {
        x = hvp_reg_rd(cpu, d->r0, sz);
    }
    uint64_t s = hvp_reg_rd(cpu, d->r1, sz), r = x;
    if (cnt) {
        /* 16-bit counts above 16 are undefined; compute over a 3-part window like hardware */
        unsigned __int128 w;
        uint64_t m = M(sz), sb = (uint64_t)1 << (bits - 1);
        unsigned cf;
        if (d->aux == 0) {
            w = ((unsigned __int128)x << bits) | s;
            if (bits == 16) w = (w << 16) | x; /* x:s:x */
            unsigned total = bits == 16 ? 48 : 2 * bits;
            r = (uint64_t)(w >> (total - bits - cnt)) & m;
            cf = (unsigned)(w >> (total - cnt)) & 1;
        } else {
            w = ((unsigned __int128)s << bits) | x;
            if (bits == 16) w = ((unsigned __int128)x << 32) | w; /* x:s:x */
            r = (uint64_t)(w >> cnt) & m;
            cf = (unsigned)(w >> (cnt - 1)) & 1;
        }
        hvp_flags_materialize(cpu);
        uint64_t f = cpu->rflags & ~(uint64_t)HVP_ARITH;
        f |= cf ? HVP_CF : 0;
        f |= ((r ^ x) & sb) ? HVP_OF : 0;
        f |= r == 0 ? HVP_ZF : 0;
        f |= (r & sb) ? HVP_SF : 0;
        f |= __builtin_parity((unsigned)(r & 0xff)) ? 0 : HVP_PF;
        cpu->rflags = f;
    }
    if (d->fl & HVP_DF_M0)
        hvp_wrn(cpu, a, sz, r);
    else
        hvp_reg_wr(cpu, d->r0, sz, r);
    return NEXT(cpu, d);
}

/* ---- multiply / divide ---- */

static void mul_flags(struct hvp_cpu *cpu, unsigned sz, uint64_t lo, bool over)
{
    hvp_flags_materialize(cpu);
    uint64_t sb = (uint64_t)1 << (sz * 8 - 1), r = lo & M(sz);
    uint64_t f = cpu->rflags & ~(uint64_t)HVP_ARITH;
    f |= over ? (HVP_CF | HVP_OF) : 0;
    f |= r == 0 ? HVP_ZF : 0;
    f |= (r & sb) ? HVP_SF : 0;
    f |= __builtin_parity((unsigned)(r & 0xff)) ? 0 : HVP_PF;
    cpu->rflags = f;
}

/* one-operand MUL (aux 0), IMUL (1), DIV (2), IDIV (3) */
HVP_HANDLER(h_muldiv)
{
    unsigned sz = d->osz, bits = sz * 8;
    uint64_t src =
        (d->fl & HVP_DF_M0) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz) : hvp_reg_rd(cpu, d->r0, sz);
    uint64_t m = M(sz);
    if (d->aux < 2) {
        uint64_t a = sz == 1 ? cpu->gpr[0] & 0xff : cpu->gpr[0] & m;
        unsigned __int128 p;
        bool over;
        if (d->aux == 0) {
            p = (unsigned __int128)a * src;
            over = (p >> bits) != 0;
        } else {
            unsigned sh = 64 - bits;
            __int128 sp =
                (__int128)((int64_t)(a << sh) >> sh) * (__int128)((int64_t)(src << sh) >> sh);
            p = (unsigned __int128)sp;
            int64_t lo = (int64_t)((uint64_t)p << sh) >> sh;
            over = (__int128)lo != sp;
        }
        uint64_t lo = (uint64_t)p & m, hi = (uint64_t)(p >> bits) & m;
        if (sz == 1) {
            hvp_reg_wr(cpu, 0, 2, lo | (hi << 8));
        } else {
            hvp_reg_wr(cpu, 0, sz, lo);
            hvp_reg_wr(cpu, 2, sz, hi);
        }
        mul_flags(cpu, sz, lo, over);
        return NEXT(cpu, d);
    }
    if (src == 0) hvp_raise_de(cpu);
    unsigned __int128 n;
    if (sz == 1)
        n = cpu->gpr[0] & 0xffff;
    else
        n = ((unsigned __int128)(cpu->gpr[2] & m) << bits) | (cpu->gpr[0] & m);
    uint64_t q, r;
    if (d->aux == 2) {
        unsigned __int128 qq = n / src;
        if (qq > m) hvp_raise_de(cpu);
        q = (uint64_t)qq;
        r = (uint64_t)(n % src);
    } else {
        unsigned sh = 128 - 2 * bits;
        __int128 sn = (__int128)(n << sh) >> sh;
        unsigned s1 = 64 - bits;
        __int128 sd = (int64_t)(src << s1) >> s1;
        if (sd == -1 && sn == -(sn) && sn != 0) {
            /* only reachable for the most negative dividend: overflow below */
        }
        __int128 qq, rr;
        if (sd == -1) {
            qq = -sn; /* avoid the host trap on INT128_MIN / -1 */
            rr = 0;
        } else {
            qq = sn / sd;
            rr = sn % sd;
        }
        __int128 lim = (__int128)1 << (bits - 1);
        if (qq >= lim || qq < -lim) hvp_raise_de(cpu);
        q = (uint64_t)qq & m;
        r = (uint64_t)rr & m;
    }
    if (sz == 1) {
        hvp_reg_wr(cpu, 0, 2, (q & 0xff) | ((r & 0xff) << 8));
    } else {
        hvp_reg_wr(cpu, 0, sz, q);
        hvp_reg_wr(cpu, 2, sz, r);
    }
    return NEXT(cpu, d);
}

/* IMUL r, r/m and IMUL r, r/m, imm */
HVP_HANDLER(h_imul2)
{
    unsigned sz = d->osz, bits = sz * 8, sh = 64 - bits;
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    uint64_t b =
        (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz) : hvp_reg_rd(cpu, d->r1, sz);
    uint64_t a = xi->nops == 3 ? (uint64_t)d->imm : hvp_reg_rd(cpu, d->r0, sz);
    __int128 p = (__int128)((int64_t)(a << sh) >> sh) * (__int128)((int64_t)(b << sh) >> sh);
    uint64_t lo = (uint64_t)p & M(sz);
    bool over = (__int128)((int64_t)(lo << sh) >> sh) != p;
    hvp_reg_wr(cpu, d->r0, sz, lo);
    mul_flags(cpu, sz, lo, over);
    return NEXT(cpu, d);
}

/* ---- bit instructions ---- */

/* BT (aux 0), BTS (1), BTR (2), BTC (3) */
HVP_HANDLER(h_bt)
{
    unsigned sz = d->osz, bits = sz * 8;
    uint64_t off = (d->fl & HVP_DF_IMM) ? (uint64_t)d->imm : hvp_reg_rd(cpu, d->r1, sz);
    uint64_t v, a = 0;
    unsigned bit;
    void *p = NULL;
    if (d->fl & HVP_DF_M0) {
        a = hvp_ea(cpu, d);
        if (d->fl & HVP_DF_IMM) {
            bit = (unsigned)off & (bits - 1);
        } else {
            unsigned sh = 64 - bits;
            int64_t so = (int64_t)(off << sh) >> sh;
            a += (uint64_t)((so >> (__builtin_ctz(bits))) * (int64_t)sz);
            bit = (unsigned)so & (bits - 1);
        }
        if (d->aux) {
            p = hvp_rmw_ptr(cpu, a, sz);
            if (p && (d->fl & HVP_DF_LOCK)) {
                uint64_t old, bm = (uint64_t)1 << bit;
                unsigned k = d->aux;
                ATOMIC_RMW(p, sz, old, k == 1 ? old | bm : k == 2 ? old & ~bm : old ^ bm);
                hvp_flags_materialize(cpu);
                cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_CF) | ((old >> bit) & 1);
                return NEXT(cpu, d);
            }
        }
        v = hvp_rdn(cpu, a, sz);
    } else {
        bit = (unsigned)off & (bits - 1);
        v = hvp_reg_rd(cpu, d->r0, sz);
    }
    hvp_flags_materialize(cpu);
    cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_CF) | ((v >> bit) & 1);
    if (d->aux) {
        uint64_t bm = (uint64_t)1 << bit;
        v = d->aux == 1 ? v | bm : d->aux == 2 ? v & ~bm : v ^ bm;
        if (d->fl & HVP_DF_M0)
            hvp_wrn(cpu, a, sz, v);
        else
            hvp_reg_wr(cpu, d->r0, sz, v);
    }
    return NEXT(cpu, d);
}

static void set_flag(struct hvp_cpu *cpu, uint64_t bit, bool on)
{
    cpu->rflags = (cpu->rflags & ~bit) | (on ? bit : 0);
}

/* BSF (0) BSR (1) TZCNT (2) LZCNT (3) POPCNT (4) */
HVP_HANDLER(h_bitscan)
{
    unsigned sz = d->osz, bits = sz * 8;
    uint64_t v =
        (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz) : hvp_reg_rd(cpu, d->r1, sz);
    hvp_flags_materialize(cpu);
    switch (d->aux) {
    case 0:
    case 1:
        set_flag(cpu, HVP_ZF, v == 0);
        if (v) {
            hvp_reg_wr(cpu, d->r0, sz,
                       d->aux == 0 ? (uint64_t)__builtin_ctzll(v)
                                   : (uint64_t)(63 - __builtin_clzll(v)));
        } else if (sz == 4) {
            /* the destination is unchanged (upper half kept, as hardware does) */
        }
        break;
    case 2: {
        uint64_t r = v ? (uint64_t)__builtin_ctzll(v) : bits;
        set_flag(cpu, HVP_CF, v == 0);
        set_flag(cpu, HVP_ZF, r == 0);
        hvp_reg_wr(cpu, d->r0, sz, r);
        break;
    }
    case 3: {
        uint64_t r = v ? (uint64_t)(__builtin_clzll(v) - (64 - bits)) : bits;
        set_flag(cpu, HVP_CF, v == 0);
        set_flag(cpu, HVP_ZF, r == 0);
        hvp_reg_wr(cpu, d->r0, sz, r);
        break;
    }
    default:
        cpu->rflags &= ~(uint64_t)HVP_ARITH;
        set_flag(cpu, HVP_ZF, v == 0);
        hvp_reg_wr(cpu, d->r0, sz, (uint64_t)__builtin_popcountll(v));
        break;
    }
    return NEXT(cpu, d);
}

/* ---- CMPXCHG, XADD ---- */

HVP_HANDLER(h_cmpxchg)
{
    unsigned sz = d->osz;
    uint64_t acc = hvp_reg_rd(cpu, 0, sz), src = hvp_reg_rd(cpu, d->r1, sz), old;
    bool eq;
    if (d->fl & HVP_DF_M0) {
        uint64_t a = hvp_ea(cpu, d);
        void *p = hvp_rmw_ptr(cpu, a, sz);
        if (p) {
            switch (sz) {
            case 1: {
                uint8_t e = (uint8_t)acc;
                eq = __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)src, false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
                old = e;
                break;
            }
            case 2: {
                uint16_t e = (uint16_t)acc;
                eq = __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)src, false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
                old = e;
                break;
            }
            case 4: {
                uint32_t e = (uint32_t)acc;
                eq = __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)src, false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
                old = e;
                break;
            }
            default: {
                uint64_t e = acc;
                eq = __atomic_compare_exchange_n((uint64_t *)p, &e, src, false, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_SEQ_CST);
                old = e;
                break;
            }
            }
        } else {
            old = hvp_rdn(cpu, a, sz);
            eq = old == acc;
            hvp_wrn(cpu, a, sz, eq ? src : old);
        }
    } else {
        old = hvp_reg_rd(cpu, d->r0, sz);
        eq = old == acc;
        if (eq) hvp_reg_wr(cpu, d->r0, sz, src);
    }
    alu(cpu, K_CMP, sz, acc, old);
    if (!eq) hvp_reg_wr(cpu, 0, sz, old);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_xadd)
{
    unsigned sz = d->osz;
    uint64_t src = hvp_reg_rd(cpu, d->r1, sz), old;
    if (d->fl & HVP_DF_M0) {
        uint64_t a = hvp_ea(cpu, d);
        void *p = hvp_rmw_ptr(cpu, a, sz);
        if (p) {
            switch (sz) {
            case 1: old = __atomic_fetch_add((uint8_t *)p, (uint8_t)src, __ATOMIC_SEQ_CST); break;
            case 2: old = __atomic_fetch_add((uint16_t *)p, (uint16_t)src, __ATOMIC_SEQ_CST); break;
            case 4: old = __atomic_fetch_add((uint32_t *)p, (uint32_t)src, __ATOMIC_SEQ_CST); break;
            default: old = __atomic_fetch_add((uint64_t *)p, src, __ATOMIC_SEQ_CST); break;
            }
        } else {
            old = hvp_rdn(cpu, a, sz);
            hvp_wrn(cpu, a, sz, old + src);
        }
        hvp_reg_wr(cpu, d->r1, sz, old);
        alu(cpu, K_ADD, sz, old, src);
    } else {
        old = hvp_reg_rd(cpu, d->r0, sz);
        uint64_t r = alu(cpu, K_ADD, sz, old, src);
        hvp_reg_wr(cpu, d->r1, sz, old);
        hvp_reg_wr(cpu, d->r0, sz, r);
    }
    return NEXT(cpu, d);
}

/* CMPXCHG8B (osz 4) / CMPXCHG16B (osz 8) */
HVP_HANDLER(h_cmpxchg_wide)
{
    uint64_t a = hvp_ea(cpu, d);
    bool eq;
    if (d->osz == 8) {
        if (a & 15) hvp_raise_gp0(cpu);
        uint64_t *p = hvp_rmw_ptr(cpu, a, 16);
        uint64_t lo = cpu->gpr[0], hi = cpu->gpr[2];
        unsigned char z;
        __asm__ volatile("lock cmpxchg16b %1\n\tsete %0"
                         : "=q"(z), "+m"(*(volatile unsigned __int128 *)p), "+a"(lo), "+d"(hi)
                         : "b"(cpu->gpr[3]), "c"(cpu->gpr[1])
                         : "memory", "cc");
        eq = z;
        if (!eq) {
            cpu->gpr[0] = lo;
            cpu->gpr[2] = hi;
        }
    } else {
        uint64_t *p = hvp_rmw_ptr(cpu, a, 8);
        uint64_t e = ((cpu->gpr[2] & 0xffffffff) << 32) | (uint32_t)cpu->gpr[0];
        uint64_t n = ((cpu->gpr[1] & 0xffffffff) << 32) | (uint32_t)cpu->gpr[3];
        if (p) {
            eq = __atomic_compare_exchange_n(p, &e, n, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        } else {
            uint64_t o = hvp_rd64(cpu, a);
            eq = o == e;
            hvp_wr64(cpu, a, eq ? n : o);
            e = o;
        }
        if (!eq) {
            cpu->gpr[0] = (uint32_t)e;
            cpu->gpr[2] = e >> 32;
        }
    }
    hvp_flags_materialize(cpu);
    set_flag(cpu, HVP_ZF, eq);
    return NEXT(cpu, d);
}

/* ---- string instructions ---- */

/* aux: 0 movs 1 stos 2 lods 3 cmps 4 scas; osz = element size */
static inline uint64_t str_reg(struct hvp_cpu *cpu, unsigned r, unsigned asz)
{
    return asz == 8 ? cpu->gpr[r] : cpu->gpr[r] & M(asz);
}
static inline void str_set(struct hvp_cpu *cpu, unsigned r, unsigned asz, uint64_t v)
{
    hvp_reg_wr(cpu, r, asz, v);
}

#define REP_CHUNK 65536

/* 16/32-bit modes: DS:SI (or the override) and ES:DI through their
 * segments' checks */
#define SRC(si)                                                                                    \
    ((d->seg & HVP_SEG_LEGACY) ? hvp_seg_lin(cpu, d->seg & 7, si, sz, false) : (si) + sbase)
#define DST(di, w) ((d->seg & HVP_SEG_LEGACY) ? hvp_seg_lin(cpu, HVP_SEG_ES, di, sz, w) : (di))

HVP_HANDLER(h_string)
{
    unsigned sz = d->osz, asz = d->asz, k = d->aux;
    bool rep = d->fl & (HVP_DF_REP | HVP_DF_REPNE);
    int64_t step = (hvp_flags_get(cpu) & HVP_DFLAG) ? -(int64_t)sz : (int64_t)sz;
    uint64_t sbase = (d->seg & ~HVP_SEG_LEGACY) ? (d->seg == HVP_SEG_FS ? cpu->fs_base : cpu->gs_base) : 0;
    uint64_t n = rep ? str_reg(cpu, 1, asz) : 1;
    if (rep && n == 0) return NEXT(cpu, d);
    /* fast path: forward REP MOVS/STOS inside pages */
    for (unsigned iter = 0;; iter++) {
        uint64_t si = str_reg(cpu, 6, asz), di = str_reg(cpu, 7, asz);
        if (rep && step > 0 && (k == 0 || k == 1) && asz == 8 && n > 1) {
            uint64_t src = si + sbase;
            uint64_t room = (0x1000 - (di & 0xfff)) / sz;
            if (k == 0) {
                uint64_t r2 = (0x1000 - (src & 0xfff)) / sz;
                room = r2 < room ? r2 : room;
            }
            if (room > n) room = n;
            /* both pages must be in the TLB already: the element path below
             * fills them (MMIO and watched pages never are) */
            if (room > 1 && hvp_tlb(cpu, di)->tag_w == (di & HVP_PAGE_MASK) &&
                (k != 0 || hvp_tlb(cpu, src)->tag_r == (src & HVP_PAGE_MASK))) {
                uint8_t *dp = hvp_rmw_ptr(cpu, di, (unsigned)(room * sz));
                /* filling di's entry may have evicted src's */
                if (dp && k == 0 && hvp_tlb(cpu, src)->tag_r != (src & HVP_PAGE_MASK)) dp = NULL;
                if (dp) {
                    uint64_t bytes = room * sz;
                    if (k == 0) {
                        const uint8_t *sp;
                        struct hvp_tlb_ent *e = hvp_tlb(cpu, src);
                        sp = (const uint8_t *)(uintptr_t)(src + e->addend);
                        if (dp > sp && dp < sp + bytes) {
                            /* overlap: element by element, each read whole
                             * before it is written (as the iterated form) */
                            for (uint64_t i = 0; i < bytes; i += sz) {
                                uint64_t e;
                                memcpy(&e, sp + i, sz);
                                memcpy(dp + i, &e, sz);
                            }
                        } else {
                            memmove(dp, sp, bytes);
                        }
                        str_set(cpu, 6, asz, si + bytes);
                    } else {
                        uint64_t v = cpu->gpr[0];
                        switch (sz) {
                        case 1: memset(dp, (int)(v & 0xff), bytes); break;
                        default:
                            for (uint64_t i = 0; i < bytes; i += sz)
                                memcpy(dp + i, &v, sz);
                            break;
                        }
                    }
                    str_set(cpu, 7, asz, di + bytes);
                    n -= room;
                    str_set(cpu, 1, asz, n);
                    if (n == 0) return NEXT(cpu, d);
                    goto yield_check;
                }
            }
        }
        {
            uint64_t v;
            bool stop = false;
            switch (k) {
            case 0:
                v = hvp_rdn(cpu, SRC(si), sz);
                hvp_wrn(cpu, DST(di, true), sz, v);
                str_set(cpu, 6, asz, si + (uint64_t)step);
                str_set(cpu, 7, asz, di + (uint64_t)step);
                break;
            case 1:
                hvp_wrn(cpu, DST(di, true), sz, cpu->gpr[0]);
                str_set(cpu, 7, asz, di + (uint64_t)step);
                break;
            case 2:
                v = hvp_rdn(cpu, SRC(si), sz);
                hvp_reg_wr(cpu, 0, sz == 4 ? 4 : sz, v);
                str_set(cpu, 6, asz, si + (uint64_t)step);
                break;
            case 3: {
                uint64_t x = hvp_rdn(cpu, SRC(si), sz), y = hvp_rdn(cpu, DST(di, false), sz);
                alu(cpu, K_CMP, sz, x, y);
                str_set(cpu, 6, asz, si + (uint64_t)step);
                str_set(cpu, 7, asz, di + (uint64_t)step);
                stop = (d->fl & HVP_DF_REP) ? x != y : x == y;
                break;
            }
            default: {
                uint64_t y = hvp_rdn(cpu, DST(di, false), sz);
                alu(cpu, K_CMP, sz, cpu->gpr[0] & M(sz), y);
                str_set(cpu, 7, asz, di + (uint64_t)step);
                stop =
                    (d->fl & HVP_DF_REP) ? (cpu->gpr[0] & M(sz)) != y : (cpu->gpr[0] & M(sz)) == y;
                break;
            }
            }
            if (!rep) return NEXT(cpu, d);
            n--;
            str_set(cpu, 1, asz, n);
            if (n == 0 || (stop && k >= 3)) return NEXT(cpu, d);
        }
    yield_check:
        if (unlikely(iter >= REP_CHUNK)) {
            /* let the run loop look at events and the budget; the
             * instruction restarts where it stopped */
            if (atomic_load_explicit(&cpu->async, memory_order_relaxed)) return NULL;
            iter = 0;
        }
    }
}

/* ---- BMI1 / BMI2 / ADX (VEX forms: dest, src1 (vvvv or r/m), src2) ---- */

static uint64_t pdep(uint64_t src, uint64_t mask)
{
    uint64_t r = 0;
    for (uint64_t bb = 1; mask; bb <<= 1) {
        if (src & bb) r |= mask & -mask;
        mask &= mask - 1;
    }
    return r;
}
static uint64_t pext(uint64_t src, uint64_t mask)
{
    uint64_t r = 0;
    for (uint64_t bb = 1; mask; bb <<= 1) {
        if (src & mask & -mask) r |= bb;
        mask &= mask - 1;
    }
    return r;
}

static void logic_flags(struct hvp_cpu *cpu, unsigned sz, uint64_t r)
{
    hvp_lf(cpu, HVP_LF_LOGIC, sz, 0, 0, r & M(sz));
    cpu->lf_cin = 0;
}

HVP_HANDLER(h_bmi)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned sz = d->osz, bits = sz * 8;
    uint64_t m = M(sz), r = 0;
    switch (xi->op) {
    case HVP_X86_OP_ANDN: {
        uint64_t a = xop_rd(cpu, d, 1), b = xop_rd(cpu, d, 2);
        r = ~a & b & m;
        logic_flags(cpu, sz, r);
        break;
    }
    case HVP_X86_OP_BEXTR: {
        uint64_t a = xop_rd(cpu, d, 1), c = xop_rd(cpu, d, 2);
        unsigned start = c & 0xff, len = (c >> 8) & 0xff;
        r = start < bits ? a >> start : 0;
        if (len < 64) r &= ((uint64_t)1 << len) - 1;
        r &= m;
        logic_flags(cpu, sz, r);
        break;
    }
    case HVP_X86_OP_BLSI:
    case HVP_X86_OP_BLSMSK:
    case HVP_X86_OP_BLSR: {
        uint64_t a = xop_rd(cpu, d, 1);
        r = xi->op == HVP_X86_OP_BLSI     ? (a & -a)
            : xi->op == HVP_X86_OP_BLSMSK ? (a ^ (a - 1))
                                          : (a & (a - 1));
        r &= m;
        hvp_flags_materialize(cpu);
        uint64_t f = cpu->rflags & ~(uint64_t)HVP_ARITH;
        bool cf = xi->op == HVP_X86_OP_BLSI ? a != 0 : a == 0;
        f |= cf ? HVP_CF : 0;
        f |= (xi->op != HVP_X86_OP_BLSMSK && r == 0) ? HVP_ZF : 0;
        f |= (r >> (bits - 1)) & 1 ? HVP_SF : 0;
        cpu->rflags = f;
        break;
    }
    case HVP_X86_OP_BZHI: {
        uint64_t a = xop_rd(cpu, d, 1);
        unsigned n = (unsigned)xop_rd(cpu, d, 2) & 0xff;
        r = n < bits ? a & (((uint64_t)1 << n) - 1) : a;
        hvp_flags_materialize(cpu);
        uint64_t f = cpu->rflags & ~(uint64_t)HVP_ARITH;
        f |= n > bits - 1 ? HVP_CF : 0;
        f |= r == 0 ? HVP_ZF : 0;
        f |= (r >> (bits - 1)) & 1 ? HVP_SF : 0;
        cpu->rflags = f;
        break;
    }
    case HVP_X86_OP_PDEP: r = pdep(xop_rd(cpu, d, 1), xop_rd(cpu, d, 2)) & m; break;
    case HVP_X86_OP_PEXT: r = pext(xop_rd(cpu, d, 1), xop_rd(cpu, d, 2)) & m; break;
    case HVP_X86_OP_MULX: {
        /* mulx hi, lo, src: rdx * src; lo written first, hi wins if equal */
        uint64_t a = cpu->gpr[2] & m, b = xop_rd(cpu, d, 2);
        unsigned __int128 p = (unsigned __int128)a * b;
        xop_wr(cpu, d, 1, (uint64_t)p & m);
        r = (uint64_t)(p >> bits) & m;
        break;
    }
    case HVP_X86_OP_RORX: {
        uint64_t a = xop_rd(cpu, d, 1);
        unsigned c = (unsigned)xi->imm & (bits - 1);
        r = c ? ((a >> c) | (a << (bits - c))) & m : a;
        break;
    }
    case HVP_X86_OP_SARX:
    case HVP_X86_OP_SHLX:
    case HVP_X86_OP_SHRX: {
        uint64_t a = xop_rd(cpu, d, 1);
        unsigned c = (unsigned)xop_rd(cpu, d, 2) & (bits - 1);
        if (xi->op == HVP_X86_OP_SHLX)
            r = (a << c) & m;
        else if (xi->op == HVP_X86_OP_SHRX)
            r = a >> c;
        else
            r = (uint64_t)(((int64_t)(a << (64 - bits)) >> (64 - bits)) >> c) & m;
        break;
    }
    default: hvp_raise_ud(cpu);
    }
    xop_wr(cpu, d, 0, r);
    return NEXT(cpu, d);
}

/* ADCX (aux 0: CF) / ADOX (aux 1: OF) */
HVP_HANDLER(h_adx)
{
    unsigned sz = d->osz;
    uint64_t m = M(sz);
    uint64_t b =
        (d->fl & HVP_DF_M1) ? hvp_rdn(cpu, hvp_ea(cpu, d), sz) : hvp_reg_rd(cpu, d->r1, sz);
    uint64_t a = hvp_reg_rd(cpu, d->r0, sz);
    hvp_flags_materialize(cpu);
    uint64_t fb = d->aux ? HVP_OF : HVP_CF;
    unsigned c = !!(cpu->rflags & fb);
    unsigned __int128 s = (unsigned __int128)a + b + c;
    uint64_t r = (uint64_t)s & m;
    bool co = (s >> (sz * 8)) != 0;
    set_flag(cpu, fb, co);
    hvp_reg_wr(cpu, d->r0, sz, r);
    return NEXT(cpu, d);
}

/* ---- the builder ---- */

static int cc_of(const struct hvp_x86_insn *xi)
{
    return xi->opcode & 15;
}

int hvp_cpu_build(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    int k = HVP_B_NONE;
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) {
        /* segmentation-dependent forms (cpu_seg.c), then privileged ones (cpu_sys.c) */
        k = hvp_cpu_build_seg(cpu, xi, d);
        if (k == HVP_B_NONE) {
            memset(d, 0, sizeof *d);
            k = hvp_cpu_build_sys(cpu, xi, d);
        }
        if (k == HVP_B_NONE) memset(d, 0, sizeof *d);
    }
    if (k == HVP_B_NONE) k = hvp_cpu_build_int(cpu, xi, d);
    if (k == HVP_B_NONE) {
        memset(d, 0, sizeof *d);
        k = hvp_cpu_build_sse(cpu, xi, d);
    }
    if (k == HVP_B_NONE) {
        memset(d, 0, sizeof *d);
        k = hvp_cpu_build_x87(cpu, xi, d);
    }
    return k;
}

static bool is_gpr_op(const struct hvp_x86_insn *xi, unsigned k)
{
    return xi->ops[k].kind == HVP_X86_OPK_REG && hvp_gpr_code(xi->ops[k].reg) != 0xff;
}

static bool plain_bd(const struct hvp_dinsn *d)
{
    return d->base < 16 && d->index == HVP_EA_NONE && !(d->fl & HVP_DF_EAX);
}

int hvp_cpu_build_int(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY && xi->enc != HVP_X86_ENC_VEX) return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    bool lock = d->fl & HVP_DF_LOCK;
    if (lock && (!(xi->flags & HVP_X86_F_LOCKABLE) || !(xi->flags & HVP_X86_F_MEM))) {
        d->fn = h_ud;
        return HVP_B_END;
    }
    unsigned op = xi->op;
    unsigned sz0 = xi->nops ? xi->ops[0].size : xi->opsize;
    if (xi->enc == HVP_X86_ENC_VEX) {
        switch (op) {
        case HVP_X86_OP_ANDN:
        case HVP_X86_OP_BEXTR:
        case HVP_X86_OP_BLSI:
        case HVP_X86_OP_BLSMSK:
        case HVP_X86_OP_BLSR:
        case HVP_X86_OP_BZHI:
        case HVP_X86_OP_MULX:
        case HVP_X86_OP_PDEP:
        case HVP_X86_OP_PEXT:
        case HVP_X86_OP_RORX:
        case HVP_X86_OP_SARX:
        case HVP_X86_OP_SHLX:
        case HVP_X86_OP_SHRX:
            d->osz = (uint8_t)sz0;
            d->fn = h_bmi;
            return HVP_B_OK;
        default: return HVP_B_NONE;
        }
    }
    if (xi->flags & HVP_X86_F_PRIV) {
        d->fn = h_gp;
        return HVP_B_END;
    }
    switch (op) {
    case HVP_X86_OP_ADD:
    case HVP_X86_OP_OR:
    case HVP_X86_OP_ADC:
    case HVP_X86_OP_SBB:
    case HVP_X86_OP_AND:
    case HVP_X86_OP_SUB:
    case HVP_X86_OP_XOR:
    case HVP_X86_OP_CMP:
    case HVP_X86_OP_TEST: {
        unsigned kk = op == HVP_X86_OP_ADD   ? K_ADD
                      : op == HVP_X86_OP_OR  ? K_OR
                      : op == HVP_X86_OP_ADC ? K_ADC
                      : op == HVP_X86_OP_SBB ? K_SBB
                      : op == HVP_X86_OP_AND ? K_AND
                      : op == HVP_X86_OP_SUB ? K_SUB
                      : op == HVP_X86_OP_XOR ? K_XOR
                      : op == HVP_X86_OP_CMP ? K_CMP
                                             : K_TEST;
        d->osz = (uint8_t)sz0;
        d->aux = (uint8_t)kk;
        if (d->fl & HVP_DF_IMM) d->imm &= (int64_t)M(sz0);
        if (d->fl & HVP_DF_M0)
            d->fn = lock ? h_alu_lock : alu_tab[kk][9];
        else if (d->fl & HVP_DF_M1)
            d->fn = alu_tab[kk][8];
        else if (d->fl & HVP_DF_IMM)
            d->fn = alu_tab[kk][4 + szi(sz0)];
        else
            d->fn = alu_tab[kk][szi(sz0)];
        return HVP_B_OK;
    }
    case HVP_X86_OP_INC:
    case HVP_X86_OP_DEC:
    case HVP_X86_OP_NEG:
    case HVP_X86_OP_NOT:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_INC   ? U_INC
                 : op == HVP_X86_OP_DEC ? U_DEC
                 : op == HVP_X86_OP_NEG ? U_NEG
                                        : U_NOT;
        if (d->fl & HVP_DF_M0)
            d->fn = h_unary_m;
        else
            d->fn = op == HVP_X86_OP_INC && sz0 == 8   ? h_inc64_r
                    : op == HVP_X86_OP_DEC && sz0 == 8 ? h_dec64_r
                    : op == HVP_X86_OP_INC && sz0 == 4 ? h_inc32_r
                    : op == HVP_X86_OP_DEC && sz0 == 4 ? h_dec32_r
                                                       : h_unary_r;
        return HVP_B_OK;
    case HVP_X86_OP_MOV:
        if (!is_gpr_op(xi, 0) && !(d->fl & HVP_DF_M0))
            return HVP_B_NONE; /* control/debug/segment registers */
        if (xi->nops > 1 && xi->ops[1].kind == HVP_X86_OPK_REG && !is_gpr_op(xi, 1))
            return HVP_B_NONE;
        d->osz = (uint8_t)sz0;
        if (d->fl & HVP_DF_M0) {
            if (d->fl & HVP_DF_IMM) {
                d->imm &= (int64_t)M(sz0);
                d->fn = h_mov_mi;
            } else {
                d->fn = h_mov_mr;
                if (plain_bd(d) && sz0 == 8)
                    d->fn = h_st64_bd;
                else if (plain_bd(d) && sz0 == 4)
                    d->fn = h_st32_bd;
            }
        } else if (d->fl & HVP_DF_M1) {
            d->fn = h_mov_rm;
            if (plain_bd(d) && sz0 == 8)
                d->fn = h_ld64_bd;
            else if (plain_bd(d) && sz0 == 4)
                d->fn = h_ld32_bd;
        } else if (d->fl & HVP_DF_IMM) {
            d->imm &= (int64_t)M(sz0);
            d->fn = sz0 >= 4 ? h_mov_ri64 : h_mov_ri; /* 32-bit: imm is zero-extended already */
        } else {
            d->fn = sz0 == 8 ? h_mov_rr64 : sz0 == 4 ? h_mov_rr32 : h_mov_rr;
        }
        return HVP_B_OK;
    case HVP_X86_OP_MOVZX:
    case HVP_X86_OP_MOVSX:
    case HVP_X86_OP_MOVSXD:
        d->osz = (uint8_t)sz0;
        d->aux = (uint8_t)xi->ops[1].size;
        if (op != HVP_X86_OP_MOVZX) d->fl |= HVP_DF_SX;
        d->fn = h_movx;
        return HVP_B_OK;
    case HVP_X86_OP_MOVNTI:
        if (!(d->fl & HVP_DF_M0)) return HVP_B_NONE;
        d->osz = (uint8_t)sz0;
        d->fn = h_mov_mr;
        return HVP_B_OK;
    case HVP_X86_OP_LEA:
        d->osz = (uint8_t)sz0;
        d->seg = 0;
        d->fn = (plain_bd(d) && sz0 == 8) ? h_lea64_bd : h_lea;
        return HVP_B_OK;
    case HVP_X86_OP_XCHG:
        d->osz = (uint8_t)sz0;
        if (d->fl & HVP_DF_M0) {
            d->aux = d->r1;
            d->fn = h_xchg_m;
        } else if (d->fl & HVP_DF_M1) {
            d->aux = d->r0;
            d->fn = h_xchg_m;
        } else {
            d->fn = h_xchg_rr;
        }
        return HVP_B_OK;
    case HVP_X86_OP_NOP:
    case HVP_X86_OP_PAUSE:
    case HVP_X86_OP_ENDBR64:
    case HVP_X86_OP_ENDBR32:
    case HVP_X86_OP_PREFETCH:
    case HVP_X86_OP_PREFETCHW:
    case HVP_X86_OP_PREFETCHNTA:
    case HVP_X86_OP_PREFETCHT0:
    case HVP_X86_OP_PREFETCHT1:
    case HVP_X86_OP_PREFETCHT2: d->fn = h_nop; return HVP_B_OK;
    case HVP_X86_OP_LFENCE:
    case HVP_X86_OP_SFENCE:
    case HVP_X86_OP_MFENCE: d->fn = h_fence; return HVP_B_OK;
    case HVP_X86_OP_PUSH:
        if (xi->ops[0].kind == HVP_X86_OPK_REG && !is_gpr_op(xi, 0))
            return HVP_B_NONE; /* push fs/gs */
        d->osz = (uint8_t)xi->opsize;
        if (xi->ops[0].kind == HVP_X86_OPK_IMM) {
            d->fl |= HVP_DF_IMM;
            d->imm = xi->imm;
        }
        d->fn = (d->osz == 8 && xi->ops[0].kind == HVP_X86_OPK_REG) ? h_push_r64 : h_push;
        return HVP_B_OK;
    case HVP_X86_OP_POP:
        if (xi->ops[0].kind == HVP_X86_OPK_REG && !is_gpr_op(xi, 0)) return HVP_B_NONE;
        d->osz = (uint8_t)xi->opsize;
        d->fn = (d->osz == 8 && xi->ops[0].kind == HVP_X86_OPK_REG) ? h_pop_r64 : h_pop;
        return HVP_B_OK;
    case HVP_X86_OP_LEAVE:
        d->osz = (uint8_t)xi->opsize;
        d->fn = h_leave;
        return HVP_B_OK;
    case HVP_X86_OP_ENTER:
        d->osz = (uint8_t)xi->opsize;
        d->fn = h_enter;
        return HVP_B_OK;
    case HVP_X86_OP_JMP:
        if (xi->ops[0].kind == HVP_X86_OPK_REL) {
            d->fn = h_jmp;
        } else if (xi->ops[0].kind == HVP_X86_OPK_FAR || xi->ops[0].size != 8) {
            return HVP_B_NONE; /* far jumps: part 2 */
        } else {
            d->fn = h_jmp_ind;
        }
        return HVP_B_END;
    case HVP_X86_OP_CALL:
        if (xi->ops[0].kind == HVP_X86_OPK_REL)
            d->fn = h_call;
        else if (xi->ops[0].kind == HVP_X86_OPK_FAR || xi->ops[0].size != 8)
            return HVP_B_NONE;
        else
            d->fn = h_call_ind;
        return HVP_B_END;
    case HVP_X86_OP_RET:
        if (xi->opsize != 8) return HVP_B_NONE;
        d->imm = xi->nops ? (xi->imm & 0xffff) : 0;
        d->fn = h_ret;
        return HVP_B_END;
    case HVP_X86_OP_JO:
    case HVP_X86_OP_JNO:
    case HVP_X86_OP_JB:
    case HVP_X86_OP_JNB:
    case HVP_X86_OP_JZ:
    case HVP_X86_OP_JNZ:
    case HVP_X86_OP_JBE:
    case HVP_X86_OP_JNBE:
    case HVP_X86_OP_JS:
    case HVP_X86_OP_JNS:
    case HVP_X86_OP_JP:
    case HVP_X86_OP_JNP:
    case HVP_X86_OP_JL:
    case HVP_X86_OP_JNL:
    case HVP_X86_OP_JLE:
    case HVP_X86_OP_JNLE:
        d->aux = (uint8_t)cc_of(xi);
        d->fn = jcc_tab[d->aux];
        return HVP_B_SIDE;
    case HVP_X86_OP_LOOP:
    case HVP_X86_OP_LOOPE:
    case HVP_X86_OP_LOOPNE:
    case HVP_X86_OP_JRCXZ:
    case HVP_X86_OP_JECXZ:
        d->aux = op == HVP_X86_OP_LOOP     ? 0
                 : op == HVP_X86_OP_LOOPE  ? 1
                 : op == HVP_X86_OP_LOOPNE ? 2
                                           : 3;
        d->fn = h_loop;
        return HVP_B_END;
    case HVP_X86_OP_SETO:
    case HVP_X86_OP_SETNO:
    case HVP_X86_OP_SETB:
    case HVP_X86_OP_SETNB:
    case HVP_X86_OP_SETZ:
    case HVP_X86_OP_SETNZ:
    case HVP_X86_OP_SETBE:
    case HVP_X86_OP_SETNBE:
    case HVP_X86_OP_SETS:
    case HVP_X86_OP_SETNS:
    case HVP_X86_OP_SETP:
    case HVP_X86_OP_SETNP:
    case HVP_X86_OP_SETL:
    case HVP_X86_OP_SETNL:
    case HVP_X86_OP_SETLE:
    case HVP_X86_OP_SETNLE:
        d->aux = (uint8_t)cc_of(xi);
        d->fn = h_setcc;
        return HVP_B_OK;
    case HVP_X86_OP_CMOVO:
    case HVP_X86_OP_CMOVNO:
    case HVP_X86_OP_CMOVB:
    case HVP_X86_OP_CMOVNB:
    case HVP_X86_OP_CMOVZ:
    case HVP_X86_OP_CMOVNZ:
    case HVP_X86_OP_CMOVBE:
    case HVP_X86_OP_CMOVNBE:
    case HVP_X86_OP_CMOVS:
    case HVP_X86_OP_CMOVNS:
    case HVP_X86_OP_CMOVP:
    case HVP_X86_OP_CMOVNP:
    case HVP_X86_OP_CMOVL:
    case HVP_X86_OP_CMOVNL:
    case HVP_X86_OP_CMOVLE:
    case HVP_X86_OP_CMOVNLE:
        d->osz = (uint8_t)sz0;
        d->aux = (uint8_t)cc_of(xi);
        d->fn = h_cmov;
        return HVP_B_OK;
    case HVP_X86_OP_SYSCALL: d->fn = h_syscall; return HVP_B_END;
    case HVP_X86_OP_UD0:
    case HVP_X86_OP_UD1:
    case HVP_X86_OP_UD2: d->fn = h_ud; return HVP_B_END;
    case HVP_X86_OP_INT3: d->fn = h_int3; return HVP_B_END;
    case HVP_X86_OP_INT1: d->fn = h_int1; return HVP_B_END;
    case HVP_X86_OP_INT:
        d->imm = xi->imm;
        d->fn = h_intn;
        return HVP_B_END;
    case HVP_X86_OP_HLT:
    case HVP_X86_OP_CLI:
    case HVP_X86_OP_STI:
    case HVP_X86_OP_IN:
    case HVP_X86_OP_OUT:
    case HVP_X86_OP_INSB:
    case HVP_X86_OP_INSW:
    case HVP_X86_OP_INSD:
    case HVP_X86_OP_OUTSB:
    case HVP_X86_OP_OUTSW:
    case HVP_X86_OP_OUTSD:
        d->fn = h_gp; /* CPL 3, IOPL 0 */
        return HVP_B_END;
    case HVP_X86_OP_CPUID: d->fn = h_cpuid; return HVP_B_OK;
    case HVP_X86_OP_RDTSC:
    case HVP_X86_OP_RDTSCP:
        d->aux = op == HVP_X86_OP_RDTSCP;
        d->fn = h_rdtsc;
        return HVP_B_OK;
    case HVP_X86_OP_CLC:
    case HVP_X86_OP_STC:
    case HVP_X86_OP_CMC:
    case HVP_X86_OP_CLD:
    case HVP_X86_OP_STD:
    case HVP_X86_OP_LAHF:
    case HVP_X86_OP_SAHF:
        d->aux = op == HVP_X86_OP_CLC    ? 0
                 : op == HVP_X86_OP_STC  ? 1
                 : op == HVP_X86_OP_CMC  ? 2
                 : op == HVP_X86_OP_CLD  ? 3
                 : op == HVP_X86_OP_STD  ? 4
                 : op == HVP_X86_OP_LAHF ? 5
                                         : 6;
        d->fn = h_flagop;
        return HVP_B_OK;
    case HVP_X86_OP_PUSHF:
    case HVP_X86_OP_PUSHFQ:
        d->osz = (uint8_t)xi->opsize;
        d->fn = h_pushf;
        return HVP_B_OK;
    case HVP_X86_OP_POPF:
    case HVP_X86_OP_POPFQ:
        d->osz = (uint8_t)xi->opsize;
        d->fn = h_popf;
        return HVP_B_OK;
    case HVP_X86_OP_CBW:
    case HVP_X86_OP_CWDE:
    case HVP_X86_OP_CDQE:
        d->aux = 0;
        d->fn = h_cext;
        return HVP_B_OK;
    case HVP_X86_OP_CWD:
    case HVP_X86_OP_CDQ:
    case HVP_X86_OP_CQO:
        d->aux = 1;
        d->fn = h_cext;
        return HVP_B_OK;
    case HVP_X86_OP_XLAT:
        if (xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_FS ||
            xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_GS)
            d->seg = (uint8_t)(xi->mem.seg - HVP_X86_REG_ES);
        d->fn = h_xlat;
        return HVP_B_OK;
    case HVP_X86_OP_BSWAP:
        d->osz = (uint8_t)sz0;
        d->fn = h_bswap;
        return HVP_B_OK;
    case HVP_X86_OP_MOVBE:
        d->osz = (uint8_t)sz0;
        d->fn = h_movbe;
        return HVP_B_OK;
    case HVP_X86_OP_ROL:
    case HVP_X86_OP_ROR:
    case HVP_X86_OP_RCL:
    case HVP_X86_OP_RCR:
    case HVP_X86_OP_SHL:
    case HVP_X86_OP_SHR:
    case HVP_X86_OP_SAR:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_ROL   ? S_ROL
                 : op == HVP_X86_OP_ROR ? S_ROR
                 : op == HVP_X86_OP_RCL ? S_RCL
                 : op == HVP_X86_OP_RCR ? S_RCR
                 : op == HVP_X86_OP_SHL ? S_SHL
                 : op == HVP_X86_OP_SHR ? S_SHR
                                        : S_SAR;
        if (xi->ops[1].kind == HVP_X86_OPK_IMM) {
            d->fl |= HVP_DF_IMM;
            d->imm = xi->imm & 0xff;
        } else {
            d->fl &= (uint16_t)~HVP_DF_IMM;
        }
        d->fn = h_shift;
        return HVP_B_OK;
    case HVP_X86_OP_SHLD:
    case HVP_X86_OP_SHRD:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_SHRD;
        d->fn = h_shd;
        return HVP_B_OK;
    case HVP_X86_OP_MUL:
    case HVP_X86_OP_DIV:
    case HVP_X86_OP_IDIV:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_MUL ? 0 : op == HVP_X86_OP_DIV ? 2 : 3;
        d->fn = h_muldiv;
        return HVP_B_OK;
    case HVP_X86_OP_IMUL:
        d->osz = (uint8_t)sz0;
        if (xi->nops == 1) {
            d->aux = 1;
            d->fn = h_muldiv;
        } else {
            if (xi->nops == 3) d->imm = (xi->ops[2].index ? xi->imm2 : xi->imm);
            d->fn = h_imul2;
        }
        return HVP_B_OK;
    case HVP_X86_OP_BT:
    case HVP_X86_OP_BTS:
    case HVP_X86_OP_BTR:
    case HVP_X86_OP_BTC:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_BT ? 0 : op == HVP_X86_OP_BTS ? 1 : op == HVP_X86_OP_BTR ? 2 : 3;
        if (op == HVP_X86_OP_BT && lock) {
            d->fn = h_ud;
            return HVP_B_END;
        }
        d->fn = h_bt;
        return HVP_B_OK;
    case HVP_X86_OP_BSF:
    case HVP_X86_OP_BSR:
    case HVP_X86_OP_TZCNT:
    case HVP_X86_OP_LZCNT:
    case HVP_X86_OP_POPCNT:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_BSF     ? 0
                 : op == HVP_X86_OP_BSR   ? 1
                 : op == HVP_X86_OP_TZCNT ? 2
                 : op == HVP_X86_OP_LZCNT ? 3
                                          : 4;
        d->fn = h_bitscan;
        return HVP_B_OK;
    case HVP_X86_OP_CMPXCHG:
        d->osz = (uint8_t)sz0;
        d->fn = h_cmpxchg;
        return HVP_B_OK;
    case HVP_X86_OP_XADD:
        d->osz = (uint8_t)sz0;
        d->fn = h_xadd;
        return HVP_B_OK;
    case HVP_X86_OP_CMPXCHG8B:
        d->osz = 4;
        d->fn = h_cmpxchg_wide;
        return HVP_B_OK;
    case HVP_X86_OP_CMPXCHG16B:
        d->osz = 8;
        d->fn = h_cmpxchg_wide;
        return HVP_B_OK;
    case HVP_X86_OP_ADCX:
    case HVP_X86_OP_ADOX:
        d->osz = (uint8_t)sz0;
        d->aux = op == HVP_X86_OP_ADOX;
        d->fn = h_adx;
        return HVP_B_OK;
    case HVP_X86_OP_MOVSB:
    case HVP_X86_OP_MOVSW:
    case HVP_X86_OP_MOVSD:
    case HVP_X86_OP_MOVSQ:
    case HVP_X86_OP_STOSB:
    case HVP_X86_OP_STOSW:
    case HVP_X86_OP_STOSD:
    case HVP_X86_OP_STOSQ:
    case HVP_X86_OP_LODSB:
    case HVP_X86_OP_LODSW:
    case HVP_X86_OP_LODSD:
    case HVP_X86_OP_LODSQ:
    case HVP_X86_OP_CMPSB:
    case HVP_X86_OP_CMPSW:
    case HVP_X86_OP_CMPSD:
    case HVP_X86_OP_CMPSQ:
    case HVP_X86_OP_SCASB:
    case HVP_X86_OP_SCASW:
    case HVP_X86_OP_SCASD:
    case HVP_X86_OP_SCASQ: {
        static const uint8_t kind_of[] = {0, 1, 2, 3, 4};
        unsigned kk = (op >= HVP_X86_OP_MOVSB && op <= HVP_X86_OP_MOVSQ)   ? 0
                      : (op >= HVP_X86_OP_STOSB && op <= HVP_X86_OP_STOSQ) ? 1
                      : (op >= HVP_X86_OP_LODSB && op <= HVP_X86_OP_LODSQ) ? 2
                      : (op >= HVP_X86_OP_CMPSB && op <= HVP_X86_OP_CMPSQ) ? 3
                                                                           : 4;
        d->aux = kind_of[kk];
        d->osz = (op == HVP_X86_OP_MOVSB || op == HVP_X86_OP_STOSB || op == HVP_X86_OP_LODSB ||
                  op == HVP_X86_OP_CMPSB || op == HVP_X86_OP_SCASB)
                     ? 1
                 : (op == HVP_X86_OP_MOVSW || op == HVP_X86_OP_STOSW || op == HVP_X86_OP_LODSW ||
                    op == HVP_X86_OP_CMPSW || op == HVP_X86_OP_SCASW)
                     ? 2
                 : (op == HVP_X86_OP_MOVSQ || op == HVP_X86_OP_STOSQ || op == HVP_X86_OP_LODSQ ||
                    op == HVP_X86_OP_CMPSQ || op == HVP_X86_OP_SCASQ)
                     ? 8
                     : 4;
        d->seg = 0;
        if ((xi->prefixes & HVP_X86_PFX_SEG) && (xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_FS ||
                                                 xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_GS))
            d->seg = (uint8_t)(xi->mem.seg - HVP_X86_REG_ES);
        if (kk == 1 || kk == 4) d->seg = 0; /* ES:rdi only, no override */
        if (cpu->model == HVP_CPU_MODEL_SYSTEM && cpu->mode != 64)
            d->seg = (uint8_t)(HVP_SEG_LEGACY | ((xi->mem.seg - HVP_X86_REG_ES) & 7));
        d->fn = h_string;
        return HVP_B_OK;
    }
    default: return HVP_B_NONE;
    }
}
