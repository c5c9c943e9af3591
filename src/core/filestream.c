/*
 * The stream over a regular file or character device, for stdio redirected
 * from or to a file: epoll cannot watch these, so reads and writes go
 * through libuv's file operations, one at a time, at the current offset.
 */
#include "stream.h"

#include <stdlib.h>

typedef struct {
  sj_stream_t base;
  uv_file fd;
  uv_fs_t rreq, wreq, creq;
  int reading;         /* the owner wants data            */
  int rbusy, wbusy;    /* an operation is in flight       */
  int cbusy;           /* the descriptor is being closed  */
  sj_chunk_t *rchunk;  /* the chunk being read into       */
  sj_chunk_t *stashed; /* read after read_stop, held back */
  const char *wbuf;
  size_t wlen;
  sj_write_cb wcb;
  void *warg;
  int closing, fd_closed;
  sj_stream_close_cb ccb;
} filestream_t;

#define FS(s) ((filestream_t *)(s))

static void finish_close(filestream_t *f);
static void issue_read(filestream_t *f);

static void on_read(uv_fs_t *req) {
  filestream_t *f = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  f->rbusy = 0;
  sj_chunk_t *c = f->rchunk;
  f->rchunk = NULL;
  if (f->closing) {
    sj_pool_put(f->base.pool, c);
    finish_close(f);
    return;
  }
  if (n <= 0) {
    sj_pool_put(f->base.pool, c);
    f->reading = 0;
    f->base.on_read(&f->base, n == 0 ? UV_EOF : (int)n, NULL);
    return;
  }
  c->off = 0;
  c->len = (size_t)n;
  if (!f->reading) {
    f->stashed = c;
    return;
  }
  f->base.on_read(&f->base, 0, c);
  if (f->reading && !f->rbusy && !f->closing)
    issue_read(f);
}

static void issue_read(filestream_t *f) {
  sj_chunk_t *c = sj_pool_get(f->base.pool);
  if (c == NULL) {
    f->reading = 0;
    f->base.on_read(&f->base, UV_ENOBUFS, NULL);
    return;
  }
  f->rchunk = c;
  uv_buf_t b = uv_buf_init(c->data, (unsigned)f->base.pool->size);
  f->rreq.data = f;
  int rc = uv_fs_read(f->base.loop, &f->rreq, f->fd, &b, 1, -1, on_read);
  if (rc != 0) {
    f->rchunk = NULL;
    sj_pool_put(f->base.pool, c);
    f->reading = 0;
    f->base.on_read(&f->base, rc, NULL);
    return;
  }
  f->rbusy = 1;
}

static int fs_read_start(sj_stream_t *s) {
  filestream_t *f = FS(s);
  f->reading = 1;
  if (f->stashed != NULL) {
    sj_chunk_t *c = f->stashed;
    f->stashed = NULL;
    f->base.on_read(s, 0, c);
  }
  if (f->reading && !f->rbusy && !f->closing)
    issue_read(f);
  return 0;
}

static int fs_read_stop(sj_stream_t *s) {
  FS(s)->reading = 0;
  return 0;
}

static void issue_write(filestream_t *f);

static void on_write(uv_fs_t *req) {
  filestream_t *f = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  f->wbusy = 0;
  if (n > 0 && (size_t)n < f->wlen && !f->closing) {
    f->wbuf += n;
    f->wlen -= (size_t)n;
    issue_write(f);
    return;
  }
  sj_write_cb cb = f->wcb;
  f->wcb = NULL;
  cb(&f->base, f->closing ? UV_ECANCELED : n < 0 ? (int)n : 0, f->warg);
  if (f->closing)
    finish_close(f);
}

static void issue_write(filestream_t *f) {
  uv_buf_t b = uv_buf_init((char *)f->wbuf, (unsigned)f->wlen);
  f->wreq.data = f;
  int rc = uv_fs_write(f->base.loop, &f->wreq, f->fd, &b, 1, -1, on_write);
  if (rc != 0) {
    /* Report through the loop like any other completion. */
    f->wreq.result = rc;
    f->wbusy = 1;
    on_write(&f->wreq);
    return;
  }
  f->wbusy = 1;
}

static int fs_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb,
                    void *arg) {
  filestream_t *f = FS(s);
  if (f->wbusy || f->closing)
    return UV_EBUSY;
  f->wbuf = buf;
  f->wlen = len;
  f->wcb = cb;
  f->warg = arg;
  issue_write(f);
  return 0;
}

/* A file has no write direction to end on its own: stdio ends its output
 * half by closing it. */
static int fs_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  (void)s;
  (void)cb;
  (void)arg;
  return UV_ENOTSUP;
}

static void on_fd_closed(uv_fs_t *req) {
  filestream_t *f = req->data;
  uv_fs_req_cleanup(req);
  f->cbusy = 0;
  finish_close(f);
}

/* Completes a close once no file operation is in flight: the descriptor is
 * closed through the loop, and the stream goes when that is done. */
static void finish_close(filestream_t *f) {
  if (f->rbusy || f->wbusy || f->cbusy)
    return;
  if (!f->fd_closed) {
    f->fd_closed = 1;
    f->creq.data = f;
    if (uv_fs_close(f->base.loop, &f->creq, f->fd, on_fd_closed) == 0) {
      f->cbusy = 1;
      return;
    }
  }
  if (f->stashed != NULL)
    sj_pool_put(f->base.pool, f->stashed);
  if (f->ccb != NULL)
    f->ccb(&f->base);
  free(f);
}

static void fs_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  (void)reset;
  filestream_t *f = FS(s);
  if (f->closing)
    return;
  f->closing = 1;
  f->reading = 0;
  f->ccb = cb;
  finish_close(f);
}

static const sj_stream_ops_t filestream_ops = {
    .read_start = fs_read_start,
    .read_stop = fs_read_stop,
    .write = fs_write,
    .shutdown = fs_shutdown,
    .close = fs_close,
};

int sj_filestream_open(uv_loop_t *loop, sj_pool_t *pool, uv_file fd, sj_stream_t **out) {
  filestream_t *f = calloc(1, sizeof *f);
  if (f == NULL)
    return UV_ENOMEM;
  f->base.ops = &filestream_ops;
  f->base.loop = loop;
  f->base.pool = pool;
  f->fd = fd;
  *out = &f->base;
  return 0;
}
