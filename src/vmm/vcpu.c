/* The vCPU loop: one thread per vCPU runs hvp_vcpu_run and dispatches each
 * exit through a table indexed by the exit reason (bhyve's vmexit_handlers
 * pattern). Device accesses go to the bus under the device lock: decoded
 * ones are completed with hvp_vcpu_complete_io, the rest through the
 * emulator. The inline handler lets the soft backend complete device
 * accesses without leaving its CPU loop. */
#include "machine.h"

#include <hvp/emulator.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Exit handlers return 0 to run again. */
typedef int (*exit_fn)(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x);

/* ---- bus access helpers ---- */

static uint64_t bus_in(struct hvp_vm *vm, enum vmm_space s, uint64_t addr, unsigned size)
{
    uint64_t val;
    pthread_mutex_lock(&vm->lock);
    vmm_bus_read(&vm->bus, s, addr, size, &val);
    pthread_mutex_unlock(&vm->lock);
    return val;
}

static void bus_out(struct hvp_vm *vm, enum vmm_space s, uint64_t addr, unsigned size, uint64_t val)
{
    pthread_mutex_lock(&vm->lock);
    vmm_bus_write(&vm->bus, s, addr, size, val);
    pthread_mutex_unlock(&vm->lock);
}

/* ---- the inline handler (soft backend: no exit for device accesses) ---- */

static int inline_pio(void *ctx, struct hvp_vcpu *v, uint16_t port, uint8_t size, bool is_write,
                      uint64_t *data)
{
    (void)v;
    if (is_write)
        bus_out(ctx, VMM_PIO, port, size, *data);
    else
        *data = bus_in(ctx, VMM_PIO, port, size);
    return 0;
}

static int inline_mmio(void *ctx, struct hvp_vcpu *v, uint64_t gpa, uint8_t size, bool is_write,
                       uint64_t *data)
{
    (void)v;
    if (size > 8) return HVP_IO_UNHANDLED;
    if (is_write)
        bus_out(ctx, VMM_MMIO, gpa, size, *data);
    else
        *data = bus_in(ctx, VMM_MMIO, gpa, size);
    return 0;
}

const struct hvp_io_handler vmm_io_handler = {
    .size = sizeof(struct hvp_io_handler),
    .pio = inline_pio,
    .mmio = inline_mmio,
};

/* ---- the emulator's callbacks (ctx = struct vmm_vcpu) ---- */

static struct hvp_vcpu *vcpu_of(struct vmm_vcpu *c)
{
    return atomic_load(&c->v);
}

static int emu_io(void *ctx, struct hvp_emu_io_access *io)
{
    struct vmm_vcpu *c = ctx;
    if (io->direction == HVP_EMU_IO_OUT)
        bus_out(c->vm, VMM_PIO, io->port, io->access_size, io->data);
    else
        io->data = (uint32_t)bus_in(c->vm, VMM_PIO, io->port, io->access_size);
    return 0;
}

static int emu_memory(void *ctx, struct hvp_emu_memory_access *m)
{
    struct vmm_vcpu *c = ctx;
    struct hvp_vm *vm = c->vm;
    /* RAM (a string move between RAM and a device) or a device. */
    int r = m->direction == HVP_EMU_MEM_WRITE
                ? hvp_write_gpa(vm->p, m->gpa, m->data, m->access_size)
                : hvp_read_gpa(vm->p, m->gpa, m->data, m->access_size);
    if (r != -ERANGE) return r;
    for (unsigned off = 0; off < m->access_size; off += 8) {
        unsigned n = m->access_size - off < 8 ? m->access_size - off : 8;
        uint64_t val = 0;
        if (m->direction == HVP_EMU_MEM_WRITE) {
            memcpy(&val, m->data + off, n);
            bus_out(vm, VMM_MMIO, m->gpa + off, n, val);
        } else {
            val = bus_in(vm, VMM_MMIO, m->gpa + off, n);
            memcpy(m->data + off, &val, n);
        }
    }
    return 0;
}

static int emu_get(void *ctx, const uint32_t *names, uint32_t count,
                   union hvp_emu_reg_value *values)
{
    _Static_assert(sizeof(union hvp_emu_reg_value) == sizeof(union hvp_reg_value),
                   "the emulator's register values are WHP's");
    return hvp_vcpu_get_registers(vcpu_of(ctx), names, count, (union hvp_reg_value *)values);
}

static int emu_set(void *ctx, const uint32_t *names, uint32_t count,
                   const union hvp_emu_reg_value *values)
{
    return hvp_vcpu_set_registers(vcpu_of(ctx), names, count, (const union hvp_reg_value *)values);
}

static int emu_translate(void *ctx, uint64_t gva, uint32_t flags,
                         enum hvp_emu_translate_result *result, uint64_t *gpa)
{
    uint32_t res;
    int r = hvp_vcpu_translate_gva(vcpu_of(ctx), gva, flags, &res, gpa);
    if (r < 0) return r;
    *result = (enum hvp_emu_translate_result)res;
    return 0;
}

int vmm_emulator_create(struct hvp_vm *vm)
{
    static const struct hvp_emulator_callbacks cb = {
        .size = sizeof(struct hvp_emulator_callbacks),
        .io_port = emu_io,
        .memory = emu_memory,
        .get_registers = emu_get,
        .set_registers = emu_set,
        .translate_gva_page = emu_translate,
    };
    int r = hvp_emulator_create(&cb, &vm->emu);
    return r < 0 ? vmm_errorf(vm, r, "cannot create the instruction emulator") : 0;
}

/* Injects the exception the emulator asked for. */
static int inject_fault(struct vmm_vcpu *c, struct hvp_vcpu *v, const struct hvp_emu_fault *f)
{
    uint32_t names[2] = {HVP_REG_PENDING_INTERRUPTION, HVP_REG_CR2};
    union hvp_reg_value vals[2];
    memset(vals, 0, sizeof(vals));
    vals[0].pending_interruption.pending = 1;
    vals[0].pending_interruption.type = HVP_PENDING_TYPE_EXCEPTION;
    vals[0].pending_interruption.vector = f->vector;
    vals[0].pending_interruption.deliver_error_code = f->has_error_code;
    vals[0].pending_interruption.error_code = f->error_code;
    vals[1].reg64 = f->cr2;
    int r = hvp_vcpu_set_registers(v, names, f->vector == 14 ? 2 : 1, vals);
    if (r < 0)
        vmm_stopf(c->vm, VMM_STOP_ERROR, "vCPU %u: cannot inject exception %u: %s", c->index,
                  f->vector, hvp_vcpu_error(v));
    return r;
}

static void fmt_bytes(char *out, size_t len, const uint8_t *b, unsigned n)
{
    size_t o = 0;
    out[0] = 0;
    for (unsigned i = 0; i < n && o + 4 < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%02x", i ? " " : "", b[i]);
}

static int emulated(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x, int r,
                    uint32_t status, const struct hvp_emu_fault *f, const uint8_t *bytes,
                    unsigned nbytes)
{
    if (r == 0 && (status & HVP_EMU_STATUS_SUCCESS)) return 0;
    if (r == 0 && (status & HVP_EMU_STATUS_EXCEPTION)) return inject_fault(c, v, f);
    if (r == 0 && (status & HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT)) return 0;
    char hex[64];
    fmt_bytes(hex, sizeof(hex), bytes, nbytes);
    vmm_stopf(c->vm, VMM_STOP_ERROR,
              "vCPU %u: cannot emulate the %s access at RIP 0x%llx (bytes %s; status 0x%x)",
              c->index, x->reason == HVP_EXIT_IO_PORT ? "I/O port" : "MMIO",
              (unsigned long long)x->vp.rip, hex, status);
    return -EIO;
}

/* ---- exit handlers ---- */

static int on_io(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct hvp_vm *vm = c->vm;
    struct hvp_access *a = &x->io.access;
    if (!(x->flags & HVP_EXIT_F_DECODED)) {
        uint32_t status = 0;
        struct hvp_emu_fault f;
        int r = hvp_emulator_try_io(vm->emu, c, &x->vp, &x->io.ctx, &status, &f);
        return emulated(c, v, x, r, status, &f, x->io.ctx.instruction_bytes,
                        x->io.ctx.instruction_byte_count);
    }
    unsigned n = a->count ? a->count : 1;
    uint8_t *buf = n > 1 && a->buf ? a->buf : a->data;
    if (n > 1 && !a->buf) n = 1;
    pthread_mutex_lock(&vm->lock);
    for (unsigned i = 0; i < n; i++) {
        uint64_t val = 0;
        if (a->is_write) {
            memcpy(&val, buf + i * a->size, a->size);
            vmm_bus_write(&vm->bus, VMM_PIO, a->addr, a->size, val);
        } else {
            vmm_bus_read(&vm->bus, VMM_PIO, a->addr, a->size, &val);
            memcpy(buf + i * a->size, &val, a->size);
        }
    }
    pthread_mutex_unlock(&vm->lock);
    int r = a->is_write ? hvp_vcpu_complete_io(v, NULL, 0)
                        : hvp_vcpu_complete_io(v, buf, (size_t)a->size * n);
    if (r < 0)
        vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: completing port 0x%llx: %s", c->index,
                  (unsigned long long)a->addr, hvp_vcpu_error(v));
    return r;
}

static int on_mmio(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct hvp_vm *vm = c->vm;
    struct hvp_access *a = &x->mmio.access;
    if (x->mmio.ctx.access_type == HVP_EMU_ACCESS_EXECUTE) {
        vmm_stopf(vm, VMM_STOP_ERROR,
                  "vCPU %u: executes from 0x%llx, where there is no memory (RIP 0x%llx)", c->index,
                  (unsigned long long)x->mmio.ctx.gpa, (unsigned long long)x->vp.rip);
        return -EFAULT;
    }
    if (x->flags & HVP_EXIT_F_DECODED && a->size <= 8) {
        uint64_t val = 0;
        if (a->is_write) {
            memcpy(&val, a->data, a->size);
            bus_out(vm, VMM_MMIO, a->addr, a->size, val);
            if (x->flags & HVP_EXIT_F_RETIRED) return 0; /* already past the instruction */
            int r = hvp_vcpu_complete_io(v, NULL, 0);
            if (r < 0)
                vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: completing MMIO 0x%llx: %s", c->index,
                          (unsigned long long)a->addr, hvp_vcpu_error(v));
            return r;
        }
        val = bus_in(vm, VMM_MMIO, a->addr, a->size);
        int r = hvp_vcpu_complete_io(v, &val, a->size);
        if (r < 0)
            vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: completing MMIO 0x%llx: %s", c->index,
                      (unsigned long long)a->addr, hvp_vcpu_error(v));
        return r;
    }
    uint32_t status = 0;
    struct hvp_emu_fault f;
    int r = hvp_emulator_try_mmio(vm->emu, c, &x->vp, &x->mmio.ctx, &status, &f);
    return emulated(c, v, x, r, status, &f, x->mmio.ctx.instruction_bytes,
                    x->mmio.ctx.instruction_byte_count);
}

/* HLT. With interrupts off for good on every vCPU the guest is done
 * ("reboot: System halted" without ACPI). Otherwise sleep until an
 * interrupt line moves; the bound covers interrupts the platform raises on
 * its own (the LAPIC timer). */
static int on_halt(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    struct hvp_vm *vm = c->vm;
    bool off = !(x->vp.rflags & 0x200);
    if (off && atomic_fetch_add(&vm->halted_off, 1) + 1 == vm->ncpus) {
        vmm_stopf(vm, VMM_STOP_POWEROFF, "the guest halted with interrupts disabled");
        return 0;
    }
    unsigned ev = atomic_load(&vm->irq_events);
    pthread_mutex_lock(&vm->halt_lock);
    while (!atomic_load(&vm->stop) && (off || ev == atomic_load(&vm->irq_events)) &&
           !atomic_load(&c->want_window)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 1000000; /* 1 ms */
        if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
        if (pthread_cond_timedwait(&vm->halt_cond, &vm->halt_lock, &ts) == ETIMEDOUT && !off) break;
    }
    pthread_mutex_unlock(&vm->halt_lock);
    if (off) atomic_fetch_sub(&vm->halted_off, 1);
    return 0;
}

/* Does vCPU 0's LINT0 take the PIC's INTR? Yes when the local APIC is off
 * (IA32_APIC_BASE.EN clear: INTR goes straight to the core) or not the
 * platform's, or when LVT0 is unmasked ExtINT (virtual wire). */
static bool lint0_extint(struct vmm_vcpu *c, struct hvp_vcpu *v)
{
    uint32_t name = HVP_REG_APIC_BASE;
    union hvp_reg_value base;
    if (hvp_vcpu_get_registers(v, &name, 1, &base) == 0 && !(base.reg64 & (1u << 11))) return true;
    uint8_t page[HVP_LAPIC_STATE_SIZE];
    if (hvp_vcpu_get_lapic(v, page, sizeof(page), NULL) < 0) return true;
    (void)c;
    uint32_t svr, lvt0;
    memcpy(&svr, page + 0xf0, 4);
    memcpy(&lvt0, page + 0x350, 4);
    return (svr & 0x100) && !(lvt0 & 0x10000) && ((lvt0 >> 8) & 7) == 7;
}

/* The guest can take an interrupt: hand it the PIC's vector (ExtINT). */
static int on_window(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    struct hvp_vm *vm = c->vm;
    if (x->interrupt_window.deliverable_type != HVP_WINDOW_INTERRUPT || !vm->pic) return 0;
    if (!lint0_extint(c, v)) {
        /* LVT0 masked (the IOAPIC carries the PIC, or nothing does): look
         * again later in case the guest opens it (Linux's check_timer). */
        pthread_mutex_lock(&vm->lock);
        if (vm->pic_retry) vmm_timer_arm(vm->pic_retry, vmm_now_ns(vm) + 1000000);
        pthread_mutex_unlock(&vm->lock);
        return 0;
    }
    pthread_mutex_lock(&vm->lock);
    bool have = vmm_pic_intr(vm->pic);
    uint8_t vec = have ? vmm_pic_ack(vm->pic) : 0;
    bool more = have && vmm_pic_intr(vm->pic);
    pthread_mutex_unlock(&vm->lock);
    if (more) atomic_store(&c->want_window, true);
    if (!have) return 0;
    uint32_t name = HVP_REG_PENDING_INTERRUPTION;
    union hvp_reg_value val;
    memset(&val, 0, sizeof(val));
    val.pending_interruption.pending = 1;
    val.pending_interruption.type = HVP_PENDING_TYPE_EXT_INT;
    val.pending_interruption.vector = vec;
    int r = hvp_vcpu_set_registers(v, &name, 1, &val);
    if (r < 0)
        vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: cannot inject PIC vector %u: %s", c->index, vec,
                  hvp_vcpu_error(v));
    return r;
}

static int on_eoi(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    struct hvp_vm *vm = c->vm;
    if (!vm->ioapic) return 0;
    pthread_mutex_lock(&vm->lock);
    vmm_ioapic_eoi(vm->ioapic, (uint8_t)x->apic_eoi.vector);
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

/* MSR exits are not asked for; one that comes anyway is an unknown MSR. */
static int on_msr(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)x;
    int r = hvp_vcpu_complete_msr(v, 0, true);
    if (r < 0)
        vmm_stopf(c->vm, VMM_STOP_ERROR, "vCPU %u: MSR 0x%x: %s", c->index, x->msr.index,
                  hvp_vcpu_error(v));
    return r;
}

static int on_cpuid(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    uint32_t names[5] = {HVP_REG_RAX, HVP_REG_RBX, HVP_REG_RCX, HVP_REG_RDX, HVP_REG_RIP};
    union hvp_reg_value vals[5];
    memset(vals, 0, sizeof(vals));
    vals[0].reg64 = x->cpuid.default_rax;
    vals[1].reg64 = x->cpuid.default_rbx;
    vals[2].reg64 = x->cpuid.default_rcx;
    vals[3].reg64 = x->cpuid.default_rdx;
    vals[4].reg64 = x->vp.rip + 2;
    int r = hvp_vcpu_set_registers(v, names, 5, vals);
    if (r < 0) vmm_stopf(c->vm, VMM_STOP_ERROR, "vCPU %u: CPUID: %s", c->index, hvp_vcpu_error(v));
    return r;
}

static int on_triple_fault(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    vmm_stopf(c->vm, VMM_STOP_TRIPLE_FAULT, "vCPU %u: triple fault at RIP 0x%llx (CS 0x%x)",
              c->index, (unsigned long long)x->vp.rip, x->vp.cs.selector);
    return -EFAULT;
}

static int on_bad_state(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    vmm_stopf(c->vm, VMM_STOP_ERROR,
              "vCPU %u: the backend cannot enter this CPU state (RIP 0x%llx, reason 0x%llx)",
              c->index, (unsigned long long)x->vp.rip, (unsigned long long)x->internal.data[0]);
    return -EINVAL;
}

static int on_unsupported(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    vmm_stopf(c->vm, VMM_STOP_ERROR,
              "vCPU %u: the guest uses a feature the backend lacks (code %u, parameter 0x%llx) "
              "at RIP 0x%llx",
              c->index, x->unsupported.feature_code, (unsigned long long)x->unsupported.parameter,
              (unsigned long long)x->vp.rip);
    return -EOPNOTSUPP;
}

static int on_exception(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    char hex[64];
    fmt_bytes(hex, sizeof(hex), x->exception.instruction_bytes,
              x->exception.instruction_byte_count);
    vmm_stopf(c->vm, VMM_STOP_ERROR,
              "vCPU %u: unexpected exception exit, vector %u at RIP 0x%llx (bytes %s)", c->index,
              x->exception.vector, (unsigned long long)x->vp.rip, hex);
    return -EFAULT;
}

/* KVM's system events: 1 shutdown, 2 reset, 3 crash. */
static int on_shutdown(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)v;
    switch (x->internal.suberror) {
    case 1: vmm_stopf(c->vm, VMM_STOP_POWEROFF, "the guest powered off"); break;
    case 2: vmm_stopf(c->vm, VMM_STOP_RESET, "the guest asked for a reset"); break;
    default:
        vmm_stopf(c->vm, VMM_STOP_ERROR, "vCPU %u: the backend stopped the VM (event %u)", c->index,
                  x->internal.suberror);
    }
    return 0;
}

static int on_internal(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    vmm_stopf(c->vm, VMM_STOP_ERROR,
              "vCPU %u: backend failure at RIP 0x%llx (reason %u, suberror %u): %s", c->index,
              (unsigned long long)x->vp.rip, x->internal.backend_reason, x->internal.suberror,
              hvp_vcpu_error(v));
    return -EIO;
}

static int on_nothing(struct vmm_vcpu *c, struct hvp_vcpu *v, struct hvp_exit *x)
{
    (void)c, (void)v, (void)x;
    return 0;
}

/* Exit reasons are WHP's sparse numbers: 0x0..0xF, 0x1000.., 0x2000..,
 * 0x3000..; the table is indexed by (reason >> 12) * 16 + (reason & 0xF). */
#define SLOT(r) ((((r) >> 12) << 4) | ((r)&0xf))
static const exit_fn exit_table[64] = {
    [SLOT(HVP_EXIT_NONE)] = on_nothing,
    [SLOT(HVP_EXIT_MEMORY_ACCESS)] = on_mmio,
    [SLOT(HVP_EXIT_IO_PORT)] = on_io,
    [SLOT(HVP_EXIT_UNRECOVERABLE_EXCEPTION)] = on_triple_fault,
    [SLOT(HVP_EXIT_INVALID_VP_REGISTER_VALUE)] = on_bad_state,
    [SLOT(HVP_EXIT_UNSUPPORTED_FEATURE)] = on_unsupported,
    [SLOT(HVP_EXIT_INTERRUPT_WINDOW)] = on_window,
    [SLOT(HVP_EXIT_HALT)] = on_halt,
    [SLOT(HVP_EXIT_APIC_EOI)] = on_eoi,
    [SLOT(HVP_EXIT_MSR_ACCESS)] = on_msr,
    [SLOT(HVP_EXIT_CPUID)] = on_cpuid,
    [SLOT(HVP_EXIT_EXCEPTION)] = on_exception,
    [SLOT(HVP_EXIT_CANCELED)] = on_nothing,
    [SLOT(HVP_EXIT_SHUTDOWN)] = on_shutdown,
    [SLOT(HVP_EXIT_INTERNAL_ERROR)] = on_internal,
};

static exit_fn exit_handler(uint32_t reason)
{
    if (reason >> 12 > 3 || (reason & 0xff0)) return NULL;
    return exit_table[SLOT(reason)];
}

void vmm_vcpu_want_window(struct hvp_vm *vm)
{
    struct vmm_vcpu *c = &vm->vcpus[0];
    if (atomic_exchange(&c->want_window, true)) return;
    struct hvp_vcpu *v = atomic_load(&c->v);
    if (v) hvp_vcpu_cancel(v);
    vmm_wake_halted(vm);
}

static int request_window(struct vmm_vcpu *c, struct hvp_vcpu *v)
{
    uint32_t name = HVP_REG_DELIVERABILITY_NOTIFICATIONS;
    union hvp_reg_value val;
    memset(&val, 0, sizeof(val));
    val.deliverability.interrupt = 1;
    int r = hvp_vcpu_set_registers(v, &name, 1, &val);
    if (r < 0)
        vmm_stopf(c->vm, VMM_STOP_ERROR, "vCPU %u: cannot ask for an interrupt window: %s",
                  c->index, hvp_vcpu_error(v));
    return r;
}

void *vmm_vcpu_main(void *arg)
{
    struct vmm_vcpu *c = arg;
    struct hvp_vm *vm = c->vm;
    struct hvp_vcpu *v;
    int r = hvp_vcpu_create(vm->p, c->index, &v);
    if (r < 0) {
        vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: %s", c->index, hvp_partition_error(vm->p));
        return NULL;
    }
    atomic_store(&c->v, v);
    if (c->index != 0) {
        /* WHP's vCPUs run from creation; a PC's application processors
         * wait for the guest's INIT/SIPI. INIT puts this one in
         * wait-for-SIPI before it runs anything. */
        struct hvp_interrupt init = {.type = HVP_INTERRUPT_INIT, .destination = c->index};
        if (hvp_request_interrupt(vm->p, &init) < 0) {
            vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: cannot park it until the guest starts it: %s",
                      c->index, hvp_partition_error(vm->p));
            return NULL;
        }
    }
    if (c->index == 0) {
        uint32_t names[VMM_BOOT_NREGS];
        union hvp_reg_value vals[VMM_BOOT_NREGS];
        unsigned n = vmm_boot_regs(&vm->boot, names, vals);
        if (hvp_vcpu_set_registers(v, names, n, vals) < 0) {
            vmm_stopf(vm, VMM_STOP_ERROR, "vCPU 0: cannot set the 64-bit entry state: %s",
                      hvp_vcpu_error(v));
            return NULL;
        }
        /* What firmware leaves behind: MTRRs on, default type write-back
         * (E, WB; no fixed or variable ranges). With MTRRs off Linux says
         * "x86/PAT: MTRRs disabled, skipping PAT initialization too" and
         * runs without write-combining. Best effort: a backend without
         * this register boots all the same. */
        uint32_t mtrr = HVP_REG_MTRR_DEF_TYPE;
        union hvp_reg_value wb;
        memset(&wb, 0, sizeof(wb));
        wb.reg64 = 0x806;
        (void)hvp_vcpu_set_registers(v, &mtrr, 1, &wb);
    }
    struct hvp_exit x;
    while (!atomic_load(&vm->stop)) {
        if (atomic_exchange(&c->want_window, false) && request_window(c, v) < 0) break;
        r = hvp_vcpu_run(v, &x);
        if (r < 0) {
            vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: run failed: %s", c->index, hvp_vcpu_error(v));
            break;
        }
        c->exits++;
        exit_fn fn = exit_handler(x.reason);
        if (!fn) {
            vmm_stopf(vm, VMM_STOP_ERROR, "vCPU %u: unknown exit 0x%x (%s) at RIP 0x%llx", c->index,
                      x.reason, hvp_exit_name(x.reason), (unsigned long long)x.vp.rip);
            break;
        }
        if (fn(c, v, &x) < 0) break;
    }
    return NULL;
}
