/*
 * The expose server (`sockjoin server`): agents behind a NAT connect to its
 * control listener, prove an API key, and ask for public ports; every
 * connection to a public port becomes a mux channel to the agent that
 * asked for it, which joins it to its local service.
 *
 *   agent ══ one control connection: [tls] [ws] auth, then the mux ══ server
 *            channel 1 (tag 0): "expose PORT" / "ok PORT TUNNEL"     │
 *            channel per public connection, tagged with its tunnel ◄─ public
 *                                                                     listener
 *
 * Per tunnel, a connector (connector_ext.h) joins its public listener
 * (listen:PUBLIC_BIND:PORT) to an SJ__SIDE_OPEN side that opens a tagged
 * channel on the agent's mux for every accepted connection, so public
 * connections get the pumps, half-close, stats and logs of any pair.
 *
 * Choices worth knowing:
 *   - Authentication: the server sends a random challenge, the agent the
 *     HMAC-SHA256 of it under its key (control.h); the answer is checked
 *     against every configured key, each in constant time, all of them
 *     every time. The key that matched owns the agent's tunnels.
 *   - Ports: a requested port is given if it is in --port-range and free;
 *     with "prefer", any port is given when it is not. Without a range the
 *     system picks free ports (and any requested port is allowed).
 *   - An agent that goes away (its connection ends, or its heartbeats stop:
 *     mux PING, found dead within heartbeat_timeout + heartbeat) leaves its
 *     tunnels' ports reserved for grace_s: the listener stays bound, and
 *     every connection to it is accepted and closed at once (never left
 *     waiting for an agent that may not come back). An agent with the same
 *     key asking for the port again takes the tunnel back (same port, same
 *     id). The same agent (the random id it sends with its answer) may also
 *     take a tunnel over from a session of its own that has not been found
 *     dead yet (a reconnect after a network change); another agent sharing
 *     the key is told the port is in use. After the grace period the port
 *     is released.
 *   - Limits: tunnels per key (all of them, reserved ones included; without
 *     auth, per agent), streams per tunnel (public connections beyond it
 *     wait in the listen backlog until one ends), agents at once, and a
 *     deadline for the carrier's handshake and the auth lines.
 *
 * Library-internal (not in sockjoin.h); it never prints, it reports through
 * the log callback.
 */
#ifndef SJ_EXPOSE_SERVER_API_H
#define SJ_EXPOSE_SERVER_API_H

#include "carrier.h"
#include "keys.h"
#include "sockjoin.h"

#include <uv.h>

typedef struct sj_xserver sj_xserver_t;

typedef void (*sj_xserver_log_cb)(sj_xserver_t *s, sj_log_level_t level, const char *msg,
                                  void *data);
typedef void (*sj_xserver_close_cb)(sj_xserver_t *s, void *data);

typedef struct {
  char public_host[SJ_HOST_MAX]; /* told to agents for their URL; "" none */
  char public_bind[SJ_HOST_MAX]; /* public listeners' address; "" all    */
  unsigned port_lo, port_hi;     /* 0, 0: any port the system gives      */
  char tls_cert[SJ_FILE_MAX];    /* both set: TLS on the control listener */
  char tls_key[SJ_FILE_MAX];
  sj_xcarrier_transport_t transport;
  char ws_path[SJ_HOST_MAX];
  const sj_xkeys_t *keys;        /* copied; none configured needs no_auth */
  int no_auth;                   /* check no key                          */
  unsigned max_tunnels;          /* per key; default 64                   */
  unsigned max_streams;          /* per tunnel; default 1024              */
  unsigned max_agents;           /* agents at once; default 1024          */
  double grace_s;                /* ports kept after an agent goes; 30    */
  double handshake_timeout_s;    /* TLS, ws and auth; default 10          */
  unsigned heartbeat_ms;         /* mux PING period; default 10000        */
  unsigned heartbeat_timeout_ms; /* silence that ends a session; 30000    */
  size_t buffer_size;            /* per direction of a stream; 256 KiB    */
  sj_keepalive_t keepalive;      /* TCP keep-alive of every socket        */
  int verbose;                   /* lifecycle events at SJ_LOG_INFO       */
  sj_xserver_log_cb log_cb;
  void *data;
} sj_xserver_options_t;

void sj_xserver_options_init(sj_xserver_options_t *o);

/*
 * Loads the TLS context and the keys, binds the control listener (listen,
 * an SJ_SIDE_LISTEN spec, copied) and starts serving on loop. Returns 0 and
 * *out, or a negative code with a reason in err ("tls: cannot read cert
 * file c.pem: ...", "no API keys configured", "cannot listen on
 * 0.0.0.0:7835: address already in use") and nothing left open.
 */
int sj_xserver_new(sj_xserver_t **out, uv_loop_t *loop, const sj_side_spec_t *listen,
                   const sj_xserver_options_t *opts, char *err, size_t errlen);

/* The control listener's address ("127.0.0.1:7835"); returns its port. */
int sj_xserver_address(const sj_xserver_t *s, char *buf, size_t len);

/* Closes everything at once (agents, tunnels, public listeners) and frees
 * the server once every handle has closed; cb (may be NULL) runs then. */
void sj_xserver_close(sj_xserver_t *s, sj_xserver_close_cb cb);

#endif
