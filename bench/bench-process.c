/* One-shot process tasks against their baselines, in one run:
 *
 *  roundtrip  sequential pbl_process() of a trivial echo (8 bytes) against
 *             raw uv_spawn() of this same program doing the same echo over
 *             a socketpair on fd 3 (what a hand-written libuv program does)
 *  pebble-py  the same calls through Python Pebble's concurrent.process
 *             (/usr/bin/python3, Debian's python3-pebble); skipped if absent
 *  64mib      one task echoing 64 MiB (in and out) against the raw child
 *             echoing 64 MiB over its socketpair
 *
 * Rounds alternate pebble and baseline; each side's median throughput is
 * reported, and for each comparison one line "ratio <name> <pebble /
 * baseline>". This program is its own worker (pebble's and the raw one).
 *
 *   bench-process [--py=bench/pebble_process.py] [--rounds=15]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define RAW_ARG "--raw-worker"
/* Round trips per round: short rounds, many of them, ride out a noisy
 * machine. */
#define CALLS 40
#define BIG ((size_t)64 << 20)

static void check(int err, const char *what) {
  if (err != 0) {
    fprintf(stderr, "bench-process: %s: %s\n", what, pbl_strerror(err));
    exit(1);
  }
}

static double now_s(void) {
  return (double)uv_hrtime() / 1e9;
}

/* ---- the worker sides ---- */

static int bench_echo(const void *in, size_t len, pbl_buf *out) {
  out->data = malloc(len > 0 ? len : 1);
  if (out->data == NULL)
    return 1;
  memcpy(out->data, in, len);
  out->len = len;
  return 0;
}
PBL_PROCESS_FN(bench_echo);

static int io_all(int fd, char *p, size_t n, int write_it) {
  while (n > 0) {
    ssize_t k = write_it ? write(fd, p, n) : read(fd, p, n);
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* The raw child: u64 length and bytes in, the same back, exit. */
static int raw_worker(void) {
  uint64_t len;
  if (io_all(3, (char *)&len, sizeof(len), 0) != 0)
    return 1;
  char *buf = malloc(len > 0 ? len : 1);
  if (buf == NULL || io_all(3, buf, len, 0) != 0)
    return 1;
  char *copy = malloc(len > 0 ? len : 1); /* what bench_echo does too */
  if (copy == NULL)
    return 1;
  memcpy(copy, buf, len);
  free(buf);
  if (io_all(3, (char *)&len, sizeof(len), 1) != 0 ||
      io_all(3, copy, len, 1) != 0)
    return 1;
  free(copy);
  return 0;
}

/* ---- pebble side ---- */

typedef struct {
  pbl_loop_t *pl;
  const void *in;
  size_t len;
  int left;
  int failed;
} chain;

static void chain_next(chain *c);

static void chain_done(pbl_task_t *t, void *data) {
  chain *c = data;
  size_t n;
  if (pbl_task_error(t) != 0 || pbl_task_bytes(t, &n) == NULL || n != c->len)
    c->failed++;
  if (c->left > 0)
    chain_next(c);
}

static void chain_next(chain *c) {
  pbl_task_opts o = {.on_done = chain_done, .data = c};
  c->left--;
  check(pbl_process(c->pl, bench_echo, c->in, c->len, &o, NULL), "pbl_process");
}

/* Seconds for `calls` sequential tasks of len bytes each. */
static double pebble_round(uv_loop_t *loop, pbl_loop_t *pl, const void *in,
                           size_t len, int calls) {
  chain c = {pl, in, len, calls, 0};
  double t0 = now_s();
  chain_next(&c);
  uv_run(loop, UV_RUN_DEFAULT);
  double dt = now_s() - t0;
  if (c.failed != 0) {
    fprintf(stderr, "bench-process: %d pebble tasks failed\n", c.failed);
    exit(1);
  }
  return dt;
}

/* ---- raw uv_spawn side ---- */

/* What a hand-written libuv program does: one child per call, the next
 * started as soon as an answer is in (where pebble's callback starts
 * it), each child reaped and closed on its own. */
typedef struct {
  uv_loop_t *loop;
  const char *exe;
  const char *in;
  size_t in_len;
  int left;
} raw_chain;

typedef struct {
  raw_chain *chain;
  uv_process_t proc;
  uv_pipe_t ch;
  uv_write_t wreq;
  uint64_t len_out; /* the length sent first */
  uint64_t len_in;  /* the length read back */
  size_t hdr_got, got;
  char *out;
  int closes;
  bool exited, eof, answered;
} raw;

static void raw_start(raw_chain *c);

static void raw_closed(uv_handle_t *h) {
  raw *r = h->data;
  if (++r->closes < 2)
    return;
  if (!r->answered) {
    fprintf(stderr, "bench-process: raw child answered %zu bytes\n", r->got);
    exit(1);
  }
  free(r->out);
  free(r);
}

static void raw_maybe_close(raw *r) {
  if (!r->exited || !r->eof)
    return;
  uv_close((uv_handle_t *)&r->proc, raw_closed);
  uv_close((uv_handle_t *)&r->ch, raw_closed);
}

static void raw_exit(uv_process_t *p, int64_t status, int sig) {
  raw *r = p->data;
  if (status != 0 || sig != 0) {
    fprintf(stderr, "bench-process: raw child failed\n");
    exit(1);
  }
  r->exited = true;
  raw_maybe_close(r);
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  raw *r = h->data;
  (void)suggested;
  if (r->hdr_got < sizeof(r->len_in)) {
    *buf = uv_buf_init((char *)&r->len_in + r->hdr_got,
                       (unsigned)(sizeof(r->len_in) - r->hdr_got));
    return;
  }
  if (r->out == NULL)
    r->out = malloc(r->len_in > 0 ? r->len_in : 1);
  buf->base = r->out + r->got; /* straight into the result, as pebble */
  buf->len = r->len_in - r->got > 0 ? r->len_in - r->got : 1;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  raw *r = s->data;
  if (n > 0) {
    if (buf->base == (char *)&r->len_in + r->hdr_got)
      r->hdr_got += (size_t)n;
    else
      r->got += (size_t)n;
    if (!r->answered && r->hdr_got == sizeof(r->len_in) &&
        r->got == r->len_in && r->len_in == r->chain->in_len) {
      r->answered = true;
      if (r->chain->left > 0)
        raw_start(r->chain);
    }
  } else if (n < 0) {
    uv_read_stop(s);
    r->eof = true;
    raw_maybe_close(r);
  }
}

static void raw_written(uv_write_t *w, int status) {
  (void)w;
  check(status, "raw write");
}

static void raw_start(raw_chain *c) {
  raw *r = calloc(1, sizeof(*r));
  if (r == NULL)
    exit(1);
  c->left--;
  r->chain = c;
  r->len_out = c->in_len;
  check(uv_pipe_init(c->loop, &r->ch, 0), "uv_pipe_init");
  uv_stdio_container_t stdio[4] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = 1},
      {.flags = UV_INHERIT_FD, .data.fd = 2},
      {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE,
       .data.stream = (uv_stream_t *)&r->ch},
  };
  char *args[] = {(char *)c->exe, RAW_ARG, NULL};
  uv_process_options_t o = {.exit_cb = raw_exit,
                            .file = c->exe,
                            .args = args,
                            .flags = UV_PROCESS_DETACHED,
                            .stdio_count = 4,
                            .stdio = stdio};
  r->proc.data = r->ch.data = r;
  check(uv_spawn(c->loop, &r->proc, &o), "uv_spawn");
  check(uv_read_start((uv_stream_t *)&r->ch, raw_alloc, raw_read),
        "uv_read_start");
  uv_buf_t bufs[2] = {uv_buf_init((char *)&r->len_out, 8),
                      uv_buf_init((char *)c->in, 0)};
  bufs[1].len = c->in_len;
  check(uv_write(&r->wreq, (uv_stream_t *)&r->ch, bufs, 2, raw_written),
        "uv_write");
}

static double raw_round(uv_loop_t *loop, const char *exe, const void *in,
                        size_t len, int calls) {
  raw_chain c = {loop, exe, in, len, calls};
  double t0 = now_s();
  raw_start(&c);
  uv_run(loop, UV_RUN_DEFAULT);
  return now_s() - t0;
}

/* ---- Python Pebble ---- */

/* Calls per second of concurrent.process, or 0 if Pebble is missing. */
static double pebble_py_round(const char *script, int calls) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' %d", script, calls);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return 0;
  double rate = 0;
  char line[256];
  while (fgets(line, sizeof(line), p) != NULL)
    if (sscanf(line, "calls_per_s %lf", &rate) == 1)
      break;
  while (fgets(line, sizeof(line), p) != NULL)
    ;
  pclose(p);
  return rate;
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  if (argc > 1 && strcmp(argv[1], RAW_ARG) == 0)
    return raw_worker();
  const char *py = NULL;
  int rounds = 15;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--py=", 5) == 0)
      py = argv[i] + 5;
    else if (strncmp(argv[i], "--rounds=", 9) == 0)
      rounds = atoi(argv[i] + 9);
  }
  if (rounds < 1 || rounds > 50)
    rounds = 15;
  char exe[4096];
  size_t exe_len = sizeof(exe);
  check(uv_exepath(exe, &exe_len), "uv_exepath");

  uv_loop_t loop;
  pbl_loop_t *pl;
  check(uv_loop_init(&loop), "uv_loop_init");
  check(pbl_loop_new(&loop, &pl), "pbl_loop_new");
  char small[8] = "pebble!";

  double rt_p[50], rt_r[50], py_r[50], big_p[50], big_r[50];
  int py_n = 0, big_n = 0;
  for (int r = 0; r < rounds; r++) {
    /* Alternate which side goes first, so neither always runs warm. */
    if (r % 2 == 0) {
      rt_p[r] = CALLS / pebble_round(&loop, pl, small, 8, CALLS);
      rt_r[r] = CALLS / raw_round(&loop, exe, small, 8, CALLS);
    } else {
      rt_r[r] = CALLS / raw_round(&loop, exe, small, 8, CALLS);
      rt_p[r] = CALLS / pebble_round(&loop, pl, small, 8, CALLS);
    }
    if (py != NULL && r % 3 == 0) { /* Python starts slowly: fewer */
      double rate = pebble_py_round(py, CALLS);
      if (rate > 0)
        py_r[py_n++] = rate;
    }
    if (r % 3 != 0)
      continue; /* 64 MiB rounds take long: every third round */
    /* Made for these rounds only: uv_spawn() forks, and a big parent
     * forks slowly (both sides alike, but the round trips above would
     * measure fork, not us). */
    char *big = malloc(BIG);
    if (big == NULL)
      return 1;
    for (size_t i = 0; i < BIG; i++)
      big[i] = (char)(i * 131);
    double mb = 2.0 * BIG / 1e6; /* in and out */
    if (r % 2 == 0) {
      big_p[big_n] = mb / pebble_round(&loop, pl, big, BIG, 1);
      big_r[big_n] = mb / raw_round(&loop, exe, big, BIG, 1);
    } else {
      big_r[big_n] = mb / raw_round(&loop, exe, big, BIG, 1);
      big_p[big_n] = mb / pebble_round(&loop, pl, big, BIG, 1);
    }
    big_n++;
    free(big);
  }
  pbl_loop_close(pl, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);

  double p = bench_median(rt_p, (size_t)rounds);
  double rr = bench_median(rt_r, (size_t)rounds);
  double bp = bench_median(big_p, (size_t)big_n);
  double br = bench_median(big_r, (size_t)big_n);
  printf("one-shot process tasks, medians of %d rounds\n", rounds);
  printf("%-44s %12s\n", "case", "throughput");
  printf("%-44s %9.0f /s\n", "pbl_process echo 8 B, sequential", p);
  printf("%-44s %9.0f /s\n", "raw uv_spawn echo 8 B, sequential", rr);
  if (py_n > 0)
    printf("%-44s %9.0f /s\n", "Python Pebble concurrent.process",
           bench_median(py_r, (size_t)py_n));
  else
    printf("%-44s %12s\n", "Python Pebble concurrent.process", "skipped");
  printf("%-44s %9.0f MB/s\n", "pbl_process echo 64 MiB (in+out)", bp);
  printf("%-44s %9.0f MB/s\n", "raw socketpair echo 64 MiB (in+out)", br);
  printf("ratio process-roundtrip-vs-raw-spawn %.3f\n", p / rr);
  if (py_n > 0)
    printf("ratio process-roundtrip-vs-pebble-py %.3f\n",
           p / bench_median(py_r, (size_t)py_n));
  printf("ratio process-64mib-vs-raw-socketpair %.3f\n", bp / br);
  return 0;
}
