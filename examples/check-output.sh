#!/bin/sh
# check-output.sh EXE PATTERN...: runs EXE and checks that its output has
# exactly one line per PATTERN (an extended regex for the whole line), in
# any order: each pattern takes a line of its own.
exe=$1
shift
out=$("$exe") || { echo "$exe failed"; exit 1; }
printf '%s\n' "$out" | awk '
  BEGIN { for (i = 1; i < ARGC; i++) want[i] = ARGV[i]; n = ARGC - 1; ARGC = 1 }
  { line[NR] = $0 }
  END {
    if (NR != n) { printf "want %d lines, got %d\n", n, NR; bad = 1 }
    for (i = 1; i <= n; i++) {
      found = 0
      for (j = 1; j <= NR; j++)
        if (!used[j] && line[j] ~ ("^(" want[i] ")$")) { used[j] = 1; found = 1; break }
      if (!found) { print "missing: " want[i]; bad = 1 }
    }
    if (bad) { for (j = 1; j <= NR; j++) print "  | " line[j]; exit 1 }
  }' "$@"
