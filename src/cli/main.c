/* sockjoin: the command line. It parses options into the library's
 * structs (options.c) and runs them (run.c). */
#include "options.h"
#include "run.h"
#include "sockjoin.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv) {
  static cli_config_t cfg;
  char err[512];
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
  /* A peer that goes away mid-write must not kill the relay: writes report
   * EPIPE instead. */
  signal(SIGPIPE, SIG_IGN);
  return cli_run(&cfg);
}
