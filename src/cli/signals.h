/* SIGINT and SIGTERM, watched the same way by every long-running
 * subcommand (signals.c). They are watched from the start, before the
 * "listening" line, so that a script that stops the process as soon as it
 * has read its port always gets a clean exit. */
#ifndef SJ_CLI_SIGNALS_H
#define SJ_CLI_SIGNALS_H

#include <uv.h>

typedef struct {
  uv_signal_t sigint, sigterm;
} cli_signals_t;

/* Calls cb (with the handle's data set to data) on either signal. */
void cli_signals_start(cli_signals_t *s, uv_loop_t *loop, uv_signal_cb cb, void *data);
/* Stops watching; the handles close on the loop's next turn. */
void cli_signals_close(cli_signals_t *s);

#endif
