/* Thread pools: the worker threads, and when they start and wake. See
 * thread-pool.c for the pool's own design notes.
 *
 * Design notes.
 *
 * A worker runs `init` first (pbl_fail() in it fails every task waiting
 * in the queue with its message, then the worker leaves), then takes
 * whole jobs (a task, or a map chunk) off the queue and runs them without
 * the pool lock. A task is settled on the worker (waiters wake at once);
 * the finished job goes to the pool's done list and the loop delivers the
 * callbacks in batches (pool.c). After `max_tasks` tasks, counted at the
 * end of a job, a worker retires: it starts its replacement itself if
 * jobs are waiting, and is joined like any worker that left.
 *
 * A worker that leaves puts itself on the zombie list and wakes the loop;
 * whoever reaps first (the loop's drain, or pbl_pool_join on any thread)
 * joins it. Thread handles are written by uv_thread_create under the pool
 * lock, and a worker can only leave after taking that lock, so a reaper
 * always sees the handle.
 *
 * The loop thread pushes single tasks without the pool lock (pool.h). It
 * takes the lock to kick only while push_kick is set: some worker idle
 * and not woken, or fewer alive than `workers`. A worker going to sleep
 * sets it first and then looks at the pushes once more; one leaving does
 * the same before it decides on a replacement or, after a failing init,
 * fails what waits. So no push is left unseen.
 */
#include "thread-pool.h"

/* lock: a push from the loop thread (pool.h, pushed) needs no kick while
 * every worker is awake or woken and none can be started: each of them
 * looks at the queue again before it sleeps or leaves. Whoever turns this
 * true absorbs after it (seq_cst both): a push it missed saw it true. */
void pbl__tpool_update_kick(pbl__tpool *tp) {
  bool need = tp->idle > tp->woken || tp->alive < tp->target;
  /* Stored only when it changes: the line is read at every push. */
  if (atomic_load(&tp->base.push_kick) != need)
    atomic_store(&tp->base.push_kick, need);
}

/* In `init`, pbl_fail() records (pbl__fail_record) and pbl_cancelled()
 * tells whether the pool stopped. */
static bool init_cancelled(pbl__run_ctx *c) {
  pbl_pool_t *p = c->self;
  uv_mutex_lock(&p->lock);
  bool stopped = p->state == PBL__POOL_STOPPED;
  uv_mutex_unlock(&p->lock);
  return stopped;
}

/* Worker thread, no lock. Returns the failure (or NULL) after init. */
static bool run_init(pbl__tpool *tp, pbl__fail_record *r) {
  r->ctx.fail = pbl__fail_record_fail;
  r->ctx.cancelled = init_cancelled;
  r->ctx.self = &tp->base;
  r->failure = NULL;
  r->failed = false;
  pbl__run_ctx *prev = pbl__run_enter(&r->ctx);
  (void)tp->init(tp->init_arg);
  pbl__run_leave(prev);
  return !r->failed;
}

/* Worker thread, no lock: runs a job's tasks in order. A task that ended
 * while waiting (cancel, its chunk's timeout, stop) is skipped. */
static void run_job(pbl__pool_item *job) {
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    pbl_task_t *t = &it->base;
    pbl_thread_fn fn = t->u.fn;
    if (!pbl__task_begin(t))
      continue;
    pbl__thread_run_task(t, fn, ((pbl__titem *)it)->arg);
  }
}

unsigned pbl__tpool_want_workers(pbl__tpool *tp) {
  size_t ready = (size_t)tp->idle + tp->starting; /* will take a job */
  size_t jobs = tp->base.jobs;
  if (jobs <= ready || tp->alive >= tp->target)
    return 0;
  size_t n = jobs - ready;
  unsigned room = tp->target - tp->alive;
  unsigned start = n < room ? (unsigned)n : room;
  unsigned refill = start < tp->vacated ? start : tp->vacated;
  tp->vacated -= refill;
  tp->base.st.respawned += refill;
  tp->alive += start;
  tp->starting += start;
  tp->base.unjoined += start;
  pbl__tpool_update_kick(tp);
  return start;
}

static void worker_main(void *arg);

/* No lock. A thread that cannot start is given back; if none is left to
 * run the queue, the waiting tasks fail with the error: none hangs. */
void pbl__tpool_start_workers(pbl_pool_t *p, unsigned n) {
  pbl__tpool *tp = (pbl__tpool *)p;
  for (unsigned i = 0; i < n; i++) {
    pbl__tworker *w = pbl__calloc(1, sizeof(*w));
    uv_mutex_lock(&p->lock);
    int err = UV_ENOMEM;
    if (w != NULL) {
      w->tp = tp;
      QUEUE_INSERT_TAIL(&tp->workers, &w->link);
      err = uv_thread_create(&w->tid, worker_main, w);
      if (err != 0)
        QUEUE_REMOVE(&w->link);
    }
    bool wake = false;
    if (err != 0) {
      tp->alive--;
      tp->starting--;
      p->unjoined--;
      pbl__tpool_update_kick(tp); /* then fail_queued absorbs */
      if (tp->alive == 0)
        wake = pbl__pool_fail_queued(p, err, err, "cannot start a thread");
      pbl__pool_changed(p);
    }
    uv_mutex_unlock(&p->lock);
    if (err != 0)
      pbl__free(w);
    if (wake)
      pbl__pool_wake(p); /* the async lives: these tasks are not drained */
  }
}

/* lock: w leaves; the next reaper joins it. */
static void leave(pbl__tworker *w) {
  pbl__tpool *tp = w->tp;
  tp->alive--;
  pbl__tpool_update_kick(tp); /* then absorb what was pushed until now */
  pbl__pool_absorb(&tp->base);
  QUEUE_REMOVE(&w->link);
  w->zombie_next = tp->zombies;
  tp->zombies = w;
  tp->base.exited++;
  pbl__pool_changed(&tp->base);
}

static void worker_main(void *arg) {
  pbl__tworker *w = arg;
  pbl__tpool *tp = w->tp;
  pbl_pool_t *p = &tp->base;
  pbl__pool_self = p;
  pbl__fail_record ir = {.failed = false};
  bool ok = tp->init == NULL || run_init(tp, &ir);
  bool wake = false, retire = false;
  uv_mutex_lock(&p->lock);
  tp->starting--;
  if (!ok)
    tp->vacated++;
  pbl__pool_waits waits = {0, 0};
  while (ok) {
    size_t n;
    pbl__pool_item *job = pbl__pool_take_job(p, &n);
    if (job == NULL) {
      if (p->state != PBL__POOL_RUNNING)
        break;
      tp->idle++;
      pbl__tpool_update_kick(tp); /* then look again: a push may have
                                   * missed it */
      pbl__pool_absorb(p);
      bool empty = p->queue.head == NULL;
      if (empty)
        uv_cond_wait(&tp->work_cv, &p->lock);
      tp->idle--;
      if (empty && tp->woken > 0)
        tp->woken--;
      pbl__tpool_update_kick(tp);
      continue;
    }
    w->hand = job;
    /* Jobs left and a peer asleep: wake it ourselves, so the loop thread,
     * which queued them, pays for one wake-up at most. */
    bool chain = p->jobs > 0 && tp->idle > tp->woken;
    if (chain) {
      tp->woken++;
      pbl__tpool_update_kick(tp);
    }
    uv_mutex_unlock(&p->lock);
    if (chain)
      uv_cond_signal(&tp->work_cv);
    if (pbl__pool_job_starts(p, job, &waits))
      pbl__pool_wake(p); /* its timers start while it runs */
    run_job(job);
    uv_mutex_lock(&p->done_lock);
    w->hand = NULL;
    pbl__pool_add_waits(p, &waits);
    wake = pbl__pool_finish(p, job, n) || wake;
    uv_mutex_unlock(&p->done_lock);
    w->ran += (unsigned)n;
    if (wake) { /* we are not joined: the async lives */
      pbl__pool_wake(p);
      wake = false;
    }
    uv_mutex_lock(&p->lock);
    if (tp->max_tasks != 0 && w->ran >= tp->max_tasks) {
      tp->vacated++;
      retire = true;
      break;
    }
  }
  leave(w);
  if (!ok) { /* every task waiting, also those pushed until leave() */
    const char *msg = ir.failure != NULL ? ir.failure->msg : NULL;
    int code = ir.failure != NULL ? ir.failure->code : 0;
    wake = pbl__pool_fail_queued(p, PBL_EFAILED, code, msg);
  }
  unsigned start = retire ? pbl__tpool_want_workers(tp) : 0;
  wake = pbl__pool_want_wake(p) || wake; /* the loop reaps us */
  uv_mutex_unlock(&p->lock);
  pbl__free(ir.failure);
  if (start > 0)
    pbl__tpool_start_workers(p, start);
  if (wake)
    pbl__pool_wake(p); /* we are not joined yet: the async lives */
}
