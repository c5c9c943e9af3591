/* The relay server: listening, admission, graceful stop, close, stats. */
#include "server_int.h"

#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Chunks kept for reuse: enough for a busy relay to run without malloc,
 * few enough that an idle one gives its memory back. */
#define FREE_CHUNKS 64

void sj_relay_options_init(sj_relay_options_t *o) {
  memset(o, 0, sizeof *o);
  o->register_timeout_s = 3;
  o->idle_timeout_s = 30;
  o->stall_timeout_s = 60;
  o->max_message = SJ_RELAY_DEFAULT_MAX_MESSAGE;
  o->buffer_size = SJ_DEFAULT_BUFFER;
  o->keepalive = SJ_KEEPALIVE_DEFAULTS;
}

/* ---- logging ---------------------------------------------------------- */

int sj__relay_logs(const sj_relay_server_t *srv, sj_log_level_t level) {
  return srv->opts.log_cb != NULL && (level != SJ_LOG_INFO || srv->opts.verbose);
}

void sj__relay_log(sj_relay_server_t *srv, sj_log_level_t level, const char *fmt, ...) {
  if (!sj__relay_logs(srv, level))
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  srv->opts.log_cb(srv, level, msg, srv->opts.data);
}

/* ---- the work lists --------------------------------------------------- */

static relay_client_t *pop(sj_link_t *list, size_t offset) {
  sj_link_t *l = list->next;
  sj_list_remove(l);
  return (relay_client_t *)((char *)l - offset);
}

/* Senders that may go on, then receivers with new output, until neither
 * is left (flushing wakes senders, and senders queue output). Each sender
 * handles at most one held read per turn, so this ends. */
void sj__relay_run(sj_relay_server_t *srv) {
  if (srv->running)
    return;
  srv->running = 1;
  while (!sj_list_empty(&srv->ready) || !sj_list_empty(&srv->dirty)) {
    while (!sj_list_empty(&srv->ready))
      sj__relay_client_resume(pop(&srv->ready, offsetof(relay_client_t, ready_link)));
    while (!sj_list_empty(&srv->dirty))
      sj__relay_out_flush(pop(&srv->dirty, offsetof(relay_client_t, dirty_link)));
  }
  srv->running = 0;
}

/* ---- lifetime --------------------------------------------------------- */

static void unref(sj_relay_server_t *srv) {
  if (--srv->refs > 0)
    return;
  sj_relay_server_cb cb = srv->close_cb;
  void *data = srv->opts.data;
  sj_pool_drain(&srv->pool);
  sj_relay_names_free(&srv->names);
  /* As with libuv's close callbacks, the pointer is only an identity now. */
  if (cb != NULL)
    cb(srv, data);
  free(srv);
}

/* A stop is done once the listener and every client have closed. */
static void check_done(sj_relay_server_t *srv) {
  if (!srv->stopping || srv->done || srv->closing || !srv->listener_closed ||
      !sj_list_empty(&srv->clients))
    return;
  srv->done = 1;
  uv_timer_stop(&srv->drain);
  if (srv->opts.on_done != NULL)
    srv->opts.on_done(srv, srv->opts.data);
}

void sj__relay_client_freed(sj_relay_server_t *srv) {
  check_done(srv);
  unref(srv);
}

static void on_listener_closed(void *data) {
  sj_relay_server_t *srv = data;
  srv->listener_closed = 1;
  check_done(srv);
  unref(srv);
}

static void close_listener(sj_relay_server_t *srv) {
  if (srv->listener == NULL)
    return;
  sj_listener_close(srv->listener, on_listener_closed, srv);
  srv->listener = NULL;
}

/* ---- admission -------------------------------------------------------- */

static void refuse(sj_relay_server_t *srv, sj_stream_t *s) {
  srv->stats.refused++;
  if (sj__relay_logs(srv, SJ_LOG_INFO)) {
    char addr[SJ_PEER_HOST_MAX + 16];
    sj_origin_text(&s->origin, addr, sizeof addr);
    sj__relay_log(srv, SJ_LOG_INFO, "%s: refused: %u clients already (--max-clients)", addr,
                  srv->opts.max_clients);
  }
  sj_stream_close(s, 0, NULL);
}

static void on_accept(sj_listener_t *l, int status, sj_stream_t *s, void *data) {
  sj_relay_server_t *srv = data;
  (void)l;
  if (status < 0) {
    /* Once per run of failures, so that a full descriptor table does not
     * flood the log; libuv sheds the connections it cannot take. */
    if (!srv->accept_error_logged)
      sj__relay_log(srv, SJ_LOG_ERROR, "accept failed: %s", sj_strerror(status));
    srv->accept_error_logged = 1;
    return;
  }
  srv->accept_error_logged = 0;
  if (srv->stopping || srv->closing)
    sj_stream_close(s, 1, NULL);
  else if (srv->opts.max_clients > 0 && srv->stats.active >= srv->opts.max_clients)
    refuse(srv, s);
  else
    sj__relay_client_start(srv, s);
}

int sj_relay_server_new(sj_relay_server_t **out, uv_loop_t *loop, const sj_side_spec_t *listen,
                        const sj_relay_options_t *opts) {
  if (listen->kind != SJ_SIDE_LISTEN)
    return UV_EINVAL;
  sj_relay_server_t *srv = calloc(1, sizeof *srv);
  if (srv == NULL)
    return UV_ENOMEM;
  srv->loop = loop;
  if (opts != NULL)
    srv->opts = *opts;
  else
    sj_relay_options_init(&srv->opts);
  srv->spec = *listen;
  sj_pool_init(&srv->pool, SJ_CHUNK_SIZE, FREE_CHUNKS);
  sj_relay_names_init(&srv->names);
  sj_list_init(&srv->clients);
  sj_list_init(&srv->ready);
  sj_list_init(&srv->dirty);
  int rc = sj_listener_open(loop, &srv->pool, &srv->spec, &srv->opts.keepalive, NULL, on_accept,
                            srv, &srv->listener);
  if (rc != 0) {
    free(srv);
    return rc;
  }
  uv_timer_init(loop, &srv->drain);
  srv->drain.data = srv;
  srv->refs = 2; /* the listener and the drain timer */
  *out = srv;
  return 0;
}

int sj_relay_server_address(const sj_relay_server_t *srv, char *buf, size_t len) {
  if (srv->listener == NULL)
    return SJ_ECLOSED;
  return sj_listener_address(srv->listener, buf, len);
}

/* ---- stopping and closing --------------------------------------------- */

static void close_all(sj_relay_server_t *srv) {
  for (sj_link_t *l = srv->clients.next; l != &srv->clients; l = l->next)
    sj__relay_client_close(sj_container_of(l, relay_client_t, link), SJ_LOG_INFO, NULL);
}

static void on_drain_timeout(uv_timer_t *t) {
  sj_relay_server_t *srv = t->data;
  sj__relay_log(srv, SJ_LOG_INFO, "stop: drain time is up; closing every connection");
  close_all(srv);
}

void sj_relay_server_stop(sj_relay_server_t *srv, unsigned drain_ms) {
  if (srv->stopping || srv->closing)
    return;
  srv->stopping = 1;
  close_listener(srv);
  for (sj_link_t *l = srv->clients.next; l != &srv->clients; l = l->next)
    sj__relay_client_finish(sj_container_of(l, relay_client_t, link), SJ_LOG_INFO, NULL);
  uv_timer_start(&srv->drain, on_drain_timeout, drain_ms, 0);
  sj__relay_run(srv);
  check_done(srv);
}

static void on_drain_closed(uv_handle_t *h) { unref(h->data); }

void sj_relay_server_close(sj_relay_server_t *srv, sj_relay_server_cb cb) {
  if (srv->closing)
    return;
  srv->closing = 1;
  srv->close_cb = cb;
  close_listener(srv);
  close_all(srv);
  uv_close((uv_handle_t *)&srv->drain, on_drain_closed);
}

/* ---- stats ------------------------------------------------------------ */

void sj_relay_server_stats(const sj_relay_server_t *srv, sj_relay_stats_t *out) {
  *out = srv->stats;
}

int sj_relay_stats_json(const sj_relay_stats_t *st, char *buf, size_t len) {
  sj_strbuf_t sb;
  sj_strbuf_init(&sb, buf, len);
  sj_strbuf_printf(&sb,
                   "{\"clients\":%llu,\"registered\":%llu,\"messages\":%llu,\"bytes\":%llu,"
                   "\"keepalives\":%llu,\"dropped\":%llu,\"refused\":%llu,\"clashes\":%llu,"
                   "\"malformed\":%llu,\"timeouts\":%llu,\"stalled\":%llu}",
                   (unsigned long long)st->clients, (unsigned long long)st->registered,
                   (unsigned long long)st->messages, (unsigned long long)st->bytes,
                   (unsigned long long)st->keepalives, (unsigned long long)st->dropped,
                   (unsigned long long)st->refused, (unsigned long long)st->clashes,
                   (unsigned long long)st->malformed, (unsigned long long)st->timeouts,
                   (unsigned long long)st->stalled);
  return (int)sb.len;
}
