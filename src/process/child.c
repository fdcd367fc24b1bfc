/* Child processes: spawn, kill with a grace, reap, close. See child.h. */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "process-start.h"
#include "process.h"

#define NPIPES 4

struct pbl__child {
  pbl__reaped reaped;      /* in the binding's reaper until reaped */
  uv_pipe_t pipes[NPIPES]; /* index: the child's fd */
  uv_timer_t grace;
  bool pipe_open[NPIPES]; /* initialised, uv_close not yet called */
  bool timer_open;
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
  uv_thread_t thread; /* the loop thread: everything here runs on it */
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
  PBL__ASSERT_THREAD(&c->thread);
  if (fd >= 0 && fd < NPIPES)
    close_handle(c, (uv_handle_t *)&c->pipes[fd], &c->pipe_open[fd]);
}

/* The child's memory goes only once reaped (the reaper holds it until
 * then), the timer once its grace is no longer needed. */
static void maybe_close_rest(pbl__child *c) {
  if (!c->owner_done || !c->exited || c->grace_pending)
    return;
  close_handle(c, (uv_handle_t *)&c->grace, &c->timer_open);
}

void pbl__child_close(pbl__child *c) {
  PBL__ASSERT_THREAD(&c->thread);
  c->owner_done = true;
  for (int fd = 0; fd < NPIPES; fd++)
    pbl__child_close_stream(c, fd);
  maybe_close_rest(c);
}

void pbl__child_ref(pbl__child *c, bool ref) {
  PBL__ASSERT_THREAD(&c->thread);
  void (*set)(uv_handle_t *) = ref ? uv_ref : uv_unref;
  pbl__reaper_ref(&c->reaped, ref);
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
  PBL__ASSERT_THREAD(&c->thread);
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
  pbl__timer_start(&c->grace, on_grace, grace_ms);
}

static void on_linger(uv_timer_t *timer) {
  pbl__child *c = timer->data;
  c->grace_pending = false;
  c->lingering = false;
  pbl__child_kill(c, c->linger_grace_ms);
}

void pbl__child_expect_exit(pbl__child *c, uint64_t delay_ms,
                            uint64_t grace_ms) {
  PBL__ASSERT_THREAD(&c->thread);
  if (c->exited || c->killing || c->grace_pending)
    return;
  c->lingering = true;
  c->linger_grace_ms = grace_ms;
  c->grace.data = c;
  c->grace_pending = true;
  pbl__timer_start(&c->grace, on_linger, delay_ms);
}

static void on_reaped(pbl__reaped *r, int64_t status, int sig) {
  pbl__child *c = PBL__CONTAINER_OF(r, pbl__child, reaped);
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
static int inherit(int fd) {
  return fcntl(fd, F_GETFD) != -1 ? PBL__START_INHERIT : PBL__START_DEVNULL;
}

/* A socketpair for the child's fd (as uv_spawn's UV_CREATE_PIPE): our end
 * in a uv_pipe_t, the child's end in *child_end. */
static int init_pipe(uv_loop_t *loop, pbl__child *c, int fd, int *child_end) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return uv_translate_sys_error(errno);
  int err = uv_pipe_init(loop, &c->pipes[fd], 0);
  if (err == 0) {
    c->pipe_open[fd] = true;
    c->handles++;
    err = uv_pipe_open(&c->pipes[fd], sv[0]);
  }
  if (err != 0) {
    close(sv[0]);
    close(sv[1]);
    return err;
  }
  *child_end = sv[1];
  return 0;
}

static int init_stdio(uv_loop_t *loop, pbl__child *c, unsigned flags, int fd4,
                      pbl__start_opts *so) {
  int err = 0;
  for (int fd = 0; fd < NPIPES; fd++)
    so->fds[fd] = PBL__START_DEVNULL;
  so->nfds = (flags & PBL__CHILD_CHANNEL) ? 4 : 3;
  if (flags & PBL__CHILD_STDIN)
    err = init_pipe(loop, c, 0, &so->fds[0]);
  if (flags & PBL__CHILD_CAPTURE) {
    if (err == 0)
      err = init_pipe(loop, c, 1, &so->fds[1]);
    if (err == 0)
      err = init_pipe(loop, c, 2, &so->fds[2]);
  } else {
    so->fds[1] = inherit(1);
    so->fds[2] = inherit(2);
  }
  if ((flags & PBL__CHILD_CHANNEL) && err == 0)
    err = init_pipe(loop, c, 3, &so->fds[3]);
  if ((flags & PBL__CHILD_CHANNEL) && (flags & PBL__CHILD_FD4) && err == 0) {
    so->fds[4] = fd4; /* not ours to close: close_child_ends stops at 3 */
    so->nfds = 5;
  }
  if ((flags & PBL__CHILD_STDIO_CHANNEL) && err == 0) {
    err = init_pipe(loop, c, 3, &so->fds[0]);
    so->fds[1] = so->fds[0]; /* closed once: close_child_ends */
  }
  return err;
}

/* The child has its copies now (or never will): ours go. */
static void close_child_ends(pbl__start_opts *so) {
  for (int fd = 0; fd < NPIPES; fd++)
    if (so->fds[fd] >= 0 && (fd == 0 || so->fds[fd] != so->fds[fd - 1]))
      close(so->fds[fd]);
}

int pbl__child_spawn(uv_loop_t *loop, pbl__reaper **reaper,
                     const pbl__child_opts *o, pbl__child **out) {
  *out = NULL;
  pbl__child *c = pbl__calloc(1, sizeof(*c));
  if (c == NULL)
    return UV_ENOMEM;
  c->on_exit = o->on_exit;
  c->on_closed = o->on_closed;
  c->data = o->data;
  c->thread = uv_thread_self();
  pbl__ignore_sigpipe();

  pbl__start_opts so = {
      .file = o->file,
      .args = o->args,
      .env = o->env,
      .cwd = o->cwd,
  };
  bool watched = false;
  int err = uv_timer_init(loop, &c->grace);
  if (err == 0) {
    c->timer_open = true;
    c->handles++;
    err = init_stdio(loop, c, o->flags, o->fd4, &so);
  }
  /* Watched before it starts: it may exit before we know its pid. */
  if (err == 0) {
    err = pbl__reaper_add(reaper, loop, &c->reaped, on_reaped);
    watched = err == 0;
  }
  if (err == 0)
    err = pbl__start(&so, &c->pid);
  close_child_ends(&so);
  *out = c;
  if (err == 0) {
    pbl__reaper_started(&c->reaped, c->pid);
    return 0;
  }
  if (watched)
    pbl__reaper_remove(&c->reaped);
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
