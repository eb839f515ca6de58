/* 8259A pair: the sequences of Linux's arch/x86/kernel/i8259.c. */
#include <criterion/criterion.h>

#include "fake_machine.h"

/* init_8259A(0): mask all, ICW1-4 on both chips, vectors 0x30/0x38. */
static void linux_init(struct hvp_vm *vm)
{
    fake_outb(vm, 0x21, 0xFF);
    fake_outb(vm, 0xA1, 0xFF);
    fake_outb(vm, 0x20, 0x11);
    fake_outb(vm, 0x21, 0x30);
    fake_outb(vm, 0x21, 1 << 2);
    fake_outb(vm, 0x21, 0x01);
    fake_outb(vm, 0xA0, 0x11);
    fake_outb(vm, 0xA1, 0x38);
    fake_outb(vm, 0xA1, 2);
    fake_outb(vm, 0xA1, 0x01);
}

Test(pic, probe_reads_the_mask_back)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    cr_assert_not_null(pic);
    /* probe_8259A: a PIC whose IMR does not read back is "NULL legacy PIC". */
    fake_outb(vm, 0xA1, 0xFF);
    fake_outb(vm, 0x21, 0xFB);
    cr_assert_eq(fake_inb(vm, 0x21), 0xFB);
    cr_assert_eq(fake_inb(vm, 0xA1), 0xFF);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, init_mask_ack_eoi)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    linux_init(vm);
    fake_outb(vm, 0x21, 0xFB); /* only the cascade open */
    fake_outb(vm, 0xA1, 0xFF);
    vmm_pic_set_irq(pic, 0, true);
    vmm_pic_set_irq(pic, 0, false);
    cr_assert(!vmm_pic_intr(pic), "IRQ 0 is masked");
    fake_outb(vm, 0x20, 0x0A); /* OCW3: read IRR */
    cr_assert_eq(fake_inb(vm, 0x20), 0x01, "but requested (edge latched)");
    fake_outb(vm, 0x21, 0xFA); /* unmask IRQ 0 */
    cr_assert(vmm_pic_intr(pic));
    cr_assert_eq(vmm_pic_ack(pic), 0x30);
    cr_assert(!vmm_pic_intr(pic));
    fake_outb(vm, 0x20, 0x0B); /* read ISR */
    cr_assert_eq(fake_inb(vm, 0x20), 0x01);
    cr_assert_eq(fake_inb(vm, 0x20), 0x01, "the selection stays");
    fake_outb(vm, 0x20, 0x60); /* specific EOI IRQ 0, as mask_and_ack_8259A */
    cr_assert_eq(fake_inb(vm, 0x20), 0x00);
    fake_outb(vm, 0x20, 0x0A);
    cr_assert_eq(fake_inb(vm, 0x20), 0x00, "IRR cleared by the acknowledge");
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, priorities_and_nesting)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    linux_init(vm);
    fake_outb(vm, 0x21, 0x00);
    fake_outb(vm, 0xA1, 0x00);
    vmm_pic_set_irq(pic, 4, true);
    vmm_pic_set_irq(pic, 3, true);
    cr_assert_eq(vmm_pic_ack(pic), 0x33, "IRQ 3 beats IRQ 4");
    cr_assert(!vmm_pic_intr(pic), "IRQ 4 waits while 3 is in service");
    vmm_pic_set_irq(pic, 1, true);
    cr_assert(vmm_pic_intr(pic), "IRQ 1 nests over 3");
    cr_assert_eq(vmm_pic_ack(pic), 0x31);
    fake_outb(vm, 0x20, 0x20); /* non-specific EOI ends the highest: 1 */
    fake_outb(vm, 0x20, 0x0B);
    cr_assert_eq(fake_inb(vm, 0x20), 0x08);
    cr_assert(!vmm_pic_intr(pic));
    fake_outb(vm, 0x20, 0x20);
    cr_assert_eq(vmm_pic_ack(pic), 0x34);
    fake_outb(vm, 0x20, 0x20);
    /* Slave IRQ 12 arrives through the cascade with the slave's vector. */
    vmm_pic_set_irq(pic, 12, true);
    vmm_pic_set_irq(pic, 12, false);
    cr_assert(vmm_pic_intr(pic));
    cr_assert_eq(vmm_pic_ack(pic), 0x3C);
    fake_outb(vm, 0xA0, 0x0B);
    cr_assert_eq(fake_inb(vm, 0xA0), 0x10);
    fake_outb(vm, 0x20, 0x0B);
    cr_assert_eq(fake_inb(vm, 0x20), 0x04, "cascade in service on the master");
    fake_outb(vm, 0xA0, 0x64); /* specific EOI 4 on the slave, 2 on the master */
    fake_outb(vm, 0x20, 0x62);
    cr_assert_eq(fake_inb(vm, 0xA0), 0);
    cr_assert_eq(fake_inb(vm, 0x20), 0);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, spurious_irq7_and_irq15)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    linux_init(vm);
    fake_outb(vm, 0x21, 0x00);
    fake_outb(vm, 0xA1, 0x00);
    /* Nothing pending at acknowledge time: IRQ 7's vector, ISR untouched. */
    cr_assert_eq(vmm_pic_ack(pic), 0x37);
    fake_outb(vm, 0x20, 0x0B);
    cr_assert_eq(fake_inb(vm, 0x20), 0, "a spurious IRQ 7 sets no ISR bit");
    /* ELCR: IRQ 10 level; it goes away before the slave is acknowledged. */
    fake_outb(vm, 0x4D1, 0x04);
    vmm_pic_set_irq(pic, 10, true);
    cr_assert(vmm_pic_intr(pic));
    fake_outb(vm, 0xA1, 0x04); /* the slave masks it between INTR and INTA */
    cr_assert_eq(vmm_pic_ack(pic), 0x3F, "spurious IRQ 15");
    fake_outb(vm, 0xA0, 0x0B);
    cr_assert_eq(fake_inb(vm, 0xA0), 0);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, elcr_level_mode)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    linux_init(vm);
    fake_outb(vm, 0x21, 0x00);
    fake_outb(vm, 0xA1, 0x00);
    cr_assert_eq(fake_inb(vm, 0x4D0), 0);
    fake_outb(vm, 0x4D0, 0xFF);
    cr_assert_eq(fake_inb(vm, 0x4D0), 0xF8, "IRQ 0-2 cannot be level");
    fake_out(vm, 0x4D0, 2, 0x0200);
    cr_assert_eq(fake_in(vm, 0x4D0, 2), 0x0200, "SCI (IRQ 9) level, word access");
    vmm_pic_set_irq(pic, 9, true);
    cr_assert_eq(vmm_pic_ack(pic), 0x39);
    fake_outb(vm, 0xA0, 0x20);
    fake_outb(vm, 0x20, 0x20);
    cr_assert(vmm_pic_intr(pic), "level still high: requested again after EOI");
    cr_assert_eq(vmm_pic_ack(pic), 0x39);
    vmm_pic_set_irq(pic, 9, false);
    fake_outb(vm, 0xA0, 0x20);
    fake_outb(vm, 0x20, 0x20);
    cr_assert(!vmm_pic_intr(pic), "line low: no more requests");
    /* An edge IRQ pulsed is remembered; a level one dropped is not. */
    fake_outb(vm, 0xA0, 0x0A);
    cr_assert_eq(fake_inb(vm, 0xA0), 0);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, auto_eoi_rotate_poll_special_mask)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    /* Auto-EOI: ICW4 bit 1. */
    fake_outb(vm, 0x20, 0x11);
    fake_outb(vm, 0x21, 0x20);
    fake_outb(vm, 0x21, 0x04);
    fake_outb(vm, 0x21, 0x03);
    fake_outb(vm, 0x21, 0x00);
    vmm_pic_set_irq(pic, 5, true);
    cr_assert_eq(vmm_pic_ack(pic), 0x25);
    fake_outb(vm, 0x20, 0x0B);
    cr_assert_eq(fake_inb(vm, 0x20), 0, "no ISR bit in auto-EOI mode");
    vmm_pic_set_irq(pic, 5, false);

    /* Rotation: "set priority" to make IRQ 4 the lowest (5 the highest). */
    fake_outb(vm, 0x20, 0xC4);
    vmm_pic_set_irq(pic, 3, true);
    vmm_pic_set_irq(pic, 6, true);
    cr_assert_eq(vmm_pic_ack(pic), 0x26, "after rotation 6 outranks 3");
    cr_assert_eq(vmm_pic_ack(pic), 0x23);

    /* Poll mode: OCW3 with P set, the next read acknowledges. */
    fake_outb(vm, 0x20, 0x0C);
    cr_assert_eq(fake_inb(vm, 0x20), 0x00, "nothing pending: bit 7 clear");
    vmm_pic_set_irq(pic, 1, true);
    fake_outb(vm, 0x20, 0x0C);
    cr_assert_eq(fake_inb(vm, 0x20), 0x81);
    cr_assert(!vmm_pic_intr(pic));

    /* Special mask mode lets a lower IRQ in while a masked higher one is in service. */
    fake_outb(vm, 0x20, 0x11);
    fake_outb(vm, 0x21, 0x20);
    fake_outb(vm, 0x21, 0x04);
    fake_outb(vm, 0x21, 0x01);
    fake_outb(vm, 0x21, 0x00);
    vmm_pic_set_irq(pic, 3, false);
    vmm_pic_set_irq(pic, 3, true);
    cr_assert_eq(vmm_pic_ack(pic), 0x23);
    vmm_pic_set_irq(pic, 6, false);
    vmm_pic_set_irq(pic, 6, true);
    cr_assert(!vmm_pic_intr(pic), "6 blocked by 3 in service");
    fake_outb(vm, 0x21, 0x08); /* mask 3 */
    fake_outb(vm, 0x20, 0x68); /* OCW3: set special mask */
    cr_assert(vmm_pic_intr(pic));
    cr_assert_eq(vmm_pic_ack(pic), 0x26);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

struct intr_log {
    struct vmm_pic *pic;
    bool levels[16];
    unsigned n;
    bool ack_on_rise; /* like an IOAPIC ExtINT entry */
    uint8_t vectors[16];
    unsigned nvec;
};

static void on_intr(void *ctx, bool level)
{
    struct intr_log *l = ctx;
    if (l->n < 16) l->levels[l->n] = level;
    l->n++;
    if (level && l->ack_on_rise && l->nvec < 16) l->vectors[l->nvec++] = vmm_pic_ack(l->pic);
}

Test(pic, intr_notify_follows_guest_writes)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    struct intr_log log = {.pic = pic};
    linux_init(vm);
    fake_outb(vm, 0x21, 0xFB); /* masks restored after init, as Linux does */
    vmm_pic_set_intr_notify(pic, on_intr, &log);
    vmm_pic_set_irq(pic, 3, true);
    cr_assert_eq(log.n, 0, "masked: INTR stays low");
    fake_outb(vm, 0x21, 0x00); /* unmasking raises INTR: the machine must hear it */
    cr_assert_eq(log.n, 1);
    cr_assert(log.levels[0]);
    vmm_pic_set_irq(pic, 4, true);
    cr_assert_eq(log.n, 1, "already high");
    cr_assert_eq(vmm_pic_ack(pic), 0x33);
    cr_assert_eq(log.n, 2);
    cr_assert(!log.levels[1], "4 waits behind 3 in service");
    fake_outb(vm, 0x20, 0x63); /* the EOI lets 4 through */
    cr_assert_eq(log.n, 3);
    cr_assert(log.levels[2]);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}

Test(pic, intr_notify_may_acknowledge)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    struct intr_log log = {.pic = pic, .ack_on_rise = true};
    linux_init(vm);
    fake_outb(vm, 0x21, 0x00);
    fake_outb(vm, 0xA1, 0x00);
    vmm_pic_set_intr_notify(pic, on_intr, &log);
    vmm_pic_set_irq(pic, 1, true);
    cr_assert_eq(log.nvec, 1);
    cr_assert_eq(log.vectors[0], 0x31);
    cr_assert(!vmm_pic_intr(pic));
    cr_assert_eq(log.n, 2, "rise, then the nested fall from the acknowledge");
    cr_assert(log.levels[0] && !log.levels[1]);
    vmm_pic_set_irq(pic, 9, true); /* through the cascade: nested acknowledge of the slave */
    cr_assert_eq(log.nvec, 1, "blocked: 1 is in service and outranks the cascade");
    fake_outb(vm, 0x20, 0x20);
    cr_assert_eq(log.nvec, 2);
    cr_assert_eq(log.vectors[1], 0x39);
    vmm_pic_free(pic);
    fake_vm_free(vm);
}
