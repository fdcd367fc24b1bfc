/* Starting a worker process: its command line. Used by one-shot process
 * tasks and by process pools. */
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
