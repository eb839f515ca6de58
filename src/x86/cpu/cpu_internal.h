/* hvp software x86-64 CPU: internals shared by the instruction files.
 *
 * ---- How the engine works ----
 * Guest code is decoded once (hvp_x86_decode) into traces: up to
 * HVP_TRACE_MAX decoded instructions (struct hvp_dinsn) that never cross a
 * 4 KiB page, followed by a sentinel entry. A trace is keyed by the
 * guest-physical address of its first byte and the CPU mode. The run loop
 * (cpu.c) looks a trace up, then runs
 *
 *     while ((nd = d->fn(cpu, d)) != NULL) d = nd;
 *
 * Every handler returns the next entry to run:
 *   - NEXT(cpu, d): the instruction retired, RIP += len, go on with d + 1.
 *   - a handler that ends the trace (branches, SYSCALL, anything that set
 *     cpu->stop) sets RIP itself and returns d + 1, which is then the
 *     sentinel (the builder ends the trace after such an instruction; say so
 *     by returning HVP_B_END from the builder).
 *   - NULL: the instruction did NOT retire (e.g. a REP string instruction
 *     yielding half-way, an invalidated trace); RIP must still point at it.
 * The run loop counts retired instructions as (last entry - first entry),
 * so these rules keep the budget exact. The sentinel and the side exits
 * (entries after it, see HVP_B_SIDE) carry their retired count in imm.
 *
 * ---- Writing a handler ----
 *   HVP_HANDLER(h_foo) { ...; return NEXT(cpu, d); }
 * Operands come from the compact entry (d->r0, d->r1, d->imm, memory
 * recipe: use hvp_ea(cpu, d)), or for rarely executed instructions from the
 * full decoded record: HVP_XI(cpu, d) (a const struct hvp_x86_insn *).
 * Raise every fault BEFORE changing architectural state (registers, RIP,
 * memory): faults restart the instruction.
 *
 * ---- Memory ----
 * hvp_rd8/16/32/64(cpu, linear), hvp_wr8/16/32/64(cpu, linear, v),
 * hvp_rdn/hvp_wrn (size in bytes), hvp_rmw_ptr (host pointer for atomics,
 * NULL when the access crosses a page). All go through the software TLB; a
 * miss, a page crossing, a non-canonical address or a write to a page that
 * holds decoded code takes the slow path in cpu.c, which may raise #PF/#GP
 * and invalidates decoded code on writes.
 *
 * ---- Exceptions ----
 * hvp_raise(cpu, vector, error_code) (or hvp_raise_ud/gp0/de) never returns:
 * it longjmps to the run loop, which reports the exit with RIP at the
 * faulting instruction. For traps (INT3, INT n) use hvp_raise_trap after
 * advancing RIP.
 *
 * ---- Registering instructions ----
 * hvp_cpu_build() (cpu_build.c) turns a decoded instruction into an entry.
 * It tries the integer builder first, then hvp_cpu_build_sse() (cpu_sse.c)
 * and hvp_cpu_build_x87() (cpu_x87.c): each returns HVP_B_NONE when it does
 * not handle the instruction (-> #UD), else HVP_B_OK or HVP_B_END. Adding an
 * instruction set means filling such a builder in its own file, and
 * advertising it in the default CPUID table (build_cpuid() in cpu.c) only
 * when complete — and only where the host has what the handlers borrow
 * from it. hvp_cpu_create() accepts embedder tables only within those bits.
 * A builder starts with hvp_build_common(cpu, xi, d) (length, sizes, the
 * memory recipe, GPR codes of operands 0/1, LOCK/REP bits) and then sets
 * d->fn and whatever private fields its handlers read (d->aux, d->imm,
 * spare d->fl bits from 0x0100 up; a function pointer may live in d->imm
 * for forms without an immediate). The handler is the only consumer, so
 * each file is free in how it uses them.
 *
 * ---- Software TLB ----
 * One entry per hashed linear page (hvp_tlb(cpu, a)): tag_r/tag_w/tag_x
 * hold the page address when that access kind may use the entry, and one
 * addend (host = linear + addend). tag_w is never set for a page holding
 * decoded code, so stores there take the slow path, which kills the
 * page's traces (self-modifying code) before the store. Entries are
 * filled by translate() in cpu.c from the guest-physical map.
 *
 * ---- Trace cache ----
 * Traces live in a pool (cpu->pool, with the full decoded records in the
 * parallel cpu->xi) and a hash keyed by guest-physical address; when the
 * pool fills, everything is flushed (only between traces). A killed trace
 * stays in the pool with every entry's fn = h_stale (returns NULL), so a
 * trace that killed itself stops right after the store. Each trace
 * remembers its last two successors (link[]), validated by pc, mode and
 * dead before use, so a loop never hashes.
 *
 * ---- System model (part 2; cpu_sys.c, translate_sys() in cpu.c) ----
 * - Paging: translate() walks the 4-level tables (walk()) and fills
 *   tag_r/tag_w/tag_x for the current CPL; tag_w only once D is set, so
 *   the first store comes back to set it. cpu->tlb_global marks entries
 *   kept by CR3 writes under CR4.PGE; INVLPG clears one entry (all when a
 *   2M/1G page is cached: its 4K pieces sit in many entries). A CPL change
 *   clears the TLB (U/S rights), not the trace links; every change of the
 *   linear->physical mapping also clears the links (hvp_sys_flush).
 * - Traces are keyed by guest-physical address + linear pc + mode
 *   (16/32/64 from CR0.PE, EFER.LMA, CS.L/D: hvp_sys_update_mode), so
 *   aliases share invalidation: a store through any alias kills the
 *   physical page's traces (mark_code clears every alias's tag_w).
 * - Exceptions: hvp_raise() still fills the exit and longjmps; the
 *   system run loop (run_system) then delivers it through the 64-bit IDT
 *   unless the vector is in exception_exit_bitmap, turning faults while
 *   delivering into #DF and a fault while delivering #DF into SHUTDOWN.
 * - Modes and segmentation (cpu_seg.c): in 16/32-bit modes cpu->rip is
 *   the offset in CS and traces are keyed by the linear pc, cs_base +
 *   rip (cs_base = 0 in 64-bit mode, so 64-bit code pays nothing). The
 *   builder gives every memory operand d->seg = HVP_SEG_LEGACY | segment
 *   (these modes always take hvp_ea_slow: asz != 8); hvp_ea_slow returns
 *   the offset unchanged for a segment whose bit is set in cpu->seg_flat
 *   (base 0, 4 GiB, writable expand-up data; never CS) and otherwise
 *   checks base/limit/type with the operand's size and direction from
 *   the decoded record (hvp_seg_ea_slow). Stack and near-branch forms
 *   have their own 16/32-bit handlers (SS:SP/ESP, IP/EIP wrapping, the
 *   CS limit on branch targets; sequential execution past CS's limit is
 *   not checked). hvp_sys_update_mode recomputes mode, CPL, cs_base and
 *   seg_flat after every CR0/EFER/segment change.
 * - Events: hvp_sys_deliver is the one entry point (vector, error code,
 *   fault/soft): 64-bit IDT under EFER.LMA, else hvp_sys_deliver_legacy
 *   (real-mode IVT, or 16/32-bit interrupt/trap gates with the TSS
 *   SS0:ESP0 stack switch).
 * - Paging outside long mode: walk() hands over to walk_legacy (32-bit
 *   2-level with PSE, PAE 3-level from cpu->pdpte, which the MOV to
 *   CR0/CR3/CR4 loads, as hardware does).
 * - Asynchronous events (cpu_event.c): one word, cpu->async, tested once
 *   per trace by run_loop; hvp_cpu_async() handles it: KICK exits; an
 *   injected event is delivered first; then a pending single-step trap
 *   (#DB, DR6.BS) of the instruction that started with TF; then NMI
 *   (blocked while nmi_masked, until IRET), INTR (IF, hooks.intr_ack),
 *   window exits. INTR and a blocked NMI stay set (levels), so while they
 *   wait every trace boundary takes this slow path. The interrupt shadow
 *   is HVP_ASYNC_SHADOW + shadow_rip: when the trace ended right before
 *   the shadowed instruction and something is pending, the loop runs that
 *   one instruction alone (lim = 1); shadow_db (MOV/POP SS) also holds
 *   the single-step trap. RFLAGS.TF arms HVP_ASYNC_STEP (POPF/IRET via
 *   flags_load, set_state): every instruction then runs alone and the
 *   trap is taken at the next boundary once stats.instructions moved
 *   (an exception clears tf_pending instead). Instructions that unmask
 *   (STI, POPF, IRET, MOV CR8, WRMSR) end their trace. HLT does not exit
 *   when a wake event is pending (hlt_skipped, STI;HLT).
 * - Hooks: pio in h_io; mmio in translate_sys -> hvp_sys_mmio for 1/2/4/8
 *   byte accesses within a page (the value goes through cpu->mmio_buf,
 *   the TLB is never filled for MMIO; hvp_rmw_slow returns NULL so RMW
 *   instructions read then write); msr/cpuid/tpr in their handlers.
 * - Debug registers: MOV DR with DR4/5 aliasing, GD (#DB fault, BD) and
 *   the DR6/DR7 fixed bits; the I/O permission bitmap in h_io;
 *   SYSENTER/SYSEXIT (Intel's: they work in long mode; SEP advertised).
 * - Not yet: hardware task switches and
 *   virtual-8086 mode (INTERNAL);
 *   INS/OUTS (#GP), DR0-3
 *   breakpoints (kept, never armed; RF is not loaded by IRET), INTO and
 *   BOUND's #OF/#BR in legacy modes only as the builders have them.
 * - Not yet modelled in user mode: RFLAGS.TF single-step (#DB), #SS for
 *   stack accesses (non-canonical stack addresses raise #GP(0)), #AC.
 */
#ifndef HVP_CPU_INTERNAL_H
#define HVP_CPU_INTERNAL_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hvp/cpu.h"
#include "hvp/x86.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

struct hvp_cpu;
struct hvp_dinsn;
typedef const struct hvp_dinsn *(*hvp_handler)(struct hvp_cpu *cpu, const struct hvp_dinsn *d);

/* One decoded instruction, 32 bytes. */
struct hvp_dinsn {
    hvp_handler fn;
    int64_t imm;         /* immediate; moffs address when base == HVP_EA_ABS */
    int32_t disp;        /* memory displacement */
    uint8_t len;         /* instruction length */
    uint8_t osz;         /* operand size in bytes */
    uint8_t r0, r1;      /* register codes (HVP_R8H for AH..BH), see hvp_reg_* */
    uint8_t base, index; /* GPR numbers, HVP_EA_NONE, HVP_EA_RIP, HVP_EA_ABS */
    uint8_t scale;       /* shift count 0..3 */
    uint8_t seg;         /* 0, or HVP_SEG_FS / HVP_SEG_GS: add that base; in 16/32-bit
                            modes HVP_SEG_LEGACY | segment (base, limit, type checks) */
    uint8_t asz;         /* address size in bytes */
    uint8_t aux;         /* handler specific (ALU kind, condition code, ...) */
    uint16_t fl;         /* HVP_DF_* */
};

#define HVP_EA_NONE 16 /* gpr[16] is always 0 */
#define HVP_EA_RIP  0xfe
#define HVP_EA_ABS  0xfd
#define HVP_R8H     0x10 /* register code flag: bits 8..15 of GPR (code & 3) */

/* d->fl */
#define HVP_DF_M0    0x0001 /* operand 0 is the memory operand */
#define HVP_DF_M1    0x0002 /* operand 1 is the memory operand */
#define HVP_DF_IMM   0x0004 /* the source is d->imm */
#define HVP_DF_LOCK  0x0008 /* LOCK prefix */
#define HVP_DF_REP   0x0010 /* F3 */
#define HVP_DF_REPNE 0x0020 /* F2 */
#define HVP_DF_M2    0x0040 /* operand 2 is the memory operand */
#define HVP_DF_EAX   0x0080 /* the memory recipe needs hvp_ea_slow() */

/* Segment numbers (struct hvp_cpu_state.seg order). */
enum { HVP_SEG_ES, HVP_SEG_CS, HVP_SEG_SS, HVP_SEG_DS, HVP_SEG_FS, HVP_SEG_GS };
#define HVP_SEG_LEGACY 0x10 /* d->seg: a 16/32-bit mode operand through segment (seg & 7) */

/* RFLAGS bits. */
#define HVP_CF    0x0001u
#define HVP_PF    0x0004u
#define HVP_AF    0x0010u
#define HVP_ZF    0x0040u
#define HVP_SF    0x0080u
#define HVP_TF    0x0100u
#define HVP_IF    0x0200u
#define HVP_DFLAG 0x0400u
#define HVP_OF    0x0800u
#define HVP_ARITH (HVP_CF | HVP_PF | HVP_AF | HVP_ZF | HVP_SF | HVP_OF)

/* Lazy flag kinds (cpu->lf_op). */
enum {
    HVP_LF_NONE = 0, /* arithmetic flags are in cpu->rflags */
    HVP_LF_ADD,      /* res = a + b + cin */
    HVP_LF_SUB,      /* res = a - b - cin (CMP, NEG with a = 0, SBB) */
    HVP_LF_LOGIC,    /* CF = OF = AF = 0 */
    HVP_LF_INC,      /* res = a + 1, CF = cin (old CF) */
    HVP_LF_DEC,      /* res = a - 1, CF = cin */
    HVP_LF_SHL,      /* res = a << b (b = masked count, != 0) */
    HVP_LF_SHR,
    HVP_LF_SAR,
};

/* Software TLB: guest-linear page -> host address addend. Tags hold the
 * page address, or 1 (never a page address) when invalid. */
#define HVP_TLB_BITS 10
#define HVP_TLB_N    (1u << HVP_TLB_BITS)
struct hvp_tlb_ent {
    uint64_t tag_r, tag_w, tag_x;
    uintptr_t addend; /* host = linear + addend */
};

struct hvp_region {
    uint64_t gpa, size;
    uint8_t *host;
    unsigned prot;
    uint8_t *code; /* one byte per page: decoded code exists in this page */
};

#define HVP_TRACE_MAX 32
#define HVP_LINKS     4 /* successors remembered per trace (side exits make several) */
struct hvp_trace {
    uint64_t pc;    /* linear address of the first instruction */
    uint64_t phys;  /* its guest-physical address: the key */
    uint64_t page2; /* second guest-physical page when an instruction crosses, else 1 */
    uint32_t mode;
    uint16_t n; /* instructions (entries before the sentinel) */
    uint8_t dead;
    uint8_t nexit; /* side-exit entries after the sentinel */
    struct hvp_trace *hnext;
    struct hvp_dinsn *insns;
    /* the last successors (trace linking): checked by pc, mode, dead */
    struct hvp_trace *link[HVP_LINKS];
};

#define HVP_POOL_N   65536 /* decoded entries */
#define HVP_TRACES_N 8192  /* trace headers */
#define HVP_HASH_N   8192

/* Async-event bits (cpu->async): the one word the run loop tests between
 * traces. KICK is an edge (cleared when taken); INTR is a level the
 * embedder owns; NMI stays set while blocked; the others are set by the
 * CPU's own thread and cleared by hvp_cpu_async(). */
#define HVP_ASYNC_KICK   0x1u
#define HVP_ASYNC_INTR   0x2u  /* the INTR line is asserted */
#define HVP_ASYNC_NMI    0x4u  /* an NMI is pending */
#define HVP_ASYNC_EVENT  0x8u  /* an injected event (cpu->pend) waits */
#define HVP_ASYNC_WINDOW 0x10u /* a window exit is requested */
#define HVP_ASYNC_SHADOW 0x20u /* an interrupt shadow covers the instruction at shadow_rip */
#define HVP_ASYNC_STEP   0x40u /* single-step: RFLAGS.TF or a debug condition (cpu_event.c) */

struct hvp_cpu {
    /* hot state first */
    uint64_t gpr[17]; /* rax..r15, and gpr[16] == 0: "no base/index" in memory recipes */
    uint64_t rip;
    uint64_t rflags; /* arithmetic bits valid only when lf_op == HVP_LF_NONE */
    uint64_t lf_res, lf_a, lf_b;
    uint8_t lf_op, lf_sz, lf_cin;
    bool stop; /* a handler asks the run loop to return (exit filled) */
    uint32_t mode;
    uint64_t fs_base, gs_base;
    struct hvp_tlb_ent tlb[HVP_TLB_N];
    _Atomic uint32_t async;

    struct hvp_dinsn *pool;
    struct hvp_x86_insn *xi; /* full decoded records, parallel to pool */
    unsigned pool_used;
    struct hvp_trace *traces;
    unsigned ntraces;
    struct hvp_trace **hash;
    struct hvp_trace *cur; /* the trace being run */

    struct hvp_region *regions;
    unsigned nregions, cap_regions;

    uint64_t budget_left;
    struct hvp_cpu_exit *exit;
    jmp_buf jb;

    struct hvp_cpu_state st; /* everything not kept above (segments, CRs, FPU, ...) */
    struct hvp_cpuid_entry *cpuid;
    size_t ncpuid;
    uint32_t model;
    uint64_t tsc_offset;
    /* system model */
    uint64_t cs_base;  /* linear pc = cs_base + rip (0 in 64-bit mode) */
    uint8_t seg_flat;  /* bit s: segment s is flat (base 0, 4 GiB, read/write): no checks */
    uint64_t pdpte[4]; /* PAE paging outside long mode: the loaded PDPTEs */
    uint32_t exc_bitmap; /* cfg.exception_exit_bitmap */
    bool tlb_large;      /* some entry holds part of a 2M/1G page: INVLPG flushes all */
    uint8_t
        tlb_global[HVP_TLB_N];  /* entry filled from a global page (CR4.PGE): kept on CR3 writes */
    uint8_t tlb_sup[HVP_TLB_N]; /* entry filled at CPL < 3: dropped on the way to CPL 3 */
    uint8_t cpl;                /* current privilege level (SS.DPL); 3 in user mode */
    bool soft_int;              /* the pending trap is an INT n (gate DPL is checked) */
    uint8_t delivering;         /* 1 while delivering an event, 2 while delivering #DF */
    uint8_t deliver_vec;        /* the event being delivered (double-fault classes) */
    bool deliver_soft;          /* ... and whether it is an INT n (benign) */
    uint8_t soft_len;           /* length of that INT n: a fault delivering it points at it */
    uint64_t stuck;             /* events delivered in a row with nothing retired */
    uint8_t acc_size;           /* size of the access in the slow path (MMIO exits) */
    uint64_t acc_val;           /* value of the store in the slow path (MMIO exits) */
    /* events and hooks (cpu_event.c) */
    struct hvp_cpu_hooks hooks;
    struct hvp_cpu_event pend; /* injected by the embedder (HVP_ASYNC_EVENT) */
    uint64_t shadow_rip;       /* HVP_ASYNC_SHADOW: the instruction the shadow covers */
    bool nmi_masked;           /* an NMI handler runs: NMIs wait for IRET */
    bool win_irq, win_nmi;     /* requested window exits */
    bool hlt_skipped;          /* HLT found a wake event pending: exit HLT if it vanishes */
    bool mmio_probe;           /* hvp_rmw_slow: an MMIO page makes translate() return NULL */
    bool shadow_db;            /* the shadow is MOV/POP SS's: it holds debug traps too */
    bool tf_pending;           /* an instruction started with RFLAGS.TF: #DB once it retires */
    uint64_t tf_icount;        /* stats.instructions when it started */
    uint8_t mmio_buf[16];      /* a hooked MMIO access reads from / writes into this */
    struct hvp_cpu_stats stats;
    char err[160];
};

#define HVP_HANDLER(name)                                                                          \
    static const struct hvp_dinsn *name(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
#define HVP_XI(cpu, d) (&(cpu)->xi[(d) - (cpu)->pool])

static inline const struct hvp_dinsn *NEXT(struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    cpu->rip += d->len;
    return d + 1;
}

/* ---- exceptions (cpu.c) ---- */
_Noreturn void hvp_raise(struct hvp_cpu *cpu, unsigned vector, int32_t error_code);
_Noreturn void hvp_raise_pf(struct hvp_cpu *cpu, uint64_t addr, uint32_t error_code);
_Noreturn void hvp_raise_trap(struct hvp_cpu *cpu, unsigned vector);
#define hvp_raise_ud(cpu)  hvp_raise(cpu, 6, -1)
#define hvp_raise_de(cpu)  hvp_raise(cpu, 0, -1)
#define hvp_raise_gp0(cpu) hvp_raise(cpu, 13, 0)

/* ---- memory (slow paths in cpu.c) ---- */
uint64_t hvp_rd_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size);
void hvp_wr_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size, uint64_t v);
void *hvp_rmw_slow(struct hvp_cpu *cpu, uint64_t a, unsigned size);
void hvp_rd_block(struct hvp_cpu *cpu, uint64_t a, void *out, unsigned size);
void hvp_wr_block(struct hvp_cpu *cpu, uint64_t a, const void *in, unsigned size);

#define HVP_PAGE_MASK (~(uint64_t)0xfff)

/* The entry for linear address a. Higher address bits are folded in so
 * that pages 1 MiB apart (code, data, heap of small programs) do not share
 * an entry: an entry holds one page (one addend) for all access kinds. */
static inline struct hvp_tlb_ent *hvp_tlb(struct hvp_cpu *cpu, uint64_t a)
{
    return &cpu->tlb[((a >> 12) ^ (a >> (12 + HVP_TLB_BITS))) & (HVP_TLB_N - 1)];
}

#define HVP_DEF_RD(bits)                                                                           \
    static inline uint64_t hvp_rd##bits(struct hvp_cpu *cpu, uint64_t a)                           \
    {                                                                                              \
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);                                                   \
        if (likely(e->tag_r == (a & HVP_PAGE_MASK) && (a & 0xfff) <= 0x1000 - (bits) / 8)) {       \
            uint##bits##_t v;                                                                      \
            memcpy(&v, (const void *)(uintptr_t)(a + e->addend), sizeof v);                        \
            return v;                                                                              \
        }                                                                                          \
        return hvp_rd_slow(cpu, a, (bits) / 8);                                                    \
    }
#define HVP_DEF_WR(bits)                                                                           \
    static inline void hvp_wr##bits(struct hvp_cpu *cpu, uint64_t a, uint64_t v)                   \
    {                                                                                              \
        struct hvp_tlb_ent *e = hvp_tlb(cpu, a);                                                   \
        if (likely(e->tag_w == (a & HVP_PAGE_MASK) && (a & 0xfff) <= 0x1000 - (bits) / 8)) {       \
            uint##bits##_t x = (uint##bits##_t)v;                                                  \
            memcpy((void *)(uintptr_t)(a + e->addend), &x, sizeof x);                              \
            return;                                                                                \
        }                                                                                          \
        hvp_wr_slow(cpu, a, (bits) / 8, v);                                                        \
    }
HVP_DEF_RD(8)
HVP_DEF_RD(16)
HVP_DEF_RD(32)
HVP_DEF_RD(64)
HVP_DEF_WR(8)
HVP_DEF_WR(16)
HVP_DEF_WR(32)
HVP_DEF_WR(64)

static inline uint64_t hvp_rdn(struct hvp_cpu *cpu, uint64_t a, unsigned size)
{
    switch (size) {
    case 1: return hvp_rd8(cpu, a);
    case 2: return hvp_rd16(cpu, a);
    case 4: return hvp_rd32(cpu, a);
    default: return hvp_rd64(cpu, a);
    }
}

static inline void hvp_wrn(struct hvp_cpu *cpu, uint64_t a, unsigned size, uint64_t v)
{
    switch (size) {
    case 1: hvp_wr8(cpu, a, v); break;
    case 2: hvp_wr16(cpu, a, v); break;
    case 4: hvp_wr32(cpu, a, v); break;
    default: hvp_wr64(cpu, a, v); break;
    }
}

/* Host pointer to `size` writable bytes at a (checked for read and write),
 * or NULL when they cross a page (then use hvp_rdn + hvp_wrn). */
static inline void *hvp_rmw_ptr(struct hvp_cpu *cpu, uint64_t a, unsigned size)
{
    struct hvp_tlb_ent *e = hvp_tlb(cpu, a);
    if (likely(e->tag_w == (a & HVP_PAGE_MASK) && e->tag_r == e->tag_w &&
               (a & 0xfff) <= 0x1000u - size))
        return (void *)(uintptr_t)(a + e->addend);
    return hvp_rmw_slow(cpu, a, size);
}

/* ---- registers ---- */
static inline uint64_t hvp_size_mask(unsigned size)
{
    return size >= 8 ? ~(uint64_t)0 : ((uint64_t)1 << (size * 8)) - 1;
}

static inline uint64_t hvp_reg_rd(const struct hvp_cpu *cpu, unsigned r, unsigned size)
{
    if (size == 1) return (r & HVP_R8H) ? (cpu->gpr[r & 3] >> 8) & 0xff : cpu->gpr[r] & 0xff;
    return cpu->gpr[r] & hvp_size_mask(size);
}

static inline void hvp_reg_wr(struct hvp_cpu *cpu, unsigned r, unsigned size, uint64_t v)
{
    switch (size) {
    case 1:
        if (r & HVP_R8H)
            cpu->gpr[r & 3] = (cpu->gpr[r & 3] & ~(uint64_t)0xff00) | ((v & 0xff) << 8);
        else
            cpu->gpr[r] = (cpu->gpr[r] & ~(uint64_t)0xff) | (v & 0xff);
        break;
    case 2: cpu->gpr[r] = (cpu->gpr[r] & ~(uint64_t)0xffff) | (v & 0xffff); break;
    case 4: cpu->gpr[r] = (uint32_t)v; break;
    default: cpu->gpr[r] = v; break;
    }
}

/* 16/32-bit modes: the linear address of offset `off` of the memory
 * operand's segment, after the limit and type checks (#GP/#SS). */
uint64_t hvp_seg_ea_slow(struct hvp_cpu *cpu, const struct hvp_dinsn *d, uint64_t off);

/* Effective linear address of the entry's memory operand. The common
 * recipe (64-bit addressing, GPR or no base/index, no FS/GS) is one add
 * chain; RIP-relative, moffs64, 32-bit address size and FS/GS take the
 * slow path (HVP_DF_EAX). */
static inline uint64_t hvp_ea_slow(const struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    uint64_t a;
    if (d->base <= 16)
        a = cpu->gpr[d->base];
    else if (d->base == HVP_EA_RIP)
        a = cpu->rip + d->len;
    else if (d->base == HVP_EA_ABS)
        a = (uint64_t)d->imm;
    else
        a = 0;
    if (d->index <= 16) a += cpu->gpr[d->index] << d->scale;
    a += (uint64_t)(int64_t)d->disp;
    if (d->asz == 4)
        a = (uint32_t)a;
    else if (d->asz == 2)
        a = (uint16_t)a;
    if (d->seg) {
        if (d->seg & HVP_SEG_LEGACY) {
            if (likely((cpu->seg_flat >> (d->seg & 7)) & 1)) return a;
            return hvp_seg_ea_slow((struct hvp_cpu *)(uintptr_t)cpu, d, a);
        }
        a += d->seg == HVP_SEG_FS ? cpu->fs_base : cpu->gs_base;
    }
    return a;
}

static inline uint64_t hvp_ea(const struct hvp_cpu *cpu, const struct hvp_dinsn *d)
{
    if (unlikely(d->fl & HVP_DF_EAX)) return hvp_ea_slow(cpu, d);
    return cpu->gpr[d->base] + (cpu->gpr[d->index] << d->scale) + (uint64_t)(int64_t)d->disp;
}

/* ---- flags (cpu_flags.c) ---- */
uint64_t hvp_flags_get(const struct hvp_cpu *cpu);        /* full RFLAGS */
void hvp_flags_set(struct hvp_cpu *cpu, uint64_t rflags); /* all bits, no checks */
bool hvp_cond_slow(struct hvp_cpu *cpu, unsigned cc);

static inline void hvp_flags_materialize(struct hvp_cpu *cpu)
{
    if (cpu->lf_op != HVP_LF_NONE) {
        cpu->rflags = hvp_flags_get(cpu);
        cpu->lf_op = HVP_LF_NONE;
    }
}

static inline void hvp_lf(struct hvp_cpu *cpu, unsigned op, unsigned size, uint64_t a, uint64_t b,
                          uint64_t res)
{
    cpu->lf_op = (uint8_t)op;
    cpu->lf_sz = (uint8_t)size;
    cpu->lf_a = a;
    cpu->lf_b = b;
    cpu->lf_res = res;
}

static inline bool hvp_get_cf(struct hvp_cpu *cpu)
{
    switch (cpu->lf_op) {
    case HVP_LF_NONE: return cpu->rflags & HVP_CF;
    case HVP_LF_LOGIC: return false;
    case HVP_LF_INC:
    case HVP_LF_DEC: return cpu->lf_cin;
    case HVP_LF_ADD: /* a, b, res are truncated to the size */
        return cpu->lf_res < cpu->lf_a || (cpu->lf_cin && cpu->lf_res == cpu->lf_a);
    case HVP_LF_SUB: return cpu->lf_a < cpu->lf_b || (cpu->lf_cin && cpu->lf_a == cpu->lf_b);
    default: return hvp_flags_get(cpu) & HVP_CF;
    }
}

/* Condition code cc (0..15, the Jcc encoding order: O NO B NB Z NZ BE NBE S
 * NS P NP L NL LE NLE). */
static inline bool hvp_cond(struct hvp_cpu *cpu, unsigned cc)
{
    if (likely(cpu->lf_op == HVP_LF_SUB && !cpu->lf_cin)) {
        unsigned sh = 64 - cpu->lf_sz * 8;
        uint64_t a = cpu->lf_a, b = cpu->lf_b;
        int64_t sa = (int64_t)(a << sh), sb = (int64_t)(b << sh);
        switch (cc) {
        case 2: return a < b;
        case 3: return a >= b;
        case 4: return a == b;
        case 5: return a != b;
        case 6: return a <= b;
        case 7: return a > b;
        case 12: return sa < sb;
        case 13: return sa >= sb;
        case 14: return sa <= sb;
        case 15: return sa > sb;
        default: break;
        }
    } else if (cpu->lf_op == HVP_LF_LOGIC) {
        unsigned sh = 64 - cpu->lf_sz * 8;
        int64_t s = (int64_t)(cpu->lf_res << sh);
        switch (cc) {
        case 2:
        case 0: return false;
        case 3:
        case 1: return true;
        case 4:
        case 6: return s == 0;
        case 5:
        case 7: return s != 0;
        case 8:
        case 12: return s < 0;
        case 9:
        case 13: return s >= 0;
        case 14: return s <= 0;
        case 15: return s > 0;
        default: break;
        }
    }
    if (cpu->lf_op != HVP_LF_NONE) {
        /* ZF and SF come straight from the (truncated) result */
        unsigned sh = 64 - cpu->lf_sz * 8;
        switch (cc) {
        case 4: return cpu->lf_res == 0;
        case 5: return cpu->lf_res != 0;
        case 8: return (int64_t)(cpu->lf_res << sh) < 0;
        case 9: return (int64_t)(cpu->lf_res << sh) >= 0;
        default: break;
        }
    }
    return hvp_cond_slow(cpu, cc);
}

/* ---- building (cpu_build.c, cpu_sse.c, cpu_x87.c) ---- */
/* HVP_B_SIDE: the instruction may leave the trace in the middle (Jcc):
 * the builder of the trace gives it a side-exit entry and stores the
 * distance to it in d->disp; its handler returns d + d->disp when it leaves
 * (after setting RIP) and d + 1 when it falls through. */
enum { HVP_B_NONE = 0, HVP_B_OK = 1, HVP_B_END = 2, HVP_B_SIDE = 3 };
/* Fills the compact fields every builder shares (len, osz, asz, memory
 * recipe, register codes of operands 0 and 1, memory/immediate flags). */
void hvp_build_common(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
int hvp_cpu_build(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
int hvp_cpu_build_int(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
int hvp_cpu_build_sse(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
int hvp_cpu_build_x87(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
/* GPR register code of an hvp_x86_reg (0..15, or HVP_R8H|n), 0xff if not a GPR. */
unsigned hvp_gpr_code(unsigned reg);

/* ---- system model (cpu.c, cpu_sys.c) ---- */
static inline bool hvp_canonical(uint64_t a)
{
    return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}
/* Flushes the TLB and every trace link (links compare linear addresses). */
void hvp_sys_flush(struct hvp_cpu *cpu);
/* A CR3 write: like hvp_sys_flush but global pages stay when CR4.PGE. */
void hvp_sys_flush_cr3(struct hvp_cpu *cpu);
/* INVLPG: the one TLB entry that may hold linear a's page, and the links. */
void hvp_sys_invlpg(struct hvp_cpu *cpu, uint64_t a);
/* Recomputes the mode key (16/32/64 from CR0.PE, EFER.LMA, CS.L/D) and CPL. */
void hvp_sys_update_mode(struct hvp_cpu *cpu);
/* Supervisor-privilege access to linear memory that bypasses the TLB
 * (descriptor tables, TSS, interrupt frames); all pages are checked first. */
void hvp_sys_access(struct hvp_cpu *cpu, uint64_t a, void *buf, unsigned n, bool write);
/* Copies the bytes of the instruction at RIP into the exit. */
void hvp_sys_insn_bytes(struct hvp_cpu *cpu, struct hvp_cpu_exit *ex);
/* Delivers an event through the 64-bit IDT; may raise (-> #DF). */
void hvp_sys_deliver(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err, bool fault,
                     bool soft);
int hvp_cpu_build_sys(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
/* Modes and segmentation (cpu_seg.c). */
int hvp_cpu_build_seg(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d);
/* PAE paging outside long mode: reads the four PDPTEs at cr3 into out;
 * false when a present one has reserved bits (the MOV raises #GP(0)). */
bool hvp_sys_load_pdptes(struct hvp_cpu *cpu, uint64_t cr3, uint64_t out[4]);
/* Base of segment s (FS/GS from fs_base/gs_base). */
uint64_t hvp_seg_base(const struct hvp_cpu *cpu, unsigned s);
/* Recomputes cs_base and seg_flat (hvp_sys_update_mode calls it). */
void hvp_seg_refresh(struct hvp_cpu *cpu);
/* 16/32-bit modes: linear address of [off, off+size) in segment s after
 * the limit and type checks (#GP(0), #SS(0) for SS). */
uint64_t hvp_seg_lin(struct hvp_cpu *cpu, unsigned s, uint64_t off, unsigned size, bool write);
/* MOV/POP Sreg, LxS: loads a data/stack segment register (real mode:
 * base = sel << 4; protected mode: descriptor checks, accessed bit). */
void hvp_load_sreg(struct hvp_cpu *cpu, unsigned s, uint16_t sel);
/* Event delivery outside long mode: real-mode IVT, protected-mode IDT. */
void hvp_sys_deliver_legacy(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err,
                            bool fault, bool soft);

/* ---- events (cpu_event.c) ---- */
/* The run loop's slow path when cpu->async is not 0: returns -1 to stop
 * (exit filled), 1 to run exactly one instruction next (an interrupt
 * shadow or single-step), 0 to go on. May deliver an event (and raise). */
int hvp_cpu_async(struct hvp_cpu *cpu);
/* HLT: is an event pending that would wake the CPU at once? */
bool hvp_sys_wake_pending(struct hvp_cpu *cpu);
/* STI (from IF = 0), MOV SS, POP SS: the next instruction runs before any
 * interrupt, NMI or debug trap. */
static inline void hvp_sys_shadow(struct hvp_cpu *cpu, uint64_t next_rip)
{
    cpu->shadow_rip = next_rip;
    cpu->shadow_db = false;
    atomic_fetch_or_explicit(&cpu->async, HVP_ASYNC_SHADOW, memory_order_relaxed);
}
/* MOV SS / POP SS: the shadow also holds a single-step trap of the
 * instruction itself until after the next one. */
static inline void hvp_sys_shadow_ss(struct hvp_cpu *cpu, uint64_t next_rip)
{
    hvp_sys_shadow(cpu, next_rip);
    cpu->shadow_db = true;
}
/* Delivers one event through the guest's tables, with the double-fault
 * bookkeeping of run_system. soft_len: the INT n / INT3 / INTO length. */
void hvp_sys_deliver_event(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err,
                           bool fault, bool soft, unsigned soft_len);
/* MMIO: data access at guest-physical gpa that no mapping backs. Returns a
 * host buffer holding the value (reads) or taking it (writes) when the hook
 * or a completion handled it; NULL in probe mode; else exits. */
uint8_t *hvp_sys_mmio(struct hvp_cpu *cpu, uint64_t gpa, unsigned kind);
_Noreturn void hvp_sys_mmio_exit(struct hvp_cpu *cpu, uint64_t gpa, unsigned kind);
void hvp_sys_reset_events(struct hvp_cpu *cpu);

/* ---- misc (cpu.c) ---- */
uint64_t hvp_cpu_rdtsc(struct hvp_cpu *cpu);
void hvp_cpu_cpuid(struct hvp_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4]);

#endif
