/* A process pool's worker, parent side: start, send calls, read answers,
 * and the ways it ends (killed, dead, retired). Loop thread only. See
 * ppool.h for the design notes.
 */
#include <stdio.h>
#include <string.h>

#include "ppool.h"

#define MS 1000000ull
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000

/* One write of calls to a worker. It keeps a reference on every item
 * whose input it points at, until it finished. */
struct pbl__pwrite {
  pbl__wire_batch b; /* b.req is the uv_write_t */
  pbl__pworker *w;
  pbl_task_t **refs;
  size_t nrefs, cap;
};

static void detach(pbl__pworker *w);

/* ---- small things ---- */

pbl__pool_item *pbl__pworker_head(const pbl__pworker *w) {
  return w->njobs > 0 ? w->jobs[w->first] : NULL;
}

void pbl__pworker_vacate(pbl__pworker *w) {
  if (!w->slot)
    return;
  w->slot = false;
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  w->pp->slots--;
  w->pp->vacated++;
  uv_mutex_unlock(&p->lock);
}

static void stop_reading(pbl__pworker *w) {
  if (!w->reading)
    return;
  w->reading = false;
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  if (ch != NULL)
    uv_read_stop(ch);
}

/* The pool is done with `it` on this worker. */
static void leave(pbl__pool_item *it) {
  ((pbl__pitem *)it)->w = NULL;
  pbl__task_drop(&it->base); /* the dispatch hold */
}

/* done: hands items to the pool and wakes its drain. */
static void finish_locked(pbl_pool_t *p, pbl__pool_item *head, size_t n) {
  if (pbl__pool_finish(p, head, n))
    pbl__pool_wake(p); /* items are live: the async is not closing */
}

/* ---- writing ---- */

static void pwrite_free(pbl__pwrite *wr) {
  pbl__wire_batch_free(&wr->b);
  pbl__free(wr->refs);
  pbl__free(wr);
}

static void on_written(uv_write_t *req, int status) {
  pbl__pwrite *wr = PBL__CONTAINER_OF(req, pbl__pwrite, b.req);
  pbl__pworker *w = wr->w;
  for (size_t i = 0; i < wr->nrefs; i++)
    pbl_task_release(wr->refs[i]);
  wr->nrefs = 0;
  pbl__wire_batch_reset(&wr->b);
  if (w->spare == NULL)
    w->spare = wr;
  else
    pwrite_free(wr);
  /* A worker we cannot write to will not answer: its exit decides. */
  if (status < 0 && status != UV_ECANCELED && w->state != PBL__PW_DYING)
    pbl__child_kill(w->child, 0);
}

static pbl__pwrite *pwrite_get(pbl__pworker *w) {
  pbl__pwrite *wr = w->spare;
  if (wr != NULL) {
    w->spare = NULL;
    return wr;
  }
  wr = pbl__calloc(1, sizeof(*wr));
  if (wr != NULL) {
    pbl__wire_batch_init(&wr->b);
    wr->w = w;
  }
  return wr;
}

static int pwrite_add(pbl__pwrite *wr, pbl__pool_item *it) {
  if (wr->nrefs == wr->cap) {
    size_t cap = wr->cap != 0 ? wr->cap * 2 : 8;
    pbl_task_t **refs = pbl__realloc(wr->refs, cap * sizeof(*refs));
    if (refs == NULL)
      return UV_ENOMEM;
    wr->refs = refs;
    wr->cap = cap;
  }
  pbl__pitem *pi = (pbl__pitem *)it;
  int err = pbl__wire_batch_call(&wr->b, it->base.id, 0, pi->fn_name, pi->in,
                                 pi->in_len);
  if (err == 0)
    wr->refs[wr->nrefs++] = pbl_task_retain(&it->base);
  return err;
}

/* Writes the batch; on failure the worker is put down: its exit tells
 * what became of its items. */
static void pwrite_go(pbl__pworker *w, pbl__pwrite *wr, int err) {
  uv_buf_t *bufs;
  size_t n;
  if (err == 0)
    err = pbl__wire_batch_bufs(&wr->b, &bufs, &n);
  if (err == 0) {
    uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
    err = uv_write(&wr->b.req, ch, bufs, (unsigned)n, on_written);
  }
  if (err == 0)
    return;
  on_written(&wr->b.req, UV_ECANCELED);
  pbl__child_kill(w->child, 0);
}

void pbl__pworker_send(pbl__pworker *w, pbl__pool_item **jobs, unsigned n) {
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL) {
    pbl__child_kill(w->child, 0);
    return;
  }
  int err = 0;
  for (unsigned j = 0; j < n && err == 0; j++)
    for (pbl__pool_item *it = jobs[j]; it != NULL && err == 0; it = it->next)
      err = pwrite_add(wr, it);
  pwrite_go(w, wr, err);
}

static void send_init(pbl__pworker *w) {
  pbl__ppool *pp = w->pp;
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL) {
    pbl__child_kill(w->child, 0);
    return;
  }
  pwrite_go(w, wr,
            pbl__wire_batch_call(&wr->b, PBL__PPOOL_INIT_TAG, 0, pp->init_name,
                                 pp->init_in, pp->init_len));
}

/* ---- starting items and jobs ---- */

/* `it` reached the head of w: the worker runs it now. */
static void item_starts(pbl__pworker *w, pbl__pool_item *it) {
  pbl__pitem *pi = (pbl__pitem *)it;
  atomic_store_explicit(&pi->proc.pid, w->pid, memory_order_release);
  if (!pbl__task_begin(&it->base)) /* it ended while queued on w */
    pbl__pworker_kill(w, pbl__ppool_grace(w->pp, &it->base));
}

void pbl__pworker_job_starts(pbl__pworker *w, pbl__pool_item *job) {
  pbl__pool_waits *waits = &w->pp->waits;
  uint64_t now = uv_hrtime();
  w->job_start_ns = now;
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    uint64_t wait = now - it->queued_ns;
    waits->total += wait;
    if (wait > waits->max)
      waits->max = wait;
    pbl__task_extra *x = it->base.x;
    if (x != NULL && x->timeout_ms > 0 && !pbl__task_ended(&it->base)) {
      x->started_ns = now; /* the chunk's start: a timeout per chunk */
      pbl__timeout_arm(&it->base);
    }
  }
  item_starts(w, job);
}

/* The head was answered: take it off, start what comes next. */
static void advance(pbl__pworker *w) {
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
  uint64_t now = job_done ? uv_hrtime() : 0;
  pbl__pool_add_waits(p, &w->pp->waits);
  finish_locked(p, it, 1);
  uv_mutex_unlock(&p->done_lock);
  leave(it);
  if (job_done)
    pbl__ppool_job_took(w->pp, now - w->job_start_ns);
  if (!job_done)
    item_starts(w, w->jobs[slot]);
  else if (w->njobs > 0)
    pbl__pworker_job_starts(w, w->jobs[w->first]);
}

/* ---- answers ---- */

static void answered(pbl__pworker *w) {
  w->answered = true;
  w->pp->early_deaths = 0;
  w->pp->next_start_ns = 0;
}

/* The initializer failed (or never finished): the tasks waiting fail
 * with its words, and no worker starts until a task arrives. */
static void init_failed(pbl__pworker *w, int err, int code, const char *msg) {
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  w->pp->starts_blocked = true;
  if (pbl__pool_fail_queued(p, err, code, msg))
    pbl__pool_wake(p);
  uv_mutex_unlock(&p->lock);
}

static int init_answer(pbl__pworker *w, const pbl__wire_head *h,
                       void *payload) {
  pbl__wire_fail f;
  if (h->tag != PBL__PPOOL_INIT_TAG || h->type == PBL__WIRE_CALL ||
      (h->type == PBL__WIRE_FAIL &&
       pbl__wire_fail_parse(payload, (size_t)h->len, &f) != 0)) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  answered(w);
  if (h->type == PBL__WIRE_RESULT) {
    pbl__free(payload); /* what an initializer returns is not kept */
    w->state = PBL__PW_READY;
    return 0;
  }
  pbl__failure *fl = pbl__wire_failure(&f);
  pbl__free(payload);
  init_failed(w, fl != NULL ? f.err : UV_ENOMEM, fl != NULL ? fl->code : 0,
              fl != NULL ? fl->msg : NULL);
  pbl__free(fl);
  w->state = PBL__PW_READY; /* for retire: it is sound, only unusable */
  pbl__pworker_retire(w);
  return 0;
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  pbl__pworker *w = ctx;
  if (w->state == PBL__PW_DYING) { /* killed while this batch was read */
    pbl__free(payload);
    return 0;
  }
  if (w->state == PBL__PW_STARTING)
    return init_answer(w, h, payload);
  pbl__pool_item *it = pbl__pworker_head(w);
  pbl__wire_fail f;
  if (it == NULL || h->tag != it->base.id || h->type == PBL__WIRE_CALL ||
      (h->type == PBL__WIRE_FAIL &&
       pbl__wire_fail_parse(payload, (size_t)h->len, &f) != 0)) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  answered(w);
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
  if (w->state == PBL__PW_STARTING) {
    char msg[96];
    snprintf(msg, sizeof(msg), "initializer: worker %d: %s", w->pid,
             pbl_strerror(err));
    init_failed(w, err, 0, msg);
  } else if (pbl__pworker_head(w) != NULL) {
    pbl__task_end(&pbl__pworker_head(w)->base, PBL_FAILED, err, NULL, NULL,
                  PBL__DELIVER_LATER);
  }
  pbl__pworker_kill(w, 0);
}

/* Answers were read: a retiring worker that owes nothing more is done. */
static void after_answers(pbl__pworker *w) {
  if (w->state == PBL__PW_RETIRING && w->njobs == 0 && w->slot) {
    pbl__pworker_vacate(w);
    pbl__child_ref(w->child, true); /* reaped before uv_run() returns */
    pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
  }
  pbl__ppool_dispatch(w->pp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  pbl__pworker *w = h->data;
  (void)suggested;
  pbl__wire_reader_buf(&w->rd, &buf->base, &buf->len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pbl__pworker *w = s->data;
  (void)buf;
  if (nread > 0) {
    int err = pbl__wire_reader_feed(&w->rd, (size_t)nread);
    if (err != 0)
      broken(w, err);
    after_answers(w);
  } else if (nread < 0) {
    /* The worker closed its channel: it is exiting (its exit decides);
     * one that goes on without it is killed after the grace. */
    stop_reading(w);
    pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
  }
}

/* ---- ends ---- */

/* Takes every item off w: ended ones are finished, the others requeued
 * (cancelled if the pool stopped). */
static void detach(pbl__pworker *w) {
  pbl_pool_t *p = &w->pp->base;
  pbl__pool_item *keep[PBL__PPOOL_DEPTH] = {NULL};
  pbl__pool_item *fin = NULL, **fin_tail = &fin;
  size_t nfin = 0;
  unsigned njobs = w->njobs;
  uv_mutex_lock(&p->lock);
  bool stopped = p->state == PBL__POOL_STOPPED;
  uv_mutex_lock(&p->done_lock);
  for (unsigned j = 0; j < njobs; j++) {
    pbl__pool_item **tail = &keep[j];
    pbl__pool_item *it = w->jobs[(w->first + j) % PBL__PPOOL_DEPTH];
    while (it != NULL) {
      pbl__pool_item *next = it->next;
      it->next = NULL;
      if (stopped) /* stop ended them all; only a race could leave one */
        pbl__task_end(&it->base, PBL_CANCELLED, UV_ECANCELED, NULL, NULL,
                      PBL__DELIVER_LATER);
      if (pbl__task_ended(&it->base)) {
        leave(it); /* the pool keeps it until drained: nothing is freed */
        *fin_tail = it;
        fin_tail = &it->next;
        nfin++;
      } else {
        *tail = it;
        tail = &it->next;
      }
      it = next;
    }
    w->jobs[(w->first + j) % PBL__PPOOL_DEPTH] = NULL;
  }
  w->njobs = 0;
  w->first = 0;
  if (fin != NULL)
    finish_locked(p, fin, nfin);
  uv_mutex_unlock(&p->done_lock);
  /* Kept items are not ended, so not delivered: dropping the dispatch
   * hold cannot retire one (under the lock: nothing to call out to). */
  for (unsigned j = 0; j < njobs; j++)
    for (pbl__pool_item *it = keep[j]; it != NULL; it = it->next) {
      pbl__timeout_disarm(&it->base); /* it starts anew on its next worker */
      atomic_store_explicit(&((pbl__pitem *)it)->proc.pid, 0,
                            memory_order_relaxed);
      leave(it);
    }
  for (unsigned j = njobs; j-- > 0;)
    if (keep[j] != NULL)
      pbl__pool_requeue(p, keep[j]);
  uv_mutex_unlock(&p->lock);
}

void pbl__pworker_kill(pbl__pworker *w, uint64_t grace_ms) {
  if (w->state == PBL__PW_DYING)
    return;
  pbl__pool_item *head = pbl__pworker_head(w);
  if (head != NULL && pbl_task_state_of(&head->base) == PBL_TIMED_OUT)
    for (pbl__pool_item *it = head->next; it != NULL; it = it->next)
      pbl__task_end(&it->base, PBL_TIMED_OUT, UV_ETIMEDOUT, NULL, NULL,
                    PBL__DELIVER_LATER); /* its chunk's time is up too */
  w->state = PBL__PW_DYING;
  stop_reading(w);
  detach(w);
  pbl__pworker_vacate(w);
  pbl__child_ref(w->child, true); /* reaped before uv_run() returns */
  pbl__child_kill(w->child, grace_ms);
  pbl__child_close(w->child); /* its pipes now; the rest once reaped */
  pbl__ppool_dispatch(w->pp); /* a replacement, the requeued jobs */
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  pbl__free(req);
}

void pbl__pworker_retire(pbl__pworker *w) {
  if (w->state != PBL__PW_READY)
    return;
  w->state = PBL__PW_RETIRING;
  uv_shutdown_t *req = pbl__malloc(sizeof(*req));
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  if (req == NULL || ch == NULL || uv_shutdown(req, ch, on_shutdown) != 0) {
    pbl__free(req);
    w->state = PBL__PW_READY;
    pbl__pworker_kill(w, w->pp->grace_ms);
    return;
  }
  if (w->njobs == 0) {
    pbl__pworker_vacate(w);
    pbl__child_ref(w->child, true);
    pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
  }
}

/* A worker that died on its own: its running item expires. */
static void died(pbl__pworker *w, int64_t status, int sig) {
  pbl__ppool *pp = w->pp;
  char who[64], *words;
  if (w->state == PBL__PW_RETIRING && w->njobs == 0) {
    w->state = PBL__PW_DYING; /* retired: the exit it was asked for */
    pbl__pworker_vacate(w);   /* if its last answers came with the exit */
    return;
  }
  bool early = !w->answered;
  snprintf(who, sizeof(who), "worker %d", w->pid);
  if (status == 0 && sig == 0) {
    char buf[128];
    snprintf(buf, sizeof(buf), "%s exited with status 0 without sending a "
             "result", who);
    words = pbl__strdup(buf);
  } else {
    words = pbl__exit_words(who, status, sig);
  }
  pbl__pool_item *head = pbl__pworker_head(w);
  if (w->state == PBL__PW_STARTING) {
    char msg[192];
    snprintf(msg, sizeof(msg), "initializer did not finish: %s",
             words != NULL ? words : who);
    init_failed(w, PBL_EFAILED, 0, msg);
  } else if (head != NULL) {
    pbl_task_t *t = &head->base;
    pbl__pitem *pi = (pbl__pitem *)head;
    pbl__task_lock(t);
    if (!pbl__task_ended(t)) {
      pi->proc.exit_status = (int)status;
      pi->proc.term_signal = sig;
      pbl__free(pi->words);
      pi->words = words; /* published by the end */
      words = NULL;
    }
    pbl__task_unlock(t);
    pbl__task_end(t, PBL_EXPIRED, PBL_EEXPIRED, NULL, NULL,
                  PBL__DELIVER_LATER);
  }
  pbl__free(words);
  w->state = PBL__PW_DYING;
  detach(w);
  pbl__pworker_vacate(w);
  if (early) { /* dying at start again and again: slow the starts down */
    unsigned k = ++pp->early_deaths;
    uint64_t ms = 0;
    if (k >= 2) {
      ms = BACKOFF_FIRST_MS << (k - 2 < 7 ? k - 2 : 7);
      if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    }
    pp->next_start_ns = uv_hrtime() + ms * MS;
  }
}

static void on_exit(pbl__child *c, int64_t status, int sig) {
  pbl__pworker *w = pbl__child_data(c);
  if (w->reading) { /* what it wrote before it died is there already */
    int err = pbl__channel_drain(pbl__child_stream(c, PBL__WORKER_FD), &w->rd);
    if (err != 0)
      broken(w, err);
    stop_reading(w);
  }
  if (w->state != PBL__PW_DYING)
    died(w, status, sig);
  pbl__child_close(c);
  pbl__ppool_dispatch(w->pp);
}

static void on_closed(void *data) {
  pbl__pworker *w = data;
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  QUEUE_REMOVE(&w->link);
  p->unjoined--;
  pbl__pool_changed(p);
  uv_mutex_unlock(&p->lock);
  pbl__wire_reader_free(&w->rd);
  if (w->spare != NULL)
    pwrite_free(w->spare);
  pbl__free(w);
  pbl__pool_settle(p); /* may let the pool go: p is not used after */
}

/* ---- start ---- */

int pbl__pworker_start(pbl__ppool *pp) {
  pbl_pool_t *p = &pp->base;
  pbl__pworker *w = pbl__calloc(1, sizeof(*w));
  int err = UV_ENOMEM;
  if (w != NULL)
    err = pbl__wire_reader_init(&w->rd, (uint64_t)PTRDIFF_MAX, on_frame, w);
  if (err != 0) {
    pbl__free(w);
    uv_mutex_lock(&p->lock);
    pp->slots--;
    uv_mutex_unlock(&p->lock);
    return err;
  }
  w->pp = pp;
  w->state = PBL__PW_DYING; /* until it runs */
  uv_mutex_lock(&p->lock);
  QUEUE_INSERT_TAIL(&pp->workers, &w->link);
  p->unjoined++;
  uv_mutex_unlock(&p->lock);
  err = pbl__worker_spawn(p->loop->uv, pp->worker_path, on_exit, on_closed, w,
                          &w->child);
  uv_mutex_lock(&p->lock);
  if (err != 0) {
    pp->slots--; /* never started: not a slot given back */
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
      pbl__free(w);
    }
    return err;
  }
  w->slot = true;
  w->pid = pbl__child_pid(w->child);
  w->state = pp->init_name != NULL ? PBL__PW_STARTING : PBL__PW_READY;
  pbl__child_ref(w->child, false); /* an idle pool is not work */
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  ch->data = w;
  err = uv_read_start(ch, on_alloc, on_read);
  if (err != 0) {
    pbl__pworker_kill(w, 0);
    return 0; /* it started, and was put down: its slot is free again */
  }
  w->reading = true;
  if (w->state == PBL__PW_STARTING)
    send_init(w);
  return 0;
}
