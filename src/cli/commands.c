/* The table of subcommands (see commands.h). */
#include "commands.h"

#include <stddef.h>

const cli_command_t cli_commands[] = {
    {"relay", cli_relay_main},
    {"relay-tunnel", cli_relay_tunnel_main},
    {"server", cli_server_main},
    {"expose", cli_expose_main},
    {NULL, NULL},
};
