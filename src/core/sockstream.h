/* Streams over sockets watched edge-triggered by the poller (poller.h): the
 * connections a relay accepts and dials, where each system call counts. */
#ifndef SJ_SOCKSTREAM_H
#define SJ_SOCKSTREAM_H

#include "stream.h"

#include <sys/socket.h>

typedef void (*sj_connect_cb)(sj_stream_t *s, int status, void *arg);

/* A stream over fd, a connected non-blocking stream socket (tcp: a TCP one,
 * which can be reset). On failure fd is left open for the caller. */
int sj_sockstream_open(uv_loop_t *loop, sj_pool_t *pool, int fd, int tcp, sj_stream_t **out);

/* Starts connecting to sa; cb reports the outcome later (UV_ECANCELED when
 * the stream is closed first), and only then may the stream be used. An
 * error found at once is returned, and no stream is made. */
int sj_sockstream_connect(uv_loop_t *loop, sj_pool_t *pool, const struct sockaddr *sa,
                          socklen_t len, sj_connect_cb cb, void *arg, sj_stream_t **out);

/* Moves the socket of s, a connected sockstream with nothing under way, into
 * a stream over a libuv handle, for code that needs libuv's write queue; s
 * is gone either way. */
int sj_sockstream_to_uv(sj_stream_t *s, sj_stream_t **out);

#endif
