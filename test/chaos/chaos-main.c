/* chaos [--seed N] [--seconds S] [--actors N] [--in-flight N]
 *       [--max-payload BYTES]
 *
 * A seeded stress run of every kind of task at once: thread tasks on
 * libuv's pool, thread pools, one-shot process tasks, process pools and
 * commands, issued from several threads, from the loop thread and from
 * callbacks, with faults injected at random moments (chaos-ops.c). Then
 * it checks, and prints as a table, that every task ended exactly once,
 * every callback ran once on the loop thread, every done task holds the
 * right result, pool stats add up, and no fd, thread, child or zombie is
 * left (chaos-check.c). Exit status 0 iff every invariant holds.
 *
 * The seed fixes what each actor does; the interleaving of threads is the
 * machine's. A failure prints the seed to replay with.
 *
 * Phases: run until the time is up; stop the actors; retire the pools
 * left; wait for every callback; close the binding; check. */
#include "chaos.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../helpers.h"

#define LOOP_OP_MS 2
#define DRAIN_MS 180000 /* generous: ASan, TSan, 2 slow CPUs */

static _Atomic unsigned threads_done;

static void usage(void) {
  fprintf(stderr, "usage: chaos [--seed N] [--seconds S] [--actors N] "
                  "[--in-flight N] [--max-payload BYTES]\n");
  exit(2);
}

static void parse(int argc, char **argv, chaos_config *c) {
  c->seed = (uint64_t)uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 32);
  c->seconds = 30;
  c->actors = 3;
  c->max_in_flight = 48;
  c->max_large = 3;
  c->max_payload = 8u << 20;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc)
      usage();
    const char *v = argv[++i];
    if (strcmp(argv[i - 1], "--seed") == 0)
      c->seed = strtoull(v, NULL, 0);
    else if (strcmp(argv[i - 1], "--seconds") == 0)
      c->seconds = strtod(v, NULL);
    else if (strcmp(argv[i - 1], "--actors") == 0)
      c->actors = (unsigned)strtoul(v, NULL, 0);
    else if (strcmp(argv[i - 1], "--in-flight") == 0)
      c->max_in_flight = (unsigned)strtoul(v, NULL, 0);
    else if (strcmp(argv[i - 1], "--max-payload") == 0)
      c->max_payload = strtoull(v, NULL, 0);
    else
      usage();
  }
  if (c->seconds <= 0 || c->max_in_flight == 0)
    usage();
}

/* ---- the actors ---- */

typedef struct {
  chaos_rng rng;
  bool faults; /* the fault injector, not a task issuer */
} actor;

static void actor_main(void *arg) {
  actor *a = arg;
  while (!atomic_load(&chaos.stopping)) {
    if (a->faults) {
      /* Paced by a wait on the shared condition: a stop wakes it. */
      uv_mutex_lock(&chaos.lock);
      if (!atomic_load(&chaos.stopping))
        (void)uv_cond_timedwait(&chaos.cv, &chaos.lock,
                                (2 + rng_below(&a->rng, 18)) * 1000000u);
      uv_mutex_unlock(&chaos.lock);
      if (!atomic_load(&chaos.stopping))
        chaos_fault_op(&a->rng);
    } else {
      chaos_op(&a->rng, false);
    }
  }
  atomic_fetch_add(&threads_done, 1);
}

static chaos_rng loop_actor_rng;

static void on_loop_op(uv_timer_t *timer) {
  (void)timer;
  if (!atomic_load(&chaos.stopping))
    chaos_op(&loop_actor_rng, true);
}

static void on_deadline(uv_timer_t *timer) {
  uv_timer_stop(timer->data); /* the loop actor */
  uv_mutex_lock(&chaos.lock);
  atomic_store(&chaos.stopping, true);
  uv_cond_broadcast(&chaos.cv);
  uv_mutex_unlock(&chaos.lock);
}

/* ---- waiting on the loop ---- */

static bool all_threads_done(void *arg) {
  return atomic_load(&threads_done) == *(unsigned *)arg;
}

static bool nothing_in_flight(void *arg) {
  (void)arg;
  uv_mutex_lock(&chaos.lock);
  bool empty = chaos.n_in_flight == 0;
  uv_mutex_unlock(&chaos.lock);
  return empty;
}

static void retire_pools(void *arg) {
  (void)arg;
  chaos_retire_all_pools();
  atomic_fetch_add(&threads_done, 1);
}

static void noop_work(uv_work_t *w) {
  (void)w;
}

static void noop_after(uv_work_t *w, int status) {
  (void)w, (void)status;
}

static void noop_thread(void *arg) {
  (void)arg;
}

/* libuv's pool threads, its signal pipe and TSan's own thread appear on
 * first use: have them before counting. */
static void warm_up(void) {
  uv_loop_t l;
  uv_work_t w;
  uv_thread_t t;
  uv_loop_init(&l);
  uv_queue_work(&l, &w, noop_work, noop_after);
  uv_run(&l, UV_RUN_DEFAULT);
  uv_loop_close(&l);
  uv_thread_create(&t, noop_thread, NULL);
  uv_thread_join(&t);
}

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  parse(argc, argv, &chaos.cfg);
  printf("chaos: seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n",
         chaos.cfg.seed, chaos.cfg.seed);
  warm_up();
  pbl_test_mark_children(); /* remote workers are found at the end */
  size_t fds_before = pbl_test_count_fds();
  size_t threads_before = pbl_test_count_threads();

  uv_mutex_init(&chaos.lock);
  uv_cond_init(&chaos.cv);
  chaos.in_flight = calloc(chaos.cfg.max_in_flight, sizeof(chaos_record *));
  if (chaos.in_flight == NULL || uv_loop_init(&chaos.uv) != 0 ||
      pbl_loop_new(&chaos.uv, &chaos.pl) != 0)
    return 2;
  chaos.loop_thread = uv_thread_self();
  loop_actor_rng.s = chaos.cfg.seed;

  unsigned n_threads = chaos.cfg.actors + 1;
  actor *actors = calloc(n_threads, sizeof(*actors));
  uv_thread_t *threads = calloc(n_threads, sizeof(*threads));
  if (actors == NULL || threads == NULL)
    return 2;
  for (unsigned i = 0; i < n_threads; i++) {
    actors[i].rng.s = chaos.cfg.seed ^ (0x9e3779b97f4a7c15ull * (i + 1));
    actors[i].faults = i == chaos.cfg.actors;
    uv_thread_create(&threads[i], actor_main, &actors[i]);
  }
  uv_timer_t loop_op, deadline;
  uv_timer_init(&chaos.uv, &loop_op);
  uv_timer_init(&chaos.uv, &deadline);
  deadline.data = &loop_op;
  uv_timer_start(&loop_op, on_loop_op, LOOP_OP_MS, LOOP_OP_MS);
  uint64_t t0 = uv_hrtime();
  uv_timer_start(&deadline, on_deadline, (uint64_t)(chaos.cfg.seconds * 1000),
                 0);

  /* Run until the time is up and every actor has stopped. */
  uv_run(&chaos.uv, UV_RUN_ONCE);
  int failures = 0;
  if (!pbl_test_run_until(&chaos.uv, all_threads_done, &n_threads,
                          (int64_t)(chaos.cfg.seconds * 1000) + DRAIN_MS)) {
    fprintf(stderr, "chaos: actors did not stop (seed %" PRIu64 ")\n",
            chaos.cfg.seed);
    return 1; /* their threads would block the rest */
  }
  for (unsigned i = 0; i < n_threads; i++)
    uv_thread_join(&threads[i]);
  double seconds = (double)(uv_hrtime() - t0) / 1e9;

  /* Retire the pools left, from a thread: a join needs this loop. */
  uv_thread_t retirer;
  unsigned want = n_threads + 1;
  uv_thread_create(&retirer, retire_pools, NULL);
  bool retired =
      pbl_test_run_until(&chaos.uv, all_threads_done, &want, DRAIN_MS);
  if (!retired) {
    fprintf(stderr, "chaos: a pool did not join\n");
    return 1;
  }
  uv_thread_join(&retirer);
  if (!pbl_test_run_until(&chaos.uv, nothing_in_flight, NULL, DRAIN_MS)) {
    fprintf(stderr, "chaos: %zu tasks never called back (seed %" PRIu64 ")\n",
            chaos.n_in_flight, chaos.cfg.seed);
    failures++;
  }
  uv_close((uv_handle_t *)&loop_op, NULL);
  uv_close((uv_handle_t *)&deadline, NULL);
  pbl_loop_close(chaos.pl, NULL);
  uv_run(&chaos.uv, UV_RUN_DEFAULT);
  if (uv_loop_close(&chaos.uv) != 0) {
    fprintf(stderr, "chaos: a handle outlived the binding\n");
    failures++;
  }
  /* Records hold task references: the check reads them, then frees. */
  failures += chaos_report(seconds, fds_before, threads_before);
  chaos_record_free_all();
  while (chaos.pools != NULL) {
    chaos_pool *next = chaos.pools->next;
    free(chaos.pools->kills);
    free(chaos.pools);
    chaos.pools = next;
  }
  free(chaos.in_flight);
  free(actors);
  free(threads);
  uv_cond_destroy(&chaos.cv);
  uv_mutex_destroy(&chaos.lock);
  printf("\nchaos: %s\n", failures == 0 ? "every invariant holds" : "FAILED");
  return failures == 0 ? 0 : 1;
}
