/* The seed's fourth example: a pool of five threads runs ten tasks; each
 * callback prints the task's id, its result and the worker thread's id.
 * Python Pebble:
 *
 *     def task_done(task):
 *         results, thread_id = task.get()
 *         print("Task %s returned %d from thread %s" % (task.id, results,
 *                                                      thread_id))
 *
 *     def do_job(foo, bar=0):
 *         return foo + bar, current_thread().ident
 *
 *     with ThreadPool(workers=5) as tp:
 *         for i in range(0, 10):
 *             tp.schedule(do_job, args=(i, ), callback=task_done)
 *
 * No uv loop of our own: the pool lives on the default loop, whose thread
 * runs the callbacks. close + join is the `with` block's end: no new
 * tasks, wait until every task ended, its callback ran and the pool's
 * threads are joined. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall() */
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <pebble.h>

typedef struct {
  int foo, bar;
} job_args;

typedef struct {
  int sum;
  unsigned long thread_id;
} job_result;

/* The kernel's id for the calling thread, as `ps -L` shows it. */
static unsigned long thread_id(void) {
#ifdef SYS_gettid
  return (unsigned long)syscall(SYS_gettid);
#else
  return (unsigned long)uv_thread_self();
#endif
}

static void *do_job(void *arg) {
  const job_args *a = arg;
  job_result *r = malloc(sizeof(*r));
  if (r == NULL) {
    pbl_fail(0, "out of memory");
    return NULL;
  }
  r->sum = a->foo + a->bar;
  r->thread_id = thread_id();
  return r;
}

/* On the loop thread, once per task. */
static void task_done(pbl_task_t *task, void *data) {
  (void)data;
  void *result;
  int err = pbl_task_get(task, 0, &result);
  if (err != 0) {
    printf("Task %llu failed: %s\n", (unsigned long long)pbl_task_id(task),
           pbl_task_message(task));
    return;
  }
  job_result *r = result;
  printf("Task %llu returned %d from thread %lu\n",
         (unsigned long long)pbl_task_id(task), r->sum, r->thread_id);
  free(r);
}

int main(void) {
  pbl_pool_opts po = {.workers = 5};
  pbl_pool_t *tp;
  int err = pbl_thread_pool_new(pbl_default_loop(), &po, &tp);
  if (err != 0) {
    fprintf(stderr, "pbl_thread_pool_new: %s\n", pbl_strerror(err));
    return 1;
  }
  job_args args[10];
  pbl_task_opts to = {.on_done = task_done};
  for (int i = 0; i < 10; i++) {
    args[i] = (job_args){.foo = i, .bar = 0};
    /* NULL task: fire and forget, the callback has it. */
    err = pbl_pool_thread(tp, do_job, &args[i], &to, NULL);
    if (err != 0)
      fprintf(stderr, "pbl_pool_thread: %s\n", pbl_strerror(err));
  }
  pbl_pool_close(tp);          /* no new tasks; the queue drains */
  err = pbl_pool_join(tp, -1); /* blocks until all is done */
  pbl_pool_free(tp);
  if (err != 0) {
    fprintf(stderr, "pbl_pool_join: %s\n", pbl_strerror(err));
    return 1;
  }
  return 0;
}
