/* The fake machine: see fake_machine.h. */
#include "fake_machine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct hvp_vm *fake_vm_new(void)
{
    return calloc(1, sizeof(struct hvp_vm));
}

void fake_vm_free(struct hvp_vm *vm)
{
    free(vm);
}

/* The fake partition handle is the VM itself, so that
 * hvp_request_interrupt can record into it. */
struct hvp_partition *vmm_partition(struct hvp_vm *vm)
{
    return (struct hvp_partition *)vm;
}

int vmm_bus_claim(struct hvp_vm *vm, enum vmm_space space, uint64_t base, uint64_t len,
                  const struct vmm_io_ops *ops, void *dev, const char *name)
{
    if (len == 0) return -EINVAL;
    struct fake_claim *free_slot = NULL;
    for (unsigned i = 0; i < FAKE_MAX_CLAIMS; i++) {
        struct fake_claim *c = &vm->claims[i];
        if (!c->used) {
            if (!free_slot) free_slot = c;
            continue;
        }
        if (c->space == space && base < c->base + c->len && c->base < base + len) return -EEXIST;
    }
    if (!free_slot) return -ENOSPC;
    *free_slot = (struct fake_claim){space, base, len, ops, dev, name, true};
    return 0;
}

int vmm_bus_release(struct hvp_vm *vm, enum vmm_space space, uint64_t base)
{
    for (unsigned i = 0; i < FAKE_MAX_CLAIMS; i++) {
        struct fake_claim *c = &vm->claims[i];
        if (c->used && c->space == space && c->base == base) {
            c->used = false;
            return 0;
        }
    }
    return -ENOENT;
}

bool fake_claimed(struct hvp_vm *vm, enum vmm_space space, uint64_t base, uint64_t len)
{
    for (unsigned i = 0; i < FAKE_MAX_CLAIMS; i++) {
        struct fake_claim *c = &vm->claims[i];
        if (c->used && c->space == space && c->base <= base && base + len <= c->base + c->len)
            return true;
    }
    return false;
}

static struct fake_claim *find(struct hvp_vm *vm, enum vmm_space space, uint64_t addr,
                               unsigned size)
{
    for (unsigned i = 0; i < FAKE_MAX_CLAIMS; i++) {
        struct fake_claim *c = &vm->claims[i];
        if (c->used && c->space == space && c->base <= addr && addr + size <= c->base + c->len)
            return c;
    }
    return NULL;
}

static uint64_t mask_of(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

uint64_t fake_in(struct hvp_vm *vm, uint64_t port, unsigned size)
{
    struct fake_claim *c = find(vm, VMM_PIO, port, size);
    if (!c) return mask_of(size);
    return c->ops->read(c->dev, port - c->base, size) & mask_of(size);
}

void fake_out(struct hvp_vm *vm, uint64_t port, unsigned size, uint64_t value)
{
    struct fake_claim *c = find(vm, VMM_PIO, port, size);
    if (c) c->ops->write(c->dev, port - c->base, size, value & mask_of(size));
}

uint64_t fake_mmio_read(struct hvp_vm *vm, uint64_t gpa, unsigned size)
{
    struct fake_claim *c = find(vm, VMM_MMIO, gpa, size);
    if (!c) return mask_of(size);
    return c->ops->read(c->dev, gpa - c->base, size) & mask_of(size);
}

void fake_mmio_write(struct hvp_vm *vm, uint64_t gpa, unsigned size, uint64_t value)
{
    struct fake_claim *c = find(vm, VMM_MMIO, gpa, size);
    if (c) c->ops->write(c->dev, gpa - c->base, size, value & mask_of(size));
}

void vmm_irq_set(struct hvp_vm *vm, unsigned gsi, bool level)
{
    if (gsi >= FAKE_GSIS) return;
    if (level && !vm->level[gsi]) vm->edges[gsi]++;
    vm->level[gsi] = level;
}

void vmm_irq_pulse(struct hvp_vm *vm, unsigned gsi)
{
    vmm_irq_set(vm, gsi, true);
    vmm_irq_set(vm, gsi, false);
}

uint64_t vmm_now_ns(struct hvp_vm *vm)
{
    return vm->now_ns;
}

struct vmm_timer *vmm_timer_new(struct hvp_vm *vm, void (*fn)(void *dev), void *dev)
{
    for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++) {
        struct vmm_timer *t = &vm->timers[i];
        if (!t->used) {
            *t = (struct vmm_timer){.vm = vm, .fn = fn, .dev = dev, .used = true};
            return t;
        }
    }
    return NULL;
}

void vmm_timer_arm(struct vmm_timer *t, uint64_t deadline_ns)
{
    t->armed = true;
    t->deadline = deadline_ns;
    t->vm->timer_arms++;
}

void vmm_timer_cancel(struct vmm_timer *t)
{
    t->armed = false;
}

void vmm_timer_free(struct vmm_timer *t)
{
    if (t) *t = (struct vmm_timer){0};
}

unsigned fake_armed_timers(struct hvp_vm *vm, uint64_t *next)
{
    unsigned n = 0;
    uint64_t best = UINT64_MAX;
    for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++) {
        struct vmm_timer *t = &vm->timers[i];
        if (t->used && t->armed) {
            n++;
            if (t->deadline < best) best = t->deadline;
        }
    }
    if (next) *next = best;
    return n;
}

void fake_advance(struct hvp_vm *vm, uint64_t ns)
{
    uint64_t end = vm->now_ns + ns;
    for (;;) {
        struct vmm_timer *due = NULL;
        for (unsigned i = 0; i < FAKE_MAX_TIMERS; i++) {
            struct vmm_timer *t = &vm->timers[i];
            if (t->used && t->armed && t->deadline <= end && (!due || t->deadline < due->deadline))
                due = t;
        }
        if (!due) break;
        due->armed = false;
        if (due->deadline > vm->now_ns) vm->now_ns = due->deadline;
        due->fn(due->dev);
    }
    vm->now_ns = end;
}

int vmm_read_gpa(struct hvp_vm *vm, uint64_t gpa, void *buf, size_t len)
{
    if (gpa > sizeof vm->mem || len > sizeof vm->mem - gpa) return -EFAULT;
    memcpy(buf, vm->mem + gpa, len);
    return 0;
}

int vmm_write_gpa(struct hvp_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
    if (gpa > sizeof vm->mem || len > sizeof vm->mem - gpa) return -EFAULT;
    memcpy(vm->mem + gpa, buf, len);
    return 0;
}

void vmm_request_stop(struct hvp_vm *vm, enum vmm_stop_reason why)
{
    vm->stops++;
    if (vm->stop == VMM_STOP_NONE) vm->stop = why;
}

void vmm_console_write(struct hvp_vm *vm, const uint8_t *buf, size_t len)
{
    size_t room = sizeof vm->console - vm->console_len;
    if (len > room) len = room;
    memcpy(vm->console + vm->console_len, buf, len);
    vm->console_len += len;
}

int hvp_request_interrupt(struct hvp_partition *p, const struct hvp_interrupt *irq)
{
    struct hvp_vm *vm = (struct hvp_vm *)p;
    if (vm->nirqs >= FAKE_MAX_IRQS) return -ENOSPC;
    vm->irqs[vm->nirqs++] = *irq;
    return 0;
}
