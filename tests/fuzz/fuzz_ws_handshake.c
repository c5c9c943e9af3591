/* libFuzzer target: the WebSocket handshake codec. The input is parsed as a
 * client's request and as a server's response. Whatever they return must
 * hold together: a length within the input and the limit, the same answer
 * for the head alone and for shorter inputs (0 before the head ends), a
 * named error with a status for each refusal. A request that is accepted
 * gets a response that parses back; a refused one gets a refusal that a
 * client reads as that status. Nothing may crash or read out of bounds. */
#include "ws_handshake.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE_KEY "dGhlIHNhbXBsZSBub25jZQ=="

static void check_error(long r) {
  if (strcmp(sj_wsh_strerror((int)r), "unknown handshake error") == 0)
    abort();
}

static void check_prefixes(const char *in, size_t size, long r,
                           long (*parse)(const char *, size_t)) {
  if (r > 0) {
    if ((size_t)r > size || r > SJ_WSH_HEAD_MAX || parse(in, (size_t)r) != r)
      abort();
    if (parse(in, (size_t)r - 1) != 0)
      abort();
  } else if (r == 0 && size >= SJ_WSH_HEAD_MAX) {
    abort();
  } else if (r < 0) {
    check_error(r);
  }
}

static long request(const char *in, size_t n) {
  sj_wsh_request_t req;
  return sj_wsh_parse_request(in, n, "/ws", &req);
}

static long response(const char *in, size_t n) {
  sj_wsh_response_t res;
  return sj_wsh_parse_response(in, n, SAMPLE_KEY, &res);
}

/* The server's answer to what it parsed. */
static void answer(const char *in, size_t size) {
  sj_wsh_request_t req;
  long r = sj_wsh_parse_request(in, size, "/ws", &req);
  char out[1024];
  sj_wsh_response_t res;
  if (r > 0) {
    if (strlen(req.key) != SJ_WSH_KEY_LEN || req.target < in || req.target_len > (size_t)r)
      abort();
    long n = sj_wsh_response(out, sizeof out, req.key);
    if (n <= 0 || sj_wsh_parse_response(out, (size_t)n, req.key, &res) != n)
      abort();
  } else if (r < 0) {
    long n = sj_wsh_reject(out, sizeof out, (int)r);
    if (n <= 0 || sj_wsh_parse_response(out, (size_t)n, SAMPLE_KEY, &res) != SJ_WSH_ESTATUS ||
        res.status != sj_wsh_status((int)r))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  check_prefixes(in, size, request(in, size), request);
  check_prefixes(in, size, response(in, size), response);
  answer(in, size);
  return 0;
}
