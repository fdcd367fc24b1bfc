/* The baseline for work submitted from other threads: what a libuv user
 * would write without pebble. uv_queue_work may only be called on the
 * loop thread, so other threads append to a mutex-protected list and wake
 * the loop with one uv_async_send per batch; the loop's async callback
 * takes the whole list and queues each item. */
#ifndef PBL_BENCH_RAW_INBOX_H
#define PBL_BENCH_RAW_INBOX_H

#include <uv.h>

typedef struct raw_item {
  uv_work_t req; /* req.data: the caller's */
  struct raw_item *next;
} raw_item;

typedef struct raw_inbox {
  uv_async_t async;
  uv_mutex_t lock;
  raw_item *head, *tail; /* lock */
  uv_work_cb work_cb;
  uv_after_work_cb after_cb;
} raw_inbox;

/* Loop thread. The async is ref'd: it keeps uv_run going until
 * raw_inbox_close(). */
void raw_inbox_init(raw_inbox *in, uv_loop_t *loop, uv_work_cb work_cb,
                    uv_after_work_cb after_cb);
/* Any thread: it->req is queued with uv_queue_work on the loop thread. */
void raw_inbox_post(raw_inbox *in, raw_item *it);
/* Loop thread, once every poster has returned from raw_inbox_post (join
 * the posting threads first: a poster may still be inside uv_async_send
 * after its item completed). */
void raw_inbox_close(raw_inbox *in);

#endif
