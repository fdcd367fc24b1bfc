#!/bin/sh
# Runs every example built in the build directory given (default: build).
set -e
dir=${1:-build}/examples
for exe in "$dir"/example-*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  echo "== ${exe##*/}"
  "$exe"
done
