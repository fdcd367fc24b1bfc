#!/bin/sh
# sphinx.sh SPHINX_BUILD BUILDER SRCDIR OUTDIR DOCTREES: one Sphinx build
# into a fresh OUTDIR (no page left over from a name that is gone), with
# warnings as errors and every reference resolved. -E reads every source
# afresh (a few seconds): Sphinx 5.3's incremental build loses the
# enumerators of a named enum from the enclosing scope.
set -e
rm -rf "$4"
"$1" -E -W --keep-going -n -q -b "$2" -d "$5" "$3" "$4"
