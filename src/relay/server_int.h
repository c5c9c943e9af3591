/*
 * The relay server's insides, shared by its files:
 *   server.c         listening, admission, stop and close, stats, logging
 *   server_client.c  one client's life: timers, finishing, closing
 *   server_input.c   reading and parsing a client, forwarding its messages
 *   server_output.c  a client's queue of output, flushing, backpressure
 *   server_names.c   the registry of names
 *
 * Work that one client's event makes for others (a sender that may go on,
 * a receiver with new output) is put on the server's ready and dirty lists
 * and done by sj__relay_run() at the end of the event, so that nothing
 * recurses from one client into another.
 */
#ifndef SJ_RELAY_SERVER_INT_H
#define SJ_RELAY_SERVER_INT_H

#include "list.h"
#include "listener.h"
#include "pool.h"
#include "protocol.h"
#include "server.h"
#include "server_names.h"
#include "stream.h"

typedef struct relay_client relay_client_t;

struct relay_client {
  sj_link_t link; /* in srv->clients until freed */
  sj_relay_server_t *srv;
  sj_stream_t *stream;
  uv_timer_t timer;     /* the nearest of the registration, idle and stall deadlines */
  sj_relay_name_t name; /* set on registration; kept for logs after */
  sj_relay_parser_t parser;
  uint64_t since_ms, last_in_ms, last_out_ms; /* loop time */
  /* Input: the message being read goes to dest (NULL: none, or dropped). */
  sj_chunk_t *parked; /* input held while blocked */
  relay_client_t *dest;
  sj_link_t dest_link; /* in dest->senders while dest is set */
  uint64_t msg_len;
  /* Output: what is queued for this client. */
  sj_chunk_t *out_head, *out_tail;
  size_t out_bytes;
  size_t in_flight; /* of the head chunk, given to the write in flight */
  /* Clients whose current message comes here, in the order their headers
   * arrived. Only the first may queue bytes: a receiver's stream carries one
   * message at a time, so the others wait (are not read) for their turn. */
  sj_link_t senders;
  sj_link_t ready_link; /* in srv->ready: may go on reading (or must end) */
  sj_link_t dirty_link; /* in srv->dirty: has output to flush */
  int handles;          /* stream and timer not yet closed */
  unsigned registered : 1;
  unsigned header_pending : 1; /* dest's header is not queued yet */
  unsigned blocked : 1;        /* waits for dest to drain; not read */
  unsigned reading : 1;
  unsigned writing : 1;
  unsigned cut : 1;      /* a message to it was cut short: it must end */
  unsigned draining : 1; /* ends once its output is written */
  unsigned closing : 1;
};

struct sj_relay_server {
  uv_loop_t *loop;
  sj_relay_options_t opts;
  sj_side_spec_t spec; /* the listener borrows it */
  sj_listener_t *listener;
  sj_pool_t pool;
  sj_relay_names_t names;
  sj_link_t clients;
  sj_link_t ready, dirty;
  uv_timer_t drain; /* the deadline of a graceful stop */
  sj_relay_stats_t stats;
  int refs; /* listener, drain timer and clients not yet freed */
  int running, stopping, done, closing, listener_closed;
  int accept_error_logged;
  sj_relay_server_cb close_cb;
};

/* server.c */
void sj__relay_log(sj_relay_server_t *srv, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int sj__relay_logs(const sj_relay_server_t *srv, sj_log_level_t level);
void sj__relay_run(sj_relay_server_t *srv);
void sj__relay_client_freed(sj_relay_server_t *srv);

/* server_client.c */
void sj__relay_client_start(sj_relay_server_t *srv, sj_stream_t *s);
/* "NAME (ADDR)" once registered, else "ADDR". */
void sj__relay_client_label(const relay_client_t *c, char *buf, size_t len);
/* Logs "LABEL: WHY" (when fmt is not NULL) and closes at once. */
void sj__relay_client_close(relay_client_t *c, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Logs, stops reading and frees the name; closes once its output is out. */
void sj__relay_client_finish(relay_client_t *c, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Recomputes the client's nearest deadline. */
void sj__relay_client_arm(relay_client_t *c);
/* Called from the ready list. */
void sj__relay_client_resume(relay_client_t *c);

/* server_input.c */
void sj__relay_on_read(sj_stream_t *s, int status, sj_chunk_t *chunk);
/* Handles input (chunk may be NULL) until it is used up or the client must
 * wait; owns chunk. Starts reading again when it is done. */
void sj__relay_input(relay_client_t *c, sj_chunk_t *chunk);

/* server_output.c */
int sj__relay_out_full(const relay_client_t *c);
/* Copies bytes to the client's queue. 0, or UV_ENOMEM. */
int sj__relay_out_append(relay_client_t *c, const char *bytes, size_t len);
/* Queues a whole chunk (its bytes from off on); takes ownership. */
void sj__relay_out_push(relay_client_t *c, sj_chunk_t *chunk);
void sj__relay_out_flush(relay_client_t *c);
/* Returns every queued chunk to the pool (after the stream has closed). */
void sj__relay_out_discard(relay_client_t *c);
/* Lets every sender blocked on c go on (c is going away). */
void sj__relay_wake_senders(relay_client_t *c);
/* Lets the first sender to c go on, if it waits and c has room. */
void sj__relay_wake_first(relay_client_t *c);
/* c's message to its receiver ends (done, dropped, or c goes): the next
 * sender in line there may go on. */
void sj__relay_end_turn(relay_client_t *c);

#endif
