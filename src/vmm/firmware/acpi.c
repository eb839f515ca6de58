/* ACPI tables for the worker's PC: RSDP (revision 2), XSDT, FADT (revision
 * 6, full hardware: PM1a event/control and PM timer at the PM block, SCI,
 * reset through port 0xCF9), FACS, MADT and a DSDT whose AML is generated
 * here: \_S5 for poweroff, the PCI root bridge with its resources and
 * interrupt routing, and the ISA devices (COM1, RTC, the PS/2 keyboard; the
 * i8042 has no AUX port, so no mouse) so Linux's PNP layer finds them.
 * Everything is built in host memory, checksummed, and copied into the
 * guest with vmm_write_gpa. */
#include "vmm/vmm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable byte string ---- */
struct bytes {
    uint8_t *p;
    size_t len, cap;
    int err; /* first error (-ENOMEM, -EINVAL); later writes are dropped */
};

static void reserve(struct bytes *b, size_t n)
{
    if (b->err || b->len + n <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->err = -ENOMEM;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void put(struct bytes *b, const void *d, size_t n)
{
    reserve(b, n);
    if (b->err) return;
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_le(struct bytes *b, uint64_t v, unsigned n)
{
    uint8_t d[8];
    for (unsigned i = 0; i < n; i++)
        d[i] = (uint8_t)(v >> (8 * i));
    put(b, d, n);
}

static void put8(struct bytes *b, uint8_t v)
{
    put(b, &v, 1);
}
static void put16(struct bytes *b, uint16_t v)
{
    put_le(b, v, 2);
}
static void put32(struct bytes *b, uint32_t v)
{
    put_le(b, v, 4);
}
static void put64(struct bytes *b, uint64_t v)
{
    put_le(b, v, 8);
}

static void zeros(struct bytes *b, size_t n)
{
    reserve(b, n);
    if (b->err || !n) return; /* memset(NULL, 0, 0) is undefined (UBSan) */
    memset(b->p + b->len, 0, n);
    b->len += n;
}

static void patch_le(struct bytes *b, size_t at, uint64_t v, unsigned n)
{
    if (b->err) return;
    for (unsigned i = 0; i < n; i++)
        b->p[at + i] = (uint8_t)(v >> (8 * i));
}

/* Inserts n bytes at position at, moving what follows. */
static void insert(struct bytes *b, size_t at, const uint8_t *d, size_t n)
{
    reserve(b, n);
    if (b->err) return;
    memmove(b->p + at + n, b->p + at, b->len - at);
    memcpy(b->p + at, d, n);
    b->len += n;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

/* ---- system description table headers ---- */
#define OEM_ID       "HVP   "
#define OEM_REVISION 1
#define CREATOR_ID   "HVP "
#define CREATOR_REV  1
#define SDT_HDR      36
#define SDT_LENGTH   4
#define SDT_CHECKSUM 9

static void sdt_begin(struct bytes *b, const char sig[4], uint8_t revision)
{
    char table_id[8] = {'H', 'V', 'P', sig[0], sig[1], sig[2], sig[3], ' '};
    put(b, sig, 4);
    put32(b, 0); /* length, patched by sdt_end */
    put8(b, revision);
    put8(b, 0); /* checksum, patched by sdt_end */
    put(b, OEM_ID, 6);
    put(b, table_id, 8);
    put32(b, OEM_REVISION);
    put(b, CREATOR_ID, 4);
    put32(b, CREATOR_REV);
}

static void sdt_end(struct bytes *b)
{
    if (b->err) return;
    if (b->len > UINT32_MAX) {
        b->err = -E2BIG;
        return;
    }
    patch_le(b, SDT_LENGTH, b->len, 4);
    b->p[SDT_CHECKSUM] = 0;
    b->p[SDT_CHECKSUM] = (uint8_t)-sum8(b->p, b->len);
}

/* Generic Address Structure: I/O space. */
static void gas_io(struct bytes *b, uint8_t bit_width, uint8_t access_size, uint64_t port)
{
    put8(b, 1); /* system I/O */
    put8(b, bit_width);
    put8(b, 0); /* bit offset */
    put8(b, access_size);
    put64(b, port);
}

static void gas_none(struct bytes *b)
{
    zeros(b, 12);
}

/* ---- AML ----
 * Only what the DSDT below needs: names, integers, strings, packages,
 * buffers, scopes and devices. Package lengths are inserted once the
 * contents are known (their encoding's size depends on them). */
#define AML_ZERO       0x00
#define AML_ONE        0x01
#define AML_NAME       0x08
#define AML_BYTE       0x0A
#define AML_WORD       0x0B
#define AML_DWORD      0x0C
#define AML_STRING     0x0D
#define AML_QWORD      0x0E
#define AML_SCOPE      0x10
#define AML_BUFFER     0x11
#define AML_PACKAGE    0x12
#define AML_EXT        0x5B
#define AML_DEVICE     0x82 /* after AML_EXT */
#define AML_ROOT       0x5C /* '\' */
#define AML_DUAL_NAME  0x2E
#define AML_MULTI_NAME 0x2F
#define AML_ONES       0xFF

/* Marks where a PkgLength goes; aml_end inserts it. */
static size_t aml_begin(struct bytes *b)
{
    return b->len;
}

static void aml_end(struct bytes *b, size_t at)
{
    if (b->err) return;
    size_t body = b->len - at;
    uint8_t enc[4];
    unsigned n;
    /* PkgLength counts its own bytes: 1 byte up to 63, else 2-4 bytes with
     * the low nibble in the lead byte and the rest in whole bytes. */
    if (body + 1 <= 0x3F) {
        enc[0] = (uint8_t)(body + 1);
        n = 1;
    } else {
        for (n = 2; n <= 4; n++)
            if (body + n < (1ull << (4 + 8 * (n - 1)))) break;
        if (n > 4) {
            b->err = -E2BIG;
            return;
        }
        size_t len = body + n;
        enc[0] = (uint8_t)(((n - 1) << 6) | (len & 0xF));
        for (unsigned i = 1; i < n; i++)
            enc[i] = (uint8_t)(len >> (4 + 8 * (i - 1)));
    }
    insert(b, at, enc, n);
}

static bool name_char(char c, bool lead)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!lead && c >= '0' && c <= '9');
}

/* A name string: an optional leading '\' and dot-separated segments of up
 * to four characters, padded with '_' ("\_SB.PCI0", "_S5", "COM1"). */
static void aml_name(struct bytes *b, const char *path)
{
    char segs[8][4];
    unsigned n = 0;
    bool root = *path == '\\';
    const char *s = path + root;
    while (*s) {
        size_t len = strcspn(s, ".");
        if (n == 8 || len == 0 || len > 4 || !name_char(s[0], true)) {
            b->err = b->err ? b->err : -EINVAL;
            return;
        }
        for (size_t i = 0; i < 4; i++) {
            if (i < len && !name_char(s[i], i == 0)) {
                b->err = b->err ? b->err : -EINVAL;
                return;
            }
            segs[n][i] = i < len ? s[i] : '_';
        }
        n++;
        s += len;
        if (*s == '.') s++;
    }
    if (root) put8(b, AML_ROOT);
    if (n == 0) {
        put8(b, 0); /* NullName */
        return;
    }
    if (n == 2) put8(b, AML_DUAL_NAME);
    if (n > 2) {
        put8(b, AML_MULTI_NAME);
        put8(b, (uint8_t)n);
    }
    for (unsigned i = 0; i < n; i++)
        put(b, segs[i], 4);
}

/* The shortest encoding of an integer, as iasl would write it. */
static void aml_int(struct bytes *b, uint64_t v)
{
    if (v == 0) {
        put8(b, AML_ZERO);
    } else if (v == 1) {
        put8(b, AML_ONE);
    } else if (v <= UINT8_MAX) {
        put8(b, AML_BYTE);
        put8(b, (uint8_t)v);
    } else if (v <= UINT16_MAX) {
        put8(b, AML_WORD);
        put16(b, (uint16_t)v);
    } else if (v <= UINT32_MAX) {
        put8(b, AML_DWORD);
        put32(b, (uint32_t)v);
    } else {
        put8(b, AML_QWORD);
        put64(b, v);
    }
}

/* EisaId("PNP0501"): three compressed letters and four hex digits, stored
 * most significant byte first. */
static void aml_eisaid(struct bytes *b, const char id[7])
{
    uint32_t v = 0;
    for (int i = 0; i < 3; i++)
        v = (v << 5) | ((uint32_t)(id[i] - 0x40) & 0x1F);
    for (int i = 3; i < 7; i++) {
        char c = id[i];
        v = (v << 4) | (uint32_t)(c <= '9' ? c - '0' : c - 'A' + 10);
    }
    put8(b, AML_DWORD);
    put8(b, (uint8_t)(v >> 24));
    put8(b, (uint8_t)(v >> 16));
    put8(b, (uint8_t)(v >> 8));
    put8(b, (uint8_t)v);
}

static void aml_name_int(struct bytes *b, const char *name, uint64_t v)
{
    put8(b, AML_NAME);
    aml_name(b, name);
    aml_int(b, v);
}

static void aml_name_eisaid(struct bytes *b, const char *name, const char id[7])
{
    put8(b, AML_NAME);
    aml_name(b, name);
    aml_eisaid(b, id);
}

/* Name(name, Buffer(){data}) */
static void aml_name_buffer(struct bytes *b, const char *name, const struct bytes *data)
{
    if (data->err) {
        b->err = b->err ? b->err : data->err;
        return;
    }
    put8(b, AML_NAME);
    aml_name(b, name);
    put8(b, AML_BUFFER);
    size_t at = aml_begin(b);
    aml_int(b, data->len);
    put(b, data->p, data->len);
    aml_end(b, at);
}

static size_t aml_scope_begin(struct bytes *b, const char *name)
{
    put8(b, AML_SCOPE);
    size_t at = aml_begin(b);
    aml_name(b, name);
    return at;
}

static size_t aml_device_begin(struct bytes *b, const char *name)
{
    put8(b, AML_EXT);
    put8(b, AML_DEVICE);
    size_t at = aml_begin(b);
    aml_name(b, name);
    return at;
}

/* Package(n){...}: the caller writes n elements, then aml_end. */
static size_t aml_package_begin(struct bytes *b, uint8_t n)
{
    put8(b, AML_PACKAGE);
    size_t at = aml_begin(b);
    put8(b, n);
    return at;
}

/* ---- resource descriptors (for _CRS buffers) ---- */
static void res_io(struct bytes *r, uint16_t port, uint8_t len)
{
    put8(r, 0x47); /* small item: I/O port, 7 bytes */
    put8(r, 1);    /* 16-bit decode */
    put16(r, port);
    put16(r, port);
    put8(r, 1); /* alignment */
    put8(r, len);
}

static void res_irq(struct bytes *r, unsigned irq)
{
    put8(r, 0x22); /* small item: IRQ mask, edge, active high */
    put16(r, (uint16_t)(1u << irq));
}

/* Word address space descriptor (bus numbers or I/O), producer, fixed range. */
static void res_word(struct bytes *r, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
    put8(r, 0x88);
    put16(r, 13);
    put8(r, type);
    put8(r, 0x0C); /* _MIF | _MAF fixed, positive decode, producer */
    put8(r, type_flags);
    put16(r, 0); /* granularity */
    put16(r, min);
    put16(r, max);
    put16(r, 0); /* translation */
    put16(r, (uint16_t)(max - min + 1));
}

static void res_dword_mem(struct bytes *r, uint32_t min, uint32_t max)
{
    put8(r, 0x87);
    put16(r, 23);
    put8(r, 0);    /* memory */
    put8(r, 0x0C); /* fixed min/max, positive decode, producer */
    put8(r, 0x01); /* read/write, non-cacheable */
    put32(r, 0);   /* granularity */
    put32(r, min);
    put32(r, max);
    put32(r, 0); /* translation */
    put32(r, max - min + 1);
}

static void res_end(struct bytes *r)
{
    put8(r, 0x79);
    put8(r, 0); /* checksum 0: "treat as correct" */
}

/* Device(name) with _HID, _UID and a _CRS of I/O ranges and IRQs. */
static void isa_device(struct bytes *b, const char *name, const char *hid, unsigned uid,
                       const uint16_t *ports, const uint8_t *lens, unsigned nports,
                       const uint8_t *irqs, unsigned nirqs)
{
    struct bytes crs = {0};
    for (unsigned i = 0; i < nports; i++)
        res_io(&crs, ports[i], lens[i]);
    for (unsigned i = 0; i < nirqs; i++)
        res_irq(&crs, irqs[i]);
    res_end(&crs);

    size_t dev = aml_device_begin(b, name);
    aml_name_eisaid(b, "_HID", hid);
    aml_name_int(b, "_UID", uid);
    aml_name_buffer(b, "_CRS", &crs);
    aml_end(b, dev);
    free(crs.p);
}

static void pci_root(struct bytes *b)
{
    struct bytes crs = {0};
    res_word(&crs, 2, 0, 0x00, 0xFF);     /* bus numbers */
    res_io(&crs, 0xCF8, 8);               /* the configuration ports themselves */
    res_word(&crs, 1, 3, 0x0000, 0x0CF7); /* I/O, entire range */
    res_word(&crs, 1, 3, 0x0D00, 0xFFFF);
    res_dword_mem(&crs, (uint32_t)VMM_PCI_MMIO_BASE, (uint32_t)VMM_PCI_MMIO_LIMIT);
    res_end(&crs);

    size_t dev = aml_device_begin(b, "PCI0");
    aml_name_eisaid(b, "_HID", "PNP0A03");
    aml_name_int(b, "_UID", 0);
    aml_name_int(b, "_SEG", 0);
    aml_name_int(b, "_BBN", 0);
    aml_name_buffer(b, "_CRS", &crs);
    /* _PRT: every slot's INTA-INTD on the GSIs the PCI core wires them to. */
    put8(b, AML_NAME);
    aml_name(b, "_PRT");
    size_t prt = aml_package_begin(b, 32 * 4);
    for (unsigned slot = 0; slot < 32; slot++) {
        for (unsigned pin = 0; pin < 4; pin++) {
            size_t e = aml_package_begin(b, 4);
            aml_int(b, (uint64_t)slot << 16 | 0xFFFF); /* any function of the slot */
            aml_int(b, pin);
            aml_int(b, 0); /* no link device: the last element is the GSI */
            aml_int(b, vmm_pci_intx_gsi(slot, pin + 1));
            aml_end(b, e);
        }
    }
    aml_end(b, prt);
    aml_end(b, dev);
    free(crs.p);
}

static void build_dsdt(struct bytes *b)
{
    sdt_begin(b, "DSDT", 2); /* revision 2: 64-bit integers */

    /* \_S5: SLP_TYPa and SLP_TYPb for PM1a/b_CNT; the PM block powers off on it. */
    put8(b, AML_NAME);
    aml_name(b, "_S5");
    size_t s5 = aml_package_begin(b, 2);
    aml_int(b, VMM_ACPI_S5_SLP_TYP);
    aml_int(b, VMM_ACPI_S5_SLP_TYP);
    aml_end(b, s5);

    size_t sb = aml_scope_begin(b, "\\_SB");
    pci_root(b);
    static const uint16_t com1_port[] = {0x3F8}, rtc_port[] = {0x70}, kbd_port[] = {0x60, 0x64};
    static const uint8_t com1_len[] = {8}, rtc_len[] = {2}, kbd_len[] = {1, 1};
    static const uint8_t com1_irq[] = {4}, rtc_irq[] = {8}, kbd_irq[] = {1};
    isa_device(b, "COM1", "PNP0501", 1, com1_port, com1_len, 1, com1_irq, 1);
    isa_device(b, "RTC", "PNP0B00", 0, rtc_port, rtc_len, 1, rtc_irq, 1);
    isa_device(b, "KBD", "PNP0303", 0, kbd_port, kbd_len, 2, kbd_irq, 1);
    aml_end(b, sb);

    sdt_end(b);
}

/* ---- the fixed tables ---- */
#define FADT_LEN         276
#define FACS_LEN         64
#define FADT_F_WBINVD    (1u << 0)
#define FADT_F_PROC_C1   (1u << 2)
#define FADT_F_SLP_BTN   (1u << 5) /* no fixed sleep button */
#define FADT_F_FIX_RTC   (1u << 6) /* no RTC wake status in the fixed block */
#define FADT_F_RESET_REG (1u << 10)
#define BOOT_LEGACY_DEVS (1u << 0)
#define BOOT_8042        (1u << 1)
#define BOOT_NO_VGA      (1u << 2)

/* A 32-bit pointer field: the address, or 0 when it is above 4 GiB (then
 * only the X_ field carries it). */
static uint32_t ptr32(uint64_t gpa)
{
    return gpa <= UINT32_MAX ? (uint32_t)gpa : 0;
}

static void build_facs(struct bytes *b)
{
    put(b, "FACS", 4);
    put32(b, FACS_LEN);
    put32(b, 0); /* hardware signature */
    put32(b, 0); /* firmware waking vector: no S3 */
    put32(b, 0); /* global lock */
    put32(b, 0); /* flags */
    put64(b, 0); /* X firmware waking vector */
    put8(b, 2);  /* version */
    zeros(b, FACS_LEN - b->len);
}

static void build_fadt(struct bytes *b, const struct vmm_acpi_config *c, uint64_t facs,
                       uint64_t dsdt)
{
    uint16_t evt = (uint16_t)(c->pm_base + (VMM_ACPI_PM1_EVT - VMM_ACPI_PM_BASE));
    uint16_t cnt = (uint16_t)(c->pm_base + (VMM_ACPI_PM1_CNT - VMM_ACPI_PM_BASE));
    uint16_t tmr = (uint16_t)(c->pm_base + (VMM_ACPI_PM_TMR - VMM_ACPI_PM_BASE));

    sdt_begin(b, "FACP", 6);
    put32(b, ptr32(facs));          /* 36 FIRMWARE_CTRL */
    put32(b, ptr32(dsdt));          /* 40 DSDT */
    put8(b, 0);                     /* 44 reserved */
    put8(b, 0);                     /* 45 preferred PM profile: unspecified */
    put16(b, (uint16_t)c->sci_gsi); /* 46 SCI_INT */
    put32(b, 0);                    /* 48 SMI_CMD: none, always in ACPI mode */
    put8(b, 0);                     /* 52 ACPI_ENABLE */
    put8(b, 0);                     /* 53 ACPI_DISABLE */
    put8(b, 0);                     /* 54 S4BIOS_REQ */
    put8(b, 0);                     /* 55 PSTATE_CNT */
    put32(b, evt);                  /* 56 PM1a_EVT_BLK */
    put32(b, 0);                    /* 60 PM1b_EVT_BLK */
    put32(b, cnt);                  /* 64 PM1a_CNT_BLK */
    put32(b, 0);                    /* 68 PM1b_CNT_BLK */
    put32(b, 0);                    /* 72 PM2_CNT_BLK */
    put32(b, tmr);                  /* 76 PM_TMR_BLK */
    put32(b, 0);                    /* 80 GPE0_BLK */
    put32(b, 0);                    /* 84 GPE1_BLK */
    put8(b, 4);                     /* 88 PM1_EVT_LEN */
    put8(b, 2);                     /* 89 PM1_CNT_LEN */
    put8(b, 0);                     /* 90 PM2_CNT_LEN */
    put8(b, 4);                     /* 91 PM_TMR_LEN */
    put8(b, 0);                     /* 92 GPE0_BLK_LEN */
    put8(b, 0);                     /* 93 GPE1_BLK_LEN */
    put8(b, 0);                     /* 94 GPE1_BASE */
    put8(b, 0);                     /* 95 CST_CNT */
    put16(b, 101);                  /* 96 P_LVL2_LAT > 100: no C2 */
    put16(b, 1001);                 /* 98 P_LVL3_LAT > 1000: no C3 */
    put16(b, 0);                    /* 100 FLUSH_SIZE */
    put16(b, 0);                    /* 102 FLUSH_STRIDE */
    put8(b, 0);                     /* 104 DUTY_OFFSET */
    put8(b, 0);                     /* 105 DUTY_WIDTH */
    put8(b, 0);                     /* 106 DAY_ALRM */
    put8(b, 0);                     /* 107 MON_ALRM */
    put8(b, 0);                     /* 108 CENTURY: none (two-digit years) */
    put16(b, BOOT_LEGACY_DEVS | BOOT_8042 | BOOT_NO_VGA); /* 109 IAPC_BOOT_ARCH */
    put8(b, 0);                                           /* 111 reserved */
    put32(b, FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BTN | FADT_F_FIX_RTC |
                 FADT_F_RESET_REG);         /* 112 flags; TMR_VAL_EXT off: 24-bit timer */
    gas_io(b, 8, 1, VMM_RESET_PORT);        /* 116 RESET_REG */
    put8(b, VMM_RESET_VALUE);               /* 128 RESET_VALUE */
    put16(b, 0);                            /* 129 ARM_BOOT_ARCH */
    put8(b, 0);                             /* 131 FADT minor version */
    put64(b, facs > UINT32_MAX ? facs : 0); /* 132 X_FIRMWARE_CTRL: one of the two */
    put64(b, dsdt);                         /* 140 X_DSDT */
    gas_io(b, 32, 2, evt);                  /* 148 X_PM1a_EVT_BLK: two 16-bit registers */
    gas_none(b);                            /* 160 X_PM1b_EVT_BLK */
    gas_io(b, 16, 2, cnt);                  /* 172 X_PM1a_CNT_BLK */
    gas_none(b);                            /* 184 X_PM1b_CNT_BLK */
    gas_none(b);                            /* 196 X_PM2_CNT_BLK */
    gas_io(b, 32, 3, tmr);                  /* 208 X_PM_TMR_BLK */
    gas_none(b);                            /* 220 X_GPE0_BLK */
    gas_none(b);                            /* 232 X_GPE1_BLK */
    gas_none(b);                            /* 244 SLEEP_CONTROL_REG: full hardware uses PM1a_CNT */
    gas_none(b);                            /* 256 SLEEP_STATUS_REG */
    put64(b, 0);                            /* 268 hypervisor vendor identity */
    sdt_end(b);
}

#define MADT_PCAT_COMPAT 1u
#define MPS_HIGH         0x1 /* polarity active high */
#define MPS_EDGE         0x4
#define MPS_LEVEL        0xC

static void madt_override(struct bytes *b, uint8_t irq, uint32_t gsi, uint16_t flags)
{
    put8(b, 2);
    put8(b, 10);
    put8(b, 0); /* ISA */
    put8(b, irq);
    put32(b, gsi);
    put16(b, flags);
}

static void build_madt(struct bytes *b, const struct vmm_acpi_config *c)
{
    sdt_begin(b, "APIC", 4);
    put32(b, (uint32_t)c->lapic_gpa);
    put32(b, MADT_PCAT_COMPAT); /* the two 8259s are there too */
    for (unsigned i = 0; i < c->ncpus; i++) {
        put8(b, 0); /* processor local APIC */
        put8(b, 8);
        put8(b, (uint8_t)i); /* ACPI processor UID */
        put8(b, (uint8_t)i); /* APIC ID: vCPU i has LAPIC ID i */
        put32(b, 1);         /* enabled */
    }
    put8(b, 1); /* I/O APIC */
    put8(b, 12);
    put8(b, 0); /* IOAPIC ID */
    put8(b, 0);
    put32(b, (uint32_t)c->ioapic_gpa);
    put32(b, 0); /* GSI base */
    /* PC wiring: the PIT (ISA IRQ 0) drives IOAPIC pin 2; the SCI is level,
     * active high (ACPI's default would be active low). */
    madt_override(b, 0, 2, MPS_HIGH | MPS_EDGE);
    madt_override(b, (uint8_t)c->sci_gsi, c->sci_gsi, MPS_HIGH | MPS_LEVEL);
    put8(b, 4); /* local APIC NMI: every processor, LINT1 */
    put8(b, 6);
    put8(b, 0xFF);
    put16(b, 0);
    put8(b, 1);
    sdt_end(b);
}

static void build_xsdt(struct bytes *b, const uint64_t *tables, unsigned n)
{
    sdt_begin(b, "XSDT", 1);
    for (unsigned i = 0; i < n; i++)
        put64(b, tables[i]);
    sdt_end(b);
}

#define RSDP_LEN 36

static void build_rsdp(uint8_t r[RSDP_LEN], uint64_t xsdt)
{
    memset(r, 0, RSDP_LEN);
    memcpy(r, "RSD PTR ", 8);
    memcpy(r + 9, OEM_ID, 6);
    r[15] = 2; /* revision: ACPI 2.0+, XSDT */
    /* 16: RsdtAddress 0; the XSDT is the only root table. */
    for (int i = 0; i < 4; i++)
        r[20 + i] = (uint8_t)(RSDP_LEN >> (8 * i));
    for (int i = 0; i < 8; i++)
        r[24 + i] = (uint8_t)(xsdt >> (8 * i));
    r[8] = (uint8_t)-sum8(r, 20);
    r[32] = (uint8_t)-sum8(r, RSDP_LEN);
}

/* ---- the layout ---- */
static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Appends table t to the image at the next multiple of align (relative to
 * the guest address base) and returns its guest address. */
static uint64_t place(struct bytes *img, uint64_t base, const struct bytes *t, uint64_t align)
{
    if (t->err) {
        img->err = img->err ? img->err : t->err;
        return 0;
    }
    uint64_t gpa = align_up(base + img->len, align);
    zeros(img, gpa - (base + img->len));
    put(img, t->p, t->len);
    return gpa;
}

int vmm_acpi_build(struct hvp_vm *vm, const struct vmm_acpi_config *c)
{
    if (!c || c->ncpus == 0 || c->ncpus > 255 || (c->rsdp_gpa & 15) || c->sci_gsi > 255 ||
        c->lapic_gpa > UINT32_MAX || c->ioapic_gpa > UINT32_MAX ||
        c->pm_base > 0x10000 - VMM_ACPI_PM_LEN)
        return -EINVAL;

    struct bytes facs = {0}, dsdt = {0}, fadt = {0}, madt = {0}, xsdt = {0}, img = {0};
    build_facs(&facs);
    build_dsdt(&dsdt);
    build_madt(&madt, c);

    /* The FACS must be 64-byte aligned; the rest only needs to be found. */
    uint64_t base = c->tables_gpa;
    uint64_t facs_gpa = place(&img, base, &facs, 64);
    uint64_t dsdt_gpa = place(&img, base, &dsdt, 16);
    build_fadt(&fadt, c, facs_gpa, dsdt_gpa);
    uint64_t fadt_gpa = place(&img, base, &fadt, 16);
    uint64_t madt_gpa = place(&img, base, &madt, 16);
    uint64_t tables[] = {fadt_gpa, madt_gpa};
    build_xsdt(&xsdt, tables, 2);
    uint64_t xsdt_gpa = place(&img, base, &xsdt, 16);

    int rc = img.err;
    if (!rc && img.len > c->tables_max) rc = -ENOSPC;
    if (!rc && c->rsdp_gpa < base + img.len && base < c->rsdp_gpa + RSDP_LEN) rc = -EINVAL;
    if (!rc) rc = vmm_write_gpa(vm, base, img.p, img.len);
    if (!rc) {
        uint8_t rsdp[RSDP_LEN];
        build_rsdp(rsdp, xsdt_gpa);
        rc = vmm_write_gpa(vm, c->rsdp_gpa, rsdp, sizeof rsdp);
    }
    free(facs.p);
    free(dsdt.p);
    free(fadt.p);
    free(madt.p);
    free(xsdt.p);
    free(img.p);
    return rc;
}
