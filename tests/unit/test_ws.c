/* The WebSocket carrier as a stream, over socketpairs and loopback TCP with
 * a libuv loop: 16 MiB each way checked by hash, half-close, backpressure
 * with bounded memory, refused and broken handshakes, truncation, and a
 * raw peer sending what a WebSocket peer must not. Every wait runs the
 * loop until a condition holds, with a deadline; nothing sleeps. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_certs.h"
#include "tls.h"
#include "ws.h"
#include "ws_handshake.h"

#define MiB (1024 * 1024)
#define DEADLINE_MS 60000
#define WBUF_MAX (200 * 1024)

static uv_loop_t loop;
static sj_pool_t pool;
/* Callbacks seen, for settle(). */
static uint64_t progress;

/* ---- an end: a stream that sends random bytes and hashes both ways ------- */

typedef struct {
  sj_stream_t *s;
  /* the layer callback: the handshake, then a later failure */
  int hs_calls, hs_status, late_calls, late_status;
  char hs_text[256], late_text[256];
  /* sending: to_send bytes of a seeded random stream, then a shutdown */
  uint64_t rng, to_send, sent;
  int sending, writing, shut_after, shut_done, shut_status, write_status;
  char *wbuf;
  EVP_MD_CTX *tx;
  /* receiving */
  EVP_MD_CTX *rx;
  uint64_t received;
  int reading, eof, read_err;
  size_t max_buffered; /* the most the ws stream held, seen at each read */
  int closed;
} end_t;

static uint64_t next_rand(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static void end_init(end_t *e, uint64_t seed) {
  memset(e, 0, sizeof *e);
  e->rng = seed;
  e->wbuf = malloc(WBUF_MAX);
  e->tx = EVP_MD_CTX_new();
  e->rx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(e->tx, EVP_sha256(), NULL);
  EVP_DigestInit_ex(e->rx, EVP_sha256(), NULL);
}

static void end_free(end_t *e) {
  free(e->wbuf);
  EVP_MD_CTX_free(e->tx);
  EVP_MD_CTX_free(e->rx);
}

static void digest(EVP_MD_CTX *md, unsigned char out[32]) {
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, out, &n);
}

/* What one end sent is what the other received. */
static void assert_same_bytes(end_t *from, end_t *to) {
  unsigned char a[32], b[32];
  assert_int_equal(from->sent, to->received);
  digest(from->tx, a);
  digest(to->rx, b);
  assert_memory_equal(a, b, 32);
}

static void layer_cb(sj_stream_t *s, int status, const char *text, void *arg) {
  end_t *e = arg;
  (void)s;
  progress++;
  if (e->hs_calls++ == 0) {
    e->hs_status = status;
    snprintf(e->hs_text, sizeof e->hs_text, "%s", text != NULL ? text : "");
  } else {
    e->late_calls++;
    e->late_status = status;
    snprintf(e->late_text, sizeof e->late_text, "%s", text != NULL ? text : "");
  }
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  end_t *e = s->data;
  progress++;
  if (c != NULL) {
    EVP_DigestUpdate(e->rx, c->data + c->off, sj_chunk_remaining(c));
    e->received += sj_chunk_remaining(c);
    sj_pool_put(s->pool, c);
    size_t held = sj_filter_buffered(s);
    if (held > e->max_buffered)
      e->max_buffered = held;
  } else if (status == UV_EOF) {
    e->eof = 1;
  } else if (status < 0) {
    e->read_err = status;
  }
}

static void send_more(end_t *e);

static void on_shutdown(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  (void)s;
  progress++;
  e->shut_done = 1;
  e->shut_status = status;
}

static void start_shutdown(end_t *e) {
  int rc = sj_stream_shutdown(e->s, on_shutdown, e);
  if (rc == SJ_DONE || rc < 0) {
    e->shut_done = 1;
    e->shut_status = rc < 0 ? rc : 0;
  }
}

static void on_write(sj_stream_t *s, int status, void *arg) {
  end_t *e = arg;
  (void)s;
  progress++;
  e->writing = 0;
  if (status < 0) {
    e->write_status = status;
    return;
  }
  send_more(e);
}

/* One write of a random size, its bytes counted and hashed as they go. */
static void send_more(end_t *e) {
  if (!e->sending || e->writing || e->write_status != 0)
    return;
  if (e->sent == e->to_send) {
    e->sending = 0;
    if (e->shut_after)
      start_shutdown(e);
    return;
  }
  size_t n = 1 + next_rand(&e->rng) % WBUF_MAX;
  if (n > e->to_send - e->sent)
    n = (size_t)(e->to_send - e->sent);
  for (size_t i = 0; i < n; i++)
    e->wbuf[i] = (char)next_rand(&e->rng);
  EVP_DigestUpdate(e->tx, e->wbuf, n);
  e->sent += n;
  e->writing = 1;
  int rc = sj_stream_write(e->s, e->wbuf, n, on_write, e);
  if (rc != 0) {
    e->writing = 0;
    e->write_status = rc;
  }
}

static void end_send(end_t *e, uint64_t n, int shut_after) {
  e->to_send = n;
  e->shut_after = shut_after;
  e->sending = 1;
  send_more(e);
}

static void end_attach(end_t *e, sj_stream_t *s, int read) {
  e->s = s;
  s->data = e;
  s->on_read = on_read;
  if (read) {
    e->reading = 1;
    assert_int_equal(sj_stream_read_start(s), 0);
  }
}

static void on_closed(sj_stream_t *s) { ((end_t *)s->data)->closed = 1; }

static void end_close(end_t *e) {
  if (e->s != NULL && !e->closed)
    sj_stream_close(e->s, 0, on_closed);
}

/* ---- the loop ------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until pred holds; fails the test at the deadline. */
static void run_until(int (*pred)(void *), void *arg) {
  uv_timer_t timer;
  int expired = 0;
  uv_timer_init(&loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, on_deadline, DEADLINE_MS, 0);
  while (!pred(arg) && !expired)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  if (expired)
    fail_msg("deadline passed");
}

/* Runs the loop until nothing happens any more (no time involved): every
 * socket read to exhaustion, every write as far as it goes, many turns of
 * the loop in a row without a callback. */
static void settle(void) {
  for (int quiet = 0; quiet < 50; quiet++) {
    uint64_t before = progress;
    uv_run(&loop, UV_RUN_NOWAIT);
    if (progress != before)
      quiet = 0;
  }
}

static int handshaken(void *arg) {
  end_t *e = arg;
  return e[0].hs_calls > 0 && e[1].hs_calls > 0;
}

static int both_done(void *arg) {
  end_t *e = arg;
  return e[0].eof && e[1].eof && e[0].shut_done && e[1].shut_done;
}

static int failed(void *arg) {
  end_t *e = arg;
  return e->read_err != 0 || e->hs_status != 0 || e->late_calls > 0;
}

static int closed(void *arg) {
  end_t *e = arg;
  return (e[0].s == NULL || e[0].closed) && (e[1].s == NULL || e[1].closed);
}

/* ---- lower streams -------------------------------------------------------- */

static void open_fds(const int fds[2], sj_stream_t **a, sj_stream_t **b) {
  assert_int_equal(sj_uvstream_open(&loop, &pool, fds[0], 1, a), 0);
  assert_int_equal(sj_uvstream_open(&loop, &pool, fds[1], 1, b), 0);
}

static void socket_pair(sj_stream_t **a, sj_stream_t **b) {
  int fds[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  open_fds(fds, a, b);
}

/* A connected loopback TCP pair (a listener on port 0, gone at once). */
static void tcp_pair(sj_stream_t **a, sj_stream_t **b) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int l = socket(AF_INET, SOCK_STREAM, 0), fds[2];
  assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(l, 1), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
  fds[0] = socket(AF_INET, SOCK_STREAM, 0);
  assert_int_equal(connect(fds[0], (struct sockaddr *)&sa, sizeof sa), 0);
  fds[1] = accept(l, NULL, NULL);
  assert_true(fds[1] >= 0);
  close(l);
  open_fds(fds, a, b);
}

/* A client end c and a server end s over lower streams ra and rb. */
static void ws_pair(end_t e[2], sj_stream_t *ra, sj_stream_t *rb, const char *cpath,
                    const char *spath) {
  sj_stream_t *c, *s;
  assert_int_equal(
      sj_ws_stream_new(ra, SJ_WS_CLIENT, "tunnel.example:443", cpath, layer_cb, &e[0], &c), 0);
  assert_int_equal(sj_ws_stream_new(rb, SJ_WS_SERVER, NULL, spath, layer_cb, &e[1], &s), 0);
  end_attach(&e[0], c, 1);
  end_attach(&e[1], s, 1);
}

static int setup(void **state) {
  (void)state;
  sj_pool_init(&pool, SJ_CHUNK_SIZE, 64);
  return uv_loop_init(&loop);
}

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  /* After a passing test nothing is left; after a failed one, whatever
   * is left is closed (and leaked) rather than run forever. */
  uv_walk(&loop, close_handle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  sj_pool_drain(&pool);
  return rc;
}

static void close_ends(end_t e[2]) {
  end_close(&e[0]);
  end_close(&e[1]);
  run_until(closed, e);
  end_free(&e[0]);
  end_free(&e[1]);
}

/* ---- data ----------------------------------------------------------------- */

/* Both ends send 16 MiB at once and shut down; both read everything and a
 * clean end; memory stays within the filter's bounds throughout. */
static void each_way(sj_stream_t *ra, sj_stream_t *rb) {
  end_t e[2];
  end_init(&e[0], 0x1234567);
  end_init(&e[1], 0x7654321);
  ws_pair(e, ra, rb, "/tunnel", "/tunnel");
  end_send(&e[0], 16 * MiB, 1);
  end_send(&e[1], 16 * MiB, 1);
  run_until(both_done, e);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(e[i].hs_status, 0);
    assert_int_equal(e[i].late_calls, 0);
    assert_int_equal(e[i].read_err, 0);
    assert_int_equal(e[i].write_status, 0);
    assert_int_equal(e[i].shut_status, 0);
    /* queued towards the peer (under the mark plus one message), one
     * decoded chunk, one undecoded one */
    assert_true(e[i].max_buffered <= SJ_FILTER_OUT_HWM + SJ_WS_MESSAGE_MAX + 2 * SJ_CHUNK_SIZE);
  }
  assert_same_bytes(&e[0], &e[1]);
  assert_same_bytes(&e[1], &e[0]);
  close_ends(e);
}

static void test_16mib_each_way_socketpair(void **state) {
  (void)state;
  sj_stream_t *a, *b;
  socket_pair(&a, &b);
  each_way(a, b);
}

static void test_16mib_each_way_tcp(void **state) {
  (void)state;
  sj_stream_t *a, *b;
  tcp_pair(&a, &b);
  each_way(a, b);
}

static int got_eof(void *arg) { return ((end_t *)arg)->eof; }

/* A WebSocket over TLS over a socketpair, as --transport ws --tls builds
 * it: both ways, and the ends of both layers (the close frames, then
 * close_notify once both have passed). */
static void test_over_tls(void **state) {
  (void)state;
  certs_t certs;
  assert_int_equal(certs_make(&certs), 0);
  sj_tls_config_t scfg = {.server = 1, .cert = certs.server_cert, .key = certs.server_key};
  sj_tls_config_t ccfg = {.ca = certs.ca};
  sj_tls_ctx_t *sctx = NULL, *cctx = NULL;
  char err[256];
  assert_int_equal(sj_tls_ctx_new(&scfg, &sctx, err, sizeof err), 0);
  assert_int_equal(sj_tls_ctx_new(&ccfg, &cctx, err, sizeof err), 0);
  sj_stream_t *a, *b, *ta, *tb;
  socket_pair(&a, &b);
  assert_int_equal(sj_tls_stream_new(a, cctx, "localhost", NULL, NULL, &ta), 0);
  assert_int_equal(sj_tls_stream_new(b, sctx, NULL, NULL, NULL, &tb), 0);
  end_t e[2];
  end_init(&e[0], 77);
  end_init(&e[1], 88);
  ws_pair(e, ta, tb, "/tunnel", "/tunnel");
  end_send(&e[0], 4 * MiB + 5, 1);
  end_send(&e[1], 3 * MiB, 1);
  run_until(both_done, e);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(e[i].hs_status, 0);
    assert_int_equal(e[i].read_err, 0);
    assert_int_equal(e[i].shut_status, 0);
  }
  assert_same_bytes(&e[0], &e[1]);
  assert_same_bytes(&e[1], &e[0]);
  close_ends(e);
  sj_tls_ctx_free(sctx);
  sj_tls_ctx_free(cctx);
  certs_remove(&certs);
}

/* One way only, over TCP, whose roomy buffers take whole queues at once:
 * with no input to wake it, the sender must still go on by itself. */
static void test_one_way_tcp(void **state) {
  (void)state;
  end_t e[2];
  sj_stream_t *a, *b;
  tcp_pair(&a, &b);
  end_init(&e[0], 55);
  end_init(&e[1], 66);
  ws_pair(e, a, b, "/", "/");
  run_until(handshaken, e);
  end_send(&e[0], 16 * MiB, 1);
  run_until(got_eof, &e[1]);
  assert_int_equal(e[1].read_err, 0);
  assert_same_bytes(&e[0], &e[1]);
  close_ends(e);
}

/* The client ends its direction; the server, having read the end, still
 * sends a reply after it, and it all arrives: half-close, as over TCP. */
static void test_half_close(void **state) {
  (void)state;
  end_t e[2];
  sj_stream_t *a, *b;
  socket_pair(&a, &b);
  end_init(&e[0], 11);
  end_init(&e[1], 22);
  ws_pair(e, a, b, "/", "/");
  end_send(&e[0], 3 * MiB, 1);
  run_until(got_eof, &e[1]);
  assert_true(e[0].shut_done);
  assert_int_equal(e[0].shut_status, 0);
  assert_false(e[0].eof);
  end_send(&e[1], 5 * MiB + 3, 1);
  run_until(both_done, e);
  assert_int_equal(e[0].read_err, 0);
  assert_int_equal(e[1].read_err, 0);
  assert_same_bytes(&e[0], &e[1]);
  assert_same_bytes(&e[1], &e[0]);
  close_ends(e);
}

/* A server that does not read holds the client back: the client's writes
 * stop completing, and neither end holds more than its bounds. Once the
 * server reads, everything arrives. */
static void test_backpressure(void **state) {
  (void)state;
  end_t e[2];
  sj_stream_t *a, *b;
  socket_pair(&a, &b);
  end_init(&e[0], 33);
  end_init(&e[1], 44);
  ws_pair(e, a, b, "/ws", "/ws");
  sj_stream_read_stop(e[1].s);
  run_until(handshaken, e);
  end_send(&e[0], 64 * MiB, 1);
  settle();
  assert_true(e[0].writing); /* a write waits: held back */
  assert_true(e[0].sent < 4 * MiB);
  assert_int_equal(e[1].received, 0);
  assert_true(sj_filter_buffered(e[0].s) <= SJ_FILTER_OUT_HWM + SJ_WS_MESSAGE_MAX + 64);
  assert_true(sj_filter_buffered(e[1].s) <= 2 * SJ_CHUNK_SIZE);
  uint64_t sent = e[0].sent;
  settle();
  assert_int_equal(e[0].sent, sent); /* and stays held */
  assert_int_equal(sj_stream_read_start(e[1].s), 0);
  run_until(got_eof, &e[1]);
  assert_same_bytes(&e[0], &e[1]);
  assert_true(e[1].max_buffered <= 2 * SJ_CHUNK_SIZE);
  close_ends(e);
}

/* ---- handshakes ----------------------------------------------------------- */

static void test_handshake_reports(void **state) {
  (void)state;
  end_t e[2];
  sj_stream_t *a, *b;
  tcp_pair(&a, &b);
  end_init(&e[0], 1);
  end_init(&e[1], 2);
  ws_pair(e, a, b, "/x?y=1", "/x");
  run_until(handshaken, e);
  assert_int_equal(e[0].hs_status, 0);
  assert_int_equal(e[1].hs_status, 0);
  assert_string_equal(e[0].hs_text, "");
  close_ends(e);
}

static void test_wrong_path(void **state) {
  (void)state;
  end_t e[2];
  sj_stream_t *a, *b;
  socket_pair(&a, &b);
  end_init(&e[0], 1);
  end_init(&e[1], 2);
  ws_pair(e, a, b, "/nope", "/ws");
  end_send(&e[0], 1000, 1); /* waits for the handshake, then fails */
  run_until(handshaken, e);
  assert_int_equal(e[0].hs_status, UV_EPROTO);
  assert_string_equal(e[0].hs_text, "ws: server refused the upgrade: HTTP 404 Not Found");
  assert_int_equal(e[1].hs_status, UV_EPROTO);
  assert_string_equal(e[1].hs_text, "ws: refused an upgrade request: no WebSocket at this path "
                                    "(answered HTTP 404)");
  run_until(failed, &e[0]);
  assert_int_equal(e[0].read_err, UV_EPROTO);
  assert_int_equal(e[0].write_status, UV_EPROTO);
  close_ends(e);
}

/* ---- raw peers ------------------------------------------------------------ */

/* A raw end: collects what it reads, writes what it is given. */
typedef struct {
  sj_stream_t *s;
  char buf[16384];
  size_t len;
  int eof, closed;
} raw_t;

static void raw_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  raw_t *r = s->data;
  progress++;
  if (c != NULL) {
    size_t n = sj_chunk_remaining(c);
    if (n > sizeof r->buf - r->len)
      n = sizeof r->buf - r->len;
    memcpy(r->buf + r->len, c->data + c->off, n);
    r->len += n;
    sj_pool_put(s->pool, c);
  } else if (status < 0) {
    r->eof = 1;
  }
}

static void raw_attach(raw_t *r, sj_stream_t *s) {
  memset(r, 0, sizeof *r);
  r->s = s;
  s->data = r;
  s->on_read = raw_read;
  assert_int_equal(sj_stream_read_start(s), 0);
}

static void raw_write(raw_t *r, const void *buf, size_t len) {
  assert_int_equal(sj_stream_try_write(r->s, buf, len), (int)len);
}

static void raw_closed(sj_stream_t *s) { ((raw_t *)s->data)->closed = 1; }

static int raw_head_in(void *arg) {
  raw_t *r = arg;
  return memmem(r->buf, r->len, "\r\n\r\n", 4) != NULL;
}

static int raw_eof(void *arg) { return ((raw_t *)arg)->eof; }
static int raw_is_closed(void *arg) { return ((raw_t *)arg)->closed; }

static void raw_close(raw_t *r) {
  sj_stream_close(r->s, 0, raw_closed);
  run_until(raw_is_closed, r);
}

/* A client whose server is a raw end: the raw end has the request. */
static void client_vs_raw(end_t *e, raw_t *r) {
  sj_stream_t *a, *b, *c;
  socket_pair(&a, &b);
  end_init(e, 5);
  assert_int_equal(sj_ws_stream_new(a, SJ_WS_CLIENT, "h", "/ws", layer_cb, e, &c), 0);
  end_attach(e, c, 1);
  raw_attach(r, b);
  run_until(raw_head_in, r);
}

/* The raw end accepts the client's request as a server would. */
static void raw_accept(raw_t *r) {
  sj_wsh_request_t req;
  long h = sj_wsh_parse_request(r->buf, r->len, "/ws", &req);
  assert_true(h > 0);
  char resp[256];
  long n = sj_wsh_response(resp, sizeof resp, req.key);
  raw_write(r, resp, (size_t)n);
  r->len = 0;
}

static int hs_called(void *arg) { return ((end_t *)arg)->hs_calls > 0; }

static int one_closed(void *arg) { return ((end_t *)arg)->closed; }

static void finish_raw(end_t *e, raw_t *r) {
  end_close(e);
  run_until(one_closed, e);
  raw_close(r);
  end_free(e);
}

static void test_request_is_well_formed(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  assert_non_null(memmem(r.buf, r.len, "GET /ws HTTP/1.1\r\nHost: h\r\n", 27));
  raw_accept(&r);
  run_until(hs_called, &e);
  assert_int_equal(e.hs_status, 0);
  end_close(&e);
  run_until(raw_eof, &r); /* closed without shutdown: no close frame */
  assert_int_equal(r.len, 0);
  raw_close(&r);
  end_free(&e);
}

static void test_server_not_http(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  raw_write(&r, "SSH-2.0-OpenSSH_9.2\r\n", 21);
  run_until(hs_called, &e);
  assert_int_equal(e.hs_status, UV_EPROTO);
  assert_string_equal(e.hs_text, "ws: bad upgrade response: malformed HTTP");
  end_close(&e);
  raw_close(&r);
  end_free(&e);
}

static void test_wrong_accept(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  const char *resp =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  raw_write(&r, resp, strlen(resp));
  run_until(hs_called, &e);
  assert_string_equal(e.hs_text, "ws: bad upgrade response: missing or wrong Sec-WebSocket-Accept");
  end_close(&e);
  raw_close(&r);
  end_free(&e);
}

static void test_handshake_cut(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  raw_write(&r, "HTTP/1.1 101 Switching", 22);
  sj_stream_close(r.s, 0, raw_closed);
  run_until(hs_called, &e);
  assert_int_equal(e.hs_status, UV_EPROTO);
  assert_string_equal(e.hs_text, "ws: peer closed the connection during the handshake");
  run_until(raw_is_closed, &r);
  end_close(&e);
  run_until(one_closed, &e);
  end_free(&e);
}

/* The server's lower stream ends with no close frame: the client's reader
 * gets an error, never a clean end, even after all the data. */
static void test_truncated(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  raw_accept(&r);
  run_until(hs_called, &e);
  raw_write(&r,
            "\x82\x03"
            "abc",
            5);
  sj_stream_close(r.s, 0, raw_closed);
  run_until(failed, &e);
  assert_int_equal(e.hs_status, 0);
  assert_int_equal(e.received, 3);
  assert_false(e.eof);
  assert_int_equal(e.read_err, UV_EPROTO);
  assert_int_equal(e.late_status, UV_EPROTO);
  assert_string_equal(e.late_text,
                      "ws: peer closed the connection without a close frame (truncated)");
  run_until(raw_is_closed, &r);
  end_close(&e);
  run_until(one_closed, &e);
  end_free(&e);
}

/* A ping is answered, masked; a text frame fails the stream, and the peer
 * is told why with close code 1003. */
static void test_ping_then_text(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  raw_accept(&r);
  raw_write(&r, "\x89\x02hi", 4);
  run_until(hs_called, &e);
  settle();
  assert_int_equal(r.len, 2 + 4 + 2);
  assert_int_equal((unsigned char)r.buf[0], 0x8a);
  assert_int_equal((unsigned char)r.buf[1], 0x82);
  assert_int_equal(r.buf[6] ^ r.buf[2], 'h');
  assert_int_equal(r.buf[7] ^ r.buf[3], 'i');
  r.len = 0;
  raw_write(&r, "\x81\x02hi", 4);
  run_until(failed, &e);
  assert_int_equal(e.read_err, UV_EPROTO);
  assert_string_equal(e.late_text, "ws: text frame (the stream is carried in binary frames only)");
  settle();
  assert_true(r.len >= 2 + 4 + 2);
  assert_int_equal((unsigned char)r.buf[0], 0x88);
  unsigned code = (unsigned char)(r.buf[6] ^ r.buf[2]) << 8 | (unsigned char)(r.buf[7] ^ r.buf[3]);
  assert_int_equal(code, 1003);
  finish_raw(&e, &r);
}

/* A close frame with an error code is a reset, with the peer's reason. */
static void test_peer_close_with_error(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  client_vs_raw(&e, &r);
  raw_accept(&r);
  run_until(hs_called, &e);
  raw_write(&r, "\x88\x0c\x03\xf3shut down!", 14);
  run_until(failed, &e);
  assert_int_equal(e.read_err, UV_ECONNRESET);
  assert_string_equal(e.late_text, "ws: peer closed the session with code 1011: shut down!");
  finish_raw(&e, &r);
}

/* A plain HTTP client at the server: a 426 that says what is wanted. */
static void test_plain_http_client(void **state) {
  (void)state;
  end_t e;
  raw_t r;
  sj_stream_t *a, *b, *s;
  socket_pair(&a, &b);
  end_init(&e, 9);
  assert_int_equal(sj_ws_stream_new(b, SJ_WS_SERVER, NULL, "/ws", layer_cb, &e, &s), 0);
  end_attach(&e, s, 1);
  raw_attach(&r, a);
  const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_write(&r, req, strlen(req));
  run_until(hs_called, &e);
  assert_int_equal(e.hs_status, UV_EPROTO);
  assert_string_equal(e.hs_text, "ws: refused an upgrade request: no \"Upgrade: websocket\" "
                                 "header (answered HTTP 426)");
  run_until(raw_head_in, &r);
  assert_memory_equal(r.buf, "HTTP/1.1 426 Upgrade Required\r\n", 31);
  assert_non_null(memmem(r.buf, r.len, "Upgrade: websocket\r\n", 20));
  finish_raw(&e, &r);
}

static void test_bad_arguments(void **state) {
  (void)state;
  sj_stream_t *a, *b, *out = NULL;
  socket_pair(&a, &b);
  assert_int_equal(sj_ws_stream_new(a, SJ_WS_CLIENT, NULL, "/", NULL, NULL, &out), UV_EINVAL);
  assert_int_equal(sj_ws_stream_new(a, SJ_WS_CLIENT, "h", "ws", NULL, NULL, &out), UV_EINVAL);
  assert_int_equal(sj_ws_stream_new(a, SJ_WS_CLIENT, "a b", "/", NULL, NULL, &out), UV_EINVAL);
  assert_int_equal(sj_ws_stream_new(a, SJ_WS_SERVER, NULL, NULL, NULL, NULL, &out), UV_EINVAL);
  assert_int_equal(sj_ws_stream_new(a, (sj_ws_role_t)7, "h", "/", NULL, NULL, &out), UV_EINVAL);
  assert_null(out);
  assert_true(sj_ws_path_ok("/tunnel"));
  assert_false(sj_ws_path_ok("tunnel"));
  assert_false(sj_ws_path_ok(NULL));
  /* lower was left untouched: still the caller's to close */
  sj_stream_close(a, 0, NULL);
  sj_stream_close(b, 0, NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_16mib_each_way_socketpair),
      T(test_16mib_each_way_tcp),
      T(test_one_way_tcp),
      T(test_half_close),
      T(test_over_tls),
      T(test_backpressure),
      T(test_handshake_reports),
      T(test_wrong_path),
      T(test_request_is_well_formed),
      T(test_server_not_http),
      T(test_wrong_accept),
      T(test_handshake_cut),
      T(test_truncated),
      T(test_ping_then_text),
      T(test_peer_close_with_error),
      T(test_plain_http_client),
      T(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
