/* The out-of-memory seam of test-oom, and its driver.
 *
 * The seam: the library's allocation entry points (src/core/alloc.c)
 * wrapped with -Wl,--wrap=..., counted, and the Nth one failed once armed.
 *
 * --wrap only redirects calls that cross object files: inside alloc.c,
 * pbl__strdup and pbl__vasprintf call pbl__malloc and pbl__grow calls
 * pbl__realloc directly. So every entry point is wrapped and counts as one
 * allocation; the inner calls are neither counted nor failed. pbl__grow
 * counts only when it has to grow.
 *
 * Worker processes of the test are this program re-executed: the seam is
 * armed by a flag in memory, off in a fresh process, so they never see a
 * failure. The library allocates from several threads: the counters are
 * atomic. */
#ifndef PBL_TEST_OOM_SEAM_H
#define PBL_TEST_OOM_SEAM_H

#include <stdbool.h>

#include "helpers.h"

/* From now on, fail the nth allocation (1-based), once; 0: count only. */
void pbl_oom_arm(long n);
/* Stops failing. Returns true if a failure was injected since the arm. */
bool pbl_oom_disarm(void);
/* true once the armed failure was injected. */
bool pbl_oom_injected(void);
/* The N armed (0: none). */
long pbl_oom_n(void);
/* Allocations counted since the last arm. */
long pbl_oom_calls(void);
/* Blocks the library holds: allocations that succeeded less frees. */
long pbl_oom_live(void);

/* The driver. pbl_oom_every_n(what, s) runs s once without failure, then
 * once for each N = 1, 2, ... (each run on a fresh fixture, armed from
 * after pbl_test_setup to after pbl_test_teardown) until a run needs no
 * failure, and prints how many N that took. A run fails when a block the
 * library allocated is still allocated after the teardown, or (after the
 * first run, which may start libuv's threads) the process has a thread
 * more than before. PBL_OOM_FROM=N starts at N; PBL_OOM_TRACE prints a
 * backtrace of the failed allocation. */
typedef void (*pbl_oom_scenario)(pbl_test_fixture *f);
void pbl_oom_every_n(const char *what, pbl_oom_scenario s);
/* A cmocka teardown: says which N failed, disarms. */
int pbl_oom_teardown(void **state);

/* Longest wait for a task or a pool: a hang fails the test. */
#define PBL_OOM_HANG_MS 20000

/* A call's return under injection: 0, or UV_ENOMEM once a failure was
 * injected; else the test fails. Returns err. */
#define PBL_OOM_CALL(expr) pbl_oom_call((expr), #expr, __FILE__, __LINE__)
int pbl_oom_call(int err, const char *what, const char *file, int line);
/* An ended task's end under injection: true if 0; false for UV_ENOMEM
 * once a failure was injected; else (or not ended) the test fails. */
bool pbl_oom_ended_ok(pbl_task_t *t);
/* A pbl_done_cb that counts; pbl_oom_callbacks(): calls in this run. */
void pbl_oom_on_done(pbl_task_t *t, void *data);
int pbl_oom_callbacks(void);

#endif
