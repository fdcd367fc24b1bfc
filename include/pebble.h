/* pebble for C: thread and process tasks as futures on a libuv loop.
 *
 * Copyright (c) 2026 the pebble for C authors. MIT licence (see LICENSE).
 *
 * Conventions (as in libuv):
 *  - Every fallible call returns int: 0 or a negative error code. libuv's
 *    codes are reused where they fit; the library's own PBL_E* codes sit in
 *    a block libuv never uses. pbl_strerror() and pbl_err_name() know both.
 *  - Bad arguments give UV_EINVAL, never a crash or an abort.
 *  - Every call copies what it is given before it returns.
 *  - "Loop thread" is the thread that runs the uv loop a binding was made
 *    on (the thread that called pbl_loop_new()).
 */
#ifndef PEBBLE_H
#define PEBBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PBL_EXTERN __attribute__((visibility("default")))
#else
#define PBL_EXTERN
#endif

#define PBL_VERSION_MAJOR 0
#define PBL_VERSION_MINOR 1
#define PBL_VERSION_PATCH 0

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/* XX(name, code, message). libuv uses -errno, the -3000s, the -4000s and
 * -9919; -20001.. is free. */
#define PBL_ERRNO_MAP(XX)                                                      \
  XX(EEXPIRED, -20001, "the process running the task died")                    \
  XX(ECLOSED, -20002, "pool or loop closed")                                   \
  XX(EFAILED, -20003, "the task function reported failure")                    \
  XX(ENOFUNC, -20004, "process function not registered")                       \
  XX(EPROTO, -20005, "a worker sent malformed data")                           \
  XX(EDEADLK, -20006, "wait on the loop thread cannot finish")

/* clang-format reads the list's expansion as an expression. */
/* clang-format off */
enum {
#define PBL__ERR_ENUM(name, code, msg) PBL_##name = (code),
  PBL_ERRNO_MAP(PBL__ERR_ENUM)
#undef PBL__ERR_ENUM
  PBL__ERR_END_ = 0
};
/* clang-format on */

/* Human words for err: ours, else libuv's. Never NULL; static storage,
 * except for a code nobody knows: then a thread-local buffer, valid until
 * the next such call on the same thread. */
PBL_EXTERN const char *pbl_strerror(int err);
/* The symbolic name ("PBL_EEXPIRED", "ETIMEDOUT", ...). Never NULL. */
PBL_EXTERN const char *pbl_err_name(int err);

/* ------------------------------------------------------------------ */
/* Binding to a loop                                                   */
/* ------------------------------------------------------------------ */

typedef struct pbl_loop pbl_loop_t;
typedef struct pbl_task pbl_task_t;
typedef struct pbl_pool pbl_pool_t;

/* Binds the library to `loop`. Thread: the loop thread (the calling
 * thread becomes the binding's loop thread). An idle binding does not keep
 * the loop alive. Returns 0 and sets *out, UV_EINVAL or UV_ENOMEM. */
PBL_EXTERN int pbl_loop_new(uv_loop_t *loop, pbl_loop_t **out);

/* Closes the binding asynchronously, like uv_close(): new tasks get
 * PBL_ECLOSED; queued tasks end cancelled; running processes are killed;
 * running thread tasks are marked cancelled and waited for; their
 * callbacks fire; then closed_cb (may be NULL) is called once, on a later
 * turn, with every handle closed and every child reaped. The loop must be
 * run for this to finish. Thread: any (from another thread the request is
 * handed to the loop thread). A second call, or a call on the default
 * loop (closed at exit), does nothing. After closed_cb the binding must
 * not be used; tasks still referenced stay readable. */
PBL_EXTERN void pbl_loop_close(pbl_loop_t *pl,
                               void (*closed_cb)(pbl_loop_t *pl));

/* A binding on the library's own uv loop, run by a background thread made
 * on first use, for programs with no loop of their own. It is closed and
 * its thread joined at exit. Thread: any. Returns NULL only if the thread
 * or loop could not be made. */
PBL_EXTERN pbl_loop_t *pbl_default_loop(void);

/* The uv loop a binding runs on. Thread: any. */
PBL_EXTERN uv_loop_t *pbl_loop_uv(const pbl_loop_t *pl);

/* ------------------------------------------------------------------ */
/* Tasks (futures)                                                     */
/* ------------------------------------------------------------------ */

/* Runs on the loop thread, exactly once per task. */
typedef void (*pbl_done_cb)(pbl_task_t *task, void *data);

typedef struct {
  pbl_done_cb on_done; /* optional callback */
  void *data;          /* passed to on_done */
  int64_t timeout_ms;  /* 0: none; counts from the task's start; <0: EINVAL */
  const char *name;    /* for messages and stats; copied */
  const char *worker_path;  /* process tasks: NULL = this program; copied */
  int64_t kill_grace_ms;    /* process tasks: SIGTERM to SIGKILL; 0: 1000 */
  int priority;             /* pools and pbl_thread: higher runs first; equal
                               priorities run in submission order; default 0. A task
                               already on a worker is never pre-empted, and a steady
                               flow of higher priorities starves lower ones: that is
                               the caller's choice */
  int64_t queue_timeout_ms; /* pools and pbl_thread: longest wait in the
                               queue; past it the task ends UV_ETIMEDOUT
                               without having started (its message says
                               so); 0: none; <0: UV_EINVAL. Counts from
                               the submit; timeout_ms counts from the
                               start. Kinds that never queue ignore it */
} pbl_task_opts;            /* NULL: all defaults */

typedef enum {
  PBL_PENDING,   /* queued: its function or child has not started */
  PBL_RUNNING,   /* started, not ended */
  PBL_DONE,      /* end: success, error 0 */
  PBL_FAILED,    /* end: PBL_EFAILED (or libuv's code: a child not started) */
  PBL_CANCELLED, /* end: UV_ECANCELED */
  PBL_TIMED_OUT, /* end: UV_ETIMEDOUT */
  PBL_EXPIRED    /* end: PBL_EEXPIRED, the process running it died */
} pbl_task_state;

/* Reference counting. A task handed to the caller holds one reference.
 * Thread: any. Release of the last reference frees the task; a task still
 * running keeps its own reference until it has ended. */
PBL_EXTERN pbl_task_t *pbl_task_retain(pbl_task_t *t);
PBL_EXTERN void pbl_task_release(pbl_task_t *t);

/* Blocks until `t` ends or `timeout_ms` passes (negative: forever; 0: only
 * polls). Thread: any; on the task's loop thread a wait that needs the loop
 * to turn returns PBL_EDEADLK at once instead of hanging.
 * Returns the end code (0 and sets *result if result is not NULL: the
 * function's return value, or for a process task the pointer that
 * pbl_task_bytes() returns), UV_ETIMEDOUT if the wait ran out
 * (pbl_task_state_of() tells that from a timed-out task), UV_EINVAL. */
PBL_EXTERN int pbl_task_get(pbl_task_t *t, int64_t timeout_ms, void **result);

/* As pbl_task_get, but returns 0 once the task ended, whatever its end. */
PBL_EXTERN int pbl_task_wait(pbl_task_t *t, int64_t timeout_ms);

/* Waits until one of ts[0..n) has ended; sets *index to the lowest such
 * index. Returns 0, UV_ETIMEDOUT, PBL_EDEADLK or UV_EINVAL. */
PBL_EXTERN int pbl_wait_any(pbl_task_t **ts, size_t n, int64_t timeout_ms,
                            size_t *index);

/* Waits until all of ts[0..n) have ended. Returns 0, UV_ETIMEDOUT,
 * PBL_EDEADLK or UV_EINVAL. */
PBL_EXTERN int pbl_wait_all(pbl_task_t **ts, size_t n, int64_t timeout_ms);

/* Ends a pending or running task as cancelled (state, waiters at once; its
 * callback on a later loop turn). A running thread task keeps running with
 * its pbl_cancelled() flag raised; a running process is killed.
 * Thread: any. Returns 0 if it ended the task or the task was already
 * cancelled, UV_EBUSY if the task already ended otherwise (unchanged). */
PBL_EXTERN int pbl_task_cancel(pbl_task_t *t);

/* Sets the task's one callback, replacing one not yet called. On a task
 * that already ended it fires on a later loop turn, never inside this
 * call. cb may be NULL (no callback). Thread: any.
 * Returns 0, UV_EALREADY once the callback has been called, PBL_ECLOSED if
 * the task's binding is closed, UV_EINVAL. */
PBL_EXTERN int pbl_task_on_done(pbl_task_t *t, pbl_done_cb cb, void *data);

/* Accessors. Thread: any. End data is stable once the state is an end. */
PBL_EXTERN pbl_task_state pbl_task_state_of(const pbl_task_t *t);
PBL_EXTERN const char *pbl_task_state_name(pbl_task_state s);
PBL_EXTERN uint64_t pbl_task_id(const pbl_task_t *t);      /* unique, > 0 */
PBL_EXTERN const char *pbl_task_name(const pbl_task_t *t); /* NULL: none */
PBL_EXTERN int pbl_task_error(const pbl_task_t *t);     /* 0 or the end code */
PBL_EXTERN int pbl_task_fail_code(const pbl_task_t *t); /* from pbl_fail */
/* Human words on the end: pbl_fail's text, or what ended the task. NULL
 * while the task has not ended. Owned by the task. */
PBL_EXTERN const char *pbl_task_message(const pbl_task_t *t);
/* Process tasks: result bytes (malloc alignment), owned by the task until
 * its last release; NULL and *len 0 otherwise. len may be NULL. */
PBL_EXTERN const void *pbl_task_bytes(const pbl_task_t *t, size_t *len);
PBL_EXTERN int pbl_task_exit_status(const pbl_task_t *t); /* processes */
PBL_EXTERN int pbl_task_term_signal(const pbl_task_t *t); /* 0: none */
PBL_EXTERN int pbl_task_pid(const pbl_task_t *t);         /* 0 for threads */

/* ------------------------------------------------------------------ */
/* Thread tasks                                                        */
/* ------------------------------------------------------------------ */

typedef void *(*pbl_thread_fn)(void *arg); /* like pthread_create */

/* Runs fn(arg) on libuv's thread pool. Thread: any (from another thread
 * the task reaches the loop through one uv_async, batched); from another
 * thread the loop must be running for the task to start. task may be NULL
 * (fire and forget: the library owns the task, valid inside its callback
 * only). A timeout or cancel of a running task ends it at once and raises
 * its pbl_cancelled() flag; the function's later return value is
 * discarded. Do not call exit() in the function: libuv's own exit-time
 * cleanup joins its pool's threads and aborts when run on one of them
 * (a thread pool of the library's allows it). Returns 0, UV_EINVAL,
 * UV_ENOMEM, PBL_ECLOSED. */
PBL_EXTERN int pbl_thread(pbl_loop_t *pl, pbl_thread_fn fn, void *arg,
                          const pbl_task_opts *opts, pbl_task_t **task);

/* Inside a task (thread function, process function or initializer):
 * records a failure and returns; the task ends PBL_FAILED with this
 * message and `code`, whatever the function returns next. The first call
 * wins. Outside a task it does nothing. fmt may be NULL. */
PBL_EXTERN void pbl_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Inside a task: true once the task was cancelled, timed out, or its
 * binding or pool is closing. Cheap enough to poll in a loop. */
PBL_EXTERN bool pbl_cancelled(void);

/* ------------------------------------------------------------------ */
/* Process tasks                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
  void *data; /* malloc'd; freed by the library */
  size_t len;
} pbl_buf;

/* Runs in a child process. Returns 0, or non-zero to fail the task
 * (pbl_fail gives it a message; without one the message is generic). */
typedef int (*pbl_process_fn)(const void *in, size_t len, pbl_buf *out);

/* Registers fn by name so a child can find it. File scope. */
typedef struct pbl_process_reg {
  const char *name;
  pbl_process_fn fn;
  struct pbl_process_reg *next;
} pbl_process_reg;
PBL_EXTERN int pbl_process_register(pbl_process_reg *reg);
#define PBL_PROCESS_FN(fn)                                                     \
  static pbl_process_reg pbl__reg_##fn = {#fn, fn, NULL};                      \
  __attribute__((constructor)) static void pbl__ctor_##fn(void) {              \
    (void)pbl_process_register(&pbl__reg_##fn);                                \
  }                                                                            \
  struct pbl__swallow_semicolon_##fn

/* First line of main(). In the parent it returns 0 at once; in a child
 * started as a worker it serves and exits. */
PBL_EXTERN int pbl_worker_main(int argc, char **argv);

/* Runs fn(in) in a new child process (this program, or opts->worker_path).
 * Thread: any. Returns 0, UV_EINVAL, UV_ENOMEM, PBL_ECLOSED,
 * PBL_ENOFUNC (fn not registered).
 * The first process task, command or process pool sets SIGPIPE to be
 * ignored if its action was the default, so that a write to a child that
 * died fails with EPIPE instead of killing the program; children start
 * with the default action again. */
PBL_EXTERN int pbl_process(pbl_loop_t *pl, pbl_process_fn fn, const void *in,
                           size_t len, const pbl_task_opts *opts,
                           pbl_task_t **task);

typedef struct {
  pbl_task_opts task; /* callback, timeout, name */
  const void *stdin_data;
  size_t stdin_len;
  const char *cwd;      /* NULL: inherit */
  char **env;           /* NULL: inherit */
  size_t capture_limit; /* bytes kept of stdout and of stderr; 0: 16 MiB */
} pbl_spawn_opts;

/* Runs a command, argv[0] looked up in PATH. Exit 0 is done; non-zero is
 * PBL_FAILED; killed by a signal we did not send is PBL_EXPIRED; one that
 * cannot start fails with libuv's code. Its stdout and stderr are read to
 * their end; but a process it left behind (a daemon, `sleep 9 &`) may keep
 * them open: after the command's exit they are read for at most the
 * task's kill_grace_ms (0: 1000 ms), then closed, and the task ends as
 * its exit says, with the output read by then. A timeout counts until the
 * exit. Thread: any. */
PBL_EXTERN int pbl_spawn(pbl_loop_t *pl, const char *const argv[],
                         const pbl_spawn_opts *o, pbl_task_t **task);
/* Captured output of a command (first capture_limit bytes). */
PBL_EXTERN const void *pbl_task_stdout(const pbl_task_t *t, size_t *len);
PBL_EXTERN const void *pbl_task_stderr(const pbl_task_t *t, size_t *len);
/* Bytes dropped past capture_limit, or past what memory allowed to keep:
 * what is kept is always the stream's first bytes. */
PBL_EXTERN uint64_t pbl_task_stdout_dropped(const pbl_task_t *t);
PBL_EXTERN uint64_t pbl_task_stderr_dropped(const pbl_task_t *t);

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

/* Where a process pool's workers run: a command that starts a command
 * elsewhere and forwards its stdin and stdout (ssh, srun, kubectl exec,
 * docker exec). The worker's command (worker_path, or this program's own
 * path, and a marker argument) is appended to argv, with no shell of
 * ours in between (ssh's remote shell does parse it: a path with spaces
 * or shell characters does not work through ssh), and must exist at that
 * path on the other side. The worker's channel is the launcher's stdin
 * and stdout; its stderr comes back as the launcher's stderr. */
typedef struct {
  const char *const *argv; /* NULL-terminated prefix, e.g. {"ssh", "-T",
                              "node7", NULL}, {"srun", "-N1", "-n1", "-u",
                              NULL} (-u: else Slurm holds output until a
                              newline, and frames have none),
                              {"kubectl", "exec", "-i", "pod", "--", NULL};
                              NULL: local workers, as without launchers */
  unsigned workers;        /* workers started through it; 0: 1 */
} pbl_launcher;

typedef struct {
  unsigned workers;   /* 0: number of CPUs */
  unsigned max_tasks; /* recycle a worker after this many tasks; 0: never */
  size_t queue_limit; /* tasks waiting for a worker; 0: unbounded;
                         past it scheduling gives UV_EAGAIN */
  pbl_thread_fn init; /* thread pools: run first in each new thread */
  void *init_arg;
  pbl_process_fn process_init; /* process pools: first in each new worker,
                                  on init_arg/init_len bytes */
  size_t init_len;
  const char *worker_path; /* process pools: NULL = this program */
  int64_t kill_grace_ms;   /* process pools: SIGTERM to SIGKILL; 0: 1000 */
  int64_t init_timeout_ms; /* process pools: longest process_init run
                              (0: none; <0: UV_EINVAL); past it the worker
                              is killed and the waiting tasks fail as for a
                              failing initializer */
  unsigned spare_workers;  /* process pools: extra started workers kept
                              idle, so a worker that dies, times out or is
                              recycled is replaced at once; 0: none */
  const pbl_launcher *launchers; /* process pools: where the workers run
                                    (copied); with launchers, `workers`
                                    must be 0 */
  size_t n_launchers;            /* 0: local workers only */
} pbl_pool_opts;

typedef struct {
  size_t workers, queued, running;
  uint64_t done, failed, cancelled, timed_out, expired, respawned;
  uint64_t wait_ns_total; /* time tasks waited in the queue, summed */
  uint64_t wait_ns_max;   /* the longest such wait */
} pbl_pool_stats_t;

/* Pools. A pool is bound to a loop; its tasks' callbacks run there. An
 * idle pool does not keep the loop alive; a closed or stopped one does
 * until it is ready to join. Closing the binding stops its pools; their
 * memory stays until pbl_pool_free().
 *
 * A pool of the library's own threads. Threads start on demand, up to
 * o->workers (0: uv_available_parallelism()), each running o->init first;
 * a pbl_fail() there fails every task waiting in the queue with its
 * message and PBL_EFAILED, and no thread starts again until a task
 * arrives. Thread: any (from another thread the loop must be running: the
 * pool binds to it there). Returns 0 and sets *out, UV_EINVAL (also for
 * process-pool options: a thread cannot be killed, so kill_grace_ms and
 * init_timeout_ms must be 0), UV_ENOMEM, PBL_ECLOSED. */
PBL_EXTERN int pbl_thread_pool_new(pbl_loop_t *pl, const pbl_pool_opts *o,
                                   pbl_pool_t **out);
/* A pool of persistent worker processes (this program, or
 * o->worker_path), each with a channel of its own; up to o->workers (0:
 * uv_available_parallelism()) start on demand and run o->process_init on
 * init_arg/init_len first, respawns included. A failing (or dying)
 * initializer, or one running past o->init_timeout_ms (its worker is
 * killed; "initializer timed out after N ms"), fails every task waiting
 * with its message and PBL_EFAILED; no worker starts again until a task
 * arrives. A worker that dies expires the task it ran (PBL_EEXPIRED: pid,
 * status, signal, words); the tasks sent to it behind that one, or that
 * never reached it, are requeued; it is replaced, with a backoff if new
 * workers keep dying at start. o->max_tasks retires a worker gracefully
 * after that many tasks; o->kill_grace_ms is the default grace of its
 * tasks' kills. Thread: any (from another thread the loop must be
 * running). Returns 0 and sets *out, UV_EINVAL (also for thread-pool
 * options), PBL_ENOFUNC (process_init not registered), UV_ENOMEM,
 * PBL_ECLOSED. */
PBL_EXTERN int pbl_process_pool_new(pbl_loop_t *pl, const pbl_pool_opts *o,
                                    pbl_pool_t **out);
/* Schedules fn(arg) on a thread pool. Thread: any, including the pool's
 * own tasks and callbacks; a worker can take the task before the loop
 * turns, and waits for it need no loop turn -- except for a task with a
 * timeout, whose end may need the loop's timer: on the loop thread a wait
 * for it is PBL_EDEADLK. A timeout or cancel of a running task ends it at
 * once and raises its pbl_cancelled() flag; the thread goes on until the
 * function returns. task may be NULL (fire and forget). Returns 0,
 * UV_EINVAL (not a thread pool, fn NULL, bad opts), UV_ENOMEM,
 * PBL_ECLOSED (closed or stopped), UV_EAGAIN (past queue_limit). */
PBL_EXTERN int pbl_pool_thread(pbl_pool_t *p, pbl_thread_fn fn, void *arg,
                               const pbl_task_opts *opts, pbl_task_t **task);
/* Schedules fn on in[0, len) (copied) on a process pool. A timeout counts
 * from the task's start on its worker; a timeout or cancel of a running
 * task ends it at once and kills its worker's process group (SIGTERM,
 * SIGKILL after the grace); the next task runs in a new worker. A task
 * cancelled while it waits on a worker behind another never runs: the
 * worker drops it -- unless the cancel reaches it as it starts the task
 * (within about 50 us): then the worker is killed. Waits for
 * it need the loop (on the loop thread: PBL_EDEADLK). opts->worker_path
 * must be NULL (the pool's workers run every task). Thread: any. Returns
 * 0, UV_EINVAL, PBL_ENOFUNC (fn not registered), UV_ENOMEM, PBL_ECLOSED,
 * UV_EAGAIN (past queue_limit). */
PBL_EXTERN int pbl_pool_process(pbl_pool_t *p, pbl_process_fn fn,
                                const void *in, size_t len,
                                const pbl_task_opts *opts, pbl_task_t **task);
/* Many inputs, sent in chunks of chunksize (0: UV_EINVAL); tasks[i] is
 * input i's task; a timeout applies per chunk: a chunk runs whole, in
 * order, on one worker, and its items are timed from the chunk's start.
 * An error fails only its item; a cancel cancels only its item. All
 * inputs are accepted or none (queue_limit counts inputs). tasks may be
 * NULL. n == 0 returns 0. Thread and returns: as pbl_pool_thread. */
PBL_EXTERN int pbl_pool_map_thread(pbl_pool_t *p, pbl_thread_fn fn,
                                   void *const *args, size_t n,
                                   size_t chunksize, const pbl_task_opts *opts,
                                   pbl_task_t **tasks);
/* As pbl_pool_map_thread, for a process pool: inputs[i] (copied) is
 * input i; a chunk goes to one worker in one write; a worker dying in
 * the middle of a chunk expires the input it ran and requeues the rest.
 * Returns as pbl_pool_process (UV_EINVAL also for an input with a length
 * and no data). */
PBL_EXTERN int pbl_pool_map_process(pbl_pool_t *p, pbl_process_fn fn,
                                    const pbl_buf *inputs, size_t n,
                                    size_t chunksize, const pbl_task_opts *opts,
                                    pbl_task_t **tasks);
/* No new tasks (PBL_ECLOSED); queued ones still run. Thread: any.
 * Returns 0 (also when already closed or stopped) or UV_EINVAL. */
PBL_EXTERN int pbl_pool_close(pbl_pool_t *p);
/* No new tasks, and every task not yet ended ends cancelled at once:
 * queued ones, and running ones as on pbl_task_cancel() (threads flagged,
 * processes killed); callbacks on later turns. No task stays pending.
 * Thread: any, including the pool's own tasks and callbacks (it never
 * waits). Returns 0 or UV_EINVAL. */
PBL_EXTERN int pbl_pool_stop(pbl_pool_t *p);
/* Waits until a closed or stopped pool has no task left (every callback
 * delivered) and its workers are gone (threads joined, processes
 * reaped); timeout_ms as for pbl_task_wait. Thread: any (callbacks are
 * delivered by the loop: from another thread it must be running); on the
 * loop thread while callbacks are still owed, or on one of the pool's own
 * threads, PBL_EDEADLK at once, but a zero timeout only looks (0 or
 * UV_ETIMEDOUT). After uv_run() returns, a join on the loop thread
 * returns 0 at once. (A callback set with pbl_task_on_done on a task that
 * had already ended and been delivered is a late one, run on a later
 * turn as for any task: a join does not wait for it.) Returns 0,
 * UV_ETIMEDOUT, PBL_EDEADLK, UV_EINVAL (a running pool). */
PBL_EXTERN int pbl_pool_join(pbl_pool_t *p, int64_t timeout_ms);
/* A snapshot. Counts tasks (map inputs), not chunks; a task is counted in
 * its end once the pool is done with it (its thread returned); running
 * counts the tasks workers hold. Thread: any. Returns 0 or UV_EINVAL. */
PBL_EXTERN int pbl_pool_stats(pbl_pool_t *p, pbl_pool_stats_t *out);
/* Frees the pool. One not yet joined is stopped first and finishes on
 * later loop turns, keeping the loop alive until its threads are joined
 * and its handles closed. Tasks still referenced stay readable. Thread:
 * any. p must not be used afterwards. */
PBL_EXTERN void pbl_pool_free(pbl_pool_t *p);

#ifdef __cplusplus
}
#endif
#endif /* PEBBLE_H */
