/*
 * The mux, end to end on one libuv loop: two sessions over a socketpair
 * (the carrier), channels driven by the test as streams, and a session
 * facing a raw socket the test speaks frames on itself.
 *
 * Data is a deterministic pseudo-random stream per channel and direction,
 * checked byte by byte as it arrives. Every wait turns the loop with a
 * deadline (WAIT_FOR); no sleep stands in for synchronisation. Every test
 * closes its sessions and channels, runs the loop dry and checks that
 * uv_loop_close() succeeds (nothing left open).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connector_ext.h"
#include "mux_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#define WAIT_MS 60000 /* generous for sanitizer builds moving 16 MiB streams */
#define MAX_CH 256
#define MIB (1024 * 1024)

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

static void loop_wait(uv_loop_t *loop, int fd) {
  struct pollfd pfd[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
  int timeout = uv_backend_timeout(loop);
  if (timeout < 0 || timeout > 5)
    timeout = 5;
  poll(pfd, fd >= 0 ? 2 : 1, timeout);
}

#define WAIT_FOR_FD(loop, fd, expr, ms)                                                            \
  do {                                                                                             \
    uint64_t deadline_ = mono_ms() + (ms);                                                         \
    for (;;) {                                                                                     \
      uv_run((loop), UV_RUN_NOWAIT);                                                               \
      if (expr)                                                                                    \
        break;                                                                                     \
      if (mono_ms() >= deadline_)                                                                  \
        fail_msg("%s:%d: timed out after %d ms waiting for %s", __FILE__, __LINE__, (int)(ms),     \
                 #expr);                                                                           \
      loop_wait((loop), (fd));                                                                     \
    }                                                                                              \
  } while (0)

#define WAIT_FOR(loop, expr) WAIT_FOR_FD(loop, -1, expr, WAIT_MS)

/* Turns the loop for ms milliseconds (a bounded negative check). */
static void run_for(uv_loop_t *loop, unsigned ms) {
  uint64_t deadline = mono_ms() + ms;
  while (mono_ms() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    loop_wait(loop, -1);
  }
}

/* ---- deterministic data ------------------------------------------------- */

typedef struct {
  uint64_t state;
} gen_t;

static void gen_init(gen_t *g, uint64_t seed) { g->state = seed * 0x9e3779b97f4a7c15ULL + 1; }

static uint8_t gen_byte(gen_t *g) {
  g->state ^= g->state << 13;
  g->state ^= g->state >> 7;
  g->state ^= g->state << 17;
  return (uint8_t)(g->state >> 24);
}

/* ---- an end of a channel, driven by the test ---------------------------- */

typedef struct {
  sj_stream_t *s;
  /* reading: what arrives must be the stream of rx_gen */
  gen_t rx_gen;
  uint64_t rx_bytes;
  int mismatch;
  int eof;
  int err;
  /* writing: tx_total bytes of tx_gen, then a FIN if fin_after */
  gen_t tx_gen;
  uint64_t tx_total, tx_done;
  size_t in_flight;
  char buf[96 * 1024];
  int fin_after, fin_done, write_err;
  int closed;
} end_t;

static void on_end_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  end_t *e = s->data;
  if (status == UV_EOF) {
    e->eof = 1;
    return;
  }
  if (status < 0) {
    e->err = status;
    return;
  }
  for (size_t i = c->off; i < c->len; i++)
    if ((uint8_t)c->data[i] != gen_byte(&e->rx_gen))
      e->mismatch = 1;
  e->rx_bytes += c->len - c->off;
  sj_pool_put(s->pool, c);
}

static void end_write_more(end_t *e);

static void on_end_write(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  (void)s;
  if (status < 0) {
    e->write_err = status;
    e->in_flight = 0;
    return;
  }
  e->tx_done += e->in_flight;
  e->in_flight = 0;
  end_write_more(e);
}

static void end_write_more(end_t *e) {
  if (e->in_flight > 0 || e->write_err || e->closed)
    return;
  if (e->tx_done == e->tx_total) {
    if (e->fin_after && !e->fin_done) {
      int rc = sj_stream_shutdown(e->s, NULL, NULL);
      assert_true(rc == SJ_DONE);
      e->fin_done = 1;
    }
    return;
  }
  /* Odd sizes, so that frames and chunks never line up. */
  size_t n = sizeof e->buf - (size_t)(e->tx_done % 7919);
  if (n > e->tx_total - e->tx_done)
    n = (size_t)(e->tx_total - e->tx_done);
  for (size_t i = 0; i < n; i++)
    e->buf[i] = (char)gen_byte(&e->tx_gen);
  e->in_flight = n;
  int rc = sj_stream_write(e->s, e->buf, n, on_end_write, e);
  if (rc != 0) {
    e->write_err = rc;
    e->in_flight = 0;
  }
}

static void end_attach(end_t *e, sj_stream_t *s, uint64_t rx_seed, uint64_t tx_seed) {
  memset(e, 0, sizeof *e);
  e->s = s;
  s->data = e;
  s->on_read = on_end_read;
  gen_init(&e->rx_gen, rx_seed);
  gen_init(&e->tx_gen, tx_seed);
}

static void end_send(end_t *e, uint64_t n, int fin_after) {
  e->tx_total += n;
  e->fin_after = fin_after;
  end_write_more(e);
}

static void on_end_closed(sj_stream_t *s) {
  end_t *e = s->data;
  e->closed = 2;
}

static void end_close(end_t *e, int reset) {
  e->closed = 1;
  sj_stream_close(e->s, reset, on_end_closed);
}

/* ---- the fixture: two sessions over a socketpair ------------------------ */

typedef struct {
  uv_loop_t loop;
  sj_pool_t pool;
  sj_mux_t *mux[2]; /* [0] the initiator */
  int ended[2], status[2];
  char why[2][160];
  sj_stream_t *accepted[2][MAX_CH];
  int n_accepted[2];
  int raw_fd; /* the test's end when one side is raw */
  end_t ends[2][MAX_CH];
} fx_t;

static void on_accept(sj_mux_t *m, sj_stream_t *ch, void *data) {
  fx_t *fx = data;
  int side = m == fx->mux[0] ? 0 : 1;
  assert_true(fx->n_accepted[side] < MAX_CH);
  fx->accepted[side][fx->n_accepted[side]++] = ch;
}

static void on_mux_end(sj_mux_t *m, int status, const char *why, void *data) {
  fx_t *fx = data;
  int side = m == fx->mux[0] ? 0 : 1;
  fx->ended[side]++;
  fx->status[side] = status;
  snprintf(fx->why[side], sizeof fx->why[side], "%s", why);
}

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  sj_pool_init(&fx->pool, SJ_CHUNK_SIZE, 8);
  fx->raw_fd = -1;
  *state = fx;
  return 0;
}

/* Whether the channel was given to one of the side's ends (which closes it). */
static int attached(fx_t *fx, int side, const sj_stream_t *ch) {
  for (int i = 0; i < MAX_CH; i++)
    if (fx->ends[side][i].s == ch)
      return 1;
  return 0;
}

/* Closes a channel the test took but never attached to an end. */
static void fx_close_accepted(fx_t *fx, int side, int i) {
  sj_stream_close(fx->accepted[side][i], 1, NULL);
  fx->accepted[side][i] = NULL;
}

static void fx_close_mux(fx_t *fx, int side) {
  sj_mux_close(fx->mux[side]);
  fx->mux[side] = NULL;
}

/* What a failed test left open is closed here, so that the next test
 * starts clean and the failure is reported rather than hanging. */
static void close_leftovers(fx_t *fx) {
  for (int side = 0; side < 2; side++) {
    for (int i = 0; i < MAX_CH; i++)
      if (fx->ends[side][i].s != NULL && fx->ends[side][i].closed == 0)
        end_close(&fx->ends[side][i], 1);
    for (int i = 0; i < fx->n_accepted[side]; i++)
      if (fx->accepted[side][i] != NULL && !attached(fx, side, fx->accepted[side][i]))
        fx_close_accepted(fx, side, i);
    if (fx->mux[side] != NULL)
      sj_mux_close(fx->mux[side]);
    fx->mux[side] = NULL;
  }
}

static int teardown(void **state) {
  fx_t *fx = *state;
  close_leftovers(fx);
  if (fx->raw_fd >= 0)
    close(fx->raw_fd);
  uint64_t deadline = mono_ms() + 10000;
  while (uv_loop_alive(&fx->loop) && mono_ms() < deadline) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, -1);
  }
  int rc = uv_loop_close(&fx->loop);
  sj_pool_drain(&fx->pool);
  free(fx);
  assert_int_equal(rc, 0); /* every handle closed */
  return 0;
}

static void mux_opts(fx_t *fx, sj_mux_options_t *o, int initiator) {
  sj_mux_options_init(o);
  o->initiator = initiator;
  o->on_accept = on_accept;
  o->on_end = on_mux_end;
  o->data = fx;
}

static sj_stream_t *carrier(fx_t *fx, int fd) {
  sj_stream_t *s;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  assert_int_equal(sj_uvstream_open(&fx->loop, &fx->pool, fd, 1, &s), 0);
  return s;
}

/* Two sessions; o0/o1 may be NULL for the defaults. */
static void start_pair(fx_t *fx, const sj_mux_options_t *o0, const sj_mux_options_t *o1) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  sj_mux_options_t o[2];
  mux_opts(fx, &o[0], 1);
  mux_opts(fx, &o[1], 0);
  if (o0 != NULL)
    o[0] = *o0;
  if (o1 != NULL)
    o[1] = *o1;
  for (int i = 0; i < 2; i++)
    assert_int_equal(sj_mux_new(carrier(fx, sv[i]), &o[i], &fx->mux[i]), 0);
}

/* One session facing the test's raw socket (fx->raw_fd). */
static void start_raw(fx_t *fx, const sj_mux_options_t *o) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  fx->raw_fd = sv[1];
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  assert_int_equal(sj_mux_new(carrier(fx, sv[0]), o, &fx->mux[0]), 0);
}

/* Opens n channels from side 0; side 1 accepts them. ends[0][i] and
 * ends[1][i] are the two ends of channel i; seeds differ per channel and
 * direction. */
static void open_channels(fx_t *fx, int n) {
  int base = fx->n_accepted[1];
  for (int i = 0; i < n; i++) {
    sj_stream_t *ch;
    assert_int_equal(sj_mux_open(fx->mux[0], &ch), 0);
    end_attach(&fx->ends[0][base + i], ch, 2000 + (uint64_t)(base + i),
               1000 + (uint64_t)(base + i));
    assert_int_equal(sj_stream_read_start(ch), 0);
  }
  WAIT_FOR(&fx->loop, fx->n_accepted[1] == base + n);
  for (int i = 0; i < n; i++) {
    end_attach(&fx->ends[1][base + i], fx->accepted[1][base + i], 1000 + (uint64_t)(base + i),
               2000 + (uint64_t)(base + i));
    assert_int_equal(sj_stream_read_start(fx->accepted[1][base + i]), 0);
  }
}

static void close_all(fx_t *fx, int n, int reset) {
  for (int side = 0; side < 2; side++)
    for (int i = 0; i < n; i++)
      if (!fx->ends[side][i].closed)
        end_close(&fx->ends[side][i], reset);
  for (int side = 0; side < 2; side++) {
    if (fx->mux[side] != NULL)
      sj_mux_close(fx->mux[side]);
    fx->mux[side] = NULL;
  }
  WAIT_FOR(&fx->loop, ({
    int all = 1;
    for (int side = 0; side < 2; side++)
      for (int i = 0; i < n; i++)
        all &= fx->ends[side][i].closed == 2;
    all;
  }));
}

/* ---- raw frames ------------------------------------------------------------ */

static void raw_send(fx_t *fx, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fx->raw_fd, p, len);
    if (n < 0 && errno == EAGAIN) {
      uv_run(&fx->loop, UV_RUN_NOWAIT);
      continue;
    }
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

/* Frames the session sent to the raw socket, parsed as they come. */
typedef struct {
  sj_mux_parser_t parser;
  int frames[8]; /* count per type */
  uint32_t last_reset_id, last_reset_code, goaway_code;
  uint8_t ping[8];
  uint64_t data_bytes;
  uint64_t window_total; /* credit granted */
  int eof;
} raw_seen_t;

static void raw_seen_init(raw_seen_t *seen) {
  memset(seen, 0, sizeof *seen);
  sj_mux_parser_init(&seen->parser);
}

/* A DATA frame on channel id of the next len bytes of g; returns its size. */
static size_t put_gen_data(uint8_t *f, uint32_t id, size_t len, gen_t *g) {
  size_t n = sj_mux_put_header(f, SJ_MUX_DATA, id, (uint32_t)len);
  for (size_t i = 0; i < len; i++)
    f[n + i] = gen_byte(g);
  return n + len;
}

static void raw_drain(fx_t *fx, raw_seen_t *seen) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fx->raw_fd, buf, sizeof buf);
    if (n == 0)
      seen->eof = 1;
    if (n <= 0)
      return;
    const char *p = buf;
    size_t left = (size_t)n;
    while (left > 0) {
      sj_mux_event_t ev;
      int64_t used = sj_mux_parse(&seen->parser, p, left, &ev);
      assert_true(used >= 0);
      p += used;
      left -= (size_t)used;
      if (ev.type == SJ_MUX_DATA_PART)
        seen->data_bytes += ev.data_len;
      if (ev.type == SJ_MUX_FRAME || (ev.type == SJ_MUX_DATA_PART && ev.last))
        seen->frames[ev.frame]++;
      if (ev.type == SJ_MUX_FRAME && ev.frame == SJ_MUX_RESET) {
        seen->last_reset_id = ev.id;
        seen->last_reset_code = ev.value;
      }
      if (ev.type == SJ_MUX_FRAME && ev.frame == SJ_MUX_WINDOW)
        seen->window_total += ev.value;
      if (ev.type == SJ_MUX_FRAME && ev.frame == SJ_MUX_GOAWAY)
        seen->goaway_code = ev.value;
      if (ev.type == SJ_MUX_FRAME && ev.frame == SJ_MUX_PING)
        memcpy(seen->ping, ev.opaque, 8);
    }
  }
}

#define RAW_WAIT_FOR(fx, seen, expr)                                                               \
  WAIT_FOR_FD(&(fx)->loop, (fx)->raw_fd, (raw_drain((fx), (seen)), (expr)), WAIT_MS)

/* ---- tests: data ------------------------------------------------------------ */

static void test_open_echo_half_close(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  open_channels(fx, 1);
  end_t *a = &fx->ends[0][0], *b = &fx->ends[1][0];
  assert_int_equal(sj_mux_channel_id(a->s), 1);
  assert_int_equal(sj_mux_channel_id(b->s), 1);
  /* A sends and half-closes; B still sends after reading A's EOF. */
  end_send(a, 1000, 1);
  WAIT_FOR(&fx->loop, b->eof);
  assert_int_equal(b->rx_bytes, 1000);
  assert_false(b->mismatch);
  end_send(b, 5000, 1);
  WAIT_FOR(&fx->loop, a->eof);
  assert_int_equal(a->rx_bytes, 5000);
  assert_false(a->mismatch);
  /* Both directions ended: closing sends nothing, and neither side sees a
   * reset. */
  end_close(a, 0);
  end_close(b, 0);
  WAIT_FOR(&fx->loop, a->closed == 2 && b->closed == 2);
  assert_int_equal(a->err, 0);
  assert_int_equal(b->err, 0);
  assert_int_equal(sj_mux_channels(fx->mux[0]), 0);
  assert_int_equal(sj_mux_channels(fx->mux[1]), 0);
  assert_int_equal(fx->ended[0] + fx->ended[1], 0);
  close_all(fx, 1, 0);
  assert_int_equal(fx->ended[0] + fx->ended[1], 0); /* not called after sj_mux_close() */
}

static void test_both_sides_open(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  sj_stream_t *ch;
  /* The non-initiator opens even ids; the tag reaches the peer. */
  assert_int_equal(sj_mux_open_tagged(fx->mux[1], 77, &ch), 0);
  assert_int_equal(sj_mux_channel_id(ch), 2);
  end_attach(&fx->ends[1][0], ch, 7, 8);
  sj_stream_read_start(ch);
  WAIT_FOR(&fx->loop, fx->n_accepted[0] == 1);
  assert_int_equal(sj_mux_channel_tag(fx->accepted[0][0]), 77);
  assert_int_equal(sj_mux_channel_id(fx->accepted[0][0]), 2);
  end_attach(&fx->ends[0][0], fx->accepted[0][0], 8, 7);
  sj_stream_read_start(fx->accepted[0][0]);
  end_send(&fx->ends[1][0], 300000, 1);
  end_send(&fx->ends[0][0], 300000, 1);
  WAIT_FOR(&fx->loop, fx->ends[0][0].eof && fx->ends[1][0].eof);
  assert_false(fx->ends[0][0].mismatch || fx->ends[1][0].mismatch);
  close_all(fx, 1, 0);
}

static void test_16mib_each_way_on_many_channels(void **state) {
  fx_t *fx = *state;
  enum { N = 4 };
  start_pair(fx, NULL, NULL);
  open_channels(fx, N);
  for (int i = 0; i < N; i++) {
    end_send(&fx->ends[0][i], 16 * MIB, 1);
    end_send(&fx->ends[1][i], 16 * MIB, 1);
  }
  WAIT_FOR(&fx->loop, ({
    int all = 1;
    for (int i = 0; i < N; i++)
      all &= fx->ends[0][i].eof && fx->ends[1][i].eof;
    all;
  }));
  for (int i = 0; i < N; i++)
    for (int side = 0; side < 2; side++) {
      assert_int_equal(fx->ends[side][i].rx_bytes, 16 * MIB);
      assert_false(fx->ends[side][i].mismatch);
      assert_int_equal(fx->ends[side][i].err, 0);
    }
  close_all(fx, N, 0);
}

static void test_two_hundred_channels(void **state) {
  fx_t *fx = *state;
  enum { N = 200 };
  start_pair(fx, NULL, NULL);
  open_channels(fx, N);
  assert_int_equal(sj_mux_channels(fx->mux[0]), N);
  for (int i = 0; i < N; i++) {
    end_send(&fx->ends[0][i], 20000 + (uint64_t)i * 97, 1);
    end_send(&fx->ends[1][i], 30000 + (uint64_t)i * 31, 1);
  }
  WAIT_FOR(&fx->loop, ({
    int all = 1;
    for (int i = 0; i < N; i++)
      all &= fx->ends[0][i].eof && fx->ends[1][i].eof;
    all;
  }));
  for (int i = 0; i < N; i++) {
    assert_int_equal(fx->ends[1][i].rx_bytes, 20000 + (uint64_t)i * 97);
    assert_int_equal(fx->ends[0][i].rx_bytes, 30000 + (uint64_t)i * 31);
    assert_false(fx->ends[0][i].mismatch || fx->ends[1][i].mismatch);
  }
  close_all(fx, N, 0);
  assert_int_equal(fx->ended[0] + fx->ended[1], 0);
}

/* Channels opened while the output is full of another's data still reach
 * the peer in the order of their ids (the peer refuses any other order). */
static void test_opens_behind_a_full_output_stay_in_order(void **state) {
  fx_t *fx = *state;
  enum { N = 60 };
  start_pair(fx, NULL, NULL);
  open_channels(fx, 1);
  end_send(&fx->ends[0][0], 8 * MIB, 1);
  for (int i = 1; i < N; i++) {
    sj_stream_t *ch;
    assert_int_equal(sj_mux_open(fx->mux[0], &ch), 0);
    end_attach(&fx->ends[0][i], ch, 2000 + (uint64_t)i, 1000 + (uint64_t)i);
    sj_stream_read_start(ch);
    end_send(&fx->ends[0][i], 70000, 1);
    if (i % 7 == 0)
      uv_run(&fx->loop, UV_RUN_NOWAIT); /* let some of the output go */
  }
  WAIT_FOR(&fx->loop, fx->n_accepted[1] == N || fx->ended[1] > 0);
  assert_int_equal(fx->ended[1], 0);
  for (int i = 0; i < N; i++) {
    if (i > 0) { /* channel 0's end was attached by open_channels() */
      end_attach(&fx->ends[1][i], fx->accepted[1][i], 1000 + (uint64_t)i, 2000 + (uint64_t)i);
      sj_stream_read_start(fx->accepted[1][i]);
    }
    end_send(&fx->ends[1][i], 0, 1);
  }
  WAIT_FOR(&fx->loop, ({
    int all = 1;
    for (int i = 0; i < N; i++)
      all &= fx->ends[1][i].eof && fx->ends[0][i].eof;
    all;
  }));
  assert_int_equal(fx->ends[1][0].rx_bytes, 8 * MIB);
  for (int i = 1; i < N; i++) {
    assert_int_equal(fx->ends[1][i].rx_bytes, 70000);
    assert_false(fx->ends[1][i].mismatch);
  }
  assert_int_equal(fx->ended[0] + fx->ended[1], 0);
  close_all(fx, N, 0);
}

/* A channel whose reader stops holds up nobody: the busy channel beside it
 * moves 16 MiB while the stalled one has at most one window in flight. */
static void test_stalled_channel_beside_busy_one(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  open_channels(fx, 2);
  end_t *stalled_rx = &fx->ends[1][0], *busy_rx = &fx->ends[1][1];
  sj_stream_read_stop(stalled_rx->s);
  end_send(&fx->ends[0][0], 4 * MIB, 1);
  end_send(&fx->ends[0][1], 16 * MIB, 1);
  WAIT_FOR(&fx->loop, busy_rx->eof);
  assert_int_equal(busy_rx->rx_bytes, 16 * MIB);
  assert_false(busy_rx->mismatch);
  /* The stalled channel's sender got no further than one window (plus
   * the write it has in flight, which the mux has not taken whole). */
  sj_mux_channel_t *tx = (sj_mux_channel_t *)fx->ends[0][0].s;
  assert_int_equal(stalled_rx->rx_bytes, 0);
  assert_true(fx->ends[0][0].tx_done <= SJ_MUX_INITIAL_WINDOW);
  assert_int_equal(tx->tx_credit, 0);
  sj_mux_channel_t *rx = (sj_mux_channel_t *)stalled_rx->s;
  size_t held = 0;
  for (sj_chunk_t *c = rx->rx_head; c != NULL; c = c->next)
    held += sj_chunk_remaining(c);
  assert_int_equal(held, SJ_MUX_INITIAL_WINDOW);
  /* Reading again lets it finish. */
  sj_stream_read_start(stalled_rx->s);
  WAIT_FOR(&fx->loop, stalled_rx->eof);
  assert_int_equal(stalled_rx->rx_bytes, 4 * MIB);
  assert_false(stalled_rx->mismatch);
  close_all(fx, 2, 0);
}

/* A tunnel in miniature: the connector (with the pumps every pair uses)
 * joins each mux channel to a socket unchanged. Side 0 accepts TCP and
 * opens a channel per connection; side 1 connects out per channel. */
typedef struct {
  sj_connector_t *c[2];
  int closed[2], pairs_closed[2], pair_status[2], done[2];
} tun_t;

static tun_t the_tun;

static int open_channel(void *data, sj_stream_t **out) {
  fx_t *fx = data;
  return sj_mux_open(fx->mux[0], out);
}

static void on_tun_pair_closed(sj_connector_t *c, const sj_pair_info_t *info, void *data) {
  tun_t *t = &the_tun;
  (void)data;
  int side = c == t->c[0] ? 0 : 1;
  t->pairs_closed[side]++;
  t->pair_status[side] = info->status;
}

static void on_tun_done(sj_connector_t *c, int status, void *data) {
  tun_t *t = &the_tun;
  (void)data;
  (void)status;
  t->done[c == t->c[0] ? 0 : 1] = 1;
}

static void on_tun_closed(sj_connector_t *c, void *data) {
  tun_t *t = &the_tun;
  (void)data;
  t->closed[c == t->c[0] ? 0 : 1] = 1;
}

static void on_accept_to_connector(sj_mux_t *m, sj_stream_t *ch, void *data) {
  (void)m;
  (void)data;
  assert_int_equal(sj__connector_add_stream(the_tun.c[1], SJ_A, ch), 0);
}

static int listen_tcp(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(fd, 8), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

static int connect_tcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* Starts the two connectors; side 1 connects to port. Returns side 0's
 * listening port. */
static int start_tunnel(fx_t *fx, int port) {
  sj_mux_options_t o1;
  mux_opts(fx, &o1, 0);
  o1.on_accept = on_accept_to_connector;
  start_pair(fx, NULL, &o1);
  memset(&the_tun, 0, sizeof the_tun);
  sj_options_t opts;
  sj_options_init(&opts);
  opts.on_pair_closed = on_tun_pair_closed;
  opts.on_done = on_tun_done;
  opts.data = fx;
  sj_side_spec_t listen = {.kind = SJ_SIDE_LISTEN, .host = "127.0.0.1", .port = 0};
  sj_side_spec_t open = {.kind = SJ__SIDE_OPEN}, fed = {.kind = SJ__SIDE_FED};
  sj_side_spec_t dial = {.kind = SJ_SIDE_CONNECT, .host = "127.0.0.1", .port = port};
  assert_int_equal(sj_connector_new(&the_tun.c[0], &fx->loop, &listen, &open, &opts, NULL), 0);
  sj__connector_set_open(the_tun.c[0], SJ_B, open_channel, fx);
  assert_int_equal(sj_connector_new(&the_tun.c[1], &fx->loop, &fed, &dial, &opts, NULL), 0);
  char addr[64];
  int lport = sj_connector_address(the_tun.c[0], SJ_A, addr, sizeof addr);
  assert_true(lport > 0);
  return lport;
}

static void stop_tunnel(fx_t *fx) {
  for (int i = 0; i < 2; i++)
    sj_connector_close(the_tun.c[i], on_tun_closed);
  WAIT_FOR(&fx->loop, the_tun.closed[0] && the_tun.closed[1]);
  close_all(fx, 0, 0);
}

/* Reads fd until EOF (or a reset) into buf, turning the loop. */
static size_t read_to_eof(fx_t *fx, int fd, char *buf, size_t cap, int *reset) {
  size_t got = 0;
  uint64_t deadline = mono_ms() + WAIT_MS;
  for (;;) {
    assert_true(mono_ms() < deadline);
    ssize_t n = read(fd, buf + got, cap - got);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      if (reset != NULL)
        *reset = n < 0;
      return got;
    }
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, fd);
  }
}

static void test_connector_joins_channels_to_sockets(void **state) {
  fx_t *fx = *state;
  int port, server = listen_tcp(&port);
  int lport = start_tunnel(fx, port);
  int client = connect_tcp(lport);
  int conn = -1;
  uint64_t deadline = mono_ms() + WAIT_MS;
  while ((conn = accept4(server, NULL, NULL, SOCK_NONBLOCK)) < 0) {
    assert_true(mono_ms() < deadline);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, server);
  }
  /* 3 MiB from the client to the service, then the client's EOF. */
  static char data[3 * MIB], got[3 * MIB + 1];
  gen_t g;
  gen_init(&g, 42);
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (char)gen_byte(&g);
  size_t sent = 0, recvd = 0;
  int eof = 0;
  deadline = mono_ms() + WAIT_MS;
  while (!eof) {
    assert_true(mono_ms() < deadline);
    if (sent < sizeof data) {
      ssize_t n = write(client, data + sent, sizeof data - sent);
      if (n > 0 && (sent += (size_t)n) == sizeof data)
        shutdown(client, SHUT_WR);
    }
    ssize_t n = read(conn, got + recvd, sizeof got - recvd);
    if (n > 0)
      recvd += (size_t)n;
    eof = n == 0;
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, conn);
  }
  assert_int_equal(recvd, sizeof data);
  assert_memory_equal(got, data, sizeof data);
  /* The service answers after the client's half-close, then closes. */
  assert_int_equal(write(conn, "pong", 4), 4);
  close(conn);
  char back[8];
  int reset = 0;
  assert_int_equal(read_to_eof(fx, client, back, sizeof back, &reset), 4);
  assert_false(reset);
  assert_memory_equal(back, "pong", 4);
  WAIT_FOR(&fx->loop, the_tun.pairs_closed[0] == 1 && the_tun.pairs_closed[1] == 1);
  assert_int_equal(the_tun.pair_status[0], 0);
  assert_int_equal(the_tun.pair_status[1], 0);
  WAIT_FOR(&fx->loop, sj_mux_channels(fx->mux[0]) == 0 && sj_mux_channels(fx->mux[1]) == 0);
  close(client);
  close(server);
  stop_tunnel(fx);
}

/* The far side cannot connect: the channel is refused, and the client is
 * closed at once; the near side's pair reports the refusal. */
static void test_far_connect_failure_closes_the_client(void **state) {
  fx_t *fx = *state;
  int port, server = listen_tcp(&port);
  close(server); /* nobody listens there now */
  int lport = start_tunnel(fx, port);
  int client = connect_tcp(lport);
  assert_int_equal(write(client, "hello", 5), 5);
  char buf[16];
  assert_int_equal(read_to_eof(fx, client, buf, sizeof buf, NULL), 0);
  WAIT_FOR(&fx->loop, the_tun.pairs_closed[0] == 1);
  assert_int_equal(the_tun.pair_status[0], UV_ECONNREFUSED);
  close(client);
  stop_tunnel(fx);
}

/* With no session to open channels on, local connections are closed at
 * once rather than accepted into nothing. */
static int no_channel(void *data, sj_stream_t **out) {
  (void)data;
  (void)out;
  return UV_ENOTCONN;
}

static void test_no_session_closes_local_connections(void **state) {
  fx_t *fx = *state;
  int port, server = listen_tcp(&port);
  int lport = start_tunnel(fx, port);
  sj__connector_set_open(the_tun.c[0], SJ_B, no_channel, NULL);
  int client = connect_tcp(lport);
  char buf[16];
  read_to_eof(fx, client, buf, sizeof buf, NULL);
  assert_int_equal(sj_mux_channels(fx->mux[0]), 0);
  close(client);
  close(server);
  stop_tunnel(fx);
}

/* ---- tests: resets and refusals ----------------------------------------- */

static void test_reset_both_ways(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  open_channels(fx, 2);
  /* Side 0 resets channel 0 in the middle of a transfer: side 1's reader
   * learns at once, even though it has stopped reading. */
  end_send(&fx->ends[0][0], 8 * MIB, 0);
  end_send(&fx->ends[1][0], 8 * MIB, 0);
  WAIT_FOR(&fx->loop, fx->ends[1][0].rx_bytes > 0);
  sj_stream_read_stop(fx->ends[1][0].s);
  end_close(&fx->ends[0][0], 1);
  WAIT_FOR(&fx->loop, fx->ends[1][0].err == UV_ECONNRESET);
  WAIT_FOR(&fx->loop, fx->ends[1][0].write_err == UV_ECONNRESET);
  assert_true(sj_stream_write(fx->ends[1][0].s, "x", 1, on_end_write, &fx->ends[1][0]) ==
              UV_ECONNRESET);
  /* And the other way on channel 1, which is idle. */
  end_close(&fx->ends[1][1], 1);
  WAIT_FOR(&fx->loop, fx->ends[0][1].err == UV_ECONNRESET);
  /* The session itself is fine. */
  assert_int_equal(fx->ended[0] + fx->ended[1], 0);
  open_channels(fx, 1);
  end_send(&fx->ends[0][2], 100000, 1);
  WAIT_FOR(&fx->loop, fx->ends[1][2].eof);
  assert_false(fx->ends[1][2].mismatch);
  close_all(fx, 3, 0);
}

static void test_refuse_and_channel_limit(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o1;
  mux_opts(fx, &o1, 0);
  o1.max_channels = 2;
  start_pair(fx, NULL, &o1);
  open_channels(fx, 2);
  /* Side 1 refuses what it cannot serve. */
  sj_stream_t *ch;
  assert_int_equal(sj_mux_open(fx->mux[0], &ch), 0);
  end_attach(&fx->ends[0][2], ch, 1, 1);
  sj_stream_read_start(ch);
  WAIT_FOR(&fx->loop, fx->ends[0][2].err != 0);
  assert_int_equal(fx->ends[0][2].err, UV_ECONNREFUSED);
  assert_int_equal(fx->n_accepted[1], 2);
  /* Below the limit again, a channel it refuses itself. */
  end_close(&fx->ends[1][0], 1);
  WAIT_FOR(&fx->loop, fx->ends[0][0].err == UV_ECONNRESET);
  assert_int_equal(sj_mux_open(fx->mux[0], &ch), 0);
  end_attach(&fx->ends[0][3], ch, 1, 1);
  sj_stream_read_start(ch);
  WAIT_FOR(&fx->loop, fx->n_accepted[1] == 3);
  end_attach(&fx->ends[1][3], fx->accepted[1][2], 1, 1);
  fx->ends[1][3].closed = 1;
  sj_mux_refuse(fx->accepted[1][2], on_end_closed);
  WAIT_FOR(&fx->loop, fx->ends[0][3].err == UV_ECONNREFUSED);
  fx->ends[1][2].closed = 2; /* channel 2 never reached side 1 */
  close_all(fx, 4, 0);
}

static void test_open_limit_on_this_side(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o0;
  mux_opts(fx, &o0, 1);
  o0.max_channels = 1;
  start_pair(fx, &o0, NULL);
  open_channels(fx, 1);
  sj_stream_t *ch;
  assert_int_equal(sj_mux_open(fx->mux[0], &ch), UV_EMFILE);
  close_all(fx, 1, 0);
}

/* ---- tests: the session ending ------------------------------------------- */

static void test_carrier_loss_fails_every_channel(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  open_channels(fx, 3);
  end_send(&fx->ends[0][0], 16 * MIB, 0);
  sj_stream_read_stop(fx->ends[1][1].s); /* a stopped reader learns too */
  WAIT_FOR(&fx->loop, fx->ends[1][0].rx_bytes > 0);
  /* The carrier breaks under side 0 (both ways, no goodbye). */
  uv_os_fd_t fd;
  assert_int_equal(uv_fileno((uv_handle_t *)sj_uvstream_handle(fx->mux[0]->carrier), &fd), 0);
  shutdown(fd, SHUT_RDWR);
  WAIT_FOR(&fx->loop, fx->ended[0] == 1 && fx->ended[1] == 1);
  assert_true(fx->status[1] == UV_EOF || fx->status[1] == UV_EPIPE);
  for (int side = 0; side < 2; side++)
    for (int i = 0; i < 3; i++)
      WAIT_FOR(&fx->loop, fx->ends[side][i].err == UV_ECONNABORTED);
  sj_stream_t *ch;
  assert_int_equal(sj_mux_open(fx->mux[1], &ch), UV_ECONNABORTED);
  close_all(fx, 3, 0);
  assert_int_equal(fx->ended[0], 1);
  assert_int_equal(fx->ended[1], 1);
}

static void test_goaway_when_peer_closes(void **state) {
  fx_t *fx = *state;
  start_pair(fx, NULL, NULL);
  open_channels(fx, 1);
  fx_close_mux(fx, 1);
  WAIT_FOR(&fx->loop, fx->ended[0] == 1);
  assert_int_equal(fx->status[0], UV_ECONNABORTED);
  assert_string_equal(fx->why[0], "peer ended the session");
  WAIT_FOR(&fx->loop, fx->ends[0][0].err == UV_ECONNABORTED);
  WAIT_FOR(&fx->loop, fx->ends[1][0].err == UV_ECONNABORTED);
  close_all(fx, 1, 0);
}

/* The session pings a silent peer, and ends once it has been silent for the
 * idle timeout. */
static void test_heartbeat_finds_a_silent_peer(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o;
  mux_opts(fx, &o, 1);
  o.ping_ms = 50;
  o.idle_timeout_ms = 400;
  start_raw(fx, &o);
  raw_seen_t seen;
  raw_seen_init(&seen);
  uint64_t start = mono_ms();
  /* Answering pings is not needed: any frame counts as a sign of life. */
  RAW_WAIT_FOR(fx, &seen, seen.frames[SJ_MUX_PING] >= 3);
  uint8_t pong[SJ_MUX_CONTROL_MAX];
  raw_send(fx, pong, sj_mux_put_ping(pong, SJ_MUX_PONG, seen.ping));
  assert_int_equal(fx->ended[0], 0);
  RAW_WAIT_FOR(fx, &seen, fx->ended[0] == 1);
  uint64_t took = mono_ms() - start;
  assert_int_equal(fx->status[0], UV_ETIMEDOUT);
  assert_true(took >= 400 && took < 5000);
  RAW_WAIT_FOR(fx, &seen, seen.eof);
  assert_int_equal(seen.frames[SJ_MUX_GOAWAY], 1);
  assert_int_equal(seen.goaway_code, SJ_MUX_CODE_TIMEOUT);
  fx_close_mux(fx, 0);
}

static void test_pings_keep_a_live_session(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o[2];
  for (int i = 0; i < 2; i++) {
    mux_opts(fx, &o[i], i == 0);
    o[i].ping_ms = 30;
    o[i].idle_timeout_ms = 150;
  }
  start_pair(fx, &o[0], &o[1]);
  run_for(&fx->loop, 600); /* four idle timeouts */
  assert_int_equal(fx->ended[0] + fx->ended[1], 0);
  close_all(fx, 0, 0);
}

/* A peer that breaks the protocol ends the session with a reason, and is
 * told so with a GOAWAY. */
static void expect_protocol_error(fx_t *fx, const void *frames, size_t len, const char *why) {
  sj_mux_options_t o;
  mux_opts(fx, &o, 1);
  start_raw(fx, &o);
  raw_seen_t seen;
  raw_seen_init(&seen);
  raw_send(fx, frames, len);
  RAW_WAIT_FOR(fx, &seen, fx->ended[0] == 1 && seen.eof);
  assert_int_equal(fx->status[0], UV_EPROTO);
  assert_string_equal(fx->why[0], why);
  assert_int_equal(seen.goaway_code, SJ_MUX_CODE_PROTOCOL);
  fx_close_mux(fx, 0);
  for (int i = 0; i < fx->n_accepted[0]; i++)
    fx_close_accepted(fx, 0, i);
}

static void test_protocol_error_bad_frame(void **state) {
  uint8_t f[SJ_MUX_HEADER_LEN] = {9, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  expect_protocol_error(*state, f, sizeof f, "peer sent a bad frame: unknown frame type");
}

static void test_protocol_error_window_exceeded(void **state) {
  static uint8_t f[SJ_MUX_HEADER_LEN * 6 + 4 + SJ_MUX_INITIAL_WINDOW + 1];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 2, 0);
  size_t left = SJ_MUX_INITIAL_WINDOW + 1;
  while (left > 0) {
    size_t k = left < SJ_MUX_PAYLOAD_MAX ? left : SJ_MUX_PAYLOAD_MAX;
    n += sj_mux_put_header(f + n, SJ_MUX_DATA, 2, (uint32_t)k);
    memset(f + n, 'x', k);
    n += k;
    left -= k;
  }
  expect_protocol_error(*state, f, n, "peer sent DATA beyond the window on channel 2");
}

static void test_protocol_error_unknown_channel(void **state) {
  uint8_t f[SJ_MUX_HEADER_LEN + 1];
  size_t n = sj_mux_put_header(f, SJ_MUX_DATA, 4, 1);
  f[n++] = 'x';
  expect_protocol_error(*state, f, n, "peer sent a frame of type 0 for channel 4, never opened");
}

static void test_protocol_error_wrong_parity(void **state) {
  uint8_t f[SJ_MUX_CONTROL_MAX];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 3, 0);
  expect_protocol_error(*state, f, n, "peer opened channel 3, an id of this side's");
}

static void test_protocol_error_data_after_fin(void **state) {
  uint8_t f[3 * SJ_MUX_HEADER_LEN + 5];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 2, 0);
  n += sj_mux_put_header(f + n, SJ_MUX_FIN, 2, 0);
  n += sj_mux_put_header(f + n, SJ_MUX_DATA, 2, 1);
  f[n++] = 'x';
  expect_protocol_error(*state, f, n, "peer sent DATA on channel 2 after its FIN");
}

/* Frames for a channel this side has closed are dropped, not errors: they
 * were in flight. */
static void test_frames_for_closed_channel_are_dropped(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o;
  mux_opts(fx, &o, 1);
  start_raw(fx, &o);
  raw_seen_t seen;
  raw_seen_init(&seen);
  uint8_t f[64];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 2, 0);
  raw_send(fx, f, n);
  WAIT_FOR(&fx->loop, fx->n_accepted[0] == 1);
  fx_close_accepted(fx, 0, 0);
  RAW_WAIT_FOR(fx, &seen, seen.frames[SJ_MUX_RESET] == 1);
  assert_int_equal(seen.last_reset_id, 2);
  assert_int_equal(seen.last_reset_code, SJ_MUX_CODE_NONE);
  n = sj_mux_put_header(f, SJ_MUX_DATA, 2, 1);
  f[n++] = 'x';
  n += sj_mux_put_u32(f + n, SJ_MUX_WINDOW, 2, 100);
  n += sj_mux_put_header(f + n, SJ_MUX_FIN, 2, 0);
  raw_send(fx, f, n);
  /* A PING after them is answered: the session is still up. */
  uint8_t ping[8] = {9, 8, 7, 6, 5, 4, 3, 2};
  n = sj_mux_put_ping(f, SJ_MUX_PING, ping);
  raw_send(fx, f, n);
  RAW_WAIT_FOR(fx, &seen, seen.frames[SJ_MUX_PONG] == 1);
  assert_int_equal(fx->ended[0], 0);
  fx_close_mux(fx, 0);
  RAW_WAIT_FOR(fx, &seen, seen.eof);
  assert_int_equal(seen.frames[SJ_MUX_GOAWAY], 1);
  assert_int_equal(seen.goaway_code, SJ_MUX_CODE_NONE);
}

/* Window updates flow back as the reader takes data, so a long transfer
 * on one channel needs far more than one window. */
static void test_window_updates_are_batched(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o;
  mux_opts(fx, &o, 0);
  start_raw(fx, &o);
  raw_seen_t seen;
  raw_seen_init(&seen);
  static uint8_t f[SJ_MUX_HEADER_LEN + SJ_MUX_PAYLOAD_MAX];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 1, 0);
  raw_send(fx, f, n);
  WAIT_FOR(&fx->loop, fx->n_accepted[0] == 1);
  end_t *e = &fx->ends[0][0];
  end_attach(e, fx->accepted[0][0], 5, 5);
  sj_stream_read_start(e->s);
  /* 1 MiB in 64 KiB frames, sending only while credit remains. */
  uint64_t credit = SJ_MUX_INITIAL_WINDOW, sent = 0;
  gen_t g;
  gen_init(&g, 5);
  while (sent < MIB) {
    RAW_WAIT_FOR(fx, &seen, (credit = SJ_MUX_INITIAL_WINDOW + seen.window_total - sent) > 0);
    size_t k = credit < SJ_MUX_PAYLOAD_MAX ? (size_t)credit : SJ_MUX_PAYLOAD_MAX;
    raw_send(fx, f, put_gen_data(f, 1, k, &g));
    sent += k;
  }
  WAIT_FOR(&fx->loop, e->rx_bytes == MIB);
  assert_false(e->mismatch);
  /* One WINDOW per quarter window taken, no more. */
  RAW_WAIT_FOR(fx, &seen, seen.frames[SJ_MUX_WINDOW] >= (int)(MIB / SJ_MUX_GRANT) - 1);
  assert_true(seen.frames[SJ_MUX_WINDOW] <= (int)(MIB / SJ_MUX_GRANT));
  end_close(e, 1);
  fx_close_mux(fx, 0);
  WAIT_FOR(&fx->loop, e->closed == 2);
}

/* A channel queued to send a WINDOW and then closed cleanly has nothing
 * left to send: it must leave the turn order, or it holds the head of the
 * queue and every channel behind it waits for ever (seen as a stalled
 * tunnel over a lossy link, where the output is often full). */
static void test_closed_channel_leaves_the_turn_order(void **state) {
  fx_t *fx = *state;
  sj_mux_options_t o;
  mux_opts(fx, &o, 1);
  start_raw(fx, &o);
  raw_seen_t seen;
  raw_seen_init(&seen);
  static uint8_t f[SJ_MUX_HEADER_LEN + SJ_MUX_GRANT];
  size_t n = sj_mux_put_u32(f, SJ_MUX_OPEN, 2, 0);
  n += sj_mux_put_u32(f + n, SJ_MUX_OPEN, 4, 0);
  n += sj_mux_put_u32(f + n, SJ_MUX_WINDOW, 2, 2 * MIB); /* the busy one may send 2 MiB more */
  raw_send(fx, f, n);
  WAIT_FOR(&fx->loop, fx->n_accepted[0] == 2);
  end_t *busy = &fx->ends[0][0], *quiet = &fx->ends[0][1];
  end_attach(busy, fx->accepted[0][0], 7, 7);
  end_attach(quiet, fx->accepted[0][1], 9, 9);
  sj_stream_read_start(busy->s);
  sj_stream_read_start(quiet->s);
  /* The quiet channel has finished sending before the output fills. */
  end_send(quiet, 0, 1);
  RAW_WAIT_FOR(fx, &seen, seen.frames[SJ_MUX_FIN] == 1);
  /* The busy one fills the output, which nobody reads for now. */
  end_send(busy, 2 * MIB, 0);
  WAIT_FOR(&fx->loop, busy->tx_done > 0); /* its first write is out */
  /* A quarter window taken by the quiet channel's reader: its WINDOW
   * waits behind the busy channel's turn. Then its peer finishes too. */
  gen_t g;
  gen_init(&g, 9);
  raw_send(fx, f, put_gen_data(f, 4, SJ_MUX_GRANT, &g));
  WAIT_FOR(&fx->loop, quiet->rx_bytes == SJ_MUX_GRANT);
  n = sj_mux_put_header(f, SJ_MUX_FIN, 4, 0);
  raw_send(fx, f, n);
  WAIT_FOR(&fx->loop, quiet->eof);
  end_close(quiet, 0); /* both ways ended: a clean close, nothing to say */
  WAIT_FOR(&fx->loop, quiet->closed == 2);
  /* Now the output drains: all of the busy channel's data comes out. */
  RAW_WAIT_FOR(fx, &seen, seen.data_bytes == 2 * MIB);
  assert_false(quiet->mismatch);
  assert_int_equal(seen.frames[SJ_MUX_RESET], 0);
  end_close(busy, 1);
  fx_close_mux(fx, 0);
  WAIT_FOR(&fx->loop, busy->closed == 2);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* as the CLI does: a write to a closed peer fails instead */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_echo_half_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_both_sides_open, setup, teardown),
      cmocka_unit_test_setup_teardown(test_16mib_each_way_on_many_channels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_hundred_channels, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stalled_channel_beside_busy_one, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_channel_leaves_the_turn_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_opens_behind_a_full_output_stay_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_connector_joins_channels_to_sockets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_far_connect_failure_closes_the_client, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_session_closes_local_connections, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reset_both_ways, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuse_and_channel_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_limit_on_this_side, setup, teardown),
      cmocka_unit_test_setup_teardown(test_carrier_loss_fails_every_channel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_goaway_when_peer_closes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_heartbeat_finds_a_silent_peer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pings_keep_a_live_session, setup, teardown),
      cmocka_unit_test_setup_teardown(test_protocol_error_bad_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_protocol_error_window_exceeded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_protocol_error_unknown_channel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_protocol_error_wrong_parity, setup, teardown),
      cmocka_unit_test_setup_teardown(test_protocol_error_data_after_fin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_frames_for_closed_channel_are_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_window_updates_are_batched, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
