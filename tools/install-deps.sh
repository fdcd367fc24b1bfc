#!/bin/sh
# Installs what building and testing pebble needs, from Debian's packages:
# a compiler, meson, ninja, pkg-config, libuv and cmocka, plus any package
# named on the command line (openssh-server, and slurmctld slurmd munge
# slurm-client: the remote test suite runs workers through a real sshd
# and a one-node Slurm cluster it starts). Uses sudo unless run as root.
set -eu
if [ "$(id -u)" -eq 0 ]; then
  as_root=
else
  as_root=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$as_root apt-get update
$as_root apt-get install -y --no-install-recommends \
  gcc libc6-dev meson ninja-build pkg-config libuv1-dev libcmocka-dev "$@"
