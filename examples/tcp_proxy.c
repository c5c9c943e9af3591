/*
 * socket_connector's second example, a TCP proxy: side A dials the target
 * for every connection accepted on side B, so `ssh -p 2000 localhost`
 * reaches the target's sshd.
 *
 *   tcp_proxy TARGET_HOST TARGET_PORT [LISTEN_PORT]
 */
#include <sockjoin.h>

#include <stdio.h>

static void on_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  (void)c;
  (void)level;
  (void)data;
  fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tcp_proxy TARGET_HOST TARGET_PORT [LISTEN_PORT]\n");
    return 2;
  }
  char spec_a[300], spec_b[32], err[128];
  snprintf(spec_a, sizeof spec_a, "connect:%s:%s", argv[1], argv[2]);
  snprintf(spec_b, sizeof spec_b, "listen:127.0.0.1:%s", argc > 3 ? argv[3] : "2000");
  sj_side_spec_t a, b;
  if (sj_side_parse(spec_a, &a, err, sizeof err) != 0 ||
      sj_side_parse(spec_b, &b, err, sizeof err) != 0) {
    fprintf(stderr, "bad address: %s\n", err);
    return 2;
  }
  sj_options_t opts;
  sj_options_init(&opts);
  opts.verbose = 1;
  opts.log_cb = on_log;

  sj_connector_t *c;
  int rc = sj_socket_to_server(&c, NULL, &a, &b, &opts);
  if (rc != 0) {
    fprintf(stderr, "cannot start: %s\n", sj_strerror(rc));
    return 1;
  }
  char addr[64];
  sj_connector_address(c, SJ_B, addr, sizeof addr);
  printf("listening B %s\n", addr);
  fflush(stdout);
  return sj_connector_run(c) == 0 ? 0 : 1;
}
