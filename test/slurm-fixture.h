/* A one-node Slurm cluster of its own, for the tests of workers started
 * through srun (test-slurm.c): Debian's munged, slurmctld and slurmd,
 * with a throwaway munge key, slurm.conf, state and spool in a directory
 * of its own under /tmp, on free loopback ports.
 *
 * The daemons run under a keeper, a shell that is not this program's
 * descendant (started through a double fork, before the first test
 * setup marks the environment), so the helpers' "nothing left" checks
 * see the workers and the srun processes but not the cluster. The keeper
 * reads a pipe whose other end only this program holds: when the program
 * stops the cluster, or dies, the keeper stops the daemons and removes
 * the directory. slurmd starts job steps as their user, so the daemons
 * run as root: this program as root, or through `sudo -n` where that
 * needs no password; else the cluster is unavailable. */
#ifndef PBL_TEST_SLURM_FIXTURE_H
#define PBL_TEST_SLURM_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char dir[64];   /* the cluster's directory, "" once removed */
  char node[64];  /* this host's short name, the node's */
  char conf[96];  /* dir/slurm.conf, SLURM_CONF while it runs */
  int keeper;     /* the keeper's pid, 0: none */
  int daemons[3]; /* munged, slurmctld, slurmd */
  int keeper_fd;  /* our end of the keeper's pipe, -1: closed */
  char why[1024]; /* why it could not start (unavailable or failed) */
} pbl_test_slurm;

/* Starts the cluster and waits, bounded, until its node is idle; sets
 * SLURM_CONF. Returns false with s->why filled if it cannot run here:
 * not installed, no root, or a daemon that fails or never comes up (its
 * log's last lines say why). Not from a test: before the first setup. */
bool pbl_test_slurm_start(pbl_test_slurm *s);
/* Waits, bounded, until the cluster has no job left, then stops the
 * daemons and waits until they and the directory are gone; unsets
 * SLURM_CONF. Returns false, printing what, if anything was left. */
bool pbl_test_slurm_stop(pbl_test_slurm *s);

#endif
