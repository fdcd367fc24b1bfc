/* What the process pool test programs share. Header-only: each test
 * program includes it once. These programs are their own workers. */
#ifndef PBL_TEST_PROCESS_POOL_HELPERS_H
#define PBL_TEST_PROCESS_POOL_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pool-helpers.h"
#include "process-fns.h"

/* A process pool on the fixture's binding. */
static inline pbl_pool_t *new_ppool(pbl_test_fixture *f,
                                    const pbl_pool_opts *o) {
  pbl_pool_t *p = NULL;
  assert_int_equal(pbl_process_pool_new(f->pl, o, &p), 0);
  assert_non_null(p);
  return p;
}

static inline pbl_pool_t *new_ppool_n(pbl_test_fixture *f, unsigned workers,
                                      unsigned max_tasks) {
  pbl_pool_opts o = {.workers = workers, .max_tasks = max_tasks};
  return new_ppool(f, &o);
}

static inline pbl_task_t *submit(pbl_pool_t *p, pbl_process_fn fn,
                                 const void *in, size_t len,
                                 const pbl_task_opts *o) {
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_pool_process(p, fn, in, len, o, &t), 0);
  assert_non_null(t);
  return t;
}

static inline pbl_task_t *submit_ms(pbl_pool_t *p, uint32_t ms,
                                    const pbl_task_opts *o) {
  return submit(p, fn_sleep_ms, &ms, sizeof(ms), o);
}

/* An input for fn_sleep_touch: sleep ms, then create path ("": none). */
typedef struct {
  uint32_t ms;
  char path[124];
} sleep_touch_in;

static inline pbl_buf sleep_touch(sleep_touch_in *in, uint32_t ms,
                                  const char *path) {
  in->ms = ms;
  snprintf(in->path, sizeof(in->path), "%s", path);
  return (pbl_buf){in, sizeof(in->ms) + strlen(in->path) + 1};
}

/* A file name of this test program's own under /tmp, removed. */
static inline void test_path(char *buf, size_t len, const char *what) {
  snprintf(buf, len, "/tmp/pbl-test-%ld-%s", (long)getpid(), what);
  (void)unlink(buf);
}

static inline bool file_exists(const char *path) {
  return access(path, F_OK) == 0;
}

/* file_exists as a predicate for pbl_test_run_until. */
static inline bool file_exists_cb(void *path) {
  return file_exists(path);
}

/* The pid fn_pid returned. */
static inline int32_t pid_result(pbl_task_t *t) {
  size_t len = 0;
  const void *b = pbl_task_bytes(t, &len);
  assert_non_null(b);
  assert_int_equal(len, sizeof(int32_t));
  int32_t pid;
  memcpy(&pid, b, sizeof(pid));
  return pid;
}

/* Runs the loop until it has no task left; an idle pool lets it go. */
static inline void run_dry(pbl_test_fixture *f) {
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
}

static inline bool task_ended(void *arg) {
  return pbl_task_state_of(arg) >= PBL_DONE;
}

static inline bool task_running(void *arg) {
  return pbl_task_state_of(arg) == PBL_RUNNING;
}

/* true if process `pid` exists (a zombie included). */
static inline bool pid_alive(int pid) {
  return pid > 0 && kill(pid, 0) == 0;
}

#endif
