/* `hvp dis` as a user runs it: a small raw file, exact output lines, (bad)
 * bytes, --start/--length, error messages and exit codes. The hvp binary
 * comes from $HVP_EXE (set by meson). */
#include "hvp/x86.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct result {
    int status;
    char out[8192];
    char err[2048];
};

static void slurp(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
}

/* Runs hvp with argv (NULL-terminated, without argv[0]). */
static void run_hvp(struct result *res, const char *const *args)
{
    const char *exe = getenv("HVP_EXE");
    cr_assert(exe, "HVP_EXE is not set (run through meson test)");
    char outp[] = "/tmp/hvp-dis-out-XXXXXX", errp[] = "/tmp/hvp-dis-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    cr_assert(ofd >= 0 && efd >= 0);
    unlink(outp);
    unlink(errp);
    const char *argv[16] = {exe};
    int n = 1;
    for (; args[n - 1] && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    slurp(ofd, res->out, sizeof(res->out));
    slurp(efd, res->err, sizeof(res->err));
    close(ofd);
    close(efd);
}

/* Writes bytes to a fresh temporary file; the name goes to path. */
static void write_file(char *path, const void *bytes, size_t n)
{
    strcpy(path, "/tmp/hvp-dis-code-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

/* One output line as documented: offset, hex bytes padded to the longest
 * instruction (15 bytes), two spaces, text. */
static void line(char *out, size_t size, unsigned off, const char *hex, const char *text)
{
    snprintf(out, size, "%08x: %-44s  %s\n", off, hex, text);
}

/* Whether the decoder takes these bytes (it lands in stages). */
static bool decodes(const uint8_t *b, size_t n, unsigned mode)
{
    struct hvp_x86_insn in;
    return hvp_x86_decode(&in, b, n, mode) == (int)n;
}

Test(dis, output_format_is_exact)
{
    /* 06 is push es: no such instruction in 64-bit mode. */
    static const uint8_t code[] = {0x06};
    char path[64], want[128];
    write_file(path, code, sizeof(code));
    struct result r;
    run_hvp(&r, (const char *[]){"dis", path, NULL});
    unlink(path);
    cr_assert_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
    cr_assert_str_eq(r.out, "00000000: 06                                            (bad)\n");
    line(want, sizeof(want), 0, "06", "(bad)");
    cr_assert_str_eq(r.out, want);
    cr_assert_str_eq(r.err, "");
}

Test(dis, bad_bytes_and_truncation_continue_byte_by_byte)
{
    /* "48 8b" is a mov cut off by the end of the file: both bytes print as
     * (bad), one line each. */
    static const uint8_t code[] = {0x06, 0x48, 0x8b};
    char path[64], want[512] = "", l[128];
    write_file(path, code, sizeof(code));
    struct result r;
    run_hvp(&r, (const char *[]){"dis", path, NULL});
    unlink(path);
    cr_assert_eq(r.status, 0);
    line(l, sizeof(l), 0, "06", "(bad)");
    strcat(want, l);
    line(l, sizeof(l), 1, "48", "(bad)");
    strcat(want, l);
    line(l, sizeof(l), 2, "8b", "(bad)");
    strcat(want, l);
    cr_assert_str_eq(r.out, want);
}

Test(dis, instructions_64_bit)
{
    static const uint8_t code[] = {0x90, 0x48, 0x89, 0xe5, 0xeb, 0xfe, 0xc3};
    if (!decodes(code, 1, 64) || !decodes(code + 1, 3, 64) || !decodes(code + 4, 2, 64))
        cr_skip_test("the decoder does not decode nop / mov / jmp yet");
    char path[64], want[512] = "", l[128];
    write_file(path, code, sizeof(code));
    struct result r;
    run_hvp(&r, (const char *[]){"dis", path, NULL});
    line(l, sizeof(l), 0, "90", "nop");
    strcat(want, l);
    line(l, sizeof(l), 1, "48 89 e5", "mov rbp, rsp");
    strcat(want, l);
    line(l, sizeof(l), 4, "eb fe", "jmp 0x4");
    strcat(want, l);
    line(l, sizeof(l), 6, "c3", "ret");
    strcat(want, l);
    cr_expect_str_eq(r.out, want);

    /* --start/--length: only the jmp; its target uses the file offset */
    run_hvp(&r, (const char *[]){"dis", "--start", "4", "--length=2", path, NULL});
    line(want, sizeof(want), 4, "eb fe", "jmp 0x4");
    cr_expect_str_eq(r.out, want);

    /* a range that cuts the mov: (bad) for each byte of it */
    run_hvp(&r, (const char *[]){"dis", "--start", "0x1", "--length", "2", path, NULL});
    line(want, sizeof(want), 1, "48", "(bad)");
    line(l, sizeof(l), 2, "89", "(bad)");
    strcat(want, l);
    unlink(path);
    cr_expect_str_eq(r.out, want);
}

Test(dis, bits_16_and_32)
{
    static const uint8_t code[] = {0xb8, 0x01, 0x00, 0x00, 0x00};
    if (!decodes(code, 5, 32) || !decodes(code, 3, 16))
        cr_skip_test("the decoder does not decode mov r, imm yet");
    char path[64], want[512] = "", l[128];
    write_file(path, code, sizeof(code));
    struct result r;
    run_hvp(&r, (const char *[]){"dis", "--bits", "32", path, NULL});
    line(want, sizeof(want), 0, "b8 01 00 00 00", "mov eax, 0x1");
    cr_expect_str_eq(r.out, want);

    run_hvp(&r, (const char *[]){"dis", "--bits=16", path, NULL});
    line(want, sizeof(want), 0, "b8 01 00", "mov ax, 0x1");
    line(l, sizeof(l), 3, "00 00", "add byte ptr [bx+si*1], al");
    strcat(want, l);
    unlink(path);
    cr_expect_str_eq(r.out, want);
}

Test(dis, empty_range_prints_nothing)
{
    static const uint8_t code[] = {0x90, 0x90};
    char path[64];
    write_file(path, code, sizeof(code));
    struct result r;
    run_hvp(&r, (const char *[]){"dis", "--start", "2", path, NULL});
    cr_expect_eq(r.status, 0);
    cr_expect_str_eq(r.out, "");
    run_hvp(&r, (const char *[]){"dis", "--length", "0", path, NULL});
    cr_expect_eq(r.status, 0);
    cr_expect_str_eq(r.out, "");
    unlink(path);
}

Test(dis, help)
{
    struct result r;
    run_hvp(&r, (const char *[]){"dis", "--help", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: hvp dis [--bits 16|32|64] [--start OFFSET] [--length N] FILE"),
              "%s", r.out);
}

static void expect_error(const char *const *args, const char *msg)
{
    struct result r;
    run_hvp(&r, args);
    cr_expect_eq(r.status, 2, "exit %d for %s", r.status, msg);
    cr_expect_str_eq(r.err, msg);
    cr_expect_str_eq(r.out, "");
}

Test(dis, errors_are_one_line_and_exit_2)
{
    static const uint8_t code[] = {0x90, 0x90, 0x90, 0x90};
    char path[64], msg[256];
    write_file(path, code, sizeof(code));
    expect_error((const char *[]){"dis", NULL}, "hvp: dis: missing FILE (see 'hvp dis --help')\n");
    expect_error((const char *[]){"dis", "/nonexistent/code.bin", NULL},
                 "hvp: /nonexistent/code.bin: No such file or directory\n");
    expect_error((const char *[]){"dis", "/tmp", NULL}, "hvp: /tmp: Is a directory\n");
    expect_error((const char *[]){"dis", "--bits", "8", path, NULL},
                 "hvp: dis: --bits must be 16, 32 or 64, not '8'\n");
    expect_error((const char *[]){"dis", "--frob", path, NULL},
                 "hvp: dis: unknown option '--frob' (see 'hvp dis --help')\n");
    expect_error((const char *[]){"dis", path, "--start", NULL},
                 "hvp: dis: --start needs a value\n");
    expect_error((const char *[]){"dis", "--start", "12x", path, NULL},
                 "hvp: dis: --start: not an offset: '12x'\n");
    expect_error((const char *[]){"dis", "--length", "-1", path, NULL},
                 "hvp: dis: --length: not a byte count: '-1'\n");
    snprintf(msg, sizeof(msg), "hvp: dis: --start 0x5 is past the end of %s (0x4 bytes)\n", path);
    expect_error((const char *[]){"dis", "--start", "5", path, NULL}, msg);
    snprintf(msg, sizeof(msg), "hvp: dis: more than one FILE ('%s', 'x')\n", path);
    expect_error((const char *[]){"dis", path, "x", NULL}, msg);
    unlink(path);
}

Test(dis, large_file_is_fast_and_complete)
{
    /* 4 MiB of (bad) or nops: every byte accounted for, one line each. */
    size_t n = 4u << 20;
    uint8_t *code = malloc(n);
    cr_assert(code);
    memset(code, 0x90, n);
    char path[64];
    write_file(path, code, n);
    free(code);
    const char *exe = getenv("HVP_EXE");
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' dis '%s' | wc -l", exe, path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    unsigned long lines = 0;
    cr_assert_eq(fscanf(p, "%lu", &lines), 1);
    pclose(p);
    unlink(path);
    cr_expect_eq(lines, (unsigned long)n, "%lu lines for %zu one-byte instructions", lines, n);
}
