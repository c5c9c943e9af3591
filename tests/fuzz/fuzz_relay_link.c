/* libFuzzer target: what a relay tunnel reads, both layers: the relay codec
 * in its mode for deliveries ("SENDER|N|" and the bytes), and the link codec
 * (link.h) inside every message. The first byte picks how the rest is cut
 * into pieces; parsing in pieces must give exactly the events of parsing it
 * whole (data parts may be cut differently, so their bytes are compared as
 * one stream), never consume more than it is given, and never crash. */
#include "link.h"
#include "protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t log[1 << 16]; /* event kinds, names, ids and lengths, as bytes */
  size_t log_len;
  uint64_t data_hash, data_len;
  int error;
} outcome_t;

static void note(outcome_t *o, const void *bytes, size_t n) {
  if (o->log_len + n > sizeof o->log)
    n = sizeof o->log - o->log_len;
  memcpy(o->log + o->log_len, bytes, n);
  o->log_len += n;
}

static void link_part(sj_link_parser_t *lp, const char *data, size_t len, outcome_t *o) {
  while (len > 0) {
    sj_link_event_t ev;
    size_t n = sj_link_parse(lp, data, len, &ev);
    if (n == 0 || n > len)
      abort();
    if (ev.type == SJ_LINK_DATA_EV) {
      if (ev.data != data || ev.len != n || ev.len == 0)
        abort();
      for (size_t i = 0; i < ev.len; i++)
        o->data_hash = (o->data_hash ^ (uint8_t)ev.data[i]) * 1099511628211ULL;
      o->data_len += ev.len;
    } else if (ev.type != SJ_LINK_NEED_MORE) {
      note(o, &ev.type, sizeof ev.type);
      note(o, &ev.from, sizeof ev.from);
      note(o, &ev.to, sizeof ev.to);
      note(o, &ev.role, sizeof ev.role);
    }
    data += n;
    len -= n;
  }
}

static void parse(const uint8_t *data, size_t size, size_t piece, outcome_t *o) {
  sj_relay_parser_t rp;
  sj_link_parser_t lp;
  sj_relay_parser_init_deliveries(&rp, 1000);
  memset(&lp, 0, sizeof lp);
  memset(o, 0, sizeof *o);
  o->data_hash = 1469598103934665603ULL;
  for (size_t pos = 0; pos < size && o->error == 0;) {
    size_t left = piece == 0 || size - pos < piece ? size - pos : piece;
    const char *buf = (const char *)data + pos;
    pos += left;
    while (left > 0) {
      sj_relay_event_t ev;
      int64_t n = sj_relay_parse(&rp, buf, left, &ev);
      if (n < 0) {
        o->error = (int)n;
        break;
      }
      if ((uint64_t)n > left || (ev.type == SJ_RELAY_NEED_MORE && (size_t)n != left) ||
          ev.type == SJ_RELAY_REGISTER)
        abort();
      if (ev.type == SJ_RELAY_MESSAGE) {
        note(o, ev.name, ev.name_len);
        note(o, &ev.length, sizeof ev.length);
        sj_link_event_type_t t = sj_link_begin(&lp, ev.length);
        note(o, &t, sizeof t);
      } else if (ev.type == SJ_RELAY_DATA) {
        link_part(&lp, ev.data, ev.data_len, o);
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
  size_t piece = 1 + data[0] % 29;
  parse(data + 1, size - 1, 0, &whole);
  parse(data + 1, size - 1, piece, &pieces);
  if (whole.error != pieces.error || whole.log_len != pieces.log_len ||
      memcmp(whole.log, pieces.log, whole.log_len) != 0 || whole.data_len != pieces.data_len ||
      whole.data_hash != pieces.data_hash)
    abort();
  return 0;
}
