/* ACPI tables (src/vmm/firmware/acpi.c) built into a fake guest memory:
 * the RSDP -> XSDT -> FADT -> DSDT chain, checksums and lengths, the FADT's
 * PM block and reset register, the MADT for 1 and 4 vCPUs, and the decisive
 * check: ACPICA's own disassembler (iasl -d) reads every table without a
 * complaint and finds \_S5 and COM1's resources in the DSDT. */
#define _GNU_SOURCE /* strcasestr */
#include "vmm/vmm_internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEM_SIZE  0x100000u /* the first MiB: where the tables go */
#define RSDP_GPA  0xE0000u
#define TABLES    0xE1000u
#define TABLES_MX (MEM_SIZE - TABLES)

/* The fake machine: guest memory only. */
struct hvp_vm {
    uint8_t mem[MEM_SIZE];
    unsigned writes;
};

int vmm_write_gpa(struct hvp_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
    if (gpa > MEM_SIZE || len > MEM_SIZE - gpa) return -EFAULT;
    memcpy(vm->mem + gpa, buf, len);
    vm->writes++;
    return 0;
}

static struct vmm_acpi_config config(unsigned ncpus)
{
    return (struct vmm_acpi_config){
        .ncpus = ncpus,
        .rsdp_gpa = RSDP_GPA,
        .tables_gpa = TABLES,
        .tables_max = TABLES_MX,
        .ioapic_gpa = 0xFEC00000,
        .lapic_gpa = 0xFEE00000,
        .pm_base = VMM_ACPI_PM_BASE,
        .sci_gsi = 9,
    };
}

static struct hvp_vm *build(unsigned ncpus)
{
    struct hvp_vm *vm = calloc(1, sizeof *vm);
    cr_assert(vm);
    struct vmm_acpi_config c = config(ncpus);
    int rc = vmm_acpi_build(vm, &c);
    cr_assert_eq(rc, 0, "vmm_acpi_build(ncpus=%u) = %d", ncpus, rc);
    return vm;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint64_t rd64(const uint8_t *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

/* The table with this signature at gpa: checks bounds, length and checksum. */
static const uint8_t *table(struct hvp_vm *vm, uint64_t gpa, const char *sig)
{
    cr_assert(gpa >= TABLES && gpa + 36 <= MEM_SIZE, "%s at %#llx is outside the table area", sig,
              (unsigned long long)gpa);
    const uint8_t *t = vm->mem + gpa;
    cr_assert(memcmp(t, sig, 4) == 0, "expected %s at %#llx, found %.4s", sig,
              (unsigned long long)gpa, (const char *)t);
    uint32_t len = rd32(t + 4);
    cr_assert(len >= 36 && gpa + len <= MEM_SIZE, "%s length %u", sig, len);
    cr_assert_eq(sum(t, len), 0, "%s checksum: bytes sum to %u", sig, sum(t, len));
    return t;
}

static const uint8_t *rsdp(struct hvp_vm *vm)
{
    const uint8_t *r = vm->mem + RSDP_GPA;
    cr_assert(memcmp(r, "RSD PTR ", 8) == 0, "no RSDP signature at %#x", RSDP_GPA);
    cr_assert_eq(r[15], 2, "RSDP revision %u, want 2", r[15]);
    cr_assert_eq(sum(r, 20), 0, "RSDP checksum (first 20 bytes)");
    cr_assert_eq(rd32(r + 20), 36, "RSDP length");
    cr_assert_eq(sum(r, 36), 0, "RSDP extended checksum");
    return r;
}

/* XSDT entry with this signature, or NULL. */
static const uint8_t *find(struct hvp_vm *vm, const char *sig)
{
    const uint8_t *x = table(vm, rd64(rsdp(vm) + 24), "XSDT");
    uint32_t n = (rd32(x + 4) - 36) / 8;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t gpa = rd64(x + 36 + 8 * i);
        cr_assert(gpa >= TABLES && gpa + 4 <= MEM_SIZE, "XSDT entry %u = %#llx", i,
                  (unsigned long long)gpa);
        if (memcmp(vm->mem + gpa, sig, 4) == 0) return table(vm, gpa, sig);
    }
    return NULL;
}

Test(acpi, pointer_chain_and_checksums)
{
    struct hvp_vm *vm = build(1);
    const uint8_t *x = table(vm, rd64(rsdp(vm) + 24), "XSDT");
    cr_assert_eq((rd32(x + 4) - 36) % 8, 0, "XSDT length %u is not header + u64s", rd32(x + 4));
    cr_assert_eq((rd32(x + 4) - 36) / 8, 2, "XSDT should list FADT and MADT");

    const uint8_t *f = find(vm, "FACP");
    cr_assert(f, "no FADT in the XSDT");
    cr_assert_eq(rd32(f + 4), 276, "FADT revision 6 is 276 bytes, got %u", rd32(f + 4));
    cr_assert_eq(f[8], 6, "FADT revision");
    uint64_t dsdt = rd64(f + 140);
    cr_assert_eq(rd32(f + 40), dsdt, "32-bit DSDT and X_DSDT differ");
    const uint8_t *d = table(vm, dsdt, "DSDT");
    cr_assert(rd32(d + 4) > 36, "empty DSDT");

    /* ACPI: X_FIRMWARE_CTRL nonzero means FIRMWARE_CTRL is zero (Linux
     * lists the FACS twice when both are set); below 4 GiB the 32-bit one. */
    uint64_t facs = rd32(f + 36);
    cr_assert(facs != 0 && rd64(f + 132) == 0, "FACS pointers: FIRMWARE_CTRL %#x, X_ %#llx",
              rd32(f + 36), (unsigned long long)rd64(f + 132));
    cr_assert_eq(facs % 64, 0, "FACS at %#llx is not 64-byte aligned", (unsigned long long)facs);
    cr_assert(memcmp(vm->mem + facs, "FACS", 4) == 0 && rd32(vm->mem + facs + 4) == 64,
              "FACS signature/length");

    cr_assert(find(vm, "APIC"), "no MADT in the XSDT");
    free(vm);
}

Test(acpi, fadt_pm_block_sci_and_reset)
{
    struct hvp_vm *vm = build(1);
    const uint8_t *f = find(vm, "FACP");
    cr_assert_eq(rd16(f + 46), 9, "SCI_INT");
    cr_assert_eq(rd32(f + 48), 0, "SMI_CMD must be 0 (always in ACPI mode)");
    cr_assert_eq(rd32(f + 56), VMM_ACPI_PM1_EVT, "PM1a_EVT_BLK");
    cr_assert_eq(rd32(f + 64), VMM_ACPI_PM1_CNT, "PM1a_CNT_BLK");
    cr_assert_eq(rd32(f + 76), VMM_ACPI_PM_TMR, "PM_TMR_BLK");
    cr_assert_eq(f[88], 4, "PM1_EVT_LEN");
    cr_assert_eq(f[89], 2, "PM1_CNT_LEN");
    cr_assert_eq(f[91], 4, "PM_TMR_LEN");
    uint32_t flags = rd32(f + 112);
    cr_assert(flags & (1u << 10), "RESET_REG_SUP not set");
    cr_assert(!(flags & (1u << 20)), "HW_REDUCED_ACPI must be off");
    cr_assert(!(flags & (1u << 8)), "TMR_VAL_EXT set, but the PM timer has 24 bits");
    /* RESET_REG: I/O space, 8 bits, port 0xCF9; RESET_VALUE 6. */
    cr_assert_eq(f[116], 1, "RESET_REG space");
    cr_assert_eq(f[117], 8, "RESET_REG width");
    cr_assert_eq(rd64(f + 120), VMM_RESET_PORT, "RESET_REG address");
    cr_assert_eq(f[128], VMM_RESET_VALUE, "RESET_VALUE");
    cr_assert(rd16(f + 109) & 2, "IAPC_BOOT_ARCH lacks the 8042 flag (Linux would skip it)");
    /* X_ blocks: I/O space at the same ports, widths matching the lengths. */
    static const struct {
        unsigned off, port, bits;
    } x[] = {{148, VMM_ACPI_PM1_EVT, 32}, {172, VMM_ACPI_PM1_CNT, 16}, {208, VMM_ACPI_PM_TMR, 32}};
    for (unsigned i = 0; i < 3; i++) {
        cr_assert_eq(f[x[i].off], 1, "X_ block at %u: not I/O space", x[i].off);
        cr_assert_eq(f[x[i].off + 1], x[i].bits, "X_ block at %u: width", x[i].off);
        cr_assert_eq(rd64(f + x[i].off + 4), x[i].port, "X_ block at %u: port", x[i].off);
    }
    free(vm);
}

/* Walks the MADT: LAPIC IDs seen, IOAPIC count, the overrides. */
static void check_madt(unsigned ncpus)
{
    struct hvp_vm *vm = build(ncpus);
    const uint8_t *m = find(vm, "APIC");
    cr_assert_eq(rd32(m + 36), 0xFEE00000, "local APIC address");
    cr_assert(rd32(m + 40) & 1, "PCAT_COMPAT not set");
    uint32_t len = rd32(m + 4);
    unsigned lapics = 0, ioapics = 0, iso0 = 0, iso9 = 0;
    bool seen[256] = {0};
    for (uint32_t off = 44; off < len;) {
        const uint8_t *e = m + off;
        cr_assert(e[1] >= 2 && off + e[1] <= len, "MADT entry at %u: length %u", off, e[1]);
        switch (e[0]) {
        case 0:
            cr_assert_eq(e[1], 8);
            cr_assert(rd32(e + 4) & 1, "LAPIC %u not enabled", e[3]);
            cr_assert(e[3] < ncpus && !seen[e[3]], "LAPIC ID %u unexpected or repeated", e[3]);
            seen[e[3]] = true;
            lapics++;
            break;
        case 1:
            cr_assert_eq(e[1], 12);
            cr_assert_eq(rd32(e + 4), 0xFEC00000, "IOAPIC address");
            cr_assert_eq(rd32(e + 8), 0, "IOAPIC GSI base");
            ioapics++;
            break;
        case 2:
            cr_assert_eq(e[1], 10);
            cr_assert_eq(e[2], 0, "override bus must be ISA");
            if (e[3] == 0) {
                cr_assert_eq(rd32(e + 4), 2, "IRQ 0 must go to GSI 2");
                cr_assert_eq(rd16(e + 8) & 0xC, 0x4, "IRQ 0 override must be edge");
                iso0++;
            } else if (e[3] == 9) {
                cr_assert_eq(rd32(e + 4), 9, "SCI GSI");
                cr_assert_eq(rd16(e + 8), 0x000D, "SCI must be level, active high");
                iso9++;
            }
            break;
        default: break;
        }
        off += e[1];
    }
    cr_assert_eq(lapics, ncpus, "%u LAPIC entries for %u vCPUs", lapics, ncpus);
    cr_assert_eq(ioapics, 1, "IOAPIC entries");
    cr_assert_eq(iso0, 1, "IRQ 0 override");
    cr_assert_eq(iso9, 1, "SCI override");
    free(vm);
}

Test(acpi, madt_one_cpu)
{
    check_madt(1);
}

Test(acpi, madt_four_cpus)
{
    check_madt(4);
}

Test(acpi, bad_configs_write_nothing)
{
    struct hvp_vm *vm = calloc(1, sizeof *vm);
    cr_assert(vm);
    struct vmm_acpi_config c = config(0);
    cr_assert_eq(vmm_acpi_build(vm, &c), -EINVAL, "ncpus = 0 accepted");
    c = config(1);
    c.tables_max = 200;
    cr_assert_eq(vmm_acpi_build(vm, &c), -ENOSPC, "tables larger than tables_max accepted");
    c = config(1);
    c.rsdp_gpa = TABLES + 0x40; /* on top of the tables */
    cr_assert_eq(vmm_acpi_build(vm, &c), -EINVAL, "RSDP overlapping the tables accepted");
    c = config(1);
    c.rsdp_gpa = RSDP_GPA + 4;
    cr_assert_eq(vmm_acpi_build(vm, &c), -EINVAL, "unaligned RSDP accepted");
    cr_assert_eq(vm->writes, 0, "a refused build wrote guest memory");
    free(vm);
}

/* ---- iasl: ACPICA's disassembler as the judge ----
 * (The RSDP is checked above: this iasl cannot disassemble one alone.) */

static bool have_iasl(void)
{
    return system("iasl -v >/dev/null 2>&1") == 0;
}

/* Writes the table to dir/name.dat, runs `iasl -d` on it, returns the
 * disassembly (malloc'd); fails the test on errors or warnings. */
static char *disassemble(const char *dir, const char *name, const uint8_t *t)
{
    char path[512], cmd[1200], log[512];
    snprintf(path, sizeof path, "%s/%s.dat", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(t, 1, rd32(t + 4), f), rd32(t + 4));
    fclose(f);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    snprintf(cmd, sizeof cmd, "cd '%s' && iasl -d '%s.dat' >'%s' 2>&1", dir, name, log);
    int st = system(cmd);

    char *out = NULL;
    size_t n = 0;
    FILE *l = fopen(log, "r");
    cr_assert(l);
    FILE *m = open_memstream(&out, &n);
    int ch;
    while ((ch = fgetc(l)) != EOF)
        fputc(ch, m);
    fclose(l);
    fclose(m);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "iasl -d %s failed:\n%s", name, out);
    /* iasl says "N Errors, M Warnings" only when it has something to say;
     * any line naming an error or warning is a table the kernel may reject. */
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cr_assert(!strcasestr(line, "error") && !strcasestr(line, "warning"),
                  "iasl -d %s complains: %s", name, line);
    }
    free(out);

    snprintf(path, sizeof path, "%s/%s.dsl", dir, name);
    FILE *d = fopen(path, "r");
    cr_assert(d, "iasl wrote no %s", path);
    char *dsl = NULL;
    size_t dn = 0;
    m = open_memstream(&dsl, &dn);
    while ((ch = fgetc(d)) != EOF)
        fputc(ch, m);
    fclose(d);
    fclose(m);
    return dsl;
}

/* Removes spaces so "0x05,  // ..." comparisons do not depend on layout. */
static void squeeze(char *s)
{
    char *o = s;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') *o++ = *s;
    *o = 0;
}

Test(acpi, iasl_disassembles_every_table)
{
    if (!have_iasl()) cr_skip_test("iasl (acpica-tools) is not installed");
    struct hvp_vm *vm = build(4);
    char dir[] = "/tmp/hvp-acpi-XXXXXX";
    cr_assert(mkdtemp(dir));

    char *x = disassemble(dir, "xsdt", table(vm, rd64(rsdp(vm) + 24), "XSDT"));
    free(x);
    const uint8_t *fadt = find(vm, "FACP");
    char *f = disassemble(dir, "facp", fadt);
    squeeze(f);
    cr_assert(strstr(f, "ResetRegisterSupported(V2):1"), "FADT: no reset register flag:\n%s", f);
    cr_assert(strstr(f, "HardwareReduced(V5):0"), "FADT: hardware-reduced:\n%s", f);
    cr_assert(strstr(f, "PM1AControlBlockAddress:00000604"), "FADT: PM1a_CNT:\n%s", f);
    free(f);
    free(disassemble(dir, "facs", vm->mem + rd32(fadt + 36)));
    char *m = disassemble(dir, "apic", find(vm, "APIC"));
    cr_assert(strstr(m, "Local Apic ID : 03"), "MADT disassembly lacks LAPIC ID 3:\n%s", m);
    free(m);

    char *d = disassemble(dir, "dsdt", table(vm, rd64(fadt + 140), "DSDT"));
    squeeze(d);
    char want[64];
    snprintf(want, sizeof want,
             "Name(_S5,Package(0x02)//_S5_:S5SystemState\n{\n0x%02X,\n0x%02X\n})",
             VMM_ACPI_S5_SLP_TYP, VMM_ACPI_S5_SLP_TYP);
    cr_assert(strstr(d, want), "DSDT lacks \\_S5 = {%u, %u}:\n%s", VMM_ACPI_S5_SLP_TYP,
              VMM_ACPI_S5_SLP_TYP, d);
    char *com1 = strstr(d, "Device(COM1)");
    cr_assert(com1, "DSDT lacks COM1:\n%s", d);
    char *next = strstr(com1 + 1, "Device(");
    if (next) *next = 0; /* only COM1's own objects from here */
    cr_assert(strstr(com1, "EisaId(\"PNP0501\")"), "COM1 lacks _HID PNP0501:\n%s", com1);
    cr_assert(strstr(com1, "IO(Decode16,\n0x03F8,//RangeMinimum\n0x03F8,//RangeMaximum\n0x01,"
                           "//Alignment\n0x08,//Length"),
              "COM1 _CRS lacks IO 0x3F8-0x3FF:\n%s", com1);
    cr_assert(strstr(com1, "IRQNoFlags()\n{4}"), "COM1 _CRS lacks IRQ 4:\n%s", com1);
    if (next) *next = 'D';
    cr_assert(strstr(d, "EisaId(\"PNP0A03\")"), "DSDT lacks the PCI root bridge:\n%s", d);
    cr_assert(strstr(d, "WordBusNumber("), "PCI0 _CRS lacks the bus range:\n%s", d);
    free(d);

    /* The disassembly compiles back without a remark: the AML is what iasl
     * itself would have written. */
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && iasl -p again dsdt.dsl 2>&1 | grep -q '0 Errors, 0 Warnings, 0 Remarks'",
             dir);
    cr_assert_eq(system(cmd), 0, "the DSDT's disassembly does not compile cleanly (%s)", dir);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
    free(vm);
}
