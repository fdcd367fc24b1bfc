/* Chaos faults: cancels from another thread, workers killed from
 * outside, references released early, busy pools retired. */
#include "chaos-ops.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- faults ---- */

void chaos_pool_note_kill(chaos_pool *cp, chaos_span span) {
  uv_mutex_lock(&chaos.lock);
  if (cp->n_kills == cp->cap_kills) {
    cp->cap_kills = cp->cap_kills ? 2 * cp->cap_kills : 8;
    cp->kills = realloc(cp->kills, cp->cap_kills * sizeof(*cp->kills));
    if (cp->kills == NULL)
      abort();
  }
  cp->kills[cp->n_kills++] = span;
  uv_mutex_unlock(&chaos.lock);
}

unsigned chaos_pool_kill_allows(const chaos_record *rec) {
  const chaos_pool *cp = rec->pool;
  unsigned ok = 0;
  for (size_t i = 0; cp != NULL && i < cp->n_kills; i++) {
    const chaos_span *k = &cp->kills[i];
    if (k->start > rec->end_ns)
      continue; /* rec had ended: not its doing */
    /* A stopped worker holds up what it runs and what waits for it: any
     * task of the pool alive meanwhile may time out. */
    if (rec->submit_ns <= k->end)
      ok |= ALLOW(PBL_TIMED_OUT);
    /* The worker's death expires the one task it ran -- maybe one
     * written to it after kill() returned, as the worker dies only once
     * the kernel runs it again (how long after is the machine's, so no
     * time window would do). That task carries the worker's pid and the
     * signal it died of; a death the library caused does not match. */
    if (rec->pid == k->pid && (rec->term_signal == k->sig ||
                               (k->shell_status && rec->term_signal == 0 &&
                                rec->exit_status == 128 + k->sig)))
      ok |= ALLOW(PBL_EXPIRED);
  }
  return ok;
}

/* A random in-flight task we hold, with a reference for the caller. */
static chaos_record *pick_held(chaos_rng *r, bool process_only,
                               pbl_task_t **t) {
  chaos_record *pick = NULL;
  uv_mutex_lock(&chaos.lock);
  if (chaos.n_in_flight > 0) {
    chaos_record *rec = chaos.in_flight[rng_below(r, chaos.n_in_flight)];
    if (rec != NULL && rec->task != NULL &&
        (!process_only || rec->kind == K_PROCESS ||
         rec->kind == K_POOL_PROCESS)) {
      pick = rec;
      *t = pbl_task_retain(rec->task);
    }
  }
  uv_mutex_unlock(&chaos.lock);
  return pick;
}

/* /proc/pid/stat's ppid, -1 if gone. */
static long parent_of(long pid) {
  char path[64], line[512];
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  long ppid = -1;
  char state;
  if (fgets(line, sizeof(line), fp) != NULL) {
    char *end = strrchr(line, ')');
    if (end == NULL || sscanf(end + 1, " %c %ld", &state, &ppid) != 2)
      ppid = -1;
  }
  fclose(fp);
  return ppid;
}

static void fault_kill(chaos_rng *r, chaos_fault how) {
  pbl_task_t *t;
  chaos_record *rec = pick_held(r, true, &t);
  if (rec == NULL)
    return;
  int pid = pbl_task_pid(t);
  if (pid > 0 && pbl_task_state_of(t) == PBL_RUNNING) {
    unsigned hurt = ALLOW(PBL_EXPIRED) | ALLOW(PBL_TIMED_OUT);
    if (rec->pool == NULL)
      atomic_fetch_or(&rec->allowed, hurt);
    atomic_fetch_add(&chaos.faults[how], 1);
    chaos_span span = {uv_hrtime(), 0, pid,
                       how == F_SIGTERM ? SIGTERM : SIGKILL, false};
    /* A remote worker under a launcher shell that stays: the pool sees
     * the shell exit with the worker's status. */
    span.shell_status = rec->pool != NULL && rec->pool->remote &&
                        parent_of(pid) != (long)getpid();
    if (how == F_SIGKILL) {
      kill(pid, SIGKILL);
    } else if (how == F_SIGTERM) {
      kill(pid, SIGTERM);
    } else {
      kill(pid, SIGSTOP);
      uv_sleep((unsigned)rng_below(r, 50)); /* stopped a while, then killed */
      kill(pid, SIGKILL);
    }
    span.end = uv_hrtime();
    if (rec->pool != NULL)
      chaos_pool_note_kill(rec->pool, span);
  }
  pbl_task_release(t);
}

/* The launcher a remote worker started through, killed: the worker is
 * no child of ours, and must end itself (its watcher). A launcher that
 * exec'd the worker is the worker. */
static void fault_launcher(chaos_rng *r) {
  pbl_task_t *t = NULL;
  chaos_record *rec = NULL;
  uv_mutex_lock(&chaos.lock); /* a running task of a remote pool */
  size_t n = chaos.n_in_flight, from = (size_t)rng_below(r, n);
  for (size_t i = 0; i < n && rec == NULL; i++) {
    chaos_record *c = chaos.in_flight[(from + i) % n];
    if (c != NULL && c->task != NULL && c->pool != NULL && c->pool->remote &&
        pbl_task_state_of(c->task) == PBL_RUNNING) {
      rec = c;
      t = pbl_task_retain(c->task);
    }
  }
  uv_mutex_unlock(&chaos.lock);
  if (rec == NULL)
    return;
  int pid = pbl_task_pid(t);
  long launcher = pid > 0 ? parent_of(pid) : -1;
  if (rec->pool != NULL && rec->pool->remote && launcher > 1 &&
      (launcher == (long)getpid() || parent_of(launcher) == (long)getpid()) &&
      pbl_task_state_of(t) == PBL_RUNNING) {
    if (launcher == (long)getpid())
      launcher = pid; /* exec'd: the worker is its launcher */
    atomic_fetch_add(&chaos.faults[F_LAUNCHER], 1);
    int sig = rng_chance(r, 50) ? SIGKILL : SIGTERM;
    chaos_span span = {uv_hrtime(), 0, pid, sig, false};
    kill((pid_t)launcher, sig);
    span.end = uv_hrtime();
    chaos_pool_note_kill(rec->pool, span);
  }
  pbl_task_release(t);
}

static void fault_cancel(chaos_rng *r) {
  pbl_task_t *t;
  chaos_record *rec = pick_held(r, false, &t);
  if (rec == NULL)
    return;
  atomic_fetch_or(&rec->allowed, ALLOW(PBL_CANCELLED));
  atomic_fetch_add(&chaos.faults[F_CANCEL], 1);
  int err = pbl_task_cancel(t);
  if (err != 0 && err != UV_EBUSY)
    snprintf(rec->why, sizeof(rec->why), "cancel gave %s", pbl_err_name(err));
  pbl_task_release(t);
}

/* Our reference goes before the task ends; its callback still comes. */
static void fault_release(chaos_rng *r) {
  pbl_task_t *t = NULL;
  uv_mutex_lock(&chaos.lock);
  if (chaos.n_in_flight > 0) {
    chaos_record *rec = chaos.in_flight[rng_below(r, chaos.n_in_flight)];
    if (rec != NULL && rec->task != NULL) {
      t = rec->task;
      rec->task = NULL;
    }
  }
  uv_mutex_unlock(&chaos.lock);
  if (t != NULL) {
    atomic_fetch_add(&chaos.faults[F_RELEASE], 1);
    pbl_task_release(t);
  }
}

void chaos_fault_op(chaos_rng *r) {
  uint64_t x = rng_below(r, 100);
  if (x < 35) {
    fault_cancel(r);
  } else if (x < 50) {
    fault_kill(r, F_SIGKILL);
  } else if (x < 60) {
    fault_kill(r, F_SIGTERM);
  } else if (x < 65) {
    fault_kill(r, F_SIGSTOP_KILL);
  } else if (x < 75) {
    fault_launcher(r);
  } else if (x < 85) {
    fault_release(r);
  } else {
    chaos_pool *cp = chaos_pool_retire_begin(r);
    if (cp != NULL)
      chaos_pool_retire(cp, (chaos_fault)(F_POOL_CLOSE + rng_below(r, 3)));
  }
}
