"""GPU checks of the whole pipeline (marked ``cuda``: skipped without a GPU)."""
from __future__ import annotations

import pytest
import torch

from ldmvfi_fast.checkpoint import load_model
from ldmvfi_fast.pipeline import Interpolator

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(1, 3, 200, 320, generator=g) * 2 - 1).cuda() for _ in range(2)]


def test_sampling_loop_never_synchronises(fixtures_dir, frames):
    model = load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt", device="cuda")
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
def test_half_precision_close_to_float32(fixtures_dir, frames, dtype):
    ckpt = fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt"
    ref = Interpolator(load_model(ckpt, device="cuda"), steps=10, eta=0.0)
    low = Interpolator(load_model(ckpt, device="cuda", dtype=dtype), steps=10, eta=0.0)
    xT = torch.randn(1, 3, 8, 16, device="cuda")
    a = ref.interpolate(*frames, x_T=xT)
    b = low.interpolate(frames[0].to(dtype), frames[1].to(dtype), x_T=xT)
    assert b.dtype == dtype and b.shape == a.shape
    # random weights amplify rounding through 10 steps: a loose bound, the point is "no blow-up"
    assert (a - b.float()).abs().mean() < 0.1


def test_cuda_matches_cpu_float32(fixtures_dir, frames, monkeypatch):
    # cuDNN convolutions default to TF32 on Ampere+; exact float32 is what parity means
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    ckpt = fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt"
    xT = torch.randn(1, 3, 8, 16)
    cpu = Interpolator(load_model(ckpt), steps=10, eta=0.0).interpolate(frames[0].cpu(), frames[1].cpu(), x_T=xT)
    gpu = Interpolator(load_model(ckpt, device="cuda"), steps=10, eta=0.0).interpolate(*frames, x_T=xT.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
