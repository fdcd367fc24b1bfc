/* Memory per queued task: every thread of libuv's pool is parked on a
 * gate, so tasks submitted now stay queued; the heap growth over
 * b->mem_tasks submissions (glibc's mallinfo2().uordblks: bytes in
 * allocated chunks, headers and rounding included) divided by their
 * number is what a queued task costs. The same for raw uv_queue_work
 * with a malloc'd request, and the sizeof figures, for comparison. */
#include <malloc.h>
#include <stdbool.h>

#include "bench-thread.h"
#include "internal.h" /* pbl__thread_task_size() */

typedef struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  unsigned entered; /* mu */
  bool open;        /* mu */
  size_t done;      /* loop thread: completions of measured tasks */
} gate;

static void gate_work(uv_work_t *req) {
  gate *g = req->data;
  uv_mutex_lock(&g->mu);
  g->entered++;
  uv_cond_broadcast(&g->cv);
  while (!g->open)
    uv_cond_wait(&g->cv, &g->mu);
  uv_mutex_unlock(&g->mu);
}

static void gate_after(uv_work_t *req, int status) {
  (void)req;
  BENCH_CHECK(status);
}

static void on_done(pbl_task_t *t, void *data) {
  gate *g = data;
  BENCH_CHECK(pbl_task_error(t));
  g->done++;
}

static void raw_after(uv_work_t *req, int status) {
  gate *g = req->data;
  BENCH_CHECK(status);
  free(req);
  g->done++;
}

static size_t heap_in_use(void) {
  return mallinfo2().uordblks;
}

void thread_memory(const thread_bench *b) {
  gate g = {.entered = 0, .open = false, .done = 0};
  BENCH_CHECK(uv_mutex_init(&g.mu));
  BENCH_CHECK(uv_cond_init(&g.cv));
  uv_work_t *parked = bench_alloc(b->pool * sizeof(*parked));
  for (unsigned i = 0; i < b->pool; i++) {
    parked[i].data = &g;
    BENCH_CHECK(uv_queue_work(b->uv, &parked[i], gate_work, gate_after));
  }
  uv_mutex_lock(&g.mu);
  while (g.entered < b->pool)
    uv_cond_wait(&g.cv, &g.mu);
  uv_mutex_unlock(&g.mu);

  size_t n = b->mem_tasks;
  pbl_task_opts o = {.on_done = on_done, .data = &g};
  size_t m0 = heap_in_use();
  for (size_t i = 0; i < n; i++)
    BENCH_CHECK(pbl_thread(b->pl, bench_empty_fn, NULL, &o, NULL));
  size_t m1 = heap_in_use();
  for (size_t i = 0; i < n; i++) {
    uv_work_t *w = bench_alloc(sizeof(*w));
    w->data = &g;
    BENCH_CHECK(uv_queue_work(b->uv, w, bench_empty_work, raw_after));
  }
  size_t m2 = heap_in_use();

  uv_mutex_lock(&g.mu);
  g.open = true;
  uv_cond_broadcast(&g.cv);
  uv_mutex_unlock(&g.mu);
  uv_run(b->uv, UV_RUN_DEFAULT);
  if (g.done != 2 * n) {
    fprintf(stderr, "memory: %zu of %zu tasks done\n", g.done, 2 * n);
    exit(1);
  }
  free(parked);
  uv_cond_destroy(&g.cv);
  uv_mutex_destroy(&g.mu);

  double peb = ((double)m1 - (double)m0) / (double)n;
  double raw = ((double)m2 - (double)m1) / (double)n;
  printf("\nmemory per queued task (%zu queued behind a parked pool)\n"
         "    bytes                                     heap   sizeof\n"
         "    %-40s %6.1f %8zu\n"
         "    %-40s %6.1f %8zu\n",
         n, "pebble thread task (fire and forget)", peb,
         pbl__thread_task_size(), "raw uv_work_t, malloc'd", raw,
         sizeof(uv_work_t));
  printf("mem_per_task_bytes %.1f\n", peb);
}
