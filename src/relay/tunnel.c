/* The relay tunnel (tunnel.h): a connector whose far side is mux channels,
 * the mux over a relay client stream, and the retries that bring the link
 * back. */
#include "tunnel.h"
#include "client.h"
#include "connector_ext.h"
#include "mux.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sj_tunnel {
  uv_loop_t *loop;
  sj_tunnel_options_t o;
  char name[SJ_RELAY_NAME_MAX + 1], peer[SJ_RELAY_NAME_MAX + 1];
  char relay_text[SJ_HOST_MAX + 16];
  sj_pool_t pool; /* the link's and the channels' chunks */
  sj_connector_t *c;
  sj_stream_t *carrier; /* the relay link, until the mux takes it */
  sj_stream_t *link;    /* the relay link the running mux is on   */
  sj_mux_t *mux;        /* while the tunnel is up                 */
  uv_timer_t retry;
  unsigned backoff_ms;
  int down_logged; /* the link's failure was told; the mux's end need not be */
  int stopping, closing;
};

void sj_tunnel_options_init(sj_tunnel_options_t *o) {
  memset(o, 0, sizeof *o);
  o->max_message = SJ_RELAY_DEFAULT_MAX_MESSAGE;
  o->keepalive_ms = 10000;
  o->ping_ms = 5000;
  o->idle_timeout_ms = 20000;
  o->retry_min_ms = 250;
  o->retry_max_ms = 10000;
  o->max_channels = 1024;
  o->buffer_size = SJ_DEFAULT_BUFFER;
  o->connect_timeout_s = 10;
}

__attribute__((format(printf, 3, 4))) static void tlog(sj_tunnel_t *t, sj_log_level_t level,
                                                       const char *fmt, ...) {
  if (t->o.log_cb == NULL || (level == SJ_LOG_INFO && !t->o.verbose))
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->o.log_cb(level, msg, t->o.data);
}

/* ---- the link ---------------------------------------------------------------- */

static void start_link(sj_tunnel_t *t);

static void on_retry(uv_timer_t *h) { start_link(h->data); }

static void retry_later(sj_tunnel_t *t) {
  if (t->stopping || t->closing)
    return;
  tlog(t, SJ_LOG_INFO, "trying the relay again in %u ms", t->backoff_ms);
  uv_timer_start(&t->retry, on_retry, t->backoff_ms, 0);
  t->backoff_ms = t->backoff_ms > t->o.retry_max_ms / 2 ? t->o.retry_max_ms : t->backoff_ms * 2;
}

static void on_mux_end(sj_mux_t *m, int status, const char *why, void *data) {
  sj_tunnel_t *t = data;
  (void)status;
  if (!t->down_logged)
    tlog(t, SJ_LOG_ERROR, "tunnel down: %s", why);
  t->down_logged = 0;
  sj_mux_close(m);
  t->mux = NULL;
  t->link = NULL; /* the ended mux still owns it, until its GOAWAY is out */
  retry_later(t);
}

/* The far end opened a channel: the connector dials the local service for
 * it (and refuses it if that fails). */
static void on_channel(sj_mux_t *m, sj_stream_t *ch, void *data) {
  sj_tunnel_t *t = data;
  (void)m;
  sj__connector_add_stream(t->c, SJ_A, ch);
}

static void link_up(sj_tunnel_t *t, sj_stream_t *s) {
  sj_mux_options_t mo;
  sj_mux_options_init(&mo);
  mo.initiator = t->o.listen; /* only the listening end opens channels */
  mo.max_channels = t->o.max_channels;
  mo.ping_ms = t->o.ping_ms;
  mo.idle_timeout_ms = t->o.idle_timeout_ms;
  mo.on_accept = t->o.listen ? NULL : on_channel;
  mo.on_end = on_mux_end;
  mo.data = t;
  t->carrier = NULL;
  int rc = sj_mux_new(s, &mo, &t->mux);
  if (rc != 0) {
    tlog(t, SJ_LOG_ERROR, "cannot start the tunnel: %s", sj_strerror(rc));
    sj_stream_close(s, 1, NULL);
    retry_later(t);
    return;
  }
  t->link = s;
  t->backoff_ms = t->o.retry_min_ms;
  tlog(t, SJ_LOG_INFO, "tunnel up: %s <-> %s through the relay at %s", t->name, t->peer,
       t->relay_text);
}

static void on_link(sj_stream_t *s, int status, const char *why, void *data) {
  sj_tunnel_t *t = data;
  if (status == 0) {
    link_up(t, s);
    return;
  }
  if (s == t->link) { /* under the running session: the mux ends next */
    tlog(t, SJ_LOG_ERROR, "tunnel down: %s", why);
    t->down_logged = 1;
    return;
  }
  /* The link of a session that already ended, failing while its mux
   * lingers to send a GOAWAY: that mux closes it, and the tunnel has moved
   * on (a new attempt, or a new session, which this must not touch). */
  if (s != t->carrier)
    return;
  tlog(t, SJ_LOG_ERROR, "relay link: %s", why);
  t->carrier = NULL;
  sj_stream_close(s, 0, NULL);
  retry_later(t);
}

static void on_link_note(const char *msg, void *data) { tlog(data, SJ_LOG_INFO, "%s", msg); }

static void start_link(sj_tunnel_t *t) {
  if (t->stopping || t->closing)
    return;
  sj_relay_client_options_t co;
  sj_relay_client_options_init(&co);
  co.name = t->name;
  co.peer = t->peer;
  co.role = t->o.listen ? 'L' : 'C';
  co.max_message = t->o.max_message;
  co.keepalive_ms = t->o.keepalive_ms;
  co.connect_timeout_s = t->o.connect_timeout_s;
  co.note = on_link_note;
  co.note_data = t;
  tlog(t, SJ_LOG_INFO, "connecting to the relay at %s as %s, for %s", t->relay_text, t->name,
       t->peer);
  int rc = sj_relay_client_new(t->loop, &t->pool, &t->o.relay, &co, on_link, t, &t->carrier);
  if (rc != 0) {
    tlog(t, SJ_LOG_ERROR, "relay link: %s", sj_strerror(rc));
    retry_later(t);
  }
}

/* ---- the connector ------------------------------------------------------------ */

/* The listening end's far side: a new channel per local connection, or a
 * refusal (the connection is closed at once) while the tunnel is down. */
static int open_channel(void *data, sj_stream_t **out) {
  sj_tunnel_t *t = data;
  if (t->mux == NULL)
    return UV_ENOTCONN;
  return sj_mux_open(t->mux, out);
}

static void on_connector_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  sj_tunnel_t *t = data;
  (void)c;
  if (t->o.log_cb != NULL)
    t->o.log_cb(level, msg, t->o.data);
}

static void on_pair_closed(sj_connector_t *c, const sj_pair_info_t *info, void *data) {
  sj_tunnel_t *t = data;
  (void)c;
  if (info->status == UV_ECONNREFUSED && t->o.listen)
    tlog(t, SJ_LOG_ERROR,
         strchr(info->a.host, ':') ? "connection from [%s]:%d refused by the far end (it could not "
                                     "connect to its service)"
                                   : "connection from %s:%d refused by the far end (it could not "
                                     "connect to its service)",
         info->a.host, info->a.port);
}

static void on_connector_done(sj_connector_t *c, int status, void *data) {
  (void)c;
  (void)status;
  sj_tunnel_close(data);
}

static int start_connector(sj_tunnel_t *t) {
  sj_options_t co;
  sj_options_init(&co);
  co.verbose = t->o.verbose;
  co.buffer_size = t->o.buffer_size;
  co.connect_timeout_s = t->o.connect_timeout_s;
  co.log_cb = on_connector_log;
  co.on_pair_closed = on_pair_closed;
  co.on_done = on_connector_done;
  co.data = t;
  sj_side_spec_t open = {.kind = SJ__SIDE_OPEN}, fed = {.kind = SJ__SIDE_FED};
  if (!t->o.listen)
    return sj_connector_new(&t->c, t->loop, &fed, &t->o.local, &co, NULL);
  int rc = sj_connector_new(&t->c, t->loop, &t->o.local, &open, &co, NULL);
  if (rc == 0)
    sj__connector_set_open(t->c, SJ_B, open_channel, t);
  return rc;
}

/* ---- lifetime ------------------------------------------------------------------ */

static int check_options(const sj_tunnel_options_t *o) {
  if (o->name == NULL || o->peer == NULL || sj_relay_name_problem(o->name) != NULL ||
      sj_relay_name_problem(o->peer) != NULL || strcmp(o->name, o->peer) == 0)
    return UV_EINVAL;
  if (o->relay.kind != SJ_SIDE_CONNECT ||
      o->local.kind != (o->listen ? SJ_SIDE_LISTEN : SJ_SIDE_CONNECT))
    return UV_EINVAL;
  if (o->max_message <= 64 || o->retry_min_ms == 0 || o->retry_max_ms < o->retry_min_ms)
    return UV_EINVAL;
  return 0;
}

int sj_tunnel_new(uv_loop_t *loop, const sj_tunnel_options_t *o, sj_tunnel_t **out) {
  int rc = check_options(o);
  if (rc != 0)
    return rc;
  sj_tunnel_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return UV_ENOMEM;
  t->loop = loop;
  t->o = *o;
  snprintf(t->name, sizeof t->name, "%s", o->name);
  snprintf(t->peer, sizeof t->peer, "%s", o->peer);
  t->o.name = t->name;
  t->o.peer = t->peer;
  snprintf(t->relay_text, sizeof t->relay_text, strchr(o->relay.host, ':') ? "[%s]:%d" : "%s:%d",
           o->relay.host, o->relay.port);
  t->backoff_ms = o->retry_min_ms;
  sj_pool_init(&t->pool, SJ_CHUNK_SIZE, 8);
  if ((rc = start_connector(t)) != 0) {
    free(t);
    return rc;
  }
  uv_timer_init(loop, &t->retry);
  t->retry.data = t;
  start_link(t);
  *out = t;
  return 0;
}

int sj_tunnel_address(const sj_tunnel_t *t, char *buf, size_t len) {
  if (!t->o.listen)
    return UV_EINVAL;
  return sj_connector_address(t->c, SJ_A, buf, len);
}

void sj_tunnel_stop(sj_tunnel_t *t, unsigned drain_ms) {
  if (t->stopping || t->closing)
    return;
  t->stopping = 1;
  uv_timer_stop(&t->retry);
  sj_connector_stop(t->c, drain_ms); /* its end closes the rest */
}

void sj_tunnel_close(sj_tunnel_t *t) {
  if (t->closing)
    return;
  t->closing = 1;
  uv_close((uv_handle_t *)&t->retry, NULL);
  if (t->mux != NULL)
    sj_mux_close(t->mux); /* the far end is told with a GOAWAY */
  t->mux = NULL;
  t->link = NULL;
  if (t->carrier != NULL)
    sj_stream_close(t->carrier, 0, NULL);
  t->carrier = NULL;
  sj_connector_close(t->c, NULL);
  if (t->o.on_closing != NULL)
    t->o.on_closing(t->o.data);
}

void sj_tunnel_free(sj_tunnel_t *t) {
  sj_pool_drain(&t->pool);
  free(t);
}
