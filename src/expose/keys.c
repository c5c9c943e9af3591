/* API keys from a file or a comma-separated list (see keys.h). */
#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define FILE_MAX (1024 * 1024)

static int add_one(sj_xkeys_t *k, const char *s, size_t n) {
  if (k->n == k->cap) {
    size_t cap = k->cap ? 2 * k->cap : 8;
    sj_xkey_t *items = realloc(k->items, cap * sizeof *items);
    if (items == NULL)
      return UV_ENOMEM;
    k->items = items;
    k->cap = cap;
  }
  char *data = malloc(n + 1);
  if (data == NULL)
    return UV_ENOMEM;
  memcpy(data, s, n);
  data[n] = '\0';
  k->items[k->n++] = (sj_xkey_t){data, n};
  return 0;
}

static int blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

/* One piece between separators: trimmed, then skipped if empty or a
 * comment; 1 if it was added. */
static int add_piece(sj_xkeys_t *k, const char *s, size_t n, char sep, size_t index, char *err,
                     size_t errlen) {
  while (n > 0 && blank(*s)) {
    s++;
    n--;
  }
  while (n > 0 && blank(s[n - 1]))
    n--;
  if (n == 0 || (sep == '\n' && *s == '#'))
    return 0;
  const char *what = sep == '\n' ? "on line" : "number";
  if (n > SJ_XKEY_MAX) {
    snprintf(err, errlen, "key %s %zu is longer than %d bytes", what, index, SJ_XKEY_MAX);
    return UV_EINVAL;
  }
  if (memchr(s, '\0', n) != NULL) {
    snprintf(err, errlen, "key %s %zu holds a NUL byte", what, index);
    return UV_EINVAL;
  }
  if (k->n >= SJ_XKEYS_MAX) {
    snprintf(err, errlen, "more than %d keys", SJ_XKEYS_MAX);
    return UV_EINVAL;
  }
  if (add_one(k, s, n) != 0) {
    snprintf(err, errlen, "out of memory");
    return UV_ENOMEM;
  }
  return 1;
}

int sj_xkeys_add_text(sj_xkeys_t *k, const char *text, size_t len, char sep, char *err,
                      size_t errlen) {
  int added = 0;
  size_t index = 1;
  for (;;) {
    const char *end = len > 0 ? memchr(text, sep, len) : NULL;
    size_t n = end != NULL ? (size_t)(end - text) : len;
    int rc = add_piece(k, text, n, sep, index, err, errlen);
    if (rc < 0)
      return rc;
    added += rc;
    if (end == NULL)
      break;
    text = end + 1;
    len -= n + 1;
    index++;
  }
  return added;
}

static int read_all(const char *path, char **out, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = errno;
    snprintf(err, errlen, "API keys file %s: %s", path, strerror(e));
    return -e;
  }
  char *buf = malloc(FILE_MAX + 1);
  size_t n = buf != NULL ? fread(buf, 1, FILE_MAX + 1, f) : 0;
  int bad = buf == NULL || ferror(f);
  fclose(f);
  if (bad || n > FILE_MAX) {
    snprintf(err, errlen,
             bad ? "API keys file %s: cannot read it" : "API keys file %s is larger than 1 MiB",
             path);
    free(buf);
    return UV_EINVAL;
  }
  *out = buf;
  *len = n;
  return 0;
}

int sj_xkeys_load(sj_xkeys_t *k, const char *path, char *err, size_t errlen) {
  char *buf = NULL;
  size_t len = 0;
  int rc = read_all(path, &buf, &len, err, errlen);
  if (rc != 0)
    return rc;
  char why[128];
  rc = sj_xkeys_add_text(k, buf, len, '\n', why, sizeof why);
  memset(buf, 0, len);
  free(buf);
  if (rc < 0)
    snprintf(err, errlen, "API keys file %s: %s", path, why);
  return rc;
}

int sj_xkeys_copy(sj_xkeys_t *dst, const sj_xkeys_t *src) {
  for (size_t i = 0; i < src->n; i++)
    if (add_one(dst, src->items[i].data, src->items[i].len) != 0)
      return UV_ENOMEM;
  return 0;
}

void sj_xkeys_free(sj_xkeys_t *k) {
  for (size_t i = 0; i < k->n; i++) {
    memset(k->items[i].data, 0, k->items[i].len);
    free(k->items[i].data);
  }
  free(k->items);
  memset(k, 0, sizeof *k);
}
