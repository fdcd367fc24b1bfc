/* The raw foreign-thread baseline (see raw-inbox.h). */
#include "raw-inbox.h"

#include "bench.h"

static void on_async(uv_async_t *a) {
  raw_inbox *in = a->data;
  uv_mutex_lock(&in->lock);
  raw_item *it = in->head;
  in->head = in->tail = NULL;
  uv_mutex_unlock(&in->lock);
  while (it != NULL) {
    raw_item *next = it->next; /* the work may end before we read on */
    BENCH_CHECK(uv_queue_work(a->loop, &it->req, in->work_cb, in->after_cb));
    it = next;
  }
}

void raw_inbox_init(raw_inbox *in, uv_loop_t *loop, uv_work_cb work_cb,
                    uv_after_work_cb after_cb) {
  in->head = in->tail = NULL;
  in->work_cb = work_cb;
  in->after_cb = after_cb;
  BENCH_CHECK(uv_mutex_init(&in->lock));
  BENCH_CHECK(uv_async_init(loop, &in->async, on_async));
  in->async.data = in;
}

/* The poster that makes the list non-empty wakes the loop; later posts
 * ride on that wake-up. Sending after the unlock loses nothing: a drain
 * that ran in between only makes the wake-up a spare one. But the item
 * may then be taken, run and completed while its poster is still inside
 * uv_async_send: hence the rule on raw_inbox_close(). */
void raw_inbox_post(raw_inbox *in, raw_item *it) {
  it->next = NULL;
  uv_mutex_lock(&in->lock);
  int was_empty = in->head == NULL;
  if (in->tail != NULL)
    in->tail->next = it;
  else
    in->head = it;
  in->tail = it;
  uv_mutex_unlock(&in->lock);
  if (was_empty)
    BENCH_CHECK(uv_async_send(&in->async));
}

static void on_closed(uv_handle_t *h) {
  raw_inbox *in = h->data;
  uv_mutex_destroy(&in->lock);
}

void raw_inbox_close(raw_inbox *in) {
  uv_close((uv_handle_t *)&in->async, on_closed);
}
