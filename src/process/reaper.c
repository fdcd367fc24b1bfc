/* Reaping our children on SIGCHLD. See reaper.h. */
#include "reaper.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "core/internal.h"

struct pbl__reaper {
  uv_signal_t sig;
  QUEUE children;     /* pbl__reaped, started or about to be */
  size_t n, nref;     /* in children; of those, ref'd */
  bool refd;          /* sig is ref'd */
  bool scanning;      /* on_sigchld runs: close after it, not during */
  pbl__reaper **slot; /* the binding's pointer to us */
  uv_thread_t thread; /* the loop thread: everything here runs on it */
};

static void on_sig_closed(uv_handle_t *h) {
  pbl__free(h->data);
}

static void update_ref(pbl__reaper *rp) {
  bool want = rp->nref > 0;
  if (want == rp->refd)
    return;
  rp->refd = want;
  if (want)
    uv_ref((uv_handle_t *)&rp->sig);
  else
    uv_unref((uv_handle_t *)&rp->sig);
}

/* No child left: the slot is free for a new reaper at once; this one's
 * handle goes on the next close phase. */
static void maybe_close(pbl__reaper *rp) {
  if (rp->n > 0 || rp->scanning)
    return;
  *rp->slot = NULL;
  uv_close((uv_handle_t *)&rp->sig, on_sig_closed);
}

static void take_out(pbl__reaped *r) {
  pbl__reaper *rp = r->reaper;
  QUEUE_REMOVE(&r->link);
  r->reaper = NULL;
  rp->n--;
  if (r->ref)
    rp->nref--;
  update_ref(rp);
}

/* Did r exit? One waitpid(pid, WNOHANG). */
static bool reap(pbl__reaped *r, int64_t *status, int *sig) {
  int st = 0;
  pid_t got;
  do
    got = waitpid(r->pid, &st, WNOHANG);
  while (got < 0 && errno == EINTR);
  if (got == 0)
    return false;
  *status = 0;
  *sig = 0;
  if (got < 0) /* ECHILD: the program reaped it with waitpid(-1) */
    return true;
  if (WIFEXITED(st))
    *status = WEXITSTATUS(st);
  else if (WIFSIGNALED(st))
    *sig = WTERMSIG(st);
  return true;
}

static void on_sigchld(uv_signal_t *h, int signum) {
  PBL__ASSERT_THREAD(&((pbl__reaper *)h->data)->thread);
  (void)signum;
  pbl__reaper *rp = h->data;
  /* Each child is asked once; an on_exit may start new children (they go
   * on rp->children) or take others out (from either list). */
  QUEUE pending;
  QUEUE_MOVE(&rp->children, &pending);
  rp->scanning = true;
  while (!QUEUE_EMPTY(&pending)) {
    QUEUE *q = QUEUE_HEAD(&pending);
    pbl__reaped *r = QUEUE_DATA(q, pbl__reaped, link);
    QUEUE_REMOVE(q);
    QUEUE_INSERT_TAIL(&rp->children, q);
    int64_t status;
    int sig;
    if (r->pid <= 0 || !reap(r, &status, &sig))
      continue;
    take_out(r);
    r->on_exit(r, status, sig);
  }
  rp->scanning = false;
  maybe_close(rp);
}

static int open_reaper(pbl__reaper **slot, uv_loop_t *loop) {
  pbl__reaper *rp = pbl__calloc(1, sizeof(*rp));
  if (rp == NULL)
    return UV_ENOMEM;
  int err = uv_signal_init(loop, &rp->sig);
  if (err != 0) {
    pbl__free(rp);
    return err;
  }
  rp->sig.data = rp;
  err = uv_signal_start(&rp->sig, on_sigchld, SIGCHLD);
  if (err != 0) {
    uv_close((uv_handle_t *)&rp->sig, on_sig_closed);
    return err;
  }
  uv_unref((uv_handle_t *)&rp->sig); /* until a child asks for it */
  QUEUE_INIT(&rp->children);
  rp->slot = slot;
  rp->thread = uv_thread_self();
  *slot = rp;
  return 0;
}

int pbl__reaper_add(pbl__reaper **slot, uv_loop_t *loop, pbl__reaped *r,
                    pbl__reaped_cb on_exit) {
  if (*slot == NULL) {
    int err = open_reaper(slot, loop);
    if (err != 0)
      return err;
  }
  pbl__reaper *rp = *slot;
  r->reaper = rp;
  r->pid = 0;
  r->ref = true;
  r->on_exit = on_exit;
  QUEUE_INSERT_TAIL(&rp->children, &r->link);
  rp->n++;
  rp->nref++;
  update_ref(rp);
  return 0;
}

void pbl__reaper_started(pbl__reaped *r, int pid) {
  PBL__ASSERT(r->reaper == NULL || pbl__on_thread(&r->reaper->thread));
  r->pid = pid;
}

void pbl__reaper_remove(pbl__reaped *r) {
  PBL__ASSERT(r->reaper == NULL || pbl__on_thread(&r->reaper->thread));
  pbl__reaper *rp = r->reaper;
  if (rp == NULL)
    return;
  take_out(r);
  maybe_close(rp);
}

void pbl__reaper_ref(pbl__reaped *r, bool ref) {
  PBL__ASSERT(r->reaper == NULL || pbl__on_thread(&r->reaper->thread));
  pbl__reaper *rp = r->reaper;
  if (r->ref == ref)
    return;
  r->ref = ref;
  if (rp == NULL)
    return;
  if (ref)
    rp->nref++;
  else
    rp->nref--;
  update_ref(rp);
}
