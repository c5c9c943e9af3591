/* The expose agent: options, its tunnels' connectors, reconnecting with
 * back-off, lifetime. */
#include "agent_int.h"

#include "authline.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FREE_CHUNKS 64

void sj_xagent_options_init(sj_xagent_options_t *o) {
  memset(o, 0, sizeof *o);
  o->connect_timeout_s = 10;
  o->handshake_timeout_s = 10;
  o->retry_min_s = 0.5;
  o->retry_max_s = 30;
  o->heartbeat_ms = 10000;
  o->heartbeat_timeout_ms = 30000;
  o->buffer_size = SJ_DEFAULT_BUFFER;
  o->keepalive = SJ_KEEPALIVE_DEFAULTS;
  snprintf(o->ws_path, sizeof o->ws_path, "/");
}

void sj__xagent_log(sj_xagent_t *a, sj_log_level_t level, const char *fmt, ...) {
  if (a->opts.log_cb == NULL || (level == SJ_LOG_INFO && !a->opts.verbose))
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  a->opts.log_cb(a, level, msg, a->opts.data);
}

static void free_agent(sj_xagent_t *a) {
  if (a->key.data != NULL) {
    memset(a->key.data, 0, a->key.len);
    free(a->key.data);
  }
  if (a->tls != NULL)
    sj_tls_ctx_free(a->tls);
  free(a->tunnels);
  sj_pool_drain(&a->pool);
  free(a);
}

static void on_final(uv_handle_t *h) {
  sj_xagent_t *a = h->data;
  sj_xagent_close_cb cb = a->close_cb;
  void *data = a->opts.data;
  /* The callback runs just before the memory goes: the pointer is an
   * identity only by then, like a libuv handle in its close callback. */
  if (cb != NULL)
    cb(a, data);
  free_agent(a);
}

/* The last reference often goes from a stream's close callback, and a
 * stream may still give chunks back to the pool after its callback: the
 * pool is freed from a later turn of the loop, when the retry timer (kept
 * for this) has closed. */
void sj__xagent_unref(sj_xagent_t *a) {
  if (--a->refs > 0)
    return;
  uv_close((uv_handle_t *)&a->retry, on_final);
}

/* ---- staying connected -------------------------------------------------- */

static void connect_now(sj_xagent_t *a) {
  a->conn = sj__xconn_start(a);
  if (a->conn == NULL)
    sj__xagent_lost(a, UV_ENOMEM, "out of memory", 1);
}

static void on_retry(uv_timer_t *t) { connect_now(t->data); }

/* The next wait: doubling from retry_min_s to retry_max_s, each drawn
 * from its upper half so that agents cut off together come back spread. */
static double next_backoff(sj_xagent_t *a) {
  double b = a->backoff_s;
  a->backoff_s = b * 2 < a->opts.retry_max_s ? b * 2 : a->opts.retry_max_s;
  unsigned char r = 0;
  RAND_bytes(&r, 1);
  return b * (0.5 + r / 510.0);
}

static void stop(sj_xagent_t *a, int status, const char *why) {
  a->done = 1;
  if (a->opts.on_done != NULL)
    a->opts.on_done(a, status, why, a->opts.data);
}

void sj__xagent_lost(sj_xagent_t *a, int status, const char *why, int fatal) {
  a->conn = NULL;
  if (a->closing || a->done)
    return;
  if (fatal || !a->ever_up) {
    stop(a, status, why);
    return;
  }
  double wait = next_backoff(a);
  sj__xagent_log(a, SJ_LOG_ERROR, "connection to the server lost: %s; reconnecting in %.1f s", why,
                 wait);
  uv_timer_start(&a->retry, on_retry, (uint64_t)(wait * 1000), 0);
}

void sj__xagent_up(sj_xagent_t *a) {
  a->ever_up = 1;
  a->backoff_s = a->opts.retry_min_s;
}

/* ---- creation ----------------------------------------------------------- */

static void on_conn_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  atunnel_t *t = data;
  (void)c;
  sj__xagent_log(t->a, level, "%s: %s", t->local_text, msg);
}

static void on_conn_closed(sj_connector_t *c, void *data) {
  atunnel_t *t = data;
  (void)c;
  sj__xagent_unref(t->a);
}

static int load_tls(sj_xagent_t *a, char *err, size_t errlen) {
  if (!a->opts.tls)
    return 0;
  sj_tls_config_t cfg = {
      .server = 0, .ca = a->opts.ca[0] != '\0' ? a->opts.ca : NULL, .no_verify = a->opts.insecure};
  return sj_tls_ctx_new(&cfg, &a->tls, err, errlen);
}

static int copy_key(sj_xagent_t *a, const sj_xagent_options_t *o) {
  if (o->api_key == NULL)
    return 0;
  a->key.data = malloc(o->api_key_len + 1);
  if (a->key.data == NULL)
    return UV_ENOMEM;
  memcpy(a->key.data, o->api_key, o->api_key_len);
  a->key.data[o->api_key_len] = '\0';
  a->key.len = o->api_key_len;
  return 0;
}

static sj_xagent_t *alloc_agent(uv_loop_t *loop, const sj_xagent_options_t *o) {
  sj_xagent_t *a = calloc(1, sizeof *a);
  if (a == NULL)
    return NULL;
  a->tunnels = calloc(o->n_tunnels, sizeof *a->tunnels);
  if (a->tunnels == NULL || copy_key(a, o) != 0) {
    free(a->tunnels);
    free(a);
    return NULL;
  }
  a->loop = loop;
  a->opts = *o;
  a->opts.tunnels = NULL;
  a->opts.api_key = NULL;
  a->n_tunnels = o->n_tunnels;
  a->backoff_s = o->retry_min_s;
  sj_pool_init(&a->pool, SJ_CHUNK_SIZE, FREE_CHUNKS);
  a->server.kind = SJ_SIDE_CONNECT;
  snprintf(a->server.host, sizeof a->server.host, "%s", o->server_host);
  a->server.port = o->server_port;
  unsigned char id[SJ_XCTL_AGENT_LEN / 2];
  if (RAND_bytes(id, sizeof id) == 1)
    sj_auth_hex(id, sizeof id, a->id);
  return a;
}

/* A tunnel's connector: channels on A, local connections on B, both fed
 * by the agent in pairs (agent_channel.c). */
static int open_tunnel(sj_xagent_t *a, size_t i, const sj_xagent_tunnel_t *spec) {
  atunnel_t *t = &a->tunnels[i];
  t->a = a;
  t->index = i;
  t->asked = spec->remote_port;
  t->local.kind = SJ_SIDE_CONNECT;
  snprintf(t->local.host, sizeof t->local.host, "%s", spec->local_host);
  t->local.port = spec->local_port;
  snprintf(t->local_text, sizeof t->local_text, strchr(spec->local_host, ':') ? "[%s]:%d" : "%s:%d",
           spec->local_host, spec->local_port);
  t->fed[SJ_A].kind = t->fed[SJ_B].kind = SJ__SIDE_FED;
  sj_options_t o;
  sj_options_init(&o);
  o.verbose = a->opts.verbose;
  o.buffer_size = a->opts.buffer_size;
  o.keepalive = a->opts.keepalive;
  o.log_cb = on_conn_log;
  o.data = t;
  int rc = sj_connector_new(&t->conn, a->loop, &t->fed[SJ_A], &t->fed[SJ_B], &o, NULL);
  if (rc == 0)
    a->refs++;
  return rc;
}

static void close_tunnels(sj_xagent_t *a) {
  for (size_t i = 0; i < a->n_tunnels; i++) {
    if (a->tunnels[i].conn != NULL) {
      sj_connector_close(a->tunnels[i].conn, on_conn_closed);
      a->tunnels[i].conn = NULL;
    }
  }
}

int sj_xagent_new(sj_xagent_t **out, uv_loop_t *loop, const sj_xagent_options_t *opts, char *err,
                  size_t errlen) {
  if (opts->n_tunnels == 0 || opts->n_tunnels > SJ_XAGENT_TUNNELS_MAX) {
    snprintf(err, errlen, "expected 1 to %d local services", SJ_XAGENT_TUNNELS_MAX);
    return UV_EINVAL;
  }
  if (!sj_xcarrier_available(opts->transport)) {
    snprintf(err, errlen, "--transport ws is not available in this build");
    return UV_ENOTSUP;
  }
  sj_xagent_t *a = alloc_agent(loop, opts);
  if (a == NULL) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  int rc = load_tls(a, err, errlen);
  if (rc != 0) {
    free_agent(a);
    return rc;
  }
  a->carrier = (sj_xcarrier_config_t){.server = 0,
                                      .tls = a->tls,
                                      .host = a->server.host,
                                      .port = a->server.port,
                                      .transport = opts->transport,
                                      .ws_path = a->opts.ws_path};
  a->refs = 1; /* itself; the retry timer closes last (sj__xagent_unref) */
  uv_timer_init(loop, &a->retry);
  a->retry.data = a;
  for (size_t i = 0; i < a->n_tunnels && rc == 0; i++)
    rc = open_tunnel(a, i, &opts->tunnels[i]);
  if (rc != 0) {
    snprintf(err, errlen, "cannot set up the tunnels: %s", sj_strerror(rc));
    a->done = 1;
    sj_xagent_close(a, NULL);
    return rc;
  }
  *out = a;
  connect_now(a);
  return 0;
}

void sj_xagent_close(sj_xagent_t *a, sj_xagent_close_cb cb) {
  if (a->closing)
    return;
  a->closing = 1;
  a->close_cb = cb;
  if (a->conn != NULL) {
    sj__xconn_end(a->conn);
    a->conn = NULL;
  }
  close_tunnels(a);
  uv_timer_stop(&a->retry);
  sj__xagent_unref(a);
}
