/* The seed's first example: launch a task in a thread and wait for its
 * result. Python Pebble:
 *
 *     @thread
 *     def do_job(foo, bar=0):
 *         return foo + bar
 *
 *     task = do_job(1, bar=2)
 *     print(task.get())
 *
 * No uv loop of our own here: the default loop runs on a background
 * thread, and pbl_task_get() blocks the main thread until the result is
 * in. Prints 3. */
#include <stdint.h>
#include <stdio.h>

#include <pebble.h>

typedef struct {
  int foo, bar;
} job_args;

static void *do_job(void *arg) {
  const job_args *a = arg;
  return (void *)(intptr_t)(a->foo + a->bar);
}

int main(void) {
  job_args args = {.foo = 1, .bar = 2};
  pbl_task_t *task;
  int err = pbl_thread(pbl_default_loop(), do_job, &args, NULL, &task);
  if (err != 0) {
    fprintf(stderr, "pbl_thread: %s\n", pbl_strerror(err));
    return 1;
  }
  void *result;
  err = pbl_task_get(task, -1, &result); /* blocks until it ends */
  pbl_task_release(task);
  if (err != 0) {
    fprintf(stderr, "task: %s\n", pbl_strerror(err));
    return 1;
  }
  printf("%d\n", (int)(intptr_t)result);
  return 0;
}
