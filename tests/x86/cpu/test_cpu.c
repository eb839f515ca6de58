/* Software CPU unit tests: small machine-code snippets run through the
 * public API (include/hvp/cpu.h). The snippets are assembled by the host
 * assembler at build time (GNU as, Intel syntax) into .rodata. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hvp/cpu.h"

#define SNIP(name, text)                                                                           \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.att_syntax prefix\n.popsection\n")

#define CODE  0x100000ull
#define DATA  0x200000ull
#define STACK 0x300000ull /* stack top; the page below is mapped */

struct vm {
    struct hvp_cpu *cpu;
    uint8_t *code, *data, *stack;
    struct hvp_cpu_state st;
    struct hvp_cpu_exit ex;
};

static void *amap(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED);
    return p;
}

static void vm_init(struct vm *v, const uint8_t *code, const uint8_t *end)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    cr_assert_eq(hvp_cpu_create(&cfg, &v->cpu), 0);
    v->code = amap(0x4000);
    v->data = amap(0x4000);
    v->stack = amap(0x4000);
    memset(v->code, 0xcc, 0x4000); /* int3 after the snippet */
    memcpy(v->code, code, (size_t)(end - code));
    cr_assert_eq(hvp_cpu_map(v->cpu, CODE, 0x4000, v->code, 7), 0);
    cr_assert_eq(hvp_cpu_map(v->cpu, DATA, 0x4000, v->data, 3), 0);
    cr_assert_eq(hvp_cpu_map(v->cpu, STACK - 0x4000, 0x4000, v->stack, 3), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
    v->st.rip = CODE;
    v->st.gpr[4] = STACK;
    cr_assert_eq(hvp_cpu_set_state(v->cpu, &v->st), 0);
}

static void vm_run(struct vm *v, uint64_t budget)
{
    cr_assert_eq(hvp_cpu_run(v->cpu, budget, &v->ex), 0);
    cr_assert_eq(hvp_cpu_get_state(v->cpu, &v->st), 0);
}

static void vm_set(struct vm *v)
{
    cr_assert_eq(hvp_cpu_set_state(v->cpu, &v->st), 0);
}

static void vm_fini(struct vm *v)
{
    hvp_cpu_destroy(v->cpu);
    munmap(v->code, 0x4000);
    munmap(v->data, 0x4000);
    munmap(v->stack, 0x4000);
}

#define RUN_SNIP(v, name) vm_init(v, name, name##_end)
#define SYSCALL_AT(name)  (CODE + (uint64_t)(name##_end - name))

static void expect_syscall(struct vm *v, uint64_t rip)
{
    cr_assert_eq(v->ex.reason, HVP_CPU_EXIT_SYSCALL, "exit %u vector %u rip %#lx", v->ex.reason,
                 v->ex.u.exception.vector, (unsigned long)v->st.rip);
    cr_assert_eq(v->st.rip, rip, "rip %#lx, want %#lx", (unsigned long)v->st.rip,
                 (unsigned long)rip);
}

/* ---- basic integer ---- */

SNIP(s_basic, "mov eax, 5\n add rax, 7\n mov rbx, 0x123456789\n sub rbx, 9\n"
              "lea rcx, [rax + rbx*2 + 3]\n xor edx, edx\n dec rdx\n syscall\n");

Test(cpu, basic_alu_and_syscall)
{
    struct vm v;
    RUN_SNIP(&v, s_basic);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_basic));
    cr_assert_eq(v.st.gpr[0], 12);
    cr_assert_eq(v.st.gpr[3], 0x123456780ull);
    /* SYSCALL puts the return RIP in RCX and RFLAGS in R11 */
    cr_assert_eq(v.st.gpr[1], SYSCALL_AT(s_basic));
    cr_assert_eq(v.st.gpr[11] & 0xfff, v.st.rflags & 0xfff);
    cr_assert_eq(v.st.gpr[2], ~0ull);
    struct hvp_cpu_stats s;
    hvp_cpu_get_stats(v.cpu, &s);
    cr_assert_eq(s.instructions, 8);
    vm_fini(&v);
}

SNIP(s_flags, "mov al, 0x7f\n add al, 1\n pushfq\n pop rbx\n"      /* OF SF AF */
              "mov ecx, 0\n sub ecx, 1\n pushfq\n pop rdx\n"       /* CF SF AF PF */
              "mov esi, 0xffffffff\n inc esi\n pushfq\n pop rdi\n" /* ZF AF PF, CF kept */
              "syscall\n");

Test(cpu, flags_exact)
{
    struct vm v;
    RUN_SNIP(&v, s_flags);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_flags));
    cr_assert_eq(v.st.gpr[3] & 0x8d5, 0x800 | 0x80 | 0x10, "add: %#lx", (unsigned long)v.st.gpr[3]);
    cr_assert_eq(v.st.gpr[2] & 0x8d5, 0x1 | 0x80 | 0x10 | 0x4, "sub: %#lx",
                 (unsigned long)v.st.gpr[2]);
    cr_assert_eq(v.st.gpr[7] & 0x8d5, 0x40 | 0x10 | 0x4 | 0x1, "inc: %#lx",
                 (unsigned long)v.st.gpr[7]);
    cr_assert_eq(v.st.gpr[6], 0);
    vm_fini(&v);
}

SNIP(s_muldiv, "mov rax, 0x100000000\n mov rcx, 0x100000001\n mul rcx\n mov r8, rax\n mov r9, rdx\n"
               "mov rax, -7\n cqo\n mov rcx, 2\n idiv rcx\n mov r10, rax\n mov r14, rdx\n"
               "mov eax, 1000\n imul eax, eax, -3\n mov r12, rax\n"
               "mov ax, 0x0234\n mov cl, 0x10\n div cl\n mov r13, rax\n syscall\n");

Test(cpu, mul_div)
{
    struct vm v;
    RUN_SNIP(&v, s_muldiv);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_muldiv));
    cr_assert_eq(v.st.gpr[8], 0x100000000ull);
    cr_assert_eq(v.st.gpr[9], 1);
    cr_assert_eq(v.st.gpr[10], (uint64_t)-3);
    cr_assert_eq(v.st.gpr[14], (uint64_t)-1);
    cr_assert_eq(v.st.gpr[12], (uint32_t)-3000);
    cr_assert_eq(v.st.gpr[13] & 0xffff, 0x0423); /* 0x234 / 0x10: AL = 0x23, AH = 4 */
    vm_fini(&v);
}

SNIP(s_de, "mov rax, 1\n xor ecx, ecx\n div rcx\n syscall\n");
SNIP(s_de2, "mov ax, 0x1000\n mov cl, 0x10\n div cl\n syscall\n");

Test(cpu, divide_error)
{
    struct vm v;
    RUN_SNIP(&v, s_de);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 0);
    cr_assert_eq(v.st.rip, CODE + 9, "rip %#lx", (unsigned long)v.st.rip);
    vm_fini(&v);
    RUN_SNIP(&v, s_de2); /* quotient 0x100 does not fit AL */
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 0);
    vm_fini(&v);
}

SNIP(s_shift, "mov eax, 0x80000001\n shl eax, 1\n setc bl\n seto bh\n"
              "mov rdx, -16\n sar rdx, 2\n mov ecx, 65\n mov rsi, 3\n shl rsi, cl\n"
              "mov r8d, 0x81\n rol r8b, 1\n mov r9, 1\n ror r9, 1\n"
              "mov r10, 0x0123456789abcdef\n mov r11, 0xfedcba9876543210\n shld r10, r11, 8\n"
              "syscall\n");

Test(cpu, shifts_rotates)
{
    struct vm v;
    RUN_SNIP(&v, s_shift);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_shift));
    cr_assert_eq(v.st.gpr[0], 2);
    cr_assert_eq(v.st.gpr[3] & 0xffff, 0x0101); /* CF=1, OF = MSB ^ CF = 1 */
    cr_assert_eq(v.st.gpr[2], (uint64_t)-4);
    cr_assert_eq(v.st.gpr[6], 6); /* count masked to 1 */
    cr_assert_eq(v.st.gpr[8], 0x03);
    cr_assert_eq(v.st.gpr[9], 0x8000000000000000ull);
    cr_assert_eq(v.st.gpr[10], 0x23456789abcdeffeull);
    vm_fini(&v);
}

SNIP(s_bits, "mov rax, 0x100\n bsf rbx, rax\n bsr rbp, rax\n popcnt rdx, rax\n"
             "tzcnt rsi, rax\n lzcnt rdi, rax\n mov r8, 0xf0\n bts r8, 1\n setc r9b\n"
             "bswap eax\n mov r10d, 0xff\n mov r11d, 0xf3\n andn r12, r10, r11\n"
             "mov r13, 0x12345678\n mov r14, 0xff00ff00\n pext r15, r13, r14\n syscall\n");

Test(cpu, bit_ops_and_bmi)
{
    struct vm v;
    RUN_SNIP(&v, s_bits);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_bits));
    cr_assert_eq(v.st.gpr[3], 8);
    cr_assert_eq(v.st.gpr[5], 8);
    cr_assert_eq(v.st.gpr[2], 1);
    cr_assert_eq(v.st.gpr[6], 8);
    cr_assert_eq(v.st.gpr[7], 55);
    cr_assert_eq(v.st.gpr[8], 0xf2);
    cr_assert_eq(v.st.gpr[9] & 0xff, 0);
    cr_assert_eq(v.st.gpr[0], 0x00010000);
    cr_assert_eq(v.st.gpr[12], 0);
    cr_assert_eq(v.st.gpr[15], 0x1256);
    vm_fini(&v);
}

/* ---- stack and control flow ---- */

SNIP(s_calls, "call f\n mov r8, rax\n push 0x1234\n pop r9\n enter 16, 0\n mov rbx, rbp\n leave\n"
              "mov ecx, 5\n xor eax, eax\n1: add eax, ecx\n loop 1b\n"
              "cmp eax, 15\n jne bad\n mov edx, 1\n cmovz r10, rdx\n jmp done\n"
              "bad: ud2\n"
              "f: mov eax, 42\n ret\n"
              "done: syscall\n");

Test(cpu, call_ret_push_pop_loop)
{
    struct vm v;
    RUN_SNIP(&v, s_calls);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_SYSCALL, "reason %u vec %u rip %#lx", v.ex.reason,
                 v.ex.u.exception.vector, (unsigned long)v.st.rip);
    cr_assert_eq(v.st.gpr[8], 42);
    cr_assert_eq(v.st.gpr[9], 0x1234);
    cr_assert_eq(v.st.gpr[3], STACK - 8);
    cr_assert_eq(v.st.gpr[4], STACK);
    cr_assert_eq(v.st.gpr[0], 15);
    cr_assert_eq(v.st.gpr[10], 1);
    vm_fini(&v);
}

/* ---- exceptions ---- */

SNIP(s_ud, "nop\n ud2\n");
SNIP(s_bp, "nop\n int3\n");
SNIP(s_gp, "mov rbx, 0x8000000000000000\n mov rax, [rbx]\n");
SNIP(s_pf, "mov rbx, 0x5000000\n mov [rbx+8], eax\n");
SNIP(s_pfro, "mov rbx, 0x100000\n mov byte ptr [rbx], 0\n"); /* code page is RWX: fine */
SNIP(s_fetch, "mov rax, 0x7000000\n jmp rax\n");

Test(cpu, exceptions)
{
    struct vm v;
    RUN_SNIP(&v, s_ud);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 6);
    cr_assert_eq(v.st.rip, CODE + 1);
    struct hvp_cpu_stats s;
    hvp_cpu_get_stats(v.cpu, &s);
    cr_assert_eq(s.instructions, 1);
    vm_fini(&v);

    RUN_SNIP(&v, s_bp);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 3);
    cr_assert_eq(v.st.rip, CODE + 2); /* a trap: after int3 */
    vm_fini(&v);

    RUN_SNIP(&v, s_gp);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 13);
    cr_assert_eq(v.st.rip, CODE + 10);
    vm_fini(&v);

    RUN_SNIP(&v, s_pf);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 14);
    cr_assert_eq(v.ex.u.exception.cr2, 0x5000008);
    cr_assert(v.ex.u.exception.error_code & 2, "write bit");
    cr_assert_eq(v.st.rip, CODE + 7);
    vm_fini(&v);

    RUN_SNIP(&v, s_fetch);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 14);
    cr_assert_eq(v.ex.u.exception.cr2, 0x7000000);
    cr_assert(v.ex.u.exception.error_code & 16, "fetch bit");
    cr_assert_eq(v.st.rip, 0x7000000);
    vm_fini(&v);
}

Test(cpu, write_to_readonly_page)
{
    struct vm v;
    RUN_SNIP(&v, s_pfro);
    cr_assert_eq(hvp_cpu_protect(v.cpu, CODE, 0x4000, HVP_CPU_PROT_READ | HVP_CPU_PROT_EXEC), 0);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 14);
    cr_assert_eq(v.ex.u.exception.error_code & 3, 3);
    cr_assert_eq(v.ex.u.exception.cr2, CODE);
    vm_fini(&v);
}

/* ---- strings ---- */

SNIP(s_movsb,
     "mov rsi, 0x200000\n mov rdi, 0x201000\n mov ecx, 3000\n rep movsb\n"
     "mov rdi, 0x202000\n mov eax, 0x11223344\n mov ecx, 10\n rep stosd\n"
     "std\n mov rsi, 0x200009\n mov rdi, 0x203009\n mov ecx, 10\n rep movsb\n cld\n"
     "mov rdi, 0x200000\n mov al, 0x77\n mov ecx, 100\n repne scasb\n mov r8, rcx\n mov r9, rdi\n"
     "mov rsi, 0x200000\n mov rdi, 0x201000\n mov ecx, 100\n repe cmpsb\n mov r10, rcx\n"
     "mov esi, 0x200000\n mov edi, 0x203100\n mov ecx, 4\n addr32 rep movsb\n"
     "syscall\n");

Test(cpu, rep_strings)
{
    struct vm v;
    RUN_SNIP(&v, s_movsb);
    for (int i = 0; i < 4096; i++)
        v.data[i] = (uint8_t)((i & 0x3f) + 0x80);
    v.data[50] = 0x77;
    v.data[0x1000 + 50] = 0x77; /* overwritten by the copy anyway */
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_movsb));
    cr_assert_eq(memcmp(v.data, v.data + 0x1000, 3000), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(((uint32_t *)(v.data + 0x2000))[i], 0x11223344);
    cr_assert_eq(memcmp(v.data, v.data + 0x3000, 10), 0);
    cr_assert_eq(v.st.gpr[8], 49); /* found at index 50 */
    cr_assert_eq(v.st.gpr[9], DATA + 51);
    cr_assert_eq(v.st.gpr[10], 0); /* all 100 equal */
    cr_assert_eq(memcmp(v.data, v.data + 0x3100, 4), 0);
    cr_assert_eq(v.st.rflags & 0x400, 0);
    vm_fini(&v);
}

/* ---- atomics, two CPUs ---- */

SNIP(s_lockinc, "mov ecx, 20000\n1: lock inc qword ptr [0x200000]\n mov eax, [0x200008]\n"
                "2: lea edx, [eax+1]\n lock cmpxchg [0x200008], edx\n jnz 2b\n"
                "mov edx, ecx\n lock xadd [0x200010], edx\n dec ecx\n jnz 1b\n syscall\n");

struct thr {
    struct hvp_cpu *cpu;
    struct hvp_cpu_exit ex;
};

static void *thr_run(void *p)
{
    struct thr *t = p;
    hvp_cpu_run(t->cpu, 0, &t->ex);
    return NULL;
}

Test(cpu, lock_atomic_two_cpus)
{
    struct vm a, b;
    RUN_SNIP(&a, s_lockinc);
    RUN_SNIP(&b, s_lockinc);
    /* b shares a's data page */
    cr_assert_eq(hvp_cpu_unmap(b.cpu, DATA, 0x4000), 0);
    cr_assert_eq(hvp_cpu_map(b.cpu, DATA, 0x4000, a.data, 3), 0);
    struct thr ta = {a.cpu, {0}}, tb = {b.cpu, {0}};
    pthread_t x, y;
    pthread_create(&x, NULL, thr_run, &ta);
    pthread_create(&y, NULL, thr_run, &tb);
    pthread_join(x, NULL);
    pthread_join(y, NULL);
    cr_assert_eq(ta.ex.reason, HVP_CPU_EXIT_SYSCALL);
    cr_assert_eq(tb.ex.reason, HVP_CPU_EXIT_SYSCALL);
    uint64_t *q = (uint64_t *)a.data;
    cr_assert_eq(q[0], 40000);
    cr_assert_eq((uint32_t)q[1], 40000);
    cr_assert_eq((uint32_t)q[2], 2 * (20000ull * 20001 / 2) & 0xffffffff);
    vm_fini(&a);
    vm_fini(&b);
}

SNIP(s_cx16, "mov rax, 1\n mov rdx, 2\n mov rbx, 3\n mov rcx, 4\n lock cmpxchg16b [0x200000]\n"
             "setz r8b\n lock cmpxchg16b [0x200000]\n setz r9b\n"
             "mov eax, 5\n mov edx, 6\n cmpxchg8b [0x200020]\n setz r10b\n"
             "lock cmpxchg16b [0x200008]\n");

Test(cpu, cmpxchg8b_16b)
{
    struct vm v;
    RUN_SNIP(&v, s_cx16);
    uint64_t *q = (uint64_t *)v.data;
    q[0] = 1;
    q[1] = 2;
    q[4] = 5 | (6ull << 32);
    vm_run(&v, 0);
    cr_assert_eq(q[0], 3);
    cr_assert_eq(q[1], 4);
    cr_assert_eq(v.st.gpr[8] & 0xff, 1);
    cr_assert_eq(v.st.gpr[9] & 0xff, 0);
    cr_assert_eq(v.st.gpr[10] & 0xff, 1);
    cr_assert_eq(q[4], 3 | (4ull << 32));
    /* misaligned cmpxchg16b: #GP */
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 13);
    vm_fini(&v);
}

/* ---- self-modifying code ---- */

SNIP(s_smc, "lea rbx, [rip + target]\n mov byte ptr [rbx + 1], 2\n"
            "target: mov eax, 1\n syscall\n");

Test(cpu, self_modifying_code)
{
    struct vm v;
    RUN_SNIP(&v, s_smc);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_smc));
    cr_assert_eq(v.st.gpr[0], 2, "the rewritten immediate must run");
    /* run it again from the start: now the store writes the same value */
    v.st.rip = CODE;
    vm_set(&v);
    vm_run(&v, 0);
    cr_assert_eq(v.st.gpr[0], 2);
    /* the embedder rewrites code and says so */
    v.code[12] = 7; /* lea (7 bytes) + mov byte (4 bytes), then b8 imm32 */
    hvp_cpu_invalidate_code(v.cpu, CODE, 0x1000);
    v.st.rip = CODE + 11;
    vm_set(&v);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_smc));
    cr_assert_eq(v.st.gpr[0], 7);
    vm_fini(&v);
}

/* ---- budget and kick ---- */

SNIP(s_spin, "1: inc rax\n jmp 1b\n");

Test(cpu, budget_exact)
{
    struct vm v;
    RUN_SNIP(&v, s_spin);
    vm_run(&v, 1001);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_BUDGET);
    cr_assert_eq(v.st.gpr[0], 501);
    struct hvp_cpu_stats s;
    hvp_cpu_get_stats(v.cpu, &s);
    cr_assert_eq(s.instructions, 1001);
    vm_run(&v, 1);
    cr_assert_eq(v.st.gpr[0], 501);
    cr_assert_eq(v.st.rip, CODE);
    vm_fini(&v);
}

static void *kicker(void *p)
{
    usleep(20000);
    hvp_cpu_kick(p);
    return NULL;
}

Test(cpu, kick_from_thread)
{
    struct vm v;
    RUN_SNIP(&v, s_spin);
    pthread_t t;
    pthread_create(&t, NULL, kicker, v.cpu);
    vm_run(&v, 0);
    pthread_join(t, NULL);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_KICK);
    cr_assert_gt(v.st.gpr[0], 0);
    vm_fini(&v);
}

SNIP(s_repspin, "mov rcx, -1\n mov rdi, 0x200000\n rep stosb\n");

Test(cpu, kick_interrupts_long_rep)
{
    /* stosb over 16 KiB then #PF; make it a long loop that wraps within the page */
    struct vm v;
    RUN_SNIP(&v, s_repspin);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 14);
    cr_assert_eq(v.ex.u.exception.cr2, DATA + 0x4000);
    cr_assert_eq(v.st.gpr[1], (uint64_t)-1 - 0x4000, "rcx counts what was done");
    vm_fini(&v);
}

/* ---- cpuid ---- */

SNIP(s_cpuid, "xor eax, eax\n cpuid\n mov r8d, eax\n mov eax, 1\n cpuid\n mov r9d, ecx\n syscall\n");

Test(cpu, cpuid_table)
{
    struct vm v;
    RUN_SNIP(&v, s_cpuid);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_cpuid));
    cr_assert_geq(v.st.gpr[8], 1);
    /* implemented: x87, MMX, FXSR, SSE, SSE2, SSE3, SSSE3, SSE4.2; not: AVX, XSAVE */
    uint32_t want_edx = 1u | (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26);
    cr_assert_eq(v.st.gpr[2] & want_edx, want_edx, "x87/MMX/FXSR/SSE/SSE2 are advertised");
    uint32_t want_ecx = 1u | (1u << 9) | (1u << 20);
    cr_assert_eq(v.st.gpr[9] & want_ecx, want_ecx, "SSE3/SSSE3/SSE4.2 are advertised");
    cr_assert_eq(v.st.gpr[9] & ((1u << 26) | (1u << 27) | (1u << 28)), 0,
                 "XSAVE/OSXSAVE/AVX are not advertised");
    vm_fini(&v);
    struct hvp_cpuid_entry bad = {1, 0, 0, 0, 1u << 28 /* AVX */, 0, 0};
    struct hvp_cpu_config cfg = {
        .size = sizeof cfg, .model = HVP_CPU_MODEL_USER64, .cpuid = &bad, .ncpuid = 1};
    struct hvp_cpu *c;
    cr_assert_eq(hvp_cpu_create(&cfg, &c), -EINVAL);
}

/* ---- random bytes never crash the host ---- */

Test(cpu, random_bytes_end_in_exits)
{
    struct vm v;
    static const uint8_t nop[] = {0x90};
    vm_init(&v, nop, nop + 1);
    uint64_t seed = 0x1234567;
    for (int round = 0; round < 3000; round++) {
        for (int i = 0; i < 0x4000; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            v.code[i] = (uint8_t)(seed >> 56);
        }
        hvp_cpu_invalidate_code(v.cpu, CODE, 0x4000);
        memset(&v.st.gpr, 0, sizeof v.st.gpr);
        v.st.gpr[4] = STACK - 0x100;
        v.st.gpr[3] = DATA;
        v.st.gpr[6] = DATA + 0x100;
        v.st.gpr[7] = DATA + 0x200;
        v.st.rip = CODE + (seed >> 20) % 0x3000;
        v.st.rflags = 0x202;
        vm_set(&v);
        cr_assert_eq(hvp_cpu_run(v.cpu, 2000, &v.ex), 0);
        cr_assert(v.ex.reason == HVP_CPU_EXIT_BUDGET || v.ex.reason == HVP_CPU_EXIT_EXCEPTION ||
                      v.ex.reason == HVP_CPU_EXIT_SYSCALL,
                  "reason %u", v.ex.reason);
    }
    vm_fini(&v);
}

/* ---- SSE ---- */

SNIP(s_sse,
     "mov rax, 0x200000\n movdqu xmm0, [rax+1]\n movdqa [rax+0x20], xmm0\n"
     "mov ecx, 10\n cvtsi2sd xmm1, ecx\n mov ecx, 4\n cvtsi2sd xmm2, ecx\n divsd xmm1, xmm2\n"
     "cvttsd2si edx, xmm1\n movsd [rax+0x40], xmm1\n xorpd xmm3, xmm3\n divsd xmm1, xmm3\n");
SNIP(s_sse_align, "mov rax, 0x200008\n movaps xmm0, [rax]\n");

Test(cpu, sse_moves_arith_and_xm)
{
    struct vm v;
    RUN_SNIP(&v, s_sse);
    for (int i = 0; i < 32; i++)
        v.data[i] = (uint8_t)i;
    v.st.fpu.mxcsr = 0x1f80 & ~0x200u; /* #Z unmasked */
    vm_set(&v);
    vm_run(&v, 0);
    cr_assert_eq(memcmp(v.data + 0x20, v.data + 1, 16), 0);
    cr_assert_eq(v.st.gpr[2], 2); /* trunc(10 / 4) */
    double q;
    memcpy(&q, v.data + 0x40, 8);
    cr_assert_eq(q, 2.5);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_EXCEPTION);
    cr_assert_eq(v.ex.u.exception.vector, 19, "#XM for an unmasked divide by zero");
    memcpy(&q, v.st.fpu.xmm[1], 8);
    cr_assert_eq(q, 2.5, "the destination is unchanged");
    cr_assert(v.st.fpu.mxcsr & 0x4, "ZE flag set");
    vm_fini(&v);

    RUN_SNIP(&v, s_sse_align);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 13, "movaps from a misaligned address");
    vm_fini(&v);
}

/* ---- more edges ---- */

SNIP(s_jmp_nc, "mov rax, 0x0000800000000000\n jmp rax\n");
SNIP(s_wrap, "mov ebx, 0xfffffff0\n mov ecx, 0x200010\n mov eax, [ebx+ecx]\n"
             "mov rsi, 0x10\n mov word ptr [rsi*2+0x1ffff0], 0x1234\n"
             "push 7\n pop ax\n pop ax\n push ax\n syscall\n");
SNIP(s_back, "std\n mov rdi, 0x200038\n mov rax, 0x5555\n mov ecx, 4\n rep stosq\n"
             "mov rsi, 0x200038\n mov rdi, 0x201038\n mov ecx, 8\n repe cmpsq\n mov r8, rcx\n"
             "mov rsi, 0x200003\n mov ecx, 3\n rep lodsb\n cld\n mov r9, rsi\n syscall\n");
SNIP(s_smc_rep, "lea rsi, [rip + src]\n lea rdi, [rip + dst]\n mov ecx, 5\n rep movsb\n"
                "dst: mov eax, 1\n syscall\n src: mov eax, 3\n");

Test(cpu, edges)
{
    struct vm v;
    RUN_SNIP(&v, s_jmp_nc);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 13, "jump to a non-canonical address");
    cr_assert_eq(v.st.rip, CODE + 10, "RIP at the jmp");
    vm_fini(&v);

    static const uint8_t lock_reg[] = {0xf0, 0x01, 0xd8};
    vm_init(&v, lock_reg, lock_reg + 3);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 6, "LOCK with a register destination is #UD");
    vm_fini(&v);

    RUN_SNIP(&v, s_wrap);
    memcpy(v.data, "\x11\x22\x33\x44", 4);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_wrap));
    cr_assert_eq(v.st.gpr[0] & 0xffff, 0x0000, "pop ax (the high word of the pushed 7)");
    cr_assert_eq(v.st.gpr[4], STACK - 6, "push imm: 8 bytes, two 16-bit pops, one 16-bit push");
    cr_assert_eq((v.st.gpr[0] >> 16) & 0xffff, 0x4433, "addr32 wrapped to DATA");
    cr_assert_eq(v.data[0x10] | v.data[0x11] << 8, 0x1234);
    vm_fini(&v);

    RUN_SNIP(&v, s_back);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_back));
    uint64_t *q = (uint64_t *)v.data;
    for (int i = 4; i < 8; i++)
        cr_assert_eq(q[i], 0x5555);
    cr_assert_eq(q[3], 0);
    cr_assert_eq(v.st.gpr[8], 7, "repe cmpsq stops at the first difference (backwards)");
    cr_assert_eq(v.st.gpr[9], DATA);
    vm_fini(&v);

    RUN_SNIP(&v, s_smc_rep);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.reason, HVP_CPU_EXIT_SYSCALL);
    cr_assert_eq(v.st.gpr[0], 3, "code copied over by rep movsb runs");
    vm_fini(&v);
}

Test(cpu, instruction_across_pages)
{
    struct vm v;
    static const uint8_t nop[] = {0x90};
    vm_init(&v, nop, nop + 1);
    /* mov eax, 0x12345678 straddling the 0x1000 boundary, then syscall */
    static const uint8_t mov[] = {0xb8, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x05};
    memcpy(v.code + 0x1000 - 2, mov, sizeof mov);
    v.st.rip = CODE + 0x1000 - 2;
    vm_set(&v);
    vm_run(&v, 0);
    expect_syscall(&v, CODE + 0x1000 + 5);
    cr_assert_eq(v.st.gpr[0], 0x12345678);
    /* the same at the end of the mapping: the fetch of the second page faults */
    memcpy(v.code + 0x4000 - 2, mov, 2);
    v.st.rip = CODE + 0x4000 - 2;
    vm_set(&v);
    vm_run(&v, 0);
    cr_assert_eq(v.ex.u.exception.vector, 14);
    cr_assert_eq(v.ex.u.exception.cr2, CODE + 0x4000);
    cr_assert_eq(v.st.rip, CODE + 0x4000 - 2);
    vm_fini(&v);
}

SNIP(s_lock_misaligned,
     "mov rbx, 0x200001\n lock inc qword ptr [rbx]\n lock xadd [rbx+8], eax\n"
     "mov eax, 5\n lock cmpxchg [rbx+3], ecx\n xchg [rbx+0x21], rdx\n"
     "lock bts dword ptr [rbx+0x41], 3\n mov rbx, 0x200ffd\n lock inc dword ptr [rbx]\n syscall\n");

Test(cpu, lock_misaligned_and_split)
{
    struct vm v;
    RUN_SNIP(&v, s_lock_misaligned);
    v.st.gpr[0] = 2;
    v.st.gpr[2] = 0x77;
    vm_set(&v);
    vm_run(&v, 0);
    expect_syscall(&v, SYSCALL_AT(s_lock_misaligned));
    uint64_t x;
    memcpy(&x, v.data + 1, 8);
    cr_assert_eq(x, 1);
    memcpy(&x, v.data + 0x22, 8);
    cr_assert_eq(x, 0x77);
    cr_assert_eq(v.data[0x42], 8);
    uint32_t y;
    memcpy(&y, v.data + 0xffd, 4); /* split across two pages */
    cr_assert_eq(y, 1);
    vm_fini(&v);
}
