/* One-shot process tasks: results, failures, dead workers, the registry,
 * worker programs, bad input. This program is its own worker. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "process-fns.h"

/* Runs t's loop until every task retired; returns t. */
static pbl_task_t *run(pbl_test_fixture *f, pbl_process_fn fn, const void *in,
                       size_t len, const pbl_task_opts *o) {
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_process(f->pl, fn, in, len, o, &t), 0);
  assert_non_null(t);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(pbl_task_state_of(t) >= PBL_DONE);
  return t;
}

static void test_result_bytes(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_echo, "hello world", 11, NULL);
  void *result = NULL;
  assert_int_equal(pbl_task_get(t, 0, &result), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  size_t len = 0;
  const void *bytes = pbl_task_bytes(t, &len);
  assert_ptr_equal(bytes, result);
  assert_int_equal(len, 11);
  assert_memory_equal(bytes, "hello world", 11);
  assert_int_equal((uintptr_t)bytes % 16, 0); /* malloc alignment */
  assert_true(pbl_task_pid(t) > 0);
  assert_string_equal(pbl_task_message(t), "done");
  pbl_task_release(t);
}

static void test_empty_input(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_echo, NULL, 0, NULL);
  size_t len = 99;
  assert_int_equal(pbl_task_error(t), 0);
  assert_non_null(pbl_task_bytes(t, &len));
  assert_int_equal(len, 0);
  pbl_task_release(t);
}

static void test_fail_message(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_fail_with, "x", 1, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_get(t, 0, NULL), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(t), 42);
  assert_string_equal(pbl_task_message(t), "bad thing 7");
  assert_null(pbl_task_bytes(t, NULL));
  pbl_task_release(t);

  t = run(f, fn_fail_plain, NULL, 0, NULL);
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(t), 5);
  assert_non_null(strstr(pbl_task_message(t), "fn_fail_plain"));
  assert_non_null(strstr(pbl_task_message(t), "returned 5"));
  pbl_task_release(t);

  t = run(f, fn_fail_then_ok, NULL, 0, NULL); /* pbl_fail wins */
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(t), 9);
  assert_string_equal(pbl_task_message(t), "late");
  pbl_task_release(t);
}

/* A worker that dies expires its task with what killed it. */
static void expect_expired(pbl_test_fixture *f, pbl_process_fn fn, int status,
                           int sig, const char *words) {
  pbl_task_t *t = run(f, fn, NULL, 0, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_int_equal(pbl_task_get(t, 0, NULL), PBL_EEXPIRED);
  assert_int_equal(pbl_task_exit_status(t), status);
  assert_int_equal(pbl_task_term_signal(t), sig);
  int pid = pbl_task_pid(t);
  assert_true(pid > 0);
  char want[160];
  snprintf(want, sizeof(want), "worker %d %s", pid, words);
  assert_string_equal(pbl_task_message(t), want);
  pbl_task_release(t);
}

static void test_dead_workers(void **state) {
  F(state);
  expect_expired(f, fn_abort, 0, SIGABRT, "killed by signal 6 (SIGABRT)");
  expect_expired(f, fn_segv, 0, SIGSEGV, "killed by signal 11 (SIGSEGV)");
  expect_expired(f, fn_exit3, 3, 0, "exited with status 3");
  expect_expired(f, fn_exit0, 0, 0,
                 "exited with status 0 without sending a result");
}

typedef struct {
  int calls;
  pbl_task_t *task;
  bool on_loop;
  uv_thread_t loop_thread;
} cb_record;

static void on_done(pbl_task_t *t, void *data) {
  cb_record *r = data;
  uv_thread_t self = uv_thread_self();
  r->calls++;
  r->task = t;
  r->on_loop = uv_thread_equal(&self, &r->loop_thread) != 0;
}

static void test_callback_once_on_loop(void **state) {
  F(state);
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = on_done, .data = &r};
  pbl_task_t *t = run(f, fn_echo, "a", 1, &o);
  assert_int_equal(r.calls, 1);
  assert_ptr_equal(r.task, t);
  assert_true(r.on_loop);
  pbl_task_release(t);
}

/* Fire and forget: the task is the library's, valid in its callback. */
static void test_fire_and_forget(void **state) {
  F(state);
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = on_done, .data = &r};
  assert_int_equal(pbl_process(f->pl, fn_echo, "a", 1, &o, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
}

static int not_registered(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 0;
}

static void test_unregistered(void **state) {
  F(state);
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_process(f->pl, not_registered, NULL, 0, NULL, &t),
                   PBL_ENOFUNC);
  assert_null(t);
  /* Registered here, not in the worker program. */
  pbl_task_opts o = {.worker_path = pbl_test_fixture_path()};
  t = run(f, fn_echo, "a", 1, &o);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), PBL_ENOFUNC);
  assert_non_null(strstr(pbl_task_message(t), "\"fn_echo\""));
  pbl_task_release(t);
}

static void test_registry(void **state) {
  (void)state;
  static pbl_process_reg dup = {"fn_echo", fn_echo, NULL};
  assert_int_equal(pbl_process_register(&dup), UV_EEXIST);
  static pbl_process_reg bad1 = {NULL, fn_echo, NULL};
  static pbl_process_reg bad2 = {"x", NULL, NULL};
  static pbl_process_reg bad3 = {"", fn_echo, NULL};
  assert_int_equal(pbl_process_register(NULL), UV_EINVAL);
  assert_int_equal(pbl_process_register(&bad1), UV_EINVAL);
  assert_int_equal(pbl_process_register(&bad2), UV_EINVAL);
  assert_int_equal(pbl_process_register(&bad3), UV_EINVAL);
}

static void test_worker_path(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_hello, NULL, 0, NULL);
  size_t len;
  const void *p = pbl_task_bytes(t, &len);
  assert_int_equal(len, 4);
  assert_memory_equal(p, "main", 4);
  pbl_task_release(t);

  pbl_task_opts o = {.worker_path = pbl_test_fixture_path()};
  t = run(f, fn_hello, NULL, 0, &o);
  p = pbl_task_bytes(t, &len);
  assert_int_equal(len, 7);
  assert_memory_equal(p, "fixture", 7);
  pbl_task_release(t);

  o.worker_path = "/nonexistent/worker";
  t = run(f, fn_hello, NULL, 0, &o);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), UV_ENOENT);
  pbl_task_release(t);

  o.worker_path = "/bin/true"; /* not a pebble worker: no answer */
  t = run(f, fn_hello, NULL, 0, &o);
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_non_null(strstr(pbl_task_message(t), "without sending a result"));
  pbl_task_release(t);
}

/* A worker program whose main() skips pbl_worker_main() would run as the
 * program and start workers of its own: it exits instead. */
static void test_forgetful_worker(void **state) {
  F(state);
  pbl_task_opts o = {.worker_path = pbl_test_fixture_path()};
  assert_int_equal(setenv("PBL_FIXTURE_FORGETFUL", "1", 1), 0);
  pbl_task_t *t = run(f, fn_hello, NULL, 0, &o);
  assert_int_equal(unsetenv("PBL_FIXTURE_FORGETFUL"), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_int_equal(pbl_task_exit_status(t), 71); /* EX_OSERR */
  pbl_task_release(t);
}

static void test_malformed_answer(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_garbage, NULL, 0, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), PBL_EPROTO);
  pbl_task_release(t);
}

/* The worker marker is not inherited: a task can start tasks. */
static void test_nested(void **state) {
  F(state);
  pbl_task_t *t = run(f, fn_nested, "deep", 4, NULL);
  assert_int_equal(pbl_task_error(t), 0);
  size_t len;
  const void *p = pbl_task_bytes(t, &len);
  assert_int_equal(len, 4);
  assert_memory_equal(p, "deep", 4);
  pbl_task_release(t);
}

static void test_bad_input(void **state) {
  F(state);
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_process(NULL, fn_echo, NULL, 0, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_process(f->pl, NULL, NULL, 0, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_process(f->pl, fn_echo, NULL, 5, NULL, &t), UV_EINVAL);
  pbl_task_opts o = {.timeout_ms = -1};
  assert_int_equal(pbl_process(f->pl, fn_echo, "a", 1, &o, &t), UV_EINVAL);
  o = (pbl_task_opts){.kill_grace_ms = -5};
  assert_int_equal(pbl_process(f->pl, fn_echo, "a", 1, &o, &t), UV_EINVAL);
  o = (pbl_task_opts){.worker_path = ""};
  assert_int_equal(pbl_process(f->pl, fn_echo, "a", 1, &o, &t), UV_EINVAL);
  assert_null(t);
  assert_int_equal(pbl_worker_main(0, NULL), 0);
  char *argv[] = {"prog", "--other", NULL};
  assert_int_equal(pbl_worker_main(2, argv), 0);
}

/* A wait on the loop thread for a task that needs the loop refuses. */
static void test_deadlock_refused(void **state) {
  F(state);
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_echo, "a", 1, NULL, &t), 0);
  assert_int_equal(pbl_task_get(t, 1000, NULL), PBL_EDEADLK);
  assert_int_equal(pbl_task_get(t, 0, NULL), UV_ETIMEDOUT); /* a poll */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_get(t, 1000, NULL), 0);
  pbl_task_release(t);
}

typedef struct {
  pbl_task_t *t;
  int err;
  size_t len;
} getter;

static void get_on_thread(void *arg) {
  getter *g = arg;
  void *result = NULL;
  g->err = pbl_task_get(g->t, 60000, &result);
  if (g->err == 0)
    pbl_task_bytes(g->t, &g->len);
}

/* Another thread blocks in pbl_task_get while the loop runs. */
static void test_get_from_thread(void **state) {
  F(state);
  getter g = {NULL, -1, 0};
  assert_int_equal(pbl_process(f->pl, fn_echo, "abc", 3, NULL, &g.t), 0);
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, get_on_thread, &g), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(g.err, 0);
  assert_int_equal(g.len, 3);
  pbl_task_release(g.t);
}

/* Submitted from another thread: reaches the loop through its inbox;
 * that thread then blocks on the result while the loop runs. */
typedef struct {
  pbl_loop_t *pl;
  int err;
  size_t len;
  _Atomic bool done;
} submitter;

static void submit_on_thread(void *arg) {
  submitter *s = arg;
  pbl_task_t *t;
  s->err = pbl_process(s->pl, fn_echo, "abcd", 4, NULL, &t);
  if (s->err == 0) {
    s->err = pbl_task_get(t, 60000, NULL);
    pbl_task_bytes(t, &s->len);
    pbl_task_release(t);
  }
  atomic_store(&s->done, true);
}

static bool submitter_done(void *arg) {
  return atomic_load(&((submitter *)arg)->done);
}

static void test_submit_from_thread(void **state) {
  F(state);
  submitter s = {.pl = f->pl, .err = -1};
  atomic_init(&s.done, false);
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, submit_on_thread, &s), 0);
  assert_true(pbl_test_run_until(&f->uv, submitter_done, &s, 60000));
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.len, 4);
}

/* A worker that leaks still answers and exits, and its task ends done:
 * only its leak report tells, and the fixture's teardown fails a test
 * that left one. This proves the reports are collected: it runs where
 * leaks are checked (ASan, valgrind with --trace-children=yes). */
static void test_worker_leak_is_reported(void **state) {
  F(state);
  if (!pbl_test_leak_checked())
    skip();
  pbl_task_t *t = run(f, fn_leak, "x", 1, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_release(t);
  if (pbl_test_take_reports(false) == 0)
    fail_msg("no leak report from the worker in %s (under valgrind: is "
             "--trace-children=yes given?)",
             pbl_test_reports_dir());
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_result_bytes),
      T(test_empty_input),
      T(test_fail_message),
      T(test_dead_workers),
      T(test_callback_once_on_loop),
      T(test_fire_and_forget),
      T(test_unregistered),
      T(test_registry),
      T(test_worker_path),
      T(test_malformed_answer),
      T(test_forgetful_worker),
      T(test_nested),
      T(test_bad_input),
      T(test_deadlock_refused),
      T(test_get_from_thread),
      T(test_submit_from_thread),
      T(test_worker_leak_is_reported),
  };
  return cmocka_run_group_tests_name("process", tests, NULL, NULL);
}
