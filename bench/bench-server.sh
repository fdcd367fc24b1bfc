#!/usr/bin/env bash
# bench-server.sh HTTPD: the example server (examples/httpd/) under wrk on
# loopback, in one run (meson test -C build --benchmark server):
#
#  (a) /fast's p50/p99 alone, beside /render saturating the process pool,
#      and beside the same work done on the loop thread (/render-inline):
#      ratio server-fast-p99-inline-vs-pool (inline p99 / pool p99; and -p50-);
#  (b) /render's req/s against the pool's ideal (workers x 1000/ms), and
#      against a process started per request (/render-oneshot):
#      ratio server-render-vs-ideal, server-render-pool-vs-process-per-request;
#  (c) the same /render load with one client crashing workers (/crash):
#      ratio server-render-crash-vs-calm (its req/s over (b)'s), and the
#      same again on a server without spare workers:
#      ratio server-render-crash-spares-vs-none;
#  (d) an interactive client's p99 (/render, priority 10) beside a flood of
#      /report (priority -10), then with every priority 0 (--no-priorities):
#      ratio server-interactive-p99-none-vs-prio (and -p50-).
#
# Prints a table and `ratio <name> <value>` lines (above 1: pebble, or
# pebble's feature, better). Exits 77 (skipped), saying why, without wrk or
# without the httpd binary. Settings from the environment:
#   BENCH_SERVER_SECONDS   each wrk run (default 5)
#   BENCH_SERVER_MS        /render's CPU time (default 10)
#   BENCH_SERVER_WORKERS   process pool workers (default: CPUs)
#   BENCH_SERVER_SPARES    spare_workers (default 1)
#   BENCH_SERVER_CRASH_DELAY_MS  the crashing client's pause between
#                          requests (default 20: up to ~50 crashes/s)
set -euo pipefail

httpd=${1:-}
if ! command -v wrk > /dev/null; then
  echo "skipped: wrk not found (apt-get install wrk)"
  exit 77
fi
if [ -z "$httpd" ] || [ ! -x "$httpd" ]; then
  echo "skipped: the httpd example was not built (no libh2o-dev?): '$httpd'"
  exit 77
fi

secs=${BENCH_SERVER_SECONDS:-5}
ms=${BENCH_SERVER_MS:-10}
workers=${BENCH_SERVER_WORKERS:-$(nproc)}
spares=${BENCH_SERVER_SPARES:-1}
crash_delay=${BENCH_SERVER_CRASH_DELAY_MS:-20}

tmp=$(mktemp -d)
spid=
cleanup() {
  if [ -n "$spid" ]; then
    kill -KILL "$spid" 2> /dev/null || true
    wait "$spid" 2> /dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Starts the server; sets port. Its first stdout line names the port: read
# through a fifo, so this waits for that line, not for a time.
start_server() {
  mkfifo "$tmp/out"
  "$httpd" --port 0 --workers "$workers" --threads 1 --spares "$spares" \
    --queue-limit 1024 --render-timeout-ms 30000 --queue-timeout-ms 0 \
    "$@" > "$tmp/out" 2> "$tmp/err" &
  spid=$!
  exec 3< "$tmp/out"
  local line
  read -r line <&3
  exec 3<&-
  rm -f "$tmp/out"
  port=${line##*:}
}

stop_server() {
  kill -TERM "$spid"
  local st=0
  wait "$spid" || st=$?
  spid=
  if [ "$st" -ne 0 ]; then
    echo "httpd exited $st:"
    cat "$tmp/err"
    exit 1
  fi
}

# wrk_run NAME CONNS PATH [wrk args...]: writes wrk's report to $tmp/NAME.
wrk_run() {
  local name=$1 conns=$2 path=$3
  shift 3
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" \
    "http://127.0.0.1:$port$path" > "$tmp/$name"
}

# Background load for a little longer than a measurement.
load() {
  local conns=$1 path=$2
  shift 2
  wrk -t1 -c"$conns" -d"$((secs + 2))s" "$@" \
    "http://127.0.0.1:$port$path" > /dev/null &
  loadpid=$!
}

# field NAME rps|p50|p99|bad: from wrk's report, latencies in ms.
field() {
  awk -v want="$2" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      return v
    }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    END {
      if (want == "rps") print rps + 0
      else if (want == "p50") print p50 + 0
      else if (want == "p99") print p99 + 0
      else print bad + 0
    }' "$tmp/$1"
}

row() {
  printf '%-46s %9.1f %9.2f %9.2f %7d\n' "$2" "$(field "$1" rps)" \
    "$(field "$1" p50)" "$(field "$1" p99)" "$(field "$1" bad)"
}

# metric SERIES: its value in the running server's /metrics.
metric() {
  exec 4<> "/dev/tcp/127.0.0.1/$port"
  printf 'GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&4
  awk -v s="$1" '$1 == s { print $2 }' <&4
  exec 4<&-
}

div() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f\n", a / b; else print "nan" }'
}

cat > "$tmp/crash.lua" << EOF
function delay()
  return $crash_delay
end
EOF

conns=$((workers * 4))
echo "httpd: $workers workers, $spares spare(s), /render?ms=$ms, wrk ${secs}s a run, $(nproc) CPUs"

start_server
wrk -t1 -c"$conns" -d1s "http://127.0.0.1:$port/render?ms=$ms" > /dev/null # warm-up

# (a) the loop's responsiveness
wrk_run fast-alone 4 /fast
load "$conns" "/render?ms=$ms"
wrk_run fast-pool 4 /fast
wait "$loadpid"
load 2 "/render-inline?ms=$ms"
wrk_run fast-inline 4 /fast
wait "$loadpid"

# (b) throughput, (c) with a client crashing workers
wrk_run render-pool "$conns" "/render?ms=$ms"
wrk_run render-oneshot "$conns" "/render-oneshot?ms=$ms"
load 1 /crash -s "$tmp/crash.lua"
wrk_run render-crash "$conns" "/render?ms=$ms"
wait "$loadpid"
crashes=$(metric 'pebble_pool_tasks_total{pool="render",end="expired"}')
respawns=$(metric 'pebble_pool_respawned_total{pool="render"}')
stop_server
start_server --spares 0
wrk -t1 -c"$conns" -d1s "http://127.0.0.1:$port/render?ms=$ms" > /dev/null
load 1 /crash -s "$tmp/crash.lua"
wrk_run render-crash-nospare "$conns" "/render?ms=$ms"
wait "$loadpid"
stop_server

# (d) priorities: interactive beside a low-priority flood, then without
for mode in prio none; do
  if [ $mode = prio ]; then start_server; else start_server --no-priorities; fi
  load "$((workers * 8))" "/report?ms=$((ms * 2))"
  wrk_run "interactive-$mode" 2 "/render?ms=1"
  wait "$loadpid"
  stop_server
done

printf '\n%-46s %9s %9s %9s %7s\n' "" "req/s" "p50 ms" "p99 ms" "non-2xx"
row fast-alone "/fast alone"
row fast-pool "/fast beside /render on the pool"
row fast-inline "/fast beside /render-inline (on the loop)"
row render-pool "/render?ms=$ms on the pool"
row render-oneshot "/render-oneshot (a process per request)"
row render-crash "/render beside a client crashing workers"
row render-crash-nospare "  the same, --spares 0"
row interactive-prio "/render?ms=1 beside a /report flood"
row interactive-none "  the same, --no-priorities"
ideal=$((workers * 1000 / ms))
echo "ideal /render req/s: $ideal ($workers workers x 1000/$ms ms)"
echo "crashing client (one request every ${crash_delay} ms at most): $crashes workers died, $respawns respawned"
echo
echo "ratio server-fast-p99-inline-vs-pool $(div "$(field fast-inline p99)" "$(field fast-pool p99)")"
echo "ratio server-fast-p50-inline-vs-pool $(div "$(field fast-inline p50)" "$(field fast-pool p50)")"
echo "ratio server-render-vs-ideal $(div "$(field render-pool rps)" "$ideal")"
echo "ratio server-render-pool-vs-process-per-request $(div "$(field render-pool rps)" "$(field render-oneshot rps)")"
echo "ratio server-render-crash-vs-calm $(div "$(field render-crash rps)" "$(field render-pool rps)")"
echo "ratio server-render-crash-spares-vs-none $(div "$(field render-crash rps)" "$(field render-crash-nospare rps)")"
echo "ratio server-interactive-p99-none-vs-prio $(div "$(field interactive-none p99)" "$(field interactive-prio p99)")"
echo "ratio server-interactive-p50-none-vs-prio $(div "$(field interactive-none p50)" "$(field interactive-prio p50)")"
