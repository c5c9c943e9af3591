#include "server_names.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define FIRST_BUCKETS 64

/* FNV-1a: names are short, and a clash only costs a longer chain. */
static uint32_t hash_name(const char *text, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)text[i]) * 16777619u;
  return h;
}

void sj_relay_names_init(sj_relay_names_t *t) { memset(t, 0, sizeof *t); }

void sj_relay_names_free(sj_relay_names_t *t) {
  free(t->buckets);
  memset(t, 0, sizeof *t);
}

int sj_relay_name_set(sj_relay_name_t *n, const char *text, size_t len) {
  if (len == 0 || len > SJ_RELAY_NAME_MAX)
    return UV_EINVAL;
  memcpy(n->text, text, len);
  n->len = len;
  n->hash = hash_name(text, len);
  n->next = NULL;
  return 0;
}

static sj_relay_name_t **bucket(const sj_relay_names_t *t, uint32_t hash) {
  return &t->buckets[hash & (t->nbuckets - 1)];
}

sj_relay_name_t *sj_relay_names_find(const sj_relay_names_t *t, const char *text, size_t len) {
  if (t->nbuckets == 0)
    return NULL;
  uint32_t h = hash_name(text, len);
  for (sj_relay_name_t *n = *bucket(t, h); n != NULL; n = n->next)
    if (n->hash == h && n->len == len && memcmp(n->text, text, len) == 0)
      return n;
  return NULL;
}

/* Doubles the table once it holds more names than buckets; when memory is
 * short the table stays as it is, only with longer chains. */
static int grow(sj_relay_names_t *t) {
  size_t want = t->nbuckets == 0 ? FIRST_BUCKETS : t->nbuckets * 2;
  if (t->nbuckets != 0 && t->count < t->nbuckets)
    return 0;
  sj_relay_name_t **b = calloc(want, sizeof *b);
  if (b == NULL)
    return t->nbuckets == 0 ? UV_ENOMEM : 0;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (sj_relay_name_t *n = t->buckets[i], *next; n != NULL; n = next) {
      next = n->next;
      n->next = b[n->hash & (want - 1)];
      b[n->hash & (want - 1)] = n;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = want;
  return 0;
}

int sj_relay_names_add(sj_relay_names_t *t, sj_relay_name_t *n) {
  if (sj_relay_names_find(t, n->text, n->len) != NULL)
    return UV_EEXIST;
  int rc = grow(t);
  if (rc != 0)
    return rc;
  sj_relay_name_t **b = bucket(t, n->hash);
  n->next = *b;
  *b = n;
  t->count++;
  return 0;
}

void sj_relay_names_remove(sj_relay_names_t *t, sj_relay_name_t *n) {
  if (t->nbuckets == 0)
    return;
  for (sj_relay_name_t **p = bucket(t, n->hash); *p != NULL; p = &(*p)->next) {
    if (*p == n) {
      *p = n->next;
      n->next = NULL;
      t->count--;
      return;
    }
  }
}
