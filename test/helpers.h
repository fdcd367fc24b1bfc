/* Test fixture and bounded waits shared by the test programs.
 *
 * Every test that owns a loop uses the fixture: setup makes a uv loop and
 * a binding and counts the open fds and threads; teardown first proves,
 * with the binding still open (its close would kill, reap and close what
 * a test left behind), that nothing outlived the test: the loop runs dry,
 * the fd count is back, no process the test started is left (children
 * and grandchildren, running or zombie), the thread count is back, and
 * no process the test started reported a leak or an error (see
 * pbl_test_take_reports). Then it closes the binding, counts its
 * closed_cb (once, on a later turn), and proves uv_loop_close() returns 0
 * (no handle left) and the fds are back to before the loop. */
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
  size_t fds_before; /* before the loop and binding */
  size_t fds_bound;  /* with the loop and binding */
  size_t threads_before;
  int closed_calls; /* the binding's closed_cb, at teardown */
  uv_thread_t loop_thread;
} pbl_test_fixture;

int pbl_test_setup(void **state);
/* What the first setup does once, for a test that counts fds or threads
 * without the fixture: libuv's process-wide fds and pool threads, and
 * TSan's thread, made before the count; the reports directory. */
void pbl_test_warm_up(void);
int pbl_test_teardown(void **state);
/* For a test that closed the fixture's binding itself (and counted its
 * closed_cb): the same proofs, after the close. */
int pbl_test_teardown_closed(void **state);

/* In a test: the fixture, as f. */
#define F(state) pbl_test_fixture *f = *(state)
/* In a test list: a test with the fixture around it. */
#define T(name)                                                                \
  cmocka_unit_test_setup_teardown(name, pbl_test_setup, pbl_test_teardown)

/* Open file descriptors of this process. */
size_t pbl_test_count_fds(void);
/* Threads of this process. */
size_t pbl_test_count_threads(void);
/* true once this process has n threads again (a joined thread may stay
 * listed for a moment: this looks again for up to 2 s). */
bool pbl_test_threads_back_to(size_t n);
/* Asserts that no process this one started is left: no child (running
 * or zombie), no descendant of one, and no process that inherited this
 * one's mark in its environment (a grandchild reparented to init). A
 * process killed a moment ago is given up to 5 s to be gone. */
void pbl_test_assert_no_children(void);
/* For a program that checks without cmocka (the chaos test): marks this
 * process's environment as the setup does, so that the processes it
 * starts, and theirs, are found; and how many of them are left after up
 * to within_ms (each printed). Neither fails a test. */
void pbl_test_mark_children(void);
size_t pbl_test_left_behind(int64_t within_ms);

/* Reports of the processes this program starts (ASan, LeakSanitizer,
 * UBSan and TSan logs, and under valgrind with --trace-children=yes each
 * traced child's log) land in pbl_test_reports_dir(), set up at the first
 * pbl_test_setup. Counts the non-empty ones (printing them if `print`)
 * and removes them all. Teardown fails a test that left any. */
size_t pbl_test_take_reports(bool print);
const char *pbl_test_reports_dir(void);
/* Whether this run checks leaks: built with ASan, or under valgrind's
 * memcheck. */
bool pbl_test_leak_checked(void);

/* The worker fixture program (test/worker-fixture.c): $PBL_TEST_FIXTURE
 * (meson sets it), else the worker-fixture next to this test program.
 * Skips the calling test (cmocka skip(), with a message) if neither
 * exists, e.g. a test program run by hand from another directory. */
const char *pbl_test_fixture_path(void);

/* true once process *(int *)pid is gone or a zombie (dead, not yet
 * reaped); a predicate for pbl_test_run_until. */
bool pbl_test_pid_gone(void *pid);

/* Asserts that command t captured exactly `want` on its stdout. */
void pbl_test_assert_stdout(const pbl_task_t *t, const char *want);
/* Keeps this thread busy for ms of real time without a loop turn: what a
 * server's long request does to its loop's cached clock, or a slow start. */
void pbl_test_busy_ms(uint64_t ms);

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
