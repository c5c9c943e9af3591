/* The expose control codec (src/expose/control.c): every message at its
 * stage, whole and cut short, CRLF, the line cap, out-of-turn messages and
 * every malformed field refused by name; formatting and its round trip;
 * and the API key lists (src/expose/keys.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "keys.h"

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static long parse(sj_xctl_stage_t stage, const char *text, sj_xctl_msg_t *msg) {
  return sj_xctl_parse(stage, text, strlen(text), msg);
}

static void expect_error(sj_xctl_stage_t stage, const char *text, int err) {
  sj_xctl_msg_t msg;
  long n = parse(stage, text, &msg);
  if (n != err)
    fail_msg("parsing %s gave %ld, expected %d (%s)", text, n, err, sj_xctl_strerror(err));
}

static void test_hello(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  const char *line = "sockjoin-expose 1 challenge " HEX "\n";
  assert_int_equal(parse(SJ_XCTL_AT_HELLO, line, &m), (long)strlen(line));
  assert_int_equal(m.type, SJ_XCTL_HELLO);
  assert_int_equal(m.version, 1);
  assert_string_equal(m.token, HEX);
  assert_int_equal(parse(SJ_XCTL_AT_HELLO, "sockjoin-expose 1 open\r\n", &m), 24);
  assert_int_equal(m.type, SJ_XCTL_HELLO);
  assert_string_equal(m.token, "");
  /* Whatever is not our greeting says so; a newer version says that. */
  expect_error(SJ_XCTL_AT_HELLO, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", SJ_XCTL_EGREETING);
  expect_error(SJ_XCTL_AT_HELLO, "HTTP/1.1 400 Bad Request\r\n", SJ_XCTL_EGREETING);
  expect_error(SJ_XCTL_AT_HELLO, "\x16\x03\x01\x02\n", SJ_XCTL_EGREETING);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose x open\n", SJ_XCTL_EGREETING);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose 2 open\n", SJ_XCTL_EVERSION);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose 1\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose 1 open x\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose 1 challenge\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_HELLO, "sockjoin-expose 1 challenge abc\n", SJ_XCTL_ETOKEN);
  /* Upper-case hex would not compare equal as text: refused. */
  expect_error(SJ_XCTL_AT_HELLO,
               "sockjoin-expose 1 challenge 0123456789ABCDEF0123456789abcdef0123456789abcdef0"
               "123456789abcdef\n",
               SJ_XCTL_ETOKEN);
}

static void test_need_more_and_cap(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  char big[SJ_XCTL_LINE_MAX + 8];
  assert_int_equal(parse(SJ_XCTL_AT_AUTH, "", &m), 0);
  assert_int_equal(parse(SJ_XCTL_AT_AUTH, "auth no", &m), 0);
  memset(big, 'a', sizeof big);
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_AUTH, big, SJ_XCTL_LINE_MAX - 1, &m), 0);
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_AUTH, big, SJ_XCTL_LINE_MAX, &m), SJ_XCTL_ETOOLONG);
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_HELLO, big, sizeof big, &m), SJ_XCTL_EGREETING);
  /* A newline just inside the cap is a line; just past it is not. */
  big[SJ_XCTL_LINE_MAX - 1] = '\n';
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_AUTH, big, sizeof big, &m), SJ_XCTL_EWORD);
  big[SJ_XCTL_LINE_MAX - 1] = 'a';
  big[SJ_XCTL_LINE_MAX] = '\n';
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_AUTH, big, sizeof big, &m), SJ_XCTL_ETOOLONG);
  /* Only the first line is taken; the rest is the caller's. */
  assert_int_equal(parse(SJ_XCTL_AT_AUTH, "auth none\nGARBAGE", &m), 10);
  expect_error(SJ_XCTL_AT_AUTH, "auth\tnone\n", SJ_XCTL_ECHAR);
  expect_error(SJ_XCTL_AT_AUTH, "auth none\r\r\n", SJ_XCTL_ECHAR);
  expect_error(SJ_XCTL_AT_AUTH, "auth n\xc3\xa9\n", SJ_XCTL_ECHAR);
  assert_int_equal(sj_xctl_parse(SJ_XCTL_AT_AUTH, "auth none\0\n", 11, &m), SJ_XCTL_ECHAR);
}

static void test_auth(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  assert_int_equal(parse(SJ_XCTL_AT_AUTH, "auth none\n", &m), 10);
  assert_int_equal(m.type, SJ_XCTL_AUTH);
  assert_string_equal(m.token, "");
  assert_string_equal(m.agent, "");
  assert_true(parse(SJ_XCTL_AT_AUTH, "auth " HEX "\n", &m) > 0);
  assert_string_equal(m.token, HEX);
  assert_true(parse(SJ_XCTL_AT_AUTH, "auth " HEX " 0123456789abcdef\n", &m) > 0);
  assert_string_equal(m.token, HEX);
  assert_string_equal(m.agent, "0123456789abcdef");
  assert_true(parse(SJ_XCTL_AT_AUTH, "auth none fedcba9876543210\n", &m) > 0);
  assert_string_equal(m.token, "");
  assert_string_equal(m.agent, "fedcba9876543210");
  expect_error(SJ_XCTL_AT_AUTH, "auth none 0123\n", SJ_XCTL_EAGENT);
  expect_error(SJ_XCTL_AT_AUTH, "auth none 0123456789ABCDEF\n", SJ_XCTL_EAGENT);
  expect_error(SJ_XCTL_AT_AUTH, "auth none 0123456789abcdef x\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth none 0123456789abcdef \n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth \n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth  none\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth none \n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_AUTH, "auth none x\n", SJ_XCTL_EAGENT);
  expect_error(SJ_XCTL_AT_AUTH, "auth " HEX "0\n", SJ_XCTL_ETOKEN);
  expect_error(SJ_XCTL_AT_AUTH, " auth none\n", SJ_XCTL_EWORD);
  expect_error(SJ_XCTL_AT_AUTH, "expose 80\n", SJ_XCTL_EWORD);
  expect_error(SJ_XCTL_AT_AUTH, "\n", SJ_XCTL_EWORD);
}

static void test_welcome(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  assert_int_equal(parse(SJ_XCTL_AT_WELCOME, "ok\n", &m), 3);
  assert_int_equal(m.type, SJ_XCTL_WELCOME);
  assert_int_equal(parse(SJ_XCTL_AT_WELCOME, "unauthorized\n", &m), 13);
  assert_int_equal(m.type, SJ_XCTL_UNAUTHORIZED);
  assert_string_equal(m.text, "");
  assert_true(parse(SJ_XCTL_AT_WELCOME, "unauthorized wrong API key\n", &m) > 0);
  assert_int_equal(m.type, SJ_XCTL_UNAUTHORIZED);
  assert_string_equal(m.text, "wrong API key");
  assert_true(parse(SJ_XCTL_AT_WELCOME, "error too many agents\n", &m) > 0);
  assert_int_equal(m.type, SJ_XCTL_ERROR);
  assert_string_equal(m.text, "too many agents");
  expect_error(SJ_XCTL_AT_WELCOME, "ok 1 2\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_WELCOME, "error\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_WELCOME, "error  x\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_WELCOME, "OK\n", SJ_XCTL_EWORD);
  expect_error(SJ_XCTL_AT_WELCOME, "sockjoin-expose 1 open\n", SJ_XCTL_EWORD);
}

static void test_request(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  assert_int_equal(parse(SJ_XCTL_AT_REQUEST, "expose 0\n", &m), 9);
  assert_int_equal(m.type, SJ_XCTL_EXPOSE);
  assert_int_equal(m.port, 0);
  assert_int_equal(m.prefer, 0);
  assert_true(parse(SJ_XCTL_AT_REQUEST, "expose 65535 prefer\n", &m) > 0);
  assert_int_equal(m.port, 65535);
  assert_int_equal(m.prefer, 1);
  expect_error(SJ_XCTL_AT_REQUEST, "expose 65536\n", SJ_XCTL_EPORT);
  expect_error(SJ_XCTL_AT_REQUEST, "expose 080\n", SJ_XCTL_EPORT);
  expect_error(SJ_XCTL_AT_REQUEST, "expose -1\n", SJ_XCTL_EPORT);
  expect_error(SJ_XCTL_AT_REQUEST, "expose 99999999999\n", SJ_XCTL_EPORT);
  expect_error(SJ_XCTL_AT_REQUEST, "expose\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_REQUEST, "expose 80 maybe\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_REQUEST, "expose 80 prefer x\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_REQUEST, "auth none\n", SJ_XCTL_EWORD);
}

static void test_reply(void **state) {
  (void)state;
  sj_xctl_msg_t m;
  assert_true(parse(SJ_XCTL_AT_REPLY, "ok 40000 7\n", &m) > 0);
  assert_int_equal(m.type, SJ_XCTL_EXPOSED);
  assert_int_equal(m.port, 40000);
  assert_int_equal(m.tunnel, 7);
  assert_string_equal(m.text, "");
  assert_true(parse(SJ_XCTL_AT_REPLY, "ok 1 4294967295 tunnel.example.org\n", &m) > 0);
  assert_int_equal(m.tunnel, 4294967295u);
  assert_string_equal(m.text, "tunnel.example.org");
  assert_true(parse(SJ_XCTL_AT_REPLY, "error port 80 is in use\n", &m) > 0);
  assert_int_equal(m.type, SJ_XCTL_ERROR);
  assert_string_equal(m.text, "port 80 is in use");
  expect_error(SJ_XCTL_AT_REPLY, "ok 0 7\n", SJ_XCTL_EPORT);
  expect_error(SJ_XCTL_AT_REPLY, "ok 1 0\n", SJ_XCTL_ETUNNEL);
  expect_error(SJ_XCTL_AT_REPLY, "ok 1 4294967296\n", SJ_XCTL_ETUNNEL);
  expect_error(SJ_XCTL_AT_REPLY, "ok 1\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_REPLY, "ok 1 2 host extra\n", SJ_XCTL_EFIELDS);
  expect_error(SJ_XCTL_AT_REPLY, "unauthorized\n", SJ_XCTL_EWORD);
  char line[SJ_XCTL_LINE_MAX];
  snprintf(line, sizeof line, "ok 1 2 %0201d\n", 0);
  expect_error(SJ_XCTL_AT_REPLY, line, SJ_XCTL_ETEXT);
  snprintf(line, sizeof line, "error %0201d\n", 0);
  expect_error(SJ_XCTL_AT_REPLY, line, SJ_XCTL_ETEXT);
}

/* Formats msg, parses it back at stage, and checks the same message. */
static void round_trip(sj_xctl_stage_t stage, const sj_xctl_msg_t *msg, const char *want) {
  char line[SJ_XCTL_LINE_MAX + 1];
  int n = sj_xctl_format(msg, line, sizeof line);
  assert_true(n > 0);
  assert_string_equal(line, want);
  sj_xctl_msg_t back;
  assert_int_equal(sj_xctl_parse(stage, line, (size_t)n, &back), n);
  assert_int_equal(back.type, msg->type);
  assert_string_equal(back.token, msg->token);
  assert_string_equal(back.agent, msg->agent);
  assert_string_equal(back.text, msg->text);
  assert_int_equal(back.port, msg->port);
  assert_int_equal(back.prefer, msg->prefer);
  assert_int_equal(back.tunnel, msg->tunnel);
}

static void test_format(void **state) {
  (void)state;
  sj_xctl_msg_t m = {.type = SJ_XCTL_HELLO};
  round_trip(SJ_XCTL_AT_HELLO, &m, "sockjoin-expose 1 open\n");
  memcpy(m.token, HEX, sizeof m.token);
  round_trip(SJ_XCTL_AT_HELLO, &m, "sockjoin-expose 1 challenge " HEX "\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_AUTH};
  round_trip(SJ_XCTL_AT_AUTH, &m, "auth none\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_AUTH, .agent = "00112233445566ff"};
  memcpy(m.token, HEX, sizeof m.token);
  round_trip(SJ_XCTL_AT_AUTH, &m, "auth " HEX " 00112233445566ff\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_WELCOME};
  round_trip(SJ_XCTL_AT_WELCOME, &m, "ok\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_UNAUTHORIZED, .text = "wrong API key"};
  round_trip(SJ_XCTL_AT_WELCOME, &m, "unauthorized wrong API key\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_UNAUTHORIZED};
  round_trip(SJ_XCTL_AT_WELCOME, &m, "unauthorized\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSE, .port = 8080, .prefer = 1};
  round_trip(SJ_XCTL_AT_REQUEST, &m, "expose 8080 prefer\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSED, .port = 40001, .tunnel = 3, .text = "h.example"};
  round_trip(SJ_XCTL_AT_REPLY, &m, "ok 40001 3 h.example\n");
  m = (sj_xctl_msg_t){.type = SJ_XCTL_ERROR, .text = "port 80 is in use"};
  round_trip(SJ_XCTL_AT_REPLY, &m, "error port 80 is in use\n");
}

static void test_format_refuses(void **state) {
  (void)state;
  char line[SJ_XCTL_LINE_MAX + 1];
  sj_xctl_msg_t m = {.type = SJ_XCTL_ERROR, .text = "two\nlines"};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_ECHAR);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_ERROR};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EFIELDS);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_ERROR, .text = " padded"};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EFIELDS);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSED, .port = 1, .tunnel = 1, .text = "a host"};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EFIELDS);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSED, .port = 0, .tunnel = 1};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EPORT);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSED, .port = 1, .tunnel = 0};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_ETUNNEL);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_EXPOSE, .port = 70000};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EPORT);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_AUTH, .token = "NOTHEX"};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_ETOKEN);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_AUTH, .agent = "short"};
  assert_int_equal(sj_xctl_format(&m, line, sizeof line), SJ_XCTL_EAGENT);
  m = (sj_xctl_msg_t){.type = SJ_XCTL_ERROR};
  memset(m.text, 'x', SJ_XCTL_TEXT_MAX);
  assert_true(sj_xctl_format(&m, line, sizeof line) > 0);
}

/* ---- keys --------------------------------------------------------------- */

static void check_keys(const char *text, char sep, const char *const *want, size_t n) {
  sj_xkeys_t k = {0};
  char err[128] = "";
  assert_int_equal(sj_xkeys_add_text(&k, text, strlen(text), sep, err, sizeof err), (int)n);
  assert_int_equal(k.n, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(k.items[i].data, want[i]);
    assert_int_equal(k.items[i].len, strlen(want[i]));
  }
  sj_xkeys_free(&k);
}

static void test_keys(void **state) {
  (void)state;
  const char *const two[] = {"k1", "second key"};
  check_keys("k1\nsecond key\n", '\n', two, 2);
  check_keys("# keys\r\n\n  k1 \r\n\tsecond key\n#last", '\n', two, 2);
  check_keys("k1,second key", ',', two, 2);
  check_keys(" k1 ,,second key,", ',', two, 2);
  check_keys("", '\n', NULL, 0);
  check_keys("\n\n# only comments\n", '\n', NULL, 0);
  /* In a list from the environment '#' is an ordinary byte. */
  const char *const hash[] = {"#k"};
  check_keys("#k", ',', hash, 1);
}

static void test_keys_refused(void **state) {
  (void)state;
  sj_xkeys_t k = {0};
  char err[128] = "";
  char big[SJ_XKEY_MAX + 8];
  memset(big, 'k', sizeof big);
  memcpy(big, "ok\n", 3);
  assert_true(sj_xkeys_add_text(&k, big, sizeof big, '\n', err, sizeof err) < 0);
  assert_string_equal(err, "key on line 2 is longer than 1024 bytes");
  sj_xkeys_free(&k);
  assert_true(sj_xkeys_add_text(&k, "a,b\0c", 5, ',', err, sizeof err) < 0);
  assert_string_equal(err, "key number 2 holds a NUL byte");
  sj_xkeys_free(&k);
  assert_true(sj_xkeys_load(&k, "/nonexistent/keys", err, sizeof err) < 0);
  assert_string_equal(err, "API keys file /nonexistent/keys: No such file or directory");
  sj_xkeys_free(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hello),   cmocka_unit_test(test_need_more_and_cap),
      cmocka_unit_test(test_auth),    cmocka_unit_test(test_welcome),
      cmocka_unit_test(test_request), cmocka_unit_test(test_reply),
      cmocka_unit_test(test_format),  cmocka_unit_test(test_format_refuses),
      cmocka_unit_test(test_keys),    cmocka_unit_test(test_keys_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
