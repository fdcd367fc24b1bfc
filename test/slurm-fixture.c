/* A one-node Slurm cluster of its own. See slurm-fixture.h. */
#define _GNU_SOURCE /* pipe2 */
#include "slurm-fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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

#include <uv.h>

/* Bounds, generous for a loaded machine: the daemons' start (slurmd
 * registers within seconds), the jobs' end, the daemons' stop. */
#define UP_MS 120000
#define JOBS_MS 60000
#define DOWN_MS 60000
#define POLL_MS 100

static const char *const programs[] = {
    "/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd",
    "/usr/bin/srun",    "/usr/bin/sinfo",      "/usr/bin/squeue"};
static const char *const daemon_names[] = {"munged", "slurmctld", "slurmd"};

/* The keeper: $1 the directory, $2 the node's name. Every daemon in the
 * foreground, its output in the directory; `read` returns when the
 * program's end of the pipe closes (a stop, or its death). */
static const char keeper_script[] =
    "d=$1; node=$2\n"
    "chown -R 0:0 \"$d\"\n" /* written by us; under sudo, munged wants root's */
    "/usr/sbin/munged -F --socket=\"$d/munge.sock\" "
    "--key-file=\"$d/munge.key\" --pid-file=\"$d/munged.pid\" "
    "--seed-file=\"$d/munged.seed\" --log-file=\"$d/munged.log\" "
    "</dev/null >\"$d/munged.out\" 2>&1 &\n"
    "m=$!\n"
    /* slurmctld's first credential needs munged's socket: poll, bounded */
    "i=0; while [ ! -S \"$d/munge.sock\" ] && [ $i -lt 600 ]; do\n"
    "  sleep 0.05; i=$((i+1)); done\n"
    "/usr/sbin/slurmctld -D -i -f \"$d/slurm.conf\" "
    "</dev/null >\"$d/slurmctld.out\" 2>&1 &\n"
    "c=$!\n"
    "/usr/sbin/slurmd -D -f \"$d/slurm.conf\" -N \"$node\" "
    "</dev/null >\"$d/slurmd.out\" 2>&1 &\n"
    "s=$!\n"
    "echo \"$$ $m $c $s\" >\"$d/pids.tmp\" && mv \"$d/pids.tmp\" \"$d/pids\"\n"
    "read _ || true\n"
    "kill -TERM $s $c $m 2>/dev/null\n"
    "wait\n"
    "rm -rf \"$d\"\n";

static void why(pbl_test_slurm *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->why, sizeof(s->why), fmt, ap);
  va_end(ap);
}

/* A free loopback port: the kernel picks one; a daemon binds it next. */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof(a);
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &n) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* Gone, or a zombie (of the keeper's, or of init's). */
static bool gone(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return true;
  bool dead =
      fgets(line, sizeof(line), fp) != NULL && strstr(line, ") Z ") != NULL;
  fclose(fp);
  return dead;
}

static size_t append_line(char *buf, size_t len, size_t cap, const char *line) {
  if (len >= cap)
    return 0;
  int n = snprintf(buf + len, cap - len, "\n  %s", line);
  return n < 0 ? 0 : (size_t)n;
}

/* The last lines of a daemon's output, into s->why after `what`. */
static void why_with_log(pbl_test_slurm *s, const char *what,
                         const char *name) {
  char path[128], tail[4096] = "";
  snprintf(path, sizeof(path), "%s/%s.out", s->dir, name);
  FILE *fp = fopen(path, "r");
  if (fp != NULL) {
    size_t got = fread(tail, 1, sizeof(tail) - 1, fp);
    if (got == sizeof(tail) - 1) { /* long: its end */
      fseek(fp, -(long)(sizeof(tail) - 1), SEEK_END);
      got = fread(tail, 1, sizeof(tail) - 1, fp);
    }
    tail[got] = '\0';
    fclose(fp);
  }
  /* Its last error lines say why (the first are often about plugins
   * it does without); with none, its last lines. */
  char out[768] = "", *lines[64], *errs[64];
  size_t len = 0, n_lines = 0, n_errs = 0;
  for (char *line = strtok(tail, "\n"); line != NULL;
       line = strtok(NULL, "\n")) {
    lines[n_lines++ % 64] = line;
    if (strstr(line, "error") != NULL || strstr(line, "fatal") != NULL ||
        strstr(line, "Error") != NULL)
      errs[n_errs++ % 64] = line;
  }
  char **pick = n_errs > 0 ? errs : lines;
  size_t n = n_errs > 0 ? n_errs : n_lines;
  for (size_t i = n > 4 ? n - 4 : 0; i < n; i++)
    len += append_line(out, len, sizeof(out), pick[i % 64]);
  why(s, "%s; its %s.out says:%s", what, name, out[0] ? out : " nothing");
}

static bool write_file(const char *path, const void *data, size_t len,
                       mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return false;
  bool ok = write(fd, data, len) == (ssize_t)len;
  return close(fd) == 0 && ok;
}

static bool write_config(pbl_test_slurm *s) {
  int ctld = free_port(), slurmd = free_port();
  if (ctld < 0 || slurmd < 0 || ctld == slurmd)
    return false;
  char text[2048];
  /* NoInAddrAny: the daemons listen on 127.0.0.1 only. config_overrides:
   * 8 CPUs whatever the machine has, so that several one-CPU steps run
   * at once on a small CI machine. */
  int n = snprintf(
      text, sizeof(text),
      "ClusterName=pbl%ld\n"
      "SlurmctldHost=%s(127.0.0.1)\n"
      "SlurmctldPort=%d\nSlurmdPort=%d\n"
      "SlurmUser=root\nSlurmdUser=root\n"
      "AuthType=auth/munge\nCredType=cred/munge\n"
      "AuthInfo=socket=%s/munge.sock\n"
      "CommunicationParameters=NoInAddrAny\n"
      "StateSaveLocation=%s/state\nSlurmdSpoolDir=%s/spool\n"
      "SlurmctldPidFile=%s/slurmctld.pid\nSlurmdPidFile=%s/slurmd.pid\n"
      "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
      "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
      "SlurmdParameters=config_overrides\n"
      "JobAcctGatherType=jobacct_gather/none\n"
      "AccountingStorageType=accounting_storage/none\n"
      "MpiDefault=none\nReturnToService=2\nMailProg=/bin/true\n"
      "KillWait=5\n"
      "NodeName=%s NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN\n"
      "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE "
      "State=UP\n",
      (long)getpid(), s->node, ctld, slurmd, s->dir, s->dir, s->dir, s->dir,
      s->dir, s->node);
  if (n < 0 || (size_t)n >= sizeof(text))
    return false;
  return write_file(s->conf, text, (size_t)n, 0644);
}

static bool make_dir(pbl_test_slurm *s) {
  snprintf(s->dir, sizeof(s->dir), "/tmp/pbl-slurm-XXXXXX");
  if (mkdtemp(s->dir) == NULL) {
    s->dir[0] = '\0';
    return false;
  }
  /* munged wants its socket's directory searchable by all. */
  char path[128];
  unsigned char key[1024];
  int rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  bool ok = rnd >= 0 && read(rnd, key, sizeof(key)) == (ssize_t)sizeof(key);
  if (rnd >= 0)
    close(rnd);
  snprintf(path, sizeof(path), "%s/munge.key", s->dir);
  ok = ok && chmod(s->dir, 0755) == 0 &&
       write_file(path, key, sizeof(key), 0400);
  snprintf(path, sizeof(path), "%s/state", s->dir);
  ok = ok && mkdir(path, 0755) == 0;
  snprintf(path, sizeof(path), "%s/spool", s->dir);
  ok = ok && mkdir(path, 0755) == 0;
  snprintf(s->conf, sizeof(s->conf), "%s/slurm.conf", s->dir);
  return ok && write_config(s);
}

static void remove_dir(pbl_test_slurm *s) {
  if (s->dir[0] == '\0')
    return;
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "%srm -rf %s", getuid() == 0 ? "" : "sudo -n ",
           s->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "slurm fixture: `%s` failed\n", cmd);
  s->dir[0] = '\0';
}

/* The keeper, through a double fork: its parent exits at once, so it is
 * not ours. Its stdin is the pipe's read end; we keep the write end
 * (close-on-exec: no worker, srun or daemon inherits it). */
static bool start_keeper(pbl_test_slurm *s) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    return false;
  char log[96];
  snprintf(log, sizeof(log), "%s/keeper.out", s->dir);
  const char *argv[] = {"sudo", "-n",   "sh",    "-c", keeper_script,
                        "sh",   s->dir, s->node, NULL};
  const char *const *run = getuid() == 0 ? argv + 2 : argv;
  pid_t mid = fork();
  if (mid == 0) {
    (void)setsid(); /* no terminal's signals */
    pid_t k = fork();
    if (k == 0) {
      int out = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (dup2(p[0], 0) < 0 || out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(126);
      execvp(run[0], (char *const *)run);
      _exit(127);
    }
    _exit(k < 0 ? 1 : 0);
  }
  close(p[0]);
  int status = 0;
  while (mid > 0 && waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
  if (mid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    close(p[1]);
    return false;
  }
  s->keeper_fd = p[1];
  return true;
}

/* The keeper's and daemons' pids, once it wrote them. */
static bool read_pids(pbl_test_slurm *s) {
  char path[96];
  snprintf(path, sizeof(path), "%s/pids", s->dir);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return false;
  bool ok = fscanf(fp, "%d %d %d %d", &s->keeper, &s->daemons[0],
                   &s->daemons[1], &s->daemons[2]) == 4;
  fclose(fp);
  return ok;
}

/* The first line of a command's output, "" if none. */
static void first_line(const char *cmd, char *out, size_t len) {
  out[0] = '\0';
  FILE *fp = popen(cmd, "r");
  if (fp == NULL)
    return;
  if (fgets(out, (int)len, fp) != NULL)
    out[strcspn(out, "\n")] = '\0';
  while (fgetc(fp) != EOF) {
  }
  pclose(fp);
}

/* Polls, bounded, until the node is idle, or a daemon died. */
static bool wait_up(pbl_test_slurm *s) {
  for (int ms = 0; !read_pids(s); ms += POLL_MS) {
    if (ms >= UP_MS) {
      why_with_log(s, "the keeper did not start the daemons", "keeper");
      return false;
    }
    uv_sleep(POLL_MS);
  }
  char cmd[256], state[128] = "";
  snprintf(cmd, sizeof(cmd), "sinfo -h -n %s -o %%t 2>/dev/null", s->node);
  for (int ms = 0; ms < UP_MS; ms += POLL_MS) {
    for (int i = 0; i < 3; i++)
      if (gone(s->daemons[i])) {
        why_with_log(s, "a daemon exited at start", daemon_names[i]);
        return false;
      }
    first_line(cmd, state, sizeof(state));
    if (strcmp(state, "idle") == 0)
      return true;
    uv_sleep(POLL_MS);
  }
  char reason[256] = "";
  snprintf(cmd, sizeof(cmd), "scontrol show node %s 2>&1 | grep -o 'Reason=.*'",
           s->node);
  first_line(cmd, reason, sizeof(reason));
  char what[512];
  snprintf(what, sizeof(what),
           "node %s not idle within %d s (state \"%s\"%s%s)", s->node,
           UP_MS / 1000, state, reason[0] ? ", " : "", reason);
  why_with_log(s, what, "slurmd");
  return false;
}

static bool available(pbl_test_slurm *s) {
  for (size_t i = 0; i < sizeof(programs) / sizeof(programs[0]); i++)
    if (access(programs[i], X_OK) != 0) {
      why(s,
          "no %s (Debian: apt-get install slurmctld slurmd munge "
          "slurm-client)",
          programs[i]);
      return false;
    }
  if (getuid() != 0 && system("sudo -n true >/dev/null 2>&1") != 0) {
    why(s, "not root, and no passwordless sudo: slurmd must run as root to "
           "start job steps as their user");
    return false;
  }
  return true;
}

/* Stops the keeper (the pipe's end), and waits for it, the daemons and
 * the directory to be gone. */
static bool stop_keeper(pbl_test_slurm *s) {
  if (s->keeper_fd >= 0)
    close(s->keeper_fd);
  s->keeper_fd = -1;
  if (s->keeper == 0) {
    remove_dir(s); /* it never told us: the directory is ours to remove */
    return true;
  }
  bool down = false;
  for (int ms = 0; !down && ms < DOWN_MS; ms += POLL_MS) {
    down = gone(s->keeper) && access(s->dir, F_OK) != 0;
    for (int i = 0; i < 3; i++)
      down = down && gone(s->daemons[i]);
    if (!down)
      uv_sleep(POLL_MS);
  }
  if (!down) {
    fprintf(stderr,
            "slurm fixture: the cluster was not down within %d s: "
            "killed\n",
            DOWN_MS / 1000);
    for (int i = 0; i < 3; i++)
      (void)kill(s->daemons[i], SIGKILL);
    (void)kill(s->keeper, SIGKILL);
    remove_dir(s);
  }
  s->dir[0] = '\0';
  s->keeper = 0;
  return down;
}

bool pbl_test_slurm_start(pbl_test_slurm *s) {
  memset(s, 0, sizeof(*s));
  s->keeper_fd = -1;
  if (!available(s))
    return false;
  if (gethostname(s->node, sizeof(s->node) - 1) != 0 || s->node[0] == '\0') {
    why(s, "no host name");
    return false;
  }
  s->node[strcspn(s->node, ".")] = '\0'; /* slurmd's short name */
  if (!make_dir(s)) {
    why(s, "cannot write the cluster's directory %s: %s", s->dir,
        strerror(errno));
    remove_dir(s);
    return false;
  }
  if (!start_keeper(s)) {
    why(s, "cannot start the keeper (fork: %s)", strerror(errno));
    remove_dir(s);
    return false;
  }
  setenv("SLURM_CONF", s->conf, 1);
  if (!wait_up(s)) {
    (void)stop_keeper(s);
    unsetenv("SLURM_CONF");
    return false;
  }
  return true;
}

bool pbl_test_slurm_stop(pbl_test_slurm *s) {
  /* A job's end outlives its srun by a moment: the cluster goes once it
   * has none, so that no step is cut short by the daemons' end. */
  char jobs[256] = "";
  for (int ms = 0; ms < JOBS_MS; ms += POLL_MS) {
    first_line("squeue -h -o '%i %T' 2>&1", jobs, sizeof(jobs));
    if (jobs[0] == '\0')
      break;
    uv_sleep(POLL_MS);
  }
  bool ok = jobs[0] == '\0';
  if (!ok)
    fprintf(stderr, "slurm fixture: a job still there after %d s: %s\n",
            JOBS_MS / 1000, jobs);
  ok = stop_keeper(s) && ok;
  unsetenv("SLURM_CONF");
  return ok;
}
