/* The options of `sockjoin server` and `sockjoin expose`, parsed into the
 * expose server's and agent's option structs. Pure: nothing is printed or
 * read here (files and the environment are the runners' business), so the
 * parsers are unit-tested on their own. */
#ifndef SJ_CLI_EXPOSE_OPTIONS_H
#define SJ_CLI_EXPOSE_OPTIONS_H

#include "expose_agent.h"
#include "expose_server.h"

typedef enum { XCLI_RUN, XCLI_HELP, XCLI_USAGE_ERROR } xcli_action_t;

#define SJ_XSERVER_DEFAULT_PORT 7835

typedef struct {
  sj_xserver_options_t opts;
  sj_side_spec_t listen;
  char keys_file[SJ_FILE_MAX]; /* "": the environment's keys, if any */
} cli_server_config_t;

typedef struct {
  sj_xagent_options_t opts;
  sj_xagent_tunnel_t tunnels[SJ_XAGENT_TUNNELS_MAX];
  char api_key[1025]; /* from --api-key                      */
  int has_api_key;
  char api_key_file[SJ_FILE_MAX]; /* from --api-key-file             */
} cli_expose_config_t;

/* Parse argv (argv[0] is the subcommand's name). On XCLI_USAGE_ERROR err
 * holds the message, without the "sockjoin server: " prefix. */
xcli_action_t cli_server_parse(int argc, char **argv, cli_server_config_t *cfg, char *err,
                               size_t errlen);
xcli_action_t cli_expose_parse(int argc, char **argv, cli_expose_config_t *cfg, char *err,
                               size_t errlen);

extern const char cli_server_usage[];
extern const char cli_expose_usage[];

#endif
