#define _GNU_SOURCE
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* A larger pipe moves more per system call; 1 MiB is the default ceiling
 * for unprivileged processes (/proc/sys/fs/pipe-max-size). */
#define SJ_PIPE_SIZE (1024 * 1024)

void sj_splicer_init(sj_splicer_t *sp) {
  sp->rd = sp->wr = -1;
  sp->cap = 0;
}

void sj_splicer_close(sj_splicer_t *sp) {
  if (sp->rd >= 0) {
    close(sp->rd);
    close(sp->wr);
  }
  sj_splicer_init(sp);
}

static int open_pipe(sj_splicer_t *sp) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
    return -errno;
  sp->rd = fds[0];
  sp->wr = fds[1];
  int cap = fcntl(sp->wr, F_SETPIPE_SZ, SJ_PIPE_SIZE);
  if (cap < 0)
    cap = fcntl(sp->wr, F_GETPIPE_SZ);
  sp->cap = cap > 0 ? (size_t)cap : 65536;
  return 0;
}

int sj_splice_move(sj_splicer_t *sp, int src, int dst, size_t step, size_t budget,
                   sj_splice_result_t *r) {
  *r = (sj_splice_result_t){0};
  if (sp->rd < 0 && open_pipe(sp) != 0)
    return -errno;
  size_t in_pipe = 0;
  while (!r->dry && !r->eof && r->in < budget) {
    size_t want = step < sp->cap ? step : sp->cap;
    ssize_t n = splice(src, NULL, sp->wr, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      in_pipe += (size_t)n;
      r->in += (size_t)n;
    } else if (n == 0) {
      r->eof = 1;
    } else if (errno == EAGAIN) {
      r->dry = 1;
    } else if (errno != EINTR) {
      int err = -errno;
      r->stuck = in_pipe;
      return err;
    }
    while (in_pipe > 0) {
      ssize_t m = splice(sp->rd, NULL, dst, NULL, in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        in_pipe -= (size_t)m;
        r->out += (size_t)m;
      } else if (m < 0 && errno == EAGAIN) {
        r->stuck = in_pipe;
        return 0;
      } else if (m < 0 && errno != EINTR) {
        r->stuck = in_pipe;
        return -errno;
      }
    }
  }
  return 0;
}

int sj_splicer_take(sj_splicer_t *sp, char *buf, size_t len) {
  ssize_t n;
  do
    n = read(sp->rd, buf, len);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : (int)n;
}

void sj_splicer_discard(sj_splicer_t *sp) {
  char buf[4096];
  while (sp->rd >= 0 && read(sp->rd, buf, sizeof buf) > 0) {
  }
}
