/* A process pool's dispatch, on the loop thread: handing queued jobs to
 * workers (as many as their depth allows, one write each), starting
 * workers (with the backoff), and winding them down once the pool is
 * closed or stopped. See ppool-int.h for the design notes.
 */
#include <stdio.h>

#include "ppool-int.h"

#define MS 1000000ull

/* The moving average of a job's time, which sets the depth. */
static void on_job_done(pbl__ppool *pp, uint64_t ns) {
  pp->job_ns = pp->job_ns - pp->job_ns / 8 + ns / 8;
}

static const pbl__pworker_events worker_events = {
    .on_change = pbl__ppool_dispatch,
    .on_job_done = on_job_done,
};

/* Jobs in flight a worker may have: about PBL__PPOOL_BUDGET_NS of work. */
static unsigned depth(const pbl__ppool *pp) {
  uint64_t d =
      pp->job_ns > 0 ? 1 + PBL__PPOOL_BUDGET_NS / pp->job_ns : PBL__PPOOL_DEPTH;
  if (d < PBL__PPOOL_MIN_DEPTH)
    d = PBL__PPOOL_MIN_DEPTH;
  return d < PBL__PPOOL_DEPTH ? (unsigned)d : PBL__PPOOL_DEPTH;
}

/* lock: takes ended items out of a job just taken; they go to *skipped.
 * Returns what is left of the job (NULL: nothing) and its length. */
static pbl__pool_item *prune(pbl__pool_item *job, pbl__pool_item **skipped,
                             size_t *nskipped, unsigned *len) {
  pbl__pool_item *head = NULL, **tail = &head;
  *len = 0;
  while (job != NULL) {
    pbl__pool_item *next = job->next;
    if (pbl__task_ended(&job->base)) {
      job->next = *skipped;
      *skipped = job;
      (*nskipped)++;
    } else {
      job->next = NULL;
      *tail = job;
      tail = &job->next;
      (*len)++;
    }
    job = next;
  }
  return head;
}

/* Hands w as many queued jobs as it has room for (at most `most` in
 * flight), in one write, leaving `keep` jobs in the queue. */
static void fill(pbl__ppool *pp, pbl__pworker *w, unsigned most, size_t keep) {
  pbl_pool_t *p = &pp->base;
  pbl__pool_item *jobs[PBL__PPOOL_DEPTH], *skipped = NULL;
  size_t nskipped = 0;
  unsigned n = 0;
  bool was_idle = w->njobs == 0, retire = false;
  unsigned room = depth(pp);
  if (room > most)
    room = most;
  uv_mutex_lock(&p->lock);
  while (w->njobs < room && p->queue.head != NULL && p->jobs > keep) {
    uint32_t len = p->queue.head->chunk_len;
    /* A job that does not fit what is left of max_tasks goes to a fresh
     * worker; one larger than max_tasks goes whole to a fresh worker. */
    if (pp->max_tasks != 0 && w->sent > 0 && w->sent + len > pp->max_tasks) {
      retire = true;
      break;
    }
    size_t k;
    unsigned left;
    pbl__pool_item *job =
        prune(pbl__pool_take_job(p, &k), &skipped, &nskipped, &left);
    if (job == NULL)
      continue;
    w->sent += left;
    w->jobs[(w->first + w->njobs) % PBL__PPOOL_DEPTH] = job;
    w->njobs++;
    jobs[n++] = job;
    if (pp->max_tasks != 0 && w->sent >= pp->max_tasks) {
      retire = true;
      break;
    }
  }
  uv_mutex_unlock(&p->lock);
  if (skipped != NULL) {
    uv_mutex_lock(&p->done_lock);
    if (pbl__pool_finish(p, skipped, nskipped))
      pbl__pool_wake(p);
    uv_mutex_unlock(&p->done_lock);
  }
  for (unsigned j = 0; j < n; j++)
    for (pbl__pool_item *it = jobs[j]; it != NULL; it = it->next) {
      ((pbl__pitem *)it)->w = w;
      it->base.lflags |= PBL__L_STARTED; /* a cancel or timeout aborts it */
      pbl__task_hold(&it->base);         /* until it leaves w */
    }
  if (n > 0) {
    pbl__pworker_send(w, jobs, n);
    if (was_idle && w->state == PBL__PW_READY)
      pbl__pworker_job_starts(w, jobs[0]);
  }
  if (retire)
    pbl__pworker_retire(w);
}

static void on_backoff_closed(uv_handle_t *h) {
  pbl__ppool *pp = h->data;
  pbl_pool_t *p = &pp->base;
  pp->backoff_open = false;
  pbl__ppool_dispatch(pp); /* may open it again: before the count drops */
  uv_mutex_lock(&p->lock);
  p->unjoined--;
  pbl__pool_changed(p);
  uv_mutex_unlock(&p->lock);
  pbl__pool_settle(p); /* may let the pool go */
}

static void on_backoff(uv_timer_t *timer) {
  uv_close((uv_handle_t *)timer, on_backoff_closed);
}

/* lock: the next start waits until next_start_ns. */
static void arm_backoff(pbl__ppool *pp, uint64_t now) {
  if (pp->backoff_open || uv_timer_init(pp->base.loop->uv, &pp->backoff) != 0)
    return; /* without a timer the next dispatch starts it */
  pp->backoff_open = true;
  pp->backoff.data = pp;
  pp->base.unjoined++;                   /* closed before the pool is done */
  uv_unref((uv_handle_t *)&pp->backoff); /* the queued tasks keep the loop */
  pbl__timer_start(&pp->backoff, on_backoff,
                   (pp->next_start_ns - now + MS - 1) / MS);
}

/* lock: the next starts wait for the backoff, if it runs: true. */
static bool backing_off(pbl__ppool *pp) {
  uint64_t now = uv_hrtime();
  if (now >= pp->next_start_ns)
    return false;
  arm_backoff(pp, now);
  return true;
}

/* Starts n workers whose slots the caller counted (under the lock).
 * Returns how many started. */
static unsigned start_n(pbl__ppool *pp, unsigned n0) {
  pbl_pool_t *p = &pp->base;
  for (unsigned i = 0; i < n0; i++) {
    uv_mutex_lock(&p->lock);
    pbl__plaunch *l = pbl__ppool_launch_pick(pp);
    if (l == NULL) /* launchers busy starting: their HELLOs dispatch again */
      pp->slots -= n0 - i;
    uv_mutex_unlock(&p->lock);
    if (l == NULL)
      return i;
    int err = pbl__pworker_start(pp, l, &worker_events);
    if (err == 0)
      continue;
    char msg[128];
    snprintf(msg, sizeof(msg), "cannot start a worker process: %s",
             pbl_strerror(err));
    uv_mutex_lock(&p->lock);
    pp->slots -= n0 - i - 1; /* the starts not tried */
    if (pp->slots == 0) {    /* nobody will run the queue: no task hangs */
      pp->starts_blocked = true;
      if (pbl__pool_fail_queued(p, err, err, msg))
        pbl__pool_wake(p);
    }
    uv_mutex_unlock(&p->lock);
    return i;
  }
  return n0;
}

/* Starts workers for the jobs the workers there will not take soon.
 * Returns how many started. */
static unsigned start_workers(pbl__ppool *pp) {
  pbl_pool_t *p = &pp->base;
  unsigned n = 0;
  uv_mutex_lock(&p->lock);
  if (p->state != PBL__POOL_STOPPED && !pp->starts_blocked && p->jobs > 0 &&
      pp->slots < pp->target) {
    size_t room = 0;
    QUEUE *q;
    PBL__PPOOL_EACH(q, pp) {
      pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
      if (w->state == PBL__PW_HELLO || w->state == PBL__PW_STARTING ||
          (w->state == PBL__PW_READY && w->njobs == 0 && !w->wr_broken))
        room++; /* it will run the next job */
    }
    /* A job that would wait behind a busy worker's gets a worker of its
     * own while there are slots: a long task must not queue behind
     * another when `workers` allows a second process. */
    if (p->jobs > room) {
      size_t need = p->jobs - room;
      size_t free_slots = pp->target - pp->slots;
      n = (unsigned)(need < free_slots ? need : free_slots);
    }
  }
  if (n > 0 && backing_off(pp))
    n = 0;
  pp->slots += n;
  uv_mutex_unlock(&p->lock);
  return start_n(pp, n);
}

/* Spare workers: once the pool is in use, `spare` started workers beyond
 * the ones that run or will run the queue, so that a worker that dies, is
 * killed or retires is replaced by one that is ready at once; the spare's
 * own replacement then starts in the background. Returns how many
 * started. */
static unsigned start_spares(pbl__ppool *pp) {
  pbl_pool_t *p = &pp->base;
  unsigned n = 0;
  uv_mutex_lock(&p->lock);
  if (pp->spare > 0 && p->state == PBL__POOL_RUNNING && !pp->starts_blocked &&
      pp->slots > 0 && pp->slots < pp->target + pp->spare) {
    size_t idle = 0;
    QUEUE *q;
    PBL__PPOOL_EACH(q, pp) {
      pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
      if (w->state == PBL__PW_HELLO || w->state == PBL__PW_STARTING ||
          (w->state == PBL__PW_READY && w->njobs == 0 && !w->wr_broken))
        idle++;
    }
    /* Queued jobs go to idle workers first: those are not spares. */
    idle = idle > p->jobs ? idle - p->jobs : 0;
    if (idle < pp->spare) {
      unsigned want = pp->spare - (unsigned)idle;
      unsigned room = pp->target + pp->spare - pp->slots;
      n = want < room ? want : room;
    }
  }
  if (n > 0 && backing_off(pp))
    n = 0;
  pp->slots += n;
  uv_mutex_unlock(&p->lock);
  return start_n(pp, n);
}

/* A closed pool retires its idle workers once its queue is empty; a
 * stopped one kills those that still run something. */
static void wind_down_workers(pbl__ppool *pp) {
  pbl_pool_t *p = &pp->base;
  uv_mutex_lock(&p->lock);
  int state = p->state;
  bool empty = p->queue.head == NULL;
  uv_mutex_unlock(&p->lock);
  if (state == PBL__POOL_RUNNING || !empty)
    return;
  if (state == PBL__POOL_STOPPED && pp->backoff_open &&
      !uv_is_closing((uv_handle_t *)&pp->backoff))
    uv_close((uv_handle_t *)&pp->backoff, on_backoff_closed);
  QUEUE *q;
  PBL__PPOOL_EACH(q, pp) {
    pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
    bool busy = w->njobs > 0 || w->state == PBL__PW_HELLO ||
                w->state == PBL__PW_STARTING;
    if (state == PBL__POOL_STOPPED && busy)
      pbl__pworker_kill(w, pp->grace_ms);
    else if (w->state == PBL__PW_READY)
      pbl__pworker_retire(w);
  }
}

void pbl__ppool_dispatch(pbl__ppool *pp) {
  PBL__ASSERT_LOOP(pp->base.loop);
  if (pp->dispatching) { /* a kill inside: go round once more */
    pp->redispatch = true;
    return;
  }
  pp->dispatching = true;
  do {
    pp->redispatch = false;
    /* At most `workers` ready ones take jobs: with spares there are more
     * started. (One retiring with jobs left is not counted: its slot is
     * free, as without spares.) */
    unsigned busy = 0, starting = 0;
    QUEUE *q;
    PBL__PPOOL_EACH(q, pp) {
      pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
      if (w->njobs > 0 && w->state == PBL__PW_READY)
        busy++;
      else if (w->state == PBL__PW_HELLO || w->state == PBL__PW_STARTING)
        starting++;
    }
    /* One job to each idle worker first; then the busy ones take what
     * depth() allows, leaving in the queue a job for each worker starting
     * or that a free slot lets start, while `workers` allows it to run
     * one: a job goes behind another on a busy worker only when no other
     * worker will take it soon. */
    PBL__PPOOL_EACH(q, pp) {
      pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
      if (w->state != PBL__PW_READY || w->wr_broken || w->njobs > 0 ||
          busy >= pp->target) /* past it: a spare, while the others run */
        continue;
      fill(pp, w, 1, 0);
      if (w->njobs > 0)
        busy++;
    }
    /* Workers about to take a job: those starting, and those a free
     * slot lets start_workers() start below. */
    uv_mutex_lock(&pp->base.lock);
    unsigned coming = starting;
    if (pp->base.state == PBL__POOL_RUNNING && !pp->starts_blocked &&
        pp->slots < pp->target)
      coming += pp->target - pp->slots;
    uv_mutex_unlock(&pp->base.lock);
    unsigned free = pp->target > busy ? pp->target - busy : 0;
    size_t keep = coming < free ? coming : free;
    PBL__PPOOL_EACH(q, pp) {
      pbl__pworker *w = QUEUE_DATA(q, pbl__pworker, link);
      if (w->state == PBL__PW_READY && !w->wr_broken && w->njobs > 0 &&
          w->njobs < PBL__PPOOL_DEPTH)
        fill(pp, w, PBL__PPOOL_DEPTH, keep);
    }
    if (start_workers(pp) + start_spares(pp) > 0)
      pp->redispatch = true; /* ready ones take jobs at once */
    wind_down_workers(pp);
  } while (pp->redispatch);
  pp->dispatching = false;
}
