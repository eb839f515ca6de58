/* Dies the way argv[1] says: segv, ill, fpe, abort, trap, pipe; or
 * pipe-ign: writes to a closed pipe with SIGPIPE ignored and lives. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    printf("before\n");
    fflush(stdout);
    const char *how = argc > 1 ? argv[1] : "segv";
    if (!strcmp(how, "segv"))
        *(volatile int *)8 = 1;
    else if (!strcmp(how, "ill"))
        __builtin_trap();
    else if (!strcmp(how, "fpe")) {
        volatile int a = 100, z = 0; /* not 1/z: gcc turns that into compares */
        printf("%d\n", a / z);
    } else if (!strcmp(how, "abort"))
        abort();
    else if (!strcmp(how, "trap"))
        __asm__ volatile("int3");
    else if (!strncmp(how, "pipe", 4)) {
        int p[2];
        if (pipe(p))
            return 1;
        close(p[0]);
        if (how[4])
            signal(SIGPIPE, SIG_IGN);
        long r = write(p[1], "x", 1);
        printf("write %ld %s\n", r, r < 0 && errno == EPIPE ? "EPIPE" : "?");
    }
    return 0;
}
