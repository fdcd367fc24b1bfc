/* Answers: a status, words a person can read, and the counts /metrics
 * shows. What each end of a task means to a client:
 *
 *   done                        200, the result
 *   refused: queue_limit        503 + Retry-After: the queue is full,
 *                               nothing was started, try again
 *   refused: pool closed        503: the server is draining
 *   timed out in the queue      503 + Retry-After (queue_timeout_ms): it
 *                               never started, so a retry is safe
 *   timed out running           504 (timeout_ms): it ran too long
 *   expired: the worker died    502, with pebble's words ("worker 1234
 *                               killed by signal 6 (SIGABRT)")
 *   cancelled                   503: stopped by a second SIGTERM
 *   failed                      500, with the function's pbl_fail words
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "httpd.h"

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Internal Server Error";
  }
}

void httpd_count(httpd *s, int status) {
  switch (status) {
#define HTTPD_STATUS_CASE(code)                                                \
  case code:                                                                   \
    s->answered[HTTPD_S##code]++;                                              \
    break;
    HTTPD_STATUSES(HTTPD_STATUS_CASE)
#undef HTTPD_STATUS_CASE
  default:
    s->answered[HTTPD_S500]++;
  }
}

static void send_body(httpd *s, h2o_req_t *req, int status, const char *ct,
                      bool retry, const char *body, size_t len) {
  httpd_count(s, status);
  req->res.status = status;
  req->res.reason = reason(status);
  req->res.content_length = len; /* h2o_send_inline leaves it unset */
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 ct, strlen(ct));
  if (retry)
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   H2O_STRLIT("1"));
  h2o_send_inline(req, body, len); /* copies the body into req->pool */
}

void httpd_answer(httpd *s, h2o_req_t *req, int status, bool retry,
                  const char *fmt, ...) {
  char body[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(body, sizeof(body), fmt, ap);
  va_end(ap);
  size_t len = n < 0 ? 0 : (size_t)n;
  if (len >= sizeof(body))
    len = sizeof(body) - 1; /* the words are cut, the status stays */
  send_body(s, req, status, "text/plain; charset=utf-8", retry, body, len);
}

void httpd_answer_bytes(httpd *s, h2o_req_t *req, const char *ct,
                        const char *body, size_t len) {
  send_body(s, req, 200, ct, false, body != NULL ? body : "", len);
}

void httpd_answer_refused(httpd *s, h2o_req_t *req, const char *what, int err) {
  if (err == UV_EAGAIN)
    httpd_answer(s, req, 503, true, "%s: the queue is full, try again\n", what);
  else if (err == PBL_ECLOSED)
    httpd_answer(s, req, 503, false, "%s: the server is shutting down\n", what);
  else
    httpd_answer(s, req, 500, false, "%s: %s (%s)\n", what, pbl_strerror(err),
                 pbl_err_name(err));
}

/* pebble ends a task that waited past queue_timeout_ms UV_ETIMEDOUT, like
 * one that ran past timeout_ms; only its words tell which ("timed out in
 * the queue: it never started"), and a process task that never started
 * has no worker pid. */
static bool never_started(const pbl_task_t *t) {
  const char *m = pbl_task_message(t);
  return m != NULL && strstr(m, "in the queue") != NULL;
}

void httpd_answer_task_end(httpd *s, h2o_req_t *req, const char *what,
                           pbl_task_t *t) {
  const char *m = pbl_task_message(t);
  if (m == NULL)
    m = pbl_strerror(pbl_task_error(t));
  switch (pbl_task_state_of(t)) {
  case PBL_TIMED_OUT:
    if (never_started(t))
      httpd_answer(s, req, 503, true, "%s: waited too long in the queue: %s\n",
                   what, m);
    else
      httpd_answer(s, req, 504, false, "%s: ran past %lld ms: %s\n", what,
                   (long long)s->o.render_timeout_ms, m);
    break;
  case PBL_EXPIRED:
    httpd_answer(s, req, 502, false, "%s: the worker died: %s\n", what, m);
    break;
  case PBL_CANCELLED:
    httpd_answer(s, req, 503, false, "%s: cancelled: %s\n", what, m);
    break;
  default:
    httpd_answer(s, req, 500, false, "%s: failed: %s\n", what, m);
  }
}
