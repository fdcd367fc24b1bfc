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
 *   BENCH_SCALE_PRODUCERS  producer threads; default 0,1,8 (0: the loop
 *                          thread submits every task itself)
 *   BENCH_SCALE_MS         about how long a timed run lasts; default 150
 *   BENCH_SCALE_ROUNDS     timed rounds a cell, medians; default 3
 *
 * Prints a table and, for each pebble kind at each size, worker count and
 * producer count, `ratio scale-<kind>-<us>us-w<N>-p<P> <value>`: its
 * throughput over raw uv_queue_work's in the same cell (> 1: faster); and
 * for producer threads, `ratio scale-<kind>-<us>us-w<N>-p<P>-vs-loop`: over
 * the same kind's when the loop thread submits (issue 14, item 3: several
 * producers reach at least the loop thread's own rate).
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
 * on_done. With 0 producers the loop thread submits the run's tasks, then
 * runs the loop (raw: uv_queue_work itself).
 *
 * This file is the parent; scale-run.c is the child's side. */
#include <errno.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-scale.h"

extern char **environ; /* for posix_spawn; gnu11 does not declare it */

#define MAX_RESULTS (SCALE_MAX_LIST * SCALE_MAX_LIST * SCALE_MAX_LIST * NKINDS)
#define CHILD_ARG "--scale-child"

/* ---- the environment ---- */

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
static scale_list env_list(const char *name, scale_list def, unsigned max,
                           int zero_ok) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0')
    return def;
  scale_list l = {{0}, 0};
  while (*s != '\0') {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || (*end != ',' && *end != '\0') || v > max ||
        (v == 0 && !zero_ok) || l.n == SCALE_MAX_LIST) {
      fprintf(stderr, "bench-scale: %s: want at most %d values %u..%u\n", name,
              SCALE_MAX_LIST, zero_ok ? 0 : 1, max);
      exit(2);
    }
    l.v[l.n++] = (unsigned)v;
    s = *end == ',' ? end + 1 : end;
  }
  return l;
}

static scale_list sizes_list(void) {
  return env_list("BENCH_SCALE_US", (scale_list){{0, 20, 200}, 3}, 100000, 1);
}

static scale_list producers_list(void) {
  return env_list("BENCH_SCALE_PRODUCERS", (scale_list){{0, 1, 8}, 3},
                  SCALE_MAX_PRODUCERS, 1);
}

static scale_config config(void) {
  return (scale_config){
      .sizes = sizes_list(),
      .prods = producers_list(),
      .ms = env_uint("BENCH_SCALE_MS", 150, 60000),
      .rounds = (int)env_uint("BENCH_SCALE_ROUNDS", 3, SCALE_MAX_ROUNDS),
  };
}

/* ---- the parent ---- */

typedef struct {
  unsigned us, w, np;
  scale_kind k;
  size_t n;
  double med, lo, hi;
} result;

static result results[MAX_RESULTS];
static int nresults;

static const result *find(unsigned us, unsigned w, unsigned np, scale_kind k) {
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
    if (strcmp(name, scale_kind_names[k]) == 0) {
      r.k = (scale_kind)k;
      results[nresults++] = r;
      return;
    }
bad:
  fprintf(stderr, "bench-scale: bad line from a child: %s", line);
  exit(1);
}

/* Runs the child for w workers and collects its result lines, `want` of
 * them; passes its other lines through (the heap line of the first child
 * only: every child prints the same). */
static void run_child(const char *exe, unsigned w, double ipus, int want,
                      int first) {
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
    else if (first || strstr(line, "heap:") == NULL)
      fputs(line, stdout);
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

static scale_list workers_list(unsigned ncpu) {
  scale_list def = {{0}, 0};
  for (unsigned w = 1; w <= 16 && w <= ncpu; w *= 2)
    def.v[def.n++] = w;
  if (ncpu < 16 && def.v[def.n - 1] != ncpu)
    def.v[def.n++] = ncpu; /* 6 CPUs: 1, 2, 4, 6 */
  return env_list("BENCH_SCALE_WORKERS", def, 1024, 0);
}

static void print_table(const scale_list *ws, const scale_list *sizes,
                        const scale_list *prods) {
  printf("\n%5s %4s %3s %13s %13s %13s %13s %7s %7s %7s\n", "us", "w", "p",
         "raw uv_queue", "pbl_thread", "thread pool", "proc pool", "thr/raw",
         "tp/raw", "pp/raw");
  for (int s = 0; s < sizes->n; s++)
    for (int p = 0; p < prods->n; p++)
      for (int i = 0; i < ws->n; i++) {
        const result *r[NKINDS];
        for (int k = 0; k < NKINDS; k++)
          r[k] = find(sizes->v[s], ws->v[i], prods->v[p], (scale_kind)k);
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
            scale_kind_names[r->k], r->med, r->lo, r->hi, r->n);
  }
  fclose(f);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);     /* a process pool's worker serves here */
  const scale_config c = config(); /* the children read the same */
  if (argc == 4 && strcmp(argv[1], CHILD_ARG) == 0)
    return scale_child(&c, (unsigned)atoi(argv[2]), atof(argv[3]));
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
  scale_list ws = workers_list(ncpu);
  const scale_list sizes = c.sizes, prods = c.prods;
  char exe[4096];
  size_t len = sizeof(exe);
  BENCH_CHECK(uv_exepath(exe, &len));
  double ipus = scale_calibrate();
  printf("bench-scale: %u CPUs, libuv %s, a busy loop of %.1f iterations/us"
         " (thread CPU time), runs of about %u ms, median of %u rounds\n",
         ncpu, uv_version_string(), ipus, c.ms, c.rounds);
  fflush(stdout);
  uint64_t t0 = bench_now();
  for (int i = 0; i < ws.n; i++) {
    uint64_t t = bench_now();
    run_child(exe, ws.v[i], ipus, sizes.n * prods.n * NKINDS, i == 0);
    printf("bench-scale: %u workers: %.1f s\n", ws.v[i],
           (double)(bench_now() - t) / 1e9);
    fflush(stdout);
  }
  printf("\nscale: tasks a second (median of %u rounds), w workers, p"
         " producer threads (0: the loop thread submits); one child process"
         " per worker count, libuv's pool of w threads\n",
         c.rounds);
  print_table(&ws, &sizes, &prods);
  for (int s = 0; s < sizes.n; s++)
    for (int p = 0; p < prods.n; p++)
      for (int i = 0; i < ws.n; i++) {
        const result *raw = find(sizes.v[s], ws.v[i], prods.v[p], RAW);
        for (int k = THREAD; k < NKINDS; k++) {
          const result *r =
              find(sizes.v[s], ws.v[i], prods.v[p], (scale_kind)k);
          char name[96];
          snprintf(name, sizeof(name), "scale-%s-%uus-w%u-p%u",
                   scale_kind_names[k], sizes.v[s], ws.v[i], prods.v[p]);
          if (r != NULL && raw != NULL)
            bench_ratio(name, r->med, raw->med);
          const result *loop = find(sizes.v[s], ws.v[i], 0, (scale_kind)k);
          if (prods.v[p] > 0 && r != NULL && loop != NULL) {
            strcat(name, "-vs-loop");
            bench_ratio(name, r->med, loop->med);
          }
        }
      }
  printf("bench-scale: %.1f s in all\n", (double)(bench_now() - t0) / 1e9);
  if (data != NULL)
    write_data(data, ipus, ncpu);
  return 0;
}
