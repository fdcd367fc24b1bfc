/* Submission from other threads: the binding's lock-free inbox and a
 * thread pool's lock-free push. Producer threads submitting while the
 * binding or the pool closes (every submit is accepted and ends, or is
 * refused with PBL_ECLOSED), task memory recycled from the loop thread to
 * producer threads (and freed when they exit), priorities kept for tasks
 * taken in together by one drain, and a push into an idle pool keeping
 * the loop running until its callback. */
#include "helpers.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "core/internal.h"

static void *identity(void *arg) {
  return arg;
}

static void count_cb(pbl_task_t *t, void *data) {
  (void)t;
  atomic_fetch_add((_Atomic int *)data, 1);
}

/* ---- submits racing the close ---- */

#define RACERS 4

/* Tasks in flight are bounded by tokens (a semaphore) that callbacks give
 * back: under valgrind the loop is far slower than the racers. */
typedef struct {
  _Atomic int callbacks;
  uv_sem_t tokens;
} race;

typedef struct {
  pbl_loop_t *pl;
  pbl_pool_t *pool; /* NULL: pbl_thread */
  race *race;
  int accepted;
  int refused;
  int other; /* any other answer: a defect */
} racer;

static void race_cb(pbl_task_t *t, void *data) {
  race *ra = data;
  (void)t;
  atomic_fetch_add(&ra->callbacks, 1);
  uv_sem_post(&ra->tokens);
}

static void submit_until_refused(void *arg) {
  racer *r = arg;
  pbl_task_opts o = {.on_done = race_cb, .data = r->race};
  for (;;) {
    uv_sem_wait(&r->race->tokens);
    int err = r->pool != NULL
                  ? pbl_pool_thread(r->pool, identity, NULL, &o, NULL)
                  : pbl_thread(r->pl, identity, NULL, &o, NULL);
    if (err == 0) {
      r->accepted++;
      continue;
    }
    uv_sem_post(&r->race->tokens);
    if (err == PBL_ECLOSED)
      r->refused++;
    else
      r->other++;
    return;
  }
}

static bool some_callbacks(void *arg) {
  return atomic_load(&((race *)arg)->callbacks) >= 2000;
}

static void test_foreign_submits_racing_close(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  /* A handle keeps the binding's memory: the racers may still call in
   * after the close completed (and must be refused). */
  pbl_task_t *keep;
  assert_int_equal(pbl_thread(pl, identity, NULL, NULL, &keep), 0);
  race ra;
  atomic_init(&ra.callbacks, 0);
  assert_int_equal(uv_sem_init(&ra.tokens, 1000), 0);
  racer r[RACERS];
  uv_thread_t th[RACERS];
  for (int i = 0; i < RACERS; i++) {
    r[i] = (racer){.pl = pl, .race = &ra};
    assert_int_equal(uv_thread_create(&th[i], submit_until_refused, &r[i]), 0);
  }
  assert_true(pbl_test_run_until(&uv, some_callbacks, &ra, 60000));
  pbl_loop_close(pl, NULL);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  int accepted = 0;
  for (int i = 0; i < RACERS; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(r[i].other, 0);
    assert_int_equal(r[i].refused, 1);
    accepted += r[i].accepted;
  }
  /* Every accepted task ended and had its callback before the close. */
  assert_int_equal(atomic_load(&ra.callbacks), accepted);
  uv_sem_destroy(&ra.tokens);
  print_message("%d tasks accepted before the close\n", accepted);
  assert_int_equal(pbl_task_state_of(keep), PBL_DONE);
  pbl_task_release(keep);
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* The pool closes while producers push into it without its lock. */
static void test_pool_pushes_racing_close(void **state) {
  F(state);
  pbl_pool_t *pool;
  pbl_pool_opts po = {.workers = 2};
  assert_int_equal(pbl_thread_pool_new(f->pl, &po, &pool), 0);
  race ra;
  atomic_init(&ra.callbacks, 0);
  assert_int_equal(uv_sem_init(&ra.tokens, 1000), 0);
  racer r[RACERS];
  uv_thread_t th[RACERS];
  for (int i = 0; i < RACERS; i++) {
    r[i] = (racer){.pl = f->pl, .pool = pool, .race = &ra};
    assert_int_equal(uv_thread_create(&th[i], submit_until_refused, &r[i]), 0);
  }
  assert_true(pbl_test_run_until(&f->uv, some_callbacks, &ra, 60000));
  assert_int_equal(pbl_pool_close(pool), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(pool, 0), 0);
  int accepted = 0;
  for (int i = 0; i < RACERS; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(r[i].other, 0);
    assert_int_equal(r[i].refused, 1);
    accepted += r[i].accepted;
  }
  assert_int_equal(atomic_load(&ra.callbacks), accepted);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(pool, &st), 0);
  assert_int_equal(st.done, (uint64_t)accepted);
  print_message("%d tasks accepted before the close\n", accepted);
  pbl_pool_free(pool);
  uv_sem_destroy(&ra.tokens);
}

/* ---- a push into an idle pool keeps the loop ---- */

typedef struct {
  pbl_pool_t *pool;
  pbl_test_gate gate;
  uv_async_t submitted; /* the only other handle keeping the loop */
  int submit_err;       /* the producer's */
  int callbacks;        /* loop thread */
  int err;              /* loop thread: the task's */
} idle_push;

static void *gated_task(void *arg) {
  pbl_test_gate_pass(arg);
  return arg;
}

static void idle_push_cb(pbl_task_t *t, void *data) {
  idle_push *ip = data;
  ip->callbacks++;
  ip->err = pbl_task_error(t);
}

static void push_then_tell(void *arg) {
  idle_push *ip = arg;
  pbl_task_opts o = {.on_done = idle_push_cb, .data = ip};
  ip->submit_err = pbl_pool_thread(ip->pool, gated_task, &ip->gate, &o, NULL);
  uv_async_send(&ip->submitted);
}

/* Once the producer has pushed, the loop's own handle goes and the task
 * may finish: only the pool can keep uv_run() going to its callback. */
static void on_submitted(uv_async_t *a) {
  idle_push *ip = a->data;
  uv_close((uv_handle_t *)a, NULL);
  pbl_test_gate_open(&ip->gate);
}

static void test_push_into_idle_pool_keeps_loop(void **state) {
  F(state);
  for (int round = 0; round < 20; round++) {
    idle_push ip = {.submit_err = -1, .callbacks = 0, .err = -1};
    pbl_pool_opts po = {.workers = 1};
    assert_int_equal(pbl_thread_pool_new(f->pl, &po, &ip.pool), 0);
    pbl_test_gate_init(&ip.gate);
    assert_int_equal(uv_async_init(&f->uv, &ip.submitted, on_submitted), 0);
    ip.submitted.data = &ip;
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, push_then_tell, &ip), 0);
    assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_thread_join(&th), 0);
    assert_int_equal(ip.submit_err, 0);
    assert_int_equal(ip.callbacks, 1); /* uv_run waited for it */
    assert_int_equal(ip.err, 0);
    assert_int_equal(pbl_pool_close(ip.pool), 0);
    assert_int_equal(pbl_pool_join(ip.pool, 10000), 0);
    pbl_pool_free(ip.pool);
    assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
    pbl_test_gate_destroy(&ip.gate);
  }
}

/* ---- task memory recycled across threads ---- */

#define WAVE_THREADS 2
#define PER_THREAD 500

typedef struct {
  pbl_loop_t *pl;
  _Atomic int *callbacks;
  int errors;
} producer;

/* Most fire and forget (the loop thread frees them); every tenth with a
 * handle, waited for and released here (then this thread may free it). */
static void produce(void *arg) {
  producer *p = arg;
  pbl_task_opts o = {.on_done = count_cb, .data = p->callbacks};
  for (intptr_t i = 0; i < PER_THREAD; i++) {
    pbl_task_t *t;
    bool keep = i % 10 == 0;
    if (pbl_thread(p->pl, identity, (void *)(i + 1), &o, keep ? &t : NULL)) {
      p->errors++;
      continue;
    }
    void *res = NULL;
    if (keep && (pbl_task_get(t, 60000, &res) != 0 || res != (void *)(i + 1)))
      p->errors++;
    if (keep)
      pbl_task_release(t);
  }
}

static bool all_called(void *arg) {
  return atomic_load((_Atomic int *)arg) == WAVE_THREADS * PER_THREAD;
}

static void test_foreign_tasks_recycled(void **state) {
  F(state);
  for (int wave = 0; wave < 3; wave++) {
    _Atomic int callbacks = 0;
    producer p[WAVE_THREADS];
    uv_thread_t th[WAVE_THREADS];
    for (int i = 0; i < WAVE_THREADS; i++) {
      p[i] = (producer){.pl = f->pl, .callbacks = &callbacks};
      assert_int_equal(uv_thread_create(&th[i], produce, &p[i]), 0);
    }
    assert_true(pbl_test_run_until(&f->uv, all_called, &callbacks, 60000));
    for (int i = 0; i < WAVE_THREADS; i++) {
      assert_int_equal(uv_thread_join(&th[i]), 0); /* frees its spares */
      assert_int_equal(p[i].errors, 0);
    }
    assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* all retired */
    /* The loop thread freed most of them: it keeps their memory for the
     * next producer (not under ASan, which must see every free). */
    if (pbl__task_mem_recycles())
      assert_non_null(atomic_load(&f->pl->spares));
  }
  /* Teardown: no thread left, and under valgrind or ASan nothing leaked
   * (the exited producers' spares were freed; the binding's go with it). */
}

/* ---- priorities of tasks taken in together ---- */

static pbl_test_gate order_gate;
static _Atomic int order_n;
static int order[16];

static void *held(void *arg) {
  pbl_test_gate_pass(arg);
  return NULL;
}

static void *record(void *arg) {
  order[atomic_fetch_add(&order_n, 1)] = (int)(intptr_t)arg;
  return NULL;
}

static const int prio[] = {0, 3, 1, 3, 7, 0, -2, 7};
#define NPRIO ((int)(sizeof(prio) / sizeof(prio[0])))

static void submit_with_priorities(void *arg) {
  producer *p = arg;
  for (intptr_t i = 0; i < NPRIO; i++) {
    pbl_task_opts o = {
        .on_done = count_cb, .data = p->callbacks, .priority = prio[i]};
    if (pbl_thread(p->pl, record, (void *)i, &o, NULL) != 0)
      p->errors++;
  }
}

static bool inbox_taken(void *arg) {
  return atomic_load(&((pbl_loop_t *)arg)->in_take) == NULL;
}

static void test_foreign_priorities_keep_order(void **state) {
  F(state);
  pbl_test_gate_init(&order_gate);
  atomic_store(&order_n, 0);
  _Atomic int callbacks = 0;
  pbl_task_opts ho = {.on_done = count_cb, .data = &callbacks};
  /* The pool's one thread (UV_THREADPOOL_SIZE=1) is held. */
  assert_int_equal(pbl_thread(f->pl, held, &order_gate, &ho, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&order_gate, 1, 10000));
  producer p = {.pl = f->pl, .callbacks = &callbacks};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, submit_with_priorities, &p), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(p.errors, 0);
  /* All were posted; once a drain took them in they are queued. */
  assert_true(pbl_test_run_until(&f->uv, inbox_taken, f->pl, 10000));
  pbl_test_gate_open(&order_gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&callbacks), NPRIO + 1);
  assert_int_equal(atomic_load(&order_n), NPRIO);
  static const int want[] = {4, 7, 1, 3, 2, 0, 5, 6}; /* by priority, FIFO */
  for (int i = 0; i < NPRIO; i++)
    assert_int_equal(order[i], want[i]);
  pbl_test_gate_destroy(&order_gate);
}

int main(void) {
  setenv("UV_THREADPOOL_SIZE", "1", 1); /* read at the pool's first use */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_foreign_submits_racing_close),
      T(test_pool_pushes_racing_close),
      T(test_push_into_idle_pool_keeps_loop),
      T(test_foreign_tasks_recycled),
      T(test_foreign_priorities_keep_order),
  };
  return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
