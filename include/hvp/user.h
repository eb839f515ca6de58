/* hvp user: static x86-64 Linux programs on the software CPU.
 *
 * One struct hvp_user is one guest process: a guest address space, one
 * software CPU in HVP_CPU_MODEL_USER64 and a Linux system-call layer that
 * passes file, time and identity calls through to the host with every guest
 * pointer translated and bounds-checked. One thread: clone for a thread
 * answers -ENOSYS; fork/vfork fork the host process (guest memory is private,
 * so the child gets a copy on write); execve of a static program replaces the
 * image in place (anything else: -ENOEXEC).
 *
 * The library never prints: the guest's own writes go to its fds (which are
 * the host process's fds), --strace lines go to a callback, and the outcome
 * of a run comes back in struct hvp_user_result for the caller to report.
 * Functions return 0 or a negative errno; hvp_user_error() says more.
 *
 * The embedder should ignore SIGPIPE in the host process: a write that fails
 * with EPIPE becomes the guest's own SIGPIPE.
 */
#ifndef HVP_USER_H
#define HVP_USER_H

#include <stdint.h>

#include "hvp/cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

struct hvp_user;

/* One system call in strace style, without a newline:
 * `openat(AT_FDCWD, "/etc/passwd", O_RDONLY) = 3`. */
typedef void (*hvp_user_trace_fn)(void *opaque, const char *line);

struct hvp_user_config {
    uint32_t size;           /* sizeof(struct hvp_user_config) */
    hvp_user_trace_fn trace; /* NULL: no tracing */
    void *trace_opaque;
};

int hvp_user_create(const struct hvp_user_config *cfg, struct hvp_user **out);
void hvp_user_destroy(struct hvp_user *u);
/* Human detail of the last failure ("" if none), one line. */
const char *hvp_user_error(const struct hvp_user *u);

/* Loads the static ELF executable `path` and builds the initial stack with
 * argv[0..argc) and the NULL-terminated envp. -ENOEXEC for a file that is not
 * a runnable static x86-64 executable (the error says why), another -errno
 * when the file cannot be read or memory is short. Once per hvp_user. */
int hvp_user_load(struct hvp_user *u, const char *path, int argc, char *const *argv,
                  char *const *envp);

enum hvp_user_end {
    HVP_USER_EXITED = 1, /* exit/exit_group: status */
    HVP_USER_SIGNALED,   /* killed by signo (exception or a raised signal) */
    HVP_USER_FAILED,     /* the CPU could not continue: see hvp_user_error() */
};

struct hvp_user_result {
    uint32_t end;   /* enum hvp_user_end */
    int status;     /* HVP_USER_EXITED: 0..255 */
    int signo;      /* HVP_USER_SIGNALED */
    bool exception; /* the signal came from a CPU exception (not kill/abort) */
    uint8_t vector; /* the exception's vector */
    uint64_t rip;   /* where the guest was */
    uint64_t addr;  /* #PF: the faulting address */
    uint8_t insn[16];
    uint8_t insn_len; /* bytes of the faulting instruction known (0..16) */
};

/* Runs the loaded program to its end. Returns 0 with *res filled, or -errno
 * when nothing was loaded. */
int hvp_user_run(struct hvp_user *u, struct hvp_user_result *res);

/* Copies up to len bytes of readable guest memory at addr; returns how many
 * (stops at the first unreadable page). */
size_t hvp_user_peek(const struct hvp_user *u, uint64_t addr, void *buf, size_t len);

/* The CPU (for hvp_cpu_get_stats and the like). */
struct hvp_cpu *hvp_user_cpu(struct hvp_user *u);

#ifdef __cplusplus
}
#endif

#endif
