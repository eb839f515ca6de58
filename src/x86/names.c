/* Names of instruction identities and registers. */
#include "hvp/x86.h"

static const char *const op_names[HVP_X86_OP_COUNT] = {
#define HVP_X86_OP(id, name) [HVP_X86_OP_##id] = name,
#include "hvp/x86_ops.def"
#undef HVP_X86_OP
};

const char *hvp_x86_op_name(unsigned op)
{
    return op < HVP_X86_OP_COUNT ? op_names[op] : "?";
}

static const char *const gpr8[16] = {"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil",
                                     "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b"};
static const char *const gpr8h[4] = {"ah", "ch", "dh", "bh"};
static const char *const gpr16[16] = {"ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
                                      "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w"};
static const char *const gpr32[16] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
                                      "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d"};
static const char *const gpr64[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                      "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
static const char *const segs[6] = {"es", "cs", "ss", "ds", "fs", "gs"};

/* Names of numbered registers: "<prefix><n>". */
static const char *numbered(const char *const *tab, unsigned n)
{
    return tab[n];
}

#define NUMBERED(prefix, count)                                                                    \
    static const char *const prefix##_names[count] = {                                           \
        #prefix "0",  #prefix "1",  #prefix "2",  #prefix "3",  #prefix "4",  #prefix "5",         \
        #prefix "6",  #prefix "7",  #prefix "8",  #prefix "9",  #prefix "10", #prefix "11",        \
        #prefix "12", #prefix "13", #prefix "14", #prefix "15", #prefix "16", #prefix "17",        \
        #prefix "18", #prefix "19", #prefix "20", #prefix "21", #prefix "22", #prefix "23",        \
        #prefix "24", #prefix "25", #prefix "26", #prefix "27", #prefix "28", #prefix "29",        \
        #prefix "30", #prefix "31"}

NUMBERED(cr, 32);
NUMBERED(dr, 32);
NUMBERED(st, 32);
NUMBERED(mm, 32);
NUMBERED(xmm, 32);
NUMBERED(ymm, 32);
NUMBERED(zmm, 32);
NUMBERED(k, 32);
NUMBERED(bnd, 32);
NUMBERED(tmm, 32);

const char *hvp_x86_reg_name(unsigned r)
{
    if (r == HVP_X86_REG_NONE || r >= HVP_X86_REG_COUNT)
        return "?";
    if (r < HVP_X86_REG_AH) return numbered(gpr8, r - HVP_X86_REG_AL);
    if (r < HVP_X86_REG_AX) return numbered(gpr8h, r - HVP_X86_REG_AH);
    if (r < HVP_X86_REG_EAX) return numbered(gpr16, r - HVP_X86_REG_AX);
    if (r < HVP_X86_REG_RAX) return numbered(gpr32, r - HVP_X86_REG_EAX);
    if (r < HVP_X86_REG_ES) return numbered(gpr64, r - HVP_X86_REG_RAX);
    if (r < HVP_X86_REG_CR0) return numbered(segs, r - HVP_X86_REG_ES);
    if (r < HVP_X86_REG_DR0) return cr_names[r - HVP_X86_REG_CR0];
    if (r < HVP_X86_REG_ST0) return dr_names[r - HVP_X86_REG_DR0];
    if (r < HVP_X86_REG_MM0) return st_names[r - HVP_X86_REG_ST0];
    if (r < HVP_X86_REG_XMM0) return mm_names[r - HVP_X86_REG_MM0];
    if (r < HVP_X86_REG_YMM0) return xmm_names[r - HVP_X86_REG_XMM0];
    if (r < HVP_X86_REG_ZMM0) return ymm_names[r - HVP_X86_REG_YMM0];
    if (r < HVP_X86_REG_K0) return zmm_names[r - HVP_X86_REG_ZMM0];
    if (r < HVP_X86_REG_BND0) return k_names[r - HVP_X86_REG_K0];
    if (r < HVP_X86_REG_IP) return bnd_names[r - HVP_X86_REG_BND0];
    if (r == HVP_X86_REG_IP) return "ip";
    if (r == HVP_X86_REG_EIP) return "eip";
    if (r == HVP_X86_REG_RIP) return "rip";
    return tmm_names[r - HVP_X86_REG_TMM0];
}
