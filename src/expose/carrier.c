/* The carrier's layers, built in order (see carrier.h). */
#include "carrier.h"

#include <stdio.h>

/* One layer: returns 1 if it does not apply to cfg; else 0 with *out, a
 * stream over lower whose handshake reports to cb (lower is then owned by
 * it), or a negative code with lower untouched. */
typedef int (*layer_fn)(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb,
                        void *arg, sj_stream_t **out);
/* Detaches the layer's callback once its handshake is done: the carrier's
 * state is the owner's, which may be gone while the stream lives on (the
 * same errors reach the stream's reader anyway). */
typedef void (*quiet_fn)(sj_stream_t *s);

static int tls_layer(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb,
                     void *arg, sj_stream_t **out) {
  if (cfg->tls == NULL)
    return 1;
  return sj_tls_stream_new(lower, cfg->tls, cfg->server ? NULL : cfg->host, cb, arg, out);
}

static void filter_quiet(sj_stream_t *s) { sj_layer_set_cb(s, NULL, NULL); }

/* The WebSocket carrier is built separately (src/expose/ws*.c); until this
 * build has it, asking for it fails here, and the CLI says so up front
 * (sj_xcarrier_available). */
static int ws_layer(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb,
                    void *arg, sj_stream_t **out) {
  (void)lower;
  (void)cb;
  (void)arg;
  (void)out;
  if (cfg->transport != SJ_XCARRIER_WS)
    return 1;
  return UV_ENOTSUP;
}

static const struct {
  const char *name;
  layer_fn make;
  quiet_fn quiet;
} layers[] = {
    {"tls", tls_layer, filter_quiet},
    {"websocket", ws_layer, filter_quiet},
};

#define NLAYERS (sizeof layers / sizeof layers[0])

int sj_xcarrier_available(sj_xcarrier_transport_t transport) {
  return transport == SJ_XCARRIER_TCP;
}

static void next_layer(sj_xcarrier_t *c);

static void finish(sj_xcarrier_t *c, int status, const char *why) {
  sj_stream_t *top = c->top;
  c->top = NULL;
  if (status != 0 && top != NULL)
    sj_stream_close(top, 1, NULL);
  c->cb(c->arg, status, why, status == 0 ? top : NULL);
}

static void on_layer(sj_stream_t *s, int status, const char *text, void *arg) {
  sj_xcarrier_t *c = arg;
  c->handshaking = 0;
  layers[c->next - 1].quiet(s);
  if (status != 0) {
    finish(c, status, text != NULL ? text : sj_strerror(status));
    return;
  }
  next_layer(c);
}

static void next_layer(sj_xcarrier_t *c) {
  while (c->next < (int)NLAYERS) {
    int i = c->next++;
    sj_stream_t *out = NULL;
    int rc = layers[i].make(c->top, c->cfg, on_layer, c, &out);
    if (rc == 1)
      continue;
    if (rc < 0) {
      snprintf(c->why, sizeof c->why, "%s: %s", layers[i].name,
               rc == UV_ENOTSUP ? "not available in this build" : sj_strerror(rc));
      finish(c, rc, c->why);
      return;
    }
    c->top = out;
    c->handshaking = 1;
    return; /* on_layer goes on */
  }
  finish(c, 0, NULL);
}

void sj_xcarrier_start(sj_xcarrier_t *c, sj_stream_t *tcp, const sj_xcarrier_config_t *cfg,
                       sj_xcarrier_cb cb, void *arg) {
  c->cfg = cfg;
  c->top = tcp;
  c->next = 0;
  c->handshaking = 0;
  c->cb = cb;
  c->arg = arg;
  next_layer(c);
}

void sj_xcarrier_abort(sj_xcarrier_t *c) {
  if (c->top == NULL)
    return;
  if (c->handshaking)
    layers[c->next - 1].quiet(c->top);
  sj_stream_close(c->top, 1, NULL);
  c->top = NULL;
}
