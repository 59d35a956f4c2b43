"""Training targets and losses of the two distillation methods (one trainer, two objectives).

Notation: ``a_t = alphas_cumprod[t]``, ``alpha_t = sqrt(a_t)``, ``sigma_t = sqrt(1 - a_t)``,
``x_t = alpha_t x0 + sigma_t eps``; latents are (B, 3, h, w) float32; timesteps (B,) int64.
A timestep of ``END`` (-1) stands for the point after the last sampling step, where the
original's DDIM lands: ``a = alphas_cumprod[0]``.

* **Progressive** (Salimans and Ho 2022): the student at grid point t (its grid of N/2 steps is
  every second point of the teacher's grid of N) must reach, in one DDIM step to t'', where two
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
import torch.nn.functional as F
from torch import Tensor

from ..models.ldmvfi import student_output, x0_from

__all__ = ["END", "alpha_sigma", "ddim_step", "model_output", "progressive_target", "progressive_loss",
           "consistency_loss", "HUBER_C"]

END = -1
#: LCM's pseudo-Huber constant
HUBER_C = 1e-3


def alpha_sigma(ac: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha, sigma) at timesteps t (B,) as (B, 1, 1, 1) float32; t = END gives alphas_cumprod[0]."""
    a = ac.to(t.device, torch.float32)[t.clamp(min=0)]
    return a.sqrt().view(-1, 1, 1, 1), (1.0 - a).sqrt().view(-1, 1, 1, 1)


def ddim_step(x_t: Tensor, x0: Tensor, t: Tensor, t_next: Tensor, ac: Tensor) -> Tensor:
    """Deterministic DDIM (eta = 0) from t to t_next given the predicted x0 (B, C, h, w)."""
    al, si = alpha_sigma(ac, t)
    al_n, si_n = alpha_sigma(ac, t_next)
    eps = (x_t - al * x0) / si
    return al_n * x0 + si_n * eps


def model_output(unet_fn: Callable[[Tensor, Tensor, Tensor], Tensor], x_t: Tensor, t: Tensor, cond: Tensor,
                 ac: Tensor, record: dict | None) -> Tensor:
    """x0 (float32) predicted by a U-Net whose raw output is read with ``record`` (None: an eps teacher)."""
    raw = unet_fn(x_t, t, cond)
    if record is None:
        return x0_from(raw, x_t, t, ac, "eps")
    out = student_output(raw, x_t, t, ac, record)
    return x0_from(out, x_t, t, ac, record["prediction"])


def progressive_target(teacher_x0: Callable[[Tensor, Tensor], Tensor], x_t: Tensor, t: Tensor, t_mid: Tensor,
                       t_next: Tensor, ac: Tensor) -> Tensor:
    """Target x0 (B, C, h, w) for a student step t -> t_next from two teacher steps t -> t_mid -> t_next.

    ``teacher_x0(x, t)``: the teacher's predicted x0 (no gradient)."""
    x_mid = ddim_step(x_t, teacher_x0(x_t, t), t, t_mid, ac)
    x_next = ddim_step(x_mid, teacher_x0(x_mid, t_mid), t_mid, t_next, ac)
    al, si = alpha_sigma(ac, t)
    al_n, si_n = alpha_sigma(ac, t_next)
    r = si_n / si
    return (x_next - r * x_t) / (al_n - r * al)


def progressive_loss(student_raw: Tensor, x_t: Tensor, t: Tensor, x0_target: Tensor, ac: Tensor,
                     prediction: str) -> Tensor:
    """Per-sample loss (B,): v-MSE for a v student, max(SNR, 1)-weighted x0-MSE for an x0 student."""
    al, si = alpha_sigma(ac, t)
    if prediction == "v":
        eps_t = (x_t - al * x0_target) / si
        v_t = al * eps_t - si * x0_target
        return (student_raw.float() - v_t).pow(2).mean(dim=(1, 2, 3))
    if prediction == "x0":
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


def sample_student(x0_fn: Callable[[Tensor, Tensor], Tensor], x_T: Tensor, timesteps: list[int], ac: Tensor,
                   renoise: str = "ddim", generator: torch.Generator | None = None) -> Tensor:
    """K-step sampling with a model giving x0: ``renoise="ddim"`` (eta 0: the x0 and its implied eps)
    or ``"fresh"`` (multistep consistency sampling: new noise at each next timestep). Returns the
    last DDIM point (landing at alphas_cumprod[0]) for ddim, the last x0 for fresh."""
    x = x_T
    B = x.shape[0]
    ts = list(timesteps) + [END]
    for i, t in enumerate(timesteps):
        tt = torch.full((B,), t, dtype=torch.long, device=x.device)
        tn = torch.full((B,), ts[i + 1], dtype=torch.long, device=x.device)
        x0 = x0_fn(x, tt)
        if renoise == "ddim":
            x = ddim_step(x, x0, tt, tn, ac)
        elif i + 1 < len(timesteps):
            al, si = alpha_sigma(ac, tn)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
            x = al * x0 + si * z
        else:
            x = x0
    return x


__all__ += ["sample_student"]
