/* The worker's side of its channel (worker.c serves calls on it;
 * worker-chan.c opens it, writes to it and, for a launched worker,
 * watches it).
 *
 * Design notes.
 *
 * A local worker's channel is the socketpair on its fd 3; its parent is
 * the pool's process, and PR_SET_PDEATHSIG ends it with that parent. A
 * launched worker (started through ssh, srun, kubectl exec...) has no such
 * parent: its channel is its stdin and stdout, as the launcher forwards
 * them, and when the launcher on the pool's side dies the worker sees no
 * signal (ssh -T sends no SIGHUP), only the channel's end -- or nothing at
 * all, when the network went silently. So it polices itself: a watcher
 * thread ends the worker's process group (SIGTERM, the grace, SIGKILL) when
 * its channel's reading end hangs up, when its parent process changes
 * (the launcher's side of it died), or when it has heard nothing from the
 * pool for PBL__WORKER_HB_DEAD heartbeats. It does so while a function
 * runs, which is the case that matters: an idle worker reads the channel
 * and exits at its end by itself. The kill comes from a helper process
 * forked outside the group, so it goes on to SIGKILL after the worker
 * itself died of the SIGTERM -- what the function started, and a function
 * that ignores SIGTERM, still die.
 *
 * Both sides send a PING every heartbeat interval; any bytes count as
 * one. While a function runs the channel is not read, so what the watcher
 * takes for hearing the pool is the bytes waiting in it growing; a full
 * channel (a large call queued behind the running one) counts as heard:
 * the pool is waiting for us, not gone.
 *
 * Writes to the channel go through one lock: the watcher's PINGs never
 * cut into an answer (it skips a PING while an answer is being written:
 * bytes flow then anyway).
 */
#ifndef PBL_WORKER_CHAN_H
#define PBL_WORKER_CHAN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <uv.h>

/* Heartbeat interval of launched workers, and how many missed count as a
 * lost peer, on both sides. */
#define PBL__WORKER_HB_MS 1000
#define PBL__WORKER_HB_DEAD 15

typedef struct pbl__worker_chan {
  int in, out;         /* the same fd for a local worker */
  bool sock;           /* out is a socket (sendmsg without SIGPIPE) */
  bool launched;       /* watched: see the design notes */
  uint64_t grace_ms;   /* launched: SIGTERM to SIGKILL */
  uv_mutex_t lock;     /* writes to out */
  uint64_t written;    /* lock: bytes written to out, ever (the HELLO on) */
  atomic_ullong heard; /* uv_hrtime() of the last read of in */
  atomic_bool busy;    /* a function runs */
} pbl__worker_chan;

/* Opens the channel: fd 3 (local), or for a launched worker stdin and
 * stdout moved to fds of their own, with stdin then /dev/null and stdout
 * the worker's stderr, so that prints cannot corrupt frames; every other
 * fd is closed. Returns 0 or an errno-style negative code. */
int pbl__worker_chan_open(pbl__worker_chan *ch, bool launched,
                          uint64_t grace_ms);
/* Writes all of iov[0..n) (it may change iov). Returns 0 or a negative
 * code (UV_EPIPE: the parent is gone). */
int pbl__worker_chan_write(pbl__worker_chan *ch, struct iovec *iov, size_t n);
/* Sends the HELLO frame. Returns as pbl__worker_chan_write. */
int pbl__worker_chan_hello(pbl__worker_chan *ch);
/* Launched workers: starts the watcher thread. Returns 0 or libuv's
 * error. */
int pbl__worker_chan_watch(pbl__worker_chan *ch);

#endif /* PBL_WORKER_CHAN_H */
