/* The one range map: claims, overlap rejection naming both owners, lookup
 * and dispatch with offsets, unclaimed accesses, straddling accesses. */
#include "bus.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A device that records its last access. */
struct rec {
    uint64_t off, val;
    unsigned size, reads, writes;
    uint8_t mem[64];
};

static uint64_t rec_read(void *dev, uint64_t off, unsigned size)
{
    struct rec *r = dev;
    r->off = off, r->size = size, r->reads++;
    uint64_t v = 0;
    memcpy(&v, r->mem + off, size);
    return v;
}

static void rec_write(void *dev, uint64_t off, unsigned size, uint64_t val)
{
    struct rec *r = dev;
    r->off = off, r->size = size, r->val = val, r->writes++;
    memcpy(r->mem + off, &val, size);
}

static const struct vmm_io_ops ops = {rec_read, rec_write};

Test(bus, claim_and_dispatch_with_offset)
{
    struct vmm_bus b = {0};
    struct rec uart = {0}, pic = {0};
    char err[256];
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0x3f8, 8, &ops, &uart, "uart", err, sizeof(err)), 0);
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0x20, 2, &ops, &pic, "pic", err, sizeof(err)), 0);
    cr_assert(vmm_bus_write(&b, VMM_PIO, 0x3fb, 1, 0x83));
    cr_assert_eq(uart.off, 3, "the device sees the offset into its range, got %llu",
                 (unsigned long long)uart.off);
    cr_assert_eq(uart.val, 0x83);
    uint64_t v;
    cr_assert(vmm_bus_read(&b, VMM_PIO, 0x3fb, 1, &v));
    cr_assert_eq(v, 0x83);
    cr_assert(vmm_bus_write(&b, VMM_PIO, 0x21, 1, 0xfb));
    cr_assert_eq(pic.off, 1);
    cr_assert_eq(uart.writes, 1, "the PIC's write reached the UART");
    vmm_bus_free(&b);
}

Test(bus, overlap_rejected_naming_both)
{
    struct vmm_bus b = {0};
    struct rec a = {0};
    char err[256] = "";
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0xcf8, 8, &ops, &a, "pci", err, sizeof(err)), 0);
    int r = vmm_bus_add(&b, VMM_PIO, 0xcf9, 1, &ops, &a, "reset", err, sizeof(err));
    cr_assert_eq(r, -EEXIST);
    cr_assert(strstr(err, "reset") && strstr(err, "pci"), "message names both owners: %s", err);
    cr_assert(strstr(err, "0xcf8"), "message names the taken range: %s", err);
    /* Touching is not overlapping; the same address in the other space is free. */
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0xd00, 4, &ops, &a, "next", err, sizeof(err)), 0);
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0xcf0, 8, &ops, &a, "before", err, sizeof(err)), 0);
    cr_assert_eq(vmm_bus_add(&b, VMM_MMIO, 0xcf8, 8, &ops, &a, "mmio", err, sizeof(err)), 0);
    /* A range that covers an existing one entirely. */
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0xc00, 0x200, &ops, &a, "big", err, sizeof(err)),
                 -EEXIST);
    cr_assert(strstr(err, "big") && strstr(err, "before"), "%s", err);
    vmm_bus_free(&b);
}

Test(bus, bad_ranges)
{
    struct vmm_bus b = {0};
    struct rec a = {0};
    char err[256];
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0x10, 0, &ops, &a, "empty", err, sizeof(err)), -EINVAL);
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0xfffe, 4, &ops, &a, "past64k", err, sizeof(err)),
                 -EINVAL);
    cr_assert_eq(vmm_bus_add(&b, VMM_MMIO, ~0ull - 1, 4, &ops, &a, "wrap", err, sizeof(err)),
                 -EINVAL);
    vmm_bus_free(&b);
}

Test(bus, unclaimed_reads_all_ones)
{
    struct vmm_bus b = {0};
    uint64_t v = 0;
    cr_assert_not(vmm_bus_read(&b, VMM_PIO, 0x80, 1, &v));
    cr_assert_eq(v, 0xff);
    cr_assert_not(vmm_bus_read(&b, VMM_MMIO, 0xfed00000, 4, &v));
    cr_assert_eq(v, 0xffffffff);
    cr_assert_not(vmm_bus_write(&b, VMM_PIO, 0x80, 1, 0x12));
}

Test(bus, lookup_many_and_release)
{
    struct vmm_bus b = {0};
    struct rec devs[200];
    char err[256], names[200][16];
    memset(devs, 0, sizeof(devs));
    /* Claimed in scrambled order: the map must come out sorted. */
    for (int k = 0; k < 200; k++) {
        int i = (k * 67) % 200;
        snprintf(names[i], sizeof(names[i]), "d%d", i);
        cr_assert_eq(vmm_bus_add(&b, VMM_MMIO, 0x10000000ull + i * 0x1000ull, 0x100, &ops, &devs[i],
                                 names[i], err, sizeof(err)),
                     0, "%s", err);
    }
    for (int i = 0; i < 200; i++) {
        const struct vmm_range *r =
            vmm_bus_find(&b, VMM_MMIO, 0x10000000ull + i * 0x1000ull + 0xff);
        cr_assert(r && r->dev == &devs[i], "lookup of device %d", i);
        cr_assert_null(vmm_bus_find(&b, VMM_MMIO, 0x10000000ull + i * 0x1000ull + 0x100),
                       "the byte past device %d is unclaimed", i);
    }
    cr_assert_eq(vmm_bus_remove(&b, VMM_MMIO, 0x10005000, err, sizeof(err)), 0);
    cr_assert_null(vmm_bus_find(&b, VMM_MMIO, 0x10005010));
    cr_assert_eq(vmm_bus_remove(&b, VMM_MMIO, 0x10006010, err, sizeof(err)), -ENOENT,
                 "release must name the claim's base");
    cr_assert_not_null(vmm_bus_find(&b, VMM_MMIO, 0x10006010));
    vmm_bus_free(&b);
}

Test(bus, straddling_access_is_split)
{
    struct vmm_bus b = {0};
    struct rec a = {0}, c = {0};
    char err[256];
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0x100, 2, &ops, &a, "a", err, sizeof(err)), 0);
    cr_assert_eq(vmm_bus_add(&b, VMM_PIO, 0x102, 2, &ops, &c, "c", err, sizeof(err)), 0);
    cr_assert(vmm_bus_write(&b, VMM_PIO, 0x101, 4, 0x44332211));
    cr_assert_eq(a.mem[1], 0x11);
    cr_assert_eq(c.mem[0], 0x22);
    cr_assert_eq(c.mem[1], 0x33);
    uint64_t v;
    cr_assert(vmm_bus_read(&b, VMM_PIO, 0x101, 4, &v));
    cr_assert_eq(v, 0xff332211, "unclaimed byte 0x104 reads 0xff: 0x%llx", (unsigned long long)v);
    /* A 4-byte access wholly inside a range is one device access. */
    struct rec w = {0};
    cr_assert_eq(vmm_bus_add(&b, VMM_MMIO, 0xfec00000, 0x20, &ops, &w, "ioapic", err, sizeof(err)),
                 0);
    cr_assert(vmm_bus_write(&b, VMM_MMIO, 0xfec00010, 4, 0xdeadbeef));
    cr_assert_eq(w.writes, 1);
    cr_assert_eq(w.size, 4);
    cr_assert_eq(w.off, 0x10);
    vmm_bus_free(&b);
}
