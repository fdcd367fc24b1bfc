/* The default binding: made on first use, its own loop on a background
 * thread, usable from any thread, not closable by users, and shut down
 * cleanly at exit even with a task still running. */
#include "helpers.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *identity(void *arg) {
  return arg;
}

typedef struct {
  uv_thread_t main_thread;
  _Atomic int on_main;
  pbl_test_gate called; /* open: the callback only counts its entry */
} cb_probe;

static void probe_cb(pbl_task_t *t, void *data) {
  cb_probe *p = data;
  uv_thread_t self = uv_thread_self();
  (void)t;
  if (uv_thread_equal(&self, &p->main_thread))
    atomic_fetch_add(&p->on_main, 1);
  pbl_test_gate_pass(&p->called);
}

static void test_default_loop_is_made_once(void **state) {
  (void)state;
  pbl_loop_t *a = pbl_default_loop();
  assert_non_null(a);
  assert_ptr_equal(pbl_default_loop(), a);
  assert_non_null(pbl_loop_uv(a));
}

static void test_default_loop_runs_tasks_off_the_main_thread(void **state) {
  (void)state;
  cb_probe p = {.main_thread = uv_thread_self()};
  pbl_test_gate_init(&p.called);
  pbl_test_gate_open(&p.called);
  pbl_task_opts o = {.on_done = probe_cb, .data = &p};
  pbl_task_t *t;
  int value = 3;
  assert_int_equal(pbl_thread(pbl_default_loop(), identity, &value, &o, &t), 0);
  void *result = NULL;
  assert_int_equal(pbl_task_get(t, 30000, &result), 0);
  assert_ptr_equal(result, &value);
  assert_true(pbl_test_gate_wait_entered(&p.called, 1, 30000));
  /* A callback set after the end fires too, on the loop thread. */
  assert_int_equal(pbl_task_on_done(t, NULL, NULL), UV_EALREADY);
  pbl_task_release(t);
  assert_int_equal(pbl_thread(pbl_default_loop(), identity, NULL, NULL, &t), 0);
  assert_int_equal(pbl_task_wait(t, 30000), 0);
  assert_int_equal(pbl_task_on_done(t, probe_cb, &p), 0);
  assert_true(pbl_test_gate_wait_entered(&p.called, 2, 30000));
  pbl_task_release(t);
  assert_int_equal(atomic_load(&p.on_main), 0);
  pbl_test_gate_destroy(&p.called);
}

static void test_users_cannot_close_the_default_loop(void **state) {
  (void)state;
  pbl_loop_close(pbl_default_loop(), NULL); /* does nothing */
  pbl_task_t *t;
  assert_int_equal(pbl_thread(pbl_default_loop(), identity, NULL, NULL, &t), 0);
  assert_int_equal(pbl_task_wait(t, 30000), 0);
  pbl_task_release(t);
}

static void submit_many(void *arg) {
  _Atomic int *errors = arg;
  for (int i = 0; i < 1000; i++) {
    pbl_task_t *t;
    void *result = NULL;
    if (pbl_thread(pbl_default_loop(), identity, (void *)(intptr_t)(i + 1),
                   NULL, &t) != 0) {
      atomic_fetch_add(errors, 1);
      continue;
    }
    if (pbl_task_get(t, 30000, &result) != 0 ||
        (intptr_t)result != (intptr_t)(i + 1))
      atomic_fetch_add(errors, 1);
    pbl_task_release(t);
  }
}

static void test_default_loop_from_many_threads(void **state) {
  (void)state;
  _Atomic int errors = 0;
  uv_thread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(uv_thread_create(&th[i], submit_many, &errors), 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(uv_thread_join(&th[i]), 0);
  assert_int_equal(atomic_load(&errors), 0);
}

/* ---- exit with a task still running ---- */

static void *until_cancelled(void *arg) {
  pbl_test_gate *started = arg;
  pbl_test_gate_pass(started); /* open: only counts the entry */
  while (!pbl_cancelled())
    uv_sleep(1); /* the task's own work: polls its flag, as users do */
  return NULL;
}

/* Child mode: start a task that runs until cancelled, then return from
 * main. The atexit handler must cancel it, wait for it and join. */
static int exit_with_running_task(void) {
  pbl_test_gate started;
  pbl_test_gate_init(&started);
  pbl_test_gate_open(&started);
  pbl_task_t *t;
  if (pbl_thread(pbl_default_loop(), until_cancelled, &started, NULL, &t) != 0)
    return 2;
  if (!pbl_test_gate_wait_entered(&started, 1, 30000))
    return 3;
  pbl_task_release(t);
  printf("returning from main\n");
  return 0;
}

static void *exit_seven(void *arg) {
  (void)arg;
  exit(7); /* from a task: the default loop cannot wait for it at exit */
}

/* Child mode: a thread-pool task on the default loop calls exit(7) while
 * main waits for it. */
static int exit_in_pool_task(void) {
  pbl_pool_opts po = {.workers = 1};
  pbl_pool_t *p;
  pbl_task_t *t;
  if (pbl_thread_pool_new(pbl_default_loop(), &po, &p) != 0 ||
      pbl_pool_thread(p, exit_seven, NULL, NULL, &t) != 0)
    return 2;
  pbl_task_wait(t, -1);
  return 3; /* not reached: the task exits the process */
}

typedef struct {
  int64_t exit_status;
  int term_signal;
  bool exited;
  bool guard_fired;
} child_result;

static void on_child_exit(uv_process_t *p, int64_t status, int sig) {
  child_result *r = p->data;
  r->exit_status = status;
  r->term_signal = sig;
  r->exited = true;
  uv_close((uv_handle_t *)p, NULL);
}

static void on_guard(uv_timer_t *timer) {
  child_result *r = timer->data;
  r->guard_fired = true; /* the child hangs at exit: fail, kill it */
}

/* Runs this program in `mode`; returns its exit status (-1: a signal or
 * a hang, which fails the test). */
static int64_t run_child_mode(const char *mode) {
  uv_loop_t uv;
  assert_int_equal(uv_loop_init(&uv), 0);
  char exe[4096];
  size_t len = sizeof(exe);
  assert_int_equal(uv_exepath(exe, &len), 0);
  char *args[] = {exe, (char *)mode, NULL};
  uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                   {.flags = UV_IGNORE},
                                   {.flags = UV_INHERIT_FD, .data.fd = 2}};
  child_result r = {0};
  uv_process_options_t po = {.file = exe,
                             .args = args,
                             .stdio = stdio,
                             .stdio_count = 3,
                             .exit_cb = on_child_exit};
  uv_process_t proc;
  proc.data = &r;
  assert_int_equal(uv_spawn(&uv, &proc, &po), 0);
  uv_timer_t guard;
  uv_timer_init(&uv, &guard);
  guard.data = &r;
  uv_timer_start(&guard, on_guard, 30000, 0);
  while (!r.exited && !r.guard_fired)
    uv_run(&uv, UV_RUN_ONCE);
  if (!r.exited)
    uv_process_kill(&proc, SIGKILL);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&uv), 0);
  assert_false(r.guard_fired);
  assert_int_equal(r.term_signal, 0);
  return r.exit_status;
}

static void test_exit_with_a_running_task_shuts_down(void **state) {
  (void)state;
  assert_int_equal(run_child_mode("exit-with-running-task"), 0);
}

/* exit() inside a task of the library's own thread pool: no deadlock at
 * exit, and the status is the task's. (On libuv's own pool libuv itself
 * aborts at exit: its cleanup joins its threads.) */
static void test_exit_inside_a_pool_task(void **state) {
  (void)state;
  assert_int_equal(run_child_mode("exit-in-pool-task"), 7);
}

/* A pool on the default loop, stopped and joined from this thread while
 * the loop thread is busy in another callback: the join returns only
 * after the stopped task's callback ran. */
typedef struct {
  _Atomic int calls;
  pbl_test_gate loop_busy; /* open: counts the slow callback's entry */
} stop_join_probe;

static void *spin_until_cancelled(void *arg) {
  (void)arg;
  while (!pbl_cancelled())
    uv_sleep(1);
  return NULL;
}

static void *started_then_return(void *arg) {
  pbl_test_gate_pass(arg);
  return NULL;
}

static void counting_cb(pbl_task_t *t, void *data) {
  (void)t;
  uv_sleep(100); /* a join that does not wait would return meanwhile */
  atomic_fetch_add(&((stop_join_probe *)data)->calls, 1);
}

static void slow_cb(pbl_task_t *t, void *data) {
  (void)t;
  pbl_test_gate_pass(&((stop_join_probe *)data)->loop_busy);
  uv_sleep(300); /* the loop is busy while the main thread stops */
}

static void test_join_waits_for_the_callbacks(void **state) {
  (void)state;
  stop_join_probe pr = {0};
  pbl_test_gate_init(&pr.loop_busy);
  pbl_test_gate_open(&pr.loop_busy);
  pbl_test_gate running;
  pbl_test_gate_init(&running);
  pbl_test_gate_open(&running);
  pbl_loop_t *pl = pbl_default_loop();
  pbl_pool_opts po = {.workers = 1};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(pl, &po, &p), 0);
  pbl_task_opts o = {.on_done = counting_cb, .data = &pr};
  assert_int_equal(pbl_pool_thread(p, spin_until_cancelled, NULL, &o, NULL), 0);
  pbl_task_opts s = {.on_done = slow_cb, .data = &pr};
  /* On libuv's pool: its callback runs in the binding's drain, where the
   * stopped task's callback is posted to. */
  assert_int_equal(pbl_thread(pl, started_then_return, &running, &s, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&pr.loop_busy, 1, 10000));
  assert_int_equal(pbl_pool_stop(p), 0);
  assert_int_equal(pbl_pool_join(p, -1), 0);
  assert_int_equal(atomic_load(&pr.calls), 1);
  pbl_pool_free(p);
  pbl_test_gate_destroy(&running);
  pbl_test_gate_destroy(&pr.loop_busy);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "exit-with-running-task") == 0)
    return exit_with_running_task();
  if (argc > 1 && strcmp(argv[1], "exit-in-pool-task") == 0)
    return exit_in_pool_task();
  const struct CMUnitTest tests[] = {
      /* first: it spawns, before this process has any thread */
      cmocka_unit_test(test_exit_with_a_running_task_shuts_down),
      cmocka_unit_test(test_exit_inside_a_pool_task),
      cmocka_unit_test(test_default_loop_is_made_once),
      cmocka_unit_test(test_default_loop_runs_tasks_off_the_main_thread),
      cmocka_unit_test(test_users_cannot_close_the_default_loop),
      cmocka_unit_test(test_default_loop_from_many_threads),
      cmocka_unit_test(test_join_waits_for_the_callbacks),
  };
  return cmocka_run_group_tests_name("default-loop", tests, NULL, NULL);
}
