/* The tunnel's side of the relay protocol: the parser mode for what a relay
 * delivers, and the link codec inside the payloads (link.h), alone and
 * together, whole and split at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "protocol.h"

typedef struct {
  char text[8192];
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

/* Both layers: relay deliveries, and the link inside each message.
 * Trace: "M:sender:len" per message, "H:from:to" per HELLO, "D:from:to:bytes"
 * per data part, "B" for a message that is not a link message, "E:code" for
 * a relay error. Data parts of one message are merged (cut points differ). */
typedef struct {
  sj_relay_parser_t rp;
  sj_link_parser_t lp;
  trace_t t;
  int in_data; /* the last thing traced was a data part */
} both_t;

static void link_part(both_t *b, const char *data, size_t len) {
  while (len > 0) {
    sj_link_event_t ev;
    size_t n = sj_link_parse(&b->lp, data, len, &ev);
    assert_true(n > 0 && n <= len);
    data += n;
    len -= n;
    if (ev.type == SJ_LINK_HELLO_EV)
      put(&b->t, "H:%llx:%llx:%c;", (unsigned long long)ev.from, (unsigned long long)ev.to,
          ev.role);
    else if (ev.type == SJ_LINK_BAD)
      put(&b->t, "B;");
    if (ev.type == SJ_LINK_DATA_EV) {
      assert_true(ev.data >= data - n && ev.data + ev.len <= data);
      if (!b->in_data)
        put(&b->t, "D:%llx:%llx:", (unsigned long long)ev.from, (unsigned long long)ev.to);
      put(&b->t, "%.*s", (int)ev.len, ev.data);
      b->in_data = 1;
    } else if (ev.type != SJ_LINK_NEED_MORE) {
      b->in_data = 0;
    }
  }
}

static void run_both(const char *input, size_t len, size_t step, trace_t *out) {
  static both_t b;
  memset(&b, 0, sizeof b);
  sj_relay_parser_init_deliveries(&b.rp, 1000);
  for (size_t pos = 0; pos < len;) {
    size_t piece = step == 0 || len - pos < step ? len - pos : step;
    const char *buf = input + pos;
    pos += piece;
    while (piece > 0) {
      sj_relay_event_t ev;
      int64_t n = sj_relay_parse(&b.rp, buf, piece, &ev);
      if (n < 0) {
        put(&b.t, "E:%d;", (int)n);
        *out = b.t;
        return;
      }
      buf += n;
      piece -= (size_t)n;
      if (ev.type == SJ_RELAY_MESSAGE) {
        if (b.in_data)
          put(&b.t, ";");
        b.in_data = 0;
        put(&b.t, "M:%.*s:%llu;", (int)ev.name_len, ev.name, (unsigned long long)ev.length);
        if (sj_link_begin(&b.lp, ev.length) == SJ_LINK_BAD)
          put(&b.t, "B;");
      } else if (ev.type == SJ_RELAY_DATA) {
        link_part(&b, ev.data, ev.data_len);
      }
      assert_true(ev.type != SJ_RELAY_REGISTER);
    }
  }
  if (b.in_data)
    put(&b.t, ";");
  *out = b.t;
}

static void expect_both(const char *input, size_t len, const char *want) {
  static trace_t whole, cut;
  run_both(input, len, 0, &whole);
  assert_string_equal(whole.text, want);
  for (size_t step = 1; step <= len; step++) {
    run_both(input, len, step, &cut);
    assert_string_equal(cut.text, whole.text);
  }
}

/* ---- building input ---------------------------------------------------- */

typedef struct {
  char bytes[4096];
  size_t len;
} wire_t;

static void w_text(wire_t *w, const char *s) {
  memcpy(w->bytes + w->len, s, strlen(s));
  w->len += strlen(s);
}

/* A delivery from sender of a link message. */
static void w_link(wire_t *w, const char *sender, uint8_t kind, uint64_t from, uint64_t to,
                   const char *data) {
  size_t n = strlen(data);
  w->len += (size_t)sprintf(w->bytes + w->len, "%s|%zu|", sender, SJ_LINK_HEADER + n);
  w->len += sj_link_put((uint8_t *)w->bytes + w->len, kind, from, to);
  memcpy(w->bytes + w->len, data, n);
  w->len += n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_deliveries_have_no_registration(void **state) {
  (void)state;
  static wire_t w;
  w.len = 0;
  w_text(&w, "lap|0|srv|3|abcx|1|y");
  expect_both(w.bytes, w.len, "M:lap:0;B;M:srv:3;B;M:x:1;B;");
}

static void test_deliveries_errors(void **state) {
  (void)state;
  expect_both("|3|abc", 6, "E:-3;");
  expect_both("a|1x|", 5, "E:-6;");
  expect_both("a||", 3, "E:-5;");
  expect_both("a|1001|", 7, "E:-7;");
}

static void test_hello_and_data(void **state) {
  (void)state;
  static wire_t w;
  w.len = 0;
  w_link(&w, "srv", SJ_LINK_HELLO, 0x0102030405060708ULL, 0, "L");
  w_link(&w, "srv", SJ_LINK_DATA, 0x0102030405060708ULL, 0xffffffffffffffffULL, "mux bytes");
  w_link(&w, "other", SJ_LINK_DATA, 7, 8, "xyz");
  expect_both(w.bytes, w.len,
              "M:srv:18;H:102030405060708:0:L;M:srv:26;D:102030405060708:ffffffffffffffff:mux "
              "bytes;M:other:20;D:7:8:xyz;");
}

static void test_not_link_messages_are_skipped(void **state) {
  (void)state;
  static wire_t w;
  w.len = 0;
  w_text(&w, "srv|16|0123456789abcdef");   /* too short for a header */
  w_link(&w, "srv", 'X', 1, 2, "payload"); /* unknown kind */
  w_link(&w, "srv", SJ_LINK_HELLO, 1, 2, "extra");
  w_link(&w, "srv", SJ_LINK_DATA, 1, 2, "");  /* data without bytes */
  w_link(&w, "srv", SJ_LINK_HELLO, 1, 2, ""); /* no role */
  w_link(&w, "srv", SJ_LINK_HELLO, 3, 4, "C");
  expect_both(w.bytes, w.len,
              "M:srv:16;B;M:srv:24;B;M:srv:22;B;M:srv:17;B;M:srv:17;B;M:srv:18;H:3:4:C;");
}

static void test_link_header_bytes(void **state) {
  (void)state;
  uint8_t b[SJ_LINK_HELLO_LEN];
  assert_int_equal(sj_link_put_hello(b, 1, 2, 'L'), SJ_LINK_HELLO_LEN);
  assert_int_equal(b[0], 'H');
  assert_int_equal(b[SJ_LINK_HEADER], 'L');
  assert_int_equal(sj_link_put(b, SJ_LINK_DATA, 0x1122334455667788ULL, 0x99), SJ_LINK_HEADER);
  const uint8_t want[SJ_LINK_HEADER] = {'D', 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                        0,   0,    0,    0,    0,    0,    0,    0x99};
  assert_memory_equal(b, want, sizeof want);
}

static void test_link_never_reads_past_the_message(void **state) {
  (void)state;
  sj_link_parser_t p;
  sj_link_event_t ev;
  assert_int_equal(sj_link_begin(&p, SJ_LINK_HEADER + 2), SJ_LINK_NEED_MORE);
  char buf[64] = {0};
  sj_link_put((uint8_t *)buf, SJ_LINK_DATA, 1, 2);
  memcpy(buf + SJ_LINK_HEADER, "abNEXT", 6);
  size_t n = sj_link_parse(&p, buf, sizeof buf, &ev);
  assert_int_equal(n, SJ_LINK_HEADER);
  n = sj_link_parse(&p, buf + SJ_LINK_HEADER, sizeof buf - SJ_LINK_HEADER, &ev);
  assert_int_equal(n, 2); /* the rest belongs to the next message */
  assert_int_equal(ev.type, SJ_LINK_DATA_EV);
  assert_int_equal(ev.len, 2);
  assert_int_equal(sj_link_parse(&p, "x", 1, &ev), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deliveries_have_no_registration),
      cmocka_unit_test(test_deliveries_errors),
      cmocka_unit_test(test_hello_and_data),
      cmocka_unit_test(test_not_link_messages_are_skipped),
      cmocka_unit_test(test_link_header_bytes),
      cmocka_unit_test(test_link_never_reads_past_the_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
