/*
 * A side's security, set up from its options when the connector starts:
 * the auth secret and verifier, the TLS context, the encryption key. Files
 * are read here, once, so a bad one stops the start with a message that
 * names it; the stages that use them run per socket (prep.c).
 */
#include "connector_int.h"

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

int sj__security_open(sj_connector_t *c, sj_side_t side) {
  const sj_side_security_t *sec = &c->spec[side].sec;
  int rc = open_auth(c, side);
  if (rc == 0 && (sec->tls || sec->encrypt_file[0] != '\0')) {
    sj__log(c, SJ_LOG_ERROR, "%c: tls and encrypt= are not available in this build",
            sj__side_letter(side));
    rc = SJ_ECONFIG;
  }
  return rc;
}

void sj__security_close(sj_connector_t *c, sj_side_t side) {
  sj_secret_free(&c->sec[side].auth.secret);
}

int sj__prep_tls(sj_prep_t *p) {
  (void)p;
  return UV_ENOSYS;
}

int sj__prep_seal(sj_prep_t *p) {
  (void)p;
  return UV_ENOSYS;
}
