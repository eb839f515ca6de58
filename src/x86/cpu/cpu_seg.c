/* hvp software x86-64 CPU, system model: modes and segmentation.
 *
 * Segment-register loads with the descriptor checks, far JMP/CALL/RET,
 * the 16/32-bit forms of the stack and branch instructions (SS:SP/ESP,
 * IP/EIP wrapping and the CS limit), segment base/limit/type checks of
 * memory operands in 16/32-bit modes, and event delivery outside long
 * mode (real-mode IVT, protected-mode IDT). 64-bit mode's own forms stay
 * in cpu_build.c/cpu_sys.c; the builder here runs first in system mode
 * and takes what depends on segmentation.
 *
 * Segment attributes use the VMX access-rights layout of struct
 * hvp_cpu_segment: type 0..3, S 4, DPL 5..6, P 7, L 13, D/B 14, G 15. */
#include <stdio.h>

#include "cpu_internal.h"

#define CR0_PE   0x1ull
#define EFER_LMA 0x400ull
#define RF_BIT   0x10000ull
#define NT_BIT   0x4000ull
#define VM_BIT   0x20000ull
#define AC_BIT   0x40000ull
#define A_P      0x80u
#define A_L      0x2000u
#define A_DB     0x4000u

#define M(sz) hvp_size_mask(sz)

static bool pmode(const struct hvp_cpu *cpu)
{
    return cpu->st.cr0 & CR0_PE;
}

static bool lma(const struct hvp_cpu *cpu)
{
    return cpu->st.efer & EFER_LMA;
}

static _Noreturn void internal(struct hvp_cpu *cpu, const char *what)
{
    snprintf(cpu->err, sizeof cpu->err, "%s", what);
    cpu->exit->reason = HVP_CPU_EXIT_INTERNAL;
    longjmp(cpu->jb, 3);
}

/* ---- descriptors ---- */

static struct hvp_cpu_segment seg_from_desc(uint16_t sel, uint64_t d)
{
    struct hvp_cpu_segment s;
    s.selector = sel;
    s.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
    s.limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    s.attr = (uint16_t)(((d >> 40) & 0xff) | (((d >> 52) & 0xf) << 12));
    if (s.attr & 0x8000) s.limit = (s.limit << 12) | 0xfff;
    return s;
}

/* Linear address of sel's descriptor in the GDT or LDT; raises vec(sel)
 * when it lies beyond the table's limit. */
static uint64_t desc_addr(struct hvp_cpu *cpu, uint16_t sel, unsigned vec, uint32_t ext)
{
    uint64_t base;
    uint32_t limit;
    if (sel & 4) {
        const struct hvp_cpu_segment *l = &cpu->st.ldtr;
        if (!(l->selector & ~3u) || !(l->attr & A_P)) hvp_raise(cpu, vec, (sel & 0xfffc) | ext);
        base = l->base;
        limit = l->limit;
    } else {
        base = cpu->st.gdtr.base;
        limit = cpu->st.gdtr.limit;
    }
    if ((uint32_t)(sel & ~7u) + 7 > limit) hvp_raise(cpu, vec, (sel & 0xfffc) | ext);
    return (lma(cpu) ? base : (uint32_t)base) + (sel & ~7u);
}

static uint64_t desc_read(struct hvp_cpu *cpu, uint16_t sel, unsigned vec, uint32_t ext)
{
    uint64_t d;
    hvp_sys_access(cpu, desc_addr(cpu, sel, vec, ext), &d, 8, false);
    return d;
}

/* Sets the accessed bit of a code/data descriptor, as a load does. */
static void desc_accessed(struct hvp_cpu *cpu, uint16_t sel, uint64_t d)
{
    if (d & (1ull << 40)) return;
    uint8_t b = (uint8_t)((d >> 40) | 1);
    hvp_sys_access(cpu, desc_addr(cpu, sel, 13, 0) + 5, &b, 1, true);
}

uint64_t hvp_seg_base(const struct hvp_cpu *cpu, unsigned s)
{
    return s == HVP_SEG_FS ? cpu->fs_base : s == HVP_SEG_GS ? cpu->gs_base : cpu->st.seg[s].base;
}

static void seg_set(struct hvp_cpu *cpu, unsigned s, const struct hvp_cpu_segment *v)
{
    cpu->st.seg[s] = *v;
    if (s == HVP_SEG_FS) cpu->fs_base = v->base;
    if (s == HVP_SEG_GS) cpu->gs_base = v->base;
}

/* What the hot path precomputes: CS base (linear pc = cs_base + rip) and
 * which data segments need no checks. Called from hvp_sys_update_mode. */
void hvp_seg_refresh(struct hvp_cpu *cpu)
{
    uint8_t flat = 0;
    for (unsigned s = 0; s < 6; s++) {
        const struct hvp_cpu_segment *g = &cpu->st.seg[s];
        /* present, data, writable, expand-up (CS: never, writes fault) */
        if (s != HVP_SEG_CS && hvp_seg_base(cpu, s) == 0 && g->limit == 0xffffffff &&
            (g->attr & 0x9e) == 0x92)
            flat |= (uint8_t)(1u << s);
    }
    cpu->seg_flat = flat;
    cpu->cs_base = cpu->mode == 64 ? 0 : (uint32_t)cpu->st.seg[HVP_SEG_CS].base;
}

/* The checks of an access to [off, off+size) of segment g: #GP(0), or
 * #SS(0) for the stack segment. Returns the linear address. */
static uint64_t seg_check(struct hvp_cpu *cpu, const struct hvp_cpu_segment *g, unsigned vec,
                          uint64_t base, uint64_t off, unsigned size, bool write)
{
    unsigned a = g->attr;
    if (pmode(cpu)) {
        if (!(a & A_P)) hvp_raise(cpu, vec, 0); /* null selector */
        bool code = a & 8;
        if (write ? (code || !(a & 2)) : (code && !(a & 2))) hvp_raise(cpu, vec, 0);
    }
    uint64_t last = off + (size ? size : 1) - 1;
    bool bad;
    if ((a & 0x1c) == 0x14) /* expand-down data: valid offsets lie above the limit */
        bad = off <= g->limit || last > ((a & A_DB) ? 0xffffffffull : 0xffffull);
    else
        bad = last > g->limit;
    if (bad) hvp_raise(cpu, vec, 0);
    return (uint32_t)(base + off);
}

uint64_t hvp_seg_lin(struct hvp_cpu *cpu, unsigned s, uint64_t off, unsigned size, bool write)
{
    if ((cpu->seg_flat >> s) & 1) return off;
    return seg_check(cpu, &cpu->st.seg[s], s == HVP_SEG_SS ? 12 : 13, hvp_seg_base(cpu, s), off,
                     size, write);
}

uint64_t hvp_seg_ea_slow(struct hvp_cpu *cpu, const struct hvp_dinsn *d, uint64_t off)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned size = d->osz;
    bool write = false;
    for (unsigned k = 0; k < xi->nops; k++)
        if (xi->ops[k].kind == HVP_X86_OPK_MEM) {
            size = xi->ops[k].size;
            write = xi->ops[k].flags & HVP_X86_OPF_WRITE;
        }
    return hvp_seg_lin(cpu, d->seg & 7, off, size, write);
}

/* ---- the stack in 16/32-bit modes (and far transfers in 64-bit mode) ---- */

static uint64_t sp_mask(const struct hvp_cpu *cpu)
{
    if (cpu->mode == 64) return ~0ull;
    return (cpu->st.seg[HVP_SEG_SS].attr & A_DB) ? 0xffffffffull : 0xffffull;
}

static uint64_t stk_lin(struct hvp_cpu *cpu, int64_t delta, unsigned size, bool write)
{
    uint64_t sp = (cpu->gpr[4] + (uint64_t)delta) & sp_mask(cpu);
    if (cpu->mode == 64) return sp;
    return hvp_seg_lin(cpu, HVP_SEG_SS, sp, size, write);
}

/* Reads size bytes at SS:[SP + delta] / writes them; SP does not move. */
static uint64_t stk_rd(struct hvp_cpu *cpu, int64_t delta, unsigned size)
{
    return hvp_rdn(cpu, stk_lin(cpu, delta, size, false), size);
}

static void stk_wr(struct hvp_cpu *cpu, int64_t delta, unsigned size, uint64_t v)
{
    hvp_wrn(cpu, stk_lin(cpu, delta, size, true), size, v);
}

static void sp_add(struct hvp_cpu *cpu, int64_t delta)
{
    uint64_t m = sp_mask(cpu), sp = cpu->gpr[4] + (uint64_t)delta;
    cpu->gpr[4] = m == 0xffff ? (cpu->gpr[4] & ~m) | (sp & m) : sp & m;
}

/* A near branch target: wraps to the operand size, #GP(0) beyond CS's
 * limit. */
static void jump_to(struct hvp_cpu *cpu, uint64_t t, unsigned osz)
{
    t &= M(osz);
    if (t > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
    cpu->rip = t;
}

/* ---- segment-register loads ---- */

/* Loads data/stack segment register s (not CS) with selector sel: real
 * mode sets base = sel << 4 and keeps the cached limit and attributes (so
 * big-real mode survives); protected mode reads and checks the
 * descriptor. Faults leave the register unchanged. */
void hvp_load_sreg(struct hvp_cpu *cpu, unsigned s, uint16_t sel)
{
    struct hvp_cpu_segment *g = &cpu->st.seg[s];
    if (!pmode(cpu)) {
        struct hvp_cpu_segment n = *g;
        n.selector = sel;
        n.base = (uint64_t)sel << 4;
        seg_set(cpu, s, &n);
        hvp_sys_update_mode(cpu);
        return;
    }
    unsigned rpl = sel & 3, cpl = cpu->cpl;
    if (!(sel & ~3u)) {
        if (s == HVP_SEG_SS && (cpu->mode != 64 || cpl == 3 || rpl != cpl)) hvp_raise_gp0(cpu);
        if (cpu->mode == 64) {
            /* 64-bit mode: FS/GS keep their base (FS_BASE/GS_BASE), SS
             * stays usable at the CPL */
            g->selector = sel;
            if (s == HVP_SEG_SS)
                g->attr = (uint16_t)((g->attr & ~0x60u) | (cpl << 5));
            else if (s != HVP_SEG_FS && s != HVP_SEG_GS)
                *g = (struct hvp_cpu_segment){0, 0, sel, 0};
        } else {
            struct hvp_cpu_segment n = {0, 0, sel, 0}; /* unusable: accesses #GP(0) */
            seg_set(cpu, s, &n);
        }
        hvp_sys_update_mode(cpu);
        return;
    }
    uint64_t desc = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(desc >> 40) & 0x1f, dpl = (unsigned)(desc >> 45) & 3;
    if (!(type & 0x10)) hvp_raise(cpu, 13, sel & 0xfffc); /* system descriptor */
    bool code = type & 8, writable = !code && (type & 2), readable = !code || (type & 2);
    if (s == HVP_SEG_SS) {
        if (!writable || rpl != cpl || dpl != cpl) hvp_raise(cpu, 13, sel & 0xfffc);
        if (!(desc >> 47 & 1)) hvp_raise(cpu, 12, sel & 0xfffc);
    } else {
        bool conforming = code && (type & 4);
        if (!readable || (!conforming && dpl < (rpl > cpl ? rpl : cpl)))
            hvp_raise(cpu, 13, sel & 0xfffc);
        if (!(desc >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    }
    desc_accessed(cpu, sel, desc);
    struct hvp_cpu_segment n = seg_from_desc(sel, desc | (1ull << 40));
    seg_set(cpu, s, &n);
    hvp_sys_update_mode(cpu);
}

/* Loads SS for a return to an outer privilege (RETF, IRET): #GP(sel) on a
 * bad one; a null one only into 64-bit mode below CPL 3. */
static struct hvp_cpu_segment ss_for(struct hvp_cpu *cpu, uint16_t sel, unsigned ncpl,
                                     bool to64)
{
    if (!(sel & ~3u)) {
        if (!to64 || ncpl == 3 || (sel & 3) != ncpl) hvp_raise_gp0(cpu);
        return (struct hvp_cpu_segment){0, 0, sel, (uint16_t)(0x1093 | (ncpl << 5) | A_DB)};
    }
    uint64_t d = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(d >> 40) & 0x1f, dpl = (unsigned)(d >> 45) & 3;
    if ((sel & 3) != ncpl || (type & 0x1a) != 0x12 || dpl != ncpl)
        hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(d >> 47 & 1)) hvp_raise(cpu, 12, sel & 0xfffc);
    desc_accessed(cpu, sel, d);
    return seg_from_desc(sel, d | (1ull << 40));
}

/* After a return to an outer privilege: data segment registers the new
 * CPL may not use become null (SDM RET/IRET "outer privilege"). */
static void null_inner_segs(struct hvp_cpu *cpu)
{
    static const unsigned segs[] = {HVP_SEG_ES, HVP_SEG_DS, HVP_SEG_FS, HVP_SEG_GS};
    for (unsigned i = 0; i < 4; i++) {
        struct hvp_cpu_segment *g = &cpu->st.seg[segs[i]];
        bool conf_code = (g->attr & 0x1c) == 0x1c;
        if (((g->attr >> 5) & 3) < cpu->cpl && !conf_code) {
            if (cpu->mode == 64 && (segs[i] == HVP_SEG_FS || segs[i] == HVP_SEG_GS)) {
                g->selector = 0;
                g->attr = 0;
            } else {
                struct hvp_cpu_segment n = {0, 0, 0, 0};
                seg_set(cpu, segs[i], &n);
            }
        }
    }
}

/* ---- far transfers ---- */

/* The checks of a code-segment target of a far JMP/CALL (not a gate):
 * returns the segment with RPL = CPL. */
static struct hvp_cpu_segment code_target(struct hvp_cpu *cpu, uint16_t sel, uint64_t d)
{
    unsigned type = (unsigned)(d >> 40) & 0x1f, dpl = (unsigned)(d >> 45) & 3, rpl = sel & 3;
    if ((type & 0x18) != 0x18) hvp_raise(cpu, 13, sel & 0xfffc);
    if (type & 4) { /* conforming */
        if (dpl > cpu->cpl) hvp_raise(cpu, 13, sel & 0xfffc);
    } else if (rpl > cpu->cpl || dpl != cpu->cpl) {
        hvp_raise(cpu, 13, sel & 0xfffc);
    }
    if (!(d >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    if (lma(cpu) && (d & (1ull << 53)) && (d & (1ull << 54))) hvp_raise(cpu, 13, sel & 0xfffc);
    desc_accessed(cpu, sel, d);
    struct hvp_cpu_segment s = seg_from_desc((uint16_t)((sel & ~3u) | cpu->cpl), d | (1ull << 40));
    return s;
}

/* The offset check of a far target: canonical for a 64-bit segment, else
 * within the limit (#GP(0)). */
static uint64_t target_off(struct hvp_cpu *cpu, const struct hvp_cpu_segment *cs, uint64_t off,
                           unsigned osz)
{
    if (lma(cpu) && (cs->attr & A_L)) {
        if (!hvp_canonical(off)) hvp_raise_gp0(cpu);
        return off;
    }
    off &= M(osz < 4 ? osz : 4);
    if (off > cs->limit) hvp_raise_gp0(cpu);
    return off;
}

static void load_cs(struct hvp_cpu *cpu, const struct hvp_cpu_segment *cs, uint64_t rip)
{
    cpu->st.seg[HVP_SEG_CS] = *cs;
    cpu->rip = rip;
    hvp_sys_update_mode(cpu);
}

static void real_cs(struct hvp_cpu *cpu, uint16_t sel, uint64_t ip)
{
    struct hvp_cpu_segment n = cpu->st.seg[HVP_SEG_CS];
    n.selector = sel;
    n.base = (uint64_t)sel << 4;
    load_cs(cpu, &n, ip);
}

static _Noreturn void task_switch(struct hvp_cpu *cpu)
{
    internal(cpu, "hardware task switching (TSS or task gate) is not implemented");
}

/* A call gate's target: the code segment and offset, checked. For a CALL
 * to a more privileged non-conforming segment, *inner = true. */
static void call_gate(struct hvp_cpu *cpu, uint16_t sel, uint64_t g, bool call, uint16_t *tsel,
                      uint64_t *tcd, uint64_t *toff, unsigned *params, bool *wide)
{
    unsigned dpl = (unsigned)(g >> 45) & 3, type = (unsigned)(g >> 40) & 0x1f;
    if (dpl < cpu->cpl || dpl < (sel & 3u)) hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(g >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    *tsel = (uint16_t)(g >> 16);
    *toff = (g & 0xffff) | (type == 0xc ? (g >> 32) & 0xffff0000 : 0);
    *params = (unsigned)(g >> 32) & 31;
    *wide = type == 0xc;
    if (lma(cpu)) { /* 16-byte 64-bit call gate */
        uint64_t hi;
        hvp_sys_access(cpu, desc_addr(cpu, sel, 13, 0) + 8, &hi, 8, false);
        if (((hi >> 40) & 0x1f) != 0) hvp_raise(cpu, 13, sel & 0xfffc);
        *toff |= (hi & 0xffffffff) << 32;
        *params = 0;
    }
    if (!(*tsel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t cd = desc_read(cpu, *tsel, 13, 0);
    unsigned cdpl = (unsigned)(cd >> 45) & 3, ctype = (unsigned)(cd >> 40) & 0x1f;
    if ((ctype & 0x18) != 0x18 || cdpl > cpu->cpl) hvp_raise(cpu, 13, *tsel & 0xfffc);
    if (!call && !(ctype & 4) && cdpl != cpu->cpl) hvp_raise(cpu, 13, *tsel & 0xfffc);
    if (lma(cpu) && (!(cd & (1ull << 53)) || (cd & (1ull << 54))))
        hvp_raise(cpu, 13, *tsel & 0xfffc); /* 64-bit gates lead to 64-bit code */
    if (!(cd >> 47 & 1)) hvp_raise(cpu, 11, *tsel & 0xfffc);
    *tcd = cd;
}

/* Far JMP (call = false) or CALL to sel:off with operand size osz. */
static void far_transfer(struct hvp_cpu *cpu, const struct hvp_dinsn *d, uint16_t sel,
                         uint64_t off, bool call)
{
    unsigned osz = d->osz;
    uint64_t next = cpu->rip + d->len;
    if (!pmode(cpu)) {
        if (call) {
            uint64_t a1 = stk_lin(cpu, -(int64_t)osz, osz, true);
            uint64_t a2 = stk_lin(cpu, -2 * (int64_t)osz, osz, true);
            hvp_wrn(cpu, a1, osz, cpu->st.seg[HVP_SEG_CS].selector);
            hvp_wrn(cpu, a2, osz, next & M(osz));
            sp_add(cpu, -2 * (int64_t)osz);
        }
        real_cs(cpu, sel, off & M(osz));
        return;
    }
    if (!(sel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t desc = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(desc >> 40) & 0x1f;
    struct hvp_cpu_segment cs;
    uint64_t rip;
    if (type & 0x10) {
        cs = code_target(cpu, sel, desc);
        rip = target_off(cpu, &cs, off, osz);
    } else if (type == 0xc || (type == 0x4 && !lma(cpu))) {
        uint16_t tsel;
        uint64_t cd, toff;
        unsigned params;
        bool wide;
        call_gate(cpu, sel, desc, call, &tsel, &cd, &toff, &params, &wide);
        unsigned cdpl = (unsigned)(cd >> 45) & 3;
        bool conforming = (cd >> 42) & 1;
        unsigned ncpl = conforming ? cpu->cpl : cdpl;
        cs = seg_from_desc((uint16_t)((tsel & ~3u) | ncpl), cd | (1ull << 40));
        rip = target_off(cpu, &cs, toff, wide ? 4 : 2);
        if (call && ncpl < cpu->cpl) {
            /* inner privilege: new stack from the TSS, old SS:ESP and the
             * parameters copied onto it */
            unsigned gsz = lma(cpu) ? 8 : wide ? 4 : 2;
            uint64_t nsp;
            uint16_t nss;
            if (lma(cpu)) {
                if (4 + ncpl * 8 + 7 > cpu->st.tr.limit)
                    hvp_raise(cpu, 10, cpu->st.tr.selector & 0xfffc);
                hvp_sys_access(cpu, cpu->st.tr.base + 4 + ncpl * 8, &nsp, 8, false);
                nss = (uint16_t)ncpl;
            } else {
                bool t32 = (cpu->st.tr.attr & 0xf) == 0xb || (cpu->st.tr.attr & 0xf) == 0x9;
                unsigned o = t32 ? 4 + ncpl * 8 : 2 + ncpl * 4, w = t32 ? 4 : 2;
                if (o + w + 1 > cpu->st.tr.limit) hvp_raise(cpu, 10, cpu->st.tr.selector & 0xfffc);
                uint32_t v = 0;
                uint16_t s16 = 0;
                hvp_sys_access(cpu, (uint32_t)cpu->st.tr.base + o, &v, w, false);
                hvp_sys_access(cpu, (uint32_t)cpu->st.tr.base + o + w, &s16, 2, false);
                nsp = v;
                nss = s16;
            }
            struct hvp_cpu_segment ss;
            if (lma(cpu)) {
                ss = (struct hvp_cpu_segment){0, 0, nss, (uint16_t)(0x1093 | (ncpl << 5) | A_DB)};
            } else {
                if (!(nss & ~3u)) hvp_raise(cpu, 10, 0);
                uint64_t sd = desc_read(cpu, nss, 10, 0);
                unsigned st = (unsigned)(sd >> 40) & 0x1f, sdpl = (unsigned)(sd >> 45) & 3;
                if ((nss & 3) != ncpl || sdpl != ncpl || (st & 0x1a) != 0x12)
                    hvp_raise(cpu, 10, nss & 0xfffc);
                if (!(sd >> 47 & 1)) hvp_raise(cpu, 12, nss & 0xfffc);
                ss = seg_from_desc(nss, sd | (1ull << 40));
            }
            uint64_t frame[36];
            unsigned n = 0;
            uint64_t old_sp = cpu->gpr[4] & sp_mask(cpu);
            frame[n++] = cpu->st.seg[HVP_SEG_SS].selector;
            frame[n++] = old_sp;
            for (unsigned i = params; i-- > 0;)
                frame[n++] = stk_rd(cpu, (int64_t)(i * gsz), gsz);
            frame[n++] = cpu->st.seg[HVP_SEG_CS].selector;
            frame[n++] = next;
            uint64_t m = lma(cpu) ? ~0ull : (ss.attr & A_DB) ? 0xffffffffull : 0xffffull;
            if (lma(cpu)) nsp &= ~7ull;
            uint8_t buf[36 * 8];
            for (unsigned i = 0; i < n; i++)
                memcpy(buf + (n - 1 - i) * gsz, &frame[i], gsz);
            uint64_t top = (nsp - n * gsz) & m;
            uint64_t lin = lma(cpu) ? top : seg_check(cpu, &ss, 12, ss.base, top, n * gsz, true);
            if (lma(cpu) && !hvp_canonical(lin)) hvp_raise(cpu, 12, 0);
            hvp_sys_access(cpu, lin, buf, n * gsz, true);
            cpu->st.seg[HVP_SEG_SS] = ss;
            cpu->gpr[4] = top;
            load_cs(cpu, &cs, rip);
            return;
        }
        osz = lma(cpu) ? 8 : wide ? 4 : 2;
    } else if (type == 0x5 || type == 0x1 || type == 0x9) {
        task_switch(cpu);
    } else {
        hvp_raise(cpu, 13, sel & 0xfffc);
    }
    if (call) {
        uint64_t a1 = stk_lin(cpu, -(int64_t)osz, osz, true);
        uint64_t a2 = stk_lin(cpu, -2 * (int64_t)osz, osz, true);
        if (cpu->mode == 64 && (!hvp_canonical(a1) || !hvp_canonical(a2))) hvp_raise(cpu, 12, 0);
        hvp_wrn(cpu, a1, osz, cpu->st.seg[HVP_SEG_CS].selector);
        hvp_wrn(cpu, a2, osz, next & M(osz));
        sp_add(cpu, -2 * (int64_t)osz);
    }
    load_cs(cpu, &cs, rip);
}

/* JMP/CALL ptr16:16/32 (aux 1 = call) */
HVP_HANDLER(h_far_ptr)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    far_transfer(cpu, d, (uint16_t)xi->imm2, (uint64_t)xi->imm & M(d->osz), d->aux);
    return d + 1;
}

/* JMP/CALL m16:16/32/64 */
HVP_HANDLER(h_far_mem)
{
    uint64_t a = hvp_ea(cpu, d);
    uint64_t off = hvp_rdn(cpu, a, d->osz);
    uint16_t sel = (uint16_t)hvp_rd16(cpu, a + d->osz);
    far_transfer(cpu, d, sel, off, d->aux);
    return d + 1;
}

/* RETF [imm16] with operand size osz (8 with REX.W in 64-bit mode) */
HVP_HANDLER(h_retf)
{
    unsigned n = d->osz;
    int64_t imm = d->imm;
    uint64_t off = stk_rd(cpu, 0, n);
    uint16_t sel = (uint16_t)stk_rd(cpu, n, n);
    if (!pmode(cpu)) {
        sp_add(cpu, 2 * n + imm);
        real_cs(cpu, sel, off);
        return d + 1;
    }
    unsigned rpl = sel & 3;
    if (!(sel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t desc = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(desc >> 40) & 0x1f, dpl = (unsigned)(desc >> 45) & 3;
    if (rpl < cpu->cpl || (type & 0x18) != 0x18) hvp_raise(cpu, 13, sel & 0xfffc);
    if ((type & 4) ? dpl > rpl : dpl != rpl) hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(desc >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    struct hvp_cpu_segment cs = seg_from_desc(sel, desc | (1ull << 40));
    bool to64 = lma(cpu) && (cs.attr & A_L);
    if (lma(cpu) && (cs.attr & A_L) && (cs.attr & A_DB)) hvp_raise(cpu, 13, sel & 0xfffc);
    uint64_t rip = target_off(cpu, &cs, off, n);
    if (rpl == cpu->cpl) {
        desc_accessed(cpu, sel, desc);
        sp_add(cpu, 2 * n + imm);
        load_cs(cpu, &cs, rip);
        return d + 1;
    }
    /* outer privilege: SS:ESP follow the parameters */
    uint64_t nsp = stk_rd(cpu, 2 * n + imm, n);
    uint16_t nss = (uint16_t)stk_rd(cpu, 3 * n + imm, n);
    struct hvp_cpu_segment ss = ss_for(cpu, nss, rpl, to64);
    desc_accessed(cpu, sel, desc);
    cpu->st.seg[HVP_SEG_SS] = ss;
    load_cs(cpu, &cs, rip); /* CPL = rpl from here */
    cpu->gpr[4] = (nsp + (uint64_t)imm) & sp_mask(cpu);
    null_inner_segs(cpu);
    hvp_sys_update_mode(cpu);
    return d + 1;
}

/* ---- IRET outside 64-bit mode ---- */

static unsigned iopl(const struct hvp_cpu *cpu)
{
    return (unsigned)(cpu->rflags >> 12) & 3;
}

/* New RFLAGS from a popped image of n bytes, with the privilege rules of
 * POPF/IRET: IOPL only at CPL 0, IF only at CPL <= IOPL; VM, VIP, VIF, RF
 * are kept (virtual-8086 mode is not modelled). */
static uint64_t popped_flags(struct hvp_cpu *cpu, uint64_t v, unsigned n, bool iret)
{
    uint64_t f = hvp_flags_get(cpu);
    uint64_t mask = HVP_ARITH | HVP_TF | HVP_DFLAG | HVP_IF | 0x3000 | NT_BIT | AC_BIT | 0x200000;
    /* RF: nothing clears it after the next instruction yet, so IRET does
     * not load it (it would suppress instruction breakpoints forever) */
    (void)iret;
    if (pmode(cpu) && cpu->cpl > 0) mask &= ~(uint64_t)0x3000;
    if (pmode(cpu) && cpu->cpl > iopl(cpu)) mask &= ~(uint64_t)HVP_IF;
    mask &= M(n);
    return (f & ~mask) | (v & mask) | 2;
}

/* RFLAGS from POPF/IRET: TF set arms single-stepping (cpu_event.c). */
static void flags_load(struct hvp_cpu *cpu, uint64_t f)
{
    hvp_flags_set(cpu, f);
    if (f & HVP_TF) atomic_fetch_or_explicit(&cpu->async, HVP_ASYNC_STEP, memory_order_relaxed);
}

HVP_HANDLER(h_iret_legacy)
{
    cpu->nmi_masked = false; /* IRET ends NMI blocking (any IRET, as hardware) */
    unsigned n = d->osz;
    uint64_t ip = stk_rd(cpu, 0, n);
    uint16_t sel = (uint16_t)stk_rd(cpu, n, n);
    uint64_t fl = stk_rd(cpu, 2 * n, n);
    if (!pmode(cpu)) {
        if (ip > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
        sp_add(cpu, 3 * n);
        flags_load(cpu, popped_flags(cpu, fl, n, true));
        real_cs(cpu, sel, ip);
        return d + 1;
    }
    if (hvp_flags_get(cpu) & NT_BIT) task_switch(cpu);
    if ((fl & VM_BIT) && n == 4 && cpu->cpl == 0 && !lma(cpu))
        internal(cpu, "IRET to virtual-8086 mode: not implemented");
    unsigned rpl = sel & 3;
    if (!(sel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t desc = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(desc >> 40) & 0x1f, dpl = (unsigned)(desc >> 45) & 3;
    if (rpl < cpu->cpl || (type & 0x18) != 0x18) hvp_raise(cpu, 13, sel & 0xfffc);
    if ((type & 4) ? dpl > rpl : dpl != rpl) hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(desc >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    struct hvp_cpu_segment cs = seg_from_desc(sel, desc | (1ull << 40));
    bool to64 = lma(cpu) && (cs.attr & A_L);
    uint64_t rip = target_off(cpu, &cs, ip, n);
    uint64_t nfl = popped_flags(cpu, fl, n, true);
    if (rpl == cpu->cpl) {
        desc_accessed(cpu, sel, desc);
        sp_add(cpu, 3 * n);
        flags_load(cpu, nfl);
        load_cs(cpu, &cs, rip);
        return d + 1;
    }
    uint64_t nsp = stk_rd(cpu, 3 * n, n);
    uint16_t nss = (uint16_t)stk_rd(cpu, 4 * n, n);
    struct hvp_cpu_segment ss = ss_for(cpu, nss, rpl, to64);
    desc_accessed(cpu, sel, desc);
    flags_load(cpu, nfl);
    cpu->st.seg[HVP_SEG_SS] = ss;
    load_cs(cpu, &cs, rip);
    cpu->gpr[4] = nsp & sp_mask(cpu);
    null_inner_segs(cpu);
    hvp_sys_update_mode(cpu);
    return d + 1;
}

/* IRET in 64-bit mode (IRETQ, and the 32/16-bit operand forms): always
 * pops SS:RSP; every check comes before anything changes. */
HVP_HANDLER(h_iret64)
{
    unsigned n = d->osz;
    cpu->nmi_masked = false;
    uint64_t ip = stk_rd(cpu, 0, n);
    uint16_t sel = (uint16_t)stk_rd(cpu, n, n);
    uint64_t fl = stk_rd(cpu, 2 * n, n);
    uint64_t nsp = stk_rd(cpu, 3 * n, n);
    uint16_t nss = (uint16_t)stk_rd(cpu, 4 * n, n);
    if (hvp_flags_get(cpu) & NT_BIT) hvp_raise_gp0(cpu); /* no task return in IA-32e mode */
    unsigned rpl = sel & 3;
    if (!(sel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t desc = desc_read(cpu, sel, 13, 0);
    unsigned type = (unsigned)(desc >> 40) & 0x1f, dpl = (unsigned)(desc >> 45) & 3;
    if (rpl < cpu->cpl || (type & 0x18) != 0x18) hvp_raise(cpu, 13, sel & 0xfffc);
    if ((type & 4) ? dpl > rpl : dpl != rpl) hvp_raise(cpu, 13, sel & 0xfffc);
    if ((desc & (1ull << 53)) && (desc & (1ull << 54))) hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(desc >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    struct hvp_cpu_segment cs = seg_from_desc(sel, desc | (1ull << 40));
    bool to64 = cs.attr & A_L;
    uint64_t rip = target_off(cpu, &cs, ip, n);
    struct hvp_cpu_segment ss = ss_for(cpu, nss, rpl, to64);
    uint64_t nfl = popped_flags(cpu, fl, n, true);
    /* committed */
    desc_accessed(cpu, sel, desc);
    bool outer = rpl > cpu->cpl;
    flags_load(cpu, nfl);
    cpu->st.seg[HVP_SEG_SS] = ss;
    load_cs(cpu, &cs, rip);
    cpu->gpr[4] = to64 ? nsp : (uint32_t)nsp;
    if (outer) {
        null_inner_segs(cpu);
        hvp_sys_update_mode(cpu);
    }
    return d + 1;
}

/* ---- event delivery outside long mode ---- */

/* Real mode: IVT entry vec (IP, CS) at IDTR.base + vec * 4; FLAGS, CS, IP
 * pushed as words, IF/TF/AC/RF cleared; no error code. Protected mode:
 * interrupt and trap gates (16/32-bit), a stack switch through the TSS's
 * SS0:ESP0 (or SS1/SS2) for a more privileged handler. */
void hvp_sys_deliver_legacy(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err,
                            bool fault, bool soft)
{
    uint64_t fl = hvp_flags_get(cpu);
    (void)fault;
    if (!pmode(cpu)) {
        if (vec * 4 + 3 > cpu->st.idtr.limit) hvp_raise_gp0(cpu);
        uint32_t v;
        hvp_sys_access(cpu, (uint32_t)(cpu->st.idtr.base + vec * 4), &v, 4, false);
        uint64_t a1 = stk_lin(cpu, -2, 2, true), a2 = stk_lin(cpu, -4, 2, true),
                 a3 = stk_lin(cpu, -6, 2, true);
        hvp_wr16(cpu, a1, fl);
        hvp_wr16(cpu, a2, cpu->st.seg[HVP_SEG_CS].selector);
        hvp_wr16(cpu, a3, cpu->rip);
        sp_add(cpu, -6);
        hvp_flags_set(cpu, fl & ~(uint64_t)(HVP_IF | HVP_TF | AC_BIT | RF_BIT));
        real_cs(cpu, (uint16_t)(v >> 16), v & 0xffff);
        return;
    }
    uint32_t ext = soft ? 0 : 1, gerr = vec * 8 + 2 + ext;
    if (vec * 8 + 7 > cpu->st.idtr.limit) hvp_raise(cpu, 13, (int32_t)gerr);
    uint64_t g;
    hvp_sys_access(cpu, (uint32_t)(cpu->st.idtr.base + vec * 8), &g, 8, false);
    unsigned type = (unsigned)(g >> 40) & 0x1f, dpl = (unsigned)(g >> 45) & 3;
    if (type == 5) task_switch(cpu);
    if (type != 6 && type != 7 && type != 0xe && type != 0xf) hvp_raise(cpu, 13, (int32_t)gerr);
    if (soft && dpl < cpu->cpl) hvp_raise(cpu, 13, (int32_t)(vec * 8 + 2));
    if (!(g >> 47 & 1)) hvp_raise(cpu, 11, (int32_t)gerr);
    uint16_t sel = (uint16_t)(g >> 16);
    bool g32 = type & 8;
    uint64_t off = (g & 0xffff) | (g32 ? (g >> 32) & 0xffff0000 : 0);
    if (!(sel & ~3u)) hvp_raise(cpu, 13, (int32_t)ext);
    uint64_t cd = desc_read(cpu, sel, 13, ext);
    unsigned ctype = (unsigned)(cd >> 40) & 0x1f, cdpl = (unsigned)(cd >> 45) & 3;
    if ((ctype & 0x18) != 0x18 || cdpl > cpu->cpl) hvp_raise(cpu, 13, (sel & 0xfffc) | ext);
    if (!(cd >> 47 & 1)) hvp_raise(cpu, 11, (sel & 0xfffc) | ext);
    unsigned ncpl = (ctype & 4) ? cpu->cpl : cdpl;
    struct hvp_cpu_segment cs = seg_from_desc((uint16_t)((sel & ~3u) | ncpl), cd | (1ull << 40));
    if (off > cs.limit) hvp_raise(cpu, 13, (int32_t)ext);
    unsigned w = g32 ? 4 : 2;
    uint64_t frame[6];
    unsigned n = 0;
    struct hvp_cpu_segment ss = cpu->st.seg[HVP_SEG_SS];
    uint64_t sp = cpu->gpr[4];
    if (ncpl < cpu->cpl) {
        bool t32 = (cpu->st.tr.attr & 0xf) == 0xb || (cpu->st.tr.attr & 0xf) == 0x9;
        unsigned o = t32 ? 4 + ncpl * 8 : 2 + ncpl * 4, sw = t32 ? 4 : 2;
        if (o + sw + 1 > cpu->st.tr.limit)
            hvp_raise(cpu, 10, (int32_t)((cpu->st.tr.selector & 0xfffc) | ext));
        uint32_t nsp = 0;
        uint16_t nss = 0;
        hvp_sys_access(cpu, (uint32_t)cpu->st.tr.base + o, &nsp, sw, false);
        hvp_sys_access(cpu, (uint32_t)cpu->st.tr.base + o + sw, &nss, 2, false);
        if (!(nss & ~3u)) hvp_raise(cpu, 10, (int32_t)ext);
        uint64_t sd = desc_read(cpu, nss, 10, ext);
        unsigned st = (unsigned)(sd >> 40) & 0x1f, sdpl = (unsigned)(sd >> 45) & 3;
        if ((nss & 3) != ncpl || sdpl != ncpl || (st & 0x1a) != 0x12)
            hvp_raise(cpu, 10, (int32_t)((nss & 0xfffc) | ext));
        if (!(sd >> 47 & 1)) hvp_raise(cpu, 12, (int32_t)((nss & 0xfffc) | ext));
        frame[n++] = cpu->st.seg[HVP_SEG_SS].selector;
        frame[n++] = cpu->gpr[4] & sp_mask(cpu);
        ss = seg_from_desc(nss, sd | (1ull << 40));
        sp = nsp;
    }
    frame[n++] = fl;
    frame[n++] = cpu->st.seg[HVP_SEG_CS].selector;
    frame[n++] = cpu->rip;
    if (has_err) frame[n++] = err;
    uint64_t m = (ss.attr & A_DB) ? 0xffffffffull : 0xffffull;
    uint64_t top = (sp - n * w) & m;
    uint8_t buf[24];
    for (unsigned i = 0; i < n; i++)
        memcpy(buf + (n - 1 - i) * w, &frame[i], w);
    uint64_t lin = seg_check(cpu, &ss, 12, ss.base, top, n * w, true);
    hvp_sys_access(cpu, lin, buf, n * w, true);
    /* committed */
    if (ncpl < cpu->cpl) {
        cpu->st.seg[HVP_SEG_SS] = ss;
        cpu->gpr[4] = top;
    } else {
        sp_add(cpu, -(int64_t)(n * w));
    }
    fl &= ~(uint64_t)(HVP_TF | NT_BIT | RF_BIT | VM_BIT);
    if (!(type & 1)) fl &= ~(uint64_t)HVP_IF;
    hvp_flags_set(cpu, fl);
    load_cs(cpu, &cs, off);
}

/* ---- 16/32-bit stack and branch forms ---- */

/* PUSH r/m/imm/Sreg (aux = 1 + Sreg for segment registers) */
HVP_HANDLER(h_lpush)
{
    unsigned sz = d->osz;
    uint64_t v = d->aux                    ? cpu->st.seg[d->aux - 1].selector
                 : (d->fl & HVP_DF_IMM)    ? (uint64_t)d->imm
                 : (d->fl & HVP_DF_M0)     ? hvp_rdn(cpu, hvp_ea(cpu, d), sz)
                                           : hvp_reg_rd(cpu, d->r0, sz);
    stk_wr(cpu, -(int64_t)sz, sz, v);
    sp_add(cpu, -(int64_t)sz);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lpop)
{
    unsigned sz = d->osz;
    uint64_t v = stk_rd(cpu, 0, sz);
    if (d->aux) {
        hvp_load_sreg(cpu, d->aux - 1u, (uint16_t)v);
        sp_add(cpu, sz);
        if (d->aux - 1u == HVP_SEG_SS) hvp_sys_shadow_ss(cpu, cpu->rip + d->len);
    } else if (d->fl & HVP_DF_M0) {
        uint64_t old = cpu->gpr[4];
        sp_add(cpu, sz);
        uint64_t a;
        a = hvp_ea(cpu, d);
        cpu->gpr[4] = old;
        hvp_wrn(cpu, a, sz, v);
        sp_add(cpu, sz);
    } else {
        sp_add(cpu, sz);
        hvp_reg_wr(cpu, d->r0, sz, v);
    }
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lpusha)
{
    unsigned sz = d->osz;
    uint64_t v[8];
    for (unsigned i = 0; i < 8; i++)
        v[i] = cpu->gpr[i] & M(sz);
    uint64_t a[8];
    for (unsigned i = 0; i < 8; i++)
        a[i] = stk_lin(cpu, -(int64_t)((i + 1) * sz), sz, true);
    for (unsigned i = 0; i < 8; i++)
        hvp_wrn(cpu, a[i], sz, v[i]);
    sp_add(cpu, -(int64_t)(8 * sz));
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lpopa)
{
    unsigned sz = d->osz;
    uint64_t v[8];
    for (unsigned i = 0; i < 8; i++)
        v[i] = stk_rd(cpu, (int64_t)((7 - i) * sz), sz);
    for (unsigned i = 0; i < 8; i++)
        if (i != 4) hvp_reg_wr(cpu, i, sz, v[i]);
    sp_add(cpu, 8 * sz);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lpushf)
{
    unsigned sz = d->osz;
    if (sz == 4) {
        uint64_t f = hvp_flags_get(cpu) & ~(uint64_t)(RF_BIT | VM_BIT);
        stk_wr(cpu, -4, 4, f);
    } else {
        stk_wr(cpu, -2, 2, hvp_flags_get(cpu));
    }
    sp_add(cpu, -(int64_t)sz);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lpopf)
{
    unsigned sz = d->osz;
    uint64_t v = stk_rd(cpu, 0, sz);
    sp_add(cpu, sz);
    flags_load(cpu, popped_flags(cpu, v, sz, false));
    /* IF/TF may have changed: end the trace (events look between traces) */
    cpu->rip += d->len;
    return d + 1;
}

HVP_HANDLER(h_lleave)
{
    unsigned sz = d->osz, ssz = sp_mask(cpu) == 0xffff ? 2 : 4;
    uint64_t bp = cpu->gpr[5] & M(ssz);
    uint64_t lin = hvp_seg_lin(cpu, HVP_SEG_SS, bp, sz, false);
    uint64_t v = hvp_rdn(cpu, lin, sz);
    hvp_reg_wr(cpu, 4, ssz, bp + sz);
    hvp_reg_wr(cpu, 5, sz, v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lenter)
{
    const struct hvp_x86_insn *xi = HVP_XI(cpu, d);
    unsigned sz = d->osz, level = (unsigned)xi->imm2 & 31, ssz = sp_mask(cpu) == 0xffff ? 2 : 4;
    uint64_t alloc = (uint64_t)xi->imm & 0xffff;
    uint64_t bp = cpu->gpr[5] & M(ssz);
    uint64_t frame = (cpu->gpr[4] - sz) & M(ssz);
    /* probe the whole frame first so that a fault changes nothing */
    stk_lin(cpu, -(int64_t)(sz * (level + 1)) - (int64_t)alloc, 1, true);
    stk_wr(cpu, -(int64_t)sz, sz, cpu->gpr[5]);
    int64_t off = -(int64_t)sz;
    for (unsigned i = 1; i < level; i++) {
        uint64_t lin = hvp_seg_lin(cpu, HVP_SEG_SS, (bp - i * sz) & M(ssz), sz, false);
        off -= sz;
        stk_wr(cpu, off, sz, hvp_rdn(cpu, lin, sz));
    }
    if (level) {
        off -= sz;
        stk_wr(cpu, off, sz, frame);
    }
    sp_add(cpu, off - (int64_t)alloc);
    hvp_reg_wr(cpu, 5, sz, frame);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_ljmp)
{
    jump_to(cpu, cpu->rip + d->len + (uint64_t)d->imm, d->osz);
    return d + 1;
}

HVP_HANDLER(h_ljcc)
{
    if (hvp_cond(cpu, d->aux)) {
        jump_to(cpu, cpu->rip + d->len + (uint64_t)d->imm, d->osz);
        return d + d->disp;
    }
    cpu->rip += d->len;
    return d + 1;
}

/* LOOP/LOOPE/LOOPNE/JCXZ (aux 0..3), counter of the address size */
HVP_HANDLER(h_lloop)
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
    uint64_t t = (cpu->rip + d->len + (uint64_t)d->imm) & M(d->osz);
    if (take && t > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
    if (d->aux != 3) hvp_reg_wr(cpu, 1, d->asz, c);
    cpu->rip = take ? t : cpu->rip + d->len;
    return d + 1;
}

HVP_HANDLER(h_ljmp_ind)
{
    uint64_t t = (d->fl & HVP_DF_M0) ? hvp_rdn(cpu, hvp_ea(cpu, d), d->osz)
                                     : hvp_reg_rd(cpu, d->r0, d->osz);
    jump_to(cpu, t, d->osz);
    return d + 1;
}

HVP_HANDLER(h_lcall)
{
    uint64_t ret = cpu->rip + d->len, t = (ret + (uint64_t)d->imm) & M(d->osz);
    if (t > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
    stk_wr(cpu, -(int64_t)d->osz, d->osz, ret);
    sp_add(cpu, -(int64_t)d->osz);
    cpu->rip = t;
    return d + 1;
}

HVP_HANDLER(h_lcall_ind)
{
    uint64_t ret = cpu->rip + d->len;
    uint64_t t = (d->fl & HVP_DF_M0) ? hvp_rdn(cpu, hvp_ea(cpu, d), d->osz)
                                     : hvp_reg_rd(cpu, d->r0, d->osz);
    if (t > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
    stk_wr(cpu, -(int64_t)d->osz, d->osz, ret);
    sp_add(cpu, -(int64_t)d->osz);
    cpu->rip = t;
    return d + 1;
}

HVP_HANDLER(h_lret)
{
    uint64_t t = stk_rd(cpu, 0, d->osz);
    if (t > cpu->st.seg[HVP_SEG_CS].limit) hvp_raise_gp0(cpu);
    sp_add(cpu, (int64_t)d->osz + d->imm);
    cpu->rip = t;
    return d + 1;
}

/* LDS/LES/LFS/LGS/LSS r, m16:16/32/64 (aux = segment) */
HVP_HANDLER(h_lxs)
{
    uint64_t a = hvp_ea(cpu, d);
    uint64_t off = hvp_rdn(cpu, a, d->osz);
    uint16_t sel = (uint16_t)hvp_rd16(cpu, a + d->osz);
    hvp_load_sreg(cpu, d->aux, sel);
    hvp_reg_wr(cpu, d->r0, d->osz, off);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mov_sreg)
{
    uint16_t sel =
        (uint16_t)((d->fl & HVP_DF_M1) ? hvp_rd16(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r1]);
    hvp_load_sreg(cpu, d->aux, sel);
    /* MOV SS: the next instruction runs before any event (the trace ends) */
    if (d->aux == HVP_SEG_SS) hvp_sys_shadow_ss(cpu, cpu->rip + d->len);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_lxlat)
{
    uint64_t off = (cpu->gpr[3] + (cpu->gpr[0] & 0xff)) & M(d->asz);
    hvp_reg_wr(cpu, 0, 1, hvp_rd8(cpu, hvp_seg_lin(cpu, d->seg & 7, off, 1, false)));
    return NEXT(cpu, d);
}

/* ---- LLDT, SLDT, LAR, LSL, VERR, VERW, ARPL ---- */

static uint16_t sel_operand(struct hvp_cpu *cpu, const struct hvp_dinsn *d, unsigned k)
{
    bool mem = d->fl & (k == 0 ? HVP_DF_M0 : HVP_DF_M1);
    return (uint16_t)(mem ? hvp_rd16(cpu, hvp_ea(cpu, d)) : cpu->gpr[k == 0 ? d->r0 : d->r1]);
}

HVP_HANDLER(h_lldt)
{
    if (cpu->cpl) hvp_raise_gp0(cpu);
    uint16_t sel = sel_operand(cpu, d, 0);
    if (!(sel & ~3u)) { /* a null LDT: LDT references then #GP */
        cpu->st.ldtr = (struct hvp_cpu_segment){0, 0, sel, 0};
        return NEXT(cpu, d);
    }
    if (sel & 4) hvp_raise(cpu, 13, sel & 0xfffc);
    uint64_t a = desc_addr(cpu, sel, 13, 0), lo, hi = 0;
    hvp_sys_access(cpu, a, &lo, 8, false);
    if (((lo >> 40) & 0x1f) != 2) hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(lo >> 47 & 1)) hvp_raise(cpu, 11, sel & 0xfffc);
    if (lma(cpu)) {
        if ((uint32_t)(sel & ~7u) + 15 > cpu->st.gdtr.limit) hvp_raise(cpu, 13, sel & 0xfffc);
        hvp_sys_access(cpu, a + 8, &hi, 8, false);
    }
    struct hvp_cpu_segment l = seg_from_desc(sel, lo);
    l.base |= (hi & 0xffffffff) << 32;
    cpu->st.ldtr = l;
    return NEXT(cpu, d);
}

/* SLDT (aux 0) and STR (aux 1): the selector, zero-extended into a
 * register, or 16 bits to memory. */
HVP_HANDLER(h_sldt_str)
{
    uint16_t sel = d->aux ? cpu->st.tr.selector : cpu->st.ldtr.selector;
    if (d->fl & HVP_DF_M0)
        hvp_wr16(cpu, hvp_ea(cpu, d), sel);
    else
        hvp_reg_wr(cpu, d->r0, d->osz, sel);
    return NEXT(cpu, d);
}

static void set_zf(struct hvp_cpu *cpu, bool z)
{
    uint64_t f = hvp_flags_get(cpu);
    hvp_flags_set(cpu, z ? f | HVP_ZF : f & ~(uint64_t)HVP_ZF);
}

/* The descriptor of sel for LAR/LSL/VERR/VERW, without faults for a bad
 * selector (those clear ZF): false when null or beyond the table. */
static bool desc_peek(struct hvp_cpu *cpu, uint16_t sel, uint64_t *d)
{
    if (!(sel & ~3u)) return false;
    const struct hvp_cpu_segment *l = &cpu->st.ldtr;
    uint64_t base = (sel & 4) ? l->base : cpu->st.gdtr.base;
    uint32_t limit = (sel & 4) ? l->limit : cpu->st.gdtr.limit;
    if ((sel & 4) && (!(l->selector & ~3u) || !(l->attr & A_P))) return false;
    if ((uint32_t)(sel & ~7u) + 7 > limit) return false;
    hvp_sys_access(cpu, (lma(cpu) ? base : (uint32_t)base) + (sel & ~7u), d, 8, false);
    return true;
}

/* aux: 0 LAR, 1 LSL, 2 VERR, 3 VERW */
HVP_HANDLER(h_lar_lsl_ver)
{
    if (!pmode(cpu)) hvp_raise_ud(cpu);
    uint16_t sel = sel_operand(cpu, d, d->aux < 2 ? 1 : 0);
    uint64_t desc;
    bool ok = desc_peek(cpu, sel, &desc);
    unsigned type = (unsigned)(desc >> 40) & 0x1f, dpl = (unsigned)(desc >> 45) & 3;
    unsigned need = (sel & 3) > cpu->cpl ? sel & 3 : cpu->cpl;
    if (ok) {
        bool conf_code = (type & 0x1c) == 0x1c;
        if (!conf_code && dpl < need) ok = false;
        if (!(type & 0x10)) {
            unsigned t = type & 0xf;
            /* system types LAR/LSL accept (64-bit mode: LDT, TSS, call gate) */
            bool sys_ok = lma(cpu) ? (t == 2 || t == 9 || t == 0xb || (d->aux == 0 && t == 0xc))
                                   : (t == 1 || t == 2 || t == 3 || t == 9 || t == 0xb ||
                                      (d->aux == 0 && (t == 4 || t == 5 || t == 0xc)));
            if (d->aux >= 2 || !sys_ok) ok = false;
        } else if (d->aux == 2) {
            ok = ok && (!(type & 8) || (type & 2)); /* data, or readable code */
        } else if (d->aux == 3) {
            ok = ok && !(type & 8) && (type & 2); /* writable data */
        }
    }
    set_zf(cpu, ok);
    if (ok && d->aux == 0) hvp_reg_wr(cpu, d->r0, d->osz, (desc >> 32) & 0x00f0ff00);
    if (ok && d->aux == 1) {
        uint32_t lim = (uint32_t)((desc & 0xffff) | ((desc >> 32) & 0xf0000));
        if (desc & (1ull << 55)) lim = (lim << 12) | 0xfff;
        hvp_reg_wr(cpu, d->r0, d->osz, lim);
    }
    return NEXT(cpu, d);
}

HVP_HANDLER(h_arpl)
{
    if (!pmode(cpu)) hvp_raise_ud(cpu);
    uint64_t a = 0;
    uint16_t dst;
    if (d->fl & HVP_DF_M0) {
        a = hvp_ea(cpu, d);
        dst = (uint16_t)hvp_rd16(cpu, a);
    } else {
        dst = (uint16_t)cpu->gpr[d->r0];
    }
    uint16_t src = (uint16_t)cpu->gpr[d->r1];
    bool adj = (dst & 3) < (src & 3);
    if (adj) {
        dst = (uint16_t)((dst & ~3u) | (src & 3));
        if (d->fl & HVP_DF_M0)
            hvp_wr16(cpu, a, dst);
        else
            hvp_reg_wr(cpu, d->r0, 2, dst);
    }
    set_zf(cpu, adj);
    return NEXT(cpu, d);
}

static unsigned sreg_of(unsigned reg)
{
    return reg >= HVP_X86_REG_ES && reg < HVP_X86_REG_ES + 6 ? reg - HVP_X86_REG_ES + 1u : 0;
}

/* What depends on segmentation or the stack/branch width, in system mode.
 * 64-bit mode takes only the far forms and segment loads. */
int hvp_cpu_build_seg(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY) return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    bool legacy = cpu->mode != 64;
    unsigned op = xi->op;
    const struct hvp_x86_operand *o0 = &xi->ops[0];
    switch (op) {
    case HVP_X86_OP_JMP:
    case HVP_X86_OP_CALL:
        d->aux = op == HVP_X86_OP_CALL;
        if (o0->kind == HVP_X86_OPK_FAR) {
            d->fn = h_far_ptr;
            return HVP_B_END;
        }
        if (xi->opcode == 0xff && ((xi->modrm >> 3) & 7) != 2 && ((xi->modrm >> 3) & 7) != 4) {
            d->osz = (uint8_t)(o0->size - 2); /* m16:16 / m16:32 / m16:64 */
            d->fn = h_far_mem;
            return HVP_B_END;
        }
        if (!legacy) return HVP_B_NONE;
        if (o0->kind == HVP_X86_OPK_REL)
            d->fn = d->aux ? h_lcall : h_ljmp;
        else
            d->fn = d->aux ? h_lcall_ind : h_ljmp_ind;
        return HVP_B_END;
    case HVP_X86_OP_IRET:
    case HVP_X86_OP_IRETD:
    case HVP_X86_OP_IRETQ:
        d->osz = xi->opsize;
        d->fn = legacy ? h_iret_legacy : h_iret64;
        return HVP_B_END;
    case HVP_X86_OP_RETF:
        d->imm = xi->nops ? (xi->imm & 0xffff) : 0;
        d->fn = h_retf;
        return HVP_B_END;
    case HVP_X86_OP_LDS:
    case HVP_X86_OP_LES:
    case HVP_X86_OP_LFS:
    case HVP_X86_OP_LGS:
    case HVP_X86_OP_LSS:
        d->aux = op == HVP_X86_OP_LDS   ? HVP_SEG_DS
                 : op == HVP_X86_OP_LES ? HVP_SEG_ES
                 : op == HVP_X86_OP_LFS ? HVP_SEG_FS
                 : op == HVP_X86_OP_LGS ? HVP_SEG_GS
                                        : HVP_SEG_SS;
        d->osz = (uint8_t)o0->size;
        d->fn = h_lxs;
        return HVP_B_OK;
    case HVP_X86_OP_MOV:
        if (o0->kind == HVP_X86_OPK_REG && sreg_of(o0->reg)) {
            d->aux = (uint8_t)(sreg_of(o0->reg) - 1);
            if (d->aux == HVP_SEG_CS) return HVP_B_NONE; /* #UD */
            if (xi->ops[1].kind == HVP_X86_OPK_REG)
                d->r1 = (uint8_t)(hvp_gpr_code(xi->ops[1].reg) & 15);
            d->fn = h_mov_sreg;
            return d->aux == HVP_SEG_SS ? HVP_B_END : HVP_B_OK;
        }
        return HVP_B_NONE;
    case HVP_X86_OP_PUSH:
        d->osz = xi->opsize;
        if (o0->kind == HVP_X86_OPK_REG && sreg_of(o0->reg)) {
            d->aux = (uint8_t)sreg_of(o0->reg);
        } else if (!legacy) {
            return HVP_B_NONE;
        } else if (o0->kind == HVP_X86_OPK_IMM) {
            d->fl |= HVP_DF_IMM;
            d->imm = xi->imm;
        }
        d->fn = h_lpush;
        return HVP_B_OK;
    case HVP_X86_OP_POPF:
    case HVP_X86_OP_POPFQ:
        /* every mode: IF and IOPL follow the privilege rules */
        d->osz = xi->opsize;
        d->fn = h_lpopf;
        return HVP_B_END;
    case HVP_X86_OP_POP:
        d->osz = xi->opsize;
        if (o0->kind == HVP_X86_OPK_REG && sreg_of(o0->reg)) {
            d->aux = (uint8_t)sreg_of(o0->reg);
            d->fn = h_lpop;
            return HVP_B_END; /* SS: the next instruction's stack changed */
        }
        if (!legacy) return HVP_B_NONE;
        d->fn = h_lpop;
        return HVP_B_OK;
    case HVP_X86_OP_LLDT: d->fn = h_lldt; return HVP_B_OK;
    case HVP_X86_OP_SLDT:
    case HVP_X86_OP_STR:
        d->osz = (uint8_t)o0->size;
        d->aux = op == HVP_X86_OP_STR;
        d->fn = h_sldt_str;
        return HVP_B_OK;
    case HVP_X86_OP_LAR:
    case HVP_X86_OP_LSL:
    case HVP_X86_OP_VERR:
    case HVP_X86_OP_VERW:
        d->aux = op == HVP_X86_OP_LAR ? 0 : op == HVP_X86_OP_LSL ? 1 : op == HVP_X86_OP_VERR ? 2 : 3;
        if (d->aux < 2) d->osz = (uint8_t)o0->size;
        d->fn = h_lar_lsl_ver;
        return HVP_B_OK;
    default: break;
    }
    if (!legacy) return HVP_B_NONE;
    switch (op) {
    case HVP_X86_OP_PUSHA:
    case HVP_X86_OP_PUSHAD:
        d->osz = xi->opsize;
        d->fn = h_lpusha;
        return HVP_B_OK;
    case HVP_X86_OP_POPA:
    case HVP_X86_OP_POPAD:
        d->osz = xi->opsize;
        d->fn = h_lpopa;
        return HVP_B_OK;
    case HVP_X86_OP_PUSHF:
    case HVP_X86_OP_PUSHFQ:
        d->osz = xi->opsize;
        d->fn = h_lpushf;
        return HVP_B_OK;
    case HVP_X86_OP_LEAVE:
        d->osz = xi->opsize;
        d->fn = h_lleave;
        return HVP_B_OK;
    case HVP_X86_OP_ENTER:
        d->osz = xi->opsize;
        d->fn = h_lenter;
        return HVP_B_OK;
    case HVP_X86_OP_RET:
        d->osz = xi->opsize;
        d->imm = xi->nops ? (xi->imm & 0xffff) : 0;
        d->fn = h_lret;
        return HVP_B_END;
    case HVP_X86_OP_LOOP:
    case HVP_X86_OP_LOOPE:
    case HVP_X86_OP_LOOPNE:
    case HVP_X86_OP_JCXZ:
    case HVP_X86_OP_JECXZ:
        d->aux = op == HVP_X86_OP_LOOP     ? 0
                 : op == HVP_X86_OP_LOOPE  ? 1
                 : op == HVP_X86_OP_LOOPNE ? 2
                                           : 3;
        d->imm = xi->imm;
        d->fn = h_lloop;
        return HVP_B_END;
    case HVP_X86_OP_ARPL:
        d->fn = h_arpl;
        return HVP_B_OK;
    case HVP_X86_OP_XLAT:
        d->seg = (uint8_t)(HVP_SEG_LEGACY | (xi->mem.seg - HVP_X86_REG_ES));
        d->fn = h_lxlat;
        return HVP_B_OK;
    default: break;
    }
    switch (op) {
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
        d->aux = xi->opcode & 15;
        d->imm = xi->imm;
        d->fn = h_ljcc;
        return HVP_B_SIDE;
    default: return HVP_B_NONE;
    }
}
