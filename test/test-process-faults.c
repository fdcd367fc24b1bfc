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

#define F(state) pbl_test_fixture *f = *(state)

static int fail_spawn, fail_read_start, fail_write; /* the code to return */

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
  if (fail_spawn == 0)
    return __real_posix_spawn(pid, path, fa, attr, argv, envp);
  return -fail_spawn;
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

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
#define T(name)                                                                \
  cmocka_unit_test_setup_teardown(name, pbl_test_setup, pbl_test_teardown)
      T(test_spawn_fails),
      T(test_read_start_fails),
      T(test_write_fails),
      T(test_command_spawn_fails),
#undef T
  };
  return cmocka_run_group_tests_name("process-faults", tests, NULL, NULL);
}
