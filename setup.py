"""Builds fusedrnn._C, the compiled ops library, against the installed torch.

Install with `pip install --no-build-isolation .`: the extension must be
compiled against the very torch it will run with, and pip's build isolation
would build it against a second copy of torch instead.
"""
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"


def ops_sources():
    """The sources listed in csrc/sources.txt, shared with CMakeLists.txt."""
    lines = (CSRC / "sources.txt").read_text().splitlines()
    return [f"csrc/{line.strip()}" for line in lines
            if line.strip() and not line.startswith("#")]


extension = CppExtension(
    name="fusedrnn._C",
    sources=["csrc/python_module.cpp", *ops_sources()],
    extra_compile_args={"cxx": ["-O3"]},
)

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
