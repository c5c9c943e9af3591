/* TLS over any stream: OpenSSL works on a BIO over the filter's buffers,
 * and the filter (filter.c) moves the bytes to and from the lower stream. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plain bytes per SSL_write: one full record. */
#define RECORD_MAX 16384

struct sj_tls_ctx {
  SSL_CTX *ssl_ctx;
  int server;
  int verify;
  char sni[256];
};

typedef struct {
  sj_filter_t f; /* first: the filter lives inside */
  SSL *ssl;
  const char *in; /* the input being decoded, for net_read */
  size_t inlen, inused;
  int seen_input;
} tls_t;

/* ---- contexts ------------------------------------------------------------- */

static int ctx_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int ctx_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  int n = snprintf(err, errlen, "tls: ");
  va_list ap;
  va_start(ap, fmt);
  if (n >= 0 && (size_t)n < errlen)
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
  va_end(ap);
  ERR_clear_error();
  return code;
}

/* What OpenSSL said about its last failure. */
static const char *ssl_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  return r != NULL ? r : "unknown error";
}

static int key_mismatch(void) {
  int reason = ERR_GET_REASON(ERR_peek_last_error());
  return reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH;
}

/* A missing or unreadable file is named plainly, before OpenSSL's less
 * helpful reason for it. */
static int check_readable(const char *what, const char *path, char *err, size_t errlen) {
  FILE *fp = fopen(path, "r");
  if (fp == NULL) {
    int e = errno;
    return ctx_fail(err, errlen, -e, "cannot read %s file %s: %s", what, path, strerror(e));
  }
  fclose(fp);
  return 0;
}

static int load_identity(SSL_CTX *ctx, const sj_tls_config_t *cfg, char *err, size_t errlen) {
  int rc;
  ERR_clear_error();
  if ((rc = check_readable("cert", cfg->cert, err, errlen)) != 0 ||
      (rc = check_readable("key", cfg->key, err, errlen)) != 0)
    return rc;
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1)
    return ctx_fail(err, errlen, UV_EINVAL, "bad certificate file %s: %s", cfg->cert, ssl_reason());
  /* Loading the key already checks it against the certificate. */
  if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 && !key_mismatch())
    return ctx_fail(err, errlen, UV_EINVAL, "bad key file %s: %s", cfg->key, ssl_reason());
  if (ERR_peek_error() != 0 || SSL_CTX_check_private_key(ctx) != 1)
    return ctx_fail(err, errlen, UV_EINVAL, "key %s does not match certificate %s", cfg->key,
                    cfg->cert);
  return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca, int server, char *err, size_t errlen) {
  int rc = check_readable("CA", ca, err, errlen);
  if (rc != 0)
    return rc;
  if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
    return ctx_fail(err, errlen, UV_EINVAL, "bad CA file %s: %s", ca, ssl_reason());
  if (server) {
    /* The names a server sends in its certificate request. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names == NULL)
      return ctx_fail(err, errlen, UV_EINVAL, "bad CA file %s: no certificates", ca);
    SSL_CTX_set_client_CA_list(ctx, names);
  }
  return 0;
}

static int setup_server(SSL_CTX *ctx, const sj_tls_config_t *cfg, char *err, size_t errlen) {
  if (cfg->cert == NULL || cfg->key == NULL)
    return ctx_fail(err, errlen, UV_EINVAL, "a listening side needs cert= and key=");
  int rc = load_identity(ctx, cfg, err, errlen);
  if (rc == 0 && cfg->ca != NULL) {
    rc = load_ca(ctx, cfg->ca, 1, err, errlen);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  /* No session resumption: tickets would only cost bytes and CPU. */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  return rc;
}

static int setup_client(SSL_CTX *ctx, const sj_tls_config_t *cfg, char *err, size_t errlen) {
  int rc = 0;
  if ((cfg->cert != NULL) != (cfg->key != NULL))
    return ctx_fail(err, errlen, UV_EINVAL, "a client certificate needs both cert= and key=");
  if (cfg->cert != NULL && (rc = load_identity(ctx, cfg, err, errlen)) != 0)
    return rc;
  if (cfg->no_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return 0;
  }
  if (cfg->ca != NULL)
    rc = load_ca(ctx, cfg->ca, 0, err, errlen);
  else if (SSL_CTX_set_default_verify_paths(ctx) != 1)
    rc = ctx_fail(err, errlen, UV_EINVAL, "cannot load the system CA store: %s", ssl_reason());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  return rc;
}

int sj_tls_ctx_new(const sj_tls_config_t *cfg, sj_tls_ctx_t **out, char *err, size_t errlen) {
  if (cfg->sni != NULL && strlen(cfg->sni) >= sizeof((sj_tls_ctx_t *)0)->sni)
    return ctx_fail(err, errlen, UV_EINVAL, "sni= name too long");
  sj_tls_ctx_t *ctx = calloc(1, sizeof *ctx);
  SSL_CTX *ssl_ctx = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
  if (ctx == NULL || ssl_ctx == NULL) {
    free(ctx);
    SSL_CTX_free(ssl_ctx);
    return ctx_fail(err, errlen, UV_ENOMEM, "out of memory");
  }
  SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
  /* TLS 1.2 renegotiation: a peer could make us queue work without end. */
  SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  int rc = cfg->server ? setup_server(ssl_ctx, cfg, err, errlen)
                       : setup_client(ssl_ctx, cfg, err, errlen);
  if (rc != 0) {
    SSL_CTX_free(ssl_ctx);
    free(ctx);
    return rc;
  }
  ctx->ssl_ctx = ssl_ctx;
  ctx->server = cfg->server;
  ctx->verify = !cfg->server && !cfg->no_verify;
  if (cfg->sni != NULL)
    snprintf(ctx->sni, sizeof ctx->sni, "%s", cfg->sni);
  *out = ctx;
  return 0;
}

void sj_tls_ctx_free(sj_tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  SSL_CTX_free(ctx->ssl_ctx); /* reference counted: live streams keep it */
  free(ctx);
}

/* ---- errors --------------------------------------------------------------- */

/* Alerts about certificates: the peer did not accept who we are. */
static int is_cert_alert(int alert) {
  return (alert >= SSL_AD_BAD_CERTIFICATE && alert <= SSL_AD_ACCESS_DENIED) ||
         alert == SSL_AD_CERTIFICATE_REQUIRED;
}

/* OpenSSL's reasons for bytes that are not TLS records at all. */
static int is_not_tls(int reason) {
  return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
         reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
         reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_RECORD_LENGTH_MISMATCH;
}

static int not_tls(sj_filter_t *f) {
  return sj_filter_error(f, UV_EPROTO, "peer did not speak TLS (plaintext?)");
}

/* Turns OpenSSL's error queue after a failed call into a code and a line
 * for the log. */
static int explain(tls_t *t, int e) {
  sj_filter_t *f = &t->f;
  unsigned long err = ERR_peek_error();
  int reason = ERR_GET_REASON(err);
  const char *text = err != 0 ? ERR_reason_error_string(err) : NULL;
  long verify = SSL_get_verify_result(t->ssl);
  if (text == NULL)
    text = e == SSL_ERROR_SYSCALL ? "unexpected end of input" : "unknown error";
  if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK)
    return sj_filter_error(f, SJ_EAUTH, "certificate verify failed: %s",
                           X509_verify_cert_error_string(verify));
  if (is_not_tls(reason))
    return not_tls(f);
  if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
    return sj_filter_error(f, SJ_EAUTH, "peer sent no client certificate");
  if (reason > SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
    return sj_filter_error(f, is_cert_alert(reason - SSL_AD_REASON_OFFSET) ? SJ_EAUTH : UV_EPROTO,
                           "peer sent alert: %s", text);
  return sj_filter_error(f, UV_EPROTO, "%s%s", f->handshake_done ? "" : "handshake failed: ", text);
}

static int failed_call(tls_t *t, int ret) {
  int e = SSL_get_error(t->ssl, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  if (e == SSL_ERROR_ZERO_RETURN)
    return SJ_FILTER_EOF;
  int rc = explain(t, e);
  ERR_clear_error();
  return rc;
}

/* ---- the codec ------------------------------------------------------------ */

/* OpenSSL's network side is a BIO of ours over the filter's buffers: what
 * it writes goes straight into the queue towards the lower stream, and it
 * reads straight from the chunk being decoded. (Memory BIOs would cost a
 * copy and a memset more per byte each way.) */
static int net_write(BIO *b, const char *data, int len) {
  tls_t *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  return sj_filter_send(&t->f, data, (size_t)len) == 0 ? len : -1;
}

static int net_read(BIO *b, char *buf, int len) {
  tls_t *t = BIO_get_data(b);
  size_t left = t->inlen - t->inused;
  size_t n = left < (size_t)len ? left : (size_t)len;
  BIO_clear_retry_flags(b);
  if (n == 0) {
    BIO_set_retry_read(b); /* not yet: the filter says when input ended */
    return -1;
  }
  memcpy(buf, t->in + t->inused, n);
  t->inused += n;
  return (int)n;
}

static long net_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tls_t *t = BIO_get_data(b);
  (void)num;
  (void)ptr;
  if (cmd == BIO_CTRL_FLUSH)
    return 1;
  if (cmd == BIO_CTRL_PENDING)
    return t != NULL ? (long)(t->inlen - t->inused) : 0;
  return 0;
}

static int net_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *net_method;

static void make_net_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sockjoin filter");
  if (m != NULL && BIO_meth_set_write(m, net_write) == 1 && BIO_meth_set_read(m, net_read) == 1 &&
      BIO_meth_set_ctrl(m, net_ctrl) == 1 && BIO_meth_set_create(m, net_create) == 1)
    net_method = m;
  else
    BIO_meth_free(m);
}

/* An OpenSSL call's outcome: ret when positive, else 0 (wants more),
 * SJ_FILTER_EOF (close_notify) or an error. SJ_FILTER_EOF is positive too:
 * callers tell it from success by OpenSSL's own return. */
static int outcome(tls_t *t, int ret) { return ret > 0 ? ret : failed_call(t, ret); }

static int handshake(tls_t *t) {
  ERR_clear_error();
  int ret = SSL_do_handshake(t->ssl);
  int rc = outcome(t, ret);
  if (ret == 1)
    sj_filter_handshake_done(&t->f);
  if (ret == 1 || rc <= 0)
    return rc;
  return sj_filter_error(&t->f, UV_EPROTO, "peer closed the connection during the handshake");
}

static int tls_begin(sj_filter_t *f) {
  tls_t *t = (tls_t *)f;
  if (SSL_is_server(t->ssl))
    return 0;
  /* A client speaks first: its ClientHello is queued now. */
  int rc = handshake(t);
  return rc < 0 ? rc : 0;
}

/* The handshake if it is not done yet, then one read. */
static int read_some(tls_t *t, char *out, size_t cap, size_t *produced) {
  int rc;
  if (!t->f.handshake_done && (rc = handshake(t)) <= 0)
    return rc;
  ERR_clear_error();
  int n = SSL_read(t->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
  rc = outcome(t, n);
  if (rc < 0 || n <= 0)
    return rc; /* 0: more input, please; SJ_FILTER_EOF: close_notify */
  *produced = (size_t)n;
  return 0;
}

/* The first byte from the peer must open a handshake or an alert record,
 * else it speaks something other than TLS. */
static int tls_decode(sj_filter_t *f, const char *in, size_t inlen, size_t *used, char *out,
                      size_t cap, size_t *produced) {
  tls_t *t = (tls_t *)f;
  if (inlen > 0 && !t->seen_input && in[0] != 0x16 && in[0] != 0x15)
    return not_tls(f);
  t->seen_input |= inlen > 0;
  t->in = in;
  t->inlen = inlen;
  t->inused = 0;
  int rc = read_some(t, out, cap, produced);
  *used = t->inused;
  t->in = NULL;
  t->inlen = t->inused = 0;
  return rc;
}

static int tls_encode(sj_filter_t *f, const char *buf, size_t len) {
  tls_t *t = (tls_t *)f;
  ERR_clear_error();
  return outcome(t, SSL_write(t->ssl, buf, len > RECORD_MAX ? RECORD_MAX : (int)len));
}

/* close_notify. SSL_shutdown returns 0 when the peer's has not come yet:
 * its data may still be read (half-close). */
static int tls_finish(sj_filter_t *f) {
  tls_t *t = (tls_t *)f;
  ERR_clear_error();
  int ret = SSL_shutdown(t->ssl);
  int rc = outcome(t, ret == 0 ? 1 : ret);
  return rc < 0 ? rc : 0;
}

static int tls_truncated(sj_filter_t *f) {
  if (!f->handshake_done)
    return sj_filter_error(f, UV_EPROTO, "peer closed the connection during the handshake");
  return sj_filter_error(f, UV_EPROTO, "peer closed without close_notify (truncated)");
}

static void tls_destroy(sj_filter_t *f) {
  tls_t *t = (tls_t *)f;
  SSL_free(t->ssl); /* and its BIO */
  free(t);
}

static const sj_filter_codec_t tls_codec = {
    .name = "tls",
    .begin = tls_begin,
    .decode = tls_decode,
    .encode = tls_encode,
    .finish = tls_finish,
    .truncated = tls_truncated,
    .destroy = tls_destroy,
};

/* ---- streams -------------------------------------------------------------- */

/* A client's SNI and the name its peer's certificate must carry. An IP
 * literal is checked as an address and, as RFC 6066 asks, not sent. */
static int set_name(tls_t *t, const sj_tls_ctx_t *ctx, const char *name) {
  unsigned char ip[16];
  int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
  if (!is_ip && SSL_set_tlsext_host_name(t->ssl, name) != 1)
    return UV_EINVAL;
  if (!ctx->verify)
    return 0;
  X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name) : SSL_set1_host(t->ssl, name);
  return ok == 1 ? 0 : UV_EINVAL;
}

static int make_ssl(tls_t *t, const sj_tls_ctx_t *ctx, const char *name) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_net_method);
  BIO *bio = net_method != NULL ? BIO_new(net_method) : NULL;
  t->ssl = SSL_new(ctx->ssl_ctx);
  if (t->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    return UV_ENOMEM;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways; the SSL owns it */
  if (ctx->server) {
    SSL_set_accept_state(t->ssl);
    return 0;
  }
  SSL_set_connect_state(t->ssl);
  return name != NULL && *name != '\0' ? set_name(t, ctx, name) : 0;
}

int sj_tls_stream_new(sj_stream_t *lower, const sj_tls_ctx_t *ctx, const char *host, sj_layer_cb cb,
                      void *arg, sj_stream_t **out) {
  const char *name = ctx->sni[0] != '\0' ? ctx->sni : host;
  if (ctx->verify && (name == NULL || *name == '\0'))
    return UV_EINVAL;
  tls_t *t = calloc(1, sizeof *t);
  if (t == NULL)
    return UV_ENOMEM;
  sj_filter_init(&t->f, lower, &tls_codec, cb, arg);
  int rc = make_ssl(t, ctx, name);
  if (rc != 0) {
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return rc;
  }
  sj_filter_start(&t->f);
  *out = &t->f.base;
  return 0;
}
