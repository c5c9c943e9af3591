/*
 * A connector on a caller-owned libuv loop, driven against real loopback
 * sockets: the one fixture of the connector's unit tests (test_connector.c)
 * and of those of verifiers and transformers. It keeps a log of the
 * connector's lines, so that the tests can assert what was logged.
 *
 * The test's own sockets are plain POSIX sockets: connects to a listening
 * side complete in the kernel without the loop, and everything else is
 * non-blocking and driven by WAIT_FOR, which turns the loop without blocking
 * and then waits (at most a few milliseconds) for the loop's backend or a
 * test socket to have something, until a condition holds or a deadline
 * passes. No sleep is used as synchronisation.
 *
 * Every test closes its connector, runs the loop until the close callback
 * has run and the loop has nothing left, and checks uv_loop_close() == 0.
 */
#ifndef SJ_TEST_CONNECTOR_FIXTURE_H
#define SJ_TEST_CONNECTOR_FIXTURE_H

#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "sockjoin.h"

/* Not every test file uses every helper. */
#define FX_FN static __attribute__((unused))

#define WAIT_MS 10000 /* every wait's deadline; generous for sanitizer builds */
#define MAX_PAIRS_SEEN 64
#define MAX_FDS 128

/* ---- time and the loop --------------------------------------------------- */

FX_FN uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

FX_FN int64_t wall_ms(void) {
  uv_timeval64_t tv;
  assert_int_equal(uv_gettimeofday(&tv), 0);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Waits until the loop has an event or a timer due, or one of the extra
 * descriptors is ready, for at most 5 ms. */
FX_FN void loop_wait(uv_loop_t *loop, int fd, short events) {
  struct pollfd pfd[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
                          {.fd = fd, .events = events}};
  int timeout = uv_backend_timeout(loop);
  if (timeout < 0 || timeout > 5)
    timeout = 5;
  poll(pfd, fd >= 0 ? 2 : 1, timeout);
}

/* Turns the loop until expr holds; fails the test after ms milliseconds.
 * While waiting it also wakes for events on fd (pass -1 for none). */
#define WAIT_FOR_FD(loop, fd, events, expr, ms)                                                    \
  do {                                                                                             \
    uint64_t deadline_ = mono_ms() + (ms);                                                         \
    for (;;) {                                                                                     \
      uv_run((loop), UV_RUN_NOWAIT);                                                               \
      if (expr)                                                                                    \
        break;                                                                                     \
      if (mono_ms() >= deadline_)                                                                  \
        fail_msg("%s:%d: timed out after %d ms waiting for %s", __FILE__, __LINE__, (int)(ms),     \
                 #expr);                                                                           \
      loop_wait((loop), (fd), (events));                                                           \
    }                                                                                              \
  } while (0)

#define WAIT_FOR(loop, expr) WAIT_FOR_FD(loop, -1, 0, expr, WAIT_MS)

/* Turns the loop for ms milliseconds (a bounded negative check or a
 * deadline, never a synchronisation). */
FX_FN void run_for(uv_loop_t *loop, unsigned ms) {
  uint64_t deadline = mono_ms() + ms;
  while (mono_ms() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    loop_wait(loop, -1, 0);
  }
}

/* ---- the fixture --------------------------------------------------------- */

/* A timer of the test's own on the connector's loop; teardown closes it
 * if the test did not. */
typedef struct {
  uv_timer_t handle;
  int used, fired, closed;
} test_timer_t;

FX_FN void on_test_timer(uv_timer_t *t) { ((test_timer_t *)t->data)->fired = 1; }
FX_FN void on_test_timer_closed(uv_handle_t *h) { ((test_timer_t *)h->data)->closed = 1; }

typedef struct {
  uv_loop_t loop;
  test_timer_t timer;
  sj_connector_t *c;
  sj_options_t opts;
  int close_requested;
  int close_calls;
  int close_in_done; /* on_done closes the connector, as the CLI does */
  int done_calls, done_status;
  uint64_t done_at_ms;
  int pair_calls;
  sj_pair_info_t pairs[MAX_PAIRS_SEEN];
  int closed_calls;
  sj_pair_info_t closed[MAX_PAIRS_SEEN];
  int errors;
  char last_error[1024];
  int n_log, cap_log;
  char **log;       /* INFO and ERROR lines, in order */
  int fds[MAX_FDS]; /* test sockets to close at teardown */
  void *user;       /* the test's own */
} fx_t;

FX_FN void on_close(sj_connector_t *c, void *data) {
  fx_t *fx = data;
  (void)c;
  fx->close_calls++;
}

FX_FN void on_done(sj_connector_t *c, int status, void *data) {
  fx_t *fx = data;
  fx->done_calls++;
  fx->done_status = status;
  fx->done_at_ms = mono_ms();
  if (fx->close_in_done && !fx->close_requested) {
    fx->close_requested = 1;
    sj_connector_close(c, on_close);
  }
}

FX_FN void on_pair(sj_connector_t *c, const sj_pair_info_t *info, void *data) {
  fx_t *fx = data;
  (void)c;
  if (fx->pair_calls < MAX_PAIRS_SEEN)
    fx->pairs[fx->pair_calls] = *info;
  fx->pair_calls++;
}

FX_FN void on_pair_closed(sj_connector_t *c, const sj_pair_info_t *info, void *data) {
  fx_t *fx = data;
  (void)c;
  if (fx->closed_calls < MAX_PAIRS_SEEN)
    fx->closed[fx->closed_calls] = *info;
  fx->closed_calls++;
}

FX_FN void on_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  fx_t *fx = data;
  (void)c;
  if (level == SJ_LOG_TRAFFIC)
    return;
  /* Every line is kept: tests count them (fx_logged), so none may be lost. */
  if (fx->n_log == fx->cap_log) {
    fx->cap_log = fx->cap_log == 0 ? 256 : fx->cap_log * 2;
    fx->log = realloc(fx->log, (size_t)fx->cap_log * sizeof *fx->log);
    assert_non_null(fx->log);
  }
  fx->log[fx->n_log] = strdup(msg);
  assert_non_null(fx->log[fx->n_log]);
  fx->n_log++;
  if (level == SJ_LOG_ERROR) {
    fx->errors++;
    snprintf(fx->last_error, sizeof fx->last_error, "%s", msg);
  }
}

/* How many logged lines contain text. */
FX_FN int fx_logged(const fx_t *fx, const char *text) {
  int n = 0;
  for (int i = 0; i < fx->n_log; i++)
    n += strstr(fx->log[i], text) != NULL;
  return n;
}

FX_FN void fx_dump_log(const fx_t *fx) {
  for (int i = 0; i < fx->n_log; i++)
    print_message("log: %s\n", fx->log[i]);
}

FX_FN int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  for (int i = 0; i < MAX_FDS; i++)
    fx->fds[i] = -1;
  sj_options_init(&fx->opts);
  fx->opts.verbose = 1;
  fx->opts.log_cb = on_log;
  fx->opts.on_pair = on_pair;
  fx->opts.on_pair_closed = on_pair_closed;
  fx->opts.on_done = on_done;
  fx->opts.data = fx;
  *state = fx;
  return 0;
}

/* Keeps fd for teardown to close; returns it. */
FX_FN int fx_fd(fx_t *fx, int fd) {
  assert_true(fd >= 0);
  for (int i = 0; i < MAX_FDS; i++)
    if (fx->fds[i] < 0) {
      fx->fds[i] = fd;
      return fd;
    }
  fail_msg("too many test sockets");
  return -1;
}

/* The descriptor is no longer the test's to close. */
FX_FN void fx_forget_fd(fx_t *fx, int fd) {
  for (int i = 0; i < MAX_FDS; i++)
    if (fx->fds[i] == fd) {
      fx->fds[i] = -1;
      return;
    }
  fail_msg("fd %d is not a test socket", fd);
}

FX_FN void fx_close_fd(fx_t *fx, int fd) {
  fx_forget_fd(fx, fd);
  close(fd);
}

/* Closes the connector and runs the loop until its close callback has run.
 * on_done has then run exactly once, whatever happened before. */
FX_FN void fx_close_connector(fx_t *fx) {
  if (fx->c == NULL)
    return;
  if (!fx->close_requested) {
    fx->close_requested = 1;
    sj_connector_close(fx->c, on_close);
  }
  WAIT_FOR(&fx->loop, fx->close_calls > 0);
  assert_int_equal(fx->close_calls, 1);
  assert_int_equal(fx->done_calls, 1);
  fx->c = NULL;
}

/* Runs the loop until nothing is left on it, and closes it. */
FX_FN void fx_close_loop(fx_t *fx) {
  WAIT_FOR(&fx->loop, !uv_loop_alive(&fx->loop));
  int rc = uv_loop_close(&fx->loop);
  if (rc != 0) {
    uv_print_all_handles(&fx->loop, stderr);
    fail_msg("uv_loop_close: %s (handles left open)", uv_strerror(rc));
  }
}

FX_FN int teardown(void **state) {
  fx_t *fx = *state;
  if (fx->timer.used && !uv_is_closing((uv_handle_t *)&fx->timer.handle))
    uv_close((uv_handle_t *)&fx->timer.handle, on_test_timer_closed);
  fx_close_connector(fx);
  for (int i = 0; i < MAX_FDS; i++)
    if (fx->fds[i] >= 0)
      close(fx->fds[i]);
  fx_close_loop(fx);
  for (int i = 0; i < fx->n_log; i++)
    free(fx->log[i]);
  free(fx->log);
  free(fx);
  return 0;
}

/* ---- sides and connectors ------------------------------------------------ */

FX_FN sj_side_spec_t side(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
FX_FN sj_side_spec_t side(const char *fmt, ...) {
  char text[1024], err[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  sj_side_spec_t s;
  if (sj_side_parse(text, &s, err, sizeof err) != 0)
    fail_msg("bad side '%s': %s", text, err);
  return s;
}

FX_FN int port_of(fx_t *fx, sj_side_t which) {
  char text[128];
  int port = sj_connector_address(fx->c, which, text, sizeof text);
  assert_true(port > 0);
  return port;
}

/* A connector listening on two loopback ports. */
FX_FN void start_server_to_server(fx_t *fx) {
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("listen:127.0.0.1:0");
  assert_int_equal(sj_server_to_server(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  assert_non_null(fx->c);
}

FX_FN void stats_of(fx_t *fx, sj_stats_t *st) { sj_connector_stats(fx->c, st); }

FX_FN uint64_t read_a(fx_t *fx) {
  sj_stats_t st;
  stats_of(fx, &st);
  return st.bytes_read_a;
}

/* ---- test sockets -------------------------------------------------------- */

FX_FN struct sockaddr_in loopback(int port) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

FX_FN int tcp_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  return fd;
}

/* Connects to 127.0.0.1:port (blocking: the kernel completes it without
 * the loop) with the given buffer sizes (0: the default); returns the
 * descriptor, or -1 with errno. */
FX_FN int try_connect_bufs(int port, int rcvbuf, int sndbuf) {
  int fd = tcp_socket();
  if (rcvbuf > 0)
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
  if (sndbuf > 0)
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  struct sockaddr_in sin = loopback(port);
  if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

FX_FN int client(fx_t *fx, int port) {
  int fd = try_connect_bufs(port, 0, 0);
  if (fd < 0)
    fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
  return fx_fd(fx, fd);
}

FX_FN int local_port(int fd) {
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
  return ntohs(sin.sin_port);
}

/* A socket bound to a loopback port but not listening: connects to that
 * port are refused for as long as it stays open, and nobody else can take
 * the port meanwhile. */
FX_FN int closed_port(fx_t *fx, int *port) {
  int fd = fx_fd(fx, tcp_socket());
  struct sockaddr_in sin = loopback(0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  *port = local_port(fd);
  return fd;
}

/* A non-blocking test listener on a loopback port. */
typedef struct {
  int fd;
  int port;
  int n;
  int accepted[32];
} test_listener_t;

FX_FN void test_listener_open(fx_t *fx, test_listener_t *tl) {
  memset(tl, 0, sizeof *tl);
  tl->fd = fx_fd(fx, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  struct sockaddr_in sin = loopback(0);
  assert_int_equal(bind(tl->fd, (struct sockaddr *)&sin, sizeof sin), 0);
  assert_int_equal(listen(tl->fd, 64), 0);
  tl->port = local_port(tl->fd);
}

/* Accepts what is waiting; returns the count accepted so far. */
FX_FN int test_listener_accept(fx_t *fx, test_listener_t *tl) {
  for (;;) {
    int fd = accept4(tl->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
      return tl->n;
    }
    assert_true(tl->n < 32);
    tl->accepted[tl->n++] = fx_fd(fx, fd);
  }
}

/* Non-blocking reads into a growing buffer. */
typedef struct {
  int fd;
  unsigned char *buf;
  size_t len, cap;
  size_t max_per_poll; /* 0: everything available */
  int eof;
  int err; /* errno of a failed read */
} reader_t;

FX_FN void reader_init(reader_t *r, int fd) {
  memset(r, 0, sizeof *r);
  r->fd = fd;
}

/* Reads what is available; returns 1 once the stream has ended. */
FX_FN int reader_poll(reader_t *r) {
  while (!r->eof && !r->err) {
    if (r->cap - r->len < 65536) {
      r->cap = r->cap == 0 ? 131072 : r->cap * 2;
      r->buf = realloc(r->buf, r->cap);
      assert_non_null(r->buf);
    }
    size_t want = r->cap - r->len;
    if (r->max_per_poll > 0 && want > r->max_per_poll)
      want = r->max_per_poll;
    ssize_t n = recv(r->fd, r->buf + r->len, want, MSG_DONTWAIT);
    if (n > 0) {
      r->len += (size_t)n;
      if (r->max_per_poll > 0)
        break;
    } else if (n == 0) {
      r->eof = 1;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else if (errno != EINTR) {
      r->err = errno;
    }
  }
  return r->eof || r->err;
}

/* Polls r; returns 1 once it holds at least n bytes (or has ended). */
FX_FN int reader_has(reader_t *r, size_t n) {
  int ended = reader_poll(r);
  return r->len >= n || ended;
}

/* Whether r holds exactly the text s so far. */
FX_FN int reader_is(const reader_t *r, const char *s) {
  return r->len == strlen(s) && memcmp(r->buf, s, r->len) == 0;
}

FX_FN void reader_free(reader_t *r) {
  free(r->buf);
  r->buf = NULL;
}

/* Polls both readers; returns 1 when both streams have ended. */
FX_FN int both_ended(reader_t *x, reader_t *y) {
  int ex = reader_poll(x), ey = reader_poll(y);
  return ex && ey;
}

/* Non-blocking writes of a buffer; optionally shuts the write side down
 * once everything is written. */
typedef struct {
  int fd;
  const unsigned char *data;
  size_t len, off;
  int shut;    /* shut down after the last byte */
  int blocked; /* a send found the socket full */
} writer_t;

FX_FN void writer_init(writer_t *w, int fd, const void *data, size_t len, int shut) {
  *w = (writer_t){.fd = fd, .data = data, .len = len, .shut = shut};
  if (len == 0 && shut)
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
}

/* Writes what the socket takes; returns 1 once everything is written. */
FX_FN int writer_poll(writer_t *w) {
  while (w->off < w->len) {
    ssize_t n = send(w->fd, w->data + w->off, w->len - w->off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        fail_msg("send: %s", strerror(errno));
      w->blocked = 1;
      return 0;
    }
    w->off += (size_t)n;
    if (w->off == w->len && w->shut)
      assert_int_equal(shutdown(w->fd, SHUT_WR), 0);
  }
  return 1;
}

FX_FN void send_all(int fd, const void *buf, size_t n) {
  /* Small writes to a fresh loopback socket always fit its buffer. */
  assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

FX_FN void send_str(int fd, const char *s) { send_all(fd, s, strlen(s)); }

FX_FN void send_u32(int fd, uint32_t v) {
  uint32_t be = htonl(v);
  send_all(fd, &be, sizeof be);
}

FX_FN uint32_t get_u32(const unsigned char *p) {
  uint32_t be;
  memcpy(&be, p, sizeof be);
  return ntohl(be);
}

/* The byte at offset i of a big transfer. */
FX_FN unsigned char pattern(size_t i) { return (unsigned char)(i ^ (i >> 8) ^ (i >> 16)); }

/* Reads fd until it ends; returns what came (NUL-terminated). */
FX_FN char *read_to_end(fx_t *fx, int fd) {
  reader_t r;
  reader_init(&r, fd);
  WAIT_FOR_FD(&fx->loop, fd, POLLIN, reader_poll(&r), WAIT_MS);
  char *text = malloc(r.len + 1);
  assert_non_null(text);
  if (r.len > 0)
    memcpy(text, r.buf, r.len);
  text[r.len] = '\0';
  reader_free(&r);
  return text;
}

#endif
