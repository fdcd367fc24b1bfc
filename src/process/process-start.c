/* Starting a program with posix_spawn. See process-start.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* posix_spawn_file_actions_add{chdir,closefrom}_np */
#endif
#include "process-start.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

extern char **environ;

/* execvp's search path when the environment has no PATH. */
#define DEFAULT_PATH "/bin:/usr/bin"

static const char *path_of(char *const *env) {
  if (env == NULL)
    return getenv("PATH");
  for (size_t i = 0; env[i] != NULL; i++)
    if (strncmp(env[i], "PATH=", 5) == 0)
      return env[i] + 5;
  return NULL;
}

/* Writes dir/file (dir may be "" for the current directory, as in PATH)
 * into buf. Returns 0 or UV_ENAMETOOLONG. */
static int join(char *buf, size_t cap, const char *dir, size_t dir_len,
                const char *file) {
  size_t file_len = strlen(file);
  if (dir_len == 0) { /* an empty PATH entry is the current directory */
    dir = ".";
    dir_len = 1;
  }
  if (dir_len + 1 + file_len + 1 > cap)
    return UV_ENAMETOOLONG;
  memcpy(buf, dir, dir_len);
  buf[dir_len] = '/';
  memcpy(buf + dir_len + 1, file, file_len + 1);
  return 0;
}

/* Whether the child could exec path, seen from its cwd: 0, or why not.
 * The exec itself reports the same, but not everywhere: under valgrind the
 * clone becomes a fork and posix_spawn can no longer see an exec fail. */
static int check_exec(const char *path, const char *cwd) {
  char buf[PATH_MAX];
  if (path[0] != '/' && cwd != NULL) {
    int err = join(buf, sizeof(buf), cwd, strlen(cwd), path);
    if (err != 0)
      return err;
    path = buf;
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return uv_translate_sys_error(errno);
  if (S_ISDIR(st.st_mode))
    return UV_EACCES; /* what execve says of a directory */
  if (faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) != 0)
    return uv_translate_sys_error(errno);
  return 0;
}

/* execvp's search: the first entry of the child's PATH that holds an
 * executable file; EACCES if only unexecutable ones were found. */
static int resolve(const pbl__start_opts *o, char *buf, size_t cap,
                   const char **out) {
  if (o->file[0] == '\0')
    return UV_ENOENT;
  if (strchr(o->file, '/') != NULL) {
    *out = o->file;
    return check_exec(o->file, o->cwd);
  }
  const char *path = path_of(o->env);
  if (path == NULL)
    path = DEFAULT_PATH;
  int first_err = UV_ENOENT;
  for (const char *p = path;; p++) {
    const char *end = strchr(p, ':');
    size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    int err = join(buf, cap, p, len, o->file);
    if (err == 0)
      err = check_exec(buf, o->cwd);
    if (err == 0) {
      *out = buf;
      return 0;
    }
    if (err == UV_EACCES)
      first_err = UV_EACCES;
    if (end == NULL)
      return first_err;
    p = end;
  }
}

static int check_cwd(const char *cwd) {
  struct stat st;
  if (cwd == NULL)
    return 0;
  if (stat(cwd, &st) != 0)
    return uv_translate_sys_error(errno);
  return S_ISDIR(st.st_mode) ? 0 : UV_ENOTDIR;
}

/* dup2 onto 0..nfds-1 must not overwrite a source still to be dup'd: every
 * source below nfds is moved up first (the copies close on exec). */
static int raise_fds(const pbl__start_opts *o, int fds[], int moved[]) {
  for (int i = 0; i < o->nfds; i++)
    moved[i] = -1;
  for (int i = 0; i < o->nfds; i++) {
    fds[i] = o->fds[i];
    if (fds[i] >= 0 && fds[i] < o->nfds) {
      int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, o->nfds);
      if (fd < 0)
        return uv_translate_sys_error(errno);
      fds[i] = moved[i] = fd;
    }
  }
  return 0;
}

static int plan_fds(posix_spawn_file_actions_t *fa, const pbl__start_opts *o,
                    const int fds[]) {
  int err = 0;
  if (o->cwd != NULL)
    err = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
  for (int i = 0; err == 0 && i < o->nfds; i++) {
    if (fds[i] == PBL__START_DEVNULL)
      err = posix_spawn_file_actions_addopen(fa, i, "/dev/null",
                                             i == 0 ? O_RDONLY : O_RDWR, 0);
    else if (fds[i] == PBL__START_INHERIT)
      /* dup2 onto itself clears FD_CLOEXEC (glibc >= 2.29), as
       * uv_spawn's UV_INHERIT_FD did. */
      err = posix_spawn_file_actions_adddup2(fa, i, i);
    else
      err = posix_spawn_file_actions_adddup2(fa, fds[i], i);
  }
  /* No other fd of ours reaches the child, not even one a program opened
   * without O_CLOEXEC. */
  if (err == 0)
    err = posix_spawn_file_actions_addclosefrom_np(fa, o->nfds);
  return err;
}

static int plan_attrs(posix_spawnattr_t *attr) {
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  /* SIGPIPE above all: we ignore it in the parent, and an ignored signal
   * stays ignored across exec. */
  int err = posix_spawnattr_setsigdefault(attr, &all);
  if (err == 0)
    err = posix_spawnattr_setsigmask(attr, &none);
  if (err == 0)
    err = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSID |
                                             POSIX_SPAWN_SETSIGDEF |
                                             POSIX_SPAWN_SETSIGMASK);
  return err;
}

int pbl__start(const pbl__start_opts *o, int *pid) {
  if (o->nfds < 0 || o->nfds > PBL__START_MAX_FDS)
    return UV_EINVAL;
  char buf[PATH_MAX];
  const char *path = NULL;
  int err = check_cwd(o->cwd);
  if (err == 0)
    err = resolve(o, buf, sizeof(buf), &path);
  if (err != 0)
    return err;

  int fds[PBL__START_MAX_FDS], moved[PBL__START_MAX_FDS];
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  bool fa_init = false, attr_init = false;
  err = raise_fds(o, fds, moved);
  if (err == 0) {
    err = -posix_spawn_file_actions_init(&fa);
    fa_init = err == 0;
  }
  if (err == 0)
    err = -plan_fds(&fa, o, fds);
  if (err == 0) {
    err = -posix_spawnattr_init(&attr);
    attr_init = err == 0;
  }
  if (err == 0)
    err = -plan_attrs(&attr);
  if (err == 0) {
    pid_t child;
    err = -posix_spawn(&child, path, &fa, &attr, o->args,
                       o->env != NULL ? o->env : environ);
    if (err == 0)
      *pid = child;
  }
  if (attr_init)
    posix_spawnattr_destroy(&attr);
  if (fa_init)
    posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < o->nfds; i++)
    if (moved[i] >= 0)
      close(moved[i]);
  return err;
}
