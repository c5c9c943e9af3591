/*
 * A relay client as a stream: the carrier of a tunnel through a
 * `sockjoin relay` (the TCP Relay protocol, protocol.h).
 *
 * It connects to the relay, registers NAME, and then carries bytes to and
 * from one peer name: writes become "PEER|N|" messages (cut to fit the
 * relay's message limit), and the payloads of "PEER|N|" deliveries are
 * read back; messages from any other sender are ignored. Inside the
 * payloads it speaks the link of link.h, so that the stream is one session
 * between two tunnel ends: it is ready once the peer's end has answered,
 * and it fails (UV_ECONNRESET) if the peer's end starts another session,
 * since bytes in flight were lost. It keeps its registration alive with
 * "NAME|0|" whenever it has sent nothing for a while.
 *
 * The stream follows stream.h, with these limits: no shutdown
 * (UV_ENOTSUP), and writes fail with UV_ENOTCONN until it is ready; a
 * try_write that takes part of a message leaves it to be finished by the
 * owner's next write (of the rest of the same bytes, as stream.h has it). After it is ready, a
 * failure (the relay closed the connection, the peer's session changed) reaches the reader as an
 * error at once, and the write in flight fails with it.
 */
#ifndef SJ_RELAY_CLIENT_H
#define SJ_RELAY_CLIENT_H

#include "protocol.h"
#include "stream.h"

typedef struct {
  const char *name;             /* this end's name (copied)                     */
  const char *peer;             /* the far end's name (copied)                  */
  uint8_t role;                 /* told to the peer in HELLO ('L', 'C'); a peer of
                                   the same role fails the handshake (0: any)    */
  uint64_t max_message;         /* the relay's payload limit (default 16 MiB)   */
  unsigned keepalive_ms;        /* "NAME|0|" after this long without sending
                                   (default 10000; the relay's idle timeout is
                                   30 s by default)                             */
  unsigned hello_ms;            /* HELLO is resent this often until the peer
                                   answers (default 500)                        */
  double connect_timeout_s;     /* to reach the relay (default 10)           */
  sj_keepalive_t tcp_keepalive; /* default SJ_KEEPALIVE_DEFAULTS         */
  /* Optional: a note for a verbose log (a message from another sender was
   * ignored, say); msg is valid during the call. */
  void (*note)(const char *msg, void *data);
  void *note_data;
} sj_relay_client_options_t;

void sj_relay_client_options_init(sj_relay_client_options_t *o);

/* Checks a name for the relay: 1 to 255 bytes, no '|'. Returns 0, or a
 * static reason. */
const char *sj_relay_name_problem(const char *name);

/*
 * Called with status 0 once the peer's end has answered (the stream
 * carries bytes from then on), and with a failure at most once, before or
 * after that, with why in words (before: the stream can then only be
 * closed; after: its reader gets the error too). Never called after the
 * stream has been closed.
 */
typedef void (*sj_relay_client_cb)(sj_stream_t *s, int status, const char *why, void *data);

/*
 * Starts connecting to the relay at relay (a connect spec, copied) and
 * returns the stream at once in *out; the caller owns it and must close it
 * (also after a failure). The stream's chunks come from pool, which must
 * outlive it and whatever holds its chunks. Returns 0, or a negative code
 * (a bad name, UV_ENOMEM) with nothing to close.
 */
int sj_relay_client_new(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *relay,
                        const sj_relay_client_options_t *opts, sj_relay_client_cb cb, void *data,
                        sj_stream_t **out);

/* Why the stream failed, in words ("" while it has not). */
const char *sj_relay_client_why(const sj_stream_t *s);
/* Messages dropped: from other senders, or not of the link. */
uint64_t sj_relay_client_ignored(const sj_stream_t *s);

#endif
