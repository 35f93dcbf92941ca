"""Repositories for system libraries that live outside /usr/include.

Everything in /usr/include is found by the compiler as it is; those libraries
are link-only targets in //third_party:BUILD. CUDA (under CUDA_PATH, default
/usr/local/cuda) and OpenMPI (its own include folder) need their headers
declared, so they become repositories here. A missing CUDA toolkit still
yields a repository, whose targets fail only when a --config=cuda build uses
them, so `bazel query //...` and the CPU build work without it.
"""

def _cuda_configure_impl(ctx):
    cuda_path = ctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    found = ctx.path(cuda_path + "/include/cuda_runtime.h").exists
    if found:
        ctx.symlink(cuda_path + "/include", "include")
        lib = cuda_path + "/lib64"
        if not ctx.path(lib).exists:
            lib = cuda_path + "/lib"
        ctx.template("BUILD", ctx.attr._build_tpl, {
            "%{cuda_path}": cuda_path,
            "%{cuda_lib}": lib,
        })
        ctx.file("defs.bzl", "NVCC = %r\nCUDA_PATH = %r\n" % (cuda_path + "/bin/nvcc", cuda_path))
    else:
        ctx.template("BUILD", ctx.attr._missing_tpl, {
            "%{cuda_path}": cuda_path,
        })
        ctx.file("defs.bzl", "NVCC = \"\"\nCUDA_PATH = %r\n" % cuda_path)

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_PATH"],
    local = True,
    attrs = {
        "_build_tpl": attr.label(default = Label("//third_party/cuda:cuda.BUILD.tpl")),
        "_missing_tpl": attr.label(default = Label("//third_party/cuda:missing.BUILD.tpl")),
    },
)

def _mpi_configure_impl(ctx):
    incdir = None
    res = ctx.execute(["mpicc", "--showme:incdirs"])
    if res.return_code == 0 and res.stdout.strip():
        incdir = res.stdout.strip().split(" ")[0]
    if not incdir or not ctx.path(incdir + "/mpi.h").exists:
        incdir = "/usr/lib/x86_64-linux-gnu/openmpi/include"
    libdirs = "/usr/lib/x86_64-linux-gnu/openmpi/lib"
    res = ctx.execute(["mpicc", "--showme:libdirs"])
    if res.return_code == 0 and res.stdout.strip():
        libdirs = res.stdout.strip().split(" ")[0]
    if ctx.path(incdir + "/mpi.h").exists:
        ctx.symlink(incdir, "include")
    else:
        ctx.file("include/mpi.h", "#error \"OpenMPI not found: run tools/setup.sh\"\n")
    ctx.template("BUILD", ctx.attr._build_tpl, {"%{mpi_libdir}": libdirs})

mpi_configure = repository_rule(
    implementation = _mpi_configure_impl,
    local = True,
    attrs = {
        "_build_tpl": attr.label(default = Label("//third_party/mpi:mpi.BUILD.tpl")),
    },
)

def zerotrain_system_repositories():
    cuda_configure(name = "local_cuda")
    mpi_configure(name = "local_mpi")
