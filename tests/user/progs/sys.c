/* The system-call layer without libc (integer code only: it runs on the
 * smallest software CPU). Prints facts that are the same natively and under
 * hvp user: the initial stack, brk/mmap/mprotect/mremap, -EFAULT for bad
 * pointers, -ENOSYS, arch_prctl, a signal handler, pipes, exit status. */
#include <stddef.h>
#include <stdint.h>

typedef long (*fn)(void);
static long sc6(long n, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define SC(n, ...) sc6_(n, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
#define sc6_(n, a, b, c, d, e, f, ...)                                                             \
    sc6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}
static void puts_(const char *s)
{
    SC(1, 1, s, slen(s));
}
static void putn(long v)
{
    char b[24], *p = b + 23;
    int neg = v < 0;
    unsigned long u = neg ? -(unsigned long)v : (unsigned long)v;
    *p = 0;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (neg)
        *--p = '-';
    puts_(p);
}
static void kv(const char *k, long v)
{
    puts_(k);
    puts_(" ");
    putn(v);
    puts_("\n");
}
static int seq(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return *a == *b;
}

static volatile long got_sig, got_code;
static void handler(int sig, void *info, void *uc)
{
    (void)uc;
    got_sig = sig;
    got_code = ((int *)info)[2];
}
__asm__(".text\n restorer: mov $15, %eax\n syscall\n");
extern char restorer[];

extern char _start[];
static char fsbuf[64] __attribute__((aligned(16))) = "fs-data";

__attribute__((used)) static void cmain(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    kv("stack-aligned", ((uintptr_t)sp & 15) == 0);
    kv("argc", argc);
    for (long i = 1; i < argc; i++) {
        puts_("arg ");
        puts_(argv[i]);
        puts_("\n");
    }
    char **e = envp;
    while (*e)
        e++;
    long *aux = (long *)(e + 1);
    long at[64] = {0};
    int seen = 0;
    for (; aux[0]; aux += 2)
        if (aux[0] > 0 && aux[0] < 64)
            at[aux[0]] = aux[1], seen += aux[0] == 3 || aux[0] == 4 || aux[0] == 6 ||
                                          aux[0] == 9 || aux[0] == 15 || aux[0] == 23 ||
                                          aux[0] == 25 || aux[0] == 31;
    /* in a fixed order: Linux and hvp may order auxv differently */
    kv("AT_PAGESZ", at[6]);
    kv("AT_PHENT", at[4]);
    kv("AT_ENTRY-is-_start", at[9] == (long)_start);
    kv("AT_SECURE", at[23]);
    {
        const unsigned *ph = (const unsigned *)at[3];
        kv("AT_PHDR-type0-load-or-phdr", ph && (ph[0] == 1 || ph[0] == 6));
    }
    if (at[25]) {
        const unsigned char *r = (const unsigned char *)at[25];
        int nz = 0;
        for (int i = 0; i < 16; i++)
            nz |= r[i];
        kv("AT_RANDOM-nonzero", nz != 0);
    }
    if (at[15])
        puts_("AT_PLATFORM "), puts_((char *)at[15]), puts_("\n");
    if (at[31])
        kv("AT_EXECFN-is-argv0", seq((char *)at[31], argv[0]));
    kv("auxv-seen", seen);

    /* brk */
    long b0 = SC(12, 0);
    long b1 = SC(12, b0 + 100000);
    kv("brk-grows", b1 - b0);
    ((volatile char *)b0)[99999] = 1;
    kv("brk-shrinks", SC(12, b0) == b0);
    kv("brk-below-start", SC(12, 4096) == b0);

    /* mmap, munmap, mprotect, mremap, and EFAULT */
    char *m = (char *)SC(9, 0, 3 * 4096, 3, 0x22, -1, 0);
    kv("mmap-aligned", ((long)m & 4095) == 0);
    m[0] = 'a', m[4096] = 'b', m[8192] = 'c';
    kv("munmap-middle", SC(11, m + 4096, 4096));
    kv("write-unmapped", SC(1, 1, m + 4096, 1));
    kv("write-straddling", SC(1, 1, m + 4096 - 2, 4)); /* writes the 2 mapped bytes */
    puts_("\n");
    kv("mprotect-ro", SC(10, m, 4096, 1));
    long fds[1];
    int *p = (int *)fds;
    kv("pipe2", SC(293, p, 0x80000));
    SC(1, p[1], "pipe!", 5);
    kv("read-into-readonly", SC(0, p[0], m, 5));
    kv("read-ok", SC(0, p[0], m + 8192, 5));
    kv("read-back", m[8192] == 'p' && m[8196] == '!');
    kv("mprotect-unmapped", SC(10, m + 4096, 4096, 3));
    char *r = (char *)SC(9, 0, 4096, 3, 0x22, -1, 0);
    r[0] = 'x', r[4095] = 'y';
    char *r2 = (char *)SC(25, r, 4096, 64 * 4096, 1);
    kv("mremap-kept", r2[0] == 'x' && r2[4095] == 'y' && r2[64 * 4096 - 1] == 0);
    kv("mremap-no-move-fails-or-grows", SC(25, r2, 64 * 4096, 128 * 4096, 0) <= 0 ||
                                            ((char *)r2)[128 * 4096 - 1] == 0);
    kv("munmap-unaligned", SC(11, m + 1, 4096));
    kv("mmap-fixed", SC(9, m + 4096, 4096, 3, 0x32, -1, 0) == (long)(m + 4096));
    kv("fixed-zeroed", m[4096] == 0);

    /* a file mapping of this program */
    long fd = SC(2, argv[0], 0, 0);
    kv("open-self", fd >= 0);
    const char *f = (const char *)SC(9, 0, 8192, 1, 2, fd, 0);
    kv("mmap-file-elf", f[0] == 0x7f && f[1] == 'E' && f[2] == 'L' && f[3] == 'F');
    SC(3, fd);

    /* bad pointers, unknown calls */
    kv("open-bad-path", SC(2, 16, 0, 0));
    kv("stat-bad-buf", SC(4, "/", 16));
    kv("uname-bad", SC(63, 0x7000));
    kv("unknown-999", SC(999, 0));
    kv("close-bad-fd", SC(3, 999));
    kv("open-enoent", SC(2, "/nonexistent/x", 0, 0));

    /* identity, time */
    kv("gettid-is-pid", SC(186, 0) == SC(39, 0));
    kv("getppid-positive", SC(110, 0) > 0);
    long ts[2] = {0, 0};
    kv("clock_gettime", SC(228, 1, ts));
    kv("clock-nonzero", ts[0] > 0 || ts[1] > 0);
    char un[390];
    SC(63, un);
    puts_("uname ");
    puts_(un);
    puts_(" ");
    puts_(un + 4 * 65);
    puts_("\n");
    unsigned char rnd[16];
    kv("getrandom", SC(318, rnd, 16, 0));

    /* FS base: set, read back, use */
    kv("arch_prctl-set", SC(158, 0x1002, fsbuf));
    long fsv = 0;
    SC(158, 0x1003, &fsv);
    kv("arch_prctl-get", fsv == (long)fsbuf);
    long w0;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(w0));
    kv("fs-load", w0 == *(long *)fsbuf);

    /* signals: a handler, a blocked signal, the handler's context */
    long act[4] = {(long)handler, 0x04000000 | 4 /* SA_RESTORER|SA_SIGINFO */, (long)restorer, 0};
    kv("sigaction", SC(13, 10, act, 0, 8));
    long old[4];
    SC(13, 10, 0, old, 8);
    kv("sigaction-readback", old[0] == (long)handler);
    kv("kill-self", SC(62, SC(39, 0), 10));
    kv("handled", got_sig);
    kv("si_code-tkill-or-user", got_code == 0 || got_code == -6);
    long set = 1L << 9, oset = 0;
    kv("sigprocmask", SC(14, 0, &set, &oset, 8));
    SC(14, 0, 0, &oset, 8);
    kv("mask-read", oset == set);
    kv("dup2", SC(33, 1, 9));
    SC(1, 9, "via fd 9\n", 9);
    kv("fcntl-getfd", SC(72, 9, 1));
    kv("ioctl-unknown-on-pipe", SC(16, p[0], 0x12345678, 0) < 0);
    SC(231, 3);
}

__asm__(".globl _start\n_start:\n xor %ebp, %ebp\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n hlt\n");
