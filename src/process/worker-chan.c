/* The worker's side of its channel: open, write, HELLO, and a launched
 * worker's watcher. See worker-chan.h for the design notes. */
#define _GNU_SOURCE
#include "worker-chan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "process.h"
#include "wire.h"

#define MS 1000000ull
/* Bytes waiting in the channel past which it counts as full (a pipe
 * holds 64 KiB): the pool may be blocked writing, not gone. */
#define CHANNEL_FULL 32768

/* Closes every fd from `lowest` on. */
static void close_from(int lowest) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
  if (close_range((unsigned)lowest, ~0u, 0) == 0)
    return;
#endif
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd >= lowest && fd != self)
      (void)close(fd);
  }
  closedir(d);
}

static bool is_socket(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* stdin and stdout become the channel's own fds; stdin reads /dev/null
 * and stdout goes where stderr goes. */
static int move_stdio(pbl__worker_chan *ch) {
  ch->in = fcntl(0, F_DUPFD_CLOEXEC, 3);
  ch->out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (ch->in < 0 || ch->out < 0 || null < 0 || dup2(null, 0) < 0 ||
      dup2(2, 1) < 0)
    return uv_translate_sys_error(errno);
  (void)close(null);
  return 0;
}

int pbl__worker_chan_open(pbl__worker_chan *ch, bool launched,
                          uint64_t grace_ms) {
  memset(ch, 0, sizeof(*ch));
  ch->launched = launched;
  ch->grace_ms = grace_ms > 0 ? grace_ms : PBL__KILL_GRACE_MS;
  atomic_init(&ch->heard, uv_hrtime());
  atomic_init(&ch->busy, false);
  int err = uv_mutex_init(&ch->lock);
  if (err != 0)
    return err;
  if (!launched) {
    if (fcntl(PBL__WORKER_FD, F_SETFD, FD_CLOEXEC) != 0)
      return uv_translate_sys_error(errno);
    close_from(PBL__WORKER_FD + 1);
    ch->in = ch->out = PBL__WORKER_FD;
    ch->sock = true;
    return 0;
  }
  close_from(3); /* whatever the launcher left open */
  err = move_stdio(ch);
  if (err != 0)
    return err;
  ch->sock = is_socket(ch->out);
  /* The watcher ends the worker's group: it must be one of its own. */
  if (getpgrp() != getpid())
    (void)setpgid(0, 0);
  return 0;
}

/* Under ch->lock. A pipe's reader gone raises SIGPIPE: blocked around
 * the write and taken back if it came, so the functions run with the
 * signal as the program set it. */
static int write_locked(pbl__worker_chan *ch, struct iovec *iov, size_t n) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  if (!ch->sock)
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  int err = 0;
  while (n > 0) {
    size_t cnt = n > 1024 ? 1024 : n;
    ssize_t k;
    if (ch->sock) {
      struct msghdr m = {.msg_iov = iov, .msg_iovlen = cnt};
      k = sendmsg(ch->out, &m, MSG_NOSIGNAL);
    } else {
      k = writev(ch->out, iov, (int)cnt);
    }
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0) {
      err = uv_translate_sys_error(errno);
      break;
    }
    ch->written += (uint64_t)k;
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
  if (!ch->sock) {
    struct timespec zero = {0, 0};
    if (err == UV_EPIPE)
      (void)sigtimedwait(&pipe_set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  return err;
}

int pbl__worker_chan_write(pbl__worker_chan *ch, struct iovec *iov, size_t n) {
  uv_mutex_lock(&ch->lock);
  int err = write_locked(ch, iov, n);
  uv_mutex_unlock(&ch->lock);
  return err;
}

int pbl__worker_chan_hello(pbl__worker_chan *ch) {
  uint8_t frame[PBL__WIRE_HELLO_MAX];
  char host[PBL__WIRE_HOST_MAX + 1] = "";
  if (gethostname(host, sizeof(host)) != 0)
    host[0] = '\0';
  host[PBL__WIRE_HOST_MAX] = '\0';
  size_t n = pbl__wire_hello_encode(frame, (int)getpid(), host);
  struct iovec iov = {frame, n};
  return pbl__worker_chan_write(ch, &iov, 1);
}

/* ---- the watcher ---- */

static void nap_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Ends the worker's process group, from a helper outside it that goes on
 * after the worker itself died of the SIGTERM. An idle worker exits by
 * itself at the channel's end: it gets the grace to do so first. */
static void end_group(pbl__worker_chan *ch, const char *why) {
  fprintf(stderr, "pebble worker %ld: %s: ending its process group\n",
          (long)getpid(), why);
  for (uint64_t ms = 0; ms < ch->grace_ms && !atomic_load(&ch->busy); ms += 10)
    nap_ms(10);
  pid_t group = getpgrp();
  pid_t helper = fork();
  if (helper == 0) { /* async-signal-safe calls only: we forked a thread */
    (void)setpgid(0, 0);
    (void)kill(-group, SIGTERM);
    for (uint64_t ms = 0; ms < ch->grace_ms; ms += 10) {
      if (kill(-group, 0) != 0)
        _exit(0);
      nap_ms(10);
    }
    (void)kill(-group, SIGKILL);
    _exit(0);
  }
  if (helper < 0) /* no helper: the group at least, without a grace */
    (void)kill(-group, SIGKILL);
  for (;;)
    pause(); /* the signal comes */
}

static void watch(void *arg) {
  pbl__worker_chan *ch = arg;
  pid_t parent = getppid();
  uint64_t hb = (uint64_t)PBL__WORKER_HB_MS * MS;
  uint64_t dead = hb * PBL__WORKER_HB_DEAD;
  uint64_t heard = uv_hrtime(), next_ping = heard + hb;
  int last_waiting = -1;
  uint8_t ping[PBL__WIRE_HEAD];
  pbl__wire_head h = {.type = PBL__WIRE_PING};
  pbl__wire_head_encode(ping, &h);
  for (;;) {
    struct pollfd p = {.fd = ch->in, .events = POLLRDHUP};
    int r = poll(&p, 1, PBL__WORKER_HB_MS / 4);
    uint64_t now = uv_hrtime();
    if (r > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
      end_group(ch, "its channel closed (the pool or its launcher is gone)");
    if (getppid() != parent)
      end_group(ch, "its parent process changed (its launcher is gone)");
    int waiting = 0;
    if (ioctl(ch->in, FIONREAD, &waiting) != 0)
      waiting = -1;
    if (waiting != last_waiting || waiting >= CHANNEL_FULL)
      heard = now; /* the pool wrote, or waits for us to read */
    last_waiting = waiting;
    uint64_t read = atomic_load(&ch->heard);
    if (read > heard)
      heard = read;
    if (now - heard > dead)
      end_group(ch, "heard nothing from the pool for 15 heartbeats");
    if (now >= next_ping) {
      next_ping = now + hb;
      if (uv_mutex_trylock(&ch->lock) == 0) { /* else an answer flows */
        struct iovec iov = {ping, sizeof(ping)};
        int err = write_locked(ch, &iov, 1);
        uv_mutex_unlock(&ch->lock);
        if (err == UV_EPIPE || err == UV_ECONNRESET)
          end_group(ch,
                    "its channel closed (the pool or its launcher is gone)");
      }
    }
  }
}

int pbl__worker_chan_watch(pbl__worker_chan *ch) {
  uv_thread_t t;
  uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 64 * 1024};
  return uv_thread_create_ex(&t, &o, watch, ch);
}
