/* hvp software x86-64 CPU: SSE/SSE2 (not yet implemented).
 *
 * Fill hvp_cpu_build_sse() following the conventions in cpu_internal.h;
 * advertise SSE/SSE2 in the default CPUID table (cpu.c) only once the set
 * is complete. Until then every SSE instruction raises #UD. */
#include "cpu_internal.h"

int hvp_cpu_build_sse(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    (void)cpu;
    (void)xi;
    (void)d;
    return HVP_B_NONE;
}
