/* libFuzzer target: the SIDE codec. Any input must be parsed or refused with
 * a reason, and whatever parses must survive format -> parse unchanged. */
#include "sockjoin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  sj_side_spec_t spec, again;
  char err[256];
  if (sj_side_parse(text, &spec, err, sizeof err) == 0) {
    char canon[SJ_HOST_MAX + SJ_PATH_MAX + 32];
    int n = sj_side_format(&spec, canon, sizeof canon);
    if (n < 0 || (size_t)n >= sizeof canon)
      abort();
    if (sj_side_parse(canon, &again, err, sizeof err) != 0)
      abort();
    if (again.kind != spec.kind || again.port != spec.port ||
        strcmp(again.host, spec.host) != 0 || strcmp(again.path, spec.path) != 0)
      abort();
  } else if (err[0] == '\0') {
    abort(); /* a refusal must say why */
  }
  free(text);
  return 0;
}
