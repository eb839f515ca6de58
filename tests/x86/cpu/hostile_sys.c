/* Hostile system guests: random bytes executed by the software CPU's
 * system model in long mode (and the legacy modes), over random page tables, descriptor tables,
 * TSS, control-register bits and register state, until at least N
 * instructions have retired. Every run must end in an exit the embedder
 * understands (the budget, an exception exit, a shutdown, I/O, MMIO, HLT
 * — which the harness completes and goes on), never a host crash, hang
 * (a watchdog thread kicks, then aborts) or sanitizer report.
 *
 *   hostile_sys [--instructions N] [--seed S] [--strict]
 *
 * Guest-physical memory: RAM 0..4 MiB (page tables, GDT, IDT, TSS, code,
 * stacks all live there, so random stores rewrite them too), a read-only
 * "ROM" at 4 MiB whose host memory is read-only too (the CPU must never
 * write it, A/D bits included: now and then the PML4 sits there), and
 * nothing else (MMIO). Each round builds a fresh machine state from the
 * seed: a mostly-valid identity map of RAM (4 KiB or 2 MiB pages, also
 * aliased in the high half) with random flag flips, reserved bits,
 * large pages, NX, and random entries pointing anywhere; a GDT with the
 * usual selectors plus garbage; an IDT of mostly-valid gates (random IST,
 * DPL, targets) and garbage; a TSS with random stacks; CR0/CR4/EFER bits
 * the CPU accepts in long mode; CPL 0 or 3; random registers and RFLAGS;
 * random code. Four rounds in ten then turn the state into a legacy
 * mode: compatibility mode, 32- or 16-bit protected mode (now and then
 * with CR0.PG: PAE or, without CR4.PAE, 32-bit paging over the same
 * random tables), or real mode (big real mode too). Several CPUs with different exception-exit
 * bitmaps take turns. INTERNAL exits (the CPU refusing a mode it does not implement
 * yet) are counted by message and allowed unless --strict.
 * Prints the seed first; on failure the seed and round to replay. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hvp/cpu.h"

#define RAM_SIZE  0x400000ull /* 4 MiB */
#define ROM_GPA   0x400000ull
#define ROM_SIZE  0x10000ull
#define NCPU      3
#define MAX_EXITS 64 /* per round */
#define WATCHDOG  10 /* seconds one hvp_cpu_run may take before a kick */

#define P  1ull
#define W  2ull
#define U  4ull
#define PS 0x80ull
#define NX (1ull << 63)

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static bool chance(uint64_t *s, unsigned percent)
{
    return next(s) % 100 < percent;
}

struct world {
    uint8_t *ram, *rom;
    uint64_t s;
    uint64_t high;                 /* the high-half alias base (0: none) */
    uint64_t code_lo, code_hi;     /* physical code window */
    uint64_t pml4, gdt, idt, tss;  /* physical addresses */
    uint16_t gdt_limit, idt_limit; /* as loaded */
};

static uint64_t *q(struct world *w, uint64_t pa)
{
    return (uint64_t *)(void *)(w->ram + (pa & (RAM_SIZE - 8)));
}

static uint64_t rand_page(struct world *w)
{
    return (next(&w->s) % (RAM_SIZE / 4096)) * 4096;
}

/* A page for an entry to point to: RAM, now and then the ROM or nothing */
static uint64_t rand_target(struct world *w)
{
    uint64_t r = next(&w->s) % 20;
    if (r == 0) return ROM_GPA + (next(&w->s) % (ROM_SIZE / 4096)) * 4096;
    if (r == 1) return 0x10000000 + rand_page(w); /* unbacked */
    return rand_page(w);
}

/* A pointer the guest will likely use: into RAM (identity or high alias),
 * the ROM, MMIO space, or anything. */
static uint64_t rand_ptr(struct world *w)
{
    uint64_t s = next(&w->s) % 10, off = next(&w->s) % RAM_SIZE;
    switch (s) {
    case 0: return ROM_GPA + off % ROM_SIZE;
    case 1: return 0xfee00000 + off % 0x1000; /* nothing there: MMIO */
    case 2: return next(&w->s);               /* anything, often non-canonical */
    case 3:
    case 4: return w->high ? w->high + off : off;
    default: return off;
    }
}

/* Random flag noise on a paging entry: usually none. */
static uint64_t noise(struct world *w, uint64_t e, bool leaf)
{
    if (chance(&w->s, 3)) e &= ~P;
    if (chance(&w->s, 5)) e &= ~W;
    if (chance(&w->s, 6)) e ^= U;
    if (chance(&w->s, 4)) e |= NX;
    if (chance(&w->s, 2)) e |= 1ull << (40 + next(&w->s) % 12); /* reserved/high bits */
    if (!leaf && chance(&w->s, 1)) e |= PS;
    if (chance(&w->s, 10)) e |= 0x60 | (leaf ? 0x100 : 0); /* A, D, G */
    return e;
}

/* Identity map of RAM (and the ROM) below 1 GiB, maybe aliased in the
 * high half, with noise; then random entries anywhere. */
static void build_paging(struct world *w)
{
    uint64_t pml4 = rand_page(w), pdpt = rand_page(w), pd = rand_page(w);
    uint64_t pt[3] = {rand_page(w), rand_page(w), rand_page(w)};
    if (chance(&w->s, 80)) { /* clean tables most of the time */
        memset(q(w, pml4), 0, 4096);
        memset(q(w, pdpt), 0, 4096);
        memset(q(w, pd), 0, 4096);
    }
    w->pml4 = pml4;
    *q(w, pml4) = noise(w, pdpt | P | W | U, false);
    w->high = chance(&w->s, 50) ? 0xffff800000000000ull : 0;
    if (w->high) q(w, pml4)[256] = noise(w, pdpt | P | W | U, false);
    *q(w, pdpt) = noise(w, pd | P | W | U, false);
    if (chance(&w->s, 5)) /* a 1 GiB page instead */
        *q(w, pdpt) = noise(w, 0 | P | W | U | PS, true);
    for (unsigned i = 0; i < 3; i++) { /* 0..4 MiB in 2 MiB pages or PTs; 4..6 MiB: the ROM */
        if (i < 2 && chance(&w->s, 30)) {
            q(w, pd)[i] = noise(w, ((uint64_t)i << 21) | P | W | U | PS, true);
            continue;
        }
        q(w, pd)[i] = noise(w, pt[i] | P | W | U, false);
        for (unsigned j = 0; j < 512; j++) {
            uint64_t pa = ((uint64_t)i << 21) + ((uint64_t)j << 12);
            if (i == 2) pa = ROM_GPA + (pa & (ROM_SIZE - 1));
            q(w, pt[i])[j] = chance(&w->s, 2) ? noise(w, rand_target(w) | P | W | U, true)
                                              : noise(w, pa | P | W | U, true);
        }
    }
    /* random entries in random tables */
    unsigned n = (unsigned)(next(&w->s) % 16);
    for (unsigned k = 0; k < n; k++) {
        uint64_t tables[] = {pml4, pdpt, pd, pt[0], pt[1]};
        uint64_t t = tables[next(&w->s) % 5];
        q(w, t)[next(&w->s) % 512] =
            chance(&w->s, 50) ? noise(w, rand_target(w) | P | W | U, true) : next(&w->s);
    }
}

static uint64_t code_desc(unsigned dpl, bool l)
{
    return 0x00009a000000ffffull | ((uint64_t)dpl << 45) | (1ull << 47) |
           (l ? 1ull << 53 : 1ull << 54) | (0xfull << 48) | (1ull << 55);
}

static uint64_t data_desc(unsigned dpl)
{
    return 0x00cf92000000ffffull | ((uint64_t)dpl << 45) | (1ull << 47);
}

/* GDT: null, 0x08 code64 DPL0, 0x10 data DPL0, 0x18 code32 DPL3,
 * 0x20 data DPL3, 0x28 code64 DPL3, 0x30 TSS, then garbage. */
static void build_tables(struct world *w)
{
    w->gdt = rand_page(w) + (next(&w->s) % 64) * 8;
    if (w->gdt + 0x400 > RAM_SIZE) w->gdt = 0x1000;
    uint64_t *g = q(w, w->gdt);
    w->tss = (next(&w->s) % (RAM_SIZE - 0x100)) & ~3ull;
    g[0] = 0;
    g[1] = code_desc(0, true);
    g[2] = data_desc(0);
    g[3] = code_desc(3, false);
    g[4] = data_desc(3);
    g[5] = code_desc(3, true);
    g[6] = 0x67 | ((w->tss & 0xffffff) << 16) | (0x89ull << 40) | ((w->tss >> 24) << 56);
    g[7] = w->tss >> 32;
    for (unsigned i = 8; i < 32; i++)
        g[i] = chance(&w->s, 50)
                   ? next(&w->s)
                   : (chance(&w->s, 50) ? code_desc((unsigned)next(&w->s) & 3, chance(&w->s, 70))
                                        : data_desc((unsigned)next(&w->s) & 3));
    for (unsigned i = 1; i < 8; i++)
        if (chance(&w->s, 3)) g[i] = next(&w->s);
    w->gdt_limit = chance(&w->s, 90) ? 0xff : (uint16_t)next(&w->s);
    /* TSS: RSP0..2, IST1..7 into RAM (16-aligned) or anywhere */
    for (unsigned i = 0; i < 10; i++) {
        uint64_t v = chance(&w->s, 85) ? ((next(&w->s) % RAM_SIZE) & ~15ull) + (w->high ? 0 : 0)
                                       : rand_ptr(w);
        if (w->high && chance(&w->s, 30)) v += w->high;
        memcpy(w->ram + ((w->tss + (i < 3 ? 4 + i * 8 : 0x24 + (i - 3) * 8)) & (RAM_SIZE - 1)), &v,
               8);
    }
    uint16_t iomap = chance(&w->s, 50) ? 0x68 : (uint16_t)next(&w->s);
    memcpy(w->ram + ((w->tss + 0x66) & (RAM_SIZE - 1)), &iomap, 2);
    /* IDT: 256 gates */
    w->idt = rand_page(w);
    if (w->idt + 4096 > RAM_SIZE) w->idt = 0x2000;
    for (unsigned v = 0; v < 256; v++) {
        uint64_t *gate = q(w, w->idt + v * 16);
        if (chance(&w->s, 10)) {
            gate[0] = next(&w->s);
            gate[1] = next(&w->s);
            continue;
        }
        uint64_t t = w->code_lo + next(&w->s) % (w->code_hi - w->code_lo);
        if (w->high && chance(&w->s, 20)) t += w->high;
        if (chance(&w->s, 3)) t = rand_ptr(w);
        uint64_t sel = chance(&w->s, 95) ? 0x08 : (next(&w->s) % 16) * 8;
        uint64_t type = chance(&w->s, 70) ? 0xe : 0xf;
        uint64_t dpl = chance(&w->s, 70) ? 0 : 3;
        uint64_t ist = chance(&w->s, 60) ? 0 : next(&w->s) % 8;
        gate[0] = (t & 0xffff) | (sel << 16) | (ist << 32) | (type << 40) | (dpl << 45) |
                  ((uint64_t)chance(&w->s, 97) << 47) | ((t >> 16 & 0xffff) << 48);
        gate[1] = t >> 32;
    }
    w->idt_limit = chance(&w->s, 90) ? 0xfff : (uint16_t)next(&w->s);
}

static const uint8_t common[] = {0x48, 0x89, 0x8b, 0x01, 0x29, 0x31, 0x39, 0x85, 0x0f, 0x66,
                                 0xf3, 0x83, 0x50, 0x58, 0x90, 0xc1, 0xd1, 0xff, 0x74, 0x75,
                                 0xcd, 0xcf, 0x0f, 0xfa, 0xfb, 0xe4, 0xe6, 0xec, 0xee, 0x8e};
static const uint8_t sys0f[] = {0x00, 0x01, 0x05, 0x07, 0x20, 0x22, 0x30, 0x32, 0x34, 0x35, 0xa2};

static void fill_code(struct world *w, struct hvp_cpu *const *cpus)
{
    size_t n = 64 + next(&w->s) % 2048;
    uint64_t off = w->code_lo + next(&w->s) % (w->code_hi - w->code_lo);
    for (size_t i = 0; i < n && off + i < w->code_hi; i++) {
        uint64_t r = next(&w->s) % 16;
        uint8_t b = r < 10   ? (uint8_t)next(&w->s)
                    : r < 14 ? common[next(&w->s) % sizeof common]
                             : 0x0f;
        w->ram[off + i] = b;
        if (b == 0x0f && i + 1 < n && off + i + 1 < w->code_hi && chance(&w->s, 50))
            w->ram[off + ++i] = sys0f[next(&w->s) % sizeof sys0f];
    }
    for (int c = 0; c < NCPU; c++)
        hvp_cpu_invalidate_code(cpus[c], off, n);
}

static struct hvp_cpu_segment seg(uint16_t sel, uint16_t attr)
{
    return (struct hvp_cpu_segment){0, 0xffffffff, sel, attr};
}

static void random_state(struct world *w, struct hvp_cpu_state *st)
{
    for (int r = 0; r < 16; r++)
        st->gpr[r] = chance(&w->s, 60) ? rand_ptr(w) : next(&w->s) % 256;
    bool user = chance(&w->s, 35);
    st->rip = w->code_lo + next(&w->s) % (w->code_hi - w->code_lo);
    if (w->high && chance(&w->s, 30)) st->rip += w->high;
    st->gpr[4] = ((next(&w->s) % RAM_SIZE) & ~7ull) + (w->high && chance(&w->s, 30) ? w->high : 0);
    st->rflags = 2 | (next(&w->s) & 0x40cd5) | (chance(&w->s, 20) ? 0x3000 : 0) |
                 (chance(&w->s, 2) ? 0x100 : 0); /* arithmetic, DF, AC, IOPL, rarely TF */
    st->cr0 = 0x80000011 | (chance(&w->s, 80) ? 0x10000 : 0) | (chance(&w->s, 80) ? 0x20 : 0) |
              (chance(&w->s, 50) ? 0x2 : 0) | (chance(&w->s, 5) ? 0x8 : 0) |
              (chance(&w->s, 3) ? 0x4 : 0) | (chance(&w->s, 20) ? 0x40000 : 0);
    st->cr4 = 0x20 | (next(&w->s) & 0x3706ff & ~0x20ull & ~0x40000ull); /* no OSXSAVE */
    st->cr3 = chance(&w->s, 2) ? rand_target(w) : w->pml4;
    st->efer = 0x500 | (chance(&w->s, 80) ? 1 : 0) | (chance(&w->s, 80) ? 0x800 : 0);
    st->gdtr = (struct hvp_cpu_table){w->gdt, w->gdt_limit};
    st->idtr = (struct hvp_cpu_table){w->idt, w->idt_limit};
    st->tr = (struct hvp_cpu_segment){w->tss, 0x67, 0x30, 0x8b};
    st->ldtr = (struct hvp_cpu_segment){0, 0, 0, 0x82};
    if (user) {
        st->seg[1] = seg(0x2b, 0xa0fb);
        for (int i = 0; i < 6; i++)
            if (i != 1) st->seg[i] = seg(0x23, 0xc0f3);
    } else {
        st->seg[1] = seg(0x08, 0xa09b);
        for (int i = 0; i < 6; i++)
            if (i != 1) st->seg[i] = seg(0x10, 0xc093);
    }
    st->seg[4].base = chance(&w->s, 30) ? rand_ptr(w) : 0;
    st->seg[5].base = chance(&w->s, 30) ? rand_ptr(w) : 0;
    if (st->seg[4].base >> 47 && st->seg[4].base >> 47 != 0x1ffff) st->seg[4].base = 0;
    if (st->seg[5].base >> 47 && st->seg[5].base >> 47 != 0x1ffff) st->seg[5].base = 0;
    st->kernel_gs_base = 0;
    st->star = (0x18ull << 48) | (0x08ull << 32);
    st->lstar = w->code_lo + next(&w->s) % (w->code_hi - w->code_lo);
    st->sfmask = next(&w->s) & 0x47fd5;
    st->cr2 = 0;
    for (int i = 0; i < 4; i++)
        st->dr[i] = w->code_lo + next(&w->s) % (w->code_hi - w->code_lo);
    st->dr[7] = chance(&w->s, 5) ? (next(&w->s) & 0xffff00ff) | 0x400 : 0x400;
    st->dr[6] = 0xffff0ff0;
    st->interrupt_shadow = 0;
    st->nmi_masked = 0;
}

/* Turns a long-mode state into a legacy one now and then (paging off,
 * or PAE / 32-bit paging over the random tables):
 * compatibility mode, 32- and 16-bit protected mode, real mode. Returns
 * the mode's name for the tally. */
static const char *legacy_mode(struct world *w, struct hvp_cpu_state *st)
{
    uint64_t r = next(&w->s) % 100;
    uint64_t win = w->code_hi - w->code_lo;
    if (r < 60) return "64-bit";
    st->rip = w->code_lo + next(&w->s) % win; /* below 4 GiB, no alias */
    st->gpr[4] &= 0xfffffff0;
    if (r < 70) { /* compatibility mode: a 32-bit code segment in long mode */
        bool user = (st->seg[1].selector & 3) == 3;
        st->seg[1] = seg(user ? 0x1b : 0x08, user ? 0xc0fb : 0xc09b);
        return "compatibility";
    }
    st->efer &= ~0x500ull; /* LME, LMA */
    st->cr0 &= ~0x80000000ull;
    if (chance(&w->s, 5)) st->cr0 |= 0x80000000ull; /* PAE or 32-bit paging */
    if (chance(&w->s, 3)) st->cr4 &= ~0x20ull;
    st->rip &= 0xffffffffu;
    if (r < 90) { /* protected mode, CPL 0 (3 with random DPL 3 descriptors) */
        bool big = r < 85;
        uint16_t cattr = big ? 0xc09b : 0x009b, dattr = big ? 0xc093 : 0x0093;
        st->seg[1] = seg(0x08, cattr);
        if (!big) st->seg[1].limit = 0xffff;
        for (int i = 0; i < 6; i++)
            if (i != 1) st->seg[i] = seg(0x10, dattr);
        if (!big) {
            st->seg[1].base = w->code_lo;
            st->rip = next(&w->s) % (win < 0x10000 ? win : 0x10000);
            st->gpr[4] &= 0xfffe;
        }
        return big ? "32-bit protected" : "16-bit protected";
    }
    /* real mode: CS:IP inside the code window when it is below 1 MiB */
    st->cr0 = 0x60000010 | (st->cr0 & 0x50022); /* NE MP AM WP: still allowed */
    st->efer &= ~0x500ull;
    uint16_t cs = (uint16_t)((w->code_lo & 0xfffff) >> 4);
    st->seg[1] = (struct hvp_cpu_segment){(uint64_t)cs << 4, 0xffff, cs, 0x9b};
    for (int i = 0; i < 6; i++)
        if (i != 1) {
            uint16_t sel = (uint16_t)(next(&w->s) & 0xffff);
            st->seg[i] = (struct hvp_cpu_segment){(uint64_t)sel << 4, 0xffff, sel, 0x93};
            if (chance(&w->s, 10)) st->seg[i].limit = 0xffffffff; /* big real mode */
        }
    st->rip = next(&w->s) % (win < 0x10000 ? win : 0x10000);
    st->gpr[4] &= 0xfffe;
    st->idtr = (struct hvp_cpu_table){chance(&w->s, 80) ? 0 : rand_page(w), 0x3ff};
    st->rflags &= ~0x3000ull;
    return "real";
}

/* ---- watchdog ---- */

struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hvp_cpu *cpu; /* the one running, NULL between runs */
    uint64_t seq;        /* bumped by every run */
    bool stop;
    uint64_t seed, round;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *wd = arg;
    pthread_mutex_lock(&wd->mu);
    while (!wd->stop) {
        uint64_t seq = wd->seq;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += WATCHDOG;
        int rc = 0;
        while (!wd->stop && wd->seq == seq && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&wd->cv, &wd->mu, &dl);
        if (wd->stop || wd->seq != seq || !wd->cpu) continue;
        /* one run took WATCHDOG seconds: kick it, then give up */
        hvp_cpu_kick(wd->cpu);
        dl.tv_sec += WATCHDOG;
        rc = 0;
        while (!wd->stop && wd->seq == seq && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&wd->cv, &wd->mu, &dl);
        if (wd->seq == seq && !wd->stop) {
            printf("FAIL: seed %" PRIu64 " round %" PRIu64
                   ": hvp_cpu_run did not return (a host hang)\n0 passed, 1 failed\n",
                   wd->seed, wd->round);
            fflush(stdout);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

static void wd_enter(struct watchdog *wd, struct hvp_cpu *cpu, uint64_t round)
{
    pthread_mutex_lock(&wd->mu);
    wd->cpu = cpu;
    wd->seq++;
    wd->round = round;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

static void wd_leave(struct watchdog *wd)
{
    pthread_mutex_lock(&wd->mu);
    wd->cpu = NULL;
    wd->seq++;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
}

/* ---- main ---- */

struct tally {
    const char *modes[8];
    uint64_t mode_n[8];
    uint64_t exits[16];
    char internal[8][160];
    uint64_t internal_n[8];
    unsigned ninternal;
    uint64_t kicks;
};

static void note_internal(struct tally *t, const char *msg)
{
    for (unsigned i = 0; i < t->ninternal; i++)
        if (!strcmp(t->internal[i], msg)) {
            t->internal_n[i]++;
            return;
        }
    if (t->ninternal < 8) {
        snprintf(t->internal[t->ninternal], sizeof t->internal[0], "%s", msg);
        t->internal_n[t->ninternal++] = 1;
    }
}

static void note_mode(struct tally *t, const char *mode)
{
    for (unsigned i = 0; i < 8; i++)
        if (!t->modes[i] || !strcmp(t->modes[i], mode)) {
            t->modes[i] = mode;
            t->mode_n[i]++;
            return;
        }
}

int main(int argc, char **argv)
{
    uint64_t want = 1000000, seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    bool strict = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--instructions") && i + 1 < argc)
            want = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--strict"))
            strict = true;
        else {
            fprintf(stderr, "usage: hostile_sys [--instructions N] [--seed S] [--strict]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("hostile_sys: seed %" PRIu64 ", until %" PRIu64 " instructions\n", seed, want);

    struct world w = {.s = (seed ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull};
    if (!w.s) w.s = 1;
    w.ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* the ROM's host memory is read-only too: a CPU write there would be a
     * host fault, so this also checks that A/D updates respect the mapping */
    w.rom = mmap(NULL, ROM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w.ram == MAP_FAILED || w.rom == MAP_FAILED) return 1;
    for (size_t i = 0; i < ROM_SIZE; i++)
        w.rom[i] = (uint8_t)next(&w.s);
    if (mprotect(w.rom, ROM_SIZE, PROT_READ)) return 1;

    struct hvp_cpu *cpus[NCPU];
    const uint32_t bitmaps[NCPU] = {0, 1u << 14 | 1u << 13 | 1u << 8, 0xffffffffu};
    for (int c = 0; c < NCPU; c++) {
        struct hvp_cpu_config cfg = {
            .size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM, .exception_exit_bitmap = bitmaps[c]};
        if (hvp_cpu_create(&cfg, &cpus[c]) || hvp_cpu_map(cpus[c], 0, RAM_SIZE, w.ram, 7) ||
            hvp_cpu_map(cpus[c], ROM_GPA, ROM_SIZE, w.rom, HVP_CPU_PROT_READ | HVP_CPU_PROT_EXEC)) {
            fprintf(stderr, "hostile_sys: cannot create a CPU\n");
            return 1;
        }
    }

    struct watchdog wd = {.seed = seed};
    pthread_mutex_init(&wd.mu, NULL);
    pthread_cond_init(&wd.cv, NULL);
    pthread_t wt;
    if (pthread_create(&wt, NULL, watchdog_main, &wd)) return 1;

    struct tally t = {0};
    uint64_t total = 0, round = 0;
    while (total < want) {
        round++;
        struct hvp_cpu *cpu = cpus[next(&w.s) % NCPU];
        /* a code window of a few pages somewhere in RAM */
        w.code_lo = rand_page(&w);
        w.code_hi = w.code_lo + 0x1000 * (1 + next(&w.s) % 8);
        if (w.code_hi > RAM_SIZE) w.code_hi = RAM_SIZE;
        if (round == 1 || chance(&w.s, 20)) {
            for (size_t i = 0; i < RAM_SIZE; i += 8) {
                uint64_t v = next(&w.s);
                memcpy(w.ram + i, &v, 8);
            }
            for (int c = 0; c < NCPU; c++)
                hvp_cpu_invalidate_code(cpus[c], 0, RAM_SIZE);
        }
        build_paging(&w);
        build_tables(&w);
        fill_code(&w, cpus);
        /* the host rewrote tables too: the CPUs may have cached them */
        for (int c = 0; c < NCPU; c++)
            hvp_cpu_invalidate_code(cpus[c], 0, RAM_SIZE);

        struct hvp_cpu_state st;
        hvp_cpu_get_state(cpu, &st);
        random_state(&w, &st);
        const char *mode = legacy_mode(&w, &st);
        note_mode(&t, mode);
        if (chance(&w.s, 5)) {
            /* the PML4 in the ROM, A bits clear: the walk must not set them
             * (the host memory is read-only: it would be a host fault) */
            mprotect(w.rom, ROM_SIZE, PROT_READ | PROT_WRITE);
            uint64_t *r = (uint64_t *)(void *)w.rom;
            memcpy(r, q(&w, w.pml4), 4096);
            for (int i = 0; i < 512; i++)
                r[i] &= ~0x60ull;
            mprotect(w.rom, ROM_SIZE, PROT_READ);
            for (int c = 0; c < NCPU; c++)
                hvp_cpu_invalidate_code(cpus[c], ROM_GPA, 4096);
            st.cr3 = ROM_GPA;
        }
        if (hvp_cpu_set_state(cpu, &st)) {
            printf("FAIL: seed %" PRIu64 " round %" PRIu64 ": set_state refused: %s\n", seed, round,
                   hvp_cpu_error(cpu));
            return 1;
        }
        uint64_t budget = 500 + next(&w.s) % 5000;
        for (int e = 0; e < MAX_EXITS; e++) {
            struct hvp_cpu_exit ex;
            struct hvp_cpu_stats a, b;
            hvp_cpu_get_stats(cpu, &a);
            wd_enter(&wd, cpu, round);
            int rc = hvp_cpu_run(cpu, budget, &ex);
            wd_leave(&wd);
            hvp_cpu_get_stats(cpu, &b);
            uint64_t ran = b.instructions - a.instructions;
            total += ran;
            budget = budget > ran ? budget - ran : 0;
            if (rc || ex.reason >= 16 || ex.reason == HVP_CPU_EXIT_NONE ||
                ex.reason == HVP_CPU_EXIT_SYSCALL) {
                printf("FAIL: seed %" PRIu64 " round %" PRIu64 ": run returned %d, exit %u: %s\n"
                       "0 passed, 1 failed\n",
                       seed, round, rc, ex.reason, hvp_cpu_error(cpu));
                return 1;
            }
            t.exits[ex.reason]++;
            bool go_on = budget > 0;
            hvp_cpu_get_state(cpu, &st);
            switch (ex.reason) {
            case HVP_CPU_EXIT_IO:
                if (!ex.u.io.write) st.gpr[0] = next(&w.s) & 0xffffffffu;
                break;
            case HVP_CPU_EXIT_MMIO:
                /* drop the access (a read leaves its destination alone) */
                if (ex.u.mmio.size && ex.insn_len)
                    st.rip += ex.insn_len;
                else
                    go_on = false;
                break;
            case HVP_CPU_EXIT_EXCEPTION:
                /* as an embedder that reflects it: sometimes skip the insn */
                if (ex.insn_len && chance(&w.s, 50))
                    st.rip += ex.insn_len;
                else
                    go_on = false;
                break;
            case HVP_CPU_EXIT_HLT: break;
            case HVP_CPU_EXIT_KICK:
                t.kicks++;
                go_on = false;
                break;
            case HVP_CPU_EXIT_INTERNAL:
                note_internal(&t, hvp_cpu_error(cpu));
                if (strict) {
                    printf("FAIL: seed %" PRIu64 " round %" PRIu64 ": INTERNAL: %s\n"
                           "0 passed, 1 failed\n",
                           seed, round, hvp_cpu_error(cpu));
                    return 1;
                }
                go_on = false;
                break;
            default: go_on = false; break; /* BUDGET, SHUTDOWN */
            }
            if (!go_on) break;
            hvp_cpu_set_state(cpu, &st);
        }
    }

    pthread_mutex_lock(&wd.mu);
    wd.stop = true;
    pthread_cond_signal(&wd.cv);
    pthread_mutex_unlock(&wd.mu);
    pthread_join(wt, NULL);

    printf("hostile_sys: %" PRIu64 " instructions in %" PRIu64 " rounds; exits: %" PRIu64
           " budget, %" PRIu64 " exception, %" PRIu64 " shutdown, %" PRIu64 " I/O, %" PRIu64
           " MMIO, %" PRIu64 " HLT, %" PRIu64 " internal, %" PRIu64 " kick\n",
           total, round, t.exits[HVP_CPU_EXIT_BUDGET], t.exits[HVP_CPU_EXIT_EXCEPTION],
           t.exits[HVP_CPU_EXIT_SHUTDOWN], t.exits[HVP_CPU_EXIT_IO], t.exits[HVP_CPU_EXIT_MMIO],
           t.exits[HVP_CPU_EXIT_HLT], t.exits[HVP_CPU_EXIT_INTERNAL], t.kicks);
    printf("hostile_sys: rounds by mode:");
    for (unsigned i = 0; i < 8 && t.modes[i]; i++)
        printf(" %s %" PRIu64, t.modes[i], t.mode_n[i]);
    printf("\n");
    for (unsigned i = 0; i < t.ninternal; i++)
        printf("hostile_sys: internal x%" PRIu64 ": %s\n", t.internal_n[i], t.internal[i]);
    for (int c = 0; c < NCPU; c++)
        hvp_cpu_destroy(cpus[c]);
    munmap(w.ram, RAM_SIZE);
    munmap(w.rom, ROM_SIZE);
    printf("1 passed, 0 failed\n");
    return 0;
}
