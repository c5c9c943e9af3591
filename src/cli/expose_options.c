/* The options of `sockjoin server` and `sockjoin expose` (see
 * expose_options.h), in the style of options.c: every number is checked,
 * every error names the option and what was expected, and conflicts are
 * checked in one place per command. */
#include "expose_options.h"

#include "control.h"
#include "numbers.h"
#include "ws.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cli_server_usage[] =
    "usage: sockjoin server [OPTIONS]\n"
    "\n"
    "The central server of `sockjoin expose`: agents behind a NAT connect to it,\n"
    "prove an API key and get public ports; every connection to a public port is\n"
    "carried to the agent over its one control connection (multiplexed).\n"
    "\n"
    "OPTIONS:\n"
    "  --listen [HOST:]PORT      control listener (default 0.0.0.0:7835; PORT 0\n"
    "                            picks a free port)\n"
    "  --public-host NAME        host name agents show in their URLs (default: the\n"
    "                            host each agent dialled)\n"
    "  --public-bind HOST        address public ports listen on (default: all)\n"
    "  --port-range LO-HI        public ports to hand out (default: any free port)\n"
    "  --tls-cert FILE           TLS on the control listener, with --tls-key\n"
    "  --tls-key FILE\n"
    "  --api-keys-file FILE      API keys, one per line ('#' starts a comment); or\n"
    "                            SOCKJOIN_API_KEYS=KEY1,KEY2 in the environment\n"
    "  --no-auth                 accept agents without a key\n"
    "  --transport tcp|ws        carry agents' sessions over TCP (default) or\n"
    "                            WebSocket\n"
    "  --ws-path PATH            the WebSocket's path (default /)\n"
    "  --max-tunnels N           tunnels per key (default 64)\n"
    "  --max-streams N           connections at once per tunnel (default 1024);\n"
    "                            more wait in the listen backlog\n"
    "  --max-agents N            agents connected at once (default 1024)\n"
    "  --grace SECONDS           keep a departed agent's ports this long (default 30)\n"
    "  --handshake-timeout SECONDS  for TLS and auth (default 10)\n"
    "  --heartbeat SECONDS       ping agents this often (default 10)\n"
    "  --heartbeat-timeout SECONDS  an agent silent this long is gone (default 30)\n"
    "  --buffer BYTES            per direction of a connection (default 256k)\n"
    "  -v, --verbose             agents, tunnels and connections on stderr\n"
    "  -h, --help                this text\n";

const char cli_expose_usage[] =
    "usage: sockjoin expose LOCAL_HOST:PORT... --server HOST[:PORT] [OPTIONS]\n"
    "\n"
    "Exposes local TCP services through a `sockjoin server`: prints\n"
    "  exposed LOCAL_HOST:PORT at tcp://PUBLIC_HOST:PUBLIC_PORT tunnel=ID\n"
    "per service once it is reachable there. A bare PORT means 127.0.0.1:PORT.\n"
    "After a lost connection it reconnects (with growing pauses), asks for the same\n"
    "ports again and prints the lines again.\n"
    "\n"
    "OPTIONS:\n"
    "  --server HOST[:PORT]      the server (PORT default 7835)\n"
    "  --remote-port P           the public port to ask for (default any); repeat\n"
    "                            it for the services in order\n"
    "  --api-key KEY             the API key (or SOCKJOIN_API_KEY in the\n"
    "                            environment, which ps does not show)\n"
    "  --api-key-file FILE       read the key from FILE (its trailing newline is not\n"
    "                            part of it)\n"
    "  --tls                     TLS to the server, verifying its certificate\n"
    "  --ca FILE                 trust these CAs (default: the system's)\n"
    "  --insecure                do not verify the server (tests only)\n"
    "  --transport tcp|ws        TCP (default) or a WebSocket (through HTTP proxies)\n"
    "  --ws-path PATH            the WebSocket's path (default /)\n"
    "  --connect-timeout SECONDS to the server and local services (default 10)\n"
    "  --handshake-timeout SECONDS  for TLS, auth and tunnel requests (default 10)\n"
    "  --retry-min SECONDS       first pause before reconnecting (default 0.5)\n"
    "  --retry-max SECONDS       longest pause (default 30)\n"
    "  --heartbeat SECONDS       ping the server this often (default 10)\n"
    "  --heartbeat-timeout SECONDS  a server silent this long is gone (default 30)\n"
    "  --buffer BYTES            per direction of a connection (default 256k)\n"
    "  -v, --verbose             connections and streams on stderr\n"
    "  -h, --help                this text\n";

/* ---- values --------------------------------------------------------------- */

static xcli_action_t usage_error(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return XCLI_USAGE_ERROR;
}

static int parse_ms(const char *s, unsigned *out) {
  double v;
  if (cli_parse_seconds(s, &v) != 0 || v > 86400)
    return -1;
  *out = (unsigned)(v * 1000 + 0.5);
  return 0;
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *out) {
  unsigned long long v;
  if (cli_parse_count(s, min, max, 0, &v) != 0)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* A word of printable ASCII without spaces, shorter than cap. */
static int parse_word(const char *s, char *out, size_t cap) {
  size_t n = strlen(s);
  if (n == 0 || n >= cap)
    return -1;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
      return -1;
  memcpy(out, s, n + 1);
  return 0;
}

static int parse_file(const char *s, char *out) {
  size_t n = strlen(s);
  if (n == 0 || n >= SJ_FILE_MAX)
    return -1;
  memcpy(out, s, n + 1);
  return 0;
}

static int parse_transport(const char *s, sj_xcarrier_transport_t *out) {
  if (strcmp(s, "tcp") == 0)
    *out = SJ_XCARRIER_TCP;
  else if (strcmp(s, "ws") == 0)
    *out = SJ_XCARRIER_WS;
  else
    return -1;
  return 0;
}

static int parse_ws_path(const char *s, char *out) {
  return sj_ws_path_ok(s) ? parse_word(s, out, SJ_HOST_MAX) : -1;
}

/* "LO-HI", 1 <= LO <= HI <= 65535. */
static int parse_range(const char *s, unsigned *lo, unsigned *hi) {
  char first[8];
  size_t n = strcspn(s, "-");
  if (n == 0 || n >= sizeof first || s[n] != '-')
    return -1;
  memcpy(first, s, n);
  first[n] = '\0';
  if (parse_unsigned(first, 1, 65535, lo) != 0 || parse_unsigned(s + n + 1, 1, 65535, hi) != 0)
    return -1;
  return *lo <= *hi ? 0 : -1;
}

/* A side of the given kind made from text, the side parser's reason in why
 * when it is wrong. Options after a comma are not ours to take. */
static int parse_side(const char *kind, const char *v, sj_side_spec_t *spec, char *why,
                      size_t whylen) {
  char side[SJ_HOST_MAX + 32];
  if (strchr(v, ',') != NULL || strncmp(v, "listen:", 7) == 0 || strncmp(v, "connect:", 8) == 0 ||
      (size_t)snprintf(side, sizeof side, "%s:%s", kind, v) >= sizeof side) {
    snprintf(why, whylen, "expected %s", strcmp(kind, "listen") == 0 ? "[HOST:]PORT" : "HOST:PORT");
    return -1;
  }
  return sj_side_parse(side, spec, why, whylen) == 0 ? 0 : -1;
}

/* A host to bind to: a name, an IPv4 address, or an IPv6 one with or
 * without brackets. */
static int parse_bind(const char *v, char *out, char *why, size_t whylen) {
  char side[SJ_HOST_MAX + 8];
  sj_side_spec_t spec;
  snprintf(why, whylen, "expected a host name or address");
  if (v[0] == '\0' || strlen(v) >= SJ_HOST_MAX)
    return -1;
  snprintf(side, sizeof side, strchr(v, ':') != NULL && v[0] != '[' ? "[%s]:0" : "%s:0", v);
  if (parse_side("listen", side, &spec, why, whylen) != 0 || spec.host[0] == '\0')
    return -1;
  memcpy(out, spec.host, SJ_HOST_MAX);
  return 0;
}

/* ---- option tables -------------------------------------------------------- */

typedef struct {
  const char *name;
  int id;
  const char *hint; /* NULL: the value's parser explains itself */
} valued_t;

#define SECONDS_HINT "expected seconds > 0"
#define WS_PATH_HINT "expected a path starting with / (printable, no spaces or #, under 256 bytes)"

static const valued_t *find_valued(const valued_t *table, size_t n, const char *arg, size_t nlen) {
  for (size_t k = 0; k < n; k++)
    if (strlen(table[k].name) == nlen && strncmp(arg, table[k].name, nlen) == 0)
      return &table[k];
  return NULL;
}

/* Finds the option in arg and its value (after '=' or the next argument).
 * Returns the entry, or NULL with err set. */
static const valued_t *take_valued(const valued_t *table, size_t n, int argc, char **argv, int *i,
                                   const char **value, char *err, size_t errlen) {
  const char *arg = argv[*i];
  size_t nlen = strcspn(arg, "=");
  const valued_t *v = find_valued(table, n, arg, nlen);
  if (v == NULL) {
    usage_error(err, errlen, "unknown option '%.*s'", (int)nlen, arg);
    return NULL;
  }
  *value = arg[nlen] == '=' ? arg + nlen + 1 : NULL;
  if (*value == NULL) {
    if (*i + 1 >= argc) {
      usage_error(err, errlen, "%s needs a value", v->name);
      return NULL;
    }
    *value = argv[++*i];
  }
  return v;
}

/* ---- sockjoin server ------------------------------------------------------ */

enum {
  S_LISTEN,
  S_PUBLIC_HOST,
  S_PUBLIC_BIND,
  S_PORT_RANGE,
  S_TLS_CERT,
  S_TLS_KEY,
  S_KEYS_FILE,
  S_TRANSPORT,
  S_WS_PATH,
  S_MAX_TUNNELS,
  S_MAX_STREAMS,
  S_MAX_AGENTS,
  S_GRACE,
  S_HANDSHAKE,
  S_HEARTBEAT,
  S_HEARTBEAT_TIMEOUT,
  S_BUFFER
};

static const valued_t server_valued[] = {
    {"--listen", S_LISTEN, NULL},
    {"--public-host", S_PUBLIC_HOST, "expected a host name (printable, no spaces)"},
    {"--public-bind", S_PUBLIC_BIND, NULL},
    {"--port-range", S_PORT_RANGE, "expected LO-HI with 1 <= LO <= HI <= 65535"},
    {"--tls-cert", S_TLS_CERT, "expected a file name"},
    {"--tls-key", S_TLS_KEY, "expected a file name"},
    {"--api-keys-file", S_KEYS_FILE, "expected a file name"},
    {"--transport", S_TRANSPORT, "expected tcp or ws"},
    {"--ws-path", S_WS_PATH, WS_PATH_HINT},
    {"--max-tunnels", S_MAX_TUNNELS, "expected a whole number from 1 to 100000"},
    {"--max-streams", S_MAX_STREAMS, "expected a whole number from 1 to 1000000"},
    {"--max-agents", S_MAX_AGENTS, "expected a whole number from 1 to 1000000"},
    {"--grace", S_GRACE, SECONDS_HINT},
    {"--handshake-timeout", S_HANDSHAKE, SECONDS_HINT},
    {"--heartbeat", S_HEARTBEAT, "expected seconds > 0, at most a day"},
    {"--heartbeat-timeout", S_HEARTBEAT_TIMEOUT, "expected seconds > 0, at most a day"},
    {"--buffer", S_BUFFER, "expected bytes from 1 to 1G (k, m, g suffixes allowed)"},
};

#define NSERVER (sizeof server_valued / sizeof server_valued[0])

static int apply_server_number(int id, const char *v, sj_xserver_options_t *o) {
  unsigned long long n;
  switch (id) {
  case S_MAX_TUNNELS:
    return parse_unsigned(v, 1, 100000, &o->max_tunnels);
  case S_MAX_STREAMS:
    return parse_unsigned(v, 1, 1000000, &o->max_streams);
  case S_MAX_AGENTS:
    return parse_unsigned(v, 1, 1000000, &o->max_agents);
  case S_GRACE:
    return cli_parse_seconds(v, &o->grace_s);
  case S_HANDSHAKE:
    return cli_parse_seconds(v, &o->handshake_timeout_s);
  case S_HEARTBEAT:
    return parse_ms(v, &o->heartbeat_ms);
  case S_HEARTBEAT_TIMEOUT:
    return parse_ms(v, &o->heartbeat_timeout_ms);
  default: /* S_BUFFER */
    if (cli_parse_count(v, 1, 1ULL << 30, 1, &n) != 0)
      return -1;
    o->buffer_size = (size_t)n;
    return 0;
  }
}

static int apply_server(int id, const char *v, cli_server_config_t *cfg, char *why, size_t whylen) {
  sj_xserver_options_t *o = &cfg->opts;
  switch (id) {
  case S_LISTEN:
    return parse_side("listen", v, &cfg->listen, why, whylen);
  case S_PUBLIC_HOST:
    return parse_word(v, o->public_host, SJ_XCTL_TEXT_MAX + 1);
  case S_PUBLIC_BIND:
    return parse_bind(v, o->public_bind, why, whylen);
  case S_PORT_RANGE:
    return parse_range(v, &o->port_lo, &o->port_hi);
  case S_TLS_CERT:
    return parse_file(v, o->tls_cert);
  case S_TLS_KEY:
    return parse_file(v, o->tls_key);
  case S_KEYS_FILE:
    return parse_file(v, cfg->keys_file);
  case S_TRANSPORT:
    return parse_transport(v, &o->transport);
  case S_WS_PATH:
    return parse_ws_path(v, o->ws_path);
  default:
    return apply_server_number(id, v, o);
  }
}

static xcli_action_t check_server(const cli_server_config_t *cfg, int ws_path_given, char *err,
                                  size_t errlen) {
  const sj_xserver_options_t *o = &cfg->opts;
  if ((o->tls_cert[0] != '\0') != (o->tls_key[0] != '\0'))
    return usage_error(err, errlen, "--tls-cert and --tls-key go together");
  if (ws_path_given && o->transport != SJ_XCARRIER_WS)
    return usage_error(err, errlen, "--ws-path needs --transport ws");
  if (o->heartbeat_timeout_ms <= o->heartbeat_ms)
    return usage_error(err, errlen, "--heartbeat-timeout must be longer than --heartbeat");
  if (o->no_auth && cfg->keys_file[0] != '\0')
    return usage_error(err, errlen, "--no-auth and --api-keys-file contradict each other");
  return XCLI_RUN;
}

xcli_action_t cli_server_parse(int argc, char **argv, cli_server_config_t *cfg, char *err,
                               size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  sj_xserver_options_init(&cfg->opts);
  sj_side_parse("listen:7835", &cfg->listen, NULL, 0);
  int ws_path_given = 0;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return XCLI_HELP;
    if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
      cfg->opts.verbose = 1;
      continue;
    }
    if (strcmp(arg, "--no-auth") == 0) {
      cfg->opts.no_auth = 1;
      continue;
    }
    if (arg[0] != '-' || arg[1] == '\0')
      return usage_error(err, errlen, "unexpected argument '%s' (see --help)", arg);
    const char *value;
    const valued_t *v = take_valued(server_valued, NSERVER, argc, argv, &i, &value, err, errlen);
    if (v == NULL)
      return XCLI_USAGE_ERROR;
    char why[160] = "";
    if (apply_server(v->id, value, cfg, why, sizeof why) != 0)
      return usage_error(err, errlen, "bad %s '%s': %s", v->name, value,
                         v->hint != NULL ? v->hint : why);
    ws_path_given |= v->id == S_WS_PATH;
  }
  return check_server(cfg, ws_path_given, err, errlen);
}

/* ---- sockjoin expose ------------------------------------------------------ */

enum {
  E_SERVER,
  E_REMOTE_PORT,
  E_API_KEY,
  E_API_KEY_FILE,
  E_CA,
  E_TRANSPORT,
  E_WS_PATH,
  E_CONNECT_TIMEOUT,
  E_HANDSHAKE,
  E_RETRY_MIN,
  E_RETRY_MAX,
  E_HEARTBEAT,
  E_HEARTBEAT_TIMEOUT,
  E_BUFFER
};

static const valued_t expose_valued[] = {
    {"--server", E_SERVER, NULL},
    {"--remote-port", E_REMOTE_PORT, "expected a port from 0 to 65535"},
    {"--api-key", E_API_KEY, "expected 1 to 1024 bytes"},
    {"--api-key-file", E_API_KEY_FILE, "expected a file name"},
    {"--ca", E_CA, "expected a file name"},
    {"--transport", E_TRANSPORT, "expected tcp or ws"},
    {"--ws-path", E_WS_PATH, WS_PATH_HINT},
    {"--connect-timeout", E_CONNECT_TIMEOUT, SECONDS_HINT},
    {"--handshake-timeout", E_HANDSHAKE, SECONDS_HINT},
    {"--retry-min", E_RETRY_MIN, SECONDS_HINT},
    {"--retry-max", E_RETRY_MAX, SECONDS_HINT},
    {"--heartbeat", E_HEARTBEAT, "expected seconds > 0, at most a day"},
    {"--heartbeat-timeout", E_HEARTBEAT_TIMEOUT, "expected seconds > 0, at most a day"},
    {"--buffer", E_BUFFER, "expected bytes from 1 to 1G (k, m, g suffixes allowed)"},
};

#define NEXPOSE (sizeof expose_valued / sizeof expose_valued[0])

/* The server as HOST:PORT, or HOST alone for the default port. */
static int parse_server(const char *v, sj_xagent_options_t *o, char *why, size_t whylen) {
  sj_side_spec_t spec;
  if (parse_side("connect", v, &spec, why, whylen) != 0) {
    char with_port[SJ_HOST_MAX + 8];
    snprintf(with_port, sizeof with_port, "%s:%d", v, SJ_XSERVER_DEFAULT_PORT);
    char why2[160];
    if (strlen(v) >= SJ_HOST_MAX || parse_side("connect", with_port, &spec, why2, sizeof why2) != 0)
      return -1;
  }
  memcpy(o->server_host, spec.host, sizeof o->server_host);
  o->server_port = spec.port;
  return 0;
}

/* LOCAL_HOST:PORT, or a bare PORT on 127.0.0.1. */
static int parse_local(const char *v, sj_xagent_tunnel_t *t, char *why, size_t whylen) {
  sj_side_spec_t spec;
  char with_host[32];
  if (strspn(v, "0123456789") == strlen(v) && strlen(v) < 8) {
    snprintf(with_host, sizeof with_host, "127.0.0.1:%s", v);
    v = with_host;
  }
  if (parse_side("connect", v, &spec, why, whylen) != 0)
    return -1;
  memcpy(t->local_host, spec.host, sizeof t->local_host);
  t->local_port = spec.port;
  return 0;
}

static int apply_expose_number(int id, const char *v, sj_xagent_options_t *o) {
  unsigned long long n;
  switch (id) {
  case E_CONNECT_TIMEOUT:
    return cli_parse_seconds(v, &o->connect_timeout_s);
  case E_HANDSHAKE:
    return cli_parse_seconds(v, &o->handshake_timeout_s);
  case E_RETRY_MIN:
    return cli_parse_seconds(v, &o->retry_min_s);
  case E_RETRY_MAX:
    return cli_parse_seconds(v, &o->retry_max_s);
  case E_HEARTBEAT:
    return parse_ms(v, &o->heartbeat_ms);
  case E_HEARTBEAT_TIMEOUT:
    return parse_ms(v, &o->heartbeat_timeout_ms);
  default: /* E_BUFFER */
    if (cli_parse_count(v, 1, 1ULL << 30, 1, &n) != 0)
      return -1;
    o->buffer_size = (size_t)n;
    return 0;
  }
}

typedef struct {
  unsigned remote[SJ_XAGENT_TUNNELS_MAX];
  size_t n_remote;
  int ws_path_given;
} expose_extra_t;

static int apply_expose(int id, const char *v, cli_expose_config_t *cfg, expose_extra_t *x,
                        char *why, size_t whylen) {
  sj_xagent_options_t *o = &cfg->opts;
  switch (id) {
  case E_SERVER:
    return parse_server(v, o, why, whylen);
  case E_REMOTE_PORT:
    if (x->n_remote == SJ_XAGENT_TUNNELS_MAX)
      return -1;
    return parse_unsigned(v, 0, 65535, &x->remote[x->n_remote++]);
  case E_API_KEY:
    if (strlen(v) == 0 || strlen(v) >= sizeof cfg->api_key)
      return -1;
    memcpy(cfg->api_key, v, strlen(v) + 1);
    cfg->has_api_key = 1;
    return 0;
  case E_API_KEY_FILE:
    return parse_file(v, cfg->api_key_file);
  case E_CA:
    return parse_file(v, o->ca);
  case E_TRANSPORT:
    return parse_transport(v, &o->transport);
  case E_WS_PATH:
    x->ws_path_given = 1;
    return parse_ws_path(v, o->ws_path);
  default:
    return apply_expose_number(id, v, o);
  }
}

static xcli_action_t check_expose(cli_expose_config_t *cfg, const expose_extra_t *x, char *err,
                                  size_t errlen) {
  sj_xagent_options_t *o = &cfg->opts;
  if (o->n_tunnels == 0)
    return usage_error(err, errlen, "expected a LOCAL_HOST:PORT to expose (see --help)");
  if (o->server_host[0] == '\0')
    return usage_error(err, errlen, "--server HOST[:PORT] is required");
  if (x->n_remote > o->n_tunnels)
    return usage_error(err, errlen, "%zu --remote-port options for %zu local services", x->n_remote,
                       o->n_tunnels);
  if ((o->ca[0] != '\0' || o->insecure) && !o->tls)
    return usage_error(err, errlen, "%s needs --tls", o->insecure ? "--insecure" : "--ca");
  if (o->ca[0] != '\0' && o->insecure)
    return usage_error(err, errlen, "--ca and --insecure contradict each other");
  if (cfg->has_api_key && cfg->api_key_file[0] != '\0')
    return usage_error(err, errlen, "--api-key and --api-key-file contradict each other");
  if (x->ws_path_given && o->transport != SJ_XCARRIER_WS)
    return usage_error(err, errlen, "--ws-path needs --transport ws");
  if (o->retry_min_s > o->retry_max_s)
    return usage_error(err, errlen, "--retry-min must not be longer than --retry-max");
  if (o->heartbeat_timeout_ms <= o->heartbeat_ms)
    return usage_error(err, errlen, "--heartbeat-timeout must be longer than --heartbeat");
  for (size_t i = 0; i < x->n_remote; i++)
    cfg->tunnels[i].remote_port = x->remote[i];
  o->tunnels = cfg->tunnels;
  return XCLI_RUN;
}

/* A flag without a value: returns 1 if arg was one. */
static int apply_expose_flag(const char *arg, sj_xagent_options_t *o) {
  if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0)
    o->verbose = 1;
  else if (strcmp(arg, "--tls") == 0)
    o->tls = 1;
  else if (strcmp(arg, "--insecure") == 0)
    o->insecure = 1;
  else
    return 0;
  return 1;
}

xcli_action_t cli_expose_parse(int argc, char **argv, cli_expose_config_t *cfg, char *err,
                               size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  sj_xagent_options_init(&cfg->opts);
  expose_extra_t x = {{0}, 0, 0};
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    char why[160] = "";
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
      return XCLI_HELP;
    if (apply_expose_flag(arg, &cfg->opts))
      continue;
    if (arg[0] != '-') {
      sj_xagent_options_t *o = &cfg->opts;
      if (o->n_tunnels == SJ_XAGENT_TUNNELS_MAX)
        return usage_error(err, errlen, "more than %d local services", SJ_XAGENT_TUNNELS_MAX);
      if (parse_local(arg, &cfg->tunnels[o->n_tunnels], why, sizeof why) != 0)
        return usage_error(err, errlen, "bad local service '%s': %s", arg, why);
      o->n_tunnels++;
      continue;
    }
    const char *value;
    const valued_t *v = take_valued(expose_valued, NEXPOSE, argc, argv, &i, &value, err, errlen);
    if (v == NULL)
      return XCLI_USAGE_ERROR;
    if (apply_expose(v->id, value, cfg, &x, why, sizeof why) != 0)
      return usage_error(err, errlen, "bad %s '%s': %s", v->name, value,
                         v->hint != NULL ? v->hint : why);
  }
  return check_expose(cfg, &x, err, errlen);
}
