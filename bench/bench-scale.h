/* The parts of the scaling benchmark: bench-scale.c is the parent, which
 * starts a child process per worker count and reports; scale-run.c is the
 * child's side, the timed runs. See bench-scale.c's design notes. */
#ifndef PBL_BENCH_SCALE_H
#define PBL_BENCH_SCALE_H

#include "bench.h"

#define SCALE_MAX_LIST 8
#define SCALE_MAX_PRODUCERS 64
#define SCALE_MAX_ROUNDS 15

typedef enum { RAW, THREAD, POOL_THREAD, POOL_PROCESS, NKINDS } scale_kind;

/* For result, ratio and data lines: "raw", "thread", "pool-thread",
 * "pool-process". */
extern const char *const scale_kind_names[NKINDS];

typedef struct {
  unsigned v[SCALE_MAX_LIST];
  int n;
} scale_list;

/* What parent and children read from the environment alike. */
typedef struct {
  scale_list sizes; /* us of CPU a task */
  scale_list prods; /* producer threads */
  unsigned ms;      /* about how long a timed run lasts */
  int rounds;       /* timed rounds a cell */
} scale_config;

/* Iterations of the busy loop a microsecond of this thread's CPU time. */
double scale_calibrate(void);

/* The child for w workers (libuv's pool must have w threads): every cell
 * of c, each printed as a line `R us w producers kind n median min max`
 * on stdout. Returns the exit status. */
int scale_child(const scale_config *c, unsigned w, double ipus);

#endif
