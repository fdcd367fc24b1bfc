#!/bin/sh
# The include graph of src/ by folder, and the check that its arrows point
# one way: a file includes only headers of its own folder or of a lower
# layer. Layers, lowest first (a folder may use only those before it, and
# thread and process never use each other):
#   core  <-  thread, process  <-  pool  <-  process-pool
#
#   tools/include-graph.sh            check; exit 1 on an upward arrow
#   tools/include-graph.sh --dot      the graph of files, folders as
#                                     clusters, in Graphviz's dot language
#   tools/include-graph.sh --folders  the graph of folders, each arrow
#                                     labelled with its number of includes
#   tools/include-graph.sh --svg DIR  both drawn by dot (Debian's graphviz)
#                                     into DIR/include-graph.svg (folders)
#                                     and DIR/include-graph-files.svg
set -eu
cd "$(dirname "$0")/../src"

rank() {
  case $1 in
  core) echo 0 ;;
  thread | process) echo 1 ;;
  pool) echo 2 ;;
  process-pool) echo 3 ;;
  *) echo 99 ;;
  esac
}

# "from to" for every #include "..." of src/, both as paths under src/.
edges() {
  for f in */*.c */*.h; do
    dir=${f%%/*}
    sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | while read -r inc; do
      case $inc in
      */*) echo "$f $inc" ;;        # named with its folder
      *) echo "$f $dir/$inc" ;;     # beside the file
      esac
    done
  done
}

check() {
  bad=0
  edges | {
    while read -r from to; do
      a=${from%%/*} b=${to%%/*}
      [ "$a" = "$b" ] && continue
      ra=$(rank "$a") rb=$(rank "$b")
      if [ "$ra" -le "$rb" ]; then
        echo "upward or sideways include: $from -> $to ($a may not use $b)"
        bad=1
      fi
    done
    exit $bad
  }
}

folder_graph() {
  echo 'digraph layers {'
  echo '  rankdir=TB; node [shape=box, style=rounded, fontname="sans"];'
  echo '  edge [fontname="sans", fontsize=10];'
  edges | while read -r from to; do
    [ "${from%%/*}" != "${to%%/*}" ] && echo "${from%%/*} ${to%%/*}"
  done | sort | uniq -c | while read -r n a b; do
    echo "  \"$a/\" -> \"$b/\" [label=\"$n\"];"
  done
  echo '}'
}

dot_graph() {
  echo 'digraph includes {'
  echo '  rankdir=LR; node [shape=box, fontname="sans", fontsize=10];'
  echo '  edge [color="#777777"]; compound=true; newrank=true;'
  for d in core thread process pool process-pool; do
    echo "  subgraph \"cluster_$d\" { label=\"$d/\"; fontname=\"sans\"; style=rounded;"
    for f in "$d"/*.c "$d"/*.h; do
      [ -e "$f" ] && echo "    \"$f\" [label=\"${f#*/}\"];"
    done
    echo '  }'
  done
  edges | while read -r from to; do
    [ -e "$to" ] && echo "  \"$from\" -> \"$to\";"
  done
  echo '}'
}

case ${1:-} in
--dot) dot_graph ;;
--folders) folder_graph ;;
--svg)
  command -v dot >/dev/null || {
    echo "include-graph: dot not found (apt-get install graphviz)" >&2
    exit 77
  }
  out=$2
  case $out in /*) ;; *) out=$OLDPWD/$out ;; esac
  folder_graph | dot -Tsvg -o "$out/include-graph.svg"
  dot_graph | dot -Tsvg -o "$out/include-graph-files.svg"
  check
  echo "include-graph: wrote $2/include-graph.svg and include-graph-files.svg;" \
    "every arrow points down"
  ;;
'') check && echo "include-graph: every arrow points down (src/)" ;;
*) echo "usage: $0 [--dot | --folders | --svg DIR]" >&2; exit 2 ;;
esac
