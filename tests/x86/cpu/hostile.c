/* Hostile code: random bytes executed on the software CPU, user-mode style,
 * until at least N instructions have retired (default one million). Every
 * run must end in an exit the embedder understands (an exception, a system
 * call, the budget) — never a host crash, hang or sanitizer report.
 *
 *   hostile [--instructions N] [--seed S]
 *
 * Each round refills part of the code with random bytes (some of it biased
 * towards common one-byte opcodes and prefixes so that runs get longer),
 * randomises the registers (often pointing into mapped memory), picks a
 * random entry point and runs with a budget. Rewriting code that the CPU has
 * decoded exercises self-modifying-code invalidation too. Exits 0 and prints
 * "N passed, 0 failed" on success; 1 with the seed and round on failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "hvp/cpu.h"

#define CODE  0x100000ull
#define DATA  0x200000ull
#define NCODE 0x4000u
#define NDATA 0x8000u

static uint64_t next(uint64_t *s)
{
    /* xorshift64*: fast, seedable, good enough to pick bytes */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t random_value(uint64_t *s)
{
    switch (next(s) % 6) {
    case 0: return DATA + next(s) % NDATA;             /* a pointer into data */
    case 1: return CODE + next(s) % NCODE;             /* a pointer into code */
    case 2: return next(s) % 64;                       /* a small count */
    case 3: return (uint64_t)-(int64_t)(next(s) % 64); /* a small negative */
    default: return next(s);
    }
}

int main(int argc, char **argv)
{
    uint64_t want = 1000000, seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--instructions") && i + 1 < argc)
            want = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else {
            fprintf(stderr, "usage: hostile [--instructions N] [--seed S]\n");
            return 2;
        }
    }
    printf("hostile: seed %" PRIu64 ", until %" PRIu64 " instructions\n", seed, want);

    struct hvp_cpu *cpu;
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    if (hvp_cpu_create(&cfg, &cpu)) {
        fprintf(stderr, "hostile: cannot create a CPU\n");
        return 1;
    }
    uint8_t *code = mmap(NULL, NCODE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *data = mmap(NULL, NDATA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (code == MAP_FAILED || data == MAP_FAILED ||
        hvp_cpu_map(cpu, CODE, NCODE, code, HVP_CPU_PROT_READ | HVP_CPU_PROT_WRITE |
                                                HVP_CPU_PROT_EXEC) ||
        hvp_cpu_map(cpu, DATA, NDATA, data, HVP_CPU_PROT_READ | HVP_CPU_PROT_WRITE)) {
        fprintf(stderr, "hostile: cannot map guest memory\n");
        return 1;
    }

    /* Opcodes that keep a random run going a little longer. */
    static const uint8_t common[] = {0x48, 0x89, 0x8b, 0x01, 0x29, 0x31, 0x39, 0x85, 0x0f, 0x66,
                                     0xf3, 0x83, 0x50, 0x58, 0x90, 0xc1, 0xd1, 0xff, 0x74, 0x75};
    uint64_t s = seed | 1, rounds = 0, exits[16] = {0};
    struct hvp_cpu_stats stats = {0};
    while (stats.instructions < want) {
        size_t off = next(&s) % NCODE, n = 1 + next(&s) % 256;
        for (size_t i = 0; i < n && off + i < NCODE; i++)
            code[off + i] = (next(&s) & 3) ? (uint8_t)next(&s)
                                           : common[next(&s) % sizeof common];
        hvp_cpu_invalidate_code(cpu, CODE + off, n);
        if (!(next(&s) % 64))
            memset(data, (int)(next(&s) & 0xff), NDATA);

        struct hvp_cpu_state st;
        hvp_cpu_get_state(cpu, &st);
        for (int r = 0; r < 16; r++)
            st.gpr[r] = random_value(&s);
        st.gpr[4] = DATA + NDATA / 2 + (next(&s) % 256) * 8; /* a usable stack */
        st.rip = CODE + next(&s) % NCODE;
        st.rflags = (next(&s) & 0x8d5) | 2;
        hvp_cpu_set_state(cpu, &st);

        struct hvp_cpu_exit ex;
        int rc = hvp_cpu_run(cpu, 1 + next(&s) % 2000, &ex);
        rounds++;
        if (rc || ex.reason == HVP_CPU_EXIT_INTERNAL || ex.reason >= 16) {
            printf("FAIL: seed %" PRIu64 " round %" PRIu64 ": run returned %d, exit %u: %s\n",
                   seed, rounds, rc, ex.reason, hvp_cpu_error(cpu));
            printf("0 passed, 1 failed\n");
            return 1;
        }
        exits[ex.reason]++;
        hvp_cpu_get_stats(cpu, &stats);
    }
    printf("hostile: %" PRIu64 " instructions in %" PRIu64 " runs: %" PRIu64 " exceptions, %" PRIu64
           " system calls, %" PRIu64 " budget ends, %" PRIu64 " other; %" PRIu64
           " code invalidations\n",
           stats.instructions, rounds, exits[HVP_CPU_EXIT_EXCEPTION], exits[HVP_CPU_EXIT_SYSCALL],
           exits[HVP_CPU_EXIT_BUDGET],
           rounds - exits[HVP_CPU_EXIT_EXCEPTION] - exits[HVP_CPU_EXIT_SYSCALL] -
               exits[HVP_CPU_EXIT_BUDGET],
           stats.code_invalidations);
    hvp_cpu_destroy(cpu);
    munmap(code, NCODE);
    munmap(data, NDATA);
    printf("1 passed, 0 failed\n");
    return 0;
}
