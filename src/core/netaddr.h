/* Socket addresses as text, and the peer record of a connected socket. */
#ifndef SJ_NETADDR_H
#define SJ_NETADDR_H

#include "sockjoin.h"

#include <uv.h>

/* Host part of an address, with IPv4-mapped IPv6 shown as plain IPv4;
 * *port gets the port. */
void sj_sockaddr_host(const struct sockaddr *sa, char *host, size_t len, int *port);
/* "127.0.0.1:9000" or "[::1]:9000". */
void sj_sockaddr_text(const struct sockaddr *sa, char *buf, size_t len);
/* Fills peer with the remote address of a connected TCP handle and the
 * current time. */
void sj_peer_from_tcp(sj_peer_t *peer, const uv_tcp_t *tcp);
/* Fills peer with a known remote address and the current time. */
void sj_peer_from_sockaddr(sj_peer_t *peer, const struct sockaddr *sa);
/* Fills peer for a Unix socket ("unix:PATH", port -1). */
void sj_peer_from_path(sj_peer_t *peer, const char *path);
int64_t sj_now_ms(void);

#endif
