#!/usr/bin/env bash
# A rank SIGKILLed in the middle of a 3-rank save (a shard write on rank 1;
# rank 0 just before and just after its commit, the rename onto `latest`):
# the job must end (no hang), `latest` must name an intact checkpoint (the
# previous one until the commit, the new one after it), resuming on the same
# 3 ranks must give the uninterrupted run's losses bit for bit, resuming on 2
# ranks at another stage must work too, and the resumed run's saves must
# clean up what the crash left behind.
# Usage: multirank_kill_test.sh MPIRUN_TEST_SH TRAIN CKPT
set -uo pipefail
mpirun_sh="$1" train="$2" ckpt="$3"
MPIRUN_TEST_SOURCED=1 source "$mpirun_sh"
set +e  # the sourced script sets -e; failing runs are expected here
fail() { echo "FAIL: $*"; exit 1; }
dir="${TEST_TMPDIR:-$(mktemp -d)}/multirank_kill"
rm -rf "$dir" && mkdir -p "$dir"

steps=6
common=(--set=model.n_layer=2 --set=model.n_embd=32 --set=model.n_head=2
  --set=eval.batches=0 --set=batch.micro_batch_size=2 --set=batch.seq_len=16
  --set=model.max_seq_len=16 --set=max_steps=$steps --set=zero.comm_timeout_s=10
  --set=logging.progress_bar=NEVER --set=logging.interval=1 --set=checkpoint.interval=2
  --set=checkpoint.keep=1)

# run NAME NP STAGE [ENV=VALUE ...] -- [TRAIN ARGS...]: every rank writes its
# save trace to $dir/NAME.trace.RANK; rank 0 its metrics to $dir/NAME.jsonl.
run() {
  local name="$1" np="$2" stage="$3"; shift 3
  local envs=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do envs+=("$1"); shift; done
  shift
  local xs=()
  for e in "${envs[@]}"; do xs+=(-x "$e"); done
  env "${envs[@]}" timeout --kill-after=5 120 "${MPIRUN[@]}" "${xs[@]}" -np "$np" \
    bash -c 'ZT_CKPT_TRACE="$0.trace.$OMPI_COMM_WORLD_RANK" exec "$1" "${@:2}"' \
    "$dir/$name" "$train" "${common[@]}" --set=zero.stage=STAGE_$stage \
    --set=logging.metrics_jsonl="$dir/$name.jsonl" "$@" > "$dir/$name.log" 2>&1
}

# losses FILE: "step loss" lines, the loss exactly as written.
losses() { sed -E 's/^\{"step":([0-9]+),"loss":([^,]+),.*/\1 \2/' "$1"; }

# The uninterrupted reference, traced: the op numbers of the second save.
run ref 3 2 -- --set=checkpoint.dir="$dir/ref_ckpt" || { cat "$dir/ref.log"; fail "reference run"; }
[[ $(losses "$dir/ref.jsonl" | wc -l) -eq $steps ]] || fail "reference logged $(wc -l < "$dir/ref.jsonl") steps"
commit=$(awk '$1 == 2 && $3 == "rename" && $4 ~ /\/latest$/ {print $2; exit}' "$dir/ref.trace.0")
[[ -n "$commit" ]] || fail "no rename onto latest in rank 0's second save"
write=$(awk '$1 == 2 && $3 == "write" && $4 ~ /shard_00001/ {n++; if (n == 2) {print $2; exit}}' \
  "$dir/ref.trace.1")
[[ -n "$write" ]] || fail "rank 1's second save has fewer than 2 shard writes"
echo "rank 0 commits at op $commit of save 2; rank 1's second shard write is op $write"

check_case() {
  local name="$1" rank="$2" op="$3" want="$4"
  local root="$dir/$name"
  local t0=$SECONDS
  run "$name" 3 2 ZT_CKPT_FAULT=kill@2:$op ZT_CKPT_FAULT_RANK=$rank -- \
    --set=checkpoint.dir="$root"
  local rc=$?
  # mpirun itself exits 137 for a rank killed by SIGKILL: tell a hang by
  # the time it took (the bound in run() is 120 s).
  ((SECONDS - t0 < 110)) || fail "$name: the job hung"
  [[ $rc -ne 0 ]] || fail "$name: the job succeeded although rank $rank was killed"
  grep -q "signal 9" "$dir/$name.log" || { cat "$dir/$name.log"; fail "$name: no rank died of SIGKILL"; }
  [[ "$(cat "$root/latest")" == "$want" ]] || fail "$name: latest is $(cat "$root/latest"), want $want"
  "$ckpt" verify "$root" > /dev/null || fail "$name: $want does not verify"

  # Same ranks and stage: bit-exact continuation.
  run "${name}_resume" 3 2 -- --set=checkpoint.dir="$root" --resume ||
    { cat "$dir/${name}_resume.log"; fail "$name: resume on 3 ranks"; }
  local from="${want#step_}"
  diff <(losses "$dir/ref.jsonl" | awk -v f="$from" '$1 > f') <(losses "$dir/${name}_resume.jsonl") ||
    fail "$name: resumed losses differ from the uninterrupted run's"
  if ls "$root" | grep -qE '\.tmp-|\.deleting'; then
    fail "$name: leftovers after the resumed run's saves: $(ls "$root")"
  fi
  echo "$name: latest $want, resumed bit-exact from step $from"
}

check_case kill_rank1_shard_write 1 "$write" step_2
check_case kill_rank0_before_commit 0 "$commit" step_2
check_case kill_rank0_after_commit 0 $((commit + 1)) step_4

# After a crash, the checkpoint also loads on another rank count and stage.
root="$dir/kill_rank1_shard_write_again"
run kill_again 3 2 ZT_CKPT_FAULT=kill@2:$write ZT_CKPT_FAULT_RANK=1 -- --set=checkpoint.dir="$root"
[[ "$(cat "$root/latest")" == "step_2" ]] || fail "second crash: latest is $(cat "$root/latest")"
run reshard 2 3 -- --set=checkpoint.dir="$root" --resume ||
  { cat "$dir/reshard.log"; fail "resume on 2 ranks at stage 3"; }
[[ "$(losses "$dir/reshard.jsonl" | head -1 | cut -d' ' -f1)" == "3" ]] ||
  fail "the 2-rank resume did not start at step 3"
[[ "$(losses "$dir/reshard.jsonl" | wc -l)" -eq $((steps - 2)) ]] || fail "the 2-rank resume did not finish"
echo "resumed on 2 ranks at stage 3 after the crash"
echo PASS
