#include "cli.h"
int hvp_cmd_user(int argc, char **argv)
{
    (void)argc;
    hvp_cli_error(argv[0], "not built yet");
    return 2;
}
