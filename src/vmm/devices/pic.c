/* Two cascaded 8259A PICs (master 0x20/0x21, slave 0xA0/0xA1, slave on
 * master IRQ 2) and the ELCR at 0x4D0/0x4D1, which makes single IRQs
 * level-triggered. The machine reads the master's INTR output with
 * vmm_pic_intr() and acknowledges with vmm_pic_ack() when the CPU takes
 * the interrupt (directly, through LINT0 virtual wire, or through an
 * IOAPIC ExtINT entry). */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

#define CASCADE 2

struct chip {
    uint8_t irr, isr, imr;
    uint8_t lines; /* input levels, for edge detection */
    uint8_t elcr, elcr_mask;
    uint8_t base;         /* ICW2: vector of IRQ 0 */
    uint8_t priority_add; /* the IRQ with the highest priority (rotation) */
    uint8_t init_step;    /* 0 = ready, 1 = expect ICW2, 2 = ICW3, 3 = ICW4 */
    bool need_icw4, single, auto_eoi, rotate_on_aeoi, sfnm;
    bool read_isr, poll, special_mask;
};

struct vmm_pic {
    struct hvp_vm *vm;
    struct chip c[2]; /* master, slave */
    void (*notify)(void *ctx, bool level);
    void *notify_ctx;
    bool intr; /* INTR as last notified */
};

/* Priority level (0 = highest) of the highest request in mask, 8 if none. */
static unsigned priority(const struct chip *s, uint8_t mask)
{
    if (!mask) return 8;
    unsigned p = 0;
    while (!(mask & (1u << ((p + s->priority_add) & 7))))
        p++;
    return p;
}

/* The IRQ this chip would raise INTR for, or -1. */
static int chip_pending(const struct chip *s, bool master)
{
    unsigned p = priority(s, s->irr & ~s->imr);
    if (p == 8) return -1;
    uint8_t in_service = s->isr;
    /* Special fully nested mode: the slave may interrupt while one of its
     * IRQs is in service through the cascade. Special mask mode: masked
     * in-service levels do not block lower ones. */
    if (master && s->sfnm) in_service &= (uint8_t) ~(1u << CASCADE);
    if (s->special_mask) in_service &= (uint8_t)~s->imr;
    if (p < priority(s, in_service)) return (int)((p + s->priority_add) & 7);
    return -1;
}

static void chip_set_line(struct chip *s, unsigned irq, bool level)
{
    uint8_t bit = (uint8_t)(1u << irq);
    if (s->elcr & bit) {
        /* Level: the request follows the line. */
        if (level)
            s->irr |= bit;
        else
            s->irr &= (uint8_t)~bit;
    } else if (level && !(s->lines & bit)) {
        s->irr |= bit; /* edge: latched until acknowledged */
    }
    if (level)
        s->lines |= bit;
    else
        s->lines &= (uint8_t)~bit;
}

/* Feeds the slave's output into master IRQ 2. */
/* Feeds the slave's output into master IRQ 2, then tells the machine
 * when INTR moved. The level is recorded before the call, so a nested
 * change (the callback acknowledging) is reported in order. */
static void update(struct vmm_pic *pic)
{
    chip_set_line(&pic->c[0], CASCADE, chip_pending(&pic->c[1], false) >= 0);
    bool intr = chip_pending(&pic->c[0], true) >= 0;
    if (intr == pic->intr) return;
    pic->intr = intr;
    if (pic->notify) pic->notify(pic->notify_ctx, intr);
}

void vmm_pic_set_intr_notify(struct vmm_pic *pic, void (*fn)(void *ctx, bool level), void *ctx)
{
    pic->notify = fn;
    pic->notify_ctx = ctx;
    pic->intr = chip_pending(&pic->c[0], true) >= 0;
}

static void chip_ack(struct chip *s, unsigned irq)
{
    uint8_t bit = (uint8_t)(1u << irq);
    if (s->auto_eoi) {
        if (s->rotate_on_aeoi) s->priority_add = (uint8_t)((irq + 1) & 7);
    } else {
        s->isr |= bit;
    }
    /* A level request stays in IRR while its line is high. */
    if (!(s->elcr & bit)) s->irr &= (uint8_t)~bit;
}

void vmm_pic_set_irq(struct vmm_pic *pic, unsigned irq, bool level)
{
    if (irq >= 16 || irq == CASCADE) return; /* IRQ 2 is the cascade */
    chip_set_line(&pic->c[irq >> 3], irq & 7, level);
    update(pic);
}

bool vmm_pic_intr(struct vmm_pic *pic)
{
    return chip_pending(&pic->c[0], true) >= 0;
}

uint8_t vmm_pic_ack(struct vmm_pic *pic)
{
    struct chip *m = &pic->c[0], *s = &pic->c[1];
    int irq = chip_pending(m, true);
    uint8_t vector;
    if (irq < 0) {
        vector = m->base + 7; /* the request went away: spurious IRQ 7 */
    } else {
        chip_ack(m, (unsigned)irq);
        if (irq == CASCADE) {
            int sirq = chip_pending(s, false);
            if (sirq < 0) {
                vector = s->base + 7; /* spurious IRQ 15 */
            } else {
                chip_ack(s, (unsigned)sirq);
                vector = (uint8_t)(s->base + sirq);
            }
        } else {
            vector = (uint8_t)(m->base + irq);
        }
    }
    update(pic);
    return vector;
}

static void chip_icw1(struct chip *s, uint8_t v)
{
    /* ICW1 resets the chip; ELCR and the input levels are not the 8259's. */
    uint8_t elcr = s->elcr, mask = s->elcr_mask, lines = s->lines;
    *s = (struct chip){.elcr = elcr, .elcr_mask = mask, .lines = lines};
    s->irr = lines & elcr; /* level requests still asserted */
    s->init_step = 1;
    s->need_icw4 = v & 1;
    s->single = v & 2;
}

static void chip_eoi(struct chip *s, unsigned irq, bool rotate)
{
    s->isr &= (uint8_t) ~(1u << irq);
    if (rotate) s->priority_add = (uint8_t)((irq + 1) & 7);
}

static void chip_command(struct chip *s, uint8_t v)
{
    if (v & 0x10) {
        chip_icw1(s, v);
        return;
    }
    if (v & 0x08) { /* OCW3 */
        if (v & 0x04) s->poll = true;
        if (v & 0x02) s->read_isr = v & 0x01;
        if (v & 0x40) s->special_mask = (v >> 5) & 1;
        return;
    }
    /* OCW2 */
    unsigned irq = v & 7, p;
    switch (v >> 5) {
    case 0: s->rotate_on_aeoi = false; break;
    case 4: s->rotate_on_aeoi = true; break;
    case 1: /* non-specific EOI */
    case 5: /* ... and rotate */
        p = priority(s, s->isr);
        if (p != 8) chip_eoi(s, (p + s->priority_add) & 7, v >> 5 == 5);
        break;
    case 3: chip_eoi(s, irq, false); break;
    case 7: chip_eoi(s, irq, true); break;
    case 6: s->priority_add = (uint8_t)((irq + 1) & 7); break;
    default: break; /* 2: no operation */
    }
}

static void chip_data(struct chip *s, uint8_t v)
{
    switch (s->init_step) {
    case 0: s->imr = v; break; /* OCW1 */
    case 1:
        s->base = v & 0xF8;
        s->init_step = s->single ? (s->need_icw4 ? 3 : 0) : 2;
        break;
    case 2: s->init_step = s->need_icw4 ? 3 : 0; break; /* ICW3: wiring is fixed */
    default:
        s->auto_eoi = v & 0x02;
        s->sfnm = v & 0x10;
        s->init_step = 0;
        break;
    }
}

/* Poll command: the read acknowledges the highest request. */
static uint8_t chip_poll(struct vmm_pic *pic, unsigned which)
{
    struct chip *s = &pic->c[which];
    s->poll = false;
    int irq = chip_pending(s, which == 0);
    if (irq < 0) return 0;
    chip_ack(s, (unsigned)irq);
    update(pic);
    return (uint8_t)(0x80 | irq);
}

static uint64_t pic_read(struct vmm_pic *pic, unsigned which, uint64_t offset)
{
    struct chip *s = &pic->c[which];
    if (s->poll) return chip_poll(pic, which);
    if (offset == 1) return s->imr;
    return s->read_isr ? s->isr : s->irr;
}

static void pic_write(struct vmm_pic *pic, unsigned which, uint64_t offset, uint8_t v)
{
    if (offset == 0)
        chip_command(&pic->c[which], v);
    else
        chip_data(&pic->c[which], v);
    update(pic);
}

static uint64_t master_read(void *dev, uint64_t offset, unsigned size)
{
    (void)size;
    return pic_read(dev, 0, offset);
}
static void master_write(void *dev, uint64_t offset, unsigned size, uint64_t v)
{
    (void)size;
    pic_write(dev, 0, offset, (uint8_t)v);
}
static uint64_t slave_read(void *dev, uint64_t offset, unsigned size)
{
    (void)size;
    return pic_read(dev, 1, offset);
}
static void slave_write(void *dev, uint64_t offset, unsigned size, uint64_t v)
{
    (void)size;
    pic_write(dev, 1, offset, (uint8_t)v);
}

static uint64_t elcr_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_pic *pic = dev;
    uint64_t v = pic->c[offset].elcr;
    if (size >= 2 && offset == 0) v |= (uint64_t)pic->c[1].elcr << 8;
    return v;
}

static void elcr_write(void *dev, uint64_t offset, unsigned size, uint64_t v)
{
    struct vmm_pic *pic = dev;
    for (unsigned i = (unsigned)offset; i < 2 && i < offset + size; i++) {
        struct chip *s = &pic->c[i];
        s->elcr = (uint8_t)(v >> (8 * (i - offset))) & s->elcr_mask;
        /* A line switched to level mode requests while it is high. */
        s->irr = (uint8_t)((s->irr & ~s->elcr) | (s->lines & s->elcr));
    }
    update(pic);
}

static const struct vmm_io_ops master_ops = {master_read, master_write};
static const struct vmm_io_ops slave_ops = {slave_read, slave_write};
static const struct vmm_io_ops elcr_ops = {elcr_read, elcr_write};

struct vmm_pic *vmm_pic_new(struct hvp_vm *vm)
{
    struct vmm_pic *pic = calloc(1, sizeof *pic);
    if (!pic) return NULL;
    pic->vm = vm;
    /* As firmware leaves them: vectors 0x08/0x70, everything masked. IRQ
     * 0-2 and 8, 13 are edge-only on a PC (ELCR bits fixed at 0). */
    pic->c[0] = (struct chip){.imr = 0xFF, .base = 0x08, .elcr_mask = 0xF8};
    pic->c[1] = (struct chip){.imr = 0xFF, .base = 0x70, .elcr_mask = 0xDE};
    if (vmm_bus_claim(vm, VMM_PIO, 0x20, 2, &master_ops, pic, "pic-master") < 0) goto fail;
    if (vmm_bus_claim(vm, VMM_PIO, 0xA0, 2, &slave_ops, pic, "pic-slave") < 0) goto fail_master;
    if (vmm_bus_claim(vm, VMM_PIO, 0x4D0, 2, &elcr_ops, pic, "elcr") < 0) goto fail_slave;
    return pic;
fail_slave:
    vmm_bus_release(vm, VMM_PIO, 0xA0);
fail_master:
    vmm_bus_release(vm, VMM_PIO, 0x20);
fail:
    free(pic);
    return NULL;
}

void vmm_pic_free(struct vmm_pic *pic)
{
    if (!pic) return;
    vmm_bus_release(pic->vm, VMM_PIO, 0x20);
    vmm_bus_release(pic->vm, VMM_PIO, 0xA0);
    vmm_bus_release(pic->vm, VMM_PIO, 0x4D0);
    free(pic);
}
