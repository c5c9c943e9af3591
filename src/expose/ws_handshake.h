/*
 * The HTTP/1.1 Upgrade handshake that opens a WebSocket (RFC 6455 section
 * 4), as a pure codec: no I/O, no allocation, every parser working on the
 * bytes received so far and returning the length of the head once it is
 * whole, 0 while it is not, or a negative SJ_WSH_E* error naming what is
 * wrong. Bytes after the head (frames sent without waiting) are the
 * caller's.
 *
 *   client                                  server
 *   sj_wsh_request()       -- GET path -->  sj_wsh_parse_request()
 *   sj_wsh_parse_response() <-- 101 -----   sj_wsh_response(), or on an
 *                                           error sj_wsh_reject()
 *
 * A head longer than SJ_WSH_HEAD_MAX is refused (SJ_WSH_ETOOBIG), so the
 * caller never buffers more than that. Header names and the tokens of
 * Upgrade and Connection are compared without regard to case, and
 * Connection may list other tokens ("keep-alive, Upgrade"), as proxies
 * send it. Bytes that cannot be HTTP (control characters, as a TLS hello
 * or a binary protocol sends) are refused at once rather than after
 * SJ_WSH_HEAD_MAX bytes.
 */
#ifndef SJ_WS_HANDSHAKE_H
#define SJ_WS_HANDSHAKE_H

#include <stddef.h>

/* The largest request or response head accepted or built. */
#define SJ_WSH_HEAD_MAX 8192
/* Sec-WebSocket-Key: base64 of 16 random bytes. */
#define SJ_WSH_NONCE_LEN 16
#define SJ_WSH_KEY_LEN 24
/* Sec-WebSocket-Accept: base64 of a SHA-1 digest. */
#define SJ_WSH_ACCEPT_LEN 28

/* Errors, as negative returns, with the HTTP status a server answers a bad
 * request with (0: an error of a client or of a builder). */
#define SJ_WSH_ERRORS(XX)                                                                          \
  XX(ETOOBIG, -1, 431, "HTTP head too large")                                                      \
  XX(ESYNTAX, -2, 400, "malformed HTTP")                                                           \
  XX(EMETHOD, -3, 405, "method is not GET")                                                        \
  XX(EHTTP10, -4, 400,                                                                             \
     "request is not HTTP/1.1 (a proxy in between needs proxy_http_version 1.1)")                  \
  XX(EPATH, -5, 404, "no WebSocket at this path")                                                  \
  XX(EUPGRADE, -6, 426, "no \"Upgrade: websocket\" header")                                        \
  XX(ECONNECTION, -7, 400,                                                                         \
     "no \"Connection: upgrade\" header (a proxy in between must pass Upgrade and "                \
     "Connection on)")                                                                             \
  XX(EVERSION, -8, 426, "Sec-WebSocket-Version is not 13")                                         \
  XX(EKEY, -9, 400, "missing, repeated or malformed Sec-WebSocket-Key")                            \
  XX(EHOST, -10, 400, "missing or repeated Host header")                                           \
  XX(ESTATUS, -11, 0, "server did not switch protocols")                                           \
  XX(EACCEPT, -12, 0, "missing or wrong Sec-WebSocket-Accept")                                     \
  XX(EEXTENSION, -13, 0, "server chose an extension or subprotocol that was not offered")          \
  XX(EARG, -14, 0, "host or path not usable in a request")                                         \
  XX(ESPACE, -15, 0, "output buffer too small")

typedef enum {
#define SJ_WSH_ERR_ENUM(name, code, status, text) SJ_WSH_##name = (code),
  SJ_WSH_ERRORS(SJ_WSH_ERR_ENUM)
#undef SJ_WSH_ERR_ENUM
} sj_wsh_error_t;

/* What a server learns from a good request (spans point into the input). */
typedef struct {
  const char *target; /* the request target, query included */
  size_t target_len;
  char key[SJ_WSH_KEY_LEN + 1];
} sj_wsh_request_t;

/* What a client learns from the response, good or not: the status line,
 * for an error that says what the server (or a proxy) answered. */
typedef struct {
  int status;
  const char *reason; /* points into the input */
  size_t reason_len;
} sj_wsh_response_t;

/* Sec-WebSocket-Key from 16 random bytes (SJ_WSH_KEY_LEN chars and a NUL). */
void sj_wsh_make_key(const unsigned char nonce[SJ_WSH_NONCE_LEN], char key[SJ_WSH_KEY_LEN + 1]);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)) (SJ_WSH_ACCEPT_LEN
 * chars and a NUL). Returns 0, or -1 if the crypto library fails. */
int sj_wsh_accept(const char *key, size_t key_len, char out[SJ_WSH_ACCEPT_LEN + 1]);

/* 1 if path can be requested: it starts with '/', and holds no space,
 * control character or '#', at most max bytes. */
int sj_wsh_path_ok(const char *path, size_t max);

/* The client's request (GET path, Host, Upgrade, Connection, the key,
 * version 13) into out. Returns its length, or SJ_WSH_EARG for a host or
 * path that cannot go in a request, or SJ_WSH_ESPACE. */
long sj_wsh_request(char *out, size_t cap, const char *host, const char *path, const char *key);

/* Parses a client's request; path is the one the server answers at (the
 * target's query, if any, is not compared). Returns the head's length, 0
 * while incomplete, or an error: the server answers it with
 * sj_wsh_reject() and ends the connection. */
long sj_wsh_parse_request(const char *buf, size_t len, const char *path, sj_wsh_request_t *req);

/* The 101 response to a request with this key. Returns its length, or
 * SJ_WSH_ESPACE (or SJ_WSH_EKEY if the crypto library fails). */
long sj_wsh_response(char *out, size_t cap, const char *key);

/* The response to a request refused with err: its status (400, 404, 405,
 * 426 with the headers that say what is wanted, 431), Connection: close and
 * a one-line plain text body. Returns its length, or SJ_WSH_ESPACE. */
long sj_wsh_reject(char *out, size_t cap, int err);

/* Parses the server's response to a request made with key. Returns the
 * head's length, 0 while incomplete, or an error; res says what the
 * server answered as soon as the status line is whole (status 0 until
 * then). */
long sj_wsh_parse_response(const char *buf, size_t len, const char *key, sj_wsh_response_t *res);

/* The HTTP status that answers a request error (400 for unknown ones). */
int sj_wsh_status(int err);
const char *sj_wsh_strerror(int err);

#endif
