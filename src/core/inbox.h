/* The binding's inbox lists: how other threads hand tasks to the loop
 * thread without a lock. Never installed.
 *
 * Design notes.
 *
 * Each list is a lock-free LIFO (a Treiber stack): a poster pushes with
 * one CAS; the loop thread, the only taker, takes the whole list with one
 * exchange and reverses it, so a drain serves each list in post order.
 * Only whole lists are taken, so no pop can meet a recycled node (no ABA).
 * A mutex here made every poster (producer threads submitting, workers
 * finishing) queue behind each other and behind the drain: with a
 * producer thread and libuv's workers posting per task, its futex
 * wake-ups were most of a foreign submission's cost (bench/README.md).
 *
 * A sealed list refuses pushes (PBL_ECLOSED): the binding seals its lists
 * (under in_lock) before it closes the async, so no post can come after
 * the close. A seal that finds a list busy undoes itself; a poster refused
 * meanwhile looks at in_closed under in_lock and pushes again.
 */
#ifndef PBL_INBOX_H
#define PBL_INBOX_H

#include "internal.h"

/* Pushes t on list `list` of pl. Returns 1 if the list was empty (the
 * poster must wake the loop), 0 if not, PBL_ECLOSED if sealed. */
int pbl__inbox_push(pbl_loop_t *pl, int list, pbl_task_t *t);

/* Loop thread: takes list `list` whole, oldest first (NULL: empty). */
pbl_task_t *pbl__inbox_take(pbl_loop_t *pl, int list);

/* The next task of a list taken, or NULL. */
pbl_task_t *pbl__inbox_next(pbl_task_t *t, int list);

/* in_lock: seals every list if all are empty; returns whether it did. */
bool pbl__inbox_seal_empty(pbl_loop_t *pl);

#endif
