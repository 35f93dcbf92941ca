#!/usr/bin/env bash
# One rank's shard write fails (injected ENOSPC on rank 1 of 3): every rank
# must exit with an error (rank 1 naming its file, the others naming rank 1),
# no rank may hang, and `latest` must still name the previous, intact
# checkpoint.
# Usage: multirank_fail_test.sh MPIRUN_TEST_SH TRAIN CKPT
set -uo pipefail
mpirun_sh="$1" train="$2" ckpt="$3"
MPIRUN_TEST_SOURCED=1 source "$mpirun_sh"
fail() { echo "FAIL: $*"; exit 1; }
dir="${TEST_TMPDIR:-$(mktemp -d)}/multirank_fail"
rm -rf "$dir" && mkdir -p "$dir"
# Keep the job alive when a rank exits non-zero, so every rank reports
# (each prints its own exit status). Rank 1's second save: operation 1 creates its shard file, 2 is the first
# write into it.
ZT_CKPT_FAULT=fail@2:2 ZT_CKPT_FAULT_RANK=1 \
  timeout --kill-after=5 120 "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 \
  -x ZT_CKPT_FAULT -x ZT_CKPT_FAULT_RANK -np 3 \
  bash -c '"$0" "$@"; echo "exit status $?"' "$train" \
  --set=model.n_layer=2 --set=model.n_embd=32 --set=model.n_head=2 \
  --set=eval.batches=0 --set=batch.micro_batch_size=2 --set=batch.seq_len=16 \
  --set=model.max_seq_len=16 --set=max_steps=6 --set=zero.stage=STAGE_2 \
  --set=zero.comm_timeout_s=30 --set=logging.progress_bar=NEVER \
  --set=checkpoint.dir="$dir/ckpt" --set=checkpoint.interval=2 >"$dir/log" 2>&1
rc=$?
cat "$dir/log" | grep -E "error|checkpoint" || true
[[ $rc -ne 124 && $rc -ne 137 ]] || fail "the job hung"
for r in 0 1 2; do
  grep -qE "^\[1,$r\]<stdout>:exit status 1$" "$dir/log" || fail "rank $r did not exit with status 1"
done
grep -qE '^\[1,1\]<stderr>:train: error: RESOURCE_EXHAUSTED: write \(injected fault\) .*/step_4.tmp-w3/shard_00001.bin' \
  "$dir/log" || fail "rank 1 did not report its failed write"
for r in 0 2; do
  grep -qE "^\[1,$r\]<stderr>:train: error: RESOURCE_EXHAUSTED: writing checkpoint step 4 failed on rank 1" \
    "$dir/log" || fail "rank $r did not report rank 1's failure"
done
[[ "$(cat "$dir/ckpt/latest")" == "step_2" ]] || fail "latest is $(cat "$dir/ckpt/latest")"
"$ckpt" verify "$dir/ckpt" || fail "the previous checkpoint does not verify"
echo PASS
