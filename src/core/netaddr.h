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
/*
 * Where a socket came from, kept compactly (a few dozen bytes) and turned
 * into text only when reported: a relay holds one per socket and one per
 * socket in its stats.
 */
typedef struct {
  union {
    struct sockaddr sa; /* AF_INET, AF_INET6; AF_UNIX: label is the path;
                           AF_UNSPEC: label says what it is ("stdio") */
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } addr;
  const char *label; /* borrowed: must outlive the origin */
  int64_t timestamp_ms;
} sj_origin_t;

/* The remote address of a connected TCP handle, stamped now. */
void sj_origin_from_tcp(sj_origin_t *o, const uv_tcp_t *tcp);
/* A known remote address, stamped now. */
void sj_origin_from_sockaddr(sj_origin_t *o, const struct sockaddr *sa);
/* A Unix socket (path borrowed), stamped now. */
void sj_origin_from_path(sj_origin_t *o, const char *path);
/* Something without an address ("stdio", borrowed), stamped now. */
void sj_origin_from_label(sj_origin_t *o, const char *label);
/* As the public record: host "127.0.0.1", "::1", "unix:PATH" or "stdio". */
void sj_origin_to_peer(const sj_origin_t *o, sj_peer_t *peer);
/* As text for logs: "127.0.0.1:4000", "[::1]:22", "unix:PATH", "stdio". */
void sj_origin_text(const sj_origin_t *o, char *buf, size_t len);
int64_t sj_now_ms(void);

#endif
