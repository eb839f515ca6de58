/* The Linux boot protocol with the 64-bit entry (Documentation/arch/x86/
 * boot.rst; pc-machine.md section 1): the loader writes the protected-mode
 * kernel at 1 MiB, the zero page, the command line, the initrd high in low
 * RAM, a flat GDT and identity page tables, and the vCPU starts at
 * startup_64 (load address + 0x200) in long mode. */
#include "boot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Setup header offsets (in the file and in the zero page alike). */
#define H_SETUP_SECTS     0x1f1
#define H_SYSSIZE         0x1f4
#define H_BOOT_FLAG       0x1fe
#define H_JUMP            0x200
#define H_HEADER          0x202
#define H_VERSION         0x206
#define H_TYPE_OF_LOADER  0x210
#define H_LOADFLAGS       0x211
#define H_RAMDISK_IMAGE   0x218
#define H_RAMDISK_SIZE    0x21c
#define H_CMD_LINE_PTR    0x228
#define H_INITRD_ADDR_MAX 0x22c
#define H_KERNEL_ALIGN    0x230
#define H_RELOCATABLE     0x234
#define H_XLOADFLAGS      0x236
#define H_CMDLINE_SIZE    0x238
#define H_PREF_ADDRESS    0x258
#define H_INIT_SIZE       0x260
#define H_MAX_END         0x290 /* end of struct setup_header's slot in boot_params */

/* Zero page fields outside the header. */
#define BP_ACPI_RSDP      0x070
#define BP_EXT_RAMDISK    0x0c0
#define BP_EXT_RD_SIZE    0x0c4
#define BP_EXT_CMD_LINE   0x0c8
#define BP_E820_ENTRIES   0x1e8
#define BP_E820_TABLE     0x2d0
#define E820_MAX_ZEROPAGE 128

#define LOADED_HIGH   0x01
#define XLF_KERNEL_64 0x01

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}
static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)v), wr16(p + 2, (uint16_t)(v >> 16));
}
static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)v), wr32(p + 4, (uint32_t)(v >> 32));
}

int vmm_bzimage_parse(const uint8_t *img, size_t len, struct vmm_bzimage *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (len >= 4 && !memcmp(img, "\177ELF", 4)) {
        snprintf(err, errlen,
                 "not a bzImage: an ELF file (a vmlinux? boot the bzImage, "
                 "e.g. /boot/vmlinuz-*)");
        return -ENOEXEC;
    }
    if (len < H_MAX_END + 512) {
        snprintf(err, errlen,
                 "not a bzImage: %zu bytes, too small for a boot sector and setup "
                 "header",
                 len);
        return -ENOEXEC;
    }
    if (rd16(img + H_BOOT_FLAG) != 0xaa55) {
        snprintf(err, errlen, "not a bzImage: no boot sector signature (0xAA55 at 0x1FE)");
        return -ENOEXEC;
    }
    if (rd32(img + H_HEADER) != 0x53726448) {
        snprintf(err, errlen,
                 "not a bzImage: no setup header (\"HdrS\" at 0x202): a kernel "
                 "older than 2.0 or not a kernel");
        return -ENOEXEC;
    }
    out->version = rd16(img + H_VERSION);
    if (out->version < 0x020c) {
        snprintf(err, errlen,
                 "boot protocol %u.%02u is too old: the 64-bit entry needs 2.12 "
                 "(Linux 3.8) or later",
                 out->version >> 8, out->version & 0xff);
        return -ENOEXEC;
    }
    out->loadflags = img[H_LOADFLAGS];
    if (!(out->loadflags & LOADED_HIGH)) {
        snprintf(err, errlen, "not a bzImage: a zImage (loads below 1 MiB; LOADED_HIGH clear)");
        return -ENOEXEC;
    }
    out->xloadflags = rd16(img + H_XLOADFLAGS);
    if (!(out->xloadflags & XLF_KERNEL_64)) {
        snprintf(err, errlen, "no 64-bit entry point (XLF_KERNEL_64 clear): a 32-bit kernel?");
        return -ENOEXEC;
    }
    out->setup_sects = img[H_SETUP_SECTS] ? img[H_SETUP_SECTS] : 4;
    out->payload_off = ((size_t)out->setup_sects + 1) * 512;
    if (out->payload_off >= len) {
        snprintf(err, errlen, "truncated: the setup code takes %zu bytes, the file has %zu",
                 out->payload_off, len);
        return -ENOEXEC;
    }
    out->payload_len = len - out->payload_off;
    uint64_t syssize = (uint64_t)rd32(img + H_SYSSIZE) * 16;
    if (syssize > out->payload_len) {
        snprintf(err, errlen,
                 "truncated: the header says the kernel has %llu bytes, the file "
                 "holds %zu",
                 (unsigned long long)syssize, out->payload_len);
        return -ENOEXEC;
    }
    /* The header ends at the jump's target; clamp to its slot in
     * boot_params if the jump is not the expected short one. */
    out->hdr_end = img[H_JUMP] == 0xeb ? (size_t)0x202 + img[H_JUMP + 1] : H_MAX_END;
    if (out->hdr_end > H_MAX_END) out->hdr_end = H_MAX_END;
    out->initrd_addr_max = rd32(img + H_INITRD_ADDR_MAX);
    out->kernel_alignment = rd32(img + H_KERNEL_ALIGN);
    out->relocatable = img[H_RELOCATABLE];
    out->cmdline_size = rd32(img + H_CMDLINE_SIZE);
    out->pref_address = rd64(img + H_PREF_ADDRESS);
    out->init_size = rd32(img + H_INIT_SIZE);
    if (out->init_size == 0) {
        snprintf(err, errlen, "bad setup header: init_size is 0");
        return -ENOEXEC;
    }
    return 0;
}

size_t vmm_e820_map(const struct vmm_guest_ram *ram, struct vmm_e820 *out)
{
    size_t n = 0;
    out[n++] = (struct vmm_e820){0, VMM_EBDA, E820_RAM};
    out[n++] = (struct vmm_e820){VMM_EBDA, 0xa0000 - VMM_EBDA, E820_RESERVED};
    out[n++] = (struct vmm_e820){VMM_BIOS_AREA, 0x100000 - VMM_BIOS_AREA, E820_RESERVED};
    if (ram->low_size > 0x100000)
        out[n++] = (struct vmm_e820){0x100000, ram->low_size - 0x100000, E820_RAM};
    if (ram->high_size) out[n++] = (struct vmm_e820){VMM_HIGH_RAM, ram->high_size, E820_RAM};
    return n;
}

static void build_gdt(uint8_t *low)
{
    static const uint64_t gdt[4] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
    for (int i = 0; i < 4; i++)
        wr64(low + VMM_BOOT_GDT + 8 * i, gdt[i]);
}

/* PML4[0] -> PDPT[0..3] -> four PDs of 2 MiB pages: identity 0-4 GiB. */
static void build_page_tables(uint8_t *low)
{
    memset(low + VMM_BOOT_PML4, 0, 0x6000);
    wr64(low + VMM_BOOT_PML4, VMM_BOOT_PDPT | 0x3);
    for (uint64_t i = 0; i < 4; i++) {
        wr64(low + VMM_BOOT_PDPT + 8 * i, (VMM_BOOT_PD + i * 0x1000) | 0x3);
        for (uint64_t j = 0; j < 512; j++)
            wr64(low + VMM_BOOT_PD + i * 0x1000 + 8 * j, ((i * 512 + j) << 21) | 0x83);
    }
}

int vmm_boot_load(const struct vmm_guest_ram *ram, const struct vmm_boot_config *c,
                  struct vmm_boot_info *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct vmm_bzimage *h = &out->hdr;
    int r = vmm_bzimage_parse(c->kernel, c->kernel_len, h, err, errlen);
    if (r < 0) return r;
    uint8_t *low = ram->low;

    /* The kernel needs [1 MiB, +payload) for the image and [16 MiB,
     * +init_size) to decompress into (nokaslr; KASLR picks from e820). */
    uint64_t end = VMM_BOOT_KERNEL + h->payload_len;
    uint64_t run = VMM_BOOT_RUN_ADDR > h->pref_address ? VMM_BOOT_RUN_ADDR : h->pref_address;
    if (run + h->init_size > end) end = run + h->init_size;
    if (end > ram->low_size) {
        snprintf(err, errlen,
                 "memory too small: the kernel needs %llu MiB below the PCI hole, "
                 "the VM has %llu MiB there",
                 (unsigned long long)((end + (1 << 20) - 1) >> 20),
                 (unsigned long long)(ram->low_size >> 20));
        return -ENOSPC;
    }
    out->kernel_end = end;

    /* Command line: at most cmdline_size bytes plus the NUL. */
    const char *cmd = c->cmdline ? c->cmdline : "";
    size_t clen = strlen(cmd);
    size_t cmax = h->cmdline_size ? h->cmdline_size : 255;
    if (cmax > 0x9d000 - VMM_BOOT_CMDLINE - 1) cmax = 0x9d000 - VMM_BOOT_CMDLINE - 1;
    if (clen > cmax) {
        snprintf(err, errlen, "command line is %zu bytes; this kernel takes at most %zu", clen,
                 cmax);
        return -E2BIG;
    }

    /* initrd: as high as possible in low RAM, under initrd_addr_max, above
     * everything the kernel uses; page aligned. */
    if (c->initrd && c->initrd_len) {
        uint64_t top = ram->low_size;
        uint64_t lim = (uint64_t)h->initrd_addr_max + 1;
        if (h->initrd_addr_max && top > lim) top = lim;
        uint64_t size = c->initrd_len;
        uint64_t addr = size <= top ? (top - size) & ~0xfffull : 0;
        if (size > top || addr < end) {
            uint64_t room = top > end ? top - end : 0;
            snprintf(err, errlen,
                     "initrd does not fit in memory: %llu MiB needed, %llu MiB free "
                     "between the kernel (ends at %llu MiB) and %llu MiB; raise "
                     "--memory",
                     (unsigned long long)((size + (1 << 20) - 1) >> 20),
                     (unsigned long long)(room >> 20), (unsigned long long)(end >> 20),
                     (unsigned long long)(top >> 20));
            return -E2BIG;
        }
        memcpy(low + addr, c->initrd, size);
        out->initrd_gpa = addr;
        out->initrd_size = size;
    }

    memcpy(low + VMM_BOOT_KERNEL, c->kernel + h->payload_off, h->payload_len);
    memcpy(low + VMM_BOOT_CMDLINE, cmd, clen + 1);

    /* The zero page: zeros, the image's setup header, then our fields. */
    uint8_t *bp = low + VMM_BOOT_ZERO_PAGE;
    memset(bp, 0, 4096);
    memcpy(bp + H_SETUP_SECTS, c->kernel + H_SETUP_SECTS, h->hdr_end - H_SETUP_SECTS);
    bp[H_TYPE_OF_LOADER] = 0xff;
    wr32(bp + H_RAMDISK_IMAGE, (uint32_t)out->initrd_gpa);
    wr32(bp + H_RAMDISK_SIZE, (uint32_t)out->initrd_size);
    wr32(bp + BP_EXT_RAMDISK, (uint32_t)(out->initrd_gpa >> 32));
    wr32(bp + BP_EXT_RD_SIZE, (uint32_t)(out->initrd_size >> 32));
    wr32(bp + H_CMD_LINE_PTR, (uint32_t)VMM_BOOT_CMDLINE);
    wr32(bp + BP_EXT_CMD_LINE, 0);
    wr64(bp + BP_ACPI_RSDP, c->rsdp_gpa);
    struct vmm_e820 map[8];
    size_t n = vmm_e820_map(ram, map);
    bp[BP_E820_ENTRIES] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = bp + BP_E820_TABLE + 20 * i;
        wr64(e, map[i].addr);
        wr64(e + 8, map[i].size);
        wr32(e + 16, map[i].type);
    }

    build_gdt(low);
    build_page_tables(low);
    out->entry = VMM_BOOT_KERNEL + 0x200;
    out->zero_page = VMM_BOOT_ZERO_PAGE;
    return 0;
}

static struct hvp_segment seg(uint16_t sel, uint16_t attr)
{
    return (struct hvp_segment){
        .base = 0, .limit = 0xffffffff, .selector = sel, .attributes = attr};
}

unsigned vmm_boot_regs(const struct vmm_boot_info *b, uint32_t *names, union hvp_reg_value *vals)
{
    unsigned n = 0;
#define SET(name_, field_, value_)                                                                 \
    do {                                                                                           \
        names[n] = (name_);                                                                        \
        memset(&vals[n], 0, sizeof(vals[n]));                                                      \
        vals[n].field_ = (value_);                                                                 \
        n++;                                                                                       \
    } while (0)
    /* Control state first: a backend may check segments against it. */
    SET(HVP_REG_CR3, reg64, VMM_BOOT_PML4);
    SET(HVP_REG_CR4, reg64, 0x20);               /* PAE */
    SET(HVP_REG_EFER, reg64, 0x500);             /* LME, LMA */
    SET(HVP_REG_CR0, reg64, 0x80000011);         /* PG, ET, PE */
    SET(HVP_REG_CS, segment, seg(0x10, 0xa09b)); /* 64-bit code, DPL 0 */
    SET(HVP_REG_DS, segment, seg(0x18, 0xc093)); /* flat data */
    SET(HVP_REG_ES, segment, seg(0x18, 0xc093));
    SET(HVP_REG_SS, segment, seg(0x18, 0xc093));
    SET(HVP_REG_FS, segment, seg(0x18, 0xc093));
    SET(HVP_REG_GS, segment, seg(0x18, 0xc093));
    struct hvp_segment tr = {.base = 0, .limit = 0xffff, .selector = 0, .attributes = 0x8b};
    SET(HVP_REG_TR, segment, tr); /* busy 64-bit TSS: entry checks want one */
    struct hvp_segment ldt = {.base = 0, .limit = 0xffff, .selector = 0, .attributes = 0x82};
    SET(HVP_REG_LDTR, segment, ldt);
    struct hvp_table gdtr = {.limit = 4 * 8 - 1, .base = VMM_BOOT_GDT};
    SET(HVP_REG_GDTR, table, gdtr);
    struct hvp_table idtr = {.limit = 0, .base = 0};
    SET(HVP_REG_IDTR, table, idtr);
    SET(HVP_REG_RFLAGS, reg64, 0x2);
    SET(HVP_REG_RIP, reg64, b->entry);
    SET(HVP_REG_RSI, reg64, b->zero_page);
    SET(HVP_REG_RSP, reg64, VMM_BOOT_STACK);
    SET(HVP_REG_RBP, reg64, 0);
    SET(HVP_REG_RDI, reg64, 0);
    SET(HVP_REG_RAX, reg64, 0);
    SET(HVP_REG_RBX, reg64, 0);
#undef SET
    return n;
}
