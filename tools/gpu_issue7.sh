#!/usr/bin/env bash
# Issue 7's GPU checks in one command, from the bundle:
#   1. run_gpu_tests.sh  every gpu test
#   2. run_gpu_zero.sh   ZeRO stages 0-3: NCCL world 1, 2 ranks on the GPU over
#                        host-staged MPI, vs each other, the CPU and the
#                        memory formulas
#   3. profile_gpu.sh    Nsight Compute top-10 kernels of one GPT-2 step
#   4. memcheck          compute-sanitizer on a short training run
# Each step's full output goes to $OUT/<step>.log (OUT: the device tool's
# output folder; else --out=DIR, else a temp dir), with a short tail here.
# All of it stays within --budget=S seconds (default 540): a step gets what
# is left, up to its own cap, and is skipped below 30 s.
#
#   gpu_issue7.sh [--budget=540] [--out=DIR] [--only=tests,zero,profile,memcheck]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
budget=540; out="${OUT:-}"; only="tests,zero,profile,memcheck"
for a in "$@"; do
  case "$a" in
    --budget=*) budget="${a#*=}" ;;
    --out=*) out="${a#*=}" ;;
    --only=*) only="${a#*=}" ;;
    *) echo "gpu_issue7: unknown flag $a" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$(mktemp -d /tmp/zt_issue7.XXXXXX)"
mkdir -p "$out"
start=$SECONDS
summary=(); passed=0; failed=0

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
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

# Caps: measured on an H100 the gpu tests take ~70 s; the ZeRO runs ~2 min;
# ncu on one step a few minutes at most.
step tests 200 3 "$here/run_gpu_tests.sh"
limit_zero=$((budget - (SECONDS - start)))
((limit_zero > 200)) && limit_zero=200
step zero 200 40 "$here/run_gpu_zero.sh" --device=CUDA --out="$out/zero" \
  --budget_s=$((limit_zero > 60 ? limit_zero - 40 : 20))
limit_prof=$((budget - (SECONDS - start)))
((limit_prof > 260)) && limit_prof=260
step profile 260 18 "$here/profile_gpu.sh" --out="$out/profile" \
  --timeout=$((limit_prof > 90 ? limit_prof - 40 : 50))
# The default config (a small GPT, 3 steps) in bf16 and fp16 (loss scaling).
step memcheck 120 2 bash -c '
  rc=0
  for d in BF16 FP16; do
    compute-sanitizer --tool memcheck --error-exitcode 1 "$1/bin/train" --set=device=CUDA \
      --set=max_steps=3 --set=precision.dtype=$d --set=logging.progress_bar=NEVER > "$2.$d" 2>&1 || rc=1
    cat "$2.$d"
  done
  for d in BF16 FP16; do
    echo "memcheck $d: $(grep -h "ERROR SUMMARY" "$2.$d" || echo "no ERROR SUMMARY line")"
  done
  exit $rc' memcheck "$bundle" "$out/memcheck_run"

echo
echo "=== issue 7 GPU checks, $((SECONDS - start))s; logs in $out"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
