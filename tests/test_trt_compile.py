"""Compile checks of the TensorRT C++ code against TensorRT's public headers.

TensorRT's libraries cannot be installed here; its headers come from NVIDIA/TensorRT on GitHub
(``include/NvInfer*.h``). Set ``TENSORRT_INCLUDE_DIR`` to that folder to run these tests;
without it they skip (CI skips them). They need g++ and the CUDA toolkit's headers
(``cuda_runtime_api.h``: ``$CUDA_HOME/include``, ``/usr/local/cuda/include`` or beside nvcc).

* the plugin library compiles with -Wall -Wextra -Werror (TensorRT's headers as system headers);
* built as a shared library with hidden visibility (as CMake builds it), it exports
  ``getCreators`` and ``setLoggerFinder`` (TensorRT's own ``TENSORRTAPI`` does not export
  outside TensorRT: a first CMake build showed nothing exported);
* the host-only harness (csrc/plugins/tensorrt/tests/plugin_harness.cpp: the plugins linked
  with stubs of the C API, no libnvinfer, no GPU) builds and its checks pass;
* the C++ app's TensorRT backend (export/cpp/trt/trt_engine.cpp) compiles against the
  TensorRT, CUDA and torch headers (a CPU build of torch lacks one generated header,
  ``c10/cuda/impl/cuda_cmake_macros.h``; a stand-in is made for the check).

Recorded run (2026-11-25): headers of NVIDIA/TensorRT tags v10.16 (10.16.0) and main (11.1.0),
g++ 12.2, CUDA 13.0 headers, torch 2.13.0+cpu headers: all pass.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "csrc" / "plugins" / "tensorrt"


def _trt_include() -> Path:
    d = os.environ.get("TENSORRT_INCLUDE_DIR")
    if not d:
        pytest.skip("set TENSORRT_INCLUDE_DIR to TensorRT's include/ (headers of github.com/NVIDIA/TensorRT)")
    p = Path(d)
    if not (p / "NvInferRuntime.h").is_file():
        pytest.fail(f"TENSORRT_INCLUDE_DIR={d} has no NvInferRuntime.h")
    return p


def _cuda_include() -> Path:
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(str(Path(nvcc).resolve().parents[1]))
    for c in cands:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file():
            return Path(c) / "include"
    pytest.skip("CUDA toolkit headers (cuda_runtime_api.h) not found")


def _gxx() -> str:
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not found")
    return gxx


def _run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr[-4000:]}"
    return r


def _flags(trt: Path, cuda: Path) -> list[str]:
    return ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-isystem", str(trt), "-isystem", str(cuda),
            f"-I{REPO / 'csrc' / 'include'}"]


def test_plugins_compile_against_headers():
    trt, cuda, gxx = _trt_include(), _cuda_include(), _gxx()
    _run([gxx, *_flags(trt, cuda), "-fPIC", "-fsyntax-only", str(PLUGINS / "ldmvfi_trt_plugins.cpp")])


def test_plugin_library_exports_get_creators(tmp_path):
    """Built as CMake builds it (hidden visibility), the library exports getCreators and
    setLoggerFinder, which IPluginRegistry::loadLibrary looks up."""
    trt, cuda, gxx = _trt_include(), _cuda_include(), _gxx()
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("nm not found")
    lib = tmp_path / "libldmvfi_fast_trt_plugins.so"
    _run([gxx, *_flags(trt, cuda), "-fPIC", "-shared", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
          str(PLUGINS / "ldmvfi_trt_plugins.cpp"), "-o", str(lib)])  # C API symbols left undefined
    exported = {line.split()[-1] for line in _run([nm, "-D", "--defined-only", str(lib)]).stdout.splitlines()}
    assert {"getCreators", "setLoggerFinder"} <= exported, sorted(exported)


def test_plugin_harness_passes(tmp_path):
    trt, cuda, gxx = _trt_include(), _cuda_include(), _gxx()
    exe = tmp_path / "plugin_harness"
    _run([gxx, *_flags(trt, cuda), str(PLUGINS / "ldmvfi_trt_plugins.cpp"),
          str(PLUGINS / "tests" / "plugin_harness.cpp"), "-o", str(exe)])
    r = _run([str(exe)], timeout=60)
    assert r.stdout.startswith("ok "), r.stdout


def test_cpp_app_backend_compiles(tmp_path):
    trt, cuda, gxx = _trt_include(), _cuda_include(), _gxx()
    src = REPO / "export" / "cpp" / "trt" / "trt_engine.cpp"
    if not (REPO / "export" / "cpp" / "src" / "engine.h").is_file():
        pytest.skip("export/cpp (the C++ application) is not in this checkout")
    import torch.utils.cpp_extension as ext

    inc = [f for d in ext.include_paths() for f in ("-isystem", d)]
    shim = tmp_path / "shim"
    macros = Path(ext.include_paths()[0]) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    if not macros.is_file():  # CPU torch: the generated header is missing
        (shim / "c10" / "cuda" / "impl").mkdir(parents=True)
        (shim / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
        inc = ["-isystem", str(shim), *inc]
    _run([gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-isystem", str(trt),
          "-isystem", str(cuda), *inc, f"-I{REPO / 'export' / 'cpp' / 'src'}",
          f"-I{REPO / 'export' / 'cpp' / 'include'}", str(src)])
