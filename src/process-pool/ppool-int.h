/* Process pools: persistent worker processes behind the pool front end
 * (pool.h). Never installed.
 *
 * Design notes.
 *
 * Everything a worker does happens on the loop thread: spawning, writing
 * calls, reading answers, reaping. Each worker has a channel of its own
 * (a socketpair on its fd 3, wire.h), so no pipe is shared and no lock is
 * taken across processes: the parent knows at send time which worker has
 * which task, and a dead worker can only take its own tasks with it.
 *
 * Dispatch (ppool-dispatch.c) runs after every drain of the pool and after
 * every read of answers. It hands whole jobs (a task, or a map chunk) to
 * ready workers, each batch in one write: while a worker runs one job the
 * next is already in its socket, so it never waits for the parent (a
 * sleeping worker costs 30-70 us to wake on these machines). How many
 * jobs a worker gets in flight adapts to how long jobs take (a moving
 * average): about PBL__PPOOL_BUDGET_NS of work, at least 2 jobs, at most
 * PBL__PPOOL_DEPTH. Trivial tasks thus go many per write and many answers
 * per read, while long ones never wait long behind another on a busy
 * worker when an idle one could run them. Tags (task ids) match answers
 * to calls; a worker answers in order, so the answer must be for the head
 * of its oldest job. Workers start on demand, up to `workers`, as if
 * each took only the next job: a job that would wait behind a busy
 * worker's gets a new worker while slots are free, and busy workers leave
 * in the queue a job for each worker about to be ready.
 *
 * A job starts when it reaches the head of its worker: its queue wait is
 * counted then and its timed items are armed with that start (a timeout
 * per chunk). An item starts (PENDING -> RUNNING, pid set) when the worker
 * reaches it.
 *
 * Held answers. A local worker may hold the answers of a map chunk's
 * items (all but the last, flagged BATCH; not with a timeout) and write
 * them together; it holds them in an answer journal shared with us
 * (process/answer-journal.h), so that at its death, after draining its
 * channel, we replay them (on_exit) before deciding what it was running.
 *
 * Ends. A worker that dies expires the item it was running -- if that
 * item's call reached it and was not left unread there (ppool-worker-write.c);
 * one that never got there, like everything behind it, is requeued at the
 * head of the run queue (pbl__pool_requeue), so a worker killed from
 * outside while idle takes no task with it, not even one written to it
 * between the kill and its end. (A worker that never answered anything
 * still expires its head: a program that is no worker must not send a
 * task round for ever.) A cancel or timeout of a running item kills the
 * worker's process group (SIGTERM, SIGKILL after the grace) at once, via
 * the task's abort.
 * An item that ends while queued on a worker behind another is sent a
 * CANCEL: the worker drops it unstarted and says so (SKIPPED) before it
 * answers the call before it, so when that answer comes the parent knows
 * whether the item was dropped (it is passed over) or started anyway (the
 * CANCEL came too late: the worker runs an unwanted task and is killed,
 * at the end of that read unless the item's answer came in it).
 * A killed worker is detached at once: its items are finished or
 * requeued, its slot is free for a replacement, and it is only reaped
 * afterwards.
 *
 * Workers and slots. A worker holds one of `workers` slots while starting,
 * ready, or retiring with answers owed. It gives the slot back when it
 * dies, is killed, fails its initializer or retires; the next worker
 * started in a slot given back counts as a respawn. max_tasks: a worker
 * that has been sent its budget is retired: the parent shuts its side of
 * the channel, and the worker exits 0 once it answered the calls in its
 * socket. The initializer is the first call to every new worker; no job
 * goes to a worker before it answered.
 *
 * Handshake. A worker's first frame is a HELLO (its pid and host): until
 * it came the worker is HELLO, counts as starting, and gets nothing, not
 * even its initializer's call; so no task's timeout counts a worker's
 * start. Bytes before it that are no frame (a remote shell's startup
 * files printing to stdout) fail the start, with the bytes quoted. A
 * local worker that dies before its HELLO still takes the oldest queued
 * task with it (a program that is no worker must not send a task round
 * for ever); a launched one does not: its launcher failed (an sshd's
 * MaxStartups resets logins past 10 at once), and it is tried again, with
 * the backoff, PBL__PPOOL_LAUNCH_TRIES times in a row before the queued
 * tasks fail with the launcher's words.
 *
 * Launchers (ppool-launch.c). Each worker starts in a place: a launcher's
 * argv, or here (argv NULL; a pool without launchers has one such place
 * for all its workers). A place holds at most its `workers` slots, and a
 * launcher at most PBL__PPOOL_LAUNCH_MAX of its workers in HELLO at once.
 * A launched worker's kill sends BYE, closes the channel, then SIGTERM to
 * the launcher's group (which forwards it, as srun does, or dies, as ssh
 * does: the worker sees its channel end) and SIGKILL after the grace; the
 * worker ends its own group (process/worker-chan.h). Its retire is a BYE,
 * the channel kept open (the channel's end tells a launched worker that
 * its pool is gone). Heartbeats: a PING each way every
 * PBL__WORKER_HB_MS; a launched worker from which nothing came for
 * PBL__WORKER_HB_DEAD of them is lost: its task expires with words that
 * name its host and launcher, and it is killed.
 *
 * Spare workers (spare_workers): once the pool is in use, that many
 * started workers beyond those running or about to run the queue, in
 * slots of their own (target + spare slots), never filled while
 * `workers` others run jobs: a worker that dies, is killed or retires is
 * replaced by a spare at the next dispatch, and the spare's replacement
 * starts behind it (a respawn, with the backoff).
 *
 * Spin guards. A worker that dies before it answered anything makes the
 * next start wait (10 ms, doubling, at most 1 s) from the second such
 * death in a row; a failing initializer (or one that runs past
 * init_timeout_ms: its worker is killed), or a worker that cannot be
 * started when none runs, fails the queued tasks and blocks starts until
 * a new task arrives -- or a task comes back to the queue from a worker
 * that died or was killed (it never ran: it counts as arriving).
 *
 * Liveness. Idle workers' handles are unref'd: the front end's async keeps
 * the loop alive while tasks are live. A dying or retiring worker is
 * ref'd until reaped, so uv_run() does not return with a child left.
 *
 * Locks. The front end's "lock" guards the workers list (insert, remove)
 * and adding jobs to a worker; its "done" lock guards taking items off a
 * worker; pbl_pool_stop() (cancel_running) walks the workers' jobs holding
 * both, from any thread. Everything else here is loop-thread only.
 */
#ifndef PBL_PPOOL_H
#define PBL_PPOOL_H

#include "pool/pool.h"
#include "process/answer-journal.h"
#include "process/process.h"

#define PBL__PPOOL_DEPTH 64         /* most jobs in flight per worker */
#define PBL__PPOOL_MIN_DEPTH 2      /* fewest: one running, one on its way */
#define PBL__PPOOL_BUDGET_NS 200000 /* work in flight per worker */
/* The initializer's call; task ids start at 1. */
#define PBL__PPOOL_INIT_TAG 0
/* Launched workers: starts in HELLO at once per launcher (sshd's
 * MaxStartups drops logins from 10 at once on), failed starts in a row
 * before the queued tasks fail, and the longest wait for a HELLO. */
#define PBL__PPOOL_LAUNCH_MAX 8
#define PBL__PPOOL_LAUNCH_TRIES 6
#define PBL__PPOOL_HELLO_MS 60000

/* A place workers start (ppool-launch.c). */
typedef struct pbl__plaunch {
  char **argv;          /* a launcher's, copied, NULL-terminated; NULL: here */
  unsigned workers;     /* slots it may hold */
  unsigned slots;       /* loop: held by its workers */
  unsigned hello;       /* loop: its workers not yet announced */
  unsigned start_fails; /* loop: launched starts in a row that died unheard */
} pbl__plaunch;

typedef struct pbl__ppool pbl__ppool;
typedef struct pbl__pwrite pbl__pwrite;

/* How a worker reports to the pool's dispatch above it (ppool-dispatch.c),
 * as a child reports to its owner (child.h): the worker files below call
 * up only through these. Loop thread. */
typedef struct pbl__pworker_events {
  /* Something the dispatch acts on changed: a worker became ready, took
   * answers, died, was killed or gave its slot back; jobs came back to the
   * queue. */
  void (*on_change)(pbl__ppool *pp);
  /* A job took ns on its worker, from its start to its last answer. */
  void (*on_job_done)(pbl__ppool *pp, uint64_t ns);
} pbl__pworker_events;

typedef enum {
  PBL__PW_HELLO,    /* started, not yet announced: gets nothing */
  PBL__PW_STARTING, /* the initializer's call is out */
  PBL__PW_READY,    /* takes jobs */
  PBL__PW_RETIRING, /* its channel is shut: answers what it has, exits */
  PBL__PW_DYING     /* killed, dead or closing: owes nothing */
} pbl__pw_state;

typedef struct pbl__pworker {
  pbl__ppool *pp;
  const pbl__pworker_events *ev; /* the dispatch's */
  pbl__child *child;             /* loop; NULL once every handle closed */
  QUEUE link;                    /* pp->workers: insert and remove under lock */
  pbl__wire_reader rd;           /* loop */
  pbl__journal journal;          /* loop: local workers' held answers */
  pbl__pool_item *unwanted;      /* loop: its head, ended, not dropped:
                                    killed at the read's end unless its
                                    answer came in that read */
  /* Jobs in flight, oldest first: jobs[(first + i) % DEPTH] for i <
   * njobs, each a chain of items (next) not yet answered. Added under
   * lock, taken off under done. */
  pbl__pool_item *jobs[PBL__PPOOL_DEPTH];
  unsigned first, njobs;
  unsigned sent;         /* loop: tasks sent, for max_tasks */
  uint64_t job_start_ns; /* loop: when its oldest job started */
  int pid;               /* the child we started (a launcher's, if any) */
  int worker_pid;        /* loop: the worker's own, from its HELLO */
  char *host;            /* loop: from its HELLO, or NULL */
  pbl__plaunch *launch;  /* where it started */
  unsigned magic_seen;   /* loop: HELLO: bytes of the wire's magic seen */
  uint64_t heard_ns;     /* loop: when bytes last came: a launched one's
                            silence, and the time of answers read */
  uint64_t spawn_ns;     /* loop: when it was started */
  bool hb_timer_open;    /* loop: hb_timer is initialised, not closed */
  bool hello_owed;       /* loop: counted in launch->hello */
  uv_timer_t hb_timer;   /* loop: launched: heartbeats, HELLO's deadline */
  uint8_t state;         /* loop: pbl__pw_state */
  bool slot;             /* loop: holds a slot (lock to change the count) */
  bool answered;         /* loop: it answered once: it started fine */
  bool reading;          /* loop */
  bool init_timer_open;  /* loop: init_timer is initialised, not closed */
  bool wr_check_open;    /* loop: wr_check is initialised, not closed */
  bool wr_broken;        /* loop: a write failed: wr_done is final */
  bool wr_nomem;         /* loop: killed for want of memory to write to it */
  bool unread;           /* loop: it closed its channel with bytes we sent
                            still unread (ECONNRESET): at least the last */
  unsigned own;          /* loop: handles of w's own not yet closed */
  unsigned wr_reqs;      /* loop: uv_writes queued, not yet called back */
  uint64_t wr_queued;    /* loop: bytes handed to the channel, ever */
  uint64_t wr_done;      /* loop: of those, known in the worker's socket */
  pbl__pwrite *spare;    /* loop: a finished write kept for the next */
  uv_timer_t init_timer; /* loop: init_timeout_ms while STARTING */
  uv_check_t wr_check;   /* loop: reads wr_done while writes are queued */
} pbl__pworker;

struct pbl__ppool {
  pbl_pool_t base; /* first: a process pool is a pbl_pool_t */
  unsigned target; /* workers: at most this many run jobs */
  unsigned spare;  /* spare_workers: started beyond them, kept idle */
  unsigned max_tasks;
  uint64_t grace_ms;
  uint64_t init_timeout_ms; /* 0: none */
  char *worker_path;        /* NULL: this program */
  pbl__plaunch *launch;     /* where workers start; at least one */
  size_t nlaunch;
  const char *init_name; /* the initializer's registry name, or NULL */
  void *init_in;
  size_t init_len;
  /* lock */
  unsigned slots;      /* workers holding a slot */
  unsigned vacated;    /* slots given back: the next starts are respawns */
  bool starts_blocked; /* until a task arrives: no worker starts */
  QUEUE workers;       /* every worker not yet closed */
  /* loop */
  unsigned early_deaths;  /* in a row: died before answering anything */
  uint64_t next_start_ns; /* no start before (backoff) */
  uv_timer_t backoff;     /* open while a delayed start waits; counted in
                             base.unjoined until closed */
  bool backoff_open;
  pbl__pool_waits waits; /* queue waits not yet published */
  uint64_t job_ns;       /* moving average of a job's time on its worker */
  bool dispatching, redispatch; /* dispatch is running; run it again */
};

/* Every worker of pp not yet closed; q is the link. */
#define PBL__PPOOL_EACH(q, pp)                                                 \
  for ((q) = QUEUE_HEAD(&(pp)->workers); (q) != &(pp)->workers; (q) = (q)->next)

/* A process pool task. */
typedef struct pbl__pitem {
  pbl__pool_item item; /* first: a pool item and a task */
  pbl__proc_info proc;
  const char *fn_name; /* the registry's */
  void *in;            /* the copied input, until destroyed */
  size_t in_len;
  pbl__pworker *w;    /* loop: the worker it is in flight on, or NULL */
  uint64_t frame_end; /* loop: where its call ends in w's channel */
  bool cancel_sent;   /* loop: w was told to drop it (CANCEL) */
  bool skipped;       /* loop: w dropped it: it never ran */
} pbl__pitem;

/* ppool-dispatch.c, loop thread: hands queued jobs to workers and starts
 * workers as needed (workers report through pbl__pworker_events). */
void pbl__ppool_dispatch(pbl__ppool *pp);

/* The grace of an item's kill: its own, else the pool's. */
static inline uint64_t pbl__pworker_grace(const pbl__ppool *pp,
                                          const pbl_task_t *t) {
  return t->x != NULL && t->x->kill_grace_ms > 0 ? (uint64_t)t->x->kill_grace_ms
                                                 : pp->grace_ms;
}

/* ppool-worker-write.c, loop thread. Writes jobs[0..n) (already in w's jobs) as
 * one batch; the initializer's call; a CANCEL of pi (queued on w, not its
 * head). A write that fails puts w down. */
void pbl__pworker_send(pbl__pworker *w, pbl__pool_item **jobs, unsigned n);
void pbl__pworker_send_init(pbl__pworker *w);
void pbl__pworker_send_cancel(pbl__pworker *w, pbl__pitem *pi);
/* At w's death: true if w may have started pi -- its call reached w's
 * socket whole, and w did not leave it unread there. */
bool pbl__pworker_may_have_run(pbl__pworker *w, const pbl__pitem *pi);
void pbl__pwrite_free(pbl__pwrite *wr);
/* w's handle for the above, opened at its start, closed with it. */
void pbl__pworker_write_init(pbl__pworker *w);
void pbl__pworker_write_over(pbl__pworker *w);

/* A frame without payload (PING, BYE) to w, after what is queued. */
void pbl__pworker_send_bare(pbl__pworker *w, uint8_t type);

/* ppool-worker.c, loop thread. */
/* Starts a worker in place l that reports through ev; it holds a slot
 * already counted by the caller (in the pool and in l). On error gives
 * the slot back; returns 0 or libuv's error. */
int pbl__pworker_start(pbl__ppool *pp, pbl__plaunch *l,
                       const pbl__pworker_events *ev);
/* The head of w's oldest job, or NULL. */
pbl__pool_item *pbl__pworker_head(const pbl__pworker *w);
/* A job reached the head of w: count its wait, arm its timers, start its
 * first item. */
void pbl__pworker_job_starts(pbl__pworker *w, pbl__pool_item *job);
/* Kills w's process group (SIGTERM, SIGKILL after grace_ms; 0: SIGKILL
 * now) and detaches it: its items are finished or requeued, its slot is
 * free. */
void pbl__pworker_kill(pbl__pworker *w, uint64_t grace_ms);
/* No more jobs for w: it exits once it answered what it has. */
void pbl__pworker_retire(pbl__pworker *w);
/* w is past its initializer (answered, dead or killed): no timeout. */
void pbl__pworker_init_over(pbl__pworker *w);
/* Closes h, a handle of w's own (counted in w->own); w is freed once
 * these and its child's are closed. */
void pbl__pworker_close_own(pbl__pworker *w, uv_handle_t *h);
/* w gives its slot back (once). */
void pbl__pworker_vacate(pbl__pworker *w);
/* ppool-launch.c, loop thread. */
/* Copies o's launchers into pp (one place for all workers without).
 * Any thread, at the pool's making. Returns 0, UV_EINVAL or UV_ENOMEM. */
int pbl__ppool_launch_init(pbl__ppool *pp, const pbl_pool_opts *o);
void pbl__ppool_launch_free(pbl__ppool *pp);
/* lock: a place with a free slot and room for a start, or NULL; takes
 * the slot in it. */
pbl__plaunch *pbl__ppool_launch_pick(pbl__ppool *pp);
/* w left HELLO (announced, dead or killed): the launcher's count. */
void pbl__pworker_hello_over(pbl__pworker *w);
/* Launched workers: heartbeats and HELLO's deadline, from w's start. */
void pbl__pworker_watch(pbl__pworker *w);
void pbl__pworker_watch_over(pbl__pworker *w);
/* "worker 12 on node7 (through ssh)" into buf. */
const char *pbl__pworker_name(const pbl__pworker *w, char *buf, size_t len);
/* A launched worker died before its HELLO: tried again, or after
 * PBL__PPOOL_LAUNCH_TRIES in a row the queued tasks fail. */
void pbl__pworker_launch_failed(pbl__pworker *w, int64_t status, int sig);

/* ppool-worker-end.c. w died on its own (not killed): the item it ran expires
 * (or, while starting, its initializer failed), the rest is requeued. */
void pbl__pworker_died(pbl__pworker *w, int64_t status, int sig);
/* The initializer failed (or never finished): the tasks waiting fail
 * with its words, and no worker starts until a task arrives. */
void pbl__pworker_init_failed(pbl__pworker *w, int err, int code,
                              const char *msg);

/* The pool is done with `it` on its worker: the dispatch hold goes. */
static inline void pbl__pworker_leave(pbl__pool_item *it) {
  ((pbl__pitem *)it)->w = NULL;
  pbl__task_drop(&it->base);
}

/* done: hands items to the pool and wakes its drain (items are live: the
 * async is not closing). */
static inline void pbl__ppool_finish_locked(pbl_pool_t *p, pbl__pool_item *head,
                                            size_t n) {
  if (pbl__pool_finish(p, head, n))
    pbl__pool_wake(p);
}

#endif /* PBL_PPOOL_H */
