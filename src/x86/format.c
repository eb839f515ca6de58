/* Intel-syntax formatter for decoded x86 instructions.
 *
 * Conventions (close to Zydis's Intel formatter, so the two read side by side):
 *   - lower-case mnemonics and registers, operands separated by ", ";
 *   - immediates in hex as 0x.., masked to the operand's width (so a
 *     sign-extended -1 in a 64-bit operand prints 0xffffffffffffffff);
 *   - memory as "<size> ptr [seg:]...": "qword ptr [rip+0x10]",
 *     "dword ptr fs:[rax+rcx*4-0x8]"; the scale is always printed with an
 *     index, "[bx+si*1]" too, as Zydis does; a zero displacement
 *     is left out; an absolute address (no base, no index) prints unsigned,
 *     masked to the address size; lea and operands of unknown size print
 *     without "<size> ptr"; m80 is "tword";
 *   - a segment prints when an override prefix is present, and always for
 *     the ES destination of string instructions;
 *   - string instructions without explicit operands show their implicit
 *     ones: "rep movsb byte ptr es:[rdi], byte ptr [rsi]",
 *     "stosq qword ptr es:[rdi], rax", "lodsb al, byte ptr [rsi]";
 *   - branch targets are absolute: rip + len + displacement, masked to the
 *     operand size; far pointers print "jmp far 0x10:0x1000";
 *   - prefixes: lock, rep/repe/repne on string instructions, the HLE hints
 *     xacquire/xrelease;
 *   - EVEX: " {k1}" after the destination, " {1toN}" after a broadcast
 *     operand (spaced like Zydis).
 *
 * No snprintf on the hot path: a bounded writer that keeps counting past the
 * end of the buffer, so the return value is the full length like snprintf.
 */
#include "hvp/x86.h"

#include <stdbool.h>
#include <string.h>

struct out {
    char *buf;
    size_t size; /* capacity including the NUL */
    size_t pos;  /* length the full text has so far */
};

static inline void put_c(struct out *o, char c)
{
    if (o->pos + 1 < o->size) o->buf[o->pos] = c;
    o->pos++;
}

static void put_s(struct out *o, const char *s)
{
    size_t n = strlen(s);
    if (o->pos + 1 < o->size) {
        size_t room = o->size - 1 - o->pos;
        memcpy(o->buf + o->pos, s, n < room ? n : room);
    }
    o->pos += n;
}

static void put_hex(struct out *o, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[18];
    int n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    put_c(o, '0');
    put_c(o, 'x');
    while (n)
        put_c(o, tmp[--n]);
}

static void put_dec(struct out *o, unsigned v)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_c(o, tmp[--n]);
}

static inline uint64_t mask_bytes(uint64_t v, unsigned bytes)
{
    return bytes >= 8 || bytes == 0 ? v : v & ((UINT64_C(1) << (bytes * 8)) - 1);
}

static const char *size_name(unsigned size)
{
    switch (size) {
    case 1: return "byte";
    case 2: return "word";
    case 4: return "dword";
    case 6: return "fword";
    case 8: return "qword";
    case 10: return "tword";
    case 16: return "xmmword";
    case 32: return "ymmword";
    case 64: return "zmmword";
    default: return NULL;
    }
}

/* "[seg:][base+index*scale+disp]" with its "<size> ptr " prefix. */
static void put_mem_raw(struct out *o, unsigned size, unsigned seg, unsigned base, unsigned index,
                        unsigned scale, int64_t disp, unsigned addrsize)
{
    const char *sz = size_name(size);
    if (sz) {
        put_s(o, sz);
        put_s(o, " ptr ");
    }
    if (seg != HVP_X86_REG_NONE) {
        put_s(o, hvp_x86_reg_name(seg));
        put_c(o, ':');
    }
    put_c(o, '[');
    if (base != HVP_X86_REG_NONE) put_s(o, hvp_x86_reg_name(base));
    if (index != HVP_X86_REG_NONE) {
        if (base != HVP_X86_REG_NONE) put_c(o, '+');
        put_s(o, hvp_x86_reg_name(index));
        put_c(o, '*');
        put_dec(o, scale ? scale : 1);
    }
    if (base == HVP_X86_REG_NONE && index == HVP_X86_REG_NONE) {
        put_hex(o, mask_bytes((uint64_t)disp, addrsize));
    } else if (disp < 0) {
        put_c(o, '-');
        put_hex(o, mask_bytes(-(uint64_t)disp, addrsize));
    } else if (disp > 0) {
        put_c(o, '+');
        put_hex(o, mask_bytes((uint64_t)disp, addrsize));
    }
    put_c(o, ']');
}

/* The segment to print: an override's, except the ES/CS/SS/DS overrides
 * that 64-bit mode ignores. */
static unsigned shown_seg(const struct hvp_x86_insn *in)
{
    if (!(in->prefixes & HVP_X86_PFX_SEG)) return HVP_X86_REG_NONE;
    if (in->mode == 64 && in->mem.seg != HVP_X86_REG_ES + 4 && in->mem.seg != HVP_X86_REG_ES + 5)
        return HVP_X86_REG_NONE;
    return in->mem.seg;
}

static bool is_far_branch(const struct hvp_x86_insn *in)
{
    if (in->enc != HVP_X86_ENC_LEGACY || in->map != HVP_X86_MAP_1BYTE) return false;
    switch (in->opcode) {
    case 0x9a: /* call ptr16:16/32 */
    case 0xea: /* jmp ptr16:16/32 */
    case 0xca: /* ret far imm16 */
    case 0xcb: /* ret far */ break;
    case 0xff: {
        unsigned r = (in->modrm >> 3) & 7;
        if (!(in->flags & HVP_X86_F_MODRM) || (r != 3 && r != 5)) return false;
        break;
    }
    default: return false;
    }
    /* " far" qualifies the plain names only (not a "retf", were there one) */
    const char *n = hvp_x86_op_name(in->op);
    return !strcmp(n, "ret") || !strcmp(n, "call") || !strcmp(n, "jmp");
}

static unsigned addr_reg(unsigned addrsize, unsigned n)
{
    return hvp_x86_gpr(addrsize ? addrsize : 8, n);
}

/* String instructions: 0 movs, 1 cmps, 2 stos, 3 lods, 4 scas, 5 ins,
 * 6 outs; -1 for anything else. *sz gets the element size. */
static int string_kind(const struct hvp_x86_insn *in, unsigned *sz)
{
    /* cmpsd/movsd share their names with SSE2 forms: only the 1-byte map
     * opcodes are string instructions. */
    if (in->enc != HVP_X86_ENC_LEGACY || in->map != HVP_X86_MAP_1BYTE) return -1;
    switch (in->op) {
    case HVP_X86_OP_MOVSB: *sz = 1; return 0;
    case HVP_X86_OP_MOVSW: *sz = 2; return 0;
    case HVP_X86_OP_MOVSD: *sz = 4; return 0;
    case HVP_X86_OP_MOVSQ: *sz = 8; return 0;
    case HVP_X86_OP_CMPSB: *sz = 1; return 1;
    case HVP_X86_OP_CMPSW: *sz = 2; return 1;
    case HVP_X86_OP_CMPSD: *sz = 4; return 1;
    case HVP_X86_OP_CMPSQ: *sz = 8; return 1;
    case HVP_X86_OP_STOSB: *sz = 1; return 2;
    case HVP_X86_OP_STOSW: *sz = 2; return 2;
    case HVP_X86_OP_STOSD: *sz = 4; return 2;
    case HVP_X86_OP_STOSQ: *sz = 8; return 2;
    case HVP_X86_OP_LODSB: *sz = 1; return 3;
    case HVP_X86_OP_LODSW: *sz = 2; return 3;
    case HVP_X86_OP_LODSD: *sz = 4; return 3;
    case HVP_X86_OP_LODSQ: *sz = 8; return 3;
    case HVP_X86_OP_SCASB: *sz = 1; return 4;
    case HVP_X86_OP_SCASW: *sz = 2; return 4;
    case HVP_X86_OP_SCASD: *sz = 4; return 4;
    case HVP_X86_OP_SCASQ: *sz = 8; return 4;
    case HVP_X86_OP_INSB: *sz = 1; return 5;
    case HVP_X86_OP_INSW: *sz = 2; return 5;
    case HVP_X86_OP_INSD: *sz = 4; return 5;
    case HVP_X86_OP_OUTSB: *sz = 1; return 6;
    case HVP_X86_OP_OUTSW: *sz = 2; return 6;
    case HVP_X86_OP_OUTSD: *sz = 4; return 6;
    default: return -1;
    }
}

/* The implicit operands of a string instruction with none in the record. */
static void put_string_operands(struct out *o, const struct hvp_x86_insn *in, int kind, unsigned sz)
{
    unsigned as = in->addrsize ? in->addrsize : (in->mode == 64 ? 8 : in->mode / 8);
    unsigned rsi = addr_reg(as, 6), rdi = addr_reg(as, 7);
    unsigned src_seg = shown_seg(in);
    unsigned es = HVP_X86_REG_ES + 0;
    unsigned acc = hvp_x86_gpr(sz, 0);
    put_c(o, ' ');
    switch (kind) {
    case 0:
        put_mem_raw(o, sz, es, rdi, 0, 1, 0, as);
        put_s(o, ", ");
        put_mem_raw(o, sz, src_seg, rsi, 0, 1, 0, as);
        break;
    case 1:
        put_mem_raw(o, sz, src_seg, rsi, 0, 1, 0, as);
        put_s(o, ", ");
        put_mem_raw(o, sz, es, rdi, 0, 1, 0, as);
        break;
    case 2:
        put_mem_raw(o, sz, es, rdi, 0, 1, 0, as);
        put_s(o, ", ");
        put_s(o, hvp_x86_reg_name(acc));
        break;
    case 3:
        put_s(o, hvp_x86_reg_name(acc));
        put_s(o, ", ");
        put_mem_raw(o, sz, src_seg, rsi, 0, 1, 0, as);
        break;
    case 4:
        put_s(o, hvp_x86_reg_name(acc));
        put_s(o, ", ");
        put_mem_raw(o, sz, es, rdi, 0, 1, 0, as);
        break;
    case 5:
        put_mem_raw(o, sz, es, rdi, 0, 1, 0, as);
        put_s(o, ", dx");
        break;
    default:
        put_s(o, "dx, ");
        put_mem_raw(o, sz, src_seg, rsi, 0, 1, 0, as);
        break;
    }
}

static void put_operand(struct out *o, const struct hvp_x86_insn *in,
                        const struct hvp_x86_operand *op, uint64_t rip)
{
    switch (op->kind) {
    case HVP_X86_OPK_REG: put_s(o, hvp_x86_reg_name(op->reg)); break;
    case HVP_X86_OPK_MEM: {
        unsigned size = in->op == HVP_X86_OP_LEA ? 0 : op->size;
        if (op->flags & HVP_X86_OPF_BCST) size = op->elem;
        unsigned seg = in->op == HVP_X86_OP_LEA ? HVP_X86_REG_NONE : shown_seg(in);
        put_mem_raw(o, size, seg, in->mem.base, in->mem.index, in->mem.scale, in->mem.disp,
                    in->addrsize);
        if ((op->flags & HVP_X86_OPF_BCST) && op->elem) {
            unsigned vbytes = 16u << (in->vl < 3 ? in->vl : 2);
            put_s(o, " {1to");
            put_dec(o, vbytes / op->elem);
            put_c(o, '}');
        }
        break;
    }
    case HVP_X86_OPK_IMM: {
        int64_t v = op->index ? in->imm2 : in->imm;
        /* A sign-extended immediate prints at the operand size even when
         * the record gives the encoded width (and 0xff.. for "and rsp, -16"
         * rather than 0xf0); a zero-extended one is the same either way. */
        unsigned w = op->size;
        if (v < 0) {
            unsigned ref = in->opsize; /* push imm8: the operand size */
            for (unsigned i = 0; i < in->nops && i < 5; i++)
                if (in->ops[i].kind == HVP_X86_OPK_REG || in->ops[i].kind == HVP_X86_OPK_MEM) {
                    ref = in->ops[i].size; /* the destination's width */
                    break;
                }
            if (w < ref && ref <= 8) w = ref;
        }
        put_hex(o, mask_bytes((uint64_t)v, w));
        break;
    }
    case HVP_X86_OPK_REL: {
        uint64_t t = rip + in->len + (uint64_t)in->imm;
        unsigned width = in->opsize;
        if (in->mode == 64 && width != 2) width = 8;
        if (!width) width = in->mode == 64 ? 8 : in->mode / 8;
        put_hex(o, mask_bytes(t, width));
        break;
    }
    case HVP_X86_OPK_FAR:
        put_hex(o, (uint16_t)in->imm2);
        put_c(o, ':');
        put_hex(o, mask_bytes((uint64_t)in->imm, in->opsize == 2 ? 2 : 4));
        break;
    default: put_c(o, '?'); break;
    }
}

int hvp_x86_format(const struct hvp_x86_insn *insn, uint64_t rip, char *buf, size_t size)
{
    struct out o = {buf, size, 0};
    const struct hvp_x86_insn *in = insn;

    if (in->op == HVP_X86_OP_INVALID || in->op >= HVP_X86_OP_COUNT) {
        put_s(&o, "(bad)");
        goto done;
    }
    /* HLE hints: F2/F3 on a locked instruction, on xchg with memory, and F3
     * on a mov to memory. */
    if ((in->prefixes & (HVP_X86_PFX_REP | HVP_X86_PFX_REPNE)) && in->enc == HVP_X86_ENC_LEGACY &&
        in->nops && in->ops[0].kind == HVP_X86_OPK_MEM) {
        bool locked = (in->prefixes & HVP_X86_PFX_LOCK) || in->op == HVP_X86_OP_XCHG;
        bool mov_store =
            in->op == HVP_X86_OP_MOV && in->map == HVP_X86_MAP_1BYTE &&
            (in->opcode == 0x88 || in->opcode == 0x89 || in->opcode == 0xc6 || in->opcode == 0xc7);
        if (locked && (in->prefixes & HVP_X86_PFX_REPNE))
            put_s(&o, "xacquire ");
        else if ((locked || mov_store) && (in->prefixes & HVP_X86_PFX_REP))
            put_s(&o, "xrelease ");
    }
    if (in->prefixes & HVP_X86_PFX_LOCK) put_s(&o, "lock ");
    unsigned ssz = 0;
    int skind = string_kind(in, &ssz);
    if (skind >= 0 && (in->prefixes & (HVP_X86_PFX_REP | HVP_X86_PFX_REPNE))) {
        if (in->prefixes & HVP_X86_PFX_REPNE)
            put_s(&o, "repne ");
        else
            put_s(&o, skind == 1 || skind == 4 ? "repe " : "rep ");
    }
    put_s(&o, hvp_x86_op_name(in->op));
    if (is_far_branch(in)) put_s(&o, " far");

    unsigned n = in->nops < 5 ? in->nops : 5;
    if (n == 0) {
        if (skind >= 0) put_string_operands(&o, in, skind, ssz);
        goto done;
    }
    for (unsigned i = 0; i < n; i++) {
        put_s(&o, i ? ", " : " ");
        put_operand(&o, in, &in->ops[i], rip);
        if (i == 0 && in->enc == HVP_X86_ENC_EVEX && in->mask) {
            put_s(&o, " {k");
            put_dec(&o, in->mask);
            put_c(&o, '}');
        }
    }
done:
    if (size) buf[o.pos < size ? o.pos : size - 1] = '\0';
    return (int)o.pos;
}
