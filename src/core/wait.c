/* Blocking waits: pbl_task_get/wait, pbl_wait_any/all.
 *
 * A waiting thread links a node into each task it waits on (under the
 * task's stripe lock) and sleeps on its own condition variable; ending a
 * task fires every waiter linked to it. No polling: a wait wakes when a
 * task ends or its deadline passes. The condition variable runs on the
 * monotonic clock (libuv's uv_cond_timedwait), so wall-clock jumps do not
 * shorten or stretch a timeout.
 */
#include <stdlib.h>

#include "internal.h"

#define NS_PER_MS 1000000ull
#define STACK_NODES 16

void pbl__waiter_fire(pbl__waiter *w) {
  uv_mutex_lock(&w->mu);
  w->fired = true;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
}

uint64_t pbl__deadline_of(int64_t timeout_ms) {
  uint64_t now = uv_hrtime();
  if (timeout_ms < 0 || (uint64_t)timeout_ms > (UINT64_MAX - now) / NS_PER_MS)
    return UINT64_MAX; /* forever, or as good as: no wrap-around */
  return now + (uint64_t)timeout_ms * NS_PER_MS;
}

/* Returns true if fired, false at the deadline. w->mu not held. */
static bool sleep_until(pbl__waiter *w, uint64_t deadline) {
  uv_mutex_lock(&w->mu);
  while (!w->fired) {
    if (deadline == UINT64_MAX) {
      uv_cond_wait(&w->cv, &w->mu);
      continue;
    }
    uint64_t now = uv_hrtime();
    if (now >= deadline)
      break;
    (void)uv_cond_timedwait(&w->cv, &w->mu, deadline - now);
  }
  bool fired = w->fired;
  uv_mutex_unlock(&w->mu);
  return fired;
}

static int waiter_init(pbl__waiter *w) {
  w->fired = false;
  int err = uv_mutex_init(&w->mu);
  if (err != 0)
    return err;
  err = uv_cond_init(&w->cv);
  if (err != 0)
    uv_mutex_destroy(&w->mu);
  return err;
}

static void waiter_destroy(pbl__waiter *w) {
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
}

/* Links n into t's waiters unless t already ended. Returns true if linked. */
static bool link_node(pbl_task_t *t, pbl__wait_node *n, pbl__waiter *w) {
  pbl__task_lock(t);
  if (pbl__task_ended(t)) {
    pbl__task_unlock(t);
    return false;
  }
  n->w = w;
  n->next = t->waiters;
  n->pprev = &t->waiters;
  if (t->waiters != NULL)
    t->waiters->pprev = &n->next;
  t->waiters = n;
  pbl__task_unlock(t);
  return true;
}

static void unlink_node(pbl_task_t *t, pbl__wait_node *n) {
  pbl__task_lock(t);
  *n->pprev = n->next;
  if (n->next != NULL)
    n->next->pprev = n->pprev;
  pbl__task_unlock(t);
}

/* true if waiting for t on this thread could never finish. */
static bool would_deadlock(const pbl_task_t *t) {
  return t->ops->needs_loop && pbl__on_loop_thread(t->loop);
}

/* 0 once t ended, UV_ETIMEDOUT, PBL_EDEADLK. */
static int wait_one(pbl_task_t *t, int64_t timeout_ms) {
  if (pbl__task_ended(t))
    return 0;
  if (timeout_ms == 0)
    return UV_ETIMEDOUT;
  if (would_deadlock(t))
    return PBL_EDEADLK;
  pbl__waiter w;
  pbl__wait_node n;
  int err = waiter_init(&w);
  if (err != 0)
    return err;
  if (link_node(t, &n, &w)) {
    sleep_until(&w, pbl__deadline_of(timeout_ms));
    unlink_node(t, &n);
  }
  waiter_destroy(&w);
  return pbl__task_ended(t) ? 0 : UV_ETIMEDOUT;
}

int pbl_task_wait(pbl_task_t *t, int64_t timeout_ms) {
  if (!PBL__VALID_TASK(t))
    return UV_EINVAL;
  return wait_one(t, timeout_ms);
}

int pbl_task_get(pbl_task_t *t, int64_t timeout_ms, void **result) {
  if (!PBL__VALID_TASK(t))
    return UV_EINVAL;
  int err = wait_one(t, timeout_ms);
  if (err != 0)
    return err;
  if (t->err == 0 && result != NULL)
    *result = t->u.result;
  return t->err;
}

static int check_tasks(pbl_task_t **ts, size_t n) {
  if (ts == NULL && n > 0)
    return UV_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!PBL__VALID_TASK(ts[i]))
      return UV_EINVAL;
  return 0;
}

int pbl_wait_all(pbl_task_t **ts, size_t n, int64_t timeout_ms) {
  int err = check_tasks(ts, n);
  if (err != 0)
    return err;
  for (size_t i = 0; i < n; i++) /* refuse before blocking on any */
    if (!pbl__task_ended(ts[i]) && timeout_ms != 0 && would_deadlock(ts[i]))
      return PBL_EDEADLK;
  uint64_t deadline = pbl__deadline_of(timeout_ms); /* <0: UINT64_MAX */
  for (size_t i = 0; i < n; i++) {
    int64_t left = -1;
    if (deadline != UINT64_MAX) {
      uint64_t now = uv_hrtime();
      left = now >= deadline ? 0 : (int64_t)((deadline - now) / NS_PER_MS);
      if (left == 0 && now < deadline)
        left = 1; /* round a sub-millisecond rest up, not down to a poll */
    }
    err = wait_one(ts[i], left);
    if (err != 0)
      return err;
  }
  return 0;
}

static bool first_ended(pbl_task_t **ts, size_t n, size_t *index) {
  for (size_t i = 0; i < n; i++) {
    if (pbl__task_ended(ts[i])) {
      if (index != NULL)
        *index = i;
      return true;
    }
  }
  return false;
}

int pbl_wait_any(pbl_task_t **ts, size_t n, int64_t timeout_ms, size_t *index) {
  int err = check_tasks(ts, n);
  if (err != 0 || n == 0)
    return err != 0 ? err : UV_EINVAL;
  if (first_ended(ts, n, index))
    return 0;
  if (timeout_ms == 0)
    return UV_ETIMEDOUT;
  bool could_finish = false;
  for (size_t i = 0; i < n; i++)
    could_finish = could_finish || !would_deadlock(ts[i]);
  if (!could_finish)
    return PBL_EDEADLK;

  pbl__wait_node stack_nodes[STACK_NODES];
  pbl__wait_node *nodes = stack_nodes;
  if (n > STACK_NODES) {
    nodes = pbl__calloc(n, sizeof(*nodes));
    if (nodes == NULL)
      return UV_ENOMEM;
  }
  pbl__waiter w;
  err = waiter_init(&w);
  if (err == 0) {
    size_t linked = 0;
    bool ended = false;
    while (linked < n && !ended) {
      ended = !link_node(ts[linked], &nodes[linked], &w);
      if (!ended)
        linked++;
    }
    if (!ended)
      sleep_until(&w, pbl__deadline_of(timeout_ms));
    for (size_t i = 0; i < linked; i++)
      unlink_node(ts[i], &nodes[i]);
    waiter_destroy(&w);
    err = first_ended(ts, n, index) ? 0 : UV_ETIMEDOUT;
  }
  if (nodes != stack_nodes)
    pbl__free(nodes);
  return err;
}
