/*
 * The prefix stream: a stream that first delivers bytes already read from
 * its lower stream (what arrived behind an auth message), then passes
 * everything through to the lower stream. Once the prefix is used up it
 * also offers the lower stream's descriptor, so the zero-copy path still
 * works for an authenticated plain socket.
 */
#include "prefix.h"

#include <stdlib.h>

typedef struct {
  sj_stream_t base;
  sj_stream_t *lower;
  sj_chunk_t *chunks; /* the prefix, not yet delivered */
  int eof;            /* the lower stream had ended when the prefix was cut */
  int reading;
  uv_idle_t idle; /* delivers the prefix outside of read_start's caller */
  sj_write_cb write_cb;
  void *write_arg;
  size_t write_len; /* of the write in flight */
  sj_shutdown_cb shutdown_cb;
  void *shutdown_arg;
  sj_stream_close_cb close_cb;
  int open_handles; /* the idle handle and the lower stream */
} prefix_t;

static void on_lower_read(sj_stream_t *lower, int status, sj_chunk_t *chunk) {
  prefix_t *p = lower->data;
  p->base.on_read(&p->base, status, chunk);
}

static int start_lower(prefix_t *p) {
  if (p->eof) {
    p->base.on_read(&p->base, UV_EOF, NULL);
    return 0;
  }
  return sj_stream_read_start(p->lower);
}

static void on_idle(uv_idle_t *h) {
  prefix_t *p = h->data;
  while (p->reading && p->chunks != NULL) {
    sj_chunk_t *c = p->chunks;
    p->chunks = c->next;
    c->next = NULL;
    p->base.on_read(&p->base, 0, c);
  }
  if (p->chunks != NULL)
    return; /* reading stopped; the idle handle was stopped with it */
  uv_idle_stop(h);
  if (p->reading) {
    int rc = start_lower(p);
    if (rc != 0)
      p->base.on_read(&p->base, rc, NULL);
  }
}

static int prefix_read_start(sj_stream_t *s) {
  prefix_t *p = (prefix_t *)s;
  p->reading = 1;
  if (p->chunks != NULL)
    return uv_idle_start(&p->idle, on_idle);
  return start_lower(p);
}

static int prefix_read_stop(sj_stream_t *s) {
  prefix_t *p = (prefix_t *)s;
  p->reading = 0;
  uv_idle_stop(&p->idle);
  return sj_stream_read_stop(p->lower);
}

static int prefix_try_write(sj_stream_t *s, const char *buf, size_t len) {
  return sj_stream_try_write(((prefix_t *)s)->lower, buf, len);
}

static void on_lower_write(sj_stream_t *lower, int status, void *arg) {
  prefix_t *p = arg;
  (void)lower;
  p->write_cb(&p->base, status, p->write_arg);
}

static int prefix_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  prefix_t *p = (prefix_t *)s;
  p->write_cb = cb;
  p->write_arg = arg;
  p->write_len = len;
  return sj_stream_write(p->lower, buf, len, on_lower_write, p);
}

static void on_lower_shutdown(sj_stream_t *lower, int status, void *arg) {
  prefix_t *p = arg;
  (void)lower;
  p->shutdown_cb(&p->base, status, p->shutdown_arg);
}

static int prefix_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  prefix_t *p = (prefix_t *)s;
  p->shutdown_cb = cb;
  p->shutdown_arg = arg;
  return sj_stream_shutdown(p->lower, on_lower_shutdown, p);
}

static void closed_one(prefix_t *p) {
  if (--p->open_handles > 0)
    return;
  if (p->close_cb != NULL)
    p->close_cb(&p->base);
  free(p);
}

static void on_idle_closed(uv_handle_t *h) { closed_one(h->data); }
static void on_lower_closed(sj_stream_t *lower) { closed_one(lower->data); }

static void prefix_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  prefix_t *p = (prefix_t *)s;
  p->close_cb = cb;
  p->reading = 0;
  sj_chunk_t *c = p->chunks;
  while (c != NULL) {
    sj_chunk_t *next = c->next;
    sj_pool_put(p->base.pool, c);
    c = next;
  }
  p->chunks = NULL;
  uv_close((uv_handle_t *)&p->idle, on_idle_closed);
  sj_stream_close(p->lower, reset, on_lower_closed);
}

static size_t prefix_unsent(const sj_stream_t *s) {
  const prefix_t *p = (const prefix_t *)s;
  return sj_stream_unsent(p->lower, p->write_len);
}

/* The descriptor only once the prefix is gone: before that, bytes taken
 * straight from the socket would overtake it. */
static int prefix_fileno(const sj_stream_t *s) {
  const prefix_t *p = (const prefix_t *)s;
  return p->chunks == NULL && !p->eof ? sj_stream_fileno(p->lower) : -1;
}

static int prefix_poll_start(sj_stream_t *s) {
  prefix_t *p = (prefix_t *)s;
  p->reading = 1;
  return sj_stream_poll_start(p->lower);
}

static void prefix_input_pending(sj_stream_t *s) {
  sj_stream_input_pending(((prefix_t *)s)->lower);
}

static const sj_stream_ops_t prefix_ops = {
    .read_start = prefix_read_start,
    .read_stop = prefix_read_stop,
    .try_write = prefix_try_write,
    .write = prefix_write,
    .shutdown = prefix_shutdown,
    .close = prefix_close,
    .unsent = prefix_unsent,
    .fileno = prefix_fileno,
    .poll_start = prefix_poll_start,
    .input_pending = prefix_input_pending,
};

int sj_prefix_stream_new(sj_stream_t *lower, sj_chunk_t *chunks, int eof, sj_stream_t **out) {
  prefix_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return UV_ENOMEM;
  p->base = (sj_stream_t){.ops = &prefix_ops, .loop = lower->loop, .pool = lower->pool,
                          .origin = lower->origin};
  p->lower = lower;
  p->chunks = chunks;
  p->eof = eof;
  uv_idle_init(lower->loop, &p->idle);
  p->idle.data = p;
  p->open_handles = 2;
  lower->data = p;
  lower->on_read = on_lower_read;
  *out = &p->base;
  return 0;
}
