#include "pump.h"

#include <string.h>

/* How much one readiness event may splice before the loop moves on to other
 * sockets (fairness); input left over is reported again on the next turn. */
#define SJ_SPLICE_BUDGET (4 * 1024 * 1024)

static void flush(sj_pump_t *p);

static void fail(sj_pump_t *p, int err) {
  if (p->failed || p->closed)
    return;
  if (p->reading)
    sj_stream_read_stop(p->src);
  p->reading = p->polling = 0;
  p->failed = 1;
  p->ev->on_error(p, err);
}

/* Splicing needs two plain sockets, an empty queue (order), and nobody who
 * wants to see the bytes. It also waits until the source has filled a whole
 * chunk: for the few hundred bytes of a request or a reply, moving pages
 * through a pipe costs more in the kernel than copying them. */
static int can_splice(const sj_pump_t *p) {
  return p->splicer != NULL && !p->no_splice && p->bulk && p->dst != NULL && p->head == NULL &&
         !p->writing && p->ev->on_chunk == NULL && p->xf.fn == NULL &&
         sj_stream_fileno(p->src) >= 0 &&
         sj_stream_fileno(p->dst) >= 0;
}

/* Turns reading on or off; when on, in the mode the pump's state calls for. */
static void set_reading(sj_pump_t *p, int on) {
  if (p->src_eof || p->failed || p->closed)
    return;
  int poll = on && can_splice(p);
  if (p->reading == (unsigned)on && p->polling == (unsigned)poll)
    return;
  /* Changing mode needs no stop: starting one mode ends the other. */
  int rc;
  if (!on)
    rc = sj_stream_read_stop(p->src);
  else
    rc = poll ? sj_stream_poll_start(p->src) : sj_stream_read_start(p->src);
  if (rc != 0) {
    fail(p, rc);
    return;
  }
  p->reading = (unsigned)on;
  p->polling = (unsigned)poll;
}

/* Reading pauses at the mark and resumes below half of it; in between it
 * keeps its state, but its mode still follows the queue. */
static void update_reading(sj_pump_t *p) {
  if (p->queued >= p->hwm)
    set_reading(p, 0);
  else if (p->queued <= p->hwm / 2 || p->reading)
    set_reading(p, 1);
}

static void on_shutdown(sj_stream_t *s, int status, void *arg) {
  sj_pump_t *p = arg;
  (void)s;
  if (p->closed)
    return;
  if (status < 0) {
    fail(p, status);
    return;
  }
  p->ended = 1;
  p->ev->on_end(p);
}

/* Passes end of input on once everything read has been written. */
static void maybe_end(sj_pump_t *p) {
  if (!p->src_eof || p->dst == NULL || p->head != NULL || p->writing || p->shutting ||
      p->failed || p->closed)
    return;
  p->shutting = 1;
  /* Closing a plain socket whose input has ended sends the same FIN. A
   * layered stream (TLS, encrypt=) has its own end to say, so it always
   * gets its shutdown. */
  if (p->dst_closes && sj_stream_fileno(p->dst) >= 0) {
    on_shutdown(p->dst, 0, p);
    return;
  }
  int rc = sj_stream_shutdown(p->dst, on_shutdown, p);
  if (rc == SJ_DONE)
    on_shutdown(p->dst, 0, p);
  else if (rc != 0)
    fail(p, rc);
}

static void enqueue(sj_pump_t *p, sj_chunk_t *c) {
  p->queued += sj_chunk_remaining(c);
  if (p->tail != NULL)
    p->tail->next = c;
  else
    p->head = c;
  p->tail = c;
}

static void pop_head(sj_pump_t *p) {
  sj_chunk_t *c = p->head;
  p->head = c->next;
  if (p->head == NULL)
    p->tail = NULL;
  sj_pool_put(p->pool, c);
}

/* The head chunk's bytes [off, off+n) have reached dst. */
static void advance(sj_pump_t *p, size_t n) {
  p->head->off += n;
  p->queued -= n;
  p->bytes_written += n;
  if (sj_chunk_remaining(p->head) == 0)
    pop_head(p);
}

static void on_write(sj_stream_t *s, int status, void *arg) {
  sj_pump_t *p = arg;
  (void)s;
  p->writing = 0;
  if (p->closed) {
    pop_head(p); /* kept by sj_pump_close() while it was being written */
    return;
  }
  if (status < 0) {
    fail(p, status);
    return;
  }
  advance(p, sj_chunk_remaining(p->head));
  flush(p);
}

void sj_pump_dst_closes_at_end(sj_pump_t *p) { p->dst_closes = 1; }

/* Writes queued chunks: synchronously while the destination takes them, then
 * one asynchronous write for the rest of the head chunk. */
static void flush(sj_pump_t *p) {
  while (p->head != NULL && p->dst != NULL && !p->writing && !p->failed && !p->closed) {
    sj_chunk_t *c = p->head;
    if (c->off == 0 && p->ev->on_chunk != NULL) {
      p->ev->on_chunk(p, c->data, c->len);
      if (p->closed || p->failed)
        return; /* the callback closed the pair */
    }
    int n = sj_stream_try_write(p->dst, c->data + c->off, sj_chunk_remaining(c));
    if (n == UV_EAGAIN || n == UV_ENOSYS)
      n = 0;
    if (n < 0) {
      fail(p, n);
      return;
    }
    if ((size_t)n == sj_chunk_remaining(c)) {
      advance(p, (size_t)n);
      continue;
    }
    if (n > 0)
      advance(p, (size_t)n);
    int rc = sj_stream_write(p->dst, c->data + c->off, sj_chunk_remaining(c), on_write, p);
    if (rc != 0) {
      fail(p, rc);
      return;
    }
    p->writing = 1;
  }
  update_reading(p);
  maybe_end(p);
}

/* Moves what is stuck in the pipe into the queue, for the copy path. */
static int take_stuck(sj_pump_t *p, size_t stuck) {
  while (stuck > 0) {
    sj_chunk_t *c = sj_pool_get(p->pool);
    int n = c != NULL ? sj_splicer_take(p->splicer, c->data,
                                        stuck < p->pool->size ? stuck : p->pool->size)
                      : UV_ENOMEM;
    if (n <= 0) {
      if (c != NULL)
        sj_pool_put(p->pool, c);
      sj_splicer_discard(p->splicer);
      fail(p, n < 0 ? n : UV_EIO);
      return -1;
    }
    c->len = (size_t)n;
    enqueue(p, c);
    stuck -= (size_t)n;
  }
  return 0;
}

/* The source has input and the pump is on the zero-copy path. */
static void splice_step(sj_pump_t *p) {
  sj_splice_result_t r;
  /* Taking at most the mark at a time keeps what the destination refuses
   * (and so lands in the queue) within the mark. */
  int rc = sj_splice_move(p->splicer, sj_stream_fileno(p->src), sj_stream_fileno(p->dst),
                          p->hwm, SJ_SPLICE_BUDGET, &r);
  p->bytes_read += r.in;
  p->bytes_written += r.out;
  /* Input left in the socket (the budget ran out, the destination was full,
   * or splicing gave way to copying) is asked for again: an edge-triggered
   * source would not say so a second time. */
  if (!r.dry && !r.eof)
    sj_stream_input_pending(p->src);
  if (rc < 0 && r.in == 0 &&
      (p->splicer->rd < 0 || rc == UV_EINVAL || rc == UV_ENOSYS || rc == UV_EPERM)) {
    /* No pipe to be had (out of descriptors), or splice refused for these
     * sockets: copy instead. */
    p->no_splice = 1;
    set_reading(p, 1);
    return;
  }
  if (rc < 0) {
    sj_splicer_discard(p->splicer);
    fail(p, rc);
    return;
  }
  if (r.stuck > 0 && take_stuck(p, r.stuck) != 0)
    return;
  if (r.eof) {
    set_reading(p, 0);
    p->src_eof = 1;
  }
  flush(p);
}

/* ---- transformers ---------------------------------------------------- */

struct sj_emit_s {
  sj_pump_t *pump;
};

/* The tail chunk can take more bytes unless a write has the chunk in
 * flight: that write's completion counts the chunk's bytes as sent. */
static size_t tail_room(const sj_pump_t *p) {
  if (p->tail == NULL || (p->writing && p->tail == p->head))
    return 0;
  return p->pool->size - p->tail->len;
}

int sj_emit(sj_emit_t *out, const void *buf, size_t len) {
  sj_pump_t *p = out->pump;
  const char *bytes = buf;
  while (len > 0) {
    size_t room = tail_room(p);
    if (room == 0) {
      sj_chunk_t *c = sj_pool_get(p->pool);
      if (c == NULL)
        return UV_ENOMEM;
      c->next = NULL;
      enqueue(p, c);
      room = p->pool->size;
    }
    size_t n = len < room ? len : room;
    memcpy(p->tail->data + p->tail->len, bytes, n);
    p->tail->len += n;
    p->queued += n;
    bytes += n;
    len -= n;
  }
  return 0;
}

/* Runs bytes (or, with buf NULL, the end of input) through the transformer
 * into the queue. */
static int transform(sj_pump_t *p, const char *buf, size_t len) {
  sj_emit_t out = {p};
  int rc = p->xf.fn(&out, buf, len, p->xf.state);
  return rc < 0 ? rc : 0;
}

/* Takes a chunk read from src: queued as it is, or transformed. */
static int take_chunk(sj_pump_t *p, sj_chunk_t *c) {
  if (p->xf.fn == NULL) {
    enqueue(p, c);
    return 0;
  }
  int rc = transform(p, c->data + c->off, sj_chunk_remaining(c));
  sj_pool_put(p->pool, c);
  return rc;
}

/* Source input has ended: the transformer emits what it holds, then the end
 * is passed on once the queue drains. */
static void end_input(sj_pump_t *p) {
  p->src_eof = 1;
  if (p->xf.fn != NULL && p->dst != NULL && !p->xf_flushed && !p->failed && !p->closed) {
    p->xf_flushed = 1;
    int rc = transform(p, NULL, 0);
    if (rc != 0) {
      fail(p, rc);
      return;
    }
  }
  flush(p);
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  sj_pump_t *p = s->data;
  if (p->closed || p->failed) {
    if (c != NULL)
      sj_pool_put(s->pool, c);
    return;
  }
  if (status == SJ_READABLE) {
    if (p->polling)
      splice_step(p);
    else
      sj_stream_input_pending(s);
    return;
  }
  if (status == UV_EOF) {
    p->reading = p->polling = 0;
    end_input(p);
    return;
  }
  if (status < 0) {
    p->reading = p->polling = 0;
    fail(p, status);
    return;
  }
  p->bytes_read += sj_chunk_remaining(c);
  if (sj_chunk_remaining(c) == p->pool->size)
    p->bulk = 1;
  int rc = take_chunk(p, c);
  if (rc != 0) {
    fail(p, rc);
    return;
  }
  flush(p);
}

int sj_pump_start(sj_pump_t *p, sj_stream_t *src, size_t hwm, sj_splicer_t *splicer,
                  const sj_pump_events_t *ev, void *owner) {
  *p = (sj_pump_t){.src = src, .pool = src->pool, .ev = ev, .owner = owner, .hwm = hwm,
                   .splicer = splicer};
  src->data = p;
  src->on_read = on_read;
  /* With no destination yet, reading starts on the copy path. */
  int rc = sj_stream_read_start(src);
  if (rc == 0)
    p->reading = 1;
  return rc;
}

/* What was read before the pair formed goes through the transformer too. */
static int transform_queue(sj_pump_t *p) {
  sj_chunk_t *c = p->head;
  p->head = p->tail = NULL;
  p->queued = 0;
  int rc = 0;
  while (c != NULL) {
    sj_chunk_t *next = c->next;
    c->next = NULL;
    if (rc == 0)
      rc = take_chunk(p, c);
    else
      sj_pool_put(p->pool, c);
    c = next;
  }
  return rc;
}

void sj_pump_connect(sj_pump_t *p, sj_stream_t *dst, const sj_transformer_t *xf) {
  p->dst = dst;
  if (xf != NULL && xf->fn != NULL) {
    p->xf = *xf;
    int rc = transform_queue(p);
    if (rc != 0) {
      fail(p, rc);
      return;
    }
  }
  if (p->src_eof)
    end_input(p);
  else
    flush(p);
}

void sj_pump_finish_input(sj_pump_t *p) {
  set_reading(p, 0);
  end_input(p);
}

void sj_pump_close(sj_pump_t *p) {
  p->closed = 1;
  if (p->writing) {
    /* Count what the cancelled write had already handed on. */
    size_t in_flight = sj_chunk_remaining(p->head);
    size_t unsent = sj_stream_unsent(p->dst, in_flight);
    if (unsent < in_flight)
      p->bytes_written += in_flight - unsent;
  }
  /* A chunk under an asynchronous write stays until that write completes
   * (closing the stream cancels it): a file write may still be reading it. */
  sj_chunk_t *keep = p->writing ? p->head : NULL;
  sj_chunk_t *c = keep != NULL ? keep->next : p->head;
  while (c != NULL) {
    sj_chunk_t *next = c->next;
    sj_pool_put(p->pool, c);
    c = next;
  }
  if (keep != NULL)
    keep->next = NULL;
  p->head = p->tail = keep;
  p->queued = 0;
  if (p->xf.release != NULL)
    p->xf.release(p->xf.state);
  p->xf = (sj_transformer_t){0};
}
