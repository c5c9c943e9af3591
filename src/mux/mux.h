/*
 * The mux: many logical channels over one carrier stream (TCP, relay
 * messages, TLS, a WebSocket: any sj_stream_t), framed by frame.h.
 *
 * Each channel is itself an sj_stream_t with the whole contract of
 * stream.h (reads deliver pool chunks, one write in flight, shutdown sends
 * FIN, close with reset sends RESET), so a pair or pump joins a channel to
 * a socket as it joins two sockets.
 *
 * Flow control is per channel and per direction: a sender may have at most
 * SJ_MUX_INITIAL_WINDOW bytes that the receiving channel's reader has not
 * yet taken; the receiver grants more (WINDOW frames) as its reader takes
 * them. So a channel whose reader stops costs at most one window of memory
 * and never holds up the others, and the carrier is always read. Channels
 * with something to send take turns (round robin, DATA frames of at most
 * 16 KiB), with one carrier write in flight and at most two 128 KiB output
 * buffers per session.
 *
 * Memory: per session about 260 KiB of buffers; per channel at most one
 * window of received bytes (256 KiB) plus a small struct; channels are
 * limited by max_channels.
 *
 * Every callback (channel reads and write completions, accepts, the end of
 * the session) runs from the loop, never from inside the call that caused
 * it.
 */
#ifndef SJ_MUX_H
#define SJ_MUX_H

#include "frame.h"
#include "stream.h"

typedef struct sj_mux sj_mux_t;

/* The peer opened a channel; the callee owns it (it must close it). */
typedef void (*sj_mux_accept_cb)(sj_mux_t *m, sj_stream_t *channel, void *data);
/* The session has ended (not called after sj_mux_close()): status says why
 * (UV_EOF: the carrier ended; UV_ETIMEDOUT: the peer went silent;
 * UV_EPROTO: a protocol error; UV_ECONNABORTED: the peer said goodbye; or
 * the carrier's error), and why says it in words. Channels still open have
 * failed with UV_ECONNABORTED (UV_ETIMEDOUT after a timeout). The callee
 * still has to call sj_mux_close(). */
typedef void (*sj_mux_end_cb)(sj_mux_t *m, int status, const char *why, void *data);

typedef struct {
  int initiator;              /* 1: this side opens odd channel ids, else even  */
  unsigned max_channels;      /* open at once (default 1024); the peer's OPENs
                                 beyond it are refused                          */
  unsigned ping_ms;           /* PING this often (default 10000; 0: never)      */
  unsigned idle_timeout_ms;   /* the session is dead after this long without a
                                 frame from the peer (default 30000; 0: never);
                                 found within idle_timeout_ms + ping_ms         */
  sj_mux_accept_cb on_accept; /* NULL: the peer's OPENs are refused           */
  sj_mux_end_cb on_end;
  void *data;
} sj_mux_options_t;

void sj_mux_options_init(sj_mux_options_t *o);

/*
 * Starts a session over carrier, which the mux owns from then on (it reads
 * it, writes it and closes it; carrier->data is the mux's). Channels use the
 * carrier's pool, which must outlive them and everything that holds their
 * chunks. Returns 0, or a negative code with the carrier left to the caller.
 */
int sj_mux_new(sj_stream_t *carrier, const sj_mux_options_t *opts, sj_mux_t **out);

/* Opens a channel (the OPEN frame goes out before its first data); the
 * caller owns it. Returns 0, or UV_ECONNABORTED once the session has ended,
 * UV_EMFILE at max_channels, UV_ENOMEM. */
int sj_mux_open(sj_mux_t *m, sj_stream_t **out);
/* The same, with a tag the peer reads with sj_mux_channel_tag(): what the
 * channel is for, when a session serves several things (sj_mux_open() is
 * tag 0). */
int sj_mux_open_tagged(sj_mux_t *m, uint32_t tag, sj_stream_t **out);

/*
 * Ends the session if it has not ended (channels still open fail with
 * UV_ECONNABORTED and the peer is sent GOAWAY), and releases it: no
 * callback of the session runs after this call. The mux frees itself once
 * the carrier and every channel have closed.
 */
void sj_mux_close(sj_mux_t *m);

/* Closes a channel the peer opened because it cannot be served (its
 * connect failed, say): the peer's channel fails with UV_ECONNREFUSED
 * rather than UV_ECONNRESET. Otherwise as sj_stream_close(ch, 1, cb).
 * (Closing a channel without a reset before anything was sent on it does
 * the same, which is how a connector's failed dial refuses it.) */
void sj_mux_refuse(sj_stream_t *channel, sj_stream_close_cb cb);

/* Channels open now (not yet closed by their owners, or not yet taken). */
unsigned sj_mux_channels(const sj_mux_t *m);
/* A channel's id (odd ones were opened by the initiator). */
uint32_t sj_mux_channel_id(const sj_stream_t *channel);
/* The tag its opener gave it. */
uint32_t sj_mux_channel_tag(const sj_stream_t *channel);

#endif
