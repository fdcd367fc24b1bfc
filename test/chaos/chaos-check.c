/* The invariants, checked over every record once the run is over, and
 * the table that reports them. Runs on the loop thread after the binding
 * closed, so every callback has run. */
#include "chaos.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "../helpers.h"

/* How long a remote worker may outlive its launcher: its watcher looks
 * four times a heartbeat, then the grace; generous for valgrind. */
#define LEFT_MS 30000

static const char *const kind_names[K_KINDS] = {
    "thread", "pool-thread", "process", "pool-process", "command"};
static const char *const fault_names[] = {
    "cancel",     "SIGKILL",   "SIGTERM",   "SIGSTOP+KILL",   "release",
    "pool close", "pool stop", "pool free", "launcher killed"};

typedef struct {
  const char *what;
  uint64_t bad;
  const chaos_record *example;
} invariant;

static void note(invariant *inv, const chaos_record *rec) {
  if (inv->bad++ == 0)
    inv->example = rec;
}

static void print_invariant(const invariant *inv) {
  printf("  %-54s %s", inv->what, inv->bad == 0 ? "ok" : "FAILED");
  if (inv->bad > 0 && inv->example != NULL) {
    const chaos_record *e = inv->example;
    printf(" (%llu; e.g. a %s task, behaviour %d, ended %s %s, %d "
           "callbacks%s%s)",
           (unsigned long long)inv->bad, kind_names[e->kind], e->behaviour,
           pbl_task_state_name(e->end), pbl_err_name(e->err), e->callbacks,
           e->why[0] ? ": " : "", e->why);
  } else if (inv->bad > 0) {
    printf(" (%llu)", (unsigned long long)inv->bad);
  }
  printf("\n");
}

/* For a wrong end: the example's process and the workers of its pool
 * killed from outside, so a stray expiry can be told from a kill. */
static void print_kills(const chaos_record *e) {
  const chaos_pool *cp = e->pool;
  if (e->pid == 0 || cp == NULL)
    return;
  printf("    (its pid %d, signal %d; its pool's kills from outside:", e->pid,
         e->term_signal);
  for (size_t i = 0; i < cp->n_kills && i < 16; i++)
    printf(" %d/%d", cp->kills[i].pid, cp->kills[i].sig);
  if (cp->n_kills == 0)
    printf(" none");
  printf("%s)\n", cp->n_kills > 16 ? " ..." : "");
}

int chaos_report(double seconds, size_t fds_before, size_t threads_before) {
  uint64_t by_end[K_KINDS][PBL_EXPIRED + 1];
  uint64_t tasks[K_KINDS];
  memset(by_end, 0, sizeof(by_end));
  memset(tasks, 0, sizeof(tasks));
  invariant once = {"every task ended exactly once", 0, NULL};
  invariant on_loop = {"every callback ran on the loop thread", 0, NULL};
  invariant result = {"every done task holds the right result", 0, NULL};
  invariant allowed = {"every end is one its behaviour and faults allow", 0,
                       NULL};
  invariant agree = {"the task's state is the one its callback saw", 0, NULL};
  invariant stats = {"pools: made, joined after every callback, stats add up",
                     0, NULL};
  invariant leaks = {"no fd, thread, child or zombie left", 0, NULL};
  /* A kind with no task at all means the run lost its reach. */
  invariant reach = {"every kind of task ran (runs of 5 s and more)", 0, NULL};

  uint64_t remote_tasks = 0; /* on pools whose workers have launchers */
  for (const chaos_record *rec = chaos.records; rec != NULL; rec = rec->next) {
    tasks[rec->kind]++;
    remote_tasks += rec->pool != NULL && rec->pool->remote;
    if (rec->callbacks != 1 || !(rec->end >= PBL_DONE)) {
      note(&once, rec);
      continue;
    }
    by_end[rec->kind][rec->end]++;
    if (rec->off_loop)
      note(&on_loop, rec);
    if (rec->end == PBL_DONE && !rec->result_ok)
      note(&result, rec);
    unsigned ok = atomic_load(&rec->allowed);
    ok |= chaos_pool_kill_allows(rec);
    if (!(ok & ALLOW(rec->end)))
      note(&allowed, rec);
    if (rec->task != NULL && pbl_task_state_of(rec->task) != rec->end)
      note(&agree, rec);
  }
  stats.bad = atomic_load(&chaos.pool_stats_bad);
  for (int k = 0; k < K_KINDS && seconds >= 5; k++)
    if (tasks[k] == 0) {
      fprintf(stderr, "chaos: no %s task ran\n", kind_names[k]);
      reach.bad++;
    }
  if (seconds >= 5 && remote_tasks == 0 &&
      atomic_load(&chaos.remote_pools) > 0) { /* made only if room */
    fprintf(stderr, "chaos: no task ran on a pool with launchers\n");
    reach.bad++;
  }
  if (pbl_test_count_fds() != fds_before) {
    fprintf(stderr, "chaos: %zu fds open, %zu before\n", pbl_test_count_fds(),
            fds_before);
    leaks.bad++;
  }
  if (pbl_test_count_threads() != threads_before) {
    fprintf(stderr, "chaos: %zu threads, %zu before\n",
            pbl_test_count_threads(), threads_before);
    leaks.bad++;
  }
  if (waitpid(-1, NULL, WNOHANG) != -1) {
    fprintf(stderr, "chaos: a child process or zombie is left\n");
    leaks.bad++;
  }
  /* A remote worker whose launcher was killed is no child of ours: it
   * ends itself within its grace once its channel or parent is gone. */
  if (pbl_test_left_behind(LEFT_MS) > 0) {
    fprintf(stderr,
            "chaos: a worker is left %d s after the end (its "
            "environment carries our mark)\n",
            LEFT_MS / 1000);
    leaks.bad++;
  }

  printf("\nchaos: seed %llu, %.1f s, %u actor threads, payloads up to %llu "
         "bytes\n\n",
         (unsigned long long)chaos.cfg.seed, seconds, chaos.cfg.actors,
         (unsigned long long)chaos.cfg.max_payload);
  printf("  %-13s %8s %8s %8s %9s %9s %8s\n", "kind", "tasks", "done", "failed",
         "cancelled", "timed out", "expired");
  uint64_t total[PBL_EXPIRED + 2];
  memset(total, 0, sizeof(total));
  for (int k = 0; k < K_KINDS; k++) {
    printf("  %-13s %8llu", kind_names[k], (unsigned long long)tasks[k]);
    total[0] += tasks[k];
    for (int s = PBL_DONE; s <= PBL_EXPIRED; s++) {
      printf(" %*llu", s == PBL_CANCELLED || s == PBL_TIMED_OUT ? 9 : 8,
             (unsigned long long)by_end[k][s]);
      total[s] += by_end[k][s];
    }
    printf("\n");
  }
  printf("  %-13s %8llu", "total", (unsigned long long)total[0]);
  for (int s = PBL_DONE; s <= PBL_EXPIRED; s++)
    printf(" %*llu", s == PBL_CANCELLED || s == PBL_TIMED_OUT ? 9 : 8,
           (unsigned long long)total[s]);
  printf("\n\n  faults injected:");
  uint64_t faults = 0;
  for (size_t f = 0; f < sizeof(fault_names) / sizeof(fault_names[0]); f++) {
    printf(" %s %llu%s", fault_names[f],
           (unsigned long long)atomic_load(&chaos.faults[f]),
           f + 1 < sizeof(fault_names) / sizeof(fault_names[0]) ? "," : "");
    faults += atomic_load(&chaos.faults[f]);
  }
  printf(" (%llu in all)\n", (unsigned long long)faults);
  printf("  pools: %llu made (%llu remote, %llu tasks on them), %llu "
         "retired; calls refused: %llu; work started from callbacks: "
         "%llu\n\n",
         (unsigned long long)atomic_load(&chaos.pools_made),
         (unsigned long long)atomic_load(&chaos.remote_pools),
         (unsigned long long)remote_tasks,
         (unsigned long long)atomic_load(&chaos.pools_retired),
         (unsigned long long)atomic_load(&chaos.refused),
         (unsigned long long)atomic_load(&chaos.from_callbacks));
  printf("  invariants:\n");
  const invariant *all[] = {&once,  &on_loop, &result, &allowed,
                            &agree, &stats,   &leaks,  &reach};
  int failures = 0;
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    print_invariant(all[i]);
    if (all[i] == &allowed && allowed.example != NULL)
      print_kills(allowed.example);
    failures += all[i]->bad > 0;
  }
  printf("\n  replay: chaos --seed %llu --seconds %.0f --actors %u\n",
         (unsigned long long)chaos.cfg.seed, seconds, chaos.cfg.actors);
  return failures;
}
