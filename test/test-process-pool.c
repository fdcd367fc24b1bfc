/* Process pools: results, failures, pids, max_tasks, initializers, the
 * options. Pebble's process-pool behaviours (docs/design.md, B1-B5, B16). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "process-pool-helpers.h"

/* B1: a result, a callback, a failure that does not
 * touch the next task on the same worker. */
static void test_result_and_failure(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *a = submit(p, fn_echo, "hello", 5, &o);
  pbl_task_t *b = submit(p, fn_fail_with, NULL, 0, &o);
  pbl_task_t *d = submit(p, fn_pid, NULL, 0, &o);
  pbl_task_t *e = submit(p, fn_pid, NULL, 0, &o);
  run_dry(f);
  assert_int_equal(c.calls, 4);
  assert_int_equal(c.ok, 3);
  void *res = NULL;
  assert_int_equal(pbl_task_get(a, 0, &res), 0);
  size_t len;
  assert_ptr_equal(pbl_task_bytes(a, &len), res);
  assert_int_equal(len, 5);
  assert_memory_equal(res, "hello", 5);
  assert_int_equal((uintptr_t)res % 16, 0);
  assert_int_equal(pbl_task_error(b), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(b), 42);
  assert_string_equal(pbl_task_message(b), "bad thing 7");
  assert_int_equal(pid_result(d), pid_result(e)); /* one worker */
  assert_int_equal(pbl_task_pid(d), pid_result(d));
  assert_int_equal(pbl_task_pid(b), pid_result(d));
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_task_release(d);
  pbl_task_release(e);
  pool_free_and_run(f, p);
}

/* B2: five tasks on two workers use exactly two pids. */
static void test_two_workers_two_pids(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  pbl_task_t *t[5];
  uint32_t ms = 50; /* long enough that one worker cannot take all */
  for (int i = 0; i < 5; i++)
    t[i] = submit(p, fn_sleep_ms, &ms, sizeof(ms), NULL);
  run_dry(f);
  pbl_pool_t *q = new_ppool_n(f, 2, 0);
  pbl_task_t *u[5];
  for (int i = 0; i < 5; i++)
    u[i] = submit(q, fn_pid, NULL, 0, NULL);
  run_dry(f);
  int pids[2] = {0, 0};
  int distinct = 0;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    int pid = pbl_task_pid(t[i]);
    assert_true(pid > 0);
    if (pid != pids[0] && pid != pids[1] && distinct < 2)
      pids[distinct++] = pid;
    assert_true(pid == pids[0] || pid == pids[1]);
    pbl_task_release(t[i]);
  }
  assert_int_equal(distinct, 2);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(pid_result(u[i]), pbl_task_pid(u[i]));
    pbl_task_release(u[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 2);
  assert_int_equal(st.done, 5);
  assert_int_equal(st.respawned, 0);
  pbl_pool_free(q);
  pool_free_and_run(f, p);
}

/* B3: one worker, max_tasks 2, four tasks: two pids, and the
 * second worker counts as a respawn. */
static void test_max_tasks(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 2);
  pbl_task_t *t[4];
  for (int i = 0; i < 4; i++)
    t[i] = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  for (int i = 0; i < 4; i++)
    assert_int_equal(pbl_task_error(t[i]), 0);
  assert_int_equal(pid_result(t[0]), pid_result(t[1]));
  assert_int_equal(pid_result(t[2]), pid_result(t[3]));
  assert_int_not_equal(pid_result(t[0]), pid_result(t[2]));
  assert_false(pid_alive(pid_result(t[0]))); /* retired and reaped */
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  assert_int_equal(st.done, 4);
  for (int i = 0; i < 4; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

/* B4: the initializer runs first in every worker, respawns
 * included, and max_tasks does not count it. */
static void test_initializer(void **state) {
  F(state);
  char arg[] = "set by init";
  pbl_pool_opts o = {.workers = 1,
                     .max_tasks = 1,
                     .process_init = fn_init_keep,
                     .init_arg = arg,
                     .init_len = 11};
  pbl_pool_t *p = new_ppool(f, &o);
  memset(arg, '#', 11); /* copied by the call: workers start later */
  pbl_task_t *t[3];
  for (int i = 0; i < 3; i++)
    t[i] = submit(p, fn_init_seen, NULL, 0, NULL);
  run_dry(f);
  for (int i = 0; i < 3; i++) {
    size_t len;
    const void *b = pbl_task_bytes(t[i], &len);
    assert_int_equal(pbl_task_error(t[i]), 0);
    assert_int_equal(len, 11);
    assert_memory_equal(b, "set by init", 11);
  }
  assert_int_not_equal(pbl_task_pid(t[0]), pbl_task_pid(t[1]));
  assert_int_not_equal(pbl_task_pid(t[1]), pbl_task_pid(t[2]));
  for (int i = 0; i < 3; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

/* B5, done better: a failing initializer fails the queued tasks
 * at once with its words, and no worker starts until a task arrives. */
static void test_failing_initializer(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 2, .process_init = fn_init_fail};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t[4];
  for (int i = 0; i < 4; i++)
    t[i] = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f); /* returns: nothing spins */
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_FAILED);
    assert_int_equal(pbl_task_error(t[i]), PBL_EFAILED);
    assert_int_equal(pbl_task_fail_code(t[i]), 7);
    assert_string_equal(pbl_task_message(t[i]), "init says no");
    pbl_task_release(t[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 0); /* none started in their place */
  assert_int_equal(st.failed, 4);
  uint64_t respawned = st.respawned;
  /* A new task starts a worker again, and fails the same way. */
  pbl_task_t *u = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_error(u), PBL_EFAILED);
  assert_string_equal(pbl_task_message(u), "init says no");
  pbl_task_release(u);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_true(st.respawned <= respawned + 2);
  pool_free_and_run(f, p);
}

/* B16: a task may start a child process of its own. */
static void test_task_starts_child(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *t = submit(p, fn_run_child, NULL, 0, NULL);
  pbl_task_t *n = submit(p, fn_nested, "deep", 4, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_error(t), 0);
  assert_int_equal(pid_result(t), 7);
  size_t len;
  const void *b = pbl_task_bytes(n, &len);
  assert_int_equal(pbl_task_error(n), 0);
  assert_int_equal(len, 4);
  assert_memory_equal(b, "deep", 4);
  pbl_task_release(t);
  pbl_task_release(n);
  pool_free_and_run(f, p);
}

static int not_registered(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 0;
}

static void test_bad_arguments(void **state) {
  F(state);
  pbl_pool_t *p = NULL;
  pbl_pool_opts bad = {.kill_grace_ms = -1};
  assert_int_equal(pbl_process_pool_new(NULL, NULL, &p), UV_EINVAL);
  assert_int_equal(pbl_process_pool_new(f->pl, NULL, NULL), UV_EINVAL);
  assert_int_equal(pbl_process_pool_new(f->pl, &bad, &p), UV_EINVAL);
  bad = (pbl_pool_opts){.init = identity};
  assert_int_equal(pbl_process_pool_new(f->pl, &bad, &p), UV_EINVAL);
  bad = (pbl_pool_opts){.worker_path = ""};
  assert_int_equal(pbl_process_pool_new(f->pl, &bad, &p), UV_EINVAL);
  bad = (pbl_pool_opts){.init_timeout_ms = -1};
  assert_int_equal(pbl_process_pool_new(f->pl, &bad, &p), UV_EINVAL);
  bad = (pbl_pool_opts){.process_init = not_registered};
  assert_int_equal(pbl_process_pool_new(f->pl, &bad, &p), PBL_ENOFUNC);
  assert_null(p);
  p = new_ppool_n(f, 1, 0);
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_pool_process(p, not_registered, NULL, 0, NULL, &t),
                   PBL_ENOFUNC);
  assert_int_equal(pbl_pool_process(p, NULL, NULL, 0, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_pool_process(p, fn_echo, NULL, 3, NULL, &t), UV_EINVAL);
  pbl_task_opts o = {.worker_path = "/bin/true"};
  assert_int_equal(pbl_pool_process(p, fn_echo, NULL, 0, &o, &t), UV_EINVAL);
  o = (pbl_task_opts){.timeout_ms = -1};
  assert_int_equal(pbl_pool_process(p, fn_echo, NULL, 0, &o, &t), UV_EINVAL);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, &t), UV_EINVAL);
  assert_null(t);
  pbl_pool_t *tp = new_pool(f, 1, 0); /* a thread pool takes no process */
  assert_int_equal(pbl_pool_process(tp, fn_echo, NULL, 0, NULL, &t), UV_EINVAL);
  pbl_pool_free(tp);
  pool_free_and_run(f, p);
}

/* worker_path: the pool's workers run another program. */
static void test_worker_path(void **state) {
  F(state);
  char path[4096];
  snprintf(path, sizeof(path), "%s", pbl_test_fixture_path());
  pbl_pool_opts o = {.workers = 1, .worker_path = path};
  pbl_pool_t *p = new_ppool(f, &o);
  memset(path, 0, sizeof(path)); /* copied by the call: workers start later */
  pbl_task_t *t = submit(p, fn_hello, NULL, 0, NULL);
  pbl_task_t *u = submit(p, fn_echo, "x", 1, NULL); /* not in the fixture */
  run_dry(f);
  size_t len;
  const void *b = pbl_task_bytes(t, &len);
  assert_int_equal(len, 7);
  assert_memory_equal(b, "fixture", 7);
  assert_int_equal(pbl_task_error(u), PBL_ENOFUNC);
  assert_int_equal(pbl_task_pid(t), pbl_task_pid(u));
  pbl_task_release(t);
  pbl_task_release(u);
  pool_free_and_run(f, p);
}

/* An idle pool does not keep the loop alive, with its workers up. */
static void test_idle_pool_lets_loop_go(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  run_dry(f); /* never used */
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  int pid = pid_result(t);
  assert_true(pid_alive(pid)); /* still there for the next task */
  pbl_task_t *u = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pid_result(u), pid);
  pbl_task_release(t);
  pbl_task_release(u);
  pool_free_and_run(f, p);
  assert_false(pid_alive(pid));
}

/* A pool worker that leaked exits cleanly when its pool closes; its
 * leak report must reach the fixture (see test-process.c's test). */
static void test_worker_leak_is_reported(void **state) {
  F(state);
  if (!pbl_test_leak_checked())
    skip();
  /* A retiring worker gets the grace to exit before it is killed, and a
   * leak checker's exit on a loaded machine can take longer than the
   * default second: killed, it would report nothing. */
  pbl_pool_opts o = {.workers = 1, .kill_grace_ms = 60000};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t = submit(p, fn_leak, "x", 1, NULL);
  assert_int_equal(pbl_pool_close(p), 0);
  run_dry(f); /* the worker exits at the close, and is reaped */
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_release(t);
  pool_free_and_run(f, p);
  if (pbl_test_take_reports(false) == 0)
    fail_msg("no leak report from the pool's worker in %s (under valgrind: "
             "is --trace-children=yes given?)",
             pbl_test_reports_dir());
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_result_and_failure),
      T(test_two_workers_two_pids),
      T(test_max_tasks),
      T(test_initializer),
      T(test_failing_initializer),
      T(test_task_starts_child),
      T(test_bad_arguments),
      T(test_worker_path),
      T(test_idle_pool_lets_loop_go),
      T(test_worker_leak_is_reported),
  };
  return cmocka_run_group_tests_name("process-pool", tests, NULL, NULL);
}
