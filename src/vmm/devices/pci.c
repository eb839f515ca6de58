/* PCI host bridge with configuration mechanism #1 (0xCF8 CONFIG_ADDRESS,
 * 0xCFC-0xCFF CONFIG_DATA) and bus 0. Functions that are not registered
 * read all ones, which is how Linux's enumeration sees an empty slot.
 * The byte at 0xCF9 is the PIIX reset control register (see the header). */
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PCI_COMMAND        0x04
#define PCI_CMD_IO         0x0001
#define PCI_CMD_MEM        0x0002
#define PCI_HEADER_TYPE    0x0E
#define PCI_BAR0           0x10
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN  0x3D
#define PCI_STD_END        0x40 /* bytes above go to the function's hooks */

#define RCR_SYS_RST  0x02
#define RCR_RST_CPU  0x04
#define RCR_FULL_RST 0x08

struct pci_fn {
    struct vmm_pci_func f;
    uint8_t cfg[PCI_STD_END];
    uint8_t wmask[PCI_STD_END];
    uint64_t mapped[6]; /* base claimed on the bus, 0 = none */
};

struct vmm_pci {
    struct hvp_vm *vm;
    uint32_t addr; /* CONFIG_ADDRESS */
    uint8_t rcr;   /* reset control (0xCF9) */
    struct pci_fn *fns[256];
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t bar_mask(const struct vmm_pci_bar *b)
{
    return (uint32_t) ~(b->size - 1) & (b->space == VMM_PIO ? 0xFFFFFFFCu : 0xFFFFFFF0u);
}

/* Claims or releases each BAR on the bus to follow COMMAND and the BARs. */
static void update_bars(struct vmm_pci *pci, struct pci_fn *fn)
{
    uint16_t cmd = (uint16_t)(fn->cfg[PCI_COMMAND] | fn->cfg[PCI_COMMAND + 1] << 8);
    for (unsigned i = 0; i < 6; i++) {
        const struct vmm_pci_bar *b = &fn->f.bars[i];
        if (!b->size) continue;
        uint32_t mask = bar_mask(b);
        uint64_t base = get32(&fn->cfg[PCI_BAR0 + 4 * i]) & mask;
        bool on = (cmd & (b->space == VMM_PIO ? PCI_CMD_IO : PCI_CMD_MEM)) && base != 0 &&
                  base != mask; /* all ones: the guest is sizing the BAR */
        if (b->space == VMM_PIO && base + b->size > 0x10000) on = false;
        uint64_t want = on ? base : 0;
        if (fn->mapped[i] == want) continue;
        if (fn->mapped[i]) vmm_bus_release(pci->vm, b->space, fn->mapped[i]);
        fn->mapped[i] = 0;
        /* A BAR placed over another claim does not decode: the guest's
         * mistake stays inside the guest. */
        if (want && vmm_bus_claim(pci->vm, b->space, want, b->size, b->ops, fn->f.dev,
                                  b->name ? b->name : "pci-bar") == 0)
            fn->mapped[i] = want;
    }
}

static uint32_t cfg_read(struct vmm_pci *pci, unsigned devfn, unsigned off, unsigned size)
{
    struct pci_fn *fn = pci->fns[devfn];
    if (!fn) return 0xFFFFFFFFu;
    if (off >= PCI_STD_END) return fn->f.cfg_read ? fn->f.cfg_read(fn->f.dev, off, size) : 0;
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++) {
        uint8_t byte = fn->cfg[off + i];
        if (off + i == PCI_HEADER_TYPE && (devfn & 7) == 0) {
            /* Multi-function bit: Linux scans functions 1-7 only with it. */
            for (unsigned f = 1; f < 8; f++)
                if (pci->fns[devfn + f]) byte |= 0x80;
        }
        v |= (uint32_t)byte << (8 * i);
    }
    return v;
}

static void cfg_write(struct vmm_pci *pci, unsigned devfn, unsigned off, unsigned size, uint32_t v)
{
    struct pci_fn *fn = pci->fns[devfn];
    if (!fn) return;
    if (off >= PCI_STD_END) {
        if (fn->f.cfg_write) fn->f.cfg_write(fn->f.dev, off, size, v);
        return;
    }
    for (unsigned i = 0; i < size; i++) {
        uint8_t m = fn->wmask[off + i], b = (uint8_t)(v >> (8 * i));
        fn->cfg[off + i] = (uint8_t)((fn->cfg[off + i] & ~m) | (b & m));
    }
    if (off < PCI_BAR0 + 24 && off + size > PCI_COMMAND) update_bars(pci, fn);
}

static uint64_t pci_io_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_pci *pci = dev;
    if (offset < 4) {
        if (offset == 0 && size == 4) return pci->addr;
        if (offset == 1 && size == 1) return pci->rcr;
        return ~0ull; /* no mechanism #2: its probe must fail */
    }
    unsigned o = (unsigned)offset - 4;
    if (o + size > 4 || !(pci->addr & 0x80000000u)) return ~0ull;
    unsigned bus = (pci->addr >> 16) & 0xFF, devfn = (pci->addr >> 8) & 0xFF;
    if (bus != 0) return ~0ull;
    return cfg_read(pci, devfn, (pci->addr & 0xFC) + o, size);
}

static void pci_io_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_pci *pci = dev;
    if (offset < 4) {
        if (offset == 0 && size == 4) {
            pci->addr = (uint32_t)value & 0x80FFFFFCu;
        } else if (offset == 1 && size == 1) {
            /* RST_CPU starts the reset; SYS_RST only picks hard or soft. */
            if (value & RCR_RST_CPU) vmm_request_stop(pci->vm, VMM_STOP_RESET);
            pci->rcr = (uint8_t)value & (RCR_SYS_RST | RCR_FULL_RST);
        }
        return;
    }
    unsigned o = (unsigned)offset - 4;
    if (o + size > 4 || !(pci->addr & 0x80000000u)) return;
    unsigned bus = (pci->addr >> 16) & 0xFF, devfn = (pci->addr >> 8) & 0xFF;
    if (bus != 0) return;
    cfg_write(pci, devfn, (pci->addr & 0xFC) + o, size, (uint32_t)value);
}

static const struct vmm_io_ops pci_io_ops = {pci_io_read, pci_io_write};

int vmm_pci_register(struct vmm_pci *pci, unsigned devfn, const struct vmm_pci_func *f)
{
    if (devfn > 255 || !f || f->irq_pin > 4 || f->vendor == 0xFFFF || f->vendor == 0)
        return -EINVAL;
    for (unsigned i = 0; i < 6; i++) {
        const struct vmm_pci_bar *b = &f->bars[i];
        if (!b->size) continue;
        uint64_t min = b->space == VMM_PIO ? 4 : 16, max = b->space == VMM_PIO ? 256 : 1ull << 31;
        if ((b->size & (b->size - 1)) || b->size < min || b->size > max || !b->ops) return -EINVAL;
    }
    if (pci->fns[devfn]) return -EEXIST;
    struct pci_fn *fn = calloc(1, sizeof *fn);
    if (!fn) return -ENOMEM;
    fn->f = *f;
    uint8_t *c = fn->cfg, *m = fn->wmask;
    put16(c + 0x00, f->vendor);
    put16(c + 0x02, f->device);
    put16(c + 0x06, 0x0200); /* status: DEVSEL medium */
    c[0x08] = f->revision;
    c[0x09] = f->prog_if;
    c[0x0A] = f->subclass;
    c[0x0B] = f->class_code;
    put16(c + 0x2C, f->subsys_vendor);
    put16(c + 0x2E, f->subsys);
    c[PCI_INTERRUPT_PIN] = f->irq_pin;
    /* Writable: COMMAND's I/O, memory, master, parity, SERR and INTx
     * disable; cache line size; latency timer; interrupt line; the BARs'
     * address bits. */
    put16(m + PCI_COMMAND, 0x0547);
    m[0x0C] = 0xFF;
    m[0x0D] = 0xFF;
    m[PCI_INTERRUPT_LINE] = 0xFF;
    for (unsigned i = 0; i < 6; i++) {
        const struct vmm_pci_bar *b = &f->bars[i];
        if (!b->size) continue;
        put32(m + PCI_BAR0 + 4 * i, bar_mask(b));
        c[PCI_BAR0 + 4 * i] = b->space == VMM_PIO ? 0x01 : 0x00;
    }
    pci->fns[devfn] = fn;
    return 0;
}

struct vmm_pci *vmm_pci_new(struct hvp_vm *vm)
{
    struct vmm_pci *pci = calloc(1, sizeof *pci);
    if (!pci) return NULL;
    pci->vm = vm;
    const struct vmm_pci_func host = {
        .vendor = VMM_PCI_HOST_VENDOR,
        .device = VMM_PCI_HOST_DEVICE,
        .revision = 0x02,
        .class_code = 0x06, /* bridge */
        .subclass = 0x00,   /* host bridge */
    };
    if (vmm_pci_register(pci, 0, &host) < 0 ||
        vmm_bus_claim(vm, VMM_PIO, 0xCF8, 8, &pci_io_ops, pci, "pci-host") < 0) {
        free(pci->fns[0]);
        free(pci);
        return NULL;
    }
    return pci;
}

void vmm_pci_free(struct vmm_pci *pci)
{
    if (!pci) return;
    vmm_bus_release(pci->vm, VMM_PIO, 0xCF8);
    for (unsigned d = 0; d < 256; d++) {
        struct pci_fn *fn = pci->fns[d];
        if (!fn) continue;
        for (unsigned i = 0; i < 6; i++)
            if (fn->mapped[i]) vmm_bus_release(pci->vm, fn->f.bars[i].space, fn->mapped[i]);
        free(fn);
    }
    free(pci);
}
