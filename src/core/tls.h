/*
 * TLS as a stream over any stream (OpenSSL 3 over in-memory buffers, on the
 * filter machinery of filter.h): a listening side terminates TLS, a
 * connecting side originates it, and either composes with every other
 * layer (TLS over a mux channel, encryption inside TLS, ...).
 *
 * A context holds what is shared by every connection of one side (the
 * certificate, the key, the trusted CAs, the verification mode); a stream
 * is one connection. TLS 1.2 is the oldest version spoken.
 *
 * Choices worth knowing:
 *   - A client verifies the server by default, against ca= or the system
 *     store, and checks its name: sni= if given, else the host it dialled
 *     (an IP literal is checked against the certificate's IP addresses and
 *     sent as no SNI). verify=0 (no_verify) turns both checks off.
 *   - A server given ca= requires a client certificate signed by it
 *     (mutual TLS); without ca= it asks for none.
 *   - shutdown sends close_notify, then shuts the lower write direction;
 *     the peer may go on sending (half-close) until its own close_notify,
 *     which reads as UV_EOF.
 *   - The lower stream ending without close_notify is an error (UV_EPROTO,
 *     "tls: peer closed without close_notify (truncated)"), never UV_EOF:
 *     a cut TLS stream cannot be told from a complete one otherwise, and
 *     passing it on as a clean end would let an attacker truncate what the
 *     far side receives. The pair is reset instead.
 *   - A stream closed without shutdown sends no close_notify.
 */
#ifndef SJ_TLS_H
#define SJ_TLS_H

#include "filter.h"

typedef struct {
  int server;       /* 1: terminate TLS (listen side); 0: originate it */
  const char *cert; /* PEM certificate chain; required with server     */
  const char *key;  /* PEM private key for cert                        */
  const char *ca;   /* PEM CA certificates: a client trusts them instead of
                       the system store; a server requires client
                       certificates signed by them                      */
  const char *sni;  /* client: the name sent and checked (default: the
                       dialled host)                                    */
  int no_verify;    /* client: verify=0, accept any server certificate  */
} sj_tls_config_t;

typedef struct sj_tls_ctx sj_tls_ctx_t;

/*
 * Loads a context. Returns 0 and *out, or a negative code with a reason in
 * err naming the file and what is wrong, for example
 *   "tls: cannot read cert file x.pem: No such file or directory"
 *   "tls: bad key file k.pem: unsupported"
 *   "tls: key k.pem does not match certificate c.pem"
 *   "tls: bad CA file ca.pem: no certificate or crl found"
 *   "tls: a listening side needs cert= and key="
 */
int sj_tls_ctx_new(const sj_tls_config_t *cfg, sj_tls_ctx_t **out, char *err, size_t errlen);
/* Frees the context; streams made from it keep what they need. */
void sj_tls_ctx_free(sj_tls_ctx_t *ctx);

/*
 * Layers TLS over lower, which the new stream owns from now on (closing
 * the TLS stream closes it). host is the dialled host name or address, for
 * a client's SNI and name check (may be NULL with sni= or no_verify, and
 * on a server). cb (see sj_layer_cb in filter.h) reports the handshake,
 * which starts at once. Returns 0 and *out; or UV_ENOMEM, or UV_EINVAL for
 * a verifying client with no name to check, with lower untouched.
 */
int sj_tls_stream_new(sj_stream_t *lower, const sj_tls_ctx_t *ctx, const char *host, sj_layer_cb cb,
                      void *arg, sj_stream_t **out);

#endif
