/* A parked pool: every thread of libuv's pool waits on a gate, so tasks
 * submitted meanwhile stay queued. Two figures come from it:
 *  - memory per queued task: the heap's growth over the submissions
 *    (glibc's mallinfo2().uordblks: bytes in allocated chunks, headers and
 *    rounding included) divided by their number;
 *  - what a task costs in CPU without the pool's sleeping and waking: the
 *    time to submit them all, then, with the gate open, the time to the
 *    last completion callback. In the burst runs of thread-throughput.c
 *    the pool's wake-ups and lock hand-offs dominate and vary from run to
 *    run; here the submit counts only each task's own work on the loop
 *    thread (steady: within ~10% between runs), which shows where pebble's
 *    overhead lies. The run phase still has the pool's threads sharing
 *    the CPUs with the loop thread, and varies more.
 * Pebble fire and forget against raw uv_queue_work with a malloc'd
 * request, in alternating order, medians over the rounds. */
#include <malloc.h>
#include <stdbool.h>

#include "bench-thread.h"
#include "thread/thread-task.h" /* pbl__thread_task_size() */

typedef struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  unsigned entered; /* mu: pool threads parked */
  bool open;        /* mu */
  size_t n, done;   /* loop thread: measured tasks */
  uint64_t end_ns;  /* the last completion */
} gate;

typedef struct {
  double heap, submit_ns, run_ns; /* per task */
} parked_run;

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

static void finish_one(gate *g) {
  if (++g->done == g->n)
    g->end_ns = bench_now();
}

static void on_done(pbl_task_t *t, void *data) {
  BENCH_CHECK(pbl_task_error(t));
  finish_one(data);
}

static void raw_after(uv_work_t *req, int status) {
  gate *g = req->data;
  BENCH_CHECK(status);
  free(req);
  finish_one(g);
}

static void submit(const thread_bench *b, gate *g, bool pebble) {
  pbl_task_opts o = {.on_done = on_done, .data = g};
  for (size_t i = 0; i < g->n; i++) {
    if (pebble) {
      BENCH_CHECK(pbl_thread(b->pl, bench_empty_fn, NULL, &o, NULL));
      continue;
    }
    uv_work_t *w = bench_alloc(sizeof(*w));
    w->data = g;
    BENCH_CHECK(uv_queue_work(b->uv, w, bench_empty_work, raw_after));
  }
}

static size_t heap_in_use(void) {
  return mallinfo2().uordblks;
}

static parked_run run_parked(const thread_bench *b, gate *g, bool pebble,
                             uv_work_t *parked) {
  g->entered = 0;
  g->open = false;
  g->done = 0;
  for (unsigned i = 0; i < b->pool; i++) {
    parked[i].data = g;
    BENCH_CHECK(uv_queue_work(b->uv, &parked[i], gate_work, gate_after));
  }
  uv_mutex_lock(&g->mu);
  while (g->entered < b->pool)
    uv_cond_wait(&g->cv, &g->mu);
  uv_mutex_unlock(&g->mu);

  size_t m0 = heap_in_use();
  uint64_t t0 = bench_now();
  submit(b, g, pebble);
  uint64_t t1 = bench_now();
  size_t m1 = heap_in_use();

  uv_mutex_lock(&g->mu);
  g->open = true;
  uv_cond_broadcast(&g->cv);
  uv_mutex_unlock(&g->mu);
  uv_run(b->uv, UV_RUN_DEFAULT);
  if (g->done != g->n) {
    fprintf(stderr, "parked: %zu of %zu tasks done\n", g->done, g->n);
    exit(1);
  }
  double n = (double)g->n;
  return (parked_run){((double)m1 - (double)m0) / n, (double)(t1 - t0) / n,
                      (double)(g->end_ns - t1) / n};
}

static void print_side(const char *name, parked_run *runs, int rounds,
                       size_t size, parked_run *med) {
  double *heap = bench_alloc(3 * (size_t)rounds * sizeof(double));
  double *sub = heap + rounds, *run = sub + rounds;
  for (int r = 0; r < rounds; r++) {
    heap[r] = runs[r].heap;
    sub[r] = runs[r].submit_ns;
    run[r] = runs[r].run_ns;
  }
  med->heap = bench_median(heap, (size_t)rounds);
  med->submit_ns = bench_median(sub, (size_t)rounds);
  med->run_ns = bench_median(run, (size_t)rounds);
  printf("    %-38s %6.1f %6zu %8.0f %8.0f %8.0f\n", name, med->heap, size,
         med->submit_ns, med->run_ns, med->submit_ns + med->run_ns);
  free(heap);
}

void thread_parked(const thread_bench *b) {
  gate g = {.n = b->mem_tasks};
  BENCH_CHECK(uv_mutex_init(&g.mu));
  BENCH_CHECK(uv_cond_init(&g.cv));
  uv_work_t *parked = bench_alloc(b->pool * sizeof(*parked));
  parked_run *peb = bench_alloc((size_t)b->rounds * sizeof(*peb));
  parked_run *raw = bench_alloc((size_t)b->rounds * sizeof(*raw));
  for (int r = 0; r < b->rounds; r++) {
    bool pebble_first = r % 2 == 0;
    parked_run first = run_parked(b, &g, pebble_first, parked);
    parked_run second = run_parked(b, &g, !pebble_first, parked);
    peb[r] = pebble_first ? first : second;
    raw[r] = pebble_first ? second : first;
  }

  parked_run mp, mr;
  printf("\nparked pool: %zu tasks queued behind it, then run; median of %d"
         " rounds\n"
         "    per task                              heap B sizeof"
         " submit ns   run ns total ns\n",
         g.n, b->rounds);
  print_side("pebble thread task (fire and forget)", peb, b->rounds,
             pbl__thread_task_size(), &mp);
  print_side("raw uv_queue_work, malloc'd request", raw, b->rounds,
             sizeof(uv_work_t), &mr);
  if (mp.heap == 0)
    printf("    (no heap figures: malloc is not glibc's here,"
           " e.g. under a sanitizer)\n");
  printf("mem_per_task_bytes %.1f\n", mp.heap);
  printf("ratio thread_parked_cpu %.3f\n",
         (mr.submit_ns + mr.run_ns) / (mp.submit_ns + mp.run_ns));
  free(raw);
  free(peb);
  free(parked);
  uv_cond_destroy(&g.cv);
  uv_mutex_destroy(&g.mu);
}
