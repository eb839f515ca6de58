/* Placeholder until the table-driven decoder lands. */
#include "hvp/x86.h"
#include <string.h>
int hvp_x86_decode(struct hvp_x86_insn *out, const uint8_t *code, size_t avail, unsigned mode)
{
    (void)code;
    memset(out, 0, sizeof(*out));
    out->mode = (uint8_t)mode;
    return avail ? -HVP_X86_EINVALID : -HVP_X86_ETRUNCATED;
}
