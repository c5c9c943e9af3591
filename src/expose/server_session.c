/*
 * One agent's control connection on the server: the carrier's layers, the
 * challenge and the key check, then the mux and its control channel, where
 * the agent asks for tunnels one request at a time.
 */
#include "server_int.h"

#include "authline.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_line(sj_xlines_t *l, int status, const sj_xctl_msg_t *msg, const char *why,
                    void *arg);

static void session_unref(xsession_t *se) {
  if (--se->refs > 0)
    return;
  sj_xserver_t *srv = se->srv;
  free(se);
  sj__xserver_unref(srv);
}

static void on_deadline_closed(uv_handle_t *h) { session_unref(h->data); }

static void on_talk_closed(sj_xlines_t *l, void *arg) {
  (void)l;
  session_unref(arg);
}

static void on_stream_closed(sj_stream_t *s) { session_unref(s->data); }

/* Closes a stream of the session's making; the session (and the server's
 * pool, which the stream uses) lives until it has closed. */
static void close_stream(xsession_t *se, sj_stream_t *s) {
  se->refs++;
  s->data = se;
  sj_stream_close(s, 1, on_stream_closed);
}

static void on_carrier_gone(void *arg) { session_unref(arg); }

/* Talk over s from now on (the carrier, then the control channel). */
static void talk_over(xsession_t *se, sj_stream_t *s) {
  sj_xlines_init(&se->talk, s, on_line, se);
  se->talking = 1;
  se->refs++;
}

static void send_or_end(xsession_t *se, const sj_xctl_msg_t *msg) {
  if (sj_xlines_send(&se->talk, msg) != 0)
    sj__xsession_end(se, "cannot send a control line");
}

void sj__xsession_end(xsession_t *se, const char *why) {
  if (se->stage == XS_ENDED)
    return;
  xsession_stage_t was = se->stage;
  se->stage = XS_ENDED;
  sj_xserver_t *srv = se->srv;
  sj__xserver_log(srv, SJ_LOG_INFO, "agent %llu (%s): gone: %s", (unsigned long long)se->id,
                  se->peer, why);
  sj_list_remove(&se->link);
  srv->n_sessions--;
  while (!sj_list_empty(&se->tunnels))
    sj__xtunnel_detach(sj_container_of(se->tunnels.next, xtunnel_t, by_session));
  if (was == XS_CARRIER) {
    sj_stream_t *top = sj_xcarrier_abort(&se->carrier);
    if (top != NULL)
      close_stream(se, top);
  }
  /* The mux goes first: its GOAWAY tells the peer why, and the control
   * channel then closes quietly (not with a RESET the peer would read as
   * the reason). */
  if (se->mux != NULL) {
    sj_mux_close(se->mux);
    se->mux = NULL;
  }
  if (se->talking) {
    se->talking = 0;
    /* A refusal must reach the agent: no reset, which could drop it. */
    sj_xlines_close(&se->talk, was == XS_MUX, on_talk_closed);
  }
  uv_close((uv_handle_t *)&se->deadline, on_deadline_closed);
  session_unref(se);
}

/* ---- the carrier and the greeting -------------------------------------- */

static void on_deadline(uv_timer_t *t) {
  sj__xsession_end(t->data, "no handshake within the deadline");
}

static int make_challenge(xsession_t *se) {
  unsigned char nonce[SJ_XCTL_TOKEN_LEN / 2];
  if (RAND_bytes(nonce, sizeof nonce) != 1)
    return -1;
  sj_auth_hex(nonce, sizeof nonce, se->challenge);
  return 0;
}

static void on_carrier(void *arg, int status, const char *why, sj_stream_t *top) {
  xsession_t *se = arg;
  if (status != 0) {
    se->stage = XS_AUTH; /* nothing to abort: the carrier is done */
    close_stream(se, top);
    sj__xserver_log(se->srv, SJ_LOG_ERROR, "agent %llu (%s): %s", (unsigned long long)se->id,
                    se->peer, why);
    sj__xsession_end(se, why);
    return;
  }
  se->stage = XS_AUTH;
  talk_over(se, top);
  sj_xctl_msg_t hello = {.type = SJ_XCTL_HELLO};
  if (!se->srv->opts.no_auth) {
    if (make_challenge(se) != 0) {
      sj__xsession_end(se, "no random bytes for a challenge");
      return;
    }
    memcpy(hello.token, se->challenge, sizeof hello.token);
  }
  send_or_end(se, &hello);
  if (se->stage == XS_AUTH)
    sj_xlines_read(&se->talk, SJ_XCTL_AT_AUTH);
}

void sj__xsession_start(sj_xserver_t *srv, sj_stream_t *s) {
  xsession_t *se = calloc(1, sizeof *se);
  if (se == NULL) {
    sj__xserver_log(srv, SJ_LOG_ERROR, "out of memory accepting an agent");
    sj_stream_close(s, 1, NULL);
    return;
  }
  se->srv = srv;
  se->id = srv->next_session_id++;
  se->key = -1;
  sj_origin_text(&s->origin, se->peer, sizeof se->peer);
  sj_list_init(&se->tunnels);
  sj_list_push(&srv->sessions, &se->link);
  srv->n_sessions++;
  srv->refs++;
  se->refs = 2; /* itself and its timer */
  uv_timer_init(srv->loop, &se->deadline);
  se->deadline.data = se;
  uv_timer_start(&se->deadline, on_deadline, (uint64_t)(srv->opts.handshake_timeout_s * 1000), 0);
  sj__xserver_log(srv, SJ_LOG_INFO, "agent %llu (%s): connected", (unsigned long long)se->id,
                  se->peer);
  sj_xcarrier_start(&se->carrier, s, &srv->carrier, on_carrier, se);
}

/* ---- auth --------------------------------------------------------------- */

/* Checks the answer against every key, each in constant time and all of
 * them every time, so the time taken says nothing about which key (if
 * any) came close. Returns the key's index, or -1. */
static int find_key(const sj_xserver_t *srv, const char *challenge, const char *answer) {
  char signed_text[sizeof SJ_XCTL_AUTH_CONTEXT + SJ_XCTL_TOKEN_LEN];
  int n = snprintf(signed_text, sizeof signed_text, "%s%s", SJ_XCTL_AUTH_CONTEXT, challenge);
  int found = -1;
  for (size_t i = 0; i < srv->keys.n; i++) {
    char expect[SJ_AUTH_HEX_LEN + 1];
    const sj_xkey_t *k = &srv->keys.items[i];
    if (sj_auth_answer(k->data, k->len, signed_text, (size_t)n, expect) != 0)
      continue;
    int same = sj_auth_equal(expect, SJ_AUTH_HEX_LEN, answer, strlen(answer));
    if (same && found < 0)
      found = (int)i;
  }
  return found;
}

static void on_refusal_sent(sj_xlines_t *l, int status, void *arg) {
  (void)l;
  (void)status;
  sj__xsession_end(arg, "unauthorized");
}

static void start_mux(xsession_t *se);

static void on_welcome_sent(sj_xlines_t *l, int status, void *arg) {
  (void)l;
  xsession_t *se = arg;
  if (status != 0)
    sj__xsession_end(se, sj_strerror(status));
  else
    start_mux(se);
}

static void on_auth(xsession_t *se, const sj_xctl_msg_t *msg) {
  sj_xserver_t *srv = se->srv;
  sj_xctl_msg_t reply = {.type = SJ_XCTL_WELCOME};
  if (!srv->opts.no_auth) {
    se->key = msg->token[0] != '\0' ? find_key(srv, se->challenge, msg->token) : -1;
    if (se->key < 0) {
      reply.type = SJ_XCTL_UNAUTHORIZED;
      snprintf(reply.text, sizeof reply.text, "%s",
               msg->token[0] != '\0' ? "wrong API key" : "no API key given");
      sj__xserver_log(srv, SJ_LOG_ERROR, "agent %llu (%s): unauthorized: %s",
                      (unsigned long long)se->id, se->peer, reply.text);
    }
  }
  memcpy(se->agent, msg->agent, sizeof se->agent);
  se->stage = XS_WELCOME;
  send_or_end(se, &reply);
  if (se->stage != XS_WELCOME)
    return;
  sj_xlines_sent_cb next = reply.type == SJ_XCTL_WELCOME ? on_welcome_sent : on_refusal_sent;
  if (sj_xlines_when_sent(&se->talk, next) == SJ_DONE)
    next(&se->talk, 0, se);
}

/* ---- the mux and the control channel ----------------------------------- */

static void on_mux_end(sj_mux_t *m, int status, const char *why, void *data) {
  (void)m;
  (void)status;
  sj__xsession_end(data, why);
}

static void on_channel(sj_mux_t *m, sj_stream_t *ch, void *data) {
  xsession_t *se = data;
  (void)m;
  if (sj_mux_channel_tag(ch) != 0 || se->talking) {
    sj__xserver_log(se->srv, SJ_LOG_ERROR,
                    "agent %llu (%s): refused a channel it opened "
                    "(only its control channel may be opened)",
                    (unsigned long long)se->id, se->peer);
    sj_mux_refuse(ch, NULL);
    return;
  }
  talk_over(se, ch);
  sj_xlines_read(&se->talk, SJ_XCTL_AT_REQUEST);
}

static unsigned max_channels(const sj_xserver_options_t *o) {
  unsigned long long n = (unsigned long long)o->max_streams * o->max_tunnels + 1;
  return n > 1000000 ? 1000000 : (unsigned)n;
}

static void mux_options(xsession_t *se, sj_mux_options_t *mo) {
  const sj_xserver_options_t *o = &se->srv->opts;
  sj_mux_options_init(mo);
  mo->initiator = 0;
  mo->max_channels = max_channels(o);
  mo->ping_ms = o->heartbeat_ms;
  mo->idle_timeout_ms = o->heartbeat_timeout_ms;
  mo->on_accept = on_channel;
  mo->on_end = on_mux_end;
  mo->data = se;
}

/* The talk's stream, guarded (carrier.h), for the mux; NULL on failure
 * (then it has been closed). */
static sj_stream_t *carrier_for_mux(xsession_t *se) {
  sj_stream_t *top, *guarded;
  if (sj_xlines_detach(&se->talk, &top) != 0)
    return NULL;
  se->talking = 0;
  se->refs--; /* the talk's stream is ours again */
  if (sj_xcarrier_guard(top, on_carrier_gone, se, &guarded) != 0) {
    close_stream(se, top);
    return NULL;
  }
  se->refs++; /* until the mux has closed its carrier */
  return guarded;
}

static void start_mux(xsession_t *se) {
  sj_xserver_t *srv = se->srv;
  sj_stream_t *top = carrier_for_mux(se);
  if (top == NULL) {
    sj__xsession_end(se, "out of memory");
    return;
  }
  sj_mux_options_t mo;
  mux_options(se, &mo);
  int rc = sj_mux_new(top, &mo, &se->mux);
  if (rc != 0) {
    sj_stream_close(top, 1, NULL);
    sj__xsession_end(se, sj_strerror(rc));
    return;
  }
  se->stage = XS_MUX;
  uv_timer_stop(&se->deadline);
  char how[48] = "ready (no auth)";
  if (!srv->opts.no_auth)
    snprintf(how, sizeof how, "authenticated with key %d", se->key + 1);
  sj__xserver_log(srv, SJ_LOG_INFO, "agent %llu (%s): %s", (unsigned long long)se->id, se->peer,
                  how);
}

static void on_reply_sent(sj_xlines_t *l, int status, void *arg) {
  xsession_t *se = arg;
  if (status != 0)
    sj__xsession_end(se, sj_strerror(status));
  else
    sj_xlines_read(l, SJ_XCTL_AT_REQUEST);
}

static void on_request(xsession_t *se, const sj_xctl_msg_t *msg) {
  sj_xctl_msg_t reply;
  sj__xtunnel_request(se, msg->port, msg->prefer, &reply);
  if (reply.type == SJ_XCTL_ERROR)
    sj__xserver_log(se->srv, SJ_LOG_ERROR, "agent %llu (%s): expose %u refused: %s",
                    (unsigned long long)se->id, se->peer, msg->port, reply.text);
  send_or_end(se, &reply);
  if (se->stage == XS_MUX && sj_xlines_when_sent(&se->talk, on_reply_sent) == SJ_DONE)
    on_reply_sent(&se->talk, 0, se);
}

static void on_line(sj_xlines_t *l, int status, const sj_xctl_msg_t *msg, const char *why,
                    void *arg) {
  xsession_t *se = arg;
  (void)l;
  /* The control channel fails with the session (aborted, or timed out):
   * the session's own end, which says why, follows. */
  if (se->stage == XS_MUX && (status == UV_ECONNABORTED || status == UV_ETIMEDOUT))
    return;
  if (status != 0) {
    char text[200];
    snprintf(text, sizeof text, "%s%s", se->stage == XS_MUX ? "control channel: " : "", why);
    if (status == UV_EPROTO)
      sj__xserver_log(se->srv, SJ_LOG_ERROR, "agent %llu (%s): %s", (unsigned long long)se->id,
                      se->peer, text);
    sj__xsession_end(se, text);
    return;
  }
  if (se->stage == XS_AUTH)
    on_auth(se, msg);
  else if (se->stage == XS_MUX)
    on_request(se, msg);
}
