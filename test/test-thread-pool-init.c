/* Thread pool initializers (docs/design.md, B4 and B5), done better than
 * Pebble: what init sets is visible to tasks, it runs again in every
 * replacement thread, and a failing one fails the waiting tasks at once with
 * its message while the pool never spins. */
#include "pool-helpers.h"

/* B4: what init sets in its thread is visible to tasks. */
static _Thread_local intptr_t init_value;
static _Atomic int init_calls;

static void *set_value(void *arg) {
  atomic_fetch_add(&init_calls, 1);
  init_value = (intptr_t)arg;
  return NULL;
}

static void *get_value(void *arg) {
  (void)arg;
  return (void *)init_value;
}

static void test_initializer_visible(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&init_calls, 0);
  pbl_pool_opts o = {.workers = 2, .init = set_value, .init_arg = (void *)7};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  pbl_task_t *ts[6];
  for (int i = 0; i < 6; i++)
    assert_int_equal(pbl_pool_thread(p, get_value, NULL, NULL, &ts[i]), 0);
  for (int i = 0; i < 6; i++) {
    void *r;
    assert_int_equal(pbl_task_get(ts[i], 10000, &r), 0);
    assert_int_equal((intptr_t)r, 7);
    pbl_task_release(ts[i]);
  }
  int calls = atomic_load(&init_calls);
  assert_true(calls >= 1 && calls <= 2);
  pool_free_and_run(f, p);
}

/* max_tasks counts tasks, not initializer runs; the replacement thread
 * runs init again. */
static void test_recycled_thread_runs_init(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&init_calls, 0);
  pbl_pool_opts o = {
      .workers = 1, .max_tasks = 3, .init = set_value, .init_arg = (void *)5};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  void *args[6] = {NULL};
  pbl_task_t *ts[6];
  assert_int_equal(pbl_pool_map_thread(p, get_value, args, 6, 1, NULL, ts), 0);
  assert_int_equal(pbl_wait_all(ts, 6, 10000), 0);
  for (int i = 0; i < 6; i++) {
    void *r;
    assert_int_equal(pbl_task_get(ts[i], 0, &r), 0);
    assert_int_equal((intptr_t)r, 5); /* init ran in each thread */
    pbl_task_release(ts[i]);
  }
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&init_calls), 2); /* 6 tasks / 3 per thread */
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  pool_free_and_run(f, p);
}

/* B5, done better than Pebble: a failing initializer fails the
 * waiting tasks at once with its message; no thread respawns until a new
 * task arrives, which gets a new try. */
static void *failing_init(void *arg) {
  (void)arg;
  atomic_fetch_add(&init_calls, 1);
  pbl_fail(7, "init broke");
  return NULL;
}

static void on_timer(uv_timer_t *t) {
  (void)t;
}

static bool no_workers(void *arg) {
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(arg, &st), 0);
  return st.workers == 0;
}

static void test_failing_initializer(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&init_calls, 0);
  pbl_pool_opts o = {.workers = 2, .init = failing_init};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  pool_cb_count c = {0};
  pbl_task_opts to = {.on_done = count_cb, .data = &c};
  pbl_task_t *ts[5];
  void *args[5] = {NULL};
  /* All five at once: a failure cannot meet a task scheduled after it. */
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 5, 1, &to, ts), 0);
  /* On the loop thread: failing needs no loop turn either. */
  assert_int_equal(pbl_wait_all(ts, 5, 10000), 0);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(pbl_task_state_of(ts[i]), PBL_FAILED);
    assert_int_equal(pbl_task_error(ts[i]), PBL_EFAILED);
    assert_int_equal(pbl_task_fail_code(ts[i]), 7);
    assert_string_equal(pbl_task_message(ts[i]), "init broke");
    pbl_task_release(ts[i]);
  }
  /* Both threads it started have run init and left. */
  assert_true(pbl_test_run_until(&f->uv, no_workers, p, 10000));
  int calls = atomic_load(&init_calls);
  assert_true(calls >= 1 && calls <= 2);
  /* A quiet while: the pool must not spin up threads on its own. */
  uv_timer_t timer;
  uv_timer_init(&f->uv, &timer);
  uv_timer_start(&timer, on_timer, 200, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&f->uv, UV_RUN_DEFAULT);
  assert_int_equal(atomic_load(&init_calls), calls);
  assert_int_equal(c.calls, 5);
  assert_int_equal(c.failed, 5);
  /* A new task: a new thread, a new try. */
  pbl_task_t *t;
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, &t), 0);
  assert_int_equal(pbl_task_wait(t, 10000), 0);
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_int_equal(atomic_load(&init_calls), calls + 1);
  pbl_task_release(t);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.failed, 6);
  assert_true(st.respawned >= 1);
  pool_free_and_run(f, p);
}

/* A task pushed from the loop thread just as the initializer of the only
 * thread fails (it spins until a deadline the loop thread knows, then
 * fails) ends too: failed with that message, or by the next thread's. */
enum { MEET_N = 1000, MEET_SPIN_NS = 20000 };
static _Atomic uint64_t init_started;

static void *spin_then_fail(void *arg) {
  (void)arg;
  uint64_t t0 = uv_hrtime();
  atomic_store(&init_started, t0);
  while (uv_hrtime() < t0 + MEET_SPIN_NS)
    ;
  pbl_fail(7, "init broke");
  return NULL;
}

static void test_push_meets_failing_init(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_opts o = {.workers = 1, .init = spin_then_fail};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  for (int i = 0; i < MEET_N; i++) {
    atomic_store(&init_started, 0);
    pbl_task_t *ts[2];
    assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, &ts[0]), 0);
    uint64_t t0, give_up = uv_hrtime() + 10000000000u; /* 10 s */
    while ((t0 = atomic_load(&init_started)) == 0 && uv_hrtime() < give_up)
      ;
    assert_true(t0 != 0);
    uint64_t at = t0 + MEET_SPIN_NS - 1000 + (uint64_t)(i % 400) * 5;
    while (uv_hrtime() < at)
      ;
    assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, &ts[1]), 0);
    assert_int_equal(pbl_wait_all(ts, 2, 10000), 0);
    for (int j = 0; j < 2; j++) {
      assert_int_equal(pbl_task_fail_code(ts[j]), 7);
      pbl_task_release(ts[j]);
    }
    assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* both drained */
  }
  pool_free_and_run(f, p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_initializer_visible),
      T(test_recycled_thread_runs_init),
      T(test_failing_initializer),
      T(test_push_meets_failing_init),
  };
  return cmocka_run_group_tests_name("thread-pool-init", tests, NULL, NULL);
}
