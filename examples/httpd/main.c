/* httpd: options, the loop, the listener, signals and the drain.
 *
 *   httpd [--port N] [--host A] [--workers N] [--threads N] [--spares N]
 *         [--queue-limit N] [--render-timeout-ms N] [--queue-timeout-ms N]
 *         [--no-priorities]
 *
 * Prints "listening on HOST:PORT" once it accepts (port 0: an ephemeral
 * one, printed), then serves until SIGTERM or SIGINT:
 *
 *  1. the first signal stops accepting (the listener is closed), tells
 *     h2o to close each connection after its current answer
 *     (h2o_context_request_shutdown), closes idle keep-alive connections,
 *     and closes both pools: what is queued still runs, and every task's
 *     answer is sent;
 *  2. a second signal stops the pools: tasks not yet ended are cancelled
 *     (answered 503) and the workers killed;
 *  3. once no task and no connection is left, the loop is stopped, the h2o
 *     context disposed (its timers and its async handle closed), the
 *     pools joined (every worker reaped) and freed, the binding closed,
 *     and uv_loop_close() must return 0: the exit status is 0 then.
 *
 * h2o's context keeps a uv_async_t referenced until h2o_context_dispose,
 * which itself runs the loop (UV_RUN_NOWAIT) to close its handles: so the
 * drain ends with uv_stop(), and the dispose comes after uv_run returns,
 * never from inside a callback. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"

typedef struct {
  uv_tcp_t tcp; /* first: h2o's close callback gets this handle */
  httpd *s;
} conn;

static void on_conn_closed(uv_handle_t *h) {
  conn *c = (conn *)h;
  httpd *s = c->s;
  free(c);
  s->conns--;
  httpd_check_drained(s);
}

static void on_accept(uv_stream_t *listener, int status) {
  httpd *s = listener->data;
  if (status != 0)
    return; /* EMFILE and friends: the next connection may do */
  conn *c = malloc(sizeof(*c));
  if (c == NULL)
    return;
  c->s = s;
  if (uv_tcp_init(&s->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  s->conns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    return;
  }
  h2o_socket_t *sock =
      h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
  h2o_accept(&s->accept_ctx, sock);
}

void httpd_check_drained(httpd *s) {
  if (s->signals_seen > 0 && s->in_flight == 0 && s->conns == 0 &&
      !s->stop_called) {
    s->stop_called = true;
    uv_stop(&s->loop);
  }
}

/* h2o 2.2 has no call that closes idle HTTP/1 connections: they wait in
 * the context's request timeout (keep-alive) list for the next request.
 * Running that list with a timeout of 0 closes them now, and any
 * connection that goes idle later (after its last answer) is closed on
 * the next loop turn. A connection whose request is being handled is not
 * on the list: it gets its answer first. */
static void close_idle_connections(httpd *s) {
  s->ctx.http1.req_timeout.timeout = 0;
  h2o_timeout_run(&s->loop, &s->ctx.http1.req_timeout, h2o_now(&s->loop));
}

static void on_signal(uv_signal_t *sig, int signum) {
  httpd *s = sig->data;
  if (++s->signals_seen == 1) {
    fprintf(stderr,
            "httpd: signal %d: draining %zu task(s), %zu "
            "connection(s); again to cancel the tasks\n",
            signum, s->in_flight, s->conns);
    uv_close((uv_handle_t *)&s->listener, NULL);
    h2o_context_request_shutdown(&s->ctx);
    close_idle_connections(s);
    (void)pbl_pool_close(s->threads);
    (void)pbl_pool_close(s->procs);
  } else if (s->signals_seen == 2) {
    fprintf(stderr, "httpd: signal %d: cancelling %zu task(s)\n", signum,
            s->in_flight);
    (void)pbl_pool_stop(s->threads);
    (void)pbl_pool_stop(s->procs);
  }
  httpd_check_drained(s);
}

static int listen_on(httpd *s) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  int err = uv_ip4_addr(s->o.host, s->o.port, &addr);
  if (err == 0)
    err = uv_tcp_init(&s->loop, &s->listener);
  if (err != 0)
    return err;
  s->listener.data = s;
  err = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&s->listener, 1024, on_accept);
  if (err == 0)
    err = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  if (err != 0) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    return err;
  }
  printf("listening on %s:%d\n", s->o.host,
         ntohs(((struct sockaddr_in *)&bound)->sin_port));
  fflush(stdout); /* a pipe to a test or a script: they wait for it */
  return 0;
}

static int start(httpd *s) {
  int err = uv_loop_init(&s->loop);
  if (err != 0)
    return err;
  s->loop_ready = true;
  err = pbl_loop_new(&s->loop, &s->pl);
  if (err != 0)
    return err;
  pbl_pool_opts to = {.workers = s->o.threads, .queue_limit = s->o.queue_limit};
  pbl_pool_opts po = {.workers = s->o.workers,
                      .queue_limit = s->o.queue_limit,
                      .spare_workers = s->o.spares};
  err = pbl_thread_pool_new(s->pl, &to, &s->threads);
  if (err == 0)
    err = pbl_process_pool_new(s->pl, &po, &s->procs);
  if (err != 0)
    return err;

  h2o_config_init(&s->config);
  h2o_hostconf_t *host = h2o_config_register_host(
      &s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  httpd_handlers_register(s, h2o_config_register_path(host, "/", 0));
  h2o_context_init(&s->ctx, &s->loop, &s->config);
  s->ctx_ready = true;
  s->accept_ctx.ctx = &s->ctx;
  s->accept_ctx.hosts = s->config.hosts;

  uv_signal_t *sigs[] = {&s->sigterm, &s->sigint};
  int nums[] = {SIGTERM, SIGINT};
  for (; s->nsignals < 2; s->nsignals++) {
    uv_signal_t *h = sigs[s->nsignals];
    if ((err = uv_signal_init(&s->loop, h)) != 0)
      return err;
    h->data = s;
    if ((err = uv_signal_start(h, on_signal, nums[s->nsignals])) != 0) {
      s->nsignals++; /* initialised: to be closed */
      return err;
    }
  }
  return listen_on(s);
}

/* Closes whatever start() made, in any state it left. Returns 0 when
 * every handle closed and every worker was reaped. */
static int finish(httpd *s) {
  if (!s->loop_ready)
    return -1;
  if (s->ctx_ready) {
    /* h2o_context_request_shutdown linked HTTP/2's GOAWAY resend timer
     * (1 s), even with no HTTP/2 connection; the dispose asserts that no
     * timer is linked. Every connection is closed by now. */
    if (h2o_timeout_is_linked(&s->ctx.http2._graceful_shutdown_timeout))
      h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&s->ctx); /* runs the loop once itself */
  }
  uv_signal_t *sigs[] = {&s->sigterm, &s->sigint};
  for (int i = 0; i < s->nsignals; i++)
    uv_close((uv_handle_t *)sigs[i], NULL);
  int err = 0;
  pbl_pool_t *pools[] = {s->threads, s->procs};
  for (size_t i = 0; i < 2; i++)
    if (pools[i] != NULL)
      (void)pbl_pool_close(pools[i]);     /* already closed after a signal */
  (void)uv_run(&s->loop, UV_RUN_DEFAULT); /* workers exit and are reaped */
  for (size_t i = 0; i < 2; i++)
    if (pools[i] != NULL) {
      if (pbl_pool_join(pools[i], 0) != 0)
        err = -1;
      pbl_pool_free(pools[i]);
    }
  if (s->pl != NULL) {
    pbl_loop_close(s->pl, NULL);
    (void)uv_run(&s->loop, UV_RUN_DEFAULT);
  }
  if (uv_loop_close(&s->loop) != 0)
    err = -1;
  if (s->ctx_ready)
    h2o_config_dispose(&s->config);
  return err;
}

static bool parse_opts(int argc, char **argv, httpd_opts *o) {
  static const struct option longs[] = {
      {"port", required_argument, NULL, 'p'},
      {"host", required_argument, NULL, 'H'},
      {"workers", required_argument, NULL, 'w'},
      {"threads", required_argument, NULL, 't'},
      {"spares", required_argument, NULL, 's'},
      {"queue-limit", required_argument, NULL, 'q'},
      {"render-timeout-ms", required_argument, NULL, 'r'},
      {"queue-timeout-ms", required_argument, NULL, 'Q'},
      {"no-priorities", no_argument, NULL, 'n'},
      {NULL, 0, NULL, 0}};
  *o = (httpd_opts){.host = "127.0.0.1",
                    .spares = 1,
                    .queue_limit = 64,
                    .render_timeout_ms = 2000,
                    .queue_timeout_ms = 1000,
                    .priorities = true};
  int c;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    char *end = NULL;
    long long v = optarg != NULL ? strtoll(optarg, &end, 10) : 0;
    if (optarg != NULL && c != 'H' && (*end != '\0' || v < 0 || v > 1 << 30))
      return false;
    switch (c) {
    case 'p':
      if (v > 65535)
        return false;
      o->port = (int)v;
      break;
    case 'H':
      o->host = optarg;
      break;
    case 'w':
      o->workers = (unsigned)v;
      break;
    case 't':
      o->threads = (unsigned)v;
      break;
    case 's':
      o->spares = (unsigned)v;
      break;
    case 'q':
      o->queue_limit = (size_t)v;
      break;
    case 'r':
      o->render_timeout_ms = v;
      break;
    case 'Q':
      o->queue_timeout_ms = v;
      break;
    case 'n':
      o->priorities = false;
      break;
    default:
      return false;
    }
  }
  return optind == argc;
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv); /* a worker serves its tasks and exits */
  static httpd s;              /* static: zeroed, and big (h2o's structs) */
  if (!parse_opts(argc, argv, &s.o)) {
    fprintf(stderr,
            "usage: %s [--port N] [--host A] [--workers N] [--threads N] "
            "[--spares N] [--queue-limit N] [--render-timeout-ms N] "
            "[--queue-timeout-ms N] [--no-priorities]\n",
            argv[0]);
    return 2;
  }
  int err = start(&s);
  if (err != 0)
    fprintf(stderr, "httpd: %s (%s)\n", pbl_strerror(err), pbl_err_name(err));
  else
    (void)uv_run(&s.loop, UV_RUN_DEFAULT); /* until the drain's uv_stop */
  if (finish(&s) != 0) {
    fprintf(stderr, "httpd: a handle or a worker was left at exit\n");
    return 1;
  }
  return err != 0;
}
