/* The child side: pbl_worker_main() serves calls on the channel (fd 3,
 * or a launched worker's stdin and stdout: worker-chan.h).
 *
 * A worker is this program (or a worker_path program) started with the
 * argument PBL__WORKER_ARG. It reads CALL frames, runs the function
 * registered under the call's name with pbl_fail() bound to the call, and
 * answers each with a RESULT or FAIL frame carrying the call's tag. It
 * exits 0 after a call flagged LAST or at a clean end of the channel, and
 * PBL__WORKER_EXIT_PROTO if the parent sent garbage.
 *
 * Calls queue up as they are read, and before it starts the next call the
 * worker reads what the channel already holds, without blocking (up to
 * READ_AHEAD bytes of queued input). A CANCEL read then drops its call if
 * it has not started and is answered SKIPPED at once; the answer of the
 * call just run is written after those, so that a parent that gets it
 * knows whether the next call was dropped or is starting (wire.h). That
 * look costs a system call; after a read less than FRESH_NS ago it is
 * skipped (trivial calls run many per read: one recv() each took 15 % of
 * a pool's throughput), so a CANCEL that reached the worker less than
 * FRESH_NS before its call would start may come too late -- as one that
 * arrives just after the look always may: then the parent kills the
 * worker when it gets to that call (process-pool/ppool-int.h).
 *
 * Plain blocking I/O: the worker has nothing else to do. Before any
 * function runs, every fd but stdio and the channel is closed (nothing
 * the parent leaked reaches the task), the channel is made close-on-exec
 * (processes the task starts do not get it), and a local worker asks to
 * die with its parent (a launched one is watched: worker-chan.h). Its
 * first frame is a HELLO; a BYE ends it as the channel's end does.
 *
 * Answers go out through worker-out.h: a local worker started with an
 * answer journal (its marker says so; the journal is its fd 4) holds the
 * answers of BATCH calls and writes them together, by the rules there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include "answer-journal.h"
#include "process.h"
#include "wire.h"
#include "worker-chan.h"
#include "worker-out.h"

/* What pbl_fail() acts on while a function runs. */
typedef struct {
  pbl__run_ctx ctx;
  bool failed;
  int code;
  char *msg;
} worker_run;

/* Input held before it runs, beyond which the worker stops reading ahead
 * (a parent may send many large calls at once). */
#define READ_AHEAD ((size_t)4 << 20)
/* A read this recent makes the look before the next call unnecessary. */
#define FRESH_NS 50000u

/* A call read and not yet started. */
typedef struct call {
  struct call *next;
  uint64_t tag;
  uint8_t flags;
  pbl__wire_call c;
  void *payload;
  size_t len;
} call;

/* What a call gave, until its answer is written. */
typedef struct {
  pbl_buf out; /* RESULT: malloc'd by the function */
  char *msg;   /* FAIL: pbl_fail's words, or NULL */
  int err;     /* 0: RESULT; else FAIL's end code */
  int code;
  char generic[PBL__WIRE_NAME_MAX + 96];
} outcome;

typedef struct {
  pbl__worker_chan ch;
  bool bye;            /* the parent sent BYE: no more calls */
  pbl__worker_out out; /* answers not yet written */
  call *running;       /* the call being run, if any */
  outcome *answering;  /* the outcome out references, until written */
  call *head, **tail;  /* calls read, in order */
  size_t held;         /* their payload bytes */
  uint64_t read_ns;    /* uv_hrtime() of the last read */
} worker;

static void run_fail(pbl__run_ctx *c, int code, const char *msg) {
  worker_run *r = (worker_run *)c;
  if (r->failed)
    return; /* the first call wins */
  r->failed = true;
  r->code = code;
  r->msg = msg != NULL ? pbl__strdup(msg) : NULL;
}

static bool run_cancelled(pbl__run_ctx *c) {
  (void)c;
  return false; /* a cancelled process task is killed, not told */
}

/* The worker being served. Static, so that what it holds stays reachable
 * when a signal ends the worker mid-call (a timeout's SIGTERM), and every
 * exit frees it: a worker ends with calls queued when its parent goes,
 * and a leak checker tracing children reports what exit() left. */
static worker the_worker;
static pbl__wire_reader the_reader;
static worker *serving_worker;
static pbl__wire_reader *serving_reader;

static void outcome_free(outcome *o);

/* exit(), not _exit(): the task's stdio buffers flush. */
static void leave(int code) {
  worker *w = serving_worker;
  if (w != NULL) {
    while (w->head != NULL) {
      call *c = w->head;
      w->head = c->next;
      pbl__free(c->payload);
      pbl__free(c);
    }
    if (w->running != NULL) {
      pbl__free(w->running->payload);
      pbl__free(w->running);
    }
    if (w->answering != NULL)
      outcome_free(w->answering);
    pbl__worker_out_free(&w->out);
    serving_worker = NULL;
  }
  if (serving_reader != NULL)
    pbl__wire_reader_free(serving_reader);
  serving_reader = NULL;
  exit(code);
}

static void die(int code, const char *what) {
  fprintf(stderr, "pebble worker %ld: %s\n", (long)getpid(), what);
  leave(code);
}

static void setup(worker *w, long parent, uint64_t grace_ms) {
  bool launched = parent == 0;
  if (pbl__worker_chan_open(&w->ch, launched, grace_ms) != 0)
    die(PBL__WORKER_EXIT_SETUP,
        launched ? "cannot move the channel off stdio" : "no channel on fd 3");
  if (!launched) {
    /* A worker whose parent died has nobody to answer to. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if ((long)getppid() != parent)
      exit(0); /* the parent died before the request took hold */
  }
  if (pbl__worker_chan_hello(&w->ch) != 0)
    leave(0); /* nobody to serve */
  if (launched && pbl__worker_chan_watch(&w->ch) != 0)
    die(PBL__WORKER_EXIT_SETUP, "cannot start the watcher thread");
}

/* Runs one call; frees its input. */
static void run_call(call *c, outcome *o) {
  memset(o, 0, sizeof(*o));
  pbl_process_fn fn = pbl__registry_find(c->c.name);
  if (fn == NULL) {
    snprintf(o->generic, sizeof(o->generic),
             "process function \"%s\" is not registered in the worker",
             c->c.name);
    o->err = PBL_ENOFUNC;
    return;
  }
  worker_run r = {{run_fail, run_cancelled, NULL}, false, 0, NULL};
  pbl__run_ctx *prev = pbl__run_enter(&r.ctx);
  int rc = fn(c->c.in, c->c.in_len, &o->out);
  pbl__run_leave(prev);
  /* The name lives in the payload: worded before the input goes. */
  snprintf(o->generic, sizeof(o->generic),
           "process function %s failed (returned %d)", c->c.name, rc);
  pbl__free(c->payload); /* the input: not kept beside the output */
  c->payload = NULL;
  o->msg = r.msg; /* NULL unless pbl_fail was called */
  if (r.failed || rc != 0) {
    o->err = PBL_EFAILED;
    o->code = r.failed ? r.code : rc;
  } else if (o->out.data == NULL && o->out.len > 0) {
    o->err = PBL_EFAILED;
    snprintf(o->generic, sizeof(o->generic),
             "process function gave a length without data");
  }
}

/* Queues the answer. It references o's output: flush before it goes. */
static int put_answer(worker *w, uint64_t tag, const outcome *o) {
  if (o->err == 0)
    return pbl__wire_batch_result(&w->out.b, tag, o->out.data, o->out.len);
  return pbl__wire_batch_fail(&w->out.b, tag, o->err, o->code,
                              o->msg != NULL ? o->msg : o->generic);
}

static void outcome_free(outcome *o) {
  pbl__free(o->msg);
  free(o->out.data); /* malloc'd by the function */
  o->msg = NULL;
  o->out.data = NULL;
}

static void call_free(worker *w, call *c) {
  w->held -= c->len;
  pbl__free(c->payload);
  pbl__free(c);
}

/* A CANCEL: its call, if it has not started, is dropped and answered. */
static int cancel(worker *w, uint64_t tag) {
  for (call **pp = &w->head; *pp != NULL; pp = &(*pp)->next) {
    call *c = *pp;
    if (c->tag != tag)
      continue;
    *pp = c->next;
    if (w->tail == &c->next)
      w->tail = pp;
    call_free(w, c);
    return pbl__wire_batch_bare(&w->out.b, PBL__WIRE_SKIPPED, tag);
  }
  return 0; /* started or answered already: too late */
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  worker *w = ctx;
  if (h->type == PBL__WIRE_PING || h->type == PBL__WIRE_BYE) {
    pbl__free(payload);
    w->bye |= h->type == PBL__WIRE_BYE;
    return 0; /* a PING's news is that bytes came */
  }
  if (h->type == PBL__WIRE_CANCEL) {
    pbl__free(payload);
    return cancel(w, h->tag);
  }
  pbl__wire_call parsed;
  if (h->type != PBL__WIRE_CALL ||
      pbl__wire_call_parse(payload, (size_t)h->len, &parsed) != 0) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  call *c = pbl__malloc(sizeof(*c));
  if (c == NULL) {
    pbl__free(payload);
    return UV_ENOMEM;
  }
  c->c = parsed;
  c->next = NULL;
  c->tag = h->tag;
  c->flags = h->flags;
  c->payload = payload;
  c->len = (size_t)h->len;
  *w->tail = c;
  w->tail = &c->next;
  w->held += c->len;
  return 0;
}

/* Feeds what one read got; dies on garbage. */
static void feed(pbl__wire_reader *rd, size_t n) {
  int err = pbl__wire_reader_feed(rd, n);
  if (err == PBL_EPROTO)
    die(PBL__WORKER_EXIT_PROTO, "the parent sent malformed data");
  if (err != 0)
    die(PBL__WORKER_EXIT_SETUP, pbl_strerror(err));
}

/* The channel ended: only between frames is that clean. */
static void channel_ended(pbl__wire_reader *rd) {
  if (!pbl__wire_reader_idle(rd))
    die(PBL__WORKER_EXIT_PROTO, "the channel broke in the middle of a call");
}

/* A write's outcome: a parent gone means nobody to answer. */
static void wrote_or_exit(int err) {
  if (err == UV_EPIPE || err == UV_ECONNRESET)
    leave(0);
  if (err != 0)
    die(PBL__WORKER_EXIT_SETUP, pbl_strerror(err));
}

/* Reads what the channel holds now (at most READ_AHEAD of queued input),
 * without blocking. Returns false at the channel's end. */
static bool read_ahead(worker *w, pbl__wire_reader *rd) {
  uint64_t now = uv_hrtime();
  if (now - w->read_ns < FRESH_NS)
    return true;
  w->read_ns = now;
  while (w->held < READ_AHEAD && !w->bye) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(rd, &base, &len);
    ssize_t n;
    if (w->ch.sock) {
      n = recv(w->ch.in, base, len, MSG_DONTWAIT);
    } else { /* a launcher's pipe: look first */
      struct pollfd p = {.fd = w->ch.in, .events = POLLIN};
      n = poll(&p, 1, 0);
      if (n == 0)
        return true;
      if (n > 0)
        n = read(w->ch.in, base, len);
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    if (n <= 0)
      return false;
    atomic_store(&w->ch.heard, now);
    feed(rd, (size_t)n);
  }
  return true;
}

/* Blocks until something arrives. Returns false at the channel's end. */
static bool read_some(worker *w, pbl__wire_reader *rd) {
  for (;;) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(rd, &base, &len);
    ssize_t n = read(w->ch.in, base, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    w->read_ns = uv_hrtime();
    atomic_store(&w->ch.heard, w->read_ns);
    feed(rd, (size_t)n);
    return true;
  }
}

/* Started with the worker argument: glibc hands constructors the
 * program's argv. A worker whose main() never called pbl_worker_main()
 * runs the program itself, which may start workers of its own, which
 * would do the same: pbl__worker_guard() stops that. */
static bool started_as_worker, serving;

#if defined(__GLIBC__) /* other libcs call constructors without args */
__attribute__((constructor)) static void detect(int argc, char **argv) {
  started_as_worker =
      argc >= 2 && argv != NULL && argv[1] != NULL &&
      strncmp(argv[1], PBL__WORKER_ARG, strlen(PBL__WORKER_ARG)) == 0;
}
#endif

void pbl__worker_guard(void) {
  if (started_as_worker && !serving)
    die(PBL__WORKER_EXIT_SETUP,
        "started as a worker, but main() did not call pbl_worker_main() "
        "first: exiting rather than starting workers of its own");
}

/* Writes the answers queued. */
static void flush_or_exit(worker *w) {
  wrote_or_exit(pbl__worker_out_flush(&w->out));
}

static void serve(long parent, uint64_t grace_ms, bool journal) {
  serving = true;
  worker *w = &the_worker;
  pbl__wire_reader *rd = &the_reader;
  w->tail = &w->head;
  pbl__worker_out_init(&w->out, &w->ch);
  serving_worker = w;
  /* Before the channel is opened: that closes every other fd. Without
   * it the answers are written one by one. */
  if (journal)
    (void)pbl__journal_open(&w->out.j, PBL__JOURNAL_FD);
  if (pbl__wire_reader_init(rd, (uint64_t)PTRDIFF_MAX, on_frame, w) != 0)
    die(PBL__WORKER_EXIT_SETUP, "out of memory");
  serving_reader = rd;
  setup(w, parent, grace_ms);
  bool open = true;
  for (;;) {
    if (w->bye)
      open = false;        /* as at the channel's end: answer, then exit */
    if (w->head == NULL) { /* nothing to run: answer, then wait */
      flush_or_exit(w);
      if (!open || !read_some(w, rd)) {
        channel_ended(rd);
        leave(0); /* the parent closed the channel between calls */
      }
      continue;
    }
    call *c = w->head;
    w->head = c->next;
    if (w->head == NULL)
      w->tail = &w->head;
    outcome o;
    w->running = c;
    uint64_t started = w->out.j.map != NULL ? uv_hrtime() : 0;
    atomic_store(&w->ch.busy, true);
    run_call(c, &o);
    atomic_store(&w->ch.busy, false);
    w->running = NULL;
    bool last = c->flags & PBL__WIRE_F_LAST;
    bool batch = c->flags & PBL__WIRE_F_BATCH;
    uint64_t tag = c->tag;
    call_free(w, c); /* the answer holds its tag only */
    w->answering = &o;
    /* CANCELs that came meanwhile: their SKIPPED go before this answer. */
    if (open && !last && !read_ahead(w, rd)) {
      channel_ended(rd); /* the calls read are still answered */
      open = false;
    }
    int err = put_answer(w, tag, &o);
    if (err != 0)
      die(PBL__WORKER_EXIT_SETUP, pbl_strerror(err));
    /* Held only with the next call here to run: else we would wait with
     * answers held. */
    wrote_or_exit(
        pbl__worker_out_done(&w->out, batch && w->head != NULL, started));
    w->answering = NULL;
    outcome_free(&o);
    if (last)
      leave(0);
  }
}

int pbl_worker_main(int argc, char **argv) {
  size_t n = strlen(PBL__WORKER_ARG);
  if (argc < 2 || argv == NULL || argv[1] == NULL ||
      strncmp(argv[1], PBL__WORKER_ARG, n) != 0)
    return 0; /* not a worker: the program goes on */
  int version = 0, journal = 0;
  long parent = -1;
  unsigned long long grace_ms = 0;
  int got = sscanf(argv[1] + n, "%d,%ld,%llu,%d", &version, &parent, &grace_ms,
                   &journal);
  if (got < 2 || version != PBL__WIRE_VERSION || parent < 0)
    die(PBL__WORKER_EXIT_PROTO,
        "started by a parent of another pebble version");
  serve(parent, (uint64_t)grace_ms, journal == PBL__JOURNAL_FD && parent > 0);
  return 0; /* not reached */
}
