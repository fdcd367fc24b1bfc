#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void pbl_test_assert_no_children(void) {
  int status;
  pid_t pid = waitpid(-1, &status, WNOHANG);
  if (pid > 0)
    fail_msg("a child (pid %d) was left as a zombie", (int)pid);
  if (pid == 0)
    fail_msg("a child process is still running");
  assert_int_equal(errno, ECHILD);
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

/* libuv opens process-wide fds once (its signal pipe, at the first
 * uv_loop_init): make them before the first count. */
static void warm_up_libuv(void) {
  static bool done;
  uv_loop_t l;
  if (done)
    return;
  assert_int_equal(uv_loop_init(&l), 0);
  assert_int_equal(uv_loop_close(&l), 0);
  done = true;
}

int pbl_test_setup(void **state) {
  pbl_test_fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  warm_up_libuv();
  f->fds_before = pbl_test_count_fds();
  assert_int_equal(uv_loop_init(&f->uv), 0);
  assert_int_equal(pbl_loop_new(&f->uv, &f->pl), 0);
  f->loop_thread = uv_thread_self();
  *state = f;
  return 0;
}

int pbl_test_teardown(void **state) {
  pbl_test_fixture *f = *state;
  pbl_loop_close(f->pl, NULL);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->uv), 0); /* UV_EBUSY: a handle leaked */
  assert_int_equal(pbl_test_count_fds(), f->fds_before);
  pbl_test_assert_no_children();
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
