/* Starting a worker process: its command line and its channel. Used by
 * one-shot process tasks and by process pools. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "process.h"

static uv_once_t exe_once = UV_ONCE_INIT;
static char exe[4096];
static int exe_err;

static void find_exe(void) {
  size_t n = sizeof(exe);
  exe_err = uv_exepath(exe, &n);
}

int pbl__worker_spawn(pbl_loop_t *pl, const char *worker_path,
                      pbl__child_exit_cb on_exit,
                      pbl__child_closed_cb on_closed, void *data,
                      pbl__child **out) {
  const char *file = worker_path;
  *out = NULL;
  pbl__worker_guard();
  if (file == NULL) {
    uv_once(&exe_once, find_exe);
    if (exe_err != 0)
      return exe_err;
    file = exe;
  }
  /* The parent's pid lets the worker tell whether its parent is already
   * gone by the time it asks to die with it. */
  char marker[64];
  snprintf(marker, sizeof(marker), "%s%d,%ld", PBL__WORKER_ARG,
           PBL__WIRE_VERSION, (long)getpid());
  char *args[] = {(char *)file, marker, NULL};
  pbl__child_opts o = {
      .file = file,
      .args = args,
      .flags = PBL__CHILD_CHANNEL,
      .on_exit = on_exit,
      .on_closed = on_closed,
      .data = data,
  };
  return pbl__child_spawn(pl->uv, &pl->reaper, &o, out);
}

void pbl__channel_stop(pbl__child *c, bool *reading) {
  if (!*reading)
    return;
  *reading = false;
  uv_stream_t *ch = pbl__child_stream(c, PBL__WORKER_FD);
  if (ch != NULL)
    uv_read_stop(ch);
}

int pbl__channel_drain(uv_stream_t *ch, pbl__wire_reader *rd, bool *unread) {
  uv_os_fd_t fd;
  if (ch == NULL || uv_fileno((uv_handle_t *)ch, &fd) != 0)
    return 0;
  for (;;) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(rd, &base, &len);
    ssize_t n = recv(fd, base, len, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    /* A socketpair's end closed with data in its receive queue reports
     * ECONNRESET to the other end, once, after the data it sent. */
    if (n < 0 && errno == ECONNRESET && unread != NULL)
      *unread = true;
    if (n <= 0)
      return 0; /* EOF, or EAGAIN: a process the child started holds it */
    int err = pbl__wire_reader_feed(rd, (size_t)n);
    if (err != 0)
      return err;
  }
}

char *pbl__worker_exit_words(int pid, int64_t status, int sig) {
  char who[96];
  if (status == 0 && sig == 0) { /* a clean exit is no reason of its own */
    snprintf(who, sizeof(who),
             "worker %d exited with status 0 without sending a result", pid);
    return pbl__strdup(who);
  }
  snprintf(who, sizeof(who), "worker %d", pid);
  return pbl__exit_words(who, status, sig);
}

pbl__failure *pbl__wire_failure(const pbl__wire_fail *f) {
  pbl__failure *fl = pbl__malloc(sizeof(*fl) + f->msg_len + 1);
  if (fl == NULL)
    return NULL;
  fl->code = f->code;
  memcpy(fl->msg, f->msg, f->msg_len);
  fl->msg[f->msg_len] = '\0';
  return fl;
}
