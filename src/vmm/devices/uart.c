/* 16550A UART: 16-byte receive FIFO with trigger levels and character
 * timeout, divisor latch, modem control/status with loopback, and the
 * four interrupt causes in their priority order. Transmitted bytes go to
 * the console at once (no baud-rate pacing: nothing to gain by making the
 * guest wait); received bytes come from vmm_uart_receive(). */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

#define FIFO 16

#define IER_RDI  0x01 /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI  0x08 /* modem status */

#define IIR_NONE    0x01
#define IIR_MSI     0x00
#define IIR_THRI    0x02
#define IIR_RDI     0x04
#define IIR_RLSI    0x06
#define IIR_TIMEOUT 0x0C
#define IIR_FIFO    0xC0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08 /* gates the IRQ line on a PC */
#define MCR_LOOP 0x10

#define LSR_DR    0x01
#define LSR_OE    0x02
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define LSR_ERROR 0x1E /* OE, PE, FE, BI: the line status interrupt */

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80

struct vmm_uart {
    struct hvp_vm *vm;
    struct vmm_timer *timeout; /* character timeout of the receive FIFO */
    uint16_t port;
    unsigned gsi;
    uint8_t rx[FIFO];
    unsigned rx_head, rx_count;
    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
    bool thre_pending; /* THR empty, not yet consumed by IIR read or THR write */
    bool timeout_pending;
    bool irq; /* level driven on the GSI */
    void (*rx_notify)(void *ctx);
    void *rx_ctx;
};

static bool fifo_on(const struct vmm_uart *u)
{
    return u->fcr & FCR_ENABLE;
}

static unsigned trigger(const struct vmm_uart *u)
{
    static const unsigned levels[4] = {1, 4, 8, 14};
    return fifo_on(u) ? levels[u->fcr >> 6] : 1;
}

static uint8_t cause(const struct vmm_uart *u)
{
    if ((u->ier & IER_RLSI) && (u->lsr & LSR_ERROR)) return IIR_RLSI;
    if ((u->ier & IER_RDI) && u->rx_count >= trigger(u)) return IIR_RDI;
    if ((u->ier & IER_RDI) && u->timeout_pending && u->rx_count) return IIR_TIMEOUT;
    if ((u->ier & IER_THRI) && u->thre_pending) return IIR_THRI;
    if ((u->ier & IER_MSI) && (u->msr & 0x0F)) return IIR_MSI;
    return IIR_NONE;
}

static void update_irq(struct vmm_uart *u)
{
    bool level = cause(u) != IIR_NONE && (u->mcr & MCR_OUT2);
    if (level != u->irq) {
        u->irq = level;
        vmm_irq_set(u->vm, u->gsi, level);
    }
}

/* Time of 4 characters at the programmed rate: the FIFO's timeout. */
static uint64_t timeout_ns(const struct vmm_uart *u)
{
    unsigned divisor = (unsigned)u->dll | (unsigned)u->dlm << 8;
    if (!divisor) divisor = 0x10000;
    unsigned bits = 1 + 5 + (u->lcr & 3) + ((u->lcr & 8) ? 1 : 0) + ((u->lcr & 4) ? 2 : 1);
    return 4ull * bits * divisor * 1000000000ull / 115200;
}

/* Receive or read activity restarts the timeout. */
static void restart_timeout(struct vmm_uart *u)
{
    u->timeout_pending = false;
    if (fifo_on(u) && u->rx_count)
        vmm_timer_arm(u->timeout, vmm_now_ns(u->vm) + timeout_ns(u));
    else
        vmm_timer_cancel(u->timeout);
}

static void timeout_fired(void *dev)
{
    struct vmm_uart *u = dev;
    if (u->rx_count) u->timeout_pending = true;
    update_irq(u);
}

static void rx_push(struct vmm_uart *u, uint8_t b)
{
    unsigned depth = fifo_on(u) ? FIFO : 1;
    if (u->rx_count >= depth) {
        u->lsr |= LSR_OE; /* the byte in the shift register is lost */
        return;
    }
    u->rx[(u->rx_head + u->rx_count++) % FIFO] = b;
    u->lsr |= LSR_DR;
}

static void rx_clear(struct vmm_uart *u)
{
    u->rx_head = u->rx_count = 0;
    u->lsr &= (uint8_t)~LSR_DR;
    u->timeout_pending = false;
    vmm_timer_cancel(u->timeout);
}

/* Modem inputs: the host side is always there (CTS, DSR, DCD); in
 * loopback they follow the outputs. Changes set the delta bits. */
static void update_msr(struct vmm_uart *u)
{
    uint8_t in;
    if (u->mcr & MCR_LOOP)
        in = (uint8_t)((u->mcr & MCR_RTS ? MSR_CTS : 0) | (u->mcr & MCR_DTR ? MSR_DSR : 0) |
                       (u->mcr & MCR_OUT1 ? MSR_RI : 0) | (u->mcr & MCR_OUT2 ? MSR_DCD : 0));
    else
        in = MSR_CTS | MSR_DSR | MSR_DCD;
    uint8_t old = u->msr, delta = 0;
    if ((old ^ in) & MSR_CTS) delta |= MSR_DCTS;
    if ((old ^ in) & MSR_DSR) delta |= MSR_DDSR;
    if ((old ^ in) & MSR_DCD) delta |= MSR_DDCD;
    if ((old & MSR_RI) && !(in & MSR_RI)) delta |= MSR_TERI;
    u->msr = (uint8_t)(in | (old & 0x0F) | delta);
}

static void transmit(struct vmm_uart *u, uint8_t b)
{
    /* Writing THR consumes a THRE interrupt: drop the line first, so that
     * the THR becoming empty again is a new edge. */
    u->thre_pending = false;
    update_irq(u);
    if (u->mcr & MCR_LOOP) {
        rx_push(u, b);
        restart_timeout(u);
    } else {
        vmm_console_write(u->vm, &b, 1);
    }
    u->thre_pending = true;
}

static uint64_t uart_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_uart *u = dev;
    uint8_t v = 0;
    (void)size;
    switch (offset) {
    case 0:
        if (u->lcr & LCR_DLAB) {
            v = u->dll;
            break;
        }
        if (u->rx_count) {
            v = u->rx[u->rx_head];
            u->rx_head = (u->rx_head + 1) % FIFO;
            if (!--u->rx_count) u->lsr &= (uint8_t)~LSR_DR;
            restart_timeout(u);
            /* Drained: the other end may send more now (not in loopback,
             * where the receiver listens to the transmitter). */
            if (!u->rx_count && u->rx_notify && !(u->mcr & MCR_LOOP)) u->rx_notify(u->rx_ctx);
        } else {
            restart_timeout(u);
        }
        break;
    case 1: v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier; break;
    case 2:
        v = cause(u);
        if (v == IIR_THRI) u->thre_pending = false; /* reading it is the acknowledgment */
        if (fifo_on(u)) v |= IIR_FIFO;
        break;
    case 3: v = u->lcr; break;
    case 4: v = u->mcr; break;
    case 5:
        v = u->lsr;
        u->lsr &= (uint8_t)~LSR_ERROR;
        break;
    case 6:
        v = u->msr;
        u->msr &= 0xF0;
        break;
    case 7: v = u->scr; break;
    default: v = 0xFF; break;
    }
    update_irq(u);
    return v;
}

static void uart_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_uart *u = dev;
    uint8_t v = (uint8_t)value;
    (void)size;
    switch (offset) {
    case 0:
        if (u->lcr & LCR_DLAB)
            u->dll = v;
        else
            transmit(u, v);
        break;
    case 1:
        if (u->lcr & LCR_DLAB) {
            u->dlm = v;
        } else {
            /* Enabling THRI while the THR is empty raises it again: the
             * 8250 driver's THRE test relies on that. */
            if ((v & IER_THRI) && !(u->ier & IER_THRI)) u->thre_pending = true;
            u->ier = v & 0x0F;
        }
        break;
    case 2:
        if ((v ^ u->fcr) & FCR_ENABLE) rx_clear(u); /* switching mode empties the FIFOs */
        if (v & FCR_CLEAR_RX) rx_clear(u);
        u->fcr = v & 0xC9; /* trigger level, DMA mode, enable; the clear bits self-clear */
        if (!(u->fcr & FCR_ENABLE)) u->fcr = 0;
        break;
    case 3: u->lcr = v; break;
    case 4:
        u->mcr = v & 0x1F;
        update_msr(u);
        break;
    case 5: break; /* LSR is read-only (factory test only) */
    case 6: break;
    case 7: u->scr = v; break;
    default: break;
    }
    update_irq(u);
}

static const struct vmm_io_ops uart_ops = {uart_read, uart_write};

void vmm_uart_receive(struct vmm_uart *u, const uint8_t *buf, size_t len)
{
    if (!len) return;
    for (size_t i = 0; i < len; i++)
        rx_push(u, buf[i]);
    restart_timeout(u);
    update_irq(u);
}

void vmm_uart_set_rx_notify(struct vmm_uart *u, void (*fn)(void *ctx), void *ctx)
{
    u->rx_notify = fn;
    u->rx_ctx = ctx;
}

size_t vmm_uart_rx_room(struct vmm_uart *u)
{
    unsigned depth = fifo_on(u) ? FIFO : 1;
    /* In loopback the receiver listens to the transmitter, not the line. */
    if (u->mcr & MCR_LOOP) return 0;
    return depth - u->rx_count;
}

struct vmm_uart *vmm_uart_new(struct hvp_vm *vm, uint16_t port, unsigned gsi)
{
    struct vmm_uart *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->vm = vm;
    u->port = port;
    u->gsi = gsi;
    u->lsr = LSR_THRE | LSR_TEMT;
    u->dll = 0x0C; /* 9600 baud, as after a BIOS */
    u->lcr = 0x03;
    u->msr = MSR_CTS | MSR_DSR | MSR_DCD;
    u->timeout = vmm_timer_new(vm, timeout_fired, u);
    if (!u->timeout) goto fail;
    if (vmm_bus_claim(vm, VMM_PIO, port, 8, &uart_ops, u, "uart") < 0) goto fail_timer;
    return u;
fail_timer:
    vmm_timer_free(u->timeout);
fail:
    free(u);
    return NULL;
}

void vmm_uart_free(struct vmm_uart *u)
{
    if (!u) return;
    vmm_bus_release(u->vm, VMM_PIO, u->port);
    vmm_timer_free(u->timeout);
    free(u);
}
