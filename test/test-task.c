/* The task rules (docs/design.md, R3-R8): states, one end, callbacks exactly
 * once on the loop thread and never inside the call that set them,
 * pbl_task_on_done replacement and UV_EALREADY, cancel's return values,
 * references, and bad input. Thread tasks serve as the vehicle. */
#include "helpers.h"

#include <stdlib.h>
#include <string.h>

static void *identity(void *arg) {
  return arg;
}

static void *gated(void *arg) {
  pbl_test_gate_pass(arg);
  return arg;
}

typedef struct {
  int calls;
  int err;
  pbl_task_state state;
  bool on_loop_thread;
  uv_thread_t loop_thread;
} cb_record;

static void record_cb(pbl_task_t *t, void *data) {
  cb_record *r = data;
  uv_thread_t self = uv_thread_self();
  r->calls++;
  r->err = pbl_task_error(t);
  r->state = pbl_task_state_of(t);
  r->on_loop_thread = uv_thread_equal(&self, &r->loop_thread) != 0;
}

static void test_done_task_end_data(void **state) {
  pbl_test_fixture *f = *state;
  cb_record r = {.loop_thread = f->loop_thread};
  char name[] = "sum";
  pbl_task_opts o = {.on_done = record_cb, .data = &r, .name = name};
  pbl_task_t *t;
  int value = 3;
  assert_int_equal(pbl_thread(f->pl, identity, &value, &o, &t), 0);
  memcpy(name, "XYZ", 3); /* the name was copied by the call */
  assert_true(pbl_task_id(t) > 0);
  assert_string_equal(pbl_task_name(t), "sum");
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_true(r.on_loop_thread);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.state, PBL_DONE);
  void *result = NULL;
  assert_int_equal(pbl_task_get(t, 0, &result), 0);
  assert_ptr_equal(result, &value);
  assert_string_equal(pbl_task_message(t), "done");
  assert_int_equal(pbl_task_pid(t), 0);
  assert_null(pbl_task_bytes(t, NULL));
  pbl_task_release(t);
}

static void test_ids_are_unique(void **state) {
  pbl_test_fixture *f = *state;
  pbl_task_t *a, *b;
  assert_int_equal(pbl_thread(f->pl, identity, NULL, NULL, &a), 0);
  assert_int_equal(pbl_thread(f->pl, identity, NULL, NULL, &b), 0);
  assert_int_not_equal(pbl_task_id(a), pbl_task_id(b));
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_task_release(a);
  pbl_task_release(b);
}

static void *failing(void *arg) {
  (void)arg;
  pbl_fail(42, "bad input %d", 7);
  pbl_fail(43, "second failure is ignored");
  return (void *)1; /* discarded: the task failed */
}

static void test_pbl_fail_fails_the_task(void **state) {
  pbl_test_fixture *f = *state;
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = record_cb, .data = &r};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, failing, NULL, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.state, PBL_FAILED);
  void *result = NULL;
  assert_int_equal(pbl_task_get(t, -1, &result), PBL_EFAILED);
  assert_null(result);
  assert_int_equal(pbl_task_fail_code(t), 42);
  assert_string_equal(pbl_task_message(t), "bad input 7");
  pbl_task_release(t);
}

static void *failing_silently(void *arg) {
  (void)arg;
  pbl_fail(5, NULL);
  return NULL;
}

static void test_pbl_fail_without_message(void **state) {
  pbl_test_fixture *f = *state;
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, failing_silently, NULL, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_error(t), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(t), 5);
  assert_string_equal(pbl_task_message(t), pbl_strerror(PBL_EFAILED));
  pbl_task_release(t);
}

static void fail_in_callback(pbl_task_t *t, void *data) {
  (void)t;
  pbl_fail(3, "too late"); /* the loop thread, outside any task */
  (*(int *)data)++;
}

/* Outside a task pbl_fail does nothing: called on this thread before a
 * task, or from a task's callback after its end, it touches no task. */
static void test_pbl_fail_outside_a_task_does_nothing(void **state) {
  pbl_test_fixture *f = *state;
  pbl_fail(1, "nobody listens");
  int calls = 0;
  pbl_task_opts o = {.on_done = fail_in_callback, .data = &calls};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, identity, &calls, &o, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(calls, 1);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  assert_int_equal(pbl_task_error(t), 0);
  assert_int_equal(pbl_task_fail_code(t), 0);
  assert_string_equal(pbl_task_message(t), "done");
  pbl_task_release(t);
}

/* ---- callbacks ---- */

static void test_callback_set_after_end_fires_later(void **state) {
  pbl_test_fixture *f = *state;
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, identity, NULL, NULL, &t), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_task_state_of(t), PBL_DONE);
  assert_int_equal(pbl_task_on_done(t, record_cb, &r), 0);
  assert_int_equal(r.calls, 0); /* never inside the call that set it */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_true(r.on_loop_thread);
  assert_int_equal(pbl_task_on_done(t, record_cb, &r), UV_EALREADY);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  pbl_task_release(t);
}

static void test_on_done_replaces_a_callback_not_yet_called(void **state) {
  pbl_test_fixture *f = *state;
  cb_record first = {.loop_thread = f->loop_thread};
  cb_record second = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = record_cb, .data = &first};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, &t), 0);
  assert_int_equal(pbl_task_on_done(t, record_cb, &second), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(first.calls, 0);
  assert_int_equal(second.calls, 1);
  pbl_task_release(t);
}

static void test_on_done_null_removes_the_callback(void **state) {
  pbl_test_fixture *f = *state;
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = record_cb, .data = &r};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, &t), 0);
  assert_int_equal(pbl_task_on_done(t, NULL, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 0);
  /* No callback was called, so one may still be set: it fires later. */
  assert_int_equal(pbl_task_on_done(t, record_cb, &r), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  pbl_task_release(t);
}

#define MANY 5000

typedef struct {
  int counts[MANY];
  int off_thread;
  uv_thread_t loop_thread;
} many_record;

static many_record many;

static void count_cb(pbl_task_t *t, void *data) {
  uv_thread_t self = uv_thread_self();
  intptr_t i = (intptr_t)data;
  (void)t;
  many.counts[i]++;
  if (!uv_thread_equal(&self, &many.loop_thread))
    many.off_thread++;
}

static void test_thousands_of_callbacks_once_each(void **state) {
  pbl_test_fixture *f = *state;
  memset(&many, 0, sizeof(many));
  many.loop_thread = f->loop_thread;
  for (intptr_t i = 0; i < MANY; i++) {
    pbl_task_opts o = {.on_done = count_cb, .data = (void *)i};
    assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, NULL), 0);
  }
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < MANY; i++)
    assert_int_equal(many.counts[i], 1);
  assert_int_equal(many.off_thread, 0);
}

/* A callback may release tasks, schedule new ones, and close the binding. */
typedef struct {
  pbl_loop_t *pl;
  int remaining;
  int calls;
  pbl_task_t *held;
} chain_ctx;

static void chain_cb(pbl_task_t *t, void *data) {
  chain_ctx *c = data;
  c->calls++;
  if (t == c->held) {
    pbl_task_release(c->held); /* its last outside reference */
    c->held = NULL;
  }
  if (c->remaining-- > 0) {
    pbl_task_opts o = {.on_done = chain_cb, .data = c};
    assert_int_equal(pbl_thread(c->pl, identity, NULL, &o, &c->held), 0);
  }
}

static void test_callbacks_chain_and_release(void **state) {
  pbl_test_fixture *f = *state;
  chain_ctx c = {.pl = f->pl, .remaining = 100};
  pbl_task_opts o = {.on_done = chain_cb, .data = &c};
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &o, &c.held), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, 101);
  assert_null(c.held);
}

static int closed_calls;

static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closed_calls++;
}

static void close_from_cb(pbl_task_t *t, void *data) {
  (void)t;
  pbl_loop_close(data, on_closed);
  pbl_loop_close(data, on_closed); /* a second call does nothing */
}

static void test_callback_closes_the_binding(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  closed_calls = 0;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  pbl_task_opts o = {.on_done = close_from_cb, .data = pl};
  assert_int_equal(pbl_thread(pl, identity, NULL, &o, NULL), 0);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uv_loop_close(&uv), 0);
}

/* ---- cancel ---- */

static void test_cancel_return_values(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = record_cb, .data = &r};
  pbl_task_t *running, *done;
  assert_int_equal(pbl_thread(f->pl, identity, NULL, NULL, &done), 0);
  assert_int_equal(pbl_thread(f->pl, gated, &gate, &o, &running), 0);
  assert_true(pbl_test_gate_wait_entered(&gate, 1, 10000));
  assert_int_equal(pbl_task_state_of(running), PBL_RUNNING);
  assert_int_equal(pbl_task_wait(running, 0), UV_ETIMEDOUT); /* a poll */
  assert_null(pbl_task_message(running));                    /* not ended */
  assert_int_equal(pbl_task_error(running), 0);
  assert_int_equal(pbl_task_cancel(running), 0);
  assert_int_equal(pbl_task_state_of(running), PBL_CANCELLED); /* at once */
  assert_int_equal(pbl_task_cancel(running), 0); /* already cancelled */
  assert_int_equal(r.calls, 0); /* the callback comes on a later turn */
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err, UV_ECANCELED);
  assert_int_equal(pbl_task_get(running, 0, NULL), UV_ECANCELED);
  assert_int_equal(pbl_task_cancel(done), UV_EBUSY);   /* ended otherwise */
  assert_int_equal(pbl_task_state_of(done), PBL_DONE); /* unchanged */
  pbl_task_release(running);
  pbl_task_release(done);
  pbl_test_gate_destroy(&gate);
}

/* ---- references ---- */

static void test_release_before_completion(void **state) {
  pbl_test_fixture *f = *state;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  cb_record r = {.loop_thread = f->loop_thread};
  pbl_task_opts o = {.on_done = record_cb, .data = &r};
  pbl_task_t *t;
  assert_int_equal(pbl_thread(f->pl, gated, &gate, &o, &t), 0);
  assert_ptr_equal(pbl_task_retain(t), t);
  pbl_task_release(t);
  pbl_task_release(t); /* the caller's last: the task still runs */
  pbl_test_gate_open(&gate);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.state, PBL_DONE);
  pbl_test_gate_destroy(&gate);
}

static void test_task_outlives_its_binding(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  pbl_task_t *t;
  int value = 9;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  assert_int_equal(pbl_thread(pl, identity, &value, NULL, &t), 0);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  pbl_loop_close(pl, NULL);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&uv), 0);
  void *result;
  assert_int_equal(pbl_task_get(t, -1, &result), 0); /* still readable */
  assert_ptr_equal(result, &value);
  assert_int_equal(pbl_task_on_done(t, record_cb, NULL), PBL_ECLOSED);
  pbl_task_release(t);
}

/* ---- bad input ---- */

static void test_bad_input_is_einval(void **state) {
  pbl_test_fixture *f = *state;
  pbl_task_t *t;
  pbl_task_opts neg = {.timeout_ms = -1};
  pbl_task_opts neg_grace = {.kill_grace_ms = -5};
  assert_int_equal(pbl_loop_new(NULL, &f->pl), UV_EINVAL);
  assert_int_equal(pbl_loop_new(&f->uv, NULL), UV_EINVAL);
  assert_int_equal(pbl_thread(NULL, identity, NULL, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_thread(f->pl, NULL, NULL, NULL, &t), UV_EINVAL);
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &neg, &t), UV_EINVAL);
  assert_int_equal(pbl_thread(f->pl, identity, NULL, &neg_grace, &t),
                   UV_EINVAL);
  assert_int_equal(pbl_task_get(NULL, 0, NULL), UV_EINVAL);
  assert_int_equal(pbl_task_wait(NULL, -1), UV_EINVAL);
  assert_int_equal(pbl_task_cancel(NULL), UV_EINVAL);
  assert_int_equal(pbl_task_on_done(NULL, record_cb, NULL), UV_EINVAL);
  assert_int_equal(pbl_task_error(NULL), UV_EINVAL);
  assert_null(pbl_task_retain(NULL));
  pbl_task_release(NULL); /* harmless */
  assert_int_equal(pbl_task_id(NULL), 0);
  assert_null(pbl_task_name(NULL));
  assert_null(pbl_task_message(NULL));
  assert_null(pbl_task_bytes(NULL, NULL));
  assert_int_equal(pbl_task_pid(NULL), 0);
  assert_null(pbl_loop_uv(NULL));
  assert_ptr_equal(pbl_loop_uv(f->pl), &f->uv);
  pbl_loop_close(NULL, NULL); /* harmless */
  assert_int_equal(pbl_wait_any(NULL, 1, 0, NULL), UV_EINVAL);
  assert_int_equal(pbl_wait_all(NULL, 1, 0), UV_EINVAL);
  pbl_task_t *none[1] = {NULL};
  assert_int_equal(pbl_wait_any(none, 1, 0, NULL), UV_EINVAL);
  assert_int_equal(pbl_wait_all(none, 1, 0), UV_EINVAL);
  assert_int_equal(pbl_wait_all(NULL, 0, -1), 0); /* nothing to wait for */
  assert_string_equal(pbl_task_state_name((pbl_task_state)99), "invalid");
}

static void test_closed_binding_refuses_tasks(void **state) {
  (void)state;
  uv_loop_t uv;
  pbl_loop_t *pl;
  assert_int_equal(uv_loop_init(&uv), 0);
  assert_int_equal(pbl_loop_new(&uv, &pl), 0);
  pbl_loop_close(pl, NULL);
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_thread(pl, identity, NULL, NULL, &t), PBL_ECLOSED);
  assert_null(t);
  assert_int_equal(uv_run(&uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&uv), 0);
}

static void test_idle_binding_keeps_no_loop_alive(void **state) {
  pbl_test_fixture *f = *state;
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* returns at once */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_done_task_end_data),
      T(test_ids_are_unique),
      T(test_pbl_fail_fails_the_task),
      T(test_pbl_fail_without_message),
      T(test_pbl_fail_outside_a_task_does_nothing),
      T(test_callback_set_after_end_fires_later),
      cmocka_unit_test_setup_teardown(
          test_on_done_replaces_a_callback_not_yet_called, pbl_test_setup,
          pbl_test_teardown),
      T(test_on_done_null_removes_the_callback),
      T(test_thousands_of_callbacks_once_each),
      T(test_callbacks_chain_and_release),
      cmocka_unit_test(test_callback_closes_the_binding),
      T(test_cancel_return_values),
      T(test_release_before_completion),
      cmocka_unit_test(test_task_outlives_its_binding),
      T(test_bad_input_is_einval),
      cmocka_unit_test(test_closed_binding_refuses_tasks),
      T(test_idle_binding_keeps_no_loop_alive),
  };
  return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
