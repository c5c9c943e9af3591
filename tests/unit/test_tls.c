/* The TLS stream layer, driven over socketpairs and loopback TCP with
 * certificates made at test time: handshakes, 16 MiB each way checked byte
 * by byte, half-close, backpressure with bounded memory, and every way a
 * handshake or session should fail, each with its log line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "layer_harness.h"
#include "test_certs.h"
#include "tls.h"

#define MiB (1024 * 1024)
#define DEADLINE_MS 60000

static certs_t certs;
static uv_loop_t loop;
static sj_pool_t pool;

/* A client end a and a server end b over raw streams ra and rb. */
typedef struct {
  peer_t a, b;
  sj_stream_t *ra, *rb;
  int fds[2];
  sj_tls_ctx_t *cctx, *sctx;
} conn_t;

static int group_setup(void **state) {
  (void)state;
  return certs_make(&certs);
}

static int group_teardown(void **state) {
  (void)state;
  certs_remove(&certs);
  return 0;
}

static int setup(void **state) {
  (void)state;
  sj_pool_init(&pool, SJ_CHUNK_SIZE, 64);
  return uv_loop_init(&loop);
}

static int teardown(void **state) {
  (void)state;
  int rc = loop_finish(&loop);
  sj_pool_drain(&pool);
  return rc;
}

/* ---- contexts ------------------------------------------------------------- */

static sj_tls_ctx_t *ctx_or_fail(const sj_tls_config_t *cfg) {
  sj_tls_ctx_t *ctx = NULL;
  char err[512] = "";
  int rc = sj_tls_ctx_new(cfg, &ctx, err, sizeof err);
  if (rc != 0)
    fail_msg("context: %s", err);
  return ctx;
}

static sj_tls_ctx_t *server_ctx(const char *ca) {
  sj_tls_config_t cfg = {.server = 1, .cert = certs.server_cert, .key = certs.server_key, .ca = ca};
  return ctx_or_fail(&cfg);
}

static sj_tls_ctx_t *client_ctx(const char *ca) {
  sj_tls_config_t cfg = {.ca = ca};
  return ctx_or_fail(&cfg);
}

/* ---- connections ---------------------------------------------------------- */

static void raw_pair(conn_t *c, int tcp) {
  memset(c, 0, sizeof *c);
  int rc = tcp ? tcp_pair(&loop, &pool, &c->ra, &c->rb, c->fds)
               : socket_pair(&loop, &pool, &c->ra, &c->rb, c->fds);
  assert_int_equal(rc, 0);
  peer_init(&c->a, &loop, 2);
  peer_init(&c->b, &loop, 1);
}

static void wrap_client(conn_t *c, sj_tls_ctx_t *ctx, const char *host, int read) {
  sj_stream_t *s;
  c->cctx = ctx;
  assert_int_equal(sj_tls_stream_new(c->ra, ctx, host, peer_layer_cb, &c->a, &s), 0);
  peer_attach(&c->a, s, read);
}

static void wrap_server(conn_t *c, sj_tls_ctx_t *ctx, int read) {
  sj_stream_t *s;
  c->sctx = ctx;
  assert_int_equal(sj_tls_stream_new(c->rb, ctx, NULL, peer_layer_cb, &c->b, &s), 0);
  peer_attach(&c->b, s, read);
}

static void open_tls(conn_t *c, sj_tls_ctx_t *cctx, const char *host, sj_tls_ctx_t *sctx, int tcp) {
  raw_pair(c, tcp);
  wrap_client(c, cctx, host, 1);
  wrap_server(c, sctx, 1);
}

static int both_reported(void *arg) {
  conn_t *c = arg;
  return c->a.hs_calls > 0 && c->b.hs_calls > 0;
}

static int both_done(void *arg) {
  conn_t *c = arg;
  return c->a.eof && c->b.eof && c->a.shut_done && c->b.shut_done;
}

static int both_closed(void *arg) {
  conn_t *c = arg;
  return c->a.closed == 2 && c->b.closed == 2;
}

static void close_conn(conn_t *c) {
  peer_close(&c->a, 0);
  peer_close(&c->b, 0);
  assert_int_equal(run_until(&loop, both_closed, c, DEADLINE_MS), 0);
  peer_free(&c->a);
  peer_free(&c->b);
  sj_tls_ctx_free(c->cctx);
  sj_tls_ctx_free(c->sctx);
}

static void handshake_ok(conn_t *c) {
  assert_int_equal(run_until(&loop, both_reported, c, DEADLINE_MS), 0);
  if (c->a.hs_status != 0 || c->b.hs_status != 0)
    fail_msg("handshake: client %d '%s', server %d '%s'", c->a.hs_status, c->a.hs_text,
             c->b.hs_status, c->b.hs_text);
}

/* Both ends send n bytes and shut down; each gets exactly the other's. */
static void exchange(conn_t *c, uint64_t n) {
  peer_send(&c->a, n, 1, 1);
  peer_send(&c->b, n, 2, 1);
  assert_int_equal(run_until(&loop, both_done, c, DEADLINE_MS), 0);
  assert_int_equal(c->a.received, n);
  assert_int_equal(c->b.received, n);
  assert_false(c->a.mismatch || c->b.mismatch);
  assert_int_equal(c->a.shut_status, 0);
  assert_int_equal(c->b.shut_status, 0);
  assert_int_equal(peer_error(&c->a), 0);
  assert_int_equal(peer_error(&c->b), 0);
}

/* ---- data ----------------------------------------------------------------- */

static void test_16mib_each_way_socketpair(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_ctx(certs.ca), "localhost", server_ctx(NULL), 0);
  handshake_ok(&c);
  exchange(&c, 16 * MiB);
  close_conn(&c);
}

static void test_16mib_each_way_tcp(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_ctx(certs.ca), "127.0.0.1", server_ctx(NULL), 1);
  handshake_ok(&c);
  exchange(&c, 16 * MiB);
  close_conn(&c);
}

static int b_eof(void *arg) { return ((conn_t *)arg)->b.eof; }
static int a_eof(void *arg) { return ((conn_t *)arg)->a.eof; }

/* After its close_notify the client still reads everything the server
 * sends, until the server's own close_notify. */
static void test_half_close(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_ctx(certs.ca), "localhost", server_ctx(NULL), 0);
  handshake_ok(&c);
  peer_send(&c.a, MiB, 1, 1);
  assert_int_equal(run_until(&loop, b_eof, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.received, MiB);
  assert_false(c.a.eof);
  peer_send(&c.b, 3 * MiB, 2, 1);
  assert_int_equal(run_until(&loop, a_eof, &c, DEADLINE_MS), 0);
  assert_int_equal(c.a.received, 3 * MiB);
  assert_false(c.a.mismatch || c.b.mismatch);
  assert_int_equal(peer_error(&c.a), 0);
  assert_int_equal(peer_error(&c.b), 0);
  close_conn(&c);
}

static int b_got_all(void *arg) {
  conn_t *c = arg;
  return c->b.received == c->a.to_send;
}

/* A reader that stops holds the writer back: the writer's writes stop
 * completing, and neither layer holds more than its bounds. */
static void test_backpressure(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap_client(&c, client_ctx(certs.ca), "localhost", 1);
  wrap_server(&c, server_ctx(NULL), 0);
  handshake_ok(&c);
  peer_send(&c.a, 64 * MiB, 1, 0);
  settle(&loop);
  assert_true(c.a.sent < 4 * MiB);
  assert_true(c.a.writing);
  assert_true(sj_filter_buffered(c.a.s) <= SJ_FILTER_OUT_HWM + 64 * 1024);
  assert_true(sj_filter_buffered(c.b.s) <= 2 * SJ_CHUNK_SIZE);
  peer_set_reading(&c.b, 1);
  assert_int_equal(run_until(&loop, b_got_all, &c, DEADLINE_MS), 0);
  assert_false(c.b.mismatch);
  close_conn(&c);
}

/* ---- verification --------------------------------------------------------- */

static void expect_client_refusal(const char *ca, const char *host, const char *text) {
  conn_t c;
  open_tls(&c, client_ctx(ca), host, server_ctx(NULL), 0);
  assert_int_equal(run_until(&loop, both_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.a.hs_status, SJ_EAUTH);
  assert_string_equal(c.a.hs_text, text);
  /* The server hears why from the client's alert. */
  assert_true(c.b.hs_status < 0);
  assert_non_null(strstr(c.b.hs_text, "tls: peer sent alert: "));
  assert_int_equal(c.a.read_err, SJ_EAUTH);
  close_conn(&c);
}

static void test_wrong_ca(void **state) {
  (void)state;
  expect_client_refusal(certs.other_ca, "localhost",
                        "tls: certificate verify failed: unable to get local issuer certificate");
}

/* Without ca= the system store is used, which does not know our CA. */
static void test_system_store_refuses_private_ca(void **state) {
  (void)state;
  expect_client_refusal(NULL, "localhost",
                        "tls: certificate verify failed: unable to get local issuer certificate");
}

static void test_wrong_host_name(void **state) {
  (void)state;
  expect_client_refusal(certs.ca, "example.com",
                        "tls: certificate verify failed: hostname mismatch");
}

static void test_wrong_ip_address(void **state) {
  (void)state;
  expect_client_refusal(certs.ca, "127.0.0.2",
                        "tls: certificate verify failed: IP address mismatch");
}

/* sni= names the server instead of the dialled address. */
static void test_sni_overrides_host(void **state) {
  (void)state;
  sj_tls_config_t cfg = {.ca = certs.ca, .sni = "localhost"};
  conn_t c;
  open_tls(&c, ctx_or_fail(&cfg), "127.0.0.2", server_ctx(NULL), 0);
  handshake_ok(&c);
  exchange(&c, 100000);
  close_conn(&c);
}

static void test_no_verify_accepts_anything(void **state) {
  (void)state;
  sj_tls_config_t cfg = {.ca = certs.other_ca, .no_verify = 1};
  conn_t c;
  open_tls(&c, ctx_or_fail(&cfg), "example.com", server_ctx(NULL), 0);
  handshake_ok(&c);
  exchange(&c, 100000);
  close_conn(&c);
}

/* ---- mutual TLS ----------------------------------------------------------- */

static sj_tls_ctx_t *client_with_cert(const char *cert, const char *key) {
  sj_tls_config_t cfg = {.ca = certs.ca, .cert = cert, .key = key};
  return ctx_or_fail(&cfg);
}

static void test_mutual_tls(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_with_cert(certs.client_cert, certs.client_key), "localhost",
           server_ctx(certs.ca), 0);
  handshake_ok(&c);
  exchange(&c, MiB);
  close_conn(&c);
}

static int a_failed(void *arg) { return peer_error(&((conn_t *)arg)->a) != 0; }

static void test_mutual_tls_without_client_cert(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_ctx(certs.ca), "localhost", server_ctx(certs.ca), 0);
  assert_int_equal(run_until(&loop, both_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.hs_status, SJ_EAUTH);
  assert_string_equal(c.b.hs_text, "tls: peer sent no client certificate");
  /* In TLS 1.3 the client may finish first and hear the alert later. */
  assert_int_equal(run_until(&loop, a_failed, &c, DEADLINE_MS), 0);
  assert_int_equal(peer_error(&c.a), SJ_EAUTH);
  assert_string_equal(peer_error_text(&c.a),
                      "tls: peer sent alert: tlsv13 alert certificate required");
  close_conn(&c);
}

static void test_mutual_tls_untrusted_client_cert(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_with_cert(certs.other_client_cert, certs.other_client_key), "localhost",
           server_ctx(certs.ca), 0);
  assert_int_equal(run_until(&loop, both_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.hs_status, SJ_EAUTH);
  assert_string_equal(c.b.hs_text,
                      "tls: certificate verify failed: unable to get local issuer certificate");
  assert_int_equal(run_until(&loop, a_failed, &c, DEADLINE_MS), 0);
  assert_int_equal(peer_error(&c.a), SJ_EAUTH);
  assert_non_null(strstr(peer_error_text(&c.a), "tls: peer sent alert: "));
  close_conn(&c);
}

/* ---- peers that are not TLS, or stop short ------------------------------- */

static int b_reported(void *arg) { return ((conn_t *)arg)->b.hs_calls > 0; }
static int a_reported(void *arg) { return ((conn_t *)arg)->a.hs_calls > 0; }

static int raw_closed;
static void on_raw_closed(sj_stream_t *s) {
  (void)s;
  raw_closed++;
}

static void close_raw(sj_stream_t *s) {
  int before = raw_closed;
  sj_stream_close(s, 0, on_raw_closed);
  while (raw_closed == before)
    uv_run(&loop, UV_RUN_ONCE);
}

static void test_plaintext_client_on_server(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap_server(&c, server_ctx(NULL), 1);
  raw_write(c.ra, "GET / HTTP/1.0\r\n\r\n", 18);
  assert_int_equal(run_until(&loop, b_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.hs_status, UV_EPROTO);
  assert_string_equal(c.b.hs_text, "tls: peer did not speak TLS (plaintext?)");
  assert_int_equal(c.b.read_err, UV_EPROTO);
  close_raw(c.ra);
  c.a.closed = 2;
  close_conn(&c);
}

static void test_plaintext_server_for_client(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap_client(&c, client_ctx(certs.ca), "localhost", 1);
  raw_write(c.rb, "SSH-2.0-OpenSSH_9.2\r\n", 21);
  assert_int_equal(run_until(&loop, a_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.a.hs_status, UV_EPROTO);
  assert_string_equal(c.a.hs_text, "tls: peer did not speak TLS (plaintext?)");
  close_raw(c.rb);
  c.b.closed = 2;
  close_conn(&c);
}

static void test_peer_leaves_during_handshake(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap_server(&c, server_ctx(NULL), 0);
  shutdown(c.fds[0], SHUT_WR);
  assert_int_equal(run_until(&loop, b_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.hs_status, UV_EPROTO);
  assert_string_equal(c.b.hs_text, "tls: peer closed the connection during the handshake");
  close_raw(c.ra);
  c.a.closed = 2;
  close_conn(&c);
}

static int b_got_some(void *arg) { return ((conn_t *)arg)->b.received >= 1000; }
static int b_read_failed(void *arg) { return ((conn_t *)arg)->b.read_err != 0; }

/* The client's socket is shut behind its back: the server reads end of
 * input with no close_notify, which is a truncation, not an end. */
static void test_truncation_is_an_error(void **state) {
  (void)state;
  conn_t c;
  open_tls(&c, client_ctx(certs.ca), "localhost", server_ctx(NULL), 0);
  handshake_ok(&c);
  peer_send(&c.a, 1000, 1, 0);
  assert_int_equal(run_until(&loop, b_got_some, &c, DEADLINE_MS), 0);
  shutdown(c.fds[0], SHUT_WR);
  assert_int_equal(run_until(&loop, b_read_failed, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.read_err, UV_EPROTO);
  assert_false(c.b.eof);
  assert_int_equal(c.b.late_calls, 1);
  assert_string_equal(c.b.late_text, "tls: peer closed without close_notify (truncated)");
  close_conn(&c);
}

/* A byte flipped on the wire fails the record's authentication: the
 * reader gets an error, never the altered bytes. */
static void test_flipped_byte(void **state) {
  (void)state;
  conn_t c;
  sj_stream_t *mx, *my;
  int mfds[2];
  mitm_t m = {.flip_at = {30000, UINT64_MAX}};
  raw_pair(&c, 0);
  assert_int_equal(socket_pair(&loop, &pool, &mx, &my, mfds), 0);
  /* client a -- ra|rb -- middleman -- mx|my -- server */
  mitm_start(&m, c.rb, mx);
  c.rb = my;
  wrap_client(&c, client_ctx(certs.ca), "localhost", 1);
  wrap_server(&c, server_ctx(NULL), 1);
  handshake_ok(&c);
  peer_send(&c.a, MiB, 1, 1);
  assert_int_equal(run_until(&loop, b_read_failed, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.read_err, UV_EPROTO);
  assert_true(c.b.received < 30000);
  assert_false(c.b.mismatch);
  assert_string_equal(c.b.late_text, "tls: decryption failed or bad record mac");
  mitm_close(&m);
  close_conn(&c);
  settle(&loop); /* the middleman's streams close */
}

/* Closing mid-handshake (an owner's deadline) is clean and silent. */
static void test_close_mid_handshake(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap_client(&c, client_ctx(certs.ca), "localhost", 1);
  raw_sink(c.rb);
  settle(&loop);
  assert_int_equal(c.a.hs_calls, 0);
  /* The owner gives up first: no callback, even as the peer then leaves. */
  c.b.closed = 2;
  close_conn(&c);
  close_raw(c.rb);
  assert_int_equal(c.a.hs_calls, 0);
}

/* ---- configuration errors ------------------------------------------------- */

static void expect_ctx_error(const sj_tls_config_t *cfg, const char *text) {
  sj_tls_ctx_t *ctx = NULL;
  char err[512] = "";
  assert_true(sj_tls_ctx_new(cfg, &ctx, err, sizeof err) < 0);
  assert_null(ctx);
  if (strncmp(err, text, strlen(text)) != 0)
    fail_msg("got '%s', expected it to start with '%s'", err, text);
}

static void test_config_errors(void **state) {
  (void)state;
  char text[512];
  sj_tls_config_t nocert = {.server = 1};
  expect_ctx_error(&nocert, "tls: a listening side needs cert= and key=");
  sj_tls_config_t missing = {.server = 1, .cert = "/nonexistent/c.pem", .key = certs.server_key};
  expect_ctx_error(&missing,
                   "tls: cannot read cert file /nonexistent/c.pem: No such file or directory");
  sj_tls_config_t mismatch = {.server = 1, .cert = certs.server_cert, .key = certs.client_key};
  snprintf(text, sizeof text, "tls: key %s does not match certificate %s", certs.client_key,
           certs.server_cert);
  expect_ctx_error(&mismatch, text);
  sj_tls_config_t badcert = {.server = 1, .cert = certs.garbage, .key = certs.server_key};
  snprintf(text, sizeof text, "tls: bad certificate file %s: ", certs.garbage);
  expect_ctx_error(&badcert, text);
  sj_tls_config_t badkey = {.server = 1, .cert = certs.server_cert, .key = certs.garbage};
  snprintf(text, sizeof text, "tls: bad key file %s: ", certs.garbage);
  expect_ctx_error(&badkey, text);
  sj_tls_config_t badca = {.ca = certs.garbage};
  snprintf(text, sizeof text, "tls: bad CA file %s: ", certs.garbage);
  expect_ctx_error(&badca, text);
  sj_tls_config_t halfid = {.cert = certs.client_cert};
  expect_ctx_error(&halfid, "tls: a client certificate needs both cert= and key=");
}

/* A verifying client must have a name to check. */
static void test_client_needs_a_name(void **state) {
  (void)state;
  conn_t c;
  sj_stream_t *s = NULL;
  raw_pair(&c, 0);
  sj_tls_ctx_t *ctx = client_ctx(certs.ca);
  assert_int_equal(sj_tls_stream_new(c.ra, ctx, NULL, peer_layer_cb, &c.a, &s), UV_EINVAL);
  assert_null(s);
  sj_tls_ctx_free(ctx);
  close_raw(c.ra);
  close_raw(c.rb);
  peer_free(&c.a);
  peer_free(&c.b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_16mib_each_way_socketpair),
      T(test_16mib_each_way_tcp),
      T(test_half_close),
      T(test_backpressure),
      T(test_wrong_ca),
      T(test_system_store_refuses_private_ca),
      T(test_wrong_host_name),
      T(test_wrong_ip_address),
      T(test_sni_overrides_host),
      T(test_no_verify_accepts_anything),
      T(test_mutual_tls),
      T(test_mutual_tls_without_client_cert),
      T(test_mutual_tls_untrusted_client_cert),
      T(test_plaintext_client_on_server),
      T(test_plaintext_server_for_client),
      T(test_peer_leaves_during_handshake),
      T(test_truncation_is_an_error),
      T(test_flipped_byte),
      T(test_close_mid_handshake),
      T(test_config_errors),
      T(test_client_needs_a_name),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
