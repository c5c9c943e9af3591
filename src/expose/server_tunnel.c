/*
 * Tunnels on the server: a public port, the connector that joins each of
 * its connections to a new channel on the agent's mux (tagged with the
 * tunnel's id), who owns it, and the grace period after its agent goes.
 */
#include "server_int.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void tunnel_unref(xtunnel_t *t) {
  if (--t->refs > 0)
    return;
  sj_xserver_t *srv = t->srv;
  free(t);
  sj__xserver_unref(srv);
}

/* Said once the listener has closed, so that whoever reads it can count
 * on the port being free. */
static void on_conn_closed(sj_connector_t *c, void *data) {
  xtunnel_t *t = data;
  (void)c;
  sj__xserver_log(t->srv, SJ_LOG_INFO, "tunnel %lu: port %d released (%s)", (unsigned long)t->id,
                  t->port, t->why);
  tunnel_unref(t);
}

static void on_grace_closed(uv_handle_t *h) { tunnel_unref(h->data); }

void sj__xtunnel_close(xtunnel_t *t, const char *why) {
  if (t->closing)
    return;
  t->closing = 1;
  t->why = why;
  sj_list_remove(&t->link);
  if (t->session != NULL) {
    sj_list_remove(&t->by_session);
    t->session->n_tunnels--;
    t->session = NULL;
  }
  sj_connector_close(t->conn, on_conn_closed);
  uv_close((uv_handle_t *)&t->grace, on_grace_closed);
}

static void on_grace(uv_timer_t *h) { sj__xtunnel_close(h->data, "its agent did not come back"); }

void sj__xtunnel_detach(xtunnel_t *t) {
  sj_xserver_t *srv = t->srv;
  sj_list_remove(&t->by_session);
  t->session->n_tunnels--;
  t->session = NULL;
  if (srv->closing) {
    sj__xtunnel_close(t, "server closing");
    return;
  }
  sj__xserver_log(srv, SJ_LOG_INFO, "tunnel %lu (port %d): agent away; port held for %g s",
                  (unsigned long)t->id, t->port, srv->opts.grace_s);
  uv_timer_start(&t->grace, on_grace, (uint64_t)(srv->opts.grace_s * 1000), 0);
}

static void attach(xtunnel_t *t, xsession_t *se) {
  if (t->session != NULL) {
    sj__xserver_log(t->srv, SJ_LOG_INFO, "tunnel %lu (port %d): taken over by agent %llu",
                    (unsigned long)t->id, t->port, (unsigned long long)se->id);
    sj_list_remove(&t->by_session);
    t->session->n_tunnels--;
  }
  t->session = se;
  t->session_id = se->id;
  memcpy(t->agent, se->agent, sizeof t->agent);
  sj_list_push(&se->tunnels, &t->by_session);
  se->n_tunnels++;
  uv_timer_stop(&t->grace);
}

/* ---- the connector's side of it ---------------------------------------- */

/* The open function of the channel side: a public connection was accepted.
 * While the agent is away it fails, and the connector closes the
 * connection at once (never leaves it waiting for nobody). */
static int open_channel(void *data, sj_stream_t **out) {
  xtunnel_t *t = data;
  if (t->session == NULL || t->session->mux == NULL) {
    sj__xserver_log(t->srv, SJ_LOG_ERROR, "tunnel %lu (port %d): agent away; connection closed",
                    (unsigned long)t->id, t->port);
    return UV_ENOTCONN;
  }
  return sj_mux_open_tagged(t->session->mux, t->id, out);
}

static void on_conn_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  xtunnel_t *t = data;
  (void)c;
  sj__xserver_log(t->srv, level, "tunnel %lu (port %d): %s", (unsigned long)t->id, t->port, msg);
}

/* The agent refuses a channel it cannot connect to its local service for:
 * the public client has been closed; say why here too. */
static void on_pair_closed(sj_connector_t *c, const sj_pair_info_t *pair, void *data) {
  xtunnel_t *t = data;
  (void)c;
  if (pair->status == UV_ECONNREFUSED)
    sj__xserver_log(t->srv, SJ_LOG_ERROR,
                    "tunnel %lu (port %d): the agent could not connect to its local service; "
                    "connection from %s:%d closed",
                    (unsigned long)t->id, t->port, pair->a.host, pair->a.port);
}

static int bind_port(xtunnel_t *t, int port) {
  sj_xserver_t *srv = t->srv;
  sj_side_spec_t *pub = &t->sides[SJ_A];
  memset(t->sides, 0, sizeof t->sides);
  pub->kind = SJ_SIDE_LISTEN;
  snprintf(pub->host, sizeof pub->host, "%s", srv->opts.public_bind);
  pub->port = port;
  t->sides[SJ_B].kind = SJ__SIDE_OPEN;
  sj_options_t o;
  sj_options_init(&o);
  o.verbose = srv->opts.verbose;
  o.max_pairs = srv->opts.max_streams;
  o.buffer_size = srv->opts.buffer_size;
  o.keepalive = srv->opts.keepalive;
  o.log_cb = on_conn_log;
  o.on_pair_closed = on_pair_closed;
  o.data = t;
  int rc = sj_connector_new(&t->conn, srv->loop, &t->sides[SJ_A], &t->sides[SJ_B], &o, NULL);
  if (rc != 0)
    return rc;
  sj__connector_set_open(t->conn, SJ_B, open_channel, t);
  char addr[SJ_HOST_MAX + 16];
  t->port = sj_connector_address(t->conn, SJ_A, addr, sizeof addr);
  return 0;
}

static xtunnel_t *find_port(sj_xserver_t *srv, unsigned port) {
  for (sj_link_t *l = srv->tunnels.next; l != &srv->tunnels; l = l->next) {
    xtunnel_t *t = sj_container_of(l, xtunnel_t, link);
    if ((unsigned)t->port == port)
      return t;
  }
  return NULL;
}

static int in_range(const sj_xserver_t *srv, unsigned port) {
  return srv->opts.port_lo == 0 || (port >= srv->opts.port_lo && port <= srv->opts.port_hi);
}

/* Any free port of the range, tried from a random place in it. */
static int bind_any(xtunnel_t *t) {
  sj_xserver_t *srv = t->srv;
  if (srv->opts.port_lo == 0)
    return bind_port(t, 0);
  unsigned span = srv->opts.port_hi - srv->opts.port_lo + 1;
  unsigned start = 0;
  RAND_bytes((unsigned char *)&start, sizeof start);
  for (unsigned i = 0; i < span; i++) {
    unsigned port = srv->opts.port_lo + (start + i) % span;
    if (find_port(srv, port) != NULL)
      continue;
    int rc = bind_port(t, (int)port);
    if (rc != UV_EADDRINUSE && rc != UV_EACCES)
      return rc;
  }
  return UV_EADDRINUSE;
}

/* ---- requests ----------------------------------------------------------- */

static void refuse(sj_xctl_msg_t *reply, const char *fmt, unsigned a, unsigned b, unsigned c) {
  reply->type = SJ_XCTL_ERROR;
  snprintf(reply->text, sizeof reply->text, fmt, a, b, c);
}

static void accept_reply(const xtunnel_t *t, sj_xctl_msg_t *reply) {
  reply->type = SJ_XCTL_EXPOSED;
  reply->port = (unsigned)t->port;
  reply->tunnel = t->id;
  snprintf(reply->text, sizeof reply->text, "%.200s", t->srv->opts.public_host);
}

/* A reserved tunnel may be taken back by its key (by anyone, without
 * auth). A live one only by the same agent (its id, and its key): that is a
 * reconnect the server has not noticed yet, after a network change say;
 * another agent sharing the key gets "in use". */
static int claimable(const xtunnel_t *t, const xsession_t *se) {
  int key_ok = t->srv->opts.no_auth || t->key == se->key;
  if (t->session == NULL)
    return key_ok;
  return key_ok && se->agent[0] != '\0' && strcmp(t->agent, se->agent) == 0;
}

static unsigned tunnels_of(const xsession_t *se) {
  if (se->srv->opts.no_auth)
    return se->n_tunnels;
  unsigned n = 0;
  for (sj_link_t *l = se->srv->tunnels.next; l != &se->srv->tunnels; l = l->next)
    n += sj_container_of(l, xtunnel_t, link)->key == se->key;
  return n;
}

/* Why a tunnel could not be bound, for the agent. */
static void bind_refusal(const sj_xserver_t *srv, int rc, unsigned port, int prefer,
                         sj_xctl_msg_t *reply) {
  if (rc == UV_EADDRINUSE && port != 0 && !prefer) {
    refuse(reply, "port %u is in use", port, 0, 0);
  } else if (rc == UV_EADDRINUSE) {
    refuse(reply, "no free port in %u-%u", srv->opts.port_lo, srv->opts.port_hi, 0);
  } else {
    reply->type = SJ_XCTL_ERROR;
    snprintf(reply->text, sizeof reply->text, "cannot listen on a public port: %s",
             sj_strerror(rc));
  }
}

/* A bound tunnel joins the server's list and its session. */
static void enlist(xtunnel_t *t, xsession_t *se) {
  sj_xserver_t *srv = t->srv;
  srv->next_tunnel_id = srv->next_tunnel_id == UINT32_MAX ? 1 : srv->next_tunnel_id + 1;
  uv_timer_init(srv->loop, &t->grace);
  t->grace.data = t;
  t->refs = 2; /* the connector and the timer */
  srv->refs++;
  sj_list_init(&t->by_session);
  sj_list_push(&srv->tunnels, &t->link);
  attach(t, se);
  sj__xserver_log(srv, SJ_LOG_INFO, "tunnel %lu (port %d): exposed for agent %llu",
                  (unsigned long)t->id, t->port, (unsigned long long)se->id);
}

static void new_tunnel(xsession_t *se, unsigned port, int prefer, sj_xctl_msg_t *reply) {
  xtunnel_t *t = calloc(1, sizeof *t);
  if (t == NULL) {
    refuse(reply, "server out of memory", 0, 0, 0);
    return;
  }
  t->srv = se->srv;
  t->key = se->key;
  t->id = se->srv->next_tunnel_id;
  int rc = port != 0 ? bind_port(t, (int)port) : bind_any(t);
  if (rc == UV_EADDRINUSE && port != 0 && prefer)
    rc = bind_any(t);
  if (rc != 0) {
    free(t);
    bind_refusal(se->srv, rc, port, prefer, reply);
    return;
  }
  enlist(t, se);
  accept_reply(t, reply);
}

void sj__xtunnel_request(xsession_t *se, unsigned port, int prefer, sj_xctl_msg_t *reply) {
  sj_xserver_t *srv = se->srv;
  memset(reply, 0, sizeof *reply);
  xtunnel_t *t = port != 0 ? find_port(srv, port) : NULL;
  if (t != NULL && t->session != se && claimable(t, se)) {
    attach(t, se);
    accept_reply(t, reply);
    sj__xserver_log(srv, SJ_LOG_INFO, "tunnel %lu (port %d): back with agent %llu",
                    (unsigned long)t->id, t->port, (unsigned long long)se->id);
    return;
  }
  if (t != NULL && !prefer) {
    refuse(reply,
           t->session == se ? "port %u is already exposed by this agent" : "port %u is in use",
           port, 0, 0);
    return;
  }
  if (tunnels_of(se) >= srv->opts.max_tunnels) {
    refuse(reply, "too many tunnels (the limit is %u per key)", srv->opts.max_tunnels, 0, 0);
    return;
  }
  if (port != 0 && (t != NULL || !in_range(srv, port))) {
    if (!prefer) {
      refuse(reply, "port %u is outside the server's range %u-%u", port, srv->opts.port_lo,
             srv->opts.port_hi);
      return;
    }
    port = 0;
  }
  new_tunnel(se, port, prefer, reply);
}
