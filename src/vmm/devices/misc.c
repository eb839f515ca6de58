/* Port 0x80: the POST-code port, which Linux also uses as an I/O delay
 * (outb_p/inb_p). Writes are dropped, reads give 0xFF like an empty ISA
 * bus. (Reset control 0xCF9 lives in pci.c: it overlaps CONFIG_ADDRESS.) */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

struct vmm_misc {
    struct hvp_vm *vm;
};

static uint64_t post_read(void *dev, uint64_t offset, unsigned size)
{
    (void)dev;
    (void)offset;
    (void)size;
    return ~0ull;
}

static void post_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    (void)dev;
    (void)offset;
    (void)size;
    (void)value;
}

static const struct vmm_io_ops post_ops = {post_read, post_write};

struct vmm_misc *vmm_misc_new(struct hvp_vm *vm)
{
    struct vmm_misc *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->vm = vm;
    if (vmm_bus_claim(vm, VMM_PIO, 0x80, 1, &post_ops, m, "post") < 0) {
        free(m);
        return NULL;
    }
    return m;
}

void vmm_misc_free(struct vmm_misc *m)
{
    if (!m) return;
    vmm_bus_release(m->vm, VMM_PIO, 0x80);
    free(m);
}
