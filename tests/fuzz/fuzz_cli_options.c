/* libFuzzer target: the command-line parser. The input is split at NUL
 * bytes into arguments; parsing must never crash, and a refusal must say
 * why. */
#include "options.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (buf == NULL)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = "sockjoin";
  for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
    argv[argc++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  argv[argc] = NULL;
  cli_config_t cfg;
  char err[512] = "";
  if (cli_parse(argc, argv, &cfg, err, sizeof err) == CLI_USAGE_ERROR && err[0] == '\0')
    abort();
  free(buf);
  return 0;
}
