/* The seed's second example: five tasks in separate processes, their
 * results handled in a callback. Python Pebble:
 *
 *     def task_done(task):
 *         print("Task %s returned %d" % (task.id, task.get()))
 *
 *     @process(callback=task_done)
 *     def do_job(foo, bar=0):
 *         return foo + bar
 *
 *     for i in range(0, 5):
 *         do_job(i)
 *
 * Here the program is its own worker: pbl_worker_main() is the first line
 * of main(), and a child started for a task serves it there and exits.
 * The tasks run on a uv loop of the example's own, until all are done
 * (no "press return"). Prints five lines, in the order the tasks end. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pebble.h>

typedef struct {
  int foo, bar;
} job_args;

/* Runs in the child: the input and output are bytes. */
static int do_job(const void *in, size_t len, pbl_buf *out) {
  job_args a;
  if (len != sizeof(a)) {
    pbl_fail(1, "do_job: expected %zu bytes, got %zu", sizeof(a), len);
    return 1;
  }
  memcpy(&a, in, sizeof(a));
  int *sum = malloc(sizeof(*sum));
  if (sum == NULL)
    return 1;
  *sum = a.foo + a.bar;
  out->data = sum; /* freed by the library */
  out->len = sizeof(*sum);
  return 0;
}
PBL_PROCESS_FN(do_job);

/* Runs on the loop thread, once per task. */
static void task_done(pbl_task_t *task, void *data) {
  (void)data;
  size_t len;
  const int *sum = pbl_task_bytes(task, &len);
  if (sum != NULL && len == sizeof(*sum))
    printf("Task %" PRIu64 " returned %d\n", pbl_task_id(task), *sum);
  else
    printf("Task %" PRIu64 " failed: %s\n", pbl_task_id(task),
           pbl_task_message(task));
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv); /* in a worker: serves its task, exits */

  uv_loop_t loop;
  pbl_loop_t *pl;
  if (uv_loop_init(&loop) != 0 || pbl_loop_new(&loop, &pl) != 0)
    return 1;
  pbl_task_opts opts = {.on_done = task_done};
  for (int i = 0; i < 5; i++) {
    job_args a = {.foo = i, .bar = 0};
    /* NULL task: fire and forget, the callback gets it. */
    int err = pbl_process(pl, do_job, &a, sizeof(a), &opts, NULL);
    if (err != 0)
      fprintf(stderr, "pbl_process: %s\n", pbl_strerror(err));
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once every task is done */
  pbl_loop_close(pl, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : 1;
}
