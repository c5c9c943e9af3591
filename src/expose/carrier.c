/* The carrier's layers, built in order (see carrier.h). */
#include "carrier.h"

#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One layer: returns 1 if it does not apply to cfg; else 0 with *out, a
 * stream over lower whose handshake reports to cb (lower is then owned by
 * it), or a negative code with lower untouched. */
typedef int (*layer_fn)(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb,
                        void *arg, sj_stream_t **out);
/* Detaches the layer's callback once its handshake is done: the carrier's
 * state is the owner's, which may be gone while the stream lives on (the
 * same errors reach the stream's reader anyway). */
typedef void (*quiet_fn)(sj_stream_t *s);

static int tls_layer(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb, void *arg,
                     sj_stream_t **out) {
  if (cfg->tls == NULL)
    return 1;
  return sj_tls_stream_new(lower, cfg->tls, cfg->server ? NULL : cfg->host, cb, arg, out);
}

static void filter_quiet(sj_stream_t *s) { sj_layer_set_cb(s, NULL, NULL); }

/* The WebSocket carrier (ws.h). A client's Host header is what it dialled,
 * which is also what a reverse proxy in front of the server expects. */
static int ws_layer(sj_stream_t *lower, const sj_xcarrier_config_t *cfg, sj_layer_cb cb, void *arg,
                    sj_stream_t **out) {
  if (cfg->transport != SJ_XCARRIER_WS)
    return 1;
  if (cfg->server)
    return sj_ws_stream_new(lower, SJ_WS_SERVER, NULL, cfg->ws_path, cb, arg, out);
  char host[SJ_WS_HOST_MAX + 1];
  int n = snprintf(host, sizeof host, strchr(cfg->host, ':') ? "[%s]:%d" : "%s:%d", cfg->host,
                   cfg->port);
  if (n < 0 || (size_t)n >= sizeof host)
    return UV_EINVAL;
  return sj_ws_stream_new(lower, SJ_WS_CLIENT, host, cfg->ws_path, cb, arg, out);
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
  return transport == SJ_XCARRIER_TCP || transport == SJ_XCARRIER_WS;
}

static void next_layer(sj_xcarrier_t *c);

static void finish(sj_xcarrier_t *c, int status, const char *why) {
  sj_stream_t *top = c->top;
  c->top = NULL;
  c->cb(c->arg, status, why, top);
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
      snprintf(c->why, sizeof c->why, "%s: %s", layers[i].name, sj_strerror(rc));
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

sj_stream_t *sj_xcarrier_abort(sj_xcarrier_t *c) {
  sj_stream_t *top = c->top;
  if (top != NULL && c->handshaking)
    layers[c->next - 1].quiet(top);
  c->top = NULL;
  return top;
}

/* ---- the guard ----------------------------------------------------------- */

typedef struct {
  sj_stream_t base;
  sj_stream_t *lower;
  sj_write_cb wcb;
  void *warg;
  sj_shutdown_cb scb;
  void *sarg;
  sj_stream_close_cb ccb;
  void (*gone)(void *arg);
  void *gone_arg;
} guard_t;

static void g_on_read(sj_stream_t *lower, int status, sj_chunk_t *chunk) {
  guard_t *g = lower->data;
  g->base.on_read(&g->base, status, chunk);
}

static int g_read_start(sj_stream_t *s) { return sj_stream_read_start(((guard_t *)s)->lower); }
static int g_read_stop(sj_stream_t *s) { return sj_stream_read_stop(((guard_t *)s)->lower); }

static int g_try_write(sj_stream_t *s, const char *buf, size_t len) {
  return sj_stream_try_write(((guard_t *)s)->lower, buf, len);
}

static void g_on_write(sj_stream_t *lower, int status, void *arg) {
  guard_t *g = arg;
  (void)lower;
  g->wcb(&g->base, status, g->warg);
}

static int g_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  guard_t *g = (guard_t *)s;
  g->wcb = cb;
  g->warg = arg;
  return sj_stream_write(g->lower, buf, len, g_on_write, g);
}

static void g_on_shutdown(sj_stream_t *lower, int status, void *arg) {
  guard_t *g = arg;
  (void)lower;
  g->scb(&g->base, status, g->sarg);
}

static int g_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  guard_t *g = (guard_t *)s;
  g->scb = cb;
  g->sarg = arg;
  return sj_stream_shutdown(g->lower, g_on_shutdown, g);
}

static void g_on_closed(sj_stream_t *lower) {
  guard_t *g = lower->data;
  if (g->ccb != NULL)
    g->ccb(&g->base);
  g->gone(g->gone_arg);
  free(g);
}

static void g_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  guard_t *g = (guard_t *)s;
  g->ccb = cb;
  sj_stream_close(g->lower, reset, g_on_closed);
}

static const sj_stream_ops_t guard_ops = {
    .read_start = g_read_start,
    .read_stop = g_read_stop,
    .try_write = g_try_write,
    .write = g_write,
    .shutdown = g_shutdown,
    .close = g_close,
};

int sj_xcarrier_guard(sj_stream_t *s, void (*gone)(void *arg), void *arg, sj_stream_t **out) {
  guard_t *g = calloc(1, sizeof *g);
  if (g == NULL)
    return UV_ENOMEM;
  g->base = (sj_stream_t){.ops = &guard_ops, .loop = s->loop, .pool = s->pool, .origin = s->origin};
  g->lower = s;
  g->gone = gone;
  g->gone_arg = arg;
  s->data = g;
  s->on_read = g_on_read;
  *out = &g->base;
  return 0;
}
