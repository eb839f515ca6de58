/* hvp user: run a static x86-64 Linux program on the software CPU. */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hvp/user.h"
#include "hvp/x86.h"

extern char **environ;

static void usage(FILE *f)
{
    fprintf(f, "usage: hvp user [--stats] [--strace] PROGRAM [ARGS...]\n"
               "Runs a static x86-64 Linux executable on hvp's software CPU.\n"
               "  --stats   print instructions, wall time and MIPS to stderr at exit\n"
               "  --strace  print each system call to stderr\n"
               "Exit status: the program's; 128+N style (the same signal) when it dies of\n"
               "signal N; 2 when PROGRAM cannot be loaded; 70 when the CPU cannot go on.\n");
}

static void trace_line(void *opaque, const char *line)
{
    (void)opaque;
    fprintf(stderr, "%s\n", line);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *signame(int sig, char *buf, size_t n)
{
    const char *abbr = sigabbrev_np(sig);
    if (abbr)
        snprintf(buf, n, "SIG%s", abbr);
    else
        snprintf(buf, n, "signal %d", sig);
    return buf;
}

/* "<insn text>" of the faulting instruction, or its bytes. */
static void insn_text(const struct hvp_user_result *r, char *buf, size_t n)
{
    if (!r->insn_len) {
        snprintf(buf, n, "no code at rip");
        return;
    }
    struct hvp_x86_insn insn;
    if (hvp_x86_decode(&insn, r->insn, r->insn_len, 64) > 0 &&
        hvp_x86_format(&insn, r->rip, buf, n) > 0)
        return;
    size_t k = (size_t)snprintf(buf, n, "bytes");
    for (unsigned i = 0; i < r->insn_len && i < 8 && k + 4 < n; i++)
        k += (size_t)snprintf(buf + k, n - k, " %02x", r->insn[i]);
}

/* Ends this process the way the guest ended: by the same signal, without a
 * core file; 128+sig if the signal does not kill. */
static int die_by(int sig)
{
    fflush(stdout);
    fflush(stderr);
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    return 128 + sig;
}

int hvp_cmd_user(int argc, char **argv)
{
    bool stats = false, strace = false;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--stats"))
            stats = true;
        else if (!strcmp(a, "--strace"))
            strace = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (a[0] == '-') {
            hvp_cli_error("user", "unknown option '%s'", a);
            usage(stderr);
            return 2;
        } else
            break;
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *prog = argv[i];
    /* Like execvp: a name without a slash is looked up in PATH. */
    char found[4096];
    const char *path = prog;
    if (!strchr(prog, '/')) {
        const char *dirs = getenv("PATH");
        if (!dirs || !*dirs)
            dirs = "/usr/local/bin:/usr/bin:/bin";
        while (*dirs) {
            size_t n = strcspn(dirs, ":");
            int k = snprintf(found, sizeof(found), "%.*s%s%s", (int)n, n ? dirs : ".",
                             "/", prog);
            if (k > 0 && (size_t)k < sizeof(found) && access(found, X_OK) == 0) {
                path = found;
                break;
            }
            dirs += n + (dirs[n] == ':');
        }
    }
    struct hvp_user_config cfg = {.size = sizeof(cfg), .trace = strace ? trace_line : NULL};
    struct hvp_user *u;
    int ret = hvp_user_create(&cfg, &u);
    if (ret < 0) {
        hvp_cli_error("user", "cannot create the CPU: %s", strerror(-ret));
        return 2;
    }
    char what[512];
    snprintf(what, sizeof(what), "user: %s", prog);
    ret = hvp_user_load(u, path, argc - i, argv + i, environ);
    if (ret < 0) {
        hvp_cli_error(what, "%s", hvp_user_error(u));
        hvp_user_destroy(u);
        return 2;
    }
    /* EPIPE comes back to the guest as its own SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    struct hvp_user_result res;
    pid_t me = getpid(); /* a guest fork() forks hvp: the children stay quiet */
    double t0 = now();
    ret = hvp_user_run(u, &res);
    double wall = now() - t0;
    if (ret < 0) {
        hvp_cli_error(what, "%s", hvp_user_error(u));
        hvp_user_destroy(u);
        return 2;
    }
    fflush(stdout);
    if (stats && getpid() == me) {
        struct hvp_cpu_stats s;
        hvp_cpu_get_stats(hvp_user_cpu(u), &s);
        fprintf(stderr, "hvp: user: %llu instructions in %.3f s: %.1f MIPS\n",
                (unsigned long long)s.instructions, wall,
                wall > 0 ? (double)s.instructions / wall / 1e6 : 0.0);
    }
    int status;
    char sb[32], ib[160];
    switch (res.end) {
    case HVP_USER_EXITED: status = res.status; break;
    case HVP_USER_SIGNALED:
        if (res.exception) {
            insn_text(&res, ib, sizeof(ib));
            hvp_cli_error(what, "%s at rip 0x%llx (%s)", signame(res.signo, sb, sizeof(sb)),
                          (unsigned long long)res.rip, ib);
        }
        hvp_user_destroy(u);
        return die_by(res.signo);
    default:
        hvp_cli_error(what, "%s", hvp_user_error(u));
        status = 70;
        break;
    }
    hvp_user_destroy(u);
    return status;
}
