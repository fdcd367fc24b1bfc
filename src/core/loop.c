/* The binding of the library to a uv loop: the inbox through which other
 * threads reach the loop thread, loop liveness, and the close sequence.
 *
 * Design notes.
 *
 * The inbox holds three lists (inbox.c, lock-free), served in this order
 * by a drain: tasks to take in (submissions from other threads, and
 * "started" notices from worker threads), tasks whose work finished on a
 * worker thread (ops->finished), and tasks whose callback is due. A task
 * has a link for each, so it may sit in all three at once. A poster that
 * finds its list empty sends the one uv_async_t; later posts ride on that
 * send (one uv_async_send per batch). The send happens under in_lock, and
 * the lists are sealed under it before the async closes (in_closed), so
 * no send can race with the uv_close() of the async.
 *
 * Liveness: the async is ref'd while `active` > 0 (tasks taken in and not
 * retired, and late deliveries posted on the loop thread) or while the
 * binding closes, so uv_run(UV_RUN_DEFAULT) returns once no task is left.
 *
 * Close: cancel every live task and close every member (pool); once no
 * task, member or inbox entry is left, close the async; its close callback
 * calls closed_cb. The binding's memory lives on while tasks or pools
 * still reference it.
 */
#include <stdlib.h>

#include "inbox.h"
#include "internal.h"

#define UV_MAX_THREADPOOL_SIZE 1024 /* libuv's threadpool.c */

/* libuv reads UV_THREADPOOL_SIZE once, at its pool's first use, with
 * these rules (threadpool.c, init_threads). */
unsigned pbl__uv_pool_size(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  long n = v != NULL ? atoi(v) : 4;
  if (n == 0)
    n = 1;
  if (n < 0 || n > UV_MAX_THREADPOOL_SIZE)
    n = UV_MAX_THREADPOOL_SIZE; /* libuv: a negative int read as unsigned */
  return (unsigned)n;
}

static int runq_init(pbl__runq *rq) {
  int err = uv_mutex_init(&rq->lock);
  if (err != 0)
    return err;
  QUEUE_INIT(&rq->queue);
  QUEUE_INIT(&rq->taken);
  pbl__lanes_init(&rq->lanes);
  rq->runners = 0;
  rq->max_runners = pbl__uv_pool_size();
  return 0;
}

static void runq_destroy(pbl__runq *rq) {
  pbl__lanes_free(&rq->lanes);
  uv_mutex_destroy(&rq->lock);
}

static void on_async(uv_async_t *a);
static void maybe_finish_close(pbl_loop_t *pl);
static void close_now(pbl_loop_t *pl, void (*cb)(pbl_loop_t *));

bool pbl__on_loop_thread(const pbl_loop_t *pl) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&pl->thread, &self) != 0;
}

bool pbl__loop_is_closing(const pbl_loop_t *pl) {
  return atomic_load_explicit(&((pbl_loop_t *)pl)->closing,
                              memory_order_acquire);
}

void pbl__loop_ref(pbl_loop_t *pl) {
  atomic_fetch_add_explicit(&pl->refs, 1, memory_order_relaxed);
}

void pbl__loop_unref(pbl_loop_t *pl) {
  if (atomic_fetch_sub_explicit(&pl->refs, 1, memory_order_acq_rel) != 1)
    return;
  uv_mutex_destroy(&pl->in_lock);
  runq_destroy(&pl->runq);
  pbl__task_mem_drop(pl);
  pl->magic = PBL__DEAD_MAGIC;
  pbl__free(pl);
}

/* Loop thread: the async keeps the loop alive exactly while needed. */
static void update_ref(pbl_loop_t *pl) {
  bool want = pl->active > 0 || pbl__loop_is_closing(pl);
  if (pl->closed || want == pl->async_refd)
    return;
  pl->async_refd = want;
  if (want)
    uv_ref((uv_handle_t *)&pl->async);
  else
    uv_unref((uv_handle_t *)&pl->async);
}

void pbl__loop_hold(pbl_loop_t *pl) {
  PBL__ASSERT_LOOP(pl);
  pl->active++;
  update_ref(pl);
}

void pbl__loop_drop(pbl_loop_t *pl) {
  PBL__ASSERT_LOOP(pl);
  pl->active--;
  update_ref(pl);
  maybe_finish_close(pl);
}

void pbl__loop_track(pbl_loop_t *pl, pbl_task_t *t) {
  PBL__ASSERT_LOOP(pl);
  QUEUE_INSERT_TAIL(&pl->live, &t->live);
  t->lflags |= PBL__L_LIVE;
  pbl__loop_hold(pl);
}

void pbl__loop_untrack(pbl_loop_t *pl, pbl_task_t *t) {
  PBL__ASSERT_LOOP(pl);
  QUEUE_REMOVE(&t->live);
  t->lflags &= (uint8_t)~PBL__L_LIVE;
  pbl__loop_drop(pl);
}

int pbl_loop_new(uv_loop_t *loop, pbl_loop_t **out) {
  if (loop == NULL || out == NULL)
    return UV_EINVAL;
  pbl_loop_t *pl = pbl__calloc(1, sizeof(*pl));
  if (pl == NULL)
    return UV_ENOMEM;
  int err = uv_mutex_init(&pl->in_lock);
  if (err != 0) {
    pbl__free(pl);
    return err;
  }
  err = runq_init(&pl->runq);
  if (err != 0) {
    uv_mutex_destroy(&pl->in_lock);
    pbl__free(pl);
    return err;
  }
  err = uv_async_init(loop, &pl->async, on_async);
  if (err != 0) {
    runq_destroy(&pl->runq);
    uv_mutex_destroy(&pl->in_lock);
    pbl__free(pl);
    return err;
  }
  uv_unref((uv_handle_t *)&pl->async); /* an idle binding is not work */
  pl->async.data = pl;
  pl->magic = PBL__LOOP_MAGIC;
  atomic_init(&pl->refs, 1);
  atomic_init(&pl->closing, false);
  atomic_init(&pl->close_requested, false);
  atomic_init(&pl->in_take, NULL);
  atomic_init(&pl->in_finished, NULL);
  atomic_init(&pl->in_deliver, NULL);
  atomic_init(&pl->spares, NULL);
  pl->uv = loop;
  pl->thread = uv_thread_self();
  QUEUE_INIT(&pl->live);
  QUEUE_INIT(&pl->members);
  *out = pl;
  return 0;
}

uv_loop_t *pbl_loop_uv(const pbl_loop_t *pl) {
  return PBL__VALID_LOOP(pl) ? pl->uv : NULL;
}

/* Any thread. The poster that finds its list empty wakes the loop. */
static int post(pbl_loop_t *pl, pbl_task_t *t, int list) {
  int first;
  while ((first = pbl__inbox_push(pl, list, t)) == PBL_ECLOSED) {
    /* Sealed for good once in_closed; else by a close that found another
     * list busy and unsealed them again, under in_lock: push again. */
    uv_mutex_lock(&pl->in_lock);
    bool closed = pl->in_closed;
    uv_mutex_unlock(&pl->in_lock);
    if (closed)
      return PBL_ECLOSED;
  }
  if (first == 0)
    return 0;
  uv_mutex_lock(&pl->in_lock);
  if (!pl->in_closed) /* else the lists were sealed: a drain took t */
    uv_async_send(&pl->async);
  uv_mutex_unlock(&pl->in_lock);
  return 0;
}

int pbl__loop_submit(pbl_loop_t *pl, pbl_task_t *t) {
  if (pbl__loop_is_closing(pl))
    return PBL_ECLOSED;
  if (pbl__on_loop_thread(pl)) {
    pbl__task_take_in(t);
    return 0;
  }
  return post(pl, t, PBL__IN_TAKE);
}

int pbl__loop_post_in(pbl_loop_t *pl, pbl_task_t *t) {
  return post(pl, t, PBL__IN_TAKE);
}

int pbl__loop_post_finished(pbl_loop_t *pl, pbl_task_t *t) {
  return post(pl, t, PBL__IN_FINISHED);
}

int pbl__loop_post_delivery(pbl_loop_t *pl, pbl_task_t *t) {
  return post(pl, t, PBL__IN_DELIVER);
}

/* Loop thread: everything other threads handed over since the last turn. */
static void on_async(uv_async_t *a) {
  pbl_loop_t *pl = a->data;
  bool close_req = false;
  void (*close_cb)(pbl_loop_t *) = NULL;
  if (atomic_load(&pl->close_requested)) {
    uv_mutex_lock(&pl->in_lock);
    close_req = true;
    close_cb = pl->close_req_cb;
    atomic_store(&pl->close_requested, false);
    uv_mutex_unlock(&pl->in_lock);
  }
  /* Taken in reverse order of service: a task posted to an earlier list
   * before a later one is then in this batch if the later post is (see
   * inbox.c). Posts made from here on find their list empty and send
   * again. */
  pbl_task_t *batch[PBL__IN_LISTS];
  for (int i = PBL__IN_LISTS; i-- > 0;)
    batch[i] = pbl__inbox_take(pl, i);
  for (int i = 0; i < PBL__IN_LISTS; i++) {
    pbl_task_t *t = batch[i];
    pl->taking_in = i == PBL__IN_TAKE;
    while (t != NULL) {
      pbl_task_t *next = pbl__inbox_next(t, i); /* t may be freed below */
      if (i == PBL__IN_TAKE)
        pbl__task_take_in(t);
      else if (i == PBL__IN_FINISHED)
        t->ops->finished(t);
      else
        pbl__task_deliver(t);
      t = next;
    }
    if (i == PBL__IN_TAKE && pl->after_take != NULL) {
      /* A kind may start what it took in together (thread-task.c). */
      void (*after)(pbl_loop_t *) = pl->after_take;
      pl->taking_in = false;
      pl->after_take = NULL;
      after(pl);
    }
  }
  pl->taking_in = false;
  if (close_req)
    close_now(pl, close_cb);
  maybe_finish_close(pl);
}

void pbl__loop_member_add(pbl_loop_t *pl, pbl__member *m) {
  PBL__ASSERT_LOOP(pl);
  QUEUE_INSERT_TAIL(&pl->members, &m->link);
  pbl__loop_ref(pl);
}

void pbl__loop_member_gone(pbl_loop_t *pl, pbl__member *m) {
  PBL__ASSERT_LOOP(pl);
  QUEUE_REMOVE(&m->link);
  maybe_finish_close(pl);
  pbl__loop_unref(pl);
}

static void on_async_closed(uv_handle_t *h) {
  pbl_loop_t *pl = h->data;
  void (*cb)(pbl_loop_t *) = pl->closed_cb;
  pl->closed = true;
  if (cb != NULL)
    cb(pl);
  pbl__loop_unref(pl); /* the binding's own reference */
}

static void maybe_finish_close(pbl_loop_t *pl) {
  if (!pbl__loop_is_closing(pl) || pl->closed || pl->active > 0 ||
      !QUEUE_EMPTY(&pl->live) || !QUEUE_EMPTY(&pl->members))
    return;
  uv_mutex_lock(&pl->in_lock);
  bool busy = pl->in_closed || atomic_load(&pl->close_requested) ||
              !pbl__inbox_seal_empty(pl);
  if (!busy)
    pl->in_closed = true;
  uv_mutex_unlock(&pl->in_lock);
  if (!busy)
    uv_close((uv_handle_t *)&pl->async, on_async_closed);
}

static void close_now(pbl_loop_t *pl, void (*cb)(pbl_loop_t *)) {
  if (pbl__loop_is_closing(pl))
    return;
  atomic_store_explicit(&pl->closing, true, memory_order_release);
  pl->closed_cb = cb;
  update_ref(pl);
  /* Members first: a pool's tasks are live tasks too, and the pool wants
   * to end them its own way (killing workers, joining threads). */
  QUEUE *q = QUEUE_HEAD(&pl->members);
  while (q != &pl->members) {
    pbl__member *m = QUEUE_DATA(q, pbl__member, link);
    q = q->next; /* m->close may remove m */
    m->close(m);
  }
  q = QUEUE_HEAD(&pl->live);
  while (q != &pl->live) {
    pbl_task_t *t = QUEUE_DATA(q, pbl_task_t, live);
    q = q->next;
    pbl__task_close_cancel(t);
  }
  /* Tasks still in the inbox have an async send pending: the drain takes
   * them in and cancels them. */
  maybe_finish_close(pl);
}

void pbl__loop_close_internal(pbl_loop_t *pl, void (*cb)(pbl_loop_t *)) {
  PBL__ASSERT_LOOP(pl);
  close_now(pl, cb);
}

void pbl_loop_close(pbl_loop_t *pl, void (*closed_cb)(pbl_loop_t *)) {
  if (!PBL__VALID_LOOP(pl) || pl->is_default)
    return;
  if (pbl__on_loop_thread(pl)) {
    close_now(pl, closed_cb);
    return;
  }
  uv_mutex_lock(&pl->in_lock);
  if (!pl->in_closed && !pl->close_requested) {
    pl->close_req_cb = closed_cb;
    atomic_store(&pl->close_requested, true);
    uv_async_send(&pl->async);
  }
  uv_mutex_unlock(&pl->in_lock);
}
