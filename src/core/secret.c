/* Secrets read from files, and wiped when no longer needed. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* Reads at most cap bytes; one more than the limit is asked for so that a
 * file that is too large is told apart from one exactly at the limit. */
static ssize_t read_all(int fd, unsigned char *buf, size_t cap) {
  size_t got = 0;
  while (got < cap) {
    ssize_t n = read(fd, buf + got, cap - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

/* Removes one trailing "\n" or "\r\n". */
static size_t strip_newline(const unsigned char *buf, size_t len) {
  if (len > 0 && buf[len - 1] == '\n') {
    len--;
    if (len > 0 && buf[len - 1] == '\r')
      len--;
  }
  return len;
}

static int load_fd(int fd, const char *path, sj_secret_t *out, char *err, size_t errlen) {
  unsigned char *buf = malloc(SJ_SECRET_MAX + 2);
  if (buf == NULL)
    return UV_ENOMEM;
  ssize_t n = read_all(fd, buf, SJ_SECRET_MAX + 1);
  int rc = 0;
  if (n < 0) {
    rc = (int)n;
    snprintf(err, errlen, "secret file %s: %s", path, strerror((int)-n));
  } else if ((size_t)n > SJ_SECRET_MAX) {
    rc = UV_EFBIG;
    snprintf(err, errlen, "secret file %s is larger than %d bytes", path, SJ_SECRET_MAX);
  } else if ((out->len = strip_newline(buf, (size_t)n)) == 0) {
    rc = UV_EINVAL;
    snprintf(err, errlen, "secret file %s is empty", path);
  }
  if (rc != 0) {
    sodium_memzero(buf, SJ_SECRET_MAX + 2);
    free(buf);
    return rc;
  }
  sodium_memzero(buf + out->len, SJ_SECRET_MAX + 2 - out->len);
  out->data = buf;
  return 0;
}

int sj_secret_load(const char *path, sj_secret_t *out, char *err, size_t errlen) {
  out->data = NULL;
  out->len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "secret file %s: %s", path, strerror(e));
    return -e;
  }
  int rc = load_fd(fd, path, out, err, errlen);
  close(fd);
  return rc;
}

void sj_secret_free(sj_secret_t *s) {
  if (s->data != NULL) {
    sodium_memzero(s->data, s->len);
    free(s->data);
  }
  s->data = NULL;
  s->len = 0;
}
