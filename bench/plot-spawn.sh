#!/bin/sh
# Draws process starts per second against the parent's heap, pebble's
# three kinds of start and raw uv_spawn, into an SVG (gnuplot, Debian's
# gnuplot-nox). Log scale: raw uv_spawn falls by two orders of magnitude.
#
#   bench/plot-spawn.sh DATA OUT.svg [TITLE]
#       from a file written by `bench-spawn --data=DATA`
#   bench/plot-spawn.sh --run BUILD_DIR OUT.svg [SIZES]
#       runs build/bench/bench-spawn first (SIZES: 0,1,4,8)
set -eu
if [ "${1:-}" = --run ]; then
  build=$2 out=$3 sizes=${4:-0,1,4,8}
  data=$(mktemp)
  data_tmp=$data
  "$build/bench/bench-spawn" --sizes="$sizes" --data="$data"
  title="$(nproc) CPUs"
else
  data=$1 out=$2 title=${3:-}
fi
# One block a kind, in this order, for gnuplot's `index`.
blocks=$(mktemp)
trap 'rm -f "$blocks" ${data_tmp:-}' EXIT
for kind in task command respawn raw-self raw-true; do
  awk -v k="$kind" '$2 == k { print $1, $3 }' "$data"
  printf '\n\n'
done >"$blocks"
command -v gnuplot >/dev/null || {
  echo "plot-spawn: gnuplot not found (apt-get install gnuplot-nox)" >&2
  exit 77
}
gnuplot <<GP
set terminal svg size 760,440 dynamic font "sans,12" noenhanced
set output "$out"
set title "Process starts from a large parent${title:+ ($title)}"
set xlabel "parent heap, GiB (touched, 4 KiB pages)"
set ylabel "sequential starts per second"
set logscale y
set yrange [1:*]
set key outside right
set grid ytics
plot "$blocks" index 0 with linespoints lw 2 title "pebble: one-shot task", \
     "$blocks" index 1 with linespoints lw 2 title "pebble: command", \
     "$blocks" index 2 with linespoints lw 2 title "pebble: pool respawn", \
     "$blocks" index 3 with linespoints dt 2 lw 2 title "raw uv_spawn (worker)", \
     "$blocks" index 4 with linespoints dt 2 lw 2 title "raw uv_spawn (true)"
GP
echo "plot-spawn: wrote $out"
