#include "protocol.h"

#include <string.h>

enum { ST_NAME, ST_DEST, ST_LEN, ST_BODY };

void sj_relay_parser_init(sj_relay_parser_t *p, uint64_t max_message) {
  memset(p, 0, sizeof *p);
  p->state = ST_NAME;
  p->max_message = max_message;
}

void sj_relay_parser_init_deliveries(sj_relay_parser_t *p, uint64_t max_message) {
  sj_relay_parser_init(p, max_message);
  p->state = ST_DEST;
}

const char *sj_relay_strerror(int err) {
  switch (err) {
#define SJ_RELAY_ERR_CASE(name, code, text) \
  case code:                                \
    return text;
    SJ_RELAY_ERRORS(SJ_RELAY_ERR_CASE)
#undef SJ_RELAY_ERR_CASE
  }
  return "unknown relay protocol error";
}

/* Reads a name or destination up to '|'. Returns the bytes used and sets
 * *done once the '|' was read, or a negative error. */
static int64_t read_name(sj_relay_parser_t *p, const char *buf, size_t len, int *done,
                         int empty_err, int long_err) {
  const char *bar = memchr(buf, '|', len);
  size_t n = bar != NULL ? (size_t)(bar - buf) : len;
  if (p->name_len + n > SJ_RELAY_NAME_MAX)
    return long_err;
  memcpy(p->name + p->name_len, buf, n);
  p->name_len += n;
  *done = bar != NULL;
  if (*done && p->name_len == 0)
    return empty_err;
  return (int64_t)(n + (size_t)*done);
}

/* Reads the decimal length up to '|'. */
static int64_t read_length(sj_relay_parser_t *p, const char *buf, size_t len, int *done) {
  size_t i = 0;
  for (; i < len && buf[i] != '|'; i++) {
    if (buf[i] < '0' || buf[i] > '9')
      return SJ_RELAY_ELEN_DIGIT;
    p->length = p->length * 10 + (uint64_t)(buf[i] - '0');
    p->digits++;
    if (p->length > p->max_message)
      return SJ_RELAY_ELEN_BIG;
  }
  *done = i < len;
  if (*done && p->digits == 0)
    return SJ_RELAY_ELEN_EMPTY;
  return (int64_t)(i + (size_t)*done);
}

static void set_event(sj_relay_event_t *ev, sj_relay_event_type_t type,
                      const sj_relay_parser_t *p) {
  memset(ev, 0, sizeof *ev);
  ev->type = type;
  ev->name = p->name;
  ev->name_len = p->name_len;
  ev->length = p->length;
}

/* The next frame is a message: its destination comes first. */
static void expect_message(sj_relay_parser_t *p) {
  p->state = ST_DEST;
  p->name_len = 0;
}

int64_t sj_relay_parse(sj_relay_parser_t *p, const char *buf, size_t len, sj_relay_event_t *ev) {
  size_t used = 0;
  set_event(ev, SJ_RELAY_NEED_MORE, p);
  while (used < len) {
    int done = 0;
    int64_t n;
    switch (p->state) {
    case ST_NAME:
      n = read_name(p, buf + used, len - used, &done, SJ_RELAY_ENAME_EMPTY, SJ_RELAY_ENAME_LONG);
      if (n < 0)
        return n;
      used += (size_t)n;
      if (done) {
        set_event(ev, SJ_RELAY_REGISTER, p);
        p->state = ST_DEST; /* the name stays in place for the event */
        p->name_len = 0;
        return (int64_t)used;
      }
      break;
    case ST_DEST:
      n = read_name(p, buf + used, len - used, &done, SJ_RELAY_EDEST_EMPTY, SJ_RELAY_EDEST_LONG);
      if (n < 0)
        return n;
      used += (size_t)n;
      if (done) {
        p->state = ST_LEN;
        p->length = 0;
        p->digits = 0;
      }
      break;
    case ST_LEN:
      n = read_length(p, buf + used, len - used, &done);
      if (n < 0)
        return n;
      used += (size_t)n;
      if (done) {
        set_event(ev, SJ_RELAY_MESSAGE, p);
        p->remaining = p->length;
        if (p->length > 0)
          p->state = ST_BODY;
        else
          expect_message(p);
        return (int64_t)used;
      }
      break;
    default: { /* ST_BODY */
      size_t take = len - used < p->remaining ? len - used : (size_t)p->remaining;
      set_event(ev, SJ_RELAY_DATA, p);
      ev->data = buf + used;
      ev->data_len = take;
      p->remaining -= take;
      ev->last = p->remaining == 0;
      if (ev->last)
        expect_message(p);
      return (int64_t)(used + take);
    }
    }
  }
  return (int64_t)used;
}

/* Formatted by hand: the relay writes one header per delivered message,
 * and snprintf was the largest cost of small messages in user space. */
size_t sj_relay_header(char *buf, size_t cap, const char *name, size_t name_len, uint64_t length) {
  char digits[20]; /* UINT64_MAX has 20 */
  size_t nd = 0;
  do {
    digits[nd++] = (char)('0' + length % 10);
    length /= 10;
  } while (length > 0);
  size_t n = name_len + nd + 2;
  if (name_len > SJ_RELAY_NAME_MAX || n >= cap)
    return 0;
  memcpy(buf, name, name_len);
  buf[name_len] = '|';
  for (size_t i = 0; i < nd; i++)
    buf[name_len + 1 + i] = digits[nd - 1 - i];
  buf[n - 1] = '|';
  buf[n] = '\0';
  return n;
}
