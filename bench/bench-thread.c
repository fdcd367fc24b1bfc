/* The thread-task benchmark: pebble's thread tasks against raw
 * uv_queue_work, in one process and one run (see bench-thread.h).
 *
 *   bench-thread [tasks [rounds [samples [mem_tasks]]]]
 *
 * Defaults: 1,000,000 tasks a throughput run, 5 rounds, 20,000 round
 * trips a side, 100,000 tasks queued behind the parked pool (memory and
 * CPU cost a task). libuv's pool size comes from UV_THREADPOOL_SIZE
 * (default 4), read once at its first use. */
#include <stdlib.h>

#include "bench-thread.h"

void *bench_empty_fn(void *arg) {
  return arg;
}

void bench_empty_work(uv_work_t *req) {
  (void)req;
}

static size_t arg_or(int argc, char **argv, int i, size_t def) {
  if (argc <= i)
    return def;
  long long v = atoll(argv[i]);
  if (v <= 0) {
    fprintf(stderr, "bench-thread: bad argument '%s'\n", argv[i]);
    exit(2);
  }
  return (size_t)v;
}

int main(int argc, char **argv) {
  thread_bench b = {
      .n = arg_or(argc, argv, 1, 1000000),
      .rounds = (int)arg_or(argc, argv, 2, 5),
      .samples = arg_or(argc, argv, 3, 20000),
      .mem_tasks = arg_or(argc, argv, 4, 100000),
      .pool = bench_pool_size(),
  };
  if (b.samples < 10)
    b.samples = 10;
  (void)bench_steady_heap("bench-thread");
  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  b.uv = &uv;
  BENCH_CHECK(pbl_loop_new(&uv, &b.pl));
  printf("bench-thread: libuv %s, pool of %u threads (UV_THREADPOOL_SIZE"
         " %s)\n",
         uv_version_string(), b.pool,
         getenv("UV_THREADPOOL_SIZE") ? getenv("UV_THREADPOOL_SIZE")
                                      : "unset: libuv's default");
  fflush(stdout);

  thread_throughput(&b);
  fflush(stdout);
  thread_latency(&b);
  fflush(stdout);
  thread_parked(&b);

  pbl_loop_close(b.pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}
