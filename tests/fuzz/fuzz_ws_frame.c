/* libFuzzer target: the WebSocket frame codec. The first byte picks the
 * side (client or server), how the rest is cut into pieces, and the size of
 * the output buffer; the rest is frames from the peer. Decoding in pieces
 * must give exactly the bytes and the outcome of decoding it whole, never
 * take more input than the output can hold, always take all it is offered
 * while it goes on, and never crash. */
#include "ws_frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  uint8_t out[1 << 16];
  size_t out_len;
  int rc;
  size_t sent; /* bytes the codec sent back (pongs) */
} outcome_t;

static int sink(void *arg, const void *buf, size_t len) {
  (void)buf;
  ((outcome_t *)arg)->sent += len;
  return 0;
}

static void decode(int server, const uint8_t *in, size_t len, size_t step, size_t cap,
                   outcome_t *o) {
  sj_wsf_t c;
  uint8_t buf[4096];
  memset(o, 0, sizeof *o);
  if (sj_wsf_init(&c, server, sink, o) != 0)
    abort();
  size_t off = 0;
  while (o->rc == 0 && off < len) {
    size_t n = len - off < step ? len - off : step, used, produced;
    o->rc = sj_wsf_decode(&c, (const char *)in + off, n, &used, (char *)buf, cap, &produced);
    if (used > n || used > cap || produced > cap || produced > used)
      abort();
    if (o->rc == 0 && used != (n < cap ? n : cap))
      abort();
    if (o->rc < 0 && strcmp(sj_wsf_strerror(o->rc), "unknown frame error") == 0)
      abort();
    if (o->out_len + produced <= sizeof o->out)
      memcpy(o->out + o->out_len, buf, produced);
    o->out_len += produced;
    off += used;
  }
  sj_wsf_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > sizeof(((outcome_t *)0)->out))
    return 0;
  static outcome_t whole, pieces;
  int server = data[0] & 1;
  size_t step = 1 + (data[0] >> 1 & 7) * 3, cap = 1 + (data[0] >> 4) * 37;
  decode(server, data + 1, size - 1, size, 4096, &whole);
  decode(server, data + 1, size - 1, step, cap, &pieces);
  if (whole.rc != pieces.rc || whole.out_len != pieces.out_len ||
      memcmp(whole.out, pieces.out, whole.out_len) != 0 || whole.sent != pieces.sent)
    abort();
  return 0;
}
