#include "sockopt.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int set_int(int fd, int level, int name, int value, int prev) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0 && prev == 0)
    return -errno;
  return prev;
}

int sj_tcp_tune(uv_tcp_t *tcp, const sj_keepalive_t *ka) {
  uv_os_fd_t fd;
  int rc = uv_fileno((uv_handle_t *)tcp, &fd);
  return rc != 0 ? rc : sj_tcp_tune_fd(fd, ka);
}

int sj_tcp_tune_fd(int fd, const sj_keepalive_t *ka) {
  int rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1, 0);
  rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, ka->enable ? 1 : 0, rc);
  if (ka->enable) {
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)ka->idle_s, rc);
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)ka->interval_s, rc);
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, (int)ka->count, rc);
  }
  return rc;
}
