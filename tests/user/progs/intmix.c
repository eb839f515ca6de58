/* Integer work, memory and signals: qsort, big allocations (mmap, mremap),
 * 128-bit arithmetic, strings, setjmp, a handled signal. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static volatile sig_atomic_t got;
static void on_usr1(int sig)
{
    got = sig;
}

static jmp_buf jb;
static void on_segv(int sig)
{
    longjmp(jb, sig);
}

int main(void)
{
    uint32_t x = 2463534242u;
    size_t n = 200000;
    uint32_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        v[i] = x;
    }
    qsort(v, n, sizeof *v, cmp);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i += 97)
        h = (h ^ v[i]) * 1099511628211ull;
    printf("sorted %u %u %u hash %016llx\n", v[0], v[n / 2], v[n - 1], (unsigned long long)h);
    v = realloc(v, 8 * n * sizeof *v); /* large: mremap */
    memset(v + n, 0xab, 7 * n * sizeof *v);
    printf("realloc %08x %08x\n", v[n - 1], v[8 * n - 1]);
    free(v);
    unsigned __int128 p = (unsigned __int128)0xfedcba9876543210ull * 0x123456789abcdefull;
    printf("u128 %016llx%016llx div %llu mod %llu\n", (unsigned long long)(p >> 64),
           (unsigned long long)p, (unsigned long long)(p / 1000000007u),
           (unsigned long long)(p % 1000000007u));
    int64_t s = -1234567890123456789;
    printf("sdiv %lld %lld %lld\n", (long long)(s / 7), (long long)(s % 7), (long long)(s >> 3));
    char str[256];
    snprintf(str, sizeof str, "%s-%d-%x-%o-%c", "abc", -42, 0xbeef, 0755, 'Z');
    printf("str %s len %zu chr %s cmp %d\n", str, strlen(str), strchr(str, 'b'),
           strcmp(str, "abc") > 0);
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    printf("signal %d\n", got);
    signal(SIGSEGV, on_segv);
    int r = setjmp(jb);
    if (!r)
        *(volatile int *)16 = 1;
    printf("recovered from signal %d\n", r);
    return 0;
}
