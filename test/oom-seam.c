/* See oom-seam.h. */
#include "oom-seam.h"

#include <execinfo.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool-helpers.h"

#include <uv.h>

void *__real_pbl__malloc(size_t n);
void *__real_pbl__calloc(size_t n, size_t size);
void *__real_pbl__realloc(void *p, size_t n);
void __real_pbl__free(void *p);
char *__real_pbl__strdup(const char *s);
char *__real_pbl__vasprintf(const char *fmt, va_list ap);
int __real_pbl__grow(void **p, size_t *cap, size_t need, size_t size);

void *__wrap_pbl__malloc(size_t n);
void *__wrap_pbl__calloc(size_t n, size_t size);
void *__wrap_pbl__realloc(void *p, size_t n);
void __wrap_pbl__free(void *p);
char *__wrap_pbl__strdup(const char *s);
char *__wrap_pbl__vasprintf(const char *fmt, va_list ap);
int __wrap_pbl__grow(void **p, size_t *cap, size_t need, size_t size);

static atomic_bool armed;
static atomic_long fail_at;
static atomic_long calls;
static atomic_bool injected;
static atomic_long live;

void pbl_oom_arm(long n) {
  atomic_store(&calls, 0);
  atomic_store(&injected, false);
  atomic_store(&fail_at, n);
  atomic_store(&armed, true);
}

bool pbl_oom_disarm(void) {
  atomic_store(&armed, false);
  return atomic_load(&injected);
}

bool pbl_oom_injected(void) {
  return atomic_load(&injected);
}

long pbl_oom_n(void) {
  return atomic_load(&armed) ? atomic_load(&fail_at) : 0;
}

long pbl_oom_calls(void) {
  return atomic_load(&calls);
}

long pbl_oom_live(void) {
  return atomic_load(&live);
}

/* Counts one allocation; true if it is the one to fail. */
static bool fail_this(void) {
  if (!atomic_load(&armed))
    return false;
  long k = atomic_fetch_add(&calls, 1) + 1;
  if (k != atomic_load(&fail_at))
    return false;
  atomic_store(&injected, true);
  if (getenv("PBL_OOM_TRACE") != NULL) { /* where it failed, to stderr */
    void *frames[16];
    backtrace_symbols_fd(frames, backtrace(frames, 16), STDERR_FILENO);
  }
  return true;
}

static void *counted(void *p) {
  if (p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

void *__wrap_pbl__malloc(size_t n) {
  return fail_this() ? NULL : counted(__real_pbl__malloc(n));
}

void *__wrap_pbl__calloc(size_t n, size_t size) {
  return fail_this() ? NULL : counted(__real_pbl__calloc(n, size));
}

void *__wrap_pbl__realloc(void *p, size_t n) {
  if (fail_this())
    return NULL; /* p untouched, as realloc leaves it */
  void *q = __real_pbl__realloc(p, n);
  return p == NULL ? counted(q) : q;
}

void __wrap_pbl__free(void *p) {
  if (p != NULL)
    atomic_fetch_sub(&live, 1);
  __real_pbl__free(p);
}

char *__wrap_pbl__strdup(const char *s) {
  return fail_this() ? NULL : counted(__real_pbl__strdup(s));
}

char *__wrap_pbl__vasprintf(const char *fmt, va_list ap) {
  return fail_this() ? NULL : counted(__real_pbl__vasprintf(fmt, ap));
}

int __wrap_pbl__grow(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return __real_pbl__grow(p, cap, need, size); /* no allocation */
  if (fail_this())
    return UV_ENOMEM;
  bool fresh = *p == NULL;
  int err = __real_pbl__grow(p, cap, need, size);
  if (err == 0 && fresh)
    atomic_fetch_add(&live, 1);
  return err;
}

int pbl_oom_call(int err, const char *what, const char *file, int line) {
  if (err == 0 || (err == UV_ENOMEM && pbl_oom_injected()))
    return err;
  fail_msg("%s:%d: N=%ld: %s returned %s", file, line, pbl_oom_n(), what,
           pbl_err_name(err));
  return err; /* not reached */
}

bool pbl_oom_ended_ok(pbl_task_t *t) {
  int err = pbl_task_error(t);
  if (pbl_task_state_of(t) < PBL_DONE)
    fail_msg("N=%ld: task %s has not ended", pbl_oom_n(),
             pbl_task_name(t) != NULL ? pbl_task_name(t) : "?");
  if (err == 0)
    return true;
  if (pbl_oom_injected() && err == UV_ENOMEM)
    return false;
  fail_msg("N=%ld: task %s ended %s (%s)", pbl_oom_n(),
           pbl_task_name(t) != NULL ? pbl_task_name(t) : "?", pbl_err_name(err),
           pbl_task_message(t) != NULL ? pbl_task_message(t) : "");
  return false; /* not reached */
}

static int cb_calls; /* loop thread */

void pbl_oom_on_done(pbl_task_t *t, void *data) {
  (void)t, (void)data;
  cb_calls++;
}

int pbl_oom_callbacks(void) {
  return cb_calls;
}

/* The driver. */

static size_t threads_before; /* 0: not checked */
static long current_n = -1;   /* the run under way, for a failure report */

/* One run with the nth allocation failed (0: none). Returns whether a
 * failure was injected. */
static bool run_once(pbl_oom_scenario s, long n) {
  void *state = NULL;
  long live0 = pbl_oom_live();
  cb_calls = 0;
  current_n = n;
  pbl_test_setup(&state);
  pbl_oom_arm(n);
  s(state);
  pbl_test_teardown(&state); /* armed: closing the binding allocates too */
  bool hit = pbl_oom_disarm();
  if (pbl_oom_live() != live0)
    fail_msg("N=%ld: %ld block(s) allocated by the library were not freed", n,
             pbl_oom_live() - live);
  if (threads_before != 0 && !pool_test_threads_back_to(threads_before))
    fail_msg("N=%ld: a thread of the library was not joined", n);
  return hit;
}

void pbl_oom_every_n(const char *what, pbl_oom_scenario s) {
  threads_before = 0;
  (void)run_once(s, 0); /* no failure: what succeeds must be right */
  threads_before = pbl_test_count_threads(); /* libuv's pool started */
  long calls0 = pbl_oom_calls();
  const char *from = getenv("PBL_OOM_FROM"); /* to debug one N */
  long n = from != NULL ? atol(from) : 1;
  while (run_once(s, n))
    n++;
  print_message("%s: %ld allocations, each failed in turn (%ld in the "
                "run without failure)\n",
                what, n - 1, calls0);
  assert_true(n > 1); /* the path allocates: else the test proves nothing */
  current_n = -1;
}

int pbl_oom_teardown(void **state) {
  (void)state;
  if (current_n >= 0)
    print_message("failed at N=%ld\n", current_n);
  current_n = -1;
  (void)pbl_oom_disarm();
  return 0;
}
