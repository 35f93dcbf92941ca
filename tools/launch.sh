#!/usr/bin/env bash
# launch: the trainer on N ranks of this machine, under Open MPI's mpirun.
#
#   bazel run //tools:launch -- --nproc=N [-- TRAIN_FLAGS...]
#
# Every rank runs //trainer:train with TRAIN_FLAGS; relative paths in them
# mean the directory `bazel run` was started in. Exits with mpirun's status
# (non-zero when any rank fails). Several machines: see the README (mpirun -H,
# Slurm srun).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch --nproc=N [-- TRAIN_FLAGS...]
  --nproc=N   ranks on this machine, 1..1024 (one per GPU on a GPU machine)
  TRAIN_FLAGS passed to every rank's train, e.g.
              -- --config=configs/zero3_multi_gpu.textproto --set=max_steps=100
Environment: MPIRUN (default mpirun); OMPI_MCA_* settings you export win over
the launcher's defaults.
EOF
}

die() {
  echo "launch: error: $*" >&2
  usage >&2
  exit 2
}

nproc=""
while (($# > 0)); do
  case "$1" in
    --nproc=*)
      nproc="${1#--nproc=}"
      shift
      ;;
    --nproc)
      (($# >= 2)) || die "--nproc needs a value: --nproc=N"
      nproc="$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      break
      ;;
    *)
      die "unknown flag \"$1\" (train's flags go after --)"
      ;;
  esac
done
[[ -n "${nproc}" ]] || die "--nproc=N is required"
if ! [[ "${nproc}" =~ ^[0-9]+$ ]] || ((10#${nproc} < 1 || 10#${nproc} > 1024)); then
  die "--nproc=${nproc} must be a whole number in [1, 1024]"
fi
nproc=$((10#${nproc}))

# The train binary from this target's runfiles: $0.runfiles under `bazel run`
# or bazel-bin/tools/launch; RUNFILES_DIR / TEST_SRCDIR when another target
# (a test) carries launch in its own runfiles.
train=""
for root in "${RUNFILES_DIR:-}" "${TEST_SRCDIR:-}" "$0.runfiles"; do
  if [[ -n "${root}" && -x "${root}/zerotrain/trainer/train" ]]; then
    train="${root}/zerotrain/trainer/train"
    break
  fi
done
[[ -n "${train}" ]] || {
  echo "launch: error: trainer/train not found in the runfiles of $0 (run it with bazel run //tools:launch)" >&2
  exit 1
}
# Absolute, because of the cd below.
train="$(cd "$(dirname "${train}")" && pwd)/$(basename "${train}")"

mpirun="${MPIRUN:-mpirun}"
command -v "${mpirun}" >/dev/null || {
  echo "launch: error: ${mpirun} not found: install Open MPI (tools/setup.sh)" >&2
  exit 1
}

# `bazel run` starts us in the runfiles tree; the user's relative paths
# (configs, metrics, checkpoints) mean the directory they ran bazel in.
if [[ -n "${BUILD_WORKING_DIRECTORY:-}" ]]; then
  cd "${BUILD_WORKING_DIRECTORY}"
fi

args=(-np "${nproc}")
# Open MPI refuses root unless told twice (containers usually run as root).
if [[ "$(id -u)" == "0" ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  args+=(--allow-run-as-root)
fi
# Open MPI counts one slot per core; the user asked for N ranks here, so more
# ranks than cores is allowed (each rank then yields its core when idle).
args+=(--oversubscribe)
if ((nproc > $(nproc))); then
  export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"
fi
# One machine: shared memory only (no probing of network interfaces), and no
# cross-memory-attach single copy, which most containers do not permit.
export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader}"
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
# In a PID namespace (Bazel's sandbox, some containers) concurrent mpiruns get
# the same job id and would share session and shared-memory files: each
# launch keeps its own.
scratch="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/zerotrain-launch.XXXXXX")"
trap 'rm -rf "${scratch}"' EXIT
export OMPI_MCA_orte_tmpdir_base="${OMPI_MCA_orte_tmpdir_base:-${scratch}}"
export OMPI_MCA_btl_vader_backing_directory="${OMPI_MCA_btl_vader_backing_directory:-${scratch}}"

echo "launch: ${nproc} rank(s) on this machine in ${PWD}: ${mpirun} ${args[*]} ${train} $*" >&2
rc=0
"${mpirun}" "${args[@]}" "${train}" "$@" || rc=$?
exit "${rc}"
