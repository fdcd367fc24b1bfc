/* Latency of one thread task at a time, submitted from another thread
 * that then blocks for its result:
 *   pebble: pbl_thread(..., &task); pbl_task_get(task, -1, ...)
 *   raw:    post to raw-inbox.c -> uv_async -> uv_queue_work -> work ->
 *           after_work on the loop thread -> condvar signal back.
 * Note the paths differ by design: pebble settles the task on the worker
 * thread and wakes the waiter from there, where raw libuv only learns of
 * the end in after_work, one more wake-up away.
 *
 * One sampling thread alternates pebble and raw round trips while the
 * loop thread runs the loop. */
#include <stdbool.h>

#include "bench-thread.h"
#include "raw-inbox.h"

typedef struct {
  const thread_bench *b;
  raw_inbox in;
  uv_async_t finished; /* the sampler is done: close the handles */
  uv_mutex_t mu;
  uv_cond_t cv;
  bool fired;          /* mu: the raw item's after_work ran */
  uint64_t *peb, *raw; /* samples, ns */
  size_t warm, n;
} lat;

static void raw_after(uv_work_t *req, int status) {
  lat *l = req->data;
  if (status != 0) {
    fprintf(stderr, "raw round trip: %s\n", uv_strerror(status));
    exit(1);
  }
  uv_mutex_lock(&l->mu);
  l->fired = true;
  uv_cond_signal(&l->cv);
  uv_mutex_unlock(&l->mu);
}

static uint64_t pebble_once(lat *l) {
  uint64_t t0 = bench_now();
  pbl_task_t *t;
  void *res;
  BENCH_CHECK(pbl_thread(l->b->pl, bench_empty_fn, NULL, NULL, &t));
  BENCH_CHECK(pbl_task_get(t, -1, &res));
  uint64_t dt = bench_now() - t0;
  pbl_task_release(t);
  return dt;
}

/* The item lives on this stack: the loop is done with it once it
 * signals (libuv drops its hold on a request before after_work). */
static uint64_t raw_once(lat *l) {
  raw_item it;
  it.req.data = l;
  l->fired = false; /* no after_work is pending: nobody else touches it */
  uint64_t t0 = bench_now();
  raw_inbox_post(&l->in, &it);
  uv_mutex_lock(&l->mu);
  while (!l->fired)
    uv_cond_wait(&l->cv, &l->mu);
  uv_mutex_unlock(&l->mu);
  return bench_now() - t0;
}

/* Samples alternate one by one, the order flipping each pair: placement
 * on the CPUs (same CPU: a few microseconds, across CPUs: tens) changes
 * over time, and both sides must see the same mix of it. */
static void sampler(void *arg) {
  lat *l = arg;
  for (size_t i = 0; i < l->warm + l->n; i++) {
    bool pebble_first = i % 2 == 0;
    uint64_t a = pebble_first ? pebble_once(l) : raw_once(l);
    uint64_t b = pebble_first ? raw_once(l) : pebble_once(l);
    if (i < l->warm)
      continue;
    l->peb[i - l->warm] = pebble_first ? a : b;
    l->raw[i - l->warm] = pebble_first ? b : a;
  }
  BENCH_CHECK(uv_async_send(&l->finished));
}

/* libuv waits in the async's callback until our send has finished with
 * the handle, so closing it here is safe. */
static void on_finished(uv_async_t *a) {
  lat *l = a->data;
  uv_close((uv_handle_t *)a, NULL);
  raw_inbox_close(&l->in);
}

static void print_side(const char *name, uint64_t *v, size_t n) {
  bench_sort_u64(v, n);
  printf("    %-40s %8.1f %8.1f %8.1f\n", name,
         (double)bench_percentile(v, n, 50) / 1e3,
         (double)bench_percentile(v, n, 90) / 1e3,
         (double)bench_percentile(v, n, 99) / 1e3);
}

void thread_latency(const thread_bench *b) {
  lat l = {.b = b, .warm = b->samples / 10, .n = b->samples};
  size_t n = l.n;
  l.peb = bench_alloc(n * sizeof(*l.peb));
  l.raw = bench_alloc(n * sizeof(*l.raw));
  BENCH_CHECK(uv_mutex_init(&l.mu));
  BENCH_CHECK(uv_cond_init(&l.cv));
  raw_inbox_init(&l.in, b->uv, bench_empty_work, raw_after);
  BENCH_CHECK(uv_async_init(b->uv, &l.finished, on_finished));
  l.finished.data = &l;

  uv_thread_t th;
  BENCH_CHECK(uv_thread_create(&th, sampler, &l));
  uv_run(b->uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_thread_join(&th));

  printf("\nround trip from another thread, one task at a time: "
         "%zu samples a side after %zu warm-up\n"
         "    microseconds                             "
         "     p50      p90      p99\n",
         n, l.warm);
  print_side("pebble: pbl_thread + pbl_task_get", l.peb, n);
  print_side("raw: async + uv_queue_work + condvar", l.raw, n);
  double p50_peb = (double)bench_percentile(l.peb, n, 50);
  double p50_raw = (double)bench_percentile(l.raw, n, 50);
  double p99_peb = (double)bench_percentile(l.peb, n, 99);
  double p99_raw = (double)bench_percentile(l.raw, n, 99);
  printf("ratio thread_roundtrip_p50 %.3f\n", p50_raw / p50_peb);
  printf("ratio thread_roundtrip_p99 %.3f\n", p99_raw / p99_peb);
  uv_cond_destroy(&l.cv);
  uv_mutex_destroy(&l.mu);
  free(l.peb);
  free(l.raw);
}
