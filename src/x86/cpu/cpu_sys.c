/* hvp software x86-64 CPU, system model: privileged instructions, MSRs,
 * SYSCALL/SYSRET, and exception delivery through the 64-bit IDT. Paging
 * itself is in translate() (cpu.c). */
#include "cpu_internal.h"

#define CR0_PE   0x1ull
#define CR0_PG   0x80000000ull
#define EFER_SCE 0x1ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define EFER_NXE 0x800ull
#define RF_BIT   0x10000ull

static unsigned iopl(const struct hvp_cpu *cpu)
{
    return (unsigned)(cpu->rflags >> 12) & 3;
}

/* Recomputes what decoding depends on (the trace-cache mode key) and CPL. */
void hvp_sys_update_mode(struct hvp_cpu *cpu)
{
    const struct hvp_cpu_segment *cs = &cpu->st.seg[HVP_SEG_CS];
    if (!(cpu->st.cr0 & CR0_PE))
        cpu->mode = 16;
    else if ((cpu->st.efer & EFER_LMA) && (cs->attr & 0x2000))
        cpu->mode = 64;
    else
        cpu->mode = (cs->attr & 0x4000) ? 32 : 16;
    unsigned cpl = (cpu->st.cr0 & CR0_PE) ? (cpu->st.seg[HVP_SEG_SS].attr >> 5) & 3 : 0;
    if (cpl != cpu->cpl) {
        /* TLB rights were filled for a privilege (U/S). Those of CPL 3 are a
         * subset of the supervisor's (no SMEP/SMAP), so only the way down to
         * CPL 3 drops entries: the ones filled above it. The mappings, hence
         * the trace links, are unchanged. */
        if (cpl == 0xff || cpu->cpl == 0xff)
            hvp_sys_flush(cpu);
        else if (cpl == 3)
            for (unsigned i = 0; i < HVP_TLB_N; i++)
                if (cpu->tlb_sup[i]) {
                    cpu->tlb[i].tag_r = cpu->tlb[i].tag_w = cpu->tlb[i].tag_x = 1;
                    cpu->tlb_sup[i] = 0;
                }
        cpu->cpl = (uint8_t)cpl;
    }
    hvp_seg_refresh(cpu);
}

/* A code/data segment from its 8-byte descriptor. */
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

/* Reads the GDT descriptor of sel (supervisor access); #GP(sel) outside. */
static uint64_t gdt_desc(struct hvp_cpu *cpu, uint16_t sel, unsigned bytes, uint64_t *hi)
{
    if ((sel & 4) || (uint32_t)(sel & ~7u) + bytes - 1 > cpu->st.gdtr.limit)
        hvp_raise(cpu, 13, sel & 0xfffc);
    uint64_t v[2] = {0, 0};
    hvp_sys_access(cpu, cpu->st.gdtr.base + (sel & ~7u), v, bytes, false);
    if (hi) *hi = v[1];
    return v[0];
}

/* ---- exception and interrupt delivery (64-bit IDT) ---- */

void hvp_sys_deliver(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err, bool fault,
                     bool soft)
{
    if (!(cpu->st.efer & EFER_LMA)) {
        hvp_sys_deliver_legacy(cpu, vec, has_err, err, fault, soft); /* cpu_seg.c */
        return;
    }
    uint32_t ext = soft ? 0 : 1;
    if (vec * 16 + 15 > cpu->st.idtr.limit) hvp_raise(cpu, 13, (int32_t)(vec * 8 + 2 + ext));
    uint64_t g[2];
    hvp_sys_access(cpu, cpu->st.idtr.base + vec * 16, g, 16, false);
    unsigned type = (unsigned)(g[0] >> 40) & 0x1f, dpl = (unsigned)(g[0] >> 45) & 3;
    if (type != 0xe && type != 0xf) hvp_raise(cpu, 13, (int32_t)(vec * 8 + 2 + ext));
    if (soft && dpl < cpu->cpl) hvp_raise(cpu, 13, (int32_t)(vec * 8 + 2));
    if (!(g[0] >> 47 & 1)) hvp_raise(cpu, 11, (int32_t)(vec * 8 + 2 + ext));
    uint64_t target = (g[0] & 0xffff) | ((g[0] >> 32) & 0xffff0000) | (g[1] << 32);
    uint16_t sel = (uint16_t)(g[0] >> 16);
    unsigned ist = (unsigned)(g[0] >> 32) & 7;
    uint64_t cd = gdt_desc(cpu, sel, 8, NULL);
    unsigned ncpl = (unsigned)(cd >> 45) & 3;
    if (((cd >> 43) & 3) != 3 || !(cd & (1ull << 53)) || ncpl > cpu->cpl)
        hvp_raise(cpu, 13, sel & 0xfffc);
    if (!(cd & (1ull << 47))) hvp_raise(cpu, 11, sel & 0xfffc);
    uint64_t rsp = cpu->gpr[4];
    uint16_t ss = cpu->st.seg[HVP_SEG_SS].selector;
    if (ist || ncpl < cpu->cpl) {
        unsigned off = ist ? 0x24 + (ist - 1) * 8 : 4 + ncpl * 8;
        if (off + 7 > cpu->st.tr.limit) hvp_raise(cpu, 10, (int32_t)(cpu->st.tr.selector & 0xfffc));
        hvp_sys_access(cpu, cpu->st.tr.base + off, &rsp, 8, false);
    }
    if (ncpl < cpu->cpl) ss = (uint16_t)ncpl; /* null SS with RPL = new CPL */
    rsp &= ~(uint64_t)15;
    uint64_t fl = hvp_flags_get(cpu);
    uint64_t frame[6];
    unsigned n = 0;
    if (has_err) frame[n++] = err;
    frame[n++] = cpu->rip;
    frame[n++] = cpu->st.seg[HVP_SEG_CS].selector;
    frame[n++] = fl | (fault ? RF_BIT : 0);
    frame[n++] = cpu->gpr[4];
    frame[n++] = cpu->st.seg[HVP_SEG_SS].selector;
    rsp -= n * 8;
    if (!hvp_canonical(rsp)) hvp_raise(cpu, 12, 0);
    /* the stack is written as the new (supervisor) privilege */
    hvp_sys_access(cpu, rsp, frame, n * 8, true);
    /* committed: nothing below faults */
    cpu->st.seg[HVP_SEG_CS] = seg_from_desc((uint16_t)((sel & ~3u) | ncpl), cd);
    if (ss != cpu->st.seg[HVP_SEG_SS].selector || ncpl != cpu->cpl)
        cpu->st.seg[HVP_SEG_SS] =
            (struct hvp_cpu_segment){0, 0, ss, (uint16_t)(0x1093 | (ncpl << 5) | 0x4000)};
    cpu->gpr[4] = rsp;
    cpu->rip = target;
    fl &= ~(uint64_t)(HVP_TF | 0x4000 /* NT */ | RF_BIT | 0x20000 /* VM */);
    if (type == 0xe) fl &= ~(uint64_t)HVP_IF;
    hvp_flags_set(cpu, fl);
    hvp_sys_update_mode(cpu);
}

/* ---- handlers ---- */

static void need_cpl0(struct hvp_cpu *cpu)
{
    if (cpu->cpl) hvp_raise_gp0(cpu);
}

/* Ends the trace after an instruction that changed the mode, paging or
 * privilege: RIP past it. */
static const struct hvp_dinsn *end_here(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    cpu->rip += d->len;
    return d + 1;
}

HVP_HANDLER(h_hlt)
{
    need_cpl0(cpu);
    cpu->rip += d->len;
    if (hvp_sys_wake_pending(cpu)) {
        /* STI;HLT with an interrupt pending: it wakes at once (the run
         * loop delivers it, or exits HLT if it went away) */
        cpu->hlt_skipped = true;
        return d + 1;
    }
    cpu->exit->reason = HVP_CPU_EXIT_HLT;
    cpu->stop = true;
    return d + 1;
}

/* Protected mode at CPL > IOPL: the TSS I/O permission bitmap must allow
 * every port of the access (SDM 19.5.2), else #GP(0). */
static void io_allowed(struct hvp_cpu *cpu, uint16_t port, unsigned size)
{
    if (!(cpu->st.cr0 & CR0_PE) || cpu->cpl <= iopl(cpu)) return;
    const struct hvp_cpu_segment *tr = &cpu->st.tr;
    unsigned type = tr->attr & 0xf;
    if ((type != 9 && type != 11) || tr->limit < 0x67) hvp_raise_gp0(cpu); /* 32/64-bit TSS */
    uint16_t base;
    hvp_sys_access(cpu, tr->base + 0x66, &base, 2, false);
    uint32_t off = base + port / 8u;
    if (off + 1 > tr->limit) hvp_raise_gp0(cpu); /* both bytes must lie within the limit */
    uint16_t bits;
    hvp_sys_access(cpu, tr->base + off, &bits, 2, false);
    if ((bits >> (port & 7)) & ((1u << size) - 1)) hvp_raise_gp0(cpu);
}

/* IN/OUT: the pio hook, else an exit with RIP past the instruction; for
 * IN the embedder puts the value into AL/AX/EAX before resuming. */
HVP_HANDLER(h_io)
{
    struct hvp_cpu_exit *ex = cpu->exit;
    uint16_t port = d->aux ? (uint16_t)cpu->gpr[2] : (uint16_t)d->imm;
    io_allowed(cpu, port, d->osz);
    if (cpu->hooks.pio) {
        uint32_t v = d->r1 ? (uint32_t)(cpu->gpr[0] & hvp_size_mask(d->osz)) : 0;
        if (cpu->hooks.pio(cpu->hooks.ctx, port, d->osz, d->r1, &v) == 0) {
            if (!d->r1) hvp_reg_wr(cpu, 0, d->osz, v);
            return NEXT(cpu, d);
        }
    }
    hvp_sys_insn_bytes(cpu, ex);
    ex->reason = HVP_CPU_EXIT_IO;
    ex->u.io.port = port;
    ex->u.io.size = d->osz;
    ex->u.io.write = d->r1;
    ex->u.io.data = d->r1 ? (uint32_t)(cpu->gpr[0] & hvp_size_mask(d->osz)) : 0;
    cpu->rip += d->len;
    cpu->stop = true;
    return d + 1;
}

HVP_HANDLER(h_cli_sti)
{
    if (cpu->cpl > iopl(cpu)) hvp_raise_gp0(cpu);
    if (d->aux) {
        /* STI from IF = 0: the next instruction runs before any interrupt
         * (the trace ends here, so the run loop sees the shadow) */
        if (!(cpu->rflags & HVP_IF)) hvp_sys_shadow(cpu, cpu->rip + d->len);
        cpu->rflags |= HVP_IF;
    } else
        cpu->rflags &= ~(uint64_t)HVP_IF;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mov_from_cr)
{
    need_cpl0(cpu);
    uint64_t v;
    switch (d->aux) {
    case 0: v = cpu->st.cr0; break;
    case 2: v = cpu->st.cr2; break;
    case 3: v = cpu->st.cr3; break;
    case 4: v = cpu->st.cr4; break;
    default:
        v = cpu->hooks.tpr_read ? cpu->hooks.tpr_read(cpu->hooks.ctx) & 15u : cpu->st.cr8;
        break;
    }
    cpu->gpr[d->r0] = v;
    return NEXT(cpu, d);
}

/* CR4 bits this CPU lets software set: the fixed ones, and those whose
 * feature the CPUID table advertises (PCIDE, FSGSBASE, OSXSAVE, SMEP, SMAP). */
static uint64_t cr4_allowed(struct hvp_cpu *cpu)
{
    uint32_t l1[4], l7[4];
    hvp_cpu_cpuid(cpu, 1, 0, l1);
    hvp_cpu_cpuid(cpu, 7, 0, l7);
    uint64_t m = 0x6fcull; /* TSD DE PSE PAE MCE PGE OSFXSR OSXMMEXCPT (no VME/PVI, no PCE) */
    m |= 0x100ull;         /* PCE */
    if (l1[2] & (1u << 17)) m |= 1ull << 17;
    if (l7[1] & (1u << 0)) m |= 1ull << 16;
    if (l1[2] & (1u << 26)) m |= 1ull << 18;
    if (l7[1] & (1u << 7)) m |= 1ull << 20;
    if (l7[1] & (1u << 20)) m |= 1ull << 21;
    return m;
}

/* A CR0/CR3/CR4 write that leaves PAE paging on outside long mode
 * (re)loads the PDPTEs; reserved bits in one make it #GP(0). Called
 * after the other checks, before anything is committed. */
static void pdpte_update(struct hvp_cpu *cpu, uint64_t cr0, uint64_t cr3, uint64_t cr4, bool force)
{
    bool lma = (cr0 & CR0_PG) && (cpu->st.efer & EFER_LME);
    if (!(cr0 & CR0_PG) || !(cr4 & 0x20) || lma) return;
    if (!force && !((cr0 ^ cpu->st.cr0) & (CR0_PG | 0x60000000ull)) &&
        !((cr4 ^ cpu->st.cr4) & 0xb0)) /* PG CD NW, PSE PAE PGE */
        return;
    uint64_t p[4];
    if (!hvp_sys_load_pdptes(cpu, cr3, p)) hvp_raise_gp0(cpu);
    memcpy(cpu->pdpte, p, sizeof p);
}

HVP_HANDLER(h_mov_to_cr)
{
    need_cpl0(cpu);
    uint64_t v = cpu->gpr[d->r1];
    if (cpu->mode != 64) v = (uint32_t)v; /* 32-bit operand outside 64-bit mode */
    switch (d->aux) {
    case 0:
        if ((v >> 32) || ((v & CR0_PG) && !(v & CR0_PE))) hvp_raise_gp0(cpu);
        if ((v & CR0_PG) && !(cpu->st.cr0 & CR0_PG) && (cpu->st.efer & EFER_LME)) {
            /* activating IA-32e mode: PAE on, and not from a 64-bit CS */
            if (!(cpu->st.cr4 & 0x20) || (cpu->st.seg[HVP_SEG_CS].attr & 0x2000))
                hvp_raise_gp0(cpu);
        }
        /* paging stays on in 64-bit mode; compatibility mode may clear it
         * (leaving long mode: LMA follows) */
        if (cpu->mode == 64 && !(v & CR0_PG)) hvp_raise_gp0(cpu);
        if ((v & 0x20000000) && !(v & 0x40000000)) hvp_raise_gp0(cpu); /* NW without CD */
        pdpte_update(cpu, v | 0x10, cpu->st.cr3, cpu->st.cr4, false);
        cpu->st.cr0 = v | 0x10; /* ET is fixed */
        if ((v & CR0_PG) && (cpu->st.efer & EFER_LME))
            cpu->st.efer |= EFER_LMA;
        else if (!(v & CR0_PG))
            cpu->st.efer &= ~EFER_LMA;
        break;
    case 2: cpu->st.cr2 = v; break;
    case 3:
        if (v >> 48) hvp_raise_gp0(cpu); /* beyond MAXPHYADDR = 48 (no PCID, so bit 63 too) */
        pdpte_update(cpu, cpu->st.cr0, v, cpu->st.cr4, true);
        cpu->st.cr3 = v & 0x000ffffffffff018ull;
        break;
    case 4:
        if (v & ~cr4_allowed(cpu)) hvp_raise_gp0(cpu);
        if ((cpu->st.efer & EFER_LMA) && !(v & 0x20)) hvp_raise_gp0(cpu);
        pdpte_update(cpu, cpu->st.cr0, cpu->st.cr3, v, false);
        cpu->st.cr4 = v;
        break;
    default:
        if (v & ~15ull) hvp_raise_gp0(cpu);
        cpu->st.cr8 = v;
        if (cpu->hooks.tpr_write) cpu->hooks.tpr_write(cpu->hooks.ctx, (uint8_t)v);
        break;
    }
    if (d->aux == 3)
        hvp_sys_flush_cr3(cpu);
    else if (d->aux != 2 && d->aux != 8)
        hvp_sys_flush(cpu); /* CR0/CR4 (PGE toggles flush everything) */
    hvp_sys_update_mode(cpu);
    return end_here(cpu, d);
}

/* LMSW (aux 0): CR0 bits 0..3, PE cannot be cleared; CLTS (aux 1) */
HVP_HANDLER(h_lmsw_clts)
{
    need_cpl0(cpu);
    if (d->aux) {
        cpu->st.cr0 &= ~0x8ull;
    } else {
        uint64_t v = (d->fl & HVP_DF_M0) ? hvp_rd16(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r0];
        cpu->st.cr0 = (cpu->st.cr0 & ~0xeull) | (v & 0xf) | (cpu->st.cr0 & CR0_PE);
        hvp_sys_update_mode(cpu);
    }
    return end_here(cpu, d);
}

HVP_HANDLER(h_smsw)
{
    if (d->fl & HVP_DF_M0)
        hvp_wr16(cpu, hvp_ea(cpu, d), cpu->st.cr0);
    else
        hvp_reg_wr(cpu, d->r0, d->osz, cpu->st.cr0);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_invlpg)
{
    need_cpl0(cpu);
    hvp_sys_invlpg(cpu, hvp_ea(cpu, d));
    return end_here(cpu, d);
}

/* ---- MSRs ----
 * The CPU implements what Linux touches at boot (pc-machine.md 4.4):
 * EFER, the SYSCALL/SYSENTER set, FS/GS bases, TSC, TSC_AUX, PAT, the
 * MTRRs (kept, not acted on: caching changes nothing here), MISC_ENABLE,
 * BIOS_SIGN_ID and APIC_BASE. Reserved bits raise #GP(0) where the SDM
 * says so. Everything else, and the local APIC's MSRs, go to the msr hook
 * or #GP(0). MCE/MCA are not advertised, so MCG_* and MCi_* are not
 * here either. */

#define MAXPHY_MASK 0x0000fffffffff000ull /* bits 12..47: MAXPHYADDR = 48 */

static uint64_t *msr_ptr(struct hvp_cpu *cpu, uint32_t idx)
{
    switch (idx) {
    case 0x1b: return &cpu->st.apic_base;
    case 0x174: return &cpu->st.sysenter_cs;
    case 0x175: return &cpu->st.sysenter_esp;
    case 0x176: return &cpu->st.sysenter_eip;
    case 0x1a0: return &cpu->st.misc_enable;
    case 0x277: return &cpu->st.pat;
    case 0x2ff: return &cpu->st.mtrr_def_type;
    case 0x250: return &cpu->st.mtrr_fixed[0];
    case 0x258: return &cpu->st.mtrr_fixed[1];
    case 0x259: return &cpu->st.mtrr_fixed[2];
    case 0xc0000081: return &cpu->st.star;
    case 0xc0000082: return &cpu->st.lstar;
    case 0xc0000083: return &cpu->st.cstar;
    case 0xc0000084: return &cpu->st.sfmask;
    case 0xc0000100: return &cpu->fs_base;
    case 0xc0000101: return &cpu->gs_base;
    case 0xc0000102: return &cpu->st.kernel_gs_base;
    case 0xc0000103: return &cpu->st.tsc_aux;
    default:
        if (idx >= 0x200 && idx <= 0x20f) return &cpu->st.mtrr_var[idx - 0x200];
        if (idx >= 0x268 && idx <= 0x26f) return &cpu->st.mtrr_fixed[3 + idx - 0x268];
        return NULL;
    }
}

/* A memory type valid in MTRRs (UC WC WT WP WB); PAT also takes UC- (7). */
static bool mem_type_ok(unsigned t, bool pat)
{
    return t == 0 || t == 1 || t == 4 || t == 5 || t == 6 || (pat && t == 7);
}

static bool types8_ok(uint64_t v, bool pat)
{
    for (unsigned i = 0; i < 8; i++)
        if (!mem_type_ok((unsigned)(v >> (i * 8)) & 0xff, pat)) return false;
    return true;
}

/* IA32_MISC_ENABLE: fast strings (0) is the one writable bit; BTS/PEBS
 * unavailable (11, 12) read as 1; the rest reads as 0 and must be
 * written as read. */
#define MISC_ENABLE_RO 0x1800ull
#define MISC_ENABLE_RW 0x1ull

/* Checks a WRMSR value against the SDM's reserved bits; #GP(0) if bad. */
static void msr_check(struct hvp_cpu *cpu, uint32_t idx, uint64_t v)
{
    bool ok = true;
    switch (idx) {
    case 0x1b: { /* APIC_BASE: BSP (8), enable (11), base; x2APIC (10) if advertised */
        uint32_t r[4];
        hvp_cpu_cpuid(cpu, 1, 0, r);
        ok = !(v & ~(MAXPHY_MASK | 0x900ull | ((r[2] >> 21 & 1) ? 0x400ull : 0)));
        break;
    }
    case 0x175:
    case 0x176:
    case 0xc0000082:
    case 0xc0000083:
    case 0xc0000100:
    case 0xc0000101:
    case 0xc0000102: ok = hvp_canonical(v); break;
    case 0x1a0: ok = (v & ~MISC_ENABLE_RW) == MISC_ENABLE_RO; break;
    case 0x277: ok = types8_ok(v, true); break;
    case 0x2ff: /* type, FE (10), E (11) */
        ok = !(v & ~0xcffull) && mem_type_ok(v & 0xff, false);
        break;
    case 0xc0000084:
    case 0xc0000103: ok = !(v >> 32); break;
    default:
        if (idx >= 0x200 && idx <= 0x20f)
            ok = (idx & 1) ? !(v & ~(MAXPHY_MASK | 0x800ull))
                           : !(v & ~(MAXPHY_MASK | 0xffull)) && mem_type_ok(v & 0xff, false);
        else if (idx == 0x250 || idx == 0x258 || idx == 0x259 || (idx >= 0x268 && idx <= 0x26f))
            ok = types8_ok(v, false);
        break;
    }
    if (!ok) hvp_raise_gp0(cpu);
}

/* MSRs a local APIC owns: the hook sees them first (APIC_BASE writes too,
 * after the CPU checked the value). */
static bool msr_apic(uint32_t idx)
{
    return idx == 0x6e0 || (idx >= 0x800 && idx <= 0x8ff);
}

/* An MSR the CPU does not implement: the msr hook, else #GP(0). Returns
 * true when handled; false after setting up an MSR exit (RIP at the
 * instruction). */
static bool msr_hook(struct hvp_cpu *cpu, uint32_t idx, bool write, uint64_t *v)
{
    int rc = HVP_CPU_HOOK_GP;
    if (cpu->hooks.msr) rc = cpu->hooks.msr(cpu->hooks.ctx, idx, write, v);
    if (rc == 0) return true;
    if (rc != HVP_CPU_HOOK_EXIT) hvp_raise_gp0(cpu);
    struct hvp_cpu_exit *ex = cpu->exit;
    hvp_sys_insn_bytes(cpu, ex);
    ex->reason = HVP_CPU_EXIT_MSR;
    ex->u.msr.index = idx;
    ex->u.msr.write = write;
    ex->u.msr.value = write ? *v : 0;
    cpu->stop = true;
    return false;
}

HVP_HANDLER(h_rdmsr)
{
    need_cpl0(cpu);
    uint32_t idx = (uint32_t)cpu->gpr[1];
    uint64_t v = 0;
    if (idx == 0x10)
        v = hvp_cpu_rdtsc(cpu);
    else if (idx == 0xc0000080)
        v = cpu->st.efer;
    else if (idx == 0xfe)
        v = 0x508; /* MTRRCAP: 8 variable ranges, fixed ranges, WC; no SMRR */
    else if (idx == 0x8b)
        v = 0; /* BIOS_SIGN_ID: no microcode */
    else {
        uint64_t *p = msr_apic(idx) ? NULL : msr_ptr(cpu, idx);
        if (p)
            v = *p;
        else if (!msr_hook(cpu, idx, false, &v))
            return NULL; /* exit: not retired */
    }
    cpu->gpr[0] = (uint32_t)v;
    cpu->gpr[2] = v >> 32;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_wrmsr)
{
    need_cpl0(cpu);
    uint32_t idx = (uint32_t)cpu->gpr[1];
    uint64_t v = (uint32_t)cpu->gpr[0] | (cpu->gpr[2] << 32);
    if (idx == 0x10) {
        cpu->tsc_offset += v - hvp_cpu_rdtsc(cpu);
    } else if (idx == 0xc0000080) {
        if (v & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) hvp_raise_gp0(cpu);
        /* LMA is read-only; LME may not change while paging is on */
        if ((cpu->st.cr0 & CR0_PG) && ((v ^ cpu->st.efer) & EFER_LME)) hvp_raise_gp0(cpu);
        cpu->st.efer = (v & ~EFER_LMA) | (cpu->st.efer & EFER_LMA);
        hvp_sys_flush(cpu);
    } else if (idx == 0xfe) {
        hvp_raise_gp0(cpu); /* MTRRCAP is read-only */
    } else if (idx == 0x8b) {
        /* BIOS_SIGN_ID: writing it (before CPUID) asks for the revision: 0 */
    } else {
        uint64_t *p = msr_apic(idx) ? NULL : msr_ptr(cpu, idx);
        if (!p) {
            if (!msr_hook(cpu, idx, true, &v)) return NULL; /* exit: not retired */
            return end_here(cpu, d);
        }
        msr_check(cpu, idx, v);
        if (idx == 0x1b && cpu->hooks.msr) {
            /* the APIC sees the new base/enable bits; it may refuse them */
            uint64_t nv = v;
            if (!msr_hook(cpu, idx, true, &nv)) return NULL;
        }
        *p = v;
    }
    return end_here(cpu, d);
}

HVP_HANDLER(h_swapgs)
{
    need_cpl0(cpu);
    uint64_t t = cpu->gs_base;
    cpu->gs_base = cpu->st.kernel_gs_base;
    cpu->st.kernel_gs_base = t;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_sys_syscall)
{
    if (!(cpu->st.efer & EFER_SCE) || cpu->mode != 64) hvp_raise_ud(cpu);
    uint64_t next = cpu->rip + d->len, fl = hvp_flags_get(cpu);
    uint16_t sel = (uint16_t)(cpu->st.star >> 32) & 0xfffc;
    cpu->gpr[1] = next;
    cpu->gpr[11] = fl & ~RF_BIT;
    cpu->st.seg[HVP_SEG_CS] = (struct hvp_cpu_segment){0, 0xffffffff, sel, 0xa09b};
    cpu->st.seg[HVP_SEG_SS] = (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)(sel + 8), 0xc093};
    hvp_flags_set(cpu, (fl & ~cpu->st.sfmask & ~RF_BIT) | 2);
    cpu->rip = cpu->st.lstar;
    hvp_sys_update_mode(cpu);
    return d + 1;
}

/* SYSENTER: to CPL 0 at SYSENTER_CS/EIP/ESP with flat segments (64-bit
 * code under EFER.LMA, else 32-bit); IF, VM and RF cleared. #GP(0) in
 * real mode or with a null SYSENTER_CS. */
HVP_HANDLER(h_sysenter)
{
    uint16_t sel = (uint16_t)cpu->st.sysenter_cs & 0xfffc;
    if (!(cpu->st.cr0 & CR0_PE) || !sel) hvp_raise_gp0(cpu);
    bool lm = cpu->st.efer & EFER_LMA;
    cpu->st.seg[HVP_SEG_CS] =
        (struct hvp_cpu_segment){0, 0xffffffff, sel, (uint16_t)(lm ? 0xa09b : 0xc09b)};
    cpu->st.seg[HVP_SEG_SS] = (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)(sel + 8), 0xc093};
    uint64_t fl = hvp_flags_get(cpu) & ~(uint64_t)(HVP_IF | RF_BIT | 0x20000 /* VM */);
    hvp_flags_set(cpu, fl);
    cpu->rip = lm ? cpu->st.sysenter_eip : (uint32_t)cpu->st.sysenter_eip;
    cpu->gpr[4] = lm ? cpu->st.sysenter_esp : (uint32_t)cpu->st.sysenter_esp;
    hvp_sys_update_mode(cpu);
    return d + 1;
}

/* SYSEXIT (d->osz 8 with REX.W): back to CPL 3 at RDX/RCX with the
 * selectors after SYSENTER_CS (+32/+40 for 64-bit, +16/+24 for 32-bit). */
HVP_HANDLER(h_sysexit)
{
    uint16_t sel = (uint16_t)cpu->st.sysenter_cs & 0xfffc;
    if (!(cpu->st.cr0 & CR0_PE) || !sel || cpu->cpl) hvp_raise_gp0(cpu);
    bool w = d->osz == 8;
    if (w && !hvp_canonical(cpu->gpr[2])) hvp_raise_gp0(cpu);
    cpu->st.seg[HVP_SEG_CS] =
        w ? (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)((sel + 32) | 3), 0xa0fb}
          : (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)((sel + 16) | 3), 0xc0fb};
    cpu->st.seg[HVP_SEG_SS] =
        (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)((sel + (w ? 40 : 24)) | 3), 0xc0f3};
    cpu->rip = w ? cpu->gpr[2] : (uint32_t)cpu->gpr[2];
    cpu->gpr[4] = w ? cpu->gpr[1] : (uint32_t)cpu->gpr[1];
    hvp_sys_update_mode(cpu);
    return d + 1;
}

HVP_HANDLER(h_sysret)
{
    if (!(cpu->st.efer & EFER_SCE) || cpu->mode != 64) hvp_raise_ud(cpu);
    need_cpl0(cpu);
    bool w = d->osz == 8;
    if (w && !hvp_canonical(cpu->gpr[1])) hvp_raise_gp0(cpu);
    uint16_t base = (uint16_t)(cpu->st.star >> 48);
    cpu->st.seg[HVP_SEG_CS] =
        w ? (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)((base + 16) | 3), 0xa0fb}
          : (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)(base | 3), 0xc0fb};
    cpu->st.seg[HVP_SEG_SS] =
        (struct hvp_cpu_segment){0, 0xffffffff, (uint16_t)((base + 8) | 3), 0xc0f3};
    hvp_flags_set(cpu, (cpu->gpr[11] & 0x3c7fd7) | 2);
    cpu->rip = w ? cpu->gpr[1] : (uint32_t)cpu->gpr[1];
    hvp_sys_update_mode(cpu);
    return d + 1;
}

HVP_HANDLER(h_sys_int)
{
    cpu->rip += d->len;
    cpu->soft_int = true;
    cpu->soft_len = d->len;
    hvp_raise_trap(cpu, (unsigned)d->imm);
}

HVP_HANDLER(h_lgdt_lidt)
{
    need_cpl0(cpu);
    uint64_t a = hvp_ea(cpu, d);
    uint16_t lim = (uint16_t)hvp_rd16(cpu, a);
    uint64_t base;
    if (cpu->mode == 64)
        base = hvp_rd64(cpu, a + 2);
    else /* 24-bit base with a 16-bit operand */
        base = hvp_rd32(cpu, a + 2) & (d->osz == 2 ? 0xffffffu : 0xffffffffu);
    struct hvp_cpu_table *t = d->aux ? &cpu->st.idtr : &cpu->st.gdtr;
    t->base = base;
    t->limit = lim;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_sgdt_sidt)
{
    uint64_t a = hvp_ea(cpu, d);
    const struct hvp_cpu_table *t = d->aux ? &cpu->st.idtr : &cpu->st.gdtr;
    uint8_t b[10];
    memcpy(b, &t->limit, 2);
    memcpy(b + 2, &t->base, 8);
    hvp_wr_block(cpu, a, b, cpu->mode == 64 ? 10 : 6);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_ltr)
{
    need_cpl0(cpu);
    uint16_t sel =
        (uint16_t)((d->fl & HVP_DF_M0) ? hvp_rd16(cpu, hvp_ea(cpu, d)) : cpu->gpr[d->r0]);
    if (!(sel & ~3u)) hvp_raise_gp0(cpu);
    uint64_t hi, lo = gdt_desc(cpu, sel, 16, &hi);
    if (((lo >> 40) & 0x1f) != 9) hvp_raise(cpu, 13, sel & 0xfffc); /* available 64-bit TSS */
    if (!(lo & (1ull << 47))) hvp_raise(cpu, 11, sel & 0xfffc);
    struct hvp_cpu_segment s = seg_from_desc(sel, lo);
    s.base |= hi << 32;
    s.attr |= 2; /* busy */
    uint64_t busy = lo | (2ull << 40);
    hvp_sys_access(cpu, cpu->st.gdtr.base + (sel & ~7u), &busy, 8, true);
    cpu->st.tr = s;
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mov_from_sreg)
{
    uint16_t sel = cpu->st.seg[d->aux].selector;
    if (d->fl & HVP_DF_M0)
        hvp_wr16(cpu, hvp_ea(cpu, d), sel);
    else
        hvp_reg_wr(cpu, d->r0, d->osz, sel);
    return NEXT(cpu, d);
}

static unsigned cr_num(unsigned reg)
{
    return reg - HVP_X86_REG_CR0;
}

static bool is_cr(const struct hvp_x86_operand *o)
{
    return o->kind == HVP_X86_OPK_REG && o->reg >= HVP_X86_REG_CR0 && o->reg < HVP_X86_REG_CR0 + 16;
}

/* MOV to/from DR0-DR7 (d->aux = n; d->r0/r1 the GPR). CPL 0 only; DR4/5
 * alias DR6/7 unless CR4.DE (#UD); DR7.GD makes any access a #DB fault
 * with DR6.BD. Breakpoints are kept but not armed yet (cpu_internal.h). */
static unsigned dr_index(struct hvp_cpu *cpu, unsigned n)
{
    if (cpu->cpl) hvp_raise_gp0(cpu);
    if (n == 4 || n == 5) {
        if (cpu->st.cr4 & 0x8) hvp_raise_ud(cpu);
        n += 2;
    }
    if (cpu->st.dr[7] & 0x2000) { /* GD: the debugger owns the registers */
        cpu->st.dr[6] = (cpu->st.dr[6] & ~0x400full) | 0x2000;
        cpu->st.dr[7] &= ~0x2000ull;
        hvp_raise(cpu, 1, -1);
    }
    return n;
}

HVP_HANDLER(h_mov_from_dr)
{
    unsigned n = dr_index(cpu, d->aux);
    hvp_reg_wr(cpu, d->r0, cpu->mode == 64 ? 8 : 4, cpu->st.dr[n]);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_mov_to_dr)
{
    unsigned n = dr_index(cpu, d->aux);
    uint64_t v = cpu->mode == 64 ? cpu->gpr[d->r1] : (uint32_t)cpu->gpr[d->r1];
    if (n >= 6 && (v >> 32)) hvp_raise_gp0(cpu);
    if (n == 6)
        v = (v & 0xe00f) | 0xffff0ff0; /* B0-3, BD, BS, BT; the rest reads as 1 */
    else if (n == 7)
        v = (v & 0xffff23ff) | 0x400; /* bits 11, 12, 14, 15 read 0, bit 10 reads 1 */
    cpu->st.dr[n] = v;
    return NEXT(cpu, d);
}

static bool is_dr(const struct hvp_x86_operand *o)
{
    return o->kind == HVP_X86_OPK_REG && o->reg >= HVP_X86_REG_DR0 && o->reg < HVP_X86_REG_DR0 + 8;
}

/* System-model forms; HVP_B_NONE leaves the instruction to the others. */
int hvp_cpu_build_sys(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY) return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    switch (xi->op) {
    case HVP_X86_OP_HLT: d->fn = h_hlt; return HVP_B_END;
    case HVP_X86_OP_IN:
    case HVP_X86_OP_OUT: {
        bool out = xi->op == HVP_X86_OP_OUT;
        const struct hvp_x86_operand *pv = &xi->ops[out ? 0 : 1], *av = &xi->ops[out ? 1 : 0];
        d->aux = pv->kind == HVP_X86_OPK_REG;
        d->imm = xi->imm & 0xff;
        d->osz = av->size;
        d->r1 = out;
        d->fn = h_io;
        return HVP_B_END;
    }
    case HVP_X86_OP_CLI:
    case HVP_X86_OP_STI:
        d->aux = xi->op == HVP_X86_OP_STI;
        d->fn = h_cli_sti;
        return d->aux ? HVP_B_END : HVP_B_OK; /* after STI the run loop looks at INTR */
    case HVP_X86_OP_MOV:
        if (is_dr(&xi->ops[1])) {
            d->aux = (uint8_t)(xi->ops[1].reg - HVP_X86_REG_DR0);
            d->r0 = (uint8_t)(hvp_gpr_code(xi->ops[0].reg) & 15);
            d->fn = h_mov_from_dr;
            return HVP_B_OK;
        }
        if (is_dr(&xi->ops[0])) {
            d->aux = (uint8_t)(xi->ops[0].reg - HVP_X86_REG_DR0);
            d->r1 = (uint8_t)(hvp_gpr_code(xi->ops[1].reg) & 15);
            d->fn = h_mov_to_dr;
            return HVP_B_OK;
        }
        if (is_cr(&xi->ops[1])) {
            unsigned n = cr_num(xi->ops[1].reg);
            if (n != 0 && n != 2 && n != 3 && n != 4 && n != 8) return HVP_B_NONE;
            d->aux = (uint8_t)n;
            d->r0 = (uint8_t)(hvp_gpr_code(xi->ops[0].reg) & 15);
            d->fn = h_mov_from_cr;
            return HVP_B_OK;
        }
        if (xi->ops[1].kind == HVP_X86_OPK_REG && xi->ops[1].reg >= HVP_X86_REG_ES &&
            xi->ops[1].reg < HVP_X86_REG_ES + 6) {
            d->aux = (uint8_t)(xi->ops[1].reg - HVP_X86_REG_ES);
            d->osz = xi->ops[0].size;
            if (xi->ops[0].kind == HVP_X86_OPK_REG) d->r0 = (uint8_t)hvp_gpr_code(xi->ops[0].reg);
            d->fn = h_mov_from_sreg;
            return HVP_B_OK;
        }
        if (is_cr(&xi->ops[0])) {
            unsigned n = cr_num(xi->ops[0].reg);
            if (n != 0 && n != 2 && n != 3 && n != 4 && n != 8) return HVP_B_NONE;
            d->aux = (uint8_t)n;
            d->r1 = (uint8_t)(hvp_gpr_code(xi->ops[1].reg) & 15);
            d->fn = h_mov_to_cr;
            return HVP_B_END;
        }
        return HVP_B_NONE;
    case HVP_X86_OP_INVLPG: d->fn = h_invlpg; return HVP_B_END;
    case HVP_X86_OP_LMSW:
    case HVP_X86_OP_CLTS:
        d->aux = xi->op == HVP_X86_OP_CLTS;
        d->fn = h_lmsw_clts;
        return HVP_B_END;
    case HVP_X86_OP_SMSW:
        d->osz = xi->nops ? (uint8_t)xi->ops[0].size : 2;
        d->fn = h_smsw;
        return HVP_B_OK;
    case HVP_X86_OP_RDMSR: d->fn = h_rdmsr; return HVP_B_OK;
    case HVP_X86_OP_WRMSR: d->fn = h_wrmsr; return HVP_B_END;
    case HVP_X86_OP_SWAPGS: d->fn = h_swapgs; return HVP_B_OK;
    case HVP_X86_OP_SYSCALL: d->fn = h_sys_syscall; return HVP_B_END;
    case HVP_X86_OP_SYSENTER: d->fn = h_sysenter; return HVP_B_END;
    case HVP_X86_OP_SYSEXIT:
        d->osz = xi->opsize;
        d->fn = h_sysexit;
        return HVP_B_END;
    case HVP_X86_OP_SYSRET:
        d->osz = xi->opsize;
        d->fn = h_sysret;
        return HVP_B_END;
    case HVP_X86_OP_INT:
        d->imm = xi->imm & 0xff;
        d->fn = h_sys_int;
        return HVP_B_END;
    case HVP_X86_OP_LGDT:
    case HVP_X86_OP_LIDT:
        d->aux = xi->op == HVP_X86_OP_LIDT;
        d->fn = h_lgdt_lidt;
        return HVP_B_OK;
    case HVP_X86_OP_SGDT:
    case HVP_X86_OP_SIDT:
        d->aux = xi->op == HVP_X86_OP_SIDT;
        d->fn = h_sgdt_sidt;
        return HVP_B_OK;
    case HVP_X86_OP_LTR: d->fn = h_ltr; return HVP_B_OK;
    default: return HVP_B_NONE;
    }
}
