/* x86-64 instruction decoder: prefixes, escape bytes and VEX/EVEX/XOP
 * headers are parsed here; the instruction forms come from the generated
 * decision tree in decode_tables.c (source: decode_insns.txt). */
#include "decode_tables.h"
#include "hvp/x86.h"
#include <string.h>

/* Decoder state kept in locals of one call: no allocation, no setup. */
struct dstate {
    const uint8_t *code;
    unsigned lim;  /* min(avail, 15) */
    unsigned pos;  /* next byte */
    unsigned mode; /* 16, 32, 64 */
    unsigned pcat, segov;
    unsigned rex;              /* REX bits, or VEX/EVEX equivalents: 8 W, 4 R, 2 X, 1 B */
    unsigned vex;              /* 0 legacy, 1 VEX, 2 EVEX, 3 XOP */
    unsigned vl, vvvv, rr, vx; /* EVEX R', V' */
    unsigned evb, evz, aaa;    /* EVEX broadcast/rounding, zeroing, opmask */
    int modrm;                 /* -1 = not read */
    int err;
};

#define TRUNC_OR_LONG(s) ((s)->pos >= 15 ? -HVP_X86_ETOOLONG : -HVP_X86_ETRUNCATED)

static inline int need(struct dstate *s, unsigned n)
{
    return s->pos + n <= s->lim;
}

/* Error for n more bytes that are not there. */
static inline int short_err(const struct dstate *s, unsigned n)
{
    return s->pos + n > 15 ? -HVP_X86_ETOOLONG : -HVP_X86_ETRUNCATED;
}

static inline __attribute__((always_inline)) int fetch_modrm(struct dstate *s)
{
    if (s->modrm >= 0) return 0;
    if (!need(s, 1)) return TRUNC_OR_LONG(s);
    s->modrm = s->code[s->pos++];
    return 0;
}

static inline uint64_t read_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < n; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static inline int64_t sext(uint64_t v, unsigned n)
{
    unsigned sh = 64 - 8 * n;
    return (int64_t)(v << sh) >> sh;
}

/* Reads an immediate of n bytes at s->pos. */
static inline __attribute__((always_inline)) int
read_imm(struct dstate *s, struct hvp_x86_insn *out, unsigned n, int sign, int64_t *dst)
{
    if (!need(s, n)) return short_err(s, n);
    if (!out->imm_off) out->imm_off = (uint8_t)s->pos;
    uint64_t v = read_le(s->code + s->pos, n);
    s->pos += n;
    *dst = sign ? sext(v, n) : (int64_t)v;
    return 0;
}

/* Legacy prefix classes: 1-6 segment override (ES..GS), 7 = 66, 8 = 67,
 * 9 = F0, 10 = F2, 11 = F3. */
static const uint8_t pfx_class[256] = {
    [0x26] = 1, [0x2e] = 2, [0x36] = 3, [0x3e] = 4,  [0x64] = 5,  [0x65] = 6,
    [0x66] = 7, [0x67] = 8, [0xf0] = 9, [0xf2] = 10, [0xf3] = 11,
};

/* Bytes that may start a VEX, EVEX or XOP header. */
static const uint8_t esc_vex[256] = {[0x62] = 1, [0x8f] = 1, [0xc4] = 1, [0xc5] = 1};

static const uint8_t seg_of16_base[8] = {3, 3, 2, 2, 3, 3, 2, 3}; /* bp-based use SS */

/* Decodes the ModRM memory operand (SIB, displacement) into out->mem. */
static inline __attribute__((always_inline)) int
decode_mem(struct dstate *s, struct hvp_x86_insn *out, unsigned agen, unsigned vsib, unsigned n8)
{
    unsigned mod = (unsigned)s->modrm >> 6, rm = (unsigned)s->modrm & 7;
    unsigned dispn = 0, seg = 3;
    out->flags |= HVP_X86_F_MEM;
    if (vsib && (out->addrsize == 2 || rm != 4))
        return -HVP_X86_EINVALID; /* VSIB (and AMX's MIB) needs a SIB byte */
    if (out->addrsize == 2) {
        static const uint8_t b16[8] = {3, 3, 5, 5, 6, 7, 5, 3}; /* bx bx bp bp si di bp bx */
        static const uint8_t i16[8] = {6, 7, 6, 7, 0, 0, 0, 0}; /* si di si di - - - - */
        if (mod == 0 && rm == 6) {
            dispn = 2;
        } else {
            out->mem.base = (uint8_t)(HVP_X86_REG_AX + b16[rm]);
            if (rm < 4) {
                out->mem.index = (uint8_t)(HVP_X86_REG_AX + i16[rm]);
                out->mem.scale = 1;
            }
            seg = seg_of16_base[rm];
            dispn = mod == 1 ? 1 : mod == 2 ? 2 : 0;
        }
    } else {
        unsigned gbase = out->addrsize == 8 ? HVP_X86_REG_RAX : HVP_X86_REG_EAX;
        unsigned rexb = s->rex & 1, rexx = (s->rex >> 1) & 1;
        if (rm == 4) {
            if (!need(s, 1)) return TRUNC_OR_LONG(s);
            unsigned sib = s->code[s->pos++];
            out->sib = (uint8_t)sib;
            out->flags |= HVP_X86_F_SIB;
            unsigned base = sib & 7, idx = ((sib >> 3) & 7) | rexx << 3;
            if (vsib) {
                out->mem.index = (uint8_t)(vsib + idx + (s->vx << 4));
                out->mem.scale = (uint8_t)(1u << (sib >> 6));
            } else if (idx != 4) {
                out->mem.index = (uint8_t)(gbase + idx);
                out->mem.scale = (uint8_t)(1u << (sib >> 6));
            }
            if (base == 5 && mod == 0) {
                dispn = 4;
            } else {
                out->mem.base = (uint8_t)(gbase + (base | rexb << 3));
                if ((base == 4 || base == 5) && !rexb) seg = 2;
            }
        } else if (rm == 5 && mod == 0) {
            dispn = 4;
            if (s->mode == 64) {
                out->mem.base = out->addrsize == 8 ? HVP_X86_REG_RIP : HVP_X86_REG_EIP;
                out->flags |= HVP_X86_F_RIPREL;
            }
        } else {
            out->mem.base = (uint8_t)(gbase + (rm | rexb << 3));
            if (rm == 5 && !rexb) seg = 2;
        }
        if (mod == 1)
            dispn = 1;
        else if (mod == 2)
            dispn = 4;
    }
    if (dispn) {
        if (!need(s, dispn)) return short_err(s, dispn);
        out->disp_off = (uint8_t)s->pos;
        out->mem.disp = sext(read_le(s->code + s->pos, dispn), dispn);
        if (dispn == 1) out->mem.disp *= n8; /* EVEX compressed disp8*N; 1 otherwise */
        s->pos += dispn;
    }
    if (s->segov && !agen) seg = s->segov - 1;
    out->mem.seg = (uint8_t)(HVP_X86_REG_ES + seg);
    return 0;
}

/* Size in bytes of a size code for this instruction. */
/* Sizes of the size codes that do not depend on the instruction. */
_Static_assert(HVP_DEC_S_TM < 64, "size codes index a 64-entry table");
static const uint16_t fixed_size[64] = {
    [HVP_DEC_S_B] = 1,    [HVP_DEC_S_W] = 2,    [HVP_DEC_S_D] = 4,    [HVP_DEC_S_Q] = 8,
    [HVP_DEC_S_DQ] = 16,  [HVP_DEC_S_QQ] = 32,  [HVP_DEC_S_T] = 10,   [HVP_DEC_S_SS] = 4,
    [HVP_DEC_S_SI] = 4,   [HVP_DEC_S_FS] = 4,   [HVP_DEC_S_SD] = 8,   [HVP_DEC_S_PI] = 8,
    [HVP_DEC_S_ZZ] = 512, [HVP_DEC_S_FX] = 512, [HVP_DEC_S_XS] = 576, [HVP_DEC_S_CL] = 64,
    [HVP_DEC_S_K4] = 64,  [HVP_DEC_S_K3] = 48,  [HVP_DEC_S_VXD] = 4,  [HVP_DEC_S_KD] = 4,
    [HVP_DEC_S_VXQ] = 8,  [HVP_DEC_S_VHQ] = 8,  [HVP_DEC_S_KQ] = 8,   [HVP_DEC_S_KB] = 1,
    [HVP_DEC_S_KW] = 2,   [HVP_DEC_S_ST] = 10,  [HVP_DEC_S_FE] = 10,
};

/* Size in bytes of a size code for this instruction. */
static inline __attribute__((always_inline)) unsigned
size_of(unsigned code, const struct hvp_x86_insn *out, const struct dstate *s)
{
    unsigned os = out->opsize;
    if (fixed_size[code & 63]) return fixed_size[code & 63];
    switch (code) {
    case HVP_DEC_S_V: return os;
    case HVP_DEC_S_Z: return os == 2 ? 2 : 4;
    case HVP_DEC_S_Y: return (s->mode == 64 && (s->rex & 8)) ? 8 : 4;
    case HVP_DEC_S_X:
    case HVP_DEC_S_PS:
    case HVP_DEC_S_PD: return 16u << s->vl;
    case HVP_DEC_S_P: return 2 + os;
    case HVP_DEC_S_S: return s->mode == 64 ? 10 : 6;
    case HVP_DEC_S_N: return s->mode == 64 ? 8 : 4;
    case HVP_DEC_S_A: return 2 * os;
    case HVP_DEC_S_H:
    case HVP_DEC_S_XH: return 8u << s->vl;
    case HVP_DEC_S_XQ: return 4u << s->vl;
    case HVP_DEC_S_XD: return 2u << s->vl;
    case HVP_DEC_S_E: return os == 2 ? 14 : 28;
    case HVP_DEC_S_F: return os == 2 ? 94 : 108;
    case HVP_DEC_S_MDUP: return s->vl ? 16u << s->vl : 8;
    case HVP_DEC_S_AS: return out->addrsize;
    case HVP_DEC_S_BM: return s->mode == 64 ? 16 : 8;
    case HVP_DEC_S_BX: return s->mode == 64 ? 24 : 12;
    case HVP_DEC_S_K: return s->mode == 64 ? 16 : 8;
    default: return 0;
    }
}

static inline unsigned gpr(unsigned size, unsigned n, unsigned rexpresent)
{
    if (size == 1 && !rexpresent && n >= 4 && n < 8) return HVP_X86_REG_AH + n - 4;
    return hvp_x86_gpr(size, n);
}

/* Register n of a vector operand, or of an opmask operand (size codes
 * kb..kq); 0 for an opmask number above 7 (#UD). */
static inline unsigned kreg_or_vreg(unsigned code, unsigned size, unsigned n)
{
    if (code >= HVP_DEC_S_KB && code <= HVP_DEC_S_KQ) return n < 8 ? HVP_X86_REG_K0 + n : 0;
    if (code == HVP_DEC_S_TM) return n < 8 ? HVP_X86_REG_TMM0 + n : 0;
    return (size <= 16 ? HVP_X86_REG_XMM0 : size == 32 ? HVP_X86_REG_YMM0 : HVP_X86_REG_ZMM0) + n;
}

/* The same for ModRM.rm, where an opmask ignores REX.B/VEX.B. */
static inline unsigned kreg_or_vreg_rm(unsigned code, unsigned size, unsigned n)
{
    if (code == HVP_DEC_S_TM) return n < 8 ? HVP_X86_REG_TMM0 + n : 0;
    if (code >= HVP_DEC_S_KB && code <= HVP_DEC_S_KQ) return HVP_X86_REG_K0 + (n & 7);
    return (size <= 16 ? HVP_X86_REG_XMM0 : size == 32 ? HVP_X86_REG_YMM0 : HVP_X86_REG_ZMM0) + n;
}

static inline unsigned vreg(unsigned size, unsigned n)
{
    return (size <= 16 ? HVP_X86_REG_XMM0 : size == 32 ? HVP_X86_REG_YMM0 : HVP_X86_REG_ZMM0) + n;
}

int hvp_x86_decode(struct hvp_x86_insn *out, const uint8_t *code, size_t avail, unsigned mode)
{
    struct dstate st, *s = &st;
    int rc;
    /* vector stores, not memset: rep stos costs more than the decode */
    typedef uint64_t v2u64 __attribute__((vector_size(16), may_alias, aligned(8)));
    typedef uint64_t u64a __attribute__((may_alias));
    _Static_assert(sizeof(*out) == 104, "zeroing below assumes 104 bytes");
    v2u64 *zv = (v2u64 *)out;
    zv[0] = zv[1] = zv[2] = zv[3] = zv[4] = zv[5] = (v2u64){0, 0};
    ((u64a *)out)[12] = 0;
    out->mode = (uint8_t)mode;
    s->code = code;
    s->lim = avail < 15 ? (unsigned)avail : 15;
    s->pos = 0;
    s->mode = mode;
    s->pcat = s->segov = 0;
    s->rex = s->vex = s->vl = s->vvvv = s->rr = s->vx = 0;
    s->evb = s->evz = s->aaa = 0;
    s->modrm = -1;
    unsigned rep = 0, pfx = 0, rexbyte = 0;

    /* Legacy prefixes and REX; a REX only counts right before the opcode,
     * the last segment override and the last of F2/F3 win. */
    unsigned b;
    for (;;) {
        if (s->pos >= s->lim) {
            rc = TRUNC_OR_LONG(s);
            goto fail;
        }
        b = code[s->pos];
        unsigned c = pfx_class[b];
        if (c) {
            s->pos++;
            rexbyte = 0; /* a legacy prefix after REX cancels it */
            if (c <= 6) {
                if (mode != 64 || c >= 5) /* only FS and GS count in 64-bit mode */
                    s->segov = c;
                pfx |= HVP_X86_PFX_SEG;
            } else if (c <= 9) {
                pfx |= c == 7   ? HVP_X86_PFX_OPSIZE
                       : c == 8 ? HVP_X86_PFX_ADDRSIZE
                                : HVP_X86_PFX_LOCK;
            } else {
                rep = c == 10 ? 3 : 2; /* F2: category 3, F3: category 2 */
            }
            continue;
        }
        if (mode == 64 && (b & 0xf0) == 0x40) {
            rexbyte = b;
            s->pos++;
            continue;
        }
        break;
    }
    unsigned has66 = pfx & HVP_X86_PFX_OPSIZE, has67 = pfx & HVP_X86_PFX_ADDRSIZE;
    out->pfx_count = (uint8_t)(s->pos - (rexbyte ? 1 : 0));
    s->pcat = rep ? rep : has66 ? 1 : 0;
    if (rep) pfx |= rep == 2 ? HVP_X86_PFX_REP : HVP_X86_PFX_REPNE;
    if (rexbyte) {
        s->rex = rexbyte & 15;
        out->rex = (uint8_t)rexbyte;
        pfx |= HVP_X86_PFX_REX | ((rexbyte & 8) ? HVP_X86_PFX_REXW : 0);
    }
    const unsigned rexpresent = rexbyte != 0;

    /* Opcode and escapes. */
    unsigned map;
    s->pos++;
    if (b == 0x0f) {
        if (s->pos >= s->lim) {
            rc = TRUNC_OR_LONG(s);
            goto fail;
        }
        b = code[s->pos++];
        if (b == 0x38 || b == 0x3a) {
            map = b == 0x38 ? HVP_DEC_MAP_0F38 : HVP_DEC_MAP_0F3A;
            if (s->pos >= s->lim) {
                rc = TRUNC_OR_LONG(s);
                goto fail;
            }
            b = code[s->pos++];
            out->map = b == 0x38 ? HVP_X86_MAP_0F38 : HVP_X86_MAP_0F3A;
            out->map = map == HVP_DEC_MAP_0F38 ? HVP_X86_MAP_0F38 : HVP_X86_MAP_0F3A;
        } else if (b == 0x0f) {
            /* 3DNow!: ModRM, memory, then the opcode as a trailing byte. */
            map = HVP_DEC_MAP_3DN;
            out->map = HVP_X86_MAP_0F;
            out->enc = HVP_X86_ENC_3DNOW;
        } else {
            map = HVP_DEC_MAP_0F;
            out->map = HVP_X86_MAP_0F;
        }
    } else if (esc_vex[b] &&
               (mode == 64 || b == 0x8f || (s->pos < s->lim && code[s->pos] >= 0xc0)) &&
               (b != 0x8f || (s->pos < s->lim && (code[s->pos] & 0x1f) >= 8))) {
        rc = -HVP_X86_EINVALID;
        if (has66 || rep || (pfx & HVP_X86_PFX_LOCK) || rexpresent)
            goto fail; /* #UD: legacy prefix or REX before VEX/EVEX/XOP */
        if (b == 0xc5) {
            if (s->pos >= s->lim) {
                rc = TRUNC_OR_LONG(s);
                goto fail;
            }
            unsigned v1 = code[s->pos++];
            s->rex = (~v1 >> 5) & 4;
            s->vvvv = (~v1 >> 3) & 15;
            s->vl = (v1 >> 2) & 1;
            s->pcat = v1 & 3;
            map = HVP_DEC_MAP_V0F;
            out->map = HVP_X86_MAP_0F;
            s->vex = 1;
            out->enc = HVP_X86_ENC_VEX;
            pfx |= HVP_X86_PFX_VEX;
        } else if (b == 0xc4 || b == 0x8f) {
            if (!need(s, 2)) {
                rc = short_err(s, 2);
                goto fail;
            }
            unsigned v1 = code[s->pos], v2 = code[s->pos + 1];
            s->pos += 2;
            s->rex = ((~v1 >> 5) & 7) | ((v2 >> 4) & 8);
            s->vvvv = (~v2 >> 3) & 15;
            s->vl = (v2 >> 2) & 1;
            s->pcat = v2 & 3;
            unsigned mm = v1 & 0x1f;
            if (b == 0xc4) {
                if (mm < 1 || mm > 3) goto fail;
                map = HVP_DEC_MAP_V0F + mm - 1;
                out->map = (uint8_t)mm;
                s->vex = 1;
                out->enc = HVP_X86_ENC_VEX;
                pfx |= HVP_X86_PFX_VEX;
            } else {
                if (mm > 10) goto fail;
                map = HVP_DEC_MAP_X8 + mm - 8;
                out->map = (uint8_t)mm;
                s->vex = 3;
                out->enc = HVP_X86_ENC_XOP;
                pfx |= HVP_X86_PFX_XOP;
            }
            if (mode != 64) s->rex &= 0x8; /* R X B ignored outside 64-bit mode */
        } else {
            /* EVEX: P0 = R X B R' 0 m m m, P1 = W vvvv 1 pp, P2 = z L'L b V' aaa */
            if (!need(s, 3)) {
                rc = short_err(s, 3);
                goto fail;
            }
            unsigned p0 = code[s->pos], p1 = code[s->pos + 1], p2 = code[s->pos + 2];
            s->pos += 3;
            unsigned mmm = p0 & 7;
            if ((p0 & 8) || !(p1 & 4) || mmm == 0 || mmm == 4 || mmm == 7) goto fail;
            s->rex = ((~p0 >> 5) & 7) | ((p1 >> 4) & 8);
            s->rr = (~p0 >> 4) & 1;
            s->vvvv = ((~p1 >> 3) & 15) | (((~p2 >> 3) & 1) << 4);
            s->vx = (~p2 >> 3) & 1;
            s->pcat = p1 & 3;
            s->evz = p2 >> 7;
            s->vl = (p2 >> 5) & 3;
            s->evb = (p2 >> 4) & 1;
            s->aaa = p2 & 7;
            if (mode != 64) {
                if (s->vx) goto fail; /* V' selects registers 16-31: 64-bit mode only */
                s->rex &= 8;
                s->rr = 0;
            }
            map = mmm <= 3 ? HVP_DEC_MAP_E0F + mmm - 1 : HVP_DEC_MAP_E5 + mmm - 5;
            out->map = (uint8_t)mmm; /* 5, 6: the AVX512-FP16 maps */
            s->vex = 2;
            out->enc = HVP_X86_ENC_EVEX;
            out->mask = (uint8_t)s->aaa;
            pfx |= HVP_X86_PFX_EVEX;
        }
        if (s->pos >= s->lim) {
            rc = TRUNC_OR_LONG(s);
            goto fail;
        }
        b = code[s->pos++];
    } else {
        map = HVP_DEC_MAP_1;
        out->map = HVP_X86_MAP_1BYTE;
    }
    out->opcode = (uint8_t)b;

    /* operand size before the form is known (OSZ nodes, 3DNow!, EVEX);
     * d64 forms default to 8 in 64-bit mode */
#define OSZ(d64)                                                                                   \
    (mode == 64                 ? ((s->rex & 8) ? 8u                                               \
                                   : has66      ? 2u                                               \
                                   : (d64)      ? 8u                                               \
                                                : 4u)                                                   \
     : ((mode == 16) ^ !!has66) ? 2u                                                               \
                                : 4u)
    out->addrsize = (uint8_t)(mode == 64 ? (has67 ? 4 : 8) : ((mode == 16) ^ !!has67) ? 2 : 4);

    if (map == HVP_DEC_MAP_3DN) {
        if ((rc = fetch_modrm(s))) goto fail;
        if ((unsigned)s->modrm < 0xc0) {
            out->opsize = (uint8_t)OSZ(0);
            if ((rc = decode_mem(s, out, 0, 0, 1))) goto fail;
        }
        if (s->pos >= s->lim) {
            rc = TRUNC_OR_LONG(s);
            goto fail;
        }
        b = code[s->pos++];
        out->opcode = (uint8_t)b;
    }

    if (s->vex == 2) {
        /* every EVEX form has ModRM; b with a register operand selects
         * rounding/SAE and a 512-bit length */
        if ((rc = fetch_modrm(s))) goto fail;
        if (s->evb && s->modrm >= 0xc0)
            s->vl = 2;
        else if (s->vl == 3) {
            rc = -HVP_X86_EINVALID;
            goto fail;
        }
        if (s->evz && !s->aaa) {
            rc = -HVP_X86_EINVALID;
            goto fail;
        }
    }

    /* Walk the decision tree. */
    uint32_t n = hvp_dec_root[map][b];
    while (__builtin_expect((n >> 24) != HVP_DEC_K_LEAF, 0)) {
        unsigned kind = n >> 24, ix = n & 0xffffff;
        switch (kind) {
        case HVP_DEC_K_LEAF: goto leaf;
        case HVP_DEC_K_MODE: n = hvp_dec_nodes[ix + (mode == 64)]; continue;
        case HVP_DEC_K_PFX: n = hvp_dec_nodes[ix + s->pcat]; continue;
        case HVP_DEC_K_REG:
        case HVP_DEC_K_MOD:
        case HVP_DEC_K_RM:
            if ((rc = fetch_modrm(s))) goto fail;
            n = hvp_dec_nodes[ix + (kind == HVP_DEC_K_REG   ? ((unsigned)s->modrm >> 3) & 7
                                    : kind == HVP_DEC_K_MOD ? (unsigned)s->modrm >= 0xc0
                                                            : (unsigned)s->modrm & 7)];
            continue;
        case HVP_DEC_K_W: n = hvp_dec_nodes[ix + ((s->rex >> 3) & 1)]; continue;
        case HVP_DEC_K_L: n = hvp_dec_nodes[ix + s->vl]; continue;
        case HVP_DEC_K_OSZ: n = hvp_dec_nodes[ix + (OSZ(0) >> 2)]; continue;
        case HVP_DEC_K_OSZD64: n = hvp_dec_nodes[ix + (OSZ(1) >> 2)]; continue;
        case HVP_DEC_K_ASZ: n = hvp_dec_nodes[ix + (out->addrsize >> 2)]; continue;
        case HVP_DEC_K_B: n = hvp_dec_nodes[ix + (s->rex & 1)]; continue;
        default: rc = -HVP_X86_EINVALID; goto fail;
        }
    }
leaf:;
    const struct hvp_dec_leaf *lf = &hvp_dec_leaves[n & 0xffffff];
    unsigned lfl = lf->flags;
    rc = -HVP_X86_EINVALID;
    if (lfl & HVP_DEC_F_MPX) {
        /* MPX ignores 67 in 64-bit mode and has no 16-bit addressing */
        if (mode == 64)
            out->addrsize = 8;
        else if (out->addrsize == 2)
            goto fail;
    }
    out->op = lf->op;
    out->isa = lf->isa;
    if (mode == 64)
        out->opsize = (uint8_t)((s->rex & 8) || (lfl & HVP_DEC_F_F64) ? 8
                                : (has66 && !(lfl & HVP_DEC_F_MP66))  ? 2
                                : (lfl & HVP_DEC_F_D64)               ? 8
                                                                      : 4);
    else
        out->opsize = (uint8_t)(((mode == 16) ^ (has66 && !(lfl & HVP_DEC_F_MP66))) ? 2 : 4);
    if (s->vex) {
        /* VEX.vvvv must be 1111 when unused (EVEX.V' extends a VSIB index) */
        if ((s->vvvv & ((lfl & HVP_DEC_F_VSIB) ? 15 : 31)) && !(lfl & HVP_DEC_F_VVVV)) goto fail;
        if (s->vex == 2) {
            unsigned memop = s->modrm < 0xc0;
            if (s->evb && (memop ? !(lfl & HVP_DEC_F_BC) : !(lfl & (HVP_DEC_F_ER | HVP_DEC_F_SAE))))
                goto fail;
            if (s->evz && ((lfl & HVP_DEC_F_NZ) || (memop && (lfl & HVP_DEC_F_NZM)))) goto fail;
            if ((lfl & HVP_DEC_F_KM) && !s->aaa) goto fail;
            if ((lfl & HVP_DEC_F_NM) && s->aaa) goto fail; /* no masking for this form */
        }
        if (mode != 64) s->vvvv &= 7; /* bit 3 is ignored outside 64-bit mode */
    }
    if ((lfl & HVP_DEC_F_MODRM) && (rc = fetch_modrm(s))) goto fail;
    if (s->modrm >= 0) {
        out->flags |= HVP_X86_F_MODRM;
        out->modrm = (uint8_t)s->modrm;
    }
    unsigned mod3 = s->modrm >= 0xc0, mreg = ((unsigned)s->modrm >> 3) & 7,
             mrm = (unsigned)s->modrm & 7;
    if ((pfx & HVP_X86_PFX_LOCK) && (!(lfl & HVP_DEC_F_LOCK) || mod3)) {
        rc = -HVP_X86_EINVALID;
        goto fail;
    }
    unsigned rexr = (s->rex >> 2) & 1, rexb = s->rex & 1;
    unsigned rexx4 = s->vex == 2 ? ((s->rex >> 1) & 1) << 4 : 0; /* EVEX.X extends ModRM.rm */
    out->nops = lf->nops;
    unsigned nimm = 0;
    /* The memory operand first: its SIB and displacement precede any
     * immediate, whatever the operand order (FMA4 puts is4 before it). */
    if (lf->memop && !mod3 && !(out->flags & HVP_X86_F_MEM)) do {
            unsigned sc = lf->o[lf->memop - 1].s, vsib = 0;
            if (sc >= HVP_DEC_S_VXD && sc <= HVP_DEC_S_VHQ) {
                /* VSIB: the index vector is as wide as the operation, or
                 * half as wide for dword indices of qword elements */
                unsigned ivl = sc == HVP_DEC_S_VHQ ? (s->vl ? s->vl - 1 : 0) : s->vl;
                vsib = ivl == 0 ? HVP_X86_REG_XMM0 : ivl == 1 ? HVP_X86_REG_YMM0 : HVP_X86_REG_ZMM0;
            }
            unsigned n8 = 1;
            if (s->vex == 2) {
                out->opsize = (uint8_t)OSZ(0);
                n8 = (lfl & HVP_DEC_F_EB)             ? 1
                     : (lfl & HVP_DEC_F_EW)           ? 2
                     : s->evb && (lfl & HVP_DEC_F_B2) ? 2
                     : s->evb || (lfl & HVP_DEC_F_EL) ? ((s->rex & 8) ? 8 : 4)
                                                      : size_of(sc, out, s);
                if (!n8) n8 = 1;
            }
            if ((lfl & HVP_DEC_F_MIB) && ((unsigned)s->modrm & 7) != 4) {
                rc = -HVP_X86_EINVALID; /* AMX tile loads/stores need a SIB byte */
                goto fail;
            }
            if ((rc = decode_mem(s, out, lfl & HVP_DEC_F_AGEN, vsib, n8))) goto fail;
        } while (0);
    for (unsigned k = 0; k < lf->nops; k++) {
        const struct hvp_dec_opnd *d = &lf->o[k];
        struct hvp_x86_operand *o = &out->ops[k];
        unsigned sz = size_of(d->s, out, s);
        o->flags = d->f & (HVP_X86_OPF_READ | HVP_X86_OPF_WRITE);
        o->size = (uint16_t)sz;
        switch (d->m) {
        case HVP_DEC_M_X:
        case HVP_DEC_M_E:
        case HVP_DEC_M_M:
        case HVP_DEC_M_Q:
        case HVP_DEC_M_W:
            if (mod3) {
                if (d->m == HVP_DEC_M_M) {
                    rc = -HVP_X86_EINVALID;
                    goto fail;
                }
                o->kind = HVP_X86_OPK_REG;
                if (d->m == HVP_DEC_M_X) {
                    if (mrm > 3 || rexb) {
                        rc = -HVP_X86_EINVALID;
                        goto fail;
                    }
                    o->reg = (uint8_t)(HVP_X86_REG_BND0 + mrm);
                    break;
                }
                o->reg = (uint8_t)(d->m == HVP_DEC_M_E ? gpr(sz, mrm | rexb << 3, rexpresent)
                                   : d->m == HVP_DEC_M_Q
                                       ? HVP_X86_REG_MM0 + mrm
                                       : kreg_or_vreg_rm(d->s, sz, mrm | rexb << 3 | rexx4));
                break;
            }
            o->kind = HVP_X86_OPK_MEM;
            if (d->s >= HVP_DEC_S_VXD && d->s <= HVP_DEC_S_VHQ) o->flags |= HVP_X86_OPF_VSIB;
            if (s->evb) { /* embedded broadcast: one element */
                o->flags |= HVP_X86_OPF_BCST;
                o->elem = o->size = (uint16_t)((lfl & HVP_DEC_F_B2) ? 2 : (s->rex & 8) ? 8 : 4);
            }
            break;
        case HVP_DEC_M_G:
            if (s->rr) { /* EVEX.R' names no general register */
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)gpr(sz, mreg | rexr << 3, rexpresent);
            break;
        case HVP_DEC_M_R:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)gpr(sz, mrm | rexb << 3, rexpresent);
            break;
        case HVP_DEC_M_Z:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)gpr(sz, (b & 7) | rexb << 3, rexpresent);
            break;
        case HVP_DEC_M_I: {
            if (d->s == HVP_DEC_S_4) { /* low nibble of the is4 byte */
                out->imm2 = out->imm & 15;
                o->kind = HVP_X86_OPK_IMM;
                o->index = 1;
                o->size = 1;
                break;
            }
            if ((rc = read_imm(s, out, sz, !(d->f & HVP_DEC_O_U), nimm ? &out->imm2 : &out->imm)))
                goto fail;
            o->kind = HVP_X86_OPK_IMM;
            o->index = (uint8_t)nimm++;
            if (!(d->f & HVP_DEC_O_U)) {
                /* a signed immediate is extended to the operation's width */
                unsigned w = k ? out->ops[0].size : out->opsize;
                if (w > sz && w <= 8) o->size = (uint16_t)w;
            }
            break;
        }
        case HVP_DEC_M_J:
            if ((rc = read_imm(s, out, sz, 1, &out->imm))) goto fail;
            o->kind = HVP_X86_OPK_REL;
            o->size = (uint16_t)out->opsize;
            break;
        case HVP_DEC_M_O: {
            unsigned an = out->addrsize;
            if (!need(s, an)) {
                rc = short_err(s, an);
                goto fail;
            }
            out->disp_off = (uint8_t)s->pos;
            out->mem.disp = sext(read_le(code + s->pos, an), an);
            s->pos += an;
            out->mem.seg = (uint8_t)(HVP_X86_REG_ES + (s->segov ? s->segov - 1 : 3));
            o->kind = HVP_X86_OPK_MEM;
            break;
        }
        case HVP_DEC_M_A: {
            unsigned on = out->opsize == 2 ? 2 : 4;
            if ((rc = read_imm(s, out, on, 0, &out->imm)) ||
                (rc = read_imm(s, out, 2, 0, &out->imm2)))
                goto fail;
            o->kind = HVP_X86_OPK_FAR;
            o->size = (uint16_t)(on + 2);
            break;
        }
        case HVP_DEC_M_K:
            if (mreg > 3 || rexr) {
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_BND0 + mreg);
            break;
        case HVP_DEC_M_S:
            if (mreg > 5 || (mreg == 1 && (d->f & HVP_DEC_O_W))) {
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_ES + mreg);
            break;
        case HVP_DEC_M_C:
            if (!((0x11dU >> (mreg | rexr << 3)) & 1)) { /* cr0 cr2 cr3 cr4 cr8 */
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_CR0 + (mreg | rexr << 3));
            break;
        case HVP_DEC_M_D:
            if (rexr) {
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_DR0 + (mreg | rexr << 3));
            break;
        case HVP_DEC_M_P:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_MM0 + mreg);
            break;
        case HVP_DEC_M_N:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_MM0 + mrm);
            break;
        case HVP_DEC_M_V:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)kreg_or_vreg(d->s, sz, mreg | rexr << 3 | s->rr << 4);
            break;
        case HVP_DEC_M_U:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)kreg_or_vreg_rm(d->s, sz, mrm | rexb << 3 | rexx4);
            break;
        case HVP_DEC_M_H:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)kreg_or_vreg(d->s, sz, s->vvvv);
            break;
        case HVP_DEC_M_B:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)gpr(sz, s->vvvv, 1);
            break;
        case HVP_DEC_M_L: {
            int64_t v;
            if ((rc = read_imm(s, out, 1, 0, &v))) goto fail;
            out->imm = v;
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)vreg(sz, ((unsigned)v >> 4) & (mode == 64 ? 15 : 7));
            break;
        }
        case HVP_DEC_M_FGPR:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)gpr(sz, d->n, 0);
            break;
        case HVP_DEC_M_FSEG:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_ES + d->n);
            break;
        case HVP_DEC_M_FST:
            o->kind = HVP_X86_OPK_REG;
            o->reg = (uint8_t)(HVP_X86_REG_ST0 + ((d->f & HVP_DEC_O_STI) ? mrm : d->n));
            break;
        case HVP_DEC_M_FXMM:
            o->kind = HVP_X86_OPK_REG;
            o->reg = HVP_X86_REG_XMM0;
            break;
        case HVP_DEC_M_ONE:
            o->kind = HVP_X86_OPK_IMM;
            o->flags |= HVP_X86_OPF_IMPLICIT;
            out->imm = 1;
            break;
        default: rc = -HVP_X86_EINVALID; goto fail;
        }
    }
    if (s->vex) { /* register rules of VEX/EVEX forms */
        for (unsigned k = 0; k < lf->nops; k++)
            if (out->ops[k].kind == HVP_X86_OPK_REG && !out->ops[k].reg) {
                rc = -HVP_X86_EINVALID; /* opmask register above k7 */
                goto fail;
            }
        if (s->vex == 1 && lf->nops == 3 && (out->ops[1].flags & HVP_X86_OPF_VSIB)) {
            /* VEX gathers: destination, index and mask must differ */
            unsigned dst = (out->ops[0].reg - HVP_X86_REG_XMM0) & 31,
                     msk = (out->ops[2].reg - HVP_X86_REG_XMM0) & 31,
                     idx = (out->mem.index - HVP_X86_REG_XMM0) & 31;
            if (dst == msk || dst == idx || msk == idx) {
                rc = -HVP_X86_EINVALID;
                goto fail;
            }
        }
        if (s->vex == 2 && lf->nops == 2 && out->ops[0].kind == HVP_X86_OPK_REG &&
            (out->ops[1].flags & HVP_X86_OPF_VSIB) &&
            ((out->ops[0].reg - HVP_X86_REG_XMM0) & 31) ==
                ((out->mem.index - HVP_X86_REG_XMM0) & 31)) {
            rc = -HVP_X86_EINVALID; /* EVEX gathers: destination and index must differ */
            goto fail;
        }
        if ((lfl & HVP_DEC_F_CPLX) &&
            (out->ops[0].reg == out->ops[1].reg ||
             (out->ops[2].kind == HVP_X86_OPK_REG &&
              (out->ops[0].reg == out->ops[2].reg ||
               (out->ops[0].reg >= HVP_X86_REG_TMM0 && out->ops[1].reg == out->ops[2].reg))))) {
            rc = -HVP_X86_EINVALID; /* complex FP16 FMA: destination must differ from sources */
            goto fail;
        }
    }
    /* leaf flag bits BR COND STR PRIV sit one above HVP_X86_F_BRANCH.. */
    _Static_assert(HVP_DEC_F_BR >> 1 == HVP_X86_F_BRANCH && HVP_DEC_F_PRIV >> 1 == HVP_X86_F_PRIV &&
                       HVP_DEC_F_LOCK << 5 == HVP_X86_F_LOCKABLE &&
                       HVP_DEC_F_SER == HVP_X86_F_SERIALIZE,
                   "flag layout");
    out->flags |= (uint16_t)(((lfl >> 1) & (HVP_X86_F_BRANCH | HVP_X86_F_COND | HVP_X86_F_STRING |
                                            HVP_X86_F_PRIV)) |
                             ((lfl << 5) & HVP_X86_F_LOCKABLE) | (lfl & HVP_X86_F_SERIALIZE));
    out->prefixes = (uint16_t)pfx;
    out->vl = (uint8_t)s->vl;
    out->vvvv = (uint8_t)s->vvvv;
    out->len = (uint8_t)s->pos;
    if (!(out->flags & HVP_X86_F_MEM) && !out->mem.seg)
        out->mem.seg = (uint8_t)(HVP_X86_REG_ES + (s->segov ? s->segov - 1 : 3));
    return (int)s->pos;
fail:
    out->len = (uint8_t)(s->pos > 15 ? 15 : s->pos);
    out->prefixes = (uint16_t)pfx;
    return rc;
#undef OSZ
}
