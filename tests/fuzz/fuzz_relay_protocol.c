/* libFuzzer target: the relay protocol codec. The first byte picks how the
 * rest is cut into pieces; parsing in pieces must give exactly the events of
 * parsing it whole (payload spans may be cut differently, so payload bytes
 * are compared as one stream), consume exactly the input, and never crash.
 * Every message header, as the relay would deliver it, must parse back. */
#include "protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t log[1 << 16]; /* event kinds, names and lengths, as bytes */
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

/* The header the relay delivers for a message parses back to the same
 * name and length (after a registration, as a message frame would). */
static void check_header(const sj_relay_event_t *ev) {
  char h[SJ_RELAY_NAME_MAX + 24];
  size_t n = sj_relay_header(h, sizeof h, ev->name, ev->name_len, ev->length);
  sj_relay_parser_t p;
  sj_relay_event_t e;
  sj_relay_parser_init(&p, 1000);
  if (n == 0 || sj_relay_parse(&p, "x|", 2, &e) != 2 || e.type != SJ_RELAY_REGISTER)
    abort();
  if (sj_relay_parse(&p, h, n, &e) != (int64_t)n || e.type != SJ_RELAY_MESSAGE ||
      e.name_len != ev->name_len || memcmp(e.name, ev->name, ev->name_len) != 0 ||
      e.length != ev->length)
    abort();
}

static void parse(const uint8_t *data, size_t size, size_t piece, outcome_t *o) {
  sj_relay_parser_t p;
  sj_relay_parser_init(&p, 1000);
  memset(o, 0, sizeof *o);
  o->payload_hash = 1469598103934665603ULL;
  for (size_t pos = 0; pos < size && o->error == 0;) {
    size_t left = piece == 0 || size - pos < piece ? size - pos : piece;
    const char *buf = (const char *)data + pos;
    pos += left;
    while (left > 0) {
      sj_relay_event_t ev;
      int64_t n = sj_relay_parse(&p, buf, left, &ev);
      if (n < 0) {
        o->error = (int)n;
        break;
      }
      if ((uint64_t)n > left || (ev.type == SJ_RELAY_NEED_MORE && (size_t)n != left))
        abort();
      if (ev.type == SJ_RELAY_REGISTER || ev.type == SJ_RELAY_MESSAGE) {
        if (ev.name_len == 0 || ev.name_len > SJ_RELAY_NAME_MAX)
          abort();
        note(o, &ev.type, sizeof ev.type);
        note(o, ev.name, ev.name_len);
        note(o, &ev.length, sizeof ev.length);
        if (ev.type == SJ_RELAY_MESSAGE)
          check_header(&ev);
      } else if (ev.type == SJ_RELAY_DATA) {
        for (size_t i = 0; i < ev.data_len; i++)
          o->payload_hash = (o->payload_hash ^ (uint8_t)ev.data[i]) * 1099511628211ULL;
        o->payload_len += ev.data_len;
        if (ev.last)
          note(o, "L", 1);
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
  size_t piece = 1 + data[0] % 17;
  parse(data + 1, size - 1, 0, &whole);
  parse(data + 1, size - 1, piece, &pieces);
  if (whole.error != pieces.error || whole.log_len != pieces.log_len ||
      memcmp(whole.log, pieces.log, whole.log_len) != 0 ||
      whole.payload_len != pieces.payload_len || whole.payload_hash != pieces.payload_hash)
    abort();
  return 0;
}
