#!/bin/bash
# Runs a program on N local MPI ranks: mpirun_test.sh N PROGRAM [ARGS...]
# Exits with mpirun's status (non-zero when any rank fails). Also sourced by
# other scripts for the mpirun environment (MPIRUN_TEST_SOURCED=1).
set -euo pipefail

# Root inside containers and bazel's sandbox; more ranks than the 2 cores;
# shared memory only; no warnings about the missing single-copy mechanism
# (CMA is not permitted in most containers); busy ranks yield the core.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
# Bazel runs tests concurrently, each in its own PID namespace, so every
# mpirun gets the same PID and thus the same job id: shared-memory files in
# the default /dev/shm would collide between jobs (crashes in vader). Each
# job keeps them in its own temporary directory instead.
scratch="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/mpirun.XXXXXX")"
export OMPI_MCA_orte_tmpdir_base="${scratch}"
export OMPI_MCA_btl_vader_backing_directory="${scratch}"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --tag-output)

if [[ "${MPIRUN_TEST_SOURCED:-0}" == "1" ]]; then
  return 0
fi

np="$1"
program="$2"
shift 2
trap 'rm -rf "${scratch}"' EXIT
# A hard bound (for runs outside Bazel) in case a rank hangs despite the
# collectives' own timeouts.
timeout --kill-after=5 "${MPIRUN_TEST_TIMEOUT_S:-120}" "${MPIRUN[@]}" -np "${np}" "${program}" "$@"
