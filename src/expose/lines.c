/* Control lines over a stream (see lines.h). */
#include "lines.h"

#include "prefix.h"

#include <string.h>

static void on_read(sj_stream_t *s, int status, sj_chunk_t *chunk);

void sj_xlines_init(sj_xlines_t *l, sj_stream_t *s, sj_xlines_cb on_line, void *arg) {
  memset(l, 0, sizeof *l);
  l->s = s;
  l->on_line = on_line;
  l->arg = arg;
  s->data = l;
  s->on_read = on_read;
}

/* ---- reading ------------------------------------------------------------ */

static void fail(sj_xlines_t *l, int status, const char *why) {
  l->want = 0;
  l->on_line(l, status, NULL, why, l->arg);
}

/* Moves bytes of the held chunks into the line up to its newline; 1 once
 * the line is whole (or the buffer is full, which the parser refuses). */
static int gather(sj_xlines_t *l) {
  while (l->held != NULL) {
    sj_chunk_t *c = l->held;
    const char *p = c->data + c->off;
    size_t room = sizeof l->line - l->have;
    size_t take = sj_chunk_remaining(c) < room ? sj_chunk_remaining(c) : room;
    const char *nl = memchr(p, '\n', take);
    if (nl != NULL)
      take = (size_t)(nl - p) + 1;
    memcpy(l->line + l->have, p, take);
    l->have += take;
    c->off += take;
    if (sj_chunk_remaining(c) == 0) {
      l->held = c->next;
      if (l->held == NULL)
        l->held_tail = NULL;
      sj_pool_put(l->s->pool, c);
    }
    if (nl != NULL || l->have == sizeof l->line)
      return 1;
  }
  return 0;
}

static void deliver_line(sj_xlines_t *l) {
  sj_xctl_msg_t msg;
  long n = sj_xctl_parse(l->stage, l->line, l->have, &msg);
  l->have = 0;
  if (n <= 0) {
    fail(l, UV_EPROTO, sj_xctl_strerror(n < 0 ? (int)n : SJ_XCTL_ETOOLONG));
    return;
  }
  l->want = 0;
  l->on_line(l, 0, &msg, NULL, l->arg);
}

static void set_reading(sj_xlines_t *l, int on) {
  if (on == l->reading || l->ended)
    return;
  l->reading = on;
  int rc = on ? sj_stream_read_start(l->s) : sj_stream_read_stop(l->s);
  if (rc != 0 && on) {
    l->reading = 0;
    l->ended = 1;
    l->end_status = rc;
  }
}

static const char *end_text(int status) {
  return status == UV_EOF ? "connection closed by the peer" : sj_strerror(status);
}

/* Serves the lines asked for from what is held, or reads more. The owner
 * may ask for the next line, detach or close from its callback. */
static void serve(sj_xlines_t *l) {
  if (l->delivering)
    return;
  l->delivering = 1;
  while (l->want && l->s != NULL && !l->closing) {
    if (gather(l)) {
      deliver_line(l);
      continue;
    }
    set_reading(l, 1);
    if (!l->ended)
      break;
    l->have = 0;
    fail(l, l->end_status, end_text(l->end_status));
    break;
  }
  if (!l->want && l->s != NULL && !l->closing)
    set_reading(l, 0);
  l->delivering = 0;
}

static void on_read(sj_stream_t *s, int status, sj_chunk_t *chunk) {
  sj_xlines_t *l = s->data;
  if (status < 0) {
    l->ended = 1;
    l->reading = 0;
    l->end_status = status;
  } else if (chunk != NULL) {
    chunk->next = NULL;
    if (l->held_tail != NULL)
      l->held_tail->next = chunk;
    else
      l->held = chunk;
    l->held_tail = chunk;
  }
  serve(l);
}

void sj_xlines_read(sj_xlines_t *l, sj_xctl_stage_t stage) {
  l->stage = stage;
  l->want = 1;
  serve(l);
}

/* ---- writing ------------------------------------------------------------ */

static void flush(sj_xlines_t *l);

static void on_written(sj_stream_t *s, int status, void *arg) {
  sj_xlines_t *l = arg;
  (void)s;
  l->writing = 0;
  if (l->closing)
    return;
  if (status < 0 && l->write_error == 0)
    l->write_error = status;
  flush(l);
}

static void flush(sj_xlines_t *l) {
  if (l->writing)
    return;
  if (l->next_len > 0 && l->write_error == 0) {
    memcpy(l->wire, l->next, l->next_len);
    size_t n = l->next_len;
    l->next_len = 0;
    int rc = sj_stream_write(l->s, l->wire, n, on_written, l);
    if (rc == 0) {
      l->writing = 1;
      return;
    }
    l->write_error = rc;
  }
  sj_xlines_sent_cb cb = l->on_sent;
  l->on_sent = NULL;
  if (cb != NULL)
    cb(l, l->write_error, l->arg);
}

int sj_xlines_send(sj_xlines_t *l, const sj_xctl_msg_t *msg) {
  char line[SJ_XCTL_LINE_MAX + 1];
  int n = sj_xctl_format(msg, line, sizeof line);
  if (n < 0)
    return UV_EINVAL;
  if (l->write_error != 0)
    return l->write_error;
  if ((size_t)n > sizeof l->next - l->next_len)
    return UV_ENOBUFS;
  memcpy(l->next + l->next_len, line, (size_t)n);
  l->next_len += (size_t)n;
  flush(l);
  return 0;
}

int sj_xlines_when_sent(sj_xlines_t *l, sj_xlines_sent_cb cb) {
  if (!l->writing && l->next_len == 0)
    return SJ_DONE;
  l->on_sent = cb;
  return 0;
}

/* ---- the end of the talk ---------------------------------------------- */

int sj_xlines_detach(sj_xlines_t *l, sj_stream_t **out) {
  set_reading(l, 0);
  l->reading = 0;
  if (l->held == NULL && !l->ended) {
    *out = l->s;
    l->s->data = NULL;
    l->s->on_read = NULL;
  } else {
    /* The prefix stream takes the stream's data and read callback over. An
     * error seen already is passed on as the end of input: either way the
     * next owner learns that nothing more will come. */
    int rc = sj_prefix_stream_new(l->s, l->held, l->ended, out);
    if (rc != 0)
      return rc;
  }
  l->held = l->held_tail = NULL;
  l->s = NULL;
  return 0;
}

static void on_stream_closed(sj_stream_t *s) {
  sj_xlines_t *l = s->data;
  if (l->on_closed != NULL)
    l->on_closed(l, l->arg);
}

void sj_xlines_close(sj_xlines_t *l, int reset, sj_xlines_closed_cb cb) {
  while (l->held != NULL) {
    sj_chunk_t *c = l->held;
    l->held = c->next;
    sj_pool_put(l->s->pool, c);
  }
  l->held_tail = NULL;
  l->want = 0;
  l->closing = 1;
  l->on_sent = NULL;
  l->on_closed = cb;
  sj_stream_close(l->s, reset, on_stream_closed);
}
