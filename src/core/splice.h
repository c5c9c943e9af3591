/*
 * The zero-copy path: bytes move from one kernel socket to another through
 * a pipe with splice(2), never entering user space.
 *
 * The pipe holds bytes only during one call: when the destination cannot
 * take everything, the caller empties the pipe into ordinary chunks, so a
 * single pipe serves every pair on a loop and descriptors stay bounded.
 */
#ifndef SJ_SPLICE_H
#define SJ_SPLICE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int rd, wr; /* the pipe, or -1 before first use */
  size_t cap; /* its capacity */
} sj_splicer_t;

typedef struct {
  size_t in;    /* bytes taken from the source             */
  size_t out;   /* bytes given to the destination          */
  size_t stuck; /* bytes left in the pipe: destination full */
  int eof;      /* the source has ended                    */
  int dry;      /* the source had no more input for now     */
} sj_splice_result_t;

void sj_splicer_init(sj_splicer_t *sp);
void sj_splicer_close(sj_splicer_t *sp);

/*
 * Moves bytes from src to dst, at most step bytes per pass (so at most step
 * can be left stuck), until the source has nothing more, the destination is
 * full, or budget bytes have moved. Returns 0, or a negative
 * errno: a failure to make the pipe (EMFILE and the like; nothing moved), or
 * the source's or the destination's error.
 */
int sj_splice_move(sj_splicer_t *sp, int src, int dst, size_t step, size_t budget,
                   sj_splice_result_t *r);

/* Takes up to len stuck bytes out of the pipe; returns the count or -errno. */
int sj_splicer_take(sj_splicer_t *sp, char *buf, size_t len);

/* Throws away whatever the pipe holds (after an error). */
void sj_splicer_discard(sj_splicer_t *sp);

#endif
