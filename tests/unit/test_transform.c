/*
 * Transformers (sj_transformer_t, set per pair by before_joining):
 * socket_connector's "Transformer tests" (reversers and prefixers in three
 * modes), and the contract: length-changing transforms with exact byte
 * counts, the flush at EOF (also when the source ended before the pair
 * formed), bytes read before pairing transformed too, backpressure through
 * a transform with bounded memory, a transform error resetting its pair,
 * before_joining refusing a pair, and release called once per direction.
 */
#include "connector_fixture.h"

/* ---- transformers ------------------------------------------------------ */

/* What every transformer state records, for the tests to check. */
typedef struct tally {
  int made, released, eofs;
} tally_t;

typedef struct {
  tally_t *tally;
  int released;
  int eof_seen;
  /* per kind */
  char prefix[16];
  int at_line_start;
  char *buf;
  size_t len, cap;
} xs_t;

static void xs_release(void *state) {
  xs_t *x = state;
  assert_int_equal(x->released, 0); /* once */
  x->released = 1;
  x->tally->released++;
  free(x->buf);
  free(x);
}

static sj_transformer_t make(tally_t *t, sj_transform_fn fn) {
  xs_t *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->tally = t;
  x->at_line_start = 1;
  t->made++;
  return (sj_transformer_t){fn, x, xs_release};
}

/* Called with buf == NULL once, at the source's end. */
static int note_eof(xs_t *x) {
  assert_int_equal(x->eof_seen, 0);
  x->eof_seen = 1;
  x->tally->eofs++;
  return 0;
}

static void hold(xs_t *x, const char *buf, size_t len) {
  if (x->len + len > x->cap) {
    x->cap = (x->len + len) * 2;
    x->buf = realloc(x->buf, x->cap);
    assert_non_null(x->buf);
  }
  memcpy(x->buf + x->len, buf, len);
  x->len += len;
}

static int emit_reversed(sj_emit_t *out, xs_t *x) {
  for (size_t i = 0; i < x->len / 2; i++) {
    char t = x->buf[i];
    x->buf[i] = x->buf[x->len - 1 - i];
    x->buf[x->len - 1 - i] = t;
  }
  int rc = sj_emit(out, x->buf, x->len);
  x->len = 0;
  return rc;
}

/* Reverses each line (what is left at EOF counts as a line). */
static int reverser(sj_emit_t *out, const char *buf, size_t len, void *state) {
  xs_t *x = state;
  if (buf == NULL)
    return note_eof(x) == 0 ? emit_reversed(out, x) : -1;
  for (size_t i = 0; i < len; i++) {
    if (buf[i] != '\n') {
      hold(x, buf + i, 1);
      continue;
    }
    if (emit_reversed(out, x) != 0 || sj_emit(out, "\n", 1) != 0)
      return UV_ENOMEM;
  }
  return 0;
}

/* Puts x->prefix before each line. */
static int prefixer(sj_emit_t *out, const char *buf, size_t len, void *state) {
  xs_t *x = state;
  if (buf == NULL)
    return note_eof(x);
  while (len > 0) {
    if (x->at_line_start && sj_emit(out, x->prefix, strlen(x->prefix)) != 0)
      return UV_ENOMEM;
    const char *nl = memchr(buf, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - buf) + 1 : len;
    if (sj_emit(out, buf, n) != 0)
      return UV_ENOMEM;
    x->at_line_start = nl != NULL;
    buf += n;
    len -= n;
  }
  return 0;
}

/* Every byte twice. */
static int doubler(sj_emit_t *out, const char *buf, size_t len, void *state) {
  if (buf == NULL)
    return note_eof(state);
  char *two = malloc(2 * len);
  assert_non_null(two);
  for (size_t i = 0; i < len; i++)
    two[2 * i] = two[2 * i + 1] = buf[i];
  int rc = sj_emit(out, two, 2 * len);
  free(two);
  return rc;
}

/* Nothing until the end, then everything. */
static int holder(sj_emit_t *out, const char *buf, size_t len, void *state) {
  xs_t *x = state;
  if (buf == NULL) {
    note_eof(x);
    return sj_emit(out, x->buf, x->len);
  }
  hold(x, buf, len);
  return 0;
}

#define EXPAND 200000 /* each byte becomes this many: more than a chunk */

static int expander(sj_emit_t *out, const char *buf, size_t len, void *state) {
  if (buf == NULL)
    return note_eof(state);
  static char run[EXPAND];
  for (size_t i = 0; i < len; i++) {
    memset(run, buf[i], sizeof run);
    int rc = sj_emit(out, run, sizeof run);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int dropper(sj_emit_t *out, const char *buf, size_t len, void *state) {
  (void)out;
  (void)len;
  return buf == NULL ? note_eof(state) : 0;
}

/* Passes bytes until an 'X', then fails. */
static int failer(sj_emit_t *out, const char *buf, size_t len, void *state) {
  if (buf == NULL)
    return note_eof(state);
  const char *x = memchr(buf, 'X', len);
  int rc = sj_emit(out, buf, x != NULL ? (size_t)(x - buf) : len);
  return x != NULL ? UV_EPROTO : rc;
}

/* ---- before_joining ---------------------------------------------------- */

typedef struct {
  tally_t tally;
  int calls;
  sj_transform_fn fn[2]; /* per direction (A to B, B to A); NULL: none */
  const char *prefix[2];
  int refuse_call;       /* 1-based call that is refused; 0: none */
  int refuse_status;
  uint64_t ids[MAX_PAIRS_SEEN];
} bj_t;

static int before_joining(sj_connector_t *c, const sj_pair_info_t *pair, sj_transformer_t *a_to_b,
                          sj_transformer_t *b_to_a, void *data) {
  fx_t *fx = data;
  bj_t *bj = fx->user;
  (void)c;
  bj->ids[bj->calls % MAX_PAIRS_SEEN] = pair->id;
  bj->calls++;
  /* Nothing has been relayed when the pair is being joined. */
  assert_int_equal(pair->bytes_a_to_b, 0);
  assert_int_equal(pair->bytes_b_to_a, 0);
  sj_transformer_t *dir[2] = {a_to_b, b_to_a};
  for (int d = 0; d < 2; d++) {
    assert_null(dir[d]->fn);
    if (bj->fn[d] == NULL)
      continue;
    *dir[d] = make(&bj->tally, bj->fn[d]);
    if (bj->prefix[d] != NULL)
      snprintf(((xs_t *)dir[d]->state)->prefix, sizeof ((xs_t *)0)->prefix, "%s", bj->prefix[d]);
  }
  return bj->calls == bj->refuse_call ? bj->refuse_status : 0;
}

static bj_t *use_bj(fx_t *fx, sj_transform_fn a_to_b, sj_transform_fn b_to_a) {
  bj_t *bj = calloc(1, sizeof *bj);
  assert_non_null(bj);
  bj->fn[SJ_A] = a_to_b;
  bj->fn[SJ_B] = b_to_a;
  fx->user = bj;
  fx->opts.before_joining = before_joining;
  return bj;
}

static int xteardown(void **state) {
  fx_t *fx = *state;
  bj_t *bj = fx->user;
  int rc = teardown(state);
  if (bj != NULL) {
    /* Every transformer made was released, once. */
    assert_int_equal(bj->tally.released, bj->tally.made);
    free(bj);
  }
  return rc;
}

/* ---- helpers ----------------------------------------------------------- */

static void expect_all(fx_t *fx, int fd, const char *want) {
  char *got = read_to_end(fx, fd);
  assert_string_equal(got, want);
  free(got);
}

/* Sends the texts, ends both directions, and checks what each side got. */
static void exchange(fx_t *fx, int a, const char *to_b, const char *want_b, int b,
                     const char *to_a, const char *want_a) {
  send_str(a, to_b);
  send_str(b, to_a);
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, want_b);
  expect_all(fx, a, want_a);
}

/* ======================================================================== */
/* socket_connector's Transformer tests                                     */
/* ======================================================================== */

/* Seed test 13: socketToServer, A to B reversed, B to A unchanged. */
static void test_socket_to_server_reverser(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, reverser, NULL);
  test_listener_t tl;
  test_listener_open(fx, &tl);
  sj_side_spec_t a = side("connect:127.0.0.1:%d", tl.port), b = side("listen:127.0.0.1:0");
  assert_int_equal(sj_socket_to_server(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  int fb = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == 1 && fx->pair_calls == 1);
  exchange(fx, tl.accepted[0], "hello world\nsecond line\nno newline", "dlrow olleh\nenil dnoces\nenilwen on",
           fb, "hello world\n", "hello world\n");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(bj->calls, 1);
  assert_int_equal(bj->tally.made, 1);
  assert_int_equal(bj->tally.eofs, 1);
  assert_int_equal(bj->tally.released, 1);
}

/* Seed test 14: socketToSocket with two prefixers; the one pair ending
 * ends the connector. */
static void test_socket_to_socket_prefixers(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, prefixer, prefixer);
  bj->prefix[SJ_A] = "from A: ";
  bj->prefix[SJ_B] = "from B: ";
  test_listener_t la, lb;
  test_listener_open(fx, &la);
  test_listener_open(fx, &lb);
  sj_side_spec_t a = side("connect:127.0.0.1:%d", la.port), b = side("connect:127.0.0.1:%d", lb.port);
  assert_int_equal(sj_socket_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  WAIT_FOR(&fx->loop, test_listener_accept(fx, &la) == 1 && test_listener_accept(fx, &lb) == 1 &&
                          fx->pair_calls == 1);
  exchange(fx, la.accepted[0], "hello world\nagain\n", "from A: hello world\nfrom A: again\n",
           lb.accepted[0], "hi", "from B: hi");
  WAIT_FOR(&fx->loop, fx->done_calls == 1);
  assert_int_equal(fx->done_status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, 18);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 34);
  assert_int_equal(fx->closed[0].bytes_read_b, 2);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 10);
  assert_int_equal(bj->tally.eofs, 2);
}

/* Seed tests 9 and 15: serverToSocket, several A clients in turn, each
 * with its own outbound B, both directions reversed; before_joining runs
 * once per pair. */
static void test_server_to_socket_reversers(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, reverser, reverser);
  test_listener_t tl;
  test_listener_open(fx, &tl);
  sj_side_spec_t a = side("listen:127.0.0.1:0"), b = side("connect:127.0.0.1:%d", tl.port);
  assert_int_equal(sj_server_to_socket(&fx->c, &fx->loop, &a, &b, &fx->opts), 0);
  for (int i = 0; i < 5; i++) {
    int fa = client(fx, port_of(fx, SJ_A));
    WAIT_FOR(&fx->loop, test_listener_accept(fx, &tl) == i + 1 && fx->pair_calls == i + 1);
    char to_b[32], want_b[32], to_a[32], want_a[32];
    snprintf(to_b, sizeof to_b, "abc%d\n", i);
    snprintf(want_b, sizeof want_b, "%dcba\n", i);
    snprintf(to_a, sizeof to_a, "xyz%d\n", i);
    snprintf(want_a, sizeof want_a, "%dzyx\n", i);
    exchange(fx, fa, to_b, want_b, tl.accepted[i], to_a, want_a);
    WAIT_FOR(&fx->loop, fx->closed_calls == i + 1);
    assert_int_equal(bj->calls, i + 1);
    assert_int_equal(bj->ids[i], (uint64_t)i + 1);
  }
  assert_int_equal(bj->tally.made, 10);
  assert_int_equal(bj->tally.eofs, 10);
  assert_int_equal(bj->tally.released, 10);
}

/* ======================================================================== */
/* Length-changing transforms: exact counts, the flush at EOF               */
/* ======================================================================== */

#define NDOUBLE 300000

static void test_doubler_counts(void **state) {
  fx_t *fx = *state;
  use_bj(fx, doubler, NULL);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)), b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  unsigned char *data = malloc(NDOUBLE);
  assert_non_null(data);
  for (size_t i = 0; i < NDOUBLE; i++)
    data[i] = pattern(i);
  writer_t w;
  writer_init(&w, a, data, NDOUBLE, 1);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR_FD(&fx->loop, a, POLLOUT, writer_poll(&w) && reader_poll(&rb), WAIT_MS);
  assert_int_equal(rb.err, 0);
  assert_int_equal(rb.len, 2 * NDOUBLE);
  for (size_t i = 0; i < NDOUBLE; i++)
    if (rb.buf[2 * i] != data[i] || rb.buf[2 * i + 1] != data[i])
      fail_msg("byte %zu differs", i);
  reader_free(&rb);
  free(data);
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, NDOUBLE);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 2 * NDOUBLE);
  assert_int_equal(fx->closed[0].bytes_read_b, 0);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 0);
  sj_stats_t st;
  stats_of(fx, &st);
  assert_int_equal(st.bytes_read_a, NDOUBLE);
  assert_int_equal(st.bytes_a_to_b, 2 * NDOUBLE);
}

static void test_expander_counts(void **state) {
  fx_t *fx = *state;
  use_bj(fx, expander, NULL);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)), b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  send_str(a, "ab");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR_FD(&fx->loop, b, POLLIN, reader_poll(&rb), WAIT_MS);
  assert_int_equal(rb.len, 2 * EXPAND);
  for (size_t i = 0; i < 2 * EXPAND; i++)
    if (rb.buf[i] != (i < EXPAND ? 'a' : 'b'))
      fail_msg("byte %zu is %d", i, rb.buf[i]);
  reader_free(&rb);
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].bytes_read_a, 2);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 2 * EXPAND);
}

/* A transform that emits nothing: the source's bytes count as read, none
 * as written, and the pair still closes when the source ends. */
static void test_dropper_counts(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, dropper, dropper);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)), b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  exchange(fx, a, "into the void", "", b, "likewise", "");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, 13);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 0);
  assert_int_equal(fx->closed[0].bytes_read_b, 8);
  assert_int_equal(fx->closed[0].bytes_b_to_a, 0);
  assert_int_equal(bj->tally.eofs, 2);
}

/* Nothing is written until the source ends; then everything, then the end. */
static void test_holder_flushes_at_eof(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, holder, NULL);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)), b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  send_str(a, "one ");
  send_str(a, "two ");
  send_str(a, "three");
  sj_stats_t st;
  WAIT_FOR(&fx->loop, (stats_of(fx, &st), st.bytes_read_a == 13));
  assert_int_equal(st.bytes_a_to_b, 0);
  assert_int_equal(bj->tally.eofs, 0);
  char byte;
  assert_int_equal(recv(b, &byte, 1, MSG_DONTWAIT), -1);
  assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
  exchange(fx, a, "", "one two three", b, "", "");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, 0);
  assert_int_equal(fx->closed[0].bytes_read_a, 13);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 13);
  assert_int_equal(bj->tally.eofs, 1);
}

/* The source ended before its partner came: the transformer still sees the
 * bytes and the end, once the pair forms. */
static void test_eof_before_pairing(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, reverser, NULL);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A));
  send_str(a, "early line\nand the rest");
  assert_int_equal(shutdown(a, SHUT_WR), 0);
  int b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  expect_all(fx, b, "enil ylrae\ntser eht dna");
  expect_all(fx, a, "");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(bj->tally.eofs, 1);
  assert_int_equal(fx->closed[0].bytes_read_a, 23);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 23);
}

/* ======================================================================== */
/* Backpressure through a transform                                         */
/* ======================================================================== */

#define BP_TOTAL (8u << 20)
#define BP_HWM (64 * 1024)

/* What the connector holds for B: everything the doubler made from what was
 * read, less what B's socket took. It must stay near the mark whatever B's
 * pace: the mark, plus one read's chunk doubled, plus a chunk of slack. */
static void check_held(fx_t *fx, uint64_t *max_held) {
  sj_stats_t st;
  stats_of(fx, &st);
  uint64_t held = 2 * st.bytes_read_a - st.bytes_a_to_b;
  if (held > *max_held)
    *max_held = held;
  if (held > BP_HWM + 3 * 64 * 1024)
    fail_msg("the connector holds %llu bytes for B (mark %d)", (unsigned long long)held, BP_HWM);
}

static int held_ok_and(fx_t *fx, uint64_t *max_held, int cond) {
  check_held(fx, max_held);
  return cond;
}

static void test_backpressure_through_transform(void **state) {
  fx_t *fx = *state;
  use_bj(fx, doubler, NULL);
  fx->opts.buffer_size = BP_HWM;
  start_server_to_server(fx);
  int a = fx_fd(fx, try_connect_bufs(port_of(fx, SJ_A), 0, 16384));
  int b = fx_fd(fx, try_connect_bufs(port_of(fx, SJ_B), 16384, 0));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  unsigned char *data = malloc(BP_TOTAL);
  assert_non_null(data);
  for (size_t i = 0; i < BP_TOTAL; i++)
    data[i] = pattern(i);
  writer_t w;
  writer_init(&w, a, data, BP_TOTAL, 1);
  uint64_t max_held = 0;

  /* B does not read: the connector stops reading A, and A's writer is
   * held back long before it is done. */
  WAIT_FOR_FD(&fx->loop, a, POLLOUT,
              held_ok_and(fx, &max_held, (writer_poll(&w), w.blocked && max_held >= BP_HWM)),
              WAIT_MS);
  size_t sent_while_stalled = w.off;
  for (int turn = 0; turn < 200; turn++) {
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    writer_poll(&w);
    check_held(fx, &max_held);
    loop_wait(&fx->loop, a, POLLOUT);
  }
  assert_true(w.off < BP_TOTAL); /* held back, not done */
  print_message("stalled writer: %zu of %u bytes sent (then %zu), connector held at most %llu\n",
                sent_while_stalled, BP_TOTAL, w.off, (unsigned long long)max_held);

  /* B reads slowly: everything arrives, doubled and in order, and the
   * connector never holds more than about the mark. */
  reader_t rb;
  reader_init(&rb, b);
  rb.max_per_poll = 16384;
  WAIT_FOR_FD(&fx->loop, b, POLLIN,
              held_ok_and(fx, &max_held, (writer_poll(&w) & reader_poll(&rb))), 60000);
  assert_int_equal(rb.err, 0);
  assert_int_equal(rb.len, 2 * (size_t)BP_TOTAL);
  for (size_t i = 0; i < BP_TOTAL; i++)
    if (rb.buf[2 * i] != data[i] || rb.buf[2 * i + 1] != data[i])
      fail_msg("byte %zu differs", i);
  reader_free(&rb);
  free(data);
  assert_int_equal(shutdown(b, SHUT_WR), 0);
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].bytes_read_a, BP_TOTAL);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 2 * (uint64_t)BP_TOTAL);
}

/* ======================================================================== */
/* Errors, refusals, release                                                */
/* ======================================================================== */

static void test_transform_error_resets_pair(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, failer, NULL);
  start_server_to_server(fx);
  int a = client(fx, port_of(fx, SJ_A)), b = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 1);
  send_str(a, "fine");
  reader_t rb;
  reader_init(&rb, b);
  WAIT_FOR(&fx->loop, reader_has(&rb, 4));
  send_str(a, "Xnever");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->closed[0].status, UV_EPROTO);
  WAIT_FOR_FD(&fx->loop, b, POLLIN, reader_poll(&rb), WAIT_MS);
  assert_true(rb.len == 4 && memcmp(rb.buf, "fine", 4) == 0);
  reader_free(&rb);
  assert_int_equal(bj->tally.eofs, 0);
  assert_int_equal(bj->tally.released, 1);
  /* The connector goes on. */
  assert_int_equal(fx->done_calls, 0);
}

/* before_joining refuses the first pair (after setting transformers, which
 * are released): both sockets close with nothing relayed; the next pair is
 * joined. */
static void test_before_joining_refuses(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, prefixer, prefixer);
  bj->prefix[SJ_A] = "a: ";
  bj->prefix[SJ_B] = "b: ";
  bj->refuse_call = 1;
  bj->refuse_status = SJ_EAUTH;
  start_server_to_server(fx);
  int a1 = client(fx, port_of(fx, SJ_A));
  send_str(a1, "secret\n");
  int b1 = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(fx->pair_calls, 1);
  assert_int_equal(fx->closed[0].status, SJ_EAUTH);
  assert_int_equal(fx->closed[0].bytes_a_to_b, 0);
  assert_int_equal(bj->tally.made, 2);
  assert_int_equal(bj->tally.released, 2);
  expect_all(fx, b1, "");
  expect_all(fx, a1, "");

  int a2 = client(fx, port_of(fx, SJ_A)), b2 = client(fx, port_of(fx, SJ_B));
  WAIT_FOR(&fx->loop, fx->pair_calls == 2);
  exchange(fx, a2, "x\n", "a: x\n", b2, "y\n", "b: y\n");
  WAIT_FOR(&fx->loop, fx->closed_calls == 2);
  assert_int_equal(fx->closed[1].status, 0);
  assert_int_equal(bj->calls, 2);
  assert_int_equal(bj->tally.released, 4);
}

static void rst_close(fx_t *fx, int fd) {
  struct linger lg = {1, 0};
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  fx_close_fd(fx, fd);
}

/* Pairs ending every way release each direction's transformer once: a
 * clean end (after the EOF flush), a reset, a transform error, and the
 * connector's close with a pair open. */
static void test_release_once_per_pair(void **state) {
  fx_t *fx = *state;
  bj_t *bj = use_bj(fx, failer, doubler);
  start_server_to_server(fx);
  int a[4], b[4];
  for (int i = 0; i < 4; i++) {
    a[i] = client(fx, port_of(fx, SJ_A));
    b[i] = client(fx, port_of(fx, SJ_B));
    WAIT_FOR(&fx->loop, fx->pair_calls == i + 1);
  }
  assert_int_equal(bj->tally.made, 8);
  /* 1: clean. */
  exchange(fx, a[0], "ok", "ok", b[0], "hi", "hhii");
  WAIT_FOR(&fx->loop, fx->closed_calls == 1);
  assert_int_equal(bj->tally.eofs, 2);
  assert_int_equal(bj->tally.released, 2);
  /* 2: A resets. */
  rst_close(fx, a[1]);
  WAIT_FOR(&fx->loop, fx->closed_calls == 2);
  assert_int_equal(bj->tally.released, 4);
  /* 3: the transform fails. */
  send_str(a[2], "X");
  WAIT_FOR(&fx->loop, fx->closed_calls == 3);
  assert_int_equal(fx->closed[2].status, UV_EPROTO);
  assert_int_equal(bj->tally.released, 6);
  /* 4: still open when the connector closes. */
  fx_close_connector(fx);
  assert_int_equal(fx->closed_calls, 4);
  assert_int_equal(bj->tally.released, 8);
  assert_int_equal(bj->tally.eofs, 2);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, xteardown)
  const struct CMUnitTest tests[] = {
      T(test_socket_to_server_reverser),
      T(test_socket_to_socket_prefixers),
      T(test_server_to_socket_reversers),
      T(test_doubler_counts),
      T(test_expander_counts),
      T(test_dropper_counts),
      T(test_holder_flushes_at_eof),
      T(test_eof_before_pairing),
      T(test_backpressure_through_transform),
      T(test_transform_error_resets_pair),
      T(test_before_joining_refuses),
      T(test_release_once_per_pair),
  };
#undef T
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
