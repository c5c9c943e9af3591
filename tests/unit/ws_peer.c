/*
 * ws_peer: a small driver of the WebSocket carrier for the e2e tests (an
 * HTTP reverse proxy between the two ends; tests/e2e/test_websocket.py).
 *
 *   ws_peer server PATH
 *       listens on 127.0.0.1 port 0, prints "listening PORT", and echoes
 *       every connection's stream back over a WebSocket at PATH: it shuts
 *       down once the peer has ended and everything is echoed. Errors go to
 *       stderr as "ws_peer: server: TEXT". Runs until killed.
 *   ws_peer client HOST:PORT HOSTHEADER PATH BYTES SEED
 *       sends BYTES random bytes (from SEED) over a WebSocket, shuts down,
 *       reads the echo to the end and prints "ok SENT RECEIVED SHA_SENT
 *       SHA_RECEIVED"; on a failure prints "error: TEXT" and exits 1.
 */
#include "ws.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WBUF (100 * 1000)

static uv_loop_t *loop;
static sj_pool_t pool;
static const char *path;

/* ---- the echo server ------------------------------------------------------ */

typedef struct {
  sj_stream_t *s;
  sj_chunk_t *held; /* read, being written back */
  int eof, closing;
} echo_t;

static void echo_closed(sj_stream_t *s) { free(s->data); }

static void echo_close(echo_t *e, int reset) {
  if (e->closing)
    return;
  e->closing = 1;
  sj_stream_close(e->s, reset, echo_closed);
}

/* Both directions are over once the echo's own end has gone out. */
static void echo_shut(sj_stream_t *s, int status, void *arg) {
  (void)s;
  if (status < 0)
    fprintf(stderr, "ws_peer: server: shutdown: %s\n", sj_strerror(status));
  echo_close(arg, status < 0);
}

static void echo_wrote(sj_stream_t *s, int status, void *arg) {
  echo_t *e = arg;
  sj_pool_put(&pool, e->held);
  e->held = NULL;
  if (status < 0 || e->closing)
    return;
  sj_stream_read_start(s);
}

static void echo_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  echo_t *e = s->data;
  if (c != NULL) {
    sj_stream_read_stop(s);
    e->held = c;
    if (sj_stream_write(s, c->data + c->off, sj_chunk_remaining(c), echo_wrote, e) != 0)
      echo_close(e, 1);
  } else if (status == UV_EOF) {
    int rc = sj_stream_shutdown(s, echo_shut, e);
    if (rc != 0)
      echo_shut(s, rc == SJ_DONE ? 0 : rc, e);
  } else if (status < 0) {
    echo_close(e, 1);
  }
}

static void echo_layer(sj_stream_t *s, int status, const char *text, void *arg) {
  echo_t *e = arg;
  (void)s;
  if (status != 0) {
    fprintf(stderr, "ws_peer: server: %s\n", text != NULL ? text : sj_strerror(status));
    echo_close(e, 0); /* no reset: the HTTP refusal is on its way */
  }
}

static void on_accept(uv_stream_t *server, int status) {
  if (status < 0)
    return;
  sj_stream_t *tcp = sj_uvstream_new(loop, &pool, UV_TCP);
  echo_t *e = calloc(1, sizeof *e);
  if (tcp == NULL || e == NULL || uv_accept(server, sj_uvstream_handle(tcp)) != 0 ||
      sj_ws_stream_new(tcp, SJ_WS_SERVER, NULL, path, echo_layer, e, &e->s) != 0) {
    fprintf(stderr, "ws_peer: server: cannot take a connection\n");
    exit(1);
  }
  e->s->data = e;
  e->s->on_read = echo_read;
  sj_stream_read_start(e->s);
}

static int run_server(void) {
  static uv_tcp_t listener;
  struct sockaddr_in sa;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  if (uv_tcp_init(loop, &listener) != 0 || uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)&listener, 128, on_accept) != 0 ||
      uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &len) != 0) {
    fprintf(stderr, "ws_peer: server: cannot listen\n");
    return 1;
  }
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

/* ---- the client ----------------------------------------------------------- */

static struct {
  sj_stream_t *s;
  const char *host;
  uint64_t to_send, sent, received, rng;
  char *wbuf;
  EVP_MD_CTX *tx, *rx;
  int eof, failed;
  char error[300];
} cl;

static void client_fail(const char *text) {
  if (cl.failed)
    return;
  cl.failed = 1;
  snprintf(cl.error, sizeof cl.error, "%s", text);
  if (cl.s != NULL)
    sj_stream_close(cl.s, 1, NULL);
  cl.s = NULL;
}

static void client_send(void);

static void client_shut(sj_stream_t *s, int status, void *arg) {
  (void)s;
  (void)arg;
  if (status < 0)
    client_fail(sj_strerror(status));
}

static void client_wrote(sj_stream_t *s, int status, void *arg) {
  (void)s;
  (void)arg;
  if (status < 0) {
    if (status != UV_ECANCELED)
      client_fail(sj_strerror(status));
    return;
  }
  client_send();
}

static uint64_t next_rand(void) {
  cl.rng ^= cl.rng << 13;
  cl.rng ^= cl.rng >> 7;
  cl.rng ^= cl.rng << 17;
  return cl.rng;
}

static void client_send(void) {
  if (cl.failed)
    return;
  if (cl.sent == cl.to_send) {
    int rc = sj_stream_shutdown(cl.s, client_shut, NULL);
    if (rc < 0)
      client_fail(sj_strerror(rc));
    return;
  }
  size_t n = 1 + next_rand() % WBUF;
  if (n > cl.to_send - cl.sent)
    n = (size_t)(cl.to_send - cl.sent);
  for (size_t i = 0; i < n; i++)
    cl.wbuf[i] = (char)next_rand();
  EVP_DigestUpdate(cl.tx, cl.wbuf, n);
  cl.sent += n;
  int rc = sj_stream_write(cl.s, cl.wbuf, n, client_wrote, NULL);
  if (rc != 0)
    client_fail(sj_strerror(rc));
}

static void client_read(sj_stream_t *s, int status, sj_chunk_t *c) {
  if (c != NULL) {
    EVP_DigestUpdate(cl.rx, c->data + c->off, sj_chunk_remaining(c));
    cl.received += sj_chunk_remaining(c);
    sj_pool_put(s->pool, c);
  } else if (status == UV_EOF) {
    cl.eof = 1;
    sj_stream_close(s, 0, NULL);
    cl.s = NULL;
  }
  /* An error arrives through the layer callback too, with its text. */
}

static void client_layer(sj_stream_t *s, int status, const char *text, void *arg) {
  (void)s;
  (void)arg;
  if (status != 0)
    client_fail(text != NULL ? text : sj_strerror(status));
}

static void on_connect(uv_connect_t *req, int status) {
  sj_stream_t *tcp = req->data;
  free(req);
  if (status < 0) {
    sj_stream_close(tcp, 0, NULL);
    client_fail(sj_strerror(status));
    return;
  }
  if (sj_ws_stream_new(tcp, SJ_WS_CLIENT, cl.host, path, client_layer, NULL, &cl.s) != 0) {
    sj_stream_close(tcp, 0, NULL);
    client_fail("cannot make the WebSocket stream");
    return;
  }
  cl.s->on_read = client_read;
  sj_stream_read_start(cl.s);
  client_send();
}

static void hex(EVP_MD_CTX *md, char out[65]) {
  unsigned char d[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  for (int i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", d[i]);
}

static int run_client(const char *addr, const char *host, const char *bytes, const char *seed) {
  char ip[64];
  int port;
  struct sockaddr_in sa;
  if (sscanf(addr, "%63[^:]:%d", ip, &port) != 2 || uv_ip4_addr(ip, port, &sa) != 0) {
    fprintf(stderr, "ws_peer: bad address %s\n", addr);
    return 2;
  }
  cl.host = host;
  cl.to_send = strtoull(bytes, NULL, 10);
  cl.rng = strtoull(seed, NULL, 10) | 1;
  cl.wbuf = malloc(WBUF);
  cl.tx = EVP_MD_CTX_new();
  cl.rx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(cl.tx, EVP_sha256(), NULL);
  EVP_DigestInit_ex(cl.rx, EVP_sha256(), NULL);
  sj_stream_t *tcp = sj_uvstream_new(loop, &pool, UV_TCP);
  uv_connect_t *req = malloc(sizeof *req);
  req->data = tcp;
  if (uv_tcp_connect(req, (uv_tcp_t *)sj_uvstream_handle(tcp), (struct sockaddr *)&sa,
                     on_connect) != 0) {
    fprintf(stderr, "ws_peer: cannot connect\n");
    return 2;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  char a[65], b[65];
  hex(cl.tx, a);
  hex(cl.rx, b);
  EVP_MD_CTX_free(cl.tx);
  EVP_MD_CTX_free(cl.rx);
  free(cl.wbuf);
  if (cl.failed || !cl.eof) {
    printf("error: %s\n", cl.failed ? cl.error : "no end of stream");
    return 1;
  }
  printf("ok %llu %llu %s %s\n", (unsigned long long)cl.sent, (unsigned long long)cl.received, a,
         b);
  return 0;
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  sj_pool_init(&pool, SJ_CHUNK_SIZE, 64);
  int rc;
  if (argc == 3 && strcmp(argv[1], "server") == 0) {
    path = argv[2];
    rc = run_server();
  } else if (argc == 7 && strcmp(argv[1], "client") == 0) {
    path = argv[4];
    rc = run_client(argv[2], argv[3], argv[5], argv[6]);
  } else {
    fprintf(stderr, "usage: ws_peer server PATH | ws_peer client HOST:PORT HOSTHEADER PATH "
                    "BYTES SEED\n");
    return 2;
  }
  uv_loop_close(loop);
  sj_pool_drain(&pool);
  return rc;
}
