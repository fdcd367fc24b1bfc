/* Throughput: b->n empty thread tasks through pbl_thread against raw
 * uv_queue_work, (a) submitted on the loop thread in one burst, after
 * which the loop runs them all, and (b) submitted by another thread while
 * the loop runs. A run is timed from its first submit to its last
 * completion callback.
 *
 * Each round runs every variant once, in an order that rotates from round
 * to round, so drift (page cache, frequency, the other tenant of the
 * machine) falls on all of them alike; the table gives medians.
 *
 * The baseline gives each request its own malloc'd uv_work_t, freed in
 * after_work: real work carries per-request data, and pebble allocates
 * its task the same way. A request array allocated once, the cheapest
 * libuv can go, is shown for information. From another thread the
 * baseline is raw-inbox.c. */
#include <stdbool.h>
#include <stddef.h>

#include "bench-thread.h"
#include "raw-inbox.h"

typedef enum {
  PEB_FORGET, /* fire and forget, on_done counts */
  PEB_HANDLE, /* the submitter keeps the task; on_done releases it */
  RAW_MALLOC,
  RAW_ARRAY,
  NVARIANTS
} variant;

static const char *const variant_names[NVARIANTS] = {
    "pebble, fire and forget",
    "pebble, handle released in on_done",
    "raw uv_queue_work, malloc'd request",
    "raw uv_queue_work, request array (info)",
};

typedef struct {
  const thread_bench *b;
  size_t n;
  variant v;
  bool foreign;
  size_t done;     /* loop thread: completions */
  size_t failed;   /* loop thread */
  uint64_t end_ns; /* at the last completion */
  uv_thread_t producer;
  uv_async_t alive; /* foreign runs: keeps uv_run going to the end */
  raw_inbox in;     /* foreign RAW_MALLOC */
  uv_work_t *array; /* RAW_ARRAY */
} run;

/* raw_item starts with its request: after_work frees either kind alike. */
_Static_assert(offsetof(raw_item, req) == 0, "raw_item.req first");

static void finish_one(run *r) {
  if (++r->done != r->n)
    return;
  r->end_ns = bench_now();
  if (!r->foreign)
    return;
  /* Every item ran, so the producer is done but for, at most, its last
   * uv_async_send: wait for it before closing what it sends on. */
  BENCH_CHECK(uv_thread_join(&r->producer));
  uv_close((uv_handle_t *)&r->alive, NULL);
  if (r->v == RAW_MALLOC)
    raw_inbox_close(&r->in);
}

static void on_done(pbl_task_t *t, void *data) {
  run *r = data;
  if (pbl_task_error(t) != 0)
    r->failed++;
  if (r->v == PEB_HANDLE)
    pbl_task_release(t); /* the submitter's reference */
  finish_one(r);
}

static void raw_after_free(uv_work_t *req, int status) {
  run *r = req->data;
  if (status != 0)
    r->failed++;
  free(req);
  finish_one(r);
}

static void raw_after_keep(uv_work_t *req, int status) {
  run *r = req->data;
  if (status != 0)
    r->failed++;
  finish_one(r);
}

static void submit_pebble(run *r) {
  pbl_task_opts o = {.on_done = on_done, .data = r};
  pbl_task_t *t;
  pbl_task_t **out = r->v == PEB_HANDLE ? &t : NULL;
  for (size_t i = 0; i < r->n; i++)
    BENCH_CHECK(pbl_thread(r->b->pl, bench_empty_fn, NULL, &o, out));
}

static void submit_raw(run *r) {
  for (size_t i = 0; i < r->n; i++) {
    bool own = r->v == RAW_MALLOC;
    uv_work_t *w = own ? bench_alloc(sizeof(*w)) : &r->array[i];
    w->data = r;
    BENCH_CHECK(uv_queue_work(r->b->uv, w, bench_empty_work,
                              own ? raw_after_free : raw_after_keep));
  }
}

static void producer(void *arg) {
  run *r = arg;
  if (r->v != RAW_MALLOC) {
    submit_pebble(r);
    return;
  }
  for (size_t i = 0; i < r->n; i++) {
    raw_item *it = bench_alloc(sizeof(*it));
    it->req.data = r;
    raw_inbox_post(&r->in, it);
  }
}

/* One run; returns tasks a second. */
static double run_once(const thread_bench *b, size_t n, variant v, bool foreign,
                       uv_work_t *array) {
  run r = {.b = b, .n = n, .v = v, .foreign = foreign, .array = array};
  if (foreign) {
    BENCH_CHECK(uv_async_init(b->uv, &r.alive, NULL));
    if (v == RAW_MALLOC)
      raw_inbox_init(&r.in, b->uv, bench_empty_work, raw_after_free);
  }
  uint64_t t0 = bench_now();
  if (foreign)
    BENCH_CHECK(uv_thread_create(&r.producer, producer, &r));
  else if (v == PEB_FORGET || v == PEB_HANDLE)
    submit_pebble(&r);
  else
    submit_raw(&r);
  uv_run(b->uv, UV_RUN_DEFAULT);
  if (r.done != n || r.failed != 0) {
    fprintf(stderr, "%s: %zu of %zu done, %zu failed\n", variant_names[v],
            r.done, n, r.failed);
    exit(1);
  }
  return (double)n * 1e9 / (double)(r.end_ns - t0);
}

typedef struct {
  bool foreign;
  int nv;
  const variant *vs;
  double *tput[NVARIANTS]; /* per round, tasks a second */
} mode;

static void print_mode(const mode *m, int rounds) {
  printf("  submitted %s\n",
         m->foreign ? "from another thread" : "on the loop thread");
  for (int k = 0; k < m->nv; k++) {
    double *v = m->tput[m->vs[k]];
    double med = bench_median(v, (size_t)rounds); /* sorts v */
    printf("    %-42s %6.3f  (%.3f .. %.3f)\n", variant_names[m->vs[k]],
           med / 1e6, v[0] / 1e6, v[rounds - 1] / 1e6);
  }
}

/* After print_mode: medians sit in the middle of sorted arrays. */
static double median_of(const mode *m, variant v, int rounds) {
  return bench_median(m->tput[v], (size_t)rounds);
}

void thread_throughput(const thread_bench *b) {
  static const variant loop_vs[] = {PEB_FORGET, PEB_HANDLE, RAW_MALLOC,
                                    RAW_ARRAY};
  static const variant foreign_vs[] = {PEB_FORGET, PEB_HANDLE, RAW_MALLOC};
  mode modes[2] = {{false, 4, loop_vs, {0}}, {true, 3, foreign_vs, {0}}};
  uv_work_t *array = bench_alloc(b->n * sizeof(*array));
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < modes[i].nv; k++)
      modes[i].tput[modes[i].vs[k]] =
          bench_alloc((size_t)b->rounds * sizeof(double));

  /* Warm-up: starts the pool's threads and touches the request array. */
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < modes[i].nv; k++)
      (void)run_once(
          b, modes[i].vs[k] == RAW_ARRAY || b->n < 10 ? b->n : b->n / 10,
          modes[i].vs[k], modes[i].foreign, array);

  for (int r = 0; r < b->rounds; r++) {
    for (int i = 0; i < 2; i++) {
      const mode *m = &modes[(i + r) % 2];
      for (int k = 0; k < m->nv; k++) {
        variant v = m->vs[(k + r) % m->nv];
        m->tput[v][r] = run_once(b, b->n, v, m->foreign, array);
      }
    }
  }
  free(array);

  printf("\nthroughput: %zu empty tasks a run, libuv pool of %u threads\n"
         "M tasks/s, median of %d rounds (min .. max)\n",
         b->n, b->pool, b->rounds);
  for (int i = 0; i < 2; i++)
    print_mode(&modes[i], b->rounds);
  const mode *lm = &modes[0], *fm = &modes[1];
  double raw_loop = median_of(lm, RAW_MALLOC, b->rounds);
  double raw_foreign = median_of(fm, RAW_MALLOC, b->rounds);
  printf("ratio thread_loop %.3f\n",
         median_of(lm, PEB_FORGET, b->rounds) / raw_loop);
  printf("ratio thread_loop_handle %.3f\n",
         median_of(lm, PEB_HANDLE, b->rounds) / raw_loop);
  printf("ratio thread_loop_vs_array %.3f\n",
         median_of(lm, PEB_FORGET, b->rounds) /
             median_of(lm, RAW_ARRAY, b->rounds));
  printf("ratio thread_foreign %.3f\n",
         median_of(fm, PEB_FORGET, b->rounds) / raw_foreign);
  printf("ratio thread_foreign_handle %.3f\n",
         median_of(fm, PEB_HANDLE, b->rounds) / raw_foreign);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < modes[i].nv; k++)
      free(modes[i].tput[modes[i].vs[k]]);
}
