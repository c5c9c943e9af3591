/* The table of subcommands (see commands.h). */
#include "commands.h"

#include <stddef.h>

const cli_command_t cli_commands[] = {
    {NULL, NULL},
};
