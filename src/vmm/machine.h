/* The machine core's private state: struct hvp_vm and what machine.c,
 * vcpu.c and timer.c share. Devices see only vmm_internal.h. */
#ifndef HVP_VMM_MACHINE_H
#define HVP_VMM_MACHINE_H

#include <hvp/platform.h>
#include <hvp/vmm.h>

#include "boot.h"
#include "bus.h"
#include "vmm_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define VMM_ERRLEN 512

/* Memory map: RAM from 0 up to the 32-bit PCI hole, the rest from 4 GiB. */
#define VMM_PCI_HOLE     0xc0000000ull /* 3 GiB: PCI MMIO, IOAPIC, LAPIC up to 4 GiB */
#define VMM_IOAPIC_GPA   0xfec00000ull
#define VMM_LAPIC_GPA    0xfee00000ull
#define VMM_RSDP_GPA     0xe0000ull
#define VMM_ACPI_TABLES  0xe1000ull
#define VMM_ACPI_MAX     (0x100000ull - VMM_ACPI_TABLES)
#define VMM_MIN_MEMORY   (32ull << 20)
#define VMM_CONSOLE_QLEN 65536u

struct vmm_timer {
    struct hvp_vm *vm;
    void (*fn)(void *dev);
    void *dev;
    uint64_t deadline; /* guest ns */
    bool armed;
    struct vmm_timer *next;
};

struct vmm_vcpu {
    struct hvp_vm *vm;
    unsigned index;
    _Atomic(struct hvp_vcpu *) v;
    pthread_t thread;
    bool started;
    atomic_bool want_window; /* the PIC's INTR is up: ask for an interrupt window */
    bool injected;           /* a PIC vector is pending in PENDING_INTERRUPTION */
    uint64_t exits;
};

struct hvp_vm {
    struct hvp *h;
    struct hvp_partition *p;
    bool own_irqchip; /* the worker's PIC and IOAPIC (soft); else the backend's (kvm) */
    unsigned ncpus;

    /* Guest RAM: one host mapping, [0, low) at GPA 0 and the rest at 4 GiB. */
    uint8_t *ram;
    uint64_t ram_size;
    struct vmm_guest_ram layout;
    struct vmm_boot_info boot;

    /* The device lock: every device callback runs under it. */
    pthread_mutex_t lock;
    struct vmm_bus bus;

    /* Timers (timer.c): a list under the device lock, one thread. */
    pthread_cond_t timer_cond;
    pthread_t timer_thread;
    bool timer_started, timer_quit;
    struct vmm_timer *timers;
    uint64_t t0; /* CLOCK_MONOTONIC ns at creation */

    /* Halted vCPUs wait here for an interrupt line to move or for a stop. */
    pthread_mutex_t halt_lock;
    pthread_cond_t halt_cond;
    atomic_uint irq_events;
    atomic_uint halted_off; /* vCPUs halted with IF=0 */

    /* Stop: the first reason wins; its message goes to stop_msg. */
    atomic_int stop;
    char stop_msg[VMM_ERRLEN];
    bool ran;

    /* Devices, created in machine.c's order. */
    struct vmm_pic *pic;
    struct vmm_ioapic *ioapic;
    struct vmm_uart *com1;
    struct vmm_pit *pit;
    struct vmm_rtc *rtc;
    struct vmm_i8042 *i8042;
    struct vmm_misc *misc;
    struct vmm_pci *pci;
    struct vmm_acpi_pm *pm;
    struct vmm_timer *pic_retry; /* the PIC's INTR waits for LVT0 to open */

    /* The console: output callback; typed bytes queued for the UART. */
    void (*console_out)(void *ctx, const uint8_t *buf, size_t len);
    void *console_ctx;
    uint8_t *in_q;
    size_t in_head, in_len;

    struct vmm_vcpu *vcpus;
    struct hvp_emulator *emu;
    char err[VMM_ERRLEN];
};

/* machine.c */
int vmm_errorf(struct hvp_vm *vm, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vmm_stopf(struct hvp_vm *vm, enum vmm_stop_reason why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vmm_wake_halted(struct hvp_vm *vm);

/* vcpu.c */
extern const struct hvp_io_handler vmm_io_handler;
int vmm_emulator_create(struct hvp_vm *vm);
void *vmm_vcpu_main(void *arg);
/* The PIC raised INTR: get vCPU 0 to open an interrupt window. */
void vmm_vcpu_want_window(struct hvp_vm *vm);

/* timer.c */
int vmm_timers_start(struct hvp_vm *vm);
void vmm_timers_stop(struct hvp_vm *vm);
void vmm_timers_free(struct hvp_vm *vm);
int vmm_timer_cond_init(pthread_cond_t *c); /* CLOCK_MONOTONIC */
uint64_t vmm_mono_ns(void);

#endif
