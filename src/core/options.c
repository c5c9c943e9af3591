/* The connector's option defaults, in one place. */
#include "sockjoin.h"

#include <string.h>

void sj_options_init(sj_options_t *o) {
  memset(o, 0, sizeof *o);
  o->connect_timeout_s = 10;
  o->buffer_size = SJ_DEFAULT_BUFFER;
  o->keepalive = SJ_KEEPALIVE_DEFAULTS;
  o->auth_timeout_s = SJ_DEFAULT_AUTH_TIMEOUT;
}
