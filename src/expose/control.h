/*
 * The control messages of `sockjoin server` and `sockjoin expose`, as a
 * pure codec (no I/O, no allocation). Every message is one line of
 * printable ASCII ending in "\n" (a "\r" before it is allowed), at most
 * SJ_XCTL_LINE_MAX bytes with its newline, fields split by single spaces.
 *
 * On the carrier, before the mux starts (server first):
 *   server  "sockjoin-expose 1 challenge HEX"   HEX: 64 random hex digits
 *           "sockjoin-expose 1 open"            the server checks no key
 *   agent   "auth ANSWER [AGENT]"  ANSWER: hex HMAC-SHA256 under the API key
 *                           of "sockjoin-expose:" followed by HEX
 *           "auth none [AGENT]"    the agent has no key
 *                           AGENT: 16 hex digits, random per agent process,
 *                           so that a reconnecting agent can take its own
 *                           tunnels over from a session of its own that the
 *                           server has not yet found dead
 *   server  "ok"                      the mux starts right after this line
 *           "unauthorized [REASON]"   then the server closes
 *           "error REASON"            (server full, ...) then it closes
 *
 * On the mux's control channel (the agent's first channel, tag 0), one
 * request at a time, each answered before the next is sent:
 *   agent   "expose PORT [prefer]"    PORT 0: any port; with "prefer", any
 *                                     port if PORT cannot be had
 *   server  "ok PORT TUNNEL [HOST]"   the public port, the tunnel's id (the
 *                                     tag of its channels, 1..2^32-1), and
 *                                     the public host if the server knows it
 *           "error REASON"
 *
 * A parser is told which messages may come next (the stage), so that a
 * message out of turn is an error by name rather than a surprise.
 */
#ifndef SJ_EXPOSE_CONTROL_H
#define SJ_EXPOSE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#define SJ_XCTL_LINE_MAX 256
#define SJ_XCTL_VERSION 1
#define SJ_XCTL_TOKEN_LEN 64 /* hex digits of a challenge or an answer */
#define SJ_XCTL_AGENT_LEN 16 /* hex digits of an agent's id            */
#define SJ_XCTL_TEXT_MAX 200 /* a reason or a public host */
/* What the HMAC covers besides the challenge, so that an answer made for
 * this protocol is good for nothing else that shares the key. */
#define SJ_XCTL_AUTH_CONTEXT "sockjoin-expose:"

typedef enum {
  SJ_XCTL_HELLO,        /* version, token (the challenge; "" = open)   */
  SJ_XCTL_AUTH,         /* token (the answer; "" = none), agent ("" = none) */
  SJ_XCTL_WELCOME,      /* "ok" after auth                             */
  SJ_XCTL_UNAUTHORIZED, /* text: the reason (may be "")                */
  SJ_XCTL_ERROR,        /* text: the reason                            */
  SJ_XCTL_EXPOSE,       /* port (0: any), prefer                       */
  SJ_XCTL_EXPOSED       /* port, tunnel, text: the public host or ""   */
} sj_xctl_type_t;

/* Where a conversation is: which messages may come next. */
typedef enum {
  SJ_XCTL_AT_HELLO,   /* agent reads: HELLO                          */
  SJ_XCTL_AT_AUTH,    /* server reads: AUTH                          */
  SJ_XCTL_AT_WELCOME, /* agent reads: WELCOME, UNAUTHORIZED, ERROR   */
  SJ_XCTL_AT_REQUEST, /* server reads: EXPOSE                        */
  SJ_XCTL_AT_REPLY    /* agent reads: EXPOSED, ERROR                 */
} sj_xctl_stage_t;

typedef struct {
  sj_xctl_type_t type;
  unsigned version;
  char token[SJ_XCTL_TOKEN_LEN + 1];
  char agent[SJ_XCTL_AGENT_LEN + 1];
  unsigned port;
  int prefer;
  uint32_t tunnel;
  char text[SJ_XCTL_TEXT_MAX + 1];
} sj_xctl_msg_t;

#define SJ_XCTL_ERRORS(XX)                                                                         \
  XX(ETOOLONG, -1, "control line longer than 256 bytes")                                           \
  XX(ECHAR, -2, "control line holds a byte that is not printable ASCII")                           \
  XX(EGREETING, -3, "not a sockjoin expose server (unexpected greeting)")                          \
  XX(EVERSION, -4, "unsupported sockjoin expose protocol version")                                 \
  XX(EWORD, -5, "unexpected control message")                                                      \
  XX(EFIELDS, -6, "wrong fields in a control message")                                             \
  XX(ETOKEN, -7, "bad challenge or answer (expected 64 hex digits)")                               \
  XX(EPORT, -8, "bad port (expected 0 to 65535)")                                                  \
  XX(ETUNNEL, -9, "bad tunnel id (expected 1 to 4294967295)")                                      \
  XX(ETEXT, -10, "reason or host too long")                                                        \
  XX(EAGENT, -11, "bad agent id (expected 16 hex digits)")

typedef enum {
#define SJ_XCTL_ERR_ENUM(name, code, text) SJ_XCTL_##name = (code),
  SJ_XCTL_ERRORS(SJ_XCTL_ERR_ENUM)
#undef SJ_XCTL_ERR_ENUM
} sj_xctl_error_t;

/*
 * Parses the first line of buf as a message that may come at stage.
 * Returns the bytes the line takes (its newline included) with *msg
 * filled; 0 when no whole line is there yet (and fewer than
 * SJ_XCTL_LINE_MAX bytes); or a negative SJ_XCTL_E* error.
 */
long sj_xctl_parse(sj_xctl_stage_t stage, const char *buf, size_t len, sj_xctl_msg_t *msg);

/* Writes msg as a line with its newline into out (cap bytes, a NUL after
 * it when there is room). Returns the line's length, or a negative
 * SJ_XCTL_E* error for a message that could not be parsed back (a reason
 * with a control character, a token that is not hex, ...). */
int sj_xctl_format(const sj_xctl_msg_t *msg, char *out, size_t cap);

const char *sj_xctl_strerror(int err);

#endif
