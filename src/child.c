/* Child processes: spawn, kill with a grace, reap, close. See child.h. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>

#include "process.h"

#define NPIPES 4

struct pbl__child {
  uv_process_t proc;
  uv_pipe_t pipes[NPIPES]; /* index: the child's fd */
  uv_timer_t grace;
  bool pipe_open[NPIPES]; /* initialised, uv_close not yet called */
  bool proc_open, timer_open;
  unsigned handles; /* initialised, close callback not yet run */
  bool exited;      /* reaped (or never started) */
  bool owner_done;  /* pbl__child_close() was called */
  bool killing;     /* SIGTERM sent */
  bool sigkill_sent;
  bool grace_pending; /* the grace timer runs (a kill's or a linger's) */
  bool lingering;     /* the timer waits for a clean exit, then kills */
  uint64_t linger_grace_ms;
  int pid;
  pbl__child_exit_cb on_exit;
  pbl__child_closed_cb on_closed;
  void *data;
};

static void ignore_sigpipe_once(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) != 0 || (sa.sa_flags & SA_SIGINFO) ||
      sa.sa_handler != SIG_DFL)
    return; /* the program chose its own handling: leave it */
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  (void)sigaction(SIGPIPE, &sa, NULL);
}

void pbl__ignore_sigpipe(void) {
  static uv_once_t once = UV_ONCE_INIT;
  uv_once(&once, ignore_sigpipe_once);
}

void *pbl__child_data(const pbl__child *c) {
  return c->data;
}

int pbl__child_pid(const pbl__child *c) {
  return c->pid;
}

bool pbl__child_exited(const pbl__child *c) {
  return c->exited;
}

uv_stream_t *pbl__child_stream(pbl__child *c, int fd) {
  if (fd < 0 || fd >= NPIPES || !c->pipe_open[fd])
    return NULL;
  return (uv_stream_t *)&c->pipes[fd];
}

static void on_handle_closed(uv_handle_t *h) {
  pbl__child *c = h->data;
  if (--c->handles > 0)
    return;
  pbl__child_closed_cb cb = c->on_closed;
  void *data = c->data;
  pbl__free(c);
  if (cb != NULL)
    cb(data);
}

static void close_handle(pbl__child *c, uv_handle_t *h, bool *open) {
  if (!*open)
    return;
  *open = false;
  h->data = c;
  uv_close(h, on_handle_closed);
}

void pbl__child_close_stream(pbl__child *c, int fd) {
  if (fd >= 0 && fd < NPIPES)
    close_handle(c, (uv_handle_t *)&c->pipes[fd], &c->pipe_open[fd]);
}

/* The process handle goes only once reaped, the timer once its grace is
 * no longer needed. */
static void maybe_close_rest(pbl__child *c) {
  if (!c->owner_done || !c->exited || c->grace_pending)
    return;
  close_handle(c, (uv_handle_t *)&c->proc, &c->proc_open);
  close_handle(c, (uv_handle_t *)&c->grace, &c->timer_open);
}

void pbl__child_close(pbl__child *c) {
  c->owner_done = true;
  for (int fd = 0; fd < NPIPES; fd++)
    pbl__child_close_stream(c, fd);
  maybe_close_rest(c);
}

void pbl__child_ref(pbl__child *c, bool ref) {
  void (*set)(uv_handle_t *) = ref ? uv_ref : uv_unref;
  if (c->proc_open)
    set((uv_handle_t *)&c->proc);
  for (int fd = 0; fd < NPIPES; fd++)
    if (c->pipe_open[fd])
      set((uv_handle_t *)&c->pipes[fd]);
}

/* To the group, and to the child itself in case it left the group. */
static void send_signal(pbl__child *c, int sig) {
  if (c->pid <= 0)
    return; /* kill(0) and kill(-0) would hit our own group */
  (void)kill(-c->pid, sig);
  if (!c->exited)
    (void)kill(c->pid, sig);
}

static void stop_grace(pbl__child *c) {
  if (c->grace_pending) {
    uv_timer_stop(&c->grace);
    c->grace_pending = false;
  }
}

static void on_grace(uv_timer_t *timer) {
  pbl__child *c = timer->data;
  c->grace_pending = false;
  c->sigkill_sent = true;
  send_signal(c, SIGKILL);
  maybe_close_rest(c);
}

void pbl__child_kill(pbl__child *c, uint64_t grace_ms) {
  if (c->exited || c->sigkill_sent)
    return;
  if (c->lingering) { /* the kill replaces the wait for a clean exit */
    stop_grace(c);
    c->lingering = false;
  }
  if (grace_ms == 0) {
    stop_grace(c);
    c->killing = c->sigkill_sent = true;
    send_signal(c, SIGKILL);
    return;
  }
  if (c->killing)
    return;
  c->killing = true;
  send_signal(c, SIGTERM);
  c->grace.data = c;
  c->grace_pending = true;
  /* The loop's clock is from the start of this turn: the grace counts
   * from now, not from then. */
  uv_update_time(c->grace.loop);
  uv_timer_start(&c->grace, on_grace, grace_ms, 0);
}

static void on_linger(uv_timer_t *timer) {
  pbl__child *c = timer->data;
  c->grace_pending = false;
  c->lingering = false;
  pbl__child_kill(c, c->linger_grace_ms);
}

void pbl__child_expect_exit(pbl__child *c, uint64_t delay_ms,
                            uint64_t grace_ms) {
  if (c->exited || c->killing || c->grace_pending)
    return;
  c->lingering = true;
  c->linger_grace_ms = grace_ms;
  c->grace.data = c;
  c->grace_pending = true;
  uv_update_time(c->grace.loop);
  uv_timer_start(&c->grace, on_linger, delay_ms, 0);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig) {
  pbl__child *c = PBL__CONTAINER_OF(p, pbl__child, proc);
  c->exited = true;
  if (c->lingering) {
    stop_grace(c);
    c->lingering = false;
  }
  /* A kill is for the whole group: what the child started and left
   * behind gets the rest of the grace (SIGKILL now if the grace is
   * over). The group cannot be reused while it has members. */
  if (c->killing && c->pid > 0) {
    if (c->sigkill_sent) {
      (void)kill(-c->pid, SIGKILL);
    } else if (kill(-c->pid, 0) != 0) {
      stop_grace(c); /* nobody left */
    }
  }
  if (c->on_exit != NULL)
    c->on_exit(c, status, sig);
  maybe_close_rest(c);
}

/* fd 1 or 2 of ours, if open; else the child gets /dev/null. */
static uv_stdio_container_t inherit(int fd) {
  uv_stdio_container_t s = {.flags = UV_IGNORE};
  if (fcntl(fd, F_GETFD) != -1) {
    s.flags = UV_INHERIT_FD;
    s.data.fd = fd;
  }
  return s;
}

static int init_pipe(uv_loop_t *loop, pbl__child *c, int fd,
                     uv_stdio_container_t *s, int flags) {
  int err = uv_pipe_init(loop, &c->pipes[fd], 0);
  if (err != 0)
    return err;
  c->pipe_open[fd] = true;
  c->handles++;
  s->flags = (uv_stdio_flags)(UV_CREATE_PIPE | flags);
  s->data.stream = (uv_stream_t *)&c->pipes[fd];
  return 0;
}

static int init_stdio(uv_loop_t *loop, pbl__child *c, unsigned flags,
                      uv_stdio_container_t stdio[NPIPES]) {
  int err = 0;
  stdio[0] = (uv_stdio_container_t){.flags = UV_IGNORE};
  if (flags & PBL__CHILD_STDIN)
    err = init_pipe(loop, c, 0, &stdio[0], UV_READABLE_PIPE);
  if (flags & PBL__CHILD_CAPTURE) {
    if (err == 0)
      err = init_pipe(loop, c, 1, &stdio[1], UV_WRITABLE_PIPE);
    if (err == 0)
      err = init_pipe(loop, c, 2, &stdio[2], UV_WRITABLE_PIPE);
  } else {
    stdio[1] = inherit(1);
    stdio[2] = inherit(2);
  }
  if ((flags & PBL__CHILD_CHANNEL) && err == 0)
    err = init_pipe(loop, c, 3, &stdio[3], UV_READABLE_PIPE | UV_WRITABLE_PIPE);
  return err;
}

int pbl__child_spawn(uv_loop_t *loop, const pbl__child_opts *o,
                     pbl__child **out) {
  *out = NULL;
  pbl__child *c = pbl__calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  c->on_exit = o->on_exit;
  c->on_closed = o->on_closed;
  c->data = o->data;
  pbl__ignore_sigpipe();

  uv_stdio_container_t stdio[NPIPES];
  int err = uv_timer_init(loop, &c->grace);
  if (err == 0) {
    c->timer_open = true;
    c->handles++;
    err = init_stdio(loop, c, o->flags, stdio);
  }
  if (err == 0) {
    uv_process_options_t po = {
        .exit_cb = on_proc_exit,
        .file = o->file,
        .args = o->args,
        .env = o->env,
        .cwd = o->cwd,
        .flags = UV_PROCESS_DETACHED, /* own session and group */
        .stdio_count = (o->flags & PBL__CHILD_CHANNEL) ? 4 : 3,
        .stdio = stdio,
    };
    err = uv_spawn(loop, &c->proc, &po);
    /* Initialised even when it fails: it must be closed either way. */
    c->proc_open = true;
    c->handles++;
    c->pid = c->proc.pid;
  }
  *out = c;
  if (err == 0)
    return 0;
  c->exited = true; /* no exit will be reported: nothing runs */
  c->on_exit = NULL;
  if (c->handles == 0) {
    pbl__free(c);
    *out = NULL;
    return err;
  }
  pbl__child_close(c);
  return err;
}

const char *pbl__signal_name(int sig, char *buf, size_t len) {
  static const struct {
    int sig;
    const char *name;
  } names[] = {
#define SIG(name) {name, #name}
      SIG(SIGHUP),  SIG(SIGINT),  SIG(SIGQUIT), SIG(SIGILL),  SIG(SIGTRAP),
      SIG(SIGABRT), SIG(SIGBUS),  SIG(SIGFPE),  SIG(SIGKILL), SIG(SIGUSR1),
      SIG(SIGSEGV), SIG(SIGUSR2), SIG(SIGPIPE), SIG(SIGALRM), SIG(SIGTERM),
      SIG(SIGXCPU), SIG(SIGXFSZ), SIG(SIGSYS),
#undef SIG
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (names[i].sig == sig)
      return names[i].name;
  snprintf(buf, len, "SIG%d", sig);
  return buf;
}

char *pbl__exit_words(const char *who, int64_t status, int sig) {
  char buf[512], name[16];
  if (sig != 0)
    snprintf(buf, sizeof(buf), "%s killed by signal %d (%s)", who, sig,
             pbl__signal_name(sig, name, sizeof(name)));
  else
    snprintf(buf, sizeof(buf), "%s exited with status %lld", who,
             (long long)status);
  return pbl__strdup(buf);
}

const char *pbl__proc_message(const pbl_task_t *t) {
  if (pbl_task_state_of(t) != PBL_EXPIRED)
    return NULL;
  return t->ops->proc(t)->words; /* published by the end */
}
