#!/bin/bash
# mpi_dead_peer_test.sh PROGRAM: a rank dies before an all-reduce.
set -uo pipefail
program="$1"
here="$(dirname "$0")"
MPIRUN_TEST_SOURCED=1 source "${here}/mpirun_test.sh"
set +e
fail() { echo "FAIL: $*"; exit 1; }

# 1. mpirun told to keep the job running when a rank dies: each survivor's
#    Wait must time out with an error naming the collective and its rank.
start=$(date +%s)
out="$(timeout --kill-after=5 60 "${MPIRUN[@]}" --mca orte_abort_on_non_zero_status 0 \
  -np 3 "${program}" 2>&1)"
rc=$?
echo "${out}"
[[ ${rc} -ne 124 && ${rc} -ne 137 ]] || fail "the job hung (timeout)"
for r in 0 1; do
  line="$(grep "dead-peer result: rank ${r}:" <<<"${out}")" || fail "rank ${r} printed no result"
  grep -Eq "(DEADLINE_EXCEEDED|UNAVAILABLE): allreduce \(7 x fp32\) on rank ${r} of 3 \(mpi\)" \
    <<<"${line}" || fail "rank ${r}: unexpected result: ${line}"
done
echo "survivors reported the dead peer in $(( $(date +%s) - start )) s"

# 2. Default mpirun: a dead rank ends the whole job with a non-zero status
#    well before the collectives' own timeouts.
start=$(date +%s)
out="$(timeout --kill-after=5 60 "${MPIRUN[@]}" -np 3 "${program}" 2>&1)"
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "${out}"
[[ ${rc} -ne 124 && ${rc} -ne 137 ]] || fail "the default job hung (timeout)"
[[ ${rc} -ne 0 ]] || fail "the job with a dead rank exited 0"
echo "default mpirun ended the job with status ${rc} in ${elapsed} s"
echo "PASS"
