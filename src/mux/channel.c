/* A mux channel as a stream (stream.h): reads deliver what the peer sent,
 * writes become DATA frames, shutdown a FIN, close a RESET unless both
 * directions had ended. Every callback runs from the mux's idle handle. */
#include "mux_int.h"

#include <stdlib.h>
#include <string.h>

#define CH(s) ((sj_mux_channel_t *)(s))

static const sj_stream_ops_t channel_ops;

sj_mux_channel_t *sj__mux_channel_new(sj_mux_t *m, uint32_t id) {
  sj_mux_channel_t *ch = calloc(1, sizeof *ch);
  if (ch == NULL)
    return NULL;
  ch->base.ops = &channel_ops;
  ch->base.loop = m->loop;
  ch->base.pool = m->pool;
  sj_origin_from_label(&ch->base.origin, "mux");
  ch->m = m;
  ch->id = id;
  sj_list_init(&ch->by_id);
  sj_list_init(&ch->send_link);
  sj_list_init(&ch->work_link);
  ch->rx_window = ch->tx_credit = SJ_MUX_INITIAL_WINDOW;
  m->n_live++;
  return ch;
}

uint32_t sj_mux_channel_id(const sj_stream_t *s) {
  return s->ops == &channel_ops ? ((const sj_mux_channel_t *)s)->id : 0;
}

uint32_t sj_mux_channel_tag(const sj_stream_t *s) {
  return s->ops == &channel_ops ? ((const sj_mux_channel_t *)s)->tag : 0;
}

/* ---- receiving ----------------------------------------------------------- */

static void drop_rx(sj_mux_channel_t *ch) {
  while (ch->rx_head != NULL) {
    sj_chunk_t *c = ch->rx_head;
    ch->rx_head = c->next;
    sj_pool_put(ch->m->pool, c);
  }
  ch->rx_tail = NULL;
}

int sj__mux_channel_push(sj_mux_channel_t *ch, const char *data, size_t len) {
  sj_pool_t *pool = ch->m->pool;
  while (len > 0) {
    sj_chunk_t *c = ch->rx_tail;
    if (c == NULL || c->len == pool->size) {
      if ((c = sj_pool_get(pool)) == NULL)
        return UV_ENOMEM;
      c->next = NULL;
      c->off = c->len = 0;
      if (ch->rx_tail != NULL)
        ch->rx_tail->next = c;
      else
        ch->rx_head = c;
      ch->rx_tail = c;
    }
    size_t n = pool->size - c->len < len ? pool->size - c->len : len;
    memcpy(c->data + c->len, data, n);
    c->len += n;
    data += n;
    len -= n;
  }
  if (ch->reading)
    sj__mux_schedule(ch);
  return 0;
}

/* The reader took n bytes: once enough has been taken, the sender gets that
 * much credit back. */
static void taken(sj_mux_channel_t *ch, size_t n) {
  ch->rx_consumed += (uint32_t)n;
  if (ch->rx_consumed >= SJ_MUX_GRANT && !ch->fin_received && !ch->window_pending) {
    ch->window_pending = 1;
    sj__mux_want_send(ch);
    sj__mux_kick(ch->m);
  }
}

/* Hands the reader what has arrived, then EOF; an error at once, even to a
 * reader that has stopped, so that its owner learns of it. */
static void deliver(sj_mux_channel_t *ch) {
  while (!ch->closing && !ch->reads_ended && ch->base.on_read != NULL) {
    if (ch->err != 0) {
      ch->reads_ended = 1;
      ch->reading = 0;
      ch->base.on_read(&ch->base, ch->err, NULL);
      return;
    }
    if (!ch->reading)
      return;
    if (ch->rx_head != NULL) {
      sj_chunk_t *c = ch->rx_head;
      ch->rx_head = c->next;
      if (ch->rx_head == NULL)
        ch->rx_tail = NULL;
      c->next = NULL;
      taken(ch, sj_chunk_remaining(c));
      ch->base.on_read(&ch->base, 0, c);
      continue;
    }
    if (ch->fin_received) {
      ch->reads_ended = 1;
      ch->reading = 0;
      ch->base.on_read(&ch->base, UV_EOF, NULL);
    }
    return;
  }
}

/* ---- lifetime ------------------------------------------------------------ */

void sj__mux_channel_fail(sj_mux_channel_t *ch, int err) {
  if (ch->err != 0)
    return;
  ch->err = err;
  ch->send_over = 1;
  ch->reset_pending = ch->open_pending = ch->fin_pending = ch->window_pending = 0;
  sj_list_remove(&ch->send_link);
  if (ch->writing) {
    ch->writing = 0;
    ch->write_done = 1;
    ch->wstatus = err;
  }
  if (ch->shut_waiting) {
    ch->shut_waiting = 0;
    ch->shut_done = 1;
    ch->sstatus = err;
  }
  /* Like a TCP reset, the failure discards what was not yet read. */
  drop_rx(ch);
  sj__mux_schedule(ch);
}

void sj__mux_channel_maybe_free(sj_mux_channel_t *ch) {
  if (!ch->close_done || sj_list_linked(&ch->send_link))
    return;
  sj_mux_t *m = ch->m;
  sj_list_remove(&ch->work_link);
  drop_rx(ch);
  m->n_live--;
  free(ch);
  sj__mux_maybe_free(m);
}

static void ch_close(sj_stream_t *s, int reset, sj_stream_close_cb cb);

void sj__mux_channel_run(sj_mux_channel_t *ch) {
  sj_mux_t *m = ch->m;
  if (ch->accept_pending) {
    ch->accept_pending = 0;
    if (m->ended || m->user_closed)
      ch_close(&ch->base, 1, NULL); /* nobody took it */
    else
      m->opts.on_accept(m, &ch->base, m->opts.data);
  }
  if (ch->write_done) {
    ch->write_done = 0;
    ch->wcb(&ch->base, ch->wstatus, ch->warg);
  }
  if (ch->shut_done) {
    ch->shut_done = 0;
    ch->scb(&ch->base, ch->sstatus, ch->sarg);
  }
  deliver(ch);
  if (ch->closing && !ch->close_done && !ch->write_done && !ch->shut_done) {
    /* close_done is set only after the callback, so that nothing the
     * callback does can free the channel under it. */
    if (ch->ccb != NULL)
      ch->ccb(&ch->base);
    ch->close_done = 1;
    sj__mux_channel_maybe_free(ch);
  }
}

/* ---- the stream ---------------------------------------------------------- */

static int ch_read_start(sj_stream_t *s) {
  sj_mux_channel_t *ch = CH(s);
  ch->reading = 1;
  if (ch->rx_head != NULL || ch->fin_received || ch->err != 0)
    sj__mux_schedule(ch);
  return 0;
}

static int ch_read_stop(sj_stream_t *s) {
  CH(s)->reading = 0;
  return 0;
}

/* Why the channel cannot be written now, or 0. */
static int write_error(const sj_mux_channel_t *ch) {
  if (ch->err != 0)
    return ch->err;
  if (ch->closing || ch->fin_pending || ch->fin_sent)
    return UV_EPIPE;
  return 0;
}

static int ch_try_write(sj_stream_t *s, const char *buf, size_t len) {
  sj_mux_channel_t *ch = CH(s);
  int rc = write_error(ch);
  if (rc != 0)
    return rc;
  if (ch->writing || ch->write_done || len == 0)
    return UV_EAGAIN;
  size_t n = sj__mux_send_now(ch, buf, len);
  return n > 0 ? (int)n : UV_EAGAIN;
}

static int ch_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  sj_mux_channel_t *ch = CH(s);
  int rc = write_error(ch);
  if (rc != 0)
    return rc;
  if (ch->writing || ch->write_done)
    return UV_EBUSY;
  ch->wbuf = buf;
  ch->wlen = len;
  ch->woff = 0;
  ch->wcb = cb;
  ch->warg = arg;
  ch->writing = 1;
  if (len == 0) {
    ch->writing = 0;
    ch->write_done = 1;
    ch->wstatus = 0;
    sj__mux_schedule(ch);
    return 0;
  }
  sj__mux_want_send(ch);
  sj__mux_kick(ch->m);
  return 0;
}

static int ch_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  sj_mux_channel_t *ch = CH(s);
  int rc = write_error(ch);
  if (rc != 0)
    return rc;
  ch->fin_pending = 1;
  sj__mux_want_send(ch);
  sj__mux_kick(ch->m);
  if (!ch->writing)
    return SJ_DONE; /* the FIN is queued behind everything written */
  ch->scb = cb;
  ch->sarg = arg;
  ch->shut_waiting = 1;
  return 0;
}

/* What a close tells the peer: nothing if both directions ended cleanly
 * (the FIN may still be on its way out), else a RESET, unless the peer
 * never heard of the channel or has already let it go. A channel closed
 * without a reset before this side sent anything on it was not served (a
 * tunnel's connect failed): its RESET says it was refused. */
static void settle_peer(sj_mux_channel_t *ch, int reset, int cut_short) {
  ch->window_pending = 0;
  sj__mux_unwant_send(ch);
  if (ch->m->ended || ch->send_over)
    return;
  int clean = !reset && !cut_short && ch->fin_received && (ch->fin_sent || ch->fin_pending);
  if (clean)
    return;
  ch->fin_pending = 0;
  if (ch->open_pending) {
    ch->open_pending = 0;
    ch->send_over = 1;
    sj_list_remove(&ch->send_link);
    return;
  }
  ch->reset_pending = 1;
  if (!reset && !ch->sent_any)
    ch->reset_code = SJ_MUX_CODE_REFUSED;
  sj__mux_want_send(ch);
  sj__mux_kick(ch->m);
}

static void ch_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  sj_mux_channel_t *ch = CH(s);
  ch->ccb = cb;
  if (ch->closing)
    return;
  ch->closing = 1;
  ch->reading = 0;
  int cut_short = ch->writing || ch->shut_waiting;
  if (ch->writing) {
    ch->writing = 0;
    ch->write_done = 1;
    ch->wstatus = UV_ECANCELED;
  }
  if (ch->shut_waiting) {
    ch->shut_waiting = 0;
    ch->shut_done = 1;
    ch->sstatus = UV_ECANCELED;
  }
  drop_rx(ch);
  sj__mux_remove(ch);
  settle_peer(ch, reset, cut_short);
  sj__mux_schedule(ch);
}

void sj_mux_refuse(sj_stream_t *s, sj_stream_close_cb cb) {
  if (s->ops == &channel_ops)
    CH(s)->reset_code = SJ_MUX_CODE_REFUSED;
  sj_stream_close(s, 1, cb);
}

static size_t ch_unsent(const sj_stream_t *s) {
  const sj_mux_channel_t *ch = (const sj_mux_channel_t *)s;
  return ch->writing ? ch->wlen - ch->woff : 0;
}

static const sj_stream_ops_t channel_ops = {
    .read_start = ch_read_start,
    .read_stop = ch_read_stop,
    .try_write = ch_try_write,
    .write = ch_write,
    .shutdown = ch_shutdown,
    .close = ch_close,
    .unsent = ch_unsent,
};
