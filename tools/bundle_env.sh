# Sourced by the bundle's scripts (and by hand: source env.sh): library paths
# for the bundle's programs, and OpenMPI/PMIx pointed at the bundle's own
# launcher, plugins, help texts and parameter files.
bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cuda_libs=""
for d in "${CUDA_PATH:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 \
         $(ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null) \
         $(python3 -c 'import nvidia, os; p=os.path.dirname(nvidia.__path__[0]); print(" ".join(os.path.join(p, "nvidia", d, "lib") for d in os.listdir(os.path.join(p, "nvidia"))))' 2>/dev/null); do
  [[ -d "$d" ]] && cuda_libs="$cuda_libs:$d"
done
export LD_LIBRARY_PATH="$bundle/lib${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -e "$bundle/bin/orterun" ]]; then
  export PATH="$bundle/bin:$PATH"
  # OpenMPI's installdirs: OPAL_PREFIX alone would not do, since the build
  # machine's layout (Debian) does not derive every directory from the
  # prefix; each one is named. The bundle has no include directory (no mpicc).
  export OPAL_PREFIX="$bundle" OPAL_EXEC_PREFIX="$bundle" OPAL_BINDIR="$bundle/bin"
  export OPAL_LIBDIR="$bundle/lib" OPAL_PKGLIBDIR="$bundle/lib/openmpi3"
  export OPAL_DATADIR="$bundle/share" OPAL_PKGDATADIR="$bundle/share/openmpi"
  export OPAL_SYSCONFDIR="$bundle/etc"
  export OMPI_MCA_mca_base_component_path="$bundle/lib/openmpi3"
  # mpirun serves PMIx to the ranks; an external PMIx has its own plugins.
  export PMIX_PREFIX="$bundle" PMIX_EXEC_PREFIX="$bundle" PMIX_LIBDIR="$bundle/lib"
  export PMIX_PKGLIBDIR="$bundle/lib/pmix" PMIX_DATADIR="$bundle/share"
  export PMIX_PKGDATADIR="$bundle/share/pmix" PMIX_SYSCONFDIR="$bundle/etc"
  export PMIX_MCA_mca_base_component_path="$bundle/lib/pmix"
  # Containers run as root; mpirun refuses root unless told.
  if [[ "$(id -u)" == 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
else
  export OMPI_MCA_mca_base_component_path="$bundle/lib/openmpi3"
fi
