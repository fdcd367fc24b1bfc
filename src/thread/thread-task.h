/* Thread tasks (thread-task.c): what the thread pools share with them. */
#ifndef PBL_THREAD_TASK_H
#define PBL_THREAD_TASK_H

#include "core/internal.h"

/* Worker thread: runs fn(arg) for thread task t, with pbl_fail and
 * pbl_cancelled bound to it, and ends t DONE with its result or FAILED
 * with its pbl_fail (the loop delivers later). */
void pbl__thread_run_task(pbl_task_t *t, pbl_thread_fn fn, void *arg);
size_t pbl__thread_task_size(void); /* for the memory benchmark */

#endif /* PBL_THREAD_TASK_H */
