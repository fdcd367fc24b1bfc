/* A real sshd on a loopback port, for the tests of workers started
 * through ssh (test-remote.c). Each test starts its own: throwaway host
 * and user keys in a directory of its own, a config of its own, the
 * current user. The sessions it starts carry this program's mark in
 * their environment (sshd's SetEnv), so the fixture's teardown finds a
 * remote worker left behind even after its sshd is gone; the sanitizers'
 * options go with it, so remote workers report where local ones do. */
#ifndef PBL_TEST_SSHD_FIXTURE_H
#define PBL_TEST_SSHD_FIXTURE_H

#include <stdbool.h>

#define PBL_TEST_SSHD "/usr/sbin/sshd"

typedef struct {
  int pid; /* sshd's, 0: not running */
  char dir[64];
  char key[96];
  char port[16];
  const char *argv[24]; /* ssh ... 127.0.0.1, NULL: a launcher */
} pbl_test_sshd;

/* Whether sshd is installed; if not, prints why the caller skips. */
bool pbl_test_sshd_available(void);
/* Starts sshd and waits until it listens; fills s->argv. Fails the test
 * if it cannot. */
void pbl_test_sshd_start(pbl_test_sshd *s);
/* Stops the listener (its sessions end with their workers) and removes
 * the directory. */
void pbl_test_sshd_stop(pbl_test_sshd *s);
/* s->argv followed by more (NULL-terminated) into out (room for 32). */
void pbl_test_sshd_argv(const pbl_test_sshd *s, const char **out, ...);

#endif
