#!/usr/bin/env bash
# Nsight Compute profile of one GPT-2 124M training step (B=8, T=1024, bf16)
# from the bundle, and the ten most expensive kernels with their achieved
# fraction of peak (ncu_top10.py).
#
#   profile_gpu.sh [--B=8] [--dtype=bf16] [--warmup=3] [--top=10]
#                  [--timeout=420] [--out=DIR] [--metrics=basic|full]
#
# gpt2_bench --profile runs --warmup plain steps, then one step between
# cudaProfilerStart/Stop; ncu --profile-from-start off measures only that
# step's kernels, each replayed (serialized, caches flushed) at the clocks
# the GPU runs at (--clock-control none: the machine's clocks are not ours
# to lock). --metrics=basic (the default) asks for the duration and the
# tensor pipe only, two replay passes per kernel: the whole B=8 step (~450
# launches) within a minute or two. --metrics=full adds SM and memory
# throughput; that took 10 passes per kernel on an H200 (0.37 s each), so a
# whole step needs about three minutes. Writes step.ncu-rep (open it in
# ncu-ui), ncu.csv, top10.txt and top10.json to --out, else $OUT/profile,
# else a temp dir.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f "$here/env.sh" ]] && source "$here/env.sh"
B=8; dtype=bf16; warmup=3; top=10; limit=420; dir=""; metric_set=basic
for a in "$@"; do
  case "$a" in
    --B=*) B="${a#*=}" ;;
    --dtype=*) dtype="${a#*=}" ;;
    --warmup=*) warmup="${a#*=}" ;;
    --top=*) top="${a#*=}" ;;
    --timeout=*) limit="${a#*=}" ;;
    --out=*) dir="${a#*=}" ;;
    --metrics=basic|--metrics=full) metric_set="${a#*=}" ;;
    *) echo "profile_gpu: unknown flag $a" >&2; exit 2 ;;
  esac
done
[[ -n "$dir" ]] || dir="${OUT:+$OUT/profile}"
[[ -n "$dir" ]] || dir="$(mktemp -d /tmp/zt_profile.XXXXXX)"
mkdir -p "$dir"
bench="${GPT2_BENCH:-${bundle:-$here}/bin/gpt2_bench}"
[[ -x "$bench" ]] || { echo "profile_gpu: no gpt2_bench at $bench (set GPT2_BENCH)" >&2; exit 1; }
ncu="${NCU:-$(command -v ncu || ls -d /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu \
      /usr/local/cuda/nsight-compute*/ncu 2>/dev/null | head -1)}"
[[ -n "$ncu" && -x "$ncu" ]] || { echo "profile_gpu: ncu not found (set NCU)" >&2; exit 1; }
export LC_ALL=C  # ncu_top10.py reads "," as the thousands separator

# Duration, SM and memory speed-of-light throughputs, and the tensor pipe
# (all tensor instructions incl. Hopper's wgmma, and HMMA alone). Metrics
# this ncu does not know for this GPU are dropped rather than failing the
# run: names drift between ncu versions.
wanted=(gpu__time_duration.sum
        sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active)
if [[ "$metric_set" == full ]]; then
  wanted+=(sm__throughput.avg.pct_of_peak_sustained_elapsed
           gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed
           sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active)
fi
"$ncu" --query-metrics > "$dir/query_metrics.txt" 2>&1
metrics=()
for m in "${wanted[@]}"; do
  if ! grep -q "^gpu__time_duration" "$dir/query_metrics.txt" || grep -q "^${m%%.*}\b" "$dir/query_metrics.txt"; then
    metrics+=("$m")
  else
    echo "profile_gpu: this ncu has no ${m%%.*}; profiling without it"
  fi
done
joined="$(IFS=,; echo "${metrics[*]}")"
"$ncu" --version | tail -1

run_ncu() {
  rm -f "$dir/step.ncu-rep"
  timeout --kill-after=10 "$limit" "$ncu" --profile-from-start off --target-processes application-only \
    --clock-control none \
    --metrics "$1" --launch-count 5000 -o "$dir/step" --force-overwrite \
    "$bench" --profile --B="$B" --dtypes="$dtype" --warmup="$warmup" > "$dir/ncu_run.log" 2>&1
}
echo "profile_gpu: ncu on gpt2_bench --profile --B=$B --dtypes=$dtype (metrics: $joined)"
start=$SECONDS
run_ncu "$joined"; rc=$?
if [[ $rc -ne 0 && $((SECONDS - start)) -lt 60 ]]; then
  # A quick failure is most often a metric this ncu rejects: retry with the
  # duration alone, which every ncu has.
  tail -5 "$dir/ncu_run.log"
  echo "profile_gpu: ncu failed (status $rc); retrying with the duration only"
  run_ncu "${wanted[0]}"; rc=$?
fi
tail -4 "$dir/ncu_run.log"
echo "profile_gpu: ncu took $((SECONDS - start)) s, status $rc"
[[ -f "$dir/step.ncu-rep" ]] || { echo "profile_gpu: no report written (log: $dir/ncu_run.log)"; exit 1; }
"$ncu" --import "$dir/step.ncu-rep" --csv --page details --print-units base \
  --print-kernel-base function > "$dir/ncu.csv" 2> "$dir/ncu_import.err" ||
  { cat "$dir/ncu_import.err"; exit 1; }
python3 "$here/ncu_top10.py" "$dir/ncu.csv" --top="$top" --json="$dir/top10.json" | tee "$dir/top10.txt"
status=${PIPESTATUS[0]}
# A step cut short by the timeout still gives a table, but not a whole step.
((rc == 0)) || echo "profile_gpu: WARNING: ncu exited with status $rc; the table covers only the kernels profiled"
exit $((status != 0 || rc != 0))
