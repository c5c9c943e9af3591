/* The relay client stream (client.h): a TCP connection to the relay, the
 * relay's framing both ways, and the link's handshake and session ids. */
#include "client.h"
#include "dial.h"
#include "link.h"
#include "sockstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "PEER|N|" and a link header. */
#define HEADER_MAX (SJ_RELAY_NAME_MAX + 24 + SJ_LINK_HEADER)

typedef struct {
  uv_write_t req;
  char buf[];
} ctl_write_t;

typedef struct {
  sj_stream_t base;
  sj_relay_client_options_t opts;
  char name[SJ_RELAY_NAME_MAX + 1], peer[SJ_RELAY_NAME_MAX + 1];
  size_t name_len, peer_len;
  sj_side_spec_t relay;
  sj_relay_client_cb cb;
  void *cb_data;
  sj_dial_t *dial;
  sj_stream_t *tcp;
  uv_timer_t timer; /* HELLO until the peer answers, then keep-alives */
  uv_idle_t idle;   /* delivers what read_start finds waiting        */
  int open_handles;
  /* Input: relay frames, and the link inside the peer's messages. */
  sj_relay_parser_t rp;
  sj_link_parser_t lp;
  int from_peer; /* the message being read is the peer's */
  sj_chunk_t *rx_head, *rx_tail;
  uint64_t ignored;
  /* The link. */
  uint64_t my_id, peer_id;
  int ready, reported_ready, reported_err;
  int err;
  char why[300];
  /* Output: one write in flight, sent as messages of at most a limit. */
  uv_write_t wreq;
  char whdr[HEADER_MAX];
  const char *wbuf;
  size_t wlen, woff, wacked;
  size_t msg_left; /* payload of the message under way not yet written or
                      queued: what try_write left of it (0 between messages) */
  sj_write_cb wcb;
  void *warg;
  int writing;
  uint64_t last_tx_ms;
  int reading, reads_ended;
  int closing;
  sj_stream_close_cb ccb;
} relay_client_t;

#define RC(s) ((relay_client_t *)(s))

static void deliver(relay_client_t *c);

void sj_relay_client_options_init(sj_relay_client_options_t *o) {
  memset(o, 0, sizeof *o);
  o->max_message = SJ_RELAY_DEFAULT_MAX_MESSAGE;
  o->keepalive_ms = 10000;
  o->hello_ms = 500;
  o->connect_timeout_s = 10;
  o->tcp_keepalive = SJ_KEEPALIVE_DEFAULTS;
}

const char *sj_relay_name_problem(const char *name) {
  size_t len = strlen(name);
  if (len == 0)
    return "a name cannot be empty";
  if (len > SJ_RELAY_NAME_MAX)
    return "a name is at most 255 bytes";
  if (strchr(name, '|') != NULL)
    return "a name cannot contain '|'";
  return NULL;
}

/* ---- failing --------------------------------------------------------------- */

/* The stream has failed: reported to the owner once (through the ready
 * callback), and to the reader as an error. */
__attribute__((format(printf, 3, 4))) static void fail(relay_client_t *c, int err, const char *fmt,
                                                       ...) {
  if (c->err != 0 || c->closing)
    return;
  c->err = err;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, sizeof c->why, fmt, ap);
  va_end(ap);
  uv_timer_stop(&c->timer);
  if (c->tcp != NULL)
    sj_stream_read_stop(c->tcp);
  c->reported_err = 1;
  c->cb(&c->base, err, c->why, c->cb_data);
  deliver(c);
}

__attribute__((format(printf, 2, 3))) static void note(relay_client_t *c, const char *fmt, ...) {
  if (c->opts.note == NULL)
    return;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->opts.note(msg, c->opts.note_data);
}

/* ---- output ---------------------------------------------------------------- */

static size_t tcp_queued(relay_client_t *c) {
  return uv_stream_get_write_queue_size(sj_uvstream_handle(c->tcp));
}

static void on_ctl_written(uv_write_t *req, int status) {
  relay_client_t *c = req->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED)
    fail(c, status, "writing to the relay failed: %s", sj_strerror(status));
}

/* Queues a copy of buf on the socket. */
static void ctl_write(relay_client_t *c, const char *buf, size_t len) {
  ctl_write_t *w = malloc(sizeof *w + len);
  if (w == NULL) {
    fail(c, UV_ENOMEM, "out of memory");
    return;
  }
  memcpy(w->buf, buf, len);
  w->req.data = c;
  uv_buf_t b = uv_buf_init(w->buf, (unsigned)len);
  int rc = uv_write(&w->req, sj_uvstream_handle(c->tcp), &b, 1, on_ctl_written);
  if (rc != 0) {
    free(w);
    fail(c, rc, "writing to the relay failed: %s", sj_strerror(rc));
    return;
  }
  c->last_tx_ms = uv_now(c->base.loop);
}

/* A small message of the client's own (registration, HELLO, keep-alive).
 * Never in the middle of one of the owner's: then it is skipped (the
 * timer sends HELLOs and keep-alives again). */
static void ctl_send(relay_client_t *c, const char *buf, size_t len) {
  if (c->msg_left == 0)
    ctl_write(c, buf, len);
}

/* "PEER|N|" for a message of n payload bytes, then the link header. */
static size_t message_header(relay_client_t *c, char *out, uint8_t kind, size_t n) {
  size_t h = sj_relay_header(out, HEADER_MAX - SJ_LINK_HEADER, c->peer, c->peer_len,
                             (uint64_t)n + SJ_LINK_HEADER);
  return h + sj_link_put((uint8_t *)out + h, kind, c->my_id, c->peer_id);
}

/* "PEER|N|" and a whole HELLO. */
static size_t hello_message(relay_client_t *c, char *out) {
  size_t h = sj_relay_header(out, HEADER_MAX, c->peer, c->peer_len, SJ_LINK_HELLO_LEN);
  return h + sj_link_put_hello((uint8_t *)out + h, c->my_id, c->peer_id, c->opts.role);
}

static void send_hello(relay_client_t *c) {
  char buf[HEADER_MAX + 1];
  ctl_send(c, buf, hello_message(c, buf));
}

static void send_keepalive(relay_client_t *c) {
  char buf[SJ_RELAY_NAME_MAX + 8];
  ctl_send(c, buf, sj_relay_header(buf, sizeof buf, c->name, c->name_len, 0));
}

static int send_chunk(relay_client_t *c);

static void finish_write(relay_client_t *c, int status) {
  c->writing = 0;
  c->wcb(&c->base, status, c->warg);
}

static void on_chunk_written(uv_write_t *req, int status) {
  relay_client_t *c = req->data;
  if (status == 0 && c->err == 0 && !c->closing) {
    c->wacked = c->woff;
    if (c->woff == c->wlen) {
      finish_write(c, 0);
      return;
    }
    if ((status = send_chunk(c)) == 0)
      return;
  }
  if (status < 0 && status != UV_ECANCELED)
    fail(c, status, "writing to the relay failed: %s", sj_strerror(status));
  finish_write(c, status < 0 ? status : c->err != 0 ? c->err : UV_ECANCELED);
}

static size_t max_payload(const relay_client_t *c) {
  return (size_t)(c->opts.max_message - SJ_LINK_HEADER);
}

/* The next part of the write in flight: the rest of a message try_write
 * began, or a new message of as much as the relay's limit allows, its
 * header and its bytes written together. */
static int send_chunk(relay_client_t *c) {
  size_t n = c->wlen - c->woff, h = 0;
  if (c->msg_left > 0) {
    n = n < c->msg_left ? n : c->msg_left;
  } else {
    n = n < max_payload(c) ? n : max_payload(c);
    h = message_header(c, c->whdr, SJ_LINK_DATA, n);
  }
  uv_buf_t b[2] = {uv_buf_init(c->whdr, (unsigned)h),
                   uv_buf_init((char *)c->wbuf + c->woff, (unsigned)n)};
  c->wreq.data = c;
  int rc = uv_write(&c->wreq, sj_uvstream_handle(c->tcp), h > 0 ? b : b + 1, h > 0 ? 2 : 1,
                    on_chunk_written);
  if (rc != 0)
    return rc;
  if (h == 0)
    c->msg_left -= n;
  c->woff += n;
  c->last_tx_ms = uv_now(c->base.loop);
  return 0;
}

/* What the socket takes at once of the next part: the rest of the message
 * under way, or a new message. Returns the payload bytes written (0 when
 * none), or a negative error. A message begun here is finished by the
 * owner's next write (the same bytes, as stream.h has it). */
static int try_part(relay_client_t *c, const char *buf, size_t len) {
  uv_stream_t *h = sj_uvstream_handle(c->tcp);
  if (c->msg_left > 0) {
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)(len < c->msg_left ? len : c->msg_left));
    int r = uv_try_write(h, &b, 1);
    if (r < 0)
      return r == UV_EAGAIN ? 0 : r;
    c->msg_left -= (size_t)r;
    return r;
  }
  size_t n = len < max_payload(c) ? len : max_payload(c);
  char hdr[HEADER_MAX];
  size_t hl = message_header(c, hdr, SJ_LINK_DATA, n);
  uv_buf_t b[2] = {uv_buf_init(hdr, (unsigned)hl), uv_buf_init((char *)buf, (unsigned)n)};
  int r = uv_try_write(h, b, 2);
  if (r < 0)
    return r == UV_EAGAIN ? 0 : r;
  c->msg_left = n;
  if ((size_t)r < hl) { /* the header was cut: its rest goes out first */
    ctl_write(c, hdr + r, hl - (size_t)r);
    return 0;
  }
  c->msg_left -= (size_t)r - hl;
  return r - (int)hl;
}

static void on_timer(uv_timer_t *t) {
  relay_client_t *c = t->data;
  if (c->tcp == NULL || c->err != 0 || tcp_queued(c) > 0)
    return; /* what is queued will show the relay this end is alive */
  if (!c->ready)
    send_hello(c);
  else if (uv_now(c->base.loop) - c->last_tx_ms >= c->opts.keepalive_ms)
    send_keepalive(c);
}

/* ---- input ----------------------------------------------------------------- */

static void drop_rx(relay_client_t *c) {
  while (c->rx_head != NULL) {
    sj_chunk_t *k = c->rx_head;
    c->rx_head = k->next;
    sj_pool_put(c->base.pool, k);
  }
  c->rx_tail = NULL;
}

static int push_rx(relay_client_t *c, const char *data, size_t len) {
  sj_pool_t *pool = c->base.pool;
  while (len > 0) {
    sj_chunk_t *k = c->rx_tail;
    if (k == NULL || k->len == pool->size) {
      if ((k = sj_pool_get(pool)) == NULL)
        return UV_ENOMEM;
      k->next = NULL;
      k->off = k->len = 0;
      if (c->rx_tail != NULL)
        c->rx_tail->next = k;
      else
        c->rx_head = k;
      c->rx_tail = k;
    }
    size_t n = pool->size - k->len < len ? pool->size - k->len : len;
    memcpy(k->data + k->len, data, n);
    k->len += n;
    data += n;
    len -= n;
  }
  return 0;
}

/* Hands the reader what has arrived; an error at once, even to a reader
 * that has stopped, so that its owner learns of it. */
static void deliver(relay_client_t *c) {
  while (!c->closing && !c->reads_ended && c->base.on_read != NULL && c->reported_ready) {
    if (c->err != 0) {
      c->reads_ended = 1;
      drop_rx(c);
      c->base.on_read(&c->base, c->err, NULL);
      return;
    }
    if (!c->reading || c->rx_head == NULL)
      return;
    sj_chunk_t *k = c->rx_head;
    c->rx_head = k->next;
    if (c->rx_head == NULL)
      c->rx_tail = NULL;
    k->next = NULL;
    c->base.on_read(&c->base, 0, k);
  }
}

static const char *role_verb(uint8_t role) {
  return role == 'L' ? "listens for connections" : "connects to a service";
}

static void on_hello(relay_client_t *c, uint64_t from, uint64_t to, uint8_t role) {
  if (from == 0)
    return;
  if (role != 0 && role == c->opts.role) {
    fail(c, UV_EINVAL, "the far end (%s) also %s: one end must listen and the other connect",
         c->peer, role_verb(role));
    return;
  }
  if (c->peer_id != from) {
    if (c->ready) {
      fail(c, UV_ECONNRESET, "the far end (%s) started a new session; what was in flight is lost",
           c->peer);
      return;
    }
    c->peer_id = from;
  }
  /* Answer a peer that does not know this end yet, and tell it once that
   * this end now knows it (it may not know that yet); but never pile
   * answers up behind a relay that is not reading. */
  int became_ready = to == c->my_id && !c->ready;
  c->ready |= became_ready;
  if ((to != c->my_id || became_ready) && tcp_queued(c) < 64 * 1024)
    send_hello(c);
  if (became_ready && c->err == 0) {
    c->reported_ready = 1;
    c->cb(&c->base, 0, "", c->cb_data);
  }
}

/* The next bytes of a message from the peer. */
static void link_feed(relay_client_t *c, const char *data, size_t len) {
  while (len > 0 && c->err == 0 && !c->closing) {
    sj_link_event_t ev;
    size_t n = sj_link_parse(&c->lp, data, len, &ev);
    if (n == 0)
      return;
    data += n;
    len -= n;
    if (ev.type == SJ_LINK_HELLO_EV) {
      on_hello(c, ev.from, ev.to, ev.role);
    } else if (ev.type == SJ_LINK_DATA_EV) {
      /* Bytes of another pair of sessions are stale: dropped. */
      if (c->ready && ev.from == c->peer_id && ev.to == c->my_id &&
          push_rx(c, ev.data, ev.len) != 0)
        fail(c, UV_ENOMEM, "out of memory");
    } else if (ev.type == SJ_LINK_BAD) {
      c->ignored++;
      note(c, "ignored a message from %s that is not of the tunnel's link", c->peer);
    }
  }
}

static void on_message(relay_client_t *c, const sj_relay_event_t *ev) {
  c->from_peer = ev->name_len == c->peer_len && memcmp(ev->name, c->peer, c->peer_len) == 0;
  if (!c->from_peer) {
    c->ignored++;
    note(c, "ignored a message of %llu bytes from %.*s (not the peer)",
         (unsigned long long)ev->length, (int)ev->name_len, ev->name);
  } else if (sj_link_begin(&c->lp, ev->length) == SJ_LINK_BAD) {
    c->from_peer = 0;
    c->ignored++;
    note(c, "ignored a message of %llu bytes from %s (too short for the tunnel's link)",
         (unsigned long long)ev->length, c->peer);
  }
}

static void parse(relay_client_t *c, const char *p, size_t left) {
  while (left > 0 && c->err == 0 && !c->closing) {
    sj_relay_event_t ev;
    int64_t n = sj_relay_parse(&c->rp, p, left, &ev);
    if (n < 0) {
      fail(c, UV_EPROTO, "the relay sent a malformed frame: %s (is it delivering raw payloads?)",
           sj_relay_strerror((int)n));
      return;
    }
    p += n;
    left -= (size_t)n;
    if (ev.type == SJ_RELAY_MESSAGE)
      on_message(c, &ev);
    else if (ev.type == SJ_RELAY_DATA && c->from_peer)
      link_feed(c, ev.data, ev.data_len);
  }
}

static void on_tcp_read(sj_stream_t *s, int status, sj_chunk_t *chunk) {
  relay_client_t *c = s->data;
  if (status < 0) {
    if (status != UV_EOF)
      fail(c, status, "the connection to the relay failed: %s", sj_strerror(status));
    else if (!c->ready)
      fail(c, UV_EOF, "the relay closed the connection (is the name %s taken?)", c->name);
    else
      fail(c, UV_EOF, "the relay closed the connection");
    return;
  }
  if (chunk == NULL)
    return;
  parse(c, chunk->data + chunk->off, sj_chunk_remaining(chunk));
  sj_pool_put(s->pool, chunk);
  deliver(c);
  /* A reader that has stopped holds at most what one read brought. */
  if (c->ready && !c->reading && c->tcp != NULL && !c->closing)
    sj_stream_read_stop(c->tcp);
}

/* ---- connecting ------------------------------------------------------------ */

static void on_dialed(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  relay_client_t *c = data;
  (void)d;
  c->dial = NULL;
  if (status != 0) {
    char where[SJ_HOST_MAX + 16];
    snprintf(where, sizeof where, strchr(c->relay.host, ':') ? "[%s]:%d" : "%s:%d", c->relay.host,
             c->relay.port);
    fail(c, status, "cannot reach the relay at %s: %s", where, sj_strerror(status));
    return;
  }
  /* The client queues its own messages behind the owner's, so it writes
   * through libuv's write queue. */
  int rc = sj_sockstream_to_uv(s, &s);
  if (rc != 0) {
    fail(c, rc, "cannot use the connection to the relay: %s", sj_strerror(rc));
    return;
  }
  c->tcp = s;
  c->open_handles++;
  s->data = c;
  s->on_read = on_tcp_read;
  rc = sj_stream_read_start(s);
  if (rc != 0) {
    fail(c, rc, "cannot read from the relay: %s", sj_strerror(rc));
    return;
  }
  /* Registration, then the first HELLO, in one write. */
  char buf[SJ_RELAY_NAME_MAX + 1 + HEADER_MAX + 1];
  memcpy(buf, c->name, c->name_len);
  buf[c->name_len] = '|';
  size_t n = c->name_len + 1;
  n += hello_message(c, buf + n);
  ctl_send(c, buf, n);
  uv_timer_start(&c->timer, on_timer, c->opts.hello_ms, c->opts.hello_ms);
}

/* ---- the stream ------------------------------------------------------------ */

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  deliver(h->data);
}

static int rc_read_start(sj_stream_t *s) {
  relay_client_t *c = RC(s);
  c->reading = 1;
  if (c->tcp != NULL && c->err == 0 && !c->closing) {
    int rc = sj_stream_read_start(c->tcp);
    if (rc != 0)
      return rc;
  }
  if (c->rx_head != NULL || c->err != 0)
    uv_idle_start(&c->idle, on_idle);
  return 0;
}

static int rc_read_stop(sj_stream_t *s) {
  relay_client_t *c = RC(s);
  c->reading = 0;
  /* Before the handshake is done the client reads for itself. */
  if (c->tcp != NULL && c->ready)
    return sj_stream_read_stop(c->tcp);
  return 0;
}

static int rc_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  relay_client_t *c = RC(s);
  if (c->err != 0)
    return c->err;
  if (c->closing)
    return UV_EPIPE;
  if (!c->ready)
    return UV_ENOTCONN;
  if (c->writing)
    return UV_EBUSY;
  if (len == 0)
    return UV_EINVAL;
  c->wbuf = buf;
  c->wlen = len;
  c->woff = c->wacked = 0;
  c->wcb = cb;
  c->warg = arg;
  int rc = send_chunk(c);
  if (rc == 0)
    c->writing = 1;
  return rc;
}

static int rc_try_write(sj_stream_t *s, const char *buf, size_t len) {
  relay_client_t *c = RC(s);
  if (c->err != 0)
    return c->err;
  if (c->closing)
    return UV_EPIPE;
  if (!c->ready)
    return UV_ENOTCONN;
  if (c->writing || tcp_queued(c) > 0)
    return UV_EAGAIN;
  size_t total = 0;
  while (total < len) {
    int n = try_part(c, buf + total, len - total);
    if (n < 0)
      return total > 0 ? (int)total : n;
    total += (size_t)n;
    if (n == 0 || c->msg_left > 0)
      break; /* the socket is full */
  }
  if (total > 0)
    c->last_tx_ms = uv_now(c->base.loop);
  return total > 0 ? (int)total : UV_EAGAIN;
}

static int rc_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  (void)s;
  (void)cb;
  (void)arg;
  return UV_ENOTSUP;
}

static void on_part_closed(relay_client_t *c) {
  if (--c->open_handles > 0)
    return;
  if (c->ccb != NULL)
    c->ccb(&c->base);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) { on_part_closed(h->data); }
static void on_tcp_closed(sj_stream_t *s) { on_part_closed(s->data); }

static void rc_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  relay_client_t *c = RC(s);
  c->ccb = cb;
  if (c->closing)
    return;
  c->closing = 1;
  if (c->dial != NULL) {
    sj_dial_cancel(c->dial);
    c->dial = NULL;
  }
  drop_rx(c);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->idle, on_handle_closed);
  if (c->tcp != NULL)
    sj_stream_close(c->tcp, reset, on_tcp_closed);
}

static size_t rc_unsent(const sj_stream_t *s) {
  const relay_client_t *c = (const relay_client_t *)s;
  return c->writing ? c->wlen - c->wacked : 0;
}

static const sj_stream_ops_t relay_client_ops = {
    .read_start = rc_read_start,
    .read_stop = rc_read_stop,
    .try_write = rc_try_write,
    .write = rc_write,
    .shutdown = rc_shutdown,
    .close = rc_close,
    .unsent = rc_unsent,
};

const char *sj_relay_client_why(const sj_stream_t *s) { return RC(s)->why; }
uint64_t sj_relay_client_ignored(const sj_stream_t *s) { return RC(s)->ignored; }

static int check_options(const sj_relay_client_options_t *o) {
  if (o->name == NULL || o->peer == NULL || sj_relay_name_problem(o->name) != NULL ||
      sj_relay_name_problem(o->peer) != NULL || strcmp(o->name, o->peer) == 0)
    return UV_EINVAL;
  if (o->max_message <= SJ_LINK_HEADER || o->hello_ms == 0 || o->keepalive_ms == 0)
    return UV_EINVAL;
  return 0;
}

static uint64_t session_id(void) {
  uint64_t id = 0;
  while (id == 0)
    if (uv_random(NULL, NULL, &id, sizeof id, 0, NULL) != 0)
      id = uv_hrtime() ^ (uint64_t)(uintptr_t)&id;
  return id;
}

int sj_relay_client_new(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *relay,
                        const sj_relay_client_options_t *opts, sj_relay_client_cb cb, void *data,
                        sj_stream_t **out) {
  int rc = check_options(opts);
  if (rc != 0)
    return rc;
  relay_client_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  c->base.ops = &relay_client_ops;
  c->base.loop = loop;
  c->base.pool = pool;
  sj_origin_from_label(&c->base.origin, "relay");
  c->opts = *opts;
  c->name_len = strlen(opts->name);
  c->peer_len = strlen(opts->peer);
  memcpy(c->name, opts->name, c->name_len);
  memcpy(c->peer, opts->peer, c->peer_len);
  c->relay = *relay;
  c->cb = cb;
  c->cb_data = data;
  c->my_id = session_id();
  sj_relay_parser_init_deliveries(&c->rp, opts->max_message);
  rc = sj_dial_start(loop, pool, &c->relay, &c->opts.tcp_keepalive, opts->connect_timeout_s,
                     on_dialed, c, &c->dial);
  if (rc != 0) {
    free(c);
    return rc;
  }
  uv_timer_init(loop, &c->timer);
  uv_idle_init(loop, &c->idle);
  c->timer.data = c->idle.data = c;
  c->open_handles = 2;
  *out = &c->base;
  return 0;
}
