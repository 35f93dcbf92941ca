#!/usr/bin/env bash
# Checks on the build machine that a bundle's OpenMPI is self-contained: the
# bundle's mpirun runs 2 trainer ranks, and run_gpu_zero.sh --device=CPU
# passes, in a scrubbed environment with the system's OpenMPI and PMIx
# hidden (empty tmpfs over their directories, /dev/null over their programs
# and libraries, in a private mount namespace); and, with nothing hidden,
# strace sees no file of the system's OpenMPI or PMIx opened.
#
#   bazel run --config=cuda //tools:package -- --out=/tmp/b
#   tools/bundle_mpi_check.sh /tmp/b [--quick]   # root: needs unshare -m
#
# --quick skips run_gpu_zero.sh. Ends with "N passed, N failed".
set -uo pipefail
b="$(cd "${1:?usage: bundle_mpi_check.sh BUNDLE_DIR [--quick]}" && pwd)"
quick="${2:-}"
passed=0; failed=0
check() {  # check NAME STATUS DETAIL
  if [[ "$2" == 0 ]]; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}
mpi_bin="$(readlink -f "$(command -v mpirun)" 2>/dev/null)"
[[ -n "$mpi_bin" ]] || echo "note: no system mpirun here; nothing to hide"
lib=/usr/lib/x86_64-linux-gnu
hide_dirs=("$lib/openmpi" "$lib/pmix2" /usr/share/openmpi /etc/openmpi)
hide_files=("$mpi_bin" /usr/bin/orterun /usr/bin/orted /usr/bin/ompi_info
            "$lib"/libmpi.so.40* "$lib"/libopen-*.so.40* "$lib"/libpmix.so.2* "$lib"/libmca_common_*)
# run_hidden CMD: runs CMD (bash) after sourcing the bundle's env.sh, in a
# scrubbed environment and a mount namespace with the system OpenMPI hidden.
run_hidden() {
  HIDE_DIRS="${hide_dirs[*]}" HIDE_FILES="${hide_files[*]}" B="$b" CMD="$1" unshare -m bash -c '
    for d in $HIDE_DIRS; do if [[ -d "$d" ]]; then mount -t tmpfs none "$d" || exit 97; fi; done
    for f in $HIDE_FILES; do if [[ -f "$f" ]]; then mount --bind /dev/null "$f" || exit 97; fi; done
    exec env -i HOME="$HOME" PATH=/usr/bin:/bin bash -c "source \"$B/env.sh\" && $CMD"'
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

out="$(run_hidden 'ls /usr/share/openmpi | wc -l; command -v mpirun; ompi_info --path all' 2>&1)"
echo "$out" | sed 's/^/  /'
[[ "$(echo "$out" | head -1)" == 0 ]]; check "system OpenMPI hidden" $? "$out"
echo "$out" | grep -qx "$b/bin/mpirun"; check "mpirun is the bundle's" $? "$out"
bad="$(echo "$out" | grep -E "(Pkglibdir|Pkgdatadir|Sysconfdir|Libdir|Bindir):" | grep -v "$b/")"
[[ -z "$bad" ]]; check "ompi_info: every directory mpirun uses is in the bundle" $? "$bad"

train=(--set=device=CPU --set=max_steps=2 --set=eval.batches=0 --set=logging.progress_bar=NEVER
       --set=model.n_layer=1 --set=batch.micro_batch_size=4)
out="$(run_hidden "mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none -np 2 \"$b/bin/train\" ${train[*]}" 2>&1)"
echo "$out" | grep -q "zerotrain: 2 rank(s) on cpu over mpi" && echo "$out" | grep -q "final train loss"
check "mpirun -np 2 train, system OpenMPI hidden" $? "$(echo "$out" | tail -5)"

if command -v strace > /dev/null; then
  env -i HOME="$HOME" PATH=/usr/bin:/bin bash -c "source '$b/env.sh' && strace -f -qq -z -e trace=open,openat,execve -o '$tmp/strace.txt' \
    mpirun --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none -np 2 '$b/bin/train' ${train[*]}" > "$tmp/strace_run.txt" 2>&1
  rc=$?
  # Successful opens (-z) of OpenMPI/PMIx files outside the bundle; failed
  # probes (the loader trying orterun's RUNPATH for libc, a missing
  # ~/.openmpi/mca-params.conf) do not count, nor do the job's session files.
  leaks="$(grep -E 'open(at)?\(|execve\(' "$tmp/strace.txt" |
           grep -E 'openmpi|pmix|libmpi|libopen-(pal|rte)|orte' | grep -v "$b/" |
           grep -vE "/tmp/ompi\.|/dev/shm/|/proc/|$HOME/\.(openmpi|pmix)/" | head -5)"
  [[ $rc -eq 0 && -z "$leaks" ]]; check "strace: no OpenMPI/PMIx file opened outside the bundle" $? "status $rc; $leaks"
else
  echo "note: no strace; skipped the open-files check"
fi

if [[ "$quick" != "--quick" ]]; then
  run_hidden "\"$b/run_gpu_zero.sh\" --device=CPU --dtypes=fp32,bf16,fp16 --out=\"$tmp/zero\"" > "$tmp/zero.txt" 2>&1
  rc=$?
  tail -30 "$tmp/zero.txt" | sed 's/^/  /'
  check "run_gpu_zero.sh --device=CPU from the bundle, system OpenMPI hidden" $rc "$(tail -1 "$tmp/zero.txt")"
fi
echo "$passed passed, $failed failed"
((failed == 0))
