/* Arithmetic flags, computed as the hardware defines them. Each function
 * replaces the six arithmetic flags in *fl and leaves the others alone. */
#include "internal.h"

uint64_t alu_mask(unsigned size)
{
    return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

uint64_t alu_sext(uint64_t v, unsigned size)
{
    if (size >= 8) return v;
    unsigned sh = 64 - size * 8;
    return (uint64_t)((int64_t)(v << sh) >> sh);
}

/* SF, ZF and PF of a result (PF: even parity of the low byte). */
uint64_t alu_szp(uint64_t res, unsigned size)
{
    uint64_t f = 0;
    res &= alu_mask(size);
    if (!res) f |= FL_ZF;
    if ((res >> (size * 8 - 1)) & 1) f |= FL_SF;
    if (!__builtin_parity((unsigned)(res & 0xff))) f |= FL_PF;
    return f;
}

uint64_t alu_add(uint64_t a, uint64_t b, unsigned cin, unsigned size, uint64_t *fl)
{
    uint64_t m = alu_mask(size);
    unsigned top = size * 8 - 1;
    a &= m;
    b &= m;
    uint64_t res = (a + b + cin) & m;
    uint64_t f = alu_szp(res, size);
    /* Carry out of the top bit, from the carries into each position. */
    uint64_t carries = (a & b) | ((a | b) & ~res);
    if ((carries >> top) & 1) f |= FL_CF;
    if ((((a ^ res) & (b ^ res)) >> top) & 1) f |= FL_OF;
    if ((a ^ b ^ res) & 0x10) f |= FL_AF;
    *fl = (*fl & ~(uint64_t)FL_ARITH) | f;
    return res;
}

uint64_t alu_sub(uint64_t a, uint64_t b, unsigned bin, unsigned size, uint64_t *fl)
{
    uint64_t m = alu_mask(size);
    unsigned top = size * 8 - 1;
    a &= m;
    b &= m;
    uint64_t res = (a - b - bin) & m;
    uint64_t f = alu_szp(res, size);
    uint64_t borrows = (~a & b) | ((~a | b) & res);
    if ((borrows >> top) & 1) f |= FL_CF;
    if ((((a ^ b) & (a ^ res)) >> top) & 1) f |= FL_OF;
    if ((a ^ b ^ res) & 0x10) f |= FL_AF;
    *fl = (*fl & ~(uint64_t)FL_ARITH) | f;
    return res;
}

/* AND/OR/XOR/TEST: CF = OF = 0; AF is undefined and cleared, as CPUs do. */
uint64_t alu_logic(uint64_t res, unsigned size, uint64_t *fl)
{
    res &= alu_mask(size);
    *fl = (*fl & ~(uint64_t)FL_ARITH) | alu_szp(res, size);
    return res;
}
