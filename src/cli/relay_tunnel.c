/* sockjoin relay-tunnel: the tunnel through a named relay
 * (src/relay/tunnel.h) on the command line. Every option is checked, and
 * every error names the option and what was expected. */
#include "client.h"
#include "console.h"
#include "signals.h"
#include "commands.h"
#include "numbers.h"
#include "tunnel.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* A name and its terminating NUL. */
#define NAME_TEXT (SJ_RELAY_NAME_MAX + 1)

/* How long open connections may take to deliver what they hold after a
 * signal before they are closed. */
#define DRAIN_MS 2000

static const char tunnel_usage[] =
    "usage: sockjoin relay-tunnel --relay HOST:PORT --name NAME --peer NAME\n"
    "                             (--listen [HOST:]PORT | --connect HOST:PORT) [OPTIONS]\n"
    "\n"
    "Reaches a service through a `sockjoin relay`, for programs that do not speak\n"
    "the relay's protocol. The listening end accepts local connections; the\n"
    "connecting end opens a connection to its service for each of them:\n"
    "\n"
    "  sockjoin relay-tunnel --relay R:8080 --name laptop --peer server --listen 2222\n"
    "  sockjoin relay-tunnel --relay R:8080 --name server --peer laptop \\\n"
    "                        --connect 127.0.0.1:22\n"
    "\n"
    "and then `ssh -p 2222 localhost` on the laptop reaches the server's sshd.\n"
    "Connections share the link, each with its own flow control; half-close and\n"
    "resets cross it. When the relay or the other end goes away, open connections\n"
    "are reset, new ones are closed at once, and the link is tried again until it\n"
    "is back. The listening end prints \"listening tunnel HOST:PORT\" when ready.\n"
    "\n"
    "OPTIONS:\n"
    "  --relay HOST:PORT           the relay (required)\n"
    "  --name NAME                 this end's name at the relay (required)\n"
    "  --peer NAME                 the other end's name (required)\n"
    "  --listen [HOST:]PORT        accept local connections (PORT 0 picks a free port)\n"
    "  --connect HOST:PORT         connect to the service, once per connection\n"
    "  --max-message BYTES         the relay's message limit (default 16m; k, m, g)\n"
    "  --keepalive SECONDS         keep-alive to the relay when idle (default 10;\n"
    "                              well under the relay's idle timeout)\n"
    "  --heartbeat SECONDS         ping the other end this often (default 5)\n"
    "  --heartbeat-timeout SECONDS the other end is gone after this long without a\n"
    "                              word (default 20)\n"
    "  --retry-max SECONDS         longest wait between attempts (default 10)\n"
    "  --connect-timeout SECONDS   to reach the relay or the service (default 10)\n"
    "  --max-connections N         connections at once (default 1024)\n"
    "  --buffer BYTES              per-direction buffer of a connection (default 256k)\n"
    "  -v, --verbose               lifecycle events on stderr\n"
    "  -h, --help                  this text\n";

typedef struct {
  sj_tunnel_options_t opts;
  char name[NAME_TEXT], peer[NAME_TEXT];
  int have_relay, have_listen, have_connect;
} tunnel_config_t;

enum { TUNNEL_RUN, TUNNEL_HELP, TUNNEL_USAGE_ERROR };

/* ---- parsing (pure) --------------------------------------------------- */

static int usage_error(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return TUNNEL_USAGE_ERROR;
}

typedef enum {
  OPT_RELAY,
  OPT_NAME,
  OPT_PEER,
  OPT_LISTEN,
  OPT_CONNECT,
  OPT_MAX_MESSAGE,
  OPT_KEEPALIVE,
  OPT_HEARTBEAT,
  OPT_HEARTBEAT_TIMEOUT,
  OPT_RETRY_MAX,
  OPT_CONNECT_TIMEOUT,
  OPT_MAX_CONNECTIONS,
  OPT_BUFFER
} valued_opt_t;

static const struct {
  const char *name;
  valued_opt_t opt;
  const char *hint;
} valued[] = {
    {"--relay", OPT_RELAY, NULL},
    {"--name", OPT_NAME, NULL},
    {"--peer", OPT_PEER, NULL},
    {"--listen", OPT_LISTEN, NULL},
    {"--connect", OPT_CONNECT, NULL},
    {"--max-message", OPT_MAX_MESSAGE, "expected bytes from 1k to 1g (k, m, g suffixes allowed)"},
    {"--keepalive", OPT_KEEPALIVE, "expected seconds > 0"},
    {"--heartbeat", OPT_HEARTBEAT, "expected seconds > 0"},
    {"--heartbeat-timeout", OPT_HEARTBEAT_TIMEOUT, "expected seconds > 0"},
    {"--retry-max", OPT_RETRY_MAX, "expected seconds > 0"},
    {"--connect-timeout", OPT_CONNECT_TIMEOUT, "expected seconds > 0"},
    {"--max-connections", OPT_MAX_CONNECTIONS, "expected a whole number from 1 to 1000000"},
    {"--buffer", OPT_BUFFER, "expected bytes from 1k to 1g (k, m, g suffixes allowed)"},
};

#define NVALUED (sizeof valued / sizeof valued[0])

/* "HOST:PORT" (or "[HOST:]PORT" for a listen side) is a side without its
 * prefix; the side parser's reason says what is wrong with it. */
static int parse_address(const char *prefix, const char *v, sj_side_spec_t *spec, char *why,
                         size_t whylen) {
  char side[SJ_HOST_MAX + 32];
  if (strchr(v, ',') != NULL || strncmp(v, "listen:", 7) == 0 || strncmp(v, "connect:", 8) == 0 ||
      (size_t)snprintf(side, sizeof side, "%s%s", prefix, v) >= sizeof side) {
    snprintf(why, whylen,
             strcmp(prefix, "listen:") == 0 ? "expected [HOST:]PORT" : "expected HOST:PORT");
    return -1;
  }
  return sj_side_parse(side, spec, why, whylen) == 0 ? 0 : -1;
}

static int parse_name(const char *v, char *out, char *why, size_t whylen) {
  const char *problem = sj_relay_name_problem(v);
  if (problem != NULL) {
    snprintf(why, whylen, "%s", problem);
    return -1;
  }
  snprintf(out, NAME_TEXT, "%s", v);
  return 0;
}

static unsigned to_ms(double s) { return s * 1000 > 4e9 ? 4000000000u : (unsigned)(s * 1000); }

static int apply_timing(valued_opt_t opt, const char *v, sj_tunnel_options_t *o) {
  double s;
  if (cli_parse_seconds(v, &s) != 0)
    return -1;
  switch (opt) {
  case OPT_KEEPALIVE:
    o->keepalive_ms = to_ms(s);
    break;
  case OPT_HEARTBEAT:
    o->ping_ms = to_ms(s);
    break;
  case OPT_HEARTBEAT_TIMEOUT:
    o->idle_timeout_ms = to_ms(s);
    break;
  case OPT_RETRY_MAX:
    o->retry_max_ms = to_ms(s);
    break;
  default: /* OPT_CONNECT_TIMEOUT */
    o->connect_timeout_s = s;
    break;
  }
  return 0;
}

static int apply_count(valued_opt_t opt, const char *v, sj_tunnel_options_t *o) {
  unsigned long long n;
  switch (opt) {
  case OPT_MAX_MESSAGE:
    if (cli_parse_count(v, 1024, 1ULL << 30, 1, &n) != 0)
      return -1;
    o->max_message = n;
    return 0;
  case OPT_MAX_CONNECTIONS:
    if (cli_parse_count(v, 1, 1000000, 0, &n) != 0)
      return -1;
    o->max_channels = (unsigned)n;
    return 0;
  case OPT_BUFFER:
    if (cli_parse_count(v, 1024, 1ULL << 30, 1, &n) != 0)
      return -1;
    o->buffer_size = (size_t)n;
    return 0;
  default:
    return apply_timing(opt, v, o);
  }
}

/* Applies one valued option; on failure why says what was expected. */
static int apply_valued(size_t k, const char *v, tunnel_config_t *cfg, char *why, size_t whylen) {
  snprintf(why, whylen, "%s", valued[k].hint != NULL ? valued[k].hint : "");
  switch (valued[k].opt) {
  case OPT_RELAY:
    cfg->have_relay = 1;
    return parse_address("connect:", v, &cfg->opts.relay, why, whylen);
  case OPT_NAME:
    return parse_name(v, cfg->name, why, whylen);
  case OPT_PEER:
    return parse_name(v, cfg->peer, why, whylen);
  case OPT_LISTEN:
    cfg->have_listen = 1;
    cfg->opts.listen = 1;
    return parse_address("listen:", v, &cfg->opts.local, why, whylen);
  case OPT_CONNECT:
    cfg->have_connect = 1;
    return parse_address("connect:", v, &cfg->opts.local, why, whylen);
  default:
    return apply_count(valued[k].opt, v, &cfg->opts);
  }
}

static size_t find_valued(const char *arg, size_t nlen) {
  size_t k = 0;
  while (k < NVALUED &&
         !(strlen(valued[k].name) == nlen && strncmp(arg, valued[k].name, nlen) == 0))
    k++;
  return k;
}

/* The options that only make sense together, checked in one place. */
static int check_config(tunnel_config_t *cfg, char *err, size_t errlen) {
  if (!cfg->have_relay)
    return usage_error(err, errlen, "--relay HOST:PORT is required (see --help)");
  if (cfg->name[0] == '\0')
    return usage_error(err, errlen, "--name NAME is required (see --help)");
  if (cfg->peer[0] == '\0')
    return usage_error(err, errlen, "--peer NAME is required (see --help)");
  if (strcmp(cfg->name, cfg->peer) == 0)
    return usage_error(err, errlen, "--name and --peer must differ (both are '%s')", cfg->name);
  if (cfg->have_listen && cfg->have_connect)
    return usage_error(err, errlen, "--listen and --connect cannot be used together");
  if (!cfg->have_listen && !cfg->have_connect)
    return usage_error(err, errlen,
                       "one of --listen [HOST:]PORT or --connect HOST:PORT is "
                       "required (see --help)");
  if (cfg->opts.idle_timeout_ms <= cfg->opts.ping_ms)
    return usage_error(err, errlen, "--heartbeat-timeout must be longer than --heartbeat");
  if (cfg->opts.retry_max_ms < cfg->opts.retry_min_ms)
    cfg->opts.retry_min_ms = cfg->opts.retry_max_ms;
  cfg->opts.name = cfg->name;
  cfg->opts.peer = cfg->peer;
  return TUNNEL_RUN;
}

/* Parses argv (argv[0] is "relay-tunnel"). On TUNNEL_USAGE_ERROR, err
 * holds the message without the "sockjoin relay-tunnel: " prefix. */
static int tunnel_parse(int argc, char **argv, tunnel_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  sj_tunnel_options_init(&cfg->opts);
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return TUNNEL_HELP;
    if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
      cfg->opts.verbose = 1;
      continue;
    }
    if (arg[0] != '-' || arg[1] == '\0')
      return usage_error(err, errlen, "unexpected argument '%s' (see --help)", arg);
    size_t nlen = strcspn(arg, "=");
    size_t k = find_valued(arg, nlen);
    if (k == NVALUED)
      return usage_error(err, errlen, "unknown option '%.*s'", (int)nlen, arg);
    const char *value = arg[nlen] == '=' ? arg + nlen + 1 : NULL;
    if (value == NULL) {
      if (i + 1 >= argc)
        return usage_error(err, errlen, "%s needs a value", valued[k].name);
      value = argv[++i];
    }
    char why[160];
    if (apply_valued(k, value, cfg, why, sizeof why) != 0)
      return usage_error(err, errlen, "bad %s '%s': %s", valued[k].name, value, why);
  }
  return check_config(cfg, err, errlen);
}

/* ---- running ---------------------------------------------------------- */

typedef struct {
  uv_loop_t loop;
  cli_signals_t signals;
  sj_tunnel_t *t;
  int signalled, handles_closed;
} tunnel_run_t;

static void on_log(sj_log_level_t level, const char *msg, void *data) {
  (void)level;
  (void)data;
  cli_log_line(1, NULL, msg);
}

static void close_signals(tunnel_run_t *r) {
  if (r->handles_closed)
    return;
  r->handles_closed = 1;
  cli_signals_close(&r->signals);
}

static void on_closing(void *data) { close_signals(data); }

/* The first signal drains, a second one closes at once. */
static void on_signal(uv_signal_t *h, int signum) {
  tunnel_run_t *r = h->data;
  (void)signum;
  if (r->signalled++ == 0)
    sj_tunnel_stop(r->t, DRAIN_MS);
  else
    sj_tunnel_close(r->t);
}

static void report_start_failure(const tunnel_config_t *cfg, int rc) {
  const sj_side_spec_t *s = &cfg->opts.local;
  const char *host = s->host[0] != '\0' ? s->host : "0.0.0.0";
  fprintf(stderr,
          strchr(host, ':') ? "sockjoin relay-tunnel: cannot listen on [%s]:%d: %s\n"
                            : "sockjoin relay-tunnel: cannot listen on %s:%d: %s\n",
          host, s->port, sj_strerror(rc));
}

static int run(tunnel_config_t *cfg) {
  tunnel_run_t r;
  memset(&r, 0, sizeof r);
  uv_loop_init(&r.loop);
  cli_signals_start(&r.signals, &r.loop, on_signal, &r);
  cfg->opts.log_cb = on_log;
  cfg->opts.on_closing = on_closing;
  cfg->opts.data = &r;
  int rc = sj_tunnel_new(&r.loop, &cfg->opts, &r.t);
  if (rc != 0) {
    report_start_failure(cfg, rc);
    close_signals(&r);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    return 1;
  }
  char addr[SJ_HOST_MAX + 16];
  if (sj_tunnel_address(r.t, addr, sizeof addr) >= 0) {
    printf("listening tunnel %s\n", addr);
    fflush(stdout);
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  sj_tunnel_free(r.t);
  uv_loop_close(&r.loop);
  return 0;
}

int cli_relay_tunnel_main(int argc, char **argv) {
  static tunnel_config_t cfg;
  char err[512];
  switch (tunnel_parse(argc, argv, &cfg, err, sizeof err)) {
  case TUNNEL_HELP:
    fputs(tunnel_usage, stdout);
    return 0;
  case TUNNEL_USAGE_ERROR:
    fprintf(stderr, "sockjoin relay-tunnel: %s\n", err);
    return 2;
  default:
    return run(&cfg);
  }
}
