/* Thread tasks on libuv's thread pool (uv_queue_work), and the run
 * context that pbl_fail() and pbl_cancelled() act on.
 *
 * The function's outcome is settled on the worker thread, so waiters on
 * other threads wake without a loop turn; the callback runs in
 * after_work, on the loop thread. A timeout counts from the function's
 * start: the worker stamps the start and posts a notice that arms the
 * timer on the loop thread.
 */
#include <stdarg.h>

#include "internal.h"

#define WORK_FINISHED PBL__L_KIND /* after_work ran: nothing to cancel */

typedef struct {
  pbl_task_t base; /* first: a thread task is a pbl_task_t */
  uv_work_t work;  /* work.data: the function's argument */
} thread_task;

static _Thread_local pbl__run_ctx *current;

pbl__run_ctx *pbl__run_enter(pbl__run_ctx *c) {
  pbl__run_ctx *prev = current;
  current = c;
  return prev;
}

void pbl__run_leave(pbl__run_ctx *prev) {
  current = prev;
}

void pbl_fail(int code, const char *fmt, ...) {
  pbl__run_ctx *c = current;
  if (c == NULL)
    return;
  char *msg = NULL;
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    msg = pbl__vasprintf(fmt, ap);
    va_end(ap);
  }
  c->fail(c, code, msg);
  pbl__free(msg);
}

bool pbl_cancelled(void) {
  pbl__run_ctx *c = current;
  return c != NULL && c->cancelled(c);
}

/* The run context of a function running on a thread (libuv's pool or a
 * pool of ours). */
static void thread_run_fail(pbl__run_ctx *c, int code, const char *msg) {
  pbl__thread_run *r = (pbl__thread_run *)c;
  r->failed = true;
  if (r->failure == NULL)
    r->failure = pbl__failure_new(code, msg != NULL ? msg : "");
}

static bool thread_run_cancelled(pbl__run_ctx *c) {
  return pbl__task_ended(c->self);
}

void *pbl__thread_invoke(pbl_task_t *t, pbl_thread_fn fn, void *arg,
                         pbl__thread_run *r) {
  r->ctx.fail = thread_run_fail;
  r->ctx.cancelled = thread_run_cancelled;
  r->ctx.self = t;
  r->failed = false;
  r->failure = NULL;
  pbl__run_ctx *prev = pbl__run_enter(&r->ctx);
  void *res = fn(arg);
  pbl__run_leave(prev);
  return res;
}

static void work_cb(uv_work_t *req) {
  thread_task *tt = PBL__CONTAINER_OF(req, thread_task, work);
  pbl_task_t *t = &tt->base;
  pbl_thread_fn fn = t->u.fn;
  if (!pbl__task_begin(t))
    return; /* cancelled while queued */
  if (t->x != NULL && t->x->timeout_ms > 0) {
    t->x->started_ns = uv_hrtime();
    pbl_task_retain(t); /* the notice's reference */
    if (pbl__loop_post_in(t->loop, t) != 0)
      pbl_task_release(t);
  }
  pbl__thread_run r;
  void *res = pbl__thread_invoke(t, fn, req->data, &r);
  if (r.failed)
    pbl__task_end(t, PBL_FAILED, PBL_EFAILED, NULL, r.failure,
                  PBL__DELIVER_LATER);
  else
    pbl__task_end(t, PBL_DONE, 0, res, NULL, PBL__DELIVER_LATER);
}

/* status is UV_ECANCELED after uv_cancel(), which only an already
 * cancelled task's abort calls: the task has ended either way. */
static void after_work(uv_work_t *req, int status) {
  thread_task *tt = PBL__CONTAINER_OF(req, thread_task, work);
  pbl_task_t *t = &tt->base;
  (void)status;
  t->lflags |= WORK_FINISHED;
  pbl__timeout_disarm(t);
  pbl__task_deliver_due(t);
  pbl__task_drop(t);
}

static void thread_start(pbl_task_t *t) {
  thread_task *tt = (thread_task *)t;
  pbl__task_hold(t);
  int err = uv_queue_work(t->loop->uv, &tt->work, work_cb, after_work);
  if (err != 0) {
    pbl__task_end(t, PBL_FAILED, err, NULL, NULL, PBL__DELIVER_POST);
    pbl__task_drop(t);
  }
}

/* A queued task leaves the pool at once; a running one only has its
 * pbl_cancelled() flag, which its end already raised. */
static void thread_abort(pbl_task_t *t) {
  thread_task *tt = (thread_task *)t;
  if ((t->lflags & WORK_FINISHED) == 0)
    (void)uv_cancel((uv_req_t *)&tt->work);
}

static const pbl__task_ops thread_ops = {
    .kind = "thread",
    .start = thread_start,
    .abort = thread_abort,
    .needs_loop = true,
};

int pbl_thread(pbl_loop_t *pl, pbl_thread_fn fn, void *arg,
               const pbl_task_opts *opts, pbl_task_t **task) {
  if (!PBL__VALID_LOOP(pl) || fn == NULL)
    return UV_EINVAL;
  pbl_task_t *t;
  int err = pbl__task_new(pl, &thread_ops, sizeof(thread_task), opts,
                          task != NULL, &t);
  if (err != 0)
    return err;
  ((thread_task *)t)->work.data = arg;
  t->u.fn = fn;
  if (task != NULL)
    *task = t; /* before submit: a fire-and-forget t may be gone after */
  err = pbl__loop_submit(pl, t);
  if (err != 0) {
    if (task != NULL)
      *task = NULL;
    pbl__task_discard(t);
  }
  return err;
}

size_t pbl__thread_task_size(void) {
  return sizeof(thread_task);
}
