"""GPU checks of the whole pipeline (marked ``cuda``: skipped without a GPU).

The model is the tiny config with seeded random weights (``_shared.random_model(init="all")``),
not the shared fixtures' checkpoint: the GPU machine has no ../shared folder.
"""
from __future__ import annotations

import copy

import pytest
import torch
from _shared import random_model

from ldmvfi_fast.models.ldmvfi import LDMVFI
from ldmvfi_fast.ops import use_backend
from ldmvfi_fast.pipeline import Interpolator

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def random_tiny() -> LDMVFI:
    """The tiny LDMVFI on CPU, float32, every parameter random (seed 0), frozen."""
    return random_model("tiny", init="all", requires_grad=False)


def load_model(model: LDMVFI, device="cpu", dtype=torch.float32) -> LDMVFI:
    """A copy of ``model`` on ``device`` in ``dtype`` (what checkpoint.load_model returns)."""
    return copy.deepcopy(model).to(device=device, dtype=dtype)


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(1, 3, 200, 320, generator=g) * 2 - 1).cuda() for _ in range(2)]


def test_sampling_loop_never_synchronises(random_tiny, frames):
    model = load_model(random_tiny, device="cuda")
    it = Interpolator(model, steps=10, eta=1.0)
    e0, e1 = it.encode(frames[0]), it.encode(frames[1])
    g = it.new_generator(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        z = it.sample_latent(e0, e1, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_close_to_float32(random_tiny, frames, dtype, monkeypatch):
    """Flash-attention rule: the error of the default (kernel) path in ``dtype`` against float32
    is within 2x the error of the pure-PyTorch reference path in the same dtype, plus a small
    slack. Random weights amplify rounding through 10 steps, so a fixed bound cannot tell a
    broken kernel (planted decoder bugs moved the mean by 0.007-0.057) from rounding."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ckpt = random_tiny
    xT = torch.randn(1, 3, 8, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with use_backend("reference"):
        ref32 = Interpolator(load_model(ckpt, device="cuda"), steps=10, eta=0.0).interpolate(*frames, x_T=xT)
    low_frames = [f.to(dtype) for f in frames]
    low = Interpolator(load_model(ckpt, device="cuda", dtype=dtype), steps=10, eta=0.0)
    kernel = low.interpolate(*low_frames, x_T=xT)
    with use_backend("reference"):
        reference = low.interpolate(*low_frames, x_T=xT)
    assert kernel.dtype == dtype and kernel.shape == ref32.shape
    assert torch.isfinite(kernel).all()
    err_k, err_r = (kernel.float() - ref32).abs(), (reference.float() - ref32).abs()
    slack = 2 * torch.finfo(dtype).eps  # one rounding of a value of magnitude ~1, both ways
    assert err_k.mean() <= 2 * err_r.mean() + slack, (err_k.mean().item(), err_r.mean().item())
    assert err_k.max() <= 2 * err_r.max() + 4 * slack, (err_k.max().item(), err_r.max().item())


def test_cuda_matches_cpu_float32(random_tiny, frames, monkeypatch):
    # cuDNN convolutions default to TF32 on Ampere+; exact float32 is what parity means
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ckpt = random_tiny
    xT = torch.randn(1, 3, 8, 16)
    cpu = Interpolator(load_model(ckpt), steps=10, eta=0.0).interpolate(frames[0].cpu(), frames[1].cpu(), x_T=xT)
    gpu = Interpolator(load_model(ckpt, device="cuda"), steps=10, eta=0.0).interpolate(*frames, x_T=xT.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
