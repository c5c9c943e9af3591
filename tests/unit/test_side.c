/* sj_side_parse / sj_side_format: every SIDE form, every way each can be
 * wrong (with the exact reason), boundary ports, and round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sockjoin.h"

/* ---- helpers ------------------------------------------------------------- */

static sj_side_spec_t parse_ok(const char *text) {
  sj_side_spec_t s;
  char err[256] = "";
  int rc = sj_side_parse(text, &s, err, sizeof err);
  if (rc != 0)
    fail_msg("'%s': expected success, got %d (%s)", text, rc, err);
  return s;
}

static void check_bad(const char *text, const char *why) {
  sj_side_spec_t s;
  char err[256];
  memset(err, 'x', sizeof err);
  err[sizeof err - 1] = '\0';
  int rc = sj_side_parse(text, &s, err, sizeof err);
  if (rc != SJ_EBADSIDE)
    fail_msg("'%s': expected SJ_EBADSIDE, got %d", text, rc);
  if (strcmp(err, why) != 0)
    fail_msg("'%s': reason '%s', expected '%s'", text, err, why);
}

static void check_listen(const char *text, const char *host, int port) {
  sj_side_spec_t s = parse_ok(text);
  assert_int_equal(s.kind, SJ_SIDE_LISTEN);
  assert_string_equal(s.host, host);
  assert_int_equal(s.port, port);
  assert_string_equal(s.path, "");
}

static void check_connect(const char *text, const char *host, int port) {
  sj_side_spec_t s = parse_ok(text);
  assert_int_equal(s.kind, SJ_SIDE_CONNECT);
  assert_string_equal(s.host, host);
  assert_int_equal(s.port, port);
  assert_string_equal(s.path, "");
}

static void check_path(const char *text, sj_side_kind_t kind, const char *path) {
  sj_side_spec_t s = parse_ok(text);
  assert_int_equal(s.kind, kind);
  assert_string_equal(s.path, path);
  assert_string_equal(s.host, "");
  assert_int_equal(s.port, 0);
}

/* A string of n copies of ch, after prefix. */
static void repeat(char *buf, size_t size, const char *prefix, char ch, size_t n,
                   const char *suffix) {
  size_t p = strlen(prefix);
  assert_true(p + n + strlen(suffix) < size);
  memcpy(buf, prefix, p);
  memset(buf + p, ch, n);
  strcpy(buf + p + n, suffix);
}

/* ---- good forms ---------------------------------------------------------- */

static void test_listen_port(void **state) {
  (void)state;
  check_listen("listen:9000", "", 9000);
  check_listen("listen:1", "", 1);
  check_listen("listen:00080", "", 80);
}

static void test_listen_host_port(void **state) {
  (void)state;
  check_listen("listen:127.0.0.1:9000", "127.0.0.1", 9000);
  check_listen("listen:localhost:22", "localhost", 22);
  check_listen("listen:my-host_1.example.com:443", "my-host_1.example.com", 443);
  check_listen("listen:0.0.0.0:0", "0.0.0.0", 0);
}

static void test_listen_ipv6(void **state) {
  (void)state;
  check_listen("listen:[::1]:9000", "::1", 9000);
  check_listen("listen:[::]:0", "::", 0);
  check_listen("listen:[fe80::1:2]:65535", "fe80::1:2", 65535);
  check_listen("listen:[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", 80);
}

static void test_listen_empty_host_is_all(void **state) {
  (void)state;
  check_listen("listen::9000", "", 9000);
  check_listen("listen::0", "", 0);
}

static void test_connect_forms(void **state) {
  (void)state;
  check_connect("connect:example.com:22", "example.com", 22);
  check_connect("connect:127.0.0.1:1", "127.0.0.1", 1);
  check_connect("connect:h:65535", "h", 65535);
  check_connect("connect:A-Z_a.z9:8080", "A-Z_a.z9", 8080);
  check_connect("connect:[::1]:22", "::1", 22);
  check_connect("connect:[2001:db8::42]:443", "2001:db8::42", 443);
  check_connect("connect:[::ffff:10.0.0.1]:8", "::ffff:10.0.0.1", 8);
}

static void test_unix_forms(void **state) {
  (void)state;
  check_path("unix-listen:/run/x.sock", SJ_SIDE_UNIX_LISTEN, "/run/x.sock");
  check_path("unix:/run/x.sock", SJ_SIDE_UNIX, "/run/x.sock");
  check_path("unix:relative.sock", SJ_SIDE_UNIX, "relative.sock");
  /* Colons belong to the path: only the first one ends the type. */
  check_path("unix:/tmp/a:b", SJ_SIDE_UNIX, "/tmp/a:b");
  check_path("unix-listen:@x", SJ_SIDE_UNIX_LISTEN, "@x");
}

static void test_unix_path_length_limit(void **state) {
  (void)state;
  char text[512];
  /* 107 bytes fit sun_path with its terminator; 108 do not. */
  repeat(text, sizeof text, "unix:/", 'p', 106, "");
  sj_side_spec_t s = parse_ok(text);
  assert_int_equal(strlen(s.path), 107);
  assert_string_equal(s.path, text + 5);

  repeat(text, sizeof text, "unix-listen:/", 'p', 106, "");
  s = parse_ok(text);
  assert_int_equal(s.kind, SJ_SIDE_UNIX_LISTEN);
  assert_int_equal(strlen(s.path), 107);

  repeat(text, sizeof text, "unix:/", 'p', 107, "");
  check_bad(text, "path too long (max 107 bytes)");
  repeat(text, sizeof text, "unix-listen:/", 'p', 107, "");
  check_bad(text, "path too long (max 107 bytes)");
  repeat(text, sizeof text, "unix:/", 'p', 400, "");
  check_bad(text, "path too long (max 107 bytes)");
}

static void test_stdio(void **state) {
  (void)state;
  sj_side_spec_t s = parse_ok("stdio");
  assert_int_equal(s.kind, SJ_SIDE_STDIO);
  assert_string_equal(s.host, "");
  assert_string_equal(s.path, "");
  assert_int_equal(s.port, 0);
}

static void test_host_length_limit(void **state) {
  (void)state;
  char text[600];
  repeat(text, sizeof text, "connect:", 'h', 255, ":80");
  sj_side_spec_t s = parse_ok(text);
  assert_int_equal(strlen(s.host), 255);
  assert_int_equal(s.port, 80);
  repeat(text, sizeof text, "connect:", 'h', 256, ":80");
  check_bad(text, "host too long");
  repeat(text, sizeof text, "listen:", 'h', 300, ":80");
  check_bad(text, "host too long");
}

/* ---- ports --------------------------------------------------------------- */

static void test_port_boundaries(void **state) {
  (void)state;
  check_listen("listen:0", "", 0); /* 0: the kernel picks */
  check_listen("listen:127.0.0.1:0", "127.0.0.1", 0);
  check_listen("listen:65535", "", 65535);
  check_connect("connect:h:1", "h", 1);
  check_connect("connect:h:65535", "h", 65535);
  check_connect("connect:h:000001", "h", 1);

  check_bad("connect:h:0", "port out of range");
  check_bad("connect:h:00000", "port out of range");
  check_bad("connect:[::1]:0", "port out of range");
  check_bad("listen:65536", "port out of range");
  check_bad("listen:127.0.0.1:65536", "port out of range");
  check_bad("connect:h:65536", "port out of range");
  check_bad("connect:h:99999", "port out of range");
  check_bad("listen:655350", "port out of range");
  check_bad("listen:4294967296", "port out of range");
  check_bad("listen:4294967376", "port out of range");           /* 80 mod 2^32 */
  check_bad("listen:18446744073709551696", "port out of range"); /* 80 mod 2^64 */
  check_bad("connect:h:99999999999999999999999999999999999999999999", "port out of range");
}

static void test_bad_ports(void **state) {
  (void)state;
  check_bad("listen:abc", "bad port 'abc'");
  check_bad("listen:127.0.0.1:abc", "bad port 'abc'");
  check_bad("connect:h:abc", "bad port 'abc'");
  check_bad("connect:[::1]:abc", "bad port 'abc'");
  check_bad("connect:h:-1", "bad port '-1'");
  check_bad("connect:h:+80", "bad port '+80'");
  check_bad("connect:h: 80", "bad port ' 80'");
  check_bad("connect:h:80 ", "bad port '80 '");
  check_bad("connect:h:0x50", "bad port '0x50'");
  check_bad("listen:8o", "bad port '8o'");
  check_bad("connect:h:80:", "IPv6 address must be in brackets");
}

static void test_missing_port(void **state) {
  (void)state;
  check_bad("listen", "missing port");
  check_bad("listen:", "missing port");
  check_bad("listen:127.0.0.1:", "missing port");
  check_bad("listen::", "missing port");
  check_bad("listen:[::1]", "missing port");
  check_bad("listen:[::1]:", "missing port");
  check_bad("connect", "missing port");
  check_bad("connect:", "missing port");
  check_bad("connect:host", "missing port");
  check_bad("connect:host:", "missing port");
  check_bad("connect:[::1]", "missing port");
  check_bad("connect:[::1]:", "missing port");
}

/* ---- hosts --------------------------------------------------------------- */

static void test_missing_host(void **state) {
  (void)state;
  check_bad("connect:1234", "missing host");
  check_bad("connect::80", "missing host");
  check_bad("connect::", "missing host");
}

static void test_bad_host(void **state) {
  (void)state;
  check_bad("connect:ho st:80", "bad host 'ho st'");
  check_bad("connect:h/x:80", "bad host 'h/x'");
  check_bad("connect:user@h:80", "bad host 'user@h'");
  check_bad("listen:a]b:80", "bad host 'a]b'");
  check_bad("listen:*:80", "bad host '*'");
  check_bad("connect:h\xc3\xa9:80", "bad host 'h\xc3\xa9'");
}

static void test_ipv6_errors(void **state) {
  (void)state;
  check_bad("connect:[::1:80", "missing ']'");
  check_bad("listen:[::1", "missing ']'");
  check_bad("listen:[", "missing ']'");
  check_bad("connect:::1:80", "IPv6 address must be in brackets");
  check_bad("listen:::1:80", "IPv6 address must be in brackets");
  check_bad("connect:fe80::1:80", "IPv6 address must be in brackets");
  check_bad("listen:1:2:3", "IPv6 address must be in brackets");
  check_bad("connect:[zz]:80", "bad IPv6 address 'zz'");
  check_bad("connect:[127.0.0.1]:80", "bad IPv6 address '127.0.0.1'");
  check_bad("listen:[::1::2]:80", "bad IPv6 address '::1::2'");
  check_bad("listen:[localhost]:80", "bad IPv6 address 'localhost'");
  check_bad("connect:[]:80", "bad IPv6 address");
  check_bad("connect:[::1]80", "expected ':' after ']'");
  check_bad("connect:[::1]]:80", "expected ':' after ']'");
}

/* ---- types, paths, stdio, options ---------------------------------------- */

static void test_unknown_type(void **state) {
  (void)state;
  check_bad("foo", "unknown type 'foo'");
  check_bad("foo:1", "unknown type 'foo'");
  check_bad("foo,bar", "unknown type 'foo'");
  check_bad("", "unknown type ''");
  check_bad(":80", "unknown type ''");
  check_bad("Listen:80", "unknown type 'Listen'");
  check_bad("listener:80", "unknown type 'listener'");
  check_bad("liste:80", "unknown type 'liste'");
  check_bad("unix-lis:/x", "unknown type 'unix-lis'");
  check_bad("tcp:h:80", "unknown type 'tcp'");
  check_bad("stdin", "unknown type 'stdin'");
}

static void test_missing_path(void **state) {
  (void)state;
  check_bad("unix", "missing path");
  check_bad("unix:", "missing path");
  check_bad("unix-listen", "missing path");
  check_bad("unix-listen:", "missing path");
  check_bad("unix:,x", "missing path");
}

static void test_stdio_errors(void **state) {
  (void)state;
  check_bad("stdio:", "stdio takes no address");
  check_bad("stdio:x", "stdio takes no address");
  check_bad("stdio:0", "stdio takes no address");
  check_bad("stdio,foo", "unknown option 'foo'");
}

static void test_options_refused(void **state) {
  (void)state;
  check_bad("listen:80,foo", "unknown option 'foo'");
  check_bad("listen:80,foo=bar", "unknown option 'foo'");
  check_bad("listen:80,foo,bar", "unknown option 'foo'");
  check_bad("unix-listen:/x,mode=600", "unknown option 'mode'");
  check_bad("listen:80,averyveryverylongoption=1", "unknown option 'averyveryverylongoption'");
  check_bad("listen:80,", "empty option");
  check_bad("listen:80,=1", "empty option");
  check_bad("connect:[::1]:80,auth=x", "bad auth 'x' (expected token:FILE or hmac:FILE)");
  check_bad("connect:h:80,auth=token:", "option 'auth' needs a value");
  check_bad("connect:h:80,auth", "option 'auth' needs a value");
  check_bad("connect:h:80,auth=", "option 'auth' needs a value");
  check_bad("connect:h:80,encrypt=aes:k", "bad encrypt 'aes:k' (expected psk:FILE)");
  check_bad("connect:h:80,tls=1", "option 'tls' takes no value");
  check_bad("connect:h:80,verify=2", "bad verify '2' (expected 0 or 1)");
  check_bad("connect:h:80,cert=c", "cert= given without 'tls'");
  check_bad("connect:h:80,sni=x", "sni= given without 'tls'");
  check_bad("connect:h:80,tls,cert=c", "cert= and key= go together");
  check_bad("listen:80,tls", "a listening tls side needs cert= and key=");
  check_bad("listen:80,tls,cert=c,key=k,sni=x", "sni= is for connecting sides");
  check_bad("listen:80,tls,cert=c,key=k,verify=0", "verify= is for connecting sides");
  /* The address is checked before the options. */
  check_bad("listen:abc,foo", "bad port 'abc'");
}

static void test_options(void **state) {
  (void)state;
  sj_side_spec_t s = parse_ok("listen:9000,auth=hmac:/k,tls,cert=c.pem,key=k.pem,ca=ca.pem");
  assert_int_equal(s.port, 9000);
  assert_int_equal(s.sec.auth, SJ_AUTH_HMAC);
  assert_string_equal(s.sec.auth_file, "/k");
  assert_int_equal(s.sec.tls, 1);
  assert_string_equal(s.sec.cert, "c.pem");
  assert_string_equal(s.sec.key, "k.pem");
  assert_string_equal(s.sec.ca, "ca.pem");
  s = parse_ok("connect:relay:9002,auth=token:t:x,encrypt=psk:e,tls,sni=a.b,verify=0");
  assert_int_equal(s.sec.auth, SJ_AUTH_TOKEN);
  assert_string_equal(s.sec.auth_file, "t:x"); /* the first ':' ends the scheme */
  assert_string_equal(s.sec.encrypt_file, "e");
  assert_string_equal(s.sec.sni, "a.b");
  assert_int_equal(s.sec.no_verify, 1);
  s = parse_ok("stdio,encrypt=psk:e");
  assert_int_equal(s.kind, SJ_SIDE_STDIO);
  assert_string_equal(s.sec.encrypt_file, "e");
  s = parse_ok("connect:h:1,tls,verify=1");
  assert_int_equal(s.sec.no_verify, 0);
  s = parse_ok("unix:/x,tls");
  assert_int_equal(s.sec.tls, 1);
}

/* ---- the err buffer ------------------------------------------------------ */

static void test_err_buffer(void **state) {
  (void)state;
  sj_side_spec_t s;
  /* No buffer at all. */
  assert_int_equal(sj_side_parse("listen:65536", &s, NULL, 0), SJ_EBADSIDE);
  char err[16];
  memset(err, '#', sizeof err);
  assert_int_equal(sj_side_parse("listen:65536", &s, err, 0), SJ_EBADSIDE);
  assert_int_equal(err[0], '#');
  /* A short buffer: truncated, terminated, nothing written past it. */
  memset(err, '#', sizeof err);
  assert_int_equal(sj_side_parse("listen:65536", &s, err, 5), SJ_EBADSIDE);
  assert_string_equal(err, "port");
  for (size_t i = 5; i < sizeof err; i++)
    assert_int_equal(err[i], '#');
  memset(err, '#', sizeof err);
  assert_int_equal(sj_side_parse("listen:65536", &s, err, 1), SJ_EBADSIDE);
  assert_int_equal(err[0], '\0');
  assert_int_equal(err[1], '#');
  /* Success leaves err alone. */
  memset(err, '#', sizeof err);
  assert_int_equal(sj_side_parse("listen:80", &s, err, sizeof err), 0);
  assert_int_equal(err[0], '#');
}

static void test_parse_clears_output(void **state) {
  (void)state;
  sj_side_spec_t s;
  memset(&s, 0x5a, sizeof s);
  assert_int_equal(sj_side_parse("listen:80", &s, NULL, 0), 0);
  assert_string_equal(s.host, "");
  assert_string_equal(s.path, "");
  memset(&s, 0x5a, sizeof s);
  assert_int_equal(sj_side_parse("unix:/x", &s, NULL, 0), 0);
  assert_string_equal(s.host, "");
  assert_int_equal(s.port, 0);
}

/* ---- format -------------------------------------------------------------- */

static void check_format(sj_side_kind_t kind, const char *host, int port, const char *path,
                         const char *want) {
  sj_side_spec_t s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  snprintf(s.host, sizeof s.host, "%s", host);
  s.port = port;
  snprintf(s.path, sizeof s.path, "%s", path);
  char buf[512];
  int n = sj_side_format(&s, buf, sizeof buf);
  assert_string_equal(buf, want);
  assert_int_equal(n, strlen(want));
  assert_int_equal(sj_side_format(&s, NULL, 0), strlen(want));
}

static void test_format(void **state) {
  (void)state;
  check_format(SJ_SIDE_LISTEN, "", 9000, "", "listen:9000");
  check_format(SJ_SIDE_LISTEN, "", 0, "", "listen:0");
  check_format(SJ_SIDE_LISTEN, "127.0.0.1", 9000, "", "listen:127.0.0.1:9000");
  check_format(SJ_SIDE_LISTEN, "::1", 9000, "", "listen:[::1]:9000");
  check_format(SJ_SIDE_LISTEN, "::", 0, "", "listen:[::]:0");
  check_format(SJ_SIDE_CONNECT, "example.com", 22, "", "connect:example.com:22");
  check_format(SJ_SIDE_CONNECT, "2001:db8::1", 65535, "", "connect:[2001:db8::1]:65535");
  check_format(SJ_SIDE_UNIX_LISTEN, "", 0, "/run/x.sock", "unix-listen:/run/x.sock");
  check_format(SJ_SIDE_UNIX, "", 0, "rel.sock", "unix:rel.sock");
  check_format(SJ_SIDE_STDIO, "", 0, "", "stdio");
}

static void test_format_small_buffer(void **state) {
  (void)state;
  sj_side_spec_t s = parse_ok("connect:[::1]:22");
  char buf[32];
  memset(buf, '#', sizeof buf);
  int n = sj_side_format(&s, buf, 8);
  assert_int_equal(n, strlen("connect:[::1]:22"));
  assert_string_equal(buf, "connect");
  for (size_t i = 8; i < sizeof buf; i++)
    assert_int_equal(buf[i], '#');
  memset(buf, '#', sizeof buf);
  assert_int_equal(sj_side_format(&s, buf, 1), n);
  assert_int_equal(buf[0], '\0');
  assert_int_equal(buf[1], '#');
  /* Exactly the text's length is one byte short of the terminator. */
  memset(buf, '#', sizeof buf);
  assert_int_equal(sj_side_format(&s, buf, (size_t)n), n);
  assert_int_equal(strlen(buf), (size_t)n - 1);
  assert_int_equal(sj_side_format(&s, buf, (size_t)n + 1), n);
  assert_string_equal(buf, "connect:[::1]:22");
}

/* ---- round trips --------------------------------------------------------- */

static void check_round_trip(const char *text, const char *canonical) {
  sj_side_spec_t a = parse_ok(text);
  char buf[512];
  int n = sj_side_format(&a, buf, sizeof buf);
  assert_true(n > 0 && (size_t)n < sizeof buf);
  if (strcmp(buf, canonical) != 0)
    fail_msg("'%s' formats as '%s', expected '%s'", text, buf, canonical);
  sj_side_spec_t b = parse_ok(buf);
  assert_memory_equal(&a, &b, sizeof a);
  /* And the canonical text is a fixed point. */
  char again[512];
  sj_side_format(&b, again, sizeof again);
  assert_string_equal(again, buf);
}

static void test_round_trip(void **state) {
  (void)state;
  check_round_trip("listen:9000", "listen:9000");
  check_round_trip("listen::9000", "listen:9000");
  check_round_trip("listen:00080", "listen:80");
  check_round_trip("listen:0", "listen:0");
  check_round_trip("listen:127.0.0.1:0", "listen:127.0.0.1:0");
  check_round_trip("listen:localhost:65535", "listen:localhost:65535");
  check_round_trip("listen:[::1]:9000", "listen:[::1]:9000");
  check_round_trip("listen:[::]:1", "listen:[::]:1");
  check_round_trip("connect:example.com:22", "connect:example.com:22");
  check_round_trip("connect:[::1]:22", "connect:[::1]:22");
  check_round_trip("connect:[::ffff:1.2.3.4]:5", "connect:[::ffff:1.2.3.4]:5");
  check_round_trip("connect:a_b-c.d:0001", "connect:a_b-c.d:1");
  check_round_trip("unix-listen:/run/x.sock", "unix-listen:/run/x.sock");
  check_round_trip("unix:/tmp/a:b", "unix:/tmp/a:b");
  check_round_trip("stdio", "stdio");
  check_round_trip("listen:9000,auth=hmac:k,tls,key=k.pem,cert=c.pem",
                   "listen:9000,tls,cert=c.pem,key=k.pem,auth=hmac:k");
  check_round_trip("connect:h:1,encrypt=psk:e,tls,verify=0,sni=x,ca=a",
                   "connect:h:1,tls,ca=a,sni=x,verify=0,encrypt=psk:e");
  check_round_trip("stdio,auth=token:t", "stdio,auth=token:t");

  char text[512];
  repeat(text, sizeof text, "unix:/", 'p', 106, "");
  check_round_trip(text, text);
  repeat(text, sizeof text, "connect:", 'h', 255, ":65535");
  check_round_trip(text, text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_listen_port),
      cmocka_unit_test(test_listen_host_port),
      cmocka_unit_test(test_listen_ipv6),
      cmocka_unit_test(test_listen_empty_host_is_all),
      cmocka_unit_test(test_connect_forms),
      cmocka_unit_test(test_unix_forms),
      cmocka_unit_test(test_unix_path_length_limit),
      cmocka_unit_test(test_stdio),
      cmocka_unit_test(test_host_length_limit),
      cmocka_unit_test(test_port_boundaries),
      cmocka_unit_test(test_bad_ports),
      cmocka_unit_test(test_missing_port),
      cmocka_unit_test(test_missing_host),
      cmocka_unit_test(test_bad_host),
      cmocka_unit_test(test_ipv6_errors),
      cmocka_unit_test(test_unknown_type),
      cmocka_unit_test(test_missing_path),
      cmocka_unit_test(test_stdio_errors),
      cmocka_unit_test(test_options_refused),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_err_buffer),
      cmocka_unit_test(test_parse_clears_output),
      cmocka_unit_test(test_format),
      cmocka_unit_test(test_format_small_buffer),
      cmocka_unit_test(test_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
