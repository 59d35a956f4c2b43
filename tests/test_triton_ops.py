"""Tests of the Triton backend (``ldmvfi_fast.ops._triton`` + ``ldmvfi_fast.ops.triton_kernels``).

* ``test_interpreted_kernels``: every Triton kernel against its PyTorch reference under
  ``TRITON_INTERPRET=1`` on CPU tensors. The interpreter flag must be set before triton is
  imported, and this pytest process may already have imported triton (torch can), so all
  the interpreted checks run in one subprocess: ``tests/_triton_interp_checks.py``.
* provider refusals (device, dtype, window, head_dim, autograd, missing triton), checked
  in-process without importing triton.
* ``@pytest.mark.cuda``: the same kernels compiled for a GPU, float32 and bfloat16.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ldmvfi_fast.ops import _triton
from ldmvfi_fast.ops.decoder_output_ref import decoder_output_reference
from ldmvfi_fast.ops.dsepconv_ref import dsepconv_reference
from ldmvfi_fast.ops.maxvit_ref import maxvit_attention_reference
from _builders import decoder_args, dsepconv_args
from _requirements import missing_tool

REPO = Path(__file__).resolve().parents[1]
HAVE_TRITON = importlib.util.find_spec("triton") is not None


def needs_triton(test):
    """Skip without triton on a dev machine; under CI=true a missing triton fails."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if not HAVE_TRITON:
            missing_tool("triton is not installed (pip install triton)")
        return test(*args, **kwargs)

    return wrapper


def _env_with_repo(**extra) -> dict:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@needs_triton
def test_interpreted_kernels():
    """All interpreted checks in one subprocess (see tests/_triton_interp_checks.py)."""
    script = REPO / "tests" / "_triton_interp_checks.py"
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=_env_with_repo(TRITON_INTERPRET="1"),
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    print(proc.stderr, file=sys.stderr)
    assert proc.returncode == 0, f"interpreted Triton checks failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"


def test_provider_import_does_not_import_triton():
    code = ("import sys, ldmvfi_fast.ops, ldmvfi_fast.ops._triton as t; "
            "assert 'triton' not in sys.modules, 'triton imported eagerly'; print(t.PROVIDER.name)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env_with_repo(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "triton"


def test_provider_refuses_when_triton_missing():
    prov = _triton._Triton()
    prov._installed = False
    reason = prov.check("dsepconv", (torch.zeros(1),))
    assert reason is not None and "not installed" in reason


def _dsep_args(dtype=torch.float32, device="cpu", B=1, C=3, H=4, W=5, K=5):
    if device == "meta":
        return tuple(t.to("meta") for t in dsepconv_args(B, C, K, H, W, dtype=dtype))
    return dsepconv_args(B, C, K, H, W, dtype=dtype, device=device)


@needs_triton
def test_provider_refuses_cpu_without_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = _triton._Triton().check("dsepconv", _dsep_args())
    assert reason is not None and "TRITON_INTERPRET" in reason


@needs_triton
@pytest.mark.parametrize("case, expect", [
    ("float64", "dtype"),
    ("meta", "device type"),
    ("window4", "window"),
    ("head_dim48", "head_dim"),
    ("head_dim16", "head_dim"),
    ("mixed_dtypes", "dtype"),
    ("maxvit_grad", "backward"),
])
def test_provider_refusals(monkeypatch, case, expect):
    """Refusals that are decided before the kernels are imported (triton stays unimported)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    prov = _triton._Triton()
    prov._load = lambda: pytest.fail("check() should refuse before importing the kernels")  # type: ignore
    kw = dict(window=2, mode="block", num_heads=2)
    q = torch.zeros(1, 4, 4, 64)
    table = torch.zeros(9, 2)
    if case == "float64":
        reason = prov.check("dsepconv", _dsep_args(torch.float64))
    elif case == "meta":
        reason = prov.check("dsepconv", _dsep_args(device="meta"))
    elif case == "window4":
        q8 = torch.zeros(1, 8, 8, 64)
        reason = prov.check("maxvit_attention", (q8, q8, q8, torch.zeros(49, 2)), **dict(kw, window=4))
    elif case == "head_dim48":
        q96 = torch.zeros(1, 4, 4, 96)
        reason = prov.check("maxvit_attention", (q96, q96, q96, table), **kw)
    elif case == "head_dim16":
        reason = prov.check("maxvit_attention", (q, q, q, table), **dict(kw, num_heads=4))
    elif case == "mixed_dtypes":
        reason = prov.check("maxvit_attention", (q, q.half(), q, table), **kw)
    else:
        qg = q.clone().requires_grad_()
        reason = prov.check("maxvit_attention", (qg, qg, qg, table), **kw)
        with torch.no_grad():  # no autograd needed under no_grad: not refused for that reason
            prov._load = lambda: None  # type: ignore
            assert prov.check("maxvit_attention", (qg, qg, qg, table), **kw) is None
    assert reason is not None and expect in reason, reason


# ----------------------------------------------------------------------------- CUDA

def _gpu_impl(op):
    prov = _triton.PROVIDER
    return prov.get(op)


def _tol(out, ref32, ref_low):
    if out.dtype == torch.float32:
        return 1e-4 * max(1.0, ref32.abs().max().item())
    return 2.0 * (ref_low.float() - ref32).abs().max().item() + torch.finfo(out.dtype).eps * ref32.abs().max().item()


@needs_triton
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_dsepconv_forward(dtype):
    args = dsepconv_args(2, 3, 5, 33, 47, dtype=dtype, device="cuda", seed=0, channels_last=True, kernel_scale=1 / 5)
    assert _triton.PROVIDER.check("dsepconv", args) is None
    out = _gpu_impl("dsepconv")(*args)
    ref32 = dsepconv_reference(*[t.float() for t in args])
    err = (out.float() - ref32).abs().max().item()
    assert err <= _tol(out, ref32, dsepconv_reference(*args)), err


@needs_triton
@pytest.mark.cuda
def test_cuda_dsepconv_backward():
    args = dsepconv_args(2, 3, 5, 17, 23, dtype=torch.float32, device="cuda", seed=1, kernel_scale=1 / 5)
    ref_args = [t.clone().requires_grad_() for t in args]
    tri_args = [t.clone().requires_grad_() for t in args]
    ref = dsepconv_reference(*ref_args)
    gout = torch.randn_like(ref)
    ref.backward(gout)
    _gpu_impl("dsepconv")(*tri_args).backward(gout)
    for a, b in zip(tri_args, ref_args):
        scale = max(1.0, b.grad.abs().max().item())
        assert (a.grad - b.grad).abs().max().item() <= 1e-4 * scale


@needs_triton
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_decoder_output(dtype):
    args = decoder_args(2, 3, 5, 31, 45, dtype=dtype, device="cuda", seed=2, kernel_scale=1 / 5)
    out = _gpu_impl("decoder_output")(*args)
    ref32 = decoder_output_reference(*[t.float() for t in args])
    err = (out.float() - ref32).abs().max().item()
    assert err <= _tol(out, ref32, decoder_output_reference(*args)), err


@needs_triton
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window, head_dim, heads", [(2, 32, 4), (8, 32, 2), (8, 256, 1), (2, 256, 2)])
@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("cross", [False, True])
def test_cuda_maxvit_attention(dtype, window, head_dim, heads, mode, cross):
    g = torch.Generator(device="cuda").manual_seed(3)
    B, H, W, C = 2, 16, 24, heads * head_dim
    q = torch.randn(B, H, W, C, device="cuda", generator=g).to(dtype)
    k = torch.randn(B, H, W, C, device="cuda", generator=g).to(dtype) if cross else q
    v = torch.randn(B, W, H, C, device="cuda", generator=g).to(dtype).transpose(1, 2) if cross else q
    table = torch.randn((2 * window - 1) ** 2, heads, device="cuda", generator=g)
    assert _triton.PROVIDER.check("maxvit_attention", (q, k, v, table), window=window, mode=mode,
                                  num_heads=heads) is None
    out = _gpu_impl("maxvit_attention")(q, k, v, table, window, mode, heads)
    ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table, window, mode, heads)
    ref_low = maxvit_attention_reference(q, k, v, table, window, mode, heads)
    err = (out.float() - ref32).abs().max().item()
    assert err <= _tol(out, ref32, ref_low), err
