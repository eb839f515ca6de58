/* The VM worker's internals: the contract between the machine core
 * (machine.c, bus.c, ...) and the devices (one file each).
 *
 * Devices know nothing of backends. A device sees:
 *   - address ranges it claimed on the one bus (ports or MMIO), with
 *     read/write callbacks that get the offset into the range;
 *   - interrupt lines (GSIs) it raises and lowers; the machine routes
 *     them to the PIC and the IOAPIC (or the backend's in-kernel ones);
 *   - timers that call it back at a guest-time deadline;
 *   - the guest clock and guest memory.
 * Every device callback runs with the machine's device lock held (one
 * lock for all devices: simple and correct; finer locks when measured
 * to matter), so a device needs no lock of its own. Callbacks never block.
 */
#ifndef HVP_VMM_INTERNAL_H
#define HVP_VMM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hvp_vm;
struct hvp_partition;

/* The platform partition the VM runs in: devices that deliver interrupts
 * as messages (the IOAPIC, MSI) use hvp_request_interrupt() on it. */
struct hvp_partition *vmm_partition(struct hvp_vm *vm);

/* ---- the bus: one range map for I/O ports and MMIO ---- */
enum vmm_space { VMM_PIO = 0, VMM_MMIO = 1 };

struct vmm_io_ops {
    /* size is 1, 2, 4 (or 8 for MMIO); offset is from the claimed base.
     * A read returns the value in the low `size` bytes. */
    uint64_t (*read)(void *dev, uint64_t offset, unsigned size);
    void (*write)(void *dev, uint64_t offset, unsigned size, uint64_t value);
};

/* Claims [base, base+len) in a space for dev. -EEXIST when it overlaps a
 * claimed range (the message names both owners). name is kept (static). */
int vmm_bus_claim(struct hvp_vm *vm, enum vmm_space space, uint64_t base, uint64_t len,
                  const struct vmm_io_ops *ops, void *dev, const char *name);
/* Releases a claim made at exactly this base (PCI BAR moves). */
int vmm_bus_release(struct hvp_vm *vm, enum vmm_space space, uint64_t base);

/* ---- interrupt lines ----
 * GSI 0..15 are the ISA IRQs (routed to the PIC and, with the MADT's
 * override 0 -> 2, to the IOAPIC), 16..23 the IOAPIC's PCI lines.
 * Edge-triggered devices raise then lower (vmm_irq_pulse). */
void vmm_irq_set(struct hvp_vm *vm, unsigned gsi, bool level);
void vmm_irq_pulse(struct hvp_vm *vm, unsigned gsi);

/* ---- time ----
 * Guest time in nanoseconds: monotonic, starts at 0 when the VM is created,
 * stands still while the VM is paused. */
uint64_t vmm_now_ns(struct hvp_vm *vm);

struct vmm_timer;
/* fn runs on the machine's timer thread with the device lock held. */
struct vmm_timer *vmm_timer_new(struct hvp_vm *vm, void (*fn)(void *dev), void *dev);
/* (Re)arms the timer for the guest time deadline_ns (past = now). */
void vmm_timer_arm(struct vmm_timer *t, uint64_t deadline_ns);
void vmm_timer_cancel(struct vmm_timer *t);
void vmm_timer_free(struct vmm_timer *t);

/* ---- guest memory (for DMA-like devices and table builders) ---- */
int vmm_read_gpa(struct hvp_vm *vm, uint64_t gpa, void *buf, size_t len);
int vmm_write_gpa(struct hvp_vm *vm, uint64_t gpa, const void *buf, size_t len);

/* ---- machine-level requests from devices ---- */
enum vmm_stop_reason {
    VMM_STOP_NONE = 0,
    VMM_STOP_POWEROFF,     /* ACPI S5, guest-initiated */
    VMM_STOP_RESET,        /* i8042 0xFE, port 0xCF9, port 0x92 bit 0 */
    VMM_STOP_TRIPLE_FAULT, /* shutdown exit from the CPU */
    VMM_STOP_HOST,         /* the person at the console quit (Ctrl-A X) */
    VMM_STOP_ERROR,        /* the VMM could not go on; see the message */
};
/* Asks every vCPU to stop; the first reason wins. Callable with the device
 * lock held, from any thread. */
void vmm_request_stop(struct hvp_vm *vm, enum vmm_stop_reason why);

/* ---- the console (COM1's other end) ----
 * The UART hands transmitted bytes to the machine, which writes them to
 * the console; bytes typed at the console reach the UART through
 * vmm_uart_receive() (called by the machine with the device lock held). */
void vmm_console_write(struct hvp_vm *vm, const uint8_t *buf, size_t len);

/* ---- devices (one file each; created in order by machine.c) ----
 * Every constructor claims its ranges and returns NULL with the machine's
 * message set on failure; every destructor accepts NULL, releases its
 * claims and frees its timers (so call it before the bus goes). */
struct vmm_uart;
struct vmm_uart *vmm_uart_new(struct hvp_vm *vm, uint16_t port, unsigned gsi);
void vmm_uart_receive(struct vmm_uart *u, const uint8_t *buf, size_t len);
/* How many received bytes the UART can take now (its FIFO space). */
size_t vmm_uart_rx_room(struct vmm_uart *u);
/* Optional: fn(ctx) runs (device lock held) when the guest has read the
 * receive FIFO empty, so queued console input can follow at once instead
 * of on a poll; fn may call vmm_uart_receive(). */
void vmm_uart_set_rx_notify(struct vmm_uart *u, void (*fn)(void *ctx), void *ctx);
void vmm_uart_free(struct vmm_uart *u);

struct vmm_pic; /* 8259A master + slave, ports 0x20/0xA0, ELCR 0x4D0 */
struct vmm_pic *vmm_pic_new(struct hvp_vm *vm); /* INTR output: vmm_pic_intr() */
void vmm_pic_set_irq(struct vmm_pic *pic, unsigned irq, bool level);
/* True while the master's INTR output is asserted. */
bool vmm_pic_intr(struct vmm_pic *pic);
/* Interrupt acknowledge: the vector to deliver (spurious IRQ7/15 vector
 * when nothing is pending any more). */
uint8_t vmm_pic_ack(struct vmm_pic *pic);
/* Optional: fn(ctx, level) runs (device lock held) whenever INTR changes,
 * whatever changed it: a line, an acknowledge, or the guest writing the
 * PIC (an EOI or unmask that lets a pending IRQ through). The machine
 * uses it to ask for an interrupt window and to drive the IOAPIC's ExtINT
 * pin. fn may call back into the PIC (vmm_pic_ack). */
void vmm_pic_set_intr_notify(struct vmm_pic *pic, void (*fn)(void *ctx, bool level), void *ctx);
void vmm_pic_free(struct vmm_pic *pic);

struct vmm_ioapic; /* 24 pins at 0xFEC00000; delivers with hvp_request_interrupt() */
/* Version 0x20 (EOI register at +0x40), ID 0 (the MADT must say 0). */
struct vmm_ioapic *vmm_ioapic_new(struct hvp_vm *vm);
/* level is the logical request (true = asserted) whatever the entry's
 * polarity bit says: the board inverts active-low lines. */
void vmm_ioapic_set_irq(struct vmm_ioapic *io, unsigned pin, bool level);
/* The local APIC signalled EOI for vector (level-triggered: Remote IRR). */
void vmm_ioapic_eoi(struct vmm_ioapic *io, uint8_t vector);
/* Wires the PIC behind redirection entries in ExtINT mode (virtual wire
 * through the IOAPIC): such an entry acknowledges the PIC and delivers its
 * vector. Without it, ExtINT entries deliver nothing. */
void vmm_ioapic_set_pic(struct vmm_ioapic *io, struct vmm_pic *pic);
void vmm_ioapic_free(struct vmm_ioapic *io);

struct vmm_pit; /* 8254 at 0x40-0x43, channel 0 -> GSI 0, port 0x61 gate/speaker */
struct vmm_pit *vmm_pit_new(struct hvp_vm *vm);
void vmm_pit_free(struct vmm_pit *pit);

struct vmm_rtc; /* MC146818 at 0x70/0x71 (0x72/0x73: upper NVRAM bank), GSI 8, UTC */
/* mem_below_4g/above_4g fill the CMOS memory-size bytes firmware reads. */
struct vmm_rtc *vmm_rtc_new(struct hvp_vm *vm, uint64_t mem_below_4g, uint64_t mem_above_4g);
void vmm_rtc_free(struct vmm_rtc *rtc);

/* 0x60/0x64 with a PS/2 keyboard (no AUX port: Linux finds no mouse at
 * once); command 0xFE resets the machine; port 0x92 (A20/reset) too */
struct vmm_i8042;
struct vmm_i8042 *vmm_i8042_new(struct hvp_vm *vm);
void vmm_i8042_free(struct vmm_i8042 *k);

struct vmm_misc; /* port 0x80 (POST codes / io_delay: writes ignored, reads 0xFF) */
struct vmm_misc *vmm_misc_new(struct hvp_vm *vm);
void vmm_misc_free(struct vmm_misc *m);

/* Host bridge: configuration mechanism #1 at 0xCF8-0xCFF, bus 0. The
 * bridge at 00:00.0 is an Intel 440FX (8086:1237), as the DSDT says.
 * It also owns the byte register 0xCF9 (reset control, as on the PIIX:
 * the port overlaps CONFIG_ADDRESS, and the bus rejects overlaps):
 * writing VMM_RESET_VALUE (bits 1|2) resets the machine; the FADT's
 * RESET_REG names it. */
#define VMM_PCI_HOST_VENDOR 0x8086
#define VMM_PCI_HOST_DEVICE 0x1237
#define VMM_RESET_PORT      0xCF9
#define VMM_RESET_VALUE     0x06
/* The 32-bit window for PCI BARs, which the DSDT's \_SB.PCI0._CRS offers:
 * from the 3 GiB hole in RAM up to the IOAPIC. The machine's memory map
 * keeps RAM out of it. */
#define VMM_PCI_MMIO_BASE  0xC0000000ull
#define VMM_PCI_MMIO_LIMIT 0xFEBFFFFFull /* last byte */
struct vmm_pci;
struct vmm_pci *vmm_pci_new(struct hvp_vm *vm);
void vmm_pci_free(struct vmm_pci *pci);

/* A PCI function for later devices. The PCI core keeps the standard
 * header (IDs, command/status, BARs, interrupt line/pin) and claims a
 * BAR on the bus while its decode bit in COMMAND is set and the guest
 * has programmed it; config bytes 0x40..0xFF go to cfg_read/cfg_write
 * (NULL: they read 0 and ignore writes). */
struct vmm_pci_bar {
    uint64_t size; /* power of two (I/O >= 4, MMIO >= 16); 0 = unused */
    enum vmm_space space;
    const struct vmm_io_ops *ops;
    const char *name;
};
struct vmm_pci_func {
    uint16_t vendor, device, subsys_vendor, subsys;
    uint8_t revision, prog_if, subclass, class_code;
    uint8_t irq_pin; /* 1 = INTA# .. 4 = INTD#, 0 = none */
    struct vmm_pci_bar bars[6];
    uint32_t (*cfg_read)(void *dev, unsigned offset, unsigned size);
    void (*cfg_write)(void *dev, unsigned offset, unsigned size, uint32_t value);
    void *dev; /* passed to the BAR ops and the cfg hooks */
};
/* devfn = slot << 3 | function (bus 0). -EEXIST when taken, -EINVAL on a
 * bad description. f is copied. */
int vmm_pci_register(struct vmm_pci *pci, unsigned devfn, const struct vmm_pci_func *f);
/* The GSI an INTx pin of a slot is wired to (the DSDT's _PRT must agree):
 * the usual swizzle onto the IOAPIC's PCI lines 16..19. */
static inline unsigned vmm_pci_intx_gsi(unsigned slot, unsigned pin)
{
    return 16 + ((slot + pin - 1) & 3);
}

struct vmm_acpi_pm; /* PM1a event/control block + PM timer at VMM_ACPI_PM_BASE, SCI on GSI 9 */
#define VMM_ACPI_PM_BASE   0x600
#define VMM_ACPI_PM1_EVT   (VMM_ACPI_PM_BASE + 0) /* PM1a_EVT_BLK: status, enable (2+2) */
#define VMM_ACPI_PM1_CNT   (VMM_ACPI_PM_BASE + 4) /* PM1a_CNT_BLK (2) */
#define VMM_ACPI_PM_TMR    (VMM_ACPI_PM_BASE + 8) /* PM_TMR_BLK (4): 24 bits, FADT TMR_VAL_EXT = 0 */
#define VMM_ACPI_PM_LEN    12
#define VMM_ACPI_PM_TMR_HZ 3579545
/* SLP_TYP for S5 in PM1a_CNT; the DSDT's \_S5 package carries this value. */
#define VMM_ACPI_S5_SLP_TYP 5
struct vmm_acpi_pm *vmm_acpi_pm_new(struct hvp_vm *vm);
/* Presses the fixed-hardware power button (PWRBTN_STS; an SCI when the
 * guest enabled it): a polite shutdown request. The FADT must leave its
 * PWR_BUTTON flag clear. Called with the device lock held. */
void vmm_acpi_pm_power_button(struct vmm_acpi_pm *pm);
void vmm_acpi_pm_free(struct vmm_acpi_pm *pm);

/* ---- firmware tables (acpi.c) ----
 * Builds RSDP, XSDT, FADT (with the PM block above, reduced to what a
 * legacy-free guest needs, and a DSDT with \_S5 so poweroff works), MADT
 * (one LAPIC per vCPU, the IOAPIC, ISA overrides 0->2 and SCI 9 level)
 * into guest memory: the RSDP at rsdp_gpa (in the BIOS area, where the
 * kernel's scan finds it) and the rest from tables_gpa. */
struct vmm_acpi_config {
    unsigned ncpus;
    uint64_t rsdp_gpa;   /* 16-byte aligned, within 0xE0000..0xFFFFF */
    uint64_t tables_gpa; /* where XSDT, FADT, DSDT, MADT go */
    size_t tables_max;   /* bytes available there */
    uint64_t ioapic_gpa; /* 0xFEC00000 */
    uint64_t lapic_gpa;  /* 0xFEE00000 */
    uint16_t pm_base;    /* VMM_ACPI_PM_BASE */
    unsigned sci_gsi;    /* 9 */
};
int vmm_acpi_build(struct hvp_vm *vm, const struct vmm_acpi_config *c);

#endif
