"""The parameterisation algebra of the discrete VP diffusion: one place for eps / x0 / v.

``x_t = alpha_t x0 + sigma_t eps`` with ``alpha_t = sqrt(alphas_cumprod[t])`` and
``sigma_t = sqrt(1 - alphas_cumprod[t])``; ``v = alpha_t eps - sigma_t x0`` (Salimans and Ho).
A model's output of type ``eps``, ``x0`` or ``v`` converts to any other at the same (x_t, t).
The arithmetic runs in float32 whatever the latent's dtype (precision island ``sampler``).

Timestep ``END`` (-1) stands for "past the last step": it reads ``alphas_cumprod[0]``, where the
original's DDIM lands.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .errors import OptionError

__all__ = ["PREDICTIONS", "END", "check_prediction", "alpha_sigma", "to_x0", "to_eps", "to_v", "convert"]

#: what a denoiser can predict
PREDICTIONS = ("eps", "v", "x0")
#: the timestep after the last one (reads alphas_cumprod[0])
END = -1


def check_prediction(kind: str) -> str:
    """``kind`` if it is one of :data:`PREDICTIONS`, else :class:`OptionError`."""
    if kind not in PREDICTIONS:
        raise OptionError(f"prediction must be one of {PREDICTIONS}, got {kind!r}")
    return kind


def alpha_sigma(alphas_cumprod: Tensor, t: Tensor, ndim: int = 4) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) at timesteps ``t`` (B,) as float32 tensors of shape (B, 1, ...) with
    ``ndim`` dimensions, on ``t``'s device; ``t = END`` reads ``alphas_cumprod[0]``."""
    a = alphas_cumprod.to(t.device, torch.float32)[t.clamp(min=0)]
    shape = (-1,) + (1,) * (ndim - 1)
    return a.sqrt().view(shape), (1.0 - a).sqrt().view(shape)


#: target -> {source kind: formula(x_t, pred, alpha, sigma)}, all in float32
_FORMULAS = {
    "x0": {"eps": lambda x, p, al, si: (x - si * p) / al, "v": lambda x, p, al, si: al * x - si * p},
    "eps": {"x0": lambda x, p, al, si: (x - al * p) / si, "v": lambda x, p, al, si: al * p + si * x},
}


def _to(target: str, pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, kind: str) -> Tensor:
    check_prediction(kind)
    pred, x = pred.float(), x_t.float()
    if kind == target:
        return pred
    al, si = alpha_sigma(alphas_cumprod, t, x.dim())
    return _FORMULAS[target][kind](x, pred, al, si)


def to_x0(pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, kind: str) -> Tensor:
    """The clean latent (float32) implied by an output of type ``kind`` at (x_t, t)."""
    return _to("x0", pred, x_t, t, alphas_cumprod, kind)


def to_eps(pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, kind: str) -> Tensor:
    """The noise (float32) implied by an output of type ``kind`` at (x_t, t)."""
    return _to("eps", pred, x_t, t, alphas_cumprod, kind)


def to_v(pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, kind: str) -> Tensor:
    """The velocity (float32) implied by an output of type ``kind`` at (x_t, t)."""
    check_prediction(kind)
    if kind == "v":
        return pred.float()
    x0 = to_x0(pred, x_t, t, alphas_cumprod, kind)
    eps = to_eps(pred, x_t, t, alphas_cumprod, kind)
    al, si = alpha_sigma(alphas_cumprod, t, x_t.dim())
    return al * eps - si * x0


_TO = {"x0": to_x0, "eps": to_eps, "v": to_v}


def convert(pred: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, src: str, dst: str) -> Tensor:
    """An output of type ``src`` as type ``dst`` (float32; returned as is when they match)."""
    check_prediction(dst)
    if src == dst:
        check_prediction(src)
        return pred
    return _TO[dst](pred, x_t, t, alphas_cumprod, src)
