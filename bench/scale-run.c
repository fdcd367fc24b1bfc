/* The child's side of the scaling benchmark (see bench-scale.c's design
 * notes): the work, one timed run, and the cells of one worker count. */
#include <string.h>
#include <time.h>

#include "bench-scale.h"
#include "raw-inbox.h"

const char *const scale_kind_names[NKINDS] = {"raw", "thread", "pool-thread",
                                              "pool-process"};

/* ---- the work ---- */

/* The empty asm makes each step opaque to the compiler: the loop can be
 * neither folded nor dropped, and it costs the same in every build. */
static uint64_t spin(uint64_t iters) {
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (uint64_t i = 0; i < iters; i++) {
    x = x * 6364136223846793005u + 1442695040888963407u;
    __asm__ volatile("" : "+r"(x));
  }
  return x;
}

static void *spin_thread(void *arg) {
  return (void *)(uintptr_t)spin((uint64_t)(uintptr_t)arg);
}

static int spin_process(const void *in, size_t len, pbl_buf *out) {
  uint64_t iters;
  if (len != sizeof(iters))
    return 1;
  memcpy(&iters, in, sizeof(iters));
  uint64_t *r = malloc(sizeof(*r));
  if (r == NULL)
    return 1;
  *r = spin(iters);
  out->data = r;
  out->len = sizeof(*r);
  return 0;
}
PBL_PROCESS_FN(spin_process);

/* Iterations a microsecond: the fastest of several tries on this thread's
 * CPU time, so that time the thread spent descheduled (other work on the
 * machine) does not count. */
double scale_calibrate(void) {
  const uint64_t iters = 1000000;
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 15; i++) {
    uint64_t t0 = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    (void)spin(iters);
    uint64_t t = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    if (t < best)
      best = t;
  }
  return (double)iters * 1000.0 / (double)(best > 0 ? best : 1);
}
/* ---- one timed run (in a child) ---- */

typedef struct run run;

typedef struct {
  run *r;
  size_t count;
  uv_thread_t tid;
} producer;

struct run {
  uv_loop_t *uv;
  pbl_loop_t *pl;
  pbl_pool_t *tpool, *ppool;
  scale_kind k;
  size_t n;
  uint64_t iters; /* per task */
  unsigned np;
  producer prod[SCALE_MAX_PRODUCERS];
  uv_barrier_t start;
  size_t done, failed; /* loop thread */
  uint64_t end_ns;     /* loop thread: at the last completion */
  uv_async_t alive;    /* keeps uv_run going until the last completion */
  raw_inbox in;        /* RAW */
};

static void finish_one(run *r) {
  if (++r->done != r->n)
    return;
  r->end_ns = bench_now();
  /* Every task ran, so every producer is done but for, at most, its last
   * wake-up of the loop: wait for them before closing what they send on. */
  for (unsigned i = 0; i < r->np; i++)
    BENCH_CHECK(uv_thread_join(&r->prod[i].tid));
  uv_close((uv_handle_t *)&r->alive, NULL);
  if (r->k == RAW && r->np > 0)
    raw_inbox_close(&r->in);
}

static void raw_work(uv_work_t *req) {
  const run *r = req->data;
  (void)spin(r->iters);
}

static void raw_after(uv_work_t *req, int status) {
  run *r = req->data;
  if (status != 0)
    r->failed++;
  free(req); /* the raw_item: its request comes first */
  finish_one(r);
}

_Static_assert(offsetof(raw_item, req) == 0, "raw_item.req first");

static void on_done(pbl_task_t *t, void *data) {
  run *r = data;
  if (pbl_task_error(t) != 0)
    r->failed++;
  finish_one(r);
}

/* One task of r's kind; on_loop: submitted by the loop thread itself, so
 * raw goes straight to uv_queue_work. */
static void submit_one(run *r, bool on_loop) {
  pbl_task_opts o = {.on_done = on_done, .data = r};
  void *targ = (void *)(uintptr_t)r->iters;
  switch (r->k) {
  case RAW: {
    raw_item *it = bench_alloc(sizeof(*it));
    it->req.data = r;
    if (on_loop)
      BENCH_CHECK(uv_queue_work(r->uv, &it->req, raw_work, raw_after));
    else
      raw_inbox_post(&r->in, it);
    break;
  }
  case THREAD:
    BENCH_CHECK(pbl_thread(r->pl, spin_thread, targ, &o, NULL));
    break;
  case POOL_THREAD:
    BENCH_CHECK(pbl_pool_thread(r->tpool, spin_thread, targ, &o, NULL));
    break;
  default:
    BENCH_CHECK(pbl_pool_process(r->ppool, spin_process, &r->iters,
                                 sizeof(r->iters), &o, NULL));
    break;
  }
}

static void produce(void *arg) {
  producer *p = arg;
  uv_barrier_wait(&p->r->start);
  for (size_t i = 0; i < p->count; i++)
    submit_one(p->r, false);
}

/* Returns tasks a second. The run lives on this stack until uv_run has
 * returned, after every completion and every producer's join. */
static double run_once(run *base, scale_kind k, size_t n, unsigned np) {
  run r = *base;
  r.k = k;
  r.n = n;
  r.np = np;
  r.done = r.failed = 0;
  BENCH_CHECK(uv_async_init(r.uv, &r.alive, NULL));
  if (k == RAW && np > 0)
    raw_inbox_init(&r.in, r.uv, raw_work, raw_after);
  uint64_t t0;
  if (np == 0) { /* the loop thread submits them all, then runs */
    t0 = bench_now();
    for (size_t i = 0; i < n; i++)
      submit_one(&r, true);
  } else {
    BENCH_CHECK(uv_barrier_init(&r.start, np + 1));
    for (unsigned i = 0; i < np; i++) {
      r.prod[i].r = &r;
      r.prod[i].count = n / np + (i < n % np);
      BENCH_CHECK(uv_thread_create(&r.prod[i].tid, produce, &r.prod[i]));
    }
    uv_barrier_wait(&r.start);
    t0 = bench_now();
  }
  uv_run(r.uv, UV_RUN_DEFAULT);
  if (np > 0)
    uv_barrier_destroy(&r.start);
  if (r.done != n || r.failed != 0) {
    fprintf(stderr, "bench-scale: %s: %zu of %zu done, %zu failed\n",
            scale_kind_names[k], r.done, n, r.failed);
    exit(1);
  }
  return (double)n * 1e9 / (double)(r.end_ns - t0);
}
/* ---- the child: one worker count ---- */

static size_t clamp_n(double n, unsigned np) {
  double lo = 64.0 * (np > 0 ? np : 1), hi = 2000000;
  return (size_t)(n < lo ? lo : n > hi ? hi : n);
}

/* One cell: each kind sized and warmed up, then rounds; prints its result
 * lines `R us workers producers kind n median min max` to the parent. */
static void cell(run *base, unsigned us, double ipus, unsigned w, unsigned np,
                 unsigned ms, int rounds) {
  base->iters = (uint64_t)(us * ipus + 0.5);
  unsigned busy =
      w < uv_available_parallelism() ? w : uv_available_parallelism();
  /* A quarter of BENCH_SCALE_MS at the CPUs' rate (0 us: a guess). */
  double guess = us == 0 ? 5000 : (double)ms * 250.0 * busy / us;
  size_t n[NKINDS];
  for (int k = 0; k < NKINDS; k++) {
    double rate = run_once(base, (scale_kind)k, clamp_n(guess, np), np);
    n[k] = clamp_n(rate * ms / 1000.0, np);
    (void)run_once(base, (scale_kind)k, n[k],
                   np); /* the warm-up, not counted */
  }
  double rate[NKINDS][SCALE_MAX_ROUNDS];
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < NKINDS; i++) {
      int k = (i + r) % NKINDS;
      rate[k][r] = run_once(base, (scale_kind)k, n[k], np);
    }
  for (int k = 0; k < NKINDS; k++) {
    double m = bench_median(rate[k], (size_t)rounds); /* sorts */
    printf("R %u %u %u %s %zu %.1f %.1f %.1f\n", us, w, np, scale_kind_names[k],
           n[k], m, rate[k][0], rate[k][rounds - 1]);
  }
  fflush(stdout);
}

int scale_child(const scale_config *c, unsigned w, double ipus) {
  if (bench_pool_size() != w) {
    fprintf(stderr, "bench-scale: child for %u workers, libuv pool %u\n", w,
            bench_pool_size());
    return 1;
  }
  (void)bench_steady_heap("bench-scale");
  fflush(stdout);
  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  run base = {.uv = &uv}; /* what every run of this child copies */
  BENCH_CHECK(pbl_loop_new(&uv, &base.pl));
  pbl_pool_opts po = {.workers = w};
  BENCH_CHECK(pbl_thread_pool_new(base.pl, &po, &base.tpool));
  BENCH_CHECK(pbl_process_pool_new(base.pl, &po, &base.ppool));
  for (int s = 0; s < c->sizes.n; s++)
    for (int p = 0; p < c->prods.n; p++)
      cell(&base, c->sizes.v[s], ipus, w, c->prods.v[p], c->ms, c->rounds);
  pbl_pool_free(base.tpool);
  pbl_pool_free(base.ppool);
  pbl_loop_close(base.pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}
