/* The chaos test: a seeded stress program that drives every kind of task
 * at once, from several threads and from callbacks, injects faults, and
 * checks the invariants users rely on. See chaos-main.c for the run and
 * the report.
 *
 * Every task the library accepts gets a record. Its callback fills the
 * record on the loop thread (state, callback count, thread, result
 * check); the checks at the end read the records on the same thread. A
 * record's `allowed` set says which end states its behaviour and the
 * faults applied to it permit. */
#ifndef PBL_CHAOS_H
#define PBL_CHAOS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pebble.h>

/* ---- what ran ---- */

typedef enum {
  K_THREAD,       /* pbl_thread on libuv's pool */
  K_POOL_THREAD,  /* a thread pool of ours */
  K_PROCESS,      /* one-shot pbl_process */
  K_POOL_PROCESS, /* a process pool */
  K_COMMAND,      /* pbl_spawn */
  K_KINDS
} chaos_kind;

/* What a task does. Thread kinds use the first four. */
typedef enum {
  B_OK,          /* a result the parent can check */
  B_FAIL,        /* pbl_fail */
  B_SLOW,        /* some milliseconds of work, then a result */
  B_BLOCK,       /* runs until cancelled or timed out */
  B_ABORT,       /* process: abort() */
  B_SEGV,        /* process: SIGSEGV */
  B_EXIT,        /* process: _exit(1..255) */
  B_EXIT0,       /* process: exit(0) without a result */
  B_IGNORE_TERM, /* process: ignores SIGTERM, runs until killed */
  B_GARBAGE,     /* process: writes garbage on its channel */
  B_BEHAVIOURS
} chaos_behaviour;

#define ALLOW(s) (1u << (s))

typedef struct chaos_record {
  chaos_kind kind;
  chaos_behaviour behaviour;
  uint64_t key;             /* payload and result are made from it */
  uint64_t out_len;         /* process: result bytes asked for */
  _Atomic unsigned allowed; /* end states permitted (ALLOW(PBL_DONE), ...) */
  struct chaos_pool *pool;  /* NULL: not a pool task */
  pbl_task_t *task;         /* a reference we hold, or NULL (released) */
  size_t slot;              /* index in the in-flight table, loop thread */
  bool large;               /* holds a large-payload slot */
  bool cb_set_late;         /* pbl_task_on_done after the call (map): its
                               callback may come after the pool's join */
  uint64_t submit_ns;       /* uv_hrtime() before the call that made it */
  /* written by the callback, on the loop thread */
  uint64_t end_ns;
  int pid;         /* process kinds: pbl_task_pid at the end */
  int term_signal; /* pbl_task_term_signal at the end */
  int exit_status; /* pbl_task_exit_status at the end */
  int callbacks;
  bool off_loop; /* a callback ran on another thread */
  pbl_task_state end;
  int err;                   /* its end code */
  bool result_ok;            /* DONE and the result checked out */
  char why[96];              /* what the result check found */
  struct chaos_record *next; /* all records */
} chaos_record;

/* A worker killed from outside, or the launcher it started through. */
typedef struct {
  uint64_t start, end; /* uv_hrtime() around the kill() calls */
  int pid;             /* the worker */
  int sig;             /* what it (or its launcher) dies of */
  bool shell_status;   /* the worker itself, under a launcher shell that
                          stays: the pool sees that shell exit with
                          128 + sig, not a signal */
} chaos_span;

/* A pool made during the run, with what was scheduled on it. */
typedef struct chaos_pool {
  pbl_pool_t *pool;
  chaos_kind kind;   /* K_POOL_THREAD or K_POOL_PROCESS */
  bool failing_init; /* its initializer fails every task */
  bool remote;       /* its workers start through launchers (local
                        shells: chaos_op_pool_new) */
  _Atomic uint64_t accepted;
  _Atomic int users; /* actors scheduling on it right now */
  bool retiring;     /* no new users (chaos.lock) */
  /* Workers killed from outside (chaos.lock). A worker runs several
   * pipelined tasks, and a kill takes effect only when the kernel next
   * runs the worker: the task it ends is known by its pid and signal
   * (chaos_pool_kill_allows). */
  chaos_span *kills;
  size_t n_kills, cap_kills;
  struct chaos_pool *next;
} chaos_pool;

/* ---- the run ---- */

typedef struct {
  uint64_t seed;
  double seconds;
  unsigned actors; /* threads issuing work besides the loop */
  unsigned max_in_flight;
  unsigned max_large;   /* tasks with payloads over 1 MiB in flight */
  uint64_t max_payload; /* bytes */
} chaos_config;

typedef struct {
  chaos_config cfg;
  uv_loop_t uv;
  pbl_loop_t *pl;
  uv_thread_t loop_thread;
  _Atomic bool stopping; /* no new work */

  uv_mutex_t lock; /* records, pools, in-flight table, slots */
  uv_cond_t cv;    /* a slot freed, or stopping */
  chaos_record *records;
  uint64_t accepted[K_KINDS];
  chaos_pool *pools; /* every pool, retired ones too */
  unsigned open_pools;
  chaos_record **in_flight; /* tasks not yet called back */
  size_t n_in_flight;
  unsigned large_in_flight;

  /* counters, any thread */
  _Atomic uint64_t refused;   /* calls the library refused (ECLOSED, ...) */
  _Atomic uint64_t faults[9]; /* by chaos_fault */
  _Atomic uint64_t pools_made, pools_retired, pool_stats_bad;
  _Atomic uint64_t remote_pools; /* made, of pools_made */
  _Atomic uint64_t from_callbacks;
} chaos_state;

typedef enum {
  F_CANCEL,  /* pbl_task_cancel from another thread */
  F_SIGKILL, /* a worker killed from outside */
  F_SIGTERM,
  F_SIGSTOP_KILL, /* stopped, then killed */
  F_RELEASE,      /* the task released before it ends */
  F_POOL_CLOSE,   /* a busy pool closed and joined */
  F_POOL_STOP,    /* a busy pool stopped and joined */
  F_POOL_FREE,    /* a busy pool freed */
  F_LAUNCHER      /* a remote worker's launcher killed from outside */
} chaos_fault;

extern chaos_state chaos;

/* ---- randomness: a splitmix64 stream per actor ---- */

typedef struct {
  uint64_t s;
} chaos_rng;

static inline uint64_t rng_next(chaos_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(chaos_rng *r, uint64_t n) {
  return n == 0 ? 0 : rng_next(r) % n;
}

static inline bool rng_chance(chaos_rng *r, unsigned percent) {
  return rng_below(r, 100) < percent;
}

/* ---- payloads (chaos-fns.c) ---- */

/* The bytes of stream `key`, from offset 0: what the parent sends and
 * what the child gives back are both such streams. */
void chaos_fill(void *buf, size_t len, uint64_t key);
/* true if buf holds stream `key`. */
bool chaos_check(const void *buf, size_t len, uint64_t key);
/* The key of the result a child makes for input key k. */
static inline uint64_t chaos_result_key(uint64_t k) {
  return k ^ 0x5bd1e9955bd1e995ull;
}

/* A process task's input: this header, then `len` bytes of stream key. */
typedef struct {
  uint32_t magic;
  uint32_t behaviour;
  uint64_t key;
  uint64_t out_len;
  int32_t code;
  uint32_t pad;
} chaos_call;
#define CHAOS_CALL_MAGIC 0x63686173u /* "chas" */

int chaos_process_fn(const void *in, size_t len, pbl_buf *out);
int chaos_init_ok(const void *in, size_t len, pbl_buf *out);
int chaos_init_fail(const void *in, size_t len, pbl_buf *out);
void *chaos_thread_fn(void *arg);
void *chaos_thread_init_fail(void *arg);

/* A thread task's argument: behaviour and key, packed. */
static inline void *chaos_thread_arg(chaos_behaviour b, uint64_t key) {
  return (void *)(uintptr_t)(((key & 0xffffffffull) << 8) | (unsigned)b);
}
static inline void *chaos_thread_result(void *arg) {
  return (void *)((uintptr_t)arg ^ 0xa5a5a5a5u);
}

/* ---- operations (chaos-ops.c) ---- */

/* Issues one random operation (a task of some kind, a pool, a fault).
 * Thread: any. */
void chaos_op(chaos_rng *r, bool on_loop);
/* Injects one random fault. Thread: any but the loop's. */
void chaos_fault_op(chaos_rng *r);
/* Retires every pool left (close or stop, join, stats, free). Thread:
 * not the loop's. */
void chaos_retire_all_pools(void);
void chaos_record_free_all(void);

/* ---- checks (chaos-check.c) ---- */

/* The ends that kills of workers of rec's pool allow rec beyond its own
 * behaviour's (chaos-faults.c). */
unsigned chaos_pool_kill_allows(const chaos_record *rec);

/* Checks every invariant and prints the table. Returns the failures. */
int chaos_report(double seconds, size_t fds_before, size_t threads_before);

#endif
