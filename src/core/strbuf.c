#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void sj_strbuf_init(sj_strbuf_t *sb, char *buf, size_t cap) {
  sb->buf = buf;
  sb->cap = cap;
  sb->len = 0;
  if (cap > 0)
    buf[0] = '\0';
}

void sj_strbuf_printf(sj_strbuf_t *sb, const char *fmt, ...) {
  size_t room = sb->len < sb->cap ? sb->cap - sb->len : 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(room > 0 ? sb->buf + sb->len : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    sb->len += (size_t)n;
}

void sj_strbuf_putc(sj_strbuf_t *sb, char ch) {
  if (sb->len + 1 < sb->cap) {
    sb->buf[sb->len] = ch;
    sb->buf[sb->len + 1] = '\0';
  }
  sb->len++;
}

void sj_strbuf_json_escape(sj_strbuf_t *sb, const char *s) {
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      sj_strbuf_putc(sb, '\\');
      sj_strbuf_putc(sb, (char)ch);
    } else if (ch < 0x20) {
      sj_strbuf_printf(sb, "\\u%04x", ch);
    } else {
      sj_strbuf_putc(sb, (char)ch);
    }
  }
}

void sj_strbuf_iso8601(sj_strbuf_t *sb, long long ms) {
  long long whole = ms / 1000 - (ms % 1000 < 0); /* floor, also before 1970 */
  time_t secs = (time_t)whole;
  ms -= whole * 1000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  sj_strbuf_printf(sb, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(ms % 1000));
}
