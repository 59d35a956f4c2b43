"""The standalone CMake build of the CUDA kernels (CMakeLists.txt at the repository root)
configures and compiles for sm_80 and sm_90 with nvcc. Compile only: nothing runs on a
GPU. Skipped, with the reason, when cmake or nvcc is missing. ~1 minute on 2 cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_nvcc() -> str | None:
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    for root in filter(None, (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        cand = Path(root) / "bin" / "nvcc"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _run(cmd, cwd, timeout):
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-6000:]}"
    return proc.stdout


def test_cmake_build_sm80_sm90(tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc (CUDA toolkit) not found on PATH, CUDA_HOME or /usr/local/cuda")
    build = tmp_path / "build"
    _run([cmake, "-S", str(REPO), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={nvcc}",
          "-DCMAKE_CUDA_ARCHITECTURES=80;90", "-DCMAKE_BUILD_TYPE=Release",
          "-DLDMVFI_FAST_BUILD_EXAMPLES=ON"], REPO, timeout=120)
    _run([cmake, "--build", str(build), "-j2"], REPO, timeout=170)
    libs = list(build.glob("libldmvfi_fast_kernels.so*")) + list(build.glob("*ldmvfi_fast_kernels*.dll"))
    assert libs, f"no library in {sorted(p.name for p in build.iterdir())}"
    assert (build / "c_api_example").exists() or (build / "c_api_example.exe").exists()

    # The C API symbols are exported (and nothing else from the kernels leaks).
    nm = shutil.which("nm")
    so = build / "libldmvfi_fast_kernels.so"
    if nm and so.exists():
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

    # Both architectures are embedded.
    cuobjdump = shutil.which("cuobjdump") or str(Path(nvcc).parent / "cuobjdump")
    if so.exists() and Path(cuobjdump).exists():
        listing = subprocess.run([cuobjdump, "--list-elf", str(so)], stdout=subprocess.PIPE, text=True).stdout
        assert "sm_80" in listing and "sm_90" in listing, listing
