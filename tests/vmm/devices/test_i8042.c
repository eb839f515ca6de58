/* i8042: the sequences of Linux's serio/i8042 and atkbd, and the resets. */
#include <criterion/criterion.h>

#include "fake_machine.h"

/* What i8042_command does: write the command, then read each reply once
 * the output buffer is full. Returns how many replies were available. */
static unsigned command(struct hvp_vm *vm, uint8_t cmd, const uint8_t *params, unsigned np,
                        uint8_t *replies, unsigned nr)
{
    fake_outb(vm, 0x64, cmd);
    for (unsigned i = 0; i < np; i++) {
        cr_assert_eq(fake_inb(vm, 0x64) & 2, 0, "input buffer never stays full");
        fake_outb(vm, 0x60, params[i]);
    }
    unsigned got = 0;
    while (got < nr && (fake_inb(vm, 0x64) & 1))
        replies[got++] = fake_inb(vm, 0x60);
    return got;
}

Test(i8042, controller_probe_like_linux)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_i8042 *k = vmm_i8042_new(vm);
    cr_assert_not_null(k);
    cr_assert_neq(fake_inb(vm, 0x64), 0xFF, "0xFF status means no controller");
    uint8_t r[4];
    cr_assert_eq(command(vm, 0xAA, NULL, 0, r, 1), 1);
    cr_assert_eq(r[0], 0x55, "self test passes");
    cr_assert_eq(fake_inb(vm, 0x64) & 4, 4, "system flag after self test");
    cr_assert_eq(command(vm, 0x20, NULL, 0, r, 1), 1);
    uint8_t ctr = r[0];
    cr_assert_eq(ctr & 0x40, 0x40, "translation on, as firmware leaves it");
    /* Write the configuration byte back with interrupts off and read it. */
    uint8_t newctr = ctr & (uint8_t)~1;
    command(vm, 0x60, &newctr, 1, r, 0);
    cr_assert_eq(command(vm, 0x20, NULL, 0, r, 1), 1);
    cr_assert_eq(r[0], newctr);
    /* AUX loopback: no AUX port, so the byte comes back without AUXDATA
     * (Linux's "auxerr"), and the AUX test then fails at once. */
    uint8_t p = 0x5A;
    fake_outb(vm, 0x64, 0xD3);
    fake_outb(vm, 0x60, p);
    cr_assert_eq(fake_inb(vm, 0x64) & 0x21, 0x01);
    cr_assert_eq(command(vm, 0xA9, NULL, 0, r, 1), 1);
    cr_assert(r[0] != 0 && r[0] != 0xFA && r[0] != 0xFF);
    cr_assert_eq(fake_inb(vm, 0x64) & 1, 0, "nothing stale left behind");
    cr_assert_eq(vm->stop, VMM_STOP_NONE);
    vmm_i8042_free(k);
    fake_vm_free(vm);
}

Test(i8042, keyboard_answers_atkbd_probe_with_interrupts)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_i8042 *k = vmm_i8042_new(vm);
    uint8_t r[4];
    uint8_t ctr = 0x47; /* KBDINT | SYS | XLATE | AUXINT */
    command(vm, 0x60, &ctr, 1, r, 0);
    unsigned edges = vm->edges[1];
    fake_outb(vm, 0x60, 0xF2); /* GETID */
    cr_assert_eq(vm->edges[1], edges + 1, "IRQ 1 for the first byte");
    uint8_t id[3];
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(fake_inb(vm, 0x64) & 1, 1);
        id[i] = fake_inb(vm, 0x60);
    }
    cr_assert_eq(vm->edges[1], edges + 3, "one interrupt per byte");
    cr_assert_eq(id[0], 0xFA);
    cr_assert_eq(id[1], 0xAB);
    cr_assert_eq(id[2], 0x83);
    fake_outb(vm, 0x60, 0xFF); /* reset: ACK then BAT OK */
    cr_assert_eq(fake_inb(vm, 0x60), 0xFA);
    cr_assert_eq(fake_inb(vm, 0x60), 0xAA);
    fake_outb(vm, 0x60, 0xED); /* LEDs take a parameter */
    cr_assert_eq(fake_inb(vm, 0x60), 0xFA);
    fake_outb(vm, 0x60, 0x02);
    cr_assert_eq(fake_inb(vm, 0x60), 0xFA);
    cr_assert_eq(fake_inb(vm, 0x64) & 1, 0);
    fake_outb(vm, 0x60, 0x01); /* nonsense: resend */
    cr_assert_eq(fake_inb(vm, 0x60), 0xFE);
    vmm_i8042_free(k);
    fake_vm_free(vm);
}

Test(i8042, pulse_reset_stops_the_machine)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_i8042 *k = vmm_i8042_new(vm);
    /* Linux's kb_wait: input buffer empty before writing the command. */
    cr_assert_eq(fake_inb(vm, 0x64) & 2, 0);
    fake_outb(vm, 0x64, 0xFE);
    cr_assert_eq(vm->stop, VMM_STOP_RESET);
    vmm_i8042_free(k);
    fake_vm_free(vm);
}

Test(i8042, output_port_reset_bit)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_i8042 *k = vmm_i8042_new(vm);
    uint8_t r[1];
    cr_assert_eq(command(vm, 0xD0, NULL, 0, r, 1), 1);
    cr_assert_eq(r[0] & 3, 3, "reset line high, A20 on");
    uint8_t v = 0x03;
    command(vm, 0xD1, &v, 1, r, 0);
    cr_assert_eq(vm->stop, VMM_STOP_NONE);
    v = 0x02;
    command(vm, 0xD1, &v, 1, r, 0);
    cr_assert_eq(vm->stop, VMM_STOP_RESET);
    vmm_i8042_free(k);
    fake_vm_free(vm);
}

Test(i8042, port92_fast_reset)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_i8042 *k = vmm_i8042_new(vm);
    cr_assert_eq(fake_inb(vm, 0x92), 0x02, "A20 on");
    fake_outb(vm, 0x92, 0x02);
    cr_assert_eq(vm->stop, VMM_STOP_NONE);
    fake_outb(vm, 0x92, 0x03);
    cr_assert_eq(vm->stop, VMM_STOP_RESET);
    vmm_i8042_free(k);
    fake_vm_free(vm);
}
