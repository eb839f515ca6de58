/* Native runner: executes one instruction on the host CPU.
 *
 * One sandbox process (forked once, restarted if it dies) maps a code page
 * and a data page at the fixed guest addresses, plus a state block. For each
 * case it writes the instruction into the code page between a generated
 * prologue (FXRSTOR, POPF, load all GPRs) and epilogue (store all GPRs,
 * PUSHF, FXSAVE), and calls it. Faults arrive as signals: the handler takes
 * the state at the fault from the ucontext and resumes at a stub that
 * returns to C. Cases and results travel through shared memory; a pipe
 * carries "run [start, end)" and "done".
 *
 * The generated code is not compiled C, so the sandbox also works in the
 * ASan+UBSan build (the handler runs on its own signal stack).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <asm/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "sem.h"

/* The state block at SEM_STATE_ADDR (addressed by the generated code). */
struct blk {
    uint8_t in_fx[512];
    uint8_t out_fx[512];
    uint8_t host_fx[512];
    uint64_t in_gpr[16];
    uint64_t in_rflags;
    uint64_t out_gpr[16];
    uint64_t out_rflags;
    uint64_t out_rip;
    uint64_t host_rsp;
    /* written by the signal handler */
    int vector, signo;
    uint64_t err, addr, fault_rip, fault_gpr[16], fault_rflags;
    uint8_t fault_fx[512];
};
#define BLK      ((struct blk *)SEM_STATE_ADDR)
#define A(field) ((uint32_t)(SEM_STATE_ADDR + offsetof(struct blk, field)))

#define OFF_PROLOGUE 0x000
#define OFF_EPILOGUE 0x200
#define OFF_FAULT    0x400

struct msg {
    uint32_t start, end;
};

struct shm {
    volatile uint32_t progress; /* cases of the current batch completed */
    uint32_t pad_;
};

struct sem_native {
    unsigned batch_max;
    struct shm *shm;
    struct sem_case *cases; /* in shared memory */
    struct sem_out *outs;   /* in shared memory */
    size_t shm_size;
    pid_t pid;
    int cmd_w, res_r; /* parent ends */
    unsigned n, restarts;
};

/* ---- code emission ---- */

struct emit {
    uint8_t *p;
};
static void b(struct emit *e, unsigned x)
{
    *e->p++ = (uint8_t)x;
}
static void d32(struct emit *e, uint32_t x)
{
    memcpy(e->p, &x, 4);
    e->p += 4;
}
/* op [abs32] with a GPR in ModRM.reg: REX.W op /r, mod=00 rm=100, SIB=25. */
static void gpr_abs(struct emit *e, unsigned op, unsigned r, uint32_t addr)
{
    b(e, 0x48 | (r >= 8 ? 4 : 0));
    b(e, op);
    b(e, 0x04 | (r & 7) << 3);
    b(e, 0x25);
    d32(e, addr);
}
static void fx_abs(struct emit *e, unsigned digit, uint32_t addr)
{
    b(e, 0x0f);
    b(e, 0xae);
    b(e, 0x04 | digit << 3);
    b(e, 0x25);
    d32(e, addr);
}
static void jmp_to(struct emit *e, uint64_t target)
{
    b(e, 0xe9);
    d32(e, (uint32_t)(target - ((uint64_t)(uintptr_t)e->p + 4)));
}
static void push_r(struct emit *e, unsigned r)
{
    if (r >= 8) b(e, 0x41);
    b(e, 0x50 + (r & 7));
}
static void pop_r(struct emit *e, unsigned r)
{
    if (r >= 8) b(e, 0x41);
    b(e, 0x58 + (r & 7));
}
static const unsigned callee_saved[] = {3, 5, 12, 13, 14, 15};
static void host_return(struct emit *e)
{
    fx_abs(e, 1, A(host_fx));
    b(e, 0xfc); /* cld: the C ABI wants DF clear */
    for (int i = 5; i >= 0; i--)
        pop_r(e, callee_saved[i]);
    b(e, 0xc3);
}

static void emit_fixed(uint8_t *code)
{
    struct emit e = {code + OFF_PROLOGUE};
    for (int i = 0; i < 6; i++)
        push_r(&e, callee_saved[i]);
    gpr_abs(&e, 0x89, 4, A(host_rsp));
    fx_abs(&e, 0, A(host_fx));
    fx_abs(&e, 1, A(in_fx));
    gpr_abs(&e, 0x8b, 0, A(in_rflags));
    b(&e, 0x50); /* push rax; popfq */
    b(&e, 0x9d);
    for (unsigned r = 0; r < 16; r++)
        gpr_abs(&e, 0x8b, r, A(in_gpr) + 8 * r);
    jmp_to(&e, SEM_INSN_ADDR);

    e.p = code + OFF_EPILOGUE;
    for (unsigned r = 0; r < 16; r++)
        gpr_abs(&e, 0x89, r, A(out_gpr) + 8 * r);
    gpr_abs(&e, 0x8b, 4, A(host_rsp));
    b(&e, 0x9c); /* pushfq; pop rax */
    b(&e, 0x58);
    gpr_abs(&e, 0x89, 0, A(out_rflags));
    fx_abs(&e, 0, A(out_fx));
    host_return(&e);

    e.p = code + OFF_FAULT;
    gpr_abs(&e, 0x8b, 4, A(host_rsp));
    host_return(&e);
}

/* A landing stub: records the RIP it stands for, then the epilogue. */
static void emit_stub(uint8_t *code, unsigned off)
{
    struct emit e = {code + off};
    b(&e, 0x48); /* mov qword [out_rip], imm32 */
    b(&e, 0xc7);
    b(&e, 0x04);
    b(&e, 0x25);
    d32(&e, A(out_rip));
    d32(&e, (uint32_t)(SEM_CODE_ADDR + off));
    jmp_to(&e, SEM_CODE_ADDR + OFF_EPILOGUE);
}

/* ---- the sandbox process ---- */

static const int greg_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
                                REG_RSI, REG_RDI, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                REG_R12, REG_R13, REG_R14, REG_R15};

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    uint64_t rip = (uint64_t)g[REG_RIP];
    if (rip < SEM_CODE_ADDR + SEM_INSN_OFF || rip >= SEM_CODE_ADDR + SEM_PAGE) {
        /* Not the code under test: a bug in the sandbox itself. Die. */
        signal(sig, SIG_DFL);
        return;
    }
    struct blk *k = BLK;
    k->signo = sig;
    k->vector = (int)g[REG_TRAPNO];
    k->err = (uint64_t)g[REG_ERR];
    k->addr = (uint64_t)(uintptr_t)si->si_addr;
    k->fault_rip = rip;
    for (int r = 0; r < 16; r++)
        k->fault_gpr[r] = (uint64_t)g[greg_of[r]];
    k->fault_rflags = (uint64_t)g[REG_EFL];
    if (uc->uc_mcontext.fpregs) memcpy(k->fault_fx, uc->uc_mcontext.fpregs, 512);
    g[REG_RIP] = (greg_t)(SEM_CODE_ADDR + OFF_FAULT);
    /* the guest's RSP may be non-canonical: sigreturn must not use it */
    g[REG_RSP] = (greg_t)k->host_rsp;
}

static void run_one(uint8_t *code, const struct sem_case *c, struct sem_out *o)
{
    struct blk *k = BLK;
    memcpy((void *)(uintptr_t)SEM_DATA_ADDR, c->data, SEM_DATA_SIZE);
    uint8_t *insn = code + SEM_INSN_OFF;
    memcpy(insn, c->code, c->len);
    memset(insn + c->len, 0xcc, SEM_BRANCH_DISP + 24);
    emit_stub(code, SEM_INSN_OFF + c->len);
    emit_stub(code, SEM_INSN_OFF + c->len + SEM_BRANCH_DISP);
    memcpy(k->in_fx, c->in.fx, 512);
    memcpy(k->in_gpr, c->in.gpr, sizeof k->in_gpr);
    k->in_rflags = c->in.rflags;
    k->vector = SEM_V_NONE;
    k->out_rip = 0;
    ((void (*)(void))(uintptr_t)SEM_CODE_ADDR)();
    o->vector = k->vector;
    if (k->vector == SEM_V_NONE) {
        memcpy(o->st.gpr, k->out_gpr, sizeof o->st.gpr);
        o->st.rip = k->out_rip;
        o->st.rflags = k->out_rflags;
        memcpy(o->st.fx, k->out_fx, 512);
        o->signo = 0;
        o->err = o->addr = 0;
    } else {
        memcpy(o->st.gpr, k->fault_gpr, sizeof o->st.gpr);
        o->st.rip = k->fault_rip;
        o->st.rflags = k->fault_rflags;
        memcpy(o->st.fx, k->fault_fx, 512);
        o->signo = k->signo;
        o->err = k->err;
        o->addr = k->addr;
    }
    memcpy(o->data, (void *)(uintptr_t)SEM_DATA_ADDR, SEM_DATA_SIZE);
}

static void *map_fixed(uint64_t addr, size_t size, int prot)
{
    void *p = mmap((void *)(uintptr_t)addr, size, prot,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED || p != (void *)(uintptr_t)addr) return NULL;
    return p;
}

/* Maps the sandbox's pages; returns NULL or a reason. */
static const char *sandbox_setup(void)
{
    if (!map_fixed(SEM_STATE_ADDR, (sizeof(struct blk) + SEM_PAGE - 1) & ~(SEM_PAGE - 1ul),
                   PROT_READ | PROT_WRITE))
        return "cannot map the state block at its fixed address";
    if (!map_fixed(SEM_DATA_ADDR, SEM_DATA_SIZE, PROT_READ | PROT_WRITE))
        return "cannot map the data page at its fixed address";
    uint8_t *code = map_fixed(SEM_CODE_ADDR, SEM_PAGE, PROT_READ | PROT_WRITE | PROT_EXEC);
    if (!code) return "cannot map an executable code page (W^X policy?)";
    emit_fixed(code);
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)SEM_GS_BASE))
        return "cannot set the GS base";
    static uint8_t altstack[65536] __attribute__((aligned(16)));
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    if (sigaltstack(&ss, NULL)) return "sigaltstack failed";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigaction(sigs[i], &sa, NULL)) return "sigaction failed";
    return NULL;
}

static void __attribute__((noreturn)) sandbox_main(struct sem_native *nat, int cmd_r, int res_w)
{
    const char *why = sandbox_setup();
    char status = why ? 'E' : 'R';
    if (write(res_w, &status, 1) != 1 || why) _exit(1);
    uint8_t *code = (uint8_t *)(uintptr_t)SEM_CODE_ADDR;
    struct msg m;
    while (read(cmd_r, &m, sizeof m) == (ssize_t)sizeof m) {
        for (uint32_t i = m.start; i < m.end; i++) {
            run_one(code, &nat->cases[i], &nat->outs[i]);
            nat->shm->progress = i + 1;
        }
        char done = 'D';
        if (write(res_w, &done, 1) != 1) break;
    }
    _exit(0);
}

/* Forks the sandbox; NULL or the reason it cannot run. */
static const char *spawn(struct sem_native *nat)
{
    int cmd[2], res[2];
    if (pipe(cmd)) return "pipe failed";
    if (pipe(res)) {
        close(cmd[0]);
        close(cmd[1]);
        return "pipe failed";
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return "fork failed";
    if (pid == 0) {
        close(cmd[1]);
        close(res[0]);
        sandbox_main(nat, cmd[0], res[1]);
    }
    close(cmd[0]);
    close(res[1]);
    nat->pid = pid;
    nat->cmd_w = cmd[1];
    nat->res_r = res[0];
    char status = 0;
    if (read(nat->res_r, &status, 1) != 1 || status != 'R') {
        waitpid(pid, NULL, 0);
        close(nat->cmd_w);
        close(nat->res_r);
        return "the sandbox could not map its pages at the fixed addresses "
               "(or executable memory is not allowed)";
    }
    return NULL;
}

static void reap(struct sem_native *nat)
{
    close(nat->cmd_w);
    close(nat->res_r);
    waitpid(nat->pid, NULL, 0);
}

struct sem_native *sem_native_start(unsigned batch_max, const char **why)
{
    signal(SIGPIPE, SIG_IGN);
    struct sem_native *nat = calloc(1, sizeof *nat);
    if (!nat) {
        *why = "out of memory";
        return NULL;
    }
    nat->batch_max = batch_max;
    size_t hdr = 4096;
    nat->shm_size = hdr + (size_t)batch_max * (sizeof(struct sem_case) + sizeof(struct sem_out));
    void *p = mmap(NULL, nat->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        free(nat);
        *why = "cannot map shared memory";
        return NULL;
    }
    nat->shm = p;
    nat->cases = (struct sem_case *)((uint8_t *)p + hdr);
    nat->outs = (struct sem_out *)(nat->cases + batch_max);
    *why = spawn(nat);
    if (*why) {
        munmap(p, nat->shm_size);
        free(nat);
        return NULL;
    }
    return nat;
}

static void send_range(struct sem_native *nat, uint32_t start, uint32_t end)
{
    nat->shm->progress = start;
    struct msg m = {start, end};
    if (write(nat->cmd_w, &m, sizeof m) != (ssize_t)sizeof m) {
        /* The sandbox is gone; sem_native_wait sees EOF and restarts. */
    }
}

void sem_native_submit(struct sem_native *nat, const struct sem_case *cases, unsigned n)
{
    memcpy(nat->cases, cases, (size_t)n * sizeof *cases);
    nat->n = n;
    send_range(nat, 0, n);
}

void sem_native_wait(struct sem_native *nat, struct sem_out *out)
{
    for (;;) {
        char done;
        if (read(nat->res_r, &done, 1) == 1) break;
        /* The sandbox died on case `progress`: record it, restart after it. */
        uint32_t bad = nat->shm->progress;
        int status = 0;
        close(nat->cmd_w);
        close(nat->res_r);
        waitpid(nat->pid, &status, 0);
        nat->restarts++;
        if (bad < nat->n) {
            struct sem_out *o = &nat->outs[bad];
            memset(&o->st, 0, sizeof o->st);
            o->vector = SEM_V_CRASH;
            o->signo = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        }
        if (spawn(nat)) {
            for (uint32_t i = bad + 1; i < nat->n; i++)
                nat->outs[i].vector = SEM_V_CRASH;
            nat->pid = -1;
            break;
        }
        if (bad + 1 >= nat->n) break;
        send_range(nat, bad + 1, nat->n);
    }
    memcpy(out, nat->outs, (size_t)nat->n * sizeof *out);
}

void sem_native_stop(struct sem_native *nat)
{
    if (!nat) return;
    if (nat->pid > 0) reap(nat);
    munmap(nat->shm, nat->shm_size);
    free(nat);
}

unsigned sem_native_restarts(const struct sem_native *nat)
{
    return nat->restarts;
}
