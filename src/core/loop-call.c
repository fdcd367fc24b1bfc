/* Running a function on the loop thread from any thread, and waiting
 * for its result: see pbl__loop_call() in internal.h. */
#include "internal.h"

/* A one-shot internal task: its start runs on the loop thread, and the
 * caller waits for it like for any task. Used where libuv wants the loop
 * thread (uv_async_init) and the caller may be elsewhere (the default
 * loop). */
typedef struct {
  pbl_task_t base;
  int (*fn)(void *arg);
  void *arg;
  int err;
} call_task;

static void call_start(pbl_task_t *t) {
  call_task *c = (call_task *)t;
  c->err = c->fn(c->arg);
  pbl__task_end(t, PBL_DONE, 0, NULL, NULL, PBL__DELIVER_NOW);
}

static const pbl__task_ops call_ops = {
    .kind = "loop-call",
    .start = call_start,
    .needs_loop = true,
    .unnumbered = true,
};

int pbl__loop_call(pbl_loop_t *pl, int (*fn)(void *arg), void *arg) {
  if (pbl__on_loop_thread(pl))
    return pbl__loop_is_closing(pl) ? PBL_ECLOSED : fn(arg);
  pbl_task_t *t;
  int err = pbl__task_new(pl, &call_ops, sizeof(call_task), NULL, true, &t);
  if (err != 0)
    return err;
  call_task *c = (call_task *)t;
  c->fn = fn;
  c->arg = arg;
  c->err = PBL_ECLOSED; /* if the binding closes before it runs */
  err = pbl__loop_submit(pl, t);
  if (err != 0) {
    pbl__task_discard(t);
    return err;
  }
  (void)pbl_task_wait(t, -1);
  err = c->err;
  pbl_task_release(t);
  return err;
}
