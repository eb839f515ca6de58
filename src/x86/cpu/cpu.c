/* hvp software x86-64 CPU: public API, memory map, software TLB, trace
 * cache and run loop. See cpu_internal.h for the design. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <cpuid.h>
#include <x86intrin.h>

#include "cpu_internal.h"

static void set_err(struct hvp_cpu *cpu, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cpu->err, sizeof cpu->err, fmt, ap);
    va_end(ap);
}

/* ---- CPUID ---- */

/* What the CPU implements. Leaf 1 EDX: FPU-less baseline (TSC, CX8, CMOV);
 * ECX: CX16, MOVBE, POPCNT. Leaf 7 EBX: BMI1, BMI2, ADX, SHA. 0x80000001:
 * LAHF/SAHF in 64-bit mode, LZCNT, SYSCALL, LM, RDTSCP. */
static const struct hvp_cpuid_entry default_cpuid[] = {
    {0, 0, 7, 0x20707668 /* "hvp " */, 0x20757063 /* "cpu " */, 0x74666f73 /* "soft" */, 0},
    {1, 0, 0x000806f1, 0x00000800, (1u << 13) | (1u << 22) | (1u << 23),
     (1u << 4) | (1u << 8) | (1u << 15), 0},
    {7, 0, 0, (1u << 3) | (1u << 8) | (1u << 19) | (1u << 29) /* SHA */, 0, 0, HVP_CPUID_F_SUBLEAF},
    {0x80000000, 0, 0x80000008, 0, 0, 0, 0},
    {0x80000001, 0, 0, 0, (1u << 0) | (1u << 5), (1u << 11) | (1u << 27) | (1u << 29), 0},
    {0x80000002, 0, 0x20707668, 0x74666f73, 0x65726177, 0x3638782d,
     0}, /* "hvp software x86-64 CPU" */
    {0x80000003, 0, 0x2034362d, 0x00555043, 0, 0, 0},
    {0x80000004, 0, 0, 0, 0, 0, 0},
    {0x80000008, 0, 0x00003030, 0, 0, 0, 0}, /* 48-bit physical and linear */
};

#define CPUID_MAX 32

/* The default table with the contributed bits OR-ed in (or their leaves
 * appended). Returns the number of entries in out[CPUID_MAX]. */
static size_t build_cpuid(struct hvp_cpuid_entry *out, uint32_t model)
{
    size_t n = sizeof default_cpuid / sizeof default_cpuid[0];
    memcpy(out, default_cpuid, sizeof default_cpuid);
    /* x87 (cpu_x87.c) and MMX/SSE..SSE4.2/AES/PCLMUL (cpu_sse.c). A few of
     * them run the host's own instruction (ROUND*, DPPS/DPPD need SSE4.1,
     * AES* needs AES-NI), so those are advertised only when the host has
     * them. */
    unsigned ha = 0, hb = 0, hc = 0, hd = 0;
    __get_cpuid(1, &ha, &hb, &hc, &hd);
    for (size_t i = 0; i < n; i++) {
        if (out[i].leaf != 1) continue;
        out[i].edx |= (1u << 0) /* FPU */ | (1u << 19) /* CLFSH */ | (1u << 23) /* MMX */ |
                      (1u << 24) /* FXSR */ | (1u << 25) /* SSE */ | (1u << 26) /* SSE2 */;
        out[i].ebx |= 8u << 8; /* CLFLUSH line size: 8 x 8 bytes */
        out[i].ecx |= (1u << 0) /* SSE3 */ | (1u << 1) /* PCLMULQDQ */ | (1u << 9) /* SSSE3 */ |
                      (1u << 20) /* SSE4.2 */ | (hc & (1u << 19)) /* SSE4.1 */ |
                      (hc & (1u << 25)) /* AES */;
        /* system model (pc-machine.md 4.3): PSE, MSR, PAE, PGE, PAT (paging
         * in every mode, cpu.c/cpu_sys.c), MTRR (the MSRs, kept), APIC (the embedder's
         * local APIC behind the mmio/msr hooks), the hypervisor bit, one
         * logical processor. Not MCE/MCA, XSAVE, x2APIC, PCID. */
        if (model == HVP_CPU_MODEL_SYSTEM) {
            out[i].edx |= (1u << 3) | (1u << 5) | (1u << 6) | (1u << 9) | (1u << 11) /* SEP */ |
                          (1u << 12) | (1u << 13) | (1u << 16);
            out[i].ecx |= 1u << 31;
            out[i].ebx |= 1u << 16;
        }
    }
    if (model == HVP_CPU_MODEL_SYSTEM) {
        for (size_t i = 0; i < n; i++)
            if (out[i].leaf == 0x80000001)
                out[i].edx |= (1u << 20) /* NX */ | (1u << 26) /* 1G pages */;
        /* ARAT: the APIC timer runs in every state (no C-states here) */
        out[n++] = (struct hvp_cpuid_entry){6, 0, 1u << 2, 0, 0, 0, 0};
        /* invariant TSC: RDTSC is the host's constant-rate TSC */
        out[n++] = (struct hvp_cpuid_entry){0x80000007, 0, 0, 0, 0, 1u << 8, 0};
    }
    return n;
}

size_t hvp_cpu_default_cpuid(enum hvp_cpu_model model, struct hvp_cpuid_entry *out, size_t max)
{
    struct hvp_cpuid_entry t[CPUID_MAX];
    size_t n = build_cpuid(t, model);
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = t[i];
    return n;
}

void hvp_cpu_cpuid(struct hvp_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
    out[0] = out[1] = out[2] = out[3] = 0;
    for (size_t i = 0; i < cpu->ncpuid; i++) {
        const struct hvp_cpuid_entry *e = &cpu->cpuid[i];
        if (e->leaf == leaf && (!(e->flags & HVP_CPUID_F_SUBLEAF) || e->subleaf == sub)) {
            out[0] = e->eax;
            out[1] = e->ebx;
            out[2] = e->ecx;
            out[3] = e->edx;
            return;
        }
    }
}

/* Rejects tables that advertise features the CPU lacks: every bit must be
 * in the default table's bit (for feature leaves). */
static int check_cpuid(struct hvp_cpu *cpu, const struct hvp_cpuid_entry *t, size_t n,
                       uint32_t model)
{
    struct hvp_cpuid_entry def[CPUID_MAX];
    size_t nd = build_cpuid(def, model);
    static const struct {
        uint32_t leaf;
        unsigned reg;
    } feat[] = {{1, 2}, {1, 3}, {7, 1}, {7, 2}, {7, 3}, {0x80000001, 2}, {0x80000001, 3}};
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof feat / sizeof feat[0]; k++) {
            if (t[i].leaf != feat[k].leaf || (t[i].leaf == 7 && t[i].subleaf != 0)) continue;
            uint32_t have = (&t[i].eax)[feat[k].reg], ok = 0;
            for (size_t j = 0; j < nd; j++)
                if (def[j].leaf == feat[k].leaf) ok = (&def[j].eax)[feat[k].reg];
            /* bits the embedder's local APIC implements (through the hooks):
             * x2APIC (its MSRs) and the TSC-deadline timer */
            if (feat[k].leaf == 1 && feat[k].reg == 2 && model == HVP_CPU_MODEL_SYSTEM)
                ok |= (1u << 21) | (1u << 24);
            if (have & ~ok) {
                set_err(cpu, "cpuid leaf %#x advertises unimplemented features (%#x)", t[i].leaf,
                        have & ~ok);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* ---- lifetime ---- */

static void tlb_flush(struct hvp_cpu *cpu)
{
    for (unsigned i = 0; i < HVP_TLB_N; i++) {
        cpu->tlb[i].tag_r = cpu->tlb[i].tag_w = cpu->tlb[i].tag_x = 1;
        cpu->tlb[i].addend = 0;
    }
}

static void cache_flush(struct hvp_cpu *cpu)
{
    memset(cpu->hash, 0, HVP_HASH_N * sizeof cpu->hash[0]);
    cpu->ntraces = 0;
    cpu->pool_used = 0;
    for (unsigned i = 0; i < cpu->nregions; i++)
        memset(cpu->regions[i].code, 0, cpu->regions[i].size >> 12);
}

/* The architectural state after RESET (Intel SDM vol. 3, 10.1.1). */
static void reset_state(struct hvp_cpu *cpu, const struct hvp_cpu_config *cfg)
{
    struct hvp_cpu_state *st = &cpu->st;
    memset(st, 0, sizeof *st);
    cpu->mode = 16;
    cpu->cpl = 0;
    cpu->exc_bitmap = cfg->exception_exit_bitmap;
    memset(cpu->gpr, 0, sizeof cpu->gpr);
    cpu->gpr[2] = 0x000806f1; /* EDX: the CPUID signature */
    cpu->rip = 0xfff0;
    cpu->rflags = 2;
    cpu->fs_base = cpu->gs_base = 0;
    st->cr0 = 0x60000010;
    st->seg[HVP_SEG_CS] = (struct hvp_cpu_segment){0xffff0000, 0xffff, 0xf000, 0x9b};
    for (int s = 0; s < 6; s++)
        if (s != HVP_SEG_CS) st->seg[s] = (struct hvp_cpu_segment){0, 0xffff, 0, 0x93};
    st->gdtr.limit = st->idtr.limit = 0xffff;
    st->ldtr = (struct hvp_cpu_segment){0, 0xffff, 0, 0x82};
    st->tr = (struct hvp_cpu_segment){0, 0xffff, 0, 0x8b};
    st->dr[6] = 0xffff0ff0;
    st->dr[7] = 0x400;
    st->xcr0 = 1;
    st->pat = 0x0007040600070406ull;
    st->apic_base = 0xfee00900; /* enabled, bootstrap processor */
    st->misc_enable = 0x1801;   /* fast strings; BTS and PEBS unavailable */
    st->fpu.fcw = 0x40;
    st->fpu.mxcsr = 0x1f80;
    hvp_seg_refresh(cpu); /* CS.base 0xFFFF0000: the first fetch is at 0xFFFFFFF0 */
}

int hvp_cpu_create(const struct hvp_cpu_config *cfg, struct hvp_cpu **out)
{
    *out = NULL;
    if (!cfg || cfg->size < sizeof(struct hvp_cpu_config) ||
        (cfg->model != HVP_CPU_MODEL_USER64 && cfg->model != HVP_CPU_MODEL_SYSTEM))
        return -EINVAL;
    struct hvp_cpu *cpu = calloc(1, sizeof *cpu);
    if (!cpu) return -ENOMEM;
    cpu->pool = calloc(HVP_POOL_N, sizeof cpu->pool[0]);
    cpu->xi = calloc(HVP_POOL_N, sizeof cpu->xi[0]);
    cpu->traces = calloc(HVP_TRACES_N, sizeof cpu->traces[0]);
    cpu->hash = calloc(HVP_HASH_N, sizeof cpu->hash[0]);
    struct hvp_cpuid_entry def[CPUID_MAX];
    size_t nd = build_cpuid(def, cfg->model);
    const struct hvp_cpuid_entry *t = cfg->cpuid ? cfg->cpuid : def;
    size_t n = cfg->cpuid ? cfg->ncpuid : nd;
    cpu->cpuid = calloc(n ? n : 1, sizeof *cpu->cpuid);
    if (!cpu->pool || !cpu->xi || !cpu->traces || !cpu->hash || !cpu->cpuid) {
        hvp_cpu_destroy(cpu);
        return -ENOMEM;
    }
    if (check_cpuid(cpu, t, n, cfg->model)) {
        hvp_cpu_destroy(cpu);
        return -EINVAL;
    }
    memcpy(cpu->cpuid, t, n * sizeof *t);
    cpu->ncpuid = n;
    cpu->model = cfg->model;
    cpu->mode = 64;
    cpu->rflags = 0x202;
    cpu->st.fpu.fcw = 0x37f;
    cpu->st.fpu.mxcsr = 0x1f80;
    cpu->st.cr0 = 0x80050033;
    cpu->st.cr4 = 0x6a0;
    cpu->st.efer = 0xd01;
    cpu->st.seg[HVP_SEG_CS] = (struct hvp_cpu_segment){0, 0xffffffff, 0x33, 0xa0fb};
    for (int s = 0; s < 6; s++)
        if (s != HVP_SEG_CS) cpu->st.seg[s] = (struct hvp_cpu_segment){0, 0xffffffff, 0x2b, 0xc0f3};
    cpu->tsc_offset = 0;
    cpu->cpl = 3;
    if (cfg->model == HVP_CPU_MODEL_SYSTEM) reset_state(cpu, cfg);
    tlb_flush(cpu);
    *out = cpu;
    return 0;
}

void hvp_cpu_destroy(struct hvp_cpu *cpu)
{
    if (!cpu) return;
    for (unsigned i = 0; i < cpu->nregions; i++)
        free(cpu->regions[i].code);
    free(cpu->regions);
    free(cpu->pool);
    free(cpu->xi);
    free(cpu->traces);
    free(cpu->hash);
    free(cpu->cpuid);
    free(cpu);
}

const char *hvp_cpu_error(const struct hvp_cpu *cpu)
{
    return cpu ? cpu->err : "";
}

/* ---- guest-physical memory ---- */

static struct hvp_region *region_find(struct hvp_cpu *cpu, uint64_t gpa)
{
    /* few regions: a linear scan, most recent hit first */
    for (unsigned i = 0; i < cpu->nregions; i++) {
        struct hvp_region *r = &cpu->regions[i];
        if (gpa - r->gpa < r->size) {
            if (i) { /* move to front */
                struct hvp_region tmp = *r;
                memmove(&cpu->regions[1], &cpu->regions[0], i * sizeof tmp);
                cpu->regions[0] = tmp;
            }
            return &cpu->regions[0];
        }
    }
    return NULL;
}

int hvp_cpu_map(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size, void *host, unsigned prot)
{
    if (!cpu || !size || ((gpa | size | (uintptr_t)host) & 0xfff) || gpa + size < gpa) {
        if (cpu) set_err(cpu, "map: unaligned or empty range");
        return -EINVAL;
    }
    for (unsigned i = 0; i < cpu->nregions; i++) {
        struct hvp_region *r = &cpu->regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size) {
            set_err(cpu, "map: %#llx overlaps a mapping", (unsigned long long)gpa);
            return -EEXIST;
        }
    }
    if (cpu->nregions == cpu->cap_regions) {
        unsigned cap = cpu->cap_regions ? cpu->cap_regions * 2 : 8;
        struct hvp_region *n = realloc(cpu->regions, cap * sizeof *n);
        if (!n) return -ENOMEM;
        cpu->regions = n;
        cpu->cap_regions = cap;
    }
    uint8_t *code = calloc(size >> 12, 1);
    if (!code) return -ENOMEM;
    cpu->regions[cpu->nregions++] = (struct hvp_region){gpa, size, host, prot, code};
    tlb_flush(cpu);
    return 0;
}

int hvp_cpu_unmap(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size)
{
    if (!cpu || ((gpa | size) & 0xfff)) return -EINVAL;
    uint64_t end = gpa + size;
    for (unsigned i = 0; i < cpu->nregions; i++) {
        struct hvp_region r = cpu->regions[i];
        if (!(gpa < r.gpa + r.size && r.gpa < end)) continue;
        /* remove r, then add back the parts outside [gpa, end) */
        cpu->regions[i] = cpu->regions[--cpu->nregions];
        i--;
        if (r.gpa < gpa) {
            uint64_t n = gpa - r.gpa;
            uint8_t *code = calloc(n >> 12, 1);
            if (code)
                cpu->regions[cpu->nregions++] = (struct hvp_region){r.gpa, n, r.host, r.prot, code};
        }
        if (end < r.gpa + r.size) {
            uint64_t n = r.gpa + r.size - end;
            uint8_t *code = calloc(n >> 12, 1);
            if (cpu->nregions == cpu->cap_regions) {
                struct hvp_region *nr = realloc(cpu->regions, 2 * cpu->cap_regions * sizeof *nr);
                if (!nr) {
                    free(code);
                    free(r.code);
                    return -ENOMEM;
                }
                cpu->regions = nr;
                cpu->cap_regions *= 2;
            }
            if (code)
                cpu->regions[cpu->nregions++] =
                    (struct hvp_region){end, n, r.host + (end - r.gpa), r.prot, code};
        }
        free(r.code);
    }
    tlb_flush(cpu);
    cache_flush(cpu);
    return 0;
}

int hvp_cpu_protect(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size, unsigned prot)
{
    if (!cpu || ((gpa | size) & 0xfff)) return -EINVAL;
    /* split so that [gpa, gpa+size) is made of whole regions */
    struct hvp_region *r;
    uint64_t a = gpa, end = gpa + size;
    while (a < end) {
        r = region_find(cpu, a);
        if (!r) {
            set_err(cpu, "protect: %#llx is not mapped", (unsigned long long)a);
            return -ENOENT;
        }
        struct hvp_region c = *r;
        uint64_t lo = a, hi = end < c.gpa + c.size ? end : c.gpa + c.size;
        uint8_t *host = c.host + (lo - c.gpa);
        int rc = hvp_cpu_unmap(cpu, lo, hi - lo);
        if (!rc) rc = hvp_cpu_map(cpu, lo, hi - lo, host, prot);
        if (rc) return rc;
        a = hi;
    }
    tlb_flush(cpu);
    return 0;
}

/* Kills every trace that has code in guest-physical page `page`. Entries of
 * a killed trace now return NULL (not retired), so a trace that is running
 * stops right after the store that hit it. */
static const struct hvp_dinsn *h_stale(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    (void)cpu;
    (void)d;
    return NULL;
}

static void invalidate_page(struct hvp_cpu *cpu, uint64_t page)
{
    for (unsigned h = 0; h < HVP_HASH_N; h++) {
        struct hvp_trace **pp = &cpu->hash[h];
        while (*pp) {
            struct hvp_trace *t = *pp;
            if ((t->phys & HVP_PAGE_MASK) == page || t->page2 == page) {
                *pp = t->hnext;
                t->dead = 1;
                for (unsigned i = 0; i <= (unsigned)t->n + t->nexit; i++)
                    t->insns[i].fn = h_stale;
                cpu->stats.code_invalidations++;
            } else {
                pp = &t->hnext;
            }
        }
    }
    struct hvp_region *r = region_find(cpu, page);
    if (r) r->code[(page - r->gpa) >> 12] = 0;
}

void hvp_cpu_invalidate_code(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size)
{
    for (uint64_t p = gpa & HVP_PAGE_MASK; p < gpa + size; p += 4096) {
        struct hvp_region *r = region_find(cpu, p);
        if (r && r->code[(p - r->gpa) >> 12]) invalidate_page(cpu, p);
    }
}

/* ---- exceptions ---- */

_Noreturn void hvp_raise(struct hvp_cpu *cpu, unsigned vector, int32_t error_code)
{
    struct hvp_cpu_exit *ex = cpu->exit;
    ex->reason = HVP_CPU_EXIT_EXCEPTION;
    ex->u.exception.vector = (uint8_t)vector;
    ex->u.exception.has_error_code = error_code >= 0;
    ex->u.exception.error_code = error_code >= 0 ? (uint32_t)error_code : 0;
    ex->u.exception.cr2 = 0;
    longjmp(cpu->jb, 1);
}

_Noreturn void hvp_raise_pf(struct hvp_cpu *cpu, uint64_t addr, uint32_t error_code)
{
    struct hvp_cpu_exit *ex = cpu->exit;
    ex->reason = HVP_CPU_EXIT_EXCEPTION;
    ex->u.exception.vector = 14;
    ex->u.exception.has_error_code = true;
    ex->u.exception.error_code = error_code;
    ex->u.exception.cr2 = addr;
    cpu->st.cr2 = addr;
    longjmp(cpu->jb, 1);
}

/* A trap: RIP is already past the instruction, which retired. */
_Noreturn void hvp_raise_trap(struct hvp_cpu *cpu, unsigned vector)
{
    struct hvp_cpu_exit *ex = cpu->exit;
    ex->reason = HVP_CPU_EXIT_EXCEPTION;
    ex->u.exception.vector = (uint8_t)vector;
    ex->u.exception.has_error_code = false;
    ex->u.exception.error_code = 0;
    ex->u.exception.cr2 = 0;
    longjmp(cpu->jb, 2);
}

/* ---- memory slow paths ---- */

static inline bool canonical(uint64_t a)
{
    return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

#define PF_P 1u
#define PF_W 2u
#define PF_U 4u
#define PF_I 16u

/* Fills the TLB entry for the page of linear address a for an access of
 * kind (PROT_READ / WRITE / EXEC); raises #GP or #PF when not allowed.
 * Returns the host address of a. */
static unsigned retired_before_rip(const struct hvp_cpu *cpu, const struct hvp_trace *t);

/* A non-canonical address: #SS(0) when the access goes through SS (an
 * explicit RSP/RBP-based operand, or the implicit stack access of PUSH,
 * POP, CALL, RET, ENTER, LEAVE, PUSHF, POPF), else #GP(0). */
static _Noreturn void raise_noncanonical(struct hvp_cpu *cpu, uint64_t a)
{
    unsigned vec = 13;
    const struct hvp_trace *t = cpu->cur;
    unsigned k = t ? retired_before_rip(cpu, t) : 0;
    if (t && k < t->n) {
        const struct hvp_dinsn *d = &t->insns[k];
        const struct hvp_x86_insn *xi = &cpu->xi[d - cpu->pool];
        bool mem = false;
        for (unsigned i = 0; i < xi->nops; i++)
            mem |= xi->ops[i].kind == HVP_X86_OPK_MEM;
        bool stack_op = false;
        switch (xi->op) {
        case HVP_X86_OP_PUSH:
        case HVP_X86_OP_POP:
        case HVP_X86_OP_CALL:
        case HVP_X86_OP_RET:
        case HVP_X86_OP_ENTER:
        case HVP_X86_OP_LEAVE:
        case HVP_X86_OP_PUSHF:
        case HVP_X86_OP_PUSHFQ:
        case HVP_X86_OP_POPF:
        case HVP_X86_OP_POPFQ: stack_op = true; break;
        default: break;
        }
        /* a stack instruction's explicit operand is told apart by its address
         * (BT and friends may access far from the EA, but are not stack ops) */
        bool explicit_op = mem && (!stack_op || a - hvp_ea(cpu, d) < 64);
        if (explicit_op ? xi->mem.seg == HVP_X86_REG_ES + HVP_SEG_SS : stack_op) vec = 12;
    }
    hvp_raise(cpu, vec, 0);
}

/* ---- system model: paging ---- */

#define PF_RSVD     8u
#define CR0_PG      0x80000000ull
#define CR0_WP      0x10000ull
#define EFER_LMA    0x400ull
#define EFER_NXE    0x800ull
#define PTE_ADDR    0x000ffffffffff000ull
#define PROT_GLOBAL 0x100u /* walk(): the leaf has G set */
#define PROT_LARGE  0x200u /* walk(): a 2M or 1G page */
#define CR4_PGE     0x80ull

static _Noreturn void sys_internal(struct hvp_cpu *cpu, const char *what)
{
    set_err(cpu, "%s", what);
    cpu->exit->reason = HVP_CPU_EXIT_INTERNAL;
    longjmp(cpu->jb, 3);
}

static bool walk_legacy(struct hvp_cpu *cpu, uint64_t a, unsigned kind, bool user, bool commit,
                        uint64_t *gpa, unsigned *prot, uint32_t *ec);

/* 4-level walk of linear a for an access of `kind` at privilege user/
 * supervisor. On success: *gpa, and *prot = the kinds this privilege may
 * use the page for (WRITE only once the page is dirty, so that the first
 * store comes back here to set D). commit sets the A (and for writes D)
 * bits atomically, as the walk of a real access does. On failure: the
 * #PF error code in *ec. */
static bool walk(struct hvp_cpu *cpu, uint64_t a, unsigned kind, bool user, bool commit,
                 uint64_t *gpa, unsigned *prot, uint32_t *ec)
{
    if (!(cpu->st.efer & EFER_LMA)) return walk_legacy(cpu, a, kind, user, commit, gpa, prot, ec);
    bool nxe = cpu->st.efer & EFER_NXE, wp = cpu->st.cr0 & CR0_WP;
    uint32_t e0 = (kind == HVP_CPU_PROT_WRITE ? PF_W : 0) | (user ? PF_U : 0) |
                  (kind == HVP_CPU_PROT_EXEC && nxe ? PF_I : 0);
    uint64_t table = cpu->st.cr3 & PTE_ADDR, pte = 0;
    uint64_t *ptes[4];
    bool ptes_w[4]; /* the entry's memory is writable (not a ROM) */
    unsigned nl = 0, shift = 39;
    bool rw = true, us = true, nx = false;
    for (int lvl = 4; lvl >= 1; lvl--, shift -= 9) {
        uint64_t pa = table + ((a >> shift) & 511) * 8;
        struct hvp_region *r = region_find(cpu, pa);
        if (!r) { /* a table outside RAM reads as not present */
            *ec = e0;
            return false;
        }
        uint64_t *p = (uint64_t *)(void *)(r->host + (pa - r->gpa));
        pte = __atomic_load_n(p, __ATOMIC_RELAXED);
        if (!(pte & 1)) {
            *ec = e0;
            return false;
        }
        bool leaf = lvl == 1 || (lvl <= 3 && (pte & 0x80));
        uint64_t rsv = 0x000f000000000000ull | (nxe ? 0 : 1ull << 63);
        if (lvl == 4) rsv |= 0x80;
        if (leaf && lvl == 2) rsv |= 0x1fe000;
        if (leaf && lvl == 3) rsv |= 0x3fffe000;
        if (pte & rsv) {
            *ec = e0 | PF_P | PF_RSVD;
            return false;
        }
        rw &= (pte >> 1) & 1;
        us &= (pte >> 2) & 1;
        nx |= pte >> 63;
        ptes_w[nl] = r->prot & HVP_CPU_PROT_WRITE;
        ptes[nl++] = p;
        if (leaf) break;
        table = pte & PTE_ADDR;
    }
    bool rd_ok = !user || us;
    bool wr_ok = rd_ok && (rw || (!user && !wp));
    bool x_ok = rd_ok && !(nx && nxe);
    bool ok = kind == HVP_CPU_PROT_READ ? rd_ok : kind == HVP_CPU_PROT_WRITE ? wr_ok : x_ok;
    if (!ok) {
        *ec = e0 | PF_P;
        return false;
    }
    bool dirty = pte & 0x40;
    if (commit) {
        /* A/D writes to tables in read-only memory (a ROM) are dropped, as
         * on a PC: the host memory behind it may be read-only as well */
        for (unsigned i = 0; i < nl; i++)
            if (ptes_w[i] && !(__atomic_load_n(ptes[i], __ATOMIC_RELAXED) & 0x20))
                __atomic_fetch_or(ptes[i], 0x20, __ATOMIC_RELAXED);
        if (kind == HVP_CPU_PROT_WRITE && !dirty && ptes_w[nl - 1]) {
            __atomic_fetch_or(ptes[nl - 1], 0x40, __ATOMIC_RELAXED);
            dirty = true;
        }
    }
    *prot = (rd_ok ? HVP_CPU_PROT_READ : 0) | (wr_ok && dirty ? HVP_CPU_PROT_WRITE : 0) |
            (x_ok ? HVP_CPU_PROT_EXEC : 0) | (pte & 0x100 ? PROT_GLOBAL : 0) |
            (shift > 12 ? PROT_LARGE : 0);
    uint64_t mask = (1ull << shift) - 1;
    *gpa = (pte & PTE_ADDR & ~mask) | (a & mask);
    return true;
}

/* The PAE page-directory-pointer table: four entries, loaded from CR3
 * when CR3 is written, or CR0.PG/CR4.PAE/PGE/PSE change, under PAE paging
 * outside long mode (not re-read by walks, as hardware). A present entry
 * with reserved bits makes the MOV raise #GP(0): returns false then. */
#define PDPTE_RSVD 0xfff00000000001e6ull /* 63:52 (MAXPHYADDR 48 + no XD), 8:5, 2:1 */
bool hvp_sys_load_pdptes(struct hvp_cpu *cpu, uint64_t cr3, uint64_t out[4])
{
    uint64_t pa = cr3 & 0xffffffe0ull;
    for (unsigned i = 0; i < 4; i++) {
        struct hvp_region *r = region_find(cpu, pa + i * 8);
        uint64_t v = 0;
        if (r) memcpy(&v, r->host + (pa + i * 8 - r->gpa), 8);
        if ((v & 1) && (v & (PDPTE_RSVD | 0x000f000000000000ull))) return false;
        out[i] = v;
    }
    return true;
}

/* 32-bit paging (2 levels, 4-byte entries, 4 MiB pages with CR4.PSE) and
 * PAE paging (PDPTE -> PD -> PT, 8-byte entries, 2 MiB pages, NX with
 * EFER.NXE) outside long mode; same contract as walk(). */
static bool walk_legacy(struct hvp_cpu *cpu, uint64_t a, unsigned kind, bool user, bool commit,
                        uint64_t *gpa, unsigned *prot, uint32_t *ec)
{
    bool pae = cpu->st.cr4 & 0x20, pse = cpu->st.cr4 & 0x10, wp = cpu->st.cr0 & CR0_WP;
    bool nxe = pae && (cpu->st.efer & EFER_NXE);
    uint32_t e0 = (kind == HVP_CPU_PROT_WRITE ? PF_W : 0) | (user ? PF_U : 0) |
                  (kind == HVP_CPU_PROT_EXEC && nxe ? PF_I : 0);
    unsigned esz = pae ? 8 : 4, nl = 0, shift;
    void *ptes[2];
    uint64_t pte = 0, table;
    bool rw = true, us = true, nx = false;
    a = (uint32_t)a;
    if (pae) {
        uint64_t pdpte = cpu->pdpte[a >> 30];
        if (!(pdpte & 1)) {
            *ec = e0;
            return false;
        }
        table = pdpte & 0x000ffffffffff000ull;
        shift = 21;
    } else {
        table = cpu->st.cr3 & 0xfffff000ull;
        shift = 22;
    }
    for (int lvl = 2; lvl >= 1; lvl--) {
        unsigned idx = (unsigned)(a >> shift) & (pae ? 511 : 1023);
        uint64_t pa = table + idx * esz;
        struct hvp_region *r = region_find(cpu, pa);
        if (!r) {
            *ec = e0;
            return false;
        }
        void *p = r->host + (pa - r->gpa);
        pte = pae ? __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED)
                  : __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
        if (!(pte & 1)) {
            *ec = e0;
            return false;
        }
        bool leaf = lvl == 1 || ((pte & 0x80) && (pae || pse));
        uint64_t rsv = 0;
        if (pae) {
            rsv = 0x000f000000000000ull | (nxe ? 0 : 1ull << 63);
            if (leaf && lvl == 2) rsv |= 0x1fe000;
        } else if (leaf && lvl == 2) {
            rsv = 0x200000; /* no PSE-36: bits 20:13 would be address bits 39:32 */
        }
        if (pte & rsv) {
            *ec = e0 | PF_P | PF_RSVD;
            return false;
        }
        rw &= (pte >> 1) & 1;
        us &= (pte >> 2) & 1;
        nx |= pae && (pte >> 63);
        ptes[nl++] = p;
        if (leaf) break;
        table = pte & (pae ? 0x000ffffffffff000ull : 0xfffff000ull);
        shift = 12;
    }
    bool rd_ok = !user || us;
    bool wr_ok = rd_ok && (rw || (!user && !wp));
    bool x_ok = rd_ok && !(nx && nxe);
    bool ok = kind == HVP_CPU_PROT_READ ? rd_ok : kind == HVP_CPU_PROT_WRITE ? wr_ok : x_ok;
    if (!ok) {
        *ec = e0 | PF_P;
        return false;
    }
    bool dirty = pte & 0x40;
    if (commit) {
        for (unsigned i = 0; i < nl; i++) {
            if (pae) {
                if (!(__atomic_load_n((uint64_t *)ptes[i], __ATOMIC_RELAXED) & 0x20))
                    __atomic_fetch_or((uint64_t *)ptes[i], 0x20, __ATOMIC_RELAXED);
            } else if (!(__atomic_load_n((uint32_t *)ptes[i], __ATOMIC_RELAXED) & 0x20)) {
                __atomic_fetch_or((uint32_t *)ptes[i], 0x20u, __ATOMIC_RELAXED);
            }
        }
        if (kind == HVP_CPU_PROT_WRITE && !dirty) {
            if (pae)
                __atomic_fetch_or((uint64_t *)ptes[nl - 1], 0x40, __ATOMIC_RELAXED);
            else
                __atomic_fetch_or((uint32_t *)ptes[nl - 1], 0x40u, __ATOMIC_RELAXED);
            dirty = true;
        }
    }
    *prot = (rd_ok ? HVP_CPU_PROT_READ : 0) | (wr_ok && dirty ? HVP_CPU_PROT_WRITE : 0) |
            (x_ok ? HVP_CPU_PROT_EXEC : 0) | (pte & 0x100 ? PROT_GLOBAL : 0) |
            (shift > 12 ? PROT_LARGE : 0);
    uint64_t mask = (1ull << shift) - 1;
    *gpa = (pte & (pae ? 0x000ffffffffff000ull : 0xfffff000ull) & ~mask) | (a & mask);
    return true;
}

/* Guest-physical address of linear a without side effects; false when
 * not mapped for kind. */
static bool sys_phys(struct hvp_cpu *cpu, uint64_t a, unsigned kind, uint64_t *gpa)
{
    unsigned prot;
    uint32_t ec;
    *gpa = a;
    if (!(cpu->st.cr0 & CR0_PG)) return true;
    if (!canonical(a)) return false;
    return walk(cpu, a, kind, cpu->cpl == 3, false, gpa, &prot, &ec);
}

/* Copies up to 15 bytes at RIP into the exit, insn_len = the decoded length. */
void hvp_sys_insn_bytes(struct hvp_cpu *cpu, struct hvp_cpu_exit *ex)
{
    unsigned got = 0;
    while (got < 15) {
        uint64_t a = cpu->rip + cpu->cs_base + got, gpa;
        if (!sys_phys(cpu, a, HVP_CPU_PROT_EXEC, &gpa)) break;
        struct hvp_region *r = region_find(cpu, gpa & HVP_PAGE_MASK);
        if (!r) break;
        unsigned n = 0x1000 - (unsigned)(a & 0xfff);
        if (n > 15 - got) n = 15 - got;
        memcpy(ex->insn_bytes + got, r->host + (gpa - r->gpa), n);
        got += n;
    }
    struct hvp_x86_insn xi;
    int len = hvp_x86_decode(&xi, ex->insn_bytes, got, cpu->mode);
    ex->insn_len = (uint8_t)(len > 0 ? len : (int)got);
}

/* An access to guest-physical memory that no mapping backs (or that the
 * mapping's protection forbids): the instruction has not retired, RIP is
 * at it; the embedder emulates it from insn_bytes. A fetch has size 0. */
_Noreturn void hvp_sys_mmio_exit(struct hvp_cpu *cpu, uint64_t gpa, unsigned kind)
{
    struct hvp_cpu_exit *ex = cpu->exit;
    hvp_sys_insn_bytes(cpu, ex);
    ex->reason = HVP_CPU_EXIT_MMIO;
    ex->u.mmio.gpa = gpa;
    ex->u.mmio.write = kind == HVP_CPU_PROT_WRITE;
    ex->u.mmio.size = kind == HVP_CPU_PROT_EXEC ? 0 : cpu->acc_size;
    ex->u.mmio.data = kind == HVP_CPU_PROT_WRITE ? cpu->acc_val : 0;
    longjmp(cpu->jb, 3);
}

static void links_flush(struct hvp_cpu *cpu)
{
    for (unsigned i = 0; i < cpu->ntraces; i++)
        memset(cpu->traces[i].link, 0, sizeof cpu->traces[i].link);
}

void hvp_sys_flush(struct hvp_cpu *cpu)
{
    tlb_flush(cpu);
    memset(cpu->tlb_global, 0, sizeof cpu->tlb_global);
    cpu->tlb_large = false;
    links_flush(cpu);
}

void hvp_sys_flush_cr3(struct hvp_cpu *cpu)
{
    if (!(cpu->st.cr4 & CR4_PGE)) {
        hvp_sys_flush(cpu);
        return;
    }
    for (unsigned i = 0; i < HVP_TLB_N; i++)
        if (!cpu->tlb_global[i]) cpu->tlb[i].tag_r = cpu->tlb[i].tag_w = cpu->tlb[i].tag_x = 1;
    links_flush(cpu);
}

void hvp_sys_invlpg(struct hvp_cpu *cpu, uint64_t a)
{
    if (cpu->tlb_large) { /* the page's 4K pieces may sit in many entries */
        hvp_sys_flush(cpu);
        return;
    }
    struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
    e->tag_r = e->tag_w = e->tag_x = 1;
    cpu->tlb_global[e - cpu->tlb] = 0;
    links_flush(cpu);
}

static uint8_t *translate_sys(struct hvp_cpu *cpu, uint64_t a, unsigned kind)
{
    uint64_t gpa = a;
    unsigned prot = HVP_CPU_PROT_READ | HVP_CPU_PROT_WRITE | HVP_CPU_PROT_EXEC;
    if (cpu->st.cr0 & CR0_PG) {
        if (!canonical(a)) raise_noncanonical(cpu, a);
        uint32_t ec;
        if (!walk(cpu, a, kind, cpu->cpl == 3, true, &gpa, &prot, &ec)) hvp_raise_pf(cpu, a, ec);
    }
    cpu->stats.tlb_misses++;
    uint64_t page = a & HVP_PAGE_MASK, gpage = gpa & HVP_PAGE_MASK;
    struct hvp_region *r = region_find(cpu, gpage);
    if (!r || !(r->prot & kind)) return hvp_sys_mmio(cpu, gpa, kind); /* hooked, or exits */
    struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
    cpu->tlb_global[e - cpu->tlb] = (prot & PROT_GLOBAL) && (cpu->st.cr4 & CR4_PGE);
    cpu->tlb_large |= (prot & PROT_LARGE) != 0;
    cpu->tlb_sup[e - cpu->tlb] = cpu->cpl < 3;
    prot &= r->prot;
    uintptr_t addend = (uintptr_t)(r->host + (gpage - r->gpa)) - (uintptr_t)page;
    e->addend = addend;
    e->tag_r = (prot & HVP_CPU_PROT_READ) ? page : 1;
    e->tag_x = (prot & HVP_CPU_PROT_EXEC) ? page : 1;
    size_t pi = (gpage - r->gpa) >> 12;
    if (kind == HVP_CPU_PROT_WRITE && r->code[pi]) invalidate_page(cpu, gpage);
    e->tag_w = ((prot & HVP_CPU_PROT_WRITE) && !r->code[pi]) ? page : 1;
    return (uint8_t *)(uintptr_t)(a + addend);
}

void hvp_sys_access(struct hvp_cpu *cpu, uint64_t a, void *buf, unsigned n, bool write)
{
    uint8_t *hp[2];
    unsigned len[2], np = 0;
    unsigned kind = write ? HVP_CPU_PROT_WRITE : HVP_CPU_PROT_READ;
    for (uint64_t x = a; x < a + n && np < 2;) {
        unsigned c = 0x1000 - (unsigned)(x & 0xfff);
        if (c > a + n - x) c = (unsigned)(a + n - x);
        uint64_t gpa = x;
        unsigned prot;
        uint32_t ec;
        if (cpu->st.cr0 & CR0_PG) {
            if (!canonical(x)) hvp_raise(cpu, 13, 0);
            if (!walk(cpu, x, kind, false, true, &gpa, &prot, &ec)) hvp_raise_pf(cpu, x, ec);
        }
        struct hvp_region *r = region_find(cpu, gpa & HVP_PAGE_MASK);
        if (!r || !(r->prot & kind)) sys_internal(cpu, "system table outside RAM");
        if (write && r->code[(gpa - r->gpa) >> 12]) invalidate_page(cpu, gpa & HVP_PAGE_MASK);
        hp[np] = r->host + (gpa - r->gpa);
        len[np++] = c;
        x += c;
    }
    uint8_t *b = buf;
    for (unsigned i = 0; i < np; i++) {
        if (write)
            memcpy(hp[i], b, len[i]);
        else
            memcpy(b, hp[i], len[i]);
        b += len[i];
    }
}

static uint8_t *translate(struct hvp_cpu *cpu, uint64_t a, unsigned kind)
{
    if (unlikely(cpu->model == HVP_CPU_MODEL_SYSTEM)) return translate_sys(cpu, a, kind);
    if (!canonical(a)) raise_noncanonical(cpu, a);
    cpu->stats.tlb_misses++;
    uint64_t page = a & HVP_PAGE_MASK;
    struct hvp_region *r = region_find(cpu, page);
    uint32_t ec =
        PF_U | (kind == HVP_CPU_PROT_WRITE ? PF_W : 0) | (kind == HVP_CPU_PROT_EXEC ? PF_I : 0);
    if (!r) hvp_raise_pf(cpu, a, ec);
    if (!(r->prot & kind)) hvp_raise_pf(cpu, a, ec | PF_P);
    struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
    uintptr_t addend = (uintptr_t)r->host - (uintptr_t)r->gpa;
    if (e->addend != addend || (e->tag_r != page && e->tag_w != page && e->tag_x != page))
        e->tag_r = e->tag_w = e->tag_x = 1;
    e->addend = addend;
    if (r->prot & HVP_CPU_PROT_READ) e->tag_r = page;
    if (r->prot & HVP_CPU_PROT_EXEC) e->tag_x = page;
    size_t pi = (page - r->gpa) >> 12;
    if (kind == HVP_CPU_PROT_WRITE && r->code[pi]) invalidate_page(cpu, page);
    if ((r->prot & HVP_CPU_PROT_WRITE) && !r->code[pi]) e->tag_w = page;
    return (uint8_t *)(uintptr_t)(a + addend);
}

uint64_t hvp_rd_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size)
{
    uint8_t buf[8] = {0};
    hvp_rd_block(cpu, a, buf, size);
    uint64_t v;
    memcpy(&v, buf, 8);
    return v & hvp_size_mask(size);
}

void hvp_rd_block(struct hvp_cpu *cpu, uint64_t a, void *out, unsigned size)
{
    uint8_t *o = out;
    cpu->acc_size = (uint8_t)size;
    while (size) {
        unsigned n = 0x1000 - (unsigned)(a & 0xfff);
        if (n > size) n = size;
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
        const uint8_t *p = e->tag_r == (a & HVP_PAGE_MASK)
                               ? (const uint8_t *)(uintptr_t)(a + e->addend)
                               : translate(cpu, a, HVP_CPU_PROT_READ);
        memcpy(o, p, n);
        o += n;
        a += n;
        size -= n;
    }
}

void hvp_wr_block(struct hvp_cpu *cpu, uint64_t a, const void *in, unsigned size)
{
    /* check every page first so that a fault leaves memory untouched */
    uint8_t *hp[3] = {0};
    unsigned np = 0;
    cpu->acc_size = (uint8_t)size;
    cpu->acc_val = 0;
    memcpy(&cpu->acc_val, in, size < 8 ? size : 8);
    uint64_t x = a;
    unsigned left = size;
    while (left) {
        unsigned n = 0x1000 - (unsigned)(x & 0xfff);
        if (n > left) n = left;
        struct hvp_tlb_ent *e = hvp_tlb(cpu, x);
        hp[np < 2 ? np : 2] = e->tag_w == (x & HVP_PAGE_MASK)
                                  ? (uint8_t *)(uintptr_t)(x + e->addend)
                                  : translate(cpu, x, HVP_CPU_PROT_WRITE);
        if (np >= 2) { /* large block: do it page by page (rare: FXSAVE-sized) */
            np = 3;
        } else
            np++;
        x += n;
        left -= n;
    }
    if (np <= 2) {
        const uint8_t *i = in;
        unsigned n0 = 0x1000 - (unsigned)(a & 0xfff);
        if (n0 > size) n0 = size;
        memcpy(hp[0], i, n0);
        if (size > n0) memcpy(hp[1], i + n0, size - n0);
        return;
    }
    const uint8_t *i = in;
    while (size) {
        unsigned n = 0x1000 - (unsigned)(a & 0xfff);
        if (n > size) n = size;
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
        uint8_t *p = e->tag_w == (a & HVP_PAGE_MASK) ? (uint8_t *)(uintptr_t)(a + e->addend)
                                                     : translate(cpu, a, HVP_CPU_PROT_WRITE);
        memcpy(p, i, n);
        i += n;
        a += n;
        size -= n;
    }
}

void hvp_wr_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size, uint64_t v)
{
    hvp_wr_block(cpu, a, &v, size);
}

void *hvp_rmw_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size)
{
    cpu->acc_size = (uint8_t)size;
    if (cpu->hooks.mmio) {
        /* MMIO through the hook: no pointer, the caller reads then writes
         * (two hook calls) */
        cpu->mmio_probe = true;
        void *p = translate(cpu, a, HVP_CPU_PROT_READ);
        if (p) p = translate(cpu, a, HVP_CPU_PROT_WRITE);
        cpu->mmio_probe = false;
        if (!p) return NULL;
    }
    if (((a & 0xfff) + size) > 0x1000) {
        /* crosses a page: check both pages for read and write, no pointer */
        translate(cpu, a, HVP_CPU_PROT_READ);
        translate(cpu, a, HVP_CPU_PROT_WRITE);
        /* a fault on the second page reports its first byte, as hardware does */
        uint64_t a2 = (a + size - 1) & HVP_PAGE_MASK;
        translate(cpu, a2, HVP_CPU_PROT_READ);
        translate(cpu, a2, HVP_CPU_PROT_WRITE);
        return NULL;
    }
    translate(cpu, a, HVP_CPU_PROT_READ);
    return translate(cpu, a, HVP_CPU_PROT_WRITE);
}

/* ---- state ---- */

int hvp_cpu_get_state(struct hvp_cpu *cpu, struct hvp_cpu_state *out)
{
    if (!cpu || !out) return -EINVAL;
    *out = cpu->st;
    memcpy(out->gpr, cpu->gpr, sizeof out->gpr);
    out->rip = cpu->rip;
    out->rflags = hvp_flags_get(cpu);
    out->seg[HVP_SEG_FS].base = cpu->fs_base;
    out->seg[HVP_SEG_GS].base = cpu->gs_base;
    out->tsc = hvp_cpu_rdtsc(cpu);
    uint32_t ev = atomic_load_explicit(&cpu->async, memory_order_relaxed);
    out->interrupt_shadow = (ev & HVP_ASYNC_SHADOW) && cpu->shadow_rip == cpu->rip;
    out->nmi_masked = cpu->nmi_masked;
    if (cpu->hooks.tpr_read) out->cr8 = cpu->hooks.tpr_read(cpu->hooks.ctx) & 15;
    return 0;
}

int hvp_cpu_set_state(struct hvp_cpu *cpu, const struct hvp_cpu_state *in)
{
    if (!cpu || !in) return -EINVAL;
    cpu->st = *in;
    memcpy(cpu->gpr, in->gpr, sizeof in->gpr);
    cpu->rip = in->rip;
    hvp_flags_set(cpu, (in->rflags & 0x3f7fd7) | 2);
    cpu->fs_base = in->seg[HVP_SEG_FS].base;
    cpu->gs_base = in->seg[HVP_SEG_GS].base;
    cpu->tsc_offset = in->tsc - __rdtsc();
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) {
        cpu->cpl = 0xff; /* forces the flush */
        hvp_sys_update_mode(cpu);
        if ((in->cr0 & CR0_PG) && (in->cr4 & 0x20) && !(in->efer & EFER_LMA))
            hvp_sys_load_pdptes(cpu, in->cr3, cpu->pdpte); /* PAE paging: the PDPTEs */
        cpu->nmi_masked = in->nmi_masked;
        if (in->interrupt_shadow)
            hvp_sys_shadow(cpu, in->rip);
        else
            atomic_fetch_and_explicit(&cpu->async, ~HVP_ASYNC_SHADOW, memory_order_relaxed);
        if (cpu->rflags & HVP_TF)
            atomic_fetch_or_explicit(&cpu->async, HVP_ASYNC_STEP, memory_order_relaxed);
    }
    return 0;
}

uint64_t hvp_cpu_rdtsc(struct hvp_cpu *cpu)
{
    return __rdtsc() + cpu->tsc_offset;
}

/* ---- traces ---- */

static const struct hvp_dinsn *h_end(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    (void)cpu;
    (void)d;
    return NULL;
}

static const struct hvp_dinsn *h_decode_ud(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    (void)d;
    hvp_raise_ud(cpu);
}

static const struct hvp_dinsn *h_decode_gp(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    (void)d;
    hvp_raise_gp0(cpu);
}

/* A fetch of the instruction's second page failed when it was decoded as
 * a trace's first instruction: the fault belongs to it. The page's own
 * walk gives the error code (U only at CPL 3, P for NX), #GP or an MMIO
 * exit; if the page has become fetchable since, the trace is dropped and
 * the instruction decoded again (not retired). */
static const struct hvp_dinsn *h_fetch_pf(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    uint64_t page2 = (uint64_t)d->imm, phys = page2 - 0x1000;
    translate(cpu, page2, HVP_CPU_PROT_EXEC);
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) sys_phys(cpu, page2 - 0x1000, HVP_CPU_PROT_EXEC, &phys);
    invalidate_page(cpu, phys & HVP_PAGE_MASK);
    return NULL;
}

static inline unsigned hash_of(uint64_t phys)
{
    return (unsigned)((phys ^ (phys >> 13)) * 0x9e3779b1u) >> (32 - 13);
}

/* Host pointer to the code at linear a (fetch permission), or raises #PF. */
static const uint8_t *fetch_ptr(struct hvp_cpu *cpu, uint64_t a)
{
    struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
    if (e->tag_x == (a & HVP_PAGE_MASK)) return (const uint8_t *)(uintptr_t)(a + e->addend);
    return translate(cpu, a, HVP_CPU_PROT_EXEC);
}

/* Returns 0 when the page of linear a can be fetched, without raising. */
static const uint8_t *fetch_try(struct hvp_cpu *cpu, uint64_t a)
{
    if (!canonical(a)) return NULL;
    uint64_t gpa = a;
    if (cpu->model == HVP_CPU_MODEL_SYSTEM && !sys_phys(cpu, a, HVP_CPU_PROT_EXEC, &gpa))
        return NULL;
    struct hvp_region *r = region_find(cpu, gpa & HVP_PAGE_MASK);
    if (!r || !(r->prot & HVP_CPU_PROT_EXEC)) return NULL;
    return r->host + (gpa - r->gpa);
}

static void mark_code(struct hvp_cpu *cpu, uint64_t page)
{
    struct hvp_region *r = region_find(cpu, page);
    if (!r) return;
    r->code[(page - r->gpa) >> 12] = 1;
    /* stores to this page must now take the slow path */
    struct hvp_tlb_ent *e = hvp_tlb(cpu, page);
    if (e->tag_w == page) e->tag_w = 1;
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) {
        uintptr_t host = (uintptr_t)(r->host + (page - r->gpa));
        for (unsigned i = 0; i < HVP_TLB_N; i++)
            if (cpu->tlb[i].tag_w != 1 && cpu->tlb[i].tag_w + cpu->tlb[i].addend == host)
                cpu->tlb[i].tag_w = 1;
    }
}

static struct hvp_trace *trace_build(struct hvp_cpu *cpu, uint64_t pc)
{
    cpu->acc_size = 0;
    const uint8_t *p = fetch_ptr(cpu, pc);
    uint64_t phys = pc; /* user model: linear == physical */
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) sys_phys(cpu, pc, HVP_CPU_PROT_EXEC, &phys);
    if (cpu->ntraces >= HVP_TRACES_N || cpu->pool_used + 2 * HVP_TRACE_MAX + 1 > HVP_POOL_N)
        cache_flush(cpu);
    struct hvp_trace *t = &cpu->traces[cpu->ntraces++];
    t->pc = pc;
    t->phys = phys;
    t->page2 = 1;
    t->mode = cpu->mode;
    t->dead = 0;
    memset(t->link, 0, sizeof t->link);
    t->insns = &cpu->pool[cpu->pool_used];
    unsigned n = 0, nside = 0;
    uint8_t side[HVP_TRACE_MAX];
    uint64_t a = pc;
    mark_code(cpu, phys & HVP_PAGE_MASK);
    while (n < HVP_TRACE_MAX) {
        struct hvp_dinsn *d = &t->insns[n];
        struct hvp_x86_insn *xi = &cpu->xi[d - cpu->pool];
        unsigned off = (unsigned)(a & 0xfff);
        unsigned avail = 0x1000 - off;
        const uint8_t *code = p + (a - pc);
        uint8_t buf[16];
        const uint8_t *next = NULL;
        if (avail < 15) {
            memcpy(buf, code, avail);
            next = fetch_try(cpu, (a & HVP_PAGE_MASK) + 0x1000);
            if (next) {
                memcpy(buf + avail, next, 15 - avail);
                code = buf;
                avail = 15;
            }
        }
        memset(d, 0, sizeof *d);
        int rc = hvp_x86_decode(xi, code, avail, cpu->mode);
        int kind;
        if (rc == -HVP_X86_ETRUNCATED) {
            if (n > 0) break; /* let it start its own trace: the fault is its own */
            d->fn = h_fetch_pf;
            d->imm = (int64_t)((a & HVP_PAGE_MASK) + 0x1000);
            kind = HVP_B_END;
        } else if (rc < 0) {
            d->fn = rc == -HVP_X86_ETOOLONG ? h_decode_gp : h_decode_ud;
            d->len = (uint8_t)(xi->len ? xi->len : 1);
            kind = HVP_B_END;
        } else {
            if (off + (unsigned)rc > 0x1000) {
                if (n > 0) break; /* crossing instruction: a trace of its own */
                t->page2 = (phys & HVP_PAGE_MASK) + 0x1000;
                if (cpu->model == HVP_CPU_MODEL_SYSTEM) {
                    sys_phys(cpu, (a & HVP_PAGE_MASK) + 0x1000, HVP_CPU_PROT_EXEC, &t->page2);
                    t->page2 &= HVP_PAGE_MASK;
                }
                mark_code(cpu, t->page2);
            }
            kind = hvp_cpu_build(cpu, xi, d);
            if (kind == HVP_B_NONE) {
                memset(d, 0, sizeof *d);
                d->fn = h_decode_ud;
                kind = HVP_B_END;
            }
            d->len = (uint8_t)rc;
        }
        cpu->stats.decoded++;
        n++;
        a += d->len;
        if (kind == HVP_B_SIDE) side[nside++] = (uint8_t)(n - 1);
        if (kind == HVP_B_END || t->page2 != 1 || (a & 0xfff) == 0) break;
    }
    t->n = (uint16_t)n;
    memset(&t->insns[n], 0, sizeof t->insns[n]);
    t->insns[n].fn = h_end;
    t->insns[n].imm = n;
    /* side exits after the sentinel: each knows how many retired before it */
    for (unsigned j = 0; j < nside; j++) {
        struct hvp_dinsn *e = &t->insns[n + 1 + j];
        memset(e, 0, sizeof *e);
        e->fn = h_end;
        e->imm = side[j] + 1;
        t->insns[side[j]].disp = (int32_t)(n + 1 + j - side[j]);
    }
    t->nexit = (uint8_t)nside;
    cpu->pool_used += n + 1 + nside;
    unsigned h = hash_of(phys);
    t->hnext = cpu->hash[h];
    cpu->hash[h] = t;
    return t;
}

static inline struct hvp_trace *trace_lookup(struct hvp_cpu *cpu, uint64_t pc)
{
    uint64_t phys = pc;
    if (unlikely(cpu->model == HVP_CPU_MODEL_SYSTEM)) {
        fetch_ptr(cpu, pc); /* raises #PF / exits MMIO before anything is decoded */
        sys_phys(cpu, pc, HVP_CPU_PROT_EXEC, &phys);
    }
    struct hvp_trace *t = cpu->hash[hash_of(phys)];
    /* several linear aliases of one physical page: one trace each */
    for (; t; t = t->hnext)
        if (t->phys == phys && t->pc == pc && t->mode == cpu->mode) goto found;
    return trace_build(cpu, pc);
found:
    /* the fetch permission may have been revoked since */
    if (unlikely(hvp_tlb(cpu, pc)->tag_x != (pc & HVP_PAGE_MASK))) fetch_ptr(cpu, pc);
    return t;
}

static inline struct hvp_trace *trace_get(struct hvp_cpu *cpu, struct hvp_trace *prev)
{
    uint64_t pc = cpu->rip + cpu->cs_base; /* linear */
    if (likely(prev != NULL)) {
        /* trace linking: the successors seen last time, without hashing */
        for (int i = 0; i < HVP_LINKS; i++) {
            struct hvp_trace *l = prev->link[i];
            if (l && l->pc == pc && l->mode == cpu->mode && !l->dead &&
                likely(hvp_tlb(cpu, pc)->tag_x == (pc & HVP_PAGE_MASK)))
                return l;
        }
    }
    struct hvp_trace *t = trace_lookup(cpu, pc);
    if (prev && !prev->dead) {
        memmove(&prev->link[1], &prev->link[0], (HVP_LINKS - 1) * sizeof prev->link[0]);
        prev->link[0] = t;
    }
    return t;
}

/* Instructions of trace t retired before the one at cpu->rip. */
static unsigned retired_before_rip(const struct hvp_cpu *cpu, const struct hvp_trace *t)
{
    uint64_t a = t->pc, pc = cpu->rip + cpu->cs_base;
    unsigned i = 0;
    while (i < t->n && a != pc) {
        a += t->insns[i].len;
        i++;
    }
    return i;
}

/* ---- running ---- */

/* The dispatch loop: one trace per iteration, successors linked. */
static void run_loop(struct hvp_cpu *cpu)
{
    struct hvp_trace *prev = NULL;
    for (;;) {
        if (cpu->budget_left == 0) {
            cpu->exit->reason = HVP_CPU_EXIT_BUDGET;
            break;
        }
        /* events (kick, interrupts, shadows, single-step): one test per trace */
        uint64_t lim = cpu->budget_left;
        if (unlikely(atomic_load_explicit(&cpu->async, memory_order_relaxed))) {
            int r = hvp_cpu_async(cpu);
            if (r < 0) break;
            if (r > 0) lim = 1;
        }
        struct hvp_trace *t = trace_get(cpu, prev);
        cpu->cur = t;
        const struct hvp_dinsn *d = t->insns, *nd;
        if (likely(t->n <= lim)) {
            while ((nd = d->fn(cpu, d)) != NULL)
                d = nd;
        } else {
            for (uint64_t k = lim; k; k--) {
                if (!(nd = d->fn(cpu, d))) break;
                d = nd;
            }
        }
        /* past the last instruction: the sentinel or a side exit says */
        uint64_t n = d >= t->insns + t->n ? (uint64_t)d->imm : (uint64_t)(d - t->insns);
        cpu->cur = NULL;
        cpu->stats.instructions += n;
        cpu->budget_left -= n;
        prev = t;
        if (unlikely(cpu->stop)) break;
    }
}

/* System model: exceptions not in the exit bitmap are delivered through
 * the IDT and the loop goes on; a fault while delivering becomes #DF, one
 * while delivering #DF shuts down (triple fault). */
struct sys_event {
    bool on, err, fault, soft;
    unsigned vec;
    uint32_t code;
};

/* After a longjmp: true when the exit stands, false when *ev is to be
 * delivered through the IDT. */
static bool sys_after_raise(struct hvp_cpu *cpu, struct hvp_cpu_exit *exit, struct sys_event *ev)
{
    unsigned n = cpu->cur ? retired_before_rip(cpu, cpu->cur) : 0;
    cpu->cur = NULL;
    cpu->stats.instructions += n;
    cpu->budget_left -= n < cpu->budget_left ? n : cpu->budget_left;
    bool soft = cpu->soft_int;
    cpu->soft_int = false;
    if (exit->reason != HVP_CPU_EXIT_EXCEPTION) return true;
    cpu->tf_pending = false; /* an exception replaces the single-step trap */
    /* events that keep faulting without retiring anything (a handler whose
     * fetch faults, on an IST stack) would loop forever: each counts as an
     * instruction against the budget */
    cpu->stuck = n ? 0 : cpu->stuck + 1;
    if (cpu->stuck > cpu->budget_left) {
        memset(&exit->u, 0, sizeof exit->u);
        exit->reason = HVP_CPU_EXIT_BUDGET;
        return true;
    }
    unsigned vec = exit->u.exception.vector;
    /* faults restart the instruction (RF set in the pushed image); traps not */
    bool fault = vec != 1 && vec != 3 && vec != 4 && !soft;
    if (cpu->delivering) {
        bool df = cpu->delivering == 2;
        cpu->delivering = 0;
        if (cpu->deliver_soft) cpu->rip -= cpu->soft_len; /* the INT n faulted */
        /* SDM 6.15 table 6-5: contributory after contributory, or #PF or
         * contributory after #PF, make #DF; anything after a benign event
         * (or an INT n) is delivered on its own */
        unsigned first = cpu->deliver_soft ? 0x100 : cpu->deliver_vec;
        bool contrib2 = vec == 0 || (vec >= 10 && vec <= 13);
        bool contrib1 = first == 0 || (first >= 10 && first <= 13);
        if (!df && !((contrib1 && contrib2) || (first == 14 && (contrib2 || vec == 14))))
            goto serial;
        if (df) {
            memset(&exit->u, 0, sizeof exit->u);
            exit->reason = HVP_CPU_EXIT_SHUTDOWN;
            return true;
        }
        vec = 8;
        soft = false;
        fault = true;
        exit->u.exception.vector = 8;
        exit->u.exception.has_error_code = true;
        exit->u.exception.error_code = 0;
        exit->u.exception.cr2 = 0;
    }
serial:
    if (vec < 32 && (cpu->exc_bitmap >> vec) & 1) return true;
    *ev = (struct sys_event){true, exit->u.exception.has_error_code, fault, soft,
                             vec,  exit->u.exception.error_code};
    memset(exit, 0, sizeof *exit);
    return false;
}

/* System model: exceptions not in the exit bitmap are delivered through
 * the IDT and the loop goes on; a fault while delivering becomes #DF, one
 * while delivering #DF shuts down (triple fault). */
static int run_system(struct hvp_cpu *cpu, struct hvp_cpu_exit *exit)
{
    struct sys_event ev = {0};
    struct sys_event *volatile pev = &ev;
    cpu->delivering = 0;
    cpu->stuck = 0;
    for (;;) {
        if (setjmp(cpu->jb) == 0) {
            if (pev->on) {
                pev->on = false;
                hvp_sys_deliver_event(cpu, pev->vec, pev->err, pev->code, pev->fault, pev->soft,
                                      cpu->soft_len);
            }
            run_loop(cpu);
            break;
        }
        cpu->mmio_probe = false;
        if (sys_after_raise(cpu, exit, pev)) break;
    }
    cpu->cur = NULL;
    return 0;
}

int hvp_cpu_run(struct hvp_cpu *cpu, uint64_t budget, struct hvp_cpu_exit *exit)
{
    if (!cpu || !exit) return -EINVAL;
    memset(exit, 0, sizeof *exit);
    cpu->exit = exit;
    cpu->budget_left = budget ? budget : UINT64_MAX;
    cpu->stop = false;
    cpu->cur = NULL;
    if (cpu->model == HVP_CPU_MODEL_SYSTEM) return run_system(cpu, exit);
    int j = setjmp(cpu->jb);
    if (j) {
        /* an exception: count what retired in the trace before it */
        /* (a trap already moved RIP past the instruction, which retired) */
        if (cpu->cur) cpu->stats.instructions += retired_before_rip(cpu, cpu->cur);
        goto done;
    }
    run_loop(cpu);
done:
    cpu->cur = NULL;
    return 0;
}

int hvp_cpu_reset(struct hvp_cpu *cpu, bool init)
{
    if (!cpu) return -EINVAL;
    if (cpu->model != HVP_CPU_MODEL_SYSTEM) {
        set_err(cpu, "reset: system model only");
        return -EINVAL;
    }
    struct hvp_cpu_state old = cpu->st;
    struct hvp_cpu_fpu fpu = cpu->st.fpu;
    uint64_t xcr0 = cpu->st.xcr0;
    struct hvp_cpu_config cfg = {.exception_exit_bitmap = cpu->exc_bitmap};
    reset_state(cpu, &cfg);
    if (init) { /* INIT keeps the x87/SSE/AVX state and the MTRRs */
        cpu->st.fpu = fpu;
        cpu->st.xcr0 = xcr0;
        cpu->st.mtrr_def_type = old.mtrr_def_type;
        memcpy(cpu->st.mtrr_var, old.mtrr_var, sizeof old.mtrr_var);
        memcpy(cpu->st.mtrr_fixed, old.mtrr_fixed, sizeof old.mtrr_fixed);
    }
    hvp_flags_set(cpu, 2);
    hvp_sys_reset_events(cpu);
    cpu->cpl = 0xff; /* forces the flush */
    hvp_sys_update_mode(cpu);
    return 0;
}

void hvp_cpu_set_exception_bitmap(struct hvp_cpu *cpu, uint32_t bitmap)
{
    cpu->exc_bitmap = bitmap;
}

void hvp_cpu_kick(struct hvp_cpu *cpu)
{
    atomic_fetch_or_explicit(&cpu->async, HVP_ASYNC_KICK, memory_order_release);
}

void hvp_cpu_get_stats(const struct hvp_cpu *cpu, struct hvp_cpu_stats *out)
{
    *out = cpu->stats;
}
