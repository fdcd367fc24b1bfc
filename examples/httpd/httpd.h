/* httpd: a small HTTP/1.1 server on h2o (libuv build) and pebble.
 *
 * One uv loop runs h2o and the pebble binding. Requests that need work
 * become pebble tasks on a thread pool (/hash) or a process pool
 * (/render, /report, /crash); the task's on_done, on the loop thread,
 * writes the answer. Files:
 *   main.c      options, the loop, the listener, signals and the drain
 *   handlers.c  the endpoints: parse, submit, answer
 *   answer.c    turning a task's end or a refusal into a status and words
 *   work.c      what the tasks run (also in the worker processes)
 *   metrics.c   /metrics in the Prometheus text format
 */
#ifndef HTTPD_H
#define HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <pebble.h>

typedef struct {
  const char *host;
  int port;                  /* 0: an ephemeral port */
  unsigned workers;          /* process pool; 0: CPUs */
  unsigned threads;          /* thread pool; 0: CPUs */
  unsigned spares;           /* process pool's spare_workers */
  size_t queue_limit;        /* each pool's; 0: unbounded */
  int64_t render_timeout_ms; /* /render, /report: run time, 504 past it */
  int64_t queue_timeout_ms;  /* /render, /hash: wait in queue, 503 past */
  bool priorities;           /* false: every endpoint at priority 0 */
} httpd_opts;

/* Responses counted by status, for /metrics. 499: the client went away
 * before its answer (nginx's code; nothing is sent). */
#define HTTPD_STATUSES(XX)                                                     \
  XX(200) XX(400) XX(404) XX(499) XX(500) XX(502) XX(503) XX(504)
enum {
#define HTTPD_STATUS_INDEX(code) HTTPD_S##code,
  HTTPD_STATUSES(HTTPD_STATUS_INDEX)
#undef HTTPD_STATUS_INDEX
      HTTPD_NSTATUS
};

/* Everything is touched on the loop thread only. */
typedef struct httpd {
  httpd_opts o;
  uv_loop_t loop;
  pbl_loop_t *pl;
  pbl_pool_t *threads; /* /hash */
  pbl_pool_t *procs;   /* /render, /report, /crash */
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  bool loop_ready; /* uv_loop_init ran */
  bool ctx_ready;  /* h2o_context_init ran: dispose it */
  int nsignals;    /* signal handles initialised */
  uv_tcp_t listener;
  uv_signal_t sigterm, sigint;
  int signals_seen; /* 1: draining; 2: pools stopped */
  size_t conns;     /* accepted, not yet closed */
  size_t in_flight; /* tasks whose on_done has not run yet */
  bool stop_called; /* uv_stop once the drain is over */
  uint64_t answered[HTTPD_NSTATUS];
  uint64_t client_gone_cancels; /* tasks cancelled for a request disposed */
} httpd;

/* handlers.c: registers the one handler that dispatches on the path. */
void httpd_handlers_register(httpd *s, h2o_pathconf_t *pathconf);
/* main.c: after a request or a connection ended: ends the drain when
 * nothing is left in flight. */
void httpd_check_drained(httpd *s);

/* answer.c */
/* Sends a whole answer; Retry-After: 1 when retry is true. The body is
 * printf-formatted and copied into the request's pool. */
void httpd_answer(httpd *s, h2o_req_t *req, int status, bool retry,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Sends `len` bytes of `body` (copied) as a 200 with content type ct. */
void httpd_answer_bytes(httpd *s, h2o_req_t *req, const char *ct,
                        const char *body, size_t len);
/* Answers a submit that pebble refused (queue full, pools closed...). */
void httpd_answer_refused(httpd *s, h2o_req_t *req, const char *what, int err);
/* Answers a task that did not end done: 504, 503, 502, 500. */
void httpd_answer_task_end(httpd *s, h2o_req_t *req, const char *what,
                           pbl_task_t *t);
/* Counts a status for /metrics. */
void httpd_count(httpd *s, int status);

/* work.c */
/* /hash: arg is the size in KiB; returns the FNV-1a 64 hash of that much
 * generated data, as the pointer's value (no memory to free: a task
 * that timed out has its return value discarded). */
void *httpd_hash_fn(void *arg);
/* /render's input, as the process task's bytes. */
typedef struct {
  uint32_t ms;    /* busy on the CPU that long */
  uint32_t crash; /* abort() in the worker instead */
} httpd_render_in;
/* The process function (registered): output "render ms=N spins=M pid=P\n". */
int httpd_render_fn(const void *in, size_t len, pbl_buf *out);
/* Keeps this thread busy for ms of wall time; returns the iterations. */
uint64_t httpd_burn_ms(uint32_t ms);

/* metrics.c: the body of /metrics; malloc'd, *len set; NULL on ENOMEM. */
char *httpd_metrics(httpd *s, size_t *len);

#endif
