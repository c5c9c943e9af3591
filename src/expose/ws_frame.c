/* WebSocket frames for a byte stream, on wslay's frame API (see
 * ws_frame.h). */
#include "ws_frame.h"

#include <openssl/rand.h>
#include <string.h>

/* ---- wslay's callbacks ---------------------------------------------------- */

static ssize_t on_send(const uint8_t *data, size_t len, int flags, void *arg) {
  sj_wsf_t *c = arg;
  (void)flags;
  return c->sink(c->sink_arg, data, len) == 0 ? (ssize_t)len : -1;
}

/* Offers wslay the input of the current decode call; nothing left reads as
 * "would block". */
static ssize_t on_recv(uint8_t *buf, size_t len, int flags, void *arg) {
  sj_wsf_t *c = arg;
  (void)flags;
  size_t n = c->inlen - c->inused;
  if (n > len)
    n = len;
  if (n == 0)
    return -1;
  memcpy(buf, c->in + c->inused, n);
  c->inused += n;
  return (ssize_t)n;
}

/* RFC 6455 asks for masks a proxy cannot predict. */
static int on_genmask(uint8_t *buf, size_t len, void *arg) {
  (void)arg;
  return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int sj_wsf_init(sj_wsf_t *c, int server, sj_wsf_sink_t sink, void *arg) {
  static const struct wslay_frame_callbacks callbacks = {on_send, on_recv, on_genmask};
  memset(c, 0, sizeof *c);
  c->server = server;
  c->sink = sink;
  c->sink_arg = arg;
  c->close_code = SJ_WSF_CODE_NONE;
  return wslay_frame_context_init(&c->fc, &callbacks, c) == 0 ? 0 : SJ_WSF_ENOMEM;
}

void sj_wsf_free(sj_wsf_t *c) {
  if (c->fc != NULL)
    wslay_frame_context_free(c->fc);
  c->fc = NULL;
}

/* ---- sending -------------------------------------------------------------- */

/* One whole frame: the sink takes everything at once, so wslay never holds
 * a frame half sent. */
static int send_frame(sj_wsf_t *c, uint8_t opcode, const void *buf, size_t len) {
  struct wslay_frame_iocb io;
  memset(&io, 0, sizeof io);
  io.fin = 1;
  io.opcode = opcode;
  io.mask = c->server ? 0 : 1;
  io.payload_length = len;
  io.data = buf;
  io.data_length = len;
  return wslay_frame_send(c->fc, &io) == (ssize_t)len ? 0 : SJ_WSF_ENOMEM;
}

int sj_wsf_send_binary(sj_wsf_t *c, const char *buf, size_t len) {
  return send_frame(c, WSLAY_BINARY_FRAME, buf, len);
}

int sj_wsf_send_close(sj_wsf_t *c, uint16_t code, const char *reason) {
  if (c->close_sent)
    return 0;
  uint8_t payload[125];
  size_t n = 0;
  if (code != 0) {
    size_t rlen = reason != NULL ? strlen(reason) : 0;
    rlen = rlen > sizeof payload - 2 ? sizeof payload - 2 : rlen;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rlen > 0)
      memcpy(payload + 2, reason, rlen);
    n = 2 + rlen;
  }
  c->close_sent = 1;
  return send_frame(c, WSLAY_CONNECTION_CLOSE, payload, n);
}

/* ---- receiving ------------------------------------------------------------ */

static int frame_start(sj_wsf_t *c, const struct wslay_frame_iocb *f) {
  if (f->rsv != 0)
    return SJ_WSF_ERSV;
  if (c->server && !f->mask)
    return SJ_WSF_EUNMASKED;
  if (!c->server && f->mask)
    return SJ_WSF_EMASKED;
  switch (f->opcode) {
  case WSLAY_CONTINUATION_FRAME:
    if (!c->in_message)
      return SJ_WSF_ECONTINUATION;
    break;
  case WSLAY_BINARY_FRAME:
    if (c->in_message)
      return SJ_WSF_EINTERLEAVED;
    break;
  case WSLAY_TEXT_FRAME:
    return SJ_WSF_ETEXT;
  case WSLAY_CONNECTION_CLOSE:
  case WSLAY_PING:
  case WSLAY_PONG:
    c->ctrl_len = 0; /* wslay has checked: at most 125 bytes, not fragmented */
    break;
  default:
    return SJ_WSF_EOPCODE;
  }
  if (!wslay_is_ctrl_frame(f->opcode))
    c->in_message = !f->fin;
  c->in_frame = 1;
  c->opcode = f->opcode;
  c->frame_off = 0;
  return 0;
}

/* Stream bytes go to out (whose room the input limit guarantees); a
 * control frame's payload is kept until the frame ends. */
static int frame_data(sj_wsf_t *c, const struct wslay_frame_iocb *f, char *out, size_t cap,
                      size_t *produced) {
  size_t n = f->data_length;
  if (n == 0)
    return 0;
  if (wslay_is_ctrl_frame(c->opcode)) {
    if (n > sizeof c->ctrl - c->ctrl_len)
      return SJ_WSF_EFRAME;
    memcpy(c->ctrl + c->ctrl_len, f->data, n);
    c->ctrl_len += n;
    return 0;
  }
  if (n > cap - *produced)
    return SJ_WSF_EFRAME; /* cannot happen: input is taken up to cap */
  memcpy(out + *produced, f->data, n);
  *produced += n;
  return 0;
}

static int close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static int on_close(sj_wsf_t *c) {
  if (c->ctrl_len == 1)
    return SJ_WSF_ECLOSEFRAME;
  if (c->ctrl_len >= 2) {
    unsigned code = (unsigned)c->ctrl[0] << 8 | c->ctrl[1];
    if (!close_code_ok(code))
      return SJ_WSF_ECLOSEFRAME;
    c->close_code = (uint16_t)code;
    memcpy(c->close_reason, c->ctrl + 2, c->ctrl_len - 2);
    c->close_reason[c->ctrl_len - 2] = '\0';
  }
  c->close_received = 1;
  if (c->close_code == SJ_WSF_CODE_NORMAL || c->close_code == SJ_WSF_CODE_GOING_AWAY ||
      c->close_code == SJ_WSF_CODE_NONE)
    return SJ_WSF_CLOSED;
  return SJ_WSF_EPEERCLOSE;
}

static int frame_end(sj_wsf_t *c) {
  c->in_frame = 0;
  if (c->opcode == WSLAY_PING && !c->close_sent)
    return send_frame(c, WSLAY_PONG, c->ctrl, c->ctrl_len);
  if (c->opcode == WSLAY_CONNECTION_CLOSE)
    return on_close(c);
  return 0;
}

/* One piece of a frame, as wslay hands it over. */
static int on_piece(sj_wsf_t *c, const struct wslay_frame_iocb *f, char *out, size_t cap,
                    size_t *produced) {
  int rc;
  if (!c->in_frame && (rc = frame_start(c, f)) != 0)
    return rc;
  if ((rc = frame_data(c, f, out, cap, produced)) != 0)
    return rc;
  c->frame_off += f->data_length;
  return c->frame_off < f->payload_length ? 0 : frame_end(c);
}

int sj_wsf_decode(sj_wsf_t *c, const char *in, size_t inlen, size_t *used, char *out, size_t cap,
                  size_t *produced) {
  *used = *produced = 0;
  if (c->error != 0)
    return c->error;
  if (c->close_received)
    return SJ_WSF_CLOSED;
  c->in = in;
  c->inlen = inlen < cap ? inlen : cap;
  c->inused = 0;
  int rc = 0;
  while (rc == 0) {
    struct wslay_frame_iocb f;
    memset(&f, 0, sizeof f);
    ssize_t r = wslay_frame_recv(c->fc, &f);
    if (r == WSLAY_ERR_WANT_READ)
      break;
    rc = r < 0 ? SJ_WSF_EFRAME : on_piece(c, &f, out, cap, produced);
  }
  *used = c->inused;
  c->in = NULL;
  c->inlen = c->inused = 0;
  if (rc < 0)
    c->error = rc;
  return rc;
}

/* ---- errors --------------------------------------------------------------- */

uint16_t sj_wsf_close_code(int err) {
  switch (err) {
#define SJ_WSF_ERR_CLOSE(name, code, close, text)                                                  \
  case code:                                                                                       \
    return close;
    SJ_WSF_ERRORS(SJ_WSF_ERR_CLOSE)
#undef SJ_WSF_ERR_CLOSE
  default:
    return SJ_WSF_CODE_INTERNAL;
  }
}

const char *sj_wsf_strerror(int err) {
  switch (err) {
#define SJ_WSF_ERR_TEXT(name, code, close, text)                                                   \
  case code:                                                                                       \
    return text;
    SJ_WSF_ERRORS(SJ_WSF_ERR_TEXT)
#undef SJ_WSF_ERR_TEXT
  default:
    return "unknown frame error";
  }
}
