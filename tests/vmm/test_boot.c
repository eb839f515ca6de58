/* The Linux boot loader on synthetic bzImages (and on the default guest's
 * real Debian kernel when the cache is there): header checks with clear
 * errors, zero page fields, e820, command line, initrd placement, GDT,
 * page tables and the 64-bit entry state. */
#include "boot.h"
#include "bzimage.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

struct ram {
    struct vmm_guest_ram g;
    uint8_t *buf;
    size_t size;
};

static struct ram ram_new(uint64_t size)
{
    struct ram r = {0};
    r.size = size;
    r.buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    cr_assert_neq(r.buf, MAP_FAILED);
    uint64_t low = size < 0xc0000000ull ? size : 0xc0000000ull;
    r.g = (struct vmm_guest_ram){r.buf, low, r.buf + low, size - low};
    return r;
}

static void ram_free(struct ram *r)
{
    munmap(r->buf, r->size);
}

static int load(struct ram *r, const uint8_t *k, size_t klen, const uint8_t *rd, size_t rdlen,
                const char *cmd, struct vmm_boot_info *bi, char *err)
{
    struct vmm_boot_config c = {k, klen, rd, rdlen, cmd, 0xe0000};
    return vmm_boot_load(&r->g, &c, bi, err, 256);
}

Test(boot, header_errors_are_clear)
{
    struct fake_bz f = fake_bz_default();
    size_t len;
    char err[256];
    struct vmm_bzimage h;

    uint8_t *img = fake_bz_build(&f, &len);
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(h.version, 0x020f);
    cr_assert_eq(h.payload_off, 28 * 512);
    cr_assert_eq(h.payload_len, 0x10000);
    cr_assert_eq(h.hdr_end, 0x26c);

    img[0x1fe] = 0;
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "not a bzImage") && strstr(err, "0xAA55"), "%s", err);
    img[0x1fe] = 0x55;

    memcpy(img + 0x202, "HdrX", 4);
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "HdrS"), "%s", err);
    free(img);

    f.version = 0x020b;
    img = fake_bz_build(&f, &len);
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "2.11") && strstr(err, "too old"), "%s", err);
    free(img);

    f = fake_bz_default();
    f.xloadflags = 0;
    img = fake_bz_build(&f, &len);
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "64-bit"), "%s", err);
    free(img);

    f = fake_bz_default();
    f.loadflags = 0;
    img = fake_bz_build(&f, &len);
    cr_assert_eq(vmm_bzimage_parse(img, len, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "zImage"), "%s", err);
    /* Truncated: the header promises more payload than the file has. */
    f = fake_bz_default();
    free(img);
    img = fake_bz_build(&f, &len);
    cr_assert_eq(vmm_bzimage_parse(img, len - 100, &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "truncated"), "%s", err);
    cr_assert_eq(vmm_bzimage_parse(img, 600, &h, err, sizeof(err)), -ENOEXEC);
    free(img);

    static const uint8_t elf[1024] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    cr_assert_eq(vmm_bzimage_parse(elf, sizeof(elf), &h, err, sizeof(err)), -ENOEXEC);
    cr_assert(strstr(err, "ELF"), "%s", err);
}

Test(boot, zero_page_cmdline_initrd)
{
    struct fake_bz f = fake_bz_default();
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    struct ram r = ram_new(256ull << 20);
    size_t rdlen = 3 * 1024 * 1024 + 123;
    uint8_t *rd = malloc(rdlen);
    for (size_t i = 0; i < rdlen; i++)
        rd[i] = (uint8_t)(i ^ (i >> 8));
    struct vmm_boot_info bi;
    char err[256];
    const char *cmd = "console=ttyS0 earlyprintk=ttyS0,115200";
    cr_assert_eq(load(&r, img, len, rd, rdlen, cmd, &bi, err), 0, "%s", err);
    uint8_t *low = r.g.low, *bp = low + 0x7000;

    /* The kernel payload at 1 MiB, entry at +0x200. */
    cr_assert_eq(memcmp(low + 0x100000, img + 28 * 512, 0x10000), 0);
    cr_assert_eq(bi.entry, 0x100200);
    cr_assert_eq(bi.zero_page, 0x7000);

    /* Zero page: header copied, sentinel not, our fields written. */
    cr_assert_eq(bp[0x1ef], 0, "the sentinel must stay 0 (else Linux wipes boot_params)");
    cr_assert_eq(memcmp(bp + 0x202, "HdrS", 4), 0);
    cr_assert_eq(rd32(bp + 0x230), 0x200000, "kernel_alignment must be in the zero page");
    cr_assert_eq(rd32(bp + 0x260), f.init_size, "init_size must be in the zero page");
    cr_assert_eq(bp[0x210], 0xff, "type_of_loader");
    cr_assert_eq(rd32(bp + 0x228), 0x20000, "cmd_line_ptr");
    cr_assert_str_eq((char *)low + 0x20000, cmd);
    cr_assert_eq(rd64(bp + 0x70), 0xe0000, "acpi_rsdp_addr");

    /* initrd: page aligned, at the top of RAM, intact, in the zero page. */
    uint64_t at = rd32(bp + 0x218) | (uint64_t)rd32(bp + 0xc0) << 32;
    cr_assert_eq(at, bi.initrd_gpa);
    cr_assert_eq(rd32(bp + 0x21c), rdlen);
    cr_assert_eq(at & 0xfff, 0);
    cr_assert(at + rdlen <= 256ull << 20 && at + rdlen + 4096 > 256ull << 20,
              "initrd at 0x%llx is not at the top of RAM", (unsigned long long)at);
    cr_assert(at >= 0x1000000 + f.init_size, "initrd overlaps the kernel's run area");
    cr_assert_eq(memcmp(low + at, rd, rdlen), 0);

    /* e820: low RAM, EBDA and BIOS area reserved, RAM from 1 MiB. */
    cr_assert_eq(bp[0x1e8], 4);
    const uint8_t *e = bp + 0x2d0;
    cr_assert_eq(rd64(e), 0);
    cr_assert_eq(rd64(e + 8), 0x9fc00);
    cr_assert_eq(rd32(e + 16), 1);
    cr_assert_eq(rd64(e + 20), 0x9fc00);
    cr_assert_eq(rd32(e + 36), 2);
    cr_assert_eq(rd64(e + 40), 0xe0000);
    cr_assert_eq(rd64(e + 48), 0x20000);
    cr_assert_eq(rd32(e + 56), 2);
    cr_assert_eq(rd64(e + 60), 0x100000);
    cr_assert_eq(rd64(e + 68), (256ull << 20) - 0x100000);
    cr_assert_eq(rd32(e + 76), 1);
    free(rd);
    free(img);
    ram_free(&r);
}

Test(boot, gdt_page_tables_and_entry_state)
{
    struct fake_bz f = fake_bz_default();
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    struct ram r = ram_new(128ull << 20);
    struct vmm_boot_info bi;
    char err[256];
    cr_assert_eq(load(&r, img, len, NULL, 0, NULL, &bi, err), 0, "%s", err);
    uint8_t *low = r.g.low;
    cr_assert_eq(rd64(low + 0x500 + 0x10), 0x00af9b000000ffffull, "__BOOT_CS");
    cr_assert_eq(rd64(low + 0x500 + 0x18), 0x00cf93000000ffffull, "__BOOT_DS");
    cr_assert_eq(rd64(low + 0x500), 0);
    /* Identity map of 0-4 GiB with 2 MiB pages: walk some addresses. */
    uint64_t addrs[] = {0, 0x100200, 0x7000, 0x3fffffff, 0x40000000, 0xfee00000, 0xffffffff};
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        uint64_t va = addrs[i];
        uint64_t pml4e = rd64(low + 0x9000 + 8 * ((va >> 39) & 511));
        cr_assert(pml4e & 1);
        uint64_t pdpte = rd64(low + (pml4e & ~0xfffull) + 8 * ((va >> 30) & 511));
        cr_assert(pdpte & 1);
        cr_assert_eq(pdpte & 0x80, 0, "no 1 GiB pages (the CPU may not have them)");
        uint64_t pde = rd64(low + (pdpte & ~0xfffull) + 8 * ((va >> 21) & 511));
        cr_assert_eq(pde & 0x83, 0x83, "present, writable, 2 MiB");
        uint64_t pa = (pde & ~0x1fffffull & 0xffffffffffull) | (va & 0x1fffff);
        cr_assert_eq(pa, va, "0x%llx maps to 0x%llx", (unsigned long long)va,
                     (unsigned long long)pa);
    }
    /* Nothing of the loader lies in the decompressor's trampoline. */
    for (uint64_t a = 0x9d000; a < 0x9f000; a++)
        cr_assert_eq(low[a], 0);

    uint32_t names[VMM_BOOT_NREGS];
    union hvp_reg_value vals[VMM_BOOT_NREGS];
    unsigned n = vmm_boot_regs(&bi, names, vals);
    cr_assert_leq(n, VMM_BOOT_NREGS);
    int seen = 0;
    for (unsigned i = 0; i < n; i++) {
        switch (names[i]) {
        case HVP_REG_RIP:
            cr_assert_eq(vals[i].reg64, 0x100200);
            seen |= 1;
            break;
        case HVP_REG_RSI:
            cr_assert_eq(vals[i].reg64, 0x7000);
            seen |= 2;
            break;
        case HVP_REG_CR0:
            cr_assert_eq(vals[i].reg64 & 0x80000001, 0x80000001);
            seen |= 4;
            break;
        case HVP_REG_CR4:
            cr_assert(vals[i].reg64 & 0x20);
            seen |= 8;
            break;
        case HVP_REG_EFER:
            cr_assert_eq(vals[i].reg64 & 0x500, 0x500);
            seen |= 16;
            break;
        case HVP_REG_CR3:
            cr_assert_eq(vals[i].reg64, 0x9000);
            seen |= 32;
            break;
        case HVP_REG_CS:
            cr_assert_eq(vals[i].segment.selector, 0x10);
            cr_assert(vals[i].segment.attributes & HVP_SEG_L);
            seen |= 64;
            break;
        case HVP_REG_SS:
            cr_assert_eq(vals[i].segment.selector, 0x18);
            seen |= 128;
            break;
        case HVP_REG_RFLAGS:
            cr_assert_eq(vals[i].reg64, 2, "interrupts off");
            seen |= 256;
            break;
        case HVP_REG_GDTR:
            cr_assert_eq(vals[i].table.base, 0x500);
            seen |= 512;
            break;
        default: break;
        }
    }
    cr_assert_eq(seen, 1023, "entry state incomplete: 0x%x", seen);
    free(img);
    ram_free(&r);
}

Test(boot, initrd_too_big_and_memory_too_small)
{
    struct fake_bz f = fake_bz_default();
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    struct ram r = ram_new(64ull << 20);
    struct vmm_boot_info bi;
    char err[256];
    /* 64 MiB RAM, kernel runs in [16, 48) MiB: 16 MiB left for the initrd. */
    size_t big = 17u << 20;
    uint8_t *rd = calloc(1, big);
    cr_assert_eq(load(&r, img, len, rd, big, NULL, &bi, err), -E2BIG);
    cr_assert(strstr(err, "initrd does not fit"), "%s", err);
    cr_assert_eq(load(&r, img, len, rd, (15u << 20), NULL, &bi, err), 0, "%s", err);
    cr_assert_geq(bi.initrd_gpa, 0x1000000 + f.init_size);
    /* initrd_addr_max lower than RAM: the initrd ends below it. */
    free(img);
    f.initrd_addr_max = 0x37ffffff; /* 896 MiB - 1 */
    img = fake_bz_build(&f, &len);
    struct ram r2 = ram_new(2048ull << 20);
    cr_assert_eq(load(&r2, img, len, rd, 1 << 20, NULL, &bi, err), 0, "%s", err);
    cr_assert_leq(bi.initrd_gpa + (1 << 20), 0x38000000ull);
    cr_assert_gt(bi.initrd_gpa + (1 << 20), 0x38000000ull - 4096);
    ram_free(&r2);
    free(img);
    /* A kernel whose init_size does not fit. */
    f = fake_bz_default();
    f.init_size = 60u << 20;
    img = fake_bz_build(&f, &len);
    cr_assert_eq(load(&r, img, len, NULL, 0, NULL, &bi, err), -ENOSPC);
    cr_assert(strstr(err, "memory too small"), "%s", err);
    free(img);
    free(rd);
    ram_free(&r);
}

Test(boot, cmdline_too_long)
{
    struct fake_bz f = fake_bz_default();
    f.cmdline_size = 16;
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    struct ram r = ram_new(64ull << 20);
    struct vmm_boot_info bi;
    char err[256];
    cr_assert_eq(load(&r, img, len, NULL, 0, "0123456789abcdef", &bi, err), 0, "%s", err);
    cr_assert_eq(load(&r, img, len, NULL, 0, "0123456789abcdefg", &bi, err), -E2BIG);
    cr_assert(strstr(err, "17 bytes") && strstr(err, "16"), "%s", err);
    free(img);
    ram_free(&r);
}

Test(boot, high_memory_in_e820)
{
    struct ram r = ram_new(4096ull << 20);
    struct vmm_e820 map[8];
    size_t n = vmm_e820_map(&r.g, map);
    cr_assert_eq(n, 5);
    cr_assert_eq(map[3].addr + map[3].size, 0xc0000000ull, "low RAM ends at the PCI hole");
    cr_assert_eq(map[4].addr, 0x100000000ull);
    cr_assert_eq(map[4].size, 1024ull << 20, "the RAM above the hole");
    cr_assert_eq(map[4].type, 1);
    ram_free(&r);
}

/* The real kernel of the default guest (make guest), when cached. */
static const char *guest_dir(char *buf, size_t len)
{
    const char *d = getenv("HVP_GUEST_DIR");
    if (d && *d) return d;
    const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache && *cache)
        snprintf(buf, len, "%s/hvp/guest", cache);
    else
        snprintf(buf, len, "%s/.cache/hvp/guest", home ? home : "");
    return buf;
}

Test(boot, debian_kernel)
{
    char dir[512], path[600];
    snprintf(path, sizeof(path), "%s/vmlinuz", guest_dir(dir, sizeof(dir)));
    int fd = open(path, O_RDONLY);
    if (fd < 0) cr_skip_test("no default guest kernel at %s (run 'make guest')", path);
    struct stat st;
    fstat(fd, &st);
    uint8_t *img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    cr_assert_neq(img, MAP_FAILED);
    char err[256];
    struct vmm_bzimage h;
    cr_assert_eq(vmm_bzimage_parse(img, (size_t)st.st_size, &h, err, sizeof(err)), 0, "%s", err);
    cr_assert_geq(h.version, 0x020f, "Debian 12's 6.1 reports 2.15");
    cr_assert(h.xloadflags & 1);
    cr_assert(h.relocatable);
    cr_assert_eq(h.kernel_alignment, 0x200000);
    cr_assert_eq(h.cmdline_size, 2047);
    struct ram r = ram_new(512ull << 20);
    struct vmm_boot_info bi;
    cr_assert_eq(load(&r, img, (size_t)st.st_size, NULL, 0, "console=ttyS0", &bi, err), 0, "%s",
                 err);
    cr_assert_eq(rd32(r.g.low + 0x7000 + 0x260), h.init_size);
    cr_assert_eq(memcmp(r.g.low + 0x100000, img + h.payload_off, h.payload_len), 0);
    munmap(img, (size_t)st.st_size);
    ram_free(&r);
}
