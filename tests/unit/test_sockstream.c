/*
 * The edge-triggered socket stream (sockstream.c) and its poller (poller.c),
 * against real sockets: socketpair(AF_UNIX), TCP on 127.0.0.1 port 0 and a
 * Unix path.
 *
 * The stream under test faces a "peer": a plain non-blocking socket the test
 * reads and writes itself, with bytes of a pattern that depends on the
 * stream offset, so that every byte is checked where it arrives. Every wait
 * turns the loop without blocking and then polls the loop's backend and the
 * peers' sockets for at most a few milliseconds, until a condition holds or a
 * deadline passes (WAIT_FOR). Where a test asserts that something does NOT
 * happen, it first lets the loop settle (nothing ready, no deferred work)
 * and then turns it for a short bounded time more.
 *
 * Every test's teardown closes what is left, runs the loop dry, checks that
 * uv_run(UV_RUN_DEFAULT) returns, that uv_loop_close() succeeds and that the
 * process has as many descriptors open as before the test: the poller must
 * leave nothing behind.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "poller.h"
#include "sockstream.h"

#ifndef WAIT_MS
#define WAIT_MS 20000 /* every wait's deadline; generous for sanitizer builds */
#endif
#define MIB (1024 * 1024)
#define MAX_ENDS 8
#define MAX_PEERS 8
#define MAX_TIMERS 4

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

/* ---- the byte pattern ---------------------------------------------------- */

/* Byte off of the stream seed: any slice can be made or checked alone. */
static uint8_t pat(uint64_t seed, uint64_t off) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + (off >> 3) * 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 31;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 29;
  return (uint8_t)(x >> (8 * (off & 7)));
}

static void pat_fill(char *buf, uint64_t seed, uint64_t off, size_t n) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)pat(seed, off + i);
}

/* 1 when buf is the slice of seed at off. */
static int pat_check(const char *buf, uint64_t seed, uint64_t off, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((uint8_t)buf[i] != pat(seed, off + i))
      return 0;
  return 1;
}

/* ---- the peer: a plain socket the test drives ---------------------------- */

typedef struct {
  int fd;
  /* sending: tx_total bytes of tx_seed, then a FIN if fin_after */
  uint64_t tx_seed, tx_total, tx_done;
  int fin_after, fin_sent, tx_err;
  /* receiving (when reading): must be rx_seed's bytes, at most rx_limit */
  int reading;
  uint64_t rx_seed, rx_bytes, rx_limit;
  int rx_mismatch, rx_eof, rx_err;
  int nocheck; /* count the bytes only */
} peer_t;

/* Sends what the socket takes now. */
static void peer_send(peer_t *p) {
  char buf[64 * 1024];
  while (p->tx_err == 0 && p->tx_done < p->tx_total) {
    size_t n = p->tx_total - p->tx_done;
    if (n > sizeof buf)
      n = sizeof buf;
    pat_fill(buf, p->tx_seed, p->tx_done, n);
    ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN)
      p->tx_err = -errno;
    if (w <= 0)
      return;
    p->tx_done += (uint64_t)w;
  }
  if (p->tx_err == 0 && p->fin_after && !p->fin_sent && p->tx_done == p->tx_total) {
    assert_int_equal(shutdown(p->fd, SHUT_WR), 0);
    p->fin_sent = 1;
  }
}

/* Receives what is there, up to rx_limit. */
static void peer_recv(peer_t *p) {
  char buf[64 * 1024];
  while (p->reading && !p->rx_eof && p->rx_err == 0 && p->rx_bytes < p->rx_limit) {
    size_t n = sizeof buf;
    if (n > p->rx_limit - p->rx_bytes)
      n = (size_t)(p->rx_limit - p->rx_bytes);
    ssize_t r = recv(p->fd, buf, n, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno != EAGAIN)
      p->rx_err = -errno;
    if (r == 0)
      p->rx_eof = 1;
    if (r <= 0)
      return;
    if (!p->nocheck && !pat_check(buf, p->rx_seed, p->rx_bytes, (size_t)r))
      p->rx_mismatch = 1;
    p->rx_bytes += (uint64_t)r;
  }
}

static void peer_step(peer_t *p) {
  if (p->fd < 0)
    return;
  peer_send(p);
  peer_recv(p);
}

static void peer_send_more(peer_t *p, uint64_t n, int fin_after) {
  p->tx_total += n;
  p->fin_after = fin_after;
  peer_send(p);
}

static void peer_read(peer_t *p, uint64_t limit) {
  p->reading = 1;
  p->rx_limit = limit;
}

/* ---- a stream under test ------------------------------------------------- */

typedef struct fx fx_t;

typedef struct {
  fx_t *fx;
  sj_stream_t *s;
  int open;
  /* the order of completions: k connect, w write, s shutdown, c close */
  char log[16];
  int in_call;  /* inside one of the stream's operations */
  int sync_cbs; /* callbacks that came from inside an operation */
  /* data mode */
  uint64_t rx_seed, rx_bytes;
  int chunks, mismatch, eof, rd_err, after_end;
  uint64_t eof_at;       /* rx_bytes when the end came */
  int stop_after_chunks; /* read_stop from the callback after this many */
  /* notify mode */
  int readable_calls;
  size_t take;      /* bytes to read per notification; 0: until dry */
  int call_pending; /* say input_pending when stopping short */
  int stop_on_notify;
  /* completions */
  int connect_cbs, connect_status;
  int write_cbs, write_status;
  int shut_cbs, shut_status;
  int close_cbs;
  int rewrite;      /* writes to issue from the write callback */
  int wrong_stream; /* callbacks naming another stream */
  int convert;      /* sj_sockstream_to_uv from the connect callback */
  int convert_rc;
  sj_stream_t *converted;
  int close_at_end; /* close from the read callback at the end of input */
  char *wbuf;
  size_t wlen;
} end_t;

typedef struct {
  uv_timer_t t;
  end_t *e;
  int used, fired, closed, rc;
} test_timer_t;

struct fx {
  uv_loop_t loop;
  sj_pool_t pool;
  int fds_before;
  end_t ends[MAX_ENDS];
  int nends;
  peer_t peers[MAX_PEERS];
  int npeers;
  test_timer_t timers[MAX_TIMERS];
  int extra_fds[4];
  char dir[64];
};

static void log_event(end_t *e, char what) {
  size_t n = strlen(e->log);
  if (n + 1 < sizeof e->log)
    e->log[n] = what;
  if (e->in_call)
    e->sync_cbs++;
}

static void on_stream_closed(sj_stream_t *s);

static void on_stream_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  end_t *e = s->data;
  if (e->in_call)
    e->sync_cbs++;
  if (e->eof || e->rd_err) {
    e->after_end++;
    if (c != NULL)
      sj_pool_put(s->pool, c);
    return;
  }
  if (status == SJ_READABLE) {
    e->readable_calls++;
    char buf[64 * 1024];
    size_t want = e->take > 0 ? e->take : sizeof buf;
    ssize_t r;
    for (;;) {
      r = recv(sj_stream_fileno(s), buf, want, MSG_DONTWAIT);
      if (r > 0) {
        if (!pat_check(buf, e->rx_seed, e->rx_bytes, (size_t)r))
          e->mismatch = 1;
        e->rx_bytes += (uint64_t)r;
      }
      if (r == 0) {
        e->eof = 1;
        e->eof_at = e->rx_bytes;
      }
      if (r <= 0 || e->take > 0)
        break;
    }
    if (e->stop_on_notify)
      sj_stream_read_stop(s);
    /* Stopped short (took its share, not "dry"): say so, if told to. */
    if (e->take > 0 && e->call_pending && r == (ssize_t)e->take)
      sj_stream_input_pending(s);
    return;
  }
  if (status == UV_EOF) {
    e->eof = 1;
    e->eof_at = e->rx_bytes;
    if (e->close_at_end) {
      sj_stream_close(s, 0, on_stream_closed);
      e->open = 0;
    }
    return;
  }
  if (status < 0) {
    e->rd_err = status;
    return;
  }
  size_t n = c->len - c->off;
  if (!pat_check(c->data + c->off, e->rx_seed, e->rx_bytes, n))
    e->mismatch = 1;
  e->rx_bytes += n;
  e->chunks++;
  sj_pool_put(s->pool, c);
  if (e->stop_after_chunks > 0 && e->chunks == e->stop_after_chunks)
    sj_stream_read_stop(s);
}

static void on_stream_write(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  if (s != e->s)
    e->wrong_stream++;
  log_event(e, 'w');
  e->write_cbs++;
  e->write_status = status;
  if (e->rewrite > 0 && status == 0) {
    e->rewrite--;
    e->in_call = 1;
    int rc = sj_stream_write(s, e->wbuf, e->wlen, on_stream_write, e);
    e->in_call = 0;
    assert_int_equal(rc, 0);
  }
}

static void on_stream_shutdown(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  if (s != e->s)
    e->wrong_stream++;
  log_event(e, 's');
  e->shut_cbs++;
  e->shut_status = status;
}

static void on_stream_closed(sj_stream_t *s) {
  end_t *e = s->data;
  log_event(e, 'c');
  e->close_cbs++;
}

static void on_stream_connect(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  if (s != e->s)
    e->wrong_stream++;
  log_event(e, 'k');
  e->connect_cbs++;
  e->connect_status = status;
  /* Made into a libuv stream from inside its own callback. */
  if (e->convert && status == 0) {
    e->convert_rc = sj_sockstream_to_uv(s, &e->converted);
    e->open = 0;
  }
}

/* ---- the fixture --------------------------------------------------------- */

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

static void peers_step(fx_t *fx) {
  for (int i = 0; i < fx->npeers; i++)
    peer_step(&fx->peers[i]);
}

/* Waits at most 5 ms for the loop's backend or a peer to have something. */
static void loop_wait(fx_t *fx) {
  struct pollfd pfd[1 + MAX_PEERS];
  int n = 0;
  pfd[n++] = (struct pollfd){.fd = uv_backend_fd(&fx->loop), .events = POLLIN};
  for (int i = 0; i < fx->npeers; i++) {
    peer_t *p = &fx->peers[i];
    short ev = 0;
    if (p->fd >= 0 && p->tx_done < p->tx_total && p->tx_err == 0)
      ev |= POLLOUT;
    if (p->fd >= 0 && p->reading && !p->rx_eof && p->rx_err == 0 && p->rx_bytes < p->rx_limit)
      ev |= POLLIN;
    if (ev != 0)
      pfd[n++] = (struct pollfd){.fd = p->fd, .events = ev};
  }
  int timeout = uv_backend_timeout(&fx->loop);
  if (timeout < 0 || timeout > 5)
    timeout = 5;
  poll(pfd, (nfds_t)n, timeout);
}

/* Turns the loop (and the peers) until expr holds; fails after ms. */
#define WAIT_FOR_MS(fx, expr, ms)                                                                  \
  do {                                                                                             \
    uint64_t deadline_ = mono_ms() + (ms);                                                         \
    for (;;) {                                                                                     \
      uv_run(&(fx)->loop, UV_RUN_NOWAIT);                                                          \
      peers_step(fx);                                                                              \
      if (expr)                                                                                    \
        break;                                                                                     \
      if (mono_ms() >= deadline_)                                                                  \
        fail_msg("%s:%d: timed out after %d ms waiting for %s", __FILE__, __LINE__, (int)(ms),     \
                 #expr);                                                                           \
      loop_wait(fx);                                                                               \
    }                                                                                              \
  } while (0)

#define WAIT_FOR(fx, expr) WAIT_FOR_MS(fx, expr, WAIT_MS)

/* Turns the loop until it has nothing ready and no deferred work, then for
 * ms more (bounded: for checks that something does not happen). */
static void settle(fx_t *fx, unsigned ms) {
  for (int i = 0; i < 10000; i++) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    peers_step(fx);
    struct pollfd pfd = {.fd = uv_backend_fd(&fx->loop), .events = POLLIN};
    if (poll(&pfd, 1, 0) == 0 && uv_backend_timeout(&fx->loop) != 0)
      break;
  }
  uint64_t deadline = mono_ms() + ms;
  while (mono_ms() < deadline) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    peers_step(fx);
    loop_wait(fx);
  }
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  assert_non_null(fx);
  fx->fds_before = count_fds();
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  sj_pool_init(&fx->pool, SJ_CHUNK_SIZE, 4);
  for (int i = 0; i < 4; i++)
    fx->extra_fds[i] = -1;
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  for (int i = 0; i < fx->nends; i++) {
    end_t *e = &fx->ends[i];
    if (e->open && e->close_cbs == 0 && strchr(e->log, 'c') == NULL)
      sj_stream_close(e->s, 0, on_stream_closed);
  }
  for (int i = 0; i < fx->npeers; i++)
    if (fx->peers[i].fd >= 0)
      close(fx->peers[i].fd);
  fx->npeers = 0;
  for (int i = 0; i < 4; i++)
    if (fx->extra_fds[i] >= 0)
      close(fx->extra_fds[i]);
  for (int i = 0; i < MAX_TIMERS; i++)
    if (fx->timers[i].used && !uv_is_closing((uv_handle_t *)&fx->timers[i].t))
      uv_close((uv_handle_t *)&fx->timers[i].t, NULL);
  WAIT_FOR(fx, !uv_loop_alive(&fx->loop));
  /* Nothing of the poller may keep the loop: this returns at once. */
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  sj_pool_drain(&fx->pool);
  for (int i = 0; i < fx->nends; i++)
    free(fx->ends[i].wbuf);
  if (fx->dir[0] != '\0')
    rmdir(fx->dir);
  assert_int_equal(count_fds(), fx->fds_before);
  free(fx);
  return 0;
}

static end_t *new_end(fx_t *fx) {
  assert_true(fx->nends < MAX_ENDS);
  end_t *e = &fx->ends[fx->nends++];
  memset(e, 0, sizeof *e);
  e->fx = fx;
  return e;
}

static void end_attach(end_t *e, sj_stream_t *s) {
  e->s = s;
  e->open = 1;
  s->data = e;
  s->on_read = on_stream_read;
}

static peer_t *new_peer(fx_t *fx, int fd) {
  assert_true(fx->npeers < MAX_PEERS);
  peer_t *p = &fx->peers[fx->npeers++];
  memset(p, 0, sizeof *p);
  p->fd = fd;
  return p;
}

static void set_buffers(int fd, int size) {
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size), 0);
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size), 0);
}

/* A TCP listener on 127.0.0.1, port 0; its address in sin. */
static int tcp_listener(struct sockaddr_in *sin, int buf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  /* Accepted sockets inherit the sizes, set before the handshake. */
  if (buf > 0)
    set_buffers(fd, buf);
  *sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof *sin), 0);
  assert_int_equal(listen(fd, 16), 0);
  socklen_t len = sizeof *sin;
  assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
  return fd;
}

/* A connected pair of non-blocking sockets: [0] for the stream, [1] for the
 * peer. buf > 0 sets both buffer sizes before connecting. */
static void socket_pair(int tcp, int buf, int sv[2]) {
  if (!tcp) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    if (buf > 0) {
      set_buffers(sv[0], buf);
      set_buffers(sv[1], buf);
    }
    return;
  }
  struct sockaddr_in sin;
  int l = tcp_listener(&sin, buf);
  int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(c >= 0);
  if (buf > 0)
    set_buffers(c, buf);
  assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof sin), 0);
  int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(a >= 0);
  close(l);
  assert_int_equal(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK), 0);
  sv[0] = a;
  sv[1] = c;
}

/* A sockstream over a fresh connected pair; the other end is the peer's.
 * Bytes from the peer are seed 2, bytes to it seed 1. */
static end_t *open_pair(fx_t *fx, int tcp, int buf, peer_t **peer) {
  int sv[2];
  socket_pair(tcp, buf, sv);
  sj_stream_t *s;
  assert_int_equal(sj_sockstream_open(&fx->loop, &fx->pool, sv[0], tcp, &s), 0);
  end_t *e = new_end(fx);
  end_attach(e, s);
  e->rx_seed = 2;
  peer_t *p = new_peer(fx, sv[1]);
  p->tx_seed = 2;
  p->rx_seed = 1;
  *peer = p;
  return e;
}

static void close_peer(peer_t *p) {
  close(p->fd);
  p->fd = -1;
}

/* Writes len bytes of seed 1 from stream offset off; the return code. */
static int end_write(end_t *e, uint64_t off, size_t len) {
  free(e->wbuf);
  e->wbuf = malloc(len > 0 ? len : 1);
  assert_non_null(e->wbuf);
  pat_fill(e->wbuf, 1, off, len);
  e->wlen = len;
  e->in_call = 1;
  int rc = sj_stream_write(e->s, e->wbuf, len, on_stream_write, e);
  e->in_call = 0;
  return rc;
}

static int end_read_start(end_t *e) {
  e->in_call = 1;
  int rc = sj_stream_read_start(e->s);
  e->in_call = 0;
  return rc;
}

static int end_poll_start(end_t *e) {
  e->in_call = 1;
  int rc = sj_stream_poll_start(e->s);
  e->in_call = 0;
  return rc;
}

static void end_input_pending(end_t *e) {
  e->in_call = 1;
  sj_stream_input_pending(e->s);
  e->in_call = 0;
}

static int end_shutdown(end_t *e) {
  e->in_call = 1;
  int rc = sj_stream_shutdown(e->s, on_stream_shutdown, e);
  e->in_call = 0;
  return rc;
}

static void end_close(end_t *e, int reset) {
  e->in_call = 1;
  sj_stream_close(e->s, reset, on_stream_closed);
  e->in_call = 0;
  e->open = 0;
}

static void close_and_wait(fx_t *fx, end_t *e) {
  end_close(e, 0);
  WAIT_FOR(fx, e->close_cbs == 1);
}

/* ---- timers of the test's own -------------------------------------------- */

static void on_timer_read_start(uv_timer_t *t) {
  test_timer_t *tt = t->data;
  tt->fired++;
  tt->rc = end_read_start(tt->e);
}

static void on_timer_closed(uv_handle_t *h) {
  test_timer_t *tt = h->data;
  tt->closed = 1;
}

static void stop_timer(fx_t *fx, test_timer_t *tt) {
  uv_close((uv_handle_t *)&tt->t, on_timer_closed);
  WAIT_FOR(fx, tt->closed);
  memset(tt, 0, sizeof *tt);
}

static test_timer_t *start_timer(fx_t *fx, end_t *e, uv_timer_cb cb, uint64_t ms) {
  test_timer_t *tt = NULL;
  for (int i = 0; i < MAX_TIMERS && tt == NULL; i++)
    if (!fx->timers[i].used)
      tt = &fx->timers[i];
  assert_non_null(tt);
  tt->used = 1;
  tt->e = e;
  assert_int_equal(uv_timer_init(&fx->loop, &tt->t), 0);
  tt->t.data = tt;
  assert_int_equal(uv_timer_start(&tt->t, cb, ms, 0), 0);
  return tt;
}

/* ==== 1. data in order, and the end of input ============================= */

static void read_all_case(fx_t *fx, int tcp) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, 0, &p);
  const uint64_t total = 6 * MIB + 777;
  assert_int_equal(end_read_start(e), 0);
  peer_send_more(p, total, 1);
  WAIT_FOR(fx, e->eof || e->rd_err != 0);
  assert_int_equal(e->rd_err, 0);
  assert_int_equal(e->mismatch, 0);
  assert_true(e->rx_bytes == total);
  assert_true(e->eof_at == total);
  assert_true(e->chunks >= (int)(total / SJ_CHUNK_SIZE));
  settle(fx, 20);
  assert_int_equal(e->after_end, 0);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
  assert_string_equal(e->log, "c");
}

static void test_read_all_unix(void **state) { read_all_case(*state, 0); }
static void test_read_all_tcp(void **state) { read_all_case(*state, 1); }

/* Data and FIN are both in the socket, and their edge consumed, before
 * reading starts: the short read of the data must not be taken as "the
 * socket is dry" (no further edge will come), or the end is never seen. */
static void eof_before_reading_case(fx_t *fx, int tcp, uint64_t len, int open_first) {
  int sv[2];
  socket_pair(tcp, 0, sv);
  peer_t *p = new_peer(fx, sv[1]);
  p->tx_seed = 2;
  sj_stream_t *s;
  if (open_first) {
    assert_int_equal(sj_sockstream_open(&fx->loop, &fx->pool, sv[0], tcp, &s), 0);
    settle(fx, 0);
  }
  peer_send_more(p, len, 1);
  assert_true(p->fin_sent);
  if (!open_first)
    assert_int_equal(sj_sockstream_open(&fx->loop, &fx->pool, sv[0], tcp, &s), 0);
  end_t *e = new_end(fx);
  end_attach(e, s);
  e->rx_seed = 2;
  /* The edge of data and FIN is taken now, while nobody reads. */
  settle(fx, 10);
  assert_int_equal(e->chunks + e->eof, 0);
  assert_int_equal(end_read_start(e), 0);
  WAIT_FOR(fx, e->eof || e->rd_err != 0);
  assert_int_equal(e->rd_err, 0);
  assert_int_equal(e->mismatch, 0);
  assert_true(e->rx_bytes == len);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
}

static void test_eof_with_data_before_reading_unix(void **state) {
  eof_before_reading_case(*state, 0, 1000, 0);
  eof_before_reading_case(*state, 0, 1000, 1);
}

static void test_eof_with_data_before_reading_tcp(void **state) {
  eof_before_reading_case(*state, 1, 1000, 0);
  eof_before_reading_case(*state, 1, 1000, 1);
}

/* More than a chunk, so that the short read is the last of several. */
static void test_eof_with_more_than_a_chunk_before_reading(void **state) {
  eof_before_reading_case(*state, 0, SJ_CHUNK_SIZE + 100, 1);
  eof_before_reading_case(*state, 1, 3 * SJ_CHUNK_SIZE + 100, 1);
}

/* More input waiting than one burst of reads takes, and no more coming:
 * the rest must be read on later turns without a new edge. Small chunks
 * make a burst smaller than what the socket holds. */
static void test_more_than_a_burst_waiting(void **state) {
  fx_t *fx = *state;
  sj_pool_init(&fx->pool, 4096, 4);
  for (int tcp = 0; tcp < 2; tcp++) {
    peer_t *p;
    end_t *e = open_pair(fx, tcp, 0, &p);
    peer_send_more(p, 64 * MIB, 0);
    const uint64_t total = p->tx_done;
    p->tx_total = total;
    assert_true(total > 2 * 16 * 4096); /* two bursts (SJ_READ_BURST) */
    settle(fx, 0);
    assert_int_equal(end_read_start(e), 0);
    WAIT_FOR(fx, e->rx_bytes == total);
    assert_int_equal(e->mismatch, 0);
    assert_int_equal(e->eof + e->rd_err, 0);
    close_and_wait(fx, e);
  }
}

/* Only a FIN. */
static void test_eof_alone_before_reading(void **state) {
  eof_before_reading_case(*state, 0, 0, 1);
  eof_before_reading_case(*state, 1, 0, 0);
}

/* The peer resets: an error ends reading, and nothing comes after it. */
static void test_read_error_on_reset(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 1, 0, &p);
  assert_int_equal(end_read_start(e), 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  assert_int_equal(setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(p->fd);
  p->fd = -1;
  WAIT_FOR(fx, e->eof || e->rd_err != 0);
  assert_int_equal(e->rd_err, UV_ECONNRESET);
  settle(fx, 10);
  assert_int_equal(e->after_end, 0);
  close_and_wait(fx, e);
}

/* ==== 2. read_stop, then read_start from outside any callback ============= */

static void on_timer_resume(uv_timer_t *t) {
  test_timer_t *tt = t->data;
  tt->fired++;
  tt->e->stop_after_chunks = tt->e->chunks + 1;
  tt->rc = end_read_start(tt->e);
}

static void stop_resume_case(fx_t *fx, int tcp) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, 0, &p);
  /* Everything the sockets hold, sent before reading starts; nothing more
   * arrives afterwards, so no new edge can help. */
  peer_send_more(p, 64 * MIB, 0);
  const uint64_t total = p->tx_done;
  p->tx_total = total;
  assert_true(total > 2 * SJ_CHUNK_SIZE);
  e->stop_after_chunks = 1;
  assert_int_equal(end_read_start(e), 0);
  WAIT_FOR(fx, e->chunks == 1);
  settle(fx, 10);
  assert_int_equal(e->chunks, 1);
  assert_true(e->rx_bytes < total);
  /* Resume from a timer, a chunk at a time, several times; then for good. */
  int resumes = 0;
  while (e->rx_bytes < total && resumes < 4) {
    test_timer_t *tt = start_timer(fx, e, on_timer_resume, 1);
    WAIT_FOR(fx, tt->fired == 1 && (e->chunks == e->stop_after_chunks || e->rx_bytes == total));
    assert_int_equal(tt->rc, 0);
    stop_timer(fx, tt);
    resumes++;
  }
  e->stop_after_chunks = 0;
  test_timer_t *tt = start_timer(fx, e, on_timer_read_start, 1);
  WAIT_FOR(fx, e->rx_bytes == total);
  assert_int_equal(tt->rc, 0);
  stop_timer(fx, tt);
  assert_true(resumes >= 2);
  assert_int_equal(e->mismatch, 0);
  assert_true(p->tx_done == total);
  assert_int_equal(e->eof + e->rd_err, 0);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
}

static void test_read_stop_resume_from_timer_unix(void **state) { stop_resume_case(*state, 0); }
static void test_read_stop_resume_from_timer_tcp(void **state) { stop_resume_case(*state, 1); }

/* ==== 3. notify mode ======================================================= */

/* The callee takes part of the input and says input_pending: it is told
 * again until the socket is dry, then not again until new input. */
static void test_notify_input_pending(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  e->take = 1000;
  e->call_pending = 1;
  peer_send_more(p, 10000, 0);
  assert_int_equal(end_poll_start(e), 0);
  WAIT_FOR(fx, e->rx_bytes == 10000);
  settle(fx, 20);
  /* Ten reads of 1000 took it all; the eleventh found nothing (EAGAIN) and
   * did not ask again. */
  assert_int_equal(e->readable_calls, 11);
  assert_int_equal(e->chunks, 0);
  assert_int_equal(e->mismatch, 0);
  peer_send_more(p, 1, 0);
  WAIT_FOR(fx, e->rx_bytes == 10001);
  assert_int_equal(e->readable_calls, 12);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
}

/* The contract without input_pending: a callee that neither drains the
 * socket nor says input_pending is NOT told again while that input waits
 * (the edge was spent); new input, or input_pending from anywhere, tells it
 * again. */
static void test_notify_without_input_pending(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 1, 0, &p);
  e->take = 1000;
  peer_send_more(p, 10000, 0);
  assert_int_equal(end_poll_start(e), 0);
  WAIT_FOR(fx, e->readable_calls == 1);
  settle(fx, 30);
  assert_int_equal(e->readable_calls, 1);
  assert_true(e->rx_bytes == 1000);
  peer_send_more(p, 500, 0);
  WAIT_FOR(fx, e->readable_calls == 2);
  settle(fx, 10);
  assert_int_equal(e->readable_calls, 2);
  assert_true(e->rx_bytes == 2000);
  /* input_pending from outside any callback brings the rest. */
  e->call_pending = 1;
  end_input_pending(e);
  WAIT_FOR(fx, e->rx_bytes == 10500);
  assert_int_equal(e->mismatch, 0);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
}

/* read_stop ends notify mode (even with input_pending said after it), and
 * data mode; read_start and poll_start switch between them. */
static void test_read_stop_ends_both_modes(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  e->take = 1000;
  e->call_pending = 1;
  e->stop_on_notify = 1;
  peer_send_more(p, 5000, 0);
  assert_int_equal(end_poll_start(e), 0);
  WAIT_FOR(fx, e->readable_calls == 1);
  peer_send_more(p, 1000, 0);
  settle(fx, 30);
  assert_int_equal(e->readable_calls, 1);
  assert_true(e->rx_bytes == 1000);
  /* Data mode takes the rest as chunks, from where notify mode left off. */
  assert_int_equal(end_read_start(e), 0);
  WAIT_FOR(fx, e->rx_bytes == 6000);
  assert_true(e->chunks >= 1);
  assert_int_equal(e->readable_calls, 1);
  assert_int_equal(sj_stream_read_stop(e->s), 0);
  int chunks = e->chunks;
  peer_send_more(p, 700, 0);
  settle(fx, 30);
  assert_int_equal(e->chunks, chunks);
  assert_true(e->rx_bytes == 6000);
  /* Back to notify mode: the waiting 700 bytes (their edge came while
   * stopped) are reported. */
  e->take = 0;
  e->stop_on_notify = 0;
  assert_int_equal(end_poll_start(e), 0);
  WAIT_FOR(fx, e->rx_bytes == 6700);
  assert_int_equal(e->readable_calls, 2);
  assert_int_equal(e->chunks, chunks);
  assert_int_equal(e->mismatch, 0);
  close_and_wait(fx, e);
}

/* Data and FIN before notify mode starts: one notification, in which the
 * callee reads to the end. */
static void test_notify_eof(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 1, 0, &p);
  peer_send_more(p, 3000, 1);
  settle(fx, 10);
  assert_int_equal(end_poll_start(e), 0);
  WAIT_FOR(fx, e->eof);
  assert_true(e->rx_bytes == 3000);
  assert_int_equal(e->readable_calls, 1);
  assert_int_equal(e->mismatch, 0);
  close_and_wait(fx, e);
}

/* ==== 4. a write larger than the socket buffers ============================ */

#define SMALL_BUF (64 * 1024)

static void big_write_case(fx_t *fx, int tcp) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, SMALL_BUF, &p);
  const size_t len = 4 * MIB;
  assert_int_equal(end_write(e, 0, len), 0);
  assert_int_equal(e->write_cbs, 0);
  settle(fx, 30);
  /* The peer reads nothing: the write stays in flight, part of it sent. */
  assert_int_equal(e->write_cbs, 0);
  size_t unsent = sj_stream_unsent(e->s, len);
  assert_true(unsent > 0 && unsent < len);
  /* One write at a time; try_write does not jump the queue. */
  char x = 'x';
  assert_int_equal(sj_stream_write(e->s, &x, 1, on_stream_write, e), UV_EBUSY);
  assert_int_equal(sj_stream_try_write(e->s, &x, 1), UV_EAGAIN);
  /* The peer drains in steps; unsent counts down, and the callback waits
   * until the rest fits in the sockets (far less than 1 MiB here). */
  int steps_seen = 0;
  for (uint64_t limit = 256 * 1024; e->write_cbs == 0 && limit < len; limit += 256 * 1024) {
    peer_read(p, limit);
    WAIT_FOR(fx, p->rx_bytes == limit);
    size_t now = sj_stream_unsent(e->s, len);
    assert_true(now <= unsent);
    if (now < unsent)
      steps_seen++;
    unsent = now;
    if (p->rx_bytes + MIB < len)
      assert_int_equal(e->write_cbs, 0);
  }
  assert_true(steps_seen >= 3);
  peer_read(p, len + 1);
  WAIT_FOR(fx, e->write_cbs == 1 && p->rx_bytes == len);
  assert_int_equal(e->write_status, 0);
  assert_true(sj_stream_unsent(e->s, len) == 0);
  assert_int_equal(p->rx_mismatch, 0);
  /* Nothing in flight: try_write goes straight to the socket. */
  char next;
  pat_fill(&next, 1, len, 1);
  assert_int_equal(sj_stream_try_write(e->s, &next, 1), 1);
  WAIT_FOR(fx, p->rx_bytes == len + 1);
  assert_int_equal(p->rx_mismatch, 0);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
  assert_string_equal(e->log, "wc");
}

static void test_big_write_unix(void **state) { big_write_case(*state, 0); }
static void test_big_write_tcp(void **state) { big_write_case(*state, 1); }

/* ==== 5. a write's callback never runs inside the write ==================== */

static void test_write_cb_not_synchronous(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  p->nocheck = 1;
  peer_read(p, UINT64_MAX);
  /* A write the socket takes at once. */
  assert_int_equal(end_write(e, 0, 100), 0);
  assert_int_equal(e->write_cbs, 0);
  WAIT_FOR(fx, e->write_cbs == 1);
  assert_int_equal(e->write_status, 0);
  /* An empty one. */
  assert_int_equal(end_write(e, 0, 0), 0);
  assert_int_equal(e->write_cbs, 1);
  WAIT_FOR(fx, e->write_cbs == 2);
  /* Writes made from the write callback (in_call is set around each). */
  e->rewrite = 3;
  assert_int_equal(end_write(e, 0, 100), 0);
  WAIT_FOR(fx, e->write_cbs == 6);
  WAIT_FOR(fx, p->rx_bytes == 500);
  assert_int_equal(e->sync_cbs, 0);
  assert_string_equal(e->log, "wwwwww");
  close_and_wait(fx, e);
}

/* The peer has gone: the write fails, through its callback. */
static void test_write_to_closed_peer(void **state) {
  fx_t *fx = *state;
  for (int tcp = 0; tcp < 2; tcp++) {
    peer_t *p;
    end_t *e = open_pair(fx, tcp, 0, &p);
    close_peer(p);
    settle(fx, 0);
    assert_int_equal(end_write(e, 0, MIB), 0);
    WAIT_FOR(fx, e->write_cbs == 1);
    assert_true(e->write_status == UV_EPIPE || e->write_status == UV_ECONNRESET);
    assert_int_equal(e->sync_cbs, 0);
    close_and_wait(fx, e);
    assert_string_equal(e->log, "wc");
  }
}

/* ==== 6. shutdown ========================================================== */

static void shutdown_idle_case(fx_t *fx, int tcp) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, 0, &p);
  peer_read(p, UINT64_MAX);
  assert_int_equal(end_shutdown(e), SJ_DONE);
  WAIT_FOR(fx, p->rx_eof || p->rx_err != 0);
  assert_int_equal(p->rx_err, 0);
  assert_true(p->rx_bytes == 0);
  settle(fx, 10);
  assert_int_equal(e->shut_cbs, 0);
  /* The read direction still works. */
  assert_int_equal(end_read_start(e), 0);
  peer_send_more(p, 5000, 1);
  WAIT_FOR(fx, e->eof);
  assert_true(e->rx_bytes == 5000);
  close_and_wait(fx, e);
  assert_string_equal(e->log, "c");
}

static void test_shutdown_idle_unix(void **state) { shutdown_idle_case(*state, 0); }
static void test_shutdown_idle_tcp(void **state) { shutdown_idle_case(*state, 1); }

static void shutdown_waits_case(fx_t *fx, int tcp) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, SMALL_BUF, &p);
  const size_t len = 2 * MIB;
  assert_int_equal(end_write(e, 0, len), 0);
  settle(fx, 10);
  assert_int_equal(end_shutdown(e), 0);
  assert_int_equal(end_shutdown(e), UV_EALREADY);
  settle(fx, 20);
  assert_int_equal(e->write_cbs + e->shut_cbs, 0);
  peer_read(p, UINT64_MAX);
  WAIT_FOR(fx, p->rx_eof || p->rx_err != 0);
  assert_int_equal(p->rx_err, 0);
  /* Every byte, then the end. */
  assert_true(p->rx_bytes == len);
  assert_int_equal(p->rx_mismatch, 0);
  WAIT_FOR(fx, e->shut_cbs == 1);
  assert_string_equal(e->log, "ws");
  assert_int_equal(e->write_status, 0);
  assert_int_equal(e->shut_status, 0);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
}

static void test_shutdown_waits_for_write_unix(void **state) { shutdown_waits_case(*state, 0); }
static void test_shutdown_waits_for_write_tcp(void **state) { shutdown_waits_case(*state, 1); }

/* A write the socket took at once is the kernel's: shutdown does not wait
 * for its (deferred) callback, and the bytes still come before the end. */
static void test_shutdown_after_write_taken(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 1, 0, &p);
  assert_int_equal(end_write(e, 0, 1000), 0);
  assert_int_equal(end_shutdown(e), SJ_DONE);
  peer_read(p, UINT64_MAX);
  WAIT_FOR(fx, p->rx_eof && e->write_cbs == 1);
  assert_true(p->rx_bytes == 1000);
  assert_int_equal(p->rx_mismatch, 0);
  assert_int_equal(e->write_status, 0);
  settle(fx, 10);
  assert_string_equal(e->log, "w");
  close_and_wait(fx, e);
}

/* ==== 7. close ============================================================= */

static void close_in_flight_case(fx_t *fx, int tcp, int with_shutdown) {
  peer_t *p;
  end_t *e = open_pair(fx, tcp, SMALL_BUF, &p);
  const size_t len = 4 * MIB;
  assert_int_equal(end_write(e, 0, len), 0);
  if (with_shutdown)
    assert_int_equal(end_shutdown(e), 0);
  settle(fx, 10);
  assert_int_equal(e->write_cbs, 0);
  end_close(e, 0);
  assert_int_equal(e->write_cbs + e->shut_cbs + e->close_cbs, 0);
  WAIT_FOR(fx, e->close_cbs == 1);
  assert_string_equal(e->log, with_shutdown ? "wsc" : "wc");
  assert_int_equal(e->write_status, UV_ECANCELED);
  if (with_shutdown)
    assert_int_equal(e->shut_status, UV_ECANCELED);
  assert_int_equal(e->sync_cbs, 0);
  /* The peer gets a prefix of the bytes, then the end. */
  peer_read(p, UINT64_MAX);
  WAIT_FOR(fx, p->rx_eof || p->rx_err != 0);
  assert_int_equal(p->rx_mismatch, 0);
  assert_true(p->rx_bytes < len);
}

static void test_close_cancels_write_unix(void **state) { close_in_flight_case(*state, 0, 0); }
static void test_close_cancels_write_tcp(void **state) { close_in_flight_case(*state, 1, 0); }
static void test_close_cancels_write_and_shutdown(void **state) {
  close_in_flight_case(*state, 0, 1);
  close_in_flight_case(*state, 1, 1);
}

static void test_close_reset_tcp(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 1, 0, &p);
  peer_read(p, UINT64_MAX);
  end_close(e, 1);
  assert_int_equal(e->close_cbs, 0);
  WAIT_FOR(fx, e->close_cbs == 1 && (p->rx_eof || p->rx_err != 0));
  assert_int_equal(p->rx_err, UV_ECONNRESET);
  assert_int_equal(p->rx_eof, 0);
}

static void test_close_reset_unix(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  peer_read(p, UINT64_MAX);
  end_close(e, 1);
  WAIT_FOR(fx, e->close_cbs == 1 && (p->rx_eof || p->rx_err != 0));
  assert_int_equal(p->rx_err, 0);
  assert_int_equal(p->rx_eof, 1);
}

/* Closed from its own read callback in the middle of a burst: no read comes
 * after, the close callback comes once. */
static void on_read_then_close(sj_stream_t *s, int status, sj_chunk_t *c) {
  end_t *e = s->data;
  if (c != NULL)
    sj_pool_put(s->pool, c);
  e->chunks++;
  if (e->chunks == 1) {
    (void)status;
    sj_stream_close(s, 0, on_stream_closed);
    e->open = 0;
  }
}

static void test_close_from_read_callback(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  e->s->on_read = on_read_then_close;
  peer_send_more(p, 150000, 1);
  assert_int_equal(end_read_start(e), 0);
  WAIT_FOR(fx, e->close_cbs == 1);
  settle(fx, 10);
  assert_int_equal(e->chunks, 1);
  assert_int_equal(e->close_cbs, 1);
}

/* ==== 8. connecting ======================================================== */

static end_t *start_connect(fx_t *fx, const struct sockaddr *sa, socklen_t len, int *rc) {
  end_t *e = new_end(fx);
  sj_stream_t *s = NULL;
  e->in_call = 1;
  *rc = sj_sockstream_connect(&fx->loop, &fx->pool, sa, len, on_stream_connect, e, &s);
  e->in_call = 0;
  if (*rc == 0) {
    end_attach(e, s);
    e->rx_seed = 2;
  }
  return e;
}

/* Data both ways over a connected stream and the peer's socket. */
static void exchange(fx_t *fx, end_t *e, peer_t *p) {
  p->tx_seed = 2;
  p->rx_seed = 1;
  uint64_t rx0 = e->rx_bytes, tx0 = p->rx_bytes;
  int cbs0 = e->write_cbs;
  peer_read(p, UINT64_MAX);
  assert_int_equal(end_read_start(e), 0);
  peer_send_more(p, 300000, 1);
  assert_int_equal(end_write(e, tx0, 200000), 0);
  WAIT_FOR(fx, e->eof && e->write_cbs == cbs0 + 1 && p->rx_bytes == tx0 + 200000);
  assert_true(e->rx_bytes == rx0 + 300000);
  assert_int_equal(e->mismatch + p->rx_mismatch + e->wrong_stream, 0);
  assert_int_equal(e->write_status, 0);
}

static void test_connect_tcp(void **state) {
  fx_t *fx = *state;
  struct sockaddr_in sin;
  int l = tcp_listener(&sin, 0);
  fx->extra_fds[0] = l;
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sin, sizeof sin, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(e->connect_cbs, 0);
  /* Not usable until connected. */
  char x = 'x';
  assert_int_equal(end_read_start(e), UV_EINVAL);
  assert_int_equal(sj_stream_write(e->s, &x, 1, on_stream_write, e), UV_EINVAL);
  WAIT_FOR(fx, e->connect_cbs == 1);
  assert_int_equal(e->connect_status, 0);
  assert_int_equal(e->sync_cbs, 0);
  int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(a >= 0);
  exchange(fx, e, new_peer(fx, a));
  close_and_wait(fx, e);
  assert_string_equal(e->log, "kwc");
}

/* The server sends its bytes and FIN before the loop has seen the
 * connection made: the edge that says "connected" says "input, and the
 * end" too, and both must still be there once reading starts. */
static void test_connect_then_data_and_fin_before_reading(void **state) {
  fx_t *fx = *state;
  struct sockaddr_in sin;
  int l = tcp_listener(&sin, 0);
  fx->extra_fds[0] = l;
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sin, sizeof sin, &rc);
  assert_int_equal(rc, 0);
  struct pollfd pfd = {.fd = l, .events = POLLIN};
  assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
  int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(a >= 0);
  peer_t *p = new_peer(fx, a);
  p->tx_seed = 2;
  peer_send_more(p, 5000, 1);
  assert_true(p->fin_sent);
  WAIT_FOR(fx, e->connect_cbs == 1);
  assert_int_equal(e->connect_status, 0);
  settle(fx, 10);
  assert_int_equal(end_read_start(e), 0);
  WAIT_FOR(fx, e->eof || e->rd_err != 0);
  assert_int_equal(e->rd_err, 0);
  assert_true(e->rx_bytes == 5000);
  assert_int_equal(e->mismatch, 0);
  close_and_wait(fx, e);
}

static void test_connect_refused(void **state) {
  fx_t *fx = *state;
  /* A port bound but not listening refuses, and nobody else can take it. */
  int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(b >= 0);
  fx->extra_fds[0] = b;
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(b, (struct sockaddr *)&sin, sizeof sin), 0);
  socklen_t sl = sizeof sin;
  assert_int_equal(getsockname(b, (struct sockaddr *)&sin, &sl), 0);
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sin, sizeof sin, &rc);
  if (rc != 0) { /* refused before connect() returned: no stream made */
    assert_int_equal(rc, UV_ECONNREFUSED);
    assert_int_equal(e->connect_cbs, 0);
    return;
  }
  WAIT_FOR(fx, e->connect_cbs == 1);
  assert_int_equal(e->connect_status, UV_ECONNREFUSED);
  assert_int_equal(e->sync_cbs, 0);
  close_and_wait(fx, e);
  assert_string_equal(e->log, "kc");
}

static void test_close_while_connecting_tcp(void **state) {
  fx_t *fx = *state;
  struct sockaddr_in sin;
  fx->extra_fds[0] = tcp_listener(&sin, 0);
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sin, sizeof sin, &rc);
  assert_int_equal(rc, 0);
  end_close(e, 0);
  assert_int_equal(e->connect_cbs + e->close_cbs, 0);
  WAIT_FOR(fx, e->close_cbs == 1);
  assert_string_equal(e->log, "kc");
  assert_int_equal(e->connect_status, UV_ECANCELED);
  assert_int_equal(e->sync_cbs, 0);
}

static int unix_listener(fx_t *fx, struct sockaddr_un *sun) {
  strcpy(fx->dir, "/tmp/sj_sockstream_XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  *sun = (struct sockaddr_un){.sun_family = AF_UNIX};
  snprintf(sun->sun_path, sizeof sun->sun_path, "%s/s", fx->dir);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)sun, sizeof *sun), 0);
  assert_int_equal(listen(fd, 16), 0);
  return fd;
}

static void test_connect_unix_path(void **state) {
  fx_t *fx = *state;
  struct sockaddr_un sun;
  int l = unix_listener(fx, &sun);
  fx->extra_fds[0] = l;
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sun, sizeof sun, &rc);
  unlink(sun.sun_path);
  assert_int_equal(rc, 0);
  assert_int_equal(e->connect_cbs, 0);
  WAIT_FOR(fx, e->connect_cbs == 1);
  assert_int_equal(e->connect_status, 0);
  assert_int_equal(e->sync_cbs, 0);
  int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(a >= 0);
  exchange(fx, e, new_peer(fx, a));
  close_and_wait(fx, e);
}

static void test_connect_unix_missing_path(void **state) {
  fx_t *fx = *state;
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "/nonexistent-dir-sj/s");
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sun, sizeof sun, &rc);
  assert_int_equal(rc, UV_ENOENT);
  settle(fx, 0);
  assert_int_equal(e->connect_cbs, 0);
}

/* sockstream.h: "cb reports the outcome later (UV_ECANCELED when the
 * stream is closed first)". A Unix connect() succeeds at once, and its
 * callback is deferred; a close before that callback must still cancel it,
 * as libuv's uv_pipe_connect does, or the owner is told "connected" about
 * a stream that is already going away. */
static void test_close_before_connect_cb_unix(void **state) {
  fx_t *fx = *state;
  struct sockaddr_un sun;
  fx->extra_fds[0] = unix_listener(fx, &sun);
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sun, sizeof sun, &rc);
  unlink(sun.sun_path);
  assert_int_equal(rc, 0);
  end_close(e, 0);
  assert_int_equal(e->connect_cbs + e->close_cbs, 0);
  WAIT_FOR(fx, e->close_cbs == 1);
  assert_string_equal(e->log, "kc");
  assert_int_equal(e->connect_status, UV_ECANCELED);
}

/* ==== 9. the poller's lifetime ============================================= */

static void on_watchdog(uv_timer_t *t) {
  *(int *)t->data = 1;
  uv_stop(t->loop);
}

static void on_watchdog_closed(uv_handle_t *h) { (void)h; }

/* uv_run(UV_RUN_DEFAULT) must return by itself; an unreferenced timer (which
 * does not keep the loop alive) stops it if it would block instead. */
static void run_default_returns(fx_t *fx) {
  uv_timer_t dog;
  int fired = 0;
  assert_int_equal(uv_timer_init(&fx->loop, &dog), 0);
  dog.data = &fired;
  assert_int_equal(uv_timer_start(&dog, on_watchdog, 5000, 0), 0);
  uv_unref((uv_handle_t *)&dog);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(fired, 0);
  uv_close((uv_handle_t *)&dog, on_watchdog_closed);
  uv_run(&fx->loop, UV_RUN_NOWAIT);
  assert_int_equal(uv_loop_alive(&fx->loop), 0);
}

/* Work deferred from outside the poller's callbacks (a read_start from a
 * timer, with input already waiting) runs without anything else waking the
 * loop: uv_run(UV_RUN_DEFAULT) must not block on it. */
static void test_deferred_work_does_not_block_the_loop(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  peer_send_more(p, 3000, 1);
  settle(fx, 0);
  e->close_at_end = 1;
  start_timer(fx, e, on_timer_read_start, 1);
  run_default_returns(fx);
  assert_int_equal(e->eof, 1);
  assert_true(e->rx_bytes == 3000);
  assert_int_equal(e->close_cbs, 1);
}

static void test_poller_lifetime(void **state) {
  fx_t *fx = *state;
  int base = count_fds();
  assert_int_equal(uv_loop_alive(&fx->loop), 0);
  peer_t *p[3];
  end_t *e[3];
  for (int i = 0; i < 3; i++)
    e[i] = open_pair(fx, i == 1, 0, &p[i]);
  /* An open stream keeps the loop alive, even idle. */
  settle(fx, 10);
  assert_int_equal(uv_loop_alive(&fx->loop), 1);
  for (int i = 0; i < 3; i++) {
    end_close(e[i], 0);
    close_peer(p[i]);
  }
  WAIT_FOR(fx, e[0]->close_cbs + e[1]->close_cbs + e[2]->close_cbs == 3);
  run_default_returns(fx);
  /* The poller's epoll descriptor went with it. */
  assert_int_equal(count_fds(), base);
  /* A stream made afterwards gets a new poller, which works. */
  peer_t *q;
  end_t *f = open_pair(fx, 1, 0, &q);
  assert_int_equal(count_fds(), base + 3);
  exchange(fx, f, q);
  close_and_wait(fx, f);
  close_peer(q);
  run_default_returns(fx);
  assert_int_equal(count_fds(), base);
}

static void on_no_events(sj_watch_t *w, uint32_t events) {
  (void)w;
  (void)events;
}
static void on_no_deferred(sj_watch_t *w) { (void)w; }

/* A listener's weak watch keeps the poller made but not the loop alive. */
static void test_weak_watch(void **state) {
  fx_t *fx = *state;
  int base = count_fds();
  sj_watch_t w = {.on_events = on_no_events, .on_deferred = on_no_deferred};
  assert_int_equal(sj_watch_init_weak(&w, &fx->loop), 0);
  assert_int_equal(count_fds(), base + 1);
  assert_int_equal(uv_loop_alive(&fx->loop), 0);
  run_default_returns(fx);
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  assert_int_equal(count_fds(), base + 3); /* the same poller */
  assert_int_equal(uv_loop_alive(&fx->loop), 1);
  exchange(fx, e, p);
  close_and_wait(fx, e);
  close_peer(p);
  run_default_returns(fx);
  assert_int_equal(count_fds(), base + 1);
  sj_watch_release(&w);
  WAIT_FOR(fx, !uv_loop_alive(&fx->loop));
  assert_int_equal(count_fds(), base);
}

/* ==== 10. two loops on two threads ========================================= */

#define THREAD_ROUNDS 12
#define THREAD_BYTES (384 * 1024)

typedef struct {
  uv_barrier_t *start;
  int round_ok[THREAD_ROUNDS];
  int loop_closed;
} thr_t;

/* Turns loop until *done or 10 s pass; 1 when done. */
static int thread_wait(uv_loop_t *loop, end_t ends[2], int (*done)(end_t *)) {
  uint64_t deadline = mono_ms() + WAIT_MS;
  while (!done(ends)) {
    if (mono_ms() >= deadline)
      return 0;
    uv_run(loop, UV_RUN_NOWAIT);
    struct pollfd pfd = {.fd = uv_backend_fd(loop), .events = POLLIN};
    int timeout = uv_backend_timeout(loop);
    poll(&pfd, 1, timeout < 0 || timeout > 5 ? 5 : timeout);
  }
  return 1;
}

static int both_ended(end_t *e) {
  return e[0].eof && e[1].eof && e[0].write_cbs == 1 && e[1].write_cbs == 1;
}
static int both_closed(end_t *e) { return e[0].close_cbs == 1 && e[1].close_cbs == 1; }

/* Two sockstreams over one socketpair send each other THREAD_BYTES and a
 * FIN; 1 when every byte arrived. */
static int thread_round(uv_loop_t *loop, sj_pool_t *pool, end_t ends[2]) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return 0;
  memset(ends, 0, 2 * sizeof *ends);
  for (int i = 0; i < 2; i++) {
    sj_stream_t *s;
    if (sj_sockstream_open(loop, pool, sv[i], 0, &s) != 0)
      return 0;
    end_attach(&ends[i], s);
    ends[i].rx_seed = 1;
    ends[i].wbuf = malloc(THREAD_BYTES);
    if (ends[i].wbuf == NULL)
      return 0;
    pat_fill(ends[i].wbuf, 1, 0, THREAD_BYTES);
  }
  int ok = 1;
  for (int i = 0; i < 2; i++) {
    ok &= sj_stream_read_start(ends[i].s) == 0;
    ok &= sj_stream_write(ends[i].s, ends[i].wbuf, THREAD_BYTES, on_stream_write, &ends[i]) == 0;
    ok &= sj_stream_shutdown(ends[i].s, on_stream_shutdown, &ends[i]) >= 0;
  }
  ok &= thread_wait(loop, ends, both_ended);
  for (int i = 0; i < 2; i++) {
    ok &= ends[i].rx_bytes == THREAD_BYTES && ends[i].mismatch == 0 && ends[i].rd_err == 0;
    ok &= ends[i].write_status == 0 && ends[i].sync_cbs == 0 && ends[i].wrong_stream == 0;
    sj_stream_close(ends[i].s, 0, on_stream_closed);
  }
  ok &= thread_wait(loop, ends, both_closed);
  for (int i = 0; i < 2; i++)
    free(ends[i].wbuf);
  /* Everything closed: the poller goes, and the next round makes another,
   * while the other thread does the same. */
  ok &= !uv_loop_alive(loop);
  return ok;
}

static void thread_main(void *arg) {
  thr_t *t = arg;
  uv_loop_t loop;
  sj_pool_t pool;
  end_t ends[2];
  if (uv_loop_init(&loop) != 0)
    return;
  sj_pool_init(&pool, SJ_CHUNK_SIZE, 4);
  uv_barrier_wait(t->start);
  for (int r = 0; r < THREAD_ROUNDS; r++)
    t->round_ok[r] = thread_round(&loop, &pool, ends);
  /* Bounded: a poller that stayed would make UV_RUN_DEFAULT block. */
  uint64_t deadline = mono_ms() + WAIT_MS;
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0 && mono_ms() < deadline)
    ;
  t->loop_closed = uv_loop_close(&loop) == 0;
  sj_pool_drain(&pool);
}

static void test_two_loops_two_threads(void **state) {
  (void)state;
  uv_barrier_t start;
  assert_int_equal(uv_barrier_init(&start, 2), 0);
  thr_t t[2];
  uv_thread_t tid[2];
  for (int i = 0; i < 2; i++) {
    memset(&t[i], 0, sizeof t[i]);
    t[i].start = &start;
    assert_int_equal(uv_thread_create(&tid[i], thread_main, &t[i]), 0);
  }
  for (int i = 0; i < 2; i++)
    assert_int_equal(uv_thread_join(&tid[i]), 0);
  uv_barrier_destroy(&start);
  for (int i = 0; i < 2; i++) {
    for (int r = 0; r < THREAD_ROUNDS; r++)
      if (!t[i].round_ok[r])
        fail_msg("thread %d round %d failed", i, r);
    assert_true(t[i].loop_closed);
  }
}

/* ==== 11. into a libuv stream ============================================== */

static void test_to_uv_socketpair(void **state) {
  fx_t *fx = *state;
  peer_t *p;
  end_t *e = open_pair(fx, 0, 0, &p);
  sj_origin_from_label(&e->s->origin, "test");
  /* Input already waiting, its edge taken by the poller. */
  peer_send_more(p, 1000, 0);
  settle(fx, 10);
  sj_stream_t *u = NULL;
  assert_int_equal(sj_sockstream_to_uv(e->s, &u), 0);
  e->open = 0;
  assert_non_null(u);
  assert_string_equal(u->origin.label, "test");
  end_t *f = new_end(fx);
  end_attach(f, u);
  f->rx_seed = 2;
  assert_int_equal(end_read_start(f), 0);
  WAIT_FOR(fx, f->rx_bytes == 1000);
  exchange(fx, f, p);
  close_and_wait(fx, f);
  assert_int_equal(e->close_cbs + e->write_cbs, 0);
}

static void test_to_uv_from_connect_cb_tcp(void **state) {
  fx_t *fx = *state;
  struct sockaddr_in sin;
  int l = tcp_listener(&sin, 0);
  fx->extra_fds[0] = l;
  int rc;
  end_t *e = start_connect(fx, (struct sockaddr *)&sin, sizeof sin, &rc);
  assert_int_equal(rc, 0);
  e->convert = 1;
  WAIT_FOR(fx, e->connect_cbs == 1);
  assert_int_equal(e->connect_status, 0);
  assert_int_equal(e->convert_rc, 0);
  assert_non_null(e->converted);
  end_t *f = new_end(fx);
  end_attach(f, e->converted);
  f->rx_seed = 2;
  int a = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(a >= 0);
  exchange(fx, f, new_peer(fx, a));
  close_and_wait(fx, f);
  assert_string_equal(e->log, "k");
}

/* ==== the socket's file outliving its descriptor ============================ */

/* poller.h counts on close() taking a socket out of the epoll set. That
 * holds only for the last descriptor of the socket: while another one
 * exists (a child between fork() and exec(), which any thread of an
 * embedding program may make at any moment, or a dup), the kernel keeps the
 * registration, and its next edge hands on_ready the freed stream. The dup
 * here makes the window deterministic. A plain build may not notice the
 * stale pointer; AddressSanitizer reports a heap-use-after-free in
 * on_ready. Last in the list, since that report ends the process. */
static void test_close_while_socket_shared_elsewhere(void **state) {
  fx_t *fx = *state;
  peer_t *p, *q;
  end_t *e = open_pair(fx, 0, 0, &p);
  end_t *keep = open_pair(fx, 0, 0, &q); /* keeps the poller */
  int copy = dup(sj_stream_fileno(e->s));
  assert_true(copy >= 0);
  fx->extra_fds[0] = copy;
  assert_int_equal(end_read_start(e), 0);
  close_and_wait(fx, e);
  settle(fx, 0);
  /* An edge on the socket the freed stream had. */
  peer_send_more(p, 100, 0);
  settle(fx, 10);
  assert_int_equal(e->chunks + e->after_end, 0);
  close_and_wait(fx, keep);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_read_all_unix),
      T(test_read_all_tcp),
      T(test_eof_with_data_before_reading_unix),
      T(test_eof_with_data_before_reading_tcp),
      T(test_eof_with_more_than_a_chunk_before_reading),
      T(test_eof_alone_before_reading),
      T(test_more_than_a_burst_waiting),
      T(test_read_error_on_reset),
      T(test_read_stop_resume_from_timer_unix),
      T(test_read_stop_resume_from_timer_tcp),
      T(test_notify_input_pending),
      T(test_notify_without_input_pending),
      T(test_read_stop_ends_both_modes),
      T(test_notify_eof),
      T(test_big_write_unix),
      T(test_big_write_tcp),
      T(test_write_cb_not_synchronous),
      T(test_write_to_closed_peer),
      T(test_shutdown_idle_unix),
      T(test_shutdown_idle_tcp),
      T(test_shutdown_waits_for_write_unix),
      T(test_shutdown_waits_for_write_tcp),
      T(test_shutdown_after_write_taken),
      T(test_close_cancels_write_unix),
      T(test_close_cancels_write_tcp),
      T(test_close_cancels_write_and_shutdown),
      T(test_close_reset_tcp),
      T(test_close_reset_unix),
      T(test_close_from_read_callback),
      T(test_connect_tcp),
      T(test_connect_then_data_and_fin_before_reading),
      T(test_connect_refused),
      T(test_close_while_connecting_tcp),
      T(test_connect_unix_path),
      T(test_connect_unix_missing_path),
      T(test_close_before_connect_cb_unix),
      T(test_deferred_work_does_not_block_the_loop),
      T(test_poller_lifetime),
      T(test_weak_watch),
      T(test_two_loops_two_threads),
      T(test_to_uv_socketpair),
      T(test_to_uv_from_connect_cb_tcp),
      T(test_close_while_socket_shared_elsewhere),
  };
#undef T
  signal(SIGPIPE, SIG_IGN);
  /* libuv opens a process-wide pipe (its signal lock) with the first loop:
   * have it open before the first test counts descriptors. */
  uv_loop_t warm;
  if (uv_loop_init(&warm) != 0 || uv_loop_close(&warm) != 0)
    return 1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
