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

/* Forgets pbl_worker_main() when started with "forgetful": it then runs
 * like a program that submits a task, which the library must refuse in
 * a process started as a worker. */
int main(int argc, char **argv) {
  if (getenv("PBL_FIXTURE_FORGETFUL") == NULL)
    pbl_worker_main(argc, argv);
  uv_loop_t loop;
  pbl_loop_t *pl;
  if (uv_loop_init(&loop) != 0 || pbl_loop_new(&loop, &pl) != 0)
    return 3;
  int err = pbl_process(pl, fn_hello, NULL, 0, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return err == 0 ? 0 : 4;
}
