"""GPU tests of the CUDA kernels behind the torch ops ``torch.ops.ldmvfi_fast.*``.

Every case compares the CUDA op with the pure-PyTorch reference
(``ldmvfi_fast/ops/*_ref.py``) on the same inputs:

* float64: the kernels compute in float64, so they match the float64 reference to
  rounding, and ``torch.autograd.gradcheck`` runs on the DSepConv forward/backward pair;
* float32: close to the float64 reference (forward and all six gradients);
* float16 / bfloat16: the kernel's error against the float32 reference (same
  low-precision inputs, upcast) must be within 2x the reference's own error in that dtype,
  plus one unit in the last place of the output's magnitude (rounding-order slack).

Also: odd sizes, batch 0, non-contiguous and strided inputs, C > 4 (channel chunks),
K other than 5 (the generic path), and ``torch.library.opcheck``.

All tests carry ``@pytest.mark.cuda`` (skipped without a GPU by tests/conftest.py) and
skip when the extension ``ldmvfi_fast._C`` or its CUDA kernels are missing, unless
``LDMVFI_FAST_REQUIRE_NATIVE=1``: then that is a failure.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from ldmvfi_fast.ops.decoder_output_ref import decoder_output_reference
from ldmvfi_fast.ops.dsepconv_ref import dsepconv_reference
from ldmvfi_fast.ops.maxvit_ref import maxvit_attention_reference
from _builders import decoder_args, dsepconv_args
from _requirements import missing_native

pytestmark = pytest.mark.cuda

LOW = (torch.float16, torch.bfloat16)
OPS = ("dsepconv", "dsepconv_backward", "decoder_output", "maxvit_attention")


@pytest.fixture(scope="module")
def ops():
    """torch.ops.ldmvfi_fast with CUDA kernels registered (skips otherwise; fails under
    LDMVFI_FAST_REQUIRE_NATIVE=1)."""
    try:
        importlib.import_module("ldmvfi_fast._C")
    except ImportError as exc:
        missing_native(f"extension ldmvfi_fast._C is not built: {exc}")
    for name in OPS:
        if not torch._C._dispatch_has_kernel_for_dispatch_key(f"ldmvfi_fast::{name}", "CUDA"):
            missing_native(f"ldmvfi_fast._C was built without the CUDA kernel of {name}")
    try:  # fake (meta) kernels for opcheck / torch.compile, if the package provides them
        importlib.import_module("ldmvfi_fast.ops._native")
    except ImportError:
        pass
    return torch.ops.ldmvfi_fast


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def dsepconv_inputs(B, C, K, H, W, dtype=torch.float32, seed=0, offset_scale=3.0, away_from_integers=False):
    """The shared builder (tests/_builders.py) on CUDA; offsets large enough to clamp at the borders."""
    return list(dsepconv_args(B, C, K, H, W, dtype=dtype, device="cuda", seed=seed, offset=offset_scale,
                              away_from_integers=away_from_integers))


def decoder_inputs(B, C, K, H, W, dtype=torch.float32, seed=0, offset_scale=3.0):
    """The shared builder on CUDA."""
    return list(decoder_args(B, C, K, H, W, dtype=dtype, device="cuda", seed=seed, offset=offset_scale))


def assert_within_ref_error(out, ref_hi, ref_same_dtype, what, floor=0.0):
    """Kernel error vs a high-precision reference <= 2x the reference's own error in the
    kernel's dtype + one ulp of the output magnitude (+ ``floor``)."""
    out, ref_hi, ref_lp = out.double(), ref_hi.double(), ref_same_dtype.double()
    assert torch.isfinite(out).all(), f"{what}: non-finite values"
    err = (out - ref_hi).abs().max().item() if out.numel() else 0.0
    ref_err = (ref_lp - ref_hi).abs().max().item() if out.numel() else 0.0
    ulp = torch.finfo(ref_same_dtype.dtype).eps * (ref_hi.abs().max().item() if out.numel() else 0.0)
    assert err <= 2 * ref_err + ulp + floor, (
        f"{what}: kernel error {err:.3e} > 2 x reference error {ref_err:.3e} + ulp {ulp:.3e} + {floor:.1e}")


# --------------------------------------------------------------------------------------
# DSepConv forward

DSEP_SHAPES = [  # (B, C, K, H, W)
    (1, 3, 5, 8, 8),
    (2, 3, 5, 17, 31),  # odd sizes, partial blocks
    (1, 6, 5, 9, 13),  # C > 4: two channel chunks
    (2, 3, 3, 10, 12),  # generic-K path
    (1, 2, 7, 9, 11),
    (1, 1, 1, 4, 4),
]


@pytest.mark.parametrize("shape", DSEP_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dsepconv_forward(ops, shape, dtype):
    args = dsepconv_inputs(*shape, dtype=dtype)
    out = ops.dsepconv(*args)
    ref = dsepconv_reference(*[a.double() for a in args])
    assert out.dtype == dtype and out.shape == ref.shape
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("shape", [(2, 3, 5, 17, 31), (1, 6, 5, 9, 13), (2, 3, 3, 10, 12)])
@pytest.mark.parametrize("dtype", LOW)
def test_dsepconv_forward_low_precision(ops, shape, dtype):
    args = dsepconv_inputs(*shape, dtype=dtype)
    out = ops.dsepconv(*args)
    assert out.dtype == dtype
    ref32 = dsepconv_reference(*[a.float() for a in args])
    ref_lp = dsepconv_reference(*args)
    assert_within_ref_error(out, ref32, ref_lp, f"dsepconv {dtype}")


def test_dsepconv_noncontiguous(ops):
    args = dsepconv_inputs(2, 3, 5, 11, 14)
    # same values, other strides: channels-last input, transposed heads
    nc = [args[0].to(memory_format=torch.channels_last)]
    nc += [a.transpose(2, 3).contiguous().transpose(2, 3) for a in args[1:]]
    assert not any(t.is_contiguous() for t in nc)
    torch.testing.assert_close(ops.dsepconv(*nc), ops.dsepconv(*args), atol=0, rtol=0)


def test_dsepconv_empty(ops):
    for shape in [(0, 3, 5, 8, 8), (2, 0, 5, 8, 8), (1, 3, 5, 0, 7)]:
        args = dsepconv_inputs(*shape)
        out = ops.dsepconv(*args)
        assert out.shape == (shape[0], shape[1], shape[3], shape[4])


def test_dsepconv_rejects_bad_args(ops):
    args = dsepconv_inputs(1, 3, 5, 8, 8)
    with pytest.raises(RuntimeError):
        ops.dsepconv(args[0][..., 1:], *args[1:])  # input not padded by K-1
    with pytest.raises(RuntimeError):
        ops.dsepconv(args[0].double(), *args[1:])  # mixed dtypes


# --------------------------------------------------------------------------------------
# DSepConv backward

def _reference_grads(args, grad_out):
    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    out = dsepconv_reference(*leaves)
    return torch.autograd.grad(out, leaves, grad_out.to(out.dtype))


GRAD_NAMES = ("input", "vertical", "horizontal", "offset_x", "offset_y", "mask")


@pytest.mark.parametrize("shape", [(1, 3, 5, 8, 9), (2, 3, 3, 7, 10), (1, 5, 5, 6, 7)])
def test_dsepconv_backward_float64(ops, shape):
    args = dsepconv_inputs(*shape, dtype=torch.float64, away_from_integers=True)
    B, C, K, H, W = shape
    grad_out = torch.randn(B, C, H, W, generator=_gen(1), dtype=torch.float64).cuda()
    grads = ops.dsepconv_backward(grad_out, *args)
    ref = _reference_grads(args, grad_out)
    for name, g, r in zip(GRAD_NAMES, grads, ref):
        assert g.dtype == torch.float64 and g.shape == r.shape, name
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("shape", [(1, 3, 5, 8, 9), (2, 3, 3, 7, 10)])
def test_dsepconv_backward_float32_vs_float64(ops, shape):
    args64 = dsepconv_inputs(*shape, dtype=torch.float64, away_from_integers=True)
    args32 = [a.float() for a in args64]
    B, C, K, H, W = shape
    grad_out = torch.randn(B, C, H, W, generator=_gen(1), dtype=torch.float64).cuda()
    grads = ops.dsepconv_backward(grad_out.float(), *args32)
    ref = _reference_grads(args64, grad_out)
    for name, g, r in zip(GRAD_NAMES, grads, ref):
        assert g.dtype == torch.float32, name
        scale = max(r.abs().max().item(), 1.0)
        torch.testing.assert_close(g.double(), r, atol=5e-5 * scale, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("dtype", LOW)
def test_dsepconv_backward_low_precision(ops, dtype):
    shape = (1, 3, 5, 9, 10)
    args64 = dsepconv_inputs(*shape, dtype=torch.float64, away_from_integers=True)
    args = [a.to(dtype) for a in args64]
    B, C, K, H, W = shape
    grad_out = torch.randn(B, C, H, W, generator=_gen(1)).cuda().to(dtype)
    grads = ops.dsepconv_backward(grad_out, *args)
    ref32 = _reference_grads([a.float() for a in args], grad_out.float())
    ref_lp = _reference_grads(args, grad_out)
    for name, g, r32, rlp in zip(GRAD_NAMES, grads, ref32, ref_lp):
        assert g.dtype == dtype, name
        assert_within_ref_error(g, r32, rlp, f"grad {name} {dtype}")


class _KernelDSepConv(torch.autograd.Function):
    """The two CUDA ops as an autograd pair (independent of the C++ autograd registration)."""

    @staticmethod
    def forward(ctx, *args):
        ctx.save_for_backward(*args)
        return torch.ops.ldmvfi_fast.dsepconv(*args)

    @staticmethod
    def backward(ctx, grad_out):
        return torch.ops.ldmvfi_fast.dsepconv_backward(grad_out.contiguous(), *ctx.saved_tensors)


@pytest.mark.parametrize("shape", [(1, 2, 3, 4, 5), (1, 2, 5, 3, 4)])
def test_dsepconv_gradcheck(ops, shape):
    args = [a.requires_grad_(True) for a in
            dsepconv_inputs(*shape, dtype=torch.float64, offset_scale=1.5, away_from_integers=True)]
    # the input gradient is an atomicAdd scatter: its summation order (and last bits) differ
    # between two identical backward calls, so gradcheck's reentrancy check needs a nonzero
    # nondet_tol (the default 0 flakes). Bound: <= 4*K*K*C terms of |g * coef * w| <~ 10 per
    # element, float64 reordering error <~ terms * 10 * 2^-52 ~ 1e-13 at these shapes.
    assert torch.autograd.gradcheck(_KernelDSepConv.apply, args, eps=1e-6, atol=1e-7, rtol=1e-5, nondet_tol=1e-12)


def test_dsepconv_autograd_registration(ops):
    """The op's own autograd (csrc/ops/autograd) reaches the CUDA backward."""
    args = [a.requires_grad_(True) for a in dsepconv_inputs(1, 3, 5, 6, 7, dtype=torch.float64,
                                                            away_from_integers=True)]
    out = ops.dsepconv(*args)
    grads = torch.autograd.grad(out.sum(), args)
    ref = _reference_grads([a.detach() for a in args], torch.ones_like(out))
    for name, g, r in zip(GRAD_NAMES, grads, ref):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10, msg=lambda m: f"grad {name}: {m}")


# --------------------------------------------------------------------------------------
# decoder_output

DEC_SHAPES = [(1, 3, 5, 16, 24), (2, 3, 5, 17, 29), (1, 5, 5, 9, 10), (1, 3, 3, 11, 7)]


@pytest.mark.parametrize("shape", DEC_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_decoder_output(ops, shape, dtype):
    args = decoder_inputs(*shape, dtype=dtype)
    out = ops.decoder_output(*args)
    ref = decoder_output_reference(*[a.double() for a in args])
    assert out.dtype == dtype and out.shape == ref.shape
    tol = 1e-12 if dtype == torch.float64 else 3e-5
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("shape", [(2, 3, 5, 17, 29), (1, 3, 3, 11, 7)])
@pytest.mark.parametrize("dtype", LOW)
def test_decoder_output_low_precision(ops, shape, dtype):
    args = decoder_inputs(*shape, dtype=dtype)
    out = ops.decoder_output(*args)
    ref32 = decoder_output_reference(*[a.float() for a in args])
    ref_lp = decoder_output_reference(*args)
    assert_within_ref_error(out, ref32, ref_lp, f"decoder_output {dtype}")


def test_decoder_output_large_offsets_hit_padding(ops):
    """Offsets of +-6 px push most taps into the replicated border."""
    args = decoder_inputs(1, 3, 5, 6, 7, dtype=torch.float64, offset_scale=6.0)
    torch.testing.assert_close(ops.decoder_output(*args), decoder_output_reference(*args), atol=1e-12, rtol=1e-12)


def test_decoder_output_noncontiguous_and_empty(ops):
    args = decoder_inputs(1, 3, 5, 10, 12)
    nc = [a.transpose(2, 3).contiguous().transpose(2, 3) for a in args]
    torch.testing.assert_close(ops.decoder_output(*nc), ops.decoder_output(*args), atol=0, rtol=0)
    empty = decoder_inputs(0, 3, 5, 10, 12)
    assert ops.decoder_output(*empty).shape == (0, 3, 10, 12)


# --------------------------------------------------------------------------------------
# maxvit_attention

def attention_inputs(B, H, W, heads, head_dim, window, cross, dtype, seed=0):
    g = _gen(seed)
    C = heads * head_dim
    q = torch.randn(B, H, W, C, generator=g)
    k = torch.randn(B, H, W, C, generator=g) if cross else q.clone()
    v = torch.randn(B, H, W, C, generator=g) if cross else q.clone()
    if not cross:  # self-attention: k, v are the same tokens (different projections in the model)
        k = k * 0.7 + 0.1
        v = v * -1.3
    table = torch.randn((2 * window - 1) ** 2, heads, generator=g) * 0.5
    return [t.to(device="cuda", dtype=dtype) for t in (q, k, v)] + [table.cuda()]


ATTN_CONFIGS = [  # (window, head_dim, heads, H, W)
    (8, 32, 2, 16, 24),
    (8, 256, 1, 16, 8),
    (2, 32, 4, 4, 6),
    (2, 256, 2, 6, 4),
]


@pytest.mark.parametrize("window,head_dim,heads,H,W", ATTN_CONFIGS)
@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_maxvit_attention(ops, window, head_dim, heads, H, W, mode, cross, dtype):
    q, k, v, table = attention_inputs(2, H, W, heads, head_dim, window, cross, dtype)
    scale = head_dim ** -0.5
    out = ops.maxvit_attention(q, k, v, table, window, mode == "grid", heads, scale)
    assert out.dtype == dtype and out.shape == q.shape
    ref64 = maxvit_attention_reference(q.double(), k.double(), v.double(), table.double(), window, mode, heads, scale)
    if dtype == torch.float32:
        torch.testing.assert_close(out.double(), ref64, atol=2e-5, rtol=1e-4)
    else:
        ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table, window, mode, heads, scale)
        ref_lp = maxvit_attention_reference(q, k, v, table.to(dtype), window, mode, heads, scale)
        assert_within_ref_error(out, ref32, ref_lp, f"maxvit_attention {dtype}")


@pytest.mark.parametrize("window,head_dim,heads,H,W", [
    (1, 32, 2, 3, 5),  # n = 1
    (4, 64, 2, 8, 12),  # n = 16: block kernel with padded tokens
    (7, 32, 1, 14, 7),  # n = 49
    (2, 64, 3, 4, 4),  # warp kernel, 2 channels per lane
    (2, 96, 1, 4, 6),  # w = 2 with head_dim 96: block kernel fallback
    (8, 128, 2, 8, 16),
])
@pytest.mark.parametrize("mode", ["block", "grid"])
def test_maxvit_attention_other_configs(ops, window, head_dim, heads, H, W, mode):
    q, k, v, table = attention_inputs(1, H, W, heads, head_dim, window, True, torch.float32)
    scale = head_dim ** -0.5
    out = ops.maxvit_attention(q, k, v, table, window, mode == "grid", heads, scale)
    ref = maxvit_attention_reference(q.double(), k.double(), v.double(), table.double(), window, mode, heads, scale)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-4)


def test_maxvit_attention_strided_inputs(ops):
    """q, k, v sliced from one qkv projection (row stride 3C) are read in place; a
    channel-strided tensor is copied; both give the contiguous result."""
    B, H, W, heads, d, w = 2, 16, 16, 2, 32, 8
    C = heads * d
    qkv = torch.randn(B, H, W, 3 * C, generator=_gen(3)).cuda()
    q, k, v = qkv.chunk(3, dim=-1)
    assert not q.is_contiguous() and q.stride(-1) == 1
    table = torch.randn((2 * w - 1) ** 2, heads, generator=_gen(4)).cuda()
    for grid in (False, True):
        out = ops.maxvit_attention(q, k, v, table, w, grid, heads, d ** -0.5)
        ref = ops.maxvit_attention(q.contiguous(), k.contiguous(), v.contiguous(), table, w, grid, heads, d ** -0.5)
        torch.testing.assert_close(out, ref, atol=0, rtol=0)
    q_cs = q.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # channel stride H*W
    assert q_cs.stride(-1) != 1
    torch.testing.assert_close(ops.maxvit_attention(q_cs, k, v, table, w, True, heads, d ** -0.5),
                               ops.maxvit_attention(q.contiguous(), k, v, table, w, True, heads, d ** -0.5),
                               atol=0, rtol=0)


def test_maxvit_attention_rejects_unsupported(ops):
    q, k, v, table = attention_inputs(1, 16, 16, 1, 32, 8, False, torch.float32)
    with pytest.raises(RuntimeError):  # head_dim 16
        ops.maxvit_attention(q, k, v, torch.randn(225, 2, device="cuda"), 8, False, 2, 0.25)
    big = torch.randn(1, 32, 32, 32, device="cuda")
    with pytest.raises(RuntimeError):  # window 16 > 8
        ops.maxvit_attention(big, big, big, torch.randn(31 * 31, 1, device="cuda"), 16, False, 1, 0.2)
    with pytest.raises(RuntimeError):  # H not a multiple of the window
        ops.maxvit_attention(q[:, :12], k[:, :12], v[:, :12], table, 8, False, 1, 0.2)


@pytest.mark.parametrize("dtype", LOW)
def test_maxvit_attention_float32_bias_table_runs_native(ops, dtype):
    """A float32 bias table under half/bf16 q runs on the CUDA kernel (not refused as
    mixed dtypes and silently sent to another backend)."""
    from ldmvfi_fast.ops import _native, pick_backend

    q, k, v, table = attention_inputs(1, 8, 8, 2, 32, 8, True, dtype)
    assert table.dtype == torch.float32
    assert _native.PROVIDER.check("maxvit_attention", [q, k, v, table], window=8, mode="block",
                                  num_heads=2) is None
    impl = pick_backend("maxvit_attention", (q, k, v, table), None, window=8, mode="block", num_heads=2)
    assert impl is _native.maxvit_attention
    out = impl(q, k, v, table, 8, "block", 2)
    ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table, 8, "block", 2)
    ref_lp = maxvit_attention_reference(q, k, v, table.to(dtype), 8, "block", 2)
    assert_within_ref_error(out, ref32, ref_lp, f"attention {dtype} with float32 table")


def test_maxvit_attention_empty(ops):
    q, k, v, table = attention_inputs(1, 8, 8, 1, 32, 8, False, torch.float32)
    e = q[:0]
    assert ops.maxvit_attention(e, e, e, table, 8, False, 1, 0.2).shape == (0, 8, 8, 32)


# --------------------------------------------------------------------------------------
# opcheck (schema, autograd registration, fake kernels when ldmvfi_fast.ops._native
# registers them)

def _opcheck(op, args, utils=None):
    utils = utils or ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(op, args, test_utils=utils)


def test_opcheck_dsepconv(ops):
    args = [a.requires_grad_(True) for a in dsepconv_inputs(1, 3, 5, 6, 7, away_from_integers=True)]
    _opcheck(ops.dsepconv.default, tuple(args))
    plain = dsepconv_inputs(1, 3, 5, 6, 7)
    grad_out = torch.randn(1, 3, 6, 7, device="cuda")
    _opcheck(ops.dsepconv_backward.default, (grad_out, *plain))


def test_opcheck_decoder_output(ops):
    _opcheck(ops.decoder_output.default, tuple(decoder_inputs(1, 3, 5, 6, 7)))


def test_opcheck_maxvit_attention(ops):
    q, k, v, table = attention_inputs(1, 16, 8, 2, 32, 8, True, torch.float32)
    _opcheck(ops.maxvit_attention.default, (q, k, v, table, 8, True, 2, 32 ** -0.5))
