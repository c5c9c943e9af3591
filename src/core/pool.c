#include "pool.h"

#include <stdlib.h>

void sj_pool_init(sj_pool_t *pool, size_t chunk_size, unsigned max_free) {
  pool->free = NULL;
  pool->nfree = 0;
  pool->max_free = max_free;
  pool->size = chunk_size;
}

sj_chunk_t *sj_pool_get(sj_pool_t *pool) {
  sj_chunk_t *c = pool->free;
  if (c != NULL) {
    pool->free = c->next;
    pool->nfree--;
  } else {
    c = malloc(sizeof *c + pool->size);
    if (c == NULL)
      return NULL;
  }
  c->next = NULL;
  c->off = c->len = 0;
  return c;
}

void sj_pool_put(sj_pool_t *pool, sj_chunk_t *c) {
  if (pool->nfree >= pool->max_free) {
    free(c);
    return;
  }
  c->next = pool->free;
  pool->free = c;
  pool->nfree++;
}

void sj_pool_drain(sj_pool_t *pool) {
  while (pool->free != NULL) {
    sj_chunk_t *c = pool->free;
    pool->free = c->next;
    free(c);
  }
  pool->nfree = 0;
}
