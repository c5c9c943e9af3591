/* The relay protocol codec: frames whole, split at every byte, coalesced,
 * and every malformed frame refused with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Everything a parse produced, as text: "R:name", "M:dest:len", "D:bytes",
 * "L" after the last data span, "E:code" for an error. */
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

/* Feeds input in pieces of at most step bytes (0: all at once). */
static void run(const char *input, size_t len, size_t step, uint64_t max, trace_t *t) {
  sj_relay_parser_t p;
  sj_relay_parser_init(&p, max);
  memset(t, 0, sizeof *t);
  size_t pos = 0;
  while (pos < len) {
    size_t piece = step == 0 || len - pos < step ? len - pos : step;
    const char *buf = input + pos;
    size_t left = piece;
    while (left > 0) {
      sj_relay_event_t ev;
      int64_t n = sj_relay_parse(&p, buf, left, &ev);
      if (n < 0) {
        put(t, "E:%d;", (int)n);
        return;
      }
      assert_true((uint64_t)n <= left);
      switch (ev.type) {
      case SJ_RELAY_REGISTER:
        put(t, "R:%.*s;", (int)ev.name_len, ev.name);
        break;
      case SJ_RELAY_MESSAGE:
        put(t, "M:%.*s:%llu;", (int)ev.name_len, ev.name, (unsigned long long)ev.length);
        break;
      case SJ_RELAY_DATA:
        put(t, "D:%.*s;%s", (int)ev.data_len, ev.data, ev.last ? "L;" : "");
        break;
      case SJ_RELAY_NEED_MORE:
        assert_int_equal(n, left);
        break;
      }
      buf += n;
      left -= (size_t)n;
    }
    pos += piece;
  }
}

/* Merges adjacent data spans, so traces from different splits compare. */
static void merge_data(const trace_t *in, char *out, size_t cap) {
  size_t o = 0;
  const char *s = in->text;
  int in_data = 0;
  while (*s != '\0') {
    const char *end = strchr(s, ';');
    size_t n = (size_t)(end - s);
    if (strncmp(s, "D:", 2) == 0) {
      if (!in_data)
        o += (size_t)snprintf(out + o, cap - o, "D:");
      o += (size_t)snprintf(out + o, cap - o, "%.*s", (int)(n - 2), s + 2);
      in_data = 1;
    } else {
      if (in_data)
        o += (size_t)snprintf(out + o, cap - o, ";");
      o += (size_t)snprintf(out + o, cap - o, "%.*s;", (int)n, s);
      in_data = 0;
    }
    s = end + 1;
  }
  if (in_data)
    snprintf(out + o, cap - o, ";");
}

static void check_every_split(const char *input, uint64_t max, const char *expect) {
  trace_t whole;
  run(input, strlen(input), 0, max, &whole);
  char merged_whole[8192], merged[8192];
  merge_data(&whole, merged_whole, sizeof merged_whole);
  assert_string_equal(merged_whole, expect);
  for (size_t step = 1; step <= strlen(input); step++) {
    trace_t t;
    run(input, strlen(input), step, max, &t);
    merge_data(&t, merged, sizeof merged);
    assert_string_equal(merged, expect);
  }
}

static void test_register_and_messages(void **state) {
  (void)state;
  check_every_split("device_a|device_b|5|hellodevice_c|3|abc",
                    SJ_RELAY_DEFAULT_MAX_MESSAGE,
                    "R:device_a;M:device_b:5;D:hello;L;M:device_c:3;D:abc;L;");
}

static void test_zero_length_and_keepalive(void **state) {
  (void)state;
  /* "SELF|0|" is complete with its header: no data span. */
  check_every_split("me|me|0|you|0|you|2|hi", 100, "R:me;M:me:0;M:you:0;M:you:2;D:hi;L;");
}

static void test_payload_may_hold_bars_and_binary(void **state) {
  (void)state;
  check_every_split("a|b|7|x|y|z|0b|1|!", 100, "R:a;M:b:7;D:x|y|z|0;L;M:b:1;D:!;L;");
}

static void test_leading_zeros_and_limit(void **state) {
  (void)state;
  check_every_split("a|b|0003|xyz", 3, "R:a;M:b:3;D:xyz;L;");
  check_every_split("a|b|4|wxyz", 3, "R:a;E:-7;");   /* over the limit */
  check_every_split("a|b|99999999999999999999999|", 1 << 20, "R:a;E:-7;");
}

static void test_malformed_frames(void **state) {
  (void)state;
  check_every_split("|", 100, "E:-1;");                 /* empty name */
  check_every_split("a||1|x", 100, "R:a;E:-3;");        /* empty destination */
  check_every_split("a|b||x", 100, "R:a;E:-5;");        /* empty length */
  check_every_split("a|b|1x|", 100, "R:a;E:-6;");       /* not digits */
  check_every_split("a|b|-1|x", 100, "R:a;E:-6;");      /* no sign */
  check_every_split("a|b| 1|x", 100, "R:a;E:-6;");      /* no space */
}

static void test_name_length_limits(void **state) {
  (void)state;
  char input[600], expect[600];
  memset(input, 'n', 255);
  snprintf(input + 255, sizeof input - 255, "|");
  snprintf(expect, sizeof expect, "R:%.*s;", 255, input);
  check_every_split(input, 100, expect); /* 255 bytes: the longest name */
  memset(input, 'n', 256);
  snprintf(input + 256, sizeof input - 256, "|");
  check_every_split(input, 100, "E:-2;");
  memset(input, 'd', 256);
  memcpy(input, "me|", 3);
  snprintf(input + 256, sizeof input - 256, "|1|x"); /* 253-byte destination: fine */
  check_every_split(input, 100, "R:me;M:ddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
                                "dddddddddddddddddd:1;D:x;L;");
  memset(input, 'd', 300);
  memcpy(input, "me|", 3);
  snprintf(input + 300, sizeof input - 300, "|1|x");
  check_every_split(input, 100, "R:me;E:-4;");
}

static void test_header_and_errors(void **state) {
  (void)state;
  char buf[64];
  assert_int_equal(sj_relay_header(buf, sizeof buf, "device_a", 8, 5), 11);
  assert_string_equal(buf, "device_a|5|");
  assert_int_equal(sj_relay_header(buf, 5, "device_a", 8, 5), 0); /* too small */
  assert_int_equal(sj_relay_header(buf, 11, "device_a", 8, 5), 0); /* no room for the NUL */
  assert_int_equal(sj_relay_header(buf, 12, "device_a", 8, 5), 11);
  assert_int_equal(sj_relay_header(buf, sizeof buf, "a", 1, 0), 4);
  assert_string_equal(buf, "a|0|");
  assert_int_equal(sj_relay_header(buf, sizeof buf, "b", 1, 1234567890), 13);
  assert_string_equal(buf, "b|1234567890|");
  assert_int_equal(sj_relay_header(buf, sizeof buf, "c", 1, UINT64_MAX), 23);
  assert_string_equal(buf, "c|18446744073709551615|");
  char big[300];
  char name[SJ_RELAY_NAME_MAX + 1];
  memset(name, 'n', sizeof name);
  assert_int_equal(sj_relay_header(big, sizeof big, name, SJ_RELAY_NAME_MAX, 7), 258);
  assert_int_equal(sj_relay_header(big, sizeof big, name, SJ_RELAY_NAME_MAX + 1, 7), 0);
  assert_string_equal(sj_relay_strerror(SJ_RELAY_ELEN_BIG), "length over the message limit");
  assert_string_equal(sj_relay_strerror(-99), "unknown relay protocol error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_and_messages),
      cmocka_unit_test(test_zero_length_and_keepalive),
      cmocka_unit_test(test_payload_may_hold_bars_and_binary),
      cmocka_unit_test(test_leading_zeros_and_limit),
      cmocka_unit_test(test_malformed_frames),
      cmocka_unit_test(test_name_length_limits),
      cmocka_unit_test(test_header_and_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
