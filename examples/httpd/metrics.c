/* /metrics: the Prometheus text format (version 0.0.4), from
 * pbl_pool_stats for each pool and the server's own counts. A snapshot:
 * each pool's numbers are read under its lock, the two pools apart. */
#include <stdio.h>
#include <stdlib.h>

#include "httpd.h"

typedef struct {
  const char *name;
  pbl_pool_stats_t st;
} pool_row;

static void gauge(FILE *f, const char *name, const char *help,
                  const pool_row *rows, size_t n, size_t off) {
  fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s{pool=\"%s\"} %zu\n", name, rows[i].name,
            *(const size_t *)((const char *)&rows[i].st + off));
}

static void counter(FILE *f, const char *name, const char *help,
                    const pool_row *rows, size_t n, size_t off) {
  fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s{pool=\"%s\"} %llu\n", name, rows[i].name,
            (unsigned long long)*(const uint64_t *)((const char *)&rows[i].st +
                                                    off));
}

static void ends(FILE *f, const pool_row *rows, size_t n) {
  static const struct {
    const char *end;
    size_t off;
  } kinds[] = {
      {"done", offsetof(pbl_pool_stats_t, done)},
      {"failed", offsetof(pbl_pool_stats_t, failed)},
      {"cancelled", offsetof(pbl_pool_stats_t, cancelled)},
      {"timed_out", offsetof(pbl_pool_stats_t, timed_out)},
      {"expired", offsetof(pbl_pool_stats_t, expired)},
  };
  fputs("# HELP pebble_pool_tasks_total Tasks ended, by how they ended.\n"
        "# TYPE pebble_pool_tasks_total counter\n",
        f);
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
      fprintf(f, "pebble_pool_tasks_total{pool=\"%s\",end=\"%s\"} %llu\n",
              rows[i].name, kinds[k].end,
              (unsigned long long)*(
                  const uint64_t *)((const char *)&rows[i].st + kinds[k].off));
}

static void waits(FILE *f, const pool_row *rows, size_t n) {
  fputs("# HELP pebble_pool_queue_wait_seconds_total Time tasks waited in "
        "the queue, summed.\n"
        "# TYPE pebble_pool_queue_wait_seconds_total counter\n",
        f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "pebble_pool_queue_wait_seconds_total{pool=\"%s\"} %.9f\n",
            rows[i].name, (double)rows[i].st.wait_ns_total / 1e9);
  fputs("# HELP pebble_pool_queue_wait_seconds_max The longest wait in the "
        "queue.\n"
        "# TYPE pebble_pool_queue_wait_seconds_max gauge\n",
        f);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "pebble_pool_queue_wait_seconds_max{pool=\"%s\"} %.9f\n",
            rows[i].name, (double)rows[i].st.wait_ns_max / 1e9);
}

static void server(FILE *f, const httpd *s) {
  static const int codes[] = {
#define HTTPD_STATUS_CODE(code) code,
      HTTPD_STATUSES(HTTPD_STATUS_CODE)
#undef HTTPD_STATUS_CODE
  };
  fputs("# HELP httpd_responses_total Answers by status (499: the client "
        "went away first; nothing was sent).\n"
        "# TYPE httpd_responses_total counter\n",
        f);
  for (size_t i = 0; i < HTTPD_NSTATUS; i++)
    fprintf(f, "httpd_responses_total{code=\"%d\"} %llu\n", codes[i],
            (unsigned long long)s->answered[i]);
  fprintf(f,
          "# HELP httpd_client_gone_cancels_total Tasks cancelled because "
          "h2o disposed of their request.\n"
          "# TYPE httpd_client_gone_cancels_total counter\n"
          "httpd_client_gone_cancels_total %llu\n"
          "# HELP httpd_connections Open connections.\n"
          "# TYPE httpd_connections gauge\n"
          "httpd_connections %zu\n"
          "# HELP httpd_tasks_in_flight Tasks whose answer is owed.\n"
          "# TYPE httpd_tasks_in_flight gauge\n"
          "httpd_tasks_in_flight %zu\n",
          (unsigned long long)s->client_gone_cancels, s->conns, s->in_flight);
}

char *httpd_metrics(httpd *s, size_t *len) {
  pool_row rows[2] = {{.name = "hash"}, {.name = "render"}};
  if (pbl_pool_stats(s->threads, &rows[0].st) != 0 ||
      pbl_pool_stats(s->procs, &rows[1].st) != 0)
    return NULL;
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (f == NULL)
    return NULL;
  gauge(f, "pebble_pool_workers", "Workers started.", rows, 2,
        offsetof(pbl_pool_stats_t, workers));
  gauge(f, "pebble_pool_queued", "Tasks waiting for a worker.", rows, 2,
        offsetof(pbl_pool_stats_t, queued));
  gauge(f, "pebble_pool_running", "Tasks the workers hold.", rows, 2,
        offsetof(pbl_pool_stats_t, running));
  ends(f, rows, 2);
  counter(f, "pebble_pool_respawned_total",
          "Workers started to replace another.", rows, 2,
          offsetof(pbl_pool_stats_t, respawned));
  waits(f, rows, 2);
  server(f, s);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
