#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Entries of a /proc directory, but . and .. */
static size_t count_entries(const char *path) {
  DIR *d = opendir(path);
  assert_non_null(d);
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

size_t pbl_test_count_fds(void) {
  return count_entries("/proc/self/fd") - 1; /* the directory's own fd */
}

size_t pbl_test_count_threads(void) {
  return count_entries("/proc/self/task");
}

/* The direct children's check: waitpid finds none, running or zombie. */
static void assert_no_direct_child(void) {
  int status;
  pid_t pid = waitpid(-1, &status, WNOHANG);
  if (pid > 0)
    fail_msg("a child (pid %d) was left as a zombie", (int)pid);
  if (pid == 0)
    fail_msg("a child process is still running");
  assert_int_equal(errno, ECHILD);
}

/* Every process started under this one carries this in its environment
 * (set at the first setup, inherited unless a test gives a command an
 * env of its own): a grandchild whose parent died, reparented to init,
 * is still found by it. */
#define ROOT_VAR "PBL_TEST_ROOT"

/* pid's state letter and ppid from /proc/pid/stat; false if it is gone. */
static bool read_stat(long pid, char *state, long *ppid) {
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return false;
  bool ok = fgets(line, sizeof(line), fp) != NULL;
  fclose(fp);
  char *end = ok ? strrchr(line, ')') : NULL; /* comm may hold ") " */
  return end != NULL && sscanf(end + 1, " %c %ld", state, ppid) == 2;
}

/* Whether pid's ppid chain leads to this process. */
static bool descends_from_me(long pid) {
  long me = (long)getpid();
  for (int depth = 0; depth < 64 && pid > 1; depth++) {
    char state;
    long ppid;
    if (!read_stat(pid, &state, &ppid))
      return false;
    if (ppid == me)
      return true;
    pid = ppid;
  }
  return false;
}

/* Whether pid's environment holds ROOT_VAR=<this process>. */
static bool marked_as_mine(long pid) {
  char path[64], want[64];
  snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
  int n = snprintf(want, sizeof(want), ROOT_VAR "=%ld", (long)getpid());
  FILE *fp = fopen(path, "r"); /* another user's: EACCES, not ours */
  if (fp == NULL)
    return false;
  bool found = false;
  char var[256];
  size_t len = 0;
  int c;
  while (!found && (c = getc(fp)) != EOF) {
    if (c != '\0') {
      if (len < sizeof(var) - 1)
        var[len++] = (char)c;
      continue;
    }
    var[len] = '\0';
    found = len == (size_t)n && memcmp(var, want, len) == 0;
    len = 0;
  }
  fclose(fp);
  return found;
}

/* Processes this one started, directly or not, that are still there:
 * running, or a zombie of ours (a zombie of init's is as good as gone).
 * Writes up to `max` of them into pids; returns how many there are. */
static size_t find_descendants(long *pids, size_t max) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  long me = (long)getpid();
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 1 || pid == me)
      continue;
    char state;
    long ppid;
    if (!read_stat(pid, &state, &ppid))
      continue;
    bool mine = descends_from_me(pid) ||
                (state != 'Z' && state != 'X' && marked_as_mine(pid));
    if (mine && n++ < max)
      pids[n - 1] = pid;
  }
  closedir(d);
  return n;
}

/* How many processes this test started are left (printed), after up to
 * 5 s: a process killed with its group dies at once but is gone from
 * /proc only once init reaped it (an event waited for, bounded). With
 * `kill_them`, those that are not our own children get SIGKILL, so that
 * one test's leftovers do not fail the tests after it. */
static size_t left_behind_within(bool kill_them, int64_t ms) {
  long pids[8];
  size_t n = 0;
  for (int64_t i = 0; i < ms / 5; i++) {
    n = find_descendants(pids, 8);
    if (n == 0)
      break;
    uv_sleep(5);
  }
  for (size_t i = 0; i < n && i < 8; i++) {
    char state = '?';
    long ppid = 0;
    (void)read_stat(pids[i], &state, &ppid);
    print_error("left behind: pid %ld, state %c, parent %ld\n", pids[i], state,
                ppid);
    if (kill_them && ppid != (long)getpid())
      (void)kill((pid_t)pids[i], SIGKILL);
  }
  return n;
}

static size_t left_behind(bool kill_them) {
  return left_behind_within(kill_them, 5000);
}

void pbl_test_mark_children(void) {
  char v[32];
  snprintf(v, sizeof(v), "%ld", (long)getpid());
  if (setenv(ROOT_VAR, v, 1) != 0)
    abort();
}

size_t pbl_test_left_behind(int64_t within_ms) {
  return left_behind_within(false, within_ms);
}

void pbl_test_assert_no_children(void) {
  size_t n = left_behind(false);
  if (n > 0)
    fail_msg("%zu process(es) started by this test outlived it", n);
  assert_no_direct_child();
}

const char *pbl_test_fixture_path(void) {
  static char path[4096];
  const char *env = getenv("PBL_TEST_FIXTURE");
  if (env != NULL && env[0] != '\0')
    return env;
  size_t n = sizeof(path);
  if (uv_exepath(path, &n) == 0) {
    char *slash = strrchr(path, '/');
    const char name[] = "worker-fixture";
    if (slash != NULL &&
        (size_t)(slash + 1 - path) + sizeof(name) <= sizeof(path)) {
      memcpy(slash + 1, name, sizeof(name));
      if (access(path, X_OK) == 0)
        return path;
    }
  }
  print_message("PBL_TEST_FIXTURE is not set and no worker-fixture is next "
                "to this program: skipped (run it with meson test)\n");
  skip();
  return NULL; /* not reached */
}

bool pbl_test_pid_gone(void *pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", *(int *)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return true;
  bool dead =
      fgets(line, sizeof(line), fp) != NULL && strstr(line, ") Z ") != NULL;
  fclose(fp);
  return dead;
}

/* Reports of the processes a test starts: sanitizer logs (ASan with its
 * LeakSanitizer, UBSan, TSan) and valgrind logs, in a directory of this
 * program's own. A worker that leaks exits after its answer was read,
 * and its exit status is no longer looked at: its report is only seen
 * here. The options are set in this process's environment at run time,
 * so they reach only the children: the sanitizers and valgrind read
 * their options once, at start, and this program's own reports still go
 * to its stderr. Valgrind reads VALGRIND_OPTS in each traced child, and
 * puts the options of the command line after it, so they must not hold
 * a --log-file; -q keeps a clean child's log empty. */
static char reports_dir[64];

static void remove_reports_dir(void) {
  if (reports_dir[0] != '\0')
    (void)rmdir(reports_dir); /* empty by then, unless a test failed */
}

static void append_env(const char *name, const char *sep, const char *opt) {
  const char *old = getenv(name);
  char *v = NULL;
  size_t len = (old != NULL ? strlen(old) : 0) + strlen(opt) + 2;
  v = malloc(len);
  assert_non_null(v);
  if (old != NULL && old[0] != '\0')
    snprintf(v, len, "%s%s%s", old, sep, opt);
  else
    snprintf(v, len, "%s", opt);
  assert_int_equal(setenv(name, v, 1), 0);
  free(v);
}

static void reports_init(void) {
  char opt[128];
  snprintf(reports_dir, sizeof(reports_dir), "/tmp/pbl-reports-XXXXXX");
  assert_non_null(mkdtemp(reports_dir));
  atexit(remove_reports_dir);
  static const char *const sans[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS",
                                     "TSAN_OPTIONS", "LSAN_OPTIONS"};
  for (size_t i = 0; i < sizeof(sans) / sizeof(sans[0]); i++) {
    snprintf(opt, sizeof(opt), "log_path=%s/san", reports_dir);
    append_env(sans[i], ":", opt);
  }
  snprintf(opt, sizeof(opt), "--log-file=%s/vg.%%p", reports_dir);
  append_env("VALGRIND_OPTS", " ", opt);
  snprintf(opt, sizeof(opt), "%ld", (long)getpid());
  assert_int_equal(setenv(ROOT_VAR, opt, 1), 0);
}

const char *pbl_test_reports_dir(void) {
  return reports_dir;
}

size_t pbl_test_take_reports(bool print) {
  DIR *d = opendir(reports_dir);
  assert_non_null(d);
  size_t n = 0;
  struct dirent *e;
  char path[512], buf[4096];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "%s/%s", reports_dir, e->d_name);
    FILE *fp = fopen(path, "r");
    size_t got = 0, total = 0;
    if (fp != NULL) {
      while ((got = fread(buf, 1, sizeof(buf) - 1, fp)) > 0) {
        buf[got] = '\0';
        if (print && total == 0)
          print_error("---- %s ----\n", path);
        if (print && total < 64 * 1024)
          print_error("%s", buf);
        total += got;
      }
      fclose(fp);
    }
    if (total > 0)
      n++;
    (void)unlink(path);
  }
  closedir(d);
  return n;
}

bool pbl_test_leak_checked(void) {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#endif
#endif
  const char *pre = getenv("LD_PRELOAD"); /* valgrind's, in a traced run */
  return pre != NULL && strstr(pre, "vgpreload_memcheck") != NULL;
}

/* Once per program, before the first count: libuv's process-wide fds
 * (its signal pipe, at the first uv_loop_init) and threads (its pool's,
 * at the first uv_queue_work; with ThreadSanitizer, its own at the first
 * thread create) are made here, so that no test is charged with them. */
static void noop_work(uv_work_t *w) {
  (void)w;
}

static void noop_thread(void *arg) {
  (void)arg;
}

void pbl_test_warm_up(void) {
  static bool done;
  uv_loop_t l;
  uv_work_t w;
  uv_thread_t t;
  if (done)
    return;
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(uv_queue_work(&l, &w, noop_work, NULL), 0);
  assert_int_equal(uv_run(&l, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&l), 0);
  assert_int_equal(uv_thread_create(&t, noop_thread, NULL), 0);
  assert_int_equal(uv_thread_join(&t), 0);
  reports_init();
  done = true;
}

bool pbl_test_threads_back_to(size_t n) {
  for (int i = 0; i < 2000 && pbl_test_count_threads() != n; i++)
    uv_sleep(1);
  return pbl_test_count_threads() == n;
}

int pbl_test_setup(void **state) {
  pbl_test_fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  pbl_test_warm_up();
  f->threads_before = pbl_test_count_threads();
  f->fds_before = pbl_test_count_fds();
  assert_int_equal(uv_loop_init(&f->uv), 0);
  assert_int_equal(pbl_loop_new(&f->uv, &f->pl), 0);
  /* libuv keeps an fd on /dev/null per loop from its first stream on (to
   * survive EMFILE), till the loop closes: open it here. */
  uv_pipe_t p;
  assert_int_equal(uv_pipe_init(&f->uv, &p, 0), 0);
  uv_close((uv_handle_t *)&p, NULL);
  assert_int_equal(uv_run(&f->uv, UV_RUN_NOWAIT), 0);
  f->fds_bound = pbl_test_count_fds();
  f->loop_thread = uv_thread_self();
  *state = f;
  return 0;
}

static pbl_test_fixture *closing;

static void on_fixture_closed(pbl_loop_t *pl) {
  assert_non_null(closing);
  assert_ptr_equal(pl, closing->pl);
  closing->closed_calls++;
}

/* The order matters: what the test left behind is looked for while the
 * binding is still open, since closing it kills and reaps running
 * children, flags threads and closes handles, which would hide them. A
 * leftover found there fails the test once the binding is closed, so
 * that the tests after it start clean. */
int pbl_test_teardown(void **state) {
  pbl_test_fixture *f = *state;
  /* The loop runs dry: no task, pool or handle of the test keeps it. */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  const char *bad = NULL;
  size_t fds = pbl_test_count_fds();
  if (fds != f->fds_bound) {
    print_error("%zu fds open, %zu at the start\n", fds, f->fds_bound);
    bad = "an fd outlived the test";
  } else if (left_behind(true) > 0) {
    bad = "a process started by the test outlived it";
  } else if (!pbl_test_threads_back_to(f->threads_before)) {
    print_error("%zu threads, %zu at the start\n", pbl_test_count_threads(),
                f->threads_before);
    bad = "a thread outlived the test";
  } else if (pbl_test_take_reports(true) > 0) {
    bad = "a process the test started reported errors or leaks (above)";
  }
  closing = f;
  pbl_loop_close(f->pl, on_fixture_closed);
  assert_int_equal(f->closed_calls, 0); /* on a later turn */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(f->closed_calls, 1);
  closing = NULL;
  assert_int_equal(uv_loop_close(&f->uv), 0); /* UV_EBUSY: a handle leaked */
  if (bad != NULL)
    fail_msg("%s", bad);
  assert_int_equal(pbl_test_count_fds(), f->fds_before);
  pbl_test_assert_no_children();
  free(f);
  return 0;
}

int pbl_test_teardown_closed(void **state) {
  pbl_test_fixture *f = *state;
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_test_assert_no_children();
  assert_true(pbl_test_threads_back_to(f->threads_before));
  if (pbl_test_take_reports(true) > 0)
    fail_msg("a process the test started reported errors or leaks (above)");
  assert_int_equal(uv_loop_close(&f->uv), 0);
  assert_int_equal(pbl_test_count_fds(), f->fds_before);
  free(f);
  return 0;
}

typedef struct {
  bool (*pred)(void *arg);
  void *arg;
  bool expired;
} run_until_ctx;

static void on_guard(uv_timer_t *t) {
  run_until_ctx *c = t->data;
  c->expired = true;
}

static void on_tick(uv_timer_t *t) {
  (void)t; /* only keeps the loop polling */
}

bool pbl_test_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg,
                        int64_t timeout_ms) {
  run_until_ctx c = {pred, arg, false};
  uv_timer_t guard, tick;
  uv_timer_init(loop, &guard);
  uv_timer_init(loop, &tick);
  guard.data = &c;
  tick.data = NULL; /* a uv_walk may look at it */
  uv_timer_start(&guard, on_guard, (uint64_t)timeout_ms, 0);
  uv_timer_start(&tick, on_tick, 50, 50);
  bool ok = pred(arg);
  while (!ok && !c.expired) {
    uv_run(loop, UV_RUN_ONCE);
    ok = pred(arg);
  }
  uv_close((uv_handle_t *)&guard, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT); /* let the closes finish */
  return ok;
}

void pbl_test_gate_init(pbl_test_gate *g) {
  assert_int_equal(uv_mutex_init(&g->mu), 0);
  assert_int_equal(uv_cond_init(&g->cv), 0);
  g->open = false;
  g->entered = 0;
}

void pbl_test_gate_destroy(pbl_test_gate *g) {
  uv_cond_destroy(&g->cv);
  uv_mutex_destroy(&g->mu);
}

void pbl_test_gate_open(pbl_test_gate *g) {
  uv_mutex_lock(&g->mu);
  g->open = true;
  uv_cond_broadcast(&g->cv);
  uv_mutex_unlock(&g->mu);
}

void pbl_test_gate_pass(pbl_test_gate *g) {
  uv_mutex_lock(&g->mu);
  g->entered++;
  uv_cond_broadcast(&g->cv);
  while (!g->open)
    uv_cond_wait(&g->cv, &g->mu);
  uv_mutex_unlock(&g->mu);
}

bool pbl_test_gate_wait_entered(pbl_test_gate *g, int n, int64_t timeout_ms) {
  uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
  uv_mutex_lock(&g->mu);
  while (g->entered < n) {
    uint64_t now = uv_hrtime();
    if (now >= deadline)
      break;
    (void)uv_cond_timedwait(&g->cv, &g->mu, deadline - now);
  }
  bool ok = g->entered >= n;
  uv_mutex_unlock(&g->mu);
  return ok;
}

void pbl_test_assert_stdout(const pbl_task_t *t, const char *want) {
  size_t len;
  const void *p = pbl_task_stdout(t, &len);
  assert_int_equal(len, strlen(want));
  if (len > 0)
    assert_memory_equal(p, want, len);
}

void pbl_test_busy_ms(uint64_t ms) {
  uint64_t start = uv_hrtime();
  while (uv_hrtime() - start < ms * 1000000)
    ;
}
