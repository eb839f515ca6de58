/* The guest side of bench-cpu: one kernel per run, picked by argv[1], sized
 * by argv[2] (a repeat count). Built with cc -static -O2; run natively,
 * under `hvp user` and under qemu-x86_64. Each kernel prints a checksum so
 * the work cannot be optimised away and the three runs can be compared. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Integer ALU: multiply, divide, shifts, rotates. */
static uint64_t k_int(long reps)
{
    uint64_t a = 1, b = 0x9e3779b97f4a7c15ull, s = 0;
    for (long r = 0; r < reps; r++)
        for (int i = 1; i < 100000; i++) {
            a = a * 6364136223846793005ull + 1442695040888963407ull;
            b ^= (a >> 17) | (a << 47);
            s += (a % (uint64_t)(i | 1)) + (b >> (i & 31)) + (uint32_t)a / (uint32_t)(i + 3);
        }
    return s ^ a ^ b;
}

/* Memory: block copies and fills, and a strided sum over 2 MiB. */
static uint64_t k_mem(long reps)
{
    size_t n = 2 << 20;
    uint8_t *a = malloc(n), *b = malloc(n);
    uint64_t s = 0;
    memset(a, 1, n);
    for (long r = 0; r < reps; r++) {
        memcpy(b, a, n);
        memset(a + (r & 4095), (int)r, n / 2);
        for (size_t i = 0; i < n; i += 64)
            s += b[i] + a[i + 7];
        memmove(a + 1, a, n - 1);
    }
    free(a);
    free(b);
    return s;
}

/* Branches: a sieve, and unpredictable compares on random data. */
static uint64_t k_branch(long reps)
{
    size_t n = 1 << 18;
    uint8_t *comp = malloc(n);
    uint32_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint32_t)next();
    uint64_t s = 0;
    for (long r = 0; r < reps; r++) {
        memset(comp, 0, n);
        for (size_t i = 2; i * i < n; i++)
            if (!comp[i])
                for (size_t j = i * i; j < n; j += i)
                    comp[j] = 1;
        for (size_t i = 2; i < n; i++)
            s += !comp[i];
        for (size_t i = 0; i < n; i++) {
            uint32_t x = v[i];
            if (x & 1)
                s += x >> 3;
            else if (x & 2)
                s ^= x;
            else
                s -= x & 0xff;
        }
    }
    free(comp);
    free(v);
    return s;
}

/* Pointer chasing through a random cycle of 256 Ki nodes (2 MiB). */
static uint64_t k_chase(long reps)
{
    size_t n = 1 << 18;
    size_t *next_of = malloc(n * sizeof *next_of), *perm = malloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = next() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        next_of[perm[i]] = perm[(i + 1) % n];
    size_t p = 0;
    uint64_t s = 0;
    for (long r = 0; r < reps; r++)
        for (size_t i = 0; i < n; i++) {
            p = next_of[p];
            s += p;
        }
    free(next_of);
    free(perm);
    return s;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Strings: formatting, strlen/strchr/strstr, sorting strings. */
static uint64_t k_string(long reps)
{
    size_t n = 20000;
    char **v = malloc(n * sizeof *v);
    char *pool = malloc(n * 32);
    uint64_t s = 0;
    for (long r = 0; r < reps; r++) {
        for (size_t i = 0; i < n; i++) {
            v[i] = pool + i * 32;
            snprintf(v[i], 32, "key-%llx-%zu", (unsigned long long)(next() & 0xffffff), i);
        }
        qsort(v, n, sizeof *v, cmpstr);
        for (size_t i = 0; i < n; i++) {
            s += strlen(v[i]);
            s += strchr(v[i], '-') - v[i];
            s += strstr(v[i], "a") != NULL;
        }
        s += (uint64_t)v[n / 2][4];
    }
    free(v);
    free(pool);
    return s;
}

/* Floating point: matrix multiply, Mandelbrot, a little n-body. */
static uint64_t k_fp(long reps)
{
    enum { N = 96 };
    static double a[N][N], b[N][N], c[N][N];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            a[i][j] = (double)(i + j) / N;
            b[i][j] = (double)(i - j) / N;
        }
    double sum = 0;
    for (long r = 0; r < reps; r++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double t = 0;
                for (int k = 0; k < N; k++)
                    t += a[i][k] * b[k][j];
                c[i][j] = t;
            }
        sum += c[r % N][(r * 7) % N];
        int it = 0;
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) {
                double cr = -2.0 + x * (3.0 / 64), ci = -1.5 + y * (3.0 / 64), zr = 0, zi = 0;
                int k = 0;
                while (k < 100 && zr * zr + zi * zi < 4.0) {
                    double t = zr * zr - zi * zi + cr;
                    zi = 2 * zr * zi + ci;
                    zr = t;
                    k++;
                }
                it += k;
            }
        sum += it;
        float px = 0, py = 1, vx = 1, vy = 0;
        for (int k = 0; k < 2000; k++) {
            float d2 = px * px + py * py, inv = 1.0f / (d2 * __builtin_sqrtf(d2));
            vx -= px * inv * 0.001f;
            vy -= py * inv * 0.001f;
            px += vx * 0.001f;
            py += vy * 0.001f;
        }
        sum += px + py;
    }
    return (uint64_t)(sum * 1000);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        uint64_t (*fn)(long);
    } ks[] = {{"int", k_int},       {"mem", k_mem},       {"branch", k_branch},
              {"chase", k_chase},   {"string", k_string}, {"fp", k_fp}};
    if (argc < 2) {
        fprintf(stderr, "usage: bench-guest KERNEL [REPS]\n");
        return 2;
    }
    long reps = argc > 2 ? atol(argv[2]) : 1;
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        if (!strcmp(argv[1], ks[i].name)) {
            printf("%s %llu\n", ks[i].name, (unsigned long long)ks[i].fn(reps));
            return 0;
        }
    fprintf(stderr, "bench-guest: unknown kernel %s\n", argv[1]);
    return 2;
}
