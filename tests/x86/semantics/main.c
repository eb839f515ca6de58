/* Semantic test of hvp's software CPU against the host CPU.
 *
 * Every template's cases run natively (native.c) and on hvp's CPU
 * (include/hvp/cpu.h, model USER64, budget 1) with the same inputs; the
 * results are compared: GPRs, RIP, defined flags, the data page, MXCSR,
 * x87 control/status/tags/registers, XMM registers, exception vector.
 * Instructions the CPU does not implement yet (#UD from hvp where the host
 * runs them) are counted per template and listed, but do not fail the run.
 *
 * Exit status: 0 all compared templates passed, 1 mismatches, 2 usage,
 * 77 the native sandbox cannot run here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hvp/cpu.h"
#include "hvp/x86.h"
#include "sem.h"

#define BATCH 256

/* ---- hvp runner ---- */

struct hvpr {
    struct hvp_cpu *cpu;
    uint8_t *code, *data;
    struct hvp_cpu_state base;
    char why[256];
};

static int hvpr_init(struct hvpr *h)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    int rc = hvp_cpu_create(&cfg, &h->cpu);
    if (rc) {
        snprintf(h->why, sizeof h->why, "hvp_cpu_create: %s", strerror(-rc));
        return -1;
    }
    h->code = aligned_alloc(SEM_PAGE, SEM_PAGE);
    h->data = aligned_alloc(SEM_PAGE, SEM_DATA_SIZE);
    if (!h->code || !h->data) return -1;
    memset(h->code, 0xcc, SEM_PAGE);
    rc = hvp_cpu_map(h->cpu, SEM_CODE_ADDR, SEM_PAGE, h->code,
                     HVP_CPU_PROT_READ | HVP_CPU_PROT_EXEC);
    if (!rc)
        rc = hvp_cpu_map(h->cpu, SEM_DATA_ADDR, SEM_DATA_SIZE, h->data,
                         HVP_CPU_PROT_READ | HVP_CPU_PROT_WRITE);
    if (!rc) rc = hvp_cpu_get_state(h->cpu, &h->base);
    if (rc) {
        snprintf(h->why, sizeof h->why, "hvp_cpu_map/get_state: %s (%s)", strerror(-rc),
                 hvp_cpu_error(h->cpu));
        return -1;
    }
    return 0;
}

static void hvpr_fini(struct hvpr *h)
{
    if (h->cpu) hvp_cpu_destroy(h->cpu);
    free(h->code);
    free(h->data);
}

static void fx_to_fpu(const uint8_t *fx, struct hvp_cpu_fpu *f)
{
    memcpy(&f->fcw, fx + FX_FCW, 2);
    memcpy(&f->fsw, fx + FX_FSW, 2);
    f->ftw = fx[FX_FTW];
    memcpy(&f->fop, fx + 6, 2);
    f->fip = f->fdp = 0;
    for (int i = 0; i < 8; i++)
        memcpy(f->st[i], fx + FX_ST(i), 16);
    memcpy(&f->mxcsr, fx + FX_MXCSR, 4);
    for (int i = 0; i < 16; i++)
        memcpy(f->xmm[i], fx + FX_XMM(i), 16);
}

static void fpu_to_fx(const struct hvp_cpu_fpu *f, uint8_t *fx)
{
    memset(fx, 0, 512);
    memcpy(fx + FX_FCW, &f->fcw, 2);
    memcpy(fx + FX_FSW, &f->fsw, 2);
    fx[FX_FTW] = f->ftw;
    memcpy(fx + 6, &f->fop, 2);
    for (int i = 0; i < 8; i++)
        memcpy(fx + FX_ST(i), f->st[i], 10);
    memcpy(fx + FX_MXCSR, &f->mxcsr, 4);
    for (int i = 0; i < 16; i++)
        memcpy(fx + FX_XMM(i), f->xmm[i], 16);
}

static void hvpr_run(struct hvpr *h, const struct sem_case *c, struct sem_out *o)
{
    memset(h->code + SEM_INSN_OFF, 0xcc, 64);
    memcpy(h->code + SEM_INSN_OFF, c->code, c->len);
    hvp_cpu_invalidate_code(h->cpu, SEM_INSN_ADDR, 64);
    memcpy(h->data, c->data, SEM_DATA_SIZE);
    struct hvp_cpu_state st = h->base;
    st.seg[5].base = SEM_GS_BASE;
    memcpy(st.gpr, c->in.gpr, sizeof st.gpr);
    st.rip = c->in.rip;
    st.rflags = c->in.rflags;
    fx_to_fpu(c->in.fx, &st.fpu);
    o->vector = SEM_V_NONE;
    o->signo = 0;
    o->err = o->addr = 0;
    int rc = hvp_cpu_set_state(h->cpu, &st);
    struct hvp_cpu_exit ex;
    memset(&ex, 0, sizeof ex);
    for (int i = 0; !rc && i < 300; i++) {
        rc = hvp_cpu_run(h->cpu, 1, &ex);
        if (rc || ex.reason != HVP_CPU_EXIT_BUDGET) break;
        struct hvp_cpu_state now;
        hvp_cpu_get_state(h->cpu, &now);
        if (now.rip != SEM_INSN_ADDR) break; /* a REP string instruction may take several runs */
    }
    if (!rc) rc = hvp_cpu_get_state(h->cpu, &st);
    if (rc)
        o->vector = SEM_V_INTERNAL;
    else if (ex.reason == HVP_CPU_EXIT_EXCEPTION)
        o->vector = ex.u.exception.vector, o->err = ex.u.exception.error_code,
        o->addr = ex.u.exception.cr2;
    else if (ex.reason == HVP_CPU_EXIT_INTERNAL)
        o->vector = SEM_V_INTERNAL;
    else if (ex.reason != HVP_CPU_EXIT_BUDGET)
        o->vector = SEM_V_OTHER, o->err = ex.reason;
    memcpy(o->st.gpr, st.gpr, sizeof st.gpr);
    o->st.rip = st.rip;
    o->st.rflags = st.rflags;
    fpu_to_fx(&st.fpu, o->st.fx);
    memcpy(o->data, h->data, SEM_DATA_SIZE);
}

/* ---- comparison ---- */

static const char *gprn[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                               "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

static const char *vecname(int v)
{
    static const char *n[32] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
                                "#DF", "?9",  "#TS", "#NP", "#SS", "#GP", "#PF", "?15",
                                "#MF", "#AC", "#MC", "#XM", "#VE", "#CP"};
    static char buf[32];
    if (v == SEM_V_NONE) return "none";
    if (v == SEM_V_CRASH) return "sandbox crash";
    if (v == SEM_V_INTERNAL) return "internal error";
    if (v == SEM_V_OTHER) return "unexpected exit";
    if (v >= 0 && v < 32 && n[v]) return n[v];
    snprintf(buf, sizeof buf, "vector %d", v);
    return buf;
}

struct strbuf {
    char *p;
    size_t len, cap;
};
static void sb(struct strbuf *s, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void sb(struct strbuf *s, const char *f, ...)
{
    va_list ap;
    for (;;) {
        size_t room = s->cap - s->len;
        va_start(ap, f);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? room : 0, f, ap);
        va_end(ap);
        if (n < 0) return;
        if (s->p && (size_t)n < room) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = (s->cap + (size_t)n + 256) * 2;
        char *q = realloc(s->p, cap);
        if (!q) return;
        s->p = q;
        s->cap = cap;
    }
}

static void hex(struct strbuf *s, const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        sb(s, "%02x", p[n - 1 - i]);
}

/* Compares; returns the number of differences, described into s. */
static unsigned compare(const struct sem_out *e, const struct sem_out *g, const struct sem_mask *m,
                        struct strbuf *s)
{
    unsigned n = 0;
    if (e->vector != g->vector) {
        sb(s, "  exception: expected %s", vecname(e->vector));
        if (e->signo) sb(s, " (signal %d)", e->signo);
        sb(s, ", got %s", vecname(g->vector));
        if (g->vector == 14 || g->vector == 13)
            sb(s, " (error code %#" PRIx64 ", address %#" PRIx64 ")", g->err, g->addr);
        sb(s, "\n");
        return 1;
    }
    /* #PF: the faulting address (CR2, si_addr) is what a guest's handler sees. Its page
     * always counts; the byte too where the host names a page start (an access that
     * straddles into the page), not inside a page (FXSAVE on AMD names its last byte). */
    bool same = (e->addr & 0xfff) ? (e->addr >> 12) == (g->addr >> 12) : e->addr == g->addr;
    if (e->vector == 14 && !same)
        n++, sb(s, "  cr2    expected %#" PRIx64 " got %#" PRIx64 "\n", e->addr, g->addr);
    for (int r = 0; r < 16; r++) {
        if ((m->gpr_skip >> r) & 1) continue;
        if (e->st.gpr[r] != g->st.gpr[r])
            n++, sb(s, "  %-6s expected %016" PRIx64 " got %016" PRIx64 "\n", gprn[r], e->st.gpr[r],
                    g->st.gpr[r]);
    }
    if (e->st.rip != g->st.rip)
        n++, sb(s, "  rip    expected %016" PRIx64 " got %016" PRIx64 "\n", e->st.rip, g->st.rip);
    if ((e->st.rflags ^ g->st.rflags) & m->flags)
        n++, sb(s, "  rflags expected %04" PRIx64 " got %04" PRIx64 " (compared bits %04x)\n",
                e->st.rflags & 0xfff, g->st.rflags & 0xfff, m->flags);
    const uint8_t *ef = e->st.fx, *gf = g->st.fx;
    uint16_t a, b;
    memcpy(&a, ef + FX_FCW, 2), memcpy(&b, gf + FX_FCW, 2);
    if (a != b) n++, sb(s, "  fcw    expected %04x got %04x\n", a, b);
    memcpy(&a, ef + FX_FSW, 2), memcpy(&b, gf + FX_FSW, 2);
    if ((a ^ b) & m->fsw)
        n++, sb(s, "  fsw    expected %04x got %04x (compared bits %04x)\n", a, b, m->fsw);
    if (ef[FX_FTW] != gf[FX_FTW])
        n++, sb(s, "  ftw    expected %02x got %02x\n", ef[FX_FTW], gf[FX_FTW]);
    for (int i = 0; i < 8; i++)
        if (memcmp(ef + FX_ST(i), gf + FX_ST(i), 10)) {
            n++;
            sb(s, "  st(%d)  expected ", i);
            hex(s, ef + FX_ST(i), 10);
            sb(s, " got ");
            hex(s, gf + FX_ST(i), 10);
            sb(s, "\n");
        }
    uint32_t ma, mb;
    memcpy(&ma, ef + FX_MXCSR, 4), memcpy(&mb, gf + FX_MXCSR, 4);
    if (ma != mb) n++, sb(s, "  mxcsr  expected %08x got %08x\n", ma, mb);
    for (int i = 0; i < 16; i++)
        if (memcmp(ef + FX_XMM(i), gf + FX_XMM(i), 16)) {
            n++;
            sb(s, "  xmm%-3d expected ", i);
            hex(s, ef + FX_XMM(i), 16);
            sb(s, " got ");
            hex(s, gf + FX_XMM(i), 16);
            sb(s, "\n");
        }
    if (!memcmp(e->data, g->data, SEM_DATA_SIZE)) return n;
    unsigned shown = 0;
    uint8_t skip[SEM_DATA_SIZE / 8] = {0};
    for (int k = 0; k < 4; k++)
        for (unsigned i = m->dskip[k].off;
             i < (unsigned)m->dskip[k].off + m->dskip[k].len && i < SEM_DATA_SIZE; i++)
            skip[i / 8] |= (uint8_t)(1u << (i % 8));
    for (unsigned i = 0; i < SEM_DATA_SIZE; i++) {
        if (e->data[i] == g->data[i] || (skip[i / 8] >> (i % 8)) & 1) continue;
        n++;
        if (shown++ < 4) {
            unsigned j = i & ~7u;
            sb(s, "  mem[%#" PRIx64 "] expected ", (uint64_t)(SEM_DATA_ADDR + j));
            hex(s, e->data + j, 8);
            sb(s, " got ");
            hex(s, g->data + j, 8);
            sb(s, "\n");
        }
        i |= 7;
    }
    return n;
}

/* ---- reporting ---- */

static uint64_t reg_value(const struct sem_state *st, unsigned reg, uint64_t next_rip)
{
    if (reg >= HVP_X86_REG_RAX && reg < HVP_X86_REG_RAX + 16) return st->gpr[reg - HVP_X86_REG_RAX];
    if (reg >= HVP_X86_REG_EAX && reg < HVP_X86_REG_EAX + 16)
        return (uint32_t)st->gpr[reg - HVP_X86_REG_EAX];
    if (reg == HVP_X86_REG_RIP) return next_rip;
    if (reg == HVP_X86_REG_EIP) return (uint32_t)next_rip;
    return 0;
}

static void describe_inputs(struct strbuf *s, const struct sem_case *c)
{
    const struct sem_state *in = &c->in;
    sb(s, "  inputs:\n");
    for (int r = 0; r < 16; r++)
        sb(s, "%s%-3s=%016" PRIx64 "%s", r % 4 ? "  " : "    ", gprn[r], in->gpr[r],
           r % 4 == 3 ? "\n" : "");
    uint16_t fcw, fsw;
    uint32_t mxcsr;
    memcpy(&fcw, in->fx + FX_FCW, 2);
    memcpy(&fsw, in->fx + FX_FSW, 2);
    memcpy(&mxcsr, in->fx + FX_MXCSR, 4);
    sb(s, "    rflags=%04" PRIx64 " mxcsr=%08x fcw=%04x fsw=%04x ftw=%02x\n", in->rflags, mxcsr,
       fcw, fsw, in->fx[FX_FTW]);
    struct hvp_x86_insn insn;
    if (hvp_x86_decode(&insn, c->code, c->len, 64) <= 0) return;
    for (unsigned i = 0; i < insn.nops; i++) {
        const struct hvp_x86_operand *op = &insn.ops[i];
        if (op->kind == HVP_X86_OPK_REG && op->reg >= HVP_X86_REG_XMM0 &&
            op->reg < HVP_X86_REG_XMM0 + 16) {
            sb(s, "    %s=", hvp_x86_reg_name(op->reg));
            hex(s, in->fx + FX_XMM(op->reg - HVP_X86_REG_XMM0), 16);
            sb(s, "\n");
        } else if (op->kind == HVP_X86_OPK_REG && op->reg >= HVP_X86_REG_MM0 &&
                   op->reg < HVP_X86_REG_MM0 + 8) {
            unsigned top = (fsw >> 11) & 7, phys = op->reg - HVP_X86_REG_MM0;
            sb(s, "    %s=", hvp_x86_reg_name(op->reg));
            hex(s, in->fx + FX_ST((phys - top) & 7), 8);
            sb(s, "\n");
        }
    }
    if (insn.flags & HVP_X86_F_MEM) {
        uint64_t next = SEM_INSN_ADDR + c->len;
        uint64_t ea = (uint64_t)insn.mem.disp;
        if (insn.mem.base) ea += reg_value(in, insn.mem.base, next);
        if (insn.mem.index) ea += reg_value(in, insn.mem.index, next) * insn.mem.scale;
        if (insn.addrsize == 4) ea &= 0xffffffff;
        if (insn.mem.seg == HVP_X86_REG_ES + 5) ea += SEM_GS_BASE; /* gs: */
        sb(s, "    memory operand at %#" PRIx64, ea);
        if (ea >= SEM_DATA_ADDR && ea + 16 <= SEM_DATA_ADDR + SEM_DATA_SIZE) {
            sb(s, ": ");
            for (int i = 0; i < 16; i++)
                sb(s, "%02x ", c->data[ea - SEM_DATA_ADDR + i]);
            sb(s, "(bytes, ascending)");
        }
        sb(s, "\n");
    }
    for (int i = 0; i < 8; i++) {
        unsigned phys = ((fsw >> 11) + i) & 7;
        if ((in->fx[FX_FTW] >> phys) & 1) {
            sb(s, "    st(%d)=", i);
            hex(s, in->fx + FX_ST(i), 10);
            sb(s, "\n");
        }
    }
}

static void describe_case(struct strbuf *s, unsigned t, uint64_t seed, uint64_t k,
                          const struct sem_case *c)
{
    char text[128] = "?";
    struct hvp_x86_insn insn;
    if (hvp_x86_decode(&insn, c->code, c->len, 64) > 0)
        hvp_x86_format(&insn, SEM_INSN_ADDR, text, sizeof text);
    sb(s, "  template %u '%s', seed %" PRIu64 ", case %" PRIu64 "\n", t, sem_tmpl_name(t), seed, k);
    sb(s, "  bytes:");
    for (unsigned i = 0; i < c->len; i++)
        sb(s, " %02x", c->code[i]);
    sb(s, "   %s\n", text);
    describe_inputs(s, c);
}

/* ---- the run ---- */

struct tstat {
    uint64_t run, compared, mismatch, notimpl, exc, encerr;
    bool reported_ni;
    unsigned reported;
    char *ni_example;
};

struct opts {
    uint64_t seed, count, start;
    const char *filter;
    int tmpl; /* -1: all */
    bool list, selfcheck, verbose, random_seed, dump;
    unsigned max_reports;
};

static void usage(void)
{
    fprintf(stderr, "usage: test_semantics [--seed N | --random-seed] [--count N] [--filter TEXT]\n"
                    "                      [--template N] [--start K] [--list] [--self-check]\n"
                    "                      [--max-reports N] [--verbose] [--dump]\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.seed = 1, .count = 100000, .tmpl = -1, .max_reports = 2};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (!strcmp(a, name) && v && (i++, 1))
        if (ARG("--seed"))
            o->seed = strtoull(v, NULL, 0);
        else if (ARG("--count"))
            o->count = strtoull(v, NULL, 0);
        else if (ARG("--start"))
            o->start = strtoull(v, NULL, 0);
        else if (ARG("--filter"))
            o->filter = v;
        else if (ARG("--template"))
            o->tmpl = atoi(v);
        else if (ARG("--max-reports"))
            o->max_reports = (unsigned)atoi(v);
        else if (!strcmp(a, "--list"))
            o->list = true;
        else if (!strcmp(a, "--self-check"))
            o->selfcheck = true;
        else if (!strcmp(a, "--dump"))
            o->dump = true;
        else if (!strcmp(a, "--verbose"))
            o->verbose = true;
        else if (!strcmp(a, "--random-seed"))
            o->random_seed = true;
        else
            return -1;
#undef ARG
    }
    return 0;
}

/* Known results, checked natively: the sandbox itself must be right. */
static int known_results(struct sem_native *nat)
{
    static struct sem_case c[4];
    static struct sem_out o[4];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 4; i++) {
        c[i].in.rip = SEM_INSN_ADDR;
        c[i].in.rflags = 2;
        c[i].in.gpr[4] = SEM_DATA_ADDR + 0xf00;
        uint16_t fcw = 0x37f;
        uint32_t mx = 0x1f80;
        memcpy(c[i].in.fx + FX_FCW, &fcw, 2);
        memcpy(c[i].in.fx + FX_MXCSR, &mx, 4);
    }
    /* add eax, ebx: 0xffffffff + 1 = 0, CF ZF AF PF, upper rax cleared */
    memcpy(c[0].code, "\x01\xd8", 2), c[0].len = 2;
    c[0].in.gpr[0] = 0x12345678ffffffffull, c[0].in.gpr[3] = 1;
    /* div ecx with ecx = 0: #DE */
    memcpy(c[1].code, "\xf7\xf1", 2), c[1].len = 2;
    /* movaps xmm0, [rax] misaligned: #GP */
    memcpy(c[2].code, "\x0f\x28\x00", 3), c[2].len = 3;
    c[2].in.gpr[0] = SEM_DATA_ADDR + 0x101;
    /* ud2 */
    memcpy(c[3].code, "\x0f\x0b", 2), c[3].len = 2;
    sem_native_submit(nat, c, 4);
    sem_native_wait(nat, o);
    int bad = 0;
    if (o[0].vector != SEM_V_NONE || o[0].st.gpr[0] != 0 ||
        (o[0].st.rflags & FL_STATUS) != (FL_CF | FL_ZF | FL_AF | FL_PF) ||
        o[0].st.rip != SEM_INSN_ADDR + 2) {
        fprintf(stderr,
                "self-check: add eax, ebx: rax=%" PRIx64 " rflags=%" PRIx64 " rip=%" PRIx64
                " vector=%d\n",
                o[0].st.gpr[0], o[0].st.rflags, o[0].st.rip, o[0].vector);
        bad++;
    }
    if (o[1].vector != 0 || o[1].st.rip != SEM_INSN_ADDR)
        fprintf(stderr, "self-check: div by zero: vector %d\n", o[1].vector), bad++;
    if (o[2].vector != 13)
        fprintf(stderr, "self-check: misaligned movaps: vector %d\n", o[2].vector), bad++;
    if (o[3].vector != 6) fprintf(stderr, "self-check: ud2: vector %d\n", o[3].vector), bad++;
    return bad;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse(argc, argv, &o)) {
        usage();
        return 2;
    }
    if (o.random_seed) {
        if (getrandom(&o.seed, sizeof o.seed, 0) != sizeof o.seed) o.seed = (uint64_t)time(NULL);
    }
    unsigned nt = sem_tmpl_init();
    unsigned *sel = calloc(nt, sizeof *sel), nsel = 0;
    for (unsigned t = 0; t < nt; t++) {
        if (o.tmpl >= 0 && (unsigned)o.tmpl != t) continue;
        if (o.filter && !strstr(sem_tmpl_name(t), o.filter)) continue;
        if (!sem_tmpl_host_ok(t)) {
            if (o.verbose || o.list)
                printf("skip %u '%s': the host CPU lacks it\n", t, sem_tmpl_name(t));
            continue;
        }
        sel[nsel++] = t;
    }
    if (o.list) {
        for (unsigned i = 0; i < nsel; i++)
            printf("%4u  %s\n", sel[i], sem_tmpl_name(sel[i]));
        printf("%u templates\n", nsel);
        return 0;
    }
    if (!nsel) {
        fprintf(stderr, "semantics: no template selected\n");
        return 2;
    }
    const char *why = NULL;
    struct sem_native *nat = sem_native_start(BATCH, &why);
    if (!nat) {
        printf("# SKIP native sandbox: %s\n", why);
        return 77;
    }
    if (known_results(nat)) {
        fprintf(stderr, "semantics: the native sandbox fails its known results\n");
        sem_native_stop(nat);
        return 1;
    }
    struct hvpr h;
    memset(&h, 0, sizeof h);
    bool have_hvp = !o.selfcheck && hvpr_init(&h) == 0;
    if (!have_hvp && !o.selfcheck) {
        printf("semantics: cannot set up hvp's CPU: %s\n1 failed\n", h.why);
        sem_native_stop(nat);
        return 1;
    }

    struct sem_case *cases = calloc(BATCH, sizeof *cases);
    struct sem_out *exp = calloc(BATCH, sizeof *exp), *got = calloc(BATCH, sizeof *got);
    struct sem_mask *masks = calloc(BATCH, sizeof *masks);
    struct tstat *ts = calloc(nt, sizeof *ts);
    unsigned *ct = calloc(BATCH, sizeof *ct);
    uint64_t *ck = calloc(BATCH, sizeof *ck);
    if (!cases || !exp || !got || !masks || !ts || !ct || !ck) return 2;
    struct strbuf s = {0};
    printf("semantics: seed %" PRIu64 ", %" PRIu64 " cases over %u templates%s\n", o.seed, o.count,
           nsel, have_hvp ? "" : " (native vs native)");
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t done = 0, compared = 0, mismatches = 0;
    while (done < o.count) {
        unsigned n = o.count - done < BATCH ? (unsigned)(o.count - done) : BATCH;
        for (unsigned i = 0; i < n; i++) {
            uint64_t g = done + i;
            ct[i] = sel[g % nsel];
            ck[i] = o.start + g / nsel;
            sem_tmpl_gen(ct[i], o.seed, ck[i], &cases[i], &masks[i]);
            if (o.dump) {
                char text[128] = "?";
                struct hvp_x86_insn insn;
                if (cases[i].len && hvp_x86_decode(&insn, cases[i].code, cases[i].len, 64) > 0)
                    hvp_x86_format(&insn, SEM_INSN_ADDR, text, sizeof text);
                printf("%u/%" PRIu64 ":", ct[i], ck[i]);
                for (unsigned j = 0; j < cases[i].len; j++)
                    printf(" %02x", cases[i].code[j]);
                printf("   %s\n", text);
            }
        }
        sem_native_submit(nat, cases, n);
        if (have_hvp) {
            for (unsigned i = 0; i < n; i++)
                if (cases[i].len) hvpr_run(&h, &cases[i], &got[i]);
        }
        sem_native_wait(nat, exp);
        if (!have_hvp) {
            /* self-check: the same cases again must give the same results */
            sem_native_submit(nat, cases, n);
            sem_native_wait(nat, got);
        }
        for (unsigned i = 0; i < n; i++) {
            unsigned t = ct[i];
            struct tstat *st = &ts[t];
            st->run++;
            const struct sem_case *c = &cases[i];
            s.len = 0;
            if (!c->len) {
                st->encerr++, st->mismatch++, mismatches++;
                if (st->reported++ < o.max_reports) {
                    printf("ENCODING ERROR: template %u '%s' case %" PRIu64
                           " does not decode as '%s':",
                           t, sem_tmpl_name(t), ck[i], sem_tmpl_mnemonic(t));
                    for (unsigned j = 0; j < c->code[15]; j++)
                        printf(" %02x", c->code[j]);
                    printf("\n");
                }
                continue;
            }
            if (have_hvp && got[i].vector == 6 && exp[i].vector != 6 &&
                exp[i].vector != SEM_V_CRASH &&
                !(exp[i].vector != SEM_V_NONE && sem_tmpl_strict(t))) {
                st->notimpl++;
                if (!st->ni_example) {
                    struct strbuf e = {0};
                    describe_case(&e, t, o.seed, ck[i], c);
                    st->ni_example = e.p;
                }
                continue;
            }
            compared++;
            st->compared++;
            if (exp[i].vector != SEM_V_NONE) st->exc++;
            if (!compare(&exp[i], &got[i], &masks[i], &s)) continue;
            st->mismatch++;
            mismatches++;
            if (st->reported++ < o.max_reports) {
                struct strbuf d = {0};
                describe_case(&d, t, o.seed, ck[i], c);
                printf("MISMATCH%s\n%s  differences (expected = host CPU, got = %s):\n%s"
                       "  reproduce: --seed %" PRIu64 " --template %u --start %" PRIu64
                       " --count 1\n",
                       have_hvp ? "" : " (native vs native)", d.p, have_hvp ? "hvp" : "host again",
                       s.p, o.seed, t, ck[i]);
                free(d.p);
                fflush(stdout);
            }
        }
        done += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    unsigned passed = 0, failed = 0, ni = 0;
    printf("\nper template (run, compared, exceptions, mismatches, not implemented):\n");
    for (unsigned i = 0; i < nsel; i++) {
        unsigned t = sel[i];
        struct tstat *st = &ts[t];
        if (!st->run) continue;
        bool bad = st->mismatch > 0;
        bool notimpl = st->notimpl > 0;
        bad ? failed++ : passed++;
        if (notimpl) ni++;
        if (o.verbose || bad || notimpl)
            printf("  %-4s %4u %-48s %7" PRIu64 " %7" PRIu64 " %6" PRIu64 " %6" PRIu64 " %7" PRIu64
                   "\n",
                   bad       ? "FAIL"
                   : notimpl ? "NI"
                             : "ok",
                   t, sem_tmpl_name(t), st->run, st->compared, st->exc, st->mismatch, st->notimpl);
    }
    if (ni) {
        printf("\nnot implemented by hvp's CPU (#UD where the host runs the instruction):\n");
        for (unsigned i = 0; i < nsel; i++) {
            struct tstat *st = &ts[sel[i]];
            if (st->notimpl && st->notimpl == st->run)
                printf("  %s\n", sem_tmpl_name(sel[i]));
            else if (st->notimpl)
                printf("  %s (partly: %" PRIu64 " of %" PRIu64 ")\n", sem_tmpl_name(sel[i]),
                       st->notimpl, st->run);
        }
        if (o.verbose)
            for (unsigned i = 0; i < nsel; i++)
                if (ts[sel[i]].ni_example) printf("example:\n%s", ts[sel[i]].ni_example);
    }
    printf(
        "\nsemantics: seed %" PRIu64 ": %" PRIu64 " cases run, %" PRIu64 " compared, %" PRIu64
        " mismatches, %u not-implemented templates, %u sandbox restarts, %.1f s (%.0f cases/s)\n",
        o.seed, done, compared, mismatches, ni, sem_native_restarts(nat), secs,
        secs > 0 ? (double)done / secs : 0.0);
    printf("%u passed, %u failed\n", passed, failed);
    if (failed)
        printf("semantics: FAILED with seed %" PRIu64 " (rerun: --seed %" PRIu64 ")\n", o.seed,
               o.seed);
    sem_native_stop(nat);
    if (have_hvp) hvpr_fini(&h);
    for (unsigned t = 0; t < nt; t++)
        free(ts[t].ni_example);
    free(s.p);
    free(cases), free(exp), free(got), free(masks), free(ts), free(ct), free(ck), free(sel);
    if (failed) return 1;
    return 0;
}
