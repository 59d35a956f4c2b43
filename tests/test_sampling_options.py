"""Sampling options are resolved once (sampling.resolve_sampling): every option is used or refused
with the reason, the defaults live in one place, a student's record supplies its own, and the
schedule is built once on the backbone's real alphas."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from ldmvfi_fast import sampling as S
from ldmvfi_fast.errors import OptionError
from ldmvfi_fast.pipeline import Interpolator


def _cosine_alphas(T: int = 1000) -> torch.Tensor:
    """A real (non-linear) training schedule: what a model's alphas_cumprod looks like."""
    betas = S.make_beta_schedule("cosine", T, 0.0, 0.0)
    return torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)


class _Backbone:
    """The Backbone seam, no model: a zero U-Net, encode = 32x32 block means."""
    name, device, dtype, pad_unit, latent_factor, latent_channels, prediction = (
        "fake", torch.device("cpu"), torch.float32, 32, 32, 3, "eps")

    def __init__(self, alphas_cumprod=None, distillation=None):
        self.alphas_cumprod = _cosine_alphas() if alphas_cumprod is None else alphas_cumprod
        self.distillation = distillation

    def check_size(self, h, w, b):
        return None

    def encode(self, frames):
        return torch.nn.functional.avg_pool2d(frames, 32), []

    def denoise(self, x, t, cond):
        return torch.zeros_like(x)

    def decode(self, z, phi0, phi1, frame0, frame1):
        return torch.nn.functional.interpolate(z, scale_factor=32)


# -- options a sampler does not use are refused, with the reason --------------------------------

def test_ddpm_refuses_steps_instead_of_running_all_of_them():
    with pytest.raises(OptionError, match="ddpm runs all 1000 training steps; steps does not apply"):
        Interpolator(_Backbone(), sampler="ddpm", steps=4)
    with pytest.raises(S.SamplingOptionError) as ei:
        S.SamplingRequest(sampler="ddpm", steps=4).check()
    assert ei.value.options == ("steps",)
    assert ei.value.render("--{}") == "ddpm runs all T training steps; --steps does not apply"
    with pytest.raises(S.SamplingOptionError) as ei:  # every inapplicable option at once, each with its reason
        S.SamplingRequest(sampler="ddpm", steps=2, spacing="karras").check(1000)
    assert ei.value.options == ("steps", "spacing") and "ddpm takes no spacing" in str(ei.value)
    for kw in ({"spacing": "karras"}, {"timesteps": [999, 0]}):
        with pytest.raises(OptionError, match=f"ddpm takes no {next(iter(kw))}"):
            Interpolator(_Backbone(), sampler="ddpm", **kw)
    # what runs is recorded: all T steps, no eta, no spacing
    it = Interpolator(_Backbone(), sampler="ddpm")
    assert (it.steps, it.eta, it.spacing, it.timesteps) == (1000, None, None, None)
    assert it.plan.describe() == "ddpm, 1000 steps"


@pytest.mark.parametrize("sampler, why", [("dpmpp_2m", "is deterministic and takes no eta"),
                                          ("dpmpp_3m", "is deterministic and takes no eta"),
                                          ("consistency", "takes no eta")])
def test_samplers_without_eta_refuse_it(sampler, why):
    for eta in (0.5, 0.0):  # any eta given is refused, even the harmless one
        with pytest.raises(OptionError, match=f"{sampler} {why}"):
            Interpolator(_Backbone(), sampler=sampler, steps=2, eta=eta)
    with pytest.raises(S.SamplingOptionError, match="--eta"):
        try:
            S.SamplingRequest(sampler=sampler, eta=0.5).check()
        except S.SamplingOptionError as exc:
            raise S.SamplingOptionError(exc.render("--{}")) from None
    it = Interpolator(_Backbone(), sampler=sampler, steps=2)
    assert it.eta is None and it.plan.eta is None


def test_eta_is_used_where_a_sampler_takes_it():
    for sampler in ("ddim", "dpmpp_2m_sde"):
        it = Interpolator(_Backbone(), sampler=sampler, steps=4, eta=0.25, spacing="trailing")
        assert it.eta == 0.25
    assert float(Interpolator(_Backbone(), steps=4, eta=0.0).schedule.sigmas.abs().max()) == 0.0


def test_request_checks_need_no_model_and_name_the_option():
    bad = [({"steps": 0}, "steps must be an integer between 1 and 1000, got 0"),
           ({"steps": 1001}, "between 1 and 1000"), ({"steps": 2.0}, "steps must be an integer"),
           ({"steps": True}, "steps must be an integer"), ({"eta": float("nan")}, r"eta must be a number in \[0, 1\]"),
           ({"eta": "0.5"}, "eta must be a number"), ({"sampler": "euler"}, "sampler must be one of"),
           ({"spacing": "linear"}, "spacing must be one of"), ({"timesteps": [5, 10]}, "timesteps must be strictly"),
           ({"timesteps": [1000, 3]}, r"timesteps must lie in \[0, 999\]"),
           ({"steps": 3, "timesteps": [9, 5]}, r"steps \(3\) differs"),
           ({"spacing": "trailing", "timesteps": [9, 5]}, "spacing and timesteps exclude each other"),
           ({"spacing": "uniform", "steps": 3}, "dividing 1000")]
    for kw, match in bad:
        with pytest.raises(S.SamplingOptionError, match=match):
            S.SamplingRequest(**kw).check(S.DEFAULT_NUM_TRAIN_STEPS)
    ok = S.SamplingRequest(sampler="ddim", steps=np.int64(10), eta=1, timesteps=None).check(1000)
    assert ok == S.SamplingRequest("ddim", 10, 1.0) and type(ok.steps) is int and type(ok.eta) is float
    assert S.SamplingRequest(timesteps=[999, 499]).check().timesteps == (999, 499)
    # without T only the lower bound is known; the model's T is checked when resolving
    assert S.SamplingRequest(steps=5000).check().steps == 5000
    with pytest.raises(OptionError, match="between 1 and 1000"):
        S.resolve_sampling(S.SamplingRequest(steps=5000), 1000)


def test_one_step_range_check_and_one_list_of_ddim_counts():
    msgs = set()
    for call in (lambda: S.check_steps(0, 1000), lambda: S.ddim_timesteps(0, 1000),
                 lambda: S.make_timesteps(_cosine_alphas(), 0, "trailing"),
                 lambda: S.SamplingRequest(steps=0).check(1000)):
        with pytest.raises(S.SamplingOptionError) as ei:
            call()
        msgs.add(str(ei.value))
    assert msgs == {"steps must be an integer between 1 and 1000, got 0"}
    counts = S.ddim_step_counts(1000)
    assert counts == (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500)
    assert all(len(S.ddim_timesteps(n, 1000)) == n for n in counts)
    assert S.ddim_step_counts(12) == (1, 2, 3, 4, 6)
    with pytest.raises(S.SamplingOptionError) as ei:
        S.ddim_timesteps(3, 1000)
    assert ", ".join(map(str, counts)) in str(ei.value)
    # the manifest's tables use the same counts, on the same DDIM schedule code
    ac = _cosine_alphas()
    tab = S.ddim_tables(ac)
    assert [int(k) for k in tab["schedules"]] == list(counts)
    assert tab["schedules"]["40"]["sigmas"][1] == S.ddim_schedule(ac, 40, 1.0).sigmas.tolist()
    assert list(S.ddim_tables(ac[:12])["schedules"]) == ["1", "2", "3", "4", "6"]
    from ldmvfi_fast.export import aoti

    assert aoti.ddim_tables is S.ddim_tables


def test_a_uniform_count_that_does_not_divide_t_records_what_runs(caplog):
    with caplog.at_level(logging.WARNING):
        it = Interpolator(_Backbone(), steps=7)
    assert it.steps == it.schedule.num_steps == 8 and "gives 8" in caplog.text


# -- defaults in one place ----------------------------------------------------------------------

def test_defaults_come_from_one_place(monkeypatch):
    it = Interpolator(_Backbone())
    assert (it.sampler, it.steps, it.eta, it.spacing) == (S.DEFAULT_SAMPLER, S.DEFAULT_STEPS, S.DEFAULT_ETA, "uniform")
    monkeypatch.setattr(S, "DEFAULT_STEPS", 4)
    monkeypatch.setattr(S, "DEFAULT_ETA", 0.0)
    it = Interpolator(_Backbone())
    assert (it.steps, it.eta, it.schedule.num_steps) == (4, 0.0, 4)
    monkeypatch.setattr(S, "DEFAULT_SAMPLER", "dpmpp_2m")
    it = Interpolator(_Backbone())
    assert (it.sampler, it.steps, it.eta, it.spacing) == ("dpmpp_2m", 4, None, "trailing")
    assert S.resolve_sampling(S.SamplingRequest(), 1000).steps == 4


def test_options_as_one_request():
    req = S.SamplingRequest(sampler="dpmpp_2m", steps=3, spacing="karras")
    a, b = Interpolator(_Backbone(), options=req), Interpolator(_Backbone(), sampler="dpmpp_2m", steps=3,
                                                                  spacing="karras")
    assert a.plan == b.plan and a.plan.request == req
    assert a.schedule.timesteps.tolist() == b.schedule.timesteps.tolist()
    with pytest.raises(OptionError, match="not both"):
        Interpolator(_Backbone(), steps=3, options=req)
    with pytest.raises(OptionError, match="SamplingRequest"):
        Interpolator(_Backbone(), options={"steps": 3})


# -- a distilled student's record ---------------------------------------------------------------

REC = {"method": "progressive", "prediction": "eps", "steps": 2, "timesteps": [999, 499], "sampler": "ddim",
       "eta": 0.3}


def test_a_students_record_supplies_sampler_steps_timesteps_and_eta(caplog):
    it = Interpolator(_Backbone(distillation=dict(REC)))
    assert (it.sampler, it.steps, it.eta, it.timesteps, it.spacing) == ("ddim", 2, 0.3, [999, 499], None)
    assert it.schedule.timesteps.tolist() == [999, 499] and it.plan.distilled
    assert it.plan.describe() == "ddim, 2 steps, eta 0.3, timesteps [999, 499]"
    plan = S.resolve_sampling(None, _cosine_alphas(), {k: v for k, v in REC.items() if k != "eta"})
    assert plan.eta == S.STUDENT_ETA and plan.timesteps == (999, 499)
    # the caller's options win
    it = Interpolator(_Backbone(distillation=dict(REC)), eta=1.0)
    assert it.eta == 1.0 and it.timesteps == [999, 499]
    # a consistency student takes no eta: none recorded, and one given is refused with the reason
    cons = {**REC, "method": "consistency", "sampler": "consistency", "prediction": "x0"}
    assert Interpolator(_Backbone(distillation=cons)).eta is None
    with pytest.raises(OptionError, match="consistency \\(the student's own sampler\\) takes no eta"):
        Interpolator(_Backbone(distillation=cons), eta=0.5)
    # ddpm named for a student: all T steps (its timesteps do not apply), with the warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        it = Interpolator(_Backbone(distillation=dict(REC)), sampler="ddpm")
    assert (it.steps, it.timesteps) == (1000, None) and "trained for 2 steps; sampling with 1000" in caplog.text
    with pytest.raises(OptionError, match="record's eta"):
        Interpolator(_Backbone(distillation={**REC, "eta": 2.0}))


# -- the schedule is built once, on the backbone's alphas ---------------------------------------

def test_the_schedule_is_built_once_on_the_backbones_alphas(monkeypatch):
    seen = []
    spec = S.SAMPLERS["dpmpp_2m"]

    def make(alphas_cumprod, *a, **k):
        seen.append(alphas_cumprod.clone())
        return spec.make_schedule(alphas_cumprod, *a, **k)

    monkeypatch.setitem(S.SAMPLERS, "dpmpp_2m", dataclasses.replace(spec, make_schedule=make))
    bb = _Backbone()
    it = Interpolator(bb, sampler="dpmpp_2m", steps=6, spacing="karras")
    assert len(seen) == 1 and torch.equal(seen[0], bb.alphas_cumprod)
    # karras timesteps depend on the alphas: the backbone's, not a stand-in's
    want = S.make_timesteps(bb.alphas_cumprod, 6, "karras").tolist()
    assert it.schedule.timesteps.tolist() == want
    assert want != S.make_timesteps(torch.linspace(0.999, 0.01, 1000), 6, "karras").tolist()
    # resolving against T alone checks the options and builds nothing
    seen.clear()
    plan = S.resolve_sampling(S.SamplingRequest(sampler="dpmpp_2m", steps=6), 1000)
    assert plan.schedule is None and seen == []
    assert plan.build_schedule(bb.alphas_cumprod).timesteps.tolist() == [999, 832, 666, 499, 332, 166]
    with pytest.raises(OptionError, match="1000 training steps"):
        plan.build_schedule(bb.alphas_cumprod[:500])


def test_the_plan_runs():
    """A short end-to-end run through the fake backbone with a request built up front."""
    it = Interpolator(_Backbone(), options=S.SamplingRequest(sampler="dpmpp_2m", steps=2), padding="minimal")
    calls = []
    out = it.interpolate(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), seed=0,
                         callback=lambda d, t: calls.append((d, t)))
    assert out.shape == (1, 3, 32, 32) and calls == [(1, 2), (2, 2)]
