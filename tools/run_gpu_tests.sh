#!/usr/bin/env bash
# Runs every gpu test of the bundle and ends with "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/env.sh"
passed=0; failed=0; failed_names=()
while read -r t; do
  [[ -z "$t" ]] && continue
  echo "=== $t"
  if "$bundle/bin/$t" "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$t"); fi
done < "$bundle/tests/gpu_tests.txt"
((failed)) && echo "failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
((failed == 0))
