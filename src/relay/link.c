#include "link.h"

#include <string.h>

static uint64_t get_u64(const uint8_t *b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | b[i];
  return v;
}

static void put_u64(uint8_t *b, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    b[i] = (uint8_t)v;
}

sj_link_event_type_t sj_link_begin(sj_link_parser_t *p, uint64_t length) {
  memset(p, 0, sizeof *p);
  p->left = length;
  p->skip = length < SJ_LINK_HEADER;
  return p->skip ? SJ_LINK_BAD : SJ_LINK_NEED_MORE;
}

/* The header is complete: is it one this parser knows? */
static sj_link_event_type_t header_done(sj_link_parser_t *p, sj_link_event_t *ev) {
  ev->from = get_u64(p->hdr + 1);
  ev->to = get_u64(p->hdr + 9);
  if (p->hdr[0] == SJ_LINK_HELLO && p->left == 1)
    return SJ_LINK_NEED_MORE; /* its role byte follows */
  if (p->hdr[0] == SJ_LINK_DATA && p->left > 0)
    return SJ_LINK_NEED_MORE;
  p->skip = 1;
  return SJ_LINK_BAD;
}

size_t sj_link_parse(sj_link_parser_t *p, const char *buf, size_t len, sj_link_event_t *ev) {
  memset(ev, 0, sizeof *ev);
  if (len > p->left)
    len = (size_t)p->left; /* a caller's slip is not an overrun */
  if (p->skip) {
    p->left -= len;
    return len;
  }
  if (p->have < SJ_LINK_HEADER) {
    size_t n = SJ_LINK_HEADER - p->have < len ? SJ_LINK_HEADER - p->have : len;
    memcpy(p->hdr + p->have, buf, n);
    p->have += n;
    p->left -= n;
    if (p->have == SJ_LINK_HEADER)
      ev->type = header_done(p, ev);
    return n;
  }
  if (len == 0)
    return 0;
  if (p->hdr[0] == SJ_LINK_HELLO) {
    ev->type = SJ_LINK_HELLO_EV;
    ev->from = get_u64(p->hdr + 1);
    ev->to = get_u64(p->hdr + 9);
    ev->role = (uint8_t)buf[0];
    p->left -= 1;
    return 1;
  }
  ev->type = SJ_LINK_DATA_EV;
  ev->from = get_u64(p->hdr + 1);
  ev->to = get_u64(p->hdr + 9);
  ev->data = buf;
  ev->len = len;
  p->left -= len;
  return len;
}

size_t sj_link_put(uint8_t *out, uint8_t kind, uint64_t from, uint64_t to) {
  out[0] = kind;
  put_u64(out + 1, from);
  put_u64(out + 9, to);
  return SJ_LINK_HEADER;
}

size_t sj_link_put_hello(uint8_t *out, uint64_t from, uint64_t to, uint8_t role) {
  sj_link_put(out, SJ_LINK_HELLO, from, to);
  out[SJ_LINK_HEADER] = role;
  return SJ_LINK_HELLO_LEN;
}
