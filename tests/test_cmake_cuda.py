"""The standalone CMake build of the CUDA kernels (CMakeLists.txt at the repository root)
configures and compiles for sm_80 and sm_90 with nvcc. Compile only: nothing runs on a
GPU. ~1 minute on 2 cores.

A missing cmake, nvcc or cuobjdump skips (with the reason) on a developer machine and
fails under ``CI=true`` (tests/_requirements.py). cuobjdump is looked up on PATH, beside
nvcc, in ``$CUDA_HOME/bin`` / ``$CUDA_PATH/bin`` / ``/usr/local/cuda/bin``, and in the
copy that the ``triton`` wheel bundles (``triton/backends/nvidia/bin``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _requirements import missing_tool

REPO = Path(__file__).resolve().parents[1]


def _cuda_roots(nvcc: str | None = None) -> list[Path]:
    roots = [Path(r) for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if r]
    if nvcc:  # the real toolkit behind a wrapper script such as /usr/local/bin/nvcc
        roots.append(Path(nvcc).resolve().parent.parent)
    return roots + [Path("/usr/local/cuda")]


def _find_tool(name: str, nvcc: str | None = None) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = [root / "bin" / name for root in _cuda_roots(nvcc)]
    if nvcc:
        cands.insert(0, Path(nvcc).parent / name)
    try:  # the triton wheel ships the CUDA binary utilities (ptxas, cuobjdump, nvdisasm)
        import importlib.util

        spec = importlib.util.find_spec("triton")
        if spec and spec.origin:
            cands.append(Path(spec.origin).parent / "backends" / "nvidia" / "bin" / name)
    except (ImportError, ValueError):
        pass
    for cand in cands:
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _find_nvcc() -> str | None:
    return _find_tool("nvcc")


def _run(cmd, cwd, timeout):
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    """(build directory, nvcc) of the CMake build for sm_80;sm_90 (built once for this module)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        missing_tool("cmake is not installed")
    nvcc = _find_nvcc()
    if nvcc is None:
        missing_tool("nvcc (CUDA toolkit) not found on PATH, CUDA_HOME, CUDA_PATH or /usr/local/cuda")
    build = tmp_path_factory.mktemp("cmake") / "build"
    _run([cmake, "-S", str(REPO), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}",
          "-DCMAKE_CUDA_ARCHITECTURES=80;90", "-DCMAKE_BUILD_TYPE=Release",
          "-DLDMVFI_FAST_BUILD_EXAMPLES=ON"], REPO, timeout=120)
    _run([cmake, "--build", str(build), "-j2"], REPO, timeout=170)
    return build, nvcc


def _library(build: Path) -> Path:
    libs = list(build.glob("libldmvfi_fast_kernels.so*")) + list(build.glob("*ldmvfi_fast_kernels*.dll"))
    assert libs, f"no library in {sorted(p.name for p in build.iterdir())}"
    return build / "libldmvfi_fast_kernels.so" if (build / "libldmvfi_fast_kernels.so").exists() else libs[0]


def test_cmake_build_sm80_sm90(build):
    build, _ = build
    _library(build)
    assert (build / "c_api_example").exists() or (build / "c_api_example.exe").exists()


def test_c_api_symbols_exported(build):
    """The C API symbols are exported (and nothing else from the kernels leaks)."""
    nm = shutil.which("nm")
    if nm is None:
        missing_tool("nm (binutils) is not installed")
    so = _library(build[0])
    out = subprocess.run([nm, "-D", "--defined-only", str(so)], stdout=subprocess.PIPE, text=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    header = (REPO / "csrc/include/ldmvfi_fast/c_api.h").read_text()
    for name in ("ldmvfi_error_string", "ldmvfi_api_version", "ldmvfi_dsepconv_forward_f32",
                 "ldmvfi_dsepconv_forward_f16", "ldmvfi_dsepconv_forward_bf16", "ldmvfi_dsepconv_backward_f32",
                 "ldmvfi_decoder_output_f32", "ldmvfi_decoder_output_f16", "ldmvfi_decoder_output_bf16",
                 "ldmvfi_maxvit_attention_f32", "ldmvfi_maxvit_attention_f16",
                 "ldmvfi_maxvit_attention_bf16"):
        assert name in header, name
        assert name in exported, f"{name} not exported by {so.name}"
    assert not any("ldmvfi7kernels" in s for s in exported), "kernel templates leak from the library"


def test_both_architectures_embedded(build):
    """sm_80 and sm_90 machine code (SASS) are both in the library."""
    build, nvcc = build
    cuobjdump = _find_tool("cuobjdump", nvcc)
    if cuobjdump is None:
        missing_tool("cuobjdump not found (PATH, beside nvcc, CUDA_HOME/bin, /usr/local/cuda/bin, triton's bin)")
    proc = subprocess.run([cuobjdump, "--list-elf", str(_library(build))], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "sm_80" in proc.stdout and "sm_90" in proc.stdout, proc.stdout
