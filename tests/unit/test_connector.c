/*
 * The connector's socket_connector behaviours, on a caller-owned libuv loop
 * with real loopback sockets, driven by connector_fixture.h.
 */
#include "connector_fixture.h"

#include <sys/stat.h>

/* ======================================================================== */
/* Ports bound, addresses                                                   */
/* ======================================================================== */

static void test_ports_bound(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  assert_ptr_equal(sj_connector_loop(fx->c), &fx->loop);

  char ta[64], tb[64], want[64];
  int pa = sj_connector_address(fx->c, SJ_A, ta, sizeof ta);
  int pb = sj_connector_address(fx->c, SJ_B, tb, sizeof tb);
  assert_true(pa > 0 && pa <= 65535);
  assert_true(pb > 0 && pb <= 65535);
  assert_int_not_equal(pa, pb);
  snprintf(want, sizeof want, "127.0.0.1:%d", pa);
  assert_string_equal(ta, want);
  snprintf(want, sizeof want, "127.0.0.1:%d", pb);
  assert_string_equal(tb, want);

  /* A short buffer still gets the port back, and a terminated prefix. */
  char small[6];
  memset(small, '#', sizeof small);
  assert_int_equal(sj_connector_address(fx->c, SJ_A, small, 4), pa);
  assert_string_equal(small, "127");
  assert_int_equal(small[4], '#');

  /* Both are listening as soon as the call returns, before the loop runs. */
  int fa = client(fx, pa), fb = client(fx, pb);
  (void)fa;
  (void)fb;
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(fx->done_calls, 0);
}

static void test_address_of_connect_side(void **state) {
  fx_t *fx = *state;
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:1");
  assert_int_equal(sj_server_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  char text[64] = "untouched";
  assert_int_equal(sj_connector_address(fx->c, SJ_B, text, sizeof text), UV_EINVAL);
  assert_true(sj_connector_address(fx->c, SJ_A, text, sizeof text) > 0);
  fx_close_connector(fx);

  /* And the mirror image: a connect side A. */
  fx->close_requested = fx->close_calls = fx->done_calls = 0;
  assert_int_equal(sj_socket_to_server(&fx->c, &fx->loop, &b, &a, &fx->opts), 0);
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), UV_EINVAL);
  assert_true(sj_connector_address(fx->c, SJ_B, text, sizeof text) > 0);
}

static void test_address_ipv6(void **state) {
  fx_t *fx = *state;
  sj_side_spec_t a = side("listen:[::1]:0"), b = side("listen:[::1]:0");
  int rc = sj_server_to_server(&fx->c, &fx->loop, &a, &b, &fx->opts);
  if (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
    fx->c = NULL;
    skip();
  }
  assert_int_equal(rc, 0);
  char text[64], want[64];
  int port = sj_connector_address(fx->c, SJ_A, text, sizeof text);
  assert_true(port > 0);
  snprintf(want, sizeof want, "[::1]:%d", port);
  assert_string_equal(text, want);
}

static void test_address_unix(void **state) {
  fx_t *fx = *state;
  char dir[] = "/tmp/sj-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/a.sock", dir);
  sj_side_spec_t a = side("unix-listen:%s", path), b = side("listen:127.0.0.1:0");
  assert_int_equal(sj_server_to_server(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  char text[128];
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), 0);
  assert_string_equal(text, path);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  fx_close_connector(fx);
  /* The socket file is removed when the connector closes. */
  assert_int_not_equal(stat(path, &st), 0);
  assert_int_equal(rmdir(dir), 0);
}

/* ======================================================================== */
/* Modes                                                                    */
/* ======================================================================== */

static void test_factories_reject_wrong_kinds(void **state) {
  fx_t *fx = *state;
  /* None of these specs is ever opened: each call is refused first. */
  const sj_side_spec_t kinds[] = {
      side("listen:127.0.0.1:0"),
      side("unix-listen:/nonexistent/sj/a.sock"),
      side("connect:127.0.0.1:1"),
      side("unix:/nonexistent/sj/b.sock"),
      side("stdio"),
  };
  const int listens[] = {1, 1, 0, 0, 0};
  typedef int (*factory_t)(sj_connector_t **, uv_loop_t *, const sj_side_spec_t *,
                           const sj_side_spec_t *, const sj_options_t *);
  const struct {
    factory_t fn;
    int a_listens, b_listens;
    const char *name;
  } factories[] = {
      {sj_server_to_server, 1, 1, "server_to_server"},
      {sj_server_to_socket, 1, 0, "server_to_socket"},
      {sj_socket_to_server, 0, 1, "socket_to_server"},
      {sj_socket_to_socket, 0, 0, "socket_to_socket"},
  };
  int refused = 0;
  for (size_t f = 0; f < 4; f++)
    for (size_t i = 0; i < 5; i++)
      for (size_t j = 0; j < 5; j++) {
        if (listens[i] == factories[f].a_listens && listens[j] == factories[f].b_listens)
          continue; /* the right kinds: would really open */
        sj_connector_t *c = NULL;
        int rc = factories[f].fn(&c, &fx->loop, &kinds[i], &kinds[j], &fx->opts);
        if (rc != SJ_EMODE)
          fail_msg("%s(%zu, %zu) returned %d, expected SJ_EMODE", factories[f].name, i, j, rc);
        assert_null(c);
        refused++;
      }
  /* 4 factories x 25 pairs of kinds, less the 2x2, 2x3, 3x2 and 3x3
   * pairs each accepts. */
  assert_int_equal(refused, 4 * 25 - (4 + 6 + 6 + 9));
  /* stdio on both sides is no mode, through every door. */
  sj_connector_t *c = NULL;
  assert_int_equal(sj_socket_to_socket(&c, &fx->loop, &kinds[4], &kinds[4], &fx->opts), SJ_EMODE);
  assert_int_equal(sj_connector_new(&c, &fx->loop, &kinds[4], &kinds[4], &fx->opts, NULL),
                   SJ_EMODE);
  assert_int_equal(sj_connector_new(&c, NULL, &kinds[4], &kinds[4], NULL, NULL), SJ_EMODE);
  assert_null(c);
  /* Nothing was opened on the loop, and no callback ran. */
  assert_false(uv_loop_alive(&fx->loop));
  assert_int_equal(fx->done_calls + fx->pair_calls + fx->errors, 0);
}

static void test_new_fails_cleanly(void **state) {
  fx_t *fx = *state;
  /* B's port is taken: A was opened first and must be closed again. */
  test_listener_t busy;
  test_listener_open(fx, &busy);
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("listen:127.0.0.1:%d", busy.port);
  sj_connector_t *c = (sj_connector_t *)&busy; /* anything but NULL */
  sj_side_t failed = SJ_A;
  int rc = sj_connector_new(&c, &fx->loop, &a, &b, &fx->opts, &failed);
  assert_int_equal(rc, UV_EADDRINUSE);
  assert_int_equal(failed, SJ_B);
  assert_null(c);
  assert_int_equal(fx->pair_calls, 0);
  /* "Nothing left open": the loop ends by itself (fx_close_loop in the
   * teardown checks that uv_loop_close() succeeds). */
  WAIT_FOR(&fx->loop, !uv_loop_alive(&fx->loop));

  /* The same on side A. */
  c = NULL;
  failed = SJ_B;
  rc = sj_connector_new(&c, &fx->loop, &b, &a, &fx->opts, &failed);
  assert_int_equal(rc, UV_EADDRINUSE);
  assert_int_equal(failed, SJ_A);
  assert_null(c);
  WAIT_FOR(&fx->loop, !uv_loop_alive(&fx->loop));
}

/* ======================================================================== */
/* The grace timeout                                                        */
/* ======================================================================== */

static void test_timeout_passed_no_pair(void **state) {
  fx_t *fx = *state;
  fx->opts.timeout_s = 0.2;
  uv_update_time(&fx->loop);
  uint64_t start = mono_ms();
  start_server_to_server(fx);
  int pa = port_of(fx, SJ_A);
  port_of(fx, SJ_B);

  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_true(fx->done_at_ms - start >= 190);
  assert_int_equal(fx->pair_calls, 0);

  /* Listening has stopped. */
  char text[64];
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), SJ_ECLOSED);
  assert_int_equal(sj_connector_address(fx->c, SJ_B, text, sizeof text), SJ_ECLOSED);
  int fd = try_connect_bufs(pa, 0, 0);
  if (fd >= 0)
    close(fd);
  assert_int_equal(fd, -1);
  assert_int_equal(errno, ECONNREFUSED);

  /* Injecting a socket into a finished connector is refused, and the
   * descriptor is closed all the same. */
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  fx_fd(fx, sv[1]);
  assert_int_equal(sj_connector_add_fd(fx->c, SJ_A, sv[0]), SJ_ECLOSED);
  assert_int_equal(fcntl(sv[0], F_GETFD), -1);
  assert_int_equal(errno, EBADF);

  /* on_done ran once; closing does not run it again. */
  fx_close_connector(fx);
  assert_int_equal(fx->done_calls, 1);
  assert_int_equal(fx->done_status, 0);
}

/* The grace period ends a connector with a waiting, unpaired socket too. */
static void test_timeout_passed_with_waiting_socket(void **state) {
  fx_t *fx = *state;
  fx->opts.timeout_s = 0.2;
  fx->close_in_done = 1; /* close from inside on_done, like the CLI */
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  send_all(a, "early", 5);
  WAIT_FOR(&fx->loop, fx_logged(fx, "A accepted ") == 1);
  reader_t ra;
  reader_init(&ra, a);
  WAIT_FOR_FD(&fx->loop, a, POLLIN, fx->close_calls == 1 && reader_poll(&ra), WAIT_MS);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->pair_calls, 0);
  assert_int_equal(ra.len, 0);
  reader_free(&ra);
}

static void test_timeout_not_passed_pair_keeps_alive(void **state) {
  fx_t *fx = *state;
  fx->opts.timeout_s = 0.2;
  start_server_to_server(fx);
  /* A timer started after the connector's, for longer: when it fires, the
   * grace period has certainly passed. */
  test_timer_t *t = &fx->timer;
  assert_int_equal(uv_timer_init(&fx->loop, &t->handle), 0);
  t->used = 1;
  t->handle.data = t;
  assert_int_equal(uv_timer_start(&t->handle, on_test_timer, 400, 0), 0);

  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_false(t->fired);

  WAIT_FOR(&fx->loop, t->fired);
  assert_int_equal(fx->done_calls, 0);
  uv_close((uv_handle_t *)&t->handle, on_test_timer_closed);
  WAIT_FOR(&fx->loop, t->closed);
  assert_int_equal(fx->done_calls, 0);

  /* The pair still relays both ways after the grace period. */
  send_all(a, "ping", 4);
  send_all(b, "pong!", 5);
  reader_t ra, rb;
  reader_init(&ra, a);
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, (reader_poll(&ra), reader_poll(&rb), ra.len == 5 && rb.len == 4));
  assert_memory_equal(rb.buf, "ping", 4);
  assert_memory_equal(ra.buf, "pong!", 5);
  assert_int_equal(fx->done_calls, 0);

  /* Both ends finish: the pair closes, and then the connector is done. */
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, both_ended(&ra, &rb));
  assert_true(ra.eof && rb.eof);
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->closed_calls, 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 4);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 5);
  char text[64];
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), SJ_ECLOSED);
  reader_free(&ra);
  reader_free(&rb);
}

/* ======================================================================== */
/* FIFO pairing                                                             */
/* ======================================================================== */

#define NFIFO 20

typedef enum { ORDER_INTERLEAVED, ORDER_A_FIRST, ORDER_B_FIRST } order_t;

static void check_fifo(fx_t *fx, order_t order) {
  start_server_to_server(fx);
  int pa = port_of(fx, SJ_A), pb = port_of(fx, SJ_B);
  int a[NFIFO], b[NFIFO];

  if (order == ORDER_INTERLEAVED) {
    /* A0 B0 A1 B1 ...: each pair forms before the next socket arrives. */
    for (int i = 0; i < NFIFO; i++) {
      a[i] = client(fx, pa);
      send_u32(a[i], (uint32_t)i);
      WAIT_FOR(&fx->loop, fx_logged(fx, "A accepted ") == i + 1);
      b[i] = client(fx, pb);
      WAIT_FOR(&fx->loop, fx->pair_calls == i + 1);
    }
  } else {
    /* All of one side have reached the connector before the first of the
     * other side connects. */
    int first = order == ORDER_A_FIRST ? SJ_A : SJ_B;
    for (int pass = 0; pass < 2; pass++) {
      int s = pass == 0 ? first : !first;
      for (int i = 0; i < NFIFO; i++) {
        if (s == SJ_A) {
          a[i] = client(fx, pa);
          send_u32(a[i], (uint32_t)i);
        } else {
          b[i] = client(fx, pb);
        }
      }
      WAIT_FOR(&fx->loop, fx_logged(fx, s == SJ_A ? "A accepted " : "B accepted ") == NFIFO);
      if (pass == 0)
        assert_int_equal(fx->pair_calls, 0);
    }
    WAIT_FOR(&fx->loop, fx->pair_calls == NFIFO);
  }

  /* Pair k joins the k-th A with the k-th B, and ids count up from 1. */
  assert_int_equal(fx->pair_calls, NFIFO);
  for (int k = 0; k < NFIFO; k++) {
    assert_int_equal(fx->pairs[k].id, (uint64_t)k + 1);
    assert_string_equal(fx->pairs[k].a.host, "127.0.0.1");
    assert_string_equal(fx->pairs[k].b.host, "127.0.0.1");
    assert_int_equal(fx->pairs[k].a.port, local_port(a[k]));
    assert_int_equal(fx->pairs[k].b.port, local_port(b[k]));
    assert_int_equal(fx->pairs[k].bytes_a_to_b, 0);
    assert_int_equal(fx->pairs[k].status, 0);
  }

  /* Each B receives the index its A sent, and nothing else. */
  reader_t r[NFIFO];
  for (int k = 0; k < NFIFO; k++)
    reader_init(&r[k], b[k]);
  for (int k = 0; k < NFIFO; k++) {
    WAIT_FOR(&fx->loop, reader_has(&r[k], 4));
    assert_int_equal(r[k].len, 4);
    assert_int_equal(get_u32(r[k].buf), (uint32_t)k);
    reader_free(&r[k]);
  }
  assert_int_equal(fx->done_calls, 0);
  sj_stats_t st;
  stats_of(fx, &st);
  assert_int_equal(st.pairs, NFIFO);
  assert_int_equal(st.active_pairs, NFIFO);
  assert_int_equal(st.bytes_a_to_b, 4 * NFIFO);
}

static void test_fifo_interleaved(void **state) { check_fifo(*state, ORDER_INTERLEAVED); }
static void test_fifo_all_a_then_all_b(void **state) { check_fifo(*state, ORDER_A_FIRST); }
static void test_fifo_all_b_then_all_a(void **state) { check_fifo(*state, ORDER_B_FIRST); }

/* ======================================================================== */
/* Stopping with data in flight                                             */
/* ======================================================================== */

#define BIG (4u << 20)

/* Pairs A (a client of side A) with a B whose connector-side socket has a
 * small, fixed send buffer: it is a connection the test makes itself and
 * hands in with sj_connector_add_fd(). The kernel then holds little of what
 * goes to B, and the connector must hold the rest. Returns the test's end
 * of B; *a is the client of side A. */
static int pair_with_small_b(fx_t *fx, int *a) {
  test_listener_t tl;
  test_listener_open(fx, &tl);
  int b = fx_fd(fx, try_connect_bufs(tl.port, 16384, 0));
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == 1);
  int inj = tl.accepted[0], sndbuf = 16384;
  assert_int_equal(setsockopt(inj, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  fx_forget_fd(fx, inj);
  assert_int_equal(sj_connector_add_fd(fx->c, SJ_B, inj), 0);
  *a = client(fx, port_of(fx, SJ_A));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  return b;
}

/* Writes BIG bytes into a until the connector has read them all (its mark
 * is above BIG, so it reads everything while B reads nothing). Returns the
 * bytes; *in_flight is what the connector had not yet written to B. */
static unsigned char *fill_a(fx_t *fx, int a, uint64_t *in_flight) {
  unsigned char *data = malloc(BIG);
  assert_non_null(data);
  for (size_t i = 0; i < BIG; i++)
    data[i] = pattern(i);
  writer_t w;
  writer_init(&w, a, data, BIG, 0);
  WAIT_FOR_FD(&fx->loop, a, POLLOUT, writer_poll(&w) && read_a(fx) == BIG, WAIT_MS);
  sj_stats_t st;
  stats_of(fx, &st);
  assert_int_equal(st.bytes_read_a, BIG);
  assert_true(st.bytes_a_to_b <= BIG);
  *in_flight = BIG - st.bytes_a_to_b;
  return data;
}

/* Stops with BIG bytes read from A and B not read yet; then B reads, 64 KiB
 * per loop turn, and must get every byte and then its end. */
static void stop_and_drain(fx_t *fx, int a, int b, unsigned char *data) {
  sj_connector_stop(fx->c, 2000);
  assert_int_equal(fx->done_calls, 0); /* never inside the call */
  char text[64];
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), SJ_ECLOSED);

  reader_t rb, ra;
  reader_init(&rb, b);
  reader_init(&ra, a);
  rb.max_per_poll = 65536;
  WAIT_FOR_FD(&fx->loop, b, POLLIN, both_ended(&ra, &rb), WAIT_MS);
  assert_int_equal(rb.err, 0);
  assert_true(rb.eof);
  assert_int_equal(rb.len, BIG);
  assert_memory_equal(rb.buf, data, BIG);
  /* B sent nothing, and the B -> A direction was ended too. */
  assert_true(ra.eof);
  assert_int_equal(ra.err, 0);
  assert_int_equal(ra.len, 0);

  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->closed_calls, 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, BIG);
  assert_int_equal(fx->closed[0].bytes_a_to_b, BIG);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 0);
  reader_free(&ra);
  reader_free(&rb);
}

static void test_stop_delivers_data_in_flight(void **state) {
  fx_t *fx = *state;
  /* A mark above the transfer: the connector reads all of A at once and
   * holds what B does not take, so every byte has been read when stop is
   * called, and what it holds must still reach B. */
  fx->opts.buffer_size = 2 * BIG;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = fx_fd(fx, try_connect_bufs(port_of(fx, SJ_B), 16384, 0)); /* B reads later */
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  uint64_t in_flight;
  unsigned char *data = fill_a(fx, a, &in_flight);
  /* How much of it the kernel took on the way to B depends on its TCP
   * buffer tuning; the next test pins that down. */
  stop_and_drain(fx, a, b, data);
  free(data);
}

static void test_stop_delivers_data_held_by_connector(void **state) {
  fx_t *fx = *state;
  fx->opts.buffer_size = 2 * BIG;
  start_server_to_server(fx);
  int a;
  int b = pair_with_small_b(fx, &a);
  uint64_t in_flight;
  unsigned char *data = fill_a(fx, a, &in_flight);
  /* Nearly all of it is in the connector when it is told to stop. */
  assert_true(in_flight >= BIG - (1u << 20));
  stop_and_drain(fx, a, b, data);
  free(data);
}

static void test_stop_drain_deadline(void **state) {
  fx_t *fx = *state;
  fx->opts.buffer_size = 2 * BIG;
  start_server_to_server(fx);
  int a;
  int b = pair_with_small_b(fx, &a);
  uint64_t in_flight;
  unsigned char *data = fill_a(fx, a, &in_flight);
  assert_true(in_flight >= BIG - (1u << 20));
  /* B does not read: the drain cannot finish, and the deadline ends it. */
  uv_update_time(&fx->loop);
  uint64_t start = mono_ms();
  sj_connector_stop(fx->c, 100);
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_true(fx->done_at_ms - start >= 95);
  assert_int_equal(fx->closed_calls, 1);
  assert_true(fx->closed[0].bytes_a_to_b < BIG);
  /* The pair that could not finish says so, and its peers are reset. */
  assert_int_equal(fx->closed[0].status, UV_ETIMEDOUT);
  /* B gets a part, then its stream ends. */
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR_FD(&fx->loop, b, POLLIN, reader_poll(&rb), WAIT_MS);
  assert_true(rb.len < BIG);
  assert_memory_equal(rb.buf, data, rb.len);
  reader_free(&rb);
  free(data);
}

static void test_stop_without_pairs(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)); /* waits for a partner */
  WAIT_FOR(&fx->loop, fx_logged(fx, "A accepted ") == 1);
  sj_connector_stop(fx->c, 2000);
  assert_int_equal(fx->done_calls, 0);
  sj_connector_stop(fx->c, 2000); /* a second stop is harmless */
  reader_t ra;
  reader_init(&ra, a);
  WAIT_FOR(&fx->loop, fx->done_calls == 1 && reader_poll(&ra));
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->pair_calls, 0);
  reader_free(&ra);
}

/* ======================================================================== */
/* Closing                                                                  */
/* ======================================================================== */

static void test_close_runs_done_with_closed(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  fx->close_requested = 1;
  sj_connector_close(fx->c, on_close);
  /* on_done ran at once, with SJ_ECLOSED; the open pair is reported closed. */
  assert_int_equal(fx->done_calls, 1);
  assert_int_equal(fx->done_status, SJ_ECLOSED);
  sj_connector_close(fx->c, on_close); /* ignored: close is once */
  WAIT_FOR(&fx->loop, fx->close_calls == 1);
  assert_int_equal(fx->closed_calls, 1);
  assert_int_equal(fx->closed[0].status, SJ_ECLOSED);
  fx->c = NULL;
  reader_t ra, rb;
  reader_init(&ra, a);
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, both_ended(&ra, &rb));
  reader_free(&ra);
  reader_free(&rb);
}

static void close_on_pair(sj_connector_t *c, const sj_pair_info_t *info, void *data) {
  fx_t *fx = data;
  on_pair(c, info, data);
  fx->close_requested = 1;
  sj_connector_close(c, on_close);
}

static void test_close_from_on_pair(void **state) {
  fx_t *fx = *state;
  fx->opts.on_pair = close_on_pair;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  send_all(a, "x", 1);
  WAIT_FOR(&fx->loop, fx->close_calls == 1);
  assert_int_equal(fx->pair_calls, 1);
  assert_int_equal(fx->done_calls, 1);
  assert_int_equal(fx->done_status, SJ_ECLOSED);
  assert_int_equal(fx->closed_calls, 1);
  fx->c = NULL;
  reader_t ra, rb;
  reader_init(&ra, a);
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, both_ended(&ra, &rb));
  reader_free(&ra);
  reader_free(&rb);
}

/* ======================================================================== */
/* sj_connector_add_fd                                                      */
/* ======================================================================== */

static void test_add_fd_socketpair(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  int mine = fx_fd(fx, sv[1]);
  assert_int_equal(sj_connector_add_fd(fx->c, SJ_A, sv[0]), 0);
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_string_equal(fx->pairs[0].a.host, "unix:");
  assert_int_equal(fx->pairs[0].a.port, -1);
  assert_string_equal(fx->pairs[0].b.host, "127.0.0.1");
  assert_int_equal(fx->pairs[0].b.port, local_port(b));

  send_all(mine, "hello", 5);
  send_all(b, "world!", 6);
  reader_t rm, rb;
  reader_init(&rm, mine);
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, (reader_poll(&rm), reader_poll(&rb), rm.len == 6 && rb.len == 5));
  assert_memory_equal(rb.buf, "hello", 5);
  assert_memory_equal(rm.buf, "world!", 6);

  assert_int_equal(shutdown(mine, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 5);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 6);
  WAIT_FOR(&fx->loop, both_ended(&rm, &rb));
  assert_true(rm.eof && rb.eof);
  reader_free(&rm);
  reader_free(&rb);
}

static void test_add_fd_tcp(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  /* A connection the test makes itself; its accepted end goes in as A. */
  test_listener_t tl;
  test_listener_open(fx, &tl);
  int mine = client(fx, tl.port);
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == 1);
  int injected = tl.accepted[0];
  fx_forget_fd(fx, injected); /* the connector owns it from now on */
  assert_int_equal(sj_connector_add_fd(fx->c, SJ_A, injected), 0);

  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_string_equal(fx->pairs[0].a.host, "127.0.0.1");
  assert_int_equal(fx->pairs[0].a.port, local_port(mine));

  send_all(mine, "over tcp", 8);
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, (reader_poll(&rb), rb.len == 8));
  assert_memory_equal(rb.buf, "over tcp", 8);
  reader_free(&rb);
}

static void test_add_fd_bad_descriptor(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  /* Not a stream the connector can use: refused, and closed all the same. */
  int rc = sj_connector_add_fd(fx->c, SJ_A, fd);
  assert_true(rc < 0);
  assert_int_equal(fcntl(fd, F_GETFD), -1);
  assert_int_equal(errno, EBADF);
  assert_int_equal(fx->pair_calls, 0);
}

static void test_half_close(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  reader_t ra, rb;
  reader_init(&ra, a);
  reader_init(&rb, b);
  /* A ends its direction: B sees the end, and the pair stays open... */
  send_all(a, "request", 7);
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, reader_poll(&rb));
  assert_true(rb.eof);
  assert_int_equal(rb.len, 7);
  assert_int_equal(fx->closed_calls, 0);
  /* ...so that B can still answer. */
  send_all(b, "response", 8);
  WAIT_FOR(&fx->loop, (reader_poll(&ra), ra.len == 8));
  assert_memory_equal(ra.buf, "response", 8);
  assert_false(ra.eof);
  assert_int_equal(fx->closed_calls, 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, reader_poll(&ra) && fx->closed_calls == 1);
  assert_true(ra.eof);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 7);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 8);
  assert_int_equal(fx->done_calls, 0); /* listening goes on */
  reader_free(&ra);
  reader_free(&rb);
}

typedef struct {
  int n;
  char text[4][512];
} traffic_log_t;

static traffic_log_t traffic_log;

static void on_traffic_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  on_log(c, level, msg, data);
  if (level == SJ_LOG_TRAFFIC && traffic_log.n < 4)
    snprintf(traffic_log.text[traffic_log.n++], sizeof traffic_log.text[0], "%s", msg);
}

static void check_traffic_log(fx_t *fx, sj_traffic_mode_t mode) {
  memset(&traffic_log, 0, sizeof traffic_log);
  fx->opts.log_traffic = mode;
  fx->opts.log_cb = on_traffic_log;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  reader_t ra, rb;
  reader_init(&ra, a);
  reader_init(&rb, b);
  send_all(a, "hello world\n", 12);
  WAIT_FOR(&fx->loop, (reader_poll(&rb), rb.len == 12) && traffic_log.n == 1);
  send_all(b, "ok\x01", 3);
  WAIT_FOR(&fx->loop, (reader_poll(&ra), ra.len == 3) && traffic_log.n == 2);
  /* Each chunk is logged as sj_traffic_format() shows it. */
  char want[512];
  sj_traffic_format(mode, SJ_A, 1, "hello world\n", 12, want, sizeof want);
  assert_string_equal(traffic_log.text[0], want);
  sj_traffic_format(mode, SJ_B, 1, "ok\x01", 3, want, sizeof want);
  assert_string_equal(traffic_log.text[1], want);
  reader_free(&ra);
  reader_free(&rb);
}

static void test_traffic_log_ascii(void **state) {
  check_traffic_log(*state, SJ_TRAFFIC_ASCII);
  assert_string_equal(traffic_log.text[0], "A -> B (pair 1, 12 bytes): hello world.");
  assert_string_equal(traffic_log.text[1], "B -> A (pair 1, 3 bytes): ok.");
}

static void test_traffic_log_hex(void **state) {
  check_traffic_log(*state, SJ_TRAFFIC_HEX);
  assert_string_equal(traffic_log.text[0],
                      "A -> B (pair 1, 12 bytes):\n"
                      "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |hello world.|");
}

static void test_traffic_log_off(void **state) {
  fx_t *fx = *state;
  memset(&traffic_log, 0, sizeof traffic_log);
  fx->opts.log_cb = on_traffic_log;
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  int b = client(fx, port_of(fx, SJ_B));
  send_all(a, "quiet", 5);
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, (reader_poll(&rb), rb.len == 5));
  assert_int_equal(traffic_log.n, 0);
  reader_free(&rb);
}

/* The connector's own loop, for callers that do not share one. */
static void test_own_loop(void **state) {
  fx_t *fx = *state;
  sj_options_t o;
  sj_options_init(&o);
  o.timeout_s = 0.05;
  o.on_done = on_done;
  o.on_pair = on_pair;
  o.data = fx;
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("listen:127.0.0.1:0");
  sj_connector_t *c;
  assert_int_equal(sj_connector_new(&c, NULL, &a, &b, &o, NULL), 0);
  uv_loop_t *own = sj_connector_loop(c);
  assert_non_null(own);
  assert_ptr_not_equal(own, &fx->loop);
  assert_int_equal(sj_connector_run(c), 0); /* ran until done, and freed */
  assert_int_equal(fx->done_calls, 1);
  assert_int_equal(fx->done_status, 0);

  /* A failure to open on an own loop leaves nothing behind either (the
   * sanitizer build checks for leaks). */
  test_listener_t busy;
  test_listener_open(fx, &busy);
  sj_side_spec_t taken = side("listen:127.0.0.1:%d", busy.port);
  o.on_done = NULL;
  c = NULL;
  assert_int_equal(sj_connector_new(&c, NULL, &a, &taken, &o, NULL), UV_EADDRINUSE);
  assert_null(c);

  /* sj_connector_run() is only for a connector's own loop. */
  fx->done_calls = 0;
  start_server_to_server(fx);
  assert_int_equal(sj_connector_run(fx->c), UV_EINVAL);
}

/* ======================================================================== */
/* Stats                                                                    */
/* ======================================================================== */

/* Sends na bytes from fa and nb from fb, ends both, and reads both to the
 * end: each must receive exactly what the other sent. */
static void exchange(fx_t *fx, int fa, size_t na, int fb, size_t nb) {
  unsigned char *buf = malloc(na > nb ? na : nb);
  assert_non_null(buf);
  for (size_t i = 0; i < (na > nb ? na : nb); i++)
    buf[i] = pattern(i);
  writer_t wa, wb;
  writer_init(&wa, fa, buf, na, 1);
  writer_init(&wb, fb, buf, nb, 1);
  reader_t ra, rb;
  reader_init(&ra, fa);
  reader_init(&rb, fb);
  WAIT_FOR(&fx->loop, (writer_poll(&wa) & writer_poll(&wb)) && both_ended(&ra, &rb));
  assert_int_equal(ra.err, 0);
  assert_int_equal(rb.err, 0);
  assert_int_equal(rb.len, na);
  assert_int_equal(ra.len, nb);
  if (na > 0)
    assert_memory_equal(rb.buf, buf, na);
  if (nb > 0)
    assert_memory_equal(ra.buf, buf, nb);
  reader_free(&ra);
  reader_free(&rb);
  free(buf);
}

/* A connector on another loop (another thread, in the CLI) accepts from the
 * first one's listening sockets: with only its loop running, it takes the
 * connections made to the first one's ports, and the first one keeps
 * listening after it has gone. */
static void test_share_listener(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  void *other_state;
  assert_int_equal(setup(&other_state), 0);
  fx_t *other = other_state;
  other->opts.share_listener = fx->c;
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("listen:127.0.0.1:0");
  assert_int_equal(sj_connector_new(&other->c, &other->loop, &a, &b, &other->opts, NULL), 0);
  assert_int_equal(port_of(other, SJ_A), port_of(fx, SJ_A));
  assert_int_equal(port_of(other, SJ_B), port_of(fx, SJ_B));

  int ca = client(other, port_of(fx, SJ_A)), cb = client(other, port_of(fx, SJ_B));
  WAIT_FOR(&other->loop, other->pair_calls == 1);
  exchange(other, ca, 100000, cb, 5000);
  assert_int_equal(fx->pair_calls, 0);
  teardown(&other_state);

  ca = client(fx, port_of(fx, SJ_A));
  cb = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  exchange(fx, ca, 5000, cb, 100000);
}

/* Sharing needs the other connector's TCP listening socket on every
 * listening side, and at least one such side. */
static void test_share_listener_needs_one_per_side(void **state) {
  fx_t *fx = *state;
  int closed;
  closed_port(fx, &closed);
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:%d", closed);
  assert_int_equal(sj_connector_new(&fx->c, &fx->loop, &a, &b, &fx->opts, NULL), 0);
  sj_options_t o = fx->opts;
  o.share_listener = fx->c;
  sj_side_spec_t both = side("listen:127.0.0.1:0");
  sj_connector_t *c = NULL;
  sj_side_t failed = SJ_A;
  assert_int_equal(sj_connector_new(&c, &fx->loop, &both, &both, &o, &failed), UV_EINVAL);
  assert_null(c);
  assert_int_equal(failed, SJ_B);

  /* A socket file is not shared, and neither is a port with a side that
   * does not listen on TCP. */
  char path[64];
  snprintf(path, sizeof path, "/tmp/sj-share-%d.sock", (int)getpid());
  sj_side_spec_t file = side("unix-listen:%s", path);
  failed = SJ_B;
  assert_int_equal(sj_connector_new(&c, &fx->loop, &file, &both, &o, &failed), UV_EINVAL);
  assert_null(c);
  assert_int_equal(failed, SJ_A);
  assert_int_equal(access(path, F_OK), -1); /* nothing was bound */

  /* Nothing listens here at all: nothing to share with. */
  sj_side_spec_t out = side("connect:127.0.0.1:%d", closed);
  assert_int_equal(sj_connector_new(&c, &fx->loop, &out, &b, &o, NULL), UV_EINVAL);
  assert_null(c);
}

static void test_stats(void **state) {
  fx_t *fx = *state;
  start_server_to_server(fx);
  int pa = port_of(fx, SJ_A), pb = port_of(fx, SJ_B);
  sj_stats_t st;
  stats_of(fx, &st);
  assert_int_equal(st.pairs, 0);
  assert_int_equal(st.n_sockets_a, 0);

  int64_t t0 = wall_ms();
  int a1 = client(fx, pa), b1 = client(fx, pb);
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  /* While open, the pair's bytes count already. */
  send_all(a1, "0123456789", 10);
  reader_t rb1;
  reader_init(&rb1, b1);
  WAIT_FOR(&fx->loop, (reader_poll(&rb1), rb1.len == 10));
  reader_free(&rb1);
  stats_of(fx, &st);
  assert_int_equal(st.pairs, 1);
  assert_int_equal(st.active_pairs, 1);
  assert_int_equal(st.bytes_read_a, 10);
  assert_int_equal(st.bytes_a_to_b, 10);
  exchange(fx, a1, 990, b1, 300);
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);

  int a2 = client(fx, pa), b2 = client(fx, pb);
  WAIT_FOR(&fx->loop, fx->pair_calls == 2);
  exchange(fx, a2, 5, b2, 70000);
  WAIT_FOR(&fx->loop, fx->closed_calls == 2);
  int64_t t1 = wall_ms();

  stats_of(fx, &st);
  assert_int_equal(st.pairs, 2);
  assert_int_equal(st.active_pairs, 0);
  assert_int_equal(st.bytes_read_a, 1005);
  assert_int_equal(st.bytes_a_to_b, 1005);
  assert_int_equal(st.bytes_read_b, 70300);
  assert_int_equal(st.bytes_b_to_a, 70300);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 1000);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 300);
  assert_int_equal(fx->closed[1].bytes_a_to_b, 5);
  assert_int_equal(fx->closed[1].bytes_b_to_a, 70000);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[1].status, 0);

  /* The paired sockets, in pairing order, with the clients' own ports. */
  assert_int_equal(st.n_sockets_a, 2);
  assert_int_equal(st.n_sockets_b, 2);
  assert_int_equal(st.sockets_a_dropped, 0);
  assert_int_equal(st.sockets_b_dropped, 0);
  const int ports_a[] = {local_port(a1), local_port(a2)};
  const int ports_b[] = {local_port(b1), local_port(b2)};
  for (int i = 0; i < 2; i++) {
    assert_string_equal(st.sockets_a[i].host, "127.0.0.1");
    assert_int_equal(st.sockets_a[i].port, ports_a[i]);
    assert_string_equal(st.sockets_b[i].host, "127.0.0.1");
    assert_int_equal(st.sockets_b[i].port, ports_b[i]);
    assert_in_range(st.sockets_a[i].timestamp_ms, t0, t1);
    assert_in_range(st.sockets_b[i].timestamp_ms, t0, t1);
  }
  assert_true(st.sockets_a[0].timestamp_ms <= st.sockets_a[1].timestamp_ms);

  /* And as JSON. */
  char json[2048], want[256];
  int n = sj_stats_json(&st, json, sizeof json);
  assert_true(n > 0 && (size_t)n < sizeof json);
  snprintf(want, sizeof want,
           "{\"pairs\":2,\"bytes_a_to_b\":1005,\"bytes_b_to_a\":70300,"
           "\"sockets_a\":{\"127.0.0.1\":[{\"port\":%d,",
           ports_a[0]);
  assert_int_equal(strncmp(json, want, strlen(want)), 0);
  snprintf(want, sizeof want, "},{\"port\":%d,", ports_a[1]);
  assert_non_null(strstr(json, want));
  snprintf(want, sizeof want, "\"sockets_b\":{\"127.0.0.1\":[{\"port\":%d,", ports_b[0]);
  assert_non_null(strstr(json, want));
}

/* ======================================================================== */
/* Connecting sides                                                         */
/* ======================================================================== */

static void test_socket_to_socket_refused(void **state) {
  fx_t *fx = *state;
  int port;
  closed_port(fx, &port);
  sj_side_spec_t a = side("connect:127.0.0.1:%d", port), b = side("connect:127.0.0.1:%d", port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_true(fx->done_status < 0);
  assert_int_equal(fx->done_status, UV_ECONNREFUSED);
  assert_int_equal(fx->pair_calls, 0);
  char want[128];
  snprintf(want, sizeof want, "A connect to 127.0.0.1:%d failed: connection refused", port);
  if (strcmp(fx->last_error, want) != 0) {
    snprintf(want, sizeof want, "B connect to 127.0.0.1:%d failed: connection refused", port);
    assert_string_equal(fx->last_error, want);
  }
}

static void test_socket_to_socket_one_side_refused(void **state) {
  fx_t *fx = *state;
  int port;
  closed_port(fx, &port);
  test_listener_t tl;
  test_listener_open(fx, &tl);
  sj_side_spec_t a = side("connect:127.0.0.1:%d", tl.port);
  sj_side_spec_t b = side("connect:127.0.0.1:%d", port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, UV_ECONNREFUSED);
  assert_int_equal(fx->pair_calls, 0);
  /* A's connection, made or not, does not outlive the failure. */
  fx_close_connector(fx);
  if (test_listener_accept(fx, &tl) == 1) {
    reader_t r;
    reader_init(&r, tl.accepted[0]);
    WAIT_FOR(&fx->loop, reader_poll(&r));
    assert_int_equal(r.len, 0);
    reader_free(&r);
  }
}

static void test_socket_to_socket_pairs_once(void **state) {
  fx_t *fx = *state;
  test_listener_t ta, tb;
  test_listener_open(fx, &ta);
  test_listener_open(fx, &tb);
  sj_side_spec_t a = side("connect:127.0.0.1:%d", ta.port);
  sj_side_spec_t b = side("connect:127.0.0.1:%d", tb.port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &ta) == 1 && test_listener_accept(fx, &tb) == 1 &&
                          fx->pair_calls == 1);
  assert_int_equal(fx->pairs[0].a.port, ta.port);
  assert_int_equal(fx->pairs[0].b.port, tb.port);
  exchange(fx, ta.accepted[0], 1234, tb.accepted[0], 4321);
  /* Its one pair has ended: so has the connector. */
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->closed_calls, 1);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 1234);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 4321);
}

/* A loopback port whose connects hang: a listener with a full accept queue
 * (Linux drops further SYNs instead of refusing them, unless
 * net.ipv4.tcp_abort_on_overflow is set). Returns 0 to skip. */
static int hanging_port(fx_t *fx, int *port) {
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_abort_on_overflow", "r");
  int abort_on_overflow = 0;
  if (f != NULL) {
    if (fscanf(f, "%d", &abort_on_overflow) != 1)
      abort_on_overflow = 0;
    fclose(f);
  }
  if (abort_on_overflow)
    return 0;
  int lfd = fx_fd(fx, tcp_socket());
  struct sockaddr_in sin = loopback(0);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
  assert_int_equal(listen(lfd, 0), 0);
  *port = local_port(lfd);
  for (int i = 0; i < 2; i++) { /* fill the queue; never accepted */
    int fd = fx_fd(fx, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sin = loopback(*port);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
      assert_int_equal(errno, EINPROGRESS);
  }
  return 1;
}

static void test_socket_to_socket_connect_timeout(void **state) {
  fx_t *fx = *state;
  int port = 0;
  if (!hanging_port(fx, &port))
    skip();
  fx->opts.connect_timeout_s = 0.2;
  sj_side_spec_t a = side("connect:127.0.0.1:%d", port), b = side("connect:127.0.0.1:%d", port);
  uv_update_time(&fx->loop);
  uint64_t start = mono_ms();
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, UV_ETIMEDOUT);
  assert_true(fx->done_at_ms - start >= 190);
  assert_int_equal(fx->pair_calls, 0);
  assert_non_null(strstr(fx->last_error, "failed: connection timed out"));
}

#define NOUT 3

static void test_server_to_socket_one_outbound_per_accept(void **state) {
  fx_t *fx = *state;
  test_listener_t tl;
  test_listener_open(fx, &tl);
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:%d", tl.port);
  assert_int_equal(sj_server_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  int pa = port_of(fx, SJ_A);

  /* Nothing is dialed before something is accepted. */
  run_for(&fx->loop, 50);
  assert_int_equal(test_listener_accept(fx, &tl), 0);

  int in[NOUT];
  for (int i = 0; i < NOUT; i++) {
    in[i] = client(fx, pa);
    send_u32(in[i], (uint32_t)i);
  }
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == NOUT && fx->pair_calls == NOUT);
  run_for(&fx->loop, 50);
  assert_int_equal(test_listener_accept(fx, &tl), NOUT); /* no more than one each */

  /* Every outbound connection carries exactly one A's bytes, and its
   * replies go back to that A. */
  reader_t r[NOUT];
  for (int j = 0; j < NOUT; j++)
    reader_init(&r[j], tl.accepted[j]);
  for (int j = 0; j < NOUT; j++)
    WAIT_FOR(&fx->loop, reader_has(&r[j], 4));
  int seen[NOUT] = {0};
  for (int j = 0; j < NOUT; j++) {
    assert_int_equal(r[j].len, 4);
    uint32_t i = get_u32(r[j].buf);
    assert_true(i < NOUT);
    seen[i]++;
    send_u32(tl.accepted[j], 100 + i);
    reader_free(&r[j]);
  }
  for (int i = 0; i < NOUT; i++)
    assert_int_equal(seen[i], 1);
  for (int i = 0; i < NOUT; i++)
    reader_init(&r[i], in[i]);
  for (int i = 0; i < NOUT; i++) {
    WAIT_FOR(&fx->loop, reader_has(&r[i], 4));
    assert_int_equal(r[i].len, 4);
    assert_int_equal(get_u32(r[i].buf), 100 + (uint32_t)i);
    reader_free(&r[i]);
  }

  /* Each pair is an accepted A and the connector's own B connection. */
  for (int k = 0; k < NOUT; k++) {
    assert_int_equal(fx->pairs[k].id, (uint64_t)k + 1);
    assert_int_equal(fx->pairs[k].b.port, tl.port);
  }
  assert_int_equal(fx->done_calls, 0);
}

static void test_server_to_socket_connect_failure(void **state) {
  fx_t *fx = *state;
  int port;
  closed_port(fx, &port);
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:%d", port);
  assert_int_equal(sj_server_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  int pa = port_of(fx, SJ_A);

  for (int round = 1; round <= 2; round++) {
    int in = client(fx, pa);
    send_all(in, "lost", 4);
    reader_t r;
    reader_init(&r, in);
    /* The accepted socket is closed when its outbound connect fails. */
    WAIT_FOR(&fx->loop, reader_poll(&r));
    assert_int_equal(r.len, 0);
    assert_true(r.eof || r.err == ECONNRESET);
    reader_free(&r);
    assert_int_equal(fx->errors, round);
    char want[128];
    snprintf(want, sizeof want, "B connect to 127.0.0.1:%d failed: connection refused", port);
    assert_string_equal(fx->last_error, want);
    fx_close_fd(fx, in);
  }
  /* The connector itself carries on listening. */
  assert_int_equal(fx->pair_calls, 0);
  assert_int_equal(fx->done_calls, 0);
  char text[64];
  assert_int_equal(sj_connector_address(fx->c, SJ_A, text, sizeof text), pa);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_ports_bound),
      T(test_address_of_connect_side),
      T(test_address_ipv6),
      T(test_address_unix),
      T(test_factories_reject_wrong_kinds),
      T(test_new_fails_cleanly),
      T(test_timeout_passed_no_pair),
      T(test_timeout_passed_with_waiting_socket),
      T(test_timeout_not_passed_pair_keeps_alive),
      T(test_fifo_interleaved),
      T(test_fifo_all_a_then_all_b),
      T(test_fifo_all_b_then_all_a),
      T(test_stop_delivers_data_in_flight),
      T(test_stop_delivers_data_held_by_connector),
      T(test_stop_drain_deadline),
      T(test_stop_without_pairs),
      T(test_close_runs_done_with_closed),
      T(test_close_from_on_pair),
      T(test_add_fd_socketpair),
      T(test_add_fd_tcp),
      T(test_add_fd_bad_descriptor),
      T(test_half_close),
      T(test_traffic_log_ascii),
      T(test_traffic_log_hex),
      T(test_traffic_log_off),
      T(test_own_loop),
      T(test_share_listener),
      T(test_share_listener_needs_one_per_side),
      T(test_stats),
      T(test_socket_to_socket_refused),
      T(test_socket_to_socket_one_side_refused),
      T(test_socket_to_socket_pairs_once),
      T(test_socket_to_socket_connect_timeout),
      T(test_server_to_socket_one_outbound_per_accept),
      T(test_server_to_socket_connect_failure),
  };
#undef T
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
