#include "layer_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WBUF_SIZE (64 * 1024)

uint64_t harness_progress;

/* ---- the byte stream ------------------------------------------------------ */

static uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

unsigned char stream_byte(uint64_t seed, uint64_t i) {
  return (unsigned char)(splitmix(seed * 0x100000001b3ULL + i / 8) >> (8 * (i % 8)));
}

static void fill(char *buf, size_t n, uint64_t seed, uint64_t pos) {
  for (size_t i = 0; i < n;) {
    uint64_t w = splitmix(seed * 0x100000001b3ULL + (pos + i) / 8);
    for (unsigned b = (unsigned)((pos + i) % 8); b < 8 && i < n; b++, i++)
      buf[i] = (char)(w >> (8 * b));
  }
}

/* ---- peers ---------------------------------------------------------------- */

void peer_init(peer_t *p, uv_loop_t *loop, uint64_t rseed) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->rseed = rseed;
  p->wbuf = malloc(WBUF_SIZE);
}

void peer_free(peer_t *p) {
  free(p->wbuf);
  p->wbuf = NULL;
}

void peer_layer_cb(sj_stream_t *s, int status, const char *text, void *arg) {
  peer_t *p = arg;
  (void)s;
  harness_progress++;
  if (p->hs_calls++ == 0) {
    p->hs_status = status;
    snprintf(p->hs_text, sizeof p->hs_text, "%s", text != NULL ? text : "");
    return;
  }
  p->late_calls++;
  p->late_status = status;
  snprintf(p->late_text, sizeof p->late_text, "%s", text != NULL ? text : "");
}

int peer_error(const peer_t *p) {
  if (p->hs_calls > 0 && p->hs_status != 0)
    return p->hs_status;
  return p->late_calls > 0 ? p->late_status : 0;
}

const char *peer_error_text(const peer_t *p) {
  if (p->hs_calls > 0 && p->hs_status != 0)
    return p->hs_text;
  return p->late_calls > 0 ? p->late_text : "";
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  peer_t *p = s->data;
  harness_progress++;
  if (c != NULL) {
    for (size_t i = c->off; i < c->len; i++)
      if ((unsigned char)c->data[i] != stream_byte(p->rseed, p->received + i - c->off))
        p->mismatch = 1;
    p->received += c->len - c->off;
    sj_pool_put(s->pool, c);
    return;
  }
  if (status == UV_EOF)
    p->eof = 1;
  else if (status < 0)
    p->read_err = status;
}

void peer_attach(peer_t *p, sj_stream_t *s, int read) {
  p->s = s;
  s->data = p;
  s->on_read = on_read;
  if (read)
    peer_set_reading(p, 1);
}

void peer_set_reading(peer_t *p, int on) {
  if (p->reading == on || p->closed)
    return;
  p->reading = on;
  int rc = on ? sj_stream_read_start(p->s) : sj_stream_read_stop(p->s);
  if (rc != 0)
    p->read_err = rc;
}

static void send_more(peer_t *p);

static void on_shutdown(sj_stream_t *s, int status, void *arg) {
  peer_t *p = arg;
  (void)s;
  harness_progress++;
  p->shut_done = 1;
  p->shut_status = status;
}

static void maybe_shutdown(peer_t *p) {
  if (!p->shut_after || p->shut_started || p->sent < p->to_send || p->closed)
    return;
  p->shut_started = 1;
  int rc = sj_stream_shutdown(p->s, on_shutdown, p);
  if (rc == SJ_DONE)
    on_shutdown(p->s, 0, p);
  else if (rc < 0)
    on_shutdown(p->s, rc, p);
}

static void on_write(sj_stream_t *s, int status, void *arg) {
  peer_t *p = arg;
  (void)s;
  harness_progress++;
  p->writing = 0;
  if (status < 0) {
    p->write_err = status;
    return;
  }
  p->sent += p->wlen - p->wtaken;
  send_more(p);
}

/* Writes as the pump does: try_write first, then one write for the rest.
 * Piece sizes vary, so that layer frames fall everywhere. */
static void send_more(peer_t *p) {
  if (p->sending)
    return;
  p->sending = 1;
  while (!p->writing && !p->closed && p->write_err == 0 && p->sent < p->to_send) {
    uint64_t left = p->to_send - p->sent;
    size_t n = 1 + (size_t)(splitmix(p->seed ^ p->sent) % WBUF_SIZE);
    n = n < left ? n : (size_t)left;
    fill(p->wbuf, n, p->seed, p->sent);
    int t = sj_stream_try_write(p->s, p->wbuf, n);
    if (t == UV_EAGAIN || t == UV_ENOSYS)
      t = 0;
    if (t < 0) {
      p->write_err = t;
      break;
    }
    if ((size_t)t == n) {
      p->sent += n;
      continue;
    }
    p->wlen = n;
    p->wtaken = (size_t)t;
    p->sent += (size_t)t;
    int rc = sj_stream_write(p->s, p->wbuf + t, n - (size_t)t, on_write, p);
    if (rc != 0) {
      p->write_err = rc;
      break;
    }
    p->writing = 1;
  }
  p->sending = 0;
  maybe_shutdown(p);
}

void peer_send(peer_t *p, uint64_t n, uint64_t seed, int shut_after) {
  p->seed = seed;
  p->to_send = n;
  p->shut_after = shut_after;
  send_more(p);
}

static void on_closed(sj_stream_t *s) {
  peer_t *p = s->data;
  harness_progress++;
  p->closed = 2;
}

void peer_close(peer_t *p, int reset) {
  if (p->closed)
    return;
  p->closed = 1;
  sj_stream_close(p->s, reset, on_closed);
}

/* ---- the loop ------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned ms) {
  uv_timer_t timer;
  int expired = 0;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, on_deadline, ms, 0);
  while (!pred(arg) && !expired)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return pred(arg) ? 0 : -1;
}

void settle(uv_loop_t *loop) {
  int quiet = 0;
  for (int round = 0; round < 1000000 && quiet < 50; round++) {
    uint64_t before = harness_progress;
    uv_run(loop, UV_RUN_NOWAIT);
    quiet = harness_progress == before ? quiet + 1 : 0;
  }
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Everything a test opened must be closed by now: what is left is closed
 * by force (leaking whatever owns it) and reported. */
int loop_finish(uv_loop_t *loop) {
  settle(loop);
  int leftover = uv_loop_alive(loop);
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  return leftover ? -1 : uv_loop_close(loop);
}

/* ---- connections ---------------------------------------------------------- */

static int wrap(uv_loop_t *loop, sj_pool_t *pool, int fds[2], sj_stream_t **a, sj_stream_t **b) {
  int rc = sj_uvstream_open(loop, pool, fds[0], 1, a);
  if (rc == 0 && (rc = sj_uvstream_open(loop, pool, fds[1], 1, b)) != 0)
    sj_stream_close(*a, 0, NULL);
  return rc;
}

int socket_pair(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **a, sj_stream_t **b, int fds[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return -1;
  return wrap(loop, pool, fds, a, b);
}

int tcp_pair(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **a, sj_stream_t **b, int fds[2]) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr *)&sa, &len) != 0)
    return -1;
  fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fds[0], (struct sockaddr *)&sa, sizeof sa) != 0)
    return -1;
  fds[1] = accept(l, NULL, NULL);
  close(l);
  return fds[1] < 0 ? -1 : wrap(loop, pool, fds, a, b);
}

/* ---- the middleman -------------------------------------------------------- */

static void mitm_flush(mitm_t *m, int d);

static void mitm_on_write(sj_stream_t *s, int status, void *arg) {
  mitm_t *m = arg;
  int d = s == m->end[1] ? 0 : 1; /* written to end[1]: direction 0 */
  m->writing[d] = 0;
  harness_progress++;
  if (m->closed)
    return;
  sj_chunk_t *c = m->q[d];
  m->q[d] = c->next;
  if (m->q[d] == NULL)
    m->qt[d] = NULL;
  sj_pool_put(s->pool, c);
  if (status == 0)
    mitm_flush(m, d);
}

static void on_mitm_shut(sj_stream_t *s, int status, void *arg) {
  (void)s;
  (void)status;
  (void)arg;
}

static void mitm_flush(mitm_t *m, int d) {
  sj_stream_t *to = m->end[1 - d];
  if (m->writing[d] || m->closed)
    return;
  if (m->q[d] != NULL) {
    sj_chunk_t *c = m->q[d];
    if (sj_stream_write(to, c->data + c->off, c->len - c->off, mitm_on_write, m) == 0)
      m->writing[d] = 1;
    return;
  }
  if (m->eof[d] && !m->shut[d]) {
    m->shut[d] = 1;
    sj_stream_shutdown(to, on_mitm_shut, m);
  }
}

static void mitm_on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  mitm_t *m = s->data;
  int d = s == m->end[0] ? 0 : 1;
  harness_progress++;
  if (c == NULL) {
    if (status == UV_EOF)
      m->eof[d] = 1;
    mitm_flush(m, d);
    return;
  }
  size_t n = c->len - c->off;
  if (m->flip_at[d] >= m->passed[d] && m->flip_at[d] < m->passed[d] + n)
    c->data[c->off + (m->flip_at[d] - m->passed[d])] ^= 0x01;
  if (d == 1 && m->recording) {
    if (m->record_len + n > m->record_cap) {
      m->record_cap = (m->record_len + n) * 2;
      m->record = realloc(m->record, m->record_cap);
    }
    memcpy(m->record + m->record_len, c->data + c->off, n);
    m->record_len += n;
  }
  m->passed[d] += n;
  c->next = NULL;
  if (m->qt[d] != NULL)
    m->qt[d]->next = c;
  else
    m->q[d] = c;
  m->qt[d] = c;
  mitm_flush(m, d);
}

void mitm_start(mitm_t *m, sj_stream_t *x, sj_stream_t *y) {
  m->end[0] = x;
  m->end[1] = y;
  for (int d = 0; d < 2; d++) {
    m->end[d]->data = m;
    m->end[d]->on_read = mitm_on_read;
    sj_stream_read_start(m->end[d]);
  }
}

void mitm_close(mitm_t *m) {
  if (m->closed)
    return;
  m->closed = 1;
  for (int d = 0; d < 2; d++) {
    while (m->q[d] != NULL) {
      sj_chunk_t *c = m->q[d];
      m->q[d] = c->next;
      if (!m->writing[d])
        sj_pool_put(m->end[d]->pool, c);
      /* a chunk under a write is cancelled with the stream; the write
       * callback sees closed and leaves it: it is freed below */
      else
        free(c);
      m->writing[d] = 0;
    }
    sj_stream_close(m->end[d], 1, NULL);
  }
  free(m->record);
  m->record = NULL;
}

/* ---- raw ends ------------------------------------------------------------- */

typedef struct {
  sj_stream_t *s;
  sj_chunk_t *c;
} echo_write_t;

static void on_echo_write(sj_stream_t *s, int status, void *arg) {
  (void)status;
  sj_pool_put(s->pool, arg);
  harness_progress++;
}

static void on_echo_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  harness_progress++;
  if (c == NULL) {
    (void)status;
    return;
  }
  /* Echo ends only see small handshakes: each chunk is its own write. */
  if (sj_stream_write(s, c->data + c->off, c->len - c->off, on_echo_write, c) != 0)
    sj_pool_put(s->pool, c);
}

void raw_echo(sj_stream_t *s) {
  s->on_read = on_echo_read;
  sj_stream_read_start(s);
}

static void on_raw_write(sj_stream_t *s, int status, void *arg) {
  (void)s;
  (void)status;
  free(arg);
  harness_progress++;
}

static void on_raw_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  (void)status;
  harness_progress++;
  if (c != NULL)
    sj_pool_put(s->pool, c);
}

void raw_sink(sj_stream_t *s) {
  s->on_read = on_raw_read;
  sj_stream_read_start(s);
}

void raw_write(sj_stream_t *s, const void *buf, size_t len) {
  char *copy = malloc(len);
  memcpy(copy, buf, len);
  s->on_read = on_raw_read;
  sj_stream_read_start(s);
  if (sj_stream_write(s, copy, len, on_raw_write, copy) != 0)
    free(copy);
}
