# Sourced by the bundle's scripts: library paths for the bundle's programs.
bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cuda_libs=""
for d in "${CUDA_PATH:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 \
         $(ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null) \
         $(python3 -c 'import nvidia, os; p=os.path.dirname(nvidia.__path__[0]); print(" ".join(os.path.join(p, "nvidia", d, "lib") for d in os.listdir(os.path.join(p, "nvidia"))))' 2>/dev/null); do
  [[ -d "$d" ]] && cuda_libs="$cuda_libs:$d"
done
export LD_LIBRARY_PATH="$bundle/lib${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMPI_MCA_mca_base_component_path="$bundle/lib/openmpi3"
