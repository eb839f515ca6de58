/* hvp run: one VM in this process (the worker), its COM1 on the terminal.
 *
 * Threads: main runs the VM (hvp_vm_run); one thread reads console input
 * (the terminal or a unix socket client) and handles the Ctrl-A escapes;
 * one thread takes SIGINT/SIGTERM/SIGHUP/SIGQUIT with sigwait and stops
 * the VM, so the terminal is restored on the main path. Fatal signals
 * restore it from a handler before the default action. */
#define _GNU_SOURCE /* accept4, pipe2 */
#include "cli.h"

#include <hvp/disk.h>
#include <hvp/vmm.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

/* Exit statuses (documented in --help). */
#define RUN_POWEROFF     0
#define RUN_ERROR        1
#define RUN_USAGE        2
#define RUN_RESET        3
#define RUN_TRIPLE_FAULT 4

#define DEFAULT_APPEND "console=ttyS0,115200 earlyprintk=ttyS0,115200 reboot=k panic=1"
#define ESCAPE_CHAR    0x01 /* Ctrl-A */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: hvp run [--kernel FILE [--initrd FILE]] [--append STRING] [--memory SIZE]\n"
        "               [--cpus N] [--backend auto|soft|kvm] [--console stdio|none|unix:PATH]\n"
        "               [--disk FILE]...\n"
        "\n"
        "Runs one VM in this process and attaches its serial console (COM1).\n"
        "\n"
        "  --kernel FILE    a Linux bzImage (64-bit boot protocol 2.12+); without it, the\n"
        "                   default guest that 'make guest' caches ($HVP_GUEST_DIR, else\n"
        "                   ${XDG_CACHE_HOME:-~/.cache}/hvp/guest: vmlinuz, initramfs.cpio.gz)\n"
        "  --initrd FILE    an initramfs, placed high in RAM below the PCI hole\n"
        "  --append STRING  the kernel command line (default: \"%s\")\n"
        "  --memory SIZE    guest RAM, e.g. 512M or 2G (a bare number is MiB; default 512M)\n"
        "  --cpus N         vCPUs (default 1; the others wait for the guest's INIT/SIPI)\n"
        "  --backend NAME   auto (kvm when /dev/kvm opens, else soft), soft or kvm\n"
        "  --console KIND   stdio (default: the terminal, raw, with Ctrl-A escapes),\n"
        "                   none, or unix:PATH (a listening socket; one client at a time)\n"
        "  --disk FILE      a raw, VHD or VHDX image: opened and checked only; the guest\n"
        "                   gets no block device yet (virtio/VMBus storage is later work)\n"
        "\n"
        "Console escapes (stdio): Ctrl-A X quits, Ctrl-A H lists the escapes,\n"
        "Ctrl-A Ctrl-A sends Ctrl-A.\n"
        "\n"
        "Exit status: 0 the guest powered off (or Ctrl-A X), 1 error, 2 bad usage or input,\n"
        "3 the guest reset, 4 triple fault, 128+N killed by signal N.\n",
        DEFAULT_APPEND);
}

/* ---- the terminal ----
 * The saved state is the one global here: the fatal-signal handler needs
 * it, and a handler gets no argument. */
static struct {
    struct termios saved;
    atomic_bool raw;
} tty;

static void tty_restore(void)
{
    if (atomic_exchange(&tty.raw, false)) tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty.saved);
}

static void on_fatal(int sig)
{
    tty_restore(); /* tcsetattr is async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static int tty_raw(void)
{
    if (!isatty(STDIN_FILENO)) return 0;
    if (tcgetattr(STDIN_FILENO, &tty.saved) < 0) return -errno;
    struct termios t = tty.saved;
    /* cfmakeraw: no echo, no line editing, no signals, bytes as typed. */
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct sigaction sa = {.sa_handler = on_fatal};
        sigaction(fatal[i], &sa, NULL);
    }
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0) return -errno;
    atomic_store(&tty.raw, true);
    return 0;
}

/* ---- the console ---- */
enum console_kind { CON_STDIO, CON_NONE, CON_UNIX };

struct run {
    struct hvp_vm *vm;
    enum console_kind con;
    const char *sock_path;
    int listen_fd;
    atomic_int client_fd; /* unix: the connected client, or -1 */
    int wake[2];          /* tells the input thread to end */
    bool escape;          /* Ctrl-A seen */
    atomic_bool quit;     /* Ctrl-A X */
    atomic_int signo;
};

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            poll(&pf, 1, 100);
            continue;
        }
        if (n <= 0) return; /* output gone: drop it, the guest runs on */
        p += n;
        len -= (size_t)n;
    }
}

static void console_out(void *ctx, const uint8_t *buf, size_t len)
{
    struct run *r = ctx;
    if (r->con == CON_STDIO) {
        write_all(STDOUT_FILENO, buf, len);
    } else if (r->con == CON_UNIX) {
        /* A slow or vanished client loses output; the input thread notices
         * a closed one. */
        int fd = atomic_load(&r->client_fd);
        if (fd >= 0) (void)!send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

static void say(const char *s)
{
    /* In raw mode the terminal does not turn \n into \r\n. */
    for (const char *p = s; *p; p++) {
        if (*p == '\n') write_all(STDERR_FILENO, "\r", 1);
        write_all(STDERR_FILENO, p, 1);
    }
}

/* Terminal input: Ctrl-A escapes, everything else to the guest. */
static void stdin_bytes(struct run *r, const uint8_t *buf, size_t len)
{
    uint8_t out[512];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];
        if (r->escape) {
            r->escape = false;
            switch (c) {
            case 'x':
            case 'X':
                atomic_store(&r->quit, true);
                hvp_vm_request_stop(r->vm);
                return;
            case 'h':
            case 'H':
            case '?':
                say("\nC-a h    print this help\n"
                    "C-a x    exit hvp (the guest stops at once)\n"
                    "C-a C-a  send C-a to the guest\n");
                break;
            case ESCAPE_CHAR:
            case 'a': out[n++] = ESCAPE_CHAR; break;
            default: break; /* unknown escape: dropped */
            }
        } else if (c == ESCAPE_CHAR) {
            r->escape = true;
        } else {
            out[n++] = c;
        }
        if (n == sizeof(out)) {
            hvp_vm_console_input(r->vm, out, n);
            n = 0;
        }
    }
    if (n) hvp_vm_console_input(r->vm, out, n);
}

static void *input_main(void *arg)
{
    struct run *r = arg;
    uint8_t buf[4096];
    bool in_open = r->con == CON_STDIO;
    for (;;) {
        struct pollfd pf[3] = {{.fd = r->wake[0], .events = POLLIN}};
        int n = 1, client = atomic_load(&r->client_fd);
        int in_at = -1, listen_at = -1, client_at = -1;
        if (in_open) in_at = n, pf[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        if (r->con == CON_UNIX && client < 0)
            listen_at = n, pf[n++] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        if (client >= 0) client_at = n, pf[n++] = (struct pollfd){.fd = client, .events = POLLIN};
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pf[0].revents) break;
        if (in_at > 0 && pf[in_at].revents) {
            ssize_t k = read(STDIN_FILENO, buf, sizeof(buf));
            if (k > 0)
                stdin_bytes(r, buf, (size_t)k);
            else if (k == 0 || (errno != EINTR && errno != EAGAIN))
                in_open = false; /* end of input: the guest runs on without it */
        }
        if (listen_at > 0 && pf[listen_at].revents) {
            int c = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) atomic_store(&r->client_fd, c);
        }
        if (client_at > 0 && pf[client_at].revents) {
            ssize_t k = recv(client, buf, sizeof(buf), 0);
            if (k > 0) {
                hvp_vm_console_input(r->vm, buf, (size_t)k);
            } else if (k == 0 || errno != EINTR) {
                atomic_store(&r->client_fd, -1);
                close(client);
            }
        }
    }
    return NULL;
}

static void *signal_main(void *arg)
{
    struct run *r = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR2); /* ours: the run is over */
    int sig;
    while (sigwait(&set, &sig) == 0) {
        if (sig == SIGUSR2) break;
        atomic_store(&r->signo, sig);
        hvp_vm_request_stop(r->vm);
    }
    return NULL;
}

static int open_socket(struct run *r, const char *what)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!*r->sock_path || strlen(r->sock_path) >= sizeof(sa.sun_path)) {
        hvp_cli_error(what, "unix:PATH needs a path of 1 to %zu bytes", sizeof(sa.sun_path) - 1);
        return -1;
    }
    strcpy(sa.sun_path, r->sock_path);
    struct stat st;
    if (lstat(r->sock_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            hvp_cli_error(r->sock_path, "exists and is not a socket");
            return -1;
        }
        unlink(r->sock_path); /* a stale socket of an earlier run */
    }
    r->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(r->listen_fd, 1) < 0) {
        hvp_cli_error(r->sock_path, "%s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The default guest's folder: as scripts/guest.sh computes it. */
static int default_guest(char *kernel, char *initrd, size_t len)
{
    const char *dir = getenv("HVP_GUEST_DIR");
    char buf[4096];
    if (!dir || !*dir) {
        const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (cache && *cache)
            snprintf(buf, sizeof(buf), "%s/hvp/guest", cache);
        else
            snprintf(buf, sizeof(buf), "%s/.cache/hvp/guest", home ? home : "");
        dir = buf;
    }
    if (snprintf(kernel, len, "%s/vmlinuz", dir) >= (int)len ||
        snprintf(initrd, len, "%s/initramfs.cpio.gz", dir) >= (int)len) {
        hvp_cli_error("run", "the default guest's folder name is too long");
        return -1;
    }
    if (access(kernel, R_OK) != 0) {
        hvp_cli_error("run", "no --kernel, and no default guest in %s (run 'make guest')", dir);
        return -1;
    }
    if (access(initrd, R_OK) != 0) initrd[0] = 0;
    return 0;
}

static int parse_memory(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (n && s[n - 1] >= '0' && s[n - 1] <= '9') {
        uint64_t mib;
        if (hvp_cli_parse_u64(s, &mib) < 0 || mib > (1ull << 44)) return -1;
        *out = mib << 20;
        return 0;
    }
    return hvp_cli_parse_size(s, out);
}

int hvp_cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"kernel", required_argument, NULL, 'k'},  {"initrd", required_argument, NULL, 'i'},
        {"append", required_argument, NULL, 'a'},  {"memory", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},    {"backend", required_argument, NULL, 'b'},
        {"console", required_argument, NULL, 'C'}, {"disk", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *kernel = NULL, *initrd = NULL, *append = NULL, *backend = "auto";
    const char *console = "stdio";
    uint64_t memory = 512ull << 20, cpus = 1;
    const char **disks = calloc((size_t)argc + 1, sizeof(char *));
    size_t ndisks = 0;
    int status = RUN_USAGE, c;
    struct run r = {.listen_fd = -1, .wake = {-1, -1}};
    atomic_init(&r.client_fd, -1);
    hvp_disk **dh = NULL;
    char kbuf[4096], ibuf[4096];

    if (!disks) return RUN_ERROR;
    /* Signals go to the signal thread only: block them before any thread
     * exists (the backend starts its own at VM creation; threads inherit
     * the mask). One that comes before the VM runs waits, then stops it. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': kernel = optarg; break;
        case 'i': initrd = optarg; break;
        case 'a': append = optarg; break;
        case 'm':
            if (parse_memory(optarg, &memory) < 0) {
                hvp_cli_error("--memory", "'%s' is not a size (e.g. 512M, 2G)", optarg);
                goto out;
            }
            if (memory == 0) {
                hvp_cli_error("--memory", "0: the guest needs memory (e.g. 512M)");
                goto out;
            }
            break;
        case 'c':
            if (hvp_cli_parse_u64(optarg, &cpus) < 0 || cpus == 0 || cpus > HVP_VM_MAX_CPUS) {
                hvp_cli_error("--cpus", "'%s' is not a number from 1 to %u", optarg,
                              HVP_VM_MAX_CPUS);
                goto out;
            }
            break;
        case 'b':
            if (strcmp(optarg, "auto") && strcmp(optarg, "soft") && strcmp(optarg, "kvm")) {
                hvp_cli_error("--backend", "unknown backend '%s' (auto, soft or kvm)", optarg);
                goto out;
            }
            backend = optarg;
            break;
        case 'C': console = optarg; break;
        case 'd': disks[ndisks++] = optarg; break;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        case ':':
            hvp_cli_error("run", "option '%s' needs a value (see 'hvp run --help')",
                          argv[optind - 1]);
            goto out;
        default:
            hvp_cli_error("run", "unknown option '%s' (see 'hvp run --help')", argv[optind - 1]);
            goto out;
        }
    }
    if (optind < argc) {
        hvp_cli_error("run", "unexpected argument '%s' (see 'hvp run --help')", argv[optind]);
        goto out;
    }
    if (!strcmp(console, "stdio")) {
        r.con = CON_STDIO;
    } else if (!strcmp(console, "none")) {
        r.con = CON_NONE;
    } else if (!strncmp(console, "unix:", 5)) {
        r.con = CON_UNIX;
        r.sock_path = console + 5;
    } else {
        hvp_cli_error("--console", "unknown console '%s' (stdio, none or unix:PATH)", console);
        goto out;
    }
    if (!kernel) {
        if (initrd) {
            hvp_cli_error("--initrd", "needs --kernel");
            goto out;
        }
        if (default_guest(kbuf, ibuf, sizeof(kbuf)) < 0) goto out;
        kernel = kbuf;
        initrd = ibuf[0] ? ibuf : NULL;
    }

    /* Disks: opened so that a bad image is reported now. */
    dh = calloc(ndisks + 1, sizeof(*dh));
    if (!dh) goto out;
    for (size_t i = 0; i < ndisks; i++) {
        char err[256];
        if (hvp_disk_open(disks[i], 0, &dh[i], err, sizeof(err)) < 0) {
            hvp_cli_error(disks[i], "%s", err);
            goto out;
        }
    }

    struct hvp_vm_config cfg = {
        .size = sizeof(cfg),
        .cpus = (uint32_t)cpus,
        .memory = memory,
        .backend = backend,
        .kernel = kernel,
        .initrd = initrd,
        .cmdline = append ? append : DEFAULT_APPEND,
        .console_out = console_out,
        .console_ctx = &r,
    };
    char err[512];
    int e = hvp_vm_create(&cfg, &r.vm, err, sizeof(err));
    if (e < 0) {
        const char *colon = strstr(err, ": ");
        /* The library names the file or option first: "what: why". */
        if (colon && colon - err < 256)
            fprintf(stderr, "hvp: %s\n", err);
        else
            hvp_cli_error("run", "%s", err);
        status = e == -ENODEV || e == -ENOMEM || e == -EIO ? RUN_ERROR : RUN_USAGE;
        goto out;
    }
    if (ndisks)
        fprintf(stderr,
                "hvp: run: note: %zu disk(s) opened but not given to the guest (no block "
                "device model yet)\n",
                ndisks);
    if (r.con == CON_UNIX && open_socket(&r, "--console") < 0) goto out;
    status = RUN_ERROR;
    if (pipe2(r.wake, O_CLOEXEC) < 0) {
        hvp_cli_error("run", "pipe: %s", strerror(errno));
        goto out;
    }

    pthread_t sig_thread, in_thread;
    bool sig_started = pthread_create(&sig_thread, NULL, signal_main, &r) == 0;
    if (r.con == CON_STDIO && tty_raw() < 0)
        fprintf(stderr, "hvp: run: cannot put the terminal in raw mode: %s\n", strerror(errno));
    bool in_started = r.con != CON_NONE && pthread_create(&in_thread, NULL, input_main, &r) == 0;

    enum hvp_vm_stop why = HVP_VM_STOP_NONE;
    e = hvp_vm_run(r.vm, &why);

    if (in_started) {
        write_all(r.wake[1], "x", 1);
        pthread_join(in_thread, NULL);
    }
    if (sig_started) {
        pthread_kill(sig_thread, SIGUSR2);
        pthread_join(sig_thread, NULL);
    }
    tty_restore();

    if (e < 0) {
        hvp_cli_error("run", "%s", hvp_vm_error(r.vm));
        status = RUN_ERROR;
        goto out;
    }
    int sig = atomic_load(&r.signo);
    switch (why) {
    case HVP_VM_STOP_POWEROFF: status = RUN_POWEROFF; break;
    case HVP_VM_STOP_RESET:
        hvp_cli_error("run", "guest reset: %s", hvp_vm_error(r.vm));
        status = RUN_RESET;
        break;
    case HVP_VM_STOP_TRIPLE_FAULT:
        hvp_cli_error("run", "triple fault: %s", hvp_vm_error(r.vm));
        status = RUN_TRIPLE_FAULT;
        break;
    case HVP_VM_STOP_HOST:
        if (sig) {
            hvp_cli_error("run", "stopped by signal %d (%s)", sig, strsignal(sig));
            status = 128 + sig;
        } else {
            status = RUN_POWEROFF; /* Ctrl-A X: the person asked for it */
        }
        break;
    default:
        hvp_cli_error("run", "%s", hvp_vm_error(r.vm));
        status = RUN_ERROR;
        break;
    }
out:
    tty_restore();
    hvp_vm_destroy(r.vm);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r.listen_fd >= 0) {
        close(r.listen_fd);
        unlink(r.sock_path);
    }
    int cl = atomic_load(&r.client_fd);
    if (cl >= 0) close(cl);
    if (r.wake[0] >= 0) close(r.wake[0]), close(r.wake[1]);
    for (size_t i = 0; dh && i < ndisks; i++)
        if (dh[i]) hvp_disk_close(dh[i]);
    free(dh);
    free(disks);
    return status;
}
