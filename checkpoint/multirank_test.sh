#!/usr/bin/env bash
# Saves on N ranks at stage S, resumes bit-exactly on the same N and S, and
# loads on M ranks at stage T (resharding; see multirank_main.cc).
# Usage: multirank_test.sh MPIRUN_TEST_SH MULTIRANK_MAIN N S M T
set -euo pipefail
mpirun_sh="$1" main="$2" n="$3" s="$4" m="$5" t="$6"
dir="${TEST_TMPDIR:-$(mktemp -d)}/reshard_${n}_${s}_${m}_${t}"
rm -rf "$dir" && mkdir -p "$dir"
echo "== save on $n rank(s) at stage $s"
"$mpirun_sh" "$n" "$main" save "$dir" "$s"
echo "== resume on $n rank(s) at stage $s"
"$mpirun_sh" "$n" "$main" resume "$dir" "$s"
echo "== load on $m rank(s) at stage $t"
"$mpirun_sh" "$m" "$main" load "$dir" "$t"
echo PASS
