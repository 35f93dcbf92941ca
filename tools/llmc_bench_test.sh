#!/usr/bin/env bash
# llmc_bench.py --cpu_smoke with the trainer on the CPU and a stand-in for
# llm.c (testdata/fake_llmc.sh): the probe picks the largest B both run, the
# table carries llm.c's per-step times as printed, the ratios and the
# closing count, and a failing system or bad flag is reported as such.
# Usage: llmc_bench_test.sh LLMC_BENCH_PY TRAIN FAKE_LLMC
set -uo pipefail
script="$1"; train="$2"; fake="$3"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
common=(--cpu_smoke --train="$train" --T=32 --steps=3 --warmup=1 --rounds=2)

# The stand-in runs up to B=3 only: of 8,4,3,2 the probe must settle on 3.
FAKE_LLMC_MAX_B=3 python3 "$script" "${common[@]}" --llmc="$fake" --batches=2,max \
  --max_candidates=8,4,3,2 --out="$tmp/ok" > "$tmp/ok.txt" 2>&1
rc=$?
cat "$tmp/ok.txt"
[[ $rc -eq 0 ]] || fail "exit status $rc"
grep -q "probe B=4 llm.c r0: fails" "$tmp/ok.txt" || fail "B=4 should fail the llm.c probe"
grep -q "probe B=3 zerotrain: runs" "$tmp/ok.txt" || fail "B=3 should pass the zerotrain probe"
# fake_llmc.sh: step s > 1 of B takes B * 2.5 ms (r0) or B * 2.6 ms (r1)
# plus (s % 3) * 0.01; the median of steps 2-4 is B * 2.5 + 0.01.
grep -qE "^llm\.c r0 +3 +[0-9]+ +7\.51 " "$tmp/ok.txt" || fail "llm.c r0 at B=3: wanted 7.51 ms/step"
grep -qE "^llm\.c r1 +2 +[0-9]+ +5\.21 .* 1\.000x +0\.962x$" "$tmp/ok.txt" ||
  fail "llm.c r1 at B=2: wanted 5.21 ms/step and ratios 1.000x / 0.962x"
grep -qE "^zerotrain +3 +[0-9]+ " "$tmp/ok.txt" || fail "no zerotrain row at B=3"
grep -qx "6 passed, 0 failed" "$tmp/ok.txt" || fail "wanted '6 passed, 0 failed'"
python3 -c "
import json, sys
rows = json.load(open('$tmp/ok/llmc_bench.json'))['rows']
assert len(rows) == 6 and all(r['ok'] for r in rows), rows
z = [r for r in rows if r['system'] == 'zerotrain']
assert all(10.0 < r['last_loss'] < 11.5 for r in z), z  # random tokens: ~ln(50257)
" || fail "llmc_bench.json"

# A system that fails every run: reported per row, exit 1.
python3 "$script" "${common[@]}" --llmc=/bin/false --batches=2 --out="$tmp/bad" \
  > "$tmp/bad.txt" 2>&1
rc=$?
tail -5 "$tmp/bad.txt"
[[ $rc -eq 1 ]] || fail "failing llm.c: exit status $rc, wanted 1"
grep -qx "1 passed, 2 failed" "$tmp/bad.txt" || fail "failing llm.c: wanted '1 passed, 2 failed'"

# No large B runs on both: the run fails rather than reporting only B=2.
FAKE_LLMC_MAX_B=3 python3 "$script" "${common[@]}" --llmc="$fake" --batches=2,max \
  --max_candidates=8,4 --rounds=1 --out="$tmp/noprobe" > "$tmp/noprobe.txt" 2>&1
rc=$?
tail -3 "$tmp/noprobe.txt"
[[ $rc -eq 1 ]] || fail "no probe fits: exit status $rc, wanted 1"
grep -q "FAILED: no --max_candidates B ran on both" "$tmp/noprobe.txt" ||
  fail "no probe fits: not reported"

# Bad input: exit 2 naming the culprit.
python3 "$script" "${common[@]}" --llmc="$tmp/no_such_llmc" > "$tmp/missing.txt" 2>&1
rc=$?
[[ $rc -eq 2 ]] || fail "missing llm.c binary: exit status $rc, wanted 2"
grep -q "no_such_llmc" "$tmp/missing.txt" || fail "missing llm.c binary not named"

((fails == 0)) && echo PASS
exit $((fails > 0))
