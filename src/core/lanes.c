/* Priority lanes over one run queue (lanes.h). */
#include <string.h>

#include "internal.h"
#include "lanes.h"

void pbl__lanes_init(pbl__lanes *l) {
  l->v = l->inline_;
  l->cap = PBL__LANES_INLINE;
  l->n = 1;
  l->v[0].priority = 0;
  l->v[0].last = NULL;
}

void pbl__lanes_free(pbl__lanes *l) {
  if (l->v != l->inline_)
    pbl__free(l->v);
  l->v = l->inline_;
  l->n = 0;
}

/* Drops empty lanes but lane 0. */
static void compact(pbl__lanes *l) {
  size_t k = 0;
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].last != NULL || l->v[i].priority == 0)
      l->v[k++] = l->v[i];
  l->n = k;
}

static int grow(pbl__lanes *l) {
  if (l->cap > SIZE_MAX / 2 / sizeof(pbl__lane))
    return UV_ENOMEM;
  pbl__lane *v = pbl__malloc(l->cap * 2 * sizeof(*v));
  if (v == NULL)
    return UV_ENOMEM;
  memcpy(v, l->v, l->n * sizeof(*v));
  if (l->v != l->inline_)
    pbl__free(l->v);
  l->v = v;
  l->cap *= 2;
  return 0;
}

int pbl__lanes_find(pbl__lanes *l, int priority, size_t *idx) {
  size_t i = 0;
  while (i < l->n && l->v[i].priority > priority)
    i++;
  if (i < l->n && l->v[i].priority == priority) {
    *idx = i;
    return 0;
  }
  if (l->n == l->cap) {
    compact(l);
    if (l->n == l->cap) {
      int err = grow(l);
      if (err != 0)
        return err;
    }
    i = 0; /* compacted: look again */
    while (i < l->n && l->v[i].priority > priority)
      i++;
  }
  memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof(l->v[0]));
  l->v[i].priority = priority;
  l->v[i].last = NULL;
  l->n++;
  *idx = i;
  return 0;
}

void *pbl__lanes_after(const pbl__lanes *l, size_t idx, bool at_front) {
  if (!at_front && l->v[idx].last != NULL)
    return l->v[idx].last;
  while (idx-- > 0)
    if (l->v[idx].last != NULL)
      return l->v[idx].last;
  return NULL;
}

void pbl__lanes_took_head(pbl__lanes *l, void *e) {
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].last != NULL) {
      if (l->v[i].last == e)
        l->v[i].last = NULL; /* its only element left */
      return;
    }
}

void pbl__lanes_removed(pbl__lanes *l, int priority, void *e, void *prev) {
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].priority == priority) {
      if (l->v[i].last == e)
        l->v[i].last = prev;
      return;
    }
}

void pbl__lanes_clear(pbl__lanes *l) {
  for (size_t i = 0; i < l->n; i++)
    l->v[i].last = NULL;
}
