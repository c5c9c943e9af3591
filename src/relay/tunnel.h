/*
 * The relay tunnel: programs that do not speak the relay protocol reach a
 * far service through a `sockjoin relay`.
 *
 * One end listens locally and opens a mux channel (mux.h) per accepted
 * connection; the other end connects to its local service per channel. The
 * channels run over one relay client stream (client.h), and the connector
 * joins each channel to its socket (connector_ext.h), so every pair has
 * the pumps, logs and counts of any other.
 *
 * When the relay or the far end goes away, open connections fail (their
 * sockets are reset), local connections arriving meanwhile are closed at
 * once, and the link is tried again with capped exponential back-off until
 * it is back.
 */
#ifndef SJ_RELAY_TUNNEL_H
#define SJ_RELAY_TUNNEL_H

#include "sockjoin.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sj_tunnel sj_tunnel_t;

typedef void (*sj_tunnel_log_cb)(sj_log_level_t level, const char *msg, void *data);

typedef struct {
  sj_side_spec_t relay; /* SJ_SIDE_CONNECT: the relay                  */
  const char *name;     /* this end's name at the relay (copied)       */
  const char *peer;     /* the far end's name (copied)                 */
  int listen;           /* 1: local is a listen side, 0: a connect side */
  sj_side_spec_t local;
  uint64_t max_message;     /* the relay's limit (default 16 MiB)        */
  unsigned keepalive_ms;    /* relay keep-alive (default 10000)          */
  unsigned ping_ms;         /* heartbeat to the far end (default 5000)   */
  unsigned idle_timeout_ms; /* the far end is gone after this long
                               without a frame (default 20000)           */
  unsigned retry_min_ms;    /* first back-off (default 250)              */
  unsigned retry_max_ms;    /* back-off cap (default 10000)              */
  unsigned max_channels;    /* connections at once (default 1024)        */
  size_t buffer_size;       /* per-direction mark (default 256 KiB)      */
  double connect_timeout_s; /* to the relay and the service (default 10) */
  int verbose;              /* lifecycle events at SJ_LOG_INFO           */
  sj_tunnel_log_cb log_cb;
  void (*on_closing)(void *data); /* once, as everything starts closing (a
                                     stop has drained, or a close)        */
  void *data;
} sj_tunnel_options_t;

void sj_tunnel_options_init(sj_tunnel_options_t *o);

/* Starts the tunnel on loop: a listening end is listening when this
 * returns, and the link to the relay is on its way. Returns 0, or a
 * negative code with nothing left open (UV_EADDRINUSE, UV_EINVAL for bad
 * options). */
int sj_tunnel_new(uv_loop_t *loop, const sj_tunnel_options_t *o, sj_tunnel_t **out);

/* The local listening address as text; returns the port, or UV_EINVAL for
 * a connecting end. */
int sj_tunnel_address(const sj_tunnel_t *t, char *buf, size_t len);

/* Stops gracefully: no new connections, open ones deliver what they hold
 * for at most drain_ms, then everything closes. */
void sj_tunnel_stop(sj_tunnel_t *t, unsigned drain_ms);
/* Closes everything at once. */
void sj_tunnel_close(sj_tunnel_t *t);
/* Frees the tunnel once its loop has run dry after a stop or close. */
void sj_tunnel_free(sj_tunnel_t *t);

#endif
