/* Messages for humans, delivered through the caller's log callback. */
#include "connector_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sj__log(sj_connector_t *c, sj_log_level_t level, const char *fmt, ...) {
  if (c->opts.log_cb == NULL || (level == SJ_LOG_INFO && !c->opts.verbose))
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->opts.log_cb(c, level, msg, c->opts.data);
}

void sj__log_traffic(sj_connector_t *c, sj_side_t from, uint64_t pair_id, const char *bytes,
                     size_t n) {
  if (c->opts.log_cb == NULL)
    return;
  int need = sj_traffic_format(c->opts.log_traffic, from, pair_id, bytes, n, NULL, 0);
  char *text = malloc((size_t)need + 1);
  if (text == NULL)
    return;
  sj_traffic_format(c->opts.log_traffic, from, pair_id, bytes, n, text, (size_t)need + 1);
  c->opts.log_cb(c, SJ_LOG_TRAFFIC, text, c->opts.data);
  free(text);
}

char sj__side_letter(sj_side_t side) { return side == SJ_A ? 'A' : 'B'; }
