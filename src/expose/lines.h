/*
 * Control lines over a stream (control.h): the greeting and auth on the
 * carrier before the mux starts, and the requests on the control channel.
 *
 * A line is read only when the owner asks for one, and only as far as its
 * newline is looked at: bytes behind it (the first mux frames, say) stay
 * in the chunks read so far, and sj_xlines_detach() hands them on ahead of
 * the stream's own input (a prefix stream), so nothing is lost or read
 * twice. Memory is bounded: one line buffer, two small output buffers, and
 * the chunks of at most one read past the line being taken.
 *
 * The owner embeds the struct and must keep it until sj_xlines_close()'s
 * callback (the stream's data points at it while the talk lasts).
 */
#ifndef SJ_EXPOSE_LINES_H
#define SJ_EXPOSE_LINES_H

#include "control.h"
#include "stream.h"

typedef struct sj_xlines sj_xlines_t;

/* The line asked for: status 0 with msg; or a negative code with why, a
 * phrase for a log ("connection closed by the peer", "unsupported sockjoin
 * expose protocol version", ...). status is UV_EPROTO for a line that broke
 * the protocol, else the stream's error (UV_EOF at its end). */
typedef void (*sj_xlines_cb)(sj_xlines_t *l, int status, const sj_xctl_msg_t *msg, const char *why,
                             void *arg);
/* Everything sent has been written (status 0), or writing failed. */
typedef void (*sj_xlines_sent_cb)(sj_xlines_t *l, int status, void *arg);
typedef void (*sj_xlines_closed_cb)(sj_xlines_t *l, void *arg);

struct sj_xlines {
  sj_stream_t *s;
  sj_chunk_t *held, *held_tail; /* read, not yet looked at (from off)  */
  char line[SJ_XCTL_LINE_MAX];
  size_t have;
  sj_xctl_stage_t stage;
  int want;  /* a line has been asked for          */
  int ended; /* the stream's input ended (end_status) */
  int end_status;
  int reading;
  int delivering; /* inside the line callback            */
  int closing;
  char wire[2 * SJ_XCTL_LINE_MAX]; /* the write in flight */
  char next[2 * SJ_XCTL_LINE_MAX]; /* lines waiting for it */
  size_t next_len;
  int writing;
  int write_error;
  sj_xlines_cb on_line;
  sj_xlines_sent_cb on_sent;
  sj_xlines_closed_cb on_closed;
  void *arg;
};

/* Starts talking over s (the owner keeps owning it until it is closed
 * here or detached). Nothing is read until sj_xlines_read(). */
void sj_xlines_init(sj_xlines_t *l, sj_stream_t *s, sj_xlines_cb on_line, void *arg);

/* Asks for the next line, parsed as a message of stage. The callback may
 * run before this returns (when the line has already been read), so call it
 * last. */
void sj_xlines_read(sj_xlines_t *l, sj_xctl_stage_t stage);

/* Queues a message. Returns 0, or a negative code (the message could not
 * be formatted, or too much is queued). */
int sj_xlines_send(sj_xlines_t *l, const sj_xctl_msg_t *msg);

/* Calls cb once everything queued is written: returns SJ_DONE at once
 * (without calling cb) when nothing is pending, else 0. */
int sj_xlines_when_sent(sj_xlines_t *l, sj_xlines_sent_cb cb);

/* Ends the talk and hands the stream on: *out delivers what was read past
 * the last line, then the rest. Only with nothing being written and no
 * line asked for. Returns 0 or UV_ENOMEM (then the talk goes on). */
int sj_xlines_detach(sj_xlines_t *l, sj_stream_t **out);

/* Ends the talk and closes the stream (with a reset if reset); cb (may be
 * NULL) runs once it has closed, after any write callback. */
void sj_xlines_close(sj_xlines_t *l, int reset, sj_xlines_closed_cb cb);

#endif
