/* Task accessors: state, identity, end code and words, and what process
 * kinds know of their child. Thread: any. End data is read only once the
 * state (acquire) says the task ended; see task.c's design notes. */
#include "internal.h"

pbl_task_state pbl_task_state_of(const pbl_task_t *t) {
  if (!PBL__VALID_TASK(t))
    return PBL_FAILED;
  return (pbl_task_state)atomic_load_explicit(&((pbl_task_t *)t)->state,
                                              memory_order_acquire);
}

const char *pbl_task_state_name(pbl_task_state s) {
  switch (s) {
  case PBL_PENDING:
    return "pending";
  case PBL_RUNNING:
    return "running";
  case PBL_DONE:
    return "done";
  case PBL_FAILED:
    return "failed";
  case PBL_CANCELLED:
    return "cancelled";
  case PBL_TIMED_OUT:
    return "timed out";
  case PBL_EXPIRED:
    return "expired";
  }
  return "invalid";
}

uint64_t pbl_task_id(const pbl_task_t *t) {
  return PBL__VALID_TASK(t) ? t->id : 0;
}

const char *pbl_task_name(const pbl_task_t *t) {
  return PBL__VALID_TASK(t) && t->x != NULL ? t->x->name : NULL;
}

int pbl_task_error(const pbl_task_t *t) {
  if (!PBL__VALID_TASK(t))
    return UV_EINVAL;
  return pbl__task_ended(t) ? t->err : 0;
}

int pbl_task_fail_code(const pbl_task_t *t) {
  if (pbl_task_state_of(t) != PBL_FAILED || !PBL__VALID_TASK(t))
    return 0;
  return t->u.failure != NULL ? t->u.failure->code : 0;
}

/* Words for an end, when neither pbl_fail nor the kind said more. */
static const char *end_words(const pbl_task_t *t) {
  switch (pbl_task_state_of(t)) {
  case PBL_DONE:
    return "done";
  case PBL_CANCELLED:
    return "cancelled";
  case PBL_TIMED_OUT:
    return "timed out";
  default:
    return pbl_strerror(t->err);
  }
}

const char *pbl_task_message(const pbl_task_t *t) {
  if (!PBL__VALID_TASK(t) || !pbl__task_ended(t))
    return NULL;
  if (pbl_task_state_of(t) == PBL_FAILED && t->u.failure != NULL &&
      t->u.failure->msg[0] != '\0')
    return t->u.failure->msg;
  if (pbl_task_state_of(t) == PBL_TIMED_OUT && t->x != NULL &&
      t->x->queue_expired)
    return "timed out in the queue: it never started (queue_timeout_ms)";
  const char *m = t->ops->message != NULL ? t->ops->message(t) : NULL;
  return m != NULL ? m : end_words(t);
}

static const pbl__proc_info *proc_of(const pbl_task_t *t) {
  if (!PBL__VALID_TASK(t) || t->ops->proc == NULL)
    return NULL;
  return t->ops->proc(t);
}

/* End data of a process kind, once ended. */
static const pbl__proc_info *proc_end(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_of(t);
  return p != NULL && pbl__task_ended(t) ? p : NULL;
}

const void *pbl_task_bytes(const pbl_task_t *t, size_t *len) {
  const pbl__proc_info *p = proc_end(t);
  bool done = p != NULL && pbl_task_state_of(t) == PBL_DONE;
  if (len != NULL)
    *len = done ? p->len : 0;
  return done ? t->u.result : NULL;
}

int pbl_task_exit_status(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_end(t);
  return p != NULL ? p->exit_status : 0;
}

int pbl_task_term_signal(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_end(t);
  return p != NULL ? p->term_signal : 0;
}

int pbl_task_pid(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_of(t);
  return p != NULL ? atomic_load_explicit(&((pbl__proc_info *)p)->pid,
                                          memory_order_acquire)
                   : 0;
}

const void *pbl_task_stdout(const pbl_task_t *t, size_t *len) {
  const pbl__proc_info *p = proc_end(t);
  if (len != NULL)
    *len = p != NULL ? p->out_len : 0;
  return p != NULL ? p->out : NULL;
}

const void *pbl_task_stderr(const pbl_task_t *t, size_t *len) {
  const pbl__proc_info *p = proc_end(t);
  if (len != NULL)
    *len = p != NULL ? p->err_len : 0;
  return p != NULL ? p->err : NULL;
}

uint64_t pbl_task_stdout_dropped(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_end(t);
  return p != NULL ? p->out_dropped : 0;
}

uint64_t pbl_task_stderr_dropped(const pbl_task_t *t) {
  const pbl__proc_info *p = proc_end(t);
  return p != NULL ? p->err_dropped : 0;
}
