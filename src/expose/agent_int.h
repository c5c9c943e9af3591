/* The expose agent's insides, shared by agent.c (lifetime, reconnecting),
 * agent_conn.c (one connection to the server: carrier, auth, requests) and
 * agent_channel.c (channels joined to local connections). */
#ifndef SJ_EXPOSE_AGENT_INT_H
#define SJ_EXPOSE_AGENT_INT_H

#include "expose_agent.h"
#include "connector_ext.h"
#include "dial.h"
#include "keys.h"
#include "lines.h"
#include "list.h"
#include "mux.h"

typedef struct xconn xconn_t;

typedef struct {
  sj_xagent_t *a;
  size_t index;
  sj_side_spec_t local;  /* connect:HOST:PORT                         */
  sj_side_spec_t fed[2]; /* the connector's sides: channels, locals  */
  char local_text[SJ_HOST_MAX + 16];
  unsigned asked; /* what the user asked for (0: any)              */
  unsigned port;  /* the public port last given (0: none yet)      */
  uint32_t id;    /* the tunnel id on the current connection; 0: none */
  sj_connector_t *conn;
} atunnel_t;

struct sj_xagent {
  uv_loop_t *loop;
  sj_xagent_options_t opts;
  sj_xkey_t key;                  /* data NULL: none */
  char id[SJ_XCTL_AGENT_LEN + 1]; /* random, sent with every answer */
  atunnel_t *tunnels;
  size_t n_tunnels;
  sj_side_spec_t server;
  sj_pool_t pool;
  sj_tls_ctx_t *tls;
  sj_xcarrier_config_t carrier;
  xconn_t *conn; /* the connection being made or up; NULL between */
  uv_timer_t retry;
  double backoff_s;
  int ever_up; /* a connection has had all its tunnels exposed */
  int done, closing;
  int refs; /* itself, the timer, connections, connectors */
  sj_xagent_close_cb close_cb;
};

typedef enum {
  XC_DIAL,
  XC_CARRIER,
  XC_HELLO,
  XC_WELCOME,
  XC_REQUESTS,
  XC_UP,
  XC_ENDED
} xconn_stage_t;

struct xconn {
  sj_xagent_t *a;
  xconn_stage_t stage;
  sj_dial_t *dial;
  int dial_error; /* a dial that failed at once, reported from the loop */
  sj_xcarrier_t carrier;
  sj_xlines_t talk;
  int talking;
  uv_timer_t deadline;
  sj_mux_t *mux;
  size_t next;      /* the tunnel being asked for */
  sj_link_t locals; /* channels waiting for their local connection */
  int refs;         /* itself, the timer, the talk's stream */
};

/* agent.c */
void sj__xagent_log(sj_xagent_t *a, sj_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sj__xagent_unref(sj_xagent_t *a);
/* The connection has ended (conn is gone): reconnect later, or stop with
 * why if it never came up or fatal is set. */
void sj__xagent_lost(sj_xagent_t *a, int status, const char *why, int fatal);
/* Every tunnel is exposed. */
void sj__xagent_up(sj_xagent_t *a);

/* agent_conn.c */
xconn_t *sj__xconn_start(sj_xagent_t *a);
/* Ends the connection without reporting it. */
void sj__xconn_end(xconn_t *c);

/* agent_channel.c */
/* The server opened a channel: join it to a new local connection. */
void sj__xchannel_accept(xconn_t *c, sj_stream_t *ch);
/* Abandons the channels still waiting for their local connection. */
void sj__xchannel_drop_all(xconn_t *c);

#endif
