/* A guest page-table walker for hvp_vcpu_translate_gva, shared by the
 * backends: it needs only the control registers and the GPA map. KVM's
 * own KVM_TRANSLATE reports no permissions, so flags could not be checked
 * with it. */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define PTE_P   (1ull << 0)
#define PTE_W   (1ull << 1)
#define PTE_U   (1ull << 2)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_PS  (1ull << 7)
#define PTE_NX  (1ull << 63)
#define ADDR_52 0x000FFFFFFFFFF000ull

/* Reads (and with set != 0 ORs bits into) a page-table entry at gpa. */
static bool pte_access(struct hvp_partition *p, uint64_t gpa, unsigned size, uint64_t *val,
                       uint64_t set)
{
    pthread_mutex_lock(&p->lock);
    struct hvp_mem_range *r = hvp__find_range(p, gpa);
    bool ok = r && gpa + size <= r->gpa + r->size;
    if (ok) {
        uint8_t *h = r->hva + (gpa - r->gpa);
        *val = 0;
        memcpy(val, h, size);
        if (set && (*val & set) != set && r->flags & HVP_MAP_WRITE) {
            uint64_t nv = *val | set;
            memcpy(h, &nv, size);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static uint32_t gpa_check(struct hvp_partition *p, uint64_t gpa, uint32_t flags)
{
    pthread_mutex_lock(&p->lock);
    struct hvp_mem_range *r = hvp__find_range(p, gpa);
    uint32_t res = HVP_TRANSLATE_SUCCESS;
    if (!r)
        res = HVP_TRANSLATE_GPA_UNMAPPED;
    else if (flags & HVP_TRANSLATE_VALIDATE_WRITE && !(r->flags & HVP_MAP_WRITE))
        res = HVP_TRANSLATE_GPA_NO_WRITE_ACCESS;
    pthread_mutex_unlock(&p->lock);
    return res;
}

int hvp__walk(struct hvp_partition *p, const struct hvp_paging_state *st, uint64_t gva,
              uint32_t flags, uint32_t *result, uint64_t *gpa)
{
    const bool pg = st->cr0 >> 31 & 1, pae = st->cr4 >> 5 & 1, lma = st->efer >> 10 & 1;
    const bool nxe = st->efer >> 11 & 1, la57 = st->cr4 >> 12 & 1, pse = st->cr4 >> 4 & 1;
    const bool wp = st->cr0 >> 16 & 1;
    const bool user = st->cpl == 3 && !(flags & HVP_TRANSLATE_PRIVILEGE_EXEMPT);
    const bool write = flags & HVP_TRANSLATE_VALIDATE_WRITE;
    const bool exec = flags & HVP_TRANSLATE_VALIDATE_EXECUTE;

    if (!pg) {
        *gpa = lma ? gva : gva & 0xFFFFFFFFull;
        *result = gpa_check(p, *gpa & ~(HVP_PAGE - 1), flags);
        return 0;
    }

    int levels;
    unsigned esize;
    uint64_t table;
    if (lma) {
        levels = la57 ? 5 : 4;
        esize = 8;
        table = st->cr3 & ADDR_52;
        int bits = la57 ? 57 : 48;
        if ((int64_t)(gva << (64 - bits)) >> (64 - bits) != (int64_t)gva) {
            *result = HVP_TRANSLATE_INVALID_PAGE_TABLE_FLAGS; /* non-canonical */
            return 0;
        }
    } else if (pae) {
        levels = 3;
        esize = 8;
        table = st->cr3 & 0xFFFFFFE0ull;
        gva &= 0xFFFFFFFFull;
    } else {
        levels = 2;
        esize = 4;
        table = st->cr3 & 0xFFFFF000ull;
        gva &= 0xFFFFFFFFull;
    }

    bool u = true, w = true, nx = false;
    uint64_t entries[5];
    uint64_t addrs[5];
    int depth = 0;
    uint64_t page_gpa = 0, page_size = 0;
    for (int level = levels; level >= 1; level--) {
        unsigned shift = esize == 8 ? 12 + 9 * (level - 1) : 12 + 10 * (level - 1);
        unsigned idxbits = esize == 8 ? 9 : 10;
        if (levels == 3 && level == 3) idxbits = 2;
        uint64_t idx = (gva >> shift) & ((1ull << idxbits) - 1);
        uint64_t ea = table + idx * esize, e;
        if (!pte_access(p, ea, esize, &e, 0)) {
            *result = HVP_TRANSLATE_GPA_UNMAPPED;
            *gpa = ea;
            return 0;
        }
        if (!(e & PTE_P)) {
            *result = HVP_TRANSLATE_PAGE_NOT_PRESENT;
            return 0;
        }
        if (esize == 8 && e & PTE_NX && !nxe) {
            *result = HVP_TRANSLATE_INVALID_PAGE_TABLE_FLAGS;
            return 0;
        }
        addrs[depth] = ea;
        entries[depth++] = e;
        bool pae_pdpte = levels == 3 && level == 3; /* no U/W/NX in PAE PDPTEs */
        if (!pae_pdpte) {
            u &= !!(e & PTE_U);
            w &= !!(e & PTE_W);
            nx |= esize == 8 && (e & PTE_NX);
        }
        bool large = level > 1 && !pae_pdpte && e & PTE_PS && (esize == 8 || pse);
        if (level == 1 || large) {
            if (esize == 4 && large) { /* 4 MiB page, PSE-36 bits 13..20 */
                page_gpa = (e & 0xFFC00000ull) | ((e >> 13 & 0xFF) << 32);
                page_size = 1ull << 22;
            } else {
                page_size = 1ull << shift;
                page_gpa = e & (esize == 8 ? ADDR_52 : 0xFFFFF000ull) & ~(page_size - 1);
            }
            break;
        }
        table = e & (esize == 8 ? ADDR_52 : 0xFFFFF000ull);
    }

    if ((user && !u) || (write && !w && (user || wp)) || (exec && nx) ||
        (exec && !user && u && st->cr4 >> 20 & 1 /* SMEP */)) {
        *result = HVP_TRANSLATE_PRIVILEGE_VIOLATION;
        return 0;
    }
    *gpa = page_gpa | (gva & (page_size - 1));
    if (flags & HVP_TRANSLATE_SET_PT_BITS) {
        uint64_t dummy;
        for (int i = 0; i < depth; i++)
            pte_access(p, addrs[i], esize, &dummy, PTE_A | (i == depth - 1 && write ? PTE_D : 0));
        (void)entries;
    }
    *result = gpa_check(p, *gpa & ~(HVP_PAGE - 1), flags);
    return 0;
}
