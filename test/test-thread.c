/* Thread tasks on libuv's pool: submission from several threads at once,
 * cancel of a queued task (the pool is one thread here, blocked by a
 * gated task), timeouts counted from the start, the pbl_cancelled flag,
 * and closing the binding with tasks in flight. */
#include "helpers.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void *identity(void *arg) {
  return arg;
}

static void *gated(void *arg) {
  pbl_test_gate_pass(arg);
  return arg;
}

/* ---- several submitting threads, each blocking on its own results ---- */

#define SUBMITTERS 4
#define PER_SUBMITTER 2000

typedef struct {
  pbl_loop_t *pl;
  int id;
  int errors;
  _Atomic int *finished;
  _Atomic int *callbacks;
} submitter;

static void count_cb(pbl_task_t *t, void *data) {
  (void)t;
  atomic_fetch_add((_Atomic int *)data, 1);
}

static void submit_and_get(void *arg) {
  submitter *s = arg;
  for (intptr_t i = 0; i < PER_SUBMITTER; i++) {
    pbl_task_opts o = {.on_done = count_cb, .data = s->callbacks};
    pbl_task_t *t;
    intptr_t want = s->id * 1000000 + i;
    void *result = NULL;
    if (pbl_thread(s->pl, identity, (void *)want, &o, &t) != 0) {
      s->errors++;
      continue;
    }
    if (pbl_task_get(t, 60000, &result) != 0 || (intptr_t)result != want)
      s->errors++;
    pbl_task_release(t);
  }
  /* and some fire-and-forget ones */
  for (int i = 0; i < 100; i++) {
    pbl_task_opts o = {.on_done = count_cb, .data = s->callbacks};
    if (pbl_thread(s->pl, identity, NULL, &o, NULL) != 0)
      s->errors++;
  }
  atomic_fetch_add(s->finished, 1);
}

typedef struct {
  _Atomic int *finished;
  _Atomic int *callbacks;
} all_done_args;

static bool all_done(void *arg) {
  all_done_args *a = arg;
  return atomic_load(a->finished) == SUBMITTERS &&
         atomic_load(a->callbacks) == SUBMITTERS * (PER_SUBMITTER + 100);
}

static void test_submit_from_several_threads(void **state) {
  pbl_test_fixture *f = *state;
  _Atomic int finished = 0, callbacks = 0;
  submitter s[SUBMITTERS];
  uv_thread_t th[SUBMITTERS];
  for (int i = 0; i < SUBMITTERS; i++) {
    s[i] = (submitter){f->pl, i, 0, &finished, &callbacks};
    assert_int_equal(uv_thread_create(&th[i], submit_and_get, &s[i]), 0);
  }
  all_done_args a = {&finished, &callbacks};
  assert_true(pbl_test_run_until(&f->uv, all_done, &a, 120000));
  for (int i = 0; i < SUBMITTERS; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(s[i].errors, 0);
  }
}

/* ---- cancel of a queued task ---- */

static _Atomic int queued_ran;

static void *mark_ran(void *arg) {
  (void)arg;
  atomic_fetch_add(&queued_ran, 1);
  return NULL;
}

typedef struct {
  int calls;
  int err;
} cb_record;

static void record_cb(pbl_task_t *t, void *data) {
  cb_record *r = data;
  r->calls++;
  r->err = pbl_task_error(t);
}

static void cancel_on_thread(void *arg) {
  *(int *)((void **)arg)[1] = pbl_task_cancel(((void **)arg)[0]);
}

static void test_cancel_queued_tasks(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  atomic_store(&queued_ran, 0);
  cb_record blocker_r = {0}, a_r = {0}, b_r = {0};
  pbl_task_opts blocker_o = {.on_done = record_cb, .data = &blocker_r};
  pbl_task_opts a_o = {.on_done = record_cb, .data = &a_r};
  pbl_task_opts b_o = {.on_done = record_cb, .data = &b_r};
  pbl_task_t *blocker, *a, *b;
  /* The pool has one thread (UV_THREADPOOL_SIZE=1): the blocker holds it. */
  assert_int_equal(pbl_thread(f->pl, gated, &gate, &blocker_o, &blocker), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  assert_int_equal(pbl_thread(f->pl, mark_ran, NULL, &a_o, &a), 0);
  assert_int_equal(pbl_thread(f->pl, mark_ran, NULL, &b_o, &b), 0);
  assert_int_equal(pbl_task_state_of(a), PBL_PENDING);
  assert_int_equal(pbl_task_cancel(a), 0); /* on the loop thread */
  int err = -1;
  void *args[2] = {b, &err};
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, cancel_on_thread, args), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(err, 0); /* from another thread */
  assert_int_equal(pbl_task_state_of(a), PBL_CANCELLED);
  assert_int_equal(pbl_task_state_of(b), PBL_CANCELLED);
  /* Both callbacks fire while the pool is still blocked. */
  uv_run(&f->uv, UV_RUN_NOWAIT);
  uv_run(&f->uv, UV_RUN_NOWAIT);
  assert_int_equal(a_r.calls, 1);
  assert_int_equal(a_r.err, UV_ECANCELED);
  assert_int_equal(b_r.calls, 1);
  assert_int_equal(b_r.err, UV_ECANCELED);
  assert_int_equal(blocker_r.calls, 0);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(blocker_r.calls, 1);
  assert_int_equal(blocker_r.err, 0);
  assert_int_equal(atomic_load(&queued_ran), 0); /* never ran */
  assert_int_equal(pbl_task_cancel(blocker), UV_EBUSY);
  pbl_task_release(blocker);
  pbl_task_release(a);
  pbl_task_release(b);
  pbl_test_gate_destroy(&gate);
}

/* A queued task, released by its caller and cancelled from another
 * thread: its callback still sees a live, cancelled task (the delivery
 * that stops the queued work must not free the task under it). */
typedef struct {
  int calls;
  int err;
  pbl_task_state state;
} released_probe;

static void released_cb(pbl_task_t *t, void *data) {
  released_probe *p = data;
  p->calls++;
  p->err = pbl_task_error(t);
  p->state = pbl_task_state_of(t);
}

typedef struct {
  pbl_task_t *t;
  int err; /* pbl_task_cancel's, asserted on the main thread */
} cancel_arg;

static void cancel_task_on_thread(void *arg) {
  cancel_arg *a = arg;
  a->err = pbl_task_cancel(a->t);
}

static void test_cancel_released_queued_task_from_thread(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  released_probe p = {0};
  pbl_task_opts o = {.on_done = released_cb, .data = &p};
  pbl_task_t *blocker, *queued;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &blocker), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, &queued), 0);
  pbl_task_retain(queued); /* the cancelling thread's */
  uv_thread_t th;
  cancel_arg ca = {queued, -1};
  assert_int_equal(uv_thread_create(&th, cancel_task_on_thread, &ca), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(ca.err, 0);
  pbl_task_release(queued);
  pbl_task_release(queued);      /* only the library holds it now */
  uv_run(&f->uv, UV_RUN_NOWAIT); /* the delivery, with the pool blocked */
  assert_int_equal(p.calls, 1);
  assert_int_equal(p.state, PBL_CANCELLED);
  assert_int_equal(p.err, UV_ECANCELED);
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(blocker);
  pbl_test_gate_destroy(&gate);
}

/* ---- timeouts ---- */

typedef struct {
  pbl_test_gate gate;
  _Atomic bool saw_cancelled;
} flag_probe;

static void *wait_then_probe(void *arg) {
  flag_probe *p = arg;
  pbl_test_gate_pass(&p->gate);
  atomic_store(&p->saw_cancelled, pbl_cancelled());
  return (void *)1;
}

static void open_gate_cb(pbl_task_t *t, void *data) {
  flag_probe *p = data;
  assert_int_equal(pbl_task_error(t), UV_ETIMEDOUT);
  pbl_test_gate_open(&p->gate);
}

static void test_timeout_ends_a_running_task(void **state) {
  pbl_test_fixture *f = *state;
  flag_probe p;
  pbl_test_gate_init(&p.gate);
  atomic_store(&p.saw_cancelled, false);
  pbl_task_opts o = {.on_done = open_gate_cb, .data = &p, .timeout_ms = 50};
  pbl_task_t *t;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(pbl_thread(f->pl, wait_then_probe, &p, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms >= 50); /* never before the time asked for */
  assert_int_equal(pbl_task_state_of(t), PBL_TIMED_OUT);
  assert_string_equal(pbl_task_message(t), "timed out");
  void *result = NULL;
  assert_int_equal(pbl_task_get(t, -1, &result), UV_ETIMEDOUT);
  assert_null(result); /* the late return value is discarded */
  assert_true(atomic_load(&p.saw_cancelled));
  pbl_task_release(t);
  pbl_test_gate_destroy(&p.gate);
}

static void open_after(uv_timer_t *timer) {
  pbl_test_gate_open(timer->data);
}

/* Queued behind a blocker for 1.5 s, a task with a 1 s timeout does not
 * time out: the timeout counts from its start (it has that second to run
 * once the blocker ends). */
static void test_timeout_counts_from_the_start(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *blocker, *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, NULL, &blocker), 0);
  pbl_task_opts o = {.timeout_ms = 1000};
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, &t), 0);
  uv_timer_t timer;
  uv_timer_init(&f->uv, &timer);
  timer.data = &gate;
  uv_update_time(&f->uv);
  uv_timer_start(&timer, open_after, 1500, 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&f->uv, UV_RUN_DEFAULT);
  pbl_task_release(blocker);
  pbl_task_release(t);
  pbl_test_gate_destroy(&gate);
}

/* ---- closing the binding with tasks in flight ---- */

typedef struct {
  int callbacks;
  int cancelled;
  int closed;
  int callbacks_at_close;
  pbl_test_gate gate;
  _Atomic int saw_cancelled; /* pbl_cancelled() once let go: -1 not yet */
} close_ctx;

static close_ctx *closing;

/* Let go after the binding's close: its flag must be up by then. */
static void *run_until_released(void *arg) {
  close_ctx *c = arg;
  pbl_test_gate_pass(&c->gate);
  atomic_store(&c->saw_cancelled, pbl_cancelled() ? 1 : 0);
  return NULL;
}

static void close_cb(pbl_task_t *t, void *data) {
  close_ctx *c = data;
  c->callbacks++;
  if (pbl_task_error(t) == UV_ECANCELED)
    c->cancelled++;
  if (c->callbacks == 3)
    pbl_test_gate_open(&c->gate); /* every callback came before the close */
}

static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closing->closed++;
  closing->callbacks_at_close = closing->callbacks;
}

static void test_close_with_tasks_in_flight(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  close_ctx c = {0};
  atomic_init(&c.saw_cancelled, -1);
  closing = &c;
  pbl_test_gate_init(&c.gate);
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  pbl_task_opts o = {.on_done = close_cb, .data = &c};
  pbl_task_t *running, *queued1, *queued2;
  assert_int_equal(pbl_thread(pl, run_until_released, &c, &o, &running), 0);
  assert_int_equal(pbl_thread(pl, identity, NULL, &o, &queued1), 0);
  assert_int_equal(pbl_thread(pl, identity, NULL, &o, &queued2), 0);
  assert_true(pbl_test_gate_wait_entered(&c.gate, 1, 10000));
  pbl_loop_close(pl, on_closed);
  assert_int_equal(pbl_task_state_of(running), PBL_CANCELLED);
  assert_int_equal(pbl_task_state_of(queued1), PBL_CANCELLED);
  assert_int_equal(pbl_task_state_of(queued2), PBL_CANCELLED);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.closed, 1);
  assert_int_equal(c.callbacks_at_close, 3);
  assert_int_equal(c.cancelled, 3);
  assert_int_equal(atomic_load(&c.saw_cancelled), 1); /* raised by close */
  assert_int_equal(uv_loop_close(&uv), 0);
  pbl_task_release(running);
  pbl_task_release(queued1);
  pbl_task_release(queued2);
  pbl_test_gate_destroy(&c.gate);
}

static bool closed_once(void *arg) {
  return ((close_ctx *)arg)->closed == 1;
}

static void close_on_thread(void *arg) {
  pbl_loop_close(arg, on_closed);
}

static void test_close_from_another_thread(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  close_ctx c = {0};
  closing = &c;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, close_on_thread, pl), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  /* Like any cross-thread request, it is served while the loop runs. */
  assert_true(pbl_test_run_until(&uv, closed_once, &c, 10000));
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.closed, 1);
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* ---- libuv's own work is not starved ---- */

typedef struct {
  _Atomic int tasks_done;
  int tasks_done_at_stat;
  bool stat_done;
} starve_ctx;

static void *busy_10ms(void *arg) {
  starve_ctx *c = arg;
  uv_sleep(10); /* the task's work: 10 ms of it */
  atomic_fetch_add(&c->tasks_done, 1);
  return NULL;
}

static void on_stat(uv_fs_t *req) {
  starve_ctx *c = req->data;
  c->stat_done = true;
  c->tasks_done_at_stat = atomic_load(&c->tasks_done);
  uv_fs_req_cleanup(req);
}

/* 200 queued 10 ms tasks on a one-thread pool take 2 s; an fs request
 * queued behind them gets the pool within a runner's budget plus one
 * task, long before they are all done. */
static void test_fs_work_is_not_starved(void **state) {
  pbl_test_fixture *f = *state;
  starve_ctx c = {0};
  for (int i = 0; i < 200; i++)
    assert_int_equal(pbl_thread(f->pl, busy_10ms, &c, NULL, NULL), 0);
  uv_fs_t req;
  req.data = &c;
  assert_int_equal(uv_fs_stat(&f->uv, &req, "/", on_stat), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(c.stat_done);
  assert_int_equal(atomic_load(&c.tasks_done), 200);
  print_message("fs request done after %d of 200 tasks\n",
                c.tasks_done_at_stat);
  assert_true(c.tasks_done_at_stat < 100);
}

int main(void) {
  /* One pool thread: a gated task blocks the pool. Read once, at the
   * first uv_queue_work. */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  const struct CMUnitTest tests[] = {
      T(test_submit_from_several_threads),
      T(test_cancel_queued_tasks),
      cmocka_unit_test_setup_teardown(
          test_cancel_released_queued_task_from_thread, pbl_test_setup,
          pbl_test_teardown),
      T(test_timeout_ends_a_running_task),
      T(test_timeout_counts_from_the_start),
      cmocka_unit_test(test_close_with_tasks_in_flight),
      cmocka_unit_test(test_close_from_another_thread),
      T(test_fs_work_is_not_starved),
  };
  return cmocka_run_group_tests_name("thread", tests, NULL, NULL);
}
