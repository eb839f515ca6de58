/* hvp software x86-64 CPU: lazy arithmetic flags.
 *
 * ALU handlers record (kind, size, a, b, result, carry-in) with hvp_lf();
 * the six arithmetic flags are computed only when something reads them. */
#include "cpu_internal.h"

static inline uint64_t sign_bit(unsigned size)
{
    return (uint64_t)1 << (size * 8 - 1);
}

uint64_t hvp_flags_get(const struct hvp_cpu *cpu)
{
    uint64_t f = cpu->rflags;
    if (cpu->lf_op == HVP_LF_NONE) return f;
    unsigned sz = cpu->lf_sz;
    uint64_t m = hvp_size_mask(sz), sb = sign_bit(sz);
    uint64_t a = cpu->lf_a & m, b = cpu->lf_b & m, r = cpu->lf_res & m;
    unsigned cf = 0, of = 0, af = 0;
    switch (cpu->lf_op) {
    case HVP_LF_ADD:
        cf = r < a || (cpu->lf_cin && r == a);
        of = !!(((a ^ r) & (b ^ r)) & sb);
        af = !!((a ^ b ^ r) & 0x10);
        break;
    case HVP_LF_SUB:
        cf = a < b || (cpu->lf_cin && a == b);
        of = !!(((a ^ b) & (a ^ r)) & sb);
        af = !!((a ^ b ^ r) & 0x10);
        break;
    case HVP_LF_LOGIC: break;
    case HVP_LF_INC:
        cf = cpu->lf_cin;
        of = r == sb;
        af = (r & 0xf) == 0;
        break;
    case HVP_LF_DEC:
        cf = cpu->lf_cin;
        of = r == sb - 1;
        af = (r & 0xf) == 0xf;
        break;
    case HVP_LF_SHL: {
        unsigned c = (unsigned)b; /* 1..31 or 1..63 */
        cf = c <= sz * 8 ? (unsigned)((a >> (sz * 8 - c)) & 1) : 0;
        of = (unsigned)(!!(r & sb) ^ cf);
        af = 0;
        break;
    }
    case HVP_LF_SHR: {
        unsigned c = (unsigned)b;
        cf = c <= sz * 8 ? (unsigned)((a >> (c - 1)) & 1) : 0;
        of = c == 1 ? !!(a & sb) : 0;
        if (c != 1) /* Intel: OF = MSB(result) XOR MSB-1(result)... keep the count-1 rule */
            of = !!(a & sb) && c == 1;
        break;
    }
    case HVP_LF_SAR: {
        unsigned c = (unsigned)b;
        int64_t sa = (int64_t)(a << (64 - sz * 8)) >> (64 - sz * 8);
        cf = (unsigned)(((uint64_t)(sa >> (c - 1 < 63 ? c - 1 : 63))) & 1);
        of = 0;
        break;
    }
    default: break;
    }
    f &= ~(uint64_t)HVP_ARITH;
    f |= cf ? HVP_CF : 0;
    f |= of ? HVP_OF : 0;
    f |= af ? HVP_AF : 0;
    f |= r == 0 ? HVP_ZF : 0;
    f |= (r & sb) ? HVP_SF : 0;
    f |= __builtin_parity((unsigned)(r & 0xff)) ? 0 : HVP_PF;
    return f;
}

void hvp_flags_set(struct hvp_cpu *cpu, uint64_t rflags)
{
    cpu->rflags = rflags | 2;
    cpu->lf_op = HVP_LF_NONE;
}

bool hvp_cond_slow(struct hvp_cpu *cpu, unsigned cc)
{
    uint64_t f = hvp_flags_get(cpu);
    bool r;
    switch (cc >> 1) {
    case 0: r = f & HVP_OF; break;
    case 1: r = f & HVP_CF; break;
    case 2: r = f & HVP_ZF; break;
    case 3: r = f & (HVP_CF | HVP_ZF); break;
    case 4: r = f & HVP_SF; break;
    case 5: r = f & HVP_PF; break;
    case 6: r = !!(f & HVP_SF) != !!(f & HVP_OF); break;
    default: r = (f & HVP_ZF) || !!(f & HVP_SF) != !!(f & HVP_OF); break;
    }
    return r ^ (cc & 1);
}
