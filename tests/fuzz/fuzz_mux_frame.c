/* libFuzzer target: the mux frame codec. The first byte picks how the rest
 * is cut into pieces; parsing in pieces must give exactly the events of
 * parsing it whole (data parts may be cut differently, so payload bytes are
 * compared as one stream per channel order), consume exactly the input, and
 * never crash. Parsed whole, every frame must re-encode to the very bytes
 * it was parsed from. */
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t log[1 << 16]; /* frame kinds, ids and values, as bytes */
  size_t log_len;
  uint64_t payload_hash;
  uint64_t payload_len;
  int error;
} outcome_t;

static void note(outcome_t *o, const void *bytes, size_t n) {
  if (o->log_len + n > sizeof o->log)
    n = sizeof o->log - o->log_len;
  memcpy(o->log + o->log_len, bytes, n);
  o->log_len += n;
}

/* A whole frame, re-encoded, must equal its input bytes. */
static void check_reencode(const sj_mux_event_t *ev, const uint8_t *start, size_t n) {
  uint8_t b[SJ_MUX_CONTROL_MAX];
  size_t len;
  if (ev->frame == SJ_MUX_PING || ev->frame == SJ_MUX_PONG)
    len = sj_mux_put_ping(b, ev->frame, ev->opaque);
  else if (ev->length == 4)
    len = sj_mux_put_u32(b, ev->frame, ev->id, ev->value);
  else
    len = sj_mux_put_header(b, ev->frame, ev->id, 0);
  if (len != n || memcmp(b, start, n) != 0)
    abort();
}

static void record(outcome_t *o, const sj_mux_event_t *ev) {
  if (ev->type == SJ_MUX_FRAME) {
    if (ev->frame == SJ_MUX_DATA || (ev->id == 0) != (ev->frame >= SJ_MUX_PING))
      abort();
    note(o, &ev->frame, sizeof ev->frame);
    note(o, &ev->id, sizeof ev->id);
    note(o, &ev->value, sizeof ev->value);
    note(o, ev->opaque, sizeof ev->opaque);
    return;
  }
  if (ev->data_len == 0 || ev->id == 0 || ev->length > SJ_MUX_PAYLOAD_MAX)
    abort();
  for (size_t i = 0; i < ev->data_len; i++)
    o->payload_hash = (o->payload_hash ^ (uint8_t)ev->data[i]) * 1099511628211ULL;
  o->payload_len += ev->data_len;
  if (ev->last) {
    note(o, "L", 1);
    note(o, &ev->id, sizeof ev->id);
  }
}

static void parse(const uint8_t *data, size_t size, size_t piece, outcome_t *o) {
  sj_mux_parser_t p;
  sj_mux_parser_init(&p);
  memset(o, 0, sizeof *o);
  o->payload_hash = 1469598103934665603ULL;
  size_t frame_start = 0;
  for (size_t pos = 0; pos < size && o->error == 0;) {
    size_t left = piece == 0 || size - pos < piece ? size - pos : piece;
    const char *buf = (const char *)data + pos;
    pos += left;
    while (left > 0) {
      sj_mux_event_t ev;
      int64_t n = sj_mux_parse(&p, buf, left, &ev);
      if (n < 0) {
        o->error = (int)n;
        break;
      }
      if ((uint64_t)n > left || (ev.type == SJ_MUX_NEED_MORE && (size_t)n != left))
        abort();
      size_t end = (size_t)((const uint8_t *)buf + n - data);
      if (ev.type == SJ_MUX_FRAME && piece == 0)
        check_reencode(&ev, data + frame_start, end - frame_start);
      if (ev.type != SJ_MUX_NEED_MORE)
        record(o, &ev);
      if (ev.type == SJ_MUX_FRAME || (ev.type == SJ_MUX_DATA_PART && ev.last))
        frame_start = end;
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
      memcmp(whole.log, pieces.log, whole.log_len) != 0 ||
      whole.payload_len != pieces.payload_len || whole.payload_hash != pieces.payload_hash)
    abort();
  return 0;
}
