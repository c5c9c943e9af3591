/* The subcommands besides the join itself. Each takes the arguments after
 * its name (argv[0] is the subcommand's name) and returns the exit status:
 * 0 done, 1 failed at run time, 2 bad usage. One file per subcommand. */
#ifndef SJ_CLI_COMMANDS_H
#define SJ_CLI_COMMANDS_H

typedef struct {
  const char *name;
  int (*main)(int argc, char **argv);
} cli_command_t;

/* The table, ended by a {NULL, NULL} entry (commands.c). */
extern const cli_command_t cli_commands[];

/* sockjoin relay: the named message relay (relay.c). */
int cli_relay_main(int argc, char **argv);
/* sockjoin relay-tunnel: the tunnel through a named relay (relay_tunnel.c). */
int cli_relay_tunnel_main(int argc, char **argv);
/* sockjoin server: the expose server (server.c). */
int cli_server_main(int argc, char **argv);
/* sockjoin expose: expose local ports through a server (expose.c). */
int cli_expose_main(int argc, char **argv);

#endif
