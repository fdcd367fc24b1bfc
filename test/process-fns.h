/* Process functions the process tests run in their workers. Every test
 * program that links process-fns.c is its own worker: its main() calls
 * pbl_worker_main() first. */
#ifndef PBL_TEST_PROCESS_FNS_H
#define PBL_TEST_PROCESS_FNS_H

#include <pebble.h>

/* Output = input. */
int fn_echo(const void *in, size_t len, pbl_buf *out);
/* pbl_fail(42, "bad thing 7"), returns 1. */
int fn_fail_with(const void *in, size_t len, pbl_buf *out);
/* Returns 5 without pbl_fail. */
int fn_fail_plain(const void *in, size_t len, pbl_buf *out);
/* pbl_fail(9, "late"), then returns 0 with a result: the failure wins. */
int fn_fail_then_ok(const void *in, size_t len, pbl_buf *out);
int fn_abort(const void *in, size_t len, pbl_buf *out);
int fn_segv(const void *in, size_t len, pbl_buf *out);  /* SIGSEGV */
int fn_exit3(const void *in, size_t len, pbl_buf *out); /* _exit(3) */
int fn_exit0(const void *in, size_t len, pbl_buf *out); /* exit(0) */
/* Output = input, after leaking 4 KiB (a definite leak at exit). */
int fn_leak(const void *in, size_t len, pbl_buf *out);
/* Output = input, then the worker hangs at exit (an atexit handler
 * that sleeps until killed). */
int fn_linger(const void *in, size_t len, pbl_buf *out);
/* Sleeps until killed. */
int fn_sleep(const void *in, size_t len, pbl_buf *out);
/* Ignores SIGTERM, makes the file named by the input (if any), then
 * sleeps until killed. */
int fn_ignore_term(const void *in, size_t len, pbl_buf *out);
/* Forks a child that ignores SIGTERM and sleeps; writes its pid (text)
 * to the file named by the input; then sleeps until killed. */
int fn_grandchild(const void *in, size_t len, pbl_buf *out);
/* Writes the input's first 8 bytes (u64 n) worth of bytes to stdout and
 * to stderr each, returns "ok". */
int fn_print_lots(const void *in, size_t len, pbl_buf *out);
/* Returns the child's open fds, as "0 1 2 3 ". */
int fn_list_fds(const void *in, size_t len, pbl_buf *out);
/* Writes garbage into the channel, then returns a result. */
int fn_garbage(const void *in, size_t len, pbl_buf *out);
/* Runs fn_echo on the input in a process task of its own (a grandchild)
 * on a loop it makes, and returns that task's result. */
int fn_nested(const void *in, size_t len, pbl_buf *out);
/* Returns "main" (the worker fixture's fn_hello returns "fixture"). */
int fn_hello(const void *in, size_t len, pbl_buf *out);

/* Pool tests. The worker's pid, as an int32_t. */
int fn_pid(const void *in, size_t len, pbl_buf *out);
/* Sleeps the input's first u32 in ms, then echoes the input. */
int fn_sleep_ms(const void *in, size_t len, pbl_buf *out);
/* An initializer that keeps its input; fn_init_seen returns it ("none"
 * without one). */
int fn_init_keep(const void *in, size_t len, pbl_buf *out);
int fn_init_seen(const void *in, size_t len, pbl_buf *out);
/* An initializer that fails: pbl_fail(7, "init says no"). */
int fn_init_fail(const void *in, size_t len, pbl_buf *out);
/* An initializer that sleeps until killed if the file named by its input
 * (NUL-terminated) exists, else returns at once: workers started while
 * the file exists hang in their initializer, the others do not. */
int fn_init_hang_if(const void *in, size_t len, pbl_buf *out);
/* Returns once the file named by its input (NUL-terminated) exists (fails
 * after 60 s), with the worker's pid as an int32_t: a task the test holds
 * running until it makes the file. */
int fn_wait_file(const void *in, size_t len, pbl_buf *out);
/* Runs `sh -c "exit 7"` and returns its exit status as an int32_t. */
int fn_run_child(const void *in, size_t len, pbl_buf *out);
/* Sleeps the input's first u32 in ms, then creates the file named by the
 * rest of the input (NUL-terminated; none if empty), returns the worker's
 * pid as an int32_t: proof that the function ran, and where. */
int fn_sleep_touch(const void *in, size_t len, pbl_buf *out);
/* Echoes a u32 input; an odd one fails with pbl_fail(v, "odd v"). */
int fn_fail_odd(const void *in, size_t len, pbl_buf *out);

#endif
