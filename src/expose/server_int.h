/* The expose server's insides, shared by server.c (lifetime, listener),
 * server_session.c (one agent's connection: handshake, control channel)
 * and server_tunnel.c (public ports, their connectors, the grace period). */
#ifndef SJ_EXPOSE_SERVER_INT_H
#define SJ_EXPOSE_SERVER_INT_H

#include "connector_ext.h"
#include "lines.h"
#include "listener.h"
#include "list.h"
#include "mux.h"
#include "expose_server.h"

typedef struct xsession xsession_t;
typedef struct xtunnel xtunnel_t;

struct sj_xserver {
  uv_loop_t *loop;
  sj_xserver_options_t opts;
  sj_xkeys_t keys;
  sj_side_spec_t listen;
  sj_listener_t *listener;
  sj_pool_t pool;
  sj_tls_ctx_t *tls;
  sj_xcarrier_config_t carrier;
  sj_link_t sessions;
  unsigned n_sessions;
  uint64_t next_session_id;
  sj_link_t tunnels;
  uint32_t next_tunnel_id;
  int refs; /* the server itself, the listener, sessions, tunnels */
  int closing;
  sj_xserver_close_cb close_cb;
  uv_idle_t finale; /* closed last, to free the server from the loop */
};

typedef enum { XS_CARRIER, XS_AUTH, XS_WELCOME, XS_MUX, XS_ENDED } xsession_stage_t;

struct xsession {
  sj_link_t link;
  sj_xserver_t *srv;
  uint64_t id;
  char peer[SJ_PEER_HOST_MAX + 16];
  xsession_stage_t stage;
  int key;                           /* the key it proved; -1 without auth */
  char agent[SJ_XCTL_AGENT_LEN + 1]; /* the agent's id ("" if it gave none) */
  char challenge[SJ_XCTL_TOKEN_LEN + 1];
  sj_xcarrier_t carrier;
  sj_xlines_t talk; /* on the carrier, then on the control channel */
  int talking;      /* talk holds a stream                          */
  uv_timer_t deadline;
  sj_mux_t *mux;
  sj_link_t tunnels;
  unsigned n_tunnels;
  int refs; /* itself, the timer, the talk's stream */
};

struct xtunnel {
  sj_link_t link;       /* in srv->tunnels                        */
  sj_link_t by_session; /* in its session's list while attached   */
  sj_xserver_t *srv;
  xsession_t *session; /* NULL while its agent is away           */
  uint64_t session_id; /* of the last session (limits without auth) */
  uint32_t id;
  int port;
  int key;
  char agent[SJ_XCTL_AGENT_LEN + 1]; /* of the session that has it (or had) */
  sj_side_spec_t sides[2];           /* the connector's: public listener, channels */
  sj_connector_t *conn;
  uv_timer_t grace;
  int refs; /* the connector, the timer */
  int closing;
  const char *why; /* it was closed (a static phrase) */
};

/* server.c */
void sj__xserver_log(sj_xserver_t *srv, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sj__xserver_unref(sj_xserver_t *srv);

/* server_session.c */
/* A control connection was accepted (the session owns s). */
void sj__xsession_start(sj_xserver_t *srv, sj_stream_t *s);
/* Ends the session now (its tunnels go away, the mux closes). */
void sj__xsession_end(xsession_t *se, const char *why);

/* server_tunnel.c */
/* Serves "expose PORT [prefer]" for se; fills reply (EXPOSED or ERROR). */
void sj__xtunnel_request(xsession_t *se, unsigned port, int prefer, sj_xctl_msg_t *reply);
/* The tunnel's agent has gone: the port is held for the grace period. */
void sj__xtunnel_detach(xtunnel_t *t);
/* Closes the tunnel and releases its port now. */
void sj__xtunnel_close(xtunnel_t *t, const char *why);

#endif
