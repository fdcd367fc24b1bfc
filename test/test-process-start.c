/* The start path every process goes through (process-start.c, reaper.c):
 * starts from a large parent, the program's own uv_spawn and SIGCHLD
 * watcher beside ours, what a child inherits (fds, signals), how a
 * program is found, and timeouts that count from the call even when the
 * loop's clock is stale. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "process-fns.h"

static pbl_task_t *command(pbl_test_fixture *f, const char *const argv[],
                           const pbl_spawn_opts *o) {
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_spawn(f->pl, argv, o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  return t;
}

/* ---- a large parent ---- */

/* The heap a server holds: PBL_TEST_HEAP_MB (default 512), every page
 * written, small pages. */
static char *big_heap(size_t *len) {
  const char *mb = getenv("PBL_TEST_HEAP_MB");
  *len = (size_t)(mb != NULL ? atol(mb) : 512) << 20;
  char *p = mmap(NULL, *len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(p != MAP_FAILED);
  (void)madvise(p, *len, MADV_NOHUGEPAGE);
  for (size_t off = 0; off < *len; off += 4096)
    p[off] = 1;
  return p;
}

#define ROUNDS 5

static void close_and_free(pbl_test_fixture *f, pbl_pool_t *pool) {
  assert_int_equal(pbl_pool_close(pool), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(pool, 0), 0);
  pbl_pool_free(pool);
}

static void test_big_parent(void **state) {
  F(state);
  size_t len;
  char *heap = big_heap(&len);
  pbl_task_t *tasks[ROUNDS], *cmds[ROUNDS], *pooled[ROUNDS];
  const char *argv[] = {"sh", "-c", "echo hi; exit 3", NULL};
  pbl_pool_opts po = {.workers = 1, .max_tasks = 1}; /* a respawn a task */
  pbl_pool_t *pool;
  assert_int_equal(pbl_process_pool_new(f->pl, &po, &pool), 0);
  for (int i = 0; i < ROUNDS; i++) {
    assert_int_equal(pbl_process(f->pl, fn_echo, "abc", 3, NULL, &tasks[i]), 0);
    assert_int_equal(pbl_spawn(f->pl, argv, NULL, &cmds[i]), 0);
    assert_int_equal(pbl_pool_process(pool, fn_pid, NULL, 0, NULL, &pooled[i]),
                     0);
  }
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  int pids[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    size_t n;
    assert_int_equal(pbl_task_state_of(tasks[i]), PBL_DONE);
    assert_memory_equal(pbl_task_bytes(tasks[i], &n), "abc", 3);
    assert_int_equal(pbl_task_state_of(cmds[i]), PBL_FAILED);
    assert_int_equal(pbl_task_exit_status(cmds[i]), 3);
    pbl_test_assert_stdout(cmds[i], "hi\n");
    assert_int_equal(pbl_task_state_of(pooled[i]), PBL_DONE);
    const int32_t *pid = pbl_task_bytes(pooled[i], &n);
    assert_int_equal(n, sizeof(*pid));
    pids[i] = *pid;
    for (int j = 0; j < i; j++)
      assert_int_not_equal(pids[i], pids[j]); /* each on a new worker */
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(pool, &st), 0);
  assert_int_equal(st.done, ROUNDS);
  assert_int_equal(st.respawned, ROUNDS - 1);
  close_and_free(f, pool);
  for (int i = 0; i < ROUNDS; i++) {
    pbl_task_release(tasks[i]);
    pbl_task_release(cmds[i]);
    pbl_task_release(pooled[i]);
  }
  munmap(heap, len);
}

/* ---- the program's own children and SIGCHLD ---- */

typedef struct {
  int64_t status;
  int exits, sigchlds;
} own_children;

static void on_own_exit(uv_process_t *p, int64_t status, int sig) {
  own_children *o = p->data;
  assert_int_equal(sig, 0);
  o->status = status;
  o->exits++;
  uv_close((uv_handle_t *)p, NULL);
}

static void on_own_sigchld(uv_signal_t *s, int signum) {
  own_children *o = s->data;
  assert_int_equal(signum, SIGCHLD);
  if (++o->sigchlds >= 1 && o->exits > 0)
    uv_signal_stop(s);
}

/* A program that spawns with uv_spawn and watches SIGCHLD itself, with
 * commands and a pool of ours beside: each side reaps its own. */
static void test_own_uv_spawn_beside(void **state) {
  F(state);
  own_children own = {0};
  uv_signal_t sigchld;
  assert_int_equal(uv_signal_init(&f->uv, &sigchld), 0);
  sigchld.data = &own;
  assert_int_equal(uv_signal_start(&sigchld, on_own_sigchld, SIGCHLD), 0);

  pbl_pool_t *pool;
  pbl_pool_opts po = {.workers = 2, .max_tasks = 1};
  assert_int_equal(pbl_process_pool_new(f->pl, &po, &pool), 0);
  pbl_task_t *pooled[4], *cmd;
  for (int i = 0; i < 4; i++)
    assert_int_equal(pbl_pool_process(pool, fn_echo, "x", 1, NULL, &pooled[i]),
                     0);
  const char *argv[] = {"sh", "-c", "exit 5", NULL};
  assert_int_equal(pbl_spawn(f->pl, argv, NULL, &cmd), 0);

  char *args[] = {"sh", "-c", "exit 7", NULL};
  uv_process_options_t opts = {
      .exit_cb = on_own_exit, .file = "sh", .args = args};
  uv_process_t proc;
  proc.data = &own;
  assert_int_equal(uv_spawn(&f->uv, &proc, &opts), 0);

  assert_int_equal(pbl_pool_close(pool), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(own.exits, 1);
  assert_int_equal(own.status, 7);
  assert_true(own.sigchlds >= 1);
  assert_int_equal(pbl_task_exit_status(cmd), 5);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(pbl_task_state_of(pooled[i]), PBL_DONE);
    pbl_task_release(pooled[i]);
  }
  pbl_task_release(cmd);
  assert_int_equal(pbl_pool_join(pool, 0), 0);
  pbl_pool_free(pool);
  uv_close((uv_handle_t *)&sigchld, NULL);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
}

/* ---- what a child inherits ---- */

/* A command gets fds 0, 1 and 2, and nothing else of ours, not even an
 * fd opened without O_CLOEXEC. ls lists its own directory fd: 3. */
static void test_command_gets_no_other_fd(void **state) {
  F(state);
  int leaky = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
  int pipefd[2];
  assert_true(leaky >= 0);
  assert_int_equal(pipe(pipefd), 0);
  const char *argv[] = {"ls", "/proc/self/fd", NULL};
  pbl_task_t *t = command(f, argv, NULL);
  close(leaky);
  close(pipefd[0]);
  close(pipefd[1]);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_test_assert_stdout(t, "0\n1\n2\n3\n");
  pbl_task_release(t);
}

/* The mask of signals n (bit n - 1) in a "Sig...:\t<hex>" line of out. */
static uint64_t sig_field(const char *out, size_t len, const char *name) {
  char buf[512];
  assert_true(len < sizeof(buf));
  memcpy(buf, out, len);
  buf[len] = '\0';
  const char *p = strstr(buf, name);
  assert_non_null(p);
  return strtoull(p + strlen(name), NULL, 16);
}

/* glibc's posix_spawn leaves its own two signals (32, 33: thread cancel
 * and setxid) ignored in the child; every glibc program installs its
 * handlers for them again at start. */
#define GLIBC_INTERNAL_SIGNALS (3ull << 31)

/* Children start with every signal at its default action and none
 * blocked, though we ignore SIGPIPE (the library does) and block some on
 * this thread; and the program's own SIGPIPE handling is left as it was. */
static void test_child_signals_default(void **state) {
  F(state);
  struct sigaction before;
  assert_int_equal(sigaction(SIGPIPE, NULL, &before), 0);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGTERM);
  assert_int_equal(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  const char *argv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status",
                        NULL};
  pbl_task_t *t = command(f, argv, NULL);
  assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  size_t len;
  const char *out = pbl_task_stdout(t, &len);
  assert_int_equal(sig_field(out, len, "SigBlk:"), 0);
  assert_int_equal(sig_field(out, len, "SigIgn:") & ~GLIBC_INTERNAL_SIGNALS, 0);
  pbl_task_release(t);
  struct sigaction after;
  assert_int_equal(sigaction(SIGPIPE, NULL, &after), 0);
  /* The library's own choice: ignored if it had the default action. */
  if (before.sa_handler == SIG_DFL)
    assert_true(after.sa_handler == SIG_IGN);
  else
    assert_true(after.sa_handler == before.sa_handler);
}

static void own_sigpipe(int sig) {
  (void)sig;
}

/* A program's own SIGPIPE handler is left as it is by the library (which
 * only ignores SIGPIPE when it has the default action); its children
 * still start with the default action. First in this program, before any
 * process start settles the choice for the whole process. */
static void test_own_sigpipe_handler_kept(void **state) {
  F(state);
  struct sigaction sa = {.sa_handler = own_sigpipe};
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGPIPE, &sa, NULL), 0);
  const char *argv[] = {"grep", "-E", "^Sig(Ign|Cgt)", "/proc/self/status",
                        NULL};
  pbl_task_t *t = command(f, argv, NULL);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  size_t len;
  const char *out = pbl_task_stdout(t, &len);
  uint64_t pipe_bit = 1ull << (SIGPIPE - 1);
  assert_int_equal(sig_field(out, len, "SigIgn:") & pipe_bit, 0);
  assert_int_equal(sig_field(out, len, "SigCgt:") & pipe_bit, 0);
  pbl_task_release(t);
  struct sigaction now;
  assert_int_equal(sigaction(SIGPIPE, NULL, &now), 0);
  assert_true(now.sa_handler == own_sigpipe);
  /* Kept for the rest of the program: a write to a dead child then fails
   * with EPIPE, as with SIG_IGN. */
}

/* ---- finding the program ---- */

static int start_error(pbl_test_fixture *f, const char *const argv[],
                       char **env, const char *cwd) {
  pbl_spawn_opts o = {.env = env, .cwd = cwd};
  pbl_task_t *t = command(f, argv, &o);
  int err = pbl_task_state_of(t) == PBL_DONE ? 0 : pbl_task_error(t);
  pbl_task_release(t);
  return err;
}

static void test_finding_the_program(void **state) {
  F(state);
  const char *tru[] = {"true", NULL};
  const char *rel[] = {"./true", NULL};
  const char *dir[] = {"/tmp", NULL};
  char *no_path[] = {"HOME=/", NULL};
  char *bad_path[] = {"PATH=/nonexistent:/also/not", NULL};
  /* The child's PATH, not ours; execvp's default without one. */
  assert_int_equal(start_error(f, tru, no_path, NULL), 0);
  assert_int_equal(start_error(f, tru, bad_path, NULL), UV_ENOENT);
  /* A relative path is looked up from the child's cwd. */
  assert_int_equal(start_error(f, rel, NULL, "/bin"), 0);
  assert_int_equal(start_error(f, rel, NULL, "/"), UV_ENOENT);
  /* Not executable: a directory, a file without x. */
  assert_int_equal(start_error(f, dir, NULL, NULL), UV_EACCES);
  char path[] = "/tmp/pbl-noexec-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  const char *noexec[] = {path, NULL};
  assert_int_equal(start_error(f, noexec, NULL, NULL), UV_EACCES);
  /* In PATH, an unexecutable match says EACCES (as execvp). */
  const char *base = strrchr(path, '/') + 1;
  const char *by_name[] = {base, NULL};
  char *tmp_path[] = {"PATH=/tmp", NULL};
  assert_int_equal(start_error(f, by_name, tmp_path, NULL), UV_EACCES);
  unlink(path);
  /* A cwd that is not a directory. */
  assert_int_equal(start_error(f, tru, NULL, "/dev/null"), UV_ENOTDIR);
}

/* ---- timeouts from a stale clock ---- */

typedef struct {
  uint64_t called_ns, ended_ns;
} stamp;

static void on_stamp(pbl_task_t *t, void *data) {
  (void)t;
  ((stamp *)data)->ended_ns = uv_hrtime();
}

/* The loop's clock stops while the program works outside the loop (here:
 * a busy wait, as a server's long request would): a timer armed now
 * against that clock would fire early by as much. */
#define STALE_MS 600
#define TIMEOUT_MS 1000

static uint64_t stale_clock(void) {
  pbl_test_busy_ms(STALE_MS);
  return uv_hrtime();
}

/* The callback comes on a later turn than the end. */
static void run_until_called(pbl_test_fixture *f, const stamp *s) {
  while (s->ended_ns == 0)
    uv_run(&f->uv, UV_RUN_ONCE);
}

static uint64_t elapsed_ms(const stamp *s) {
  return (s->ended_ns - s->called_ns) / 1000000;
}

static void test_command_timeout_from_call(void **state) {
  F(state);
  stamp s = {0};
  const char *argv[] = {"sleep", "30", NULL};
  pbl_spawn_opts o = {
      .task = {.on_done = on_stamp, .data = &s, .timeout_ms = TIMEOUT_MS}};
  pbl_task_t *t;
  uv_run(&f->uv, UV_RUN_NOWAIT); /* the clock is fresh, then goes stale */
  s.called_ns = stale_clock();
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_true(elapsed_ms(&s) >= TIMEOUT_MS);
  pbl_task_release(t);
}

static void test_process_timeout_from_call(void **state) {
  F(state);
  stamp s = {0};
  pbl_task_opts o = {.on_done = on_stamp, .data = &s, .timeout_ms = TIMEOUT_MS};
  pbl_task_t *t;
  uv_run(&f->uv, UV_RUN_NOWAIT);
  s.called_ns = stale_clock();
  assert_int_equal(pbl_process(f->pl, fn_sleep, NULL, 0, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_true(elapsed_ms(&s) >= TIMEOUT_MS);
  pbl_task_release(t);
}

static void test_pool_timeout_from_call(void **state) {
  F(state);
  stamp s = {0};
  pbl_pool_t *pool;
  pbl_pool_opts po = {.workers = 1};
  assert_int_equal(pbl_process_pool_new(f->pl, &po, &pool), 0);
  pbl_task_opts o = {.on_done = on_stamp, .data = &s, .timeout_ms = TIMEOUT_MS};
  pbl_task_t *t;
  uv_run(&f->uv, UV_RUN_NOWAIT);
  s.called_ns = stale_clock();
  assert_int_equal(pbl_pool_process(pool, fn_sleep, NULL, 0, &o, &t), 0);
  run_until_called(f, &s);
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_true(elapsed_ms(&s) >= TIMEOUT_MS);
  pbl_task_release(t);
  close_and_free(f, pool);
}

/* The initializer's limit counts from its worker's start, after the
 * call: a task waiting on a hanging initializer fails no earlier. */
static void test_init_timeout_from_call(void **state) {
  F(state);
  char flag[] = "/tmp/pbl-init-hang-XXXXXX";
  int fd = mkstemp(flag);
  assert_true(fd >= 0);
  close(fd);
  stamp s = {0};
  pbl_pool_t *pool;
  pbl_pool_opts po = {.workers = 1,
                      .process_init = fn_init_hang_if,
                      .init_arg = flag,
                      .init_len = sizeof(flag),
                      .init_timeout_ms = TIMEOUT_MS};
  assert_int_equal(pbl_process_pool_new(f->pl, &po, &pool), 0);
  pbl_task_opts o = {.on_done = on_stamp, .data = &s};
  pbl_task_t *t;
  uv_run(&f->uv, UV_RUN_NOWAIT);
  s.called_ns = stale_clock();
  assert_int_equal(pbl_pool_process(pool, fn_echo, "x", 1, &o, &t), 0);
  run_until_called(f, &s);
  unlink(flag);
  assert_int_equal(pbl_task_state_of(t), PBL_FAILED);
  assert_true(elapsed_ms(&s) >= TIMEOUT_MS);
  pbl_task_release(t);
  close_and_free(f, pool);
}

/* A command that exited with its output held by a process it left
 * behind: its output is read for the grace after the exit, no less. */
static void test_linger_from_exit(void **state) {
  F(state);
  stamp s = {0};
  const char *argv[] = {"sh", "-c", "echo started; sleep 60 & exit 0", NULL};
  pbl_spawn_opts o = {
      .task = {.on_done = on_stamp, .data = &s, .kill_grace_ms = TIMEOUT_MS}};
  pbl_task_t *t;
  uv_run(&f->uv, UV_RUN_NOWAIT);
  s.called_ns = stale_clock();
  assert_int_equal(pbl_spawn(f->pl, argv, &o, &t), 0);
  run_until_called(f, &s);
  int pid = pbl_task_pid(t);
  assert_true(pid > 0);
  (void)kill(-pid, SIGKILL); /* the background sleep, in the group */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  pbl_test_assert_stdout(t, "started\n");
  assert_true(elapsed_ms(&s) >= TIMEOUT_MS);
  pbl_task_release(t);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_own_sigpipe_handler_kept), /* first: see there */
      T(test_big_parent),
      T(test_own_uv_spawn_beside),
      T(test_command_gets_no_other_fd),
      T(test_child_signals_default),
      T(test_finding_the_program),
      T(test_command_timeout_from_call),
      T(test_process_timeout_from_call),
      T(test_pool_timeout_from_call),
      T(test_init_timeout_from_call),
      T(test_linger_from_exit),
  };
  return cmocka_run_group_tests_name("process-start", tests, NULL, NULL);
}
