/* pbl_pool_map_process: order, chunks, empty input, chunk 0, an error
 * item, the timeout per chunk, cancel of one item, a worker dying in the
 * middle of a chunk. Pebble's process-pool scenarios by number
 * (docs/design.md, B17-B21). */
#include <stdlib.h>

#include "process-pool-helpers.h"

static uint32_t *values(size_t n, uint32_t mul) {
  uint32_t *v = malloc(n * sizeof(*v));
  assert_non_null(v);
  for (size_t i = 0; i < n; i++)
    v[i] = (uint32_t)i * mul;
  return v;
}

static pbl_buf *bufs_of(uint32_t *v, size_t n) {
  pbl_buf *b = malloc((n > 0 ? n : 1) * sizeof(*b));
  assert_non_null(b);
  for (size_t i = 0; i < n; i++)
    b[i] = (pbl_buf){&v[i], sizeof(v[i])};
  return b;
}

static uint32_t u32_result(pbl_task_t *t) {
  size_t len;
  const void *p = pbl_task_bytes(t, &len);
  assert_non_null(p);
  assert_int_equal(len, sizeof(uint32_t));
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

/* B17: results in input order; a chunk runs on one worker. */
static void test_order_and_chunks(void **state) {
  F(state);
  enum { N = 20, CHUNK = 3 };
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  uint32_t *v = values(N, 2);
  pbl_buf *in = bufs_of(v, N);
  pbl_task_t *t[N];
  assert_int_equal(pbl_pool_map_process(p, fn_fail_odd, in, N, CHUNK, NULL, t),
                   0);
  free(in);
  run_dry(f);
  for (int i = 0; i < N; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    assert_int_equal(u32_result(t[i]), v[i]);
    if (i % CHUNK != 0)
      assert_int_equal(pbl_task_pid(t[i]), pbl_task_pid(t[i - 1]));
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, N); /* tasks, not chunks */
  for (int i = 0; i < N; i++)
    pbl_task_release(t[i]);
  free(v);
  pool_free_and_run(f, p);
}

/* B17, B18: empty input, chunk 0, bad inputs. */
static void test_edges(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  pbl_task_t *t[2] = {NULL, NULL};
  pbl_buf in[2] = {{"a", 1}, {NULL, 3}};
  assert_int_equal(pbl_pool_map_process(p, fn_echo, NULL, 0, 1, NULL, t), 0);
  assert_int_equal(pbl_pool_map_process(p, fn_echo, in, 1, 0, NULL, t),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_process(p, fn_echo, NULL, 1, 1, NULL, t),
                   UV_EINVAL);
  assert_int_equal(pbl_pool_map_process(p, fn_echo, in, 2, 1, NULL, t),
                   UV_EINVAL); /* no data with a length */
  assert_null(t[0]);
  assert_int_equal(pbl_pool_map_process(p, NULL, in, 1, 1, NULL, t), UV_EINVAL);
  /* Single element, fire and forget. */
  pool_cb_count c = {0};
  pbl_task_opts o = {.on_done = count_cb, .data = &c};
  assert_int_equal(pbl_pool_map_process(p, fn_echo, in, 1, 5, &o, NULL), 0);
  run_dry(f);
  assert_int_equal(c.ok, 1);
  pool_free_and_run(f, p);
}

/* B19: an error fails only its item. */
static void test_error_item(void **state) {
  F(state);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  uint32_t *v = values(3, 1);
  pbl_buf *in = bufs_of(v, 3);
  pbl_task_t *t[3];
  assert_int_equal(pbl_pool_map_process(p, fn_fail_odd, in, 3, 3, NULL, t), 0);
  run_dry(f);
  assert_int_equal(pbl_task_error(t[0]), 0);
  assert_int_equal(pbl_task_error(t[1]), PBL_EFAILED);
  assert_int_equal(pbl_task_fail_code(t[1]), 1);
  assert_string_equal(pbl_task_message(t[1]), "odd 1");
  assert_int_equal(pbl_task_error(t[2]), 0);
  assert_int_equal(u32_result(t[2]), 2);
  for (int i = 0; i < 3; i++)
    pbl_task_release(t[i]);
  free(in);
  free(v);
  pool_free_and_run(f, p);
}

/* B20: the timeout applies per chunk: 20 x 40 ms in chunks
 * of 5 pass a 2 s timeout; a chunk of sleepers all time out. */
static void test_timeout_per_chunk(void **state) {
  F(state);
  pbl_pool_opts po = {.workers = 2, .kill_grace_ms = 200};
  pbl_pool_t *p = new_ppool(f, &po);
  uint32_t ms[20];
  pbl_buf in[20];
  for (int i = 0; i < 20; i++) {
    ms[i] = 40;
    in[i] = (pbl_buf){&ms[i], sizeof(ms[i])};
  }
  pbl_task_opts o = {.timeout_ms = 2000};
  pbl_task_t *t[20];
  assert_int_equal(pbl_pool_map_process(p, fn_sleep_ms, in, 20, 5, &o, t), 0);
  run_dry(f);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    pbl_task_release(t[i]);
  }
  o.timeout_ms = 100;
  assert_int_equal(pbl_pool_map_process(p, fn_sleep, in, 3, 3, &o, t), 0);
  run_dry(f);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(pbl_task_state_of(t[i]), PBL_TIMED_OUT);
    pbl_task_release(t[i]);
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.timed_out, 3);
  pool_free_and_run(f, p);
}

/* B21, done per item: a cancel ends only that item; it never
 * runs (its worker drops it before it starts), and the items after it in
 * its chunk still run on the same worker: nobody is killed. */
static void test_cancel_one(void **state) {
  F(state);
  char path[64];
  test_path(path, sizeof(path), "chunk-skipped");
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  sleep_touch_in st_in[4];
  pbl_buf in[4];
  for (int i = 0; i < 4; i++)
    in[i] = sleep_touch(&st_in[i], i == 0 ? 200 : 10, i == 2 ? path : "");
  pbl_task_t *t[4];
  assert_int_equal(pbl_pool_map_process(p, fn_sleep_touch, in, 4, 4, NULL, t),
                   0);
  assert_true(pbl_test_run_until(&f->uv, task_running, t[0], 30000));
  assert_int_equal(pbl_task_cancel(t[2]), 0);
  run_dry(f);
  assert_int_equal(pbl_task_error(t[0]), 0);
  assert_int_equal(pbl_task_error(t[1]), 0);
  assert_int_equal(pbl_task_state_of(t[2]), PBL_CANCELLED);
  assert_false(file_exists(path));
  assert_int_equal(pbl_task_error(t[3]), 0);
  assert_int_equal(pid_result(t[3]), pid_result(t[0]));
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 0);
  unlink(path);
  for (int i = 0; i < 4; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

/* A worker dying in the middle of a chunk expires the item it ran; the
 * rest of the chunk is requeued, not failed. */
static int chunk_fn(const void *in, size_t len, pbl_buf *out) {
  if (len >= 1 && *(const char *)in == 'x')
    return fn_exit3(in, len, out);
  return fn_pid(in, len, out);
}
PBL_PROCESS_FN(chunk_fn);

/* Inputs of len bytes each; the worker dies on the second. */
static void death_mid_chunk(pbl_test_fixture *f, size_t len) {
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  char *bytes[4];
  pbl_buf in[4];
  for (int i = 0; i < 4; i++) {
    bytes[i] = malloc(len);
    assert_non_null(bytes[i]);
    memset(bytes[i], i == 1 ? 'x' : 'a', len);
    in[i] = (pbl_buf){bytes[i], len};
  }
  pbl_task_t *t[4];
  assert_int_equal(pbl_pool_map_process(p, chunk_fn, in, 4, 4, NULL, t), 0);
  for (int i = 0; i < 4; i++)
    free(bytes[i]);
  run_dry(f);
  assert_int_equal(pbl_task_error(t[0]), 0);
  assert_int_equal(pbl_task_state_of(t[1]), PBL_EXPIRED);
  assert_int_equal(pbl_task_exit_status(t[1]), 3);
  assert_int_equal(pbl_task_pid(t[1]), pid_result(t[0]));
  assert_int_equal(pbl_task_error(t[2]), 0);
  assert_int_equal(pbl_task_error(t[3]), 0);
  assert_int_not_equal(pid_result(t[2]), pid_result(t[0]));
  assert_int_equal(pid_result(t[2]), pid_result(t[3]));
  pbl_pool_stats_t st; /* the item that killed it ran once */
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 1);
  assert_int_equal(st.expired, 1);
  for (int i = 0; i < 4; i++)
    pbl_task_release(t[i]);
  pool_free_and_run(f, p);
}

static void test_death_mid_chunk(void **state) {
  F(state);
  death_mid_chunk(f, 1);
}

/* The same with inputs larger than the channel's socket holds: the chunk
 * is written part now, part in the background, and the worker dies while
 * the write is under way. The item it ran still expires, once: it is
 * known to have reached the worker. */
static void test_death_mid_big_chunk(void **state) {
  F(state);
  death_mid_chunk(f, (size_t)1 << 20);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_order_and_chunks),    T(test_edges),      T(test_error_item),
      T(test_timeout_per_chunk),   T(test_cancel_one), T(test_death_mid_chunk),
      T(test_death_mid_big_chunk),
  };
  return cmocka_run_group_tests_name("process-pool-map", tests, NULL, NULL);
}
