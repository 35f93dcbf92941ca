#!/usr/bin/env bash
# The train binary on bad input: a clear error naming the culprit and a
# non-zero exit; and on good input a short run that writes valid metrics.
set -uo pipefail
TRAIN="$1"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
fails=0

expect() {  # expect NAME WANT_RC PATTERN -- ARGS...
  local name="$1" want_rc="$2" pattern="$3"
  shift 4
  local out rc
  out=$("$TRAIN" "$@" 2>&1)
  rc=$?
  if [[ "$want_rc" == "nonzero" ]]; then
    [[ $rc -ne 0 ]] || { echo "FAIL $name: exit 0, wanted non-zero"; fails=$((fails + 1)); }
  elif [[ $rc -ne $want_rc ]]; then
    echo "FAIL $name: exit $rc, wanted $want_rc"; fails=$((fails + 1))
  fi
  if ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/:"; echo "$out" | head -5; fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

expect unknown_flag 2 'unknown flag "--bogus"' -- --bogus
expect missing_config nonzero 'NOT_FOUND.*no/such/file.textproto' -- --config=no/such/file.textproto
printf 'model {\n  n_layer: 2\n  n_wings: 3\n}\n' > "$tmp/bad_field.textproto"
expect unknown_field 2 'bad_field.textproto:3' -- --config="$tmp/bad_field.textproto"
printf 'optimizer { beta1: 1.5 }\n' > "$tmp/bad_range.textproto"
expect out_of_range 2 'optimizer.beta1' -- --config="$tmp/bad_range.textproto"
expect bad_set_path 2 'model.n_wings' -- --set=model.n_wings=3
expect bad_set_value 2 'model.n_layer' -- --set=model.n_layer=many
expect help 0 'usage: train' -- --help
expect print_config 0 'n_layer: 4' -- --print_config

# A short real run writes one JSON object per logged step.
metrics="$tmp/metrics.jsonl"
expect short_run 0 'final train loss' -- --set=max_steps=3 --set=logging.interval=1 \
  --set=model.n_layer=1 --set=logging.metrics_jsonl="$metrics" --set=device=CPU
# grep -c prints 0 itself when nothing matches (and nothing when the file
# is missing); "|| echo 0" would make that "0\n0", which -ne cannot compare.
lines=$(grep -c '"lr"' "$metrics" 2>/dev/null)
lines=${lines:-0}
if [[ "$lines" -ne 3 ]]; then echo "FAIL metrics: $lines step lines, wanted 3"; fails=$((fails + 1)); fi
/usr/bin/python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$metrics" \
  || { echo "FAIL metrics: not JSON lines"; fails=$((fails + 1)); }

# device: CUDA either runs on a GPU (CUDA build on a GPU machine) or is
# refused with the reason.
out=$("$TRAIN" --set=device=CUDA --set=max_steps=1 --set=model.n_layer=1 2>&1)
if [[ $? -eq 0 ]]; then
  grep -q "on cuda:" <<<"$out" && echo "ok   cuda_runs" || { echo "FAIL cuda_runs"; fails=$((fails + 1)); }
else
  grep -qE "built without CUDA|no GPU is visible" <<<"$out" && echo "ok   cuda_refused" \
    || { echo "FAIL cuda_refused: $out"; fails=$((fails + 1)); }
fi

[[ $fails -eq 0 ]] && echo "all passed" || echo "$fails failure(s)"
exit $((fails > 0))
