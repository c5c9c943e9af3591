/* Running a verifier (sj_verifier_t, see sockjoin.h) on one stream: the
 * bytes it is shown, what it writes, and its decision (verify.c). */
#ifndef SJ_VERIFY_H
#define SJ_VERIFY_H

#include "list.h"
#include "stream.h"

typedef struct {
  /*
   * The decision. On accept (status 0) the stream comes back with the bytes
   * not consumed (a chunk list, may be NULL) and whether its input had
   * already ended. Otherwise (SJ_EAUTH with why, or the stream's error) the
   * stream stays with the verification, which closes it.
   */
  void (*done)(sj_verify_t *v, int status, const char *why, sj_stream_t *s, sj_chunk_t *rest,
               int eof, void *arg);
  /* A failed verification has closed its stream and freed itself. */
  void (*closed)(void *owner);
} sj_verify_events_t;

/* Starts verifying s (borrowed until done). A refused peer is given a
 * moment to read its reason; meanwhile its verification is in the list
 * refusing (may be NULL), where sj__verify_close_refusals() can end it.
 * Returns 0, or a negative code with s untouched. */
int sj__verify_start(sj_stream_t *s, sj_side_t side, const sj_verifier_t *vf,
                     const sj_verify_events_t *ev, void *arg, void *owner, sj_link_t *refusing,
                     sj_verify_t **out);
/* Closes every refused peer still lingering in the list. */
void sj__verify_close_refusals(sj_link_t *refusing);

/* Ends a verification without a decision (its deadline, or the connector
 * closing); done is not called. With why, the peer is told in one line
 * before the stream closes; without, it closes at once. */
void sj__verify_abort(sj_verify_t *v, const char *why);

#endif
