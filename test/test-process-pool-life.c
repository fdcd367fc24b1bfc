/* Process pools at the end of their life and under concurrency: close,
 * stop, join, free, closing the binding, large arguments, several
 * scheduling threads. Every task must reach an end state, and no worker
 * process, handle or fd may be left. Pebble's process-pool scenarios by
 * behaviour (docs/design.md, B11-B15). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "process-pool-helpers.h"

static void assert_all_gone(const int *pids, int n) {
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      assert_false(pid_alive(pids[i]));
}

/* B11, B13: close completes ten queued tasks; a join after
 * uv_run() returns at once; zero worker processes are left. */
static void test_close_completes_queued(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *t[10];
  for (int i = 0; i < 10; i++)
    t[i] = submit_ms(p, 10, &o);
  assert_int_equal(pbl_pool_join(p, 0), UV_EINVAL); /* still running */
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_process(p, fn_pid, NULL, 0, NULL, NULL),
                   PBL_ECLOSED);
  assert_int_equal(pbl_pool_join(p, 0), UV_ETIMEDOUT); /* a look */
  assert_int_equal(pbl_pool_join(p, 10), PBL_EDEADLK); /* needs this loop */
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  assert_int_equal(c.ok, 10);
  int pids[10];
  for (int i = 0; i < 10; i++) {
    pids[i] = pbl_task_pid(t[i]);
    pbl_task_release(t[i]);
  }
  assert_all_gone(pids, 10);
  pbl_test_assert_no_children();
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 0);
  assert_int_equal(st.done, 10);
  pool_free_and_run(f, p);
}

/* B12, B13: stop cancels queued tasks and kills running ones
 * at once; none stays pending; no worker is left after the join. */
static void test_stop_leaves_none_pending(void **state) {
  F(state);
  pbl_pool_opts po = {.workers = 4, .kill_grace_ms = 200};
  pbl_pool_t *p = new_ppool(f, &po);
  pbl_task_t *t[10];
  for (int i = 0; i < 10; i++)
    t[i] = submit(p, fn_ignore_term, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t[0], 30000));
  assert_int_equal(pbl_pool_stop(p), 0);
  for (int i = 0; i < 10; i++) /* at once, before any loop turn */
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
  assert_int_equal(pbl_pool_process(p, fn_pid, NULL, 0, NULL, NULL),
                   PBL_ECLOSED);
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  int pids[10];
  for (int i = 0; i < 10; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
    pids[i] = pbl_task_pid(t[i]);
    pbl_task_release(t[i]);
  }
  assert_all_gone(pids, 10);
  pbl_test_assert_no_children();
  pool_free_and_run(f, p);
}

/* B13 on the default loop, so this thread is not the loop
 * thread: two long tasks, close, join(300 ms) times out; stop + join then
 * succeeds. */
static void test_join_timeout_then_stop(void **state) {
  (void)state;
  pbl_loop_t *dl = pbl_default_loop();
  assert_non_null(dl);
  pbl_pool_opts o = {.workers = 2, .kill_grace_ms = 200};
  pbl_pool_t *p;
  assert_int_equal(pbl_process_pool_new(dl, &o, &p), 0);
  pbl_task_t *t[2];
  for (int i = 0; i < 2; i++)
    t[i] = submit(p, fn_sleep, NULL, 0, NULL);
  assert_int_equal(pbl_pool_join(p, 0), UV_EINVAL);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 300), UV_ETIMEDOUT);
  assert_int_equal(pbl_pool_stop(p), 0);
  assert_int_equal(pbl_pool_join(p, 20000), 0);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
    int pid = pbl_task_pid(t[i]);
    assert_true(pid == 0 || !pid_alive(pid)); /* 0: it never started */
    pbl_task_release(t[i]);
  }
  pbl_pool_free(p);
}

/* B14: a callback that stops its pool; later schedules fail. */
typedef struct {
  pbl_pool_t *pool;
  int calls, refused;
} stopper;

static void stop_in_cb(pbl_task_t *t, void *data) {
  stopper *s = data;
  (void)t;
  s->calls++;
  assert_int_equal(pbl_pool_stop(s->pool), 0);
  if (pbl_pool_process(s->pool, fn_pid, NULL, 0, NULL, NULL) == PBL_ECLOSED)
    s->refused++;
}

static void test_stop_from_callback(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  stopper s = {p, 0, 0};
  pbl_task_opts o = {.on_done = stop_in_cb, .data = &s};
  pbl_task_t *a = submit(p, fn_pid, NULL, 0, &o);
  pbl_task_t *b = submit(p, fn_sleep, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_error(a), 0);
  assert_int_equal(pbl_task_state_of(b), PBL_CANCELLED);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.refused, 1);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* B15: a 100 MiB argument is echoed intact; stop while
 * such arguments are in flight does not hang. */
enum { BIG = 100 << 20 };

static void test_large_data(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  unsigned char *big = malloc(BIG);
  assert_non_null(big);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (unsigned char)(i * 2654435761u >> 13);
  pbl_task_t *t = submit(p, fn_echo, big, BIG, NULL);
  run_dry(f);
  size_t len;
  const void *b = pbl_task_bytes(t, &len);
  assert_int_equal(pbl_task_error(t), 0);
  assert_int_equal(len, BIG);
  assert_memory_equal(b, big, BIG);
  pbl_task_release(t);

  pbl_task_t *u[4];
  for (int i = 0; i < 4; i++)
    u[i] = submit(p, fn_echo, big, BIG, NULL);
  free(big); /* copied by the call */
  assert_true(pbl_test_run_until(&f->uv, task_running, u[0], 30000));
  assert_int_equal(pbl_pool_stop(p), 0);
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  for (int i = 0; i < 4; i++) {
    assert_true(pbl_task_state_of(u[i]) >= PBL_DONE);
    pbl_task_release(u[i]);
  }
  pool_free_and_run(f, p);
}

/* Freeing a busy pool stops it; the loop finishes the job. */
static void test_free_busy_pool(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  pbl_task_t *t[4];
  for (int i = 0; i < 4; i++)
    t[i] = submit(p, fn_sleep, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t[0], 30000));
  pool_free_and_run(f, p);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
    pbl_task_release(t[i]);
  }
  pbl_test_assert_no_children();
}

/* Closing the binding under a busy pool ends every task and reaps every
 * worker; the pool's memory waits for pbl_pool_free(). Its own loop: the
 * fixture's binding would be closed twice. */
static int closed_calls;

static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closed_calls++;
}

static void test_close_binding_busy(void **state) {
  (void)state;
  size_t fds = pbl_test_count_fds();
  uv_loop_t uv;
  pbl_loop_t *pl;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  pbl_pool_opts po = {.workers = 2};
  pbl_pool_t *p;
  assert_int_equal(pbl_process_pool_new(pl, &po, &p), 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *t[5];
  for (int i = 0; i < 5; i++)
    t[i] = submit(p, fn_sleep, NULL, 0, &o);
  assert_true(pbl_test_run_until(&uv, task_running, t[0], 30000));
  closed_calls = 0;
  pbl_loop_close(pl, on_closed);
  for (int i = 0; i < 5; i++)
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
  assert_int_equal(pbl_pool_process(p, fn_pid, NULL, 0, NULL, NULL),
                   PBL_ECLOSED);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(c.cancelled, 5);
  pbl_test_assert_no_children();
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_free(p);
  for (int i = 0; i < 5; i++)
    pbl_task_release(t[i]);
  assert_int_equal(uv_loop_close(&uv), 0);
  assert_int_equal(pbl_test_count_fds(), fds);
}

/* Stats add up: every task is counted once in its end. */
static void test_stats_add_up(void **state) {
  F(state);
  pbl_pool_opts po = {.workers = 2, .kill_grace_ms = 200};
  pbl_pool_t *p = new_ppool(f, &po);
  pbl_task_opts slow = {.timeout_ms = 100};
  pbl_task_t *t[8];
  t[0] = submit(p, fn_pid, NULL, 0, NULL);
  t[1] = submit(p, fn_pid, NULL, 0, NULL);
  t[2] = submit(p, fn_fail_with, NULL, 0, NULL);
  t[3] = submit(p, fn_sleep, NULL, 0, &slow);
  t[4] = submit(p, fn_exit3, NULL, 0, NULL);
  t[5] = submit(p, fn_sleep, NULL, 0, NULL);
  t[6] = submit_ms(p, 20, NULL);
  t[7] = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t[5], 30000));
  assert_int_equal(pbl_task_cancel(t[5]), 0);
  run_dry(f);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 4);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.running, 0);
  assert_true(st.respawned >= 1); /* replacements start on demand */
  assert_true(st.wait_ns_total > 0);
  assert_true(st.wait_ns_max <= st.wait_ns_total);
  for (int i = 0; i < 8; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

/* queue_limit counts tasks waiting for a worker (before the loop turns
 * no worker has taken any): past it a call is refused and nothing of it
 * is made, queued or run; a map is taken whole or not at all (the limit
 * counts its inputs); once the queue drained, tasks are taken again. */
static void test_queue_limit(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 1, .queue_limit = 2};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *a = submit(p, fn_pid, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_pid, NULL, 0, NULL);
  pbl_task_t *refused = NULL;
  assert_int_equal(pbl_pool_process(p, fn_pid, NULL, 0, NULL, &refused),
                   UV_EAGAIN);
  assert_null(refused);
  pbl_buf one = {"x", 1};
  pbl_task_t *ts[3] = {NULL, NULL, NULL};
  assert_int_equal(pbl_pool_map_process(p, fn_echo, &one, 1, 1, NULL, ts),
                   UV_EAGAIN);
  assert_null(ts[0]);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.queued, 2);
  run_dry(f);
  assert_int_equal(pbl_task_error(a), 0);
  assert_int_equal(pbl_task_error(b), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 2); /* the refused ones never ran */
  assert_int_equal(st.queued, 0);
  /* All or none: three inputs do not fit, two do. */
  pbl_buf in[3] = {{"a", 1}, {"b", 1}, {"c", 1}};
  assert_int_equal(pbl_pool_map_process(p, fn_echo, in, 3, 1, NULL, ts),
                   UV_EAGAIN);
  for (int i = 0; i < 3; i++)
    assert_null(ts[i]);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(pbl_pool_map_process(p, fn_echo, in, 2, 1, NULL, ts), 0);
  run_dry(f);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 4);
  for (int i = 0; i < 2; i++) {
    size_t len;
    const char *r = pbl_task_bytes(ts[i], &len);
    assert_int_equal(len, 1);
    assert_int_equal(r[0], "ab"[i]);
    pbl_task_release(ts[i]);
  }
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* Several threads schedule at once, some waiting for their tasks. */
enum { SCHEDULERS = 4, PER_THREAD = 100 };

typedef struct {
  pbl_pool_t *pool;
  pbl_task_opts *opts;
  int errors, waited_ok;
} sched_arg;

static void scheduler(void *arg) {
  sched_arg *a = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    pbl_task_t *t = NULL;
    bool keep = i % 10 == 0;
    uint32_t v = (uint32_t)i * 2;
    if (pbl_pool_process(a->pool, fn_fail_odd, &v, sizeof(v), a->opts,
                         keep ? &t : NULL) != 0) {
      a->errors++;
      continue;
    }
    if (keep) {
      void *r = NULL;
      if (pbl_task_get(t, 30000, &r) == 0 && memcmp(r, &v, sizeof(v)) == 0)
        a->waited_ok++;
      pbl_task_release(t);
    }
  }
}

typedef struct {
  pool_cb_count *c;
  int want;
} calls_at_least;

static bool enough_calls(void *arg) {
  calls_at_least *w = arg;
  return w->c->calls >= w->want;
}

static void test_schedule_from_many_threads(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  uv_thread_t th[SCHEDULERS];
  sched_arg args[SCHEDULERS];
  for (int i = 0; i < SCHEDULERS; i++) {
    args[i] = (sched_arg){.pool = p, .opts = &o};
    assert_int_equal(uv_thread_create(&th[i], scheduler, &args[i]), 0);
  }
  calls_at_least w = {&c, SCHEDULERS * PER_THREAD};
  assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 60000));
  for (int i = 0; i < SCHEDULERS; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(args[i].errors, 0);
    assert_int_equal(args[i].waited_ok, PER_THREAD / 10);
  }
  assert_int_equal(c.ok, SCHEDULERS * PER_THREAD);
  pool_free_and_run(f, p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_close_completes_queued),
      T(test_stop_leaves_none_pending),
      cmocka_unit_test(test_join_timeout_then_stop),
      T(test_stop_from_callback),
      T(test_large_data),
      T(test_free_busy_pool),
      cmocka_unit_test(test_close_binding_busy),
      T(test_stats_add_up),
      T(test_queue_limit),
      T(test_schedule_from_many_threads),
  };
  return cmocka_run_group_tests_name("process-pool-life", tests, NULL, NULL);
}
