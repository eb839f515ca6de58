/* A fake VM for the emulator tests: guest RAM and an MMIO window as arrays,
 * a shifted GVA->GPA translation that can fail chosen pages, registers in a
 * table, and logs of every device access. */
#ifndef HVP_TEST_FAKEVM_H
#define HVP_TEST_FAKEVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hvp/emulator.h"

#define FVM_RAM_SIZE  0x40000u  /* GPA 0 .. 256 KiB */
#define FVM_MMIO_GPA  0x100000u /* GPA of the MMIO window */
#define FVM_MMIO_SIZE 0x4000u   /* four pages */
#define FVM_LOG_MAX   512
#define FVM_CODE_GVA  0x1000u /* default RIP (GVA offset, before va_base) */

struct fvm_mem_log {
    uint64_t gpa;
    uint8_t dir, size;
    uint8_t data[16];
};

struct fvm_io_log {
    uint16_t port;
    uint8_t dir, size;
    uint32_t data;
};

struct fakevm {
    struct hvp_emulator *emu;
    uint8_t ram[FVM_RAM_SIZE];
    uint8_t mmio[FVM_MMIO_SIZE];

    /* Translation: gpa = gva - va_base for gva in [va_base, va_base + 4 GiB). */
    uint64_t va_base;
    uint64_t fail_page; /* a GVA page that fails with fail_result */
    bool fail_enabled;
    enum hvp_emu_translate_result fail_result;
    bool translate_cb_fails, gpa_misaligned;
    bool mem_cb_fails, get_fails, set_fails, io_fails;
    int mem_fail_after; /* >0: memory callback fails on that access (1-based) */

    /* Registers. */
    uint64_t gpr[16], rip, rflags;
    struct hvp_emu_segment seg[6];
    uint64_t xmm[16][2];
    uint64_t mmx[8][2];

    /* Execution state for the vp context. */
    unsigned mode; /* 16, 32, 64 */
    uint8_t cpl, cr0_pe, cr0_am, interruption_pending, la57;
    int deliver; /* instruction bytes delivered with the exit; -1 = all */

    /* Logs. */
    struct fvm_mem_log mem_log[FVM_LOG_MAX];
    unsigned n_mem, n_mem_total;
    struct fvm_io_log io_log[FVM_LOG_MAX];
    unsigned n_io;
    uint32_t io_in_next; /* value the next port read returns (then +1) */
    unsigned n_translate, n_get, n_set;
    bool rip_set, rflags_set;
};

struct fakevm *fvm_new(unsigned mode);
void fvm_free(struct fakevm *vm);

/* Places code at vm->rip (GVA) in guest memory. */
void fvm_put_code(struct fakevm *vm, const uint8_t *code, size_t len);

/* Host pointer for a GVA (RAM or MMIO), NULL outside. */
uint8_t *fvm_ptr(struct fakevm *vm, uint64_t gva);

/* Runs an MMIO / IO exit for `code`, returning the status bits. */
uint32_t fvm_mmio(struct fakevm *vm, const uint8_t *code, size_t len, struct hvp_emu_fault *f);
uint32_t fvm_io(struct fakevm *vm, const uint8_t *code, size_t len, bool is_write, unsigned size,
                bool string, uint16_t port, struct hvp_emu_fault *f);

/* The GVA of MMIO window offset `off`. */
static inline uint64_t fvm_mmio_gva(const struct fakevm *vm, uint64_t off)
{
    return vm->va_base + FVM_MMIO_GPA + off;
}

#endif
