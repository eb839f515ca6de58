/* The software CPU's event side (system model): INTR through intr_ack and
 * the IDT, the STI / MOV SS interrupt shadow, STI;HLT, NMI blocking until
 * IRET, window exits, injected events, the embedder hooks (port I/O, MMIO,
 * MSR, CPUID, CR8) handling requests inline, exit completion, reset.
 * Guests run in 64-bit mode on identity-mapped pages; code is assembled by
 * the host's as. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "hvp/cpu.h"

#define SNIP(name, text)                                                                           \
    extern const uint8_t name[], name##_end[];                                                     \
    __asm__(".pushsection .rodata\n.intel_syntax noprefix\n" #name ":\n" text "\n" #name           \
            "_end:\n.att_syntax prefix\n.popsection\n")
/* a label inside a SNIP: its offset from the start */
#define LABEL(name)      extern const uint8_t name[]
#define OFF(snip, label) ((uint64_t)((label) - (snip)))

#define RAM_SIZE 0x400000ull
#define PML4     0x1000ull
#define PDPT     0x2000ull
#define PD       0x3000ull
#define PT       0x4000ull
#define GDT      0x5000ull
#define TSS      0x6000ull
#define IDT      0x7000ull
#define KSTACK   0x9000ull
#define KCODE    0x10000ull
#define HCODE    0x11000ull /* exception handler */
#define IRQCODE  0x12000ull /* vector 0x30 */
#define NMICODE  0x13000ull /* vector 2 */
#define MMIO_LIN 0x50000ull
#define APIC_GPA 0xfee00000ull

struct ev {
    struct hvp_cpu *cpu;
    uint8_t *ram;
    struct hvp_cpu_state st;
    struct hvp_cpu_exit ex;
    /* hook bookkeeping */
    unsigned acks, ack_limit, nacks_deassert;
    int ack_vector;
    unsigned pio_calls, mmio_calls, msr_calls, cpuid_calls;
    uint32_t port_last_write;
    uint8_t apic[4096];
    uint64_t msr_6e0;
    uint8_t tpr_written;
    unsigned tpr_writes;
    bool nmi_on_out;
};

static uint64_t *q(struct ev *s, uint64_t pa)
{
    return (uint64_t *)(void *)(s->ram + pa);
}

static void set_gate(struct ev *s, unsigned vec, uint64_t target, unsigned dpl)
{
    q(s, IDT + vec * 16)[0] = (target & 0xffff) | (0x08ull << 16) |
                              ((uint64_t)(0x8e | dpl << 5) << 40) | ((target >> 16 & 0xffff) << 48);
    q(s, IDT + vec * 16)[1] = target >> 32;
}

static void put(struct ev *s, uint64_t pa, const uint8_t *b, const uint8_t *e)
{
    memcpy(s->ram + pa, b, (size_t)(e - b));
}

/* exceptions: error code (or -1) in r8, the frame's RIP in r9 */
SNIP(h_exc_err, "pop r8\n pop r9\n hlt\n");
SNIP(h_exc_noerr, "mov r8, -1\n pop r9\n hlt\n");
/* vector 0x30: counts in r15, snapshots RCX/RDX and the return RIP */
SNIP(h_irq, "inc r15\n mov r8, rcx\n mov r9, rdx\n mov r10, [rsp]\n iretq\n");

static void ev_init(struct ev *s, const uint8_t *code, const uint8_t *end, uint32_t bitmap)
{
    memset(s, 0, sizeof *s);
    struct hvp_cpu_config cfg = {
        .size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM, .exception_exit_bitmap = bitmap};
    cr_assert_eq(hvp_cpu_create(&cfg, &s->cpu), 0);
    s->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(s->ram != MAP_FAILED);
    cr_assert_eq(hvp_cpu_map(s->cpu, 0, RAM_SIZE, s->ram, 7), 0);
    *q(s, PML4) = PDPT | 7;
    *q(s, PDPT) = PD | 7;
    *q(s, PD) = PT | 7;
    for (uint64_t i = 0; i < 512; i++)
        *q(s, PT + i * 8) = (i << 12) | 3;
    *q(s, PT + (MMIO_LIN >> 12) * 8) = APIC_GPA | 3; /* no RAM behind it */
    q(s, GDT)[1] = 0x00af9b000000ffffull;
    q(s, GDT)[2] = 0x00cf93000000ffffull;
    q(s, GDT)[5] = 0x67 | (TSS << 16) | (0x89ull << 40);
    memcpy(s->ram + TSS + 4, &(uint64_t){KSTACK}, 8);
    for (unsigned v = 0; v < 32; v++) {
        bool err = v == 8 || (v >= 10 && v <= 14) || v == 17;
        set_gate(s, v, err ? HCODE : HCODE + 0x100, 0);
    }
    set_gate(s, 0x30, IRQCODE, 0);
    set_gate(s, 0x31, IRQCODE, 3);
    set_gate(s, 2, NMICODE, 0);
    put(s, HCODE, h_exc_err, h_exc_err_end);
    put(s, HCODE + 0x100, h_exc_noerr, h_exc_noerr_end);
    put(s, IRQCODE, h_irq, h_irq_end);
    memset(s->ram + KCODE, 0xf4, 0x1000);
    put(s, KCODE, code, end);
    cr_assert_eq(hvp_cpu_get_state(s->cpu, &s->st), 0);
    s->st.cr0 = 0x80050033;
    s->st.cr3 = PML4;
    s->st.cr4 = 0x20;
    s->st.efer = 0xd01;
    s->st.seg[1] = (struct hvp_cpu_segment){0, 0xffffffff, 0x08, 0xa09b};
    for (int i = 0; i < 6; i++)
        if (i != 1) s->st.seg[i] = (struct hvp_cpu_segment){0, 0xffffffff, 0x10, 0xc093};
    s->st.gdtr = (struct hvp_cpu_table){GDT, 0x37};
    s->st.idtr = (struct hvp_cpu_table){IDT, 0xfff};
    s->st.tr = (struct hvp_cpu_segment){TSS, 0x67, 0x28, 0x8b};
    s->st.rip = KCODE;
    s->st.gpr[4] = KSTACK;
    s->st.rflags = 2; /* IF = 0 */
    s->st.gpr[2] = 0; /* not the reset signature */
    cr_assert_eq(hvp_cpu_set_state(s->cpu, &s->st), 0);
}

static void ev_run(struct ev *s, uint64_t budget)
{
    cr_assert_eq(hvp_cpu_run(s->cpu, budget, &s->ex), 0);
    cr_assert_eq(hvp_cpu_get_state(s->cpu, &s->st), 0);
}

static void ev_fini(struct ev *s)
{
    hvp_cpu_destroy(s->cpu);
    munmap(s->ram, RAM_SIZE);
}

#define INIT(s, name, bm) ev_init(s, name, name##_end, bm)
#define R(n)              (s.st.gpr[n])

static void expect_exit(struct ev *s, unsigned reason)
{
    cr_assert_eq(s->ex.reason, reason, "exit %u (want %u) vector %u rip %#lx", s->ex.reason, reason,
                 s->ex.u.exception.vector, (unsigned long)s->st.rip);
}

/* ---- hooks ---- */

static int ack(void *ctx)
{
    struct ev *s = ctx;
    if (s->ack_limit && s->acks >= s->ack_limit) return -1;
    s->acks++;
    if (s->ack_limit && s->acks == s->ack_limit) hvp_cpu_set_intr(s->cpu, false);
    return s->ack_vector ? s->ack_vector : 0x30;
}

static int pio(void *ctx, uint16_t port, unsigned size, bool write, uint32_t *val)
{
    struct ev *s = ctx;
    s->pio_calls++;
    if (port == 0x99) return HVP_CPU_HOOK_EXIT;
    if (write) {
        s->port_last_write = *val | (uint32_t)size << 24;
        if (s->nmi_on_out) hvp_cpu_nmi(s->cpu);
    } else {
        *val = 0xabcdef00u | port; /* the CPU keeps the low `size` bytes */
    }
    return 0;
}

static int mmio(void *ctx, uint64_t gpa, unsigned size, bool write, uint64_t *val)
{
    struct ev *s = ctx;
    s->mmio_calls++;
    if (gpa < APIC_GPA || gpa + size > APIC_GPA + 4096) return HVP_CPU_HOOK_EXIT;
    if (write)
        memcpy(s->apic + (gpa - APIC_GPA), val, size);
    else {
        *val = 0;
        memcpy(val, s->apic + (gpa - APIC_GPA), size);
    }
    return 0;
}

static int msr(void *ctx, uint32_t index, bool write, uint64_t *val)
{
    struct ev *s = ctx;
    s->msr_calls++;
    if (index == 0x6e0) {
        if (write)
            s->msr_6e0 = *val;
        else
            *val = s->msr_6e0;
        return 0;
    }
    if (index >= 0x800 && index <= 0x8ff) {
        if (!write) *val = 0x1000 + index;
        return 0;
    }
    if (index == 0x4b564d00) return HVP_CPU_HOOK_EXIT;
    return HVP_CPU_HOOK_GP;
}

static int cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t regs[4])
{
    struct ev *s = ctx;
    (void)subleaf;
    s->cpuid_calls++;
    if (leaf == 0x40000000) {
        regs[0] = 0x40000001;
        regs[1] = 0x4b4d564b;
        return 0;
    }
    if (leaf == 0x40000001) return HVP_CPU_HOOK_EXIT;
    return 0;
}

static void tpr_write(void *ctx, uint8_t v)
{
    struct ev *s = ctx;
    s->tpr_written = v;
    s->tpr_writes++;
}

static uint8_t tpr_read(void *ctx)
{
    (void)ctx;
    return 9;
}

static void hooks(struct ev *s)
{
    struct hvp_cpu_hooks h = {.ctx = s,
                              .pio = pio,
                              .mmio = mmio,
                              .msr = msr,
                              .cpuid = cpuid,
                              .intr_ack = ack,
                              .tpr_write = tpr_write,
                              .tpr_read = tpr_read};
    cr_assert_eq(hvp_cpu_set_hooks(s->cpu, &h), 0);
}

/* ---- INTR ---- */

SNIP(s_count, "sti\n 1: cmp r15, 3\n jb 1b\n hlt\n");
Test(events, intr_delivered_through_idt)
{
    struct ev s;
    INIT(&s, s_count, 0);
    hooks(&s);
    s.ack_limit = 3;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 100000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 3, "the handler ran once per acknowledged interrupt");
    cr_expect_eq(s.acks, 3);
    cr_expect_eq(R(4), KSTACK, "IRETQ restored the stack");
    cr_expect(s.st.rflags & 0x200);
    ev_fini(&s);
}

Test(events, intr_ignored_while_if_clear_and_kick_keeps_it)
{
    struct ev s;
    INIT(&s, s_count, 0);
    hooks(&s);
    s.st.rip = KCODE + 1; /* skip the STI: IF stays 0 */
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    hvp_cpu_set_intr(s.cpu, true);
    hvp_cpu_kick(s.cpu);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_KICK);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_BUDGET);
    cr_expect_eq(s.acks, 0, "IF = 0: never acknowledged");
    cr_expect_eq(R(15), 0);
    /* the level is still there once IF is set */
    s.st.rflags |= 0x200;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    s.ack_limit = 3;
    ev_run(&s, 100000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 3);
    ev_fini(&s);
}

/* INTR pending while IF = 0: taken after the instruction that follows STI */
SNIP(s_sti1, "mov rax, 1\n mov rbx, 2\n sti\n mov rcx, 3\n s_sti1_after:\n mov rdx, 4\n hlt\n");
LABEL(s_sti1_after);
Test(events, pending_intr_taken_at_sti_plus_one)
{
    struct ev s;
    INIT(&s, s_sti1, 0);
    hooks(&s);
    s.ack_limit = 1;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(8), 3, "the instruction after STI ran before the interrupt");
    cr_expect_eq(R(9), 0, "the one after it did not");
    cr_expect_eq(R(10), KCODE + OFF(s_sti1, s_sti1_after));
    cr_expect_eq(R(2), 4);
    ev_fini(&s);
}

/* STI;HLT with an interrupt pending: HLT does not exit, the interrupt
 * returns past it */
SNIP(s_stihlt, "sti\n hlt\n s_stihlt_after:\n mov rbx, 1\n hlt\n");
LABEL(s_stihlt_after);
Test(events, sti_hlt_wakes_on_pending_interrupt)
{
    struct ev s;
    INIT(&s, s_stihlt, 0);
    hooks(&s);
    s.ack_limit = 1;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(10), KCODE + OFF(s_stihlt, s_stihlt_after));
    cr_expect_eq(R(3), 1, "ran on after the first HLT without an exit");
    ev_fini(&s);
}

Test(events, sti_hlt_without_interrupt_exits_then_wakes)
{
    struct ev s;
    INIT(&s, s_stihlt, 0);
    hooks(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(s.st.rip, KCODE + OFF(s_stihlt, s_stihlt_after));
    cr_expect_eq(R(3), 0);
    /* the embedder's wait ends with an interrupt */
    s.ack_limit = 1;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(10), KCODE + OFF(s_stihlt, s_stihlt_after));
    cr_expect_eq(R(3), 1);
    ev_fini(&s);
}

/* MOV SS: the next instruction runs before an interrupt */
SNIP(s_movss, "mov ax, 0x10\n mov ss, ax\n mov rcx, 3\n s_movss_after:\n mov rdx, 4\n hlt\n");
LABEL(s_movss_after);
Test(events, mov_ss_shadow)
{
    struct ev s;
    INIT(&s, s_movss, 0);
    hooks(&s);
    s.st.rflags = 0x202;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    ev_run(&s, 2); /* stop right after MOV SS */
    expect_exit(&s, HVP_CPU_EXIT_BUDGET);
    cr_expect(s.st.interrupt_shadow, "get_state shows the shadow");
    s.ack_limit = 1;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(8), 3);
    cr_expect_eq(R(9), 0);
    cr_expect_eq(R(10), KCODE + OFF(s_movss, s_movss_after));
    cr_expect(!s.st.interrupt_shadow);
    ev_fini(&s);
}

/* the shadow given through set_state holds for one instruction */
SNIP(s_shadow_state, "mov rcx, 3\n s_shadow_state_after:\n mov rdx, 4\n hlt\n");
LABEL(s_shadow_state_after);
Test(events, shadow_through_set_state)
{
    struct ev s;
    INIT(&s, s_shadow_state, 0);
    hooks(&s);
    s.st.rflags = 0x202;
    s.st.interrupt_shadow = 1;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    s.ack_limit = 1;
    hvp_cpu_set_intr(s.cpu, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(8), 3);
    cr_expect_eq(R(9), 0);
    cr_expect_eq(R(10), KCODE + OFF(s_shadow_state, s_shadow_state_after));
    ev_fini(&s);
}

/* ---- NMI ---- */

/* the first NMI handler raises another NMI (through a port write the hook
 * turns into hvp_cpu_nmi) and checks it is held until its IRETQ */
SNIP(h_nmi, "inc r14\n cmp r14, 1\n jne 1f\n out 0x80, al\n nop\n nop\n mov r13, r14\n"
            "1: iretq\n");
SNIP(s_nmi, "nop\n hlt\n");
Test(events, nmi_blocked_until_iret)
{
    struct ev s;
    INIT(&s, s_nmi, 0);
    put(&s, NMICODE, h_nmi, h_nmi_end);
    hooks(&s);
    s.nmi_on_out = true;
    hvp_cpu_nmi(s.cpu);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(13), 1, "the second NMI waited while the handler ran");
    cr_expect_eq(R(14), 2, "and came after IRETQ");
    cr_expect(!s.st.nmi_masked);
    ev_fini(&s);
}

Test(events, nmi_masked_state_round_trip)
{
    struct ev s;
    INIT(&s, s_nmi, 0);
    put(&s, NMICODE, h_nmi, h_nmi_end);
    s.st.nmi_masked = 1;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    hvp_cpu_nmi(s.cpu);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect(s.st.nmi_masked);
    cr_expect_eq(R(14), 0, "blocked: no NMI without an IRET");
    ev_fini(&s);
}

/* ---- window exits and injection ---- */

SNIP(s_win, "mov rax, 1\n sti\n mov rbx, 2\n s_win_at:\n mov rcx, 3\n hlt\n");
LABEL(s_win_at);
Test(events, irq_window_exit_then_injected_interrupt)
{
    struct ev s;
    INIT(&s, s_win, 0);
    hvp_cpu_request_window(s.cpu, true, false);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_WINDOW);
    cr_expect(!s.ex.u.window.nmi);
    cr_expect_eq(s.st.rip, KCODE + OFF(s_win, s_win_at), "after STI and its shadow");
    cr_expect_eq(R(3), 2);
    struct hvp_cpu_event e = {.pending = true, .type = HVP_CPU_EVENT_EXTINT, .vector = 0x30};
    cr_assert_eq(hvp_cpu_set_event(s.cpu, &e), 0);
    struct hvp_cpu_event g;
    cr_assert_eq(hvp_cpu_get_event(s.cpu, &g), 0);
    cr_expect(g.pending);
    cr_expect_eq(g.vector, 0x30);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(10), KCODE + OFF(s_win, s_win_at));
    cr_expect_eq(R(8), 0, "delivered before mov rcx");
    cr_assert_eq(hvp_cpu_get_event(s.cpu, &g), 0);
    cr_expect(!g.pending, "consumed");
    ev_fini(&s);
}

Test(events, nmi_window_and_cancel)
{
    struct ev s;
    INIT(&s, s_win, 0);
    hvp_cpu_request_window(s.cpu, false, true);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_WINDOW);
    cr_expect(s.ex.u.window.nmi);
    cr_expect_eq(s.st.rip, KCODE, "open at once");
    hvp_cpu_request_window(s.cpu, true, true);
    hvp_cpu_request_window(s.cpu, false, false);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    ev_fini(&s);
}

SNIP(s_inj, "nop\n hlt\n");
Test(events, injected_soft_int_and_exception)
{
    struct ev s;
    INIT(&s, s_inj, 0);
    /* INT 0x31 of length 2 "at" RIP: the frame holds RIP + 2 */
    struct hvp_cpu_event e = {
        .pending = true, .type = HVP_CPU_EVENT_SOFT_INT, .vector = 0x31, .insn_len = 2};
    cr_assert_eq(hvp_cpu_set_event(s.cpu, &e), 0);
    ev_run(&s, 5); /* the handler's four instructions and IRETQ */
    cr_expect_eq(s.st.rip, KCODE + 2);
    cr_expect_eq(R(15), 1);
    cr_expect_eq(R(10), KCODE + 2);
    /* a #GP with its error code */
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    e = (struct hvp_cpu_event){.pending = true,
                               .type = HVP_CPU_EVENT_EXCEPTION,
                               .vector = 13,
                               .has_error_code = true,
                               .error_code = 0x28};
    cr_assert_eq(hvp_cpu_set_event(s.cpu, &e), 0);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(8), 0x28);
    /* bad events are refused */
    e = (struct hvp_cpu_event){.pending = true, .type = HVP_CPU_EVENT_EXCEPTION, .vector = 40};
    cr_expect_eq(hvp_cpu_set_event(s.cpu, &e), -EINVAL);
    e = (struct hvp_cpu_event){.pending = true, .type = HVP_CPU_EVENT_SOFT_INT, .vector = 0x31};
    cr_expect_eq(hvp_cpu_set_event(s.cpu, &e), -EINVAL, "soft types need insn_len");
    ev_fini(&s);
}

Test(events, injected_nmi_blocks_the_next)
{
    struct ev s;
    INIT(&s, s_nmi, 0);
    SNIP(h_nmi_hlt, "inc r14\n hlt\n");
    put(&s, NMICODE, h_nmi_hlt, h_nmi_hlt_end);
    struct hvp_cpu_event e = {.pending = true, .type = HVP_CPU_EVENT_NMI, .vector = 2};
    cr_assert_eq(hvp_cpu_set_event(s.cpu, &e), 0);
    hvp_cpu_nmi(s.cpu);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(14), 1);
    cr_expect(s.st.nmi_masked);
    ev_fini(&s);
}

/* ---- hooks ---- */

SNIP(s_pio, "mov al, 0x5a\n out 0x70, al\n in al, 0x71\n mov bl, al\n mov dx, 0x3f8\n"
            "in eax, dx\n mov ecx, eax\n mov ax, 0x1234\n out dx, ax\n in ax, 0x99\n hlt\n");
Test(events, pio_hook_inline)
{
    struct ev s;
    INIT(&s, s_pio, 0);
    hooks(&s);
    s.st.gpr[3] = 0xffffffffffffff00ull;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    ev_run(&s, 1000);
    /* everything up to port 0x99 ran inside the CPU */
    expect_exit(&s, HVP_CPU_EXIT_IO);
    cr_expect_eq(s.ex.u.io.port, 0x99);
    cr_expect(!s.ex.u.io.write);
    cr_expect_eq(s.pio_calls, 5);
    cr_expect_eq(R(3), 0xffffffffffffff71ull, "IN AL kept the low byte only");
    cr_expect_eq(R(1), 0xabcdeff8ull, "IN EAX");
    cr_expect_eq(s.port_last_write, 0x1234u | 2u << 24, "OUT DX, AX wrote 2 bytes");
    s.ex.u.io.data = 0xbeef;
    cr_assert_eq(hvp_cpu_complete(s.cpu, &s.ex), 0);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(0) & 0xffff, 0xbeef, "the completed IN");
    ev_fini(&s);
}

/* the APIC page through the mmio hook: loads, stores, an ALU operand, RMW */
SNIP(s_mmio, "mov rsi, 0x50000\n mov eax, [rsi + 0x30]\n mov dword ptr [rsi + 0xb0], 0x77\n"
             "add dword ptr [rsi + 0x80], 5\n mov rbx, [rsi + 0x100]\n"
             "cmp byte ptr [rsi + 0x20], 7\n sete cl\n lock inc word ptr [rsi + 0x300]\n"
             "mov dx, [rsi + 0x302]\n mov r11, [rsi + 0xffe]\n hlt\n");
Test(events, mmio_hook_inline)
{
    struct ev s;
    INIT(&s, s_mmio, 0);
    hooks(&s);
    uint32_t ver = 0x00050014, tpr = 0x10;
    uint64_t big = 0x1122334455667788ull;
    memcpy(s.apic + 0x30, &ver, 4);
    memcpy(s.apic + 0x80, &tpr, 4);
    memcpy(s.apic + 0x100, &big, 8);
    s.apic[0x20] = 7;
    s.apic[0x300] = 0xff;
    ev_run(&s, 1000);
    /* the 8-byte read at 0xffe crosses the page: an exit */
    expect_exit(&s, HVP_CPU_EXIT_MMIO);
    cr_expect_eq(s.ex.u.mmio.gpa, APIC_GPA + 0xffe);
    cr_expect_eq(R(0), 0x00050014);
    uint32_t v;
    memcpy(&v, s.apic + 0xb0, 4);
    cr_expect_eq(v, 0x77);
    memcpy(&v, s.apic + 0x80, 4);
    cr_expect_eq(v, 0x15, "ADD to MMIO read then wrote");
    cr_expect_eq(R(3), big);
    cr_expect_eq(R(1) & 0xff, 1, "CMP read the byte");
    cr_expect_eq(s.apic[0x300], 0, "LOCK INC wrapped the low byte");
    cr_expect_eq(s.apic[0x301], 1);
    cr_expect_eq(R(2) & 0xffff, 0);
    cr_expect_eq(s.mmio_calls, 9);
    ev_fini(&s);
}

SNIP(s_msr, "mov ecx, 0x6e0\n mov eax, 0x1234\n mov edx, 5\n wrmsr\n xor eax, eax\n xor edx, edx\n"
            "rdmsr\n mov r8, rax\n mov r9, rdx\n mov ecx, 0x802\n rdmsr\n mov r10, rax\n"
            "mov ecx, 0x4b564d00\n s_msr_exit:\n rdmsr\n mov r11, rax\n mov ecx, 0x12345\n"
            "s_msr_gp:\n rdmsr\n hlt\n");
LABEL(s_msr_exit);
LABEL(s_msr_gp);
Test(events, msr_hook_apic_range_exit_and_gp)
{
    struct ev s;
    INIT(&s, s_msr, 1u << 13);
    hooks(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_MSR);
    cr_expect_eq(s.ex.u.msr.index, 0x4b564d00);
    cr_expect(!s.ex.u.msr.write);
    cr_expect_eq(s.st.rip, KCODE + OFF(s_msr, s_msr_exit), "at the RDMSR");
    cr_expect_eq(s.msr_6e0, 0x500001234ull);
    cr_expect_eq(R(8), 0x1234);
    cr_expect_eq(R(9), 5);
    cr_expect_eq(R(10), 0x1802);
    s.ex.u.msr.value = 0x99;
    cr_assert_eq(hvp_cpu_complete(s.cpu, &s.ex), 0);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13);
    cr_expect_eq(s.st.rip, KCODE + OFF(s_msr, s_msr_gp));
    cr_expect_eq(R(11), 0x99, "the completed RDMSR");
    ev_fini(&s);
}

Test(events, x2apic_msrs_gp_without_hook)
{
    struct ev s;
    INIT(&s, s_msr, 1u << 13);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13);
    cr_expect_eq(s.st.rip, KCODE + 15, "WRMSR 0x6E0 faults without an APIC");
    ev_fini(&s);
}

SNIP(s_cpuid, "mov eax, 0x40000000\n xor ecx, ecx\n cpuid\n mov r8, rax\n mov r9, rbx\n"
              "mov eax, 0x40000001\n cpuid\n hlt\n");
Test(events, cpuid_hook_and_exit)
{
    struct ev s;
    INIT(&s, s_cpuid, 0);
    hooks(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_CPUID);
    cr_expect_eq(s.ex.u.cpuid.leaf, 0x40000001);
    cr_expect_eq(R(8), 0x40000001);
    cr_expect_eq(R(9), 0x4b4d564b);
    s.ex.u.cpuid.regs[0] = 0x8;
    s.ex.u.cpuid.regs[3] = 0x1;
    cr_assert_eq(hvp_cpu_complete(s.cpu, &s.ex), 0);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(0), 8);
    cr_expect_eq(R(2), 1);
    ev_fini(&s);
}

SNIP(s_cr8, "mov rax, 5\n mov cr8, rax\n mov rbx, cr8\n hlt\n");
Test(events, cr8_through_tpr_hooks)
{
    struct ev s;
    INIT(&s, s_cr8, 0);
    hooks(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(s.tpr_writes, 1);
    cr_expect_eq(s.tpr_written, 5);
    cr_expect_eq(R(3), 9, "MOV from CR8 asks the APIC");
    cr_expect_eq(s.st.cr8, 9);
    ev_fini(&s);
}

Test(events, hooks_refused_in_user_mode)
{
    struct hvp_cpu_config cfg = {.size = sizeof cfg, .model = HVP_CPU_MODEL_USER64};
    struct hvp_cpu *cpu;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    struct hvp_cpu_hooks h = {0};
    cr_expect_eq(hvp_cpu_set_hooks(cpu, &h), -EINVAL);
    cr_expect_eq(hvp_cpu_reset(cpu, false), -EINVAL);
    hvp_cpu_destroy(cpu);
}

/* ---- reset ---- */

Test(events, reset_and_init)
{
    struct ev s;
    INIT(&s, s_inj, 0);
    s.st.fpu.mxcsr = 0x1fc0;
    s.st.nmi_masked = 1;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    hvp_cpu_nmi(s.cpu);
    cr_assert_eq(hvp_cpu_reset(s.cpu, true), 0);
    cr_assert_eq(hvp_cpu_get_state(s.cpu, &s.st), 0);
    cr_expect_eq(s.st.rip, 0xfff0);
    cr_expect_eq(s.st.seg[1].base, 0xffff0000);
    cr_expect_eq(s.st.cr0, 0x60000010);
    cr_expect_eq(s.st.efer, 0);
    cr_expect_eq(s.st.fpu.mxcsr, 0x1fc0, "INIT keeps SSE state");
    cr_expect(!s.st.nmi_masked);
    cr_assert_eq(hvp_cpu_reset(s.cpu, false), 0);
    cr_assert_eq(hvp_cpu_get_state(s.cpu, &s.st), 0);
    cr_expect_eq(s.st.fpu.mxcsr, 0x1f80, "RESET does not");
    cr_expect_eq(s.st.gpr[2] >> 8, 0x806);
    ev_fini(&s);
}

/* ---- MSRs Linux touches at boot, and the default CPUID ---- */

SNIP(s_msrrw, "wrmsr\n s_msrrw_rd:\n xor eax, eax\n xor edx, edx\n rdmsr\n hlt\n");
LABEL(s_msrrw_rd);

/* WRMSR idx = v then RDMSR idx (or only RDMSR when !write); false on #GP */
static bool msr_rw(struct ev *s, uint32_t idx, bool write, uint64_t v, uint64_t *out)
{
    cr_assert_eq(hvp_cpu_get_state(s->cpu, &s->st), 0);
    s->st.rip = KCODE + (write ? 0 : OFF(s_msrrw, s_msrrw_rd));
    s->st.gpr[1] = idx;
    s->st.gpr[0] = (uint32_t)v;
    s->st.gpr[2] = v >> 32;
    cr_assert_eq(hvp_cpu_set_state(s->cpu, &s->st), 0);
    ev_run(s, 100);
    if (s->ex.reason == HVP_CPU_EXIT_EXCEPTION) {
        cr_assert_eq(s->ex.u.exception.vector, 13);
        return false;
    }
    expect_exit(s, HVP_CPU_EXIT_HLT);
    if (out) *out = (uint32_t)s->st.gpr[0] | s->st.gpr[2] << 32;
    return true;
}

Test(msrs, mtrrs)
{
    struct ev s;
    INIT(&s, s_msrrw, 1u << 13);
    uint64_t v;
    cr_assert(msr_rw(&s, 0xfe, false, 0, &v));
    cr_expect_eq(v, 0x508, "MTRRCAP: 8 variable, fixed, WC");
    cr_expect(!msr_rw(&s, 0xfe, true, 0x508, NULL), "MTRRCAP is read-only");
    cr_assert(msr_rw(&s, 0x2ff, true, 0x806, &v));
    cr_expect_eq(v, 0x806);
    cr_expect(!msr_rw(&s, 0x2ff, true, 0x802, NULL), "type 2 is reserved");
    cr_expect(!msr_rw(&s, 0x2ff, true, 0x1806, NULL), "bit 12 is reserved");
    cr_assert(msr_rw(&s, 0x200, true, 0x80000006, &v));
    cr_expect_eq(v, 0x80000006);
    cr_expect(!msr_rw(&s, 0x200, true, 0x80000106, NULL), "PHYSBASE bit 8");
    cr_expect(!msr_rw(&s, 0x200, true, 1ull << 48 | 6, NULL), "beyond MAXPHYADDR");
    cr_assert(msr_rw(&s, 0x20f, true, 0xff80000800, &v));
    cr_expect_eq(v, 0xff80000800);
    cr_expect(!msr_rw(&s, 0x201, true, 0xff80000801, NULL), "PHYSMASK bit 0");
    cr_assert(msr_rw(&s, 0x26f, true, 0x0506040100000606ull, &v));
    cr_expect_eq(v, 0x0506040100000606ull);
    cr_expect(!msr_rw(&s, 0x250, true, 0x0606060606060602ull, NULL), "fixed range type 2");
    cr_expect(!msr_rw(&s, 0x210, false, 0, NULL), "no ninth variable range");
    cr_assert_eq(hvp_cpu_get_state(s.cpu, &s.st), 0);
    cr_expect_eq(s.st.mtrr_def_type, 0x806);
    cr_expect_eq(s.st.mtrr_var[0], 0x80000006);
    cr_expect_eq(s.st.mtrr_fixed[10], 0x0506040100000606ull);
    /* INIT keeps the MTRRs, RESET clears them */
    cr_assert_eq(hvp_cpu_reset(s.cpu, true), 0);
    cr_assert_eq(hvp_cpu_get_state(s.cpu, &s.st), 0);
    cr_expect_eq(s.st.mtrr_def_type, 0x806);
    cr_assert_eq(hvp_cpu_reset(s.cpu, false), 0);
    cr_assert_eq(hvp_cpu_get_state(s.cpu, &s.st), 0);
    cr_expect_eq(s.st.mtrr_def_type, 0);
    ev_fini(&s);
}

Test(msrs, pat_misc_enable_sign_id)
{
    struct ev s;
    INIT(&s, s_msrrw, 1u << 13);
    uint64_t v;
    cr_assert(msr_rw(&s, 0x277, false, 0, &v));
    cr_expect_eq(v, 0x0007040600070406ull, "PAT reset value");
    cr_assert(msr_rw(&s, 0x277, true, 0x0007010600070106ull, &v));
    cr_expect_eq(v, 0x0007010600070106ull);
    cr_expect(!msr_rw(&s, 0x277, true, 0x0007040600070402ull, NULL), "PAT type 2");
    cr_expect(!msr_rw(&s, 0x277, true, 0x0807040600070406ull, NULL), "PAT type 8");
    cr_assert(msr_rw(&s, 0x1a0, false, 0, &v));
    cr_expect_eq(v, 0x1801);
    cr_assert(msr_rw(&s, 0x1a0, true, 0x1800, &v), "fast strings off");
    cr_expect_eq(v, 0x1800);
    cr_expect(!msr_rw(&s, 0x1a0, true, 0x1801ull | 1ull << 34, NULL), "XD disable");
    cr_assert(msr_rw(&s, 0x8b, true, 0, &v));
    cr_expect_eq(v, 0);
    ev_fini(&s);
}

Test(msrs, sysenter_tsc_aux_syscall_canonical)
{
    struct ev s;
    INIT(&s, s_msrrw, 1u << 13);
    uint64_t v;
    cr_assert(msr_rw(&s, 0x174, true, 0x10, &v));
    cr_expect_eq(v, 0x10);
    cr_assert(msr_rw(&s, 0x176, true, 0xffffffff81000000ull, &v));
    cr_expect_eq(v, 0xffffffff81000000ull);
    cr_expect(!msr_rw(&s, 0x176, true, 0x0000800000000000ull, NULL), "SYSENTER_EIP canonical");
    cr_expect(!msr_rw(&s, 0x175, true, 0x0000800000000000ull, NULL), "SYSENTER_ESP canonical");
    cr_assert(msr_rw(&s, 0xc0000103, true, 0xffffffff, &v));
    cr_expect(!msr_rw(&s, 0xc0000103, true, 1ull << 32, NULL), "TSC_AUX 63:32");
    cr_expect(!msr_rw(&s, 0xc0000084, true, 1ull << 32, NULL), "SFMASK 63:32");
    cr_expect(!msr_rw(&s, 0xc0000082, true, 0x0000800000000000ull, NULL), "LSTAR canonical");
    cr_assert(msr_rw(&s, 0x1b, true, 0xfee00900, &v));
    cr_expect(!msr_rw(&s, 0x1b, true, 0xfee00d00, NULL), "x2APIC enable without x2APIC");
    cr_expect(!msr_rw(&s, 0x179, false, 0, NULL), "MCG_CAP: no MCA");
    cr_expect(!msr_rw(&s, 0x6e0, false, 0, NULL), "TSC_DEADLINE without an APIC hook");
    ev_fini(&s);
}

Test(msrs, default_cpuid_profile)
{
    struct hvp_cpuid_entry t[64];
    size_t n = hvp_cpu_default_cpuid(HVP_CPU_MODEL_SYSTEM, t, 64);
    cr_assert(n > 0 && n <= 64);
    const struct hvp_cpuid_entry *l1 = NULL, *l6 = NULL, *e1 = NULL, *e8 = NULL, *l0 = NULL;
    for (size_t i = 0; i < n; i++) {
        if (t[i].leaf == 0) l0 = &t[i];
        if (t[i].leaf == 1) l1 = &t[i];
        if (t[i].leaf == 6) l6 = &t[i];
        if (t[i].leaf == 0x80000001) e1 = &t[i];
        if (t[i].leaf == 0x80000008) e8 = &t[i];
    }
    cr_assert(l0 && l1 && l6 && e1 && e8);
    cr_expect_geq(l0->eax, 6);
    uint32_t want_edx = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9) |
                        (1u << 12) | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 19) |
                        (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26);
    cr_expect_eq(l1->edx & want_edx, want_edx, "missing %#x", want_edx & ~l1->edx);
    cr_expect_eq(l1->edx & ((1u << 7) | (1u << 14) | (1u << 17)), 0, "no MCE, MCA, PSE36");
    cr_expect(l1->ecx & (1u << 31), "hypervisor");
    cr_expect_eq(l1->ecx & ((1u << 26) | (1u << 27) | (1u << 21) | (1u << 17) | (1u << 3)), 0,
                 "no XSAVE, OSXSAVE, x2APIC, PCID, MONITOR");
    cr_expect_eq((l1->ebx >> 8) & 0xff, 8, "CLFLUSH 64 bytes");
    cr_expect_eq((l1->ebx >> 16) & 0xff, 1, "one logical processor");
    cr_expect(l6->eax & 4, "ARAT");
    uint32_t e = (1u << 11) | (1u << 20) | (1u << 29);
    cr_expect_eq(e1->edx & e, e, "SYSCALL NX LM");
    cr_expect_eq(e8->eax & 0xffff, 0x3030);
    /* an embedder's APIC may add TSC-deadline; MCE is refused */
    struct hvp_cpuid_entry u[64];
    memcpy(u, t, n * sizeof t[0]);
    struct hvp_cpu_config cfg = {
        .size = sizeof cfg, .model = HVP_CPU_MODEL_SYSTEM, .cpuid = u, .ncpuid = n};
    struct hvp_cpu *cpu;
    for (size_t i = 0; i < n; i++)
        if (u[i].leaf == 1) u[i].ecx |= 1u << 24;
    cr_assert_eq(hvp_cpu_create(&cfg, &cpu), 0);
    hvp_cpu_destroy(cpu);
    for (size_t i = 0; i < n; i++)
        if (u[i].leaf == 1) u[i].edx |= 1u << 7;
    cr_expect_eq(hvp_cpu_create(&cfg, &cpu), -EINVAL);
}

/* REP MOVS/STOS with an MMIO side go element by element through the hook */
SNIP(s_mmio_rep, "mov rsi, 0x50030\n mov rdi, 0x40000\n mov rcx, 4\n cld\n rep movsd\n"
                 "mov rdi, 0x50100\n mov eax, 0x5a5a5a5a\n mov rcx, 3\n rep stosd\n hlt\n");
Test(events, mmio_hook_rep_string)
{
    struct ev s;
    INIT(&s, s_mmio_rep, 0);
    hooks(&s);
    for (unsigned i = 0; i < 16; i++)
        s.apic[0x30 + i] = (uint8_t)(0xa0 + i);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(memcmp(s.ram + 0x40000, s.apic + 0x30, 16), 0, "MMIO -> RAM");
    cr_expect_eq(s.mmio_calls, 7, "one call per element");
    for (unsigned i = 0; i < 12; i++)
        cr_expect_eq(s.apic[0x100 + i], 0x5a);
    cr_expect_eq(s.apic[0x10c], 0);
    ev_fini(&s);
}

/* ---- single-step, debug registers, the I/O bitmap ---- */

/* #DB handler: logs the frame's RIP at DATA + 8 * r12, counts in r12,
 * keeps DR6 in r13 */
#define DATA 0x40000ull
SNIP(h_db, "push rax\n mov rax, [rsp + 8]\n mov [0x40000 + r12 * 8], rax\n inc r12\n"
           "mov rax, dr6\n mov r13, rax\n pop rax\n iretq\n");

static void db_init(struct ev *s)
{
    set_gate(s, 1, NMICODE + 0x800, 0);
    put(s, NMICODE + 0x800, h_db, h_db_end);
}

SNIP(s_tf, "pushfq\n or qword ptr [rsp], 0x100\n popfq\n s_tf_a:\n nop\n s_tf_b:\n nop\n"
           "s_tf_c:\n pushfq\n s_tf_d:\n and qword ptr [rsp], -257\n s_tf_e:\n popfq\n s_tf_last:\n"
           "hlt\n");
LABEL(s_tf_a);
LABEL(s_tf_b);
LABEL(s_tf_c);
LABEL(s_tf_d);
LABEL(s_tf_e);
LABEL(s_tf_last);
Test(debug, tf_single_step)
{
    struct ev s;
    INIT(&s, s_tf, 0);
    db_init(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    /* a trap after every instruction that started with TF set: the POPF
     * that sets it does not trap, the one that clears it does */
    const uint8_t *want[] = {s_tf_b, s_tf_c, s_tf_d, s_tf_e, s_tf_last};
    cr_assert_eq(R(12), 5, "%lu traps", (unsigned long)R(12));
    for (unsigned i = 0; i < 5; i++)
        cr_expect_eq(*q(&s, DATA + i * 8), KCODE + OFF(s_tf, want[i]), "trap %u", i);
    cr_expect(R(13) & 0x4000, "DR6.BS");
    cr_expect(!(s.st.rflags & 0x100));
    ev_fini(&s);
}

SNIP(s_tf_ss, "pushfq\n or qword ptr [rsp], 0x100\n popfq\n mov ax, 0x10\n s_tf_ss_mov:\n"
              "mov ss, ax\n nop\n s_tf_ss_after:\n pushfq\n and qword ptr [rsp], -257\n popfq\n"
              "hlt\n");
LABEL(s_tf_ss_mov);
LABEL(s_tf_ss_after);
Test(debug, tf_held_by_mov_ss)
{
    struct ev s;
    INIT(&s, s_tf_ss, 0);
    db_init(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_assert_geq(R(12), 2, "%lu traps, rip %#lx err %#lx at %#lx", (unsigned long)R(12),
                  (unsigned long)s.st.rip, (unsigned long)R(8), (unsigned long)R(9));
    cr_expect_eq(*q(&s, DATA), KCODE + OFF(s_tf_ss, s_tf_ss_mov));
    cr_expect_eq(*q(&s, DATA + 8), KCODE + OFF(s_tf_ss, s_tf_ss_after),
                 "no trap between MOV SS and the next instruction");
    cr_expect_eq(R(12), 5);
    ev_fini(&s);
}

SNIP(s_dr, "mov rax, 0x123456789a\n mov dr0, rax\n mov rbx, dr0\n xor eax, eax\n mov dr6, rax\n"
           "mov rcx, dr6\n mov rdx, dr7\n mov rax, 0x2401\n mov dr7, rax\n s_dr_gd:\n"
           "mov rsi, dr7\n hlt\n");
LABEL(s_dr_gd);
Test(debug, mov_dr_and_general_detect)
{
    struct ev s;
    INIT(&s, s_dr, 1u << 1);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 1, "DR7.GD: #DB");
    cr_expect_eq(s.st.rip, KCODE + OFF(s_dr, s_dr_gd), "a fault");
    cr_expect_eq(R(3), 0x123456789aull);
    cr_expect_eq(R(1), 0xffff0ff0);
    cr_expect_eq(R(2), 0x400);
    cr_expect_eq(s.st.dr[7], 0x401, "GD cleared, L0 kept");
    cr_expect(s.st.dr[6] & 0x2000, "DR6.BD");
    cr_expect(!(s.st.dr[7] & 0x2000), "GD cleared");
    ev_fini(&s);
}

SNIP(s_dr_gp, "mov rax, 1\n shl rax, 32\n mov dr7, rax\n hlt\n");
Test(debug, mov_dr_reserved_and_de)
{
    struct ev s;
    INIT(&s, s_dr_gp, (1u << 13) | (1u << 6));
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13, "DR7 63:32");
    ev_fini(&s);
    SNIP(s_dr4, "mov rax, dr4\n hlt\n");
    INIT(&s, s_dr4, (1u << 13) | (1u << 6));
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_HLT);
    cr_expect_eq(R(0), 0xffff0ff0, "DR4 is DR6 without CR4.DE");
    s.st.cr4 |= 8;
    s.st.rip = KCODE;
    cr_assert_eq(hvp_cpu_set_state(s.cpu, &s.st), 0);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 6, "#UD with CR4.DE");
    ev_fini(&s);
}

/* CPL 3 code, IOPL 0: ports 0x70/0x71 allowed by the TSS bitmap */
SNIP(s_iobm, "in al, 0x71\n mov bl, al\n out 0x70, al\n s_iobm_w:\n in ax, 0x71\n hlt\n");
LABEL(s_iobm_w);
SNIP(s_iobm2, "mov dx, 0x3f8\n in al, dx\n hlt\n");
SNIP(s_iobm3, "mov dx, 0x2000\n out dx, al\n hlt\n");
static void to_ring3(struct ev *s)
{
    *q(s, PT + (KCODE >> 12) * 8) |= 4;
    *q(s, PT + ((KSTACK - 1) >> 12) * 8) |= 4;
    /* TSS limit covers the bitmap for ports 0..0x3ff (+ the trailing byte) */
    uint16_t iobase = 0x68;
    memcpy(s->ram + TSS + 0x66, &iobase, 2);
    memset(s->ram + TSS + iobase, 0xff, 0x81);
    s->ram[TSS + iobase + 0x70 / 8] = (uint8_t)~0x03; /* 0x70, 0x71 */
    s->st.tr = (struct hvp_cpu_segment){TSS, 0x68 + 0x80, 0x28, 0x8b};
    s->st.seg[1] = (struct hvp_cpu_segment){0, 0xffffffff, 0x23, 0xa0fb};
    s->st.seg[2] = (struct hvp_cpu_segment){0, 0xffffffff, 0x1b, 0xc0f3};
    cr_assert_eq(hvp_cpu_set_state(s->cpu, &s->st), 0);
}
Test(debug, io_permission_bitmap)
{
    struct ev s;
    INIT(&s, s_iobm, 1u << 13);
    hooks(&s);
    to_ring3(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13, "IN AX, 0x71 needs 0x72 too");
    cr_expect_eq(s.st.rip, KCODE + OFF(s_iobm, s_iobm_w));
    cr_expect_eq(R(3) & 0xff, 0x71, "IN AL, 0x71 was allowed");
    cr_expect_eq(s.pio_calls, 2);
    ev_fini(&s);
    INIT(&s, s_iobm2, 1u << 13);
    hooks(&s);
    to_ring3(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13, "port 0x3f8 denied");
    cr_expect_eq(s.pio_calls, 0);
    ev_fini(&s);
    INIT(&s, s_iobm3, 1u << 13);
    hooks(&s);
    to_ring3(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION);
    cr_expect_eq(s.ex.u.exception.vector, 13, "beyond the TSS limit");
    ev_fini(&s);
    /* IOPL 3: no bitmap */
    INIT(&s, s_iobm2, 1u << 13);
    hooks(&s);
    s.st.rflags |= 0x3000;
    to_ring3(&s);
    ev_run(&s, 1000);
    expect_exit(&s, HVP_CPU_EXIT_EXCEPTION); /* HLT at CPL 3 */
    cr_expect_eq(s.pio_calls, 1);
    ev_fini(&s);
}
