/* sockjoin: the command line. It parses options into the library's structs,
 * prints what the library reports, and runs the loop. */
#include "options.h"
#include "sockjoin.h"

#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <uv.h>

typedef struct {
  cli_config_t cfg;
  sj_connector_t *c;
  uv_signal_t sigint, sigterm;
  int signals_open;
  int signalled;
  int exit_code;
} app_t;

/* How long established pairs may take to deliver what they hold after a
 * signal before they are closed. */
#define DRAIN_MS 2000

static void print_time(FILE *f) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  fprintf(f, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900, tm.tm_mon + 1,
          tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

static void on_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  (void)c;
  (void)data;
  if (level != SJ_LOG_TRAFFIC)
    print_time(stderr);
  fprintf(stderr, "%s\n", msg);
}

static void print_stats(sj_connector_t *c) {
  sj_stats_t st;
  sj_connector_stats(c, &st);
  int need = sj_stats_json(&st, NULL, 0);
  if (need < 0)
    return;
  char *buf = malloc((size_t)need + 1);
  if (buf == NULL)
    return;
  sj_stats_json(&st, buf, (size_t)need + 1);
  fprintf(stderr, "%s\n", buf);
  free(buf);
}

static void on_closed(sj_connector_t *c, void *data) {
  app_t *app = data;
  if (app->cfg.stats)
    print_stats(c);
}

static void close_signals(app_t *app) {
  if (!app->signals_open)
    return;
  app->signals_open = 0;
  uv_close((uv_handle_t *)&app->sigint, NULL);
  uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static void on_done(sj_connector_t *c, int status, void *data) {
  app_t *app = data;
  if (status < 0 && status != SJ_ECLOSED)
    app->exit_code = 1;
  close_signals(app);
  sj_connector_close(c, on_closed);
}

/* The first signal drains gracefully; a second one closes at once. */
static void on_signal(uv_signal_t *h, int signum) {
  app_t *app = h->data;
  (void)signum;
  if (app->signalled++ == 0)
    sj_connector_stop(app->c, DRAIN_MS);
  else
    sj_connector_close(app->c, on_closed);
}

static void describe_side(const sj_side_spec_t *s, char *buf, size_t len) {
  if (s->kind == SJ_SIDE_UNIX_LISTEN || s->kind == SJ_SIDE_UNIX)
    snprintf(buf, len, "%s", s->path);
  else if (s->kind == SJ_SIDE_STDIO)
    snprintf(buf, len, "stdio");
  else
    snprintf(buf, len, strchr(s->host, ':') ? "[%s]:%d" : "%s:%d",
             s->host[0] ? s->host : "0.0.0.0", s->port);
}

/* One "listening A ADDR" line per listening side, on stdout, flushed at
 * once so that scripts can read the port. With a stdio side this line comes
 * before the relayed bytes on stdout, as the contract has it. */
static void announce(app_t *app) {
  for (int side = 0; side < 2; side++) {
    char addr[SJ_HOST_MAX + SJ_PATH_MAX];
    if (sj_connector_address(app->c, (sj_side_t)side, addr, sizeof addr) >= 0) {
      printf("listening %c %s\n", side == 0 ? 'A' : 'B', addr);
      fflush(stdout);
    }
  }
}

static int start(app_t *app, uv_loop_t *loop) {
  /* Signals are handled before the first "listening" line, so a script that
   * stops the tool as soon as it has read the port always gets a clean exit. */
  uv_signal_init(loop, &app->sigint);
  uv_signal_init(loop, &app->sigterm);
  app->sigint.data = app->sigterm.data = app;
  uv_signal_start(&app->sigint, on_signal, SIGINT);
  uv_signal_start(&app->sigterm, on_signal, SIGTERM);
  app->signals_open = 1;

  sj_options_t *o = &app->cfg.opts;
  o->log_cb = on_log;
  o->on_done = on_done;
  o->data = app;
  sj_side_t failed = SJ_A;
  int rc = sj_connector_new(&app->c, loop, &app->cfg.side[0], &app->cfg.side[1], o, &failed);
  if (rc != 0) {
    char what[SJ_HOST_MAX + SJ_PATH_MAX];
    const sj_side_spec_t *s = &app->cfg.side[failed];
    describe_side(s, what, sizeof what);
    if (s->kind == SJ_SIDE_STDIO)
      fprintf(stderr, "sockjoin: cannot use stdio: %s\n", sj_strerror(rc));
    else if (s->kind == SJ_SIDE_LISTEN || s->kind == SJ_SIDE_UNIX_LISTEN)
      fprintf(stderr, "sockjoin: cannot listen on %s: %s\n", what, sj_strerror(rc));
    else
      fprintf(stderr, "sockjoin: cannot connect to %s: %s\n", what, sj_strerror(rc));
    close_signals(app);
    uv_run(loop, UV_RUN_DEFAULT); /* let what was opened close */
    return 1;
  }
  announce(app);
  return 0;
}

int main(int argc, char **argv) {
  static app_t app;
  char err[512];
  switch (cli_parse(argc, argv, &app.cfg, err, sizeof err)) {
  case CLI_HELP:
    fputs(cli_usage, stdout);
    return 0;
  case CLI_VERSION:
    printf("sockjoin %s\n", sj_version());
    return 0;
  case CLI_USAGE_ERROR:
    fprintf(stderr, "sockjoin: %s\n", err);
    return 2;
  case CLI_RUN:
    break;
  }
  /* A peer that goes away mid-write must not kill the relay: writes report
   * EPIPE instead. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t *loop = uv_default_loop();
  if (start(&app, loop) != 0) {
    uv_loop_close(loop);
    return 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return app.exit_code;
}
