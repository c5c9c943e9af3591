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

/* ---- side options (",name[=value]") ------------------------------------ */

static int copy_value(char *dst, size_t cap, const char *name, const char *v, size_t n,
                      char *err, size_t errlen) {
  if (n == 0)
    return fail(err, errlen, "option '%s' needs a value", name);
  if (n >= cap)
    return fail(err, errlen, "value of option '%s' too long", name);
  memcpy(dst, v, n);
  dst[n] = '\0';
  return 0;
}

/* "auth=token:FILE", "auth=hmac:FILE", "encrypt=psk:FILE". */
static int parse_scheme(const char *name, const char *v, size_t n, const char *const *schemes,
                        int *which, char *file, char *err, size_t errlen) {
  for (int i = 0; schemes[i] != NULL; i++) {
    size_t sl = strlen(schemes[i]);
    if (n > sl && strncmp(v, schemes[i], sl) == 0 && v[sl] == ':') {
      *which = i;
      return copy_value(file, SJ_FILE_MAX, name, v + sl + 1, n - sl - 1, err, errlen);
    }
  }
  return fail(err, errlen, "bad %s '%.*s' (expected %s)", name, (int)n, v,
              strcmp(name, "auth") == 0 ? "token:FILE or hmac:FILE" : "psk:FILE");
}

static int parse_option(const char *name, size_t nlen, const char *v, size_t vlen,
                        int has_value, sj_side_security_t *sec, char *err, size_t errlen) {
  static const char *const auth_schemes[] = {"token", "hmac", NULL};
  static const char *const encrypt_schemes[] = {"psk", NULL};
  char key[16];
  if (nlen == 0)
    return fail(err, errlen, "empty option");
  if (nlen >= sizeof key)
    return fail(err, errlen, "unknown option '%.*s'", (int)nlen, name);
  memcpy(key, name, nlen);
  key[nlen] = '\0';
  int which = 0;
  if (strcmp(key, "tls") == 0) {
    if (has_value)
      return fail(err, errlen, "option 'tls' takes no value");
    sec->tls = 1;
    return 0;
  }
  if ((!has_value || vlen == 0) && (strcmp(key, "auth") == 0 || strcmp(key, "encrypt") == 0 ||
                     strcmp(key, "cert") == 0 || strcmp(key, "key") == 0 ||
                     strcmp(key, "ca") == 0 || strcmp(key, "sni") == 0 ||
                     strcmp(key, "verify") == 0))
    return fail(err, errlen, "option '%s' needs a value", key);
  if (strcmp(key, "auth") == 0) {
    int rc = parse_scheme(key, v, vlen, auth_schemes, &which, sec->auth_file, err, errlen);
    sec->auth = which == 0 ? SJ_AUTH_TOKEN : SJ_AUTH_HMAC;
    return rc;
  }
  if (strcmp(key, "encrypt") == 0)
    return parse_scheme(key, v, vlen, encrypt_schemes, &which, sec->encrypt_file, err, errlen);
  if (strcmp(key, "cert") == 0)
    return copy_value(sec->cert, sizeof sec->cert, key, v, vlen, err, errlen);
  if (strcmp(key, "key") == 0)
    return copy_value(sec->key, sizeof sec->key, key, v, vlen, err, errlen);
  if (strcmp(key, "ca") == 0)
    return copy_value(sec->ca, sizeof sec->ca, key, v, vlen, err, errlen);
  if (strcmp(key, "sni") == 0)
    return copy_value(sec->sni, sizeof sec->sni, key, v, vlen, err, errlen);
  if (strcmp(key, "verify") == 0) {
    if (vlen != 1 || (v[0] != '0' && v[0] != '1'))
      return fail(err, errlen, "bad verify '%.*s' (expected 0 or 1)", (int)vlen, v);
    sec->no_verify = v[0] == '0';
    return 0;
  }
  return fail(err, errlen, "unknown option '%s'", key);
}

static int is_listening(sj_side_kind_t kind) {
  return kind == SJ_SIDE_LISTEN || kind == SJ_SIDE_UNIX_LISTEN;
}

/* Options that only make sense together, checked once all are read. */
static int check_options(const sj_side_spec_t *side, char *err, size_t errlen) {
  const sj_side_security_t *sec = &side->sec;
  int any_tls = sec->cert[0] || sec->key[0] || sec->ca[0] || sec->sni[0] || sec->no_verify;
  if (any_tls && !sec->tls)
    return fail(err, errlen, "%s given without 'tls'",
                sec->cert[0] ? "cert=" : sec->key[0] ? "key=" : sec->ca[0] ? "ca=" :
                sec->sni[0] ? "sni=" : "verify=");
  if (!sec->cert[0] != !sec->key[0])
    return fail(err, errlen, "cert= and key= go together");
  if (sec->tls && is_listening(side->kind) && !sec->cert[0])
    return fail(err, errlen, "a listening tls side needs cert= and key=");
  if (is_listening(side->kind) && (sec->sni[0] || sec->no_verify))
    return fail(err, errlen, "%s is for connecting sides", sec->sni[0] ? "sni=" : "verify=");
  return 0;
}

static int parse_options(const char *s, sj_side_spec_t *side, char *err, size_t errlen) {
  while (*s == ',') {
    s++;
    size_t len = strcspn(s, ",");
    const char *eq = memchr(s, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - s) : len;
    const char *v = eq != NULL ? eq + 1 : s + len;
    size_t vlen = eq != NULL ? len - nlen - 1 : 0;
    int rc = parse_option(s, nlen, v, vlen, eq != NULL, &side->sec, err, errlen);
    if (rc != 0)
      return rc;
    s += len;
  }
  return check_options(side, err, errlen);
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
  return rc != 0 ? rc : parse_options(text + body, out, err, errlen);
}

static int format_address(const sj_side_spec_t *side, char *buf, size_t len);

/* Appends ",name=value" (or ",name" for an empty value) like snprintf. */
static int append(char *buf, size_t len, int at, const char *name, const char *v) {
  size_t room = (size_t)at < len ? len - (size_t)at : 0;
  return snprintf(room > 0 ? buf + at : NULL, room, ",%s%s%s", name, v[0] ? "=" : "", v);
}

int sj_side_format(const sj_side_spec_t *side, char *buf, size_t len) {
  const sj_side_security_t *sec = &side->sec;
  char v[SJ_FILE_MAX + 8];
  int n = format_address(side, buf, len);
  if (sec->tls)
    n += append(buf, len, n, "tls", "");
  const struct {
    const char *name, *value;
  } files[] = {{"cert", sec->cert}, {"key", sec->key}, {"ca", sec->ca}, {"sni", sec->sni}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    if (files[i].value[0])
      n += append(buf, len, n, files[i].name, files[i].value);
  if (sec->no_verify)
    n += append(buf, len, n, "verify", "0");
  if (sec->auth != SJ_AUTH_NONE) {
    snprintf(v, sizeof v, "%s:%s", sec->auth == SJ_AUTH_TOKEN ? "token" : "hmac", sec->auth_file);
    n += append(buf, len, n, "auth", v);
  }
  if (sec->encrypt_file[0]) {
    snprintf(v, sizeof v, "psk:%s", sec->encrypt_file);
    n += append(buf, len, n, "encrypt", v);
  }
  return n;
}

static int format_address(const sj_side_spec_t *side, char *buf, size_t len) {
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
