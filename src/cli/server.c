/* sockjoin server: the expose server (src/expose/expose_server.h) on the command
 * line. Options are parsed in expose_options.c; this file reads the keys,
 * runs the loop, prints the listening line and the log, and stops on
 * SIGINT or SIGTERM. */
#include "commands.h"
#include "console.h"
#include "signals.h"
#include "expose_options.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_loop_t loop;
  cli_signals_t signals;
  sj_xserver_t *srv;
  int closing;
} server_run_t;

static void on_log(sj_xserver_t *s, sj_log_level_t level, const char *msg, void *data) {
  (void)s;
  (void)level;
  (void)data;
  cli_log_line(1, NULL, msg);
}

static void on_closed(sj_xserver_t *s, void *data) {
  server_run_t *r = data;
  (void)s;
  cli_signals_close(&r->signals);
}

static void on_signal(uv_signal_t *h, int signum) {
  server_run_t *r = h->data;
  (void)signum;
  if (r->closing++ == 0)
    sj_xserver_close(r->srv, on_closed);
}

/* The keys of --api-keys-file, else of SOCKJOIN_API_KEYS. */
static int load_keys(const cli_server_config_t *cfg, sj_xkeys_t *keys, char *err, size_t errlen) {
  if (cfg->keys_file[0] != '\0') {
    int n = sj_xkeys_load(keys, cfg->keys_file, err, errlen);
    if (n == 0 && !cfg->opts.no_auth) {
      snprintf(err, errlen, "API keys file %.400s holds no key", cfg->keys_file);
      return -1;
    }
    return n < 0 ? n : 0;
  }
  const char *env = getenv("SOCKJOIN_API_KEYS");
  if (env == NULL || cfg->opts.no_auth)
    return 0;
  char why[160];
  int n = sj_xkeys_add_text(keys, env, strlen(env), ',', why, sizeof why);
  if (n < 0)
    snprintf(err, errlen, "SOCKJOIN_API_KEYS: %s", why);
  return n < 0 ? n : 0;
}

static int start(server_run_t *r, cli_server_config_t *cfg) {
  char err[512];
  sj_xkeys_t keys = {0};
  int rc = load_keys(cfg, &keys, err, sizeof err);
  if (rc == 0) {
    cfg->opts.keys = &keys;
    cfg->opts.log_cb = on_log;
    cfg->opts.data = r;
    rc = sj_xserver_new(&r->srv, &r->loop, &cfg->listen, &cfg->opts, err, sizeof err);
  }
  sj_xkeys_free(&keys);
  if (rc != 0) {
    fprintf(stderr, "sockjoin server: %s\n", err);
    return rc;
  }
  char addr[SJ_HOST_MAX + 16];
  sj_xserver_address(r->srv, addr, sizeof addr);
  printf("listening server %s\n", addr);
  fflush(stdout);
  return 0;
}

static int run(cli_server_config_t *cfg) {
  server_run_t r;
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
  return code;
}

int cli_server_main(int argc, char **argv) {
  static cli_server_config_t cfg;
  char err[512];
  switch (cli_server_parse(argc, argv, &cfg, err, sizeof err)) {
  case XCLI_HELP:
    fputs(cli_server_usage, stdout);
    return 0;
  case XCLI_USAGE_ERROR:
    fprintf(stderr, "sockjoin server: %s\n", err);
    return 2;
  default:
    return run(&cfg);
  }
}
