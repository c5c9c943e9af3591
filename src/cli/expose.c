/* sockjoin expose: the expose agent (src/expose/expose_agent.h) on the command
 * line. Options are parsed in expose_options.c; this file finds the key,
 * runs the loop, prints an "exposed" line per tunnel each time it comes up
 * and the log, and stops on SIGINT or SIGTERM (status 0) or when the agent
 * gives up (status 1, with the reason). */
#include "commands.h"
#include "console.h"
#include "signals.h"
#include "expose_options.h"
#include "secret.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_loop_t loop;
  cli_signals_t signals;
  sj_xagent_t *agent;
  int closing;
  int status;
} expose_run_t;

static void on_log(sj_xagent_t *a, sj_log_level_t level, const char *msg, void *data) {
  (void)a;
  (void)level;
  (void)data;
  cli_log_line(1, NULL, msg);
}

static void on_exposed(sj_xagent_t *a, const sj_xagent_exposed_t *info, void *data) {
  (void)a;
  (void)data;
  const char *h = info->public_host;
  printf(strchr(h, ':') ? "exposed %s at tcp://[%s]:%u tunnel=%lu\n"
                        : "exposed %s at tcp://%s:%u tunnel=%lu\n",
         info->local, h, info->public_port, (unsigned long)info->tunnel_id);
  fflush(stdout);
}

static void on_closed(sj_xagent_t *a, void *data) {
  expose_run_t *r = data;
  (void)a;
  cli_signals_close(&r->signals);
}

static void close_agent(expose_run_t *r) {
  if (r->closing++ == 0)
    sj_xagent_close(r->agent, on_closed);
}

static void on_done(sj_xagent_t *a, int status, const char *why, void *data) {
  expose_run_t *r = data;
  (void)a;
  (void)status;
  fprintf(stderr, "sockjoin expose: %s\n", why);
  r->status = 1;
  close_agent(r);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  close_agent(h->data);
}

/* The key: --api-key, --api-key-file, else SOCKJOIN_API_KEY; none is
 * allowed (a server with --no-auth needs none). */
static int find_key(cli_expose_config_t *cfg, sj_secret_t *file_key) {
  sj_xagent_options_t *o = &cfg->opts;
  if (cfg->has_api_key) {
    o->api_key = cfg->api_key;
    o->api_key_len = strlen(cfg->api_key);
  } else if (cfg->api_key_file[0] != '\0') {
    char err[512];
    if (sj_secret_load(cfg->api_key_file, file_key, err, sizeof err) != 0) {
      fprintf(stderr, "sockjoin expose: %s\n", err);
      return -1;
    }
    o->api_key = (const char *)file_key->data;
    o->api_key_len = file_key->len;
  } else if (getenv("SOCKJOIN_API_KEY") != NULL && getenv("SOCKJOIN_API_KEY")[0] != '\0') {
    o->api_key = getenv("SOCKJOIN_API_KEY");
    o->api_key_len = strlen(o->api_key);
  }
  return 0;
}

static int start(expose_run_t *r, cli_expose_config_t *cfg) {
  sj_secret_t file_key = {0};
  if (find_key(cfg, &file_key) != 0)
    return -1;
  char err[512];
  cfg->opts.log_cb = on_log;
  cfg->opts.on_exposed = on_exposed;
  cfg->opts.on_done = on_done;
  cfg->opts.data = r;
  int rc = sj_xagent_new(&r->agent, &r->loop, &cfg->opts, err, sizeof err);
  sj_secret_free(&file_key);
  memset(cfg->api_key, 0, sizeof cfg->api_key);
  if (rc != 0)
    fprintf(stderr, "sockjoin expose: %s\n", err);
  return rc;
}

static int run(cli_expose_config_t *cfg) {
  expose_run_t r;
  memset(&r, 0, sizeof r);
  uv_loop_init(&r.loop);
  cli_signals_start(&r.signals, &r.loop, on_signal, &r);
  if (start(&r, cfg) != 0) {
    cli_signals_close(&r.signals);
    r.status = 1;
  }
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_loop_close(&r.loop);
  return r.status;
}

int cli_expose_main(int argc, char **argv) {
  static cli_expose_config_t cfg;
  char err[512];
  switch (cli_expose_parse(argc, argv, &cfg, err, sizeof err)) {
  case XCLI_HELP:
    fputs(cli_expose_usage, stdout);
    return 0;
  case XCLI_USAGE_ERROR:
    fprintf(stderr, "sockjoin expose: %s\n", err);
    return 2;
  default:
    return run(&cfg);
  }
}
