/* The task: references, the one way to end it, callback delivery and
 * retirement.
 *
 * Design notes.
 *
 * A task ends exactly once, in pbl__task_end(), under its stripe lock:
 * the end data (err, result or failure) is written, then the state is
 * release-stored, then waiters are woken. Readers that see an end state
 * (acquire) see the end data. The only lock-free transitions are
 * PENDING -> RUNNING (pbl__task_begin) and back (pbl__task_unbegin: a
 * process pool's call that never reached its worker); they touch no end
 * data.
 *
 * Delivery: whoever ends a task also decides, in the same critical
 * section, who runs its callback: the ender at once (on the loop thread,
 * inside a uv callback), the inbox (a later turn), or nobody yet, in which
 * case the loop finds the ended task when its work completes
 * (pbl__task_deliver_due). S_DELIVERY_QUEUED makes that choice exclusive.
 *
 * A task retires on the loop thread once its first delivery ran and no
 * hold (uv request, timer, child handle) is left: it leaves the live list
 * and drops its flight reference.
 */
#include <string.h>

#include "internal.h"

/* Tasks share 64 statically initialised locks (uv_mutex_t is a
 * pthread_mutex_t on Unix): a mutex per task would cost 40 bytes each.
 * Each lock has a cache line of its own: workers end tasks while the loop
 * thread delivers their neighbours (consecutive ids, adjacent stripes),
 * and packed 40-byte locks would bounce shared lines between the CPUs. */
#define STRIPES 64 /* power of two */
#define LINE 64
typedef union {
  uv_mutex_t mu;
  char pad[LINE];
} stripe;
_Static_assert(sizeof(uv_mutex_t) <= LINE, "a stripe fits a cache line");
#define M                                                                      \
  { PTHREAD_MUTEX_INITIALIZER }
#define M8 M, M, M, M, M, M, M, M
static _Alignas(LINE) stripe stripes[STRIPES] = {M8, M8, M8, M8,
                                                 M8, M8, M8, M8};
#undef M8
#undef M

void pbl__task_lock(const pbl_task_t *t) {
  uv_mutex_lock(&stripes[t->id & (STRIPES - 1)].mu);
}

void pbl__task_unlock(const pbl_task_t *t) {
  uv_mutex_unlock(&stripes[t->id & (STRIPES - 1)].mu);
}

/* Ids come in blocks per thread: one atomic operation per block, not per
 * task. Unique, and increasing on each thread. */
#define ID_BLOCK 64
static _Thread_local uint64_t id_next, id_end; /* this thread's block */

uint64_t pbl__next_id(void) {
  static _Atomic uint64_t next = 1;
  if (id_next == id_end) {
    id_next = atomic_fetch_add_explicit(&next, ID_BLOCK, memory_order_relaxed);
    id_end = id_next + ID_BLOCK;
  }
  return id_next++;
}

pbl__failure *pbl__failure_new(int code, const char *msg) {
  size_t n = msg != NULL ? strlen(msg) : 0;
  pbl__failure *f = pbl__malloc(sizeof(*f) + n + 1);
  if (f == NULL)
    return NULL;
  f->code = code;
  if (n > 0)
    memcpy(f->msg, msg, n);
  f->msg[n] = '\0';
  return f;
}

static int opts_valid(const pbl_task_opts *o) {
  return o == NULL || (o->timeout_ms >= 0 && o->kill_grace_ms >= 0 &&
                       o->queue_timeout_ms >= 0);
}

int pbl__task_new(pbl_loop_t *pl, const pbl__task_ops *ops, size_t size,
                  const pbl_task_opts *opts, bool want_ref, pbl_task_t **out) {
  if (!PBL__VALID_LOOP(pl) || !opts_valid(opts) || size < sizeof(pbl_task_t))
    return UV_EINVAL;
  /* The binding's reference first: an atomic operation after the fresh
   * zeroed lines would wait for them to be written. */
  pbl__loop_ref(pl);
  bool spare;
  pbl_task_t *t = pbl__task_mem_new(pl, size, &spare);
  if (t == NULL) {
    pbl__loop_unref(pl);
    return UV_ENOMEM;
  }
  if (opts != NULL &&
      (opts->name != NULL || opts->timeout_ms > 0 || opts->kill_grace_ms > 0 ||
       opts->priority != 0 || opts->queue_timeout_ms > 0)) {
    t->x = pbl__calloc(1, sizeof(*t->x));
    if (t->x == NULL)
      goto nomem;
    if (opts->name != NULL) {
      t->x->name = pbl__strdup(opts->name);
      if (t->x->name == NULL)
        goto nomem;
    }
    t->x->timeout_ms = opts->timeout_ms;
    t->x->kill_grace_ms = opts->kill_grace_ms;
    t->x->priority = opts->priority;
    t->x->queue_timeout_ms = opts->queue_timeout_ms;
    if (opts->queue_timeout_ms > 0)
      t->x->queued_ns = uv_hrtime();
  }
  t->magic = PBL__TASK_MAGIC;
  if (spare)
    t->lflags = PBL__L_SPARE;
  atomic_init(&t->state, PBL_PENDING);
  atomic_init(&t->refs, want_ref ? 2u : 1u);
  t->id = ops->unnumbered ? 0 : pbl__next_id();
  t->loop = pl;
  t->ops = ops;
  if (opts != NULL) {
    t->on_done = opts->on_done;
    t->data = opts->data;
  }
  QUEUE_INIT(&t->live);
  *out = t;
  return 0;
nomem:
  if (t->x != NULL)
    pbl__free(t->x->name);
  pbl__free(t->x);
  pbl__task_mem_free(pl, t, spare);
  pbl__loop_unref(pl);
  return UV_ENOMEM;
}

static void task_free(pbl_task_t *t) {
  pbl_loop_t *pl = t->loop;
  if (t->ops->destroy != NULL)
    t->ops->destroy(t);
  if (atomic_load(&t->state) == PBL_FAILED)
    pbl__free(t->u.failure);
  if (t->x != NULL) {
    pbl__free(t->x->name);
    pbl__free(t->x);
  }
  t->magic = PBL__DEAD_MAGIC;
  pbl__task_mem_free(pl, t, (t->lflags & PBL__L_SPARE) != 0);
  pbl__loop_unref(pl);
}

void pbl__task_discard(pbl_task_t *t) {
  task_free(t);
}

int pbl__task_submit_out(pbl_task_t *t, pbl_task_t **out,
                         int (*submit)(void *to, pbl_task_t *t), void *to) {
  if (out != NULL)
    *out = t;
  int err = submit != NULL ? submit(to, t) : pbl__loop_submit(t->loop, t);
  if (err != 0) {
    if (out != NULL)
      *out = NULL;
    pbl__task_discard(t);
  }
  return err;
}

pbl_task_t *pbl_task_retain(pbl_task_t *t) {
  if (!PBL__VALID_TASK(t))
    return NULL;
  atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
  return t;
}

void pbl_task_release(pbl_task_t *t) {
  if (!PBL__VALID_TASK(t))
    return;
  /* Holding the last reference, nobody else can take one (that needs a
   * reference): no atomic write. Acquire pairs with the other releases. */
  if (atomic_load_explicit(&t->refs, memory_order_acquire) == 1 ||
      atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
    task_free(t);
}

bool pbl__task_begin(pbl_task_t *t) {
  uint8_t expect = PBL_PENDING;
  return atomic_compare_exchange_strong_explicit(
      &t->state, &expect, PBL_RUNNING, memory_order_acq_rel,
      memory_order_acquire);
}

bool pbl__task_unbegin(pbl_task_t *t) {
  uint8_t expect = PBL_RUNNING;
  return atomic_compare_exchange_strong_explicit(
             &t->state, &expect, PBL_PENDING, memory_order_acq_rel,
             memory_order_acquire) ||
         expect == PBL_PENDING;
}

/* Stripe lock held. */
static void wake_waiters(pbl_task_t *t) {
  for (pbl__wait_node *n = t->waiters; n != NULL; n = n->next)
    pbl__waiter_fire(n->w);
}

bool pbl__task_end(pbl_task_t *t, pbl_task_state end, int err, void *result,
                   pbl__failure *failure, pbl__deliver_mode mode) {
  PBL__ASSERT(mode != PBL__DELIVER_NOW || pbl__on_loop_thread(t->loop));
  pbl__task_lock(t);
  if (PBL__ENDED(atomic_load_explicit(&t->state, memory_order_relaxed))) {
    pbl__task_unlock(t);
    pbl__free(failure); /* cancel, timeout or the worker already won */
    return false;
  }
  t->err = err;
  if (end == PBL_DONE) {
    t->u.result = result;
  } else if (end == PBL_FAILED) {
    t->u.failure = failure;
    failure = NULL;
  }
  if (end == PBL_CANCELLED || end == PBL_TIMED_OUT)
    t->sflags |= PBL__S_ABORT_DUE;
  if (mode != PBL__DELIVER_LATER)
    t->sflags |= PBL__S_DELIVERY_QUEUED;
  atomic_store_explicit(&t->state, (uint8_t)end, memory_order_release);
  wake_waiters(t);
  pbl__task_unlock(t);
  pbl__free(failure);
  if (mode == PBL__DELIVER_NOW)
    pbl__task_deliver(t);
  else if (mode == PBL__DELIVER_POST)
    (void)pbl__loop_post_delivery(t->loop, t); /* live: cannot be closed */
  return true;
}

bool pbl__task_end_unstarted(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  pbl__task_lock(t);
  /* Every other end takes the stripe lock: only begin can race, and
   * begin is a CAS from PENDING, so this end is one too. err and the
   * flag are read only once the state says ended. */
  uint8_t expect = PBL_PENDING;
  if (atomic_load_explicit(&t->state, memory_order_relaxed) != PBL_PENDING) {
    pbl__task_unlock(t);
    return false;
  }
  t->err = UV_ETIMEDOUT;
  t->x->queue_expired = true;
  if (!atomic_compare_exchange_strong_explicit(
          &t->state, &expect, (uint8_t)PBL_TIMED_OUT, memory_order_acq_rel,
          memory_order_relaxed)) {
    t->err = 0; /* it started just now: its own end sets both */
    t->x->queue_expired = false;
    pbl__task_unlock(t);
    return false;
  }
  t->sflags |= PBL__S_ABORT_DUE | PBL__S_DELIVERY_QUEUED;
  wake_waiters(t);
  pbl__task_unlock(t);
  pbl__task_deliver(t);
  return true;
}

/* Loop thread. Stops the work of a task ended by cancel or timeout. */
static void abort_work(pbl_task_t *t) {
  if ((t->lflags & (PBL__L_STARTED | PBL__L_ABORTED)) != PBL__L_STARTED ||
      t->holds == 0 || t->ops->abort == NULL)
    return;
  t->lflags |= PBL__L_ABORTED;
  t->ops->abort(t);
}

static void maybe_retire(pbl_task_t *t) {
  if (t->holds != 0 || (t->lflags & PBL__L_DELIVERED) == 0 ||
      (t->lflags & PBL__L_RETIRED) != 0)
    return;
  t->lflags |= PBL__L_RETIRED;
  if (t->lflags & PBL__L_LIVE)
    pbl__loop_untrack(t->loop, t);
  pbl_task_release(t); /* the flight reference */
}

/* Stripe lock held: releases it before calling out. */
static void deliver_locked(pbl_task_t *t) {
  t->sflags &= (uint8_t)~PBL__S_DELIVERY_QUEUED;
  pbl_done_cb cb = t->on_done;
  void *data = t->data;
  if (cb != NULL)
    t->sflags |= PBL__S_CB_CALLED;
  bool late_counted = (t->sflags & PBL__S_LATE_COUNTED) != 0;
  bool abort_due = (t->sflags & PBL__S_ABORT_DUE) != 0;
  t->sflags &= (uint8_t)~PBL__S_LATE_COUNTED;
  t->sflags |= PBL__S_DELIVERED;
  pbl__task_unlock(t);

  bool first = (t->lflags & PBL__L_DELIVERED) == 0;
  /* Read now: for tasks without the hook, t may be gone after retiring. */
  void (*delivered)(pbl_task_t *) = first ? t->ops->delivered : NULL;
  /* Callbacks after the work was told to stop. Before the task counts as
   * delivered: stopping work that never started (a thread task still
   * queued) drops its last hold, and must not retire the task yet. */
  if (abort_due)
    abort_work(t);
  t->lflags |= PBL__L_DELIVERED;
  if (cb != NULL) {
    t->holds++;  /* whatever the callback stops, t outlives it */
    cb(t, data); /* may release the caller's reference, never ours */
    t->holds--;
  }
  if (first) {
    maybe_retire(t);
    if (delivered != NULL)
      delivered(t); /* the kind keeps t alive until this hook */
    return;
  }
  pbl_loop_t *pl = t->loop;
  if (late_counted)
    pbl__loop_drop(pl);
  pbl_task_release(t); /* the late delivery's reference */
}

void pbl__task_deliver(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  pbl__task_lock(t);
  deliver_locked(t);
}

/* Claims and runs the delivery under one hold of the stripe lock: the
 * claim (S_DELIVERY_QUEUED) would be cleared again at once. */
bool pbl__task_deliver_due(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  pbl__task_lock(t);
  uint8_t f = t->sflags & (PBL__S_DELIVERY_QUEUED | PBL__S_DELIVERED);
  if (PBL__ENDED(atomic_load_explicit(&t->state, memory_order_relaxed)) &&
      f == 0) {
    deliver_locked(t);
    return false;
  }
  pbl__task_unlock(t);
  return f == PBL__S_DELIVERY_QUEUED; /* claimed, first delivery not run */
}

void pbl__task_hold(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  t->holds++;
}

void pbl__task_drop(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (--t->holds == 0)
    maybe_retire(t);
}

void pbl__task_take_in(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (t->lflags & PBL__L_STARTED) {
    /* A worker's notice that the function started: time it out. */
    if (!pbl__task_ended(t))
      pbl__timeout_arm(t);
    pbl_task_release(t); /* the notice's reference */
    return;
  }
  t->lflags |= PBL__L_STARTED;
  pbl__loop_track(t->loop, t);
  if (pbl__task_ended(t))
    return; /* cancelled in the inbox: its delivery follows */
  if (pbl__loop_is_closing(t->loop)) {
    pbl__task_end(t, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                  PBL__DELIVER_POST);
    return;
  }
  t->ops->start(t);
}

/* Also stops the work of a task that already ended but whose work is
 * still in flight (a child that answered and lingers): the binding only
 * closes once nothing runs. */
void pbl__task_close_cancel(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  pbl__task_end(t, PBL_CANCELLED, UV_ECANCELED, NULL, NULL, PBL__DELIVER_POST);
  abort_work(t);
}

int pbl_task_cancel(pbl_task_t *t) {
  if (!PBL__VALID_TASK(t))
    return UV_EINVAL;
  if (pbl__task_end(t, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                    PBL__DELIVER_POST)) {
    if (pbl__on_loop_thread(t->loop))
      abort_work(t); /* e.g. uv_cancel() at once; other threads: on delivery */
    return 0;
  }
  return atomic_load_explicit(&t->state, memory_order_acquire) == PBL_CANCELLED
             ? 0
             : UV_EBUSY;
}

int pbl_task_on_done(pbl_task_t *t, pbl_done_cb cb, void *data) {
  if (!PBL__VALID_TASK(t))
    return UV_EINVAL;
  pbl_loop_t *pl = t->loop; /* memory kept by the task's reference */
  bool on_loop = pbl__on_loop_thread(pl);
  pbl__task_lock(t);
  if (t->sflags & PBL__S_CB_CALLED) {
    pbl__task_unlock(t);
    return UV_EALREADY;
  }
  t->on_done = cb;
  t->data = data;
  /* Ended, delivered without a callback, and none queued: a late one. */
  bool post = cb != NULL && (t->sflags & PBL__S_DELIVERED) &&
              !(t->sflags & PBL__S_DELIVERY_QUEUED);
  if (post) {
    t->sflags |= PBL__S_DELIVERY_QUEUED;
    if (on_loop)
      t->sflags |= PBL__S_LATE_COUNTED; /* keeps uv_run() going */
  }
  pbl__task_unlock(t);
  if (!post)
    return 0;
  pbl_task_retain(t);
  if (on_loop)
    pbl__loop_hold(pl);
  int err = pbl__loop_post_delivery(pl, t);
  if (err != 0) {
    pbl__task_lock(t);
    t->sflags &= (uint8_t) ~(PBL__S_DELIVERY_QUEUED | PBL__S_LATE_COUNTED);
    pbl__task_unlock(t);
    if (on_loop)
      pbl__loop_drop(pl);
    pbl_task_release(t);
  }
  return err;
}
