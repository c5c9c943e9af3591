/*
 * The stream: the one interface every transport offers (TCP, Unix, stdio,
 * and later TLS, WebSocket and mux channels), so that the pump that joins
 * two of them is written once.
 *
 * Contract:
 *   - Reads deliver pool chunks; the callee owns each chunk it is given.
 *     status is 0 with a chunk, UV_EOF at end of input, or a negative error
 *     (after which no more reads arrive).
 *   - At most one write is in flight; its buffer stays valid until the write
 *     callback. try_write (optional) writes what it can at once.
 *   - shutdown ends the write direction once the write in flight is done;
 *     it may finish at once, returning SJ_DONE without calling back.
 *   - close ends everything; a write or shutdown still pending completes
 *     first with UV_ECANCELED, then the close callback runs, and the stream
 *     frees itself after that callback returns. Every pool chunk the stream
 *     held is back in the pool before the close callback, so the owner may
 *     free the pool from it.
 */
#ifndef SJ_STREAM_H
#define SJ_STREAM_H

#include "list.h"
#include "netaddr.h"
#include "pool.h"
#include "sockjoin.h"

#include <uv.h>

typedef struct sj_stream sj_stream_t;

typedef void (*sj_read_cb)(sj_stream_t *s, int status, sj_chunk_t *chunk);
typedef void (*sj_write_cb)(sj_stream_t *s, int status, void *arg);
typedef void (*sj_shutdown_cb)(sj_stream_t *s, int status, void *arg);
typedef void (*sj_stream_close_cb)(sj_stream_t *s);

typedef struct {
  int (*read_start)(sj_stream_t *s);
  int (*read_stop)(sj_stream_t *s);
  int (*try_write)(sj_stream_t *s, const char *buf, size_t len);
  int (*write)(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg);
  int (*shutdown)(sj_stream_t *s, sj_shutdown_cb cb, void *arg);
  /* reset: end with a TCP reset where the transport has one. */
  void (*close)(sj_stream_t *s, int reset, sj_stream_close_cb cb);
  /* Optional: bytes of the write in flight not yet handed on, so that a
   * write cut short by a close is counted exactly. */
  size_t (*unsent)(const sj_stream_t *s);
  /* Optional, for the zero-copy path of plain kernel sockets: the socket's
   * descriptor, and a read mode in which on_read gets SJ_READABLE (and no
   * chunk) whenever the socket has input, which the caller then takes
   * itself. Starting either mode while the other runs switches modes;
   * read_stop ends both. */
  int (*fileno)(const sj_stream_t *s);
  int (*poll_start)(sj_stream_t *s);
  /* Optional, for the same path: the caller stopped taking input before the
   * socket ran dry, so readiness is to be reported again. Streams that
   * report readiness for as long as input waits need not have it. */
  void (*input_pending)(sj_stream_t *s);
} sj_stream_ops_t;

/* The on_read status of a readiness notification (see poll_start). */
#define SJ_READABLE 1
/* An operation finished at once; its callback will not run. */
#define SJ_DONE 1

struct sj_stream {
  const sj_stream_ops_t *ops;
  uv_loop_t *loop;
  sj_pool_t *pool;
  sj_read_cb on_read;
  void *data; /* the owner's */
  sj_origin_t origin; /* where the other end of the socket is */
};

static inline int sj_stream_read_start(sj_stream_t *s) { return s->ops->read_start(s); }
static inline int sj_stream_read_stop(sj_stream_t *s) { return s->ops->read_stop(s); }
static inline int sj_stream_try_write(sj_stream_t *s, const char *buf, size_t len) {
  return s->ops->try_write != NULL ? s->ops->try_write(s, buf, len) : UV_EAGAIN;
}
static inline int sj_stream_write(sj_stream_t *s, const char *buf, size_t len,
                                  sj_write_cb cb, void *arg) {
  return s->ops->write(s, buf, len, cb, arg);
}
static inline int sj_stream_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  return s->ops->shutdown(s, cb, arg);
}
static inline void sj_stream_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  s->ops->close(s, reset, cb);
}
static inline int sj_stream_fileno(const sj_stream_t *s) {
  return s->ops->fileno != NULL ? s->ops->fileno(s) : -1;
}
static inline int sj_stream_poll_start(sj_stream_t *s) { return s->ops->poll_start(s); }
static inline void sj_stream_input_pending(sj_stream_t *s) {
  if (s->ops->input_pending != NULL)
    s->ops->input_pending(s);
}
/* in_flight: the size of the write in flight; without the op, all of it is
 * taken as unsent. */
static inline size_t sj_stream_unsent(const sj_stream_t *s, size_t in_flight) {
  return s->ops->unsent != NULL ? s->ops->unsent(s) : in_flight;
}

/* Streams over libuv handles (uvstream.c). */

/* A stream over a new, unconnected libuv handle of the given type
 * (UV_TCP or UV_NAMED_PIPE), for a listener to accept into or a dialer to
 * connect; sj_uvstream_handle() gives the handle. NULL when out of memory. */
sj_stream_t *sj_uvstream_new(uv_loop_t *loop, sj_pool_t *pool, uv_handle_type type);
uv_stream_t *sj_uvstream_handle(sj_stream_t *s);
/* A stream over an open descriptor of any pollable kind (socket, pipe, tty). */
int sj_uvstream_open(uv_loop_t *loop, sj_pool_t *pool, uv_os_fd_t fd, int readable,
                     sj_stream_t **out);

/* A stream over a regular file or character device (filestream.c). */
int sj_filestream_open(uv_loop_t *loop, sj_pool_t *pool, uv_file fd, sj_stream_t **out);

/* Standard input and output as one stream (stdio.c); shutdown closes stdout. */
int sj_stdio_open(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **out);

#endif
