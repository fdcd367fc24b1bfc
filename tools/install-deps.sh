#!/bin/sh
# Installs what building and testing pebble needs, from Debian's packages:
# a compiler, meson, ninja, pkg-config, libuv and cmocka; for the example
# HTTP server (examples/httpd/, test-httpd) h2o's libuv build with what it
# links but does not depend on (OpenSSL's and zlib's headers), and wrk for
# its benchmark; plus any package named on the command line
# (openssh-server: the remote test suite runs workers through a real
# sshd; slurmctld slurmd munge slurm-client: a one-node Slurm cluster
# test-slurm starts). Uses sudo unless run as root.
set -eu
if [ "$(id -u)" -eq 0 ]; then
  as_root=
else
  as_root=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$as_root apt-get update
$as_root apt-get install -y --no-install-recommends \
  gcc libc6-dev meson ninja-build pkg-config libuv1-dev libcmocka-dev \
  libh2o-dev libssl-dev zlib1g-dev wrk "$@"
