/* Internal structures shared across src/. Never installed.
 *
 * Design notes.
 *
 * A task ends exactly once: pbl__task_settle() is the only place that moves
 * a task to an end state, under its stripe lock. Its callback runs once,
 * later, on the loop thread (pbl__task_deliver()).
 *
 * Threads. A binding (pbl_loop_t) has one loop thread. Fields marked
 * "loop" are touched only there. Fields marked "stripe" are guarded by the
 * task's stripe lock (pbl__task_lock()). Other threads reach the loop
 * through the inbox (lock-free lists, inbox.h, + one uv_async_t):
 * submissions and callback deliveries are queued there, and the async is
 * sent once per batch.
 *
 * Lock order: a stripe lock before in_lock or a waiter's mutex, never
 * after; in_lock is taken last, and nothing calls out while holding it.
 * (Pools put their own locks first: see pool.h.)
 *
 * Ownership. A task's references: the caller's (if it asked for the task),
 * and the flight reference, held from creation until the task retires on
 * the loop thread (ended, callback delivered, and every in-flight hold --
 * uv request, timer, child -- released). A binding's memory is reference
 * counted by its tasks and pools, so a task outliving its binding stays
 * readable.
 */
#ifndef PBL_INTERNAL_H
#define PBL_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lanes.h"
#include "pebble.h"
#include "queue.h"

#define PBL__TASK_MAGIC 0x7062746bu /* "pbtk" */
#define PBL__LOOP_MAGIC 0x70626c70u /* "pblp" */
#define PBL__DEAD_MAGIC 0xdeadbeefu

#define PBL__VALID_TASK(t) ((t) != NULL && (t)->magic == PBL__TASK_MAGIC)
#define PBL__VALID_LOOP(l) ((l) != NULL && (l)->magic == PBL__LOOP_MAGIC)

#define PBL__ENDED(state) ((state) >= PBL_DONE)

#define PBL__CONTAINER_OF(ptr, type, member)                                   \
  ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- invariant checks ---- */

/* Where a comment says "loop thread", the code checks it, in builds with
 * PBL_CHECKS (meson -Dchecks; on by default in debug and sanitizer
 * builds); elsewhere the checks compile to nothing. A failed check is a
 * bug of the library's, never the user's: it says where and aborts. */
#if defined(PBL_CHECKS) && PBL_CHECKS
#define PBL__ASSERT(cond)                                                      \
  ((cond) ? (void)0 : pbl__check_failed(#cond, __FILE__, __LINE__, __func__))
#else
#define PBL__ASSERT(cond) ((void)0)
#endif
/* The caller runs on pl's loop thread. */
#define PBL__ASSERT_LOOP(pl) PBL__ASSERT(pbl__on_loop_thread(pl))
/* The caller runs on the thread recorded in *thread. */
#define PBL__ASSERT_THREAD(thread) PBL__ASSERT(pbl__on_thread(thread))
/* error.c */
_Noreturn void pbl__check_failed(const char *cond, const char *file, int line,
                                 const char *func);
static inline bool pbl__on_thread(const uv_thread_t *thread) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(thread, &self) != 0;
}

/* ---- allocation (alloc.c): errno-preserving, one seam for tests ---- */
void *pbl__malloc(size_t n);
void *pbl__calloc(size_t n, size_t size);
void *pbl__realloc(void *p, size_t n);
void pbl__free(void *p);
char *pbl__strdup(const char *s);
char *pbl__vasprintf(const char *fmt, va_list ap);
/* Grows the array *p of *cap items of `size` bytes to hold `need`
 * (doubling, at least 4). Returns 0 or UV_ENOMEM (*p is left as it was). */
int pbl__grow(void **p, size_t *cap, size_t need, size_t size);

/* ---- timers ---- */

/* Every timer the library arms goes through here. uv_timer_start counts
 * from the loop's cached time, taken at the start of this loop turn: after
 * a turn that did other work, or a slow start, a timer would fire that
 * much early. Counted from now instead, and 1 ms more, since the loop's
 * clock is in whole milliseconds: a timer never fires before `ms` of real
 * time. */
static inline int pbl__timer_start(uv_timer_t *timer, uv_timer_cb cb,
                                   uint64_t ms) {
  uv_update_time(timer->loop);
  return uv_timer_start(timer, cb, ms > 0 ? ms + 1 : 0, 0);
}

/* ---- task kinds ---- */

/* What process kinds know of their child. pid is set while the task
 * runs (atomic: any thread may read it); the rest is end data, published
 * by the task's state. */
typedef struct pbl__proc_info {
  _Atomic int pid;
  int exit_status;
  int term_signal;
  size_t len;            /* result bytes: u.result, when DONE */
  const void *out, *err; /* commands: captured output */
  size_t out_len, err_len;
  uint64_t out_dropped, err_dropped;
  char *words; /* an EXPIRED end's message; the kind frees it */
} pbl__proc_info;

typedef struct pbl__task_ops {
  const char *kind;
  /* Loop thread: begin the work of a task taken from the inbox or
   * submitted on the loop thread. Takes holds as needed. */
  void (*start)(pbl_task_t *t);
  /* Loop thread: the task ended by cancel or timeout while its work may
   * still be in flight: stop that work. Called once per task at most. */
  void (*abort)(pbl_task_t *t);
  /* Loop thread: the work posted with pbl__loop_post_finished ended. May
   * be NULL for kinds that never post it. */
  void (*finished)(pbl_task_t *t);
  /* Any thread: frees what the kind owns. May be NULL. */
  void (*destroy)(pbl_task_t *t);
  /* Any thread: words on an end other than a pbl_fail failure, or NULL
   * for pbl_strerror(err). May be NULL. */
  const char *(*message)(const pbl_task_t *t);
  /* Loop thread, after the first delivery: the kind may have been
   * waiting for it (pool items, pool.c). May be NULL. */
  void (*delivered)(pbl_task_t *t);
  /* Process kinds: their child's info. NULL for thread kinds. */
  pbl__proc_info *(*proc)(const pbl_task_t *t);
  /* true if the task's end needs its loop to turn (PBL_EDEADLK rule). */
  bool needs_loop;
  /* An internal task users never see: it takes no id (id 0), so users'
   * ids stay 1, 2, 3... */
  bool unnumbered;
} pbl__task_ops;

/* Failure recorded by pbl_fail(); published to readers by settle. */
typedef struct pbl__failure {
  int code;
  char msg[]; /* NUL-terminated */
} pbl__failure;

/* Rarely needed task data, allocated on demand. */
typedef struct pbl__task_extra {
  char *name;               /* copied from opts */
  int64_t timeout_ms;       /* 0: none */
  int64_t kill_grace_ms;    /* process kinds */
  uint64_t started_ns;      /* uv_hrtime() at start; written before notice */
  uv_timer_t *timer;        /* loop; closed before the task retires */
  int priority;             /* pools and pbl_thread */
  bool queue_expired;       /* stripe: ended by its queue deadline, unstarted */
  int64_t queue_timeout_ms; /* 0: none */
  uint64_t queued_ns;       /* uv_hrtime() at creation: the deadline's 0 */
  uv_timer_t *qtimer;       /* loop; closed before the task retires */
  pbl_task_t *qarm_next;    /* a pool's done lock: deadlines to arm */
} pbl__task_extra;

/* A blocked thread (wait.c). Fired under the stripe lock of a task it
 * waits on; lock order: stripe, then the waiter's own mutex. */
typedef struct pbl__waiter {
  uv_mutex_t mu;
  uv_cond_t cv;
  bool fired; /* mu */
} pbl__waiter;
void pbl__waiter_fire(pbl__waiter *w);

/* Waiter node: one per task a thread waits on. */
typedef struct pbl__wait_node {
  struct pbl__wait_node *next;
  struct pbl__wait_node **pprev;
  pbl__waiter *w;
} pbl__wait_node;

/* Stripe-guarded flags (sflags). */
enum {
  PBL__S_DELIVERY_QUEUED = 1 << 0, /* a delivery is claimed or on its way */
  PBL__S_CB_CALLED = 1 << 1,       /* the callback was invoked */
  PBL__S_DELIVERED = 1 << 2,       /* the first delivery ran */
  PBL__S_ABORT_DUE = 1 << 3,       /* ended by cancel/timeout: abort work */
  PBL__S_LATE_COUNTED = 1 << 4     /* a late delivery counted in active */
};

/* Loop-thread flags (lflags). */
enum {
  PBL__L_LIVE = 1 << 0,      /* in pl->live */
  PBL__L_STARTED = 1 << 1,   /* taken in by the loop (started or skipped) */
  PBL__L_ABORTED = 1 << 2,   /* ops->abort ran */
  PBL__L_DELIVERED = 1 << 3, /* the first delivery ran */
  PBL__L_RETIRED = 1 << 4,   /* the flight reference was released */
  PBL__L_KIND = 1 << 5,      /* free for the task's kind */
  PBL__L_SPARE = 1 << 6      /* its memory is of the spare class (set at
                              * creation, read at the free) */
};

/* 120 bytes: a thread task (this + its run-queue link and argument) is
 * 144 bytes, one 160-byte malloc chunk. */
struct pbl_task {
  uint32_t magic;
  _Atomic uint8_t state; /* pbl_task_state; release-stored by settle */
  uint8_t holds;         /* loop: in-flight work not yet finished */
  uint8_t sflags;        /* stripe */
  uint8_t lflags;        /* loop */
  _Atomic uint32_t refs;
  int32_t err; /* end code; published by state */
  uint64_t id;
  pbl_loop_t *loop;
  const pbl__task_ops *ops;
  pbl_done_cb on_done; /* stripe */
  void *data;          /* stripe */
  union {
    pbl_thread_fn fn;      /* thread kinds, until the function starts */
    void *result;          /* state DONE: the result */
    pbl__failure *failure; /* state FAILED: pbl_fail's record, or NULL */
  } u;                     /* published by state */
  pbl__task_extra *x;      /* set at creation or never */
  pbl__wait_node *waiters; /* stripe */
  pbl_task_t *in_next;     /* inbox links (inbox.c): take in, */
  pbl_task_t *fin_next;    /* work finished, */
  pbl_task_t *done_next;   /* deliver */
  QUEUE live;              /* loop: pl->live */
};

static inline int pbl__task_priority(const pbl_task_t *t) {
  return t->x != NULL ? t->x->priority : 0;
}
static inline bool pbl__task_has_queue_deadline(const pbl_task_t *t) {
  return t->x != NULL && t->x->queue_timeout_ms > 0;
}

/* ---- the binding ---- */

/* The inbox's lists, in the order a drain serves them. */
enum { PBL__IN_TAKE, PBL__IN_FINISHED, PBL__IN_DELIVER, PBL__IN_LISTS };

/* libuv's thread pool as thread tasks use it (thread-task.c): a run queue
 * per binding, drained by at most `max_runners` uv_work_t "runners". One
 * uv_queue_work per task would contend with the pool's workers for
 * libuv's one global mutex and wake a worker per task. */
typedef struct {
  uv_mutex_t lock;      /* guards queue */
  QUEUE queue;          /* thread tasks waiting for a runner, in order */
  QUEUE taken;          /* loop: taken in by this drain, not yet queued */
  pbl__lanes lanes;     /* guarded by lock: queue's priorities */
  unsigned runners;     /* loop: runners queued or running */
  unsigned max_runners; /* libuv's pool size */
} pbl__runq;

/* Fields written by several threads at high rates each get a cache line
 * of their own (PBL__LINE_APART): a producer thread and the loop thread
 * writing one line and reading another beside it made every task pay a
 * cache-line transfer or two. A binding is malloc'd, so padding, not
 * alignment, keeps the groups apart. */
#define PBL__LINE_APART(name) char name[64]

struct pbl_loop {
  /* read-mostly */
  uint32_t magic;
  bool is_default;
  _Atomic bool closing; /* set on the loop thread; read anywhere */
  uv_loop_t *uv;
  uv_thread_t thread; /* the loop thread */
  PBL__LINE_APART(pad0);

  _Atomic uint32_t refs; /* the binding itself + tasks + pools */
  PBL__LINE_APART(pad1);
  /* LIFO each (inbox.c): submissions, work finished, deliveries */
  _Atomic(pbl_task_t *) in_take;
  PBL__LINE_APART(pad2);
  _Atomic(pbl_task_t *) in_finished;
  PBL__LINE_APART(pad3);
  _Atomic(pbl_task_t *) in_deliver;
  PBL__LINE_APART(pad4);
  _Atomic(struct spare *) spares; /* task memory to reuse (task-cache.c) */
  PBL__LINE_APART(pad5);

  uv_mutex_t in_lock;           /* guards the sends and the fields below */
  bool in_closed;               /* lists sealed: the async is closing */
  _Atomic bool close_requested; /* a foreign thread asked to close */
  void (*close_req_cb)(pbl_loop_t *);
  uv_async_t async; /* inbox wake-up; ref'd while tasks are live */

  /* loop thread only */
  QUEUE live;    /* tasks started and not retired */
  size_t active; /* live tasks + loop-posted late deliveries */
  bool closed;   /* closed_cb was called */
  bool async_refd;
  void (*closed_cb)(pbl_loop_t *);
  QUEUE members;              /* pools bound to this loop */
  struct pbl__reaper *reaper; /* our children's SIGCHLD watcher, or NULL */
  size_t n_spares;            /* about how many spares (task-cache.c) */
  bool taking_in;             /* a drain takes in submissions */
  void (*after_take)(pbl_loop_t *pl); /* once they are all taken in */
  PBL__LINE_APART(pad6);
  pbl__runq runq; /* thread tasks on libuv's pool */
};

/* Something bound to a loop that must end before the loop closes. */
typedef struct pbl__member {
  QUEUE link;
  /* loop thread: the loop is closing; end everything, then call
   * pbl__loop_member_gone() once no handle remains. */
  void (*close)(struct pbl__member *m);
} pbl__member;

/* loop.c */
bool pbl__on_loop_thread(const pbl_loop_t *pl);
void pbl__loop_ref(pbl_loop_t *pl);
void pbl__loop_unref(pbl_loop_t *pl);
/* Starts t on the loop thread, or hands it over through the inbox.
 * Returns 0 or PBL_ECLOSED (then the caller still owns t). */
int pbl__loop_submit(pbl_loop_t *pl, pbl_task_t *t);
/* Any thread: queue t to be taken in (pbl__task_take_in) or delivered
 * (pbl__task_deliver) on the loop thread. 0 or PBL_ECLOSED. */
int pbl__loop_post_in(pbl_loop_t *pl, pbl_task_t *t);
int pbl__loop_post_finished(pbl_loop_t *pl, pbl_task_t *t); /* ops->finished */
int pbl__loop_post_delivery(pbl_loop_t *pl, pbl_task_t *t);
/* loop-call.c: runs fn(arg) on pl's loop thread and returns what it
 * returned: at once on the loop thread, else as an internal task the
 * caller waits for (the loop must be running). PBL_ECLOSED if the binding
 * closes first; UV_ENOMEM. Thread: any. */
int pbl__loop_call(pbl_loop_t *pl, int (*fn)(void *arg), void *arg);
/* loop.c: the size libuv's pool has (or will have), as libuv computes it. */
unsigned pbl__uv_pool_size(void);
/* Loop thread: close even the default binding (at exit). */
void pbl__loop_close_internal(pbl_loop_t *pl, void (*cb)(pbl_loop_t *));
void pbl__loop_track(pbl_loop_t *pl, pbl_task_t *t);
void pbl__loop_untrack(pbl_loop_t *pl, pbl_task_t *t);
void pbl__loop_hold(pbl_loop_t *pl);
void pbl__loop_drop(pbl_loop_t *pl);
void pbl__loop_member_add(pbl_loop_t *pl, pbl__member *m);
void pbl__loop_member_gone(pbl_loop_t *pl, pbl__member *m);
bool pbl__loop_is_closing(const pbl_loop_t *pl);

/* task-cache.c. Task memory made on other threads than the loop's.
 *
 * Design notes. A producer thread submitting to a binding allocates every
 * task on its own malloc arena, and the loop thread frees it there: both
 * then fight for that arena's lock at every task (glibc's per-thread cache
 * never fills on the producer's side, which only allocates). That lock's
 * futex calls were half of a foreign submission's cost. So a task of at
 * most PBL__TASK_CLASS bytes made on another thread gets a chunk of that
 * size, which the loop thread, when it frees the task, pushes on the
 * binding's spares (a lock-free stack, at most 4096); the next thread
 * short of memory takes the whole stack, one exchange, and uses it up
 * before it calls malloc again. A thread's spares are freed when it exits,
 * a binding's when its memory goes. Tasks made on the loop thread, and
 * everything under AddressSanitizer, use malloc as before. */
#define PBL__TASK_CLASS 160
void *pbl__task_mem_new(pbl_loop_t *pl, size_t size, bool *recycled);
void pbl__task_mem_free(pbl_loop_t *pl, void *m, bool recycled);
void pbl__task_mem_drop(pbl_loop_t *pl); /* the binding's memory goes */
bool pbl__task_mem_recycles(void);       /* not under AddressSanitizer */

/* task.c */
void pbl__task_lock(const pbl_task_t *t);
void pbl__task_unlock(const pbl_task_t *t);
/* Allocates a zeroed task of `size` bytes (>= sizeof(pbl_task_t)) with
 * its flight reference, plus one for the caller if want_ref. Copies opts
 * (validated here: UV_EINVAL). Returns 0, UV_EINVAL or UV_ENOMEM; on error
 * nothing is left behind. */
int pbl__task_new(pbl_loop_t *pl, const pbl__task_ops *ops, size_t size,
                  const pbl_task_opts *opts, bool want_ref, pbl_task_t **out);
/* Frees a task that was never submitted (its creator's error path). */
void pbl__task_discard(pbl_task_t *t);
/* Hands a new task over: publishes it in *out (out may be NULL) before
 * submit(to, t) -- a fire-and-forget task may be gone once submitted --
 * and, if submit fails, clears *out and discards t (never accepted).
 * submit NULL: pbl__loop_submit(t->loop, t). Returns what submit did. */
int pbl__task_submit_out(pbl_task_t *t, pbl_task_t **out,
                         int (*submit)(void *to, pbl_task_t *t), void *to);
/* Marks a pending task running. Returns false if it already ended. Any
 * thread, lock-free. */
bool pbl__task_begin(pbl_task_t *t);
/* Marks a running task pending again: its work never reached the process
 * meant to run it and will start anew. Returns false if it already
 * ended. Any thread, lock-free. */
bool pbl__task_unbegin(pbl_task_t *t);

/* Who delivers the callback after an end. */
typedef enum {
  PBL__DELIVER_LATER, /* the loop finds it later: pbl__task_deliver_due() */
  PBL__DELIVER_NOW,   /* loop thread, inside a uv callback: at once */
  PBL__DELIVER_POST   /* any thread: through the inbox, a later turn */
} pbl__deliver_mode;

/* The only way to end a task. Moves t to `end` with `err`; `result`
 * (DONE) and `failure` (FAILED; taken over, freed if unused) are published
 * with the state. Wakes waiters, then delivers as `mode` says. Returns
 * true for the single caller that ended the task. Thread: any, but
 * PBL__DELIVER_NOW only on the loop thread. */
bool pbl__task_end(pbl_task_t *t, pbl_task_state end, int err, void *result,
                   pbl__failure *failure, pbl__deliver_mode mode);
/* Loop thread: ends t PBL_TIMED_OUT, UV_ETIMEDOUT, its queue deadline
 * passed, only if it has not started (begin and this race on the state),
 * and delivers at once. Returns true if it ended t. */
bool pbl__task_end_unstarted(pbl_task_t *t);
/* Loop thread: delivers the callback of an ended task nobody claimed.
 * Returns true if another claimed the first delivery and it has not run
 * yet (it is on its way through the inbox). */
bool pbl__task_deliver_due(pbl_task_t *t);
/* Loop thread: a delivery taken from the inbox. */
void pbl__task_deliver(pbl_task_t *t);
/* Loop thread: in-flight holds; the task retires when the last is dropped
 * and its callback was delivered. */
void pbl__task_hold(pbl_task_t *t);
void pbl__task_drop(pbl_task_t *t);
/* Loop thread: a task taken from the inbox or submitted on the loop. */
void pbl__task_take_in(pbl_task_t *t);
/* Loop thread: the binding closes: cancel this live task. */
void pbl__task_close_cancel(pbl_task_t *t);
/* true once t ended, for pbl_cancelled(). */
static inline bool pbl__task_ended(const pbl_task_t *t) {
  return PBL__ENDED(
      atomic_load_explicit(&((pbl_task_t *)t)->state, memory_order_acquire));
}
pbl__failure *pbl__failure_new(int code, const char *msg);

/* wait.c: uv_hrtime() timeout_ms from now; UINT64_MAX for a negative
 * timeout, or one so long the sum would wrap. */
uint64_t pbl__deadline_of(int64_t timeout_ms);

/* timeout.c: loop thread. Arms the task's timer for what remains of its
 * timeout, counted from x->started_ns. Takes a hold until closed. */
void pbl__timeout_arm(pbl_task_t *t);
void pbl__timeout_disarm(pbl_task_t *t);

/* queue-deadline.c: loop thread. Arms the timer of a task's queue
 * deadline (counted from x->queued_ns), unless it has none, already
 * started or ended. Past it, a task that has still not started ends
 * PBL_TIMED_OUT (pbl__task_end_unstarted). Takes a hold until closed;
 * disarm once the task is done with its queue. */
void pbl__queue_deadline_arm(pbl_task_t *t);
void pbl__queue_deadline_disarm(pbl_task_t *t);

/* run-context.c: what pbl_fail/pbl_cancelled act on, per thread. */
typedef struct pbl__run_ctx {
  void (*fail)(struct pbl__run_ctx *c, int code, const char *msg);
  bool (*cancelled)(struct pbl__run_ctx *c);
  void *self;
} pbl__run_ctx;
pbl__run_ctx *pbl__run_enter(pbl__run_ctx *c); /* returns the previous */
bool pbl__in_task(void); /* the calling thread runs a task's function */
void pbl__run_leave(pbl__run_ctx *prev);

/* A run context that records pbl_fail(): `failed` tells whether it was
 * called, `failure` holds the first record (NULL if out of memory; owned
 * by the caller). pbl__fail_record_fail is its ctx.fail. */
typedef struct pbl__fail_record {
  pbl__run_ctx ctx;
  bool failed;
  pbl__failure *failure;
} pbl__fail_record;
void pbl__fail_record_fail(pbl__run_ctx *c, int code, const char *msg);

/* ids */
uint64_t pbl__next_id(void);

#endif /* PBL_INTERNAL_H */
