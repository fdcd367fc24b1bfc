/* What the tasks run: CPU-bound C, on a pool thread (/hash) or in a
 * worker process (/render). Neither touches the server's state: a thread
 * task may still be running after its request was answered (a timeout
 * or a cancel does not stop a thread), so it owns nothing but its
 * argument's value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void *httpd_hash_fn(void *arg) {
  size_t kb = (size_t)(uintptr_t)arg;
  uint64_t h = 14695981039346656037u; /* FNV-1a 64 */
  uint64_t x = 88172645463325252u;    /* xorshift64: the data hashed */
  for (size_t k = 0; k < kb; k++) {
    if (pbl_cancelled()) /* timed out or cancelled: nobody reads it */
      return NULL;
    for (int i = 0; i < 1024 / 8; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      for (int b = 0; b < 8; b++) {
        h ^= (x >> (8 * b)) & 0xff;
        h *= 1099511628211u;
      }
    }
  }
  return (void *)(uintptr_t)h;
}

uint64_t httpd_burn_ms(uint32_t ms) {
  uint64_t end = now_ns() + (uint64_t)ms * 1000000u, spins = 0;
  volatile double z = 0.5; /* volatile: the work is not optimised away */
  do {
    for (int i = 0; i < 1000; i++)
      z = z * 3.7 * (1.0 - z);
    spins++;
  } while (now_ns() < end);
  return spins;
}

int httpd_render_fn(const void *in, size_t len, pbl_buf *out) {
  httpd_render_in r;
  if (len != sizeof(r)) {
    pbl_fail(1, "render: %zu bytes of input, want %zu", len, sizeof(r));
    return 1;
  }
  memcpy(&r, in, sizeof(r));
  if (r.crash)
    abort(); /* what a bug in native code does to its worker */
  uint64_t spins = httpd_burn_ms(r.ms);
  char *text = malloc(96);
  if (text == NULL) {
    pbl_fail(1, "render: out of memory");
    return 1;
  }
  int n = snprintf(text, 96, "render ms=%u spins=%llu pid=%ld\n", r.ms,
                   (unsigned long long)spins, (long)getpid());
  out->data = text;
  out->len = (size_t)n;
  return 0;
}
PBL_PROCESS_FN(httpd_render_fn);
