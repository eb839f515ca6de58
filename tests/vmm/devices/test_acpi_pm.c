/* The ACPI PM block: poweroff the way ACPICA does it, the PM timer. */
#include <criterion/criterion.h>

#include "fake_machine.h"

Test(acpi_pm, s5_sequence_powers_off)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    cr_assert_not_null(pm);
    uint16_t cnt = (uint16_t)fake_in(vm, VMM_ACPI_PM1_CNT, 2);
    cr_assert_eq(cnt & 1, 1, "SCI_EN reads 1: always in ACPI mode");
    /* acpi_hw_legacy_sleep: clear WAK_STS, write SLP_TYP, then | SLP_EN. */
    fake_out(vm, VMM_ACPI_PM1_EVT, 2, 0x8000);
    cnt &= (uint16_t) ~(7 << 10 | 1 << 13);
    fake_out(vm, VMM_ACPI_PM1_CNT, 2, cnt | VMM_ACPI_S5_SLP_TYP << 10);
    cr_assert_eq(vm->stop, VMM_STOP_NONE, "SLP_TYP alone does not sleep");
    fake_out(vm, VMM_ACPI_PM1_CNT, 2, cnt | VMM_ACPI_S5_SLP_TYP << 10 | 1 << 13);
    cr_assert_eq(vm->stop, VMM_STOP_POWEROFF);
    vmm_acpi_pm_free(pm);
    fake_vm_free(vm);
}

Test(acpi_pm, other_sleep_types_do_not_power_off)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    for (unsigned typ = 0; typ < 8; typ++)
        if (typ != VMM_ACPI_S5_SLP_TYP) fake_out(vm, VMM_ACPI_PM1_CNT, 2, typ << 10 | 1 << 13);
    cr_assert_eq(vm->stop, VMM_STOP_NONE);
    /* Byte writes: the high byte alone carries SLP_TYP and SLP_EN. */
    fake_outb(vm, VMM_ACPI_PM1_CNT + 1, (uint8_t)((VMM_ACPI_S5_SLP_TYP << 10 | 1 << 13) >> 8));
    cr_assert_eq(vm->stop, VMM_STOP_POWEROFF);
    vmm_acpi_pm_free(pm);
    fake_vm_free(vm);
}

Test(acpi_pm, pm_timer_counts_at_3_579545_mhz_and_wraps_at_24_bits)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    uint32_t t0 = (uint32_t)fake_in(vm, VMM_ACPI_PM_TMR, 4);
    fake_advance(vm, 1000000000); /* one second of guest time */
    uint32_t t1 = (uint32_t)fake_in(vm, VMM_ACPI_PM_TMR, 4);
    cr_assert_eq((t1 - t0) & 0xFFFFFF, VMM_ACPI_PM_TMR_HZ);
    /* 10 s: more than 2^24 ticks, so the counter wrapped; 24 bits only. */
    fake_advance(vm, 9000000000ull);
    uint32_t t2 = (uint32_t)fake_in(vm, VMM_ACPI_PM_TMR, 4);
    cr_assert_eq(t2 >> 24, 0);
    cr_assert_eq(t2, (uint32_t)(10ull * VMM_ACPI_PM_TMR_HZ) & 0xFFFFFF);
    vmm_acpi_pm_free(pm);
    fake_vm_free(vm);
}

Test(acpi_pm, timer_carry_sets_tmr_sts_and_raises_sci_when_enabled)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    fake_out(vm, VMM_ACPI_PM1_EVT + 2, 2, 1); /* TMR_EN */
    cr_assert(!vm->level[9]);
    uint64_t next;
    cr_assert_eq(fake_armed_timers(vm, &next), 1);
    /* Bit 23 flips after 2^23 ticks: about 2.34 s. */
    cr_assert_eq(next, (uint64_t)(((1ull << 23) * 1000000000ull + VMM_ACPI_PM_TMR_HZ - 1) /
                                  VMM_ACPI_PM_TMR_HZ));
    fake_advance(vm, next);
    cr_assert(vm->level[9], "SCI asserted");
    cr_assert_eq(fake_in(vm, VMM_ACPI_PM1_EVT, 2) & 1, 1, "TMR_STS");
    fake_out(vm, VMM_ACPI_PM1_EVT, 2, 1); /* write one to clear */
    cr_assert(!vm->level[9], "SCI drops when the status is cleared");
    cr_assert_eq(fake_in(vm, VMM_ACPI_PM1_EVT, 2) & 1, 0);
    vmm_acpi_pm_free(pm);
    fake_vm_free(vm);
}

Test(acpi_pm, power_button_raises_sci_once_enabled)
{
    struct hvp_vm *vm = fake_vm_new();
    struct vmm_acpi_pm *pm = vmm_acpi_pm_new(vm);
    vmm_acpi_pm_power_button(pm);
    cr_assert(!vm->level[9], "PWRBTN_EN clear: status only");
    cr_assert_eq(fake_in(vm, VMM_ACPI_PM1_EVT, 2) & 0x100, 0x100);
    /* ACPICA enables the fixed event and reads the enable back. */
    fake_out(vm, VMM_ACPI_PM1_EVT + 2, 2, 0x0100);
    cr_assert_eq(fake_in(vm, VMM_ACPI_PM1_EVT + 2, 2), 0x0100);
    cr_assert(vm->level[9], "SCI for the pending press");
    fake_out(vm, VMM_ACPI_PM1_EVT, 2, 0x0100);
    cr_assert(!vm->level[9]);
    /* RTC_EN reads back too (rtc-cmos enables the RTC fixed event). */
    fake_out(vm, VMM_ACPI_PM1_EVT + 2, 2, 0x0500);
    cr_assert_eq(fake_in(vm, VMM_ACPI_PM1_EVT + 2, 2), 0x0500);
    cr_assert_eq(vm->stop, VMM_STOP_NONE, "the button itself powers nothing off");
    vmm_acpi_pm_free(pm);
    fake_vm_free(vm);
}
