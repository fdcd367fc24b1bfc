/* Error names and messages: the library's PBL_E* block, else libuv's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* libuv's *_r functions write "Unknown system error N" for codes it does
 * not know; its non-_r ones then leak a malloc'd string, so we only call
 * those for codes it knows. */
static bool uv_knows(int err) {
  char name[64];
  uv_err_name_r(err, name, sizeof(name));
  return strncmp(name, "Unknown", 7) != 0;
}

static _Thread_local char unknown_buf[48];

static const char *unknown(int err) {
  snprintf(unknown_buf, sizeof(unknown_buf), "unknown error %d", err);
  return unknown_buf;
}

const char *pbl_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define XX(name, code, msg)                                                    \
  case PBL_##name:                                                             \
    return msg;
    PBL_ERRNO_MAP(XX)
#undef XX
  default:
    return uv_knows(err) ? uv_strerror(err) : unknown(err);
  }
}

const char *pbl_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define XX(name, code, msg)                                                    \
  case PBL_##name:                                                             \
    return "PBL_" #name;
    PBL_ERRNO_MAP(XX)
#undef XX
  default:
    return uv_knows(err) ? uv_err_name(err) : unknown(err);
  }
}

void pbl__check_failed(const char *cond, const char *file, int line,
                       const char *func) {
  fprintf(stderr, "pebble: invariant failed: %s (%s:%d, %s)\n", cond, file,
          line, func);
  abort();
}
