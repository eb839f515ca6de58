/* Guest memory: segmentation, canonical and alignment checks, page
 * translation through the callback, and accesses split at page boundaries. */
#include <string.h>

#include "internal.h"

#define PAGE_SIZE 4096u
#define PAGE_MASK 0xfffull

/* #PF error code bits. */
#define PF_P    0x01u
#define PF_W    0x02u
#define PF_U    0x04u
#define PF_RSVD 0x08u
#define PF_I    0x10u

static bool canonical(const struct emu *e, uint64_t la)
{
    unsigned sh = e->vp->cr4_la57 ? 7 : 16;
    return (uint64_t)((int64_t)(la << sh) >> sh) == la;
}

static uint32_t translate_flags(unsigned acc)
{
    uint32_t f = 0;
    if (acc & ACC_R) f |= HVP_EMU_TRANSLATE_VALIDATE_READ;
    if (acc & ACC_W) f |= HVP_EMU_TRANSLATE_VALIDATE_WRITE;
    if (acc & ACC_X) f |= HVP_EMU_TRANSLATE_VALIDATE_EXECUTE;
    return f;
}

/* Translates the page holding `la`; `fault_la` is what CR2 reports. */
static int translate(struct emu *e, uint64_t la, unsigned acc, uint64_t fault_la, uint64_t *gpa)
{
    uint64_t page = la & ~PAGE_MASK;
    uint32_t flags = translate_flags(acc);
    for (unsigned i = 0; i < 4; i++) {
        struct tlb_entry *t = &e->tlb[i];
        if (t->valid && t->gva_page == page && (t->flags & flags) == flags) {
            *gpa = t->gpa_page;
            return 0;
        }
    }
    enum hvp_emu_translate_result res = HVP_EMU_TRANSLATE_SUCCESS;
    uint64_t out = 0;
    if (e->cb->translate_gva_page(e->ctx, page, flags, &res, &out) < 0) {
        e->status |= HVP_EMU_STATUS_TRANSLATE_CALLBACK_FAILED;
        return STOP;
    }
    uint32_t err = 0;
    if (acc & ACC_W) err |= PF_W;
    if (acc & ACC_X) err |= PF_I;
    if (e->vp->cpl == 3) err |= PF_U;
    switch (res) {
    case HVP_EMU_TRANSLATE_SUCCESS:
    case HVP_EMU_TRANSLATE_GPA_UNMAPPED:
    case HVP_EMU_TRANSLATE_GPA_NO_READ_ACCESS:
    case HVP_EMU_TRANSLATE_GPA_NO_WRITE_ACCESS:
    case HVP_EMU_TRANSLATE_GPA_ILLEGAL_OVERLAY_ACCESS:
        /* The guest's page tables allow the access; the GPA side is the
         * device's business. */
        break;
    case HVP_EMU_TRANSLATE_PAGE_NOT_PRESENT: return emu_fault(e, VEC_PF, err, fault_la);
    case HVP_EMU_TRANSLATE_PRIVILEGE_VIOLATION: return emu_fault(e, VEC_PF, err | PF_P, fault_la);
    case HVP_EMU_TRANSLATE_INVALID_PAGE_TABLE_FLAGS:
        return emu_fault(e, VEC_PF, err | PF_P | PF_RSVD, fault_la);
    default: e->status |= HVP_EMU_STATUS_TRANSLATE_CALLBACK_FAILED; return STOP;
    }
    if (out & PAGE_MASK) {
        e->status |= HVP_EMU_STATUS_TRANSLATE_GPA_NOT_ALIGNED;
        return STOP;
    }
    struct tlb_entry *t = &e->tlb[e->tlb_next++ & 3];
    t->valid = true;
    t->gva_page = page;
    t->gpa_page = out;
    t->flags = flags;
    *gpa = out;
    return 0;
}

/* Segment checks outside 64-bit mode: presence, type and limit (the limit
 * is byte granular, as WHP and KVM report it). */
static int segment_check(struct emu *e, unsigned seg, const struct hvp_emu_segment *s, uint64_t off,
                         unsigned size, unsigned acc)
{
    unsigned vec = seg == SEG_SS ? VEC_SS : VEC_GP;
    bool prot = e->vp->cr0_pe && !(e->vp->rflags & FL_VM);
    uint16_t a = s->attributes;
    bool expand_down = false;
    if (prot) {
        if (!(a & HVP_EMU_SEG_P)) return emu_fault(e, vec, 0, 0);
        if (a & 0x8) { /* code segment */
            if ((acc & ACC_W) || ((acc & ACC_R) && !(a & 0x2))) return emu_fault(e, vec, 0, 0);
        } else {
            if ((acc & ACC_W) && !(a & 0x2)) return emu_fault(e, vec, 0, 0);
            expand_down = a & 0x4;
        }
    }
    uint64_t last = off + size - 1;
    if (expand_down) {
        uint64_t upper = (a & HVP_EMU_SEG_DB) ? 0xffffffffu : 0xffffu;
        if (off <= s->limit || last > upper) return emu_fault(e, vec, 0, 0);
    } else if (last > s->limit) {
        return emu_fault(e, vec, 0, 0);
    }
    return 0;
}

int emu_prepare(struct emu *e, unsigned seg, uint64_t off, unsigned size, unsigned acc,
                unsigned align, struct memref *m)
{
    uint64_t la;
    if (e->mode == 64) {
        la = off;
        if (seg == SEG_FS || seg == SEG_GS) {
            struct hvp_emu_segment s;
            if (emu_get_segment(e, seg, &s)) return STOP;
            la += s.base;
        }
        if (!canonical(e, la) || !canonical(e, la + size - 1))
            return emu_fault(e, seg == SEG_SS ? VEC_SS : VEC_GP, 0, 0);
    } else {
        struct hvp_emu_segment s;
        if (emu_get_segment(e, seg, &s)) return STOP;
        if (segment_check(e, seg, &s, off, size, acc)) return STOP;
        la = (s.base + off) & 0xffffffffu;
    }
    if (align > 1 && (la & (align - 1))) return emu_fault(e, VEC_GP, 0, 0);
    if (align <= 1 && e->vp->cpl == 3 && e->vp->cr0_am && (e->rflags & FL_AC) &&
        (size == 2 || size == 4 || size == 8) && (la & (size - 1)))
        return emu_fault(e, VEC_AC, 0, 0);

    m->la = la;
    m->size = size;
    m->first = PAGE_SIZE - (unsigned)(la & PAGE_MASK);
    if (m->first > size) m->first = size;
    if (translate(e, la, acc, la, &m->gpa[0])) return STOP;
    m->gpa[1] = 0;
    if (m->first < size) {
        uint64_t la2 = la + m->first;
        if (e->mode != 64) la2 &= 0xffffffffu;
        if (translate(e, la2, acc, la2, &m->gpa[1])) return STOP;
    }
    return 0;
}

/* One page's part of an access, as power-of-two pieces. */
static int access_part(struct emu *e, uint64_t gpa, uint8_t *buf, unsigned n, uint8_t dir)
{
    while (n) {
        unsigned chunk = 16;
        while (chunk > n)
            chunk >>= 1;
        struct hvp_emu_memory_access acc;
        memset(&acc, 0, sizeof(acc));
        acc.gpa = gpa;
        acc.direction = dir;
        acc.access_size = (uint8_t)chunk;
        if (dir == HVP_EMU_MEM_WRITE) memcpy(acc.data, buf, chunk);
        if (e->cb->memory(e->ctx, &acc) < 0) {
            e->status |= HVP_EMU_STATUS_MEMORY_CALLBACK_FAILED;
            return STOP;
        }
        if (dir == HVP_EMU_MEM_READ) memcpy(buf, acc.data, chunk);
        gpa += chunk;
        buf += chunk;
        n -= chunk;
    }
    return 0;
}

static int access_mem(struct emu *e, const struct memref *m, uint8_t *buf, uint8_t dir)
{
    if (access_part(e, m->gpa[0] + (m->la & PAGE_MASK), buf, m->first, dir)) return STOP;
    if (m->first < m->size && access_part(e, m->gpa[1], buf + m->first, m->size - m->first, dir))
        return STOP;
    return 0;
}

int emu_read(struct emu *e, const struct memref *m, void *buf)
{
    return access_mem(e, m, buf, HVP_EMU_MEM_READ);
}

int emu_write(struct emu *e, const struct memref *m, const void *buf)
{
    uint8_t tmp[16];
    memcpy(tmp, buf, m->size);
    return access_mem(e, m, tmp, HVP_EMU_MEM_WRITE);
}

/* Instruction bytes from linear address `la` up to the end of its page. */
int emu_fetch(struct emu *e, uint64_t la, uint8_t *buf, unsigned *n, unsigned max)
{
    if (e->mode == 64 && !canonical(e, la)) return emu_fault(e, VEC_GP, 0, 0);
    unsigned avail = PAGE_SIZE - (unsigned)(la & PAGE_MASK);
    if (avail > max) avail = max;
    uint64_t gpa;
    if (translate(e, la, ACC_X, la, &gpa)) return STOP;
    if (access_part(e, gpa + (la & PAGE_MASK), buf, avail, HVP_EMU_MEM_READ)) return STOP;
    *n = avail;
    return 0;
}
