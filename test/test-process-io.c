/* Process task I/O: 64 MiB each way, a worker that prints a lot on its
 * own stdout and stderr, no fd leaking into workers, and 200 one-shot
 * tasks that leave the parent's fds and children as they were. This
 * program is its own worker. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "process-fns.h"

static void test_64mib_each_way(void **state) {
  F(state);
  size_t len = (size_t)64 << 20;
  unsigned char *in = malloc(len);
  assert_non_null(in);
  for (size_t i = 0; i < len; i++)
    in[i] = (unsigned char)(i * 31 + (i >> 20));
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_echo, in, len, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_error(t), 0);
  size_t got = 0;
  const void *out = pbl_task_bytes(t, &got);
  assert_int_equal(got, len);
  assert_memory_equal(out, in, len);
  free(in);
  pbl_task_release(t);
}

/* Points fd at a new temporary file; returns the saved original. */
static int redirect(int fd, char *path, size_t len, const char *what) {
  snprintf(path, len, "/tmp/pbl-test-%ld-%s", (long)getpid(), what);
  int file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(file >= 0);
  int saved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  assert_true(saved >= 0);
  assert_int_equal(dup2(file, fd), fd);
  close(file);
  return saved;
}

static off_t restore(int fd, int saved, const char *path) {
  assert_int_equal(dup2(saved, fd), fd);
  close(saved);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  unlink(path);
  return st.st_size;
}

/* The worker's stdout and stderr are its own (here: files); megabytes
 * on them do not disturb the channel. */
static void test_chatty_worker(void **state) {
  F(state);
  char out_path[128], err_path[128];
  int saved_out = redirect(1, out_path, sizeof(out_path), "stdout");
  int saved_err = redirect(2, err_path, sizeof(err_path), "stderr");
  uint64_t n = 4u << 20;
  pbl_task_t *t;
  int err = pbl_process(f->pl, fn_print_lots, &n, sizeof(n), NULL, &t);
  if (err == 0)
    uv_run(&f->uv, UV_RUN_DEFAULT);
  off_t out_size = restore(1, saved_out, out_path);
  off_t err_size = restore(2, saved_err, err_path);
  assert_int_equal(err, 0);
  assert_int_equal(pbl_task_error(t), 0);
  size_t len;
  const void *p = pbl_task_bytes(t, &len);
  assert_int_equal(len, 2);
  assert_memory_equal(p, "ok", 2);
  assert_int_equal(out_size, (off_t)n);
  assert_int_equal(err_size, (off_t)n);
  pbl_task_release(t);
}

/* fds of the parent that are not close-on-exec do not reach the task. */
static void test_no_fd_leaks_into_workers(void **state) {
  F(state);
  int leaky = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
  int pipefd[2];
  assert_true(leaky >= 0);
  assert_int_equal(pipe(pipefd), 0);
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_list_fds, NULL, 0, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  close(leaky);
  close(pipefd[0]);
  close(pipefd[1]);
  assert_int_equal(pbl_task_error(t), 0);
  size_t len;
  const char *fds = pbl_task_bytes(t, &len);
  assert_int_equal(len, strlen("0 1 2 3 "));
  assert_memory_equal(fds, "0 1 2 3 ", len);
  pbl_task_release(t);
}

#define MANY 200
#define IN_FLIGHT 8

typedef struct {
  pbl_loop_t *pl;
  int started, done, failed;
} many;

static void many_done(pbl_task_t *t, void *data);

static void many_next(many *m) {
  pbl_task_opts o = {.on_done = many_done, .data = m};
  char in[100];
  memset(in, 'a' + m->started % 26, sizeof(in));
  m->started++;
  if (pbl_process(m->pl, fn_echo, in, sizeof(in), &o, NULL) != 0)
    m->failed++;
}

static void many_done(pbl_task_t *t, void *data) {
  many *m = data;
  size_t len;
  const char *p = pbl_task_bytes(t, &len);
  m->done++;
  if (pbl_task_error(t) != 0 || len != 100 || p[0] != p[99])
    m->failed++;
  if (m->started < MANY)
    many_next(m); /* from a callback: the next task */
}

static void test_many_one_shot_tasks(void **state) {
  F(state);
  /* One task first: the loop opens its own fds (SIGCHLD's pipe) lazily. */
  pbl_task_t *t;
  assert_int_equal(pbl_process(f->pl, fn_echo, "x", 1, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(t);
  size_t fds = pbl_test_count_fds();
  many m = {.pl = f->pl};
  for (int i = 0; i < IN_FLIGHT; i++)
    many_next(&m);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(m.done, MANY);
  assert_int_equal(m.failed, 0);
  assert_int_equal(pbl_test_count_fds(), fds);
  pbl_test_assert_no_children();
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_64mib_each_way),
      T(test_chatty_worker),
      T(test_no_fd_leaks_into_workers),
      T(test_many_one_shot_tasks),
  };
  return cmocka_run_group_tests_name("process-io", tests, NULL, NULL);
}
