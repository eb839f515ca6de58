/* MIPS of the software CPU on small integer loops. Not a test: prints
 * "name: N instructions in T s = M MIPS". Usage: bench_cpu [scale] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hvp/cpu.h"

#define SNIP(name, text)                                                                           \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.att_syntax prefix\n.popsection\n")

/* a counted loop with loads, stores, ALU and a compare-and-branch */
SNIP(b_loop, "mov rcx, rdi\n mov rsi, 0x200000\n xor eax, eax\n"
             "1: mov rdx, [rsi + 8]\n add rax, rdx\n xor rdx, rax\n mov [rsi + 16], rdx\n"
             "inc rdx\n and rdx, 0xff\n add rax, rdx\n dec rcx\n jnz 1b\n syscall\n");

/* a sieve of Eratosthenes over 64 KiB, byte loads and stores, inner loops */
SNIP(b_sieve,
     "mov r15, rdi\n"
     "0: mov rdi, 0x200000\n mov ecx, 65536\n mov al, 1\n rep stosb\n"
     "mov ebx, 2\n"
     "1: cmp byte ptr [0x200000 + rbx], 0\n je 3f\n"
     "lea rdx, [rbx + rbx]\n"
     "2: cmp rdx, 65536\n jae 3f\n mov byte ptr [0x200000 + rdx], 0\n add rdx, rbx\n jmp 2b\n"
     "3: inc rbx\n cmp rbx, 256\n jb 1b\n dec r15\n jnz 0b\n syscall\n");

/* call/ret and push/pop */
SNIP(b_call, "mov rcx, rdi\n1: call 2f\n dec rcx\n jnz 1b\n syscall\n"
             "2: push rbx\n mov rbx, rcx\n add rbx, rbx\n pop rbx\n ret\n");

/* CPU time of this thread: the machines are shared, wall time is noisy */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(const char *name, const uint8_t *code, const uint8_t *end, uint64_t arg)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    struct hvp_cpu *cpu;
    if (hvp_cpu_create(&cfg, &cpu)) {
        fprintf(stderr, "create failed\n");
        exit(1);
    }
    uint8_t *mem = mmap(NULL, 0x400000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(mem + 0x100000, code, (size_t)(end - code));
    hvp_cpu_map(cpu, 0x100000, 0x1000, mem + 0x100000, 7);
    hvp_cpu_map(cpu, 0x200000, 0x200000, mem + 0x200000, 3);
    struct hvp_cpu_state st;
    hvp_cpu_get_state(cpu, &st);
    st.rip = 0x100000;
    st.gpr[4] = 0x3ff000;
    st.gpr[7] = arg;
    hvp_cpu_set_state(cpu, &st);
    struct hvp_cpu_exit ex;
    double t0 = now();
    hvp_cpu_run(cpu, 0, &ex);
    double t = now() - t0;
    struct hvp_cpu_stats s;
    hvp_cpu_get_stats(cpu, &s);
    printf("%-6s: %llu instructions in %.3f s CPU = %.1f MIPS (exit %u)\n", name,
           (unsigned long long)s.instructions, t, s.instructions / t / 1e6, ex.reason);
    hvp_cpu_destroy(cpu);
    munmap(mem, 0x400000);
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    bench("loop", b_loop, b_loop_end, (uint64_t)(20e6 * scale));
    bench("sieve", b_sieve, b_sieve_end, (uint64_t)(20 * scale) + 1);
    bench("call", b_call, b_call_end, (uint64_t)(10e6 * scale));
    return 0;
}
