"""Diffusion schedules and samplers.

Schedules are builders; samplers are small functions with one signature:
``sampler(eps_fn, x_T, schedule, *, generator=None, return_intermediates=False)``, where
``eps_fn(x_t, t)`` maps a latent (B, C, h, w) and int64 timesteps (B,) to predicted noise.
Every per-step coefficient is a device tensor built before the loop, so the loop never
synchronises with the host (it can be captured in a CUDA graph or unrolled in an export).

Numerics follow the original (``ldm/models/diffusion/ddim.py``): DDIM timesteps
``range(0, T, T // S) + 1``, alphas taken from the float32 ``alphas_cumprod``, ``alphas_prev``
starting at ``alphas_cumprod[0]`` (so the last step lands on t = 0's alpha, not 1),
sigmas computed in float64 then used in float32.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

EpsFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["make_beta_schedule", "DiffusionSchedule", "DDIMSchedule", "ddim_timesteps", "ddim_schedule",
           "ddim_sample", "ddpm_sample", "SAMPLERS"]


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
                return_intermediates: bool = False):
    """DDIM sampling (Song et al.) exactly as the original sampler.

    Args:
        eps_fn: (x_t (B, C, h, w), t (B,) int64) -> eps (B, C, h, w).
        x_T: (B, C, h, w) initial noise.
        sched: from :func:`ddim_schedule` (same device as ``x_T``).
        generator: source of the per-step noise (drawn every step, as the original does,
            even when eta = 0 makes it vanish).
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
    return (x, inter) if return_intermediates else x


def ddpm_sample(eps_fn: EpsFn, x_T: Tensor, sched: DiffusionSchedule, *, generator: torch.Generator | None = None,
                return_intermediates: bool = False):
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
    return (x, inter) if return_intermediates else x


SAMPLERS = {"ddim": ddim_sample, "ddpm": ddpm_sample}
