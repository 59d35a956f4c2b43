"""setup.py's CUDA build decisions, without building anything (CPU, no CUDA, ~1 s).

The decisions are small functions of setup.py (architectures when no GPU is visible, the
CUDA_HOME choice, the pip ``nvidia-*`` include folders, the toolkit/torch CUDA version check);
the file is loaded under another module name, so its ``if __name__ == "__main__"`` build does
not run. The real CUDA build with no GPU is CI's "cuda build (no GPU)" stage (``.ci/run``).
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sp():
    """setup.py loaded as a module (its build does not run)."""
    import setuptools

    calls = []
    real_setup = setuptools.setup
    setuptools.setup = lambda *a, **k: calls.append((a, k))
    try:
        spec = importlib.util.spec_from_file_location("ldmvfi_fast_setup", REPO / "setup.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        setuptools.setup = real_setup
    assert calls == [], "loading setup.py as a module must not run setup()"
    return mod


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fake_nvcc(path: Path, release: str = "13.0") -> Path:
    _touch(path, f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.88'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _toolkit(root: Path, libdir: str = "lib64", cudart: bool = True, release: str = "13.0") -> Path:
    _fake_nvcc(root / "bin" / "nvcc", release)
    (root / libdir).mkdir(parents=True, exist_ok=True)
    if cudart:
        _touch(root / libdir / "libcudart.so.13")
    _touch(root / "include" / "cuda_runtime.h")
    return root


# ---- architectures -------------------------------------------------------------------------

def test_arch_list_no_gpu_no_env_uses_default(sp):
    arch, line = sp.choose_arch_list(None, 0)
    assert arch == sp.DEFAULT_CUDA_ARCHS
    assert sp.DEFAULT_CUDA_ARCHS in line and "no GPU visible" in line
    assert sp.choose_arch_list("  ", 0)[0] == sp.DEFAULT_CUDA_ARCHS  # blank counts as unset


def test_arch_list_respects_env(sp):
    for gpus in (0, 2):
        arch, line = sp.choose_arch_list("8.6", gpus)
        assert arch == "8.6" and "TORCH_CUDA_ARCH_LIST=8.6" in line


def test_arch_list_visible_gpu_keeps_torch_default(sp):
    arch, line = sp.choose_arch_list("", 1)
    assert arch is None and "1 visible GPU" in line


def test_arch_list_native_without_gpu_is_an_error(sp):
    with pytest.raises(sp.BuildConfigError, match="native"):
        sp.choose_arch_list("native", 0)
    assert sp.choose_arch_list("native", 1)[0] == "native"


def test_default_arch_list_parses_in_torch(sp, monkeypatch):
    """torch's extension builder turns the default into SASS for sm_80 and sm_90 plus PTX."""
    from torch.utils import cpp_extension

    get_flags = getattr(cpp_extension, "_get_cuda_arch_flags", None)
    if get_flags is None:
        pytest.skip("torch.utils.cpp_extension._get_cuda_arch_flags not in this torch")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", sp.DEFAULT_CUDA_ARCHS)
    flags = get_flags()
    assert "-gencode=arch=compute_80,code=sm_80" in flags
    assert "-gencode=arch=compute_90,code=sm_90" in flags
    assert any(f.endswith("code=compute_90") for f in flags), flags  # PTX for newer GPUs


# ---- CUDA_HOME -----------------------------------------------------------------------------

def test_cuda_home_skips_guess_without_cudart(sp, tmp_path):
    """/usr/local (torch's guess from /usr/local/bin/nvcc) has no libcudart: /usr/local/cuda is used."""
    usr_local = _toolkit(tmp_path / "usr_local", libdir="lib", cudart=False)
    cuda = _toolkit(tmp_path / "cuda")
    home, line = sp.choose_cuda_home(None, str(usr_local), fallbacks=(str(cuda),))
    assert home == str(cuda)
    assert str(usr_local) in line and "libcudart" in line


def test_cuda_home_keeps_valid_guess(sp, tmp_path):
    guess = _toolkit(tmp_path / "guess", libdir="lib")  # lib (no lib64) also counts
    other = _toolkit(tmp_path / "other")
    assert sp.choose_cuda_home(None, str(guess), fallbacks=(str(other),))[0] == str(guess)


def test_cuda_home_follows_nvcc_symlink(sp, tmp_path):
    real = _toolkit(tmp_path / "cuda-13.0")
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "nvcc"
    link.symlink_to(real / "bin" / "nvcc")
    home, _ = sp.choose_cuda_home(None, str(tmp_path), str(link), fallbacks=())
    assert home == str(real)


def test_cuda_home_lib64_without_cudart_is_rejected(sp, tmp_path):
    """torch links lib64 when it exists: libcudart only in lib does not help."""
    root = _toolkit(tmp_path / "cuda", libdir="lib")
    (root / "lib64").mkdir()
    assert "lib64" in sp.cuda_home_problem(str(root))


def test_cuda_home_user_set_valid_and_invalid(sp, tmp_path):
    mine = _toolkit(tmp_path / "mine")
    other = _toolkit(tmp_path / "other")
    home, line = sp.choose_cuda_home(str(mine), str(other))
    assert home == str(mine) and "set in the environment" in line
    bad = _toolkit(tmp_path / "bad", cudart=False)
    with pytest.raises(sp.BuildConfigError) as err:
        sp.choose_cuda_home(str(bad), str(other))
    assert f"CUDA_HOME={bad}" in str(err.value) and "libcudart" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(sp.BuildConfigError, match="no such folder"):
        sp.choose_cuda_home(str(tmp_path / "missing"), str(other))


def test_cuda_home_none_usable(sp, tmp_path):
    bad = _toolkit(tmp_path / "bad", cudart=False)
    home, line = sp.choose_cuda_home(None, str(bad), fallbacks=(str(tmp_path / "nothing"),))
    assert home is None and "no usable CUDA toolkit" in line and "CUDA_HOME" in line
    assert sp.choose_cuda_home(None, None, fallbacks=())[0] is None


# ---- include folders of the pip nvidia-* packages ----------------------------------------

def test_nvidia_includes_only_when_needed(sp, tmp_path):
    site = tmp_path / "site-packages"
    for h in sp.TORCH_TOOLKIT_HEADERS:
        _touch(site / "nvidia" / "cu13" / "include" / h)
    _touch(site / "nvidia" / "cudnn" / "include" / "cudnn.h")
    cuda_inc = tmp_path / "cuda" / "include"
    _touch(cuda_inc / "cuda_runtime.h")
    _touch(cuda_inc / "cublas_v2.h")
    dirs, still = sp.nvidia_include_dirs(str(cuda_inc), str(site))
    assert dirs == [str(site / "nvidia" / "cu13" / "include")] and still == []
    for h in sp.TORCH_TOOLKIT_HEADERS:  # a full toolkit: nothing added
        _touch(cuda_inc / h)
    assert sp.nvidia_include_dirs(str(cuda_inc), str(site)) == ([], [])


def test_nvidia_includes_reports_still_missing(sp, tmp_path):
    site = tmp_path / "site-packages"
    _touch(site / "nvidia" / "cusparse" / "include" / "cusparse.h")
    cuda_inc = tmp_path / "cuda" / "include"
    cuda_inc.mkdir(parents=True)
    dirs, still = sp.nvidia_include_dirs(str(cuda_inc), str(site), headers=("cusparse.h", "cublasLt.h"))
    assert dirs == [str(site / "nvidia" / "cusparse" / "include")] and still == ["cublasLt.h"]


# ---- versions ------------------------------------------------------------------------------

def test_parse_nvcc_version(sp):
    out = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n"
           "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0\n")
    assert sp.parse_nvcc_version(out) == "13.0"
    assert sp.parse_nvcc_version("Cuda compilation tools, release 12.10, V12.10.1") == "12.10"
    assert sp.parse_nvcc_version("not nvcc") is None


def test_version_mismatch_message(sp):
    assert sp.cuda_version_mismatch("13.0", "13.2") is None
    msg = sp.cuda_version_mismatch("12.4", "13.0", "/usr/local/cuda-12.4", "2.14.1+cu130")
    assert msg and "\n" not in msg
    assert "12.4" in msg and "13.0" in msg and "/usr/local/cuda-12.4" in msg and "2.14.1+cu130" in msg
    assert sp.cuda_version_mismatch("9.2", "10.1") is not None  # numbers, not strings


# ---- wiring --------------------------------------------------------------------------------

def _fake_torch(tmp_path: Path, cuda: str = "13.0", gpus: int = 0):
    site = tmp_path / "site-packages"
    init = _touch(site / "torch" / "__init__.py")
    return types.SimpleNamespace(__version__=f"2.14.1+cu{cuda.replace('.', '')}", __file__=str(init),
                                 version=types.SimpleNamespace(cuda=cuda),
                                 cuda=types.SimpleNamespace(device_count=lambda: gpus)), site


def test_configure_cuda_sets_home_arch_and_includes(sp, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "")  # blank = unset; restored after the test
    monkeypatch.setenv("CUDA_HOME", "/elsewhere")
    torch, site = _fake_torch(tmp_path)
    _touch(site / "nvidia" / "cu13" / "include" / "cusparse.h")
    cuda = _toolkit(tmp_path / "cuda")
    for h in sp.TORCH_TOOLKIT_HEADERS[1:]:
        _touch(cuda / "include" / h)
    cpp_extension = types.SimpleNamespace(CUDA_HOME="/usr/local")
    dirs = sp._configure_cuda(torch, cpp_extension, str(cuda))
    assert cpp_extension.CUDA_HOME == str(cuda) and os.environ["CUDA_HOME"] == str(cuda)
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == sp.DEFAULT_CUDA_ARCHS
    assert dirs == [str(site / "nvidia" / "cu13" / "include")]
    err = capsys.readouterr().err
    assert f"ldmvfi_fast build: GPU architectures TORCH_CUDA_ARCH_LIST={sp.DEFAULT_CUDA_ARCHS}" in err
    assert "ldmvfi_fast build: " in err and "nvidia/cu13/include" in err


def test_configure_cuda_version_mismatch_fails_in_one_line(sp, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setenv("CUDA_HOME", "/elsewhere")
    torch, _ = _fake_torch(tmp_path, cuda="13.0")
    cuda = _toolkit(tmp_path / "cuda-12.4", release="12.4")
    with pytest.raises(sp.BuildConfigError, match=r"CUDA toolkit 12\.4 .* built for CUDA 13\.0"):
        sp._configure_cuda(torch, types.SimpleNamespace(CUDA_HOME=None), str(cuda))


def test_main_turns_config_errors_into_one_line(sp, monkeypatch):
    def broken():
        raise sp.BuildConfigError("CUDA toolkit 12.4 but torch is built for CUDA 13.0")

    monkeypatch.setattr(sp, "_native_build", broken)
    with pytest.raises(SystemExit) as exc:
        sp.main()
    assert exc.value.code == "ldmvfi_fast build: error: CUDA toolkit 12.4 but torch is built for CUDA 13.0"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell script as nvcc")
def test_nvcc_version_runs_nvcc(sp, tmp_path):
    assert sp._nvcc_version(str(_fake_nvcc(tmp_path / "nvcc", "12.8"))) == "12.8"
    assert sp._nvcc_version(str(tmp_path / "missing")) is None
