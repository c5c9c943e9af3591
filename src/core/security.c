/*
 * A side's security, set up from its options when the connector starts:
 * the auth secret and verifier, the TLS context, the encryption key. Files
 * are read here, once, so a bad one stops the start with a message that
 * names it; the stages that use them run per socket (prep.c).
 */
#include "connector_int.h"
#include "seal.h"
#include "tls.h"

#include <stdlib.h>

#include <string.h>

static int is_listening(const sj_side_spec_t *s) {
  return s->kind == SJ_SIDE_LISTEN || s->kind == SJ_SIDE_UNIX_LISTEN;
}

static int open_auth(sj_connector_t *c, sj_side_t side) {
  const sj_side_security_t *sec = &c->spec[side].sec;
  sj_side_sec_t *ss = &c->sec[side];
  if (sec->auth == SJ_AUTH_NONE)
    return 0;
  char err[SJ_FILE_MAX + 128];
  if (sj_secret_load(sec->auth_file, &ss->auth.secret, err, sizeof err) != 0) {
    sj__log(c, SJ_LOG_ERROR, "%c auth: %s", sj__side_letter(side), err);
    return SJ_ECONFIG;
  }
  ss->auth.kind = sec->auth;
  /* A verifier given by the caller takes the side's place. */
  if (c->verifier[side].start == NULL && c->verifier[side].on_data == NULL)
    sj__auth_verifier(&ss->auth, is_listening(&c->spec[side]), &c->verifier[side]);
  return 0;
}

static int open_tls(sj_connector_t *c, sj_side_t side) {
  const sj_side_security_t *sec = &c->spec[side].sec;
  if (!sec->tls)
    return 0;
  sj_tls_config_t cfg = {
      .server = is_listening(&c->spec[side]),
      .cert = sec->cert[0] ? sec->cert : NULL,
      .key = sec->key[0] ? sec->key : NULL,
      .ca = sec->ca[0] ? sec->ca : NULL,
      .sni = sec->sni[0] ? sec->sni : NULL,
      .no_verify = sec->no_verify,
  };
  char err[SJ_FILE_MAX + 128];
  sj_tls_ctx_t *ctx;
  if (sj_tls_ctx_new(&cfg, &ctx, err, sizeof err) != 0) {
    sj__log(c, SJ_LOG_ERROR, "%c %s", sj__side_letter(side), err);
    return SJ_ECONFIG;
  }
  c->sec[side].tls_ctx = ctx;
  return 0;
}

static int open_seal(sj_connector_t *c, sj_side_t side) {
  const sj_side_security_t *sec = &c->spec[side].sec;
  if (sec->encrypt_file[0] == '\0')
    return 0;
  sj_seal_key_t *key = malloc(sizeof *key);
  char err[SJ_FILE_MAX + 128];
  if (key == NULL)
    return UV_ENOMEM;
  if (sj_seal_key_load(sec->encrypt_file, key, err, sizeof err) != 0) {
    free(key);
    sj__log(c, SJ_LOG_ERROR, "%c %s", sj__side_letter(side), err);
    return SJ_ECONFIG;
  }
  c->sec[side].seal = key;
  return 0;
}

int sj__security_open(sj_connector_t *c, sj_side_t side) {
  int rc = open_auth(c, side);
  if (rc == 0)
    rc = open_tls(c, side);
  if (rc == 0)
    rc = open_seal(c, side);
  return rc;
}

void sj__security_close(sj_connector_t *c, sj_side_t side) {
  sj_side_sec_t *ss = &c->sec[side];
  sj_secret_free(&ss->auth.secret);
  if (ss->tls_ctx != NULL)
    sj_tls_ctx_free(ss->tls_ctx);
  if (ss->seal != NULL) {
    sj_seal_key_wipe(ss->seal);
    free(ss->seal);
  }
  *ss = (sj_side_sec_t){0};
}

/* ---- the layers' handshakes, as preparation stages ---------------------- */

/* After its handshake a layer reports only failures that the pair also
 * sees as a read error; they are logged here, with the connector. */
static void on_layer_later(sj_stream_t *s, int status, const char *text, void *arg) {
  sj_connector_t *c = arg;
  char peer[SJ_PEER_HOST_MAX + 16];
  sj_origin_text(&s->origin, peer, sizeof peer);
  sj__log(c, SJ_LOG_INFO, "%s: %s", peer, text != NULL ? text : sj_strerror(status));
}

static void on_handshake(sj_stream_t *s, int status, const char *text, void *arg) {
  sj_prep_t *p = arg;
  if (status == 0)
    sj_layer_set_cb(s, on_layer_later, p->c);
  sj__prep_layer_done(p, status, text, s);
}

int sj__prep_tls(sj_prep_t *p) {
  const sj_side_spec_t *spec = &p->c->spec[p->side];
  const char *host = spec->kind == SJ_SIDE_CONNECT ? spec->host : NULL;
  sj_stream_t *s;
  int rc = sj_tls_stream_new(p->stream, p->c->sec[p->side].tls_ctx, host, on_handshake, p, &s);
  if (rc == 0)
    p->stream = s;
  return rc;
}

int sj__prep_seal(sj_prep_t *p) {
  sj_stream_t *s;
  int rc = sj_seal_stream_new(p->stream, p->c->sec[p->side].seal, on_handshake, p, &s);
  if (rc == 0)
    p->stream = s;
  return rc;
}
