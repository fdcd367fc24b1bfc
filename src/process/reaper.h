/* Reaping the children the library starts, on the loop thread.
 *
 * libuv reaps only the pids that uv_spawn started (waitpid(pid), one pid
 * at a time), so the children of process-start.c need a watcher of their
 * own: a uv_signal_t on SIGCHLD that, on each signal, asks each of our
 * children in turn with waitpid(pid, WNOHANG). Never waitpid(-1): the
 * program's own children, uv_spawn's or not, are left to their owners.
 * libuv lets any number of watchers share a signal, so the program's own
 * SIGCHLD watchers and uv_spawn keep working beside this one.
 *
 * A reaper serves one binding (its slot in pbl_loop_t). It opens with the
 * first child and closes itself when the last one was reaped; its signal
 * handle keeps the loop alive while a child that asked for it (ref) runs,
 * as a uv_process_t would. Everything here runs on the loop thread.
 */
#ifndef PBL_REAPER_H
#define PBL_REAPER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "core/queue.h"

typedef struct pbl__reaper pbl__reaper;
typedef struct pbl__reaped pbl__reaped;

/* The child exited: status and sig as uv_exit_cb gives them. r is out of
 * the reaper when this runs. */
typedef void (*pbl__reaped_cb)(pbl__reaped *r, int64_t status, int sig);

/* One child, embedded in whoever owns it. */
struct pbl__reaped {
  QUEUE link;          /* in the reaper's list */
  pbl__reaper *reaper; /* NULL once out */
  int pid;             /* 0 until started */
  bool ref;            /* keeps the loop alive */
  pbl__reaped_cb on_exit;
};

/* Watches for r's exit from before it starts (a child may exit before
 * its pid is known): call before the start, then pbl__reaper_started()
 * or, if the start failed, pbl__reaper_remove(). *slot is the binding's
 * reaper, opened here if NULL. r->ref starts true. Returns 0, UV_ENOMEM
 * or uv_signal_start()'s error. */
int pbl__reaper_add(pbl__reaper **slot, uv_loop_t *loop, pbl__reaped *r,
                    pbl__reaped_cb on_exit);
void pbl__reaper_started(pbl__reaped *r, int pid);
/* Takes r out without reaping it (a start that failed). Idempotent. */
void pbl__reaper_remove(pbl__reaped *r);
/* Whether r keeps the loop alive until it is reaped. */
void pbl__reaper_ref(pbl__reaped *r, bool ref);

#endif /* PBL_REAPER_H */
