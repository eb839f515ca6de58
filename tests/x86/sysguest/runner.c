/* System test guests: runs each ROM (tests/x86/sysguest/<name>.asm, see
 * README.md) on hvp's software CPU from reset, like a PC, and again under
 * qemu-system-x86_64 -accel tcg, and compares the two: outcome (the exit
 * port's code, a triple fault, ...) and the debug port's output, byte for
 * byte. Plain TAP, two cases per ROM:
 *   ok 1 - <name>: hvp <outcome> as expected
 *   ok 2 - <name>: qemu agrees (<n> bytes)      (or # SKIP <why>)
 *
 *   sysguest [--start auto|reset|long] [--no-qemu] [--qemu PATH]
 *            [--keep DIR] [--timeout S] [--trap] [--verbose] ROM...
 *
 * --start auto (default) runs from reset and, while hvp_cpu cannot run
 * real mode (an INTERNAL exit before the first instruction), starts the
 * guest at the long-mode entry its header names instead. The guest prints
 * nothing before that entry, so both starts give the same output.
 * --trap makes every exception stop hvp's run and print where it happened.
 * Environment: HVP_QEMU overrides the QEMU binary ("none" skips it). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hvp/cpu.h"

extern char **environ;

#define MIB        (1024ull * 1024)
#define LOW_RAM    0xA0000ull /* RAM below the VGA/ROM hole */
#define MAX_OUTPUT (256u * 1024)
#define BUDGET     2000000000ull /* instructions: a guest is a short program */

/* The ROM header (sysguest.inc, SG_HEADER), at ROM offset 0. */
#define HDR_LONG     1u
#define HDR_SHUTDOWN 2u
#define HDR_NO_QEMU  4u
#define HDR_KNOWN    8u
struct header {
    char magic[8]; /* "HVPSG" 1 0 0 */
    uint32_t flags;
    uint32_t ram_mib;
    uint64_t entry, cr0, cr3, cr4, efer, gdt_base;
    uint16_t gdt_limit, cs, ds, pad;
    char no_qemu_why[64]; /* HDR_NO_QEMU: why QEMU's half is skipped */
    char known_bug[64];   /* HDR_KNOWN: the hvp bug the guest exposes */
};

struct opts {
    const char *start;           /* auto, reset, long */
    const char *qemu;            /* NULL: search PATH */
    const char *keep;            /* directory for the outputs, or NULL */
    bool no_qemu, verbose, trap; /* trap: every exception exits (debugging a guest) */
    double timeout;
};

struct output {
    char *buf;
    size_t len;
};

struct result {
    char outcome[256]; /* "exit 0", "shutdown", "hlt", "timeout", "error: ..." */
    struct output out;
    bool skipped;
    char why[200];
    const char *start; /* where hvp started */
};

static void out_add(struct output *o, char c)
{
    if (o->len < MAX_OUTPUT) o->buf[o->len++] = c;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the hvp half ---- */

/* Watchdog: kicks the CPU at the deadline; if hvp_cpu_run still has not
 * returned a few seconds later, the host side hangs: fail loudly. */
struct watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hvp_cpu *cpu;
    double timeout;
    bool done, kicked;
    const char *name;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)w->timeout;
    dl.tv_nsec += (long)((w->timeout - (double)(time_t)w->timeout) * 1e9);
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT) break;
    if (!w->done) {
        w->kicked = true;
        hvp_cpu_kick(w->cpu);
        dl.tv_sec += 5;
        while (!w->done)
            if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT) break;
        if (!w->done) {
            printf("not ok - %s: hvp_cpu_run did not return after a kick (host hang)\n", w->name);
            fflush(stdout);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static struct hvp_cpu_segment seg_from_desc(uint16_t sel, uint64_t d)
{
    struct hvp_cpu_segment s;
    s.selector = sel;
    s.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
    s.limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    s.attr = (uint16_t)(((d >> 40) & 0xff) | (((d >> 52) & 0xf) << 12));
    if (s.attr & 0x8000) s.limit = (s.limit << 12) | 0xfff;
    return s;
}

/* The state sysguest.inc's trampoline leaves at the long-mode entry. */
static int start_long(struct hvp_cpu *cpu, const struct header *h, const uint8_t *rom,
                      size_t rom_size, char *why, size_t whylen)
{
    uint64_t rom_base = 0x100000 - rom_size;
    if (h->gdt_base < rom_base || h->gdt_base + h->gdt_limit + 1 > 0x100000 ||
        (h->cs | h->ds) & 4 || h->cs + 8u > h->gdt_limit + 1u || h->ds + 8u > h->gdt_limit + 1u) {
        snprintf(why, whylen, "bad long-mode header (GDT outside the ROM)");
        return -EINVAL;
    }
    const uint8_t *gdt = rom + (h->gdt_base - rom_base);
    uint64_t dcs, dds;
    memcpy(&dcs, gdt + (h->cs & ~7u), 8);
    memcpy(&dds, gdt + (h->ds & ~7u), 8);
    struct hvp_cpu_state st;
    int rc = hvp_cpu_get_state(cpu, &st);
    if (rc) return rc;
    st.cr0 = h->cr0;
    st.cr3 = h->cr3;
    st.cr4 = h->cr4;
    st.efer = h->efer;
    st.gdtr = (struct hvp_cpu_table){h->gdt_base, h->gdt_limit};
    for (int i = 0; i < 6; i++)
        st.seg[i] = seg_from_desc(h->ds, dds);
    st.seg[1] = seg_from_desc(h->cs, dcs);
    st.rip = h->entry;
    st.rflags = 2;
    rc = hvp_cpu_set_state(cpu, &st);
    if (rc) snprintf(why, whylen, "long-mode state refused: %s", hvp_cpu_error(cpu));
    return rc;
}

static void run_hvp(const char *name, const struct header *h, uint8_t *rom, size_t rom_size,
                    const struct opts *o, struct result *res)
{
    struct hvp_cpu *cpu = NULL;
    uint8_t *ram = MAP_FAILED;
    size_t ram_size = (size_t)h->ram_mib * MIB;
    struct hvp_cpu_config cfg = {.size = sizeof cfg,
                                 .model = HVP_CPU_MODEL_SYSTEM,
                                 .exception_exit_bitmap = o->trap ? 0xffffffffu : 0};
    if (hvp_cpu_create(&cfg, &cpu)) {
        snprintf(res->outcome, sizeof res->outcome, "error: cannot create the CPU");
        return;
    }
    ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned rx = HVP_CPU_PROT_READ | HVP_CPU_PROT_EXEC;
    if (ram == MAP_FAILED || hvp_cpu_map(cpu, 0, LOW_RAM, ram, 7) ||
        hvp_cpu_map(cpu, 0x100000, ram_size - 0x100000, ram + 0x100000, 7) ||
        hvp_cpu_map(cpu, 0x100000 - rom_size, rom_size, rom, rx) ||
        hvp_cpu_map(cpu, 0x100000000ull - rom_size, rom_size, rom, rx)) {
        snprintf(res->outcome, sizeof res->outcome, "error: cannot map memory: %s",
                 cpu ? hvp_cpu_error(cpu) : "");
        goto out;
    }

    struct watchdog w = {.cpu = cpu, .timeout = o->timeout, .name = name};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t wt;
    bool have_wd = pthread_create(&wt, NULL, watchdog_main, &w) == 0;

    res->start = "reset";
    bool started = false;
    if (!strcmp(o->start, "long")) {
        if (!(h->flags & HDR_LONG)) {
            res->skipped = true;
            snprintf(res->why, sizeof res->why, "the guest has no long-mode entry");
            goto stop;
        }
        if (start_long(cpu, h, rom, rom_size, res->why, sizeof res->why)) {
            snprintf(res->outcome, sizeof res->outcome, "error: %s", res->why);
            goto stop;
        }
        res->start = "long-mode entry";
    }
    uint64_t total = 0;
    for (;;) {
        struct hvp_cpu_exit ex;
        struct hvp_cpu_stats before, after;
        hvp_cpu_get_stats(cpu, &before);
        int rc = hvp_cpu_run(cpu, 1000000, &ex);
        hvp_cpu_get_stats(cpu, &after);
        total += after.instructions - before.instructions;
        if (rc) {
            snprintf(res->outcome, sizeof res->outcome, "error: hvp_cpu_run returned %d: %s", rc,
                     hvp_cpu_error(cpu));
            break;
        }
        if (ex.reason == HVP_CPU_EXIT_INTERNAL && !started && total == 0 &&
            !strcmp(o->start, "auto")) {
            /* real mode not there yet: start at the long-mode entry */
            if (!(h->flags & HDR_LONG)) {
                res->skipped = true;
                snprintf(res->why, sizeof res->why, "hvp_cpu cannot start from reset (%s)",
                         hvp_cpu_error(cpu));
                break;
            }
            printf("# %s: hvp_cpu cannot run from reset (%s): starting at the long-mode entry\n",
                   name, hvp_cpu_error(cpu));
            if (start_long(cpu, h, rom, rom_size, res->why, sizeof res->why)) {
                snprintf(res->outcome, sizeof res->outcome, "error: %s", res->why);
                break;
            }
            res->start = "long-mode entry";
            started = true;
            continue;
        }
        started = true;
        struct hvp_cpu_state st;
        switch (ex.reason) {
        case HVP_CPU_EXIT_BUDGET:
            if (total < BUDGET) continue;
            snprintf(res->outcome, sizeof res->outcome, "timeout (%" PRIu64 " instructions)",
                     total);
            break;
        case HVP_CPU_EXIT_KICK: snprintf(res->outcome, sizeof res->outcome, "timeout"); break;
        case HVP_CPU_EXIT_IO:
            if (ex.u.io.string) {
                snprintf(res->outcome, sizeof res->outcome,
                         "error: string I/O to port %#x (the runner does not do it)", ex.u.io.port);
                break;
            }
            if (ex.u.io.write) {
                if (ex.u.io.port == 0xe9)
                    out_add(&res->out, (char)ex.u.io.data);
                else if (ex.u.io.port == 0xf4) {
                    snprintf(res->outcome, sizeof res->outcome, "exit %u", ex.u.io.data & 0xff);
                    break;
                } else if (o->verbose)
                    printf("# %s: OUT %#x <- %#x ignored\n", name, ex.u.io.port, ex.u.io.data);
                continue;
            }
            /* IN: the debug port reads back 0xE9 (as QEMU's); others float high */
            hvp_cpu_get_state(cpu, &st);
            {
                uint64_t v = ex.u.io.port == 0xe9 ? 0xe9 : 0xffffffffu;
                uint64_t m = ex.u.io.size == 4 ? 0xffffffffull : ex.u.io.size == 2 ? 0xffff : 0xff;
                st.gpr[0] = ex.u.io.size == 4 ? (v & m) : ((st.gpr[0] & ~m) | (v & m));
            }
            hvp_cpu_set_state(cpu, &st);
            continue;
        case HVP_CPU_EXIT_MMIO:
            if (ex.u.mmio.write && ex.u.mmio.size && ex.insn_len) {
                /* writes to ROM or to nothing are dropped, as on a PC */
                hvp_cpu_get_state(cpu, &st);
                st.rip += ex.insn_len;
                hvp_cpu_set_state(cpu, &st);
                if (o->verbose)
                    printf("# %s: MMIO write to %#" PRIx64 " dropped\n", name, ex.u.mmio.gpa);
                continue;
            }
            snprintf(res->outcome, sizeof res->outcome, "error: MMIO %s at %#" PRIx64,
                     ex.u.mmio.size ? "read" : "fetch", ex.u.mmio.gpa);
            break;
        case HVP_CPU_EXIT_HLT: snprintf(res->outcome, sizeof res->outcome, "hlt"); break;
        case HVP_CPU_EXIT_SHUTDOWN: snprintf(res->outcome, sizeof res->outcome, "shutdown"); break;
        case HVP_CPU_EXIT_INTERNAL:
            snprintf(res->outcome, sizeof res->outcome, "error: internal: %s", hvp_cpu_error(cpu));
            break;
        case HVP_CPU_EXIT_EXCEPTION:
            hvp_cpu_get_state(cpu, &st);
            snprintf(res->outcome, sizeof res->outcome,
                     "exception %u error %#x at %#" PRIx64 " cr2 %#" PRIx64, ex.u.exception.vector,
                     ex.u.exception.error_code, st.rip, ex.u.exception.cr2);
            break;
        default:
            snprintf(res->outcome, sizeof res->outcome, "error: exit reason %u", ex.reason);
            break;
        }
        break;
    }
    if (o->verbose) {
        struct hvp_cpu_stats s;
        hvp_cpu_get_stats(cpu, &s);
        printf("# %s: hvp ran %" PRIu64 " instructions\n", name, s.instructions);
    }
stop:
    if (have_wd) {
        pthread_mutex_lock(&w.mu);
        w.done = true;
        pthread_cond_signal(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(wt, NULL);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
out:
    if (ram != MAP_FAILED) munmap(ram, ram_size);
    hvp_cpu_destroy(cpu);
}

/* ---- the QEMU half ---- */

static char *find_qemu(const struct opts *o)
{
    const char *env = getenv("HVP_QEMU");
    if (o->qemu) return strdup(o->qemu);
    if (env) return strcmp(env, "none") ? strdup(env) : NULL;
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char *copy = strdup(path), *save = NULL, *found = NULL;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/qemu-system-x86_64", d);
        if (!access(p, X_OK)) found = strdup(p);
    }
    free(copy);
    return found;
}

static int read_file(const char *path, struct output *o)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    o->len = fread(o->buf, 1, MAX_OUTPUT, f);
    fclose(f);
    return 0;
}

static void run_qemu(const char *qemu, const char *rom_path, const struct header *h,
                     const char *dir, const char *name, const struct opts *o, struct result *res)
{
    char out_path[4096], mem[32], dbg[4200], log_path[4096];
    snprintf(out_path, sizeof out_path, "%s/%s.qemu.out", dir, name);
    snprintf(log_path, sizeof log_path, "%s/%s.qemu.log", dir, name);
    snprintf(dbg, sizeof dbg, "file:%s", out_path);
    snprintf(mem, sizeof mem, "%u", h->ram_mib);
    unlink(out_path);
    char *argv[] = {(char *)qemu,
                    "-M",
                    "pc",
                    "-accel",
                    "tcg",
                    "-cpu",
                    "max",
                    "-nodefaults",
                    "-display",
                    "none",
                    "-no-reboot",
                    "-m",
                    mem,
                    "-bios",
                    (char *)rom_path,
                    "-debugcon",
                    dbg,
                    "-device",
                    "isa-debug-exit,iobase=0xf4,iosize=0x01",
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, qemu, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        res->skipped = true;
        snprintf(res->why, sizeof res->why, "cannot start %s: %s", qemu, strerror(rc));
        return;
    }
    uint64_t deadline = now_ns() + (uint64_t)(o->timeout * 1e9);
    int status = 0;
    bool timed_out = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) break;
        if (now_ns() > deadline && !timed_out) {
            timed_out = true;
            kill(pid, SIGKILL);
            continue;
        }
        usleep(2000);
    }
    read_file(out_path, &res->out);
    if (timed_out)
        snprintf(res->outcome, sizeof res->outcome, "timeout");
    else if (WIFEXITED(status) && (WEXITSTATUS(status) & 1))
        snprintf(res->outcome, sizeof res->outcome, "exit %d", WEXITSTATUS(status) >> 1);
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(res->outcome, sizeof res->outcome, "shutdown");
    else {
        struct output log = {malloc(MAX_OUTPUT), 0};
        if (log.buf) read_file(log_path, &log);
        int n = (int)(log.len > 150 ? 150 : log.len);
        snprintf(res->outcome, sizeof res->outcome, "error: qemu status %#x: %.*s", status, n,
                 log.buf ? log.buf : "");
        for (char *p = res->outcome; *p; p++)
            if (*p == '\n') *p = ' ';
        free(log.buf);
    }
    if (!o->keep) {
        unlink(out_path);
        unlink(log_path);
    }
}

/* ---- TAP ---- */

static void diag_output(const char *who, const struct output *o)
{
    printf("# --- %s output (%zu bytes) ---\n# ", who, o->len);
    for (size_t i = 0; i < o->len; i++) {
        char c = o->buf[i];
        if (c == '\n')
            printf(i + 1 < o->len ? "\n# " : "");
        else
            putchar(c >= 32 && c < 127 ? c : '?');
    }
    printf("\n");
}

/* Where the two outputs part: line and column, for the diagnostic. */
static void diag_diff(const struct output *a, const struct output *b)
{
    size_t i = 0, line = 1, ls = 0;
    while (i < a->len && i < b->len && a->buf[i] == b->buf[i]) {
        if (a->buf[i] == '\n') {
            line++;
            ls = i + 1;
        }
        i++;
    }
    printf("# outputs differ at line %zu, column %zu\n", line, i - ls + 1);
    for (int k = 0; k < 2; k++) {
        const struct output *o = k ? b : a;
        size_t e = ls;
        while (e < o->len && o->buf[e] != '\n')
            e++;
        printf("#   %s: %.*s\n", k ? "qemu" : "hvp ", (int)(e - ls), o->buf + ls);
    }
}

static int load_rom(const char *path, uint8_t **rom, size_t *size, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb)) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    *size = (size_t)sb.st_size;
    if (*size != 0x10000 && *size != 0x20000) {
        snprintf(why, whylen, "%s: a ROM is 64 or 128 KiB, not %zu bytes", path, *size);
        close(fd);
        return -1;
    }
    /* writable on the host only: the guest's writes go to MMIO exits */
    *rom = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (*rom == MAP_FAILED) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static const char *base_name(const char *path, char *buf, size_t n)
{
    const char *s = strrchr(path, '/');
    snprintf(buf, n, "%s", s ? s + 1 : path);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = 0;
    return buf;
}

int main(int argc, char **argv)
{
    struct opts o = {.start = "auto", .timeout = 20};
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        const char *a = argv[first];
        if (!strcmp(a, "--start") && first + 1 < argc)
            o.start = argv[++first];
        else if (!strcmp(a, "--no-qemu"))
            o.no_qemu = true;
        else if (!strcmp(a, "--qemu") && first + 1 < argc)
            o.qemu = argv[++first];
        else if (!strcmp(a, "--keep") && first + 1 < argc)
            o.keep = argv[++first];
        else if (!strcmp(a, "--timeout") && first + 1 < argc)
            o.timeout = atof(argv[++first]);
        else if (!strcmp(a, "--trap"))
            o.trap = true;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
            o.verbose = true;
        else
            break;
    }
    if (first >= argc ||
        (strcmp(o.start, "auto") && strcmp(o.start, "reset") && strcmp(o.start, "long")) ||
        o.timeout <= 0) {
        fprintf(stderr, "usage: sysguest [--start auto|reset|long] [--no-qemu] [--qemu PATH] "
                        "[--keep DIR] [--timeout S] [--trap] [--verbose] ROM...\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    char *qemu = o.no_qemu ? NULL : find_qemu(&o);
    char tmp[] = "/tmp/hvp-sysguest-XXXXXX";
    const char *dir = o.keep;
    if (!dir && qemu) dir = mkdtemp(tmp);
    if (o.keep) mkdir(o.keep, 0755);

    int nrom = argc - first, failed = 0;
    printf("1..%d\n", 2 * nrom);
    for (int i = 0; i < nrom; i++) {
        const char *path = argv[first + i];
        char namebuf[256];
        const char *name = base_name(path, namebuf, sizeof namebuf);
        int n1 = 2 * i + 1, n2 = 2 * i + 2;
        uint8_t *rom;
        size_t rom_size;
        char why[300];
        if (load_rom(path, &rom, &rom_size, why, sizeof why)) {
            printf("not ok %d - %s: %s\nnot ok %d - %s: qemu (no ROM)\n", n1, name, why, n2, name);
            failed += 2;
            continue;
        }
        struct header h;
        memcpy(&h, rom, sizeof h);
        if (memcmp(h.magic, "HVPSG\1", 6) || h.ram_mib < 2 || h.ram_mib > 3072) {
            printf("not ok %d - %s: no sysguest header (version 1) at ROM offset 0\n"
                   "not ok %d - %s: qemu (no header)\n",
                   n1, name, n2, name);
            failed += 2;
            munmap(rom, rom_size);
            continue;
        }
        const char *expected = (h.flags & HDR_SHUTDOWN) ? "shutdown" : "exit 0";
        bool known = h.flags & HDR_KNOWN;

        struct result hv = {.out = {malloc(MAX_OUTPUT), 0}};
        struct result qm = {.out = {malloc(MAX_OUTPUT), 0}};
        if (!hv.out.buf || !qm.out.buf) return 1;
        uint64_t t0 = now_ns();
        run_hvp(name, &h, rom, rom_size, &o, &hv);
        double hvp_s = (double)(now_ns() - t0) / 1e9;
        if (hv.skipped) {
            printf("ok %d - %s: hvp # SKIP %s\n", n1, name, hv.why);
        } else {
            bool ok = !strcmp(hv.outcome, expected);
            diag_output("hvp", &hv.out);
            char todo[100] = "";
            if (known)
                snprintf(todo, sizeof todo, " # TODO known hvp bug: %.*s",
                         (int)strnlen(h.known_bug, sizeof h.known_bug), h.known_bug);
            printf("%s %d - %s: hvp from %s: %s%s%s (%.2f s)%s\n", ok ? "ok" : "not ok", n1, name,
                   hv.start, hv.outcome, ok ? " as expected" : ", expected ", ok ? "" : expected,
                   hvp_s, todo);
            failed += !ok && !known;
            if (o.keep) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s.hvp.out", o.keep, name);
                FILE *f = fopen(p, "wb");
                if (f) {
                    fwrite(hv.out.buf, 1, hv.out.len, f);
                    fclose(f);
                }
            }
        }

        if (h.flags & HDR_NO_QEMU) {
            printf("ok %d - %s: qemu # SKIP the guest says QEMU differs: %.*s\n", n2, name,
                   (int)strnlen(h.no_qemu_why, sizeof h.no_qemu_why), h.no_qemu_why);
        } else if (!qemu) {
            printf("ok %d - %s: qemu # SKIP %s\n", n2, name,
                   o.no_qemu ? "--no-qemu" : "qemu-system-x86_64 not found (HVP_QEMU, PATH)");
        } else if (!dir) {
            printf("ok %d - %s: qemu # SKIP cannot create a temporary directory\n", n2, name);
        } else {
            t0 = now_ns();
            run_qemu(qemu, path, &h, dir, name, &o, &qm);
            double qemu_s = (double)(now_ns() - t0) / 1e9;
            if (qm.skipped) {
                printf("ok %d - %s: qemu # SKIP %s\n", n2, name, qm.why);
            } else if (hv.skipped || known) {
                /* nothing to compare: the guest itself must still be right */
                bool ok = !strcmp(qm.outcome, expected);
                if (!ok) diag_output("qemu", &qm.out);
                printf("%s %d - %s: qemu alone (hvp %s): %s%s%s (%.2f s)\n", ok ? "ok" : "not ok",
                       n2, name, known ? "has a known bug" : "skipped", qm.outcome,
                       ok ? " as expected" : ", expected ", ok ? "" : expected, qemu_s);
                failed += !ok;
            } else {
                bool same_out =
                    hv.out.len == qm.out.len && !memcmp(hv.out.buf, qm.out.buf, hv.out.len);
                bool ok = same_out && !strcmp(hv.outcome, qm.outcome);
                if (!same_out) {
                    diag_output("qemu", &qm.out);
                    diag_diff(&hv.out, &qm.out);
                }
                if (ok)
                    printf("ok %d - %s: qemu agrees: %s, %zu bytes of output (%.2f s)\n", n2, name,
                           qm.outcome, qm.out.len, qemu_s);
                else
                    printf("not ok %d - %s: qemu: %s (hvp: %s), output %s\n", n2, name, qm.outcome,
                           hv.outcome, same_out ? "the same" : "differs");
                failed += !ok;
            }
        }
        free(hv.out.buf);
        free(qm.out.buf);
        munmap(rom, rom_size);
    }
    if (dir && !o.keep) rmdir(dir);
    free(qemu);
    return failed ? 1 : 0;
}
