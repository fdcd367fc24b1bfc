/* Queue deadlines (pbl_task_opts.queue_timeout_ms): a uv timer armed on
 * the loop thread for what is left of the task's allowed wait, counted
 * from its creation. When it fires, a task that has still not started
 * ends TIMED_OUT; one that started meanwhile is left alone. The queue's
 * owner disarms it once the task is done with the queue: a timer still
 * armed would keep the loop alive for the rest of the wait.
 */
#include "internal.h"

#define NS_PER_MS 1000000ull

static void on_closed(uv_handle_t *h) {
  pbl_task_t *t = h->data;
  pbl__free(h);
  pbl__task_drop(t); /* may retire t */
}

void pbl__queue_deadline_disarm(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (t->x == NULL || t->x->qtimer == NULL)
    return;
  uv_timer_t *timer = t->x->qtimer;
  t->x->qtimer = NULL;
  uv_close((uv_handle_t *)timer, on_closed);
}

static void on_deadline(uv_timer_t *timer) {
  pbl_task_t *t = timer->data;
  pbl__task_hold(t); /* keep t while it delivers and disarms */
  (void)pbl__task_end_unstarted(t);
  pbl__queue_deadline_disarm(t);
  pbl__task_drop(t);
}

void pbl__queue_deadline_arm(pbl_task_t *t) {
  PBL__ASSERT_LOOP(t->loop);
  if (!pbl__task_has_queue_deadline(t) || t->x->qtimer != NULL ||
      pbl_task_state_of(t) != PBL_PENDING)
    return;
  uint64_t limit_ms = (uint64_t)t->x->queue_timeout_ms;
  uint64_t waited_ms = (uv_hrtime() - t->x->queued_ns) / NS_PER_MS;
  uint64_t left_ms = waited_ms >= limit_ms ? 0 : limit_ms - waited_ms;
  uv_timer_t *timer = pbl__malloc(sizeof(*timer));
  if (timer == NULL || uv_timer_init(t->loop->uv, timer) != 0) {
    /* No timer, no deadline: end the task now rather than let it wait
     * past what its caller allows (as timeout.c does). */
    pbl__free(timer);
    pbl__task_end(t, PBL_FAILED, UV_ENOMEM, NULL, NULL, PBL__DELIVER_POST);
    return;
  }
  timer->data = t;
  t->x->qtimer = timer;
  pbl__task_hold(t);
  pbl__timer_start(timer, on_deadline, left_ms);
}
