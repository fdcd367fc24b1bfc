/* A worker program apart from the tests (opts.worker_path): it registers
 * its own fn_hello and nothing else. */
#include <stdlib.h>
#include <string.h>

#include <pebble.h>

static int fn_hello(const void *in, size_t len, pbl_buf *out) {
  (void)in, (void)len;
  out->data = malloc(7);
  if (out->data == NULL)
    return 1;
  memcpy(out->data, "fixture", 7);
  out->len = 7;
  return 0;
}
PBL_PROCESS_FN(fn_hello);

int main(int argc, char **argv) {
  pbl_worker_main(argc, argv);
  return 2; /* started as anything but a worker */
}
