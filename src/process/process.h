/* Internal API shared by the process kinds: the function registry, the
 * worker's command line, and the words for how a child ended. */
#ifndef PBL_PROCESS_H
#define PBL_PROCESS_H

#include "child.h"
#include "core/internal.h"
#include "wire.h"

/* registry.c. Thread: any. The name of a registered function (static
 * storage), or NULL. */
const char *pbl__registry_name(pbl_process_fn fn);
/* The function registered under name, or NULL. */
pbl_process_fn pbl__registry_find(const char *name);

/* A worker is started as `<program> --pbl-worker=<version>,<parent pid>`
 * with its channel on fd 3 -- a pool's local worker with `,0,4` added
 * when its answer journal is its fd 4 (answer-journal.h); through a
 * launcher as `<launcher argv...>
 * <program> --pbl-worker=<version>,0,<kill grace ms>` with its channel on
 * its stdin and stdout (worker-chan.h). The marker is on the command line
 * only, so nothing of it is inherited by the processes a task starts. */
#define PBL__WORKER_ARG "--pbl-worker="
#define PBL__WORKER_FD 3
/* Exit codes of a worker that gives up (sysexits.h values). */
#define PBL__WORKER_EXIT_PROTO 76 /* EX_PROTOCOL: the parent sent garbage */
#define PBL__WORKER_EXIT_SETUP 71 /* EX_OSERR: no channel, no memory */

/* worker.c: exits if this process was started as a worker but its main()
 * skipped pbl_worker_main() (it would start workers without end). */
void pbl__worker_guard(void);

/* Default grace between SIGTERM and SIGKILL. */
#define PBL__KILL_GRACE_MS 1000

/* The grace of task t in ms. */
static inline uint64_t pbl__kill_grace_ms(const pbl_task_t *t) {
  return t->x != NULL && t->x->kill_grace_ms > 0 ? (uint64_t)t->x->kill_grace_ms
                                                 : PBL__KILL_GRACE_MS;
}

/* worker-spawn.c: loop thread. Starts a worker (worker_path, or this
 * program when NULL) with its channel on fd 3; as pbl__child_spawn. */
int pbl__worker_spawn(pbl_loop_t *pl, const char *worker_path,
                      pbl__child_exit_cb on_exit,
                      pbl__child_closed_cb on_closed, void *data,
                      pbl__child **out);
/* The same through a launcher: launcher[0..] (NULL-terminated, argv[0]
 * looked up in PATH), then the worker's command; its channel is still
 * pbl__child_stream(c, PBL__WORKER_FD) on our side. grace_ms is the
 * worker's own grace when it ends itself. NULL launcher: as above, and
 * journal_fd (>= 0) is the worker's answer journal, dup'd to its fd 4
 * (the caller closes it); -1: none. */
int pbl__worker_spawn_via(pbl_loop_t *pl, const char *worker_path,
                          char *const *launcher, uint64_t grace_ms,
                          int journal_fd, pbl__child_exit_cb on_exit,
                          pbl__child_closed_cb on_closed, void *data,
                          pbl__child **out);

/* channel.c, loop thread: after a worker exited, feeds rd what it
 * wrote before it died, without blocking (a process it started may still
 * hold the channel open, so its end is not awaited). Sets *unread (if not
 * NULL) when the channel says the worker closed it with bytes we sent
 * still unread (ECONNRESET); leaves it alone otherwise. Returns 0, or the
 * reader's error. */
int pbl__channel_drain(uv_stream_t *ch, pbl__wire_reader *rd, bool *unread);
/* channel.c, loop thread: if *reading, stops reading c's channel
 * (when it is still open) and clears *reading. */
void pbl__channel_stop(pbl__child *c, bool *reading);
/* Words on how worker `pid` ended with a call unanswered, malloc'd:
 * "worker 12 exited with status 0 without sending a result", else as
 * pbl__exit_words. NULL if out of memory. */
char *pbl__worker_exit_words(int pid, int64_t status, int sig);

/* exit-words.c: the message hook of every process kind: an EXPIRED end's
 * words (proc->words), else NULL (pbl_strerror). */
const char *pbl__proc_message(const pbl_task_t *t);
/* exit-words.c: "SIGSEGV" for 11; "SIG99" written to buf otherwise. */
const char *pbl__signal_name(int sig, char *buf, size_t len);
/* Words on how a child ended, malloc'd: "<who> killed by signal 11
 * (SIGSEGV)", "<who> exited with status 3". NULL if out of memory. */
char *pbl__exit_words(const char *who, int64_t status, int sig);

#endif /* PBL_PROCESS_H */
