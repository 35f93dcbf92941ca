#!/usr/bin/env bash
# Makes a relocatable bundle of zerotrain for machines without Bazel (GPU
# boxes, clusters): the trainer, the gpu tests, the kernel benchmark, the
# shared libraries they load (Abseil, glog, protobuf, OpenBLAS, OpenMPI with
# its plugins), OpenMPI's launcher with its plugins and data files, and
# scripts that run them.
#
#   bazel run --config=cuda //tools:package -- --out=DIR [--tar=FILE.tar.xz]
#   DIR/gpu_checks.sh        # on the GPU machine: every GPU check, one budget
#   DIR/gpu_bench.sh         # GPT-2 124M vs PyTorch at B=8, then larger B
#   source DIR/env.sh && mpirun -np 2 DIR/bin/train ...   # no OpenMPI needed
#
# The bundle relies on the target machine for glibc, the NVIDIA driver and
# the CUDA 13 runtime libraries (cudart, cuBLAS/cuBLASLt, NCCL): those are
# part of any CUDA installation and far too large to carry. run_gpu_tests.sh
# looks for them in /usr/local/cuda and in a PyTorch installation's nvidia/
# wheels.
set -euo pipefail
out=""
tarball=""
for a in "$@"; do
  case "$a" in
    --out=*) out="${a#--out=}" ;;
    --tar=*) tarball="${a#--tar=}" ;;
    *) echo "package: unknown flag $a (usage: --out=DIR [--tar=FILE.tar.xz])" >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || { echo "package: --out=DIR is required" >&2; exit 2; }
if [[ -n "${BUILD_WORKING_DIRECTORY:-}" && "$out" != /* ]]; then out="$BUILD_WORKING_DIRECTORY/$out"; fi
if [[ -n "${BUILD_WORKING_DIRECTORY:-}" && -n "$tarball" && "$tarball" != /* ]]; then
  tarball="$BUILD_WORKING_DIRECTORY/$tarball"
fi
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

# OpenMPI's launcher (mpirun = orterun, orted for remote nodes, ompi_info to
# check the paths), its plugins (loaded at MPI_Init and by mpirun), PMIx's
# plugins, help texts and default MCA parameters, so that multi-rank runs
# work on a machine without OpenMPI. Debian's layout is not one prefix
# (libraries and plugins under /usr/lib/x86_64-linux-gnu/openmpi, help under
# /usr/share/openmpi, parameters in /etc/openmpi, PMIx under .../pmix2), so
# ompi_info names the directories here and env.sh points OpenMPI and PMIx at
# the bundle's copies one by one (OPAL_* and PMIX_* variables).
ompi_path() { ompi_info --path "$1" 2>/dev/null | sed -n 's/^ *[A-Za-z]*: *//p' | head -1; }
if command -v ompi_info > /dev/null && command -v mpirun > /dev/null; then
  mkdir -p "$out.tmp/lib/openmpi3" "$out.tmp/lib/pmix" "$out.tmp/share/openmpi" "$out.tmp/share/pmix" "$out.tmp/etc"
  for prog in orterun orted ompi_info; do
    src="$(command -v "$prog")" || { echo "package: no $prog next to mpirun" >&2; exit 1; }
    cp -L "$src" "$out.tmp/bin/$prog"
    copy_libs "$src"
  done
  # mpirun and mpiexec are orterun under other names (Debian: via
  # /etc/alternatives).
  ln -s orterun "$out.tmp/bin/mpirun"
  ln -s orterun "$out.tmp/bin/mpiexec"
  cp -L "$(ompi_path pkglibdir)"/*.so "$out.tmp/lib/openmpi3/"
  for p in "$out.tmp"/lib/openmpi3/*.so; do copy_libs "$p"; done
  cp -rL "$(ompi_path pkgdatadir)"/. "$out.tmp/share/openmpi/"
  # Compiler-wrapper data is for mpicc, which the bundle does not carry.
  rm -f "$out.tmp"/share/openmpi/*-wrapper-data.txt
  sysconf="$(ompi_path sysconfdir)"
  for f in openmpi-mca-params.conf openmpi-default-hostfile; do
    [[ -f "$sysconf/$f" ]] && cp -L "$sysconf/$f" "$out.tmp/etc/"
  done
  # An external PMIx (Debian) loads its own plugins from its own prefix.
  pmix_lib="$(ldd "$out.tmp/bin/orterun" "$out.tmp"/lib/openmpi3/mca_pmix_*.so 2>/dev/null |
              awk '/libpmix\.so/ && /=> \//{print $3; exit}')"
  if [[ -n "$pmix_lib" ]]; then
    pmix_dir="$(dirname "$(readlink -f "$pmix_lib")")"
    if [[ -d "$pmix_dir/pmix" ]]; then
      cp -L "$pmix_dir"/pmix/*.so "$out.tmp/lib/pmix/"
      for p in "$out.tmp"/lib/pmix/*.so; do copy_libs "$p"; done
    fi
    [[ -d "$pmix_dir/../share/pmix" ]] && cp -rL "$pmix_dir/../share/pmix"/. "$out.tmp/share/pmix/"
    rm -f "$out.tmp"/share/pmix/*-wrapper-data.txt
    # Debian's pmix-mca-params.conf only names its absolute plugin path;
    # env.sh names the bundle's instead.
    echo "# zerotrain bundle: PMIx parameters (plugin path set by env.sh)" > "$out.tmp/etc/pmix-mca-params.conf"
  fi
fi
# The scripts that run things from the bundle (gpu_checks.sh runs them all).
for f in run_gpu_tests.sh run_gpu_zero.sh gpu_zero.py profile_gpu.sh ncu_top10.py gpu_checks.sh \
         llmc_bench.py gpu_bench.sh; do
  cp "$here/tools/$f" "$out.tmp/$f"
  chmod 755 "$out.tmp/$f"
done
cp "$here/tools/bundle_env.sh" "$out.tmp/env.sh"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "package: $(du -sh "$out" | cut -f1) in $out ($(ls "$out/bin" | wc -l) programs)"

# --tar: the bundle as one .tar.xz (unpack with tar -xJf into any directory).
# The large programs each link the same CUDA kernels (fatbins for every
# architecture); stored next to each other, largest first, they fall within
# one xz -9 dictionary (64 MiB) and compress to little more than one copy
# (measured: 17 MB for the whole bundle, 31 MB with xz -6 in name order).
if [[ -n "$tarball" ]]; then
  mkdir -p "$(dirname "$tarball")"
  (cd "$out" && tar -cf - $(ls -S bin | sed 's|^|bin/|') $(ls | grep -vx bin)) | xz -9 -T1 > "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  echo "package: $(du -h "$tarball" | cut -f1) in $tarball"
fi
