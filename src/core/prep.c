/*
 * Preparing a new socket before it may be paired: TLS, then the side's
 * verifier (auth), then the end-to-end encryption handshake, and, for a
 * standing connection of --persist, the first sign of life from its peer.
 * Each stage may wrap the stream in a layer; the stream that comes out is
 * what gets paired. Every socket still under preparation has a deadline
 * (auth_timeout); they are kept in start order, so one timer serves all.
 * A standing connection leaves the deadline once it has authenticated: it
 * may wait for its peer as long as it takes.
 */
#include "authline.h"
#include "connector_int.h"
#include "prefix.h"
#include "verify.h"

#include <stdlib.h>

enum { ST_START, ST_TLS, ST_VERIFY, ST_ENCRYPT, ST_READY, ST_DONE };

static int has_verifier(const sj_connector_t *c, sj_side_t side) {
  return c->verifier[side].start != NULL || c->verifier[side].on_data != NULL;
}

int sj__prep_needed(const sj_connector_t *c, sj_side_t side, int standing) {
  return standing || has_verifier(c, side) || c->sec[side].tls_ctx != NULL ||
         c->sec[side].seal != NULL;
}

static void arm_deadline(sj_connector_t *c) {
  if (sj_list_empty(&c->preparing)) {
    uv_timer_stop(&c->prep_timer);
    return;
  }
  sj_prep_t *head = sj_container_of(c->preparing.next, sj_prep_t, link);
  uint64_t now = uv_now(c->loop);
  uv_timer_start(&c->prep_timer, sj__prep_on_deadline,
                 head->deadline > now ? head->deadline - now : 0, 0);
}

static void unlink_prep(sj_prep_t *p) {
  sj_connector_t *c = p->c;
  int was_head = c->preparing.next == &p->link;
  sj_list_remove(&p->link);
  c->n_preparing--;
  if (was_head)
    arm_deadline(c);
}

static void log_refusal(sj_prep_t *p, const char *why) {
  char peer[SJ_PEER_HOST_MAX + 16];
  sj_origin_text(&p->origin, peer, sizeof peer);
  sj__log(p->c, SJ_LOG_INFO, "%c %s refused: %s", sj__side_letter(p->side), peer, why);
}

/* The end of preparation: success hands the stream on; failure has closed
 * it (or left it to the verification, which closes it). */
static void finish(sj_prep_t *p, int status, const char *why) {
  unlink_prep(p);
  if (status != 0)
    log_refusal(p, why != NULL ? why : sj_strerror(status));
  sj_stream_t *s = status == 0 ? p->stream : NULL;
  p->done(p, status, s, p->arg);
  free(p);
}

static void fail_closing(sj_prep_t *p, int status, const char *why) {
  sj_stream_close(p->stream, 1, NULL);
  finish(p, status, why);
}

/* A layer that failed its handshake may have queued an alert saying why
 * (TLS "certificate required"): closing without a reset lets it out. */
static void fail_layer(sj_prep_t *p, int status, const char *why) {
  sj_stream_close(p->stream, 0, NULL);
  finish(p, status, why);
}

static void advance(sj_prep_t *p);

/* ---- verify ---------------------------------------------------------------- */

static void on_verified(sj_verify_t *v, int status, const char *why, sj_stream_t *s,
                        sj_chunk_t *rest, int eof, void *arg) {
  sj_prep_t *p = arg;
  (void)v;
  p->verify = NULL;
  if (status != 0) {
    finish(p, status, why);
    return;
  }
  /* Accepted: the verification has freed itself without closing anything,
   * so its reference on the connector goes now (a failed one drops it when
   * its stream has closed). It cannot be the last: a closing connector has
   * cancelled its preparations, so none is accepted after that. */
  sj__connector_unref(p->c);
  p->stream = s;
  if (rest != NULL || eof) {
    sj_stream_t *wrapped;
    if (sj_prefix_stream_new(s, rest, eof, &wrapped) != 0) {
      sj_chunk_t *c = rest;
      while (c != NULL) {
        sj_chunk_t *next = c->next;
        sj_pool_put(s->pool, c);
        c = next;
      }
      fail_closing(p, UV_ENOMEM, NULL);
      return;
    }
    p->stream = wrapped;
  }
  advance(p);
}

static void on_verify_closed(void *owner) { sj__connector_unref(owner); }

static const sj_verify_events_t verify_events = {on_verified, on_verify_closed};

static int start_verify(sj_prep_t *p) {
  sj_connector_t *c = p->c;
  c->refs++; /* the verification may outlive the prep, closing the stream */
  int rc = sj__verify_start(p->stream, p->side, &c->verifier[p->side], &verify_events, p, c,
                            &c->refusing, &p->verify);
  if (rc != 0)
    c->refs--;
  return rc;
}

/* ---- the first sign of life, for standing connections ------------------- */

/* A token presenter hears nothing back on success, so for a standing
 * connection a refusal would pass for its peer's first byte. A far client
 * whose first bytes are exactly a refusal's is the price (hmac, which
 * confirms with "ok", has none). */
static int refused_token(const sj_prep_t *p, const sj_chunk_t *chunk) {
  return p->c->spec[p->side].sec.auth == SJ_AUTH_TOKEN &&
         sj_auth_is_refusal(chunk->data + chunk->off, sj_chunk_remaining(chunk));
}

static void on_first_read(sj_stream_t *s, int status, sj_chunk_t *chunk) {
  sj_prep_t *p = s->data;
  sj_stream_read_stop(s);
  if (status < 0 && status != UV_EOF) {
    fail_closing(p, status, NULL);
    return;
  }
  if (status == UV_EOF) {
    fail_closing(p, UV_ECONNRESET, "the relay closed a standing connection");
    return;
  }
  if (chunk != NULL)
    chunk->next = NULL;
  if (chunk != NULL && refused_token(p, chunk)) {
    sj_pool_put(s->pool, chunk);
    fail_closing(p, SJ_EAUTH, "the peer refused our token");
    return;
  }
  sj_stream_t *wrapped;
  if (sj_prefix_stream_new(s, chunk, 0, &wrapped) != 0) {
    if (chunk != NULL)
      sj_pool_put(s->pool, chunk);
    fail_closing(p, UV_ENOMEM, NULL);
    return;
  }
  p->stream = wrapped;
  advance(p);
}

static int await_first_byte(sj_prep_t *p) {
  p->stream->data = p;
  p->stream->on_read = on_first_read;
  return sj_stream_read_start(p->stream);
}

/* ---- stages ----------------------------------------------------------------- */

/* Standing connections wait for their peer with no deadline. */
static void leave_deadline(sj_prep_t *p) {
  sj_connector_t *c = p->c;
  if (!p->standing || p->deadline == 0)
    return;
  unlink_prep(p);
  p->deadline = 0;
  sj_list_push(&c->standing, &p->link);
  c->n_preparing++;
}

static void advance(sj_prep_t *p) {
  sj_connector_t *c = p->c;
  int rc = 0;
  while (++p->stage < ST_DONE) {
    if (p->stage >= ST_ENCRYPT)
      leave_deadline(p);
    if (p->stage == ST_TLS && c->sec[p->side].tls_ctx != NULL)
      rc = sj__prep_tls(p);
    else if (p->stage == ST_VERIFY && has_verifier(c, p->side))
      rc = start_verify(p);
    else if (p->stage == ST_ENCRYPT && c->sec[p->side].seal != NULL)
      rc = sj__prep_seal(p);
    else if (p->stage == ST_READY && p->standing && c->sec[p->side].seal == NULL)
      rc = await_first_byte(p);
    else
      continue;
    if (rc != 0)
      fail_closing(p, rc, NULL);
    return;
  }
  finish(p, 0, NULL);
}

void sj__prep_layer_done(sj_prep_t *p, int status, const char *why, sj_stream_t *s) {
  if (status != 0) {
    p->stream = s;
    fail_layer(p, status, why);
    return;
  }
  p->stream = s;
  advance(p);
}

int sj__prep_start(sj_connector_t *c, sj_side_t side, sj_stream_t *s, int standing,
                   sj_prep_done_cb done, void *arg, sj_prep_t **out) {
  sj_prep_t *p = calloc(1, sizeof *p);
  if (p == NULL) {
    sj_stream_close(s, 1, NULL);
    return UV_ENOMEM;
  }
  *p = (sj_prep_t){.c = c, .side = side, .stream = s, .origin = s->origin,
                   .standing = standing, .done = done, .arg = arg};
  p->deadline = uv_now(c->loop) + (uint64_t)(c->opts.auth_timeout_s * 1000);
  sj_list_push(&c->preparing, &p->link);
  c->n_preparing++;
  if (c->preparing.next == &p->link)
    arm_deadline(c);
  if (out != NULL)
    *out = p;
  advance(p);
  return 0;
}

/* Ends a preparation from outside: no callback runs. */
void sj__prep_cancel(sj_prep_t *p, const char *why) {
  unlink_prep(p);
  if (p->verify != NULL)
    sj__verify_abort(p->verify, why);
  else
    sj_stream_close(p->stream, 1, NULL);
  free(p);
}

void sj__prep_on_deadline(uv_timer_t *t) {
  sj_connector_t *c = t->data;
  uint64_t now = uv_now(c->loop);
  while (!sj_list_empty(&c->preparing)) {
    sj_prep_t *p = sj_container_of(c->preparing.next, sj_prep_t, link);
    if (p->deadline > now)
      break;
    log_refusal(p, "auth timed out");
    if (p->verify != NULL) {
      /* The verifier's socket hears why before it closes. */
      sj_verify_t *v = p->verify;
      p->verify = NULL;
      sj__verify_abort(v, SJ_AUTH_REFUSAL "timed out");
      p->stream = NULL;
    }
    sj_prep_done_cb done = p->done;
    void *arg = p->arg;
    unlink_prep(p);
    if (p->stream != NULL)
      sj_stream_close(p->stream, 1, NULL);
    free(p);
    done(NULL, SJ_ETIMEDOUT_AUTH, NULL, arg);
  }
  arm_deadline(c);
}
