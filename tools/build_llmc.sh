#!/usr/bin/env bash
# Builds llm.c's train_gpt2cu (cuDNN flash attention, bf16) from a peer
# checkout, for side-by-side benchmarks only (tools/llmc_bench.py); nothing
# of llm.c is part of zerotrain. The source is copied to a scratch directory,
# so the peer checkout stays untouched.
#
#   build_llmc.sh --src=../shared/peers/llm.c \
#                 --cudnn_frontend=../shared/peers/cudnn-frontend --out=DIR
#
# Writes DIR/train_gpt2cu. llm.c links -lnvidia-ml, which ships with the GPU
# driver, not the toolkit; without <nvml.h> (as on a build machine) llm.c
# uses no NVML function, so the link here leaves that library out. The
# binary is single-GPU (no MPI, no NCCL) and loads cuBLAS/cuBLASLt/cuDNN 9 at run time from LD_LIBRARY_PATH
# (bundle env.sh adds PyTorch's nvidia/*/lib folders).
set -euo pipefail
src=""; frontend=""; out=""; arch=90
for a in "$@"; do
  case "$a" in
    --src=*) src="${a#*=}" ;;
    --cudnn_frontend=*) frontend="${a#*=}" ;;
    --out=*) out="${a#*=}" ;;
    --arch=*) arch="${a#*=}" ;;
    *) echo "build_llmc: unknown flag $a" >&2; exit 2 ;;
  esac
done
for v in src frontend out; do
  [[ -n "${!v}" ]] || { echo "build_llmc: --${v/frontend/cudnn_frontend}=... is required" >&2; exit 2; }
done
[[ -f "$src/train_gpt2.cu" ]] || { echo "build_llmc: no train_gpt2.cu in $src" >&2; exit 2; }
[[ -d "$frontend/include" ]] || { echo "build_llmc: no include/ in $frontend" >&2; exit 2; }
cuda="${CUDA_PATH:-/usr/local/cuda}"
export PATH="$cuda/bin:$PATH"
scratch="$(mktemp -d /tmp/llmc_build.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
cp -r "$src"/. "$scratch/"
# llm.c's Makefile looks for the frontend only at ./cudnn-frontend/include.
rm -rf "$scratch/cudnn-frontend" && ln -s "$(cd "$frontend" && pwd)" "$scratch/cudnn-frontend"
mkdir -p "$out"
# The cuDNN frontend compiles some kernels at run time (NVRTC).
ldflags="-lcublas -lcublasLt -lcudnn -lnvrtc"
if echo '#include <nvml.h>' | g++ -E -x c++ -I"$cuda/include" - > /dev/null 2>&1; then
  ldflags="$ldflags -lnvidia-ml"
fi
(cd "$scratch" && make train_gpt2cu USE_CUDNN=1 NO_USE_MPI=1 NO_MULTI_GPU=1 GPU_COMPUTE_CAPABILITY="$arch" CI=true \
   CUDNN_FRONTEND_PATH="$scratch/cudnn-frontend/include" NVCC_LDFLAGS="$ldflags" \
   NVCC_LDLIBS="-L$cuda/lib64")
cp "$scratch/train_gpt2cu" "$out/train_gpt2cu"
echo "build_llmc: $out/train_gpt2cu"
