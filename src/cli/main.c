/* hvp: one command, git-style subcommands. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cmd {
    const char *name;
    hvp_cli_fn fn;
    const char *summary;
};

static const struct cmd commands[] = {
    {"dis", hvp_cmd_dis, "disassemble a raw file of x86 code"},
    {"disk", hvp_cmd_disk, "create, inspect, check and convert virtual disks"},
    {"run", hvp_cmd_run, "run a VM: boot a Linux kernel with its console on the terminal"},
    {"user", hvp_cmd_user, "run a static x86-64 Linux program on the software CPU"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: hvp <command> [options] [args]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'hvp <command> --help' for a command's options.\n");
}

void hvp_cli_error(const char *what, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "hvp: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("hvp %s\n", HVP_VERSION);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    hvp_cli_error(name, "unknown command (see 'hvp --help')");
    return 2;
}
