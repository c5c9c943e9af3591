/* The built-in verifiers of auth=token and auth=hmac (auth.c): checkers for
 * listening sides, presenters for the others. */
#ifndef SJ_AUTH_H
#define SJ_AUTH_H

#include "secret.h"
#include "sockjoin.h"

typedef struct {
  sj_auth_kind_t kind;
  sj_secret_t secret;
} sj_auth_t;

/* A verifier that checks peers (check = 1) or proves itself to them
 * (check = 0) with auth, which must outlive it. */
void sj__auth_verifier(const sj_auth_t *auth, int check, sj_verifier_t *out);

#endif
