#!/usr/bin/env bash
# Runs metrics_readback_writer, then checks its output with the tensorboard
# package from PyPI. Usage: metrics_readback_test.sh WRITER SCRIPT
set -euo pipefail

PYTHON=/opt/zerotrain/venv/bin/python3
if [[ ! -x "$PYTHON" ]]; then
  echo "FAIL: $PYTHON is missing; run tools/setup.sh to create the venv with" \
       "the tensorboard package" >&2
  exit 1
fi

writer="$1"
script="$2"
out="${TEST_TMPDIR:-$(mktemp -d)}/readback"
rm -rf "$out"
"$writer" "$out"
"$PYTHON" "$script" "$out"
