/* The options of `sockjoin server` and `sockjoin expose`
 * (src/cli/expose_options.c): defaults, every value form, and the
 * refusals that name the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "expose_options.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static cli_server_config_t scfg;
static cli_expose_config_t ecfg;
static char err[512];

static xcli_action_t server(int argc, char **argv) {
  return cli_server_parse(argc, argv, &scfg, err, sizeof err);
}

static xcli_action_t expose(int argc, char **argv) {
  return cli_expose_parse(argc, argv, &ecfg, err, sizeof err);
}

static void test_server_defaults(void **state) {
  (void)state;
  char *argv[] = {"server"};
  assert_int_equal(server(ARGC(argv), argv), XCLI_RUN);
  assert_int_equal(scfg.listen.kind, SJ_SIDE_LISTEN);
  assert_string_equal(scfg.listen.host, "");
  assert_int_equal(scfg.listen.port, 7835);
  assert_int_equal(scfg.opts.port_lo, 0);
  assert_int_equal(scfg.opts.max_tunnels, 64);
  assert_int_equal(scfg.opts.max_streams, 1024);
  assert_true(scfg.opts.grace_s == 30);
  assert_int_equal(scfg.opts.heartbeat_ms, 10000);
  assert_int_equal(scfg.opts.heartbeat_timeout_ms, 30000);
  assert_int_equal(scfg.opts.transport, SJ_XCARRIER_TCP);
  assert_int_equal(scfg.opts.no_auth, 0);
}

static void test_server_values(void **state) {
  (void)state;
  char *argv[] = {"server",
                  "--listen",
                  "127.0.0.1:0",
                  "--public-host=tunnel.example.org",
                  "--public-bind",
                  "::1",
                  "--port-range",
                  "40000-40099",
                  "--tls-cert",
                  "c.pem",
                  "--tls-key",
                  "k.pem",
                  "--grace",
                  "0.5",
                  "--heartbeat",
                  "0.2",
                  "--heartbeat-timeout",
                  "1",
                  "--max-streams",
                  "8",
                  "--buffer",
                  "64k",
                  "--transport",
                  "ws",
                  "--ws-path",
                  "/t",
                  "--no-auth",
                  "-v"};
  assert_int_equal(server(ARGC(argv), argv), XCLI_RUN);
  assert_string_equal(scfg.listen.host, "127.0.0.1");
  assert_int_equal(scfg.listen.port, 0);
  assert_string_equal(scfg.opts.public_host, "tunnel.example.org");
  assert_string_equal(scfg.opts.public_bind, "::1");
  assert_int_equal(scfg.opts.port_lo, 40000);
  assert_int_equal(scfg.opts.port_hi, 40099);
  assert_string_equal(scfg.opts.tls_cert, "c.pem");
  assert_true(scfg.opts.grace_s == 0.5);
  assert_int_equal(scfg.opts.heartbeat_ms, 200);
  assert_int_equal(scfg.opts.heartbeat_timeout_ms, 1000);
  assert_int_equal(scfg.opts.max_streams, 8);
  assert_int_equal(scfg.opts.buffer_size, 64 * 1024);
  assert_int_equal(scfg.opts.transport, SJ_XCARRIER_WS);
  assert_string_equal(scfg.opts.ws_path, "/t");
  assert_int_equal(scfg.opts.no_auth, 1);
  assert_int_equal(scfg.opts.verbose, 1);
}

static void expect_server_error(char **argv, int argc, const char *want) {
  assert_int_equal(server(argc, argv), XCLI_USAGE_ERROR);
  assert_string_equal(err, want);
}

static void test_server_refusals(void **state) {
  (void)state;
  char *a[] = {"server", "--port-range", "5-4"};
  expect_server_error(a, ARGC(a),
                      "bad --port-range '5-4': expected LO-HI with 1 <= LO <= HI "
                      "<= 65535");
  char *b[] = {"server", "--port-range", "0-4"};
  expect_server_error(b, ARGC(b),
                      "bad --port-range '0-4': expected LO-HI with 1 <= LO <= HI "
                      "<= 65535");
  char *c[] = {"server", "--public-host", "a b"};
  expect_server_error(c, ARGC(c),
                      "bad --public-host 'a b': expected a host name (printable, no spaces)");
  char *d[] = {"server", "--tls-key", "k.pem"};
  expect_server_error(d, ARGC(d), "--tls-cert and --tls-key go together");
  char *e[] = {"server", "--grace"};
  expect_server_error(e, ARGC(e), "--grace needs a value");
  char *f[] = {"server", "extra"};
  expect_server_error(f, ARGC(f), "unexpected argument 'extra' (see --help)");
  char *g[] = {"server", "--no-auth", "--api-keys-file", "keys"};
  expect_server_error(g, ARGC(g), "--no-auth and --api-keys-file contradict each other");
  char *h[] = {"server", "--max-agents", "1000001"};
  expect_server_error(h, ARGC(h),
                      "bad --max-agents '1000001': expected a whole number from 1 to 1000000");
}

static void test_expose_values(void **state) {
  (void)state;
  char *argv[] = {"expose",
                  "127.0.0.1:8000",
                  "9000",
                  "[::1]:22",
                  "--server",
                  "example.org",
                  "--remote-port",
                  "40000",
                  "--remote-port=0",
                  "--tls",
                  "--ca",
                  "ca.pem",
                  "--retry-max",
                  "2",
                  "--api-key",
                  "s3cret"};
  assert_int_equal(expose(ARGC(argv), argv), XCLI_RUN);
  assert_int_equal(ecfg.opts.n_tunnels, 3);
  assert_ptr_equal(ecfg.opts.tunnels, ecfg.tunnels);
  assert_string_equal(ecfg.tunnels[0].local_host, "127.0.0.1");
  assert_int_equal(ecfg.tunnels[0].local_port, 8000);
  assert_int_equal(ecfg.tunnels[0].remote_port, 40000);
  assert_string_equal(ecfg.tunnels[1].local_host, "127.0.0.1"); /* a bare port */
  assert_int_equal(ecfg.tunnels[1].local_port, 9000);
  assert_int_equal(ecfg.tunnels[1].remote_port, 0);
  assert_string_equal(ecfg.tunnels[2].local_host, "::1");
  assert_int_equal(ecfg.tunnels[2].local_port, 22);
  assert_string_equal(ecfg.opts.server_host, "example.org");
  assert_int_equal(ecfg.opts.server_port, 7835);
  assert_int_equal(ecfg.opts.tls, 1);
  assert_string_equal(ecfg.opts.ca, "ca.pem");
  assert_true(ecfg.opts.retry_max_s == 2);
  assert_true(ecfg.opts.retry_min_s == 0.5);
  assert_int_equal(ecfg.has_api_key, 1);
  assert_string_equal(ecfg.api_key, "s3cret");
}

static void expect_expose_error(char **argv, int argc, const char *want) {
  assert_int_equal(expose(argc, argv), XCLI_USAGE_ERROR);
  assert_string_equal(err, want);
}

static void test_expose_refusals(void **state) {
  (void)state;
  char *a[] = {"expose", "80"};
  expect_expose_error(a, ARGC(a), "--server HOST[:PORT] is required");
  char *b[] = {"expose", "--server", "h"};
  expect_expose_error(b, ARGC(b), "expected a LOCAL_HOST:PORT to expose (see --help)");
  char *c[] = {"expose", "80", "--server", "h", "--insecure"};
  expect_expose_error(c, ARGC(c), "--insecure needs --tls");
  char *d[] = {"expose", "80", "--server", "h", "--api-key", "k", "--api-key-file", "f"};
  expect_expose_error(d, ARGC(d), "--api-key and --api-key-file contradict each other");
  char *e[] = {"expose", "80", "--server", "h:0"};
  assert_int_equal(expose(ARGC(e), e), XCLI_USAGE_ERROR);
  assert_non_null(strstr(err, "bad --server 'h:0'"));
  char *f[] = {"expose", "80", "--server", "h", "--api-key", ""};
  expect_expose_error(f, ARGC(f), "bad --api-key '': expected 1 to 1024 bytes");
  char *g[] = {"expose", "80", "--server", "h", "--connect-timeout", "-1"};
  expect_expose_error(g, ARGC(g), "bad --connect-timeout '-1': expected seconds > 0");
}

static void test_help(void **state) {
  (void)state;
  char *a[] = {"server", "--port-range", "1-2", "-h"};
  assert_int_equal(server(ARGC(a), a), XCLI_HELP);
  char *b[] = {"expose", "--help"};
  assert_int_equal(expose(ARGC(b), b), XCLI_HELP);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_defaults), cmocka_unit_test(test_server_values),
      cmocka_unit_test(test_server_refusals), cmocka_unit_test(test_expose_values),
      cmocka_unit_test(test_expose_refusals), cmocka_unit_test(test_help),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
