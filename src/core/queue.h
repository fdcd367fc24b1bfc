/* Intrusive circular doubly linked list, after libuv's internal queue.h.
 * A QUEUE is both the list head and the link embedded in an element. */
#ifndef PBL_QUEUE_H
#define PBL_QUEUE_H

#include <stddef.h>

typedef struct pbl__queue {
  struct pbl__queue *next;
  struct pbl__queue *prev;
} QUEUE;

#define QUEUE_DATA(ptr, type, field)                                           \
  ((type *)((char *)(ptr)-offsetof(type, field)))

static inline void QUEUE_INIT(QUEUE *q) {
  q->next = q;
  q->prev = q;
}

static inline int QUEUE_EMPTY(const QUEUE *q) {
  return q == q->next;
}

static inline QUEUE *QUEUE_HEAD(const QUEUE *q) {
  return q->next;
}

/* Appends element e to list h. */
static inline void QUEUE_INSERT_TAIL(QUEUE *h, QUEUE *e) {
  e->next = h;
  e->prev = h->prev;
  e->prev->next = e;
  h->prev = e;
}

static inline void QUEUE_REMOVE(QUEUE *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
  QUEUE_INIT(e);
}

/* Moves every element of h to the empty list n. */
static inline void QUEUE_MOVE(QUEUE *h, QUEUE *n) {
  if (QUEUE_EMPTY(h)) {
    QUEUE_INIT(n);
    return;
  }
  n->next = h->next;
  n->prev = h->prev;
  n->next->prev = n;
  n->prev->next = n;
  QUEUE_INIT(h);
}

#endif /* PBL_QUEUE_H */
