/* What the pool test programs share: thread identities that are never
 * reused, and small task functions. Header-only: each test program includes it
 * once. */
#ifndef PBL_TEST_POOL_HELPERS_H
#define PBL_TEST_POOL_HELPERS_H

#include "helpers.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* The fixture proves every pool thread was joined (its thread count). */
#define pool_test_threads_back_to pbl_test_threads_back_to
#define pool_test_warm_up pbl_test_warm_up

/* A serial number per thread, never reused (pthread ids are). */
static _Atomic int pool_test_next_serial;
static _Thread_local int pool_test_serial;

static inline int thread_serial(void) {
  if (pool_test_serial == 0)
    pool_test_serial = atomic_fetch_add(&pool_test_next_serial, 1) + 1;
  return pool_test_serial;
}

static inline void *serial_fn(void *arg) {
  (void)arg;
  return (void *)(intptr_t)thread_serial();
}

static inline void *identity(void *arg) {
  return arg;
}

static inline void *gated(void *arg) {
  pbl_test_gate_pass(arg);
  return arg;
}

/* Returns once its task was cancelled, timed out or its pool stopped:
 * what a long job that polls pbl_cancelled() does. */
static inline void *until_cancelled(void *arg) {
  (void)arg;
  while (!pbl_cancelled())
    uv_sleep(1);
  return NULL;
}

/* Counts callbacks on the loop thread. */
typedef struct {
  int calls;
  int ok, cancelled, failed, timed_out;
} pool_cb_count;

static inline void count_cb(pbl_task_t *t, void *data) {
  pool_cb_count *c = data;
  c->calls++;
  switch (pbl_task_error(t)) {
  case 0:
    c->ok++;
    break;
  case UV_ECANCELED:
    c->cancelled++;
    break;
  case UV_ETIMEDOUT:
    c->timed_out++;
    break;
  default:
    c->failed++;
    break;
  }
}

/* A thread pool on the fixture's binding. */
static inline pbl_pool_t *new_pool(pbl_test_fixture *f, unsigned workers,
                                   unsigned max_tasks) {
  pbl_pool_opts o = {.workers = workers, .max_tasks = max_tasks};
  pbl_pool_t *p = NULL;
  assert_int_equal(pbl_thread_pool_new(f->pl, &o, &p), 0);
  return p;
}

/* Frees a pool and runs the loop until it is gone. */
static inline void pool_free_and_run(pbl_test_fixture *f, pbl_pool_t *p) {
  pbl_pool_free(p);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
}

#endif
