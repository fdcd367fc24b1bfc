/* Process pool throughput for trivial tasks, against its baselines, in
 * one run: rounds alternate, and each figure is the median of the rounds.
 *
 *   pool     N pbl_pool_process() of an 8-byte echo, on the loop thread,
 *            each with a callback, then uv_run until the last callback
 *   raw      the same N echoes over raw socketpair round trips to as many
 *            persistent worker processes (this program, started with
 *            uv_spawn), each kept with DEPTH (2) requests in flight and
 *            fed from the read callback, batched in one write per read:
 *            what a competent hand-written libuv program does; and the
 *            same with DEEP (64) in flight, the most the pool keeps
 *   window   the same N tasks kept DEEP (64) per worker in flight, each
 *            callback submitting the next, as raw's read callback feeds
 *            its workers: the pool's dispatch without a queue of N tasks
 *   map/64   pbl_pool_map_process() of N inputs in chunks of 64
 *   ssh      the pool's figures with its workers started through ssh
 *            (a launcher): $PBL_BENCH_SSH, the ssh command line up to
 *            the host, split at spaces (e.g. "ssh -T -p 2222 127.0.0.1");
 *            skipped if unset. Also the start of the ssh pool (every
 *            worker logged in and answering) and a sequential round trip
 *            there and here
 *   py       Python Pebble's ProcessPool (schedule, and map with
 *            chunksize 64) and concurrent.futures' ProcessPoolExecutor
 *            (/usr/bin/python3, Debian's python3-pebble); skipped if absent
 *
 * Both sides use WORKERS workers (the CPUs). Usage:
 *   bench-pool-process [path/to/pebble_processpool.py] [N] [ROUNDS]
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define CHUNK 64
#define DEPTH 2 /* the raw side's requests in flight per worker */
#define DEEP 64 /* and as many as the pool may keep in flight at most */
#define MAX_ROUNDS 15
#define MAX_WORKERS 64
#define RAW_ARG "--raw-pool-worker"
#define PY_N 20000 /* Python is ~100x slower: fewer tasks, same rate */

static size_t done;

/* The parent's CPU time per task over a run started at c0, in ns: at many
 * workers the loop thread that dispatches is the bottleneck, so this
 * bounds the rate a machine with CPUs to spare for the workers can reach
 * (1e9 / it). */
static double cpu_per_task(uint64_t c0, size_t n) {
  return (double)(bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)n;
}

/* ---- the worker sides ---- */

static int echo(const void *in, size_t len, pbl_buf *out) {
  out->data = malloc(len > 0 ? len : 1);
  if (out->data == NULL)
    return 1;
  memcpy(out->data, in, len);
  out->len = len;
  return 0;
}
PBL_PROCESS_FN(echo);

/* The raw worker: 8-byte requests on fd 3, each answered by one write of
 * the same 8 bytes (as pebble's worker flushes each answer). */
static int raw_worker(void) {
  char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(3, buf + have, sizeof(buf) - have);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return 0;
    have += (size_t)n;
    size_t off = 0;
    for (; have - off >= 8; off += 8)
      if (write(3, buf + off, 8) != 8)
        return 1;
    memmove(buf, buf + off, have - off);
    have -= off;
  }
}

/* ---- raw round trips ---- */

typedef struct {
  uv_process_t proc;
  uv_pipe_t ch;
  char rbuf[65536];
  size_t have;
  size_t inflight;
  bool exited;
} raw_child;

static raw_child raw[MAX_WORKERS];
static unsigned nraw;
static size_t raw_to_send; /* requests not yet sent this round */
static size_t raw_depth;   /* requests in flight per worker */

typedef struct {
  uv_write_t req;
  char data[8 * DEEP];
} raw_write;

static void raw_written(uv_write_t *req, int status) {
  BENCH_CHECK(status);
  free(req);
}

/* Tops c up to DEPTH requests in flight, in one write. */
static void raw_feed(raw_child *c) {
  size_t k = 0;
  while (c->inflight + k < raw_depth && raw_to_send > 0) {
    k++;
    raw_to_send--;
  }
  if (k == 0)
    return;
  raw_write *w = bench_alloc(sizeof(*w));
  memset(w->data, 'r', k * 8);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)(k * 8));
  BENCH_CHECK(uv_write(&w->req, (uv_stream_t *)&c->ch, &b, 1, raw_written));
  c->inflight += k;
}

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf) {
  raw_child *c = h->data;
  (void)s;
  *buf = uv_buf_init(c->rbuf + c->have, (unsigned)(sizeof(c->rbuf) - c->have));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  raw_child *c = s->data;
  (void)buf;
  if (n < 0) {
    uv_read_stop(s);
    return;
  }
  c->have += (size_t)n;
  size_t answers = c->have / 8;
  memmove(c->rbuf, c->rbuf + answers * 8, c->have - answers * 8);
  c->have -= answers * 8;
  c->inflight -= answers;
  done += answers;
  raw_feed(c);
}

static void raw_exit(uv_process_t *p, int64_t status, int sig) {
  (void)status, (void)sig;
  ((raw_child *)p->data)->exited = true;
  uv_close((uv_handle_t *)p, NULL);
}

static void raw_start(uv_loop_t *uv, unsigned n) {
  char exe[4096];
  size_t len = sizeof(exe);
  BENCH_CHECK(uv_exepath(exe, &len));
  nraw = n;
  for (unsigned i = 0; i < n; i++) {
    raw_child *c = &raw[i];
    BENCH_CHECK(uv_pipe_init(uv, &c->ch, 0));
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_READABLE_PIPE |
                                   UV_WRITABLE_PIPE),
         .data.stream = (uv_stream_t *)&c->ch},
    };
    char *args[] = {exe, RAW_ARG, NULL};
    uv_process_options_t o = {.exit_cb = raw_exit,
                              .file = exe,
                              .args = args,
                              .stdio_count = 4,
                              .stdio = stdio};
    BENCH_CHECK(uv_spawn(uv, &c->proc, &o));
    c->proc.data = c;
    c->ch.data = c;
    BENCH_CHECK(uv_read_start((uv_stream_t *)&c->ch, raw_alloc, raw_read));
    /* Idle, they must not keep the loop from returning in run_pool(). */
    uv_unref((uv_handle_t *)&c->proc);
    uv_unref((uv_handle_t *)&c->ch);
  }
}

/* Returns tasks/s; sets *cpu (unless NULL) to the parent's CPU per task. */
static double run_raw(uv_loop_t *uv, size_t n, size_t depth, double *cpu) {
  done = 0;
  raw_to_send = n;
  raw_depth = depth;
  uint64_t c0 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  uint64_t t0 = bench_now();
  for (unsigned i = 0; i < nraw; i++) {
    uv_ref((uv_handle_t *)&raw[i].ch); /* else uv_run() would not poll */
    raw_feed(&raw[i]);
  }
  while (done < n)
    uv_run(uv, UV_RUN_ONCE);
  uint64_t t1 = bench_now();
  if (cpu != NULL)
    *cpu = cpu_per_task(c0, n);
  for (unsigned i = 0; i < nraw; i++)
    uv_unref((uv_handle_t *)&raw[i].ch);
  return (double)n * 1e9 / (double)(t1 - t0);
}

static void raw_stop(uv_loop_t *uv) {
  for (unsigned i = 0; i < nraw; i++) {
    uv_close((uv_handle_t *)&raw[i].ch, NULL); /* EOF: the worker exits */
    uv_ref((uv_handle_t *)&raw[i].proc);       /* reaped before we go on */
  }
  uv_run(uv, UV_RUN_DEFAULT);
}

/* ---- pebble ---- */

static void count_cb(pbl_task_t *t, void *data) {
  (void)data;
  BENCH_CHECK(pbl_task_error(t));
  done++;
}

/* The window: each callback submits the next task until n were. */
static pbl_pool_t *win_pool;
static size_t win_left;

static void window_cb(pbl_task_t *t, void *data) {
  count_cb(t, data);
  if (win_left == 0)
    return;
  win_left--;
  pbl_task_opts o = {.on_done = window_cb};
  BENCH_CHECK(pbl_pool_process(win_pool, echo, "pbl-echo", 8, &o, NULL));
}

/* Returns tasks/s; sets *cpu (unless NULL) to the parent's CPU per task. */
static double run_window(uv_loop_t *uv, pbl_pool_t *p, size_t n, size_t window,
                         double *cpu) {
  pbl_task_opts o = {.on_done = window_cb};
  done = 0;
  win_pool = p;
  window = window < n ? window : n;
  win_left = n - window;
  uint64_t c0 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
  uint64_t t0 = bench_now();
  for (size_t i = 0; i < window; i++)
    BENCH_CHECK(pbl_pool_process(p, echo, "pbl-echo", 8, &o, NULL));
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t1 = bench_now();
  if (cpu != NULL)
    *cpu = cpu_per_task(c0, n);
  BENCH_CHECK(done == n ? 0 : UV_EINVAL); /* no task lost */
  return (double)n * 1e9 / (double)(t1 - t0);
}

/* All n tasks submitted at once. */
static double run_pool(uv_loop_t *uv, pbl_pool_t *p, size_t n, double *cpu) {
  return run_window(uv, p, n, n, cpu);
}

static double run_map(uv_loop_t *uv, pbl_pool_t *p, const pbl_buf *in,
                      size_t n) {
  pbl_task_opts o = {.on_done = count_cb};
  done = 0;
  uint64_t t0 = bench_now();
  BENCH_CHECK(pbl_pool_map_process(p, echo, in, n, CHUNK, &o, NULL));
  uv_run(uv, UV_RUN_DEFAULT);
  uint64_t t1 = bench_now();
  BENCH_CHECK(done == n ? 0 : UV_EINVAL);
  return (double)n * 1e9 / (double)(t1 - t0);
}

/* One task at a time: the median round trip, in us. */
static double round_trip_us(uv_loop_t *uv, pbl_pool_t *p, size_t n) {
  double v[256];
  n = n < 256 ? n : 256;
  pbl_task_opts o = {.on_done = count_cb};
  for (size_t i = 0; i < n; i++) {
    done = 0;
    uint64_t t0 = bench_now();
    BENCH_CHECK(pbl_pool_process(p, echo, "pbl-echo", 8, &o, NULL));
    uv_run(uv, UV_RUN_DEFAULT);
    v[i] = (double)(bench_now() - t0) / 1e3;
  }
  return bench_median(v, n);
}

/* $PBL_BENCH_SSH as an argv, or NULL. */
static char **ssh_argv(void) {
  static char *argv[32];
  static char buf[1024];
  const char *env = getenv("PBL_BENCH_SSH");
  if (env == NULL || env[0] == '\0' || strlen(env) >= sizeof(buf))
    return NULL;
  strcpy(buf, env);
  size_t n = 0;
  for (char *tok = strtok(buf, " "); tok != NULL && n < 31;
       tok = strtok(NULL, " "))
    argv[n++] = tok;
  argv[n] = NULL;
  return n > 0 ? argv : NULL;
}

/* ---- Python ---- */

static double run_py(const char *script, const char *mode, unsigned workers) {
  return bench_run_py(script, mode, PY_N, workers, CHUNK);
}

static void row(const char *name, size_t n, double rate) {
  bench_row(34, name, n, rate);
}

static double med(double *v, int n) {
  return n > 0 ? bench_median(v, (size_t)n) : -1;
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  if (argc > 1 && strcmp(argv[1], RAW_ARG) == 0)
    return raw_worker();
  const char *script = argc > 1 ? argv[1] : NULL;
  size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 100000;
  int rounds = argc > 3 ? atoi(argv[3]) : 5;
  if (n == 0 || rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "usage: %s [script] [N > 0] [ROUNDS 1..%d]\n", argv[0],
            MAX_ROUNDS);
    return 2;
  }
  unsigned workers = uv_available_parallelism();
  if (workers > MAX_WORKERS)
    workers = MAX_WORKERS;

  (void)bench_steady_heap("bench-pool-process");
  uv_loop_t uv;
  BENCH_CHECK(uv_loop_init(&uv));
  pbl_loop_t *pl;
  BENCH_CHECK(pbl_loop_new(&uv, &pl));
  pbl_pool_opts po = {.workers = workers};
  pbl_pool_t *p;
  BENCH_CHECK(pbl_process_pool_new(pl, &po, &p));
  pbl_buf *in = bench_alloc(n * sizeof(*in));
  for (size_t i = 0; i < n; i++)
    in[i] = (pbl_buf){"pbl-echo", 8};
  raw_start(&uv, workers);

  char **ssh = ssh_argv();
  pbl_pool_t *sp = NULL;
  double ssh_start_ms = -1;
  if (ssh != NULL) {
    pbl_launcher l = {(const char *const *)ssh, workers};
    pbl_pool_opts so = {.launchers = &l, .n_launchers = 1};
    BENCH_CHECK(pbl_process_pool_new(pl, &so, &sp));
    uint64_t t0 = bench_now();
    run_pool(&uv, sp, 4 * workers, NULL); /* every worker logged in */
    ssh_start_ms = (double)(bench_now() - t0) / 1e6;
    run_pool(&uv, sp, n / 10 + 1, NULL);
  }

  /* Warm up: every worker started, caches and malloc arenas hot. */
  run_raw(&uv, n / 10 + 1, DEPTH, NULL);
  run_pool(&uv, p, n / 10 + 1, NULL);

  double r_raw[MAX_ROUNDS], r_pool[MAX_ROUNDS], r_map[MAX_ROUNDS];
  double r_deep[MAX_ROUNDS], r_ssh[MAX_ROUNDS];
  double c_raw[MAX_ROUNDS], c_pool[MAX_ROUNDS], c_deep[MAX_ROUNDS];
  double r_win[MAX_ROUNDS], c_win[MAX_ROUNDS];
  double r_py[MAX_ROUNDS], r_pymap[MAX_ROUNDS], r_fut[MAX_ROUNDS];
  int py_n = 0, pymap_n = 0, fut_n = 0;
  for (int r = 0; r < rounds; r++) {
    if (r % 2 == 0) {
      r_raw[r] = run_raw(&uv, n, DEPTH, &c_raw[r]);
      r_pool[r] = run_pool(&uv, p, n, &c_pool[r]);
      r_deep[r] = run_raw(&uv, n, DEEP, &c_deep[r]);
    } else {
      r_deep[r] = run_raw(&uv, n, DEEP, &c_deep[r]);
      r_pool[r] = run_pool(&uv, p, n, &c_pool[r]);
      r_raw[r] = run_raw(&uv, n, DEPTH, &c_raw[r]);
    }
    r_win[r] = run_window(&uv, p, n, (size_t)DEEP * workers, &c_win[r]);
    r_map[r] = run_map(&uv, p, in, n);
    if (sp != NULL)
      r_ssh[r] = run_pool(&uv, sp, n, NULL);
    double v = run_py(script, "pebble", workers);
    if (v > 0)
      r_py[py_n++] = v;
    v = run_py(script, "pebble-map", workers);
    if (v > 0)
      r_pymap[pymap_n++] = v;
    v = run_py(script, "futures", workers);
    if (v > 0)
      r_fut[fut_n++] = v;
  }
  double m_raw = med(r_raw, rounds), m_pool = med(r_pool, rounds);
  double m_deep = med(r_deep, rounds);
  double mc_raw = med(c_raw, rounds), mc_pool = med(c_pool, rounds);
  double mc_deep = med(c_deep, rounds);
  double m_win = med(r_win, rounds), mc_win = med(c_win, rounds);
  double m_map = med(r_map, rounds), m_py = med(r_py, py_n);
  double m_pymap = med(r_pymap, pymap_n), m_fut = med(r_fut, fut_n);
  double m_ssh = sp != NULL ? med(r_ssh, rounds) : -1;
  double rt_local = round_trip_us(&uv, p, 200);
  double rt_ssh = sp != NULL ? round_trip_us(&uv, sp, 200) : -1;

  printf("process pool throughput, trivial tasks (8-byte echo): %u workers, "
         "median of %d rounds\n",
         workers, rounds);
  printf("%-34s %9s %14s\n", "", "tasks", "tasks/s");
  row("raw socketpair, 2 in flight", n, m_raw);
  row("raw socketpair, 64 in flight", n, m_deep);
  row("pbl_pool_process", n, m_pool);
  row("pbl_pool_process, 64 in flight", n, m_win);
  row("pbl_pool_map_process /64", n, m_map);
  if (sp != NULL)
    row("pbl_pool_process through ssh", n, m_ssh);
  row("Pebble ProcessPool.schedule", PY_N, m_py);
  row("Pebble ProcessPool.map /64", PY_N, m_pymap);
  row("ProcessPoolExecutor.submit", PY_N, m_fut);
  bench_ratio("pool-process-vs-raw-socketpair", m_pool, m_raw);
  bench_ratio("pool-process-vs-raw-socketpair-64", m_pool, m_deep);
  bench_ratio("pool-process-window64-vs-raw-socketpair-64", m_win, m_deep);
  bench_ratio("pool-map64-vs-raw-socketpair", m_map, m_raw);
  bench_ratio("pool-process-vs-pebble-processpool", m_pool, m_py);
  bench_ratio("pool-map64-vs-pebble-processpool-map64", m_map, m_pymap);
  bench_ratio("pool-process-vs-processpoolexecutor", m_pool, m_fut);
  bench_ratio("pool-process-ssh-vs-local", m_ssh, m_pool);
  printf("parent's CPU per task (ns; the dispatching side, all its threads):"
         " raw 2 in flight %.0f, raw 64 in flight %.0f, pbl_pool_process "
         "%.0f, 64 in flight %.0f\n",
         mc_raw, mc_deep, mc_pool, mc_win);
  /* Tasks per parent CPU second, ours over raw's: the rate each side could
   * reach where its dispatching thread, not the workers, is the limit. */
  bench_ratio("pool-process-cpu-vs-raw-socketpair-64", 1 / mc_pool,
              1 / mc_deep);
  bench_ratio("pool-process-window64-cpu-vs-raw-socketpair-64", 1 / mc_win,
              1 / mc_deep);
  printf("round trip, one task at a time (median of 200): here %.0f us",
         rt_local);
  if (sp != NULL)
    printf(", through ssh %.0f us; ssh pool start (%u workers logged in "
           "and answering) %.0f ms",
           rt_ssh, workers, ssh_start_ms);
  printf("\n");
  if (m_py < 0)
    printf("(Python Pebble skipped: %s or pebble missing)\n", BENCH_PY);
  if (sp == NULL)
    printf("(ssh skipped: set PBL_BENCH_SSH to an ssh command line up to "
           "the host)\n");

  free(in);
  raw_stop(&uv);
  pbl_pool_free(p);
  if (sp != NULL)
    pbl_pool_free(sp);
  pbl_loop_close(pl, NULL);
  uv_run(&uv, UV_RUN_DEFAULT);
  BENCH_CHECK(uv_loop_close(&uv));
  return 0;
}
