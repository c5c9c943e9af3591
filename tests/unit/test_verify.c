/*
 * Verifiers (sj_verifier_t): socket_connector's "Authenticator tests" with
 * its "go" verifier (a socket's first two bytes must be "go"), and the rest
 * of the contract: bytes behind the auth message are relayed and the auth
 * message never is, a decision may come later (from a timer), the deadline
 * refuses a side that stalls, the verifier may write (a challenge), the
 * auth read is capped, the connector's close reaps sockets mid-auth, and
 * --persist's standing connections dial their partner only when their peer
 * speaks.
 */
#include "connector_fixture.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* ---- the "go" verifier ------------------------------------------------- */

#define GO_REASON "auth failed: say go"

typedef struct {
  int started[2], shown[2], accepted[2], rejected[2], ended[2];
  int end_status[2];
  int async_ms;  /* > 0: decide this long after "go" (from a timer) */
  int states;    /* per-socket states alive */
  fx_t *fx;
} vs_t;

/* Per socket, for the asynchronous decision. */
typedef struct {
  uv_timer_t timer;
  sj_verify_t *v; /* NULL once the socket is gone */
  vs_t *vs;
  int decision; /* 1 accept, -1 reject, 0 undecided */
} pending_t;

static void pending_free(uv_handle_t *h) {
  pending_t *p = h->data;
  p->vs->states--;
  free(p);
}

static void pending_fire(uv_timer_t *t) {
  pending_t *p = t->data;
  sj_verify_t *v = p->v;
  sj_side_t s = sj_verify_side(v);
  sj_verify_set_state(v, NULL);
  uv_close((uv_handle_t *)&p->timer, pending_free);
  if (p->decision > 0) {
    p->vs->accepted[s]++;
    sj_verify_accept(v);
  } else {
    p->vs->rejected[s]++;
    sj_verify_reject(v, GO_REASON);
  }
}

static void go_start(sj_verify_t *v, void *data) {
  vs_t *vs = data;
  vs->started[sj_verify_side(v)]++;
}

/* Decides now, or arms a timer that decides later. */
static void go_decide(vs_t *vs, sj_verify_t *v, int ok) {
  sj_side_t s = sj_verify_side(v);
  if (vs->async_ms == 0) {
    if (ok) {
      vs->accepted[s]++;
      sj_verify_accept(v);
    } else {
      vs->rejected[s]++;
      sj_verify_reject(v, GO_REASON);
    }
    return;
  }
  pending_t *p = calloc(1, sizeof *p);
  assert_non_null(p);
  *p = (pending_t){.v = v, .vs = vs, .decision = ok ? 1 : -1};
  assert_int_equal(uv_timer_init(&vs->fx->loop, &p->timer), 0);
  p->timer.data = p;
  vs->states++;
  sj_verify_set_state(v, p);
  assert_int_equal(uv_timer_start(&p->timer, pending_fire, (uint64_t)vs->async_ms, 0), 0);
}

static void go_on_data(sj_verify_t *v, const char *buf, size_t len, void *data) {
  vs_t *vs = data;
  vs->shown[sj_verify_side(v)]++;
  if (sj_verify_state(v) != NULL || len < 2)
    return; /* decided already (pending), or not enough yet */
  int ok = memcmp(buf, "go", 2) == 0;
  if (ok)
    sj_verify_consume(v, 2);
  go_decide(vs, v, ok);
}

static void go_on_end(sj_verify_t *v, int status, void *data) {
  vs_t *vs = data;
  sj_side_t s = sj_verify_side(v);
  vs->ended[s]++;
  vs->end_status[s] = status;
  pending_t *p = sj_verify_state(v);
  if (p != NULL) {
    uv_close((uv_handle_t *)&p->timer, pending_free);
    sj_verify_set_state(v, NULL);
  }
}

static sj_verifier_t go_verifier(vs_t *vs) {
  return (sj_verifier_t){go_start, go_on_data, go_on_end, vs};
}

/* The fixture with the "go" verifier on both sides. */
static vs_t *use_go(fx_t *fx) {
  vs_t *vs = calloc(1, sizeof *vs);
  assert_non_null(vs);
  vs->fx = fx;
  fx->user = vs;
  fx->opts.verifier[SJ_A] = go_verifier(vs);
  fx->opts.verifier[SJ_B] = go_verifier(vs);
  return vs;
}

static int vteardown(void **state) {
  fx_t *fx = *state;
  vs_t *vs = fx->user;
  int rc = teardown(state);
  if (vs != NULL) {
    /* Every per-socket state was released. */
    assert_int_equal(vs->states, 0);
    free(vs);
  }
  return rc;
}

/* Reads fd to its end, checks it got exactly want, and closes it (so a
 * refused socket's linger ends at once). */
static void expect_all(fx_t *fx, int fd, const char *want) {
  char *got = read_to_end(fx, fd);
  assert_string_equal(got, want);
  free(got);
  fx_close_fd(fx, fd);
}

/* Waits for the one log line of a refused socket (of local port port). */
static void expect_refused_logged(fx_t *fx, char side, int port, const char *why) {
  char want[256];
  snprintf(want, sizeof want, "%c 127.0.0.1:%d refused: %s", side, port, why);
  WAIT_FOR(&fx->loop, fx_logged(fx, want) > 0);
  if (fx_logged(fx, want) != 1) {
    fx_dump_log(fx);
    fail_msg("expected one log line '%s'", want);
  }
}

/* ======================================================================== */
/* socket_connector's Authenticator tests                                   */
/* ======================================================================== */

/* Seed test 10: a socket counts only once authenticated; the auth bytes are
 * not relayed, and the bytes sent with them are. */
static void test_auth_success(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  fx->opts.timeout_s = 0.5;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  WAIT_FOR(&fx->loop, vs->started[SJ_A] == 1);
  send_str(a, "goearly-a");
  WAIT_FOR(&fx->loop, vs->accepted[SJ_A] == 1);

  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, vs->started[SJ_B] == 1);
  assert_int_equal(fx->pair_calls, 0); /* B is not authenticated yet */
  send_str(b, "go");
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(fx->pairs[0].a.port, local_port(a));
  assert_int_equal(fx->pairs[0].b.port, local_port(b));

  send_str(a, "hello");
  send_str(b, "world");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, "early-ahello");
  expect_all(fx, a, "world");

  /* Both ended: the pair closes, and the grace period ends the connector. */
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->closed_calls, 1);
  assert_int_equal(fx->closed[0].status, 0);
  /* The auth message is no relayed byte. */
  assert_int_equal(fx->closed[0].bytes_read_a, 12);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 12);
  assert_int_equal(fx->closed[0].bytes_read_b, 5);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 5);
  assert_int_equal(vs->rejected[SJ_A] + vs->rejected[SJ_B], 0);
  assert_int_equal(vs->ended[SJ_A] + vs->ended[SJ_B], 0);
}

/* Seed test 11: refused sockets never enter the queues. */
static void test_auth_failure_then_success(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  start_server_to_server(fx);
  int pa = port_of(fx, SJ_A), pb = port_of(fx, SJ_B);
  int a = client(fx, pa);
  send_str(a, "go");
  WAIT_FOR(&fx->loop, vs->accepted[SJ_A] == 1);

  int bad[6];
  for (int i = 0; i < 6; i++) {
    bad[i] = client(fx, i < 3 ? pa : pb);
    send_str(bad[i], "nope");
  }
  for (int i = 0; i < 6; i++) {
    int port = local_port(bad[i]);
    expect_all(fx, bad[i], GO_REASON "\n");
    expect_refused_logged(fx, i < 3 ? 'A' : 'B', port, GO_REASON);
  }
  assert_int_equal(vs->rejected[SJ_A], 3);
  assert_int_equal(vs->rejected[SJ_B], 3);
  assert_int_equal(fx->pair_calls, 0);

  int b = client(fx, pb);
  send_str(b, "go");
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(fx->pairs[0].a.port, local_port(a));
  assert_int_equal(fx->pairs[0].b.port, local_port(b));
  send_str(a, "ping");
  send_str(b, "pong");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, "ping");
  expect_all(fx, a, "pong");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->pair_calls, 1);
  assert_int_equal(fx->done_calls, 0); /* no grace period: it keeps serving */
}

#define NAUTH 3

/* Seed test 12: authenticated sockets, interleaved at random with refused
 * ones and silent ones (still mid-auth), pair first-in first-out by the
 * order in which they authenticated. */
static void test_auth_interleaved_fifo(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  start_server_to_server(fx);
  int port[2] = {port_of(fx, SJ_A), port_of(fx, SJ_B)};
  int good[2][NAUTH], n_good[2] = {0, 0};
  int silent[32], n_silent = 0, n_refused = 0;
  unsigned seed = 12345;
  while (n_good[SJ_A] < NAUTH || n_good[SJ_B] < NAUTH) {
    seed = seed * 1103515245u + 12345u;
    int s = (seed >> 16) & 1;
    int kind = (int)((seed >> 8) % 5); /* 0: authenticates, 1-3: refused, 4: silent */
    if (kind == 0 && n_good[s] == NAUTH)
      kind = 1;
    int fd = client(fx, port[s]);
    if (kind == 0) {
      send_str(fd, "go");
      send_u32(fd, (uint32_t)(100 * s + n_good[s]));
      good[s][n_good[s]++] = fd;
      WAIT_FOR(&fx->loop, vs->accepted[s] == n_good[s]);
    } else if (kind == 4 && n_silent < 32) {
      silent[n_silent++] = fd;
    } else {
      send_str(fd, "no");
      n_refused++;
    }
  }
  assert_true(n_refused > 0);
  assert_true(n_silent > 0);
  WAIT_FOR(&fx->loop, fx->pair_calls == NAUTH &&
                          vs->rejected[SJ_A] + vs->rejected[SJ_B] == n_refused);

  /* The k-th authenticated A with the k-th authenticated B. */
  for (int k = 0; k < NAUTH; k++) {
    assert_int_equal(fx->pairs[k].a.port, local_port(good[SJ_A][k]));
    assert_int_equal(fx->pairs[k].b.port, local_port(good[SJ_B][k]));
    for (int s = 0; s < 2; s++) {
      reader_t r;
      reader_init(&r, good[!s][k]);
      WAIT_FOR(&fx->loop, reader_has(&r, 4));
      assert_int_equal(r.len, 4);
      assert_int_equal(get_u32(r.buf), (uint32_t)(100 * s + k));
      reader_free(&r);
    }
  }

  /* Two pairs end; the third is still there. */
  for (int k = 0; k < 2; k++) {
    fx_close_fd(fx, good[SJ_A][k]);
    fx_close_fd(fx, good[SJ_B][k]);
  }
  WAIT_FOR(&fx->loop, fx->closed_calls == 2);
  sj_stats_t st;
  stats_of(fx, &st);
  assert_int_equal(st.active_pairs, 1);
  /* Silent sockets leaving mid-auth are reported to the verifier. */
  for (int i = 0; i < n_silent; i++)
    fx_close_fd(fx, silent[i]);
  WAIT_FOR(&fx->loop, vs->ended[SJ_A] + vs->ended[SJ_B] == n_silent);
  assert_int_equal(fx->pair_calls, NAUTH);
  assert_int_equal(fx->done_calls, 0);
}

/* ======================================================================== */
/* Asynchronous decisions, deadline, peers that leave                       */
/* ======================================================================== */

/* The decision comes from a timer; what arrives meanwhile is kept and
 * relayed, and the verifier is shown it without having to take it. */
static void test_auth_async_accept(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  vs->async_ms = 50;
  start_server_to_server(fx);
  int b = client(fx, port_of(fx, SJ_B));
  send_str(b, "go");
  int a = client(fx, port_of(fx, SJ_A));
  send_str(a, "go");
  WAIT_FOR(&fx->loop, vs->states == 2);
  assert_int_equal(vs->accepted[SJ_A] + vs->accepted[SJ_B], 0);
  int shown = vs->shown[SJ_A];
  send_str(a, "more");
  WAIT_FOR(&fx->loop, vs->shown[SJ_A] > shown || fx->pair_calls == 1);
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(vs->accepted[SJ_A], 1);
  assert_int_equal(vs->accepted[SJ_B], 1);
  send_str(a, "!");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, "more!");
  expect_all(fx, a, "");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1 && vs->states == 0);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 5);
}

static void test_auth_async_reject(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  vs->async_ms = 30;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  send_str(a, "no, thanks");
  WAIT_FOR(&fx->loop, vs->states == 1);
  int port = local_port(a);
  expect_all(fx, a, GO_REASON "\n");
  assert_int_equal(vs->rejected[SJ_A], 1);
  expect_refused_logged(fx, 'A', port, GO_REASON);
  WAIT_FOR(&fx->loop, vs->states == 0);
}

/* A side that stalls is refused at the deadline with a reason line, the
 * verifier hears of it (and releases what it holds for the socket), and
 * the connector serves everyone else. */
static void test_auth_timeout(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  vs->async_ms = 3600 * 1000; /* a decision that never comes in time */
  fx->opts.auth_timeout_s = 0.3;
  start_server_to_server(fx);
  uint64_t t0 = mono_ms();
  int silent = client(fx, port_of(fx, SJ_A));
  int partial = client(fx, port_of(fx, SJ_A));
  send_str(partial, "g");
  int undecided = client(fx, port_of(fx, SJ_A));
  send_str(undecided, "go");
  int silent_port = local_port(silent), partial_port = local_port(partial);
  expect_all(fx, silent, "auth failed: timed out\n");
  expect_all(fx, partial, "auth failed: timed out\n");
  expect_all(fx, undecided, "auth failed: timed out\n");
  assert_true(mono_ms() - t0 >= 290);
  assert_int_equal(vs->ended[SJ_A], 3);
  assert_int_equal(vs->end_status[SJ_A], UV_ECANCELED);
  WAIT_FOR(&fx->loop, vs->states == 0);
  expect_refused_logged(fx, 'A', silent_port, "auth timed out");
  expect_refused_logged(fx, 'A', partial_port, "auth timed out");
  assert_int_equal(fx->pair_calls, 0);
  assert_int_equal(fx->done_calls, 0);
}

/* A peer that leaves before the verifier decides: the verifier is told,
 * and nothing is queued. */
static void test_auth_peer_leaves(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  send_str(a, "g");
  WAIT_FOR(&fx->loop, vs->shown[SJ_A] == 1);
  fx_close_fd(fx, a);
  WAIT_FOR(&fx->loop, vs->ended[SJ_A] == 1);
  assert_int_equal(vs->end_status[SJ_A], UV_EOF);
  /* B finds nobody to pair with. */
  int b = client(fx, port_of(fx, SJ_B));
  send_str(b, "go");
  WAIT_FOR(&fx->loop, vs->accepted[SJ_B] == 1);
  assert_int_equal(fx->pair_calls, 0);
}

/* The auth message ended the peer's input: the pair forms, the bytes sent
 * with the auth message arrive, then the end. */
static void test_auth_then_eof_before_pairing(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  send_str(a, "gobye");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, vs->accepted[SJ_A] == 1);
  int b = client(fx, port_of(fx, SJ_B));
  send_str(b, "go");
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, "bye");
  expect_all(fx, a, "");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, 3);
}

/* ======================================================================== */
/* The verifier writes; the auth read is capped                             */
/* ======================================================================== */

typedef struct {
  int started, answered;
  int big_write_rc;
  sj_side_t side;
  sj_peer_t peer;
} chal_t;

/* Sends a challenge, expects "42" on a line, then says "ok" and lets the
 * socket through (as NoPorts' ESCR does). */
static void chal_start(sj_verify_t *v, void *data) {
  chal_t *ch = data;
  ch->started++;
  ch->side = sj_verify_side(v);
  sj_verify_peer(v, &ch->peer);
  char big[SJ_VERIFY_MAX + 1];
  memset(big, 'x', sizeof big);
  ch->big_write_rc = sj_verify_write(v, big, sizeof big);
  assert_int_equal(sj_verify_write(v, "challenge?\n", 11), 0);
}

static void chal_on_data(sj_verify_t *v, const char *buf, size_t len, void *data) {
  chal_t *ch = data;
  const char *nl = memchr(buf, '\n', len);
  if (nl == NULL)
    return;
  size_t n = (size_t)(nl - buf);
  sj_verify_consume(v, n + 1);
  ch->answered++;
  if (n > 0 && buf[n - 1] == '\r')
    n--;
  if (n == 2 && memcmp(buf, "42", 2) == 0) {
    assert_int_equal(sj_verify_write(v, "ok\n", 3), 0);
    sj_verify_accept(v);
  } else {
    sj_verify_reject(v, "wrong answer");
  }
}

static void test_verifier_writes_challenge(void **state) {
  fx_t *fx = *state;
  chal_t ch = {0};
  fx->opts.verifier[SJ_A] = (sj_verifier_t){chal_start, chal_on_data, NULL, &ch};
  start_server_to_server(fx);
  /* B (no verifier) is queued first, and has spoken. */
  int b = client(fx, port_of(fx, SJ_B));
  send_str(b, "from-b");
  int a = client(fx, port_of(fx, SJ_A));
  reader_t ra;
  reader_init(&ra, a);
  WAIT_FOR(&fx->loop, reader_has(&ra, 11));
  assert_true(reader_is(&ra, "challenge?\n"));
  assert_int_equal(ch.big_write_rc, UV_ENOBUFS);
  assert_int_equal(ch.side, SJ_A);
  assert_string_equal(ch.peer.host, "127.0.0.1");
  assert_int_equal(ch.peer.port, local_port(a));
  assert_int_equal(fx->pair_calls, 0);
  send_str(a, "4");
  send_str(a, "2\r"); /* not a line yet */
  send_str(a, "\nfrom-a");
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(ch.answered, 1);
  /* "ok" went out before anything relayed from B. */
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  WAIT_FOR_FD(&fx->loop, a, POLLIN, reader_poll(&ra), WAIT_MS);
  assert_true(reader_is(&ra, "challenge?\nok\nfrom-b"));
  reader_free(&ra);
  expect_all(fx, b, "from-a");

  /* A wrong answer: the challenge, then the reason. */
  int a2 = client(fx, port_of(fx, SJ_A));
  send_str(a2, "41\n");
  expect_all(fx, a2, "challenge?\nwrong answer\n");
  assert_int_equal(ch.answered, 2);
}

/* A verifier that waits for a newline that never comes. */
static void line_on_data(sj_verify_t *v, const char *buf, size_t len, void *data) {
  (void)data;
  if (memchr(buf, '\n', len) != NULL)
    sj_verify_accept(v);
}

static void line_on_end(sj_verify_t *v, int status, void *data) {
  (void)v;
  *(int *)data = status;
}

static void test_auth_message_too_long(void **state) {
  fx_t *fx = *state;
  int end_status = 0;
  fx->opts.verifier[SJ_A] = (sj_verifier_t){NULL, line_on_data, line_on_end, &end_status};
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  static char junk[1 << 20];
  memset(junk, 'j', sizeof junk);
  writer_t w;
  writer_init(&w, a, junk, sizeof junk, 1);
  reader_t r;
  reader_init(&r, a);
  /* The refusal drains what the peer still sends, so the whole MiB goes. */
  WAIT_FOR_FD(&fx->loop, a, POLLIN | POLLOUT, writer_poll(&w) && reader_poll(&r), WAIT_MS);
  assert_true(reader_is(&r, "auth failed: auth message too long\n"));
  reader_free(&r);
  assert_int_equal(end_status, UV_ENOBUFS);
  expect_refused_logged(fx, 'A', local_port(a), "auth failed: auth message too long");
  /* A line within the cap is fine. */
  int a2 = client(fx, port_of(fx, SJ_A));
  send_all(a2, junk, SJ_VERIFY_MAX - 1);
  send_str(a2, "\n");
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  (void)b;
}

/* ======================================================================== */
/* The built-in verifiers, through a side's auth= option                    */
/* ======================================================================== */

/* A secret file of the test's own; returns its path (static storage). */
static const char *secret_file(const char *content) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/sj-test-secret-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
  close(fd);
  return path;
}

/* Reads the 64-hex challenge line and returns the right answer line. */
static void answer_challenge(fx_t *fx, int fd, const char *key, char reply[66]) {
  reader_t r;
  reader_init(&r, fd);
  WAIT_FOR(&fx->loop, reader_has(&r, 65));
  assert_int_equal(r.len, 65);
  assert_int_equal(r.buf[64], '\n');
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), r.buf, 64, mac, &n));
  assert_int_equal(n, 32);
  for (unsigned i = 0; i < n; i++)
    snprintf(reply + 2 * i, 3, "%02x", mac[i]);
  reply[64] = '\n';
  reply[65] = '\0';
  reader_free(&r);
}

static void test_builtin_hmac_checker(void **state) {
  fx_t *fx = *state;
  const char *path = secret_file("k3y\n");
  sj_side_spec_t a = side("listen:127.0.0.1:0,auth=hmac:%s", path), b = side("listen:127.0.0.1:0");
  assert_int_equal(sj_server_to_server(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  unlink(path); /* read when the connector started */

  /* Right: "ok", then the bytes behind the answer are relayed. */
  int good = client(fx, port_of(fx, SJ_A));
  char reply[66];
  answer_challenge(fx, good, "k3y", reply);
  send_str(good, reply);
  send_str(good, "data");
  int fb = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  reader_t r;
  reader_init(&r, good);
  WAIT_FOR(&fx->loop, reader_has(&r, 3));
  assert_true(reader_is(&r, "ok\n"));
  reader_free(&r);
  reader_init(&r, fb);
  WAIT_FOR(&fx->loop, reader_has(&r, 4));
  assert_true(reader_is(&r, "data"));
  reader_free(&r);

  /* Wrong key; an answer line too long (the checker's challenge must not
   * leak: run under ASan). */
  int wrong = client(fx, port_of(fx, SJ_A));
  answer_challenge(fx, wrong, "not the key", reply);
  send_str(wrong, reply);
  expect_all(fx, wrong, "auth failed: wrong answer to the challenge\n");
  int flood = client(fx, port_of(fx, SJ_A));
  answer_challenge(fx, flood, "k3y", reply);
  char junk[SJ_VERIFY_MAX];
  memset(junk, 'f', sizeof junk);
  send_all(flood, junk, sizeof junk);
  expect_all(fx, flood, "auth failed: auth line too long\n");
  /* A peer that leaves mid-challenge. */
  int leaver = client(fx, port_of(fx, SJ_A));
  answer_challenge(fx, leaver, "k3y", reply);
  int refused_before = fx_logged(fx, "refused");
  fx_close_fd(fx, leaver);
  WAIT_FOR(&fx->loop, fx_logged(fx, "refused") == refused_before + 1);
}

/* The token presenter of a connect side, and a bad secret file. */
static void test_builtin_token_presenter(void **state) {
  fx_t *fx = *state;
  test_listener_t tl;
  test_listener_open(fx, &tl);
  const char *path = secret_file("t0ken\r\n");
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:%d,auth=token:%s",
                                                           tl.port, path);
  assert_int_equal(sj_server_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  unlink(path);
  int fa = client(fx, port_of(fx, SJ_A));
  send_str(fa, "after");
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == 1);
  reader_t r;
  reader_init(&r, tl.accepted[0]);
  WAIT_FOR(&fx->loop, reader_has(&r, 11));
  assert_true(reader_is(&r, "t0ken\nafter"));
  reader_free(&r);
  fx_close_connector(fx);

  /* The file is gone now: the connector does not start, and says which
   * file it could not read. */
  fx->close_requested = 0;
  fx->close_calls = fx->done_calls = 0;
  sj_side_t failed = SJ_A;
  int rc = sj_connector_new(&fx->c, &fx->loop, &a, &b, &fx->opts, &failed);
  assert_int_equal(rc, SJ_ECONFIG);
  assert_null(fx->c);
  assert_int_equal(failed, SJ_B);
  char want[128];
  snprintf(want, sizeof want, "secret file %s: No such file or directory", path);
  assert_non_null(strstr(fx->last_error, want));
}

/* ======================================================================== */
/* The connector's close reaps sockets mid-auth                             */
/* ======================================================================== */

static void test_close_while_mid_auth(void **state) {
  fx_t *fx = *state;
  vs_t *vs = use_go(fx);
  vs->async_ms = 3600 * 1000;
  start_server_to_server(fx);
  int silent = client(fx, port_of(fx, SJ_A));
  int partial = client(fx, port_of(fx, SJ_B));
  send_str(partial, "g");
  int undecided = client(fx, port_of(fx, SJ_A));
  send_str(undecided, "go then more");
  WAIT_FOR(&fx->loop, vs->started[SJ_A] == 2 && vs->shown[SJ_B] == 1 && vs->states == 1);
  /* A refused socket whose peer does not leave: it lingers. */
  vs->async_ms = 0;
  int refused = client(fx, port_of(fx, SJ_B));
  send_str(refused, "no");
  reader_t rr;
  reader_init(&rr, refused);
  WAIT_FOR(&fx->loop, reader_has(&rr, strlen(GO_REASON) + 1));
  reader_free(&rr);

  uint64_t t0 = mono_ms();
  fx_close_connector(fx);
  print_message("close took %llu ms\n", (unsigned long long)(mono_ms() - t0));
  assert_int_equal(fx->done_status, SJ_ECLOSED);
  /* The three undecided sockets were ended, their state released. */
  assert_int_equal(vs->ended[SJ_A] + vs->ended[SJ_B], 3);
  assert_int_equal(vs->end_status[SJ_A], UV_ECANCELED);
  WAIT_FOR(&fx->loop, vs->states == 0);
  /* Every peer sees its connection end. */
  int fds[] = {silent, partial, undecided, refused};
  for (int i = 0; i < 4; i++) {
    reader_t r;
    reader_init(&r, fds[i]);
    WAIT_FOR_FD(&fx->loop, fds[i], POLLIN, reader_poll(&r), WAIT_MS);
    assert_false(memmem(r.buf, r.len, "more", 4) != NULL);
    reader_free(&r);
  }
  assert_int_equal(fx->pair_calls, 0);
}

/* ======================================================================== */
/* --persist: standing connections                                          */
/* ======================================================================== */

/* The standing side proves itself by sending "go" (a presenter). */
static void present_go(sj_verify_t *v, void *data) {
  (void)data;
  assert_int_equal(sj_verify_write(v, "go\n", 3), 0);
  sj_verify_accept(v);
}

/* Reads what fd has until it holds n bytes. */
static void expect_bytes(fx_t *fx, int fd, const char *want) {
  reader_t r;
  reader_init(&r, fd);
  WAIT_FOR_FD(&fx->loop, fd, POLLIN, reader_has(&r, strlen(want)), WAIT_MS);
  if (!reader_is(&r, want))
    fail_msg("got %zu bytes '%.*s', expected '%s'", r.len, (int)r.len, r.buf, want);
  reader_free(&r);
}

static void test_persist_dials_when_peer_speaks(void **state) {
  fx_t *fx = *state;
  test_listener_t service, relay;
  test_listener_open(fx, &service);
  test_listener_open(fx, &relay);
  fx->opts.persist = 2;
  fx->opts.verifier[SJ_B] = (sj_verifier_t){present_go, NULL, NULL, NULL};
  sj_side_spec_t a = side("connect:127.0.0.1:%d", service.port);
  sj_side_spec_t b = side("connect:127.0.0.1:%d", relay.port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);

  /* Two connections stand at the relay, each having proved itself. */
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &relay) == 2);
  for (int i = 0; i < 2; i++)
    expect_bytes(fx, relay.accepted[i], "go\n");
  assert_int_equal(test_listener_accept(fx, &service), 0); /* no dial yet */

  for (int session = 0; session < 3; session++) {
    /* The relay's peer speaks on the oldest unused standing connection:
     * the service is dialled for it, and a replacement stands. */
    int r = relay.accepted[session];
    send_str(r, "hi");
    WAIT_FOR(&fx->loop, test_listener_accept(fx, &service) == session + 1 &&
                            test_listener_accept(fx, &relay) == session + 3);
    expect_bytes(fx, relay.accepted[session + 2], "go\n");
    int s = service.accepted[session];
    expect_bytes(fx, s, "hi");
    send_str(s, "yo");
    expect_bytes(fx, r, "yo");
    /* The session ends: both ends see it. */
    assert_int_equal(shutdown(r, SHUT_WR), 0);
    assert_int_equal(shutdown(s, SHUT_WR), 0);
    expect_all(fx, s, "");
    expect_all(fx, r, "");
    WAIT_FOR(&fx->loop, fx->closed_calls == session + 1);
  }
  assert_int_equal(fx->pair_calls, 3);
  assert_int_equal(fx->done_calls, 0);
}

/* The relay drops a standing connection before any peer spoke: it is
 * replaced, and the service is never dialled for it. */
static void test_persist_replaces_dropped_standing(void **state) {
  fx_t *fx = *state;
  test_listener_t service, relay;
  test_listener_open(fx, &service);
  test_listener_open(fx, &relay);
  fx->opts.persist = 1;
  fx->opts.verifier[SJ_B] = (sj_verifier_t){present_go, NULL, NULL, NULL};
  sj_side_spec_t a = side("connect:127.0.0.1:%d", service.port);
  sj_side_spec_t b = side("connect:127.0.0.1:%d", relay.port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &relay) == 1);
  expect_bytes(fx, relay.accepted[0], "go\n");
  fx_close_fd(fx, relay.accepted[0]);
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &relay) == 2);
  expect_bytes(fx, relay.accepted[1], "go\n");
  assert_int_equal(test_listener_accept(fx, &service), 0);
  assert_int_equal(fx->pair_calls, 0);
  assert_int_equal(fx_logged(fx, "the relay closed a standing connection"), 1);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, vteardown)
  const struct CMUnitTest tests[] = {
      T(test_auth_success),
      T(test_auth_failure_then_success),
      T(test_auth_interleaved_fifo),
      T(test_auth_async_accept),
      T(test_auth_async_reject),
      T(test_auth_timeout),
      T(test_auth_peer_leaves),
      T(test_auth_then_eof_before_pairing),
      T(test_verifier_writes_challenge),
      T(test_auth_message_too_long),
      T(test_builtin_hmac_checker),
      T(test_builtin_token_presenter),
      T(test_close_while_mid_auth),
      T(test_persist_dials_when_peer_speaks),
      T(test_persist_replaces_dropped_standing),
  };
#undef T
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
