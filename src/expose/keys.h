/*
 * The API keys a server accepts: from a file (one key per line; empty
 * lines and lines starting with '#' are skipped) or from a list separated
 * by commas (SOCKJOIN_API_KEYS). Spaces and tabs around a key are dropped:
 * a key is a secret, and a stray blank at the end of a line is a typo, not
 * part of it.
 */
#ifndef SJ_EXPOSE_KEYS_H
#define SJ_EXPOSE_KEYS_H

#include <stddef.h>

#define SJ_XKEY_MAX 1024  /* bytes of one key           */
#define SJ_XKEYS_MAX 4096 /* keys in all                */

typedef struct {
  char *data; /* NUL-terminated; len bytes */
  size_t len;
} sj_xkey_t;

typedef struct {
  sj_xkey_t *items;
  size_t n, cap;
} sj_xkeys_t;

/* Adds the keys in text (len bytes), split at sep ('\n' for a file, ','
 * for the environment; with '\n' a "\r" before it and '#' comments are
 * understood). Returns the number added, or a negative code with a reason
 * in err ("key on line 3 is longer than 1024 bytes", "out of memory"). */
int sj_xkeys_add_text(sj_xkeys_t *k, const char *text, size_t len, char sep, char *err,
                      size_t errlen);

/* Reads a key file (at most 1 MiB) and adds its keys. Returns the number
 * added, or a negative code with a reason naming the file in err. */
int sj_xkeys_load(sj_xkeys_t *k, const char *path, char *err, size_t errlen);

/* Copies every key of src into dst. Returns 0 or UV_ENOMEM. */
int sj_xkeys_copy(sj_xkeys_t *dst, const sj_xkeys_t *src);

/* Zeroes and frees every key. */
void sj_xkeys_free(sj_xkeys_t *k);

#endif
