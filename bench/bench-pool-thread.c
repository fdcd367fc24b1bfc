/* Thread pool throughput for trivial tasks, against raw uv_queue_work and
 * against Python Pebble's ThreadPool, in the same run: rounds alternate,
 * and each figure is the median of the rounds.
 *
 *   pool        N pbl_pool_thread() on the loop thread, each with a
 *               callback, then uv_run until the last callback
 *   raw         N uv_queue_work() (a malloc'd uv_work_t each, freed in
 *               after_work), then uv_run until the last after_work
 *   map/64      pbl_pool_map_thread() of N inputs in chunks of 64, a
 *               callback per input
 *   py          Pebble's ThreadPool: schedule N and wait for each result;
 *               map(chunksize=64) and read every result
 *   held        the loop thread's own work, raw and pool: N scheduled
 *               while a gate task holds every worker, then, once all ran,
 *               uv_run delivering them (ns a task for each part)
 *
 * Our pool has as many threads as libuv's (UV_THREADPOOL_SIZE, set to 2
 * here when unset: these machines have two CPUs). Usage:
 *   bench-pool-thread [path/to/pebble_threadpool.py] [N] [ROUNDS]
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define CHUNK 64
#define MAX_ROUNDS 15

static size_t done;

/* ---- raw uv_queue_work ---- */

static void raw_work(uv_work_t *req) {
  (void)req;
}

static void raw_after(uv_work_t *req, int status) {
  (void)status;
  free(req);
  done++;
}

static double run_raw(uv_loop_t *uv, size_t n) {
  done = 0;
  uint64_t t0 = bench_now();
  for (size_t i = 0; i < n; i++) {
    uv_work_t *req = bench_alloc(sizeof(*req));
    BENCH_CHECK(uv_queue_work(uv, req, raw_work, raw_after));
  }
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t1 = bench_now();
  BENCH_CHECK(done == n ? 0 : UV_EINVAL); /* no request lost */
  return (double)n * 1e9 / (double)(t1 - t0);
}

/* ---- our pool ---- */

static void *trivial(void *arg) {
  return arg;
}

static void count_cb(pbl_task_t *t, void *data) {
  (void)t;
  (void)data;
  done++;
}

static double run_pool(uv_loop_t *uv, pbl_pool_t *p, size_t n) {
  pbl_task_opts o = {.on_done = count_cb};
  done = 0;
  uint64_t t0 = bench_now();
  for (size_t i = 0; i < n; i++)
    BENCH_CHECK(pbl_pool_thread(p, trivial, NULL, &o, NULL));
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t1 = bench_now();
  BENCH_CHECK(done == n ? 0 : UV_EINVAL); /* no task lost */
  return (double)n * 1e9 / (double)(t1 - t0);
}

static double run_map(uv_loop_t *uv, pbl_pool_t *p, void *const *args,
                      size_t n) {
  pbl_task_opts o = {.on_done = count_cb};
  done = 0;
  uint64_t t0 = bench_now();
  BENCH_CHECK(pbl_pool_map_thread(p, trivial, args, n, CHUNK, &o, NULL));
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t1 = bench_now();
  BENCH_CHECK(done == n ? 0 : UV_EINVAL); /* no task lost */
  return (double)n * 1e9 / (double)(t1 - t0);
}

/* ---- the loop thread's own work, workers held back ---- */

/* A gate task per worker holds every worker while N tasks are scheduled:
 * that times the loop thread's scheduling alone. Once the gate opened and
 * every task ran, uv_run times the delivery alone. In the runs above both
 * are mixed with contention (the workers taking the same lines, and
 * getting into the loop thread's way), which varies from run to run. */
static struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  bool open; /* mu */
} gate;
static _Atomic size_t ran;

static void set_gate(bool open) {
  uv_mutex_lock(&gate.mu);
  gate.open = open;
  uv_cond_broadcast(&gate.cv);
  uv_mutex_unlock(&gate.mu);
}

static void held(void) {
  uv_mutex_lock(&gate.mu);
  while (!gate.open)
    uv_cond_wait(&gate.cv, &gate.mu);
  uv_mutex_unlock(&gate.mu);
}

static void raw_held(uv_work_t *req) {
  (void)req;
  held();
}

static void *pool_held(void *arg) {
  held();
  return arg;
}

static void raw_counted(uv_work_t *req) {
  (void)req;
  atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
}

static void *pool_counted(void *arg) {
  atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
  return arg;
}

static void schedule(uv_loop_t *uv, pbl_pool_t *p, bool raw, uv_work_cb raw_fn,
                     pbl_thread_fn pool_fn) {
  if (raw) {
    uv_work_t *req = bench_alloc(sizeof(*req));
    BENCH_CHECK(uv_queue_work(uv, req, raw_fn, raw_after));
  } else {
    pbl_task_opts o = {.on_done = count_cb};
    BENCH_CHECK(pbl_pool_thread(p, pool_fn, NULL, &o, NULL));
  }
}

typedef struct {
  double schedule, deliver; /* ns a task */
} held_ns;

static held_ns run_held(uv_loop_t *uv, pbl_pool_t *p, size_t n,
                        unsigned workers, bool raw) {
  done = 0;
  atomic_store(&ran, 0);
  set_gate(false);
  for (unsigned i = 0; i < workers; i++) /* first in line: each takes one */
    schedule(uv, p, raw, raw_held, pool_held);
  uint64_t t0 = bench_now();
  for (size_t i = 0; i < n; i++)
    schedule(uv, p, raw, raw_counted, pool_counted);
  uint64_t t1 = bench_now();
  set_gate(true);
  while (atomic_load(&ran) < n)
    uv_sleep(1);
  uint64_t t2 = bench_now();
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t3 = bench_now();
  BENCH_CHECK(done == n + workers ? 0 : UV_EINVAL); /* none lost */
  return (held_ns){(double)(t1 - t0) / (double)n,
                   (double)(t3 - t2) / (double)n};
}

/* ---- Python Pebble ---- */

static double run_py(const char *script, const char *mode, size_t n,
                     unsigned workers) {
  return bench_run_py(script, mode, n, workers, CHUNK);
}

static void row(const char *name, size_t n, double rate) {
  bench_row(28, name, n, rate);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : NULL;
  size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 200000;
  int rounds = argc > 3 ? atoi(argv[3]) : 5;
  if (n == 0 || rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "usage: %s [script] [N > 0] [ROUNDS 1..%d]\n", argv[0],
            MAX_ROUNDS);
    return 2;
  }
  setenv("UV_THREADPOOL_SIZE", "2", 0); /* read by libuv at first use */
  unsigned workers = bench_pool_size();

  (void)bench_steady_heap("bench-pool-thread");
  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  pbl_loop_t *pl;
  BENCH_CHECK(pbl_loop_new(&uv, &pl));
  pbl_pool_opts po = {.workers = workers};
  pbl_pool_t *p;
  BENCH_CHECK(pbl_thread_pool_new(pl, &po, &p));
  void **args = bench_alloc(n * sizeof(*args));
  memset(args, 0, n * sizeof(*args));

  /* Warm up both pools: threads started, caches and malloc arenas hot. */
  run_raw(&uv, n / 10 + 1);
  run_pool(&uv, p, n / 10 + 1);

  BENCH_CHECK(uv_mutex_init(&gate.mu));
  BENCH_CHECK(uv_cond_init(&gate.cv));
  double raw[MAX_ROUNDS], pool[MAX_ROUNDS], map[MAX_ROUNDS];
  double raw_s[MAX_ROUNDS], raw_d[MAX_ROUNDS], raw_sd[MAX_ROUNDS];
  double pool_s[MAX_ROUNDS], pool_d[MAX_ROUNDS], pool_sd[MAX_ROUNDS];
  double py[MAX_ROUNDS], pymap[MAX_ROUNDS];
  int py_n = 0, pymap_n = 0;
  for (int r = 0; r < rounds; r++) {
    if (r % 2 == 0) {
      raw[r] = run_raw(&uv, n);
      pool[r] = run_pool(&uv, p, n);
    } else {
      pool[r] = run_pool(&uv, p, n);
      raw[r] = run_raw(&uv, n);
    }
    map[r] = run_map(&uv, p, args, n);
    held_ns hr = run_held(&uv, p, n, workers, true);
    held_ns hp = run_held(&uv, p, n, workers, false);
    raw_s[r] = hr.schedule;
    raw_d[r] = hr.deliver;
    raw_sd[r] = hr.schedule + hr.deliver;
    pool_s[r] = hp.schedule;
    pool_d[r] = hp.deliver;
    pool_sd[r] = hp.schedule + hp.deliver;
    double v = run_py(script, "schedule", n, workers);
    if (v > 0)
      py[py_n++] = v;
    v = run_py(script, "map", n, workers);
    if (v > 0)
      pymap[pymap_n++] = v;
  }
  double m_raw = bench_median(raw, (size_t)rounds);
  double m_pool = bench_median(pool, (size_t)rounds);
  double m_map = bench_median(map, (size_t)rounds);
  double m_py = py_n > 0 ? bench_median(py, (size_t)py_n) : -1;
  double m_pymap = pymap_n > 0 ? bench_median(pymap, (size_t)pymap_n) : -1;

  printf("thread pool throughput, trivial tasks: %u workers "
         "(UV_THREADPOOL_SIZE=%u), median of %d rounds\n",
         workers, workers, rounds);
  printf("%-28s %9s %14s\n", "", "tasks", "tasks/s");
  row("uv_queue_work (raw)", n, m_raw);
  row("pbl_pool_thread", n, m_pool);
  row("pbl_pool_map_thread /64", n, m_map);
  row("Pebble ThreadPool.schedule", n, m_py);
  row("Pebble ThreadPool.map /64", n, m_pymap);
  printf("loop thread's own work, workers held (ns a task): schedule, "
         "deliver\n");
  printf("%-28s %9.0f %9.0f\n", "uv_queue_work (raw)",
         bench_median(raw_s, (size_t)rounds),
         bench_median(raw_d, (size_t)rounds));
  printf("%-28s %9.0f %9.0f\n", "pbl_pool_thread",
         bench_median(pool_s, (size_t)rounds),
         bench_median(pool_d, (size_t)rounds));
  bench_ratio("pool-thread-vs-uv_queue_work", m_pool, m_raw);
  /* throughput of the loop thread's own work: raw ns over ours */
  bench_ratio("pool-thread-held-vs-uv_queue_work",
              bench_median(raw_sd, (size_t)rounds),
              bench_median(pool_sd, (size_t)rounds));
  bench_ratio("pool-map64-vs-uv_queue_work", m_map, m_raw);
  bench_ratio("pool-thread-vs-pebble-threadpool", m_pool, m_py);
  bench_ratio("pool-map64-vs-pebble-threadpool-map64", m_map, m_pymap);
  if (m_py < 0)
    printf("(Python Pebble skipped: %s or pebble missing)\n", BENCH_PY);

  free(args);
  uv_cond_destroy(&gate.cv);
  uv_mutex_destroy(&gate.mu);
  pbl_pool_free(p);
  pbl_loop_close(pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}
