/* The one range map for I/O ports and MMIO: a sorted array per space,
 * binary-searched on each access. Claims are made at machine creation (and
 * rarely later, for PCI BARs), so an array beats a tree here. */
#include "bus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *space_name(enum vmm_space s)
{
    return s == VMM_PIO ? "port" : "MMIO";
}

/* Index of the first range whose end is above addr (n when none). */
static size_t lower(const struct vmm_range *r, size_t n, uint64_t addr)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int vmm_bus_add(struct vmm_bus *b, enum vmm_space s, uint64_t base, uint64_t len,
                const struct vmm_io_ops *ops, void *dev, const char *name, char *err, size_t errlen)
{
    const char *nm = name ? name : "?";
    if ((unsigned)s > VMM_MMIO || !ops) {
        snprintf(err, errlen, "%s: bad claim (space %u)", nm, (unsigned)s);
        return -EINVAL;
    }
    if (len == 0 || base + len < base || (s == VMM_PIO && base + len > 0x10000)) {
        snprintf(err, errlen, "%s: %s range 0x%llx+0x%llx is empty or out of bounds", nm,
                 space_name(s), (unsigned long long)base, (unsigned long long)len);
        return -EINVAL;
    }
    struct vmm_range *r = b->r[s];
    size_t n = b->n[s], i = lower(r, n, base);
    if (i < n && r[i].base < base + len) {
        snprintf(err, errlen, "%s: %s range 0x%llx-0x%llx overlaps %s at 0x%llx-0x%llx", nm,
                 space_name(s), (unsigned long long)base, (unsigned long long)(base + len - 1),
                 r[i].name, (unsigned long long)r[i].base, (unsigned long long)(r[i].end - 1));
        return -EEXIST;
    }
    if (n == b->cap[s]) {
        size_t cap = b->cap[s] ? b->cap[s] * 2 : 16;
        struct vmm_range *nr = realloc(r, cap * sizeof(*nr));
        if (!nr) {
            snprintf(err, errlen, "%s: out of memory", nm);
            return -ENOMEM;
        }
        b->r[s] = r = nr;
        b->cap[s] = cap;
    }
    memmove(&r[i + 1], &r[i], (n - i) * sizeof(*r));
    r[i] = (struct vmm_range){base, base + len, ops, dev, nm};
    b->n[s] = n + 1;
    return 0;
}

int vmm_bus_remove(struct vmm_bus *b, enum vmm_space s, uint64_t base, char *err, size_t errlen)
{
    if ((unsigned)s > VMM_MMIO) return -EINVAL;
    struct vmm_range *r = b->r[s];
    size_t n = b->n[s], i = lower(r, n, base);
    if (i == n || r[i].base != base) {
        snprintf(err, errlen, "no %s claim starts at 0x%llx", space_name(s),
                 (unsigned long long)base);
        return -ENOENT;
    }
    memmove(&r[i], &r[i + 1], (n - i - 1) * sizeof(*r));
    b->n[s] = n - 1;
    return 0;
}

const struct vmm_range *vmm_bus_find(const struct vmm_bus *b, enum vmm_space s, uint64_t addr)
{
    if ((unsigned)s > VMM_MMIO) return NULL;
    const struct vmm_range *r = b->r[s];
    size_t n = b->n[s], i = lower(r, n, addr);
    return i < n && r[i].base <= addr ? &r[i] : NULL;
}

static uint64_t mask(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

bool vmm_bus_read(const struct vmm_bus *b, enum vmm_space s, uint64_t addr, unsigned size,
                  uint64_t *val)
{
    const struct vmm_range *r = vmm_bus_find(b, s, addr);
    if (r && addr + size <= r->end && addr + size > addr) {
        *val = r->ops->read ? r->ops->read(r->dev, addr - r->base, size) & mask(size) : 0;
        return true;
    }
    /* Unclaimed, or straddling: byte by byte, as the bus would decode. */
    uint64_t v = 0;
    bool any = false;
    for (unsigned i = 0; i < size; i++) {
        const struct vmm_range *q = vmm_bus_find(b, s, addr + i);
        uint64_t byte = 0xff;
        if (q) {
            byte = q->ops->read ? q->ops->read(q->dev, addr + i - q->base, 1) & 0xff : 0;
            any = true;
        }
        v |= byte << (8 * i);
    }
    *val = v;
    return any;
}

bool vmm_bus_write(const struct vmm_bus *b, enum vmm_space s, uint64_t addr, unsigned size,
                   uint64_t val)
{
    const struct vmm_range *r = vmm_bus_find(b, s, addr);
    if (r && addr + size <= r->end && addr + size > addr) {
        if (r->ops->write) r->ops->write(r->dev, addr - r->base, size, val & mask(size));
        return true;
    }
    bool any = false;
    for (unsigned i = 0; i < size; i++) {
        const struct vmm_range *q = vmm_bus_find(b, s, addr + i);
        if (!q) continue;
        any = true;
        if (q->ops->write) q->ops->write(q->dev, addr + i - q->base, 1, (val >> (8 * i)) & 0xff);
    }
    return any;
}

void vmm_bus_free(struct vmm_bus *b)
{
    for (int s = 0; s < 2; s++) {
        free(b->r[s]);
        b->r[s] = NULL;
        b->n[s] = b->cap[s] = 0;
    }
}
