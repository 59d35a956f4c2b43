"""Tests of the compiled extension ``ldmvfi_fast._C`` (csrc/) against the references.

CPU: forward and backward of ``dsepconv`` vs :func:`dsepconv_reference` (float64 exact to
rounding, float32 to ~1e-6), ``gradcheck`` in float64, the fused ``decoder_output`` vs
:func:`decoder_output_reference`, ``torch.library.opcheck`` (fake kernels, autograd
registration, schema), and the dispatcher's choice.

CUDA (``@pytest.mark.cuda``, skipped without a GPU): the CUDA kernels vs the references in
float32 / float16 / bfloat16.

Without the extension the module is skipped, unless ``LDMVFI_FAST_REQUIRE_NATIVE=1``
(CI that built it), where a missing extension fails the run.
"""
from __future__ import annotations

import pytest
import torch

from _requirements import missing_native, require_native

try:
    import ldmvfi_fast._C  # noqa: F401
except Exception as exc:  # not built
    _msg = (f"native extension ldmvfi_fast._C not importable ({type(exc).__name__}: {exc}); build it with "
            "`pip install --no-build-isolation .` or `python setup.py build_ext --inplace`")
    if require_native():
        pytest.fail(_msg + " [LDMVFI_FAST_REQUIRE_NATIVE=1]", pytrace=False)
    pytest.skip(_msg, allow_module_level=True)

from ldmvfi_fast.ops import (available_backends, decoder_output, decoder_output_reference, dsepconv,
                             dsepconv_reference, maxvit_attention_reference, pick_backend)
from ldmvfi_fast.ops import _native
from _builders import decoder_args, dsepconv_args

OPS = torch.ops.ldmvfi_fast


# ----------------------------------------------------------------------------- inputs
def non_contiguous(t):
    """Same values, transposed memory layout (strides not C-contiguous)."""
    out = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not out.is_contiguous() or t.shape[-1] <= 1 or t.shape[-2] <= 1
    return out


TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=2e-6)}


# ----------------------------------------------------------------------------- dsepconv forward
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [dict(B=2, C=3, K=5, H=7, W=9), dict(B=1, C=2, K=3, H=4, W=6),
                                   dict(B=1, C=1, K=4, H=5, W=3), dict(B=1, C=4, K=1, H=3, W=2)])
def test_dsepconv_forward_matches_reference(dtype, shape):
    args = dsepconv_args(dtype=dtype, **shape)
    out = OPS.dsepconv(*args)
    ref = dsepconv_reference(*args)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dsepconv_forward_heavy_clamping(dtype):
    args = dsepconv_args(dtype=dtype, offset=12.0, seed=3)  # most samples outside the frame
    torch.testing.assert_close(OPS.dsepconv(*args), dsepconv_reference(*args), **TOL[dtype])


def test_dsepconv_non_contiguous():
    args = dsepconv_args(dtype=torch.float32)
    nc = tuple(non_contiguous(t) for t in args)
    assert not any(t.is_contiguous() for t in nc)
    sliced = torch.randn(2, 6, 11, 13)[:, ::2]  # channel-strided input
    nc2 = (sliced,) + args[1:]
    torch.testing.assert_close(OPS.dsepconv(*nc), dsepconv_reference(*args), **TOL[torch.float32])
    torch.testing.assert_close(OPS.dsepconv(*nc2), dsepconv_reference(sliced.contiguous(), *args[1:]),
                               **TOL[torch.float32])


def test_dsepconv_batch_zero():
    args = [t.requires_grad_() for t in dsepconv_args(B=0)]
    out = OPS.dsepconv(*args)
    assert out.shape == (0, 3, 7, 9)
    out.sum().backward()
    assert all(t.grad is not None and t.grad.shape == t.shape for t in args)


def test_dsepconv_shape_errors():
    inp, v, h, ox, oy, m = dsepconv_args()
    with pytest.raises(RuntimeError, match="padded by K-1"):
        OPS.dsepconv(inp[..., :-1], v, h, ox, oy, m)
    with pytest.raises(RuntimeError, match="offset_x must have shape"):
        OPS.dsepconv(inp, v, h, ox[:, :-1], oy, m)
    with pytest.raises(RuntimeError, match="same dtype"):
        OPS.dsepconv(inp, v.float(), h, ox, oy, m)
    with pytest.raises(RuntimeError, match="4-D"):
        OPS.dsepconv(inp[0], v, h, ox, oy, m)
    with pytest.raises(RuntimeError, match="not implemented for 'Half'"):
        OPS.dsepconv(*(t.half() for t in (inp, v, h, ox, oy, m)))


# ----------------------------------------------------------------------------- dsepconv backward
def test_dsepconv_gradcheck():
    args = [t.requires_grad_() for t in dsepconv_args(B=1, C=2, K=3, H=3, W=4, away_from_integers=True,
                                                      offset=2.0, seed=5)]
    assert torch.autograd.gradcheck(OPS.dsepconv, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_dsepconv_gradcheck_clamped():
    """Samples beyond the border: offsets of clamped coordinates get zero gradient."""
    args = [t.requires_grad_() for t in dsepconv_args(B=1, C=1, K=3, H=2, W=3, away_from_integers=True,
                                                      offset=6.0, seed=6)]
    assert torch.autograd.gradcheck(OPS.dsepconv, args, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dsepconv_backward_matches_reference(dtype):
    base = dsepconv_args(dtype=dtype, seed=7)
    grad = torch.randn(2, 3, 7, 9, dtype=dtype, generator=torch.Generator().manual_seed(8))
    a = [t.clone().requires_grad_() for t in base]
    b = [t.clone().requires_grad_() for t in base]
    got = torch.autograd.grad(OPS.dsepconv(*a), a, grad)
    want = torch.autograd.grad(dsepconv_reference(*b), b, grad)
    tol = dict(rtol=1e-4, atol=5e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    names = ("input", "vertical", "horizontal", "offset_x", "offset_y", "mask")
    for name, x, y in zip(names, got, want):
        torch.testing.assert_close(x, y, **tol, msg=lambda m, n=name: f"grad of {n}: {m}")


def test_dsepconv_backward_op_direct_non_contiguous():
    base = dsepconv_args(seed=9)
    grad = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    direct = OPS.dsepconv_backward(non_contiguous(grad), *(non_contiguous(t) for t in base))
    a = [t.clone().requires_grad_() for t in base]
    want = torch.autograd.grad(dsepconv_reference(*a), a, grad)
    for x, y in zip(direct, want):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_dsepconv_double_backward_refused():
    a = [t.requires_grad_() for t in dsepconv_args(B=1, C=1, K=3, H=2, W=2)]
    (g,) = torch.autograd.grad(OPS.dsepconv(*a).sum(), a[:1], create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.sum().backward()


# ----------------------------------------------------------------------------- decoder_output
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [dict(B=2, C=3, K=5, H=7, W=9), dict(B=1, C=3, K=3, H=2, W=5)])
def test_decoder_output_matches_reference(dtype, shape):
    args = decoder_args(dtype=dtype, **shape)
    torch.testing.assert_close(OPS.decoder_output(*args), decoder_output_reference(*args), **TOL[dtype])


def test_decoder_output_non_contiguous_and_batch_zero():
    args = decoder_args(dtype=torch.float32)
    nc = tuple(non_contiguous(t) for t in args)
    torch.testing.assert_close(OPS.decoder_output(*nc), decoder_output_reference(*args), **TOL[torch.float32])
    empty = decoder_args(B=0)
    assert OPS.decoder_output(*empty).shape == (0, 3, 7, 9)


def test_decoder_output_errors():
    args = list(decoder_args(K=4))
    with pytest.raises(RuntimeError, match="must be odd"):
        OPS.decoder_output(*args)
    args = list(decoder_args())
    args[11] = args[11][:, :2]
    with pytest.raises(RuntimeError, match="residual must have shape"):
        OPS.decoder_output(*args)


def test_decoder_output_backward_not_implemented():
    args = [t.requires_grad_() for t in decoder_args(B=1, H=3, W=3)]
    with pytest.raises(RuntimeError, match="not implemented"):
        OPS.decoder_output(*args).sum().backward()


# ----------------------------------------------------------------------------- opcheck
def test_opcheck_dsepconv():
    args = dsepconv_args(B=1, C=2, K=3, H=4, W=5)
    torch.library.opcheck(OPS.dsepconv.default, args)
    torch.library.opcheck(OPS.dsepconv.default, [t.clone().requires_grad_() for t in args])
    grad = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    torch.library.opcheck(OPS.dsepconv_backward.default, (grad,) + args)


def test_opcheck_decoder_output():
    torch.library.opcheck(OPS.decoder_output.default, decoder_args(B=1, H=4, W=5))


def test_export_sees_ops():
    """torch.export traces the ops through their fake kernels (no graph break, op kept)."""

    class Warp(torch.nn.Module):
        def forward(self, input, vertical, horizontal, offset_x, offset_y, mask):
            return OPS.dsepconv(input, vertical, horizontal, offset_x, offset_y, mask) * 2

    args = dsepconv_args(B=1, C=3, K=3, H=4, W=5, dtype=torch.float32)
    ep = torch.export.export(Warp(), args)
    assert "ldmvfi_fast.dsepconv" in str(ep.graph)
    torch.testing.assert_close(ep.module()(*args), 2 * dsepconv_reference(*args), **TOL[torch.float32])


def _maxvit_args(dtype, window, heads, head_dim, B=2, nh=2, nw=3, seed=12, device="cuda"):
    g = torch.Generator().manual_seed(seed)
    H, W, C = nh * window, nw * window, heads * head_dim
    q, k, v = (torch.randn(B, H, W, C, generator=g) for _ in range(3))
    table = torch.randn((2 * window - 1) ** 2, heads, generator=g)
    return tuple(t.to(device, dtype) for t in (q, k, v, table))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("window,heads,head_dim", [(2, 3, 8), (8, 1, 16), (2, 1, 32)])
def test_maxvit_attention_cpu_kernel(dtype, mode, window, heads, head_dim):
    q, k, v, table = _maxvit_args(dtype, window, heads, head_dim, seed=window + heads, device="cpu")
    out = OPS.maxvit_attention(q, k.transpose(1, 2).contiguous().transpose(1, 2), v, table, window, mode == "grid",
                               heads, head_dim ** -0.5)
    ref = maxvit_attention_reference(q, k, v, table, window, mode, heads)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    with pytest.raises(RuntimeError, match="multiples of the window"):
        OPS.maxvit_attention(q[:, 1:], k[:, 1:], v[:, 1:], table, window, False, heads, 1.0)


def test_opcheck_maxvit_attention_cpu():
    q, k, v, table = _maxvit_args(torch.float32, 2, 2, 8, B=1, nh=2, nw=3, seed=0, device="cpu")
    for grid in (False, True):
        torch.library.opcheck(OPS.maxvit_attention.default, (q, k, v, table, 2, grid, 2, 0.25))


# ----------------------------------------------------------------------------- the kernel really ran
def _forbid_references(monkeypatch):
    """Make every reference function raise, wherever it is looked up from."""
    import importlib

    def forbidden(*args, **kwargs):
        raise AssertionError("the native path called a pure-PyTorch reference")

    for modname in ("ldmvfi_fast.ops", "ldmvfi_fast.ops._native", "ldmvfi_fast.ops.dsepconv_ref",
                    "ldmvfi_fast.ops.decoder_output_ref", "ldmvfi_fast.ops.maxvit_ref"):
        mod = importlib.import_module(modname)
        for name in ("dsepconv_reference", "decoder_output_reference", "maxvit_attention_reference"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, forbidden)


def _op_events(fn):
    """Names of the ``ldmvfi_fast::*`` operator events recorded by the profiler while ``fn`` runs."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = fn()
    return out, {e.name for e in prof.events() if e.name.startswith("ldmvfi_fast::")}


@pytest.mark.parametrize("op", ["dsepconv", "decoder_output", "maxvit_attention"])
def test_native_kernel_really_runs(op, monkeypatch):
    """The native entry points run the compiled op (seen by the profiler) and never the
    reference: a wrapper that quietly returned the reference would pass every accuracy test."""
    import ldmvfi_fast.ops as ops_pkg

    if op == "dsepconv":
        args = dsepconv_args(dtype=torch.float32)
        expected = dsepconv_reference(*args)
        calls = [lambda: ops_pkg.dsepconv(*args, backend="native"), lambda: _native.dsepconv(*args)]
    elif op == "decoder_output":
        args = decoder_args(dtype=torch.float32)
        expected = decoder_output_reference(*args)
        calls = [lambda: ops_pkg.decoder_output(*args, backend="native"), lambda: _native.decoder_output(*args)]
    else:  # not dispatched on CPU (the reference is faster there): the wrapper itself
        q, k, v, table = _maxvit_args(torch.float32, 2, 2, 8, B=1, seed=0, device="cpu")
        expected = maxvit_attention_reference(q, k, v, table, 2, "grid", 2)
        calls = [lambda: _native.maxvit_attention(q, k, v, table, 2, "grid", 2)]
    _forbid_references(monkeypatch)
    for call in calls:
        out, events = _op_events(call)
        assert f"ldmvfi_fast::{op}" in events, events
        torch.testing.assert_close(out, expected, **TOL[torch.float32])


def test_native_backward_kernel_really_runs(monkeypatch):
    args = [t.requires_grad_() for t in dsepconv_args(B=1, C=2, K=3, H=4, W=5)]
    _forbid_references(monkeypatch)
    _, events = _op_events(lambda: dsepconv(*args, backend="native").sum().backward())
    assert {"ldmvfi_fast::dsepconv", "ldmvfi_fast::dsepconv_backward"} <= events, events
    assert all(a.grad is not None for a in args)


# ----------------------------------------------------------------------------- limits (Python vs C++)
def _cpp_accepts(device, window, head_dim, heads=1):
    """Whether the C++ op accepts a maxvit_attention call with this window / head_dim."""
    w = max(window, 1)
    q = torch.randn(1, w, 2 * w, heads * head_dim, device=device)
    table = torch.randn(max(2 * window - 1, 1) ** 2, heads, device=device)
    try:
        OPS.maxvit_attention(q, q, q, table, window, False, heads, 0.5)
    except RuntimeError as exc:
        assert "window" in str(exc) or "head_dim" in str(exc), exc
        return False
    return True


def test_maxvit_window_limit_agrees_with_cpp_check():
    """The shared C++ argument check (csrc/ops/maxvit_attention.h) and limits.MAXVIT_NATIVE
    agree at the window boundaries (run on CPU: the check is common to CPU and CUDA)."""
    from ldmvfi_fast.ops.limits import MAXVIT_NATIVE

    top = MAXVIT_NATIVE.max_window
    for window in (0, 1, 2, top - 1, top, top + 1):
        assert _cpp_accepts("cpu", window, 8) == MAXVIT_NATIVE.window_ok(window), window


def test_maxvit_limits_match_the_cuda_sources():
    """The CUDA-only checks are compiled out here: read their constants from csrc/."""
    import re
    from pathlib import Path

    from ldmvfi_fast.ops.limits import MAXVIT_NATIVE

    csrc = Path(__file__).resolve().parents[1] / "csrc"
    header = (csrc / "ops/maxvit_attention.h").read_text()
    lo, hi = map(int, re.search(r"window >= (\d+) && window <= (\d+)", header).groups())
    assert (lo, hi) == (1, MAXVIT_NATIVE.max_window) and MAXVIT_NATIVE.windows is None
    glue = (csrc / "ops/cuda/maxvit_attention_cuda.cu").read_text()
    (mult,) = map(int, re.search(r"\(C / num_heads\) % (\d+) == 0", glue).groups())
    kernel = (csrc / "kernels/maxvit_attention.cuh").read_text()
    k_win, k_mult = map(int, re.search(r"window > (\d+) \|\| \(C / heads\) % (\d+) != 0", kernel).groups())
    assert mult == k_mult == MAXVIT_NATIVE.head_dim_multiple and MAXVIT_NATIVE.head_dims is None
    assert k_win == MAXVIT_NATIVE.max_window


@pytest.mark.cuda
def test_cuda_maxvit_limits_agree_with_cpp_check():
    from ldmvfi_fast.ops.limits import MAXVIT_NATIVE

    _require_cuda_kernel("maxvit_attention")
    m = MAXVIT_NATIVE.head_dim_multiple
    for head_dim in (m // 2, m, m + m // 2, 2 * m, 8 * m):
        assert _cpp_accepts("cuda", 8, head_dim) == MAXVIT_NATIVE.head_dim_ok(head_dim), head_dim
    for window in (1, MAXVIT_NATIVE.max_window, MAXVIT_NATIVE.max_window + 1):
        assert _cpp_accepts("cuda", window, m) == MAXVIT_NATIVE.window_ok(window), window


# ----------------------------------------------------------------------------- dispatcher
def test_dispatcher_picks_native_on_cpu():
    args = dsepconv_args(dtype=torch.float32)
    assert available_backends("dsepconv", args)["native"] is None
    assert pick_backend("dsepconv", args) is _native.dsepconv
    torch.testing.assert_close(dsepconv(*args, backend="cpp"), dsepconv_reference(*args), **TOL[torch.float32])
    dargs = decoder_args(dtype=torch.float32)
    assert available_backends("decoder_output", dargs)["native"] is None
    torch.testing.assert_close(decoder_output(*dargs, backend="native"), decoder_output_reference(*dargs),
                               **TOL[torch.float32])


def test_dispatcher_refusals_have_reasons():
    args = dsepconv_args(dtype=torch.float32)
    assert "dtype" in available_backends("dsepconv", [t.half() for t in args])["native"]
    assert "mixed dtypes" in available_backends("dsepconv", (args[0].double(),) + args[1:])["native"]
    q = torch.randn(1, 8, 8, 32)
    reason = available_backends("maxvit_attention", (q, q, q, torch.randn(225, 1)), window=8, mode="block",
                                num_heads=1)["native"]
    assert "faster on CPU" in reason
    dargs = [t.requires_grad_() for t in decoder_args(dtype=torch.float32)]
    assert "forward only" in available_backends("decoder_output", dargs)["native"]
    # a gradient-requiring dsepconv stays native (C++ autograd)
    assert available_backends("dsepconv", [t.requires_grad_() for t in args])["native"] is None


# ----------------------------------------------------------------------------- CUDA
LOW_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def _require_cuda_kernel(op):
    if not _native.has_kernel(op, "CUDA"):
        missing_native(f"extension built without a CUDA kernel for {op}")


def _check_low_precision(out, ref_fp32, ref_dtype, dtype):
    """Kernel error vs fp32 reference within ~2x the reference's own error in ``dtype``."""
    err = (out.float() - ref_fp32).abs().max().item()
    ref_err = (ref_dtype.float() - ref_fp32).abs().max().item()
    assert out.dtype == dtype
    assert err <= 2 * ref_err + LOW_ATOL[dtype], f"{dtype}: error {err:.3g} vs reference's own {ref_err:.3g}"


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_dsepconv_forward(dtype):
    _require_cuda_kernel("dsepconv")
    args = dsepconv_args(B=2, C=3, K=5, H=37, W=45, dtype=dtype, device="cuda")
    out = OPS.dsepconv(*args)
    ref32 = dsepconv_reference(*(t.float() for t in args))
    _check_low_precision(out, ref32, dsepconv_reference(*args), dtype)
    nc = tuple(non_contiguous(t) for t in args)
    _check_low_precision(OPS.dsepconv(*nc), ref32, dsepconv_reference(*args), dtype)
    assert OPS.dsepconv(*dsepconv_args(B=0, dtype=dtype, device="cuda")).shape == (0, 3, 7, 9)


@pytest.mark.cuda
def test_cuda_dsepconv_backward():
    _require_cuda_kernel("dsepconv_backward")
    base = dsepconv_args(B=2, C=3, K=5, H=13, W=17, dtype=torch.float32, device="cuda", seed=11)
    grad = torch.randn(2, 3, 13, 17, device="cuda")
    a = [t.clone().requires_grad_() for t in base]
    b = [t.clone().requires_grad_() for t in base]
    got = torch.autograd.grad(OPS.dsepconv(*a), a, grad)
    want = torch.autograd.grad(dsepconv_reference(*b), b, grad)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_decoder_output(dtype):
    _require_cuda_kernel("decoder_output")
    args = decoder_args(B=2, C=3, K=5, H=37, W=45, dtype=dtype, device="cuda")
    out = OPS.decoder_output(*args)
    ref32 = decoder_output_reference(*(t.float() for t in args))
    _check_low_precision(out, ref32, decoder_output_reference(*args), dtype)


@pytest.mark.cuda
def test_cuda_opcheck_dsepconv_and_decoder_output():
    _require_cuda_kernel("dsepconv")
    torch.library.opcheck(OPS.dsepconv.default, dsepconv_args(B=1, C=2, K=3, H=4, W=5, dtype=torch.float32,
                                                              device="cuda"))
    if _native.has_kernel("decoder_output", "CUDA"):
        torch.library.opcheck(OPS.decoder_output.default, decoder_args(B=1, H=4, W=5, dtype=torch.float32,
                                                                       device="cuda"))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("window,heads,head_dim", [(8, 2, 32), (2, 1, 256), (8, 1, 256)])
def test_cuda_maxvit_attention(dtype, mode, window, heads, head_dim):
    _require_cuda_kernel("maxvit_attention")
    q, k, v, table = _maxvit_args(dtype, window, heads, head_dim)
    scale = head_dim ** -0.5
    out = OPS.maxvit_attention(q, k, v, table, window, mode == "grid", heads, scale)
    ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table.float(), window, mode, heads, scale)
    ref = maxvit_attention_reference(q, k, v, table, window, mode, heads, scale)
    _check_low_precision(out, ref32, ref, dtype)
    assert available_backends("maxvit_attention", (q, k, v, table), window=window, mode=mode,
                              num_heads=heads)["native"] is None
    got = _native.maxvit_attention(q, k, v, table, window, mode, heads)  # mode -> grid bool, default scale
    _check_low_precision(got, ref32, ref, dtype)


@pytest.mark.cuda
def test_cuda_opcheck_maxvit_attention():
    _require_cuda_kernel("maxvit_attention")
    q, k, v, table = _maxvit_args(torch.float32, 8, 2, 32, B=1, nh=1, nw=2)
    for grid in (False, True):
        torch.library.opcheck(OPS.maxvit_attention.default, (q, k, v, table, 8, grid, 2, 32 ** -0.5))


# ----------------------------------------------------------------------------- import on its own
def test_the_extension_imports_in_a_fresh_interpreter_without_torch_first():
    """``import ldmvfi_fast`` is torch-free, and the extension links libtorch: importing
    ``ldmvfi_fast._C`` as the first thing (CI's install check, a user's script) must still load
    (the package imports torch first) and register the ops."""
    import subprocess
    import sys
    code = ("import sys, ldmvfi_fast; assert 'torch' not in sys.modules\n"
            "import ldmvfi_fast._C\n"
            "import torch; assert hasattr(torch.ops.ldmvfi_fast, 'dsepconv'); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
