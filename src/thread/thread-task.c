/* Thread tasks on libuv's thread pool.
 *
 * Design notes.
 *
 * Each binding keeps a run queue of thread tasks; at most pool-size
 * "runners" (uv_work_t queued with uv_queue_work) drain it. One
 * uv_queue_work per task would make every submit fight the pool's workers
 * for libuv's global mutex and wake a worker per task: the benchmark
 * measured that at half of raw uv_queue_work's throughput. A runner
 * returns to libuv after RUNNER_BUDGET_NS with tasks still queued, and is
 * queued again behind whatever fs or DNS work came meanwhile, so thread
 * tasks never starve libuv's own work for long.
 *
 * A task's outcome is settled on the worker thread, so waiters on other
 * threads wake without a loop turn; the runner then posts the task to the
 * inbox's work-finished list, and its callback runs on the loop thread. A
 * queued task that is cancelled is unlinked from the run queue at once. A
 * timeout counts from the function's start: the worker stamps the start
 * and posts a notice that arms the timer on the loop thread.
 *
 * Lock order: runq.lock is never held while calling out or taking
 * another lock.
 */
#include <stdlib.h>

#include "core/internal.h"
#include "thread-task.h"

#define RUNNER_BUDGET_NS 2000000u /* 2 ms */

typedef struct {
  pbl_task_t base; /* first: a thread task is a pbl_task_t */
  void *arg;
  QUEUE rq; /* in runq.queue while queued (runq.lock); else self-linked */
} thread_task;

typedef struct {
  uv_work_t work;
  pbl_loop_t *pl;
} runner;

/* A function running on a thread (libuv's pool or a pool of ours) is
 * cancelled once its task ended. */
static bool thread_run_cancelled(pbl__run_ctx *c) {
  return pbl__task_ended(c->self);
}

void pbl__thread_run_task(pbl_task_t *t, pbl_thread_fn fn, void *arg) {
  pbl__fail_record r = {
      .ctx = {.fail = pbl__fail_record_fail,
              .cancelled = thread_run_cancelled,
              .self = t},
  };
  pbl__run_ctx *prev = pbl__run_enter(&r.ctx);
  void *res = fn(arg);
  pbl__run_leave(prev);
  if (r.failed)
    pbl__task_end(t, PBL_FAILED, PBL_EFAILED, NULL, r.failure,
                  PBL__DELIVER_LATER);
  else
    pbl__task_end(t, PBL_DONE, 0, res, NULL, PBL__DELIVER_LATER);
}

/* Worker thread. */
static void run_task(thread_task *tt) {
  pbl_task_t *t = &tt->base;
  pbl_thread_fn fn = t->u.fn;
  if (!pbl__task_begin(t))
    return; /* ended before a runner took it */
  if (t->x != NULL && t->x->timeout_ms > 0) {
    t->x->started_ns = uv_hrtime();
    pbl_task_retain(t); /* the notice's reference */
    if (pbl__loop_post_in(t->loop, t) != 0)
      pbl_task_release(t);
  }
  pbl__thread_run_task(t, fn, tt->arg);
}

static thread_task *runq_pop(pbl__runq *rq) {
  thread_task *tt = NULL;
  uv_mutex_lock(&rq->lock);
  if (!QUEUE_EMPTY(&rq->queue)) {
    QUEUE *q = QUEUE_HEAD(&rq->queue);
    pbl__lanes_took_head(&rq->lanes, q);
    QUEUE_REMOVE(q);
    tt = QUEUE_DATA(q, thread_task, rq);
  }
  uv_mutex_unlock(&rq->lock);
  return tt;
}

/* Worker thread: runs queued tasks until none is left or the budget is
 * spent. */
static void runner_work(uv_work_t *req) {
  runner *r = PBL__CONTAINER_OF(req, runner, work);
  pbl_loop_t *pl = r->pl;
  uint64_t start = uv_hrtime();
  thread_task *tt;
  while ((tt = runq_pop(&pl->runq)) != NULL) {
    run_task(tt);
    (void)pbl__loop_post_finished(pl, &tt->base); /* live: not closed */
    if (uv_hrtime() - start >= RUNNER_BUDGET_NS)
      break;
  }
}

static void start_runner(pbl_loop_t *pl);
static void fail_queued(pbl_loop_t *pl, int err);

/* Loop thread. Tasks queued after the runner found the queue empty, or
 * left when its budget ran out, get a runner again. */
static void runner_after(uv_work_t *req, int status) {
  runner *r = PBL__CONTAINER_OF(req, runner, work);
  pbl_loop_t *pl = r->pl;
  (void)status; /* runners are never cancelled */
  pbl__free(r);
  pl->runq.runners--;
  uv_mutex_lock(&pl->runq.lock);
  bool queued = !QUEUE_EMPTY(&pl->runq.queue);
  uv_mutex_unlock(&pl->runq.lock);
  if (queued)
    start_runner(pl);
  pbl__loop_drop(pl); /* may finish a close */
}

/* Loop thread. A runner counts in the binding's `active`, so the loop
 * stays alive and a close waits until it is back. */
static void start_runner(pbl_loop_t *pl) {
  if (pl->runq.runners >= pl->runq.max_runners)
    return;
  runner *r = pbl__malloc(sizeof(*r));
  if (r == NULL) {
    if (pl->runq.runners == 0)
      fail_queued(pl, UV_ENOMEM); /* nobody would ever run them */
    return;
  }
  r->pl = pl;
  pl->runq.runners++;
  pbl__loop_hold(pl);
  (void)uv_queue_work(pl->uv, &r->work, runner_work, runner_after);
}

static void thread_finished(pbl_task_t *t);

/* Loop thread, runq.lock held: queues t behind the tasks of its priority
 * and above. */
static int runq_insert(pbl__runq *rq, thread_task *tt) {
  size_t lane;
  int err = pbl__lanes_find(&rq->lanes, pbl__task_priority(&tt->base), &lane);
  if (err != 0)
    return err; /* no room for a new priority */
  QUEUE *after = pbl__lanes_after(&rq->lanes, lane, false);
  QUEUE_INSERT_TAIL(after != NULL ? after->next : rq->queue.next, &tt->rq);
  pbl__lanes_set_last(&rq->lanes, lane, &tt->rq);
  return 0;
}

/* Loop thread: queues the tasks a drain of the inbox took in, under one
 * hold of the lock that every runner takes for every task. */
static void flush_taken(pbl_loop_t *pl) {
  pbl__runq *rq = &pl->runq;
  QUEUE failed;
  QUEUE_INIT(&failed);
  unsigned k = 0;
  uv_mutex_lock(&rq->lock);
  while (!QUEUE_EMPTY(&rq->taken)) {
    QUEUE *q = QUEUE_HEAD(&rq->taken);
    QUEUE_REMOVE(q);
    thread_task *tt = QUEUE_DATA(q, thread_task, rq);
    if (runq_insert(rq, tt) != 0)
      QUEUE_INSERT_TAIL(&failed, q);
    else
      k++;
  }
  uv_mutex_unlock(&rq->lock);
  while (!QUEUE_EMPTY(&failed)) {
    QUEUE *q = QUEUE_HEAD(&failed);
    QUEUE_REMOVE(q);
    QUEUE_INIT(q);
    pbl_task_t *t = &QUEUE_DATA(q, thread_task, rq)->base;
    pbl__task_end(t, PBL_FAILED, UV_ENOMEM, NULL, NULL, PBL__DELIVER_POST);
    thread_finished(t);
  }
  while (k-- > 0 && pl->runq.runners < pl->runq.max_runners)
    start_runner(pl);
}

/* Loop thread. A task taken from the inbox waits for the end of the
 * drain (flush_taken); one submitted on the loop thread is queued now. */
static void thread_start(pbl_task_t *t) {
  thread_task *tt = (thread_task *)t;
  pbl_loop_t *pl = t->loop;
  pbl__runq *rq = &pl->runq;
  pbl__task_hold(t); /* released in thread_finished */
  if (pl->taking_in) {
    QUEUE_INSERT_TAIL(&rq->taken, &tt->rq);
    pl->after_take = flush_taken;
    pbl__queue_deadline_arm(t);
    return;
  }
  uv_mutex_lock(&rq->lock);
  int err = runq_insert(rq, tt);
  uv_mutex_unlock(&rq->lock);
  if (err != 0) {
    pbl__task_end(t, PBL_FAILED, err, NULL, NULL, PBL__DELIVER_POST);
    thread_finished(t);
    return;
  }
  pbl__queue_deadline_arm(t);
  start_runner(pl);
}

/* Loop thread: the runner is done with t (run or skipped). */
static void thread_finished(pbl_task_t *t) {
  pbl__queue_deadline_disarm(t);
  pbl__timeout_disarm(t);
  pbl__task_deliver_due(t);
  pbl__task_drop(t);
}

/* Loop thread. A queued task leaves the run queue at once; a running one
 * only has its pbl_cancelled() flag, which its end already raised. */
static void thread_abort(pbl_task_t *t) {
  thread_task *tt = (thread_task *)t;
  pbl__runq *rq = &t->loop->runq;
  if (!QUEUE_EMPTY(&rq->taken))
    flush_taken(t->loop); /* then t is in the run queue or running */
  uv_mutex_lock(&rq->lock);
  bool queued = !QUEUE_EMPTY(&tt->rq);
  if (queued) {
    int prio = pbl__task_priority(t);
    QUEUE *prev = tt->rq.prev;
    bool same =
        prev != &rq->queue &&
        pbl__task_priority(&QUEUE_DATA(prev, thread_task, rq)->base) == prio;
    pbl__lanes_removed(&rq->lanes, prio, &tt->rq, same ? prev : NULL);
    QUEUE_REMOVE(&tt->rq);
  }
  uv_mutex_unlock(&rq->lock);
  if (queued)
    thread_finished(t);
}

static const pbl__task_ops thread_ops = {
    .kind = "thread",
    .start = thread_start,
    .abort = thread_abort,
    .finished = thread_finished,
    .needs_loop = true,
};

/* Loop thread, out of memory for any runner: end what waits. */
static void fail_queued(pbl_loop_t *pl, int err) {
  thread_task *tt;
  while ((tt = runq_pop(&pl->runq)) != NULL) {
    pbl__task_end(&tt->base, PBL_FAILED, err, NULL, NULL, PBL__DELIVER_POST);
    thread_finished(&tt->base);
  }
}

int pbl_thread(pbl_loop_t *pl, pbl_thread_fn fn, void *arg,
               const pbl_task_opts *opts, pbl_task_t **task) {
  if (!PBL__VALID_LOOP(pl) || fn == NULL)
    return UV_EINVAL;
  pbl_task_t *t;
  int err = pbl__task_new(pl, &thread_ops, sizeof(thread_task), opts,
                          task != NULL, &t);
  if (err != 0)
    return err;
  thread_task *tt = (thread_task *)t;
  tt->arg = arg;
  QUEUE_INIT(&tt->rq);
  t->u.fn = fn;
  return pbl__task_submit_out(t, task, NULL, NULL);
}

size_t pbl__thread_task_size(void) {
  return sizeof(thread_task);
}
