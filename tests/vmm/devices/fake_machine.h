/* A fake machine for device tests: implements the contract functions of
 * src/vmm/vmm_internal.h that devices call, records what they do, and lets
 * the test drive the bus, the clock and the timers. */
#ifndef HVP_TESTS_FAKE_MACHINE_H
#define HVP_TESTS_FAKE_MACHINE_H

#include "vmm/vmm_internal.h"
#include "hvp/platform.h"

#define FAKE_MAX_CLAIMS 64
#define FAKE_MAX_TIMERS 16
#define FAKE_MAX_IRQS   256
#define FAKE_GSIS       24

struct fake_claim {
    enum vmm_space space;
    uint64_t base, len;
    const struct vmm_io_ops *ops;
    void *dev;
    const char *name;
    bool used;
};

struct vmm_timer {
    struct hvp_vm *vm;
    void (*fn)(void *dev);
    void *dev;
    bool armed, used;
    uint64_t deadline;
};

struct hvp_vm {
    struct fake_claim claims[FAKE_MAX_CLAIMS];
    struct vmm_timer timers[FAKE_MAX_TIMERS];
    uint64_t now_ns;
    unsigned timer_arms; /* vmm_timer_arm calls, to spot busy re-arming */
    /* interrupt lines: current level, rising edges seen */
    bool level[FAKE_GSIS];
    unsigned edges[FAKE_GSIS];
    /* hvp_request_interrupt calls */
    struct hvp_interrupt irqs[FAKE_MAX_IRQS];
    unsigned nirqs;
    enum vmm_stop_reason stop;
    unsigned stops;
    uint8_t console[4096];
    size_t console_len;
    uint8_t mem[64 * 1024];
};

struct hvp_vm *fake_vm_new(void);
void fake_vm_free(struct hvp_vm *vm);

/* Accesses dispatched like the machine's bus: -1 (all ones) when unclaimed. */
uint64_t fake_in(struct hvp_vm *vm, uint64_t port, unsigned size);
void fake_out(struct hvp_vm *vm, uint64_t port, unsigned size, uint64_t value);
uint64_t fake_mmio_read(struct hvp_vm *vm, uint64_t gpa, unsigned size);
void fake_mmio_write(struct hvp_vm *vm, uint64_t gpa, unsigned size, uint64_t value);
static inline uint8_t fake_inb(struct hvp_vm *vm, uint64_t port)
{
    return (uint8_t)fake_in(vm, port, 1);
}
static inline void fake_outb(struct hvp_vm *vm, uint64_t port, uint8_t v)
{
    fake_out(vm, port, 1, v);
}
/* Is [base, base+len) claimed in space? */
bool fake_claimed(struct hvp_vm *vm, enum vmm_space space, uint64_t base, uint64_t len);

/* Moves guest time forward, firing due timers in deadline order (each
 * with the clock set to its deadline, as a punctual timer thread would). */
void fake_advance(struct hvp_vm *vm, uint64_t ns);
/* Number of armed timers; the earliest deadline in *next (if any). */
unsigned fake_armed_timers(struct hvp_vm *vm, uint64_t *next);

#endif
