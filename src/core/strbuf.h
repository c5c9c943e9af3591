/* A bounded text builder with snprintf's contract: it never writes past the
 * buffer, always terminates it, and counts the length the whole text needs,
 * so callers can size a second attempt. */
#ifndef SJ_STRBUF_H
#define SJ_STRBUF_H

#include <stddef.h>

typedef struct {
  char *buf;
  size_t cap;
  size_t len; /* length of the whole text, even past cap */
} sj_strbuf_t;

void sj_strbuf_init(sj_strbuf_t *sb, char *buf, size_t cap);
void sj_strbuf_printf(sj_strbuf_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sj_strbuf_putc(sj_strbuf_t *sb, char ch);
/* Appends s as the body of a JSON string (quotes not included). */
void sj_strbuf_json_escape(sj_strbuf_t *sb, const char *s);
/* Appends an ISO-8601 UTC time with milliseconds: 2026-11-24T00:39:23.123Z */
void sj_strbuf_iso8601(sj_strbuf_t *sb, long long ms_since_epoch);

#endif
