/*
 * sockjoin: join two sockets.
 *
 * This is the one public header of libsockjoin. Conventions, following libuv:
 *   - every public name starts with sj_ or SJ_;
 *   - functions return 0 (or a count) on success and a negative error code on
 *     failure; the codes are libuv's (negative errno values) plus a few of our
 *     own, and sj_strerror() names any of them;
 *   - objects are opaque handles; a handle is released only by its close call,
 *     and its memory is gone only after the close callback has run;
 *   - the library never prints, exits or aborts on input: it reports through
 *     callbacks and return codes.
 */
#ifndef SOCKJOIN_H
#define SOCKJOIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SJ_EXTERN __attribute__((visibility("default")))
#else
#define SJ_EXTERN
#endif

#define SJ_VERSION_MAJOR 0
#define SJ_VERSION_MINOR 1
#define SJ_VERSION_PATCH 0
#define SJ_VERSION_STRING "0.1.0"

/* libuv's loop, declared here so that callers who share their own loop need
 * not include <uv.h> through us. */
struct uv_loop_s;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Our own codes live below libuv's range (libuv uses -4095 .. -1 and
 * -3000 .. -3014 for getaddrinfo errors). */
#define SJ_ERRNO_MAP(XX)                                                     \
  XX(EBADSIDE, -5001, "bad side specification")                              \
  XX(ECLOSED, -5002, "connector is closed")                                  \
  XX(EAUTH, -5003, "authentication failed")                                  \
  XX(ETIMEDOUT_AUTH, -5004, "authentication timed out")                      \
  XX(EMODE, -5005, "sides do not form a supported mode")                     \
  XX(ECONFIG, -5006, "bad side options (key, certificate or secret file)")   \
  XX(ECRYPTO, -5007, "encrypted stream failed authentication")               \
  XX(ETLS, -5008, "TLS failed")

typedef enum {
#define SJ_ERR_ENUM(name, code, msg) SJ_##name = (code),
  SJ_ERRNO_MAP(SJ_ERR_ENUM)
#undef SJ_ERR_ENUM
  SJ_ERRNO_MAX_ = -5000
} sj_errno_t;

/* A static, human-readable description of any code this library returns. */
SJ_EXTERN const char *sj_strerror(int err);
SJ_EXTERN const char *sj_version(void);

/* ------------------------------------------------------------------------ */
/* Sides: where the bytes of one end of a pair come from                    */
/* ------------------------------------------------------------------------ */

typedef enum {
  SJ_SIDE_LISTEN = 1,  /* listen:[HOST:]PORT      accept TCP connections    */
  SJ_SIDE_CONNECT,     /* connect:HOST:PORT        connect out over TCP      */
  SJ_SIDE_UNIX_LISTEN, /* unix-listen:PATH         accept on a Unix socket   */
  SJ_SIDE_UNIX,        /* unix:PATH                connect to a Unix socket  */
  SJ_SIDE_STDIO        /* stdio                    standard input and output */
} sj_side_kind_t;

#define SJ_HOST_MAX 256
#define SJ_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) on Linux */
#define SJ_PEER_HOST_MAX (SJ_PATH_MAX + 8) /* an address, "unix:PATH" or "stdio" */

#define SJ_FILE_MAX 512 /* a file named in a side option */

typedef enum {
  SJ_AUTH_NONE = 0,
  SJ_AUTH_TOKEN, /* auth=token:FILE  the peer's first line is the token  */
  SJ_AUTH_HMAC   /* auth=hmac:FILE   challenge-response with HMAC-SHA256 */
} sj_auth_kind_t;

/*
 * A side's security options ("listen:9000,tls,cert=c.pem,key=k.pem"). On a
 * listening side tls terminates TLS and auth checks the peer; on any other
 * side tls originates TLS and auth makes sockjoin prove itself to the peer.
 * Secrets and keys are read from files when the connector starts. A zeroed
 * struct means none of them.
 */
typedef struct {
  sj_auth_kind_t auth;
  char auth_file[SJ_FILE_MAX];
  int tls;
  char cert[SJ_FILE_MAX]; /* listen: the server's; connect: a client's  */
  char key[SJ_FILE_MAX];
  char ca[SJ_FILE_MAX];   /* connect: trust these (default: the system's);
                             listen: require a client certificate from them */
  char sni[SJ_HOST_MAX];  /* connect: the name to ask for and verify
                             (default: the host dialled)                    */
  int no_verify;          /* connect: skip verifying the server (verify=0)  */
  char encrypt_file[SJ_FILE_MAX]; /* encrypt=psk:FILE: end-to-end encryption
                                     with a sockjoin on the far end          */
} sj_side_security_t;

/* A parsed SIDE. host is empty for "all interfaces" on a listen side. */
typedef struct {
  sj_side_kind_t kind;
  char host[SJ_HOST_MAX];
  int port;
  char path[SJ_PATH_MAX];
  sj_side_security_t sec;
} sj_side_spec_t;

/*
 * Parses one SIDE argument ("listen:127.0.0.1:0", "connect:[::1]:22",
 * "unix:/run/x.sock", "stdio", ...). Pure: no I/O, no allocation.
 * Returns 0, or SJ_EBADSIDE with a reason that names what was wrong written
 * to err (for example "port out of range").
 */
SJ_EXTERN int sj_side_parse(const char *text, sj_side_spec_t *out, char *err,
                            size_t errlen);

/* Formats a side back to its canonical text form, options included;
 * returns the length that the full text needs (like snprintf). */
SJ_EXTERN int sj_side_format(const sj_side_spec_t *side, char *buf,
                             size_t len);

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

/* TCP keep-alive settings applied to every accepted or created TCP socket.
 * The defaults are socket_connector's: on, 60 s idle, 10 s interval, 5 probes. */
typedef struct {
  int enable;
  unsigned idle_s;
  unsigned interval_s;
  unsigned count;
} sj_keepalive_t;

#define SJ_KEEPALIVE_DEFAULTS ((sj_keepalive_t){1, 60, 10, 5})
#define SJ_KEEPALIVE_DISABLED ((sj_keepalive_t){0, 0, 0, 0})

typedef enum {
  SJ_TRAFFIC_OFF = 0,
  SJ_TRAFFIC_ASCII, /* one line per chunk, non-printable bytes as '.' */
  SJ_TRAFFIC_HEX    /* hexdump -C layout                               */
} sj_traffic_mode_t;

typedef enum {
  SJ_LOG_ERROR = 0, /* always reported */
  SJ_LOG_INFO,      /* lifecycle events, reported when verbose */
  SJ_LOG_TRAFFIC    /* relayed bytes, reported when traffic logging is on */
} sj_log_level_t;

typedef struct sj_connector_s sj_connector_t;

/* Receives every message the library has for a human. msg is one line
 * without its newline (a hex traffic dump is several lines joined by '\n'),
 * valid only during the call. */
typedef void (*sj_log_cb)(sj_connector_t *c, sj_log_level_t level,
                          const char *msg, void *data);

/* The two ends of a pair. */
typedef enum { SJ_A = 0, SJ_B = 1 } sj_side_t;

/* Where one socket of a pair came from. For a Unix socket host is
 * "unix:PATH" and port is -1; for stdio host is "stdio" and port is -1. */
typedef struct {
  char host[SJ_PEER_HOST_MAX];
  int port;
  int64_t timestamp_ms; /* when it reached the connector, ms since the epoch */
} sj_peer_t;

/* A pair as reported to callbacks; valid only during the call. */
typedef struct {
  uint64_t id; /* 1, 2, 3 ... in the order pairs formed */
  sj_peer_t a, b;
  uint64_t bytes_read_a;     /* read from A                  */
  uint64_t bytes_a_to_b;     /* written to B (after transform) */
  uint64_t bytes_read_b;     /* read from B                  */
  uint64_t bytes_b_to_a;     /* written to A                 */
  int status; /* for a closed pair: 0 after a clean close, else why it ended */
} sj_pair_info_t;

typedef void (*sj_pair_cb)(sj_connector_t *c, const sj_pair_info_t *pair,
                           void *data);
/* Called once, when the connector has finished (grace timeout with no pairs,
 * its one pair ended, sj_connector_stop() completed, or a fatal error:
 * status < 0). The connector can then only be closed. */
typedef void (*sj_done_cb)(sj_connector_t *c, int status, void *data);
typedef void (*sj_close_cb)(sj_connector_t *c, void *data);

/* ------------------------------------------------------------------------ */
/* Verifiers: a side's sockets prove themselves before they are paired      */
/* ------------------------------------------------------------------------ */

/* One socket under verification; valid from start() until the verifier
 * accepts or rejects it, or until on_end(). */
typedef struct sj_verify_s sj_verify_t;

/* The most bytes a verifier is shown at once. A peer that sends more
 * without the verifier deciding is rejected ("auth message too long"). */
#define SJ_VERIFY_MAX 4096

typedef struct {
  /* A new socket must prove itself. The verifier may write at once. */
  void (*start)(sj_verify_t *v, void *data);
  /* Bytes arrived: buf holds everything received and not yet consumed
   * (at most SJ_VERIFY_MAX bytes). The verifier consumes the bytes of its
   * auth message and accepts or rejects, now or later. */
  void (*on_data)(sj_verify_t *v, const char *buf, size_t len, void *data);
  /* Optional: v is gone without a decision (the peer left, the deadline
   * passed, the connector closed); per-socket state is released here. */
  void (*on_end)(sj_verify_t *v, int status, void *data);
  void *data;
} sj_verifier_t;

/* Writes to the socket under verification (copied; at most SJ_VERIFY_MAX
 * bytes queued). Returns 0 or a negative code. */
SJ_EXTERN int sj_verify_write(sj_verify_t *v, const void *buf, size_t len);
/* The first n bytes shown were the auth message: they are never relayed. */
SJ_EXTERN void sj_verify_consume(sj_verify_t *v, size_t n);
/* The socket may be paired once what was written has been sent; bytes not
 * consumed are relayed as its first data. v is gone after this call. */
SJ_EXTERN void sj_verify_accept(sj_verify_t *v);
/* The socket is refused: reason (may be NULL) is sent as one line, then the
 * socket is closed. v is gone after this call. */
SJ_EXTERN void sj_verify_reject(sj_verify_t *v, const char *reason);
/* Which side, and where the peer is. */
SJ_EXTERN sj_side_t sj_verify_side(const sj_verify_t *v);
SJ_EXTERN void sj_verify_peer(const sj_verify_t *v, sj_peer_t *out);
/* A pointer of the verifier's own for this socket. */
SJ_EXTERN void sj_verify_set_state(sj_verify_t *v, void *state);
SJ_EXTERN void *sj_verify_state(const sj_verify_t *v);

/* ------------------------------------------------------------------------ */
/* Transformers: a pair's bytes rewritten in flight                          */
/* ------------------------------------------------------------------------ */

/* Where a transformer puts what it makes; valid during the call. */
typedef struct sj_emit_s sj_emit_t;

/*
 * Called with each chunk read from the source (len > 0), and once with
 * buf == NULL at the source's end, to emit what it still holds. It emits
 * zero or more chunks of any length with sj_emit(). Returns 0, or a
 * negative code, which resets the pair.
 */
typedef int (*sj_transform_fn)(sj_emit_t *out, const char *buf, size_t len, void *state);

typedef struct {
  sj_transform_fn fn; /* NULL: bytes pass unchanged */
  void *state;
  void (*release)(void *state); /* optional: the pair has closed */
} sj_transformer_t;

/* Queues bytes for the destination (copied). Returns 0 or UV_ENOMEM. */
SJ_EXTERN int sj_emit(sj_emit_t *out, const void *buf, size_t len);

/* Called as a pair forms, before any byte is relayed; it may set the pair's
 * transformers. Returning a negative code refuses the pair (both closed). */
typedef int (*sj_before_joining_cb)(sj_connector_t *c, const sj_pair_info_t *pair,
                                    sj_transformer_t *a_to_b, sj_transformer_t *b_to_a,
                                    void *data);

typedef struct {
  int verbose;                   /* lifecycle events at SJ_LOG_INFO          */
  sj_traffic_mode_t log_traffic; /* relayed chunks at SJ_LOG_TRAFFIC         */
  double timeout_s;        /* grace period; 0 = none (run until stopped)     */
  double connect_timeout_s;      /* outbound connects; default 10            */
  size_t buffer_size;      /* per-direction high-water mark; default 256 KiB */
  unsigned max_pairs;      /* 0 = unlimited                                  */
  sj_keepalive_t keepalive;      /* default SJ_KEEPALIVE_DEFAULTS            */
  int no_splice; /* 1: never relay with splice(2); bytes always pass through
                    user space (the zero-copy path is used by default where
                    both ends are plain sockets and no traffic is logged) */
  /* Listening sides accept from this connector's listening TCP sockets
   * instead of binding their own: connectors on several threads then serve
   * one port, and whichever thread is free takes the next connection. Only
   * listen: sides share (a socket file stays its maker's), and the other
   * connector must listen on the same sides; otherwise UV_EINVAL. Accepted
   * sockets get the other's socket options (keep-alive). Create before the
   * other connector's loop runs, or on its thread; each connector then
   * holds its own descriptor of the socket and may close in any order. */
  const sj_connector_t *share_listener;
  /* A socket has this long to finish TLS, auth and the encryption
   * handshake (default 30); then it is refused. */
  double auth_timeout_s;
  /* Per side: a verifier run on every socket of the side before it can be
   * paired (after TLS, before encryption). It replaces the side's auth=. */
  sj_verifier_t verifier[2];
  sj_before_joining_cb before_joining;
  /* connect/connect only: keep this many connections of the standing side
   * (the side with auth= or encrypt=; B if both or neither) open, each
   * waiting until its peer shows life (its encryption handshake, or its
   * first byte), then dial the other side for it and replace it. 0: one
   * pair, then done. */
  unsigned persist;
  sj_log_cb log_cb;              /* NULL: messages are dropped               */
  sj_pair_cb on_pair;            /* a pair formed                            */
  sj_pair_cb on_pair_closed;     /* a pair ended; byte counts are final      */
  sj_done_cb on_done;
  void *data;                    /* passed to every callback above           */
} sj_options_t;

#define SJ_DEFAULT_BUFFER (256 * 1024)
#define SJ_DEFAULT_AUTH_TIMEOUT 30.0

/* Fills opts with the defaults documented above. */
SJ_EXTERN void sj_options_init(sj_options_t *opts);

/* ------------------------------------------------------------------------ */
/* The connector                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Creates a connector joining side a to side b and starts it: listening
 * sides are bound and listening when this returns (so their ports can be
 * read at once), connecting sides start connecting.
 *   loop: the caller's libuv loop, or NULL for a loop the connector owns
 *         (drive it with sj_connector_run()).
 *   opts: copied; NULL means the defaults.
 * The four combinations of listen and connect are socket_connector's
 * serverToServer, serverToSocket, socketToServer and socketToSocket; Unix
 * sockets count as listen or connect, and stdio counts as a connect side
 * that makes exactly one pair. Both sides stdio is SJ_EMODE.
 * Returns 0 and *out, or a negative code (for example UV_EADDRINUSE) with
 * nothing left open; where the failure concerns one side, *failed_side (if
 * not NULL) says which.
 */
SJ_EXTERN int sj_connector_new(sj_connector_t **out, struct uv_loop_s *loop,
                               const sj_side_spec_t *a,
                               const sj_side_spec_t *b,
                               const sj_options_t *opts, sj_side_t *failed_side);

/* socket_connector's four factories, by name: each checks that the sides are
 * of the kinds its name says (else SJ_EMODE) and calls sj_connector_new(). */
SJ_EXTERN int sj_server_to_server(sj_connector_t **out, struct uv_loop_s *loop,
                                  const sj_side_spec_t *a,
                                  const sj_side_spec_t *b,
                                  const sj_options_t *opts);
SJ_EXTERN int sj_server_to_socket(sj_connector_t **out, struct uv_loop_s *loop,
                                  const sj_side_spec_t *a,
                                  const sj_side_spec_t *b,
                                  const sj_options_t *opts);
SJ_EXTERN int sj_socket_to_server(sj_connector_t **out, struct uv_loop_s *loop,
                                  const sj_side_spec_t *a,
                                  const sj_side_spec_t *b,
                                  const sj_options_t *opts);
SJ_EXTERN int sj_socket_to_socket(sj_connector_t **out, struct uv_loop_s *loop,
                                  const sj_side_spec_t *a,
                                  const sj_side_spec_t *b,
                                  const sj_options_t *opts);

/* The loop the connector runs on (its own or the caller's). */
SJ_EXTERN struct uv_loop_s *sj_connector_loop(sj_connector_t *c);

/* Runs the connector's own loop until the connector is done and closed.
 * Only for connectors created with loop == NULL. */
SJ_EXTERN int sj_connector_run(sj_connector_t *c);

/*
 * The address a listening side is bound to, as text: "127.0.0.1:9000",
 * "[::1]:9000", or the path of a Unix socket. Returns the port (0 for a Unix
 * socket), or SJ_ECLOSED once listening has stopped, or UV_EINVAL for a side
 * that does not listen.
 */
SJ_EXTERN int sj_connector_address(const sj_connector_t *c, sj_side_t side,
                                   char *buf, size_t len);

/*
 * handle_single_connection: hands a connected socket the caller made itself
 * to the connector as a new socket of side `side` (TCP or Unix stream
 * socket). The connector owns fd from this call on, also when it fails.
 * Returns 0, SJ_ECLOSED once the connector is done, or a libuv error.
 */
SJ_EXTERN int sj_connector_add_fd(sj_connector_t *c, sj_side_t side, int fd);

/*
 * Stops gracefully: listening stops, sockets still waiting for a partner are
 * closed, and established pairs stop reading but deliver everything already
 * read before they close, for at most drain_ms; then on_done runs with 0.
 */
SJ_EXTERN void sj_connector_stop(sj_connector_t *c, unsigned drain_ms);

/*
 * Closes everything at once (on_done runs first, with SJ_ECLOSED, if it has
 * not run yet) and frees the connector once every handle has closed; cb
 * then runs. Safe to call from any connector callback, once.
 */
SJ_EXTERN void sj_connector_close(sj_connector_t *c, sj_close_cb cb);

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
  uint64_t pairs;          /* pairs formed so far                        */
  uint64_t active_pairs;   /* pairs open now                             */
  uint64_t bytes_read_a;   /* read from A sockets                        */
  uint64_t bytes_a_to_b;   /* written to B sockets                       */
  uint64_t bytes_read_b;
  uint64_t bytes_b_to_a;
  /* The sockets of each side that were paired, in pairing order: borrowed,
   * valid until the next sj_connector_stats() call or the connector's close.
   * At most SJ_STATS_SOCKETS_MAX are kept per side; the count of those not
   * kept is in *_dropped. */
  const sj_peer_t *sockets_a;
  size_t n_sockets_a;
  uint64_t sockets_a_dropped;
  const sj_peer_t *sockets_b;
  size_t n_sockets_b;
  uint64_t sockets_b_dropped;
} sj_stats_t;

#define SJ_STATS_SOCKETS_MAX 65536

SJ_EXTERN void sj_connector_stats(sj_connector_t *c, sj_stats_t *out);

/*
 * Writes stats as one JSON object in socket_connector's shape:
 * {"pairs":N,"bytes_a_to_b":N,"bytes_b_to_a":N,
 *  "sockets_a":{"HOST":[{"port":P,"timestamp":"ISO-8601"}]},"sockets_b":{..}}
 * Returns the length the whole text needs (like snprintf), or a negative
 * code; the output is complete only when the return is < len.
 */
SJ_EXTERN int sj_stats_json(const sj_stats_t *stats, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Traffic formatting, for callers that log traffic themselves              */
/* ------------------------------------------------------------------------ */

/*
 * Formats one relayed chunk the way --log-traffic shows it: a first line
 * "A -> B (pair N, LEN bytes): TEXT" in ascii mode (non-printable bytes as
 * '.'), or a header line and hexdump -C lines in hex mode. Returns the length
 * the whole text needs, like snprintf.
 */
SJ_EXTERN int sj_traffic_format(sj_traffic_mode_t mode, sj_side_t from,
                                uint64_t pair_id, const void *bytes,
                                size_t n, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* SOCKJOIN_H */
