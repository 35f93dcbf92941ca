#!/usr/bin/env bash
# The GPT-2 124M benchmark from the bundle: zerotrain against
# PyTorch eager and torch.compile in bf16 and fp16 at B=8 (the reference
# table), then zerotrain against torch.compile in bf16 at larger micro-batches
# (zerotrain needs about 5 GiB at B=8), where MFU is higher for both. Full
# outputs go to $OUT/bench_B<N>.txt (or --out=DIR); the table rows are
# repeated at the end.
#
#   gpu_bench.sh [--out=DIR] [--batches=16,32] [--steps=10]
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
out="${OUT:-}"; batches="16,32"; steps=10
for a in "$@"; do
  case "$a" in
    --out=*) out="${a#*=}" ;;
    --batches=*) batches="${a#*=}" ;;
    --steps=*) steps="${a#*=}" ;;
    *) echo "gpu_bench: unknown flag $a" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$(mktemp -d /tmp/zt_bench.XXXXXX)"
mkdir -p "$out"
rc=0
"$here/bin/gpt2_bench" --B=8 --warmup=5 --steps="$steps" 2>&1 | tee "$out/bench_B8.txt" || rc=1
for b in ${batches//,/ }; do
  "$here/bin/gpt2_bench" --B="$b" --warmup=3 --steps="$steps" --dtypes=bf16 --torch=compile 2>&1 |
    tee "$out/bench_B$b.txt" || rc=1
done
echo
echo "=== summary (B, then the table rows of each run)"
for f in "$out"/bench_B*.txt; do
  echo "--- $(basename "$f" .txt)"
  grep -E "^(system|zerotrain|eager|compile) " "$f" || echo "(no table: see $f)"
done
exit $rc
