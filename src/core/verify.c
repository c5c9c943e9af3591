/*
 * One stream under verification. The verifier is shown what arrived and not
 * yet consumed, writes what it likes, and decides. Accepted: the stream and
 * the bytes behind the auth message go back to the caller once everything
 * written has been sent. Refused: the reason goes out as one line, the
 * write side is shut, input is drained for a moment so that closing does
 * not reset the connection (which could destroy the line in flight), and
 * the stream closes.
 */
#include "verify.h"

#include "authline.h"

#include <stdlib.h>
#include <string.h>

/* How long a refused peer is given to read its reason and leave. */
#define SJ_REJECT_LINGER_MS 2000

typedef enum { V_OPEN, V_ACCEPTED, V_REFUSED, V_CLOSING } phase_t;

struct sj_verify_s {
  sj_stream_t *stream;
  sj_pool_t *pool; /* the stream's: kept, the stream may close first */
  sj_verifier_t vf;
  sj_side_t side;
  void *state;
  const sj_verify_events_t *ev;
  void *arg, *owner;
  sj_link_t *refusing; /* the owner's list of refusals still lingering */
  phase_t phase;
  int in_callback;
  int eof;
  sj_chunk_t *in_head, *in_tail; /* received, not consumed */
  size_t in_len;
  sj_chunk_t *out_head, *out_tail; /* to be written */
  size_t out_len;
  int writing;
  int reading;
  uv_timer_t *linger;
  sj_link_t lingering; /* in the owner's list while refusing */
  int open_handles;
  char *view; /* SJ_VERIFY_MAX bytes, made when input spans chunks */
};

static void free_chunks(sj_pool_t *pool, sj_chunk_t *c) {
  while (c != NULL) {
    sj_chunk_t *next = c->next;
    sj_pool_put(pool, c);
    c = next;
  }
}

static void release(sj_verify_t *v) {
  if (--v->open_handles > 0)
    return;
  if (sj_list_linked(&v->lingering))
    sj_list_remove(&v->lingering);
  free_chunks(v->pool, v->in_head);
  free_chunks(v->pool, v->out_head);
  void *owner = v->owner;
  void (*closed)(void *) = v->ev->closed;
  free(v->linger);
  free(v->view);
  free(v);
  closed(owner);
}

static void on_closed(sj_stream_t *s) { release(s->data); }
static void on_linger_closed(uv_handle_t *h) { release(h->data); }

/* Closes the stream (and the linger timer, if any); v goes with them. */
static void close_now(sj_verify_t *v, int reset) {
  if (v->phase == V_CLOSING)
    return;
  v->phase = V_CLOSING;
  v->open_handles = 1;
  if (v->linger != NULL) {
    v->open_handles++;
    uv_close((uv_handle_t *)v->linger, on_linger_closed);
  }
  sj_stream_close(v->stream, reset, on_closed);
}

static void on_linger(uv_timer_t *t) { close_now(t->data, 0); }

static void on_shutdown(sj_stream_t *s, int status, void *arg) {
  (void)s;
  sj_verify_t *v = arg;
  if (status < 0)
    close_now(v, 0);
}

static void set_reading(sj_verify_t *v, int on) {
  if (v->reading == on || v->phase == V_CLOSING)
    return;
  v->reading = on;
  int rc = on ? sj_stream_read_start(v->stream) : sj_stream_read_stop(v->stream);
  if (rc != 0 && on)
    close_now(v, 1);
}

static void finish_accept(sj_verify_t *v);
static void finish_refusal(sj_verify_t *v);
static int queue_out(sj_verify_t *v, const char *buf, size_t len);

static void flush(sj_verify_t *v);

static void on_write(sj_stream_t *s, int status, void *arg) {
  (void)s;
  sj_verify_t *v = arg;
  v->writing = 0;
  if (v->phase == V_CLOSING)
    return;
  sj_chunk_t *c = v->out_head;
  v->out_head = c->next;
  if (v->out_head == NULL)
    v->out_tail = NULL;
  v->out_len -= sj_chunk_remaining(c);
  sj_pool_put(s->pool, c);
  if (status < 0) {
    if (v->phase == V_ACCEPTED)
      v->ev->done(v, status, NULL, NULL, NULL, 0, v->arg);
    close_now(v, 1);
    return;
  }
  flush(v);
}

/* One write at a time; then whatever the phase waits for. */
static void flush(sj_verify_t *v) {
  if (v->writing || v->phase == V_CLOSING)
    return;
  if (v->out_head != NULL) {
    sj_chunk_t *c = v->out_head;
    int rc = sj_stream_write(v->stream, c->data + c->off, sj_chunk_remaining(c), on_write, v);
    if (rc == 0) {
      v->writing = 1;
      return;
    }
    if (v->phase == V_ACCEPTED)
      v->ev->done(v, rc, NULL, NULL, NULL, 0, v->arg);
    close_now(v, 1);
    return;
  }
  if (v->phase == V_ACCEPTED)
    finish_accept(v);
  else if (v->phase == V_REFUSED)
    finish_refusal(v);
}

static void drop_consumed(sj_verify_t *v);

static void finish_accept(sj_verify_t *v) {
  set_reading(v, 0);
  drop_consumed(v);
  sj_chunk_t *rest = v->in_head;
  v->in_head = v->in_tail = NULL;
  sj_stream_t *s = v->stream;
  const sj_verify_events_t *ev = v->ev;
  void *arg = v->arg;
  int eof = v->eof;
  free(v->linger);
  free(v->view);
  free(v);
  ev->done(NULL, 0, NULL, s, rest, eof, arg);
}

/* The reason line has gone: shut the write side and linger briefly. */
static void finish_refusal(sj_verify_t *v) {
  v->linger = malloc(sizeof *v->linger);
  if (v->linger == NULL || uv_timer_init(v->stream->loop, v->linger) != 0) {
    free(v->linger);
    v->linger = NULL;
    close_now(v, 0);
    return;
  }
  v->linger->data = v;
  uv_timer_start(v->linger, on_linger, SJ_REJECT_LINGER_MS, 0);
  if (v->refusing != NULL)
    sj_list_push(v->refusing, &v->lingering);
  int rc = sj_stream_shutdown(v->stream, on_shutdown, v);
  if (rc < 0 || v->eof)
    close_now(v, 0);
  else
    set_reading(v, 1);
}

static void lost(sj_verify_t *v, int status);

static void drop_consumed(sj_verify_t *v) {
  while (v->in_head != NULL && sj_chunk_remaining(v->in_head) == 0) {
    sj_chunk_t *c = v->in_head;
    v->in_head = c->next;
    if (v->in_head == NULL)
      v->in_tail = NULL;
    sj_pool_put(v->pool, c);
  }
}

/* After the verifier's callback: act on what it decided. */
static void settle(sj_verify_t *v, size_t shown_before) {
  drop_consumed(v);
  if (v->phase == V_OPEN && v->in_len >= SJ_VERIFY_MAX) {
    if (v->in_len >= shown_before) { /* nothing was taken: the verifier cannot decide */
      if (v->vf.on_end != NULL)
        v->vf.on_end(v, UV_ENOBUFS, v->vf.data);
      sj_verify_reject(v, SJ_AUTH_REFUSAL "auth message too long");
      return;
    }
    set_reading(v, 0); /* decision pending: wait, within the deadline */
  }
  flush(v); /* what the verifier wrote, and then what its decision waits for */
}

/* The first n bytes received, contiguous: in place when the first chunk
 * holds them (the usual case), else copied, so that a socket waiting for
 * its auth line costs no buffer of its own. */
static const char *view(sj_verify_t *v, size_t n) {
  sj_chunk_t *head = v->in_head;
  if (sj_chunk_remaining(head) >= n)
    return head->data + head->off;
  if (v->view == NULL && (v->view = malloc(SJ_VERIFY_MAX)) == NULL)
    return NULL;
  size_t off = 0;
  for (sj_chunk_t *c = head; c != NULL && off < n; c = c->next) {
    size_t take = sj_chunk_remaining(c);
    if (take > n - off)
      take = n - off;
    memcpy(v->view + off, c->data + c->off, take);
    off += take;
  }
  return v->view;
}

static void show(sj_verify_t *v) {
  drop_consumed(v);
  size_t n = v->in_len < SJ_VERIFY_MAX ? v->in_len : SJ_VERIFY_MAX;
  const char *bytes = view(v, n);
  if (bytes == NULL) {
    lost(v, UV_ENOMEM);
    return;
  }
  size_t before = v->in_len;
  v->in_callback++;
  if (v->vf.on_data != NULL)
    v->vf.on_data(v, bytes, n, v->vf.data);
  v->in_callback--;
  settle(v, before);
}

/* The peer left, or its stream failed, before a decision. */
/* A peer that ends its input before authenticating is closed normally; one
 * whose stream failed is reset. */
static void lost(sj_verify_t *v, int status) {
  if (v->vf.on_end != NULL)
    v->vf.on_end(v, status, v->vf.data);
  const char *why = status == UV_EOF ? "closed before authenticating" : NULL;
  v->ev->done(v, status == UV_EOF ? UV_ECONNRESET : status, why, NULL, NULL, 0, v->arg);
  close_now(v, status != UV_EOF);
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  sj_verify_t *v = s->data;
  if (c != NULL && (status < 0 || v->phase == V_REFUSED || v->phase == V_CLOSING)) {
    sj_pool_put(s->pool, c); /* a refused peer's input is drained */
    c = NULL;
  }
  if (status < 0) {
    v->reading = 0;
    v->eof = 1;
    if (v->phase == V_OPEN)
      lost(v, status);
    else if (v->phase == V_REFUSED)
      close_now(v, 0);
    else if (v->phase == V_ACCEPTED && status != UV_EOF) {
      v->ev->done(v, status, NULL, NULL, NULL, 0, v->arg);
      close_now(v, 1);
    }
    return;
  }
  if (c == NULL)
    return;
  c->next = NULL;
  if (v->in_tail != NULL)
    v->in_tail->next = c;
  else
    v->in_head = c;
  v->in_tail = c;
  v->in_len += sj_chunk_remaining(c);
  if (v->phase == V_OPEN)
    show(v);
  else if (v->in_len >= SJ_VERIFY_MAX)
    set_reading(v, 0); /* accepted: the rest waits for the pair */
}

int sj__verify_start(sj_stream_t *s, sj_side_t side, const sj_verifier_t *vf,
                     const sj_verify_events_t *ev, void *arg, void *owner, sj_link_t *refusing,
                     sj_verify_t **out) {
  sj_verify_t *v = calloc(1, sizeof *v);
  if (v == NULL)
    return UV_ENOMEM;
  *v = (sj_verify_t){.stream = s, .pool = s->pool, .vf = *vf, .side = side, .ev = ev, .arg = arg,
                     .owner = owner, .refusing = refusing};
  sj_list_init(&v->lingering);
  s->data = v;
  s->on_read = on_read;
  *out = v;
  v->in_callback++;
  if (vf->start != NULL)
    vf->start(v, vf->data);
  v->in_callback--;
  if (v->phase == V_OPEN)
    set_reading(v, 1);
  settle(v, 0);
  return 0;
}

static void refuse(sj_verify_t *v, const char *reason, int notify);

void sj__verify_abort(sj_verify_t *v, const char *why) {
  if (v->phase == V_OPEN && v->vf.on_end != NULL)
    v->vf.on_end(v, UV_ECANCELED, v->vf.data);
  if (v->phase == V_OPEN && why != NULL)
    refuse(v, why, 0);
  else
    close_now(v, 1);
}

void sj__verify_close_refusals(sj_link_t *refusing) {
  sj_link_t *l = refusing->next;
  while (l != refusing) {
    sj_verify_t *v = sj_container_of(l, sj_verify_t, lingering);
    l = l->next;
    sj_list_remove(&v->lingering);
    close_now(v, 0);
  }
}

/* ---- the verifier's side ------------------------------------------------- */

int sj_verify_write(sj_verify_t *v, const void *buf, size_t len) {
  if (v->phase != V_OPEN)
    return SJ_ECLOSED;
  if (v->out_len + len > SJ_VERIFY_MAX)
    return UV_ENOBUFS;
  if (len == 0)
    return 0;
  int rc = queue_out(v, buf, len);
  if (rc == 0 && !v->in_callback)
    flush(v);
  return rc;
}

/* Chunks are only marked consumed here: the verifier may still be looking
 * at their bytes. Used-up chunks go back to the pool after its callback
 * (drop_consumed). */
void sj_verify_consume(sj_verify_t *v, size_t n) {
  for (sj_chunk_t *c = v->in_head; n > 0 && c != NULL; c = c->next) {
    size_t take = sj_chunk_remaining(c) < n ? sj_chunk_remaining(c) : n;
    c->off += take;
    v->in_len -= take;
    n -= take;
  }
}

void sj_verify_accept(sj_verify_t *v) {
  if (v->phase != V_OPEN)
    return;
  v->phase = V_ACCEPTED;
  if (!v->in_callback)
    flush(v);
}

/* Queues bytes to be written (at most a chunk's worth). */
static int queue_out(sj_verify_t *v, const char *buf, size_t len) {
  sj_chunk_t *c = sj_pool_get(v->pool);
  if (c == NULL)
    return UV_ENOMEM;
  memcpy(c->data, buf, len);
  c->next = NULL;
  c->off = 0;
  c->len = len;
  if (v->out_tail != NULL)
    v->out_tail->next = c;
  else
    v->out_head = c;
  v->out_tail = c;
  v->out_len += len;
  return 0;
}

/* notify: the caller learns of the refusal through done. */
static void refuse(sj_verify_t *v, const char *reason, int notify) {
  v->phase = V_REFUSED;
  free_chunks(v->pool, v->in_head);
  v->in_head = v->in_tail = NULL;
  v->in_len = 0;
  if (reason != NULL) {
    char line[SJ_VERIFY_MAX];
    size_t n = strnlen(reason, sizeof line - 1);
    memcpy(line, reason, n);
    line[n] = '\n';
    queue_out(v, line, n + 1); /* out of memory: closed without the line */
  }
  if (notify)
    v->ev->done(v, SJ_EAUTH, reason, NULL, NULL, 0, v->arg);
  if (!v->in_callback)
    flush(v);
}

void sj_verify_reject(sj_verify_t *v, const char *reason) {
  if (v->phase == V_OPEN)
    refuse(v, reason, 1);
}

sj_side_t sj_verify_side(const sj_verify_t *v) { return v->side; }

void sj_verify_peer(const sj_verify_t *v, sj_peer_t *out) {
  sj_origin_to_peer(&v->stream->origin, out);
}

void sj_verify_set_state(sj_verify_t *v, void *state) { v->state = state; }
void *sj_verify_state(const sj_verify_t *v) { return v->state; }
