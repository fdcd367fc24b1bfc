/* Process tasks when the system fails under them: the start
 * (posix_spawn), the read start and the write on the channel. The task
 * fails with the matching libuv code, its callback never runs inside the
 * submitting call, the child (if any) is killed and reaped, and nothing
 * is left. posix_spawn, uv_read_start and uv_write are wrapped
 * (-Wl,--wrap). */
#include <spawn.h>
#include <string.h>

#include "helpers.h"
#include "process-fns.h"

static int fail_spawn, fail_read_start, fail_write; /* the code to return */
/* A slow start: the wrapped posix_spawn waits this long first (as a fork
 * of a large parent did), and notes when the child runs. */
static unsigned slow_spawn_ms;
static uint64_t spawned_ns;

int __real_posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[]);
int __wrap_posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[]);
int __real_uv_read_start(uv_stream_t *s, uv_alloc_cb a, uv_read_cb r);
int __wrap_uv_read_start(uv_stream_t *s, uv_alloc_cb a, uv_read_cb r);
int __real_uv_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[],
                    unsigned n, uv_write_cb cb);
int __wrap_uv_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[],
                    unsigned n, uv_write_cb cb);

/* As posix_spawn says when the clone or the exec fails: a positive errno,
 * and no child runs. */
int __wrap_posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[]) {
  if (fail_spawn != 0)
    return -fail_spawn;
  pbl_test_busy_ms(slow_spawn_ms);
  int err = __real_posix_spawn(pid, path, fa, attr, argv, envp);
  spawned_ns = uv_hrtime();
  return err;
}

int __wrap_uv_read_start(uv_stream_t *s, uv_alloc_cb a, uv_read_cb r) {
  return fail_read_start != 0 ? fail_read_start : __real_uv_read_start(s, a, r);
}

int __wrap_uv_write(uv_write_t *req, uv_stream_t *s, const uv_buf_t bufs[],
                    unsigned n, uv_write_cb cb) {
  return fail_write != 0 ? fail_write : __real_uv_write(req, s, bufs, n, cb);
}

static int calls;
static void on_done(pbl_task_t *t, void *data) {
  (void)t, (void)data;
  calls++;
}

/* Runs one task with one libuv call failing; returns its end code. */
static int run_failing(pbl_test_fixture *f, int *which, int code) {
  pbl_task_opts o = {.on_done = on_done};
  pbl_task_t *t;
  calls = 0;
  *which = code;
  int err = pbl_process(f->pl, fn_sleep, NULL, 0, &o, &t);
  *which = 0;
  assert_int_equal(err, 0);
  assert_int_equal(calls, 0); /* never inside the call */
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* killed, reaped */
  assert_int_equal(calls, 1);
  int end = pbl_task_error(t);
  pbl_task_release(t);
  return end;
}

static void test_spawn_fails(void **state) {
  F(state);
  assert_int_equal(run_failing(f, &fail_spawn, UV_EAGAIN), UV_EAGAIN);
  assert_int_equal(run_failing(f, &fail_spawn, UV_EMFILE), UV_EMFILE);
}

static void test_read_start_fails(void **state) {
  F(state);
  assert_int_equal(run_failing(f, &fail_read_start, UV_EINVAL), UV_EINVAL);
}

static void test_write_fails(void **state) {
  F(state);
  assert_int_equal(run_failing(f, &fail_write, UV_ENOBUFS), UV_ENOBUFS);
}

/* Commands too. */
static void test_command_spawn_fails(void **state) {
  F(state);
  const char *argv[] = {"true", NULL};
  pbl_task_t *t;
  fail_spawn = UV_EAGAIN;
  assert_int_equal(pbl_spawn(f->pl, argv, NULL, &t), 0);
  fail_spawn = 0;
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), UV_EAGAIN);
  pbl_task_release(t);
}

static uint64_t ended_ns;
static void on_ended(pbl_task_t *t, void *data) {
  (void)t, (void)data;
  ended_ns = uv_hrtime();
}

/* A start that takes long does not eat into the timeout: it counts from
 * the running child, for one-shot tasks and for commands. */
#define SLOW_MS 600
#define TIMEOUT_MS 1000
static void test_slow_start_keeps_timeout(void **state) {
  F(state);
  const char *argv[] = {"sleep", "30", NULL};
  for (int i = 0; i < 2; i++) {
    pbl_task_t *t;
    pbl_spawn_opts o = {
        .task = {.on_done = on_ended, .timeout_ms = TIMEOUT_MS}};
    slow_spawn_ms = SLOW_MS;
    if (i == 0)
      assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, &o.task, &t), 0);
    else
      assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
    slow_spawn_ms = 0;
    assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
    assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
    assert_true((ended_ns - spawned_ns) / 1000000 >= TIMEOUT_MS);
    pbl_task_release(t);
  }
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_spawn_fails),         T(test_read_start_fails),
      T(test_write_fails),         T(test_slow_start_keeps_timeout),
      T(test_command_spawn_fails),
  };
  return cmocka_run_group_tests_name("process-faults", tests, NULL, NULL);
}
