/* Per-task timeouts: a uv timer armed when the task starts, for what
 * remains of its timeout. The timer is allocated only for tasks that have
 * a timeout, and holds the task until its handle is closed. */
#include "internal.h"

#define NS_PER_MS 1000000ull

static void on_timer_closed(uv_handle_t *h) {
  pbl_task_t *t = h->data;
  pbl__free(h);
  pbl__task_drop(t); /* may retire t */
}

void pbl__timeout_disarm(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (t->x == NULL || t->x->timer == NULL)
    return;
  uv_timer_t *timer = t->x->timer;
  t->x->timer = NULL;
  uv_close((uv_handle_t *)timer, on_timer_closed);
}

static void on_timeout(uv_timer_t *timer) {
  pbl_task_t *t = timer->data;
  pbl__task_hold(t); /* keep t while it delivers and disarms */
  pbl__task_end(t, PBL_TIMED_OUT, UV_ETIMEDOUT, NULL, NULL, PBL__DELIVER_NOW);
  pbl__timeout_disarm(t);
  pbl__task_drop(t);
}

void pbl__timeout_arm(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (t->x == NULL || t->x->timeout_ms <= 0 || t->x->timer != NULL)
    return;
  /* In milliseconds: a timeout of centuries must not wrap in ns. */
  uint64_t timeout_ms = (uint64_t)t->x->timeout_ms;
  uint64_t elapsed_ms = (uv_hrtime() - t->x->started_ns) / NS_PER_MS;
  uint64_t left_ms = elapsed_ms >= timeout_ms ? 0 : timeout_ms - elapsed_ms;
  uv_timer_t *timer = pbl__malloc(sizeof(*timer));
  if (timer == NULL || uv_timer_init(t->loop->uv, timer) != 0) {
    /* No timer, no timeout: end the task now rather than never. */
    pbl__free(timer);
    pbl__task_end(t, PBL_FAILED, UV_ENOMEM, NULL, NULL, PBL__DELIVER_POST);
    return;
  }
  timer->data = t;
  t->x->timer = timer;
  pbl__task_hold(t);
  pbl__timer_start(timer, on_timeout, left_ms);
}
