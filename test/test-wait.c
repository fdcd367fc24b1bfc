/* Blocking waits: pbl_task_get/wait with timeouts from other threads, the
 * zero-timeout poll, PBL_EDEADLK on the loop thread, pbl_wait_any and
 * pbl_wait_all. */
#include "helpers.h"

#include <stdatomic.h>
#include <stdlib.h>

static void *gated(void *arg) {
  pbl_test_gate_pass(arg);
  return arg;
}

typedef struct {
  pbl_task_t *t;
  pbl_task_t **ts;
  size_t n;
  int64_t timeout_ms;
  int err;
  size_t index;
  uint64_t elapsed_ms;
  void *result;
} waiter_args;

static void get_on_thread(void *arg) {
  waiter_args *w = arg;
  uint64_t t0 = uv_hrtime();
  w->err = pbl_task_get(w->t, w->timeout_ms, &w->result);
  w->elapsed_ms = (uv_hrtime() - t0) / 1000000u;
}

static void any_on_thread(void *arg) {
  waiter_args *w = arg;
  uint64_t t0 = uv_hrtime();
  w->err = pbl_wait_any(w->ts, w->n, w->timeout_ms, &w->index);
  w->elapsed_ms = (uv_hrtime() - t0) / 1000000u;
}

static void all_on_thread(void *arg) {
  waiter_args *w = arg;
  uint64_t t0 = uv_hrtime();
  w->err = pbl_wait_all(w->ts, w->n, w->timeout_ms);
  w->elapsed_ms = (uv_hrtime() - t0) / 1000000u;
}

static void test_get_times_out_on_another_thread(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &t), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  waiter_args w = {.t = t, .timeout_ms = 100};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, get_on_thread, &w), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, UV_ETIMEDOUT);
  assert_true(w.elapsed_ms >= 99); /* waited its timeout */
  assert_true(w.elapsed_ms < 10000);
  assert_int_equal(pbl_task_state_of(t), PBL_RUNNING); /* not timed out */
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

static void test_get_wakes_when_the_task_ends(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &t), 0);
  waiter_args w = {.t = t, .timeout_ms = -1};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, get_on_thread, &w), 0);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_thread_join(&th), 0); /* no loop turn needed */
  assert_int_equal(w.err, 0);
  assert_ptr_equal(w.result, &gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

static void test_loop_thread_wait_is_edeadlk_poll_is_fine(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &t), 0);
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pbl_task_get(t, -1, NULL), PBL_EDEADLK);
  assert_int_equal(pbl_task_wait(t, 5000), PBL_EDEADLK);
  assert_true((uv_hrtime() - t0) / 1000000u < 1000);        /* at once */
  assert_int_equal(pbl_task_get(t, 0, NULL), UV_ETIMEDOUT); /* a poll */
  pbl_task_t *ts[1] = {t};
  size_t index;
  assert_int_equal(pbl_wait_any(ts, 1, -1, &index), PBL_EDEADLK);
  assert_int_equal(pbl_wait_all(ts, 1, -1), PBL_EDEADLK);
  assert_int_equal(pbl_wait_all(ts, 1, 0), UV_ETIMEDOUT);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_get(t, -1, NULL), 0); /* ended: no deadlock */
  assert_int_equal(pbl_wait_all(ts, 1, -1), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

static void test_wait_any_returns_the_first_ended(void **state) {
  pbl_test_fixture *f = *state;
  enum { N = 20 }; /* more than fit on the waiter's stack */
  pbl_test_gate gates[N];
  pbl_task_t *ts[N];
  for (int i = 0; i < N; i++) {
    pbl_test_gate_init(&gates[i]);
    assert_int_equal(pbl_thread(f->pl, gated, &gates[i], NULL, &ts[i]), 0);
  }
  waiter_args w = {.ts = ts, .n = N, .timeout_ms = 50};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, any_on_thread, &w), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, UV_ETIMEDOUT);
  assert_true(w.elapsed_ms >= 50);

  /* libuv's pool runs only a few of them: end task 17 by a cancel. */
  w.timeout_ms = -1;
  assert_int_equal(uv_thread_create(&th, any_on_thread, &w), 0);
  assert_int_equal(pbl_task_cancel(ts[17]), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, 0);
  assert_int_equal(w.index, 17);
  /* Several ended: the lowest index is the one reported. */
  assert_int_equal(pbl_task_cancel(ts[12]), 0);
  assert_int_equal(pbl_task_cancel(ts[5]), 0);
  assert_int_equal(uv_thread_create(&th, any_on_thread, &w), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, 0);
  assert_int_equal(w.index, 5);
  for (int i = 0; i < N; i++)
    pbl_test_gate_open(&gates[i]);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < N; i++) {
    pbl_task_release(ts[i]);
    pbl_test_gate_destroy(&gates[i]);
  }
}

static void test_wait_all_waits_for_every_task(void **state) {
  pbl_test_fixture *f = *state;
  enum { N = 3 };
  pbl_test_gate gates[N];
  pbl_task_t *ts[N];
  for (int i = 0; i < N; i++) {
    pbl_test_gate_init(&gates[i]);
    assert_int_equal(pbl_thread(f->pl, gated, &gates[i], NULL, &ts[i]), 0);
  }
  pbl_test_gate_open(&gates[0]);
  pbl_test_gate_open(&gates[2]);
  waiter_args w = {.ts = ts, .n = N, .timeout_ms = 100};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, all_on_thread, &w), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, UV_ETIMEDOUT); /* gate 1 is still shut */
  assert_true(w.elapsed_ms >= 99);
  assert_true(w.elapsed_ms < 10000);
  w.timeout_ms = -1;
  assert_int_equal(uv_thread_create(&th, all_on_thread, &w), 0);
  pbl_test_gate_open(&gates[1]);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, 0);
  for (int i = 0; i < N; i++)
    assert_true(pbl_task_state_of(ts[i]) == PBL_DONE);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < N; i++) {
    pbl_task_release(ts[i]);
    pbl_test_gate_destroy(&gates[i]);
  }
}

static void test_wait_ends_on_cancel_from_another_thread(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &t), 0);
  waiter_args w = {.t = t, .timeout_ms = -1};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, get_on_thread, &w), 0);
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(w.err, UV_ECANCELED);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

typedef struct {
  pbl_task_t *t;
  _Atomic int err;
  _Atomic bool returned;
} far_waiter;

static void wait_far(void *arg) {
  far_waiter *w = arg;
  atomic_store(&w->err, pbl_task_wait(w->t, INT64_MAX));
  atomic_store(&w->returned, true);
}

static bool waiter_returned(void *arg) {
  return atomic_load(&((far_waiter *)arg)->returned);
}

static bool task_ended(void *arg) {
  return pbl_task_state_of(arg) >= PBL_DONE;
}

/* Timeouts of centuries are as good as forever: no wrap-around in
 * nanoseconds makes them end at once. */
static void test_huge_timeouts_do_not_wrap(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_opts o = {.timeout_ms = 18446744073710}; /* 2^64 ns in ms */
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, &o, &t), 0);
  far_waiter w = {.t = t};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, wait_far, &w), 0);
  /* Neither the wait nor the task's timeout may end within 300 ms. */
  assert_false(pbl_test_run_until(&f->uv, waiter_returned, &w, 300));
  assert_false(pbl_test_run_until(&f->uv, task_ended, t, 1));
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(atomic_load(&w.err), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_t *ts[1] = {t};
  assert_int_equal(pbl_wait_all(ts, 1, INT64_MAX), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_get_times_out_on_another_thread),
      T(test_get_wakes_when_the_task_ends),
      cmocka_unit_test_setup_teardown(
          test_loop_thread_wait_is_edeadlk_poll_is_fine, pbl_test_setup,
          pbl_test_teardown),
      T(test_wait_any_returns_the_first_ended),
      T(test_wait_all_waits_for_every_task),
      cmocka_unit_test_setup_teardown(
          test_wait_ends_on_cancel_from_another_thread, pbl_test_setup,
          pbl_test_teardown),
      T(test_huge_timeouts_do_not_wrap),
  };
  return cmocka_run_group_tests_name("wait", tests, NULL, NULL);
}
