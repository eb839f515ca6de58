/* Placeholder until the formatter lands. */
#include "hvp/x86.h"
#include <stdio.h>
int hvp_x86_format(const struct hvp_x86_insn *insn, uint64_t rip, char *buf, size_t size)
{
    (void)rip;
    return snprintf(buf, size, "%s", hvp_x86_op_name(insn->op));
}
