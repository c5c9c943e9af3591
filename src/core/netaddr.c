#include "netaddr.h"

#include <stdio.h>
#include <string.h>

void sj_sockaddr_host(const struct sockaddr *sa, char *host, size_t len, int *port) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    *port = ntohs(s6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      struct sockaddr_in s4 = {.sin_family = AF_INET};
      memcpy(&s4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
      uv_ip4_name(&s4, host, len);
    } else {
      uv_ip6_name(s6, host, len);
    }
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    *port = ntohs(s4->sin_port);
    uv_ip4_name(s4, host, len);
  } else {
    snprintf(host, len, "?");
    *port = -1;
  }
}

void sj_sockaddr_text(const struct sockaddr *sa, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN];
  int port;
  sj_sockaddr_host(sa, host, sizeof host, &port);
  if (strchr(host, ':') != NULL)
    snprintf(buf, len, "[%s]:%d", host, port);
  else
    snprintf(buf, len, "%s:%d", host, port);
}

int64_t sj_now_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void sj_peer_from_sockaddr(sj_peer_t *peer, const struct sockaddr *sa) {
  peer->timestamp_ms = sj_now_ms();
  sj_sockaddr_host(sa, peer->host, sizeof peer->host, &peer->port);
}

void sj_peer_from_tcp(sj_peer_t *peer, const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) {
    peer->timestamp_ms = sj_now_ms();
    snprintf(peer->host, sizeof peer->host, "n/a");
    peer->port = -1;
    return;
  }
  sj_peer_from_sockaddr(peer, (struct sockaddr *)&ss);
}

void sj_peer_from_path(sj_peer_t *peer, const char *path) {
  peer->timestamp_ms = sj_now_ms();
  snprintf(peer->host, sizeof peer->host, "unix:%s", path);
  peer->port = -1;
}
