/* IOAPIC: the register interface of io_apic.c and delivery semantics. */
#include <criterion/criterion.h>

#include "fake_machine.h"

#define BASE 0xFEC00000u

static uint32_t rd(struct hvp_vm *vm, unsigned reg)
{
    fake_mmio_write(vm, BASE, 4, reg);
    return (uint32_t)fake_mmio_read(vm, BASE + 0x10, 4);
}

static void wr(struct hvp_vm *vm, unsigned reg, uint32_t v)
{
    fake_mmio_write(vm, BASE, 4, reg);
    fake_mmio_write(vm, BASE + 0x10, 4, v);
}

static void set_rte(struct hvp_vm *vm, unsigned pin, uint64_t e)
{
    /* Linux writes the high half first, then the low one (which unmasks). */
    wr(vm, 0x11 + 2 * pin, (uint32_t)(e >> 32));
    wr(vm, 0x10 + 2 * pin, (uint32_t)e);
}

static uint64_t get_rte(struct hvp_vm *vm, unsigned pin)
{
    return (uint64_t)rd(vm, 0x11 + 2 * pin) << 32 | rd(vm, 0x10 + 2 * pin);
}

Test(ioapic, registers)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_ioapic *io = vmm_ioapic_new(vm);
    cr_assert_not_null(io);
    uint32_t ver = rd(vm, 1);
    cr_assert_eq(ver & 0xFF, 0x20);
    cr_assert_eq((ver >> 16) & 0xFF, 23, "24 entries");
    for (unsigned pin = 0; pin < 24; pin++)
        cr_assert_eq(get_rte(vm, pin), 1ull << 16, "reset: masked");
    wr(vm, 0, 2u << 24);
    cr_assert_eq(rd(vm, 0), 2u << 24, "ID");
    /* Writable fields read back; delivery status and Remote IRR do not. */
    set_rte(vm, 5,
            0xFF00000000000000ull | 1 << 16 | 1 << 15 | 1 << 14 | 1 << 13 | 1 << 12 | 1 << 11 |
                1 << 8 | 0x41);
    cr_assert_eq(get_rte(vm, 5),
                 0xFF00000000000000ull | 1 << 16 | 1 << 15 | 1 << 13 | 1 << 11 | 1 << 8 | 0x41);
    cr_assert_eq(fake_mmio_read(vm, BASE, 4), 0x10 + 2 * 5, "IOREGSEL reads back");
    cr_assert_eq(vm->nirqs, 0);
    vmm_ioapic_free(io);
    fake_vm_free(vm);
}

Test(ioapic, edge_delivery_and_masks)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_ioapic *io = vmm_ioapic_new(vm);
    set_rte(vm, 4, 0x0100000000000000ull | 0x24); /* fixed, physical, APIC 1, edge */
    vmm_ioapic_set_irq(io, 4, true);
    vmm_ioapic_set_irq(io, 4, true); /* no new edge */
    cr_assert_eq(vm->nirqs, 1);
    cr_assert_eq(vm->irqs[0].vector, 0x24);
    cr_assert_eq(vm->irqs[0].destination, 1);
    cr_assert_eq(vm->irqs[0].type, HVP_INTERRUPT_FIXED);
    cr_assert_eq(vm->irqs[0].level_triggered, 0);
    cr_assert_eq(vm->irqs[0].logical_dest, 0);
    vmm_ioapic_set_irq(io, 4, false);
    vmm_ioapic_set_irq(io, 4, true);
    cr_assert_eq(vm->nirqs, 2, "each rising edge");
    vmm_ioapic_set_irq(io, 4, false);
    /* Masked: the edge is lost, and unmasking does not replay it. */
    set_rte(vm, 4, 0x0100000000000000ull | 1 << 16 | 0x24);
    vmm_ioapic_set_irq(io, 4, true);
    vmm_ioapic_set_irq(io, 4, false);
    set_rte(vm, 4, 0x0100000000000000ull | 0x24);
    cr_assert_eq(vm->nirqs, 2);
    /* Logical destination, lowest priority, NMI and INIT modes. */
    set_rte(vm, 6, 0x0300000000000000ull | 1 << 11 | 1 << 8 | 0x30);
    vmm_ioapic_set_irq(io, 6, true);
    cr_assert_eq(vm->irqs[2].type, HVP_INTERRUPT_LOWEST_PRIORITY);
    cr_assert_eq(vm->irqs[2].logical_dest, 1);
    cr_assert_eq(vm->irqs[2].destination, 3);
    set_rte(vm, 7, 4 << 8);
    vmm_ioapic_set_irq(io, 7, true);
    cr_assert_eq(vm->irqs[3].type, HVP_INTERRUPT_NMI);
    set_rte(vm, 8, 5 << 8);
    vmm_ioapic_set_irq(io, 8, true);
    cr_assert_eq(vm->irqs[4].type, HVP_INTERRUPT_INIT);
    cr_assert_eq(vm->nirqs, 5);
    vmm_ioapic_set_irq(io, 99, true); /* out of range: ignored */
    vmm_ioapic_free(io);
    fake_vm_free(vm);
}

Test(ioapic, level_remote_irr_and_eoi)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_ioapic *io = vmm_ioapic_new(vm);
    set_rte(vm, 9, 1 << 15 | 0x39); /* the SCI: level */
    vmm_ioapic_set_irq(io, 9, true);
    cr_assert_eq(vm->nirqs, 1);
    cr_assert_eq(vm->irqs[0].level_triggered, 1);
    cr_assert_eq(get_rte(vm, 9) & 1 << 14, 1 << 14, "Remote IRR set");
    vmm_ioapic_set_irq(io, 9, true);
    cr_assert_eq(vm->nirqs, 1, "no delivery while an EOI is owed");
    /* EOI with the line still high: delivered again. */
    vmm_ioapic_eoi(io, 0x39);
    cr_assert_eq(vm->nirqs, 2);
    /* Line dropped before the EOI: the EOI clears Remote IRR, nothing more. */
    vmm_ioapic_set_irq(io, 9, false);
    vmm_ioapic_eoi(io, 0x39);
    cr_assert_eq(vm->nirqs, 2);
    cr_assert_eq(get_rte(vm, 9) & 1 << 14, 0);
    /* EOI of another vector changes nothing; the EOI register (0x40) works. */
    vmm_ioapic_set_irq(io, 9, true);
    cr_assert_eq(vm->nirqs, 3);
    vmm_ioapic_eoi(io, 0x40);
    cr_assert_eq(vm->nirqs, 3);
    fake_mmio_write(vm, BASE + 0x40, 4, 0x39);
    cr_assert_eq(vm->nirqs, 4);
    /* A level line asserted while masked is delivered on unmask. */
    set_rte(vm, 10, 1 << 16 | 1 << 15 | 0x3A);
    vmm_ioapic_set_irq(io, 10, true);
    cr_assert_eq(vm->nirqs, 4);
    set_rte(vm, 10, 1 << 15 | 0x3A);
    cr_assert_eq(vm->nirqs, 5);
    cr_assert_eq(vm->irqs[4].vector, 0x3A);
    /* Linux's stuck-IRR cleanup: rewrite as edge+masked, then restore. */
    set_rte(vm, 10, 1 << 16 | 0x3A);
    cr_assert_eq(get_rte(vm, 10) & 1 << 14, 0, "switching to edge clears Remote IRR");
    vmm_ioapic_set_irq(io, 10, false);
    set_rte(vm, 10, 1 << 15 | 0x3A);
    cr_assert_eq(vm->nirqs, 5);
    vmm_ioapic_free(io);
    fake_vm_free(vm);
}

Test(ioapic, extint_takes_the_vector_from_the_pic)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_ioapic *io = vmm_ioapic_new(vm);
    struct vmm_pic *pic = vmm_pic_new(vm);
    vmm_ioapic_set_pic(io, pic);
    /* PIC initialised like Linux, IRQ 0 open. */
    static const uint8_t init[][2] = {{0x20, 0x11}, {0x21, 0x30}, {0x21, 0x04}, {0x21, 0x01},
                                      {0xA0, 0x11}, {0xA1, 0x38}, {0xA1, 0x02}, {0xA1, 0x01},
                                      {0x21, 0xFE}, {0xA1, 0xFF}};
    for (unsigned i = 0; i < sizeof init / sizeof init[0]; i++)
        fake_outb(vm, init[i][0], init[i][1]);
    set_rte(vm, 0, 7 << 8); /* ExtINT */
    vmm_pic_set_irq(pic, 0, true);
    vmm_ioapic_set_irq(io, 0, vmm_pic_intr(pic));
    cr_assert_eq(vm->nirqs, 1);
    cr_assert_eq(vm->irqs[0].vector, 0x30);
    cr_assert_eq(vm->irqs[0].type, HVP_INTERRUPT_FIXED);
    fake_outb(vm, 0x20, 0x0B);
    cr_assert_eq(fake_inb(vm, 0x20), 0x01, "the PIC was acknowledged");
    vmm_pic_free(pic);
    vmm_ioapic_free(io);
    fake_vm_free(vm);
}
