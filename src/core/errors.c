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
#define SJ_UV_CASE(name, msg) case UV_##name:
    UV_ERRNO_MAP(SJ_UV_CASE)
#undef SJ_UV_CASE
    return uv_strerror(err);
  default:
    /* libuv allocates a message for codes it does not know. */
    return "unknown error";
  }
}

const char *sj_version(void) { return SJ_VERSION_STRING; }
