/* A real sshd on a loopback port. See sshd-fixture.h. */
#include "sshd-fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

bool pbl_test_sshd_available(void) {
  if (access(PBL_TEST_SSHD, X_OK) == 0)
    return true;
  print_message("no %s (Debian: apt-get install openssh-server): the "
                "tests through a real sshd are skipped\n",
                PBL_TEST_SSHD);
  return false;
}

static void run(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0)
    fail_msg("`%s` failed (%d)", cmd, rc);
}

/* A free loopback port: the kernel picks one; sshd binds it next. */
static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(s >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof(a);
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(s, (struct sockaddr *)&a, &n), 0);
  close(s);
  return ntohs(a.sin_port);
}

static bool listening(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(s);
  return ok;
}

/* What this program's children get from the helpers' environment goes
 * to the remote sessions too. */
static void set_env_line(FILE *cfg, const char *name) {
  const char *v = getenv(name);
  if (v != NULL && strchr(v, '"') == NULL)
    fprintf(cfg, "SetEnv \"%s=%s\"\n", name, v);
}

static void write_config(pbl_test_sshd *s, const char *path) {
  FILE *cfg = fopen(path, "w");
  assert_non_null(cfg);
  fprintf(cfg,
          "ListenAddress 127.0.0.1\nHostKey %s/host\n"
          "AuthorizedKeysFile %s/user.pub\nPidFile none\nStrictModes no\n"
          "UsePAM no\nPasswordAuthentication no\n"
          "KbdInteractiveAuthentication no\n"
          "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
          "SetEnv PBL_TEST_ROOT=%ld\n",
          s->dir, s->dir, (long)getpid());
  set_env_line(cfg, "ASAN_OPTIONS");
  set_env_line(cfg, "LSAN_OPTIONS");
  set_env_line(cfg, "UBSAN_OPTIONS");
  set_env_line(cfg, "TSAN_OPTIONS");
  fclose(cfg);
}

void pbl_test_sshd_start(pbl_test_sshd *s) {
  memset(s, 0, sizeof(*s));
  snprintf(s->dir, sizeof(s->dir), "/tmp/pbl-sshd-XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  char cmd[512], cfg[96];
  snprintf(cmd, sizeof(cmd),
           "ssh-keygen -q -t ed25519 -N '' -f %s/host </dev/null && "
           "ssh-keygen -q -t ed25519 -N '' -f %s/user </dev/null",
           s->dir, s->dir);
  run(cmd);
  if (getuid() == 0)
    (void)mkdir("/run/sshd", 0755); /* privilege separation, as root */
  snprintf(cfg, sizeof(cfg), "%s/sshd_config", s->dir);
  write_config(s, cfg);
  snprintf(s->key, sizeof(s->key), "%s/user", s->dir);
  int port = free_port();
  snprintf(s->port, sizeof(s->port), "%d", port);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char log[96]; /* its complaints (our readiness probes) stay there */
    snprintf(log, sizeof(log), "%s/sshd.log", s->dir);
    if (freopen(log, "w", stderr) == NULL)
      _exit(126);
    execl(PBL_TEST_SSHD, PBL_TEST_SSHD, "-D", "-e", "-f", cfg, "-p", s->port,
          (char *)NULL);
    _exit(127);
  }
  s->pid = pid;
  /* Up when it accepts; it may fail first (a port taken meanwhile). */
  bool up = false;
  for (int i = 0; i < 2000 && !(up = listening(port)); i++) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      s->pid = 0;
      fail_msg("sshd exited at start (status %d)", status);
    }
    uv_sleep(5);
  }
  assert_true(up);
  const char *a[] = {"ssh",       "-F",
                     "none",      "-T",
                     "-i",        s->key,
                     "-p",        s->port,
                     "-o",        "StrictHostKeyChecking=no",
                     "-o",        "UserKnownHostsFile=/dev/null",
                     "-o",        "BatchMode=yes",
                     "-o",        "LogLevel=ERROR",
                     "127.0.0.1", NULL};
  memcpy(s->argv, a, sizeof(a));
}

void pbl_test_sshd_stop(pbl_test_sshd *s) {
  if (s->pid > 0) {
    (void)kill(s->pid, SIGTERM);
    int status;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    s->pid = 0;
  }
  if (s->dir[0] != '\0') {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
    run(cmd);
    s->dir[0] = '\0';
  }
}

void pbl_test_sshd_argv(const pbl_test_sshd *s, const char **out, ...) {
  size_t n = 0;
  while (s->argv[n] != NULL)
    out[n] = s->argv[n], n++;
  va_list ap;
  va_start(ap, out);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 31)
    out[n++] = a;
  va_end(ap);
  out[n] = NULL;
}
