/* Task memory for tasks made on other threads, recycled through their
 * binding. See internal.h (pbl__task_mem_new) for the design notes.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE 0 /* AddressSanitizer must see every free */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RECYCLE 0
#endif
#endif
#ifndef RECYCLE
#define RECYCLE 1
#endif

#define SPARE_CAP 4096 /* spares a binding keeps: 768 KiB at most */

typedef struct spare {
  struct spare *next;
} spare;

/* This thread's spares, taken from a binding's stack in one exchange. They
 * are plain memory of the class size, so they serve any binding; the
 * thread frees what is left when it exits. */
static _Thread_local spare *mine;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static bool exit_key_ok;

static void free_mine(void *unused) {
  (void)unused;
  while (mine != NULL) {
    spare *next = mine->next;
    pbl__free(mine);
    mine = next;
  }
}

static void make_exit_key(void) {
  exit_key_ok = pthread_key_create(&exit_key, free_mine) == 0;
}

/* Takes the binding's spares for this thread. Only whole stacks are taken
 * (an exchange), so no taker can meet a node another one recycled. */
static spare *take_spares(pbl_loop_t *pl) {
  if (atomic_load_explicit(&pl->spares, memory_order_relaxed) == NULL)
    return NULL;
  (void)pthread_once(&exit_once, make_exit_key);
  if (!exit_key_ok || pthread_getspecific(exit_key) == NULL) {
    if (!exit_key_ok || pthread_setspecific(exit_key, &mine) != 0)
      return NULL; /* no way to free them at exit: not ours to keep */
  }
  return atomic_exchange_explicit(&pl->spares, NULL, memory_order_acquire);
}

void *pbl__task_mem_new(pbl_loop_t *pl, size_t size, bool *recycled) {
  *recycled = false;
  if (!RECYCLE || size > PBL__TASK_CLASS || pbl__on_loop_thread(pl))
    return pbl__calloc(1, size);
  if (mine == NULL)
    mine = take_spares(pl);
  void *m;
  if (mine != NULL) {
    m = mine;
    mine = mine->next;
    memset(m, 0, size);
  } else {
    m = pbl__calloc(1, PBL__TASK_CLASS);
  }
  *recycled = m != NULL;
  return m;
}

/* The count is the loop thread's own, and about right: it starts again
 * when the stack is found empty (a taker took it). */
void pbl__task_mem_free(pbl_loop_t *pl, void *m, bool recycled) {
  if (!recycled || !pbl__on_loop_thread(pl)) {
    pbl__free(m);
    return;
  }
  spare *s = m;
  spare *top = atomic_load_explicit(&pl->spares, memory_order_relaxed);
  if (top == NULL)
    pl->n_spares = 0;
  if (pl->n_spares >= SPARE_CAP) {
    pbl__free(m);
    return;
  }
  do
    s->next = top;
  while (!atomic_compare_exchange_weak_explicit(
      &pl->spares, &top, s, memory_order_release, memory_order_relaxed));
  pl->n_spares++;
}

void pbl__task_mem_drop(pbl_loop_t *pl) {
  spare *s = atomic_exchange(&pl->spares, NULL);
  while (s != NULL) {
    spare *next = s->next;
    pbl__free(s);
    s = next;
  }
}

bool pbl__task_mem_recycles(void) {
  return RECYCLE;
}
