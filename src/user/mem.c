/* The guest address space: one host reservation, a sorted region list, and
 * the CPU's view of it kept in step with the list. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int mem_init(struct hvp_user *u)
{
    void *p = mmap(NULL, GUEST_SPACE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    u->host = p;
    return 0;
}

void mem_fini(struct hvp_user *u)
{
    if (u->host)
        munmap(u->host, GUEST_SPACE);
    u->host = NULL;
    free(u->regions);
    u->regions = NULL;
    u->nregions = u->cap = 0;
}

/* Index of the first region with end > g. */
static size_t find_first(const struct hvp_user *u, uint64_t g)
{
    size_t lo = 0, hi = u->nregions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (u->regions[mid].end <= g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool in_space(uint64_t g, uint64_t len)
{
    return g < GUEST_SPACE && len <= GUEST_SPACE - g;
}

bool mem_ok(const struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot)
{
    if (!in_space(start, len))
        return false;
    uint64_t end = start + len, at = start;
    for (size_t i = find_first(u, start); i < u->nregions && at < end; i++) {
        const struct region *r = &u->regions[i];
        if (r->start > at || (r->prot & prot) != prot)
            return false;
        at = r->end;
    }
    return at >= end;
}

bool mem_free(const struct hvp_user *u, uint64_t start, uint64_t len)
{
    if (!in_space(start, len))
        return false;
    size_t i = find_first(u, start);
    return i == u->nregions || u->regions[i].start >= start + len;
}

void *mem_ptr(const struct hvp_user *u, uint64_t g, uint64_t len, unsigned prot)
{
    if (len == 0)
        return u->host;
    if (!mem_ok(u, g, len, prot))
        return NULL;
    return u->host + g;
}

void *mem_clamp(const struct hvp_user *u, uint64_t g, uint64_t *len, unsigned prot)
{
    if (*len == 0)
        return u->host;
    if (!in_space(g, 1))
        return NULL;
    uint64_t at = g;
    for (size_t i = find_first(u, g); i < u->nregions && at - g < *len; i++) {
        const struct region *r = &u->regions[i];
        if (r->start > at || (r->prot & prot) != prot)
            break;
        at = r->end;
    }
    if (at == g)
        return NULL;
    if (at - g < *len)
        *len = at - g;
    return u->host + g;
}

const char *mem_str(const struct hvp_user *u, uint64_t g, size_t max)
{
    if (!in_space(g, 1))
        return NULL;
    uint64_t at = g;
    for (size_t i = find_first(u, g); i < u->nregions; i++) {
        const struct region *r = &u->regions[i];
        if (r->start > at || !(r->prot & HVP_CPU_PROT_READ))
            return NULL;
        uint64_t n = r->end - at;
        if (n > max + 1 - (at - g))
            n = max + 1 - (at - g);
        if (memchr(u->host + at, 0, n))
            return (const char *)u->host + g;
        at += n;
        if (at - g > max)
            return NULL;
    }
    return NULL;
}

uint64_t mem_find(const struct hvp_user *u, uint64_t len)
{
    uint64_t hi = MMAP_TOP;
    if (len == 0 || len > MMAP_TOP)
        return 0;
    for (size_t i = u->nregions; i-- > 0;) {
        const struct region *r = &u->regions[i];
        if (r->start >= hi)
            continue;
        if (r->end <= hi && hi - r->end >= len)
            return hi - len;
        hi = r->start;
    }
    return hi >= GUEST_MIN + len ? hi - len : 0;
}

/* Makes the list say `prot` for [a, b) (or nothing there when prot < 0),
 * then re-registers that range with the CPU. */
static int set_range(struct hvp_user *u, uint64_t a, uint64_t b, int prot)
{
    size_t need = u->nregions + 3;
    if (need > u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 64;
        while (cap < need)
            cap *= 2;
        struct region *nr = realloc(u->regions, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        u->regions = nr;
        u->cap = cap;
    }
    /* Rebuild in place: regions wholly before [a,b), the cut pieces and the
     * new region, then the ones after. */
    size_t first = find_first(u, a), last = first;
    while (last < u->nregions && u->regions[last].start < b)
        last++;
    bool had = first < last; /* the CPU has mappings to drop */
    struct region pieces[3];
    size_t np = 0;
    if (first < last && u->regions[first].start < a)
        pieces[np++] = (struct region){u->regions[first].start, a, u->regions[first].prot};
    if (prot >= 0)
        pieces[np++] = (struct region){a, b, (unsigned)prot};
    if (first < last && u->regions[last - 1].end > b)
        pieces[np++] = (struct region){b, u->regions[last - 1].end, u->regions[last - 1].prot};
    size_t tail = u->nregions - last;
    memmove(&u->regions[first + np], &u->regions[last], tail * sizeof(struct region));
    memcpy(&u->regions[first], pieces, np * sizeof(struct region));
    u->nregions = first + np + tail;
    /* Merge neighbours with equal protection around the change. */
    size_t lo = first ? first - 1 : 0, hi = first + np + 1;
    if (hi > u->nregions)
        hi = u->nregions;
    for (size_t i = lo; i + 1 < hi;) {
        struct region *r = &u->regions[i], *n = r + 1;
        if (r->end == n->start && r->prot == n->prot) {
            r->end = n->end;
            memmove(n, n + 1, (u->nregions - i - 2) * sizeof(struct region));
            u->nregions--;
            hi--;
        } else {
            i++;
        }
    }
    /* The CPU's view: drop the range, map back what has access. */
    if (had)
        hvp_cpu_unmap(u->cpu, a, b - a);
    for (size_t i = find_first(u, a); i < u->nregions && u->regions[i].start < b; i++) {
        const struct region *r = &u->regions[i];
        if (!r->prot)
            continue;
        uint64_t s = r->start > a ? r->start : a, e = r->end < b ? r->end : b;
        int ret = hvp_cpu_map(u->cpu, s, e - s, u->host + s, r->prot);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int mem_map(struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot)
{
    if (!len || (start | len) & PAGE_MASK_ || !in_space(start, len) || start < GUEST_MIN)
        return -EINVAL;
    if (mprotect(u->host + start, len, PROT_READ | PROT_WRITE) < 0)
        return -ENOMEM;
    return set_range(u, start, start + len, (int)prot);
}

int mem_unmap(struct hvp_user *u, uint64_t start, uint64_t len)
{
    if ((start | len) & PAGE_MASK_ || !in_space(start, len))
        return -EINVAL;
    if (!len)
        return 0;
    /* Give the pages back and make the range inaccessible again. */
    if (mmap(u->host + start, len, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
        return -ENOMEM;
    return set_range(u, start, start + len, -1);
}

int mem_protect(struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot)
{
    if ((start | len) & PAGE_MASK_ || !in_space(start, len))
        return -EINVAL;
    if (!len)
        return 0;
    if (!mem_ok(u, start, len, 0))
        return -ENOMEM;
    return set_range(u, start, start + len, (int)prot);
}

int mem_reset(struct hvp_user *u)
{
    int ret = 0;
    if (u->nregions) {
        uint64_t a = u->regions[0].start, b = u->regions[u->nregions - 1].end;
        ret = mem_unmap(u, a, b - a);
    }
    u->nregions = 0;
    u->brk_start = u->brk_cur = 0;
    return ret;
}
