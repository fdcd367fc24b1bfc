/* Process pools: pbl_process_pool_new, pbl_pool_process,
 * pbl_pool_map_process, and the kind's hooks. See ppool-int.h for the design
 * notes.
 */
#include <string.h>

#include "ppool-int.h"

static const pbl__pool_kind process_kind;

/* ---- items ---- */

static void pitem_abort(pbl_task_t *t) {
  pbl__pitem *pi = (pbl__pitem *)t;
  pbl__pworker *w = pi->w;
  if (w == NULL)
    return;
  if (pbl__pworker_head(w) == &pi->item)
    pbl__pworker_kill(w, pbl__pworker_grace(w->pp, t));
  else if (w->state == PBL__PW_READY && !pi->cancel_sent)
    pbl__pworker_send_cancel(w, pi); /* w drops it, or is killed if it
                                        started it first (item_starts) */
}

static void pitem_destroy(pbl_task_t *t) {
  pbl__pitem *pi = (pbl__pitem *)t;
  if (atomic_load(&t->state) == PBL_DONE)
    pbl__free(t->u.result);
  if (pi->in != pi + 1) /* else inline, in the item's own memory */
    pbl__free(pi->in);
  pbl__free(pi->proc.words);
}

static pbl__proc_info *pitem_proc(const pbl_task_t *t) {
  return &((pbl__pitem *)t)->proc;
}

/* Answers are read on the loop: every wait needs it to turn. */
static const pbl__task_ops pitem_ops = {
    .kind = "pool-process",
    .abort = pitem_abort,
    .destroy = pitem_destroy,
    .message = pbl__proc_message,
    .proc = pitem_proc,
    .delivered = pbl__pool_item_delivered,
    .needs_loop = true,
};

/* ---- the kind's hooks ---- */

/* lock: a task arrived: starts are allowed again; the loop dispatches. */
static pbl__kick pp_kick(pbl_pool_t *p) {
  pbl__kick k = {0, 0};
  ((pbl__ppool *)p)->starts_blocked = false;
  if (pbl__pool_want_wake(p))
    k.signal = 1;
  return k;
}

static void pp_act(pbl_pool_t *p, pbl__kick k) {
  if (k.signal > 0)
    pbl__pool_wake(p); /* the pool has live items: the async is open */
}

static void pp_wind_down(pbl_pool_t *p) {
  if (pbl__pool_want_wake(p))
    pbl__pool_wake(p); /* under the lock: the async cannot be closing */
}

/* lock and done: every item on a worker ends cancelled; its abort (on
 * the loop) kills the worker. */
static void pp_cancel_running(pbl_pool_t *p) {
  pbl__ppool *pp = (pbl__ppool *)p;
  QUEUE *q;
  PBL__PPOOL_EACH(q, pp) {
    pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
    for (unsigned j = 0; j < w->njobs; j++)
      for (pbl__pool_item *it = w->jobs[(w->first + j) % PBL__PPOOL_DEPTH];
           it != NULL; it = it->next)
        pbl__task_end(&it->base, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                      PBL__DELIVER_POST);
  }
}

static void pp_reap(pbl_pool_t *p) {
  (void)p; /* children are reaped by their exit callbacks */
}

static void pp_loop_work(pbl_pool_t *p) {
  pbl__ppool_dispatch((pbl__ppool *)p);
}

static size_t pp_workers(pbl_pool_t *p) {
  return ((pbl__ppool *)p)->slots;
}

static void pp_destroy(pbl_pool_t *p) {
  pbl__ppool *pp = (pbl__ppool *)p;
  pbl__free(pp->worker_path);
  pbl__free(pp->init_in);
  pbl__ppool_launch_free(pp);
  pbl__free(pp);
}

static const pbl__pool_kind process_kind = {
    .name = "process",
    .kick = pp_kick,
    .act = pp_act,
    .wind_down = pp_wind_down,
    .cancel_running = pp_cancel_running,
    .reap = pp_reap,
    .loop_work = pp_loop_work,
    .workers = pp_workers,
    .destroy = pp_destroy,
    .reaps_on_loop = true,
};

/* ---- public ---- */

/* Inputs up to this size are copied into the item's own memory. */
#define PITEM_INLINE_MAX 256

static void *copy_bytes(const void *in, size_t len, int *err) {
  if (len == 0)
    return NULL;
  void *p = pbl__malloc(len);
  if (p == NULL)
    *err = UV_ENOMEM;
  else
    memcpy(p, in, len);
  return p;
}

int pbl_process_pool_new(pbl_loop_t *pl, const pbl_pool_opts *o,
                         pbl_pool_t **out) {
  if (!PBL__VALID_LOOP(pl) || out == NULL)
    return UV_EINVAL;
  if (o != NULL &&
      (o->init != NULL || o->kill_grace_ms < 0 || o->init_timeout_ms < 0 ||
       (o->worker_path != NULL && o->worker_path[0] == '\0') ||
       (o->init_arg == NULL && o->init_len > 0)))
    return UV_EINVAL; /* a thread pool's init here is a mistake */
  const char *init_name = NULL;
  if (o != NULL && o->process_init != NULL) {
    init_name = pbl__registry_name(o->process_init);
    if (init_name == NULL)
      return PBL_ENOFUNC;
  }
  pbl__ppool *pp = pbl__calloc(1, sizeof(*pp));
  if (pp == NULL)
    return UV_ENOMEM;
  pp->target =
      o != NULL && o->workers != 0 ? o->workers : uv_available_parallelism();
  pp->grace_ms = o != NULL && o->kill_grace_ms > 0 ? (uint64_t)o->kill_grace_ms
                                                   : PBL__KILL_GRACE_MS;
  pp->init_name = init_name;
  pp->job_ns = PBL__PPOOL_BUDGET_NS; /* 2 jobs each, until measured */
  QUEUE_INIT(&pp->workers);
  int err = 0;
  if (o != NULL) {
    pp->max_tasks = o->max_tasks;
    pp->spare = o->spare_workers;
    pp->init_timeout_ms = (uint64_t)o->init_timeout_ms;
    if (init_name != NULL)
      pp->init_in = copy_bytes(o->init_arg, o->init_len, &err);
    pp->init_len = o->init_len;
    if (o->worker_path != NULL && err == 0) {
      pp->worker_path = pbl__strdup(o->worker_path);
      if (pp->worker_path == NULL)
        err = UV_ENOMEM;
    }
  }
  if (err == 0)
    err = pbl__ppool_launch_init(pp, o);
  if (err == 0)
    err = pbl__pool_init(&pp->base, &process_kind, pl, o);
  if (err == 0) {
    *out = &pp->base;
    return 0;
  }
  pp_destroy(&pp->base);
  return err;
}

static int make_item(pbl_pool_t *p, const char *name, const void *in,
                     size_t len, const pbl_task_opts *opts, bool want_ref,
                     pbl__pool_item **out) {
  /* A small input rides in the item's memory: one allocation, not two. */
  bool inline_in = len > 0 && len <= PITEM_INLINE_MAX;
  int err = pbl__pool_item_new(p, &pitem_ops, &pitem_ops,
                               sizeof(pbl__pitem) + (inline_in ? len : 0), opts,
                               want_ref, out);
  if (err != 0)
    return err;
  pbl__pitem *pi = (pbl__pitem *)*out;
  pi->fn_name = name;
  pi->in_len = len;
  if (inline_in)
    pi->in = memcpy(pi + 1, in, len);
  else
    pi->in = copy_bytes(in, len, &err);
  if (err != 0) {
    pbl__task_discard(&(*out)->base);
    *out = NULL;
  }
  return err;
}

/* Checks what pbl_pool_process and pbl_pool_map_process share; sets the
 * function's registry name. */
static int check(pbl_pool_t *p, pbl_process_fn fn, const pbl_task_opts *opts,
                 const char **name) {
  if (!PBL__VALID_POOL(p) || p->kind != &process_kind || fn == NULL ||
      (opts != NULL && opts->worker_path != NULL))
    return UV_EINVAL; /* the pool's workers run every task */
  *name = pbl__registry_name(fn);
  return *name != NULL ? 0 : PBL_ENOFUNC;
}

int pbl_pool_process(pbl_pool_t *p, pbl_process_fn fn, const void *in,
                     size_t len, const pbl_task_opts *opts, pbl_task_t **task) {
  const char *name;
  int err = check(p, fn, opts, &name);
  if (err == 0 && in == NULL && len > 0)
    err = UV_EINVAL;
  if (err != 0)
    return err;
  pbl__pool_item *it;
  err = make_item(p, name, in, len, opts, task != NULL, &it);
  if (err != 0)
    return err;
  return pbl__task_submit_out(&it->base, task, pbl__pool_submit_task, p);
}

typedef struct {
  const char *name;
  const pbl_buf *inputs;
} map_ctx;

static int make_map_item(pbl_pool_t *p, size_t i, const pbl_task_opts *opts,
                         bool want_ref, pbl__pool_item **out, void *ctx) {
  map_ctx *m = ctx;
  const pbl_buf *b = &m->inputs[i];
  if (b->data == NULL && b->len > 0)
    return UV_EINVAL;
  return make_item(p, m->name, b->data, b->len, opts, want_ref, out);
}

int pbl_pool_map_process(pbl_pool_t *p, pbl_process_fn fn,
                         const pbl_buf *inputs, size_t n, size_t chunksize,
                         const pbl_task_opts *opts, pbl_task_t **tasks) {
  const char *name;
  int err = check(p, fn, opts, &name);
  if (err == 0 && inputs == NULL && n > 0)
    err = UV_EINVAL;
  if (err != 0)
    return err;
  map_ctx m = {name, inputs};
  return pbl__pool_map(p, n, chunksize, opts, tasks, make_map_item, &m);
}
