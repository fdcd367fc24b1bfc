/* Starting a worker process: its command line. Used by one-shot process
 * tasks and by process pools. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "answer-journal.h"
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
  return pbl__worker_spawn_via(pl, worker_path, NULL, 0, -1, on_exit, on_closed,
                               data, out);
}

int pbl__worker_spawn_via(pbl_loop_t *pl, const char *worker_path,
                          char *const *launcher, uint64_t grace_ms,
                          int journal_fd, pbl__child_exit_cb on_exit,
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
  /* The parent's pid lets a local worker tell whether its parent is
   * already gone by the time it asks to die with it; a launched one
   * (pid 0) watches its channel instead, with the pool's grace. */
  char marker[96];
  bool journal = launcher == NULL && journal_fd >= 0;
  if (journal)
    snprintf(marker, sizeof(marker), "%s%d,%ld,0,%d", PBL__WORKER_ARG,
             PBL__WIRE_VERSION, (long)getpid(), PBL__JOURNAL_FD);
  else if (launcher == NULL)
    snprintf(marker, sizeof(marker), "%s%d,%ld", PBL__WORKER_ARG,
             PBL__WIRE_VERSION, (long)getpid());
  else
    snprintf(marker, sizeof(marker), "%s%d,0,%llu", PBL__WORKER_ARG,
             PBL__WIRE_VERSION, (unsigned long long)grace_ms);
  size_t n = 0;
  while (launcher != NULL && launcher[n] != NULL)
    n++;
  char *local[3];
  char **args = local;
  if (n > 0) {
    args = pbl__calloc(n + 3, sizeof(*args));
    if (args == NULL)
      return UV_ENOMEM;
    memcpy(args, launcher, n * sizeof(*args));
  }
  args[n] = (char *)file;
  args[n + 1] = marker;
  args[n + 2] = NULL;
  pbl__child_opts o = {
      .file = args[0],
      .args = args,
      .flags = n > 0     ? PBL__CHILD_STDIO_CHANNEL
               : journal ? PBL__CHILD_CHANNEL | PBL__CHILD_FD4
                         : PBL__CHILD_CHANNEL,
      .fd4 = journal_fd,
      .on_exit = on_exit,
      .on_closed = on_closed,
      .data = data,
  };
  int err = pbl__child_spawn(pl->uv, &pl->reaper, &o, out);
  if (args != local)
    pbl__free(args);
  return err;
}
