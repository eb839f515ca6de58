/* The Linux x86 boot protocol, 64-bit entry (machine-internal): bzImage
 * header checks, zero page, e820, command line, initrd placement, GDT and
 * identity page tables. Works on host buffers so tests need no VM. */
#ifndef HVP_VMM_BOOT_H
#define HVP_VMM_BOOT_H

#include <hvp/platform.h>

#include <stddef.h>
#include <stdint.h>

/* Guest-physical layout of the loader's structures (pc-machine.md 1.3). */
#define VMM_BOOT_GDT       0x500ull
#define VMM_BOOT_ZERO_PAGE 0x7000ull
#define VMM_BOOT_STACK     0x8ff0ull
#define VMM_BOOT_PML4      0x9000ull
#define VMM_BOOT_PDPT      0xa000ull
#define VMM_BOOT_PD        0xb000ull /* four pages: 0-4 GiB in 2 MiB pages */
#define VMM_BOOT_CMDLINE   0x20000ull
#define VMM_BOOT_KERNEL    0x100000ull  /* protected-mode kernel; entry +0x200 */
#define VMM_BOOT_RUN_ADDR  0x1000000ull /* where the decompressor runs without KASLR */
#define VMM_EBDA           0x9fc00ull
#define VMM_BIOS_AREA      0xe0000ull /* RSDP, ACPI tables: reserved in e820 */
#define VMM_HIGH_RAM       0x100000000ull

/* Guest RAM as host buffers: [0, low_size) and [4 GiB, 4 GiB + high_size). */
struct vmm_guest_ram {
    uint8_t *low;
    uint64_t low_size;
    uint8_t *high;
    uint64_t high_size;
};

/* What the setup header says (validated). */
struct vmm_bzimage {
    uint16_t version;
    uint8_t setup_sects;
    uint8_t loadflags;
    uint16_t xloadflags;
    uint32_t initrd_addr_max;
    uint32_t kernel_alignment;
    uint8_t relocatable;
    uint32_t cmdline_size;
    uint64_t pref_address;
    uint32_t init_size;
    size_t payload_off, payload_len; /* the protected-mode kernel in the file */
    size_t hdr_end;                  /* setup header bytes 0x1F1..hdr_end */
};

/* -ENOEXEC with a reason for anything that is not a usable 64-bit bzImage. */
int vmm_bzimage_parse(const uint8_t *img, size_t len, struct vmm_bzimage *out, char *err,
                      size_t errlen);

#define E820_RAM      1
#define E820_RESERVED 2
struct vmm_e820 {
    uint64_t addr, size;
    uint32_t type;
};
/* The map the guest sees; returns the number of entries (at most 8). */
size_t vmm_e820_map(const struct vmm_guest_ram *ram, struct vmm_e820 *out);

struct vmm_boot_config {
    const uint8_t *kernel;
    size_t kernel_len;
    const uint8_t *initrd; /* NULL: none */
    size_t initrd_len;
    const char *cmdline; /* NULL: empty */
    uint64_t rsdp_gpa;   /* 0: none (the kernel scans the BIOS area) */
};

struct vmm_boot_info {
    struct vmm_bzimage hdr;
    uint64_t entry;     /* RIP */
    uint64_t zero_page; /* RSI */
    uint64_t initrd_gpa, initrd_size;
    uint64_t kernel_end; /* first byte above what the kernel may use before reading e820 */
};

/* Loads everything into ram. -ENOEXEC (bad image), -E2BIG (command line too
 * long, initrd does not fit), -ENOSPC (RAM too small for the kernel), with
 * the reason in err. */
int vmm_boot_load(const struct vmm_guest_ram *ram, const struct vmm_boot_config *c,
                  struct vmm_boot_info *out, char *err, size_t errlen);

/* The register state at the 64-bit entry; returns the count (<= 24). */
#define VMM_BOOT_NREGS 24
unsigned vmm_boot_regs(const struct vmm_boot_info *b, uint32_t *names, union hvp_reg_value *vals);

#endif
