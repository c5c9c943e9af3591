/*
 * One connection of the agent to the server: dial, the carrier's layers,
 * the answer to the server's challenge, then the mux, whose first channel
 * carries one "expose" request per tunnel.
 */
#include "agent_int.h"

#include "authline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_line(sj_xlines_t *l, int status, const sj_xctl_msg_t *msg, const char *why,
                    void *arg);

static void conn_unref(xconn_t *c) {
  if (--c->refs > 0)
    return;
  sj_xagent_t *a = c->a;
  free(c);
  sj__xagent_unref(a);
}

static void on_deadline_closed(uv_handle_t *h) { conn_unref(h->data); }

static void on_talk_closed(sj_xlines_t *l, void *arg) {
  (void)l;
  conn_unref(arg);
}

static void on_stream_closed(sj_stream_t *s) { conn_unref(s->data); }

/* Closes a stream of the connection's making; the connection (and the
 * agent's pool, which the stream uses) lives until it has closed. */
static void close_stream(xconn_t *c, sj_stream_t *s) {
  c->refs++;
  s->data = c;
  sj_stream_close(s, 1, on_stream_closed);
}

static void on_carrier_gone(void *arg) { conn_unref(arg); }

static void talk_over(xconn_t *c, sj_stream_t *s) {
  sj_xlines_init(&c->talk, s, on_line, c);
  c->talking = 1;
  c->refs++;
}

void sj__xconn_end(xconn_t *c) {
  if (c->stage == XC_ENDED)
    return;
  xconn_stage_t was = c->stage;
  c->stage = XC_ENDED;
  if (c->dial != NULL) {
    sj_dial_cancel(c->dial);
    c->dial = NULL;
  }
  if (was == XC_CARRIER) {
    sj_stream_t *top = sj_xcarrier_abort(&c->carrier);
    if (top != NULL)
      close_stream(c, top);
  }
  sj__xchannel_drop_all(c);
  /* The mux goes first: its GOAWAY tells the peer why, and the control
   * channel then closes quietly (not with a RESET the peer would read as
   * the reason). */
  if (c->mux != NULL) {
    sj_mux_close(c->mux);
    c->mux = NULL;
  }
  if (c->talking) {
    c->talking = 0;
    sj_xlines_close(&c->talk, 1, on_talk_closed);
  }
  for (size_t i = 0; i < c->a->n_tunnels; i++)
    c->a->tunnels[i].id = 0;
  uv_close((uv_handle_t *)&c->deadline, on_deadline_closed);
  conn_unref(c);
}

/* Ends the connection and tells the agent, which retries or stops. */
__attribute__((format(printf, 4, 5))) static void fail(xconn_t *c, int status, int fatal,
                                                       const char *fmt, ...) {
  char why[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  sj_xagent_t *a = c->a;
  sj__xconn_end(c);
  sj__xagent_lost(a, status, why, fatal);
}

static void send_or_fail(xconn_t *c, const sj_xctl_msg_t *msg) {
  int rc = sj_xlines_send(&c->talk, msg);
  if (rc != 0)
    fail(c, rc, 0, "cannot send to the server: %s", sj_strerror(rc));
}

/* ---- reaching the server ----------------------------------------------- */

static const char *server_text(const sj_xagent_t *a, char *buf, size_t len) {
  snprintf(buf, len, strchr(a->server.host, ':') ? "[%s]:%d" : "%s:%d", a->server.host,
           a->server.port);
  return buf;
}

static void on_deadline(uv_timer_t *t) {
  xconn_t *c = t->data;
  char where[SJ_HOST_MAX + 16];
  server_text(c->a, where, sizeof where);
  if (c->stage == XC_DIAL)
    fail(c, c->dial_error, 0, "cannot connect to the server %s: %s", where,
         sj_strerror(c->dial_error));
  else
    fail(c, UV_ETIMEDOUT, 0, "the server %s did not finish the handshake within %g s", where,
         c->a->opts.handshake_timeout_s);
}

static void on_carrier(void *arg, int status, const char *why, sj_stream_t *top) {
  xconn_t *c = arg;
  if (status != 0) {
    c->stage = XC_HELLO; /* nothing to abort: the carrier is done */
    close_stream(c, top);
    fail(c, status, 0, "%s", why);
    return;
  }
  c->stage = XC_HELLO;
  talk_over(c, top);
  sj_xlines_read(&c->talk, SJ_XCTL_AT_HELLO);
}

static void on_dialed(sj_dial_t *d, int status, sj_stream_t *s, void *data) {
  xconn_t *c = data;
  sj_xagent_t *a = c->a;
  char where[SJ_HOST_MAX + 16];
  (void)d;
  c->dial = NULL;
  if (status != 0) {
    fail(c, status, 0, "cannot connect to the server %s: %s", server_text(a, where, sizeof where),
         sj_strerror(status));
    return;
  }
  sj__xagent_log(a, SJ_LOG_INFO, "connected to the server %s", server_text(a, where, sizeof where));
  c->stage = XC_CARRIER;
  uv_timer_start(&c->deadline, on_deadline, (uint64_t)(a->opts.handshake_timeout_s * 1000), 0);
  sj_xcarrier_start(&c->carrier, s, &a->carrier, on_carrier, c);
}

xconn_t *sj__xconn_start(sj_xagent_t *a) {
  xconn_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->a = a;
  c->stage = XC_DIAL;
  sj_list_init(&c->locals);
  c->refs = 2; /* itself and the timer */
  a->refs++;
  uv_timer_init(a->loop, &c->deadline);
  c->deadline.data = c;
  int rc = sj_dial_start(a->loop, &a->pool, &a->server, &a->opts.keepalive,
                         a->opts.connect_timeout_s, on_dialed, c, &c->dial);
  if (rc != 0) {
    /* Reported from the loop, as every other failure is. */
    c->dial = NULL;
    c->dial_error = rc;
    uv_timer_start(&c->deadline, on_deadline, 0, 0);
  }
  return c;
}

/* ---- auth ---------------------------------------------------------------- */

static void on_hello(xconn_t *c, const sj_xctl_msg_t *hello) {
  sj_xagent_t *a = c->a;
  sj_xctl_msg_t auth = {.type = SJ_XCTL_AUTH};
  memcpy(auth.agent, a->id, sizeof auth.agent);
  if (hello->token[0] != '\0' && a->key.data != NULL) {
    char text[sizeof SJ_XCTL_AUTH_CONTEXT + SJ_XCTL_TOKEN_LEN];
    int n = snprintf(text, sizeof text, "%s%s", SJ_XCTL_AUTH_CONTEXT, hello->token);
    if (sj_auth_answer(a->key.data, a->key.len, text, (size_t)n, auth.token) != 0) {
      fail(c, SJ_EAUTH, 1, "cannot compute the answer to the server's challenge");
      return;
    }
  }
  c->stage = XC_WELCOME;
  send_or_fail(c, &auth);
  if (c->stage == XC_WELCOME)
    sj_xlines_read(&c->talk, SJ_XCTL_AT_WELCOME);
}

static void request(xconn_t *c);

static void on_channel(sj_mux_t *m, sj_stream_t *ch, void *data) {
  (void)m;
  sj__xchannel_accept(data, ch);
}

static void on_mux_end(sj_mux_t *m, int status, const char *why, void *data) {
  (void)m;
  fail(data, status, 0, "%s", why);
}

static int open_mux(xconn_t *c, sj_stream_t *top) {
  sj_xagent_t *a = c->a;
  sj_stream_t *guarded;
  if (sj_xcarrier_guard(top, on_carrier_gone, c, &guarded) != 0) {
    close_stream(c, top);
    return UV_ENOMEM;
  }
  c->refs++; /* until the mux has closed its carrier */
  top = guarded;
  sj_mux_options_t mo;
  sj_mux_options_init(&mo);
  mo.initiator = 1;
  mo.max_channels = 65536;
  mo.ping_ms = a->opts.heartbeat_ms;
  mo.idle_timeout_ms = a->opts.heartbeat_timeout_ms;
  mo.on_accept = on_channel;
  mo.on_end = on_mux_end;
  mo.data = c;
  int rc = sj_mux_new(top, &mo, &c->mux);
  if (rc != 0) {
    sj_stream_close(top, 1, NULL);
    return rc;
  }
  sj_stream_t *control;
  rc = sj_mux_open(c->mux, &control);
  if (rc != 0)
    return rc;
  talk_over(c, control);
  return 0;
}

static void start_mux(sj_xlines_t *l, int status, void *arg) {
  xconn_t *c = arg;
  sj_stream_t *top;
  if (status == 0)
    status = sj_xlines_detach(l, &top);
  if (status != 0) {
    fail(c, status, 0, "cannot start the session: %s", sj_strerror(status));
    return;
  }
  c->talking = 0;
  c->refs--; /* the talk's stream is the mux's now */
  status = open_mux(c, top);
  if (status != 0) {
    fail(c, status, 0, "cannot start the session: %s", sj_strerror(status));
    return;
  }
  c->stage = XC_REQUESTS;
  c->next = 0;
  request(c);
}

static void on_welcome(xconn_t *c, const sj_xctl_msg_t *msg) {
  if (msg->type == SJ_XCTL_UNAUTHORIZED) {
    fail(c, SJ_EAUTH, 1, "unauthorized%s%s", msg->text[0] ? ": " : "", msg->text);
    return;
  }
  if (msg->type == SJ_XCTL_ERROR) {
    fail(c, UV_ECONNREFUSED, 0, "the server refused the connection: %s", msg->text);
    return;
  }
  if (sj_xlines_when_sent(&c->talk, start_mux) == SJ_DONE)
    start_mux(&c->talk, 0, c);
}

/* ---- tunnels ------------------------------------------------------------- */

/* The port a tunnel asks for: the user's, or after a reconnect the one it
 * had (another if that is gone, unless the user asked for it). */
static void request(xconn_t *c) {
  atunnel_t *t = &c->a->tunnels[c->next];
  sj_xctl_msg_t msg = {.type = SJ_XCTL_EXPOSE};
  msg.port = t->asked != 0 ? t->asked : t->port;
  msg.prefer = t->asked == 0 && t->port != 0;
  send_or_fail(c, &msg);
  if (c->stage == XC_REQUESTS)
    sj_xlines_read(&c->talk, SJ_XCTL_AT_REPLY);
}

static void on_reply(xconn_t *c, const sj_xctl_msg_t *msg) {
  sj_xagent_t *a = c->a;
  atunnel_t *t = &a->tunnels[c->next];
  if (msg->type == SJ_XCTL_ERROR) {
    fail(c, UV_EADDRINUSE, 0, "the server refused to expose %s: %s", t->local_text, msg->text);
    return;
  }
  t->port = msg->port;
  t->id = msg->tunnel;
  sj_xagent_exposed_t info = {.index = c->next,
                              .local = t->local_text,
                              .public_host = msg->text[0] != '\0' ? msg->text : a->server.host,
                              .public_port = msg->port,
                              .tunnel_id = msg->tunnel};
  if (a->opts.on_exposed != NULL)
    a->opts.on_exposed(a, &info, a->opts.data);
  if (c->stage != XC_REQUESTS)
    return; /* the callback closed the agent */
  if (++c->next < a->n_tunnels) {
    request(c);
    return;
  }
  c->stage = XC_UP;
  uv_timer_stop(&c->deadline);
  sj__xagent_up(a);
}

static void on_line(sj_xlines_t *l, int status, const sj_xctl_msg_t *msg, const char *why,
                    void *arg) {
  xconn_t *c = arg;
  char where[SJ_HOST_MAX + 16];
  (void)l;
  if (status != 0) {
    server_text(c->a, where, sizeof where);
    fail(c, status, 0, "server %s: %s", where, why);
    return;
  }
  switch (c->stage) {
  case XC_HELLO:
    on_hello(c, msg);
    break;
  case XC_WELCOME:
    on_welcome(c, msg);
    break;
  case XC_REQUESTS:
    on_reply(c, msg);
    break;
  default:
    break;
  }
}
