/* The emulator's API: handle, per-call register cache, instruction fetch and
 * decode, commit of the results. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int hvp_emulator_create(const struct hvp_emulator_callbacks *cb, struct hvp_emulator **out)
{
    if (!cb || !out) return -EINVAL;
    if (cb->size < sizeof(*cb)) return -EINVAL;
    if (!cb->io_port || !cb->memory || !cb->get_registers || !cb->set_registers ||
        !cb->translate_gva_page)
        return -EINVAL;
    struct hvp_emulator *emu = calloc(1, sizeof(*emu));
    if (!emu) return -ENOMEM;
    emu->cb = *cb;
    emu->cb.size = sizeof(emu->cb);
    *out = emu;
    return 0;
}

void hvp_emulator_destroy(struct hvp_emulator *emu)
{
    free(emu);
}

int emu_fault(struct emu *e, unsigned vector, uint32_t error_code, uint64_t cr2)
{
    e->faulted = true;
    e->fault.vector = (uint8_t)vector;
    /* #DF, #TS, #NP, #SS, #GP, #PF, #AC and #CP push an error code. */
    e->fault.has_error_code =
        vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21;
    e->fault.reserved = 0;
    e->fault.error_code = error_code;
    e->fault.cr2 = cr2;
    return STOP;
}

int emu_internal(struct emu *e)
{
    e->status |= HVP_EMU_STATUS_INTERNAL_FAILURE;
    return STOP;
}

static int get_regs(struct emu *e, const uint32_t *names, uint32_t n, union hvp_emu_reg_value *v)
{
    if (e->cb->get_registers(e->ctx, names, n, v) < 0) {
        e->status |= HVP_EMU_STATUS_GET_REGISTERS_FAILED;
        return STOP;
    }
    return 0;
}

int emu_get_segment(struct emu *e, unsigned seg, struct hvp_emu_segment *out)
{
    if (seg > SEG_GS) return emu_internal(e);
    if (seg == SEG_CS) {
        *out = e->vp->cs;
        return 0;
    }
    if (!(e->seg_valid & (1u << seg))) {
        uint32_t name = HVP_REG_ES + seg;
        union hvp_emu_reg_value v;
        if (get_regs(e, &name, 1, &v)) return STOP;
        e->seg[seg] = v.segment;
        e->seg_valid |= (uint8_t)(1u << seg);
    }
    *out = e->seg[seg];
    return 0;
}

int emu_get_xmm(struct emu *e, unsigned n, uint64_t v[2])
{
    if (n >= 16) return emu_internal(e);
    if (!(e->xmm_valid & (1u << n))) {
        uint32_t name = HVP_REG_XMM0 + n;
        union hvp_emu_reg_value r;
        if (get_regs(e, &name, 1, &r)) return STOP;
        e->xmm[n][0] = r.reg128.low;
        e->xmm[n][1] = r.reg128.high;
        e->xmm_valid |= (uint16_t)(1u << n);
    }
    v[0] = e->xmm[n][0];
    v[1] = e->xmm[n][1];
    return 0;
}

void emu_set_xmm(struct emu *e, unsigned n, const uint64_t v[2])
{
    e->xmm[n][0] = v[0];
    e->xmm[n][1] = v[1];
    e->xmm_valid |= (uint16_t)(1u << n);
    e->xmm_dirty |= (uint16_t)(1u << n);
}

int emu_get_mmx(struct emu *e, unsigned n, uint64_t *v)
{
    if (n >= 8) return emu_internal(e);
    if (!(e->mmx_valid & (1u << n))) {
        uint32_t name = HVP_REG_FPMMX0 + n;
        union hvp_emu_reg_value r;
        if (get_regs(e, &name, 1, &r)) return STOP;
        e->mmx[n] = r.reg128.low;
        e->mmx_valid |= (uint8_t)(1u << n);
    }
    *v = e->mmx[n];
    return 0;
}

void emu_set_mmx(struct emu *e, unsigned n, uint64_t v)
{
    e->mmx[n] = v;
    e->mmx_valid |= (uint8_t)(1u << n);
    e->mmx_dirty |= (uint8_t)(1u << n);
}

/* GPR sub-registers by enum hvp_x86_reg. */
uint64_t emu_gpr_read(struct emu *e, unsigned reg)
{
    if (reg >= HVP_X86_REG_AL && reg < HVP_X86_REG_AH) return e->gpr[reg - HVP_X86_REG_AL] & 0xff;
    if (reg >= HVP_X86_REG_AH && reg < HVP_X86_REG_AX)
        return (e->gpr[reg - HVP_X86_REG_AH] >> 8) & 0xff;
    if (reg >= HVP_X86_REG_AX && reg < HVP_X86_REG_EAX)
        return e->gpr[reg - HVP_X86_REG_AX] & 0xffff;
    if (reg >= HVP_X86_REG_EAX && reg < HVP_X86_REG_RAX)
        return e->gpr[reg - HVP_X86_REG_EAX] & 0xffffffffu;
    if (reg >= HVP_X86_REG_RAX && reg < HVP_X86_REG_ES) return e->gpr[reg - HVP_X86_REG_RAX];
    return 0;
}

void emu_gpr_set64(struct emu *e, unsigned n, uint64_t v)
{
    e->gpr[n] = v;
    e->gpr_dirty |= (uint16_t)(1u << n);
}

/* Writes follow the hardware: 8/16-bit writes merge, 32-bit writes
 * zero-extend to 64 bits. */
void emu_gpr_write(struct emu *e, unsigned reg, uint64_t v)
{
    unsigned n;
    if (reg >= HVP_X86_REG_AL && reg < HVP_X86_REG_AH) {
        n = reg - HVP_X86_REG_AL;
        emu_gpr_set64(e, n, (e->gpr[n] & ~0xffull) | (v & 0xff));
    } else if (reg >= HVP_X86_REG_AH && reg < HVP_X86_REG_AX) {
        n = reg - HVP_X86_REG_AH;
        emu_gpr_set64(e, n, (e->gpr[n] & ~0xff00ull) | ((v & 0xff) << 8));
    } else if (reg >= HVP_X86_REG_AX && reg < HVP_X86_REG_EAX) {
        n = reg - HVP_X86_REG_AX;
        emu_gpr_set64(e, n, (e->gpr[n] & ~0xffffull) | (v & 0xffff));
    } else if (reg >= HVP_X86_REG_EAX && reg < HVP_X86_REG_RAX) {
        emu_gpr_set64(e, reg - HVP_X86_REG_EAX, v & 0xffffffffu);
    } else if (reg >= HVP_X86_REG_RAX && reg < HVP_X86_REG_ES) {
        emu_gpr_set64(e, reg - HVP_X86_REG_RAX, v);
    }
}

static unsigned code_mode(const struct hvp_emu_vp_context *vp)
{
    if (vp->efer_lma && (vp->cs.attributes & HVP_EMU_SEG_L)) return 64;
    if (vp->cr0_pe && (vp->rflags & FL_VM)) return 16;
    return (vp->cs.attributes & HVP_EMU_SEG_DB) ? 32 : 16;
}

/* Decodes the instruction, fetching the bytes the exit did not deliver
 * from CS:RIP one page at a time (a byte on a page the instruction does not
 * reach is never fetched, so it cannot fault). */
static int decode(struct emu *e, const uint8_t *bytes, unsigned count)
{
    if (count > 16) count = 16;
    memcpy(e->bytes, bytes, count);
    e->nbytes = count;
    for (;;) {
        unsigned avail = e->nbytes < HVP_X86_MAX_INSN_LEN ? e->nbytes : HVP_X86_MAX_INSN_LEN;
        int r = hvp_x86_decode(&e->insn, e->bytes, avail, e->mode);
        if (r > 0) break;
        if (r != -HVP_X86_ETRUNCATED || e->nbytes >= HVP_X86_MAX_INSN_LEN) return emu_internal(e);
        uint64_t ip = e->vp->rip + e->nbytes;
        uint64_t la;
        if (e->mode == 64) {
            la = ip;
        } else {
            ip &= e->mode == 32 ? 0xffffffffu : 0xffffu;
            la = (e->vp->cs.base + ip) & 0xffffffffu;
        }
        unsigned got = 0;
        if (emu_fetch(e, la, e->bytes + e->nbytes, &got, HVP_X86_MAX_INSN_LEN - e->nbytes))
            return STOP;
        e->nbytes += got;
    }
    if (e->insn.len > HVP_X86_MAX_INSN_LEN || e->insn.len == 0) return emu_internal(e);
    e->rip_next = e->vp->rip + e->insn.len;
    if (e->mode == 32) e->rip_next &= 0xffffffffu;
    if (e->mode == 16) e->rip_next &= 0xffffu;
    return 0;
}

/* Writes back what changed: dirty GPRs, XMM/MMX registers, RFLAGS and RIP. */
static void commit(struct emu *e)
{
    uint32_t names[16 + 16 + 8 + 2];
    union hvp_emu_reg_value vals[16 + 16 + 8 + 2];
    uint32_t n = 0;
    memset(vals, 0, sizeof(vals));
    for (unsigned i = 0; i < 16; i++) {
        if (e->gpr_dirty & (1u << i)) {
            names[n] = HVP_REG_RAX + i;
            vals[n++].reg64 = e->gpr[i];
        }
    }
    for (unsigned i = 0; i < 16; i++) {
        if (e->xmm_dirty & (1u << i)) {
            names[n] = HVP_REG_XMM0 + i;
            vals[n].reg128.low = e->xmm[i][0];
            vals[n++].reg128.high = e->xmm[i][1];
        }
    }
    for (unsigned i = 0; i < 8; i++) {
        if (e->mmx_dirty & (1u << i)) {
            /* An MMX write sets the x87 register's exponent and sign to ones. */
            names[n] = HVP_REG_FPMMX0 + i;
            vals[n].reg128.low = e->mmx[i];
            vals[n++].reg128.high = 0xffff;
        }
    }
    if (e->rflags != e->rflags_in) {
        names[n] = HVP_REG_RFLAGS;
        vals[n++].reg64 = e->rflags;
    }
    if (e->advance_rip) {
        names[n] = HVP_REG_RIP;
        vals[n++].reg64 = e->rip_next;
    }
    if (n && e->cb->set_registers(e->ctx, names, n, vals) < 0)
        e->status |= HVP_EMU_STATUS_SET_REGISTERS_FAILED;
}

static int start(struct emu *e, struct hvp_emulator *emu, void *ctx,
                 const struct hvp_emu_vp_context *vp)
{
    memset(e, 0, sizeof(*e));
    e->cb = &emu->cb;
    e->ctx = ctx;
    e->vp = vp;
    e->mode = code_mode(vp);
    e->rflags = e->rflags_in = vp->rflags;
    if (vp->interruption_pending) {
        /* The exit hit while the CPU was delivering an event (the IDT or
         * stack in MMIO): there is no instruction to complete. */
        e->status |= HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT;
        return STOP;
    }
    static const uint32_t names[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    union hvp_emu_reg_value v[16];
    if (get_regs(e, names, 16, v)) return STOP;
    for (unsigned i = 0; i < 16; i++)
        e->gpr[i] = v[i].reg64;
    return 0;
}

static void finish(struct emu *e, int r, uint32_t *status, struct hvp_emu_fault *fault)
{
    bool regs_ok = !(e->status & (HVP_EMU_STATUS_GET_REGISTERS_FAILED |
                                  HVP_EMU_STATUS_INTERRUPT_CAUSED_INTERCEPT));
    if (regs_ok) commit(e);
    if (e->faulted) {
        if (fault) {
            *fault = e->fault;
            e->status |= HVP_EMU_STATUS_EXCEPTION;
        } else {
            e->status |= HVP_EMU_STATUS_GUEST_CANNOT_BE_FAULTED;
        }
    } else if (r == 0 && !(e->status & ~HVP_EMU_STATUS_SUCCESS)) {
        e->status |= HVP_EMU_STATUS_SUCCESS;
    }
    if (e->status & ~HVP_EMU_STATUS_SUCCESS) e->status &= ~HVP_EMU_STATUS_SUCCESS;
    *status = e->status;
}

int hvp_emulator_try_io(struct hvp_emulator *emu, void *ctx, const struct hvp_emu_vp_context *vp,
                        const struct hvp_emu_io_context *io, uint32_t *status,
                        struct hvp_emu_fault *fault)
{
    if (!emu || !vp || !io || !status) return -EINVAL;
    struct emu e;
    int r = start(&e, emu, ctx, vp);
    if (!r) r = decode(&e, io->instruction_bytes, io->instruction_byte_count);
    if (!r) r = emu_exec_io(&e, io);
    finish(&e, r, status, fault);
    return 0;
}

int hvp_emulator_try_mmio(struct hvp_emulator *emu, void *ctx, const struct hvp_emu_vp_context *vp,
                          const struct hvp_emu_mmio_context *mmio, uint32_t *status,
                          struct hvp_emu_fault *fault)
{
    if (!emu || !vp || !mmio || !status) return -EINVAL;
    struct emu e;
    int r = start(&e, emu, ctx, vp);
    if (!r) r = decode(&e, mmio->instruction_bytes, mmio->instruction_byte_count);
    if (!r) r = emu_exec_mmio(&e);
    finish(&e, r, status, fault);
    return 0;
}
