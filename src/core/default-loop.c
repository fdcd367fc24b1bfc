/* The default binding: the library's own uv loop, run by a background
 * thread made on first use, for programs with no loop of their own.
 *
 * A referenced "stop" async keeps that loop running while the binding is
 * idle. At exit, the stop async closes the binding (tasks cancelled,
 * children reaped, callbacks run), the loop runs dry, and the atexit
 * handler joins the thread and closes the loop.
 */
#include <stdlib.h>

#include "internal.h"

static uv_once_t once = UV_ONCE_INIT;
static pbl_loop_t *dflt;
static uv_loop_t dflt_uv;
static uv_thread_t dflt_thread;
static uv_async_t stop_async;
static uv_sem_t ready;
static _Atomic bool started; /* read by any thread */

static void on_stop_closed(uv_handle_t *h) {
  (void)h;
}

static void on_stop(uv_async_t *a) {
  pbl__loop_close_internal(dflt, NULL);
  uv_close((uv_handle_t *)a, on_stop_closed);
}

static void run(void *arg) {
  (void)arg;
  /* The binding is made here, so this thread is its loop thread. */
  int err = pbl_loop_new(&dflt_uv, &dflt);
  if (err == 0) {
    dflt->is_default = true;
    err = uv_async_init(&dflt_uv, &stop_async, on_stop);
    if (err != 0) {
      pbl__loop_close_internal(dflt, NULL);
      dflt = NULL; /* its memory goes when the close finishes */
    }
  }
  uv_sem_post(&ready);
  uv_run(&dflt_uv, UV_RUN_DEFAULT);
}

static void at_exit(void) {
  uv_thread_t self = uv_thread_self();
  if (uv_thread_equal(&self, &dflt_thread))
    return; /* exit() from a callback: the loop thread cannot join itself */
  if (pbl__in_task())
    return; /* exit() from a task: the close would wait for this very task */
  uv_async_send(&stop_async);
  uv_thread_join(&dflt_thread);
  uv_loop_close(&dflt_uv);
  uv_sem_destroy(&ready);
  started = false;       /* later calls get NULL */
  pbl__loop_unref(dflt); /* ours; tasks still held keep it readable */
}

static void start(void) {
  if (uv_loop_init(&dflt_uv) != 0)
    return;
  if (uv_sem_init(&ready, 0) != 0) {
    uv_loop_close(&dflt_uv);
    return;
  }
  if (uv_thread_create(&dflt_thread, run, NULL) != 0) {
    uv_sem_destroy(&ready);
    uv_loop_close(&dflt_uv);
    return;
  }
  uv_sem_wait(&ready);
  if (dflt == NULL) {
    uv_thread_join(&dflt_thread);
    uv_loop_close(&dflt_uv);
    uv_sem_destroy(&ready);
    return;
  }
  pbl__loop_ref(dflt); /* outlives the close, until at_exit is done */
  started = true;
  atexit(at_exit);
}

pbl_loop_t *pbl_default_loop(void) {
  uv_once(&once, start);
  return started ? dflt : NULL;
}
