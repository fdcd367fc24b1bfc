/* Process pools: how tasks end when their worker does not answer --
 * timeouts, cancels, workers that die, malformed data -- and what the pool
 * does next. Pebble's process-pool behaviours (docs/design.md, B6-B9). */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "process-pool-helpers.h"

/* B6: a timed-out task ends at once, its worker is
 * killed, and the next task runs in a new worker. */
static void test_timeout_replaces_worker(void **state) {
  F(state);
  pbl_pool_opts po = {.workers = 1, .kill_grace_ms = 200};
  pbl_pool_t *p = new_ppool(f, &po);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c, .timeout_ms = 100};
  pbl_task_t *a = submit(p, fn_pid, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_sleep, NULL, 0, &o);
  pbl_task_t *d = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(b), PBL_TIMED_OUT);
  assert_int_equal(pbl_task_error(b), UV_ETIMEDOUT);
  assert_int_equal(c.timed_out, 1);
  assert_int_equal(pbl_task_pid(b), pid_result(a));
  assert_false(pid_alive(pid_result(a))); /* killed and reaped */
  assert_int_not_equal(pid_result(a), pid_result(d));
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.done, 2);
  assert_int_equal(st.respawned, 1);
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_task_release(d);
  pool_free_and_run(f, p);
}

/* B8: a cancel of a running task kills its worker. */
static void test_cancel_running(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *a = submit(p, fn_pid, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_sleep, NULL, 0, &o);
  assert_true(pbl_test_run_until(&f->uv, task_running, b, 30000));
  assert_int_equal(pbl_task_cancel(b), 0);
  assert_int_equal(pbl_task_state_of(b), PBL_CANCELLED);
  assert_int_equal(pbl_task_cancel(b), 0);
  pbl_task_t *d = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(c.cancelled, 1);
  assert_int_equal(pbl_task_cancel(d), UV_EBUSY);
  assert_int_not_equal(pid_result(a), pid_result(d));
  assert_false(pid_alive(pid_result(a)));
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_task_release(d);
  pool_free_and_run(f, p);
}

/* Two long tasks submitted together to a fresh pool of two workers run
 * at once on two workers: the second does not wait in the first's socket
 * while `workers` allows another process. */
static bool both_running(void *arg) {
  pbl_task_t **t = arg;
  return pbl_task_state_of(t[0]) == PBL_RUNNING &&
         pbl_task_state_of(t[1]) == PBL_RUNNING;
}

static void test_second_task_gets_own_worker(void **state) {
  F(state);
  char go[64];
  test_path(go, sizeof(go), "go");
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  pbl_task_t *t[2];
  for (int i = 0; i < 2; i++)
    t[i] = submit(p, fn_wait_file, go, strlen(go) + 1, NULL);
  assert_true(pbl_test_run_until(&f->uv, both_running, t, 30000));
  FILE *fp = fopen(go, "w");
  assert_non_null(fp);
  fclose(fp);
  run_dry(f);
  unlink(go);
  assert_int_equal(pbl_task_error(t[0]), 0);
  assert_int_equal(pbl_task_error(t[1]), 0);
  assert_int_not_equal(pid_result(t[0]), pid_result(t[1]));
  pbl_task_release(t[0]);
  pbl_task_release(t[1]);
  pool_free_and_run(f, p);
}

/* A task cancelled while it waits on a worker behind another never
 * runs: the worker drops it before it starts, and is not killed: the task
 * before it and the next one finish on it. The task before it runs until
 * the test lets it go, so b is still waiting when it is cancelled. */
static void test_cancel_pipelined(void **state) {
  F(state);
  char path[64], go[64];
  test_path(path, sizeof(path), "skipped");
  test_path(go, sizeof(go), "go");
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  sleep_touch_in in;
  pbl_buf b_in = sleep_touch(&in, 0, path);
  pbl_task_t *a = submit(p, fn_wait_file, go, strlen(go) + 1, NULL);
  pbl_task_t *b = submit(p, fn_sleep_touch, b_in.data, b_in.len, NULL);
  pbl_task_t *d = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, a, 30000));
  assert_int_equal(pbl_task_state_of(b), PBL_PENDING);
  assert_int_equal(pbl_task_cancel(b), 0);
  FILE *fp = fopen(go, "w"); /* a may finish now */
  assert_non_null(fp);
  fclose(fp);
  run_dry(f);
  unlink(go);
  assert_int_equal(pbl_task_error(a), 0);
  assert_int_equal(pbl_task_state_of(b), PBL_CANCELLED);
  assert_false(file_exists(path)); /* its function never ran */
  assert_int_equal(pbl_task_error(d), 0);
  assert_int_equal(pid_result(a), pid_result(d)); /* nobody was killed */
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 0);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.done, 2);
  unlink(path);
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_task_release(d);
  pool_free_and_run(f, p);
}

#define NS_PER_MS 1000000ull

/* B9: a task that ignores SIGTERM still ends on its timeout,
 * and its worker dies by SIGKILL after the pool's grace -- the default of
 * its tasks' -- not before. The worker is started first, so the timeout
 * (counted from the task's start on its worker) gives it 1 s to ignore
 * SIGTERM, which takes microseconds. Lower bounds are taken from before
 * what they follow, so a slow test only makes them longer. */
static void test_ignoring_sigterm(void **state) {
  F(state);
  char path[64];
  test_path(path, sizeof(path), "ignoring");
  pbl_pool_opts po = {.workers = 1, .kill_grace_ms = 3000};
  pbl_pool_t *p = new_ppool(f, &po);
  pbl_task_t *w = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f); /* the worker is up */
  int pid = pid_result(w);
  pbl_task_release(w);
  pbl_task_opts o = {.timeout_ms = 1000};
  uint64_t submitted = uv_hrtime();
  pbl_task_t *t = submit(p, fn_ignore_term, path, strlen(path), &o);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_int_equal(pbl_task_pid(t), pid);
  assert_true(file_exists(path)); /* it ignored SIGTERM in time */
  unlink(path);
  /* Ended at once; the worker lives on for the grace (3 s from the end
   * this check follows at once). */
  assert_false(pbl_test_pid_gone(&pid));
  assert_true(pbl_test_run_until(&f->uv, pbl_test_pid_gone, &pid, 60000));
  uint64_t took = uv_hrtime() - submitted;
  assert_true(took >= (1000 + 3000 - 20) * NS_PER_MS); /* not the 1 s default */
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

static bool past(void *deadline_ns) {
  return uv_hrtime() >= *(uint64_t *)deadline_ns;
}

/* A timeout counts from the task's start on its worker: b, queued (or
 * pipelined) behind a that runs 1.5 s, has a 1 s timeout and does not
 * time out; it has that second to run once a ends. */
static void test_timeout_from_start_on_worker(void **state) {
  F(state);
  char go[64];
  test_path(go, sizeof(go), "behind-go");
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *w = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f); /* the worker is up */
  pbl_task_opts o = {.timeout_ms = 1000};
  pbl_task_t *a = submit(p, fn_wait_file, go, strlen(go) + 1, NULL);
  pbl_task_t *b = submit(p, fn_echo, "b", 1, &o);
  uint64_t deadline = uv_hrtime() + 1500 * NS_PER_MS;
  assert_true(pbl_test_run_until(&f->uv, past, &deadline, 10000));
  assert_int_equal(pbl_task_state_of(a), PBL_RUNNING);
  assert_int_equal(pbl_task_state_of(b), PBL_PENDING);
  FILE *fp = fopen(go, "w");
  assert_non_null(fp);
  fclose(fp);
  run_dry(f);
  unlink(go);
  assert_int_equal(pbl_task_error(a), 0);
  assert_int_equal(pbl_task_error(b), 0);
  assert_int_equal(pbl_task_pid(b), pid_result(w)); /* nobody was killed */
  pbl_task_release(w);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* The pool's kill_grace_ms 0 is 1000 ms, as a task's. */
static void test_pool_default_grace(void **state) {
  F(state);
  char path[64];
  test_path(path, sizeof(path), "ignoring-default");
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *t = submit(p, fn_ignore_term, path, strlen(path), NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t, 60000));
  assert_true(pbl_test_run_until(&f->uv, file_exists_cb, path, 60000));
  unlink(path);
  int pid = pbl_task_pid(t);
  uint64_t cancelled = uv_hrtime();
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_false(pbl_test_pid_gone(&pid));
  assert_true(pbl_test_run_until(&f->uv, pbl_test_pid_gone, &pid, 60000));
  uint64_t took = uv_hrtime() - cancelled;
  assert_true(took >= (1000 - 20) * NS_PER_MS);
  assert_true(took < 30000 * NS_PER_MS);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

static void expect_expired(pbl_task_t *t, int status, int sig,
                           const char *words) {
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_int_equal(pbl_task_get(t, 0, NULL), PBL_EEXPIRED);
  assert_int_equal(pbl_task_exit_status(t), status);
  assert_int_equal(pbl_task_term_signal(t), sig);
  char want[160];
  snprintf(want, sizeof(want), "worker %d %s", pbl_task_pid(t), words);
  assert_string_equal(pbl_task_message(t), want);
}

/* B7, and Pebble's hang: a worker that dies -- a signal, an exit
 * status, exit 0 in the middle of a task -- expires only that task. */
static void test_dead_workers(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *t[4];
  t[0] = submit(p, fn_exit3, NULL, 0, NULL);
  t[1] = submit(p, fn_exit0, NULL, 0, NULL);
  t[2] = submit(p, fn_segv, NULL, 0, NULL);
  t[3] = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  expect_expired(t[0], 3, 0, "exited with status 3");
  expect_expired(t[1], 0, 0, "exited with status 0 without sending a result");
  expect_expired(t[2], 0, SIGSEGV, "killed by signal 11 (SIGSEGV)");
  assert_int_equal(pbl_task_error(t[3]), 0);
  assert_int_equal(pid_result(t[3]), pbl_task_pid(t[3]));
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.expired, 3);
  assert_int_equal(st.done, 1);
  assert_int_equal(st.respawned, 3);
  for (int i = 0; i < 4; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

/* A worker killed from outside fails only its task; the task sent to it
 * behind that one is requeued, not failed. */
static void test_killed_from_outside(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *a = submit(p, fn_sleep, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, a, 30000));
  int pid = pbl_task_pid(a);
  assert_int_equal(kill(pid, SIGKILL), 0);
  run_dry(f);
  expect_expired(a, 0, SIGKILL, "killed by signal 9 (SIGKILL)");
  assert_int_equal(pbl_task_error(b), 0);
  assert_int_not_equal(pid_result(b), pid);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.done, 1);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

typedef struct {
  pbl_pool_t *p;
  pbl_task_t *second;
  int pid;
} idle_kill;

/* The first task's callback: its worker, idle now, is killed from
 * outside; a task is sent before the loop saw the death. */
static void kill_then_submit(pbl_task_t *t, void *data) {
  idle_kill *k = data;
  k->pid = pbl_task_pid(t);
  assert_int_equal(kill(k->pid, SIGKILL), 0);
  uint64_t t0 = uv_hrtime();
  while (!pbl_test_pid_gone(&k->pid) && uv_hrtime() - t0 < 10000000000ull)
    sched_yield(); /* the kernel's kill, not the loop: nothing to run */
  k->second = submit(k->p, fn_pid, NULL, 0, NULL);
}

/* An idle worker killed from outside takes no task with it: a task sent
 * to it before the loop learnt of the death never reached it, and runs on
 * the next worker. */
static void test_idle_worker_killed(void **state) {
  F(state);
  idle_kill k = {new_ppool_n(f, 1, 0), NULL, 0};
  pbl_task_opts o = {.on_done = kill_then_submit, .data = &k};
  pbl_task_t *first = submit(k.p, fn_pid, NULL, 0, &o);
  run_dry(f);
  assert_non_null(k.second);
  assert_int_equal(pbl_task_error(first), 0);
  assert_int_equal(pbl_task_state_of(k.second), PBL_DONE);
  assert_int_not_equal(pid_result(k.second), k.pid);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(k.p, &st), 0);
  assert_int_equal(st.expired, 0);
  assert_int_equal(st.done, 2);
  pbl_task_release(first);
  pbl_task_release(k.second);
  pool_free_and_run(f, k.p);
}

/* true once process `pid` is stopped (SIGSTOP took hold). */
static bool pid_stopped(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return false;
  bool stopped =
      fgets(line, sizeof(line), fp) != NULL && strstr(line, ") T ") != NULL;
  fclose(fp);
  return stopped;
}

/* A task sent to an idle worker that is killed from outside before it
 * read the call -- here the worker is stopped, so the call surely sits
 * unread in its socket -- never started: it is requeued and runs on the
 * next worker, it does not expire with the dead one. (The chaos test met
 * this as the window between a kill() and the worker's end.) */
static void test_idle_worker_killed_before_reading(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *first = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_ended, first, 30000));
  int pid = pid_result(first);
  assert_int_equal(kill(pid, SIGSTOP), 0);
  uint64_t t0 = uv_hrtime();
  while (!pid_stopped(pid) && uv_hrtime() - t0 < 10000000000ull)
    sched_yield(); /* the kernel's stop, not the loop: nothing to run */
  assert_true(pid_stopped(pid));
  pbl_task_t *second = submit(p, fn_pid, NULL, 0, NULL);
  /* RUNNING: its call was written whole to the stopped worker. */
  assert_true(pbl_test_run_until(&f->uv, task_running, second, 30000));
  assert_int_equal(pbl_task_pid(second), pid);
  assert_int_equal(kill(pid, SIGKILL), 0);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(second), PBL_DONE);
  assert_int_not_equal(pid_result(second), pid);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.expired, 0);
  assert_int_equal(st.done, 2);
  pbl_task_release(first);
  pbl_task_release(second);
  pool_free_and_run(f, p);
}

/* A worker that writes garbage: its task fails with PBL_EPROTO, the
 * worker is killed, the pool goes on. */
static void test_malformed_answer(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *a = submit(p, fn_garbage, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(a), PBL_FAILED);
  assert_int_equal(pbl_task_error(a), PBL_EPROTO);
  assert_int_equal(pbl_task_error(b), 0);
  assert_int_not_equal(pbl_task_pid(a), pid_result(b));
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* Workers that die at start (a program that is no worker): each takes
 * one task with it, and the starts slow down: no fork storm. */
static void test_dying_at_start_backs_off(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 1, .worker_path = "/bin/true"};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t[6];
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < 6; i++)
    t[i] = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_EXPIRED);
    pbl_task_release(t[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 5);    /* one start per task, no more */
  assert_true(ms >= 10 + 20 + 40 + 80); /* the waits before starts 3..6 */
  pool_free_and_run(f, p);
}

/* A worker that cannot start fails the waiting tasks with libuv's code,
 * and nothing starts again until a task arrives. */
static void test_cannot_start(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 2, .worker_path = "/nonexistent/worker"};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t[3];
  for (int i = 0; i < 3; i++)
    t[i] = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_FAILED);
    assert_int_equal(pbl_task_error(t[i]), UV_ENOENT);
    pbl_task_release(t[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 0);
  assert_int_equal(st.failed, 3);
  pool_free_and_run(f, p);
}

/* An initializer that crashes is a failing initializer. */
static void test_initializer_crashes(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 1, .process_init = fn_segv};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_non_null(strstr(pbl_task_message(t), "initializer did not finish"));
  assert_non_null(strstr(pbl_task_message(t), "(SIGSEGV)"));
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* An initializer that hangs: past init_timeout_ms its worker is killed
 * and the waiting tasks fail as for a failing initializer; no worker
 * starts again until a task arrives (then it times out again). */
static void test_initializer_times_out(void **state) {
  F(state);
  pbl_pool_opts o = {.workers = 1,
                     .process_init = fn_sleep,
                     .init_timeout_ms = 200,
                     .kill_grace_ms = 100};
  pbl_pool_t *p = new_ppool(f, &o);
  for (int round = 0; round < 2; round++) {
    pbl_task_t *t[2];
    for (int i = 0; i < 2; i++)
      t[i] = submit(p, fn_pid, NULL, 0, NULL);
    assert_true(pbl_test_run_until(&f->uv, task_ended, t[1], 20000));
    for (int i = 0; i < 2; i++) {
      assert_int_equal(pbl_task_state_of(t[i]), PBL_FAILED);
      assert_int_equal(pbl_task_error(t[i]), PBL_EFAILED);
      assert_string_equal(pbl_task_message(t[i]),
                          "initializer timed out after 200 ms");
      pbl_task_release(t[i]);
    }
    run_dry(f); /* the hung worker is reaped; nothing starts again */
    pbl_pool_stats_t st;
    assert_int_equal(pbl_pool_stats(p, &st), 0);
    assert_int_equal(st.workers, 0);
    assert_int_equal(st.failed, 2 * (round + 1));
    assert_int_equal(st.respawned, (uint64_t)round); /* the second round's */
  }
  pool_free_and_run(f, p);
}

/* A task requeued after an initializer failed is not left waiting for a
 * start that never comes (4 s for a healthy worker to start and run its
 * initializer: traced by valgrind, 1 s was too short). Here worker 1 starts
 * fine and takes a and b (pipelined); worker 2, started for c, hangs in its
 * initializer: past init_timeout_ms c fails and starts are blocked. Then a is
 * cancelled: worker 1 is killed and b, which never ran, goes back to the queue.
 * b must run on a new worker -- it arrives in the queue as a new task would --
 * not wait there for ever (a closed pool's join would hang). */
static void test_requeued_after_initializer_fails(void **state) {
  F(state);
  char path[64];
  test_path(path, sizeof(path), "init-hangs");
  pbl_pool_opts o = {.workers = 2,
                     .process_init = fn_init_hang_if,
                     .init_arg = path,
                     .init_len = strlen(path) + 1,
                     .init_timeout_ms = 4000,
                     .kill_grace_ms = 100};
  pbl_pool_t *p = new_ppool(f, &o);
  /* b waits behind a on a's worker: one chunk goes to one worker (two
   * tasks would get a worker each while a slot is free). */
  sleep_touch_in ab_in[2];
  pbl_buf ab[2] = {sleep_touch(&ab_in[0], 600000, ""),
                   sleep_touch(&ab_in[1], 0, "")};
  pbl_task_t *ab_t[2];
  assert_int_equal(
      pbl_pool_map_process(p, fn_sleep_touch, ab, 2, 2, NULL, ab_t), 0);
  pbl_task_t *a = ab_t[0], *b = ab_t[1];
  assert_true(pbl_test_run_until(&f->uv, task_running, a, 30000));
  FILE *fp = fopen(path, "w"); /* workers started from now on hang */
  assert_non_null(fp);
  fclose(fp);
  pbl_task_t *c = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_ended, c, 30000));
  assert_int_equal(pbl_task_state_of(c), PBL_FAILED);
  assert_string_equal(pbl_task_message(c),
                      "initializer timed out after 4000 ms");
  assert_int_equal(pbl_task_state_of(b), PBL_PENDING); /* behind a */
  assert_int_equal(unlink(path), 0); /* the next worker starts fine */
  assert_int_equal(pbl_task_cancel(a), 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_true(pbl_test_run_until(&f->uv, task_ended, b, 10000));
  assert_int_equal(pbl_task_state_of(b), PBL_DONE);
  assert_int_not_equal(pid_result(b), pbl_task_pid(a));
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.done, 1);
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_task_release(c);
  pool_free_and_run(f, p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_timeout_replaces_worker),
      T(test_cancel_running),
      T(test_cancel_pipelined),
      T(test_second_task_gets_own_worker),
      T(test_ignoring_sigterm),
      T(test_pool_default_grace),
      T(test_timeout_from_start_on_worker),
      T(test_dead_workers),
      T(test_killed_from_outside),
      T(test_idle_worker_killed_before_reading),
      T(test_idle_worker_killed),
      T(test_malformed_answer),
      T(test_dying_at_start_backs_off),
      T(test_cannot_start),
      T(test_initializer_crashes),
      T(test_requeued_after_initializer_fails),
      T(test_initializer_times_out),
  };
  return cmocka_run_group_tests_name("process-pool-ends", tests, NULL, NULL);
}
