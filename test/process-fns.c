/* See process-fns.h. These run in worker processes. */
#include "process-fns.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int give(pbl_buf *out, const void *p, size_t len) {
  out->data = malloc(len > 0 ? len : 1);
  if (out->data == NULL)
    return 1;
  if (len > 0)
    memcpy(out->data, p, len);
  out->len = len;
  return 0;
}

static void sleep_forever(void) {
  for (;;)
    pause();
}

int fn_echo(const void *in, size_t len, pbl_buf *out) {
  return give(out, in, len);
}
PBL_PROCESS_FN(fn_echo);

int fn_fail_with(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  pbl_fail(42, "bad thing %d", 7);
  pbl_fail(43, "second"); /* ignored: the first wins */
  return 1;
}
PBL_PROCESS_FN(fn_fail_with);

int fn_fail_plain(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 5;
}
PBL_PROCESS_FN(fn_fail_plain);

int fn_fail_then_ok(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  pbl_fail(9, "late");
  return give(out, "x", 1);
}
PBL_PROCESS_FN(fn_fail_then_ok);

int fn_abort(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  abort();
}
PBL_PROCESS_FN(fn_abort);

int fn_segv(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  signal(SIGSEGV, SIG_DFL); /* past a sanitizer's handler */
  raise(SIGSEGV);
  return 1;
}
PBL_PROCESS_FN(fn_segv);

int fn_exit3(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  _exit(3);
}
PBL_PROCESS_FN(fn_exit3);

/* Its only pointer is dropped before the worker exits: a definite leak. */
static void *volatile leak_sink;

int fn_leak(const void *in, size_t len, pbl_buf *out) {
  leak_sink = malloc(4096);
  if (leak_sink != NULL)
    memset((void *)leak_sink, 'l', 4096);
  leak_sink = NULL;
  return give(out, in, len);
}
PBL_PROCESS_FN(fn_leak);

int fn_exit0(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  exit(0);
}
PBL_PROCESS_FN(fn_exit0);

int fn_sleep(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  sleep_forever();
  return 0;
}
PBL_PROCESS_FN(fn_sleep);

int fn_linger(const void *in, size_t len, pbl_buf *out) {
  atexit(sleep_forever); /* runs after the result went out */
  return give(out, in, len);
}
PBL_PROCESS_FN(fn_linger);

/* Makes the file at the path in[0, len), if any: a sign to the test. */
static void touch(const void *in, size_t len) {
  char path[512];
  if (len == 0 || len >= sizeof(path))
    return;
  memcpy(path, in, len);
  path[len] = '\0';
  FILE *f = fopen(path, "w");
  if (f != NULL)
    fclose(f);
}

int fn_ignore_term(const void *in, size_t len, pbl_buf *out) {
  (void)out;
  signal(SIGTERM, SIG_IGN);
  touch(in, len);
  sleep_forever();
  return 0;
}
PBL_PROCESS_FN(fn_ignore_term);

int fn_grandchild(const void *in, size_t len, pbl_buf *out) {
  (void)out;
  char path[512];
  if (len == 0 || len >= sizeof(path))
    return 1;
  memcpy(path, in, len);
  path[len] = '\0';
  signal(SIGTERM, SIG_IGN); /* inherited: no window before the child's */
  pid_t pid = fork();
  if (pid == 0)
    sleep_forever();
  signal(SIGTERM, SIG_DFL);
  if (pid < 0)
    return 1;
  char tmp[520];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return 1;
  fprintf(f, "%d\n", (int)pid);
  fclose(f);
  rename(tmp, path); /* the test sees the whole pid or nothing */
  sleep_forever();
  return 0;
}
PBL_PROCESS_FN(fn_grandchild);

static void write_n(int fd, size_t n) {
  char buf[4096];
  memset(buf, 'x', sizeof(buf));
  while (n > 0) {
    size_t k = n < sizeof(buf) ? n : sizeof(buf);
    ssize_t w = write(fd, buf, k);
    if (w <= 0)
      return;
    n -= (size_t)w;
  }
}

int fn_print_lots(const void *in, size_t len, pbl_buf *out) {
  uint64_t n;
  if (len != sizeof(n))
    return 1;
  memcpy(&n, in, sizeof(n));
  write_n(1, (size_t)n);
  write_n(2, (size_t)n);
  return give(out, "ok", 2);
}
PBL_PROCESS_FN(fn_print_lots);

int fn_list_fds(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  char list[1024] = "";
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return 1;
  int self = dirfd(d);
  /* Valgrind, tracing this worker, keeps fds of its own (its log, the
   * executable) above the fd limit it gives the program: not ours. */
  struct rlimit lim;
  long above = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? (long)lim.rlim_cur : -1;
  int fds[64], n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 64) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && (above < 0 || fd < above))
      fds[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++) /* readdir's order is not numeric */
    for (int j = i + 1; j < n; j++)
      if (fds[j] < fds[i]) {
        int x = fds[i];
        fds[i] = fds[j];
        fds[j] = x;
      }
  for (int i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%d ", fds[i]);
  return give(out, list, strlen(list));
}
PBL_PROCESS_FN(fn_list_fds);

int fn_garbage(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  static const char junk[64] = "this is not a frame of the pebble wire";
  if (write(3, junk, sizeof(junk)) != (ssize_t)sizeof(junk))
    return 1;
  return give(out, "x", 1);
}
PBL_PROCESS_FN(fn_garbage);

typedef struct {
  pbl_buf *out;
  int err;
} nested_ctx;

static void nested_done(pbl_task_t *t, void *data) {
  nested_ctx *c = data;
  size_t n;
  const void *p = pbl_task_bytes(t, &n);
  c->err = pbl_task_error(t);
  if (c->err == 0 && give(c->out, p, n) != 0)
    c->err = UV_ENOMEM;
}

int fn_nested(const void *in, size_t len, pbl_buf *out) {
  uv_loop_t loop;
  pbl_loop_t *pl;
  nested_ctx c = {out, -1};
  if (uv_loop_init(&loop) != 0 || pbl_loop_new(&loop, &pl) != 0)
    return 1;
  pbl_task_opts o = {.on_done = nested_done, .data = &c};
  int err = pbl_process(pl, fn_echo, in, len, &o, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  pbl_loop_close(pl, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (err != 0 || c.err != 0) {
    pbl_fail(1, "nested task: %s", pbl_strerror(err != 0 ? err : c.err));
    return 1;
  }
  return 0;
}
PBL_PROCESS_FN(fn_nested);

int fn_hello(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  return give(out, "main", 4);
}
PBL_PROCESS_FN(fn_hello);

int fn_pid(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  int32_t pid = (int32_t)getpid();
  return give(out, &pid, sizeof(pid));
}
PBL_PROCESS_FN(fn_pid);

int fn_sleep_ms(const void *in, size_t len, pbl_buf *out) {
  uint32_t ms = 0;
  if (len >= sizeof(ms))
    memcpy(&ms, in, sizeof(ms));
  usleep((useconds_t)ms * 1000);
  return give(out, in, len);
}
PBL_PROCESS_FN(fn_sleep_ms);

int fn_sleep_touch(const void *in, size_t len, pbl_buf *out) {
  uint32_t ms = 0;
  if (len >= sizeof(ms))
    memcpy(&ms, in, sizeof(ms));
  usleep((useconds_t)ms * 1000);
  const char *path = (const char *)in + sizeof(ms);
  if (len > sizeof(ms) + 1 && memchr(path, '\0', len - sizeof(ms)) != NULL) {
    FILE *fp = fopen(path, "w");
    if (fp == NULL)
      return 1;
    fclose(fp);
  }
  return fn_pid(NULL, 0, out);
}
PBL_PROCESS_FN(fn_sleep_touch);

/* What the initializer was given, for the tasks to return. */
static char *init_seen;
static size_t init_seen_len;

int fn_init_keep(const void *in, size_t len, pbl_buf *out) {
  (void)out;
  init_seen = malloc(len + 1);
  if (init_seen == NULL)
    return 1;
  memcpy(init_seen, in, len);
  init_seen_len = len;
  return 0;
}
PBL_PROCESS_FN(fn_init_keep);

int fn_init_seen(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  if (init_seen == NULL)
    return give(out, "none", 4);
  return give(out, init_seen, init_seen_len);
}
PBL_PROCESS_FN(fn_init_seen);

int fn_init_fail(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  pbl_fail(7, "init says no");
  return 1;
}
PBL_PROCESS_FN(fn_init_fail);

int fn_wait_file(const void *in, size_t len, pbl_buf *out) {
  if (len == 0 || ((const char *)in)[len - 1] != '\0')
    return 1;
  for (int i = 0; i < 60000 && access(in, F_OK) != 0; i++)
    usleep(1000); /* a worker has no loop: it looks every ms, at most 60 s */
  if (access(in, F_OK) != 0)
    return 2;
  int32_t pid = (int32_t)getpid();
  return give(out, &pid, sizeof(pid));
}
PBL_PROCESS_FN(fn_wait_file);

int fn_init_hang_if(const void *in, size_t len, pbl_buf *out) {
  (void)out;
  if (len > 0 && ((const char *)in)[len - 1] == '\0' && access(in, F_OK) == 0)
    sleep_forever();
  return 0;
}
PBL_PROCESS_FN(fn_init_hang_if);

int fn_run_child(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return 1;
  int32_t code = WEXITSTATUS(status);
  return give(out, &code, sizeof(code));
}
PBL_PROCESS_FN(fn_run_child);

int fn_fail_odd(const void *in, size_t len, pbl_buf *out) {
  uint32_t v = 0;
  if (len >= sizeof(v))
    memcpy(&v, in, sizeof(v));
  if (v % 2 == 1) {
    pbl_fail((int)v, "odd %u", v);
    return 1;
  }
  return give(out, in, len);
}
PBL_PROCESS_FN(fn_fail_odd);
