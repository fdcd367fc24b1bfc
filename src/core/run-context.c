/* The run context: what pbl_fail() and pbl_cancelled() act on, in the
 * thread that runs a task's function (a thread of libuv's pool or of a
 * pool of ours, or a worker process serving a call). */
#include <stdarg.h>

#include "internal.h"

static _Thread_local pbl__run_ctx *current;

pbl__run_ctx *pbl__run_enter(pbl__run_ctx *c) {
  pbl__run_ctx *prev = current;
  current = c;
  return prev;
}

void pbl__run_leave(pbl__run_ctx *prev) {
  current = prev;
}

void pbl_fail(int code, const char *fmt, ...) {
  pbl__run_ctx *c = current;
  if (c == NULL)
    return;
  char *msg = NULL;
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    msg = pbl__vasprintf(fmt, ap);
    va_end(ap);
  }
  c->fail(c, code, msg);
  pbl__free(msg);
}

bool pbl__in_task(void) {
  return current != NULL;
}

bool pbl_cancelled(void) {
  pbl__run_ctx *c = current;
  return c != NULL && c->cancelled(c);
}

void pbl__fail_record_fail(pbl__run_ctx *c, int code, const char *msg) {
  pbl__fail_record *r = (pbl__fail_record *)c;
  r->failed = true;
  if (r->failure == NULL)
    r->failure = pbl__failure_new(code, msg != NULL ? msg : "");
}
