/* The stream over a libuv stream handle: TCP, Unix sockets, pipes, ttys. */
#include "stream.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

typedef struct {
  sj_stream_t base;
  sj_stream_close_cb close_cb;
  int notify; /* reading reports readiness instead of data */
  /* Last, so that each stream is allocated only as large as its handle
   * type needs (a TCP handle is the smallest, a tty the largest). */
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;
} uvstream_t;

/* Requests are allocated only when an operation cannot finish at once, so an
 * idle stream carries none. */
typedef struct {
  uv_write_t req;
  sj_write_cb cb;
  void *arg;
} write_req_t;

typedef struct {
  uv_shutdown_t req;
  sj_shutdown_cb cb;
  void *arg;
} shutdown_req_t;

#define US(s) ((uvstream_t *)(s))

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  uvstream_t *us = h->data;
  /* In notify mode no buffer is given, so libuv reads nothing and reports
   * UV_ENOBUFS: that is the readiness notification. The socket stays
   * watched (epoll is level-triggered), so input left unread is reported
   * again on the next turn of the loop. */
  if (us->notify) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  sj_chunk_t *c = sj_pool_get(us->base.pool);
  *buf = c != NULL ? uv_buf_init(c->data, (unsigned)us->base.pool->size) : uv_buf_init(NULL, 0);
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  uvstream_t *us = h->data;
  sj_chunk_t *c = buf->base != NULL ? sj_container_of(buf->base, sj_chunk_t, data) : NULL;
  if (nread > 0) {
    c->off = 0;
    c->len = (size_t)nread;
    us->base.on_read(&us->base, 0, c);
    return;
  }
  if (c != NULL)
    sj_pool_put(us->base.pool, c);
  if (nread == UV_ENOBUFS && us->notify) {
    us->base.on_read(&us->base, SJ_READABLE, NULL);
    return;
  }
  if (nread < 0) {
    uv_read_stop(h);
    us->base.on_read(&us->base, (int)nread, NULL);
  }
}

static int us_read_start(sj_stream_t *s) {
  US(s)->notify = 0;
  int rc = uv_read_start(&US(s)->h.stream, on_alloc, on_read);
  return rc == UV_EALREADY ? 0 : rc;
}

static int us_poll_start(sj_stream_t *s) {
  US(s)->notify = 1;
  int rc = uv_read_start(&US(s)->h.stream, on_alloc, on_read);
  return rc == UV_EALREADY ? 0 : rc;
}

/* Only sockets take part in the zero-copy path. */
static int us_fileno(const sj_stream_t *s) {
  const uvstream_t *us = (const uvstream_t *)s;
  uv_os_fd_t fd;
  if (us->h.handle.type != UV_TCP && us->h.handle.type != UV_NAMED_PIPE)
    return -1;
  return uv_fileno(&us->h.handle, &fd) == 0 ? fd : -1;
}

static int us_read_stop(sj_stream_t *s) { return uv_read_stop(&US(s)->h.stream); }

static int us_try_write(sj_stream_t *s, const char *buf, size_t len) {
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  return uv_try_write(&US(s)->h.stream, &b, 1);
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  uvstream_t *us = req->handle->data;
  sj_write_cb cb = w->cb;
  void *arg = w->arg;
  free(w);
  cb(&us->base, status, arg);
}

static int us_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb,
                    void *arg) {
  write_req_t *w = malloc(sizeof *w);
  if (w == NULL)
    return UV_ENOMEM;
  w->cb = cb;
  w->arg = arg;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int rc = uv_write(&w->req, &US(s)->h.stream, &b, 1, on_write);
  if (rc != 0)
    free(w);
  return rc;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  shutdown_req_t *sr = (shutdown_req_t *)req;
  uvstream_t *us = req->handle->data;
  sj_shutdown_cb cb = sr->cb;
  void *arg = sr->arg;
  free(sr);
  cb(&us->base, status, arg);
}

static int us_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  uvstream_t *us = US(s);
  uv_os_fd_t fd;
  /* With nothing queued, a socket is shut down at once: libuv would first
   * wait for it to be writable, which costs two epoll_ctl calls. */
  if (us->h.handle.type == UV_TCP && uv_stream_get_write_queue_size(&us->h.stream) == 0 &&
      uv_fileno(&us->h.handle, &fd) == 0) {
    if (shutdown(fd, SHUT_WR) != 0)
      return -errno;
    return SJ_DONE;
  }
  shutdown_req_t *sr = malloc(sizeof *sr);
  if (sr == NULL)
    return UV_ENOMEM;
  sr->cb = cb;
  sr->arg = arg;
  int rc = uv_shutdown(&sr->req, &US(s)->h.stream, on_shutdown);
  if (rc != 0)
    free(sr);
  return rc;
}

static void on_close(uv_handle_t *h) {
  uvstream_t *us = h->data;
  if (us->close_cb != NULL)
    us->close_cb(&us->base);
  free(us);
}

static void us_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  uvstream_t *us = US(s);
  us->close_cb = cb;
  if (uv_is_closing(&us->h.handle))
    return;
  if (reset && us->h.handle.type == UV_TCP && uv_tcp_close_reset(&us->h.tcp, on_close) == 0)
    return;
  uv_close(&us->h.handle, on_close);
}

static size_t us_unsent(const sj_stream_t *s) {
  return uv_stream_get_write_queue_size(&((const uvstream_t *)s)->h.stream);
}

static const sj_stream_ops_t uvstream_ops = {
    .read_start = us_read_start,
    .read_stop = us_read_stop,
    .try_write = us_try_write,
    .write = us_write,
    .shutdown = us_shutdown,
    .close = us_close,
    .unsent = us_unsent,
    .fileno = us_fileno,
    .poll_start = us_poll_start,
};

static size_t handle_size(uv_handle_type type) {
  switch (type) {
  case UV_TCP:
    return sizeof(uv_tcp_t);
  case UV_NAMED_PIPE:
    return sizeof(uv_pipe_t);
  default:
    return sizeof(uv_tty_t);
  }
}

static uvstream_t *alloc_stream(uv_loop_t *loop, sj_pool_t *pool, uv_handle_type type) {
  uvstream_t *us = calloc(1, offsetof(uvstream_t, h) + handle_size(type));
  if (us == NULL)
    return NULL;
  us->base.ops = &uvstream_ops;
  us->base.loop = loop;
  us->base.pool = pool;
  us->h.handle.data = us;
  return us;
}

sj_stream_t *sj_uvstream_new(uv_loop_t *loop, sj_pool_t *pool, uv_handle_type type) {
  uvstream_t *us = alloc_stream(loop, pool, type);
  if (us == NULL)
    return NULL;
  int rc = type == UV_TCP ? uv_tcp_init(loop, &us->h.tcp) : uv_pipe_init(loop, &us->h.pipe, 0);
  if (rc != 0) {
    free(us);
    return NULL;
  }
  us->h.handle.data = us;
  return &us->base;
}

uv_stream_t *sj_uvstream_handle(sj_stream_t *s) { return &US(s)->h.stream; }

int sj_uvstream_open(uv_loop_t *loop, sj_pool_t *pool, uv_os_fd_t fd, int readable,
                     sj_stream_t **out) {
  uv_handle_type type = uv_guess_handle(fd);
  uvstream_t *us = alloc_stream(loop, pool, type);
  if (us == NULL)
    return UV_ENOMEM;
  int rc;
  switch (type) {
  case UV_TTY:
    rc = uv_tty_init(loop, &us->h.tty, fd, readable);
    break;
  case UV_TCP:
    rc = uv_tcp_init(loop, &us->h.tcp);
    if (rc == 0 && (rc = uv_tcp_open(&us->h.tcp, fd)) != 0)
      uv_close(&us->h.handle, on_close);
    break;
  case UV_NAMED_PIPE:
    rc = uv_pipe_init(loop, &us->h.pipe, 0);
    if (rc == 0 && (rc = uv_pipe_open(&us->h.pipe, fd)) != 0)
      uv_close(&us->h.handle, on_close);
    break;
  default:
    rc = UV_EINVAL;
    break;
  }
  if (rc != 0) {
    /* A handle closed above frees the stream on its loop turn. */
    if (!uv_is_closing(&us->h.handle))
      free(us);
    return rc;
  }
  us->h.handle.data = us;
  *out = &us->base;
  return 0;
}
