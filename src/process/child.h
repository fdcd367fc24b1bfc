/* A child process and its handles: spawn with the pipes asked for, the
 * SIGTERM -> SIGKILL escalation on its process group, reaping, and the
 * close of every handle. The only caller of pbl__start() (process-start.h),
 * the one place the library starts a process; reaper.h reaps it.
 *
 * Lifetime. pbl__child_spawn() allocates the child; it frees itself once
 * every handle is closed and then calls on_closed. Its owner calls
 * pbl__child_close() when it no longer reads or writes: the pipes close at
 * once, the process handle after the exit was reaped (closing it earlier
 * would leave a zombie), the grace timer once it is no longer needed.
 * Everything runs on the loop thread.
 *
 * Process group. Every child is started detached (setsid): its pid is its
 * group, so a kill reaches what it started too. A kill sends SIGTERM to
 * the group and SIGKILL after the grace; if the child exits first and the
 * group still has members, they get the rest of the grace, then SIGKILL.
 */
#ifndef PBL_CHILD_H
#define PBL_CHILD_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "reaper.h"

typedef struct pbl__child pbl__child;

/* The exit was reaped. status and sig as uv_exit_cb gives them. */
typedef void (*pbl__child_exit_cb)(pbl__child *c, int64_t status, int sig);
/* Every handle is closed; c is gone after this returns. */
typedef void (*pbl__child_closed_cb)(void *data);

enum {
  PBL__CHILD_CHANNEL = 1 << 0, /* fd 3: a socketpair, read and write */
  PBL__CHILD_STDIN = 1 << 1,   /* fd 0: a pipe we write (else /dev/null) */
  PBL__CHILD_CAPTURE = 1 << 2, /* fd 1, 2: pipes we read (else inherited) */
  /* A launcher's channel: one socketpair on its fds 0 and 1, our end
   * where CHANNEL's is (pbl__child_stream(c, 3)). Not with the above. */
  PBL__CHILD_STDIO_CHANNEL = 1 << 3,
  /* With CHANNEL: fd 4 is a dup of opts.fd4 (a pool worker's answer
   * journal), which stays the caller's to close. */
  PBL__CHILD_FD4 = 1 << 4
};

typedef struct pbl__child_opts {
  const char *file; /* looked up in PATH if it has no slash */
  char **args;      /* args[0] first, NULL-terminated */
  char **env;       /* NULL: inherit */
  const char *cwd;  /* NULL: inherit */
  unsigned flags;   /* PBL__CHILD_* */
  int fd4;          /* PBL__CHILD_FD4: ours, for the child's fd 4 */
  pbl__child_exit_cb on_exit;
  pbl__child_closed_cb on_closed;
  void *data; /* for the callbacks: pbl__child_data() */
} pbl__child_opts;

/* Loop thread. Starts a child; *reaper is the binding's (pl->reaper).
 * Returns 0 and sets *out; or an error: then *out is NULL if nothing was
 * allocated (UV_ENOMEM), else the child is already closing and on_closed
 * follows, with no on_exit. */
int pbl__child_spawn(uv_loop_t *loop, pbl__reaper **reaper,
                     const pbl__child_opts *o, pbl__child **out);
void *pbl__child_data(const pbl__child *c);
int pbl__child_pid(const pbl__child *c);
/* The pipe on the child's fd 0..3, or NULL if it has none (or closed). */
uv_stream_t *pbl__child_stream(pbl__child *c, int fd);
/* Closes one pipe early (e.g. stdin once written). */
void pbl__child_close_stream(pbl__child *c, int fd);
/* SIGTERM to the group, SIGKILL after grace_ms; grace_ms 0: SIGKILL now.
 * Does nothing once the child exited or a kill is under way (a
 * later SIGKILL-now still cuts the grace short). */
void pbl__child_kill(pbl__child *c, uint64_t grace_ms);
/* The child is done and should exit on its own: if it has not within
 * delay_ms, kill it as pbl__child_kill(c, grace_ms) does. A kill or the
 * exit cancels the wait. */
void pbl__child_expect_exit(pbl__child *c, uint64_t delay_ms,
                            uint64_t grace_ms);
bool pbl__child_exited(const pbl__child *c);
/* Whether the child (until reaped) and its pipes keep the loop alive (they
 * do from spawn on). A pool's idle workers do not; its dying ones do, until
 * reaped. */
void pbl__child_ref(pbl__child *c, bool ref);

/* The owner is done with the child; see "Lifetime". Idempotent. */
void pbl__child_close(pbl__child *c);

/* Ignores SIGPIPE once for the whole program if it has its default
 * action, so a write to a dead child fails with EPIPE instead of killing
 * the parent. Thread: any. */
void pbl__ignore_sigpipe(void);

#endif /* PBL_CHILD_H */
