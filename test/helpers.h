/* Test fixture and bounded waits shared by the test programs.
 *
 * Every test that owns a loop uses the fixture: setup makes a uv loop and
 * a binding and counts the open fds; teardown closes the binding, runs
 * the loop dry and proves that nothing outlived the test: uv_loop_close()
 * returns 0 (no handle left), the fd count is back, and no child process
 * (running or zombie) is left. */
#ifndef PBL_TEST_HELPERS_H
#define PBL_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pebble.h>

typedef struct {
  uv_loop_t uv;
  pbl_loop_t *pl;
  size_t fds_before;
  uv_thread_t loop_thread;
} pbl_test_fixture;

int pbl_test_setup(void **state);
int pbl_test_teardown(void **state);

/* Open file descriptors of this process. */
size_t pbl_test_count_fds(void);
/* Threads of this process. */
size_t pbl_test_count_threads(void);
/* 0 if this process has no child at all; else asserts. */
void pbl_test_assert_no_children(void);

/* The worker fixture program (test/worker-fixture.c): $PBL_TEST_FIXTURE
 * (meson sets it), else the worker-fixture next to this test program.
 * Skips the calling test (cmocka skip(), with a message) if neither
 * exists, e.g. a test program run by hand from another directory. */
const char *pbl_test_fixture_path(void);

/* true once process *(int *)pid is gone or a zombie (dead, not yet
 * reaped); a predicate for pbl_test_run_until. */
bool pbl_test_pid_gone(void *pid);

/* Runs the loop until pred(arg) is true, at most timeout_ms; a guard
 * timer keeps the loop polling meanwhile. Returns pred's final value. */
bool pbl_test_run_until(uv_loop_t *loop, bool (*pred)(void *arg), void *arg,
                        int64_t timeout_ms);

/* A gate a thread function can block on until the test opens it: lets a
 * test hold a task "running" without sleeping. */
typedef struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  bool open;
  int entered; /* threads that reached the gate */
} pbl_test_gate;
void pbl_test_gate_init(pbl_test_gate *g);
void pbl_test_gate_destroy(pbl_test_gate *g);
void pbl_test_gate_open(pbl_test_gate *g);
/* Blocks until open. Returns immediately when open. */
void pbl_test_gate_pass(pbl_test_gate *g);
/* Blocks until `n` threads have entered the gate (at most timeout_ms). */
bool pbl_test_gate_wait_entered(pbl_test_gate *g, int n, int64_t timeout_ms);

#endif
