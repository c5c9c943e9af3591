#include "run.h"

#include "console.h"
#include "signals.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* How long established pairs may take to deliver what they hold after a
 * signal before they are closed. */
#define DRAIN_MS 2000

enum { REQ_NONE, REQ_STOP, REQ_CLOSE };

typedef struct run run_t;

typedef struct {
  run_t *run;
  int index;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wake; /* the main thread's requests: stop, or close */
  int wake_open;   /* guarded by run->lock */
  int request;     /* guarded by run->lock */
  sj_connector_t *c;
  int exit_code;
  sj_stats_t stats; /* taken when the connector closed; arrays owned */
} worker_t;

struct run {
  cli_config_t *cfg;
  int n;
  worker_t *w;
  uv_mutex_t lock;
  uv_loop_t *main_loop;
  cli_signals_t signals;
  uv_async_t finished; /* a worker's loop has ended */
  int n_finished; /* guarded by lock */
  int signalled;
};

/* ---- output ---------------------------------------------------------- */

/* Lines come from several threads; cli_log_line keeps them whole. */
static void on_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  worker_t *w = data;
  (void)c;
  char prefix[32] = "";
  if (w->run->n > 1)
    snprintf(prefix, sizeof prefix, "worker %d: ", w->index + 1);
  cli_log_line(level != SJ_LOG_TRAFFIC, prefix, msg);
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

static void report_start_failure(const sj_side_spec_t *s, int rc) {
  char what[SJ_HOST_MAX + SJ_PATH_MAX];
  describe_side(s, what, sizeof what);
  if (rc == SJ_ECONFIG) /* the log line before this one named the file */
    fprintf(stderr, "sockjoin: cannot set up side %s: %s\n", what, sj_strerror(rc));
  else if (s->kind == SJ_SIDE_STDIO)
    fprintf(stderr, "sockjoin: cannot use stdio: %s\n", sj_strerror(rc));
  else if (s->kind == SJ_SIDE_LISTEN || s->kind == SJ_SIDE_UNIX_LISTEN)
    fprintf(stderr, "sockjoin: cannot listen on %s: %s\n", what, sj_strerror(rc));
  else
    fprintf(stderr, "sockjoin: cannot connect to %s: %s\n", what, sj_strerror(rc));
}

/* One "listening A ADDR" line per listening side, on stdout, flushed at
 * once so that scripts can read the port. With a stdio side this line comes
 * before the relayed bytes on stdout, as the contract has it. */
static void announce(sj_connector_t *c) {
  for (int side = 0; side < 2; side++) {
    char addr[SJ_HOST_MAX + SJ_PATH_MAX];
    if (sj_connector_address(c, (sj_side_t)side, addr, sizeof addr) >= 0) {
      printf("listening %c %s\n", side == 0 ? 'A' : 'B', addr);
      fflush(stdout);
    }
  }
}

/* ---- stats ----------------------------------------------------------- */

static sj_peer_t *copy_peers(const sj_peer_t *p, size_t n) {
  sj_peer_t *copy = n > 0 ? malloc(n * sizeof *copy) : NULL;
  if (copy != NULL)
    memcpy(copy, p, n * sizeof *copy);
  return copy;
}

static void take_stats(worker_t *w, sj_connector_t *c) {
  sj_connector_stats(c, &w->stats);
  w->stats.sockets_a = copy_peers(w->stats.sockets_a, w->stats.n_sockets_a);
  w->stats.sockets_b = copy_peers(w->stats.sockets_b, w->stats.n_sockets_b);
  if (w->stats.sockets_a == NULL)
    w->stats.n_sockets_a = 0;
  if (w->stats.sockets_b == NULL)
    w->stats.n_sockets_b = 0;
}

static void append_peers(sj_peer_t *dst, size_t *n, const sj_peer_t *src, size_t k) {
  if (k > 0)
    memcpy(dst + *n, src, k * sizeof *src);
  *n += k;
}

/* All workers' stats as one JSON line, the last line on stderr. */
static void print_stats(run_t *run) {
  sj_stats_t all;
  memset(&all, 0, sizeof all);
  size_t na = 0, nb = 0;
  for (int i = 0; i < run->n; i++) {
    na += run->w[i].stats.n_sockets_a;
    nb += run->w[i].stats.n_sockets_b;
  }
  sj_peer_t *a = malloc((na + 1) * sizeof *a), *b = malloc((nb + 1) * sizeof *b);
  if (a == NULL || b == NULL)
    na = nb = 0;
  for (int i = 0; i < run->n; i++) {
    const sj_stats_t *s = &run->w[i].stats;
    all.pairs += s->pairs;
    all.bytes_a_to_b += s->bytes_a_to_b;
    all.bytes_b_to_a += s->bytes_b_to_a;
    if (a != NULL && b != NULL) {
      append_peers(a, &all.n_sockets_a, s->sockets_a, s->n_sockets_a);
      append_peers(b, &all.n_sockets_b, s->sockets_b, s->n_sockets_b);
    }
  }
  all.sockets_a = a;
  all.sockets_b = b;
  int need = sj_stats_json(&all, NULL, 0);
  char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
  if (text != NULL) {
    sj_stats_json(&all, text, (size_t)need + 1);
    fprintf(stderr, "%s\n", text);
  }
  free(text);
  free(a);
  free(b);
}

/* ---- workers ---------------------------------------------------------- */

static void on_closed(sj_connector_t *c, void *data) {
  worker_t *w = data;
  if (w->run->cfg->stats)
    take_stats(w, c);
}

static void close_wake(worker_t *w) {
  uv_mutex_lock(&w->run->lock);
  if (w->wake_open) {
    w->wake_open = 0;
    uv_close((uv_handle_t *)&w->wake, NULL);
  }
  uv_mutex_unlock(&w->run->lock);
}

static void on_done(sj_connector_t *c, int status, void *data) {
  worker_t *w = data;
  if (status < 0 && status != SJ_ECLOSED)
    w->exit_code = 1;
  close_wake(w);
  sj_connector_close(c, on_closed);
}

/* A request from the main thread: the first signal drains, a second one
 * closes at once. */
static void on_wake(uv_async_t *h) {
  worker_t *w = h->data;
  uv_mutex_lock(&w->run->lock);
  int request = w->request;
  uv_mutex_unlock(&w->run->lock);
  if (request == REQ_STOP)
    sj_connector_stop(w->c, DRAIN_MS);
  else if (request == REQ_CLOSE)
    sj_connector_close(w->c, on_closed);
}

static void worker_main(void *arg) {
  worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
  uv_mutex_lock(&w->run->lock);
  w->run->n_finished++;
  uv_mutex_unlock(&w->run->lock);
  uv_async_send(&w->run->finished);
}

/* Creates worker i's loop and connector (not yet running). */
static int start_worker(run_t *run, int i, const sj_side_spec_t *a, const sj_side_spec_t *b) {
  worker_t *w = &run->w[i];
  w->run = run;
  w->index = i;
  uv_loop_init(&w->loop);
  uv_async_init(&w->loop, &w->wake, on_wake);
  w->wake.data = w;
  w->wake_open = 1;
  sj_options_t opts = run->cfg->opts;
  opts.log_cb = on_log;
  opts.on_done = on_done;
  opts.data = w;
  opts.share_listener = i > 0 ? run->w[0].c : NULL; /* one port, one socket */
  sj_side_t failed = SJ_A;
  int rc = sj_connector_new(&w->c, &w->loop, a, b, &opts, &failed);
  if (rc != 0) {
    report_start_failure(failed == SJ_A ? a : b, rc);
    close_wake(w);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* let what was opened close */
    uv_loop_close(&w->loop);
    return rc;
  }
  return 0;
}

/* ---- the main thread ------------------------------------------------- */

static void post(run_t *run, int request) {
  uv_mutex_lock(&run->lock);
  for (int i = 0; i < run->n; i++) {
    run->w[i].request = request;
    if (run->w[i].wake_open)
      uv_async_send(&run->w[i].wake);
  }
  uv_mutex_unlock(&run->lock);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *run = h->data;
  (void)signum;
  post(run, run->signalled++ == 0 ? REQ_STOP : REQ_CLOSE);
}

static void on_finished(uv_async_t *h) {
  run_t *run = h->data;
  /* Sends may coalesce, so the workers count themselves out. */
  uv_mutex_lock(&run->lock);
  int all = run->n_finished == run->n;
  uv_mutex_unlock(&run->lock);
  if (!all)
    return;
  cli_signals_close(&run->signals);
  uv_close((uv_handle_t *)&run->finished, NULL);
}

static void init_main(run_t *run) {
  run->main_loop = uv_default_loop();
  uv_async_init(run->main_loop, &run->finished, on_finished);
  run->finished.data = run;
  /* Signals are handled before the first "listening" line, so a script that
   * stops the tool as soon as it has read the port always gets a clean
   * exit; until the workers run, a request waits in their wake handles. */
  cli_signals_start(&run->signals, run->main_loop, on_signal, run);
}

static void close_main(run_t *run) {
  cli_signals_close(&run->signals);
  uv_close((uv_handle_t *)&run->finished, NULL);
  uv_run(run->main_loop, UV_RUN_DEFAULT);
  uv_loop_close(run->main_loop);
}

/* Tears down workers 0..n-1 that were created but never ran. */
static void abandon_workers(run_t *run, int n) {
  for (int i = 0; i < n; i++) {
    worker_t *w = &run->w[i];
    if (w->c != NULL)
      sj_connector_close(w->c, NULL);
    close_wake(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
  }
}

/* --workers auto: one per CPU this process may use. */
static int worker_count(const cli_config_t *cfg) {
  if (cfg->workers_auto) {
    unsigned cpus = uv_available_parallelism();
    return cpus < CLI_WORKERS_MAX ? (int)cpus : CLI_WORKERS_MAX;
  }
  return cfg->workers > 0 ? cfg->workers : 1;
}

int cli_run(cli_config_t *cfg) {
  run_t run = {.cfg = cfg, .n = worker_count(cfg)};
  run.w = calloc((size_t)run.n, sizeof *run.w);
  if (run.w == NULL)
    return 1;
  uv_mutex_init(&run.lock);
  init_main(&run);
  for (int i = 0; i < run.n; i++) {
    if (start_worker(&run, i, &cfg->side[0], &cfg->side[1]) != 0) {
      abandon_workers(&run, i);
      close_main(&run);
      free(run.w);
      return 1;
    }
  }
  announce(run.w[0].c);
  for (int i = 0; i < run.n; i++)
    uv_thread_create(&run.w[i].thread, worker_main, &run.w[i]);
  uv_run(run.main_loop, UV_RUN_DEFAULT);
  int code = 0;
  for (int i = 0; i < run.n; i++) {
    uv_thread_join(&run.w[i].thread);
    uv_loop_close(&run.w[i].loop);
    code = run.w[i].exit_code > code ? run.w[i].exit_code : code;
  }
  uv_loop_close(run.main_loop);
  if (cfg->stats)
    print_stats(&run);
  for (int i = 0; i < run.n; i++) {
    free((void *)run.w[i].stats.sockets_a);
    free((void *)run.w[i].stats.sockets_b);
  }
  uv_mutex_destroy(&run.lock);
  free(run.w);
  return code;
}
