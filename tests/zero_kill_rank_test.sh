#!/usr/bin/env bash
# A rank killed mid-step (SIGKILL in the middle of backward) makes the other
# ranks exit non-zero with an error naming the collective, within the
# configured timeout, instead of hanging.
set -uo pipefail
train="$1"
mpirun_sh="$2"
MPIRUN_TEST_SOURCED=1 source "$mpirun_sh"
fail() { echo "FAIL: $*"; exit 1; }
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
for stage in 0 3; do
  marker="$tmp/kill_stage_$stage"
  start=$(date +%s)
  # Keep the job alive when a rank dies, so the survivors' own timeout is
  # what ends them (a default mpirun kills them at once). Open MPI's mpirun
  # itself may then linger after a rank died of a signal, so the test
  # watches the ranks, not mpirun.
  ZEROTRAIN_TEST_KILL_RANK=1 ZEROTRAIN_TEST_KILL_AT_STEP=3 \
    timeout --kill-after=5 90 "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 \
    -x ZEROTRAIN_TEST_KILL_RANK -x ZEROTRAIN_TEST_KILL_AT_STEP -np 3 "$train" \
    --set=model.n_layer=1 --set=model.n_embd=32 --set=model.n_head=2 --set=eval.batches=0 \
    --set=batch.micro_batch_size=2 --set=batch.seq_len=16 --set=model.max_seq_len=16 \
    --set=max_steps=20 --set=zero.stage=STAGE_$stage --set=zero.comm_timeout_s=3 \
    --set=checkpoint.dir="$marker" >"$marker.log" 2>&1 &
  job=$!
  sleep 1
  while pgrep -f -- "^$train .*checkpoint.dir=$marker" >/dev/null && (( $(date +%s) - start < 60 )); do
    sleep 0.5
  done
  elapsed=$(( $(date +%s) - start ))
  pgrep -f -- "^$train .*checkpoint.dir=$marker" >/dev/null && fail "stage $stage: ranks still running after ${elapsed}s"
  kill "$job" 2>/dev/null
  wait "$job" 2>/dev/null || true
  out=$(cat "$marker.log")
  echo "$out" | grep -E "killing|error" | head -6
  grep -q "killing itself mid-step 3" <<<"$out" || fail "stage $stage: the hook did not fire"
  for r in 0 2; do
    grep -E "^\[1,$r\]<stderr>:train: error: (DEADLINE_EXCEEDED|UNAVAILABLE): .* on rank $r of 3" \
      <<<"$out" >/dev/null || fail "stage $stage: rank $r did not report the dead peer"
  done
  echo "stage $stage: survivors exited with an error within ${elapsed}s (timeout 3s)"
done
echo PASS
