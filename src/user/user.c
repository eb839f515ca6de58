/* hvp user: the guest process, its CPU and the run loop. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int user_fail(struct hvp_user *u, int ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->err, sizeof(u->err), fmt, ap);
    va_end(ap);
    return ret;
}

const char *hvp_user_error(const struct hvp_user *u)
{
    return u ? u->err : "";
}

struct hvp_cpu *hvp_user_cpu(struct hvp_user *u)
{
    return u->cpu;
}

int hvp_user_create(const struct hvp_user_config *cfg, struct hvp_user **out)
{
    *out = NULL;
    if (cfg && cfg->size < sizeof(uint32_t))
        return -EINVAL;
    struct hvp_user *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    if (cfg)
        memcpy(&u->cfg, cfg, cfg->size < sizeof(u->cfg) ? cfg->size : sizeof(u->cfg));
    u->cfg.size = sizeof(u->cfg);
    u->pid = getpid();
    u->vfork_fd = -1;
    struct hvp_cpu_config cc = {.size = sizeof(cc), .model = HVP_CPU_MODEL_USER64};
    int ret = hvp_cpu_create(&cc, &u->cpu);
    if (ret < 0) {
        free(u);
        return ret;
    }
    ret = mem_init(u);
    if (ret < 0) {
        hvp_cpu_destroy(u->cpu);
        free(u);
        return ret;
    }
    *out = u;
    return 0;
}

void hvp_user_destroy(struct hvp_user *u)
{
    if (!u)
        return;
    hvp_cpu_destroy(u->cpu);
    mem_fini(u);
    free(u->fpsave);
    free(u);
}

size_t hvp_user_peek(const struct hvp_user *u, uint64_t addr, void *buf, size_t len)
{
    uint64_t n = len;
    void *p = mem_clamp(u, addr, &n, HVP_CPU_PROT_READ);
    if (!p || !len)
        return 0;
    memcpy(buf, p, n);
    return n;
}

static int vector_signal(unsigned v)
{
    switch (v) {
    case 0:
    case 16:
    case 19: return SIGFPE;
    case 1:
    case 3: return SIGTRAP;
    case 6: return SIGILL;
    case 12:
    case 17:
    case 18: return SIGBUS;
    default: return SIGSEGV;
    }
}

static int start(struct hvp_user *u)
{
    struct hvp_cpu_state st;
    int ret = hvp_cpu_get_state(u->cpu, &st);
    if (ret < 0)
        return user_fail(u, ret, "cpu: %s", hvp_cpu_error(u->cpu));
    memset(st.gpr, 0, sizeof(st.gpr));
    st.gpr[4] = u->sp;
    st.rip = u->entry;
    st.rflags = 0x202;
    st.seg[4].base = st.seg[5].base = 0;
    st.fpu.fcw = 0x37f;
    st.fpu.mxcsr = 0x1f80;
    ret = hvp_cpu_set_state(u->cpu, &st);
    if (ret < 0)
        return user_fail(u, ret, "cpu: %s", hvp_cpu_error(u->cpu));
    return 0;
}

static void fail_res(struct hvp_user *u, struct hvp_user_result *res, int ret, const char *what)
{
    user_fail(u, ret, "%s: %s", what, hvp_cpu_error(u->cpu));
    memset(res, 0, sizeof(*res));
    res->end = HVP_USER_FAILED;
    u->ended = true;
}

int hvp_user_run(struct hvp_user *u, struct hvp_user_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!u->loaded)
        return user_fail(u, -EINVAL, "nothing loaded");
    int ret = start(u);
    if (ret < 0) {
        res->end = HVP_USER_FAILED;
        return 0;
    }
    struct hvp_cpu_state st;
    while (!u->ended) {
        struct hvp_cpu_exit ex;
        ret = hvp_cpu_run(u->cpu, 0, &ex);
        if (ret < 0) {
            fail_res(u, res, ret, "cpu run");
            return 0;
        }
        switch (ex.reason) {
        case HVP_CPU_EXIT_NONE:
        case HVP_CPU_EXIT_BUDGET:
        case HVP_CPU_EXIT_KICK: continue;
        case HVP_CPU_EXIT_SYSCALL:
        case HVP_CPU_EXIT_EXCEPTION:
        case HVP_CPU_EXIT_HLT: break;
        default:
            fail_res(u, res, -EIO, ex.reason == HVP_CPU_EXIT_INTERNAL ? "cpu" : "unexpected exit");
            return 0;
        }
        ret = hvp_cpu_get_state(u->cpu, &st);
        if (ret < 0) {
            fail_res(u, res, ret, "cpu state");
            return 0;
        }
        if (ex.reason == HVP_CPU_EXIT_SYSCALL) {
            sys_dispatch(u, &st);
        } else {
            /* An exception, or HLT (privileged at CPL 3: #GP). */
            bool pf = ex.reason == HVP_CPU_EXIT_EXCEPTION && ex.u.exception.vector == 14;
            u->res.exception = true;
            u->res.vector = ex.reason == HVP_CPU_EXIT_EXCEPTION ? ex.u.exception.vector : 13;
            u->res.rip = st.rip;
            u->res.addr = pf ? ex.u.exception.cr2 : 0;
            u->res.insn_len = ex.insn_len <= 16 ? ex.insn_len : 16;
            memcpy(u->res.insn, ex.insn_bytes, u->res.insn_len);
            if (!u->res.insn_len)
                u->res.insn_len = (uint8_t)hvp_user_peek(u, st.rip, u->res.insn, 15);
            sys_signal(u, &st, vector_signal(u->res.vector));
        }
        if (u->ended)
            break;
        ret = hvp_cpu_set_state(u->cpu, &st);
        if (ret < 0) {
            fail_res(u, res, ret, "cpu state");
            return 0;
        }
    }
    *res = u->res;
    if (res->end == HVP_USER_SIGNALED && !res->exception)
        res->rip = st.rip;
    return 0;
}
