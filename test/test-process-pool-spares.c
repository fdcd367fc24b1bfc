/* Spare workers (pbl_pool_opts.spare_workers): started beside the pool's
 * workers once it is in use, kept idle while `workers` others run, and
 * taking over at once from a worker that crashed, where a respawn would
 * first have to start and run its initializer.
 *
 * Workers run a slow initializer that leaves a mark (a file named by its
 * pid in a directory of the test's) when it is done: the test knows how
 * many workers are ready without sleeping. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "process-pool-helpers.h"

#define INIT_MS 3000u /* what a respawn would cost the crash test */

typedef struct {
  uint32_t ms;
  char dir[256];
} init_arg;

/* Sleeps ms (the start of a heavy worker: loading a model, warming a
 * cache), then marks the directory with its pid. */
static int init_slow_mark(const void *in, size_t len, pbl_buf *out) {
  (void)out;
  init_arg a;
  if (len != sizeof(a))
    return 1;
  memcpy(&a, in, sizeof(a));
  usleep((useconds_t)a.ms * 1000);
  char path[300];
  snprintf(path, sizeof(path), "%s/%ld", a.dir, (long)getpid());
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    return 1;
  fclose(fp);
  return 0;
}
PBL_PROCESS_FN(init_slow_mark);

typedef struct {
  init_arg init;
  int want; /* marks to wait for */
} marks;

static int count_marks(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static bool enough_marks(void *arg) {
  marks *m = arg;
  return count_marks(m->init.dir) >= m->want;
}

static void marks_init(marks *m, uint32_t ms) {
  memset(m, 0, sizeof(*m));
  m->init.ms = ms;
  snprintf(m->init.dir, sizeof(m->init.dir), "%s/spares-XXXXXX",
           pbl_test_reports_dir());
  assert_non_null(mkdtemp(m->init.dir));
}

static void marks_remove(marks *m) {
  DIR *d = opendir(m->init.dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", m->init.dir, e->d_name);
    assert_int_equal(unlink(path), 0);
  }
  closedir(d);
  assert_int_equal(rmdir(m->init.dir), 0);
}

static pbl_pool_t *spare_pool(pbl_test_fixture *f, marks *m, unsigned workers,
                              unsigned spare) {
  pbl_pool_opts o = {.workers = workers,
                     .spare_workers = spare,
                     .process_init = init_slow_mark,
                     .init_arg = &m->init,
                     .init_len = sizeof(m->init)};
  return new_ppool(f, &o);
}

static int32_t pid_of(pbl_task_t *t) {
  void *r = NULL;
  assert_int_equal(pbl_task_get(t, 0, &r), 0);
  int32_t pid;
  memcpy(&pid, r, sizeof(pid));
  return pid;
}

static bool ended(void *arg) {
  return pbl_task_state_of(arg) >= PBL_DONE;
}

static void close_pool(pbl_test_fixture *f, pbl_pool_t *p) {
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_free(p);
}

/* A pool in use has its spare beside the worker its one task needed; an
 * unused pool has none. */
static void test_spare_starts_with_use(void **state) {
  F(state);
  marks m;
  marks_init(&m, 0);
  pbl_pool_t *p = spare_pool(f, &m, 3, 1);
  pbl_pool_stats_t st;
  assert_int_equal(uv_run(&f->uv, UV_RUN_NOWAIT), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 0);
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, NULL);
  m.want = 2;
  assert_true(pbl_test_run_until(&f->uv, enough_marks, &m, 30000));
  assert_true(pbl_test_run_until(&f->uv, ended, t, 30000));
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 2); /* one for the task, one spare */
  assert_int_equal(count_marks(m.init.dir), 2);
  pbl_task_release(t);
  close_pool(f, p);
  marks_remove(&m);
}

/* With one worker and one spare, tasks run one at a time on one worker:
 * the spare is not a second worker. */
static void test_spare_not_filled(void **state) {
  F(state);
  marks m;
  marks_init(&m, 0);
  pbl_pool_t *p = spare_pool(f, &m, 1, 1);
  enum { N = 6 };
  pbl_task_t *t[N];
  uint32_t ms = 30;
  for (int i = 0; i < N; i++)
    t[i] = submit(p, fn_sleep_touch, &ms, sizeof(ms), NULL);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  m.want = 2;
  assert_true(pbl_test_run_until(&f->uv, enough_marks, &m, 30000));
  int32_t first = pid_of(t[0]);
  for (int i = 0; i < N; i++) {
    assert_int_equal(pid_of(t[i]), first);
    pbl_task_release(t[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 2);
  assert_int_equal(st.done, N);
  close_pool(f, p);
  marks_remove(&m);
}

/* A worker that crashes is replaced by the ready spare at once: the task
 * behind the crash ends long before a respawn could have run its slow
 * initializer, on the spare; the spare's own replacement follows. */
static void test_crash_taken_over_at_once(void **state) {
  F(state);
  marks m;
  marks_init(&m, INIT_MS);
  pbl_pool_t *p = spare_pool(f, &m, 1, 1);
  pbl_task_t *warm = submit(p, fn_pid, NULL, 0, NULL);
  m.want = 2; /* the worker and the spare are ready */
  assert_true(pbl_test_run_until(&f->uv, enough_marks, &m, 60000));
  assert_true(pbl_test_run_until(&f->uv, ended, warm, 60000));
  int32_t worker = pid_of(warm);
  uint64_t t0 = uv_hrtime();
  pbl_task_t *crash = submit(p, fn_abort, NULL, 0, NULL);
  pbl_task_t *next = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, ended, next, 60000));
  uint64_t took_ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(pbl_task_state_of(crash), PBL_EXPIRED);
  /* Either of the two ready workers may have run the warm task: the one
   * that crashed is the one that ran `crash`, and `next` ran on the other. */
  int32_t spare = pid_of(next);
  assert_int_not_equal(spare, pbl_task_pid(crash));
  assert_true(spare == worker || pbl_task_pid(crash) == worker);
  if (took_ms >= INIT_MS * 2 / 3)
    fail_msg("the task behind the crash took %llu ms: no spare took over "
             "(a respawn's initializer takes %u ms)",
             (unsigned long long)took_ms, INIT_MS);
  m.want = 3; /* the spare's replacement */
  assert_true(pbl_test_run_until(&f->uv, enough_marks, &m, 60000));
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  assert_int_equal(st.expired, 1);
  pbl_task_release(warm);
  pbl_task_release(crash);
  pbl_task_release(next);
  close_pool(f, p);
  marks_remove(&m);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_spare_starts_with_use),
      T(test_spare_not_filled),
      T(test_crash_taken_over_at_once),
  };
  return cmocka_run_group_tests_name("process-pool-spares", tests, NULL, NULL);
}
