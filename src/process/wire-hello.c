/* The HELLO frame a worker opens its channel with. See wire.h. */
#include <string.h>

#include "core/internal.h"
#include "wire.h"

size_t pbl__wire_hello_encode(uint8_t out[PBL__WIRE_HELLO_MAX], int pid,
                              const char *host) {
  size_t n = host != NULL ? strnlen(host, PBL__WIRE_HOST_MAX) : 0;
  if (n == 0) {
    host = "?";
    n = 1;
  }
  pbl__wire_head h = {.type = PBL__WIRE_HELLO, .tag = 0, .len = 4 + n};
  pbl__wire_head_encode(out, &h);
  uint32_t u = (uint32_t)pid;
  for (int i = 0; i < 4; i++)
    out[PBL__WIRE_HEAD + i] = (uint8_t)(u >> (8 * i));
  memcpy(out + PBL__WIRE_HEAD + 4, host, n);
  return PBL__WIRE_HEAD + 4 + n;
}

int pbl__wire_hello_parse(const void *p, size_t len, int *pid,
                          char host[PBL__WIRE_HOST_MAX + 1]) {
  const uint8_t *b = p;
  if (len < 5 || len > 4 + PBL__WIRE_HOST_MAX)
    return PBL_EPROTO;
  uint32_t u = 0;
  for (int i = 0; i < 4; i++)
    u |= (uint32_t)b[i] << (8 * i);
  if (u == 0 || u > INT32_MAX || memchr(b + 4, '\0', len - 4) != NULL)
    return PBL_EPROTO;
  *pid = (int)u;
  memcpy(host, b + 4, len - 4);
  host[len - 4] = '\0';
  return 0;
}
