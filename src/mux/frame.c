#include "frame.h"

#include <string.h>

enum { ST_HEADER, ST_FIXED, ST_DATA };

void sj_mux_parser_init(sj_mux_parser_t *p) { memset(p, 0, sizeof *p); }

const char *sj_mux_strerror(int err) {
  switch (err) {
#define SJ_MUX_ERR_CASE(name, code, text)                                                          \
  case code:                                                                                       \
    return text;
    SJ_MUX_ERRORS(SJ_MUX_ERR_CASE)
#undef SJ_MUX_ERR_CASE
  }
  return "unknown mux frame error";
}

static uint32_t get_u32(const uint8_t *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put_u32(uint8_t *b, uint32_t v) {
  b[0] = (uint8_t)(v >> 24);
  b[1] = (uint8_t)(v >> 16);
  b[2] = (uint8_t)(v >> 8);
  b[3] = (uint8_t)v;
}

static int is_session_frame(sj_mux_frame_type_t type) {
  return type == SJ_MUX_PING || type == SJ_MUX_PONG || type == SJ_MUX_GOAWAY;
}

/* The payload length each type must have; -1 for DATA (1..max). */
static int64_t fixed_length(sj_mux_frame_type_t type) {
  switch (type) {
  case SJ_MUX_DATA:
    return -1;
  case SJ_MUX_OPEN:
  case SJ_MUX_WINDOW:
  case SJ_MUX_RESET:
  case SJ_MUX_GOAWAY:
    return 4;
  case SJ_MUX_PING:
  case SJ_MUX_PONG:
    return 8;
  default: /* FIN */
    return 0;
  }
}

/* Checks a whole header; the order of the checks fixes which error a
 * header with several faults gets. */
static int check_header(sj_mux_parser_t *p) {
  const uint8_t *h = p->buf;
  if (h[0] > SJ_MUX_GOAWAY)
    return SJ_MUX_ETYPE;
  if (h[1] != 0)
    return SJ_MUX_EFLAGS;
  p->type = (sj_mux_frame_type_t)h[0];
  p->id = get_u32(h + 2);
  p->length = get_u32(h + 6);
  if (p->length > SJ_MUX_PAYLOAD_MAX)
    return SJ_MUX_EBIG;
  if (is_session_frame(p->type) ? p->id != 0 : p->id == 0)
    return is_session_frame(p->type) ? SJ_MUX_EID_SESSION : SJ_MUX_EID_ZERO;
  int64_t want = fixed_length(p->type);
  if (want < 0)
    return p->length == 0 ? SJ_MUX_EEMPTY : 0;
  return p->length == (uint32_t)want ? 0 : SJ_MUX_ELENGTH;
}

static void frame_event(const sj_mux_parser_t *p, sj_mux_event_t *ev) {
  ev->type = SJ_MUX_FRAME;
  ev->frame = p->type;
  ev->id = p->id;
  ev->length = p->length;
  if (p->length == 4)
    ev->value = get_u32(p->buf);
  else if (p->length == 8)
    memcpy(ev->opaque, p->buf, 8);
}

/* Copies up to want - have bytes into p->buf. */
static size_t gather(sj_mux_parser_t *p, const char *buf, size_t len, size_t want) {
  size_t n = want - p->have < len ? want - p->have : len;
  memcpy(p->buf + p->have, buf, n);
  p->have += n;
  return n;
}

/* A header is complete: decides what follows it. Returns 1 when the frame
 * is already whole (no payload), 0 when a payload follows, or an error. */
static int header_done(sj_mux_parser_t *p) {
  int rc = check_header(p);
  if (rc < 0)
    return rc;
  p->have = 0;
  if (p->type == SJ_MUX_DATA) {
    p->state = ST_DATA;
    p->remaining = p->length;
    return 0;
  }
  p->state = p->length > 0 ? ST_FIXED : ST_HEADER;
  return p->length == 0;
}

/* A fixed payload is complete. */
static int fixed_done(sj_mux_parser_t *p) {
  if (p->type == SJ_MUX_WINDOW && get_u32(p->buf) == 0)
    return SJ_MUX_EWINDOW;
  p->state = ST_HEADER;
  p->have = 0;
  return 1;
}

static void data_event(sj_mux_parser_t *p, const char *buf, size_t len, sj_mux_event_t *ev) {
  size_t take = len < p->remaining ? len : p->remaining;
  ev->type = SJ_MUX_DATA_PART;
  ev->frame = SJ_MUX_DATA;
  ev->id = p->id;
  ev->length = p->length;
  ev->data = buf;
  ev->data_len = take;
  p->remaining -= (uint32_t)take;
  ev->last = p->remaining == 0;
  if (ev->last)
    p->state = ST_HEADER;
}

int64_t sj_mux_parse(sj_mux_parser_t *p, const char *buf, size_t len, sj_mux_event_t *ev) {
  size_t used = 0;
  memset(ev, 0, sizeof *ev);
  while (used < len) {
    if (p->state == ST_DATA) {
      data_event(p, buf + used, len - used, ev);
      return (int64_t)(used + ev->data_len);
    }
    int whole = 0;
    if (p->state == ST_HEADER) {
      used += gather(p, buf + used, len - used, SJ_MUX_HEADER_LEN);
      if (p->have == SJ_MUX_HEADER_LEN && (whole = header_done(p)) < 0)
        return whole;
    } else {
      used += gather(p, buf + used, len - used, p->length);
      if (p->have == p->length && (whole = fixed_done(p)) < 0)
        return whole;
    }
    if (whole) {
      frame_event(p, ev);
      return (int64_t)used;
    }
  }
  return (int64_t)used;
}

size_t sj_mux_put_header(uint8_t *out, sj_mux_frame_type_t type, uint32_t id, uint32_t length) {
  out[0] = (uint8_t)type;
  out[1] = 0;
  put_u32(out + 2, id);
  put_u32(out + 6, length);
  return SJ_MUX_HEADER_LEN;
}

size_t sj_mux_put_u32(uint8_t *out, sj_mux_frame_type_t type, uint32_t id, uint32_t value) {
  sj_mux_put_header(out, type, id, 4);
  put_u32(out + SJ_MUX_HEADER_LEN, value);
  return SJ_MUX_HEADER_LEN + 4;
}

size_t sj_mux_put_ping(uint8_t *out, sj_mux_frame_type_t type, const uint8_t opaque[8]) {
  sj_mux_put_header(out, type, 0, 8);
  memcpy(out + SJ_MUX_HEADER_LEN, opaque, 8);
  return SJ_MUX_HEADER_LEN + 8;
}
