"""Builds fusedrnn._C, the compiled ops library, against the installed torch.

Install with `pip install --no-build-isolation .`: the extension must be
compiled against the very torch it will run with, and pip's build isolation
would build it against a second copy of torch instead.

The CUDA kernels (csrc/cuda_sources.txt) are built too when torch has CUDA
and a CUDA toolkit is found (CUDA_HOME, else the nvcc on PATH, else
/usr/local/cuda). FUSEDRNN_CUDA=1 requires them (the build stops if it
cannot), FUSEDRNN_CUDA=0 builds the CPU-only extension. With no GPU visible
they are compiled for TORCH_CUDA_ARCH_LIST, by default "8.0;9.0+PTX" (A100,
H100, and PTX that newer GPUs compile when loading); with a GPU torch picks
its architecture. MAX_JOBS sets the number of parallel compile jobs.
"""
import glob
import os
import shutil
from pathlib import Path

import torch
from setuptools import setup

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"

# Headers of CUDA libraries that torch's CUDA headers include
# (ATen/cuda/CUDAContextLight.h). Some toolkits, like a bare nvcc install,
# lack them; torch's pip wheels then bring them in the nvidia-* packages.
LIBRARY_HEADERS = ("cublas_v2.h", "cublasLt.h", "cusparse.h", "cusolverDn.h")
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def listed_sources(list_name):
    """The sources listed in csrc/<list_name>, shared with CMakeLists.txt."""
    lines = (CSRC / list_name).read_text().splitlines()
    return [f"csrc/{line.strip()}" for line in lines
            if line.strip() and not line.startswith("#")]


def is_toolkit(path):
    return Path(path, "bin", "nvcc").is_file() and Path(
        path, "include", "cuda_runtime.h").is_file()


def find_toolkit():
    """The CUDA toolkit to build with, or None.

    torch guesses the toolkit as the parent of nvcc's directory, which is
    wrong when the nvcc on PATH is a wrapper script outside the toolkit (say
    /usr/local/bin/nvcc); so the toolkit is settled here, and handed to
    torch.utils.cpp_extension as CUDA_HOME before it is imported.
    """
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if explicit:
        return explicit if is_toolkit(explicit) else None
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    return next((str(c) for c in candidates if is_toolkit(c)), None)


def pip_nvidia_dirs(subdir):
    """The <site-packages>/nvidia/*/<subdir> folders of torch's pip CUDA packages."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({path for base in nvidia.__path__
                   for path in glob.glob(os.path.join(base, "*", subdir))})


def library_include_dirs(toolkit):
    """Include folders that supply the LIBRARY_HEADERS the toolkit lacks,
    or None if some header is nowhere to be found."""
    missing = [h for h in LIBRARY_HEADERS if not Path(toolkit, "include", h).is_file()]
    dirs = [d for d in pip_nvidia_dirs("include")
            if any(Path(d, h).is_file() for h in missing)]
    found = all(any(Path(d, h).is_file() for d in dirs) for h in missing)
    return dirs if found else None


def cublas_link_options(toolkit):
    """Linker options for cuBLAS (the per-step multiplies call it directly):
    the toolkit's library, else the pip package's versioned one (which has
    no unversioned libcublas.so to link with -lcublas), else None."""
    if any(Path(toolkit, lib, "libcublas.so").exists() for lib in ("lib64", "lib")):
        return {"libraries": ["cublas"]}
    for d in pip_nvidia_dirs("lib"):
        found = sorted(glob.glob(os.path.join(d, "libcublas.so*")))
        if found:
            return {"extra_link_args": [found[0]]}
    return None


def cuda_build_options():
    """Include folders and link options of the CUDA build, or None for the
    CPU-only extension; FUSEDRNN_CUDA decides, else what is installed."""
    flag = os.environ.get("FUSEDRNN_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        raise SystemExit(f"FUSEDRNN_CUDA must be 0 or 1, not {flag!r}")
    if flag == "0":
        return None
    problem, include_dirs, link = None, None, None
    toolkit = find_toolkit()
    if torch.version.cuda is None:
        problem = f"torch {torch.__version__} is built without CUDA"
    elif toolkit is None:
        problem = "no CUDA toolkit found (set CUDA_HOME, or put nvcc on PATH)"
    else:
        include_dirs = library_include_dirs(toolkit)
        link = cublas_link_options(toolkit)
        if include_dirs is None or link is None:
            problem = (f"the CUDA toolkit at {toolkit} lacks the cuBLAS/cuSPARSE/"
                       "cuSOLVER headers or libraries, and no nvidia pip package has them")
    if problem:
        if flag == "1":
            raise SystemExit(f"FUSEDRNN_CUDA=1 but {problem}")
        print(f"fusedrnn: building without CUDA: {problem}")
        return None
    os.environ["CUDA_HOME"] = toolkit
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    return {"include_dirs": include_dirs, **link}


cuda_options = cuda_build_options()
# Imported only now: it reads CUDA_HOME when imported.
from torch.utils.cpp_extension import (  # noqa: E402
    BuildExtension, CppExtension, CUDAExtension)

sources = ["csrc/python_module.cpp", *listed_sources("sources.txt")]
# C++20 whatever torch's default (older torch asks for C++17; then the flag
# given here is the one used, as torch adds its own only when none is given).
# -fopenmp: at::parallel_for is inline and splits work over torch's threads
# only when the calling code is compiled with OpenMP; without it the time
# loops would run on one thread.
compile_args = {"cxx": ["-O3", "-std=c++20", "-fopenmp"], "nvcc": ["-O3", "-std=c++20"]}
openmp_link = ["-fopenmp"]
if cuda_options is None:
    extension = CppExtension(
        name="fusedrnn._C",
        sources=sources,
        extra_compile_args={"cxx": compile_args["cxx"]},
        extra_link_args=openmp_link,
    )
else:
    extension = CUDAExtension(
        name="fusedrnn._C",
        sources=[*sources, *listed_sources("cuda_sources.txt")],
        define_macros=[("FUSEDRNN_WITH_CUDA", None)],
        extra_compile_args=compile_args,
        libraries=cuda_options.get("libraries", []),
        extra_link_args=[*cuda_options.get("extra_link_args", []), *openmp_link],
    )
    # After the toolkit's own include folder, which CUDAExtension put first:
    # the pip folders also hold CUDA runtime headers, which must not shadow
    # the toolkit's.
    extension.include_dirs += cuda_options["include_dirs"]

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
