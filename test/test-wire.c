/* The wire format: every check of the decoder, the reader over split and
 * batched input, and the write batch. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "helpers.h"
#include "process/wire.h"

static void encode(uint8_t *out, uint8_t type, uint8_t flags, uint64_t tag,
                   uint64_t len) {
  pbl__wire_head h = {type, flags, tag, len};
  pbl__wire_head_encode(out, &h);
}

static void test_head_roundtrip(void **state) {
  (void)state;
  uint8_t b[PBL__WIRE_HEAD];
  encode(b, PBL__WIRE_RESULT, 0, 0x0102030405060708ull, 77);
  pbl__wire_head h;
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), 0);
  assert_int_equal(h.type, PBL__WIRE_RESULT);
  assert_int_equal(h.tag, 0x0102030405060708ull);
  assert_int_equal(h.len, 77);
  assert_int_equal(b[8], 0x08); /* little-endian on the wire */
}

static void test_head_checks(void **state) {
  (void)state;
  uint8_t b[PBL__WIRE_HEAD];
  pbl__wire_head h;
  struct {
    int at;
    uint8_t value;
  } breaks[] = {{0, 'x'}, {3, 'x'}, {4, 3}, {4, 5}, {4, 0},
                {5, 0},   {5, 9},   {6, 1}, {7, 1}};
  for (size_t i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
    encode(b, PBL__WIRE_RESULT, 0, 1, 10);
    b[breaks[i].at] = breaks[i].value;
    assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  }
  encode(b, PBL__WIRE_RESULT, 0, 1, 101); /* past the maximum */
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_CALL, 0, 1, 15); /* shorter than a CALL can be */
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_CALL, PBL__WIRE_F_LAST, 1, 16);
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), 0);
  encode(b, PBL__WIRE_CALL, PBL__WIRE_F_LAST | PBL__WIRE_F_BATCH, 1, 16);
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), 0);
  assert_int_equal(h.flags, PBL__WIRE_F_LAST | PBL__WIRE_F_BATCH);
  encode(b, PBL__WIRE_CALL, 4, 1, 16); /* unknown flag */
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_RESULT, PBL__WIRE_F_BATCH, 1, 16); /* CALL only */
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_FAIL, 0, 1, 7);
  assert_int_equal(pbl__wire_head_decode(b, 1 << 20, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_FAIL, 0, 1, 8 + PBL__WIRE_MSG_MAX + 1);
  assert_int_equal(pbl__wire_head_decode(b, 1 << 20, &h), PBL_EPROTO);
  encode(b, PBL__WIRE_RESULT, 0, 1, UINT64_MAX);
  assert_int_equal(pbl__wire_head_decode(b, UINT64_MAX, &h), 0);
  /* CANCEL, SKIPPED, PING and BYE carry nothing, and no flag. */
  uint8_t bare[] = {PBL__WIRE_CANCEL, PBL__WIRE_SKIPPED, PBL__WIRE_PING,
                    PBL__WIRE_BYE};
  for (size_t i = 0; i < sizeof(bare); i++) {
    encode(b, bare[i], 0, 7, 0);
    assert_int_equal(pbl__wire_head_decode(b, 100, &h), 0);
    assert_int_equal(h.type, bare[i]);
    assert_int_equal(h.tag, 7);
    encode(b, bare[i], 0, 7, 1);
    assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
    encode(b, bare[i], PBL__WIRE_F_LAST, 7, 0);
    assert_int_equal(pbl__wire_head_decode(b, 100, &h), PBL_EPROTO);
  }
}

/* A HELLO: pid and host, checked; the frame decodes as any other. */
static void test_hello(void **state) {
  (void)state;
  uint8_t b[PBL__WIRE_HELLO_MAX];
  char host[PBL__WIRE_HOST_MAX + 1];
  int pid = 0;
  size_t n = pbl__wire_hello_encode(b, 4242, "node7");
  assert_int_equal(n, PBL__WIRE_HEAD + 4 + 5);
  pbl__wire_head h;
  assert_int_equal(pbl__wire_head_decode(b, 100, &h), 0);
  assert_int_equal(h.type, PBL__WIRE_HELLO);
  assert_int_equal(h.len, 9);
  assert_int_equal(pbl__wire_hello_parse(b + PBL__WIRE_HEAD, 9, &pid, host), 0);
  assert_int_equal(pid, 4242);
  assert_string_equal(host, "node7");
  char long_host[400];
  memset(long_host, 'h', sizeof(long_host) - 1);
  long_host[sizeof(long_host) - 1] = '\0';
  n = pbl__wire_hello_encode(b, 1, long_host); /* cut at the maximum */
  assert_int_equal(n, PBL__WIRE_HELLO_MAX);
  n = pbl__wire_hello_encode(b, 1, ""); /* never empty */
  assert_int_equal(
      pbl__wire_hello_parse(b + PBL__WIRE_HEAD, n - PBL__WIRE_HEAD, &pid, host),
      0);
  assert_string_equal(host, "?");
  uint8_t bad[8] = {0, 0, 0, 0, 'a'}; /* pid 0 */
  assert_int_equal(pbl__wire_hello_parse(bad, 5, &pid, host), PBL_EPROTO);
  bad[0] = 1;
  bad[5] = '\0'; /* a NUL in the host */
  assert_int_equal(pbl__wire_hello_parse(bad, 6, &pid, host), PBL_EPROTO);
  assert_int_equal(pbl__wire_hello_parse(bad, 4, &pid, host), PBL_EPROTO);
  encode(b, PBL__WIRE_HELLO, 0, 0, 4); /* no host */
  assert_int_equal(pbl__wire_head_decode(b, 1000, &h), PBL_EPROTO);
}

static void test_call_parse(void **state) {
  (void)state;
  uint8_t p[64] = {3, 0, 'a', 'b', 'c'};
  memcpy(p + 16, "input", 5);
  pbl__wire_call c;
  assert_int_equal(pbl__wire_call_parse(p, 21, &c), 0);
  assert_string_equal(c.name, "abc");
  assert_int_equal(c.in_len, 5);
  assert_ptr_equal(c.in, p + 16);

  assert_int_equal(pbl__wire_call_parse(p, 1, &c), PBL_EPROTO);
  assert_int_equal(pbl__wire_call_parse(p, 15, &c), PBL_EPROTO);
  p[1] = 1; /* name length 259: too long */
  assert_int_equal(pbl__wire_call_parse(p, 64, &c), PBL_EPROTO);
  p[1] = 0;
  p[0] = 0; /* empty name */
  assert_int_equal(pbl__wire_call_parse(p, 21, &c), PBL_EPROTO);
  p[0] = 3;
  p[3] = '\0'; /* a NUL in the name */
  assert_int_equal(pbl__wire_call_parse(p, 21, &c), PBL_EPROTO);
  p[3] = 'b';
  p[10] = 1; /* padding not zero */
  assert_int_equal(pbl__wire_call_parse(p, 21, &c), PBL_EPROTO);
  p[10] = 0;
  p[0] = 14; /* 2 + 14 + NUL = 17: the padding runs to 32 > 21 */
  assert_int_equal(pbl__wire_call_parse(p, 21, &c), PBL_EPROTO);
}

static void test_fail_parse(void **state) {
  (void)state;
  uint8_t p[16];
  int32_t err = PBL_EFAILED, code = -7;
  memcpy(p, &err, 4); /* the test host is little-endian, as is the wire */
  memcpy(p + 4, &code, 4);
  memcpy(p + 8, "oops", 4);
  pbl__wire_fail f;
  assert_int_equal(pbl__wire_fail_parse(p, 12, &f), 0);
  assert_int_equal(f.err, PBL_EFAILED);
  assert_int_equal(f.code, -7);
  assert_int_equal(f.msg_len, 4);
  assert_int_equal(pbl__wire_fail_parse(p, 7, &f), PBL_EPROTO);
  err = UV_EINVAL; /* not an end code a worker may send */
  memcpy(p, &err, 4);
  assert_int_equal(pbl__wire_fail_parse(p, 12, &f), PBL_EPROTO);
}

typedef struct {
  int frames;
  uint64_t tags[16];
  uint64_t lens[16];
  uint8_t *last;
  int stop_after; /* return an error after this many frames; 0: never */
} sink;

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  sink *s = ctx;
  if (s->frames < 16) {
    s->tags[s->frames] = h->tag;
    s->lens[s->frames] = h->len;
  }
  s->frames++;
  pbl__free(s->last);
  s->last = payload;
  return s->stop_after != 0 && s->frames >= s->stop_after ? PBL_EPROTO : 0;
}

/* Feeds bytes to the reader `step` bytes at a time. */
static int feed(pbl__wire_reader *r, const uint8_t *p, size_t n, size_t step) {
  while (n > 0) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(r, &base, &len);
    assert_true(len > 0);
    size_t k = n < len ? n : len;
    if (k > step)
      k = step;
    memcpy(base, p, k);
    int err = pbl__wire_reader_feed(r, k);
    if (err != 0)
      return err;
    p += k;
    n -= k;
  }
  return 0;
}

/* A batch of a CALL, a RESULT and a FAIL as one byte string. */
static uint8_t *batch_bytes(size_t *n, const void *big, size_t big_len) {
  pbl__wire_batch b;
  pbl__wire_batch_init(&b);
  assert_int_equal(pbl__wire_batch_call(&b, 1, PBL__WIRE_F_LAST, "fn", "in", 2),
                   0);
  assert_int_equal(pbl__wire_batch_result(&b, 2, big, big_len), 0);
  assert_int_equal(pbl__wire_batch_fail(&b, 3, PBL_EFAILED, 4, "msg"), 0);
  uv_buf_t *bufs;
  size_t nbufs;
  assert_int_equal(pbl__wire_batch_bufs(&b, &bufs, &nbufs), 0);
  /* Heads and small payloads coalesce: head+pre+"in"+head, big, head+fail */
  assert_int_equal(nbufs, big_len > PBL__WIRE_INLINE ? 3 : 1);
  *n = pbl__wire_batch_size(&b);
  uint8_t *all = malloc(*n);
  size_t off = 0;
  for (size_t i = 0; i < nbufs; i++) {
    memcpy(all + off, bufs[i].base, bufs[i].len);
    off += bufs[i].len;
  }
  assert_int_equal(off, *n);
  pbl__wire_batch_free(&b);
  return all;
}

static void test_reader_split_and_batched(void **state) {
  (void)state;
  size_t big_len = 300000; /* bigger than the stage: read in place */
  uint8_t *big = malloc(big_len);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (uint8_t)(i * 7);
  size_t n;
  uint8_t *all = batch_bytes(&n, big, big_len);
  size_t steps[] = {1, 7, 24, 4096, SIZE_MAX};
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    sink s = {0};
    pbl__wire_reader r;
    assert_int_equal(pbl__wire_reader_init(&r, 1 << 20, on_frame, &s), 0);
    assert_true(pbl__wire_reader_idle(&r));
    assert_int_equal(feed(&r, all, n, steps[i]), 0);
    assert_true(pbl__wire_reader_idle(&r));
    assert_int_equal(s.frames, 3);
    assert_int_equal(s.tags[1], 2);
    assert_int_equal(s.lens[1], big_len);
    assert_int_equal(s.lens[2], 8 + 3);
    pbl__wire_fail fl;
    assert_int_equal(pbl__wire_fail_parse(s.last, 11, &fl), 0);
    assert_int_equal(fl.code, 4);
    pbl__free(s.last);
    pbl__wire_reader_free(&r);
  }
  /* The big payload arrives intact. */
  sink s = {0, .stop_after = 2};
  pbl__wire_reader r;
  assert_int_equal(pbl__wire_reader_init(&r, 1 << 20, on_frame, &s), 0);
  assert_int_equal(feed(&r, all, n, 65536), PBL_EPROTO); /* stopped at 2 */
  assert_memory_equal(s.last, big, big_len);
  assert_int_equal(pbl__wire_reader_feed(&r, 0), PBL_EPROTO); /* sticky */
  pbl__free(s.last);
  pbl__wire_reader_free(&r);
  free(all);
  free(big);
}

static void test_reader_rejects(void **state) {
  (void)state;
  sink s = {0};
  pbl__wire_reader r;
  assert_int_equal(pbl__wire_reader_init(&r, 100, on_frame, &s), 0);
  uint8_t b[PBL__WIRE_HEAD];
  encode(b, PBL__WIRE_RESULT, 0, 1, 101);
  assert_int_equal(feed(&r, b, sizeof(b), 5), PBL_EPROTO);
  assert_int_equal(s.frames, 0);
  pbl__wire_reader_free(&r);
  pbl__wire_reader_free(&r); /* idempotent */

  assert_int_equal(pbl__wire_reader_init(&r, 100, on_frame, &s), 0);
  encode(b, PBL__WIRE_RESULT, 0, 1, 50);
  assert_int_equal(feed(&r, b, sizeof(b), 100), 0);
  assert_false(pbl__wire_reader_idle(&r)); /* EOF here is not clean */
  pbl__wire_reader_free(&r);               /* frees the partial payload */
}

static void test_batch_bad_input(void **state) {
  (void)state;
  pbl__wire_batch b;
  pbl__wire_batch_init(&b);
  char name[PBL__WIRE_NAME_MAX + 2];
  memset(name, 'n', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  assert_int_equal(pbl__wire_batch_call(&b, 1, 0, name, NULL, 0), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_call(&b, 1, 0, "", NULL, 0), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_call(&b, 1, 0, "f", NULL, 3), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_result(&b, 1, NULL, 3), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_fail(&b, 1, UV_EINVAL, 0, "m"), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_size(&b), 0);
  /* A name of the longest length fits. */
  name[PBL__WIRE_NAME_MAX] = '\0';
  assert_int_equal(pbl__wire_batch_call(&b, 1, 0, name, NULL, 0), 0);
  assert_int_equal(pbl__wire_batch_size(&b),
                   PBL__WIRE_HEAD + PBL__WIRE_CALL_PRE(PBL__WIRE_NAME_MAX));
  pbl__wire_batch_reset(&b);
  assert_int_equal(pbl__wire_batch_size(&b), 0);
  assert_int_equal(pbl__wire_batch_bare(&b, PBL__WIRE_CALL, 1), UV_EINVAL);
  assert_int_equal(pbl__wire_batch_bare(&b, PBL__WIRE_CANCEL, 9), 0);
  assert_int_equal(pbl__wire_batch_size(&b), PBL__WIRE_HEAD);
  pbl__wire_batch_free(&b);
}

/* Byte ranges of a batch's buffers: what a write that stopped part way
 * sends next. */
static void test_bufs_slice(void **state) {
  (void)state;
  char a[] = "0123", c[] = "456789";
  uv_buf_t bufs[3] = {{a, 4}, {a, 0}, {c, 6}}, out[3];
  size_t n = pbl__wire_bufs_slice(bufs, 3, 0, 10, out);
  assert_int_equal(n, 2); /* the empty buffer is left out */
  assert_ptr_equal(out[0].base, a);
  assert_int_equal(out[0].len, 4);
  assert_int_equal(out[1].len, 6);
  n = pbl__wire_bufs_slice(bufs, 3, 2, 7, out);
  assert_int_equal(n, 2);
  assert_ptr_equal(out[0].base, a + 2);
  assert_int_equal(out[0].len, 2);
  assert_ptr_equal(out[1].base, c);
  assert_int_equal(out[1].len, 3);
  n = pbl__wire_bufs_slice(bufs, 3, 5, 6, out);
  assert_int_equal(n, 1);
  assert_ptr_equal(out[0].base, c + 1);
  assert_int_equal(out[0].len, 1);
  assert_int_equal(pbl__wire_bufs_slice(bufs, 3, 4, 4, out), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_head_roundtrip),
      cmocka_unit_test(test_head_checks),
      cmocka_unit_test(test_hello),
      cmocka_unit_test(test_call_parse),
      cmocka_unit_test(test_fail_parse),
      cmocka_unit_test(test_reader_split_and_batched),
      cmocka_unit_test(test_reader_rejects),
      cmocka_unit_test(test_batch_bad_input),
      cmocka_unit_test(test_bufs_slice),
  };
  return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
