/* The mux frame codec: every frame type whole, split at every byte and
 * coalesced; payloads reported in place; every malformed header refused
 * with its reason; the encoders' exact bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* Everything a parse produced, as text: "F:type:id:value" for a frame
 * (PING/PONG show their opaque bytes as hex), "D:id:bytes" for a data part,
 * "L" after the last part, "E:code" for an error. */
typedef struct {
  char text[1 << 17];
  size_t len;
} trace_t;

static void put(trace_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, ap);
  va_end(ap);
  assert_true(n >= 0 && (size_t)n < sizeof t->text - t->len);
  t->len += (size_t)n;
}

static void note_event(trace_t *t, const sj_mux_event_t *ev, const char *lo, const char *hi) {
  if (ev->type == SJ_MUX_DATA_PART) {
    /* The part is a span of the input, not a copy. */
    assert_true(ev->data >= lo && ev->data + ev->data_len <= hi);
    assert_true(ev->data_len > 0);
    put(t, "D:%u:%.*s;%s", ev->id, (int)ev->data_len, ev->data, ev->last ? "L;" : "");
  } else if (ev->frame == SJ_MUX_PING || ev->frame == SJ_MUX_PONG) {
    put(t, "F:%d:%u:", (int)ev->frame, ev->id);
    for (int i = 0; i < 8; i++)
      put(t, "%02x", ev->opaque[i]);
    put(t, ";");
  } else {
    put(t, "F:%d:%u:%u;", (int)ev->frame, ev->id, ev->value);
  }
}

/* Feeds input in pieces of at most step bytes (0: all at once); each piece
 * is a separate allocation, so that a read past it is caught by ASan. */
static void run(const void *input, size_t len, size_t step, trace_t *t) {
  sj_mux_parser_t p;
  sj_mux_parser_init(&p);
  t->len = 0;
  t->text[0] = '\0';
  for (size_t pos = 0; pos < len;) {
    size_t piece = step == 0 || len - pos < step ? len - pos : step;
    char *copy = malloc(piece);
    assert_non_null(copy);
    memcpy(copy, (const char *)input + pos, piece);
    pos += piece;
    const char *buf = copy;
    size_t left = piece;
    while (left > 0) {
      sj_mux_event_t ev;
      int64_t n = sj_mux_parse(&p, buf, left, &ev);
      if (n < 0) {
        put(t, "E:%d;", (int)n);
        free(copy);
        return;
      }
      assert_true((uint64_t)n <= left);
      if (ev.type == SJ_MUX_NEED_MORE)
        assert_int_equal(n, left);
      else
        note_event(t, &ev, copy, copy + piece);
      buf += n;
      left -= (size_t)n;
    }
    free(copy);
  }
}

/* Every way of cutting the input gives the trace of parsing it whole, and
 * that trace is the expected one (data parts merged for comparison). */
static void merge_data(const char *in, char *out) {
  /* "D:1:ab;D:1:cd;L;" and "D:1:abcd;L;" both become "D:1:abcd;L;". */
  size_t o = 0;
  unsigned open_id = 0;
  int open = 0;
  while (*in) {
    unsigned id;
    int n = 0;
    if (sscanf(in, "D:%u:%n", &id, &n) == 1 && n > 0) {
      in += n;
      if (!open || id != open_id) {
        o += (size_t)sprintf(out + o, "D:%u:", id);
        open = 1;
        open_id = id;
      }
      const char *semi = strchr(in, ';');
      memcpy(out + o, in, (size_t)(semi - in));
      o += (size_t)(semi - in);
      in = semi + 1;
      if (strncmp(in, "L;", 2) == 0) {
        o += (size_t)sprintf(out + o, ";L;");
        in += 2;
        open = 0;
      }
      continue;
    }
    out[o++] = *in++;
  }
  out[o] = '\0';
}

static void expect_trace(const void *input, size_t len, const char *want) {
  static trace_t whole, cut;
  static char a[1 << 17], b[1 << 17];
  run(input, len, 0, &whole);
  merge_data(whole.text, a);
  assert_string_equal(a, want);
  for (size_t step = 1; step <= len && step <= 40; step++) {
    run(input, len, step, &cut);
    merge_data(cut.text, b);
    assert_string_equal(b, a);
  }
}

/* ---- building input ----------------------------------------------------- */

typedef struct {
  uint8_t bytes[1 << 18];
  size_t len;
} wire_t;

static void w_raw(wire_t *w, const void *b, size_t n) {
  assert_true(w->len + n <= sizeof w->bytes);
  if (n > 0)
    memcpy(w->bytes + w->len, b, n);
  w->len += n;
}

static void w_data(wire_t *w, uint32_t id, const char *s) {
  w->len += sj_mux_put_header(w->bytes + w->len, SJ_MUX_DATA, id, (uint32_t)strlen(s));
  w_raw(w, s, strlen(s));
}

static void w_hdr(wire_t *w, uint8_t type, uint8_t flags, uint32_t id, uint32_t length) {
  uint8_t h[SJ_MUX_HEADER_LEN] = {type,
                                  flags,
                                  (uint8_t)(id >> 24),
                                  (uint8_t)(id >> 16),
                                  (uint8_t)(id >> 8),
                                  (uint8_t)id,
                                  (uint8_t)(length >> 24),
                                  (uint8_t)(length >> 16),
                                  (uint8_t)(length >> 8),
                                  (uint8_t)length};
  w_raw(w, h, sizeof h);
}

/* ---- tests -------------------------------------------------------------- */

static void test_every_frame_type(void **state) {
  (void)state;
  static wire_t w;
  w.len = 0;
  uint8_t ping[8] = {1, 2, 3, 4, 5, 6, 7, 0xff};
  w.len += sj_mux_put_u32(w.bytes + w.len, SJ_MUX_OPEN, 1, 0xdeadbeef);
  w_data(&w, 1, "hello");
  w.len += sj_mux_put_u32(w.bytes + w.len, SJ_MUX_WINDOW, 2, 65536);
  w.len += sj_mux_put_header(w.bytes + w.len, SJ_MUX_FIN, 1, 0);
  w.len += sj_mux_put_u32(w.bytes + w.len, SJ_MUX_RESET, 4, SJ_MUX_CODE_REFUSED);
  w.len += sj_mux_put_ping(w.bytes + w.len, SJ_MUX_PING, ping);
  w.len += sj_mux_put_ping(w.bytes + w.len, SJ_MUX_PONG, ping);
  w.len += sj_mux_put_u32(w.bytes + w.len, SJ_MUX_GOAWAY, 0, 7);
  expect_trace(w.bytes, w.len,
               "F:1:1:3735928559;D:1:hello;L;F:2:2:65536;F:3:1:0;F:4:4:1;"
               "F:5:0:01020304050607ff;F:6:0:01020304050607ff;F:7:0:7;");
}

static void test_encoders_are_big_endian(void **state) {
  (void)state;
  uint8_t b[SJ_MUX_CONTROL_MAX];
  assert_int_equal(sj_mux_put_u32(b, SJ_MUX_WINDOW, 0x01020304, 0xa0b0c0d0), 14);
  const uint8_t want[14] = {2, 0, 1, 2, 3, 4, 0, 0, 0, 4, 0xa0, 0xb0, 0xc0, 0xd0};
  assert_memory_equal(b, want, sizeof want);
  assert_int_equal(sj_mux_put_header(b, SJ_MUX_DATA, 7, 0x10000), SJ_MUX_HEADER_LEN);
  const uint8_t hdr[10] = {0, 0, 0, 0, 0, 7, 0, 1, 0, 0};
  assert_memory_equal(b, hdr, sizeof hdr);
}

static void test_data_interleaved_and_coalesced(void **state) {
  (void)state;
  static wire_t w;
  w.len = 0;
  w_data(&w, 1, "a");
  w_data(&w, 2, "bc");
  w_data(&w, 1, "def");
  w_data(&w, 0xffffffffu, "g");
  expect_trace(w.bytes, w.len, "D:1:a;L;D:2:bc;L;D:1:def;L;D:4294967295:g;L;");
}

static void test_largest_payload(void **state) {
  (void)state;
  static wire_t w;
  static char big[SJ_MUX_PAYLOAD_MAX + 1];
  memset(big, 'x', SJ_MUX_PAYLOAD_MAX);
  big[SJ_MUX_PAYLOAD_MAX] = '\0';
  w.len = 0;
  w_data(&w, 3, big);
  static trace_t t;
  run(w.bytes, w.len, 0, &t);
  assert_int_equal(t.len, strlen("D:3:;L;") + SJ_MUX_PAYLOAD_MAX);
  run(w.bytes, w.len, 4096, &t); /* 17 parts */
  assert_non_null(strstr(t.text, "L;"));
  assert_null(strstr(t.text, "E:"));

  w.len = 0;
  w_hdr(&w, SJ_MUX_DATA, 0, 3, SJ_MUX_PAYLOAD_MAX + 1);
  expect_trace(w.bytes, w.len, "E:-3;");
}

/* One malformed header after a good frame: the good frame is reported,
 * then the error. */
static void expect_error(uint8_t type, uint8_t flags, uint32_t id, uint32_t length,
                         const void *payload, size_t n, int err) {
  static wire_t w;
  char want[64];
  w.len = 0;
  w_data(&w, 9, "ok");
  w_hdr(&w, type, flags, id, length);
  w_raw(&w, payload, n);
  snprintf(want, sizeof want, "D:9:ok;L;E:%d;", err);
  expect_trace(w.bytes, w.len, want);
}

static void test_malformed_headers(void **state) {
  (void)state;
  const uint8_t zero4[4] = {0}, one4[4] = {0, 0, 0, 1}, eight[8] = {0};
  expect_error(8, 0, 1, 0, NULL, 0, SJ_MUX_ETYPE);
  expect_error(0xff, 0, 1, 0, NULL, 0, SJ_MUX_ETYPE);
  expect_error(SJ_MUX_OPEN, 1, 1, 4, zero4, 4, SJ_MUX_EFLAGS);
  expect_error(SJ_MUX_DATA, 0x80, 1, 1, "x", 1, SJ_MUX_EFLAGS);
  expect_error(SJ_MUX_DATA, 0, 1, 0xffffffffu, NULL, 0, SJ_MUX_EBIG);
  expect_error(SJ_MUX_PING, 0, 0, SJ_MUX_PAYLOAD_MAX + 1, NULL, 0, SJ_MUX_EBIG);
  /* Channel frames need an id; session frames must not have one. */
  expect_error(SJ_MUX_DATA, 0, 0, 1, "x", 1, SJ_MUX_EID_ZERO);
  expect_error(SJ_MUX_OPEN, 0, 0, 4, zero4, 4, SJ_MUX_EID_ZERO);
  expect_error(SJ_MUX_WINDOW, 0, 0, 4, one4, 4, SJ_MUX_EID_ZERO);
  expect_error(SJ_MUX_FIN, 0, 0, 0, NULL, 0, SJ_MUX_EID_ZERO);
  expect_error(SJ_MUX_RESET, 0, 0, 4, zero4, 4, SJ_MUX_EID_ZERO);
  expect_error(SJ_MUX_PING, 0, 1, 8, eight, 8, SJ_MUX_EID_SESSION);
  expect_error(SJ_MUX_PONG, 0, 2, 8, eight, 8, SJ_MUX_EID_SESSION);
  expect_error(SJ_MUX_GOAWAY, 0, 3, 4, zero4, 4, SJ_MUX_EID_SESSION);
  /* Fixed-size frames with the wrong size. */
  expect_error(SJ_MUX_OPEN, 0, 1, 1, "x", 1, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_OPEN, 0, 1, 0, NULL, 0, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_FIN, 0, 1, 4, zero4, 4, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_WINDOW, 0, 1, 3, zero4, 3, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_WINDOW, 0, 1, 8, eight, 8, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_RESET, 0, 1, 0, NULL, 0, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_PING, 0, 0, 4, zero4, 4, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_PONG, 0, 0, 9, "123456789", 9, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_GOAWAY, 0, 0, 0, NULL, 0, SJ_MUX_ELENGTH);
  expect_error(SJ_MUX_DATA, 0, 1, 0, NULL, 0, SJ_MUX_EEMPTY);
  expect_error(SJ_MUX_WINDOW, 0, 1, 4, zero4, 4, SJ_MUX_EWINDOW);
}

static void test_error_is_reported_before_the_payload(void **state) {
  (void)state;
  /* An oversize header is refused as soon as the header is complete: no
   * payload needs to arrive first. */
  uint8_t h[SJ_MUX_HEADER_LEN];
  sj_mux_put_header(h, SJ_MUX_DATA, 1, SJ_MUX_PAYLOAD_MAX + 1);
  sj_mux_parser_t p;
  sj_mux_event_t ev;
  sj_mux_parser_init(&p);
  assert_int_equal(sj_mux_parse(&p, (const char *)h, 9, &ev), 9);
  assert_int_equal(ev.type, SJ_MUX_NEED_MORE);
  assert_int_equal(sj_mux_parse(&p, (const char *)h + 9, 1, &ev), SJ_MUX_EBIG);
}

static void test_error_texts(void **state) {
  (void)state;
  assert_string_equal(sj_mux_strerror(SJ_MUX_ETYPE), "unknown frame type");
  assert_string_equal(sj_mux_strerror(SJ_MUX_EWINDOW), "WINDOW increment of 0");
  assert_string_equal(sj_mux_strerror(-100), "unknown mux frame error");
}

static void test_empty_input(void **state) {
  (void)state;
  sj_mux_parser_t p;
  sj_mux_event_t ev;
  sj_mux_parser_init(&p);
  assert_int_equal(sj_mux_parse(&p, "", 0, &ev), 0);
  assert_int_equal(ev.type, SJ_MUX_NEED_MORE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_frame_type),
      cmocka_unit_test(test_encoders_are_big_endian),
      cmocka_unit_test(test_data_interleaved_and_coalesced),
      cmocka_unit_test(test_largest_payload),
      cmocka_unit_test(test_malformed_headers),
      cmocka_unit_test(test_error_is_reported_before_the_payload),
      cmocka_unit_test(test_error_texts),
      cmocka_unit_test(test_empty_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
