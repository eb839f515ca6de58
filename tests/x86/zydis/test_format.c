/* hvp_x86_format() on hand-built records: the text a trace, `hvp dis` or an
 * error message shows for an instruction. */
#include "hvp/x86.h"

#include <criterion/criterion.h>
#include <string.h>

/* An instruction identity by name, so that the tests do not depend on the
 * order (or the stage) of x86_ops.def. Skips the test when it is missing. */
static unsigned op_named(const char *name)
{
    for (unsigned i = 0; i < HVP_X86_OP_COUNT; i++)
        if (!strcmp(hvp_x86_op_name(i), name)) return i;
    cr_skip_test("'%s' is not in x86_ops.def yet", name);
    return 0;
}

static struct hvp_x86_insn base64(unsigned op, unsigned len)
{
    struct hvp_x86_insn in;
    memset(&in, 0, sizeof(in));
    in.op = (uint16_t)op;
    in.len = (uint8_t)len;
    in.mode = 64;
    in.opsize = 4;
    in.addrsize = 8;
    in.mem.seg = HVP_X86_REG_ES + 3; /* ds */
    return in;
}

static void add_reg(struct hvp_x86_insn *in, unsigned reg, unsigned size)
{
    in->ops[in->nops++] = (struct hvp_x86_operand){
        .kind = HVP_X86_OPK_REG, .reg = (uint8_t)reg, .size = (uint16_t)size};
}

static void add_mem(struct hvp_x86_insn *in, unsigned size, unsigned base, unsigned index,
                    unsigned scale, int64_t disp)
{
    in->flags |= HVP_X86_F_MODRM | HVP_X86_F_MEM;
    in->mem.base = (uint8_t)base;
    in->mem.index = (uint8_t)index;
    in->mem.scale = (uint8_t)scale;
    in->mem.disp = disp;
    in->ops[in->nops++] = (struct hvp_x86_operand){.kind = HVP_X86_OPK_MEM, .size = (uint16_t)size};
}

static void add_imm(struct hvp_x86_insn *in, int64_t v, unsigned size)
{
    in->imm = v;
    in->ops[in->nops++] = (struct hvp_x86_operand){.kind = HVP_X86_OPK_IMM, .size = (uint16_t)size};
}

static void expect(const struct hvp_x86_insn *in, uint64_t rip, const char *want)
{
    char buf[128];
    memset(buf, 'X', sizeof(buf));
    int n = hvp_x86_format(in, rip, buf, sizeof(buf));
    cr_expect_str_eq(buf, want);
    cr_expect_eq(n, (int)strlen(want), "returned %d for \"%s\"", n, want);
}

#define RAX (HVP_X86_REG_RAX + 0)
#define RCX (HVP_X86_REG_RAX + 1)
#define RBX (HVP_X86_REG_RAX + 3)
#define RDI (HVP_X86_REG_RAX + 7)
#define EAX (HVP_X86_REG_EAX + 0)
#define FS  (HVP_X86_REG_ES + 4)
#define DS  (HVP_X86_REG_ES + 3)

Test(format, rip_relative_store)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_MOV, 7);
    in.opsize = 8;
    in.flags |= HVP_X86_F_RIPREL;
    add_mem(&in, 8, HVP_X86_REG_RIP, 0, 0, 0x10);
    add_reg(&in, RAX, 8);
    expect(&in, 0x1000, "mov qword ptr [rip+0x10], rax");
}

Test(format, base_index_scale_negative_disp)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_LEA, 4);
    add_reg(&in, EAX, 4);
    add_mem(&in, 4, RBX, RCX, 4, -8);
    expect(&in, 0, "lea eax, [rbx+rcx*4-0x8]"); /* lea: an address, no size */

    struct hvp_x86_insn m = base64(HVP_X86_OP_MOV, 4);
    add_reg(&m, EAX, 4);
    add_mem(&m, 4, RBX, RCX, 1, 0);
    expect(&m, 0, "mov eax, dword ptr [rbx+rcx*1]"); /* scale always, no +0 */
}

Test(format, absolute_and_index_only)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_MOV, 8);
    in.mode = 32;
    in.addrsize = 4;
    add_reg(&in, EAX, 4);
    add_mem(&in, 4, 0, 0, 0, (int32_t)0x80001000);
    expect(&in, 0, "mov eax, dword ptr [0x80001000]"); /* unsigned, address-size wide */

    struct hvp_x86_insn j = base64(HVP_X86_OP_JMP, 7);
    j.opsize = 8;
    add_mem(&j, 8, 0, RAX, 8, 0x401000);
    expect(&j, 0, "jmp qword ptr [rax*8+0x401000]");
    j.mem.disp = -8;
    expect(&j, 0, "jmp qword ptr [rax*8-0x8]");
}

Test(format, segment_overrides)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_MOV, 9);
    in.opsize = 8;
    in.prefixes |= HVP_X86_PFX_SEG;
    add_reg(&in, RAX, 8);
    add_mem(&in, 8, 0, 0, 0, 0x28);
    in.mem.seg = FS;
    expect(&in, 0, "mov rax, qword ptr fs:[0x28]");

    /* 64-bit mode ignores a DS override: nothing to show */
    in.mem.seg = DS;
    expect(&in, 0, "mov rax, qword ptr [0x28]");

    /* ... but 32-bit mode honours it */
    in.mode = 32;
    in.addrsize = 4;
    in.opsize = 4;
    in.ops[0].reg = EAX;
    in.ops[1].size = 4;
    in.mem.seg = HVP_X86_REG_ES + 2; /* ss */
    expect(&in, 0, "mov eax, dword ptr ss:[0x28]");
}

Test(format, immediates_masked_to_operand_width)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_AND, 4);
    in.opsize = 8;
    add_reg(&in, HVP_X86_REG_RAX + 4, 8);
    add_imm(&in, -16, 8);
    expect(&in, 0, "and rsp, 0xfffffffffffffff0");

    struct hvp_x86_insn a = base64(HVP_X86_OP_ADD, 3);
    add_reg(&a, EAX, 4);
    add_imm(&a, -1, 4);
    expect(&a, 0, "add eax, 0xffffffff");

    /* A record that gives the encoded width (1) of a sign-extended imm8
     * still prints the value the instruction uses. */
    struct hvp_x86_insn e = base64(HVP_X86_OP_AND, 4);
    e.opsize = 8;
    add_reg(&e, HVP_X86_REG_RAX + 4, 8);
    add_imm(&e, -16, 1);
    expect(&e, 0, "and rsp, 0xfffffffffffffff0");
    e.imm = 0x7f;
    expect(&e, 0, "and rsp, 0x7f");

    /* byte operations: the destination's width, whatever insn.opsize says */
    struct hvp_x86_insn t = base64(HVP_X86_OP_TEST, 3);
    add_reg(&t, HVP_X86_REG_AL, 1);
    add_imm(&t, -128, 1);
    expect(&t, 0, "test al, 0x80");

    struct hvp_x86_insn b = base64(HVP_X86_OP_ADD, 2);
    add_reg(&b, HVP_X86_REG_AL, 1);
    add_imm(&b, 0, 1);
    expect(&b, 0, "add al, 0x0");
}

Test(format, two_immediates)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_ENTER, 4);
    add_imm(&in, 0x10, 2);
    in.imm2 = 1;
    in.ops[in.nops++] = (struct hvp_x86_operand){.kind = HVP_X86_OPK_IMM, .index = 1, .size = 1};
    expect(&in, 0, "enter 0x10, 0x1");
}

Test(format, branch_targets_absolute_and_masked)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_JNZ, 2);
    in.opsize = 8;
    in.imm = 0x1e;
    in.flags |= HVP_X86_F_BRANCH | HVP_X86_F_COND;
    in.ops[in.nops++] = (struct hvp_x86_operand){.kind = HVP_X86_OPK_REL, .size = 8};
    expect(&in, 0x401000, "jnz 0x401020");

    in.imm = -2; /* jmp $ */
    expect(&in, 0x401000, "jnz 0x401000");

    /* 16-bit code wraps at 64 KiB */
    in.mode = 16;
    in.opsize = 2;
    in.imm = 0x20;
    expect(&in, 0xfff0, "jnz 0x12");

    /* 32-bit code wraps at 4 GiB */
    in.mode = 32;
    in.opsize = 4;
    in.imm = 0x10;
    expect(&in, 0xfffffff8, "jnz 0xa");
}

Test(format, far_pointers_and_far_branches)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_JMP, 7);
    in.mode = 32;
    in.addrsize = 4;
    in.opcode = 0xea;
    in.imm = 0x1000;
    in.imm2 = 0x10;
    in.ops[in.nops++] = (struct hvp_x86_operand){.kind = HVP_X86_OPK_FAR, .size = 6};
    expect(&in, 0, "jmp far 0x10:0x1000");

    struct hvp_x86_insn c = base64(HVP_X86_OP_CALL, 3);
    c.opcode = 0xff;
    c.modrm = 0x18; /* /3, [rax] */
    c.opsize = 8;
    add_mem(&c, 10, RAX, 0, 0, 0);
    expect(&c, 0, "call far tword ptr [rax]");

    c.modrm = 0x10; /* /2: near */
    c.ops[0].size = 8;
    expect(&c, 0, "call qword ptr [rax]");

    struct hvp_x86_insn r = base64(HVP_X86_OP_RET, 3);
    r.opcode = 0xca;
    add_imm(&r, 8, 2);
    expect(&r, 0, "ret far 0x8");
    r.opcode = 0xc2;
    expect(&r, 0, "ret 0x8");
    r.op = (uint16_t)op_named("ret"); /* a far-return identity named "ret" */
    r.opcode = 0xcb;
    r.nops = 0;
    expect(&r, 0, "ret far");
}

Test(format, string_instructions_show_implicit_operands)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_MOVSB, 2);
    in.opcode = 0xa4;
    in.flags |= HVP_X86_F_STRING;
    in.prefixes |= HVP_X86_PFX_REP;
    expect(&in, 0, "rep movsb byte ptr es:[rdi], byte ptr [rsi]");

    struct hvp_x86_insn s = base64(HVP_X86_OP_STOSQ, 3);
    s.opcode = 0xab;
    s.flags |= HVP_X86_F_STRING;
    expect(&s, 0, "stosq qword ptr es:[rdi], rax");

    struct hvp_x86_insn c = base64(HVP_X86_OP_CMPSB, 2);
    c.opcode = 0xa6;
    c.flags |= HVP_X86_F_STRING;
    c.prefixes |= HVP_X86_PFX_REP;
    expect(&c, 0, "repe cmpsb byte ptr [rsi], byte ptr es:[rdi]");
    c.prefixes = HVP_X86_PFX_REPNE;
    expect(&c, 0, "repne cmpsb byte ptr [rsi], byte ptr es:[rdi]");

    /* 32-bit addressing and a source override */
    struct hvp_x86_insn l = base64(HVP_X86_OP_LODSD, 3);
    l.opcode = 0xad;
    l.mode = 32;
    l.addrsize = 2;
    l.flags |= HVP_X86_F_STRING;
    l.prefixes |= HVP_X86_PFX_SEG | HVP_X86_PFX_ADDRSIZE;
    l.mem.seg = FS;
    expect(&l, 0, "lodsd eax, dword ptr fs:[si]");

    struct hvp_x86_insn o = base64(HVP_X86_OP_OUTSB, 1);
    o.opcode = 0x6e;
    o.flags |= HVP_X86_F_STRING;
    expect(&o, 0, "outsb dx, byte ptr [rsi]");
}

Test(format, lock_prefix)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_XADD, 4);
    in.prefixes |= HVP_X86_PFX_LOCK;
    add_mem(&in, 4, RDI, 0, 0, 0);
    add_reg(&in, EAX, 4);
    expect(&in, 0, "lock xadd dword ptr [rdi], eax");
    in.prefixes |= HVP_X86_PFX_REPNE;
    expect(&in, 0, "xacquire lock xadd dword ptr [rdi], eax");
    in.prefixes ^= HVP_X86_PFX_REPNE | HVP_X86_PFX_REP;
    expect(&in, 0, "xrelease lock xadd dword ptr [rdi], eax");

    struct hvp_x86_insn m = base64(HVP_X86_OP_MOV, 3);
    m.opcode = 0x89;
    m.prefixes = HVP_X86_PFX_REP;
    add_mem(&m, 4, RDI, 0, 0, 0);
    add_reg(&m, EAX, 4);
    expect(&m, 0, "xrelease mov dword ptr [rdi], eax");
    m.prefixes = HVP_X86_PFX_REPNE; /* no xacquire on a plain store */
    expect(&m, 0, "mov dword ptr [rdi], eax");
}

Test(format, implicit_one_and_cl)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_SHL, 2);
    add_reg(&in, EAX, 4);
    add_imm(&in, 1, 1);
    in.ops[1].flags = HVP_X86_OPF_IMPLICIT;
    expect(&in, 0, "shl eax, 0x1");
    in.nops = 1;
    add_reg(&in, HVP_X86_REG_AL + 1, 1);
    expect(&in, 0, "shl eax, cl");
}

Test(format, x87_memory_sizes)
{
    unsigned fld = op_named("fld");
    struct hvp_x86_insn in = base64(fld, 2);
    add_mem(&in, 10, RAX, 0, 0, 0);
    expect(&in, 0, "fld tword ptr [rax]");
    in.ops[0].size = 8;
    expect(&in, 0, "fld qword ptr [rax]");

    unsigned fadd = op_named("fadd");
    struct hvp_x86_insn a = base64(fadd, 2);
    add_reg(&a, HVP_X86_REG_ST0, 10);
    add_reg(&a, HVP_X86_REG_ST0 + 1, 10);
    expect(&a, 0, "fadd st0, st1");
}

Test(format, vex_and_evex)
{
    unsigned vaddps = op_named("vaddps");
    struct hvp_x86_insn in = base64(vaddps, 4);
    in.enc = HVP_X86_ENC_VEX;
    in.vl = 1;
    add_reg(&in, HVP_X86_REG_YMM0 + 1, 32);
    add_reg(&in, HVP_X86_REG_YMM0 + 2, 32);
    add_mem(&in, 32, RCX, 0, 0, 0);
    expect(&in, 0, "vaddps ymm1, ymm2, ymmword ptr [rcx]");

    struct hvp_x86_insn e = base64(vaddps, 6);
    e.enc = HVP_X86_ENC_EVEX;
    e.vl = 2;
    e.mask = 1;
    add_reg(&e, HVP_X86_REG_ZMM0 + 17, 64);
    add_reg(&e, HVP_X86_REG_ZMM0 + 2, 64);
    add_mem(&e, 64, RAX, 0, 0, 0x40);
    e.ops[2].flags = HVP_X86_OPF_BCST;
    e.ops[2].elem = 4;
    expect(&e, 0, "vaddps zmm17 {k1}, zmm2, dword ptr [rax+0x40] {1to16}");
}

Test(format, invalid_record)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_INVALID, 1);
    expect(&in, 0, "(bad)");
    in.op = HVP_X86_OP_COUNT + 5;
    expect(&in, 0, "(bad)");
}

Test(format, small_buffers_truncate_like_snprintf)
{
    struct hvp_x86_insn in = base64(HVP_X86_OP_MOV, 7);
    in.opsize = 8;
    add_mem(&in, 8, HVP_X86_REG_RIP, 0, 0, 0x10);
    add_reg(&in, RAX, 8);
    const char *full = "mov qword ptr [rip+0x10], rax";
    char buf[64];
    for (size_t size = 0; size <= strlen(full) + 1; size++) {
        memset(buf, 'X', sizeof(buf));
        int n = hvp_x86_format(&in, 0, buf, size);
        cr_assert_eq(n, (int)strlen(full), "size %zu: returned %d", size, n);
        if (size == 0) {
            cr_assert_eq(buf[0], 'X', "size 0 must not write");
            continue;
        }
        cr_assert_eq(strlen(buf), size - 1, "size %zu", size);
        cr_assert_eq(strncmp(buf, full, size - 1), 0, "size %zu: \"%s\"", size, buf);
        cr_assert_eq(buf[size], 'X', "size %zu: wrote past the end", size);
    }
}
