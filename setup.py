"""Build script of ldmvfi_fast.

Native code (``ldmvfi_fast._C``, sources in ``csrc/``; see ``csrc/README.md``):

* always the CPU extension (C++ kernels, OpenMP) when ``torch`` can be imported at build
  time; build with ``pip install --no-build-isolation .`` so that the installed torch is
  the one compiled against (``pyproject.toml`` deliberately does not list torch);
* plus the CUDA sources (``csrc/ops/cuda/*.cu``, ``csrc/kernels/``) when torch is a CUDA
  build and nvcc is found, or when ``FORCE_CUDA=1``. That also works with no GPU visible
  (Docker build, CI box): the GPU architectures then default to ``DEFAULT_CUDA_ARCHS``
  (``TORCH_CUDA_ARCH_LIST`` overrides; with a GPU visible and nothing set, torch builds for
  the visible GPUs); ``CUDA_HOME`` is a toolkit whose ``lib64``/``lib`` holds libcudart
  (torch's guess from ``nvcc`` on PATH may be ``/usr/local``; then ``/usr/local/cuda``);
  cuBLAS/cuSPARSE/cuSOLVER headers that the toolkit lacks come from the pip ``nvidia-*``
  packages beside torch; a toolkit whose CUDA major version differs from torch's stops the
  build with one line;
* nothing native with ``LDMVFI_FAST_NO_NATIVE=1``, or when torch cannot be imported
  (isolated build): the package then runs on the Triton / reference backends.

Each decision is printed as one line starting with ``ldmvfi_fast build:``. The decisions are
small functions that ``tests/test_setup_cuda.py`` loads without building: the build itself
runs only under ``__name__ == "__main__"`` (as pip / setuptools' ``build_meta`` and
``python setup.py ...`` run this file).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
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


# ---------------------------------------------------------------------------------------------
# CUDA build decisions: pure functions of their arguments (tests/test_setup_cuda.py)
# ---------------------------------------------------------------------------------------------

# Architectures built when no GPU is visible and TORCH_CUDA_ARCH_LIST is not set. Each entry is
# one more device compilation of every .cu file (nvcc time grows about linearly with it, see
# README "On a GPU machine"). sm_80 SASS also runs on 8.6 / 8.7 / 8.9 (same major version),
# and the kernels' fast path (bf16 tensor cores, WMMA) needs sm_80 anyway; 9.0 SASS for
# Hopper; the 9.0 PTX is JIT-compiled by the driver on newer GPUs (Blackwell 10.x / 12.x) at
# the first load. sm_75 (Turing) is left out: the wheels' GPUs of interest start at Ampere.
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"

# Toolkit headers that torch's ATen/cuda/CUDAContextLight.h includes (and the .cu files include
# ATen/cuda/CUDAContext.h); a slim toolkit (CUDA compiler + runtime only) lacks them.
TORCH_TOOLKIT_HEADERS = ("cusparse.h", "cublas_v2.h", "cublasLt.h", "cusolverDn.h")


class BuildConfigError(Exception):
    """A build configuration that cannot work; printed as one ``ldmvfi_fast build: error:`` line."""


def choose_arch_list(env_value: str | None, gpu_count: int, default: str = DEFAULT_CUDA_ARCHS):
    """(value for TORCH_CUDA_ARCH_LIST or None to keep torch's choice, build line)."""
    env_value = (env_value or "").strip()
    if env_value == "native" and gpu_count == 0:
        raise BuildConfigError("TORCH_CUDA_ARCH_LIST=native but no GPU is visible: set the architectures, "
                               f'e.g. TORCH_CUDA_ARCH_LIST="{default}", or unset it')
    if env_value:
        return env_value, f"GPU architectures TORCH_CUDA_ARCH_LIST={env_value} (set in the environment)"
    if gpu_count > 0:
        return None, (f"GPU architectures: those of the {gpu_count} visible GPU(s) (torch's default; "
                      "set TORCH_CUDA_ARCH_LIST to build for others)")
    return default, (f"GPU architectures TORCH_CUDA_ARCH_LIST={default} (no GPU visible and "
                     "TORCH_CUDA_ARCH_LIST not set; sm_80 code also runs on 8.6/8.9, the 9.0 PTX is "
                     "JIT-compiled on newer GPUs)")


def cuda_lib_dir(home: str) -> str:
    """The library folder torch links against: ``lib64`` when it exists, else ``lib``."""
    lib64 = os.path.join(home, "lib64")
    return lib64 if os.path.isdir(lib64) else os.path.join(home, "lib")


def cuda_home_problem(home: str) -> str | None:
    """Why ``home`` is not a usable CUDA toolkit root, or None when it is one."""
    if not os.path.isdir(home):
        return "no such folder"
    if not os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return "no bin/nvcc"
    lib = cuda_lib_dir(home)
    if not glob.glob(os.path.join(lib, "libcudart.so*")):
        return f"no libcudart in {lib}"
    return None


def choose_cuda_home(user_home: str | None, detected: str | None, nvcc_on_path: str | None = None,
                     fallbacks=("/usr/local/cuda",)):
    """(CUDA toolkit root or None, build line).

    ``user_home``: CUDA_HOME / CUDA_PATH from the environment, used when valid, else an error.
    Otherwise the first valid of: torch's guess ``detected`` (from nvcc on PATH: /usr/local for
    a /usr/local/bin/nvcc wrapper), the folder above the real nvcc behind symlinks, ``fallbacks``.
    """
    if user_home:
        problem = cuda_home_problem(user_home)
        if problem:
            raise BuildConfigError(f"CUDA_HOME={user_home} is not a usable CUDA toolkit ({problem}): point "
                                   "CUDA_HOME at the toolkit root (bin/nvcc, lib64/libcudart.so), e.g. "
                                   "/usr/local/cuda, or unset it")
        return user_home, f"CUDA toolkit {user_home} (CUDA_HOME set in the environment)"
    candidates = [detected]
    if nvcc_on_path:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc_on_path))))
    candidates += list(fallbacks)
    tried = []
    for cand in candidates:
        if not cand or cand in tried:
            continue
        tried.append(cand)
        problem = cuda_home_problem(cand)
        if problem is None:
            if detected and cand != detected:
                return cand, (f"CUDA toolkit {cand} (torch's guess {detected} has "
                              f"{cuda_home_problem(detected)})")
            return cand, f"CUDA toolkit {cand}"
    if not tried:
        return None, "nvcc / CUDA_HOME not found"
    return None, ("no usable CUDA toolkit (" + "; ".join(f"{c}: {cuda_home_problem(c)}" for c in tried)
                  + "); set CUDA_HOME")


def parse_nvcc_version(text: str) -> str | None:
    """'13.0' from ``nvcc --version`` output ('... release 13.0, V13.0.88'), or None."""
    m = re.search(r"release (\d+)\.(\d+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def cuda_version_mismatch(toolkit: str, torch_cuda: str, cuda_home: str = "", torch_version: str = "") -> str | None:
    """The one-line error when the toolkit's CUDA major version differs from torch's, else None."""
    tk_major, torch_major = int(toolkit.split(".")[0]), int(torch_cuda.split(".")[0])
    if tk_major == torch_major:
        return None
    where = f" at {cuda_home}" if cuda_home else ""
    built = f"torch {torch_version}" if torch_version else "torch"
    return (f"CUDA toolkit {toolkit}{where} (nvcc) but {built} is built for CUDA {torch_cuda}: the major "
            f"versions must match; install a CUDA {torch_major}.x toolkit (CUDA_HOME) or a torch built for "
            f"CUDA {tk_major}.x, or build without CUDA kernels (CPU torch)")


def nvidia_include_dirs(cuda_include: str, site_dir: str, headers=TORCH_TOOLKIT_HEADERS):
    """(include folders to add, headers still missing).

    Empty when the toolkit's include folder has every header; otherwise the
    ``site_dir/nvidia/*/include`` folders (pip ``nvidia-*`` packages installed beside torch)
    that hold a missing header.
    """
    missing = [h for h in headers if not os.path.isfile(os.path.join(cuda_include, h))]
    if not missing:
        return [], []
    dirs = [inc for inc in sorted(glob.glob(os.path.join(site_dir, "nvidia", "*", "include")))
            if any(os.path.isfile(os.path.join(inc, h)) for h in missing)]
    still = [h for h in missing if not any(os.path.isfile(os.path.join(d, h)) for d in dirs)]
    return dirs, still


def _nvcc_version(nvcc: str) -> str | None:
    try:
        out = subprocess.run([nvcc, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_version(out)


def _configure_cuda(torch, cpp_extension, cuda_home: str):
    """Point torch's extension builder at ``cuda_home``, check versions, choose the architectures.

    Returns the include folders to append after torch's and the toolkit's own (so the toolkit's
    headers win and only the missing ones come from the pip packages).
    """
    # cpp_extension read CUDA_HOME at import; its helpers (_join_cuda_home) use the module global
    cpp_extension.CUDA_HOME = cuda_home
    os.environ["CUDA_HOME"] = cuda_home
    toolkit = _nvcc_version(os.path.join(cuda_home, "bin", "nvcc"))
    if toolkit is None:
        _say(f"could not read the CUDA version of {cuda_home}/bin/nvcc: not checked against torch's")
    elif torch.version.cuda:
        err = cuda_version_mismatch(toolkit, torch.version.cuda, cuda_home, torch.__version__)
        if err:
            raise BuildConfigError(err)
    arch, line = choose_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), torch.cuda.device_count())
    if arch is not None:
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    _say(line)
    site_dir = os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))
    dirs, still = nvidia_include_dirs(os.path.join(cuda_home, "include"), site_dir)
    if dirs:
        _say(f"{cuda_home}/include lacks headers torch's CUDA headers include -> adding "
             f"{', '.join(dirs)} (pip nvidia-* packages beside torch)")
    if still:
        _say(f"warning: {', '.join(still)} not found in {cuda_home}/include nor in {site_dir}/nvidia/*/include "
             "(torch's CUDA headers include them): install the full CUDA toolkit")
    return dirs


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
    nvcc_home, home_why = None, "nvcc / CUDA_HOME not found"
    if torch.version.cuda is not None:
        nvcc_home, home_why = choose_cuda_home(os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"),
                                               cpp_extension.CUDA_HOME, shutil.which("nvcc"))
    if force_cuda:
        use_cuda, why = True, "FORCE_CUDA=1"
    elif torch.version.cuda is None:
        use_cuda, why = False, f"torch {torch.__version__} is a CPU build"
    elif nvcc_home is None:
        use_cuda, why = False, home_why
    else:
        use_cuda, why = True, f"torch CUDA {torch.version.cuda}, {home_why}"
    if use_cuda and nvcc_home is None:
        raise BuildConfigError(f"FORCE_CUDA=1 but {home_why} (set CUDA_HOME; a CPU build of torch cannot "
                               "build CUDA extensions)")
    if use_cuda and not cuda_sources:
        use_cuda, why = False, f"{why}, but no CUDA sources in csrc/ops/cuda or csrc/kernels"
    _say(f"CUDA kernels: {'yes' if use_cuda else 'no'} ({why})")
    extra_includes = _configure_cuda(torch, cpp_extension, nvcc_home) if use_cuda else []

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
    # after torch's and the toolkit's include folders (CUDAExtension appended those)
    ext.include_dirs.extend(extra_includes)
    _say(f"{len(sources)} source files ({len(cuda_sources) if use_cuda else 0} .cu)")
    return [ext], {"build_ext": cpp_extension.BuildExtension}


def main() -> None:
    try:
        ext_modules, cmdclass = _native_build()
    except BuildConfigError as exc:  # one line, no traceback
        sys.exit(f"ldmvfi_fast build: error: {exc}")
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
                        "ray": ["ray"],  # ldmvfi-fast interpolate --executor ray
                        "test": ["pytest", "triton", "onnx", "onnxruntime", "onnxscript", "matplotlib"]},
        entry_points={"console_scripts": ["ldmvfi-fast=ldmvfi_fast.cli:main"]},
        ext_modules=ext_modules,
        cmdclass=cmdclass,
    )


if __name__ == "__main__":  # pip / setuptools' build_meta and `python setup.py` run it so
    main()
