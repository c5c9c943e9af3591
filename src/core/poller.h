/*
 * The poller: sockets watched edge-triggered in an epoll set of our own,
 * which libuv's loop watches as one descriptor.
 *
 * Why not libuv's own TCP handles: they are level-triggered, so every change
 * of interest (connecting, then reading, then writing) is an epoll_ctl call,
 * a descriptor is removed from epoll by hand before it is closed, and an
 * adopted socket is set non-blocking again. A relay making thousands of
 * connections a second pays for each of those. Here a socket is added once,
 * for input and output together, and removed once before it is closed: the
 * watcher remembers what the last edge said, and the socket's owner asks
 * the kernel only when there is something to do.
 *
 * Work that must not run inside the caller's call (a completed write's
 * callback, a close's callback, input that was already there when reading
 * restarts) is deferred: it runs after this turn's events, and the loop
 * does not block while any is waiting.
 *
 * One poller serves each loop; it exists while something is watched or
 * deferred, so a loop with no sockets left holds no handle of it.
 */
#ifndef SJ_POLLER_H
#define SJ_POLLER_H

#include "list.h"

#include <stdint.h>
#include <uv.h>

typedef struct sj_poller sj_poller_t;
typedef struct sj_watch sj_watch_t;

struct sj_watch {
  sj_poller_t *poller;
  /* The events of an edge: EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP. */
  void (*on_events)(sj_watch_t *w, uint32_t events);
  /* Deferred work is due. */
  void (*on_deferred)(sj_watch_t *w);
  sj_link_t deferred;
  int weak;
};

/* The poller of loop (made on first use), with a reference held for w;
 * w's callbacks must be set. Returns 0 or a negative error. */
int sj_watch_init(sj_watch_t *w, uv_loop_t *loop);
/* The same for a watch that keeps the poller but not the loop alive, and
 * watches nothing: a listener holds one, so that the poller's descriptor is
 * there before the first connection needs it. */
int sj_watch_init_weak(sj_watch_t *w, uv_loop_t *loop);
/* Starts watching fd, edge-triggered for input and output. */
int sj_watch_fd(sj_watch_t *w, int fd);
/* Stops watching fd. */
int sj_watch_forget(sj_watch_t *w, int fd);
/* Asks for on_deferred after this turn's events (once, however often asked). */
void sj_watch_defer(sj_watch_t *w);
/* Drops deferred work and the reference. The owner forgets its descriptor
 * first (closing it does not remove it from the set while another process
 * holds a copy). */
void sj_watch_release(sj_watch_t *w);

#endif
