/*
 * A filter: a stream layered on a lower stream, whose bytes pass through a
 * codec on the way down (encode) and on the way up (decode). TLS (tls.c)
 * and end-to-end encryption (seal.c) are filters; because a filter is a
 * stream over any stream, they compose with each other and with every
 * transport.
 *
 * The filter owns the lower stream (its data and on_read are the filter's)
 * and does the plumbing once for every codec:
 *   - down: plain bytes written from above are encoded into a bounded queue
 *     of pool chunks (at most about SJ_FILTER_OUT_HWM bytes); one lower
 *     write is in flight at a time; a write from above completes once all
 *     of it is encoded and the queue is back under the mark.
 *   - up: chunks read from below are decoded into pool chunks delivered to
 *     on_read. read_stop stops the lower stream too, so a reader that stops
 *     holds the peer back; the filter then keeps at most one decoded chunk
 *     and one undecoded one.
 *   - the handshake runs on its own: the lower stream is read while it lasts
 *     whether or not anyone reads from above, and writes from above wait
 *     for it. Its outcome goes to the layer callback.
 *   - shutdown waits for the write in flight, queues the codec's end marker
 *     (TLS close_notify, an encrypted final message), and shuts the lower
 *     write side once the queue has drained.
 *   - end of input from below that the codec has not announced as a clean
 *     end (close_notify, final message) is a truncation: an error, never
 *     UV_EOF, so the pair is reset and the reader never mistakes a cut
 *     stream for a complete one.
 *   - close closes the lower stream (with reset if asked) without flushing:
 *     a stream closed before its shutdown ends abruptly, as a socket would.
 * No callback of the owner's runs from inside one of its calls into the
 * stream: completions and reads are delivered from the lower stream's
 * callbacks or from a deferred turn of the loop.
 */
#ifndef SJ_FILTER_H
#define SJ_FILTER_H

#include "stream.h"

/*
 * The layer callback of a secure stream. Its first call is the handshake's
 * outcome: status 0 (text NULL) once the peer is known, or a negative code
 * with a line for a log saying why ("tls: certificate verify failed:
 * hostname mismatch"). After a successful handshake it may be called once
 * more, with the error and its text, when the session fails later
 * (tampering, truncation, an alert). The same error then reaches on_read
 * (even while reading is stopped, once reading has ever started), so the
 * owner resets the stream. Never called after sj_stream_close(): closing is
 * how an owner abandons a handshake (for example at its deadline).
 */
typedef void (*sj_layer_cb)(sj_stream_t *s, int status, const char *text, void *arg);

/* decode's return when the peer has ended its stream cleanly. */
#define SJ_FILTER_EOF 1

/* Above this many encoded bytes queued towards the lower stream, the filter
 * takes no more bytes from above. */
#define SJ_FILTER_OUT_HWM (64 * 1024)

typedef struct sj_filter sj_filter_t;

typedef struct {
  const char *name; /* prefixes every error text: "tls", "encrypt" */
  /* Queues what the codec sends first (a ClientHello, a hello). */
  int (*begin)(sj_filter_t *f);
  /* Consumes some of in (*used) and writes up to cap decoded bytes to out
   * (*produced); may queue output of its own with sj_filter_send(). Returns
   * 0, SJ_FILTER_EOF, or a negative code (with sj_filter_error()). Making no
   * progress (nothing used, nothing produced) means: more input, please. */
  int (*decode)(sj_filter_t *f, const char *in, size_t inlen, size_t *used, char *out, size_t cap,
                size_t *produced);
  /* Encodes a prefix of buf into the queue; returns its length (0: not
   * now), or a negative code. Only called after the handshake. */
  int (*encode)(sj_filter_t *f, const char *buf, size_t len);
  /* Queues the end marker of the write direction. */
  int (*finish)(sj_filter_t *f);
  /* The lower stream ended with no end marker: returns the error to report,
   * its text set with sj_filter_error(). */
  int (*truncated)(sj_filter_t *f);
  /* Frees the codec's state and the filter itself (it lives inside it). */
  void (*destroy)(sj_filter_t *f);
  /* Optional: nonzero while the lower write side must stay open after the
   * end marker has gone out (a WebSocket waits for the peer's close frame,
   * as a proxy ends the whole connection on a half-close). The shutdown
   * from above completes once the marker is written; the lower write side
   * is shut when this turns 0 (checked on every turn), or never. */
  int (*hold_lower)(sj_filter_t *f);
} sj_filter_codec_t;

/* Private to filter.c: codecs embed it as their first member and use only
 * the functions below. */
struct sj_filter {
  sj_stream_t base;
  sj_stream_t *lower;
  const sj_filter_codec_t *codec;
  sj_layer_cb on_event;
  void *event_arg;
  uv_idle_t kick; /* a deferred turn: completions never run inside a call */
  sj_chunk_t *in_head, *in_tail; /* read from below, not yet decoded */
  sj_chunk_t *up;                /* decoded, not yet delivered       */
  sj_chunk_t *out_head, *out_tail; /* encoded, not yet written below */
  size_t out_queued;
  size_t in_flight; /* bytes of out_head under the lower write */
  const char *wbuf; /* the write in flight from above */
  size_t wlen, woff;
  sj_write_cb wcb;
  void *warg;
  sj_shutdown_cb scb;
  void *sarg;
  sj_stream_close_cb close_cb;
  int error;
  int pending_closes;
  char text[256];
  unsigned reading : 1, read_started : 1;
  unsigned lower_reading : 1, lower_writing : 1, lower_eof : 1, lower_broken : 1;
  unsigned handshake_done : 1, handshake_reported : 1;
  unsigned up_eof : 1, eof_delivered : 1;
  unsigned failed : 1, failure_reported : 1, error_delivered : 1;
  unsigned wpending : 1, shut_requested : 1, finished : 1, lower_shutting : 1, shut_done : 1;
  unsigned held : 1; /* shut from above, the lower write side held open */
  unsigned started : 1, closing : 1, busy : 1, again : 1;
};

/* Sets up f (inside the codec's allocation) over lower, taking nothing yet:
 * a codec whose own setup then fails just frees its allocation. */
void sj_filter_init(sj_filter_t *f, sj_stream_t *lower, const sj_filter_codec_t *codec,
                    sj_layer_cb cb, void *arg);
/* Takes the lower stream over and starts the codec (begin) and the
 * handshake. From here on the filter is a stream; its errors are reported
 * through the layer callback, never by this call. */
void sj_filter_start(sj_filter_t *f);

/* For codecs: queue encoded bytes towards the lower stream. reserve gives
 * space at the tail of the queue, contiguous for at least want bytes when a
 * chunk can hold them (*avail says how much; NULL when out of memory);
 * commit adds the n bytes written there. */
int sj_filter_send(sj_filter_t *f, const void *buf, size_t len);
char *sj_filter_reserve(sj_filter_t *f, size_t want, size_t *avail);
void sj_filter_commit(sj_filter_t *f, size_t n);
/* The handshake has succeeded: writes may flow, the owner is told. */
void sj_filter_handshake_done(sj_filter_t *f);
/* Sets the error text ("NAME: " and the formatted reason; the first text
 * wins) and returns code, for codecs to return. */
int sj_filter_error(sj_filter_t *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Bytes the filter s holds in its queues in both directions (tests use it
 * to check that memory stays bounded). */
size_t sj_filter_buffered(const sj_stream_t *s);

/* Replaces the layer callback of the secure stream s (a TLS or encryption
 * stream), e.g. once its handshake's listener has gone. */
void sj_layer_set_cb(sj_stream_t *s, sj_layer_cb cb, void *arg);

#endif
