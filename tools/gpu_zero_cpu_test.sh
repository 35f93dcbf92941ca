#!/usr/bin/env bash
# gpu_zero.py --device=CPU with the trainer: every check passes, the table
# and the closing count are printed, and a broken run is reported as one.
# Usage: gpu_zero_cpu_test.sh GPU_ZERO_PY TRAIN
set -uo pipefail
script="$1"
train="$2"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

python3 "$script" --device=CPU --train="$train" --dtypes=fp32,bf16 --steps=4 \
  --out="$tmp/ok" > "$tmp/ok.txt" 2>&1
rc=$?
cat "$tmp/ok.txt"
[[ $rc -eq 0 ]] || fail "exit status $rc"
# 2 dtypes x 4 stages x 2 world sizes = 16 runs plus the 2x batch run: a
# backend check each, a memory check for the 16, 12 stage comparisons, 1
# batch comparison.
grep -qx "46 passed, 0 failed" "$tmp/ok.txt" || fail "wanted '46 passed, 0 failed'"
grep -qE "^2 +bf16 +3 +mpi " "$tmp/ok.txt" || fail "no table row for world 2, bf16, stage 3"
grep -q '"failed": 0' "$tmp/ok/summary.json" || fail "summary.json does not say 0 failed"

# A trainer that fails: every run is reported, the count says so, exit 1.
python3 "$script" --device=CPU --train=/bin/false --dtypes=fp32 --stages=0 --steps=2 \
  --out="$tmp/bad" > "$tmp/bad.txt" 2>&1
rc=$?
tail -3 "$tmp/bad.txt"
[[ $rc -eq 1 ]] || fail "broken trainer: exit status $rc, wanted 1"
grep -qx "0 passed, 3 failed" "$tmp/bad.txt" || fail "broken trainer: wanted '0 passed, 3 failed'"

((fails == 0)) && echo PASS
exit $((fails > 0))
