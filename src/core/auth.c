/*
 * auth=token and auth=hmac as verifiers (see authline.h for the lines).
 * A checker refuses with a one-line reason. A token presenter sends its
 * token and lets the stream through (plain clients use token auth too, so
 * a success says nothing); for hmac, which only a sockjoin (or a script
 * written for it) speaks, the checker confirms a right answer with "ok",
 * and the presenter waits for that line, so that a refusal is never taken
 * for relayed data.
 */
#include "auth.h"
#include "authline.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first complete line shown, or 0 (wait) / -1 (refused already). */
static long first_line(sj_verify_t *v, const char *buf, size_t len, size_t *line_len) {
  long n = sj_authline_next(buf, len, SJ_VERIFY_MAX, line_len);
  if (n == SJ_AUTHLINE_TOO_LONG) {
    sj_verify_reject(v, SJ_AUTH_REFUSAL "auth line too long");
    return -1;
  }
  return n;
}

static void check_token(sj_verify_t *v, const char *buf, size_t len, void *data) {
  const sj_auth_t *auth = data;
  size_t line_len;
  long n = first_line(v, buf, len, &line_len);
  if (n <= 0)
    return;
  sj_verify_consume(v, (size_t)n);
  if (sj_auth_equal(buf, line_len, (const char *)auth->secret.data, auth->secret.len))
    sj_verify_accept(v);
  else
    sj_verify_reject(v, SJ_AUTH_REFUSAL "wrong token");
}

static void present_token(sj_verify_t *v, void *data) {
  const sj_auth_t *auth = data;
  if (sj_verify_write(v, auth->secret.data, auth->secret.len) == 0 && sj_verify_write(v, "\n", 1) == 0)
    sj_verify_accept(v);
  else
    sj_verify_reject(v, NULL);
}

/* The checker keeps its challenge as the socket's state. */
static void challenge(sj_verify_t *v, void *data) {
  (void)data;
  unsigned char nonce[SJ_AUTH_NONCE_BYTES];
  char *line = malloc(SJ_AUTH_HEX_LEN + 2);
  if (line == NULL || RAND_bytes(nonce, sizeof nonce) != 1) {
    free(line);
    sj_verify_reject(v, SJ_AUTH_REFUSAL "no challenge could be made");
    return;
  }
  sj_auth_hex(nonce, sizeof nonce, line);
  line[SJ_AUTH_HEX_LEN] = '\n';
  sj_verify_set_state(v, line);
  if (sj_verify_write(v, line, SJ_AUTH_HEX_LEN + 1) != 0) {
    free(line);
    sj_verify_set_state(v, NULL);
    sj_verify_reject(v, NULL);
  }
}

static void forget_challenge(sj_verify_t *v, int status, void *data) {
  (void)status;
  (void)data;
  free(sj_verify_state(v));
  sj_verify_set_state(v, NULL);
}

static void check_answer(sj_verify_t *v, const char *buf, size_t len, void *data) {
  const sj_auth_t *auth = data;
  size_t line_len;
  /* A refusal is a decision, after which on_end does not run: the
   * challenge goes first. */
  if (sj_authline_next(buf, len, SJ_VERIFY_MAX, &line_len) == SJ_AUTHLINE_TOO_LONG)
    forget_challenge(v, 0, NULL);
  long n = first_line(v, buf, len, &line_len);
  if (n <= 0)
    return;
  sj_verify_consume(v, (size_t)n);
  char *line = sj_verify_state(v);
  char want[SJ_AUTH_HEX_LEN + 1];
  int ok = sj_auth_answer(auth->secret.data, auth->secret.len, line, SJ_AUTH_HEX_LEN, want) == 0 &&
           sj_auth_equal(buf, line_len, want, SJ_AUTH_HEX_LEN);
  forget_challenge(v, 0, NULL);
  if (ok && sj_verify_write(v, "ok\n", 3) == 0)
    sj_verify_accept(v);
  else
    sj_verify_reject(v, SJ_AUTH_REFUSAL "wrong answer to the challenge");
}

/* After its answer, a presenter waits for the verdict: "ok", or the
 * checker's reason for refusing, which must not pass for relayed data. */
static const char answered;

static void verdict(sj_verify_t *v, const char *line, size_t line_len) {
  char why[160];
  if (line_len == 2 && memcmp(line, "ok", 2) == 0) {
    sj_verify_accept(v);
    return;
  }
  snprintf(why, sizeof why, "the peer refused us: %.*s", (int)(line_len < 120 ? line_len : 120),
           line);
  sj_verify_reject(v, why);
}

static void answer(sj_verify_t *v, const char *buf, size_t len, void *data) {
  const sj_auth_t *auth = data;
  size_t line_len;
  long n = first_line(v, buf, len, &line_len);
  if (n <= 0)
    return;
  if (sj_verify_state(v) == &answered) {
    sj_verify_consume(v, (size_t)n);
    verdict(v, buf, line_len);
    return;
  }
  char reply[SJ_AUTH_HEX_LEN + 1];
  if (line_len != SJ_AUTH_HEX_LEN ||
      sj_auth_answer(auth->secret.data, auth->secret.len, buf, line_len, reply) != 0) {
    sj_verify_reject(v, SJ_AUTH_REFUSAL "the peer sent no hmac challenge");
    return;
  }
  sj_verify_consume(v, (size_t)n);
  reply[SJ_AUTH_HEX_LEN] = '\n';
  if (sj_verify_write(v, reply, sizeof reply) != 0) {
    sj_verify_reject(v, NULL);
    return;
  }
  sj_verify_set_state(v, (void *)&answered);
  /* The verdict may have come in the same read as the challenge. */
  if (len > (size_t)n)
    answer(v, buf + n, len - (size_t)n, data);
}

void sj__auth_verifier(const sj_auth_t *auth, int check, sj_verifier_t *out) {
  *out = (sj_verifier_t){.data = (void *)auth};
  if (auth->kind == SJ_AUTH_TOKEN && check) {
    out->on_data = check_token;
  } else if (auth->kind == SJ_AUTH_TOKEN) {
    out->start = present_token;
  } else if (check) {
    out->start = challenge;
    out->on_data = check_answer;
    out->on_end = forget_challenge;
  } else {
    out->on_data = answer;
  }
}
