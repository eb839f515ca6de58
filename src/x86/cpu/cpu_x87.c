/* hvp software x86-64 CPU: x87 FPU (not yet implemented).
 *
 * Fill hvp_cpu_build_x87() following the conventions in cpu_internal.h;
 * advertise FPU in CPUID leaf 1 only once complete. Until then every x87
 * instruction raises #UD. */
#include "cpu_internal.h"

int hvp_cpu_build_x87(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    (void)cpu;
    (void)xi;
    (void)d;
    return HVP_B_NONE;
}
