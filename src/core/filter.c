/* A stream layered on a lower stream through a codec: the plumbing shared
 * by TLS and end-to-end encryption (see filter.h). */
#include "filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output the codec makes on its own while decoding (handshake messages, TLS
 * key updates) also lands in the queue; above this the filter stops
 * reading from below, so a peer that sends without reading cannot make it
 * grow without limit. */
#define OUT_HARD (4 * SJ_FILTER_OUT_HWM)

#define F(s) ((sj_filter_t *)(s))

static void process(sj_filter_t *f);

/* ---- chunk lists ---------------------------------------------------------- */

static void push(sj_chunk_t **head, sj_chunk_t **tail, sj_chunk_t *c) {
  c->next = NULL;
  if (*tail != NULL)
    (*tail)->next = c;
  else
    *head = c;
  *tail = c;
}

static void pop(sj_pool_t *pool, sj_chunk_t **head, sj_chunk_t **tail) {
  sj_chunk_t *c = *head;
  *head = c->next;
  if (*head == NULL)
    *tail = NULL;
  sj_pool_put(pool, c);
}

static void release_all(sj_pool_t *pool, sj_chunk_t **head, sj_chunk_t **tail) {
  while (*head != NULL)
    pop(pool, head, tail);
}

/* ---- errors and scheduling ------------------------------------------------ */

int sj_filter_error(sj_filter_t *f, int code, const char *fmt, ...) {
  if (f->text[0] != '\0')
    return code;
  int n = snprintf(f->text, sizeof f->text, "%s: ", f->codec->name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->text + n, sizeof f->text - (size_t)n, fmt, ap);
  va_end(ap);
  return code;
}

static void on_kick(uv_idle_t *h) {
  uv_idle_stop(h);
  process(h->data);
}

/* Asks for a turn of process(): at once if one is running, else from the
 * loop, so that the owner's callbacks never run inside its own calls. */
static void schedule(sj_filter_t *f) {
  if (f->busy)
    f->again = 1;
  else if (!f->closing && !uv_is_active((uv_handle_t *)&f->kick))
    uv_idle_start(&f->kick, on_kick);
}

static void set_lower_reading(sj_filter_t *f, int on) {
  if (f->lower_reading == (unsigned)on)
    return;
  int rc = on ? sj_stream_read_start(f->lower) : sj_stream_read_stop(f->lower);
  f->lower_reading = rc == 0 ? (unsigned)on : 0;
  if (rc != 0 && on) {
    f->lower_broken = 1;
    f->failed = 1;
    f->error = rc;
    sj_filter_error(f, rc, "cannot read: %s", sj_strerror(rc));
    schedule(f);
  }
}

/* The session is over: reading from below stops, pending callbacks get the
 * error (from process(), which also tells the owner). */
static void fail(sj_filter_t *f, int code) {
  if (f->failed)
    return;
  f->failed = 1;
  f->error = code;
  sj_filter_error(f, code, "%s", sj_strerror(code));
  set_lower_reading(f, 0);
  schedule(f);
}

/* A failure of the lower stream itself: nothing more can be sent there. */
static void fail_lower(sj_filter_t *f, int code, const char *what) {
  f->lower_broken = 1;
  sj_filter_error(f, code, "%s%s", what, sj_strerror(code));
  fail(f, code);
}

/* ---- down: encoded bytes towards the lower stream ------------------------- */

char *sj_filter_reserve(sj_filter_t *f, size_t want, size_t *avail) {
  sj_pool_t *pool = f->base.pool;
  sj_chunk_t *t = f->out_tail;
  size_t room = t != NULL ? pool->size - t->len : 0;
  if (room == 0 || (room < want && want <= pool->size)) {
    t = sj_pool_get(pool);
    if (t == NULL)
      return NULL;
    push(&f->out_head, &f->out_tail, t);
    room = pool->size;
  }
  *avail = room;
  return t->data + t->len;
}

void sj_filter_commit(sj_filter_t *f, size_t n) {
  f->out_tail->len += n;
  f->out_queued += n;
}

int sj_filter_send(sj_filter_t *f, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    size_t avail;
    char *dst = sj_filter_reserve(f, 1, &avail);
    if (dst == NULL)
      return sj_filter_error(f, UV_ENOMEM, "out of memory");
    size_t n = len < avail ? len : avail;
    memcpy(dst, p, n);
    sj_filter_commit(f, n);
    p += n;
    len -= n;
  }
  return 0;
}

/* n bytes of the head chunk have been handed to the lower stream. Appends
 * may go on behind a write in flight: they never touch its bytes. */
static void out_advance(sj_filter_t *f, size_t n) {
  sj_chunk_t *c = f->out_head;
  c->off += n;
  f->out_queued -= n;
  if (c->off == c->len)
    pop(f->base.pool, &f->out_head, &f->out_tail);
}

static void flush_lower(sj_filter_t *f);

static void on_lower_write(sj_stream_t *lower, int status, void *arg) {
  sj_filter_t *f = arg;
  (void)lower;
  f->lower_writing = 0;
  if (f->closing)
    return;
  if (status < 0) {
    fail_lower(f, status, "write: ");
  } else {
    out_advance(f, f->in_flight);
    flush_lower(f);
  }
  process(f);
}

/* Writes the queue: synchronously while the lower stream takes it, then
 * one asynchronous write. After a codec failure what is queued (a TLS
 * alert telling the peer why) still goes out. */
static void flush_lower(sj_filter_t *f) {
  while (f->out_head != NULL && !f->lower_writing && !f->lower_broken && !f->closing) {
    sj_chunk_t *c = f->out_head;
    size_t left = sj_chunk_remaining(c);
    int n = left > 0 ? sj_stream_try_write(f->lower, c->data + c->off, left) : 0;
    if (n == UV_EAGAIN || n == UV_ENOSYS)
      n = 0;
    if (n < 0) {
      fail_lower(f, n, "write: ");
      return;
    }
    out_advance(f, (size_t)n);
    if ((size_t)n == left)
      continue;
    int rc = sj_stream_write(f->lower, c->data + c->off, left - (size_t)n, on_lower_write, f);
    if (rc != 0) {
      fail_lower(f, rc, "write: ");
      return;
    }
    f->lower_writing = 1;
    f->in_flight = left - (size_t)n;
  }
}

/* Encodes what the queue has room for; calls nobody above. Returns the
 * bytes taken from buf, or a negative code. The queue is flushed as it
 * fills: when the lower stream takes it all at once (a roomy kernel
 * buffer), no write completion will come to ask for more, so encoding
 * goes on here until buf is taken or the lower stream is busy. */
static int encode_some(sj_filter_t *f, const char *buf, size_t len) {
  size_t taken = 0;
  while (taken < len && f->out_queued < SJ_FILTER_OUT_HWM) {
    int n = f->codec->encode(f, buf + taken, len - taken);
    if (n < 0) {
      fail(f, n);
      return n;
    }
    if (n == 0)
      break;
    taken += (size_t)n;
    if (f->out_queued >= SJ_FILTER_OUT_HWM)
      flush_lower(f);
  }
  flush_lower(f);
  return (int)taken;
}

static void encode_pending(sj_filter_t *f) {
  if (!f->wpending || !f->handshake_done || f->failed || f->closing)
    return;
  int n = encode_some(f, f->wbuf + f->woff, f->wlen - f->woff);
  if (n > 0)
    f->woff += (size_t)n;
}

static void on_lower_shutdown(sj_stream_t *lower, int status, void *arg) {
  sj_filter_t *f = arg;
  (void)lower;
  if (f->closing)
    return;
  /* Once held, the owner's shutdown has long completed and both ends have
   * said goodbye: a peer already gone is no failure. */
  if (status < 0 && !f->held)
    fail_lower(f, status, "shutdown: ");
  else
    f->shut_done = 1;
  process(f);
}

/* Shutdown: after the write in flight, the end marker, then (once it is
 * written) the lower write side. Calls nobody above. */
static void advance_shutdown(sj_filter_t *f) {
  if (!f->shut_requested || f->wpending || !f->handshake_done || f->failed || f->closing)
    return;
  if (!f->finished) {
    f->finished = 1;
    int rc = f->codec->finish(f);
    if (rc < 0) {
      fail(f, rc);
      return;
    }
    flush_lower(f);
  }
  if (f->out_head != NULL || f->lower_shutting || f->failed)
    return;
  if (f->codec->hold_lower != NULL && f->codec->hold_lower(f)) {
    f->held = 1;
    return;
  }
  f->lower_shutting = 1;
  int rc = sj_stream_shutdown(f->lower, on_lower_shutdown, f);
  if (rc == SJ_DONE || (rc < 0 && f->held))
    f->shut_done = 1;
  else if (rc < 0)
    fail_lower(f, rc, "shutdown: ");
}

/* Completes the write and the shutdown from above when they are done. */
static void step_down(sj_filter_t *f) {
  flush_lower(f); /* what decoding queued: handshake replies */
  encode_pending(f);
  if (f->wpending && (f->failed || (f->woff == f->wlen && f->out_queued <= SJ_FILTER_OUT_HWM))) {
    f->wpending = 0;
    f->wcb(&f->base, f->failed ? f->error : 0, f->warg);
    if (f->closing)
      return;
  }
  advance_shutdown(f);
  if (f->scb != NULL && (f->shut_done || f->held || f->failed)) {
    sj_shutdown_cb cb = f->scb;
    f->scb = NULL;
    cb(&f->base, f->failed ? f->error : 0, f->sarg);
  }
}

/* ---- up: decoded bytes towards the reader --------------------------------- */

/* The codec needs input and none is held. */
static int need_input(sj_filter_t *f) {
  if (f->lower_eof)
    return f->codec->truncated(f);
  return 0;
}

/* Decodes into c until it is full or the input runs out. Returns 0, or
 * SJ_FILTER_EOF, or an error. */
static int fill(sj_filter_t *f, sj_chunk_t *c) {
  size_t cap = f->base.pool->size;
  while (c->len < cap) {
    sj_chunk_t *in = f->in_head;
    size_t inlen = in != NULL ? sj_chunk_remaining(in) : 0;
    size_t used = 0, produced = 0;
    int rc = f->codec->decode(f, in != NULL ? in->data + in->off : NULL, inlen, &used,
                              c->data + c->len, cap - c->len, &produced);
    if (in != NULL && (in->off += used) == in->len)
      pop(f->base.pool, &f->in_head, &f->in_tail);
    c->len += produced;
    if (rc != 0)
      return rc;
    if (used == 0 && produced == 0)
      return in == NULL ? need_input(f) : sj_filter_error(f, UV_EPROTO, "decoder stalled");
  }
  return 0;
}

/* Tells the owner how the handshake went, and of a later failure. Returns
 * nonzero when the owner closed the stream meanwhile. */
static int report(sj_filter_t *f) {
  if (f->handshake_done && !f->handshake_reported && !f->failed) {
    f->handshake_reported = 1;
    if (f->on_event != NULL)
      f->on_event(&f->base, 0, NULL, f->event_arg);
  }
  if (f->failed && !f->failure_reported && !f->closing) {
    f->failure_reported = f->handshake_reported = 1;
    /* An alert saying why goes out before the owner hears of the failure,
     * which it usually answers by closing. */
    flush_lower(f);
    if (f->on_event != NULL)
      f->on_event(&f->base, f->error, f->text, f->event_arg);
  }
  return f->closing;
}

/* Decodes one chunk's worth; returns 1 when there may be more to do. */
static int decode_step(sj_filter_t *f) {
  sj_chunk_t *c = sj_pool_get(f->base.pool);
  if (c == NULL) {
    fail(f, sj_filter_error(f, UV_ENOMEM, "out of memory"));
    return 0;
  }
  int rc = fill(f, c);
  if (c->len > 0)
    f->up = c;
  else
    sj_pool_put(f->base.pool, c);
  if (rc == SJ_FILTER_EOF)
    f->up_eof = 1;
  else if (rc < 0)
    fail(f, rc);
  return f->up != NULL || f->up_eof;
}

/* Decodes while someone reads (or the handshake needs input) and delivers. */
static void step_up(sj_filter_t *f) {
  while (!f->closing && !f->failed) {
    if (f->up != NULL) {
      if (!f->reading)
        return;
      sj_chunk_t *c = f->up;
      f->up = NULL;
      f->base.on_read(&f->base, 0, c);
    } else if (f->up_eof) {
      if (f->reading && !f->eof_delivered) {
        f->eof_delivered = 1;
        f->base.on_read(&f->base, UV_EOF, NULL);
      }
      return;
    } else if ((!f->reading && f->handshake_done) || f->out_queued >= OUT_HARD) {
      return;
    } else {
      int more = decode_step(f);
      if (report(f) || !more)
        return;
    }
  }
}

/* An error reaches the reader even while reading is stopped, so that a
 * tampered or cut stream is reset at once rather than when it drains. */
static void deliver_failure(sj_filter_t *f) {
  if (!f->failed || f->error_delivered || !f->read_started || f->closing)
    return;
  f->error_delivered = 1;
  if (f->up != NULL) {
    sj_pool_put(f->base.pool, f->up);
    f->up = NULL;
  }
  f->base.on_read(&f->base, f->error, NULL);
}

/* Reads from below while the handshake runs or the reader waits for input. */
static void update_lower_reading(sj_filter_t *f) {
  int want = !f->failed && !f->closing && !f->lower_eof && !f->up_eof && f->in_head == NULL &&
             f->up == NULL && (f->reading || !f->handshake_done) && f->out_queued < OUT_HARD;
  set_lower_reading(f, want);
}

static void process(sj_filter_t *f) {
  if (f->busy) {
    f->again = 1;
    return;
  }
  f->busy = 1;
  do {
    f->again = 0;
    /* The owner hears of the handshake and of a failure (with its text)
     * before any completion or read carries the error. */
    step_up(f);
    if (!f->closing && !report(f))
      step_down(f);
    if (!f->closing && !report(f))
      deliver_failure(f);
    if (!f->closing) {
      flush_lower(f); /* what decoding queued: handshake replies, alerts */
      update_lower_reading(f);
    }
  } while (f->again && !f->closing);
  f->busy = 0;
}

static void on_lower_read(sj_stream_t *lower, int status, sj_chunk_t *c) {
  sj_filter_t *f = lower->data;
  if (c != NULL && (f->closing || f->failed || sj_chunk_remaining(c) == 0)) {
    sj_pool_put(lower->pool, c);
    c = NULL;
  }
  if (f->closing)
    return;
  if (c != NULL) {
    push(&f->in_head, &f->in_tail, c);
  } else if (status == UV_EOF) {
    f->lower_eof = 1;
    f->lower_reading = 0;
  } else if (status < 0) {
    f->lower_reading = 0;
    fail_lower(f, status, "");
  }
  process(f);
}

/* ---- the stream ops, for the owner ---------------------------------------- */

static int f_read_start(sj_stream_t *s) {
  sj_filter_t *f = F(s);
  if (f->closing)
    return UV_EINVAL;
  f->reading = f->read_started = 1;
  /* Bytes may already be decoded, or waiting inside the codec. */
  schedule(f);
  if (!f->busy)
    update_lower_reading(f);
  return 0;
}

static int f_read_stop(sj_stream_t *s) {
  sj_filter_t *f = F(s);
  f->reading = 0;
  if (!f->closing)
    update_lower_reading(f);
  return 0;
}

static int write_refused(const sj_filter_t *f) {
  if (f->failed)
    return f->error;
  if (f->closing || f->shut_requested)
    return UV_EPIPE;
  return f->wpending ? UV_EBUSY : 0;
}

static int f_try_write(sj_stream_t *s, const char *buf, size_t len) {
  sj_filter_t *f = F(s);
  int rc = write_refused(f);
  if (rc != 0)
    return rc == UV_EBUSY ? UV_EAGAIN : rc;
  if (!f->handshake_done)
    return UV_EAGAIN;
  int n = encode_some(f, buf, len > INT32_MAX ? INT32_MAX : len);
  return n == 0 ? UV_EAGAIN : n;
}

static int f_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  sj_filter_t *f = F(s);
  int rc = write_refused(f);
  if (rc != 0)
    return rc;
  f->wbuf = buf;
  f->wlen = len;
  f->woff = 0;
  f->wcb = cb;
  f->warg = arg;
  f->wpending = 1;
  encode_pending(f);
  schedule(f);
  return 0;
}

static int f_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  sj_filter_t *f = F(s);
  if (f->failed)
    return f->error;
  if (f->closing || f->shut_requested)
    return UV_ENOTCONN;
  f->shut_requested = 1;
  advance_shutdown(f);
  if (f->failed)
    return f->error;
  if (f->shut_done || f->held)
    return SJ_DONE;
  f->scb = cb;
  f->sarg = arg;
  return 0;
}

/* Runs when both the lower stream and the kick handle have closed. */
static void closed_one(sj_filter_t *f) {
  if (--f->pending_closes > 0)
    return;
  if (f->wpending) {
    f->wpending = 0;
    f->wcb(&f->base, UV_ECANCELED, f->warg);
  }
  if (f->scb != NULL)
    f->scb(&f->base, UV_ECANCELED, f->sarg);
  /* Chunks go back before the owner hears of the close: after it, the
   * owner may free the pool (stream.h). */
  sj_pool_t *pool = f->base.pool;
  release_all(pool, &f->in_head, &f->in_tail);
  release_all(pool, &f->out_head, &f->out_tail);
  if (f->up != NULL)
    sj_pool_put(pool, f->up);
  f->up = NULL;
  if (f->close_cb != NULL)
    f->close_cb(&f->base);
  f->codec->destroy(f);
}

static void on_lower_closed(sj_stream_t *lower) { closed_one(lower->data); }
static void on_kick_closed(uv_handle_t *h) { closed_one(h->data); }

static void f_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  sj_filter_t *f = F(s);
  if (f->closing)
    return;
  f->closing = 1;
  f->close_cb = cb;
  f->pending_closes = 2;
  uv_close((uv_handle_t *)&f->kick, on_kick_closed);
  sj_stream_close(f->lower, reset, on_lower_closed);
}

/* Bytes taken from above but not yet encoded; what is encoded counts as
 * handed on, as bytes in a kernel socket buffer do. */
static size_t f_unsent(const sj_stream_t *s) {
  const sj_filter_t *f = (const sj_filter_t *)s;
  return f->wpending ? f->wlen - f->woff : 0;
}

static const sj_stream_ops_t filter_ops = {
    .read_start = f_read_start,
    .read_stop = f_read_stop,
    .try_write = f_try_write,
    .write = f_write,
    .shutdown = f_shutdown,
    .close = f_close,
    .unsent = f_unsent,
};

/* ---- setup ---------------------------------------------------------------- */

void sj_filter_init(sj_filter_t *f, sj_stream_t *lower, const sj_filter_codec_t *codec,
                    sj_layer_cb cb, void *arg) {
  f->base.ops = &filter_ops;
  f->base.loop = lower->loop;
  f->base.pool = lower->pool;
  f->base.origin = lower->origin;
  f->lower = lower;
  f->codec = codec;
  f->on_event = cb;
  f->event_arg = arg;
}

void sj_filter_start(sj_filter_t *f) {
  uv_idle_init(f->base.loop, &f->kick);
  f->kick.data = f;
  f->lower->data = f;
  f->lower->on_read = on_lower_read;
  f->started = 1;
  int rc = f->codec->begin(f);
  if (rc < 0)
    fail(f, rc);
  flush_lower(f);
  update_lower_reading(f);
}

void sj_filter_handshake_done(sj_filter_t *f) { f->handshake_done = 1; }

size_t sj_filter_buffered(const sj_stream_t *s) {
  const sj_filter_t *f = (const sj_filter_t *)s;
  size_t n = f->out_queued + (f->up != NULL ? sj_chunk_remaining(f->up) : 0);
  for (const sj_chunk_t *c = f->in_head; c != NULL; c = c->next)
    n += sj_chunk_remaining(c);
  return n;
}

void sj_layer_set_cb(sj_stream_t *s, sj_layer_cb cb, void *arg) {
  sj_filter_t *f = (sj_filter_t *)s;
  f->on_event = cb;
  f->event_arg = arg;
}
