/* 16550A: what drivers/tty/serial/8250 relies on. */
#include <criterion/criterion.h>
#include <string.h>

#include "fake_machine.h"

#define COM1 0x3F8
#define GSI  4

static struct vmm_uart *setup(struct hvp_vm *vm)
{
    struct vmm_uart *u = vmm_uart_new(vm, COM1, GSI);
    cr_assert_not_null(u);
    return u;
}

Test(uart, identifies_as_16550a_and_prints)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    /* autoconfig: IER scratch test, then FIFO identification. */
    fake_outb(vm, COM1 + 1, 0);
    cr_assert_eq(fake_inb(vm, COM1 + 1), 0);
    fake_outb(vm, COM1 + 1, 0x0F);
    cr_assert_eq(fake_inb(vm, COM1 + 1), 0x0F);
    fake_outb(vm, COM1 + 1, 0);
    fake_outb(vm, COM1 + 7, 0x5A);
    cr_assert_eq(fake_inb(vm, COM1 + 7), 0x5A, "scratch register");
    cr_assert_eq(fake_inb(vm, COM1 + 2) >> 6, 0, "FIFOs off: a 16450 until enabled");
    fake_outb(vm, COM1 + 2, 0x01);
    cr_assert_eq(fake_inb(vm, COM1 + 2) >> 6, 3, "16550A: IIR bits 7:6 set");
    /* The EFR probe (LCR 0xBF) must not find a 16650: IIR is not 0. */
    fake_outb(vm, COM1 + 3, 0xBF);
    cr_assert_neq(fake_inb(vm, COM1 + 2), 0);
    fake_outb(vm, COM1 + 3, 0x03);
    /* Polled console output: LSR THRE|TEMT, then THR. */
    const char *msg = "Linux version";
    for (const char *p = msg; *p; p++) {
        cr_assert_eq(fake_inb(vm, COM1 + 5) & 0x60, 0x60);
        fake_outb(vm, COM1, (uint8_t)*p);
    }
    cr_assert_eq(vm->console_len, strlen(msg));
    cr_assert(memcmp(vm->console, msg, strlen(msg)) == 0);
    vmm_uart_free(u);
    fake_vm_free(vm);
}

Test(uart, divisor_latch)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    fake_outb(vm, COM1 + 1, 0x05);
    fake_outb(vm, COM1 + 3, 0x83); /* DLAB */
    fake_outb(vm, COM1 + 0, 0x01); /* 115200 */
    fake_outb(vm, COM1 + 1, 0x00);
    cr_assert_eq(fake_inb(vm, COM1 + 0), 0x01);
    cr_assert_eq(fake_inb(vm, COM1 + 1), 0x00);
    fake_outb(vm, COM1 + 3, 0x03);
    cr_assert_eq(fake_inb(vm, COM1 + 1), 0x05, "IER kept behind the latch");
    cr_assert_eq(vm->console_len, 0, "DLL writes are not output");
    vmm_uart_free(u);
    fake_vm_free(vm);
}

Test(uart, loopback_and_modem_status)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    cr_assert_eq(fake_inb(vm, COM1 + 6) & 0xF0, 0xB0, "CTS, DSR, DCD from the host side");
    /* The ttyS3-style loopback test: MCR = LOOP|OUT2|RTS gives MSR 0x90. */
    fake_outb(vm, COM1 + 4, 0x1A);
    cr_assert_eq(fake_inb(vm, COM1 + 6) & 0xF0, 0x90);
    fake_outb(vm, COM1 + 4, 0x1F);
    uint8_t msr = fake_inb(vm, COM1 + 6);
    cr_assert_eq(msr & 0xF0, 0xF0);
    cr_assert_eq(msr & 0x02, 0x02, "DSR changed: DDSR");
    cr_assert_eq(fake_inb(vm, COM1 + 6) & 0x0F, 0, "deltas clear on read");
    fake_outb(vm, COM1 + 4, 0x1B); /* OUT1 (RI) falls: trailing edge */
    cr_assert_eq(fake_inb(vm, COM1 + 6) & 0x04, 0x04);
    cr_assert_eq(vmm_uart_rx_room(u), 0, "host input waits during loopback");
    fake_outb(vm, COM1, 'x');
    cr_assert_eq(vm->console_len, 0, "loopback bytes do not reach the console");
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 1, 1);
    cr_assert_eq(fake_inb(vm, COM1), 'x');
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 1, 0);
    /* Non-FIFO mode holds one byte: a second one overruns. */
    fake_outb(vm, COM1, 'a');
    fake_outb(vm, COM1, 'b');
    uint8_t lsr = fake_inb(vm, COM1 + 5);
    cr_assert_eq(lsr & 0x03, 0x03, "DR and OE");
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 0x02, 0, "OE clears on read");
    cr_assert_eq(fake_inb(vm, COM1), 'a');
    vmm_uart_free(u);
    fake_vm_free(vm);
}

Test(uart, thre_interrupt_like_the_8250_startup_test)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    fake_outb(vm, COM1 + 4, 0x0B); /* DTR|RTS|OUT2: IRQ enabled */
    fake_outb(vm, COM1 + 1, 0x02);
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x02, "THRE interrupt");
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x01, "consumed by the IIR read");
    fake_outb(vm, COM1 + 1, 0x00);
    fake_outb(vm, COM1 + 1, 0x02);
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x02, "re-asserted when THRI is enabled again");
    /* Each THR write is a new edge on the line (the PIC/IOAPIC are edge). */
    unsigned e = vm->edges[GSI];
    fake_outb(vm, COM1, 'a');
    cr_assert(vm->level[GSI]);
    cr_assert_eq(vm->edges[GSI], e + 1);
    fake_outb(vm, COM1, 'b');
    cr_assert_eq(vm->edges[GSI], e + 2);
    /* The driver stops TX by clearing THRI: the line drops. */
    fake_outb(vm, COM1 + 1, 0x00);
    cr_assert(!vm->level[GSI]);
    /* OUT2 gates the IRQ line on a PC. */
    fake_outb(vm, COM1 + 1, 0x02);
    cr_assert(vm->level[GSI]);
    fake_outb(vm, COM1 + 4, 0x03);
    cr_assert(!vm->level[GSI]);
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x02, "IIR still reports it");
    vmm_uart_free(u);
    fake_vm_free(vm);
}

Test(uart, rx_trigger_level_timeout_and_priorities)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    fake_outb(vm, COM1 + 3, 0x83);
    fake_outb(vm, COM1 + 0, 0x01); /* 115200 8N1 */
    fake_outb(vm, COM1 + 1, 0x00);
    fake_outb(vm, COM1 + 3, 0x03);
    fake_outb(vm, COM1 + 2, 0x87); /* FIFO on, cleared, trigger 8 */
    fake_outb(vm, COM1 + 4, 0x0B);
    fake_outb(vm, COM1 + 1, 0x07); /* RDI | THRI | RLSI */
    cr_assert_eq(vmm_uart_rx_room(u), 16);
    cr_assert_eq(fake_inb(vm, COM1 + 2), 0xC2, "THRE, with FIFO bits");
    vmm_uart_receive(u, (const uint8_t *)"hello", 5);
    cr_assert_eq(vmm_uart_rx_room(u), 11);
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x01, "5 bytes: below the trigger of 8");
    cr_assert(!vm->level[GSI]);
    /* Character timeout: 4 characters of 10 bits at 115200 = 347 us. */
    fake_advance(vm, 300000);
    cr_assert(!vm->level[GSI]);
    fake_advance(vm, 60000);
    cr_assert(vm->level[GSI], "timeout interrupt");
    cr_assert_eq(fake_inb(vm, COM1 + 2), 0xCC);
    char got[6] = {0};
    for (int i = 0; fake_inb(vm, COM1 + 5) & 1; i++)
        got[i] = (char)fake_inb(vm, COM1);
    cr_assert_str_eq(got, "hello");
    cr_assert(!vm->level[GSI]);
    /* Reaching the trigger level interrupts at once. */
    vmm_uart_receive(u, (const uint8_t *)"12345678", 8);
    cr_assert(vm->level[GSI]);
    cr_assert_eq(fake_inb(vm, COM1 + 2), 0xC4);
    /* Line status outranks data: an overrun (loopback into a full FIFO). */
    vmm_uart_receive(u, (const uint8_t *)"abcdefgh", 8);
    cr_assert_eq(vmm_uart_rx_room(u), 0);
    fake_outb(vm, COM1 + 4, 0x1B);
    fake_outb(vm, COM1, 'z');
    cr_assert_eq(fake_inb(vm, COM1 + 2), 0xC6, "receiver line status first");
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 0x02, 0x02);
    cr_assert_eq(fake_inb(vm, COM1 + 2), 0xC4, "then data");
    /* FCR clear empties the receive FIFO. */
    fake_outb(vm, COM1 + 2, 0x83);
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 1, 0);
    vmm_uart_free(u);
    fake_vm_free(vm);
}

Test(uart, modem_status_interrupt_is_lowest)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    fake_outb(vm, COM1 + 4, 0x18); /* loop | OUT2 */
    fake_inb(vm, COM1 + 6);
    fake_outb(vm, COM1 + 1, 0x0A); /* MSI | THRI */
    fake_outb(vm, COM1 + 4, 0x19); /* DTR: DSR changes */
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x02, "THRE before modem status");
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x00, "modem status");
    fake_inb(vm, COM1 + 6);
    cr_assert_eq(fake_inb(vm, COM1 + 2) & 0x0F, 0x01);
    vmm_uart_free(u);
    fake_vm_free(vm);
}

struct feeder {
    struct vmm_uart *u;
    const char *text;
    size_t pos, calls;
};

/* The machine's side: push as much queued input as the FIFO takes. */
static void feed(void *ctx)
{
    struct feeder *f = ctx;
    f->calls++;
    size_t left = strlen(f->text) - f->pos, room = vmm_uart_rx_room(f->u);
    size_t n = left < room ? left : room;
    vmm_uart_receive(f->u, (const uint8_t *)f->text + f->pos, n);
    f->pos += n;
}

Test(uart, rx_notify_lets_queued_input_follow_without_polling)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_uart *u = setup(vm);
    fake_outb(vm, COM1 + 2, 0x81); /* FIFO, trigger 8, as Linux sets it */
    struct feeder f = {.u = u, .text = "a paste longer than one sixteen-byte FIFO, read at once"};
    vmm_uart_set_rx_notify(u, feed, &f);
    feed(&f);
    char got[128] = {0};
    size_t n = 0;
    /* Linux's serial8250_rx_chars: read while LSR.DR, up to 256. */
    while ((fake_inb(vm, COM1 + 5) & 1) && n < sizeof got - 1)
        got[n++] = (char)fake_inb(vm, COM1);
    cr_assert_str_eq(got, f.text, "all of it in one interrupt's worth of reads");
    cr_assert_eq(f.calls, 1 + (strlen(f.text) + 15) / 16);
    cr_assert_eq(fake_inb(vm, COM1 + 5) & 2, 0, "no overrun");
    vmm_uart_free(u);
    fake_vm_free(vm);
}
