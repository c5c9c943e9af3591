/*
 * A WebSocket carrier: a byte stream carried in binary WebSocket messages
 * over any lower stream (TCP, TLS), so that a tunnel can pass through an
 * HTTP reverse proxy (nginx proxying the Upgrade). It is a filter (see
 * filter.h) whose codec is the HTTP Upgrade handshake (ws_handshake.h) and
 * then wslay's framing (ws_frame.h).
 *
 * The client sends "GET path" with Host, Upgrade: websocket, Connection:
 * Upgrade, a fresh random Sec-WebSocket-Key and version 13, and checks
 * the 101 response's Sec-WebSocket-Accept. The server answers a good
 * request at path with 101, and anything else with an HTTP error
 * (400/404/405/426/431, the reason in its body) before failing.
 *
 * After the handshake:
 *   - bytes written from above go out as binary messages of at most
 *     SJ_WS_MESSAGE_MAX bytes, one frame each, masked from the client as
 *     RFC 6455 requires; binary and continuation frames received are
 *     delivered upward as bytes (frame boundaries mean nothing);
 *   - a ping is answered with a pong; a pong is ignored;
 *   - memory is bounded as in every filter: at most about
 *     SJ_FILTER_OUT_HWM encoded bytes queued (plus one message), one
 *     decoded chunk and one undecoded one; no message is ever buffered
 *     whole on receipt, so a peer's huge frame costs nothing.
 *
 * Ending, and half-close. shutdown sends a close frame (1000) after what
 * was written: that is this side's end of data. The peer's close frame
 * reads as UV_EOF. Unlike a strict RFC 6455 endpoint, the carrier does not
 * answer the peer's close at once: its own close goes out when its owner
 * shuts down, so each direction ends on its own and half-close works as
 * over TCP (the mux above sends its own FIN per channel anyway, so for it
 * the carrier's shutdown is simply the end of the session). The lower
 * write side is shut only once both close frames have passed, because a
 * proxy such as nginx ends the whole upgraded connection when either side
 * half-closes; until then the shutdown from above has completed as soon as
 * the close frame is queued.
 *
 * Errors, each with a line for the log ("ws: ..."), reported through the
 * layer callback as for TLS:
 *   - the lower stream ending without a close frame is a truncation
 *     (UV_EPROTO, "ws: peer closed the connection without a close frame
 *     (truncated)"), never UV_EOF;
 *   - a refused upgrade ("ws: server refused the upgrade: HTTP 404 Not
 *     Found"), a bad request or response, text frames, protocol violations
 *     (UV_EPROTO; the peer is sent a close frame with the matching code),
 *     and a close frame with an error code (UV_ECONNRESET).
 * A stream closed without shutdown sends no close frame.
 */
#ifndef SJ_WS_H
#define SJ_WS_H

#include "filter.h"

/* The largest message (and frame) sent. */
#define SJ_WS_MESSAGE_MAX (64 * 1024)
/* The longest Host value and path accepted. */
#define SJ_WS_HOST_MAX 262
#define SJ_WS_PATH_MAX 1024

typedef enum {
  SJ_WS_CLIENT = 0, /* sends the Upgrade request */
  SJ_WS_SERVER = 1  /* answers it */
} sj_ws_role_t;

/* 1 if path can serve as a WebSocket path (--ws-path): it starts with '/'
 * and holds only printable ASCII without spaces or '#', at most
 * SJ_WS_PATH_MAX bytes. */
int sj_ws_path_ok(const char *path);

/*
 * Layers a WebSocket over lower, which the new stream owns from now on
 * (closing it closes lower). host is the client's Host header ("name" or
 * "name:port"; ignored by a server, may be NULL there); path is the path
 * the client requests and the server answers at. cb (see sj_layer_cb in
 * filter.h) reports the handshake, which starts at once, and a later
 * failure. Returns 0 and *out; or UV_EINVAL for a bad role, host or path,
 * or UV_ENOMEM, with lower untouched.
 */
int sj_ws_stream_new(sj_stream_t *lower, sj_ws_role_t role, const char *host, const char *path,
                     sj_layer_cb cb, void *arg, sj_stream_t **out);

#endif
