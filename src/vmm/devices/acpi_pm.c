/* ACPI fixed hardware: the PM1a event block (status, enable), the PM1a
 * control block (SCI_EN, SLP_TYP/SLP_EN: S5 powers the VM off) and the
 * 24-bit PM timer at 3.579545 MHz of guest time. The SCI is GSI 9, level,
 * active high (the MADT's override says so). */
#include "vmm/vmm_internal.h"

#include <stdlib.h>

#define PM1_TMR_STS    0x0001
#define PM1_PWRBTN_STS 0x0100
#define PM1_WAK_STS    0x8000
#define PM1_TMR_EN     0x0001
/* Every PM1 enable bit the spec defines reads back (TMR, GBL, PWRBTN,
 * SLPBTN, RTC, PCIEXP_WAKE_DIS): ACPICA verifies an enable by reading it. */
#define PM1_EN_MASK    0x4721
#define PM1_STS_MASK   0xC731 /* status bits that can raise the SCI */
#define CNT_SCI_EN     0x0001
#define CNT_SLP_EN     0x2000
#define CNT_SLP_TYP(v) (((v) >> 10) & 7)
#define CNT_KEEP       0x1C06 /* SCI_EN reads 1; BM_RLD, GBL_RLS and SLP_TYP are kept */
#define TMR_BITS       24
#define SCI_GSI        9

struct vmm_acpi_pm {
    struct hvp_vm *vm;
    struct vmm_timer *timer; /* next carry of timer bit 23, only with TMR_EN */
    uint16_t sts, en, cnt;
    uint64_t carry_epoch; /* ticks >> 23 when TMR_STS was last brought up to date */
};

static uint64_t ticks(struct vmm_acpi_pm *pm)
{
    return (uint64_t)((unsigned __int128)vmm_now_ns(pm->vm) * VMM_ACPI_PM_TMR_HZ / 1000000000u);
}

/* Sets TMR_STS when bit 23 changed since the last look, and keeps the SCI
 * line and the carry timer in step with status & enable. */
static void update(struct vmm_acpi_pm *pm)
{
    uint64_t epoch = ticks(pm) >> (TMR_BITS - 1);
    if (epoch != pm->carry_epoch) {
        pm->sts |= PM1_TMR_STS;
        pm->carry_epoch = epoch;
    }
    vmm_irq_set(pm->vm, SCI_GSI, (pm->cnt & CNT_SCI_EN) && (pm->sts & pm->en & PM1_STS_MASK));
    if ((pm->en & PM1_TMR_EN) && !(pm->sts & PM1_TMR_STS)) {
        /* First nanosecond at which ticks reach the next epoch. */
        uint64_t next = (epoch + 1) << (TMR_BITS - 1);
        uint64_t ns = (uint64_t)(((unsigned __int128)next * 1000000000u + VMM_ACPI_PM_TMR_HZ - 1) /
                                 VMM_ACPI_PM_TMR_HZ);
        vmm_timer_arm(pm->timer, ns);
    } else {
        vmm_timer_cancel(pm->timer);
    }
}

static void carry(void *dev)
{
    update(dev);
}

static uint8_t reg_byte(struct vmm_acpi_pm *pm, unsigned off, uint64_t tmr)
{
    switch (off) {
    case 0: return (uint8_t)pm->sts;
    case 1: return (uint8_t)(pm->sts >> 8);
    case 2: return (uint8_t)pm->en;
    case 3: return (uint8_t)(pm->en >> 8);
    case 4: return (uint8_t)pm->cnt;
    case 5: return (uint8_t)(pm->cnt >> 8);
    case 8: return (uint8_t)tmr;
    case 9: return (uint8_t)(tmr >> 8);
    case 10: return (uint8_t)(tmr >> 16);
    default: return 0; /* 6, 7: gap; 11: the 24-bit timer's top byte */
    }
}

static uint64_t pm_read(void *dev, uint64_t offset, unsigned size)
{
    struct vmm_acpi_pm *pm = dev;
    update(pm);
    uint64_t tmr = ticks(pm) & ((1u << TMR_BITS) - 1), v = 0;
    for (unsigned i = 0; i < size && offset + i < VMM_ACPI_PM_LEN; i++)
        v |= (uint64_t)reg_byte(pm, (unsigned)offset + i, tmr) << (8 * i);
    return v;
}

static void pm_write(void *dev, uint64_t offset, unsigned size, uint64_t value)
{
    struct vmm_acpi_pm *pm = dev;
    update(pm);
    uint16_t sts_clear = 0, en = pm->en, cnt = pm->cnt;
    bool cnt_written = false;
    for (unsigned i = 0; i < size && offset + i < VMM_ACPI_PM_LEN; i++) {
        unsigned off = (unsigned)offset + i;
        uint16_t b = (uint8_t)(value >> (8 * i));
        switch (off) {
        case 0: sts_clear |= b; break;
        case 1: sts_clear |= (uint16_t)(b << 8); break; /* write one to clear */
        case 2: en = (uint16_t)((en & 0xFF00) | b); break;
        case 3: en = (uint16_t)((en & 0x00FF) | b << 8); break;
        case 4: cnt = (uint16_t)((cnt & 0xFF00) | b), cnt_written = true; break;
        case 5: cnt = (uint16_t)((cnt & 0x00FF) | b << 8), cnt_written = true; break;
        default: break; /* the timer is read-only */
        }
    }
    pm->sts &= (uint16_t)~sts_clear;
    pm->en = en & PM1_EN_MASK;
    if (cnt_written) {
        /* Linux writes SLP_TYP first, then SLP_TYP | SLP_EN; only S5 is
         * offered in the DSDT, other states are ignored. */
        if ((cnt & CNT_SLP_EN) && CNT_SLP_TYP(cnt) == VMM_ACPI_S5_SLP_TYP)
            vmm_request_stop(pm->vm, VMM_STOP_POWEROFF);
        pm->cnt = (uint16_t)((cnt & CNT_KEEP) | CNT_SCI_EN);
    }
    update(pm);
}

static const struct vmm_io_ops pm_ops = {pm_read, pm_write};

void vmm_acpi_pm_power_button(struct vmm_acpi_pm *pm)
{
    pm->sts |= PM1_PWRBTN_STS;
    update(pm);
}

struct vmm_acpi_pm *vmm_acpi_pm_new(struct hvp_vm *vm)
{
    struct vmm_acpi_pm *pm = calloc(1, sizeof *pm);
    if (!pm) return NULL;
    pm->vm = vm;
    pm->cnt = CNT_SCI_EN; /* SMI_CMD is 0: the machine is always in ACPI mode */
    pm->timer = vmm_timer_new(vm, carry, pm);
    if (!pm->timer) {
        free(pm);
        return NULL;
    }
    if (vmm_bus_claim(vm, VMM_PIO, VMM_ACPI_PM_BASE, VMM_ACPI_PM_LEN, &pm_ops, pm, "acpi-pm") < 0) {
        vmm_timer_free(pm->timer);
        free(pm);
        return NULL;
    }
    pm->carry_epoch = ticks(pm) >> (TMR_BITS - 1);
    return pm;
}

void vmm_acpi_pm_free(struct vmm_acpi_pm *pm)
{
    if (!pm) return;
    vmm_bus_release(pm->vm, VMM_PIO, VMM_ACPI_PM_BASE);
    vmm_timer_free(pm->timer);
    free(pm);
}
