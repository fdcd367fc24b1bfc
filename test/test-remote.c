/* Process pools whose workers start through a launcher (issue 11): ssh
 * against a real sshd on a loopback port (sshd-fixture.h), a local shell
 * as a launcher, mixed local and remote workers. What must hold: bytes
 * intact; every pool rule; a timeout, a kill of the local ssh, a
 * function that ignores SIGTERM: no remote worker left after the grace;
 * shell startup output is a clear error; 16 workers through one sshd
 * with its default MaxStartups. Workers through srun: test-slurm.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include "process-pool-helpers.h"
#include "sshd-fixture.h"

#define GRACE_MS 300
/* A remote worker ends itself within its grace once its channel ended;
 * the ssh between us notices first (a loaded machine: seconds). */
#define GONE_MS 20000

static pbl_test_sshd sshd;

static int setup_ssh(void **state) {
  pbl_test_setup(state);
  pbl_test_sshd_start(&sshd);
  return 0;
}

static int teardown_ssh(void **state) {
  pbl_test_sshd_stop(&sshd);
  return pbl_test_teardown(state);
}

#define S(name) cmocka_unit_test_setup_teardown(name, setup_ssh, teardown_ssh)

/* A pool through ssh: `remote` workers there, `local` here. */
static pbl_pool_t *ssh_pool(pbl_test_fixture *f, unsigned remote,
                            unsigned local, pbl_pool_opts *o) {
  pbl_launcher l[2] = {{sshd.argv, remote}, {NULL, local}};
  o->launchers = l;
  o->n_launchers = local > 0 ? 2 : 1;
  if (o->kill_grace_ms == 0)
    o->kill_grace_ms = GRACE_MS;
  return new_ppool(f, o);
}

static bool pid_gone_cb(void *pid) {
  return pbl_test_pid_gone(pid);
}

/* The worker that ran t is gone, within GONE_MS. */
static void assert_worker_gone(pbl_test_fixture *f, int pid) {
  assert_true(pid > 0);
  if (!pbl_test_run_until(&f->uv, pid_gone_cb, &pid, GONE_MS))
    fail_msg("worker %d still there after %d ms", pid, GONE_MS);
}

typedef struct {
  pbl_task_t **t;
  int n, want;
} running_ctx;

static bool enough_running(void *arg) {
  running_ctx *c = arg;
  int k = 0;
  for (int i = 0; i < c->n; i++)
    k += pbl_task_state_of(c->t[i]) == PBL_RUNNING;
  return k >= c->want;
}

/* Runs the loop until `want` of t[0..n) run (each on its own worker). */
static void await_running(pbl_test_fixture *f, pbl_task_t **t, int n,
                          int want) {
  running_ctx c = {t, n, want};
  if (!pbl_test_run_until(&f->uv, enough_running, &c, 120000))
    fail_msg("fewer than %d tasks running after 120 s", want);
}

static void touch_file(const char *path) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fclose(fp);
}

static long parent_of(int pid) {
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
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

/* Our own child running `comm`, or 0. */
static int child_named(const char *comm) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  struct dirent *e;
  int found = 0;
  while (found == 0 && (e = readdir(d)) != NULL) {
    int pid = atoi(e->d_name);
    if (pid <= 0 || parent_of(pid) != (long)getpid())
      continue;
    char path[64], name[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    FILE *fp = fopen(path, "r");
    if (fp != NULL) {
      if (fgets(name, sizeof(name), fp) != NULL)
        name[strcspn(name, "\n")] = '\0';
      fclose(fp);
    }
    if (strcmp(name, comm) == 0)
      found = pid;
  }
  closedir(d);
  return found;
}

/* All 256 byte values, and 16 MiB, there and back intact. */
static void test_binary_payloads(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 2, 0, &o);
  uint8_t all[256 * 4];
  for (size_t i = 0; i < sizeof(all); i++)
    all[i] = (uint8_t)(i * 7 + i / 256);
  size_t big_len = (size_t)16 << 20;
  uint8_t *big = malloc(big_len);
  assert_non_null(big);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (uint8_t)(i ^ (i >> 9) ^ (i >> 17));
  pbl_task_t *a = submit(p, fn_echo, all, sizeof(all), NULL);
  pbl_task_t *b = submit(p, fn_echo, big, big_len, NULL);
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

/* Local and remote workers in one pool: both run tasks; a remote one's
 * parent is sshd's session, a local one's is us. */
static void test_mixed_local_and_remote(void **state) {
  F(state);
  char gate[128];
  test_path(gate, sizeof(gate), "mixed-gate");
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 2, 2, &o);
  pbl_task_t *t[8];
  for (int i = 0; i < 8; i++) /* 2 per worker: all four start */
    t[i] = submit(p, fn_wait_file, gate, strlen(gate) + 1, NULL);
  await_running(f, t, 8, 4);
  touch_file(gate);
  int local = 0, remote = 0;
  for (int i = 0; i < 8; i++) {
    assert_true(pbl_test_run_until(&f->uv, task_ended, t[i], 60000));
    assert_int_equal(pbl_task_error(t[i]), 0);
    int pid = pid_result(t[i]);
    assert_int_equal(pid, pbl_task_pid(t[i])); /* the worker's own pid */
    if (parent_of(pid) == (long)getpid())
      local++;
    else
      remote++;
    pbl_task_release(t[i]);
  }
  assert_true(local > 0);
  assert_true(remote > 0);
  unlink(gate);
  pool_free_and_run(f, p);
}

/* A timeout of a remote task ends it at once and its worker after the
 * grace; the pool goes on with a new one. */
static void test_timeout_kills_remote(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 1, 0, &o);
  pbl_task_opts to = {.timeout_ms = 1000};
  pbl_task_t *t = submit(p, fn_sleep, NULL, 0, &to);
  pbl_task_t *next = submit(p, fn_pid, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  int pid = pbl_task_pid(t);
  assert_worker_gone(f, pid);
  assert_true(pbl_test_run_until(&f->uv, task_ended, next, 60000));
  assert_int_equal(pbl_task_error(next), 0);
  assert_int_not_equal(pid_result(next), pid);
  pbl_task_release(t);
  pbl_task_release(next);
  pool_free_and_run(f, p);
}

/* A remote function that ignores SIGTERM still dies when its task
 * times out: the worker's helper sends SIGKILL after the grace. */
static void test_ignoring_sigterm_dies(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 1, 0, &o);
  pbl_task_opts to = {.timeout_ms = 1000};
  pbl_task_t *t = submit(p, fn_ignore_term, NULL, 0, &to);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_worker_gone(f, pbl_task_pid(t));
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* kill -9 of the local ssh: the remote worker, busy in a function that
 * ignores SIGTERM, gets no signal, only its channel's end: it ends
 * itself. Its task expires with words naming ssh and the host. */
static void test_ssh_killed(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 1, 0, &o);
  pbl_task_t *t = submit(p, fn_ignore_term, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t, 60000));
  int pid = pbl_task_pid(t);
  int ssh = child_named("ssh");
  assert_true(ssh > 0);
  assert_int_equal(kill(ssh, SIGKILL), 0);
  assert_true(pbl_test_run_until(&f->uv, task_ended, t, 60000));
  assert_int_equal(pbl_task_state_of(t), PBL_EXPIRED);
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  const char *msg = pbl_task_message(t);
  assert_non_null(strstr(msg, "through ssh"));
  assert_non_null(strstr(msg, host));
  assert_non_null(strstr(msg, "lost"));
  assert_worker_gone(f, pid);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* 16 workers through one sshd with its default MaxStartups (10:30:100):
 * the pool starts at most PBL__PPOOL_LAUNCH_MAX at once, all start. */
static void test_sixteen_workers(void **state) {
  F(state);
  char gate[128];
  test_path(gate, sizeof(gate), "sixteen-gate");
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 16, 0, &o);
  enum { N = 32 };
  pbl_task_t *t[N];
  for (int i = 0; i < N; i++)
    t[i] = submit(p, fn_wait_file, gate, strlen(gate) + 1, NULL);
  await_running(f, t, N, 16);
  touch_file(gate);
  int pids[N];
  for (int i = 0; i < N; i++) {
    assert_true(pbl_test_run_until(&f->uv, task_ended, t[i], 60000));
    assert_int_equal(pbl_task_error(t[i]), 0);
    pids[i] = pid_result(t[i]);
    pbl_task_release(t[i]);
  }
  int distinct = 0;
  for (int i = 0; i < N; i++) {
    int seen = 0;
    for (int j = 0; j < i; j++)
      seen |= pids[j] == pids[i];
    distinct += !seen;
  }
  assert_int_equal(distinct, 16);
  unlink(gate);
  pool_free_and_run(f, p);
}

/* A shell startup file printing to stdout (here: the remote command
 * itself) fails the start with the bytes quoted; no worker is left. */
static void test_shell_startup_output(void **state) {
  F(state);
  const char *argv[32];
  pbl_test_sshd_argv(&sshd, argv, "echo", "Welcome", "to", "node7;", NULL);
  pbl_launcher l = {argv, 1};
  pbl_pool_opts o = {.launchers = &l, .n_launchers = 1, .kill_grace_ms = 300};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_int_equal(pbl_task_error(t), PBL_EPROTO);
  const char *msg = pbl_task_message(t);
  assert_non_null(strstr(msg, "shell startup output"));
  assert_non_null(strstr(msg, "Welcome to node7\\n"));
  assert_non_null(strstr(msg, "through ssh"));
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* process_init, max_tasks and respawns through ssh; close and join. */
static void test_pool_rules(void **state) {
  F(state);
  pbl_pool_opts o = {.max_tasks = 2,
                     .process_init = fn_init_keep,
                     .init_arg = "remote-init",
                     .init_len = 12};
  pbl_pool_t *p = ssh_pool(f, 2, 0, &o);
  pbl_task_t *t[6];
  for (int i = 0; i < 6; i++)
    t[i] = submit(p, fn_init_seen, NULL, 0, NULL);
  assert_int_equal(pbl_pool_close(p), 0);
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  int pids[6];
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    size_t len;
    const char *r = pbl_task_bytes(t[i], &len);
    assert_int_equal(len, 12);
    assert_string_equal(r, "remote-init");
    pids[i] = pbl_task_pid(t[i]);
    pbl_task_release(t[i]);
  }
  for (int i = 0; i < 6; i++)
    for (int j = i + 1; j < 6; j++)
      if (pids[i] == pids[j]) /* at most two tasks a worker */
        for (int k = j + 1; k < 6; k++)
          assert_int_not_equal(pids[k], pids[i]);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_true(st.respawned >= 1);
  assert_int_equal(st.done, 6);
  assert_int_equal(st.workers, 0);
  pool_free_and_run(f, p);
}

/* A remote worker that dies expires its task with words naming the
 * launcher and the host; the next task runs on a new one. */
static void test_remote_death(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 1, 0, &o);
  pbl_task_t *a = submit(p, fn_exit3, NULL, 0, NULL);
  pbl_task_t *b = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_state_of(a), PBL_EXPIRED);
  const char *msg = pbl_task_message(a);
  assert_non_null(strstr(msg, "through ssh"));
  assert_non_null(strstr(msg, "ssh exited with status 3"));
  assert_int_equal(pbl_task_error(b), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  pbl_task_release(a);
  pbl_task_release(b);
  pool_free_and_run(f, p);
}

/* Stop with remote tasks running: they end cancelled, the workers go. */
static void test_stop(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 2, 0, &o);
  pbl_task_t *t[4];
  for (int i = 0; i < 4; i++)
    t[i] = submit(p, i % 2 ? fn_sleep : fn_ignore_term, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t[0], 60000));
  int pid = pbl_task_pid(t[0]);
  assert_int_equal(pbl_pool_stop(p), 0);
  run_dry(f);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_CANCELLED);
    pbl_task_release(t[i]);
  }
  assert_worker_gone(f, pid);
  pool_free_and_run(f, p);
}

static bool on_closed_called;

static void on_loop_closed(pbl_loop_t *pl) {
  (void)pl;
  on_closed_called = true;
}

/* pbl_loop_close with a remote task running: it ends cancelled, and no
 * remote worker is left. */
static void test_loop_close(void **state) {
  F(state);
  pbl_pool_opts o = {0};
  pbl_pool_t *p = ssh_pool(f, 1, 0, &o);
  pbl_task_t *t = submit(p, fn_ignore_term, NULL, 0, NULL);
  assert_true(pbl_test_run_until(&f->uv, task_running, t, 60000));
  int pid = pbl_task_pid(t);
  on_closed_called = false;
  pbl_loop_close(f->pl, on_loop_closed);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(on_closed_called);
  assert_int_equal(pbl_task_state_of(t), PBL_CANCELLED);
  pbl_task_release(t);
  pbl_pool_free(p);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_worker_gone(f, pid);
}

static int teardown_closed_ssh(void **state) {
  pbl_test_sshd_stop(&sshd);
  return pbl_test_teardown_closed(state);
}

/* Launchers without sshd. */

/* `workers` with launchers is a mistake; a launcher's argv must name a
 * program; {.argv = NULL, .workers = 4} is four local workers. */
static void test_options(void **state) {
  F(state);
  const char *sh[] = {"sh", "-c", "exec \"$@\"", "sh", NULL};
  const char *empty[] = {NULL};
  pbl_launcher l = {sh, 1};
  pbl_pool_t *p = NULL;
  pbl_pool_opts o = {.workers = 2, .launchers = &l, .n_launchers = 1};
  assert_int_equal(pbl_process_pool_new(f->pl, &o, &p), UV_EINVAL);
  o = (pbl_pool_opts){.launchers = &l};
  assert_int_equal(pbl_process_pool_new(f->pl, &o, &p), UV_EINVAL);
  o = (pbl_pool_opts){.n_launchers = 1};
  assert_int_equal(pbl_process_pool_new(f->pl, &o, &p), UV_EINVAL);
  l.argv = empty;
  o = (pbl_pool_opts){.launchers = &l, .n_launchers = 1};
  assert_int_equal(pbl_process_pool_new(f->pl, &o, &p), UV_EINVAL);
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), UV_EINVAL);
  assert_null(p);
  l = (pbl_launcher){NULL, 4};
  p = new_ppool(f, &o);
  char gate[128];
  test_path(gate, sizeof(gate), "options-gate");
  pbl_task_t *t[8];
  for (int i = 0; i < 8; i++)
    t[i] = submit(p, fn_wait_file, gate, strlen(gate) + 1, NULL);
  pbl_pool_stats_t st;
  await_running(f, t, 8, 4);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.workers, 4);
  touch_file(gate);
  run_dry(f);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    assert_int_equal(parent_of(pid_result(t[i])), (long)getpid());
    pbl_task_release(t[i]);
  }
  unlink(gate);
  pool_free_and_run(f, p);
}

/* A worker slow to start (its launcher takes a second): its first task's
 * timeout counts from the task's start, not from the worker's. */
static void test_slow_start_not_timed(void **state) {
  F(state);
  const char *sh[] = {"sh", "-c", "sleep 1; exec \"$@\"", "sh", NULL};
  pbl_launcher l = {sh, 1};
  pbl_pool_opts o = {.launchers = &l, .n_launchers = 1, .kill_grace_ms = 300};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_opts to = {.timeout_ms = 500};
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, &to);
  run_dry(f);
  assert_int_equal(pbl_task_error(t), 0);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* Junk before the handshake, through a local shell as launcher. */
static void test_junk_local_launcher(void **state) {
  F(state);
  const char *sh[] = {"sh", "-c", "echo junk; exec \"$@\"", "sh", NULL};
  pbl_launcher l = {sh, 1};
  pbl_pool_opts o = {.launchers = &l, .n_launchers = 1, .kill_grace_ms = 300};
  pbl_pool_t *p = new_ppool(f, &o);
  pbl_task_t *t = submit(p, fn_pid, NULL, 0, NULL);
  run_dry(f);
  assert_int_equal(pbl_task_error(t), PBL_EPROTO);
  assert_non_null(strstr(pbl_task_message(t), "\"junk\\n\""));
  assert_non_null(strstr(pbl_task_message(t), "shell startup output"));
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  if (!pbl_test_sshd_available())
    return 77;
  const struct CMUnitTest tests[] = {
      T(test_options),
      T(test_slow_start_not_timed),
      T(test_junk_local_launcher),
      S(test_binary_payloads),
      S(test_mixed_local_and_remote),
      S(test_timeout_kills_remote),
      S(test_ignoring_sigterm_dies),
      S(test_ssh_killed),
      S(test_shell_startup_output),
      S(test_pool_rules),
      S(test_remote_death),
      S(test_stop),
      cmocka_unit_test_setup_teardown(test_loop_close, setup_ssh,
                                      teardown_closed_ssh),
      S(test_sixteen_workers),
  };
  return cmocka_run_group_tests_name("remote", tests, NULL, NULL);
}
