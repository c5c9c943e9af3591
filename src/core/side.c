/*
 * The SIDE codec: "listen:[HOST:]PORT", "connect:HOST:PORT",
 * "unix-listen:PATH", "unix:PATH", "stdio", each optionally followed by
 * ",name[=value]" options. Pure: no I/O and no allocation, so it is
 * unit-tested and fuzzed on its own.
 */
#include "sockjoin.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  sj_side_kind_t kind;
} kind_name_t;

static const kind_name_t kinds[] = {
    {"listen", SJ_SIDE_LISTEN},        {"connect", SJ_SIDE_CONNECT},
    {"unix-listen", SJ_SIDE_UNIX_LISTEN}, {"unix", SJ_SIDE_UNIX},
    {"stdio", SJ_SIDE_STDIO},
};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return SJ_EBADSIDE;
}

/* Parses a decimal port of n bytes; min is 0 for listening, 1 for connecting. */
static int parse_port(const char *s, size_t n, int min, int *out, char *err,
                      size_t errlen) {
  if (n == 0)
    return fail(err, errlen, "missing port");
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return fail(err, errlen, "bad port '%.*s'", (int)n, s);
    if (v <= 65535)
      v = v * 10 + (s[i] - '0');
  }
  if (v < min || v > 65535)
    return fail(err, errlen, "port out of range");
  *out = (int)v;
  return 0;
}

static int host_char_ok(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

/* Parses "HOST:PORT", "[V6]:PORT" or, when host_optional, a bare "PORT". */
static int parse_host_port(const char *s, size_t n, int host_optional,
                           sj_side_spec_t *out, char *err, size_t errlen) {
  const char *host = s;
  size_t hlen = 0;
  const char *port = s;
  size_t plen = n;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (close == NULL)
      return fail(err, errlen, "missing ']'");
    host = s + 1;
    hlen = (size_t)(close - host);
    size_t rest = n - (size_t)(close + 1 - s);
    if (rest == 0 || close[1] != ':')
      return fail(err, errlen, rest == 0 ? "missing port" : "expected ':' after ']'");
    port = close + 2;
    plen = rest - 1;
    unsigned char buf[16];
    char tmp[SJ_HOST_MAX];
    if (hlen == 0 || hlen >= sizeof tmp)
      return fail(err, errlen, "bad IPv6 address");
    memcpy(tmp, host, hlen);
    tmp[hlen] = '\0';
    if (inet_pton(AF_INET6, tmp, buf) != 1)
      return fail(err, errlen, "bad IPv6 address '%s'", tmp);
  } else {
    const char *colon = memchr(s, ':', n);
    if (colon != NULL) {
      if (memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) != NULL)
        return fail(err, errlen, "IPv6 address must be in brackets");
      hlen = (size_t)(colon - s);
      port = colon + 1;
      plen = n - hlen - 1;
    } else if (!host_optional) {
      size_t digits = strspn(s, "0123456789");
      return fail(err, errlen, n > 0 && digits == n ? "missing host" : "missing port");
    }
    for (size_t i = 0; i < hlen; i++)
      if (!host_char_ok(host[i]))
        return fail(err, errlen, "bad host '%.*s'", (int)hlen, host);
    if (hlen == 0 && !host_optional)
      return fail(err, errlen, "missing host");
  }
  if (hlen >= SJ_HOST_MAX)
    return fail(err, errlen, "host too long");
  memcpy(out->host, host, hlen);
  out->host[hlen] = '\0';
  return parse_port(port, plen, host_optional ? 0 : 1, &out->port, err, errlen);
}

static int parse_path(const char *s, size_t n, sj_side_spec_t *out, char *err,
                      size_t errlen) {
  if (n == 0)
    return fail(err, errlen, "missing path");
  if (n >= SJ_PATH_MAX)
    return fail(err, errlen, "path too long (max %d bytes)", SJ_PATH_MAX - 1);
  memcpy(out->path, s, n);
  out->path[n] = '\0';
  return 0;
}

/* Side options (",name=value") arrive with the security features; until a
 * name is known, every one is refused by name. */
static int parse_options(const char *s, char *err, size_t errlen) {
  if (*s == '\0')
    return 0;
  size_t n = strcspn(s + 1, "=,");
  if (n == 0)
    return fail(err, errlen, "empty option");
  return fail(err, errlen, "unknown option '%.*s'", (int)n, s + 1);
}

int sj_side_parse(const char *text, sj_side_spec_t *out, char *err,
                  size_t errlen) {
  memset(out, 0, sizeof *out);
  size_t body = strcspn(text, ",");
  size_t klen = strcspn(text, ":,");
  const kind_name_t *k = NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strlen(kinds[i].name) == klen && strncmp(text, kinds[i].name, klen) == 0)
      k = &kinds[i];
  if (k == NULL)
    return fail(err, errlen, "unknown type '%.*s'", (int)klen, text);
  out->kind = k->kind;
  const char *addr = text + klen + (klen < body ? 1 : 0);
  size_t alen = body - (size_t)(addr - text);
  int rc;
  switch (k->kind) {
  case SJ_SIDE_STDIO:
    rc = klen < body ? fail(err, errlen, "stdio takes no address") : 0;
    break;
  case SJ_SIDE_LISTEN:
    rc = parse_host_port(addr, alen, 1, out, err, errlen);
    break;
  case SJ_SIDE_CONNECT:
    rc = parse_host_port(addr, alen, 0, out, err, errlen);
    break;
  default:
    rc = parse_path(addr, alen, out, err, errlen);
    break;
  }
  return rc != 0 ? rc : parse_options(text + body, err, errlen);
}

int sj_side_format(const sj_side_spec_t *side, char *buf, size_t len) {
  int v6 = strchr(side->host, ':') != NULL;
  switch (side->kind) {
  case SJ_SIDE_LISTEN:
    if (side->host[0] == '\0')
      return snprintf(buf, len, "listen:%d", side->port);
    /* fall through */
  case SJ_SIDE_CONNECT:
    return snprintf(buf, len, "%s:%s%s%s:%d",
                    side->kind == SJ_SIDE_LISTEN ? "listen" : "connect",
                    v6 ? "[" : "", side->host, v6 ? "]" : "", side->port);
  case SJ_SIDE_UNIX_LISTEN:
    return snprintf(buf, len, "unix-listen:%s", side->path);
  case SJ_SIDE_UNIX:
    return snprintf(buf, len, "unix:%s", side->path);
  case SJ_SIDE_STDIO:
    return snprintf(buf, len, "stdio");
  }
  return snprintf(buf, len, "?");
}
