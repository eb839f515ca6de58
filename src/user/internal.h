/* hvp user internals: the guest address space, the loader, the system calls. */
#ifndef HVP_USER_INTERNAL_H
#define HVP_USER_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "hvp/cpu.h"
#include "hvp/user.h"

#define PAGE_SIZE_ 4096ULL
#define PAGE_MASK_ (PAGE_SIZE_ - 1)
#define PAGE_UP(x) (((x) + PAGE_MASK_) & ~PAGE_MASK_)
#define PAGE_DOWN(x) ((x) & ~PAGE_MASK_)

/* Guest-virtual layout. The whole guest space is one host reservation
 * (PROT_NONE, no swap reserved) at u->host: guest address g lives at
 * u->host + g. Guest pointers stay contiguous in the host, yet the guest can
 * reach nothing outside the reservation: the CPU only sees the pages
 * registered with hvp_cpu_map, and the system calls check every pointer
 * against the region list. */
#define GUEST_SPACE 0x1000000000ULL /* 64 GiB */
#define GUEST_MIN 0x10000ULL        /* like vm.mmap_min_addr */
#define IMAGE_LIMIT 0x800000000ULL  /* ELF segments below 32 GiB */
#define PIE_BASE 0x555554000ULL     /* static-PIE load address */
#define STACK_TOP 0xffffff000ULL
#define STACK_SIZE (8ULL << 20)
#define MMAP_TOP (STACK_TOP - STACK_SIZE - (1ULL << 30)) /* mmap grows down from here */

/* One guest mapping: [start, end), page-aligned. */
struct region {
    uint64_t start, end;
    unsigned prot; /* HVP_CPU_PROT_* */
};

struct sigact {
    uint64_t handler, flags, restorer, mask;
};

struct hvp_user {
    struct hvp_user_config cfg;
    struct hvp_cpu *cpu;
    uint8_t *host; /* the reservation, GUEST_SPACE bytes */
    struct region *regions;
    size_t nregions, cap;
    uint64_t brk_start, brk_cur;
    uint64_t entry, sp;
    bool loaded;
    int pid;
    uint64_t sigmask;
    struct sigact sig[65];
    uint64_t altstack[3]; /* ss_sp, ss_flags, ss_size */
    uint64_t tid_address;
    bool exec_done;      /* execve replaced the image: registers are fresh */
    int vfork_fd;        /* vfork child: closed at execve, wakes the parent */
    int children[64];    /* pids forked by this guest: kill() may reach them */
    unsigned nchildren;
    char exe[4096]; /* absolute path of the program, for /proc/self/exe */
    /* FPU state saved at signal delivery, restored by rt_sigreturn. */
    struct hvp_cpu_fpu *fpsave;
    size_t nfpsave, capfpsave;
    /* Set by a system call that ends the process. */
    bool ended;
    struct hvp_user_result res;
    char err[256];
};

/* error.c-style helper in user.c: formats u->err, returns ret. */
int user_fail(struct hvp_user *u, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* mem.c */
int mem_init(struct hvp_user *u);
void mem_fini(struct hvp_user *u);
/* Maps fresh zeroed pages; the range must be free. */
int mem_map(struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot);
int mem_unmap(struct hvp_user *u, uint64_t start, uint64_t len);
int mem_protect(struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot);
/* True when no page of [start, start+len) is mapped. */
bool mem_free(const struct hvp_user *u, uint64_t start, uint64_t len);
/* True when every page of the range is mapped with at least `prot`. */
bool mem_ok(const struct hvp_user *u, uint64_t start, uint64_t len, unsigned prot);
/* Finds a free gap of len bytes, top-down below MMAP_TOP; 0 if none. */
uint64_t mem_find(const struct hvp_user *u, uint64_t len);
/* Host pointer for [g, g+len) if mapped with `prot`, else NULL. len 0 gives
 * a valid (unused) pointer. */
void *mem_ptr(const struct hvp_user *u, uint64_t g, uint64_t len, unsigned prot);
/* Like mem_ptr, but shortens *len to the accessible part (as the kernel
 * copies up to the first fault); NULL when not even the first byte is. */
void *mem_clamp(const struct hvp_user *u, uint64_t g, uint64_t *len, unsigned prot);
/* Host pointer to a NUL-terminated readable guest string (at most max
 * bytes before the NUL), else NULL. */
const char *mem_str(const struct hvp_user *u, uint64_t g, size_t max);

/* Empties the guest address space (execve). */
int mem_reset(struct hvp_user *u);

/* loader.c: loads path into the (empty) address space and builds the stack;
 * with replace, empties the current one first, once the file is known to be
 * loadable (*committed: the old image is gone). */
int loader_load(struct hvp_user *u, const char *path, int argc, char *const *argv,
                char *const *envp, bool replace, bool *committed);

/* syscall.c: handles the SYSCALL exit in st. */
void sys_dispatch(struct hvp_user *u, struct hvp_cpu_state *st);
/* Terminates the guest with a signal, or runs its handler. */
void sys_signal(struct hvp_user *u, struct hvp_cpu_state *st, int signo);

#endif
