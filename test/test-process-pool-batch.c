/* pbl_pool_map_process with a chunk's answers held by its worker
 * (process/worker-out.h) and journaled (process/answer-journal.h): a
 * worker that dies holding answers -- _exit, abort, SIGSEGV in the
 * function, SIGKILL from outside -- expires exactly the item it ran; the
 * items before it end DONE with their results, those after it run on
 * another worker. A cancel of an unstarted item of such a chunk is still
 * dropped unrun; large results and every byte value come through a
 * chunk intact. */
#include <signal.h>
#include <stdlib.h>

#include "process-pool-helpers.h"

/* An item: what to do, a value, and a file name for the waits. */
typedef struct {
  char op;
  uint32_t value;
  uint32_t size;
  char path[100];
} item_in;

static int give_u32(pbl_buf *out, uint32_t v) {
  out->data = malloc(sizeof(v));
  if (out->data == NULL)
    return 1;
  memcpy(out->data, &v, sizeof(v));
  out->len = sizeof(v);
  return 0;
}

/* Writes our pid into path, whole (renamed into place). */
static void say_reached(const char *path) {
  char tmp[128], pid[16];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (f == NULL || fwrite(pid, 1, (size_t)n, f) != (size_t)n)
    _exit(9);
  fclose(f);
  if (rename(tmp, path) != 0)
    _exit(9);
}

/* The ops: 'v' value*3; 'x' _exit(3); 'a' abort; 's' SIGSEGV; 'w' write
 * the pid to path, then wait for path.go (a minute at most); 't' create
 * path, value*3; 'b' size bytes of a pattern of value. */
static int batch_fn(const void *in, size_t len, pbl_buf *out) {
  item_in it;
  if (len != sizeof(it))
    return 7;
  memcpy(&it, in, sizeof(it));
  switch (it.op) {
  case 'x':
    _exit(3);
  case 'a':
    abort();
  case 's':
    signal(SIGSEGV, SIG_DFL); /* past a sanitizer's handler */
    raise(SIGSEGV);
    return 1;
  case 'w': {
    char go[128];
    snprintf(go, sizeof(go), "%s.go", it.path);
    say_reached(it.path);
    for (int i = 0; i < 60000 && access(go, F_OK) != 0; i++)
      usleep(1000);
    break;
  }
  case 't': {
    FILE *f = fopen(it.path, "w");
    if (f != NULL)
      fclose(f);
    break;
  }
  case 'b': {
    uint8_t *p = malloc(it.size > 0 ? it.size : 1);
    if (p == NULL)
      return 1;
    for (uint32_t i = 0; i < it.size; i++)
      p[i] = (uint8_t)(it.value + i * 7);
    out->data = p;
    out->len = it.size;
    return 0;
  }
  }
  return give_u32(out, it.value * 3);
}
PBL_PROCESS_FN(batch_fn);

static pbl_buf item(item_in *in, char op, uint32_t value, const char *path) {
  memset(in, 0, sizeof(*in));
  in->op = op;
  in->value = value;
  snprintf(in->path, sizeof(in->path), "%s", path);
  return (pbl_buf){in, sizeof(*in)};
}

static void expect_tripled(pbl_task_t *t, uint32_t v) {
  assert_int_equal(pbl_task_error(t), 0);
  size_t len;
  const void *p = pbl_task_bytes(t, &len);
  assert_int_equal(len, sizeof(uint32_t));
  uint32_t got;
  memcpy(&got, p, sizeof(got));
  assert_int_equal(got, v * 3);
}

/* The pid a 'w' item wrote, once its file is there. */
static int reached_pid(pbl_test_fixture *f, const char *path) {
  assert_true(pbl_test_run_until(&f->uv, file_exists_cb, (void *)path, 60000));
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  long pid = 0;
  assert_int_equal(fscanf(fp, "%ld", &pid), 1);
  fclose(fp);
  return (int)pid;
}

enum { N = 8, DIES = 3 };

/* Items 0..N-1, one chunk on one worker; item DIES does `op` (or waits at
 * `path` for the test to kill it); the rest answer value*3. */
static void check_death(pbl_test_fixture *f, char op, int status, int sig) {
  char path[64];
  test_path(path, sizeof(path), "batch-reached");
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  item_in ins[N];
  pbl_buf in[N];
  for (int i = 0; i < N; i++)
    in[i] = item(&ins[i], i == DIES ? op : 'v', (uint32_t)i + 1, path);
  pbl_task_t *t[N];
  assert_int_equal(pbl_pool_map_process(p, batch_fn, in, N, N, NULL, t), 0);
  if (op == 'w') { /* items 0..2 answered, held; the worker waits */
    int pid = reached_pid(f, path);
    if (pbl_task_state_of(t[0]) < PBL_DONE)
      print_message("answers held when killed\n");
    assert_int_equal(kill(pid, SIGKILL), 0);
  }
  run_dry(f);
  for (int i = 0; i < DIES; i++)
    expect_tripled(t[i], (uint32_t)i + 1);
  assert_int_equal(pbl_task_state_of(t[DIES]), PBL_EXPIRED);
  assert_int_equal(pbl_task_exit_status(t[DIES]), status);
  assert_int_equal(pbl_task_term_signal(t[DIES]), sig);
  assert_int_equal(pbl_task_pid(t[DIES]), pbl_task_pid(t[0]));
  for (int i = DIES + 1; i < N; i++) { /* requeued: a new worker ran them */
    expect_tripled(t[i], (uint32_t)i + 1);
    assert_int_not_equal(pbl_task_pid(t[i]), pbl_task_pid(t[0]));
  }
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.done, N - 1);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.respawned, 1);
  for (int i = 0; i < N; i++)
    pbl_task_release(t[i]);
  unlink(path);
  pool_free_and_run(f, p);
}

static void test_exit_holding(void **state) {
  F(state);
  check_death(f, 'x', 3, 0);
}

static void test_abort_holding(void **state) {
  F(state);
  check_death(f, 'a', 0, SIGABRT);
}

static void test_segv_holding(void **state) {
  F(state);
  check_death(f, 's', 0, SIGSEGV);
}

static void test_sigkill_holding(void **state) {
  F(state);
  check_death(f, 'w', 0, SIGKILL);
}

/* An item not yet started in a chunk whose answers are held is still
 * dropped on its cancel: it never runs, and nobody is killed. */
static void test_cancel_unstarted(void **state) {
  F(state);
  char path[64], go[80], ran[64];
  test_path(path, sizeof(path), "batch-wait");
  test_path(ran, sizeof(ran), "batch-ran");
  snprintf(go, sizeof(go), "%s.go", path);
  (void)unlink(go);
  pbl_pool_t *p = new_ppool_n(f, 1, 0);
  item_in ins[5];
  pbl_buf in[5] = {item(&ins[0], 'v', 1, ""), item(&ins[1], 'v', 2, ""),
                   item(&ins[2], 'w', 3, path), item(&ins[3], 't', 4, ran),
                   item(&ins[4], 'v', 5, "")};
  pbl_task_t *t[5];
  assert_int_equal(pbl_pool_map_process(p, batch_fn, in, 5, 5, NULL, t), 0);
  int pid = reached_pid(f, path);
  assert_int_equal(pbl_task_cancel(t[3]), 0);
  FILE *fp = fopen(go, "w");
  assert_non_null(fp);
  fclose(fp);
  run_dry(f);
  expect_tripled(t[0], 1);
  expect_tripled(t[1], 2);
  expect_tripled(t[2], 3);
  assert_int_equal(pbl_task_state_of(t[3]), PBL_CANCELLED);
  assert_false(file_exists(ran));
  expect_tripled(t[4], 5);
  assert_int_equal(pbl_task_pid(t[4]), pid);
  pbl_pool_stats_t st;
  assert_int_equal(pbl_pool_stats(p, &st), 0);
  assert_int_equal(st.respawned, 0);
  for (int i = 0; i < 5; i++)
    pbl_task_release(t[i]);
  unlink(path);
  unlink(go);
  pool_free_and_run(f, p);
}

/* Results of every size in chunks: small ones held, 40 KiB ones past the
 * hold limit, MiB ones written straight; every byte value; each intact. */
static void test_sizes(void **state) {
  F(state);
  enum { M = 24 };
  static const uint32_t sizes[] = {0,     1,       255,     256,
                                   40000, 1 << 20, 3 << 20, 65536 - 24};
  pbl_pool_t *p = new_ppool_n(f, 2, 0);
  item_in ins[M];
  pbl_buf in[M];
  for (int i = 0; i < M; i++) {
    in[i] = item(&ins[i], 'b', (uint32_t)i * 13, "");
    ins[i].size = sizes[i % 8];
  }
  pbl_task_t *t[M];
  assert_int_equal(pbl_pool_map_process(p, batch_fn, in, M, 6, NULL, t), 0);
  run_dry(f);
  for (int i = 0; i < M; i++) {
    assert_int_equal(pbl_task_error(t[i]), 0);
    size_t len;
    const uint8_t *b = pbl_task_bytes(t[i], &len);
    assert_int_equal(len, sizes[i % 8]);
    for (size_t k = 0; k < len; k++)
      if (b[k] != (uint8_t)(ins[i].value + k * 7))
        fail_msg("item %d byte %zu: %u", i, k, b[k]);
    pbl_task_release(t[i]);
  }
  pool_free_and_run(f, p);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  const struct CMUnitTest tests[] = {
      T(test_exit_holding),    T(test_abort_holding),    T(test_segv_holding),
      T(test_sigkill_holding), T(test_cancel_unstarted), T(test_sizes),
  };
  return cmocka_run_group_tests_name("process-pool-batch", tests, NULL, NULL);
}
