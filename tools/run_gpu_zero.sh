#!/usr/bin/env bash
# ZeRO stages 0-3 on the GPU: world size 1 over NCCL and 2 ranks
# sharing the GPU over host-staged MPI, fp32/bf16/fp16, against each other,
# a 2-rank CPU run and the memory formulas (gpu_zero.py says what and with
# which tolerances). Ends with "N passed, N failed"; non-zero exit on failure.
#
#   run_gpu_zero.sh [--device=CUDA|CPU] [--dtypes=fp32,bf16,fp16]
#                   [--steps=N] [--out=DIR]
#
# From the bundle it uses the bundle's trainer and mpirun (env.sh); from a
# source checkout pass --train=PATH (and --mpirun=PATH if not on PATH).
# --device=CPU runs the same checks with no GPU (world 1 and 2 over MPI).
# Logs go to --out, else $OUT/zero when $OUT is set, else a temp directory.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
extra=()
if [[ -f "$here/env.sh" ]]; then
  source "$here/env.sh"
  extra+=("--train=$bundle/bin/train" "--mpirun=$bundle/bin/mpirun")
fi
out_flag=()
if [[ " $* " != *" --out="* && -n "${OUT:-}" ]]; then out_flag=("--out=$OUT/zero"); fi
# Later flags win in argparse, so the caller's --train/--mpirun override.
exec python3 "$here/gpu_zero.py" "${extra[@]}" "${out_flag[@]}" "$@"
