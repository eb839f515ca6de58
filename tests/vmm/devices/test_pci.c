/* PCI configuration mechanism #1: what Linux's arch/x86/pci/direct.c and
 * the bus scan rely on. */
#include <criterion/criterion.h>
#include <errno.h>

#include "fake_machine.h"

static uint32_t cfg_addr(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
    return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC);
}

static uint32_t cfg_read(struct hvp_vm *vm, unsigned bus, unsigned dev, unsigned fn, unsigned reg,
                         unsigned size)
{
    fake_out(vm, 0xCF8, 4, cfg_addr(bus, dev, fn, reg));
    return (uint32_t)fake_in(vm, 0xCFC + (reg & 3), size);
}

static void cfg_write(struct hvp_vm *vm, unsigned dev, unsigned fn, unsigned reg, unsigned size,
                      uint32_t v)
{
    fake_out(vm, 0xCF8, 4, cfg_addr(0, dev, fn, reg));
    fake_out(vm, 0xCFC + (reg & 3), size, v);
}

Test(pci, type1_probe_and_host_bridge)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pci *pci = vmm_pci_new(vm);
    cr_assert_not_null(pci);
    /* pci_check_type1: outb(1, 0xCFB); save; outl(0x80000000); read back. */
    fake_outb(vm, 0xCFB, 0x01);
    uint32_t saved = (uint32_t)fake_in(vm, 0xCF8, 4);
    fake_out(vm, 0xCF8, 4, 0x80000000);
    cr_assert_eq(fake_in(vm, 0xCF8, 4), 0x80000000);
    fake_out(vm, 0xCF8, 4, saved);
    /* Mechanism #2's probe (bytes at 0xCF8/0xCFA reading 0) must fail. */
    fake_outb(vm, 0xCF8, 0);
    fake_outb(vm, 0xCFA, 0);
    cr_assert(fake_inb(vm, 0xCF8) != 0 || fake_inb(vm, 0xCFA) != 0);

    cr_assert_eq(cfg_read(vm, 0, 0, 0, 0, 4),
                 (uint32_t)VMM_PCI_HOST_DEVICE << 16 | VMM_PCI_HOST_VENDOR);
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 0x0A, 2), 0x0600, "class: host bridge");
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 0x0E, 1) & 0x7F, 0, "header type 0");
    /* Byte and word accesses at every offset of CONFIG_DATA. */
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 0, 1), VMM_PCI_HOST_VENDOR & 0xFF);
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 1, 1), VMM_PCI_HOST_VENDOR >> 8);
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 2, 2), VMM_PCI_HOST_DEVICE);
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 3, 1), VMM_PCI_HOST_DEVICE >> 8);
    vmm_pci_free(pci);
    fake_vm_free(vm);
}

Test(pci, enumeration_finds_only_the_host_bridge)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pci *pci = vmm_pci_new(vm);
    unsigned found = 0;
    for (unsigned bus = 0; bus < 4; bus++)
        for (unsigned dev = 0; dev < 32; dev++)
            for (unsigned fn = 0; fn < 8; fn++) {
                uint32_t id = cfg_read(vm, bus, dev, fn, 0, 4);
                if (id != 0xFFFFFFFFu) {
                    found++;
                    cr_assert(bus == 0 && dev == 0 && fn == 0);
                } else {
                    cr_assert_eq(cfg_read(vm, bus, dev, fn, 0, 2), 0xFFFF);
                    cr_assert_eq(cfg_read(vm, bus, dev, fn, 0x3D, 1), 0xFF);
                }
            }
    cr_assert_eq(found, 1);
    /* With the enable bit clear, CONFIG_DATA reads all ones. */
    fake_out(vm, 0xCF8, 4, 0);
    cr_assert_eq(fake_in(vm, 0xCFC, 4), 0xFFFFFFFFu);
    /* Writes to absent functions and read-only IDs change nothing. */
    cfg_write(vm, 5, 0, 0, 4, 0x12345678);
    cr_assert_eq(cfg_read(vm, 0, 5, 0, 0, 4), 0xFFFFFFFFu);
    cfg_write(vm, 0, 0, 0, 4, 0x12345678);
    cr_assert_eq(cfg_read(vm, 0, 0, 0, 0, 2), VMM_PCI_HOST_VENDOR);
    vmm_pci_free(pci);
    fake_vm_free(vm);
}

struct fake_dev {
    uint64_t last_off;
    uint32_t reg40;
};

static uint64_t bar_read(void *dev, uint64_t offset, unsigned size)
{
    (void)size;
    ((struct fake_dev *)dev)->last_off = offset;
    return 0xA5;
}

static void bar_write(void *dev, uint64_t offset, unsigned size, uint64_t v)
{
    (void)size;
    (void)v;
    ((struct fake_dev *)dev)->last_off = offset;
}

static uint32_t dev_cfg_read(void *dev, unsigned off, unsigned size)
{
    (void)size;
    return off == 0x40 ? ((struct fake_dev *)dev)->reg40 : 0;
}

static void dev_cfg_write(void *dev, unsigned off, unsigned size, uint32_t v)
{
    (void)size;
    if (off == 0x40) ((struct fake_dev *)dev)->reg40 = v;
}

static const struct vmm_io_ops bar_ops = {bar_read, bar_write};

Test(pci, registered_function_bars_size_and_map)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pci *pci = vmm_pci_new(vm);
    struct fake_dev d = {0};
    struct vmm_pci_func f = {
        .vendor = 0x1AF4,
        .device = 0x1000,
        .class_code = 0x02,
        .irq_pin = 1,
        .bars = {{.size = 32, .space = VMM_PIO, .ops = &bar_ops, .name = "io"},
                 {.size = 4096, .space = VMM_MMIO, .ops = &bar_ops, .name = "mem"}},
        .cfg_read = dev_cfg_read,
        .cfg_write = dev_cfg_write,
        .dev = &d,
    };
    cr_assert_eq(vmm_pci_register(pci, 3 << 3, &f), 0);
    cr_assert_eq(vmm_pci_register(pci, 3 << 3, &f), -EEXIST);
    cr_assert_eq(vmm_pci_register(pci, 0, &f), -EEXIST, "the host bridge holds 00:00.0");
    struct vmm_pci_func bad = f;
    bad.bars[0].size = 24;
    cr_assert_eq(vmm_pci_register(pci, 4 << 3, &bad), -EINVAL);

    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0, 4), 0x10001AF4u);
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x3D, 1), 1);
    /* BAR sizing as Linux does it: write ones, read the mask, restore. */
    cfg_write(vm, 3, 0, 0x10, 4, 0xFFFFFFFF);
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x10, 4), 0xFFFFFFE1u, "32-byte I/O BAR");
    cfg_write(vm, 3, 0, 0x14, 4, 0xFFFFFFFF);
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x14, 4), 0xFFFFF000u, "4 KiB memory BAR");
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x18, 4), 0, "unused BAR");
    cfg_write(vm, 3, 0, 0x10, 4, 0xC000);
    cfg_write(vm, 3, 0, 0x14, 4, 0xFEB00000);
    cr_assert(!fake_claimed(vm, VMM_PIO, 0xC000, 32), "no decode before COMMAND enables it");
    cfg_write(vm, 3, 0, 0x04, 2, 0x0003);
    cr_assert(fake_claimed(vm, VMM_PIO, 0xC000, 32));
    cr_assert(fake_claimed(vm, VMM_MMIO, 0xFEB00000, 4096));
    cr_assert_eq(fake_inb(vm, 0xC004), 0xA5);
    cr_assert_eq(d.last_off, 4);
    fake_mmio_write(vm, 0xFEB00010, 4, 1);
    cr_assert_eq(d.last_off, 0x10);
    /* Moving the BAR moves the claim. */
    cfg_write(vm, 3, 0, 0x10, 4, 0xD000);
    cr_assert(!fake_claimed(vm, VMM_PIO, 0xC000, 1));
    cr_assert(fake_claimed(vm, VMM_PIO, 0xD000, 32));
    /* Clearing the decode bits releases them. */
    cfg_write(vm, 3, 0, 0x04, 2, 0);
    cr_assert(!fake_claimed(vm, VMM_PIO, 0xD000, 1));
    cr_assert(!fake_claimed(vm, VMM_MMIO, 0xFEB00000, 1));
    /* Interrupt line is writable; device-specific space goes to the hooks. */
    cfg_write(vm, 3, 0, 0x3C, 1, 11);
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x3C, 1), 11);
    cfg_write(vm, 3, 0, 0x40, 4, 0xCAFE);
    cr_assert_eq(cfg_read(vm, 0, 3, 0, 0x40, 4), 0xCAFE);
    cr_assert_eq(vmm_pci_intx_gsi(3, 1), 19);
    vmm_pci_free(pci);
    fake_vm_free(vm);
}

Test(pci, multifunction_bit_follows_registered_functions)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pci *pci = vmm_pci_new(vm);
    struct vmm_pci_func f = {.vendor = 0x8086, .device = 0x7000};
    cr_assert_eq(vmm_pci_register(pci, 1 << 3, &f), 0);
    cr_assert_eq(cfg_read(vm, 0, 1, 0, 0x0E, 1) & 0x80, 0);
    cr_assert_eq(vmm_pci_register(pci, 1 << 3 | 1, &f), 0);
    cr_assert_eq(cfg_read(vm, 0, 1, 0, 0x0E, 1) & 0x80, 0x80);
    vmm_pci_free(pci);
    fake_vm_free(vm);
}
