/* The WebSocket carrier: the Upgrade handshake, then wslay's frames, as a
 * codec on the filter (see ws.h). */
#include "ws.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  sj_filter_t f; /* first: the filter lives inside */
  sj_wsf_t frames;
  int server;
  char path[SJ_WS_PATH_MAX + 1];
  char key[SJ_WSH_KEY_LEN + 1];
  /* While the handshake lasts: the client's request to send, then the
   * peer's head as it comes in. */
  char *head;
  size_t head_len;
} ws_t;

/* Frames go straight into the filter's queue. */
static int to_queue(void *arg, const void *buf, size_t len) {
  return sj_filter_send(arg, buf, len) == 0 ? 0 : -1;
}

/* A peer's text for a log line: printable ASCII only, cut short. */
static void printable(char *dst, size_t cap, const char *src, size_t n) {
  size_t i = 0;
  for (; i < n && i + 1 < cap; i++)
    dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
  dst[i] = '\0';
}

/* ---- the handshake -------------------------------------------------------- */

static int ws_begin(sj_filter_t *f) {
  ws_t *w = (ws_t *)f;
  if (w->server)
    return 0;
  int rc = sj_filter_send(f, w->head, w->head_len);
  w->head_len = 0;
  return rc;
}

static void opened(ws_t *w) {
  free(w->head);
  w->head = NULL;
  sj_filter_handshake_done(&w->f);
}

/* A server answers a bad request in HTTP before it fails. */
static int refuse(ws_t *w, int err) {
  char resp[1024];
  long n = sj_wsh_reject(resp, sizeof resp, err);
  if (n > 0)
    sj_filter_send(&w->f, resp, (size_t)n);
  return sj_filter_error(&w->f, UV_EPROTO, "refused an upgrade request: %s (answered HTTP %d)",
                         sj_wsh_strerror(err), sj_wsh_status(err));
}

static int server_head(ws_t *w, size_t before, size_t *used) {
  sj_wsh_request_t req;
  long h = sj_wsh_parse_request(w->head, w->head_len, w->path, &req);
  if (h <= 0)
    return h < 0 ? refuse(w, (int)h) : 0;
  char resp[256];
  long n = sj_wsh_response(resp, sizeof resp, req.key);
  int rc = n > 0 ? sj_filter_send(&w->f, resp, (size_t)n)
                 : sj_filter_error(&w->f, UV_ENOMEM, "cannot compute Sec-WebSocket-Accept");
  if (rc != 0)
    return rc;
  *used = (size_t)h - before;
  opened(w);
  return 0;
}

static int client_head(ws_t *w, size_t before, size_t *used) {
  sj_wsh_response_t res;
  long h = sj_wsh_parse_response(w->head, w->head_len, w->key, &res);
  if (h == SJ_WSH_ESTATUS) {
    char reason[80];
    printable(reason, sizeof reason, res.reason, res.reason_len);
    return sj_filter_error(&w->f, UV_EPROTO, "server refused the upgrade: HTTP %d %s", res.status,
                           reason);
  }
  if (h < 0)
    return sj_filter_error(&w->f, UV_EPROTO, "bad upgrade response: %s", sj_wsh_strerror((int)h));
  if (h > 0) {
    *used = (size_t)h - before;
    opened(w);
  }
  return 0;
}

/* Gathers the peer's head; what follows it in the input is left for the
 * frames. */
static int handshake_input(ws_t *w, const char *in, size_t inlen, size_t *used) {
  size_t room = SJ_WSH_HEAD_MAX - w->head_len;
  size_t n = inlen < room ? inlen : room;
  if (n == 0)
    return 0;
  size_t before = w->head_len;
  memcpy(w->head + before, in, n);
  w->head_len += n;
  *used = n;
  return w->server ? server_head(w, before, used) : client_head(w, before, used);
}

/* ---- frames --------------------------------------------------------------- */

static int frames_failed(ws_t *w, int err) {
  if (err == SJ_WSF_EPEERCLOSE) {
    char reason[128];
    printable(reason, sizeof reason, w->frames.close_reason, strlen(w->frames.close_reason));
    return sj_filter_error(&w->f, UV_ECONNRESET, "peer closed the session with code %u%s%s",
                           w->frames.close_code, reason[0] != '\0' ? ": " : "", reason);
  }
  /* Tell the peer why, as RFC 6455 asks; it goes out if it can. */
  uint16_t code = sj_wsf_close_code(err);
  if (code != 0)
    sj_wsf_send_close(&w->frames, code, sj_wsf_strerror(err));
  return sj_filter_error(&w->f, err == SJ_WSF_ENOMEM ? UV_ENOMEM : UV_EPROTO, "%s",
                         sj_wsf_strerror(err));
}

static int ws_decode(sj_filter_t *f, const char *in, size_t inlen, size_t *used, char *out,
                     size_t cap, size_t *produced) {
  ws_t *w = (ws_t *)f;
  if (!f->handshake_done)
    return handshake_input(w, in, inlen, used);
  int rc = sj_wsf_decode(&w->frames, in, inlen, used, out, cap, produced);
  if (rc == SJ_WSF_CLOSED)
    return SJ_FILTER_EOF;
  return rc < 0 ? frames_failed(w, rc) : 0;
}

static int ws_encode(sj_filter_t *f, const char *buf, size_t len) {
  ws_t *w = (ws_t *)f;
  size_t n = len < SJ_WS_MESSAGE_MAX ? len : SJ_WS_MESSAGE_MAX;
  if (sj_wsf_send_binary(&w->frames, buf, n) != 0)
    return sj_filter_error(f, UV_ENOMEM, "out of memory");
  return (int)n;
}

static int ws_finish(sj_filter_t *f) {
  ws_t *w = (ws_t *)f;
  if (sj_wsf_send_close(&w->frames, SJ_WSF_CODE_NORMAL, NULL) != 0)
    return sj_filter_error(f, UV_ENOMEM, "out of memory");
  return 0;
}

/* The lower write side waits for the peer's close (see ws.h). */
static int ws_hold_lower(sj_filter_t *f) { return !((ws_t *)f)->frames.close_received; }

static int ws_truncated(sj_filter_t *f) {
  if (!f->handshake_done)
    return sj_filter_error(f, UV_EPROTO, "peer closed the connection during the handshake");
  return sj_filter_error(f, UV_EPROTO,
                         "peer closed the connection without a close frame (truncated)");
}

static void ws_destroy(sj_filter_t *f) {
  ws_t *w = (ws_t *)f;
  sj_wsf_free(&w->frames);
  free(w->head);
  free(w);
}

static const sj_filter_codec_t ws_codec = {
    .name = "ws",
    .begin = ws_begin,
    .decode = ws_decode,
    .encode = ws_encode,
    .finish = ws_finish,
    .truncated = ws_truncated,
    .destroy = ws_destroy,
    .hold_lower = ws_hold_lower,
};

/* ---- streams -------------------------------------------------------------- */

int sj_ws_path_ok(const char *path) { return path != NULL && sj_wsh_path_ok(path, SJ_WS_PATH_MAX); }

/* The client's request, made up front so that a bad host is refused here;
 * begin sends it. */
static int make_request(ws_t *w, const char *host) {
  unsigned char nonce[SJ_WSH_NONCE_LEN];
  if (host == NULL || strlen(host) > SJ_WS_HOST_MAX)
    return UV_EINVAL;
  if (RAND_bytes(nonce, sizeof nonce) != 1)
    return UV_EIO;
  sj_wsh_make_key(nonce, w->key);
  long n = sj_wsh_request(w->head, SJ_WSH_HEAD_MAX, host, w->path, w->key);
  if (n < 0)
    return UV_EINVAL;
  w->head_len = (size_t)n;
  return 0;
}

static int setup(ws_t *w, sj_ws_role_t role, const char *host, const char *path) {
  if ((role != SJ_WS_CLIENT && role != SJ_WS_SERVER) || !sj_ws_path_ok(path))
    return UV_EINVAL;
  w->server = role == SJ_WS_SERVER;
  snprintf(w->path, sizeof w->path, "%s", path);
  if ((w->head = malloc(SJ_WSH_HEAD_MAX)) == NULL)
    return UV_ENOMEM;
  if (!w->server) {
    int rc = make_request(w, host);
    if (rc != 0)
      return rc;
  }
  return sj_wsf_init(&w->frames, w->server, to_queue, &w->f) == 0 ? 0 : UV_ENOMEM;
}

int sj_ws_stream_new(sj_stream_t *lower, sj_ws_role_t role, const char *host, const char *path,
                     sj_layer_cb cb, void *arg, sj_stream_t **out) {
  ws_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    return UV_ENOMEM;
  sj_filter_init(&w->f, lower, &ws_codec, cb, arg);
  int rc = setup(w, role, host, path);
  if (rc != 0) {
    sj_wsf_free(&w->frames);
    free(w->head);
    free(w);
    return rc;
  }
  sj_filter_start(&w->f);
  *out = &w->f.base;
  return 0;
}
