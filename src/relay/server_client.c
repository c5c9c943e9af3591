/* One client's life: admission, its deadlines, and its two ways to end
 * (finish: stop reading, deliver what is queued, close; close: at once). */
#include "server_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_timer(uv_timer_t *t);

static uint64_t ms(double seconds) {
  double v = seconds * 1000.0 + 0.5;
  return v < 1 ? 1 : (uint64_t)v;
}

/* Names may hold any byte but '|': unprintable ones are shown as '.'. */
static void printable(char *out, const char *in, size_t len) {
  for (size_t i = 0; i < len; i++)
    out[i] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '.';
  out[len] = '\0';
}

void sj__relay_client_label(const relay_client_t *c, char *buf, size_t len) {
  char addr[SJ_PEER_HOST_MAX + 16];
  sj_origin_text(&c->stream->origin, addr, sizeof addr);
  if (c->name.len == 0) {
    snprintf(buf, len, "%s", addr);
    return;
  }
  char name[SJ_RELAY_NAME_MAX + 1];
  printable(name, c->name.text, c->name.len);
  snprintf(buf, len, "'%s' (%s)", name, addr);
}

static void vlog(const relay_client_t *c, sj_log_level_t level, const char *fmt, va_list ap) {
  if (fmt == NULL || !sj__relay_logs(c->srv, level))
    return;
  char label[SJ_RELAY_NAME_MAX + SJ_PEER_HOST_MAX + 32], why[512];
  sj__relay_client_label(c, label, sizeof label);
  vsnprintf(why, sizeof why, fmt, ap);
  sj__relay_log(c->srv, level, "%s: %s", label, why);
}

/* ---- deadlines -------------------------------------------------------- */

/* Input is expected only while the client is read: a blocked sender is not
 * idle, it is held back. Output pending without progress is a stall. */
static uint64_t next_deadline(const relay_client_t *c) {
  const sj_relay_options_t *o = &c->srv->opts;
  uint64_t d = UINT64_MAX;
  if (c->draining || c->closing)
    d = UINT64_MAX;
  else if (!c->registered)
    d = c->since_ms + ms(o->register_timeout_s);
  else if (!c->blocked)
    d = c->last_in_ms + ms(o->idle_timeout_s);
  if (c->out_bytes > 0 && c->last_out_ms + ms(o->stall_timeout_s) < d)
    d = c->last_out_ms + ms(o->stall_timeout_s);
  return d;
}

/* Deadlines move later with every byte, so the timer is not restarted per
 * read: it fires, finds the deadline moved, and is set again. It is only
 * moved earlier when a nearer deadline appears. */
void sj__relay_client_arm(relay_client_t *c) {
  if (c->closing)
    return;
  uint64_t d = next_deadline(c), now = uv_now(c->srv->loop);
  if (d == UINT64_MAX)
    return;
  uint64_t in = d > now ? d - now : 0;
  if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= in)
    return;
  uv_timer_start(&c->timer, on_timer, in, 0);
}

static void on_timer(uv_timer_t *t) {
  relay_client_t *c = t->data;
  sj_relay_server_t *srv = c->srv;
  const sj_relay_options_t *o = &srv->opts;
  uint64_t now = uv_now(srv->loop);
  if (c->out_bytes > 0 && now >= c->last_out_ms + ms(o->stall_timeout_s)) {
    srv->stats.stalled++;
    sj__relay_client_close(c, SJ_LOG_INFO, "stalled: nothing written for %gs with %zu bytes queued",
                           o->stall_timeout_s, c->out_bytes);
  } else if (next_deadline(c) <= now) {
    srv->stats.timeouts++;
    if (!c->registered)
      sj__relay_client_close(c, SJ_LOG_INFO, "no registration within %gs", o->register_timeout_s);
    else
      sj__relay_client_close(c, SJ_LOG_INFO, "idle for %gs", o->idle_timeout_s);
  } else {
    sj__relay_client_arm(c);
  }
  sj__relay_run(srv);
}

/* ---- start ------------------------------------------------------------ */

void sj__relay_client_start(sj_relay_server_t *srv, sj_stream_t *s) {
  relay_client_t *c = calloc(1, sizeof *c);
  if (c == NULL) {
    sj__relay_log(srv, SJ_LOG_ERROR, "out of memory: connection refused");
    sj_stream_close(s, 1, NULL);
    return;
  }
  c->srv = srv;
  c->stream = s;
  s->data = c;
  s->on_read = sj__relay_on_read;
  sj_list_init(&c->dest_link);
  sj_list_init(&c->senders);
  sj_list_init(&c->ready_link);
  sj_list_init(&c->dirty_link);
  sj_list_push(&srv->clients, &c->link);
  sj_relay_parser_init(&c->parser, srv->opts.max_message);
  uv_timer_init(srv->loop, &c->timer);
  c->timer.data = c;
  c->handles = 2;
  srv->refs++;
  srv->stats.clients++;
  srv->stats.active++;
  c->since_ms = c->last_in_ms = uv_now(srv->loop);
  if (sj__relay_logs(srv, SJ_LOG_INFO)) {
    char addr[SJ_PEER_HOST_MAX + 16];
    sj_origin_text(&s->origin, addr, sizeof addr);
    sj__relay_log(srv, SJ_LOG_INFO, "%s: connected", addr);
  }
  int rc = sj_stream_read_start(s);
  if (rc != 0) {
    sj__relay_client_close(c, SJ_LOG_INFO, "cannot read: %s", sj_strerror(rc));
    return;
  }
  c->reading = 1;
  sj__relay_client_arm(c);
}

/* ---- leaving ---------------------------------------------------------- */

/* A receiver whose message was cut short cannot be framed any more: it is
 * no longer found by its name, and it ends (from the ready list, so that
 * ends do not recurse from client to client). */
static void cut(relay_client_t *d);

/* c stops being a sender: a message it had started to deliver is cut. */
static void leave_as_sender(relay_client_t *c) {
  relay_client_t *d = c->dest;
  if (d == NULL)
    return;
  int started = !c->header_pending && c->parser.remaining > 0;
  sj__relay_end_turn(c);
  c->srv->stats.dropped++;
  if (started && !c->srv->opts.deliver_raw && !c->srv->stopping)
    cut(d);
}

/* c stops being a receiver: senders to it drop their messages and go on. */
static void leave_as_receiver(relay_client_t *c) {
  sj__relay_wake_senders(c);
  while (!sj_list_empty(&c->senders)) {
    relay_client_t *s = sj_container_of(c->senders.next, relay_client_t, dest_link);
    sj__relay_end_turn(s);
    c->srv->stats.dropped++;
  }
}

static void unregister(relay_client_t *c) {
  if (!c->registered)
    return;
  sj_relay_names_remove(&c->srv->names, &c->name);
  c->registered = 0;
}

static void cut(relay_client_t *d) {
  if (d->cut || d->draining || d->closing)
    return;
  d->cut = 1;
  unregister(d);
  leave_as_receiver(d);
  if (!sj_list_linked(&d->ready_link))
    sj_list_push(&d->srv->ready, &d->ready_link);
}

static void stop_reading(relay_client_t *c) {
  if (c->reading)
    sj_stream_read_stop(c->stream);
  c->reading = 0;
  c->blocked = 0;
  if (c->parked != NULL)
    sj_pool_put(&c->srv->pool, c->parked);
  c->parked = NULL;
}

/* Everything that ties c to the others goes: its name, its message, the
 * senders waiting on it, its place in the server's lists. */
static void leave(relay_client_t *c) {
  unregister(c);
  leave_as_sender(c);
  leave_as_receiver(c);
  stop_reading(c);
  sj_list_remove(&c->ready_link);
}

/* ---- ending ----------------------------------------------------------- */

static void on_handle_closed(relay_client_t *c) {
  if (--c->handles > 0)
    return;
  sj_relay_server_t *srv = c->srv;
  sj_list_remove(&c->link);
  free(c);
  sj__relay_client_freed(srv);
}

static void on_timer_closed(uv_handle_t *h) { on_handle_closed(h->data); }

static void on_stream_closed(sj_stream_t *s) {
  relay_client_t *c = s->data;
  sj__relay_out_discard(c); /* a write in flight was cancelled before this */
  on_handle_closed(c);
}

void sj__relay_client_close(relay_client_t *c, sj_log_level_t level, const char *fmt, ...) {
  if (c->closing)
    return;
  va_list ap;
  va_start(ap, fmt);
  vlog(c, level, fmt, ap);
  va_end(ap);
  leave(c);
  c->closing = 1;
  c->srv->stats.active--;
  sj_list_remove(&c->dirty_link);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  sj_stream_close(c->stream, 0, on_stream_closed);
}

void sj__relay_client_finish(relay_client_t *c, sj_log_level_t level, const char *fmt, ...) {
  if (c->closing || c->draining)
    return;
  va_list ap;
  va_start(ap, fmt);
  vlog(c, level, fmt, ap);
  va_end(ap);
  leave(c);
  c->draining = 1;
  if (c->out_head == NULL)
    sj__relay_client_close(c, level, NULL);
  else if (!c->writing)
    sj__relay_out_flush(c);
}

void sj__relay_client_resume(relay_client_t *c) {
  if (c->closing || c->draining)
    return;
  if (c->cut) {
    sj__relay_client_finish(c, SJ_LOG_INFO, "a message to it was cut short by its sender; closing");
    return;
  }
  if (c->blocked)
    return;
  sj_chunk_t *parked = c->parked;
  c->parked = NULL;
  /* The idle clock was stopped while the client was held back. */
  c->last_in_ms = uv_now(c->srv->loop);
  sj__relay_input(c, parked);
  sj__relay_client_arm(c);
}
