/* I/O APIC (82093AA-style, version 0x20 with the EOI register) at
 * 0xFEC00000: 24 redirection entries, edge and level triggering with
 * Remote IRR, delivered as messages with hvp_request_interrupt(). Lines
 * carry the logical request (true = asserted); the polarity bit is kept
 * for the guest but the board is taken to invert active-low lines, as
 * every VMM's IOAPIC does. */
#include "vmm/vmm_internal.h"

#include "hvp/platform.h"

#include <stdlib.h>

#define IOAPIC_BASE 0xFEC00000u
#define IOAPIC_SIZE 0x1000
#define PINS        24
#define VERSION     0x20

#define REG_ID    0x00
#define REG_VER   0x01
#define REG_ARB   0x02
#define REG_TABLE 0x10

#define RTE_VECTOR    0xFFull
#define RTE_DELMODE   (7ull << 8)
#define RTE_DESTMODE  (1ull << 11)
#define RTE_DELIVS    (1ull << 12)
#define RTE_POLARITY  (1ull << 13)
#define RTE_REMOTEIRR (1ull << 14)
#define RTE_LEVEL     (1ull << 15)
#define RTE_MASK      (1ull << 16)
#define RTE_DEST      (0xFFull << 56)
#define RTE_WRITABLE                                                                               \
    (RTE_VECTOR | RTE_DELMODE | RTE_DESTMODE | RTE_POLARITY | RTE_LEVEL | RTE_MASK | RTE_DEST)

enum { DM_FIXED = 0, DM_LOWEST = 1, DM_SMI = 2, DM_NMI = 4, DM_INIT = 5, DM_EXTINT = 7 };

struct vmm_ioapic {
    struct hvp_vm *vm;
    struct vmm_pic *pic; /* behind ExtINT entries */
    uint32_t regsel;
    uint8_t id;
    uint32_t lines; /* asserted inputs */
    uint64_t rte[PINS];
};

static void deliver(struct vmm_ioapic *io, unsigned pin)
{
    uint64_t e = io->rte[pin];
    struct hvp_interrupt irq = {
        .logical_dest = (e & RTE_DESTMODE) ? 1 : 0,
        .destination = (uint32_t)(e >> 56),
        .vector = (uint32_t)(e & RTE_VECTOR),
    };
    switch ((e & RTE_DELMODE) >> 8) {
    case DM_FIXED: irq.type = HVP_INTERRUPT_FIXED; break;
    case DM_LOWEST: irq.type = HVP_INTERRUPT_LOWEST_PRIORITY; break;
    case DM_NMI: irq.type = HVP_INTERRUPT_NMI; break;
    case DM_INIT: irq.type = HVP_INTERRUPT_INIT; break;
    case DM_EXTINT:
        /* Virtual wire through the IOAPIC: the 8259 supplies the vector. */
        if (!io->pic || !vmm_pic_intr(io->pic)) return;
        irq.type = HVP_INTERRUPT_FIXED;
        irq.vector = vmm_pic_ack(io->pic);
        break;
    default: return; /* SMI and the reserved modes: nothing to deliver to */
    }
    if (e & RTE_LEVEL) {
        irq.level_triggered = 1;
        io->rte[pin] |= RTE_REMOTEIRR;
    }
    /* A delivery the platform refuses (no APIC emulation) is the guest's
     * configuration problem; it must not stop the host. */
    (void)hvp_request_interrupt(vmm_partition(io->vm), &irq);
}

/* A level entry requests while its line is high and no EOI is owed. */
static void service_level(struct vmm_ioapic *io, unsigned pin)
{
    uint64_t e = io->rte[pin];
    if ((e & RTE_LEVEL) && !(e & RTE_MASK) && !(e & RTE_REMOTEIRR) && (io->lines >> pin & 1))
        deliver(io, pin);
}

void vmm_ioapic_set_irq(struct vmm_ioapic *io, unsigned pin, bool level)
{
    if (pin >= PINS) return;
    uint32_t bit = 1u << pin;
    bool was = io->lines & bit;
    if (level)
        io->lines |= bit;
    else
        io->lines &= ~bit;
    uint64_t e = io->rte[pin];
    if (e & RTE_LEVEL)
        service_level(io, pin);
    else if (level && !was && !(e & RTE_MASK))
        deliver(io, pin); /* masked edges are lost */
}

void vmm_ioapic_eoi(struct vmm_ioapic *io, uint8_t vector)
{
    for (unsigned pin = 0; pin < PINS; pin++) {
        uint64_t e = io->rte[pin];
        if ((e & RTE_VECTOR) != vector || !(e & RTE_REMOTEIRR)) continue;
        io->rte[pin] &= ~RTE_REMOTEIRR;
        service_level(io, pin); /* still asserted: deliver again */
    }
}

void vmm_ioapic_set_pic(struct vmm_ioapic *io, struct vmm_pic *pic)
{
    io->pic = pic;
}

static uint32_t reg_read(struct vmm_ioapic *io)
{
    unsigned r = io->regsel & 0xFF;
    switch (r) {
    case REG_ID: return (uint32_t)io->id << 24;
    case REG_VER: return (uint32_t)(PINS - 1) << 16 | VERSION;
    case REG_ARB: return (uint32_t)io->id << 24;
    default:
        if (r >= REG_TABLE && r < REG_TABLE + 2 * PINS) {
            uint64_t e = io->rte[(r - REG_TABLE) / 2];
            return (r & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
        }
        return 0;
    }
}

static void reg_write(struct vmm_ioapic *io, uint32_t v)
{
    unsigned r = io->regsel & 0xFF;
    if (r == REG_ID) {
        io->id = (v >> 24) & 0x0F;
        return;
    }
    if (r < REG_TABLE || r >= REG_TABLE + 2 * PINS) return;
    unsigned pin = (r - REG_TABLE) / 2;
    uint64_t old = io->rte[pin], e;
    if (r & 1)
        e = (old & 0xFFFFFFFFull) | (uint64_t)v << 32;
    else
        e = (old & ~0xFFFFFFFFull) | v;
    e = (e & RTE_WRITABLE) | (old & RTE_REMOTEIRR);
    /* An edge entry owes no EOI: Linux clears a stuck Remote IRR by
     * switching the entry to edge and back. */
    if (!(e & RTE_LEVEL)) e &= ~RTE_REMOTEIRR;
    io->rte[pin] = e;
    service_level(io, pin); /* unmasked while asserted */
}

static uint64_t ioapic_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_ioapic *io = dev;
    uint64_t v;
    if (offset < 4)
        v = io->regsel >> (8 * offset);
    else if (offset >= 0x10 && offset < 0x14)
        v = reg_read(io) >> (8 * (offset - 0x10));
    else
        v = 0;
    return size >= 8 ? v : v & ((1ull << (8 * size)) - 1);
}

static void ioapic_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_ioapic *io = dev;
    if (offset == 0)
        io->regsel = (uint32_t)value & 0xFF;
    else if (offset == 0x10 && size >= 4)
        reg_write(io, (uint32_t)value);
    else if (offset == 0x40)
        vmm_ioapic_eoi(io, (uint8_t)value); /* version 0x20 EOI register */
    (void)size;
}

static const struct vmm_io_ops ioapic_ops = {ioapic_read, ioapic_write};

struct vmm_ioapic *vmm_ioapic_new(struct hvp_vm *vm)
{
    struct vmm_ioapic *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->vm = vm;
    for (unsigned i = 0; i < PINS; i++)
        io->rte[i] = RTE_MASK; /* reset: all masked */
    if (vmm_bus_claim(vm, VMM_MMIO, IOAPIC_BASE, IOAPIC_SIZE, &ioapic_ops, io, "ioapic") < 0) {
        free(io);
        return NULL;
    }
    return io;
}

void vmm_ioapic_free(struct vmm_ioapic *io)
{
    if (!io) return;
    vmm_bus_release(io->vm, VMM_MMIO, IOAPIC_BASE);
    free(io);
}
