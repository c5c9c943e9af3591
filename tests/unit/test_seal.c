/* encrypt=: the secret file loader, the frame codec (whole, split at every
 * byte, every malformed frame refused), and the stream layer over
 * socketpairs and loopback TCP: 16 MiB each way checked byte by byte,
 * half-close, backpressure, and every attack it must stop (wrong key,
 * flipped byte, truncation, reflection, replay, a stranger), plus
 * encryption inside TLS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "layer_harness.h"
#include "seal.h"
#include "seal_frame.h"
#include "secret.h"
#include "test_certs.h"
#include "tls.h"

#define MiB (1024 * 1024)
#define DEADLINE_MS 60000

static uv_loop_t loop;
static sj_pool_t pool;
static sj_seal_key_t key1, key2;
static char tmpdir[64];

typedef struct {
  peer_t a, b;
  sj_stream_t *ra, *rb;
  int fds[2];
} conn_t;

/* ---- fixtures ------------------------------------------------------------- */

static void write_file(const char *path, const void *bytes, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(bytes, 1, n, fp), n);
  fclose(fp);
}

static int derive(const char *pass, sj_seal_key_t *key) {
  sj_secret_t s = {.data = (unsigned char *)pass, .len = strlen(pass)};
  return sj_seal_key_derive(&s, key);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sj-seal-XXXXXX");
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  return derive("correct horse battery staple", &key1) | derive("another passphrase", &key2);
}

static int group_teardown(void **state) {
  (void)state;
  return rmdir(tmpdir);
}

static int setup(void **state) {
  (void)state;
  sj_pool_init(&pool, SJ_CHUNK_SIZE, 64);
  return uv_loop_init(&loop);
}

static int teardown(void **state) {
  (void)state;
  int rc = loop_finish(&loop);
  sj_pool_drain(&pool);
  return rc;
}

/* ---- secret files --------------------------------------------------------- */

static void load_ok(const void *content, size_t n, const void *want, size_t wantlen) {
  char path[128], err[256] = "";
  sj_secret_t s;
  snprintf(path, sizeof path, "%s/secret", tmpdir);
  write_file(path, content, n);
  assert_int_equal(sj_secret_load(path, &s, err, sizeof err), 0);
  assert_int_equal(s.len, wantlen);
  assert_memory_equal(s.data, want, wantlen);
  assert_int_equal(s.data[s.len], 0);
  sj_secret_free(&s);
  assert_null(s.data);
  unlink(path);
}

static void load_fails(const void *content, size_t n, const char *why) {
  char path[128], err[256] = "", want[256];
  sj_secret_t s;
  snprintf(path, sizeof path, "%s/secret", tmpdir);
  write_file(path, content, n);
  assert_true(sj_secret_load(path, &s, err, sizeof err) < 0);
  snprintf(want, sizeof want, "secret file %s%s", path, why);
  assert_string_equal(err, want);
  assert_null(s.data);
  unlink(path);
}

static void test_secret_files(void **state) {
  (void)state;
  load_ok("s3cret\n", 7, "s3cret", 6);
  load_ok("s3cret\r\n", 8, "s3cret", 6);
  load_ok("s3cret", 6, "s3cret", 6);
  load_ok("two\n\n", 5, "two\n", 4); /* only ONE newline goes */
  load_ok(" pad \n", 6, " pad ", 5);
  load_ok("a\0b\xff\n", 5, "a\0b\xff", 4); /* raw bytes stay raw */
  load_fails("", 0, " is empty");
  load_fails("\n", 1, " is empty");
  load_fails("\r\n", 2, " is empty");
  char *big = malloc(SJ_SECRET_MAX + 1);
  memset(big, 'k', SJ_SECRET_MAX + 1);
  load_ok(big, SJ_SECRET_MAX, big, SJ_SECRET_MAX);
  load_fails(big, SJ_SECRET_MAX + 1, " is larger than 4096 bytes");
  free(big);
  char err[256];
  sj_secret_t s;
  assert_int_equal(sj_secret_load("/nonexistent/k", &s, err, sizeof err), UV_ENOENT);
  assert_string_equal(err, "secret file /nonexistent/k: No such file or directory");
}

static void test_key_load(void **state) {
  (void)state;
  char path[128], err[256];
  sj_seal_key_t k;
  snprintf(path, sizeof path, "%s/psk", tmpdir);
  write_file(path, "correct horse battery staple\n", 29);
  assert_int_equal(sj_seal_key_load(path, &k, err, sizeof err), 0);
  assert_memory_equal(k.bytes, key1.bytes, sizeof k.bytes); /* same passphrase, same key */
  assert_memory_not_equal(key1.bytes, key2.bytes, sizeof k.bytes);
  unlink(path);
  assert_true(sj_seal_key_load(path, &k, err, sizeof err) < 0);
  assert_non_null(strstr(err, "encrypt: secret file "));
  sj_seal_key_wipe(&k);
}

/* ---- the frame codec ------------------------------------------------------ */

/* Everything a parse produced, as text. */
typedef struct {
  char text[4096];
  size_t len;
} trace_t;

static void put(trace_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  t->len += (size_t)vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, ap);
  va_end(ap);
}

/* Feeds input in pieces of at most step bytes (0: all at once). */
static void parse(const unsigned char *in, size_t len, size_t step, trace_t *t) {
  sj_seal_parser_t *p = malloc(sizeof *p);
  sj_seal_parser_init(p);
  memset(t, 0, sizeof *t);
  for (size_t pos = 0; pos < len;) {
    size_t piece = step == 0 || len - pos < step ? len - pos : step;
    size_t left = piece;
    const unsigned char *buf = in + pos;
    pos += piece;
    while (left > 0) {
      sj_seal_event_t ev;
      int64_t n = sj_seal_parse(p, buf, left, &ev);
      if (n < 0) {
        put(t, "E:%s;", sj_seal_strerror((int)n));
        free(p);
        return;
      }
      assert_true((size_t)n <= left && n > 0);
      if (ev.type == SJ_SEAL_NEED_MORE)
        assert_int_equal(n, left);
      else
        put(t, "%c:%zu:%02x%02x;", "NHDM"[ev.type], ev.len, ev.data[0], ev.data[ev.len - 1]);
      buf += n;
      left -= (size_t)n;
    }
  }
  free(p);
}

/* hello, header, a 5-byte message, an empty one. */
static size_t transcript(unsigned char *out) {
  unsigned char nonce[SJ_SEAL_NONCE_BYTES];
  for (size_t i = 0; i < sizeof nonce; i++)
    nonce[i] = (unsigned char)(0xa0 + i);
  size_t n = 0;
  sj_seal_hello(out, nonce);
  n += SJ_SEAL_HELLO_BYTES;
  for (size_t i = 0; i < SJ_SEAL_HEADER_BYTES; i++)
    out[n++] = (unsigned char)(0x10 + i);
  size_t lens[2] = {5 + SJ_SEAL_TAG_BYTES, SJ_SEAL_TAG_BYTES};
  for (int m = 0; m < 2; m++) {
    sj_seal_prefix(out + n, lens[m]);
    n += SJ_SEAL_LEN_BYTES;
    for (size_t i = 0; i < lens[m]; i++)
      out[n++] = (unsigned char)(0x40 * (m + 1) + i);
  }
  return n;
}

static void test_frames_whole_and_split(void **state) {
  (void)state;
  unsigned char in[256];
  size_t len = transcript(in);
  trace_t whole, split;
  parse(in, len, 0, &whole);
  assert_string_equal(whole.text, "H:32:a0bf;D:24:1027;M:22:4055;M:17:8090;");
  for (size_t step = 1; step < len; step++) {
    parse(in, len, step, &split);
    assert_string_equal(split.text, whole.text);
  }
}

static void test_frame_errors(void **state) {
  (void)state;
  unsigned char in[256];
  size_t len = transcript(in);
  trace_t t;
  parse((const unsigned char *)"GET / HTTP/1.1\r\n", 16, 0, &t);
  assert_string_equal(t.text, "E:peer is not sockjoin encrypt= (bad hello);");
  parse((const unsigned char *)"X", 1, 0, &t); /* refused at its first byte */
  assert_string_equal(t.text, "E:peer is not sockjoin encrypt= (bad hello);");
  in[SJ_SEAL_MAGIC_LEN] = 2;
  parse(in, len, 0, &t);
  assert_string_equal(t.text, "E:peer speaks another version of encrypt=;");
  in[SJ_SEAL_MAGIC_LEN] = SJ_SEAL_VERSION;
  size_t first_len = SJ_SEAL_HELLO_BYTES + SJ_SEAL_HEADER_BYTES;
  sj_seal_prefix(in + first_len, SJ_SEAL_TAG_BYTES - 1);
  parse(in, len, 0, &t);
  assert_string_equal(t.text, "H:32:a0bf;D:24:1027;E:message shorter than its authentication tag;");
  sj_seal_prefix(in + first_len, SJ_SEAL_MAX_FRAME + 1);
  parse(in, len, 3, &t);
  assert_string_equal(t.text, "H:32:a0bf;D:24:1027;E:message longer than the limit;");
  sj_seal_prefix(in + first_len, SJ_SEAL_MAX_FRAME);
  parse(in, first_len + 2, 0, &t); /* the longest message is fine, just incomplete */
  assert_string_equal(t.text, "H:32:a0bf;D:24:1027;");
}

/* ---- streams -------------------------------------------------------------- */

static void raw_pair(conn_t *c, int tcp) {
  memset(c, 0, sizeof *c);
  int rc = tcp ? tcp_pair(&loop, &pool, &c->ra, &c->rb, c->fds)
               : socket_pair(&loop, &pool, &c->ra, &c->rb, c->fds);
  assert_int_equal(rc, 0);
  peer_init(&c->a, &loop, 2);
  peer_init(&c->b, &loop, 1);
}

static void wrap(peer_t *p, sj_stream_t *lower, const sj_seal_key_t *key, int read) {
  sj_stream_t *s;
  assert_int_equal(sj_seal_stream_new(lower, key, peer_layer_cb, p, &s), 0);
  peer_attach(p, s, read);
}

static void open_sealed(conn_t *c, const sj_seal_key_t *ka, const sj_seal_key_t *kb, int tcp) {
  raw_pair(c, tcp);
  wrap(&c->a, c->ra, ka, 1);
  wrap(&c->b, c->rb, kb, 1);
}

static int both_reported(void *arg) {
  conn_t *c = arg;
  return c->a.hs_calls > 0 && c->b.hs_calls > 0;
}

static int both_done(void *arg) {
  conn_t *c = arg;
  return c->a.eof && c->b.eof && c->a.shut_done && c->b.shut_done;
}

static int both_closed(void *arg) {
  conn_t *c = arg;
  return c->a.closed == 2 && c->b.closed == 2;
}

static void close_conn(conn_t *c) {
  peer_close(&c->a, 0);
  peer_close(&c->b, 0);
  assert_int_equal(run_until(&loop, both_closed, c, DEADLINE_MS), 0);
  peer_free(&c->a);
  peer_free(&c->b);
}

static void handshake_ok(conn_t *c) {
  assert_int_equal(run_until(&loop, both_reported, c, DEADLINE_MS), 0);
  if (c->a.hs_status != 0 || c->b.hs_status != 0)
    fail_msg("handshake: a %d '%s', b %d '%s'", c->a.hs_status, c->a.hs_text, c->b.hs_status,
             c->b.hs_text);
}

static void exchange(conn_t *c, uint64_t n) {
  peer_send(&c->a, n, 1, 1);
  peer_send(&c->b, n, 2, 1);
  assert_int_equal(run_until(&loop, both_done, c, DEADLINE_MS), 0);
  assert_int_equal(c->a.received, n);
  assert_int_equal(c->b.received, n);
  assert_false(c->a.mismatch || c->b.mismatch);
  assert_int_equal(c->a.shut_status, 0);
  assert_int_equal(c->b.shut_status, 0);
  assert_int_equal(peer_error(&c->a), 0);
  assert_int_equal(peer_error(&c->b), 0);
}

static void test_16mib_each_way_socketpair(void **state) {
  (void)state;
  conn_t c;
  open_sealed(&c, &key1, &key1, 0);
  handshake_ok(&c);
  exchange(&c, 16 * MiB);
  close_conn(&c);
}

static void test_16mib_each_way_tcp(void **state) {
  (void)state;
  conn_t c;
  open_sealed(&c, &key1, &key1, 1);
  handshake_ok(&c);
  exchange(&c, 16 * MiB);
  close_conn(&c);
}

/* Small pool chunks: messages no longer fit a chunk whole. */
static void test_small_chunks(void **state) {
  (void)state;
  sj_pool_drain(&pool);
  sj_pool_init(&pool, 1000, 64);
  conn_t c;
  open_sealed(&c, &key1, &key1, 0);
  handshake_ok(&c);
  exchange(&c, MiB);
  close_conn(&c);
}

static int b_eof(void *arg) { return ((conn_t *)arg)->b.eof; }
static int a_eof(void *arg) { return ((conn_t *)arg)->a.eof; }

static void test_half_close(void **state) {
  (void)state;
  conn_t c;
  open_sealed(&c, &key1, &key1, 0);
  handshake_ok(&c);
  peer_send(&c.a, MiB, 1, 1);
  assert_int_equal(run_until(&loop, b_eof, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.received, MiB);
  assert_false(c.a.eof);
  peer_send(&c.b, 3 * MiB, 2, 1);
  assert_int_equal(run_until(&loop, a_eof, &c, DEADLINE_MS), 0);
  assert_int_equal(c.a.received, 3 * MiB);
  assert_false(c.a.mismatch || c.b.mismatch);
  close_conn(&c);
}

static int b_got_all(void *arg) {
  conn_t *c = arg;
  return c->b.received == c->a.to_send;
}

static void test_backpressure(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.a, c.ra, &key1, 1);
  wrap(&c.b, c.rb, &key1, 0);
  handshake_ok(&c);
  peer_send(&c.a, 64 * MiB, 1, 0);
  settle(&loop);
  assert_true(c.a.sent < 4 * MiB);
  assert_true(c.a.writing);
  assert_true(sj_filter_buffered(c.a.s) <= SJ_FILTER_OUT_HWM + 64 * 1024);
  assert_true(sj_filter_buffered(c.b.s) <= 2 * SJ_CHUNK_SIZE);
  peer_set_reading(&c.b, 1);
  assert_int_equal(run_until(&loop, b_got_all, &c, DEADLINE_MS), 0);
  assert_false(c.b.mismatch);
  close_conn(&c);
}

/* The handshake completes only once the peer's header has come: an end
 * whose peer has not started yet is not told it is connected. */
static void test_handshake_waits_for_peer(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.a, c.ra, &key1, 1);
  peer_send(&c.a, 5000, 1, 0); /* waits too */
  settle(&loop);
  assert_int_equal(c.a.hs_calls, 0);
  assert_int_equal(c.a.sent, 0);
  wrap(&c.b, c.rb, &key1, 1);
  handshake_ok(&c);
  peer_send(&c.b, 5000, 2, 1);
  c.a.shut_after = 1;
  peer_send(&c.a, 5000, 1, 1);
  assert_int_equal(run_until(&loop, both_done, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.received, 5000);
  close_conn(&c);
}

static void test_wrong_key(void **state) {
  (void)state;
  conn_t c;
  open_sealed(&c, &key1, &key2, 0);
  peer_send(&c.a, 1000, 1, 1);
  assert_int_equal(run_until(&loop, both_reported, &c, DEADLINE_MS), 0);
  assert_int_equal(c.a.hs_status, SJ_EAUTH);
  assert_string_equal(c.a.hs_text, "encrypt: peer has a different key or is not sockjoin");
  assert_int_equal(c.b.hs_status, SJ_EAUTH);
  assert_string_equal(c.b.hs_text, "encrypt: peer has a different key or is not sockjoin");
  assert_int_equal(c.a.write_err, SJ_EAUTH);
  assert_int_equal(c.b.received, 0);
  close_conn(&c);
}

static int b_read_failed(void *arg) { return ((conn_t *)arg)->b.read_err != 0; }

/* Every byte of the stream is covered: flipping any one of several
 * positions (in a length prefix, a ciphertext, a tag) is caught, and the
 * reader gets only the messages before it. */
static void test_flipped_byte(void **state) {
  (void)state;
  const uint64_t at[] = {200, 5000, 64 + 16403 + 1, 64 + 2 * 16403 + 16402, 500000};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    conn_t c;
    sj_stream_t *mx, *my;
    int mfds[2];
    mitm_t m = {.flip_at = {at[i], UINT64_MAX}};
    raw_pair(&c, 0);
    assert_int_equal(socket_pair(&loop, &pool, &mx, &my, mfds), 0);
    mitm_start(&m, c.rb, mx);
    wrap(&c.a, c.ra, &key1, 1);
    wrap(&c.b, my, &key1, 1);
    handshake_ok(&c);
    peer_send(&c.a, MiB, 1, 1);
    assert_int_equal(run_until(&loop, b_read_failed, &c, DEADLINE_MS), 0);
    assert_int_equal(c.b.read_err, UV_EPROTO);
    assert_true(c.b.received < at[i]);
    assert_false(c.b.mismatch);
    assert_false(c.b.eof);
    assert_string_equal(c.b.late_text,
                        "encrypt: message failed authentication (tampered or corrupted stream)");
    mitm_close(&m);
    close_conn(&c);
    settle(&loop);
  }
}

/* A flipped byte in the handshake is caught too: in a nonce or header the
 * keys differ, so the confirmation fails. */
static void test_flipped_handshake_byte(void **state) {
  (void)state;
  const uint64_t at[] = {20, 50};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    conn_t c;
    sj_stream_t *mx, *my;
    int mfds[2];
    mitm_t m = {.flip_at = {at[i], UINT64_MAX}};
    raw_pair(&c, 0);
    assert_int_equal(socket_pair(&loop, &pool, &mx, &my, mfds), 0);
    mitm_start(&m, c.rb, mx);
    wrap(&c.a, c.ra, &key1, 1);
    wrap(&c.b, my, &key1, 1);
    assert_int_equal(run_until(&loop, both_reported, &c, DEADLINE_MS), 0);
    assert_int_equal(c.b.hs_status, SJ_EAUTH);
    assert_string_equal(c.b.hs_text, "encrypt: peer has a different key or is not sockjoin");
    /* A flipped nonce changes b's sending key too; a flipped header only
     * b's receiving state. */
    assert_int_equal(c.a.hs_status, i == 0 ? SJ_EAUTH : 0);
    mitm_close(&m);
    close_conn(&c);
    settle(&loop);
  }
}

static int b_got_some(void *arg) { return ((conn_t *)arg)->b.received >= 1000; }

static void test_truncation_is_an_error(void **state) {
  (void)state;
  conn_t c;
  open_sealed(&c, &key1, &key1, 0);
  handshake_ok(&c);
  peer_send(&c.a, 1000, 1, 0);
  assert_int_equal(run_until(&loop, b_got_some, &c, DEADLINE_MS), 0);
  shutdown(c.fds[0], SHUT_WR);
  assert_int_equal(run_until(&loop, b_read_failed, &c, DEADLINE_MS), 0);
  assert_int_equal(c.b.read_err, UV_EPROTO);
  assert_false(c.b.eof);
  assert_string_equal(c.b.late_text,
                      "encrypt: stream truncated (peer closed without the end marker)");
  close_conn(&c);
}

static int raw_closed;
static void on_raw_closed(sj_stream_t *s) {
  (void)s;
  raw_closed++;
}

static void close_raw(sj_stream_t *s) {
  int before = raw_closed;
  sj_stream_close(s, 0, on_raw_closed);
  while (raw_closed == before)
    uv_run(&loop, UV_RUN_ONCE);
}

static int b_reported(void *arg) { return ((conn_t *)arg)->b.hs_calls > 0; }

static void expect_b_refuses(conn_t *c, int status, const char *text) {
  assert_int_equal(run_until(&loop, b_reported, c, DEADLINE_MS), 0);
  assert_int_equal(c->b.hs_status, status);
  assert_string_equal(c->b.hs_text, text);
  assert_int_equal(c->b.received, 0);
  close_raw(c->ra);
  c->a.closed = 2;
  close_conn(c);
}

static void test_plaintext_peer(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.b, c.rb, &key1, 1);
  raw_write(c.ra, "SSH-2.0-OpenSSH_9.2\r\n", 21);
  expect_b_refuses(&c, UV_EPROTO, "encrypt: peer is not sockjoin encrypt= (bad hello)");
}

static void test_peer_leaves_during_handshake(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.b, c.rb, &key1, 1);
  raw_sink(c.ra);
  shutdown(c.fds[0], SHUT_WR);
  expect_b_refuses(&c, UV_EPROTO, "encrypt: peer closed the connection during the handshake");
}

/* A middleman sending an end's own bytes back to it. */
static void test_reflection(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.b, c.rb, &key1, 1);
  raw_echo(c.ra);
  expect_b_refuses(&c, SJ_EAUTH, "encrypt: peer sent back our own hello (reflected)");
}

static int a_done(void *arg) {
  conn_t *c = arg;
  return c->a.eof && c->b.eof;
}

/* What one end sent in a session, replayed to a new session, is refused:
 * its keys came from the other session's nonces. */
static void test_replay(void **state) {
  (void)state;
  conn_t c;
  sj_stream_t *mx, *my;
  int mfds[2];
  mitm_t m = {.flip_at = {UINT64_MAX, UINT64_MAX}, .recording = 1};
  raw_pair(&c, 0);
  assert_int_equal(socket_pair(&loop, &pool, &mx, &my, mfds), 0);
  mitm_start(&m, c.ra, mx); /* records what b (behind my) sends */
  wrap(&c.a, c.rb, &key1, 1);
  wrap(&c.b, my, &key1, 1);
  handshake_ok(&c);
  exchange(&c, 10000);
  assert_int_equal(run_until(&loop, a_done, &c, DEADLINE_MS), 0);
  size_t n = m.record_len;
  char *recorded = malloc(n);
  memcpy(recorded, m.record, n);
  mitm_close(&m);
  close_conn(&c);
  settle(&loop);

  raw_pair(&c, 0);
  wrap(&c.b, c.rb, &key1, 1);
  raw_write(c.ra, recorded, n);
  free(recorded);
  expect_b_refuses(&c, SJ_EAUTH, "encrypt: peer has a different key or is not sockjoin");
}

static void test_close_mid_handshake(void **state) {
  (void)state;
  conn_t c;
  raw_pair(&c, 0);
  wrap(&c.a, c.ra, &key1, 1);
  raw_sink(c.rb);
  settle(&loop);
  if (c.a.hs_calls != 0)
    fail_msg("a reported %d '%s'", c.a.hs_status, c.a.hs_text);
  /* The owner gives up first: no callback, even as the peer then leaves. */
  c.b.closed = 2;
  close_conn(&c);
  close_raw(c.rb);
  assert_int_equal(c.a.hs_calls, 0);
}

/* Layers compose: encryption inside TLS, over one socketpair. */
static void test_inside_tls(void **state) {
  (void)state;
  certs_t certs;
  assert_int_equal(certs_make(&certs), 0);
  sj_tls_config_t scfg = {.server = 1, .cert = certs.server_cert, .key = certs.server_key};
  sj_tls_config_t ccfg = {.ca = certs.ca};
  sj_tls_ctx_t *sctx, *cctx;
  char err[256];
  assert_int_equal(sj_tls_ctx_new(&scfg, &sctx, err, sizeof err), 0);
  assert_int_equal(sj_tls_ctx_new(&ccfg, &cctx, err, sizeof err), 0);
  conn_t c;
  raw_pair(&c, 0);
  sj_stream_t *ta, *tb;
  peer_t tpa, tpb; /* receive the TLS layers' callbacks */
  peer_init(&tpa, &loop, 0);
  peer_init(&tpb, &loop, 0);
  assert_int_equal(sj_tls_stream_new(c.ra, cctx, "localhost", peer_layer_cb, &tpa, &ta), 0);
  assert_int_equal(sj_tls_stream_new(c.rb, sctx, NULL, peer_layer_cb, &tpb, &tb), 0);
  wrap(&c.a, ta, &key1, 1);
  wrap(&c.b, tb, &key1, 1);
  handshake_ok(&c);
  assert_int_equal(tpa.hs_status, 0);
  assert_int_equal(tpb.hs_status, 0);
  exchange(&c, 4 * MiB);
  close_conn(&c);
  peer_free(&tpa);
  peer_free(&tpb);
  sj_tls_ctx_free(sctx);
  sj_tls_ctx_free(cctx);
  certs_remove(&certs);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_secret_files),
      cmocka_unit_test(test_key_load),
      cmocka_unit_test(test_frames_whole_and_split),
      cmocka_unit_test(test_frame_errors),
      T(test_16mib_each_way_socketpair),
      T(test_16mib_each_way_tcp),
      T(test_small_chunks),
      T(test_half_close),
      T(test_backpressure),
      T(test_handshake_waits_for_peer),
      T(test_wrong_key),
      T(test_flipped_byte),
      T(test_flipped_handshake_byte),
      T(test_truncation_is_an_error),
      T(test_plaintext_peer),
      T(test_peer_leaves_during_handshake),
      T(test_reflection),
      T(test_replay),
      T(test_close_mid_handshake),
      T(test_inside_tls),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
