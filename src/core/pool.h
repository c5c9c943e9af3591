/* Chunks of relayed bytes, recycled through a bounded free list so that a
 * busy pair costs no malloc per read and an idle one holds no buffer. */
#ifndef SJ_POOL_H
#define SJ_POOL_H

#include <stddef.h>

typedef struct sj_chunk {
  struct sj_chunk *next;
  size_t off; /* bytes already consumed                */
  size_t len; /* end of the valid bytes: data[off..len) */
  char data[];
} sj_chunk_t;

typedef struct {
  sj_chunk_t *free;
  unsigned nfree;
  unsigned max_free;
  size_t size; /* capacity of data[] in every chunk */
} sj_pool_t;

#define SJ_CHUNK_SIZE (64 * 1024)

void sj_pool_init(sj_pool_t *pool, size_t chunk_size, unsigned max_free);
/* Returns an empty chunk, or NULL when memory is exhausted. */
sj_chunk_t *sj_pool_get(sj_pool_t *pool);
void sj_pool_put(sj_pool_t *pool, sj_chunk_t *chunk);
/* Frees every chunk on the free list. */
void sj_pool_drain(sj_pool_t *pool);

static inline size_t sj_chunk_remaining(const sj_chunk_t *c) { return c->len - c->off; }

#endif
