#include "pump.h"

static void flush(sj_pump_t *p);

static void fail(sj_pump_t *p, int err) {
  if (p->failed || p->closed)
    return;
  p->failed = 1;
  if (p->reading && !p->src_eof)
    sj_stream_read_stop(p->src);
  p->reading = 0;
  p->ev->on_error(p, err);
}

static void set_reading(sj_pump_t *p, int on) {
  if (p->reading == on || p->src_eof || p->failed || p->closed)
    return;
  int rc = on ? sj_stream_read_start(p->src) : sj_stream_read_stop(p->src);
  if (rc != 0) {
    fail(p, rc);
    return;
  }
  p->reading = (unsigned)on;
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
  int rc = sj_stream_shutdown(p->dst, on_shutdown, p);
  if (rc != 0)
    fail(p, rc);
}

static void pop_head(sj_pump_t *p) {
  sj_chunk_t *c = p->head;
  p->head = c->next;
  if (p->head == NULL)
    p->tail = NULL;
  sj_pool_put(p->src->pool, c);
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

/* Writes queued chunks: synchronously while the destination takes them, then
 * one asynchronous write for the rest of the head chunk. */
static void flush(sj_pump_t *p) {
  while (p->head != NULL && p->dst != NULL && !p->writing && !p->failed && !p->closed) {
    sj_chunk_t *c = p->head;
    if (c->off == 0 && p->ev->on_chunk != NULL)
      p->ev->on_chunk(p, c->data, c->len);
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
  if (p->queued <= p->hwm / 2)
    set_reading(p, 1);
  maybe_end(p);
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  sj_pump_t *p = s->data;
  if (p->closed || p->failed) {
    if (c != NULL)
      sj_pool_put(s->pool, c);
    return;
  }
  if (status == UV_EOF) {
    p->reading = 0;
    p->src_eof = 1;
    maybe_end(p);
    return;
  }
  if (status < 0) {
    p->reading = 0;
    fail(p, status);
    return;
  }
  size_t n = sj_chunk_remaining(c);
  p->bytes_read += n;
  p->queued += n;
  if (p->tail != NULL)
    p->tail->next = c;
  else
    p->head = c;
  p->tail = c;
  if (p->queued >= p->hwm)
    set_reading(p, 0);
  flush(p);
}

int sj_pump_start(sj_pump_t *p, sj_stream_t *src, size_t hwm, const sj_pump_events_t *ev,
                  void *owner) {
  *p = (sj_pump_t){.src = src, .ev = ev, .owner = owner, .hwm = hwm};
  src->data = p;
  src->on_read = on_read;
  int rc = sj_stream_read_start(src);
  if (rc == 0)
    p->reading = 1;
  return rc;
}

void sj_pump_connect(sj_pump_t *p, sj_stream_t *dst) {
  p->dst = dst;
  flush(p);
}

void sj_pump_finish_input(sj_pump_t *p) {
  set_reading(p, 0);
  p->src_eof = 1;
  maybe_end(p);
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
  while (p->head != NULL && !(p->writing && p->head->next == NULL))
    if (p->writing) {
      sj_chunk_t *rest = p->head->next;
      p->head->next = rest->next;
      sj_pool_put(p->src->pool, rest);
    } else {
      pop_head(p);
    }
  p->tail = p->head;
  p->queued = 0;
}
