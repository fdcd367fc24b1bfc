/* Statistics and environment helpers for the benchmarks. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void *bench_alloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "out of memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_double);
  return n % 2 != 0 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_sort_u64(uint64_t *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p) {
  size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return sorted[rank - 1];
}

double bench_run_py(const char *script, const char *mode, size_t n,
                    unsigned workers, int chunk) {
  if (script == NULL || access(BENCH_PY, X_OK) != 0 ||
      access(script, R_OK) != 0)
    return -1;
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "%s '%s' %s %zu %u %d 2>/dev/null", BENCH_PY,
           script, mode, n, workers, chunk);
  FILE *f = popen(cmd, "r");
  if (f == NULL)
    return -1;
  double rate = -1;
  if (fscanf(f, "%lf", &rate) != 1)
    rate = -1;
  if (pclose(f) != 0)
    rate = -1;
  return rate;
}

void bench_row(int width, const char *name, size_t n, double rate) {
  if (rate < 0)
    printf("%-*s %9zu %14s\n", width, name, n, "skipped");
  else
    printf("%-*s %9zu %14.0f\n", width, name, n, rate);
}

void bench_ratio(const char *name, double ours, double base) {
  if (ours > 0 && base > 0)
    printf("ratio %s %.3f\n", name, ours / base);
}

/* libuv 1.44's threadpool.c: atoi of the variable, 0 means 1, at most
 * 1024 (a negative value wraps as unsigned and is clamped too). */
unsigned bench_pool_size(void) {
  const char *val = getenv("UV_THREADPOOL_SIZE");
  unsigned n = val != NULL ? (unsigned)atoi(val) : 4;
  if (n == 0)
    n = 1;
  return n > 1024 ? 1024 : n;
}

int bench_steady_heap(const char *who) {
  const char *def = getenv("BENCH_DEFAULT_MALLOC");
  if (def != NULL && strcmp(def, "1") == 0) {
    printf("%s: heap: glibc's malloc defaults (BENCH_DEFAULT_MALLOC=1),"
           " figures for information only\n",
           who);
    return 0;
  }
  int ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 &&
           mallopt(M_TOP_PAD, 64 << 20) == 1;
  printf("%s: heap: steady state for both sides (mallopt M_TRIM_THRESHOLD"
         " 1 GiB, M_TOP_PAD 64 MiB)%s; BENCH_DEFAULT_MALLOC=1 for glibc's"
         " defaults\n",
         who, ok ? "" : " FAILED");
  return ok;
}

uint64_t bench_cpu_ns(clockid_t clock) {
  struct timespec ts;
  if (clock_gettime(clock, &ts) != 0)
    return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
