/* Pools under concurrency and at the end of their life: scheduling from
 * several threads at once, from inside a task and from a callback;
 * cancels racing with workers; loop-thread pushes meeting workers that go
 * idle, and close or stop racing with them; pbl_pool_free of a busy pool
 * (also from a callback); closing the binding under a busy pool. Every
 * task must reach an end state, and nothing -- thread, handle, fd -- may
 * be left. */
#include <sched.h>

#include "pool-helpers.h"

typedef struct {
  pool_cb_count *c;
  int want;
} calls_at_least;

static bool enough_calls(void *arg) {
  calls_at_least *w = arg;
  return w->c->calls >= w->want;
}

/* ---- several threads schedule at once ---- */

enum { SCHEDULERS = 4, PER_THREAD = 250 };

typedef struct {
  pbl_pool_t *pool;
  pbl_task_opts *opts;
  int errors;
  int waited_ok;
} sched_arg;

static void scheduler(void *arg) {
  sched_arg *a = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    pbl_task_t *t = NULL;
    bool keep = i % 10 == 0; /* some are waited for here, off the loop */
    if (pbl_pool_thread(a->pool, serial_fn, NULL, a->opts, keep ? &t : NULL) !=
        0) {
      a->errors++;
      continue;
    }
    if (keep) {
      if (pbl_task_get(t, 10000, NULL) == 0)
        a->waited_ok++;
      pbl_task_release(t);
    }
  }
}

static void test_schedule_from_many_threads(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  uv_thread_t th[SCHEDULERS];
  sched_arg args[SCHEDULERS];
  for (int i = 0; i < SCHEDULERS; i++) {
    args[i] = (sched_arg){.pool = p, .opts = &o};
    assert_int_equal(uv_thread_create(&th[i], scheduler, &args[i]), 0);
  }
  calls_at_least w = {&c, SCHEDULERS * PER_THREAD};
  assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 30000));
  for (int i = 0; i < SCHEDULERS; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(args[i].errors, 0);
    assert_int_equal(args[i].waited_ok, PER_THREAD / 10);
  }
  assert_int_equal(c.ok, SCHEDULERS * PER_THREAD);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, SCHEDULERS * PER_THREAD);
  assert_int_equal(c.calls, SCHEDULERS * PER_THREAD); /* once each */
  pool_free_and_run(f, p);
}

/* ---- from inside a task, and from a callback ---- */

typedef struct {
  pbl_pool_t *pool;
  pool_cb_count c;
  int chain; /* callbacks left to schedule from */
  pbl_task_opts opts;
} nest;

static void *schedule_child(void *arg) {
  nest *n = arg;
  /* From a worker thread of the same pool: no loop turn needed to start. */
  pbl_task_t *child;
  if (pbl_pool_thread(n->pool, serial_fn, NULL, &n->opts, &child) != 0)
    return NULL;
  int err = pbl_task_wait(child, 10000);
  pbl_task_release(child);
  return err == 0 ? (void *)1 : NULL;
}

static void chain_cb(pbl_task_t *t, void *data) {
  nest *n = data;
  count_cb(t, &n->c);
  if (n->chain-- > 0)
    assert_int_equal(pbl_pool_thread(n->pool, serial_fn, NULL, &n->opts, NULL),
                     0);
}

static void test_schedule_from_task_and_callback(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  nest n = {.pool = p, .chain = 10};
  n.opts = (pbl_task_opts){.on_done = chain_cb, .data = &n};
  pbl_task_t *t;
  assert_int_equal(pbl_pool_thread(p, schedule_child, &n, &n.opts, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  void *r;
  assert_int_equal(pbl_task_get(t, 0, &r), 0);
  assert_ptr_equal(r, (void *)1); /* the child ran and was waited for */
  /* the parent, its child, and the 10 scheduled from callbacks */
  assert_int_equal(n.c.calls, 12);
  assert_int_equal(n.c.ok, 12);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* ---- cancels racing with the workers ---- */

enum { RACE_N = 2000 };

typedef struct {
  pbl_task_t **ts;
  int cancelled_ok;
  int bad_err; /* neither 0 nor UV_EBUSY; asserted on the main thread */
} canceller_arg;

static void canceller(void *arg) {
  canceller_arg *a = arg;
  for (int i = 1; i < RACE_N; i += 2) {
    int err = pbl_task_cancel(a->ts[i]);
    if (err != 0 && err != UV_EBUSY)
      a->bad_err = err;
    a->cancelled_ok += err == 0;
  }
}

static void test_cancel_races(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t **ts = calloc(RACE_N, sizeof(*ts));
  assert_non_null(ts);
  for (int i = 0; i < RACE_N; i++)
    assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, &ts[i]), 0);
  canceller_arg a = {.ts = ts};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, canceller, &a), 0);
  calls_at_least w = {&c, RACE_N};
  assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 30000));
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(a.bad_err, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  int ended = 0;
  for (int i = 0; i < RACE_N; i++) {
    pbl_task_state s = pbl_task_state_of(ts[i]);
    ended += s == PBL_DONE || s == PBL_CANCELLED;
    pbl_task_release(ts[i]);
  }
  free(ts);
  assert_int_equal(ended, RACE_N);
  assert_int_equal(c.calls, RACE_N);
  assert_int_equal(c.cancelled, a.cancelled_ok);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done + st.cancelled, RACE_N);
  assert_int_equal(st.cancelled, (uint64_t)a.cancelled_ok);
  pool_free_and_run(f, p);
}

/* ---- the loop thread schedules without the pool lock ---- */

/* Bursts of one to three tasks, each run to its end before the next, so
 * that pushes meet workers at every step of going idle, waking, retiring
 * (max_tasks) and starting. None may be left unseen in the push list. */
static void loop_bursts(pbl_test_fixture *f, unsigned max_tasks, int bursts) {
  pbl_pool_t *p = new_pool(f, 2, max_tasks);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  calls_at_least w = {&c, 0};
  for (int b = 0; b < bursts; b++) {
    for (int i = 0; i <= b % 3; i++, w.want++)
      assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), 0);
    assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 10000));
  }
  assert_int_equal(c.ok, w.want);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, (uint64_t)w.want);
  assert_int_equal(st.queued, 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, w.want); /* once each */
  pool_free_and_run(f, p);
}

static void test_loop_bursts(void **state) {
  loop_bursts(*state, 0, 3000);
  loop_bursts(*state, 1, 200); /* a thread per task */
}

/* A push timed to land as the only worker, done with its task, finds the
 * queue empty and goes idle: the task before spins until a deadline the
 * loop thread knows, and the push comes a little before or after it. */
enum { MEET_N = 4000, MEET_SPIN_NS = 20000 };

typedef struct {
  _Atomic uint64_t started;
} spinner;

static void *spin_a_while(void *arg) {
  spinner *s = arg;
  uint64_t t0 = uv_hrtime();
  atomic_store(&s->started, t0);
  while (uv_hrtime() < t0 + MEET_SPIN_NS)
    ;
  return NULL;
}

static void test_push_meets_idle_worker(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  calls_at_least w = {&c, 0};
  for (int i = 0; i < MEET_N; i++) {
    spinner s = {0};
    assert_int_equal(pbl_pool_thread(p, spin_a_while, &s, &o, NULL), 0);
    uint64_t t0, give_up = uv_hrtime() + 10000000000u; /* 10 s */
    /* Yields while it waits: under valgrind one thread runs at a time,
     * and a spinning one kept the worker from starting for 10 s. */
    while ((t0 = atomic_load(&s.started)) == 0 && uv_hrtime() < give_up)
      sched_yield();
    assert_true(t0 != 0);
    /* from 1 us before its end to 1 us after, in 5 ns steps */
    uint64_t at = t0 + MEET_SPIN_NS - 1000 + (uint64_t)(i % 400) * 5;
    while (uv_hrtime() < at)
      ;
    assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), 0);
    w.want += 2; /* the last push must run with no other push after it */
    assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 10000));
  }
  assert_int_equal(c.ok, w.want);
  pool_free_and_run(f, p);
}

/* Close or stop from another thread while the loop thread schedules: a
 * task accepted before runs (close) or ends cancelled (stop), every later
 * one is refused, and join finds nothing left. */
enum { END_MAX = 100000 }; /* then the loop waits for the ender */

typedef struct {
  pbl_pool_t *pool;
  bool stop;
  int err; /* asserted on the main thread */
} ender_arg;

static void ender(void *arg) {
  ender_arg *a = arg;
  a->err = a->stop ? pbl_pool_stop(a->pool) : pbl_pool_close(a->pool);
}

static void end_while_scheduling(pbl_test_fixture *f, bool stop) {
  pbl_pool_t *p = new_pool(f, 2, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  ender_arg a = {.pool = p, .stop = stop, .err = -1};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, ender, &a), 0);
  calls_at_least w = {&c, 0};
  int err;
  while ((err = pbl_pool_thread(p, identity, NULL, &o, NULL)) == 0 &&
         ++w.want < END_MAX)
    ;
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(a.err, 0);
  while (err == 0 && (err = pbl_pool_thread(p, identity, NULL, &o, NULL)) == 0)
    w.want++;
  assert_int_equal(err, PBL_ECLOSED);
  assert_true(pbl_test_run_until(&f->uv, enough_calls, &w, 30000));
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_pool_join(p, 0), 0);
  assert_int_equal(c.calls, w.want);
  assert_int_equal(c.ok + c.cancelled, w.want);
  if (!stop)
    assert_int_equal(c.ok, w.want);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done + st.cancelled, (uint64_t)w.want);
  assert_int_equal(st.queued + st.running, 0);
  pool_free_and_run(f, p);
}

static void test_end_while_loop_schedules(void **state) {
  for (int i = 0; i < 20; i++) {
    end_while_scheduling(*state, false);
    end_while_scheduling(*state, true);
  }
}

/* ---- pbl_pool_free of a busy pool ---- */

static void test_free_busy_pool(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *running;
  assert_int_equal(pbl_pool_thread(p, until_cancelled, NULL, &o, &running), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(pbl_pool_thread(p, identity, NULL, &o, NULL), 0);
  pbl_pool_free(p); /* stops it; it finishes on later turns */
  assert_int_equal(pbl_task_state_of(running), PBL_CANCELLED);
  assert_int_equal(c.calls, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 6);
  assert_int_equal(c.cancelled, 6);
  pbl_task_release(running);
}

/* A callback frees its own pool while other callbacks are still owed. */
typedef struct {
  pbl_pool_t *pool;
  pool_cb_count c;
} free_in_cb_arg;

static void free_in_cb(pbl_task_t *t, void *data) {
  free_in_cb_arg *a = data;
  count_cb(t, &a->c);
  if (a->c.calls == 1)
    pbl_pool_free(a->pool);
}

static void test_free_from_callback(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  free_in_cb_arg a = {.pool = p};
  pbl_task_opts o = {.on_done = free_in_cb, .data = &a};
  void *args[20] = {NULL};
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 20, 1, &o, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(a.c.calls, 20); /* each task ended, once */
  assert_int_equal(a.c.ok + a.c.cancelled, 20);
}

/* ---- a running task ended from a callback ----
 * Its callback travels through the binding's inbox while its worker hands
 * it back to the pool: uv_run() must not return before that callback,
 * whichever comes first. */

typedef struct {
  pbl_pool_t *pool;
  pbl_task_t *victim;
  pbl_test_gate started;
  bool stop; /* pbl_pool_stop, else pbl_task_cancel */
} end_in_cb_arg;

static void *enter_then_spin(void *arg) {
  pbl_test_gate_pass(arg); /* open: only counts this task in */
  return until_cancelled(NULL);
}

static void *wait_victim_started(void *arg) {
  end_in_cb_arg *a = arg;
  return pbl_test_gate_wait_entered(&a->started, 1, 10000) ? a : NULL;
}

static void end_victim_cb(pbl_task_t *t, void *data) {
  end_in_cb_arg *a = data;
  void *started = NULL;
  assert_int_equal(pbl_task_get(t, 0, &started), 0);
  assert_ptr_equal(started, a); /* the victim runs */
  if (a->stop)
    assert_int_equal(pbl_pool_stop(a->pool), 0);
  else
    assert_int_equal(pbl_task_cancel(a->victim), 0);
  /* A callback that goes on a little: the worker sees the cancel and
   * hands the task back before the loop looks at its inbox again. */
  uv_sleep(50);
}

static void end_running_from_callback(pbl_test_fixture *f, bool stop) {
  pbl_pool_t *p = new_pool(f, 1, 0);
  end_in_cb_arg a = {.pool = p, .stop = stop};
  pbl_test_gate_init(&a.started);
  pbl_test_gate_open(&a.started);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  assert_int_equal(
      pbl_pool_thread(p, enter_then_spin, &a.started, &o, &a.victim), 0);
  /* On libuv's pool: its callback runs in the binding's own drain, the
   * one the victim's callback is posted to. */
  pbl_task_opts e = {.on_done = end_victim_cb, .data = &a};
  assert_int_equal(pbl_thread(f->pl, wait_victim_started, &a, &e, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(a.victim), PBL_CANCELLED);
  assert_int_equal(c.calls, 1); /* before uv_run returned */
  assert_int_equal(c.cancelled, 1);
  if (!stop)
    assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_join(p, -1), 0);
  pbl_pool_free(p);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(a.victim);
  pbl_test_gate_destroy(&a.started);
}

static void test_cancel_running_from_callback(void **state) {
  end_running_from_callback(*state, false);
}

static void test_stop_from_callback_delivers_first(void **state) {
  end_running_from_callback(*state, true);
}

/* ---- closing the binding under a busy pool ---- */

static int closed_calls;

static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closed_calls++;
}

static void test_binding_close_with_busy_pool(void **state) {
  (void)state;
  size_t threads = pbl_test_count_threads();
  size_t fds = pbl_test_count_fds();
  uv_loop_t uv;
  pbl_loop_t *pl;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  pbl_pool_opts po = {.workers = 2};
  pbl_pool_t *p;
  assert_int_equal(pbl_thread_pool_new(pl, &po, &p), 0);
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  pbl_task_t *ts[6];
  for (int i = 0; i < 6; i++)
    assert_int_equal(pbl_pool_thread(p, until_cancelled, NULL, &o, &ts[i]), 0);
  closed_calls = 0;
  pbl_loop_close(pl, on_closed);
  for (int i = 0; i < 6; i++) /* running ones flagged, queued ones ended */
    assert_int_equal(pbl_task_state_of(ts[i]), PBL_CANCELLED);
  assert_int_equal(pbl_pool_thread(p, identity, NULL, NULL, NULL), PBL_ECLOSED);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(c.calls, 6);
  assert_int_equal(c.cancelled, 6);
  assert_true(pool_test_threads_back_to(threads)); /* every worker joined */
  /* The pool outlives its binding until freed; it is stopped and done. */
  assert_int_equal(pbl_pool_join(p, 0), 0);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_stop(p), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.cancelled, 6);
  pbl_pool_free(p);
  for (int i = 0; i < 6; i++)
    pbl_task_release(ts[i]);
  assert_int_equal(uv_loop_close(&uv), 0);
  assert_int_equal(pbl_test_count_fds(), fds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_schedule_from_many_threads),
      T(test_schedule_from_task_and_callback),
      T(test_cancel_races),
      T(test_loop_bursts),
      T(test_push_meets_idle_worker),
      T(test_end_while_loop_schedules),
      T(test_free_busy_pool),
      T(test_free_from_callback),
      T(test_cancel_running_from_callback),
      T(test_stop_from_callback_delivers_first),
      cmocka_unit_test(test_binding_close_with_busy_pool),
  };
  return cmocka_run_group_tests_name("thread-pool-life", tests, NULL, NULL);
}
