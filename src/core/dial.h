/* Connecting sides: a TCP connect (resolving the host, trying each address
 * in turn, within a deadline) or a Unix connect, handing the connected
 * socket on as a stream. */
#ifndef SJ_DIAL_H
#define SJ_DIAL_H

#include "stream.h"

typedef struct sj_dial sj_dial_t;

/* Exactly one call, never from inside sj_dial_start(), unless the dial was
 * cancelled first: status 0 with a stream the callee owns, or the last error
 * (UV_ETIMEDOUT at the deadline). */
typedef void (*sj_dial_cb)(sj_dial_t *d, int status, sj_stream_t *stream, void *data);

/* spec and ka are borrowed: they must stay valid until the callback has run
 * or the dial has been cancelled, and spec as long as the stream it gives
 * (a Unix stream's origin points at its path). */
int sj_dial_start(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *spec,
                  const sj_keepalive_t *ka, double timeout_s, sj_dial_cb cb, void *data,
                  sj_dial_t **out);
/* Abandons the dial: no callback will run, and everything it holds is
 * released in the background. */
void sj_dial_cancel(sj_dial_t *d);

#endif
