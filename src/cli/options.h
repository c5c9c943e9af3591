/* The command line, parsed into the library's option structs. Pure: it
 * prints nothing, so it is unit-tested and fuzzed on its own. */
#ifndef SJ_CLI_OPTIONS_H
#define SJ_CLI_OPTIONS_H

#include "sockjoin.h"

typedef enum { CLI_RUN, CLI_HELP, CLI_VERSION, CLI_USAGE_ERROR } cli_action_t;

#define CLI_WORKERS_MAX 64

typedef struct {
  sj_options_t opts;
  sj_side_spec_t side[2];
  int stats;
  int workers;      /* threads, each with its own loop and connector */
  int workers_auto; /* --workers auto: one per CPU this process may use */
} cli_config_t;

/* Parses argv (argv[0] is the program). On CLI_USAGE_ERROR, err holds the
 * message without the "sockjoin: " prefix. */
cli_action_t cli_parse(int argc, char **argv, cli_config_t *cfg, char *err, size_t errlen);

extern const char cli_usage[];

#endif
