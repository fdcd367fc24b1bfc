/* Priority lanes over one run queue: the queue stays a single list in
 * run order (higher priorities first, equal ones in submission order),
 * and each priority present remembers its last element, so a new
 * element goes in after it in O(priorities) instead of a walk of the
 * queue. Takers keep popping the head as before.
 *
 * Lane 0 (the default priority) always exists, so that what never asks
 * for a priority is queued without an allocation; other lanes are added
 * as their priorities arrive and dropped once empty when room is needed.
 * Elements are opaque: the queue's owner links them and says which
 * element went where. Guarded by the queue's lock.
 */
#ifndef PBL_LANES_H
#define PBL_LANES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pbl__lane {
  int priority;
  void *last; /* its last element in the queue; NULL: empty */
} pbl__lane;

#define PBL__LANES_INLINE 4

typedef struct pbl__lanes {
  pbl__lane *v; /* sorted by priority, highest first */
  size_t n, cap;
  pbl__lane inline_[PBL__LANES_INLINE];
} pbl__lanes;

void pbl__lanes_init(pbl__lanes *l);
void pbl__lanes_free(pbl__lanes *l);

/* The lane of `priority`, added if missing. Returns 0 and sets *idx, or
 * UV_ENOMEM. Indexes hold until the next call. */
int pbl__lanes_find(pbl__lanes *l, int priority, size_t *idx);

/* The element after which a new element of lane idx goes: the lane's
 * last, else the last of the nearest higher lane that has one; NULL:
 * the queue's head. With `at_front`, ahead of the lane's own elements
 * (the last of a higher lane, or NULL). */
void *pbl__lanes_after(const pbl__lanes *l, size_t idx, bool at_front);

/* Element e, of lane idx, was linked as the lane's new last. */
static inline void pbl__lanes_set_last(pbl__lanes *l, size_t idx, void *e) {
  l->v[idx].last = e;
}

/* The queue's head element e (which the first lane with elements holds)
 * was taken off. */
void pbl__lanes_took_head(pbl__lanes *l, void *e);

/* Element e of `priority` left from anywhere in the queue; prev is the
 * element before it if that one has the same priority, else NULL. */
void pbl__lanes_removed(pbl__lanes *l, int priority, void *e, void *prev);

/* The queue was emptied. */
void pbl__lanes_clear(pbl__lanes *l);

#endif /* PBL_LANES_H */
