/* The auth line codec of auth=token and auth=hmac (src/core/authline.c):
 * lines split whole, in pieces and coalesced, "\r\n" endings, the length
 * cap; the hex answer against RFC 4231's HMAC-SHA256 vectors; equality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authline.h"

/* Every line of text, as "[line]" pieces, parsed the way the verifier does:
 * each call sees everything not yet consumed. Stops at a need-more or an
 * error, which is appended as "+rest" or "!". */
static void split(const char *text, size_t len, size_t max, char *out, size_t cap) {
  size_t pos = 0, o = 0;
  out[0] = '\0';
  for (;;) {
    size_t line_len = 12345;
    long n = sj_authline_next(text + pos, len - pos, max, &line_len);
    int w;
    if (n == SJ_AUTHLINE_TOO_LONG) {
      w = snprintf(out + o, cap - o, "!");
    } else if (n == 0) {
      w = snprintf(out + o, cap - o, "+%.*s", (int)(len - pos), text + pos);
    } else {
      assert_true(n > 0 && (size_t)n <= len - pos && (size_t)n <= max);
      assert_int_equal(text[pos + (size_t)n - 1], '\n');
      assert_true(line_len + 1 == (size_t)n || line_len + 2 == (size_t)n);
      w = snprintf(out + o, cap - o, "[%.*s]", (int)line_len, text + pos);
      pos += (size_t)n;
    }
    assert_true(w >= 0 && (size_t)w < cap - o);
    o += (size_t)w;
    if (n <= 0)
      return;
  }
}

static void check_split(const char *text, size_t max, const char *want) {
  char got[512];
  split(text, strlen(text), max, got, sizeof got);
  assert_string_equal(got, want);
}

static void test_lines(void **state) {
  (void)state;
  check_split("s3cret\nhello", 4096, "[s3cret]+hello");
  check_split("s3cret\r\nhello", 4096, "[s3cret]+hello");
  check_split("a\nb\r\nc\n", 4096, "[a][b][c]+");
  check_split("", 4096, "+");
  check_split("partial", 4096, "+partial");
  /* A lone "\r" is part of the line until the "\n" comes. */
  check_split("abc\r", 4096, "+abc\r");
  check_split("a\rb\n", 4096, "[a\rb]+");
  /* Only one "\r" before the "\n" belongs to the ending. */
  check_split("x\r\r\n", 4096, "[x\r]+");
}

static void test_empty_lines(void **state) {
  (void)state;
  check_split("\n", 4096, "[]+");
  check_split("\r\n", 4096, "[]+");
  check_split("\n\nrest", 4096, "[][]+rest");
  size_t line_len = 99;
  assert_int_equal(sj_authline_next("\r\n", 2, 4096, &line_len), 2);
  assert_int_equal(line_len, 0);
}

/* The line comes in byte by byte: nothing before its newline, then the
 * same line as when it came whole. */
static void test_line_in_pieces(void **state) {
  (void)state;
  const char *text = "0123456789abcdef\r\ntail";
  size_t end = strlen("0123456789abcdef\r\n");
  for (size_t have = 0; have < end; have++) {
    size_t line_len = 7;
    assert_int_equal(sj_authline_next(text, have, 4096, &line_len), 0);
    assert_int_equal(line_len, 7); /* untouched until a line is complete */
  }
  for (size_t have = end; have <= strlen(text); have++) {
    size_t line_len = 0;
    assert_int_equal(sj_authline_next(text, have, 4096, &line_len), (long)end);
    assert_int_equal(line_len, 16);
  }
}

/* A newline within max bytes is a line; max bytes without one are refused
 * at once (not when more comes), and fewer are waited on. */
static void test_too_long(void **state) {
  (void)state;
  enum { MAX = 64 };
  char buf[3 * MAX];
  memset(buf, 'x', sizeof buf);
  size_t line_len = 0;
  assert_int_equal(sj_authline_next(buf, MAX - 1, MAX, &line_len), 0);
  assert_int_equal(sj_authline_next(buf, MAX, MAX, &line_len), SJ_AUTHLINE_TOO_LONG);
  assert_int_equal(sj_authline_next(buf, sizeof buf, MAX, &line_len), SJ_AUTHLINE_TOO_LONG);
  /* The newline as the max-th byte still ends a line... */
  buf[MAX - 1] = '\n';
  assert_int_equal(sj_authline_next(buf, sizeof buf, MAX, &line_len), MAX);
  assert_int_equal(line_len, MAX - 1);
  /* ... one byte later it is beyond the cap. */
  buf[MAX - 1] = 'x';
  buf[MAX] = '\n';
  assert_int_equal(sj_authline_next(buf, sizeof buf, MAX, &line_len), SJ_AUTHLINE_TOO_LONG);
  /* The real cap: a verifier is shown at most SJ_VERIFY_MAX bytes. */
  char *big = malloc(4096);
  assert_non_null(big);
  memset(big, 'y', 4096);
  assert_int_equal(sj_authline_next(big, 4095, 4096, &line_len), 0);
  assert_int_equal(sj_authline_next(big, 4096, 4096, &line_len), SJ_AUTHLINE_TOO_LONG);
  free(big);
}

static void test_hex(void **state) {
  (void)state;
  const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  char out[2 * sizeof in + 1];
  memset(out, '#', sizeof out);
  sj_auth_hex(in, sizeof in, out);
  assert_string_equal(out, "00017f80abff");
  sj_auth_hex(in, 0, out);
  assert_string_equal(out, "");
}

/* RFC 4231, test cases 1, 2 and 6 (a key longer than the block). */
static void test_answer_rfc4231(void **state) {
  (void)state;
  char out[SJ_AUTH_HEX_LEN + 1];
  unsigned char key1[20];
  memset(key1, 0x0b, sizeof key1);
  assert_int_equal(sj_auth_answer(key1, sizeof key1, "Hi There", 8, out), 0);
  assert_string_equal(out, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

  const char *data2 = "what do ya want for nothing?";
  assert_int_equal(sj_auth_answer("Jefe", 4, data2, strlen(data2), out), 0);
  assert_string_equal(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

  unsigned char key6[131];
  memset(key6, 0xaa, sizeof key6);
  const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  assert_int_equal(sj_auth_answer(key6, sizeof key6, data6, strlen(data6), out), 0);
  assert_string_equal(out, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* The answer covers the challenge line without its newline, and depends
 * on every byte of key and challenge. */
static void test_answer_is_of_the_challenge(void **state) {
  (void)state;
  char challenge[SJ_AUTH_HEX_LEN + 2];
  unsigned char nonce[SJ_AUTH_NONCE_BYTES];
  for (size_t i = 0; i < sizeof nonce; i++)
    nonce[i] = (unsigned char)(i * 37 + 5);
  sj_auth_hex(nonce, sizeof nonce, challenge);
  assert_int_equal(strlen(challenge), SJ_AUTH_HEX_LEN);
  char a[SJ_AUTH_HEX_LEN + 1], b[SJ_AUTH_HEX_LEN + 1];
  assert_int_equal(sj_auth_answer("k", 1, challenge, SJ_AUTH_HEX_LEN, a), 0);
  assert_int_equal(strlen(a), SJ_AUTH_HEX_LEN);
  assert_int_equal(strspn(a, "0123456789abcdef"), SJ_AUTH_HEX_LEN);
  /* Deterministic. */
  assert_int_equal(sj_auth_answer("k", 1, challenge, SJ_AUTH_HEX_LEN, b), 0);
  assert_string_equal(a, b);
  /* Another key, another last byte, the newline included: all differ. */
  assert_int_equal(sj_auth_answer("K", 1, challenge, SJ_AUTH_HEX_LEN, b), 0);
  assert_string_not_equal(a, b);
  challenge[SJ_AUTH_HEX_LEN - 1] ^= 1;
  assert_int_equal(sj_auth_answer("k", 1, challenge, SJ_AUTH_HEX_LEN, b), 0);
  assert_string_not_equal(a, b);
  challenge[SJ_AUTH_HEX_LEN - 1] ^= 1;
  challenge[SJ_AUTH_HEX_LEN] = '\n';
  assert_int_equal(sj_auth_answer("k", 1, challenge, SJ_AUTH_HEX_LEN + 1, b), 0);
  assert_string_not_equal(a, b);
}

static void test_equal(void **state) {
  (void)state;
  assert_true(sj_auth_equal("s3cret", 6, "s3cret", 6));
  assert_true(sj_auth_equal("", 0, "", 0));
  assert_false(sj_auth_equal("s3cret", 6, "s3creT", 6));
  assert_false(sj_auth_equal("s3cret", 6, "S3cret", 6));
  /* A prefix is not the secret, nor the secret with more after it. */
  assert_false(sj_auth_equal("s3cre", 5, "s3cret", 6));
  assert_false(sj_auth_equal("s3cret!", 7, "s3cret", 6));
  assert_false(sj_auth_equal("", 0, "s3cret", 6));
  /* Bytes, not C strings: a NUL does not end the comparison. */
  assert_true(sj_auth_equal("a\0b", 3, "a\0b", 3));
  assert_false(sj_auth_equal("a\0b", 3, "a\0c", 3));
  /* Long inputs (the auth line may be up to 4 KiB). */
  char x[4096], y[4096];
  memset(x, 'q', sizeof x);
  memcpy(y, x, sizeof y);
  assert_true(sj_auth_equal(x, sizeof x, y, sizeof y));
  y[4095] = 'r';
  assert_false(sj_auth_equal(x, sizeof x, y, sizeof y));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_empty_lines),
      cmocka_unit_test(test_line_in_pieces),
      cmocka_unit_test(test_too_long),
      cmocka_unit_test(test_hex),
      cmocka_unit_test(test_answer_rfc4231),
      cmocka_unit_test(test_answer_is_of_the_challenge),
      cmocka_unit_test(test_equal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
