/* Dies the way argv[1] says: segv, ill, fpe, abort, trap. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        volatile int z = 0;
        printf("%d\n", 1 / z);
    } else if (!strcmp(how, "abort"))
        abort();
    else if (!strcmp(how, "trap"))
        __asm__ volatile("int3");
    return 0;
}
