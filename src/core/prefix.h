/* A stream that delivers bytes read earlier before its lower stream's own
 * input (prefix.c). */
#ifndef SJ_PREFIX_H
#define SJ_PREFIX_H

#include "stream.h"

/* Takes ownership of lower and of the chunk list (linked by next); eof says
 * the lower stream had already ended, so end of input follows the chunks.
 * Returns 0 and *out, or UV_ENOMEM with nothing taken. */
int sj_prefix_stream_new(sj_stream_t *lower, sj_chunk_t *chunks, int eof, sj_stream_t **out);

#endif
