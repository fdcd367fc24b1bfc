/* How a process pool's worker ends: killed (a timeout, a cancel, a stop,
 * garbage), dead on its own, or retired; and what becomes of its items.
 * Loop thread only. See ppool-int.h for the design notes.
 */
#include <stdio.h>

#include "ppool-int.h"

#define MS 1000000ull
#define BACKOFF_FIRST_MS 10
#define BACKOFF_MAX_MS 1000

void pbl__pworker_init_failed(pbl__pworker *w, int err, int code,
                              const char *msg) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl_pool_t *p = &w->pp->base;
  uv_mutex_lock(&p->lock);
  w->pp->starts_blocked = true;
  if (pbl__pool_fail_queued(p, err, code, msg))
    pbl__pool_wake(p);
  uv_mutex_unlock(&p->lock);
}

/* Takes every item off w: ended ones are finished, the others requeued
 * (cancelled if the pool stopped). Requeued items arrive in the queue as
 * new tasks do: they allow starts again. Starts blocked by a failing
 * initializer wait for a task to arrive, and the tasks the failure
 * failed were only those queued then: a task that was on a worker and
 * comes back would wait for ever -- and a closed pool's join with it. */
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
        /* The pool keeps it until drained: nothing is freed. */
        pbl__pworker_leave(it);
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
    pbl__ppool_finish_locked(p, fin, nfin);
  uv_mutex_unlock(&p->done_lock);
  /* Kept items are not ended, so not delivered: dropping the dispatch
   * hold cannot retire one (under the lock: nothing to call out to). */
  for (unsigned j = 0; j < njobs; j++)
    for (pbl__pool_item *it = keep[j]; it != NULL; it = it->next) {
      pbl__pitem *pi = (pbl__pitem *)it;
      pbl__timeout_disarm(&it->base); /* it starts anew on its next worker */
      atomic_store_explicit(&pi->proc.pid, 0, memory_order_relaxed);
      (void)pbl__task_unbegin(&it->base); /* a head that never got there;
                                             ended meanwhile: pruned */
      pi->cancel_sent = pi->skipped = false;
      pbl__pworker_leave(it);
    }
  for (unsigned j = njobs; j-- > 0;)
    if (keep[j] != NULL) {
      pbl__pool_requeue(p, keep[j]);
      w->pp->starts_blocked = false; /* as pp_kick does for a new task */
    }
  uv_mutex_unlock(&p->lock);
}

/* A BYE, if the channel takes it now: a launched worker that reads it
 * before the channel's end exits at once rather than ending itself. */
static void say_bye(pbl__pworker *w) {
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  if (ch == NULL || w->wr_reqs > 0)
    return; /* a frame half written: a BYE now would cut into it */
  uint8_t head[PBL__WIRE_HEAD];
  pbl__wire_head h = {.type = PBL__WIRE_BYE};
  pbl__wire_head_encode(head, &h);
  uv_buf_t b = uv_buf_init((char *)head, sizeof(head));
  (void)uv_try_write(ch, &b, 1); /* all or nothing for 24 bytes, or none */
}

void pbl__pworker_kill(pbl__pworker *w, uint64_t grace_ms) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (w->state == PBL__PW_DYING)
    return;
  pbl__pool_item *head = pbl__pworker_head(w);
  if (head != NULL && pbl_task_state_of(&head->base) == PBL_TIMED_OUT)
    for (pbl__pool_item *it = head->next; it != NULL; it = it->next)
      pbl__task_end(&it->base, PBL_TIMED_OUT, UV_ETIMEDOUT, NULL, NULL,
                    PBL__DELIVER_LATER); /* its chunk's time is up too */
  w->state = PBL__PW_DYING;
  pbl__pworker_init_over(w);
  pbl__pworker_hello_over(w);
  pbl__channel_stop(w->child, &w->reading);
  detach(w);
  pbl__pworker_vacate(w);
  pbl__child_ref(w->child, true); /* reaped before uv_run() returns */
  if (w->launch->argv != NULL) {
    /* A launcher: word first, then the channel's end (what the worker
     * acts on), then SIGTERM, which a launcher forwards (srun) or dies
     * of (ssh); never SIGKILL first, which srun does not forward. */
    say_bye(w);
    pbl__child_close(w->child);
    pbl__child_kill(w->child, grace_ms > 0 ? grace_ms : w->pp->grace_ms);
  } else {
    pbl__child_kill(w->child, grace_ms);
    pbl__child_close(w->child); /* its pipes now; the rest once reaped */
  }
  w->ev->on_change(w->pp); /* a replacement, the requeued jobs */
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  pbl__free(req);
}

void pbl__pworker_retire(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (w->state != PBL__PW_READY)
    return;
  w->state = PBL__PW_RETIRING;
  if (w->launch->argv != NULL) {
    /* The channel stays open: its end means the pool is gone. */
    pbl__pworker_send_bare(w, PBL__WIRE_BYE);
    if (w->njobs == 0) {
      pbl__pworker_vacate(w);
      pbl__child_ref(w->child, true);
      pbl__child_expect_exit(w->child, w->pp->grace_ms, w->pp->grace_ms);
    }
    return;
  }
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

/* A local worker died before its HELLO: it takes the oldest queued job
 * with it, as if it had been sent (its head then expires): a program
 * that is no worker must not leave a task queued for ever. */
static void take_one_job(pbl__pworker *w) {
  pbl_pool_t *p = &w->pp->base;
  size_t k;
  uv_mutex_lock(&p->lock);
  pbl__pool_item *job = w->njobs == 0 ? pbl__pool_take_job(p, &k) : NULL;
  if (job != NULL) {
    w->first = 0;
    w->jobs[0] = job;
    w->njobs = 1;
  }
  uv_mutex_unlock(&p->lock);
  for (pbl__pool_item *it = job; it != NULL; it = it->next) {
    ((pbl__pitem *)it)->w = w;
    it->base.lflags |= PBL__L_STARTED;
    pbl__task_hold(&it->base); /* until it leaves w */
  }
  if (job != NULL) { /* the head "ran" there: it expires with it */
    pbl__pitem *pi = (pbl__pitem *)job;
    atomic_store_explicit(&pi->proc.pid, w->pid, memory_order_release);
    (void)pbl__task_begin(&job->base); /* ended already: it stays so */
  }
}

/* Words on a launched worker's end: its launcher died (or exited). */
static char *lost_words(const pbl__pworker *w, int64_t status, int sig) {
  char who[384], *how = pbl__exit_words(w->launch->argv[0], status, sig);
  char buf[640];
  snprintf(buf, sizeof(buf), "%s was lost: %s",
           pbl__pworker_name(w, who, sizeof(who)),
           how != NULL ? how : "its launcher ended");
  pbl__free(how);
  return pbl__strdup(buf);
}

void pbl__pworker_died(pbl__pworker *w, int64_t status, int sig) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl__ppool *pp = w->pp;
  char who[384], *words;
  if (w->state == PBL__PW_RETIRING && w->njobs == 0) {
    w->state = PBL__PW_DYING; /* retired: the exit it was asked for */
    pbl__pworker_vacate(w);   /* if its last answers came with the exit */
    return;
  }
  bool early = !w->answered;
  bool launched = w->launch->argv != NULL;
  if (w->state == PBL__PW_HELLO && launched)
    pbl__pworker_launch_failed(w, status, sig);
  else if (w->state == PBL__PW_HELLO)
    take_one_job(w);
  pbl__pworker_hello_over(w);
  pbl__pworker_name(w, who, sizeof(who));
  words = launched ? lost_words(w, status, sig)
                   : pbl__worker_exit_words(w->pid, status, sig);
  /* Only a call that reached it can have killed it; one that did not
   * goes to the next worker -- unless this one never answered anything: a
   * program that is no worker must not send a task round for ever. */
  pbl__pool_item *head = pbl__pworker_head(w);
  if (head != NULL && !early &&
      !pbl__pworker_may_have_run(w, (pbl__pitem *)head))
    head = NULL;
  if (w->state == PBL__PW_STARTING && w->wr_nomem) {
    pbl__pworker_init_failed(w, UV_ENOMEM, 0,
                             "out of memory for a write to a new worker");
  } else if (w->state == PBL__PW_STARTING) {
    char msg[640];
    snprintf(msg, sizeof(msg), "initializer did not finish: %s",
             words != NULL ? words : who);
    pbl__pworker_init_failed(w, PBL_EFAILED, 0, msg);
  } else if (head != NULL && w->wr_nomem) {
    /* We killed it: a write to it found no memory. Its task did not
     * die of its own doing. */
    pbl__task_end(&head->base, PBL_FAILED, UV_ENOMEM, NULL,
                  pbl__failure_new(0, "out of memory for a write to its "
                                      "worker"),
                  PBL__DELIVER_LATER);
  } else if (head != NULL) {
    pbl_task_t *t = &head->base;
    pbl__pitem *pi = (pbl__pitem *)head;
    pbl__task_lock(t);
    if (!pbl__task_ended(t)) {
      pi->proc.exit_status = (int)status;
      pi->proc.term_signal = sig;
      pbl__free(pi->proc.words);
      pi->proc.words = words; /* published by the end */
      words = NULL;
    }
    pbl__task_unlock(t);
    pbl__task_end(t, PBL_EXPIRED, PBL_EEXPIRED, NULL, NULL, PBL__DELIVER_LATER);
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
