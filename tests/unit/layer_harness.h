/*
 * A harness for stream layers (TLS, encrypt=) in unit tests: ends that
 * send a deterministic byte stream and check every byte they receive by
 * position, connected over socketpairs or loopback TCP, a middleman that
 * forwards (and can flip a byte, record, or replay), and loop helpers that
 * wait on conditions with a deadline instead of sleeping.
 */
#ifndef SJ_LAYER_HARNESS_H
#define SJ_LAYER_HARNESS_H

#include "filter.h"

#include <stdint.h>
#include <uv.h>

typedef struct {
  sj_stream_t *s;
  uv_loop_t *loop;
  /* the layer callback: its first call, and a later one */
  int hs_calls, hs_status;
  char hs_text[256];
  int late_calls, late_status;
  char late_text[256];
  /* sending: to_send bytes of the stream of seed, then a shutdown */
  uint64_t seed, to_send, sent;
  int writing, sending, shut_after, shut_started, shut_done, shut_status, write_err;
  char *wbuf;
  size_t wlen, wtaken;
  /* receiving: every byte checked against the stream of rseed */
  uint64_t rseed, received;
  int eof, read_err, mismatch, reading;
  int closed;
} peer_t;

/* Bytes and events seen by every peer, for settle(). */
extern uint64_t harness_progress;

void peer_init(peer_t *p, uv_loop_t *loop, uint64_t rseed);
void peer_free(peer_t *p);
/* The layer callback to give to sj_tls_stream_new()/sj_seal_stream_new(). */
void peer_layer_cb(sj_stream_t *s, int status, const char *text, void *arg);
/* Makes p the owner of s and starts reading unless paused. */
void peer_attach(peer_t *p, sj_stream_t *s, int read);
void peer_set_reading(peer_t *p, int on);
/* Sends n bytes of the stream of seed; shuts down after them if asked. */
void peer_send(peer_t *p, uint64_t n, uint64_t seed, int shut_after);
void peer_close(peer_t *p, int reset);
/* The failure a peer saw, at handshake or later (0 if none). */
int peer_error(const peer_t *p);
const char *peer_error_text(const peer_t *p);

/* The byte at position i of the stream of seed. */
unsigned char stream_byte(uint64_t seed, uint64_t i);

/* Runs the loop until pred(arg) holds; 0, or -1 at the deadline. */
int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned ms);
/* Runs the loop until nothing happens any more (no time involved). */
void settle(uv_loop_t *loop);
/* Closes every handle left and runs the loop dry; returns 0 when it is. */
int loop_finish(uv_loop_t *loop);

/* Two connected raw streams, over a socketpair or loopback TCP; fds[] gets
 * their descriptors (for tests that go behind a layer's back). */
int socket_pair(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **a, sj_stream_t **b, int fds[2]);
int tcp_pair(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **a, sj_stream_t **b, int fds[2]);

/* A middleman between x and y forwarding both ways; it can flip the byte at
 * flip_at[d] of direction d (0: x to y), or record what y sends. */
typedef struct {
  sj_stream_t *end[2];
  uint64_t flip_at[2];
  uint64_t passed[2];
  int recording;
  char *record;
  size_t record_len, record_cap;
  sj_chunk_t *q[2], *qt[2];
  int writing[2], eof[2], shut[2], closed;
} mitm_t;

void mitm_start(mitm_t *m, sj_stream_t *x, sj_stream_t *y);
void mitm_close(mitm_t *m);

/* A raw end that echoes what it reads (a reflecting middleman), that reads
 * and drops everything, or that writes given bytes once (and drops what it
 * reads). */
void raw_echo(sj_stream_t *s);
void raw_sink(sj_stream_t *s);
void raw_write(sj_stream_t *s, const void *buf, size_t len);

#endif
