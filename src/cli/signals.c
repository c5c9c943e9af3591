#include "signals.h"

#include <signal.h>

void cli_signals_start(cli_signals_t *s, uv_loop_t *loop, uv_signal_cb cb, void *data) {
  uv_signal_init(loop, &s->sigint);
  uv_signal_init(loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = data;
  uv_signal_start(&s->sigint, cb, SIGINT);
  uv_signal_start(&s->sigterm, cb, SIGTERM);
}

void cli_signals_close(cli_signals_t *s) {
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}
