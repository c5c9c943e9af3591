/*
 * The mux's frames, as a pure incremental codec (no I/O, no allocation).
 *
 * Every frame has a fixed 10-byte header, big-endian:
 *
 *   type u8 | flags u8 | channel id u32 | payload length u32 | payload
 *
 *   DATA    id > 0   1..SJ_MUX_PAYLOAD_MAX bytes of the channel's stream
 *   OPEN    id > 0   u32 tag: the sender opens channel id, for the purpose
 *                    the tag names (which service; 0 when there is one)
 *   WINDOW  id > 0   u32 increment > 0: the sender may be sent that much more
 *   FIN     id > 0   empty: the sender's direction of the channel has ended
 *   RESET   id > 0   u32 code: the channel is abandoned in both directions
 *   PING    id = 0   8 opaque bytes, to be echoed in a PONG
 *   PONG    id = 0   the 8 bytes of the PING it answers
 *   GOAWAY  id = 0   u32 code: the sender is ending the session
 *
 * Flags are reserved and must be 0. Anything else is an error named by the
 * parser, after which the session cannot be trusted and must end.
 *
 * The parser takes bytes as they come, split anywhere or many frames at
 * once, and reports one event per call. DATA payloads are never buffered:
 * they are reported as spans of the caller's input (a frame split across
 * reads is reported in several parts), so the codec copies only the header
 * and the few bytes of fixed-size payloads.
 */
#ifndef SJ_MUX_FRAME_H
#define SJ_MUX_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define SJ_MUX_HEADER_LEN 10
#define SJ_MUX_PAYLOAD_MAX (64 * 1024)
/* Each direction of every channel starts with this much credit: a sender
 * may have this many DATA bytes unacknowledged by WINDOW frames. */
#define SJ_MUX_INITIAL_WINDOW (256 * 1024)
/* Credit beyond this is a protocol error (it could only come from a peer
 * granting more than it could ever have been sent). */
#define SJ_MUX_WINDOW_MAX 0x7fffffffu
/* The largest control frame (PING and PONG). */
#define SJ_MUX_CONTROL_MAX (SJ_MUX_HEADER_LEN + 8)

typedef enum {
  SJ_MUX_DATA = 0,
  SJ_MUX_OPEN = 1,
  SJ_MUX_WINDOW = 2,
  SJ_MUX_FIN = 3,
  SJ_MUX_RESET = 4,
  SJ_MUX_PING = 5,
  SJ_MUX_PONG = 6,
  SJ_MUX_GOAWAY = 7
} sj_mux_frame_type_t;

/* RESET and GOAWAY codes: why, as the sender sees it. NONE: a plain reset,
 * or a clean goodbye; REFUSED: the channel could not be served (its connect
 * failed, the channel limit, no acceptor); PROTOCOL: the receiver broke the
 * protocol; TIMEOUT: the peer went silent. */
#define SJ_MUX_CODE_NONE 0
#define SJ_MUX_CODE_REFUSED 1
#define SJ_MUX_CODE_PROTOCOL 2
#define SJ_MUX_CODE_TIMEOUT 3

typedef enum {
  SJ_MUX_NEED_MORE = 0, /* all input consumed, no event yet                */
  SJ_MUX_FRAME,         /* a whole frame other than DATA: type, id, value,
                           opaque                                          */
  SJ_MUX_DATA_PART      /* data, data_len (> 0): the next part of a DATA
                           frame's payload for channel id; last: it ends the
                           frame                                           */
} sj_mux_event_type_t;

typedef struct {
  sj_mux_event_type_t type;
  sj_mux_frame_type_t frame;
  uint32_t id;
  uint32_t length;   /* the frame's payload length                       */
  uint32_t value;    /* OPEN tag, WINDOW increment, RESET or GOAWAY code */
  uint8_t opaque[8]; /* PING, PONG                                       */
  const char *data;  /* points into the input                            */
  size_t data_len;
  int last;
} sj_mux_event_t;

/* Errors, as negative returns. */
#define SJ_MUX_ERRORS(XX)                                                                          \
  XX(ETYPE, -1, "unknown frame type")                                                              \
  XX(EFLAGS, -2, "reserved frame flags set")                                                       \
  XX(EBIG, -3, "frame payload over the limit")                                                     \
  XX(EID_ZERO, -4, "channel frame with channel id 0")                                              \
  XX(EID_SESSION, -5, "session frame with a channel id")                                           \
  XX(ELENGTH, -6, "wrong payload length for the frame type")                                       \
  XX(EEMPTY, -7, "empty DATA frame")                                                               \
  XX(EWINDOW, -8, "WINDOW increment of 0")

typedef enum {
#define SJ_MUX_ERR_ENUM(name, code, text) SJ_MUX_##name = (code),
  SJ_MUX_ERRORS(SJ_MUX_ERR_ENUM)
#undef SJ_MUX_ERR_ENUM
} sj_mux_error_t;

typedef struct {
  int state;
  uint8_t buf[SJ_MUX_HEADER_LEN]; /* the header, then a fixed payload */
  size_t have;
  sj_mux_frame_type_t type;
  uint32_t id;
  uint32_t length;
  uint32_t remaining; /* of a DATA payload */
} sj_mux_parser_t;

void sj_mux_parser_init(sj_mux_parser_t *p);

/*
 * Consumes input up to and including the next event. Returns the number of
 * bytes consumed (all of len when ev->type is SJ_MUX_NEED_MORE), or a
 * negative SJ_MUX_E* error, after which the parser must not be used again.
 * Call again with the rest of the input until it is used up.
 */
int64_t sj_mux_parse(sj_mux_parser_t *p, const char *buf, size_t len, sj_mux_event_t *ev);

const char *sj_mux_strerror(int err);

/* Encoders: each writes one frame (a DATA frame's header only) to out,
 * which must have room for it, and returns its length. FIN is a header
 * with length 0. */
size_t sj_mux_put_header(uint8_t *out, sj_mux_frame_type_t type, uint32_t id, uint32_t length);
/* OPEN, WINDOW, RESET, GOAWAY. */
size_t sj_mux_put_u32(uint8_t *out, sj_mux_frame_type_t type, uint32_t id, uint32_t value);
/* PING, PONG. */
size_t sj_mux_put_ping(uint8_t *out, sj_mux_frame_type_t type, const uint8_t opaque[8]);

#endif
