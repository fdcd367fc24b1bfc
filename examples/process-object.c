/* The seed's third example: callbacks can be (re)assigned at run time,
 * e.g. to a method of an object. Python Pebble:
 *
 *     class Foo(object):
 *         def __init__(self):
 *             self.counter = 0
 *             self.errors = 0
 *             self.do_job.callback = self.task_done
 *
 *         def task_done(self, task):
 *             try:
 *                 self.counter += task.get()
 *             except:  # exceptions are raised by get()
 *                 self.errors += 1
 *
 *         @process
 *         def do_job(self):
 *             return 1
 *
 *         @process
 *         def do_wrong_job(self):
 *             raise Exception("Ops!")
 *
 * In C, a "decorated" job is a process function plus the callback its
 * calls get; the object assigns its own callback to both jobs when it is
 * made, at run time. Five good and five failing tasks run on the
 * example's own loop until all ended. Prints 5, then 5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pebble.h>

static int do_job(const void *in, size_t len, pbl_buf *out) {
  (void)in;
  (void)len;
  int *one = malloc(sizeof(*one));
  if (one == NULL)
    return 1;
  *one = 1;
  out->data = one;
  out->len = sizeof(*one);
  return 0;
}
PBL_PROCESS_FN(do_job);

static int do_wrong_job(const void *in, size_t len, pbl_buf *out) {
  (void)in;
  (void)len;
  (void)out;
  pbl_fail(1, "Ops!"); /* the task fails with this message */
  return 1;
}
PBL_PROCESS_FN(do_wrong_job);

/* A process function with a callback that can be reassigned. */
typedef struct {
  pbl_process_fn fn;
  pbl_done_cb callback;
  void *data;
} job;

static int job_call(pbl_loop_t *pl, const job *j) {
  pbl_task_opts opts = {.on_done = j->callback, .data = j->data};
  return pbl_process(pl, j->fn, NULL, 0, &opts, NULL);
}

typedef struct {
  int counter, errors;
  job do_job, do_wrong_job;
} foo;

static void foo_task_done(pbl_task_t *task, void *data) {
  foo *self = data;
  void *result;
  if (pbl_task_get(task, 0, &result) == 0) /* ended: never blocks here */
    self->counter += *(const int *)result;
  else
    self->errors += 1;
}

static void foo_init(foo *self) {
  self->counter = 0;
  self->errors = 0;
  self->do_job = (job){do_job, NULL, NULL};
  self->do_wrong_job = (job){do_wrong_job, NULL, NULL};
  /* self.do_job.callback = self.task_done */
  self->do_job.callback = foo_task_done;
  self->do_job.data = self;
  self->do_wrong_job.callback = foo_task_done;
  self->do_wrong_job.data = self;
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv); /* in a worker: serves its task, exits */

  uv_loop_t loop;
  pbl_loop_t *pl;
  if (uv_loop_init(&loop) != 0 || pbl_loop_new(&loop, &pl) != 0)
    return 1;
  foo obj;
  foo_init(&obj);
  for (int i = 0; i < 5; i++) {
    if (job_call(pl, &obj.do_job) != 0 || job_call(pl, &obj.do_wrong_job) != 0)
      fprintf(stderr, "could not start a task\n");
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* until every task has ended */
  printf("%d\n", obj.counter);
  printf("%d\n", obj.errors);
  pbl_loop_close(pl, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
