/* i8042 keyboard controller (0x60 data, 0x64 status/command) with a PS/2
 * keyboard behind it, and system control port A (0x92: fast reset, A20).
 * The keyboard answers reset and identify so that Linux's atkbd binds;
 * there is no AUX (mouse) port: its loopback fails at once, so i8042
 * gives up on it without waiting for timeouts. Output port bit 0 low, a
 * 0xFE pulse, or 0x92 bit 0 going up resets the machine. */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

#define STS_OBF     0x01
#define STS_SYS     0x04
#define STS_CMD     0x08 /* last write went to 0x64 */
#define STS_UNLOCK  0x10 /* keyboard not inhibited by the key lock */
#define STS_AUXDATA 0x20

#define CTR_KBDINT  0x01
#define CTR_SYS     0x04
#define CTR_KBDDIS  0x10
#define CTR_AUXDIS  0x20
#define CTR_XLATE   0x40
#define CTR_DEFAULT (CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE)

#define OUTP_RESET 0x01 /* active low */
#define OUTP_A20   0x02
#define KBD_GSI    1
#define QUEUE      16

enum pending {
    NONE,
    CTL_WRITE_CTR,
    CTL_WRITE_OUTP,
    CTL_WRITE_KBD_OBUF,
    CTL_WRITE_AUX_OBUF,
    CTL_WRITE_AUX,
    KBD_PARAM
};

struct vmm_i8042 {
    struct hvp_vm *vm;
    uint8_t status, ctr, outp, port92;
    enum pending pending;
    uint8_t kbd_cmd;  /* keyboard command waiting for its parameter */
    uint8_t q[QUEUE]; /* output bytes: q[head] is in the output buffer */
    unsigned head, count;
    bool kbd_enabled; /* keyboard scanning (0xF4/0xF5) */
};

static void reset_machine(struct vmm_i8042 *k)
{
    vmm_request_stop(k->vm, VMM_STOP_RESET);
}

/* Presents the next queued byte in the output buffer, interrupting when
 * the configuration byte asks for it. */
static void refill(struct vmm_i8042 *k)
{
    if ((k->status & STS_OBF) || !k->count) return;
    k->status |= STS_OBF;
    if (k->ctr & CTR_KBDINT) vmm_irq_pulse(k->vm, KBD_GSI);
}

static void push(struct vmm_i8042 *k, uint8_t b)
{
    if (k->count == QUEUE) return; /* the keyboard's buffer overran: drop */
    k->q[(k->head + k->count++) % QUEUE] = b;
    refill(k);
}

/* A controller reply replaces whatever keyboard bytes were unread, as the
 * real controller's single output buffer does. */
static void reply(struct vmm_i8042 *k, uint8_t b, bool aux)
{
    k->count = 0;
    k->status &= (uint8_t) ~(STS_OBF | STS_AUXDATA);
    push(k, b);
    if (aux) k->status |= STS_AUXDATA;
}

static void keyboard_write(struct vmm_i8042 *k, uint8_t b)
{
    if (k->pending == KBD_PARAM) {
        k->pending = NONE;
        if (k->kbd_cmd == 0xF0 && b == 0) {
            push(k, 0xFA);
            push(k, 0x02); /* scan code set 2 */
        } else {
            push(k, 0xFA); /* LEDs, typematic rate, set selection */
        }
        return;
    }
    switch (b) {
    case 0xFF: /* reset: ACK, then BAT passed */
        k->kbd_enabled = true;
        push(k, 0xFA);
        push(k, 0xAA);
        break;
    case 0xF2: /* identify: an MF2 keyboard */
        push(k, 0xFA);
        push(k, 0xAB);
        push(k, 0x83);
        break;
    case 0xED: /* LEDs */
    case 0xF3: /* typematic rate */
    case 0xF0: /* scan code set */
        k->kbd_cmd = b;
        k->pending = KBD_PARAM;
        push(k, 0xFA);
        break;
    case 0xEE: push(k, 0xEE); break; /* echo */
    case 0xF4: k->kbd_enabled = true, push(k, 0xFA); break;
    case 0xF5: k->kbd_enabled = false, push(k, 0xFA); break;
    case 0xF6: k->kbd_enabled = true, push(k, 0xFA); break;
    case 0xF7:
    case 0xF8:
    case 0xF9:
    case 0xFA:
    case 0xFB:
    case 0xFC:
    case 0xFD: push(k, 0xFA); break;
    default: push(k, 0xFE); break; /* resend: unknown command */
    }
}

static void command(struct vmm_i8042 *k, uint8_t c)
{
    switch (c) {
    case 0x20: reply(k, k->ctr, false); break;
    case 0x60: k->pending = CTL_WRITE_CTR; break;
    case 0xA7: k->ctr |= CTR_AUXDIS; break;
    case 0xA8: k->ctr &= (uint8_t)~CTR_AUXDIS; break;
    case 0xA9: reply(k, 0x01, false); break; /* AUX clock line stuck low: no port */
    case 0xAA:                               /* self test */
        k->status |= STS_SYS;
        reply(k, 0x55, false);
        break;
    case 0xAB: reply(k, 0x00, false); break; /* keyboard interface test: OK */
    case 0xAD: k->ctr |= CTR_KBDDIS; break;
    case 0xAE: k->ctr &= (uint8_t)~CTR_KBDDIS; break;
    case 0xC0: reply(k, 0x80, false); break; /* input port: not locked */
    case 0xD0: reply(k, k->outp, false); break;
    case 0xD1: k->pending = CTL_WRITE_OUTP; break;
    case 0xD2: k->pending = CTL_WRITE_KBD_OBUF; break;
    case 0xD3: k->pending = CTL_WRITE_AUX_OBUF; break;
    case 0xD4: k->pending = CTL_WRITE_AUX; break;
    default:
        /* 0xF0-0xFF pulse output port bits 0-3 low for 6 us; bit 0 is
         * the CPU reset line. */
        if (c >= 0xF0 && !(c & OUTP_RESET)) reset_machine(k);
        break;
    }
}

static void data_write(struct vmm_i8042 *k, uint8_t b)
{
    enum pending p = k->pending;
    if (p != KBD_PARAM) k->pending = NONE;
    switch (p) {
    case CTL_WRITE_CTR:
        k->ctr = b;
        if (b & CTR_SYS)
            k->status |= STS_SYS;
        else
            k->status &= (uint8_t)~STS_SYS;
        break;
    case CTL_WRITE_OUTP:
        k->outp = b;
        if (!(b & OUTP_RESET)) reset_machine(k);
        break;
    case CTL_WRITE_KBD_OBUF: reply(k, b, false); break;
    /* No AUX port: the loopback comes back as keyboard data, which Linux
     * reads as "no AUX" at once instead of waiting half a second. */
    case CTL_WRITE_AUX_OBUF: reply(k, b, false); break;
    case CTL_WRITE_AUX: break; /* nothing is attached */
    case NONE:
    case KBD_PARAM:
        /* Writing to the keyboard re-enables its interface. */
        k->ctr &= (uint8_t)~CTR_KBDDIS;
        keyboard_write(k, b);
        break;
    }
}

static uint64_t kbc_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_i8042 *k = dev;
    (void)size;
    if (offset == 4) return k->status;
    if (offset != 0) return 0xFF;
    uint8_t b = k->count ? k->q[k->head] : 0;
    if (k->status & STS_OBF) {
        k->head = (k->head + 1) % QUEUE;
        k->count--;
        k->status &= (uint8_t) ~(STS_OBF | STS_AUXDATA);
        refill(k);
    }
    return b;
}

static void kbc_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_i8042 *k = dev;
    (void)size;
    if (offset == 4) {
        k->status |= STS_CMD;
        k->pending = NONE;
        command(k, (uint8_t)value);
    } else if (offset == 0) {
        k->status &= (uint8_t)~STS_CMD;
        data_write(k, (uint8_t)value);
    }
}

/* 0x60-0x64 is claimed as one range: 0x61 belongs to the PIT, so two claims. */
static uint64_t data_read(void *dev, uint64_t offset, unsigned size)
{
    (void)offset;
    return kbc_read(dev, 0, size);
}
static void data_write_port(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    (void)offset;
    kbc_write(dev, 0, size, value);
}
static uint64_t status_read(void *dev, uint64_t offset, unsigned size)
{
    (void)offset;
    return kbc_read(dev, 4, size);
}
static void command_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    (void)offset;
    kbc_write(dev, 4, size, value);
}

static uint64_t port92_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_i8042 *k = dev;
    (void)offset;
    (void)size;
    return k->port92;
}

static void port92_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_i8042 *k = dev;
    (void)offset;
    (void)size;
    /* Bit 0 going from 0 to 1 is the fast reset; bit 1 gates A20 (always
     * on in this machine, but remembered). */
    if ((value & 1) && !(k->port92 & 1)) reset_machine(k);
    k->port92 = (uint8_t)(value & 0x03);
}

static const struct vmm_io_ops data_ops = {data_read, data_write_port};
static const struct vmm_io_ops cmd_ops = {status_read, command_write};
static const struct vmm_io_ops port92_ops = {port92_read, port92_write};

struct vmm_i8042 *vmm_i8042_new(struct hvp_vm *vm)
{
    struct vmm_i8042 *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->vm = vm;
    k->status = STS_SYS | STS_UNLOCK;
    k->ctr = CTR_DEFAULT;
    k->outp = OUTP_RESET | OUTP_A20;
    k->port92 = 0x02; /* A20 on */
    k->kbd_enabled = true;
    if (vmm_bus_claim(vm, VMM_PIO, 0x60, 1, &data_ops, k, "i8042-data") < 0) goto fail;
    if (vmm_bus_claim(vm, VMM_PIO, 0x64, 1, &cmd_ops, k, "i8042-cmd") < 0) goto fail_data;
    if (vmm_bus_claim(vm, VMM_PIO, 0x92, 1, &port92_ops, k, "port92") < 0) goto fail_cmd;
    return k;
fail_cmd:
    vmm_bus_release(vm, VMM_PIO, 0x64);
fail_data:
    vmm_bus_release(vm, VMM_PIO, 0x60);
fail:
    free(k);
    return NULL;
}

void vmm_i8042_free(struct vmm_i8042 *k)
{
    if (!k) return;
    vmm_bus_release(k->vm, VMM_PIO, 0x60);
    vmm_bus_release(k->vm, VMM_PIO, 0x64);
    vmm_bus_release(k->vm, VMM_PIO, 0x92);
    free(k);
}
