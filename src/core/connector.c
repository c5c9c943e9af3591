/*
 * The connector: socket_connector's model. Sides feed ends in; ends wait in
 * FIFO queues A and B; a pair forms when both queues hold one. The four
 * modes are four ways of feeding the queues:
 *   listen/listen    every accepted socket is queued on its side;
 *   listen/connect   every accepted socket dials its own partner and is
 *                    paired with it directly (accept order is kept per pair);
 *   stdio, or no listening side: exactly one pair, from ends made once.
 */
#include "connector_int.h"
#include "connector_ext.h"
#include "netaddr.h"
#include "sockopt.h"
#include "verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sides whose streams arrive (accepted, or fed in by a tunnel). */
static int is_listen(const sj_side_spec_t *s) {
  return s->kind == SJ_SIDE_LISTEN || s->kind == SJ_SIDE_UNIX_LISTEN || s->kind == SJ__SIDE_FED;
}

static int is_custom(const sj_side_spec_t *s) {
  return s->kind == SJ__SIDE_FED || s->kind == SJ__SIDE_OPEN;
}

static sj_side_t other(sj_side_t side) { return side == SJ_A ? SJ_B : SJ_A; }

/* The far side dials once per socket accepted on this side. */
static int dials_per_accept(const sj_connector_t *c, sj_side_t side) {
  return !c->single && !is_listen(&c->spec[other(side)]);
}

static void unref(sj_connector_t *c);
static void finish(sj_connector_t *c, int status);
static void check_idle(sj_connector_t *c);
static void update_accepting(sj_connector_t *c);

/* ---- ends ---------------------------------------------------------------- */

static void end_on_end(sj_pump_t *p) {
  sj_end_t *e = p->owner;
  sj__pair_direction_ended(e->pair);
}

static void end_close(sj_end_t *e);

static void end_on_error(sj_pump_t *p, int err) {
  sj_end_t *e = p->owner;
  if (e->pair != NULL) {
    sj__pair_close(e->pair, err, 1);
    return;
  }
  sj_connector_t *c = e->c;
  char peer[SJ_PEER_HOST_MAX + 16];
  sj_origin_text(&e->stream->origin, peer, sizeof peer);
  /* A one-pair connector cannot form its pair without this end: it fails
   * (finishing closes the end with everything else unpaired). */
  sj__log(c, c->single ? SJ_LOG_ERROR : SJ_LOG_INFO, "%c %s closed before pairing: %s",
          sj__side_letter(e->side), peer, sj_strerror(err));
  if (c->single)
    finish(c, err);
  end_close(e);
}

static void end_on_chunk(sj_pump_t *p, const char *bytes, size_t n) {
  sj_end_t *e = p->owner;
  sj__log_traffic(e->c, e->side, e->pair->id, bytes, n);
}

static const sj_pump_events_t end_events = {end_on_end, end_on_error, NULL};
static const sj_pump_events_t end_events_traced = {end_on_end, end_on_error, end_on_chunk};

static void end_free(sj_end_t *e) {
  sj_connector_t *c = e->c;
  free(e);
  unref(c);
}

static void on_end_stream_closed(sj_stream_t *s) {
  sj_pump_t *pump = s->data;
  end_free(pump->owner);
}

/* Closes an end that is not paired: waiting, or waiting for its dial. */
static void end_close(sj_end_t *e) {
  sj_connector_t *c = e->c;
  if (e->closing)
    return;
  e->closing = 1;
  if (sj_list_linked(&e->link)) {
    sj_list_remove(&e->link);
    if (e->dial != NULL || e->prep != NULL) {
      if (e->dial != NULL)
        sj_dial_cancel(e->dial);
      if (e->prep != NULL)
        sj__prep_cancel(e->prep, NULL);
      e->dial = NULL;
      e->prep = NULL;
      c->n_dialing--;
    } else {
      c->n_waiting[e->side]--;
    }
  }
  sj_pump_close(&e->pump);
  sj_stream_close(e->stream, 0, on_end_stream_closed);
  update_accepting(c);
  check_idle(c);
}

/* Wraps a new stream as an end whose pump starts reading at once. */
static sj_end_t *end_new(sj_connector_t *c, sj_side_t side, sj_stream_t *s) {
  sj_end_t *e = calloc(1, sizeof *e);
  if (e == NULL) {
    sj_stream_close(s, 1, NULL);
    return NULL;
  }
  e->c = c;
  e->side = side;
  e->stream = s;
  sj_list_init(&e->link);
  c->refs++;
  const sj_pump_events_t *ev = c->opts.log_traffic ? &end_events_traced : &end_events;
  sj_splicer_t *splicer = c->opts.no_splice ? NULL : &c->splicer;
  int rc = sj_pump_start(&e->pump, s, c->opts.buffer_size, splicer, ev, e);
  if (rc != 0) {
    sj__log(c, SJ_LOG_ERROR, "%c cannot read: %s", sj__side_letter(side), sj_strerror(rc));
    e->closing = 1;
    sj_stream_close(s, 1, on_end_stream_closed);
    return NULL;
  }
  return e;
}

/* ---- pairing ------------------------------------------------------------- */

static sj_end_t *pop_waiting(sj_connector_t *c, sj_side_t side) {
  sj_end_t *e = sj_container_of(c->waiting[side].next, sj_end_t, link);
  sj_list_remove(&e->link);
  c->n_waiting[side]--;
  return e;
}

static void close_listeners(sj_connector_t *c);

static void form_pair(sj_connector_t *c, sj_end_t *a, sj_end_t *b) {
  if (sj__pair_new(c, a, b) == NULL) {
    sj__log(c, SJ_LOG_ERROR, "out of memory pairing sockets");
    end_close(a);
    end_close(b);
    if (c->single)
      finish(c, UV_ENOMEM);
    return;
  }
  if (c->single)
    close_listeners(c);
}

static void try_pair(sj_connector_t *c) {
  while (!sj_list_empty(&c->waiting[SJ_A]) && !sj_list_empty(&c->waiting[SJ_B])) {
    sj_end_t *a = pop_waiting(c, SJ_A);
    sj_end_t *b = pop_waiting(c, SJ_B);
    form_pair(c, a, b);
  }
  update_accepting(c);
}

static void enqueue(sj_connector_t *c, sj_end_t *e) {
  sj_list_push(&c->waiting[e->side], &e->link);
  c->n_waiting[e->side]++;
  try_pair(c);
}

/* ---- dialing ------------------------------------------------------------- */

static void log_dial_failure(sj_connector_t *c, sj_side_t side, int status) {
  char spec[SJ_HOST_MAX + SJ_PATH_MAX + 16];
  const sj_side_spec_t *s = &c->spec[side];
  if (s->kind == SJ__SIDE_OPEN)
    snprintf(spec, sizeof spec, "a new channel");
  else if (s->kind == SJ_SIDE_UNIX)
    snprintf(spec, sizeof spec, "%s", s->path);
  else
    snprintf(spec, sizeof spec, strchr(s->host, ':') ? "[%s]:%d" : "%s:%d", s->host, s->port);
  sj__log(c, SJ_LOG_ERROR, "%c %s %s failed: %s", sj__side_letter(side),
          s->kind == SJ__SIDE_OPEN ? "opening" : "connect to", spec,
          sj_strerror(status));
}

static void log_connected(sj_connector_t *c, sj_side_t side, const sj_stream_t *s) {
  if (!c->opts.verbose)
    return;
  char peer[SJ_PEER_HOST_MAX + 16];
  sj_origin_text(&s->origin, peer, sizeof peer);
  sj__log(c, SJ_LOG_INFO, "%c connected %s", sj__side_letter(side), peer);
}

/* An accepted end's partner is connected and prepared, or failed. */
static void on_partner_prepared(sj_prep_t *p, int status, sj_stream_t *s, void *data) {
  sj_end_t *e = data;
  sj_connector_t *c = e->c;
  (void)p;
  sj_side_t side = other(e->side);
  e->prep = NULL;
  sj_list_remove(&e->link);
  c->n_dialing--;
  if (status != 0) {
    end_close(e);
    return;
  }
  sj_end_t *partner = end_new(c, side, s);
  if (partner == NULL) {
    end_close(e);
    return;
  }
  form_pair(c, e->side == SJ_A ? e : partner, e->side == SJ_A ? partner : e);
  update_accepting(c);
}

/* An accepted end's own partner has connected, or failed to. */
static void on_partner_dialed(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  sj_end_t *e = data;
  sj_connector_t *c = e->c;
  (void)d;
  sj_side_t side = other(e->side);
  e->dial = NULL;
  if (status != 0)
    log_dial_failure(c, side, status);
  else
    log_connected(c, side, s);
  if (status == 0 && c->done) { /* the log callback ended the connector */
    sj_stream_close(s, 1, NULL);
    status = SJ_ECLOSED;
  }
  if (status != 0 || !sj__prep_needed(c, side, 0)) {
    on_partner_prepared(NULL, status, s, e);
    return;
  }
  if (sj__prep_start(c, side, s, 0, on_partner_prepared, e, &e->prep) != 0)
    on_partner_prepared(NULL, UV_ENOMEM, NULL, e);
}

static void dial_partner(sj_connector_t *c, sj_end_t *e) {
  sj_side_t side = other(e->side);
  sj_list_push(&c->dialing, &e->link);
  c->n_dialing++;
  if (c->spec[side].kind == SJ__SIDE_OPEN) {
    sj_stream_t *s = NULL;
    int rc = c->open[side].fn != NULL ? c->open[side].fn(c->open[side].data, &s) : UV_ENOTCONN;
    on_partner_dialed(NULL, rc, s, e);
    return;
  }
  int rc = sj_dial_start(c->loop, &c->pool, &c->spec[side], &c->opts.keepalive,
                         c->opts.connect_timeout_s, on_partner_dialed, e, &e->dial);
  if (rc != 0) {
    e->dial = NULL;
    sj_list_remove(&e->link);
    c->n_dialing--;
    log_dial_failure(c, side, rc);
    end_close(e);
    return;
  }
  update_accepting(c);
}

/* A fixed side's socket is prepared, or failed to be. */
static void on_fixed_prepared(sj_prep_t *p, int status, sj_stream_t *s, void *data) {
  sj_end_t *e;
  (void)p;
  sj_fixed_t *f = data;
  sj_connector_t *c = f->c;
  sj_side_t side = f->side;
  c->fixed_prep[side] = NULL;
  c->n_dialing--;
  if (status != 0) {
    sj__log(c, SJ_LOG_ERROR, "%c could not be prepared: %s", sj__side_letter(side),
            sj_strerror(status));
    finish(c, status);
    return;
  }
  e = end_new(c, side, s);
  if (e == NULL) {
    finish(c, UV_ENOMEM);
    return;
  }
  enqueue(c, e);
}

/* A fixed side's socket (single mode): prepared if its side asks for it. */
static void prepare_fixed(sj_connector_t *c, sj_side_t side, sj_stream_t *s) {
  c->n_dialing++;
  if (!sj__prep_needed(c, side, 0)) {
    on_fixed_prepared(NULL, 0, s, &c->fixed[side]);
    return;
  }
  if (sj__prep_start(c, side, s, 0, on_fixed_prepared, &c->fixed[side], &c->fixed_prep[side]) != 0)
    on_fixed_prepared(NULL, UV_ENOMEM, NULL, &c->fixed[side]);
}

/* A fixed side (single mode) has connected, or failed to. */
static void on_fixed_dialed(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  sj_connector_t *c = data;
  sj_side_t side = d == c->fixed_dial[SJ_A] ? SJ_A : SJ_B;
  c->fixed_dial[side] = NULL;
  c->n_dialing--;
  if (status != 0) {
    log_dial_failure(c, side, status);
    finish(c, status);
    return;
  }
  log_connected(c, side, s);
  if (c->done) { /* the log callback ended the connector */
    sj_stream_close(s, 1, NULL);
    return;
  }
  prepare_fixed(c, side, s);
}

/* ---- standing connections (--persist) --------------------------------- */

/* The side that stands: the one that proves itself (auth=, encrypt=, TLS
 * or a verifier), B if both or neither do. */
static int secured(const sj_connector_t *c, sj_side_t side) {
  const sj_side_security_t *sec = &c->spec[side].sec;
  return sec->auth != SJ_AUTH_NONE || sec->encrypt_file[0] != '\0' || sec->tls ||
         c->verifier[side].start != NULL || c->verifier[side].on_data != NULL;
}

static sj_side_t standing_side(const sj_connector_t *c) {
  return secured(c, SJ_A) && !secured(c, SJ_B) ? SJ_A : SJ_B;
}

typedef struct {
  sj_link_t link; /* in standing_dials */
  sj_connector_t *c;
  sj_dial_t *dial;
} sj_standing_dial_t;

static int top_up_standing(sj_connector_t *c);

static void on_retry(uv_timer_t *t) { top_up_standing(t->data); }

/* A standing connection failed: try again after a back-off that doubles
 * up to 30 s, so a relay that is down is not hammered. */
static void standing_failed(sj_connector_t *c) {
  c->n_standing--;
  if (c->done || c->stopping)
    return;
  c->retry_ms = c->retry_ms == 0 ? 250 : (c->retry_ms >= 15000 ? 30000 : c->retry_ms * 2);
  if (!uv_is_active((uv_handle_t *)&c->retry))
    uv_timer_start(&c->retry, on_retry, c->retry_ms, 0);
}

/* A standing connection's peer has shown life: it is paired with its own
 * dial of the other side, and replaced. */
static void on_standing_prepared(sj_prep_t *p, int status, sj_stream_t *s, void *data) {
  sj_connector_t *c = data;
  sj_side_t side = standing_side(c);
  (void)p;
  if (status != 0) {
    standing_failed(c);
    return;
  }
  c->n_standing--;
  c->retry_ms = 0;
  sj_end_t *e = end_new(c, side, s);
  if (e != NULL)
    dial_partner(c, e);
  top_up_standing(c);
}

static void on_standing_dialed(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  sj_standing_dial_t *sd = data;
  sj_connector_t *c = sd->c;
  (void)d;
  sj_list_remove(&sd->link);
  free(sd);
  sj_side_t side = standing_side(c);
  if (status != 0) {
    log_dial_failure(c, side, status);
    standing_failed(c);
    return;
  }
  log_connected(c, side, s);
  if (c->done) {
    sj_stream_close(s, 1, NULL);
    c->n_standing--;
    return;
  }
  if (sj__prep_start(c, side, s, 1, on_standing_prepared, c, NULL) != 0)
    standing_failed(c);
}

static int top_up_standing(sj_connector_t *c) {
  sj_side_t side = standing_side(c);
  while (c->n_standing < c->opts.persist && !c->done && !c->stopping &&
         !uv_is_active((uv_handle_t *)&c->retry)) {
    sj_standing_dial_t *sd = calloc(1, sizeof *sd);
    if (sd == NULL)
      return UV_ENOMEM;
    sd->c = c;
    int rc = sj_dial_start(c->loop, &c->pool, &c->spec[side], &c->opts.keepalive,
                           c->opts.connect_timeout_s, on_standing_dialed, sd, &sd->dial);
    if (rc != 0) {
      free(sd);
      log_dial_failure(c, side, rc);
      c->n_standing++;
      standing_failed(c);
      return 0;
    }
    sj_list_push(&c->standing_dials, &sd->link);
    c->n_standing++;
  }
  return 0;
}

static void stop_standing(sj_connector_t *c) {
  uv_timer_stop(&c->retry);
  while (!sj_list_empty(&c->standing_dials)) {
    sj_standing_dial_t *sd = sj_container_of(c->standing_dials.next, sj_standing_dial_t, link);
    sj_list_remove(&sd->link);
    sj_dial_cancel(sd->dial);
    free(sd);
  }
  while (!sj_list_empty(&c->standing))
    sj__prep_cancel(sj_container_of(c->standing.next, sj_prep_t, link), NULL);
  c->n_standing = 0;
}

/* ---- accepting ----------------------------------------------------------- */

/* A socket of a side, ready to be paired. */
static void admit_prepared(sj_connector_t *c, sj_side_t side, sj_stream_t *s) {
  sj_end_t *e = end_new(c, side, s);
  if (e == NULL)
    return;
  if (dials_per_accept(c, side))
    dial_partner(c, e);
  else
    enqueue(c, e);
}

static void on_admit_prepared(sj_prep_t *p, int status, sj_stream_t *s, void *data) {
  sj_connector_t *c = data;
  if (status == 0)
    admit_prepared(c, p->side, s);
  update_accepting(c);
  check_idle(c);
}

/* A connection accepted on a side, or handed in by the caller. */
static void admit(sj_connector_t *c, sj_side_t side, sj_stream_t *s) {
  if (!sj__prep_needed(c, side, 0))
    admit_prepared(c, side, s);
  else
    sj__prep_start(c, side, s, 0, on_admit_prepared, c, NULL);
}

static void on_accept(sj_listener_t *l, int status, sj_stream_t *s, void *data) {
  sj_connector_t *c = data;
  sj_side_t side = l == c->listener[SJ_A] ? SJ_A : SJ_B;
  if (status < 0) {
    /* Logged once per run of failures, so a full descriptor table does not
     * flood the log; libuv sheds the connections it cannot take. */
    if (!c->accept_errors_logged[side])
      sj__log(c, SJ_LOG_ERROR, "%c accept failed: %s", sj__side_letter(side), sj_strerror(status));
    c->accept_errors_logged[side] = 1;
    return;
  }
  c->accept_errors_logged[side] = 0;
  if (c->opts.verbose) {
    char peer[SJ_PEER_HOST_MAX + 16];
    sj_origin_text(&s->origin, peer, sizeof peer);
    sj__log(c, SJ_LOG_INFO, "%c accepted %s", sj__side_letter(side), peer);
  }
  if (c->done) { /* the log callback ended the connector */
    sj_stream_close(s, 1, NULL);
    return;
  }
  admit(c, side, s);
}

/* With max_pairs set, a side stops accepting while the pairs it could form
 * (open, dialing, or waiting on this side) reach the limit. */
static void update_accepting(sj_connector_t *c) {
  for (int side = 0; side < 2; side++) {
    if (c->listener[side] == NULL)
      continue;
    unsigned load = c->n_pairs + c->n_dialing + c->n_waiting[side];
    if (c->opts.max_pairs > 0 && load >= c->opts.max_pairs)
      sj_listener_pause(c->listener[side]);
    else
      sj_listener_resume(c->listener[side]);
  }
}

static void on_listener_closed(void *data) { unref(data); }

static void close_listeners(sj_connector_t *c) {
  for (int side = 0; side < 2; side++) {
    if (c->listener[side] != NULL) {
      sj_listener_close(c->listener[side], on_listener_closed, c);
      c->listener[side] = NULL;
    }
  }
}

/* ---- lifetime ------------------------------------------------------------ */

/* Closes everything that is not an established pair. */
static void close_unpaired(sj_connector_t *c) {
  close_listeners(c);
  for (int side = 0; side < 2; side++) {
    while (!sj_list_empty(&c->waiting[side]))
      end_close(sj_container_of(c->waiting[side].next, sj_end_t, link));
    if (c->fixed_dial[side] != NULL) {
      sj_dial_cancel(c->fixed_dial[side]);
      c->fixed_dial[side] = NULL;
      c->n_dialing--;
    }
  }
  while (!sj_list_empty(&c->dialing))
    end_close(sj_container_of(c->dialing.next, sj_end_t, link));
  for (int side = 0; side < 2; side++) {
    if (c->fixed_prep[side] != NULL) {
      sj__prep_cancel(c->fixed_prep[side], NULL);
      c->fixed_prep[side] = NULL;
      c->n_dialing--;
    }
  }
  stop_standing(c);
  while (!sj_list_empty(&c->preparing))
    sj__prep_cancel(sj_container_of(c->preparing.next, sj_prep_t, link), NULL);
}

static void finish(sj_connector_t *c, int status) {
  if (c->done)
    return;
  c->done = 1;
  c->done_status = status;
  close_unpaired(c);
  uv_timer_stop(&c->grace);
  uv_timer_stop(&c->drain);
  if (c->opts.on_done != NULL)
    c->opts.on_done(c, status, c->opts.data);
}

/* The grace rule: once the period has passed, the connector ends as soon as
 * nothing is paired or about to be. A one-pair connector ends with its pair,
 * and a stopping one once its pairs have drained. */
static int idle(const sj_connector_t *c) {
  if (c->opts.persist > 0 && !c->stopping)
    return 0;
  return !c->done && c->n_pairs == 0 &&
         (c->stopping || (c->grace_passed && c->n_dialing == 0 && c->n_preparing == 0) ||
          (c->single && c->pairs_formed > 0));
}

static void on_idle(uv_timer_t *t) {
  sj_connector_t *c = t->data;
  if (!idle(c))
    return;
  /* A one-pair run fails if its pair did. */
  int single_result = c->single && c->pairs_formed > 0 && !c->stopping;
  finish(c, single_result ? c->last_pair_status : 0);
}

/* Ending is decided on the next turn of the loop, never inside the call
 * that made the connector idle (so on_done never runs inside
 * sj_connector_stop(), and a connection accepted meanwhile still counts). */
static void check_idle(sj_connector_t *c) {
  if (idle(c))
    uv_timer_start(&c->drain, on_idle, 0, 0);
}

void sj__pair_closed(sj_connector_t *c, sj_pair_t *pair) {
  sj_pair_info_t info = {.id = pair->id, .status = pair->status};
  if (pair->final != NULL)
    info = *pair->final;
  free(pair->final);
  sj_list_remove(&pair->link);
  c->n_pairs--;
  c->read[SJ_A] += info.bytes_read_a;
  c->written[SJ_B] += info.bytes_a_to_b;
  c->read[SJ_B] += info.bytes_read_b;
  c->written[SJ_A] += info.bytes_b_to_a;
  /* A one-pair run that fails says why even when not verbose. */
  sj_log_level_t level = c->single && info.status != 0 ? SJ_LOG_ERROR : SJ_LOG_INFO;
  sj__log(c, level, "pair %llu closed: A->B %llu bytes, B->A %llu bytes%s%s",
          (unsigned long long)info.id, (unsigned long long)info.bytes_a_to_b,
          (unsigned long long)info.bytes_b_to_a, info.status ? ": " : "",
          info.status ? sj_strerror(info.status) : "");
  c->last_pair_status = info.status;
  if (c->opts.on_pair_closed != NULL)
    c->opts.on_pair_closed(c, &info, c->opts.data);
  free(pair->end[SJ_A]);
  free(pair->end[SJ_B]);
  free(pair);
  c->refs -= 2; /* the two ends; the pair's own reference goes below */
  update_accepting(c);
  check_idle(c);
  unref(c);
}

static void on_grace(uv_timer_t *t) {
  sj_connector_t *c = t->data;
  c->grace_passed = 1;
  check_idle(c);
}

/* Pairs that could not deliver everything in time are reset, so that their
 * peers can tell the stream was cut short. */
static void on_drain_deadline(uv_timer_t *t) {
  sj_connector_t *c = t->data;
  sj_link_t *l = c->pairs.next;
  while (l != &c->pairs) {
    sj_pair_t *pair = sj_container_of(l, sj_pair_t, link);
    l = l->next;
    sj__pair_close(pair, UV_ETIMEDOUT, 1);
  }
  check_idle(c);
}

static void free_connector(sj_connector_t *c) {
  for (int side = 0; side < 2; side++)
    sj__security_close(c, (sj_side_t)side);
  sj_pool_drain(&c->pool);
  sj_splicer_close(&c->splicer);
  for (int side = 0; side < 2; side++) {
    free(c->peers[side].items);
    free(c->peers[side].shown);
  }
  if (c->own_loop) {
    uv_loop_close(c->loop);
    free(c->loop);
  }
  free(c);
}

static void unref(sj_connector_t *c) {
  if (--c->refs > 0 || !c->closing)
    return;
  if (c->close_cb != NULL)
    c->close_cb(c, c->opts.data);
  /* A connector on its own loop is freed by sj_connector_run(), outside
   * the loop it owns. */
  if (!c->own_loop)
    free_connector(c);
}

void sj__connector_unref(sj_connector_t *c) { unref(c); }

static void on_timer_closed(uv_handle_t *h) { unref(h->data); }

void sj_connector_stop(sj_connector_t *c, unsigned drain_ms) {
  if (c->done || c->stopping)
    return;
  c->stopping = 1;
  close_unpaired(c);
  sj_link_t *l = c->pairs.next;
  while (l != &c->pairs) {
    sj_pair_t *pair = sj_container_of(l, sj_pair_t, link);
    l = l->next;
    sj__pair_drain(pair);
  }
  /* The deadline also reports completion when there was nothing to drain,
   * so on_done never runs inside this call. */
  uv_timer_start(&c->drain, on_drain_deadline, c->n_pairs > 0 ? drain_ms : 0, 0);
}

void sj_connector_close(sj_connector_t *c, sj_close_cb cb) {
  if (c->closing)
    return;
  c->closing = 1;
  c->close_cb = cb;
  finish(c, SJ_ECLOSED);
  sj__verify_close_refusals(&c->refusing);
  sj_link_t *l = c->pairs.next;
  while (l != &c->pairs) {
    sj_pair_t *pair = sj_container_of(l, sj_pair_t, link);
    l = l->next;
    sj__pair_close(pair, SJ_ECLOSED, 0);
  }
  uv_close((uv_handle_t *)&c->grace, on_timer_closed);
  uv_close((uv_handle_t *)&c->drain, on_timer_closed);
  uv_close((uv_handle_t *)&c->prep_timer, on_timer_closed);
  uv_close((uv_handle_t *)&c->retry, on_timer_closed);
}

/* ---- creation ------------------------------------------------------------ */

/* A listening side: its own socket, or the TCP port of the connector it
 * shares with (a socket file is not shared: the connector that made it
 * removes it when it closes). */
static int open_listener(sj_connector_t *c, sj_side_t side) {
  const sj_side_spec_t *s = &c->spec[side];
  const sj_connector_t *other = c->opts.share_listener;
  const sj_listener_t *shared = NULL;
  if (other != NULL) {
    if (s->kind != SJ_SIDE_LISTEN || other->spec[side].kind != SJ_SIDE_LISTEN ||
        other->listener[side] == NULL)
      return UV_EINVAL;
    shared = other->listener[side];
  }
  int rc = sj_listener_open(c->loop, &c->pool, s, &c->opts.keepalive, shared, on_accept, c,
                            &c->listener[side]);
  if (rc == 0)
    c->refs++;
  return rc;
}

static int open_side(sj_connector_t *c, sj_side_t side) {
  const sj_side_spec_t *s = &c->spec[side];
  if (is_custom(s))
    return 0; /* fed by the caller, or opened per stream of the other side */
  if (is_listen(s))
    return open_listener(c, side);
  if (c->opts.persist > 0)
    return side == standing_side(c) ? top_up_standing(c) : 0;
  if (!c->single)
    return 0; /* dialed once per accepted partner */
  if (s->kind == SJ_SIDE_STDIO) {
    sj_stream_t *stream;
    int rc = sj_stdio_open(c->loop, &c->pool, &stream);
    if (rc != 0)
      return rc;
    prepare_fixed(c, side, stream);
    return 0;
  }
  int rc = sj_dial_start(c->loop, &c->pool, s, &c->opts.keepalive, c->opts.connect_timeout_s,
                         on_fixed_dialed, c, &c->fixed_dial[side]);
  if (rc == 0)
    c->n_dialing++;
  return rc;
}

int sj_connector_new(sj_connector_t **out, uv_loop_t *loop, const sj_side_spec_t *a,
                     const sj_side_spec_t *b, const sj_options_t *opts,
                     sj_side_t *failed_side) {
  if (a->kind == SJ_SIDE_STDIO && b->kind == SJ_SIDE_STDIO)
    return SJ_EMODE;
  sj_connector_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return UV_ENOMEM;
  if (opts != NULL)
    c->opts = *opts;
  else
    sj_options_init(&c->opts);
  if (c->opts.buffer_size == 0)
    c->opts.buffer_size = SJ_DEFAULT_BUFFER;
  c->spec[SJ_A] = *a;
  c->spec[SJ_B] = *b;
  if (c->opts.auth_timeout_s <= 0)
    c->opts.auth_timeout_s = SJ_DEFAULT_AUTH_TIMEOUT;
  c->single = a->kind == SJ_SIDE_STDIO || b->kind == SJ_SIDE_STDIO || (!is_listen(a) && !is_listen(b));
  if (c->opts.persist > 0 && (is_listen(a) || is_listen(b) || a->kind == SJ_SIDE_STDIO ||
                              b->kind == SJ_SIDE_STDIO)) {
    free(c);
    return SJ_EMODE; /* standing connections are for two connecting sides */
  }
  if ((is_custom(a) || is_custom(b)) && (c->single || c->opts.persist > 0)) {
    free(c);
    return SJ_EMODE; /* a tunnel's sides pair per stream, never just once */
  }
  if (c->opts.share_listener != NULL && a->kind != SJ_SIDE_LISTEN && b->kind != SJ_SIDE_LISTEN) {
    free(c);
    return UV_EINVAL; /* no TCP port to share */
  }
  if (c->opts.persist > 0)
    c->single = 0;
  for (int side = 0; side < 2; side++)
    c->verifier[side] = c->opts.verifier[side];
  if (loop == NULL) {
    loop = malloc(sizeof *loop);
    if (loop == NULL || uv_loop_init(loop) != 0) {
      free(loop);
      free(c);
      return UV_ENOMEM;
    }
    c->own_loop = 1;
  }
  c->loop = loop;
  /* A few idle chunks serve the next reads without malloc; more would only
   * hold memory that a burst left behind. */
  sj_pool_init(&c->pool, SJ_CHUNK_SIZE, 8);
  sj_splicer_init(&c->splicer);
  sj_list_init(&c->waiting[SJ_A]);
  sj_list_init(&c->waiting[SJ_B]);
  sj_list_init(&c->dialing);
  sj_list_init(&c->pairs);
  sj_list_init(&c->preparing);
  sj_list_init(&c->standing);
  sj_list_init(&c->standing_dials);
  sj_list_init(&c->refusing);
  uv_timer_init(loop, &c->grace);
  uv_timer_init(loop, &c->drain);
  uv_timer_init(loop, &c->prep_timer);
  uv_timer_init(loop, &c->retry);
  c->grace.data = c->drain.data = c->prep_timer.data = c->retry.data = c;
  c->refs = 4; /* the timers */
  for (int side = 0; side < 2; side++)
    c->fixed[side] = (sj_fixed_t){c, (sj_side_t)side};
  *out = c;
  for (int side = 0; side < 2; side++) {
    int rc = sj__security_open(c, (sj_side_t)side);
    if (rc == 0)
      rc = open_side(c, (sj_side_t)side);
    if (rc != 0) {
      if (failed_side != NULL)
        *failed_side = (sj_side_t)side;
      c->opts.on_done = NULL; /* the caller learns of the failure from rc alone */
      sj_connector_close(c, NULL);
      if (c->own_loop)
        sj_connector_run(c);
      *out = NULL;
      return rc;
    }
  }
  c->opts.share_listener = NULL; /* used once, not kept */
  if (c->opts.timeout_s > 0)
    uv_timer_start(&c->grace, on_grace, (uint64_t)(c->opts.timeout_s * 1000), 0);
  update_accepting(c);
  return 0;
}

static int check_kinds(const sj_side_spec_t *a, const sj_side_spec_t *b, int a_listens,
                       int b_listens) {
  return is_listen(a) == a_listens && is_listen(b) == b_listens ? 0 : SJ_EMODE;
}

int sj_server_to_server(sj_connector_t **out, uv_loop_t *loop, const sj_side_spec_t *a,
                        const sj_side_spec_t *b, const sj_options_t *opts) {
  int rc = check_kinds(a, b, 1, 1);
  return rc != 0 ? rc : sj_connector_new(out, loop, a, b, opts, NULL);
}

int sj_server_to_socket(sj_connector_t **out, uv_loop_t *loop, const sj_side_spec_t *a,
                        const sj_side_spec_t *b, const sj_options_t *opts) {
  int rc = check_kinds(a, b, 1, 0);
  return rc != 0 ? rc : sj_connector_new(out, loop, a, b, opts, NULL);
}

int sj_socket_to_server(sj_connector_t **out, uv_loop_t *loop, const sj_side_spec_t *a,
                        const sj_side_spec_t *b, const sj_options_t *opts) {
  int rc = check_kinds(a, b, 0, 1);
  return rc != 0 ? rc : sj_connector_new(out, loop, a, b, opts, NULL);
}

int sj_socket_to_socket(sj_connector_t **out, uv_loop_t *loop, const sj_side_spec_t *a,
                        const sj_side_spec_t *b, const sj_options_t *opts) {
  int rc = check_kinds(a, b, 0, 0);
  return rc != 0 ? rc : sj_connector_new(out, loop, a, b, opts, NULL);
}

/* ---- queries and injection ----------------------------------------------- */

uv_loop_t *sj_connector_loop(sj_connector_t *c) { return c->loop; }

int sj_connector_run(sj_connector_t *c) {
  if (!c->own_loop)
    return UV_EINVAL;
  uv_run(c->loop, UV_RUN_DEFAULT);
  if (!c->closing) {
    sj_connector_close(c, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
  }
  int status = c->done_status;
  free_connector(c);
  return status;
}

int sj_connector_address(const sj_connector_t *c, sj_side_t side, char *buf, size_t len) {
  if (!is_listen(&c->spec[side]) || is_custom(&c->spec[side]))
    return UV_EINVAL;
  if (c->listener[side] == NULL)
    return SJ_ECLOSED;
  return sj_listener_address(c->listener[side], buf, len);
}

int sj_connector_add_fd(sj_connector_t *c, sj_side_t side, int fd) {
  if (c->done) {
    close(fd);
    return SJ_ECLOSED;
  }
  sj_stream_t *s;
  int rc = sj_uvstream_open(c->loop, &c->pool, fd, 1, &s);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  uv_stream_t *h = sj_uvstream_handle(s);
  if (h->type == UV_TCP) {
    sj_tcp_tune((uv_tcp_t *)h, &c->opts.keepalive);
    sj_origin_from_tcp(&s->origin, (uv_tcp_t *)h);
  } else {
    sj_origin_from_path(&s->origin, "");
  }
  admit(c, side, s);
  return 0;
}

int sj__connector_add_stream(sj_connector_t *c, sj_side_t side, sj_stream_t *s) {
  if (c->done) {
    sj_stream_close(s, 1, NULL);
    return SJ_ECLOSED;
  }
  admit(c, side, s);
  return 0;
}

void sj__connector_set_open(sj_connector_t *c, sj_side_t side, sj_open_fn fn, void *data) {
  c->open[side].fn = fn;
  c->open[side].data = data;
}

/* Public records of a side's paired sockets, made when asked for. */
static const sj_peer_t *show_peers(sj_peer_log_t *log, size_t *n) {
  free(log->shown);
  log->shown = log->n > 0 ? malloc(log->n * sizeof *log->shown) : NULL;
  *n = log->shown != NULL ? log->n : 0;
  for (size_t i = 0; i < *n; i++)
    sj_origin_to_peer(&log->items[i], &log->shown[i]);
  return log->shown;
}

void sj_connector_stats(sj_connector_t *c, sj_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->pairs = c->pairs_formed;
  st->active_pairs = c->n_pairs;
  st->bytes_read_a = c->read[SJ_A];
  st->bytes_a_to_b = c->written[SJ_B];
  st->bytes_read_b = c->read[SJ_B];
  st->bytes_b_to_a = c->written[SJ_A];
  for (const sj_link_t *l = c->pairs.next; l != &c->pairs; l = l->next) {
    const sj_pair_t *pair = sj_container_of(l, sj_pair_t, link);
    st->bytes_read_a += pair->end[SJ_A]->pump.bytes_read;
    st->bytes_a_to_b += pair->end[SJ_A]->pump.bytes_written;
    st->bytes_read_b += pair->end[SJ_B]->pump.bytes_read;
    st->bytes_b_to_a += pair->end[SJ_B]->pump.bytes_written;
  }
  st->sockets_a = show_peers(&c->peers[SJ_A], &st->n_sockets_a);
  st->sockets_a_dropped = c->peers[SJ_A].dropped;
  st->sockets_b = show_peers(&c->peers[SJ_B], &st->n_sockets_b);
  st->sockets_b_dropped = c->peers[SJ_B].dropped;
}
