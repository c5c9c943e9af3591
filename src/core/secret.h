/*
 * Secrets read from files (keys for encrypt=psk:, tokens and HMAC keys for
 * auth=): the whole file, less ONE trailing newline ("\n" or "\r\n"), so
 * that `echo s3cret > f` gives the secret "s3cret". A file may hold a
 * passphrase or raw random bytes; nothing else is stripped.
 */
#ifndef SJ_SECRET_H
#define SJ_SECRET_H

#include <stddef.h>

/* Larger files are refused: a secret is a key, not a document. */
#define SJ_SECRET_MAX 4096

typedef struct {
  unsigned char *data; /* len bytes, followed by a NUL for convenience */
  size_t len;
} sj_secret_t;

/*
 * Reads the secret in path. Returns 0 and *out (free it with
 * sj_secret_free), or a negative code with a reason naming the file in err:
 * "secret file k: No such file or directory", "secret file k is empty",
 * "secret file k is larger than 4096 bytes".
 */
int sj_secret_load(const char *path, sj_secret_t *out, char *err, size_t errlen);

/* Zeroes and frees the secret's bytes; safe on a zeroed or freed secret. */
void sj_secret_free(sj_secret_t *s);

#endif
