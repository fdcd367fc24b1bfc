/* The child side: pbl_worker_main() serves calls on the channel (fd 3).
 *
 * A worker is this program (or a worker_path program) started with the
 * argument PBL__WORKER_ARG. It reads CALL frames, runs the function
 * registered under the call's name with pbl_fail() bound to the call, and
 * answers each with a RESULT or FAIL frame carrying the call's tag. It
 * exits 0 after a call flagged LAST or at a clean end of the channel, and
 * PBL__WORKER_EXIT_PROTO if the parent sent garbage.
 *
 * Plain blocking I/O: the worker has nothing else to do. Before any
 * function runs, every fd but stdio and the channel is closed (nothing
 * the parent leaked reaches the task), the channel is made close-on-exec
 * (processes the task starts do not get it), and the worker asks to die
 * with its parent.
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

#include <dirent.h>

#include "process.h"
#include "wire.h"

/* What pbl_fail() acts on while a function runs. */
typedef struct {
  pbl__run_ctx ctx;
  bool failed;
  int code;
  char *msg;
} worker_run;

typedef struct {
  int fd;
  pbl__wire_batch out;
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

static void die(int code, const char *what) {
  fprintf(stderr, "pebble worker %ld: %s\n", (long)getpid(), what);
  exit(code);
}

/* Closes every fd above the channel. */
static void close_inherited(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
  if (close_range(PBL__WORKER_FD + 1, ~0u, 0) == 0)
    return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd > PBL__WORKER_FD && fd != self)
      (void)close(fd);
  }
  closedir(d);
}

static void setup(long parent) {
  if (fcntl(PBL__WORKER_FD, F_SETFD, FD_CLOEXEC) != 0)
    die(PBL__WORKER_EXIT_SETUP, "no channel on fd 3");
  close_inherited();
  /* A worker whose parent died has nobody to answer to. */
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
  if ((long)getppid() != parent)
    exit(0); /* the parent died before the request took hold */
}

/* Writes the whole batch, then empties it. Returns 0, UV_ENOMEM or a
 * write error (UV_EPIPE: the parent is gone). */
static int flush(worker *w) {
  uv_buf_t *bufs;
  size_t n;
  int err = pbl__wire_batch_bufs(&w->out, &bufs, &n);
  if (err != 0)
    return err;
  struct iovec *iov = (struct iovec *)bufs; /* same layout on Unix */
  while (n > 0) {
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = n > 1024 ? 1024 : n};
    ssize_t k = sendmsg(w->fd, &m, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return uv_translate_sys_error(errno);
    while (n > 0 && (size_t)k >= iov->iov_len) {
      k -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (char *)iov->iov_base + k;
      iov->iov_len -= (size_t)k;
    }
  }
  pbl__wire_batch_reset(&w->out);
  return 0;
}

/* Runs one call and queues its answer. */
static int answer(worker *w, uint64_t tag, const pbl__wire_call *call,
                  void *payload) {
  pbl_process_fn fn = pbl__registry_find(call->name);
  if (fn == NULL) {
    char msg[PBL__WIRE_NAME_MAX + 96];
    snprintf(msg, sizeof(msg),
             "process function \"%s\" is not registered in the worker",
             call->name);
    pbl__free(payload);
    return pbl__wire_batch_fail(&w->out, tag, PBL_ENOFUNC, 0, msg);
  }
  worker_run r = {{run_fail, run_cancelled, NULL}, false, 0, NULL};
  pbl_buf out = {NULL, 0};
  pbl__run_ctx *prev = pbl__run_enter(&r.ctx);
  int rc = fn(call->in, call->in_len, &out);
  pbl__run_leave(prev);
  char generic[PBL__WIRE_NAME_MAX + 64]; /* the name lives in the payload */
  snprintf(generic, sizeof(generic), "process function %s failed (returned %d)",
           call->name, rc);
  pbl__free(payload); /* the input: not kept beside the output */
  int err;
  if (r.failed || rc != 0) {
    err =
        pbl__wire_batch_fail(&w->out, tag, PBL_EFAILED, r.failed ? r.code : rc,
                             r.msg != NULL ? r.msg : generic);
  } else if (out.data == NULL && out.len > 0) {
    err = pbl__wire_batch_fail(&w->out, tag, PBL_EFAILED, 0,
                               "process function gave a length without data");
  } else {
    err = pbl__wire_batch_result(&w->out, tag, out.data, out.len);
    if (err == 0)
      err = flush(w); /* before out.data goes */
  }
  pbl__free(r.msg);
  free(out.data); /* malloc'd by the function */
  return err;
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  worker *w = ctx;
  pbl__wire_call call;
  if (h->type != PBL__WIRE_CALL ||
      pbl__wire_call_parse(payload, (size_t)h->len, &call) != 0) {
    pbl__free(payload);
    return PBL_EPROTO;
  }
  int err = answer(w, h->tag, &call, payload);
  if (err == 0)
    err = flush(w);
  if (err == UV_EPIPE || err == UV_ECONNRESET)
    exit(0); /* the parent is gone: nobody to answer */
  if (err != 0)
    return err;
  if (h->flags & PBL__WIRE_F_LAST)
    exit(0); /* exit(), not _exit(): the task's stdio buffers flush */
  return 0;
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

static void serve(long parent) {
  serving = true;
  setup(parent);
  worker w = {.fd = PBL__WORKER_FD};
  pbl__wire_batch_init(&w.out);
  pbl__wire_reader rd;
  if (pbl__wire_reader_init(&rd, (uint64_t)PTRDIFF_MAX, on_frame, &w) != 0)
    die(PBL__WORKER_EXIT_SETUP, "out of memory");
  for (;;) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(&rd, &base, &len);
    ssize_t n = read(w.fd, base, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0 && pbl__wire_reader_idle(&rd))
        exit(0); /* the parent closed the channel between calls */
      die(PBL__WORKER_EXIT_PROTO, "the channel broke in the middle of a call");
    }
    int err = pbl__wire_reader_feed(&rd, (size_t)n);
    if (err == PBL_EPROTO)
      die(PBL__WORKER_EXIT_PROTO, "the parent sent malformed data");
    if (err != 0)
      die(PBL__WORKER_EXIT_SETUP, pbl_strerror(err));
  }
}

int pbl_worker_main(int argc, char **argv) {
  size_t n = strlen(PBL__WORKER_ARG);
  if (argc < 2 || argv == NULL || argv[1] == NULL ||
      strncmp(argv[1], PBL__WORKER_ARG, n) != 0)
    return 0; /* not a worker: the program goes on */
  int version = 0;
  long parent = 0;
  if (sscanf(argv[1] + n, "%d,%ld", &version, &parent) != 2 ||
      version != PBL__WIRE_VERSION)
    die(PBL__WORKER_EXIT_PROTO,
        "started by a parent of another pebble version");
  serve(parent);
  return 0; /* not reached */
}
