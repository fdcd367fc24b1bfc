/* Thread pools: the library's own threads (uv_thread_t), so long jobs
 * never starve libuv's pool, which also runs libuv's fs and DNS work.
 *
 * Design notes.
 *
 * Workers start on demand: scheduling starts one when the queue holds more
 * jobs than idle or starting workers and fewer than `workers` are alive.
 * So an idle pool costs no thread until used, and nothing respawns until
 * a task arrives: the pool never spins, even when `init` keeps failing.
 *
 * Waking: the thread that schedules wakes one idle worker, and only if
 * none is already on its way; a woken worker that finds more jobs wakes
 * the next one itself. The loop thread, which schedules most tasks, thus
 * pays for about one futex call per burst of tasks instead of one per
 * task (bench/README.md), at the price of one more wake-up latency before
 * a second idle worker joins in.
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
 * Stop ends the jobs in hand as on cancel (POSTed callbacks, the
 * pbl_cancelled() flag raised); their threads finish the function, skip
 * the rest of the job and leave.
 */
#include "pool.h"

typedef struct tpool tpool;

typedef struct tworker {
  tpool *tp;
  uv_thread_t tid;             /* written under the pool lock */
  QUEUE link;                  /* lock: tp->workers, while alive */
  struct tworker *zombie_next; /* lock: tp->zombies, once it left */
  pbl__pool_item *hand;        /* lock: the job it runs */
  unsigned ran;                /* worker thread: tasks run, for max_tasks */
} tworker;

struct tpool {
  pbl_pool_t base; /* first: a tpool is a pbl_pool_t */
  unsigned target; /* workers */
  unsigned max_tasks;
  pbl_thread_fn init;
  void *init_arg;
  uv_cond_t work_cv; /* lock: idle workers wait here */
  /* lock */
  unsigned alive;    /* started, not yet left */
  unsigned idle;     /* waiting on work_cv */
  unsigned woken;    /* of those, signalled and not yet awake */
  unsigned starting; /* started, not yet looking for work (init) */
  unsigned vacated;  /* slots left by retired or failed workers */
  QUEUE workers;     /* alive */
  tworker *zombies;  /* left, not yet joined */
};

typedef struct {
  pbl__pool_item item; /* first: a titem is a pool item and a task */
  void *arg;
} titem;

static const pbl__pool_kind thread_kind;

/* Pool tasks settle on their worker: a wait needs no loop turn, unless a
 * timeout (a loop timer) may be what ends the task. */
static const pbl__task_ops titem_ops = {
    .kind = "pool-thread",
    .needs_loop = false,
};
static const pbl__task_ops titem_timed_ops = {
    .kind = "pool-thread",
    .needs_loop = true,
};

/* ---- workers ---- */

/* The run context of `init`: pbl_fail() records, pbl_cancelled() tells
 * whether the pool stopped. */
typedef struct {
  pbl__run_ctx ctx;
  pbl__failure *failure;
  bool failed;
} init_run;

static void init_fail(pbl__run_ctx *c, int code, const char *msg) {
  init_run *r = (init_run *)c;
  r->failed = true;
  if (r->failure == NULL)
    r->failure = pbl__failure_new(code, msg != NULL ? msg : "");
}

static bool init_cancelled(pbl__run_ctx *c) {
  pbl_pool_t *p = c->self;
  uv_mutex_lock(&p->lock);
  bool stopped = p->state == PBL__POOL_STOPPED;
  uv_mutex_unlock(&p->lock);
  return stopped;
}

/* Worker thread, no lock. Returns the failure (or NULL) after init. */
static bool run_init(tpool *tp, init_run *r) {
  r->ctx.fail = init_fail;
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
    pbl__thread_run r;
    void *res = pbl__thread_invoke(t, fn, ((titem *)it)->arg, &r);
    if (r.failed)
      pbl__task_end(t, PBL_FAILED, PBL_EFAILED, NULL, r.failure,
                    PBL__DELIVER_LATER);
    else
      pbl__task_end(t, PBL_DONE, 0, res, NULL, PBL__DELIVER_LATER);
  }
}

/* lock: how many workers to start for the jobs waiting. */
static unsigned want_workers(tpool *tp) {
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
  return start;
}

static void worker_main(void *arg);

/* No lock. A thread that cannot start is given back; if none is left to
 * run the queue, the waiting tasks fail with the error: none hangs. */
static void tp_start_workers(pbl_pool_t *p, unsigned n) {
  tpool *tp = (tpool *)p;
  for (unsigned i = 0; i < n; i++) {
    tworker *w = pbl__calloc(1, sizeof(*w));
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
static void leave(tworker *w) {
  tpool *tp = w->tp;
  tp->alive--;
  QUEUE_REMOVE(&w->link);
  w->zombie_next = tp->zombies;
  tp->zombies = w;
  tp->base.exited++;
  pbl__pool_changed(&tp->base);
}

static void worker_main(void *arg) {
  tworker *w = arg;
  tpool *tp = w->tp;
  pbl_pool_t *p = &tp->base;
  pbl__pool_self = p;
  init_run ir = {.failed = false};
  bool ok = tp->init == NULL || run_init(tp, &ir);
  bool wake = false, retire = false;
  uv_mutex_lock(&p->lock);
  tp->starting--;
  if (!ok) {
    const char *msg = ir.failure != NULL ? ir.failure->msg : NULL;
    int code = ir.failure != NULL ? ir.failure->code : 0;
    wake = pbl__pool_fail_queued(p, PBL_EFAILED, code, msg);
    tp->vacated++;
  }
  pbl__pool_waits waits = {0, 0};
  while (ok) {
    size_t n;
    pbl__pool_item *job = pbl__pool_take_job(p, &n);
    if (job == NULL) {
      if (p->state != PBL__POOL_RUNNING)
        break;
      tp->idle++;
      uv_cond_wait(&tp->work_cv, &p->lock);
      tp->idle--;
      if (tp->woken > 0)
        tp->woken--;
      continue;
    }
    w->hand = job;
    /* Jobs left and a peer asleep: wake it ourselves, so the loop thread,
     * which queued them, pays for one wake-up at most. */
    bool chain = p->jobs > 0 && tp->idle > tp->woken;
    if (chain)
      tp->woken++;
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
  unsigned start = retire ? want_workers(tp) : 0;
  wake = pbl__pool_want_wake(p) || wake; /* the loop reaps us */
  uv_mutex_unlock(&p->lock);
  pbl__free(ir.failure);
  if (start > 0)
    tp_start_workers(p, start);
  if (wake)
    pbl__pool_wake(p); /* we are not joined yet: the async lives */
}

/* ---- the kind's hooks ---- */

/* Wakes one idle worker unless one is already on its way: a woken thread
 * takes a while to run, and it wakes a peer itself if it finds more jobs
 * (worker_main). The scheduling thread, often the loop thread, thus pays
 * for one futex call per burst, not one per task. */
static pbl__kick tp_kick(pbl_pool_t *p) {
  tpool *tp = (tpool *)p;
  pbl__kick k = {0, 0};
  if (tp->idle > 0 && tp->woken == 0) {
    tp->woken++;
    k.signal++;
  }
  k.start = want_workers(tp);
  return k;
}

/* No lock: a worker that checks the queue holds the lock until it waits,
 * so a job queued before this signal is seen either way. */
static void tp_act(pbl_pool_t *p, pbl__kick k) {
  tpool *tp = (tpool *)p;
  for (unsigned i = 0; i < k.signal; i++)
    uv_cond_signal(&tp->work_cv);
  if (k.start > 0)
    tp_start_workers(p, k.start);
}

static void tp_wind_down(pbl_pool_t *p) {
  tpool *tp = (tpool *)p;
  tp->woken = tp->idle;
  uv_cond_broadcast(&tp->work_cv);
}

static void tp_cancel_running(pbl_pool_t *p) {
  tpool *tp = (tpool *)p;
  QUEUE *q;
  for (q = QUEUE_HEAD(&tp->workers); q != &tp->workers; q = q->next) {
    tworker *w = QUEUE_DATA(q, tworker, link);
    for (pbl__pool_item *it = w->hand; it != NULL; it = it->next)
      pbl__task_end(&it->base, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                    PBL__DELIVER_POST);
  }
}

static void tp_reap(pbl_pool_t *p) {
  tpool *tp = (tpool *)p;
  uv_mutex_lock(&p->lock);
  tworker *z = tp->zombies;
  tp->zombies = NULL;
  size_t n = 0;
  for (tworker *w = z; w != NULL; w = w->zombie_next)
    n++;
  p->exited -= n;
  uv_mutex_unlock(&p->lock);
  if (n == 0)
    return;
  while (z != NULL) {
    tworker *next = z->zombie_next;
    uv_thread_join(&z->tid);
    pbl__free(z);
    z = next;
  }
  uv_mutex_lock(&p->lock);
  p->unjoined -= n;
  pbl__pool_changed(p);
  uv_mutex_unlock(&p->lock);
}

static size_t tp_workers(pbl_pool_t *p) {
  return ((tpool *)p)->alive;
}

static void tp_destroy(pbl_pool_t *p) {
  tpool *tp = (tpool *)p;
  uv_cond_destroy(&tp->work_cv);
  pbl__free(tp);
}

static const pbl__pool_kind thread_kind = {
    .name = "thread",
    .kick = tp_kick,
    .act = tp_act,
    .wind_down = tp_wind_down,
    .cancel_running = tp_cancel_running,
    .reap = tp_reap,
    .workers = tp_workers,
    .destroy = tp_destroy,
};

/* ---- public ---- */

int pbl_thread_pool_new(pbl_loop_t *pl, const pbl_pool_opts *o,
                        pbl_pool_t **out) {
  if (!PBL__VALID_LOOP(pl) || out == NULL)
    return UV_EINVAL;
  if (o != NULL && (o->process_init != NULL || o->worker_path != NULL ||
                    o->kill_grace_ms < 0))
    return UV_EINVAL; /* process pool options on a thread pool: a mistake */
  tpool *tp = pbl__calloc(1, sizeof(*tp));
  if (tp == NULL)
    return UV_ENOMEM;
  tp->target = o != NULL && o->workers != 0 ? o->workers
                                            : uv_available_parallelism();
  if (o != NULL) {
    tp->max_tasks = o->max_tasks;
    tp->init = o->init;
    tp->init_arg = o->init_arg;
  }
  QUEUE_INIT(&tp->workers);
  int err = uv_cond_init(&tp->work_cv);
  if (err == 0) {
    err = pbl__pool_init(&tp->base, &thread_kind, pl, o);
    if (err == 0) {
      *out = &tp->base;
      return 0;
    }
    uv_cond_destroy(&tp->work_cv);
  }
  pbl__free(tp);
  return err;
}

static int make_item(pbl_pool_t *p, pbl_thread_fn fn, void *arg,
                     const pbl_task_opts *opts, bool want_ref,
                     pbl__pool_item **out) {
  int err = pbl__pool_item_new(p, &titem_ops, &titem_timed_ops,
                               sizeof(titem), opts, want_ref, out);
  if (err != 0)
    return err;
  (*out)->base.u.fn = fn;
  ((titem *)*out)->arg = arg;
  return 0;
}

int pbl_pool_thread(pbl_pool_t *p, pbl_thread_fn fn, void *arg,
                    const pbl_task_opts *opts, pbl_task_t **task) {
  if (!PBL__VALID_POOL(p) || p->kind != &thread_kind || fn == NULL)
    return UV_EINVAL;
  pbl__pool_item *it;
  int err = make_item(p, fn, arg, opts, task != NULL, &it);
  if (err != 0)
    return err;
  if (task != NULL)
    *task = &it->base; /* before submit: a fire-and-forget item may go */
  err = pbl__pool_submit(p, &it, 1, 1);
  if (err != 0) {
    if (task != NULL)
      *task = NULL;
    pbl__pool_items_discard(&it, 1);
  }
  return err;
}

typedef struct {
  pbl_thread_fn fn;
  void *const *args;
} map_ctx;

static int make_map_item(pbl_pool_t *p, size_t i, const pbl_task_opts *opts,
                         bool want_ref, pbl__pool_item **out, void *ctx) {
  map_ctx *m = ctx;
  return make_item(p, m->fn, m->args[i], opts, want_ref, out);
}

int pbl_pool_map_thread(pbl_pool_t *p, pbl_thread_fn fn, void *const *args,
                        size_t n, size_t chunksize, const pbl_task_opts *opts,
                        pbl_task_t **tasks) {
  if (!PBL__VALID_POOL(p) || p->kind != &thread_kind || fn == NULL ||
      (args == NULL && n > 0))
    return UV_EINVAL;
  map_ctx m = {fn, args};
  return pbl__pool_map(p, n, chunksize, opts, tasks, make_map_item, &m);
}
