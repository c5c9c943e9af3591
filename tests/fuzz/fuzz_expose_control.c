/* libFuzzer target: the expose control codec. The first byte picks the
 * stage. Every result must keep the contract (a line is taken up to its
 * first newline within the cap; need-more only below the cap with no
 * newline), the line alone must parse the same as with what follows it,
 * and every message parsed must format and parse back to itself. */
#include "control.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void same_msg(const sj_xctl_msg_t *a, const sj_xctl_msg_t *b) {
  if (a->type != b->type || a->port != b->port || a->prefer != b->prefer ||
      a->tunnel != b->tunnel || strcmp(a->token, b->token) != 0 || strcmp(a->text, b->text) != 0 ||
      strcmp(a->agent, b->agent) != 0)
    abort();
}

static void round_trip(sj_xctl_stage_t stage, const sj_xctl_msg_t *msg) {
  char line[SJ_XCTL_LINE_MAX + 1];
  int n = sj_xctl_format(msg, line, sizeof line);
  if (n <= 0 || n > SJ_XCTL_LINE_MAX || line[n - 1] != '\n')
    abort();
  sj_xctl_msg_t back;
  if (sj_xctl_parse(stage, line, (size_t)n, &back) != n)
    abort();
  same_msg(msg, &back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  sj_xctl_stage_t stage = (sj_xctl_stage_t)(data[0] % 5);
  const char *text = (const char *)data + 1;
  size -= 1;
  sj_xctl_msg_t msg;
  long n = sj_xctl_parse(stage, text, size, &msg);
  size_t scan = size < SJ_XCTL_LINE_MAX ? size : SJ_XCTL_LINE_MAX;
  const char *nl = memchr(text, '\n', scan);
  if (n == 0 && (nl != NULL || size >= SJ_XCTL_LINE_MAX))
    abort();
  if (n > 0 && (nl == NULL || (size_t)n != (size_t)(nl - text) + 1))
    abort();
  if (n < 0 && nl == NULL && size < SJ_XCTL_LINE_MAX)
    abort();
  if (nl != NULL) {
    sj_xctl_msg_t alone;
    long m = sj_xctl_parse(stage, text, (size_t)(nl - text) + 1, &alone);
    if (m != n)
      abort();
    if (n > 0)
      same_msg(&msg, &alone);
  }
  if (n > 0)
    round_trip(stage, &msg);
  return 0;
}
