#!/usr/bin/env bash
# tools:launch runs the trainer on 2 local ranks to completion, resolves
# relative paths against BUILD_WORKING_DIRECTORY, and rejects a bad --nproc.
set -uo pipefail
LAUNCH="$1"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# Two steps of a one-layer GPT on 2 ranks; the metrics path is relative, so
# it must land in BUILD_WORKING_DIRECTORY, as under `bazel run`.
workdir="${tmp}/user_dir"
mkdir -p "${workdir}"
out=$(BUILD_WORKING_DIRECTORY="${workdir}" timeout --kill-after=5 240 "${LAUNCH}" --nproc=2 -- \
  --set=model.n_layer=1 --set=max_steps=2 --set=eval.batches=0 --set=device=CPU \
  --set=logging.interval=1 --set=logging.metrics_jsonl=metrics.jsonl 2>&1)
rc=$?
echo "${out}"
[[ ${rc} -eq 0 ]] || fail "two_ranks: exit ${rc}"
grep -q "zerotrain: 2 rank(s) on cpu over mpi" <<<"${out}" || fail "two_ranks: no '2 rank(s) ... over mpi' line"
grep -q "final train loss" <<<"${out}" || fail "two_ranks: the run did not finish"
lines=$(grep -c '"step"' "${workdir}/metrics.jsonl" 2>/dev/null)
lines=${lines:-0}  # grep -c prints 0 itself; nothing when the file is missing
[[ "${lines}" -eq 2 ]] || fail "relative_path: ${lines} metrics lines in ${workdir}/metrics.jsonl, wanted 2"

expect_error() {  # expect_error NAME PATTERN ARGS...
  local name="$1" pattern="$2"
  shift 2
  local out rc
  out=$("${LAUNCH}" "$@" 2>&1)
  rc=$?
  [[ ${rc} -eq 2 ]] || fail "${name}: exit ${rc}, wanted 2"
  grep -qE -- "${pattern}" <<<"${out}" || fail "${name}: output lacks /${pattern}/: ${out}"
  grep -q "^usage: launch" <<<"${out}" || fail "${name}: no usage"
}
expect_error nproc_zero 'error: --nproc=0 must be a whole number' --nproc=0 -- --set=max_steps=1
expect_error nproc_word 'error: --nproc=two must be a whole number' --nproc=two
expect_error nproc_negative 'error: --nproc=-1 must be a whole number' --nproc=-1
expect_error nproc_huge 'error: --nproc=100000 must be' --nproc=100000
expect_error nproc_missing 'error: --nproc=N is required' -- --set=max_steps=1
expect_error nproc_no_value 'error: --nproc needs a value' --nproc
expect_error train_flag_before_dashes 'unknown flag "--set=max_steps=1"' --nproc=2 --set=max_steps=1

# A rank's failure is the launch's failure.
out=$("${LAUNCH}" --nproc=2 -- --set=model.n_wings=3 2>&1)
rc=$?
[[ ${rc} -ne 0 ]] || fail "train_error: exit 0"
grep -q "model.n_wings" <<<"${out}" || fail "train_error: message lacks model.n_wings: ${out}"

[[ ${fails} -eq 0 ]] && echo "all passed" || echo "${fails} failure(s)"
exit $((fails > 0))
