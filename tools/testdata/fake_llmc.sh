#!/usr/bin/env bash
# Stands in for llm.c's train_gpt2cu in tools:llmc_bench_test: takes its
# flags, prints its allocation and per-step lines in train_gpt2.cu's formats
# (printf0 "device memory usage" and "step %4d/%d | loss ...") and fails like
# an out-of-memory start above FAKE_LLMC_MAX_B (default 64).
B=4; steps=10; r=1
while (($#)); do
  case "$1" in
    -b) B="$2"; shift ;;
    -x) steps="$2"; shift ;;
    -r) r="$2"; shift ;;
    -*) shift ;;
  esac
  shift
done
if ((B > ${FAKE_LLMC_MAX_B:-64})); then
  echo "[CUDA ERROR] at file llmc/cuda_utils.cuh:123:"
  echo "out of memory"
  exit 1
fi
echo "allocating $((B * 400)) MiB for activations"
echo "device memory usage: $((2500 + B * (r ? 300 : 400))) MiB / 143771 MiB"
for ((s = 1; s <= steps; s++)); do
  ms=$(awk -v b="$B" -v s="$s" -v r="$r" 'BEGIN { printf "%.2f", (s == 1 ? 500 : 0) + b * (r ? 2.6 : 2.5) + (s % 3) * 0.01 }')
  printf "step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s\n" \
    "$s" "$steps" 10.93 0 1.5 0 0.0006 "$ms" 40.0 "$(awk -v b="$B" -v ms="$ms" 'BEGIN { print b * 1024 / ms * 1000 }')"
done
echo "val loss 10.930000"
echo "total average iteration time: 1.0 ms"
