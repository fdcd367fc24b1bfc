/* Command tasks: end states, stdin, capture with its limit, env, cwd,
 * timeout and cancel (the command's process group dies), bad input. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static pbl_task_t *run(pbl_test_fixture *f, const char *const argv[],
                       const pbl_spawn_opts *o) {
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_spawn(f->pl, argv, o, &t), 0);
  assert_non_null(t);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(pbl_task_state_of(t) >= PBL_DONE);
  return t;
}

static void test_exit_zero_is_done(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "echo out; echo err >&2", NULL};
  pbl_task_t *t = run(f, argv, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  assert_int_equal(pbl_task_get(t, 0, NULL), 0);
  assert_int_equal(pbl_task_exit_status(t), 0);
  assert_true(pbl_task_pid(t) > 0);
  pbl_test_assert_stdout(t, "out\n");
  size_t len;
  const void *e = pbl_task_stderr(t, &len);
  assert_int_equal(len, 4);
  assert_memory_equal(e, "err\n", 4);
  assert_int_equal(pbl_task_stdout_dropped(t), 0);
  pbl_task_release(t);
}

static void test_exit_codes_fail(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "echo partial; exit 3", NULL};
  pbl_task_t *t = run(f, argv, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_int_equal(pbl_task_exit_status(t), 3);
  assert_int_equal(pbl_task_fail_code(t), 3);
  assert_int_equal(pbl_task_term_signal(t), 0);
  assert_non_null(strstr(pbl_task_message(t), "exited with status 3"));
  pbl_test_assert_stdout(t,
                         "partial\n"); /* output of a failed command is kept */
  pbl_task_release(t);
}

static void test_foreign_signal_expires(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "kill -9 $$", NULL};
  pbl_task_t *t = run(f, argv, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_int_equal(pbl_task_error(t), PBL_EEXPIRED);
  assert_int_equal(pbl_task_term_signal(t), SIGKILL);
  assert_non_null(strstr(pbl_task_message(t), "killed by signal 9 (SIGKILL)"));
  pbl_task_release(t);
}

static void test_cannot_start(void **state) {
  F(state);
  const char *missing[] = {"/nonexistent/program", NULL};
  pbl_task_t *t = run(f, missing, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), UV_ENOENT);
  pbl_task_release(t);

  const char *not_in_path[] = {"pbl-no-such-command-here", NULL};
  t = run(f, not_in_path, NULL);
  assert_int_equal(pbl_task_error(t), UV_ENOENT);
  pbl_task_release(t);

  const char *pwd[] = {"pwd", NULL};
  pbl_spawn_opts o = {.cwd = "/nonexistent/dir"};
  t = run(f, pwd, &o);
  assert_int_equal(pbl_task_error(t), UV_ENOENT);
  pbl_task_release(t);
}

static void test_capture_limit(void **state) {
  F(state);
  const char *argv[] = {
      "sh", "-c", "head -c 100000 /dev/zero; head -c 5000 /dev/zero >&2", NULL};
  pbl_spawn_opts o = {.capture_limit = 1000};
  pbl_task_t *t = run(f, argv, &o);
  assert_int_equal(pbl_task_error(t), 0); /* output never fails a command */
  size_t len;
  pbl_task_stdout(t, &len);
  assert_int_equal(len, 1000);
  assert_int_equal(pbl_task_stdout_dropped(t), 99000);
  pbl_task_stderr(t, &len);
  assert_int_equal(len, 1000);
  assert_int_equal(pbl_task_stderr_dropped(t), 4000);
  pbl_task_release(t);
}

/* The default limit keeps 16 MiB; the rest is read and dropped. */
static void test_default_limit(void **state) {
  F(state);
  const char *argv[] = {"head", "-c", "20000000", "/dev/zero", NULL};
  pbl_task_t *t = run(f, argv, NULL);
  assert_int_equal(pbl_task_error(t), 0);
  size_t len;
  pbl_task_stdout(t, &len);
  assert_int_equal(len, 16u << 20);
  assert_int_equal(pbl_task_stdout_dropped(t), 20000000 - (16u << 20));
  pbl_task_release(t);
}

static void test_stdin(void **state) {
  F(state);
  const char *cat[] = {"cat", NULL};
  pbl_spawn_opts o = {.stdin_data = "hello", .stdin_len = 5};
  pbl_task_t *t = run(f, cat, &o);
  assert_int_equal(pbl_task_error(t), 0);
  pbl_test_assert_stdout(t, "hello");
  pbl_task_release(t);

  /* 8 MiB in while 8 MiB come out: neither side stalls the other. */
  size_t n = 8u << 20;
  char *big = malloc(n);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (char)('a' + i % 26);
  o = (pbl_spawn_opts){.stdin_data = big, .stdin_len = n};
  t = run(f, cat, &o);
  size_t len;
  const void *p = pbl_task_stdout(t, &len);
  assert_int_equal(len, n);
  assert_memory_equal(p, big, n);
  pbl_task_release(t);

  /* A command that reads none of it: EPIPE, not SIGPIPE, and done. */
  const char *truecmd[] = {"true", NULL};
  t = run(f, truecmd, &o);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_release(t);
  free(big);

  /* No stdin data: the command reads an empty stdin. */
  const char *wc[] = {"wc", "-c", NULL};
  t = run(f, wc, NULL);
  pbl_test_assert_stdout(t, "0\n");
  pbl_task_release(t);
}

static void test_env_and_cwd(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "printf '%s:' \"$PBL_X\"; pwd", NULL};
  char *env[] = {"PBL_X=forty-two", "PATH=/usr/bin:/bin", NULL};
  pbl_spawn_opts o = {.env = env, .cwd = "/tmp"};
  pbl_task_t *t = run(f, argv, &o);
  assert_int_equal(pbl_task_error(t), 0);
  pbl_test_assert_stdout(t, "forty-two:/tmp\n");
  pbl_task_release(t);
}

static void test_timeout(void **state) {
  F(state);
  const char *argv[] = {"sleep", "60", NULL};
  pbl_spawn_opts o = {.task = {.timeout_ms = 200}};
  pbl_task_t *t = run(f, argv, &o);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_int_equal(pbl_task_error(t), UV_ETIMEDOUT);
  pbl_task_release(t);
}

static bool file_exists(void *path) {
  return access(path, F_OK) == 0;
}

/* A shell that ignores SIGTERM and its background child: a cancel kills
 * both, the child through the process group. */
static void test_cancel_kills_group(void **state) {
  F(state);
  char path[128], script[512];
  snprintf(path, sizeof(path), "/tmp/pbl-test-%ld-group", (long)getpid());
  unlink(path);
  snprintf(script, sizeof(script),
           "trap '' TERM; sleep 60 & echo $! > %s.tmp; mv %s.tmp %s; wait",
           path, path, path);
  const char *argv[] = {"sh", "-c", script, NULL};
  pbl_spawn_opts o = {.task = {.kill_grace_ms = 200}};
  pbl_task_t *t;
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  assert_true(pbl_test_run_until(&f->uv, file_exists, path, 60000));
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  int pid = 0;
  assert_int_equal(fscanf(fp, "%d", &pid), 1);
  fclose(fp);
  unlink(path);
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(pbl_test_run_until(&f->uv, pbl_test_pid_gone, &pid, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
}

static bool task_ended(void *t) {
  return pbl_task_state_of(t) >= PBL_DONE;
}

/* A command whose background child keeps its stdout and stderr open ends
 * within its kill grace after its exit, not when the child closes them;
 * what it printed before exiting is kept. */
static void test_background_holds_output(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "echo started; sleep 60 & exit 0", NULL};
  pbl_spawn_opts o = {.task = {.kill_grace_ms = 300}};
  pbl_task_t *t;
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  bool ended = pbl_test_run_until(&f->uv, task_ended, t, 60000);
  int pid = pbl_task_pid(t);
  if (pid > 0)
    (void)kill(-pid, SIGKILL); /* the background sleep, in the group */
  assert_true(ended);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  assert_int_equal(pbl_task_exit_status(t), 0);
  pbl_test_assert_stdout(t, "started\n");
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
}

/* Without kill_grace_ms a command's output is read for the default grace
 * (1 s) after its exit, no less, and not until a process it left behind
 * closes it (here 60 s later). */
static void test_output_read_for_default_grace(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "echo started; sleep 60 & exit 0", NULL};
  pbl_task_t *t;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pbl_spawn(f->pl, argv, NULL, &t), 0);
  bool ended = pbl_test_run_until(&f->uv, task_ended, t, 30000);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  int pid = pbl_task_pid(t);
  if (pid > 0)
    (void)kill(-pid, SIGKILL); /* the background sleep, in the group */
  assert_true(ended);          /* within 30 s: not when the sleep ends */
  assert_true(ms >= 1000);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_test_assert_stdout(t, "started\n");
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
}

static bool past(void *deadline_ns) {
  return uv_hrtime() >= *(uint64_t *)deadline_ns;
}

/* The exit decides: a timeout that falls in the grace after the exit does
 * not end the command. The grace is long, the timeout ends inside it; the
 * shell has the whole timeout (1.5 s) to exit, and the test ends the
 * grace itself, by killing the background child, once the timeout has
 * passed. */
static void test_timeout_in_grace_after_exit(void **state) {
  F(state);
  const char *argv[] = {"sh", "-c", "echo started; sleep 60 & exit 0", NULL};
  pbl_spawn_opts o = {.task = {.kill_grace_ms = 60000, .timeout_ms = 1500}};
  pbl_task_t *t;
  uint64_t deadline = uv_hrtime() + 2500 * (uint64_t)1000000;
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  assert_false(pbl_test_run_until(&f->uv, task_ended, t, 2500) &&
               pbl_task_state_of(t) == PBL_TIMED_OUT);
  assert_true(pbl_test_run_until(&f->uv, past, &deadline, 5000));
  assert_int_equal(pbl_task_state_of(t), PBL_RUNNING); /* in the grace */
  int pid = pbl_task_pid(t);
  assert_true(pid > 0);
  (void)kill(-pid, SIGKILL); /* the output closes: the command ends */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  assert_int_equal(pbl_task_exit_status(t), 0);
  pbl_test_assert_stdout(t, "started\n");
  pbl_task_release(t);
}

static void test_bad_input(void **state) {
  F(state);
  pbl_task_t *t = NULL;
  const char *ok[] = {"true", NULL};
  const char *empty[] = {"", NULL};
  const char *none[] = {NULL};
  assert_int_equal(pbl_spawn(NULL, ok, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_spawn(f->pl, NULL, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_spawn(f->pl, none, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_spawn(f->pl, empty, NULL, &t), UV_EINVAL);
  pbl_spawn_opts o = {.stdin_len = 3};
  assert_int_equal(pbl_spawn(f->pl, ok, &o, &t), UV_EINVAL);
  o = (pbl_spawn_opts){.task = {.timeout_ms = -1}};
  assert_int_equal(pbl_spawn(f->pl, ok, &o, &t), UV_EINVAL);
  assert_null(t);
}

/* Everything pbl_spawn is given is copied before it returns. */
static void test_copies(void **state) {
  F(state);
  char arg[] = "echo copied";
  char var[] = "PBL_Y=1";
  char *env[] = {var, NULL};
  const char *argv[] = {"sh", "-c", arg, NULL};
  pbl_spawn_opts o = {.env = env};
  pbl_task_t *t;
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  memset(arg, 0, sizeof(arg));
  memset(var, 0, sizeof(var));
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_test_assert_stdout(t, "copied\n");
  pbl_task_release(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_exit_zero_is_done),
      T(test_exit_codes_fail),
      T(test_foreign_signal_expires),
      T(test_cannot_start),
      T(test_capture_limit),
      T(test_default_limit),
      T(test_stdin),
      T(test_env_and_cwd),
      T(test_timeout),
      T(test_cancel_kills_group),
      T(test_background_holds_output),
      T(test_timeout_in_grace_after_exit),
      T(test_output_read_for_default_grace),
      T(test_bad_input),
      T(test_copies),
  };
  return cmocka_run_group_tests_name("command", tests, NULL, NULL);
}
