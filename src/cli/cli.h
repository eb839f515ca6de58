/* Shared helpers of the hvp command line. Each subcommand lives in its own
 * cmd_*.c and is listed in main.c's table. */
#ifndef HVP_CLI_H
#define HVP_CLI_H

#include <stdint.h>

/* A subcommand: argv[0] is the subcommand's name. Returns the exit status. */
typedef int (*hvp_cli_fn)(int argc, char **argv);

int hvp_cmd_dis(int argc, char **argv);
int hvp_cmd_disk(int argc, char **argv);
int hvp_cmd_user(int argc, char **argv);
int hvp_cmd_run(int argc, char **argv);

/* Prints "hvp: <what>: <why>" to stderr (printf-style why). */
void hvp_cli_error(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a byte count with an optional K/M/G/T suffix (powers of 1024, an
 * optional trailing 'B' or 'iB'). Returns 0, or -1 on a malformed or
 * overflowing value. */
int hvp_cli_parse_size(const char *s, uint64_t *out);

/* Parses an unsigned integer in decimal or 0x-hex. Returns 0 or -1. */
int hvp_cli_parse_u64(const char *s, uint64_t *out);

#endif
