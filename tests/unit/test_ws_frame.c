/* The WebSocket frame codec on wslay: frames out (masked from the client,
 * not from the server), frames in split at every byte and through small
 * output buffers, pings answered, fragmented messages, and every frame a
 * stream carrier must refuse, each with its close code. Frames a correct
 * peer would never send are written out by hand here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

/* A sink that collects what the codec sends, and can refuse. */
typedef struct {
  unsigned char *buf;
  size_t len, cap;
  int refuse;
} sink_t;

static int sink(void *arg, const void *p, size_t n) {
  sink_t *s = arg;
  if (s->refuse)
    return -1;
  if (s->len + n > s->cap) {
    s->cap = (s->len + n) * 2;
    s->buf = realloc(s->buf, s->cap);
    assert_non_null(s->buf);
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  return 0;
}

typedef struct {
  sj_wsf_t client, server;
  sink_t cout, sout; /* what each sent */
} pair_t;

static int setup(void **state) {
  pair_t *p = calloc(1, sizeof *p);
  assert_int_equal(sj_wsf_init(&p->client, 0, sink, &p->cout), 0);
  assert_int_equal(sj_wsf_init(&p->server, 1, sink, &p->sout), 0);
  *state = p;
  return 0;
}

static int teardown(void **state) {
  pair_t *p = *state;
  sj_wsf_free(&p->client);
  sj_wsf_free(&p->server);
  free(p->cout.buf);
  free(p->sout.buf);
  free(p);
  return 0;
}

/* A frame written out by hand: masked with key 1 2 3 4 when mask is set. */
static size_t frame(unsigned char *out, int fin, int rsv, int opcode, int mask, const void *data,
                    size_t len) {
  static const unsigned char key[4] = {1, 2, 3, 4};
  size_t n = 0;
  out[n++] = (unsigned char)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
  unsigned char m = mask ? 0x80 : 0;
  if (len < 126) {
    out[n++] = (unsigned char)(m | len);
  } else {
    out[n++] = (unsigned char)(m | 126);
    out[n++] = (unsigned char)(len >> 8);
    out[n++] = (unsigned char)len;
  }
  if (mask) {
    memcpy(out + n, key, 4);
    n += 4;
  }
  for (size_t i = 0; i < len; i++)
    out[n + i] = (unsigned char)(((const unsigned char *)data)[i] ^ (mask ? key[i % 4] : 0));
  return n + len;
}

/* Decodes all of in, fed step bytes at a time into outputs of at most cap
 * bytes; returns the last return code, the stream's bytes in out. */
static int decode_all(sj_wsf_t *c, const unsigned char *in, size_t len, size_t step, size_t cap,
                      unsigned char *out, size_t *outlen) {
  size_t off = 0;
  int rc = 0;
  *outlen = 0;
  while (off < len && rc == 0) {
    size_t n = len - off < step ? len - off : step, used, produced;
    rc = sj_wsf_decode(c, (const char *)in + off, n, &used, (char *)out + *outlen, cap, &produced);
    assert_true(used <= n && used <= cap && produced <= cap);
    if (rc == 0)
      assert_true(used == n || used == cap);
    off += used;
    *outlen += produced;
  }
  return rc;
}

static void fill_pattern(unsigned char *buf, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)(i * 31 + seed + (i >> 8));
}

/* ---- sending -------------------------------------------------------------- */

static void test_client_frames_are_masked(void **state) {
  pair_t *p = *state;
  unsigned char data[300];
  fill_pattern(data, sizeof data, 7);
  assert_int_equal(sj_wsf_send_binary(&p->client, (const char *)data, sizeof data), 0);
  /* 0x82: fin, binary; 126: a 16-bit length follows; a mask key; then the
   * payload, masked. */
  assert_int_equal(p->cout.len, 2 + 2 + 4 + sizeof data);
  assert_int_equal(p->cout.buf[0], 0x82);
  assert_int_equal(p->cout.buf[1], 0x80 | 126);
  assert_int_equal(p->cout.buf[2] << 8 | p->cout.buf[3], sizeof data);
  const unsigned char *key = p->cout.buf + 4, *body = p->cout.buf + 8;
  for (size_t i = 0; i < sizeof data; i++)
    assert_int_equal(body[i] ^ key[i % 4], data[i]);
  unsigned char out[300];
  size_t n;
  assert_int_equal(
      decode_all(&p->server, p->cout.buf, p->cout.len, p->cout.len, sizeof out, out, &n), 0);
  assert_int_equal(n, sizeof data);
  assert_memory_equal(out, data, n);
}

static void test_server_frames_are_not_masked(void **state) {
  pair_t *p = *state;
  assert_int_equal(sj_wsf_send_binary(&p->server, "hello", 5), 0);
  assert_int_equal(p->sout.len, 7);
  assert_memory_equal(p->sout.buf, "\x82\x05hello", 7);
  unsigned char out[16];
  size_t n;
  assert_int_equal(decode_all(&p->client, p->sout.buf, p->sout.len, 64, sizeof out, out, &n), 0);
  assert_int_equal(n, 5);
  assert_memory_equal(out, "hello", 5);
}

/* Frames of every length class, decoded a byte at a time and through
 * small outputs: the same bytes come out. */
static void test_decode_split_everywhere(void **state) {
  pair_t *p = *state;
  static const size_t sizes[] = {0, 1, 125, 126, 127, 4095, 4096, 4097, 65535, 65536};
  size_t total = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    total += sizes[i];
  unsigned char *data = malloc(total), *out = malloc(total + 1);
  fill_pattern(data, total, 3);
  size_t off = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    assert_int_equal(sj_wsf_send_binary(&p->client, (const char *)data + off, sizes[i]), 0);
    off += sizes[i];
  }
  static const size_t steps[][2] = {{1, 65536}, {3, 2}, {7, 1}, {1 << 20, 5}, {1 << 20, 1 << 20}};
  for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
    sj_wsf_t fresh;
    assert_int_equal(sj_wsf_init(&fresh, 1, sink, &p->sout), 0);
    size_t n;
    assert_int_equal(
        decode_all(&fresh, p->cout.buf, p->cout.len, steps[s][0], steps[s][1], out, &n), 0);
    assert_int_equal(n, total);
    assert_memory_equal(out, data, total);
    sj_wsf_free(&fresh);
  }
  free(data);
  free(out);
}

/* ---- control frames and messages ------------------------------------------ */

static void test_ping_is_answered(void **state) {
  pair_t *p = *state;
  unsigned char in[64], out[16];
  size_t len = frame(in, 1, 0, WSLAY_PING, 1, "are you there", 13), n;
  assert_int_equal(decode_all(&p->server, in, len, 1, sizeof out, out, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(p->sout.len, 15);
  assert_memory_equal(p->sout.buf,
                      "\x8a\x0d"
                      "are you there",
                      15);
  /* A pong is taken and ignored. */
  len = frame(in, 1, 0, WSLAY_PONG, 1, "x", 1);
  assert_int_equal(decode_all(&p->server, in, len, len, sizeof out, out, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(p->sout.len, 15);
}

/* A message in three frames, a ping between two of them. */
static void test_fragmented_message(void **state) {
  pair_t *p = *state;
  unsigned char in[128], out[32];
  size_t len = frame(in, 0, 0, WSLAY_BINARY_FRAME, 0, "abc", 3);
  len += frame(in + len, 1, 0, WSLAY_PING, 0, "p", 1);
  len += frame(in + len, 0, 0, WSLAY_CONTINUATION_FRAME, 0, "def", 3);
  len += frame(in + len, 1, 0, WSLAY_CONTINUATION_FRAME, 0, "g", 1);
  len += frame(in + len, 1, 0, WSLAY_BINARY_FRAME, 0, "h", 1);
  size_t n;
  assert_int_equal(decode_all(&p->client, in, len, 1, sizeof out, out, &n), 0);
  assert_int_equal(n, 8);
  assert_memory_equal(out, "abcdefgh", 8);
  /* The pong went out masked, from the client. */
  assert_int_equal(p->cout.len, 2 + 4 + 1);
  assert_int_equal(p->cout.buf[0], 0x8a);
  assert_int_equal(p->cout.buf[1], 0x81);
}

/* What a frame refused with err does, as the first frame a side sees. */
static void check_refused(sj_wsf_t *c, const unsigned char *in, size_t len, int err) {
  unsigned char out[256];
  size_t n;
  assert_int_equal(decode_all(c, in, len, len, sizeof out, out, &n), err);
  /* Sticky: nothing more is decoded. */
  size_t used, produced;
  assert_int_equal(
      sj_wsf_decode(c, (const char *)in, len, &used, (char *)out, sizeof out, &produced), err);
  assert_int_equal(used, 0);
  assert_int_equal(produced, 0);
}

static void test_refused_frames(void **state) {
  (void)state;
  static const struct {
    int server, fin, rsv, opcode, mask, err;
    uint16_t close;
  } cases[] = {
      {1, 1, 0, WSLAY_TEXT_FRAME, 1, SJ_WSF_ETEXT, 1003},
      {0, 1, 0, WSLAY_TEXT_FRAME, 0, SJ_WSF_ETEXT, 1003},
      {1, 1, 0, WSLAY_BINARY_FRAME, 0, SJ_WSF_EUNMASKED, 1002},
      {0, 1, 0, WSLAY_BINARY_FRAME, 1, SJ_WSF_EMASKED, 1002},
      {1, 1, 4, WSLAY_BINARY_FRAME, 1, SJ_WSF_ERSV, 1002},
      {0, 1, 1, WSLAY_BINARY_FRAME, 0, SJ_WSF_ERSV, 1002},
      {1, 1, 0, 3, 1, SJ_WSF_EOPCODE, 1002},
      {0, 1, 0, 0xb, 0, SJ_WSF_EOPCODE, 1002},
      {1, 1, 0, WSLAY_CONTINUATION_FRAME, 1, SJ_WSF_ECONTINUATION, 1002},
      {1, 0, 0, WSLAY_PING, 1, SJ_WSF_EFRAME, 1002}, /* a fragmented control frame */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sj_wsf_t c;
    sink_t out = {0};
    assert_int_equal(sj_wsf_init(&c, cases[i].server, sink, &out), 0);
    unsigned char in[64];
    size_t len = frame(in, cases[i].fin, cases[i].rsv, cases[i].opcode, cases[i].mask, "data", 4);
    check_refused(&c, in, len, cases[i].err);
    assert_int_equal(sj_wsf_close_code(cases[i].err), cases[i].close);
    assert_int_equal(out.len, 0); /* the codec sends nothing of its own */
    sj_wsf_free(&c);
    free(out.buf);
  }
}

static void test_refused_sequences(void **state) {
  pair_t *p = *state;
  unsigned char in[256], big[130];
  memset(big, 'b', sizeof big);
  /* A new message while one is open. */
  size_t len = frame(in, 0, 0, WSLAY_BINARY_FRAME, 0, "a", 1);
  len += frame(in + len, 1, 0, WSLAY_BINARY_FRAME, 0, "b", 1);
  check_refused(&p->client, in, len, SJ_WSF_EINTERLEAVED);
  /* A control frame over 125 bytes. */
  len = frame(in, 1, 0, WSLAY_PING, 1, big, sizeof big);
  check_refused(&p->server, in, len, SJ_WSF_EFRAME);
}

/* ---- closing -------------------------------------------------------------- */

static int close_with(pair_t *p, const void *payload, size_t plen) {
  unsigned char in[256], out[64];
  size_t len = frame(in, 1, 0, WSLAY_BINARY_FRAME, 0, "last", 4), n;
  len += frame(in + len, 1, 0, WSLAY_CONNECTION_CLOSE, 0, payload, plen);
  len += frame(in + len, 1, 0, WSLAY_BINARY_FRAME, 0, "after", 5);
  int rc = decode_all(&p->client, in, len, len, sizeof out, out, &n);
  assert_int_equal(n, 4); /* the bytes before the close, none after */
  assert_memory_equal(out, "last", 4);
  return rc;
}

static void test_clean_close(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p, "\x03\xe8", 2), SJ_WSF_CLOSED);
  assert_int_equal(p->client.close_code, 1000);
  /* And again on every later call, taking nothing. */
  size_t used, produced;
  char out[8];
  assert_int_equal(sj_wsf_decode(&p->client, "\x82\x01x", 3, &used, out, sizeof out, &produced),
                   SJ_WSF_CLOSED);
  assert_int_equal(used, 0);
  /* The peer's close is not answered on its own: ours waits for our end. */
  assert_int_equal(p->cout.len, 0);
  assert_int_equal(sj_wsf_send_binary(&p->client, "more", 4), 0);
  assert_int_equal(sj_wsf_send_close(&p->client, 1000, NULL), 0);
  size_t before = p->cout.len;
  assert_int_equal(sj_wsf_send_close(&p->client, 1000, NULL), 0);
  assert_int_equal(p->cout.len, before); /* once only */
  assert_int_equal(p->cout.buf[before - 8], 0x88);
  assert_int_equal(p->cout.buf[before - 7], 0x82);
}

static void test_close_forms(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p, "", 0), SJ_WSF_CLOSED);
  assert_int_equal(p->client.close_code, SJ_WSF_CODE_NONE);
}

static void test_close_going_away(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p,
                              "\x03\xe9"
                              "restart",
                              9),
                   SJ_WSF_CLOSED);
  assert_string_equal(p->client.close_reason, "restart");
}

static void test_close_with_error(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p,
                              "\x03\xea"
                              "text frame",
                              12),
                   SJ_WSF_EPEERCLOSE);
  assert_int_equal(p->client.close_code, 1002);
  assert_string_equal(p->client.close_reason, "text frame");
}

static void test_close_malformed(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p, "\x03", 1), SJ_WSF_ECLOSEFRAME);
}

static void test_close_bad_code(void **state) {
  pair_t *p = *state;
  assert_int_equal(close_with(p, "\x03\xed", 2), SJ_WSF_ECLOSEFRAME); /* 1005: never sent */
}

static void test_no_pong_after_close_sent(void **state) {
  pair_t *p = *state;
  assert_int_equal(sj_wsf_send_close(&p->server, 1000, "bye"), 0);
  assert_int_equal(p->sout.len, 2 + 2 + 3);
  assert_memory_equal(p->sout.buf,
                      "\x88\x05\x03\xe8"
                      "bye",
                      7);
  unsigned char in[32], out[8];
  size_t len = frame(in, 1, 0, WSLAY_PING, 1, "x", 1), n;
  assert_int_equal(decode_all(&p->server, in, len, len, sizeof out, out, &n), 0);
  assert_int_equal(p->sout.len, 7);
}

static void test_sink_failure(void **state) {
  pair_t *p = *state;
  p->cout.refuse = 1;
  assert_int_equal(sj_wsf_send_binary(&p->client, "x", 1), SJ_WSF_ENOMEM);
  p->sout.refuse = 1;
  unsigned char in[32], out[8];
  size_t len = frame(in, 1, 0, WSLAY_PING, 1, "x", 1), n;
  assert_int_equal(decode_all(&p->server, in, len, len, sizeof out, out, &n), SJ_WSF_ENOMEM);
  assert_string_equal(sj_wsf_strerror(SJ_WSF_ETEXT),
                      "text frame (the stream is carried in binary frames only)");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_client_frames_are_masked),
      T(test_server_frames_are_not_masked),
      T(test_decode_split_everywhere),
      T(test_ping_is_answered),
      T(test_fragmented_message),
      T(test_refused_frames),
      T(test_refused_sequences),
      T(test_clean_close),
      T(test_close_forms),
      T(test_close_going_away),
      T(test_close_with_error),
      T(test_close_malformed),
      T(test_close_bad_code),
      T(test_no_pong_after_close_sent),
      T(test_sink_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
