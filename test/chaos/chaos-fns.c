/* What chaos tasks run: payload streams, the process function (in worker
 * processes) and the thread function. See chaos.h. */
#include "chaos.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void chaos_fill(void *buf, size_t len, uint64_t key) {
  chaos_rng r = {key};
  uint8_t *p = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = rng_next(&r);
    memcpy(p + i, &v, 8);
  }
  if (i < len) {
    uint64_t v = rng_next(&r);
    memcpy(p + i, &v, len - i);
  }
}

bool chaos_check(const void *buf, size_t len, uint64_t key) {
  chaos_rng r = {key};
  const uint8_t *p = buf;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v = rng_next(&r);
    if (memcmp(p + i, &v, 8) != 0)
      return false;
  }
  if (i < len) {
    uint64_t v = rng_next(&r);
    if (memcmp(p + i, &v, len - i) != 0)
      return false;
  }
  return true;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static void sleep_forever(void) {
  for (;;)
    pause();
}

/* ---- in a worker process ---- */

int chaos_process_fn(const void *in, size_t len, pbl_buf *out) {
  chaos_call c;
  if (len < sizeof(c)) {
    pbl_fail(90, "chaos: input of %zu bytes has no header", len);
    return 1;
  }
  memcpy(&c, in, sizeof(c));
  const uint8_t *payload = (const uint8_t *)in + sizeof(c);
  size_t plen = len - sizeof(c);
  if (c.magic != CHAOS_CALL_MAGIC || !chaos_check(payload, plen, c.key)) {
    pbl_fail(91, "chaos: the input arrived corrupted");
    return 1;
  }
  switch ((chaos_behaviour)c.behaviour) {
  case B_SLOW:
    sleep_ms((unsigned)c.code % 20);
    /* fall through */
  case B_OK:
    out->data = malloc(c.out_len > 0 ? c.out_len : 1);
    if (out->data == NULL)
      return 1;
    chaos_fill(out->data, c.out_len, chaos_result_key(c.key));
    out->len = c.out_len;
    return 0;
  case B_FAIL:
    pbl_fail(c.code, "chaos failure %d", c.code);
    return 1;
  case B_BLOCK:
    sleep_forever();
    break;
  case B_ABORT:
    abort();
  case B_SEGV:
    signal(SIGSEGV, SIG_DFL); /* die by the signal, sanitizer or not */
    raise(SIGSEGV);
    break;
  case B_EXIT:
    _exit(c.code);
  case B_EXIT0:
    exit(0); /* without a result */
  case B_IGNORE_TERM:
    signal(SIGTERM, SIG_IGN);
    sleep_forever();
    break;
  case B_GARBAGE: {
    char junk[64];
    chaos_fill(junk, sizeof(junk), c.key);
    if (write(3, junk, sizeof(junk)) < 0) /* fd 3: the worker's channel */
      _exit(1);
    sleep_forever();
    break;
  }
  case B_BEHAVIOURS:
    break;
  }
  pbl_fail(92, "chaos: behaviour %u unknown", c.behaviour);
  return 1;
}
PBL_PROCESS_FN(chaos_process_fn);

int chaos_init_ok(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  return 0;
}
PBL_PROCESS_FN(chaos_init_ok);

int chaos_init_fail(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len, (void)out;
  pbl_fail(7, "chaos: this initializer fails");
  return 1;
}
PBL_PROCESS_FN(chaos_init_fail);

/* ---- on a thread ---- */

void *chaos_thread_fn(void *arg) {
  uintptr_t a = (uintptr_t)arg;
  chaos_behaviour b = (chaos_behaviour)(a & 0xff);
  unsigned key = (unsigned)(a >> 8);
  switch (b) {
  case B_FAIL:
    pbl_fail((int)(key & 0xff), "chaos failure %u", key & 0xff);
    return NULL;
  case B_SLOW:
    sleep_ms(key % 5);
    break;
  case B_BLOCK:
    while (!pbl_cancelled()) /* its work: polls its flag, as users do */
      sleep_ms(1);
    break;
  default:
    break;
  }
  return chaos_thread_result(arg);
}

void *chaos_thread_init_fail(void *arg) {
  (void)arg;
  pbl_fail(8, "chaos: this thread initializer fails");
  return NULL;
}
