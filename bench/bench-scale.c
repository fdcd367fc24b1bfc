/* Scaling (issue 14, item 5): tasks of 0, 20 and 200 us of CPU through raw
 * uv_queue_work, pbl_thread, a thread pool and a process pool, at 1, 2, 4,
 * 8 and 16 workers, submitted by 1 and 8 producer threads.
 *
 *   bench-scale [--data=FILE]
 *
 * Environment (lists are comma-separated):
 *   BENCH_SCALE_WORKERS    worker counts; default 1,2,4,8,16 up to the
 *                          CPUs (and the CPU count itself)
 *   BENCH_SCALE_US         task sizes, us of CPU; default 0,20,200
 *   BENCH_SCALE_PRODUCERS  producer threads; default 1,8
 *   BENCH_SCALE_MS         about how long a timed run lasts; default 150
 *   BENCH_SCALE_ROUNDS     timed rounds a cell, medians; default 3
 *
 * Prints a table and, for each pebble kind at each size, worker count and
 * producer count, `ratio scale-<kind>-<us>us-w<N>-p<P> <value>`: its
 * throughput over raw uv_queue_work's in the same cell (> 1: faster).
 * --data writes the medians for plot-scale.sh.
 *
 * Design notes.
 *
 * One child process per worker count. libuv reads UV_THREADPOOL_SIZE once,
 * at its first use, and pbl_thread runs on that same pool (as many runners
 * as it has threads). A pool of the largest size with in-flight work
 * limited to N would not measure N workers: the idle threads still wait
 * on libuv's one condition variable and take its one mutex, and a limit
 * on in-flight work makes the loop thread feed a window, a round trip per
 * slot, that pebble's own pools (unbounded queues) never pay. A child
 * started with UV_THREADPOOL_SIZE=N gives raw uv_queue_work and pbl_thread
 * exactly N threads, and the thread and process pools are made with N
 * workers. Every comparison (a ratio) is between kinds measured in the
 * same child, rounds alternating; figures of different worker counts come
 * from different processes, run one after the other.
 *
 * In a cell (size, workers, producers) each kind first runs a short
 * sizing run, then n tasks, n about BENCH_SCALE_MS of its own rate: once
 * as a warm-up (threads and workers started, heap grown and touched:
 * bench_steady_heap keeps it) and then BENCH_SCALE_ROUNDS times, the
 * kinds' order rotating each round. Each kind gets its own n because at
 * 0 us the process pool is some 25x slower than raw: one n for all would
 * make raw's runs too short to time on a busy machine or the pool's too
 * long for the run's budget. n is at least 64 a producer, so start and
 * end weigh little in a rate. A run is timed from the release of its
 * producers to its last completion callback on the loop thread.
 *
 * Tasks are a busy loop, calibrated once in the parent on thread CPU
 * time, so every child, thread and worker process does the same work.
 * Producers submit from threads of their own: raw through raw-inbox.c (a
 * mutex-protected batch and one uv_async, since uv_queue_work is loop
 * thread only), pebble through its own calls, fire and forget, counted in
 * on_done. */
#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "raw-inbox.h"

extern char **environ; /* for posix_spawn; gnu11 does not declare it */

#define MAX_LIST 8
#define MAX_PRODUCERS 64
#define MAX_RESULTS (MAX_LIST * MAX_LIST * MAX_LIST * NKINDS)
#define MAX_ROUNDS 15
#define CHILD_ARG "--scale-child"

typedef enum { RAW, THREAD, POOL_THREAD, POOL_PROCESS, NKINDS } kind;

/* For ratio and data lines. */
static const char *const kind_names[NKINDS] = {"raw", "thread", "pool-thread",
                                               "pool-process"};

typedef struct {
  unsigned v[MAX_LIST];
  int n;
} list;

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

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Iterations a microsecond: the fastest of several tries on this thread's
 * CPU time, so that time the thread spent descheduled (other work on the
 * machine) does not count. */
static double calibrate(void) {
  const uint64_t iters = 1000000;
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 15; i++) {
    uint64_t t0 = thread_cpu_ns();
    (void)spin(iters);
    uint64_t t = thread_cpu_ns() - t0;
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
  kind k;
  size_t n;
  uint64_t iters; /* per task */
  unsigned np;
  producer prod[MAX_PRODUCERS];
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
  if (r->k == RAW)
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

static void produce(void *arg) {
  producer *p = arg;
  run *r = p->r;
  pbl_task_opts o = {.on_done = on_done, .data = r};
  void *targ = (void *)(uintptr_t)r->iters;
  uv_barrier_wait(&r->start);
  for (size_t i = 0; i < p->count; i++) {
    switch (r->k) {
    case RAW: {
      raw_item *it = bench_alloc(sizeof(*it));
      it->req.data = r;
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
}

/* Returns tasks a second. The run lives on this stack until uv_run has
 * returned, after every completion and every producer's join. */
static double run_once(run *base, kind k, size_t n, unsigned np) {
  run r = *base;
  r.k = k;
  r.n = n;
  r.np = np;
  r.done = r.failed = 0;
  BENCH_CHECK(uv_async_init(r.uv, &r.alive, NULL));
  if (k == RAW)
    raw_inbox_init(&r.in, r.uv, raw_work, raw_after);
  BENCH_CHECK(uv_barrier_init(&r.start, np + 1));
  for (unsigned i = 0; i < np; i++) {
    r.prod[i].r = &r;
    r.prod[i].count = n / np + (i < n % np);
    BENCH_CHECK(uv_thread_create(&r.prod[i].tid, produce, &r.prod[i]));
  }
  uv_barrier_wait(&r.start);
  uint64_t t0 = bench_now();
  uv_run(r.uv, UV_RUN_DEFAULT);
  uv_barrier_destroy(&r.start);
  if (r.done != n || r.failed != 0) {
    fprintf(stderr, "bench-scale: %s: %zu of %zu done, %zu failed\n",
            kind_names[k], r.done, n, r.failed);
    exit(1);
  }
  return (double)n * 1e9 / (double)(r.end_ns - t0);
}

/* ---- the child: one worker count ---- */

static unsigned env_uint(const char *name, unsigned def, unsigned max) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0')
    return def;
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (*end != '\0' || v == 0 || v > max) {
    fprintf(stderr, "bench-scale: %s=%s: want 1..%u\n", name, s, max);
    exit(2);
  }
  return (unsigned)v;
}

/* A comma-separated list of values 0..max (0 only if zero_ok). */
static list env_list(const char *name, list def, unsigned max, int zero_ok) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0')
    return def;
  list l = {{0}, 0};
  while (*s != '\0') {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || (*end != ',' && *end != '\0') || v > max ||
        (v == 0 && !zero_ok) || l.n == MAX_LIST) {
      fprintf(stderr, "bench-scale: %s: want at most %d values %u..%u\n", name,
              MAX_LIST, zero_ok ? 0 : 1, max);
      exit(2);
    }
    l.v[l.n++] = (unsigned)v;
    s = *end == ',' ? end + 1 : end;
  }
  return l;
}

static list sizes_list(void) {
  return env_list("BENCH_SCALE_US", (list){{0, 20, 200}, 3}, 100000, 1);
}

static list producers_list(void) {
  return env_list("BENCH_SCALE_PRODUCERS", (list){{1, 8}, 2}, MAX_PRODUCERS, 0);
}

static size_t clamp_n(double n, unsigned np) {
  double lo = 64.0 * np, hi = 2000000;
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
    double rate = run_once(base, (kind)k, clamp_n(guess, np), np);
    n[k] = clamp_n(rate * ms / 1000.0, np);
    (void)run_once(base, (kind)k, n[k], np); /* the warm-up, not counted */
  }
  double rate[NKINDS][MAX_ROUNDS];
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < NKINDS; i++) {
      int k = (i + r) % NKINDS;
      rate[k][r] = run_once(base, (kind)k, n[k], np);
    }
  for (int k = 0; k < NKINDS; k++) {
    double m = bench_median(rate[k], (size_t)rounds); /* sorts */
    printf("R %u %u %u %s %zu %.1f %.1f %.1f\n", us, w, np, kind_names[k], n[k],
           m, rate[k][0], rate[k][rounds - 1]);
  }
  fflush(stdout);
}

static int child_main(unsigned w, double ipus) {
  list sizes = sizes_list(), prods = producers_list();
  unsigned ms = env_uint("BENCH_SCALE_MS", 150, 60000);
  int rounds = (int)env_uint("BENCH_SCALE_ROUNDS", 3, MAX_ROUNDS);
  if (bench_pool_size() != w) {
    fprintf(stderr, "bench-scale: child for %u workers, libuv pool %u\n", w,
            bench_pool_size());
    return 1;
  }
  (void)bench_steady_heap("bench-scale");
  fflush(stdout);
  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  static run base; /* static: MAX_PRODUCERS threads' worth of handles */
  base.uv = &uv;
  BENCH_CHECK(pbl_loop_new(&uv, &base.pl));
  pbl_pool_opts po = {.workers = w};
  BENCH_CHECK(pbl_thread_pool_new(base.pl, &po, &base.tpool));
  BENCH_CHECK(pbl_process_pool_new(base.pl, &po, &base.ppool));
  for (int s = 0; s < sizes.n; s++)
    for (int p = 0; p < prods.n; p++)
      cell(&base, sizes.v[s], ipus, w, prods.v[p], ms, rounds);
  pbl_pool_free(base.tpool);
  pbl_pool_free(base.ppool);
  pbl_loop_close(base.pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}

/* ---- the parent ---- */

typedef struct {
  unsigned us, w, np;
  kind k;
  size_t n;
  double med, lo, hi;
} result;

static result results[MAX_RESULTS];
static int nresults;

static const result *find(unsigned us, unsigned w, unsigned np, kind k) {
  for (int i = 0; i < nresults; i++)
    if (results[i].us == us && results[i].w == w && results[i].np == np &&
        results[i].k == k)
      return &results[i];
  return NULL;
}

static void parse_result(const char *line) {
  result r;
  char name[32];
  if (nresults == MAX_RESULTS ||
      sscanf(line, "R %u %u %u %31s %zu %lf %lf %lf", &r.us, &r.w, &r.np, name,
             &r.n, &r.med, &r.lo, &r.hi) != 8)
    goto bad;
  for (int k = 0; k < NKINDS; k++)
    if (strcmp(name, kind_names[k]) == 0) {
      r.k = (kind)k;
      results[nresults++] = r;
      return;
    }
bad:
  fprintf(stderr, "bench-scale: bad line from a child: %s", line);
  exit(1);
}

/* Runs the child for w workers and collects its result lines, `want` of
 * them; passes its other lines through. */
static void run_child(const char *exe, unsigned w, double ipus, int want) {
  int before = nresults;
  char ws[16], is[32];
  snprintf(ws, sizeof(ws), "%u", w);
  snprintf(is, sizeof(is), "%.6f", ipus);
  /* Read once, at libuv's first use in the child: the child's own. */
  BENCH_CHECK(setenv("UV_THREADPOOL_SIZE", ws, 1) == 0 ? 0 : -errno);
  int fds[2];
  BENCH_CHECK(pipe(fds) == 0 ? 0 : -errno);
  /* The posix_spawn family returns an errno value; libuv's codes (which
   * pbl_strerror names) are its negation. */
  posix_spawn_file_actions_t fa;
  BENCH_CHECK(-posix_spawn_file_actions_init(&fa));
  BENCH_CHECK(-posix_spawn_file_actions_adddup2(&fa, fds[1], 1));
  BENCH_CHECK(-posix_spawn_file_actions_addclose(&fa, fds[0]));
  BENCH_CHECK(-posix_spawn_file_actions_addclose(&fa, fds[1]));
  char *args[] = {(char *)exe, CHILD_ARG, ws, is, NULL};
  pid_t pid;
  BENCH_CHECK(-posix_spawn(&pid, exe, &fa, NULL, args, environ));
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  BENCH_CHECK(f != NULL ? 0 : -errno);
  char line[512];
  while (fgets(line, sizeof(line), f) != NULL) {
    if (line[0] == 'R' && line[1] == ' ')
      parse_result(line);
    else if (w == 1 || strstr(line, "heap:") == NULL)
      fputs(line, stdout); /* the heap line once, not per child */
  }
  fclose(f);
  int status;
  BENCH_CHECK(waitpid(pid, &status, 0) == pid ? 0 : -errno);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      nresults - before != want) {
    fprintf(stderr, "bench-scale: the child for %u workers failed\n", w);
    exit(1);
  }
}

static list workers_list(unsigned ncpu) {
  list def = {{0}, 0};
  for (unsigned w = 1; w <= 16 && w <= ncpu; w *= 2)
    def.v[def.n++] = w;
  if (ncpu < 16 && def.v[def.n - 1] != ncpu)
    def.v[def.n++] = ncpu; /* 6 CPUs: 1, 2, 4, 6 */
  return env_list("BENCH_SCALE_WORKERS", def, 1024, 0);
}

static void print_table(const list *ws, const list *sizes, const list *prods) {
  printf("\n%5s %4s %3s %13s %13s %13s %13s %7s %7s %7s\n", "us", "w", "p",
         "raw uv_queue", "pbl_thread", "thread pool", "proc pool", "thr/raw",
         "tp/raw", "pp/raw");
  for (int s = 0; s < sizes->n; s++)
    for (int p = 0; p < prods->n; p++)
      for (int i = 0; i < ws->n; i++) {
        const result *r[NKINDS];
        for (int k = 0; k < NKINDS; k++)
          r[k] = find(sizes->v[s], ws->v[i], prods->v[p], (kind)k);
        printf("%5u %4u %3u", sizes->v[s], ws->v[i], prods->v[p]);
        for (int k = 0; k < NKINDS; k++)
          printf(" %13.0f", r[k]->med);
        for (int k = THREAD; k < NKINDS; k++)
          printf(" %7.3f", r[k]->med / r[RAW]->med);
        printf("\n");
      }
}

static void write_data(const char *path, double ipus, unsigned ncpu) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  char host[256] = "?";
  (void)gethostname(host, sizeof(host) - 1);
  double load[3] = {0, 0, 0};
  (void)getloadavg(load, 3);
  char date[32] = "?";
  time_t now = time(NULL);
  struct tm tm;
  if (gmtime_r(&now, &tm) != NULL)
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
  fprintf(f,
          "# bench-scale: %s, %s, %u CPUs, libuv %s, %.1f spin iterations/us,"
          " load %.2f %.2f %.2f at the end\n",
          host, date, ncpu, uv_version_string(), ipus, load[0], load[1],
          load[2]);
  fprintf(f, "# us workers producers kind tasks/s(median) min max n\n");
  for (int i = 0; i < nresults; i++) {
    const result *r = &results[i];
    fprintf(f, "%u %u %u %s %.1f %.1f %.1f %zu\n", r->us, r->w, r->np,
            kind_names[r->k], r->med, r->lo, r->hi, r->n);
  }
  fclose(f);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv); /* a process pool's worker serves here */
  if (argc == 4 && strcmp(argv[1], CHILD_ARG) == 0)
    return child_main((unsigned)atoi(argv[2]), atof(argv[3]));
  const char *data = NULL;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--data=", 7) == 0) {
      data = argv[i] + 7;
    } else {
      fprintf(stderr, "usage: %s [--data=FILE]\n", argv[0]);
      return 2;
    }
  }
  unsigned ncpu = uv_available_parallelism();
  list ws = workers_list(ncpu), sizes = sizes_list();
  list prods = producers_list();
  unsigned ms = env_uint("BENCH_SCALE_MS", 150, 60000);
  unsigned rounds = env_uint("BENCH_SCALE_ROUNDS", 3, MAX_ROUNDS);
  char exe[4096];
  size_t len = sizeof(exe);
  BENCH_CHECK(uv_exepath(exe, &len));
  double ipus = calibrate();
  printf("bench-scale: %u CPUs, libuv %s, a busy loop of %.1f iterations/us"
         " (thread CPU time), runs of about %u ms, median of %u rounds\n",
         ncpu, uv_version_string(), ipus, ms, rounds);
  fflush(stdout);
  uint64_t t0 = bench_now();
  for (int i = 0; i < ws.n; i++) {
    uint64_t t = bench_now();
    run_child(exe, ws.v[i], ipus, sizes.n * prods.n * NKINDS);
    printf("bench-scale: %u workers: %.1f s\n", ws.v[i],
           (double)(bench_now() - t) / 1e9);
    fflush(stdout);
  }
  printf("\nscale: tasks a second (median of %u rounds), w workers, p"
         " producer threads; one child process per worker count, libuv's"
         " pool of w threads\n",
         rounds);
  print_table(&ws, &sizes, &prods);
  for (int s = 0; s < sizes.n; s++)
    for (int p = 0; p < prods.n; p++)
      for (int i = 0; i < ws.n; i++) {
        const result *raw = find(sizes.v[s], ws.v[i], prods.v[p], RAW);
        for (int k = THREAD; k < NKINDS; k++) {
          const result *r = find(sizes.v[s], ws.v[i], prods.v[p], (kind)k);
          char name[96];
          snprintf(name, sizeof(name), "scale-%s-%uus-w%u-p%u", kind_names[k],
                   sizes.v[s], ws.v[i], prods.v[p]);
          if (r != NULL && raw != NULL)
            bench_ratio(name, r->med, raw->med);
        }
      }
  printf("bench-scale: %.1f s in all\n", (double)(bench_now() - t0) / 1e9);
  if (data != NULL)
    write_data(data, ipus, ncpu);
  return 0;
}
