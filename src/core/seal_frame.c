#include "seal_frame.h"

#include <string.h>

enum { ST_HELLO, ST_HEADER, ST_LEN, ST_BODY };

/* "SJSEAL", its NUL, and the version. */
static const unsigned char magic[SJ_SEAL_MAGIC_LEN + 1] = {'S', 'J', 'S', 'E',
                                                           'A', 'L', 0,   SJ_SEAL_VERSION};

static void expect(sj_seal_parser_t *p, int state, size_t need) {
  p->state = state;
  p->need = need;
  p->have = 0;
}

void sj_seal_parser_init(sj_seal_parser_t *p) { expect(p, ST_HELLO, SJ_SEAL_HELLO_BYTES); }

const char *sj_seal_strerror(int err) {
  switch (err) {
#define SJ_SEAL_ERR_CASE(name, code, text)                                                         \
  case code:                                                                                       \
    return text;
    SJ_SEAL_ERRORS(SJ_SEAL_ERR_CASE)
#undef SJ_SEAL_ERR_CASE
  }
  return "unknown encrypt= framing error";
}

void sj_seal_hello(unsigned char *out, const unsigned char *nonce) {
  memcpy(out, magic, sizeof magic);
  memcpy(out + sizeof magic, nonce, SJ_SEAL_NONCE_BYTES);
}

void sj_seal_prefix(unsigned char *out, size_t len) {
  out[0] = (unsigned char)(len >> 8);
  out[1] = (unsigned char)len;
}

/* Gathers the current part. Returns the bytes taken and sets *whole to the
 * complete part (in the input when it is all there, else in buf), or NULL
 * while it is still incomplete. */
static size_t gather(sj_seal_parser_t *p, const unsigned char *in, size_t len,
                     const unsigned char **whole) {
  *whole = NULL;
  if (p->have == 0 && len >= p->need) {
    *whole = in;
    return p->need;
  }
  size_t n = p->need - p->have < len ? p->need - p->have : len;
  memcpy(p->buf + p->have, in, n);
  p->have += n;
  if (p->have == p->need)
    *whole = p->buf;
  return n;
}

/* The magic and version are checked on the bytes of the hello gathered so
 * far, so a stranger is refused as soon as it differs. */
static int check_hello(const unsigned char *hello, size_t n) {
  size_t m = n < SJ_SEAL_MAGIC_LEN ? n : SJ_SEAL_MAGIC_LEN;
  if (memcmp(hello, magic, m) != 0)
    return SJ_SEAL_EMAGIC;
  if (n > SJ_SEAL_MAGIC_LEN && hello[SJ_SEAL_MAGIC_LEN] != SJ_SEAL_VERSION)
    return SJ_SEAL_EVERSION;
  return 0;
}

static int64_t parse_hello(sj_seal_parser_t *p, const unsigned char *in, size_t len,
                           sj_seal_event_t *ev) {
  size_t before = p->have;
  const unsigned char *whole;
  size_t n = gather(p, in, len, &whole);
  int rc =
      whole != NULL ? check_hello(whole, SJ_SEAL_HELLO_BYTES) : check_hello(p->buf, before + n);
  if (rc != 0)
    return rc;
  if (whole != NULL) {
    ev->type = SJ_SEAL_HELLO;
    ev->data = whole + SJ_SEAL_MAGIC_LEN + 1;
    ev->len = SJ_SEAL_NONCE_BYTES;
    expect(p, ST_HEADER, SJ_SEAL_HEADER_BYTES);
  }
  return (int64_t)n;
}

/* A length prefix: checked, then the body is expected. */
static int64_t parse_len(sj_seal_parser_t *p, const unsigned char *in, size_t len) {
  const unsigned char *whole;
  size_t n = gather(p, in, len, &whole);
  if (whole == NULL)
    return (int64_t)n;
  size_t body = ((size_t)whole[0] << 8) | whole[1];
  if (body < SJ_SEAL_TAG_BYTES)
    return SJ_SEAL_ESHORT;
  if (body > SJ_SEAL_MAX_FRAME)
    return SJ_SEAL_ELONG;
  expect(p, ST_BODY, body);
  return (int64_t)n;
}

/* The header, or a message body: reported whole. */
static int64_t parse_part(sj_seal_parser_t *p, const unsigned char *in, size_t len,
                          sj_seal_event_t *ev) {
  const unsigned char *whole;
  size_t n = gather(p, in, len, &whole);
  if (whole != NULL) {
    ev->type = p->state == ST_HEADER ? SJ_SEAL_HEADER : SJ_SEAL_MESSAGE;
    ev->data = whole;
    ev->len = p->need;
    expect(p, ST_LEN, SJ_SEAL_LEN_BYTES);
  }
  return (int64_t)n;
}

int64_t sj_seal_parse(sj_seal_parser_t *p, const unsigned char *in, size_t len,
                      sj_seal_event_t *ev) {
  size_t used = 0;
  ev->type = SJ_SEAL_NEED_MORE;
  ev->data = NULL;
  ev->len = 0;
  while (used < len && ev->type == SJ_SEAL_NEED_MORE) {
    int64_t n;
    if (p->state == ST_HELLO)
      n = parse_hello(p, in + used, len - used, ev);
    else if (p->state == ST_LEN)
      n = parse_len(p, in + used, len - used);
    else
      n = parse_part(p, in + used, len - used, ev);
    if (n < 0)
      return n;
    used += (size_t)n;
  }
  return (int64_t)used;
}
