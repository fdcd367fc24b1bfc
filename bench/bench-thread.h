/* The parts of the thread-task benchmark (bench-thread.c runs them in one
 * process, on one uv loop and binding, so every ratio compares pebble and
 * its baseline measured side by side). */
#ifndef PBL_BENCH_THREAD_H
#define PBL_BENCH_THREAD_H

#include <stddef.h>

#include "bench.h"

typedef struct {
  uv_loop_t *uv;
  pbl_loop_t *pl;   /* bound to uv; the calling thread is its loop thread */
  size_t n;         /* tasks a throughput run submits */
  int rounds;       /* rounds of each variant, alternated */
  size_t samples;   /* round trips measured per side */
  size_t mem_tasks; /* tasks queued behind the parked pool */
  unsigned pool;    /* libuv's pool size */
} thread_bench;

/* Each runs on the loop thread, runs the loop itself and prints its table
 * and its `ratio` lines. */
void thread_throughput(const thread_bench *b);
void thread_latency(const thread_bench *b);
void thread_parked(const thread_bench *b);

/* The empty work every part measures. */
void *bench_empty_fn(void *arg);
void bench_empty_work(uv_work_t *req);

#endif
