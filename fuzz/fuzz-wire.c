/* libFuzzer target for the frame decoder: the bytes a worker (or a
 * parent) might send, fed to the reader in chunks whose size the first
 * input byte picks. Every frame the reader accepts is parsed as its type
 * says (CANCEL and SKIPPED have no payload); a CALL is encoded again and
 * must decode to the same call. No
 * input may crash, hang or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "process/wire.h"

#define MAX_LEN (1u << 20) /* keeps libFuzzer's malloc limit out of play */

static void check_call(const pbl__wire_head *h, const pbl__wire_call *c) {
  pbl__wire_batch b;
  pbl__wire_batch_init(&b);
  if (pbl__wire_batch_call(&b, h->tag, h->flags, c->name, c->in, c->in_len) !=
      0)
    abort(); /* a name the decoder accepts must encode */
  uv_buf_t *bufs;
  size_t n;
  if (pbl__wire_batch_bufs(&b, &bufs, &n) != 0 || n == 0 ||
      bufs[0].len < PBL__WIRE_HEAD)
    abort();
  pbl__wire_head h2;
  if (pbl__wire_head_decode((const uint8_t *)bufs[0].base, UINT64_MAX, &h2) !=
          0 ||
      h2.len != h->len || h2.tag != h->tag || h2.flags != h->flags)
    abort();
  pbl__wire_batch_free(&b);
}

static int on_frame(void *ctx, const pbl__wire_head *h, void *payload) {
  int *frames = ctx;
  (*frames)++;
  int err = 0;
  if (h->type == PBL__WIRE_CALL) {
    pbl__wire_call c;
    err = pbl__wire_call_parse(payload, (size_t)h->len, &c);
    if (err == 0)
      check_call(h, &c);
  } else if (h->type == PBL__WIRE_FAIL) {
    pbl__wire_fail f;
    err = pbl__wire_fail_parse(payload, (size_t)h->len, &f);
  } else if (h->type == PBL__WIRE_HELLO) {
    char host[PBL__WIRE_HOST_MAX + 1];
    int pid;
    err = pbl__wire_hello_parse(payload, (size_t)h->len, &pid, host);
  } else if ((h->type == PBL__WIRE_CANCEL || h->type == PBL__WIRE_SKIPPED ||
              h->type == PBL__WIRE_PING || h->type == PBL__WIRE_BYE) &&
             h->len != 0) {
    abort(); /* the decoder lets no payload through on these */
  }
  pbl__free(payload);
  return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t step = data[0] == 0 ? SIZE_MAX : data[0];
  data++;
  size--;
  int frames = 0;
  pbl__wire_reader r;
  if (pbl__wire_reader_init(&r, MAX_LEN, on_frame, &frames) != 0)
    return 0;
  while (size > 0) {
    char *base;
    size_t len;
    pbl__wire_reader_buf(&r, &base, &len);
    if (len == 0)
      abort(); /* the reader must always take more */
    size_t k = size < len ? size : len;
    if (k > step)
      k = step;
    memcpy(base, data, k);
    if (pbl__wire_reader_feed(&r, k) != 0)
      break;
    data += k;
    size -= k;
  }
  pbl__wire_reader_free(&r);
  return 0;
}
