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
 * The loop thread pushes single tasks without the pool lock (pool.h); it
 * takes the lock only to wake or start a worker, while push_kick says
 * one is needed (thread-pool-worker.c). Workers: thread-pool-worker.c.
 *
 * Stop ends the jobs in hand as on cancel (POSTed callbacks, the
 * pbl_cancelled() flag raised); their threads finish the function, skip
 * the rest of the job and leave.
 */
#include "thread-pool.h"

static const pbl__pool_kind thread_kind;

/* Pool tasks settle on their worker: a wait needs no loop turn, unless a
 * timeout (a loop timer) may be what ends the task. */
static const pbl__task_ops titem_ops = {
    .kind = "pool-thread",
    .delivered = pbl__pool_item_delivered,
    .needs_loop = false,
};
static const pbl__task_ops titem_timed_ops = {
    .kind = "pool-thread",
    .delivered = pbl__pool_item_delivered,
    .needs_loop = true,
};

/* ---- the kind's hooks ---- */

/* Wakes one idle worker unless one is already on its way: a woken thread
 * takes a while to run, and it wakes a peer itself if it finds more jobs
 * (worker_main). The scheduling thread, often the loop thread, thus pays
 * for one futex call per burst, not one per task. */
static pbl__kick tp_kick(pbl_pool_t *p) {
  pbl__tpool *tp = (pbl__tpool *)p;
  pbl__kick k = {0, 0};
  if (tp->idle > 0 && tp->woken == 0) {
    tp->woken++;
    k.signal++;
  }
  k.start = pbl__tpool_want_workers(tp);
  pbl__tpool_update_kick(tp);
  return k;
}

/* No lock: a worker that checks the queue holds the lock until it waits,
 * so a job queued before this signal is seen either way. */
static void tp_act(pbl_pool_t *p, pbl__kick k) {
  pbl__tpool *tp = (pbl__tpool *)p;
  for (unsigned i = 0; i < k.signal; i++)
    uv_cond_signal(&tp->work_cv);
  if (k.start > 0)
    pbl__tpool_start_workers(p, k.start);
}

static void tp_wind_down(pbl_pool_t *p) {
  pbl__tpool *tp = (pbl__tpool *)p;
  tp->woken = tp->idle;
  pbl__tpool_update_kick(tp);
  uv_cond_broadcast(&tp->work_cv);
}

static void tp_cancel_running(pbl_pool_t *p) {
  pbl__tpool *tp = (pbl__tpool *)p;
  QUEUE *q;
  for (q = QUEUE_HEAD(&tp->workers); q != &tp->workers; q = q->next) {
    pbl__tworker *w = QUEUE_DATA(q, pbl__tworker, link);
    for (pbl__pool_item *it = w->hand; it != NULL; it = it->next)
      pbl__task_end(&it->base, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                    PBL__DELIVER_POST);
  }
}

static void tp_reap(pbl_pool_t *p) {
  pbl__tpool *tp = (pbl__tpool *)p;
  uv_mutex_lock(&p->lock);
  pbl__tworker *z = tp->zombies;
  tp->zombies = NULL;
  size_t n = 0;
  for (pbl__tworker *w = z; w != NULL; w = w->zombie_next)
    n++;
  p->exited -= n;
  uv_mutex_unlock(&p->lock);
  if (n == 0)
    return;
  while (z != NULL) {
    pbl__tworker *next = z->zombie_next;
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
  return ((pbl__tpool *)p)->alive;
}

static void tp_destroy(pbl_pool_t *p) {
  pbl__tpool *tp = (pbl__tpool *)p;
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
    .fast_push = true,
};

/* ---- public ---- */

int pbl_thread_pool_new(pbl_loop_t *pl, const pbl_pool_opts *o,
                        pbl_pool_t **out) {
  if (!PBL__VALID_LOOP(pl) || out == NULL)
    return UV_EINVAL;
  /* Process pool options on a thread pool are a mistake: a thread cannot
   * be killed, so not even an initializer's timeout can be kept. */
  if (o != NULL &&
      (o->process_init != NULL || o->worker_path != NULL ||
       o->kill_grace_ms != 0 || o->init_timeout_ms != 0 ||
       o->spare_workers != 0 || o->launchers != NULL || o->n_launchers != 0))
    return UV_EINVAL;
  pbl__tpool *tp = pbl__calloc(1, sizeof(*tp));
  if (tp == NULL)
    return UV_ENOMEM;
  tp->target =
      o != NULL && o->workers != 0 ? o->workers : uv_available_parallelism();
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
                               sizeof(pbl__titem), opts, want_ref, out);
  if (err != 0)
    return err;
  (*out)->base.u.fn = fn;
  ((pbl__titem *)*out)->arg = arg;
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
  return pbl__task_submit_out(&it->base, task, pbl__pool_submit_task, p);
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
