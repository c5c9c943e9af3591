#include "numbers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_seconds(const char *s, double *out) {
  size_t digits = strspn(s, "0123456789");
  size_t frac = s[digits] == '.' ? strspn(s + digits + 1, "0123456789") : 0;
  size_t len = digits + (s[digits] == '.' ? 1 + frac : 0);
  if (digits + frac == 0 || s[len] != '\0' || len > 20)
    return -1;
  double v = strtod(s, NULL);
  if (v < 0.001 || v > 31536000)
    return -1;
  *out = v;
  return 0;
}

static int suffix_shift(char c) {
  switch (c) {
  case 'k':
  case 'K':
    return 10;
  case 'm':
  case 'M':
    return 20;
  case 'g':
  case 'G':
    return 30;
  default:
    return -1;
  }
}

int cli_parse_count(const char *s, unsigned long long min, unsigned long long max, int allow_suffix,
                    unsigned long long *out) {
  if (*s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0)
    return -1;
  if (allow_suffix && *end != '\0' && end[1] == '\0') {
    int shift = suffix_shift(*end);
    if (shift < 0 || v > (max >> shift))
      return -1;
    v <<= shift;
    end++;
  }
  if (*end != '\0' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}
