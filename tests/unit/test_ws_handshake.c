/* The WebSocket opening handshake codec: RFC 6455's sample key, requests and
 * responses built and parsed back, every input split at every byte, heads
 * over the limit, and each missing or wrong header refused by name with
 * the HTTP status a server answers it with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

/* RFC 6455 section 1.3 and 4.2.2. */
#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SAMPLE_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define REQ_HEAD(extra)                                                                            \
  "GET /ws HTTP/1.1\r\n"                                                                           \
  "Host: example.com\r\n"                                                                          \
  "Upgrade: websocket\r\n"                                                                         \
  "Connection: Upgrade\r\n"                                                                        \
  "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n" extra "\r\n"

static long parse_req(const char *s, sj_wsh_request_t *req) {
  return sj_wsh_parse_request(s, strlen(s), "/ws", req);
}

static long req_error(const char *s) {
  sj_wsh_request_t req;
  return parse_req(s, &req);
}

static long parse_res(const char *s, sj_wsh_response_t *res) {
  return sj_wsh_parse_response(s, strlen(s), SAMPLE_KEY, res);
}

/* ---- keys ----------------------------------------------------------------- */

static void test_rfc_sample_accept(void **state) {
  (void)state;
  char out[SJ_WSH_ACCEPT_LEN + 1];
  assert_int_equal(sj_wsh_accept(SAMPLE_KEY, strlen(SAMPLE_KEY), out), 0);
  assert_string_equal(out, SAMPLE_ACCEPT);
}

static void test_make_key(void **state) {
  (void)state;
  char key[SJ_WSH_KEY_LEN + 1];
  sj_wsh_make_key((const unsigned char *)"the sample nonce", key);
  assert_string_equal(key, SAMPLE_KEY);
}

/* ---- requests ------------------------------------------------------------- */

static void test_request_roundtrip(void **state) {
  (void)state;
  char buf[1024];
  long n = sj_wsh_request(buf, sizeof buf, "example.com:8080", "/tunnel/x", SAMPLE_KEY);
  assert_true(n > 0);
  assert_int_equal((size_t)n, strlen(buf));
  assert_non_null(strstr(buf, "Host: example.com:8080\r\n"));
  assert_non_null(strstr(buf, "Sec-WebSocket-Version: 13\r\n"));
  sj_wsh_request_t req;
  assert_int_equal(sj_wsh_parse_request(buf, (size_t)n, "/tunnel/x", &req), n);
  assert_string_equal(req.key, SAMPLE_KEY);
  assert_int_equal(req.target_len, strlen("/tunnel/x"));
  assert_memory_equal(req.target, "/tunnel/x", req.target_len);
}

/* The sample handshake of RFC 6455 section 1.2, with its extra headers. */
static void test_rfc_sample_request(void **state) {
  (void)state;
  const char *s = "GET /chat HTTP/1.1\r\n"
                  "Host: server.example.com\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Origin: http://example.com\r\n"
                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "\r\n";
  sj_wsh_request_t req;
  assert_int_equal(sj_wsh_parse_request(s, strlen(s), "/chat", &req), (long)strlen(s));
  assert_string_equal(req.key, SAMPLE_KEY);
}

/* As nginx passes it on: other Connection tokens, odd case, query. */
static void test_request_lenient_forms(void **state) {
  (void)state;
  const char *s = "GET /ws?agent=1 HTTP/1.1\n"
                  "host: 127.0.0.1:8080\n"
                  "X-Real-IP: 127.0.0.1\n"
                  "upgrade: WebSocket\n"
                  "connection: keep-alive,  UPGRADE \n"
                  "sec-websocket-version:13\n"
                  "SEC-WEBSOCKET-KEY:   " SAMPLE_KEY "\t\n"
                  "\n";
  sj_wsh_request_t req;
  assert_int_equal(parse_req(s, &req), (long)strlen(s));
  assert_string_equal(req.key, SAMPLE_KEY);
  assert_int_equal(req.target_len, strlen("/ws?agent=1"));
}

static void test_request_split_at_every_byte(void **state) {
  (void)state;
  char buf[1200];
  long n = sj_wsh_request(buf, sizeof buf, "h", "/ws", SAMPLE_KEY);
  assert_true(n > 0);
  /* Frames may follow the head at once: they are not the head's. */
  memcpy(buf + n, "\x82\x80\x01\x02\x03\x04", 6);
  sj_wsh_request_t req;
  for (long i = 0; i < n; i++)
    assert_int_equal(sj_wsh_parse_request(buf, (size_t)i, "/ws", &req), 0);
  for (long i = n; i <= n + 6; i++)
    assert_int_equal(sj_wsh_parse_request(buf, (size_t)i, "/ws", &req), n);
}

static void test_request_errors(void **state) {
  (void)state;
  assert_int_equal(req_error(REQ_HEAD("Sec-WebSocket-Version: 13\r\n")),
                   strlen(REQ_HEAD("Sec-WebSocket-Version: 13\r\n")));
  assert_int_equal(req_error("POST /ws HTTP/1.1\r\nHost: h\r\n\r\n"), SJ_WSH_EMETHOD);
  assert_int_equal(req_error("GET /ws HTTP/1.0\r\nHost: h\r\n\r\n"), SJ_WSH_EHTTP10);
  assert_int_equal(req_error("GET /other HTTP/1.1\r\nHost: h\r\n\r\n"), SJ_WSH_EPATH);
  assert_int_equal(req_error("GET /wsx HTTP/1.1\r\nHost: h\r\n\r\n"), SJ_WSH_EPATH);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\n\r\n"), SJ_WSH_EUPGRADE);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n"
                             "Connection: Upgrade\r\n\r\n"),
                   SJ_WSH_EUPGRADE);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                             "Connection: close\r\n\r\n"),
                   SJ_WSH_ECONNECTION);
  /* The version: missing, another one, or repeated with another one. */
  assert_int_equal(req_error(REQ_HEAD("")), SJ_WSH_EVERSION);
  assert_int_equal(req_error(REQ_HEAD("Sec-WebSocket-Version: 8\r\n")), SJ_WSH_EVERSION);
  assert_int_equal(req_error(REQ_HEAD("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n")),
                   SJ_WSH_EVERSION);
  /* The key: repeated, missing, short, not base64. */
  assert_int_equal(req_error(REQ_HEAD("Sec-WebSocket-Version: 13\r\n"
                                      "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n")),
                   SJ_WSH_EKEY);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"),
                   SJ_WSH_EKEY);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n"),
                   SJ_WSH_EKEY);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n\r\n"),
                   SJ_WSH_EKEY);
  /* Host: missing, repeated. */
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: " SAMPLE_KEY "\r\n\r\n"),
                   SJ_WSH_EHOST);
  assert_int_equal(req_error(REQ_HEAD("Sec-WebSocket-Version: 13\r\nHost: again\r\n")),
                   SJ_WSH_EHOST);
}

static void test_request_syntax(void **state) {
  (void)state;
  /* A TLS hello, or any binary protocol: refused at its first bytes. */
  assert_int_equal(sj_wsh_parse_request("\x16\x03\x01\x02", 4, "/ws", &(sj_wsh_request_t){0}),
                   SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: h\r\n folded: x\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nBad name: x\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET  /ws HTTP/1.1\r\nHost: h\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws\r\nHost: h\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws HTTP/2.0\r\nHost: h\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("\r\n\r\n"), SJ_WSH_ESYNTAX);
  assert_int_equal(req_error("GET /ws HTTP/1.1\r\nHost: a\rb\r\n\r\n"), SJ_WSH_ESYNTAX);
}

/* Filler headers until the head reaches total bytes (its end included). */
static size_t big_head(char *buf, size_t total) {
  size_t n = (size_t)sprintf(buf, "%s", REQ_HEAD("Sec-WebSocket-Version: 13\r\n"));
  n -= 2; /* reopen the head */
  while (n + 2 < total) {
    size_t line = total - 2 - n < 80 ? total - 2 - n : 80;
    if (line < 8) /* "X-Pad:" and its CRLF at the least */
      line = 8;
    memcpy(buf + n, "X-Pad:", 6);
    memset(buf + n + 6, 'p', line - 6 - 2);
    memcpy(buf + n + line - 2, "\r\n", 2);
    n += line;
  }
  memcpy(buf + n, "\r\n", 2);
  return n + 2;
}

static void test_request_oversize(void **state) {
  (void)state;
  static char buf[3 * SJ_WSH_HEAD_MAX];
  sj_wsh_request_t req;
  size_t n = big_head(buf, SJ_WSH_HEAD_MAX);
  assert_int_equal(n, SJ_WSH_HEAD_MAX);
  assert_int_equal(sj_wsh_parse_request(buf, n, "/ws", &req), (long)n);
  n = big_head(buf, SJ_WSH_HEAD_MAX + 100);
  assert_true(n > SJ_WSH_HEAD_MAX);
  assert_int_equal(sj_wsh_parse_request(buf, n, "/ws", &req), SJ_WSH_ETOOBIG);
  /* Known as soon as the limit is reached, not when the head ends. */
  assert_int_equal(sj_wsh_parse_request(buf, SJ_WSH_HEAD_MAX - 1, "/ws", &req), 0);
  assert_int_equal(sj_wsh_parse_request(buf, SJ_WSH_HEAD_MAX, "/ws", &req), SJ_WSH_ETOOBIG);
  memset(buf, 'G', sizeof buf);
  assert_int_equal(sj_wsh_parse_request(buf, sizeof buf, "/ws", &req), SJ_WSH_ETOOBIG);
}

static void test_request_builder_refuses(void **state) {
  (void)state;
  char buf[512];
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "h", "ws", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "h", "/a b", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "h", "/a\r\nX: y", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "h", "", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "", "/", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "a b", "/", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, sizeof buf, "h\r\nX: y", "/", SAMPLE_KEY), SJ_WSH_EARG);
  assert_int_equal(sj_wsh_request(buf, 40, "h", "/", SAMPLE_KEY), SJ_WSH_ESPACE);
  assert_true(sj_wsh_path_ok("/a/b?c=d", 100));
  assert_false(sj_wsh_path_ok("/a#frag", 100));
  assert_false(sj_wsh_path_ok("/abc", 3));
}

/* ---- responses ------------------------------------------------------------ */

static void test_response_roundtrip(void **state) {
  (void)state;
  char buf[256];
  long n = sj_wsh_response(buf, sizeof buf, SAMPLE_KEY);
  assert_true(n > 0);
  assert_non_null(strstr(buf, "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"));
  sj_wsh_response_t res;
  assert_int_equal(sj_wsh_parse_response(buf, (size_t)n, SAMPLE_KEY, &res), n);
  assert_int_equal(res.status, 101);
  assert_int_equal(sj_wsh_parse_response(buf, (size_t)n, "AAAAAAAAAAAAAAAAAAAAAA==", &res),
                   SJ_WSH_EACCEPT);
}

static void test_response_split_at_every_byte(void **state) {
  (void)state;
  char buf[256];
  long n = sj_wsh_response(buf, sizeof buf, SAMPLE_KEY);
  memcpy(buf + n, "\x82\x01x", 3);
  sj_wsh_response_t res;
  for (long i = 0; i < n; i++)
    assert_int_equal(sj_wsh_parse_response(buf, (size_t)i, SAMPLE_KEY, &res), 0);
  for (long i = n; i <= n + 3; i++)
    assert_int_equal(sj_wsh_parse_response(buf, (size_t)i, SAMPLE_KEY, &res), n);
}

static void test_response_refusals(void **state) {
  (void)state;
  sj_wsh_response_t res;
  const char *s = "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n\r\n<html>";
  assert_int_equal(parse_res(s, &res), SJ_WSH_ESTATUS);
  assert_int_equal(res.status, 502);
  assert_int_equal(res.reason_len, strlen("Bad Gateway"));
  assert_memory_equal(res.reason, "Bad Gateway", res.reason_len);
  /* Known from the status line alone, before the rest of the head. */
  size_t line = strlen("HTTP/1.1 502 Bad Gateway\r\n");
  for (size_t i = 0; i < line; i++)
    assert_int_equal(sj_wsh_parse_response(s, i, SAMPLE_KEY, &res), 0);
  assert_int_equal(sj_wsh_parse_response(s, line, SAMPLE_KEY, &res), SJ_WSH_ESTATUS);
  assert_int_equal(parse_res("HTTP/1.1 200\r\n\r\n", &res), SJ_WSH_ESTATUS);
  assert_int_equal(res.status, 200);
  assert_int_equal(res.reason_len, 0);
}

static void test_response_errors(void **state) {
  (void)state;
  sj_wsh_response_t res;
#define ACCEPT "Sec-WebSocket-Accept: " SAMPLE_ACCEPT "\r\n"
  assert_true(parse_res("HTTP/1.1 101\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" ACCEPT
                        "\r\n",
                        &res) > 0);
  assert_int_equal(parse_res("HTTP/1.1 101 OK\r\nConnection: upgrade\r\n" ACCEPT "\r\n", &res),
                   SJ_WSH_EUPGRADE);
  assert_int_equal(parse_res("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n" ACCEPT "\r\n", &res),
                   SJ_WSH_ECONNECTION);
  assert_int_equal(parse_res("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
                             "\r\n",
                             &res),
                   SJ_WSH_EACCEPT);
  assert_int_equal(
      parse_res("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" ACCEPT ACCEPT
                "\r\n",
                &res),
      SJ_WSH_EACCEPT);
  assert_int_equal(
      parse_res("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n" ACCEPT
                "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                &res),
      SJ_WSH_EEXTENSION);
  assert_int_equal(parse_res("SSH-2.0-OpenSSH_9.2p1 Debian\r\n", &res), SJ_WSH_ESYNTAX);
  assert_int_equal(parse_res("HTTP/1.1 1O1 OK\r\n\r\n", &res), SJ_WSH_ESYNTAX);
#undef ACCEPT
}

/* ---- refusals ------------------------------------------------------------- */

static void check_reject(int err, int status, const char *header) {
  char buf[1024], want[64];
  long n = sj_wsh_reject(buf, sizeof buf, err);
  assert_true(n > 0);
  snprintf(want, sizeof want, "HTTP/1.1 %d ", status);
  assert_memory_equal(buf, want, strlen(want));
  if (header != NULL)
    assert_non_null(strstr(buf, header));
  /* Its Content-Length is its body's. */
  const char *body = strstr(buf, "\r\n\r\n") + 4;
  unsigned long len = strtoul(strstr(buf, "Content-Length: ") + 16, NULL, 10);
  assert_int_equal(len, strlen(body));
  assert_non_null(strstr(body, sj_wsh_strerror(err)));
  /* And a client reads it as the refusal it is. */
  sj_wsh_response_t res;
  assert_int_equal(sj_wsh_parse_response(buf, (size_t)n, SAMPLE_KEY, &res), SJ_WSH_ESTATUS);
  assert_int_equal(res.status, status);
}

static void test_reject_responses(void **state) {
  (void)state;
  check_reject(SJ_WSH_EPATH, 404, "Connection: close\r\n");
  check_reject(SJ_WSH_EMETHOD, 405, "Allow: GET\r\n");
  check_reject(SJ_WSH_EUPGRADE, 426, "Upgrade: websocket\r\n");
  check_reject(SJ_WSH_EVERSION, 426, "Sec-WebSocket-Version: 13\r\n");
  check_reject(SJ_WSH_ETOOBIG, 431, NULL);
  check_reject(SJ_WSH_EKEY, 400, NULL);
  check_reject(SJ_WSH_ESYNTAX, 400, NULL);
  char small[32];
  assert_int_equal(sj_wsh_reject(small, sizeof small, SJ_WSH_EPATH), SJ_WSH_ESPACE);
  assert_string_equal(sj_wsh_strerror(-999), "unknown handshake error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_sample_accept),
      cmocka_unit_test(test_make_key),
      cmocka_unit_test(test_request_roundtrip),
      cmocka_unit_test(test_rfc_sample_request),
      cmocka_unit_test(test_request_lenient_forms),
      cmocka_unit_test(test_request_split_at_every_byte),
      cmocka_unit_test(test_request_errors),
      cmocka_unit_test(test_request_syntax),
      cmocka_unit_test(test_request_oversize),
      cmocka_unit_test(test_request_builder_refuses),
      cmocka_unit_test(test_response_roundtrip),
      cmocka_unit_test(test_response_split_at_every_byte),
      cmocka_unit_test(test_response_refusals),
      cmocka_unit_test(test_response_errors),
      cmocka_unit_test(test_reject_responses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
