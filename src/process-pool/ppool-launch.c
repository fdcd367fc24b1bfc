/* Where a process pool's workers start: launchers (ssh, srun, kubectl
 * exec...) or here; how many start through each at once; a launched
 * worker's heartbeats and its HELLO's deadline; the words on it. Loop
 * thread, but for the making. See ppool-int.h for the design notes.
 */
#include <stdio.h>
#include <string.h>

#include "ppool-int.h"
#include "process/worker-chan.h"

#define MS 1000000ull

static void argv_free(char **argv) {
  if (argv == NULL)
    return;
  for (size_t i = 0; argv[i] != NULL; i++)
    pbl__free(argv[i]);
  pbl__free(argv);
}

static char **argv_copy(const char *const *argv) {
  size_t n = 0;
  while (argv[n] != NULL)
    n++;
  char **c = pbl__calloc(n + 1, sizeof(*c));
  for (size_t i = 0; c != NULL && i < n; i++)
    if ((c[i] = pbl__strdup(argv[i])) == NULL) {
      argv_free(c);
      c = NULL;
    }
  return c;
}

static int check(const pbl_pool_opts *o) {
  if ((o->launchers == NULL) != (o->n_launchers == 0) ||
      (o->n_launchers > 0 && o->workers != 0))
    return UV_EINVAL; /* with launchers, the workers are theirs */
  for (size_t i = 0; i < o->n_launchers; i++) {
    const char *const *argv = o->launchers[i].argv;
    if (argv != NULL && (argv[0] == NULL || argv[0][0] == '\0'))
      return UV_EINVAL;
  }
  return 0;
}

int pbl__ppool_launch_init(pbl__ppool *pp, const pbl_pool_opts *o) {
  size_t n = o != NULL ? o->n_launchers : 0;
  int err = o != NULL ? check(o) : 0;
  if (err != 0)
    return err;
  pp->launch = pbl__calloc(n > 0 ? n : 1, sizeof(*pp->launch));
  if (pp->launch == NULL)
    return UV_ENOMEM;
  pp->nlaunch = n > 0 ? n : 1;
  if (n == 0) {
    pp->launch[0].workers = pp->target; /* here, all of them */
    return 0;
  }
  uint64_t target = 0;
  for (size_t i = 0; i < n; i++) {
    const pbl_launcher *l = &o->launchers[i];
    pp->launch[i].workers = l->workers > 0 ? l->workers : 1;
    target += pp->launch[i].workers;
    if (l->argv != NULL && (pp->launch[i].argv = argv_copy(l->argv)) == NULL)
      return UV_ENOMEM;
  }
  if (target > UINT32_MAX)
    return UV_EINVAL;
  pp->target = (unsigned)target;
  return 0;
}

void pbl__ppool_launch_free(pbl__ppool *pp) {
  for (size_t i = 0; pp->launch != NULL && i < pp->nlaunch; i++)
    argv_free(pp->launch[i].argv);
  pbl__free(pp->launch);
  pp->launch = NULL;
}

/* A place that may start one more now: under its share (or past it, for
 * a spare), and below the launcher's starts at once. */
static bool room_in(const pbl__plaunch *l, bool over) {
  return (over || l->slots < l->workers) &&
         (l->argv == NULL || l->hello < PBL__PPOOL_LAUNCH_MAX);
}

pbl__plaunch *pbl__ppool_launch_pick(pbl__ppool *pp) {
  /* Each place its share first; spares (slots past target) anywhere. */
  for (int pass = 0; pass < (pp->spare > 0 ? 2 : 1); pass++)
    for (size_t i = 0; i < pp->nlaunch; i++) {
      pbl__plaunch *l = &pp->launch[i];
      if (!room_in(l, pass == 1))
        continue;
      l->slots++;
      if (l->argv != NULL)
        l->hello++;
      return l;
    }
  return NULL;
}

void pbl__pworker_hello_over(pbl__pworker *w) {
  if (!w->hello_owed)
    return;
  w->hello_owed = false;
  w->launch->hello--;
}

const char *pbl__pworker_name(const pbl__pworker *w, char *buf, size_t len) {
  int pid = w->worker_pid != 0 ? w->worker_pid : w->pid;
  if (w->launch == NULL || w->launch->argv == NULL)
    snprintf(buf, len, "worker %d", pid);
  else if (w->host == NULL)
    snprintf(buf, len, "worker through %s (launcher pid %d)",
             w->launch->argv[0], w->pid);
  else
    snprintf(buf, len, "worker %d on %s (through %s)", pid, w->host,
             w->launch->argv[0]);
  return buf;
}

void pbl__pworker_launch_failed(pbl__pworker *w, int64_t status, int sig) {
  pbl__plaunch *l = w->launch;
  if (++l->start_fails < PBL__PPOOL_LAUNCH_TRIES)
    return; /* again, after the backoff */
  l->start_fails = 0;
  char *how = pbl__exit_words(l->argv[0], status, sig);
  char msg[640];
  snprintf(msg, sizeof(msg),
           "cannot start a worker through %s: %s before the worker "
           "announced itself, %d times in a row (its stderr above says "
           "why; if many workers start through one ssh host at once, "
           "sshd's MaxStartups, 10:30:100 by default, resets logins past "
           "10: raise it, or start fewer)",
           l->argv[0], how != NULL ? how : "it ended", PBL__PPOOL_LAUNCH_TRIES);
  pbl__free(how);
  pbl__pworker_init_failed(w, PBL_EFAILED, 0, msg);
}

/* Nothing came from w for too long: its task expires, it is killed. */
static void lost(pbl__pworker *w, uint64_t silent_ns) {
  char who[384], words[512];
  snprintf(words, sizeof(words), "%s was lost: nothing came from it for %llu s",
           pbl__pworker_name(w, who, sizeof(who)),
           (unsigned long long)(silent_ns / 1000 / MS));
  pbl__pool_item *head = pbl__pworker_head(w);
  if (w->state == PBL__PW_STARTING) {
    pbl__pworker_init_failed(w, PBL_EFAILED, 0, words);
  } else if (head != NULL) {
    pbl__pitem *pi = (pbl__pitem *)head;
    pbl_task_t *t = &head->base;
    char *copy = pbl__strdup(words);
    pbl__task_lock(t);
    if (!pbl__task_ended(t) && copy != NULL) {
      pbl__free(pi->proc.words);
      pi->proc.words = copy; /* published by the end */
      copy = NULL;
    }
    pbl__task_unlock(t);
    pbl__free(copy);
    pbl__task_end(t, PBL_EXPIRED, PBL_EEXPIRED, NULL, NULL, PBL__DELIVER_LATER);
  }
  pbl__pworker_kill(w, w->pp->grace_ms);
}

static void on_beat(uv_timer_t *timer) {
  pbl__pworker *w = timer->data;
  uint64_t now = uv_hrtime();
  if (w->state == PBL__PW_DYING || w->child == NULL)
    return;
  if (w->state == PBL__PW_HELLO) {
    if (now - w->spawn_ns < (uint64_t)PBL__PPOOL_HELLO_MS * MS)
      return;
    char who[384], msg[512];
    snprintf(msg, sizeof(msg), "%s did not announce itself within %d s",
             pbl__pworker_name(w, who, sizeof(who)),
             PBL__PPOOL_HELLO_MS / 1000);
    pbl__pworker_init_failed(w, UV_ETIMEDOUT, 0, msg);
    pbl__pworker_kill(w, w->pp->grace_ms);
    return;
  }
  uint64_t silent = now - w->heard_ns;
  if (silent > (uint64_t)PBL__WORKER_HB_MS * PBL__WORKER_HB_DEAD * MS) {
    lost(w, silent);
    return;
  }
  if (w->wr_reqs == 0) /* else bytes flow to it anyway */
    pbl__pworker_send_bare(w, PBL__WIRE_PING);
}

void pbl__pworker_watch(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  w->spawn_ns = w->heard_ns = uv_hrtime();
  if (w->launch->argv == NULL ||
      uv_timer_init(w->pp->base.loop->uv, &w->hb_timer) != 0)
    return; /* local: its parent's death ends it; no timer: no beats */
  w->hb_timer_open = true;
  w->hb_timer.data = w;
  w->own++;
  uv_unref((uv_handle_t *)&w->hb_timer); /* as the worker's own handles */
  uv_timer_start(&w->hb_timer, on_beat, PBL__WORKER_HB_MS, PBL__WORKER_HB_MS);
}

void pbl__pworker_watch_over(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (!w->hb_timer_open)
    return;
  w->hb_timer_open = false;
  pbl__pworker_close_own(w, (uv_handle_t *)&w->hb_timer);
}
