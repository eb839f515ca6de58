/* The Linux system-call layer. Guest and host are both x86-64 Linux, so
 * structures have one layout: most calls pass through to the host once each
 * guest pointer is translated and checked (a bad one is -EFAULT). Memory,
 * signals, identity of the single thread and process exit are handled here. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define R_ HVP_CPU_PROT_READ
#define W_ HVP_CPU_PROT_WRITE

#define SA_RESTORER_ 0x04000000 /* the kernel ABI's, not in libc headers */
#define IOV_MAX_ 1024

enum { RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7 };

/* strace names; `str` marks arguments that are path strings. */
struct sysdesc {
    const char *name;
    uint8_t nargs, str;
};

#define S(nr, nm, n, s) [nr] = {#nm, n, s}
static const struct sysdesc sysdescs[] = {
    S(0, read, 3, 0),           S(1, write, 3, 0),         S(2, open, 3, 1),
    S(3, close, 1, 0),          S(4, stat, 2, 1),          S(5, fstat, 2, 0),
    S(6, lstat, 2, 1),          S(7, poll, 3, 0),          S(8, lseek, 3, 0),
    S(9, mmap, 6, 0),           S(10, mprotect, 3, 0),     S(11, munmap, 2, 0),
    S(12, brk, 1, 0),           S(13, rt_sigaction, 4, 0), S(14, rt_sigprocmask, 4, 0),
    S(15, rt_sigreturn, 0, 0),  S(16, ioctl, 3, 0),        S(17, pread64, 4, 0),
    S(18, pwrite64, 4, 0),      S(19, readv, 3, 0),        S(20, writev, 3, 0),
    S(21, access, 2, 1),        S(22, pipe, 1, 0),         S(23, select, 5, 0),
    S(24, sched_yield, 0, 0),   S(25, mremap, 5, 0),       S(26, msync, 3, 0),
    S(27, mincore, 3, 0),       S(28, madvise, 3, 0),      S(32, dup, 1, 0),
    S(33, dup2, 2, 0),          S(34, pause, 0, 0),        S(35, nanosleep, 2, 0),
    S(37, alarm, 1, 0),         S(38, setitimer, 3, 0),    S(39, getpid, 0, 0),
    S(40, sendfile, 4, 0),      S(41, socket, 3, 0),       S(56, clone, 5, 0),
    S(57, fork, 0, 0),          S(58, vfork, 0, 0),        S(59, execve, 3, 1),
    S(60, exit, 1, 0),          S(61, wait4, 4, 0),        S(62, kill, 2, 0),
    S(63, uname, 1, 0),         S(72, fcntl, 3, 0),        S(73, flock, 2, 0),
    S(74, fsync, 1, 0),         S(75, fdatasync, 1, 0),    S(76, truncate, 2, 1),
    S(77, ftruncate, 2, 0),     S(78, getdents, 3, 0),     S(79, getcwd, 2, 0),
    S(80, chdir, 1, 1),         S(81, fchdir, 1, 0),       S(82, rename, 2, 3),
    S(83, mkdir, 2, 1),         S(84, rmdir, 1, 1),        S(86, link, 2, 3),
    S(87, unlink, 1, 1),        S(88, symlink, 2, 3),      S(89, readlink, 3, 1),
    S(90, chmod, 2, 1),         S(91, fchmod, 2, 0),       S(92, chown, 3, 1),
    S(93, fchown, 3, 0),        S(94, lchown, 3, 1),       S(95, umask, 1, 0),
    S(96, gettimeofday, 2, 0),  S(97, getrlimit, 2, 0),    S(98, getrusage, 2, 0),
    S(99, sysinfo, 1, 0),       S(100, times, 1, 0),       S(102, getuid, 0, 0),
    S(104, getgid, 0, 0),       S(107, geteuid, 0, 0),     S(108, getegid, 0, 0),
    S(109, setpgid, 2, 0),      S(110, getppid, 0, 0),     S(111, getpgrp, 0, 0),
    S(112, setsid, 0, 0),       S(115, getgroups, 2, 0),   S(118, getresuid, 3, 0),
    S(120, getresgid, 3, 0),    S(121, getpgid, 1, 0),     S(124, getsid, 1, 0),
    S(130, rt_sigsuspend, 2, 0), S(131, sigaltstack, 2, 0),  S(137, statfs, 2, 1),      S(138, fstatfs, 2, 0),
    S(157, prctl, 5, 0),        S(158, arch_prctl, 2, 0),   S(186, gettid, 0, 0),      S(200, tkill, 2, 0),
    S(201, time, 1, 0),         S(202, futex, 6, 0),       S(204, sched_getaffinity, 3, 0),
    S(217, getdents64, 3, 0),   S(218, set_tid_address, 1, 0), S(221, fadvise64, 4, 0),
    S(228, clock_gettime, 2, 0), S(229, clock_getres, 2, 0), S(230, clock_nanosleep, 4, 0),
    S(231, exit_group, 1, 0),   S(234, tgkill, 3, 0),      S(257, openat, 4, 2),
    S(258, mkdirat, 3, 2),      S(260, fchownat, 5, 2),    S(262, newfstatat, 4, 2),
    S(263, unlinkat, 3, 2),     S(264, renameat, 4, 10),   S(265, linkat, 5, 10),
    S(266, symlinkat, 3, 5),    S(267, readlinkat, 4, 2),  S(268, fchmodat, 3, 2),
    S(269, faccessat, 3, 2),    S(270, pselect6, 6, 0),    S(271, ppoll, 5, 0),
    S(273, set_robust_list, 2, 0), S(280, utimensat, 4, 2), S(285, fallocate, 4, 0),
    S(292, dup3, 3, 0),         S(293, pipe2, 2, 0),       S(295, preadv, 4, 0),
    S(296, pwritev, 4, 0),      S(302, prlimit64, 4, 0),   S(316, renameat2, 5, 10),
    S(318, getrandom, 3, 0),    S(332, statx, 5, 2),       S(334, rseq, 4, 0),
    S(435, clone3, 2, 0),       S(439, faccessat2, 4, 2),
};
#undef S

static int64_t host_ret(long r)
{
    return r == -1 ? -errno : r;
}

/* Optional pointer: NULL stays NULL; otherwise checked. */
#define OPT(g, n, prot, var)                                                                       \
    void *var = NULL;                                                                              \
    if (g) {                                                                                       \
        var = mem_ptr(u, g, n, prot);                                                              \
        if (!var)                                                                                  \
            return -EFAULT;                                                                        \
    }
#define NEED(g, n, prot, var)                                                                      \
    void *var = mem_ptr(u, g, n, prot);                                                            \
    if (!var)                                                                                      \
        return -EFAULT;
#define PATH(g, var)                                                                               \
    const char *var = mem_str(u, g, 4095);                                                         \
    if (!var)                                                                                      \
        return -EFAULT;
/* A buffer the kernel fills or drains up to the first fault. */
#define BUF(g, n, prot, var)                                                                       \
    uint64_t var##_len = n;                                                                        \
    void *var = mem_clamp(u, g, &var##_len, prot);                                                 \
    if (!var)                                                                                      \
        return -EFAULT;

/* Host iovecs for a guest iovec array. */
static int64_t iov_in(struct hvp_user *u, uint64_t g, uint64_t cnt, unsigned prot,
                      struct iovec *out)
{
    if (cnt > IOV_MAX_)
        return -EINVAL;
    const uint64_t *gv = mem_ptr(u, g, cnt * 16, R_);
    if (!gv)
        return -EFAULT;
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t len = gv[2 * i + 1];
        if ((int64_t)len < 0)
            return -EINVAL;
        void *p = mem_clamp(u, gv[2 * i], &len, prot);
        if (!p) {
            if (i == 0)
                return -EFAULT;
            return (int64_t)i; /* stop at the first bad one */
        }
        out[i] = (struct iovec){p, len};
    }
    return (int64_t)cnt;
}

static int64_t sys_rw_vec(struct hvp_user *u, long nr, const uint64_t *a)
{
    if (a[2] > IOV_MAX_)
        return -EINVAL;
    struct iovec *v = malloc(sizeof(*v) * (a[2] ? a[2] : 1));
    if (!v)
        return -ENOMEM;
    bool rd = nr == SYS_readv || nr == SYS_preadv;
    int64_t n = iov_in(u, a[1], a[2], rd ? W_ : R_, v);
    if (n >= 0)
        n = host_ret(syscall(nr, (long)a[0], v, (long)n, (long)a[3], (long)a[4]));
    free(v);
    return n;
}

/* ---- memory ---- */

static int64_t sys_brk(struct hvp_user *u, uint64_t want)
{
    uint64_t old_end = PAGE_UP(u->brk_cur), new_end = PAGE_UP(want);
    if (want < u->brk_start || want >= MMAP_TOP)
        return (int64_t)u->brk_cur;
    if (new_end > old_end) {
        if (!mem_free(u, old_end, new_end - old_end) ||
            mem_map(u, old_end, new_end - old_end, R_ | W_) < 0)
            return (int64_t)u->brk_cur;
    } else if (new_end < old_end) {
        mem_unmap(u, new_end, old_end - new_end);
    }
    u->brk_cur = want;
    return (int64_t)want;
}

static unsigned prot_of(uint64_t p)
{
    /* PROT_READ|WRITE|EXEC have the CPU's values; x86 pages that can be
     * written or executed can be read. */
    unsigned r = (unsigned)p & 7;
    if (r & (W_ | HVP_CPU_PROT_EXEC))
        r |= R_;
    return r;
}

static int64_t sys_mmap(struct hvp_user *u, const uint64_t *a)
{
    uint64_t addr = a[0], len = a[1], prot = a[2], flags = a[3], off = a[5];
    int fd = (int)a[4];
    if (!len || off & PAGE_MASK_ || addr & PAGE_MASK_ || prot & ~7ULL)
        return -EINVAL;
    if (len > GUEST_SPACE)
        return -ENOMEM;
    len = PAGE_UP(len);
    unsigned type = flags & MAP_TYPE;
    if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE)
        return -EINVAL;
    bool anon = flags & MAP_ANONYMOUS;
    struct stat st;
    if (!anon) {
        if (fstat(fd, &st) < 0)
            return -errno;
        if (S_ISDIR(st.st_mode))
            return -ENODEV;
        /* A writable shared file mapping would need the host's mapping,
         * whose pages past EOF fault (SIGBUS) in the host. A private copy
         * is exact for everything else in a single process. */
        if (type != MAP_PRIVATE && (prot & PROT_WRITE))
            return -ENODEV;
    }
    uint64_t at;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
        if (addr < GUEST_MIN || addr >= GUEST_SPACE || len > GUEST_SPACE - addr)
            return -ENOMEM;
        if (!mem_free(u, addr, len)) {
            if (flags & MAP_FIXED_NOREPLACE)
                return -EEXIST;
            mem_unmap(u, addr, len);
        }
        at = addr;
    } else if (addr >= GUEST_MIN && addr < GUEST_SPACE && len <= GUEST_SPACE - addr &&
               mem_free(u, addr, len)) {
        at = addr;
    } else {
        at = mem_find(u, len);
        if (!at)
            return -ENOMEM;
    }
    int ret = mem_map(u, at, len, prot_of(prot));
    if (ret < 0)
        return ret;
    if (!anon) {
        uint64_t done = 0;
        while (done < len) {
            ssize_t r = pread(fd, u->host + at + done, len - done, (off_t)(off + done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                int e = errno;
                mem_unmap(u, at, len);
                return e == EISDIR ? -ENODEV : -e;
            }
            if (r == 0)
                break;
            done += (uint64_t)r;
        }
    }
    return (int64_t)at;
}

static int64_t sys_mremap(struct hvp_user *u, const uint64_t *a)
{
    uint64_t old = a[0], olen = PAGE_UP(a[1]), nlen = PAGE_UP(a[2]), flags = a[3];
    if (old & PAGE_MASK_ || !nlen || flags & ~(uint64_t)(MREMAP_MAYMOVE | MREMAP_FIXED))
        return -EINVAL;
    if (flags & MREMAP_FIXED)
        return -EINVAL; /* not used by libc's realloc */
    if (!olen || !mem_ok(u, old, olen, 0))
        return -EFAULT;
    if (nlen <= olen) {
        mem_unmap(u, old + nlen, olen - nlen);
        return (int64_t)old;
    }
    /* The protection of the last old page carries over. */
    unsigned prot = R_ | W_;
    for (unsigned p = 0; p <= 7; p++)
        if (mem_ok(u, old + olen - PAGE_SIZE_, PAGE_SIZE_, p))
            prot = p;
    if (mem_free(u, old + olen, nlen - olen) && mem_map(u, old + olen, nlen - olen, prot) == 0)
        return (int64_t)old;
    if (!(flags & MREMAP_MAYMOVE))
        return -ENOMEM;
    uint64_t at = mem_find(u, nlen);
    if (!at || mem_map(u, at, nlen, prot) < 0)
        return -ENOMEM;
    memcpy(u->host + at, u->host + old, olen);
    hvp_cpu_invalidate_code(u->cpu, at, olen);
    mem_unmap(u, old, olen);
    return (int64_t)at;
}

static int64_t sys_madvise(struct hvp_user *u, const uint64_t *a)
{
    uint64_t g = a[0], len = PAGE_UP(a[1]);
    if (g & PAGE_MASK_)
        return -EINVAL;
    if (!mem_ok(u, g, len, 0))
        return -ENOMEM;
    if (a[2] == MADV_DONTNEED || a[2] == MADV_FREE) {
        /* Private memory reads back as zero: let the host drop the pages. */
        if (len)
            madvise(u->host + g, len, MADV_DONTNEED);
        hvp_cpu_invalidate_code(u->cpu, g, len);
    }
    return 0;
}

/* ---- signals ---- */

static bool default_ignored(int sig)
{
    return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

static void end_signal(struct hvp_user *u, int sig)
{
    u->ended = true;
    u->res.end = HVP_USER_SIGNALED;
    u->res.signo = sig;
}

#define FRAME_UC 8
#define FRAME_INFO (8 + 304)
#define FRAME_SIZE (8 + 304 + 128)
/* sigcontext order of the general registers (gpr[] indices). */
static const uint8_t sc_gpr[16] = {8, 9, 10, 11, 12, 13, 14, 15, RDI, RSI, RBP, RBX, RDX, RAX, RCX, RSP};

/* Builds Linux's rt_sigframe on the guest stack and enters the handler.
 * The FPU state stays on a host-side stack (uc_mcontext.fpstate = NULL). */
static bool deliver(struct hvp_user *u, struct hvp_cpu_state *st, int sig, const struct sigact *sa,
                    int code, uint64_t addr)
{
    uint64_t sp = st->gpr[RSP];
    bool onstack = false;
    if ((sa->flags & SA_ONSTACK) && !(u->altstack[1] & SS_DISABLE) && u->altstack[2] &&
        !(sp > u->altstack[0] && sp <= u->altstack[0] + u->altstack[2])) {
        sp = u->altstack[0] + u->altstack[2];
        onstack = true;
    }
    sp -= 128; /* the red zone */
    sp = ((sp - FRAME_SIZE) & ~15ULL) - 8;
    uint8_t *f = mem_ptr(u, sp, FRAME_SIZE, W_);
    if (!f || !(sa->flags & SA_RESTORER_))
        return false;
    if (u->nfpsave == u->capfpsave) {
        size_t cap = u->capfpsave ? u->capfpsave * 2 : 8;
        struct hvp_cpu_fpu *n = realloc(u->fpsave, cap * sizeof(*n));
        if (!n)
            return false;
        u->fpsave = n;
        u->capfpsave = cap;
    }
    u->fpsave[u->nfpsave++] = st->fpu;
    memset(f, 0, FRAME_SIZE);
    uint64_t *w = (uint64_t *)f;
    w[0] = sa->restorer;
    uint64_t *uc = (uint64_t *)(f + FRAME_UC);
    uc[2] = u->altstack[0];
    uc[3] = onstack ? SS_ONSTACK : (u->altstack[1] & SS_DISABLE);
    uc[4] = u->altstack[2];
    uint64_t *sc = uc + 5;
    for (int i = 0; i < 16; i++)
        sc[i] = st->gpr[sc_gpr[i]];
    sc[16] = st->rip;
    sc[17] = st->rflags;
    sc[18] = 0x33 | (uint64_t)0x2b << 48; /* cs, gs, fs, ss */
    sc[21] = u->sigmask;                  /* oldmask */
    sc[22] = addr;                        /* cr2 */
    uc[5 + 32] = u->sigmask;              /* uc_sigmask */
    int32_t *info = (int32_t *)(f + FRAME_INFO);
    info[0] = sig;
    info[2] = code;
    if (code > 0) {
        *(uint64_t *)(info + 4) = addr;
    } else {
        info[4] = u->pid;
        info[5] = (int32_t)getuid();
    }
    uint64_t mask = sa->mask;
    if (!(sa->flags & SA_NODEFER))
        mask |= 1ULL << (sig - 1);
    u->sigmask |= mask & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
    if (sa->flags & SA_RESETHAND)
        u->sig[sig].handler = 0;
    st->gpr[RSP] = sp;
    st->gpr[RDI] = (uint64_t)sig;
    st->gpr[RSI] = sp + FRAME_INFO;
    st->gpr[RDX] = sp + FRAME_UC;
    st->gpr[RAX] = 0;
    st->rip = sa->handler;
    st->rflags &= ~(1ULL << 8 | 1ULL << 10); /* TF, DF */
    return true;
}

static int64_t sys_rt_sigreturn(struct hvp_user *u, struct hvp_cpu_state *st)
{
    uint64_t frame = st->gpr[RSP] - 8;
    uint8_t *f = mem_ptr(u, frame, FRAME_SIZE, R_);
    if (!f) {
        end_signal(u, SIGSEGV);
        return 0;
    }
    const uint64_t *uc = (const uint64_t *)(f + FRAME_UC), *sc = uc + 5;
    for (int i = 0; i < 16; i++)
        st->gpr[sc_gpr[i]] = sc[i];
    st->rip = sc[16];
    /* User-changeable flags only: CF PF AF ZF SF TF DF OF AC. */
    const uint64_t fl = 0x40dd5;
    st->rflags = (st->rflags & ~fl) | (sc[17] & fl);
    u->sigmask = uc[5 + 32] & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
    if (u->nfpsave)
        st->fpu = u->fpsave[--u->nfpsave];
    return (int64_t)st->gpr[RAX];
}

void sys_signal(struct hvp_user *u, struct hvp_cpu_state *st, int sig)
{
    const struct sigact *sa = &u->sig[sig];
    bool fault = u->res.exception;
    bool blocked = u->sigmask & (1ULL << (sig - 1));
    if (sa->handler == 1 /* SIG_IGN */ && !fault)
        return;
    if (sa->handler == 0 || sa->handler == 1 || (fault && blocked)) {
        if (!fault && default_ignored(sig))
            return;
        end_signal(u, sig);
        return;
    }
    if (blocked)
        return; /* no pending queue: a raise() of a blocked signal is dropped */
    int code = fault ? (u->res.vector == 14 ? SEGV_MAPERR : 1) : SI_TKILL;
    if (fault && u->res.vector == 14 && mem_ok(u, PAGE_DOWN(u->res.addr), 1, 0))
        code = SEGV_ACCERR;
    struct sigact copy = *sa;
    if (!deliver(u, st, sig, &copy, code, u->res.addr))
        end_signal(u, SIGSEGV);
    else
        u->res.exception = false;
}

static int64_t sys_rt_sigaction(struct hvp_user *u, const uint64_t *a)
{
    int sig = (int)a[0];
    if (sig < 1 || sig > 64 || a[3] != 8)
        return -EINVAL;
    OPT(a[1], 32, R_, act);
    OPT(a[2], 32, W_, oact);
    if (act && (sig == SIGKILL || sig == SIGSTOP))
        return -EINVAL;
    struct sigact old = u->sig[sig];
    if (act)
        memcpy(&u->sig[sig], act, 32);
    if (oact)
        memcpy(oact, &old, 32);
    return 0;
}

static int64_t sys_rt_sigprocmask(struct hvp_user *u, const uint64_t *a)
{
    if (a[3] != 8)
        return -EINVAL;
    OPT(a[1], 8, R_, set);
    OPT(a[2], 8, W_, oset);
    uint64_t old = u->sigmask;
    if (set) {
        uint64_t s;
        memcpy(&s, set, 8);
        switch (a[0]) {
        case SIG_BLOCK: u->sigmask |= s; break;
        case SIG_UNBLOCK: u->sigmask &= ~s; break;
        case SIG_SETMASK: u->sigmask = s; break;
        default: return -EINVAL;
        }
        u->sigmask &= ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
    }
    if (oset)
        memcpy(oset, &old, 8);
    return 0;
}

static int64_t sys_sigaltstack(struct hvp_user *u, const uint64_t *a)
{
    OPT(a[0], 24, R_, ss);
    OPT(a[1], 24, W_, oss);
    uint64_t old[3];
    memcpy(old, u->altstack, sizeof(old));
    if (ss) {
        uint64_t n[3];
        memcpy(n, ss, 24);
        n[1] &= 0xffffffff;
        if (n[1] & ~(uint64_t)SS_DISABLE)
            return -EINVAL;
        if (!(n[1] & SS_DISABLE) && n[2] < 2048)
            return -ENOMEM;
        memcpy(u->altstack, n, sizeof(n));
    }
    if (oss)
        memcpy(oss, old, 24);
    return 0;
}

/* kill/tkill/tgkill: only to itself. */
static int64_t sys_kill_self(struct hvp_user *u, struct hvp_cpu_state *st, int64_t pid, int sig)
{
    if (pid != 0 && pid != u->pid) {
        /* Another process: only the guest's own children. */
        for (unsigned i = 0; i < u->nchildren; i++)
            if (u->children[i] == pid)
                return host_ret(syscall(SYS_kill, (long)pid, (long)sig));
        return -EPERM;
    }
    if (sig < 0 || sig > 64)
        return -EINVAL;
    if (sig == 0)
        return 0;
    /* The call returns 0 to the handler's interrupted context. */
    st->gpr[RAX] = 0;
    st->gpr[RCX] = st->rip;
    st->gpr[11] = st->rflags;
    u->res.exception = false;
    sys_signal(u, st, sig);
    return 0;
}

/* ---- processes ---- */

/* fork, vfork and clone without threads: a host fork() of the whole hvp
 * process, whose private guest memory is then copied on write. */
static int64_t sys_clone(struct hvp_user *u, struct hvp_cpu_state *st, uint64_t flags,
                         uint64_t newsp, uint64_t ptid, uint64_t ctid, uint64_t tls)
{
    const uint64_t allowed = CSIGNAL | CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID |
                             CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CLONE_SETTLS;
    if (flags & ~allowed || ((flags & CLONE_VM) && !(flags & CLONE_VFORK)))
        return -ENOSYS; /* threads */
    if (((flags & CLONE_PARENT_SETTID) && !mem_ptr(u, ptid, 4, W_)) ||
        ((flags & (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID)) && !mem_ptr(u, ctid, 4, W_)))
        return -EFAULT;
    int vp[2] = {-1, -1};
    if ((flags & CLONE_VFORK) && pipe2(vp, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (vp[0] >= 0)
            close(vp[0]), close(vp[1]);
        return -e;
    }
    if (pid == 0) {
        u->pid = getpid();
        u->nchildren = 0;
        if (vp[0] >= 0) {
            close(vp[0]);
            /* out of the way of the guest's own small fd numbers */
            u->vfork_fd = fcntl(vp[1], F_DUPFD_CLOEXEC, 900);
            close(vp[1]);
        }
        if (newsp)
            st->gpr[RSP] = newsp;
        if (flags & CLONE_SETTLS)
            st->seg[4].base = tls;
        int32_t me = u->pid;
        if (flags & CLONE_CHILD_SETTID)
            memcpy(mem_ptr(u, ctid, 4, W_), &me, 4);
        if (flags & CLONE_PARENT_SETTID)
            memcpy(mem_ptr(u, ptid, 4, W_), &me, 4);
        if (flags & CLONE_CHILD_CLEARTID)
            u->tid_address = ctid;
        return 0;
    }
    if (u->nchildren < sizeof(u->children) / sizeof(u->children[0]))
        u->children[u->nchildren++] = pid;
    if (flags & CLONE_PARENT_SETTID) {
        int32_t c = pid;
        memcpy(mem_ptr(u, ptid, 4, W_), &c, 4);
    }
    if (vp[0] >= 0) {
        /* vfork: the parent waits until the child execs or exits. */
        close(vp[1]);
        char c;
        while (read(vp[0], &c, 1) < 0 && errno == EINTR)
            ;
        close(vp[0]);
    }
    return pid;
}

/* Copies a guest string vector to the host (the guest memory is about to
 * go). Returns the count, or -errno. */
static int64_t copy_vec(struct hvp_user *u, uint64_t g, char ***out)
{
    *out = NULL;
    size_t n = 0, cap = 0;
    char **v = NULL;
    for (;; n++) {
        uint64_t *pp = g ? mem_ptr(u, g + n * 8, 8, R_) : NULL;
        if (g && !pp)
            goto fault;
        uint64_t p = g ? *pp : 0;
        if (n + 1 >= cap) {
            cap = cap ? cap * 2 : 16;
            if (cap > 1 << 17)
                goto big;
            char **nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                goto nomem;
            v = nv;
        }
        if (!p) {
            v[n] = NULL;
            *out = v;
            return (int64_t)n;
        }
        const char *s = mem_str(u, p, 1 << 17);
        if (!s)
            goto fault;
        if (!(v[n] = strdup(s)))
            goto nomem;
    }
    int e;
fault:
    e = -EFAULT;
    goto out;
big:
    e = -E2BIG;
    goto out;
nomem:
    e = -ENOMEM;
out:
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return e;
}

static void free_vec(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* execve of a static executable: a new image in this same hvp_user. */
static int64_t sys_execve(struct hvp_user *u, struct hvp_cpu_state *st, const uint64_t *a)
{
    PATH(a[0], gpath);
    char path[4096];
    snprintf(path, sizeof(path), "%s", !strcmp(gpath, "/proc/self/exe") && u->exe[0] ? u->exe : gpath);
    char **argv, **envp;
    int64_t argc = copy_vec(u, a[1], &argv);
    if (argc < 0)
        return argc;
    int64_t envc = copy_vec(u, a[2], &envp);
    if (envc < 0) {
        free_vec(argv);
        return envc;
    }
    bool committed;
    int ret = loader_load(u, path, (int)argc, argv, envp, true, &committed);
    free_vec(argv);
    free_vec(envp);
    if (ret < 0) {
        if (committed)
            end_signal(u, SIGSEGV); /* as Linux, past the point of no return */
        return ret;
    }
    for (int s = 1; s <= 64; s++)
        if (u->sig[s].handler != 1 /* SIG_IGN stays */)
            memset(&u->sig[s], 0, sizeof(u->sig[s]));
    u->altstack[0] = u->altstack[2] = 0;
    u->altstack[1] = SS_DISABLE;
    u->nfpsave = 0;
    u->tid_address = 0;
    memset(st->gpr, 0, sizeof(st->gpr));
    st->gpr[RSP] = u->sp;
    st->rip = u->entry;
    st->rflags = 0x202;
    st->seg[4].base = st->seg[5].base = 0;
    memset(&st->fpu, 0, sizeof(st->fpu));
    st->fpu.fcw = 0x37f;
    st->fpu.mxcsr = 0x1f80;
    u->exec_done = true;
    if (u->vfork_fd >= 0) {
        close(u->vfork_fd);
        u->vfork_fd = -1;
    }
    return 0;
}

/* rt_sigsuspend: what the guest can wait for is its children (SIGCHLD);
 * the host has no handlers of ours, so other signals act on hvp itself. */
static int64_t sys_rt_sigsuspend(struct hvp_user *u, struct hvp_cpu_state *st, const uint64_t *a)
{
    if (a[1] != 8)
        return -EINVAL;
    NEED(a[0], 8, R_, mp);
    uint64_t mask;
    memcpy(&mask, mp, 8);
    const struct sigact *sa = &u->sig[SIGCHLD];
    bool wanted = sa->handler > 1 && !(mask & (1ULL << (SIGCHLD - 1)));
    siginfo_t si;
    if (wanted && u->nchildren &&
        waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WCONTINUED | WNOWAIT) == 0) {
        /* Enter the handler with the suspend mask saved as the one to
         * restore: the frame gets the old mask, rax = -EINTR. */
        st->gpr[RAX] = (uint64_t)-EINTR;
        st->gpr[RCX] = st->rip;
        st->gpr[11] = st->rflags;
        struct sigact copy = *sa;
        if (!deliver(u, st, SIGCHLD, &copy, si.si_code, 0))
            end_signal(u, SIGSEGV);
        return -EINTR;
    }
    sigset_t none;
    sigemptyset(&none);
    sigsuspend(&none); /* until a signal ends hvp (nothing else can come) */
    return -EINTR;
}

/* ---- the rest ---- */

static int64_t sys_arch_prctl(struct hvp_user *u, struct hvp_cpu_state *st, const uint64_t *a)
{
    switch (a[0]) {
    case 0x1001: st->seg[5].base = a[1]; return 0; /* ARCH_SET_GS */
    case 0x1002: st->seg[4].base = a[1]; return 0; /* ARCH_SET_FS */
    case 0x1003:
    case 0x1004: {
        NEED(a[1], 8, W_, p);
        uint64_t v = st->seg[a[0] == 0x1003 ? 4 : 5].base;
        memcpy(p, &v, 8);
        return 0;
    }
    default: return -EINVAL;
    }
}

static int64_t sys_ioctl(struct hvp_user *u, const uint64_t *a)
{
    size_t n;
    switch (a[1]) {
    case TCGETS:
    case TCSETS:
    case TCSETSW:
    case TCSETSF: n = 36; break; /* the kernel's struct termios */
    case TIOCGWINSZ:
    case TIOCSWINSZ: n = 8; break;
    case TIOCGPGRP:
    case TIOCSPGRP:
    case FIONREAD:
    case FIONBIO: n = 4; break;
    case FIOCLEX:
    case FIONCLEX: return host_ret(syscall(SYS_ioctl, (long)a[0], (long)a[1], 0L));
    default: return -ENOTTY;
    }
    NEED(a[2], n, (a[1] == TCGETS || a[1] == TIOCGWINSZ || a[1] == TIOCGPGRP || a[1] == FIONREAD)
                      ? W_
                      : R_,
         p);
    return host_ret(syscall(SYS_ioctl, (long)a[0], (long)a[1], p));
}

static int64_t sys_fcntl(struct hvp_user *u, const uint64_t *a)
{
    switch (a[1]) {
    case F_DUPFD:
    case F_GETFD:
    case F_SETFD:
    case F_GETFL:
    case F_SETFL:
    case F_DUPFD_CLOEXEC:
    case F_GETPIPE_SZ:
    case F_SETPIPE_SZ:
        return host_ret(syscall(SYS_fcntl, (long)a[0], (long)a[1], (long)a[2]));
    case F_GETLK:
    case F_SETLK:
    case F_SETLKW:
    case F_OFD_GETLK:
    case F_OFD_SETLK:
    case F_OFD_SETLKW: {
        NEED(a[2], 32, R_ | W_, p);
        return host_ret(syscall(SYS_fcntl, (long)a[0], (long)a[1], p));
    }
    default: return -EINVAL;
    }
}

static int64_t sys_futex(struct hvp_user *u, const uint64_t *a)
{
    /* One thread: nobody else can wake a waiter or change the word. */
    NEED(a[0], 4, R_, w);
    int op = (int)a[1] & FUTEX_CMD_MASK;
    if (op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET) {
        uint32_t v;
        memcpy(&v, w, 4);
        return v != (uint32_t)a[2] ? -EAGAIN : -ETIMEDOUT;
    }
    if (op == FUTEX_WAKE || op == FUTEX_WAKE_BITSET)
        return 0;
    return -ENOSYS;
}

static int64_t sys_readlink(struct hvp_user *u, long dirfd, uint64_t gpath, uint64_t gbuf,
                            uint64_t size)
{
    PATH(gpath, path);
    if ((int64_t)size <= 0)
        return -EINVAL;
    BUF(gbuf, size, W_, buf);
    if (!strcmp(path, "/proc/self/exe") && u->exe[0]) {
        size_t n = strlen(u->exe);
        if (n > buf_len)
            n = buf_len;
        memcpy(buf, u->exe, n);
        return (int64_t)n;
    }
    return host_ret(syscall(SYS_readlinkat, dirfd, path, buf, (long)buf_len));
}

static int64_t sys_select(struct hvp_user *u, long nr, const uint64_t *a)
{
    if ((int64_t)a[0] < 0 || a[0] > 1024)
        return -EINVAL;
    size_t setb = (a[0] + 63) / 64 * 8;
    OPT(a[1], setb, R_ | W_, r);
    OPT(a[2], setb, R_ | W_, w);
    OPT(a[3], setb, R_ | W_, e);
    OPT(a[4], 16, R_ | W_, t);
    if (nr == SYS_select)
        return host_ret(syscall(nr, (long)a[0], r, w, e, t));
    uint64_t sm[2] = {0, 8};
    void *smp = NULL;
    if (a[5]) {
        NEED(a[5], 16, R_, g);
        memcpy(sm, g, 16);
        if (sm[0]) {
            void *ss = mem_ptr(u, sm[0], 8, R_);
            if (!ss)
                return -EFAULT;
            sm[0] = (uint64_t)(uintptr_t)ss;
        }
        smp = sm;
    }
    return host_ret(syscall(nr, (long)a[0], r, w, e, t, smp));
}

static int64_t dispatch(struct hvp_user *u, struct hvp_cpu_state *st, long nr, const uint64_t *a)
{
    switch (nr) {
    case SYS_read: {
        BUF(a[1], a[2], W_, p);
        return host_ret(syscall(nr, (long)a[0], p, (long)p_len));
    }
    case SYS_write: {
        BUF(a[1], a[2], R_, p);
        return host_ret(syscall(nr, (long)a[0], p, (long)p_len));
    }
    case SYS_pread64:
    case SYS_pwrite64: {
        BUF(a[1], a[2], nr == SYS_pread64 ? W_ : R_, p);
        return host_ret(syscall(nr, (long)a[0], p, (long)p_len, (long)a[3]));
    }
    case SYS_readv:
    case SYS_writev:
    case SYS_preadv:
    case SYS_pwritev: return sys_rw_vec(u, nr, a);
    case SYS_open: {
        PATH(a[0], path);
        return host_ret(syscall(nr, path, (long)a[1], (long)a[2]));
    }
    case SYS_openat: {
        PATH(a[1], path);
        return host_ret(syscall(nr, (long)a[0], path, (long)a[2], (long)a[3]));
    }
    case SYS_close:
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3:
    case SYS_lseek:
    case SYS_fsync:
    case SYS_fdatasync:
    case SYS_ftruncate:
    case SYS_fchdir:
    case SYS_fchmod:
    case SYS_fchown:
    case SYS_flock:
    case SYS_umask:
    case SYS_fadvise64:
    case SYS_fallocate:
    case SYS_setpgid:
    case SYS_getpgid:
    case SYS_getsid:
    case SYS_setsid:
    case SYS_getpgrp:
        return host_ret(syscall(nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3]));
    case SYS_stat:
    case SYS_lstat:
    case SYS_statfs: {
        PATH(a[0], path);
        NEED(a[1], nr == SYS_statfs ? 120 : 144, W_, buf);
        return host_ret(syscall(nr, path, buf));
    }
    case SYS_fstat:
    case SYS_fstatfs: {
        NEED(a[1], nr == SYS_fstatfs ? 120 : 144, W_, buf);
        return host_ret(syscall(nr, (long)a[0], buf));
    }
    case SYS_newfstatat: {
        PATH(a[1], path);
        NEED(a[2], 144, W_, buf);
        return host_ret(syscall(nr, (long)a[0], path, buf, (long)a[3]));
    }
    case SYS_statx: {
        PATH(a[1], path);
        NEED(a[4], 256, W_, buf);
        return host_ret(syscall(nr, (long)a[0], path, (long)a[2], (long)a[3], buf));
    }
    case SYS_access:
    case SYS_chdir:
    case SYS_mkdir:
    case SYS_rmdir:
    case SYS_unlink:
    case SYS_chmod:
    case SYS_chown:
    case SYS_lchown:
    case SYS_truncate: {
        PATH(a[0], path);
        return host_ret(syscall(nr, path, (long)a[1], (long)a[2]));
    }
    case SYS_rename:
    case SYS_link:
    case SYS_symlink: {
        PATH(a[0], p0);
        PATH(a[1], p1);
        return host_ret(syscall(nr, p0, p1));
    }
    case SYS_faccessat:
    case SYS_faccessat2:
    case SYS_mkdirat:
    case SYS_unlinkat:
    case SYS_fchmodat:
    case SYS_fchownat: {
        PATH(a[1], path);
        return host_ret(syscall(nr, (long)a[0], path, (long)a[2], (long)a[3], (long)a[4]));
    }
    case SYS_renameat:
    case SYS_renameat2:
    case SYS_linkat: {
        PATH(a[1], p0);
        PATH(a[3], p1);
        return host_ret(syscall(nr, (long)a[0], p0, (long)a[2], p1, (long)a[4]));
    }
    case SYS_symlinkat: {
        PATH(a[0], p0);
        PATH(a[2], p1);
        return host_ret(syscall(nr, p0, (long)a[1], p1));
    }
    case SYS_readlink: return sys_readlink(u, AT_FDCWD, a[0], a[1], a[2]);
    case SYS_readlinkat: return sys_readlink(u, (long)a[0], a[1], a[2], a[3]);
    case SYS_utimensat: {
        const char *path = NULL;
        if (a[1]) {
            path = mem_str(u, a[1], 4095);
            if (!path)
                return -EFAULT;
        }
        OPT(a[2], 32, R_, times);
        return host_ret(syscall(nr, (long)a[0], path, times, (long)a[3]));
    }
    case SYS_getdents64: {
        BUF(a[1], a[2], W_, p);
        return host_ret(syscall(nr, (long)a[0], p, (long)p_len));
    }
    case SYS_getcwd: {
        BUF(a[0], a[1], W_, p);
        return host_ret(syscall(nr, p, (long)p_len));
    }
    case SYS_ioctl: return sys_ioctl(u, a);
    case SYS_fcntl: return sys_fcntl(u, a);
    case SYS_pipe:
    case SYS_pipe2: {
        NEED(a[0], 8, W_, p);
        return host_ret(syscall(SYS_pipe2, p, nr == SYS_pipe ? 0L : (long)a[1]));
    }
    case SYS_poll: {
        if (a[1] > 4096)
            return -EINVAL;
        NEED(a[0], a[1] * 8, R_ | W_, p);
        return host_ret(syscall(nr, p, (long)a[1], (long)a[2]));
    }
    case SYS_ppoll: {
        if (a[1] > 4096)
            return -EINVAL;
        NEED(a[0], a[1] * 8, R_ | W_, p);
        OPT(a[2], 16, R_, ts);
        OPT(a[3], 8, R_, sm);
        return host_ret(syscall(nr, p, (long)a[1], ts, sm, (long)a[4]));
    }
    case SYS_select:
    case SYS_pselect6: return sys_select(u, nr, a);
    case SYS_sendfile: {
        OPT(a[2], 8, R_ | W_, off);
        return host_ret(syscall(nr, (long)a[0], (long)a[1], off, (long)a[3]));
    }
    case SYS_wait4: {
        OPT(a[1], 4, W_, status);
        OPT(a[3], 144, W_, ru);
        return host_ret(syscall(nr, (long)a[0], status, (long)a[2], ru));
    }

    case SYS_mmap: return sys_mmap(u, a);
    case SYS_munmap:
        if (a[0] & PAGE_MASK_ || !a[1])
            return -EINVAL;
        return mem_unmap(u, a[0], PAGE_UP(a[1]));
    case SYS_mprotect:
        if (a[0] & PAGE_MASK_ || a[2] & ~7ULL)
            return -EINVAL;
        return mem_protect(u, a[0], PAGE_UP(a[1]), prot_of(a[2]));
    case SYS_brk: return sys_brk(u, a[0]);
    case SYS_mremap: return sys_mremap(u, a);
    case SYS_madvise: return sys_madvise(u, a);
    case SYS_msync:
    case SYS_mlock:
    case SYS_munlock: return mem_ok(u, PAGE_DOWN(a[0]), PAGE_UP(a[1]), 0) ? 0 : -ENOMEM;

    case SYS_rt_sigaction: return sys_rt_sigaction(u, a);
    case SYS_rt_sigprocmask: return sys_rt_sigprocmask(u, a);
    case SYS_rt_sigreturn: return sys_rt_sigreturn(u, st);
    case SYS_sigaltstack: return sys_sigaltstack(u, a);
    case SYS_rt_sigsuspend: return sys_rt_sigsuspend(u, st, a);
    case SYS_kill: return sys_kill_self(u, st, (int64_t)a[0], (int)a[1]);
    case SYS_tkill: return sys_kill_self(u, st, (int64_t)a[0], (int)a[1]);
    case SYS_tgkill:
        if ((int64_t)a[0] != u->pid)
            return -ESRCH;
        return sys_kill_self(u, st, (int64_t)a[1], (int)a[2]);

    case SYS_nanosleep: {
        NEED(a[0], 16, R_, req);
        OPT(a[1], 16, W_, rem);
        return host_ret(syscall(nr, req, rem));
    }
    case SYS_clock_nanosleep: {
        NEED(a[2], 16, R_, req);
        OPT(a[3], 16, W_, rem);
        return host_ret(syscall(nr, (long)a[0], (long)a[1], req, rem));
    }
    case SYS_clock_gettime:
    case SYS_clock_getres: {
        OPT(a[1], 16, W_, ts);
        if (!ts && nr == SYS_clock_gettime)
            return -EFAULT;
        return host_ret(syscall(nr, (long)a[0], ts));
    }
    case SYS_gettimeofday: {
        OPT(a[0], 16, W_, tv);
        OPT(a[1], 8, W_, tz);
        return host_ret(syscall(nr, tv, tz));
    }
    case SYS_time: {
        OPT(a[0], 8, W_, t);
        return host_ret(syscall(nr, t));
    }
    case SYS_times: {
        OPT(a[0], 32, W_, t);
        return host_ret(syscall(nr, t));
    }
    case SYS_getrusage: {
        NEED(a[1], 144, W_, ru);
        return host_ret(syscall(nr, (long)a[0], ru));
    }
    case SYS_sysinfo: {
        NEED(a[0], 112, W_, p);
        return host_ret(syscall(nr, p));
    }
    case SYS_uname: {
        NEED(a[0], 390, W_, p);
        return host_ret(syscall(nr, p));
    }
    case SYS_getrlimit: {
        NEED(a[1], 16, W_, p);
        return host_ret(syscall(nr, (long)a[0], p));
    }
    case SYS_prlimit64: {
        if (a[0] && (int64_t)a[0] != u->pid)
            return -EPERM;
        OPT(a[2], 16, R_, nl);
        OPT(a[3], 16, W_, ol);
        /* Reads pass through; the guest's limits are not the host's. */
        if (nl)
            return ol ? host_ret(syscall(nr, 0L, (long)a[1], NULL, ol)) : 0;
        return host_ret(syscall(nr, 0L, (long)a[1], NULL, ol));
    }
    case SYS_getrandom: {
        BUF(a[0], a[1], W_, p);
        return host_ret(syscall(nr, p, (long)p_len, (long)a[2]));
    }
    case SYS_sched_getaffinity: {
        if (a[0] && (int64_t)a[0] != u->pid)
            return -ESRCH;
        NEED(a[2], a[1], W_, p);
        return host_ret(syscall(nr, 0L, (long)a[1], p));
    }
    case SYS_getgroups: {
        if ((int64_t)a[0] < 0 || a[0] > 65536)
            return -EINVAL;
        OPT(a[1], a[0] * 4, W_, p);
        return host_ret(syscall(nr, (long)a[0], p));
    }
    case SYS_getresuid:
    case SYS_getresgid: {
        NEED(a[0], 4, W_, p0);
        NEED(a[1], 4, W_, p1);
        NEED(a[2], 4, W_, p2);
        return host_ret(syscall(nr, p0, p1, p2));
    }
    case SYS_sched_yield: return 0;
    case SYS_getpid:
    case SYS_gettid: return u->pid;
    case SYS_getppid:
    case SYS_getuid:
    case SYS_geteuid:
    case SYS_getgid:
    case SYS_getegid: return host_ret(syscall(nr));
    case SYS_set_tid_address: u->tid_address = a[0]; return u->pid;
    case SYS_set_robust_list: return a[1] == 24 ? 0 : -EINVAL;
    case SYS_arch_prctl: return sys_arch_prctl(u, st, a);
    case SYS_prctl: return a[0] == 15 /* PR_SET_NAME: the host thread keeps its own */ ? 0 : -EINVAL;
    case SYS_futex: return sys_futex(u, a);
    case SYS_fork: return sys_clone(u, st, SIGCHLD, 0, 0, 0, 0);
    case SYS_vfork: return sys_clone(u, st, CLONE_VM | CLONE_VFORK | SIGCHLD, 0, 0, 0, 0);
    case SYS_clone: return sys_clone(u, st, a[0], a[1], a[2], a[3], a[4]);
    case SYS_execve: return sys_execve(u, st, a);
    case SYS_exit:
    case SYS_exit_group:
        u->ended = true;
        u->res.end = HVP_USER_EXITED;
        u->res.status = (int)(a[0] & 0xff);
        return 0;
    default: return -ENOSYS;
    }
}

static void trace(struct hvp_user *u, long nr, const uint64_t *a, int64_t ret)
{
    char line[1024];
    size_t n = 0;
    const struct sysdesc *d = nr >= 0 && (size_t)nr < sizeof(sysdescs) / sizeof(sysdescs[0]) &&
                                      sysdescs[nr].name
                                  ? &sysdescs[nr]
                                  : NULL;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(line + n, sizeof(line) - n, __VA_ARGS__);                                \
        if (k_ > 0)                                                                                \
            n = n + (size_t)k_ < sizeof(line) ? n + (size_t)k_ : sizeof(line) - 1;                 \
    } while (0)
    if (d)
        PUT("%s(", d->name);
    else
        PUT("syscall_%ld(", nr);
    unsigned nargs = d ? d->nargs : 6;
    for (unsigned i = 0; i < nargs; i++) {
        if (i)
            PUT(", ");
        const char *s = d && (d->str >> i & 1) ? mem_str(u, a[i], 4095) : NULL;
        if (s) {
            PUT("\"");
            for (int j = 0; s[j] && j < 64; j++) {
                unsigned char c = (unsigned char)s[j];
                if (c == '"' || c == '\\')
                    PUT("\\%c", c);
                else if (c >= 0x20 && c < 0x7f)
                    PUT("%c", c);
                else
                    PUT("\\x%02x", c);
            }
            PUT(strlen(s) > 64 ? "\"..." : "\"");
        } else if ((int64_t)a[i] >= -4096 && (int64_t)a[i] < 65536) {
            PUT("%lld", (long long)a[i]);
        } else if (a[i] >> 32 == 0 && (int32_t)a[i] < 0 && (int32_t)a[i] >= -4096) {
            PUT("%d", (int32_t)a[i]); /* an int argument: AT_FDCWD, -1 */
        } else {
            PUT("0x%llx", (unsigned long long)a[i]);
        }
    }
    if (u->ended && (nr == SYS_exit || nr == SYS_exit_group))
        PUT(") = ?");
    else if (ret < 0 && ret >= -4095)
        PUT(") = -1 %s (%s)", strerrorname_np((int)-ret) ? strerrorname_np((int)-ret) : "E?",
            strerror((int)-ret));
    else if (ret > 65535)
        PUT(") = 0x%llx", (unsigned long long)ret);
    else
        PUT(") = %lld", (long long)ret);
#undef PUT
    u->cfg.trace(u->cfg.trace_opaque, line);
}

void sys_dispatch(struct hvp_user *u, struct hvp_cpu_state *st)
{
    static const uint8_t argreg[6] = {RDI, RSI, RDX, 10, 8, 9};
    uint64_t a[6];
    for (int i = 0; i < 6; i++)
        a[i] = st->gpr[argreg[i]];
    long nr = (long)st->gpr[RAX];
    /* SYSCALL's own effects, as the kernel's return leaves them. */
    uint64_t rip = st->rip, rflags = st->rflags;
    int64_t ret = dispatch(u, st, nr, a);
    /* A write to a pipe nobody reads: the guest gets its SIGPIPE (the
     * embedder ignores the host's). */
    if (ret == -EPIPE && (nr == SYS_write || nr == SYS_writev || nr == SYS_pwrite64 ||
                          nr == SYS_pwritev || nr == SYS_sendfile)) {
        st->gpr[RAX] = (uint64_t)ret;
        st->gpr[RCX] = rip;
        st->gpr[11] = rflags;
        u->res.exception = false;
        sys_signal(u, st, SIGPIPE);
    }
    if (nr == SYS_rt_sigreturn || u->exec_done) {
        /* Registers come from the frame (rcx and r11 included), or are
         * the fresh ones of the new image. */
        u->exec_done = false;
    } else if (st->rip != rip) {
        /* A handler was entered by kill/tgkill: its frame holds the return
         * value 0 in rax and rip after the SYSCALL. */
    } else {
        st->gpr[RAX] = (uint64_t)ret;
        st->gpr[RCX] = rip;
        st->gpr[11] = rflags;
    }
    if (u->cfg.trace)
        trace(u, nr, a, ret);
}
