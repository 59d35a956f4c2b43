"""Few-step samplers on an analytic model: Gaussian data, whose eps-prediction and
probability-flow ODE are closed form in the discrete VP schedule.

Data x0 ~ N(mu, s^2) per element. Then x_t ~ N(alpha_t mu, alpha_t^2 s^2 + sigma_t^2), the exact
eps-prediction is ``sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2)`` and along the ODE
``(x_t - alpha_t mu) / sqrt(alpha_t^2 s^2 + sigma_t^2)`` is constant: the exact solution from any
timestep to any other, defined on the same ``alphas_cumprod`` the solvers use (float64).

Orders: on grids that refine everywhere the error falls as steps^-order. Uniform and trailing
spacings are uniform in t, which near t = 0 is geometric in lambda (the last steps do not shrink
in lambda as S grows), so for them the error is measured at a timestep every grid shares
(t = 201 / 199; the grids of 5..40 steps are nested); Karras grids start and end at the same
timesteps and refine everywhere, measured on the final output (a 20000-step schedule so that
rounding to integer timesteps is negligible).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ldmvfi_fast import sampling as S
from ldmvfi_fast.errors import OptionError
from ldmvfi_fast.sampling import DiffusionSchedule, make_beta_schedule

STEPS = (5, 10, 20, 40)


def _ac(T: int = 1000) -> torch.Tensor:
    """LDMVFI's linear schedule (0.0015 .. 0.0195 over 1000 steps), float32 as in a checkpoint;
    a finer T keeps the same curve."""
    k = 1000 / T
    return DiffusionSchedule.from_betas(make_beta_schedule("linear", T, 0.0015 * k, 0.0195 * k)).buffers["alphas_cumprod"]


class Gaussian:
    def __init__(self, ac: torch.Tensor, seed: int = 0, shape=(1, 3, 4, 4)):
        g = torch.Generator().manual_seed(seed)
        self.ac = ac.double()
        self.mu = torch.randn(shape, generator=g, dtype=torch.float64)
        self.s = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)

    def _a(self, t):
        a = self.ac[t]
        return a.view(-1, 1, 1, 1) if a.dim() else a

    def eps(self, x, t):
        a = self._a(t)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)

    def flow(self, x, t0: int, t1: int):
        """The exact ODE solution at t1 from x at t0."""
        a0, a1 = self.ac[t0], self.ac[t1]
        sd0, sd1 = (a0 * self.s ** 2 + 1 - a0).sqrt(), (a1 * self.s ** 2 + 1 - a1).sqrt()
        return a1.sqrt() * self.mu + sd1 / sd0 * (x - a0.sqrt() * self.mu)

    def x0(self, x, t: int):
        """The exact x0-prediction E[x0 | x_t] (what the solvers' last step returns)."""
        a = self.ac[t]
        return self.mu + a.sqrt() * self.s ** 2 * (x - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)


def _xT(n=8, seed=1):
    return torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _error(name: str, spacing: str, steps: int, ac, model: Gaussian, at: int | None) -> float:
    spec = S.get_sampler(name)
    sched = spec.make_schedule(ac, steps, 0.0, "cpu", spacing=spacing)
    xT = _xT()
    out, inter = spec.sample(model.eps, xT, sched, return_intermediates=True)
    ts = sched.timesteps.tolist()
    if at is not None:  # the state on reaching timestep `at` (x_inter[j] is at ts[j])
        j = ts.index(at)
        got, want = inter["x_inter"][j], model.flow(xT, ts[0], at)
    elif name == "ddim":  # DDIM's last step lands on alphas_cumprod[0], as the original's
        got, want = out, model.flow(xT, ts[0], 0)
    else:  # the last step returns the x0-prediction at the last timestep
        got, want = out, model.x0(model.flow(xT, ts[0], ts[-1]), ts[-1])
    return float((got - want).abs().max())


def _slope(steps, errs) -> float:
    return float(-np.polyfit(np.log(steps), np.log(errs), 1)[0])


#: allowed log-log slopes. DPM-Solver++(3M) starts with a first-order step and a second-order
#: one (there is no history yet), as the paper's recipe does; that warm-up's O(h^2) error bounds
#: its asymptotic order by 2 (measured on a grid uniform in lambda: local slopes 3.9, 2.5, 2.2,
#: 2.1, 2.0 from 10 to 320 steps), with a much smaller constant than 2M's: on the step counts that
#: matter here its slope is ~3 on uniform/trailing grids. Karras grids need 10+ steps to be in
#: the asymptotic range at all (their 5-step grid has huge middle steps).
ORDER = {"uniform": {"ddim": (0.8, 1.3), "dpmpp_2m": (1.7, 2.5), "dpmpp_3m": (2.3, 3.6)},
         "trailing": {"ddim": (0.8, 1.3), "dpmpp_2m": (1.7, 2.5), "dpmpp_3m": (2.3, 3.6)},
         "karras": {"ddim": (0.8, 1.3), "dpmpp_2m": (1.7, 2.5), "dpmpp_3m": (1.3, 3.6)}}


@pytest.mark.parametrize("spacing", ["uniform", "trailing", "karras"])
def test_solvers_converge_at_their_order(spacing):
    ac = _ac(20000 if spacing == "karras" else 1000)
    model = Gaussian(ac)
    at = {"uniform": 201, "trailing": 199, "karras": None}[spacing]
    steps = (10, 20, 40, 80) if spacing == "karras" else STEPS
    errs = {name: [_error(name, spacing, n, ac, model, at) for n in steps] for name in ORDER[spacing]}
    for name, (lo, hi) in ORDER[spacing].items():
        slope = _slope(steps, errs[name])
        assert lo <= slope <= hi, f"{name} ({spacing}): slope {slope:.2f}, errors {errs[name]}"
    # at the finest grid the higher orders are more accurate
    assert errs["dpmpp_3m"][-1] < errs["dpmpp_2m"][-1] < errs["ddim"][-1]


def test_ddim_uniform_is_the_originals_rule_and_other_spacings():
    ac = _ac()
    assert S.ddim_schedule(ac, 10, 0.0).timesteps.tolist() == list(range(901, 0, -100))
    assert S.make_timesteps(ac, 4, "trailing").tolist() == [999, 749, 499, 249]
    k = S.make_timesteps(ac, 10, "karras")
    assert k[0] == 999 and k[-1] == 0 and np.all(np.diff(k) < 0)
    # Karras: distinct timesteps up to T steps; the sigma ramp is denser at the clean end
    assert len(set(S.make_timesteps(ac, 1000, "karras").tolist())) == 1000
    assert (k[-2] - k[-1]) < (k[0] - k[1]) * 20


def test_explicit_timesteps_override_the_spacing():
    ac = _ac()
    for name in ("ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "consistency"):
        spec = S.get_sampler(name)
        sched = spec.make_schedule(ac, None, 0.0, "cpu", timesteps=[999, 600, 250, 20])
        assert sched.timesteps.tolist() == [999, 600, 250, 20], name
    for bad, match in [([5, 10], "descending"), ([1000, 3], r"\[0, 999\]"), ([], "non-empty"), ("abc", "integers"),
                       ([3.5, 1], "integers")]:
        with pytest.raises(OptionError, match=match):
            S.SamplingRequest(sampler="dpmpp_2m", timesteps=bad).check(1000)
    with pytest.raises(OptionError, match="differs"):
        S.SamplingRequest(sampler="ddim", steps=3, eta=0.0, timesteps=[900, 500]).check(1000)
    with pytest.raises(OptionError, match="spacing"):
        S.SamplingRequest(sampler="ddim", steps=10, spacing="linear").check(1000)
    with pytest.raises(OptionError, match="no spacing"):
        S.SamplingRequest(sampler="ddpm", spacing="karras").check(1000)


def test_one_step_solvers_return_the_x0_prediction():
    ac = _ac()
    model = Gaussian(ac)
    xT = _xT()
    for name in ("dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "consistency"):
        out = S.get_sampler(name).sample(model.eps, xT, S.get_sampler(name).make_schedule(ac, 1, 1.0, "cpu"),
                                         generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, model.x0(xT, 999), rtol=1e-10, atol=1e-10)


def test_sde_with_eta_zero_is_2m_and_seeds():
    ac = _ac()
    model = Gaussian(ac)
    xT = _xT()
    ode = S.solver_sample(model.eps, xT, S.get_sampler("dpmpp_2m").make_schedule(ac, 8, 0.0, "cpu"))
    sde0 = S.solver_sample(model.eps, xT, S.get_sampler("dpmpp_2m_sde").make_schedule(ac, 8, 0.0, "cpu"),
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sde0, ode, rtol=0, atol=0)
    for name in ("dpmpp_2m_sde", "consistency"):
        spec = S.get_sampler(name)
        sched = spec.make_schedule(ac, 8, 1.0, "cpu")
        run = lambda seed: spec.sample(model.eps, xT, sched, generator=torch.Generator().manual_seed(seed))  # noqa: E731
        a, b, c = run(0), run(0), run(1)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert (a - c).abs().max() > 1e-3, name


def test_sde_samples_the_data_distribution():
    """With the exact eps, the SDE's samples (many x_T) have the data's mean and variance."""
    ac = _ac()
    model = Gaussian(ac, shape=(1, 2, 2, 2))
    xT = torch.randn(4000, 2, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sched = S.get_sampler("dpmpp_2m_sde").make_schedule(ac, 50, 1.0, "cpu")
    out = S.solver_sample(model.eps, xT, sched, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out.mean(0, keepdim=True), model.mu, atol=0.06, rtol=0)
    torch.testing.assert_close(out.std(0, keepdim=True), model.s, atol=0.0, rtol=0.06)


def test_consistency_sampling_renoises_to_the_next_timestep():
    """A student predicting x0 = c: each step re-noises c to the next timestep with fresh
    noise (mean alpha c, std sigma), the output is c."""
    ac = _ac()
    c = torch.full((1, 1, 2, 2), 0.7, dtype=torch.float64)

    def eps_fn(x, t):  # the eps implied by an x0-prediction of c (the pipeline's eps_from round trip)
        return S.eps_from(c.expand_as(x), x, t, ac.double(), "x0")

    xT = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sched = S.get_sampler("consistency").make_schedule(ac, None, 0.0, "cpu", timesteps=[999, 500, 100])
    out, inter = S.solver_sample(eps_fn, xT, sched, generator=torch.Generator().manual_seed(6),
                                 return_intermediates=True)
    torch.testing.assert_close(out, c.expand_as(out), rtol=1e-6, atol=1e-6)
    for j, t in ((1, 500), (2, 100)):
        x, a = inter["x_inter"][j], ac.double()[t]
        assert abs(float(x.mean()) - float(a.sqrt() * 0.7)) < 0.03
        assert abs(float(x.std()) / float((1 - a).sqrt()) - 1) < 0.03


def test_no_host_sync_in_the_loop(monkeypatch):
    """The loop reads no tensor on the host (no .item(), float(), bool() of a tensor)."""
    ac = _ac()
    model = Gaussian(ac)
    for name in ("dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "consistency"):
        sched = S.get_sampler(name).make_schedule(ac, 6, 1.0, "cpu")

        def no(*a, **k):
            raise AssertionError("host sync in the sampling loop")
        with monkeypatch.context() as m:
            for attr in ("item", "__float__", "__bool__", "__int__", "tolist", "numpy"):
                m.setattr(torch.Tensor, attr, no)
            S.solver_sample(model.eps, _xT(), sched, generator=torch.Generator().manual_seed(0))


def test_registry_lists_the_new_samplers():
    names = S.sampler_names()
    for n in ("ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "consistency"):
        assert n in names
    assert S.get_sampler("ddim").default_spacing == "uniform"
    assert not S.get_sampler("dpmpp_2m").stochastic and S.get_sampler("consistency").stochastic


@pytest.mark.parametrize("name, order", [("dpmpp_2m", 2), ("dpmpp_3m", 3)])
def test_one_multistep_update_has_local_error_of_order_plus_one(name, order):
    """One update from the exact state and the exact x0-predictions of the previous steps:
    its error falls as h^(order + 1) (the coefficients, with the warm-up out of the picture).
    Grids of 20..160 trailing steps on a 20000-step schedule; the step from the grid's middle."""
    ac = _ac(20000)
    model = Gaussian(ac)
    xT = _xT()
    steps, errs = (20, 40, 80, 160), []
    for n in steps:
        sched = S.get_sampler(name).make_schedule(ac, n, 0.0, "cpu", spacing="trailing")
        ts = sched.timesteps.tolist()
        i = n // 2
        assert sched.orders[i] == order
        x = [model.flow(xT, ts[0], ts[i - k]) for k in range(order)]  # exact states at t_i, t_{i-1}, ...
        m = [model.x0(x[k], ts[i - k]) for k in range(order)]
        c = [sched.c0[i], sched.c1[i], sched.c2[i]]
        new = sched.cx[i] * x[0] + sum(c[k] * m[k] for k in range(order))
        errs.append(float((new - model.flow(xT, ts[0], ts[i + 1])).abs().max()))
    slope = _slope(steps, errs)
    assert order + 0.7 <= slope <= order + 1.4, f"{name}: local slope {slope:.2f}, errors {errs}"


