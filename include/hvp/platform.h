/* hvp platform: partitions, guest-physical memory, virtual processors, exits.
 *
 * The counterpart of the Windows Hypervisor Platform (WinHvPlatform), in
 * Linux C style. A user who knows WHP finds its concepts under the same
 * numbers; one who knows KVM finds its objects (VM, memory slots, vCPU,
 * KVM_RUN exits); one who knows neither can write a guest runner from this
 * header:
 *
 *     struct hvp *h;                     hvp_open("auto", &h, NULL, 0)
 *     struct hvp_partition *p;           hvp_partition_create(h, &p)
 *     uint32_t n = 1;                    hvp_partition_set_property(p,
 *                                            HVP_PROP_PROCESSOR_COUNT, &n, 4)
 *                                        hvp_partition_setup(p)
 *     void *ram = mmap(... 1 MiB ...);   hvp_map_gpa(p, ram, 0, 1 << 20,
 *                                            HVP_MAP_READ | HVP_MAP_WRITE |
 *                                            HVP_MAP_EXECUTE)
 *     copy code into ram;
 *     struct hvp_vcpu *v;                hvp_vcpu_create(p, 0, &v)
 *     set CS/RIP etc.                    hvp_vcpu_set_registers(v, names, n, vals)
 *     for (;;) {                         hvp_vcpu_run(v, &exit)
 *         switch (exit.reason) {
 *         case HVP_EXIT_IO_PORT:         device access: complete it with
 *                                        hvp_vcpu_complete_io() (decoded) or
 *                                        the emulator (emulator.h)
 *         case HVP_EXIT_HALT: ...        the guest executed HLT
 *         }
 *     }
 *     hvp_vcpu_destroy(v); hvp_partition_destroy(p); hvp_close(h);
 *
 * Conventions
 * - Handles are opaque. Functions return 0 (or a count/size where said) or a
 *   negative errno. Every handle keeps a readable message about its last
 *   failure: hvp_error(), hvp_partition_error(), hvp_vcpu_error().
 * - Numbering is WHP's: exit reasons (WHV_RUN_VP_EXIT_REASON), register
 *   names (WHV_REGISTER_NAME), partition properties
 *   (WHV_PARTITION_PROPERTY_CODE), capabilities, map and translate flags,
 *   interrupt types. A WHP shim is then mostly casts.
 * - errno values and the WHP results they stand for:
 *     -EINVAL  bad argument, unknown register name (the whole batch fails)
 *     -ENOENT  unknown property or capability code; no such vCPU
 *     -ENOSPC  buffer too small (WHV_E_INSUFFICIENT_BUFFER); *written says
 *              how much is needed
 *     -EEXIST  GPA range overlaps a mapped one; vCPU index already exists
 *     -ERANGE  GPA not mapped (WHV_E_GPA_RANGE_NOT_FOUND)
 *     -EBUSY   wrong lifecycle state (property after setup, vCPU before
 *              setup, run on a vCPU already running)
 *     -EOPNOTSUPP  the backend cannot do this (see hvp_get_capability)
 *     -ENODEV  backend not available on this machine
 *     -ESHUTDOWN  the vCPU was destroyed (running it again)
 * - Threads: a partition may be used from several threads; a vCPU is run
 *   by one thread at a time (create it on that thread: KVM prefers it).
 *   hvp_vcpu_cancel() may be called from any thread. Messages are per
 *   handle: concurrent failures on one handle may overwrite each other.
 *
 * Backends (one ops table, chosen at run time):
 * - "kvm": /dev/kvm. CPUID exits are not possible (KVM executes CPUID
 *   from the table set with KVM_SET_CPUID2: set CpuidResultList instead);
 *   exception exits only for #DB and #BP (KVM's guest debugging). The local
 *   APIC is KVM's in-kernel irqchip (KVM_CREATE_IRQCHIP: LAPIC, IOAPIC and
 *   PIC) when LocalApicEmulationMode is XApic or X2Apic; HLT then waits in
 *   the kernel for an interrupt instead of exiting. A split irqchip with
 *   hvp's own LAPIC, IOAPIC and PIC (and with it HVP_EXIT_APIC_EOI and
 *   LAPIC timer/IPI emulation in hvp) is later work. The Execute map flag
 *   is not enforced (KVM slots have no such bit); SYSENTER_EIP/ESP keep 32
 *   bits on AMD hosts. Destroyed vCPUs keep their KVM file descriptor until
 *   the partition goes (KVM cannot delete one); re-creating the index
 *   reuses it in the reset state.
 * - "soft": hvp's software x86-64 CPU (hvp/cpu.h), one per vCPU, run on
 *   the thread that calls hvp_vcpu_run; always available. Everything in
 *   this header works, with these differences:
 *   - the local APIC is the platform's own (xAPIC page, x2APIC MSRs, timer
 *     one-shot/periodic/TSC-deadline at a 1 GHz bus clock, IPIs, TPR/CR8)
 *     when LocalApicEmulationMode is XApic or X2Apic: HLT then waits in
 *     hvp_vcpu_run for an interrupt, and the EOI of a level-triggered
 *     vector exits HVP_EXIT_APIC_EOI (soon after the EOI write: at the end
 *     of the guest's current block). There is no IOAPIC or PIC:
 *     hvp_set_irq_line() is -EOPNOTSUPP; the VMM's own IOAPIC delivers
 *     with hvp_request_interrupt(), its PIC with PendingInterruption
 *     (ExtInt) after an interrupt-window exit.
 *   - the inline I/O handler is called from inside the CPU loop (no exit
 *     at all); MMIO accesses to the APIC page never reach it.
 *   - CPUID and MSR exits work for every leaf and for MSRs the CPU does
 *     not implement itself; exception exits for every vector. A
 *     CpuidResultList cannot advertise features the CPU lacks (those bits
 *     are dropped).
 *   - map/unmap return once every vCPU uses the new map (vCPUs running on
 *     other threads are stopped at a block boundary to apply it); a vCPU
 *     changing the map from inside its own inline handler sees the change
 *     when its current block ends. Dirty tracking write-protects tracked
 *     pages in the CPU (the first write to a page after a query exits
 *     inside the backend); page-table A/D updates by the CPU itself are
 *     not tracked. The Execute map flag is enforced.
 *   - exits report WHP's context: RIP at the I/O instruction until it is
 *     completed, instruction bytes and the decoded access. A decoded MMIO
 *     exit is completed by running the instruction once more with the
 *     VMM's value; a second MMIO write of the same instruction comes as an
 *     HVP_EXIT_F_RETIRED exit. HVP_CAP_PROCESSOR_CLOCK_FREQUENCY is the
 *     guest TSC rate (the host's).
 *   - a mode or feature the CPU does not implement yet stops the run with
 *     HVP_EXIT_INTERNAL_ERROR and says which in hvp_vcpu_error().
 * - "auto": kvm when /dev/kvm opens, else soft.
 */
#ifndef HVP_PLATFORM_H
#define HVP_PLATFORM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Register names: WHV_REGISTER_NAME values. This is the canonical list;
 * emulator.h keeps a guarded copy of the subset it uses.
 */
#define HVP_REG_RAX                0x00000000u
#define HVP_REG_RCX                0x00000001u
#define HVP_REG_RDX                0x00000002u
#define HVP_REG_RBX                0x00000003u
#define HVP_REG_RSP                0x00000004u
#define HVP_REG_RBP                0x00000005u
#define HVP_REG_RSI                0x00000006u
#define HVP_REG_RDI                0x00000007u
#define HVP_REG_R8                 0x00000008u
#define HVP_REG_R9                 0x00000009u
#define HVP_REG_R10                0x0000000Au
#define HVP_REG_R11                0x0000000Bu
#define HVP_REG_R12                0x0000000Cu
#define HVP_REG_R13                0x0000000Du
#define HVP_REG_R14                0x0000000Eu
#define HVP_REG_R15                0x0000000Fu
#define HVP_REG_RIP                0x00000010u
#define HVP_REG_RFLAGS             0x00000011u
#define HVP_REG_ES                 0x00000012u /* .segment */
#define HVP_REG_CS                 0x00000013u
#define HVP_REG_SS                 0x00000014u
#define HVP_REG_DS                 0x00000015u
#define HVP_REG_FS                 0x00000016u
#define HVP_REG_GS                 0x00000017u
#define HVP_REG_LDTR               0x00000018u /* .segment */
#define HVP_REG_TR                 0x00000019u /* .segment */
#define HVP_REG_IDTR               0x0000001Au /* .table */
#define HVP_REG_GDTR               0x0000001Bu /* .table */
#define HVP_REG_CR0                0x0000001Cu
#define HVP_REG_CR2                0x0000001Du
#define HVP_REG_CR3                0x0000001Eu
#define HVP_REG_CR4                0x0000001Fu
#define HVP_REG_CR8                0x00000020u
#define HVP_REG_DR0                0x00000021u
#define HVP_REG_DR1                0x00000022u
#define HVP_REG_DR2                0x00000023u
#define HVP_REG_DR3                0x00000024u
#define HVP_REG_DR6                0x00000025u
#define HVP_REG_DR7                0x00000026u
#define HVP_REG_XCR0               0x00000027u
#define HVP_REG_XMM0               0x00001000u /* Xmm0..Xmm15 = 0x1000..0x100F, .reg128 */
#define HVP_REG_FPMMX0             0x00001010u /* FpMmx0..FpMmx7 = 0x1010..0x1017, .fp */
#define HVP_REG_FP_CONTROL_STATUS  0x00001018u /* .fp_control_status */
#define HVP_REG_XMM_CONTROL_STATUS 0x00001019u /* .xmm_control_status */
#define HVP_REG_TSC                0x00002000u
#define HVP_REG_EFER               0x00002001u
#define HVP_REG_KERNEL_GS_BASE     0x00002002u
#define HVP_REG_APIC_BASE          0x00002003u
#define HVP_REG_PAT                0x00002004u
#define HVP_REG_SYSENTER_CS        0x00002005u
#define HVP_REG_SYSENTER_EIP       0x00002006u
#define HVP_REG_SYSENTER_ESP       0x00002007u
#define HVP_REG_STAR               0x00002008u
#define HVP_REG_LSTAR              0x00002009u
#define HVP_REG_CSTAR              0x0000200Au
#define HVP_REG_SFMASK             0x0000200Bu
#define HVP_REG_MTRR_CAP           0x0000200Du
#define HVP_REG_MTRR_DEF_TYPE      0x0000200Eu
#define HVP_REG_TSC_AUX            0x0000207Bu
/* Virtual registers for event injection (WHP's 0x8000000x names). */
#define HVP_REG_PENDING_INTERRUPTION         0x80000000u /* .pending_interruption */
#define HVP_REG_INTERRUPT_STATE              0x80000001u /* .interrupt_state */
#define HVP_REG_DELIVERABILITY_NOTIFICATIONS 0x80000004u /* .deliverability */

/* Returns the register's WHP-style name ("Rax", "Xmm3", "PendingInterruption")
 * or NULL when hvp does not know the name. Every name this function knows
 * can be read and written on every backend (the conformance suite checks). */
const char *hvp_reg_name(uint32_t name);

/* A segment register: the expanded (byte-granular) limit, as WHP and VMX
 * keep it. */
struct hvp_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint16_t attributes; /* type:4 s:1 dpl:2 p:1 rsvd:4 avl:1 l:1 db:1 g:1 */
};
#define HVP_SEG_TYPE_MASK 0x000Fu
#define HVP_SEG_S         0x0010u
#define HVP_SEG_DPL_SHIFT 5
#define HVP_SEG_P         0x0080u
#define HVP_SEG_AVL       0x1000u
#define HVP_SEG_L         0x2000u
#define HVP_SEG_DB        0x4000u
#define HVP_SEG_G         0x8000u

struct hvp_table {
    uint16_t pad[3];
    uint16_t limit;
    uint64_t base;
};

/* An x87 register: 64-bit mantissa, 15-bit biased exponent and sign. */
struct hvp_fp {
    uint64_t mantissa;
    uint64_t exponent_sign; /* bits 0..14 exponent, bit 15 sign */
};

struct hvp_fp_control_status {
    uint16_t fcw;
    uint16_t fsw;
    uint8_t ftw; /* abridged tag word (FXSAVE format): bit i = register i valid */
    uint8_t reserved;
    uint16_t last_opcode;
    uint64_t last_ip;
};

struct hvp_xmm_control_status {
    uint64_t last_dp;
    uint32_t mxcsr;
    uint32_t mxcsr_mask; /* read only */
};

/* HVP_REG_PENDING_INTERRUPTION: an event to deliver on the next entry. */
#define HVP_PENDING_TYPE_EXT_INT             0 /* external interrupt */
#define HVP_PENDING_TYPE_NMI                 2
#define HVP_PENDING_TYPE_EXCEPTION           3 /* hardware exception */
#define HVP_PENDING_TYPE_SOFT_INT            4
#define HVP_PENDING_TYPE_PRIV_SOFT_EXCEPTION 5
#define HVP_PENDING_TYPE_SOFT_EXCEPTION      6
struct hvp_pending_interruption {
    uint32_t pending : 1;
    uint32_t type : 3; /* HVP_PENDING_TYPE_* */
    uint32_t deliver_error_code : 1;
    uint32_t instruction_length : 4;
    uint32_t nested_event : 1;
    uint32_t reserved : 6;
    uint32_t vector : 16;
    uint32_t error_code;
};

struct hvp_interrupt_state {
    uint64_t interrupt_shadow : 1; /* after STI / MOV SS */
    uint64_t nmi_masked : 1;
    uint64_t reserved : 62;
};

/* HVP_REG_DELIVERABILITY_NOTIFICATIONS: ask for an HVP_EXIT_INTERRUPT_WINDOW
 * exit when the guest can take an NMI or an interrupt. Cleared by the exit. */
struct hvp_deliverability {
    uint64_t nmi : 1;
    uint64_t interrupt : 1;
    uint64_t interrupt_priority : 4;
    uint64_t reserved : 58;
};

/* WHV_REGISTER_VALUE: 16 bytes, same layout. */
union hvp_reg_value {
    uint64_t reg64;
    uint32_t reg32;
    uint16_t reg16;
    uint8_t reg8;
    struct {
        uint64_t low, high;
    } reg128;
    struct hvp_fp fp;
    struct hvp_fp_control_status fp_control_status;
    struct hvp_xmm_control_status xmm_control_status;
    struct hvp_segment segment;
    struct hvp_table table;
    struct hvp_pending_interruption pending_interruption;
    struct hvp_interrupt_state interrupt_state;
    struct hvp_deliverability deliverability;
};
_Static_assert(sizeof(union hvp_reg_value) == 16, "WHV_REGISTER_VALUE is 16 bytes");

/* The emulator shares these names and the first members of the value. */
#include "emulator.h"

/* ------------------------------------------------------------------------
 * Platform and capabilities
 */
struct hvp;
struct hvp_partition;
struct hvp_vcpu;

/* Opens a backend: "kvm", "soft" or "auto" (NULL = "auto"). On failure
 * *out is NULL and, when errbuf is given, errbuf holds why (the answer for
 * each backend "auto" tried). */
int hvp_open(const char *backend, struct hvp **out, char *errbuf, size_t errlen);
void hvp_close(struct hvp *h);
const char *hvp_backend_name(const struct hvp *h); /* "kvm" or "soft" */
const char *hvp_error(const struct hvp *h);        /* last failure, "" if none */

/* Capability codes (WHV_CAPABILITY_CODE). */
#define HVP_CAP_HYPERVISOR_PRESENT 0x00000000u /* uint32_t bool */
#define HVP_CAP_FEATURES           0x00000001u /* uint64_t HVP_FEATURE_* */
#define HVP_CAP_EXTENDED_VM_EXITS                                                                  \
    0x00000002u /* uint64_t HVP_EXTENDED_EXIT_* the backend can do                                 \
                 */
#define HVP_CAP_EXCEPTION_EXIT_BITMAP     0x00000003u /* uint64_t vectors that can exit */
#define HVP_CAP_X64_MSR_EXIT_BITMAP       0x00000004u /* uint64_t */
#define HVP_CAP_PROCESSOR_VENDOR          0x00001000u /* uint32_t: 0 AMD, 1 Intel, 2 Hygon */
#define HVP_CAP_PROCESSOR_CLFLUSH_SIZE    0x00001002u /* uint8_t, CPUID.1:EBX[15:8] (8-byte units) */
#define HVP_CAP_PROCESSOR_XSAVE_FEATURES  0x00001003u /* uint64_t XCR0 bits supported */
#define HVP_CAP_PROCESSOR_CLOCK_FREQUENCY 0x00001004u /* uint64_t Hz (TSC); kvm: -EOPNOTSUPP */
#define HVP_CAP_INTERRUPT_CLOCK_FREQUENCY 0x00001005u /* uint64_t Hz (APIC timer) */

/* HVP_CAP_FEATURES bits (WHV_CAPABILITY_FEATURES). */
#define HVP_FEATURE_PARTIAL_UNMAP        (1ull << 0)
#define HVP_FEATURE_LOCAL_APIC_EMULATION (1ull << 1)
#define HVP_FEATURE_XSAVE                (1ull << 2)
#define HVP_FEATURE_DIRTY_PAGE_TRACKING  (1ull << 3)

int hvp_get_capability(struct hvp *h, uint32_t code, void *buf, size_t len, size_t *written);

/* ------------------------------------------------------------------------
 * Partitions
 *
 * create -> set properties -> setup -> (map memory, create vCPUs, run) ->
 * destroy. Properties marked [setup] can only be set before setup (-EBUSY
 * after); the others at any time. Sizes must match exactly (-EINVAL), lists
 * must be a whole number of entries.
 */
#define HVP_PROP_EXTENDED_VM_EXITS         0x00000001u /* uint64_t HVP_EXTENDED_EXIT_* [setup] */
#define HVP_PROP_EXCEPTION_EXIT_BITMAP     0x00000002u /* uint64_t, bit n = vector n */
#define HVP_PROP_X64_MSR_EXIT_BITMAP       0x00000005u /* uint64_t HVP_MSR_EXIT_* [setup] */
#define HVP_PROP_CPUID_EXIT_LIST           0x00001003u /* uint32_t leaves [setup] */
#define HVP_PROP_CPUID_RESULT_LIST         0x00001004u /* struct hvp_cpuid_result[] [setup] */
#define HVP_PROP_LOCAL_APIC_EMULATION_MODE 0x00001005u /* uint32_t HVP_APIC_MODE_* [setup] */
#define HVP_PROP_MSR_ACTION_LIST           0x0000100Fu /* struct hvp_msr_action[] [setup] */
#define HVP_PROP_UNIMPLEMENTED_MSR_ACTION  0x00001010u /* uint32_t HVP_MSR_ACTION_* [setup] */
#define HVP_PROP_PROCESSOR_COUNT           0x00001FFFu /* uint32_t, 1..HVP_MAX_VCPUS [setup] */

#define HVP_MAX_VCPUS 256u

/* HVP_PROP_EXTENDED_VM_EXITS bits (WHV_EXTENDED_VM_EXITS). */
#define HVP_EXTENDED_EXIT_CPUID     (1ull << 0) /* leaves in CPUID_EXIT_LIST exit */
#define HVP_EXTENDED_EXIT_MSR       (1ull << 1) /* MSR exits per X64_MSR_EXIT_BITMAP / action list */
#define HVP_EXTENDED_EXIT_EXCEPTION (1ull << 2) /* vectors in EXCEPTION_EXIT_BITMAP exit */

/* HVP_PROP_X64_MSR_EXIT_BITMAP bits (WHV_X64_MSR_EXIT_BITMAP). */
#define HVP_MSR_EXIT_UNHANDLED_MSRS (1ull << 0) /* MSRs the backend does not implement exit */

/* HVP_PROP_LOCAL_APIC_EMULATION_MODE (WHV_X64_LOCAL_APIC_EMULATION_MODE). */
#define HVP_APIC_MODE_NONE   0 /* the VMM emulates the APIC; inject with PENDING_INTERRUPTION */
#define HVP_APIC_MODE_XAPIC  1 /* the platform emulates it (kvm: in-kernel irqchip) */
#define HVP_APIC_MODE_X2APIC 2
/* In XApic and X2Apic modes the LAPIC (timer modes, IPIs, TPR) runs in the
 * platform; X2Apic lets the guest switch it to x2APIC through
 * IA32_APIC_BASE. Every vCPU is runnable from creation, as in WHP. */

/* HVP_PROP_CPUID_RESULT_LIST entry (WHV_X64_CPUID_RESULT): what the guest
 * reads for `function` (subleaf 0, or every subleaf of leaves that have
 * none). Leaves not listed keep the backend's default (kvm:
 * KVM_GET_SUPPORTED_CPUID); the APIC ID fields of leaves 1, 0xB and 0x1F
 * are set to the vCPU index. */
struct hvp_cpuid_result {
    uint32_t function;
    uint32_t reserved[3];
    uint32_t eax, ebx, ecx, edx;
};

/* HVP_PROP_MSR_ACTION_LIST entry (WHV_MSR_ACTION_ENTRY) and the action of
 * HVP_PROP_UNIMPLEMENTED_MSR_ACTION. The list takes effect with
 * HVP_EXTENDED_EXIT_MSR; kvm holds at most 16 entries (-ENOSPC). */
#define HVP_MSR_ACTION_DEFAULT                0 /* the backend handles it (#GP if unknown) */
#define HVP_MSR_ACTION_IGNORE_WRITE_READ_ZERO 1 /* handled inside the platform */
#define HVP_MSR_ACTION_EXIT                   2 /* HVP_EXIT_MSR_ACCESS */
struct hvp_msr_action {
    uint32_t index;
    uint8_t read_action;  /* HVP_MSR_ACTION_* */
    uint8_t write_action; /* HVP_MSR_ACTION_* */
    uint16_t reserved;
};

int hvp_partition_create(struct hvp *h, struct hvp_partition **out);
int hvp_partition_set_property(struct hvp_partition *p, uint32_t code, const void *buf, size_t len);
/* Reads a property; -ENOSPC with *written = the size needed when len is
 * too small. */
int hvp_partition_get_property(struct hvp_partition *p, uint32_t code, void *buf, size_t len,
                               size_t *written);
/* Freezes the configuration and creates the backend objects (kvm:
 * KVM_CREATE_VM, the irqchip, the MSR filter). */
int hvp_partition_setup(struct hvp_partition *p);
/* Puts every vCPU back in its reset state (INIT-like: real mode at
 * F000:FFF0, general, segment and control registers, pending events).
 * Memory is left as it is. No vCPU may be running (-EBUSY). */
int hvp_partition_reset(struct hvp_partition *p);
/* Destroys the partition and any vCPU left (their handles become invalid).
 * NULL is accepted. */
void hvp_partition_destroy(struct hvp_partition *p);
/* Freezes and thaws guest time (kvm: KVM_GET_CLOCK / KVM_SET_CLOCK; the
 * TSC itself keeps running on kvm). */
int hvp_partition_suspend_time(struct hvp_partition *p);
int hvp_partition_resume_time(struct hvp_partition *p);
const char *hvp_partition_error(const struct hvp_partition *p);

/* ------------------------------------------------------------------------
 * Guest-physical memory
 *
 * Host memory (page aligned; memfd or anonymous mmap) is mapped at a page
 * aligned GPA. Guest accesses outside every mapping, or against the
 * mapping's flags, are HVP_EXIT_MEMORY_ACCESS exits (MMIO). The host
 * memory must stay valid until it is unmapped.
 */
#define HVP_MAP_READ        0x1u
#define HVP_MAP_WRITE       0x2u
#define HVP_MAP_EXECUTE     0x4u
#define HVP_MAP_TRACK_DIRTY 0x8u

/* -EEXIST when [gpa, gpa+size) overlaps a mapped range, -EINVAL when not
 * page aligned or without HVP_MAP_READ (kvm cannot map unreadable memory),
 * -EOPNOTSUPP for write without read. */
int hvp_map_gpa(struct hvp_partition *p, void *hva, uint64_t gpa, uint64_t size, uint32_t flags);
/* Unmaps every mapped page in [gpa, gpa+size): ranges are split as needed
 * (partial unmap); holes are allowed. Dirty bits of a split range are
 * kept. */
int hvp_unmap_gpa(struct hvp_partition *p, uint64_t gpa, uint64_t size);
/* Copy through the mapping table (for device models); -ERANGE when a part
 * is not mapped. Host writes are not tracked as dirty. */
int hvp_read_gpa(struct hvp_partition *p, uint64_t gpa, void *buf, size_t len);
int hvp_write_gpa(struct hvp_partition *p, uint64_t gpa, const void *buf, size_t len);
/* The host address for [gpa, gpa+len), which must lie in one mapping. */
int hvp_gpa_to_hva(struct hvp_partition *p, uint64_t gpa, size_t len, void **hva);
/* Query-and-clear of the dirty pages of [gpa, gpa+size), which must lie in
 * one range mapped with HVP_MAP_TRACK_DIRTY: bit i of bitmap (64 pages per
 * word) is page gpa + i * 4096. bitmap_bytes must cover size / 4096 bits
 * (-ENOSPC). */
int hvp_query_dirty_bitmap(struct hvp_partition *p, uint64_t gpa, uint64_t size, uint64_t *bitmap,
                           size_t bitmap_bytes);

/* ------------------------------------------------------------------------
 * Exits (WHV_RUN_VP_EXIT_REASON numbering)
 */
#define HVP_EXIT_NONE                      0x00000000u
#define HVP_EXIT_MEMORY_ACCESS             0x00000001u /* .mmio */
#define HVP_EXIT_IO_PORT                   0x00000002u /* .io */
#define HVP_EXIT_UNRECOVERABLE_EXCEPTION   0x00000004u /* triple fault */
#define HVP_EXIT_INVALID_VP_REGISTER_VALUE 0x00000005u /* the state cannot be entered */
#define HVP_EXIT_UNSUPPORTED_FEATURE       0x00000006u /* .unsupported */
#define HVP_EXIT_INTERRUPT_WINDOW          0x00000007u /* .interrupt_window */
#define HVP_EXIT_HALT                      0x00000008u /* RIP is past the HLT */
#define HVP_EXIT_APIC_EOI                  0x00000009u /* .apic_eoi */
#define HVP_EXIT_MSR_ACCESS                0x00001000u /* .msr */
#define HVP_EXIT_CPUID                     0x00001001u /* .cpuid */
#define HVP_EXIT_EXCEPTION                 0x00001002u /* .exception */
#define HVP_EXIT_CANCELED                  0x00002001u /* hvp_vcpu_cancel() */
/* Beyond WHP: reasons only hvp reports. */
#define HVP_EXIT_SHUTDOWN 0x00003000u /* the backend stopped the VM (system event) */
#define HVP_EXIT_INTERNAL_ERROR                                                                    \
    0x00003001u /* .internal: backend failure, the VM cannot continue                              \
                 */

/* Name of an exit reason ("IoPort"), or "?" */
const char *hvp_exit_name(uint32_t reason);

/* Flags of struct hvp_exit. */
#define HVP_EXIT_F_DECODED 0x1u /* .io.access / .mmio.access are filled */
/* The instruction has already retired but for this MMIO write: RIP is past
 * it and there are no instruction bytes. Deliver .mmio.access.data to the
 * device and complete (or just run again); do not emulate it. kvm sets it
 * on every MMIO write (KVM's own emulator has finished the instruction
 * when it exits); the WHP shim calls the memory callback directly. */
#define HVP_EXIT_F_RETIRED 0x2u

/* The decoded access of an I/O or MMIO exit. For a read, the VMM supplies
 * the value with hvp_vcpu_complete_io(); for a write, data holds it.
 * String I/O (count > 1) keeps its data at `buf` (size * count bytes,
 * valid until the next call on this vCPU). */
struct hvp_access {
    uint64_t addr; /* port or GPA */
    uint8_t size;  /* 1, 2, 4 or 8 (MMIO up to 16 in data[] is not decoded) */
    uint8_t is_write;
    uint8_t string_op;
    uint8_t rep;
    uint32_t count; /* iterations carried by this exit: 1 but for string I/O */
    uint8_t data[8];
    uint8_t *buf; /* data of every iteration (== data when count == 1) */
};

struct hvp_exit_io {
    struct hvp_emu_io_context ctx; /* WHP's IoPortAccess: bytes + access info */
    uint64_t rax, rcx, rsi, rdi;
    struct hvp_segment ds, es;
    struct hvp_access access; /* with HVP_EXIT_F_DECODED */
};

struct hvp_exit_mmio {
    struct hvp_emu_mmio_context ctx; /* WHP's MemoryAccess: bytes, type, gpa, gva */
    struct hvp_access access;        /* with HVP_EXIT_F_DECODED */
};

struct hvp_exit_msr {
    uint32_t index;
    uint8_t is_write;
    uint8_t reserved[3];
    uint64_t rax, rdx; /* for a write: the value is rdx:rax */
};

struct hvp_exit_cpuid {
    uint64_t rax, rcx, rdx, rbx;                                 /* the guest's request */
    uint64_t default_rax, default_rcx, default_rdx, default_rbx; /* what the table says */
};

struct hvp_exit_exception {
    uint8_t instruction_bytes[16];
    uint8_t instruction_byte_count;
    uint8_t vector; /* exception type */
    uint8_t error_code_valid;
    uint8_t reserved;
    uint32_t error_code;
    uint64_t parameter; /* CR2 for #PF, DR6 for #DB */
};

#define HVP_WINDOW_INTERRUPT 0
#define HVP_WINDOW_NMI       1
struct hvp_exit_interrupt_window {
    uint32_t deliverable_type; /* HVP_WINDOW_* */
};

struct hvp_exit_apic_eoi {
    uint32_t vector;
};

struct hvp_exit_unsupported {
    uint32_t feature_code;
    uint64_t parameter;
};

struct hvp_exit_internal {
    uint32_t backend_reason; /* kvm: KVM_EXIT_* */
    uint32_t suberror;
    uint64_t data[4];
};

struct hvp_exit {
    uint32_t reason; /* HVP_EXIT_* */
    uint32_t flags;  /* HVP_EXIT_F_* */
    /* WHP's VpContext: RIP of the instruction that exited (past it for
     * HLT), RFLAGS, CS, CPL, CR0.PE/AM, EFER.LMA, interrupt shadow. Ready to
     * hand to the emulator. */
    struct hvp_emu_vp_context vp;
    uint8_t interrupt_shadow;
    uint8_t cr8;
    uint8_t reserved[6];
    union {
        struct hvp_exit_io io;
        struct hvp_exit_mmio mmio;
        struct hvp_exit_msr msr;
        struct hvp_exit_cpuid cpuid;
        struct hvp_exit_exception exception;
        struct hvp_exit_interrupt_window interrupt_window;
        struct hvp_exit_apic_eoi apic_eoi;
        struct hvp_exit_unsupported unsupported;
        struct hvp_exit_internal internal;
    };
};

/* ------------------------------------------------------------------------
 * The inline I/O handler (fast path)
 *
 * Registered on a partition, it is called by the backend on the vCPU's
 * thread, inside hvp_vcpu_run(), for decoded single (non-string) port and
 * MMIO accesses; the access is then completed without an exit. Return 0
 * when handled (for a read, *data holds the value, little-endian),
 * HVP_IO_UNHANDLED to let the access exit as usual, or a negative errno to
 * stop the run (hvp_vcpu_run returns it). The soft backend calls it from
 * its CPU loop; kvm after KVM_RUN returns, which saves the exit to the VMM
 * but not the one into the host kernel.
 */
#define HVP_IO_UNHANDLED 1
struct hvp_io_handler {
    uint32_t size; /* sizeof(struct hvp_io_handler) */
    uint32_t reserved;
    int (*pio)(void *ctx, struct hvp_vcpu *v, uint16_t port, uint8_t size, bool is_write,
               uint64_t *data);
    int (*mmio)(void *ctx, struct hvp_vcpu *v, uint64_t gpa, uint8_t size, bool is_write,
                uint64_t *data);
};
/* h == NULL removes the handler. Not while a vCPU runs (-EBUSY). */
int hvp_partition_set_io_handler(struct hvp_partition *p, const struct hvp_io_handler *h,
                                 void *ctx);

/* ------------------------------------------------------------------------
 * Virtual processors
 */

/* Creates vCPU `index` (< ProcessorCount) after setup. Its state is the
 * architectural reset state (real mode, CS:IP = F000:FFF0). */
int hvp_vcpu_create(struct hvp_partition *p, uint32_t index, struct hvp_vcpu **out);
/* Releases the vCPU; its index may be created again. The handle itself
 * stays valid until the partition is destroyed: every call on it returns
 * -ESHUTDOWN ("vCPU n was destroyed"). NULL is accepted. Must not race with
 * hvp_vcpu_run on the same vCPU. */
void hvp_vcpu_destroy(struct hvp_vcpu *v);
uint32_t hvp_vcpu_index(const struct hvp_vcpu *v);
const char *hvp_vcpu_error(const struct hvp_vcpu *v);

/* Runs the vCPU until an exit, which *exit describes. Returns 0, or a
 * negative errno when the run itself failed (-EBUSY: already running on
 * another thread). On kvm the calling thread keeps HVP_KICK_SIGNAL blocked
 * (used by hvp_vcpu_cancel; the signal never reaches a handler).
 *
 * Completing exits. An I/O, MMIO or MSR exit leaves the instruction
 * pending. Complete it with hvp_vcpu_complete_io() / _complete_msr() (the
 * decoded way), or WHP's way: emulate it (hvp_emulator_try_io/mmio with
 * registers through hvp_vcpu_get/set_registers) or set RAX/RDX/RIP
 * yourself. Running again without either completes a read with zeros. */
int hvp_vcpu_run(struct hvp_vcpu *v, struct hvp_exit *exit);
#define HVP_KICK_SIGNAL (SIGRTMIN + 5)

/* Makes the current run return HVP_EXIT_CANCELED soon, or the next one if
 * the vCPU is not running. Any thread, async-signal-unsafe. */
int hvp_vcpu_cancel(struct hvp_vcpu *v);

/* Completes the pending decoded I/O or MMIO exit: for a read, data holds
 * len = size (* count for string I/O) bytes; for a write pass NULL, 0. RIP
 * moves past the instruction before this returns, so registers read next
 * are final (kvm: a KVM_RUN with immediate_exit). -EINVAL when nothing is
 * pending or len is wrong. */
int hvp_vcpu_complete_io(struct hvp_vcpu *v, const void *data, size_t len);
/* Completes the pending MSR exit: a read returns value (in EDX:EAX); with
 * inject_gp the guest gets #GP instead. */
int hvp_vcpu_complete_msr(struct hvp_vcpu *v, uint64_t value, bool inject_gp);

/* Register batches. The whole batch fails with -EINVAL (and the message
 * names the register) if one name is unknown; nothing is written then. */
int hvp_vcpu_get_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t count,
                           union hvp_reg_value *values);
int hvp_vcpu_set_registers(struct hvp_vcpu *v, const uint32_t *names, uint32_t count,
                           const union hvp_reg_value *values);

/* XSAVE area in the standard (non-compacted) format; -ENOSPC with
 * *written = the size needed when len is too small (kvm: 4096 bytes).
 * A component counts only when its XSTATE_BV bit (offset 512) is set. */
int hvp_vcpu_get_xsave(struct hvp_vcpu *v, void *buf, size_t len, size_t *written);
int hvp_vcpu_set_xsave(struct hvp_vcpu *v, const void *buf, size_t len);

/* Local APIC register page (HVP_LAPIC_STATE_SIZE bytes, the xAPIC MMIO
 * layout) when the platform emulates the APIC; -EOPNOTSUPP in mode None. */
#define HVP_LAPIC_STATE_SIZE 1024u
int hvp_vcpu_get_lapic(struct hvp_vcpu *v, void *buf, size_t len, size_t *written);
int hvp_vcpu_set_lapic(struct hvp_vcpu *v, const void *buf, size_t len);

/* The CPUID result the guest sees for leaf/subleaf. */
int hvp_vcpu_get_cpuid(struct hvp_vcpu *v, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);

/* Translate flags and results (WHV_TRANSLATE_GVA_*). */
#define HVP_TRANSLATE_VALIDATE_READ            0x01u
#define HVP_TRANSLATE_VALIDATE_WRITE           0x02u
#define HVP_TRANSLATE_VALIDATE_EXECUTE         0x04u
#define HVP_TRANSLATE_PRIVILEGE_EXEMPT         0x08u /* check as supervisor even at CPL 3 */
#define HVP_TRANSLATE_SET_PT_BITS              0x10u /* set accessed (and dirty on write) bits */
#define HVP_TRANSLATE_SUCCESS                  0
#define HVP_TRANSLATE_PAGE_NOT_PRESENT         1
#define HVP_TRANSLATE_PRIVILEGE_VIOLATION      2
#define HVP_TRANSLATE_INVALID_PAGE_TABLE_FLAGS 3
#define HVP_TRANSLATE_GPA_UNMAPPED             4
#define HVP_TRANSLATE_GPA_NO_READ_ACCESS       5
#define HVP_TRANSLATE_GPA_NO_WRITE_ACCESS      6

/* Walks the vCPU's page tables (CR0, CR3, CR4, EFER, CPL from SS.DPL) for
 * gva, in software on every backend (KVM_TRANSLATE reports no permissions):
 * no paging, 2-level (PSE), PAE, 4- and 5-level; NX, WP, SMEP. Returns
 * 0 with *result = HVP_TRANSLATE_* (and *gpa on success), or -errno when
 * the walk itself could not be done (page tables outside guest memory give
 * HVP_TRANSLATE_GPA_UNMAPPED, not an error). */
int hvp_vcpu_translate_gva(struct hvp_vcpu *v, uint64_t gva, uint32_t flags, uint32_t *result,
                           uint64_t *gpa);

/* ------------------------------------------------------------------------
 * Interrupts (with the APIC emulated by the platform)
 */
#define HVP_INTERRUPT_FIXED           0
#define HVP_INTERRUPT_LOWEST_PRIORITY 1
#define HVP_INTERRUPT_NMI             4
#define HVP_INTERRUPT_INIT            5
#define HVP_INTERRUPT_SIPI            6
#define HVP_INTERRUPT_LOCAL_INT1      9
struct hvp_interrupt {
    uint32_t type;           /* HVP_INTERRUPT_* */
    uint8_t logical_dest;    /* destination mode: 0 physical, 1 logical */
    uint8_t level_triggered; /* trigger mode: 0 edge, 1 level */
    uint16_t reserved;
    uint32_t destination; /* APIC ID (x2APIC: 32 bits) */
    uint32_t vector;
};
/* WHvRequestInterrupt: delivers like an MSI. -EOPNOTSUPP in APIC mode None
 * (inject through HVP_REG_PENDING_INTERRUPTION instead). */
int hvp_request_interrupt(struct hvp_partition *p, const struct hvp_interrupt *irq);
/* Raises or lowers a legacy line of the platform's IOAPIC/PIC (kvm
 * in-kernel irqchip; GSI 0..23): GSI n is IOAPIC pin n and, for n < 16
 * except 2 (the cascade), PIC pin n. soft has no IOAPIC/PIC: -EOPNOTSUPP
 * (the VMM emulates them and delivers with hvp_request_interrupt). */
int hvp_set_irq_line(struct hvp_partition *p, uint32_t gsi, bool level);

#ifdef __cplusplus
}
#endif

#endif
