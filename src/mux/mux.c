/* The mux session: its lifetime, the channel table, the heartbeat, and the
 * idle handle that runs every callback from the loop. */
#include "mux_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a session that has ended may take to get its GOAWAY out before
 * the carrier is closed regardless. */
#define SJ_MUX_LINGER_MS 2000

void sj_mux_options_init(sj_mux_options_t *o) {
  memset(o, 0, sizeof *o);
  o->max_channels = 1024;
  o->ping_ms = 10000;
  o->idle_timeout_ms = 30000;
}

/* ---- the channel table --------------------------------------------------- */

static sj_link_t *bucket(sj_mux_t *m, uint32_t id) { return &m->buckets[(id * 2654435761u) >> 24]; }

sj_mux_channel_t *sj__mux_lookup(sj_mux_t *m, uint32_t id) {
  sj_link_t *head = bucket(m, id);
  for (sj_link_t *l = head->next; l != head; l = l->next) {
    sj_mux_channel_t *ch = sj_container_of(l, sj_mux_channel_t, by_id);
    if (ch->id == id)
      return ch;
  }
  return NULL;
}

void sj__mux_insert(sj_mux_t *m, sj_mux_channel_t *ch) {
  sj_list_push(bucket(m, ch->id), &ch->by_id);
  ch->in_table = 1;
  m->n_open++;
}

void sj__mux_remove(sj_mux_channel_t *ch) {
  if (!ch->in_table)
    return;
  sj_list_remove(&ch->by_id);
  ch->in_table = 0;
  ch->m->n_open--;
}

/* ---- deferred callbacks -------------------------------------------------- */

static void on_idle(uv_idle_t *h) {
  sj_mux_t *m = h->data;
  while (!sj_list_empty(&m->workq)) {
    sj_mux_channel_t *ch = sj_container_of(m->workq.next, sj_mux_channel_t, work_link);
    sj_list_remove(&ch->work_link);
    sj__mux_channel_run(ch);
  }
  /* The session's end is reported after its channels have failed. */
  if (m->end_due && !m->user_closed) {
    m->end_due = 0;
    if (m->opts.on_end != NULL)
      m->opts.on_end(m, m->status, m->why, m->opts.data);
  }
  if (sj_list_empty(&m->workq) && !m->end_due)
    uv_idle_stop(&m->idle);
}

static void wake(sj_mux_t *m) {
  if (!uv_is_active((uv_handle_t *)&m->idle) && !uv_is_closing((uv_handle_t *)&m->idle))
    uv_idle_start(&m->idle, on_idle);
}

void sj__mux_schedule(sj_mux_channel_t *ch) {
  if (!sj_list_linked(&ch->work_link))
    sj_list_push(&ch->m->workq, &ch->work_link);
  wake(ch->m);
}

/* ---- lifetime ------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {
  sj_mux_t *m = h->data;
  if (--m->handles_open > 0)
    return;
  free(m->out);
  free(m->wire);
  free(m);
}

void sj__mux_maybe_free(sj_mux_t *m) {
  if (!m->user_closed || !m->carrier_closed || m->n_live > 0 || m->handles_open < 2 ||
      uv_is_closing((uv_handle_t *)&m->idle))
    return;
  uv_close((uv_handle_t *)&m->idle, on_handle_closed);
  uv_close((uv_handle_t *)&m->heartbeat, on_handle_closed);
}

static void on_carrier_closed(sj_stream_t *s) {
  sj_mux_t *m = s->data;
  m->carrier_closed = 1;
  sj__mux_maybe_free(m);
}

void sj__mux_close_carrier(sj_mux_t *m) {
  if (m->carrier_closing)
    return;
  m->carrier_closing = m->carrier_dead = 1;
  uv_timer_stop(&m->heartbeat);
  sj_stream_close(m->carrier, 0, on_carrier_closed);
}

static void on_linger(uv_timer_t *t) { sj__mux_close_carrier(t->data); }

/* Channels in the turn order that were closed are waiting only to send
 * their RESET or FIN, which will not happen now. */
static void drop_sendq(sj_mux_t *m) {
  while (!sj_list_empty(&m->sendq)) {
    sj_mux_channel_t *ch = sj_container_of(m->sendq.next, sj_mux_channel_t, send_link);
    sj_list_remove(&ch->send_link);
    sj__mux_channel_maybe_free(ch);
  }
}

static void fail_channels(sj_mux_t *m, int err) {
  for (int i = 0; i < SJ_MUX_BUCKETS; i++)
    for (sj_link_t *l = m->buckets[i].next; l != &m->buckets[i]; l = l->next)
      sj__mux_channel_fail(sj_container_of(l, sj_mux_channel_t, by_id), err);
}

void sj__mux_end(sj_mux_t *m, int status, int goaway_code, const char *fmt, ...) {
  if (m->ended)
    return;
  m->ended = 1;
  m->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->why, sizeof m->why, fmt, ap);
  va_end(ap);
  fail_channels(m, status == UV_ETIMEDOUT ? UV_ETIMEDOUT : UV_ECONNABORTED);
  drop_sendq(m);
  m->n_refused = 0;
  m->ping_pending = m->pong_pending = 0;
  m->end_due = !m->user_closed;
  wake(m);
  uv_timer_stop(&m->heartbeat);
  if (goaway_code < 0 || m->carrier_dead) {
    sj__mux_close_carrier(m);
    return;
  }
  /* A last GOAWAY, then the carrier closes once it is written (or at the
   * linger deadline, if the carrier does not take it). */
  m->goaway_due = 1;
  m->goaway_code = (uint32_t)goaway_code;
  uv_timer_start(&m->heartbeat, on_linger, SJ_MUX_LINGER_MS, 0);
  sj__mux_kick(m);
}

static void on_heartbeat(uv_timer_t *t) {
  sj_mux_t *m = t->data;
  uint64_t silent = uv_now(m->loop) - m->last_rx_ms;
  if (m->opts.idle_timeout_ms > 0 && silent >= m->opts.idle_timeout_ms) {
    sj__mux_end(m, UV_ETIMEDOUT, SJ_MUX_CODE_TIMEOUT, "no frame from the peer for %llu ms",
                (unsigned long long)silent);
    return;
  }
  if (m->opts.ping_ms > 0) {
    m->ping_pending = 1;
    sj__mux_kick(m);
  }
}

static unsigned heartbeat_period(const sj_mux_options_t *o) {
  if (o->ping_ms > 0)
    return o->ping_ms;
  return o->idle_timeout_ms > 4 ? o->idle_timeout_ms / 4 : o->idle_timeout_ms;
}

static sj_mux_t *alloc_mux(sj_stream_t *carrier, const sj_mux_options_t *opts) {
  sj_mux_t *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  /* Room past SJ_MUX_OUT_CAP is kept for the last GOAWAY. */
  m->out = malloc(SJ_MUX_OUT_CAP + SJ_MUX_CONTROL_MAX);
  m->wire = malloc(SJ_MUX_OUT_CAP + SJ_MUX_CONTROL_MAX);
  if (m->out == NULL || m->wire == NULL) {
    free(m->out);
    free(m->wire);
    free(m);
    return NULL;
  }
  m->carrier = carrier;
  m->loop = carrier->loop;
  m->pool = carrier->pool;
  m->opts = *opts;
  return m;
}

int sj_mux_new(sj_stream_t *carrier, const sj_mux_options_t *opts, sj_mux_t **out) {
  sj_mux_options_t defaults;
  if (opts == NULL) {
    sj_mux_options_init(&defaults);
    opts = &defaults;
  }
  sj_mux_t *m = alloc_mux(carrier, opts);
  if (m == NULL)
    return UV_ENOMEM;
  sj_mux_parser_init(&m->parser);
  for (int i = 0; i < SJ_MUX_BUCKETS; i++)
    sj_list_init(&m->buckets[i]);
  sj_list_init(&m->sendq);
  sj_list_init(&m->workq);
  m->next_id = opts->initiator ? 1 : 2;
  void *old_data = carrier->data;
  sj_read_cb old_read = carrier->on_read;
  carrier->data = m;
  carrier->on_read = sj__mux_on_carrier_read;
  int rc = sj_stream_read_start(carrier);
  if (rc != 0) {
    carrier->data = old_data;
    carrier->on_read = old_read;
    free(m->out);
    free(m->wire);
    free(m);
    return rc;
  }
  uv_idle_init(m->loop, &m->idle);
  uv_timer_init(m->loop, &m->heartbeat);
  m->idle.data = m->heartbeat.data = m;
  m->handles_open = 2;
  m->last_rx_ms = uv_now(m->loop);
  unsigned period = heartbeat_period(opts);
  if (period > 0)
    uv_timer_start(&m->heartbeat, on_heartbeat, period, period);
  *out = m;
  return 0;
}

void sj_mux_close(sj_mux_t *m) {
  if (m->user_closed)
    return;
  m->user_closed = 1;
  m->end_due = 0;
  sj__mux_end(m, UV_ECANCELED, SJ_MUX_CODE_NONE, "closed");
  sj__mux_maybe_free(m);
}

int sj_mux_open(sj_mux_t *m, sj_stream_t **out) { return sj_mux_open_tagged(m, 0, out); }

int sj_mux_open_tagged(sj_mux_t *m, uint32_t tag, sj_stream_t **out) {
  if (m->ended)
    return UV_ECONNABORTED;
  if (m->n_open >= m->opts.max_channels || m->next_id > UINT32_MAX - 2)
    return UV_EMFILE;
  sj_mux_channel_t *ch = sj__mux_channel_new(m, m->next_id);
  if (ch == NULL)
    return UV_ENOMEM;
  m->next_id += 2;
  ch->tag = tag;
  sj__mux_insert(m, ch);
  ch->open_pending = 1;
  sj__mux_want_send(ch);
  sj__mux_kick(m);
  *out = &ch->base;
  return 0;
}

unsigned sj_mux_channels(const sj_mux_t *m) { return m->n_open; }
