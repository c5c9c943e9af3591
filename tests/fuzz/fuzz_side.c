/* libFuzzer target: the SIDE codec. Any input must be parsed or refused with
 * a reason, and whatever parses, options included, must survive format ->
 * parse unchanged. */
#include "sockjoin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same_security(const sj_side_security_t *a, const sj_side_security_t *b) {
  return a->auth == b->auth && strcmp(a->auth_file, b->auth_file) == 0 && a->tls == b->tls &&
         strcmp(a->cert, b->cert) == 0 && strcmp(a->key, b->key) == 0 &&
         strcmp(a->ca, b->ca) == 0 && strcmp(a->sni, b->sni) == 0 && a->no_verify == b->no_verify &&
         strcmp(a->encrypt_file, b->encrypt_file) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  sj_side_spec_t spec, again;
  char err[256];
  if (sj_side_parse(text, &spec, err, sizeof err) == 0) {
    /* Options (cert=, key=, ca=, ...) can each be a path as long as the
     * address, so the text is sized as sj_side_format says, like snprintf. */
    int n = sj_side_format(&spec, NULL, 0);
    char *canon = n < 0 ? NULL : malloc((size_t)n + 1);
    if (canon == NULL || sj_side_format(&spec, canon, (size_t)n + 1) != n)
      abort();
    if (sj_side_parse(canon, &again, err, sizeof err) != 0)
      abort();
    free(canon);
    if (again.kind != spec.kind || again.port != spec.port || strcmp(again.host, spec.host) != 0 ||
        strcmp(again.path, spec.path) != 0 || !same_security(&again.sec, &spec.sec))
      abort();
  } else if (err[0] == '\0') {
    abort(); /* a refusal must say why */
  }
  free(text);
  return 0;
}
