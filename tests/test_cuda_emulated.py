"""The CUDA kernels (csrc/kernels/*.cuh) run on the CPU under a host emulation.

``csrc/kernels/c_api.cu`` is compiled as C++ (``g++ -x c++``) against
``csrc/emulation/include`` (the CUDA headers replaced by ``csrc/emulation/cuda_host.h``:
thread/block indices, ``__shared__``, ``__syncthreads``, warp shuffles/ballots, atomicAdd,
half/bf16, WMMA; blocks run one after the other, the threads of a block as cooperative
fibers), into a shared library called through ctypes with CPU tensors. The kernel sources are
the ones nvcc compiles: every case compares them with the PyTorch references
(``ldmvfi_fast/ops/*_ref.py``) at small shapes.

This proves indexing, bounds, barrier/warp-collective placement and arithmetic. It does not
prove speed, memory ordering between real concurrent threads, or the hardware's
tensor-core layout (see the header's comment).

The library is built once per source hash under ``$TMPDIR/ldmvfi_fast_cuda_emulation/``
(not in the repository; ~10 s). No host C++ compiler (or not Linux/x86-64 or aarch64):
skip, or fail under ``CI=true``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from ldmvfi_fast.ops.decoder_output_ref import decoder_output_reference
from ldmvfi_fast.ops.dsepconv_ref import dsepconv_reference
from ldmvfi_fast.ops.maxvit_ref import maxvit_attention_reference
from _builders import decoder_args, dsepconv_args
from _requirements import missing_tool

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "csrc/kernels/c_api.cu", REPO / "csrc/emulation/selftest.cpp"]
FLAGS = ["-std=c++17", "-O1", "-fPIC", "-shared", "-fno-strict-aliasing", "-ffp-contract=off",
         f"-I{REPO / 'csrc/emulation/include'}", f"-I{REPO / 'csrc/include'}", f"-I{REPO / 'csrc/kernels'}"]
GRAD_NAMES = ("input", "vertical", "horizontal", "offset_x", "offset_y", "mask")
CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_INVALID_CONFIGURATION = 1, 9
CUDA_ERROR_LAUNCH_FAILURE, CUDA_ERROR_NOT_SUPPORTED = 719, 801


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _source_hash(cxx: str) -> str:
    h = hashlib.sha256()
    files = sorted({*SOURCES, *(REPO / "csrc/kernels").glob("*"), *(REPO / "csrc/emulation").rglob("*"),
                    *(REPO / "csrc/include").rglob("*")})
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    version = subprocess.run([cxx, "--version"], stdout=subprocess.PIPE, text=True).stdout
    h.update(version.encode())
    h.update(" ".join(FLAGS).encode())
    return h.hexdigest()[:16]


def build_library() -> Path:
    """Compile (or reuse) the emulated kernel library; returns its path."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64", "aarch64"):
        missing_tool(f"host emulation needs Linux (ucontext, _Float16) on x86-64/aarch64, not "
                     f"{sys.platform}/{platform.machine()}")
    cxx = _compiler()
    if cxx is None:
        missing_tool("no host C++ compiler (CXX, g++, c++ or clang++) for the emulated CUDA kernels")
    out_dir = Path(tempfile.gettempdir()) / "ldmvfi_fast_cuda_emulation" / _source_hash(cxx)
    lib = out_dir / "libldmvfi_kernels_emulated.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".build-{os.getpid()}.so"
    cmd = [cxx, *FLAGS, "-x", "c++", *map(str, SOURCES), "-o", str(tmp)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}", pytrace=False)
    os.replace(tmp, lib)  # atomic: a concurrent run sees a complete library or none
    return lib


@pytest.fixture(scope="module")
def lib():
    return ctypes.CDLL(str(build_library()))


def _p(t: torch.Tensor | None) -> ctypes.c_void_p:
    if t is None:
        return ctypes.c_void_p(None)
    assert t.is_contiguous() and t.device.type == "cpu"
    return ctypes.c_void_p(t.data_ptr())


SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def dsepconv(lib, args, dtype=torch.float32):
    args = [a.to(dtype).contiguous() for a in args]
    B, C, Hin, Win = args[0].shape
    K = args[1].shape[1]
    H, W = Hin - K + 1, Win - K + 1
    out = torch.full((B, C, H, W), float("nan"), dtype=dtype)
    rc = getattr(lib, f"ldmvfi_dsepconv_forward_{SUFFIX[dtype]}")(*map(_p, args), _p(out), B, C, K, H, W, None)
    assert rc == 0, f"ldmvfi_dsepconv_forward: {rc}"
    return out


def dsepconv_backward(lib, grad_out, args):
    args = [a.float().contiguous() for a in args]
    B, C, Hin, Win = args[0].shape
    K = args[1].shape[1]
    H, W = Hin - K + 1, Win - K + 1
    grads = [torch.full_like(a, float("nan")) for a in args]  # every element must be written
    grad_out = grad_out.float().contiguous()  # keep a reference: ctypes gets a raw pointer
    rc = lib.ldmvfi_dsepconv_backward_f32(_p(grad_out), *map(_p, args), *map(_p, grads),
                                          B, C, K, H, W, None)
    assert rc == 0, f"ldmvfi_dsepconv_backward_f32: {rc}"
    return grads


def decoder_output(lib, args, dtype=torch.float32):
    args = [a.to(dtype).contiguous() for a in args]
    B, C, H, W = args[0].shape
    K = args[2].shape[1]
    out = torch.full((B, C, H, W), float("nan"), dtype=dtype)
    rc = getattr(lib, f"ldmvfi_decoder_output_{SUFFIX[dtype]}")(*map(_p, args), _p(out), B, C, K, H, W, None)
    assert rc == 0, f"ldmvfi_decoder_output: {rc}"
    return out


def attention(lib, q, k, v, table, window, grid, heads, scale, dtype=torch.float32, expect=0):
    q, k, v = (t.to(dtype).contiguous() for t in (q, k, v))
    B, H, W, C = q.shape
    out = torch.full_like(q, float("nan"))
    table = table.float().contiguous()  # keep a reference: ctypes gets a raw pointer
    rc = getattr(lib, f"ldmvfi_maxvit_attention_{SUFFIX[dtype]}")(
        _p(q), _p(k), _p(v), _p(table), _p(out), B, H, W, C, window, int(grid), heads,
        ctypes.c_float(scale), None)
    assert rc == expect, f"ldmvfi_maxvit_attention: {rc} (expected {expect})"
    return out


# --------------------------------------------------------------------------------------
# The emulation itself

def test_emulation_warp_collectives(lib):
    x = torch.arange(64, dtype=torch.float32) * 0.5 - 3
    out = torch.zeros(64, 6)
    assert lib.ldmvfi_emul_warp_ops(_p(x), _p(out)) == 0
    for w in range(2):
        xs = x[32 * w:32 * w + 32]
        for lane in range(32):
            t = 32 * w + lane
            assert out[t, 0] == xs.sum(), "xor butterfly"
            assert out[t, 1] == xs[lane + 3 if lane + 3 < 32 else lane], "shfl_down"
            assert out[t, 2] == xs[lane - 5 if lane >= 5 else lane], "shfl_up"
            assert out[t, 3] == xs[7], "shfl"
            assert out[t, 4] == 1.0, "ballot"
            assert out[t, 5] == 1.0, "any (lane 31) and not all (lane < 31)"


def test_emulation_shared_memory_and_barriers(lib):
    blocks, n = 3, 128
    x = torch.randn(blocks * n, generator=torch.Generator().manual_seed(0))
    out = torch.zeros_like(x)
    assert lib.ldmvfi_emul_shared_reverse(_p(x), _p(out), blocks) == 0
    xb = x.view(blocks, n)
    torch.testing.assert_close(out.view(blocks, n), xb.flip(1) + xb.sum(1, keepdim=True))


def test_emulation_detects_misuse(lib, capfd):
    buf = torch.zeros(64)
    assert lib.ldmvfi_emul_split_warp(_p(buf)) == CUDA_ERROR_LAUNCH_FAILURE
    assert "deadlock" in capfd.readouterr().err
    assert lib.ldmvfi_emul_exited_lane(_p(buf)) == CUDA_ERROR_LAUNCH_FAILURE
    assert "exited" in capfd.readouterr().err
    assert lib.ldmvfi_emul_bad_config(_p(buf)) == CUDA_ERROR_INVALID_CONFIGURATION


# --------------------------------------------------------------------------------------
# DSepConv

DSEP_SHAPES = [  # (B, C, K, H, W)
    (1, 3, 5, 8, 8),
    (2, 3, 5, 9, 37),  # two blocks along x and y, partial blocks
    (1, 6, 5, 9, 13),  # C > 4: two channel chunks
    (2, 3, 3, 10, 12),  # generic-K path
    (1, 2, 7, 5, 11),
    (1, 1, 1, 4, 4),
]


@pytest.mark.parametrize("shape", DSEP_SHAPES)
def test_dsepconv_forward(lib, shape):
    args = dsepconv_args(*shape, dtype=torch.float64)
    out = dsepconv(lib, args)
    torch.testing.assert_close(out.double(), dsepconv_reference(*args), atol=2e-5, rtol=2e-5)


def _reference_grads(args, grad_out):
    leaves = [a.detach().clone().requires_grad_(True) for a in args]
    return torch.autograd.grad(dsepconv_reference(*leaves), leaves, grad_out)


@pytest.mark.parametrize("shape", [(1, 3, 5, 8, 9), (2, 3, 3, 9, 34), (1, 5, 5, 6, 7)])
def test_dsepconv_backward(lib, shape):
    """All six gradients (the input one is the atomicAdd scatter) vs float64 autograd of the reference."""
    args = dsepconv_args(*shape, dtype=torch.float64, away_from_integers=True)
    B, C, K, H, W = shape
    grad_out = torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = dsepconv_backward(lib, grad_out, args)
    for name, g, r in zip(GRAD_NAMES, grads, _reference_grads(args, grad_out)):
        scale = max(r.abs().max().item(), 1.0)
        torch.testing.assert_close(g.double(), r, atol=2e-5 * scale, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_dsepconv_non_finite_offsets(lib):
    """NaN offsets make exactly their pixel NaN (all channels), like the CPU kernel; +-inf
    and huge offsets clamp to the border like the reference (no out-of-bounds gather)."""
    args = list(dsepconv_args(1, 3, 5, 6, 7, dtype=torch.float64))
    ox, oy = args[3].clone(), args[4].clone()
    ox[0, 3, 1, 2] = float("inf")
    oy[0, 7, 4, 5] = float("-inf")
    ox[0, 11, 2, 6] = 1e30
    oy[0, 20, 0, 0] = -1e30
    finite = [*args[:3], ox, oy, args[5]]
    torch.testing.assert_close(dsepconv(lib, finite).double(), dsepconv_reference(*finite), atol=2e-5, rtol=2e-5)
    nan_x, nan_y = ox.clone(), oy.clone()
    nan_x[0, 4, 3, 1] = float("nan")
    nan_y[0, 24, 5, 6] = float("nan")
    out = dsepconv(lib, [*args[:3], nan_x, nan_y, args[5]])
    expect_nan = torch.zeros(1, 3, 6, 7, dtype=torch.bool)
    expect_nan[:, :, 3, 1] = expect_nan[:, :, 5, 6] = True
    assert torch.equal(out.isnan(), expect_nan)
    ref = dsepconv_reference(*finite)
    torch.testing.assert_close(out.double()[~expect_nan], ref[~expect_nan], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dsepconv_forward_low_precision(lib, dtype):
    args = [a.to(dtype) for a in dsepconv_args(1, 6, 5, 7, 9, dtype=torch.float64)]
    out = dsepconv(lib, args, dtype)
    ref32 = dsepconv_reference(*[a.float() for a in args])
    tol = 2 * torch.finfo(dtype).eps * max(ref32.abs().max().item(), 1.0)
    torch.testing.assert_close(out.float(), ref32, atol=tol, rtol=0)


# --------------------------------------------------------------------------------------
# decoder_output

@pytest.mark.parametrize("shape,offset", [((1, 3, 5, 8, 8), 3.0), ((2, 3, 5, 9, 37), 3.0),
                                          ((1, 5, 5, 6, 7), 6.0), ((1, 3, 3, 11, 7), 3.0)])
def test_decoder_output(lib, shape, offset):
    args = decoder_args(*shape, dtype=torch.float64, offset=offset)
    out = decoder_output(lib, args)
    torch.testing.assert_close(out.double(), decoder_output_reference(*args), atol=3e-5, rtol=3e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_decoder_output_low_precision(lib, dtype):
    args = [a.to(dtype) for a in decoder_args(1, 3, 5, 7, 9, dtype=torch.float64)]
    out = decoder_output(lib, args, dtype)
    ref32 = decoder_output_reference(*[a.float() for a in args])
    tol = 2 * torch.finfo(dtype).eps * max(ref32.abs().max().item(), 1.0)
    torch.testing.assert_close(out.float(), ref32, atol=tol, rtol=0)


def test_dsepconv_rejects_bad_sizes(lib):
    z = torch.zeros(1)
    assert lib.ldmvfi_dsepconv_forward_f32(*[_p(z)] * 7, 1, 3, 0, 4, 4, None) == CUDA_ERROR_INVALID_VALUE
    assert lib.ldmvfi_decoder_output_f32(*[_p(z)] * 13, 1, 3, 4, 4, 4, None) == CUDA_ERROR_INVALID_VALUE
    assert lib.ldmvfi_dsepconv_forward_f32(*[_p(None)] * 7, 1, 3, 5, 4, 4, None) == CUDA_ERROR_INVALID_VALUE
    assert lib.ldmvfi_dsepconv_forward_f32(*[_p(None)] * 7, 0, 3, 5, 4, 4, None) == 0  # empty: nothing to do


# --------------------------------------------------------------------------------------
# MaxViT attention

def attention_inputs(B, H, W, heads, head_dim, window, cross, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = heads * head_dim
    q = torch.randn(B, H, W, C, generator=g)
    k = torch.randn(B, H, W, C, generator=g) if cross else q * 0.7 + 0.1
    v = torch.randn(B, H, W, C, generator=g) if cross else q * -1.3
    table = torch.randn((2 * window - 1) ** 2, heads, generator=g) * 0.5
    return q, k, v, table


ATTN_CONFIGS = [  # (window, head_dim, heads, H, W): the model's windows (8, 2) and head widths (32, 256)
    (8, 32, 2, 16, 8),  # block kernel, n = 64
    (8, 256, 1, 8, 8),
    (2, 32, 3, 4, 6),  # warp kernel, n = 4
    (2, 256, 1, 4, 2),
    (4, 64, 2, 8, 4),  # block kernel with padded tokens (n = 16 < 64)
]


@pytest.mark.parametrize("window,head_dim,heads,H,W", ATTN_CONFIGS)
@pytest.mark.parametrize("mode", ["block", "grid"])
def test_maxvit_attention(lib, window, head_dim, heads, H, W, mode):
    q, k, v, table = attention_inputs(2 if window == 2 else 1, H, W, heads, head_dim, window, cross=True)
    scale = head_dim ** -0.5
    out = attention(lib, q, k, v, table, window, mode == "grid", heads, scale)
    ref = maxvit_attention_reference(q.double(), k.double(), v.double(), table.double(), window, mode, heads, scale)
    torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("window,head_dim,heads,H,W", [
    (8, 32, 2, 16, 8),  # tensor-core block kernel: 4 x 4 token tiles, one 32-channel chunk
    (8, 256, 1, 8, 8),  # four 64-channel chunks
    (5, 64, 1, 5, 10),  # n = 25: padded token tiles
    (2, 64, 2, 2, 4),  # warp kernel (CUDA cores)
])
@pytest.mark.parametrize("mode", ["block", "grid"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_maxvit_attention_low_precision(lib, window, head_dim, heads, H, W, mode, dtype):
    """half/bf16 storage: the block kernel's WMMA (tensor-core) path under the emulation;
    error vs the float32 reference within 2x the half/bf16 reference's own + 1 ulp."""
    q, k, v, table = [t.to(dtype) if i < 3 else t for i, t in
                      enumerate(attention_inputs(1, H, W, heads, head_dim, window, cross=True))]
    scale = head_dim ** -0.5
    out = attention(lib, q, k, v, table, window, mode == "grid", heads, scale, dtype)
    ref32 = maxvit_attention_reference(q.float(), k.float(), v.float(), table, window, mode, heads, scale)
    ref_lp = maxvit_attention_reference(q, k, v, table.to(dtype), window, mode, heads, scale).float()
    err, ref_err = (out.float() - ref32).abs().max().item(), (ref_lp - ref32).abs().max().item()
    assert err <= 2 * ref_err + torch.finfo(dtype).eps * ref32.abs().max().item(), (err, ref_err)


def test_maxvit_attention_rejects_unsupported(lib):
    q, k, v, table = attention_inputs(1, 16, 16, 1, 32, 16, cross=True)
    attention(lib, q, k, v, table, 16, False, 1, 1.0, expect=CUDA_ERROR_NOT_SUPPORTED)  # window > 8
    q, k, v, table = attention_inputs(1, 4, 4, 1, 16, 2, cross=True)
    attention(lib, q, k, v, table, 2, False, 1, 1.0, expect=CUDA_ERROR_NOT_SUPPORTED)  # head_dim 16
    q, k, v, table = attention_inputs(1, 6, 4, 1, 32, 4, cross=True)
    attention(lib, q, k, v, table, 4, False, 1, 1.0, expect=CUDA_ERROR_INVALID_VALUE)  # H % window


# --------------------------------------------------------------------------------------
# Native provider: a float32 bias table under half/bf16 q is accepted (the CUDA glue
# converts it to float32), not refused as "mixed dtypes" (which fell back silently).

@pytest.mark.parametrize("table_dtype,accepted", [(torch.float32, True), (torch.bfloat16, True),
                                                  (torch.int64, False)])
def test_native_provider_accepts_float32_bias_table(monkeypatch, table_dtype, accepted):
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ldmvfi_fast.ops import _native

    if _native.LOAD_ERROR is not None:
        pytest.skip(f"extension not built: {_native.LOAD_ERROR}")
    monkeypatch.setattr(_native, "has_kernel", lambda op, key: True)  # as a CUDA build would say
    with FakeTensorMode():  # CUDA tensors without a GPU (metadata only)
        q = torch.empty(1, 8, 8, 64, device="cuda", dtype=torch.bfloat16)
        table = torch.empty(225, 2, device="cuda", dtype=table_dtype)
        reason = _native.PROVIDER.check("maxvit_attention", [q, q, q, table], window=8, mode="block", num_heads=2)
        mixed = _native.PROVIDER.check("maxvit_attention", [q, q.float(), q, table.float()], window=8,
                                       mode="block", num_heads=2)
    assert (reason is None) == accepted, reason
    assert mixed is not None and "mixed dtypes" in mixed  # q, k, v must still agree


# --------------------------------------------------------------------------------------
# Dispatcher: the automatic order is a per-case table (ldmvfi_fast/ops/_dispatch.ORDER)

def test_backend_order_table(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ldmvfi_fast.ops import _dispatch

    cpu = torch.zeros(1, 2, 4, 4)
    assert _dispatch.backend_order("maxvit_attention", [cpu])[0] == "reference"
    assert _dispatch.backend_order("dsepconv", [cpu])[0] == "native"
    with FakeTensorMode():
        half = torch.empty(1, 8, 8, 64, device="cuda", dtype=torch.bfloat16)
        assert _dispatch.backend_order("maxvit_attention", [half]) == ("native", "triton", "reference")
    monkeypatch.setitem(_dispatch.ORDER, ("maxvit_attention", "cuda", "half"), ("triton",))
    with FakeTensorMode():
        half = torch.empty(1, 8, 8, 64, device="cuda", dtype=torch.float16)
        assert _dispatch.backend_order("maxvit_attention", [half]) == ("triton", "native", "reference")
        f32 = torch.empty(1, 8, 8, 64, device="cuda")
        assert _dispatch.backend_order("maxvit_attention", [f32])[0] == "native"
    # pick_backend follows the table (CPU dsepconv would run natively with the default table)
    monkeypatch.setitem(_dispatch.ORDER, ("dsepconv", "cpu", "*"), ("reference", "native"))
    args = dsepconv_args(1, 1, 3, 2, 2, dtype=torch.float32)
    from ldmvfi_fast.ops import _reference
    assert _dispatch.pick_backend("dsepconv", args) is _reference.PROVIDER.get("dsepconv")


def test_native_provider_refuses_frames_beyond_32bit_offsets(monkeypatch):
    """The CUDA DSepConv kernels' 32-bit offsets (check_dims) are a clear refusal in the
    provider (the dispatcher then falls back), not a launch error."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ldmvfi_fast.ops import _native

    if _native.LOAD_ERROR is not None:
        pytest.skip(f"extension not built: {_native.LOAD_ERROR}")
    monkeypatch.setattr(_native, "has_kernel", lambda op, key: True)
    with FakeTensorMode():
        for H, W, ok in ((1088, 1920, True), (9000, 9600, False)):
            K = 5
            inp = torch.empty(1, 3, H + K - 1, W + K - 1, device="cuda")
            ver = torch.empty(1, K, H, W, device="cuda")
            kk = torch.empty(1, K * K, H, W, device="cuda")
            reason = _native.PROVIDER.check("dsepconv", [inp, ver, ver, kk, kk, kk])
            assert (reason is None) == ok, reason
            frame = torch.empty(1, 3, H, W, device="cuda")
            reason = _native.PROVIDER.check("decoder_output", [frame, frame, ver, ver, kk, kk, ver, ver, kk, kk, kk,
                                                               frame])
            assert (reason is None) == ok, reason
