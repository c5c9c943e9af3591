/* The WebSocket opening handshake, as a pure codec (see ws_handshake.h). */
#include "ws_handshake.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 6455 section 1.3: appended to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

typedef struct {
  const char *p;
  size_t n;
} span_t;

/* What a head's header lines said, as far as the handshake cares. */
typedef struct {
  int upgrade, connection;  /* the websocket / upgrade tokens were seen */
  int versions, version_ok; /* Sec-WebSocket-Version lines, all "13"    */
  int keys, key_ok, hosts;  /* counts, and the one key's form           */
  int accepts;              /* response: Sec-WebSocket-Accept lines     */
  int extras;               /* response: extensions or a subprotocol    */
  span_t key, accept;
} seen_t;

/* ---- characters and spans ------------------------------------------------- */

static int is_ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_base64(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' ||
         c == '/';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static span_t trim(span_t s) {
  while (s.n > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
    s.p++;
    s.n--;
  }
  while (s.n > 0 && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
    s.n--;
  return s;
}

static int span_eq(span_t s, const char *lit) {
  return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static int span_ieq(span_t s, const char *lit) {
  return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

/* A comma-separated list (Connection, Upgrade) names token. */
static int list_has(span_t v, const char *token) {
  size_t i = 0;
  while (i <= v.n) {
    size_t j = i;
    while (j < v.n && v.p[j] != ',')
      j++;
    span_t item = {v.p + i, j - i};
    if (span_ieq(trim(item), token))
      return 1;
    i = j + 1;
  }
  return 0;
}

/* ---- the head and its lines ----------------------------------------------- */

/* The length of the head through its empty line; 0 while it has not ended;
 * an error for bytes that cannot be HTTP, or a head over the limit. */
static long head_length(const char *buf, size_t len) {
  size_t max = len < SJ_WSH_HEAD_MAX ? len : SJ_WSH_HEAD_MAX;
  for (size_t i = 0; i < max; i++) {
    unsigned char c = (unsigned char)buf[i];
    if (c == '\n') {
      if (i == 0)
        return SJ_WSH_ESYNTAX;
      if (buf[i - 1] == '\n' || (buf[i - 1] == '\r' && i >= 2 && buf[i - 2] == '\n'))
        return (long)i + 1;
    } else if (c != '\r' && is_ctl(c)) {
      return SJ_WSH_ESYNTAX;
    }
  }
  return len >= SJ_WSH_HEAD_MAX ? SJ_WSH_ETOOBIG : 0;
}

typedef struct {
  const char *p, *end;
} lines_t;

/* The next line of a whole head, without its line ending. */
static span_t next_line(lines_t *it) {
  const char *nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
  span_t s = {it->p, (size_t)(nl - it->p)};
  if (s.n > 0 && s.p[s.n - 1] == '\r')
    s.n--;
  it->p = nl + 1;
  return s;
}

static int split_header(span_t line, span_t *name, span_t *value) {
  const char *colon = memchr(line.p, ':', line.n);
  if (colon == NULL || colon == line.p)
    return SJ_WSH_ESYNTAX;
  *name = (span_t){line.p, (size_t)(colon - line.p)};
  for (size_t i = 0; i < name->n; i++)
    if (!is_tchar((unsigned char)name->p[i]))
      return SJ_WSH_ESYNTAX; /* also a folded line, which starts with a space */
  *value = trim((span_t){colon + 1, line.n - name->n - 1});
  for (size_t i = 0; i < value->n; i++)
    if (is_ctl((unsigned char)value->p[i]))
      return SJ_WSH_ESYNTAX;
  return 0;
}

/* A Sec-WebSocket-Key: base64 of 16 bytes, 22 characters and "==". */
static int key_form_ok(span_t v) {
  if (v.n != SJ_WSH_KEY_LEN || v.p[22] != '=' || v.p[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++)
    if (!is_base64((unsigned char)v.p[i]))
      return 0;
  return 1;
}

static void note_header(seen_t *s, span_t name, span_t value) {
  if (span_ieq(name, "Upgrade")) {
    s->upgrade |= list_has(value, "websocket");
  } else if (span_ieq(name, "Connection")) {
    s->connection |= list_has(value, "upgrade");
  } else if (span_ieq(name, "Sec-WebSocket-Version")) {
    s->version_ok = (s->versions++ == 0 || s->version_ok) && span_eq(value, "13");
  } else if (span_ieq(name, "Sec-WebSocket-Key")) {
    s->keys++;
    s->key_ok = key_form_ok(value);
    s->key = value;
  } else if (span_ieq(name, "Host")) {
    s->hosts++;
  } else if (span_ieq(name, "Sec-WebSocket-Accept")) {
    s->accepts++;
    s->accept = value;
  } else if (span_ieq(name, "Sec-WebSocket-Extensions") ||
             span_ieq(name, "Sec-WebSocket-Protocol")) {
    s->extras |= value.n > 0;
  }
}

/* Reads the header lines of a whole head (after its first line). */
static int read_headers(lines_t *it, seen_t *s) {
  for (;;) {
    span_t line = next_line(it), name, value;
    if (line.n == 0)
      return 0;
    int rc = split_header(line, &name, &value);
    if (rc != 0)
      return rc;
    note_header(s, name, value);
  }
}

/* ---- keys ----------------------------------------------------------------- */

void sj_wsh_make_key(const unsigned char nonce[SJ_WSH_NONCE_LEN], char key[SJ_WSH_KEY_LEN + 1]) {
  EVP_EncodeBlock((unsigned char *)key, nonce, SJ_WSH_NONCE_LEN);
}

int sj_wsh_accept(const char *key, size_t key_len, char out[SJ_WSH_ACCEPT_LEN + 1]) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
           EVP_DigestUpdate(md, key, key_len) == 1 &&
           EVP_DigestUpdate(md, ws_guid, sizeof ws_guid - 1) == 1 &&
           EVP_DigestFinal_ex(md, digest, &dlen) == 1 && dlen == 20;
  EVP_MD_CTX_free(md);
  if (!ok)
    return -1;
  EVP_EncodeBlock((unsigned char *)out, digest, 20);
  return 0;
}

/* ---- the client's request ------------------------------------------------- */

int sj_wsh_path_ok(const char *path, size_t max) {
  size_t n = strlen(path);
  if (n == 0 || n > max || path[0] != '/')
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)path[i];
    if (c <= 0x20 || c >= 0x7f || c == '#')
      return 0;
  }
  return 1;
}

/* A Host value: printable, no space, no path. */
static int host_ok(const char *host) {
  if (host == NULL || *host == '\0')
    return 0;
  for (const char *p = host; *p != '\0'; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '/')
      return 0;
  return 1;
}

static long fitted(int n, size_t cap) { return n < 0 || (size_t)n >= cap ? SJ_WSH_ESPACE : n; }

long sj_wsh_request(char *out, size_t cap, const char *host, const char *path, const char *key) {
  if (!host_ok(host) || path == NULL || !sj_wsh_path_ok(path, SJ_WSH_HEAD_MAX / 2))
    return SJ_WSH_EARG;
  int n = snprintf(out, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "User-Agent: sockjoin\r\n"
                   "\r\n",
                   path, host, key);
  return fitted(n, cap);
}

/* ---- the server's side ---------------------------------------------------- */

/* "GET /path HTTP/1.1": single spaces, a token method, an origin-form
 * target. */
static int split_request_line(span_t line, span_t *method, span_t *target, span_t *version) {
  const char *sp1 = memchr(line.p, ' ', line.n);
  if (sp1 == NULL || sp1 == line.p)
    return SJ_WSH_ESYNTAX;
  const char *rest = sp1 + 1, *end = line.p + line.n;
  const char *sp2 = memchr(rest, ' ', (size_t)(end - rest));
  if (sp2 == NULL || sp2 == rest || memchr(sp2 + 1, ' ', (size_t)(end - sp2 - 1)) != NULL)
    return SJ_WSH_ESYNTAX;
  *method = (span_t){line.p, (size_t)(sp1 - line.p)};
  *target = (span_t){rest, (size_t)(sp2 - rest)};
  *version = (span_t){sp2 + 1, (size_t)(end - sp2 - 1)};
  for (size_t i = 0; i < method->n; i++)
    if (!is_tchar((unsigned char)method->p[i]))
      return SJ_WSH_ESYNTAX;
  for (size_t i = 0; i < line.n; i++)
    if (is_ctl((unsigned char)line.p[i]))
      return SJ_WSH_ESYNTAX;
  return 0;
}

/* HTTP/1.1 or a later 1.x; 1.0 cannot upgrade. */
static int check_http_version(span_t v) {
  if (v.n != 8 || memcmp(v.p, "HTTP/1.", 7) != 0 || !is_digit(v.p[7]))
    return SJ_WSH_ESYNTAX;
  return v.p[7] == '0' ? SJ_WSH_EHTTP10 : 0;
}

/* The target's path (before any query) is the one served. */
static int target_matches(span_t target, const char *path) {
  const char *q = memchr(target.p, '?', target.n);
  span_t p = {target.p, q != NULL ? (size_t)(q - target.p) : target.n};
  return span_eq(p, path);
}

static int check_request(const seen_t *s, span_t method, span_t target, span_t version,
                         const char *path) {
  int rc;
  if (!span_eq(method, "GET"))
    return SJ_WSH_EMETHOD;
  if ((rc = check_http_version(version)) != 0)
    return rc;
  if (!target_matches(target, path))
    return SJ_WSH_EPATH;
  if (!s->upgrade)
    return SJ_WSH_EUPGRADE;
  if (!s->connection)
    return SJ_WSH_ECONNECTION;
  if (!s->version_ok)
    return SJ_WSH_EVERSION;
  if (s->keys != 1 || !s->key_ok)
    return SJ_WSH_EKEY;
  return s->hosts == 1 ? 0 : SJ_WSH_EHOST;
}

long sj_wsh_parse_request(const char *buf, size_t len, const char *path, sj_wsh_request_t *req) {
  long h = head_length(buf, len);
  if (h <= 0)
    return h;
  lines_t it = {buf, buf + h};
  span_t method, target, version;
  seen_t s = {0};
  int rc = split_request_line(next_line(&it), &method, &target, &version);
  if (rc == 0)
    rc = read_headers(&it, &s);
  if (rc == 0)
    rc = check_request(&s, method, target, version, path);
  if (rc != 0)
    return rc;
  req->target = target.p;
  req->target_len = target.n;
  memcpy(req->key, s.key.p, SJ_WSH_KEY_LEN);
  req->key[SJ_WSH_KEY_LEN] = '\0';
  return h;
}

long sj_wsh_response(char *out, size_t cap, const char *key) {
  char accept[SJ_WSH_ACCEPT_LEN + 1];
  if (sj_wsh_accept(key, strlen(key), accept) != 0)
    return SJ_WSH_EKEY;
  int n = snprintf(out, cap,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "\r\n",
                   accept);
  return fitted(n, cap);
}

static const char *status_reason(int status) {
  switch (status) {
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 426:
    return "Upgrade Required";
  case 431:
    return "Request Header Fields Too Large";
  default:
    return "Bad Request";
  }
}

/* The headers that tell a client what would have been accepted. */
static const char *reject_headers(int err) {
  switch (err) {
  case SJ_WSH_EMETHOD:
    return "Allow: GET\r\nConnection: close\r\n";
  case SJ_WSH_EUPGRADE:
    return "Upgrade: websocket\r\nConnection: Upgrade, close\r\n";
  case SJ_WSH_EVERSION:
    return "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n";
  default:
    return "Connection: close\r\n";
  }
}

long sj_wsh_reject(char *out, size_t cap, int err) {
  int status = sj_wsh_status(err);
  const char *why = sj_wsh_strerror(err);
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n"
                   "%s"
                   "\r\n"
                   "sockjoin: %s\n",
                   status, status_reason(status), strlen(why) + 11, reject_headers(err), why);
  return fitted(n, cap);
}

/* ---- the client's side ---------------------------------------------------- */

/* "HTTP/1.1 101 Switching Protocols" (the reason may be empty). */
static int parse_status_line(span_t line, sj_wsh_response_t *res) {
  if (line.n < 12 || memcmp(line.p, "HTTP/1.", 7) != 0 || !is_digit(line.p[7]) ||
      line.p[8] != ' ' || !is_digit(line.p[9]) || !is_digit(line.p[10]) || !is_digit(line.p[11]) ||
      (line.n > 12 && line.p[12] != ' '))
    return SJ_WSH_ESYNTAX;
  for (size_t i = 0; i < line.n; i++)
    if (is_ctl((unsigned char)line.p[i]))
      return SJ_WSH_ESYNTAX;
  res->status = (line.p[9] - '0') * 100 + (line.p[10] - '0') * 10 + (line.p[11] - '0');
  res->reason = line.n > 13 ? line.p + 13 : line.p + line.n;
  res->reason_len = line.n > 13 ? line.n - 13 : 0;
  return 0;
}

/* The status line, once it is whole: a refusal is known before the rest
 * of the head (a proxy's error page, say) has come. */
static int early_status(const char *buf, size_t len, sj_wsh_response_t *res) {
  size_t max = len < SJ_WSH_HEAD_MAX ? len : SJ_WSH_HEAD_MAX;
  const char *nl = memchr(buf, '\n', max);
  if (nl == NULL)
    return 0;
  span_t line = {buf, (size_t)(nl - buf)};
  if (line.n > 0 && line.p[line.n - 1] == '\r')
    line.n--;
  int rc = parse_status_line(line, res);
  if (rc == 0 && res->status != 101)
    rc = SJ_WSH_ESTATUS;
  return rc;
}

static int check_response(const seen_t *s, const char *key) {
  char want[SJ_WSH_ACCEPT_LEN + 1];
  if (!s->upgrade)
    return SJ_WSH_EUPGRADE;
  if (!s->connection)
    return SJ_WSH_ECONNECTION;
  if (s->accepts != 1 || sj_wsh_accept(key, strlen(key), want) != 0 || !span_eq(s->accept, want))
    return SJ_WSH_EACCEPT;
  return s->extras ? SJ_WSH_EEXTENSION : 0;
}

long sj_wsh_parse_response(const char *buf, size_t len, const char *key, sj_wsh_response_t *res) {
  res->status = 0;
  res->reason = NULL;
  res->reason_len = 0;
  int rc = early_status(buf, len, res);
  if (rc != 0)
    return rc;
  long h = head_length(buf, len);
  if (h <= 0)
    return h;
  lines_t it = {buf, buf + h};
  seen_t s = {0};
  next_line(&it); /* the status line, read above */
  rc = read_headers(&it, &s);
  if (rc == 0)
    rc = check_response(&s, key);
  return rc != 0 ? rc : h;
}

/* ---- errors --------------------------------------------------------------- */

int sj_wsh_status(int err) {
  switch (err) {
#define SJ_WSH_ERR_STATUS(name, code, status, text)                                                \
  case code:                                                                                       \
    return status != 0 ? status : 400;
    SJ_WSH_ERRORS(SJ_WSH_ERR_STATUS)
#undef SJ_WSH_ERR_STATUS
  default:
    return 400;
  }
}

const char *sj_wsh_strerror(int err) {
  switch (err) {
#define SJ_WSH_ERR_TEXT(name, code, status, text)                                                  \
  case code:                                                                                       \
    return text;
    SJ_WSH_ERRORS(SJ_WSH_ERR_TEXT)
#undef SJ_WSH_ERR_TEXT
  default:
    return "unknown handshake error";
  }
}
