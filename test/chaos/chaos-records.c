/* Chaos bookkeeping: in-flight slots, the record of every task, and the
 * callback that fills it on the loop thread. See chaos.h. */
#include "chaos-ops.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

chaos_state chaos;

#define LARGE (1u << 20) /* payloads above this take a large slot */
#define MAX_OPEN_POOLS 3
#define POOL_JOIN_MS 120000
#define NO_TIMEOUT_MS 60000 /* "no timeout" tasks still get a far one */

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
bool chaos_slot_take(bool large, bool can_wait) {
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

void chaos_slot_give_back(bool large) {
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

chaos_record *chaos_record_new(chaos_kind k, chaos_behaviour b, uint64_t key,
                               chaos_pool *cp) {
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
void chaos_record_enter(chaos_record *rec) {
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
  chaos_slot_give_back(rec->large);
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

void chaos_submitted(chaos_record *rec, int err, pbl_task_t *t) {
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
    rec->result_ok = len == rec->out_len && chaos_check(bytes, len, rec->key);
    break;
  default:
    break;
  }
  if (!rec->result_ok)
    snprintf(rec->why, sizeof(rec->why), "wrong result (%zu bytes)", len);
}

static chaos_rng loop_rng;

void chaos_on_done(pbl_task_t *t, void *data) {
  chaos_record *rec = data;
  uv_thread_t self = uv_thread_self();
  rec->callbacks++;
  rec->end_ns = uv_hrtime();
  if (!uv_thread_equal(&self, &chaos.loop_thread))
    rec->off_loop = true;
  rec->end = pbl_task_state_of(t);
  rec->err = pbl_task_error(t);
  rec->pid = pbl_task_pid(t);
  rec->term_signal = pbl_task_term_signal(t);
  rec->exit_status = pbl_task_exit_status(t);
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
