/* The relay's registry of names: a chained hash table of entries that live
 * inside the clients (no allocation per name), grown by doubling. */
#ifndef SJ_RELAY_SERVER_NAMES_H
#define SJ_RELAY_SERVER_NAMES_H

#include "protocol.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sj_relay_name {
  struct sj_relay_name *next; /* in its bucket */
  uint32_t hash;
  size_t len; /* 0 until a name is set */
  char text[SJ_RELAY_NAME_MAX];
} sj_relay_name_t;

typedef struct {
  sj_relay_name_t **buckets;
  size_t nbuckets; /* a power of two, or 0 before the first add */
  size_t count;
} sj_relay_names_t;

void sj_relay_names_init(sj_relay_names_t *t);
/* Frees the table (not the entries, which belong to their clients). */
void sj_relay_names_free(sj_relay_names_t *t);
/* Sets the entry's name (1 to SJ_RELAY_NAME_MAX bytes, else UV_EINVAL). */
int sj_relay_name_set(sj_relay_name_t *n, const char *text, size_t len);
sj_relay_name_t *sj_relay_names_find(const sj_relay_names_t *t, const char *text, size_t len);
/* Adds an entry whose name is set. Returns 0, UV_EEXIST when the name is
 * taken, or UV_ENOMEM when the first table cannot be had. */
int sj_relay_names_add(sj_relay_names_t *t, sj_relay_name_t *n);
/* Removes an entry that was added. */
void sj_relay_names_remove(sj_relay_names_t *t, sj_relay_name_t *n);

#endif
