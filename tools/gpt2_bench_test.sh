#!/usr/bin/env bash
# Smoke test of tools:gpt2_bench on the CPU (the real benchmark needs a GPU
# and a CUDA PyTorch): a small model through the whole zerotrain side and the
# table, flag errors, and the PyTorch script's syntax.
# Usage: gpt2_bench_test.sh GPT2_BENCH TORCH_SCRIPT
set -euo pipefail
bench="$1"
script="$2"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"

small=(--set=device=CPU --set=model.n_layer=1 --set=model.n_head=2 --set=model.n_embd=32
       --set=model.vocab_size=64 --set=data.synthetic.vocab_size=64 --set=model.max_seq_len=32
       --set=batch.seq_len=32 --B=2 --warmup=1 --steps=3 --torch=none)
"$bench" "${small[@]}" > "$tmp/out.txt"
cat "$tmp/out.txt"
for dtype in bf16 fp16; do
  # system dtype tokens/s ms/step: both numbers positive.
  if ! awk -v d="$dtype" '$1 == "zerotrain" && $2 == d && $3 > 0 && $4 > 0 { found = 1 }
                          END { exit !found }' "$tmp/out.txt"; then
    echo "FAIL: no zerotrain $dtype row with a positive tokens/s and ms/step" >&2
    exit 1
  fi
done
grep -q "B = 2, T = 32, 64 tokens per step" "$tmp/out.txt" ||
  { echo "FAIL: the header does not show the batch" >&2; exit 1; }

# Bad flags: exit status 2 and a message naming the flag.
for bad in --bogus=1 --B=0 --dtypes=fp8 --torch=jit; do
  set +e
  "$bench" "$bad" > "$tmp/bad.txt" 2>&1
  rc=$?
  set -e
  if [[ $rc -ne 2 ]] || ! grep -qF -- "${bad%%=*}" "$tmp/bad.txt"; then
    echo "FAIL: $bad gave status $rc and: $(cat "$tmp/bad.txt")" >&2
    exit 1
  fi
done

# The PyTorch side cannot run here (no GPU, Debian's torch is too old), but
# it must at least parse.
/usr/bin/python3 -m py_compile "$script" 2>&1 || { echo "FAIL: $script does not compile" >&2; exit 1; }
echo PASS
