/* The binding's lock-free inbox lists. See inbox.h for the design notes.
 */
#include "inbox.h"

#define SEALED ((pbl_task_t *)(uintptr_t)1)

/* Each list has a link of its own in the task: a task may sit in all
 * three at once. */
static pbl_task_t **link_of(pbl_task_t *t, int list) {
  switch (list) {
  case PBL__IN_TAKE:
    return &t->in_next;
  case PBL__IN_FINISHED:
    return &t->fin_next;
  default:
    return &t->done_next;
  }
}

static _Atomic(pbl_task_t *) *list_of(pbl_loop_t *pl, int list) {
  switch (list) {
  case PBL__IN_TAKE:
    return &pl->in_take;
  case PBL__IN_FINISHED:
    return &pl->in_finished;
  default:
    return &pl->in_deliver;
  }
}

int pbl__inbox_push(pbl_loop_t *pl, int list, pbl_task_t *t) {
  _Atomic(pbl_task_t *) *top = list_of(pl, list);
  pbl_task_t *old = atomic_load_explicit(top, memory_order_relaxed);
  do {
    if (old == SEALED)
      return PBL_ECLOSED;
    *link_of(t, list) = old;
    /* seq_cst: the drain takes the lists in reverse order of service, so a
     * task seen on a later list was seen on the earlier ones it was posted
     * to before (a started notice before its work-finished notice). */
  } while (!atomic_compare_exchange_weak_explicit(
      top, &old, t, memory_order_seq_cst, memory_order_relaxed));
  return old == NULL;
}

pbl_task_t *pbl__inbox_take(pbl_loop_t *pl, int list) {
  _Atomic(pbl_task_t *) *top = list_of(pl, list);
  if (atomic_load_explicit(top, memory_order_relaxed) == NULL)
    return NULL; /* the common case for two of the three: no write */
  pbl_task_t *t = atomic_exchange_explicit(top, NULL, memory_order_seq_cst);
  pbl_task_t *fifo = NULL;
  while (t != NULL) {
    pbl_task_t *next = *link_of(t, list);
    *link_of(t, list) = fifo;
    fifo = t;
    t = next;
  }
  return fifo;
}

pbl_task_t *pbl__inbox_next(pbl_task_t *t, int list) {
  return *link_of(t, list);
}

bool pbl__inbox_seal_empty(pbl_loop_t *pl) {
  for (int i = 0; i < PBL__IN_LISTS; i++) {
    pbl_task_t *expect = NULL;
    if (!atomic_compare_exchange_strong(list_of(pl, i), &expect, SEALED)) {
      /* A post came in: its poster sends (it waits for in_lock). A post
       * refused by a list sealed meanwhile pushes again once it has seen,
       * under in_lock, that the binding did not close (loop.c, post). */
      while (i-- > 0)
        atomic_store(list_of(pl, i), NULL);
      return false;
    }
  }
  return true;
}
