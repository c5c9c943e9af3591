#include "poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events taken per wake-up; more stay ready for the next turn. */
#define SJ_POLL_BATCH 128

struct sj_poller {
  uv_loop_t *loop;
  int epfd;
  int refs;         /* watches, plus one while a batch is dispatched */
  int weak;         /* watches that do not keep the loop alive */
  int handles;      /* libuv handles not yet closed */
  uv_poll_t poll;   /* the epoll set's descriptor, in libuv's loop */
  uv_check_t check; /* runs deferred work after the loop's events */
  uv_idle_t idle;   /* keeps the loop from blocking while work is deferred */
  sj_link_t deferred;
  sj_poller_t *next; /* in the list of every loop's poller */
};

/* Every loop's poller. A loop may be set up on one thread and run on
 * another (the CLI's workers are), so the list is shared. */
static sj_poller_t *pollers;
static uv_mutex_t pollers_lock;
static uv_once_t pollers_once = UV_ONCE_INIT;

static void init_lock(void) { uv_mutex_init(&pollers_lock); }

static void unlist(sj_poller_t *p) {
  uv_mutex_lock(&pollers_lock);
  for (sj_poller_t **pp = &pollers; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  }
  uv_mutex_unlock(&pollers_lock);
}

static sj_poller_t *find(uv_loop_t *loop) {
  uv_once(&pollers_once, init_lock);
  uv_mutex_lock(&pollers_lock);
  sj_poller_t *p = pollers;
  while (p != NULL && p->loop != loop)
    p = p->next;
  uv_mutex_unlock(&pollers_lock);
  return p;
}

static void on_handle_closed(uv_handle_t *h) {
  sj_poller_t *p = h->data;
  if (--p->handles > 0)
    return;
  close(p->epfd);
  free(p);
}

static void update_liveness(sj_poller_t *p);

static void unref(sj_poller_t *p) {
  if (--p->refs > 0) {
    update_liveness(p);
    return;
  }
  unlist(p);
  uv_close((uv_handle_t *)&p->poll, on_handle_closed);
  uv_close((uv_handle_t *)&p->check, on_handle_closed);
  uv_close((uv_handle_t *)&p->idle, on_handle_closed);
}

static void on_ready(uv_poll_t *h, int status, int events) {
  (void)events;
  sj_poller_t *p = h->data;
  struct epoll_event ev[SJ_POLL_BATCH];
  if (status < 0)
    return; /* an epoll descriptor does not fail; nothing to report to */
  int n = epoll_wait(p->epfd, ev, SJ_POLL_BATCH, 0);
  /* A watch closed by an earlier event of the batch stays allocated until
   * its deferred close runs, after the batch. */
  p->refs++;
  for (int i = 0; i < n; i++) {
    sj_watch_t *w = ev[i].data.ptr;
    w->on_events(w, ev[i].events);
  }
  unref(p);
}

static void on_idle(uv_idle_t *h) { (void)h; }

static void on_check(uv_check_t *h) {
  sj_poller_t *p = h->data;
  sj_link_t due;
  sj_list_init(&due);
  /* Work deferred while this runs waits for the next turn. */
  if (!sj_list_empty(&p->deferred)) {
    due.next = p->deferred.next;
    due.prev = p->deferred.prev;
    due.next->prev = due.prev->next = &due;
    sj_list_init(&p->deferred);
  }
  p->refs++;
  while (!sj_list_empty(&due)) {
    sj_watch_t *w = sj_container_of(due.next, sj_watch_t, deferred);
    sj_list_remove(&w->deferred);
    w->on_deferred(w);
  }
  if (sj_list_empty(&p->deferred))
    uv_idle_stop(&p->idle);
  unref(p);
}

static sj_poller_t *poller_new(uv_loop_t *loop) {
  sj_poller_t *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0 || uv_poll_init(loop, &p->poll, p->epfd) != 0) {
    if (p->epfd >= 0)
      close(p->epfd);
    free(p);
    return NULL;
  }
  p->loop = loop;
  p->poll.data = p->check.data = p->idle.data = p;
  uv_check_init(loop, &p->check);
  uv_idle_init(loop, &p->idle);
  p->handles = 3;
  sj_list_init(&p->deferred);
  uv_poll_start(&p->poll, UV_READABLE, on_ready);
  uv_check_start(&p->check, on_check);
  /* The check handle alone must not keep a loop alive. */
  uv_unref((uv_handle_t *)&p->check);
  uv_mutex_lock(&pollers_lock);
  p->next = pollers;
  pollers = p;
  uv_mutex_unlock(&pollers_lock);
  return p;
}

/* The loop stays alive for the poller while a watch that counts does. */
static void update_liveness(sj_poller_t *p) {
  if (p->refs > p->weak)
    uv_ref((uv_handle_t *)&p->poll);
  else
    uv_unref((uv_handle_t *)&p->poll);
}

static int watch_init(sj_watch_t *w, uv_loop_t *loop, int weak) {
  sj_poller_t *p = find(loop);
  if (p == NULL && (p = poller_new(loop)) == NULL)
    return errno == EMFILE || errno == ENFILE ? -errno : UV_ENOMEM;
  p->refs++;
  p->weak += weak;
  update_liveness(p);
  w->poller = p;
  w->weak = weak;
  sj_list_init(&w->deferred);
  return 0;
}

int sj_watch_init(sj_watch_t *w, uv_loop_t *loop) { return watch_init(w, loop, 0); }
int sj_watch_init_weak(sj_watch_t *w, uv_loop_t *loop) { return watch_init(w, loop, 1); }

int sj_watch_fd(sj_watch_t *w, int fd) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = w};
  return epoll_ctl(w->poller->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int sj_watch_forget(sj_watch_t *w, int fd) {
  return epoll_ctl(w->poller->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
}

void sj_watch_defer(sj_watch_t *w) {
  sj_poller_t *p = w->poller;
  if (sj_list_linked(&w->deferred))
    return;
  if (sj_list_empty(&p->deferred))
    uv_idle_start(&p->idle, on_idle);
  sj_list_push(&p->deferred, &w->deferred);
}

void sj_watch_release(sj_watch_t *w) {
  sj_poller_t *p = w->poller;
  sj_list_remove(&w->deferred);
  p->weak -= w->weak;
  w->poller = NULL;
  unref(p);
}
