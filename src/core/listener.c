#include "listener.h"

#include "netaddr.h"
#include "sockopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct sj_listener {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_loop_t *loop;
  sj_pool_t *pool;
  sj_keepalive_t ka;
  sj_accept_cb cb;
  void *data;
  const sj_side_spec_t *spec; /* borrowed */
  char path[SJ_PATH_MAX]; /* Unix socket file to remove on close */
  int paused;
  int deferred; /* a connection arrived while paused */
  void (*close_cb)(void *data);
  void *close_data;
};

static void on_connection(uv_stream_t *server, int status);

static void accept_one(sj_listener_t *l) {
  uv_handle_type type = l->h.handle.type;
  sj_stream_t *s = sj_uvstream_new(l->loop, l->pool, type);
  if (s == NULL) {
    /* The connection stays with libuv; the next resume tries again. */
    l->deferred = 1;
    l->cb(l, UV_ENOMEM, NULL, l->data);
    return;
  }
  int rc = uv_accept(&l->h.stream, sj_uvstream_handle(s));
  if (rc != 0) {
    /* libuv dropped the connection and stopped watching the listener:
     * listening again restarts it. */
    sj_stream_close(s, 0, NULL);
    uv_listen(&l->h.stream, SOMAXCONN, on_connection);
    l->cb(l, rc, NULL, l->data);
    return;
  }
  if (type == UV_TCP) {
    /* Options were set on the listening socket, and Linux copies them to
     * every socket it accepts: no system calls per connection. */
    sj_origin_from_tcp(&s->origin, (uv_tcp_t *)sj_uvstream_handle(s));
  } else {
    sj_origin_from_path(&s->origin, l->spec->path);
  }
  l->cb(l, 0, s, l->data);
}

static void on_connection(uv_stream_t *server, int status) {
  sj_listener_t *l = server->data;
  if (status < 0) {
    l->cb(l, status, NULL, l->data);
    return;
  }
  /* Not accepting leaves the connection in libuv's hands, which stops
   * watching the listener until uv_accept() is called. */
  if (l->paused) {
    l->deferred = 1;
    return;
  }
  accept_one(l);
}

void sj_listener_pause(sj_listener_t *l) { l->paused = 1; }

void sj_listener_resume(sj_listener_t *l) {
  l->paused = 0;
  if (l->deferred) {
    l->deferred = 0;
    accept_one(l);
  }
}

/* SO_REUSEPORT must be set before bind, so the socket is made first. */
static int init_tcp(sj_listener_t *l, int family, int reuse_port) {
  int rc = uv_tcp_init_ex(l->loop, &l->h.tcp, (unsigned)family);
  uv_os_fd_t fd;
  int one = 1;
  if (rc == 0 && reuse_port && uv_fileno(&l->h.handle, &fd) == 0 &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    rc = -errno;
  return rc;
}

static int bind_tcp(sj_listener_t *l, const sj_side_spec_t *spec, int reuse_port) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE};
  char port[8];
  snprintf(port, sizeof port, "%d", spec->port);
  uv_getaddrinfo_t req;
  const char *host = spec->host[0] != '\0' ? spec->host : "0.0.0.0";
  int rc = uv_getaddrinfo(l->loop, &req, NULL, host, port, &hints);
  if (rc != 0)
    return rc;
  rc = init_tcp(l, req.addrinfo->ai_family, reuse_port);
  if (rc == 0)
    rc = uv_tcp_bind(&l->h.tcp, req.addrinfo->ai_addr, 0);
  if (rc == 0)
    rc = sj_tcp_tune(&l->h.tcp, &l->ka); /* inherited by accepted sockets */
  uv_freeaddrinfo(req.addrinfo);
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

static int bind_unix(sj_listener_t *l, const sj_side_spec_t *spec) {
  int rc = uv_pipe_init(l->loop, &l->h.pipe, 0);
  if (rc != 0)
    return rc;
  rc = uv_pipe_bind(&l->h.pipe, spec->path);
  if (rc == UV_EADDRINUSE && stale_socket(spec->path) && unlink(spec->path) == 0)
    rc = uv_pipe_bind(&l->h.pipe, spec->path);
  if (rc == 0)
    snprintf(l->path, sizeof l->path, "%s", spec->path);
  return rc;
}

static void on_closed(uv_handle_t *h) {
  sj_listener_t *l = h->data;
  if (l->close_cb != NULL)
    l->close_cb(l->close_data);
  free(l);
}

int sj_listener_open(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *spec,
                     const sj_keepalive_t *ka, int reuse_port, sj_accept_cb cb, void *data,
                     sj_listener_t **out) {
  sj_listener_t *l = calloc(1, sizeof *l);
  if (l == NULL)
    return UV_ENOMEM;
  *l = (sj_listener_t){.loop = loop, .pool = pool, .ka = *ka, .cb = cb, .data = data,
                       .spec = spec};
  int tcp = spec->kind == SJ_SIDE_LISTEN;
  int rc = tcp ? bind_tcp(l, spec, reuse_port) : bind_unix(l, spec);
  l->h.handle.data = l;
  if (rc == 0)
    rc = uv_listen(&l->h.stream, SOMAXCONN, on_connection);
  if (rc != 0) {
    if (l->h.handle.loop == loop) { /* the handle was initialised */
      if (l->path[0] != '\0')
        unlink(l->path);
      uv_close(&l->h.handle, on_closed);
    } else {
      free(l);
    }
    return rc;
  }
  *out = l;
  return 0;
}

int sj_listener_address(const sj_listener_t *l, char *buf, size_t len) {
  if (l->h.handle.type != UV_TCP) {
    snprintf(buf, len, "%s", l->path);
    return 0;
  }
  struct sockaddr_storage ss;
  int n = sizeof ss;
  int rc = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &n);
  if (rc != 0)
    return rc;
  sj_sockaddr_text((struct sockaddr *)&ss, buf, len);
  char host[INET6_ADDRSTRLEN];
  int port;
  sj_sockaddr_host((struct sockaddr *)&ss, host, sizeof host, &port);
  return port;
}

void sj_listener_close(sj_listener_t *l, void (*cb)(void *data), void *data) {
  l->close_cb = cb;
  l->close_data = data;
  if (l->path[0] != '\0')
    unlink(l->path);
  uv_close(&l->h.handle, on_closed);
}
