/* Pool life cycle: close, stop and join (docs/design.md, B11-B14), done
 * better than Pebble: stop leaves no task pending, join says PBL_EDEADLK
 * where it could never finish, and an idle pool keeps no loop alive. */
#include "pool-helpers.h"

/* B11: close completes ten queued tasks. */
static void test_close_completes_queued(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  for (int i = 0; i < 10; i++)
    assert_int_equal(pbl_pool_thread(p, gated, &g, &o, NULL), 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, NULL), PBL_ECLOSED);
  pbl_test_gate_open(&g);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  assert_int_equal(c.calls, 10);
  assert_int_equal(c.ok, 10);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* B12, done better than Pebble: stop leaves no task pending:
 * queued ones end cancelled at once, the running one is flagged. */
static void test_stop_leaves_none_pending(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *ts[10];
  for (int i = 0; i < 10; i++)
    assert_int_equal(pbl_pool_thread(p, until_cancelled, NULL, &o, &ts[i]), 0);
  assert_int_equal(pbl_pool_stop(p), 0);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(pbl_task_state_of(ts[i]), PBL_CANCELLED);
    assert_int_equal(pbl_task_error(ts[i]), UV_ECANCELED);
  }
  assert_int_equal(c.calls, 0);          /* never inside the call */
  assert_int_equal(pbl_pool_stop(p), 0); /* again: nothing more */
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, NULL), PBL_ECLOSED);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 10);
  assert_int_equal(c.cancelled, 10);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.cancelled, 10);
  assert_int_equal(st.queued + st.running + st.workers, 0);
  for (int i = 0; i < 10; i++)
    pbl_task_release(ts[i]);
  pool_free_and_run(f, p);
}

/* B13: join on a running pool is a usage error. On the loop
 * thread, a join that needs callbacks delivered is PBL_EDEADLK, but a
 * zero timeout is a look, as for pbl_task_wait. */
static void test_join_rules_on_loop_thread(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  assert_int_equal(pbl_pool_join(p, 0), UV_EINVAL);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_int_equal(pbl_pool_join(p, 100), UV_EINVAL);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 100), PBL_EDEADLK);
  assert_int_equal(pbl_pool_join(p, -1), PBL_EDEADLK);
  assert_int_equal(pbl_pool_join(p, 0), UV_ETIMEDOUT); /* only looks */
  pbl_test_gate_open(&g);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  assert_int_equal(pbl_pool_join(p, -1), 0);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* B13 on the default loop, so this thread is not the loop
 * thread: two long tasks, close, join(400 ms) times out; stop + join
 * then succeeds. The pool is made from this (foreign) thread too. */
static void test_join_timeout_then_stop(void **state) {
  (void)state;
  pbl_loop_t *dl = pbl_default_loop();
  assert_non_null(dl);
  size_t threads = pbl_test_count_threads();
  pbl_pool_opts o = {.workers = 2};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(dl, &o, &p), 0);
  pbl_task_t *ts[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pbl_pool_thread(p, until_cancelled, NULL, NULL, &ts[i]),
                     0);
  assert_int_equal(pbl_pool_join(p, 0), UV_EINVAL);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 400), UV_ETIMEDOUT);
  assert_int_equal(pbl_pool_join(p, 0), UV_ETIMEDOUT);
  assert_int_equal(pbl_pool_stop(p), 0);
  /* As good as forever: the deadline must not wrap around to the past. */
  assert_int_equal(pbl_pool_join(p, INT64_MAX), 0);
  assert_true(pool_test_threads_back_to(threads)); /* all joined */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pbl_task_state_of(ts[i]), PBL_CANCELLED);
    pbl_task_release(ts[i]);
  }
  pbl_pool_free(p);
}

/* A pool's own thread cannot join it. */
static void *join_own_pool(void *arg) {
  pbl_pool_t *p = arg;
  (void)pbl_pool_close(p);
  return (void *)(intptr_t)pbl_pool_join(p, 1000);
}

static void test_join_from_own_thread(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_task_t *t;
  assert_int_equal(pbl_pool_thread(p, join_own_pool, p, NULL, &t), 0);
  void *r;
  assert_int_equal(pbl_task_get(t, 10000, &r), 0);
  assert_int_equal((intptr_t)r, PBL_EDEADLK);
  pbl_task_release(t);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pool_free_and_run(f, p);
}

/* B14: stop called from inside a task. */
typedef struct {
  pbl_pool_t *pool;
  pbl_test_gate gate; /* opened once the other tasks are queued */
  int err;            /* pbl_pool_stop's, asserted on the main thread */
  bool cancelled;     /* pbl_cancelled() right after it */
} stop_arg;

static void *stop_own_pool(void *arg) {
  stop_arg *a = arg;
  pbl_test_gate_pass(&a->gate);
  a->err = pbl_pool_stop(a->pool);
  a->cancelled = pbl_cancelled(); /* its own task is stopped too */
  return NULL;
}

static void test_stop_from_task(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  stop_arg a = {.pool = p, .err = -1};
  pbl_test_gate_init(&a.gate);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *first;
  assert_int_equal(pbl_pool_thread(p, stop_own_pool, &a, &o, &first), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), 0);
  pbl_test_gate_open(&a.gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 5);
  assert_int_equal(c.cancelled, 5); /* the stopper's own task included */
  assert_int_equal(a.err, 0);
  assert_true(a.cancelled);
  assert_int_equal(pbl_task_state_of(first), PBL_CANCELLED);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, NULL), PBL_ECLOSED);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_task_release(first);
  pbl_test_gate_destroy(&a.gate);
  pool_free_and_run(f, p);
}

/* B14: stop called from a callback. */
typedef struct {
  pbl_pool_t *pool;
  int calls;
  int refused;
} stopper;

static void stop_in_cb(pbl_task_t *t, void *data) {
  stopper *s = data;
  (void)t;
  if (s->calls++ == 0) {
    assert_int_equal(pbl_pool_stop(s->pool), 0);
    if (pbl_pool_thread(s->pool, identity, NULL, NULL, NULL) == PBL_ECLOSED)
      s->refused++;
    assert_int_equal(pbl_pool_join(s->pool, 1000), PBL_EDEADLK);
  }
}

static void test_stop_from_callback(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  stopper s = {.pool = p};
  pbl_task_opts o = {.on_done = stop_in_cb, .data = &s};
  assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.refused, 1);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pool_free_and_run(f, p);
}

/* An idle pool does not keep the loop alive; a closed one does until its
 * threads are joined. */
static void test_idle_pool_keeps_no_loop_alive(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* returns at once */
  pbl_task_t *t;
  assert_int_equal(pbl_pool_thread(p, serial_fn, NULL, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_release(t);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 1); /* idle, alive, and not keeping us */
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pool_free_and_run(f, p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_close_completes_queued),
      T(test_stop_leaves_none_pending),
      T(test_join_rules_on_loop_thread),
      cmocka_unit_test(test_join_timeout_then_stop),
      T(test_join_from_own_thread),
      T(test_stop_from_task),
      T(test_stop_from_callback),
      T(test_idle_pool_keeps_no_loop_alive),
  };
  return cmocka_run_group_tests_name("thread-pool-close", tests, NULL, NULL);
}
