/* The expose server: options, the control listener, logging, lifetime. */
#include "server_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks kept for reuse across every agent's carrier and channels. */
#define FREE_CHUNKS 64

void sj_xserver_options_init(sj_xserver_options_t *o) {
  memset(o, 0, sizeof *o);
  o->max_tunnels = 64;
  o->max_streams = 1024;
  o->max_agents = 1024;
  o->grace_s = 30;
  o->handshake_timeout_s = 10;
  o->heartbeat_ms = 10000;
  o->heartbeat_timeout_ms = 30000;
  o->buffer_size = SJ_DEFAULT_BUFFER;
  o->keepalive = SJ_KEEPALIVE_DEFAULTS;
  snprintf(o->ws_path, sizeof o->ws_path, "/");
}

void sj__xserver_log(sj_xserver_t *srv, sj_log_level_t level, const char *fmt, ...) {
  if (srv->opts.log_cb == NULL || (level == SJ_LOG_INFO && !srv->opts.verbose))
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  srv->opts.log_cb(srv, level, msg, srv->opts.data);
}

static void free_server(sj_xserver_t *srv) {
  sj_xkeys_free(&srv->keys);
  if (srv->tls != NULL)
    sj_tls_ctx_free(srv->tls);
  sj_pool_drain(&srv->pool);
  free(srv);
}

static void on_final(uv_handle_t *h) {
  sj_xserver_t *srv = h->data;
  sj_xserver_close_cb cb = srv->close_cb;
  void *data = srv->opts.data;
  /* The callback runs just before the memory goes: the pointer is an
   * identity only by then, like a libuv handle in its close callback. */
  if (cb != NULL)
    cb(srv, data);
  free_server(srv);
}

/* The last reference often goes from a stream's close callback, and a
 * stream may still give chunks back to the pool after its callback: the
 * pool is freed from a later turn of the loop, once a handle kept for
 * this has closed. */
void sj__xserver_unref(sj_xserver_t *srv) {
  if (--srv->refs > 0)
    return;
  uv_close((uv_handle_t *)&srv->finale, on_final);
}

static void on_accept(sj_listener_t *l, int status, sj_stream_t *s, void *data) {
  sj_xserver_t *srv = data;
  (void)l;
  if (status < 0) {
    sj__xserver_log(srv, SJ_LOG_ERROR, "accept failed: %s", sj_strerror(status));
    return;
  }
  if (srv->closing || srv->n_sessions >= srv->opts.max_agents) {
    char peer[SJ_PEER_HOST_MAX + 16];
    sj_origin_text(&s->origin, peer, sizeof peer);
    sj__xserver_log(srv, SJ_LOG_ERROR, "agent %s refused: %u agents connected (the limit)", peer,
                    srv->n_sessions);
    sj_stream_close(s, 1, NULL);
    return;
  }
  sj__xsession_start(srv, s);
}

/* ---- creation ----------------------------------------------------------- */

static int load_security(sj_xserver_t *srv, const sj_xserver_options_t *o, char *err,
                         size_t errlen) {
  if (o->keys != NULL && sj_xkeys_copy(&srv->keys, o->keys) != 0) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  if (srv->keys.n == 0 && !o->no_auth) {
    snprintf(err, errlen,
             "no API keys configured (give --api-keys-file or set "
             "SOCKJOIN_API_KEYS, or run with --no-auth)");
    return SJ_ECONFIG;
  }
  if (o->tls_cert[0] == '\0' && o->tls_key[0] == '\0')
    return 0;
  sj_tls_config_t cfg = {.server = 1, .cert = o->tls_cert, .key = o->tls_key};
  return sj_tls_ctx_new(&cfg, &srv->tls, err, errlen);
}

static void listen_text(const sj_side_spec_t *l, char *buf, size_t len) {
  const char *host = l->host[0] != '\0' ? l->host : "0.0.0.0";
  snprintf(buf, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, l->port);
}

static sj_xserver_t *alloc_server(uv_loop_t *loop, const sj_side_spec_t *listen,
                                  const sj_xserver_options_t *opts) {
  sj_xserver_t *srv = calloc(1, sizeof *srv);
  if (srv == NULL)
    return NULL;
  srv->loop = loop;
  srv->opts = *opts;
  srv->opts.keys = NULL;
  srv->listen = *listen;
  sj_pool_init(&srv->pool, SJ_CHUNK_SIZE, FREE_CHUNKS);
  sj_list_init(&srv->sessions);
  sj_list_init(&srv->tunnels);
  srv->next_tunnel_id = 1;
  srv->next_session_id = 1;
  srv->refs = 1;
  return srv;
}

int sj_xserver_new(sj_xserver_t **out, uv_loop_t *loop, const sj_side_spec_t *listen,
                   const sj_xserver_options_t *opts, char *err, size_t errlen) {
  sj_xserver_t *srv = alloc_server(loop, listen, opts);
  if (srv == NULL) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  int rc = load_security(srv, opts, err, errlen);
  if (rc == 0 && !sj_xcarrier_available(opts->transport)) {
    snprintf(err, errlen, "--transport ws is not available in this build");
    rc = UV_ENOTSUP;
  }
  if (rc == 0) {
    rc = sj_listener_open(loop, &srv->pool, &srv->listen, &srv->opts.keepalive, NULL, on_accept,
                          srv, &srv->listener);
    if (rc != 0) {
      char where[SJ_HOST_MAX + 16];
      listen_text(&srv->listen, where, sizeof where);
      snprintf(err, errlen, "cannot listen on %s: %s", where, sj_strerror(rc));
    }
  }
  if (rc != 0) {
    free_server(srv);
    return rc;
  }
  srv->carrier = (sj_xcarrier_config_t){
      .server = 1, .tls = srv->tls, .transport = srv->opts.transport, .ws_path = srv->opts.ws_path};
  srv->refs++; /* the listener */
  uv_idle_init(loop, &srv->finale);
  srv->finale.data = srv;
  *out = srv;
  return 0;
}

int sj_xserver_address(const sj_xserver_t *srv, char *buf, size_t len) {
  if (srv->listener == NULL)
    return SJ_ECLOSED;
  return sj_listener_address(srv->listener, buf, len);
}

/* ---- closing ------------------------------------------------------------ */

static void on_listener_closed(void *data) { sj__xserver_unref(data); }

void sj_xserver_close(sj_xserver_t *srv, sj_xserver_close_cb cb) {
  if (srv->closing)
    return;
  srv->closing = 1;
  srv->close_cb = cb;
  if (srv->listener != NULL) {
    sj_listener_close(srv->listener, on_listener_closed, srv);
    srv->listener = NULL;
  }
  while (!sj_list_empty(&srv->sessions))
    sj__xsession_end(sj_container_of(srv->sessions.next, xsession_t, link), "server closing");
  while (!sj_list_empty(&srv->tunnels))
    sj__xtunnel_close(sj_container_of(srv->tunnels.next, xtunnel_t, link), "server closing");
  sj__xserver_unref(srv);
}
