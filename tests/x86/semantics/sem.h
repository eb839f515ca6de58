/* Semantic test of the software CPU against the host CPU: shared types.
 *
 * A case is one instruction with one input state. The native runner executes
 * it on the host in a sandbox process, the hvp runner on hvp's CPU; both
 * produce a struct sem_out that the harness compares.
 */
#ifndef SEM_H
#define SEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed guest addresses, identical natively and in hvp (low, so that the
 * native prologue can address its state block with absolute disp32). */
#define SEM_STATE_ADDR  0x10000000ull /* native only: the sandbox's state block */
#define SEM_CODE_ADDR   0x10010000ull
#define SEM_DATA_ADDR   0x10020000ull
#define SEM_GS_BASE     0x1000ull /* GS base on both sides: gs: operands are tested too */
#define SEM_PAGE        4096u
#define SEM_DATA_SIZE   4096u
#define SEM_INSN_OFF    0x800u /* the instruction under test: CODE + this */
#define SEM_INSN_ADDR   (SEM_CODE_ADDR + SEM_INSN_OFF)
#define SEM_BRANCH_DISP 32 /* taken branches land this far past the instruction */

/* RFLAGS bits. */
#define FL_CF     0x001u
#define FL_PF     0x004u
#define FL_AF     0x010u
#define FL_ZF     0x040u
#define FL_SF     0x080u
#define FL_DF     0x400u
#define FL_OF     0x800u
#define FL_STATUS (FL_CF | FL_PF | FL_AF | FL_ZF | FL_SF | FL_OF)

/* FXSAVE image offsets. */
#define FX_FCW    0
#define FX_FSW    2
#define FX_FTW    4
#define FX_MXCSR  24
#define FX_ST(i)  (32 + 16 * (i))
#define FX_XMM(i) (160 + 16 * (i))

struct sem_state {
    uint64_t gpr[16]; /* rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
    uint64_t rip;
    uint64_t rflags;
    uint8_t fx[512] __attribute__((aligned(16))); /* FXSAVE layout */
};

/* A result: the state after the instruction, or at the fault. */
struct sem_out {
    struct sem_state st;
    int vector; /* -1: no exception; 0..31: exception; SEM_V_* otherwise */
    int signo;  /* native: the signal */
    uint64_t err, addr;
    uint8_t data[SEM_DATA_SIZE];
};
#define SEM_V_NONE     (-1)
#define SEM_V_CRASH    256 /* the native sandbox died */
#define SEM_V_INTERNAL 257 /* hvp: HVP_CPU_EXIT_INTERNAL or an API error */
#define SEM_V_OTHER    258 /* hvp: an exit other than budget/exception */

struct sem_case {
    uint8_t code[16];
    uint8_t len;
    struct sem_state in;
    uint8_t data[SEM_DATA_SIZE];
};

/* What to compare, per case (undefined results are masked). */
struct sem_mask {
    uint32_t flags;    /* RFLAGS bits compared */
    uint16_t gpr_skip; /* GPRs whose value is undefined */
    uint16_t fsw;      /* x87 status bits compared */
    bool st_approx;    /* reserved */
    /* data-page byte ranges not compared (implementation-specific fields of
     * stored x87/SSE environments: FIP/FDP/FOP, MXCSR_MASK, reserved) */
    struct {
        uint16_t off, len;
    } dskip[4];
};

/* ---- native runner (native.c) ---- */
struct sem_native;
/* Starts the sandbox; NULL with *why set when the host cannot run it. */
struct sem_native *sem_native_start(unsigned batch_max, const char **why);
/* Runs cases[0..n) natively into out[0..n); starts the batch and returns at
 * once (the sandbox runs in parallel); sem_native_wait() completes it. */
void sem_native_submit(struct sem_native *nat, const struct sem_case *cases, unsigned n);
void sem_native_wait(struct sem_native *nat, struct sem_out *out);
void sem_native_stop(struct sem_native *nat);
/* Sandbox restarts so far (each one is a case the sandbox died on). */
unsigned sem_native_restarts(const struct sem_native *nat);

/* ---- random numbers (xoshiro256**) ---- */
struct sem_rng {
    uint64_t s[4];
};
static inline uint64_t sem_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}
static inline uint64_t sem_rand(struct sem_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = sem_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sem_rotl(s[3], 45);
    return res;
}
static inline void sem_seed(struct sem_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}
/* Uniform in [0, n). */
static inline uint64_t sem_below(struct sem_rng *r, uint64_t n)
{
    return n ? sem_rand(r) % n : 0;
}

/* ---- templates (templates.c) ---- */
struct sem_tmpl;
/* Builds the template table; returns the number of templates. */
unsigned sem_tmpl_init(void);
const char *sem_tmpl_name(unsigned t);
const char *sem_tmpl_mnemonic(unsigned t);
/* Whether the host CPU has what template t needs. */
bool sem_tmpl_host_ok(unsigned t);
/* Whether hvp's #UD counts as a mismatch even where the host faults
 * otherwise (privileged instructions: the host's #GP is the answer). */
bool sem_tmpl_strict(unsigned t);
/* Generates case number k of template t for seed; fills *c and *m. */
void sem_tmpl_gen(unsigned t, uint64_t seed, uint64_t k, struct sem_case *c, struct sem_mask *m);

#endif
