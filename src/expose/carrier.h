/*
 * The carrier of an expose session: the control connection's TCP stream,
 * TLS over it when configured, a WebSocket over that with --transport ws;
 * the auth lines and then the mux run over whatever comes out on top.
 *
 *   tcp ──► [tls] ──► [ws] ──► auth lines (lines.h) ──► mux (mux.h)
 *
 * Both ends build it here, in one place: each layer is a function of one
 * shape (a stream over a lower stream, reporting its handshake through an
 * sj_layer_cb, as tls.h does), applied in order, so that another layer
 * slots in as one more entry in carrier.c's table.
 */
#ifndef SJ_EXPOSE_CARRIER_H
#define SJ_EXPOSE_CARRIER_H

#include "tls.h"

typedef enum {
  SJ_XCARRIER_TCP = 0, /* TLS or not, straight over TCP            */
  SJ_XCARRIER_WS       /* a WebSocket (HTTP upgrade, binary frames) */
} sj_xcarrier_transport_t;

typedef struct {
  int server;              /* 1: the accepting end (the expose server)   */
  const sj_tls_ctx_t *tls; /* NULL: no TLS                               */
  const char *host;        /* client: the dialled host (TLS name check,
                              the WebSocket's Host header)               */
  int port;                /* client: the dialled port                   */
  sj_xcarrier_transport_t transport;
  const char *ws_path; /* the WebSocket's request path ("/")          */
} sj_xcarrier_config_t;

/* Every layer is up: status 0 and the top stream; or a failure with a
 * phrase for a log, and the stream to close. Either way the callee owns top
 * (it is never NULL). */
typedef void (*sj_xcarrier_cb)(void *arg, int status, const char *why, sj_stream_t *top);

typedef struct {
  const sj_xcarrier_config_t *cfg; /* borrowed until the callback */
  sj_stream_t *top;
  int next;        /* the next layer to try                      */
  int handshaking; /* top is layer next - 1, in its handshake */
  char why[160];
  sj_xcarrier_cb cb;
  void *arg;
} sj_xcarrier_t;

/* 1 if this build can carry the mux over transport. */
int sj_xcarrier_available(sj_xcarrier_transport_t transport);

/* Builds the layers over tcp (owned by the carrier from now on). cb runs
 * exactly once, unless sj_xcarrier_abort() comes first, and may run before
 * this returns (with no layer to build, or a layer that fails at once). */
void sj_xcarrier_start(sj_xcarrier_t *c, sj_stream_t *tcp, const sj_xcarrier_config_t *cfg,
                       sj_xcarrier_cb cb, void *arg);

/* Gives up before cb has run (a deadline): cb will not run, and the stream
 * built so far is returned for the caller to close (NULL once cb has run). */
sj_stream_t *sj_xcarrier_abort(sj_xcarrier_t *c);

/*
 * Wraps s in a stream that calls gone(arg) once it has closed, after the
 * close callback of whoever closed it. Streams of a session use the pool
 * of the session's owner; a mux closes its carrier on its own schedule
 * (after its GOAWAY has gone out), and this is how the owner learns that
 * the carrier is done with the pool. Returns 0 and *out (which owns s),
 * or UV_ENOMEM with s untouched.
 */
int sj_xcarrier_guard(sj_stream_t *s, void (*gone)(void *arg), void *arg, sj_stream_t **out);

#endif
