#!/usr/bin/env bash
# gpt2_bench --profile on the CPU (the profiler range itself needs a GPU):
# the warmup steps, then the profiled ones, and bad values rejected.
# Usage: gpt2_bench_profile_test.sh GPT2_BENCH
set -uo pipefail
bench="$1"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
small=(--set=device=CPU --set=model.n_layer=1 --set=model.n_head=2 --set=model.n_embd=32
       --set=model.vocab_size=64 --set=data.synthetic.vocab_size=64 --set=model.max_seq_len=32
       --set=batch.seq_len=32 --B=2)

out="$("$bench" "${small[@]}" --profile=2 --warmup=1 --dtypes=fp16,bf16 2>&1)"
rc=$?
echo "$out"
[[ $rc -eq 0 ]] || fail "exit status $rc"
grep -q "^gpt2_bench --profile: fp16 on cpu, B = 2, T = 32; 1 warmup step(s), then 2 profiled" \
  <<<"$out" || fail "no header naming fp16 (the first dtype), B, T and the step counts"
[[ "$(grep -c '^warmup step 1: loss [0-9.]*, ' <<<"$out")" -eq 1 ]] || fail "no warmup step 1"
grep -q "^profiled step 2: loss " <<<"$out" || fail "no profiled step 2"
grep -q "^profiled step 3: loss " <<<"$out" || fail "no profiled step 3"
grep -q "^profiled step 4" <<<"$out" && fail "a fourth step ran"
# Profile mode prints no benchmark table (and starts no PyTorch).
grep -q "tokens/s" <<<"$out" && fail "profile mode printed the benchmark table"

for bad in --profile=0 --profile=x; do
  msg="$("$bench" "$bad" 2>&1)"
  rc=$?
  [[ $rc -eq 2 ]] && grep -qF -- "$bad" <<<"$msg" || fail "$bad: status $rc, $msg"
done
((fails == 0)) && echo PASS
exit $((fails > 0))
