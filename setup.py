"""Build script of ldmvfi_fast.

Native code (``ldmvfi_fast._C``, sources in ``csrc/``; see ``csrc/README.md``):

* always the CPU extension (C++ kernels, OpenMP) when ``torch`` can be imported at build
  time; build with ``pip install --no-build-isolation .`` so that the installed torch is
  the one compiled against (``pyproject.toml`` deliberately does not list torch);
* plus the CUDA sources (``csrc/ops/cuda/*.cu``, ``csrc/kernels/``) when torch is a CUDA
  build and nvcc is found, or when ``FORCE_CUDA=1``;
* nothing native with ``LDMVFI_FAST_NO_NATIVE=1``, or when torch cannot be imported
  (isolated build): the package then runs on the Triton / reference backends.

Each decision is printed as one line starting with ``ldmvfi_fast build:``.
"""
from __future__ import annotations

import glob
import os
import sys

from setuptools import find_namespace_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
MIN_TORCH = "2.4"  # torch.library.register_fake, opcheck


def _say(msg: str) -> None:
    print(f"ldmvfi_fast build: {msg}", file=sys.stderr, flush=True)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _import_torch():
    """Import the torch the package will run with.

    In an isolated build (plain ``pip install .``) the build environment has no torch, and
    installing one there would compile against a different torch than the installed one
    (not ABI-safe; ``pyproject.toml`` therefore does not list it). The interpreter's own
    site-packages, where torch is installed, is then appended to ``sys.path`` (after the
    build environment's, so its setuptools still wins): the extension is compiled against
    exactly the installed torch, as with ``--no-build-isolation``.
    """
    try:
        import torch
        from torch.utils import cpp_extension
        return torch, cpp_extension
    except ImportError:
        import site
        import sysconfig

        candidates = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        try:
            candidates += site.getsitepackages() + [site.getusersitepackages()]
        except AttributeError:  # virtualenv's old site module
            pass
        found = [p for p in dict.fromkeys(candidates) if os.path.isdir(os.path.join(p, "torch"))]
        if not found:
            raise
        sys.path.extend(p for p in found if p not in sys.path)
        import torch
        from torch.utils import cpp_extension
        _say(f"isolated build: using the installed torch {torch.__version__} from {found[0]} "
             "(the one the package runs with)")
        return torch, cpp_extension


def _native_build():
    """(ext_modules, cmdclass) for this environment; ([], {}) for a pure-Python install."""
    if _flag("LDMVFI_FAST_NO_NATIVE"):
        _say("LDMVFI_FAST_NO_NATIVE=1 -> pure-Python install (no native extension)")
        return [], {}
    try:
        torch, cpp_extension = _import_torch()
    except ImportError as exc:
        _say(f"torch cannot be imported at build time ({exc}) -> pure-Python install, no native "
             "extension. For the compiled kernels install torch first, then "
             "`pip install --no-build-isolation .`")
        return [], {}
    try:
        from packaging.version import Version
    except ImportError:  # torch vendors packaging
        from torch._vendor.packaging.version import Version
    tv = Version(torch.__version__.split("+")[0])
    if tv < Version(MIN_TORCH):
        _say(f"torch {torch.__version__} < {MIN_TORCH} -> pure-Python install (native ops need torch>={MIN_TORCH})")
        return [], {}
    _say(f"torch {torch.__version__} found -> building CPU extension ldmvfi_fast._C")

    cpu_sources = _rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp"))
                       + glob.glob(os.path.join(ROOT, "csrc", "ops", "*.cpp"))
                       + glob.glob(os.path.join(ROOT, "csrc", "ops", "cpu", "*.cpp"))
                       + glob.glob(os.path.join(ROOT, "csrc", "ops", "autograd", "*.cpp")))
    # the C API (csrc/kernels/c_api.cu) belongs to the standalone CMake library only
    cuda_sources = _rel(glob.glob(os.path.join(ROOT, "csrc", "ops", "cuda", "*.cu"))
                        + [p for p in glob.glob(os.path.join(ROOT, "csrc", "kernels", "**", "*.cu"), recursive=True)
                           if os.path.basename(p) != "c_api.cu"])
    # host-side C++ of the CUDA backend (compiled only with CUDA)
    cuda_host_sources = _rel(glob.glob(os.path.join(ROOT, "csrc", "ops", "cuda", "*.cpp"))
                             + glob.glob(os.path.join(ROOT, "csrc", "kernels", "**", "*.cpp"), recursive=True))

    force_cuda = _flag("FORCE_CUDA")
    nvcc_home = cpp_extension.CUDA_HOME
    if force_cuda:
        use_cuda, why = True, "FORCE_CUDA=1"
    elif torch.version.cuda is None:
        use_cuda, why = False, f"torch {torch.__version__} is a CPU build"
    elif nvcc_home is None:
        use_cuda, why = False, "nvcc / CUDA_HOME not found"
    else:
        use_cuda, why = True, f"torch CUDA {torch.version.cuda}, toolkit at {nvcc_home}"
    if use_cuda and nvcc_home is None:
        raise RuntimeError("ldmvfi_fast build: FORCE_CUDA=1 but torch.utils.cpp_extension found no CUDA "
                           "toolkit (set CUDA_HOME; a CPU build of torch cannot build CUDA extensions)")
    if use_cuda and not cuda_sources:
        use_cuda, why = False, f"{why}, but no CUDA sources in csrc/ops/cuda or csrc/kernels"
    _say(f"CUDA kernels: {'yes' if use_cuda else 'no'} ({why})")

    include_dirs = [os.path.join(ROOT, "csrc")]
    for sub in ("kernels", "include"):  # torch-free CUDA library and its public C header
        if os.path.isdir(os.path.join(ROOT, "csrc", sub)):
            include_dirs.append(os.path.join(ROOT, "csrc", sub))
    extra_compile_args = {"cxx": ["-O3", "-fopenmp", "-ffp-contract=off"]}
    define_macros = []
    ext_cls = cpp_extension.CppExtension
    sources = cpu_sources
    if use_cuda:
        ext_cls = cpp_extension.CUDAExtension
        sources = cpu_sources + cuda_host_sources + cuda_sources
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
    ext = ext_cls(
        name="ldmvfi_fast._C",
        sources=sources,
        include_dirs=include_dirs,
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=["-fopenmp"],
    )
    _say(f"{len(sources)} source files ({len(cuda_sources) if use_cuda else 0} .cu)")
    return [ext], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = _native_build()

setup(
    name="ldmvfi_fast",
    version="0.1.0",
    description="Fast, faithful inference for LDMVFI latent-diffusion video frame interpolation",
    # namespace-aware, so a sub-package without __init__.py is still installed
    packages=find_namespace_packages(include=["ldmvfi_fast", "ldmvfi_fast.*"], exclude=["*__pycache__*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "einops", "av", "pyyaml", "tqdm"],
    extras_require={"export": ["onnx", "onnxruntime", "onnxscript"], "triton": ["triton"],
                    "bench": ["matplotlib"],  # benchmarks/quality.py's plot
                    "test": ["pytest", "triton", "onnx", "onnxruntime", "onnxscript", "matplotlib"]},
    entry_points={"console_scripts": ["ldmvfi-fast=ldmvfi_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
