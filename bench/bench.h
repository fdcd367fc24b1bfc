/* What every benchmark shares: the clock, statistics, libuv's pool size,
 * and a check that stops the run on an unexpected error (a benchmark has
 * no one to hand an error to but its output and its exit status). */
#ifndef PBL_BENCH_H
#define PBL_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <pebble.h>

#define BENCH_CHECK(expr)                                                      \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_ != 0) {                                                            \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,            \
              pbl_strerror(rc_));                                              \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

/* Like BENCH_CHECK, for a malloc that must not fail. */
void *bench_alloc(size_t n);

/* Monotonic nanoseconds. */
static inline uint64_t bench_now(void) {
  return uv_hrtime();
}

/* CPU nanoseconds of `clock`: CLOCK_PROCESS_CPUTIME_ID, every thread of
 * this process (not its children): what a run cost the side that
 * dispatches, where wall time also counts the workers it shares the CPUs
 * with; CLOCK_THREAD_CPUTIME_ID, the calling thread's. 0 on failure. */
uint64_t bench_cpu_ns(clockid_t clock);

/* Sorts v in place; the median of n > 0 values. */
double bench_median(double *v, size_t n);
/* Sorts v in place. */
void bench_sort_u64(uint64_t *v, size_t n);
/* The p-th percentile (0..100) of n > 0 sorted values, nearest rank. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);

/* Python Pebble's side of a pool benchmark: runs
 * `/usr/bin/python3 script mode n workers chunk` and returns the tasks
 * per second it prints, or a negative value if it could not run (no
 * python3, no pebble, no script: script may be NULL). */
#define BENCH_PY "/usr/bin/python3"
double bench_run_py(const char *script, const char *mode, size_t n,
                    unsigned workers, int chunk);
/* One line of a table: name, tasks, tasks per second (negative: skipped),
 * the name column `width` wide. */
void bench_row(int width, const char *name, size_t n, double rate);
/* The line "ratio <name> <ours / base>", when both were measured (> 0). */
void bench_ratio(const char *name, double ours, double base);

/* The size libuv's pool has (or will have) in this process: libuv reads
 * UV_THREADPOOL_SIZE once, at its first use, with these rules. */
unsigned bench_pool_size(void);

/* Puts the heap in steady state for both sides of every comparison: glibc
 * neither trims the heap when a burst's requests are freed nor grows it by
 * less than 64 MiB, so no round page-faults back what the last one gave
 * away (issue 14, item 4). Prints what it did. With BENCH_DEFAULT_MALLOC=1
 * in the environment it leaves glibc's defaults, for the default-malloc
 * figures shown for information. Returns 1 if it set steady state. */
int bench_steady_heap(const char *who);

#endif /* PBL_BENCH_H */
