/* The control message codec (see control.h). */
#include "control.h"

#include <stdio.h>
#include <string.h>

#define GREETING "sockjoin-expose"

const char *sj_xctl_strerror(int err) {
  switch (err) {
#define SJ_XCTL_ERR_CASE(name, code, text)                                                         \
  case code:                                                                                       \
    return text;
    SJ_XCTL_ERRORS(SJ_XCTL_ERR_CASE)
#undef SJ_XCTL_ERR_CASE
  }
  return "unknown control message error";
}

/* ---- pieces of a line ------------------------------------------------- */

typedef struct {
  const char *p, *end;
  int dangling; /* the last space ended the line: an empty field follows */
} cursor_t;

static int printable(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
      return 0;
  return 1;
}

/* The next word (up to a space or the end); the space is skipped. Returns
 * 1 with a word, 0 at the end of the line, -1 for an empty word (two
 * spaces, or a space at either end), which makes a line malformed. */
static int next_word(cursor_t *c, const char **w, size_t *n) {
  if (c->p >= c->end)
    return c->dangling ? -1 : 0;
  const char *sp = memchr(c->p, ' ', (size_t)(c->end - c->p));
  const char *stop = sp != NULL ? sp : c->end;
  *w = c->p;
  *n = (size_t)(stop - c->p);
  c->p = sp != NULL ? sp + 1 : c->end;
  c->dangling = sp != NULL && c->p == c->end;
  return *n > 0 ? 1 : -1;
}

static int word_is(const char *w, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(w, lit, n) == 0;
}

static int at_end(const cursor_t *c) { return c->p >= c->end && !c->dangling; }

/* Plain decimal digits, no leading zero (but "0"), at most max. */
static int parse_number(const char *w, size_t n, uint64_t max, uint64_t *out) {
  if (n == 0 || n > 10 || (n > 1 && w[0] == '0'))
    return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (w[i] < '0' || w[i] > '9')
      return -1;
    v = v * 10 + (uint64_t)(w[i] - '0');
  }
  if (v > max)
    return -1;
  *out = v;
  return 0;
}

/* Lower-case hex only: answers are compared as text. */
static int is_hex(const char *w, size_t n, size_t want) {
  if (n != want)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((w[i] >= '0' && w[i] <= '9') || (w[i] >= 'a' && w[i] <= 'f')))
      return 0;
  return 1;
}

static int is_token(const char *w, size_t n) { return is_hex(w, n, SJ_XCTL_TOKEN_LEN); }

static int copy_token(const char *w, size_t n, sj_xctl_msg_t *msg) {
  if (!is_token(w, n))
    return SJ_XCTL_ETOKEN;
  memcpy(msg->token, w, n);
  msg->token[n] = '\0';
  return 0;
}

/* The rest of the line as free text (a reason), without spaces at its
 * ends (they would be lost on the way back). */
static int copy_rest(cursor_t *c, sj_xctl_msg_t *msg) {
  size_t n = (size_t)(c->end - c->p);
  if (n > SJ_XCTL_TEXT_MAX)
    return SJ_XCTL_ETEXT;
  if (c->dangling || (n > 0 && (c->p[0] == ' ' || c->p[n - 1] == ' ')))
    return SJ_XCTL_EFIELDS;
  memcpy(msg->text, c->p, n);
  msg->text[n] = '\0';
  c->p = c->end;
  return 0;
}

/* ---- messages by stage ------------------------------------------------ */

static int parse_hello(cursor_t *c, sj_xctl_msg_t *msg) {
  const char *w;
  size_t n;
  uint64_t v;
  if (next_word(c, &w, &n) != 1 || !word_is(w, n, GREETING) || next_word(c, &w, &n) != 1 ||
      parse_number(w, n, 0xffffffffu, &v) != 0)
    return SJ_XCTL_EGREETING;
  if (v != SJ_XCTL_VERSION)
    return SJ_XCTL_EVERSION;
  msg->type = SJ_XCTL_HELLO;
  msg->version = (unsigned)v;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  if (word_is(w, n, "open"))
    return at_end(c) ? 0 : SJ_XCTL_EFIELDS;
  if (!word_is(w, n, "challenge") || next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  int rc = copy_token(w, n, msg);
  return rc != 0 ? rc : at_end(c) ? 0 : SJ_XCTL_EFIELDS;
}

static int parse_auth(cursor_t *c, sj_xctl_msg_t *msg) {
  const char *w;
  size_t n;
  if (next_word(c, &w, &n) != 1 || !word_is(w, n, "auth"))
    return SJ_XCTL_EWORD;
  msg->type = SJ_XCTL_AUTH;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  int rc = word_is(w, n, "none") ? 0 : copy_token(w, n, msg);
  if (rc != 0 || at_end(c))
    return rc;
  if (next_word(c, &w, &n) != 1 || !at_end(c))
    return SJ_XCTL_EFIELDS;
  if (!is_hex(w, n, SJ_XCTL_AGENT_LEN))
    return SJ_XCTL_EAGENT;
  memcpy(msg->agent, w, n);
  msg->agent[n] = '\0';
  return 0;
}

/* "error REASON" (a reason is required), or "unauthorized [REASON]". */
static int parse_refusal(cursor_t *c, const char *w, size_t n, int stage_has_unauth,
                         sj_xctl_msg_t *msg) {
  if (word_is(w, n, "error")) {
    msg->type = SJ_XCTL_ERROR;
    return at_end(c) ? SJ_XCTL_EFIELDS : copy_rest(c, msg);
  }
  if (stage_has_unauth && word_is(w, n, "unauthorized")) {
    msg->type = SJ_XCTL_UNAUTHORIZED;
    return copy_rest(c, msg);
  }
  return SJ_XCTL_EWORD;
}

static int parse_welcome(cursor_t *c, sj_xctl_msg_t *msg) {
  const char *w;
  size_t n;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EWORD;
  if (!word_is(w, n, "ok"))
    return parse_refusal(c, w, n, 1, msg);
  msg->type = SJ_XCTL_WELCOME;
  return at_end(c) ? 0 : SJ_XCTL_EFIELDS;
}

static int parse_request(cursor_t *c, sj_xctl_msg_t *msg) {
  const char *w;
  size_t n;
  uint64_t v;
  if (next_word(c, &w, &n) != 1 || !word_is(w, n, "expose"))
    return SJ_XCTL_EWORD;
  msg->type = SJ_XCTL_EXPOSE;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  if (parse_number(w, n, 65535, &v) != 0)
    return SJ_XCTL_EPORT;
  msg->port = (unsigned)v;
  if (at_end(c))
    return 0;
  if (next_word(c, &w, &n) != 1 || !word_is(w, n, "prefer") || !at_end(c))
    return SJ_XCTL_EFIELDS;
  msg->prefer = 1;
  return 0;
}

static int parse_reply(cursor_t *c, sj_xctl_msg_t *msg) {
  const char *w;
  size_t n;
  uint64_t v;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EWORD;
  if (!word_is(w, n, "ok"))
    return parse_refusal(c, w, n, 0, msg);
  msg->type = SJ_XCTL_EXPOSED;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  if (parse_number(w, n, 65535, &v) != 0 || v == 0)
    return SJ_XCTL_EPORT;
  msg->port = (unsigned)v;
  if (next_word(c, &w, &n) != 1)
    return SJ_XCTL_EFIELDS;
  if (parse_number(w, n, 0xffffffffu, &v) != 0 || v == 0)
    return SJ_XCTL_ETUNNEL;
  msg->tunnel = (uint32_t)v;
  if (at_end(c))
    return 0;
  if (next_word(c, &w, &n) != 1 || !at_end(c))
    return SJ_XCTL_EFIELDS;
  if (n > SJ_XCTL_TEXT_MAX)
    return SJ_XCTL_ETEXT;
  memcpy(msg->text, w, n);
  msg->text[n] = '\0';
  return 0;
}

static int parse_line(sj_xctl_stage_t stage, cursor_t *c, sj_xctl_msg_t *msg) {
  switch (stage) {
  case SJ_XCTL_AT_HELLO:
    return parse_hello(c, msg);
  case SJ_XCTL_AT_AUTH:
    return parse_auth(c, msg);
  case SJ_XCTL_AT_WELCOME:
    return parse_welcome(c, msg);
  case SJ_XCTL_AT_REQUEST:
    return parse_request(c, msg);
  default:
    return parse_reply(c, msg);
  }
}

long sj_xctl_parse(sj_xctl_stage_t stage, const char *buf, size_t len, sj_xctl_msg_t *msg) {
  size_t scan = len < SJ_XCTL_LINE_MAX ? len : SJ_XCTL_LINE_MAX;
  const char *nl = memchr(buf, '\n', scan);
  /* A greeting that is not even a line of ours says so, not why. */
  int not_ours = stage == SJ_XCTL_AT_HELLO;
  if (nl == NULL)
    return len < SJ_XCTL_LINE_MAX ? 0 : not_ours ? SJ_XCTL_EGREETING : SJ_XCTL_ETOOLONG;
  size_t n = (size_t)(nl - buf);
  if (n > 0 && buf[n - 1] == '\r')
    n--;
  if (!printable(buf, n))
    return not_ours ? SJ_XCTL_EGREETING : SJ_XCTL_ECHAR;
  memset(msg, 0, sizeof *msg);
  cursor_t c = {buf, buf + n, 0};
  int rc = parse_line(stage, &c, msg);
  return rc != 0 ? rc : (long)(nl - buf) + 1;
}

/* ---- formatting ------------------------------------------------------- */

static int check_text(const char *s, int allow_spaces, int allow_empty) {
  size_t n = strnlen(s, SJ_XCTL_TEXT_MAX + 1);
  if (n > SJ_XCTL_TEXT_MAX)
    return SJ_XCTL_ETEXT;
  if (!printable(s, n))
    return SJ_XCTL_ECHAR;
  if ((n == 0 && !allow_empty) || (!allow_spaces && memchr(s, ' ', n) != NULL))
    return SJ_XCTL_EFIELDS;
  /* A reason with spaces at its ends would not read back the same. */
  if (n > 0 && (s[0] == ' ' || s[n - 1] == ' '))
    return SJ_XCTL_EFIELDS;
  return 0;
}

/* A token, or "" for none; anything else cannot be sent. */
static int check_token(const char *t) {
  size_t n = strnlen(t, SJ_XCTL_TOKEN_LEN + 1);
  return n == 0 || is_token(t, n) ? 0 : SJ_XCTL_ETOKEN;
}

static int check_msg(const sj_xctl_msg_t *m) {
  switch (m->type) {
  case SJ_XCTL_HELLO:
    return check_token(m->token);
  case SJ_XCTL_AUTH: {
    size_t n = strnlen(m->agent, SJ_XCTL_AGENT_LEN + 1);
    if (n != 0 && !is_hex(m->agent, n, SJ_XCTL_AGENT_LEN))
      return SJ_XCTL_EAGENT;
    return check_token(m->token);
  }
  case SJ_XCTL_UNAUTHORIZED:
    return check_text(m->text, 1, 1);
  case SJ_XCTL_ERROR:
    return check_text(m->text, 1, 0);
  case SJ_XCTL_EXPOSE:
    return m->port > 65535 ? SJ_XCTL_EPORT : 0;
  case SJ_XCTL_EXPOSED:
    if (m->port == 0 || m->port > 65535)
      return SJ_XCTL_EPORT;
    if (m->tunnel == 0)
      return SJ_XCTL_ETUNNEL;
    return check_text(m->text, 0, 1);
  default:
    return 0;
  }
}

static int print_msg(const sj_xctl_msg_t *m, char *out, size_t cap) {
  const char *none = m->type == SJ_XCTL_HELLO ? "open" : "none";
  switch (m->type) {
  case SJ_XCTL_HELLO:
    if (m->token[0] == '\0')
      return snprintf(out, cap, "%s %u %s\n", GREETING, SJ_XCTL_VERSION, none);
    return snprintf(out, cap, "%s %u challenge %s\n", GREETING, SJ_XCTL_VERSION, m->token);
  case SJ_XCTL_AUTH:
    return snprintf(out, cap, "auth %s%s%s\n", m->token[0] != '\0' ? m->token : none,
                    m->agent[0] != '\0' ? " " : "", m->agent);
  case SJ_XCTL_WELCOME:
    return snprintf(out, cap, "ok\n");
  case SJ_XCTL_UNAUTHORIZED:
    return snprintf(out, cap, m->text[0] != '\0' ? "unauthorized %s\n" : "unauthorized%s\n",
                    m->text);
  case SJ_XCTL_ERROR:
    return snprintf(out, cap, "error %s\n", m->text);
  case SJ_XCTL_EXPOSE:
    return snprintf(out, cap, "expose %u%s\n", m->port, m->prefer ? " prefer" : "");
  default: /* SJ_XCTL_EXPOSED */
    return snprintf(out, cap, m->text[0] != '\0' ? "ok %u %lu %s\n" : "ok %u %lu%s\n", m->port,
                    (unsigned long)m->tunnel, m->text);
  }
}

int sj_xctl_format(const sj_xctl_msg_t *msg, char *out, size_t cap) {
  int rc = check_msg(msg);
  if (rc != 0)
    return rc;
  int n = print_msg(msg, out, cap);
  if (n < 0 || n > SJ_XCTL_LINE_MAX)
    return SJ_XCTL_ETOOLONG;
  return n;
}
