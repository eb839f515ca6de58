/* A guest can never crash the host: every device, hammered with random
 * accesses of every size at and around its ports and registers, while
 * guest time runs and timers fire. Run under ASan+UBSan in the unit suite. */
#include <criterion/criterion.h>

#include "fake_machine.h"

static uint64_t next(uint64_t *s)
{
    /* xorshift64*: a fixed sequence, so a failure reproduces. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static const uint16_t ports[] = {0x20,  0x21,  0xA0,  0xA1,  0x4D0, 0x4D1, 0x40,  0x41,  0x42,
                                 0x43,  0x61,  0x70,  0x71,  0x72,  0x73,  0x60,  0x64,  0x92,
                                 0x80,  0xCF8, 0xCF9, 0xCFA, 0xCFB, 0xCFC, 0xCFD, 0xCFE, 0xCFF,
                                 0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x600,
                                 0x602, 0x604, 0x605, 0x608, 0x60A, 0x60B};

Test(hostile, random_accesses_to_every_device, .timeout = 60)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_pic *pic = vmm_pic_new(vm);
    struct vmm_ioapic *io = vmm_ioapic_new(vm);
    struct vmm_pit *pit = vmm_pit_new(vm);
    struct vmm_uart *uart = vmm_uart_new(vm, 0x3F8, 4);
    struct vmm_rtc *rtc = vmm_rtc_new(vm, 1ull << 30, 0);
    struct vmm_i8042 *kbd = vmm_i8042_new(vm);
    struct vmm_misc *misc = vmm_misc_new(vm);
    struct vmm_pci *pci = vmm_pci_new(vm);
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    cr_assert(pic && io && pit && uart && rtc && kbd && misc && pci && pm);
    vmm_ioapic_set_pic(io, pic);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < 200000; i++) {
        uint64_t r = next(&s);
        unsigned size = 1u << (r & 3); /* 1, 2, 4, 8 */
        uint64_t v = next(&s);
        switch ((r >> 2) & 7) {
        case 0:
        case 1:
        case 2: {
            uint16_t port = ports[(r >> 8) % (sizeof ports / sizeof ports[0])];
            if (size > 4) size = 4;
            if ((r >> 5) & 1)
                fake_out(vm, port, size, v);
            else
                (void)fake_in(vm, port, size);
            break;
        }
        case 3: {
            uint64_t off = (r >> 8) & 0x4F;
            if ((r >> 5) & 1)
                fake_mmio_write(vm, 0xFEC00000 + off, size, v);
            else
                (void)fake_mmio_read(vm, 0xFEC00000 + off, size);
            break;
        }
        case 4: fake_advance(vm, (r >> 8) % 5000000); break; /* up to 5 ms */
        case 5:
            vmm_pic_set_irq(pic, (unsigned)(v % 20), (r >> 8) & 1);
            vmm_ioapic_set_irq(io, (unsigned)(v % 30), (r >> 9) & 1);
            break;
        case 6:
            vmm_ioapic_eoi(io, (uint8_t)v);
            if (vmm_pic_intr(pic))
                (void)vmm_pic_ack(pic);
            else
                (void)vmm_pic_ack(pic); /* spurious acknowledges too */
            break;
        default: {
            uint8_t buf[32];
            for (unsigned k = 0; k < sizeof buf; k++)
                buf[k] = (uint8_t)(v >> (k % 8));
            size_t room = vmm_uart_rx_room(uart);
            vmm_uart_receive(uart, buf, room < sizeof buf ? room : sizeof buf);
            if (!(r >> 40 & 0xFF)) vmm_acpi_pm_power_button(pm);
            break;
        }
        }
        vm->stop = VMM_STOP_NONE; /* resets and poweroffs are fine: keep going */
        vm->nirqs = 0;
        vm->console_len = 0;
    }
    /* Every device still answers sensibly. */
    fake_outb(vm, 0x21, 0x5A);
    cr_assert_eq(fake_inb(vm, 0x21), 0x5A);
    fake_out(vm, 0xCF8, 4, 0x80000000);
    cr_assert_eq(fake_in(vm, 0xCFC, 2), VMM_PCI_HOST_VENDOR);
    vmm_acpi_pm_free(pm);
    vmm_pci_free(pci);
    vmm_misc_free(misc);
    vmm_i8042_free(kbd);
    vmm_rtc_free(rtc);
    vmm_uart_free(uart);
    vmm_pit_free(pit);
    vmm_ioapic_free(io);
    vmm_pic_free(pic);
    for (unsigned i = 0; i < FAKE_MAX_CLAIMS; i++)
        cr_assert(!vm->claims[i].used, "all released");
    fake_vm_free(vm);
}
