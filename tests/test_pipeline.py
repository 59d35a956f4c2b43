"""Padding, samplers, input validation, batching, recursion and encode-once video logic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmvfi_fast.checkpoint import load_model
from ldmvfi_fast.pipeline import InputError, Interpolator, PaddingError, pad_amounts, reflect_pad
from ldmvfi_fast.sampling import ddim_schedule, ddim_timesteps


@pytest.fixture(scope="module")
def model(fixtures_dir):
    return load_model(fixtures_dir / "ldmvfi-tiny" / "tiny_random.ckpt")


def _orig_pad(h0, w0):
    """The original's rule, transcribed literally (VQFlowNetInterface.encode)."""
    min_side = 512
    min_side = min_side // 2 if h0 <= 256 else min_side
    ph = pw = 0
    if h0 % min_side != 0:
        ph = min_side - (h0 % min_side)
        ph = 0 if ph == h0 else ph
    if w0 % min_side != 0:
        pw = min_side - (w0 % min_side)
        pw = 0 if pw == w0 else pw
    return ph, pw


@pytest.mark.parametrize("hw", [(256, 256), (200, 320), (144, 176), (272, 640), (720, 1280), (1080, 1920),
                                (512, 300), (256, 900)])
def test_reference_padding_is_the_originals(hw):
    assert pad_amounts(*hw, "reference") == _orig_pad(*hw)


@pytest.mark.parametrize("hw", [(100, 320), (128, 128), (300, 200)])
def test_reference_padding_refuses_what_the_original_cannot_do(hw):
    with pytest.raises(PaddingError, match="minimal"):
        pad_amounts(*hw, "reference")


def test_minimal_padding_and_tiny_frames():
    assert pad_amounts(1080, 1920, "minimal") == (200, 128)
    x = torch.randn(1, 3, 100, 37)
    y = reflect_pad(x, *pad_amounts(100, 37, "minimal"))
    assert y.shape == (1, 3, 256, 256)
    torch.testing.assert_close(y[..., :100, :37], x)
    torch.testing.assert_close(y[..., 100:199, :37], x.flip(-2)[..., 1:, :])  # first reflection


def test_small_frames_work_with_minimal_padding(model):
    it = Interpolator(model, steps=2, eta=0.0, padding="minimal")
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.rand(1, 3, 100, 60, generator=g) * 2 - 1, torch.rand(1, 3, 100, 60, generator=g) * 2 - 1
    out = it.interpolate(f0, f1, seed=0)
    assert out.shape == (1, 3, 100, 60) and out.abs().max() <= 1
    with pytest.raises(PaddingError):
        Interpolator(model, steps=2, padding="reference").interpolate(f0, f1, seed=0)


def test_ddim_timesteps_rule():
    assert ddim_timesteps(10).tolist() == list(range(1, 1000, 100))
    assert len(ddim_timesteps(200)) == 200 and ddim_timesteps(200)[-1] == 996
    with pytest.raises(ValueError, match="divid"):
        ddim_timesteps(3)
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def test_ddim_eta_one_sigmas(model):
    s = ddim_schedule(model.alphas_cumprod, 10, 1.0)
    a, ap = s.alphas_np.astype(np.float64), s.alphas_prev_np
    np.testing.assert_allclose(s.sigmas_np, np.sqrt((1 - ap) / (1 - a) * (1 - a / ap)))
    assert s.timesteps.tolist() == list(range(901, 0, -100))  # sampling order


def test_reproducible_from_seed_generator_and_xT(model):
    g = torch.Generator().manual_seed(1)
    f0, f1 = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    it = Interpolator(model, steps=2, eta=1.0, padding="minimal")
    e0, e1 = it.encode(f0), it.encode(f1)
    a = it.sample_latent(e0, e1, it.new_generator(5))
    b = it.sample_latent(e0, e1, torch.Generator().manual_seed(5))
    c = it.sample_latent(e0, e1, it.new_generator(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    det = Interpolator(model, steps=2, eta=0.0, padding="minimal")
    xT = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(det.sample_latent(e0, e1, it.new_generator(1), x_T=xT),
                               det.sample_latent(e0, e1, it.new_generator(2), x_T=xT), rtol=0, atol=0)
    # the one-call API threads the seed through
    torch.testing.assert_close(it.interpolate(f0, f1, seed=5), it.decode(a, e0, e1).clamp(-1, 1), rtol=0, atol=0)


def test_ddpm_sampler_follows_the_ancestral_formula():
    from ldmvfi_fast.sampling import DiffusionSchedule, ddpm_sample, make_beta_schedule

    sched = DiffusionSchedule.from_betas(make_beta_schedule("linear", 6, 0.0015, 0.0195))
    eps_fn = lambda x, t: 0.1 * x + 0.01 * t.float()[:, None, None, None]  # noqa: E731
    xT = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = ddpm_sample(eps_fn, xT, sched, generator=torch.Generator().manual_seed(1))
    b, g, x = sched.buffers, torch.Generator().manual_seed(1), xT
    for t in range(5, -1, -1):
        tt = torch.full((2,), t)
        x0 = b["sqrt_recip_alphas_cumprod"][t] * x - b["sqrt_recipm1_alphas_cumprod"][t] * eps_fn(x, tt)
        mean = b["posterior_mean_coef1"][t] * x0 + b["posterior_mean_coef2"][t] * x
        noise = torch.randn(x.shape, generator=g)
        x = mean + float(t > 0) * (0.5 * b["posterior_log_variance_clipped"][t]).exp() * noise
    torch.testing.assert_close(out, x)


def test_batch_of_pairs_equals_single_pairs(model):
    it = Interpolator(model, steps=2, eta=0.0, padding="minimal")
    g = torch.Generator().manual_seed(2)
    f0, f1 = torch.rand(2, 3, 40, 48, generator=g) * 2 - 1, torch.rand(2, 3, 40, 48, generator=g) * 2 - 1
    xT = torch.randn(2, 3, 8, 8, generator=g)
    both = it.interpolate(f0, f1, x_T=xT)
    for i in range(2):
        torch.testing.assert_close(both[i:i + 1], it.interpolate(f0[i:i + 1], f1[i:i + 1], x_T=xT[i:i + 1]),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad,match", [
    (lambda a: (a, a[:, :, :-1]), "sizes differ"),
    (lambda a: (a[:, :2], a[:, :2]), "3 channels"),
    (lambda a: (a, a.clone().index_fill_(3, torch.tensor([0]), float("nan"))), "NaN"),
    (lambda a: (a[0, 0], a[0, 0]), "must be"),
    (lambda a: ((a * 127).to(torch.uint8), a), "dtype"),
])
def test_bad_inputs(model, bad, match):
    it = Interpolator(model, steps=2, padding="minimal")
    f0, f1 = bad(torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError, match=match):
        it.interpolate(f0, f1, seed=0)


class _Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def encode(self, x):
        self.calls += x.shape[0]
        return self.model.encode(x)


@pytest.mark.parametrize("multi", [2, 4])
def test_sequence_encodes_each_frame_once(model, multi):
    it = Interpolator(model, steps=2, eta=0.0, padding="minimal")
    counting = _Counting(model)
    it.model = counting
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(1, 3, 24, 24, generator=g) * 2 - 1 for _ in range(3 if multi == 2 else 2)]
    out = list(it.interpolate_sequence(iter(frames), multi, seed=0))
    assert len(out) == multi * (len(frames) - 1) + 1
    for i, f in enumerate(frames):
        assert torch.equal(out[i * multi], f)  # inputs pass through untouched
    pairs = len(frames) - 1
    assert counting.calls == len(frames) + pairs * (multi // 2 - 1)  # inputs once; recursive middles once
