"""Training targets and losses of the two distillation methods (one trainer, two objectives).

Notation: ``a_t = alphas_cumprod[t]``, ``alpha_t = sqrt(a_t)``, ``sigma_t = sqrt(1 - a_t)``,
``x_t = alpha_t x0 + sigma_t eps``; latents are (B, 3, h, w) float32; timesteps (B,) int64.
The algebra (alpha / sigma, eps / x0 / v) is :mod:`ldmvfi_fast.parameterization`'s; a timestep
of ``END`` (-1) stands for the point after the last sampling step, where the original's DDIM
lands: ``a = alphas_cumprod[0]``. Sampling (evaluation, the teacher's trajectories) is the
registry's (:mod:`ldmvfi_fast.sampling`); what is here is the training math the registry has
no use for: single DDIM steps between arbitrary timesteps and the x0 that makes a step land
on a given point.

* **Progressive** (Salimans and Ho 2022): the student at grid point t (its grid of N/2 steps is
  every second point of the teacher's grid of N where the trailing spacing nests, see
  :mod:`.student`) must reach, in one DDIM step to t'', where two
  teacher DDIM steps t -> t' -> t'' go. The target x0 solves
  ``x_t'' = alpha_t'' x0 + (sigma_t'' / sigma_t)(x_t - alpha_t x0)`` for x0; the student predicts
  ``v`` (loss on v) or ``x0`` (loss weighted by max(SNR, 1), "truncated SNR").
* **Consistency** (latent consistency models): one teacher DDIM step over the skipped interval
  t_{n+1} -> t_n; loss between the student's boundary-scaled x0 at (x_{t_{n+1}}, t_{n+1}) and the
  EMA target network's at (x^_{t_n}, t_n) (at the end point the target is x^ itself: the
  boundary condition f(x, 0) = x); Huber or L2.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..models.ldmvfi import student_output
from ..parameterization import alpha_sigma, convert, to_eps, to_v

__all__ = ["ddim_step", "ddim_x0", "model_output", "progressive_target", "progressive_loss", "consistency_loss",
           "HUBER_C"]

#: LCM's pseudo-Huber constant
HUBER_C = 1e-3


def ddim_step(x_t: Tensor, x0: Tensor, t: Tensor, t_next: Tensor, ac: Tensor) -> Tensor:
    """Deterministic DDIM (eta = 0) from t to t_next (``END``: alphas_cumprod[0]) given the
    predicted x0 (B, C, h, w): ``alpha_next x0 + sigma_next eps(x0)``."""
    eps = to_eps(x0, x_t, t, ac, "x0")
    al_n, si_n = alpha_sigma(ac, t_next, x_t.dim())
    return al_n * x0 + si_n * eps


def ddim_x0(x_t: Tensor, x_next: Tensor, t: Tensor, t_next: Tensor, ac: Tensor) -> Tensor:
    """The x0 whose DDIM step (:func:`ddim_step`) from ``x_t`` at t lands on ``x_next`` at t_next:
    ``x_next = alpha_next x0 + (sigma_next / sigma_t)(x_t - alpha_t x0)`` solved for x0."""
    al, si = alpha_sigma(ac, t, x_t.dim())
    al_n, si_n = alpha_sigma(ac, t_next, x_t.dim())
    r = si_n / si
    return (x_next - r * x_t) / (al_n - r * al)


def model_output(unet_fn: Callable[[Tensor, Tensor, Tensor], Tensor], x_t: Tensor, t: Tensor, cond: Tensor,
                 ac: Tensor, record: dict | None, kind: str = "x0") -> Tensor:
    """The ``kind`` (x0 by default; eps, v) predicted, in float32, by a U-Net whose raw output
    ``unet_fn(x_t, t, cond)`` is read with ``record`` (None: an eps teacher)."""
    raw = unet_fn(x_t, t, cond)
    if record is None:
        return convert(raw, x_t, t, ac, "eps", kind).float()
    out = student_output(raw, x_t, t, ac, record)
    return convert(out, x_t, t, ac, record["prediction"], kind).float()


def progressive_target(teacher_x0: Callable[[Tensor, Tensor], Tensor], x_t: Tensor, t: Tensor, t_mid: Tensor,
                       t_next: Tensor, ac: Tensor) -> Tensor:
    """Target x0 (B, C, h, w) for a student step t -> t_next from two teacher steps t -> t_mid -> t_next.

    ``teacher_x0(x, t)``: the teacher's predicted x0 (no gradient)."""
    x_mid = ddim_step(x_t, teacher_x0(x_t, t), t, t_mid, ac)
    x_next = ddim_step(x_mid, teacher_x0(x_mid, t_mid), t_mid, t_next, ac)
    return ddim_x0(x_t, x_next, t, t_next, ac)


def progressive_loss(student_raw: Tensor, x_t: Tensor, t: Tensor, x0_target: Tensor, ac: Tensor,
                     prediction: str) -> Tensor:
    """Per-sample loss (B,): v-MSE for a v student, max(SNR, 1)-weighted x0-MSE for an x0 student."""
    if prediction == "v":
        v_t = to_v(x0_target, x_t, t, ac, "x0")
        return (student_raw.float() - v_t).pow(2).mean(dim=(1, 2, 3))
    if prediction == "x0":
        al, si = alpha_sigma(ac, t)
        w = torch.clamp(al.view(-1) ** 2 / si.view(-1) ** 2, min=1.0)
        return w * (student_raw.float() - x0_target).pow(2).mean(dim=(1, 2, 3))
    raise ValueError(f"progressive students predict v or x0, not {prediction!r}")


def consistency_loss(pred_x0: Tensor, target_x0: Tensor, loss: str) -> Tensor:
    """Per-sample loss (B,): ``l2`` (MSE) or ``huber`` (pseudo-Huber sqrt(d^2 + c^2) - c, elementwise)."""
    d = pred_x0.float() - target_x0.float()
    if loss == "l2":
        return d.pow(2).mean(dim=(1, 2, 3))
    if loss == "huber":
        return (torch.sqrt(d * d + HUBER_C ** 2) - HUBER_C).mean(dim=(1, 2, 3))
    raise ValueError(f"loss must be l2 or huber, got {loss!r}")
