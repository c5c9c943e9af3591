/* sockjoin relay: the named message relay (src/relay/server.h) on the
 * command line. Options are parsed into the server's option struct, in
 * the style of options.c: every number is checked, and every error names
 * the option and what was expected. */
#include "commands.h"
#include "console.h"
#include "signals.h"
#include "numbers.h"
#include "server.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* How long clients may take to receive what is queued for them after a
 * signal before they are closed. */
#define DRAIN_MS 2000

static const char relay_usage[] =
    "usage: sockjoin relay [--listen [HOST:]PORT] [OPTIONS]\n"
    "\n"
    "A named message relay (the TCP Relay protocol). A client registers with\n"
    "\"NAME|\" within the registration timeout, then sends \"DEST|N|\" and N bytes\n"
    "to any registered name; DEST receives \"SENDER|N|\" and the bytes. \"NAME|0|\"\n"
    "to oneself is a keep-alive. A name is 1 to 255 bytes without '|'.\n"
    "\n"
    "OPTIONS:\n"
    "  --listen [HOST:]PORT        where to listen (default 0.0.0.0:8080; PORT 0\n"
    "                              picks a free port)\n"
    "  --register-timeout SECONDS  to send \"NAME|\" after connecting (default 3)\n"
    "  --idle-timeout SECONDS      disconnect a client that sends nothing this long\n"
    "                              (default 30)\n"
    "  --stall-timeout SECONDS     disconnect a receiver that takes none of the\n"
    "                              output waiting for it this long (default 60)\n"
    "  --max-message BYTES         largest payload (default 16m; k, m, g suffixes)\n"
    "  --max-clients N             connections at once (default unlimited)\n"
    "  --buffer BYTES              output queued per client before its senders are\n"
    "                              held back (default 256k)\n"
    "  --deliver framed|raw        deliver \"SENDER|N|\" and the payload (default), or\n"
    "                              the bare payload (as in the seed README's example)\n"
    "  -v, --verbose               connections, registrations, drops and closes on\n"
    "                              stderr\n"
    "  --stats                     print stats as JSON on stderr at exit\n"
    "  -h, --help                  this text\n";

typedef struct {
  sj_relay_options_t opts;
  sj_side_spec_t listen;
  int stats;
} relay_config_t;

enum { RELAY_RUN, RELAY_HELP, RELAY_USAGE_ERROR };

/* ---- parsing (pure) --------------------------------------------------- */

static int usage_error(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return RELAY_USAGE_ERROR;
}

typedef enum {
  OPT_LISTEN,
  OPT_REGISTER_TIMEOUT,
  OPT_IDLE_TIMEOUT,
  OPT_STALL_TIMEOUT,
  OPT_MAX_MESSAGE,
  OPT_MAX_CLIENTS,
  OPT_BUFFER,
  OPT_DELIVER
} valued_opt_t;

static const struct {
  const char *name;
  valued_opt_t opt;
  const char *hint;
} valued[] = {
    {"--listen", OPT_LISTEN, NULL},
    {"--register-timeout", OPT_REGISTER_TIMEOUT, "expected seconds > 0"},
    {"--idle-timeout", OPT_IDLE_TIMEOUT, "expected seconds > 0"},
    {"--stall-timeout", OPT_STALL_TIMEOUT, "expected seconds > 0"},
    {"--max-message", OPT_MAX_MESSAGE, "expected bytes from 0 to 1G (k, m, g suffixes allowed)"},
    {"--max-clients", OPT_MAX_CLIENTS, "expected a whole number from 1 to 1000000"},
    {"--buffer", OPT_BUFFER, "expected bytes from 1 to 1G (k, m, g suffixes allowed)"},
    {"--deliver", OPT_DELIVER, "expected framed or raw"},
};

#define NVALUED (sizeof valued / sizeof valued[0])

/* "[HOST:]PORT" is a listen side without its "listen:"; the side parser's
 * reason says what is wrong with it. */
static int parse_listen(const char *v, sj_side_spec_t *spec, char *why, size_t whylen) {
  char side[SJ_HOST_MAX + 32];
  if (strncmp(v, "listen:", 7) == 0 || strchr(v, ',') != NULL ||
      (size_t)snprintf(side, sizeof side, "listen:%s", v) >= sizeof side) {
    snprintf(why, whylen, "expected [HOST:]PORT");
    return -1;
  }
  return sj_side_parse(side, spec, why, whylen) == 0 ? 0 : -1;
}

static int apply_count(valued_opt_t opt, const char *v, relay_config_t *cfg) {
  unsigned long long n;
  switch (opt) {
  case OPT_MAX_MESSAGE:
    if (cli_parse_count(v, 0, 1ULL << 30, 1, &n) != 0)
      return -1;
    cfg->opts.max_message = n;
    return 0;
  case OPT_MAX_CLIENTS:
    if (cli_parse_count(v, 1, 1000000, 0, &n) != 0)
      return -1;
    cfg->opts.max_clients = (unsigned)n;
    return 0;
  default: /* OPT_BUFFER */
    if (cli_parse_count(v, 1, 1ULL << 30, 1, &n) != 0)
      return -1;
    cfg->opts.buffer_size = (size_t)n;
    return 0;
  }
}

static int apply_valued(valued_opt_t opt, const char *v, relay_config_t *cfg) {
  switch (opt) {
  case OPT_REGISTER_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.register_timeout_s);
  case OPT_IDLE_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.idle_timeout_s);
  case OPT_STALL_TIMEOUT:
    return cli_parse_seconds(v, &cfg->opts.stall_timeout_s);
  case OPT_DELIVER:
    if (strcmp(v, "framed") != 0 && strcmp(v, "raw") != 0)
      return -1;
    cfg->opts.deliver_raw = strcmp(v, "raw") == 0;
    return 0;
  default:
    return apply_count(opt, v, cfg);
  }
}

/* A flag without a value: returns 1 if arg was one. */
static int apply_flag(const char *arg, relay_config_t *cfg) {
  if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0)
    cfg->opts.verbose = 1;
  else if (strcmp(arg, "--stats") == 0)
    cfg->stats = 1;
  else
    return 0;
  return 1;
}

static size_t find_valued(const char *arg, size_t nlen) {
  size_t k = 0;
  while (k < NVALUED &&
         !(strlen(valued[k].name) == nlen && strncmp(arg, valued[k].name, nlen) == 0))
    k++;
  return k;
}

/* Parses argv (argv[0] is "relay"). On RELAY_USAGE_ERROR, err holds the
 * message without the "sockjoin relay: " prefix. */
static int relay_parse(int argc, char **argv, relay_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  sj_relay_options_init(&cfg->opts);
  sj_side_parse("listen:8080", &cfg->listen, NULL, 0);
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return RELAY_HELP;
    if (apply_flag(arg, cfg))
      continue;
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
    if (valued[k].opt == OPT_LISTEN) {
      if (parse_listen(value, &cfg->listen, why, sizeof why) != 0)
        return usage_error(err, errlen, "bad --listen '%s': %s", value, why);
    } else if (apply_valued(valued[k].opt, value, cfg) != 0) {
      return usage_error(err, errlen, "bad %s '%s': %s", valued[k].name, value, valued[k].hint);
    }
  }
  return RELAY_RUN;
}

/* ---- running ---------------------------------------------------------- */

typedef struct {
  uv_loop_t loop;
  cli_signals_t signals;
  sj_relay_server_t *srv;
  int signalled, closing;
  sj_relay_stats_t stats;
} relay_run_t;

static void on_log(sj_relay_server_t *s, sj_log_level_t level, const char *msg, void *data) {
  (void)s;
  (void)level;
  (void)data;
  cli_log_line(1, NULL, msg);
}

static void on_closed(sj_relay_server_t *s, void *data) {
  relay_run_t *r = data;
  sj_relay_server_stats(s, &r->stats);
  cli_signals_close(&r->signals);
}

static void close_server(relay_run_t *r) {
  if (r->closing)
    return;
  r->closing = 1;
  sj_relay_server_close(r->srv, on_closed);
}

static void on_done(sj_relay_server_t *s, void *data) {
  (void)s;
  close_server(data);
}

/* The first signal drains, a second one closes at once. */
static void on_signal(uv_signal_t *h, int signum) {
  relay_run_t *r = h->data;
  (void)signum;
  if (r->signalled++ == 0)
    sj_relay_server_stop(r->srv, DRAIN_MS);
  else
    close_server(r);
}

static void print_stats(const sj_relay_stats_t *st) {
  char text[1024];
  sj_relay_stats_json(st, text, sizeof text);
  fprintf(stderr, "%s\n", text);
}

static int start(relay_run_t *r, relay_config_t *cfg) {
  cfg->opts.log_cb = on_log;
  cfg->opts.on_done = on_done;
  cfg->opts.data = r;
  int rc = sj_relay_server_new(&r->srv, &r->loop, &cfg->listen, &cfg->opts);
  if (rc != 0) {
    const char *host = cfg->listen.host[0] != '\0' ? cfg->listen.host : "0.0.0.0";
    fprintf(stderr,
            strchr(host, ':') ? "sockjoin relay: cannot listen on [%s]:%d: %s\n"
                              : "sockjoin relay: cannot listen on %s:%d: %s\n",
            host, cfg->listen.port, sj_strerror(rc));
    return rc;
  }
  char addr[SJ_HOST_MAX + 16];
  sj_relay_server_address(r->srv, addr, sizeof addr);
  printf("listening relay %s\n", addr);
  fflush(stdout);
  return 0;
}

static int run(relay_config_t *cfg) {
  relay_run_t r;
  memset(&r, 0, sizeof r);
  uv_loop_init(&r.loop);
  cli_signals_start(&r.signals, &r.loop, on_signal, &r);
  int code = 0;
  if (start(&r, cfg) != 0) {
    cli_signals_close(&r.signals);
    code = 1;
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_loop_close(&r.loop);
  if (code == 0 && cfg->stats)
    print_stats(&r.stats);
  return code;
}

int cli_relay_main(int argc, char **argv) {
  static relay_config_t cfg;
  char err[512];
  switch (relay_parse(argc, argv, &cfg, err, sizeof err)) {
  case RELAY_HELP:
    fputs(relay_usage, stdout);
    return 0;
  case RELAY_USAGE_ERROR:
    fprintf(stderr, "sockjoin relay: %s\n", err);
    return 2;
  default:
    return run(&cfg);
  }
}
