/*
 * The TCP Relay protocol, as a pure incremental codec (no I/O, no
 * allocation): a client registers with "NAME|", then sends "DEST|N|" and
 * exactly N bytes per message; the relay delivers "SENDER|N|" and the bytes.
 *
 * The parser takes bytes as they come, split anywhere or many frames at
 * once, and reports one event per call. Payloads are never buffered: they
 * are reported as spans of the caller's input, so a 16 MiB message costs
 * the parser nothing.
 */
#ifndef SJ_RELAY_PROTOCOL_H
#define SJ_RELAY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define SJ_RELAY_NAME_MAX 255
#define SJ_RELAY_DEFAULT_MAX_MESSAGE (16u * 1024 * 1024)

typedef enum {
  SJ_RELAY_NEED_MORE = 0, /* all input consumed, no event yet                 */
  SJ_RELAY_REGISTER,      /* name: the client's name (first frame only)       */
  SJ_RELAY_MESSAGE,       /* name: destination; length: payload size (a 0-byte
                             message is complete with this event)             */
  SJ_RELAY_DATA           /* data, data_len: the next part of the payload;
                             last: it completes the message                   */
} sj_relay_event_type_t;

typedef struct {
  sj_relay_event_type_t type;
  const char *name; /* valid until the next call */
  size_t name_len;
  uint64_t length;
  const char *data; /* points into the input */
  size_t data_len;
  int last;
} sj_relay_event_t;

/* Errors, as negative returns. */
#define SJ_RELAY_ERRORS(XX)                                              \
  XX(ENAME_EMPTY, -1, "empty name")                                      \
  XX(ENAME_LONG, -2, "name longer than 255 bytes")                       \
  XX(EDEST_EMPTY, -3, "empty destination")                               \
  XX(EDEST_LONG, -4, "destination longer than 255 bytes")                \
  XX(ELEN_EMPTY, -5, "empty length")                                     \
  XX(ELEN_DIGIT, -6, "length is not decimal digits")                     \
  XX(ELEN_BIG, -7, "length over the message limit")

typedef enum {
#define SJ_RELAY_ERR_ENUM(name, code, text) SJ_RELAY_##name = (code),
  SJ_RELAY_ERRORS(SJ_RELAY_ERR_ENUM)
#undef SJ_RELAY_ERR_ENUM
} sj_relay_error_t;

typedef struct {
  int state;
  char name[SJ_RELAY_NAME_MAX]; /* the name or destination being read */
  size_t name_len;
  unsigned digits;     /* of the length being read */
  uint64_t length;     /* of the current message   */
  uint64_t remaining;  /* of its payload           */
  uint64_t max_message;
} sj_relay_parser_t;

/* A parser for a new connection: its first frame is the registration. */
void sj_relay_parser_init(sj_relay_parser_t *p, uint64_t max_message);
/* A parser for what a relay delivers to a client ("SENDER|N|" and the
 * bytes): no registration frame; SJ_RELAY_MESSAGE events name the sender. */
void sj_relay_parser_init_deliveries(sj_relay_parser_t *p, uint64_t max_message);

/*
 * Consumes input up to and including the next event. Returns the number of
 * bytes consumed (all of len when ev->type is SJ_RELAY_NEED_MORE), or a
 * negative SJ_RELAY_E* error, after which the connection must be closed.
 * Call again with the rest of the input until it is used up.
 */
int64_t sj_relay_parse(sj_relay_parser_t *p, const char *buf, size_t len, sj_relay_event_t *ev);

const char *sj_relay_strerror(int err);

/* Writes the header "NAME|N|" for a delivered message (or a sent one, with
 * the destination as name); returns its length, or 0 if cap is too small. */
size_t sj_relay_header(char *buf, size_t cap, const char *name, size_t name_len, uint64_t length);

#endif
