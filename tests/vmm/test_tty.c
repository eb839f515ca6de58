/* `hvp run` under a pseudo-terminal, as a person meets it: the terminal goes
 * raw while the guest runs, typed characters reach the guest and its echo
 * comes back at once, Ctrl-A H lists the escapes, Ctrl-A X quits with
 * status 0, SIGTERM stops with 128+15, and every path restores the
 * terminal. The guest is a synthetic bzImage that echoes COM1; the test
 * SKIPs when no backend can run it here. */
#define _GNU_SOURCE /* ptsname */
#include "bzimage.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* 64-bit: poll LSR.DR, read RBR, write it to THR, forever. */
static const uint8_t echo_code[] = {
    0x66, 0xba, 0xfd, 0x03, /* mov dx, 0x3fd */
    0xec,                   /* in al, dx */
    0xa8, 0x01,             /* test al, 1 */
    0x74, 0xfb,             /* jz -5 */
    0x66, 0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
    0xec,                   /* in al, dx */
    0xee,                   /* out dx, al */
    0xeb, 0xef,             /* jmp 0 */
};

struct child {
    pid_t pid;
    int master, slave; /* slave: our own handle, to read its termios */
    struct termios before;
    char out[8192];
    size_t n;
};

static const char *hvp_path(void)
{
    const char *p = getenv("HVP");
    cr_assert(p && *p, "HVP (the hvp binary) is not set");
    return p;
}

static void write_image(char *path)
{
    struct fake_bz f = fake_bz_default();
    f.code = echo_code;
    f.code_len = sizeof(echo_code);
    size_t len;
    uint8_t *img = fake_bz_build(&f, &len);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, img, len), (ssize_t)len);
    close(fd);
    free(img);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads what the child wrote until `want` shows up or ms pass. */
static bool read_until(struct child *c, const char *want, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        c->out[c->n] = 0;
        if (want && strstr(c->out, want)) return true;
        int64_t left = (int64_t)(end - now_ms());
        if (left <= 0) return false;
        struct pollfd pf = {.fd = c->master, .events = POLLIN};
        if (poll(&pf, 1, (int)left) <= 0) continue;
        ssize_t k = read(c->master, c->out + c->n, sizeof(c->out) - 1 - c->n);
        if (k <= 0) return want == NULL;
        c->n += (size_t)k;
    }
}

static bool is_raw(int fd)
{
    struct termios t;
    return tcgetattr(fd, &t) == 0 && !(t.c_lflag & (ICANON | ECHO));
}

static void start(struct child *c, char *image)
{
    memset(c, 0, sizeof(*c));
    struct termios t;
    memset(&t, 0, sizeof(t));
    cfmakeraw(&t);
    /* A cooked terminal as a shell leaves it. */
    t.c_iflag = ICRNL | IXON;
    t.c_oflag = OPOST | ONLCR;
    t.c_lflag = ISIG | ICANON | ECHO | ECHOE | ECHOK | IEXTEN;
    t.c_cflag = CS8 | CREAD;
    t.c_cc[VINTR] = 3, t.c_cc[VEOF] = 4, t.c_cc[VMIN] = 1;
    c->pid = forkpty(&c->master, NULL, &t, NULL);
    cr_assert_geq(c->pid, 0);
    if (c->pid == 0) {
        execl(hvp_path(), "hvp", "run", "--kernel", image, "--memory", "64M", "--console", "stdio",
              (char *)NULL);
        _exit(127);
    }
    c->slave = open(ptsname(c->master), O_RDWR | O_NOCTTY);
    cr_assert_geq(c->slave, 0);
    cr_assert_eq(tcgetattr(c->slave, &c->before), 0);
    /* Wait for raw mode, or for hvp to give up (no backend). */
    uint64_t end = now_ms() + 20000;
    while (!is_raw(c->slave)) {
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            read_until(c, NULL, 200);
            close(c->slave);
            close(c->master);
            unlink(image);
            if (strstr(c->out, "--backend"))
                cr_skip_test("no backend can run a VM here: %s", c->out);
            cr_assert_fail("hvp exited (status 0x%x) before the terminal went raw: %s", st, c->out);
        }
        cr_assert_lt(now_ms(), end, "the terminal never went raw");
        usleep(10000);
    }
}

static int finish(struct child *c)
{
    int st = 0;
    uint64_t end = now_ms() + 10000;
    while (waitpid(c->pid, &st, WNOHANG) != c->pid) {
        read_until(c, "\x01\x02", 50); /* drain, so the child never blocks on output */
        if (now_ms() > end) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
            cr_assert_fail("hvp did not exit: %s", c->out);
        }
    }
    struct termios after;
    cr_assert_eq(tcgetattr(c->slave, &after), 0);
    cr_assert_eq(after.c_lflag, c->before.c_lflag, "local modes not restored: 0x%x, was 0x%x",
                 after.c_lflag, c->before.c_lflag);
    cr_assert_eq(after.c_iflag, c->before.c_iflag, "input modes not restored");
    cr_assert_eq(after.c_oflag, c->before.c_oflag, "output modes not restored");
    close(c->slave);
    close(c->master);
    return st;
}

Test(tty, echo_escape_help_and_quit, .timeout = 60)
{
    char image[] = "/tmp/hvp-tty-XXXXXX";
    write_image(image);
    struct child c;
    start(&c, image);
    /* Each character comes back on its own: nothing waits for a newline. */
    cr_assert_eq(write(c.master, "h", 1), 1);
    cr_assert(read_until(&c, "h", 5000), "the guest's echo of 'h' did not come: %s", c.out);
    cr_assert_eq(write(c.master, "i", 1), 1);
    cr_assert(read_until(&c, "hi", 5000), "no echo of 'i': %s", c.out);
    cr_assert_eq(write(c.master, "\x01h", 2), 2);
    cr_assert(read_until(&c, "C-a x", 5000), "Ctrl-A H lists no escapes: %s", c.out);
    cr_assert_eq(write(c.master, "\x01x", 2), 2);
    int st = finish(&c);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "Ctrl-A X: status 0x%x", st);
    unlink(image);
}

Test(tty, sigterm_restores_terminal, .timeout = 60)
{
    char image[] = "/tmp/hvp-tty-XXXXXX";
    write_image(image);
    struct child c;
    start(&c, image);
    kill(c.pid, SIGTERM);
    int st = finish(&c);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM, "SIGTERM: status 0x%x (%s)", st,
              c.out);
    cr_assert(strstr(c.out, "signal"), "no reason given: %s", c.out);
    unlink(image);
}
