/* The pool's run queue: accepting items (single tasks and map chunks),
 * handing jobs to workers, and taking finished items back for the loop to
 * drain. Every function here that says "lock" runs with p->lock held.
 * See pool.h for the design notes.
 */
#include "pool.h"

int pbl__pool_item_new(pbl_pool_t *p, const pbl__task_ops *plain,
                       const pbl__task_ops *timed, size_t size,
                       const pbl_task_opts *opts, bool want_ref,
                       pbl__pool_item **out) {
  bool has_timeout = opts != NULL && opts->timeout_ms > 0;
  pbl_task_t *t;
  int err = pbl__task_new(p->loop, has_timeout ? timed : plain, size, opts,
                          want_ref, &t);
  if (err != 0)
    return err;
  *out = (pbl__pool_item *)t;
  return 0;
}

int pbl__pool_submit_task(void *p, pbl_task_t *t) {
  pbl__pool_item *it = (pbl__pool_item *)t;
  return pbl__pool_submit(p, &it, 1, 1);
}

void pbl__pool_items_discard(pbl__pool_item **items, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (items[i] != NULL)
      pbl__task_discard(&items[i]->base);
}

bool pbl__pool_want_wake(pbl_pool_t *p) {
  return !p->async_closing && !atomic_exchange(&p->wake_pending, true);
}

void pbl__pool_wake(pbl_pool_t *p) {
  /* The loop thread wakes its own drain without a syscall: an active idle
   * handle runs it on this turn or the next, without blocking in poll
   * first. uv_async_send() would write libuv's eventfd and the loop read
   * it back, two syscalls per turn that a process pool's loop thread,
   * which submits and finishes its tasks itself, paid on every turn. */
  if (!pbl__on_loop_thread(p->loop))
    uv_async_send(&p->async);
  else if (p->draining)
    p->redrain = true; /* the drain takes it (pool.c) */
  else
    uv_idle_start(&p->kick, pbl__pool_on_kick);
}

void pbl__pool_changed(pbl_pool_t *p) {
  uv_cond_broadcast(&p->join_cv);
}

/* The pool keeps each item until drained. On the loop thread a hold does
 * (no atomic operation: the drain runs on this thread); elsewhere a
 * reference. Both before a worker can see the item (its line is then
 * still this thread's alone). Items refused are discarded whatever they
 * hold. */
static void keep(pbl__pool_item **items, size_t n, bool on_loop) {
  for (size_t i = 0; i < n; i++) {
    items[i]->held = on_loop;
    if (on_loop)
      pbl__task_hold(&items[i]->base);
    else
      pbl_task_retain(&items[i]->base);
  }
}

/* lock: links the chain first..last after `after` (NULL: at the head). */
static void link_after(pbl_pool_t *p, pbl__pool_item *after,
                       pbl__pool_item *first, pbl__pool_item *last) {
  pbl__pool_item **at = after != NULL ? &after->next : &p->queue.head;
  last->next = *at;
  *at = first;
  if (last->next == NULL)
    p->queue.tail = last;
}

/* lock: queues the chain first..last, all of lane `lane`, behind it. */
static void lane_append(pbl_pool_t *p, size_t lane, pbl__pool_item *first,
                        pbl__pool_item *last) {
  link_after(p, pbl__lanes_after(&p->lanes, lane, false), first, last);
  pbl__lanes_set_last(&p->lanes, lane, last);
}

/* lock: appends the chain `top` (pushed, newest first, priority 0) to
 * the queue. */
static void move_in(pbl_pool_t *p, pbl__pool_item *top) {
  pbl__pool_item *head = NULL, *last = top;
  size_t k = 0;
  while (top != NULL) {
    pbl__pool_item *next = top->next;
    top->next = head;
    head = top;
    top = next;
    k++;
  }
  if (k == 0)
    return;
  size_t lane;
  (void)pbl__lanes_find(&p->lanes, 0, &lane); /* lane 0 always exists */
  lane_append(p, lane, head, last);
  p->jobs += k;
  p->st.queued += k;
  p->live += k;
}

void pbl__pool_absorb(pbl_pool_t *p) {
  /* seq_cst: a worker about to sleep looks here after raising push_kick;
   * a pusher looks at push_kick after its push. One of them sees the
   * other. */
  pbl__pool_item *top = atomic_load(&p->pushed);
  if (top != NULL && top != PBL__POOL_SEALED)
    move_in(p, atomic_exchange(&p->pushed, NULL));
}

void pbl__pool_seal(pbl_pool_t *p) {
  pbl__pool_item *top = atomic_exchange(&p->pushed, PBL__POOL_SEALED);
  if (top != PBL__POOL_SEALED)
    move_in(p, top);
}

/* One item, a pool of a fast_push kind without queue_limit: pushes it
 * without the lock. The lock is taken only to kick, when the kind says no
 * worker would look at the queue again otherwise, and from another thread
 * to wake the loop of an asleep pool. */
static int push(pbl_pool_t *p, pbl__pool_item *it, uint64_t now, bool on_loop,
                pbl__kick *k) {
  it->queued = now;
  it->chunk_len = 1;
  pbl__pool_item *top = atomic_load_explicit(&p->pushed, memory_order_relaxed);
  do {
    if (top == PBL__POOL_SEALED)
      return PBL_ECLOSED;
    it->next = top;
  } while (!atomic_compare_exchange_weak_explicit(
      &p->pushed, &top, it, memory_order_seq_cst, memory_order_relaxed));
  bool kick = atomic_load(&p->push_kick); /* seq_cst: see pbl__pool_absorb */
  bool wake = !on_loop && atomic_load(&p->asleep); /* seq_cst: see settle */
  if (kick || wake) {
    uv_mutex_lock(&p->lock);
    pbl__pool_absorb(p);
    if (kick)
      *k = p->kind->kick(p);
    if (wake && pbl__pool_want_wake(p))
      pbl__pool_wake(p); /* under the lock: the async cannot be closing */
    uv_mutex_unlock(&p->lock);
  }
  return 0;
}

/* Any thread: queues items under the lock, as jobs of `chunk` items. */
static int enqueue(pbl_pool_t *p, pbl__pool_item **items, size_t n,
                   size_t chunk, uint64_t now, bool on_loop, pbl__kick *k) {
  uv_mutex_lock(&p->lock);
  if (p->state != PBL__POOL_RUNNING) {
    uv_mutex_unlock(&p->lock);
    return PBL_ECLOSED;
  }
  pbl__pool_absorb(p); /* pushed before these */
  if (p->queue_limit != 0 && p->st.queued + n > p->queue_limit) {
    uv_mutex_unlock(&p->lock);
    return UV_EAGAIN;
  }
  size_t lane; /* one priority: a submit's or a map's opts */
  int err =
      pbl__lanes_find(&p->lanes, pbl__task_priority(&items[0]->base), &lane);
  if (err != 0) {
    uv_mutex_unlock(&p->lock);
    return err;
  }
  for (size_t i = 0; i < n; i++) {
    pbl__pool_item *it = items[i];
    size_t left = n - i;
    it->queued = now;
    it->next = i + 1 < n ? items[i + 1] : NULL;
    it->chunk_len =
        i % chunk == 0 ? (uint32_t)(left < chunk ? left : chunk) : 0;
  }
  lane_append(p, lane, items[0], items[n - 1]);
  p->jobs += (n + chunk - 1) / chunk;
  p->st.queued += n;
  bool was_idle = p->live == 0;
  p->live += n;
  *k = p->kind->kick(p);
  /* Another thread cannot ref the async: the loop learns of the new work
   * at once, so it stays alive for the callback. */
  if (!on_loop && was_idle && pbl__pool_want_wake(p))
    pbl__pool_wake(p); /* under the lock: the async cannot be closing */
  uv_mutex_unlock(&p->lock);
  return 0;
}

/* Queue deadlines are armed on the loop thread: from another thread the
 * items go to the loop on qarms, with a reference each, taken before they
 * are queued (a worker may run them and the loop drain them at once).
 * Arming looks at the state: an item a worker took is left alone. */
static void arm_deadlines(pbl_pool_t *p, pbl__pool_item **items, size_t n,
                          bool on_loop) {
  if (on_loop) {
    for (size_t i = 0; i < n; i++)
      pbl__queue_deadline_arm(&items[i]->base);
    return;
  }
  uv_mutex_lock(&p->done_lock);
  for (size_t i = 0; i < n; i++) {
    items[i]->base.x->qarm_next = p->qarms;
    p->qarms = &items[i]->base;
  }
  bool wake = pbl__pool_want_wake(p);
  uv_mutex_unlock(&p->done_lock);
  if (wake)
    pbl__pool_wake(p); /* items are live: the async is not closing */
}

int pbl__pool_submit(pbl_pool_t *p, pbl__pool_item **items, size_t n,
                     size_t chunk) {
  uint64_t now = pbl__pool_ticks();
  bool on_loop = pbl__on_loop_thread(p->loop);
  keep(items, n, on_loop);
  pbl__kick k = {0, 0};
  /* One opts for every item: the first says for all. */
  bool deadlines = pbl__task_has_queue_deadline(&items[0]->base);
  bool fast = n == 1 && p->kind->fast_push && p->queue_limit == 0 &&
              pbl__task_priority(&items[0]->base) == 0 &&
              (on_loop || !deadlines);
  if (deadlines && !on_loop)
    for (size_t i = 0; i < n; i++)
      pbl_task_retain(&items[i]->base); /* qarms' */
  int err = fast ? push(p, items[0], now, on_loop, &k)
                 : enqueue(p, items, n, chunk, now, on_loop, &k);
  if (err != 0) {
    if (deadlines && !on_loop)
      for (size_t i = 0; i < n; i++)
        pbl_task_release(&items[i]->base); /* the caller discards them */
    return err;
  }
  if (deadlines)
    arm_deadlines(p, items, n, on_loop);
  if (k.signal > 0 || k.start > 0)
    p->kind->act(p, k);
  if (on_loop && !p->refd)
    pbl__pool_settle(p);
  return 0;
}

int pbl__pool_map(pbl_pool_t *p, size_t n, size_t chunksize,
                  const pbl_task_opts *opts, pbl_task_t **tasks,
                  pbl__pool_make_fn make, void *ctx) {
  if (chunksize == 0 || chunksize > UINT32_MAX)
    return UV_EINVAL;
  if (n == 0)
    return 0;
  pbl__pool_item **items = pbl__calloc(n, sizeof(*items));
  if (items == NULL)
    return UV_ENOMEM;
  int err = 0;
  for (size_t i = 0; i < n && err == 0; i++)
    err = make(p, i, opts, tasks != NULL, &items[i], ctx);
  if (err == 0)
    err = pbl__pool_submit(p, items, n, chunksize);
  if (err != 0) {
    pbl__pool_items_discard(items, n);
  } else if (tasks != NULL) {
    for (size_t i = 0; i < n; i++)
      tasks[i] = &items[i]->base;
  }
  pbl__free(items);
  return err;
}

/* lock */
pbl__pool_item *pbl__pool_take_job(pbl_pool_t *p, size_t *n) {
  pbl__pool_absorb(p);
  pbl__pool_item *job = p->queue.head;
  if (job == NULL)
    return NULL;
  size_t k = job->chunk_len;
  pbl__pool_item *last = job;
  for (size_t i = 1; i < k; i++)
    last = last->next;
  pbl__lanes_took_head(&p->lanes, last); /* a chunk is of one lane */
  p->queue.head = last->next;
  if (p->queue.head == NULL)
    p->queue.tail = NULL;
  last->next = NULL;
  p->jobs--;
  p->st.queued -= k;
  p->taken += k;
  *n = k;
  return job;
}

/* No lock: the clock is read out of the lock, which the loop thread and
 * every worker take for each task. */
bool pbl__pool_job_starts(pbl_pool_t *p, pbl__pool_item *job,
                          pbl__pool_waits *w) {
  uint64_t now = pbl__pool_ticks(), now_ns = 0;
  pbl__pool_item *timed = NULL;
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    pbl__pool_count_wait(w, now, it->queued);
    pbl__task_extra *x = it->base.x;
    if (x != NULL && x->timeout_ms > 0) {
      if (now_ns == 0)
        now_ns = uv_hrtime();
      x->started_ns = now_ns; /* one start for the chunk: a timeout per
                               * chunk */
      it->arm_next = timed;
      timed = it;
    }
  }
  if (timed == NULL)
    return false;
  uv_mutex_lock(&p->done_lock);
  while (timed != NULL) {
    pbl__pool_item *next = timed->arm_next;
    timed->arm_next = p->arms;
    p->arms = timed;
    timed = next;
  }
  bool wake = pbl__pool_want_wake(p);
  uv_mutex_unlock(&p->done_lock);
  return wake;
}

/* done */
void pbl__pool_add_waits(pbl_pool_t *p, pbl__pool_waits *w) {
  p->ends.wait_ns_total += w->total;
  if (w->max > p->ends.wait_ns_max)
    p->ends.wait_ns_max = w->max;
  w->total = w->max = 0;
}

/* done. Counts each item's end and hands the chain to the loop. */
bool pbl__pool_finish(pbl_pool_t *p, pbl__pool_item *head, size_t ran) {
  p->finished += ran;
  if (head == NULL)
    return false;
  pbl__pool_item *last = NULL;
  for (pbl__pool_item *it = head; it != NULL; it = it->next) {
    switch (pbl_task_state_of(&it->base)) {
    case PBL_DONE:
      p->ends.done++;
      break;
    case PBL_CANCELLED:
      p->ends.cancelled++;
      break;
    case PBL_TIMED_OUT:
      p->ends.timed_out++;
      break;
    case PBL_EXPIRED:
      p->ends.expired++;
      break;
    default: /* FAILED; a kind never finishes an item it did not end */
      p->ends.failed++;
      break;
    }
    last = it;
  }
  if (p->done.tail != NULL)
    p->done.tail->next = head;
  else
    p->done.head = head;
  p->done.tail = last;
  /* Mostly a send is on its way: look before the exchange, which would
   * take the line for nothing. Under done, as the drain clears it. */
  if (atomic_load_explicit(&p->wake_pending, memory_order_relaxed))
    return false;
  return pbl__pool_want_wake(p);
}

/* lock: takes the whole run queue off. Returns its first item. */
static pbl__pool_item *take_queue(pbl_pool_t *p) {
  pbl__pool_absorb(p);
  pbl__pool_item *head = p->queue.head;
  p->queue.head = p->queue.tail = NULL;
  pbl__lanes_clear(&p->lanes);
  p->jobs = 0;
  for (pbl__pool_item *it = head; it != NULL; it = it->next)
    p->st.queued--;
  return head;
}

/* lock: hands items that never left the queue to the loop. */
static bool finish_unrun(pbl_pool_t *p, pbl__pool_item *head) {
  uv_mutex_lock(&p->done_lock);
  bool wake = pbl__pool_finish(p, head, 0);
  uv_mutex_unlock(&p->done_lock);
  return wake;
}

bool pbl__pool_fail_queued(pbl_pool_t *p, int err, int code, const char *msg) {
  pbl__pool_item *head = take_queue(p);
  for (pbl__pool_item *it = head; it != NULL; it = it->next)
    pbl__task_end(&it->base, PBL_FAILED, err, NULL, pbl__failure_new(code, msg),
                  PBL__DELIVER_LATER);
  return finish_unrun(p, head);
}

bool pbl__pool_cancel_queued(pbl_pool_t *p) {
  pbl__pool_item *head = take_queue(p);
  for (pbl__pool_item *it = head; it != NULL; it = it->next)
    pbl__task_end(&it->base, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                  PBL__DELIVER_LATER);
  return finish_unrun(p, head);
}

void pbl__pool_requeue(pbl_pool_t *p, pbl__pool_item *job) {
  uint64_t now = pbl__pool_ticks();
  uint32_t k = 0;
  pbl__pool_item *last = job;
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    it->queued = now;
    it->chunk_len = 0;
    last = it;
    k++;
  }
  if (k == 0)
    return;
  job->chunk_len = k;
  /* At the front of its priority. Out of memory for its lane (it was
   * dropped once empty), at the queue's head: it was first anyway. */
  size_t lane;
  if (pbl__lanes_find(&p->lanes, pbl__task_priority(&job->base), &lane) == 0) {
    link_after(p, pbl__lanes_after(&p->lanes, lane, true), job, last);
    if (p->lanes.v[lane].last == NULL)
      pbl__lanes_set_last(&p->lanes, lane, last);
  } else {
    link_after(p, NULL, job, last);
  }
  p->jobs++;
  p->st.queued += k;
  p->taken -= k;
}
