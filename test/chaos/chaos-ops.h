/* What the chaos files share besides chaos.h: the pieces operations are
 * made of. */
#ifndef PBL_CHAOS_OPS_H
#define PBL_CHAOS_OPS_H

#include "chaos.h"

#define LARGE (1u << 20) /* payloads above this take a large slot */
#define MAX_OPEN_POOLS 3
#define POOL_JOIN_MS 120000
#define NO_TIMEOUT_MS 60000 /* "no timeout" tasks still get a far one */

/* chaos-records.c */
bool chaos_slot_take(bool large, bool can_wait);
void chaos_slot_give_back(bool large);
chaos_record *chaos_record_new(chaos_kind k, chaos_behaviour b, uint64_t key,
                               chaos_pool *cp);
void chaos_record_enter(chaos_record *rec);
void chaos_submitted(chaos_record *rec, int err, pbl_task_t *t);
void chaos_on_done(pbl_task_t *t, void *data);

/* chaos-ops.c */
chaos_behaviour chaos_pick_behaviour(chaos_rng *r, bool process);
uint64_t chaos_pick_size(chaos_rng *r);
pbl_task_opts chaos_pick_opts(chaos_rng *r, chaos_behaviour b,
                              chaos_record *rec);
pbl_task_t **chaos_maybe_out(chaos_rng *r, pbl_task_t **t);
void *chaos_call_bytes(chaos_rng *r, chaos_record *rec, size_t payload,
                       size_t *len);

/* chaos-pools.c */
void chaos_op_pool_new(chaos_rng *r);
void chaos_op_pool_task(chaos_rng *r, bool on_loop);
void chaos_op_pool_map(chaos_rng *r, bool on_loop);
chaos_pool *chaos_pool_retire_begin(chaos_rng *r);
void chaos_pool_retire(chaos_pool *cp, chaos_fault how);
void chaos_pool_allow(chaos_pool *cp, unsigned states);

/* chaos-faults.c */
void chaos_pool_note_kill(chaos_pool *cp, chaos_span span);

#endif
