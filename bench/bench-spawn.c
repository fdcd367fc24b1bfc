/* Process starts against the parent's size, in one run:
 *
 * For each parent heap size (GiB, allocated and touched page by page, 4 KiB
 * pages as a server's heap has them), sequential starts for a while of:
 *
 *  task      one-shot pbl_process() of a function that returns at once
 *  command   pbl_spawn() of `true`
 *  respawn   tasks on a process pool of one worker with max_tasks = 1:
 *            each task retires its worker and the next one starts anew
 *  raw-self  raw uv_spawn() of this program, which exits at once (the
 *            baseline of task and respawn, which start this program)
 *  raw-true  raw uv_spawn() of `true` (the baseline of command)
 *
 * and, while each runs, the loop's lag: a 1 ms repeating timer, and how
 * much later than 1 ms after the previous one each tick comes (p50, p99,
 * max). Lines "ratio spawn-<kind>-vs-raw-uv_spawn-<N>g" (pebble's starts/s
 * over raw uv_spawn's at that size) and "ratio spawn-<kind>-8g-vs-small"
 * (pebble at the largest size over pebble at the smallest).
 *
 *   bench-spawn [--sizes=0,1,4,8] [--seconds=1.5] [--data=FILE]
 *
 * --data writes "gib kind starts_per_s lag_p99_ms" lines for plot-spawn.sh.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define RAW_ARG "--raw-exit"
#define MAX_SIZES 16
#define MIN_STARTS 5 /* however slow: a rate needs a few */
#define MAX_TICKS 200000

static int nop(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 0;
}
PBL_PROCESS_FN(nop);

/* ---- the parent's heap ---- */

static char **chunks;
static size_t n_chunks;

/* Grows the heap to gib GiB, each page written once. mmap'd as malloc
 * would for large blocks, without huge pages: a long-running server's
 * heap is mostly small pages. */
static void heap_grow(unsigned gib) {
  const size_t chunk = (size_t)1 << 30;
  while (n_chunks < gib) {
    chunks = realloc(chunks, (n_chunks + 1) * sizeof(*chunks));
    char *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (chunks == NULL || p == MAP_FAILED) {
      fprintf(stderr, "bench-spawn: cannot map %u GiB\n", gib);
      exit(1);
    }
    (void)madvise(p, chunk, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < chunk; off += 4096)
      p[off] = (char)off;
    chunks[n_chunks++] = p;
  }
}

/* ---- the lag probe: a 1 ms timer ---- */

static uv_timer_t tick;
static uint64_t last_tick_ns, lags[MAX_TICKS];
static size_t n_lags;

static void on_tick(uv_timer_t *t) {
  (void)t;
  uint64_t now = bench_now();
  if (last_tick_ns != 0 && n_lags < MAX_TICKS) {
    uint64_t gap = now - last_tick_ns;
    lags[n_lags++] = gap > 1000000 ? gap - 1000000 : 0;
  }
  last_tick_ns = now;
}

/* ---- one measurement: start after start until the time is up ---- */

typedef struct measure {
  const char *kind;
  uv_loop_t *uv;
  pbl_loop_t *pl;
  pbl_pool_t *pool;
  uint64_t until_ns, end_ns;
  size_t starts;
  bool (*start)(struct measure *m); /* false: stop */
} measure;

/* After each start ended: the next, or the end of the measure (the tick
 * stops with it, so that uv_run returns). */
static void next(measure *m) {
  m->starts++;
  uint64_t now = bench_now();
  if (m->starts < MIN_STARTS || now < m->until_ns) {
    (void)m->start(m);
    return;
  }
  m->end_ns = now;
  uv_timer_stop(&tick);
}

static void on_task_done(pbl_task_t *t, void *data) {
  measure *m = data;
  if (pbl_task_state_of(t) != PBL_DONE) {
    fprintf(stderr, "bench-spawn: %s ended %s: %s\n", m->kind,
            pbl_task_state_name(pbl_task_state_of(t)), pbl_task_message(t));
    exit(1);
  }
  next(m);
}

static bool start_task(measure *m) {
  pbl_task_opts o = {.on_done = on_task_done, .data = m};
  BENCH_CHECK(pbl_process(m->pl, nop, NULL, 0, &o, NULL));
  return true;
}

static bool start_command(measure *m) {
  static const char *const argv[] = {"true", NULL};
  pbl_spawn_opts o = {.task = {.on_done = on_task_done, .data = m}};
  BENCH_CHECK(pbl_spawn(m->pl, argv, &o, NULL));
  return true;
}

static bool start_respawn(measure *m) {
  pbl_task_opts o = {.on_done = on_task_done, .data = m};
  BENCH_CHECK(pbl_pool_process(m->pool, nop, NULL, 0, &o, NULL));
  return true;
}

static char self[4096];
static const char *raw_file;
static char *raw_args[3];

static void on_raw_closed(uv_handle_t *h) {
  measure *m = h->data;
  free(h);
  next(m);
}

static void on_raw_exit(uv_process_t *p, int64_t status, int sig) {
  if (status != 0 || sig != 0) {
    fprintf(stderr, "bench-spawn: raw child: status %" PRId64 " signal %d\n",
            status, sig);
    exit(1);
  }
  uv_close((uv_handle_t *)p, on_raw_closed);
}

static bool start_raw(measure *m) {
  uv_process_t *p = bench_alloc(sizeof(*p));
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_IGNORE}};
  uv_process_options_t po = {
      .exit_cb = on_raw_exit,
      .file = raw_file,
      .args = raw_args,
      .flags = UV_PROCESS_DETACHED,
      .stdio_count = 3,
      .stdio = stdio,
  };
  p->data = m;
  BENCH_CHECK(uv_spawn(m->uv, p, &po));
  return true;
}

typedef struct result {
  double rate; /* starts per second */
  double p50_ms, p99_ms, max_ms;
} result;

static result run_one(uv_loop_t *uv, pbl_loop_t *pl, const char *kind,
                      bool (*start)(measure *), double seconds) {
  measure m = {.kind = kind, .uv = uv, .pl = pl, .start = start};
  if (start == start_respawn) {
    pbl_pool_opts po = {.workers = 1, .max_tasks = 1};
    BENCH_CHECK(pbl_process_pool_new(pl, &po, &m.pool));
    /* Warm: the pool's first worker is started, not respawned. */
    pbl_task_t *t;
    BENCH_CHECK(pbl_pool_process(m.pool, nop, NULL, 0, NULL, &t));
    uv_run(uv, UV_RUN_DEFAULT);
    pbl_task_release(t);
  }
  n_lags = 0;
  last_tick_ns = 0;
  uv_timer_start(&tick, on_tick, 1, 1);
  uint64_t t0 = bench_now();
  m.until_ns = t0 + (uint64_t)(seconds * 1e9);
  (void)start(&m);
  uv_run(uv, UV_RUN_DEFAULT); /* until next() stopped the tick */
  uint64_t t1 = m.end_ns;
  if (m.pool != NULL) {
    BENCH_CHECK(pbl_pool_close(m.pool));
    uv_run(uv, UV_RUN_DEFAULT);
    BENCH_CHECK(pbl_pool_join(m.pool, 0));
    pbl_pool_free(m.pool);
  }
  result r = {.rate = (double)m.starts / ((double)(t1 - t0) / 1e9)};
  if (n_lags > 0) {
    bench_sort_u64(lags, n_lags);
    r.p50_ms = (double)bench_percentile(lags, n_lags, 50) / 1e6;
    r.p99_ms = (double)bench_percentile(lags, n_lags, 99) / 1e6;
    r.max_ms = (double)lags[n_lags - 1] / 1e6;
  }
  return r;
}

/* ---- the run ---- */

enum { K_TASK, K_COMMAND, K_RESPAWN, K_RAW_SELF, K_RAW_TRUE, K_N };
static const char *const kind_names[K_N] = {"task", "command", "respawn",
                                            "raw-self", "raw-true"};
static const int baseline_of[3] = {K_RAW_SELF, K_RAW_TRUE, K_RAW_SELF};

static result measure_kind(uv_loop_t *uv, pbl_loop_t *pl, int k,
                           double seconds) {
  static bool (*const starts[K_N])(measure *) = {
      start_task, start_command, start_respawn, start_raw, start_raw};
  if (k == K_RAW_SELF) {
    raw_file = self;
    raw_args[0] = self;
    raw_args[1] = RAW_ARG;
    raw_args[2] = NULL;
  } else if (k == K_RAW_TRUE) {
    raw_file = "true";
    raw_args[0] = "true";
    raw_args[1] = NULL;
  }
  return run_one(uv, pl, kind_names[k], starts[k], seconds);
}

static size_t parse_sizes(const char *s, unsigned *sizes) {
  size_t n = 0;
  while (*s != '\0' && n < MAX_SIZES) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s)
      break;
    sizes[n++] = (unsigned)v;
    s = *end == ',' ? end + 1 : end;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], RAW_ARG) == 0)
    return 0; /* the raw child: as little as a start can be */
  pbl_worker_main(argc, argv);
  unsigned sizes[MAX_SIZES] = {0, 1, 4, 8};
  size_t n_sizes = 4;
  double seconds = 1.5;
  const char *data_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--sizes=", 8) == 0)
      n_sizes = parse_sizes(argv[i] + 8, sizes);
    else if (strncmp(argv[i], "--seconds=", 10) == 0)
      seconds = atof(argv[i] + 10);
    else if (strncmp(argv[i], "--data=", 7) == 0)
      data_path = argv[i] + 7;
  }
  size_t len = sizeof(self);
  BENCH_CHECK(uv_exepath(self, &len));
  FILE *data = data_path != NULL ? fopen(data_path, "w") : NULL;

  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  pbl_loop_t *pl;
  BENCH_CHECK(pbl_loop_new(&uv, &pl));
  BENCH_CHECK(uv_timer_init(&uv, &tick));

  printf("process starts against the parent's heap (%u CPUs; sequential; "
         "%.1f s each)\n\n",
         uv_available_parallelism(), seconds);
  printf("%-5s %-9s %10s %10s %8s %8s %8s\n", "heap", "kind", "starts/s",
         "vs raw", "lag p50", "p99", "max");
  result first[K_N], last[K_N];
  for (size_t s = 0; s < n_sizes; s++) {
    heap_grow(sizes[s]);
    result r[K_N];
    for (int k = 0; k < K_N; k++)
      r[k] = measure_kind(&uv, pl, k, seconds);
    for (int k = 0; k < K_N; k++) {
      char vs[16] = "";
      if (k < 3)
        snprintf(vs, sizeof(vs), "%.2fx", r[k].rate / r[baseline_of[k]].rate);
      printf("%3ug  %-9s %10.1f %10s %6.2fms %6.2fms %6.2fms\n", sizes[s],
             kind_names[k], r[k].rate, vs, r[k].p50_ms, r[k].p99_ms,
             r[k].max_ms);
      if (data != NULL)
        fprintf(data, "%u %s %.2f %.3f\n", sizes[s], kind_names[k], r[k].rate,
                r[k].p99_ms);
    }
    for (int k = 0; k < 3; k++) {
      char name[64];
      snprintf(name, sizeof(name), "spawn-%s-vs-raw-uv_spawn-%ug",
               kind_names[k], sizes[s]);
      bench_ratio(name, r[k].rate, r[baseline_of[k]].rate);
    }
    if (s == 0)
      memcpy(first, r, sizeof(r));
    memcpy(last, r, sizeof(r));
    fflush(stdout);
  }
  if (n_sizes > 1) {
    for (int k = 0; k < K_N; k++) {
      char name[64];
      snprintf(name, sizeof(name), "spawn-%s-%ug-vs-small", kind_names[k],
               sizes[n_sizes - 1]);
      bench_ratio(name, last[k].rate, first[k].rate);
    }
  }
  if (data != NULL)
    fclose(data);
  uv_close((uv_handle_t *)&tick, NULL);
  pbl_loop_close(pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}
