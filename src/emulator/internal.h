/* Emulator internals shared by the files of src/emulator. */
#ifndef HVP_EMULATOR_INTERNAL_H
#define HVP_EMULATOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "hvp/emulator.h"
#include "hvp/x86.h"

struct hvp_emulator {
    struct hvp_emulator_callbacks cb;
};

/* RFLAGS bits. */
#define FL_CF    0x0001u
#define FL_PF    0x0004u
#define FL_AF    0x0010u
#define FL_ZF    0x0040u
#define FL_SF    0x0080u
#define FL_DF    0x0400u
#define FL_OF    0x0800u
#define FL_RF    0x10000u
#define FL_VM    0x20000u
#define FL_AC    0x40000u
#define FL_ARITH (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

/* Exception vectors. */
#define VEC_DE 0
#define VEC_UD 6
#define VEC_SS 12
#define VEC_GP 13
#define VEC_PF 14
#define VEC_AC 17

/* Segment numbers as in enum hvp_x86_reg's ES block and WHP's Es.. names. */
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS };

/* Access kinds for address preparation. */
#define ACC_R 1u
#define ACC_W 2u
#define ACC_X 4u

/* Result of functions that may stop the emulation: the reason is already in
 * e->status or e->fault. */
#define STOP (-1)

/* A prepared memory access: linear address, size and the GPA of each page it
 * touches (two when it crosses a page boundary). */
struct memref {
    uint64_t la;
    uint64_t gpa[2];
    unsigned size;
    unsigned first; /* bytes in the first page */
};

struct tlb_entry {
    uint64_t gva_page, gpa_page;
    uint32_t flags;
    bool valid;
};

/* Per-call state: the register cache and the outcome. */
struct emu {
    const struct hvp_emulator_callbacks *cb;
    void *ctx;
    const struct hvp_emu_vp_context *vp;
    uint32_t status;
    bool faulted;
    struct hvp_emu_fault fault;
    unsigned mode; /* 16, 32, 64 */
    struct hvp_x86_insn insn;
    uint8_t bytes[16];
    unsigned nbytes;

    uint64_t gpr[16];
    uint16_t gpr_dirty;
    uint64_t rflags, rflags_in;
    uint64_t rip_next;
    bool advance_rip;

    struct hvp_emu_segment seg[6];
    uint8_t seg_valid;

    uint64_t xmm[16][2];
    uint16_t xmm_valid, xmm_dirty;
    uint64_t mmx[8];
    uint8_t mmx_valid, mmx_dirty;

    struct tlb_entry tlb[4];
    unsigned tlb_next;
};

/* emulator.c */
int emu_fault(struct emu *e, unsigned vector, uint32_t error_code, uint64_t cr2);
int emu_internal(struct emu *e);
int emu_get_segment(struct emu *e, unsigned seg, struct hvp_emu_segment *out);
int emu_get_xmm(struct emu *e, unsigned n, uint64_t v[2]);
void emu_set_xmm(struct emu *e, unsigned n, const uint64_t v[2]);
int emu_get_mmx(struct emu *e, unsigned n, uint64_t *v);
void emu_set_mmx(struct emu *e, unsigned n, uint64_t v);
uint64_t emu_gpr_read(struct emu *e, unsigned reg);
void emu_gpr_write(struct emu *e, unsigned reg, uint64_t v);
void emu_gpr_set64(struct emu *e, unsigned n, uint64_t v);

/* access.c */
int emu_prepare(struct emu *e, unsigned seg, uint64_t off, unsigned size, unsigned acc,
                unsigned align, struct memref *m);
int emu_read(struct emu *e, const struct memref *m, void *buf);
int emu_write(struct emu *e, const struct memref *m, const void *buf);
int emu_fetch(struct emu *e, uint64_t la, uint8_t *buf, unsigned *n, unsigned max);

/* alu.c */
uint64_t alu_mask(unsigned size);
uint64_t alu_sext(uint64_t v, unsigned size);
uint64_t alu_szp(uint64_t res, unsigned size);
uint64_t alu_add(uint64_t a, uint64_t b, unsigned cin, unsigned size, uint64_t *fl);
uint64_t alu_sub(uint64_t a, uint64_t b, unsigned bin, unsigned size, uint64_t *fl);
uint64_t alu_logic(uint64_t res, unsigned size, uint64_t *fl);

/* exec.c */
int emu_exec_io(struct emu *e, const struct hvp_emu_io_context *io);
int emu_exec_mmio(struct emu *e);

#endif
