/* pbl_pool_map_thread: Pebble's map behaviours (docs/design.md, B17-B21):
 * order, empty and single inputs, chunk 0, an error in one item, a
 * timeout per chunk, cancel of one item, and chunks running whole on one
 * worker. */
#include "pool-helpers.h"

static void release_all(pbl_task_t **ts, size_t n) {
  for (size_t i = 0; i < n; i++)
    pbl_task_release(ts[i]);
}

/* Each item records which thread ran it and in which order there. */
typedef struct {
  intptr_t value;
  int serial; /* thread */
  int seq;    /* that thread's count so far */
} item;

static _Thread_local int seq_here;

static void *double_it(void *arg) {
  item *it = arg;
  it->serial = thread_serial();
  it->seq = ++seq_here;
  return (void *)(it->value * 2);
}

/* B17: results in input order; a chunk runs whole, in order,
 * on one worker. */
static void test_map_order_and_chunks(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  enum { N = 100, CHUNK = 7 };
  item items[N];
  void *args[N];
  pbl_task_t *ts[N];
  for (int i = 0; i < N; i++) {
    items[i] = (item){.value = i};
    args[i] = &items[i];
  }
  assert_int_equal(pbl_pool_map_thread(p, double_it, args, N, CHUNK, NULL, ts),
                   0);
  assert_int_equal(pbl_wait_all(ts, N, 10000), 0);
  for (int i = 0; i < N; i++) {
    void *r;
    assert_int_equal(pbl_task_get(ts[i], 0, &r), 0);
    assert_int_equal((intptr_t)r, 2 * i);
    if (i % CHUNK != 0) { /* same worker as the previous item, just after */
      assert_int_equal(items[i].serial, items[i - 1].serial);
      assert_int_equal(items[i].seq, items[i - 1].seq + 1);
    }
  }
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, N); /* tasks, not chunks */
  release_all(ts, N);
  pool_free_and_run(f, p);
}

/* B17: empty and single inputs; chunksize 1. */
static void test_map_empty_and_single(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  pbl_task_t *t = NULL;
  assert_int_equal(pbl_pool_map_thread(p, identity, NULL, 0, 1, NULL, &t), 0);
  assert_null(t);
  int one = 1;
  void *args[1] = {&one};
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 1, 1, NULL, &t), 0);
  void *r;
  assert_int_equal(pbl_task_get(t, 10000, &r), 0);
  assert_ptr_equal(r, &one);
  pbl_task_release(t);
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 1, 5, NULL, &t), 0);
  assert_int_equal(pbl_task_get(t, 10000, &r), 0);
  pbl_task_release(t);
  pool_free_and_run(f, p);
}

/* B18: chunksize 0 is refused, as are other bad arguments. */
static void test_map_bad_input(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  void *args[2] = {NULL, NULL};
  pbl_task_t *ts[2] = {NULL, NULL};
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 2, 0, NULL, ts),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 0, 0, NULL, ts),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_thread(p, identity, NULL, 2, 1, NULL, ts),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_thread(p, NULL, args, 2, 1, NULL, ts),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_thread(NULL, identity, args, 2, 1, NULL, ts),
                   UV_EINVAL);
  pbl_task_opts neg = {.timeout_ms = -5};
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 2, 1, &neg, ts),
                   UV_EINVAL);
  assert_null(ts[0]);
  assert_int_equal(pbl_pool_close(p), 0);
  assert_int_equal(pbl_pool_map_thread(p, identity, args, 2, 1, NULL, ts),
                   PBL_ECLOSED);
  assert_null(ts[0]);
  pool_free_and_run(f, p);
}

/* B19: an error fails only its item. */
static void *fail_on_two(void *arg) {
  if ((intptr_t)arg == 2)
    pbl_fail(2, "no twos");
  return arg;
}

static void test_map_error_in_one_item(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  void *args[5] = {(void *)0, (void *)1, (void *)2, (void *)3, (void *)4};
  pbl_task_t *ts[5];
  assert_int_equal(pbl_pool_map_thread(p, fail_on_two, args, 5, 3, NULL, ts),
                   0);
  assert_int_equal(pbl_wait_all(ts, 5, 10000), 0);
  for (intptr_t i = 0; i < 5; i++) {
    void *r = NULL;
    int err = pbl_task_get(ts[i], 0, &r);
    if (i == 2) {
      assert_int_equal(err, PBL_EFAILED);
      assert_string_equal(pbl_task_message(ts[i]), "no twos");
    } else {
      assert_int_equal(err, 0);
      assert_int_equal((intptr_t)r, i);
    }
  }
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 4);
  assert_int_equal(st.failed, 1);
  release_all(ts, 5);
  pool_free_and_run(f, p);
}

/* B20: the timeout applies per chunk: thirty 50 ms items in
 * chunks of two on one worker take 1.5 s, past the 1 s timeout, yet each
 * chunk (100 ms) is well within it, with 900 ms to spare for a loaded
 * machine or a sanitizer. */
static void *sleep_50ms(void *arg) {
  uv_sleep(50); /* the work itself, not a wait for something */
  return arg;
}

static void test_map_timeout_per_chunk(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  enum { N = 30 };
  void *args[N] = {NULL};
  pbl_task_t *ts[N];
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c, .timeout_ms = 1000};
  assert_int_equal(pbl_pool_map_thread(p, sleep_50ms, args, N, 2, &o, ts), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.ok, N);
  release_all(ts, N);
  pool_free_and_run(f, p);
}

/* B20: a chunk that runs past its timeout times out whole: the
 * running item is flagged, the items after it never start. */
static void test_map_chunk_times_out(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 1, 0);
  void *args[3] = {NULL};
  pbl_task_t *ts[3];
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c, .timeout_ms = 50};
  assert_int_equal(pbl_pool_map_thread(p, until_cancelled, args, 3, 3, &o, ts),
                   0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.timed_out, 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(pbl_task_state_of(ts[i]), PBL_TIMED_OUT);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 3);
  release_all(ts, 3);
  pool_free_and_run(f, p);
}

/* B21: cancel of one item cancels that one only. */
static _Atomic int ran_mask;

static pbl_test_gate first_gate; /* holds item 0, so the rest wait */

static void *mark_gated(void *arg) {
  intptr_t i = (intptr_t)arg;
  if (i == 0)
    pbl_test_gate_pass(&first_gate);
  atomic_fetch_or(&ran_mask, 1 << i);
  return arg;
}

static void test_map_cancel_one(void **state) {
  pbl_test_fixture *f = *state;
  atomic_store(&ran_mask, 0);
  pbl_test_gate_init(&first_gate);
  pbl_pool_t *p = new_pool(f, 1, 0);
  void *args[5] = {(void *)0, (void *)1, (void *)2, (void *)3, (void *)4};
  pbl_task_t *ts[5];
  assert_int_equal(pbl_pool_map_thread(p, mark_gated, args, 5, 2, NULL, ts), 0);
  assert_true(pbl_test_gate_wait_entered(&first_gate, 1, 10000));
  assert_int_equal(pbl_task_cancel(ts[1]), 0); /* same chunk as item 0 */
  assert_int_equal(pbl_task_cancel(ts[3]), 0); /* a chunk still queued */
  pbl_test_gate_open(&first_gate);
  assert_int_equal(pbl_wait_all(ts, 5, 10000), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  for (int i = 0; i < 5; i++) {
    bool cancelled = i == 1 || i == 3;
    assert_int_equal(pbl_task_state_of(ts[i]),
                     cancelled ? PBL_CANCELLED : PBL_DONE);
    assert_int_equal((atomic_load(&ran_mask) >> i) & 1, cancelled ? 0 : 1);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, 3);
  assert_int_equal(st.cancelled, 2);
  release_all(ts, 5);
  pbl_test_gate_destroy(&first_gate);
  pool_free_and_run(f, p);
}

/* Fire and forget: no tasks array, callbacks still once each. */
static void test_map_without_tasks(void **state) {
  pbl_test_fixture *f = *state;
  pbl_pool_t *p = new_pool(f, 2, 0);
  enum { N = 50 };
  void *args[N] = {NULL};
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  assert_int_equal(pbl_pool_map_thread(p, identity, args, N, 4, &o, NULL), 0);
  assert_int_equal(uv_run(&f->uv, UV_RUN_DEFAULT), 0);
  assert_int_equal(c.calls, N);
  assert_int_equal(c.ok, N);
  pool_free_and_run(f, p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_map_order_and_chunks),  T(test_map_empty_and_single),
      T(test_map_bad_input),         T(test_map_error_in_one_item),
      T(test_map_timeout_per_chunk), T(test_map_chunk_times_out),
      T(test_map_cancel_one),        T(test_map_without_tasks),
  };
  return cmocka_run_group_tests_name("thread-pool-map", tests, NULL, NULL);
}
