/* The pure formatters: sj_traffic_format (ascii and hexdump -C), sj_stats_json,
 * sj_strerror, sj_version and sj_options_init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sockjoin.h"

/* ---- helpers ------------------------------------------------------------- */

typedef int (*format_fn)(char *buf, size_t len, const void *arg);

/* Checks the snprintf contract of fn for every buffer size from 0 to past
 * the text's end: the return is always the full length, nothing is written
 * at or past len, the buffer is terminated, and what is there is a prefix of
 * the full text. */
static void check_snprintf_contract(format_fn fn, const void *arg, const char *full) {
  size_t n = strlen(full);
  assert_int_equal(fn(NULL, 0, arg), n);
  char *buf = malloc(n + 16);
  assert_non_null(buf);
  for (size_t len = 0; len <= n + 8; len++) {
    memset(buf, '#', n + 16);
    int rc = fn(buf, len, arg);
    if (rc < 0 || (size_t)rc != n)
      fail_msg("len %zu: returned %d, expected %zu", len, rc, n);
    for (size_t i = len; i < n + 16; i++)
      if (buf[i] != '#')
        fail_msg("len %zu: byte %zu written past the buffer", len, i);
    if (len == 0)
      continue;
    size_t kept = len - 1 < n ? len - 1 : n;
    if (buf[kept] != '\0')
      fail_msg("len %zu: not terminated at %zu", len, kept);
    if (memcmp(buf, full, kept) != 0)
      fail_msg("len %zu: '%s' is not a prefix of the full text", len, buf);
  }
  free(buf);
}

/* ---- sj_traffic_format: ascii -------------------------------------------- */

static char *traffic(sj_traffic_mode_t mode, sj_side_t from, uint64_t id, const void *bytes,
                     size_t n) {
  int need = sj_traffic_format(mode, from, id, bytes, n, NULL, 0);
  assert_true(need > 0);
  char *buf = malloc((size_t)need + 1);
  assert_non_null(buf);
  assert_int_equal(sj_traffic_format(mode, from, id, bytes, n, buf, (size_t)need + 1), need);
  assert_int_equal(strlen(buf), need);
  return buf;
}

static void check_traffic(sj_traffic_mode_t mode, sj_side_t from, uint64_t id, const void *bytes,
                          size_t n, const char *want) {
  char *got = traffic(mode, from, id, bytes, n);
  if (strcmp(got, want) != 0)
    fail_msg("got:\n%s\nexpected:\n%s", got, want);
  free(got);
}

static void test_ascii(void **state) {
  (void)state;
  check_traffic(SJ_TRAFFIC_ASCII, SJ_A, 1, "hello world\n", 12,
                "A -> B (pair 1, 12 bytes): hello world.");
  check_traffic(SJ_TRAFFIC_ASCII, SJ_B, 42, "pong", 4, "B -> A (pair 42, 4 bytes): pong");
  check_traffic(SJ_TRAFFIC_ASCII, SJ_A, UINT64_MAX, "x", 1,
                "A -> B (pair 18446744073709551615, 1 bytes): x");
  check_traffic(SJ_TRAFFIC_ASCII, SJ_A, 3, "", 0, "A -> B (pair 3, 0 bytes): ");
}

static void test_ascii_non_printables(void **state) {
  (void)state;
  /* 0x20..0x7e as themselves; controls, DEL, and bytes >= 0x80 as '.';
   * a NUL does not end the chunk. */
  const unsigned char bytes[] = {0x00, 'a',  0x09, 0x0d, 0x0a, 0x1f, ' ', '~',
                                 0x7f, 0x80, 0xc3, 0xa9, 0xff, 'z',  0x00};
  check_traffic(SJ_TRAFFIC_ASCII, SJ_A, 1, bytes, sizeof bytes,
                "A -> B (pair 1, 15 bytes): .a.... ~.....z.");
  unsigned char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  char *got = traffic(SJ_TRAFFIC_ASCII, SJ_B, 2, all, sizeof all);
  const char *head = "B -> A (pair 2, 256 bytes): ";
  assert_int_equal(strncmp(got, head, strlen(head)), 0);
  const char *text = got + strlen(head);
  assert_int_equal(strlen(text), 256);
  for (int i = 0; i < 256; i++) {
    char want = i >= 0x20 && i < 0x7f ? (char)i : '.';
    if (text[i] != want)
      fail_msg("byte 0x%02x shown as '%c'", i, text[i]);
  }
  free(got);
}

/* ---- sj_traffic_format: hex ---------------------------------------------- */

/* Lines of `hexdump -C` for the same bytes, without its final offset line. */
static const char hexdump_hello[] =
    "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |hello world.|";

static const char hexdump_34[] =
    "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|\n"
    "00000010  10 11 12 13 14 15 16 17  18 19 1a 1b 1c 1d 1e 1f  |................|\n"
    "00000020  20 21                                             | !|";

static const char hexdump_1[] = "00000000  00                                                |.|";
static const char hexdump_8[] =
    "00000000  00 01 02 03 04 05 06 07                           |........|";
static const char hexdump_9[] =
    "00000000  00 01 02 03 04 05 06 07  08                       |.........|";
static const char hexdump_16[] =
    "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|";
static const char hexdump_17[] =
    "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|\n"
    "00000010  10                                                |.|";

static const char hexdump_256[] =
    "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|\n"
    "00000010  10 11 12 13 14 15 16 17  18 19 1a 1b 1c 1d 1e 1f  |................|\n"
    "00000020  20 21 22 23 24 25 26 27  28 29 2a 2b 2c 2d 2e 2f  | !\"#$%&'()*+,-./|\n"
    "00000030  30 31 32 33 34 35 36 37  38 39 3a 3b 3c 3d 3e 3f  |0123456789:;<=>?|\n"
    "00000040  40 41 42 43 44 45 46 47  48 49 4a 4b 4c 4d 4e 4f  |@ABCDEFGHIJKLMNO|\n"
    "00000050  50 51 52 53 54 55 56 57  58 59 5a 5b 5c 5d 5e 5f  |PQRSTUVWXYZ[\\]^_|\n"
    "00000060  60 61 62 63 64 65 66 67  68 69 6a 6b 6c 6d 6e 6f  |`abcdefghijklmno|\n"
    "00000070  70 71 72 73 74 75 76 77  78 79 7a 7b 7c 7d 7e 7f  |pqrstuvwxyz{|}~.|\n"
    "00000080  80 81 82 83 84 85 86 87  88 89 8a 8b 8c 8d 8e 8f  |................|\n"
    "00000090  90 91 92 93 94 95 96 97  98 99 9a 9b 9c 9d 9e 9f  |................|\n"
    "000000a0  a0 a1 a2 a3 a4 a5 a6 a7  a8 a9 aa ab ac ad ae af  |................|\n"
    "000000b0  b0 b1 b2 b3 b4 b5 b6 b7  b8 b9 ba bb bc bd be bf  |................|\n"
    "000000c0  c0 c1 c2 c3 c4 c5 c6 c7  c8 c9 ca cb cc cd ce cf  |................|\n"
    "000000d0  d0 d1 d2 d3 d4 d5 d6 d7  d8 d9 da db dc dd de df  |................|\n"
    "000000e0  e0 e1 e2 e3 e4 e5 e6 e7  e8 e9 ea eb ec ed ee ef  |................|\n"
    "000000f0  f0 f1 f2 f3 f4 f5 f6 f7  f8 f9 fa fb fc fd fe ff  |................|";

static void check_hex(sj_side_t from, uint64_t id, const void *bytes, size_t n, const char *dump) {
  char want[8192];
  snprintf(want, sizeof want, "%s (pair %llu, %zu bytes):\n%s", from == SJ_A ? "A -> B" : "B -> A",
           (unsigned long long)id, n, dump);
  check_traffic(SJ_TRAFFIC_HEX, from, id, bytes, n, want);
}

static void test_hex_hello(void **state) {
  (void)state;
  check_hex(SJ_A, 1, "hello world\n", 12, hexdump_hello);
  check_traffic(SJ_TRAFFIC_HEX, SJ_A, 1, "hello world\n", 12,
                "A -> B (pair 1, 12 bytes):\n"
                "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |hello world.|");
}

static void test_hex_line_boundaries(void **state) {
  (void)state;
  unsigned char bytes[256];
  for (int i = 0; i < 256; i++)
    bytes[i] = (unsigned char)i;
  check_hex(SJ_A, 1, bytes, 1, hexdump_1);
  check_hex(SJ_B, 2, bytes, 8, hexdump_8);
  check_hex(SJ_A, 3, bytes, 9, hexdump_9);
  check_hex(SJ_B, 4, bytes, 16, hexdump_16);
  check_hex(SJ_A, 5, bytes, 17, hexdump_17);
  check_hex(SJ_B, 6, bytes, 34, hexdump_34);
  check_hex(SJ_A, 7, bytes, 256, hexdump_256);
}

static void test_hex_empty(void **state) {
  (void)state;
  check_traffic(SJ_TRAFFIC_HEX, SJ_B, 9, "", 0, "B -> A (pair 9, 0 bytes):");
}

static void test_hex_offsets_past_64k(void **state) {
  (void)state;
  size_t n = 65536 + 20;
  unsigned char *bytes = calloc(n, 1);
  assert_non_null(bytes);
  char *got = traffic(SJ_TRAFFIC_HEX, SJ_A, 1, bytes, n);
  /* One header, then 4097 full lines of 78 characters and a last line of 4
   * bytes (66 characters), each after a newline. The lines are not collapsed
   * into '*' as hexdump -C would without -v: every chunk is shown whole. */
  assert_int_equal(strlen(got), strlen("A -> B (pair 1, 65556 bytes):") + 4097 * (1 + 78) + 1 + 66);
  assert_non_null(strstr(got, "\n0000fff0  00 00"));
  assert_non_null(strstr(got, "\n00010000  00 00"));
  const char *last = strrchr(got, '\n') + 1;
  assert_string_equal(last, "00010010  00 00 00 00                                       |....|");
  free(got);
  free(bytes);
}

struct traffic_arg {
  sj_traffic_mode_t mode;
  sj_side_t from;
  uint64_t id;
  const void *bytes;
  size_t n;
};

static int traffic_fn(char *buf, size_t len, const void *arg) {
  const struct traffic_arg *t = arg;
  return sj_traffic_format(t->mode, t->from, t->id, t->bytes, t->n, buf, len);
}

static void test_traffic_small_buffers(void **state) {
  (void)state;
  unsigned char bytes[34];
  for (int i = 0; i < 34; i++)
    bytes[i] = (unsigned char)i;
  struct traffic_arg hex = {SJ_TRAFFIC_HEX, SJ_A, 12, bytes, sizeof bytes};
  char *full = traffic(hex.mode, hex.from, hex.id, hex.bytes, hex.n);
  check_snprintf_contract(traffic_fn, &hex, full);
  free(full);

  struct traffic_arg ascii = {SJ_TRAFFIC_ASCII, SJ_B, 3, "hello world\n", 12};
  check_snprintf_contract(traffic_fn, &ascii, "B -> A (pair 3, 12 bytes): hello world.");
}

/* ---- sj_stats_json ------------------------------------------------------- */

static char *stats_json(const sj_stats_t *st) {
  int need = sj_stats_json(st, NULL, 0);
  assert_true(need > 0);
  char *buf = malloc((size_t)need + 1);
  assert_non_null(buf);
  assert_int_equal(sj_stats_json(st, buf, (size_t)need + 1), need);
  assert_int_equal(strlen(buf), need);
  return buf;
}

static void check_stats_json(const sj_stats_t *st, const char *want) {
  char *got = stats_json(st);
  if (strcmp(got, want) != 0)
    fail_msg("got:\n%s\nexpected:\n%s", got, want);
  free(got);
}

static sj_peer_t peer(const char *host, int port, int64_t ms) {
  sj_peer_t p;
  memset(&p, 0, sizeof p);
  snprintf(p.host, sizeof p.host, "%s", host);
  p.port = port;
  p.timestamp_ms = ms;
  return p;
}

#define T_KNOWN 1795480763123LL /* 2026-11-24T00:39:23.123Z */

static void test_stats_empty(void **state) {
  (void)state;
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  check_stats_json(&st, "{\"pairs\":0,\"bytes_a_to_b\":0,\"bytes_b_to_a\":0,"
                        "\"sockets_a\":{},\"sockets_b\":{}}");
}

static void test_stats_one_pair(void **state) {
  (void)state;
  sj_peer_t a = peer("127.0.0.1", 40000, T_KNOWN);
  sj_peer_t b = peer("::1", 40001, T_KNOWN + 877);
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = 1;
  st.bytes_read_a = 999; /* not part of the JSON shape */
  st.bytes_a_to_b = 12;
  st.bytes_b_to_a = 34;
  st.sockets_a = &a;
  st.n_sockets_a = 1;
  st.sockets_b = &b;
  st.n_sockets_b = 1;
  check_stats_json(&st, "{\"pairs\":1,\"bytes_a_to_b\":12,\"bytes_b_to_a\":34,"
                        "\"sockets_a\":{\"127.0.0.1\":[{\"port\":40000,"
                        "\"timestamp\":\"2026-11-24T00:39:23.123Z\"}]},"
                        "\"sockets_b\":{\"::1\":[{\"port\":40001,"
                        "\"timestamp\":\"2026-11-24T00:39:24.000Z\"}]}}");
}

static void test_stats_timestamps_before_1970(void **state) {
  (void)state;
  sj_peer_t a[] = {peer("h", 1, -1), peer("h", 2, -1500)};
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.sockets_a = a;
  st.n_sockets_a = 2;
  check_stats_json(&st, "{\"pairs\":0,\"bytes_a_to_b\":0,\"bytes_b_to_a\":0,"
                        "\"sockets_a\":{\"h\":[{\"port\":1,"
                        "\"timestamp\":\"1969-12-31T23:59:59.999Z\"},"
                        "{\"port\":2,\"timestamp\":\"1969-12-31T23:59:58.500Z\"}]},"
                        "\"sockets_b\":{}}");
}

static void test_stats_grouping_by_host(void **state) {
  (void)state;
  /* Each host is one key; a host's sockets keep their pairing order. */
  sj_peer_t a[] = {
      peer("10.0.0.2", 5000, T_KNOWN),     peer("10.0.0.1", 4000, T_KNOWN + 1),
      peer("10.0.0.2", 5001, T_KNOWN + 2), peer("10.0.0.1", 3999, T_KNOWN + 3),
      peer("10.0.0.2", 4999, T_KNOWN + 4),
  };
  sj_peer_t b[] = {peer("h", 1, 0), peer("h", 2, 0), peer("h", 3, 0)};
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = 5;
  st.sockets_a = a;
  st.n_sockets_a = 5;
  st.sockets_b = b;
  st.n_sockets_b = 3;
  char *got = stats_json(&st);
  const char *want_a = "\"sockets_a\":{"
                       "\"10.0.0.1\":[{\"port\":4000,\"timestamp\":\"2026-11-24T00:39:23.124Z\"},"
                       "{\"port\":3999,\"timestamp\":\"2026-11-24T00:39:23.126Z\"}],"
                       "\"10.0.0.2\":[{\"port\":5000,\"timestamp\":\"2026-11-24T00:39:23.123Z\"},"
                       "{\"port\":5001,\"timestamp\":\"2026-11-24T00:39:23.125Z\"},"
                       "{\"port\":4999,\"timestamp\":\"2026-11-24T00:39:23.127Z\"}]}";
  const char *want_b = "\"sockets_b\":{\"h\":["
                       "{\"port\":1,\"timestamp\":\"1970-01-01T00:00:00.000Z\"},"
                       "{\"port\":2,\"timestamp\":\"1970-01-01T00:00:00.000Z\"},"
                       "{\"port\":3,\"timestamp\":\"1970-01-01T00:00:00.000Z\"}]}";
  char want[2048];
  snprintf(want, sizeof want, "{\"pairs\":5,\"bytes_a_to_b\":0,\"bytes_b_to_a\":0,%s,%s}", want_a,
           want_b);
  if (strcmp(got, want) != 0)
    fail_msg("got:\n%s\nexpected:\n%s", got, want);
  /* Each host appears exactly once as a key. */
  const char *first = strstr(got, "\"10.0.0.2\":");
  assert_non_null(first);
  assert_null(strstr(first + 1, "\"10.0.0.2\":"));
  free(got);
}

static void test_stats_escaping(void **state) {
  (void)state;
  sj_peer_t a[] = {peer("a\"b\\c", 1, T_KNOWN), peer("unix:/tmp/x\"y.sock", -1, T_KNOWN),
                   peer("ctl\x01\x1f", 2, T_KNOWN)};
  sj_peer_t b = peer("stdio", -1, T_KNOWN);
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = 3;
  st.sockets_a = a;
  st.n_sockets_a = 3;
  st.sockets_b = &b;
  st.n_sockets_b = 1;
  check_stats_json(
      &st, "{\"pairs\":3,\"bytes_a_to_b\":0,\"bytes_b_to_a\":0,\"sockets_a\":{"
           "\"a\\\"b\\\\c\":[{\"port\":1,\"timestamp\":\"2026-11-24T00:39:23.123Z\"}],"
           "\"ctl\\u0001\\u001f\":[{\"port\":2,\"timestamp\":\"2026-11-24T00:39:23.123Z\"}],"
           "\"unix:/tmp/x\\\"y.sock\":[{\"port\":-1,\"timestamp\":\"2026-11-24T00:39:23.123Z\"}]},"
           "\"sockets_b\":{\"stdio\":[{\"port\":-1,\"timestamp\":\"2026-11-24T00:39:23.123Z\"}]}}");
}

static void check_timestamp(int64_t ms, const char *want) {
  sj_peer_t p = peer("h", 1, ms);
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.sockets_a = &p;
  st.n_sockets_a = 1;
  char *got = stats_json(&st);
  char needle[128];
  snprintf(needle, sizeof needle, "\"timestamp\":\"%s\"", want);
  if (strstr(got, needle) == NULL)
    fail_msg("%lld: %s does not hold %s", (long long)ms, got, needle);
  free(got);
}

static void test_stats_timestamps(void **state) {
  (void)state;
  check_timestamp(T_KNOWN, "2026-11-24T00:39:23.123Z");
  check_timestamp(0, "1970-01-01T00:00:00.000Z");
  check_timestamp(5, "1970-01-01T00:00:00.005Z");
  check_timestamp(60999, "1970-01-01T00:01:00.999Z");
  check_timestamp(951868799999LL, "2000-02-29T23:59:59.999Z"); /* leap day */
  check_timestamp(951868800000LL, "2000-03-01T00:00:00.000Z");
  check_timestamp(4102444800000LL, "2100-01-01T00:00:00.000Z");
}

static void test_stats_big_numbers(void **state) {
  (void)state;
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = UINT64_MAX;
  st.bytes_a_to_b = UINT64_MAX - 1;
  st.bytes_b_to_a = 1ULL << 40;
  check_stats_json(&st, "{\"pairs\":18446744073709551615,"
                        "\"bytes_a_to_b\":18446744073709551614,"
                        "\"bytes_b_to_a\":1099511627776,\"sockets_a\":{},\"sockets_b\":{}}");
}

static void test_stats_many_sockets(void **state) {
  (void)state;
  /* Many sockets over few hosts: every socket is written once, in order
   * within its host. */
  enum { N = 3000 };
  sj_peer_t *a = malloc(N * sizeof *a);
  assert_non_null(a);
  for (int i = 0; i < N; i++)
    a[i] = peer(i % 3 == 0 ? "h0" : i % 3 == 1 ? "h1" : "h2", i, T_KNOWN);
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = N;
  st.sockets_a = a;
  st.n_sockets_a = N;
  char *got = stats_json(&st);
  const char *p = got;
  for (int h = 0; h < 3; h++) {
    char key[16];
    snprintf(key, sizeof key, "\"h%d\":[", h);
    p = strstr(p, key);
    assert_non_null(p);
    for (int i = h; i < N; i += 3) {
      char item[64];
      snprintf(item, sizeof item, "{\"port\":%d,", i);
      const char *q = strstr(p, item);
      if (q == NULL)
        fail_msg("port %d missing or out of order under h%d", i, h);
      p = q;
    }
  }
  free(got);
  free(a);
}

static int stats_fn(char *buf, size_t len, const void *arg) { return sj_stats_json(arg, buf, len); }

static void test_stats_small_buffers(void **state) {
  (void)state;
  sj_peer_t a[] = {peer("a\"b", 1, T_KNOWN), peer("10.0.0.1", 2, T_KNOWN)};
  sj_peer_t b = peer("::1", 3, T_KNOWN);
  sj_stats_t st;
  memset(&st, 0, sizeof st);
  st.pairs = 2;
  st.bytes_a_to_b = 77;
  st.sockets_a = a;
  st.n_sockets_a = 2;
  st.sockets_b = &b;
  st.n_sockets_b = 1;
  char *full = stats_json(&st);
  check_snprintf_contract(stats_fn, &st, full);
  free(full);
}

/* ---- errors, version, options -------------------------------------------- */

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(sj_strerror(SJ_EBADSIDE), "bad side specification");
  assert_string_equal(sj_strerror(SJ_ECLOSED), "connector is closed");
  assert_string_equal(sj_strerror(SJ_EAUTH), "authentication failed");
  assert_string_equal(sj_strerror(SJ_ETIMEDOUT_AUTH), "authentication timed out");
  assert_string_equal(sj_strerror(SJ_EMODE), "sides do not form a supported mode");
  assert_int_equal(SJ_EBADSIDE, -5001);
  /* libuv's codes pass through to libuv's own texts. */
  assert_string_equal(sj_strerror(UV_ECONNREFUSED), "connection refused");
  assert_string_equal(sj_strerror(UV_EADDRINUSE), uv_strerror(UV_EADDRINUSE));
  assert_string_equal(sj_strerror(UV_ETIMEDOUT), uv_strerror(UV_ETIMEDOUT));
  assert_string_equal(sj_strerror(UV_EOF), "end of file");
  /* Codes nobody knows get a fixed text (libuv would allocate one). */
  assert_string_equal(sj_strerror(-4999), "unknown error");
  assert_string_equal(sj_strerror(12345), "unknown error");
  assert_string_equal(sj_strerror(UV_EAI_NONAME), uv_strerror(UV_EAI_NONAME));
}

static void test_version(void **state) {
  (void)state;
  assert_string_equal(sj_version(), SJ_VERSION_STRING);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", SJ_VERSION_MAJOR, SJ_VERSION_MINOR, SJ_VERSION_PATCH);
  assert_string_equal(sj_version(), want);
}

static void test_options_init(void **state) {
  (void)state;
  sj_options_t o;
  memset(&o, 0xa5, sizeof o);
  sj_options_init(&o);
  assert_int_equal(o.verbose, 0);
  assert_int_equal(o.log_traffic, SJ_TRAFFIC_OFF);
  assert_true(o.timeout_s == 0);
  assert_true(o.connect_timeout_s == 10);
  assert_int_equal(o.buffer_size, 256 * 1024);
  assert_int_equal(o.max_pairs, 0);
  sj_keepalive_t def = SJ_KEEPALIVE_DEFAULTS;
  assert_int_equal(def.enable, 1);
  assert_int_equal(def.idle_s, 60);
  assert_int_equal(def.interval_s, 10);
  assert_int_equal(def.count, 5);
  assert_memory_equal(&o.keepalive, &def, sizeof def);
  assert_null(o.log_cb);
  assert_null(o.on_pair);
  assert_null(o.on_pair_closed);
  assert_null(o.on_done);
  assert_null(o.data);

  sj_keepalive_t off = SJ_KEEPALIVE_DISABLED;
  assert_int_equal(off.enable, 0);
  assert_int_equal(off.idle_s + off.interval_s + off.count, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ascii),
      cmocka_unit_test(test_ascii_non_printables),
      cmocka_unit_test(test_hex_hello),
      cmocka_unit_test(test_hex_line_boundaries),
      cmocka_unit_test(test_hex_empty),
      cmocka_unit_test(test_hex_offsets_past_64k),
      cmocka_unit_test(test_traffic_small_buffers),
      cmocka_unit_test(test_stats_empty),
      cmocka_unit_test(test_stats_one_pair),
      cmocka_unit_test(test_stats_grouping_by_host),
      cmocka_unit_test(test_stats_escaping),
      cmocka_unit_test(test_stats_timestamps),
      cmocka_unit_test(test_stats_timestamps_before_1970),
      cmocka_unit_test(test_stats_big_numbers),
      cmocka_unit_test(test_stats_many_sockets),
      cmocka_unit_test(test_stats_small_buffers),
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_options_init),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
