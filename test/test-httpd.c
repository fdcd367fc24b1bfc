/* The example server (examples/httpd/): started as a child on an
 * ephemeral port (its first stdout line names it), asked with a plain
 * HTTP/1.1 client (one socket a request, Connection: close): each
 * endpoint's status and words, a worker that dies (502), a timeout
 * (504), a full queue and a queue deadline (503 + Retry-After), and the
 * SIGTERM drain: requests in flight get their answers, the server exits
 * 0 and none of its workers is left. Skipped (77) where httpd was not
 * built (no libh2o). Every wait is for an event (an answer, an exit),
 * bounded generously: the server may run under valgrind. */
#define _GNU_SOURCE /* pipe2, strcasestr */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

extern char **environ;

#define BOUND_MS 120000 /* any one wait; under valgrind a start takes s */

typedef struct {
  pid_t pid;
  int out; /* its stdout: EOF once it and every worker it started (they
              inherit fd 1) are gone */
  int port;
} server;

typedef struct {
  int status;
  char head[4096];  /* status line and headers */
  char body[16384]; /* what follows */
  bool retry_after; /* a Retry-After header */
} answer;

/* The server a test runs, killed by the teardown if a failed assertion
 * left it running, so that the next test starts clean. */
static pid_t running = -1;
static int running_out = -1;

static const char *httpd_path(void) {
  const char *p = getenv("PBL_HTTPD");
  return p != NULL && p[0] != '\0' && access(p, X_OK) == 0 ? p : NULL;
}

static void server_start(server *sv, const char *const *args) {
  /* No queue deadline unless a test asks: a slow worker start (valgrind)
   * must not turn a test's requests into 503s. */
  const char *argv[16] = {httpd_path(), "--port", "0", "--queue-timeout-ms",
                          "0"};
  size_t n = 5;
  for (; args != NULL && *args != NULL && n < 15; args++)
    argv[n++] = *args;
  argv[n] = NULL;
  int out[2];
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
  assert_int_equal(posix_spawn_file_actions_adddup2(&fa, out[1], 1), 0);
  assert_int_equal(
      posix_spawn(&sv->pid, argv[0], &fa, NULL, (char *const *)argv, environ),
      0);
  posix_spawn_file_actions_destroy(&fa);
  running = sv->pid;
  running_out = sv->out = out[0];
  close(out[1]);
  /* "listening on 127.0.0.1:PORT\n" */
  char line[128];
  size_t len = 0;
  while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
    struct pollfd p = {.fd = sv->out, .events = POLLIN};
    assert_int_equal(poll(&p, 1, BOUND_MS), 1);
    ssize_t got = read(sv->out, line + len, sizeof(line) - 1 - len);
    assert_true(got > 0); /* EOF: the server died before listening */
    len += (size_t)got;
  }
  line[len] = '\0';
  assert_int_equal(sscanf(line, "listening on 127.0.0.1:%d", &sv->port), 1);
  assert_true(sv->port > 0);
}

/* Waits for the server's exit; returns its exit status. The end of its
 * stdout comes once the server and all its workers are gone (no pidfd:
 * valgrind does not know pidfd_open). */
static int server_wait(server *sv) {
  char buf[256];
  ssize_t got;
  do {
    struct pollfd p = {.fd = sv->out, .events = POLLIN};
    assert_int_equal(poll(&p, 1, BOUND_MS), 1);
    got = read(sv->out, buf, sizeof(buf));
    assert_true(got >= 0);
  } while (got > 0);
  close(sv->out);
  running_out = -1;
  int st;
  assert_int_equal(waitpid(sv->pid, &st, 0), sv->pid);
  running = -1;
  assert_true(WIFEXITED(st)); /* not killed by a signal: an abort */
  return WEXITSTATUS(st);
}

static void server_stop(server *sv) {
  assert_int_equal(kill(sv->pid, SIGTERM), 0);
  assert_int_equal(server_wait(sv), 0);
}

/* Sends a GET; returns the socket to read the answer from. */
static int http_send(const server *sv, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)sv->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  char req[512];
  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
                   path);
  assert_int_equal(write(fd, req, (size_t)n), n);
  return fd;
}

/* Reads the whole answer (the server closes), then closes fd. */
static void http_read(int fd, answer *a) {
  char buf[sizeof(a->head) + sizeof(a->body)];
  size_t len = 0;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, BOUND_MS), 1);
    ssize_t got = read(fd, buf + len, sizeof(buf) - 1 - len);
    assert_true(got >= 0);
    if (got == 0)
      break;
    len += (size_t)got;
    assert_true(len < sizeof(buf) - 1);
  }
  close(fd);
  buf[len] = '\0';
  char *sep = strstr(buf, "\r\n\r\n");
  assert_non_null(sep);
  *sep = '\0';
  size_t hl = strlen(buf), bl = strlen(sep + 4);
  assert_true(hl < sizeof(a->head) && bl < sizeof(a->body));
  memcpy(a->head, buf, hl + 1);
  memcpy(a->body, sep + 4, bl + 1);
  assert_int_equal(sscanf(a->head, "HTTP/1.1 %d", &a->status), 1);
  a->retry_after = strcasestr(a->head, "\r\nretry-after: 1") != NULL;
}

static void http_get(const server *sv, const char *path, answer *a) {
  http_read(http_send(sv, path), a);
}

/* Asserts status and that the body holds `words`. */
static void expect(const server *sv, const char *path, int status,
                   const char *words) {
  answer a;
  http_get(sv, path, &a);
  if (a.status != status || strstr(a.body, words) == NULL)
    fail_msg("%s: want %d with \"%s\", got:\n%s\n\n%s", path, status, words,
             a.head, a.body);
}

/* The value of a /metrics line that starts with `series`. */
static long long metric(const server *sv, const char *series) {
  answer a;
  http_get(sv, "/metrics", &a);
  assert_int_equal(a.status, 200);
  size_t n = strlen(series);
  for (const char *l = a.body; l != NULL && *l != '\0';) {
    if (strncmp(l, series, n) == 0 && l[n] == ' ')
      return atoll(l + n + 1);
    l = strchr(l, '\n');
    l = l != NULL ? l + 1 : NULL;
  }
  fail_msg("no %s in /metrics:\n%s", series, a.body);
  return -1;
}

static void test_endpoints(void **state) {
  (void)state;
  server sv;
  server_start(&sv, (const char *[]){"--workers", "2", "--threads", "2", NULL});
  expect(&sv, "/fast", 200, "fast\n");
  expect(&sv, "/hash?kb=4", 200, " kb=4\n");
  expect(&sv, "/hash?kb=4", 200, "fnv1a64 ");
  expect(&sv, "/render?ms=5", 200, "render ms=5 spins=");
  expect(&sv, "/report?ms=1", 200, "render ms=1 ");
  expect(&sv, "/render-oneshot?ms=1", 200, "render ms=1 ");
  expect(&sv, "/render-inline?ms=1", 200, "render-inline ms=1 ");
  expect(&sv, "/hash?kb=0", 400, "kb=N");
  expect(&sv, "/render?ms=x", 400, "ms=N");
  expect(&sv, "/nope", 404, "no such endpoint");
  assert_int_equal(metric(&sv, "pebble_pool_tasks_total{pool=\"hash\","
                               "end=\"done\"}"),
                   2);
  assert_int_equal(metric(&sv, "pebble_pool_tasks_total{pool=\"render\","
                               "end=\"done\"}"),
                   2);
  assert_int_equal(metric(&sv, "httpd_responses_total{code=\"404\"}"), 1);
  assert_int_equal(metric(&sv, "httpd_tasks_in_flight"), 0);
  server_stop(&sv);
}

/* A worker that aborts: 502 with pebble's words; the pool goes on. */
static void test_crash(void **state) {
  (void)state;
  server sv;
  server_start(&sv, (const char *[]){"--workers", "1", NULL});
  expect(&sv, "/crash", 502, "killed by signal 6 (SIGABRT)");
  expect(&sv, "/render?ms=1", 200, "render ms=1 ");
  expect(&sv, "/render?ms=1&crash=1", 502, "the worker died: worker ");
  expect(&sv, "/render?ms=1", 200, "render ms=1 ");
  assert_int_equal(
      metric(&sv, "pebble_pool_tasks_total{pool=\"render\",end=\"expired\"}"),
      2);
  server_stop(&sv);
}

static void test_timeout(void **state) {
  (void)state;
  server sv;
  /* 5 s: the next task may go to a worker still starting (under
   * valgrind, seconds), timed from its hand-over. */
  server_start(&sv, (const char *[]){"--render-timeout-ms", "5000", NULL});
  expect(&sv, "/render?ms=60000", 504, "ran past 5000 ms");
  expect(&sv, "/render?ms=1", 200, "render ms=1 ");
  server_stop(&sv);
}

/* Sends n long requests at once; the first answer to come must be a 503
 * with Retry-After and `words` (the others run for 20 s). Then
 * SIGTERM (drain) and SIGINT (stop the pools): the rest are cancelled,
 * answered 503, and the server exits 0. */
static void expect_shed(const char *const *args, const char *words) {
  server sv;
  server_start(&sv, args);
  enum { N = 6 };
  int fds[N];
  for (int i = 0; i < N; i++)
    fds[i] = http_send(&sv, "/render?ms=20000");
  struct pollfd p[N];
  for (int i = 0; i < N; i++)
    p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
  assert_true(poll(p, N, BOUND_MS) > 0);
  int first = 0;
  while (p[first].revents == 0)
    first++;
  answer a;
  http_read(fds[first], &a);
  fds[first] = -1;
  if (a.status != 503 || !a.retry_after || strstr(a.body, words) == NULL)
    fail_msg("want 503, Retry-After and \"%s\"; got:\n%s\n\n%s", words, a.head,
             a.body);
  assert_int_equal(kill(sv.pid, SIGTERM), 0);
  assert_int_equal(kill(sv.pid, SIGINT), 0);
  for (int i = 0; i < N; i++)
    if (fds[i] >= 0) {
      http_read(fds[i], &a);
      assert_int_equal(a.status, 503); /* shed, or cancelled by the stop */
    }
  assert_int_equal(server_wait(&sv), 0);
}

static void test_queue_full(void **state) {
  (void)state;
  expect_shed((const char *[]){"--workers", "1", "--spares", "0",
                               "--queue-limit", "1", "--queue-timeout-ms", "0",
                               "--render-timeout-ms", "120000", NULL},
              "the queue is full");
}

static void test_queue_deadline(void **state) {
  (void)state;
  expect_shed((const char *[]){"--workers", "1", "--spares", "0",
                               "--queue-limit", "0", "--queue-timeout-ms",
                               "200", "--render-timeout-ms", "120000", NULL},
              "waited too long in the queue");
}

/* pids whose parent is pid (its workers), from /proc. */
static size_t children_of(pid_t pid, pid_t *out, size_t max) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    char path[300], line[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
      continue; /* not a pid, or gone */
    char *end = fgets(line, sizeof(line), fp) ? strrchr(line, ')') : NULL;
    fclose(fp);
    char st;
    int ppid;
    if (end != NULL && sscanf(end + 1, " %c %d", &st, &ppid) == 2 &&
        ppid == (int)pid)
      out[n++] = (pid_t)atoi(e->d_name);
  }
  closedir(d);
  return n;
}

/* SIGTERM with four requests in flight: each gets its answer, the server
 * exits 0, and none of its workers is left. */
static void test_sigterm_drains(void **state) {
  (void)state;
  server sv;
  server_start(&sv,
               (const char *[]){"--workers", "2", "--threads", "1", "--spares",
                                "1", "--render-timeout-ms", "60000", NULL});
  int fds[4] = {
      http_send(&sv, "/render?ms=500"), http_send(&sv, "/render?ms=500"),
      http_send(&sv, "/report?ms=500"), http_send(&sv, "/hash?kb=4096")};
  /* Each /metrics request is an answer waited for, not a sleep; the
   * loop ends when the server holds the three renders (the hash may be
   * done by then: it is answered either way) and a worker runs one. */
  int tries = 0;
  while ((metric(&sv, "httpd_tasks_in_flight") < 3 ||
          metric(&sv, "pebble_pool_running{pool=\"render\"}") < 1) &&
         tries++ < 10000)
    ;
  pid_t workers[16];
  size_t nw = children_of(sv.pid, workers, 16);
  assert_true(nw >= 1); /* a busy worker at least */
  assert_int_equal(kill(sv.pid, SIGTERM), 0);
  answer a;
  for (int i = 0; i < 4; i++) {
    http_read(fds[i], &a);
    if (a.status != 200)
      fail_msg("request %d: want 200, got\n%s\n\n%s", i, a.head, a.body);
  }
  assert_int_equal(server_wait(&sv), 0);
  for (size_t i = 0; i < nw; i++) /* reaped by the server, not reparented */
    assert_true(kill(workers[i], 0) == -1 && errno == ESRCH);
}

/* A client that goes away: over HTTP/2 (curl, prior knowledge) h2o sees
 * the stream end and disposes of the request; the hook in its pool
 * cancels the task, which kills the worker running it. (h2o 2.2's
 * HTTP/1 does not read while a request is handled: there the task runs
 * on and the answer's write fails.) Skipped without curl. */
static void test_client_gone_cancels(void **state) {
  (void)state;
  if (access("/usr/bin/curl", X_OK) != 0)
    skip();
  server sv;
  server_start(&sv, (const char *[]){"--workers", "1", "--render-timeout-ms",
                                     "120000", NULL});
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/render?ms=60000", sv.port);
  const char *argv[] = {
      "/usr/bin/curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
      "--max-time",    "2",  url,  NULL};
  pid_t curl;
  assert_int_equal(
      posix_spawn(&curl, argv[0], NULL, NULL, (char *const *)argv, environ), 0);
  int st;
  assert_int_equal(waitpid(curl, &st, 0), curl); /* it gives up after 2 s */
  assert_int_equal(WEXITSTATUS(st), 28);         /* curl's "timed out" */
  int tries = 0;
  while (metric(&sv, "httpd_client_gone_cancels_total") < 1 && tries++ < 10000)
    ;
  assert_int_equal(metric(&sv, "httpd_responses_total{code=\"499\"}"), 1);
  assert_int_equal(
      metric(&sv, "pebble_pool_tasks_total{pool=\"render\",end=\"cancelled\"}"),
      1);
  expect(&sv, "/render?ms=1", 200, "render ms=1 "); /* a new worker */
  server_stop(&sv);
}

static int teardown(void **state) {
  if (running > 0) { /* a failed test's server, and its workers */
    (void)kill(running, SIGKILL);
    (void)waitpid(running, NULL, 0);
    running = -1;
  }
  if (running_out >= 0) {
    close(running_out);
    running_out = -1;
  }
  return pbl_test_teardown(state);
}

#define TS(name) cmocka_unit_test_setup_teardown(name, pbl_test_setup, teardown)

int main(void) {
  if (httpd_path() == NULL) {
    printf("httpd was not built (no libh2o, or -Dexamples=false): "
           "PBL_HTTPD=%s\n",
           getenv("PBL_HTTPD") != NULL ? getenv("PBL_HTTPD") : "(unset)");
    return 77; /* meson: skipped */
  }
  const struct CMUnitTest tests[] = {
      TS(test_endpoints),
      TS(test_crash),
      TS(test_timeout),
      TS(test_queue_full),
      TS(test_queue_deadline),
      TS(test_sigterm_drains),
      TS(test_client_gone_cancels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
