/* libFuzzer target: the encrypt= frame codec. The first byte picks how the
 * rest is cut into pieces; parsing in pieces must give exactly the events
 * of parsing it whole (the same frames, byte for byte), consume exactly
 * the input, keep every frame within its bounds, and never crash. */
#include "seal_frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t log[1 << 16]; /* event kinds and lengths, as bytes */
  size_t log_len;
  uint64_t hash; /* of every frame's bytes, in order */
  int error;
} outcome_t;

static void note(outcome_t *o, const void *bytes, size_t n) {
  if (o->log_len + n > sizeof o->log)
    n = sizeof o->log - o->log_len;
  memcpy(o->log + o->log_len, bytes, n);
  o->log_len += n;
}

static void check(const sj_seal_event_t *ev) {
  size_t min = ev->type == SJ_SEAL_HELLO    ? SJ_SEAL_NONCE_BYTES
               : ev->type == SJ_SEAL_HEADER ? SJ_SEAL_HEADER_BYTES
                                            : SJ_SEAL_TAG_BYTES;
  size_t max = ev->type == SJ_SEAL_MESSAGE ? SJ_SEAL_MAX_FRAME : min;
  if (ev->data == NULL || ev->len < min || ev->len > max)
    abort();
}

static void parse(const uint8_t *data, size_t size, size_t piece, outcome_t *o) {
  static sj_seal_parser_t p;
  sj_seal_parser_init(&p);
  memset(o, 0, sizeof *o);
  o->hash = 1469598103934665603ULL;
  for (size_t pos = 0; pos < size && o->error == 0;) {
    size_t left = piece == 0 || size - pos < piece ? size - pos : piece;
    const uint8_t *buf = data + pos;
    pos += left;
    while (left > 0) {
      sj_seal_event_t ev;
      int64_t n = sj_seal_parse(&p, buf, left, &ev);
      if (n < 0) {
        o->error = (int)n;
        break;
      }
      if (n == 0 || (uint64_t)n > left || (ev.type == SJ_SEAL_NEED_MORE && (size_t)n != left))
        abort();
      if (ev.type != SJ_SEAL_NEED_MORE) {
        check(&ev);
        note(o, &ev.type, sizeof ev.type);
        note(o, &ev.len, sizeof ev.len);
        for (size_t i = 0; i < ev.len; i++)
          o->hash = (o->hash ^ ev.data[i]) * 1099511628211ULL;
      }
      buf += n;
      left -= (size_t)n;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static outcome_t whole, pieces;
  if (size == 0)
    return 0;
  size_t piece = 1 + data[0] % 23;
  parse(data + 1, size - 1, 0, &whole);
  parse(data + 1, size - 1, piece, &pieces);
  if (whole.error != pieces.error || whole.log_len != pieces.log_len ||
      memcmp(whole.log, pieces.log, whole.log_len) != 0 || whole.hash != pieces.hash)
    abort();
  return 0;
}
