/* The mux's insides, shared by mux.c (session lifetime, heartbeat, the
 * deferred callbacks), mux_send.c (the output), mux_recv.c (the input) and
 * channel.c (each channel as a stream). */
#ifndef SJ_MUX_INT_H
#define SJ_MUX_INT_H

#include "mux.h"

#define SJ_MUX_OUT_CAP (128 * 1024)   /* one carrier write at most          */
#define SJ_MUX_DATA_CHUNK (16 * 1024) /* one channel's turn on the carrier */
#define SJ_MUX_BUCKETS 256            /* channel lookup by id               */
#define SJ_MUX_REFUSE_MAX 64          /* refusals waiting to be sent        */
/* Credit goes back to the sender once the reader has taken this much. */
#define SJ_MUX_GRANT (SJ_MUX_INITIAL_WINDOW / 4)

typedef struct sj_mux_channel sj_mux_channel_t;

struct sj_mux_channel {
  sj_stream_t base;
  sj_mux_t *m;
  uint32_t id;
  uint32_t tag;        /* from OPEN: what the channel is for         */
  sj_link_t by_id;     /* in a bucket while the channel is open      */
  sj_link_t send_link; /* in m->sendq while it has something to send */
  sj_link_t work_link; /* in m->workq while it has callbacks to run  */
  /* Receiving. */
  sj_chunk_t *rx_head, *rx_tail;
  uint32_t rx_window;   /* what the peer may still send              */
  uint32_t rx_consumed; /* taken by the reader, not yet granted back */
  /* Sending. */
  uint32_t tx_credit;
  const char *wbuf;
  size_t wlen, woff;
  sj_write_cb wcb;
  void *warg;
  int wstatus;
  sj_shutdown_cb scb;
  void *sarg;
  int sstatus;
  sj_stream_close_cb ccb;
  int err;             /* the channel failed: reset by the peer, or the session ended */
  uint32_t reset_code; /* sent in its RESET */
  unsigned in_table : 1;
  unsigned open_pending : 1;   /* OPEN not yet sent                     */
  unsigned window_pending : 1; /* a WINDOW frame is due                 */
  unsigned writing : 1;        /* a write is in flight                  */
  unsigned write_done : 1;     /* ... and its callback is due           */
  unsigned fin_pending : 1;    /* FIN to send once the write is out     */
  unsigned fin_sent : 1;
  unsigned sent_any : 1;      /* DATA or FIN has gone out              */
  unsigned shut_waiting : 1;  /* a shutdown callback waits for the FIN */
  unsigned shut_done : 1;     /* ... and is due                        */
  unsigned reset_pending : 1; /* RESET to send; nothing else will be   */
  unsigned send_over : 1;     /* nothing more may be sent              */
  unsigned fin_received : 1;
  unsigned reading : 1;
  unsigned reads_ended : 1; /* EOF or an error was delivered           */
  unsigned accept_pending : 1;
  unsigned closing : 1;
  unsigned close_done : 1; /* the close callback has run              */
};

struct sj_mux {
  sj_stream_t *carrier;
  uv_loop_t *loop;
  sj_pool_t *pool;
  sj_mux_options_t opts;
  sj_mux_parser_t parser;
  sj_link_t buckets[SJ_MUX_BUCKETS];
  sj_link_t sendq;       /* channels with something to send, in turn order */
  sj_link_t workq;       /* channels with callbacks to run                 */
  unsigned n_open;       /* channels in the table                          */
  unsigned n_live;       /* channel structs not yet freed                  */
  uint32_t next_id;      /* the next id this side opens              */
  uint32_t last_peer_id; /* the highest id the peer has opened       */
  /* Output: frames are gathered in out while wire is being written. */
  char *out, *wire;
  size_t out_len;
  int writing;
  uint32_t refused[SJ_MUX_REFUSE_MAX];
  unsigned n_refused;
  int ping_pending, pong_pending;
  uint8_t pong[8];
  uint64_t pings;
  uint64_t last_rx_ms;
  uv_timer_t heartbeat;
  uv_idle_t idle; /* runs the deferred callbacks */
  int handles_open;
  int ended;  /* the session is over                         */
  int status; /* why                                         */
  char why[160];
  int end_due;     /* on_end is still to be called                */
  int user_closed; /* sj_mux_close() was called                   */
  int goaway_due;  /* GOAWAY to send before the carrier closes    */
  uint32_t goaway_code;
  int carrier_dead;    /* nothing more may be written to it       */
  int carrier_closing; /* closing, or closed                      */
  int carrier_closed;
};

/* mux.c */
void sj__mux_schedule(sj_mux_channel_t *ch);
/* Ends the session: channels fail, on_end is due, and the carrier closes
 * (after a GOAWAY with goaway_code, unless that is negative). */
void sj__mux_end(sj_mux_t *m, int status, int goaway_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sj__mux_close_carrier(sj_mux_t *m);
void sj__mux_maybe_free(sj_mux_t *m);
sj_mux_channel_t *sj__mux_lookup(sj_mux_t *m, uint32_t id);
void sj__mux_insert(sj_mux_t *m, sj_mux_channel_t *ch);
void sj__mux_remove(sj_mux_channel_t *ch);

/* mux_send.c */
/* Gathers what is due into the output and writes it to the carrier. */
void sj__mux_kick(sj_mux_t *m);
/* The channel may have something to send: it joins the turn order. */
void sj__mux_want_send(sj_mux_channel_t *ch);
/* Out of the turn order if nothing is left to send (a channel queued for a
 * WINDOW and then closed): left there, it would hold the head of the queue
 * with nothing to send, and every channel behind it would wait for ever. */
void sj__mux_unwant_send(sj_mux_channel_t *ch);
/* A refusal of a channel the peer opened (RESET REFUSED). */
int sj__mux_refuse(sj_mux_t *m, uint32_t id);
/* Copies up to len bytes of a channel's data into the output at once, if
 * nobody waits for a turn; returns the bytes taken. */
size_t sj__mux_send_now(sj_mux_channel_t *ch, const char *buf, size_t len);

/* mux_recv.c */
void sj__mux_on_carrier_read(sj_stream_t *s, int status, sj_chunk_t *chunk);

/* channel.c */
sj_mux_channel_t *sj__mux_channel_new(sj_mux_t *m, uint32_t id);
/* Runs the channel's due callbacks (from the mux's idle handle). */
void sj__mux_channel_run(sj_mux_channel_t *ch);
/* The channel fails with err (reset by the peer, or the session ended). */
void sj__mux_channel_fail(sj_mux_channel_t *ch, int err);
/* Frees the channel once it is closed and has nothing left to send. */
void sj__mux_channel_maybe_free(sj_mux_channel_t *ch);
/* Received payload for the channel (copied). Returns 0 or UV_ENOMEM. */
int sj__mux_channel_push(sj_mux_channel_t *ch, const char *data, size_t len);

#endif
