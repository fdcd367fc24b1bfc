/* Priorities and queue deadlines (pbl_task_opts.priority and
 * queue_timeout_ms) in thread pools, process pools and pbl_thread.
 *
 * Order is observed under a held worker: a gated task keeps the only
 * worker (or libuv's only thread: UV_THREADPOOL_SIZE=1, set in main)
 * busy while the others queue, so the order they then run in is the
 * queue's. A process pool with an initializer is not ready before every
 * task of the test is queued. */
#include <stdlib.h>

#include "process-pool-helpers.h"

/* ---- the order tasks ran in ---- */

enum { MAX_RUNS = 512 };

typedef struct {
  uv_mutex_t mu;
  int order[MAX_RUNS];
  int n;
} run_log;

typedef struct {
  run_log *log;
  int id;
} logged;

static void *log_run(void *arg) {
  logged *l = arg;
  uv_mutex_lock(&l->log->mu);
  if (l->log->n < MAX_RUNS)
    l->log->order[l->log->n++] = l->id;
  uv_mutex_unlock(&l->log->mu);
  return NULL;
}

/* Callbacks in the order they run (one worker: the run order). */
static void log_done(pbl_task_t *t, void *data) {
  run_log *log = data;
  void *r = NULL;
  if (pbl_task_get(t, 0, &r) == 0 && r != NULL && log->n < MAX_RUNS) {
    int id;
    memcpy(&id, r, sizeof(id));
    log->order[log->n++] = id;
  }
}

static void log_init(run_log *log) {
  memset(log, 0, sizeof(*log));
  assert_int_equal(uv_mutex_init(&log->mu), 0);
}

/* Expected order: by priority, highest first, equal ones as submitted
 * (a stable sort of ids by descending priority). */
static void expect_order(const int *prio, int n, int *want) {
  for (int i = 0; i < n; i++)
    want[i] = i;
  for (int i = 1; i < n; i++) /* insertion sort: stable */
    for (int j = i; j > 0 && prio[want[j - 1]] < prio[want[j]]; j--) {
      int tmp = want[j];
      want[j] = want[j - 1];
      want[j - 1] = tmp;
    }
}

static void assert_order(run_log *log, const int *want, int n) {
  assert_int_equal(log->n, n);
  for (int i = 0; i < n; i++)
    if (log->order[i] != want[i])
      fail_msg("run %d was task %d, expected %d", i, log->order[i], want[i]);
}

/* Submits n logged thread tasks of the given priorities under a gate
 * holding the only worker, opens it, and checks the order they ran in. */
typedef int (*submit_fn)(void *where, void *(*fn)(void *), void *arg,
                         const pbl_task_opts *o);

static int to_pool(void *where, void *(*fn)(void *), void *arg,
                   const pbl_task_opts *o) {
  return pbl_pool_thread(where, fn, arg, o, NULL);
}

static int to_thread(void *where, void *(*fn)(void *), void *arg,
                     const pbl_task_opts *o) {
  return pbl_thread(where, fn, arg, o, NULL);
}

static void check_order(pbl_test_fixture *f, submit_fn submit_to, void *where,
                        const int *prio, int n) {
  run_log log;
  log_init(&log);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  assert_int_equal(submit_to(where, gated, &gate, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  logged *ids = calloc((size_t)n, sizeof(*ids));
  assert_non_null(ids);
  for (int i = 0; i < n; i++) {
    ids[i] = (logged){&log, i};
    pbl_task_opts o = {.priority = prio[i]};
    assert_int_equal(submit_to(where, log_run, &ids[i], &o), 0);
  }
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  int *want = calloc((size_t)n, sizeof(*want));
  assert_non_null(want);
  expect_order(prio, n, want);
  assert_order(&log, want, n);
  free(want);
  free(ids);
  pbl_test_gate_destroy(&gate);
  uv_mutex_destroy(&log.mu);
}

static const int few[] = {0, 5, 0, 10, 5, -1, 10, 0};
#define NFEW ((int)(sizeof(few) / sizeof(few[0])))

static void test_thread_pool_order(void **state) {
  F(state);
  pbl_pool_t *p = new_pool(f, 1, 0);
  check_order(f, to_pool, p, few, NFEW);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, NFEW + 1); /* the gate too: stats unchanged */
  assert_int_equal(st.queued, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
}

static void test_thread_order(void **state) {
  F(state);
  check_order(f, to_thread, f->pl, few, NFEW);
}

/* More distinct priorities than the lanes kept inline, in a shuffled
 * order: lanes are added, dropped once empty and grown. */
static void many_priorities(int *prio, int n) {
  uint32_t x = 12345;
  for (int i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    prio[i] = (int)((x >> 16) % 26) - 5; /* -5..20 */
  }
}

static void test_many_priorities(void **state) {
  F(state);
  enum { N = 300 };
  int prio[N];
  many_priorities(prio, N);
  pbl_pool_t *p = new_pool(f, 1, 0);
  check_order(f, to_pool, p, prio, N);
  check_order(f, to_thread, f->pl, prio, N);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
}

/* A map's chunks take the map's priority: submitted after a backlog of
 * priority 0, a priority-7 map runs first, its items in order. */
static void test_map_priority(void **state) {
  F(state);
  pbl_pool_t *p = new_pool(f, 1, 0);
  run_log log;
  log_init(&log);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  assert_int_equal(pbl_pool_thread(p, gated, &gate, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  enum { BACKLOG = 4, MAPPED = 6 };
  logged ids[BACKLOG + MAPPED];
  void *args[MAPPED];
  for (int i = 0; i < BACKLOG + MAPPED; i++)
    ids[i] = (logged){&log, i};
  for (int i = 0; i < BACKLOG; i++)
    assert_int_equal(pbl_pool_thread(p, log_run, &ids[i], NULL, NULL), 0);
  for (int i = 0; i < MAPPED; i++)
    args[i] = &ids[BACKLOG + i];
  pbl_task_opts o = {.priority = 7};
  assert_int_equal(pbl_pool_map_thread(p, log_run, args, MAPPED, 4, &o, NULL),
                   0);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  int want[BACKLOG + MAPPED];
  for (int i = 0; i < MAPPED; i++)
    want[i] = BACKLOG + i;
  for (int i = 0; i < BACKLOG; i++)
    want[MAPPED + i] = i;
  assert_order(&log, want, BACKLOG + MAPPED);
  pbl_test_gate_destroy(&gate);
  uv_mutex_destroy(&log.mu);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
}

/* Cancelling queued pbl_thread tasks, the last of their priority and one
 * in the middle, leaves the lanes right for what comes after. */
static void test_thread_cancel_keeps_order(void **state) {
  F(state);
  run_log log;
  log_init(&log);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  enum { N = 7 };
  static const int prio[N] = {5, 5, 5, 5, 0, 5, 9};
  logged ids[N];
  pbl_task_t *t[N];
  for (int i = 0; i < N; i++) {
    ids[i] = (logged){&log, i};
    pbl_task_opts o = {.priority = prio[i]};
    if (i == 5) {                                 /* after the cancels below */
      assert_int_equal(pbl_task_cancel(t[3]), 0); /* priority 5's last */
      assert_int_equal(pbl_task_cancel(t[1]), 0); /* one in the middle */
    }
    assert_int_equal(pbl_thread(f->pl, log_run, &ids[i], &o, &t[i]), 0);
  }
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  const int want[] = {6, 0, 2, 5, 4};
  assert_order(&log, want, 5);
  assert_int_equal(pbl_task_state_of(t[1]), PBL_CANCELLED);
  assert_int_equal(pbl_task_state_of(t[3]), PBL_CANCELLED);
  for (int i = 0; i < N; i++)
    pbl_task_release(t[i]);
  pbl_test_gate_destroy(&gate);
  uv_mutex_destroy(&log.mu);
}

/* A process pool's worker is not ready before its initializer ran: every
 * task below is queued by then, and the one worker runs them by
 * priority. */
static int init_ok(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 0;
}
PBL_PROCESS_FN(init_ok);

static void test_process_pool_order(void **state) {
  F(state);
  pbl_pool_opts po = {.workers = 1, .process_init = init_ok};
  pbl_pool_t *p = new_ppool(f, &po);
  run_log log;
  log_init(&log);
  int ids[NFEW];
  for (int i = 0; i < NFEW; i++) {
    ids[i] = i;
    pbl_task_opts o = {.priority = few[i], .on_done = log_done, .data = &log};
    assert_int_equal(
        pbl_pool_process(p, fn_echo, &ids[i], sizeof(ids[i]), &o, NULL), 0);
  }
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  int want[NFEW];
  expect_order(few, NFEW, want);
  assert_order(&log, want, NFEW);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, NFEW);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_free(p);
  uv_mutex_destroy(&log.mu);
}

/* ---- queue deadlines ---- */

typedef struct {
  int calls;
  pbl_task_state state;
  int err;
  char message[160];
  bool gate_held; /* the gate was still closed at the callback */
  pbl_test_gate *gate;
} deadline_seen;

static void on_deadline_done(pbl_task_t *t, void *data) {
  deadline_seen *s = data;
  s->calls++;
  s->state = pbl_task_state_of(t);
  s->err = pbl_task_error(t);
  const char *m = pbl_task_message(t);
  snprintf(s->message, sizeof(s->message), "%s", m != NULL ? m : "");
  if (s->gate != NULL) {
    uv_mutex_lock(&s->gate->mu);
    s->gate_held = !s->gate->open;
    uv_mutex_unlock(&s->gate->mu);
  }
}

static bool called(void *arg) {
  return ((deadline_seen *)arg)->calls > 0;
}

static void *must_not_run(void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
  return NULL;
}

static void assert_expired_unstarted(const deadline_seen *s) {
  assert_int_equal(s->calls, 1);
  assert_int_equal(s->state, PBL_TIMED_OUT);
  assert_int_equal(s->err, UV_ETIMEDOUT);
  assert_non_null(strstr(s->message, "never started"));
  assert_true(s->gate_held); /* it did not wait for a worker to end */
}

/* Behind a held worker, a task with a queue deadline ends TIMED_OUT
 * while the worker is still held; its function never runs; a task
 * without one still runs after. Submitted on the loop thread (kind
 * "pool") or from another thread (the deadline goes to the loop). */
typedef struct {
  pbl_pool_t *p;
  pbl_task_opts *o;
  _Atomic int *runs;
  int err;
} far_submit;

static void submit_far(void *arg) {
  far_submit *a = arg;
  a->err = pbl_pool_thread(a->p, must_not_run, (void *)a->runs, a->o, NULL);
}

static void deadline_in_thread_pool(pbl_test_fixture *f, bool far) {
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  assert_int_equal(pbl_pool_thread(p, gated, &gate, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  _Atomic int runs = 0;
  deadline_seen s = {.gate = &gate};
  pbl_task_opts o = {
      .queue_timeout_ms = 50, .on_done = on_deadline_done, .data = &s};
  uint64_t t0 = uv_hrtime();
  if (far) {
    far_submit a = {p, &o, &runs, -1};
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, submit_far, &a), 0);
    assert_int_equal(uv_thread_join(&th), 0);
    assert_int_equal(a.err, 0);
  } else {
    assert_int_equal(pbl_pool_thread(p, must_not_run, &runs, &o, NULL), 0);
  }
  logged later_id = {NULL, 0};
  run_log log;
  log_init(&log);
  later_id.log = &log;
  assert_int_equal(pbl_pool_thread(p, log_run, &later_id, NULL, NULL), 0);
  assert_true(pbl_test_run_until(&f->uv, called, &s, 10000));
  uint64_t waited_ms = (uv_hrtime() - t0) / 1000000;
  assert_true(waited_ms >= 50); /* never before the deadline */
  assert_expired_unstarted(&s);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&runs), 0);
  assert_int_equal(log.n, 1); /* the task without a deadline ran */
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.done, 2);
  assert_int_equal(st.queued, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
  pbl_test_gate_destroy(&gate);
  uv_mutex_destroy(&log.mu);
}

static void test_deadline_thread_pool(void **state) {
  F(state);
  deadline_in_thread_pool(f, false);
}

static void test_deadline_from_another_thread(void **state) {
  F(state);
  deadline_in_thread_pool(f, true);
}

static void test_deadline_pbl_thread(void **state) {
  F(state);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  _Atomic int runs = 0;
  deadline_seen s = {.gate = &gate};
  pbl_task_opts o = {
      .queue_timeout_ms = 30, .on_done = on_deadline_done, .data = &s};
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_thread(f->pl, must_not_run, &runs, &o, &t), 0);
  /* A blocking get from another thread would do the same: here the
   * loop must turn for the deadline. */
  assert_true(pbl_test_run_until(&f->uv, called, &s, 10000));
  assert_expired_unstarted(&s);
  assert_int_equal(pbl_task_get(t, 0, NULL), UV_ETIMEDOUT);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(atomic_load(&runs), 0);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

/* A task that starts within its queue deadline is not touched by it,
 * however long it then runs; and the deadline's timer does not keep the
 * loop alive after the task ended. */
static void test_deadline_met(void **state) {
  F(state);
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  deadline_seen s = {0};
  pbl_task_opts o = {
      .queue_timeout_ms = 3600 * 1000, .on_done = on_deadline_done, .data = &s};
  assert_int_equal(pbl_pool_thread(p, gated, &gate, &o, NULL), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  pbl_test_gate_open(&gate);
  uint64_t t0 = uv_hrtime();
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(uv_hrtime() - t0 < 60 * 1000000000ull); /* not the hour */
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.state, PBL_DONE);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
  pbl_test_gate_destroy(&gate);
}

/* A process pool: behind a worker busy for a while, a task whose queue
 * deadline passes ends at its deadline, not when the worker is done; the
 * worker is not killed for it (it was dropped unstarted). */
static bool ended(void *arg) {
  return pbl_task_state_of(arg) >= PBL_DONE;
}

static bool running(void *arg) {
  return pbl_task_state_of(arg) == PBL_RUNNING;
}

static void test_deadline_process_pool(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *busy = submit_ms(p, 3000, NULL);
  /* Running first: a worker's start (seconds under valgrind) must not
   * pass for the wait behind it. */
  assert_true(pbl_test_run_until(&f->uv, running, busy, 60000));
  deadline_seen s = {0};
  pbl_task_opts o = {
      .queue_timeout_ms = 100, .on_done = on_deadline_done, .data = &s};
  int v = 7;
  pbl_task_t *t = submit(p, fn_echo, &v, sizeof(v), &o);
  assert_true(pbl_test_run_until(&f->uv, called, &s, 10000));
  assert_int_equal(s.state, PBL_TIMED_OUT);
  assert_non_null(strstr(s.message, "never started"));
  assert_int_equal(pbl_task_state_of(busy), PBL_RUNNING);
  assert_true(pbl_test_run_until(&f->uv, ended, busy, 20000));
  assert_int_equal(pbl_task_state_of(busy), PBL_DONE);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 1);
  assert_int_equal(st.done, 1);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  pbl_pool_free(p);
  pbl_task_release(busy);
  pbl_task_release(t);
}

static void test_bad_options(void **state) {
  F(state);
  pbl_task_opts o = {.queue_timeout_ms = -1};
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, NULL), UV_EINVAL);
  pbl_pool_t *p = new_pool(f, 1, 0);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), UV_EINVAL);
  pbl_pool_opts po = {.spare_workers = 1};
  pbl_pool_t *q = NULL;
  assert_int_equal(pbl_thread_pool_new(f->pl, &po, &q), UV_EINVAL);
  assert_null(q);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, 10000), 0);
  pbl_pool_free(p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  /* One thread in libuv's pool: a gated pbl_thread task holds it. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      T(test_thread_pool_order),         T(test_thread_order),
      T(test_many_priorities),           T(test_map_priority),
      T(test_thread_cancel_keeps_order), T(test_process_pool_order),
      T(test_deadline_thread_pool),      T(test_deadline_from_another_thread),
      T(test_deadline_pbl_thread),       T(test_deadline_met),
      T(test_deadline_process_pool),     T(test_bad_options),
  };
  return cmocka_run_group_tests_name("priority", tests, NULL, NULL);
}
