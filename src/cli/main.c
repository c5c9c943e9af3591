/* sockjoin: the command line. It parses options into the library's
 * structs (options.c) and runs them (run.c). */
#include "commands.h"
#include "options.h"
#include "run.h"
#include "sockjoin.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* The subcommand named by argv[1], or NULL for the join itself. */
static const cli_command_t *find_command(int argc, char **argv) {
  if (argc < 2)
    return NULL;
  for (const cli_command_t *c = cli_commands; c->name != NULL; c++)
    if (strcmp(argv[1], c->name) == 0)
      return c;
  return NULL;
}

int main(int argc, char **argv) {
  static cli_config_t cfg;
  char err[512];
  /* A peer that goes away mid-write must not kill the relay: writes report
   * EPIPE instead. */
  signal(SIGPIPE, SIG_IGN);
  const cli_command_t *command = find_command(argc, argv);
  if (command != NULL)
    return command->main(argc - 1, argv + 1);
  switch (cli_parse(argc, argv, &cfg, err, sizeof err)) {
  case CLI_HELP:
    fputs(cli_usage, stdout);
    return 0;
  case CLI_VERSION:
    printf("sockjoin %s\n", sj_version());
    return 0;
  case CLI_USAGE_ERROR:
    fprintf(stderr, "sockjoin: %s\n", err);
    return 2;
  case CLI_RUN:
    break;
  }
  return cli_run(&cfg);
}
