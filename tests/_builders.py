"""Test-input builders shared by every test module (one definition of DSepConv inputs).

Values are drawn in float64 on the CPU from a seeded generator, then moved to the
requested device and dtype, so a given seed gives the same values everywhere (CPU, CUDA,
Triton interpreter) up to the final rounding.
"""
from __future__ import annotations

import torch


def _offsets(g: torch.Generator, shape, offset: float, away_from_integers: bool) -> torch.Tensor:
    if away_from_integers:  # fractional part in [0.2, 0.8]: no floor()/clamp jump under perturbation
        whole = torch.randint(-int(offset), int(offset), shape, generator=g).double()
        return whole + 0.2 + 0.6 * torch.rand(*shape, generator=g, dtype=torch.float64)
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * offset


def dsepconv_args(B: int = 2, C: int = 3, K: int = 5, H: int = 7, W: int = 9, *, dtype=torch.float64,
                  device="cpu", offset: float = 3.0, seed: int = 0, away_from_integers: bool = False,
                  channels_last: bool = False, kernel_scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Arguments of ``dsepconv``: ``(input, vertical, horizontal, offset_x, offset_y, mask)``.

    Shapes: input (B, C, H+K-1, W+K-1) ~ N(0, 1); vertical, horizontal (B, K, H, W) ~
    N(0, kernel_scale^2); offset_x, offset_y (B, K*K, H, W) uniform in [-offset, offset]
    (3 px: many samples are clamped at the border); mask (B, K*K, H, W) uniform in [0, 1].

    Args:
        away_from_integers: offsets with fractional part in [0.2, 0.8] (for gradcheck).
        channels_last: the input is stored (B, H, W, C) and viewed as (B, C, H, W)
            (non-contiguous).
    """
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    Hin, Win = H + K - 1, W + K - 1
    if channels_last:
        inp = torch.randn(B, Hin, Win, C, **f64).permute(0, 3, 1, 2)
    else:
        inp = torch.randn(B, C, Hin, Win, **f64)
    ver = torch.randn(B, K, H, W, **f64) * kernel_scale
    hor = torch.randn(B, K, H, W, **f64) * kernel_scale
    ox = _offsets(g, (B, K * K, H, W), offset, away_from_integers)
    oy = _offsets(g, (B, K * K, H, W), offset, away_from_integers)
    mask = torch.rand(B, K * K, H, W, **f64)
    return tuple(t.to(device=device, dtype=dtype) for t in (inp, ver, hor, ox, oy, mask))


def decoder_args(B: int = 2, C: int = 3, K: int = 5, H: int = 7, W: int = 9, *, dtype=torch.float64,
                 device="cpu", offset: float = 3.0, seed: int = 1, noncontig_frames: bool = False,
                 kernel_scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Arguments of ``decoder_output``: ``(frame0, frame1, vertical0, horizontal0, offset_x0,
    offset_y0, vertical1, horizontal1, offset_x1, offset_y1, mask, residual)``.

    Shapes: frames and residual (B, C, H, W) ~ N(0, 1); heads as :func:`dsepconv_args`;
    mask (B, K*K, H, W) uniform in [0, 1]. ``noncontig_frames``: frame0 stored channel-last,
    frame1 a column slice of a wider tensor.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    if noncontig_frames:
        f0 = torch.randn(B, H, W, C, **f64).permute(0, 3, 1, 2)
        f1 = torch.randn(B, C, H, W + 3, **f64)[..., 1:W + 1]
    else:
        f0, f1 = torch.randn(B, C, H, W, **f64), torch.randn(B, C, H, W, **f64)
    heads = []
    for _ in range(2):
        heads += [torch.randn(B, K, H, W, **f64) * kernel_scale, torch.randn(B, K, H, W, **f64) * kernel_scale,
                  _offsets(g, (B, K * K, H, W), offset, False), _offsets(g, (B, K * K, H, W), offset, False)]
    mask = torch.rand(B, K * K, H, W, **f64)
    res = torch.randn(B, C, H, W, **f64)
    return tuple(t.to(device=device, dtype=dtype) for t in (f0, f1, *heads, mask, res))
