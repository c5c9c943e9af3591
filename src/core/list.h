/* An intrusive doubly linked list: the link lives inside the listed object,
 * so queues of waiting sockets and live pairs cost no allocation. */
#ifndef SJ_LIST_H
#define SJ_LIST_H

#include <stddef.h>

typedef struct sj_link {
  struct sj_link *prev, *next;
} sj_link_t;

#define sj_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void sj_list_init(sj_link_t *head) { head->prev = head->next = head; }

static inline int sj_list_empty(const sj_link_t *head) { return head->next == head; }

/* Appends n at the tail of the list headed by head. */
static inline void sj_list_push(sj_link_t *head, sj_link_t *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

/* Unlinks n; removing an unlinked (self-linked) node is harmless. */
static inline void sj_list_remove(sj_link_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = n;
}

static inline int sj_list_linked(const sj_link_t *n) { return n->next != n; }

#endif
