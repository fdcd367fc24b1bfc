/* Thread pools: Python Pebble's thread-pool scenarios (docs/design.md, B1-B5,
 * B10-B14) and the pool rules (docs/design.md, R12): workers and recycling, the
 * initializer, close/stop/join/free, queue_limit, timeouts, cancel,
 * stats, and where pools may be used from. */
#include "pool-helpers.h"

#include <string.h>

/* B1: one task, its result and its callback. */
static void test_single_task(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *t;
  int two = 2;
  assert_int_equal(pbl_pool_thread(p, identity, &two, &o, &t), 0);
  void *res = NULL;
  /* On the loop thread: the worker settles it, no loop turn needed. */
  assert_int_equal(pbl_task_get(t, 10000, &res), 0);
  assert_ptr_equal(res, &two);
  assert_int_equal(c.calls, 0); /* callbacks only through the loop */
  assert_int_equal(pbl_task_pid(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.ok, 1);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* B2: five tasks on two workers run on exactly two threads. The
 * first two hold until both workers are in, so both must start. */
typedef struct {
  pbl_test_gate gate;
  _Atomic int in;
} two_in;

static void *serial_after_two(void *arg) {
  two_in *g = arg;
  if (atomic_fetch_add(&g->in, 1) < 2) {
    pbl_test_gate_pass(&g->gate);
  }
  return (void *)(intptr_t)thread_serial();
}

static void test_five_tasks_two_threads(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  two_in g = {.in = 0};
  pbl_test_gate_init(&g.gate);
  pbl_task_t *ts[5];
  for (int i = 0; i < 5; i++)
    assert_int_equal(pbl_pool_thread(p, serial_after_two, &g, NULL, &ts[i]), 0);
  assert_true(pbl_test_gate_wait_entered(&g.gate, 2, 10000));
  pbl_test_gate_open(&g.gate);
  assert_int_equal(pbl_wait_all(ts, 5, 10000), 0);
  intptr_t seen[5];
  int distinct = 0;
  for (int i = 0; i < 5; i++) {
    void *r;
    assert_int_equal(pbl_task_get(ts[i], 0, &r), 0);
    bool dup = false;
    for (int j = 0; j < distinct; j++)
      dup = dup || seen[j] == (intptr_t)r;
    if (!dup)
      seen[distinct++] = (intptr_t)r;
    pbl_task_release(ts[i]);
  }
  assert_int_equal(distinct, 2);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 2); /* the two seen, still there */
  assert_int_equal(st.respawned, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0); /* ready once uv_run returned */
  pbl_test_gate_destroy(&g.gate);
  pool_free_and_run(f, p);
}

/* B3: one worker, max_tasks 2, four tasks: two threads. */
static void test_max_tasks_recycles(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 2);
  pbl_task_t *ts[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pbl_pool_thread(p, serial_fn, NULL, NULL, &ts[i]), 0);
  assert_int_equal(pbl_wait_all(ts, 4, 10000), 0);
  void *r[4];
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pbl_task_get(ts[i], 0, &r[i]), 0);
    pbl_task_release(ts[i]);
  }
  assert_ptr_equal(r[0], r[1]);
  assert_ptr_equal(r[2], r[3]);
  assert_ptr_not_equal(r[1], r[2]);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  assert_int_equal(st.done, 4);
  assert_int_equal(st.workers, 0);
  pool_free_and_run(f, p);
}

/* Cancel of a running task: ended at once, its flag raised; the thread
 * returns when the function does, and the pool counts it cancelled. */
static void *announce_then_until_cancelled(void *arg) {
  pbl_test_gate_pass(arg); /* open: only counts us in */
  return until_cancelled(NULL);
}

static void test_cancel_running(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  pbl_test_gate_open(&g);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *t;
  assert_int_equal(
      pbl_pool_thread(p, announce_then_until_cancelled, &g, &o, &t), 0);
  assert_true(pbl_test_gate_wait_entered(&g, 1, 10000));
  assert_int_equal(pbl_task_state_of(t), PBL_RUNNING);
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  assert_int_equal(pbl_task_wait(t, 0), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.cancelled, 1);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.running, 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* B1: a failed task does not affect the next on its worker. */
static void *fail_fn(void *arg) {
  (void)arg;
  pbl_fail(3, "item %d failed", 3);
  return NULL;
}

static void test_failure_isolated(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_task_t *a, *b;
  assert_int_equal(pbl_pool_thread(p, fail_fn, NULL, NULL, &a), 0);
  assert_int_equal(pbl_pool_thread(p, serial_fn, NULL, NULL, &b), 0);
  assert_int_equal(pbl_task_get(a, 10000, NULL), PBL_EFAILED);
  assert_string_equal(pbl_task_message(a), "item 3 failed");
  assert_int_equal(pbl_task_fail_code(a), 3);
  void *r;
  assert_int_equal(pbl_task_get(b, 10000, &r), 0);
  assert_non_null(r);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* B10: cancelling a queued task; its function never runs. */
static _Atomic int ran;

static void *mark_ran(void *arg) {
  (void)arg;
  atomic_fetch_add(&ran, 1);
  return NULL;
}

static void test_cancel_queued(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&ran, 0);
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *a, *b;
  assert_int_equal(pbl_pool_thread(p, gated, &g, &o, &a), 0);
  assert_int_equal(pbl_pool_thread(p, mark_ran, NULL, &o, &b), 0);
  assert_true(pbl_test_gate_wait_entered(&g, 1, 10000));
  assert_int_equal(pbl_task_cancel(b), 0);
  assert_int_equal(pbl_task_state_of(b), PBL_CANCELLED);
  assert_int_equal(pbl_task_cancel(b), 0);
  pbl_test_gate_open(&g);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(a), PBL_DONE);
  assert_int_equal(pbl_task_cancel(a), UV_EBUSY);
  assert_int_equal(c.ok, 1);
  assert_int_equal(c.cancelled, 1);
  assert_int_equal(atomic_load(&ran), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 1);
  assert_int_equal(st.cancelled, 1);
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* queue_limit counts tasks waiting for a worker. */
static void test_queue_limit(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_opts o = {.workers = 1, .queue_limit = 2};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&g, 1, 10000)); /* running now */
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), UV_EAGAIN);
  void *args[2] = {&g, &g};
  pbl_task_t *ts[2] = {NULL, NULL};
  assert_int_equal(pbl_pool_map_thread(p, gated, args, 1, 1, NULL, ts),
                   UV_EAGAIN);
  assert_null(ts[0]);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.queued, 2);
  assert_int_equal(st.running, 1);
  pbl_test_gate_open(&g);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 3);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* A timeout ends a running task at once and raises its flag; the thread
 * goes on to the next task. */
static _Atomic int saw_flag;

static void *note_cancel(void *arg) {
  until_cancelled(arg);
  atomic_store(&saw_flag, 1);
  return NULL;
}

static void test_timeout_flags_running_task(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&saw_flag, 0);
  pbl_pool_t *p = new_pool(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c, .timeout_ms = 50};
  pbl_task_t *t, *next;
  assert_int_equal(pbl_pool_thread(p, note_cancel, NULL, &o, &t), 0);
  /* A timed task's end may need the loop: no waiting here. */
  assert_int_equal(pbl_task_wait(t, 1000), PBL_EDEADLK);
  assert_int_equal(pbl_pool_thread(p, serial_fn, NULL, NULL, &next), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_int_equal(pbl_task_get(t, 0, NULL), UV_ETIMEDOUT);
  assert_int_equal(c.timed_out, 1);
  assert_int_equal(atomic_load(&saw_flag), 1);
  assert_int_equal(pbl_task_get(next, 0, NULL), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.done, 1);
  pbl_task_release(t);
  pbl_task_release(next);
  pool_free_and_run(f, p);
}

/* The timeout counts from the task's start, not from its queueing. */
static void open_gate_cb(uv_timer_t *timer) {
  pbl_test_gate_open(timer->data);
  uv_close((uv_handle_t *)timer, NULL);
}

static void test_timeout_counts_from_start(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  pbl_task_t *t;
  /* t stays queued 1.5 s, past its 1 s timeout; once the gate opens it
   * has that second to run. */
  pbl_task_opts o = {.timeout_ms = 1000};
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, &t), 0);
  uv_timer_t timer;
  uv_timer_init(&f->uv, &timer);
  timer.data = &g;
  uv_update_time(&f->uv); /* the timer counts from now, not from setup */
  uv_timer_start(&timer, open_gate_cb, 1500, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  /* it waited that long (less what libuv's coarse clock may shave) */
  assert_true(st.wait_ns_max >= (1500u - 20u) * 1000000u);
  assert_true(st.wait_ns_max <= uv_hrtime() - t0); /* and no longer */
  assert_true(st.wait_ns_total >= st.wait_ns_max);
  pbl_task_release(t);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* Stats add up: every accepted task is queued, running or counted once. */
static void test_stats_add_up(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  pbl_test_gate g;
  pbl_test_gate_init(&g);
  pbl_task_opts timed = {.timeout_ms = 30};
  pbl_task_t *cancel_me;
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, gated, &g, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&g, 2, 10000));
  for (int i = 0; i < 3; i++)
    assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, fail_fn, NULL, NULL, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, until_cancelled, NULL, &timed, NULL), 0);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, &cancel_me), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.running, 2);
  assert_int_equal(st.queued, 6);
  assert_int_equal(st.workers, 2);
  assert_int_equal(pbl_task_cancel(cancel_me), 0);
  pbl_test_gate_open(&g);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 5);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.expired, 0);
  assert_int_equal(st.queued + st.running + st.workers, 0);
  assert_int_equal(st.done + st.failed + st.timed_out + st.cancelled, 8);
  pbl_task_release(cancel_me);
  pbl_test_gate_destroy(&g);
  pool_free_and_run(f, p);
}

/* Bad arguments are UV_EINVAL, never a crash. */
static void test_bad_input(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = NULL;
  pbl_pool_opts bad = {.worker_path = "/bin/true"};
  assert_int_equal(pbl_thread_pool_new(NULL, NULL, &p), UV_EINVAL);
  assert_int_equal(pbl_thread_pool_new(f->pl, NULL, NULL), UV_EINVAL);
  assert_int_equal(pbl_thread_pool_new(f->pl, &bad, &p), UV_EINVAL);
  /* A thread cannot be killed: no grace, no initializer timeout. */
  pbl_pool_opts grace = {.kill_grace_ms = 10};
  assert_int_equal(pbl_thread_pool_new(f->pl, &grace, &p), UV_EINVAL);
  pbl_pool_opts init_timeout = {.init_timeout_ms = 10};
  assert_int_equal(pbl_thread_pool_new(f->pl, &init_timeout, &p), UV_EINVAL);
  assert_null(p);
  assert_int_equal(pbl_thread_pool_new(f->pl, NULL, &p), 0);
  pbl_task_opts neg = {.timeout_ms = -1};
  assert_int_equal(pbl_pool_thread(NULL, identity, NULL, NULL, NULL),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_thread(p, NULL, NULL, NULL, NULL), UV_EINVAL);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, &neg, NULL), UV_EINVAL);
  assert_int_equal(pbl_pool_close(NULL), UV_EINVAL);
  assert_int_equal(pbl_pool_stop(NULL), UV_EINVAL);
  assert_int_equal(pbl_pool_join(NULL, 0), UV_EINVAL);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(NULL, &st), UV_EINVAL);
  assert_int_equal(pbl_pool_stats(p, NULL), UV_EINVAL);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 0); /* threads start on demand */
  assert_int_equal(st.done + st.queued, 0);
  pbl_pool_free(NULL);
  pool_free_and_run(f, p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_single_task),
      T(test_five_tasks_two_threads),
      T(test_max_tasks_recycles),
      T(test_cancel_running),
      T(test_failure_isolated),
      T(test_cancel_queued),
      T(test_queue_limit),
      T(test_timeout_flags_running_task),
      T(test_timeout_counts_from_start),
      T(test_stats_add_up),
      T(test_bad_input),
  };
  return cmocka_run_group_tests_name("thread-pool", tests, NULL, NULL);
}
