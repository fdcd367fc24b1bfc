/* Starting a program: the one place the library creates a process.
 *
 * Why not uv_spawn. libuv 1.44 (Debian 12's) forks on Linux: fork copies
 * the parent's page tables, so a start costs time in proportion to the
 * parent's memory and the loop stands still meanwhile (a 16 GiB server:
 * 3 starts a second, 305 ms of loop lag each). posix_spawn(3) in glibc
 * clones with CLONE_VM | CLONE_VFORK: the child shares our memory until it
 * execs, so a start costs the same from a 16 GiB parent as from a small
 * one. The children stay ours (kill, pid, process group), and reaper.c
 * reaps them on the loop, since libuv reaps only the pids it spawned.
 *
 * What the child gets, as uv_spawn with UV_PROCESS_DETACHED gave it: its
 * own session and process group; every signal at its default action and
 * none blocked; fds 0..nfds-1 as the plan says and no other fd of ours,
 * CLOEXEC or not; the cwd and environment asked for.
 */
#ifndef PBL_PROCESS_START_H
#define PBL_PROCESS_START_H

#include <stdbool.h>

#define PBL__START_MAX_FDS 5
/* fds[i] values other than a descriptor of ours: */
#define PBL__START_DEVNULL (-1) /* /dev/null */
#define PBL__START_INHERIT (-2) /* our own fd i, as it is */

typedef struct pbl__start_opts {
  const char *file;  /* looked up in the child's PATH if it has no slash */
  char *const *args; /* args[0] first, NULL-terminated */
  char *const *env;  /* NULL: ours */
  const char *cwd;   /* NULL: ours */
  int fds[PBL__START_MAX_FDS]; /* the child's fd i: our fd fds[i], dup'd */
  int nfds;                    /* fds at and above are closed */
} pbl__start_opts;

/* Starts the program. Returns 0 and sets *pid, or a negative errno:
 * UV_ENOENT, UV_EACCES (no such program, not executable: the child's PATH
 * and cwd are taken into account), the cwd's error, UV_ENOMEM... Never
 * blocks longer than the kernel takes to exec. Thread: any; the caller
 * reaps the child. */
int pbl__start(const pbl__start_opts *o, int *pid);

#endif /* PBL_PROCESS_START_H */
