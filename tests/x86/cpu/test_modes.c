/* The software CPU's modes and segmentation: compatibility mode, leaving
 * and re-entering long mode (the Linux 6.1 decompressor's trampoline),
 * far transfers, segment-register loads and their faults, segment limits
 * and types, CR0/CR4/EFER checks, real mode (IVT, unreal mode) and
 * protected-mode IDT delivery with a privilege change. Code is assembled
 * by the host's as (.code16/.code32/.code64) and copied into guest RAM;
 * every exception exits (exception_exit_bitmap) unless a test installs an
 * IVT/IDT. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "hvp/cpu.h"

#define SNIP(name, text)                                                                           \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.code64\n.att_syntax prefix\n.popsection\n")

#define RAM_SIZE 0x400000ull
#define PML4     0x1000ull
#define PDPT     0x2000ull
#define PD       0x3000ull
#define GDT      0x5000ull
#define TSS      0x6000ull
#define IDT      0x7000ull
#define STACK    0x9000ull
#define CODE     0x10000ull
#define CODE2    0x11000ull
#define DATA     0x40000ull

/* selectors of the test GDT */
enum {
    S_CODE64 = 0x08,
    S_DATA = 0x10,
    S_CODE32 = 0x18,
    S_CODE16 = 0x20,
    S_DATA16 = 0x28,
    S_SMALL = 0x30,   /* data, base DATA, limit 0xFFF */
    S_ABSENT = 0x38,  /* data, not present */
    S_DATA3 = 0x40,   /* data, DPL 3 */
    S_DOWN = 0x48,    /* expand-down data, base DATA, limit 0xFFF, B = 1 */
    S_RODATA = 0x50,  /* read-only data */
    S_CODE32U = 0x58, /* 32-bit code, DPL 3 */
    S_TSS = 0x60,     /* 32-bit TSS */
    S_GATE = 0x68,    /* call gate */
    S_GDT_END = 0x70,
};

struct vm {
    struct hvp_cpu *cpu;
    uint8_t *ram;
    struct hvp_cpu_state st;
    struct hvp_cpu_exit ex;
};

static uint64_t *q(struct vm *v, uint64_t pa)
{
    return (uint64_t *)(void *)(v->ram + pa);
}

static uint64_t desc(uint32_t base, uint32_t limit, unsigned access, unsigned flags)
{
    return (limit & 0xffffull) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)access << 40) |
           ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)(flags & 0xf) << 52) |
           ((uint64_t)(base >> 24) << 56);
}

static struct hvp_cpu_segment seg(uint16_t sel, uint32_t base, uint32_t limit, uint16_t attr)
{
    return (struct hvp_cpu_segment){base, limit, sel, attr};
}

/* state presets */
enum { M_LONG64, M_COMPAT, M_PROT32, M_REAL };

static void vm_init(struct vm *v, const uint8_t *code, const uint8_t *end, int mode)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg,
                                 .model = HVP_CPU_MODEL_SYSTEM,
                                 .exception_exit_bitmap = 0xffffffff};
    cr_assert_eq(hvp_cpu_create(&cfg, &v->cpu), 0);
    v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(v->ram != MAP_FAILED);
    cr_assert_eq(hvp_cpu_map(v->cpu, 0, RAM_SIZE, v->ram, 7), 0);
    /* identity map of the first GiB in 2 MiB pages */
    *q(v, PML4) = PDPT | 3;
    *q(v, PDPT) = PD | 3;
    for (uint64_t i = 0; i < 512; i++)
        *q(v, PD + i * 8) = (i << 21) | 0x83;
    uint64_t *g = q(v, GDT);
    g[S_CODE64 / 8] = desc(0, 0xfffff, 0x9a, 0xa);
    g[S_DATA / 8] = desc(0, 0xfffff, 0x92, 0xc); /* accessed clear: loads set it */
    g[S_CODE32 / 8] = desc(0, 0xfffff, 0x9b, 0xc);
    g[S_CODE16 / 8] = desc(CODE2, 0xffff, 0x9b, 0);
    g[S_DATA16 / 8] = desc(0, 0xffff, 0x93, 0);
    g[S_SMALL / 8] = desc(DATA, 0xfff, 0x93, 0x4);
    g[S_ABSENT / 8] = desc(0, 0xfffff, 0x13, 0xc);
    g[S_DATA3 / 8] = desc(0, 0xfffff, 0xf3, 0xc);
    g[S_DOWN / 8] = desc(DATA, 0xfff, 0x97, 0x4);
    g[S_RODATA / 8] = desc(0, 0xfffff, 0x91, 0xc);
    g[S_CODE32U / 8] = desc(0, 0xfffff, 0xfb, 0xc);
    g[S_TSS / 8] = desc(TSS, 0x67, 0x89, 0);
    memcpy(v->ram + CODE, code, (size_t)(end - code));
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
    struct hvp_cpu_state *st = &v->st;
    st->gdtr = (struct hvp_cpu_table){GDT, S_GDT_END - 1};
    st->idtr = (struct hvp_cpu_table){IDT, 0x7ff};
    st->tr = seg(S_TSS, TSS, 0x67, 0x8b);
    st->rip = CODE;
    st->gpr[4] = STACK;
    st->rflags = 2;
    if (mode == M_REAL) {
        st->seg[1] = seg(CODE >> 4, CODE, 0xffff, 0x9b);
        st->rip = 0;
        for (int i = 0; i < 6; i++)
            if (i != 1) st->seg[i] = seg(0, 0, 0xffff, 0x93);
        st->idtr = (struct hvp_cpu_table){0, 0x3ff};
    } else {
        st->cr0 = 0x11; /* ET PE */
        for (int i = 0; i < 6; i++)
            st->seg[i] = seg(S_DATA, 0, 0xffffffff, 0xc093);
        st->seg[1] = seg(S_CODE32, 0, 0xffffffff, 0xc09b);
        if (mode != M_PROT32) {
            st->cr0 = 0x80000011;
            st->cr3 = PML4;
            st->cr4 = 0x20;
            st->efer = 0x500; /* LMA LME */
        }
        if (mode == M_LONG64) st->seg[1] = seg(S_CODE64, 0, 0xffffffff, 0xa09b);
    }
    cr_assert_eq(hvp_cpu_set_state(v->cpu, &v->st), 0);
}

static void vm_run(struct vm *v)
{
    cr_assert_eq(hvp_cpu_run(v->cpu, 100000, &v->ex), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
}

static void vm_fini(struct vm *v)
{
    hvp_cpu_destroy(v->cpu);
    munmap(v->ram, RAM_SIZE);
}

static void expect_hlt(struct vm *v)
{
    cr_assert_eq(v->ex.reason, HVP_CPU_EXIT_HLT, "exit %u vector %u err %#x rip %#lx: %s",
                 v->ex.reason, v->ex.u.exception.vector, v->ex.u.exception.error_code,
                 (unsigned long)v->st.rip, hvp_cpu_error(v->cpu));
}

static void expect_exc(struct vm *v, unsigned vec, int err, uint64_t rip)
{
    cr_assert_eq(v->ex.reason, HVP_CPU_EXIT_EXCEPTION, "exit %u (%s) rip %#lx", v->ex.reason,
                 hvp_cpu_error(v->cpu), (unsigned long)v->st.rip);
    cr_expect_eq(v->ex.u.exception.vector, vec, "vector %u, expected %u",
                 v->ex.u.exception.vector, vec);
    if (err >= 0) {
        cr_expect(v->ex.u.exception.has_error_code);
        cr_expect_eq(v->ex.u.exception.error_code, (uint32_t)err, "error %#x, expected %#x",
                     v->ex.u.exception.error_code, (unsigned)err);
    } else {
        cr_expect(!v->ex.u.exception.has_error_code);
    }
    cr_expect_eq(v->st.rip, rip, "rip %#lx, expected %#lx", (unsigned long)v->st.rip,
                 (unsigned long)rip);
}

/* ---- the Linux 6.1 trampoline shape ---- */

/* 64-bit: far return to 32-bit code (compatibility mode); there: new
 * DS/SS, paging off (long mode left), EFER read, a store with paging off,
 * CR3/CR4.PAE/EFER.LME set again, far return to 64-bit code pushed while
 * still 32-bit, paging on, LRET, and a 64-bit-only instruction. */
SNIP(s_tramp, "lea rax, [rip + tr_compat]\n push 0x18\n push rax\n .byte 0x48, 0xcb\n"
              ".code32\n"
              "tr_compat: mov eax, 0x10\n mov ds, eax\n mov ss, eax\n mov esp, 0x8000\n"
              " call tr_here\n tr_here: pop ebx\n"
              " mov eax, cr0\n btr eax, 31\n mov cr0, eax\n"
              " mov ecx, 0xc0000080\n rdmsr\n mov esi, eax\n"
              " mov dword ptr [0x40000], 0x12345678\n"
              " mov eax, 0x1000\n mov cr3, eax\n"
              " mov eax, 0x20\n mov cr4, eax\n"
              " push ecx\n rdmsr\n bts eax, 8\n wrmsr\n pop ecx\n"
              " lea eax, [ebx + tr_back - tr_here]\n push 0x08\n push eax\n"
              " mov eax, cr0\n bts eax, 31\n mov cr0, eax\n"
              " retf\n"
              ".code64\n"
              "tr_back: mov rdi, 0x1122334455667788\n mov edx, esp\n hlt\n");

Test(modes, linux_trampoline)
{
    struct vm v;
    vm_init(&v, s_tramp, s_tramp_end, M_LONG64);
    v.st.efer = 0x500; /* LME LMA, no NXE: the trampoline reads it */
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[6] & 0x500, 0x100, "EFER in the middle: LME, not LMA (%#lx)",
                 (unsigned long)v.st.gpr[6]);
    cr_expect_eq(*(uint32_t *)(void *)(v.ram + 0x40000), 0x12345678);
    cr_expect_eq(v.st.gpr[7], 0x1122334455667788ull, "64-bit code ran");
    cr_expect_eq(v.st.seg[1].selector, 0x08);
    cr_expect_eq(v.st.efer & 0x500, 0x500, "long mode again");
    cr_expect_eq(v.st.cr0 & 0x80000001, 0x80000001);
    cr_expect_eq(v.st.gpr[2], 0x8000, "the LRET popped 8 bytes of the 32-bit stack");
    cr_expect_eq(v.st.seg[2].selector, 0x10);
    /* the loads set the accessed bit of the data descriptor */
    cr_expect(*q(&v, GDT + S_DATA) & (1ull << 40));
    vm_fini(&v);
}

/* ---- far transfers ---- */

/* 32-bit: CALL ptr16:32 into 16-bit code (a segment based at CODE2),
 * which returns with a 32-bit RETF (66 CB); then JMP m16:32 */
SNIP(s_farcall, ".code32\n"
                " .byte 0x9a\n .long 0\n .word 0x20\n"
                " mov esi, esp\n"
                " mov dword ptr [0x40000], 0x11020\n mov word ptr [0x40004], 0x18\n"
                " jmp fword ptr [0x40000]\n");
SNIP(s_far16, ".code16\n mov dx, 0x1616\n mov bx, sp\n mov ecx, [esp]\n mov edi, [esp+4]\n"
              " .byte 0x66, 0xcb\n"
              " .fill 32 - (. - s_far16), 1, 0x90\n"
              ".code32\n mov eax, 0x3232\n hlt\n");

Test(modes, far_call_to_16bit_and_back)
{
    struct vm v;
    vm_init(&v, s_farcall, s_farcall_end, M_PROT32);
    memcpy(v.ram + CODE2, s_far16, (size_t)(s_far16_end - s_far16));
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[2] & 0xffff, 0x1616);
    cr_expect_eq(v.st.gpr[3] & 0xffff, (STACK - 8) & 0xffff, "CS and EIP pushed as dwords");
    cr_expect_eq(v.st.gpr[1], CODE + 7, "return EIP");
    cr_expect_eq(v.st.gpr[7], S_CODE32, "return CS");
    cr_expect_eq(v.st.gpr[6], STACK, "RETF popped both");
    cr_expect_eq(v.st.gpr[0] & 0xffff, 0x3232);
    cr_expect_eq(v.st.seg[1].selector, S_CODE32);
    vm_fini(&v);
}

/* ---- segment-register loads ---- */

static void load_case(int mode, unsigned sreg_modrm, uint16_t sel, unsigned vec, int err)
{
    /* mov ax, sel; mov <sreg>, ax; hlt */
    uint8_t code[] = {0x66, 0xb8, (uint8_t)sel, (uint8_t)(sel >> 8), 0x8e, (uint8_t)sreg_modrm,
                      0xf4};
    struct vm v;
    vm_init(&v, code, code + sizeof code, mode);
    vm_run(&v);
    if (vec == 0xff)
        expect_hlt(&v);
    else
        expect_exc(&v, vec, err, CODE + 4);
    vm_fini(&v);
}

#define MOV_DS 0xd8
#define MOV_SS 0xd0
#define MOV_ES 0xc0

Test(modes, segment_load_faults)
{
    for (int mode = M_COMPAT; mode <= M_PROT32; mode++) {
        load_case(mode, MOV_DS, S_ABSENT, 11, S_ABSENT);     /* #NP(sel) */
        load_case(mode, MOV_SS, S_ABSENT, 12, S_ABSENT);     /* #SS(sel) */
        load_case(mode, MOV_DS, 0x1000, 13, 0x1000);         /* beyond the GDT limit */
        load_case(mode, MOV_SS, S_CODE32, 13, S_CODE32);     /* code into SS */
        load_case(mode, MOV_SS, S_RODATA, 13, S_RODATA);     /* read-only SS */
        load_case(mode, MOV_SS, 0, 13, 0);                   /* null SS */
        load_case(mode, MOV_SS, S_DATA3 | 3, 13, S_DATA3);   /* RPL != CPL */
        load_case(mode, MOV_DS, S_TSS, 13, S_TSS);           /* system descriptor */
        load_case(mode, MOV_DS, 0x0c, 13, 0x0c);             /* LDT selector, no LDT */
        load_case(mode, MOV_DS, S_DATA3 | 3, 0xff, 0);       /* fine at CPL 0 */
        load_case(mode, MOV_ES, S_CODE32, 0xff, 0);          /* readable code: fine */
        load_case(mode, MOV_ES, 0, 0xff, 0);                 /* null DS/ES: fine */
    }
}

/* A null DS is unusable: an access through it is #GP(0). */
SNIP(s_nullds, ".code32\n xor eax, eax\n mov ds, eax\n mov ebx, [0x100]\n hlt\n");

Test(modes, null_segment_access)
{
    struct vm v;
    vm_init(&v, s_nullds, s_nullds_end, M_PROT32);
    vm_run(&v);
    expect_exc(&v, 13, 0, CODE + 4);
    vm_fini(&v);
}

/* ---- limits and types ---- */

struct lim_case {
    const uint8_t *code, *end;
    unsigned vec; /* 0xff: hlt */
    unsigned fault_off;
};

SNIP(s_lim_ok, ".code32\n mov eax, 0x30\n mov ds, eax\n mov ebx, [0xffc]\n"
               " mov eax, 0x48\n mov es, eax\n mov ecx, es:[0x1000]\n hlt\n");
SNIP(s_lim_gp, ".code32\n mov eax, 0x30\n mov ds, eax\n mov ebx, [0xffd]\n hlt\n");
SNIP(s_lim_down, ".code32\n mov eax, 0x48\n mov ds, eax\n mov ebx, [0x800]\n hlt\n");
SNIP(s_lim_ss, ".code32\n mov eax, 0x30\n mov ss, eax\n mov esp, 2\n push eax\n hlt\n");
SNIP(s_lim_ro, ".code32\n mov eax, 0x50\n mov ds, eax\n mov ebx, [0x100]\n mov [0x100], ebx\n hlt\n");
SNIP(s_lim_str, ".code32\n mov eax, 0x30\n mov es, eax\n mov edi, 0xfff\n stosw\n hlt\n");
SNIP(s_lim_cs, ".code32\n mov eax, cs:[0x100]\n mov cs:[0x100], eax\n hlt\n");

Test(modes, segment_limits_and_types)
{
    struct vm v;
    vm_init(&v, s_lim_ok, s_lim_ok_end, M_PROT32);
    *(uint32_t *)(void *)(v.ram + DATA + 0xffc) = 0xabcd1234;
    *(uint32_t *)(void *)(v.ram + DATA + 0x1000) = 0x5678;
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[3], 0xabcd1234, "DS.base added");
    cr_expect_eq(v.st.gpr[1], 0x5678, "expand-down: above the limit is valid");
    vm_fini(&v);

    const struct lim_case cases[] = {
        {s_lim_gp, s_lim_gp_end, 13, 7},      /* the last byte past the limit */
        {s_lim_down, s_lim_down_end, 13, 7},  /* expand-down: at/below the limit */
        {s_lim_ss, s_lim_ss_end, 12, 12},     /* push wraps ESP past SS's limit */
        {s_lim_ro, s_lim_ro_end, 13, 13},     /* store to read-only data */
        {s_lim_str, s_lim_str_end, 13, 12},   /* STOSW through ES's limit */
        {s_lim_cs, s_lim_cs_end, 13, 6},      /* CS readable, never writable */
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vm_init(&v, cases[i].code, cases[i].end, M_PROT32);
        vm_run(&v);
        expect_exc(&v, cases[i].vec, 0, CODE + cases[i].fault_off);
        vm_fini(&v);
    }
}

/* ---- CR0 / CR4 / EFER checks ---- */

SNIP(s_cr_pg64, "mov rax, cr0\n btr eax, 31\n mov cr0, rax\n hlt\n");
SNIP(s_cr_pae, ".code32\n mov eax, 0x100\n xor edx, edx\n mov ecx, 0xc0000080\n wrmsr\n"
               " mov eax, cr0\n bts eax, 31\n mov cr0, eax\n hlt\n");
SNIP(s_cr_clrpae, "xor eax, eax\n mov cr4, rax\n hlt\n");
SNIP(s_cr_pcide, "mov eax, 0x20020\n mov cr4, rax\n hlt\n");
SNIP(s_cr_lme, "mov ecx, 0xc0000080\n rdmsr\n btr eax, 8\n wrmsr\n hlt\n");
SNIP(s_cr_pgpe, ".code32\n mov eax, 0x80000010\n mov cr0, eax\n hlt\n");

Test(modes, control_register_checks)
{
    const struct {
        const uint8_t *code, *end;
        int mode;
        unsigned off;
    } c[] = {
        {s_cr_pg64, s_cr_pg64_end, M_LONG64, 7},     /* clearing PG in 64-bit mode */
        {s_cr_pae, s_cr_pae_end, M_PROT32, 21},      /* PG with LME but no PAE */
        {s_cr_clrpae, s_cr_clrpae_end, M_LONG64, 2}, /* clearing PAE in long mode */
        {s_cr_pcide, s_cr_pcide_end, M_LONG64, 5},   /* PCIDE: no PCID advertised */
        {s_cr_lme, s_cr_lme_end, M_LONG64, 11},      /* LME change with paging on */
        {s_cr_pgpe, s_cr_pgpe_end, M_PROT32, 5},     /* PG without PE */
    };
    for (unsigned i = 0; i < sizeof c / sizeof c[0]; i++) {
        struct vm v;
        vm_init(&v, c[i].code, c[i].end, c[i].mode);
        vm_run(&v);
        expect_exc(&v, 13, 0, CODE + c[i].off);
        vm_fini(&v);
    }
}

/* ---- real mode ---- */

/* INT 0x30 through the IVT (handler at 0x1000:0x200 sets BP, IRET); then
 * big-real mode: PE on, FS = flat data, PE off, a 32-bit FS access above
 * 1 MiB; then #GP past DS's 64 KiB limit. */
SNIP(s_real, ".code16\n"
             " int 0x30\n"
             " lgdt [0x500]\n"
             " mov eax, cr0\n or al, 1\n mov cr0, eax\n"
             " mov ax, 0x10\n mov fs, ax\n"
             " mov eax, cr0\n and al, 0xfe\n mov cr0, eax\n"
             " xor ax, ax\n mov ds, ax\n"
             " mov ebx, 0x200000\n mov ecx, fs:[ebx]\n"
             " mov si, 0x1234\n"
             " mov edx, [ebx]\n hlt\n");
SNIP(s_real_h, ".code16\n mov bp, 0x4242\n mov di, sp\n iret\n");

Test(modes, real_mode_ivt_and_unreal)
{
    struct vm v;
    vm_init(&v, s_real, s_real_end, M_REAL);
    memcpy(v.ram + CODE + 0x200, s_real_h, (size_t)(s_real_h_end - s_real_h));
    *(uint32_t *)(void *)(v.ram + 0x30 * 4) = (uint32_t)((CODE >> 4) << 16) | 0x200;
    *(uint16_t *)(void *)(v.ram + 0x500) = S_GDT_END - 1;
    memcpy(v.ram + 0x502, &(uint32_t){GDT}, 4); /* unaligned in the pseudo-descriptor */
    *(uint32_t *)(void *)(v.ram + 0x200000) = 0xfeedf00d;
    v.st.gpr[4] = 0x8000;
    v.st.rflags = 0x202;
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    cr_expect_eq(v.st.gpr[5] & 0xffff, 0x4242, "the IVT handler ran");
    cr_expect_eq(v.st.gpr[7] & 0xffff, 0x8000 - 6, "FLAGS, CS, IP pushed");
    cr_expect_eq(*(uint16_t *)(void *)(v.ram + 0x8000 - 6), 2, "return IP");
    cr_expect_eq(*(uint16_t *)(void *)(v.ram + 0x8000 - 4), CODE >> 4, "return CS");
    cr_expect_eq(*(uint16_t *)(void *)(v.ram + 0x8000 - 2), 0x202, "FLAGS");
    cr_expect_eq(v.st.gpr[1], 0xfeedf00d, "FS kept its 4 GiB limit back in real mode");
    cr_expect_eq(v.st.gpr[6] & 0xffff, 0x1234);
    /* DS was loaded in real mode: limit 64 KiB, #GP */
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION, "exit %u: %s", v.ex.reason,
                 hvp_cpu_error(v.cpu));
    cr_expect_eq(v.ex.u.exception.vector, 13);
    cr_expect_eq(v.st.cr0 & 1, 0);
    cr_expect(v.st.rflags & 0x200, "IRET restored IF");
    vm_fini(&v);
}

/* Reset state: CS.base 0xFFFF0000 until the first far jump. */
Test(modes, reset_vector_far_jump)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg,
                                 .model = HVP_CPU_MODEL_SYSTEM,
                                 .exception_exit_bitmap = 0xffffffff};
    struct hvp_cpu *cpu;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    uint8_t *rom = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *ram = mmap(NULL, 0x100000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(rom != MAP_FAILED && ram != MAP_FAILED);
    /* jmp 0xf000:0xe000 at 0xFFFFFFF0; at 0xFE000: mov ax, cs; hlt */
    static const uint8_t rv[] = {0xea, 0x00, 0xe0, 0x00, 0xf0};
    memcpy(rom + 0xfff0, rv, sizeof rv);
    static const uint8_t tgt[] = {0x8c, 0xc8, 0xf4};
    memcpy(ram + 0xfe000, tgt, sizeof tgt);
    cr_assert_eq(hvp_cpu_map(cpu, 0xffff0000, 0x10000, rom, 5), 0);
    cr_assert_eq(hvp_cpu_map(cpu, 0, 0x100000, ram, 7), 0);
    struct hvp_cpu_exit ex;
    struct hvp_cpu_state st;
    cr_assert_eq(hvp_cpu_run(cpu, 100, &ex), 0);
    cr_assert_eq(ex.reason, HVP_CPU_EXIT_HLT, "exit %u: %s", ex.reason, hvp_cpu_error(cpu));
    hvp_cpu_get_state(cpu, &st);
    cr_expect_eq(st.seg[1].base, 0xf0000);
    cr_expect_eq(st.gpr[0] & 0xffff, 0xf000);
    cr_expect_eq(st.rip, 0xe003);
    hvp_cpu_destroy(cpu);
    munmap(rom, 0x10000);
    munmap(ram, 0x100000);
}

/* ---- protected-mode IDT delivery, IRET, privilege change ---- */

/* CPL 0 builds an IRET frame to CPL 3 code; CPL 3 runs INT 0x40 (a DPL 3
 * 32-bit interrupt gate): the handler (CPL 0, stack from TSS.ESP0) saves
 * its frame; then a #GP from CPL 3 (CLI with IOPL 0) with its error
 * code. */
SNIP(s_pm_main, ".code32\n"
                " push 0x43\n push 0x7000\n push 0x2\n push 0x5b\n push 0x11000\n iretd\n");
SNIP(s_pm_user, ".code32\n mov eax, ss\n mov edi, esp\n int 0x40\n mov ebx, 0x3333\n cli\n hlt\n");
SNIP(s_pm_h40, ".code32\n mov esi, esp\n mov ecx, [esp+16]\n mov edx, [esp+12]\n iretd\n");
SNIP(s_pm_h13, ".code32\n mov ebp, [esp]\n mov ss:[0x500], esp\n hlt\n");

static void gate32(struct vm *v, unsigned vec, uint32_t off, unsigned dpl)
{
    *q(v, IDT + vec * 8) = (off & 0xffff) | ((uint64_t)S_CODE32 << 16) |
                           ((uint64_t)(0x8e | dpl << 5) << 40) | ((uint64_t)(off >> 16) << 48);
}

Test(modes, protected_mode_idt_ring3)
{
    struct vm v;
    vm_init(&v, s_pm_main, s_pm_main_end, M_PROT32);
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM};
    hvp_cpu_destroy(v.cpu); /* again, delivering through the IDT this time */
    cr_assert_eq(hvp_cpu_create(&cfg, &v.cpu), 0);
    cr_assert_eq(hvp_cpu_map(v.cpu, 0, RAM_SIZE, v.ram, 7), 0);
    memcpy(v.ram + CODE2, s_pm_user, (size_t)(s_pm_user_end - s_pm_user));
    memcpy(v.ram + 0x12000, s_pm_h40, (size_t)(s_pm_h40_end - s_pm_h40));
    memcpy(v.ram + 0x12100, s_pm_h13, (size_t)(s_pm_h13_end - s_pm_h13));
    gate32(&v, 0x40, 0x12000, 3);
    gate32(&v, 13, 0x12100, 0);
    *(uint32_t *)(void *)(v.ram + TSS + 4) = 0x9000; /* ESP0 */
    *(uint32_t *)(void *)(v.ram + TSS + 8) = S_DATA; /* SS0 */
    v.st.gpr[4] = 0x8800;
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[0] & 0xffff, S_DATA3 | 3, "ring 3 ran with SS = 0x43");
    cr_expect_eq(v.st.gpr[7], 0x7000);
    cr_expect_eq(v.st.gpr[6], 0x9000 - 20, "INT 0x40: SS, ESP, EFLAGS, CS, EIP on the ESP0 stack");
    cr_expect_eq(v.st.gpr[1], S_DATA3 | 3, "old SS in the frame");
    cr_expect_eq(v.st.gpr[2], 0x7000, "old ESP in the frame");
    cr_expect_eq(v.st.gpr[3], 0x3333, "IRETD back to ring 3");
    cr_expect_eq(v.st.gpr[5], 0, "#GP(0) from CLI at CPL 3");
    cr_expect_eq(*(uint32_t *)(void *)(v.ram + 0x500), 0x9000 - 24, "with an error code");
    cr_expect_eq(v.st.seg[1].selector, S_CODE32);
    cr_expect_eq(*(uint32_t *)(void *)(v.ram + 0x9000 - 20), CODE2 + 11, "faulting EIP (CLI)");
    vm_fini(&v);
}

/* ---- 32-bit and PAE paging ---- */

#define PD32  0x20000ull /* 32-bit paging: page directory */
#define PT32  0x21000ull /* ... and the table of 0..4 MiB */
#define PDPTP 0x22000ull /* PAE */
#define PDPAE 0x23000ull

/* 32-bit paging: PDE 0 -> PT32 (identity 4 KiB pages), PDE 1 = a 4 MiB
 * page at physical 0 (alias), PDE 2 absent, PDE 3 = a 4 MiB page with a
 * reserved bit (21); the page of DATA + 0x2000 is read-only. */
static void paging32(struct vm *v)
{
    uint32_t *pd = (uint32_t *)(void *)(v->ram + PD32), *pt = (uint32_t *)(void *)(v->ram + PT32);
    for (uint32_t i = 0; i < 1024; i++)
        pt[i] = (i << 12) | 7;
    pt[(DATA + 0x2000) >> 12] &= ~2u;
    pd[0] = (uint32_t)PT32 | 7;
    pd[1] = 0x87;
    pd[3] = 0x87 | 0x200000;
}

#define PG32_ON                                                                                    \
    ".code32\n mov eax, 0x20000\n mov cr3, eax\n mov eax, cr4\n or eax, 0x10\n mov cr4, eax\n"     \
    " mov eax, cr0\n or eax, 0x80010000\n mov cr0, eax\n"
SNIP(s_pg32_ok, PG32_ON " mov ebx, [0x440000]\n mov dword ptr [0x40004], 0x77\n hlt\n");
SNIP(s_pg32_np, PG32_ON " mov ecx, [0x800010]\n hlt\n");
SNIP(s_pg32_ro, PG32_ON " mov dword ptr [0x42008], 1\n hlt\n");
SNIP(s_pg32_rsvd, PG32_ON " mov ecx, [0xc00000]\n hlt\n");

static void pf_case(const uint8_t *code, const uint8_t *end, void (*setup)(struct vm *),
                    unsigned insn_len, uint32_t err, uint32_t cr2)
{
    struct vm v;
    vm_init(&v, code, end, M_PROT32);
    setup(&v);
    vm_run(&v);
    expect_exc(&v, 14, (int)err, CODE + (uint64_t)(end - code) - 1 - insn_len);
    cr_expect_eq(v.ex.u.exception.cr2, cr2);
    cr_expect_eq(v.st.cr2, cr2);
    vm_fini(&v);
}

Test(modes, paging_32bit)
{
    struct vm v;
    vm_init(&v, s_pg32_ok, s_pg32_ok_end, M_PROT32);
    paging32(&v);
    *(uint32_t *)(void *)(v.ram + DATA) = 0xcafe;
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[3], 0xcafe, "through the 4 MiB page");
    cr_expect_eq(*(uint32_t *)(void *)(v.ram + DATA + 4), 0x77);
    uint32_t *pd = (uint32_t *)(void *)(v.ram + PD32), *pt = (uint32_t *)(void *)(v.ram + PT32);
    cr_expect(pd[1] & 0x20, "A set in the 4 MiB PDE");
    cr_expect(!(pd[1] & 0x40), "D clear: only read");
    cr_expect((pt[DATA >> 12] & 0x60) == 0x60, "A and D set in the PTE written");
    cr_expect(pd[0] & 0x20, "A set in the PDE above it");
    vm_fini(&v);
    pf_case(s_pg32_np, s_pg32_np_end, paging32, 6, 0, 0x800010);
    pf_case(s_pg32_ro, s_pg32_ro_end, paging32, 10, 3, 0x42008);   /* P W, CR0.WP */
    pf_case(s_pg32_rsvd, s_pg32_rsvd_end, paging32, 6, 9, 0xc00000); /* P RSVD */
}

/* PAE: PDPTE 0 -> PDPAE (2 MiB pages; entry 1, 2..4 MiB, is execute-
 * disable), PDPTE 1 -> the same PD (1 GiB alias). */
static void paging_pae(struct vm *v)
{
    uint64_t *pdpt = q(v, PDPTP), *pd = q(v, PDPAE);
    pdpt[0] = PDPAE | 1;
    pdpt[1] = PDPAE | 1;
    pd[0] = 0x83;
    pd[1] = 0x200083 | (1ull << 63);
}

static void paging_pae_bad(struct vm *v)
{
    paging_pae(v);
    q(v, PDPTP)[2] = PDPAE | 1 | 2; /* R/W is reserved in a PAE PDPTE */
}

#define PAE_ON                                                                                     \
    ".code32\n mov ecx, 0xc0000080\n rdmsr\n bts eax, 11\n wrmsr\n"                                \
    " mov eax, cr4\n or eax, 0x20\n mov cr4, eax\n mov eax, 0x22000\n mov cr3, eax\n"              \
    " mov eax, cr0\n or eax, 0x80010000\n mov cr0, eax\n"
/* the PDPTEs are loaded with CR3: clearing PDPTE 1 in memory changes
 * nothing until CR3 is written again */
SNIP(s_pae_ok, PAE_ON " mov ebx, [0x40040000]\n mov dword ptr [0x22008], 0\n"
                      " mov esi, [0x40040000]\n mov eax, 0x22000\n mov cr3, eax\n"
                      " mov edi, [0x40040000]\n hlt\n");
SNIP(s_pae_nx, PAE_ON " mov eax, 0x200000\n jmp eax\n");
SNIP(s_pae_gp, PAE_ON " hlt\n");

Test(modes, paging_pae)
{
    struct vm v;
    vm_init(&v, s_pae_ok, s_pae_ok_end, M_PROT32);
    paging_pae(&v);
    *(uint32_t *)(void *)(v.ram + DATA) = 0xbeef;
    vm_run(&v);
    expect_exc(&v, 14, 0, CODE + (uint64_t)(s_pae_ok_end - s_pae_ok) - 1 - 6);
    cr_expect_eq(v.ex.u.exception.cr2, 0x40040000);
    cr_expect_eq(v.st.gpr[3], 0xbeef, "through PDPTE 1");
    cr_expect_eq(v.st.gpr[6], 0xbeef, "the loaded PDPTE, not memory");
    cr_expect(*q(&v, PDPAE) & 0x20, "A set in the 2 MiB PDE");
    vm_fini(&v);
    /* an instruction fetch from an XD page: I/D, P */
    vm_init(&v, s_pae_nx, s_pae_nx_end, M_PROT32);
    paging_pae(&v);
    vm_run(&v);
    expect_exc(&v, 14, 0x11, 0x200000);
    cr_expect_eq(v.ex.u.exception.cr2, 0x200000);
    vm_fini(&v);
    /* a PDPTE with reserved bits: the MOV to CR0 that enables paging #GP(0) */
    vm_init(&v, s_pae_gp, s_pae_gp_end, M_PROT32);
    paging_pae_bad(&v);
    vm_run(&v);
    expect_exc(&v, 13, 0, CODE + (uint64_t)(s_pae_gp_end - s_pae_gp) - 1 - 3);
    cr_expect_eq(v.st.cr0 & 0x80000000, 0, "paging stayed off");
    vm_fini(&v);
}

/* ---- call gates ---- */

/* CPL 3 pushes a parameter and calls through a DPL 3 32-bit call gate
 * (one parameter) to CPL 0 code: the stack switches to the TSS's
 * SS0:ESP0 with the old SS:ESP, the copied parameter and the return
 * CS:EIP; RETF 4 returns to CPL 3 and its stack. */
SNIP(s_cg_user, ".code32\n push 0x1234\n .byte 0x9a\n .long 0\n .word 0x6b\n mov ebx, 0x5555\n hlt\n");
SNIP(s_cg_h, ".code32\n mov esi, esp\n mov ecx, [esp+8]\n mov edx, [esp+12]\n mov edi, [esp+4]\n"
             " retf 4\n");

Test(modes, call_gate_to_ring0)
{
    struct vm v;
    vm_init(&v, s_pm_main, s_pm_main_end, M_PROT32);
    memcpy(v.ram + CODE2, s_cg_user, (size_t)(s_cg_user_end - s_cg_user));
    memcpy(v.ram + 0x12000, s_cg_h, (size_t)(s_cg_h_end - s_cg_h));
    /* call gate: offset 0x12000 in S_CODE32, DPL 3, 1 parameter */
    *q(&v, GDT + S_GATE) = 0x2000 | ((uint64_t)S_CODE32 << 16) | (1ull << 32) | (0xecull << 40) |
                           (0x0001ull << 48);
    *(uint32_t *)(void *)(v.ram + TSS + 4) = 0x9000;
    *(uint32_t *)(void *)(v.ram + TSS + 8) = S_DATA;
    v.st.gpr[4] = 0x8800;
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    /* HLT at CPL 3: #GP(0), the end of the test */
    expect_exc(&v, 13, 0, CODE2 + (uint64_t)(s_cg_user_end - s_cg_user) - 1);
    cr_expect_eq(v.st.gpr[6], 0x9000 - 20, "SS, ESP, parameter, CS, EIP on the ESP0 stack");
    cr_expect_eq(v.st.gpr[1], 0x1234, "the parameter copied");
    cr_expect_eq(v.st.gpr[2], 0x7000 - 4, "old ESP");
    cr_expect_eq(v.st.gpr[7], S_CODE32U | 3, "return CS");
    cr_expect_eq(v.st.gpr[3], 0x5555, "back at CPL 3");
    cr_expect_eq(v.st.seg[1].selector, S_CODE32U | 3);
    cr_expect_eq(v.st.seg[2].selector, S_DATA3 | 3);
    cr_expect_eq(v.st.gpr[4], 0x7000, "RETF 4 released the parameter");
    vm_fini(&v);
}

/* A far call through a gate whose DPL is below the CPL: #GP(gate). */
SNIP(s_cg_bad, ".code32\n .byte 0x9a\n .long 0\n .word 0x6b\n hlt\n");

Test(modes, call_gate_privilege)
{
    struct vm v;
    vm_init(&v, s_pm_main, s_pm_main_end, M_PROT32);
    memcpy(v.ram + CODE2, s_cg_bad, (size_t)(s_cg_bad_end - s_cg_bad));
    *q(&v, GDT + S_GATE) = 0x2000 | ((uint64_t)S_CODE32 << 16) | (0x8cull << 40) |
                           (0x0001ull << 48); /* DPL 0 */
    v.st.gpr[4] = 0x8800;
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    expect_exc(&v, 13, S_GATE, CODE2);
    vm_fini(&v);
}

/* ---- LLDT/SLDT, LAR/LSL/VERR/VERW, ARPL ---- */

/* 64-bit: LLDT with a null selector (what Linux's clear_LDT does), SLDT;
 * LAR/LSL of the small data segment; VERR/VERW of read-only data; LAR of
 * a selector past the GDT (ZF clear, destination kept). */
SNIP(s_lsl, "xor eax, eax\n lldt ax\n mov eax, 0x30\n lar ecx, eax\n setz r8b\n lsl edx, eax\n"
            " mov eax, 0x50\n verr ax\n setz r9b\n verw ax\n setz r10b\n"
            " mov eax, 0x1000\n mov esi, 0x77\n lar esi, eax\n setz r11b\n sldt ebx\n hlt\n");
SNIP(s_arpl, ".code32\n mov eax, 0x10\n mov ecx, 0x13\n arpl ax, cx\n setz bl\n arpl ax, cx\n"
             " setz bh\n hlt\n");

Test(modes, lar_lsl_verr_lldt_arpl)
{
    struct vm v;
    vm_init(&v, s_lsl, s_lsl_end, M_LONG64);
    v.st.ldtr.selector = 0x1234; /* LLDT 0 must clear it */
    hvp_cpu_set_state(v.cpu, &v.st);
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[8] & 0xff, 1, "LAR: ZF");
    cr_expect_eq(v.st.gpr[1], 0x00409300, "LAR: access rights (type 3, P, DPL 0, B)");
    cr_expect_eq(v.st.gpr[2], 0xfff, "LSL: the byte-granular limit");
    cr_expect_eq(v.st.gpr[9] & 0xff, 1, "VERR of read-only data");
    cr_expect_eq(v.st.gpr[10] & 0xff, 0, "VERW of read-only data");
    cr_expect_eq(v.st.gpr[11] & 0xff, 0, "LAR past the GDT: ZF clear");
    cr_expect_eq(v.st.gpr[6], 0x77, "... and the destination kept");
    cr_expect_eq(v.st.gpr[3], 0, "SLDT after LLDT 0");
    vm_fini(&v);
    vm_init(&v, s_arpl, s_arpl_end, M_PROT32);
    vm_run(&v);
    expect_hlt(&v);
    cr_expect_eq(v.st.gpr[0] & 0xffff, 0x13, "ARPL raised the RPL");
    cr_expect_eq(v.st.gpr[3] & 0xffff, 0x0001, "ZF set, then clear");
    vm_fini(&v);
}
