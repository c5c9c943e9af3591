#include "dial.h"

#include "netaddr.h"
#include "sockopt.h"
#include "sockstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

typedef union {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
} inet_addr_t;

/* Many dials are alive at once while a relay is busy, so a dial holds only
 * what it needs: the spec and keep-alive settings are the caller's, and the
 * resolver request exists only while a name is being resolved. */
struct sj_dial {
  uv_loop_t *loop;
  sj_pool_t *pool;
  const sj_side_spec_t *spec;
  const sj_keepalive_t *ka;
  sj_dial_cb cb;
  void *data;
  uv_timer_t timer;
  uv_getaddrinfo_t *gai; /* while resolving */
  struct addrinfo *addrs, *next_addr;
  inet_addr_t dialled;   /* the address of the attempt under way, or the literal */
  int has_literal;
  sj_stream_t *attempt;  /* the socket being connected */
  int pending;           /* callbacks still to come: resolve, connect, timer close */
  int tried_single;
  int reported;          /* the user has had the result, or cancelled */
  int starting;          /* sj_dial_start() has not returned yet */
  int last_error;
};

static void try_next(sj_dial_t *d);

static void release_if_idle(sj_dial_t *d) {
  if (d->pending > 0)
    return;
  if (d->addrs != NULL)
    uv_freeaddrinfo(d->addrs);
  free(d);
}

static void on_timer_closed(uv_handle_t *h) {
  sj_dial_t *d = h->data;
  d->pending--;
  release_if_idle(d);
}

static void report(sj_dial_t *d, int status, sj_stream_t *s);

static void on_deferred_report(uv_timer_t *t) {
  sj_dial_t *d = t->data;
  d->starting = 0;
  report(d, d->last_error, NULL);
}

/* Delivers the result once and starts tearing down. A failure found while
 * sj_dial_start() is still running (a connect refused at once: unreachable
 * network, no ports or descriptors left) is delivered on the next turn of
 * the loop, so the caller never sees its callback before its start returns. */
static void report(sj_dial_t *d, int status, sj_stream_t *s) {
  if (d->starting && !d->reported) {
    d->last_error = status;
    uv_timer_start(&d->timer, on_deferred_report, 0, 0);
    return;
  }
  if (!d->reported) {
    d->reported = 1;
    d->cb(d, status, s, d->data);
  } else if (s != NULL) {
    sj_stream_close(s, 1, NULL);
  }
  if (!uv_is_closing((uv_handle_t *)&d->timer))
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
}

static void on_connect(sj_stream_t *s, int status, void *arg) {
  sj_dial_t *d = arg;
  d->attempt = NULL;
  d->pending--;
  if (status == 0 && !d->reported) {
    if (d->spec->kind == SJ_SIDE_CONNECT) {
      sj_tcp_tune_fd(sj_stream_fileno(s), d->ka);
      sj_origin_from_sockaddr(&s->origin, &d->dialled.sa);
    } else {
      sj_origin_from_path(&s->origin, d->spec->path);
    }
    report(d, 0, s);
    release_if_idle(d);
    return;
  }
  sj_stream_close(s, 1, NULL);
  if (status != UV_ECANCELED)
    d->last_error = status;
  if (d->reported)
    release_if_idle(d);
  else
    try_next(d);
}

/* The next address to try into d->dialled: 0, or 1 when none is left. A
 * Unix path or an IP literal is one address, tried once; a host name may
 * resolve to several. */
static int next_address(sj_dial_t *d, socklen_t *len) {
  if (d->spec->kind == SJ_SIDE_UNIX || d->has_literal) {
    if (d->tried_single)
      return 1;
    d->tried_single = 1;
  } else {
    const struct addrinfo *ai = d->next_addr;
    if (ai == NULL)
      return 1;
    d->next_addr = ai->ai_next;
    memset(&d->dialled, 0, sizeof d->dialled);
    memcpy(&d->dialled, ai->ai_addr,
           ai->ai_addrlen < sizeof d->dialled ? ai->ai_addrlen : sizeof d->dialled);
  }
  *len = d->dialled.sa.sa_family == AF_INET6 ? sizeof d->dialled.in6 : sizeof d->dialled.in;
  return 0;
}

/* Starts connecting to the next address, or reports the last failure. */
static void try_next(sj_dial_t *d) {
  socklen_t len;
  if (next_address(d, &len) != 0) {
    report(d, d->last_error, NULL);
    return;
  }
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  const struct sockaddr *sa = &d->dialled.sa;
  if (d->spec->kind == SJ_SIDE_UNIX) {
    /* The side parser has checked that the path fits. */
    snprintf(un.sun_path, sizeof un.sun_path, "%s", d->spec->path);
    sa = (const struct sockaddr *)&un;
    len = sizeof un;
  }
  int rc = sj_sockstream_connect(d->loop, d->pool, sa, len, on_connect, d, &d->attempt);
  if (rc != 0) {
    d->last_error = rc;
    try_next(d);
    return;
  }
  d->pending++;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sj_dial_t *d = req->data;
  free(d->gai);
  d->gai = NULL;
  d->pending--;
  d->addrs = d->next_addr = res;
  if (d->reported) {
    release_if_idle(d);
    return;
  }
  if (status != 0) {
    report(d, status, NULL);
    return;
  }
  try_next(d);
}

static void on_timeout(uv_timer_t *t) {
  sj_dial_t *d = t->data;
  d->last_error = UV_ETIMEDOUT;
  report(d, UV_ETIMEDOUT, NULL);
  /* Abandon what is in flight; its callback finishes the teardown. */
  if (d->attempt != NULL)
    sj_stream_close(d->attempt, 1, NULL);
  if (d->gai != NULL)
    uv_cancel((uv_req_t *)d->gai);
}

int sj_dial_start(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *spec,
                  const sj_keepalive_t *ka, double timeout_s, sj_dial_cb cb, void *data,
                  sj_dial_t **out) {
  sj_dial_t *d = calloc(1, sizeof *d);
  if (d == NULL)
    return UV_ENOMEM;
  *d = (sj_dial_t){.loop = loop, .pool = pool, .spec = spec, .ka = ka, .cb = cb,
                   .data = data, .last_error = UV_ECONNREFUSED};
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  d->pending = 1; /* the timer's close */
  if (timeout_s > 0)
    uv_timer_start(&d->timer, on_timeout, (uint64_t)(timeout_s * 1000), 0);
  *out = d;
  /* An IP literal needs no resolver: that saves a trip through libuv's
   * thread pool on every connection a relay makes. */
  d->has_literal = spec->kind == SJ_SIDE_CONNECT &&
                   (uv_ip4_addr(spec->host, spec->port, &d->dialled.in) == 0 ||
                    uv_ip6_addr(spec->host, spec->port, &d->dialled.in6) == 0);
  if (spec->kind == SJ_SIDE_UNIX || d->has_literal) {
    d->starting = 1;
    try_next(d);
    d->starting = 0;
    return 0;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  char port[8];
  snprintf(port, sizeof port, "%d", spec->port);
  int rc = UV_ENOMEM;
  d->gai = malloc(sizeof *d->gai);
  if (d->gai != NULL) {
    d->gai->data = d;
    rc = uv_getaddrinfo(loop, d->gai, on_resolved, spec->host, port, &hints);
  }
  if (rc != 0) {
    free(d->gai);
    d->gai = NULL;
    d->reported = 1; /* the caller gets rc instead of a callback */
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
    return rc;
  }
  d->pending++;
  return 0;
}

void sj_dial_cancel(sj_dial_t *d) {
  d->reported = 1;
  if (!uv_is_closing((uv_handle_t *)&d->timer))
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
  if (d->attempt != NULL)
    sj_stream_close(d->attempt, 1, NULL);
  if (d->gai != NULL)
    uv_cancel((uv_req_t *)d->gai);
}
