/* Chaos pools: made at random, used by every actor, retired (closed,
 * stopped or freed while busy) by the fault thread, their stats checked
 * after each join. */
#include "chaos-ops.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pools ---- */

/* A random open pool, with a user counted on it (so no retirer frees it
 * meanwhile), or NULL. */
static chaos_pool *pool_use(chaos_rng *r, chaos_kind want) {
  chaos_pool *pick = NULL;
  uv_mutex_lock(&chaos.lock);
  unsigned n = 0;
  for (chaos_pool *cp = chaos.pools; cp != NULL; cp = cp->next)
    if (!cp->retiring && (want == K_KINDS || cp->kind == want))
      n++;
  if (n > 0) {
    unsigned i = (unsigned)rng_below(r, n);
    for (chaos_pool *cp = chaos.pools; cp != NULL; cp = cp->next)
      if (!cp->retiring && (want == K_KINDS || cp->kind == want) && i-- == 0)
        pick = cp;
    atomic_fetch_add(&pick->users, 1);
  }
  uv_mutex_unlock(&chaos.lock);
  return pick;
}

static void pool_unuse(chaos_pool *cp) {
  uv_mutex_lock(&chaos.lock);
  if (atomic_fetch_sub(&cp->users, 1) == 1)
    uv_cond_broadcast(&chaos.cv);
  uv_mutex_unlock(&chaos.lock);
}

/* Launchers of remote pools: local shells, so that the run needs no
 * ssh. The first execs the worker (the launcher is the worker: killing
 * one kills the other); the second stays as its parent, as ssh or srun
 * do (killing it leaves the worker running, reparented, until its
 * watcher sees its channel or its parent gone). */
static const char *const exec_sh[] = {"sh", "-c", "exec \"$@\"", "sh", NULL};
static const char *const stay_sh[] = {"sh", "-c", "\"$@\"; exit $?", "sh",
                                      NULL};

/* A remote pool's launchers: one or both shells, sometimes local workers
 * beside them; into l (room for 3). Returns how many. */
static size_t pick_launchers(chaos_rng *r, pbl_launcher *l) {
  size_t n = 0;
  bool exec = rng_chance(r, 70), stay = !exec || rng_chance(r, 70);
  if (exec)
    l[n++] = (pbl_launcher){exec_sh, 1 + (unsigned)rng_below(r, 2)};
  if (stay)
    l[n++] = (pbl_launcher){stay_sh, 1 + (unsigned)rng_below(r, 2)};
  if (rng_chance(r, 30))
    l[n++] = (pbl_launcher){NULL, 1};
  return n;
}

void chaos_op_pool_new(chaos_rng *r) {
  bool process = rng_chance(r, 45);
  pbl_pool_opts o = {
      .workers = 1 + (unsigned)rng_below(r, 3),
      .max_tasks = rng_chance(r, 70) ? 0 : 1 + (unsigned)rng_below(r, 4),
      .queue_limit = rng_chance(r, 70) ? 0 : 20 + rng_below(r, 80),
  };
  int64_t grace = 20 + (int64_t)rng_below(r, 200);
  bool failing = rng_chance(r, 5);
  if (process) {
    o.kill_grace_ms = grace; /* threads cannot be killed: EINVAL there */
    o.process_init = failing             ? chaos_init_fail
                     : rng_chance(r, 20) ? chaos_init_ok
                                         : NULL;
  } else if (failing) {
    o.init = chaos_thread_init_fail;
  }
  pbl_launcher launchers[3];
  /* The first process pool is remote, so that every run has one (a slow
   * run under valgrind makes few pools); then 40 %. */
  static _Atomic bool made_remote;
  bool remote = process && (!atomic_load(&made_remote) || rng_chance(r, 40));
  if (remote) {
    o.workers = 0; /* the launchers' */
    o.launchers = launchers;
    o.n_launchers = pick_launchers(r, launchers);
  }
  uv_mutex_lock(&chaos.lock);
  bool room = chaos.open_pools < MAX_OPEN_POOLS;
  if (room)
    chaos.open_pools++;
  uv_mutex_unlock(&chaos.lock);
  if (!room)
    return;
  chaos_pool *cp = calloc(1, sizeof(*cp));
  if (cp == NULL)
    abort();
  cp->kind = process ? K_POOL_PROCESS : K_POOL_THREAD;
  cp->failing_init = failing;
  cp->remote = remote;
  int err = process ? pbl_process_pool_new(chaos.pl, &o, &cp->pool)
                    : pbl_thread_pool_new(chaos.pl, &o, &cp->pool);
  uv_mutex_lock(&chaos.lock);
  if (err == 0) {
    cp->next = chaos.pools;
    chaos.pools = cp;
  } else {
    chaos.open_pools--;
  }
  uv_mutex_unlock(&chaos.lock);
  if (err != 0) {
    free(cp);
    atomic_fetch_add(&chaos.refused, 1);
    if (err != UV_ENOMEM) { /* the options are ours: only memory may fail */
      atomic_fetch_add(&chaos.pool_stats_bad, 1);
      fprintf(stderr, "chaos: a %s pool was refused: %s\n",
              process ? "process" : "thread", pbl_err_name(err));
    }
    return;
  }
  atomic_fetch_add(&chaos.pools_made, 1);
  if (remote)
    atomic_fetch_add(&chaos.remote_pools, 1);
  atomic_store(&made_remote, true);
}

void chaos_op_pool_task(chaos_rng *r, bool on_loop) {
  chaos_pool *cp = pool_use(r, K_KINDS);
  if (cp == NULL)
    return;
  bool process = cp->kind == K_POOL_PROCESS;
  uint64_t in_len = process ? chaos_pick_size(r) : 0;
  uint64_t out_len = process ? chaos_pick_size(r) : 0;
  bool large = in_len > LARGE || out_len > LARGE;
  if (!chaos_slot_take(large, !on_loop)) {
    pool_unuse(cp);
    return;
  }
  chaos_behaviour b = chaos_pick_behaviour(r, process);
  chaos_record *rec = chaos_record_new(cp->kind, b, rng_next(r), cp);
  rec->out_len = out_len;
  rec->large = large;
  chaos_record_enter(rec);
  pbl_task_opts o = chaos_pick_opts(r, b, rec);
  pbl_task_t *t = NULL;
  int err;
  if (process) {
    size_t len;
    void *in = chaos_call_bytes(r, rec, (size_t)in_len, &len);
    err = pbl_pool_process(cp->pool, chaos_process_fn, in, len, &o,
                           chaos_maybe_out(r, &t));
    free(in);
  } else {
    err = pbl_pool_thread(cp->pool, chaos_thread_fn,
                          chaos_thread_arg(b, rec->key), &o,
                          chaos_maybe_out(r, &t));
  }
  chaos_submitted(rec, err, t);
  pool_unuse(cp);
}

/* A map of small tasks: n records entered first, all accepted or none. */
void chaos_op_pool_map(chaos_rng *r, bool on_loop) {
  chaos_pool *cp = pool_use(r, K_KINDS);
  if (cp == NULL)
    return;
  bool process = cp->kind == K_POOL_PROCESS;
  size_t n = 1 + (size_t)rng_below(r, 16);
  size_t chunk = 1 + (size_t)rng_below(r, 6);
  chaos_record *recs[16];
  pbl_task_t *tasks[16];
  void *args[16];
  pbl_buf inputs[16];
  size_t taken = 0;
  while (taken < n && chaos_slot_take(false, !on_loop))
    taken++;
  n = taken;
  /* One timeout for the map (per chunk): none, or a far one. */
  pbl_task_opts o = {.on_done = chaos_on_done,
                     .timeout_ms = rng_chance(r, 30) ? NO_TIMEOUT_MS : 0,
                     .kill_grace_ms = 50};
  for (size_t i = 0; i < n; i++) {
    chaos_behaviour b = rng_chance(r, 85) ? B_OK : B_FAIL;
    recs[i] = chaos_record_new(cp->kind, b, rng_next(r), cp);
    recs[i]->out_len = process ? rng_below(r, 512) : 0;
    recs[i]->cb_set_late = true;
    chaos_record_enter(recs[i]);
    args[i] = chaos_thread_arg(b, recs[i]->key);
    if (process)
      inputs[i].data = chaos_call_bytes(r, recs[i], (size_t)rng_below(r, 512),
                                        &inputs[i].len);
  }
  /* The callback's data is per task: set it once the tasks exist. A
   * callback cannot come before: chaos_on_done is set on each task below
   * before its record could be needed (a task without a callback yet is
   * delivered when one is set). */
  o.on_done = NULL;
  int err = n == 0    ? UV_EINVAL
            : process ? pbl_pool_map_process(cp->pool, chaos_process_fn, inputs,
                                             n, chunk, &o, tasks)
                      : pbl_pool_map_thread(cp->pool, chaos_thread_fn, args, n,
                                            chunk, &o, tasks);
  for (size_t i = 0; i < n; i++) {
    if (process)
      free(inputs[i].data);
    if (err == 0 && pbl_task_on_done(tasks[i], chaos_on_done, recs[i]) != 0) {
      /* Already called back: impossible, no callback was set. */
      snprintf(recs[i]->why, sizeof(recs[i]->why), "chaos_on_done refused");
    }
    chaos_submitted(recs[i], err, err == 0 ? tasks[i] : NULL);
  }
  pool_unuse(cp);
}

/* Stops new users of a pool and waits for the current ones. */
chaos_pool *chaos_pool_retire_begin(chaos_rng *r) {
  chaos_pool *pick = NULL;
  uv_mutex_lock(&chaos.lock);
  unsigned n = 0;
  for (chaos_pool *cp = chaos.pools; cp != NULL; cp = cp->next)
    if (!cp->retiring)
      n++;
  if (n > 0) {
    unsigned i = r != NULL ? (unsigned)rng_below(r, n) : 0;
    for (chaos_pool *cp = chaos.pools; cp != NULL; cp = cp->next)
      if (!cp->retiring && i-- == 0)
        pick = cp;
    pick->retiring = true;
    chaos.open_pools--;
    while (atomic_load(&pick->users) > 0)
      uv_cond_wait(&chaos.cv, &chaos.lock);
  }
  uv_mutex_unlock(&chaos.lock);
  return pick;
}

/* Tasks of a pool still in flight may now also end cancelled. */
void chaos_pool_allow(chaos_pool *cp, unsigned states) {
  uv_mutex_lock(&chaos.lock);
  for (size_t i = 0; i < chaos.n_in_flight; i++)
    if (chaos.in_flight[i] != NULL && chaos.in_flight[i]->pool == cp)
      atomic_fetch_or(&chaos.in_flight[i]->allowed, states);
  uv_mutex_unlock(&chaos.lock);
}

/* Tasks of a pool whose callback has not run yet. A callback set on a
 * task that had already ended (a map's, set after the call) is a late
 * one, delivered on a later turn like any task's: a join does not wait
 * for it (pebble.h). */
static size_t pool_owed(chaos_pool *cp) {
  size_t n = 0;
  uv_mutex_lock(&chaos.lock);
  for (size_t i = 0; i < chaos.n_in_flight; i++)
    if (chaos.in_flight[i] != NULL && chaos.in_flight[i]->pool == cp &&
        !chaos.in_flight[i]->cb_set_late)
      n++;
  uv_mutex_unlock(&chaos.lock);
  return n;
}

/* Joins and checks that the pool's stats add up to what it accepted, and
 * that every callback of its tasks ran before the join returned. */
static void pool_join_check(chaos_pool *cp) {
  int err = pbl_pool_join(cp->pool, POOL_JOIN_MS);
  size_t owed = err == 0 ? pool_owed(cp) : 0;
  pbl_pool_stats_t st;
  bool ok = err == 0 && owed == 0 && pbl_pool_stats(cp->pool, &st) == 0 &&
            st.queued == 0 && st.running == 0 &&
            st.done + st.failed + st.cancelled + st.timed_out + st.expired ==
                atomic_load(&cp->accepted);
  if (!ok) {
    atomic_fetch_add(&chaos.pool_stats_bad, 1);
    fprintf(stderr,
            "chaos: pool %p join %s with %zu callbacks owed; stats must add "
            "up to %llu\n",
            (void *)cp->pool, pbl_err_name(err), owed,
            (unsigned long long)atomic_load(&cp->accepted));
  }
}

void chaos_pool_retire(chaos_pool *cp, chaos_fault how) {
  atomic_fetch_add(&chaos.faults[how], 1);
  switch (how) {
  case F_POOL_CLOSE:
    pbl_pool_close(cp->pool);
    pool_join_check(cp);
    break;
  case F_POOL_STOP:
    chaos_pool_allow(cp, ALLOW(PBL_CANCELLED));
    pbl_pool_stop(cp->pool);
    pool_join_check(cp);
    break;
  default: /* F_POOL_FREE: freed busy, it stops first */
    chaos_pool_allow(cp, ALLOW(PBL_CANCELLED));
    break;
  }
  pbl_pool_free(cp->pool);
  cp->pool = NULL;
  atomic_fetch_add(&chaos.pools_retired, 1);
}

void chaos_retire_all_pools(void) {
  chaos_pool *cp;
  while ((cp = chaos_pool_retire_begin(NULL)) != NULL)
    chaos_pool_retire(cp, F_POOL_CLOSE);
}
