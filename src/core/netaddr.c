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

void sj_origin_from_sockaddr(sj_origin_t *o, const struct sockaddr *sa) {
  memset(o, 0, sizeof *o);
  memcpy(&o->addr, sa, sa->sa_family == AF_INET6 ? sizeof o->addr.in6 : sizeof o->addr.in);
  o->timestamp_ms = sj_now_ms();
}

void sj_origin_from_tcp(sj_origin_t *o, const uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) {
    sj_origin_from_label(o, "n/a");
    return;
  }
  sj_origin_from_sockaddr(o, (struct sockaddr *)&ss);
}

void sj_origin_from_path(sj_origin_t *o, const char *path) {
  sj_origin_from_label(o, path);
  o->addr.sa.sa_family = AF_UNIX;
}

void sj_origin_from_label(sj_origin_t *o, const char *label) {
  memset(o, 0, sizeof *o);
  o->addr.sa.sa_family = AF_UNSPEC;
  o->label = label;
  o->timestamp_ms = sj_now_ms();
}

void sj_origin_to_peer(const sj_origin_t *o, sj_peer_t *peer) {
  peer->timestamp_ms = o->timestamp_ms;
  peer->port = -1;
  switch (o->addr.sa.sa_family) {
  case AF_INET:
  case AF_INET6:
    sj_sockaddr_host(&o->addr.sa, peer->host, sizeof peer->host, &peer->port);
    break;
  case AF_UNIX:
    snprintf(peer->host, sizeof peer->host, "unix:%s", o->label);
    break;
  default:
    snprintf(peer->host, sizeof peer->host, "%s", o->label != NULL ? o->label : "n/a");
    break;
  }
}

void sj_origin_text(const sj_origin_t *o, char *buf, size_t len) {
  if (o->addr.sa.sa_family == AF_INET || o->addr.sa.sa_family == AF_INET6) {
    sj_sockaddr_text(&o->addr.sa, buf, len);
    return;
  }
  sj_peer_t peer;
  sj_origin_to_peer(o, &peer);
  snprintf(buf, len, "%s", peer.host);
}
