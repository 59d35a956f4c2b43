"""Diffusion schedules and samplers.

Schedules are builders; samplers are small functions with one signature:
``sample(eps_fn, x_T, schedule, *, generator=None, callback=None, return_intermediates=False)``,
where ``eps_fn(x_t, t)`` maps a latent (B, C, h, w) and int64 timesteps (B,) to predicted
noise. Every per-step coefficient is a device tensor built before the loop, so the loop never
synchronises with the host (it can be captured in a CUDA graph or unrolled in an export);
``callback(done, total)`` is called after each step with two ints and reads no tensor.

:data:`SAMPLERS` is the one registry of samplers, read by the pipeline and the command line:
each entry (a :class:`Sampler`) pairs a schedule builder ``make_schedule(alphas_cumprod,
steps, eta, device)`` with its ``sample`` function. Adding a sampler is one
:func:`register_sampler` call in this file.

Models that predict ``v`` or ``x0`` instead of the noise are adapted by :func:`eps_from`.

Samplers: ``ddim`` (the original's), ``ddpm`` (ancestral, all steps), ``dpmpp_2m`` / ``dpmpp_3m``
(DPM-Solver++ multistep in x0-prediction form, deterministic), ``dpmpp_2m_sde`` (its SDE variant,
eta scales the noise) and ``consistency`` (multistep consistency sampling for x0-predicting
students). All but ``ddpm`` take a timestep ``spacing`` (:data:`SPACINGS`: ``uniform``, the
original's rule and DDIM's default; ``trailing``, the others' default; ``karras``) or explicit
descending ``timesteps`` (a distilled student's). All work on the discrete VP schedule given by
``alphas_cumprod``. DDIM's last step lands on ``alphas_cumprod[0]`` as the original's; the
DPM-Solver++ and consistency samplers' last step returns the x0-prediction (sigma = 0).

Numerics follow the original (``ldm/models/diffusion/ddim.py``): DDIM timesteps
``range(0, T, T // S) + 1``, alphas taken from the float32 ``alphas_cumprod``, ``alphas_prev``
starting at ``alphas_cumprod[0]`` (so the last step lands on t = 0's alpha, not 1),
sigmas computed in float64 then used in float32.

Options are resolved in one place. A :class:`SamplingRequest` is what the user asked (each field
None when not given); :meth:`SamplingRequest.check` validates it without a model (types, ranges,
and options the named sampler does not use are refused with the reason) and
:func:`resolve_sampling` applies the defaults once (the caller's, else a distilled student's
record, else :data:`DEFAULT_SAMPLER` / :data:`DEFAULT_STEPS` / :data:`DEFAULT_ETA`), checks them
against the model's real schedule and returns a :class:`SamplingPlan` (what runs, and its
schedule built on the model's ``alphas_cumprod``). Errors about an option are
:class:`SamplingOptionError`: they name options in Python keyword form (``steps``) and
:meth:`SamplingOptionError.render` names them otherwise (``exc.render("--{}")``: ``--steps``).
"""
from __future__ import annotations

import dataclasses
import logging
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from .errors import OptionError
from .parameterization import PREDICTIONS, to_eps
from .samplers import (  # noqa: F401 - the registry and the options, re-exported
    DEFAULT_ETA,
    DEFAULT_NUM_TRAIN_STEPS,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    OPTION_NAMES,
    SAMPLERS,
    SPACINGS,
    STUDENT_ETA,
    Sampler,
    SamplingOptionError,
    SamplingRequest,
    _check_eta,
    _check_spacing,
    _check_timesteps,
    _count_mismatch,
    _refuse_unused,
    _uniform_timesteps,
    check_steps,
    ddim_step_counts,
    get_sampler,
    register_sampler,
    sampler_names,
)

log = logging.getLogger(__name__)

EpsFn = Callable[[Tensor, Tensor], Tensor]
#: ``callback(done, total)`` after each sampling step; two ints, no tensor (no host sync)
Callback = Callable[[int, int], None]

__all__ = ["make_beta_schedule", "DiffusionSchedule", "DDIMSchedule", "ddim_timesteps", "ddim_schedule",
           "ddim_step_counts", "ddim_tables", "DDIM_TABLE_STEPS", "DDIM_TABLE_ETAS",
           "ddim_sample", "ddpm_sample", "SPACINGS", "make_timesteps", "SolverSchedule", "solver_sample",
           "Sampler", "SAMPLERS", "register_sampler", "get_sampler", "sampler_names",
           "DEFAULT_SAMPLER", "DEFAULT_STEPS", "DEFAULT_ETA", "STUDENT_ETA", "DEFAULT_NUM_TRAIN_STEPS",
           "SamplingOptionError", "SamplingRequest", "SamplingPlan", "resolve_sampling", "check_steps",
           "eps_from", "PREDICTIONS", "Callback"]



def make_beta_schedule(kind: str, n: int, linear_start: float, linear_end: float, cosine_s: float = 8e-3) -> np.ndarray:
    """Betas (float64) as the original's ``make_beta_schedule``."""
    if kind == "linear":
        return (torch.linspace(linear_start ** 0.5, linear_end ** 0.5, n, dtype=torch.float64, device="cpu") ** 2).numpy()
    if kind == "sqrt_linear":
        return torch.linspace(linear_start, linear_end, n, dtype=torch.float64, device="cpu").numpy()
    if kind == "sqrt":
        return (torch.linspace(linear_start, linear_end, n, dtype=torch.float64, device="cpu") ** 0.5).numpy()
    if kind == "cosine":
        t = torch.arange(n + 1, dtype=torch.float64, device="cpu") / n + cosine_s
        a = torch.cos(t / (1 + cosine_s) * np.pi / 2).pow(2)
        a = a / a[0]
        return np.clip((1 - a[1:] / a[:-1]).numpy(), 0, 0.999)
    raise ValueError(f"unknown beta schedule {kind!r}")


SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")


@dataclass
class DiffusionSchedule:
    """The 12 float32 buffers of the training schedule (checkpoint top-level keys)."""
    buffers: dict[str, Tensor]

    @classmethod
    def from_betas(cls, betas: np.ndarray) -> "DiffusionSchedule":
        alphas = 1.0 - betas
        ac = np.cumprod(alphas, axis=0)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        arrs = {
            "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "log_one_minus_alphas_cumprod": np.log(1.0 - ac), "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1), "posterior_variance": post_var,
            "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)}
        return cls({k: torch.tensor(v, dtype=torch.float32) for k, v in arrs.items()})

    @property
    def num_timesteps(self) -> int:
        return int(self.buffers["alphas_cumprod"].shape[0])


@dataclass
class DDIMSchedule:
    """Per-step DDIM coefficients, in sampling order (from the noisiest step down).

    All tensors have shape (S,) and live on one device; ``timesteps`` is int64.
    """
    timesteps: Tensor
    sqrt_alphas: Tensor
    sqrt_one_minus_alphas: Tensor
    sqrt_alphas_prev: Tensor
    dir_coef: Tensor  # sqrt(1 - alpha_prev - sigma^2)
    sigmas: Tensor
    # float64 numpy copies in the original's (ascending) order, for inspection and tests
    timesteps_np: np.ndarray
    alphas_np: np.ndarray
    alphas_prev_np: np.ndarray
    sigmas_np: np.ndarray

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])




def ddim_timesteps(num_steps: int, num_train_steps: int = DEFAULT_NUM_TRAIN_STEPS) -> np.ndarray:
    """Uniform DDIM timesteps as the original: ``range(0, T, T // S) + 1`` (ascending).

    As in the original, when S does not divide T the count can exceed S (e.g. S=7 gives 8
    steps, with a warning); a step that would land past T - 1 is an error
    (:class:`SamplingOptionError`, naming :func:`ddim_step_counts`).
    """
    num_steps = check_steps(num_steps, num_train_steps)
    ts = _uniform_timesteps(num_steps, num_train_steps)
    if len(ts) != num_steps:
        log.warning("%d DDIM steps requested; the original's uniform rule gives %d", num_steps, len(ts))
    return ts


def ddim_schedule(alphas_cumprod: Tensor, num_steps: int | None, eta: float, device=None, *, spacing: str = "uniform",
                  timesteps=None) -> DDIMSchedule:
    """DDIM coefficients from the model's float32 ``alphas_cumprod`` (T,).

    ``spacing`` picks the timesteps (:func:`make_timesteps`; ``uniform``, the default, is the
    original's rule and numerics); ``timesteps`` (descending ints) overrides it (then
    ``num_steps`` may be None). The step after the last lands on ``alphas_cumprod[0]``, as the
    original's."""
    ac32 = alphas_cumprod.detach().to("cpu", torch.float32)
    ts = make_timesteps(ac32, num_steps, spacing=spacing, timesteps=timesteps)[::-1].copy()  # ascending
    a32 = ac32[torch.from_numpy(ts)]
    a = a32.double().numpy()
    a_prev = np.asarray([float(ac32[0])] + a[:-1].tolist(), dtype=np.float64)
    sig = eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    a_prev32 = torch.tensor(a_prev, dtype=torch.float32)
    sig32 = torch.tensor(sig, dtype=torch.float32)
    dir_coef = (1.0 - a_prev32 - sig32 ** 2).sqrt()
    flip = lambda t: torch.flip(t, [0]).to(device)  # noqa: E731 - sampling order
    return DDIMSchedule(
        timesteps=flip(torch.from_numpy(ts).long()), sqrt_alphas=flip(a32.sqrt()),
        sqrt_one_minus_alphas=flip((1.0 - a32).sqrt()), sqrt_alphas_prev=flip(a_prev32.sqrt()),
        dir_coef=flip(dir_coef), sigmas=flip(sig32), timesteps_np=ts, alphas_np=a32.numpy(),
        alphas_prev_np=a_prev, sigmas_np=sig)


#: DDIM step counts :func:`ddim_tables` writes by default: None, every count of :func:`ddim_step_counts`
#: for the schedule's T (the counts the original's uniform rule gives exactly)
DDIM_TABLE_STEPS = None
#: etas of the tables: 0 (deterministic DDIM) and 1 (the paper's, :data:`DEFAULT_ETA`)
DDIM_TABLE_ETAS = (0.0, 1.0)


def ddim_tables(alphas_cumprod, steps=DDIM_TABLE_STEPS, etas=DDIM_TABLE_ETAS) -> dict:
    """An engine manifest's ``ddim`` section (C++ runtimes do not re-derive the schedule): per step
    count, the float32 coefficients that :func:`ddim_schedule` computes, in sampling order
    (noisiest step first).

    ``{"rule", "num_train_steps", "etas": [..], "schedules": {"<S>": {"timesteps": [S ints],
    "sqrt_alphas", "sqrt_one_minus_alphas", "sqrt_alphas_prev": [S floats], "dir_coef", "sigmas":
    [one list of S floats per eta]}}}``. ``steps``: the counts (default: :func:`ddim_step_counts`
    of T); a count the uniform rule does not give exactly (not one of those) is left out. Floats
    are the float32 values written as doubles (exact). A sampler step i then is
    (:func:`ddim_sample`): ``e = eps(x, t[i])``, ``x0 = (x - sqrt_one_minus_alphas[i] e) / sqrt_alphas[i]``,
    ``x = sqrt_alphas_prev[i] x0 + dir_coef[i] e + sigmas[i] noise``.
    """
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
    T = int(ac.shape[0])
    exact = ddim_step_counts(T)
    etas = [float(e) for e in etas]
    out = {"rule": "original uniform DDIM timesteps range(0, T, T // S) + 1, coefficients of "
                   "ldmvfi_fast.sampling.ddim_schedule (float32), sampling order",
           "num_train_steps": T, "etas": etas, "schedules": {}}
    for S in (exact if steps is None else steps):
        if S not in exact:
            continue
        per_eta = [ddim_schedule(ac, S, eta) for eta in etas]
        d = per_eta[0]
        out["schedules"][str(S)] = {
            "timesteps": [int(t) for t in d.timesteps.tolist()],
            "sqrt_alphas": d.sqrt_alphas.tolist(), "sqrt_one_minus_alphas": d.sqrt_one_minus_alphas.tolist(),
            "sqrt_alphas_prev": d.sqrt_alphas_prev.tolist(),
            "dir_coef": [s.dir_coef.tolist() for s in per_eta], "sigmas": [s.sigmas.tolist() for s in per_eta]}
    return out


# ---------------------------------------------------------------------------------------------
# timestep spacings

KARRAS_RHO = 7.0




def make_timesteps(alphas_cumprod: Tensor, steps: int | None, spacing: str = "uniform",
                   timesteps=None) -> np.ndarray:
    """The sampling timesteps, descending (noisiest first), as int64 numpy.

    ``timesteps`` (a descending list of ints, e.g. the ones a distilled student was trained on)
    is checked and returned as is; otherwise ``steps`` timesteps by ``spacing`` (:data:`SPACINGS`).
    Raises :class:`SamplingOptionError` (a ``ValueError``) for what cannot be done.
    """
    T = int(alphas_cumprod.shape[0])
    if timesteps is not None:
        ts = _check_timesteps(timesteps, T)
        if steps is not None and check_steps(steps, T) != len(ts):
            raise _count_mismatch(steps, len(ts))
        return ts
    _check_spacing(spacing)
    steps = check_steps(steps, T)
    if spacing == "uniform":
        return ddim_timesteps(steps, T)[::-1].copy()
    if spacing == "trailing":
        # T - k T / S exactly (an arange of a float step drifts: 937.4999... for T=1000, S=48)
        return np.round(T - np.arange(steps) * T / steps).astype(np.int64) - 1
    ac = alphas_cumprod.detach().to("cpu", torch.float64).numpy()
    log_sig = 0.5 * np.log((1.0 - ac) / ac)  # increasing in t
    lo, hi = np.exp(log_sig[0]) ** (1 / KARRAS_RHO), np.exp(log_sig[-1]) ** (1 / KARRAS_RHO)
    ramp = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    want = np.log((hi + ramp * (lo - hi)) ** KARRAS_RHO)  # descending log sigma
    ts = np.abs(want[:, None] - log_sig[None, :]).argmin(axis=1)
    ts = np.minimum(ts, T - 1 - np.arange(steps))  # room above for the distinct ones
    for i in range(steps - 2, -1, -1):  # distinct: from the cleanest end up
        ts[i] = max(ts[i], ts[i + 1] + 1)
    return ts.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# multistep solvers in x0 (data) prediction form


@dataclass
class SolverSchedule:
    """Per-step coefficients of a multistep solver, in sampling order (S steps).

    At step i, with ``m_i = (x - sqrt(1 - a_i) eps) / sqrt(a_i)`` the x0-prediction at
    ``timesteps[i]``, the update is
    ``x <- cx[i] x + c0[i] m_i + c1[i] m_{i-1} + c2[i] m_{i-2} + cn[i] z``  (z ~ N(0, I)).
    ``orders[i]`` (python ints) says how many of the ``m`` are used; ``noisy[i]`` whether ``z``
    is drawn. Coefficients are float64 device tensors built on the host before the loop (the
    arithmetic runs in the latent's dtype); ``*_np`` are float64 copies for inspection.
    """
    timesteps: Tensor
    sqrt_alphas: Tensor
    sqrt_one_minus_alphas: Tensor
    cx: Tensor
    c0: Tensor
    c1: Tensor
    c2: Tensor
    cn: Tensor
    orders: tuple[int, ...]
    noisy: tuple[bool, ...]
    timesteps_np: np.ndarray
    coefs_np: dict

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def _solver_schedule(alphas_cumprod: Tensor, ts: np.ndarray, kind: str, order: int, eta: float,
                     device) -> SolverSchedule:
    """Coefficients for ``kind`` in {``dpmpp``, ``consistency``} on descending timesteps ``ts``.

    ``dpmpp``: DPM-Solver++ (Lu et al. 2022) multistep of ``order`` (1..3) in lambda = log(alpha /
    sigma), with the SDE variant's noise when ``eta`` > 0 (order <= 2; eta = 1 is the
    DPM-Solver++(2M) SDE); the first steps use the orders the history allows and the last steps
    lower ones (``min(order, i + 1, S - i)``); the last step goes to clean data (sigma = 0),
    so it returns the model's x0-prediction. ``consistency``: x0-prediction, then re-noised to
    the next timestep with fresh noise (multistep consistency sampling), the last returns x0.
    """
    ac = alphas_cumprod.detach().to("cpu", torch.float64).numpy()
    S = len(ts)
    al = np.sqrt(ac[ts])
    sg = np.sqrt(1.0 - ac[ts])
    al_n = np.append(al[1:], 1.0)  # the target of each step; the last is clean data
    sg_n = np.append(sg[1:], 0.0)
    lam = np.log(al / sg)
    cx, c0, c1, c2, cn = (np.zeros(S) for _ in range(5))
    orders, noisy = [], []
    for i in range(S):
        if kind == "consistency":
            c0[i], cn[i] = al_n[i], sg_n[i]
            orders.append(1)
            noisy.append(i < S - 1)
            continue
        E = al[i] * sg_n[i] / (sg[i] * al_n[i])  # exp(-h), 0 at the clean end
        h = -np.log(E) if E > 0 else np.inf
        k = min(order, i + 1, S - i)
        orders.append(k)
        if eta > 0:
            Eeta = E ** eta
            A = al_n[i] * -np.expm1(-(1.0 + eta) * h) if E > 0 else al_n[i]
            cx[i] = sg_n[i] / sg[i] * Eeta
            cn[i] = sg_n[i] * np.sqrt(max(0.0, -np.expm1(-2.0 * eta * h))) if E > 0 else 0.0
            noisy.append(bool(cn[i] > 0))
        else:
            A = al_n[i] * -np.expm1(-h) if E > 0 else al_n[i]
            cx[i] = sg_n[i] / sg[i]
            noisy.append(False)
        if k == 1:
            c0[i] = A
        elif k == 2:  # D = m0 + (m0 - m1) / (2 r), r = h_prev / h
            r = (lam[i] - lam[i - 1]) / h
            c0[i], c1[i] = A * (1 + 0.5 / r), -A * 0.5 / r
        else:  # third order (DPM-Solver++(3M)): D0, D1, D2 as combinations of (m0, m1, m2)
            r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
            d10 = np.array([1.0, -1.0, 0.0]) / r0
            d11 = np.array([0.0, 1.0, -1.0]) / r1
            D1 = d10 + r0 / (r0 + r1) * (d10 - d11)
            D2 = 2.0 * (d10 - d11) / (r0 + r1)  # ~ h^2 x0'' (the divided difference is half of it)
            em1 = np.expm1(-h)
            phi1, phi2, phi3 = -em1, em1 / h + 1.0, (em1 + h) / h ** 2 - 0.5
            c = al_n[i] * (phi1 * np.array([1.0, 0.0, 0.0]) + phi2 * D1 - phi3 * D2)
            c0[i], c1[i], c2[i] = c
    dev = lambda v: torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731
    return SolverSchedule(
        timesteps=torch.from_numpy(ts.astype(np.int64)).to(device), sqrt_alphas=dev(al), sqrt_one_minus_alphas=dev(sg),
        cx=dev(cx), c0=dev(c0), c1=dev(c1), c2=dev(c2), cn=dev(cn), orders=tuple(orders), noisy=tuple(noisy),
        timesteps_np=ts.astype(np.int64), coefs_np={"cx": cx, "c0": c0, "c1": c1, "c2": c2, "cn": cn})


def solver_sample(eps_fn: EpsFn, x_T: Tensor, sched: SolverSchedule, *, generator: torch.Generator | None = None,
                  callback: Callback | None = None, return_intermediates: bool = False):
    """Run a :class:`SolverSchedule` (DPM-Solver++ 2M/3M/SDE, consistency sampling). Same
    signature as :func:`ddim_sample`; noise is drawn from ``generator`` only at stochastic steps."""
    x = x_T
    B = x.shape[0]
    inter = {"x_inter": [x], "pred_x0": [x]}
    hist: list[Tensor] = []
    for i in range(sched.num_steps):
        t = sched.timesteps[i].expand(B)
        e = eps_fn(x, t)
        m = (x - sched.sqrt_one_minus_alphas[i] * e) / sched.sqrt_alphas[i]
        hist = [m] + hist[:2]
        k = sched.orders[i]
        new = sched.cx[i] * x + sched.c0[i] * m
        if k >= 2:
            new = new + sched.c1[i] * hist[1]
        if k >= 3:
            new = new + sched.c2[i] * hist[2]
        if sched.noisy[i]:
            new = new + sched.cn[i] * _randn_like(x, generator)
        x = new.to(x_T.dtype)
        if return_intermediates:
            inter["x_inter"].append(x)
            inter["pred_x0"].append(m)
        if callback is not None:
            callback(i + 1, sched.num_steps)
    return (x, inter) if return_intermediates else x


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32).to(x.dtype)


def ddim_sample(eps_fn: EpsFn, x_T: Tensor, sched: DDIMSchedule, *, generator: torch.Generator | None = None,
                callback: Callback | None = None, return_intermediates: bool = False):
    """DDIM sampling (Song et al.) exactly as the original sampler.

    Args:
        eps_fn: (x_t (B, C, h, w), t (B,) int64) -> eps (B, C, h, w).
        x_T: (B, C, h, w) initial noise.
        sched: from :func:`ddim_schedule` (same device as ``x_T``).
        generator: source of the per-step noise (drawn every step, as the original does,
            even when eta = 0 makes it vanish).
        callback: ``callback(done, total)`` after each step (ints only).
        return_intermediates: also return ``{'x_inter': [x_T, x_1, ...], 'pred_x0': [x_T, ...]}``.

    Returns:
        x_0 (B, C, h, w), or ``(x_0, intermediates)``.
    """
    x = x_T
    B = x.shape[0]
    inter = {"x_inter": [x], "pred_x0": [x]}
    for i in range(sched.num_steps):
        t = sched.timesteps[i].expand(B)
        e = eps_fn(x, t)
        pred_x0 = (x - sched.sqrt_one_minus_alphas[i] * e) / sched.sqrt_alphas[i]
        noise = sched.sigmas[i] * _randn_like(x, generator)
        x = sched.sqrt_alphas_prev[i] * pred_x0 + sched.dir_coef[i] * e + noise
        if return_intermediates:
            inter["x_inter"].append(x)
            inter["pred_x0"].append(pred_x0)
        if callback is not None:
            callback(i + 1, sched.num_steps)
    return (x, inter) if return_intermediates else x


def ddpm_sample(eps_fn: EpsFn, x_T: Tensor, sched: DiffusionSchedule, *, generator: torch.Generator | None = None,
                callback: Callback | None = None, return_intermediates: bool = False):
    """Ancestral sampling over all T training steps (the original's ``sample_ddpm``,
    ``clip_denoised=False``). Same signature as :func:`ddim_sample`."""
    buf = {k: v.to(x_T.device) for k, v in sched.buffers.items()}
    x = x_T
    B = x.shape[0]
    inter = {"x_inter": [x], "pred_x0": [x]}
    T = sched.num_timesteps
    steps = torch.arange(T - 1, -1, -1, device=x.device)
    for i in range(T):
        t = steps[i].expand(B)
        step = T - 1 - i
        e = eps_fn(x, t)
        x0 = buf["sqrt_recip_alphas_cumprod"][step] * x - buf["sqrt_recipm1_alphas_cumprod"][step] * e
        mean = buf["posterior_mean_coef1"][step] * x0 + buf["posterior_mean_coef2"][step] * x
        noise = _randn_like(x, generator)
        if step > 0:
            x = mean + (0.5 * buf["posterior_log_variance_clipped"][step]).exp() * noise
        else:
            x = mean + 0.0 * noise
        if return_intermediates:
            inter["x_inter"].append(x)
            inter["pred_x0"].append(x0)
        if callback is not None:
            callback(i + 1, T)
    return (x, inter) if return_intermediates else x


# ---------------------------------------------------------------------------------------------
# prediction types


def eps_from(pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, prediction: str) -> Tensor:
    """The noise implied by a model output of type ``prediction`` at timesteps ``t`` (B,), in
    ``x_t``'s dtype (``eps`` is returned as is): :func:`ldmvfi_fast.parameterization.to_eps`."""
    if prediction == "eps":
        return pred
    return to_eps(pred, x_t, t, alphas_cumprod, prediction).to(x_t.dtype)


# ---------------------------------------------------------------------------------------------
# the registry




@dataclass(frozen=True)
class SamplingPlan:
    """What runs: the sampling options resolved once by :func:`resolve_sampling`.

    Attributes:
        sampler: the sampler's name; ``spec``: its :class:`Sampler`.
        steps: the sampling steps that run (U-Net calls): T for ``ddpm``; the original's count
            for a uniform DDIM count that does not divide T (7 gives 8, with a warning).
        eta: the eta it runs with; None for a sampler that takes none (``ddpm``, ``dpmpp_2m``,
            ``dpmpp_3m``, ``consistency``).
        spacing: the timestep spacing; None with explicit ``timesteps`` or a sampler without spacings.
        timesteps: the explicit descending timesteps (the caller's or a student's), else None.
        num_train_steps: T of the schedule it was resolved against.
        schedule_steps: the step count the schedule builder is given (``steps`` as asked).
        request: what was asked; ``distilled``: whether a student's record supplied defaults.
        schedule: the sampler's schedule, built on the model's real ``alphas_cumprod`` (None when
            resolved against T alone); :meth:`build_schedule` builds it on another device.
    """
    sampler: str
    spec: Sampler = dataclasses.field(repr=False)
    steps: int
    eta: float | None
    spacing: str | None
    timesteps: tuple[int, ...] | None
    num_train_steps: int
    schedule_steps: int | None = dataclasses.field(default=None, repr=False)
    request: SamplingRequest = dataclasses.field(default_factory=SamplingRequest, repr=False)
    distilled: bool = False
    schedule: Any = dataclasses.field(default=None, repr=False, compare=False)

    def build_schedule(self, alphas_cumprod: Tensor, device=None):
        """The sampler's schedule on ``alphas_cumprod`` (T,) (the model's), on ``device``."""
        T = int(alphas_cumprod.shape[0])
        if T != self.num_train_steps:
            raise OptionError(f"this sampling plan was resolved for {self.num_train_steps} training steps; the "
                              f"schedule given has {T}")
        kw = {}
        if self.spec.uses_spacing:
            kw = {"spacing": self.spacing or self.spec.default_spacing,
                  "timesteps": None if self.timesteps is None else list(self.timesteps)}
        eta = 0.0 if self.eta is None else self.eta
        try:
            return self.spec.make_schedule(alphas_cumprod, self.schedule_steps, eta, device, **kw)
        except OptionError:
            raise
        except ValueError as exc:
            raise OptionError(f"the {self.sampler} sampler cannot run {self.describe()}: {exc}") from None

    def describe(self) -> str:
        """One line for logs: ``ddim, 200 steps, eta 1, uniform spacing``."""
        parts = [self.sampler, f"{self.steps} steps"]
        if self.eta is not None:
            parts.append(f"eta {self.eta:g}")
        if self.timesteps is not None:
            parts.append(f"timesteps {list(self.timesteps)}")
        elif self.spacing is not None:
            parts.append(f"{self.spacing} spacing")
        return ", ".join(parts)


_RECORD = "the student's distillation record"


def resolve_sampling(request: SamplingRequest | None, alphas_cumprod: Tensor | int,
                     distillation: Mapping | None = None, *, device=None) -> SamplingPlan:
    """The one place sampling options get their defaults: ``request`` (what the caller asked;
    None: nothing), else a distilled student's record (``distillation``: ``sampler``, ``steps``,
    ``timesteps``, ``eta``, ``method``), else :data:`DEFAULT_SAMPLER`, :data:`DEFAULT_STEPS`,
    :data:`DEFAULT_ETA` and the sampler's default spacing. A student's eta defaults to
    :data:`STUDENT_ETA`.

    With a student: a step count equal to its number of timesteps (or none) keeps its timesteps;
    another count, or a spacing, samples with a warning (it was trained for its own timesteps).
    Options the resolved sampler does not use are refused (the request's :meth:`~SamplingRequest.check`
    refuses them for a named sampler; here also for the student's), and everything is checked
    against T. ``alphas_cumprod``: the model's (T,) schedule, on which the plan's schedule is
    built (on ``device``; default: the schedule's device); or T alone (an int: checked, no
    schedule; e.g. before a teacher loads). Raises :class:`~ldmvfi_fast.errors.OptionError`
    (:class:`SamplingOptionError` for the caller's options).
    """
    if request is None:
        request = SamplingRequest()
    if not isinstance(request, SamplingRequest):
        raise OptionError(f"sampling options must be a SamplingRequest, got {type(request).__name__}")
    if isinstance(alphas_cumprod, numbers.Integral) and not isinstance(alphas_cumprod, bool):
        ac, T = None, int(alphas_cumprod)
    else:
        ac, T = alphas_cumprod, int(alphas_cumprod.shape[0])
    req = request.check(T)
    dist = None if distillation is None else dict(distillation)

    whose = ""
    if req.sampler is not None:
        name = req.sampler
    elif dist is not None and dist.get("sampler") is not None:
        name, whose = dist["sampler"], " (the student's own sampler)"
        if name not in SAMPLERS:
            raise OptionError(f"{_RECORD} names sampler {name!r}, not one of {sampler_names()}")
    else:
        name, whose = DEFAULT_SAMPLER, " (the default sampler)"
    spec = get_sampler(name)
    _refuse_unused(spec, req.given(), T, whose)

    if not spec.uses_eta:
        eta = None
    elif req.eta is not None:
        eta = req.eta
    elif dist is not None:
        eta = _check_eta(dist.get("eta", STUDENT_ETA), f"{_RECORD}'s eta")
    else:
        eta = DEFAULT_ETA

    steps, spacing, ts = req.steps, req.spacing, req.timesteps
    d_steps = d_ts = None
    if dist is not None:
        if dist.get("timesteps") is not None:
            d_ts = tuple(int(t) for t in _check_timesteps(dist["timesteps"], T, f"{_RECORD}'s timesteps"))
        if dist.get("steps") is not None:
            d_steps = check_steps(dist["steps"], T, name=f"{_RECORD}'s steps")
    their = len(d_ts) if d_ts is not None else d_steps
    if not spec.uses_steps:
        steps = T
    else:
        if spec.uses_spacing and d_ts is not None and ts is None and spacing is None and steps in (None, len(d_ts)):
            ts, steps = d_ts, None  # the student's own timesteps
        if steps is None:
            if ts is not None:
                steps = len(ts)
            elif their is not None:
                steps = their  # checked above
            else:
                steps = check_steps(DEFAULT_STEPS, T, name="the default step count (DEFAULT_STEPS)")
        if spec.uses_spacing and ts is None and spacing is None:
            spacing = spec.default_spacing
    if dist is not None:
        if their is not None and steps != their:
            log.warning("this %s-distilled student was trained for %s steps; sampling with %s (expect lower quality)",
                        dist.get("method", "?"), their, steps)
        elif ts is None and d_ts is not None and spacing is not None:
            log.warning("this student was trained on timesteps %s; sampling on the %s spacing instead", list(d_ts),
                        spacing)
    schedule_steps = steps if spec.uses_steps else None
    if spacing == "uniform":
        steps = len(_uniform_timesteps(steps, T))  # what the original's rule runs (7 gives 8)
    plan = SamplingPlan(sampler=name, spec=spec, steps=steps, eta=eta, spacing=spacing, timesteps=ts,
                        num_train_steps=T, schedule_steps=schedule_steps, request=request,
                        distilled=dist is not None)
    if ac is None:
        return plan
    return dataclasses.replace(plan, schedule=plan.build_schedule(ac, ac.device if device is None else device))


def _ddim_make(alphas_cumprod: Tensor, steps: int, eta: float, device=None, *, spacing: str = "uniform",
               timesteps=None) -> DDIMSchedule:
    return ddim_schedule(alphas_cumprod, steps, eta, device=device, spacing=spacing, timesteps=timesteps)


def _ddpm_make(alphas_cumprod: Tensor, steps: int, eta: float, device=None) -> DiffusionSchedule:
    ac = alphas_cumprod.detach().to("cpu", torch.float64).numpy()
    betas = 1.0 - ac / np.append(1.0, ac[:-1])
    sched = DiffusionSchedule.from_betas(betas)
    return DiffusionSchedule({k: v.to(device) for k, v in sched.buffers.items()})


def _solver_make(kind: str, order: int, use_eta: bool):
    def make(alphas_cumprod: Tensor, steps: int, eta: float, device=None, *, spacing: str = "trailing",
             timesteps=None) -> SolverSchedule:
        ts = make_timesteps(alphas_cumprod, steps, spacing=spacing, timesteps=timesteps)
        return _solver_schedule(alphas_cumprod, ts, kind, order, float(eta) if use_eta else 0.0, device)
    return make


# the registry's references (ldmvfi_fast.samplers) name these
_dpmpp_2m_make = _solver_make("dpmpp", 2, False)
_dpmpp_3m_make = _solver_make("dpmpp", 3, False)
_dpmpp_2m_sde_make = _solver_make("dpmpp", 2, True)
_consistency_make = _solver_make("consistency", 1, False)
