/* A client's queue of output: messages for it, copied into pool chunks (or
 * whole input chunks handed over), written in order. The queue's bound is
 * the backpressure point: senders to a client over its bound are not read
 * until it has drained to half of it. */
#include "server_int.h"

#include <string.h>

static void on_write(sj_stream_t *s, int status, void *arg);

int sj__relay_out_full(const relay_client_t *c) { return c->out_bytes >= c->srv->opts.buffer_size; }

static void enqueue(relay_client_t *c, sj_chunk_t *ch) {
  ch->next = NULL;
  if (c->out_tail != NULL)
    c->out_tail->next = ch;
  else
    c->out_head = ch;
  c->out_tail = ch;
}

/* New output is flushed at the end of the event that queued it, so that a
 * read full of small messages costs one write per receiver. */
static void queued(relay_client_t *c, int was_empty) {
  if (was_empty) {
    /* The stall clock starts when output becomes pending. */
    c->last_out_ms = uv_now(c->srv->loop);
    sj__relay_client_arm(c);
  }
  if (!sj_list_linked(&c->dirty_link))
    sj_list_push(&c->srv->dirty, &c->dirty_link);
}

int sj__relay_out_append(relay_client_t *c, const char *bytes, size_t len) {
  sj_pool_t *pool = &c->srv->pool;
  int was_empty = c->out_bytes == 0;
  while (len > 0) {
    sj_chunk_t *t = c->out_tail;
    /* Bytes go after the tail's end; a write in flight covers only bytes
     * before it, so appending never touches them. */
    if (t == NULL || t->len == pool->size) {
      if ((t = sj_pool_get(pool)) == NULL)
        return UV_ENOMEM;
      enqueue(c, t);
    }
    size_t n = pool->size - t->len < len ? pool->size - t->len : len;
    memcpy(t->data + t->len, bytes, n);
    t->len += n;
    c->out_bytes += n;
    bytes += n;
    len -= n;
  }
  queued(c, was_empty);
  return 0;
}

void sj__relay_out_push(relay_client_t *c, sj_chunk_t *chunk) {
  int was_empty = c->out_bytes == 0;
  enqueue(c, chunk);
  c->out_bytes += sj_chunk_remaining(chunk);
  queued(c, was_empty);
}

void sj__relay_out_discard(relay_client_t *c) {
  while (c->out_head != NULL) {
    sj_chunk_t *ch = c->out_head;
    c->out_head = ch->next;
    sj_pool_put(&c->srv->pool, ch);
  }
  c->out_tail = NULL;
  c->out_bytes = 0;
}

/* n bytes of the head chunk were written. */
static void advance(relay_client_t *c, size_t n) {
  sj_chunk_t *h = c->out_head;
  h->off += n;
  c->out_bytes -= n;
  c->last_out_ms = uv_now(c->srv->loop);
  if (h->off < h->len)
    return;
  c->out_head = h->next;
  if (c->out_head == NULL)
    c->out_tail = NULL;
  sj_pool_put(&c->srv->pool, h);
}

static void wake(relay_client_t *s) {
  if (!s->blocked)
    return;
  s->blocked = 0;
  if (!sj_list_linked(&s->ready_link))
    sj_list_push(&s->srv->ready, &s->ready_link);
}

/* Only the first in line can use room, so only it is woken: the others
 * are woken in turn as the ones before them finish (FIFO, no herd). */
void sj__relay_wake_first(relay_client_t *c) {
  if (sj_list_empty(&c->senders) || sj__relay_out_full(c))
    return;
  wake(sj_container_of(c->senders.next, relay_client_t, dest_link));
}

void sj__relay_end_turn(relay_client_t *c) {
  relay_client_t *d = c->dest;
  if (d == NULL)
    return;
  sj_list_remove(&c->dest_link);
  c->dest = NULL;
  c->header_pending = 0;
  sj__relay_wake_first(d);
}

void sj__relay_wake_senders(relay_client_t *c) {
  for (sj_link_t *l = c->senders.next; l != &c->senders; l = l->next)
    wake(sj_container_of(l, relay_client_t, dest_link));
}

/* After writing: the sender in turn goes on below half the bound, and a
 * client that was only waiting for its output to go out is closed. */
static void written(relay_client_t *c) {
  if (c->out_bytes <= c->srv->opts.buffer_size / 2)
    sj__relay_wake_first(c);
  if (c->draining && c->out_head == NULL)
    sj__relay_client_close(c, SJ_LOG_INFO, NULL);
}

/* Writes what the socket takes at once, then one asynchronous write for the
 * rest of the head chunk. */
void sj__relay_out_flush(relay_client_t *c) {
  sj_list_remove(&c->dirty_link);
  while (c->out_head != NULL && !c->writing && !c->closing) {
    sj_chunk_t *h = c->out_head;
    size_t n = sj_chunk_remaining(h);
    int w = sj_stream_try_write(c->stream, h->data + h->off, n);
    if (w == UV_EAGAIN || w == UV_ENOSYS)
      w = 0;
    if (w < 0) {
      sj__relay_client_close(c, SJ_LOG_INFO, "write failed: %s", sj_strerror(w));
      return;
    }
    if (w > 0)
      advance(c, (size_t)w);
    if ((size_t)w == n)
      continue;
    c->in_flight = n - (size_t)w;
    int rc = sj_stream_write(c->stream, h->data + h->off, c->in_flight, on_write, c);
    if (rc != 0) {
      sj__relay_client_close(c, SJ_LOG_INFO, "write failed: %s", sj_strerror(rc));
      return;
    }
    c->writing = 1;
  }
  if (!c->closing)
    written(c);
}

static void on_write(sj_stream_t *s, int status, void *arg) {
  relay_client_t *c = arg;
  (void)s;
  c->writing = 0;
  if (c->closing) /* the queue is freed once the stream has closed */
    return;
  if (status < 0) {
    sj__relay_client_close(c, SJ_LOG_INFO, "write failed: %s", sj_strerror(status));
  } else {
    advance(c, c->in_flight);
    c->in_flight = 0;
    sj__relay_out_flush(c);
  }
  sj__relay_run(c->srv);
}
