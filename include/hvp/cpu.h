/* hvp x86 core: the software x86-64 CPU.
 *
 * One struct hvp_cpu is one logical processor. It executes guest code out of
 * host memory regions that the embedder maps at guest-physical addresses, and
 * returns to the embedder with an exit whenever something outside the CPU has
 * to act: a system call in user mode, an exception the embedder asked to see,
 * an I/O port or an unmapped (MMIO) access, HLT, a kick from another thread,
 * or the end of an instruction budget.
 *
 * Two embedders drive it: `hvp user` (user mode: 64-bit, CPL 3, no paging,
 * SYSCALL exits to a Linux system-call layer) and the platform's `soft`
 * backend (system mode: the whole architecture, from reset).
 *
 * The CPU knows nothing of partitions, devices or backends. Functions return
 * 0 or a negative errno; hvp_cpu_error() says more about the last failure.
 */
#ifndef HVP_CPU_H
#define HVP_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvp/x86.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hvp_cpu;

/* ---- configuration ---- */

/* Execution models. */
enum hvp_cpu_model {
    /* 64-bit user mode: the CPU starts in 64-bit mode at CPL 3 with paging
     * off (linear address = guest-physical address, canonical checks still
     * apply). SYSCALL exits with HVP_CPU_EXIT_SYSCALL; every exception exits
     * with HVP_CPU_EXIT_EXCEPTION.
     * Details the embedder can rely on:
     * - SYSCALL does its architectural part before exiting: RCX = RIP of
     *   the next instruction, R11 = RFLAGS (RF clear); RIP is past it.
     * - An access to an unmapped address, or one the mapping's protection
     *   forbids, exits with vector 14, cr2 = the first faulting byte's
     *   address and a #PF error code (P = protection, W = write, U = 1,
     *   I/D = instruction fetch); RIP at the instruction, nothing changed.
     * - A non-canonical address: vector 13 (#GP(0)).
     * - INT3 (vector 3), INT1 (1) and INT n (vector n, no error code) exit
     *   as traps: RIP is past the instruction. HLT, CLI/STI, IN/OUT and
     *   privileged instructions: #GP(0). Unimplemented instructions: #UD.
     * - FS/GS bases are seg[4].base / seg[5].base in the state. */
    HVP_CPU_MODEL_USER64 = 1,
    /* The whole machine's CPU, starting from the reset state (real mode,
     * CS.base = 0xFFFF0000, RIP = 0xFFF0, CR0 = 0x60000010, EDX = the
     * CPUID signature). Exceptions are delivered through the guest's IDT
     * unless their vector is in exception_exit_bitmap; a fault while
     * delivering a fault becomes #DF, one while delivering #DF exits with
     * HVP_CPU_EXIT_SHUTDOWN.
     * Details the embedder can rely on:
     * - HLT exits with RIP past it.
     * - IN/OUT go to hooks.pio, else exit (HVP_CPU_EXIT_IO) with RIP past
     *   the instruction; for IN the embedder puts the value into
     *   AL/AX/EAX before resuming (hvp_cpu_complete). At CPL > IOPL the
     *   TSS I/O permission bitmap is checked first (#GP(0)). INS/OUTS
     *   are not implemented yet (#GP(0)).
     * - RFLAGS.TF single-steps (#DB trap, DR6.BS); MOV DR implements
     *   DR0-DR7 (DR7.GD included) but DR0-3 breakpoints are not armed yet.
     * - SYSENTER/SYSEXIT follow Intel (usable in long mode).
     * - MSRs: see hooks.msr; MTRRs and MISC_ENABLE are kept in the state.
     * - An access whose guest-physical address no mapping backs (or whose
     *   mapping forbids it) exits with HVP_CPU_EXIT_MMIO: RIP at the
     *   instruction, which did not retire; the embedder emulates it from
     *   insn_bytes and advances RIP. Size 0: an instruction fetch.
     * Implemented so far: real mode (from reset; IVT delivery, big-real
     * mode), 16/32-bit protected mode with segmentation (base, limit,
     * expand-down and type checks; descriptor checks on segment loads),
     * compatibility mode, leaving and re-entering long mode, far
     * JMP/CALL/RET (call gates included), IRET in every mode, interrupt
     * and trap gates in 32-bit and 64-bit IDTs (with stack switches
     * through the TSS), long-mode 4-level paging, SYSCALL/SYSRET, MSRs,
     * CRs, LLDT/SLDT/LAR/LSL/VERR/VERW/ARPL, 32-bit paging (4 MiB pages with CR4.PSE) and PAE paging (PDPTEs
     * loaded by the MOV to CR0/CR3/CR4, NX). Not yet: hardware task
     * switching (TSS/task-gate transfers, IRET with NT) and virtual-8086
     * mode: these exit with HVP_CPU_EXIT_INTERNAL and say so in
     * hvp_cpu_error(). */
    HVP_CPU_MODEL_SYSTEM = 2,
};

/* One CPUID result: leaf/subleaf -> eax..edx. */
struct hvp_cpuid_entry {
    uint32_t leaf, subleaf;
    uint32_t eax, ebx, ecx, edx;
    uint32_t flags; /* HVP_CPUID_F_SUBLEAF: subleaf is significant */
};
#define HVP_CPUID_F_SUBLEAF 0x1

struct hvp_cpu_config {
    uint32_t size;  /* sizeof(struct hvp_cpu_config): lets the struct grow */
    uint32_t model; /* enum hvp_cpu_model */
    /* CPUID table; NULL for hvp_cpu_default_cpuid(). It must never
     * advertise what the CPU does not implement: hvp_cpu_create() rejects a
     * table that does. Copied. */
    const struct hvp_cpuid_entry *cpuid;
    size_t ncpuid;
    /* Exceptions that exit to the embedder instead of being delivered
     * through the guest's IDT (system mode; user mode exits on all). */
    uint32_t exception_exit_bitmap;
    /* TSC frequency reported and used by RDTSC, Hz; 0 = host TSC rate. */
    uint64_t tsc_hz;
};

/* The CPUID table the CPU advertises by default (what it implements).
 * Returns the number of entries; copies at most max into out. */
size_t hvp_cpu_default_cpuid(enum hvp_cpu_model model, struct hvp_cpuid_entry *out, size_t max);

/* ---- lifetime ---- */

int hvp_cpu_create(const struct hvp_cpu_config *cfg, struct hvp_cpu **out);
void hvp_cpu_destroy(struct hvp_cpu *cpu);
/* Human detail of the last failure on this CPU ("" if none). */
const char *hvp_cpu_error(const struct hvp_cpu *cpu);

/* ---- guest-physical memory ---- */

#define HVP_CPU_PROT_READ  0x1
#define HVP_CPU_PROT_WRITE 0x2
#define HVP_CPU_PROT_EXEC  0x4

/* Maps [gpa, gpa+size) onto host memory at `host`; page-aligned, no overlap
 * with an existing mapping (-EEXIST). Accesses outside every mapping are
 * MMIO exits (system mode) or #PF-style exceptions (user mode). */
int hvp_cpu_map(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size, void *host, unsigned prot);
/* Unmaps [gpa, gpa+size), splitting mappings as needed; flushes every cached
 * translation and decoded instruction of the range. */
int hvp_cpu_unmap(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size);
/* Changes protection of an already mapped range (mprotect). */
int hvp_cpu_protect(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size, unsigned prot);
/* Tells the CPU that guest memory it may have decoded was written by someone
 * else (the embedder, a device, another vCPU). Call it while this CPU is
 * not inside hvp_cpu_run() (from its own thread between runs, e.g. after a
 * kick). Stores by this CPU itself are detected without it. */
void hvp_cpu_invalidate_code(struct hvp_cpu *cpu, uint64_t gpa, uint64_t size);

/* ---- architectural state ---- */

struct hvp_cpu_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint16_t attr; /* descriptor bits 40..47 and 52..55 as (type|S|DPL|P) | (AVL|L|DB|G) << 12,
                      the WHP/VMX "access rights" layout */
};

struct hvp_cpu_table {
    uint64_t base;
    uint16_t limit;
};

/* x87/SSE state in the FXSAVE layout's terms. */
struct hvp_cpu_fpu {
    uint16_t fcw, fsw;
    uint8_t ftw; /* abridged tag word (FXSAVE): bit i set = ST physical reg i valid */
    uint16_t fop;
    uint64_t fip, fdp;
    uint8_t st[8][16]; /* 80-bit registers ST0..ST7 (ST(i), not physical), low 10 bytes used */
    uint32_t mxcsr;
    uint8_t xmm[16][16];
    uint8_t ymm_hi[16][16]; /* upper halves of YMM0..15 when AVX is advertised */
};

struct hvp_cpu_state {
    uint64_t gpr[16]; /* rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
    uint64_t rip;
    uint64_t rflags;
    struct hvp_cpu_segment seg[6]; /* es cs ss ds fs gs (fs/gs base = FS/GS_BASE) */
    struct hvp_cpu_segment ldtr, tr;
    struct hvp_cpu_table gdtr, idtr;
    uint64_t cr0, cr2, cr3, cr4, cr8;
    uint64_t efer;
    uint64_t dr[8]; /* dr0..dr3, (dr4, dr5 unused), dr6, dr7 */
    uint64_t xcr0;
    uint64_t kernel_gs_base, star, lstar, cstar, sfmask;
    uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
    uint64_t tsc, tsc_aux, pat, apic_base;
    struct hvp_cpu_fpu fpu;
    /* MTRRs (system mode; they change nothing in an emulated machine but
     * are kept as written): IA32_MTRR_DEF_TYPE, PHYSBASE0/PHYSMASK0..7 in
     * MSR order (0x200..0x20F), the 11 fixed-range MSRs in MSR order
     * (0x250, 0x258, 0x259, 0x268..0x26F). */
    uint64_t mtrr_def_type;
    uint64_t mtrr_var[16];
    uint64_t mtrr_fixed[11];
    uint64_t misc_enable; /* IA32_MISC_ENABLE */
    /* Interruptibility (system mode). */
    uint8_t interrupt_shadow; /* the next instruction runs before any interrupt (STI, MOV SS) */
    uint8_t nmi_masked;       /* an NMI handler runs: NMIs wait for the next IRET */
};

int hvp_cpu_get_state(struct hvp_cpu *cpu, struct hvp_cpu_state *out);
int hvp_cpu_set_state(struct hvp_cpu *cpu, const struct hvp_cpu_state *in);

/* ---- running ---- */

enum hvp_cpu_exit_reason {
    HVP_CPU_EXIT_NONE = 0,
    HVP_CPU_EXIT_BUDGET,    /* the instruction budget ran out */
    HVP_CPU_EXIT_KICK,      /* hvp_cpu_kick() from another thread */
    HVP_CPU_EXIT_SYSCALL,   /* user mode: SYSCALL executed; RIP is past it */
    HVP_CPU_EXIT_EXCEPTION, /* vector, error code, cr2; RIP at the faulting instruction
                               (faults) or after it (traps) */
    HVP_CPU_EXIT_HLT,
    HVP_CPU_EXIT_IO,       /* system mode: IN/OUT/INS/OUTS */
    HVP_CPU_EXIT_MMIO,     /* system mode: access to an unmapped guest-physical address */
    HVP_CPU_EXIT_SHUTDOWN, /* triple fault */
    HVP_CPU_EXIT_INTERNAL, /* the CPU could not continue; see hvp_cpu_error() */
    HVP_CPU_EXIT_WINDOW,   /* hvp_cpu_request_window(): an interrupt/NMI can be delivered now */
    HVP_CPU_EXIT_CPUID,    /* the cpuid hook asked for an exit; RIP at the CPUID */
    HVP_CPU_EXIT_MSR,      /* the msr hook asked for an exit; RIP at the RDMSR/WRMSR */
};
/* Completing exits. IO: RIP is already past the instruction; for IN put
 * the value in u.io.data and call hvp_cpu_complete() (or write AL/AX/EAX
 * with set_state). CPUID and MSR: the instruction has not retired; put the
 * answer in u.cpuid.regs / u.msr.value (RDMSR) and call hvp_cpu_complete(),
 * which sets the registers and steps RIP past it; to refuse an MSR, inject
 * #GP(0) instead (hvp_cpu_set_event, HVP_CPU_EVENT_EXCEPTION, vector 13,
 * error code 0). MMIO: the instruction has not retired; the embedder
 * emulates it from insn_bytes and sets the state (WHP's protocol), or
 * registers an mmio hook so that such accesses never exit. */

struct hvp_cpu_exit {
    uint32_t reason; /* enum hvp_cpu_exit_reason */
    union {
        struct {
            uint8_t vector;
            bool has_error_code;
            uint32_t error_code;
            uint64_t cr2; /* #PF: the faulting linear address */
        } exception;
        struct {
            uint16_t port;
            uint8_t size; /* 1, 2, 4 */
            bool write;
            bool string, rep;
            uint32_t data;
        } io;
        struct {
            uint64_t gpa;
            uint8_t size;
            bool write;
            uint64_t data;
        } mmio;
        struct {
            uint32_t index;
            bool write;
            uint64_t value; /* for a write */
        } msr;
        struct {
            uint32_t leaf, subleaf;
            uint32_t regs[4]; /* the table's answer (eax, ebx, ecx, edx) */
        } cpuid;
        struct {
            bool nmi; /* the window opened for an NMI, else for an interrupt */
        } window;
    } u;
    /* The instruction involved (IO, MMIO, EXCEPTION when decoded). */
    uint8_t insn_bytes[16];
    uint8_t insn_len;
};

/* Runs until an exit or until `budget` instructions have retired
 * (0 = no budget). Returns 0 with *exit filled, or -errno on misuse.
 * The budget is exact: a REP string instruction counts once. */
int hvp_cpu_run(struct hvp_cpu *cpu, uint64_t budget, struct hvp_cpu_exit *exit);

/* Makes a running hvp_cpu_run() return with HVP_CPU_EXIT_KICK as soon as
 * possible; safe from any thread and from signal handlers. */
void hvp_cpu_kick(struct hvp_cpu *cpu);

/* Completes an IO (IN), CPUID or MSR exit as described above, with the
 * values the embedder put in *ex. -EINVAL for other exits. Between runs. */
int hvp_cpu_complete(struct hvp_cpu *cpu, const struct hvp_cpu_exit *ex);

/* Replaces cfg.exception_exit_bitmap (system mode). Not while the CPU
 * runs. */
void hvp_cpu_set_exception_bitmap(struct hvp_cpu *cpu, uint32_t bitmap);

/* Puts the CPU in its power-on reset state (INIT: the same but for the
 * x87/SSE state, which INIT keeps). Mappings stay; pending events go. */
int hvp_cpu_reset(struct hvp_cpu *cpu, bool init);

/* ---- embedder hooks (system mode) ----
 *
 * Called on the CPU's own thread from inside hvp_cpu_run(), so that a
 * backend completes frequent requests (a device register, the local APIC,
 * an x2APIC MSR) without leaving the run loop. Each returns 0 when it
 * handled the request, HVP_CPU_HOOK_EXIT to make the CPU exit exactly as
 * it would without the hook, or (msr only) HVP_CPU_HOOK_GP for #GP(0).
 * A hook must not call hvp_cpu_run/set_state on the same CPU. */
#define HVP_CPU_HOOK_EXIT 1
#define HVP_CPU_HOOK_GP   2
struct hvp_cpu_hooks {
    void *ctx;
    /* IN/OUT, not the string forms: *val is the value written, or receives
     * the value read (the CPU keeps the low `size` bytes). */
    int (*pio)(void *ctx, uint16_t port, unsigned size, bool write, uint32_t *val);
    /* A data access of 1, 2, 4 or 8 bytes, within one page, to a
     * guest-physical address no mapping backs (reads and writes, operands
     * of ALU instructions too; a read-modify-write instruction calls it
     * twice: read, then write; it is never atomic). *val holds the value
     * written, or receives the value read (the low `size` bytes count).
     * Other accesses (fetches, page-crossing, wider) exit as MMIO. An
     * exit after a read of an RMW instruction repeats that read when the
     * embedder emulates the instruction. */
    int (*mmio)(void *ctx, uint64_t gpa, unsigned size, bool write, uint64_t *val);
    /* RDMSR/WRMSR of an MSR the CPU does not implement itself, and of
     * those a local APIC owns: IA32_APIC_BASE writes (0x1B; the CPU keeps
     * the value too, unless the hook refuses it), TSC_DEADLINE (0x6E0) and
     * the x2APIC range 0x800..0x8FF. Without the hook these raise #GP(0);
     * HVP_CPU_HOOK_EXIT gives HVP_CPU_EXIT_MSR. For a read, *val receives
     * the value. */
    int (*msr)(void *ctx, uint32_t index, bool write, uint64_t *val);
    /* Every CPUID, with the table's answer in regs (eax, ebx, ecx, edx),
     * which the hook may change. HVP_CPU_HOOK_EXIT: HVP_CPU_EXIT_CPUID. */
    int (*cpuid)(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);
    /* Interrupt acknowledge: INTR is asserted (hvp_cpu_set_intr) and the
     * CPU can take an interrupt now. Returns the vector (0..255) the CPU
     * delivers, or -1 when nothing is pending any more. Without it the
     * INTR line is ignored. It may change the INTR level. */
    int (*intr_ack)(void *ctx);
    /* CR8 (the APIC's TPR bits 7:4): MOV to/from CR8. Optional; without
     * them CR8 is a plain register. */
    void (*tpr_write)(void *ctx, uint8_t cr8);
    uint8_t (*tpr_read)(void *ctx);
};
/* Replaces the hooks (NULL clears them). Not while the CPU runs. System
 * model only (-EINVAL otherwise). */
int hvp_cpu_set_hooks(struct hvp_cpu *cpu, const struct hvp_cpu_hooks *hooks);

/* ---- events (system mode) ----
 *
 * The INTR line is a level: while asserted, the CPU checks between
 * instructions (through its one async-event word, never per instruction
 * otherwise) whether it can take an interrupt (RFLAGS.IF, no interrupt
 * shadow, no event in delivery), then asks hooks.intr_ack for the vector
 * and delivers it through the IDT (or IVT in real mode). A HLT exit
 * leaves the waiting to the embedder; HLT itself does not exit when an
 * event it would wake for is already pending (STI;HLT).
 * Instructions that can unmask interrupts (STI, IRET, MOV CR8, WRMSR)
 * end their trace, so a pending interrupt is taken right after them (STI:
 * after the next instruction, the shadow); POPF's unmasking is seen at the
 * end of its trace (a few instructions later at most). Safe from any
 * thread; wakes a running CPU. */
void hvp_cpu_set_intr(struct hvp_cpu *cpu, bool asserted);
/* NMI (an edge): delivered at the next instruction boundary unless an NMI
 * handler is still running (blocked until its IRET). Any thread. */
void hvp_cpu_nmi(struct hvp_cpu *cpu);

/* An event injected by the embedder, delivered before the next instruction
 * whatever RFLAGS.IF and the shadow say (WHP's PendingInterruption, KVM's
 * vcpu events). Types are WHP's. Soft types: RIP is at the instruction
 * (INT n, INT3, INTO, INT1) and the frame gets RIP + insn_len; INT n,
 * INT3 and INTO check the gate's DPL, INT1 does not. EXCEPTION: faults
 * push RFLAGS with RF set; for #PF set CR2 in the state first. NMI blocks
 * further NMIs until IRET. */
#define HVP_CPU_EVENT_EXTINT         0 /* external interrupt */
#define HVP_CPU_EVENT_NMI            2
#define HVP_CPU_EVENT_EXCEPTION      3 /* hardware exception (error code if has_error_code) */
#define HVP_CPU_EVENT_SOFT_INT       4 /* INT n: RIP advanced by insn_len first */
#define HVP_CPU_EVENT_PRIV_SOFT_EXC  5 /* INT1 */
#define HVP_CPU_EVENT_SOFT_EXCEPTION 6 /* INT3, INTO */
struct hvp_cpu_event {
    bool pending;
    uint8_t type; /* HVP_CPU_EVENT_* */
    uint8_t vector;
    bool has_error_code;
    uint32_t error_code;
    uint8_t insn_len; /* soft types */
};
/* ev->pending == false clears the pending event. Not while the CPU runs. */
int hvp_cpu_set_event(struct hvp_cpu *cpu, const struct hvp_cpu_event *ev);
int hvp_cpu_get_event(struct hvp_cpu *cpu, struct hvp_cpu_event *ev);

/* Asks for one HVP_CPU_EXIT_WINDOW exit as soon as an interrupt (irq:
 * RFLAGS.IF and no shadow) and/or an NMI (no NMI handler running, no
 * shadow) could be delivered; false, false cancels. Checked at the same
 * points as INTR; an exit clears both requests. Not while the CPU runs. */
void hvp_cpu_request_window(struct hvp_cpu *cpu, bool irq, bool nmi);

/* Counters since creation. */
struct hvp_cpu_stats {
    uint64_t instructions; /* retired */
    uint64_t decoded;      /* instructions decoded into the cache */
    uint64_t code_invalidations;
    uint64_t tlb_misses;
};
void hvp_cpu_get_stats(const struct hvp_cpu *cpu, struct hvp_cpu_stats *out);

#ifdef __cplusplus
}
#endif

#endif
