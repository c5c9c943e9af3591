/*
 * WebSocket frames (RFC 6455 section 5) for a byte stream, on wslay's frame
 * API: wslay encodes and decodes the frames (lengths, masking); this codec
 * decides what they mean for a stream carried in binary messages.
 *
 *   - Payload of binary frames and of their continuations is handed out as
 *     bytes, frame boundaries meaning nothing; no message is ever buffered,
 *     so a frame of any length costs no memory.
 *   - A ping is answered with a pong at once; a pong is ignored.
 *   - A close frame ends the input: SJ_WSF_CLOSED for a clean close (1000,
 *     1001 or no code), SJ_WSF_EPEERCLOSE for any other code (the peer
 *     says something went wrong). Our own close is not sent automatically
 *     in reply: it goes out when our side has finished sending
 *     (sj_wsf_send_close), so each direction ends on its own, as a TCP
 *     half-close does.
 *   - Text frames, unknown opcodes, reserved bits, a client's unmasked or a
 *     server's masked frame, a continuation outside a message, a new
 *     message inside one, or a malformed close frame are errors; each has
 *     the close code to tell the peer (sj_wsf_close_code).
 *
 * The codec does no I/O: frames to send go to the sink given at init (the
 * caller's queue), synchronously and whole. It allocates only wslay's
 * frame context, at init.
 */
#ifndef SJ_WS_FRAME_H
#define SJ_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

/* Takes encoded bytes to send; returns 0, or nonzero when it cannot (out
 * of memory), which fails the codec. */
typedef int (*sj_wsf_sink_t)(void *arg, const void *buf, size_t len);

/* decode's return once a clean close frame has been received. */
#define SJ_WSF_CLOSED 1

/* Close codes (RFC 6455 section 7.4.1). */
#define SJ_WSF_CODE_NORMAL 1000
#define SJ_WSF_CODE_GOING_AWAY 1001
#define SJ_WSF_CODE_PROTOCOL 1002
#define SJ_WSF_CODE_UNSUPPORTED 1003
#define SJ_WSF_CODE_NONE 1005
#define SJ_WSF_CODE_INTERNAL 1011

/* Errors, as negative returns, with the close code that tells the peer. */
#define SJ_WSF_ERRORS(XX)                                                                          \
  XX(ENOMEM, -1, 1011, "out of memory")                                                            \
  XX(EFRAME, -2, 1002, "malformed frame header")                                                   \
  XX(ERSV, -3, 1002, "reserved bits set (no extension was agreed)")                                \
  XX(EUNMASKED, -4, 1002, "unmasked frame from the client")                                        \
  XX(EMASKED, -5, 1002, "masked frame from the server")                                            \
  XX(EOPCODE, -6, 1002, "unknown opcode")                                                          \
  XX(ETEXT, -7, 1003, "text frame (the stream is carried in binary frames only)")                  \
  XX(ECONTINUATION, -8, 1002, "continuation frame outside a message")                              \
  XX(EINTERLEAVED, -9, 1002, "new message before the last one ended")                              \
  XX(ECLOSEFRAME, -10, 1002, "malformed close frame")                                              \
  XX(EPEERCLOSE, -11, 0, "peer closed the session with an error code")

typedef enum {
#define SJ_WSF_ERR_ENUM(name, code, close, text) SJ_WSF_##name = (code),
  SJ_WSF_ERRORS(SJ_WSF_ERR_ENUM)
#undef SJ_WSF_ERR_ENUM
} sj_wsf_error_t;

typedef struct {
  wslay_frame_context_ptr fc;
  int server;
  sj_wsf_sink_t sink;
  void *sink_arg;
  int error; /* sticky, once decoding has failed          */
  /* the input offered to wslay's receive callback by one decode call */
  const char *in;
  size_t inlen, inused;
  /* the frame being received */
  int in_frame, opcode;
  uint64_t frame_off;
  int in_message;    /* a binary message awaits continuations     */
  uint8_t ctrl[125]; /* a control frame's payload                 */
  size_t ctrl_len;
  /* closing */
  int close_received, close_sent;
  uint16_t close_code;    /* the peer's (SJ_WSF_CODE_NONE if none)     */
  char close_reason[124]; /* the peer's, NUL-terminated, unfiltered    */
} sj_wsf_t;

/* server: 1 for the accepting end (its frames are unmasked, the peer's
 * must be masked), 0 for the client. Returns 0 or SJ_WSF_ENOMEM. */
int sj_wsf_init(sj_wsf_t *c, int server, sj_wsf_sink_t sink, void *arg);
void sj_wsf_free(sj_wsf_t *c);

/*
 * Decodes frames from in, writing the stream's bytes to out. Takes at most
 * cap bytes of input (*used), so the payload always fits in out
 * (*produced); what it takes is decoded in full (wslay keeps at most the
 * start of a frame header). Pings are answered through the sink. Returns
 * 0 (no progress means more input, please), SJ_WSF_CLOSED (now and on
 * every later call, taking nothing), or an error (now and on every later
 * call).
 */
int sj_wsf_decode(sj_wsf_t *c, const char *in, size_t inlen, size_t *used, char *out, size_t cap,
                  size_t *produced);

/* One binary frame carrying buf (a whole message). Returns 0 or
 * SJ_WSF_ENOMEM. */
int sj_wsf_send_binary(sj_wsf_t *c, const char *buf, size_t len);

/* Our close frame, once (later calls do nothing): code (0 for none) and a
 * reason of at most 123 bytes. Returns 0 or SJ_WSF_ENOMEM. */
int sj_wsf_send_close(sj_wsf_t *c, uint16_t code, const char *reason);

/* The close code that tells the peer about err (0: none to send). */
uint16_t sj_wsf_close_code(int err);
const char *sj_wsf_strerror(int err);

#endif
