/* hvp instruction emulator: the counterpart of WinHvEmulation.
 *
 * Completes I/O-port and MMIO exits by decoding the instruction that caused
 * them and emulating it: port and memory accesses, register reads and writes
 * and guest-virtual translation all go through five callbacks supplied by the
 * VMM. The emulator holds no state between calls and is bound to no
 * partition; the `ctx` pointer given to each call is passed through to every
 * callback (typically the vCPU).
 *
 * Outcomes are reported as a status bitmask (HVP_EMU_STATUS_*, modelled on
 * WHV_EMULATOR_STATUS); the functions themselves return 0, or a negative
 * errno when the API is misused (NULL handle, bad sizes).
 *
 * Registers. All sixteen GPRs are read in one get_registers batch per call;
 * segment (ES..GS), XMM and FpMmx registers only when the instruction needs
 * them. RIP, RFLAGS, CS, CPL and the CR0/EFER bits come from the exit's
 * vp context. Results go back in one set_registers batch: the GPRs and
 * vector registers that changed, RFLAGS if it changed, and RIP (= RIP +
 * length) when the instruction completed. Completion clears RFLAGS.RF; a
 * set TF is not turned into a #DB trap (the VMM's job, as with WHP). An MMX
 * load writes FpMmx with the exponent bits set but does not touch the x87
 * tag word or TOS.
 *
 * Guest exceptions. When the instruction must fault (#PF on a translation
 * failure, #GP on a non-canonical or misaligned address or a segment limit
 * or rights violation, #SS, #AC, #DE for DIV/IDIV), nothing of the faulting
 * step is written, RIP is not advanced, and the call returns
 * HVP_EMU_STATUS_SUCCESS cleared,
 * HVP_EMU_STATUS_EXCEPTION set and *fault filled in: the VMM injects the
 * exception (vector, error code, and CR2 for #PF) and resumes the guest,
 * which then takes the fault on the instruction. With fault == NULL the
 * call reports HVP_EMU_STATUS_GUEST_CANNOT_BE_FAULTED instead. A REP string
 * instruction that faults part-way keeps the iterations already completed:
 * RCX/RSI/RDI are written back pointing at the faulting iteration, exactly
 * as the hardware leaves them.
 *
 * Translation. The translate callback is asked for one page at a time (the
 * GVA passed is page aligned) and must return a page-aligned GPA, otherwise
 * HVP_EMU_STATUS_TRANSLATE_GPA_NOT_ALIGNED. A translation that walks the
 * guest page tables successfully but lands on unmapped or protected GPA space
 * (HVP_EMU_TRANSLATE_GPA_*) is not a guest fault: that is where the device
 * lives, and the access goes to the memory callback.
 *
 * Memory accesses. Every data access goes through the memory callback with
 * access_size 1, 2, 4, 8 or 16. An access that crosses a page boundary is
 * split into one access per page (each page translated separately); a part
 * whose size is not a power of two is split further into power-of-two
 * pieces, lowest address first.
 *
 * Segmentation. Outside 64-bit mode every data access is checked against
 * its segment's byte-granular limit (expand-down included); in protected
 * mode also presence and type (no writes to code or read-only segments).
 * In 64-bit mode only FS/GS bases apply, and addresses must be canonical
 * (48-bit, or 57-bit with cr4_la57).
 *
 * HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT: the vp context says the exit
 * hit while the CPU was delivering an event (interruption_pending); there
 * is no instruction to complete and nothing is done.
 *
 * Long REP string instructions: at most HVP_EMULATOR_MAX_REP iterations are
 * emulated per call; the call then returns success with RCX/RSI/RDI updated
 * and RIP left on the instruction, so the guest re-executes it (which the
 * architecture allows: REP instructions are interruptible).
 */
#ifndef HVP_EMULATOR_H
#define HVP_EMULATOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Register names used by the emulator: WHP's WHV_REGISTER_NAME values. */
#ifndef HVP_REG_RAX
#define HVP_REG_RAX    0x00000000u
#define HVP_REG_RCX    0x00000001u
#define HVP_REG_RDX    0x00000002u
#define HVP_REG_RBX    0x00000003u
#define HVP_REG_RSP    0x00000004u
#define HVP_REG_RBP    0x00000005u
#define HVP_REG_RSI    0x00000006u
#define HVP_REG_RDI    0x00000007u
#define HVP_REG_R8     0x00000008u
#define HVP_REG_R9     0x00000009u
#define HVP_REG_R10    0x0000000Au
#define HVP_REG_R11    0x0000000Bu
#define HVP_REG_R12    0x0000000Cu
#define HVP_REG_R13    0x0000000Du
#define HVP_REG_R14    0x0000000Eu
#define HVP_REG_R15    0x0000000Fu
#define HVP_REG_RIP    0x00000010u
#define HVP_REG_RFLAGS 0x00000011u
#define HVP_REG_ES     0x00000012u
#define HVP_REG_CS     0x00000013u
#define HVP_REG_SS     0x00000014u
#define HVP_REG_DS     0x00000015u
#define HVP_REG_FS     0x00000016u
#define HVP_REG_GS     0x00000017u
#define HVP_REG_CR0    0x0000001Cu
#define HVP_REG_CR2    0x0000001Du
#define HVP_REG_CR3    0x0000001Eu
#define HVP_REG_CR4    0x0000001Fu
#define HVP_REG_XMM0   0x00001000u /* Xmm0..Xmm15 = 0x1000..0x100F */
#define HVP_REG_FPMMX0 0x00001010u /* FpMmx0..FpMmx7 = 0x1010..0x1017 */
#define HVP_REG_EFER   0x00002001u
#endif

/* A register value: the 16-byte layout of WHV_REGISTER_VALUE for the
 * members the emulator uses. */
struct hvp_emu_segment {
    uint64_t base;
    uint32_t limit;
    uint16_t selector;
    uint16_t attributes; /* type:4 s:1 dpl:2 p:1 rsvd:4 avl:1 l:1 db:1 g:1 */
};

union hvp_emu_reg_value {
    uint64_t reg64;
    uint32_t reg32;
    uint16_t reg16;
    uint8_t reg8;
    struct {
        uint64_t low, high;
    } reg128; /* XMM registers; FpMmx: low = MMX value */
    struct hvp_emu_segment segment;
};

/* Segment attribute bits. */
#define HVP_EMU_SEG_TYPE_MASK 0x000F
#define HVP_EMU_SEG_S         0x0010
#define HVP_EMU_SEG_P         0x0080
#define HVP_EMU_SEG_L         0x2000
#define HVP_EMU_SEG_DB        0x4000
#define HVP_EMU_SEG_G         0x8000

/* I/O port access (WHV_EMULATOR_IO_ACCESS_INFO). */
#define HVP_EMU_IO_IN  0
#define HVP_EMU_IO_OUT 1
struct hvp_emu_io_access {
    uint8_t direction; /* HVP_EMU_IO_IN / HVP_EMU_IO_OUT */
    uint16_t port;
    uint16_t access_size; /* 1, 2 or 4 */
    uint32_t data;        /* out: value written; in: callback stores the value read */
};

/* Memory access by GPA (WHV_EMULATOR_MEMORY_ACCESS_INFO, with room for
 * 16-byte SSE and CMPXCHG16B accesses). */
#define HVP_EMU_MEM_READ  0
#define HVP_EMU_MEM_WRITE 1
struct hvp_emu_memory_access {
    uint64_t gpa;
    uint8_t direction;   /* HVP_EMU_MEM_READ / HVP_EMU_MEM_WRITE */
    uint8_t access_size; /* 1, 2, 4, 8 or 16 */
    uint8_t data[16];    /* little-endian, access_size bytes used */
};

/* Translate flags (WHV_TRANSLATE_GVA_FLAGS). */
#define HVP_EMU_TRANSLATE_VALIDATE_READ    0x01u
#define HVP_EMU_TRANSLATE_VALIDATE_WRITE   0x02u
#define HVP_EMU_TRANSLATE_VALIDATE_EXECUTE 0x04u
#define HVP_EMU_TRANSLATE_PRIVILEGE_EXEMPT 0x08u
#define HVP_EMU_TRANSLATE_SET_PT_BITS      0x10u

/* Translate result codes (WHV_TRANSLATE_GVA_RESULT_CODE). */
enum hvp_emu_translate_result {
    HVP_EMU_TRANSLATE_SUCCESS = 0,
    HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT = 1,
    HVP_EMU_TRANSLATE_PRIVILEGE_VIOLATION = 2,
    HVP_EMU_TRANSLATE_INVALID_PAGE_TABLE_FLAGS = 3,
    HVP_EMU_TRANSLATE_GPA_UNMAPPED = 4,
    HVP_EMU_TRANSLATE_GPA_NO_READ_ACCESS = 5,
    HVP_EMU_TRANSLATE_GPA_NO_WRITE_ACCESS = 6,
    HVP_EMU_TRANSLATE_GPA_ILLEGAL_OVERLAY_ACCESS = 7,
    HVP_EMU_TRANSLATE_INTERCEPT = 8,
};

/* The callbacks. Each returns 0 on success or a negative errno; a failure
 * stops the emulation with the matching HVP_EMU_STATUS_*_FAILED bit. */
struct hvp_emulator_callbacks {
    uint32_t size; /* sizeof(struct hvp_emulator_callbacks) */
    uint32_t reserved;
    int (*io_port)(void *ctx, struct hvp_emu_io_access *io);
    int (*memory)(void *ctx, struct hvp_emu_memory_access *mem);
    int (*get_registers)(void *ctx, const uint32_t *names, uint32_t count,
                         union hvp_emu_reg_value *values);
    int (*set_registers)(void *ctx, const uint32_t *names, uint32_t count,
                         const union hvp_emu_reg_value *values);
    /* gva is page aligned; on HVP_EMU_TRANSLATE_SUCCESS (or a GPA_* result)
     * *gpa receives the page-aligned GPA. */
    int (*translate_gva_page)(void *ctx, uint64_t gva, uint32_t flags,
                              enum hvp_emu_translate_result *result, uint64_t *gpa);
};

/* The part of the exit context every exit carries (WHV_VP_EXIT_CONTEXT). */
struct hvp_emu_vp_context {
    uint64_t rip; /* address of the instruction (offset in CS) */
    uint64_t rflags;
    struct hvp_emu_segment cs; /* base and attributes (L, D/B) select the mode */
    uint8_t cpl;
    uint8_t cr0_pe;               /* protected mode: segment checks apply */
    uint8_t cr0_am;               /* alignment checks (with RFLAGS.AC at CPL 3) */
    uint8_t efer_lma;             /* long mode active: CS.L selects 64-bit code */
    uint8_t interruption_pending; /* exit hit while delivering an event */
    uint8_t instruction_length;   /* informational: the emulator decodes it */
    uint8_t cr4_la57;             /* 5-level paging: 57-bit canonical addresses */
    uint8_t reserved;
};

/* I/O-port exit (WHV_X64_IO_PORT_ACCESS_CONTEXT). The access fields are
 * checked against the decoded instruction: a mismatch (stale or modified
 * bytes) is an internal failure rather than a wrong emulation. */
struct hvp_emu_io_context {
    uint8_t instruction_bytes[16];
    uint8_t instruction_byte_count; /* may be fewer than the instruction needs */
    uint8_t is_write;
    uint8_t access_size; /* 1, 2 or 4 */
    uint8_t string_op;
    uint8_t rep_prefix;
    uint8_t reserved[3];
    uint16_t port;
};

/* MMIO exit (WHV_MEMORY_ACCESS_CONTEXT). gpa/gva are informational: the
 * emulator computes the addresses from the instruction and translates them. */
#define HVP_EMU_ACCESS_READ    0
#define HVP_EMU_ACCESS_WRITE   1
#define HVP_EMU_ACCESS_EXECUTE 2
struct hvp_emu_mmio_context {
    uint8_t instruction_bytes[16];
    uint8_t instruction_byte_count; /* may be fewer than the instruction needs */
    uint8_t access_type;            /* HVP_EMU_ACCESS_* */
    uint8_t gpa_unmapped;
    uint8_t gva_valid;
    uint8_t reserved[4];
    uint64_t gpa;
    uint64_t gva;
};

/* A guest exception for the VMM to inject. */
struct hvp_emu_fault {
    uint8_t vector;         /* 0 = #DE, 12 = #SS, 13 = #GP, 14 = #PF, 17 = #AC */
    uint8_t has_error_code; /* 1 for #SS, #GP, #PF, #AC (the code is 0 but for #PF) */
    uint16_t reserved;
    uint32_t error_code;
    uint64_t cr2; /* faulting linear address for #PF */
};

/* Status bits (WHV_EMULATOR_STATUS order), plus HVP_EMU_STATUS_EXCEPTION. */
#define HVP_EMU_STATUS_SUCCESS                    0x0001u
#define HVP_EMU_STATUS_INTERNAL_FAILURE           0x0002u
#define HVP_EMU_STATUS_IO_PORT_CALLBACK_FAILED    0x0004u
#define HVP_EMU_STATUS_MEMORY_CALLBACK_FAILED     0x0008u
#define HVP_EMU_STATUS_TRANSLATE_CALLBACK_FAILED  0x0010u
#define HVP_EMU_STATUS_TRANSLATE_GPA_NOT_ALIGNED  0x0020u
#define HVP_EMU_STATUS_GET_REGISTERS_FAILED       0x0040u
#define HVP_EMU_STATUS_SET_REGISTERS_FAILED       0x0080u
#define HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT 0x0100u
#define HVP_EMU_STATUS_GUEST_CANNOT_BE_FAULTED    0x0200u
#define HVP_EMU_STATUS_EXCEPTION                  0x0400u /* *fault holds an exception to inject */

/* Iterations of a REP string instruction emulated per call. */
#define HVP_EMULATOR_MAX_REP 65536u

struct hvp_emulator;

/* Creates an emulator with a copy of the callbacks (all five required,
 * cb->size at least the size of this version's struct). */
int hvp_emulator_create(const struct hvp_emulator_callbacks *cb, struct hvp_emulator **out);
void hvp_emulator_destroy(struct hvp_emulator *emu);

/* Completes an I/O-port exit: IN/OUT/INS/OUTS with REP. *status receives
 * HVP_EMU_STATUS_* bits; *fault (may be NULL) the exception to inject when
 * HVP_EMU_STATUS_EXCEPTION is set. */
int hvp_emulator_try_io(struct hvp_emulator *emu, void *ctx, const struct hvp_emu_vp_context *vp,
                        const struct hvp_emu_io_context *io, uint32_t *status,
                        struct hvp_emu_fault *fault);

/* Completes an MMIO exit: the data-moving and ALU instructions a guest uses
 * against device memory (see src/emulator/exec.c for the list). */
int hvp_emulator_try_mmio(struct hvp_emulator *emu, void *ctx, const struct hvp_emu_vp_context *vp,
                          const struct hvp_emu_mmio_context *mmio, uint32_t *status,
                          struct hvp_emu_fault *fault);

#ifdef __cplusplus
}
#endif

#endif
