#!/usr/bin/env bash
# Every GPU check of the bundle in one command, within one time budget:
#   llmc      llmc_bench.py: GPT-2 124M, zerotrain vs llm.c (train_gpt2cu,
#             cuDNN attention, with and without recompute) at B=8 and the
#             largest B both fit, interleaved rounds (needs --llmc=PATH;
#             --baseline_bundle=DIR adds that bundle's trainer as "zt base")
#   tests     run_gpu_tests.sh: every gpu test
#   zero      run_gpu_zero.sh: ZeRO stages 0-3, NCCL world 1 and 2 ranks on
#             the GPU over host-staged MPI, vs each other, the CPU and the
#             memory formulas
#   profile   profile_gpu.sh: Nsight Compute top-10 kernels of one step
#   sanitize  compute-sanitizer memcheck (bf16, fp16) and racecheck (bf16)
#             on a short training run of the default (small GPT) config
# Each step's full output goes to $OUT/<step>.log (OUT: the device tool's
# output folder; else --out=DIR, else a temp dir), with a short tail here.
# A step gets what is left of --budget=S seconds (default 540), up to its own
# cap, and is skipped below 30 s; steps run in the order above.
#
#   gpu_checks.sh [--budget=540] [--out=DIR] [--only=llmc,tests,zero,profile,sanitize]
#                 [--llmc=PATH/train_gpt2cu] [--llmc_batches=8,max] [--llmc_rounds=2]
#                 [--llmc_steps=10] [--llmc_max=256,192,128,96,64] [--baseline_bundle=DIR]
#                 [--sanitize=memcheck,racecheck]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
budget=540; out="${OUT:-}"; only="llmc,tests,zero,profile,sanitize"
llmc=""; llmc_batches="8,max"; llmc_rounds=2; llmc_steps=10; baseline=""
llmc_max="256,192,128,96,64"
sanitizers="memcheck,racecheck"
for a in "$@"; do
  case "$a" in
    --budget=*) budget="${a#*=}" ;;
    --out=*) out="${a#*=}" ;;
    --only=*) only="${a#*=}" ;;
    --llmc=*) llmc="${a#*=}" ;;
    --llmc_batches=*) llmc_batches="${a#*=}" ;;
    --llmc_rounds=*) llmc_rounds="${a#*=}" ;;
    --llmc_steps=*) llmc_steps="${a#*=}" ;;
    --llmc_max=*) llmc_max="${a#*=}" ;;
    --baseline_bundle=*) baseline="${a#*=}" ;;
    --sanitize=*) sanitizers="${a#*=}" ;;
    *) echo "gpu_checks: unknown flag $a" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$(mktemp -d /tmp/zt_gpu_checks.XXXXXX)"
mkdir -p "$out"
start=$SECONDS
summary=(); passed=0; failed=0

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
  command -v ncu > /dev/null && ncu --version | tail -1
  command -v compute-sanitizer > /dev/null && compute-sanitizer --version | tail -1
  mpirun --version 2>&1 | head -1
  echo "bundle: $bundle"
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

# step NAME CAP TAIL_LINES COMMAND...: runs COMMAND for at most
# min(CAP, time left) seconds; $limit holds that for the command line.
step() {
  local name="$1" cap="$2" tail_n="$3"; shift 3
  if [[ ",$only," != *",$name,"* ]]; then return; fi
  local left=$((budget - (SECONDS - start)))
  local t=$((left < cap ? left : cap))
  if ((t < 30)); then
    summary+=("$name: SKIPPED (${left}s of the budget left)"); failed=$((failed + 1))
    echo "=== $name: skipped, ${left}s left"; return
  fi
  echo "=== $name (limit ${t}s; log $out/$name.log)"
  local t0=$SECONDS
  timeout --kill-after=10 "$t" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n "$tail_n" "$out/$name.log"
  local counts
  counts="$(grep -E '[0-9]+ passed, [0-9]+ failed' "$out/$name.log" | tail -1)"
  local verdict="ok"
  ((rc == 0)) || verdict="FAILED (status $rc$( ((rc == 124)) && echo ', timed out'))"
  summary+=("$name: $verdict in $((SECONDS - t0))s${counts:+; $counts}")
  if ((rc == 0)); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
left() { echo $((budget - (SECONDS - start))); }
cap() { local l; l=$(left); echo $((l < $1 ? l : $1)); }

if [[ ",$only," == *",llmc,"* && -z "$llmc" ]]; then
  # Not a failure: the comparison needs a peer build the bundle does not carry.
  summary+=("llmc: not run (no --llmc=PATH to train_gpt2cu)")
else
  t=$(cap 180)
  step llmc 180 26 python3 "$here/llmc_bench.py" --train="$bundle/bin/train" --llmc="$llmc" \
    ${baseline:+--baseline_train="$baseline/bin/train"} --batches="$llmc_batches" \
    --max_candidates="$llmc_max" --rounds="$llmc_rounds" --steps="$llmc_steps" \
    --out="$out/llmc" --timeout=$((t > 60 ? t / 4 : 15))
fi
step tests 150 3 "$here/run_gpu_tests.sh"
t=$(cap 150)
step zero 150 40 "$here/run_gpu_zero.sh" --device=CUDA --out="$out/zero" \
  --budget_s=$((t > 60 ? t - 30 : 20))
t=$(cap 120)
step profile 120 16 "$here/profile_gpu.sh" --out="$out/profile" --timeout=$((t > 60 ? t - 20 : 30))
# The default config (a small GPT, a few steps): memcheck in bf16 and fp16
# (loss scaling), racecheck (shared-memory hazards) in bf16.
step sanitize 120 6 bash -c '
  rc=0
  run() {
    local tool="$1" d="$2" steps="$3" log="$4.$1.$2"
    compute-sanitizer --tool "$tool" --error-exitcode 1 "$5/bin/train" --set=device=CUDA \
      --set=max_steps="$steps" --set=precision.dtype="$d" --set=logging.progress_bar=NEVER \
      > "$log" 2>&1 || rc=1
    tail -3 "$log"
    echo "$tool $d: $(grep -h "ERROR SUMMARY\|RACECHECK SUMMARY" "$log" | tail -1 || true)"
  }
  [[ ",$3," == *",memcheck,"* ]] && run memcheck BF16 3 "$1" "$2"
  [[ ",$3," == *",memcheck,"* ]] && run memcheck FP16 3 "$1" "$2"
  [[ ",$3," == *",racecheck,"* ]] && run racecheck BF16 2 "$1" "$2"
  exit $rc' sanitize "$out/sanitize" "$bundle" "$sanitizers"

echo
echo "=== GPU checks, $((SECONDS - start))s; logs in $out"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
