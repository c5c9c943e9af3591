/*
 * Standard input and output as one stream: reads come from the input half,
 * writes go to the output half, and ending the write direction closes
 * standard output so that whoever reads it sees end of file.
 */
#include "stream.h"

#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  sj_stream_t base;
  sj_stream_t *in, *out; /* out is NULL once closed by shutdown */
  sj_write_cb wcb;
  sj_shutdown_cb scb;
  void *warg, *sarg;
  sj_stream_close_cb ccb;
  int open_halves;
  int closing;
} stdio_t;

#define SD(s) ((stdio_t *)(s))

static void on_in_read(sj_stream_t *in, int status, sj_chunk_t *c) {
  stdio_t *sd = in->data;
  sd->base.on_read(&sd->base, status, c);
}

static int sd_read_start(sj_stream_t *s) { return sj_stream_read_start(SD(s)->in); }
static int sd_read_stop(sj_stream_t *s) { return sj_stream_read_stop(SD(s)->in); }

static int sd_try_write(sj_stream_t *s, const char *buf, size_t len) {
  stdio_t *sd = SD(s);
  return sd->out != NULL ? sj_stream_try_write(sd->out, buf, len) : UV_EPIPE;
}

static void on_out_write(sj_stream_t *out, int status, void *arg) {
  stdio_t *sd = arg;
  (void)out;
  sd->wcb(&sd->base, status, sd->warg);
}

static int sd_write(sj_stream_t *s, const char *buf, size_t len, sj_write_cb cb,
                    void *arg) {
  stdio_t *sd = SD(s);
  if (sd->out == NULL)
    return UV_EPIPE;
  sd->wcb = cb;
  sd->warg = arg;
  return sj_stream_write(sd->out, buf, len, on_out_write, sd);
}

static void half_closed(sj_stream_t *half) {
  stdio_t *sd = half->data;
  if (half == sd->out)
    sd->out = NULL;
  sd->open_halves--;
  if (sd->scb != NULL && sd->out == NULL) {
    sj_shutdown_cb cb = sd->scb;
    sd->scb = NULL;
    cb(&sd->base, sd->closing ? UV_ECANCELED : 0, sd->sarg);
  }
  if (sd->open_halves == 0 && sd->closing) {
    if (sd->ccb != NULL)
      sd->ccb(&sd->base);
    free(sd);
  }
}

static int sd_shutdown(sj_stream_t *s, sj_shutdown_cb cb, void *arg) {
  stdio_t *sd = SD(s);
  if (sd->out == NULL || sd->scb != NULL)
    return UV_ENOTCONN;
  sd->scb = cb;
  sd->sarg = arg;
  sj_stream_close(sd->out, 0, half_closed);
  return 0;
}

static void sd_close(sj_stream_t *s, int reset, sj_stream_close_cb cb) {
  (void)reset;
  stdio_t *sd = SD(s);
  if (sd->closing)
    return;
  sd->closing = 1;
  sd->ccb = cb;
  sj_stream_close(sd->in, 0, half_closed);
  if (sd->out != NULL && sd->scb == NULL)
    sj_stream_close(sd->out, 0, half_closed);
}

static size_t sd_unsent(const sj_stream_t *s) {
  const stdio_t *sd = (const stdio_t *)s;
  return sd->out != NULL ? sj_stream_unsent(sd->out, SIZE_MAX) : SIZE_MAX;
}

static const sj_stream_ops_t stdio_ops = {
    .read_start = sd_read_start,
    .read_stop = sd_read_stop,
    .try_write = sd_try_write,
    .write = sd_write,
    .shutdown = sd_shutdown,
    .close = sd_close,
    .unsent = sd_unsent,
};

/* Opens fd as a stream of whatever kind it is. */
static int open_half(uv_loop_t *loop, sj_pool_t *pool, int fd, int readable,
                     sj_stream_t **out) {
  if (uv_guess_handle(fd) == UV_FILE)
    return sj_filestream_open(loop, pool, fd, out);
  return sj_uvstream_open(loop, pool, fd, readable, out);
}

int sj_stdio_open(uv_loop_t *loop, sj_pool_t *pool, sj_stream_t **out) {
  stdio_t *sd = calloc(1, sizeof *sd);
  if (sd == NULL)
    return UV_ENOMEM;
  int rc = open_half(loop, pool, 0, 1, &sd->in);
  if (rc == 0 && (rc = open_half(loop, pool, 1, 0, &sd->out)) != 0) {
    sj_stream_close(sd->in, 0, NULL);
  }
  if (rc != 0) {
    free(sd);
    return rc;
  }
  sd->base.ops = &stdio_ops;
  sd->base.loop = loop;
  sd->base.pool = pool;
  sj_origin_from_label(&sd->base.origin, "stdio");
  sd->in->data = sd->out->data = sd;
  sd->in->on_read = on_in_read;
  sd->open_halves = 2;
  *out = &sd->base;
  return 0;
}
