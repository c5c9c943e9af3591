/* Listening sides: TCP and Unix listeners that hand each accepted
 * connection on as a stream. */
#ifndef SJ_LISTENER_H
#define SJ_LISTENER_H

#include "stream.h"

typedef struct sj_listener sj_listener_t;

/* status < 0 reports an accept failure (for example UV_EMFILE); the
 * listener keeps listening. On success the callee owns stream. */
typedef void (*sj_accept_cb)(sj_listener_t *l, int status, sj_stream_t *stream, void *data);

/* Binds and listens at once (a host name is resolved synchronously). spec
 * is borrowed: it must outlive the listener and every stream it hands on
 * (their origins point at its path). With shared set, the listener accepts
 * from shared's socket (through a descriptor of its own; it may run on
 * another loop and thread) and binds nothing. */
int sj_listener_open(uv_loop_t *loop, sj_pool_t *pool, const sj_side_spec_t *spec,
                     const sj_keepalive_t *ka, const sj_listener_t *shared, sj_accept_cb cb,
                     void *data, sj_listener_t **out);
/* The bound address as text; returns the port (0 for Unix). */
int sj_listener_address(const sj_listener_t *l, char *buf, size_t len);
/* While paused, new connections wait in the kernel's backlog. */
void sj_listener_pause(sj_listener_t *l);
void sj_listener_resume(sj_listener_t *l);
/* Stops listening, removes a Unix socket file it created, and frees the
 * listener once closed; cb may be NULL. */
void sj_listener_close(sj_listener_t *l, void (*cb)(void *data), void *data);

#endif
