/* Port 0x80 and the reset control register 0xCF9. */
#include <criterion/criterion.h>

#include "fake_machine.h"

Test(misc, post_port_sinks_writes_and_reads_ff)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_misc *m = vmm_misc_new(vm);
    cr_assert_not_null(m);
    fake_outb(vm, 0x80, 0x42);
    cr_assert_eq(fake_inb(vm, 0x80), 0xFF);
    cr_assert_eq(vm->stop, VMM_STOP_NONE);
    /* A second claim of the port is refused (the bus rejects overlaps). */
    cr_assert_null(vmm_misc_new(vm));
    vmm_misc_free(m);
    cr_assert(!fake_claimed(vm, VMM_PIO, 0x80, 1), "free releases the port");
    vmm_misc_free(NULL);
    fake_vm_free(vm);
}

Test(misc, cf9_resets_like_linux_reboot_pci)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pci *pci = vmm_pci_new(vm);
    cr_assert_not_null(pci);
    /* Linux's reboot=pci: cf9 = inb & ~6; outb(cf9|2); outb(cf9|6). */
    uint8_t cf9 = fake_inb(vm, VMM_RESET_PORT) & ~6;
    fake_outb(vm, VMM_RESET_PORT, cf9 | 2);
    cr_assert_eq(vm->stop, VMM_STOP_NONE, "SYS_RST alone only selects a hard reset");
    cr_assert_eq(fake_inb(vm, VMM_RESET_PORT) & 2, 2);
    fake_outb(vm, VMM_RESET_PORT, cf9 | VMM_RESET_VALUE);
    cr_assert_eq(vm->stop, VMM_STOP_RESET);
    /* The dword CONFIG_ADDRESS at 0xCF8 is unaffected by the byte register. */
    fake_out(vm, 0xCF8, 4, 0x80000000);
    cr_assert_eq(fake_in(vm, 0xCF8, 4), 0x80000000);
    vmm_pci_free(pci);
    fake_vm_free(vm);
}
