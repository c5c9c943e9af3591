/*
 * The expose agent (`sockjoin expose`): it connects to an expose server
 * (expose_server.h), proves its API key, asks for a public port per local service,
 * and joins every channel the server opens to a new connection to the
 * local service of the channel's tunnel.
 *
 * Per tunnel, a connector with two fed sides (connector_ext.h) pairs each
 * channel with its own local connection: the agent dials the local service
 * first and hands both streams in together, so a failed dial never reaches
 * the connector; the channel is refused instead (the server sees "refused"
 * and closes the public client at once, and both ends log it).
 *
 * Choices worth knowing:
 *   - The first connection must succeed: a server that cannot be reached,
 *     a TLS failure (a wrong CA), a wrong key or a refused tunnel ends the
 *     agent with the reason (on_done), since retrying would not help.
 *   - Once it has been up, a lost connection (the server went away, or its
 *     heartbeats stopped: mux PING, found dead within heartbeat_timeout +
 *     heartbeat) is retried with capped exponential back-off (retry_min_s
 *     doubling to retry_max_s, with jitter), forever; on each return every
 *     tunnel asks for the port it had ("prefer": another if it is gone,
 *     unless the user pinned it with remote_port), and on_exposed reports
 *     it again.
 *   - An unauthorized reply ends the agent whenever it comes.
 *
 * Library-internal (not in sockjoin.h); it never prints, it reports through
 * the callbacks.
 */
#ifndef SJ_EXPOSE_AGENT_API_H
#define SJ_EXPOSE_AGENT_API_H

#include "carrier.h"
#include "sockjoin.h"

#include <uv.h>

typedef struct sj_xagent sj_xagent_t;

typedef struct {
  char local_host[SJ_HOST_MAX]; /* the local service                     */
  int local_port;
  unsigned remote_port; /* the public port to ask for; 0: any           */
} sj_xagent_tunnel_t;

/* A tunnel is up; valid during the call. */
typedef struct {
  size_t index;      /* in the options' tunnels                      */
  const char *local; /* "HOST:PORT" of the local service             */
  const char *public_host;
  unsigned public_port;
  uint32_t tunnel_id;
} sj_xagent_exposed_t;

typedef void (*sj_xagent_log_cb)(sj_xagent_t *a, sj_log_level_t level, const char *msg, void *data);
typedef void (*sj_xagent_exposed_cb)(sj_xagent_t *a, const sj_xagent_exposed_t *info, void *data);
/* The agent has stopped for good: status < 0 and why (a line for the user,
 * "unauthorized: wrong API key"). It can then only be closed. */
typedef void (*sj_xagent_done_cb)(sj_xagent_t *a, int status, const char *why, void *data);
typedef void (*sj_xagent_close_cb)(sj_xagent_t *a, void *data);

#define SJ_XAGENT_TUNNELS_MAX 64

typedef struct {
  char server_host[SJ_HOST_MAX];
  int server_port;
  const sj_xagent_tunnel_t *tunnels; /* copied */
  size_t n_tunnels;                  /* 1 .. SJ_XAGENT_TUNNELS_MAX */
  const char *api_key;               /* copied; NULL: none */
  size_t api_key_len;
  int tls;
  char ca[SJ_FILE_MAX]; /* "": the system's trusted CAs         */
  int insecure;         /* accept any server certificate        */
  sj_xcarrier_transport_t transport;
  char ws_path[SJ_HOST_MAX];
  double connect_timeout_s;      /* to the server and to local services; 10 */
  double handshake_timeout_s;    /* TLS, ws, auth and the requests; 10      */
  double retry_min_s;            /* first back-off after a loss; 0.5        */
  double retry_max_s;            /* back-off cap; 30                        */
  unsigned heartbeat_ms;         /* mux PING period; 10000              */
  unsigned heartbeat_timeout_ms; /* silence that ends a session; 30000  */
  size_t buffer_size;            /* per direction of a stream; 256 KiB  */
  sj_keepalive_t keepalive;
  int verbose;
  sj_xagent_log_cb log_cb;
  sj_xagent_exposed_cb on_exposed;
  sj_xagent_done_cb on_done;
  void *data;
} sj_xagent_options_t;

void sj_xagent_options_init(sj_xagent_options_t *o);

/* Loads the TLS context and starts connecting. Returns 0 and *out, or a
 * negative code with a reason in err ("tls: bad CA file ca.pem: ...") and
 * nothing left open. */
int sj_xagent_new(sj_xagent_t **out, uv_loop_t *loop, const sj_xagent_options_t *opts, char *err,
                  size_t errlen);

/* Closes everything at once and frees the agent once every handle has
 * closed; cb (may be NULL) runs then. */
void sj_xagent_close(sj_xagent_t *a, sj_xagent_close_cb cb);

#endif
