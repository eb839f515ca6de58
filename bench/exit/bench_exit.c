/* bench-exit: the round-trip cost of a guest OUT to a null device, in
 * nanoseconds per OUT. Not a test.
 *
 *   soft inline   the partition's I/O handler answers inside the CPU loop
 *   soft exit     every OUT leaves hvp_vcpu_run and the VMM runs again
 *   kvm exit      the same on /dev/kvm (KVM_RUN round trip), where it opens
 *
 * The guest (64-bit, identity-mapped) runs `out 0x80, al` in a counted
 * loop; each figure is the minimum and median of several runs. Target for
 * soft inline: <= 100 ns.
 */
#include <hvp/platform.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define RUNS 7

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int null_pio(void *ctx, struct hvp_vcpu *v, uint16_t port, uint8_t size, bool w, uint64_t *d)
{
    (void)v, (void)size;
    if (port != 0x80) return HVP_IO_UNHANDLED;
    ++*(uint64_t *)ctx;
    if (!w) *d = 0;
    return 0;
}

struct vm {
    struct hvp *h;
    struct hvp_partition *p;
    struct hvp_vcpu *v;
    uint8_t *ram;
};

static void vm_close(struct vm *m)
{
    hvp_partition_destroy(m->p);
    if (m->ram) munmap(m->ram, 1 << 20);
    hvp_close(m->h);
}

/* Long mode at 0x1000: mov ecx, n; 1: out 0x80, al; dec ecx; jnz 1b; hlt */
static int vm_open(struct vm *m, const char *backend, uint32_t n, char *why, size_t wl)
{
    memset(m, 0, sizeof(*m));
    if (hvp_open(backend, &m->h, why, wl) < 0) return -1;
    if (hvp_partition_create(m->h, &m->p) < 0 || hvp_partition_setup(m->p) < 0) {
        snprintf(why, wl, "partition: %s", m->p ? hvp_partition_error(m->p) : "");
        return -1;
    }
    m->ram = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->ram == MAP_FAILED) {
        m->ram = NULL;
        snprintf(why, wl, "mmap");
        return -1;
    }
    uint64_t *pml4 = (uint64_t *)(m->ram + 0x10000), *pdpt = (uint64_t *)(m->ram + 0x11000);
    uint64_t *pd = (uint64_t *)(m->ram + 0x12000);
    pml4[0] = 0x11000 | 3;
    pdpt[0] = 0x12000 | 3;
    for (int i = 0; i < 512; i++)
        pd[i] = (uint64_t)i << 21 | 0x83;
    uint8_t code[] = {0xb9, 0, 0, 0, 0, 0xe6, 0x80, 0xff, 0xc9, 0x75, 0xfa, 0xf4};
    memcpy(code + 1, &n, 4);
    memcpy(m->ram + 0x1000, code, sizeof(code));
    if (hvp_map_gpa(m->p, m->ram, 0, 1 << 20, HVP_MAP_READ | HVP_MAP_WRITE | HVP_MAP_EXECUTE) < 0 ||
        hvp_vcpu_create(m->p, 0, &m->v) < 0) {
        snprintf(why, wl, "%s", hvp_partition_error(m->p));
        return -1;
    }
    uint32_t names[] = {HVP_REG_CR3, HVP_REG_CR4, HVP_REG_EFER, HVP_REG_CR0,    HVP_REG_CS,
                        HVP_REG_DS,  HVP_REG_ES,  HVP_REG_SS,   HVP_REG_RFLAGS, HVP_REG_RSP};
    union hvp_reg_value v[10] = {0};
    v[0].reg64 = 0x10000;
    v[1].reg64 = 0x20;
    v[2].reg64 = 0x500;
    v[3].reg64 = 0x80010011;
    v[4].segment = (struct hvp_segment){0, 0xffffffff, 8, 0xa09b};
    v[5].segment = v[6].segment = v[7].segment = (struct hvp_segment){0, 0xffffffff, 0x10, 0xc093};
    v[8].reg64 = 2;
    v[9].reg64 = 0x8000;
    if (hvp_vcpu_set_registers(m->v, names, 10, v) < 0) {
        snprintf(why, wl, "registers: %s", hvp_vcpu_error(m->v));
        return -1;
    }
    return 0;
}

static int set_rip(struct vm *m)
{
    uint32_t n = HVP_REG_RIP;
    union hvp_reg_value v = {.reg64 = 0x1000};
    return hvp_vcpu_set_registers(m->v, &n, 1, &v);
}

/* One timed run of n OUTs: ns per OUT, or a negative value on failure. */
static double one(struct vm *m, uint32_t n, bool inline_io)
{
    if (set_rip(m) < 0) return -1;
    struct hvp_exit x;
    double t0 = now_ns();
    uint64_t outs = 0;
    for (;;) {
        if (hvp_vcpu_run(m->v, &x) < 0) return -1;
        if (x.reason == HVP_EXIT_HALT) break;
        if (x.reason != HVP_EXIT_IO_PORT || x.io.access.addr != 0x80) {
            fprintf(stderr, "unexpected exit %s\n", hvp_exit_name(x.reason));
            return -1;
        }
        outs++; /* running again completes the OUT */
    }
    double t = now_ns() - t0;
    if (!inline_io && outs != n) return -1;
    return t / n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure(const char *backend, const char *what, bool inline_io, uint32_t n)
{
    struct vm m;
    char why[256] = "";
    if (vm_open(&m, backend, n, why, sizeof(why)) < 0) {
        printf("%-12s %-8s skipped (%s)\n", backend, what, why);
        vm_close(&m);
        return;
    }
    uint64_t calls = 0;
    struct hvp_io_handler h = {.size = sizeof(h), .pio = null_pio};
    if (inline_io && hvp_partition_set_io_handler(m.p, &h, &calls) < 0) {
        printf("%-12s %-8s skipped (%s)\n", backend, what, hvp_partition_error(m.p));
        vm_close(&m);
        return;
    }
    double r[RUNS];
    one(&m, n / 10 + 1, inline_io); /* warm up: decode, TLB */
    for (int i = 0; i < RUNS; i++) {
        r[i] = one(&m, n, inline_io);
        if (r[i] < 0) {
            printf("%-12s %-8s failed: %s\n", backend, what, hvp_vcpu_error(m.v));
            vm_close(&m);
            return;
        }
    }
    qsort(r, RUNS, sizeof(r[0]), cmp);
    printf("%-12s %-8s min %8.1f ns  median %8.1f ns per OUT  (%u OUTs x %d runs)\n", backend, what,
           r[0], r[RUNS / 2], n, RUNS);
    vm_close(&m);
}

int main(void)
{
    printf("guest OUT to a null device, round trip per OUT (target soft inline <= 100 ns)\n");
    measure("soft", "inline", true, 2000000);
    measure("soft", "exit", false, 200000);
    struct hvp *h;
    char why[256];
    if (hvp_open("kvm", &h, why, sizeof(why)) == 0) {
        hvp_close(h);
        measure("kvm", "inline", true, 200000);
        measure("kvm", "exit", false, 200000);
    } else
        printf("kvm: skipped (no /dev/kvm: %s)\n", why);
    return 0;
}
