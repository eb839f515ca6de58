/* hvp worker: one virtual machine in this process.
 *
 * The counterpart of Hyper-V's VM worker process (vmwp): the virtual
 * motherboard (memory map, legacy devices, interrupt routing), the Linux
 * boot loader and the vCPU threads, on top of the platform (platform.h).
 *
 *     struct hvp_vm_config c = {.size = sizeof c, .kernel = "bzImage",
 *                               .memory = 512 << 20, .cpus = 1};
 *     struct hvp_vm *vm;      hvp_vm_create(&c, &vm, err, sizeof err)
 *     enum hvp_vm_stop why;   hvp_vm_run(vm, &why)      (blocks)
 *                             hvp_vm_destroy(vm)
 *
 * The library never prints and never exits: guest console output goes to
 * the config's console_out callback, failures into a message
 * (hvp_vm_error, or errbuf for hvp_vm_create). Functions return 0 or a
 * negative errno.
 *
 * Threads: hvp_vm_run runs one thread per vCPU and one timer thread and
 * returns when the VM stops. hvp_vm_request_stop and hvp_vm_console_input
 * may be called from any other thread while it runs (not from a signal
 * handler).
 */
#ifndef HVP_VMM_H
#define HVP_VMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hvp_vm;

/* Why a VM stopped (hvp_vm_run's result). */
enum hvp_vm_stop {
    HVP_VM_STOP_NONE = 0,
    HVP_VM_STOP_POWEROFF,     /* the guest powered off (ACPI S5, or halted for good) */
    HVP_VM_STOP_RESET,        /* the guest asked for a reset (i8042, 0xCF9, port 0x92) */
    HVP_VM_STOP_TRIPLE_FAULT, /* a vCPU hit a triple fault (shutdown) */
    HVP_VM_STOP_HOST,         /* hvp_vm_request_stop() */
    HVP_VM_STOP_ERROR,        /* the VM could not go on: hvp_vm_error() says why */
};
const char *hvp_vm_stop_name(enum hvp_vm_stop why);

#define HVP_VM_MAX_CPUS 64u

struct hvp_vm_config {
    uint32_t size;       /* sizeof(struct hvp_vm_config): lets the struct grow */
    uint32_t cpus;       /* vCPUs, 1..HVP_VM_MAX_CPUS; 0 = 1 */
    uint64_t memory;     /* guest RAM in bytes (a multiple of 4 KiB, at least 32 MiB) */
    const char *backend; /* "auto", "soft" or "kvm"; NULL = "auto" */
    const char *kernel;  /* bzImage path (required) */
    const char *initrd;  /* initramfs path or NULL */
    const char *cmdline; /* kernel command line or NULL (empty) */
    /* Guest bytes written to COM1. Called from vCPU or timer threads, one
     * call at a time (the device lock is held: do not call back into the
     * VM from here). May be NULL (output discarded). */
    void (*console_out)(void *ctx, const uint8_t *buf, size_t len);
    void *console_ctx;
};

/* Loads the kernel (and initrd), builds the machine and its firmware tables.
 * On failure *out is NULL and errbuf holds why, naming the file or option
 * ("/boot/vmlinuz: not a bzImage: ..."). */
int hvp_vm_create(const struct hvp_vm_config *c, struct hvp_vm **out, char *errbuf, size_t errlen);
/* Runs the VM until it stops; *why says why. Returns 0, or a negative errno
 * when the run could not start (threads, vCPUs): then hvp_vm_error(). A VM
 * runs once. */
int hvp_vm_run(struct hvp_vm *vm, enum hvp_vm_stop *why);
/* Stops the running VM (reason HVP_VM_STOP_HOST unless it already stopped
 * for another). */
void hvp_vm_request_stop(struct hvp_vm *vm);
/* Bytes typed at the console for COM1. Queued (up to 64 KiB; returns how
 * many were taken) and fed to the UART as its FIFO drains. */
size_t hvp_vm_console_input(struct hvp_vm *vm, const uint8_t *buf, size_t len);
/* The backend the VM runs on ("kvm" or "soft"). */
const char *hvp_vm_backend(const struct hvp_vm *vm);
/* Human detail of the last failure or of the stop ("" if none). */
const char *hvp_vm_error(const struct hvp_vm *vm);
void hvp_vm_destroy(struct hvp_vm *vm);

#ifdef __cplusplus
}
#endif

#endif
