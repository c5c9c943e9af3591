/* The mux's output: frames gathered into one buffer while the other is
 * being written to the carrier; channels take turns. */
#include "mux_int.h"

#include <string.h>

static size_t room(const sj_mux_t *m) { return SJ_MUX_OUT_CAP - m->out_len; }
static uint8_t *tail(sj_mux_t *m) { return (uint8_t *)m->out + m->out_len; }

static int sendable(const sj_mux_channel_t *ch) {
  if (ch->reset_pending)
    return 1;
  if (ch->send_over)
    return 0;
  return ch->open_pending || ch->window_pending ||
         (ch->writing && ch->woff < ch->wlen && ch->tx_credit > 0) ||
         (ch->fin_pending && !ch->writing);
}

void sj__mux_want_send(sj_mux_channel_t *ch) {
  if (!ch->m->ended && sendable(ch) && !sj_list_linked(&ch->send_link))
    sj_list_push(&ch->m->sendq, &ch->send_link);
}

void sj__mux_unwant_send(sj_mux_channel_t *ch) {
  if (!sendable(ch))
    sj_list_remove(&ch->send_link);
}

int sj__mux_refuse(sj_mux_t *m, uint32_t id) {
  if (m->n_refused == SJ_MUX_REFUSE_MAX)
    return UV_ENOBUFS;
  m->refused[m->n_refused++] = id;
  return 0;
}

/* One DATA frame of as much of buf as credit, turn and room allow. */
static size_t put_data(sj_mux_t *m, sj_mux_channel_t *ch, const char *buf, size_t len) {
  size_t n = len;
  if (n > ch->tx_credit)
    n = ch->tx_credit;
  if (n > SJ_MUX_DATA_CHUNK)
    n = SJ_MUX_DATA_CHUNK;
  if (n > room(m) - SJ_MUX_HEADER_LEN)
    n = room(m) - SJ_MUX_HEADER_LEN;
  m->out_len += sj_mux_put_header(tail(m), SJ_MUX_DATA, ch->id, (uint32_t)n);
  memcpy(tail(m), buf, n);
  m->out_len += n;
  ch->tx_credit -= (uint32_t)n;
  ch->sent_any = 1;
  return n;
}

static void put_fin(sj_mux_t *m, sj_mux_channel_t *ch) {
  m->out_len += sj_mux_put_header(tail(m), SJ_MUX_FIN, ch->id, 0);
  ch->fin_pending = 0;
  ch->fin_sent = 1;
  ch->sent_any = 1;
  if (ch->shut_waiting) {
    ch->shut_waiting = 0;
    ch->shut_done = 1;
    ch->sstatus = 0;
    sj__mux_schedule(ch);
  }
}

/* The channel's write is all in the output: its callback is due. */
static void write_out(sj_mux_channel_t *ch) {
  ch->writing = 0;
  ch->write_done = 1;
  ch->wstatus = 0;
  sj__mux_schedule(ch);
}

/* One turn: the channel's control frames, then at most one DATA frame, then
 * its FIN. Returns 1 if it still has something to send. */
static int take_turn(sj_mux_t *m, sj_mux_channel_t *ch) {
  if (ch->reset_pending) {
    if (room(m) < SJ_MUX_CONTROL_MAX)
      return 1;
    m->out_len += sj_mux_put_u32(tail(m), SJ_MUX_RESET, ch->id, ch->reset_code);
    ch->reset_pending = 0;
    ch->send_over = 1;
    return 0;
  }
  if (room(m) < 2 * SJ_MUX_CONTROL_MAX)
    return 1;
  if (ch->open_pending) {
    m->out_len += sj_mux_put_u32(tail(m), SJ_MUX_OPEN, ch->id, ch->tag);
    ch->open_pending = 0;
  }
  if (ch->window_pending) {
    m->out_len += sj_mux_put_u32(tail(m), SJ_MUX_WINDOW, ch->id, ch->rx_consumed);
    ch->rx_window += ch->rx_consumed;
    ch->rx_consumed = 0;
    ch->window_pending = 0;
  }
  if (ch->writing && ch->woff < ch->wlen && ch->tx_credit > 0) {
    if (room(m) <= SJ_MUX_HEADER_LEN)
      return 1;
    ch->woff += put_data(m, ch, ch->wbuf + ch->woff, ch->wlen - ch->woff);
    if (ch->woff < ch->wlen)
      return ch->tx_credit > 0;
    write_out(ch);
  }
  if (ch->fin_pending && !ch->writing) {
    if (room(m) < SJ_MUX_HEADER_LEN)
      return 1;
    put_fin(m, ch);
  }
  return 0;
}

static void put_session_frames(sj_mux_t *m) {
  if (m->pong_pending && room(m) >= SJ_MUX_CONTROL_MAX) {
    m->out_len += sj_mux_put_ping(tail(m), SJ_MUX_PONG, m->pong);
    m->pong_pending = 0;
  }
  if (m->ping_pending && room(m) >= SJ_MUX_CONTROL_MAX) {
    uint8_t opaque[8];
    uint64_t n = ++m->pings;
    for (int i = 7; i >= 0; i--, n >>= 8)
      opaque[i] = (uint8_t)n;
    m->out_len += sj_mux_put_ping(tail(m), SJ_MUX_PING, opaque);
    m->ping_pending = 0;
  }
  while (m->n_refused > 0 && room(m) >= SJ_MUX_CONTROL_MAX)
    m->out_len +=
        sj_mux_put_u32(tail(m), SJ_MUX_RESET, m->refused[--m->n_refused], SJ_MUX_CODE_REFUSED);
}

/* Puts a channel back at the head of the turn order: one that could not
 * take its turn for lack of room keeps its place, so that OPENs go out in
 * the order of their ids (the peer insists). */
static void push_front(sj_link_t *head, sj_link_t *n) {
  n->next = head->next;
  n->prev = head;
  head->next->prev = n;
  head->next = n;
}

/* Gathers what is due into the output buffer, as far as it has room. */
static void fill(sj_mux_t *m) {
  if (m->carrier_dead)
    return;
  if (m->goaway_due) {
    /* The buffer has room for this past SJ_MUX_OUT_CAP. */
    m->out_len += sj_mux_put_u32(tail(m), SJ_MUX_GOAWAY, 0, m->goaway_code);
    m->goaway_due = 0;
    m->carrier_dead = 1;
    return;
  }
  if (m->ended)
    return;
  put_session_frames(m);
  while (!sj_list_empty(&m->sendq)) {
    sj_mux_channel_t *ch = sj_container_of(m->sendq.next, sj_mux_channel_t, send_link);
    size_t before = m->out_len;
    sj_list_remove(&ch->send_link);
    int more = take_turn(m, ch);
    if (m->out_len == before) {
      if (sendable(ch)) {
        push_front(&m->sendq, &ch->send_link);
        break; /* no room for the next turn */
      }
      more = 0; /* nothing left to send, and never will be: out of the queue */
    }
    if (more)
      sj_list_push(&m->sendq, &ch->send_link);
    else
      sj__mux_channel_maybe_free(ch); /* a closed channel with its last frame out */
  }
}

static void on_carrier_write(sj_stream_t *s, int status, void *arg) {
  sj_mux_t *m = arg;
  (void)s;
  m->writing = 0;
  if (m->carrier_closing)
    return;
  if (status < 0) {
    m->carrier_dead = 1;
    sj__mux_end(m, status, -1, "carrier write failed: %s", sj_strerror(status));
    return;
  }
  sj__mux_kick(m);
}

/* Writes the output: at once as far as the carrier takes it, the rest as
 * the one write in flight (and the other buffer starts filling). */
static void flush(sj_mux_t *m) {
  while (!m->writing && m->out_len > 0 && !m->carrier_closing) {
    int n = sj_stream_try_write(m->carrier, m->out, m->out_len);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
      n = 0;
    if (n < 0) {
      m->carrier_dead = 1;
      sj__mux_end(m, n, -1, "carrier write failed: %s", sj_strerror(n));
      return;
    }
    if ((size_t)n == m->out_len) {
      m->out_len = 0;
      fill(m);
      continue;
    }
    char *full = m->out;
    size_t len = m->out_len;
    m->out = m->wire;
    m->wire = full;
    m->out_len = 0;
    int rc = sj_stream_write(m->carrier, full + n, len - (size_t)n, on_carrier_write, m);
    if (rc != 0) {
      m->carrier_dead = 1;
      sj__mux_end(m, rc, -1, "carrier write failed: %s", sj_strerror(rc));
      return;
    }
    m->writing = 1;
    fill(m);
  }
  /* An ended session closes its carrier once its GOAWAY is out. */
  if (m->ended && m->carrier_dead && !m->writing && m->out_len == 0)
    sj__mux_close_carrier(m);
}

void sj__mux_kick(sj_mux_t *m) {
  fill(m);
  flush(m);
}

size_t sj__mux_send_now(sj_mux_channel_t *ch, const char *buf, size_t len) {
  sj_mux_t *m = ch->m;
  /* Channels waiting for a turn go first. */
  if (m->ended || m->carrier_dead || !sj_list_empty(&m->sendq))
    return 0;
  size_t n = 0;
  while (n < len && ch->tx_credit > 0 && room(m) > SJ_MUX_HEADER_LEN)
    n += put_data(m, ch, buf + n, len - n);
  if (n > 0)
    flush(m);
  return n;
}
