#!/usr/bin/env bash
# The memory_estimator binary: the ZeRO paper's example, and a bad flag is a
# non-zero exit with a message naming the flag.
set -uo pipefail
EST="$1"
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

out=$("${EST}" --params=7.5e9 --world_size=64 2>&1)
rc=$?
echo "${out}"
[[ ${rc} -eq 0 ]] || fail "paper: exit ${rc}"
for want in "120.0 GB" "31.4 GB" "16.6 GB" "1.9 GB" "GiB"; do
  grep -qF "${want}" <<<"${out}" || fail "paper: no '${want}'"
done

out=$("${EST}" --params=7.5e9 --world_size=none 2>&1)
rc=$?
[[ ${rc} -eq 2 ]] || fail "bad_world_size: exit ${rc}, wanted 2"
grep -qF "error: INVALID_ARGUMENT: --world_size=none" <<<"${out}" || fail "bad_world_size: ${out}"

out=$("${EST}" --config=no/such/file.textproto --world_size=2 2>&1)
rc=$?
[[ ${rc} -eq 1 ]] || fail "missing_config: exit ${rc}, wanted 1"
grep -qF "no/such/file.textproto" <<<"${out}" || fail "missing_config: ${out}"

[[ ${fails} -eq 0 ]] && echo "all passed" || echo "${fails} failure(s)"
exit $((fails > 0))
