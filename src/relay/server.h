/*
 * The named relay (the TCP Relay seed): clients register a name with
 * "NAME|", then send "DEST|N|" and N bytes to any other name; the relay
 * delivers "SENDER|N|" and the bytes (or the bare bytes, in raw mode).
 *
 * Payloads are forwarded as they arrive, never buffered whole. A receiver's
 * stream carries one message at a time: senders to it take turns in the
 * order their headers arrived, and one waiting for its turn is not read.
 * Each client has a bounded queue of output; a sender whose current
 * destination is over its bound is not read until that queue drains
 * (backpressure), so nothing accepted is ever dropped and memory stays
 * bounded per client. A receiver that makes no progress for the stall
 * timeout is disconnected.
 *
 * Library-internal (not in sockjoin.h). Like the rest of the library it
 * never prints: it reports through the log callback.
 */
#ifndef SJ_RELAY_SERVER_H
#define SJ_RELAY_SERVER_H

#include "sockjoin.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sj_relay_server sj_relay_server_t;

typedef void (*sj_relay_log_cb)(sj_relay_server_t *s, sj_log_level_t level, const char *msg,
                                void *data);
typedef void (*sj_relay_server_cb)(sj_relay_server_t *s, void *data);

typedef struct {
  double register_timeout_s;  /* to send "NAME|" after connecting; default 3   */
  double idle_timeout_s;      /* with no byte received; default 30             */
  double stall_timeout_s;     /* with output pending and none written; 60      */
  uint64_t max_message;       /* payload limit; default 16 MiB                 */
  unsigned max_clients;       /* connections at once; 0 = unlimited            */
  size_t buffer_size;         /* per-client pending output mark; 256 KiB       */
  int deliver_raw;            /* 1: deliver the bare payload, no header        */
  int verbose;                /* lifecycle events at SJ_LOG_INFO               */
  sj_keepalive_t keepalive;   /* TCP keep-alive; default SJ_KEEPALIVE_DEFAULTS */
  sj_relay_log_cb log_cb;     /* NULL: messages are dropped                    */
  sj_relay_server_cb on_done; /* after sj_relay_server_stop() has finished    */
  void *data;                 /* passed to the callbacks                       */
} sj_relay_options_t;

void sj_relay_options_init(sj_relay_options_t *opts);

typedef struct {
  uint64_t clients;    /* connections accepted                              */
  uint64_t active;     /* connections open now                              */
  uint64_t registered; /* successful registrations                          */
  uint64_t messages;   /* messages delivered (queued whole to a receiver)   */
  uint64_t bytes;      /* payload bytes delivered                           */
  uint64_t keepalives; /* "SELF|0|" frames                                  */
  uint64_t dropped;    /* messages to names not registered, or cut short    */
  uint64_t refused;    /* connections over --max-clients                    */
  uint64_t clashes;    /* registrations of a name already taken             */
  uint64_t malformed;  /* connections closed for a malformed frame          */
  uint64_t timeouts;   /* closed for registration or idle timeout           */
  uint64_t stalled;    /* receivers closed for the stall timeout            */
} sj_relay_stats_t;

/*
 * Binds and listens on listen (a SJ_SIDE_LISTEN spec, copied) and starts
 * serving on loop. opts is copied. Returns 0 and *out, or a negative code
 * (UV_EADDRINUSE, ...) with nothing left open.
 */
int sj_relay_server_new(sj_relay_server_t **out, uv_loop_t *loop, const sj_side_spec_t *listen,
                        const sj_relay_options_t *opts);

/* The bound address as text ("127.0.0.1:8080"); returns the port, or
 * SJ_ECLOSED once listening has stopped. */
int sj_relay_server_address(const sj_relay_server_t *s, char *buf, size_t len);

/*
 * Stops gracefully: listening stops, no client is read any more, and what
 * is queued for each client is delivered for at most drain_ms; then every
 * connection is closed and on_done runs.
 */
void sj_relay_server_stop(sj_relay_server_t *s, unsigned drain_ms);

/* Closes everything at once and frees the server once every handle has
 * closed; cb (may be NULL) runs then. Call once. */
void sj_relay_server_close(sj_relay_server_t *s, sj_relay_server_cb cb);

void sj_relay_server_stats(const sj_relay_server_t *s, sj_relay_stats_t *out);

/* The stats as one JSON object; returns the length the whole text needs,
 * like snprintf. */
int sj_relay_stats_json(const sj_relay_stats_t *st, char *buf, size_t len);

#endif
