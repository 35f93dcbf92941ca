#!/usr/bin/env bash
# Makes a relocatable bundle of zerotrain for machines without Bazel (GPU
# boxes, clusters): the trainer, the gpu tests, the kernel benchmark, the
# shared libraries they load (Abseil, glog, protobuf, OpenBLAS, OpenMPI with
# its plugins), and scripts that run them.
#
#   bazel run --config=cuda //tools:package -- --out=DIR
#
# The bundle relies on the target machine for glibc, the NVIDIA driver and
# the CUDA 13 runtime libraries (cudart, cuBLAS/cuBLASLt, NCCL): those are
# part of any CUDA installation and far too large to carry. run_gpu_tests.sh
# looks for them in /usr/local/cuda and in a PyTorch installation's nvidia/
# wheels.
set -euo pipefail
out=""
for a in "$@"; do
  case "$a" in
    --out=*) out="${a#--out=}" ;;
    *) echo "package: unknown flag $a (usage: --out=DIR)" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { echo "package: --out=DIR is required" >&2; exit 2; }
if [[ -n "${BUILD_WORKING_DIRECTORY:-}" && "$out" != /* ]]; then out="$BUILD_WORKING_DIRECTORY/$out"; fi
here="$(pwd)"  # the runfiles tree of //tools:package
rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin" "$out.tmp/lib" "$out.tmp/tests"

# Libraries the bundle must not carry: glibc, the driver, CUDA's own.
system_lib() {
  case "$(basename "$1")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda.so*|libnvidia*) return 0 ;;
    libcudart.so*|libcublas*.so*|libnccl.so*|libcudnn*|libnvJitLink*|libnvrtc*) return 0 ;;
  esac
  return 1
}

copy_libs() {
  ldd "$1" | awk '/=> \//{print $3}' | while read -r lib; do
    system_lib "$lib" && continue
    [[ -e "$out.tmp/lib/$(basename "$lib")" ]] || cp -L "$lib" "$out.tmp/lib/"
  done
}

while read -r rel; do
  [[ -z "$rel" ]] && continue
  src="$here/$rel"
  [[ -x "$src" ]] || { echo "package: missing $rel" >&2; exit 1; }
  dest="$out.tmp/bin/$(basename "$rel")"
  cp -L "$src" "$dest"
  chmod u+w "$dest"
  strip --strip-debug "$dest"
  copy_libs "$src"
  case "$rel" in *_gpu_test) echo "$(basename "$rel")" >> "$out.tmp/tests/gpu_tests.txt" ;; esac
done < "$here/tools/package_manifest.txt"

# OpenMPI's plugins (loaded at MPI_Init) and their libraries.
mpi_plugins=$(ls -d /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3 2>/dev/null || true)
if [[ -n "$mpi_plugins" ]]; then
  mkdir -p "$out.tmp/lib/openmpi3"
  cp -L "$mpi_plugins"/*.so "$out.tmp/lib/openmpi3/" 2>/dev/null || true
  for p in "$out.tmp"/lib/openmpi3/*.so; do copy_libs "$p"; done
fi
cp "$here/tools/run_gpu_tests.sh" "$out.tmp/run_gpu_tests.sh"
cp "$here/tools/bundle_env.sh" "$out.tmp/env.sh"
chmod +x "$out.tmp/run_gpu_tests.sh"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "package: $(du -sh "$out" | cut -f1) in $out ($(ls "$out/bin" | wc -l) programs)"
