/* A process pool's worker, parent side: start, read answers, exit and
 * close (writing to it is ppool-worker-write.c, how it ends
 * ppool-worker-end.c). Loop thread only. See ppool-int.h for the design notes.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ppool-int.h"

/* ---- small things ---- */

pbl__pool_item *pbl__pworker_head(const pbl__pworker *w) {
  return w->njobs > 0 ? w->jobs[w->first] : NULL;
}

void pbl__pworker_vacate(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (!w->slot)
    return;
  w->slot = false;
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  w->launch->slots--;
  w->pp->slots--;
  w->pp->vacated++;
  uv_mutex_unlock(&p->lock);
}

/* ---- starting items and jobs ---- */

/* `it` reached the head of w: the worker runs it now -- unless it ended
 * while queued on w and w did not drop it first: then w runs an unwanted
 * task and is put down. While answers are read (in_read) that waits for
 * the end of the read (after_answers): the worker may have finished the
 * item already, its answer held with those just read
 * (process/worker-out.h) and coming in the same read; killing it then
 * would send the finished items behind it round again. */
static void item_starts(pbl__pworker *w, pbl__pool_item *it, bool in_read) {
  pbl__pitem *pi = (pbl__pitem *)it;
  atomic_store_explicit(&pi->proc.pid, w->worker_pid, memory_order_release);
  if (pbl__task_begin(&it->base))
    return;
  if (in_read)
    w->unwanted = it;
  else
    pbl__pworker_kill(w, pbl__pworker_grace(w->pp, &it->base));
}

/* A job reached the head of w at `now`: count its wait, arm its timers. */
static void job_begins(pbl__pworker *w, pbl__pool_item *job, uint64_t now) {
  pbl__pool_waits *waits = &w->pp->waits;
  uint64_t ticks = pbl__pool_ticks();
  w->job_start_ns = now;
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    pbl__pool_count_wait(waits, ticks, it->queued);
    pbl__task_extra *x = it->base.x;
    if (x != NULL && x->timeout_ms > 0 && !pbl__task_ended(&it->base)) {
      x->started_ns = now; /* the chunk's start: a timeout per chunk */
      pbl__timeout_arm(&it->base);
    }
  }
}

void pbl__pworker_job_starts(pbl__pworker *w, pbl__pool_item *job) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  job_begins(w, job, uv_hrtime());
  item_starts(w, job, false);
}

/* The head was answered (or dropped): takes it off. Returns true if that
 * ended its job. */
static bool take_head(pbl__pworker *w) {
  pbl_pool_t *p = &w->pp->base;
  unsigned slot = w->first;
  pbl__pool_item *it = w->jobs[slot];
  uv_mutex_lock(&p->done_lock);
  w->jobs[slot] = it->next;
  it->next = NULL;
  bool job_done = w->jobs[slot] == NULL;
  if (job_done) {
    w->first = (w->first + 1) % PBL__PPOOL_DEPTH;
    w->njobs--;
  }
  pbl__pool_add_waits(p, &w->pp->waits);
  pbl__ppool_finish_locked(p, it, 1);
  uv_mutex_unlock(&p->done_lock);
  pbl__pworker_leave(it);
  if (job_done)
    w->ev->on_job_done(w->pp, w->heard_ns > w->job_start_ns
                                  ? w->heard_ns - w->job_start_ns
                                  : 0);
  return job_done;
}

/* The head was answered: take it off, and the calls w dropped after it;
 * start what comes next. The answer was read at w->heard_ns, which stands
 * for now: one clock read per read, not two per answer. */
static void advance(pbl__pworker *w) {
  bool job_done = take_head(w);
  pbl__pool_item *next;
  while ((next = pbl__pworker_head(w)) != NULL) {
    if (job_done)
      job_begins(w, next, w->heard_ns);
    if (!((pbl__pitem *)next)->skipped) {
      item_starts(w, next, true);
      return;
    }
    job_done = take_head(w);
  }
}

/* w dropped a call it had not started, on our CANCEL: the call is done
 * with once it reaches the head (at once if it is there). */
static int on_skipped(pbl__pworker *w, uint64_t tag) {
  for (unsigned j = 0; j < w->njobs; j++)
    for (pbl__pool_item *it = w->jobs[(w->first + j) % PBL__PPOOL_DEPTH];
         it != NULL; it = it->next) {
      pbl__pitem *pi = (pbl__pitem *)it;
      if (it->base.id != tag)
        continue;
      if (!pi->cancel_sent || pi->skipped || !pbl__task_ended(&it->base))
        return PBL_EPROTO; /* not a call we cancelled */
      pi->skipped = true;
      if (it == pbl__pworker_head(w))
        advance(w);
      return 0;
    }
  return PBL_EPROTO;
}

/* ---- answers ---- */

static void answered(pbl__pworker *w) {
  w->answered = true;
  w->pp->early_deaths = 0;
  w->pp->next_start_ns = 0;
}

static int init_answer(pbl__pworker *w, const pbl__wire_head *h,
                       void *payload) {
  pbl__wire_fail f;
  if (h->tag != PBL__PPOOL_INIT_TAG || !pbl__wire_ran(h->type) ||
      (h->type == PBL__WIRE_FAIL &&
       pbl__wire_fail_parse(payload, (size_t)h->len, &f) != 0)) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  answered(w);
  pbl__pworker_init_over(w);
  if (h->type == PBL__WIRE_RESULT) {
    pbl__free(payload); /* what an initializer returns is not kept */
    w->state = PBL__PW_READY;
    return 0;
  }
  pbl__failure *fl = pbl__wire_failure(&f);
  pbl__free(payload);
  pbl__pworker_init_failed(w, fl != NULL ? f.err : UV_ENOMEM,
                           fl != NULL ? fl->code : 0,
                           fl != NULL ? fl->msg : NULL);
  pbl__free(fl);
  w->state = PBL__PW_READY; /* for retire: it is sound, only unusable */
  pbl__pworker_retire(w);
  return 0;
}

static void arm_init_timer(pbl__pworker *w);

/* The worker announced itself: it gets its initializer, or jobs. */
static int hello(pbl__pworker *w, const pbl__wire_head *h, void *payload) {
  char host[PBL__WIRE_HOST_MAX + 1];
  int pid = 0;
  int err = h->type != PBL__WIRE_HELLO
                ? PBL_EPROTO
                : pbl__wire_hello_parse(payload, (size_t)h->len, &pid, host);
  pbl__free(payload);
  if (err != 0)
    return err;
  pbl__pworker_hello_over(w);
  w->launch->start_fails = 0;
  w->worker_pid = pid;
  pbl__free(w->host);
  w->host = pbl__strdup(host); /* NULL: words without it */
  if (w->pp->init_name == NULL) {
    w->state = PBL__PW_READY; /* on_change follows the read */
    return 0;
  }
  w->state = PBL__PW_STARTING;
  arm_init_timer(w);
  pbl__pworker_send_init(w);
  return 0;
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  pbl__pworker *w = ctx;
  if (w->state == PBL__PW_DYING) { /* killed while this batch was read */
    pbl__free(payload);
    return 0;
  }
  if (h->type == PBL__WIRE_PING) { /* its news is that bytes came */
    pbl__free(payload);
    return 0;
  }
  if (w->state == PBL__PW_HELLO)
    return hello(w, h, payload);
  if (w->state == PBL__PW_STARTING)
    return init_answer(w, h, payload);
  if (h->type == PBL__WIRE_SKIPPED) {
    pbl__free(payload);
    return on_skipped(w, h->tag);
  }
  pbl__pool_item *it = pbl__pworker_head(w);
  pbl__wire_fail f;
  if (it == NULL || h->tag != it->base.id || !pbl__wire_ran(h->type) ||
      (h->type == PBL__WIRE_FAIL &&
       pbl__wire_fail_parse(payload, (size_t)h->len, &f) != 0)) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  answered(w);
  if (it == w->unwanted)
    w->unwanted = NULL; /* it was done: nothing to kill */
  pbl_task_t *t = &it->base;
  if (h->type == PBL__WIRE_RESULT) {
    ((pbl__pitem *)it)->proc.len = (size_t)h->len; /* read once DONE */
    if (!pbl__task_end(t, PBL_DONE, 0, payload, NULL, PBL__DELIVER_LATER))
      pbl__free(payload); /* cancelled or timed out first */
  } else {
    pbl__failure *fl = pbl__wire_failure(&f);
    pbl__free(payload);
    pbl__task_end(t, PBL_FAILED, fl != NULL ? f.err : UV_ENOMEM, NULL, fl,
                  PBL__DELIVER_LATER);
  }
  advance(w);
  return 0;
}

/* The worker sent what we cannot read: the task it runs fails with err,
 * the worker is killed. */
static void broken(pbl__pworker *w, int err) {
  if (w->state == PBL__PW_DYING)
    return;
  if (w->state == PBL__PW_HELLO) {
    char who[384], msg[512];
    snprintf(msg, sizeof(msg), "%s: no handshake: %s",
             pbl__pworker_name(w, who, sizeof(who)), pbl_strerror(err));
    pbl__pworker_init_failed(w, err, 0, msg);
  } else if (w->state == PBL__PW_STARTING) {
    char msg[96];
    snprintf(msg, sizeof(msg), "initializer: worker %d: %s", w->pid,
             pbl_strerror(err));
    pbl__pworker_init_failed(w, err, 0, msg);
  } else if (pbl__pworker_head(w) != NULL) {
    pbl__task_end(&pbl__pworker_head(w)->base, PBL_FAILED, err, NULL, NULL,
                  PBL__DELIVER_LATER);
  }
  pbl__pworker_kill(w, 0);
}

/* Answers were read: a worker still running an unwanted item is put
 * down; a retiring worker that owes nothing more is done. */
static void after_answers(pbl__pworker *w) {
  pbl__pool_item *u = w->unwanted;
  w->unwanted = NULL;
  if (u != NULL && w->state != PBL__PW_DYING && u == pbl__pworker_head(w))
    pbl__pworker_kill(w, pbl__pworker_grace(w->pp, &u->base));
  if (w->state == PBL__PW_RETIRING && w->njobs == 0 && w->slot) {
    pbl__pworker_vacate(w);
    pbl__child_ref(w->child, true); /* reaped before uv_run() returns */
    pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
  }
  w->ev->on_change(w->pp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  pbl__pworker *w = h->data;
  (void)suggested;
  pbl__wire_reader_buf(&w->rd, &buf->base, &buf->len);
}

/* Bytes before the HELLO that are not a frame's start: a remote shell's
 * startup files printing to stdout, most likely. The start fails with
 * the bytes quoted. Returns true if so. */
static bool junk_first(pbl__pworker *w, const char *bytes, size_t n) {
  static const char magic[4] = {'p', 'b', 'l', 'w'};
  size_t i = 0;
  while (i < n && w->magic_seen < 4 && bytes[i] == magic[w->magic_seen]) {
    i++;
    w->magic_seen++;
  }
  if (i == n || w->magic_seen == 4)
    return false;
  char quoted[256], who[384], msg[768];
  size_t q = 0;
  for (size_t k = 0; k < n && k < 60 && q + 5 < sizeof(quoted); k++) {
    unsigned char c = (unsigned char)bytes[k];
    if (c == '\n')
      q += (size_t)snprintf(quoted + q, sizeof(quoted) - q, "\\n");
    else if (c < 32 || c >= 127 || c == '"' || c == '\\')
      q += (size_t)snprintf(quoted + q, sizeof(quoted) - q, "\\x%02x", c);
    else
      quoted[q++] = (char)c;
  }
  quoted[q] = '\0';
  snprintf(msg, sizeof(msg),
           "%s wrote \"%s\"%s before its handshake: shell startup output "
           "on stdout (a startup file of the remote shell prints; the "
           "channel must carry frames only)",
           pbl__pworker_name(w, who, sizeof(who)), quoted, n > 60 ? "..." : "");
  pbl__pworker_init_failed(w, PBL_EPROTO, 0, msg);
  pbl__pworker_kill(w, w->pp->grace_ms);
  return true;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pbl__pworker *w = s->data;
  if (nread > 0)
    w->heard_ns = uv_hrtime();
  if (nread > 0 && w->state == PBL__PW_HELLO &&
      junk_first(w, buf->base, (size_t)nread)) {
    after_answers(w);
    return;
  }
  if (nread > 0) {
    int err = pbl__wire_reader_feed(&w->rd, (size_t)nread);
    if (err != 0)
      broken(w, err);
    after_answers(w);
  } else if (nread < 0) {
    /* The worker closed its channel: it is exiting (its exit decides);
     * one that goes on without it is killed after the grace. */
    if (nread == UV_ECONNRESET)
      w->unread = true; /* see pbl__pworker_may_have_run */
    pbl__channel_stop(w->child, &w->reading);
    pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
  }
}

static void on_exit(pbl__child *c, int64_t status, int sig) {
  pbl__pworker *w = pbl__child_data(c);
  /* The answers drained below are read now. */
  w->heard_ns = uv_hrtime();
  if (w->reading) { /* what it wrote before it died is there already */
    int err = pbl__channel_drain(pbl__child_stream(c, PBL__WORKER_FD), &w->rd,
                                 &w->unread);
    if (err != 0)
      broken(w, err);
    pbl__channel_stop(w->child, &w->reading);
  }
  /* Then the answers it held: they end their items before we decide
   * which item it was running (answer-journal.h). */
  if (w->state != PBL__PW_DYING) {
    int err = pbl__journal_replay(&w->journal, &w->rd);
    if (err != 0)
      broken(w, err);
  }
  w->unwanted = NULL; /* dead: its head is decided below */
  pbl__pworker_init_over(w);
  if (w->state != PBL__PW_DYING)
    pbl__pworker_died(w, status, sig);
  pbl__child_close(c);
  w->ev->on_change(w->pp);
}

/* The last of w's handles (its child's, its own) closed. */
static void worker_gone(pbl__pworker *w) {
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  QUEUE_REMOVE(&w->link);
  p->unjoined--;
  pbl__pool_changed(p);
  uv_mutex_unlock(&p->lock);
  pbl__wire_reader_free(&w->rd);
  pbl__journal_free(&w->journal);
  if (w->spare != NULL)
    pbl__pwrite_free(w->spare);
  pbl__free(w->host);
  pbl__free(w);
  pbl__pool_settle(p); /* may let the pool go: p is not used after */
}

static void on_closed(void *data) {
  pbl__pworker *w = data;
  w->child = NULL;
  pbl__pworker_init_over(w);
  pbl__pworker_write_over(w);
  pbl__pworker_watch_over(w);
  if (w->own == 0)
    worker_gone(w);
}

static void on_own_closed(uv_handle_t *h) {
  pbl__pworker *w = h->data;
  if (--w->own == 0 && w->child == NULL)
    worker_gone(w);
}

void pbl__pworker_close_own(pbl__pworker *w, uv_handle_t *h) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  h->data = w;
  uv_close(h, on_own_closed);
}

void pbl__pworker_init_over(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (!w->init_timer_open)
    return;
  w->init_timer_open = false;
  pbl__pworker_close_own(w, (uv_handle_t *)&w->init_timer);
}

/* The initializer ran past init_timeout_ms: as if it failed, and its
 * worker is put down. */
static void on_init_timeout(uv_timer_t *timer) {
  pbl__pworker *w = timer->data;
  pbl__pworker_init_over(w);
  if (w->state != PBL__PW_STARTING)
    return;
  char msg[64];
  snprintf(msg, sizeof(msg), "initializer timed out after %llu ms",
           (unsigned long long)w->pp->init_timeout_ms);
  pbl__pworker_init_failed(w, PBL_EFAILED, 0, msg);
  pbl__pworker_kill(w, w->pp->grace_ms);
}

/* A STARTING worker's initializer gets init_timeout_ms (if any). */
static void arm_init_timer(pbl__pworker *w) {
  uint64_t ms = w->pp->init_timeout_ms;
  if (ms == 0 || uv_timer_init(w->pp->base.loop->uv, &w->init_timer) != 0)
    return; /* no timer: as without the option */
  w->init_timer_open = true;
  w->init_timer.data = w;
  w->own++;
  uv_unref((uv_handle_t *)&w->init_timer); /* as the worker's own handles */
  pbl__timer_start(&w->init_timer, on_init_timeout, ms);
}

/* ---- start ---- */

/* A start that did not happen gives its slot back, in the pool and in
 * its place. */
static void unslot(pbl__ppool *pp, pbl__plaunch *l) {
  pp->slots--;
  l->slots--;
  if (l->argv != NULL)
    l->hello--;
}

int pbl__pworker_start(pbl__ppool *pp, pbl__plaunch *l,
                       const pbl__pworker_events *ev) {
  PBL__ASSERT_LOOP(pp->base.loop);
  pbl_pool_t *p = &pp->base;
  pbl__pworker *w = pbl__calloc(1, sizeof(*w));
  int err = UV_ENOMEM;
  if (w != NULL)
    err = pbl__wire_reader_init(&w->rd, (uint64_t)PTRDIFF_MAX, on_frame, w);
  if (err != 0) {
    pbl__free(w);
    uv_mutex_lock(&p->lock);
    unslot(pp, l);
    uv_mutex_unlock(&p->lock);
    return err;
  }
  w->pp = pp;
  w->ev = ev;
  w->launch = l;
  w->state = PBL__PW_DYING; /* until it runs */
  uv_mutex_lock(&p->lock);
  QUEUE_INSERT_TAIL(&pp->workers, &w->link);
  p->unjoined++;
  uv_mutex_unlock(&p->lock);
  /* A local worker holds answers in a journal; without one (no memfd) it
   * writes each, as a launched one does. */
  int jfd = -1;
  if (l->argv == NULL)
    (void)pbl__journal_create(&w->journal, &jfd);
  err = pbl__worker_spawn_via(p->loop, pp->worker_path, l->argv, pp->grace_ms,
                              jfd, on_exit, on_closed, w, &w->child);
  if (jfd >= 0)
    (void)close(jfd); /* the worker has its own (or never will) */
  uv_mutex_lock(&p->lock);
  if (err != 0) {
    unslot(pp, l); /* never started: not a slot given back */
  } else if (pp->vacated > 0) {
    pp->vacated--;
    p->st.respawned++;
  }
  if (err != 0 && w->child == NULL) { /* else on_closed follows */
    QUEUE_REMOVE(&w->link);
    p->unjoined--;
    pbl__pool_changed(p);
  }
  uv_mutex_unlock(&p->lock);
  if (err != 0) {
    if (w->child == NULL) {
      pbl__wire_reader_free(&w->rd);
      pbl__journal_free(&w->journal);
      pbl__free(w);
    }
    return err;
  }
  w->slot = true;
  w->hello_owed = l->argv != NULL;
  w->pid = w->worker_pid = pbl__child_pid(w->child);
  pbl__pworker_write_init(w);
  pbl__pworker_watch(w);
  w->state = PBL__PW_HELLO;        /* nothing goes to it before its HELLO */
  pbl__child_ref(w->child, false); /* an idle pool is not work */
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  ch->data = w;
  err = uv_read_start(ch, on_alloc, on_read);
  if (err != 0) {
    pbl__pworker_kill(w, 0);
    return 0; /* it started, and was put down: its slot is free again */
  }
  w->reading = true;
  return 0;
}
