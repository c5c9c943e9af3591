/* Error codes: libuv's, passed through, plus our own range. */
#include "sockjoin.h"

#include <uv.h>

const char *sj_strerror(int err) {
  switch (err) {
#define SJ_ERR_CASE(name, code, msg) \
  case code:                         \
    return msg;
    SJ_ERRNO_MAP(SJ_ERR_CASE)
#undef SJ_ERR_CASE
  default:
    return uv_strerror(err);
  }
}

const char *sj_version(void) { return SJ_VERSION_STRING; }
