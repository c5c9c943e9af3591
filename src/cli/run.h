/* Running the parsed command line: one connector per worker thread, each on
 * its own loop, and the main thread's signal handling. */
#ifndef SJ_CLI_RUN_H
#define SJ_CLI_RUN_H

#include "options.h"

/* Runs until done; returns the exit status. */
int cli_run(cli_config_t *cfg);

#endif
