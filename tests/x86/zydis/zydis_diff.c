/* Differential test of hvp's x86 decoder against Zydis 4.0.
 *
 *   zydis-diff corpus [--budget-mib N] [--time-limit S] [-v] [PATH...]
 *       every instruction in the .text sections of this machine's 64-bit ELF
 *       executables and shared libraries (or of PATH...), decoded linearly;
 *       on a length mismatch the walk resyncs on Zydis's length.
 *   zydis-diff random [--seed N] [--fresh] [--count N] [--mode 16|32|64] [-v]
 *       N random byte strings per mode with legacy/REX/VEX/EVEX/XOP-looking
 *       prefixes; --fresh adds a second run with a seed from the clock.
 *   zydis-diff bytes --mode M HEX...
 *       one instruction, both decoders' views side by side.
 *   zydis-diff list
 *       the known Zydis deviations below, with the manuals' reasons.
 *
 * Compared per instruction: validity, length, identity (hvp_x86_op_name vs
 * ZydisMnemonicGetString) and the visible operands (Zydis's explicit and
 * implicit ones, which are the ones hvp's record lists): register names,
 * memory segment/base/index/scale/displacement and access size, immediate
 * values and widths after extension, branch displacements and far pointers;
 * the address size where it shows (memory operands, loop, jrcxz); and, when
 * both reject 16 bytes, that neither calls them "truncated". EVEX: the
 * writemask is compared with insn.mask, not as an operand.
 *
 * Exit status: 0 when every mismatch falls in a ratchet category below, 1
 * otherwise, 2 for bad usage, 77 (skip) when the corpus has no x86-64 ELF.
 */
#include "hvp/x86.h"

#include <Zydis/Zydis.h>

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Ratchet: instruction classes (or "class aspect" pairs) the decoder does
 * not implement yet. Mismatches there are counted and shown but do not fail
 * the run. Remove an entry as its stage lands; never add one back.
 *
 * Classes: int (1-byte and 0F integer/system), x87, simd (legacy-encoded
 * MMX/SSE/AES/SHA...), vex, amx (VEX-encoded tile instructions), evex, xop,
 * 3dnow.
 * Aspects: validity, length, mnemonic, operands, size (memory access and
 * immediate widths), error (both reject, but one says "truncated" with 16
 * bytes at hand).
 */
static const char *const ratchet[] = {
    /* "int"  stage 1, 1-byte + 0F integer: landed c1ed3f0 */
    /* "x87", "simd"  stage 2: landed 05aa088 */
    /* "vex"  stage 3: landed 17d5413 (all but AMX) */
    /* "amx validity"  AMX: landed 9c9c4ca */
    /* "evex validity"  stage 4: landed; the last disagreement (vcvt(u)si2sh
     * with EVEX.W1 outside 64-bit mode) settled in d1468be */
    /* XOP, TBM, FMA4 and 3DNow! are outside the target ISA (see
     * not_in_target below): hvp may reject them; if it decodes them they
     * are compared like the rest. */
    NULL, /* the list ends here; every mismatch fails */
};

/* ------------------------------------------------------------------------
 * Where Zydis disagrees with the Intel SDM / AMD APM. Each entry names the
 * case and the manual's reason. `fix` recognises the case and edits Zydis's
 * view of the visible operands to what the manual says; the comparison then
 * goes on as usual (so the rest of the instruction is still checked). Cases
 * fixed up are counted as "known Zydis deviations".
 */
struct zydis_wrong {
    const char *what;
    const char *why;
    bool (*fix)(unsigned mode, const ZydisDecodedInstruction *zi, ZydisDecodedOperand *vis,
                unsigned *nv);
};

/* 67 + REX.B, ModRM.mod = 00, SIB.base = 101 in 64-bit mode: Zydis reports
 * base r13d and no displacement (while still counting the disp32 bytes). */
static bool fix_sib_r13_disp32(unsigned mode, const ZydisDecodedInstruction *zi,
                               ZydisDecodedOperand *vis, unsigned *nv)
{
    /* With mod=00 and SIB.base=101, r13(d) can never be the base: when
     * Zydis says it is, B was set (REX, VEX or EVEX) and it went wrong. */
    if (mode != 64 || !(zi->attributes & ZYDIS_ATTRIB_HAS_SIB) || zi->raw.modrm.mod != 0 ||
        zi->raw.sib.base != 5 || zi->raw.disp.size != 32)
        return false;
    bool fixed = false;
    for (unsigned i = 0; i < *nv; i++)
        if (vis[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
            (vis[i].mem.base == ZYDIS_REGISTER_R13D || vis[i].mem.base == ZYDIS_REGISTER_R13) &&
            !vis[i].mem.disp.has_displacement) {
            vis[i].mem.base = ZYDIS_REGISTER_NONE;
            vis[i].mem.disp.has_displacement = ZYAN_TRUE;
            vis[i].mem.disp.value = zi->raw.disp.value;
            fixed = true;
        }
    return fixed;
}

/* 3E on an indirect call/jmp in 16/32-bit mode: Zydis reads it as NOTRACK
 * only and drops its DS override, so [ebp+..] stays on SS. */
static bool fix_notrack_ds(unsigned mode, const ZydisDecodedInstruction *zi,
                           ZydisDecodedOperand *vis, unsigned *nv)
{
    if (mode == 64 || !(zi->attributes & ZYDIS_ATTRIB_HAS_NOTRACK)) return false;
    bool fixed = false;
    for (unsigned i = 0; i < *nv; i++)
        if (vis[i].type == ZYDIS_OPERAND_TYPE_MEMORY && vis[i].mem.segment == ZYDIS_REGISTER_SS) {
            vis[i].mem.segment = ZYDIS_REGISTER_DS;
            fixed = true;
        }
    return fixed;
}

static const struct zydis_wrong zydis_wrong[] = {
    {"67 with REX.B, VEX.B or EVEX.B, mod=00, SIB.base=101 (e.g. 67 41 8b 04 95 disp32): Zydis "
     "4.0 says base r13d, no displacement",
     "SDM Vol. 2A 2.2.1.2 and Table 2-5 (Special Cases of REX Encodings): with mod=00 a SIB "
     "base of 101 means no base register and a disp32, whatever REX.B says",
     fix_sib_r13_disp32},
    {"3E ff /2 or /4 with a BP/SP-based address in 16/32-bit mode (e.g. 3e ff 55 98): Zydis "
     "makes 3E a NOTRACK prefix only and keeps SS",
     "SDM Vol. 2A 2.1.1: 3EH is the DS segment override; CET's NOTRACK (Vol. 1 18.3.8) reuses "
     "the byte as a hint on indirect branches and does not cancel the override outside 64-bit "
     "mode, so the access goes through DS",
     fix_notrack_ds},
    {NULL, NULL, NULL},
};

/* Extensions Zydis decodes that the target (current Intel and AMD x86-64
 * CPUs) does not have: when hvp rejects them that is right, not a mismatch. */
static const struct {
    ZydisISAExt ext;
    const char *why;
} not_in_target[] = {
    {ZYDIS_ISA_EXT_PADLOCK, "VIA PadLock (0F A6/A7 xstore, xcrypt*, xsha*, montmul): VIA and "
                            "Zhaoxin only; #UD on Intel and AMD"},
    {ZYDIS_ISA_EXT_XOP, "AMD XOP (8F map 8/9/A): Bulldozer family only, gone from Zen's CPUID"},
    {ZYDIS_ISA_EXT_TBM, "AMD TBM (XOP-encoded bit manipulation): Piledriver/Steamroller only"},
    {ZYDIS_ISA_EXT_FMA4, "AMD FMA4 (VEX 0F3A 5C..7F, 4 operands): Bulldozer family only"},
    /* Strictly a Zydis bug: ZYDIS_DECODER_MODE_KNC is off, yet Zydis 4.0
     * still decodes Knights Corner's VEX-encoded forms (c5 f8 47 fe "kxor
     * k7, k6" with VEX.L0, c5 fa b8 "popcnt", c5 64 85 "jknzd", ...). */
    {ZYDIS_ISA_EXT_KNC, "Knights Corner (Xeon Phi) VEX forms: #UD on every x86-64 CPU; Zydis "
                        "4.0 decodes them even with its KNC mode off"},
    {ZYDIS_ISA_EXT_KNCV, "Knights Corner jkzd/jknzd (VEX 84/85): as above"},
    {ZYDIS_ISA_EXT_KNCE, "Knights Corner extensions: as above"},
    {ZYDIS_ISA_EXT_AMD3DNOW, "AMD 3DNow! (0F 0F): dropped with Bulldozer; only PREFETCH/PREFETCHW "
                             "(0F 0D) remain and those stay in the comparison"},
};

/* ISA sets of EVEX forms that only the Xeon Phi (Knights Landing/Mill)
 * had: no current Intel or AMD CPU reports them in CPUID. */
static const struct {
    ZydisISASet set;
    const char *why;
} not_in_target_set[] = {
    {ZYDIS_ISA_SET_AVX512ER_512, "AVX512ER (vexp2, vrcp28, vrsqrt28): Xeon Phi only"},
    {ZYDIS_ISA_SET_AVX512ER_SCALAR, "AVX512ER scalar forms: Xeon Phi only"},
    {ZYDIS_ISA_SET_AVX512PF_512, "AVX512PF (gather/scatter prefetches): Xeon Phi only"},
    {ZYDIS_ISA_SET_AVX512_4FMAPS_512, "AVX512_4FMAPS: Knights Mill only"},
    {ZYDIS_ISA_SET_AVX512_4FMAPS_SCALAR, "AVX512_4FMAPS scalar forms: Knights Mill only"},
    {ZYDIS_ISA_SET_AVX512_4VNNIW_512, "AVX512_4VNNIW: Knights Mill only"},
};

/* ------------------------------------------------------------------------
 * Decoder setup. The architecture hvp targets is a current Intel/AMD CPU:
 *  - KNC (Xeon Phi MVEX) off: no such encoding on a real x86-64 CPU today.
 *  - AMD_BRANCHES off: Intel's rule, 66 is ignored by near branches in
 *    64-bit mode (AMD honours it); hvp's CPU follows Intel here.
 *  - MPX off: MPX is gone from Intel CPUs since Ice Lake/Alder Lake and AMD
 *    never had it; 0F 1A/1B decode as the hint NOPs those CPUs execute.
 *  - CET, LZCNT, TZCNT, WBNOINVD, CLDEMOTE on: all in current CPUs (CLDEMOTE
 *    is a hint NOP where absent, so it decodes either way).
 */
static void zydis_init(ZydisDecoder *d, unsigned mode)
{
    ZydisMachineMode mm = mode == 64   ? ZYDIS_MACHINE_MODE_LONG_64
                          : mode == 32 ? ZYDIS_MACHINE_MODE_LEGACY_32
                                       : ZYDIS_MACHINE_MODE_LEGACY_16;
    ZydisStackWidth sw = mode == 64   ? ZYDIS_STACK_WIDTH_64
                         : mode == 32 ? ZYDIS_STACK_WIDTH_32
                                      : ZYDIS_STACK_WIDTH_16;
    ZydisDecoderInit(d, mm, sw);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_KNC, ZYAN_FALSE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_AMD_BRANCHES, ZYAN_FALSE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_MPX, ZYAN_FALSE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_CET, ZYAN_TRUE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_LZCNT, ZYAN_TRUE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_TZCNT, ZYAN_TRUE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_WBNOINVD, ZYAN_TRUE);
    ZydisDecoderEnableMode(d, ZYDIS_DECODER_MODE_CLDEMOTE, ZYAN_TRUE);
}

/* ------------------------------------------------------------------------ */

enum cls { C_INT, C_X87, C_SIMD, C_VEX, C_AMX, C_EVEX, C_XOP, C_3DNOW, C_COUNT };
static const char *const cls_name[C_COUNT] = {"int", "x87",  "simd", "vex",
                                              "amx", "evex", "xop",  "3dnow"};

enum aspect { A_VALIDITY, A_LENGTH, A_MNEMONIC, A_OPERANDS, A_SIZE, A_ERROR, A_COUNT };
static const char *const aspect_name[A_COUNT] = {"validity", "length", "mnemonic",
                                                 "operands", "size",   "error"};

#define SHOW_PER_CELL 3

struct stats {
    uint64_t checked;
    uint64_t both_invalid;
    uint64_t mism[C_COUNT][A_COUNT];
    uint64_t shown[C_COUNT][A_COUNT];
    uint64_t zydis_known;
    uint64_t not_target; /* Zydis decodes, hvp rejects, not in the target */
    uint64_t failing;    /* mismatches outside the ratchet */
    bool ratcheted[C_COUNT][A_COUNT];
    unsigned show; /* examples to print per cell */
    const char *label;
};

static void stats_init(struct stats *s, unsigned show, const char *label)
{
    memset(s, 0, sizeof(*s));
    s->show = show;
    s->label = label;
    for (unsigned c = 0; c < C_COUNT; c++)
        for (unsigned a = 0; a < A_COUNT; a++)
            for (size_t r = 0; ratchet[r]; r++) {
                const char *e = ratchet[r];
                size_t cl = strlen(cls_name[c]);
                if (strncmp(e, cls_name[c], cl)) continue;
                if (e[cl] == 0 || (e[cl] == ' ' && !strcmp(e + cl + 1, aspect_name[a])))
                    s->ratcheted[c][a] = true;
            }
}

static void stats_add(struct stats *dst, const struct stats *src)
{
    dst->checked += src->checked;
    dst->both_invalid += src->both_invalid;
    dst->zydis_known += src->zydis_known;
    dst->not_target += src->not_target;
    dst->failing += src->failing;
    for (unsigned c = 0; c < C_COUNT; c++)
        for (unsigned a = 0; a < A_COUNT; a++)
            dst->mism[c][a] += src->mism[c][a];
}

static void stats_print(const struct stats *s)
{
    printf("%s: %" PRIu64 " instructions checked (%" PRIu64 " invalid to both), %" PRIu64
           " failing mismatches, %" PRIu64 " known Zydis deviations, %" PRIu64
           " outside the target ISA\n",
           s->label, s->checked, s->both_invalid, s->failing, s->zydis_known, s->not_target);
    bool any = false;
    for (unsigned c = 0; c < C_COUNT; c++)
        for (unsigned a = 0; a < A_COUNT; a++)
            any |= s->mism[c][a] != 0;
    if (!any) return;
    printf("  %-8s", "class");
    for (unsigned a = 0; a < A_COUNT; a++)
        printf(" %10s", aspect_name[a]);
    printf("\n");
    for (unsigned c = 0; c < C_COUNT; c++) {
        uint64_t row = 0;
        for (unsigned a = 0; a < A_COUNT; a++)
            row += s->mism[c][a];
        if (!row) continue;
        printf("  %-8s", cls_name[c]);
        for (unsigned a = 0; a < A_COUNT; a++)
            printf(" %9" PRIu64 "%c", s->mism[c][a],
                   s->mism[c][a] && !s->ratcheted[c][a] ? '!' : ' ');
        printf("\n");
    }
    printf("  ('!' = outside the ratchet list: fails)\n");
}

/* ------------------------------------------------------------------------ */

static bool simd_isa_ext(ZydisISAExt e)
{
    switch (e) {
    case ZYDIS_ISA_EXT_MMX:
    case ZYDIS_ISA_EXT_SSE:
    case ZYDIS_ISA_EXT_SSE2:
    case ZYDIS_ISA_EXT_SSE3:
    case ZYDIS_ISA_EXT_SSSE3:
    case ZYDIS_ISA_EXT_SSE4:
    case ZYDIS_ISA_EXT_SSE4A:
    case ZYDIS_ISA_EXT_AES:
    case ZYDIS_ISA_EXT_PCLMULQDQ:
    case ZYDIS_ISA_EXT_SHA:
    case ZYDIS_ISA_EXT_GFNI:
    case ZYDIS_ISA_EXT_KEYLOCKER:
    case ZYDIS_ISA_EXT_KEYLOCKER_WIDE: return true;
    default: return false;
    }
}

static enum cls class_of_zydis(const ZydisDecodedInstruction *zi, const ZydisDecodedOperand *zo)
{
    switch (zi->encoding) {
    case ZYDIS_INSTRUCTION_ENCODING_VEX:
        if (zi->meta.isa_ext == ZYDIS_ISA_EXT_AMX_TILE ||
            zi->meta.isa_ext == ZYDIS_ISA_EXT_AMX_INT8 ||
            zi->meta.isa_ext == ZYDIS_ISA_EXT_AMX_BF16)
            return C_AMX;
        return C_VEX;
    case ZYDIS_INSTRUCTION_ENCODING_EVEX:
    case ZYDIS_INSTRUCTION_ENCODING_MVEX: return C_EVEX;
    case ZYDIS_INSTRUCTION_ENCODING_XOP: return C_XOP;
    case ZYDIS_INSTRUCTION_ENCODING_3DNOW: return C_3DNOW;
    default: break;
    }
    if (zi->meta.isa_ext == ZYDIS_ISA_EXT_X87) return C_X87;
    if (simd_isa_ext(zi->meta.isa_ext)) return C_SIMD;
    for (unsigned i = 0; i < zi->operand_count; i++) {
        if (zo[i].type != ZYDIS_OPERAND_TYPE_REGISTER) continue;
        ZydisRegisterClass rc = ZydisRegisterGetClass(zo[i].reg.value);
        if (rc == ZYDIS_REGCLASS_MMX || rc == ZYDIS_REGCLASS_XMM) return C_SIMD;
    }
    return C_INT;
}

static enum cls class_of_hvp(const struct hvp_x86_insn *hi, const uint8_t *b, size_t n)
{
    switch (hi->enc) {
    case HVP_X86_ENC_VEX: return C_VEX;
    case HVP_X86_ENC_EVEX: return C_EVEX;
    case HVP_X86_ENC_XOP: return C_XOP;
    case HVP_X86_ENC_3DNOW: return C_3DNOW;
    default: break;
    }
    switch (hi->isa) {
    case HVP_X86_ISA_X87: return C_X87;
    case HVP_X86_ISA_MMX:
    case HVP_X86_ISA_SSE:
    case HVP_X86_ISA_SSE2:
    case HVP_X86_ISA_SSE3:
    case HVP_X86_ISA_SSSE3:
    case HVP_X86_ISA_SSE41:
    case HVP_X86_ISA_SSE42:
    case HVP_X86_ISA_SSE4A:
    case HVP_X86_ISA_AES:
    case HVP_X86_ISA_PCLMUL:
    case HVP_X86_ISA_SHA: return C_SIMD;
    default: break;
    }
    (void)b;
    (void)n;
    return C_INT;
}

/* The class of bytes neither decoder accepts as anything more specific:
 * used when hvp rejects what Zydis does not either know. Looks past
 * legacy/REX prefixes at the first opcode byte. */
static enum cls class_of_bytes(const uint8_t *b, size_t n, unsigned mode)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        if (c == 0x66 || c == 0x67 || c == 0xf0 || c == 0xf2 || c == 0xf3 || c == 0x26 ||
            c == 0x2e || c == 0x36 || c == 0x3e || c == 0x64 || c == 0x65 ||
            (mode == 64 && (c & 0xf0) == 0x40))
            i++;
        else
            break;
    }
    if (i >= n) return C_INT;
    uint8_t c = b[i];
    bool modrm_reg = i + 1 < n && (mode == 64 || (b[i + 1] & 0xc0) == 0xc0);
    if (c == 0xc4 || c == 0xc5) return modrm_reg ? C_VEX : C_INT;
    if (c == 0x62) return modrm_reg ? C_EVEX : C_INT;
    if (c == 0x8f && i + 1 < n && (b[i + 1] & 0x1f) >= 8) return C_XOP;
    if (c >= 0xd8 && c <= 0xdf) return C_X87;
    if (c == 0x0f && i + 1 < n) {
        uint8_t d = b[i + 1];
        if (d == 0x0f) return C_3DNOW;
        if (d == 0x38 || d == 0x3a || (d >= 0x10 && d <= 0x17) || (d >= 0x28 && d <= 0x2f) ||
            (d >= 0x50 && d <= 0x7f) || d == 0xc2 || (d >= 0xc4 && d <= 0xc6) || d >= 0xd0)
            return C_SIMD;
    }
    return C_INT;
}

static void hexs(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 3 * i, "%02x%s", b[i], i + 1 < n ? " " : "");
    if (!n) out[0] = 0;
}

struct ctx {
    ZydisDecoder zd[3]; /* 16, 32, 64 */
    ZydisFormatter zf;
};

static ZydisDecoder *dec_for(struct ctx *x, unsigned mode)
{
    return &x->zd[mode == 16 ? 0 : mode == 32 ? 1 : 2];
}

static void ctx_init(struct ctx *x)
{
    zydis_init(&x->zd[0], 16);
    zydis_init(&x->zd[1], 32);
    zydis_init(&x->zd[2], 64);
    ZydisFormatterInit(&x->zf, ZYDIS_FORMATTER_STYLE_INTEL);
    ZydisFormatterSetProperty(&x->zf, ZYDIS_FORMATTER_PROP_FORCE_SIZE, ZYAN_TRUE);
}

static inline uint64_t maskw(uint64_t v, unsigned bytes)
{
    return bytes == 0 || bytes >= 8 ? v : v & ((UINT64_C(1) << (8 * bytes)) - 1);
}

static const char *zreg(ZydisRegister r)
{
    const char *s = ZydisRegisterGetString(r);
    return s ? s : "?";
}

static const char *hreg(unsigned r)
{
    return r == HVP_X86_REG_NONE ? "none" : hvp_x86_reg_name(r);
}

/* Compares one visible Zydis operand with one hvp operand. Returns the
 * aspect that differs (A_OPERANDS or A_SIZE) or -1; writes why. */
static int cmp_operand(const ZydisDecodedInstruction *zi, const ZydisDecodedOperand *z,
                       const struct hvp_x86_insn *hi, const struct hvp_x86_operand *h, char *why,
                       size_t wsz)
{
    switch (z->type) {
    case ZYDIS_OPERAND_TYPE_REGISTER:
        if (h->kind != HVP_X86_OPK_REG || strcmp(zreg(z->reg.value), hreg(h->reg))) {
            snprintf(why, wsz, "register %s vs hvp kind %u reg %s", zreg(z->reg.value), h->kind,
                     h->kind == HVP_X86_OPK_REG ? hreg(h->reg) : "-");
            return A_OPERANDS;
        }
        return -1;
    case ZYDIS_OPERAND_TYPE_MEMORY: {
        if (h->kind != HVP_X86_OPK_MEM) {
            snprintf(why, wsz, "memory vs hvp kind %u", h->kind);
            return A_OPERANDS;
        }
        const struct hvp_x86_mem *m = &hi->mem;
        unsigned as = zi->address_width / 8;
        const char *zbase = z->mem.base == ZYDIS_REGISTER_NONE ? "none" : zreg(z->mem.base);
        const char *zidx = z->mem.index == ZYDIS_REGISTER_NONE ? "none" : zreg(z->mem.index);
        bool bad = strcmp(zreg(z->mem.segment), hreg(m->seg)) || strcmp(zbase, hreg(m->base)) ||
                   strcmp(zidx, hreg(m->index)) ||
                   (z->mem.index != ZYDIS_REGISTER_NONE &&
                    (z->mem.scale ? z->mem.scale : 1) != m->scale) ||
                   maskw((uint64_t)z->mem.disp.value, as) != maskw((uint64_t)m->disp, as);
        if (bad) {
            snprintf(why, wsz, "memory %s:[%s+%s*%u%+" PRId64 "] vs hvp %s:[%s+%s*%u%+" PRId64 "]",
                     zreg(z->mem.segment), zbase, zidx, z->mem.scale, (int64_t)z->mem.disp.value,
                     hreg(m->seg), hreg(m->base), hreg(m->index), m->scale, m->disp);
            return A_OPERANDS;
        }
        /* Access size: only for plain memory operands (not lea's address,
         * MPX's MIB, VSIB or EVEX broadcast). */
        if (z->mem.type == ZYDIS_MEMOP_TYPE_MEM &&
            !(h->flags & (HVP_X86_OPF_BCST | HVP_X86_OPF_VSIB)) &&
            zi->encoding != ZYDIS_INSTRUCTION_ENCODING_EVEX && z->size / 8 != h->size) {
            snprintf(why, wsz, "memory size %u vs hvp %u", z->size / 8, h->size);
            return A_SIZE;
        }
        return -1;
    }
    case ZYDIS_OPERAND_TYPE_POINTER:
        if (h->kind != HVP_X86_OPK_FAR || (uint16_t)hi->imm2 != z->ptr.segment ||
            (uint32_t)hi->imm != z->ptr.offset) {
            snprintf(why, wsz, "far %x:%x vs hvp kind %u %x:%x", z->ptr.segment, z->ptr.offset,
                     h->kind, (unsigned)(uint16_t)hi->imm2, (unsigned)(uint32_t)hi->imm);
            return A_OPERANDS;
        }
        return -1;
    case ZYDIS_OPERAND_TYPE_IMMEDIATE: {
        if (z->imm.is_relative) {
            /* both sign-extend the displacement to 64 bits */
            if (h->kind != HVP_X86_OPK_REL || (uint64_t)hi->imm != z->imm.value.u) {
                snprintf(why, wsz, "rel %" PRId64 " vs hvp kind %u %" PRId64, z->imm.value.s,
                         h->kind, hi->imm);
                return A_OPERANDS;
            }
            return -1;
        }
        int64_t hv = h->index ? hi->imm2 : hi->imm;
        /* The immediate after extension (what the instruction computes
         * with): Zydis sign-extends a signed immediate to 64 bits and
         * zero-extends the rest; its width is the instruction's operand
         * width when signed, the encoded width otherwise. hvp's value must
         * agree within that width, and its size (header: "immediate width
         * after extension") must be that width. */
        unsigned w = z->imm.is_signed ? zi->operand_width / 8 : z->size / 8;
        if (!w) w = z->size / 8;
        if (h->kind != HVP_X86_OPK_IMM || maskw((uint64_t)hv, w) != maskw(z->imm.value.u, w)) {
            snprintf(why, wsz, "imm %#" PRIx64 " (width %u) vs hvp kind %u %#" PRIx64 " (size %u)",
                     maskw(z->imm.value.u, w), w, h->kind, (uint64_t)hv, h->size);
            return A_OPERANDS;
        }
        if (h->size != w) {
            snprintf(why, wsz, "imm %#" PRIx64 ": width after extension %u vs hvp size %u",
                     maskw(z->imm.value.u, w), w, h->size);
            return A_SIZE;
        }
        return -1;
    }
    default: snprintf(why, wsz, "unknown Zydis operand type %d", z->type); return A_OPERANDS;
    }
}

/* Whether the address size shows in what the instruction does: it has a
 * memory operand (visible or not: string instructions, xlat) or counts in
 * rCX by address size (loop, jrcxz). */
static bool addrsize_matters(const ZydisDecodedInstruction *zi, const ZydisDecodedOperand *zo)
{
    switch (zi->mnemonic) {
    case ZYDIS_MNEMONIC_LOOP:
    case ZYDIS_MNEMONIC_LOOPE:
    case ZYDIS_MNEMONIC_LOOPNE:
    case ZYDIS_MNEMONIC_JCXZ:
    case ZYDIS_MNEMONIC_JECXZ:
    case ZYDIS_MNEMONIC_JRCXZ: return true;
    default: break;
    }
    for (unsigned i = 0; i < zi->operand_count; i++)
        if (zo[i].type == ZYDIS_OPERAND_TYPE_MEMORY) return true;
    return false;
}

/* Compares one instruction. Returns the step to the next one: Zydis's
 * length when it decodes, else hvp's when it decodes, else 1. */
static unsigned compare_one(struct ctx *x, struct stats *st, const uint8_t *b, size_t n,
                            unsigned mode, uint64_t addr, const char *where, uint64_t where_n)
{
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
    struct hvp_x86_insn hi;
    /* Both see up to 16 bytes: one more than the longest instruction, so
     * that "too long" and "truncated" can be told apart. */
    size_t lim = n < 16 ? n : 16;
    ZyanStatus zs = ZydisDecoderDecodeFull(dec_for(x, mode), b, lim, &zi, zo);
    int hlen = hvp_x86_decode(&hi, b, lim, mode);
    bool zok = ZYAN_SUCCESS(zs), hok = hlen > 0;
    st->checked++;
    if (!zok && !hok) {
        st->both_invalid++;
        /* Both reject it. With fewer than 16 bytes, "truncated" or
         * "invalid" depends on what a decoder checks first, and either is
         * fair; but with 16 at hand nothing is truncated ("fetch more
         * bytes" would be the wrong answer: it is too long or invalid). */
        bool zt = zs == ZYDIS_STATUS_NO_MORE_DATA, ht = hlen == -HVP_X86_ETRUNCATED;
        if (lim < 16 || zt == ht) return 1;
        enum cls c = class_of_bytes(b, lim, mode);
        st->mism[c][A_ERROR]++;
        bool fails = !st->ratcheted[c][A_ERROR];
        st->failing += fails;
        if (st->shown[c][A_ERROR]++ < st->show || (fails && st->failing <= 20)) {
            char hx[64];
            hexs(hx, b, lim);
            printf("%s %s/error: %u-bit %s %#" PRIx64 " [%s] (%zu bytes)\n    zydis: %s\n    "
                   "hvp:   error %d\n",
                   fails ? "FAIL" : "todo", cls_name[c], mode, where, where_n, hx, lim,
                   zt                                        ? "truncated"
                   : zs == ZYDIS_STATUS_INSTRUCTION_TOO_LONG ? "too long"
                                                             : "invalid",
                   hlen);
        }
        return 1;
    }

    enum cls c = zok ? class_of_zydis(&zi, zo) : hok ? class_of_hvp(&hi, b, n) : C_INT;
    if (!zok && hok && c == C_INT) c = class_of_bytes(b, lim, mode);
    int aspect = -1;
    char why[256] = "";

    if (zok != hok) {
        aspect = A_VALIDITY;
        snprintf(why, sizeof(why), "%s", zok ? "hvp rejects it" : "Zydis rejects it");
    } else if (zi.length != hlen) {
        aspect = A_LENGTH;
        snprintf(why, sizeof(why), "length %u vs hvp %d", zi.length, hlen);
    } else if (strcmp(ZydisMnemonicGetString(zi.mnemonic), hvp_x86_op_name(hi.op))) {
        aspect = A_MNEMONIC;
        snprintf(why, sizeof(why), "mnemonic %s vs hvp %s", ZydisMnemonicGetString(zi.mnemonic),
                 hvp_x86_op_name(hi.op));
    } else if (zi.address_width / 8 != hi.addrsize && addrsize_matters(&zi, zo)) {
        /* The address size decides the registers of string instructions,
         * loop's counter and xlat's base, none of them visible operands. */
        aspect = A_OPERANDS;
        snprintf(why, sizeof(why), "address size %u vs hvp %u", zi.address_width / 8, hi.addrsize);
    } else {
        /* The visible operands (explicit and implicit) in order; the EVEX
         * writemask is compared with insn.mask instead. */
        ZydisDecodedOperand vis[ZYDIS_MAX_OPERAND_COUNT];
        unsigned nv = 0, zmask = 0;
        for (unsigned i = 0; i < zi.operand_count_visible; i++) {
            if (zo[i].visibility == ZYDIS_OPERAND_VISIBILITY_HIDDEN) continue;
            if (zo[i].encoding == ZYDIS_OPERAND_ENCODING_MASK &&
                zo[i].type == ZYDIS_OPERAND_TYPE_REGISTER) {
                zmask = (unsigned)(zo[i].reg.value - ZYDIS_REGISTER_K0);
                continue;
            }
            vis[nv++] = zo[i];
        }
        for (size_t k = 0; zydis_wrong[k].fix; k++)
            if (zydis_wrong[k].fix(mode, &zi, vis, &nv)) st->zydis_known++;
        if (nv != hi.nops || hi.nops > 5) {
            aspect = A_OPERANDS;
            snprintf(why, sizeof(why), "%u operands vs hvp %u", nv, hi.nops);
        } else if (zi.encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX && zmask != hi.mask) {
            aspect = A_OPERANDS;
            snprintf(why, sizeof(why), "mask k%u vs hvp k%u", zmask, hi.mask);
        } else {
            for (unsigned i = 0; i < nv && aspect < 0; i++) {
                char w[200];
                int a = cmp_operand(&zi, &vis[i], &hi, &hi.ops[i], w, sizeof(w));
                if (a >= 0) {
                    aspect = a;
                    snprintf(why, sizeof(why), "operand %u: %s", i, w);
                }
            }
        }
    }
    if (aspect < 0) return zi.length;

    if (aspect == A_VALIDITY && zok) {
        for (size_t k = 0; k < sizeof(not_in_target) / sizeof(not_in_target[0]); k++)
            if (zi.meta.isa_ext == not_in_target[k].ext) {
                st->not_target++;
                return zi.length;
            }
        for (size_t k = 0; k < sizeof(not_in_target_set) / sizeof(not_in_target_set[0]); k++)
            if (zi.meta.isa_set == not_in_target_set[k].set) {
                st->not_target++;
                return zi.length;
            }
    }

    st->mism[c][aspect]++;
    bool fails = !st->ratcheted[c][aspect];
    if (fails) st->failing++;
    if (st->shown[c][aspect] < st->show || (fails && st->failing <= 20)) {
        st->shown[c][aspect]++;
        char hx[64], zt[160] = "(invalid)", ht[160] = "(invalid)";
        size_t shown_len = zok ? zi.length : hok ? (size_t)hlen : lim;
        hexs(hx, b, shown_len);
        if (zok)
            ZydisFormatterFormatInstruction(&x->zf, &zi, zo, zi.operand_count_visible, zt,
                                            sizeof(zt), addr, NULL);
        if (hok) hvp_x86_format(&hi, addr, ht, sizeof(ht));
        printf("%s %s/%s: %u-bit %s %#" PRIx64 " [%s]\n    zydis: %s\n    hvp:   %s\n    %s\n",
               fails ? "FAIL" : "todo", cls_name[c], aspect_name[aspect], mode, where, where_n, hx,
               zt, ht, why);
    }
    return zok ? zi.length : hok ? (unsigned)hlen : 1;
}

/* ------------------------------------------------------------------------
 * Random byte strings. */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

struct rng {
    uint64_t s[4];
};

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Legacy prefixes, weighted towards the ones code uses (66, F2, F3). */
#define RANDOM_BUF 32

static const uint8_t legacy_pfx[16] = {0x66, 0x66, 0x66, 0x67, 0x67, 0xf2, 0xf2, 0xf3,
                                       0xf3, 0xf0, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65};

/* "vvvv = 1111" (no register) half of the time: many forms require it. */
static uint8_t vvvv_bits(uint64_t v)
{
    return (v & 1) ? 0x78 : (uint8_t)((v >> 1) & 0x78);
}

/* Fills b[0..RANDOM_BUF) with one random instruction-looking string (at
 * most 14 prefixes and a 4-byte escape, then random bytes); returns how
 * many bytes are available to the decoders (1..16). */
static size_t random_insn(struct rng *r, uint8_t *b, unsigned mode)
{
    uint64_t v = rng_next(r);
    for (int i = 0; i < RANDOM_BUF; i += 8) {
        uint64_t w = rng_next(r);
        memcpy(b + i, &w, 8);
    }
    size_t p = 0;
    unsigned npfx = (v & 7) < 4 ? 0 : (v & 7) - 3; /* 0..4, mostly 0 */
    if ((v & 0xf8) == 0) {                         /* 1 in 32: a long run, for the 15-byte limit */
        npfx = 8 + (unsigned)((v >> 8) % 7);
        v = rng_next(r);
    } else {
        v >>= 3;
    }
    for (unsigned i = 0; i < npfx; i++, v >>= 4)
        b[p++] = legacy_pfx[v & 15];
    v = rng_next(r);
    if (mode == 64 && (v & 3) == 0) b[p++] = (uint8_t)(0x40 | ((v >> 2) & 15));
    v >>= 6;
    /* The encoding space, in 32nds: VEX 8, EVEX 7, XOP 1, 0F 5, 0F38 3,
     * 0F3A 2, 3DNow! 1, one-byte opcodes 5. */
    static const uint8_t kinds[32] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3,
                                      4, 4, 4, 4, 4, 5, 5, 5, 6, 6, 7, 8, 8, 8, 8, 8};
    unsigned kind = kinds[v & 31];
    v >>= 5;
    uint64_t f = rng_next(r); /* field values */
    /* In 16/32-bit mode the byte after C4/C5/62 needs its top bits set to
     * form a VEX/EVEX prefix rather than LES/LDS/BOUND. */
    uint8_t top = mode == 64 ? 0 : 0xc0;
    static const uint8_t evex_maps[8] = {1, 1, 2, 2, 3, 5, 6, 0};
    switch (kind) {
    case 0: /* VEX2: R vvvv L pp */
        b[p++] = 0xc5;
        b[p++] = (uint8_t)((f & 0x87) | vvvv_bits(f >> 8) | top);
        break;
    case 1: /* VEX3: RXB mmmmm, W vvvv L pp */
        b[p++] = 0xc4;
        b[p++] = (uint8_t)((f & 0xe0) | top |
                           ((f & 0x300) == 0x300 ? (f >> 16) & 31 : 1 + (f >> 8) % 3));
        b[p++] = (uint8_t)(((f >> 24) & 0x87) | vvvv_bits(f >> 32));
        break;
    case 2: /* EVEX: RXBR' 0 mmm, W vvvv 1 pp, z L'L b V' aaa */
        b[p++] = 0x62;
        b[p++] = (uint8_t)((f & 0xf0) | top | evex_maps[(f >> 8) & 7]);
        b[p++] = (uint8_t)(((f >> 16) & 0x83) | vvvv_bits(f >> 24) | 0x04);
        b[p++] = (uint8_t)(((f >> 32) & 0xf7) | ((f >> 40) & 1 ? 0x08 : 0));
        break;
    case 3: /* XOP: RXB mmmmm (8..10), W vvvv L 00 */
        b[p++] = 0x8f;
        b[p++] = (uint8_t)((f & 0xe0) | top | (8 + (f >> 8) % 3));
        b[p++] = (uint8_t)(((f >> 16) & 0x84) | vvvv_bits(f >> 24));
        break;
    case 4: b[p++] = 0x0f; break;
    case 5:
        b[p++] = 0x0f;
        b[p++] = 0x38;
        break;
    case 6:
        b[p++] = 0x0f;
        b[p++] = 0x3a;
        break;
    case 7:
        b[p++] = 0x0f;
        b[p++] = 0x0f;
        break;      /* 3DNow! */
    default: break; /* a random 1-byte opcode */
    }
    /* Mostly a full window, sometimes short to exercise truncation. */
    size_t avail = 16;
    v = rng_next(r);
    if ((v & 15) == 0) avail = 1 + (size_t)((v >> 4) % 16);
    return avail;
}

static int run_random(struct ctx *x, uint64_t seed, uint64_t count, unsigned mode, unsigned show,
                      struct stats *total)
{
    struct stats st;
    char label[96];
    snprintf(label, sizeof(label), "random %u-bit seed %" PRIu64, mode, seed);
    stats_init(&st, show, label);
    struct rng r;
    rng_seed(&r, seed ^ ((uint64_t)mode << 56));
    uint8_t b[RANDOM_BUF];
    for (uint64_t i = 0; i < count; i++) {
        size_t n = random_insn(&r, b, mode);
        compare_one(x, &st, b, n, mode, 0x1000, "case", i);
    }
    stats_print(&st);
    if (st.failing)
        printf("  reproduce: zydis-diff random --seed %" PRIu64 " --count %" PRIu64
               " --mode %u -v\n",
               seed, count, mode);
    stats_add(total, &st);
    return st.failing ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * The .text corpus. */

struct pathlist {
    char **v;
    size_t n, cap;
};

static void pl_add(struct pathlist *pl, const char *p)
{
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? pl->cap * 2 : 256;
        pl->v = realloc(pl->v, pl->cap * sizeof(*pl->v));
        if (!pl->v) abort();
    }
    pl->v[pl->n++] = strdup(p);
}

static void walk(struct pathlist *pl, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat s;
        if (lstat(p, &s)) continue;
        if (S_ISDIR(s.st_mode) && depth < 3)
            walk(pl, p, depth + 1);
        else if (S_ISREG(s.st_mode) && s.st_size >= (off_t)sizeof(Elf64_Ehdr))
            pl_add(pl, p);
    }
    closedir(d);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds .text in an ELF64 x86-64 image. */
static bool find_text(const uint8_t *m, size_t sz, uint64_t *off, uint64_t *len, uint64_t *addr)
{
    if (sz < sizeof(Elf64_Ehdr) || memcmp(m, ELFMAG, SELFMAG)) return false;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m;
    if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
        eh->e_machine != EM_X86_64 || (eh->e_type != ET_EXEC && eh->e_type != ET_DYN))
        return false;
    if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shoff > sz ||
        (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > sz - eh->e_shoff ||
        eh->e_shstrndx >= eh->e_shnum)
        return false;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(m + eh->e_shoff);
    const Elf64_Shdr *ss = &sh[eh->e_shstrndx];
    if (ss->sh_offset > sz || ss->sh_size > sz - ss->sh_offset) return false;
    const char *names = (const char *)m + ss->sh_offset;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_name >= ss->sh_size || sh[i].sh_type != SHT_PROGBITS) continue;
        if (strncmp(names + sh[i].sh_name, ".text", ss->sh_size - sh[i].sh_name) ||
            sh[i].sh_name + 6 > ss->sh_size)
            continue;
        if (sh[i].sh_offset > sz || sh[i].sh_size > sz - sh[i].sh_offset) return false;
        *off = sh[i].sh_offset;
        *len = sh[i].sh_size;
        *addr = sh[i].sh_addr;
        return true;
    }
    return false;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int run_corpus(struct ctx *x, char **paths, int npaths, uint64_t budget, double tlimit,
                      unsigned show)
{
    struct pathlist pl = {0};
    if (npaths) {
        for (int i = 0; i < npaths; i++)
            pl_add(&pl, paths[i]);
    } else {
        static const char *const dirs[] = {"/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu",
                                           "/usr/libexec", "/usr/lib/gcc"};
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
            walk(&pl, dirs[i], 0);
        qsort(pl.v, pl.n, sizeof(*pl.v), cmp_str);
    }
    /* First pass: the ELF files and their .text sizes (deduplicated by
     * inode), to share the budget out. */
    struct item {
        char *path;
        uint64_t off, len, addr;
    } *items = calloc(pl.n ? pl.n : 1, sizeof(*items));
    struct seen {
        dev_t dev;
        ino_t ino;
    } *seen = calloc(pl.n ? pl.n : 1, sizeof(*seen));
    size_t ni = 0, nseen = 0;
    uint64_t total_text = 0;
    for (size_t i = 0; i < pl.n; i++) {
        int fd = open(pl.v[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat s;
        bool dup = false;
        if (fstat(fd, &s) == 0)
            for (size_t k = 0; k < nseen && !dup; k++)
                dup = seen[k].dev == s.st_dev && seen[k].ino == s.st_ino;
        if (dup || !S_ISREG(s.st_mode)) {
            close(fd);
            continue;
        }
        seen[nseen++] = (struct seen){s.st_dev, s.st_ino};
        void *m = mmap(NULL, (size_t)s.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (m == MAP_FAILED) continue;
        uint64_t off, len, addr;
        if (find_text(m, (size_t)s.st_size, &off, &len, &addr) && len) {
            items[ni++] = (struct item){pl.v[i], off, len, addr};
            total_text += len;
        }
        munmap(m, (size_t)s.st_size);
    }
    /* Share the budget out: small files are read whole, and what is left
     * is split evenly among the larger ones (a cap found by water-filling
     * over the sorted sizes); a file over the cap is read as four windows
     * spread over its .text. Deterministic for a given machine. */
    if (ni == 0) {
        printf("SKIP: no x86-64 ELF file with a .text section found%s\n",
               npaths ? " among the paths given" : " under /usr");
        free(items);
        free(seen);
        for (size_t i = 0; i < pl.n; i++)
            free(pl.v[i]);
        free(pl.v);
        return 77;
    }
    uint64_t cap = budget;
    {
        uint64_t *lens = malloc((ni ? ni : 1) * sizeof(*lens));
        for (size_t i = 0; i < ni; i++)
            lens[i] = items[i].len;
        qsort(lens, ni, sizeof(*lens), cmp_u64);
        uint64_t left = budget;
        cap = UINT64_MAX;
        for (size_t i = 0; i < ni; i++) {
            uint64_t share = left / (ni - i);
            if (lens[i] > share) {
                cap = share;
                break;
            }
            left -= lens[i];
        }
        free(lens);
        if (cap < 16384) cap = 16384;
    }
    struct stats st;
    stats_init(&st, show, "corpus");
    double t0 = now_s();
    uint64_t bytes = 0, files = 0;
    bool timed_out = false;
    for (size_t i = 0; i < ni && !timed_out; i++) {
        int fd = open(items[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat s;
        if (fstat(fd, &s)) {
            close(fd);
            continue;
        }
        void *m = mmap(NULL, (size_t)s.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (m == MAP_FAILED) continue;
        const uint8_t *text = (const uint8_t *)m + items[i].off;
        uint64_t len = items[i].len;
        unsigned nwin = len <= cap ? 1 : 4;
        if (nwin > 1 && cap / 4 < 16) nwin = 1;
        uint64_t wlen = len <= cap ? len : cap / 4;
        for (unsigned w = 0; w < nwin; w++) {
            uint64_t start = nwin == 1 ? 0 : (len - wlen) / (nwin - 1) * w;
            uint64_t end = start + wlen;
            for (uint64_t pos = start; pos < end;) {
                pos += compare_one(x, &st, text + pos, len - pos, 64, items[i].addr + pos,
                                   items[i].path, items[i].off + pos);
            }
            bytes += wlen;
        }
        files++;
        munmap(m, (size_t)s.st_size);
        if (tlimit > 0 && now_s() - t0 > tlimit) timed_out = true;
    }
    double t = now_s() - t0;
    stats_print(&st);
    printf("corpus: %" PRIu64 " files of %zu, %.1f MiB of %.1f MiB .text, %.1f s%s\n", files, ni,
           bytes / 1048576.0, total_text / 1048576.0, t,
           timed_out ? " (stopped at the time limit)" : "");
    free(items);
    free(seen);
    for (size_t i = 0; i < pl.n; i++)
        free(pl.v[i]);
    free(pl.v);
    return st.failing ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * One instruction, both views. */

static int run_bytes(struct ctx *x, unsigned mode, char **hex, int nhex)
{
    uint8_t b[32];
    size_t n = 0;
    for (int i = 0; i < nhex; i++)
        for (const char *p = hex[i]; *p;) {
            unsigned v;
            if (*p == ' ') {
                p++;
                continue;
            }
            if (n == sizeof(b) || sscanf(p, "%2x", &v) != 1 || !p[1]) {
                fprintf(stderr, "zydis-diff: bad hex '%s'\n", hex[i]);
                return 2;
            }
            b[n++] = (uint8_t)v;
            p += 2;
        }
    struct stats st;
    stats_init(&st, 1, "bytes");
    for (unsigned a = 0; a < A_COUNT; a++)
        for (unsigned c = 0; c < C_COUNT; c++)
            st.ratcheted[c][a] = false; /* show the verdict, whatever the ratchet */
    compare_one(x, &st, b, n, mode, 0, "bytes", 0);
    ZydisDecodedInstruction zi;
    ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
    struct hvp_x86_insn hi;
    char t[256];
    if (ZYAN_SUCCESS(ZydisDecoderDecodeFull(dec_for(x, mode), b, n, &zi, zo))) {
        ZydisFormatterFormatInstruction(&x->zf, &zi, zo, zi.operand_count_visible, t, sizeof(t), 0,
                                        NULL);
        printf("zydis: len %u  %s\n", zi.length, t);
    } else {
        printf("zydis: invalid\n");
    }
    int hl = hvp_x86_decode(&hi, b, n, mode);
    if (hl > 0) {
        hvp_x86_format(&hi, 0, t, sizeof(t));
        printf("hvp:   len %d  %s\n", hl, t);
    } else {
        printf("hvp:   error %d\n", hl);
    }
    printf("%s\n", st.failing ? "MISMATCH" : "match");
    return st.failing ? 1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: zydis-diff corpus [--budget-mib N] [--time-limit S] [-v] [PATH...]\n"
               "       zydis-diff random [--seed N] [--fresh] [--count N] [--mode 16|32|64] [-v]\n"
               "       zydis-diff bytes --mode 16|32|64 HEX...\n"
               "       zydis-diff list   (known Zydis deviations and their reasons)\n");
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    *v = strtoull(s, &end, 0);
    return errno || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    uint64_t seed = 1, count = 200000, mode = 0, budget_mib = 64, tlimit = 300;
    bool fresh = false;
    unsigned show = SHOW_PER_CELL;
    char **rest = calloc((size_t)argc, sizeof(char *));
    int nrest = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--seed"))
            bad = parse_u64(v, &seed), i++;
        else if (!strcmp(a, "--count"))
            bad = parse_u64(v, &count), i++;
        else if (!strcmp(a, "--mode"))
            bad = parse_u64(v, &mode) || (mode != 16 && mode != 32 && mode != 64), i++;
        else if (!strcmp(a, "--budget-mib"))
            bad = parse_u64(v, &budget_mib), i++;
        else if (!strcmp(a, "--time-limit"))
            bad = parse_u64(v, &tlimit), i++;
        else if (!strcmp(a, "--fresh"))
            fresh = true;
        else if (!strcmp(a, "-v"))
            show = 1000;
        else if (a[0] == '-' && a[1] && strcmp(cmd, "bytes"))
            bad = 1;
        else
            rest[nrest++] = argv[i];
        if (bad) {
            fprintf(stderr, "zydis-diff: bad option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    struct ctx *x = malloc(sizeof(*x));
    ctx_init(x);
    printf("zydis-diff: Zydis %u.%u decoder modes: KNC off, AMD branches off, MPX off, CET on, "
           "LZCNT/TZCNT on, WBNOINVD on, CLDEMOTE on\n",
           (unsigned)(ZydisGetVersion() >> 48), (unsigned)(ZydisGetVersion() >> 32 & 0xffff));
    printf("zydis-diff: ratchet (not yet implemented, does not fail):");
    for (size_t i = 0; ratchet[i]; i++)
        printf(" [%s]", ratchet[i]);
    if (!ratchet[0]) printf(" none: every mismatch fails");
    printf("\n");
    int rc;
    if (!strcmp(cmd, "list")) {
        printf("Known Zydis deviations from the manuals (fixed up before comparing):\n");
        for (size_t k = 0; zydis_wrong[k].fix; k++)
            printf("  - %s\n    because: %s\n", zydis_wrong[k].what, zydis_wrong[k].why);
        printf("Decoded by Zydis, not in the target ISA (hvp may reject):\n");
        for (size_t k = 0; k < sizeof(not_in_target) / sizeof(not_in_target[0]); k++)
            printf("  - %s\n", not_in_target[k].why);
        for (size_t k = 0; k < sizeof(not_in_target_set) / sizeof(not_in_target_set[0]); k++)
            printf("  - %s\n", not_in_target_set[k].why);
        rc = 0;
    } else if (!strcmp(cmd, "random")) {
        static const unsigned all[] = {64, 32, 16};
        struct stats total;
        stats_init(&total, 0, "random total");
        rc = 0;
        double t0 = now_s();
        uint64_t seeds[2] = {seed, 0};
        if (fresh) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            uint64_t s =
                (uint64_t)t.tv_sec * 1000000007u ^ (uint64_t)t.tv_nsec ^ ((uint64_t)getpid() << 32);
            seeds[1] = splitmix(&s) >> 1;
        }
        for (int k = 0; k < (fresh ? 2 : 1); k++) {
            printf("zydis-diff: random seed %" PRIu64 "%s, %" PRIu64 " cases per mode\n", seeds[k],
                   k ? " (fresh)" : "", count);
            for (unsigned m = 0; m < 3; m++)
                if (!mode || mode == all[m])
                    rc |= run_random(x, seeds[k], count, all[m], show, &total);
        }
        stats_print(&total);
        printf("random: %.1f s\n", now_s() - t0);
    } else if (!strcmp(cmd, "corpus")) {
        rc = run_corpus(x, rest, nrest, budget_mib << 20, (double)tlimit, show);
    } else if (!strcmp(cmd, "bytes")) {
        if (!mode || !nrest) {
            usage(stderr);
            return 2;
        }
        rc = run_bytes(x, (unsigned)mode, rest, nrest);
    } else {
        usage(stderr);
        rc = 2;
    }
    printf("zydis-diff: %s\n", rc == 0 ? "PASS" : rc == 1 ? "FAIL" : rc == 77 ? "SKIP" : "usage");
    free(x);
    free(rest);
    return rc;
}
