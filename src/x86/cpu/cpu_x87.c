/* hvp software x86-64 CPU: the x87 FPU and FXSAVE/FXRSTOR.
 *
 * Arithmetic, loads, stores, compares and transcendentals run on the host's
 * own x87 unit, so results, condition codes, flags, stack faults, precision
 * and rounding control match the hardware bit for bit. Each such
 * instruction calls a tiny assembly stub that
 *
 *     loads the guest state with FRSTOR (an FNSAVE image built from
 *     cpu->st.fpu), runs the guest's own opcode byte pair (memory forms
 *     rewritten to address [rsi], a host copy of the operand), stores the
 *     result with FNSAVE (non-waiting, so an unmasked exception only sets
 *     ES, exactly as on the guest) and puts the host control word back.
 *
 * One stub exists per register encoding (D8..DF x 64 ModRM values) and per
 * memory encoding (D8..DF x 8 ModRM.reg values). A register form naming
 * ST(i), i >= 2, runs the ST(1) stub with physical registers top+1 and
 * top+i exchanged around it: the operation only touches its operands, so
 * the exchange is invisible. FCMOVcc gets the guest's CF/PF/ZF in RFLAGS,
 * FCOMI* hand RFLAGS back. That full-state path is the reference; a fast
 * path (below) loads only the operands when every exception is masked and
 * no stack fault can happen, and falls back to it otherwise.
 *
 * Control instructions (FLDCW, FNSTCW, FNSTSW, FNCLEX, FNINIT, FLDENV,
 * FNSTENV, FRSTOR, FNSAVE, FXSAVE, FXRSTOR) are plain C.
 *
 * State: cpu->st.fpu is the storage (ST(i) order, abridged tags, TOP in
 * FSW). FSW.ES/B are kept equal to "an unmasked exception flag is set";
 * a waiting instruction that finds one raises #MF (16) before executing.
 * FIP/FOP follow every non-control instruction, FDP every one with a
 * memory operand (what FNSAVE shows on the host). FXSAVE stores
 * FIP/FDP/FOP only while ES is set and zeroes them otherwise, as the
 * AMD hosts this runs on do. */
#include "cpu_internal.h"

/* ---- host stubs ---- */

/* uint64_t stub(void *fnsave_image, void *mem, uint64_t rflags_in): returns
 * the host RFLAGS after the operation. 32 bytes each: 512 register forms,
 * then 64 memory forms. */
__asm__(".pushsection .text.hvp_x87_stubs,\"ax\",@progbits\n"
        ".balign 32\n"
        ".globl hvp_x87_stubs\n"
        ".hidden hvp_x87_stubs\n"
        ".type hvp_x87_stubs, @function\n"
        "hvp_x87_stubs:\n"
        ".set hvp_x87_i, 0\n"
        ".rept 576\n"
        ".balign 32\n"
        "endbr64\n"
        "sub $8, %rsp\n"
        "fnstcw (%rsp)\n"
        "push %rdx\n"
        "popfq\n"
        "frstor (%rdi)\n"
        ".if hvp_x87_i < 512\n"
        ".byte 0xd8 + (hvp_x87_i >> 6), 0xc0 + (hvp_x87_i & 63)\n"
        ".else\n"
        ".byte 0xd8 + ((hvp_x87_i - 512) >> 3), (((hvp_x87_i - 512) & 7) << 3) | 6\n"
        ".endif\n"
        "fnsave (%rdi)\n"
        "pushfq\n"
        "pop %rax\n"
        "fldcw (%rsp)\n"
        "add $8, %rsp\n"
        "ret\n"
        ".set hvp_x87_i, hvp_x87_i + 1\n"
        ".endr\n"
        ".size hvp_x87_stubs, . - hvp_x87_stubs\n"
        ".popsection\n");
extern void hvp_x87_stubs(void);
typedef uint64_t (*x87_stub)(void *img, void *mem, uint64_t rflags);

#define STUB_MEM 512

static inline x87_stub stub_at(unsigned k)
{
    return (x87_stub)((uintptr_t)&hvp_x87_stubs + 32u * k);
}

/* FNSAVE/FRSTOR image, 32-bit protected-mode layout (64-bit mode default). */
struct x87_img {
    uint16_t cw, r0, sw, r1, tw, r2;
    uint32_t fip;
    uint16_t fcs, fop;
    uint32_t fdp;
    uint16_t fds, r3;
    uint8_t st[8][10];
} __attribute__((packed));
_Static_assert(sizeof(struct x87_img) == 108, "FNSAVE image");

/* ---- state helpers ---- */

#define FSW_ES  0x0080u
#define FSW_B   0x8000u
#define FSW_TOP 0x3800u
#define CR0_MP  0x2u
#define CR0_EM  0x4u
#define CR0_TS  0x8u
#define X87_MF  16
#define X87_NM  7

static inline unsigned fpu_top(const struct hvp_cpu_fpu *f)
{
    return (f->fsw >> 11) & 7;
}

/* FSW with ES and B recomputed from the flags and the masks. */
static inline uint16_t fsw_norm(uint16_t fsw, uint16_t fcw)
{
    fsw &= (uint16_t) ~(FSW_ES | FSW_B);
    if (fsw & ~fcw & 0x3f) fsw |= FSW_ES | FSW_B;
    return fsw;
}

/* Full 2-bit tag of a valid register from its contents. */
static unsigned tag_of(const uint8_t *r)
{
    uint64_t m;
    memcpy(&m, r, 8);
    unsigned e = ((unsigned)r[9] << 8 | r[8]) & 0x7fff;
    if (e == 0x7fff) return 2;
    if (e == 0) return m ? 2 : 1;
    return (m >> 63) ? 0 : 2;
}

static uint16_t full_tw(const struct hvp_cpu_fpu *f)
{
    unsigned top = fpu_top(f), tw = 0;
    for (unsigned p = 0; p < 8; p++) {
        unsigned t = (f->ftw >> p) & 1 ? tag_of(f->st[(p - top) & 7]) : 3;
        tw |= t << (2 * p);
    }
    return (uint16_t)tw;
}

static uint8_t abridged_tw(uint16_t tw)
{
    uint8_t a = 0;
    for (unsigned p = 0; p < 8; p++)
        if (((tw >> (2 * p)) & 3) != 3) a |= (uint8_t)(1u << p);
    return a;
}

/* #NM when CR0.EM/TS say the FPU is not there; #MF for a waiting
 * instruction that finds an unmasked exception pending. */
static inline void x87_enter(struct hvp_cpu *cpu, bool waiting)
{
    if (unlikely(cpu->st.cr0 & (CR0_EM | CR0_TS))) hvp_raise(cpu, X87_NM, -1);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    /* ES and B follow the flags (hvp_cpu_set_state takes any FSW) */
    f->fsw = fsw_norm(f->fsw, f->fcw);
    if (waiting && unlikely(f->fsw & FSW_ES)) hvp_raise(cpu, X87_MF, -1);
}

static void img_from(const struct hvp_cpu_fpu *f, struct x87_img *m)
{
    memset(m, 0, sizeof *m);
    m->cw = f->fcw;
    m->sw = f->fsw & (uint16_t) ~(FSW_ES | FSW_B); /* never let the host trap */
    m->tw = full_tw(f);
    for (unsigned k = 0; k < 8; k++)
        memcpy(m->st[k], f->st[k], 10);
}

static void img_to(struct hvp_cpu_fpu *f, const struct x87_img *m)
{
    f->fsw = m->sw;
    f->ftw = abridged_tw(m->tw);
    for (unsigned k = 0; k < 8; k++) {
        memcpy(f->st[k], m->st[k], 10);
        memset(f->st[k] + 10, 0, 6);
    }
}

/* Exchanges ST(a) and ST(b) of an image, tags included. */
static void img_swap(struct x87_img *m, unsigned a, unsigned b)
{
    unsigned top = (m->sw >> 11) & 7;
    uint8_t t[10];
    memcpy(t, m->st[a], 10);
    memcpy(m->st[a], m->st[b], 10);
    memcpy(m->st[b], t, 10);
    unsigned pa = (top + a) & 7, pb = (top + b) & 7;
    unsigned ta = (m->tw >> (2 * pa)) & 3, tb = (m->tw >> (2 * pb)) & 3;
    m->tw = (uint16_t)((m->tw & ~((3u << (2 * pa)) | (3u << (2 * pb)))) | (tb << (2 * pa)) |
                       (ta << (2 * pb)));
}

/* Records FIP/FOP (and FDP) of a non-control instruction. */
static inline void x87_last(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, bool mem,
                            uint64_t ea)
{
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    f->fip = cpu->rip;
    f->fop = (uint16_t)(((xi->opcode & 7u) << 8) | xi->modrm);
    if (mem) f->fdp = ea;
}

/* ---- instructions that run on the host ---- */

/* d->aux */
#define XK_LOAD      0x01 /* reads its memory operand (d->osz bytes) */
#define XK_STORE     0x02 /* writes it */
#define XK_FLAGS_IN  0x04 /* FCMOVcc: guest CF/PF/ZF */
#define XK_FLAGS_OUT 0x08 /* FCOMI*: sets ZF/PF/CF, clears OF/SF/AF */
#define XK_COPY      0x10 /* FLD ST(i): ST(i) copied into ST(1), not exchanged */
/* d->r0: ST(i) exchanged with ST(1) around the stub, 0 = none;
 * d->imm: stub number. */

/* Runs stub k on image m with buf as the memory operand; with i != 0,
 * ST(1) and ST(i) are exchanged around it (physical registers). FLD ST(i)
 * (copy) instead gets a copy of ST(i) in ST(1) and the old ST(1) back
 * afterwards: its push target is physical register top - 1, which is ST(7),
 * so exchanging ST(7) into ST(1) would move the pushed value's register. */
static uint64_t run_stub(struct x87_img *m, uint8_t *buf, unsigned k, unsigned i, bool copy,
                         uint64_t fl)
{
    unsigned t0 = (m->sw >> 11) & 7;
    const unsigned p1 = (t0 + 1) & 7, pi = (t0 + i) & 7;
    uint8_t save[10];
    unsigned stag = 0;
    if (i && copy) {
        memcpy(save, m->st[1], 10);
        stag = (m->tw >> (2 * p1)) & 3;
        memcpy(m->st[1], m->st[i], 10);
        m->tw = (uint16_t)((m->tw & ~(3u << (2 * p1))) | ((m->tw >> (2 * pi)) & 3) << (2 * p1));
    } else if (i)
        img_swap(m, 1, i);
    uint64_t hf = stub_at(k)(m, buf, fl);
    if (i) {
        unsigned t1 = (m->sw >> 11) & 7;
        if (copy) { /* FLD does not change its source: put the old ST(1) back */
            memcpy(m->st[(p1 - t1) & 7], save, 10);
            m->tw = (uint16_t)((m->tw & ~(3u << (2 * p1))) | stag << (2 * p1));
        } else
            img_swap(m, (t0 + 1 - t1) & 7, (t0 + i - t1) & 7);
    }
    return hf;
}

static inline bool x87_canonical(uint64_t a)
{
    return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* #SS(0) or #GP(0) for non-canonical a (by the operand's segment: cpu.c
 * decides, through a check that raises before touching anything). */
static _Noreturn void x87_noncanonical(struct hvp_cpu *cpu, uint64_t a)
{
    uint8_t b;
    hvp_rd_block(cpu, a & HVP_PAGE_MASK, &b, 1);
    hvp_raise_gp0(cpu); /* not reached */
}

/* The access check of a memory operand that is not (or not wholly)
 * written: the host checks the destination even when an unmasked exception
 * suppresses the store, and FXSAVE checks all 512 bytes. A non-canonical
 * address raises #SS(0) or #GP(0) by the segment (cpu.c), a bad page #PF
 * (naming the second page's first byte when the operand straddles). No
 * data moves. (A not-present page reports a read in the #PF error code.) */
static void x87_probe(struct hvp_cpu *cpu, uint64_t a, unsigned size)
{
    uint64_t last = a + size - 1;
    hvp_rmw_ptr(cpu, a, 1);
    if ((last ^ a) & HVP_PAGE_MASK) hvp_rmw_ptr(cpu, last & HVP_PAGE_MASK, 1);
}

/* ---- fast path ----
 * With every exception masked and no stack fault possible (operands valid,
 * a pushed-to register empty), an instruction needs only its operands on
 * the host: load them with FLDT (exact, for any encoding), run the guest's
 * opcode (a 'op; ret' stub, same numbering as above), store the results
 * with FSTPT and take the flags from FNSTSW. About five times cheaper than
 * FRSTOR/FNSAVE; the bookkeeping (TOP, tags, sticky flags, C0..C3) is done
 * in C. The differential tests check both paths against the host. */
__asm__(".pushsection .text.hvp_x87_stubs,\"ax\",@progbits\n"
        ".balign 8\n"
        ".globl hvp_x87_ops\n"
        ".hidden hvp_x87_ops\n"
        ".type hvp_x87_ops, @function\n"
        "hvp_x87_ops:\n"
        ".set hvp_x87_j, 0\n"
        ".rept 576\n"
        ".balign 8\n"
        "endbr64\n"
        ".if hvp_x87_j < 512\n"
        ".byte 0xd8 + (hvp_x87_j >> 6), 0xc0 + (hvp_x87_j & 63)\n"
        ".else\n"
        ".byte 0xd8 + ((hvp_x87_j - 512) >> 3), (((hvp_x87_j - 512) & 7) << 3) | 6\n"
        ".endif\n"
        "ret\n"
        ".set hvp_x87_j, hvp_x87_j + 1\n"
        ".endr\n"
        ".size hvp_x87_ops, . - hvp_x87_ops\n"
        ".popsection\n");
extern void hvp_x87_ops(void);

/* Host ST0/ST1 <- regs[0]/regs[1] (din of them), op, then regs[0]/regs[1]
 * <- host ST0/ST1 (dout of them); returns the host FSW after the op. */
static uint16_t fast_run(uint8_t regs[20], uint8_t *mem, uint16_t cw, unsigned din, unsigned dout,
                         unsigned k, uint64_t *rflags)
{
    uintptr_t op = (uintptr_t)&hvp_x87_ops + 8u * k;
    uint16_t hcw = 0, sw = 0;
    uint64_t fl;
    __asm__ volatile("fnstcw %[hcw]\n\t"
                     "fldcw %[cw]\n\t"
                     "fnclex\n\t"
                     "cmp $2, %[din]\n\t"
                     "jb 1f\n\t"
                     "fldt 10(%[r])\n"
                     "1:\n\t"
                     "test %[din], %[din]\n\t"
                     "jz 2f\n\t"
                     "fldt (%[r])\n"
                     "2:\n\t"
                     "sub $128, %%rsp\n\t" /* the call must not hit the red zone */
                     "call *%[op]\n\t"
                     "pushfq\n\t"
                     "pop %[fl]\n\t"
                     "add $128, %%rsp\n\t"
                     "fnstsw %[sw]\n\t"
                     "test %[dout], %[dout]\n\t"
                     "jz 3f\n\t"
                     "fstpt (%[r])\n\t"
                     "cmp $2, %[dout]\n\t"
                     "jb 3f\n\t"
                     "fstpt 10(%[r])\n"
                     "3:\n\t"
                     "fldcw %[hcw]"
                     : [hcw] "+m"(hcw), [sw] "+m"(sw), [fl] "=&r"(fl)
                     : [cw] "m"(cw), [din] "r"(din), [dout] "r"(dout), [r] "r"(regs), [op] "r"(op),
                       "S"(mem)
                     : "cc", "memory");
    *rflags = fl;
    return sw;
}

/* fast classes (d->r1) */
enum {
    FC_NONE,
    FC_BIN,    /* ST(0) op ST(i) -> ST(0) or ST(i), i >= 1 */
    FC_BIN0,   /* ST(0) op ST(0) */
    FC_BINP,   /* ST(i) = ST(i) op ST(0), pop (i >= 1); also FCOMP ST(i) */
    FC_COM,    /* FCOM/FUCOM ST(i), i >= 1 */
    FC_COMPP,  /* FCOMPP, FUCOMPP */
    FC_MEM,    /* ST(0) op= memory, or a compare with memory */
    FC_MEMP,   /* FCOMP/FICOMP memory */
    FC_LOAD,   /* push from memory, or a constant */
    FC_STORE,  /* ST(0) -> memory */
    FC_STOREP, /* ST(0) -> memory, pop */
    FC_UNARY,  /* ST(0) = f(ST(0)) */
    FC_MEMCOM, /* FCOM/FICOM memory */
    FC_COMP,   /* FCOMP/FUCOMP ST(i), i >= 1 */
    FC_UNC2,   /* FSIN, FCOS: C2 says out of range */
    FC_UNCOM,  /* FTST, FXAM of a valid register */
    FC_XTRACT, /* FXTRACT: pushes */
    FC_MOVE,   /* FLD ST(i), FXCH, FST/FSTP ST(i): plain C */
    FC_COMI,   /* FCOMI/FUCOMI ST(i): RFLAGS */
    FC_COMIP,  /* FCOMIP/FUCOMIP ST(i) */
};

/* din, dout, pops (-1 = push), C bits the host defines */
static const struct {
    uint8_t din, dout;
    int8_t pop;
    uint16_t cmask;
} fast_tab[] = {
    [FC_BIN] = {2, 2, 0, 0x0200},   [FC_BIN0] = {1, 1, 0, 0x0200},
    [FC_BINP] = {2, 1, 1, 0x0200},  [FC_COM] = {2, 2, 0, 0x4700},
    [FC_COMPP] = {2, 0, 2, 0x4700}, [FC_MEM] = {1, 1, 0, 0x0200},
    [FC_MEMP] = {1, 0, 1, 0x4700},  [FC_LOAD] = {0, 1, -1, 0x0200},
    [FC_STORE] = {1, 1, 0, 0x0200}, [FC_STOREP] = {1, 0, 1, 0x0200},
    [FC_UNARY] = {1, 1, 0, 0x0200}, [FC_MEMCOM] = {1, 1, 0, 0x4700},
    [FC_COMP] = {2, 1, 1, 0x4700},  [FC_UNC2] = {1, 1, 0, 0x0600},
    [FC_UNCOM] = {1, 1, 0, 0x4700}, [FC_XTRACT] = {1, 2, -1, 0x0200},
    [FC_COMI] = {2, 2, 0, 0},       [FC_COMIP] = {2, 1, 1, 0},
};

static void st_pop(struct hvp_cpu_fpu *f)
{
    uint8_t t[16];
    memcpy(t, f->st[0], 16);
    memmove(f->st[0], f->st[1], 7 * 16);
    memcpy(f->st[7], t, 16);
    f->ftw &= (uint8_t) ~(1u << fpu_top(f));
    f->fsw = (uint16_t)((f->fsw & ~FSW_TOP) | ((fpu_top(f) + 1) & 7) << 11);
}

static void st_push(struct hvp_cpu_fpu *f)
{
    uint8_t t[16];
    memcpy(t, f->st[7], 16);
    memmove(f->st[1], f->st[0], 7 * 16);
    memcpy(f->st[0], t, 16);
    unsigned top = (fpu_top(f) - 1) & 7;
    f->ftw |= (uint8_t)(1u << top);
    f->fsw = (uint16_t)((f->fsw & ~FSW_TOP) | top << 11);
}

static inline bool st_valid(const struct hvp_cpu_fpu *f, unsigned i)
{
    return (f->ftw >> ((fpu_top(f) + i) & 7)) & 1;
}

/* FLD ST(i), FXCH ST(i), FST/FSTP ST(i) with valid operands: register
 * moves, no conversion, no flags; C1 = 0. */
static bool move_try(struct hvp_cpu_fpu *f, unsigned modrm)
{
    const unsigned i = modrm & 7, op = modrm & 0xf8;
    uint8_t t[16];
    if (!st_valid(f, 0) && op != 0xc0) return false;
    switch (op) {
    case 0xc0: /* D9: FLD ST(i) */
        if (!st_valid(f, i) || st_valid(f, 7)) return false;
        memcpy(t, f->st[i], 16);
        st_push(f);
        memcpy(f->st[0], t, 16);
        break;
    case 0xc8: /* D9: FXCH ST(i) */
        if (!st_valid(f, i)) return false;
        memcpy(t, f->st[i], 16);
        memcpy(f->st[i], f->st[0], 16);
        memcpy(f->st[0], t, 16);
        break;
    case 0xd0: /* DD: FST ST(i) */
    case 0xd8: /* DD: FSTP ST(i) */
        memcpy(f->st[i], f->st[0], 16);
        f->ftw |= (uint8_t)(1u << ((fpu_top(f) + i) & 7));
        if (op == 0xd8) st_pop(f);
        break;
    default: return false;
    }
    f->fsw &= (uint16_t)~0x0200;
    return true;
}

/* Runs the instruction the fast way when it can; false: take the slow one. */
static bool fast_try(struct hvp_cpu *cpu, const struct hvp_dinsn *d, uint8_t *buf)
{
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    const unsigned fc = d->r1, i = d->r0 ? d->r0 : 1;
    if ((f->fcw & 0x3f) != 0x3f) return false;
    if (fc == FC_MOVE) return move_try(f, HVP_XI(cpu, d)->modrm);
    const unsigned din = fast_tab[fc].din;
    if (fast_tab[fc].pop < 0 && st_valid(f, 7)) return false; /* overflow */
    if (din >= 1 && !st_valid(f, 0)) return false;            /* underflow */
    if (din >= 2 && !st_valid(f, i)) return false;
    uint8_t r[20];
    memcpy(r, f->st[0], 10);
    if (din >= 2) memcpy(r + 10, f->st[i], 10);
    uint64_t hf;
    uint16_t hs = fast_run(r, buf, f->fcw, din, fast_tab[fc].dout, (unsigned)d->imm, &hf);
    /* invalid operations may leave C bits as they were: let
     * the full-state path produce them (nothing has changed yet) */
    if (hs & 0x01) return false;
    if (d->aux & XK_STORE) hvp_wr_block(cpu, hvp_ea(cpu, d), buf, d->osz); /* may fault */
    const uint16_t cm = fast_tab[fc].cmask;
    f->fsw = (uint16_t)((f->fsw & ~cm) | (hs & cm) | (hs & 0x7f));
    if (fc == FC_COMI || fc == FC_COMIP) {
        hvp_flags_materialize(cpu);
        cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | (hf & (HVP_CF | HVP_PF | HVP_ZF));
    }
    switch (fc) {
    case FC_BIN:
    case FC_COM:
    case FC_COMI:
        memcpy(f->st[0], r, 10);
        memcpy(f->st[i], r + 10, 10);
        break;
    case FC_BINP:
    case FC_COMP:
    case FC_COMIP:
        memcpy(f->st[i], r, 10);
        st_pop(f);
        break;
    case FC_COMPP:
        st_pop(f);
        st_pop(f);
        break;
    case FC_MEMP:
    case FC_STOREP: st_pop(f); break;
    case FC_LOAD:
        st_push(f);
        memcpy(f->st[0], r, 10);
        memset(f->st[0] + 10, 0, 6);
        break;
    case FC_XTRACT:
        st_push(f);
        memcpy(f->st[0], r, 10);
        memset(f->st[0] + 10, 0, 6);
        memcpy(f->st[1], r + 10, 10);
        break;
    default: memcpy(f->st[0], r, 10); break;
    }
    return true;
}

HVP_HANDLER(h_host)
{
    x87_enter(cpu, true);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    const bool mem = d->aux & (XK_LOAD | XK_STORE);
    uint8_t buf[16] = {0};
    uint64_t ea = 0;
    if (mem) {
        ea = hvp_ea(cpu, d);
        /* the whole operand must be canonical before any page is checked
         * (the host: #SS/#GP, not #PF on the first page, for an operand
         * ending past the canonical boundary) */
        if (unlikely(!x87_canonical(ea + d->osz - 1))) x87_noncanonical(cpu, ea + d->osz - 1);
        if (d->aux & XK_LOAD) hvp_rd_block(cpu, ea, buf, d->osz);
    }
    if (d->r1 && fast_try(cpu, d, buf)) {
        x87_last(cpu, HVP_XI(cpu, d), mem, ea);
        return NEXT(cpu, d);
    }
    struct x87_img m;
    img_from(f, &m);
    uint64_t fl = 0x202;
    if (d->aux & XK_FLAGS_IN) fl |= hvp_flags_get(cpu) & (HVP_CF | HVP_PF | HVP_ZF);
    if (d->aux & XK_STORE) {
        struct x87_img m2 = m;
        uint8_t b2[16];
        memset(b2, 0xff, sizeof b2);
        run_stub(&m, buf, (unsigned)d->imm, d->r0, false, fl);
        /* an unmasked exception may suppress the store: find out by
         * running again over a different background */
        bool written = true;
        if (m.sw & FSW_ES) {
            run_stub(&m2, b2, (unsigned)d->imm, d->r0, false, fl);
            written = memcmp(buf, b2, d->osz) == 0;
        }
        /* may fault: state untouched; a suppressed store still checks
         * its destination (#PF/#GP/#SS on the host) */
        if (written)
            hvp_wr_block(cpu, ea, buf, d->osz);
        else
            x87_probe(cpu, ea, d->osz);
    } else {
        uint64_t hf = run_stub(&m, buf, (unsigned)d->imm, d->r0, d->aux & XK_COPY, fl);
        if (d->aux & XK_FLAGS_OUT) {
            hvp_flags_materialize(cpu);
            cpu->rflags = (cpu->rflags & ~(uint64_t)HVP_ARITH) | (hf & (HVP_CF | HVP_PF | HVP_ZF));
        }
    }
    img_to(f, &m);
    x87_last(cpu, HVP_XI(cpu, d), mem, ea);
    return NEXT(cpu, d);
}

/* ---- control instructions ---- */

#define FCW_STORED(v) ((uint16_t)(((v)&0x1f3f) | 0x40))

/* Sets FSW; registers stay where they are physically, so a new TOP
 * renames them: ST(k) becomes physical register top' + k. */
static void fpu_set_fsw(struct hvp_cpu_fpu *f, uint16_t fsw)
{
    unsigned t0 = fpu_top(f), t1 = (fsw >> 11) & 7;
    if (t0 != t1) {
        uint8_t r[8][16];
        memcpy(r, f->st, sizeof r);
        for (unsigned k = 0; k < 8; k++)
            memcpy(f->st[k], r[(t1 + k - t0) & 7], 16);
    }
    f->fsw = fsw;
}

static void fpu_init(struct hvp_cpu_fpu *f)
{
    f->fcw = 0x37f;
    fpu_set_fsw(f, 0);
    f->ftw = 0;
    f->fip = f->fdp = 0;
    f->fop = 0;
}

HVP_HANDLER(h_fldcw)
{
    x87_enter(cpu, true);
    uint16_t v = (uint16_t)hvp_rd16(cpu, hvp_ea(cpu, d));
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    f->fcw = FCW_STORED(v);
    f->fsw = fsw_norm(f->fsw, f->fcw);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fnstcw)
{
    x87_enter(cpu, false);
    hvp_wr16(cpu, hvp_ea(cpu, d), cpu->st.fpu.fcw);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fnstsw)
{
    x87_enter(cpu, false);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    uint16_t v = fsw_norm(f->fsw, f->fcw);
    if (d->fl & HVP_DF_M0)
        hvp_wr16(cpu, hvp_ea(cpu, d), v);
    else
        hvp_reg_wr(cpu, 0, 2, v);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fnclex)
{
    x87_enter(cpu, false);
    cpu->st.fpu.fsw &= 0x7f00;
    return NEXT(cpu, d);
}

/* FNENI, FNDISI, FNSETPM: 8087/287 leftovers, no-ops that neither wait
 * nor move FIP/FOP (as the host shows). */
HVP_HANDLER(h_fn8087)
{
    x87_enter(cpu, false);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fninit)
{
    x87_enter(cpu, false);
    fpu_init(&cpu->st.fpu);
    return NEXT(cpu, d);
}

/* The FSTENV/FLDENV environment: 28 bytes (32-bit) or 14 (16-bit, 66h). */
static unsigned env_write(struct hvp_cpu *cpu, uint8_t *e, bool o16)
{
    const struct hvp_cpu_fpu *f = &cpu->st.fpu;
    uint16_t cw = f->fcw, sw = fsw_norm(f->fsw, f->fcw), tw = full_tw(f);
    const uint16_t cs = 0,
                   ds = 0; /* FCS/FDS are not kept: stored as 0 (deprecated, CPUID.7:EBX[13]) */
    if (o16) {
        uint16_t w[7] = {cw, sw, tw, (uint16_t)f->fip, cs, (uint16_t)f->fdp, ds};
        memcpy(e, w, 14);
        return 14;
    }
    uint32_t w[7] = {0xffff0000u | cw,
                     0xffff0000u | sw,
                     0xffff0000u | tw,
                     (uint32_t)f->fip,
                     cs | (uint32_t)(f->fop & 0x7ff) << 16,
                     (uint32_t)f->fdp,
                     0xffff0000u | ds};
    memcpy(e, w, 28);
    return 28;
}

static void env_read(struct hvp_cpu_fpu *f, const uint8_t *e, bool o16)
{
    uint16_t cw, sw, tw;
    if (o16) {
        uint16_t w[7];
        memcpy(w, e, 14);
        cw = w[0], sw = w[1], tw = w[2];
        f->fip = w[3];
        f->fdp = w[5];
        f->fop = 0;
    } else {
        uint32_t w[7];
        memcpy(w, e, 28);
        cw = (uint16_t)w[0], sw = (uint16_t)w[1], tw = (uint16_t)w[2];
        f->fip = w[3];
        f->fop = (uint16_t)((w[4] >> 16) & 0x7ff);
        f->fdp = w[5];
    }
    f->fcw = FCW_STORED(cw);
    fpu_set_fsw(f, fsw_norm(sw, f->fcw));
    f->ftw = abridged_tw(tw);
}

HVP_HANDLER(h_fnstenv)
{
    x87_enter(cpu, false);
    uint8_t e[28];
    unsigned n = env_write(cpu, e, d->osz == 2);
    hvp_wr_block(cpu, hvp_ea(cpu, d), e, n);
    cpu->st.fpu.fcw |= 0x3f; /* FSTENV masks every exception afterwards */
    cpu->st.fpu.fsw = fsw_norm(cpu->st.fpu.fsw, cpu->st.fpu.fcw);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fldenv)
{
    x87_enter(cpu, true);
    uint8_t e[28];
    bool o16 = d->osz == 2;
    hvp_rd_block(cpu, hvp_ea(cpu, d), e, o16 ? 14 : 28);
    env_read(&cpu->st.fpu, e, o16);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fnsave)
{
    x87_enter(cpu, false);
    uint8_t e[108];
    bool o16 = d->osz == 2;
    unsigned n = env_write(cpu, e, o16);
    for (unsigned k = 0; k < 8; k++)
        memcpy(e + n + 10 * k, cpu->st.fpu.st[k], 10);
    hvp_wr_block(cpu, hvp_ea(cpu, d), e, n + 80);
    fpu_init(&cpu->st.fpu);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_frstor)
{
    x87_enter(cpu, true);
    uint8_t e[108];
    bool o16 = d->osz == 2;
    unsigned n = o16 ? 14 : 28;
    hvp_rd_block(cpu, hvp_ea(cpu, d), e, n + 80);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    env_read(f, e, o16);
    for (unsigned k = 0; k < 8; k++) {
        memcpy(f->st[k], e + n + 10 * k, 10);
        memset(f->st[k] + 10, 0, 6);
    }
    return NEXT(cpu, d);
}

/* FXSAVE/FXRSTOR: d->aux = 1 for the REX.W (64-bit FIP/FDP) layout. */
#define MXCSR_MASK 0xffffu

/* FXSAVE/FXRSTOR: #UD with CR0.EM, #NM with CR0.TS. */
static inline void fx_enter(struct hvp_cpu *cpu)
{
    if (unlikely(cpu->st.cr0 & CR0_EM)) hvp_raise_ud(cpu);
    x87_enter(cpu, false);
}

/* The 512-byte operand, in the host's order: a non-canonical first byte
 * (#SS(0) through SS, i.e. RSP/RBP-based, even when misaligned, else
 * #GP(0)), then alignment (#GP(0)), then the rest (a non-canonical end:
 * #SS(0)/#GP(0); a bad page: #PF), before anything is read or written. */
static void fx_check(struct hvp_cpu *cpu, uint64_t ea, bool write)
{
    if (!x87_canonical(ea)) x87_noncanonical(cpu, ea);
    if (ea & 15) hvp_raise_gp0(cpu);
    if (!x87_canonical(ea + 511)) x87_noncanonical(cpu, ea + 511);
    if (write) x87_probe(cpu, ea, 512); /* FXRSTOR reads all 512 bytes itself */
}

HVP_HANDLER(h_fxsave)
{
    fx_enter(cpu);
    uint64_t ea = hvp_ea(cpu, d);
    fx_check(cpu, ea, true);
    const struct hvp_cpu_fpu *f = &cpu->st.fpu;
    uint8_t b[416];
    memset(b, 0, sizeof b);
    uint16_t sw = fsw_norm(f->fsw, f->fcw);
    memcpy(b + 0, &f->fcw, 2);
    memcpy(b + 2, &sw, 2);
    b[4] = f->ftw;
    if (sw & FSW_ES) { /* the AMD way: only while an exception is pending */
        uint16_t fop = f->fop & 0x7ff;
        memcpy(b + 6, &fop, 2);
        if (d->aux) {
            memcpy(b + 8, &f->fip, 8);
            memcpy(b + 16, &f->fdp, 8);
        } else {
            uint32_t ip = (uint32_t)f->fip, dp = (uint32_t)f->fdp;
            memcpy(b + 8, &ip, 4);
            memcpy(b + 16, &dp, 4);
        }
    }
    uint32_t mm = MXCSR_MASK;
    memcpy(b + 24, &f->mxcsr, 4);
    memcpy(b + 28, &mm, 4);
    for (unsigned k = 0; k < 8; k++)
        memcpy(b + 32 + 16 * k, f->st[k], 10);
    memcpy(b + 160, f->xmm, 256);
    hvp_wr_block(cpu, ea, b, sizeof b);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_fxrstor)
{
    fx_enter(cpu);
    uint64_t ea = hvp_ea(cpu, d);
    fx_check(cpu, ea, false);
    uint8_t b[512]; /* the whole area is accessed */
    hvp_rd_block(cpu, ea, b, sizeof b);
    uint32_t mx;
    memcpy(&mx, b + 24, 4);
    if (mx & ~MXCSR_MASK) hvp_raise_gp0(cpu);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    uint16_t cw, sw, fop;
    memcpy(&cw, b, 2);
    memcpy(&sw, b + 2, 2);
    memcpy(&fop, b + 6, 2);
    f->fcw = FCW_STORED(cw);
    f->fsw = fsw_norm(sw, f->fcw);
    f->ftw = b[4];
    f->fop = fop & 0x7ff;
    if (d->aux) {
        memcpy(&f->fip, b + 8, 8);
        memcpy(&f->fdp, b + 16, 8);
    } else {
        uint32_t ip, dp;
        memcpy(&ip, b + 8, 4);
        memcpy(&dp, b + 16, 4);
        f->fip = ip;
        f->fdp = dp;
    }
    f->mxcsr = mx;
    for (unsigned k = 0; k < 8; k++) {
        memcpy(f->st[k], b + 32 + 16 * k, 10);
        memset(f->st[k] + 10, 0, 6);
    }
    memcpy(f->xmm, b + 160, 256);
    return NEXT(cpu, d);
}

/* WAIT/FWAIT: #NM only with CR0.MP and TS both set; #MF when pending. */
HVP_HANDLER(h_fwait)
{
    if (unlikely((cpu->st.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS)))
        hvp_raise(cpu, X87_NM, -1);
    struct hvp_cpu_fpu *f = &cpu->st.fpu;
    f->fsw = fsw_norm(f->fsw, f->fcw);
    if (unlikely(f->fsw & FSW_ES)) hvp_raise(cpu, X87_MF, -1);
    return NEXT(cpu, d);
}

HVP_HANDLER(h_x87_ud)
{
    (void)d;
    hvp_raise_ud(cpu);
}

/* ---- the builder ---- */

/* Register forms whose ModRM.rm names ST(i) (the rest are whole-ModRM
 * opcodes: D9 D0.., D9 E0.., DA E9, DB E0.., DE D9, DF E0). */
static bool rm_is_sti(unsigned esc, unsigned reg)
{
    return !((esc == 1 && reg >= 2 && reg != 3) || (esc == 2 && reg == 5) ||
             (esc == 3 && reg == 4) || (esc == 6 && reg == 3) || (esc == 7 && reg == 4));
}

/* The fast-path class of a memory form. */
static unsigned fast_mem(unsigned esc, unsigned reg)
{
    if (!(esc & 1)) /* D8 DA DC DE: arithmetic and compares */
        return reg == 2 ? FC_MEMCOM : reg == 3 ? FC_MEMP : FC_MEM;
    static const uint8_t odd[4][8] = {
        /* D9 */ {FC_LOAD, 0, FC_STORE, FC_STOREP, 0, 0, 0, 0},
        /* DB */ {FC_LOAD, FC_STOREP, FC_STORE, FC_STOREP, 0, FC_LOAD, 0, FC_STOREP},
        /* DD */ {FC_LOAD, FC_STOREP, FC_STORE, FC_STOREP, 0, 0, 0, 0},
        /* DF */ {FC_LOAD, FC_STOREP, FC_STORE, FC_STOREP, FC_LOAD, FC_LOAD, FC_STOREP, FC_STOREP},
    };
    return odd[esc >> 1][reg];
}

/* The fast-path class of a register form (rm = ST(i)). */
static unsigned fast_reg(unsigned esc, unsigned modrm)
{
    unsigned reg = (modrm >> 3) & 7, rm = modrm & 7;
    bool arith = reg <= 1 || reg >= 4;
    switch (esc) {
    case 0:
        if (arith) return rm ? FC_BIN : FC_BIN0;
        return rm ? (reg == 2 ? FC_COM : FC_COMP) : FC_NONE;
    case 4: return arith ? (rm ? FC_BIN : FC_BIN0) : FC_NONE;
    case 6:
        if (modrm == 0xd9) return FC_COMPP;
        return arith && rm ? FC_BINP : FC_NONE;
    case 5:
        if (reg == 2 || reg == 3) return FC_MOVE;
        return rm && reg == 4 ? FC_COM : rm && reg == 5 ? FC_COMP : FC_NONE;
    case 2: return modrm == 0xe9 ? FC_COMPP : FC_NONE;
    case 3: return (reg == 5 || reg == 6) && rm ? FC_COMI : FC_NONE;
    case 7: return (reg == 5 || reg == 6) && rm ? FC_COMIP : FC_NONE;
    case 1:
        if (reg <= 1) return FC_MOVE;
        switch (modrm) {
        case 0xe0: /* FCHS */
        case 0xe1: /* FABS */
        case 0xf0: /* F2XM1 */
        case 0xfa: /* FSQRT */
        case 0xfc: /* FRNDINT */ return FC_UNARY;
        case 0xe4: /* FTST */
        case 0xe5: /* FXAM */ return FC_UNCOM;
        case 0xf1: /* FYL2X */
        case 0xf3: /* FPATAN */
        case 0xf9: /* FYL2XP1 */ return FC_BINP;
        case 0xf4: return FC_XTRACT;
        case 0xfd: /* FSCALE */ return FC_BIN;
        case 0xfe: /* FSIN */
        case 0xff: /* FCOS */ return FC_UNC2;
        default: return modrm >= 0xe8 && modrm <= 0xee ? FC_LOAD : FC_NONE;
        }
    default: return FC_NONE;
    }
}

/* Memory forms that write their operand. */
static bool mem_is_store(unsigned esc, unsigned reg)
{
    switch (esc) {
    case 1: return reg == 2 || reg == 3;
    case 3: return (reg >= 1 && reg <= 3) || reg == 7;
    case 5: return reg >= 1 && reg <= 3;
    case 7: return (reg >= 1 && reg <= 3) || reg >= 6;
    default: return false;
    }
}

static unsigned mem_size(const struct hvp_x86_insn *xi)
{
    for (unsigned k = 0; k < xi->nops; k++)
        if (xi->ops[k].kind == HVP_X86_OPK_MEM) return xi->ops[k].size;
    return 0;
}

int hvp_cpu_build_x87(struct hvp_cpu *cpu, const struct hvp_x86_insn *xi, struct hvp_dinsn *d)
{
    if (xi->enc != HVP_X86_ENC_LEGACY) return HVP_B_NONE;
    switch (xi->op) {
    case HVP_X86_OP_FXSAVE:
    case HVP_X86_OP_FXSAVE64:
    case HVP_X86_OP_FXRSTOR:
    case HVP_X86_OP_FXRSTOR64:
        if (!(xi->flags & HVP_X86_F_MEM)) return HVP_B_NONE;
        hvp_build_common(cpu, xi, d);
        if (d->fl & HVP_DF_LOCK) {
            d->fn = h_x87_ud;
            return HVP_B_END;
        }
        d->aux = xi->op == HVP_X86_OP_FXSAVE64 || xi->op == HVP_X86_OP_FXRSTOR64;
        d->fn = xi->op == HVP_X86_OP_FXSAVE || xi->op == HVP_X86_OP_FXSAVE64 ? h_fxsave : h_fxrstor;
        return HVP_B_OK;
    case HVP_X86_OP_FWAIT: /* reaches here once the integer builder stops taking it */
        hvp_build_common(cpu, xi, d);
        d->fn = h_fwait;
        return HVP_B_OK;
    default: break;
    }
    if (xi->map != HVP_X86_MAP_1BYTE || xi->opcode < 0xd8 || !(xi->flags & HVP_X86_F_MODRM))
        return HVP_B_NONE;
    hvp_build_common(cpu, xi, d);
    if (d->fl & HVP_DF_LOCK) {
        d->fn = h_x87_ud;
        return HVP_B_END;
    }
    const unsigned esc = xi->opcode & 7, modrm = xi->modrm, reg = (modrm >> 3) & 7;
    switch (xi->op) {
    case HVP_X86_OP_FLDCW: d->fn = h_fldcw; return HVP_B_OK;
    case HVP_X86_OP_FNSTCW: d->fn = h_fnstcw; return HVP_B_OK;
    case HVP_X86_OP_FNSTSW: d->fn = h_fnstsw; return HVP_B_OK;
    case HVP_X86_OP_FNCLEX: d->fn = h_fnclex; return HVP_B_OK;
    case HVP_X86_OP_FNINIT: d->fn = h_fninit; return HVP_B_OK;
    case HVP_X86_OP_FLDENV: d->fn = h_fldenv; return HVP_B_OK;
    case HVP_X86_OP_FNSTENV: d->fn = h_fnstenv; return HVP_B_OK;
    case HVP_X86_OP_FRSTOR: d->fn = h_frstor; return HVP_B_OK;
    case HVP_X86_OP_FNSAVE: d->fn = h_fnsave; return HVP_B_OK;
    case HVP_X86_OP_FENI8087_NOP:
    case HVP_X86_OP_FDISI8087_NOP:
    case HVP_X86_OP_FSETPM287_NOP: d->fn = h_fn8087; return HVP_B_OK;
    default: break;
    }
    d->fn = h_host;
    d->r0 = d->r1 = 0;
    if (xi->flags & HVP_X86_F_MEM) {
        unsigned sz = mem_size(xi);
        if (sz == 0 || sz > 16) return HVP_B_NONE;
        d->osz = (uint8_t)sz;
        d->aux = mem_is_store(esc, reg) ? XK_STORE : XK_LOAD;
        d->imm = STUB_MEM + esc * 8 + reg;
        d->r1 = (uint8_t)fast_mem(esc, reg);
        return HVP_B_OK;
    }
    unsigned rm = modrm & 7, sm = modrm & 63;
    if (rm_is_sti(esc, reg) && rm >= 2) {
        d->r0 = (uint8_t)rm;
        sm = (sm & ~7u) | 1;
    }
    d->imm = esc * 64 + sm;
    d->r1 = (uint8_t)fast_reg(esc, modrm);
    if (esc == 1 && reg == 0 && d->r0) d->aux |= XK_COPY; /* FLD ST(i), i >= 2 */
    if ((esc == 2 || esc == 3) && reg <= 3) d->aux |= XK_FLAGS_IN;
    if ((esc == 3 || esc == 7) && (reg == 5 || reg == 6)) d->aux |= XK_FLAGS_OUT;
    return HVP_B_OK;
}
