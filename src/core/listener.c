#define _GNU_SOURCE /* accept4 */
#include "listener.h"

#include "netaddr.h"
#include "poller.h"
#include "sockstream.h"
#include "sockopt.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * The accept loop is our own (a poll handle on the listening socket) rather
 * than libuv's, for what happens when descriptors run out: libuv then
 * accepts and closes pending connections with a reserve descriptor and
 * says nothing. Here, as in nginx and haproxy, the failure is reported
 * (the connector logs it once per episode), accepting pauses for a moment
 * so that nothing spins, and the connections wait in the kernel's backlog
 * until descriptors free up. accept4() also hands over the peer's address,
 * which saves a getpeername() per connection.
 *
 * Listeners on several loops may share one socket (the CLI's workers do).
 * Each accepts a few connections per wake-up and leaves the rest to whichever
 * loop is free first: with 2 workers under wrk, batches of 2 to 8 served
 * about 7% more connections per second than batches of 64, where one loop
 * took a whole backlog while the other sat idle, and than SO_REUSEPORT,
 * whose hash hands a connection to a loop whether it is busy or not. A lone
 * loop measured the same with either batch. The price: every idle loop
 * wakes for each new connection (libuv's poll has no EPOLLEXCLUSIVE), and
 * all but one find nothing; that grows with the number of workers, and was
 * measured here with two only.
 */
#define SJ_ACCEPT_BATCH 4      /* per readiness event */
#define SJ_ACCEPT_RETRY_MS 250 /* after running out of descriptors */

struct sj_listener {
  uv_poll_t poll;
  uv_timer_t retry;
  int fd;
  uv_handle_type type; /* of accepted streams: UV_TCP or UV_NAMED_PIPE */
  uv_loop_t *loop;
  sj_pool_t *pool;
  sj_keepalive_t ka;
  sj_accept_cb cb;
  void *data;
  const sj_side_spec_t *spec; /* borrowed */
  char path[SJ_PATH_MAX];     /* Unix socket file to remove on close */
  int paused;                 /* by the owner */
  int starved;                /* out of descriptors: waiting for the retry timer */
  int closing;
  int open_handles;
  sj_watch_t poller; /* held so that accepted sockets find it made */
  void (*close_cb)(void *data);
  void *close_data;
};

static void on_readable(uv_poll_t *h, int status, int events);

static void update_polling(sj_listener_t *l) {
  if (l->closing)
    return;
  if (l->paused || l->starved)
    uv_poll_stop(&l->poll);
  else
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

static void on_retry(uv_timer_t *t) {
  sj_listener_t *l = t->data;
  l->starved = 0;
  update_polling(l);
}

/* A new connection as a stream of the listener's kind. */
static int wrap(sj_listener_t *l, int fd, const struct sockaddr *peer, sj_stream_t **out) {
  sj_stream_t *s;
  int rc = sj_sockstream_open(l->loop, l->pool, fd, l->type == UV_TCP, &s);
  if (rc != 0)
    return rc;
  /* Options were set on the listening socket, and Linux copies them to
   * every socket it accepts: no system calls per connection. */
  if (l->type == UV_TCP)
    sj_origin_from_sockaddr(&s->origin, peer);
  else
    sj_origin_from_path(&s->origin, l->spec->path);
  *out = s;
  return 0;
}

/* Takes one pending connection: 1 if one was handed on, 0 when none is
 * pending (or accepting must wait), or a negative error for the owner. */
static int accept_one(sj_listener_t *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK)
      return 0;
    if (err == EINTR || err == ECONNABORTED || err == EPROTO)
      return 1; /* that connection is gone; look for the next */
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
      l->starved = 1;
      uv_timer_start(&l->retry, on_retry, SJ_ACCEPT_RETRY_MS, 0);
      update_polling(l);
    }
    return -err;
  }
  sj_stream_t *s;
  int rc = wrap(l, fd, (struct sockaddr *)&ss, &s);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  l->cb(l, 0, s, l->data);
  return 1;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  sj_listener_t *l = h->data;
  (void)events;
  if (status < 0) {
    l->cb(l, status, NULL, l->data);
    return;
  }
  for (int i = 0; i < SJ_ACCEPT_BATCH && !l->paused && !l->starved && !l->closing; i++) {
    int rc = accept_one(l);
    if (rc == 0)
      return;
    if (rc < 0) {
      l->cb(l, rc, NULL, l->data);
      return;
    }
  }
}

void sj_listener_pause(sj_listener_t *l) {
  if (!l->paused) {
    l->paused = 1;
    update_polling(l);
  }
}

void sj_listener_resume(sj_listener_t *l) {
  if (l->paused) {
    l->paused = 0;
    update_polling(l);
  }
}

static int set_flag(int fd, int level, int name) {
  int one = 1;
  return setsockopt(fd, level, name, &one, sizeof one) == 0 ? 0 : -errno;
}

/* A TCP socket bound to ai, with the options accepted sockets inherit. */
static int bind_tcp_addr(sj_listener_t *l, const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int off = 0;
  int rc = set_flag(fd, SOL_SOCKET, SO_REUSEADDR);
  if (rc == 0 && ai->ai_family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0)
    rc = -errno;
  if (rc == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    rc = -errno;
  if (rc == 0)
    rc = sj_tcp_tune_fd(fd, &l->ka);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  l->fd = fd;
  return 0;
}

static int bind_tcp(sj_listener_t *l, const sj_side_spec_t *spec) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  char port[8];
  snprintf(port, sizeof port, "%d", spec->port);
  uv_getaddrinfo_t req;
  const char *host = spec->host[0] != '\0' ? spec->host : "0.0.0.0";
  int rc = uv_getaddrinfo(l->loop, &req, NULL, host, port, &hints);
  if (rc != 0)
    return rc;
  rc = bind_tcp_addr(l, req.addrinfo);
  uv_freeaddrinfo(req.addrinfo);
  l->type = UV_TCP;
  return rc;
}

/* A socket file nobody accepts on is left over from a process that died:
 * it may be replaced. */
static int stale_socket(const char *path) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  int refused = connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0 && errno == ECONNREFUSED;
  close(fd);
  return refused;
}

static int bind_path(int fd, const char *path) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
  return bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ? 0 : -errno;
}

static int bind_unix(sj_listener_t *l, const sj_side_spec_t *spec) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = bind_path(fd, spec->path);
  if (rc == UV_EADDRINUSE && stale_socket(spec->path) && unlink(spec->path) == 0)
    rc = bind_path(fd, spec->path);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  snprintf(l->path, sizeof l->path, "%s", spec->path);
  l->fd = fd;
  l->type = UV_NAMED_PIPE;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  sj_listener_t *l = h->data;
  if (--l->open_handles > 0)
    return;
  sj_watch_release(&l->poller);
  close(l->fd);
  if (l->close_cb != NULL)
    l->close_cb(l->close_data);
  free(l);
}

static void free_handle(uv_handle_t *h) { free(h); }

/* libuv keeps one descriptor in reserve per loop, opened with the loop's
 * first stream handle (accepted and dialled sockets are not libuv handles,
 * but a relay link or a descriptor handed in is). Making a handle now opens
 * it at start, so the process's descriptor count does not step up later. */
static void reserve_descriptor(uv_loop_t *loop) {
  uv_tcp_t *probe = malloc(sizeof *probe);
  if (probe != NULL && uv_tcp_init(loop, probe) == 0)
    uv_close((uv_handle_t *)probe, free_handle);
  else
    free(probe);
}

/* Another listener's socket, through a descriptor of our own: it is
 * already bound and listening. */
static int share(sj_listener_t *l, const sj_listener_t *shared) {
  l->fd = fcntl(shared->fd, F_DUPFD_CLOEXEC, 0);
  if (l->fd < 0)
    return -errno;
  l->type = shared->type;
  return 0;
}

static int start_listening(sj_listener_t *l, int shared) {
  reserve_descriptor(l->loop);
  if (!shared && listen(l->fd, SOMAXCONN) != 0)
    return -errno;
  int rc = sj_watch_init_weak(&l->poller, l->loop);
  if (rc != 0)
    return rc;
  rc = uv_poll_init_socket(l->loop, &l->poll, l->fd);
  if (rc != 0) {
    sj_watch_release(&l->poller);
    return rc;
  }
  uv_timer_init(l->loop, &l->retry);
  l->poll.data = l->retry.data = l;
  l->open_handles = 2;
  return uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

int sj_listener_open(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *spec,
                     const sj_keepalive_t *ka, const sj_listener_t *shared, sj_accept_cb cb,
                     void *data, sj_listener_t **out) {
  sj_listener_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return UV_ENOMEM;
  *l = (sj_listener_t){
      .fd = -1, .loop = loop, .pool = pool, .ka = *ka, .cb = cb, .data = data, .spec = spec};
  int rc;
  if (shared != NULL)
    rc = share(l, shared);
  else
    rc = spec->kind == SJ_SIDE_LISTEN ? bind_tcp(l, spec) : bind_unix(l, spec);
  if (rc == 0)
    rc = start_listening(l, shared != NULL);
  if (rc != 0) {
    if (l->path[0] != '\0')
      unlink(l->path);
    if (l->open_handles > 0) { /* the handles exist: they close first */
      sj_listener_close(l, NULL, NULL);
      return rc;
    }
    if (l->fd >= 0)
      close(l->fd);
    free(l);
    return rc;
  }
  *out = l;
  return 0;
}

int sj_listener_address(const sj_listener_t *l, char *buf, size_t len) {
  if (l->type != UV_TCP) {
    snprintf(buf, len, "%s", l->path);
    return 0;
  }
  struct sockaddr_storage ss;
  socklen_t n = sizeof ss;
  if (getsockname(l->fd, (struct sockaddr *)&ss, &n) != 0)
    return -errno;
  sj_sockaddr_text((struct sockaddr *)&ss, buf, len);
  char host[INET6_ADDRSTRLEN];
  int port;
  sj_sockaddr_host((struct sockaddr *)&ss, host, sizeof host, &port);
  return port;
}

void sj_listener_close(sj_listener_t *l, void (*cb)(void *data), void *data) {
  l->close_cb = cb;
  l->close_data = data;
  l->closing = 1;
  if (l->path[0] != '\0')
    unlink(l->path);
  uv_close((uv_handle_t *)&l->poll, on_closed);
  uv_close((uv_handle_t *)&l->retry, on_closed);
}
