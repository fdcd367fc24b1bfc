/* Chaos operations: tasks of every kind, pools made and retired, and the
 * faults. Each accepted task gets a record (chaos.h) registered before
 * the call that makes it, so its callback always finds it. */
#include "chaos.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

chaos_state chaos;

#define LARGE (1u << 20) /* payloads above this take a large slot */
#define MAX_OPEN_POOLS 3
#define POOL_JOIN_MS 120000
#define NO_TIMEOUT_MS 60000 /* "no timeout" tasks still get a far one */

static void on_done(pbl_task_t *t, void *data);

/* ---- what a behaviour may end as ---- */

static unsigned allowed_for(chaos_kind k, chaos_behaviour b) {
  switch (b) {
  case B_OK:
  case B_SLOW:
    return ALLOW(PBL_DONE);
  case B_FAIL:
    return ALLOW(PBL_FAILED);
  case B_BLOCK:
  case B_IGNORE_TERM:
    return ALLOW(PBL_TIMED_OUT);
  case B_GARBAGE:
    return ALLOW(PBL_FAILED); /* PBL_EPROTO */
  default:
    (void)k;
    return ALLOW(PBL_EXPIRED);
  }
}

/* ---- slots and records ---- */

/* Waits (actors) or gives up (the loop thread) while too much is in
 * flight. Returns false when stopping. */
static bool slot_take(bool large, bool can_wait) {
  uv_mutex_lock(&chaos.lock);
  for (;;) {
    bool full = chaos.n_in_flight >= chaos.cfg.max_in_flight ||
                (large && chaos.large_in_flight >= chaos.cfg.max_large);
    if (atomic_load(&chaos.stopping) || (full && !can_wait)) {
      uv_mutex_unlock(&chaos.lock);
      return false;
    }
    if (!full)
      break;
    uv_cond_wait(&chaos.cv, &chaos.lock);
  }
  /* A placeholder keeps the slot until the record goes in. */
  chaos.in_flight[chaos.n_in_flight++] = NULL;
  if (large)
    chaos.large_in_flight++;
  uv_mutex_unlock(&chaos.lock);
  return true;
}

static void slot_give_back(bool large) {
  uv_mutex_lock(&chaos.lock);
  for (size_t i = chaos.n_in_flight; i-- > 0;) {
    if (chaos.in_flight[i] == NULL) { /* any placeholder will do */
      chaos.in_flight[i] = chaos.in_flight[--chaos.n_in_flight];
      if (chaos.in_flight[i] != NULL)
        chaos.in_flight[i]->slot = i;
      break;
    }
  }
  if (large)
    chaos.large_in_flight--;
  uv_cond_broadcast(&chaos.cv);
  uv_mutex_unlock(&chaos.lock);
}

static chaos_record *record_new(chaos_kind k, chaos_behaviour b,
                                uint64_t key, chaos_pool *cp) {
  chaos_record *rec = calloc(1, sizeof(*rec));
  if (rec == NULL)
    abort(); /* the test itself out of memory */
  rec->kind = k;
  rec->behaviour = b;
  rec->key = key;
  rec->pool = cp;
  unsigned allowed = allowed_for(k, b);
  if (cp != NULL && cp->failing_init)
    allowed |= ALLOW(PBL_FAILED);
  atomic_init(&rec->allowed, allowed);
  return rec;
}

/* Takes a placeholder slot for rec, before the call: its callback may run
 * on the loop thread before the call returns. */
static void record_enter(chaos_record *rec) {
  rec->submit_ns = uv_hrtime();
  uv_mutex_lock(&chaos.lock);
  for (size_t i = 0; i < chaos.n_in_flight; i++) {
    if (chaos.in_flight[i] == NULL) {
      chaos.in_flight[i] = rec;
      rec->slot = i;
      break;
    }
  }
  uv_mutex_unlock(&chaos.lock);
}

/* The call refused the task: no callback comes. */
static void record_refused(chaos_record *rec, int err) {
  uv_mutex_lock(&chaos.lock);
  chaos.in_flight[rec->slot] = NULL; /* back to a placeholder */
  uv_mutex_unlock(&chaos.lock);
  slot_give_back(rec->large);
  free(rec);
  if (err != 0)
    atomic_fetch_add(&chaos.refused, 1);
}

/* The call accepted it: keep the record (and the task, if held). */
static void record_accepted(chaos_record *rec, pbl_task_t *t) {
  uv_mutex_lock(&chaos.lock);
  rec->task = t;
  rec->next = chaos.records;
  chaos.records = rec;
  chaos.accepted[rec->kind]++;
  uv_mutex_unlock(&chaos.lock);
  if (rec->pool != NULL)
    atomic_fetch_add(&rec->pool->accepted, 1);
}

static void submitted(chaos_record *rec, int err, pbl_task_t *t) {
  if (err == 0)
    record_accepted(rec, t);
  else
    record_refused(rec, err);
}

void chaos_record_free_all(void) {
  chaos_record *rec = chaos.records;
  while (rec != NULL) {
    chaos_record *next = rec->next;
    pbl_task_release(rec->task);
    free(rec);
    rec = next;
  }
  chaos.records = NULL;
}

/* ---- the callback ---- */

static void check_result(chaos_record *rec, pbl_task_t *t) {
  void *result = NULL;
  if (pbl_task_get(t, 0, &result) != 0) {
    snprintf(rec->why, sizeof(rec->why), "done, but get says %s",
             pbl_err_name(pbl_task_get(t, 0, NULL)));
    return;
  }
  size_t len = 0;
  const void *bytes;
  switch (rec->kind) {
  case K_THREAD:
  case K_POOL_THREAD:
    rec->result_ok = result == chaos_thread_result(
                                   chaos_thread_arg(rec->behaviour, rec->key));
    break;
  case K_PROCESS:
  case K_POOL_PROCESS:
    bytes = pbl_task_bytes(t, &len);
    rec->result_ok = bytes == result && len == rec->out_len &&
                     chaos_check(bytes, len, chaos_result_key(rec->key));
    break;
  case K_COMMAND: /* cat: stdout is stdin; sh: nothing */
    bytes = pbl_task_stdout(t, &len);
    rec->result_ok =
        len == rec->out_len && chaos_check(bytes, len, rec->key);
    break;
  default:
    break;
  }
  if (!rec->result_ok)
    snprintf(rec->why, sizeof(rec->why), "wrong result (%zu bytes)", len);
}

static chaos_rng loop_rng;

static void on_done(pbl_task_t *t, void *data) {
  chaos_record *rec = data;
  uv_thread_t self = uv_thread_self();
  rec->callbacks++;
  rec->end_ns = uv_hrtime();
  if (!uv_thread_equal(&self, &chaos.loop_thread))
    rec->off_loop = true;
  rec->end = pbl_task_state_of(t);
  rec->err = pbl_task_error(t);
  if (rec->end == PBL_DONE)
    check_result(rec, t);
  else if (rec->why[0] == '\0')
    snprintf(rec->why, sizeof(rec->why), "%s", pbl_task_message(t));
  uv_mutex_lock(&chaos.lock);
  chaos.in_flight[rec->slot] = chaos.in_flight[--chaos.n_in_flight];
  if (chaos.in_flight[rec->slot] != NULL)
    chaos.in_flight[rec->slot]->slot = rec->slot;
  if (rec->large)
    chaos.large_in_flight--;
  uv_cond_broadcast(&chaos.cv);
  uv_mutex_unlock(&chaos.lock);
  /* Work started from callbacks too. */
  if (!atomic_load(&chaos.stopping) && rng_chance(&loop_rng, 10)) {
    atomic_fetch_add(&chaos.from_callbacks, 1);
    chaos_op(&loop_rng, true);
  }
}

/* ---- tasks ---- */

static chaos_behaviour pick_behaviour(chaos_rng *r, bool process) {
  uint64_t x = rng_below(r, 100);
  if (x < 50)
    return B_OK;
  if (x < 65)
    return B_SLOW;
  if (x < 75)
    return B_FAIL;
  if (x < 80)
    return B_BLOCK;
  if (!process)
    return B_OK;
  static const chaos_behaviour faults[] = {B_ABORT, B_SEGV,        B_EXIT,
                                           B_EXIT0, B_IGNORE_TERM, B_GARBAGE,
                                           B_BLOCK};
  return faults[rng_below(r, sizeof(faults) / sizeof(faults[0]))];
}

static uint64_t pick_size(chaos_rng *r) {
  uint64_t x = rng_below(r, 100);
  if (x < 70)
    return rng_below(r, 4096);
  if (x < 95)
    return 4096 + rng_below(r, 256 * 1024);
  return rng_below(r, chaos.cfg.max_payload + 1);
}

static pbl_task_opts pick_opts(chaos_rng *r, chaos_behaviour b,
                               chaos_record *rec) {
  pbl_task_opts o = {.on_done = on_done, .data = rec};
  if (b == B_BLOCK || b == B_IGNORE_TERM)
    o.timeout_ms = 20 + (int64_t)rng_below(r, 200);
  else if (rng_chance(r, 30))
    o.timeout_ms = NO_TIMEOUT_MS;
  o.kill_grace_ms = 20 + (int64_t)rng_below(r, 200);
  if (rng_chance(r, 20))
    o.name = "chaos";
  return o;
}

/* Holds a reference to most tasks (faults need them); some are fire and
 * forget. */
static pbl_task_t **maybe_out(chaos_rng *r, pbl_task_t **t) {
  *t = NULL;
  return rng_chance(r, 80) ? t : NULL;
}

static void op_thread(chaos_rng *r, bool on_loop) {
  if (!slot_take(false, !on_loop))
    return;
  chaos_behaviour b = pick_behaviour(r, false);
  chaos_record *rec = record_new(K_THREAD, b, rng_next(r), NULL);
  record_enter(rec);
  pbl_task_opts o = pick_opts(r, b, rec);
  pbl_task_t *t;
  int err = pbl_thread(chaos.pl, chaos_thread_fn,
                       chaos_thread_arg(b, rec->key), &o, maybe_out(r, &t));
  submitted(rec, err, t);
}

/* The input of a process task: header and payload. */
static void *call_bytes(chaos_rng *r, chaos_record *rec, size_t payload,
                        size_t *len) {
  chaos_call c = {.magic = CHAOS_CALL_MAGIC,
                  .behaviour = rec->behaviour,
                  .key = rec->key,
                  .out_len = rec->out_len,
                  .code = rec->behaviour == B_EXIT
                              ? 1 + (int32_t)rng_below(r, 255)
                              : (int32_t)rng_below(r, 1000)};
  *len = sizeof(c) + payload;
  uint8_t *in = malloc(*len);
  if (in == NULL)
    abort();
  memcpy(in, &c, sizeof(c));
  chaos_fill(in + sizeof(c), payload, rec->key);
  return in;
}

static void op_process(chaos_rng *r, bool on_loop) {
  uint64_t in_len = pick_size(r), out_len = pick_size(r);
  bool large = in_len > LARGE || out_len > LARGE;
  if (!slot_take(large, !on_loop))
    return;
  chaos_behaviour b = pick_behaviour(r, true);
  chaos_record *rec = record_new(K_PROCESS, b, rng_next(r), NULL);
  rec->out_len = out_len;
  rec->large = large;
  record_enter(rec);
  size_t len;
  void *in = call_bytes(r, rec, (size_t)in_len, &len);
  pbl_task_opts o = pick_opts(r, b, rec);
  pbl_task_t *t;
  int err = pbl_process(chaos.pl, chaos_process_fn, in, len, &o,
                        maybe_out(r, &t));
  free(in); /* copied by the call */
  submitted(rec, err, t);
}

static void op_command(chaos_rng *r, bool on_loop) {
  if (!slot_take(false, !on_loop))
    return;
  static char *const exit_n[] = {"sh", "-c", "exit $0", "0", NULL};
  static char *const cat[] = {"cat", NULL};
  static char *const self_kill[] = {"sh", "-c", "kill -9 $$", NULL};
  static char *const sleeper[] = {"sleep", "30", NULL};
  static char *const missing[] = {"/nonexistent/chaos-command", NULL};
  uint64_t x = rng_below(r, 100);
  chaos_record *rec = record_new(K_COMMAND, B_OK, rng_next(r), NULL);
  pbl_spawn_opts o = {.task = {.on_done = on_done, .data = rec}};
  const char *argv[5];
  char code[8];
  if (x < 40) { /* exit N */
    int n = rng_chance(r, 50) ? 0 : 1 + (int)rng_below(r, 100);
    snprintf(code, sizeof(code), "%d", n);
    memcpy(argv, exit_n, sizeof(exit_n));
    argv[3] = code;
    atomic_store(&rec->allowed, n == 0 ? ALLOW(PBL_DONE) : ALLOW(PBL_FAILED));
  } else if (x < 75) { /* cat: stdout must be stdin */
    memcpy(argv, cat, sizeof(cat));
    rec->out_len = rng_below(r, 64 * 1024);
  } else if (x < 85) {
    memcpy(argv, self_kill, sizeof(self_kill));
    atomic_store(&rec->allowed, ALLOW(PBL_EXPIRED));
  } else if (x < 95) {
    memcpy(argv, sleeper, sizeof(sleeper));
    o.task.timeout_ms = 20 + (int64_t)rng_below(r, 200);
    o.task.kill_grace_ms = 20 + (int64_t)rng_below(r, 200);
    atomic_store(&rec->allowed, ALLOW(PBL_TIMED_OUT));
  } else {
    memcpy(argv, missing, sizeof(missing));
    atomic_store(&rec->allowed, ALLOW(PBL_FAILED));
  }
  void *in = NULL;
  if (rec->out_len > 0) {
    in = malloc(rec->out_len);
    if (in == NULL)
      abort();
    chaos_fill(in, rec->out_len, rec->key);
    o.stdin_data = in;
    o.stdin_len = rec->out_len;
  }
  record_enter(rec);
  pbl_task_t *t;
  int err = pbl_spawn(chaos.pl, argv, &o, maybe_out(r, &t));
  free(in);
  submitted(rec, err, t);
}

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

static void op_pool_new(chaos_rng *r) {
  bool process = rng_chance(r, 45);
  pbl_pool_opts o = {
      .workers = 1 + (unsigned)rng_below(r, 3),
      .max_tasks = rng_chance(r, 70) ? 0 : 1 + (unsigned)rng_below(r, 4),
      .queue_limit = rng_chance(r, 70) ? 0 : 20 + rng_below(r, 80),
      .kill_grace_ms = 20 + (int64_t)rng_below(r, 200),
  };
  bool failing = rng_chance(r, 5);
  if (process) {
    o.process_init = failing ? chaos_init_fail
                             : rng_chance(r, 20) ? chaos_init_ok : NULL;
  } else if (failing) {
    o.init = chaos_thread_init_fail;
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
    return;
  }
  atomic_fetch_add(&chaos.pools_made, 1);
}

static void op_pool_task(chaos_rng *r, bool on_loop) {
  chaos_pool *cp = pool_use(r, K_KINDS);
  if (cp == NULL)
    return;
  bool process = cp->kind == K_POOL_PROCESS;
  uint64_t in_len = process ? pick_size(r) : 0;
  uint64_t out_len = process ? pick_size(r) : 0;
  bool large = in_len > LARGE || out_len > LARGE;
  if (!slot_take(large, !on_loop)) {
    pool_unuse(cp);
    return;
  }
  chaos_behaviour b = pick_behaviour(r, process);
  chaos_record *rec = record_new(cp->kind, b, rng_next(r), cp);
  rec->out_len = out_len;
  rec->large = large;
  record_enter(rec);
  pbl_task_opts o = pick_opts(r, b, rec);
  pbl_task_t *t = NULL;
  int err;
  if (process) {
    size_t len;
    void *in = call_bytes(r, rec, (size_t)in_len, &len);
    err = pbl_pool_process(cp->pool, chaos_process_fn, in, len, &o,
                           maybe_out(r, &t));
    free(in);
  } else {
    err = pbl_pool_thread(cp->pool, chaos_thread_fn,
                          chaos_thread_arg(b, rec->key), &o,
                          maybe_out(r, &t));
  }
  submitted(rec, err, t);
  pool_unuse(cp);
}

/* A map of small tasks: n records entered first, all accepted or none. */
static void op_pool_map(chaos_rng *r, bool on_loop) {
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
  while (taken < n && slot_take(false, !on_loop))
    taken++;
  n = taken;
  /* One timeout for the map (per chunk): none, or a far one. */
  pbl_task_opts o = {.on_done = on_done,
                     .timeout_ms = rng_chance(r, 30) ? NO_TIMEOUT_MS : 0,
                     .kill_grace_ms = 50};
  for (size_t i = 0; i < n; i++) {
    chaos_behaviour b = rng_chance(r, 85) ? B_OK : B_FAIL;
    recs[i] = record_new(cp->kind, b, rng_next(r), cp);
    recs[i]->out_len = process ? rng_below(r, 512) : 0;
    record_enter(recs[i]);
    args[i] = chaos_thread_arg(b, recs[i]->key);
    if (process)
      inputs[i].data = call_bytes(r, recs[i], (size_t)rng_below(r, 512),
                                  &inputs[i].len);
  }
  /* The callback's data is per task: set it once the tasks exist. A
   * callback cannot come before: on_done is set on each task below
   * before its record could be needed (a task without a callback yet is
   * delivered when one is set). */
  o.on_done = NULL;
  int err = n == 0 ? UV_EINVAL
            : process
                ? pbl_pool_map_process(cp->pool, chaos_process_fn, inputs, n,
                                       chunk, &o, tasks)
                : pbl_pool_map_thread(cp->pool, chaos_thread_fn, args, n,
                                      chunk, &o, tasks);
  for (size_t i = 0; i < n; i++) {
    if (process)
      free(inputs[i].data);
    if (err == 0 && pbl_task_on_done(tasks[i], on_done, recs[i]) != 0) {
      /* Already called back: impossible, no callback was set. */
      snprintf(recs[i]->why, sizeof(recs[i]->why), "on_done refused");
    }
    submitted(recs[i], err, err == 0 ? tasks[i] : NULL);
  }
  pool_unuse(cp);
}

/* Stops new users of a pool and waits for the current ones. */
static chaos_pool *pool_retire_begin(chaos_rng *r) {
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
static void pool_allow(chaos_pool *cp, unsigned states) {
  uv_mutex_lock(&chaos.lock);
  for (size_t i = 0; i < chaos.n_in_flight; i++)
    if (chaos.in_flight[i] != NULL && chaos.in_flight[i]->pool == cp)
      atomic_fetch_or(&chaos.in_flight[i]->allowed, states);
  uv_mutex_unlock(&chaos.lock);
}

/* Joins and checks that the pool's stats add up to what it accepted. */
static void pool_join_check(chaos_pool *cp) {
  int err = pbl_pool_join(cp->pool, POOL_JOIN_MS);
  pbl_pool_stats_t st;
  bool ok = err == 0 && pbl_pool_stats(cp->pool, &st) == 0 &&
            st.queued == 0 && st.running == 0 &&
            st.done + st.failed + st.cancelled + st.timed_out + st.expired ==
                atomic_load(&cp->accepted);
  if (!ok) {
    atomic_fetch_add(&chaos.pool_stats_bad, 1);
    fprintf(stderr, "chaos: pool %p join %s, stats do not add up to %llu\n",
            (void *)cp->pool, pbl_err_name(err),
            (unsigned long long)atomic_load(&cp->accepted));
  }
}

static void pool_retire(chaos_pool *cp, chaos_fault how) {
  atomic_fetch_add(&chaos.faults[how], 1);
  switch (how) {
  case F_POOL_CLOSE:
    pbl_pool_close(cp->pool);
    pool_join_check(cp);
    break;
  case F_POOL_STOP:
    pool_allow(cp, ALLOW(PBL_CANCELLED));
    pbl_pool_stop(cp->pool);
    pool_join_check(cp);
    break;
  default: /* F_POOL_FREE: freed busy, it stops first */
    pool_allow(cp, ALLOW(PBL_CANCELLED));
    break;
  }
  pbl_pool_free(cp->pool);
  cp->pool = NULL;
  atomic_fetch_add(&chaos.pools_retired, 1);
}

void chaos_retire_all_pools(void) {
  chaos_pool *cp;
  while ((cp = pool_retire_begin(NULL)) != NULL)
    pool_retire(cp, F_POOL_CLOSE);
}

/* ---- faults ---- */

static void pool_note_kill(chaos_pool *cp, chaos_span span) {
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

bool chaos_pool_kill_overlaps(const chaos_record *rec) {
  const chaos_pool *cp = rec->pool;
  for (size_t i = 0; cp != NULL && i < cp->n_kills; i++)
    if (cp->kills[i].start <= rec->end_ns &&
        rec->submit_ns <= cp->kills[i].end)
      return true;
  return false;
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
    chaos_span span = {uv_hrtime(), 0};
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
      pool_note_kill(rec->pool, span);
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
  } else if (x < 85) {
    fault_release(r);
  } else {
    chaos_pool *cp = pool_retire_begin(r);
    if (cp != NULL)
      pool_retire(cp, (chaos_fault)(F_POOL_CLOSE + rng_below(r, 3)));
  }
}

/* ---- one operation ---- */

void chaos_op(chaos_rng *r, bool on_loop) {
  uint64_t x = rng_below(r, 100);
  if (x < 25)
    op_thread(r, on_loop);
  else if (x < 40)
    op_process(r, on_loop);
  else if (x < 50)
    op_command(r, on_loop);
  else if (x < 85)
    op_pool_task(r, on_loop);
  else if (x < 92)
    op_pool_map(r, on_loop);
  else
    op_pool_new(r);
}
