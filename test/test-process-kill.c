/* Ending running process tasks: timeout, cancel (from the loop thread and
 * from others), SIGTERM ignored (SIGKILL after the grace), the worker's
 * own children, cancel while the input is still being written, and the
 * binding's close. This program is its own worker. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "process-fns.h"

#define NS_PER_MS 1000000ull
/* The grace, less what libuv's coarse loop clock (CLOCK_MONOTONIC_COARSE,
 * a tick of a few ms) may shave off a timer. */
#define GRACE_MS 300
#define AT_LEAST_GRACE ((GRACE_MS - 20) * NS_PER_MS)

typedef struct {
  int calls;
  int err;
  uint64_t at_ns;
} ended;

static void on_done(pbl_task_t *t, void *data) {
  ended *e = data;
  e->calls++;
  e->err = pbl_task_error(t);
  e->at_ns = uv_hrtime();
}

static void test_timeout(void **state) {
  F(state);
  ended e = {0};
  pbl_task_opts o = {.on_done = on_done, .data = &e, .timeout_ms = 200};
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_int_equal(pbl_task_get(t, 0, NULL), UV_ETIMEDOUT);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.err, UV_ETIMEDOUT);
  assert_true(pbl_task_pid(t) > 0);
  pbl_task_release(t);
}

/* A task that ends first leaves its timeout behind at once. */
static void test_timeout_not_reached(void **state) {
  F(state);
  pbl_task_opts o = {.timeout_ms = 600000};
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_echo, "x", 1, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* no 10-min wait */
  assert_int_equal(pbl_task_error(t), 0);
  pbl_task_release(t);
}

static void test_cancel_running(void **state) {
  F(state);
  ended e = {0};
  pbl_task_opts o = {.on_done = on_done, .data = &e};
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, &o, &t), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_RUNNING); /* spawned already */
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  assert_int_equal(pbl_task_cancel(t), 0); /* already cancelled */
  assert_int_equal(e.calls, 0);            /* never inside the call */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.err, UV_ECANCELED);
  pbl_task_release(t);
}

typedef struct {
  pbl_task_t *t;
  int err; /* pbl_task_cancel's, asserted on the main thread */
} cancel_call;

static void cancel_on_thread(void *arg) {
  cancel_call *c = arg;
  c->err = pbl_task_cancel(c->t);
}

static void test_cancel_from_thread(void **state) {
  F(state);
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, NULL, &t), 0);
  uv_thread_t th;
  cancel_call c = {t, -1};
  assert_int_equal(uv_thread_create(&th, cancel_on_thread, &c), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(c.err, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* killed, reaped */
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
}

/* A path for a file the worker makes when it is ready. */
static void marker_path(char *buf, size_t len, const char *what) {
  snprintf(buf, len, "/tmp/pbl-test-%ld-%s", (long)getpid(), what);
  unlink(buf);
}

static bool file_exists(void *path) {
  return access(path, F_OK) == 0;
}

/* Reads the first number in the file at path. */
static int read_pid(const char *path) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  int pid = 0;
  assert_int_equal(fscanf(fp, "%d", &pid), 1);
  fclose(fp);
  return pid;
}

/* The worker ignores SIGTERM: a timeout still ends it, with SIGKILL
 * after the grace. */
static void test_ignoring_term_timeout(void **state) {
  F(state);
  char path[256];
  marker_path(path, sizeof(path), "ignoring-timeout");
  ended e = {0};
  pbl_task_opts o = {.on_done = on_done,
                     .data = &e,
                     .timeout_ms = 3000,
                     .kill_grace_ms = GRACE_MS};
  pbl_task_t *t;
  assert_int_equal(
      pbl_process(f->pl, fn_ignore_term, path, strlen(path), &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  uint64_t reaped = uv_hrtime();
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_int_equal(e.calls, 1);
  /* The worker ignored SIGTERM before the timeout (3 s to start: traced
   * by valgrind a worker takes 1-2 s), so only the SIGKILL at the end of
   * the grace ended it. */
  assert_true(file_exists(path));
  unlink(path);
  assert_true(reaped - e.at_ns >= AT_LEAST_GRACE);
  pbl_task_release(t);
}

/* The worker's own child ignores SIGTERM and holds the channel open; a
 * cancel kills it too, after the grace. */
static void test_grandchild_dies(void **state) {
  F(state);
  char path[256];
  marker_path(path, sizeof(path), "grandchild");
  pbl_task_opts o = {.kill_grace_ms = GRACE_MS};
  pbl_task_t *t;
  assert_int_equal(
      pbl_process(f->pl, fn_grandchild, path, strlen(path), &o, &t), 0);
  assert_true(pbl_test_run_until(&f->uv, file_exists, path, 60000));
  int gpid = read_pid(path);
  unlink(path);
  assert_true(gpid > 0);
  assert_int_equal(kill(gpid, 0), 0); /* alive */
  uint64_t cancelled = uv_hrtime();
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  /* The worker died of SIGTERM at once; its child got SIGKILL when the
   * grace ran out, and the task held its loop until then. */
  assert_true(uv_hrtime() - cancelled >= AT_LEAST_GRACE);
  assert_true(pbl_test_run_until(&f->uv, pbl_test_pid_gone, &gpid, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
}

/* The worker ignores SIGTERM: the grace runs out, SIGKILL ends it. */
static void test_ignoring_term_cancel(void **state) {
  F(state);
  char path[256];
  marker_path(path, sizeof(path), "ignoring");
  pbl_task_opts o = {.kill_grace_ms = GRACE_MS};
  pbl_task_t *t;
  assert_int_equal(
      pbl_process(f->pl, fn_ignore_term, path, strlen(path), &o, &t), 0);
  assert_true(pbl_test_run_until(&f->uv, file_exists, path, 60000));
  unlink(path);
  uint64_t cancelled = uv_hrtime();
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(uv_hrtime() - cancelled >= AT_LEAST_GRACE);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
}

/* kill_grace_ms 0 is the default grace, 1000 ms: a worker that ignores
 * SIGTERM lives that long after the cancel, not a moment. */
static void test_default_grace(void **state) {
  F(state);
  char path[256];
  marker_path(path, sizeof(path), "default-grace");
  pbl_task_t *t;
  assert_int_equal(
      pbl_process(f->pl, fn_ignore_term, path, strlen(path), NULL, &t), 0);
  assert_true(pbl_test_run_until(&f->uv, file_exists, path, 60000));
  unlink(path);
  uint64_t cancelled = uv_hrtime();
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  uint64_t took = uv_hrtime() - cancelled;
  assert_true(took >= (1000 - 20) * NS_PER_MS);
  assert_true(took < 30000 * NS_PER_MS);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
}

/* Cancelled while 64 MiB of input are still on their way: the write
 * fails (EPIPE, not SIGPIPE), the input is freed, nothing is left. */
static void test_cancel_while_writing(void **state) {
  F(state);
  size_t len = (size_t)64 << 20;
  char *in = malloc(len);
  assert_non_null(in);
  memset(in, 'i', len);
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_echo, in, len, NULL, &t), 0);
  free(in); /* copied */
  assert_int_equal(pbl_task_cancel(t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  struct sigaction sa;
  assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
  assert_ptr_equal(sa.sa_handler, SIG_IGN);
  pbl_task_release(t);
}

static int closed_calls;
static int children_at_close; /* processes of ours when closed_cb ran */

/* Runs on the loop thread: children are looked for right there, as the
 * promise says they are reaped by then. */
static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closed_calls++;
  int status;
  pid_t pid = waitpid(-1, &status, WNOHANG);
  children_at_close = pid < 0 && errno == ECHILD ? 0 : 1;
}

/* Closing the binding kills running workers and reaps them first. */
static void test_close_kills(void **state) {
  F(state);
  ended e = {0};
  pbl_task_opts o = {.on_done = on_done, .data = &e};
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, &o, &t), 0);
  closed_calls = 0;
  pbl_loop_close(f->pl, on_closed);
  pbl_task_t *late = NULL;
  assert_int_equal(pbl_process(f->pl, fn_echo, "x", 1, NULL, &late),
                   PBL_ECLOSED);
  assert_null(late);
  assert_int_equal(closed_calls, 0); /* on a later turn */
  children_at_close = -1;
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(children_at_close, 0); /* reaped before closed_cb */
  assert_int_equal(e.calls, 1);
  assert_int_equal(e.err, UV_ECANCELED);
  pbl_task_release(t); /* the binding's memory goes with it */
}

/* A worker that answered but hangs instead of exiting is killed after
 * the grace; the task stays done. */
static void test_lingering_worker_is_killed(void **state) {
  F(state);
  pbl_task_opts o = {.kill_grace_ms = 100};
  pbl_task_t *t;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pbl_process(f->pl, fn_linger, "ok", 2, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* returns */
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms >= 99); /* waited that long for a clean exit first */
  assert_true(ms < 30000);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  size_t len;
  const char *bytes = pbl_task_bytes(t, &len);
  assert_int_equal(len, 2);
  assert_memory_equal(bytes, "ok", 2);
  pbl_task_release(t);
}

static bool is_done(void *arg) {
  return pbl_task_state_of(arg) == PBL_DONE;
}

/* Closing the binding kills a lingering worker at once, grace or not. */
static void test_close_kills_lingering_worker(void **state) {
  F(state);
  pbl_task_opts o = {.kill_grace_ms = 600000};
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_linger, "ok", 2, &o, &t), 0);
  assert_true(pbl_test_run_until(&f->uv, is_done, t, 30000));
  closed_calls = 0;
  children_at_close = -1;
  pbl_loop_close(f->pl, on_closed);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* no 10-min wait */
  assert_int_equal(closed_calls, 1);
  assert_int_equal(children_at_close, 0); /* reaped before closed_cb */
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_task_release(t);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_timeout),
      T(test_timeout_not_reached),
      T(test_cancel_running),
      T(test_cancel_from_thread),
      T(test_ignoring_term_timeout),
      T(test_ignoring_term_cancel),
      T(test_default_grace),
      T(test_grandchild_dies),
      T(test_cancel_while_writing),
      T(test_lingering_worker_is_killed),
      cmocka_unit_test_setup_teardown(test_close_kills, pbl_test_setup,
                                      pbl_test_teardown_closed),
      cmocka_unit_test_setup_teardown(test_close_kills_lingering_worker,
                                      pbl_test_setup, pbl_test_teardown_closed),
  };
  return cmocka_run_group_tests_name("process-kill", tests, NULL, NULL);
}
