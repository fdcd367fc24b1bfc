/* The endpoints. One h2o handler on "/" dispatches on the path.
 *
 * A request that becomes a task is answered later, from the task's
 * on_done (on the loop thread). Between the two, h2o may dispose of the
 * request (its connection closed): a hook in the request's memory pool
 * (h2o_mem_alloc_shared with a dispose callback, run when the pool is
 * cleared) then forgets the request and cancels the task, which frees a
 * process pool's worker at once (the worker is killed, or drops a task
 * it had not started) and raises a thread task's pbl_cancelled().
 *
 * What h2o 2.2's HTTP/1 notices: it stops reading a connection once a
 * whole request is in (no pipelining while a request is handled), so a
 * client that closes its socket while its task runs is NOT seen then:
 * the task runs to its end, the answer's write fails, and only then is
 * the request disposed (counted 200 or whatever its end was, not 499).
 * What it does notice: a connection closed by h2o itself (a request
 * timeout, an I/O error while it still reads) and, with HTTP/2, a
 * stream reset or a closed connection, where the hook fires at once and
 * the cancel saves the work.
 *
 * The job (one per task) is freed by whichever comes last: on_done
 * (when the request was already disposed) or the pool's hook (when the
 * answer was sent). */
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

typedef struct {
  h2o_handler_t super; /* first: h2o hands us this pointer */
  httpd *s;
} handler;

typedef struct {
  httpd *s;
  h2o_req_t *req;   /* NULL once h2o disposed of the request */
  pbl_task_t *task; /* our reference, released in on_done */
  const char *what; /* the endpoint, for the words */
  size_t kb;        /* /hash's size */
  bool answered;    /* on_done answered: the pool's hook frees the job */
} job;

static void on_req_dispose(void *p) {
  job *j = *(job **)p;
  if (j->answered) {
    free(j);
    return;
  }
  j->req = NULL; /* on_done frees the job and sends nothing */
  if (pbl_task_cancel(j->task) == 0)
    j->s->client_gone_cancels++;
}

static void on_task_done(pbl_task_t *t, void *data) {
  job *j = data;
  httpd *s = j->s;
  h2o_req_t *req = j->req;
  s->in_flight--;
  if (req == NULL) { /* the client is gone: nobody to answer */
    httpd_count(s, 499);
    free(j);
  } else {
    const char *what = j->what;
    size_t kb = j->kb;
    j->answered = true; /* from here on the job belongs to the hook */
    void *result = NULL;
    size_t len;
    const char *bytes = pbl_task_bytes(t, &len);
    if (pbl_task_state_of(t) != PBL_DONE)
      httpd_answer_task_end(s, req, what, t);
    else if (kb == 0) /* a process task: its bytes */
      httpd_answer_bytes(s, req, "text/plain; charset=utf-8", bytes, len);
    else if (pbl_task_get(t, 0, &result) == 0)
      httpd_answer(s, req, 200, false, "fnv1a64 %016llx kb=%zu\n",
                   (unsigned long long)(uintptr_t)result, kb);
    else
      httpd_answer(s, req, 500, false, "%s: no result\n", what);
  }
  pbl_task_release(t);
  httpd_check_drained(s);
}

static job *job_new(httpd *s, h2o_req_t *req, const char *what) {
  job *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    httpd_answer(s, req, 500, false, "%s: out of memory\n", what);
    return NULL;
  }
  j->s = s;
  j->req = req;
  j->what = what;
  return j;
}

/* After the submit: err is pebble's answer. */
static void job_started(job *j, int err) {
  if (err != 0) {
    httpd_answer_refused(j->s, j->req, j->what, err);
    free(j);
    return;
  }
  j->s->in_flight++;
  job **hook =
      h2o_mem_alloc_shared(&j->req->pool, sizeof(*hook), on_req_dispose);
  *hook = j;
}

static pbl_task_opts task_opts(httpd *s, job *j, int priority,
                               int64_t queue_timeout_ms) {
  pbl_task_opts o = {.on_done = on_task_done,
                     .data = j,
                     .name = j->what,
                     .timeout_ms = s->o.render_timeout_ms,
                     .priority = s->o.priorities ? priority : 0,
                     .queue_timeout_ms = queue_timeout_ms};
  return o;
}

/* name=N in the query: *out in [0, max], def when absent; false when
 * malformed or out of range. */
static bool query_num(h2o_req_t *req, const char *name, uint64_t def,
                      uint64_t max, uint64_t *out) {
  *out = def;
  if (req->query_at == SIZE_MAX)
    return true;
  const char *q = req->path.base + req->query_at + 1;
  const char *end = req->path.base + req->path.len;
  size_t nlen = strlen(name);
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    if (amp == NULL)
      amp = end;
    if ((size_t)(amp - q) > nlen && memcmp(q, name, nlen) == 0 &&
        q[nlen] == '=') {
      uint64_t v = 0;
      const char *d = q + nlen + 1;
      if (d == amp)
        return false;
      for (; d < amp; d++) {
        if (*d < '0' || *d > '9' || v > max)
          return false;
        v = v * 10 + (uint64_t)(*d - '0');
      }
      if (v > max)
        return false;
      *out = v;
      return true;
    }
    q = amp + 1;
  }
  return true;
}

static void do_hash(httpd *s, h2o_req_t *req) {
  uint64_t kb;
  if (!query_num(req, "kb", 64, 1u << 16, &kb) || kb == 0) {
    httpd_answer(s, req, 400, false, "hash: kb=N, 1 to 65536\n");
    return;
  }
  job *j = job_new(s, req, "hash");
  if (j == NULL)
    return;
  j->kb = (size_t)kb;
  pbl_task_opts o = task_opts(s, j, 0, s->o.queue_timeout_ms);
  job_started(j, pbl_pool_thread(s->threads, httpd_hash_fn,
                                 (void *)(uintptr_t)kb, &o, &j->task));
}

typedef enum { RENDER, REPORT, ONESHOT } render_kind;

/* /render (interactive: high priority, a queue deadline), /report (batch:
 * low priority, no deadline), /render-oneshot (a process per request, for
 * the benchmark's comparison). */
static void do_render(httpd *s, h2o_req_t *req, render_kind kind, bool crash) {
  static const char *const names[] = {"render", "report", "render-oneshot"};
  uint64_t ms, c;
  if (!query_num(req, "ms", 10, 60000, &ms) ||
      !query_num(req, "crash", 0, 1, &c)) {
    httpd_answer(s, req, 400, false, "%s: ms=N (0 to 60000), crash=0|1\n",
                 names[kind]);
    return;
  }
  if (kind == ONESHOT && s->signals_seen > 0) {
    httpd_answer_refused(s, req, names[kind], PBL_ECLOSED);
    return;
  }
  job *j = job_new(s, req, names[kind]);
  if (j == NULL)
    return;
  httpd_render_in in = {.ms = (uint32_t)ms, .crash = crash || c != 0};
  pbl_task_opts o = kind == REPORT ? task_opts(s, j, -10, 0)
                                   : task_opts(s, j, 10, s->o.queue_timeout_ms);
  int err = kind == ONESHOT ? pbl_process(s->pl, httpd_render_fn, &in,
                                          sizeof(in), &o, &j->task)
                            : pbl_pool_process(s->procs, httpd_render_fn, &in,
                                               sizeof(in), &o, &j->task);
  job_started(j, err);
}

/* The anti-pattern the benchmark compares with: the same CPU work on the
 * loop thread, which stalls every other connection meanwhile. */
static void do_render_inline(httpd *s, h2o_req_t *req) {
  uint64_t ms;
  if (!query_num(req, "ms", 10, 60000, &ms)) {
    httpd_answer(s, req, 400, false, "render-inline: ms=N (0 to 60000)\n");
    return;
  }
  uint64_t spins = httpd_burn_ms((uint32_t)ms);
  httpd_answer(s, req, 200, false, "render-inline ms=%llu spins=%llu\n",
               (unsigned long long)ms, (unsigned long long)spins);
}

static void do_metrics(httpd *s, h2o_req_t *req) {
  size_t len;
  char *body = httpd_metrics(s, &len);
  if (body == NULL) {
    httpd_answer(s, req, 500, false, "metrics: out of memory\n");
    return;
  }
  httpd_answer_bytes(s, req, "text/plain; version=0.0.4", body, len);
  free(body);
}

static bool is(h2o_req_t *req, const char *path) {
  return h2o_memis(req->path_normalized.base, req->path_normalized.len, path,
                   strlen(path));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  httpd *s = ((handler *)self)->s;
  if (is(req, "/fast"))
    httpd_answer(s, req, 200, false, "fast\n");
  else if (is(req, "/hash"))
    do_hash(s, req);
  else if (is(req, "/render"))
    do_render(s, req, RENDER, false);
  else if (is(req, "/crash"))
    do_render(s, req, RENDER, true);
  else if (is(req, "/report"))
    do_render(s, req, REPORT, false);
  else if (is(req, "/render-oneshot"))
    do_render(s, req, ONESHOT, false);
  else if (is(req, "/render-inline"))
    do_render_inline(s, req);
  else if (is(req, "/metrics"))
    do_metrics(s, req);
  else
    httpd_answer(s, req, 404, false,
                 "no such endpoint; try /fast, /hash?kb=N, /render?ms=N, "
                 "/report?ms=N, /crash, /render-oneshot?ms=N, "
                 "/render-inline?ms=N, /metrics\n");
  return 0;
}

void httpd_handlers_register(httpd *s, h2o_pathconf_t *pathconf) {
  handler *h = (handler *)h2o_create_handler(pathconf, sizeof(*h));
  h->super.on_req = on_req;
  h->s = s;
}
