/* Guest time and device timers: one thread sleeps until the earliest armed
 * deadline and calls the timer's function with the device lock held. The
 * timer list lives under the device lock too, so arming from a device
 * callback needs no other lock. A handful of timers (PIT, RTC, UART,
 * console): a list scan beats a heap. */
#include "machine.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t vmm_now_ns(struct hvp_vm *vm)
{
    return mono_ns() - vm->t0;
}

struct vmm_timer *vmm_timer_new(struct hvp_vm *vm, void (*fn)(void *dev), void *dev)
{
    struct vmm_timer *t = calloc(1, sizeof(*t));
    if (!t) {
        vmm_errorf(vm, -ENOMEM, "out of memory for a timer");
        return NULL;
    }
    t->vm = vm;
    t->fn = fn;
    t->dev = dev;
    t->next = vm->timers;
    vm->timers = t;
    return t;
}

void vmm_timer_arm(struct vmm_timer *t, uint64_t deadline_ns)
{
    t->deadline = deadline_ns;
    t->armed = true;
    pthread_cond_signal(&t->vm->timer_cond);
}

void vmm_timer_cancel(struct vmm_timer *t)
{
    if (t) t->armed = false;
}

void vmm_timer_free(struct vmm_timer *t)
{
    if (!t) return;
    struct vmm_timer **pp = &t->vm->timers;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp) *pp = t->next;
    free(t);
}

static void *timer_main(void *arg)
{
    struct hvp_vm *vm = arg;
    pthread_mutex_lock(&vm->lock);
    while (!vm->timer_quit) {
        uint64_t now = vmm_now_ns(vm);
        struct vmm_timer *due = NULL;
        uint64_t next = UINT64_MAX;
        for (struct vmm_timer *t = vm->timers; t; t = t->next) {
            if (!t->armed) continue;
            if (t->deadline <= now) {
                due = t;
                break;
            }
            if (t->deadline < next) next = t->deadline;
        }
        if (due) {
            due->armed = false;
            due->fn(due->dev); /* may re-arm, or free other timers: rescan */
            continue;
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&vm->timer_cond, &vm->lock);
        } else {
            uint64_t abs = vm->t0 + next;
            struct timespec ts = {(time_t)(abs / 1000000000ull), (long)(abs % 1000000000ull)};
            pthread_cond_timedwait(&vm->timer_cond, &vm->lock, &ts);
        }
    }
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int vmm_timers_start(struct hvp_vm *vm)
{
    vm->timer_quit = false;
    int r = pthread_create(&vm->timer_thread, NULL, timer_main, vm);
    if (r) return vmm_errorf(vm, -r, "cannot start the timer thread");
    vm->timer_started = true;
    return 0;
}

void vmm_timers_stop(struct hvp_vm *vm)
{
    if (!vm->timer_started) return;
    pthread_mutex_lock(&vm->lock);
    vm->timer_quit = true;
    pthread_cond_broadcast(&vm->timer_cond);
    pthread_mutex_unlock(&vm->lock);
    pthread_join(vm->timer_thread, NULL);
    vm->timer_started = false;
}

void vmm_timers_free(struct hvp_vm *vm)
{
    while (vm->timers) {
        struct vmm_timer *t = vm->timers;
        vm->timers = t->next;
        free(t);
    }
}

/* The timer thread waits on a CLOCK_MONOTONIC condition (set up here). */
int vmm_timer_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int r = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return -r;
}

uint64_t vmm_mono_ns(void)
{
    return mono_ns();
}
