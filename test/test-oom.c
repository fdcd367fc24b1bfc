/* Out of memory on the main paths: each path runs once per N with the
 * library's Nth allocation failed (oom-seam.h), for N = 1, 2, ... until a
 * run needs no failure. For every N: each call returns 0 or UV_ENOMEM (and
 * UV_ENOMEM only once a failure was injected), each task a call made ends
 * (its end 0 with the right result, or UV_ENOMEM), its callback runs
 * once, nothing hangs, every block the library allocated is freed by the
 * end of the fixture's teardown, which proves no handle, fd or child is
 * left and, for the pools, that every thread was joined.
 *
 * To debug one path from one N: PBL_OOM_TEST=test_process_pool
 * PBL_OOM_FROM=53 PBL_OOM_TRACE=1 (a backtrace of the failed allocation,
 * for addr2line). */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oom-seam.h"
#include "pool-helpers.h"
#include "process-fns.h"

static bool task_ended(void *arg) {
  return pbl_task_state_of(arg) >= PBL_DONE;
}

static void run_until_ended(pbl_test_fixture *f, pbl_task_t *t) {
  if (!pbl_test_run_until(&f->uv, task_ended, t, PBL_OOM_HANG_MS))
    fail_msg("N=%ld: a task never ended", pbl_oom_n());
}

/* ------------------------------------------------------------------ */
/* Scenarios                                                           */
/* ------------------------------------------------------------------ */

static void *seven(void *arg) {
  (void)arg;
  return (void *)(intptr_t)7;
}

/* A second binding on the fixture's loop, a task on it, then its close. */
static bool closed_called;
static void on_closed(pbl_loop_t *pl) {
  (void)pl;
  closed_called = true;
}

static void binding(pbl_test_fixture *f) {
  pbl_loop_t *pl = NULL;
  if (PBL_OOM_CALL(pbl_loop_new(&f->uv, &pl)) != 0)
    return;
  pbl_task_t *t = NULL;
  pbl_task_opts o = {.on_done = pbl_oom_on_done};
  int err = PBL_OOM_CALL(pbl_thread(pl, seven, NULL, &o, &t));
  closed_called = false;
  pbl_loop_close(pl, on_closed);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_true(closed_called);
  if (err == 0) {
    int end = pbl_task_error(t);
    if (end != UV_ECANCELED) /* the close may cancel it */
      (void)pbl_oom_ended_ok(t);
    assert_int_equal(pbl_oom_callbacks(), 1);
    pbl_task_release(t);
  }
}

/* pbl_thread from the loop thread and from another, with options or
 * not. The function waits at a gate: a task with a timeout gets its
 * timer once the loop has taken in the notice that it started, and only
 * if it is still running then. */
typedef struct {
  pbl_loop_t *pl;
  const pbl_task_opts *o;
  pbl_test_gate gate;
  pbl_task_t *t;
  int err;
  atomic_bool done;
} submit_arg;

static void *gated_seven(void *arg) {
  pbl_test_gate_pass(arg);
  return (void *)(intptr_t)7;
}

static void submit_thread(void *arg) {
  submit_arg *s = arg;
  s->err = pbl_thread(s->pl, gated_seven, &s->gate, s->o, &s->t);
  atomic_store(&s->done, true);
}

static bool submitted(void *arg) {
  return atomic_load(&((submit_arg *)arg)->done);
}

typedef struct {
  uv_loop_t *uv;
  pbl_task_t *t;
  bool found;
} timer_look;

static void look_for_timer(uv_handle_t *h, void *arg) {
  timer_look *l = arg;
  if (h->type == UV_TIMER && h->data == l->t && uv_is_active(h))
    l->found = true;
}

/* true once the task ended or its timeout's timer runs. */
static bool timer_or_end(void *arg) {
  timer_look *l = arg;
  uv_walk(l->uv, look_for_timer, l);
  return l->found || task_ended(l->t);
}

static void thread_task(pbl_test_fixture *f, bool other_thread,
                        const pbl_task_opts *o) {
  submit_arg s = {.pl = f->pl, .o = o};
  pbl_test_gate_init(&s.gate);
  if (other_thread) {
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, submit_thread, &s), 0);
    if (!pbl_test_run_until(&f->uv, submitted, &s, PBL_OOM_HANG_MS))
      fail_msg("N=%ld: pbl_thread never returned", pbl_oom_n());
    assert_int_equal(uv_thread_join(&th), 0);
  } else {
    submit_thread(&s);
  }
  timer_look look = {&f->uv, s.t, false};
  if (PBL_OOM_CALL(s.err) == 0 && o != NULL && o->timeout_ms > 0 &&
      !pbl_test_run_until(&f->uv, timer_or_end, &look, PBL_OOM_HANG_MS))
    fail_msg("N=%ld: no timer, no end", pbl_oom_n());
  pbl_test_gate_open(&s.gate);
  if (s.err == 0) {
    run_until_ended(f, s.t);
    void *res = NULL;
    if (pbl_oom_ended_ok(s.t)) {
      assert_int_equal(pbl_task_get(s.t, 0, &res), 0);
      assert_ptr_equal(res, (void *)(intptr_t)7);
      if (o != NULL)
        assert_string_equal(pbl_task_name(s.t), "oom");
    }
    pbl_task_release(s.t);
  }
  /* The function may still be at the gate's exit: the loop runs until
   * its runner is back (the binding's close waits for it anyway). */
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0); /* callbacks */
  if (s.err == 0 && o != NULL && o->on_done != NULL)
    assert_int_equal(pbl_oom_callbacks(), 1);
  pbl_test_gate_destroy(&s.gate);
}

static const pbl_task_opts full_opts = {
    .on_done = pbl_oom_on_done, .timeout_ms = PBL_OOM_HANG_MS, .name = "oom"};

static void thread_loop_plain(pbl_test_fixture *f) {
  thread_task(f, false, NULL);
}
static void thread_loop_opts(pbl_test_fixture *f) {
  thread_task(f, false, &full_opts);
}
static void thread_other_plain(pbl_test_fixture *f) {
  thread_task(f, true, NULL);
}
static void thread_other_opts(pbl_test_fixture *f) {
  thread_task(f, true, &full_opts);
}

/* A one-shot process task on fn_echo, with a callback, timeout, name. */
static void process_task(pbl_test_fixture *f) {
  pbl_task_t *t = NULL;
  if (PBL_OOM_CALL(pbl_process(f->pl, fn_echo, "hello", 5, &full_opts, &t)) !=
      0)
    return;
  run_until_ended(f, t);
  if (pbl_oom_ended_ok(t)) {
    size_t len = 0;
    const void *b = pbl_task_bytes(t, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(b, "hello", 5);
    assert_true(pbl_task_pid(t) > 0);
  }
  pbl_task_release(t);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_oom_callbacks(), 1);
}

/* A command's capture of a stream: all of `want`; or, once a failure
 * was injected, the first bytes of it with the rest counted as dropped
 * (a capture buffer that could not grow). */
static void captured(pbl_task_t *t, bool out, const char *want) {
  size_t len = 0;
  const void *b = out ? pbl_task_stdout(t, &len) : pbl_task_stderr(t, &len);
  uint64_t dropped =
      out ? pbl_task_stdout_dropped(t) : pbl_task_stderr_dropped(t);
  if (!pbl_oom_injected())
    assert_int_equal(dropped, 0);
  assert_int_equal(len + dropped, strlen(want));
  if (len > 0)
    assert_memory_equal(b, want, len);
}

/* A command with stdin, its stdout and stderr captured. The input is
 * more than one read: the capture grows over several reads, and a failed
 * growth in the middle must not leave a hole in what is kept. */
#define COMMAND_IN 200000
static char command_in[COMMAND_IN + 1];

static void command(pbl_test_fixture *f) {
  const char *argv[] = {"sh", "-c", "cat; echo err >&2", NULL};
  pbl_spawn_opts o = {.task = full_opts,
                      .stdin_data = command_in,
                      .stdin_len = COMMAND_IN,
                      .cwd = "/",
                      .capture_limit = 1u << 20};
  pbl_task_t *t = NULL;
  if (PBL_OOM_CALL(pbl_spawn(f->pl, argv, &o, &t)) != 0)
    return;
  run_until_ended(f, t);
  if (pbl_oom_ended_ok(t)) {
    captured(t, true, command_in);
    captured(t, false, "err\n");
  }
  pbl_task_release(t);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(pbl_oom_callbacks(), 1);
}

/* Pools: tasks and a map, then close, join, free. */
#define POOL_TASKS 3
#define MAP_N 5
#define POOL_ALL (POOL_TASKS + MAP_N)

static bool pool_joined(void *arg) {
  return pbl_pool_join(arg, 0) == 0;
}

/* Closes and joins p; every task ts[] holds has ended, its callback run. */
static void pool_close_join(pbl_test_fixture *f, pbl_pool_t *p, pbl_task_t **ts,
                            int submitted) {
  assert_int_equal(pbl_pool_close(p), 0);
  if (!pbl_test_run_until(&f->uv, pool_joined, p, PBL_OOM_HANG_MS))
    fail_msg("N=%ld: the pool never joined", pbl_oom_n());
  for (int i = 0; i < POOL_ALL; i++)
    if (ts[i] != NULL && pbl_task_state_of(ts[i]) < PBL_DONE)
      fail_msg("N=%ld: task %d not ended at join", pbl_oom_n(), i);
  assert_int_equal(pbl_oom_callbacks(), submitted);
}

static void pool_free(pbl_test_fixture *f, pbl_pool_t *p, pbl_task_t **ts) {
  pbl_pool_free(p);
  for (int i = 0; i < POOL_ALL; i++)
    if (ts[i] != NULL)
      pbl_task_release(ts[i]);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
}

static void thread_pool(pbl_test_fixture *f) {
  pbl_pool_opts po = {.workers = 2};
  pbl_pool_t *p = NULL;
  if (PBL_OOM_CALL(pbl_thread_pool_new(f->pl, &po, &p)) != 0)
    return;
  pbl_task_t *ts[POOL_ALL] = {NULL};
  int submitted = 0;
  for (int i = 0; i < POOL_TASKS; i++)
    if (PBL_OOM_CALL(pbl_pool_thread(p, identity, (void *)(intptr_t)(i + 1),
                                     &full_opts, &ts[i])) == 0)
      submitted++;
  void *args[MAP_N];
  for (int i = 0; i < MAP_N; i++)
    args[i] = (void *)(intptr_t)(100 + i);
  if (PBL_OOM_CALL(pbl_pool_map_thread(p, identity, args, MAP_N, 2, &full_opts,
                                       &ts[POOL_TASKS])) == 0)
    submitted += MAP_N;
  else
    for (int i = 0; i < MAP_N; i++) /* all or none */
      ts[POOL_TASKS + i] = NULL;
  pool_close_join(f, p, ts, submitted);
  for (int i = 0; i < POOL_ALL; i++) {
    if (ts[i] == NULL || !pbl_oom_ended_ok(ts[i]))
      continue;
    void *res = NULL;
    assert_int_equal(pbl_task_get(ts[i], 0, &res), 0);
    intptr_t want = i < POOL_TASKS ? i + 1 : 100 + (i - POOL_TASKS);
    assert_int_equal((intptr_t)res, want);
  }
  pool_free(f, p, ts);
}

/* A process pool with an initializer: the tasks see what it kept. */
static void process_pool(pbl_test_fixture *f) {
  pbl_pool_opts po = {.workers = 2,
                      .process_init = fn_init_keep,
                      .init_arg = "cfg",
                      .init_len = 3};
  pbl_pool_t *p = NULL;
  if (PBL_OOM_CALL(pbl_process_pool_new(f->pl, &po, &p)) != 0)
    return;
  pbl_task_t *ts[POOL_ALL] = {NULL};
  int submitted = 0;
  for (int i = 0; i < POOL_TASKS; i++)
    if (PBL_OOM_CALL(pbl_pool_process(p, fn_init_seen, NULL, 0, &full_opts,
                                      &ts[i])) == 0)
      submitted++;
  char bytes[MAP_N];
  pbl_buf in[MAP_N];
  for (int i = 0; i < MAP_N; i++) {
    bytes[i] = (char)('a' + i);
    in[i] = (pbl_buf){&bytes[i], 1};
  }
  if (PBL_OOM_CALL(pbl_pool_map_process(p, fn_echo, in, MAP_N, 2, &full_opts,
                                        &ts[POOL_TASKS])) == 0)
    submitted += MAP_N;
  else
    for (int i = 0; i < MAP_N; i++)
      ts[POOL_TASKS + i] = NULL;
  pool_close_join(f, p, ts, submitted);
  for (int i = 0; i < POOL_ALL; i++) {
    if (ts[i] == NULL || !pbl_oom_ended_ok(ts[i]))
      continue;
    size_t len = 0;
    const char *b = pbl_task_bytes(ts[i], &len);
    if (i < POOL_TASKS) {
      assert_int_equal(len, 3);
      assert_memory_equal(b, "cfg", 3);
    } else {
      assert_int_equal(len, 1);
      assert_int_equal(b[0], 'a' + (i - POOL_TASKS));
    }
  }
  pool_free(f, p, ts);
}

/* Waits on more tasks than wait_any keeps on its stack (16): the first
 * holds the pool's one thread at a gate, so the first wait times out
 * with every task linked; then the gate opens. Thread-pool tasks need no
 * loop turn to end, so the waits run on the loop thread. */
#define WAIT_N 17

static void waits(pbl_test_fixture *f) {
  pbl_pool_opts po = {.workers = 1};
  pbl_pool_t *p = NULL;
  if (PBL_OOM_CALL(pbl_thread_pool_new(f->pl, &po, &p)) != 0)
    return;
  pbl_test_gate gate;
  pbl_test_gate_init(&gate);
  pbl_task_t *ts[WAIT_N];
  size_t n = 0;
  bool first_gated = false;
  for (size_t i = 0; i < WAIT_N; i++) {
    pbl_task_t *t = NULL;
    if (PBL_OOM_CALL(pbl_pool_thread(p, i == 0 ? gated : identity,
                                     i == 0 ? (void *)&gate : NULL, NULL,
                                     &t)) == 0) {
      first_gated = first_gated || i == 0;
      ts[n++] = t;
    }
  }
  size_t idx = WAIT_N;
  if (n > 0) {
    int err = pbl_wait_any(ts, n, 1, &idx); /* the gate holds them all */
    if (err != UV_ETIMEDOUT && PBL_OOM_CALL(err) == 0 && first_gated)
      assert_false(pbl_oom_ended_ok(ts[idx])); /* only a failed one ended */
  }
  pbl_test_gate_open(&gate);
  if (n > 0) {
    if (PBL_OOM_CALL(pbl_wait_any(ts, n, PBL_OOM_HANG_MS, &idx)) == 0)
      assert_true(idx < n);
    if (PBL_OOM_CALL(pbl_wait_all(ts, n, PBL_OOM_HANG_MS)) == 0)
      for (size_t i = 0; i < n; i++)
        assert_true(pbl_task_state_of(ts[i]) >= PBL_DONE);
    assert_int_equal(pbl_task_wait(ts[n - 1], PBL_OOM_HANG_MS), 0);
    for (size_t i = 0; i < n; i++) {
      void *res = (void *)1;
      int err = pbl_task_get(ts[i], PBL_OOM_HANG_MS, &res);
      assert_int_equal(err, pbl_task_error(ts[i]));
      if (pbl_oom_ended_ok(ts[i]))
        assert_ptr_equal(res, i == 0 && first_gated ? (void *)&gate : NULL);
    }
  }
  pbl_pool_free(p);
  for (size_t i = 0; i < n; i++)
    pbl_task_release(ts[i]);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_test_gate_destroy(&gate);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

#define OOM_TEST(name, what, scenario)                                         \
  static void name(void **state) {                                             \
    (void)state;                                                               \
    pbl_oom_every_n(what, scenario);                                           \
  }

OOM_TEST(test_binding, "binding new, task, close", binding)
OOM_TEST(test_thread_loop, "pbl_thread, loop thread", thread_loop_plain)
OOM_TEST(test_thread_loop_opts, "pbl_thread, loop thread, timeout and name",
         thread_loop_opts)
OOM_TEST(test_thread_other, "pbl_thread, another thread", thread_other_plain)
OOM_TEST(test_thread_other_opts, "pbl_thread, another thread, timeout and name",
         thread_other_opts)
OOM_TEST(test_process, "pbl_process", process_task)
OOM_TEST(test_command, "pbl_spawn, stdin and capture", command)
OOM_TEST(test_thread_pool, "thread pool, tasks, map, close, join, free",
         thread_pool)
OOM_TEST(test_process_pool, "process pool, init, tasks, map, close, join, free",
         process_pool)
OOM_TEST(test_waits, "pbl_wait_any, pbl_wait_all, pbl_task_wait, get", waits)

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv); /* a worker never arms the seam */
  for (size_t i = 0; i < COMMAND_IN; i++)
    command_in[i] = (char)('a' + i % 23);
  pool_test_warm_up();
  if (getenv("PBL_OOM_TEST") != NULL) /* one test by name, to debug it */
    cmocka_set_test_filter(getenv("PBL_OOM_TEST"));
  const struct CMUnitTest tests[] = {
#define OOM(fn) cmocka_unit_test_teardown(fn, pbl_oom_teardown)
      OOM(test_binding),           OOM(test_thread_loop),
      OOM(test_thread_loop_opts),  OOM(test_thread_other),
      OOM(test_thread_other_opts), OOM(test_process),
      OOM(test_command),           OOM(test_thread_pool),
      OOM(test_process_pool),      OOM(test_waits),
#undef OOM
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
