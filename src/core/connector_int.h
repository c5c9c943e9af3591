/* The connector's insides, shared by connector.c (queues, modes, lifetime)
 * and pair.c (two joined ends). */
#ifndef SJ_CONNECTOR_INT_H
#define SJ_CONNECTOR_INT_H

#include "auth.h"
#include "dial.h"
#include "list.h"
#include "listener.h"
#include "pump.h"

typedef struct sj_pair sj_pair_t;
typedef struct sj_prep sj_prep_t;

/* One socket in the connector: its stream, and the pump that reads it. */
typedef struct {
  sj_link_t link; /* in a waiting queue, or in the dialing list */
  sj_connector_t *c;
  sj_side_t side;
  sj_stream_t *stream;
  sj_pump_t pump;
  sj_pair_t *pair;  /* once paired */
  sj_dial_t *dial;  /* the outbound partner it waits for (listen/connect) */
  sj_prep_t *prep;  /* ... and that partner's preparation */
  int closing;
} sj_end_t;

/* A socket being prepared (prep.c). done gets the prepared stream, which
 * it owns, or a failure, after which the socket is closed (p is NULL for a
 * deadline). */
typedef void (*sj_prep_done_cb)(sj_prep_t *p, int status, sj_stream_t *s, void *arg);

struct sj_prep {
  sj_link_t link; /* in the connector's preparing (or standing) list */
  sj_connector_t *c;
  sj_side_t side;
  sj_stream_t *stream; /* the top layer so far */
  sj_origin_t origin;
  int stage;
  int standing;      /* a --persist connection: waits for its peer */
  uint64_t deadline; /* loop time; 0 once it has left the deadline */
  sj_verify_t *verify;
  sj_prep_done_cb done;
  void *arg;
};

/* A side's security, made from its options when the connector starts. */
typedef struct {
  sj_auth_t auth;
  void *tls_ctx; /* SSL_CTX; NULL: no TLS      */
  void *seal;    /* the encryption key; NULL: none */
} sj_side_sec_t;

struct sj_pair {
  sj_link_t link;
  sj_connector_t *c;
  uint64_t id;
  sj_end_t *end[2];
  int ended;       /* directions whose end of input was passed on */
  int open_streams;
  int status;      /* why it ended: 0, or the first error */
  int closing;
  sj_pair_info_t *final; /* taken when closing starts, before the streams go */
};

/* The sockets of one side that were paired, for stats: compact origins,
 * and the public records made from them when stats are read. */
typedef struct {
  sj_origin_t *items;
  size_t n, cap;
  uint64_t dropped;
  sj_peer_t *shown; /* what the last sj_connector_stats() handed out */
} sj_peer_log_t;

/* A fixed side (single mode): what its preparation reports to. */
typedef struct {
  sj_connector_t *c;
  sj_side_t side;
} sj_fixed_t;

struct sj_connector_s {
  uv_loop_t *loop;
  int own_loop;
  sj_options_t opts;
  sj_side_spec_t spec[2];
  sj_listener_t *listener[2];
  sj_link_t waiting[2];
  unsigned n_waiting[2];
  sj_link_t dialing; /* accepted ends waiting for their outbound partner */
  unsigned n_dialing; /* those, plus dials of fixed sides */
  sj_dial_t *fixed_dial[2];
  sj_fixed_t fixed[2];
  sj_prep_t *fixed_prep[2];
  sj_link_t standing_dials; /* --persist: dials of standing connections */
  sj_link_t pairs;
  unsigned n_pairs;
  uv_timer_t grace, drain;
  sj_link_t preparing; /* sockets under preparation, oldest first      */
  sj_link_t standing;  /* --persist connections waiting for their peer */
  unsigned n_preparing; /* both lists */
  sj_link_t refusing;   /* refused peers given a moment to read why */
  uv_timer_t prep_timer;
  sj_verifier_t verifier[2];
  struct {
    int (*fn)(void *data, sj_stream_t **out);
    void *data;
  } open[2]; /* SJ__SIDE_OPEN sides (connector_ext.h) */
  sj_side_sec_t sec[2];
  unsigned n_standing; /* --persist: dialing, preparing or waiting    */
  unsigned retry_ms;   /* --persist: the next back-off after a failure */
  uv_timer_t retry;
  sj_pool_t pool;
  sj_splicer_t splicer; /* the one pipe of the zero-copy path */
  uint64_t next_pair_id;
  /* Totals of closed pairs; open pairs are added when stats are read. */
  uint64_t pairs_formed, read[2], written[2];
  sj_peer_log_t peers[2];
  int single;       /* exactly one pair (stdio, or no listening side) */
  int accept_errors_logged[2];
  int grace_passed, done, stopping, closing;
  int refs;         /* handles and objects still to close */
  sj_close_cb close_cb;
  int done_status;
  int last_pair_status; /* how the last pair ended (a one-pair run's result) */
};

/* log.c */
void sj__log(sj_connector_t *c, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sj__log_traffic(sj_connector_t *c, sj_side_t from, uint64_t pair_id, const char *bytes,
                     size_t n);
char sj__side_letter(sj_side_t side);

/* pair.c */
/* Joins two ends (the pumps start writing to each other) and reports it. */
sj_pair_t *sj__pair_new(sj_connector_t *c, sj_end_t *a, sj_end_t *b);
/* One direction has passed its end of input on. */
void sj__pair_direction_ended(sj_pair_t *pair);
/* Stops reading both ends; what was read is still delivered. */
void sj__pair_drain(sj_pair_t *pair);
/* Closes both ends now; reset sends TCP resets. */
void sj__pair_close(sj_pair_t *pair, int status, int reset);
void sj__pair_info(const sj_pair_t *pair, sj_pair_info_t *info);

/* connector.c, for pair.c and prep.c */
void sj__pair_closed(sj_connector_t *c, sj_pair_t *pair);
void sj__connector_unref(sj_connector_t *c);

/* prep.c */
int sj__prep_needed(const sj_connector_t *c, sj_side_t side, int standing);
/* Takes s (closed on failure). Returns 0 (out may be NULL), or UV_ENOMEM,
 * in which case done is not called. */
int sj__prep_start(sj_connector_t *c, sj_side_t side, sj_stream_t *s, int standing,
                   sj_prep_done_cb done, void *arg, sj_prep_t **out);
/* Abandons a preparation; done is not called. why, if not NULL, is told to
 * a peer under verification before it is closed. */
void sj__prep_cancel(sj_prep_t *p, const char *why);
void sj__prep_on_deadline(uv_timer_t *t);
/* A layer's handshake has finished: s is the stream to go on with, or on
 * failure the one to close. */
void sj__prep_layer_done(sj_prep_t *p, int status, const char *why, sj_stream_t *s);

/* security.c: the side's TLS and encryption, set up and started */
int sj__security_open(sj_connector_t *c, sj_side_t side);
void sj__security_close(sj_connector_t *c, sj_side_t side);
int sj__prep_tls(sj_prep_t *p);
int sj__prep_seal(sj_prep_t *p);

#endif
