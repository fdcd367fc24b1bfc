#!/bin/sh
# Draws throughput against workers from bench-scale's data into an SVG
# (gnuplot, Debian's gnuplot-nox): one panel per task size, one line per
# kind (raw uv_queue_work, pbl_thread, thread pool, process pool) and
# producer count p (solid: the first count, dashed: the others), and, for
# sized tasks, the dotted line a worker per CPU would give (w x 1 s / us).
# Both axes are logarithmic: at 0 us the kinds lie two orders of magnitude
# apart, and on log axes perfect scaling is a slope of one at every size.
#
#   bench/plot-scale.sh DATA OUT.svg [TITLE]
#       from a file written by `bench-scale --data=DATA`
#   bench/plot-scale.sh --run BUILD_DIR OUT.svg
#       runs BUILD_DIR/bench/bench-scale first (BENCH_SCALE_* apply)
set -eu
if [ "${1:-}" = --run ]; then
  build=$2 out=$3
  data=$(mktemp)
  data_tmp=$data
  "$build/bench/bench-scale" --data="$data"
  title="$(nproc) CPUs"
else
  data=$1 out=$2 title=${3:-}
fi
command -v gnuplot >/dev/null || {
  echo "plot-scale: gnuplot not found (apt-get install gnuplot-nox)" >&2
  exit 77
}
blocks=$(mktemp)
script=$(mktemp)
trap 'rm -f "$blocks" "$script" ${data_tmp:-}' EXIT

kinds="raw thread pool-thread pool-process"
sizes=$(awk '!/^#/ && NF { print $1 }' "$data" | sort -nu)
prods=$(awk '!/^#/ && NF { print $3 }' "$data" | sort -nu)
nsizes=$(echo "$sizes" | wc -l)
first_p=$(echo "$prods" | head -n 1)

# One block per (size, kind, producers), in that order, for `index`.
for us in $sizes; do
  for kind in $kinds; do
    for p in $prods; do
      awk -v us="$us" -v k="$kind" -v p="$p" \
        '!/^#/ && $1 == us && $4 == k && $3 == p { print $2, $5 }' "$data" |
        sort -n
      printf '\n\n'
    done
  done
done >"$blocks"

{
  cat <<GP
set terminal svg size $((420 * nsizes)),640 dynamic font "sans,11" noenhanced
set output "$out"
set multiplot layout 1,$nsizes title "Throughput against workers${title:+ ($title)}"
set logscale x 2
set logscale y
set xlabel "workers"
set ylabel "tasks per second"
set grid
set key below font ",10"
set bmargin 14 # the same in every panel, whatever its key: panels align
GP
  i=0
  for us in $sizes; do
    echo "set title \"tasks of $us us of CPU\""
    sep="plot "
    if [ "$us" -gt 0 ]; then
      echo "plot [1:*] x * 1e6 / $us with lines dt 3 lc rgb 'gray40' title 'a CPU per worker', \\"
      sep="     "
    fi
    c=1
    for kind in $kinds; do
      case $kind in
      raw) label="raw uv_queue_work" ;;
      thread) label="pbl_thread" ;;
      pool-thread) label="thread pool" ;;
      pool-process) label="process pool" ;;
      esac
      for p in $prods; do
        dt=1
        [ "$p" = "$first_p" ] || dt=2
        echo "${sep}\"$blocks\" index $i with linespoints lc $c dt $dt lw 2 pt $((c + 3)) title \"$label, p=$p\", \\"
        sep="     "
        i=$((i + 1))
      done
      c=$((c + 1))
    done
    echo "     1/0 notitle" # ends the list each line above continues
  done
  echo "unset multiplot"
} >"$script"
gnuplot "$script"
echo "plot-scale: wrote $out"
