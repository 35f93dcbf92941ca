#!/usr/bin/env bash
# Runs ckpt_test.py with the venv tools/setup.sh creates (it has the
# safetensors package from PyPI). Fails, rather than skips, without it.
# Usage: ckpt_test.sh TRAIN CKPT SCRIPT
set -euo pipefail
PYTHON=/opt/zerotrain/venv/bin/python3
if [[ ! -x "$PYTHON" ]] || ! "$PYTHON" -c "import safetensors, numpy" 2>/dev/null; then
  echo "FAIL: $PYTHON with the safetensors package is missing; run" \
       "tools/setup.sh" >&2
  exit 1
fi
exec "$PYTHON" "$3" "$1" "$2"
