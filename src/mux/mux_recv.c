/* The mux's input: frames parsed from the carrier and applied to the
 * session and its channels. Nothing here calls a user callback; what the
 * frames make due runs later from the loop. */
#include "mux_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int peer_parity(const sj_mux_t *m) { return m->opts.initiator ? 0 : 1; }

/* An id that was in use once: frames for it still in flight when it closed
 * are dropped. Any other unknown id is a protocol error. */
static int was_open(const sj_mux_t *m, uint32_t id) {
  if ((int)(id & 1) == peer_parity(m))
    return id <= m->last_peer_id;
  return id < m->next_id;
}

/* Ends the session for what the peer did; returns -1. */
__attribute__((format(printf, 2, 3))) static int protocol_error(sj_mux_t *m, const char *fmt, ...) {
  char why[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  sj__mux_end(m, UV_EPROTO, SJ_MUX_CODE_PROTOCOL, "%s", why);
  return -1;
}

/* The open channel a frame is for, or NULL when the frame is to be
 * dropped; *bad is set for a channel that never was. */
static sj_mux_channel_t *target(sj_mux_t *m, const sj_mux_event_t *ev, int *bad) {
  sj_mux_channel_t *ch = sj__mux_lookup(m, ev->id);
  *bad = ch == NULL && !was_open(m, ev->id);
  if (*bad)
    protocol_error(m, "peer sent a frame of type %d for channel %u, never opened", (int)ev->frame,
                   ev->id);
  return ch;
}

static int on_open(sj_mux_t *m, uint32_t id, uint32_t tag) {
  if ((int)(id & 1) != peer_parity(m))
    return protocol_error(m, "peer opened channel %u, an id of this side's", id);
  if (id <= m->last_peer_id)
    return protocol_error(m, "peer opened channel %u after %u", id, m->last_peer_id);
  m->last_peer_id = id;
  sj_mux_channel_t *ch = NULL;
  if (m->opts.on_accept != NULL && m->n_open < m->opts.max_channels)
    ch = sj__mux_channel_new(m, id);
  if (ch == NULL) {
    if (sj__mux_refuse(m, id) != 0)
      return protocol_error(m, "peer opens channels faster than they can be refused");
    return 0;
  }
  ch->tag = tag;
  sj__mux_insert(m, ch);
  ch->accept_pending = 1;
  sj__mux_schedule(ch);
  return 0;
}

static int on_data(sj_mux_t *m, const sj_mux_event_t *ev) {
  int bad;
  sj_mux_channel_t *ch = target(m, ev, &bad);
  if (ch == NULL)
    return bad ? -1 : 0;
  if (ch->fin_received)
    return protocol_error(m, "peer sent DATA on channel %u after its FIN", ev->id);
  if (ev->data_len > ch->rx_window)
    return protocol_error(m, "peer sent DATA beyond the window on channel %u", ev->id);
  ch->rx_window -= (uint32_t)ev->data_len;
  if (ch->err != 0)
    return 0; /* reset: nobody will read it */
  if (sj__mux_channel_push(ch, ev->data, ev->data_len) != 0) {
    sj__mux_end(m, UV_ENOMEM, SJ_MUX_CODE_NONE, "out of memory");
    return -1;
  }
  return 0;
}

static int on_window(sj_mux_t *m, const sj_mux_event_t *ev) {
  int bad;
  sj_mux_channel_t *ch = target(m, ev, &bad);
  if (ch == NULL)
    return bad ? -1 : 0;
  if (ev->value > SJ_MUX_WINDOW_MAX - ch->tx_credit)
    return protocol_error(m, "peer granted more than %u bytes on channel %u", SJ_MUX_WINDOW_MAX,
                          ev->id);
  ch->tx_credit += ev->value;
  sj__mux_want_send(ch);
  return 0;
}

static int on_fin(sj_mux_t *m, const sj_mux_event_t *ev) {
  int bad;
  sj_mux_channel_t *ch = target(m, ev, &bad);
  if (ch == NULL)
    return bad ? -1 : 0;
  if (ch->fin_received)
    return protocol_error(m, "peer sent a second FIN on channel %u", ev->id);
  ch->fin_received = 1;
  sj__mux_schedule(ch);
  return 0;
}

static int on_reset(sj_mux_t *m, const sj_mux_event_t *ev) {
  int bad;
  sj_mux_channel_t *ch = target(m, ev, &bad);
  if (ch == NULL)
    return bad ? -1 : 0;
  sj__mux_channel_fail(ch, ev->value == SJ_MUX_CODE_REFUSED ? UV_ECONNREFUSED : UV_ECONNRESET);
  return 0;
}

static void on_goaway(sj_mux_t *m, uint32_t code) {
  if (code == SJ_MUX_CODE_PROTOCOL)
    sj__mux_end(m, UV_EPROTO, -1, "peer ended the session: it saw a protocol error");
  else if (code == SJ_MUX_CODE_TIMEOUT)
    sj__mux_end(m, UV_ETIMEDOUT, -1, "peer ended the session: this side went silent");
  else
    sj__mux_end(m, UV_ECONNABORTED, -1, "peer ended the session");
}

static int on_frame(sj_mux_t *m, const sj_mux_event_t *ev) {
  switch (ev->frame) {
  case SJ_MUX_OPEN:
    return on_open(m, ev->id, ev->value);
  case SJ_MUX_WINDOW:
    return on_window(m, ev);
  case SJ_MUX_FIN:
    return on_fin(m, ev);
  case SJ_MUX_RESET:
    return on_reset(m, ev);
  case SJ_MUX_PING:
    memcpy(m->pong, ev->opaque, sizeof m->pong);
    m->pong_pending = 1;
    return 0;
  case SJ_MUX_GOAWAY:
    on_goaway(m, ev->value);
    return -1;
  default: /* PONG: it counts as a sign of life, nothing more */
    return 0;
  }
}

/* Applies every frame in buf; stops at the session's end. */
static void apply(sj_mux_t *m, const char *buf, size_t len) {
  while (len > 0 && !m->ended) {
    sj_mux_event_t ev;
    int64_t n = sj_mux_parse(&m->parser, buf, len, &ev);
    if (n < 0) {
      protocol_error(m, "peer sent a bad frame: %s", sj_mux_strerror((int)n));
      return;
    }
    buf += n;
    len -= (size_t)n;
    if (ev.type == SJ_MUX_DATA_PART)
      on_data(m, &ev);
    else if (ev.type == SJ_MUX_FRAME)
      on_frame(m, &ev);
  }
}

void sj__mux_on_carrier_read(sj_stream_t *s, int status, sj_chunk_t *chunk) {
  sj_mux_t *m = s->data;
  if (status < 0) {
    m->carrier_dead = 1;
    if (m->ended)
      sj__mux_close_carrier(m); /* no need to wait for the GOAWAY to go */
    else if (status == UV_EOF)
      sj__mux_end(m, UV_EOF, -1, "the carrier was closed by the peer");
    else
      sj__mux_end(m, status, -1, "the carrier failed: %s", sj_strerror(status));
    return;
  }
  if (chunk == NULL)
    return;
  if (!m->ended) {
    m->last_rx_ms = uv_now(m->loop);
    apply(m, chunk->data + chunk->off, sj_chunk_remaining(chunk));
  }
  sj_pool_put(s->pool, chunk);
  sj__mux_kick(m);
}
