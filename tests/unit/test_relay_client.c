/*
 * The relay client stream (src/relay/client.h) against a relay the test
 * plays itself on a loopback socket: registration and handshake, messages
 * cut to the relay's limit (also when the socket takes only part of one, so
 * that a header is cut), deliveries from the peer and from strangers,
 * bytes of an older session, keep-alives, and the failures.
 *
 * Waits turn the loop with a deadline; no sleep stands in for
 * synchronisation.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "link.h"

#define WAIT_MS 30000

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

static void loop_wait(uv_loop_t *loop, int fd) {
  struct pollfd pfd[2] = {{.fd = uv_backend_fd(loop), .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
  int timeout = uv_backend_timeout(loop);
  if (timeout < 0 || timeout > 5)
    timeout = 5;
  poll(pfd, fd >= 0 ? 2 : 1, timeout);
}

/* ---- the fixture: a client, and the test as its relay --------------------- */

typedef struct {
  uv_loop_t loop;
  sj_pool_t pool;
  int lfd; /* the test's listening socket */
  int fd;  /* the client's connection, as the relay sees it */
  int port;
  sj_stream_t *s;
  int ready, failed, fail_status;
  char why[300];
  int closed;
  /* What the client sent, parsed as a relay parses it. */
  sj_relay_parser_t rp;
  char registered[300];
  uint64_t client_id; /* from its HELLO */
  uint64_t last_hello_to;
  uint8_t client_role;
  int hellos, keepalives;
  int to_peer; /* the message being read is for the peer */
  sj_link_parser_t lp;
  char *data; /* DATA bytes received, in order */
  size_t data_len, data_cap;
  int stale_data; /* DATA with the wrong session ids */
  size_t max_msg; /* the largest message the client sent */
  /* What the client's reader got. */
  char *got;
  size_t got_len;
  int read_status;
} fx_t;

static void on_ready(sj_stream_t *s, int status, const char *why, void *data) {
  fx_t *fx = data;
  (void)s;
  if (status == 0) {
    fx->ready++;
    return;
  }
  fx->failed++;
  fx->fail_status = status;
  snprintf(fx->why, sizeof fx->why, "%s", why);
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  fx_t *fx = s->data;
  if (status < 0) {
    fx->read_status = status;
    return;
  }
  fx->got = realloc(fx->got, fx->got_len + sj_chunk_remaining(c));
  memcpy(fx->got + fx->got_len, c->data + c->off, sj_chunk_remaining(c));
  fx->got_len += sj_chunk_remaining(c);
  sj_pool_put(s->pool, c);
}

static void on_closed(sj_stream_t *s) { ((fx_t *)s->data)->closed = 1; }

static int setup(void **state) {
  fx_t *fx = calloc(1, sizeof *fx);
  if (fx == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  sj_pool_init(&fx->pool, SJ_CHUNK_SIZE, 8);
  fx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (bind(fx->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fx->lfd, 4) != 0 ||
      getsockname(fx->lfd, (struct sockaddr *)&sa, &len) != 0)
    return -1;
  fx->port = ntohs(sa.sin_port);
  fx->fd = -1;
  sj_relay_parser_init(&fx->rp, 1 << 20);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  if (fx->s != NULL && !fx->closed) {
    fx->s->data = fx;
    sj_stream_close(fx->s, 0, on_closed);
  }
  if (fx->fd >= 0)
    close(fx->fd);
  close(fx->lfd);
  uint64_t deadline = mono_ms() + 5000;
  while (uv_loop_alive(&fx->loop) && mono_ms() < deadline) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, -1);
  }
  int rc = uv_loop_close(&fx->loop);
  sj_pool_drain(&fx->pool);
  free(fx->data);
  free(fx->got);
  free(fx);
  assert_int_equal(rc, 0);
  return 0;
}

/* ---- the relay's side --------------------------------------------------- */

static void keep_data(fx_t *fx, const char *p, size_t n) {
  if (fx->data_len + n > fx->data_cap) {
    fx->data_cap = (fx->data_len + n) * 2;
    fx->data = realloc(fx->data, fx->data_cap);
  }
  memcpy(fx->data + fx->data_len, p, n);
  fx->data_len += n;
}

static void on_link_part(fx_t *fx, const char *p, size_t n) {
  while (n > 0) {
    sj_link_event_t ev;
    size_t used = sj_link_parse(&fx->lp, p, n, &ev);
    assert_true(used > 0);
    p += used;
    n -= used;
    if (ev.type == SJ_LINK_HELLO_EV) {
      fx->hellos++;
      fx->client_id = ev.from;
      fx->last_hello_to = ev.to;
      fx->client_role = ev.role;
    } else if (ev.type == SJ_LINK_DATA_EV) {
      if (ev.from != fx->client_id || ev.to != 0xfeedULL)
        fx->stale_data++;
      keep_data(fx, ev.data, ev.len);
    } else {
      assert_int_not_equal(ev.type, SJ_LINK_BAD);
    }
  }
}

/* Parses what the client sent, as the relay would: any framing error
 * fails the test. */
static void relay_parse(fx_t *fx, const char *p, size_t n) {
  while (n > 0) {
    sj_relay_event_t ev;
    int64_t used = sj_relay_parse(&fx->rp, p, n, &ev);
    assert_true(used >= 0);
    p += used;
    n -= (size_t)used;
    if (ev.type == SJ_RELAY_REGISTER) {
      snprintf(fx->registered, sizeof fx->registered, "%.*s", (int)ev.name_len, ev.name);
    } else if (ev.type == SJ_RELAY_MESSAGE) {
      int to_self = ev.name_len == strlen(fx->registered) &&
                    memcmp(ev.name, fx->registered, ev.name_len) == 0;
      if (to_self && ev.length == 0)
        fx->keepalives++;
      assert_true(to_self || (ev.name_len == 4 && memcmp(ev.name, "peer", 4) == 0));
      fx->to_peer = !to_self;
      if (ev.length > fx->max_msg)
        fx->max_msg = (size_t)ev.length;
      if (fx->to_peer)
        assert_int_equal(sj_link_begin(&fx->lp, ev.length), SJ_LINK_NEED_MORE);
    } else if (ev.type == SJ_RELAY_DATA && fx->to_peer) {
      on_link_part(fx, ev.data, ev.data_len);
    }
  }
}

/* Reads what the client sent so far, at most max bytes. */
static void relay_read(fx_t *fx, size_t max) {
  char buf[4096];
  while (max > 0) {
    ssize_t n = read(fx->fd, buf, max < sizeof buf ? max : sizeof buf);
    if (n <= 0)
      return;
    relay_parse(fx, buf, (size_t)n);
    max -= (size_t)n;
  }
}

static void relay_send(fx_t *fx, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fx->fd, p, len);
    if (n < 0 && errno == EAGAIN) {
      uv_run(&fx->loop, UV_RUN_NOWAIT);
      continue;
    }
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

/* A delivery from sender of a link message. */
static void deliver(fx_t *fx, const char *sender, uint8_t kind, uint64_t from, uint64_t to,
                    const void *payload, size_t n) {
  char head[600];
  size_t h = (size_t)sprintf(head, "%s|%zu|", sender, SJ_LINK_HEADER + n);
  h += sj_link_put((uint8_t *)head + h, kind, from, to);
  relay_send(fx, head, h);
  relay_send(fx, payload, n);
}

static void deliver_hello(fx_t *fx, uint64_t from, uint64_t to, uint8_t role) {
  char head[64];
  size_t h = (size_t)sprintf(head, "peer|%d|", SJ_LINK_HELLO_LEN);
  h += sj_link_put_hello((uint8_t *)head + h, from, to, role);
  relay_send(fx, head, h);
}

#define WAIT_FOR(fx, expr)                                                                         \
  do {                                                                                             \
    uint64_t deadline_ = mono_ms() + WAIT_MS;                                                      \
    for (;;) {                                                                                     \
      uv_run(&(fx)->loop, UV_RUN_NOWAIT);                                                          \
      if ((fx)->fd >= 0)                                                                           \
        relay_read((fx), (size_t)-1);                                                              \
      if (expr)                                                                                    \
        break;                                                                                     \
      if (mono_ms() >= deadline_)                                                                  \
        fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__, #expr);                    \
      loop_wait(&(fx)->loop, (fx)->fd);                                                            \
    }                                                                                              \
  } while (0)

/* Starts the client and takes its connection; returns once its HELLO is in. */
static void start(fx_t *fx, uint64_t max_message, unsigned keepalive_ms) {
  sj_relay_client_options_t o;
  sj_relay_client_options_init(&o);
  o.name = "me";
  o.peer = "peer";
  o.role = 'L';
  o.max_message = max_message;
  o.keepalive_ms = keepalive_ms;
  o.hello_ms = 50;
  sj_side_spec_t relay = {.kind = SJ_SIDE_CONNECT, .host = "127.0.0.1", .port = fx->port};
  assert_int_equal(sj_relay_client_new(&fx->loop, &fx->pool, &relay, &o, on_ready, fx, &fx->s), 0);
  uint64_t deadline = mono_ms() + WAIT_MS;
  while ((fx->fd = accept4(fx->lfd, NULL, NULL, SOCK_NONBLOCK)) < 0) {
    assert_true(mono_ms() < deadline);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, fx->lfd);
  }
  WAIT_FOR(fx, fx->hellos > 0);
  assert_string_equal(fx->registered, "me");
  assert_int_equal(fx->client_role, 'L');
}

/* The peer answers: the client is ready and reads. */
static void handshake(fx_t *fx) {
  assert_int_equal(fx->ready, 0);
  deliver_hello(fx, 0xfeed, fx->client_id, 'C');
  WAIT_FOR(fx, fx->ready == 1);
  fx->s->data = fx;
  fx->s->on_read = on_read;
  assert_int_equal(sj_stream_read_start(fx->s), 0);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_handshake_resends_hello_until_answered(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  /* Unanswered, the HELLO comes again; writes wait for the handshake. */
  WAIT_FOR(fx, fx->hellos >= 3);
  assert_int_equal(sj_stream_write(fx->s, "x", 1, NULL, NULL), UV_ENOTCONN);
  assert_int_equal(fx->last_hello_to, 0);
  handshake(fx);
  /* The client told the peer that it knows it now. */
  WAIT_FOR(fx, fx->last_hello_to == 0xfeed);
}

typedef struct {
  fx_t *fx;
  char *buf;
  size_t len, off, in_flight;
  int done, err;
} writer_t;

static void write_more(writer_t *w);

static void on_written(sj_stream_t *s, int status, void *arg) {
  writer_t *w = arg;
  (void)s;
  if (status < 0) {
    w->err = status;
    return;
  }
  w->off += w->in_flight;
  w->in_flight = 0;
  write_more(w);
}

/* Writes as a pump does: try_write first, then one write for the rest. */
static void write_more(writer_t *w) {
  while (w->off < w->len && w->in_flight == 0) {
    size_t n = w->len - w->off > 5000 ? 5000 : w->len - w->off;
    int k = sj_stream_try_write(w->fx->s, w->buf + w->off, n);
    if (k > 0) {
      w->off += (size_t)k;
      continue;
    }
    assert_int_equal(k, UV_EAGAIN);
    w->in_flight = n;
    assert_int_equal(sj_stream_write(w->fx->s, w->buf + w->off, n, on_written, w), 0);
  }
  w->done = w->off == w->len;
}

/* Messages are cut to the relay's limit, and stay whole however the socket
 * takes them: the relay's reader here is slow and takes odd amounts, so
 * that writes are cut anywhere, headers included. */
static void test_writes_become_whole_messages_within_the_limit(void **state) {
  fx_t *fx = *state;
  int small = 2048;
  setsockopt(fx->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  start(fx, 64, 60000); /* a header of about 25 bytes per 47 of payload */
  handshake(fx);
  writer_t w = {.fx = fx, .len = 12 << 20};
  w.buf = malloc(w.len);
  for (size_t i = 0; i < w.len; i++)
    w.buf[i] = (char)(i * 2654435761u >> 13);
  write_more(&w);
  /* Nothing is read until the client's socket is full, so that from then
   * on every write finds room for only part of it. */
  size_t last = (size_t)-1;
  for (int still = 0; still < 20 && !w.done;) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    loop_wait(&fx->loop, -1);
    still = w.off == last ? still + 1 : 0;
    last = w.off;
  }
  assert_false(w.done);
  uint64_t deadline = mono_ms() + WAIT_MS;
  size_t step = 1;
  while (fx->data_len < w.len) {
    assert_true(mono_ms() < deadline);
    assert_int_equal(w.err, 0);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    relay_read(fx, step);
    step = step % 9973 + 13;
    loop_wait(&fx->loop, fx->fd);
  }
  assert_true(w.done);
  assert_int_equal(fx->data_len, w.len);
  assert_memory_equal(fx->data, w.buf, w.len);
  assert_int_equal(fx->stale_data, 0);
  assert_true(fx->max_msg <= 64);
  free(w.buf);
}

static void test_deliveries_from_the_peer_only(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  handshake(fx);
  deliver(fx, "peer", SJ_LINK_DATA, 0xfeed, fx->client_id, "one ", 4);
  deliver(fx, "stranger", SJ_LINK_DATA, 0xfeed, fx->client_id, "XXXX", 4);
  deliver(fx, "peer", SJ_LINK_DATA, 0xbeef, fx->client_id, "old!", 4); /* another session */
  deliver(fx, "peer", SJ_LINK_DATA, 0xfeed, 12345, "old!", 4);         /* for another client */
  relay_send(fx, "peer|3|abc", 10);                                    /* not of the link */
  deliver(fx, "peer", SJ_LINK_DATA, 0xfeed, fx->client_id, "two", 3);
  WAIT_FOR(fx, fx->got_len == 7);
  assert_memory_equal(fx->got, "one two", 7);
  assert_int_equal(sj_relay_client_ignored(fx->s), 2);
  assert_int_equal(fx->failed, 0);
}

static void test_keepalive_when_idle(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60);
  handshake(fx);
  WAIT_FOR(fx, fx->keepalives >= 3);
  assert_int_equal(fx->failed, 0);
}

static void test_peer_with_a_new_session_fails_the_stream(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  handshake(fx);
  deliver_hello(fx, 0xcafe, 0, 'C');
  WAIT_FOR(fx, fx->read_status != 0);
  assert_int_equal(fx->read_status, UV_ECONNRESET);
  assert_int_equal(fx->failed, 1);
  assert_non_null(strstr(fx->why, "started a new session"));
  assert_int_equal(sj_stream_write(fx->s, "x", 1, NULL, NULL), UV_ECONNRESET);
}

static void test_peer_of_the_same_role_fails_the_handshake(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  deliver_hello(fx, 0xfeed, fx->client_id, 'L');
  WAIT_FOR(fx, fx->failed == 1);
  assert_int_equal(fx->ready, 0);
  assert_string_equal(fx->why, "the far end (peer) also listens for connections: one end must "
                               "listen and the other connect");
}

static void test_relay_closing_before_the_handshake(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  close(fx->fd);
  fx->fd = -1;
  WAIT_FOR(fx, fx->failed == 1);
  assert_int_equal(fx->fail_status, UV_EOF);
  assert_string_equal(fx->why, "the relay closed the connection (is the name me taken?)");
}

static void test_relay_closing_after_the_handshake(void **state) {
  fx_t *fx = *state;
  start(fx, 1 << 20, 60000);
  handshake(fx);
  close(fx->fd);
  fx->fd = -1;
  WAIT_FOR(fx, fx->read_status != 0);
  assert_int_equal(fx->read_status, UV_EOF);
  assert_string_equal(fx->why, "the relay closed the connection");
}

static void test_unreachable_relay(void **state) {
  fx_t *fx = *state;
  close(fx->lfd);
  fx->lfd = socket(AF_INET, SOCK_STREAM, 0); /* for teardown to close */
  sj_relay_client_options_t o;
  sj_relay_client_options_init(&o);
  o.name = "me";
  o.peer = "peer";
  sj_side_spec_t relay = {.kind = SJ_SIDE_CONNECT, .host = "127.0.0.1", .port = fx->port};
  assert_int_equal(sj_relay_client_new(&fx->loop, &fx->pool, &relay, &o, on_ready, fx, &fx->s), 0);
  WAIT_FOR(fx, fx->failed == 1);
  assert_int_equal(fx->fail_status, UV_ECONNREFUSED);
  assert_non_null(strstr(fx->why, "cannot reach the relay at 127.0.0.1:"));
}

static void test_bad_options(void **state) {
  fx_t *fx = *state;
  sj_relay_client_options_t o;
  sj_relay_client_options_init(&o);
  sj_side_spec_t relay = {.kind = SJ_SIDE_CONNECT, .host = "127.0.0.1", .port = fx->port};
  sj_stream_t *s;
  o.name = "a|b";
  o.peer = "peer";
  assert_int_equal(sj_relay_client_new(&fx->loop, &fx->pool, &relay, &o, on_ready, fx, &s),
                   UV_EINVAL);
  o.name = o.peer;
  assert_int_equal(sj_relay_client_new(&fx->loop, &fx->pool, &relay, &o, on_ready, fx, &s),
                   UV_EINVAL);
  o.name = "me";
  o.max_message = SJ_LINK_HEADER;
  assert_int_equal(sj_relay_client_new(&fx->loop, &fx->pool, &relay, &o, on_ready, fx, &s),
                   UV_EINVAL);
  assert_string_equal(sj_relay_name_problem(""), "a name cannot be empty");
  assert_null(sj_relay_name_problem("device_a"));
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_handshake_resends_hello_until_answered, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writes_become_whole_messages_within_the_limit, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_deliveries_from_the_peer_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_when_idle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_peer_with_a_new_session_fails_the_stream, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_peer_of_the_same_role_fails_the_handshake, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_relay_closing_before_the_handshake, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relay_closing_after_the_handshake, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreachable_relay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
