/*
 * socket_connector's wait_for_connector_done example: a connector on the
 * caller's own loop, run in a thread of its own (the Dart example uses an
 * isolate), with a 500 ms grace period; the main thread waits until the
 * connector is done. With nobody connecting, it ends after half a second.
 */
#include <sockjoin.h>

#include <stdio.h>
#include <uv.h>

typedef struct {
  int status;
  int rc;
} result_t;

static void on_done(sj_connector_t *c, int status, void *data) {
  result_t *r = data;
  r->status = status;
  printf("connector done (status %d)\n", status);
  sj_connector_close(c, NULL);
}

static void run_connector(void *arg) {
  result_t *r = arg;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sj_side_spec_t a, b;
  sj_side_parse("listen:127.0.0.1:0", &a, NULL, 0);
  sj_side_parse("listen:127.0.0.1:0", &b, NULL, 0);
  sj_options_t opts;
  sj_options_init(&opts);
  opts.timeout_s = 0.5;
  opts.on_done = on_done;
  opts.data = r;
  sj_connector_t *c;
  r->rc = sj_server_to_server(&c, &loop, &a, &b, &opts);
  if (r->rc == 0) {
    char pa[64], pb[64];
    sj_connector_address(c, SJ_A, pa, sizeof pa);
    sj_connector_address(c, SJ_B, pb, sizeof pb);
    printf("listening on %s and %s for 500 ms\n", pa, pb);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
}

int main(void) {
  result_t r = {0, 0};
  uv_thread_t thread;
  uv_thread_create(&thread, run_connector, &r);
  uv_thread_join(&thread);
  if (r.rc != 0) {
    fprintf(stderr, "cannot start: %s\n", sj_strerror(r.rc));
    return 1;
  }
  printf("main thread saw the connector finish\n");
  return r.status == 0 ? 0 : 1;
}
