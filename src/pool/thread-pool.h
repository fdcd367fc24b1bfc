/* Thread pools: what the kind's hooks and API (thread-pool.c) and the
 * worker threads (thread-pool-worker.c) share. Never installed. See
 * thread-pool.c for the design notes.
 */
#ifndef PBL_THREAD_POOL_H
#define PBL_THREAD_POOL_H

#include "pool.h"
#include "thread/thread-task.h"

typedef struct pbl__tpool pbl__tpool;

typedef struct pbl__tworker {
  pbl__tpool *tp;
  uv_thread_t tid;                  /* written under the pool lock */
  QUEUE link;                       /* lock: tp->workers, while alive */
  struct pbl__tworker *zombie_next; /* lock: tp->zombies, once left */
  pbl__pool_item *hand;             /* lock: the job it runs */
  unsigned ran; /* worker thread: tasks run, for max_tasks */
} pbl__tworker;

struct pbl__tpool {
  pbl_pool_t base; /* first: a pbl__tpool is a pbl_pool_t */
  unsigned target; /* workers */
  unsigned max_tasks;
  pbl_thread_fn init;
  void *init_arg;
  uv_cond_t work_cv; /* lock: idle workers wait here */
  /* lock */
  unsigned alive;        /* started, not yet left */
  unsigned idle;         /* waiting on work_cv */
  unsigned woken;        /* of those, signalled and not yet awake */
  unsigned starting;     /* started, not yet looking for work (init) */
  unsigned vacated;      /* slots left by retired or failed workers */
  QUEUE workers;         /* alive */
  pbl__tworker *zombies; /* left, not yet joined */
};

typedef struct {
  pbl__pool_item item; /* first: a pbl__titem is a pool item and a task */
  void *arg;
} pbl__titem;

/* lock: keeps push_kick true while a push could go unseen
 * (thread-pool-worker.c). */
void pbl__tpool_update_kick(pbl__tpool *tp);
/* lock: how many workers to start for the jobs waiting; counts them. */
unsigned pbl__tpool_want_workers(pbl__tpool *tp);
/* No lock: starts n workers counted by pbl__tpool_want_workers. */
void pbl__tpool_start_workers(pbl_pool_t *p, unsigned n);

#endif /* PBL_THREAD_POOL_H */
