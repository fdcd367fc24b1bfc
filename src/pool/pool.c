/* The pbl_pool_* front end: binding a pool to its loop, the loop-side
 * drain, and the life cycle running -> closed/stopped -> joined -> freed,
 * shared by every kind of pool. See pool.h for the design notes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* PTHREAD_MUTEX_ADAPTIVE_NP, where there is one */
#endif
#include <pthread.h>

#include "pool.h"

_Thread_local pbl_pool_t *pbl__pool_self;

/* ---- the drain (loop thread) ---- */

/* Drains at most this many times in a row when the drain's own callbacks
 * wake it (each pass takes what they submitted); then on the next turn. */
#define DRAIN_PASSES 4

static void drain_once(pbl_pool_t *p) {
  uv_mutex_lock(&p->done_lock);
  pbl__pool_item *arms = p->arms;
  pbl__pool_item *done = p->done.head;
  pbl_task_t *qarms = p->qarms;
  p->arms = NULL;
  p->qarms = NULL;
  p->done.head = p->done.tail = NULL;
  atomic_store(&p->wake_pending, false); /* later finishes send again */
  uv_mutex_unlock(&p->done_lock);

  while (qarms != NULL) { /* before the drain: it may be among done */
    pbl_task_t *next = qarms->x->qarm_next;
    pbl__queue_deadline_arm(qarms); /* unless it started or ended */
    pbl_task_release(qarms);        /* the list's reference */
    qarms = next;
  }
  for (pbl__pool_item *it = arms; it != NULL; it = it->arm_next)
    if (!pbl__task_ended(&it->base))
      pbl__timeout_arm(&it->base);
  size_t n = 0;
  while (done != NULL) {
    pbl__pool_item *next = done->next;
    pbl_task_t *t = &done->base;
    bool held = done->held;
    pbl__queue_deadline_disarm(t);
    pbl__timeout_disarm(t);
    /* A callback may free or stop the pool. */
    if (pbl__task_deliver_due(t)) { /* on its way: live until it runs */
      done->owed = true;
      done->owed_by = p;
      done = next;
      continue;
    }
    if (held)
      pbl__task_drop(t); /* may retire t */
    else
      pbl_task_release(t);
    done = next;
    n++;
  }
  p->kind->reap(p);
  if (p->kind->loop_work != NULL)
    p->kind->loop_work(p);
  if (n > 0) {
    uv_mutex_lock(&p->lock);
    p->live -= n;
    pbl__pool_changed(p);
    uv_mutex_unlock(&p->lock);
  }
}

/* A callback that submits to p wakes p's drain while it runs: the next
 * pass serves that wake at once, where a kick would cost a loop turn
 * (an epoll_wait) that finds nothing else to do. */
static void drain(pbl_pool_t *p) {
  bool outer = p->draining; /* a callback may run the loop: nested */
  for (int pass = 1;; pass++) {
    p->draining = true;
    p->redrain = false;
    drain_once(p);
    if (!p->redrain)
      break;
    if (pass == DRAIN_PASSES) {
      uv_idle_start(&p->kick, pbl__pool_on_kick);
      break;
    }
  }
  p->draining = outer;
  pbl__pool_settle(p);
}

static void on_async(uv_async_t *a) {
  drain(a->data);
}

void pbl__pool_on_kick(uv_idle_t *h) {
  uv_idle_stop(h);
  drain(h->data);
}

void pbl__pool_item_delivered(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  pbl__pool_item *it = (pbl__pool_item *)t;
  if (!it->owed)
    return; /* not drained yet: the drain finds it delivered */
  pbl_pool_t *p = it->owed_by;
  it->owed = false;
  if (it->held)
    pbl__task_drop(t); /* may retire t */
  else
    pbl_task_release(t);
  uv_mutex_lock(&p->lock);
  p->live--;
  pbl__pool_changed(p);
  uv_mutex_unlock(&p->lock);
  pbl__pool_settle(p); /* may close the async: p lives until its callback */
}

static void pool_destroy(pbl_pool_t *p) {
  pbl__lanes_free(&p->lanes);
  uv_cond_destroy(&p->join_cv);
  uv_mutex_destroy(&p->done_lock);
  uv_mutex_destroy(&p->lock);
  p->magic = PBL__DEAD_MAGIC;
  pbl_loop_t *pl = p->loop;
  p->kind->destroy(p); /* frees p: the kind allocated it */
  pbl__loop_unref(pl);
}

static void on_closed(uv_handle_t *h) {
  pbl_pool_t *p = h->data;
  if (--p->open_handles > 0)
    return; /* the other one closes later in this turn */
  /* First, while p is surely ours: the binding may finish its close. */
  pbl__loop_member_gone(p->loop, &p->member);
  uv_mutex_lock(&p->lock);
  p->gone = true;
  bool freed = p->freed;
  uv_mutex_unlock(&p->lock);
  if (freed)
    pool_destroy(p); /* else pbl_pool_free() will */
}

void pbl__pool_settle(pbl_pool_t *p) {
  uv_mutex_lock(&p->lock);
  pbl__pool_item *top = atomic_load_explicit(&p->pushed, memory_order_relaxed);
  bool pushed = top != NULL && top != PBL__POOL_SEALED; /* not absorbed */
  bool ready = p->live == 0 && p->unjoined == 0 && !pushed;
  bool finish = ready && (p->freed || p->member_closing) && !p->async_closing;
  bool closing = p->async_closing;
  bool want =
      !ready && (p->live > 0 || pushed || p->state != PBL__POOL_RUNNING);
  if (!want && !finish) {
    /* seq_cst both, as a push and its look at asleep: either a push from
     * another thread sees asleep and wakes the loop, or it is seen here.
     * (A finishing pool is sealed: no push comes.) */
    atomic_store(&p->asleep, true);
    top = atomic_load(&p->pushed);
    want = top != NULL && top != PBL__POOL_SEALED;
  }
  if (want)
    atomic_store(&p->asleep, false);
  if (finish) { /* under both locks: no send after this */
    uv_mutex_lock(&p->done_lock);
    p->async_closing = true;
    uv_mutex_unlock(&p->done_lock);
  }
  uv_mutex_unlock(&p->lock);
  if (finish) {
    uv_close((uv_handle_t *)&p->kick, on_closed);
    uv_close((uv_handle_t *)&p->async, on_closed); /* keeps the loop alive */
    return;
  }
  if (closing || want == p->refd)
    return;
  p->refd = want;
  if (want)
    uv_ref((uv_handle_t *)&p->async);
  else
    uv_unref((uv_handle_t *)&p->async);
}

/* lock. Returns true if the loop must be woken. */
static bool stop_locked(pbl_pool_t *p) {
  if (p->state == PBL__POOL_STOPPED)
    return false;
  p->state = PBL__POOL_STOPPED;
  pbl__pool_seal(p);
  bool wake = pbl__pool_cancel_queued(p);
  uv_mutex_lock(&p->done_lock); /* hands are cleared under done */
  p->kind->cancel_running(p);
  uv_mutex_unlock(&p->done_lock);
  p->kind->wind_down(p);
  return wake;
}

/* Lock held; drops it. The loop settles the change: at once on the loop
 * thread, else woken (under the lock: the async cannot be closing). */
static void unlock_and_settle(pbl_pool_t *p, bool wake) {
  bool here = !p->gone && pbl__on_loop_thread(p->loop);
  if (!here && !p->gone && pbl__pool_want_wake(p))
    wake = true;
  if (wake)
    pbl__pool_wake(p);
  uv_mutex_unlock(&p->lock);
  if (here)
    pbl__pool_settle(p);
}

/* Loop thread: the binding closes. */
static void member_close(pbl__member *m) {
  pbl_pool_t *p = PBL__CONTAINER_OF(m, pbl_pool_t, member);
  uv_mutex_lock(&p->lock);
  p->member_closing = true;
  unlock_and_settle(p, stop_locked(p));
}

/* The pool lock is taken by the loop thread and every worker for a few
 * instructions each time: an adaptive mutex spins a little before it
 * sleeps, which saves a futex round trip in most collisions. */
static int lock_init(uv_mutex_t *m) {
#if defined(PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP)
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a) != 0)
    return UV_ENOMEM;
  int err = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
  if (err == 0)
    err = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return -err;
#else
  return uv_mutex_init(m);
#endif
}

/* Loop thread. */
static int attach(void *arg) {
  pbl_pool_t *p = arg;
  int err = uv_async_init(p->loop->uv, &p->async, on_async);
  if (err != 0)
    return err;
  p->async.data = p;
  uv_unref((uv_handle_t *)&p->async);        /* an idle pool is not work */
  (void)uv_idle_init(p->loop->uv, &p->kick); /* cannot fail */
  p->kick.data = p;
  p->open_handles = 2;
  pbl__loop_member_add(p->loop, &p->member);
  return 0;
}

int pbl__pool_init(pbl_pool_t *p, const pbl__pool_kind *kind, pbl_loop_t *pl,
                   const pbl_pool_opts *o) {
  if (!PBL__VALID_LOOP(pl))
    return UV_EINVAL;
  p->kind = kind;
  p->loop = pl;
  p->queue_limit = o != NULL ? o->queue_limit : 0;
  p->state = PBL__POOL_RUNNING;
  pbl__lanes_init(&p->lanes);
  p->member.close = member_close;
  pbl__pool_clock_init();
  atomic_init(&p->wake_pending, false);
  atomic_init(&p->pushed, NULL);
  atomic_init(&p->push_kick, true);
  atomic_init(&p->asleep, true);
  int err = lock_init(&p->lock);
  if (err != 0)
    return err;
  err = lock_init(&p->done_lock);
  if (err == 0) {
    err = uv_cond_init(&p->join_cv);
    if (err == 0) {
      err = pbl__loop_call(pl, attach, p);
      if (err == 0) {
        pbl__loop_ref(pl); /* the binding's memory outlives the pool */
        p->magic = PBL__POOL_MAGIC;
        return 0;
      }
      uv_cond_destroy(&p->join_cv);
    }
    uv_mutex_destroy(&p->done_lock);
  }
  uv_mutex_destroy(&p->lock);
  return err;
}

/* ---- public ---- */

int pbl_pool_close(pbl_pool_t *p) {
  if (!PBL__VALID_POOL(p))
    return UV_EINVAL;
  uv_mutex_lock(&p->lock);
  if (p->state == PBL__POOL_RUNNING) {
    p->state = PBL__POOL_CLOSED;
    pbl__pool_seal(p);
    p->kind->wind_down(p);
  }
  unlock_and_settle(p, false);
  return 0;
}

int pbl_pool_stop(pbl_pool_t *p) {
  if (!PBL__VALID_POOL(p))
    return UV_EINVAL;
  uv_mutex_lock(&p->lock);
  unlock_and_settle(p, stop_locked(p));
  return 0;
}

int pbl_pool_join(pbl_pool_t *p, int64_t timeout_ms) {
  if (!PBL__VALID_POOL(p))
    return UV_EINVAL;
  uint64_t deadline = pbl__deadline_of(timeout_ms);
  uv_mutex_lock(&p->lock);
  if (p->state == PBL__POOL_RUNNING) {
    uv_mutex_unlock(&p->lock);
    return UV_EINVAL;
  }
  bool here = pbl__on_loop_thread(p->loop);
  int err = pbl__pool_self == p ? PBL_EDEADLK : 1; /* 1: go on */
  while (err == 1) {
    if (p->live == 0 && p->unjoined == 0) {
      err = 0;
    } else if (p->exited > 0) { /* reap them here: no loop turn needed */
      uv_mutex_unlock(&p->lock);
      p->kind->reap(p);
      uv_mutex_lock(&p->lock);
    } else if (here && timeout_ms != 0 &&
               (p->live > 0 || p->kind->reaps_on_loop)) {
      err = PBL_EDEADLK; /* only this thread's loop could finish it; a
                            zero timeout only looks (UV_ETIMEDOUT) */
    } else {
      uint64_t now = uv_hrtime();
      if (now >= deadline)
        err = UV_ETIMEDOUT;
      else if (deadline == UINT64_MAX)
        uv_cond_wait(&p->join_cv, &p->lock);
      else
        (void)uv_cond_timedwait(&p->join_cv, &p->lock, deadline - now);
    }
  }
  uv_mutex_unlock(&p->lock);
  if (err == 0 && here && !p->gone)
    pbl__pool_settle(p); /* we may have reaped: let the loop go */
  return err;
}

int pbl_pool_stats(pbl_pool_t *p, pbl_pool_stats_t *out) {
  if (!PBL__VALID_POOL(p) || out == NULL)
    return UV_EINVAL;
  uv_mutex_lock(&p->lock);
  pbl__pool_absorb(p); /* counted queued */
  uv_mutex_lock(&p->done_lock);
  *out = p->ends;
  out->wait_ns_total = pbl__pool_ticks_ns(p->ends.wait_ns_total);
  out->wait_ns_max = pbl__pool_ticks_ns(p->ends.wait_ns_max);
  out->queued = p->st.queued;
  out->respawned = p->st.respawned;
  out->running = p->taken - p->finished;
  out->workers = p->kind->workers(p);
  uv_mutex_unlock(&p->done_lock);
  uv_mutex_unlock(&p->lock);
  return 0;
}

void pbl_pool_free(pbl_pool_t *p) {
  if (!PBL__VALID_POOL(p))
    return;
  uv_mutex_lock(&p->lock);
  if (p->gone) { /* the binding closed: nothing is left but memory */
    uv_mutex_unlock(&p->lock);
    pool_destroy(p);
    return;
  }
  p->freed = true;
  unlock_and_settle(p, stop_locked(p));
}
