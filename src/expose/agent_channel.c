/*
 * Channels the server opens on the agent, one per public connection: each
 * is joined to a new connection to its tunnel's local service. The local
 * connection is made first, and the two go to the tunnel's connector
 * together (one on each fed side, so they pair with each other); when it
 * cannot be made, the channel is refused, which closes the public client
 * at once and lets the server log why.
 */
#include "agent_int.h"

#include <stdlib.h>

typedef struct {
  sj_link_t link; /* in the connection's locals */
  atunnel_t *t;
  sj_stream_t *ch;
  sj_dial_t *dial;
} xlocal_t;

static atunnel_t *find_tunnel(sj_xagent_t *a, uint32_t id) {
  for (size_t i = 0; id != 0 && i < a->n_tunnels; i++)
    if (a->tunnels[i].id == id)
      return &a->tunnels[i];
  return NULL;
}

static void local_failed(xlocal_t *x, int status) {
  atunnel_t *t = x->t;
  sj__xagent_log(t->a, SJ_LOG_ERROR,
                 "%s: cannot connect to the local service for a public connection (tunnel "
                 "%lu): %s; that connection is closed",
                 t->local_text, (unsigned long)t->id, sj_strerror(status));
  sj_mux_refuse(x->ch, NULL);
  free(x);
}

static void on_local(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  xlocal_t *x = data;
  (void)d;
  x->dial = NULL;
  sj_list_remove(&x->link);
  if (status != 0) {
    local_failed(x, status);
    return;
  }
  sj_connector_t *conn = x->t->conn;
  sj__connector_add_stream(conn, SJ_A, x->ch);
  sj__connector_add_stream(conn, SJ_B, s);
  free(x);
}

void sj__xchannel_accept(xconn_t *c, sj_stream_t *ch) {
  sj_xagent_t *a = c->a;
  uint32_t tag = sj_mux_channel_tag(ch);
  atunnel_t *t = find_tunnel(a, tag);
  xlocal_t *x = t != NULL ? calloc(1, sizeof *x) : NULL;
  if (x == NULL) {
    sj__xagent_log(a, SJ_LOG_ERROR, "refused a channel for %s tunnel %lu",
                   t == NULL ? "unknown" : "(out of memory)", (unsigned long)tag);
    sj_mux_refuse(ch, NULL);
    return;
  }
  x->t = t;
  x->ch = ch;
  sj_list_push(&c->locals, &x->link);
  int rc = sj_dial_start(a->loop, &a->pool, &t->local, &a->opts.keepalive,
                         a->opts.connect_timeout_s, on_local, x, &x->dial);
  if (rc != 0) {
    sj_list_remove(&x->link);
    local_failed(x, rc);
  }
}

void sj__xchannel_drop_all(xconn_t *c) {
  while (!sj_list_empty(&c->locals)) {
    xlocal_t *x = sj_container_of(c->locals.next, xlocal_t, link);
    sj_list_remove(&x->link);
    sj_dial_cancel(x->dial);
    sj_stream_close(x->ch, 1, NULL);
    free(x);
  }
}
