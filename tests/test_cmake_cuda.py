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


_SASS: dict[str, dict[str, str]] = {}


def _sass(build) -> dict[str, str]:
    """{mangled kernel name: its sm_90 SASS} of the library (cuobjdump -sass, once per build)."""
    build, nvcc = build
    if str(build) in _SASS:
        return _SASS[str(build)]
    cuobjdump = _find_tool("cuobjdump", nvcc)
    if cuobjdump is None:
        missing_tool("cuobjdump not found (PATH, beside nvcc, CUDA_HOME/bin, /usr/local/cuda/bin, triton's bin)")
    proc = subprocess.run([cuobjdump, "-sass", "-arch", "sm_90", str(_library(build))], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = {}
    for chunk in proc.stdout.split("Function : ")[1:]:
        name, _, body = chunk.partition("\n")
        out[name.strip()] = body
    _SASS[str(build)] = out
    return out


def test_attention_block_kernel_uses_tensor_cores(build):
    """Static check (nothing runs): the half/bf16 attention block kernel issues HMMA
    (tensor-core) instructions, the float one does not (CUDA cores, fp32 accuracy)."""
    sass = _sass(build)
    blocks = {n: b for n, b in sass.items() if "maxvit_attention_block_kernel" in n}
    assert len(blocks) == 3, sorted(blocks)
    for name, body in blocks.items():
        hmma = body.count("HMMA")
        if "IfE" in name:  # float instantiation
            assert hmma == 0, f"{name}: {hmma} HMMA"
        else:
            assert hmma > 0, f"{name}: no HMMA instruction"


def test_dsepconv_kernels_have_no_compare_select_clamps(build):
    """Static check of the issue-bound DSepConv/decoder_output kernels (K = 5, float): the
    clamps are FMNMX (fminf/fmaxf), not FSETP + FSEL pairs, and one float-to-int per axis."""
    sass = _sass(build)
    kernels = {n: b for n, b in sass.items()
               if ("decoder_output_kernelIfLi5" in n or "dsepconv_forward_kernelIfLi5" in n)}
    assert len(kernels) == 2, sorted(kernels)
    for name, body in kernels.items():
        frames = 2 if "decoder_output" in name else 1
        taps = 25 * frames
        assert body.count("FSEL") <= taps, f"{name}: {body.count('FSEL')} FSEL for {taps} taps"
        assert body.count("F2I") <= 2 * taps + 4, f"{name}: {body.count('F2I')} F2I for {taps} taps"
