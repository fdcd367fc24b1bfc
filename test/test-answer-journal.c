/* The answer journal (process/answer-journal.h) on its own: what a worker
 * appends and a death leaves is replayed into the parent's reader exactly
 * once, wherever the channel stopped -- between frames, in the middle of
 * one, before the journal's first byte or after its last; a header that
 * makes no sense replays nothing; no fd is left behind. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "helpers.h"
#include "process/answer-journal.h"

/* The frames the reader delivered: tags and payload lengths, in order. */
typedef struct {
  uint64_t tags[16];
  uint64_t lens[16];
  size_t n;
} seen;

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  seen *s = ctx;
  const uint8_t *p = payload;
  for (uint64_t i = 0; i < h->len; i++) /* the payload's own pattern */
    assert_int_equal(p[i], (uint8_t)(h->tag + i));
  pbl__free(payload);
  assert_true(s->n < 16);
  s->tags[s->n] = h->tag;
  s->lens[s->n++] = h->len;
  return 0;
}

/* A RESULT frame of tag with len bytes of its pattern, at *at in buf. */
static void put_result(uint8_t *buf, size_t *at, uint64_t tag, size_t len) {
  pbl__wire_head h = {PBL__WIRE_RESULT, 0, tag, len};
  pbl__wire_head_encode(buf + *at, &h);
  *at += PBL__WIRE_HEAD;
  for (size_t i = 0; i < len; i++)
    buf[(*at)++] = (uint8_t)(tag + i);
}

/* Feeds the reader bytes[0, n) as the channel would. */
static void feed(pbl__wire_reader *rd, const uint8_t *bytes, size_t n) {
  while (n > 0) {
    char *b;
    size_t len;
    pbl__wire_reader_buf(rd, &b, &len);
    size_t k = n < len ? n : len;
    memcpy(b, bytes, k);
    assert_int_equal(pbl__wire_reader_feed(rd, k), 0);
    bytes += k;
    n -= k;
  }
}

typedef struct {
  pbl__journal parent, worker;
  size_t fds;
} pair;

/* The parent's area and the worker's mapping of it (in this process). */
static void pair_open(pair *p) {
  p->fds = pbl_test_count_fds();
  int fd;
  assert_int_equal(pbl__journal_create(&p->parent, &fd), 0);
  assert_non_null(p->parent.map);
  /* The worker gets a dup (its fd 4), and maps and closes it. */
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  assert_true(dup_fd >= 0);
  assert_int_equal(close(fd), 0);
  assert_int_equal(pbl__journal_open(&p->worker, dup_fd), 0);
  assert_int_equal(pbl_test_count_fds(), p->fds); /* mapped, no fd kept */
}

static void pair_close(pair *p) {
  pbl__journal_close(&p->worker);
  pbl__journal_free(&p->parent);
  pbl__journal_free(&p->parent); /* idempotent */
  assert_null(p->parent.map);
  assert_int_equal(pbl_test_count_fds(), p->fds);
}

/* The worker's stream: frame 1 written at once (pre bytes), frames 2..5
 * held in the journal; the channel carried `cut` bytes of the held ones
 * before the death. Every frame arrives once, in order. */
static void replay_after(size_t cut) {
  static const size_t lens[] = {5, 0, 700, 70000, 33};
  uint8_t *stream = malloc(1 << 20);
  assert_non_null(stream);
  size_t at = 0;
  put_result(stream, &at, 1, lens[0]);
  size_t pre = at;
  pair p;
  pair_open(&p);
  for (uint64_t tag = 2; tag <= 5; tag++) { /* appended one by one */
    size_t from = at;
    put_result(stream, &at, tag, lens[tag - 1]);
    uv_buf_t b = uv_buf_init((char *)stream + from, (unsigned)(at - from));
    pbl__journal_append(&p.worker, pre, &b, 1, at - from);
  }
  assert_int_equal(pbl__journal_held(&p.worker), at - pre);
  seen s = {.n = 0};
  pbl__wire_reader rd;
  assert_int_equal(pbl__wire_reader_init(&rd, 1 << 20, on_frame, &s), 0);
  feed(&rd, stream, pre + cut);
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  assert_int_equal(s.n, 5);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(s.tags[i], i + 1);
    assert_int_equal(s.lens[i], lens[i]);
  }
  assert_true(pbl__wire_reader_idle(&rd));
  /* A second replay adds nothing: the reader has it all. */
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  assert_int_equal(s.n, 5);
  pbl__wire_reader_free(&rd);
  pair_close(&p);
  free(stream);
}

static void test_replay_anywhere(void **state) {
  (void)state;
  size_t held = 4 * PBL__WIRE_HEAD + 700 + 70000 + 33;
  size_t cuts[] = {0,
                   1,
                   PBL__WIRE_HEAD,
                   PBL__WIRE_HEAD + 1,
                   2 * PBL__WIRE_HEAD,
                   2 * PBL__WIRE_HEAD + 699,
                   3 * PBL__WIRE_HEAD + 700 + 1000,
                   held - 1,
                   held};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
    replay_after(cuts[i]);
}

/* Nothing held, a journal written and emptied, a header that makes no
 * sense, bytes before the journal that never came: nothing is replayed. */
static void test_replay_nothing(void **state) {
  (void)state;
  uint8_t frame[64];
  size_t at = 0;
  put_result(frame, &at, 9, 10);
  uv_buf_t b = uv_buf_init((char *)frame, (unsigned)at);
  pair p;
  pair_open(&p);
  seen s = {.n = 0};
  pbl__wire_reader rd;
  assert_int_equal(pbl__wire_reader_init(&rd, 1 << 20, on_frame, &s), 0);
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0); /* empty */
  pbl__journal_append(&p.worker, 0, &b, 1, at);
  pbl__journal_written(&p.worker); /* flushed, but not read by us yet */
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  pbl__journal_append(&p.worker, 100, &b, 1, at); /* base past what came */
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  assert_int_equal(s.n, 0);
  /* A worker's garbage in the header: more held than the area has. */
  memset(p.worker.map, 0xff, 16);
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  assert_int_equal(s.n, 0);
  assert_int_equal(rd.fed, 0);
  /* After a flush the next append starts a new base: it replays alone. */
  pbl__journal_written(&p.worker);
  pbl__journal_append(&p.worker, 0, &b, 1, at);
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), 0);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.tags[0], 9);
  pbl__wire_reader_free(&rd);
  pair_close(&p);
}

/* Garbage in the journal is garbage on the channel: the reader says so. */
static void test_replay_garbage(void **state) {
  (void)state;
  pair p;
  pair_open(&p);
  uint8_t junk[40];
  memset(junk, 'j', sizeof(junk));
  uv_buf_t b = uv_buf_init((char *)junk, sizeof(junk));
  pbl__journal_append(&p.worker, 0, &b, 1, sizeof(junk));
  seen s = {.n = 0};
  pbl__wire_reader rd;
  assert_int_equal(pbl__wire_reader_init(&rd, 1 << 20, on_frame, &s), 0);
  assert_int_equal(pbl__journal_replay(&p.parent, &rd), PBL_EPROTO);
  pbl__wire_reader_free(&rd);
  pair_close(&p);
}

/* The worker's side refuses what is not an area, and closes the fd. */
static void test_open_refuses(void **state) {
  (void)state;
  size_t fds = pbl_test_count_fds();
  pbl__journal j;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_not_equal(pbl__journal_open(&j, fd), 0);
  assert_null(j.map);
  assert_int_not_equal(pbl__journal_open(&j, 1000), 0); /* not open */
  assert_null(j.map);
  assert_int_equal(pbl_test_count_fds(), fds);
  pbl__journal_close(&j); /* nothing mapped: nothing to do */
}

/* Room and held follow appends and flushes. */
static void test_room(void **state) {
  (void)state;
  pair p;
  pair_open(&p);
  size_t room = pbl__journal_room(&p.worker);
  assert_true(room >= 2 * PBL__JOURNAL_HOLD);
  uint8_t frame[64];
  size_t at = 0;
  put_result(frame, &at, 3, 30);
  uv_buf_t b = uv_buf_init((char *)frame, (unsigned)at);
  pbl__journal_append(&p.worker, 0, &b, 1, at);
  assert_int_equal(pbl__journal_held(&p.worker), at);
  assert_int_equal(pbl__journal_room(&p.worker), room - at);
  assert_memory_equal(pbl__journal_bytes(&p.worker), frame, at);
  pbl__journal_written(&p.worker);
  assert_int_equal(pbl__journal_held(&p.worker), 0);
  pair_close(&p);
}

int main(void) {
  pbl_test_warm_up(); /* what is made once, before any count */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replay_anywhere),
      cmocka_unit_test(test_replay_nothing),
      cmocka_unit_test(test_replay_garbage),
      cmocka_unit_test(test_open_refuses),
      cmocka_unit_test(test_room),
  };
  return cmocka_run_group_tests_name("answer-journal", tests, NULL, NULL);
}
