/* Command tasks: pbl_spawn() runs an argv, feeds it stdin bytes and
 * captures its stdout and stderr.
 *
 * Design notes.
 *
 * Output is always read to its end so that a chatty command never stalls
 * on a full pipe: the first capture_limit bytes of each stream are kept
 * (read straight into a buffer that grows geometrically up to the limit),
 * the rest is read into a scratch buffer and counted as dropped. A buffer
 * that cannot grow (no memory) drops the rest of its stream the same way.
 *
 * The end is decided once the command exited and both its stdout and
 * stderr reached EOF: exit 0 is done; a non-zero exit failed (PBL_EFAILED,
 * fail code = the exit status); a signal we did not send expired. A
 * process the command left behind (a daemon, `sleep 9 &`) may hold the
 * pipes open for ever: after the exit, output is read for at most the
 * task's kill grace, then the pipes are closed and the exit decides with
 * what was read. The exit also disarms the timeout: the command ran in
 * time, only its output is awaited. A
 * timeout or cancel kills the command's process group (child.c) and has
 * already ended the task. A command that cannot start fails with libuv's
 * code. Captured output and exit data are published with the end, under
 * the stripe lock, only when the exit decides the end.
 */
#include <stdio.h>
#include <string.h>

#include "process.h"

#define DEFAULT_LIMIT ((size_t)16 << 20)
#define CHUNK 65536

typedef struct {
  char *buf;
  size_t len, cap;
  uint64_t dropped;
  bool eof;
} capture;

typedef struct {
  pbl_task_t base; /* first: a command task is a pbl_task_t */
  pbl__proc_info proc;
  char **argv; /* deep copies */
  char **env;
  char *cwd;
  void *in; /* stdin bytes, until written */
  size_t in_len;
  size_t limit;
  capture cap[2]; /* stdout, stderr */
  char *scratch;  /* reads past the limit */
  pbl__child *child;
  uv_write_t wreq;
  uv_timer_t linger; /* after the exit: the wait for the pipes' EOF */
  int64_t status;
  int sig;
  bool linger_open;
  bool finished;
} spawn_task;

static void finish(spawn_task *st);

static capture *capture_of(spawn_task *st, uv_handle_t *h) {
  return h == (uv_handle_t *)pbl__child_stream(st->child, 1) ? &st->cap[0]
                                                             : &st->cap[1];
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  spawn_task *st = pbl__child_data(h->data);
  capture *c = capture_of(st, h);
  (void)suggested;
  /* Once bytes were dropped (the limit, or no memory to grow), none is
   * kept after them: what is kept is always the stream's first bytes. */
  bool keep = c->dropped == 0;
  if (keep && c->len < st->limit && c->cap - c->len < CHUNK / 4) {
    size_t want = c->cap < CHUNK ? CHUNK : c->cap * 2;
    if (want > st->limit)
      want = st->limit;
    char *p = pbl__realloc(c->buf, want);
    if (p != NULL) {
      c->buf = p;
      c->cap = want;
    }
  }
  if (keep && c->len < c->cap) {
    buf->base = c->buf + c->len;
    buf->len = c->cap - c->len;
    return;
  }
  if (st->scratch == NULL)
    st->scratch = pbl__malloc(CHUNK);
  buf->base = st->scratch;
  buf->len = st->scratch != NULL ? CHUNK : 0; /* 0: libuv says ENOBUFS */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  spawn_task *st = pbl__child_data(s->data);
  capture *c = capture_of(st, (uv_handle_t *)s);
  if (nread > 0) {
    if (buf->base == st->scratch)
      c->dropped += (uint64_t)nread;
    else
      c->len += (size_t)nread;
    return;
  }
  if (nread == 0)
    return;
  if (nread == UV_ENOBUFS) /* no memory even for scratch: stop capturing */
    c->dropped++;
  c->eof = true;
  uv_read_stop(s);
  finish(st);
}

static void on_written(uv_write_t *req, int status) {
  spawn_task *st = req->data;
  (void)status; /* EPIPE: the command did not read it all; its exit tells */
  pbl__free(st->in);
  st->in = NULL;
  if (st->child != NULL)
    pbl__child_close_stream(st->child, 0); /* EOF on the command's stdin */
}

/* The grace after the exit is over: what was read is the output. */
static void cut_output(spawn_task *st) {
  for (int fd = 1; fd <= 2; fd++) {
    uv_stream_t *s = pbl__child_stream(st->child, fd);
    if (s != NULL)
      uv_read_stop(s);
    st->cap[fd - 1].eof = true;
  }
  finish(st);
}

static void on_linger(uv_timer_t *timer) {
  cut_output(timer->data);
}

static void on_linger_closed(uv_handle_t *h) {
  spawn_task *st = h->data;
  pbl__task_drop(&st->base);
}

/* The command exited with its pipes still open: give them the grace. */
static void linger(spawn_task *st) {
  if (uv_timer_init(st->base.loop->uv, &st->linger) != 0) {
    cut_output(st); /* no timer, no wait */
    return;
  }
  st->linger_open = true;
  st->linger.data = st;
  pbl__task_hold(&st->base); /* until the timer is closed */
  pbl__timer_start(&st->linger, on_linger, pbl__kill_grace_ms(&st->base));
}

static void on_exit(pbl__child *c, int64_t status, int sig) {
  spawn_task *st = pbl__child_data(c);
  st->status = status;
  st->sig = sig;
  pbl__timeout_disarm(&st->base);
  if (!st->cap[0].eof || !st->cap[1].eof)
    linger(st);
  finish(st);
}

static void on_closed(void *data) {
  spawn_task *st = data;
  st->child = NULL;
  pbl__free(st->scratch);
  st->scratch = NULL;
  pbl__task_drop(&st->base);
}

/* Publishes exit data and output, if the task is still ours to end. */
static bool publish(spawn_task *st) {
  pbl_task_t *t = &st->base;
  pbl__task_lock(t);
  bool open = !pbl__task_ended(t);
  if (open) {
    pbl__proc_info *p = &st->proc;
    p->exit_status = (int)st->status;
    p->term_signal = st->sig;
    p->out = st->cap[0].buf;
    p->out_len = st->cap[0].len;
    p->out_dropped = st->cap[0].dropped;
    p->err = st->cap[1].buf;
    p->err_len = st->cap[1].len;
    p->err_dropped = st->cap[1].dropped;
  }
  pbl__task_unlock(t);
  return open;
}

static void finish(spawn_task *st) {
  pbl_task_t *t = &st->base;
  if (st->finished || !pbl__child_exited(st->child) || !st->cap[0].eof ||
      !st->cap[1].eof)
    return;
  st->finished = true;
  pbl__timeout_disarm(t);
  if (st->linger_open) {
    st->linger_open = false;
    uv_close((uv_handle_t *)&st->linger, on_linger_closed);
  }
  if (publish(st)) {
    char who[160];
    snprintf(who, sizeof(who), "command %.100s (pid %d)", st->argv[0],
             pbl__child_pid(st->child));
    if (st->sig != 0) {
      st->proc.words = pbl__exit_words(who, st->status, st->sig);
      pbl__task_end(t, PBL_EXPIRED, PBL_EEXPIRED, NULL, NULL, PBL__DELIVER_NOW);
    } else if (st->status != 0) {
      char *w = pbl__exit_words(who, st->status, 0);
      pbl__failure *f = pbl__failure_new((int)st->status, w);
      pbl__free(w);
      pbl__task_end(t, PBL_FAILED, PBL_EFAILED, NULL, f, PBL__DELIVER_NOW);
    } else {
      pbl__task_end(t, PBL_DONE, 0, NULL, NULL, PBL__DELIVER_NOW);
    }
  }
  pbl__child_close(st->child);
}

static int start_io(spawn_task *st) {
  for (int fd = 1; fd <= 2; fd++) {
    uv_stream_t *s = pbl__child_stream(st->child, fd);
    s->data = st->child;
    int err = uv_read_start(s, on_alloc, on_read);
    if (err != 0)
      return err;
  }
  uv_stream_t *in = pbl__child_stream(st->child, 0);
  if (in == NULL)
    return 0;
  uv_buf_t b = uv_buf_init(st->in, 0);
  b.len = st->in_len;
  st->wreq.data = st;
  return uv_write(&st->wreq, in, &b, 1, on_written);
}

static void spawn_start(pbl_task_t *t) {
  spawn_task *st = (spawn_task *)t;
  pbl__child_opts o = {
      .file = st->argv[0],
      .args = st->argv,
      .env = st->env,
      .cwd = st->cwd,
      .flags = PBL__CHILD_CAPTURE | (st->in_len > 0 ? PBL__CHILD_STDIN : 0),
      .on_exit = on_exit,
      .on_closed = on_closed,
      .data = st,
  };
  pbl__task_hold(t);
  int err = pbl__child_spawn(t->loop->uv, &t->loop->reaper, &o, &st->child);
  if (err != 0) {
    if (st->child == NULL)
      pbl__task_drop(t);
    pbl__task_end(t, PBL_FAILED, err, NULL, NULL, PBL__DELIVER_POST);
    return;
  }
  /* The timeout counts from the running child, not from before its start:
   * what the start cost is not taken off it. */
  if (t->x != NULL)
    t->x->started_ns = uv_hrtime();
  atomic_store_explicit(&st->proc.pid, pbl__child_pid(st->child),
                        memory_order_release);
  (void)pbl__task_begin(t);
  pbl__timeout_arm(t);
  err = start_io(st);
  if (err != 0) { /* cannot happen with fresh pipes; do not leave it */
    pbl__task_end(t, PBL_FAILED, err, NULL, NULL, PBL__DELIVER_POST);
    pbl__child_kill(st->child, 0);
    st->cap[0].eof = st->cap[1].eof = true;
    finish(st);
  }
}

static void spawn_abort(pbl_task_t *t) {
  spawn_task *st = (spawn_task *)t;
  if (st->child != NULL)
    pbl__child_kill(st->child, pbl__kill_grace_ms(t));
}

static void free_strv(char **v) {
  for (size_t i = 0; v != NULL && v[i] != NULL; i++)
    pbl__free(v[i]);
  pbl__free(v);
}

static void spawn_destroy(pbl_task_t *t) {
  spawn_task *st = (spawn_task *)t;
  free_strv(st->argv);
  free_strv(st->env);
  pbl__free(st->cwd);
  pbl__free(st->in);
  pbl__free(st->cap[0].buf);
  pbl__free(st->cap[1].buf);
  pbl__free(st->scratch);
  pbl__free(st->proc.words);
}

static pbl__proc_info *spawn_proc(const pbl_task_t *t) {
  return &((spawn_task *)t)->proc;
}

static const pbl__task_ops spawn_ops = {
    .kind = "command",
    .start = spawn_start,
    .abort = spawn_abort,
    .destroy = spawn_destroy,
    .message = pbl__proc_message,
    .proc = spawn_proc,
    .needs_loop = true,
};

/* A deep copy of a NULL-terminated vector; *out NULL for v NULL. */
static int copy_strv(const char *const *v, char ***out) {
  *out = NULL;
  if (v == NULL)
    return 0;
  size_t n = 0;
  while (v[n] != NULL)
    n++;
  char **c = pbl__calloc(n + 1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    c[i] = pbl__strdup(v[i]);
    if (c[i] == NULL) {
      free_strv(c);
      return UV_ENOMEM;
    }
  }
  *out = c;
  return 0;
}

static int copy_opts(spawn_task *st, const char *const argv[],
                     const pbl_spawn_opts *o) {
  int err = copy_strv(argv, &st->argv);
  if (err == 0 && o != NULL)
    err = copy_strv((const char *const *)o->env, &st->env);
  if (err == 0 && o != NULL && o->cwd != NULL) {
    st->cwd = pbl__strdup(o->cwd);
    err = st->cwd != NULL ? 0 : UV_ENOMEM;
  }
  if (err == 0 && o != NULL && o->stdin_len > 0) {
    st->in = pbl__malloc(o->stdin_len);
    err = st->in != NULL ? 0 : UV_ENOMEM;
    if (err == 0) {
      memcpy(st->in, o->stdin_data, o->stdin_len);
      st->in_len = o->stdin_len;
    }
  }
  st->limit =
      o != NULL && o->capture_limit > 0 ? o->capture_limit : DEFAULT_LIMIT;
  return err;
}

int pbl_spawn(pbl_loop_t *pl, const char *const argv[], const pbl_spawn_opts *o,
              pbl_task_t **task) {
  if (!PBL__VALID_LOOP(pl) || argv == NULL || argv[0] == NULL ||
      argv[0][0] == '\0' ||
      (o != NULL && o->stdin_data == NULL && o->stdin_len > 0))
    return UV_EINVAL;
  pbl_task_t *t;
  int err = pbl__task_new(pl, &spawn_ops, sizeof(spawn_task),
                          o != NULL ? &o->task : NULL, task != NULL, &t);
  if (err != 0)
    return err;
  err = copy_opts((spawn_task *)t, argv, o);
  if (err != 0) {
    pbl__task_discard(t);
    return err;
  }
  return pbl__task_submit_out(t, task, NULL, NULL);
}
