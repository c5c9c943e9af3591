/* cli_parse: defaults, every option in both spellings, every usage error
 * with its exact message, help and version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "options.h"

/* ---- helpers ------------------------------------------------------------- */

static char err_buf[512];

/* Parses {"sockjoin", args..., NULL}. */
static cli_action_t parse_list(cli_config_t *cfg, const char *const *args) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = (char *)"sockjoin";
  for (; *args != NULL; args++) {
    assert_true(argc < 63);
    argv[argc++] = (char *)*args;
  }
  argv[argc] = NULL;
  memset(err_buf, 0, sizeof err_buf);
  return cli_parse(argc, argv, cfg, err_buf, sizeof err_buf);
}

#define PARSE(cfg, ...) parse_list((cfg), (const char *const[]){__VA_ARGS__, NULL})
#define PARSE_NONE(cfg) parse_list((cfg), (const char *const[]){NULL})

#define A_SIDE "listen:9000"
#define B_SIDE "connect:example.com:80"

/* Runs with two good sides appended and expects CLI_RUN. */
#define PARSE_RUN(cfg, ...)                                                                        \
  do {                                                                                             \
    cli_action_t act_ = PARSE((cfg), __VA_ARGS__, A_SIDE, B_SIDE);                                 \
    if (act_ != CLI_RUN)                                                                           \
      fail_msg("expected CLI_RUN, got %d: %s", (int)act_, err_buf);                                \
  } while (0)

/* Expects CLI_USAGE_ERROR with exactly this message. */
#define PARSE_ERR(msg, ...)                                                                        \
  do {                                                                                             \
    cli_config_t cfg_;                                                                             \
    cli_action_t act_ = PARSE(&cfg_, __VA_ARGS__);                                                 \
    if (act_ != CLI_USAGE_ERROR)                                                                   \
      fail_msg("expected a usage error '%s', got action %d", (msg), (int)act_);                    \
    if (strcmp(err_buf, (msg)) != 0)                                                               \
      fail_msg("message '%s', expected '%s'", err_buf, (msg));                                     \
  } while (0)

static void assert_keepalive(sj_keepalive_t ka, int enable, unsigned idle, unsigned intvl,
                             unsigned count) {
  assert_int_equal(ka.enable, enable);
  assert_int_equal(ka.idle_s, idle);
  assert_int_equal(ka.interval_s, intvl);
  assert_int_equal(ka.count, count);
}

/* ---- defaults ------------------------------------------------------------ */

static void test_defaults(void **state) {
  (void)state;
  cli_config_t cfg;
  assert_int_equal(PARSE(&cfg, A_SIDE, B_SIDE), CLI_RUN);
  assert_int_equal(cfg.opts.verbose, 0);
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_OFF);
  assert_true(cfg.opts.timeout_s == 0);
  assert_true(cfg.opts.connect_timeout_s == 10);
  assert_int_equal(cfg.opts.buffer_size, 262144);
  assert_int_equal(cfg.opts.max_pairs, 0);
  assert_keepalive(cfg.opts.keepalive, 1, 60, 10, 5);
  assert_null(cfg.opts.log_cb);
  assert_null(cfg.opts.on_pair);
  assert_null(cfg.opts.on_pair_closed);
  assert_null(cfg.opts.on_done);
  assert_null(cfg.opts.data);
  assert_int_equal(cfg.stats, 0);

  assert_int_equal(cfg.side[0].kind, SJ_SIDE_LISTEN);
  assert_string_equal(cfg.side[0].host, "");
  assert_int_equal(cfg.side[0].port, 9000);
  assert_int_equal(cfg.side[1].kind, SJ_SIDE_CONNECT);
  assert_string_equal(cfg.side[1].host, "example.com");
  assert_int_equal(cfg.side[1].port, 80);
}

static void test_defaults_match_library(void **state) {
  (void)state;
  cli_config_t cfg;
  sj_options_t lib;
  sj_options_init(&lib);
  assert_int_equal(PARSE(&cfg, "stdio", "unix:/x"), CLI_RUN);
  assert_memory_equal(&cfg.opts, &lib, sizeof lib);
  assert_int_equal(cfg.side[0].kind, SJ_SIDE_STDIO);
  assert_int_equal(cfg.side[1].kind, SJ_SIDE_UNIX);
  assert_string_equal(cfg.side[1].path, "/x");
}

static void test_config_reset_between_calls(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "-v", "--stats", "--timeout", "3", "--no-keepalive");
  assert_int_equal(cfg.opts.verbose, 1);
  PARSE_RUN(&cfg, "--max-pairs", "2");
  assert_int_equal(cfg.opts.verbose, 0);
  assert_int_equal(cfg.stats, 0);
  assert_true(cfg.opts.timeout_s == 0);
  assert_keepalive(cfg.opts.keepalive, 1, 60, 10, 5);
  assert_int_equal(cfg.opts.max_pairs, 2);
}

/* ---- flags --------------------------------------------------------------- */

static void test_verbose(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "-v");
  assert_int_equal(cfg.opts.verbose, 1);
  PARSE_RUN(&cfg, "--verbose");
  assert_int_equal(cfg.opts.verbose, 1);
  /* Options may come after the sides too. */
  assert_int_equal(PARSE(&cfg, A_SIDE, B_SIDE, "-v"), CLI_RUN);
  assert_int_equal(cfg.opts.verbose, 1);
  assert_int_equal(PARSE(&cfg, A_SIDE, "--verbose", B_SIDE), CLI_RUN);
  assert_int_equal(cfg.opts.verbose, 1);
}

static void test_log_traffic(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--log-traffic");
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_ASCII);
  PARSE_RUN(&cfg, "--log-traffic=ascii");
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_ASCII);
  PARSE_RUN(&cfg, "--log-traffic=hex");
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_HEX);
  PARSE_RUN(&cfg, "--log-traffic=hex", "--log-traffic");
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_ASCII);
  /* The mode only attaches with '=': a following "hex" is a side. */
  PARSE_ERR("expected two sides, got 3 (see --help)", "--log-traffic", "hex", A_SIDE, B_SIDE);
}

static void test_stats(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--stats");
  assert_int_equal(cfg.stats, 1);
}

static void test_workers(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "-v"); /* listen: and connect: sides appended */
  assert_int_equal(cfg.workers, 0); /* one, the default */
  PARSE_RUN(&cfg, "--workers", "2");
  assert_int_equal(cfg.workers, 2);
  PARSE_RUN(&cfg, "--workers=64");
  assert_int_equal(cfg.workers, 64);
  assert_int_equal(PARSE(&cfg, "--workers", "2", "unix:/a", "listen:0"), CLI_RUN);
  assert_int_equal(PARSE(&cfg, "--workers=1", "listen:0", "listen:0"), CLI_RUN); /* any mode */
  PARSE_RUN(&cfg, "--workers", "auto"); /* counted when the workers start */
  assert_int_equal(cfg.workers_auto, 1);
  PARSE_ERR("bad --workers '0': expected a whole number from 1 to 64, or auto", "--workers",
            "0", A_SIDE, B_SIDE);
  PARSE_ERR("bad --workers 'Auto': expected a whole number from 1 to 64, or auto", "--workers",
            "Auto", A_SIDE, B_SIDE);
  /* auto follows the rules of more than one worker even on one CPU, so
   * that a command line is valid or not whatever machine it runs on */
  PARSE_ERR("--workers needs a listen: side and a connect: or unix: side", "--workers", "auto",
            "listen:0", "listen:0");
  PARSE_ERR("--workers cannot be combined with --max-pairs", "--workers", "auto", "--max-pairs",
            "1", A_SIDE, B_SIDE);
  PARSE_ERR("--workers needs a listen: side and a connect: or unix: side", "--workers", "2",
            "listen:0", "listen:0");
  PARSE_ERR("--workers needs a listen: side and a connect: or unix: side", "--workers", "2",
            "connect:h:1", "connect:h:2");
  PARSE_ERR("--workers cannot be combined with --timeout", "--workers", "2", "--timeout", "1",
            A_SIDE, B_SIDE);
  PARSE_ERR("--workers cannot be combined with --max-pairs", "--workers", "2", "--max-pairs",
            "1", A_SIDE, B_SIDE);
}

static void test_no_keepalive(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--no-keepalive");
  sj_keepalive_t off = SJ_KEEPALIVE_DISABLED;
  assert_memory_equal(&cfg.opts.keepalive, &off, sizeof off);
  assert_keepalive(cfg.opts.keepalive, 0, 0, 0, 0);
}

/* ---- valued options, both spellings -------------------------------------- */

static void test_timeout(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--timeout", "5");
  assert_true(cfg.opts.timeout_s == 5.0);
  PARSE_RUN(&cfg, "--timeout=5");
  assert_true(cfg.opts.timeout_s == 5.0);
  PARSE_RUN(&cfg, "--timeout", "0.25");
  assert_true(cfg.opts.timeout_s == 0.25);
  PARSE_RUN(&cfg, "--timeout=.5");
  assert_true(cfg.opts.timeout_s == 0.5);
  PARSE_RUN(&cfg, "--timeout=0.001"); /* a millisecond, the least */
  assert_true(cfg.opts.timeout_s == 0.001);
  PARSE_RUN(&cfg, "--timeout", "31536000"); /* a year */
  assert_true(cfg.opts.timeout_s == 31536000.0);
  PARSE_RUN(&cfg, "--timeout", "1", "--timeout=2"); /* the last wins */
  assert_true(cfg.opts.timeout_s == 2.0);
  assert_true(cfg.opts.connect_timeout_s == 10); /* untouched */
}

static void test_connect_timeout(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--connect-timeout", "2.5");
  assert_true(cfg.opts.connect_timeout_s == 2.5);
  PARSE_RUN(&cfg, "--connect-timeout=2.5");
  assert_true(cfg.opts.connect_timeout_s == 2.5);
  PARSE_RUN(&cfg, "--connect-timeout=0.001");
  assert_true(cfg.opts.connect_timeout_s == 0.001);
  assert_true(cfg.opts.timeout_s == 0); /* untouched */
}

static void test_max_pairs(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--max-pairs", "3");
  assert_int_equal(cfg.opts.max_pairs, 3);
  PARSE_RUN(&cfg, "--max-pairs=3");
  assert_int_equal(cfg.opts.max_pairs, 3);
  PARSE_RUN(&cfg, "--max-pairs=1");
  assert_int_equal(cfg.opts.max_pairs, 1);
  PARSE_RUN(&cfg, "--max-pairs", "1000000000");
  assert_int_equal(cfg.opts.max_pairs, 1000000000);
}

static void test_buffer(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--buffer", "4096");
  assert_int_equal(cfg.opts.buffer_size, 4096);
  PARSE_RUN(&cfg, "--buffer=4096");
  assert_int_equal(cfg.opts.buffer_size, 4096);
  PARSE_RUN(&cfg, "--buffer=1");
  assert_int_equal(cfg.opts.buffer_size, 1);
}

static void test_buffer_suffixes(void **state) {
  (void)state;
  static const struct {
    const char *text;
    size_t bytes;
  } ok[] = {
      {"64k", 65536},
      {"64K", 65536},
      {"1m", 1048576},
      {"1M", 1048576},
      {"3m", 3145728},
      {"1g", 1073741824},
      {"1G", 1073741824},
      {"1024m", 1073741824},
      {"1048576k", 1073741824},
      {"1073741824", 1073741824},
      {"1k", 1024},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cli_config_t cfg;
    char arg[64];
    snprintf(arg, sizeof arg, "--buffer=%s", ok[i].text);
    PARSE_RUN(&cfg, arg);
    assert_int_equal(cfg.opts.buffer_size, ok[i].bytes);
    PARSE_RUN(&cfg, "--buffer", ok[i].text);
    assert_int_equal(cfg.opts.buffer_size, ok[i].bytes);
  }
}

static void test_keepalive(void **state) {
  (void)state;
  cli_config_t cfg;
  PARSE_RUN(&cfg, "--keepalive", "30,5,3");
  assert_keepalive(cfg.opts.keepalive, 1, 30, 5, 3);
  PARSE_RUN(&cfg, "--keepalive=30,5,3");
  assert_keepalive(cfg.opts.keepalive, 1, 30, 5, 3);
  PARSE_RUN(&cfg, "--keepalive=1,1,1");
  assert_keepalive(cfg.opts.keepalive, 1, 1, 1, 1);
  PARSE_RUN(&cfg, "--keepalive=32767,32767,127"); /* the most Linux takes */
  assert_keepalive(cfg.opts.keepalive, 1, 32767, 32767, 127);
}

/* ---- usage errors -------------------------------------------------------- */

static void test_unknown_options(void **state) {
  (void)state;
  PARSE_ERR("unknown option '--bogus'", "--bogus", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--bogus'", "--bogus=1", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '-x'", "-x", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '-vv'", "-vv", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--'", "--", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--time'", "--time", "5", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--timeouts'", "--timeouts=5", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--verbose'", "--verbose=1", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--stats'", "--stats=yes", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--no-keepalive'", "--no-keepalive=1", A_SIDE, B_SIDE);
  PARSE_ERR("unknown option '--log-traffics'", "--log-traffics", A_SIDE, B_SIDE);
  /* Errors are reported as they are met, before the sides are looked at. */
  PARSE_ERR("unknown option '--bogus'", "--bogus");
  PARSE_ERR("unknown option '--bogus'", "--bogus", "--help");
}

static void test_missing_values(void **state) {
  (void)state;
  PARSE_ERR("--timeout needs a value", A_SIDE, B_SIDE, "--timeout");
  PARSE_ERR("--connect-timeout needs a value", A_SIDE, B_SIDE, "--connect-timeout");
  PARSE_ERR("--max-pairs needs a value", A_SIDE, B_SIDE, "--max-pairs");
  PARSE_ERR("--buffer needs a value", A_SIDE, B_SIDE, "--buffer");
  PARSE_ERR("--keepalive needs a value", A_SIDE, B_SIDE, "--keepalive");
  /* The next argument is taken as the value, whatever it looks like. */
  /* Seconds are plain decimals: no sign, space, hex or exponent; at least 1 ms. */
  PARSE_ERR("bad --timeout ' 5': expected seconds > 0", "--timeout", " 5", A_SIDE, B_SIDE);
  PARSE_ERR("bad --timeout '0x10': expected seconds > 0", "--timeout", "0x10", A_SIDE, B_SIDE);
  PARSE_ERR("bad --timeout '1e-9': expected seconds > 0", "--timeout", "1e-9", A_SIDE, B_SIDE);
  PARSE_ERR("bad --timeout '0.0001': expected seconds > 0", "--timeout", "0.0001", A_SIDE,
            B_SIDE);
  PARSE_ERR("bad --connect-timeout '+1': expected seconds > 0", "--connect-timeout", "+1",
            A_SIDE, B_SIDE);
  PARSE_ERR("bad --keepalive '32768,10,5': expected IDLE,INTERVAL,COUNT (seconds up to 32767, "
            "probes up to 127)", "--keepalive", "32768,10,5", A_SIDE, B_SIDE);
  PARSE_ERR("bad --keepalive '60,10,128': expected IDLE,INTERVAL,COUNT (seconds up to 32767, "
            "probes up to 127)", "--keepalive", "60,10,128", A_SIDE, B_SIDE);
  PARSE_ERR("bad --keepalive ',60,10,5': expected IDLE,INTERVAL,COUNT (seconds up to 32767, probes up to 127)",
            "--keepalive", ",60,10,5", A_SIDE, B_SIDE);
  PARSE_ERR("bad --timeout '--verbose': expected seconds > 0", "--timeout", "--verbose", A_SIDE,
            B_SIDE);
  PARSE_ERR("bad --max-pairs 'listen:9000': expected a whole number >= 1", "--max-pairs", A_SIDE,
            B_SIDE);
}

#define SECONDS_HINT "expected seconds > 0"

static void test_bad_seconds(void **state) {
  (void)state;
  static const char *const bad[] = {"0",    "-1",       "abc", "5s",    "",    "inf", "nan",
                                    "-inf", "31536001", "1e9", "1e999", "0.0", "-0"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char arg[64], want[128];
    snprintf(arg, sizeof arg, "--timeout=%s", bad[i]);
    snprintf(want, sizeof want, "bad --timeout '%s': " SECONDS_HINT, bad[i]);
    PARSE_ERR(want, arg, A_SIDE, B_SIDE);
    PARSE_ERR(want, "--timeout", bad[i], A_SIDE, B_SIDE);
    snprintf(arg, sizeof arg, "--connect-timeout=%s", bad[i]);
    snprintf(want, sizeof want, "bad --connect-timeout '%s': " SECONDS_HINT, bad[i]);
    PARSE_ERR(want, arg, A_SIDE, B_SIDE);
    PARSE_ERR(want, "--connect-timeout", bad[i], A_SIDE, B_SIDE);
  }
}

static void test_bad_max_pairs(void **state) {
  (void)state;
  static const char *const bad[] = {
      "0", "-1", "1.5", "abc", "", "1k", "1000000001", "99999999999999999999999", " 1", "+1", "1 "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char arg[64], want[128];
    snprintf(arg, sizeof arg, "--max-pairs=%s", bad[i]);
    snprintf(want, sizeof want, "bad --max-pairs '%s': expected a whole number >= 1", bad[i]);
    PARSE_ERR(want, arg, A_SIDE, B_SIDE);
    PARSE_ERR(want, "--max-pairs", bad[i], A_SIDE, B_SIDE);
  }
}

static void test_bad_buffer(void **state) {
  (void)state;
  static const char *const bad[] = {"2g", "2G", "1025m", "1048577k", "1073741825", "0", "0k", "-1",
                                    "", "k", "64kb", "64x", "1.5m", " 64", "+64", "64 ",
                                    "99999999999999999999999",
                                    /* would wrap around to 1G and 1k when shifted */
                                    "17179869185g", "18014398509481985k"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char arg[64], want[160];
    snprintf(arg, sizeof arg, "--buffer=%s", bad[i]);
    snprintf(want, sizeof want,
             "bad --buffer '%s': expected bytes from 1 to 1G (k, m, g suffixes allowed)", bad[i]);
    PARSE_ERR(want, arg, A_SIDE, B_SIDE);
    PARSE_ERR(want, "--buffer", bad[i], A_SIDE, B_SIDE);
  }
}

static void test_bad_keepalive(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",           "60",      "60,10",
      "60,10,5,1",  "0,10,5",  "60,0,5",
      "60,10,0",    "60,,5",   "60,10,5,",
      "a,b,c",      "60,10,x", "604801,1,1",
      "1,604801,1", "-1,1,1",  "1.5,1,1",
      ",,,",        "60;10;5", "1,1,1111111111111111111111111111111111111111111111111111111111111"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char arg[128], want[256];
    snprintf(arg, sizeof arg, "--keepalive=%s", bad[i]);
    snprintf(want, sizeof want,
             "bad --keepalive '%s': expected IDLE,INTERVAL,COUNT (seconds up to 32767, probes up to 127)", bad[i]);
    PARSE_ERR(want, arg, A_SIDE, B_SIDE);
    PARSE_ERR(want, "--keepalive", bad[i], A_SIDE, B_SIDE);
  }
}

static void test_bad_log_traffic(void **state) {
  (void)state;
  PARSE_ERR("bad --log-traffic 'foo': expected ascii or hex", "--log-traffic=foo", A_SIDE, B_SIDE);
  PARSE_ERR("bad --log-traffic '': expected ascii or hex", "--log-traffic=", A_SIDE, B_SIDE);
  PARSE_ERR("bad --log-traffic 'HEX': expected ascii or hex", "--log-traffic=HEX", A_SIDE, B_SIDE);
}

static void test_keepalive_conflict(void **state) {
  (void)state;
  PARSE_ERR("--keepalive and --no-keepalive conflict", "--keepalive", "1,1,1", "--no-keepalive",
            A_SIDE, B_SIDE);
  PARSE_ERR("--keepalive and --no-keepalive conflict", "--no-keepalive", "--keepalive=1,1,1",
            A_SIDE, B_SIDE);
  /* Checked before the sides are counted. */
  PARSE_ERR("--keepalive and --no-keepalive conflict", "--no-keepalive", "--keepalive=1,1,1");
}

static void test_side_count(void **state) {
  (void)state;
  cli_config_t cfg;
  assert_int_equal(PARSE_NONE(&cfg), CLI_USAGE_ERROR);
  assert_string_equal(err_buf, "expected two sides, got 0 (see --help)");
  PARSE_ERR("expected two sides, got 0 (see --help)", "-v");
  PARSE_ERR("expected two sides, got 1 (see --help)", A_SIDE);
  PARSE_ERR("expected two sides, got 3 (see --help)", A_SIDE, B_SIDE, "stdio");
  PARSE_ERR("expected two sides, got 4 (see --help)", "a", "b", "c", "d");
  /* The count comes before the sides are parsed. */
  PARSE_ERR("expected two sides, got 1 (see --help)", "nonsense");
}

static void test_bad_sides(void **state) {
  (void)state;
  PARSE_ERR("bad side 'listen:99999': port out of range", "listen:99999", B_SIDE);
  PARSE_ERR("bad side 'connect:host': missing port", A_SIDE, "connect:host");
  PARSE_ERR("bad side 'foo:1': unknown type 'foo'", "foo:1", B_SIDE);
  PARSE_ERR("bad side 'connect:::1:80': IPv6 address must be in brackets", A_SIDE,
            "connect:::1:80");
  /* "-" alone is not an option: it is a (bad) side. */
  PARSE_ERR("bad side '-': unknown type '-'", "-", B_SIDE);
  /* A is reported first when both are bad. */
  PARSE_ERR("bad side 'x': unknown type 'x'", "x", "y");
}

static void test_stdio_twice(void **state) {
  (void)state;
  PARSE_ERR("stdio can be only one side", "stdio", "stdio");
  PARSE_ERR("stdio can be only one side", "-v", "stdio", "--stats", "stdio");
  cli_config_t cfg;
  assert_int_equal(PARSE(&cfg, "stdio", A_SIDE), CLI_RUN);
  assert_int_equal(PARSE(&cfg, A_SIDE, "stdio"), CLI_RUN);
}

static void test_err_truncated(void **state) {
  (void)state;
  cli_config_t cfg;
  char *argv[] = {(char *)"sockjoin", (char *)"--bogus", NULL};
  char err[12];
  memset(err, '#', sizeof err);
  assert_int_equal(cli_parse(2, argv, &cfg, err, 8), CLI_USAGE_ERROR);
  assert_string_equal(err, "unknown");
  for (size_t i = 8; i < sizeof err; i++)
    assert_int_equal(err[i], '#');
}

/* ---- help and version ---------------------------------------------------- */

static void test_help_and_version(void **state) {
  (void)state;
  cli_config_t cfg;
  assert_int_equal(PARSE(&cfg, "-h"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "--help"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "--version"), CLI_VERSION);
  assert_int_equal(PARSE(&cfg, A_SIDE, B_SIDE, "--help"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "-v", "--version", A_SIDE), CLI_VERSION);
  /* The first of help and version wins, and both come before the sides
   * are counted or parsed. */
  assert_int_equal(PARSE(&cfg, "--help", "--version"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "--version", "--help"), CLI_VERSION);
  assert_int_equal(PARSE(&cfg, "bad:side", "--help"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "--help", "--bogus"), CLI_HELP);
  assert_int_equal(PARSE(&cfg, "stdio", "stdio", "-h"), CLI_HELP);
  assert_true(strstr(cli_usage, "usage: sockjoin [OPTIONS] SIDE_A SIDE_B\n") == cli_usage);
  /* Every option the parser knows is in the usage text. */
  static const char *const names[] = {
      "--verbose",   "--log-traffic", "--timeout",   "--connect-timeout",
      "--max-pairs", "--buffer",      "--keepalive", "--no-keepalive",
      "--stats",     "--help",        "--version"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strstr(cli_usage, names[i]) == NULL)
      fail_msg("%s missing from the usage text", names[i]);
}

static void test_everything_at_once(void **state) {
  (void)state;
  cli_config_t cfg;
  assert_int_equal(PARSE(&cfg, "-v", "--log-traffic=hex", "--timeout", "1.5", "--connect-timeout=3",
                         "--max-pairs", "7", "--buffer=64k", "--keepalive", "9,8,7", "--stats",
                         "listen:[::1]:0", "unix:/tmp/s"),
                   CLI_RUN);
  assert_int_equal(cfg.opts.verbose, 1);
  assert_int_equal(cfg.opts.log_traffic, SJ_TRAFFIC_HEX);
  assert_true(cfg.opts.timeout_s == 1.5);
  assert_true(cfg.opts.connect_timeout_s == 3);
  assert_int_equal(cfg.opts.max_pairs, 7);
  assert_int_equal(cfg.opts.buffer_size, 65536);
  assert_keepalive(cfg.opts.keepalive, 1, 9, 8, 7);
  assert_int_equal(cfg.stats, 1);
  assert_int_equal(cfg.side[0].kind, SJ_SIDE_LISTEN);
  assert_string_equal(cfg.side[0].host, "::1");
  assert_int_equal(cfg.side[1].kind, SJ_SIDE_UNIX);
  assert_string_equal(cfg.side[1].path, "/tmp/s");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_defaults_match_library),
      cmocka_unit_test(test_config_reset_between_calls),
      cmocka_unit_test(test_verbose),
      cmocka_unit_test(test_log_traffic),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_workers),
      cmocka_unit_test(test_no_keepalive),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_connect_timeout),
      cmocka_unit_test(test_max_pairs),
      cmocka_unit_test(test_buffer),
      cmocka_unit_test(test_buffer_suffixes),
      cmocka_unit_test(test_keepalive),
      cmocka_unit_test(test_unknown_options),
      cmocka_unit_test(test_missing_values),
      cmocka_unit_test(test_bad_seconds),
      cmocka_unit_test(test_bad_max_pairs),
      cmocka_unit_test(test_bad_buffer),
      cmocka_unit_test(test_bad_keepalive),
      cmocka_unit_test(test_bad_log_traffic),
      cmocka_unit_test(test_keepalive_conflict),
      cmocka_unit_test(test_side_count),
      cmocka_unit_test(test_bad_sides),
      cmocka_unit_test(test_stdio_twice),
      cmocka_unit_test(test_err_truncated),
      cmocka_unit_test(test_help_and_version),
      cmocka_unit_test(test_everything_at_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
