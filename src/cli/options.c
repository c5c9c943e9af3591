#include "options.h"

#include "numbers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cli_usage[] =
    "usage: sockjoin [OPTIONS] SIDE_A SIDE_B\n"
    "\n"
    "Joins two sockets and relays bytes both ways.\n"
    "\n"
    "SIDE:\n"
    "  listen:[HOST:]PORT    accept TCP connections (PORT 0 picks a free port)\n"
    "  connect:HOST:PORT     connect out over TCP\n"
    "  unix-listen:PATH      accept on a Unix socket\n"
    "  unix:PATH             connect to a Unix socket\n"
    "  stdio                 standard input and output (one pair)\n"
    "  HOST is a name, an IPv4 address or [IPv6].\n"
    "\n"
    "SIDE options follow the address, comma separated (listen:9000,tls,...):\n"
    "  auth=token:FILE       listening: the peer's first line must be the token;\n"
    "                        connecting: send it\n"
    "  auth=hmac:FILE        challenge-response with HMAC-SHA256 under the key\n"
    "  tls                   listening: terminate TLS (needs cert= and key=);\n"
    "                        connecting: originate TLS, verifying the server\n"
    "  cert=FILE key=FILE    the certificate and key (a client's on connecting)\n"
    "  ca=FILE               connecting: trust these CAs (default: the system's);\n"
    "                        listening: require a client certificate from them\n"
    "  sni=NAME              connecting: the server name to ask for and verify\n"
    "  verify=0              connecting: do not verify the server (tests only)\n"
    "  encrypt=psk:FILE      end-to-end encryption with a sockjoin at the far end\n"
    "  A FILE's trailing newline is not part of the secret.\n"
    "\n"
    "Two listening sides pair their connections first-in first-out; a listening\n"
    "side joined to a connecting side makes one outbound connection per accepted\n"
    "connection; two connecting sides make one pair.\n"
    "\n"
    "OPTIONS:\n"
    "  -v, --verbose             lifecycle events on stderr\n"
    "  --log-traffic[=ascii|hex] every relayed chunk on stderr\n"
    "  --timeout SECONDS         end when SECONDS pass with no pair, then when the\n"
    "                            last pair closes (default: run until signalled)\n"
    "  --connect-timeout SECONDS outbound connect deadline (default 10)\n"
    "  --max-pairs N             at most N pairs at once (default unlimited)\n"
    "  --buffer BYTES            per-direction high-water mark (default 256k)\n"
    "  --keepalive IDLE,INTERVAL,COUNT  TCP keep-alive (default 60,10,5)\n"
    "  --no-keepalive            turn TCP keep-alive off\n"
    "  --no-splice               never relay with splice(2) (always copy)\n"
    "  --auth-timeout SECONDS    time for TLS, auth and encryption to finish\n"
    "                            (default 30)\n"
    "  --persist N               two connect: sides: keep N connections of the\n"
    "                            side with auth=/encrypt= standing, dial the other\n"
    "                            side when one comes alive, and replace it\n"
    "  --workers N|auto          N threads (auto: one per CPU) accept from the\n"
    "                            listening port (listen: with connect: or unix:\n"
    "                            only; default 1)\n"
    "  --stats                   print stats as JSON on stderr at exit\n"
    "  -h, --help                this text\n"
    "  --version                 the version\n";

static cli_action_t usage_error(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return CLI_USAGE_ERROR;
}

/* "IDLE,INTERVAL,COUNT": exactly three whole numbers, no empty field, within
 * what Linux accepts (TCP_KEEPIDLE and TCP_KEEPINTVL up to 32767 seconds,
 * TCP_KEEPCNT up to 127 probes). */
static int parse_keepalive(const char *s, sj_keepalive_t *ka) {
  static const unsigned long long max[3] = {32767, 32767, 127};
  unsigned long long v[3];
  for (int n = 0; n < 3; n++) {
    size_t len = strcspn(s, ",");
    char field[16];
    if (len == 0 || len >= sizeof field || (n < 2) != (s[len] == ','))
      return -1;
    memcpy(field, s, len);
    field[len] = '\0';
    if (cli_parse_count(field, 1, max[n], 0, &v[n]) != 0)
      return -1;
    s += len + (n < 2);
  }
  *ka = (sj_keepalive_t){1, (unsigned)v[0], (unsigned)v[1], (unsigned)v[2]};
  return 0;
}

/* Options that take a value; the value follows as "--name=VALUE" or as the
 * next argument. */
typedef enum {
  OPT_TIMEOUT,
  OPT_CONNECT_TIMEOUT,
  OPT_MAX_PAIRS,
  OPT_BUFFER,
  OPT_KEEPALIVE,
  OPT_WORKERS,
  OPT_AUTH_TIMEOUT,
  OPT_PERSIST
} valued_opt_t;

static const struct {
  const char *name;
  valued_opt_t opt;
} valued[] = {
    {"--timeout", OPT_TIMEOUT},     {"--connect-timeout", OPT_CONNECT_TIMEOUT},
    {"--max-pairs", OPT_MAX_PAIRS}, {"--buffer", OPT_BUFFER},
    {"--keepalive", OPT_KEEPALIVE}, {"--workers", OPT_WORKERS},
    {"--auth-timeout", OPT_AUTH_TIMEOUT}, {"--persist", OPT_PERSIST},
};

static int apply_valued(valued_opt_t opt, const char *v, cli_config_t *cfg) {
  unsigned long long n;
  switch (opt) {
  case OPT_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.timeout_s);
  case OPT_CONNECT_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.connect_timeout_s);
  case OPT_MAX_PAIRS:
    if (cli_parse_count(v, 1, 1000000000, 0, &n) != 0)
      return -1;
    cfg->opts.max_pairs = (unsigned)n;
    return 0;
  case OPT_BUFFER:
    if (cli_parse_count(v, 1, 1ULL << 30, 1, &n) != 0)
      return -1;
    cfg->opts.buffer_size = (size_t)n;
    return 0;
  case OPT_KEEPALIVE:
    return parse_keepalive(v, &cfg->opts.keepalive);
  case OPT_WORKERS:
    cfg->workers_auto = strcmp(v, "auto") == 0;
    if (cfg->workers_auto) /* counted when the workers start */
      return 0;
    if (cli_parse_count(v, 1, CLI_WORKERS_MAX, 0, &n) != 0)
      return -1;
    cfg->workers = (int)n;
    return 0;
  case OPT_AUTH_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.auth_timeout_s);
  case OPT_PERSIST:
    if (cli_parse_count(v, 1, 1000, 0, &n) != 0)
      return -1;
    cfg->opts.persist = (unsigned)n;
    return 0;
  }
  return -1;
}

static const char *valued_hint(valued_opt_t opt) {
  switch (opt) {
  case OPT_TIMEOUT:
  case OPT_CONNECT_TIMEOUT:
  case OPT_AUTH_TIMEOUT:
    return "expected seconds > 0";
  case OPT_PERSIST:
    return "expected a whole number from 1 to 1000";
  case OPT_MAX_PAIRS:
    return "expected a whole number >= 1";
  case OPT_BUFFER:
    return "expected bytes from 1 to 1G (k, m, g suffixes allowed)";
  case OPT_KEEPALIVE:
    return "expected IDLE,INTERVAL,COUNT (seconds up to 32767, probes up to 127)";
  case OPT_WORKERS:
    return "expected a whole number from 1 to 64, or auto";
  }
  return "";
}

static int parse_traffic(const char *v, sj_traffic_mode_t *mode) {
  if (strcmp(v, "ascii") == 0)
    *mode = SJ_TRAFFIC_ASCII;
  else if (strcmp(v, "hex") == 0)
    *mode = SJ_TRAFFIC_HEX;
  else
    return -1;
  return 0;
}

static int dials(sj_side_kind_t kind) { return kind == SJ_SIDE_CONNECT || kind == SJ_SIDE_UNIX; }

/* Workers share a listening port and each pairs what it accepts with its
 * own outbound connection: that needs a TCP listening side facing a
 * connecting one, and no rule that counts pairs across workers. */
static cli_action_t check_workers(const cli_config_t *cfg, char *err, size_t errlen) {
  if (cfg->workers <= 1 && !cfg->workers_auto) /* auto: the same rules on any machine */
    return CLI_RUN;
  sj_side_kind_t a = cfg->side[0].kind, b = cfg->side[1].kind;
  int dials = a == SJ_SIDE_CONNECT || a == SJ_SIDE_UNIX || b == SJ_SIDE_CONNECT || b == SJ_SIDE_UNIX;
  if (!dials || (a != SJ_SIDE_LISTEN && b != SJ_SIDE_LISTEN))
    return usage_error(err, errlen, "--workers needs a listen: side and a connect: or unix: side");
  if (cfg->opts.timeout_s > 0)
    return usage_error(err, errlen, "--workers cannot be combined with --timeout");
  if (cfg->opts.max_pairs > 0)
    return usage_error(err, errlen, "--workers cannot be combined with --max-pairs");
  return CLI_RUN;
}

cli_action_t cli_parse(int argc, char **argv, cli_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  sj_options_init(&cfg->opts);
  int nsides = 0, keepalive_set = 0, no_keepalive = 0;
  const char *sides[2] = {NULL, NULL};
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-' || arg[1] == '\0') {
      if (nsides < 2)
        sides[nsides] = arg;
      nsides++;
      continue;
    }
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return CLI_HELP;
    if (strcmp(arg, "--version") == 0)
      return CLI_VERSION;
    if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
      cfg->opts.verbose = 1;
      continue;
    }
    if (strcmp(arg, "--stats") == 0) {
      cfg->stats = 1;
      continue;
    }
    if (strcmp(arg, "--no-splice") == 0) {
      cfg->opts.no_splice = 1;
      continue;
    }
    if (strcmp(arg, "--no-keepalive") == 0) {
      no_keepalive = 1;
      continue;
    }
    if (strcmp(arg, "--log-traffic") == 0) {
      cfg->opts.log_traffic = SJ_TRAFFIC_ASCII;
      continue;
    }
    if (strncmp(arg, "--log-traffic=", 14) == 0) {
      if (parse_traffic(arg + 14, &cfg->opts.log_traffic) != 0)
        return usage_error(err, errlen, "bad --log-traffic '%s': expected ascii or hex", arg + 14);
      continue;
    }
    size_t k = 0, nvalued = sizeof valued / sizeof valued[0];
    size_t nlen = strcspn(arg, "=");
    while (k < nvalued && !(strlen(valued[k].name) == nlen && strncmp(arg, valued[k].name, nlen) == 0))
      k++;
    if (k == nvalued)
      return usage_error(err, errlen, "unknown option '%.*s'", (int)nlen, arg);
    const char *value = arg[nlen] == '=' ? arg + nlen + 1 : NULL;
    if (value == NULL) {
      if (i + 1 >= argc)
        return usage_error(err, errlen, "%s needs a value", valued[k].name);
      value = argv[++i];
    }
    if (apply_valued(valued[k].opt, value, cfg) != 0)
      return usage_error(err, errlen, "bad %s '%s': %s", valued[k].name, value,
                         valued_hint(valued[k].opt));
    if (valued[k].opt == OPT_KEEPALIVE)
      keepalive_set = 1;
  }
  if (keepalive_set && no_keepalive)
    return usage_error(err, errlen, "--keepalive and --no-keepalive conflict");
  if (no_keepalive)
    cfg->opts.keepalive = SJ_KEEPALIVE_DISABLED;
  if (nsides != 2)
    return usage_error(err, errlen, "expected two sides, got %d (see --help)", nsides);
  for (int s = 0; s < 2; s++) {
    char why[160];
    if (sj_side_parse(sides[s], &cfg->side[s], why, sizeof why) != 0)
      return usage_error(err, errlen, "bad side '%s': %s", sides[s], why);
  }
  if (cfg->side[0].kind == SJ_SIDE_STDIO && cfg->side[1].kind == SJ_SIDE_STDIO)
    return usage_error(err, errlen, "stdio can be only one side");
  if (cfg->opts.persist > 0 && !(dials(cfg->side[0].kind) && dials(cfg->side[1].kind)))
    return usage_error(err, errlen, "--persist needs two connect: or unix: sides");
  return check_workers(cfg, err, errlen);
}
