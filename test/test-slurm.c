/* Process pools whose workers start through `srun` (issue 11), against a
 * real one-node Slurm cluster that this program starts (munged,
 * slurmctld, slurmd: slurm-fixture.h). What must hold: results come back
 * intact from workers that slurmstepd started; a timeout ends the remote
 * worker; a kill -9 of srun (which Slurm does not forward) leaves no
 * worker once its heartbeats stop; closing the pool leaves no srun and
 * no worker; the cluster leaves nothing either. Where the cluster cannot
 * run (not installed, not root, slurmd failing in a container), the
 * program skips and prints why.
 *
 * srun needs -u: without it slurmstepd holds a task's output until a
 * newline, and a worker's frames have none (its HELLO would never come).
 * With -u the task's stdout is a pty (slurmstepd sets it raw). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "process-pool-helpers.h"
#include "slurm-fixture.h"

#define GRACE_MS 300
/* A worker whose srun was killed hears nothing for 15 heartbeats (15 s)
 * and ends itself; a loaded machine adds to it. */
#define GONE_MS 60000

static const char *const srun[] = {"srun", "-N1", "-n1", "--quiet", "-u", NULL};

static pbl_pool_t *srun_pool(pbl_test_fixture *f, unsigned workers) {
  pbl_launcher l = {srun, workers};
  pbl_pool_opts o = {
      .launchers = &l, .n_launchers = 1, .kill_grace_ms = GRACE_MS};
  return new_ppool(f, &o);
}

static bool pid_gone_cb(void *pid) {
  return pbl_test_pid_gone(pid);
}

/* The worker `pid` is gone, within GONE_MS. */
static void assert_worker_gone(pbl_test_fixture *f, int pid) {
  assert_true(pid > 0);
  if (!pbl_test_run_until(&f->uv, pid_gone_cb, &pid, GONE_MS))
    fail_msg("worker %d still there after %d ms", pid, GONE_MS);
}

/* /proc/pid/stat's ppid, -1 if gone. */
static long parent_of(long pid) {
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  long ppid = -1;
  char state;
  if (fgets(line, sizeof(line), fp) != NULL) {
    char *end = strrchr(line, ')');
    if (end == NULL || sscanf(end + 1, " %c %ld", &state, &ppid) != 2)
      ppid = -1;
  }
  fclose(fp);
  return ppid;
}

static void comm_of(long pid, char *name, size_t len) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
  name[0] = '\0';
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return;
  if (fgets(name, (int)len, fp) != NULL)
    name[strcspn(name, "\n")] = '\0';
  fclose(fp);
}

/* How many of our own children run `comm`; the first one's pid in *pid. */
static int children_named(const char *comm, int *pid) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    long p = atol(e->d_name);
    if (p <= 0 || parent_of(p) != (long)getpid())
      continue;
    char name[64];
    comm_of(p, name, sizeof(name));
    if (strcmp(name, comm) == 0 && n++ == 0 && pid != NULL)
      *pid = (int)p;
  }
  closedir(d);
  return n;
}

/* Results intact, from workers slurmstepd started: all 256 byte values
 * and a MiB there and back, each task's worker a step's task. */
static void test_results(void **state) {
  F(state);
  pbl_pool_t *p = srun_pool(f, 2);
  uint8_t all[256 * 4];
  for (size_t i = 0; i < sizeof(all); i++)
    all[i] = (uint8_t)(i * 7 + i / 256);
  size_t big_len = (size_t)1 << 20;
  uint8_t *big = malloc(big_len);
  assert_non_null(big);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (uint8_t)(i ^ (i >> 9) ^ (i >> 17));
  pbl_task_t *a = submit(p, fn_echo, all, sizeof(all), NULL);
  pbl_task_t *b = submit(p, fn_echo, big, big_len, NULL);
  pbl_task_t *c[4];
  for (int i = 0; i < 4; i++)
    c[i] = submit(p, fn_pid, NULL, 0, NULL);
  for (int i = 0; i < 4; i++) {
    assert_true(pbl_test_run_until(&f->uv, task_ended, c[i], 120000));
    assert_int_equal(pbl_task_error(c[i]), 0);
    int pid = pid_result(c[i]);
    assert_int_equal(pid, pbl_task_pid(c[i]));
    char parent[64];
    comm_of(parent_of(pid), parent, sizeof(parent));
    assert_string_equal(parent, "slurmstepd");
    pbl_task_release(c[i]);
  }
  run_dry(f);
  size_t len = 0;
  assert_int_equal(pbl_task_error(a), 0);
  const void *r = pbl_task_bytes(a, &len);
  assert_int_equal(len, sizeof(all));
  assert_memory_equal(r, all, sizeof(all));
  assert_int_equal(pbl_task_error(b), 0);
  r = pbl_task_bytes(b, &len);
  assert_int_equal(len, big_len);
  assert_memory_equal(r, big, big_len);
  free(big);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* A timeout of a task running through srun ends it at once and its
 * worker after the grace (a BYE, the channel closed, SIGTERM to srun,
 * which Slurm forwards); the next task runs on a new worker. */
static void test_timeout_kills_worker(void **state) {
  F(state);
  pbl_pool_t *p = srun_pool(f, 1);
  pbl_task_opts to = {.timeout_ms = 1000};
  pbl_task_t *t = submit(p, fn_ignore_term, NULL, 0, &to);
  pbl_task_t *next = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 120000));
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  int pid = pbl_task_pid(t);
  assert_worker_gone(f, pid);
  assert_true(pbl_test_run_until(&f->uv, task_ended, next, 120000));
  assert_int_equal(pbl_task_error(next), 0);
  assert_int_not_equal(pid_result(next), pid);
  pbl_task_release(t);
  pbl_task_release(next);
  pool_free_and_run(f, p);
}

/* kill -9 of srun: Slurm forwards nothing, the step's stdin stays open;
 * the worker, busy in a function that ignores SIGTERM, hears no more
 * heartbeats and ends itself. Its task expires naming srun. */
static void test_srun_killed(void **state) {
  F(state);
  pbl_pool_t *p = srun_pool(f, 1);
  pbl_task_t *t = submit(p, fn_ignore_term, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t, 120000));
  int pid = pbl_task_pid(t), launcher = 0;
  assert_int_equal(children_named("srun", &launcher), 1);
  assert_int_equal(kill(launcher, SIGKILL), 0);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  assert_non_null(strstr(pbl_task_message(t), "through srun"));
  assert_worker_gone(f, pid);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* Close and join: the queued tasks run, then no srun and no worker is
 * left (the fixture's teardown looks for them too, by the mark in their
 * environment, which srun passes on). */
static void test_close_leaves_nothing(void **state) {
  F(state);
  pbl_pool_t *p = srun_pool(f, 2);
  enum { N = 6 };
  pbl_task_t *t[N];
  for (int i = 0; i < N; i++)
    t[i] = submit(p, fn_pid, NULL, 0, NULL);
  assert_int_equal(pbl_pool_close(p), 0);
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  int pids[N];
  for (int i = 0; i < N; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    pids[i] = pid_result(t[i]);
    pbl_task_release(t[i]);
  }
  assert_int_equal(children_named("srun", NULL), 0);
  for (int i = 0; i < N; i++)
    assert_worker_gone(f, pids[i]);
  pool_free_and_run(f, p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  /* Before the first setup marks the environment: the cluster is not
   * this program's to count. */
  pbl_test_slurm cluster;
  if (!pbl_test_slurm_start(&cluster)) {
    printf("the Slurm tests are skipped: %s\n", cluster.why);
    return 77;
  }
  const struct CMUnitTest tests[] = {
      T(test_results),
      T(test_timeout_kills_worker),
      T(test_srun_killed),
      T(test_close_leaves_nothing),
  };
  int failed = cmocka_run_group_tests_name("slurm", tests, NULL, NULL);
  if (!pbl_test_slurm_stop(&cluster)) {
    printf("the Slurm cluster left something behind (above)\n");
    failed++;
  }
  return failed;
}
