/* Chaos operations: tasks of every kind (thread, process, command), and
 * the dispatcher over every operation. Each accepted task gets a record
 * (chaos-records.c) registered before the call that makes it, so its
 * callback always finds it. */
#include "chaos-ops.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tasks ---- */

chaos_behaviour chaos_pick_behaviour(chaos_rng *r, bool process) {
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
  static const chaos_behaviour faults[] = {
      B_ABORT, B_SEGV, B_EXIT, B_EXIT0, B_IGNORE_TERM, B_GARBAGE, B_BLOCK};
  return faults[rng_below(r, sizeof(faults) / sizeof(faults[0]))];
}

uint64_t chaos_pick_size(chaos_rng *r) {
  uint64_t x = rng_below(r, 100);
  if (x < 70)
    return rng_below(r, 4096);
  if (x < 95)
    return 4096 + rng_below(r, 256 * 1024);
  return rng_below(r, chaos.cfg.max_payload + 1);
}

pbl_task_opts chaos_pick_opts(chaos_rng *r, chaos_behaviour b,
                              chaos_record *rec) {
  pbl_task_opts o = {.on_done = chaos_on_done, .data = rec};
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
pbl_task_t **chaos_maybe_out(chaos_rng *r, pbl_task_t **t) {
  *t = NULL;
  return rng_chance(r, 80) ? t : NULL;
}

static void op_thread(chaos_rng *r, bool on_loop) {
  if (!chaos_slot_take(false, !on_loop))
    return;
  chaos_behaviour b = chaos_pick_behaviour(r, false);
  chaos_record *rec = chaos_record_new(K_THREAD, b, rng_next(r), NULL);
  chaos_record_enter(rec);
  pbl_task_opts o = chaos_pick_opts(r, b, rec);
  pbl_task_t *t;
  int err = pbl_thread(chaos.pl, chaos_thread_fn, chaos_thread_arg(b, rec->key),
                       &o, chaos_maybe_out(r, &t));
  chaos_submitted(rec, err, t);
}

/* The input of a process task: header and payload. */
void *chaos_call_bytes(chaos_rng *r, chaos_record *rec, size_t payload,
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
  uint64_t in_len = chaos_pick_size(r), out_len = chaos_pick_size(r);
  bool large = in_len > LARGE || out_len > LARGE;
  if (!chaos_slot_take(large, !on_loop))
    return;
  chaos_behaviour b = chaos_pick_behaviour(r, true);
  chaos_record *rec = chaos_record_new(K_PROCESS, b, rng_next(r), NULL);
  rec->out_len = out_len;
  rec->large = large;
  chaos_record_enter(rec);
  size_t len;
  void *in = chaos_call_bytes(r, rec, (size_t)in_len, &len);
  pbl_task_opts o = chaos_pick_opts(r, b, rec);
  pbl_task_t *t;
  int err = pbl_process(chaos.pl, chaos_process_fn, in, len, &o,
                        chaos_maybe_out(r, &t));
  free(in); /* copied by the call */
  chaos_submitted(rec, err, t);
}

static void op_command(chaos_rng *r, bool on_loop) {
  if (!chaos_slot_take(false, !on_loop))
    return;
  static char *const exit_n[] = {"sh", "-c", "exit $0", "0", NULL};
  static char *const cat[] = {"cat", NULL};
  static char *const self_kill[] = {"sh", "-c", "kill -9 $$", NULL};
  static char *const sleeper[] = {"sleep", "30", NULL};
  static char *const missing[] = {"/nonexistent/chaos-command", NULL};
  uint64_t x = rng_below(r, 100);
  chaos_record *rec = chaos_record_new(K_COMMAND, B_OK, rng_next(r), NULL);
  pbl_spawn_opts o = {.task = {.on_done = chaos_on_done, .data = rec}};
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
  chaos_record_enter(rec);
  pbl_task_t *t;
  int err = pbl_spawn(chaos.pl, argv, &o, chaos_maybe_out(r, &t));
  free(in);
  chaos_submitted(rec, err, t);
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
    chaos_op_pool_task(r, on_loop);
  else if (x < 92)
    chaos_op_pool_map(r, on_loop);
  else
    chaos_op_pool_new(r);
}
