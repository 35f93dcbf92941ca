#!/usr/bin/env bash
# Installs the Debian packages zerotrain builds and tests with. Idempotent:
# returns in a second when everything is present. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap bazel-rules-java
  g++ zlib1g-dev
  libabsl-dev libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libopenblas-dev
  python3-torch python3-numpy python3-venv python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI packages, for tests that check our outputs with the readers users have
# (tensorboard for event files, safetensors for checkpoints). The venv sees
# Debian's torch and numpy through --system-site-packages.
VENV=/opt/zerotrain/venv
if ! "$VENV/bin/python3" -c "import tensorboard, safetensors" 2>/dev/null; then
  echo "setup: creating $VENV with tensorboard and safetensors from PyPI"
  VENV_SUDO=""
  if [[ $(id -u) -ne 0 ]]; then VENV_SUDO="sudo"; fi
  $VENV_SUDO mkdir -p "$(dirname "$VENV")"
  $VENV_SUDO /usr/bin/python3 -m venv --system-site-packages "$VENV"
  $VENV_SUDO "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    tensorboard safetensors
fi

if [[ ! -x "${CUDA_PATH:-/usr/local/cuda}/bin/nvcc" ]]; then
  echo "setup: note: no CUDA toolkit at ${CUDA_PATH:-/usr/local/cuda}; CPU build only" >&2
fi
echo "setup: all packages present"
