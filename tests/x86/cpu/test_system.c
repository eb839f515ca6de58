/* The software CPU's system model: reset state, state round trip, 4-level
 * paging (#PF error codes, CR2, A/D, 2M pages, CR3 reload, aliases), IDT
 * delivery (IST, ring 3 -> 0, IRETQ), SYSCALL/SYSRET, triple fault, and
 * the HLT / I/O / MMIO exits. Guests are built here: page tables, GDT, TSS
 * and IDT written into guest memory, code assembled by the host's as. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "hvp/cpu.h"

#define SNIP(name, text)                                                                           \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.att_syntax prefix\n.popsection\n")

/* Guest-physical layout (identity mapped with 4K pages below 2M) */
#define RAM_SIZE 0x400000ull
#define PML4     0x1000ull
#define PDPT     0x2000ull
#define PD       0x3000ull
#define PT       0x4000ull /* maps 0..2M */
#define GDT      0x5000ull
#define TSS      0x6000ull
#define IDT      0x7000ull
#define KSTACK   0x9000ull /* RSP0 */
#define ISTSTACK 0xb000ull /* IST1 */
#define KCODE    0x10000ull
#define HCODE    0x11000ull /* exception handlers */
#define UCODE    0x20000ull
#define USTACK   0x31000ull
#define DATA     0x40000ull

#define PTE_P  1ull
#define PTE_W  2ull
#define PTE_U  4ull
#define PTE_A  0x20ull
#define PTE_D  0x40ull
#define PTE_PS 0x80ull
#define PTE_NX (1ull << 63)

struct sys {
    struct hvp_cpu *cpu;
    uint8_t *ram;
    struct hvp_cpu_state st;
    struct hvp_cpu_exit ex;
};

static uint64_t *q(struct sys *s, uint64_t pa)
{
    return (uint64_t *)(void *)(s->ram + pa);
}

static uint64_t *pte(struct sys *s, uint64_t lin)
{
    return q(s, PT + (lin >> 12) * 8);
}

static void set_gate(struct sys *s, unsigned vec, uint64_t target, unsigned ist, unsigned dpl)
{
    q(s, IDT + vec * 16)[0] = (target & 0xffff) | (0x08ull << 16) | ((uint64_t)ist << 32) |
                              ((uint64_t)(0x8e | dpl << 5) << 40) | ((target >> 16 & 0xffff) << 48);
    q(s, IDT + vec * 16)[1] = target >> 32;
}

static void put(struct sys *s, uint64_t pa, const uint8_t *b, const uint8_t *e)
{
    memcpy(s->ram + pa, b, (size_t)(e - b));
}

/* Handler for every vector: pops the error code (when the vector has one)
 * into r8, the frame's RIP/CS/RFLAGS/RSP/SS into r9..r13, CR2 into r14. */
SNIP(h_err, "pop r8\n pop r9\n pop r10\n pop r11\n pop r12\n pop r13\n mov r14, cr2\n hlt\n");
SNIP(h_noerr, "mov r8, -1\n pop r9\n pop r10\n pop r11\n pop r12\n pop r13\n hlt\n");
SNIP(h_rsp, "mov r15, rsp\n pop r8\n mov r14, cr2\n hlt\n");

static void sys_init(struct sys *s, const uint8_t *code, const uint8_t *end, uint32_t bitmap)
{
    struct hvp_cpu_config cfg = {
        .size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM, .exception_exit_bitmap = bitmap};
    cr_assert_eq(hvp_cpu_create(&cfg, &s->cpu), 0);
    s->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(s->ram != MAP_FAILED);
    memset(s->ram + KCODE, 0xf4, 0x1000); /* hlt */
    cr_assert_eq(hvp_cpu_map(s->cpu, 0, RAM_SIZE, s->ram, 7), 0);
    *q(s, PML4) = PDPT | 7;
    *q(s, PDPT) = PD | 7;
    *q(s, PD) = PT | 7;
    *q(s, PD + 8) = 0x200000 | PTE_P | PTE_W | PTE_PS; /* 2M page, supervisor */
    for (uint64_t i = 0; i < 512; i++)
        *q(s, PT + i * 8) = (i << 12) | PTE_P | PTE_W;
    *pte(s, UCODE) |= PTE_U;
    *pte(s, USTACK - 0x1000) |= PTE_U;
    /* GDT: null, kcode 0x08, kdata 0x10, udata 0x18, ucode 0x20, TSS 0x28 */
    q(s, GDT)[1] = 0x00af9b000000ffffull;
    q(s, GDT)[2] = 0x00cf93000000ffffull;
    q(s, GDT)[3] = 0x00cff3000000ffffull;
    q(s, GDT)[4] = 0x00affb000000ffffull;
    q(s, GDT)[5] = 0x67 | (TSS << 16) | (0x89ull << 40);
    q(s, GDT)[6] = 0;
    memcpy(s->ram + TSS + 4, &(uint64_t){KSTACK}, 8);      /* RSP0: unaligned in the TSS */
    memcpy(s->ram + TSS + 0x24, &(uint64_t){ISTSTACK}, 8); /* IST1 */
    for (unsigned v = 0; v < 32; v++) {
        bool err = v == 8 || (v >= 10 && v <= 14) || v == 17;
        set_gate(s, v, err ? HCODE : HCODE + 0x100, 0, 0);
    }
    put(s, HCODE, h_err, h_err_end);
    put(s, HCODE + 0x100, h_noerr, h_noerr_end);
    put(s, HCODE + 0x200, h_rsp, h_rsp_end);
    put(s, KCODE, code, end);
    cr_assert_eq(hvp_cpu_get_state(s->cpu, &s->st), 0);
    s->st.cr0 = 0x80050033; /* PG WP NE ET MP PE */
    s->st.cr3 = PML4;
    s->st.cr4 = 0x20;   /* PAE */
    s->st.efer = 0xd01; /* NXE LMA LME SCE */
    s->st.seg[1] = (struct hvp_cpu_segment){0, 0xffffffff, 0x08, 0xa09b};
    for (int i = 0; i < 6; i++)
        if (i != 1) s->st.seg[i] = (struct hvp_cpu_segment){0, 0xffffffff, 0x10, 0xc093};
    s->st.gdtr = (struct hvp_cpu_table){GDT, 0x37};
    s->st.idtr = (struct hvp_cpu_table){IDT, 0xfff};
    s->st.tr = (struct hvp_cpu_segment){TSS, 0x67, 0x28, 0x8b};
    s->st.rip = KCODE;
    s->st.gpr[4] = KSTACK;
    s->st.rflags = 2;
    s->st.star = (0x10ull << 48) | (0x08ull << 32);
    s->st.lstar = HCODE + 0x300;
    s->st.sfmask = 0x200;
    cr_assert_eq(hvp_cpu_set_state(s->cpu, &s->st), 0);
}

static void sys_run(struct sys *s)
{
    cr_assert_eq(hvp_cpu_run(s->cpu, 100000, &s->ex), 0);
    cr_assert_eq(hvp_cpu_get_state(s->cpu, &s->st), 0);
}

static void sys_fini(struct sys *s)
{
    hvp_cpu_destroy(s->cpu);
    munmap(s->ram, RAM_SIZE);
}

#define INIT(s, name, bm) sys_init(s, name, name##_end, bm)
#define R(n)              (s.st.gpr[n])

static void expect_hlt(struct sys *s)
{
    cr_assert_eq(s->ex.reason, HVP_CPU_EXIT_HLT, "exit %u vector %u err %#x rip %#lx", s->ex.reason,
                 s->ex.u.exception.vector, s->ex.u.exception.error_code, (unsigned long)s->st.rip);
}

Test(system, reset_state_and_round_trip)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM};
    struct hvp_cpu *cpu;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    struct hvp_cpu_state st, st2;
    cr_assert_eq(hvp_cpu_get_state(cpu, &st), 0);
    cr_expect_eq(st.rip, 0xfff0);
    cr_expect_eq(st.seg[1].base, 0xffff0000);
    cr_expect_eq(st.seg[1].selector, 0xf000);
    cr_expect_eq(st.cr0, 0x60000010);
    cr_expect_eq(st.efer, 0);
    cr_expect_eq(st.rflags, 2);
    cr_expect_eq(st.gdtr.limit, 0xffff);
    cr_expect_eq(st.gpr[2] >> 8, 0x806);
    /* everything round-trips */
    memset(&st, 0, sizeof st);
    for (int i = 0; i < 16; i++)
        st.gpr[i] = 0x1111111111111111ull * (unsigned)i;
    st.rip = 0x123456;
    st.rflags = 0x246;
    for (int i = 0; i < 6; i++)
        st.seg[i] =
            (struct hvp_cpu_segment){0x1000u * (unsigned)i, 0xfffff, (uint16_t)(8 * i), 0xc093};
    st.seg[1].attr = 0xa09b;
    st.ldtr = (struct hvp_cpu_segment){0x7000, 0xff, 0x38, 0x82};
    st.tr = (struct hvp_cpu_segment){0x6000, 0x67, 0x28, 0x8b};
    st.gdtr = (struct hvp_cpu_table){0x5000, 0x3f};
    st.idtr = (struct hvp_cpu_table){0x7000, 0xfff};
    st.cr0 = 0x80050033;
    st.cr2 = 0xdead000;
    st.cr3 = 0x1000;
    st.cr4 = 0x6a0;
    st.cr8 = 5;
    st.efer = 0xd01;
    st.kernel_gs_base = 0xffff800000001000ull;
    st.star = 0x0023001000000000ull;
    st.lstar = 0xffffffff81000000ull;
    st.cstar = 0x1234;
    st.sfmask = 0x47700;
    st.sysenter_cs = 0x10;
    st.sysenter_esp = 0x2000;
    st.sysenter_eip = 0x3000;
    st.tsc_aux = 7;
    st.pat = 0x0007040600070406ull;
    st.apic_base = 0xfee00900;
    st.xcr0 = 1;
    st.fpu.fcw = 0x37f;
    st.fpu.mxcsr = 0x1f80;
    cr_assert_eq(hvp_cpu_set_state(cpu, &st), 0);
    cr_assert_eq(hvp_cpu_get_state(cpu, &st2), 0);
    st2.tsc = st.tsc = 0;
    cr_expect_eq(memcmp(&st, &st2, sizeof st), 0);
    /* from reset the first fetch is at 0xFFFFFFF0 (CS.base 0xFFFF0000 +
     * IP 0xFFF0): with nothing mapped there, an MMIO fetch exit */
    hvp_cpu_destroy(cpu);
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    struct hvp_cpu_exit ex;
    cr_assert_eq(hvp_cpu_run(cpu, 10, &ex), 0);
    cr_expect_eq(ex.reason, HVP_CPU_EXIT_MMIO);
    cr_expect_eq(ex.u.mmio.gpa, 0xfffffff0ull);
    cr_expect_eq(ex.u.mmio.size, 0);
    hvp_cpu_destroy(cpu);
}

SNIP(s_hlt, "mov eax, 7\n hlt\n mov eax, 8\n hlt\n");
Test(system, hlt_exit)
{
    struct sys s;
    INIT(&s, s_hlt, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 7);
    cr_expect_eq(s.st.rip, KCODE + 6);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 8);
    sys_fini(&s);
}

SNIP(s_io, "mov al, 0x5a\n out 0x80, al\n mov dx, 0x3f8\n in al, dx\n mov ebx, eax\n"
           "mov eax, 0x12345678\n out dx, eax\n hlt\n");
Test(system, io_exits)
{
    struct sys s;
    INIT(&s, s_io, 0);
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_IO);
    cr_expect_eq(s.ex.u.io.port, 0x80);
    cr_expect_eq(s.ex.u.io.size, 1);
    cr_expect(s.ex.u.io.write);
    cr_expect_eq(s.ex.u.io.data, 0x5a);
    cr_expect_eq(s.ex.insn_len, 2);
    cr_expect_eq(s.ex.insn_bytes[0], 0xe6);
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_IO);
    cr_expect_eq(s.ex.u.io.port, 0x3f8);
    cr_expect(!s.ex.u.io.write);
    s.st.gpr[0] = (s.st.gpr[0] & ~0xffull) | 0x41; /* the embedder completes IN */
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_IO);
    cr_expect_eq(s.ex.u.io.size, 4);
    cr_expect_eq(s.ex.u.io.data, 0x12345678);
    cr_expect_eq(R(3) & 0xff, 0x41);
    sys_run(&s);
    expect_hlt(&s);
    sys_fini(&s);
}

SNIP(s_mmio, "mov rbx, 0x50010\n mov dword ptr [rbx], 0x1234\n hlt\n");
Test(system, mmio_exit)
{
    struct sys s;
    INIT(&s, s_mmio, 0);
    *pte(&s, 0x50000) = 0x800000 | PTE_P | PTE_W; /* beyond RAM */
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_MMIO, "exit %u", s.ex.reason);
    cr_expect_eq(s.ex.u.mmio.gpa, 0x800010);
    cr_expect_eq(s.ex.u.mmio.size, 4);
    cr_expect(s.ex.u.mmio.write);
    cr_expect_eq(s.ex.u.mmio.data, 0x1234);
    cr_expect_eq(s.st.rip, KCODE + 7); /* at the instruction */
    cr_expect_eq(s.ex.insn_len, 6);
    cr_expect_eq(memcmp(s.ex.insn_bytes, s_mmio + 7, 6), 0);
    sys_fini(&s);
}

/* #PF cases: the handler at HCODE gets error code in r8, RIP in r9, CR2 in r14 */
SNIP(s_pf_np, "mov rax, [0x50008]\n hlt\n");
Test(system, pf_not_present)
{
    struct sys s;
    INIT(&s, s_pf_np, 0);
    *pte(&s, 0x50000) = 0;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0);
    cr_expect_eq(R(9), KCODE);
    cr_expect_eq(R(10), 0x08);
    cr_expect_eq(R(14), 0x50008);
    cr_expect_eq(s.st.cr2, 0x50008);
    cr_expect_eq(R(12), KSTACK); /* same privilege: the old RSP */
    cr_expect(R(11) & 0x10000, "RF set in a fault's image");
    sys_fini(&s);
}

SNIP(s_pf_wp, "mov rax, [0x40000]\n mov qword ptr [0x40000], 1\n hlt\n");
Test(system, pf_write_protect)
{
    struct sys s;
    INIT(&s, s_pf_wp, 0);
    *pte(&s, DATA) &= ~PTE_W;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 3); /* P | W */
    cr_expect_eq(R(14), DATA);
    cr_expect_eq(R(9), KCODE + 8);
    /* with CR0.WP clear the supervisor may write a read-only page */
    sys_fini(&s);
    INIT(&s, s_pf_wp, 0);
    *pte(&s, DATA) &= ~PTE_W;
    s.st.cr0 &= ~0x10000ull;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(s.st.rip, KCODE + 8 + 12 + 1);
    cr_expect_eq(*q(&s, DATA), 1);
    sys_fini(&s);
}

SNIP(s_pf_nx, "mov rax, 0x40000\n jmp rax\n");
Test(system, pf_nx)
{
    struct sys s;
    INIT(&s, s_pf_nx, 0);
    *pte(&s, DATA) |= PTE_NX;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0x11); /* P | I/D */
    cr_expect_eq(R(9), DATA);
    cr_expect_eq(R(14), DATA);
    sys_fini(&s);
}

SNIP(s_pf_rsvd, "mov rax, [0x40000]\n hlt\n");
Test(system, pf_reserved_bit)
{
    struct sys s;
    INIT(&s, s_pf_rsvd, 0);
    *pte(&s, DATA) |= 1ull << 50;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 9); /* P | RSVD */
    sys_fini(&s);
}

/* ring 3 touches a supervisor page: error U|P, stack switched to RSP0 */
SNIP(s_user_start, "mov rcx, 0x20000\n mov r11, 0x202\n mov rsp, 0x31000\n sysretq\n");
SNIP(s_user_pf, "mov rax, [0x40000]\n hlt\n");
Test(system, pf_user_supervisor_and_stack_switch)
{
    struct sys s;
    INIT(&s, s_user_start, 0);
    put(&s, UCODE, s_user_pf, s_user_pf_end);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 5); /* P | U */
    cr_expect_eq(R(9), UCODE);
    cr_expect_eq(R(10), 0x23);
    cr_expect_eq(R(12), USTACK);
    cr_expect_eq(R(13), 0x1b);
    cr_expect_eq(s.st.seg[1].selector, 0x08);
    cr_expect_eq(s.st.gpr[4], KSTACK);     /* 6 pushed, 6 popped */
    cr_expect_eq(s.st.seg[2].selector, 0); /* null SS at CPL 0 */
    sys_fini(&s);
}

/* SYSCALL from ring 3 lands at LSTAR in ring 0 */
SNIP(s_user_sc, "mov eax, 60\n syscall\n hlt\n");
SNIP(s_lstar, "mov r9, rcx\n mov r10, r11\n hlt\n");
Test(system, syscall_sysret)
{
    struct sys s;
    INIT(&s, s_user_start, 0);
    put(&s, UCODE, s_user_sc, s_user_sc_end);
    put(&s, HCODE + 0x300, s_lstar, s_lstar_end);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(9), UCODE + 7);
    cr_expect_eq(R(10) & 0x202, 0x202);
    cr_expect_eq(s.st.seg[1].selector, 0x08);
    cr_expect_eq(s.st.seg[2].selector, 0x10);
    cr_expect_eq(s.st.rflags & 0x200, 0, "SFMASK cleared IF");
    cr_expect_eq(R(0), 60);
    sys_fini(&s);
}

/* ring 0 -> 3 by IRETQ, back by INT 0x80 (DPL 3 gate); INT 0x81 (DPL 0) -> #GP */
SNIP(s_iret, "push 0x1b\n push 0x31000\n push 0x202\n push 0x23\n push 0x20000\n iretq\n");
SNIP(s_user_int, "mov eax, 1\n int 0x80\n");
SNIP(s_user_int81, "int 0x81\n");
Test(system, int_and_iretq)
{
    struct sys s;
    INIT(&s, s_iret, 0);
    put(&s, UCODE, s_user_int, s_user_int_end);
    set_gate(&s, 0x80, HCODE + 0x100, 0, 3);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(9), UCODE + 7, "INT pushes the next RIP");
    cr_expect_eq(R(10), 0x23);
    cr_expect_eq(R(11) & 0x10200, 0x200, "IF was set, RF clear for INT");
    cr_expect_eq(R(12), USTACK);
    cr_expect_eq(s.st.rflags & 0x200, 0, "interrupt gate clears IF");
    sys_fini(&s);

    INIT(&s, s_iret, 0);
    put(&s, UCODE, s_user_int81, s_user_int81_end);
    set_gate(&s, 0x81, HCODE + 0x100, 0, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0x81 * 8 + 2);
    cr_expect_eq(R(9), UCODE);
    sys_fini(&s);
}

/* the #PF gate uses IST1 */
SNIP(s_ist, "mov qword ptr [0x50000], 1\n hlt\n");
Test(system, ist_stack)
{
    struct sys s;
    INIT(&s, s_ist, 0);
    *pte(&s, 0x50000) = 0;
    set_gate(&s, 14, HCODE + 0x200, 1, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(15), ISTSTACK - 48);
    cr_expect_eq(R(8), 2); /* W, not present */
    cr_expect_eq(R(14), 0x50000);
    sys_fini(&s);
}

SNIP(s_ad, "mov rax, [0x41000]\n mov qword ptr [0x40000], 5\n mov rbx, [0x200010]\n"
           "mov qword ptr [0x300000], 9\n hlt\n");
Test(system, accessed_dirty_and_2m_pages)
{
    struct sys s;
    INIT(&s, s_ad, 0);
    s.ram[0x200010] = 0x77;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(*pte(&s, 0x41000) & (PTE_A | PTE_D), PTE_A);
    cr_expect_eq(*pte(&s, 0x40000) & (PTE_A | PTE_D), PTE_A | PTE_D);
    cr_expect_eq(*pte(&s, 0x42000) & (PTE_A | PTE_D), 0);
    cr_expect(*q(&s, PML4) & PTE_A);
    cr_expect_eq(R(3), 0x77);
    cr_expect_eq(*q(&s, PD + 8) & (PTE_A | PTE_D), PTE_A | PTE_D);
    cr_expect_eq(*q(&s, 0x300000), 9);
    sys_fini(&s);
}

/* the guest remaps DATA to DATA+0x1000; after MOV CR3 it sees the new page */
SNIP(s_cr3, "mov rax, [0x40000]\n mov qword ptr [0x4200], 0x41003\n mov rcx, cr3\n mov cr3, rcx\n"
            "mov rdx, [0x40000]\n hlt\n");
Test(system, cr3_reload_flushes)
{
    struct sys s;
    INIT(&s, s_cr3, 0);
    *q(&s, DATA) = 111;
    *q(&s, DATA + 0x1000) = 222;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 111);
    cr_expect_eq(R(2), 222);
    sys_fini(&s);
}

/* code patched through a second linear alias (0x60000 -> physical KCODE) */
SNIP(s_smc, "lea rbx, [rip + 1f]\n add rbx, 0x50000\n mov byte ptr [rbx + 1], 2\n"
            "1: mov eax, 1\n hlt\n");
Test(system, self_modifying_code_through_alias)
{
    struct sys s;
    INIT(&s, s_smc, 0);
    *pte(&s, 0x60000) = KCODE | PTE_P | PTE_W;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 2);
    /* the alias executes the same physical code */
    s.st.rip = 0x60000 + (uint64_t)(s_smc_end - s_smc) - 6;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 2);
    sys_fini(&s);
}

/* no usable IDT: #UD -> #GP (limit) -> #DF -> shutdown */
SNIP(s_triple, "ud2\n");
Test(system, triple_fault)
{
    struct sys s;
    INIT(&s, s_triple, 0);
    s.st.idtr.limit = 0;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    sys_run(&s);
    cr_expect_eq(s.ex.reason, HVP_CPU_EXIT_SHUTDOWN, "exit %u", s.ex.reason);
    sys_fini(&s);
}

/* vectors in the exit bitmap exit instead of being delivered */
Test(system, exception_exit_bitmap)
{
    struct sys s;
    INIT(&s, s_pf_np, 1u << 14);
    *pte(&s, 0x50000) = 0;
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 14);
    cr_expect_eq(s.ex.u.exception.error_code, 0);
    cr_expect_eq(s.ex.u.exception.cr2, 0x50008);
    cr_expect_eq(s.st.rip, KCODE);
    sys_fini(&s);
}

SNIP(s_msr, "mov ecx, 0xc0000082\n rdmsr\n mov rsi, rax\n mov ecx, 0xc0000102\n mov eax, 0x1000\n"
            "xor edx, edx\n wrmsr\n swapgs\n mov ecx, 0xc0000101\n rdmsr\n mov rdi, rax\n"
            "mov ecx, 0x12345\n rdmsr\n hlt\n");
Test(system, msrs_and_swapgs)
{
    struct sys s;
    INIT(&s, s_msr, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(6), HCODE + 0x300);
    cr_expect_eq(R(7), 0x1000);
    cr_expect_eq(R(8), 0, "unknown MSR -> #GP(0)");
    cr_expect_eq(R(9), KCODE + (uint64_t)(s_msr_end - s_msr) - 3);
    sys_fini(&s);
}

/* global pages survive a CR3 write when CR4.PGE; INVLPG drops one */
SNIP(s_global,
     "mov rax, [0x40000]\n mov qword ptr [0x4200], 0x41103\n mov rcx, cr3\n mov cr3, rcx\n"
     "mov rbx, [0x40000]\n invlpg [0x40000]\n mov rdx, [0x40000]\n hlt\n");
Test(system, global_pages_and_invlpg)
{
    struct sys s;
    INIT(&s, s_global, 0);
    *pte(&s, DATA) |= 0x100; /* G */
    s.st.cr4 |= 0x80;        /* PGE */
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    *q(&s, DATA) = 111;
    *q(&s, DATA + 0x1000) = 222;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 111);
    cr_expect_eq(R(3), 111, "the global translation was kept (this TLB keeps them)");
    cr_expect_eq(R(2), 222);
    sys_fini(&s);
}

SNIP(s_1g, "mov rax, [0x40040000]\n mov qword ptr [0x40040008], 3\n hlt\n");
Test(system, one_gig_page)
{
    struct sys s;
    INIT(&s, s_1g, 0);
    *q(&s, PDPT + 8) = 0 | PTE_P | PTE_W | PTE_PS; /* 1G..2G -> 0..1G */
    *q(&s, DATA) = 0x5555;
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 0x5555);
    cr_expect_eq(*q(&s, DATA + 8), 3);
    cr_expect_eq(*q(&s, PDPT + 8) & (PTE_A | PTE_D), PTE_A | PTE_D);
    sys_fini(&s);
}

/* the guest loads its own tables and segments */
SNIP(s_tables, "lgdt [0x42000]\n lidt [0x42010]\n mov ax, 0x28\n ltr ax\n str bx\n sgdt [0x42020]\n"
               "mov ax, 0x10\n mov ds, ax\n mov es, ax\n xor eax, eax\n mov fs, ax\n mov cx, ds\n"
               "mov ax, 0x28\n mov ds, ax\n");
Test(system, descriptor_tables_and_segments)
{
    struct sys s;
    INIT(&s, s_tables, 0);
    s.st.gdtr = (struct hvp_cpu_table){0, 0};
    s.st.idtr = (struct hvp_cpu_table){0, 0};
    s.st.tr = (struct hvp_cpu_segment){0, 0, 0, 0x8b};
    s.st.seg[4].base = 0x1234; /* FS_BASE: a null selector load keeps it */
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    memcpy(s.ram + DATA + 0x2000, &(uint16_t){0x37}, 2);
    memcpy(s.ram + DATA + 0x2002, &(uint64_t){GDT}, 8);
    memcpy(s.ram + DATA + 0x2010, &(uint16_t){0xfff}, 2);
    memcpy(s.ram + DATA + 0x2012, &(uint64_t){IDT}, 8);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0x28, "a TSS selector in DS -> #GP(sel)");
    cr_expect_eq(R(3) & 0xffff, 0x28);
    cr_expect_eq(R(1) & 0xffff, 0x10);
    cr_expect_eq(s.st.tr.base, TSS);
    cr_expect_eq(s.st.tr.attr & 0xf, 0xb, "busy");
    cr_expect_eq((q(&s, GDT)[5] >> 40) & 0xf, 0xb);
    cr_expect_eq(s.st.gdtr.base, GDT);
    cr_expect_eq(s.st.idtr.limit, 0xfff);
    cr_expect_eq(memcmp(s.ram + DATA + 0x2020, s.ram + DATA + 0x2000, 10), 0);
    cr_expect_eq(s.st.seg[3].selector, 0x10);
    cr_expect_eq(s.st.seg[4].selector, 0);
    cr_expect_eq(s.st.seg[4].base, 0x1234);
    sys_fini(&s);
}

SNIP(s_mmio_rd, "mov rbx, 0x50000\n mov ax, [rbx + 2]\n hlt\n");
Test(system, mmio_read_exit)
{
    struct sys s;
    INIT(&s, s_mmio_rd, 0);
    *pte(&s, 0x50000) = 0xfee00000 | PTE_P | PTE_W;
    sys_run(&s);
    cr_assert_eq(s.ex.reason, HVP_CPU_EXIT_MMIO);
    cr_expect_eq(s.ex.u.mmio.gpa, 0xfee00002);
    cr_expect_eq(s.ex.u.mmio.size, 2);
    cr_expect(!s.ex.u.mmio.write);
    cr_expect_eq(s.ex.insn_len, 4);
    sys_fini(&s);
}

/* random bytes as ring-0 code (page tables, IDT and GDT in reach): every
 * run must end in an exit, never a host fault or a hang */
Test(system, hostile_ring0)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 300; iter++) {
        struct sys s;
        INIT(&s, s_hlt, 0);
        for (unsigned i = 0; i < 0x1000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.ram[KCODE + i] = (uint8_t)x;
        }
        s.st.gpr[3] = DATA; /* some registers point into RAM */
        s.st.gpr[6] = PT;
        s.st.gpr[7] = IDT;
        cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
        for (int k = 0; k < 20; k++) {
            cr_assert_eq(hvp_cpu_run(s.cpu, 2000, &s.ex), 0);
            cr_assert(s.ex.reason >= HVP_CPU_EXIT_BUDGET && s.ex.reason <= HVP_CPU_EXIT_INTERNAL);
            if (s.ex.reason == HVP_CPU_EXIT_SHUTDOWN || s.ex.reason == HVP_CPU_EXIT_INTERNAL ||
                s.ex.reason == HVP_CPU_EXIT_MMIO)
                break;
            if (s.ex.reason == HVP_CPU_EXIT_IO || s.ex.reason == HVP_CPU_EXIT_HLT) continue;
        }
        sys_fini(&s);
    }
}

/* a #PF handler that is itself not present, on an IST stack: the CPU
 * keeps delivering; the budget still ends the run */
Test(system, fault_loop_ends_on_budget)
{
    struct sys s;
    INIT(&s, s_pf_np, 0);
    *pte(&s, 0x50000) = 0;
    set_gate(&s, 14, 0x50000, 1, 0);
    cr_assert_eq(hvp_cpu_run(s.cpu, 1000, &s.ex), 0);
    cr_expect_eq(s.ex.reason, HVP_CPU_EXIT_BUDGET);
    sys_fini(&s);
}

/* privileged instructions at CPL 3 raise #GP(0) through the IDT */
SNIP(s_user_priv, "mov rax, cr3\n");
SNIP(s_user_hlt, "nop\n hlt\n");
Test(system, ring3_privileged_gp)
{
    struct sys s;
    INIT(&s, s_user_start, 0);
    put(&s, UCODE, s_user_priv, s_user_priv_end);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0);
    cr_expect_eq(R(9), UCODE);
    cr_expect_eq(R(10), 0x23);
    sys_fini(&s);
    INIT(&s, s_user_start, 0);
    put(&s, UCODE, s_user_hlt, s_user_hlt_end);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0);
    cr_expect_eq(R(9), UCODE + 1);
    sys_fini(&s);
}

/* INT3 is delivered as a trap (RIP past it, RF clear); CR0/CR4/EFER read back */
SNIP(s_int3, "mov rax, cr0\n mov rbx, cr4\n mov ecx, 0xc0000080\n rdmsr\n mov rsi, rax\n"
             "mov rax, cr0\n int3\n");
Test(system, int3_and_control_registers)
{
    struct sys s;
    INIT(&s, s_int3, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(0), 0x80050033);
    cr_expect_eq(R(3), 0x20);
    cr_expect_eq(R(6), 0xd01);
    cr_expect_eq(R(8), (uint64_t)-1);
    cr_expect_eq(R(9), KCODE + (uint64_t)(s_int3_end - s_int3));
    cr_expect_eq(R(11) & 0x10000, 0);
    sys_fini(&s);
}

/* clearing CR0.PG in 64-bit mode is #GP(0) */
SNIP(s_pg_off, "mov rax, cr0\n btr eax, 31\n mov cr0, rax\n");
Test(system, paging_off_in_long_mode_gp)
{
    struct sys s;
    INIT(&s, s_pg_off, 0);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 0);
    cr_expect_eq(R(9), KCODE + 7);
    cr_expect(s.st.cr0 & 0x80000000);
    sys_fini(&s);
}

/* the kernel's cached rights on a supervisor page do not leak to ring 3,
 * and ring 3's cached user pages still work after a round trip */
SNIP(s_leak,
     "mov rax, [0x40000]\n mov rcx, 0x20000\n mov r11, 0x202\n mov rsp, 0x31000\n sysretq\n");
SNIP(s_user_leak, "mov rax, [0x40000]\n");
Test(system, supervisor_tlb_rights_do_not_leak)
{
    struct sys s;
    INIT(&s, s_leak, 0);
    put(&s, UCODE, s_user_leak, s_user_leak_end);
    sys_run(&s);
    expect_hlt(&s);
    cr_expect_eq(R(8), 5);
    cr_expect_eq(R(9), UCODE);
    cr_expect_eq(R(14), DATA);
    sys_fini(&s);
}
