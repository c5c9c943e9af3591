/*
 * The pump: one direction of a pair. It reads from src, and writes to dst
 * in order; it holds at most about hwm bytes (it stops reading above the
 * mark and resumes below half of it), passes end of input on as a shutdown
 * of dst once everything read has been written, and counts bytes.
 *
 * Before dst is known (a socket waiting for its partner) the pump already
 * reads, up to the mark, so that bytes sent early are kept and errors are
 * seen; they are written when the pump is connected to its dst.
 *
 * Given a splicer, the pump moves bytes between two plain kernel sockets
 * with splice(2) whenever its queue is empty and nobody watches the bytes;
 * what the destination cannot take at once lands in the queue and goes the
 * copy path's way, and splicing resumes once the queue has drained. Both
 * paths keep the same guarantees: order, the mark, half-close, counts.
 *
 * Given a transformer, every chunk read passes through it and what it
 * emits is queued instead (the copy path only); at end of input it is
 * asked to emit what it still holds. bytes_read counts the source's bytes
 * and bytes_written the destination's, so both stay exact.
 */
#ifndef SJ_PUMP_H
#define SJ_PUMP_H

#include "splice.h"
#include "stream.h"

#include <stdint.h>

typedef struct sj_pump sj_pump_t;

typedef struct {
  /* End of input was passed on: dst's write direction is shut down. */
  void (*on_end)(sj_pump_t *p);
  /* Reading src or writing dst failed; the pump does nothing more. */
  void (*on_error)(sj_pump_t *p, int err);
  /* Optional: a chunk is about to be relayed (for traffic logging). */
  void (*on_chunk)(sj_pump_t *p, const char *bytes, size_t len);
} sj_pump_events_t;

struct sj_pump {
  sj_stream_t *src;
  sj_stream_t *dst; /* NULL until connected */
  sj_pool_t *pool;  /* src's, kept: a late write callback may outlive src */
  const sj_pump_events_t *ev;
  void *owner;
  sj_chunk_t *head, *tail; /* read, not yet written */
  size_t queued;           /* bytes in head..tail    */
  size_t hwm;
  sj_splicer_t *splicer; /* NULL: copy path only */
  sj_transformer_t xf;   /* fn NULL: bytes pass unchanged */
  uint64_t bytes_read;
  uint64_t bytes_written;
  unsigned reading : 1; /* a read is requested from src          */
  unsigned polling : 1; /* ... as readiness, for the splice path */
  unsigned no_splice : 1; /* no pipe could be had                */
  unsigned bulk : 1;    /* a read has filled a whole chunk       */
  unsigned src_eof : 1; /* src ended (or the pump was told to stop) */
  unsigned xf_flushed : 1; /* the transformer has seen the end      */
  unsigned writing : 1; /* a write to dst is in flight           */
  unsigned shutting : 1;
  unsigned dst_closes : 1; /* dst is closed as soon as this direction ends */
  unsigned ended : 1;
  unsigned failed : 1;
  unsigned closed : 1;
};

/* Starts reading src; the pump becomes src's reader (src->data = p).
 * splicer may be NULL (copy path only). */
int sj_pump_start(sj_pump_t *p, sj_stream_t *src, size_t hwm, sj_splicer_t *splicer,
                  const sj_pump_events_t *ev, void *owner);
/* Gives the pump its destination and its transformer (NULL or one whose fn
 * is NULL: none), and writes what is already queued, transformed. */
void sj_pump_connect(sj_pump_t *p, sj_stream_t *dst, const sj_transformer_t *xf);
/* The other direction has ended, so dst will be closed the moment this one
 * ends: a socket's close then says the end itself, and the shutdown that
 * would say it first is skipped. */
void sj_pump_dst_closes_at_end(sj_pump_t *p);
/* Stops reading and treats src as ended: what was read is still delivered. */
void sj_pump_finish_input(sj_pump_t *p);
/* Detaches the pump before its streams close: no events from now on, the
 * queued chunks go back to the pool, and the transformer is released. */
void sj_pump_close(sj_pump_t *p);

#endif
