/* The stream over a socket watched by the poller (poller.h): TCP and Unix
 * connections that a listener accepted or a dialer made. */
#include "sockstream.h"

#include "poller.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads one edge may make before other sockets get their turn; input left
 * over is read again after this turn's events. */
#define SJ_READ_BURST 16

typedef struct {
  sj_stream_t base;
  sj_watch_t watch;
  int fd;
  unsigned tcp : 1;
  unsigned reading : 1;  /* the owner wants input */
  unsigned notify : 1;   /* ... as readiness, not data (see poll_start) */
  unsigned readable : 1; /* input may be waiting: the last edge said so */
  unsigned writable : 1; /* the last edge said there is room */
  unsigned hup : 1;      /* an edge said the peer has finished (or failed) */
  unsigned connecting : 1;
  unsigned closing : 1;
  /* The write in flight: the part not yet sent, and its callback. */
  const char *wbuf;
  size_t wleft;
  unsigned writing : 1;
  unsigned write_done : 1; /* finished; its callback is deferred */
  int write_status;
  sj_write_cb write_cb;
  void *write_arg;
  /* A shutdown waiting for the write in flight. */
  unsigned shut_pending : 1;
  sj_shutdown_cb shut_cb;
  void *shut_arg;
  /* A connect under way, or made at once with its callback deferred. */
  unsigned connect_done : 1;
  sj_connect_cb connect_cb;
  void *connect_arg;
  sj_stream_close_cb close_cb;
} sockstream_t;

#define SS(s) ((sockstream_t *)(s))

/* Sends what the socket takes now: the count, UV_EAGAIN when none, or an
 * error. A short send means the socket is full, and its next edge says
 * when there is room again. */
static ssize_t send_some(sockstream_t *ss, const char *buf, size_t want) {
  ssize_t n;
  do
    n = send(ss->fd, buf, want, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    ss->writable = 0;
    return UV_EAGAIN;
  }
  if (n < 0)
    return -errno;
  if ((size_t)n < want)
    ss->writable = 0;
  return n;
}

/* ---- deferred callbacks -------------------------------------------------- */

static void finish_close(sockstream_t *ss) {
  /* A connect that succeeded but was not yet reported is cancelled too: the
   * stream is gone, so the owner must not take it for connected. */
  if (ss->connecting || ss->connect_done) {
    ss->connecting = ss->connect_done = 0;
    ss->connect_cb(&ss->base, UV_ECANCELED, ss->connect_arg);
  }
  if (ss->writing || ss->write_done) {
    int status = ss->write_done ? ss->write_status : UV_ECANCELED;
    ss->writing = ss->write_done = 0;
    ss->write_cb(&ss->base, status, ss->write_arg);
  }
  if (ss->shut_pending) {
    ss->shut_pending = 0;
    ss->shut_cb(&ss->base, UV_ECANCELED, ss->shut_arg);
  }
  if (ss->close_cb != NULL)
    ss->close_cb(&ss->base);
  sj_watch_release(&ss->watch);
  free(ss);
}

static void do_read(sockstream_t *ss);

/* Runs a finished write's callback, then a shutdown that waited for it. */
static void complete_write(sockstream_t *ss) {
  int status = ss->write_status;
  ss->writing = ss->write_done = 0;
  ss->write_cb(&ss->base, status, ss->write_arg);
  if (ss->closing || !ss->shut_pending)
    return;
  ss->shut_pending = 0;
  int rc = status == 0 ? (shutdown(ss->fd, SHUT_WR) == 0 ? 0 : -errno) : UV_ECANCELED;
  ss->shut_cb(&ss->base, rc, ss->shut_arg);
}

static void on_deferred(sj_watch_t *w) {
  sockstream_t *ss = sj_container_of(w, sockstream_t, watch);
  if (ss->closing) {
    finish_close(ss);
    return;
  }
  if (ss->connect_done) {
    ss->connect_done = 0;
    ss->connect_cb(&ss->base, 0, ss->connect_arg);
  }
  if (!ss->closing && ss->write_done)
    complete_write(ss);
  if (!ss->closing && ss->reading && ss->readable)
    do_read(ss);
}

/* ---- events ---------------------------------------------------------------- */

static void end_reading(sockstream_t *ss, int status) {
  ss->reading = 0;
  ss->base.on_read(&ss->base, status, NULL);
}

/* Data mode: reads into pool chunks while input lasts, a burst at a time. */
static void read_data(sockstream_t *ss) {
  size_t size = ss->base.pool->size;
  for (int i = 0; i < SJ_READ_BURST && ss->reading && ss->readable && !ss->closing; i++) {
    sj_chunk_t *c = sj_pool_get(ss->base.pool);
    if (c == NULL) {
      end_reading(ss, UV_ENOBUFS);
      return;
    }
    ssize_t n;
    do
      n = read(ss->fd, c->data, size);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
      int err = n == 0 ? UV_EOF : -errno;
      sj_pool_put(ss->base.pool, c);
      if (err == -EAGAIN || err == -EWOULDBLOCK)
        ss->readable = 0;
      else
        end_reading(ss, err);
      return;
    }
    /* A short read took all there was, and what arrives later makes an edge;
     * but an end of input that came with the data made its edge already,
     * so once the peer has finished, reading goes on until it is seen. */
    if ((size_t)n < size && !ss->hup)
      ss->readable = 0;
    c->off = 0;
    c->len = (size_t)n;
    ss->base.on_read(&ss->base, 0, c);
  }
  if (ss->reading && ss->readable && !ss->closing)
    sj_watch_defer(&ss->watch);
}

static void do_read(sockstream_t *ss) {
  if (!ss->notify) {
    read_data(ss);
    return;
  }
  /* The owner reads for itself and says, with input_pending, when it
   * stopped before the socket ran dry. */
  ss->readable = 0;
  ss->base.on_read(&ss->base, SJ_READABLE, NULL);
}

static void finish_connect(sockstream_t *ss, uint32_t events) {
  int err = 0;
  /* Writable without an error flag is a connection made: no need to ask. */
  if (events & (EPOLLERR | EPOLLHUP)) {
    socklen_t len = sizeof err;
    if (getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err == 0)
      err = ECONNREFUSED;
  }
  ss->connecting = 0;
  ss->connect_cb(&ss->base, -err, ss->connect_arg);
}

/* Sends what the socket takes of the write in flight: 1 when it is done
 * (or failed, with write_status set), 0 when it waits for room. */
static int send_pending(sockstream_t *ss) {
  while (ss->wleft > 0 && ss->writable) {
    ssize_t n = send_some(ss, ss->wbuf, ss->wleft);
    if (n == UV_EAGAIN)
      return 0;
    if (n < 0) {
      ss->write_status = (int)n;
      return 1;
    }
    ss->wbuf += n;
    ss->wleft -= (size_t)n;
  }
  return ss->wleft == 0;
}

static void on_events(sj_watch_t *w, uint32_t events) {
  sockstream_t *ss = sj_container_of(w, sockstream_t, watch);
  if (ss->closing)
    return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    ss->readable = 1;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
    ss->hup = 1;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
    ss->writable = 1;
  if (ss->connecting) {
    if (ss->writable)
      finish_connect(ss, events);
    return;
  }
  if (ss->writing && !ss->write_done && ss->writable && send_pending(ss))
    complete_write(ss);
  if (!ss->closing && ss->reading && ss->readable)
    do_read(ss);
}

/* ---- operations ------------------------------------------------------------ */

static int ss_start(sj_stream_t *s, int notify) {
  sockstream_t *ss = SS(s);
  if (ss->closing || ss->connecting)
    return UV_EINVAL;
  ss->reading = 1;
  ss->notify = (unsigned)notify;
  /* Input that came while nobody read made its edge already. */
  if (ss->readable)
    sj_watch_defer(&ss->watch);
  return 0;
}

static int ss_read_start(sj_stream_t *s) { return ss_start(s, 0); }
static int ss_poll_start(sj_stream_t *s) { return ss_start(s, 1); }

static int ss_read_stop(sj_stream_t *s) {
  SS(s)->reading = 0;
  return 0;
}

static void ss_input_pending(sj_stream_t *s) {
  sockstream_t *ss = SS(s);
  ss->readable = 1;
  if (ss->reading)
    sj_watch_defer(&ss->watch);
}

static int ss_try_write(sj_stream_t *s, const char *buf, size_t len) {
  sockstream_t *ss = SS(s);
  if (ss->closing || ss->connecting || ss->writing)
    return UV_EAGAIN;
  ssize_t n = send_some(ss, buf, len);
  return n == 0 && len > 0 ? UV_EAGAIN : (int)n;
}

static int ss_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb, void *arg) {
  sockstream_t *ss = SS(s);
  if (ss->closing || ss->connecting)
    return UV_EINVAL;
  if (ss->writing)
    return UV_EBUSY;
  ss->writing = 1;
  ss->write_status = 0;
  ss->wbuf = buf;
  ss->wleft = len;
  ss->write_cb = cb;
  ss->write_arg = arg;
  /* Try at once; the callback always comes later, as libuv's does. */
  ss->writable = 1;
  if (send_pending(ss)) {
    ss->write_done = 1;
    sj_watch_defer(&ss->watch);
  }
  return 0;
}

static int ss_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  sockstream_t *ss = SS(s);
  if (ss->closing || ss->connecting)
    return UV_EINVAL;
  if (ss->shut_pending)
    return UV_EALREADY;
  /* Bytes of a write that finished are the kernel's: only one still being
   * sent is waited for. */
  if (!ss->writing || ss->write_done)
    return shutdown(ss->fd, SHUT_WR) == 0 ? SJ_DONE : -errno;
  ss->shut_pending = 1;
  ss->shut_cb = cb;
  ss->shut_arg = arg;
  return 0;
}

static void ss_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  sockstream_t *ss = SS(s);
  ss->close_cb = cb;
  if (ss->closing)
    return;
  ss->closing = 1;
  ss->reading = 0;
  if (reset && ss->tcp) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(ss->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  /* Closing takes the socket out of the epoll set only when this is its
   * last descriptor; a child between fork and exec may hold another, and
   * the set would go on reporting to a stream that is gone. */
  sj_watch_forget(&ss->watch, ss->fd);
  close(ss->fd);
  ss->fd = -1;
  sj_watch_defer(&ss->watch);
}

static size_t ss_unsent(const sj_stream_t *s) {
  const sockstream_t *ss = (const sockstream_t *)s;
  return ss->writing && !ss->write_done ? ss->wleft : 0;
}

static int ss_fileno(const sj_stream_t *s) { return ((const sockstream_t *)s)->fd; }

static const sj_stream_ops_t sockstream_ops = {
    .read_start = ss_read_start,
    .read_stop = ss_read_stop,
    .try_write = ss_try_write,
    .write = ss_write,
    .shutdown = ss_shutdown,
    .close = ss_close,
    .unsent = ss_unsent,
    .fileno = ss_fileno,
    .poll_start = ss_poll_start,
    .input_pending = ss_input_pending,
};

/* ---- making one ------------------------------------------------------------ */

static int wrap(uv_loop_t *loop, sj_pool_t *pool, int fd, int tcp, sockstream_t **out) {
  sockstream_t *ss = calloc(1, sizeof *ss);
  if (ss == NULL)
    return UV_ENOMEM;
  int rc = sj_watch_init(&ss->watch, loop);
  if (rc != 0) {
    free(ss);
    return rc;
  }
  ss->watch.on_events = on_events;
  ss->watch.on_deferred = on_deferred;
  ss->base.ops = &sockstream_ops;
  ss->base.loop = loop;
  ss->base.pool = pool;
  ss->fd = fd;
  ss->tcp = (unsigned)tcp;
  if ((rc = sj_watch_fd(&ss->watch, fd)) != 0) {
    sj_watch_release(&ss->watch);
    free(ss);
    return rc;
  }
  *out = ss;
  return 0;
}

int sj_sockstream_open(uv_loop_t *loop, sj_pool_t *pool, int fd, int tcp, sj_stream_t **out) {
  sockstream_t *ss;
  int rc = wrap(loop, pool, fd, tcp, &ss);
  if (rc == 0)
    *out = &ss->base;
  return rc;
}

int sj_sockstream_connect(uv_loop_t *loop, sj_pool_t *pool, const struct sockaddr *sa,
                          socklen_t len, sj_connect_cb cb, void *arg, sj_stream_t **out) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  sockstream_t *ss;
  int rc = wrap(loop, pool, fd, sa->sa_family != AF_UNIX, &ss);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  ss->connect_cb = cb;
  ss->connect_arg = arg;
  while ((rc = connect(fd, sa, len)) != 0 && errno == EINTR)
    ;
  if (rc == 0) { /* at once (a Unix socket with room in its backlog) */
    ss->connect_done = 1;
    sj_watch_defer(&ss->watch);
  } else if (errno == EINPROGRESS) {
    ss->connecting = 1;
  } else {
    rc = -errno;
    close(fd);
    sj_watch_release(&ss->watch);
    free(ss);
    return rc;
  }
  *out = &ss->base;
  return 0;
}

int sj_sockstream_to_uv(sj_stream_t *s, sj_stream_t **out) {
  sockstream_t *ss = SS(s);
  int fd = ss->fd;
  int rc = sj_watch_forget(&ss->watch, fd);
  if (rc == 0)
    rc = sj_uvstream_open(s->loop, s->pool, fd, 1, out);
  if (rc == 0)
    (*out)->origin = s->origin;
  else
    close(fd);
  /* Freed after this turn's events, like a closed stream: the caller may be
   * inside one of this stream's callbacks. */
  ss->fd = -1;
  ss->closing = 1;
  ss->reading = 0;
  ss->close_cb = NULL;
  sj_watch_defer(&ss->watch);
  return rc;
}
