/* The binding's inbox from other threads: producer threads submitting
 * while the binding closes (every submit is accepted and ends, or is
 * refused with PBL_ECLOSED), task memory recycled from the loop thread to
 * producer threads (and freed when they exit), and priorities kept for
 * tasks taken in together by one drain. */
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
    int err = pbl_thread(r->pl, identity, NULL, &o, NULL);
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
      T(test_foreign_tasks_recycled),
      T(test_foreign_priorities_keep_order),
  };
  return cmocka_run_group_tests_name("inbox", tests, NULL, NULL);
}
