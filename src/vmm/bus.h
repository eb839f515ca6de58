/* The one range map for I/O ports and MMIO (machine-internal). */
#ifndef HVP_VMM_BUS_H
#define HVP_VMM_BUS_H

#include "vmm_internal.h"

#include <stdbool.h>

struct vmm_range {
    uint64_t base, end; /* [base, end) */
    const struct vmm_io_ops *ops;
    void *dev;
    const char *name;
};

/* Sorted by base, never overlapping; binary search on lookup. */
struct vmm_bus {
    struct vmm_range *r[2]; /* per enum vmm_space */
    size_t n[2], cap[2];
};

/* -EINVAL for an empty, wrapping or (ports) beyond-64K range, -EEXIST for an
 * overlap (err names both owners), -ENOMEM. */
int vmm_bus_add(struct vmm_bus *b, enum vmm_space s, uint64_t base, uint64_t len,
                const struct vmm_io_ops *ops, void *dev, const char *name, char *err,
                size_t errlen);
/* -ENOENT when no claim starts exactly at base. */
int vmm_bus_remove(struct vmm_bus *b, enum vmm_space s, uint64_t base, char *err, size_t errlen);
const struct vmm_range *vmm_bus_find(const struct vmm_bus *b, enum vmm_space s, uint64_t addr);
/* Dispatch an access of size 1, 2, 4 or 8. An access wholly inside one range
 * goes to its device with the offset; one that straddles ranges is split into
 * bytes. Unclaimed bytes read as 0xFF and ignore writes. Returns true when
 * some device claimed (part of) it. */
bool vmm_bus_read(const struct vmm_bus *b, enum vmm_space s, uint64_t addr, unsigned size,
                  uint64_t *val);
bool vmm_bus_write(const struct vmm_bus *b, enum vmm_space s, uint64_t addr, unsigned size,
                   uint64_t val);
void vmm_bus_free(struct vmm_bus *b);

#endif
