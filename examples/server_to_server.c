/*
 * socket_connector's first example: two listening sides joined, with
 * lifecycle events and traffic shown. Try it with `ncat localhost 9000` and
 * `ncat localhost 8000` in two terminals; type in one, read in the other.
 *
 *   server_to_server [PORT_A PORT_B]
 */
#include <sockjoin.h>

#include <stdio.h>
#include <stdlib.h>

static void on_log(sj_connector_t *c, sj_log_level_t level, const char *msg, void *data) {
  (void)c;
  (void)level;
  (void)data;
  fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv) {
  sj_side_spec_t a, b;
  char err[128];
  char spec_a[32], spec_b[32];
  snprintf(spec_a, sizeof spec_a, "listen:%s", argc > 2 ? argv[1] : "9000");
  snprintf(spec_b, sizeof spec_b, "listen:%s", argc > 2 ? argv[2] : "8000");
  if (sj_side_parse(spec_a, &a, err, sizeof err) != 0 ||
      sj_side_parse(spec_b, &b, err, sizeof err) != 0) {
    fprintf(stderr, "bad port: %s\n", err);
    return 2;
  }

  sj_options_t opts;
  sj_options_init(&opts);
  opts.verbose = 1;
  opts.log_traffic = SJ_TRAFFIC_ASCII;
  opts.log_cb = on_log;

  sj_connector_t *c;
  int rc = sj_server_to_server(&c, NULL, &a, &b, &opts);
  if (rc != 0) {
    fprintf(stderr, "cannot start: %s\n", sj_strerror(rc));
    return 1;
  }
  char addr_a[64], addr_b[64];
  sj_connector_address(c, SJ_A, addr_a, sizeof addr_a);
  sj_connector_address(c, SJ_B, addr_b, sizeof addr_b);
  printf("Sender side A: %s  Receiver side B: %s\n", addr_a, addr_b);
  fflush(stdout);
  return sj_connector_run(c) == 0 ? 0 : 1;
}
