/* One-shot process tasks: pbl_process() runs a registered function in a
 * new worker process.
 *
 * Design notes.
 *
 * start: spawn the worker (child.c), write one CALL flagged LAST (the
 * input is referenced by the write, not copied again, and freed when the
 * write finishes), read the answer. A RESULT ends the task done at once:
 * its payload, read straight into its final buffer, is the result. A FAIL
 * ends it failed with the worker's message. Anything else is PBL_EPROTO
 * and the worker is killed.
 *
 * The child's exit and the end of its channel come in either order. The
 * exit alone does not decide: the answer may still sit unread in the
 * socket. So on exit the channel is drained without blocking; what the
 * child wrote is all there (a process the child started may hold the
 * channel open, so its EOF is not awaited). Once both exit and channel
 * are done, a task not yet ended expired (PBL_EEXPIRED), and every handle
 * closes. The task holds one hold from spawn until the child's last
 * handle closed.
 *
 * Exit data is written under the task's stripe lock and only while the
 * task has not ended, so readers on other threads that see an end state
 * see it complete.
 */
#include <stdint.h>
#include <string.h>

#include "process.h"
#include "wire.h"

typedef struct {
  pbl_task_t base; /* first: a process task is a pbl_task_t */
  pbl__proc_info proc;
  const char *fn_name; /* the registry's */
  char *worker_path;   /* copied; NULL: this program */
  void *in;            /* copied input, until written */
  size_t in_len;
  pbl__child *child;   /* loop; NULL once closed */
  pbl__wire_reader rd; /* loop */
  pbl__wire_batch wb;  /* loop: the CALL being written */
  int64_t status;      /* loop: the child's exit */
  int sig;
  bool reading, answered, finished;
  bool hello; /* the worker announced itself (its first frame) */
} process_task;

static void finish(process_task *pt);

/* Loop thread: the task could not start; its callback runs later. */
static void fail_now(pbl_task_t *t, int err, pbl__deliver_mode mode) {
  pbl__task_end(t, PBL_FAILED, err, NULL, NULL, mode);
}

/* The worker broke the protocol (or we ran out of memory reading it, or
 * could not start talking to it). mode: NOW inside a uv callback, POST
 * inside start (which may run inside the caller's pbl_process()). */
static void broken(process_task *pt, int err, pbl__deliver_mode mode) {
  pbl__channel_stop(pt->child, &pt->reading);
  pbl__timeout_disarm(&pt->base);
  fail_now(&pt->base, err, mode);
  pbl__child_kill(pt->child, 0);
  finish(pt);
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  process_task *pt = ctx;
  pbl_task_t *t = &pt->base;
  pbl__wire_fail f;
  if (h->type == PBL__WIRE_HELLO && !pt->hello) { /* the worker's first */
    pbl__free(payload);
    pt->hello = true;
    return 0;
  }
  if (!pt->hello || h->tag != t->id || pt->answered ||
      !pbl__wire_ran(h->type) ||
      (h->type == PBL__WIRE_FAIL &&
       pbl__wire_fail_parse(payload, (size_t)h->len, &f) != 0)) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  pt->answered = true;
  pbl__timeout_disarm(t);
  /* The worker exits after its LAST answer; one that lingers (a hung
   * atexit handler, say) would hold the loop open forever. */
  pbl__child_expect_exit(pt->child, pbl__kill_grace_ms(t),
                         pbl__kill_grace_ms(t));
  if (h->type == PBL__WIRE_RESULT) {
    pt->proc.len = (size_t)h->len; /* read only once DONE is seen */
    if (!pbl__task_end(t, PBL_DONE, 0, payload, NULL, PBL__DELIVER_NOW))
      pbl__free(payload); /* cancelled or timed out first */
    return 0;
  }
  pbl__failure *fl = pbl__wire_failure(&f);
  pbl__free(payload);
  pbl__task_end(t, PBL_FAILED, fl != NULL ? f.err : UV_ENOMEM, NULL, fl,
                PBL__DELIVER_NOW);
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  process_task *pt = pbl__child_data(h->data);
  (void)suggested;
  pbl__wire_reader_buf(&pt->rd, &buf->base, &buf->len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  process_task *pt = pbl__child_data(s->data);
  (void)buf;
  if (nread > 0) {
    int err = pbl__wire_reader_feed(&pt->rd, (size_t)nread);
    if (err != 0)
      broken(pt, err, PBL__DELIVER_NOW);
  } else if (nread < 0) { /* UV_EOF, or the child reset the channel */
    pbl__channel_stop(pt->child, &pt->reading);
    finish(pt);
  }
}

/* After the exit: whatever the child wrote is in the socket already. */
static void drain(process_task *pt) {
  if (!pt->reading)
    return;
  int err = pbl__channel_drain(pbl__child_stream(pt->child, PBL__WORKER_FD),
                               &pt->rd, NULL);
  if (err != 0) {
    broken(pt, err, PBL__DELIVER_NOW);
    return;
  }
  pbl__channel_stop(pt->child, &pt->reading);
}

static void on_exit(pbl__child *c, int64_t status, int sig) {
  process_task *pt = pbl__child_data(c);
  pbl_task_t *t = &pt->base;
  pt->status = status;
  pt->sig = sig;
  pbl__task_lock(t);
  if (!pbl__task_ended(t)) {
    pt->proc.exit_status = (int)status;
    pt->proc.term_signal = sig;
  }
  pbl__task_unlock(t);
  drain(pt);
  finish(pt);
}

/* Once the child exited and its channel is done: decide and close. */
static void finish(process_task *pt) {
  pbl_task_t *t = &pt->base;
  if (pt->finished || pt->reading || !pbl__child_exited(pt->child))
    return;
  pt->finished = true;
  pbl__timeout_disarm(t);
  if (!pbl__task_ended(t)) {
    pt->proc.words =
        pbl__worker_exit_words(pbl__child_pid(pt->child), pt->status, pt->sig);
    pbl__task_end(t, PBL_EXPIRED, PBL_EEXPIRED, NULL, NULL, PBL__DELIVER_NOW);
  }
  pbl__child_close(pt->child);
}

static void on_written(uv_write_t *req, int status) {
  process_task *pt = req->data;
  (void)status; /* a worker that died unread is told by its exit */
  pbl__wire_batch_free(&pt->wb);
  pbl__free(pt->in);
  pt->in = NULL;
}

static void on_closed(void *data) {
  process_task *pt = data;
  pt->child = NULL;
  pbl__wire_reader_free(&pt->rd);
  pbl__task_drop(&pt->base); /* may retire the task */
}

static void send_call(process_task *pt) {
  uv_stream_t *ch = pbl__child_stream(pt->child, PBL__WORKER_FD);
  uv_buf_t *bufs;
  size_t n;
  int err = pbl__wire_batch_bufs(&pt->wb, &bufs, &n);
  pt->wb.req.data = pt;
  if (err == 0)
    err = uv_write(&pt->wb.req, ch, bufs, (unsigned)n, on_written);
  if (err != 0)
    broken(pt, err, PBL__DELIVER_POST);
}

static void process_start(pbl_task_t *t) {
  process_task *pt = (process_task *)t;
  int err = pbl__wire_reader_init(&pt->rd, (uint64_t)PTRDIFF_MAX, on_frame, pt);
  if (err == 0)
    err = pbl__wire_batch_call(&pt->wb, t->id, PBL__WIRE_F_LAST, pt->fn_name,
                               pt->in, pt->in_len);
  if (err != 0) {
    fail_now(t, err, PBL__DELIVER_POST);
    return;
  }
  pbl__task_hold(t);
  err = pbl__worker_spawn(t->loop, pt->worker_path, on_exit, on_closed, pt,
                          &pt->child);
  if (err != 0) {
    if (pt->child == NULL)
      pbl__task_drop(t); /* else on_closed drops it */
    fail_now(t, err, PBL__DELIVER_POST);
    return;
  }
  /* The timeout counts from the running child, not from before its start:
   * what the start cost is not taken off it. */
  if (t->x != NULL)
    t->x->started_ns = uv_hrtime();
  atomic_store_explicit(&pt->proc.pid, pbl__child_pid(pt->child),
                        memory_order_release);
  (void)pbl__task_begin(t); /* false: cancelled meanwhile; abort follows */
  pbl__timeout_arm(t);
  uv_stream_t *ch = pbl__child_stream(pt->child, PBL__WORKER_FD);
  ch->data = pt->child;
  err = uv_read_start(ch, on_alloc, on_read);
  if (err != 0) {
    broken(pt, err, PBL__DELIVER_POST);
    return;
  }
  pt->reading = true;
  send_call(pt);
}

static void process_abort(pbl_task_t *t) {
  process_task *pt = (process_task *)t;
  if (pt->child != NULL)
    pbl__child_kill(pt->child, pbl__kill_grace_ms(t));
}

static void process_destroy(pbl_task_t *t) {
  process_task *pt = (process_task *)t;
  if (atomic_load(&t->state) == PBL_DONE)
    pbl__free(t->u.result);
  pbl__wire_reader_free(&pt->rd);
  pbl__wire_batch_free(&pt->wb);
  pbl__free(pt->in);
  pbl__free(pt->worker_path);
  pbl__free(pt->proc.words);
}

static pbl__proc_info *process_proc(const pbl_task_t *t) {
  return &((process_task *)t)->proc;
}

static const pbl__task_ops process_ops = {
    .kind = "process",
    .start = process_start,
    .abort = process_abort,
    .destroy = process_destroy,
    .message = pbl__proc_message,
    .proc = process_proc,
    .needs_loop = true,
};

int pbl_process(pbl_loop_t *pl, pbl_process_fn fn, const void *in, size_t len,
                const pbl_task_opts *opts, pbl_task_t **task) {
  if (!PBL__VALID_LOOP(pl) || fn == NULL || (in == NULL && len > 0) ||
      (opts != NULL && opts->worker_path != NULL &&
       opts->worker_path[0] == '\0'))
    return UV_EINVAL;
  const char *name = pbl__registry_name(fn);
  if (name == NULL)
    return PBL_ENOFUNC;
  pbl_task_t *t;
  int err = pbl__task_new(pl, &process_ops, sizeof(process_task), opts,
                          task != NULL, &t);
  if (err != 0)
    return err;
  process_task *pt = (process_task *)t;
  pt->fn_name = name;
  pt->in_len = len;
  if (len > 0) {
    pt->in = pbl__malloc(len);
    if (pt->in != NULL)
      memcpy(pt->in, in, len);
  }
  if (opts != NULL && opts->worker_path != NULL)
    pt->worker_path = pbl__strdup(opts->worker_path);
  if ((len > 0 && pt->in == NULL) ||
      (opts != NULL && opts->worker_path != NULL && pt->worker_path == NULL)) {
    pbl__task_discard(t);
    return UV_ENOMEM;
  }
  return pbl__task_submit_out(t, task, NULL, NULL);
}
