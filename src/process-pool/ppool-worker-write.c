/* Writing to a process pool's worker: calls (one batch per write) and
 * cancels, and what is known to have reached it. Loop thread only. See
 * ppool-int.h for the design notes.
 *
 * Design notes.
 *
 * Only a call whose frame reached the worker's socket whole can have been
 * started by it, so only such a call may expire with the worker (a worker
 * killed from outside while idle takes no task with it). Each call's
 * frame has an end offset in the channel's byte stream (pitem.frame_end);
 * w->wr_done counts the bytes known to be in the socket. A batch is first
 * written without waiting (uv_try_write): what that took is there. The
 * rest goes in one uv_write. libuv does not say how much of a write that
 * failed went through, but while no write has failed, wr_queued minus
 * libuv's write queue size is exactly what went (writes done and not yet
 * called back included): that is read after each write, on each loop
 * turn while writes are queued (a check handle: a write makes progress in
 * one turn's poll phase and fails in a later one, and its failure is
 * called back in the turn after that, so a turn's check phase sees its
 * last progress), and when the worker's death is handled. A failed
 * write's rest leaves libuv's count at its callback: from then on
 * wr_done is final (wr_broken), and the worker is killed.
 *
 * A call in the socket is not yet a call read. A worker killed from
 * outside may live on for a moment after the kill() -- until the kernel
 * runs it again, longer if it was stopped -- and a call written meanwhile
 * lands in its socket unread. A socketpair's end closed with data still
 * in its receive queue reports ECONNRESET to our end (w->unread), after
 * what the worker wrote: at least the last byte in the socket was never
 * read. So when the call that ends exactly at wr_done is the dead
 * worker's head, the worker never had that call whole and cannot have
 * started it: it is requeued, not expired. (With calls after it in the
 * socket, how far the worker read is unknown, and the head expires as
 * before.)
 */
#include "ppool-int.h"

/* A frame of a write: its end in the batch, and its item (CALL) or NULL. */
typedef struct {
  size_t end;
  pbl__pitem *pi;
} pframe;

/* One write to a worker. It keeps a reference on every item whose input
 * it points at, until its uv_write (if it needed one) finished. */
struct pbl__pwrite {
  pbl__wire_batch b;
  pbl__pworker *w;
  pframe *frames;
  size_t nframes, cap;
  uv_buf_t *slice; /* the rest, as buffers for the uv_write */
  size_t slice_cap;
  uv_write_t req;
  uint64_t end; /* in the stream: where the batch ends */
};

void pbl__pwrite_free(pbl__pwrite *wr) {
  pbl__wire_batch_free(&wr->b);
  pbl__free(wr->frames);
  pbl__free(wr->slice);
  pbl__free(wr);
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

/* The write is over: its inputs may go; it is kept for the next. */
static void pwrite_done(pbl__pwrite *wr) {
  pbl__pworker *w = wr->w;
  for (size_t i = 0; i < wr->nframes; i++)
    if (wr->frames[i].pi != NULL)
      pbl_task_release(&wr->frames[i].pi->item.base);
  wr->nframes = 0;
  pbl__wire_batch_reset(&wr->b);
  if (w->spare == NULL)
    w->spare = wr;
  else
    pbl__pwrite_free(wr);
}

/* A write failed: nothing more is known to arrive, and a worker we cannot
 * write to will not answer: its exit decides. */
static void write_failed(pbl__pworker *w, int err) {
  if (!w->wr_broken && err == UV_ENOMEM)
    w->wr_nomem = true; /* its end is ours, not its process's */
  w->wr_broken = true;
  if (err != UV_ECANCELED && w->state != PBL__PW_DYING && w->child != NULL)
    pbl__child_kill(w->child, 0);
}

static void arrived(pbl__pworker *w, uint64_t end) {
  if (!w->wr_broken && end > w->wr_done)
    w->wr_done = end;
}

/* What went of the queued writes; exact while none failed. */
static void sample(pbl__pworker *w) {
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  if (ch != NULL)
    arrived(w, w->wr_queued - uv_stream_get_write_queue_size(ch));
}

static void on_check(uv_check_t *check) {
  sample(check->data);
}

void pbl__pworker_write_init(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (uv_check_init(w->pp->base.loop->uv, &w->wr_check) != 0)
    return; /* no sampling per turn: wr_done is only a lower bound */
  w->wr_check_open = true;
  w->wr_check.data = w;
  w->own++;
  uv_unref((uv_handle_t *)&w->wr_check); /* the writes keep the loop */
}

void pbl__pworker_write_over(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  if (!w->wr_check_open)
    return;
  w->wr_check_open = false;
  pbl__pworker_close_own(w, (uv_handle_t *)&w->wr_check);
}

static void on_written(uv_write_t *req, int status) {
  pbl__pwrite *wr = req->data;
  pbl__pworker *w = wr->w;
  if (status == 0)
    arrived(w, wr->end);
  else
    write_failed(w, status);
  if (--w->wr_reqs == 0 && w->wr_check_open)
    uv_check_stop(&w->wr_check);
  pwrite_done(wr);
}

/* Notes the frame just added to the batch (pi: its call's item). */
static int add_frame(pbl__pwrite *wr, pbl__pitem *pi) {
  int err = pbl__grow((void **)&wr->frames, &wr->cap, wr->nframes + 1,
                      sizeof(*wr->frames));
  if (err != 0)
    return err;
  wr->frames[wr->nframes++] = (pframe){pbl__wire_batch_size(&wr->b), pi};
  if (pi != NULL)
    pbl_task_retain(&pi->item.base);
  return 0;
}

/* A chunk's items but its last are flagged BATCH for a worker with a
 * journal: it may hold their answers (process/worker-out.h). Not with a
 * timeout: the chunk's items time out together, and one whose answer is
 * held when the time is up would time out though it finished. */
static int add_call(pbl__pwrite *wr, pbl__pitem *pi) {
  const pbl_task_t *t = &pi->item.base;
  bool batch = wr->w->journal.map != NULL && pi->item.next != NULL &&
               (t->x == NULL || t->x->timeout_ms == 0);
  int err = pbl__wire_batch_call(&wr->b, pi->item.base.id,
                                 batch ? PBL__WIRE_F_BATCH : 0, pi->fn_name,
                                 pi->in, pi->in_len);
  return err != 0 ? err : add_frame(wr, pi);
}

/* Queues the bytes of the batch from `from` on as a uv_write. */
static int write_rest(pbl__pworker *w, pbl__pwrite *wr, uv_stream_t *ch,
                      uv_buf_t *bufs, size_t n, size_t from) {
  int err =
      pbl__grow((void **)&wr->slice, &wr->slice_cap, n, sizeof(*wr->slice));
  if (err != 0)
    return err;
  size_t m = pbl__wire_bufs_slice(bufs, n, from, pbl__wire_batch_size(&wr->b),
                                  wr->slice);
  wr->req.data = wr;
  /* libuv copies the buffer list: slice is free again on return. */
  err = uv_write(&wr->req, ch, wr->slice, (unsigned)m, on_written);
  if (err != 0)
    return err;
  if (w->wr_reqs++ == 0 && w->wr_check_open)
    uv_check_start(&w->wr_check, on_check);
  sample(w); /* uv_write may have written some at once */
  return 0;
}

/* Writes the batch: what the socket takes now, the rest in the
 * background (see the design notes). On failure the worker is put down:
 * its exit tells what became of its items. */
static void pwrite_go(pbl__pworker *w, pbl__pwrite *wr, int err) {
  uv_stream_t *ch = pbl__child_stream(w->child, PBL__WORKER_FD);
  uv_buf_t *bufs;
  size_t n = 0;
  if (err == 0 && ch == NULL)
    err = UV_EPIPE;
  if (err == 0)
    err = pbl__wire_batch_bufs(&wr->b, &bufs, &n);
  if (err != 0) {
    write_failed(w, err);
    pwrite_done(wr);
    return;
  }
  uint64_t base = w->wr_queued;
  size_t total = pbl__wire_batch_size(&wr->b);
  for (size_t i = 0; i < wr->nframes; i++)
    if (wr->frames[i].pi != NULL)
      wr->frames[i].pi->frame_end = base + wr->frames[i].end;
  w->wr_queued += total;
  wr->end = w->wr_queued;
  int nw = w->wr_broken ? UV_EPIPE : uv_try_write(ch, bufs, (unsigned)n);
  if (nw == UV_EAGAIN)
    nw = 0; /* writes are queued already: this one goes after them */
  if (nw >= 0) {
    arrived(w, base + (size_t)nw);
    if ((size_t)nw == total) {
      pwrite_done(wr);
      return;
    }
    nw = write_rest(w, wr, ch, bufs, n, (size_t)nw);
    if (nw == 0)
      return;
  }
  write_failed(w, nw);
  pwrite_done(wr);
}

void pbl__pworker_send(pbl__pworker *w, pbl__pool_item **jobs, unsigned n) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL) {
    write_failed(w, UV_ENOMEM);
    return;
  }
  int err = 0;
  for (unsigned j = 0; j < n && err == 0; j++)
    for (pbl__pool_item *it = jobs[j]; it != NULL && err == 0; it = it->next)
      err = add_call(wr, (pbl__pitem *)it);
  pwrite_go(w, wr, err);
}

void pbl__pworker_send_init(pbl__pworker *w) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl__ppool *pp = w->pp;
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL) {
    write_failed(w, UV_ENOMEM);
    return;
  }
  int err = pbl__wire_batch_call(&wr->b, PBL__PPOOL_INIT_TAG, 0, pp->init_name,
                                 pp->init_in, pp->init_len);
  pwrite_go(w, wr, err != 0 ? err : add_frame(wr, NULL));
}

void pbl__pworker_send_cancel(pbl__pworker *w, pbl__pitem *pi) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL)
    return; /* the worker is killed if it gets to the call */
  int err = pbl__wire_batch_bare(&wr->b, PBL__WIRE_CANCEL, pi->item.base.id);
  if (err == 0)
    err = add_frame(wr, NULL);
  if (err != 0) {
    pwrite_done(wr);
    return;
  }
  pi->cancel_sent = true;
  pwrite_go(w, wr, 0);
}

bool pbl__pworker_may_have_run(pbl__pworker *w, const pbl__pitem *pi) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  sample(w);
  if (pi->frame_end > w->wr_done)
    return false; /* not whole in its socket */
  /* Bytes of ours left unread: the last one in the socket at least. If
   * that one ends pi's call, w never had the call whole. */
  return !(w->unread && pi->frame_end == w->wr_done);
}

void pbl__pworker_send_bare(pbl__pworker *w, uint8_t type) {
  PBL__ASSERT_LOOP(w->pp->base.loop);
  pbl__pwrite *wr = pwrite_get(w);
  if (wr == NULL)
    return; /* a PING missed; a BYE missed: the grace kills it */
  int err = pbl__wire_batch_bare(&wr->b, type, 0);
  if (err == 0)
    err = add_frame(wr, NULL);
  if (err != 0) {
    pwrite_done(wr);
    return;
  }
  pwrite_go(w, wr, 0);
}
