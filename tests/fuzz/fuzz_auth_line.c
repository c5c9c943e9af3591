/* libFuzzer target: the auth line codec. The first byte picks the cap and
 * the piece size. Lines found by parsing the input as it grows piece by
 * piece (as the verifier sees it) must be the lines found parsing it whole;
 * every result must keep its contract (a line ends at its first newline,
 * within the cap; need-more only below the cap with no newline; too long
 * only at the cap with no newline); and each line is run through the
 * answer and the comparison, which must agree with memcmp. */
#include "authline.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint64_t hash; /* of the lines' lengths and bytes, in order */
  size_t lines;
  size_t consumed;
  long last; /* the result that stopped the parse */
} outcome_t;

static void check(const char *buf, size_t len, size_t max, long n, size_t line_len) {
  size_t scan = len < max ? len : max;
  const char *nl = memchr(buf, '\n', scan);
  if (n == SJ_AUTHLINE_TOO_LONG) {
    if (nl != NULL || len < max)
      abort();
  } else if (n == 0) {
    if (nl != NULL || len >= max)
      abort();
  } else {
    if (n < 0 || nl == NULL || (size_t)n != (size_t)(nl - buf) + 1)
      abort();
    size_t want = (size_t)n - 1;
    if (want > 0 && buf[want - 1] == '\r')
      want--;
    if (line_len != want)
      abort();
  }
}

static void note_line(outcome_t *o, const char *line, size_t len) {
  o->hash = (o->hash ^ len) * 1099511628211ULL;
  for (size_t i = 0; i < len; i++)
    o->hash = (o->hash ^ (uint8_t)line[i]) * 1099511628211ULL;
  o->lines++;
}

/* Lines of data[0..size), seen `piece` bytes more at a time (0: whole). */
static void parse(const char *data, size_t size, size_t max, size_t piece, outcome_t *o) {
  memset(o, 0, sizeof *o);
  o->hash = 1469598103934665603ULL;
  size_t have = piece == 0 ? size : 0;
  for (;;) {
    size_t line_len = 0;
    const char *buf = data + o->consumed;
    size_t len = have - o->consumed;
    long n = sj_authline_next(buf, len, max, &line_len);
    check(buf, len, max, n, line_len);
    if (n > 0) {
      note_line(o, buf, line_len);
      o->consumed += (size_t)n;
      continue;
    }
    if (n == 0 && have < size) {
      have = size - have < piece ? size : have + piece;
      continue;
    }
    o->last = n;
    return;
  }
}

/* The answer is 64 lower-case hex digits; equality is memcmp's. */
static void check_crypto(const char *data, size_t size) {
  size_t half = size / 2;
  char out[SJ_AUTH_HEX_LEN + 1];
  if (sj_auth_answer(data, half, data + half, size - half, out) != 0 ||
      strlen(out) != SJ_AUTH_HEX_LEN || strspn(out, "0123456789abcdef") != SJ_AUTH_HEX_LEN)
    abort();
  int same = half == size - half && memcmp(data, data + half, half) == 0;
  if (sj_auth_equal(data, half, data + half, size - half) != same ||
      !sj_auth_equal(data, size, data, size))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t max = 1 + (size_t)(data[0] & 0x3f) * 67; /* 1 .. 4222, often 4096-ish */
  size_t piece = 1 + (data[0] >> 6) * 7;
  const char *text = (const char *)data + 1;
  size -= 1;
  outcome_t whole, pieces;
  parse(text, size, max, 0, &whole);
  parse(text, size, max, piece, &pieces);
  if (whole.hash != pieces.hash || whole.lines != pieces.lines ||
      whole.consumed != pieces.consumed || whole.last != pieces.last)
    abort();
  check_crypto(text, size);
  return 0;
}
