#include "fakevm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *gpa_ptr(struct fakevm *vm, uint64_t gpa, unsigned size)
{
    if (gpa + size <= FVM_RAM_SIZE) return vm->ram + gpa;
    if (gpa >= FVM_MMIO_GPA && gpa + size <= FVM_MMIO_GPA + FVM_MMIO_SIZE)
        return vm->mmio + (gpa - FVM_MMIO_GPA);
    return NULL;
}

uint8_t *fvm_ptr(struct fakevm *vm, uint64_t gva)
{
    return gpa_ptr(vm, gva - vm->va_base, 1);
}

static int cb_io(void *ctx, struct hvp_emu_io_access *io)
{
    struct fakevm *vm = ctx;
    if (vm->io_fails) return -EIO;
    if (io->direction == HVP_EMU_IO_IN) {
        uint32_t mask = io->access_size == 4 ? 0xffffffffu : (1u << (io->access_size * 8)) - 1;
        io->data = vm->io_in_next++ & mask;
    }
    if (vm->n_io < FVM_LOG_MAX) {
        struct fvm_io_log *l = &vm->io_log[vm->n_io++];
        l->port = io->port;
        l->dir = io->direction;
        l->size = (uint8_t)io->access_size;
        l->data = io->data;
    }
    return 0;
}

static int cb_mem(void *ctx, struct hvp_emu_memory_access *m)
{
    struct fakevm *vm = ctx;
    vm->n_mem_total++;
    if (vm->mem_cb_fails) return -EIO;
    if (vm->mem_fail_after && (int)vm->n_mem_total == vm->mem_fail_after) return -EIO;
    unsigned s = m->access_size;
    if (s != 1 && s != 2 && s != 4 && s != 8 && s != 16) return -EINVAL;
    uint8_t *p = gpa_ptr(vm, m->gpa, s);
    if (!p) return -EFAULT;
    if (m->direction == HVP_EMU_MEM_WRITE)
        memcpy(p, m->data, s);
    else
        memcpy(m->data, p, s);
    if (m->gpa >= FVM_MMIO_GPA && vm->n_mem < FVM_LOG_MAX) {
        struct fvm_mem_log *l = &vm->mem_log[vm->n_mem++];
        l->gpa = m->gpa;
        l->dir = m->direction;
        l->size = (uint8_t)s;
        memcpy(l->data, m->data, s);
    }
    return 0;
}

static int get_one(struct fakevm *vm, uint32_t name, union hvp_emu_reg_value *v)
{
    memset(v, 0, sizeof(*v));
    if (name <= HVP_REG_R15)
        v->reg64 = vm->gpr[name];
    else if (name == HVP_REG_RIP)
        v->reg64 = vm->rip;
    else if (name == HVP_REG_RFLAGS)
        v->reg64 = vm->rflags;
    else if (name >= HVP_REG_ES && name <= HVP_REG_GS)
        v->segment = vm->seg[name - HVP_REG_ES];
    else if (name >= HVP_REG_XMM0 && name < HVP_REG_XMM0 + 16) {
        v->reg128.low = vm->xmm[name - HVP_REG_XMM0][0];
        v->reg128.high = vm->xmm[name - HVP_REG_XMM0][1];
    } else if (name >= HVP_REG_FPMMX0 && name < HVP_REG_FPMMX0 + 8) {
        v->reg128.low = vm->mmx[name - HVP_REG_FPMMX0][0];
        v->reg128.high = vm->mmx[name - HVP_REG_FPMMX0][1];
    } else
        return -EINVAL;
    return 0;
}

static int cb_get(void *ctx, const uint32_t *names, uint32_t n, union hvp_emu_reg_value *v)
{
    struct fakevm *vm = ctx;
    vm->n_get++;
    if (vm->get_fails) return -EIO;
    for (uint32_t i = 0; i < n; i++)
        if (get_one(vm, names[i], &v[i])) return -EINVAL;
    return 0;
}

static int cb_set(void *ctx, const uint32_t *names, uint32_t n, const union hvp_emu_reg_value *v)
{
    struct fakevm *vm = ctx;
    vm->n_set++;
    if (vm->set_fails) return -EIO;
    /* A batch fails as a whole, like WHP's. */
    for (uint32_t i = 0; i < n; i++) {
        union hvp_emu_reg_value t;
        if (get_one(vm, names[i], &t)) return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t name = names[i];
        if (name <= HVP_REG_R15)
            vm->gpr[name] = v[i].reg64;
        else if (name == HVP_REG_RIP) {
            vm->rip = v[i].reg64;
            vm->rip_set = true;
        } else if (name == HVP_REG_RFLAGS) {
            vm->rflags = v[i].reg64;
            vm->rflags_set = true;
        } else if (name >= HVP_REG_ES && name <= HVP_REG_GS)
            vm->seg[name - HVP_REG_ES] = v[i].segment;
        else if (name >= HVP_REG_XMM0 && name < HVP_REG_XMM0 + 16) {
            vm->xmm[name - HVP_REG_XMM0][0] = v[i].reg128.low;
            vm->xmm[name - HVP_REG_XMM0][1] = v[i].reg128.high;
        } else {
            vm->mmx[name - HVP_REG_FPMMX0][0] = v[i].reg128.low;
            vm->mmx[name - HVP_REG_FPMMX0][1] = v[i].reg128.high;
        }
    }
    return 0;
}

static int cb_translate(void *ctx, uint64_t gva, uint32_t flags, enum hvp_emu_translate_result *res,
                        uint64_t *gpa)
{
    struct fakevm *vm = ctx;
    (void)flags;
    vm->n_translate++;
    if (vm->translate_cb_fails) return -EIO;
    if (gva & 0xfff) return -EINVAL; /* the emulator asks for pages */
    if (vm->fail_enabled && gva == vm->fail_page) {
        *res = vm->fail_result;
        *gpa = 0;
        return 0;
    }
    uint64_t g = gva - vm->va_base;
    if (g >= 0x100000000ull) {
        *res = HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT;
        return 0;
    }
    *res = (g >= FVM_MMIO_GPA && g < FVM_MMIO_GPA + FVM_MMIO_SIZE) ? HVP_EMU_TRANSLATE_GPA_UNMAPPED
                                                                   : HVP_EMU_TRANSLATE_SUCCESS;
    *gpa = g + (vm->gpa_misaligned ? 8 : 0);
    return 0;
}

struct fakevm *fvm_new(unsigned mode)
{
    struct fakevm *vm = calloc(1, sizeof(*vm));
    if (!vm) return NULL;
    struct hvp_emulator_callbacks cb = {
        .size = sizeof(cb),
        .io_port = cb_io,
        .memory = cb_mem,
        .get_registers = cb_get,
        .set_registers = cb_set,
        .translate_gva_page = cb_translate,
    };
    if (hvp_emulator_create(&cb, &vm->emu)) {
        free(vm);
        return NULL;
    }
    vm->mode = mode;
    vm->cr0_pe = 1;
    vm->deliver = -1;
    vm->rip = FVM_CODE_GVA;
    vm->rflags = 0x2;
    for (unsigned i = 0; i < 6; i++) {
        vm->seg[i].limit = 0xffffffffu;
        vm->seg[i].selector = (uint16_t)(0x10 + 8 * i);
        vm->seg[i].attributes = HVP_EMU_SEG_P | HVP_EMU_SEG_S | 0x3 /* data rw, accessed */ |
                                HVP_EMU_SEG_DB | HVP_EMU_SEG_G;
    }
    vm->seg[1].attributes = HVP_EMU_SEG_P | HVP_EMU_SEG_S | 0xb | HVP_EMU_SEG_G |
                            (mode == 64   ? HVP_EMU_SEG_L
                             : mode == 32 ? HVP_EMU_SEG_DB
                                          : 0);
    if (mode == 16) {
        for (unsigned i = 0; i < 6; i++) {
            vm->seg[i].limit = 0xffff;
            vm->seg[i].attributes &= (uint16_t) ~(HVP_EMU_SEG_DB | HVP_EMU_SEG_G);
        }
    }
    return vm;
}

void fvm_free(struct fakevm *vm)
{
    if (!vm) return;
    hvp_emulator_destroy(vm->emu);
    free(vm);
}

static uint64_t code_la(const struct fakevm *vm)
{
    return vm->mode == 64 ? vm->rip : vm->seg[1].base + vm->rip;
}

void fvm_put_code(struct fakevm *vm, const uint8_t *code, size_t len)
{
    uint64_t la = code_la(vm);
    for (size_t i = 0; i < len; i++) {
        uint8_t *p = fvm_ptr(vm, la + i);
        if (p) *p = code[i];
    }
}

static void vp_context(const struct fakevm *vm, struct hvp_emu_vp_context *vp)
{
    memset(vp, 0, sizeof(*vp));
    vp->rip = vm->rip;
    vp->rflags = vm->rflags;
    vp->cs = vm->seg[1];
    vp->cpl = vm->cpl;
    vp->cr0_pe = vm->cr0_pe;
    vp->cr0_am = vm->cr0_am;
    vp->efer_lma = vm->mode == 64;
    vp->interruption_pending = vm->interruption_pending;
    vp->cr4_la57 = vm->la57;
}

static void reset_logs(struct fakevm *vm)
{
    vm->n_mem = vm->n_mem_total = vm->n_io = 0;
    vm->n_translate = vm->n_get = vm->n_set = 0;
    vm->rip_set = vm->rflags_set = false;
}

uint32_t fvm_mmio(struct fakevm *vm, const uint8_t *code, size_t len, struct hvp_emu_fault *f)
{
    struct hvp_emu_vp_context vp;
    struct hvp_emu_mmio_context m;
    memset(&m, 0, sizeof(m));
    fvm_put_code(vm, code, len);
    size_t n = vm->deliver >= 0 && (size_t)vm->deliver < len ? (size_t)vm->deliver : len;
    memcpy(m.instruction_bytes, code, n > 16 ? 16 : n);
    m.instruction_byte_count = (uint8_t)n;
    vp_context(vm, &vp);
    reset_logs(vm);
    uint32_t status = 0;
    if (hvp_emulator_try_mmio(vm->emu, vm, &vp, &m, &status, f)) return 0xdead0000u;
    return status;
}

uint32_t fvm_io(struct fakevm *vm, const uint8_t *code, size_t len, bool is_write, unsigned size,
                bool string, uint16_t port, struct hvp_emu_fault *f)
{
    struct hvp_emu_vp_context vp;
    struct hvp_emu_io_context io;
    memset(&io, 0, sizeof(io));
    fvm_put_code(vm, code, len);
    size_t n = vm->deliver >= 0 && (size_t)vm->deliver < len ? (size_t)vm->deliver : len;
    memcpy(io.instruction_bytes, code, n > 16 ? 16 : n);
    io.instruction_byte_count = (uint8_t)n;
    io.is_write = is_write;
    io.access_size = (uint8_t)size;
    io.string_op = string;
    io.port = port;
    vp_context(vm, &vp);
    reset_logs(vm);
    uint32_t status = 0;
    if (hvp_emulator_try_io(vm->emu, vm, &vp, &io, &status, f)) return 0xdead0000u;
    return status;
}
