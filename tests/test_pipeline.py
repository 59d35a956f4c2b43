"""Padding, samplers, input validation, batching, recursion and encode-once video logic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmvfi_fast.errors import OptionError
from ldmvfi_fast.pipeline import InputError, Interpolator, PaddingError, pad_amounts, reflect_pad
from ldmvfi_fast.sampling import ddim_schedule, ddim_timesteps


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


def test_small_frames_work_with_minimal_padding(tiny_model):
    it = Interpolator(tiny_model, steps=2, eta=0.0, padding="minimal")
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.rand(1, 3, 100, 60, generator=g) * 2 - 1, torch.rand(1, 3, 100, 60, generator=g) * 2 - 1
    out = it.interpolate(f0, f1, seed=0)
    assert out.shape == (1, 3, 100, 60) and out.abs().max() <= 1
    with pytest.raises(PaddingError):
        Interpolator(tiny_model, steps=2, padding="reference").interpolate(f0, f1, seed=0)


def test_ddim_timesteps_rule():
    assert ddim_timesteps(10).tolist() == list(range(1, 1000, 100))
    assert len(ddim_timesteps(200)) == 200 and ddim_timesteps(200)[-1] == 996
    with pytest.raises(ValueError, match="divid"):
        ddim_timesteps(3)
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def test_ddim_eta_one_sigmas(tiny_model):
    s = ddim_schedule(tiny_model.alphas_cumprod, 10, 1.0)
    a, ap = s.alphas_np.astype(np.float64), s.alphas_prev_np
    np.testing.assert_allclose(s.sigmas_np, np.sqrt((1 - ap) / (1 - a) * (1 - a / ap)))
    assert s.timesteps.tolist() == list(range(901, 0, -100))  # sampling order


def test_reproducible_from_seed_generator_and_xT(tiny_model):
    g = torch.Generator().manual_seed(1)
    f0, f1 = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    it = Interpolator(tiny_model, steps=2, eta=1.0, padding="minimal")
    e0, e1 = it.encode(f0), it.encode(f1)
    a = it.sample_latent(e0, e1, it.new_generator(5))
    b = it.sample_latent(e0, e1, torch.Generator().manual_seed(5))
    c = it.sample_latent(e0, e1, it.new_generator(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    det = Interpolator(tiny_model, steps=2, eta=0.0, padding="minimal")
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


def test_batch_of_pairs_equals_single_pairs(tiny_model):
    it = Interpolator(tiny_model, steps=2, eta=0.0, padding="minimal")
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
def test_bad_inputs(tiny_model, bad, match):
    it = Interpolator(tiny_model, steps=2, padding="minimal")
    f0, f1 = bad(torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError, match=match):
        it.interpolate(f0, f1, seed=0)


class _Counting:
    """A backbone that counts the frames it encodes (and forwards everything else)."""

    def __init__(self, backbone):
        self.backbone, self.calls = backbone, 0

    def __getattr__(self, name):
        return getattr(self.backbone, name)

    def encode(self, x):
        self.calls += x.shape[0]
        return self.backbone.encode(x)


@pytest.mark.parametrize("multi", [2, 4])
def test_sequence_encodes_each_frame_once(tiny_model, multi):
    it = Interpolator(tiny_model, steps=2, eta=0.0, padding="minimal")
    counting = _Counting(it.backbone)
    it.backbone = counting
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(1, 3, 24, 24, generator=g) * 2 - 1 for _ in range(3 if multi == 2 else 2)]
    out = list(it.interpolate_sequence(iter(frames), multi, seed=0))
    assert len(out) == multi * (len(frames) - 1) + 1
    for i, f in enumerate(frames):
        assert torch.equal(out[i * multi], f)  # inputs pass through untouched
    pairs = len(frames) - 1
    assert counting.calls == len(frames) + pairs * (multi // 2 - 1)  # inputs once; recursive middles once


# -- the padding rule's boundary --------------------------------------------------------------

@pytest.mark.parametrize("h,w,want", [(256, 600, (0, 168)), (256, 300, (0, 212)), (257, 600, (255, 424)),
                                      (257, 300, (255, 212)), (256, 256, (0, 0)), (256, 257, (0, 255))])
def test_reference_padding_boundary_at_256(h, w, want):
    """H <= 256 pads to multiples of 256, H > 256 to 512 (a `<` for `<=` moves 256x600 to 424)."""
    assert pad_amounts(h, w, "reference") == want == _orig_pad(h, w)


# -- samplers --------------------------------------------------------------------------------

def test_ddim_eta_one_follows_the_hand_written_loop(tiny_model):
    """DDIM at the paper's eta = 1: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,
    written out from the formula with the same noise draws."""
    from ldmvfi_fast.sampling import ddim_sample

    s = ddim_schedule(tiny_model.alphas_cumprod, 10, 1.0)
    eps_fn = lambda x, t: 0.2 * x + 1e-3 * t.float()[:, None, None, None]  # noqa: E731
    xT = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(eps_fn, xT, s, generator=torch.Generator().manual_seed(1))
    ac = tiny_model.alphas_cumprod.double()
    ts = list(range(1, 1000, 100))
    g, x = torch.Generator().manual_seed(1), xT.double()
    for i in reversed(range(len(ts))):
        a = ac[ts[i]]
        ap = ac[ts[i - 1]] if i > 0 else ac[0]
        sigma = 1.0 * ((1 - ap) / (1 - a) * (1 - a / ap)).sqrt()
        e = eps_fn(x, torch.full((2,), ts[i]))
        x0 = (x - (1 - a).sqrt() * e) / a.sqrt()
        x = ap.sqrt() * x0 + (1 - ap - sigma ** 2).sqrt() * e + sigma * torch.randn(x.shape, generator=g).double()
    assert float(sigma) > 0.01  # the stochastic term is really exercised
    torch.testing.assert_close(out.double(), x, rtol=1e-4, atol=1e-4)


def test_sampling_options_are_validated_before_anything_runs(tiny_model):
    for kw, match in [({"eta": float("nan")}, "eta"), ({"eta": -0.1}, "eta"), ({"eta": 1.5}, "eta"),
                      ({"steps": 0}, "steps"), ({"steps": 3}, "divid"), ({"sampler": "euler"}, "ddim"),
                      ({"padding": "zero"}, "padding")]:
        with pytest.raises(OptionError, match=match):
            Interpolator(tiny_model, **{"steps": 2, **kw})
    it = Interpolator(tiny_model, steps=2, padding="minimal")
    with pytest.raises(OptionError, match="seed"):
        it.interpolate(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), seed=-1)


def test_progress_callback_counts_steps_and_reads_no_tensor(tiny_model):
    it = Interpolator(tiny_model, steps=5, eta=1.0, padding="minimal")
    calls = []
    f = torch.zeros(1, 3, 16, 16)
    it.interpolate(f, f, seed=0, callback=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]
    assert all(type(a) is int and type(b) is int for a, b in calls)


def test_a_new_sampler_is_one_registry_entry(tiny_model):
    """What adding a sampler takes: one Sampler in the registry; the pipeline (and the CLI's
    --sampler choices, read from the same registry) pick it up by name."""
    from ldmvfi_fast import sampling

    def x0_only(eps_fn, x_T, sched, *, generator=None, callback=None, return_intermediates=False):
        t = sched["t"].expand(x_T.shape[0])
        return (x_T - sched["s1a"] * eps_fn(x_T, t)) / sched["sa"]

    def make(ac, steps, eta, device=None):
        return {"t": torch.tensor(999, device=device), "sa": ac[999].sqrt().to(device),
                "s1a": (1 - ac[999]).sqrt().to(device)}

    spec = sampling.register_sampler(sampling.Sampler("one_shot_test", "test only", make, x0_only))
    try:
        assert "one_shot_test" in sampling.sampler_names()
        it = Interpolator(tiny_model, steps=1, sampler="one_shot_test", padding="minimal")
        f = torch.zeros(1, 3, 16, 16)
        e = it.encode(f)
        xT = torch.randn(1, 3, 8, 8)
        want = (xT - (1 - tiny_model.alphas_cumprod[999]).sqrt() * tiny_model.eps(xT, torch.tensor([999]), torch.cat([e.z, e.z], 1))) \
            / tiny_model.alphas_cumprod[999].sqrt()
        torch.testing.assert_close(it.sample_latent(e, e, x_T=xT), want)
    finally:
        del sampling.SAMPLERS[spec.name]


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_eps_from_other_prediction_types(tiny_model, prediction):
    from ldmvfi_fast.sampling import eps_from

    ac = tiny_model.alphas_cumprod
    t = torch.tensor([10, 500, 990])
    a = ac[t].view(-1, 1, 1, 1)
    x0, eps = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    pred = x0 if prediction == "x0" else a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(eps_from(pred, x_t, t, ac, prediction), eps, rtol=1e-4, atol=1e-4)


# -- inputs ----------------------------------------------------------------------------------

def test_frames_outside_minus_one_one_are_refused_with_a_hint(tiny_model):
    it = Interpolator(tiny_model, steps=2, padding="minimal")
    ok = torch.zeros(1, 3, 16, 16)
    with pytest.raises(InputError, match=r"frame 1 .*0\.\.255"):
        it.interpolate(ok, torch.full((1, 3, 16, 16), 200.0), seed=0)
    with pytest.raises(InputError, match=r"frame 0 .*\[-1, 1\]"):
        it.interpolate(ok - 1.5, ok, seed=0)
    with pytest.raises(InputError, match="frame 1 contains NaN"):
        it.interpolate(ok, ok.clone().index_fill_(3, torch.tensor([0]), float("nan")), seed=0)


@pytest.mark.parametrize("padding", ["minimal", "reference"])
def test_sequence_of_mixed_sizes_is_refused_naming_the_frame(tiny_model, padding):
    it = Interpolator(tiny_model, steps=2, padding=padding)
    frames = [torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 200, 256)]
    with pytest.raises(InputError, match=r"frame 2 is \(1, 3, 200, 256\)") as ei:
        list(it.interpolate_sequence(frames, seed=0))
    assert not isinstance(ei.value, PaddingError)
    bad = [torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), float("nan"))]
    with pytest.raises(InputError, match="frame 1 contains NaN"):
        list(Interpolator(tiny_model, steps=2, padding="minimal").interpolate_sequence(bad, seed=0))


# -- scene cuts ------------------------------------------------------------------------------

def test_scene_cut_repeats_the_earlier_frame(tiny_model):
    from ldmvfi_fast.scene import DEFAULT_SCENE_THRESHOLD, scene_change_score

    g = torch.Generator().manual_seed(4)
    base = torch.rand(1, 3, 1, 32, generator=g).expand(1, 3, 32, 32) * 0.2 - 0.6  # a dark shot
    other = torch.rand(1, 3, 32, 1, generator=g).expand(1, 3, 32, 32) * 0.2 + 0.5  # a bright one
    shot_a = [base, base + 0.01]
    shot_b = [other, other - 0.01]
    assert float(scene_change_score(shot_a[0], shot_a[1])) < DEFAULT_SCENE_THRESHOLD
    assert float(scene_change_score(shot_a[1], shot_b[0])) > DEFAULT_SCENE_THRESHOLD
    it = Interpolator(tiny_model, steps=2, eta=0.0, padding="minimal")
    cuts = []
    out = list(it.interpolate_sequence(shot_a + shot_b, 2, seed=0, scene_threshold=DEFAULT_SCENE_THRESHOLD,
                                       on_scene_cut=cuts.append))
    assert len(out) == 7 and cuts == [1]
    assert torch.equal(out[3], shot_a[1])  # across the cut: the earlier frame again, no blend
    assert not torch.equal(out[1], shot_a[0]) and not torch.equal(out[5], shot_b[0])  # elsewhere: the model
    plain = list(it.interpolate_sequence(shot_a + shot_b, 2, seed=0))
    assert not torch.equal(plain[3], shot_a[1])
    with pytest.raises(OptionError, match="threshold"):
        list(it.interpolate_sequence(shot_a, 2, scene_threshold=0))


# -- few-step samplers, spacings and distilled students ---------------------------------------

def test_teacher_defaults_are_the_papers(tiny_model):
    it = Interpolator(tiny_model, padding="minimal")
    assert (it.sampler, it.steps, it.eta, it.spacing, it.timesteps) == ("ddim", 200, 1.0, "uniform", None)
    assert it.schedule.timesteps.tolist()[:2] == [996, 991]


def test_few_step_samplers_run_in_the_pipeline(tiny_model):
    """Every new sampler through the pipeline's sampling (one encoding shared); the stochastic
    ones reproducible from a seed (the solvers' numerics are tested in test_solvers.py)."""
    f0, f1 = torch.zeros(1, 3, 20, 24), torch.full((1, 3, 20, 24), 0.5)
    base = Interpolator(tiny_model, steps=2, padding="minimal")
    e0, e1 = base.encode(f0), base.encode(f1)
    for sampler, spacing in [("dpmpp_2m", "karras"), ("dpmpp_3m", None), ("ddim", "trailing"),
                             ("dpmpp_2m_sde", "uniform"), ("consistency", None)]:
        steps = 4 if spacing == "uniform" else 3
        eta = 0.5 if sampler in ("ddim", "dpmpp_2m_sde") else None  # the others take none (refused)
        it = Interpolator(tiny_model, steps=steps, eta=eta, sampler=sampler, spacing=spacing, padding="minimal")
        assert it.eta == eta
        assert it.spacing == (spacing or ("uniform" if sampler == "ddim" else "trailing"))
        calls = []
        z = it.sample_latent(e0, e1, torch.Generator().manual_seed(0), callback=lambda d, t: calls.append(d))
        assert z.shape == e0.z.shape and torch.isfinite(z).all() and calls == list(range(1, steps + 1)), sampler
        if it.sampler_spec.stochastic and sampler != "ddim":
            again = it.sample_latent(e0, e1, torch.Generator().manual_seed(0))
            torch.testing.assert_close(again, z, rtol=0, atol=0)


class _Student:
    """A teacher's backbone posing as a distilled student (the distillation dict is the contract)."""

    def __init__(self, model, distillation):
        from ldmvfi_fast.runtime import TorchBackbone

        self._bb = TorchBackbone(model)
        self.distillation = distillation
        for k in ("name", "device", "dtype", "pad_unit", "latent_factor", "latent_channels", "alphas_cumprod",
                  "prediction"):
            setattr(self, k, getattr(self._bb, k))
        self.check_size, self.encode, self.denoise, self.decode = (self._bb.check_size, self._bb.encode,
                                                                   self._bb.denoise, self._bb.decode)


STUDENT = {"method": "progressive", "prediction": "eps", "steps": 3, "timesteps": [999, 666, 333],
           "sampler": "dpmpp_2m"}


def test_a_student_samples_with_its_own_sampler_and_timesteps(tiny_model, caplog):
    st = _Student(tiny_model, dict(STUDENT))
    it = Interpolator(st, padding="minimal")
    assert (it.sampler, it.steps, it.eta, it.timesteps) == ("dpmpp_2m", 3, None, [999, 666, 333])  # no eta: deterministic
    assert it.schedule.timesteps.tolist() == [999, 666, 333]
    # the same count (or the same sampler) from the caller keeps the student's timesteps, silently
    caplog.clear()
    it = Interpolator(st, steps=3, sampler="ddim", padding="minimal")
    assert it.schedule.timesteps.tolist() == [999, 666, 333] and it.sampler == "ddim" and it.eta == 0.0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # another count: the caller wins, with a warning
    it = Interpolator(st, steps=5, padding="minimal")
    assert it.steps == 5 and it.schedule.timesteps.tolist() == [999, 799, 599, 399, 199]
    assert "trained for 3 steps" in caplog.text
    caplog.clear()
    it = Interpolator(st, spacing="karras", padding="minimal")
    assert it.steps == 3 and it.schedule.timesteps.tolist()[0] == 999 and "trained on timesteps" in caplog.text
    # a teacher (distillation None) keeps the paper's defaults
    assert Interpolator(_Student(tiny_model, None), padding="minimal").steps == 200
    with pytest.raises(OptionError, match="descending"):
        Interpolator(_Student(tiny_model, {**STUDENT, "timesteps": [3, 500, 999]}), padding="minimal")
