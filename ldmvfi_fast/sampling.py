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

Numerics follow the original (``ldm/models/diffusion/ddim.py``): DDIM timesteps
``range(0, T, T // S) + 1``, alphas taken from the float32 ``alphas_cumprod``, ``alphas_prev``
starting at ``alphas_cumprod[0]`` (so the last step lands on t = 0's alpha, not 1),
sigmas computed in float64 then used in float32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import math

import numpy as np
import torch
from torch import Tensor

from .errors import OptionError

log = logging.getLogger(__name__)

EpsFn = Callable[[Tensor, Tensor], Tensor]
#: ``callback(done, total)`` after each sampling step; two ints, no tensor (no host sync)
Callback = Callable[[int, int], None]
PREDICTIONS = ("eps", "v", "x0")

__all__ = ["make_beta_schedule", "DiffusionSchedule", "DDIMSchedule", "ddim_timesteps", "ddim_schedule",
           "ddim_sample", "ddpm_sample", "Sampler", "SAMPLERS", "register_sampler", "get_sampler",
           "sampler_names", "check_sampling_options", "eps_from", "PREDICTIONS", "Callback"]


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


def ddim_timesteps(num_steps: int, num_train_steps: int = 1000) -> np.ndarray:
    """Uniform DDIM timesteps as the original: ``range(0, T, T // S) + 1`` (ascending).

    As in the original, when S does not divide T the count can exceed S (e.g. S=7 gives 8
    steps); a step that would land past T - 1 is an error.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"steps must be between 1 and {num_train_steps}, got {num_steps}")
    c = num_train_steps // num_steps
    ts = np.asarray(list(range(0, num_train_steps, c))) + 1
    if ts[-1] >= num_train_steps:
        ok = [s for s in (1, 2, 4, 5, 8, 10, 20, 25, 50, 100, 200, 250, 500) if num_train_steps % s == 0]
        raise ValueError(f"{num_steps} DDIM steps give timestep {ts[-1]} >= {num_train_steps} with the original's "
                         f"uniform rule; use a step count dividing {num_train_steps}, e.g. {ok}")
    if len(ts) != num_steps:
        log.warning("%d DDIM steps requested; the original's uniform rule gives %d", num_steps, len(ts))
    return ts


def ddim_schedule(alphas_cumprod: Tensor, num_steps: int, eta: float, device=None) -> DDIMSchedule:
    """DDIM coefficients from the model's float32 ``alphas_cumprod`` (T,)."""
    ac32 = alphas_cumprod.detach().to("cpu", torch.float32)
    ts = ddim_timesteps(num_steps, int(ac32.shape[0]))
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
    """The noise implied by a model output of type ``prediction`` at timesteps ``t`` (B,).

    ``eps`` is returned as is; ``x0`` (the clean latent) gives ``(x_t - sqrt(a) x0) / sqrt(1 - a)``;
    ``v`` (Salimans and Ho: ``v = sqrt(a) eps - sqrt(1 - a) x0``) gives ``sqrt(a) v + sqrt(1 - a) x_t``,
    with ``a = alphas_cumprod[t]``.
    """
    if prediction == "eps":
        return pred
    if prediction not in PREDICTIONS:
        raise OptionError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    a = alphas_cumprod.to(x_t.device)[t].to(torch.float32).view(-1, *([1] * (x_t.dim() - 1)))
    sa, s1a = a.sqrt(), (1.0 - a).sqrt()
    if prediction == "x0":
        return ((x_t.float() - sa * pred.float()) / s1a).to(x_t.dtype)
    return (sa * pred.float() + s1a * x_t.float()).to(x_t.dtype)


# ---------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class Sampler:
    """One sampler of the registry.

    Attributes:
        name: the name the pipeline (``sampler=``) and the command line (``--sampler``) use.
        description: one line for ``--help``.
        make_schedule: ``(alphas_cumprod (T,) float32, steps, eta, device) -> schedule``; raises
            :class:`~ldmvfi_fast.errors.OptionError` for a step count or eta it cannot use.
        sample: ``(eps_fn, x_T, schedule, *, generator, callback, return_intermediates) -> x_0``.
        uses_steps, uses_eta: whether ``steps`` / ``eta`` mean anything to it.
    """
    name: str
    description: str
    make_schedule: Callable
    sample: Callable
    uses_steps: bool = True
    uses_eta: bool = True


SAMPLERS: dict[str, Sampler] = {}


def register_sampler(sampler: Sampler) -> Sampler:
    """Add a sampler to :data:`SAMPLERS` (a name can be registered once)."""
    if sampler.name in SAMPLERS:
        raise ValueError(f"a sampler named {sampler.name!r} is registered already")
    SAMPLERS[sampler.name] = sampler
    return sampler


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise OptionError(f"sampler must be one of {sampler_names()}, got {name!r}") from None


def check_sampling_options(sampler: str, steps: int, eta: float, num_train_steps: int = 1000) -> Sampler:
    """Validate sampler, steps and eta before anything heavy runs; return the sampler.

    Raises :class:`~ldmvfi_fast.errors.OptionError` naming the allowed range.
    """
    s = get_sampler(sampler)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise OptionError(f"steps must be an integer, got {steps!r}")
    if s.uses_steps and not 1 <= steps <= num_train_steps:
        raise OptionError(f"steps must be between 1 and {num_train_steps}, got {steps}")
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise OptionError(f"eta must be a number in [0, 1], got {eta!r}") from None
    if not (math.isfinite(eta) and 0.0 <= eta <= 1.0):
        raise OptionError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: the paper's), got {eta}")
    if s.uses_steps:
        try:
            s.make_schedule(torch.linspace(0.999, 0.01, num_train_steps), steps, eta, "cpu")
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    return s


def _ddim_make(alphas_cumprod: Tensor, steps: int, eta: float, device=None) -> DDIMSchedule:
    return ddim_schedule(alphas_cumprod, steps, eta, device=device)


def _ddpm_make(alphas_cumprod: Tensor, steps: int, eta: float, device=None) -> DiffusionSchedule:
    ac = alphas_cumprod.detach().to("cpu", torch.float64).numpy()
    betas = 1.0 - ac / np.append(1.0, ac[:-1])
    sched = DiffusionSchedule.from_betas(betas)
    return DiffusionSchedule({k: v.to(device) for k, v in sched.buffers.items()})


register_sampler(Sampler("ddim", "DDIM (the paper's sampler, uniform timesteps as the original)",
                         _ddim_make, ddim_sample))
register_sampler(Sampler("ddpm", "ancestral DDPM over all training steps (steps and eta ignored)",
                         _ddpm_make, ddpm_sample, uses_steps=False, uses_eta=False))
