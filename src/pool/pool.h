/* Pools: the front end shared by thread pools (thread-pool.c) and process
 * pools. Never installed.
 *
 * Design notes.
 *
 * A pool is a loop member (pbl__member) with a run queue, counters and a
 * uv_async_t of its own. Its tasks ("items") are NOT on the binding's live
 * list: the pool is their tracker. It accepts an item under its lock
 * (state, queue_limit), so scheduling is immediate from any thread: a
 * worker thread can take the item before the loop ever turns. Every
 * accepted item is kept by the pool until the pool is finished with it
 * (a hold when accepted on the loop thread, else a reference):
 * a worker ran it, skipped it (it ended while queued) or the pool ended it
 * (stop, failing initializer). Finished items go to the done list; the
 * loop drains that list in batches (one wake per batch: uv_async_send
 * from other threads; on the loop thread, which finishes a process pool's
 * items and submits most tasks, an idle handle, the "kick", that costs no
 * syscall, or one more pass of a drain under way): it
 * disarms the item's timer, delivers its callback if nobody did, and drops
 * the pool reference. Ends by pbl_task_cancel() or a timeout are delivered
 * by the core as for any task (a cancel from another thread through the
 * binding's inbox). An item drained while such a delivery is still on its
 * way stays live until it runs (the kind's `delivered` hook,
 * pbl__pool_item_delivered): so uv_run() and a join never return, nor
 * does the binding close, before the callback of every task of the pool.
 *
 * Liveness. The async is ref'd while an accepted item is not drained
 * (`live` > 0), or while a closed or stopped pool still has workers not
 * yet joined or reaped, or while a freed pool finishes. So an idle pool
 * does not keep the loop alive, and after uv_run() returns a closed pool
 * is ready to join.
 *
 * Binding close: the member's close hook stops the pool (every task ends,
 * running ones flagged), and the member is gone once every item is
 * drained, every worker joined and the async closed. The pool's memory
 * lives on until pbl_pool_free() too.
 *
 * Priorities: the run queue is one list in run order, higher priorities
 * first and equal ones in submission order; core/lanes.h finds where an
 * item goes. Takers pop the head, so workers and dispatch never look at
 * priorities. A requeued job goes back to the front of its priority.
 * Items pushed without the lock have priority 0.
 *
 * Queue deadlines: an item with one gets its timer when accepted, on the
 * loop thread (items accepted elsewhere are handed over on `qarms`). Past
 * it, an item not yet started ends TIMED_OUT where it stands; workers
 * skip it as any item ended while queued. Until a worker passes it, it
 * still counts as queued (queue_limit included).
 *
 * Chunks (map): a job is 1..n consecutive items of the run queue, pushed
 * under one lock hold and taken whole by one worker, so items of a chunk
 * run in order on one worker. The first item carries the chunk length.
 * A chunk's timed items are all stamped with the chunk's start: a timeout
 * applies per chunk.
 *
 * Two locks, as in libuv's pool: "lock" guards the run queue and the
 * life cycle (scheduling and workers taking jobs), "done" what workers
 * hand back (the done list, the end counters), so a worker finishing a
 * task does not hold up the thread scheduling the next one. A job in a
 * worker's hand is set under lock and cleared under done; stop walks the
 * hands holding both.
 *
 * Pushes. A thread scheduling a single task does not take the lock
 * (kinds with fast_push, no queue_limit, priority 0; from other threads
 * than the loop's, no queue deadline): it pushes the item on `pushed`, a
 * lock-free LIFO, with one CAS. Workers taking the lock for every job
 * made that lock the loop thread's main cost, and producer threads'
 * (issue 14: one producer thread reached 0.7 of the loop thread's rate).
 * From another thread a push takes the lock after all while the pool is
 * `asleep`: the loop must learn of the work to wait for its callback. Whoever
 * holds the lock next moves the pushed items to the run queue's tail, oldest
 * first, before touching the queue (absorb), so the queue keeps the scheduling
 * order and counts them queued and live then. Close and stop seal it
 * (PBL__POOL_SEALED, under the lock): a push after that fails, one before is
 * absorbed with the queue. A push still starts without a loop turn; the kind's
 * push_kick says when a push must take the lock after all, to wake or start a
 * worker (thread-pool.c).
 *
 * Lock order: lock, then done, then a task's stripe lock, then in_lock or
 * a waiter's mutex. No lock is held while a task function, an
 * initializer or a callback runs.
 */
#ifndef PBL_POOL_H
#define PBL_POOL_H

#include "core/internal.h"

#define PBL__POOL_MAGIC 0x7062706cu /* "pbpl" */
#define PBL__VALID_POOL(p) ((p) != NULL && (p)->magic == PBL__POOL_MAGIC)

typedef enum {
  PBL__POOL_RUNNING,
  PBL__POOL_CLOSED, /* no new tasks; the queue drains */
  PBL__POOL_STOPPED /* no new tasks; every task ended */
} pbl__pool_state;

/* What every pool task starts with. */
typedef struct pbl__pool_item {
  pbl_task_t base;             /* first: an item is a task */
  struct pbl__pool_item *next; /* lock: run queue, a worker's hand, done */
  union {            /* the wait is counted before the item can be armed */
    uint64_t queued; /* pbl__pool_ticks() when accepted */
    struct pbl__pool_item *arm_next; /* done: then, timers to arm on the
                                      * loop (thread pools: an item taken
                                      * is never queued again) */
    pbl_pool_t *owed_by;             /* loop: drained, its delivery awaited */
  };
  uint32_t chunk_len; /* first item of a job: its items; else 0 */
  bool held;          /* loop: kept by a hold, not a reference */
  bool owed;          /* loop: owed_by is set */
} pbl__pool_item;

typedef struct pbl__pool_list {
  pbl__pool_item *head, *tail;
} pbl__pool_list;

/* What to do for newly queued jobs, decided under the lock and done
 * after it: signalling or starting a thread under the lock would keep the
 * workers waiting for it. */
typedef struct pbl__kick {
  unsigned signal; /* idle workers to wake */
  unsigned start;  /* new workers to start */
} pbl__kick;

/* What a kind of pool does. Hooks marked "lock" run with p->lock held. */
typedef struct pbl__pool_kind {
  const char *name;
  /* lock: jobs were queued: decide whom to wake or start. */
  pbl__kick (*kick)(pbl_pool_t *p);
  /* no lock, any thread: carry out a kick (failure: see the kind). */
  void (*act)(pbl_pool_t *p, pbl__kick k);
  /* lock: the pool closed or stopped: idle workers may leave. */
  void (*wind_down)(pbl_pool_t *p);
  /* lock and done: the pool stopped: end the work in hand, cancelled. */
  void (*cancel_running)(pbl_pool_t *p);
  /* no lock, any thread but a worker: join or reap exited workers. */
  void (*reap)(pbl_pool_t *p);
  /* no lock, loop thread, after each drain: loop-side work, e.g. handing
   * queued jobs to worker processes. May be NULL. */
  void (*loop_work)(pbl_pool_t *p);
  /* lock: workers alive, for stats. */
  size_t (*workers)(pbl_pool_t *p);
  /* no lock: every worker is gone; free what the kind owns. */
  void (*destroy)(pbl_pool_t *p);
  /* Submits of single tasks skip the lock (pushed). The kind keeps
   * push_kick set whenever a pushed item could otherwise wait unseen, and
   * absorbs after setting it. */
  bool fast_push;
  /* Workers are only reaped on loop turns (child processes): a join on
   * the loop thread with workers left is then PBL_EDEADLK. Threads leave
   * and are joined without the loop. */
  bool reaps_on_loop;
} pbl__pool_kind;

struct pbl_pool {
  uint32_t magic;
  const pbl__pool_kind *kind;
  pbl_loop_t *loop;          /* the pool holds a reference on the binding */
  size_t queue_limit;        /* 0: unbounded; set once, read without lock */
  pbl__member member;        /* loop */
  uv_async_t async;          /* the drain: done items, timers, exits, free */
  uv_idle_t kick;            /* the drain, woken from the loop thread */
  uv_cond_t join_cv;         /* lock: live or unjoined went down */
  _Atomic bool wake_pending; /* an async send is on its way */

  /* The groups below sit on cache lines of their own: the scheduling
   * thread and the workers taking jobs write the first, workers handing
   * results back the second. */
  char pad0_[64];
  uv_mutex_t lock; /* "lock": the run queue and the life cycle */
  /* lock */
  uint8_t state;        /* pbl__pool_state */
  bool freed;           /* pbl_pool_free() was called */
  bool member_closing;  /* the binding closes */
  bool async_closing;   /* lock and done: no send after uv_close() */
  bool gone;            /* the async is closed: the loop is let go */
  pbl__pool_list queue; /* accepted items waiting, in run order */
  pbl__lanes lanes;     /* the queue's priorities (core/lanes.h) */
  size_t jobs;          /* jobs (chunks) in queue */
  size_t live;          /* accepted items not yet drained */
  size_t unjoined;      /* workers started and not yet joined/reaped */
  size_t exited;        /* workers that left and wait to be reaped */
  size_t taken;         /* items taken by workers, ever */
  pbl_pool_stats_t st;  /* queued and respawned only */

  char pad1_[64];
  uv_mutex_t done_lock; /* "done": what workers hand back */
  /* done */
  pbl__pool_list done;   /* finished items the loop has not drained */
  pbl__pool_item *arms;  /* started items whose timers want arming */
  pbl_task_t *qarms;     /* items accepted off the loop thread whose queue
                            deadlines want arming (x->qarm_next) */
  size_t finished;       /* taken items handed back, ever */
  pbl_pool_stats_t ends; /* the end counters, and the waits in ticks */
  char pad2_[64];

  /* Submitters push, workers absorb: a line of their own. Items
   * scheduled without the lock, newest first; PBL__POOL_SEALED once the
   * pool no longer runs (design notes). */
  _Atomic(pbl__pool_item *) pushed;
  /* Set by the kind under the lock: a push must then take the lock to
   * kick, as no worker might look at the queue again otherwise. */
  _Atomic bool push_kick;
  /* Set under the lock while the async is not ref'd (the loop would not
   * wait for the pool): a push from another thread must then take the
   * lock and wake the loop, as one through the lock does. */
  _Atomic bool asleep;
  char pad3_[64];

  /* loop */
  bool refd;            /* the async is ref'd */
  uint8_t open_handles; /* async and kick, until both close callbacks ran */
  bool draining;        /* the drain runs: a wake from here is a pass */
  bool redrain;         /* woken while draining: drain again */
};

/* Set in a pool's own threads: joining that pool there is PBL_EDEADLK. */
extern _Thread_local pbl_pool_t *pbl__pool_self;

/* The queue-wait clock (pool-clock.c): ticks, cheap to read on the loop
 * thread; nanoseconds only when stats are read. Init before any stamp. */
void pbl__pool_clock_init(void);
uint64_t pbl__pool_ticks(void);
uint64_t pbl__pool_ticks_ns(uint64_t ticks);

/* Any thread (from another thread the loop must be running): binds a
 * zeroed, kind-allocated pool to pl. Returns 0, UV_EINVAL, PBL_ECLOSED or
 * libuv's error; on error nothing is left to undo but p's memory. */
int pbl__pool_init(pbl_pool_t *p, const pbl__pool_kind *kind, pbl_loop_t *pl,
                   const pbl_pool_opts *o);

/* Any thread: a new item (a task) of `size` bytes for p. Tasks with a
 * timeout take `timed` ops (their end may need the loop), others `plain`.
 * Returns 0, UV_EINVAL or UV_ENOMEM. */
int pbl__pool_item_new(pbl_pool_t *p, const pbl__task_ops *plain,
                       const pbl__task_ops *timed, size_t size,
                       const pbl_task_opts *opts, bool want_ref,
                       pbl__pool_item **out);
/* Loop thread: the task ops' `delivered` hook of every pool item. */
void pbl__pool_item_delivered(pbl_task_t *t);
/* Frees items never accepted (an error path). */
void pbl__pool_items_discard(pbl__pool_item **items, size_t n);

/* Any thread: accepts items[0..n) as jobs of `chunk` items each, or none.
 * Returns 0, PBL_ECLOSED, UV_EAGAIN (past queue_limit). On error the
 * caller still owns the items. */
int pbl__pool_submit(pbl_pool_t *p, pbl__pool_item **items, size_t n,
                     size_t chunk);

/* One task as one job, for pbl__task_submit_out (which discards it on
 * error, as pbl__pool_items_discard would). */
int pbl__pool_submit_task(void *p, pbl_task_t *t);

/* Many inputs in chunks, for both kinds: make(i) builds input i's item.
 * tasks may be NULL (fire and forget). */
typedef int (*pbl__pool_make_fn)(pbl_pool_t *p, size_t i,
                                 const pbl_task_opts *opts, bool want_ref,
                                 pbl__pool_item **out, void *ctx);
int pbl__pool_map(pbl_pool_t *p, size_t n, size_t chunksize,
                  const pbl_task_opts *opts, pbl_task_t **tasks,
                  pbl__pool_make_fn make, void *ctx);

#define PBL__POOL_SEALED ((pbl__pool_item *)1)
/* lock: moves the items pushed without the lock to the run queue's tail:
 * every lock holder does so before touching the queue, so the queue stays
 * in scheduling order. */
void pbl__pool_absorb(pbl_pool_t *p);
/* lock: the pool stops running: absorbs, and later pushes fail. */
void pbl__pool_seal(pbl_pool_t *p);

/* lock: takes the next job off the queue (NULL: none) and counts it
 * running. *n: its items. */
pbl__pool_item *pbl__pool_take_job(pbl_pool_t *p, size_t *n);
/* Queue waits a worker adds up between two holds of the lock, in ticks:
 * the pool's wait_ns_total and wait_ns_max are kept in ticks too. */
typedef struct pbl__pool_waits {
  uint64_t total, max;
} pbl__pool_waits;
/* The wait of an item stamped at `queued`, taken at `now` (ticks). */
static inline uint64_t pbl__pool_wait(uint64_t now, uint64_t queued) {
  return now > queued ? now - queued : 0; /* CPUs' TSCs may differ a bit */
}
/* Adds the wait of an item stamped at `queued`, taken at `now`, to *w. */
static inline void pbl__pool_count_wait(pbl__pool_waits *w, uint64_t now,
                                        uint64_t queued) {
  uint64_t wait = pbl__pool_wait(now, queued);
  w->total += wait;
  if (wait > w->max)
    w->max = wait;
}
/* No lock, the worker that took `job`, before it runs: adds the job's
 * queue waits to *w and starts its timed items' clocks. Returns true if
 * the caller must wake the loop (timers to arm). */
bool pbl__pool_job_starts(pbl_pool_t *p, pbl__pool_item *job,
                          pbl__pool_waits *w);
/* done: publishes *w in the stats and clears it. */
void pbl__pool_add_waits(pbl_pool_t *p, pbl__pool_waits *w);
/* done: the pool is finished with the chain of items from `head`, of
 * which `ran` were taken by a worker (the rest never left the queue).
 * Returns true if the caller must wake the loop (pbl__pool_wake). */
bool pbl__pool_finish(pbl_pool_t *p, pbl__pool_item *head, size_t ran);
/* lock: ends every queued item FAILED with `code` and `msg` (a failing
 * initializer, a worker that could not start). Returns as finish. */
bool pbl__pool_fail_queued(pbl_pool_t *p, int err, int code, const char *msg);
/* lock or done: true if the caller must wake the loop (one send per
 * batch). */
bool pbl__pool_want_wake(pbl_pool_t *p);
/* Any thread, no lock, while a worker of p is unjoined: wakes the loop. */
void pbl__pool_wake(pbl_pool_t *p);
/* The kick's callback: the drain, woken on the loop thread. */
void pbl__pool_on_kick(uv_idle_t *h);
/* lock: puts `job`, a chain of items a worker took but never ran (a
 * process worker died or was killed with them in flight), back at the
 * head of the run queue as one job, counted queued again and no longer
 * taken; their queue wait counts anew from now. Callers requeue several
 * jobs last first, so they keep their order. */
void pbl__pool_requeue(pbl_pool_t *p, pbl__pool_item *job);
/* lock: ends every queued item CANCELLED. Returns as finish. */
bool pbl__pool_cancel_queued(pbl_pool_t *p);
/* lock: a worker left or was reaped: wake joiners. */
void pbl__pool_changed(pbl_pool_t *p);
/* Loop thread, no lock: refs or unrefs the async as the pool's work asks,
 * and closes it once a freed pool (or one whose binding closes) is done. */
void pbl__pool_settle(pbl_pool_t *p);

#endif /* PBL_POOL_H */
