/* The machine definition: memory layout, the ordered device list, IRQ
 * routing, the console's queue, the stop path and the public worker API
 * (include/hvp/vmm.h).
 *
 * Memory map (pc-machine.md 1.3, 1.7):
 *   0 - 0x9FC00            RAM (zero page, GDT, page tables, command line)
 *   0x9FC00 - 0xA0000      reserved (EBDA slot)
 *   0xE0000 - 0x100000     reserved: RSDP and ACPI tables
 *   1 MiB - min(RAM, 3 GiB)  RAM: kernel at 1 MiB, runs from 16 MiB, initrd high
 *   3 GiB - 4 GiB          the 32-bit PCI hole: PCI MMIO, IOAPIC 0xFEC00000,
 *                          LAPIC 0xFEE00000
 *   4 GiB - ...            the RAM beyond 3 GiB
 */
#include "machine.h"

#include <hvp/emulator.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int vmm_errorf(struct hvp_vm *vm, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
    va_end(ap);
    return err;
}

void vmm_wake_halted(struct hvp_vm *vm)
{
    atomic_fetch_add(&vm->irq_events, 1);
    pthread_mutex_lock(&vm->halt_lock);
    pthread_cond_broadcast(&vm->halt_cond);
    pthread_mutex_unlock(&vm->halt_lock);
}

void vmm_stopf(struct hvp_vm *vm, enum vmm_stop_reason why, const char *fmt, ...)
{
    int none = VMM_STOP_NONE;
    if (!atomic_compare_exchange_strong(&vm->stop, &none, (int)why)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->stop_msg, sizeof(vm->stop_msg), fmt, ap);
    va_end(ap);
    for (unsigned i = 0; i < vm->ncpus; i++) {
        struct hvp_vcpu *v = atomic_load(&vm->vcpus[i].v);
        if (v) hvp_vcpu_cancel(v);
    }
    vmm_wake_halted(vm);
}

void vmm_request_stop(struct hvp_vm *vm, enum vmm_stop_reason why)
{
    static const char *const what[] = {
        [VMM_STOP_POWEROFF] = "the guest powered off",
        [VMM_STOP_RESET] = "the guest asked for a reset",
        [VMM_STOP_TRIPLE_FAULT] = "triple fault",
        [VMM_STOP_HOST] = "stopped from the host",
        [VMM_STOP_ERROR] = "a device failed",
    };
    if (why <= VMM_STOP_NONE || why > VMM_STOP_ERROR) why = VMM_STOP_ERROR;
    vmm_stopf(vm, why, "%s", what[why]);
}

struct hvp_partition *vmm_partition(struct hvp_vm *vm)
{
    return vm->p;
}

/* ---- the bus ---- */

int vmm_bus_claim(struct hvp_vm *vm, enum vmm_space space, uint64_t base, uint64_t len,
                  const struct vmm_io_ops *ops, void *dev, const char *name)
{
    return vmm_bus_add(&vm->bus, space, base, len, ops, dev, name, vm->err, sizeof(vm->err));
}

int vmm_bus_release(struct hvp_vm *vm, enum vmm_space space, uint64_t base)
{
    return vmm_bus_remove(&vm->bus, space, base, vm->err, sizeof(vm->err));
}

/* ---- guest memory ---- */

int vmm_read_gpa(struct hvp_vm *vm, uint64_t gpa, void *buf, size_t len)
{
    return hvp_read_gpa(vm->p, gpa, buf, len);
}

int vmm_write_gpa(struct hvp_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
    return hvp_write_gpa(vm->p, gpa, buf, len);
}

/* ---- interrupt routing ----
 * Own irqchip (soft): ISA IRQ n goes to PIC pin n and IOAPIC pin n, but
 * IRQ 0 (the PIT) to IOAPIC pin 2, as the MADT's override says; pin 0
 * carries the PIC's output (ExtINT). GSI 16-23 are IOAPIC-only.
 * kvm: the platform routes GSI n to IOAPIC pin n and PIC pin n (but not
 * GSI 2 to the PIC: that pin is the cascade), so IRQ 0 also raises GSI 2
 * for the IOAPIC pin the MADT names. */
void vmm_irq_set(struct hvp_vm *vm, unsigned gsi, bool level)
{
    if (gsi >= 24) return;
    if (!vm->own_irqchip) {
        hvp_set_irq_line(vm->p, gsi, level);
        if (gsi == 0) hvp_set_irq_line(vm->p, 2, level);
        return;
    }
    /* The PIC reports its INTR through pic_intr_changed. */
    if (gsi < 16 && vm->pic) vmm_pic_set_irq(vm->pic, gsi, level);
    if (vm->ioapic && gsi != 2) vmm_ioapic_set_irq(vm->ioapic, gsi == 0 ? 2 : gsi, level);
    if (level) vmm_wake_halted(vm);
}

void vmm_irq_pulse(struct hvp_vm *vm, unsigned gsi)
{
    vmm_irq_set(vm, gsi, true);
    vmm_irq_set(vm, gsi, false);
}

/* ---- the console ---- */

void vmm_console_write(struct hvp_vm *vm, const uint8_t *buf, size_t len)
{
    if (vm->console_out && len) vm->console_out(vm->console_ctx, buf, len);
}

/* Feeds queued input to the UART as its FIFO has room (device lock held);
 * the UART calls it again when the guest has read its FIFO empty. */
static void console_pump(void *arg)
{
    struct hvp_vm *vm = arg;
    if (!vm->com1) {
        vm->in_len = 0;
        return;
    }
    while (vm->in_len) {
        size_t room = vmm_uart_rx_room(vm->com1);
        size_t n = vm->in_len < room ? vm->in_len : room;
        if (vm->in_head + n > VMM_CONSOLE_QLEN) n = VMM_CONSOLE_QLEN - vm->in_head;
        if (!n) break;
        vmm_uart_receive(vm->com1, vm->in_q + vm->in_head, n);
        vm->in_head = (vm->in_head + n) % VMM_CONSOLE_QLEN;
        vm->in_len -= n;
    }
}

size_t hvp_vm_console_input(struct hvp_vm *vm, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&vm->lock);
    size_t n = VMM_CONSOLE_QLEN - vm->in_len;
    if (n > len) n = len;
    for (size_t i = 0; i < n; i++)
        vm->in_q[(vm->in_head + vm->in_len + i) % VMM_CONSOLE_QLEN] = buf[i];
    vm->in_len += n;
    console_pump(vm);
    pthread_mutex_unlock(&vm->lock);
    return n;
}

/* ---- the devices, in creation order ----
 * Interrupt controllers first (others raise lines at creation), then the
 * legacy devices, PCI and the ACPI block. A device that needs the worker's
 * own irqchip is skipped when the backend has one. */
struct machine_device {
    const char *name;
    bool own_irqchip_only;
    int (*create)(struct hvp_vm *vm);
    void (*destroy)(struct hvp_vm *vm);
};

#define NEW(field_, expr_)                                                                         \
    do {                                                                                           \
        vm->field_ = (expr_);                                                                      \
        return vm->field_ ? 0 : -ENODEV;                                                           \
    } while (0)

/* The PIC's INTR output: to the IOAPIC's pin 0 (ExtINT, virtual wire
 * through the IOAPIC) and to vCPU 0's LINT0 through an interrupt window. */
static void pic_intr_changed(void *ctx, bool level)
{
    struct hvp_vm *vm = ctx;
    if (vm->ioapic) vmm_ioapic_set_irq(vm->ioapic, 0, level);
    if (level) vmm_vcpu_want_window(vm);
}

static void pic_retry(void *ctx)
{
    struct hvp_vm *vm = ctx;
    if (vm->pic && vmm_pic_intr(vm->pic)) vmm_vcpu_want_window(vm);
}

static int new_pic(struct hvp_vm *vm)
{
    vm->pic_retry = vmm_timer_new(vm, pic_retry, vm);
    if (!vm->pic_retry) return -ENOMEM;
    vm->pic = vmm_pic_new(vm);
    if (!vm->pic) return -ENODEV;
    vmm_pic_set_intr_notify(vm->pic, pic_intr_changed, vm);
    return 0;
}
static void free_pic(struct hvp_vm *vm)
{
    vmm_pic_free(vm->pic);
    vm->pic = NULL;
    vmm_timer_free(vm->pic_retry);
    vm->pic_retry = NULL;
}
static int new_ioapic(struct hvp_vm *vm)
{
    vm->ioapic = vmm_ioapic_new(vm);
    if (!vm->ioapic) return -ENODEV;
    if (vm->pic) vmm_ioapic_set_pic(vm->ioapic, vm->pic);
    return 0;
}
static void free_ioapic(struct hvp_vm *vm)
{
    vmm_ioapic_free(vm->ioapic);
    vm->ioapic = NULL;
}
static int new_pit(struct hvp_vm *vm)
{
    NEW(pit, vmm_pit_new(vm));
}
static void free_pit(struct hvp_vm *vm)
{
    vmm_pit_free(vm->pit);
    vm->pit = NULL;
}
static int new_rtc(struct hvp_vm *vm)
{
    NEW(rtc, vmm_rtc_new(vm, vm->layout.low_size, vm->layout.high_size));
}
static void free_rtc(struct hvp_vm *vm)
{
    vmm_rtc_free(vm->rtc);
    vm->rtc = NULL;
}
static int new_com1(struct hvp_vm *vm)
{
    vm->com1 = vmm_uart_new(vm, 0x3f8, 4);
    if (!vm->com1) return -ENODEV;
    vmm_uart_set_rx_notify(vm->com1, console_pump, vm);
    return 0;
}
static void free_com1(struct hvp_vm *vm)
{
    vmm_uart_free(vm->com1);
    vm->com1 = NULL;
}
static int new_i8042(struct hvp_vm *vm)
{
    NEW(i8042, vmm_i8042_new(vm));
}
static void free_i8042(struct hvp_vm *vm)
{
    vmm_i8042_free(vm->i8042);
    vm->i8042 = NULL;
}
static int new_misc(struct hvp_vm *vm)
{
    NEW(misc, vmm_misc_new(vm));
}
static void free_misc(struct hvp_vm *vm)
{
    vmm_misc_free(vm->misc);
    vm->misc = NULL;
}
static int new_pci(struct hvp_vm *vm)
{
    NEW(pci, vmm_pci_new(vm));
}
static void free_pci(struct hvp_vm *vm)
{
    vmm_pci_free(vm->pci);
    vm->pci = NULL;
}
static int new_pm(struct hvp_vm *vm)
{
    NEW(pm, vmm_acpi_pm_new(vm));
}
static void free_pm(struct hvp_vm *vm)
{
    vmm_acpi_pm_free(vm->pm);
    vm->pm = NULL;
}

static const struct machine_device devices[] = {
    {"pic", true, new_pic, free_pic},     {"ioapic", true, new_ioapic, free_ioapic},
    {"pit", false, new_pit, free_pit},    {"rtc", false, new_rtc, free_rtc},
    {"com1", false, new_com1, free_com1}, {"i8042", false, new_i8042, free_i8042},
    {"misc", false, new_misc, free_misc}, {"pci", false, new_pci, free_pci},
    {"acpi-pm", false, new_pm, free_pm},  {NULL, false, NULL, NULL},
};

static int create_devices(struct hvp_vm *vm)
{
    for (const struct machine_device *d = devices; d->name; d++) {
        if (d->own_irqchip_only && !vm->own_irqchip) continue;
        vm->err[0] = 0;
        int r = d->create(vm);
        if (r < 0) {
            if (!vm->err[0]) vmm_errorf(vm, r, "cannot create the device");
            char why[VMM_ERRLEN];
            snprintf(why, sizeof(why), "%s", vm->err);
            return vmm_errorf(vm, r, "device %s: %s", d->name, why);
        }
    }
    return 0;
}

static void destroy_devices(struct hvp_vm *vm)
{
    size_t n = 0;
    while (devices[n].name)
        n++;
    while (n--)
        if (devices[n].destroy) devices[n].destroy(vm);
}

/* ---- files ---- */

struct file_map {
    const uint8_t *data;
    size_t len;
};

static int map_file(struct hvp_vm *vm, const char *path, struct file_map *m)
{
    m->data = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vmm_errorf(vm, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return vmm_errorf(vm, -e, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vmm_errorf(vm, -EINVAL, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return 0; /* empty: len 0, no mapping */
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return vmm_errorf(vm, -e, "%s: %s", path, strerror(e));
    m->data = p;
    m->len = (size_t)st.st_size;
    return 0;
}

static void unmap_file(struct file_map *m)
{
    if (m->data) munmap((void *)m->data, m->len);
    m->data = NULL;
}

/* ---- create / run / destroy ---- */

const char *hvp_vm_stop_name(enum hvp_vm_stop why)
{
    switch (why) {
    case HVP_VM_STOP_NONE: return "none";
    case HVP_VM_STOP_POWEROFF: return "poweroff";
    case HVP_VM_STOP_RESET: return "reset";
    case HVP_VM_STOP_TRIPLE_FAULT: return "triple-fault";
    case HVP_VM_STOP_HOST: return "host";
    case HVP_VM_STOP_ERROR: return "error";
    }
    return "?";
}

/* Guest RAM is allocated (and loaded) before the backend opens, so bad
 * input is reported the same way on every machine. */
static int alloc_memory(struct hvp_vm *vm, uint64_t size)
{
    void *ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED)
        return vmm_errorf(vm, -errno, "--memory: cannot reserve %llu MiB: %s",
                          (unsigned long long)(size >> 20), strerror(errno));
    vm->ram = ram;
    vm->ram_size = size;
    uint64_t low = size < VMM_PCI_HOLE ? size : VMM_PCI_HOLE;
    vm->layout = (struct vmm_guest_ram){vm->ram, low, vm->ram + low, size - low};
    return 0;
}

static int map_memory(struct hvp_vm *vm)
{
    const uint32_t rwx = HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE;
    const struct vmm_guest_ram *l = &vm->layout;
    int r = hvp_map_gpa(vm->p, l->low, 0, l->low_size, rwx);
    if (r == 0 && l->high_size) r = hvp_map_gpa(vm->p, l->high, VMM_HIGH_RAM, l->high_size, rwx);
    if (r < 0) return vmm_errorf(vm, r, "memory: %s", hvp_partition_error(vm->p));
    return 0;
}

static int load_guest(struct hvp_vm *vm, const struct hvp_vm_config *c)
{
    struct file_map k = {0}, rd = {0};
    int r = map_file(vm, c->kernel, &k);
    if (r == 0 && c->initrd) r = map_file(vm, c->initrd, &rd);
    if (r < 0) goto out;
    if (!k.len) {
        r = vmm_errorf(vm, -ENOEXEC, "%s: not a bzImage: the file is empty", c->kernel);
        goto out;
    }
    struct vmm_boot_config bc = {
        .kernel = k.data,
        .kernel_len = k.len,
        .initrd = rd.data,
        .initrd_len = rd.len,
        .cmdline = c->cmdline,
        .rsdp_gpa = VMM_RSDP_GPA,
    };
    char why[VMM_ERRLEN];
    r = vmm_boot_load(&vm->layout, &bc, &vm->boot, why, sizeof(why));
    if (r == -ENOEXEC)
        vmm_errorf(vm, r, "%s: %s", c->kernel, why);
    else if (r == -E2BIG && c->initrd && strncmp(why, "initrd", 6) == 0)
        vmm_errorf(vm, r, "%s: %s", c->initrd, why);
    else if (r == -E2BIG)
        vmm_errorf(vm, r, "--append: %s", why);
    else if (r < 0)
        vmm_errorf(vm, r, "--memory: %s", why);
out:
    unmap_file(&k);
    unmap_file(&rd);
    return r;
}

static int build_firmware(struct hvp_vm *vm)
{
    struct vmm_acpi_config ac = {
        .ncpus = vm->ncpus,
        .rsdp_gpa = VMM_RSDP_GPA,
        .tables_gpa = VMM_ACPI_TABLES,
        .tables_max = VMM_ACPI_MAX,
        .ioapic_gpa = VMM_IOAPIC_GPA,
        .lapic_gpa = VMM_LAPIC_GPA,
        .pm_base = VMM_ACPI_PM_BASE,
        .sci_gsi = 9,
    };
    int r = vmm_acpi_build(vm, &ac);
    if (r < 0) return vmm_errorf(vm, r, "ACPI tables: %s", strerror(-r));
    return 0;
}

static int create(struct hvp_vm *vm, const struct hvp_vm_config *c)
{
    if (!c || c->size < offsetof(struct hvp_vm_config, console_ctx) + sizeof(void *))
        return vmm_errorf(vm, -EINVAL, "config: bad size field");
    if (!c->kernel) return vmm_errorf(vm, -EINVAL, "no kernel given");
    if (c->memory < VMM_MIN_MEMORY)
        return vmm_errorf(vm, -EINVAL, "--memory: %llu bytes is too little; at least %llu MiB",
                          (unsigned long long)c->memory,
                          (unsigned long long)(VMM_MIN_MEMORY >> 20));
    if (c->memory & 0xfff)
        return vmm_errorf(vm, -EINVAL, "--memory: %llu bytes is not a multiple of 4 KiB",
                          (unsigned long long)c->memory);
    if (c->memory > (1ull << 40)) return vmm_errorf(vm, -EINVAL, "--memory: more than 1 TiB");
    vm->ncpus = c->cpus ? c->cpus : 1;
    if (vm->ncpus > HVP_VM_MAX_CPUS)
        return vmm_errorf(vm, -EINVAL, "--cpus: %u; at most %u", vm->ncpus, HVP_VM_MAX_CPUS);
    vm->console_out = c->console_out;
    vm->console_ctx = c->console_ctx;

    int r = alloc_memory(vm, c->memory);
    if (r == 0) r = load_guest(vm, c);
    if (r < 0) return r;

    char why[256];
    r = hvp_open(c->backend ? c->backend : "auto", &vm->h, why, sizeof(why));
    if (r < 0) return vmm_errorf(vm, r, "--backend: %s", why);
    vm->own_irqchip = strcmp(hvp_backend_name(vm->h), "kvm") != 0;
    if ((r = hvp_partition_create(vm->h, &vm->p)) < 0)
        return vmm_errorf(vm, r, "partition: %s", hvp_error(vm->h));
    uint32_t n = vm->ncpus, apic = HVP_APIC_MODE_XAPIC;
    if ((r = hvp_partition_set_property(vm->p, HVP_PROP_PROCESSOR_COUNT, &n, sizeof(n))) < 0 ||
        (r = hvp_partition_set_property(vm->p, HVP_PROP_LOCAL_APIC_EMULATION_MODE, &apic,
                                        sizeof(apic))) < 0 ||
        (r = hvp_partition_setup(vm->p)) < 0)
        return vmm_errorf(vm, r, "partition: %s", hvp_partition_error(vm->p));

    if ((r = map_memory(vm)) < 0) return r;
    if ((r = create_devices(vm)) < 0) return r;
    if ((r = build_firmware(vm)) < 0) return r;
    if ((r = hvp_partition_set_io_handler(vm->p, &vmm_io_handler, vm)) < 0)
        return vmm_errorf(vm, r, "partition: %s", hvp_partition_error(vm->p));
    return vmm_emulator_create(vm);
}

int hvp_vm_create(const struct hvp_vm_config *c, struct hvp_vm **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    struct hvp_vm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "out of memory");
        return -ENOMEM;
    }
    vm->t0 = vmm_mono_ns();
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->halt_lock, NULL);
    vmm_timer_cond_init(&vm->timer_cond);
    vmm_timer_cond_init(&vm->halt_cond);
    vm->in_q = malloc(VMM_CONSOLE_QLEN);
    vm->vcpus = calloc(HVP_VM_MAX_CPUS, sizeof(*vm->vcpus));
    int r = -ENOMEM;
    if (vm->vcpus)
        for (unsigned i = 0; i < HVP_VM_MAX_CPUS; i++)
            vm->vcpus[i] = (struct vmm_vcpu){.vm = vm, .index = i};
    if (vm->in_q && vm->vcpus)
        r = create(vm, c);
    else
        vmm_errorf(vm, r, "out of memory");
    if (r < 0) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s", vm->err);
        hvp_vm_destroy(vm);
        return r;
    }
    *out = vm;
    return 0;
}

int hvp_vm_run(struct hvp_vm *vm, enum hvp_vm_stop *why)
{
    if (vm->ran) return vmm_errorf(vm, -EBUSY, "the VM has run already");
    vm->ran = true;
    int r = vmm_timers_start(vm);
    if (r < 0) return r;
    for (unsigned i = 0; i < vm->ncpus; i++) {
        int e = pthread_create(&vm->vcpus[i].thread, NULL, vmm_vcpu_main, &vm->vcpus[i]);
        if (e) {
            vmm_stopf(vm, VMM_STOP_ERROR, "cannot start the thread of vCPU %u: %s", i, strerror(e));
            break;
        }
        vm->vcpus[i].started = true;
    }
    for (unsigned i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i].started) pthread_join(vm->vcpus[i].thread, NULL);
    vmm_timers_stop(vm);
    int s = atomic_load(&vm->stop);
    if (s == VMM_STOP_NONE) vmm_stopf(vm, VMM_STOP_ERROR, "the vCPUs ended without a reason");
    *why = (enum hvp_vm_stop)atomic_load(&vm->stop);
    return 0;
}

void hvp_vm_request_stop(struct hvp_vm *vm)
{
    vmm_stopf(vm, VMM_STOP_HOST, "stopped from the host");
}

const char *hvp_vm_backend(const struct hvp_vm *vm)
{
    return vm->h ? hvp_backend_name(vm->h) : "";
}

const char *hvp_vm_error(const struct hvp_vm *vm)
{
    return atomic_load(&vm->stop) != VMM_STOP_NONE && vm->stop_msg[0] ? vm->stop_msg : vm->err;
}

void hvp_vm_destroy(struct hvp_vm *vm)
{
    if (!vm) return;
    destroy_devices(vm);
    vmm_timers_free(vm);
    hvp_emulator_destroy(vm->emu);
    hvp_partition_destroy(vm->p);
    hvp_close(vm->h);
    if (vm->ram) munmap(vm->ram, vm->ram_size);
    vmm_bus_free(&vm->bus);
    pthread_cond_destroy(&vm->timer_cond);
    pthread_cond_destroy(&vm->halt_cond);
    pthread_mutex_destroy(&vm->lock);
    pthread_mutex_destroy(&vm->halt_lock);
    free(vm->in_q);
    free(vm->vcpus);
    free(vm);
}
