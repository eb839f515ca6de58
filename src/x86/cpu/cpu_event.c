/* hvp software x86-64 CPU, system model: events (INTR, NMI, injected
 * events, window exits, interrupt shadows) and the embedder's hooks.
 *
 * Everything asynchronous goes through cpu->async, the one word the run
 * loop tests between traces; nothing here adds a per-instruction test.
 * Instructions that open a window where an event becomes deliverable
 * (STI, MOV to CR8, IRET, WRMSR) end their trace, so the test comes right
 * after them; an interrupt shadow makes the loop run exactly one
 * instruction before it looks again. */
#include <errno.h>

#include "cpu_internal.h"

static void async_clear(struct hvp_cpu *cpu, uint32_t bits)
{
    atomic_fetch_and_explicit(&cpu->async, ~bits, memory_order_relaxed);
}

static void async_set(struct hvp_cpu *cpu, uint32_t bits)
{
    atomic_fetch_or_explicit(&cpu->async, bits, memory_order_release);
}

int hvp_cpu_set_hooks(struct hvp_cpu *cpu, const struct hvp_cpu_hooks *hooks)
{
    if (!cpu || cpu->model != HVP_CPU_MODEL_SYSTEM) return -EINVAL;
    if (hooks)
        cpu->hooks = *hooks;
    else
        memset(&cpu->hooks, 0, sizeof cpu->hooks);
    return 0;
}

void hvp_cpu_set_intr(struct hvp_cpu *cpu, bool asserted)
{
    if (asserted)
        async_set(cpu, HVP_ASYNC_INTR);
    else
        async_clear(cpu, HVP_ASYNC_INTR);
}

void hvp_cpu_nmi(struct hvp_cpu *cpu)
{
    async_set(cpu, HVP_ASYNC_NMI);
}

int hvp_cpu_set_event(struct hvp_cpu *cpu, const struct hvp_cpu_event *ev)
{
    if (!cpu || !ev || cpu->model != HVP_CPU_MODEL_SYSTEM) return -EINVAL;
    if (!ev->pending) {
        memset(&cpu->pend, 0, sizeof cpu->pend);
        async_clear(cpu, HVP_ASYNC_EVENT);
        return 0;
    }
    switch (ev->type) {
    case HVP_CPU_EVENT_EXTINT: break;
    case HVP_CPU_EVENT_NMI:
        if (ev->vector != 2) return -EINVAL;
        break;
    case HVP_CPU_EVENT_EXCEPTION:
        if (ev->vector >= 32) return -EINVAL;
        break;
    case HVP_CPU_EVENT_SOFT_INT:
    case HVP_CPU_EVENT_PRIV_SOFT_EXC:
    case HVP_CPU_EVENT_SOFT_EXCEPTION:
        if (!ev->insn_len || ev->insn_len > 15) return -EINVAL;
        break;
    default: return -EINVAL;
    }
    cpu->pend = *ev;
    if (ev->type != HVP_CPU_EVENT_EXCEPTION) cpu->pend.has_error_code = false;
    async_set(cpu, HVP_ASYNC_EVENT);
    return 0;
}

int hvp_cpu_get_event(struct hvp_cpu *cpu, struct hvp_cpu_event *ev)
{
    if (!cpu || !ev) return -EINVAL;
    if (cpu->pend.pending)
        *ev = cpu->pend;
    else
        memset(ev, 0, sizeof *ev);
    return 0;
}

void hvp_cpu_request_window(struct hvp_cpu *cpu, bool irq, bool nmi)
{
    cpu->win_irq = irq;
    cpu->win_nmi = nmi;
    if (irq || nmi)
        async_set(cpu, HVP_ASYNC_WINDOW);
    else
        async_clear(cpu, HVP_ASYNC_WINDOW);
}

int hvp_cpu_complete(struct hvp_cpu *cpu, const struct hvp_cpu_exit *ex)
{
    if (!cpu || !ex) return -EINVAL;
    switch (ex->reason) {
    case HVP_CPU_EXIT_IO:
        if (ex->u.io.write || ex->u.io.string) return 0;
        hvp_reg_wr(cpu, 0, ex->u.io.size == 4 ? 4 : ex->u.io.size, ex->u.io.data);
        return 0;
    case HVP_CPU_EXIT_MSR:
        if (!ex->u.msr.write) {
            cpu->gpr[0] = (uint32_t)ex->u.msr.value;
            cpu->gpr[2] = ex->u.msr.value >> 32;
        }
        cpu->rip += ex->insn_len ? ex->insn_len : 2;
        return 0;
    case HVP_CPU_EXIT_CPUID:
        cpu->gpr[0] = ex->u.cpuid.regs[0];
        cpu->gpr[3] = ex->u.cpuid.regs[1];
        cpu->gpr[1] = ex->u.cpuid.regs[2];
        cpu->gpr[2] = ex->u.cpuid.regs[3];
        cpu->rip += ex->insn_len ? ex->insn_len : 2;
        return 0;
    default: return -EINVAL;
    }
}

void hvp_sys_reset_events(struct hvp_cpu *cpu)
{
    memset(&cpu->pend, 0, sizeof cpu->pend);
    cpu->win_irq = cpu->win_nmi = false;
    cpu->nmi_masked = false;
    cpu->hlt_skipped = false;
    cpu->tf_pending = false;
    cpu->shadow_db = false;
    async_clear(cpu, HVP_ASYNC_NMI | HVP_ASYNC_EVENT | HVP_ASYNC_WINDOW | HVP_ASYNC_SHADOW |
                         HVP_ASYNC_STEP);
}

/* ---- delivery ---- */

void hvp_sys_deliver_event(struct hvp_cpu *cpu, unsigned vec, bool has_err, uint32_t err,
                           bool fault, bool soft, unsigned soft_len)
{
    cpu->delivering = vec == 8 ? 2 : 1;
    cpu->deliver_vec = (uint8_t)vec;
    cpu->deliver_soft = soft;
    cpu->soft_len = (uint8_t)soft_len;
    cpu->hlt_skipped = false;
    hvp_sys_deliver(cpu, vec, has_err, err, fault, soft);
    cpu->delivering = 0;
}

/* An external interrupt or NMI: benign for the double-fault rules (marked
 * like an INT n of length 0, which run_system's fault path treats so). */
static void deliver_irq(struct hvp_cpu *cpu, unsigned vec)
{
    cpu->delivering = 1;
    cpu->deliver_vec = (uint8_t)vec;
    cpu->deliver_soft = true;
    cpu->soft_len = 0;
    cpu->hlt_skipped = false;
    hvp_sys_deliver(cpu, vec, false, 0, false, false);
    cpu->delivering = 0;
}

static void deliver_injected(struct hvp_cpu *cpu)
{
    struct hvp_cpu_event e = cpu->pend;
    memset(&cpu->pend, 0, sizeof cpu->pend);
    async_clear(cpu, HVP_ASYNC_EVENT);
    unsigned v = e.vector;
    switch (e.type) {
    case HVP_CPU_EVENT_EXTINT: deliver_irq(cpu, v); break;
    case HVP_CPU_EVENT_NMI:
        cpu->nmi_masked = true;
        deliver_irq(cpu, 2);
        break;
    case HVP_CPU_EVENT_EXCEPTION:
        hvp_sys_deliver_event(cpu, v, e.has_error_code, e.error_code, v != 1 && v != 3 && v != 4,
                              false, 0);
        break;
    case HVP_CPU_EVENT_PRIV_SOFT_EXC: /* INT1: no gate DPL check */
        cpu->rip += e.insn_len;
        hvp_sys_deliver_event(cpu, v, false, 0, false, false, 0);
        break;
    default: /* INT n, INT3, INTO: the gate's DPL is checked */
        cpu->rip += e.insn_len;
        hvp_sys_deliver_event(cpu, v, false, 0, false, true, e.insn_len);
        break;
    }
}

bool hvp_sys_wake_pending(struct hvp_cpu *cpu)
{
    uint32_t ev = atomic_load_explicit(&cpu->async, memory_order_acquire);
    return (ev & HVP_ASYNC_EVENT) || ((ev & HVP_ASYNC_NMI) && !cpu->nmi_masked) ||
           ((ev & HVP_ASYNC_INTR) && (cpu->rflags & HVP_IF) && cpu->hooks.intr_ack);
}

int hvp_cpu_async(struct hvp_cpu *cpu)
{
    uint32_t ev = atomic_load_explicit(&cpu->async, memory_order_acquire);
    if (ev & HVP_ASYNC_KICK) {
        async_clear(cpu, HVP_ASYNC_KICK);
        cpu->exit->reason = HVP_CPU_EXIT_KICK;
        return -1;
    }
    if (cpu->model != HVP_CPU_MODEL_SYSTEM) return 0;
    if (ev & HVP_ASYNC_EVENT) {
        /* injected events go first, whatever IF and the shadow say */
        deliver_injected(cpu);
        return 0;
    }
    if ((ev & HVP_ASYNC_STEP) && cpu->tf_pending && cpu->stats.instructions != cpu->tf_icount) {
        /* the instruction that started with TF retired: a single-step
         * trap, before NMI and INTR (MOV SS holds it for one more) */
        bool held = (ev & HVP_ASYNC_SHADOW) && cpu->shadow_rip == cpu->rip && cpu->shadow_db;
        if (!held) {
            cpu->tf_pending = false;
            cpu->st.dr[6] |= 0x4000; /* BS */
            hvp_sys_deliver_event(cpu, 1, false, 0, false, false, 0);
            return 0;
        }
    }
    int step = 0;
    if (ev & HVP_ASYNC_STEP) {
        if (cpu->rflags & HVP_TF) {
            if (!cpu->tf_pending) {
                cpu->tf_pending = true;
                cpu->tf_icount = cpu->stats.instructions;
            }
            step = 1; /* one instruction at a time */
        } else if (!cpu->tf_pending) {
            async_clear(cpu, HVP_ASYNC_STEP);
        }
    }
    bool shadow = false;
    if (ev & HVP_ASYNC_SHADOW) {
        shadow = cpu->rip == cpu->shadow_rip;
        if (!shadow) { /* it ended inside the trace */
            async_clear(cpu, HVP_ASYNC_SHADOW);
            cpu->shadow_db = false;
        }
    }
    bool can_nmi = !shadow && !cpu->nmi_masked;
    bool can_irq = !shadow && (cpu->rflags & HVP_IF);
    if ((ev & HVP_ASYNC_NMI) && can_nmi) {
        async_clear(cpu, HVP_ASYNC_NMI);
        cpu->nmi_masked = true;
        deliver_irq(cpu, 2);
        return 0;
    }
    if ((ev & HVP_ASYNC_INTR) && can_irq && cpu->hooks.intr_ack) {
        int v = cpu->hooks.intr_ack(cpu->hooks.ctx);
        if (v >= 0 && v < 256) {
            deliver_irq(cpu, (unsigned)v);
            return 0;
        }
    }
    if (ev & HVP_ASYNC_WINDOW) {
        bool nmi = cpu->win_nmi && can_nmi;
        if (nmi || (cpu->win_irq && can_irq)) {
            cpu->win_irq = cpu->win_nmi = false;
            async_clear(cpu, HVP_ASYNC_WINDOW);
            cpu->exit->reason = HVP_CPU_EXIT_WINDOW;
            cpu->exit->u.window.nmi = nmi;
            return -1;
        }
    }
    if (cpu->hlt_skipped) { /* HLT saw an event that is gone now: halt after all */
        cpu->hlt_skipped = false;
        cpu->exit->reason = HVP_CPU_EXIT_HLT;
        return -1;
    }
    if (shadow) {
        /* the shadow covers the next instruction: run it alone, then look
         * again (nothing pending: the next trace runs it anyway) */
        async_clear(cpu, HVP_ASYNC_SHADOW);
        cpu->shadow_db = false;
        if (ev & (HVP_ASYNC_NMI | HVP_ASYNC_INTR | HVP_ASYNC_WINDOW)) step = 1;
    }
    return step;
}

/* ---- MMIO through the hook ---- */

uint8_t *hvp_sys_mmio(struct hvp_cpu *cpu, uint64_t gpa, unsigned kind)
{
    unsigned size = cpu->acc_size;
    bool write = kind == HVP_CPU_PROT_WRITE;
    if (kind != HVP_CPU_PROT_EXEC && cpu->hooks.mmio &&
        (size == 1 || size == 2 || size == 4 || size == 8) && (gpa & 0xfff) + size <= 0x1000) {
        if (cpu->mmio_probe) return NULL;
        uint64_t v = write ? cpu->acc_val & hvp_size_mask(size) : 0;
        if (cpu->hooks.mmio(cpu->hooks.ctx, gpa, size, write, &v) == 0) {
            v &= hvp_size_mask(size);
            memcpy(cpu->mmio_buf, &v, 8);
            return cpu->mmio_buf;
        }
    }
    hvp_sys_mmio_exit(cpu, gpa, kind);
}
