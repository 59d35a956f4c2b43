"""Pure-PyTorch reference of deformable separable convolution (DSepConv).

This is the test oracle for the compiled kernels, the CPU/export fallback and the
documentation of the semantics. It reproduces the original CUDA kernel of LDMVFI
(``cupy_module/dsepconv.py``) operation for operation, including its quirks:

* the tap origin is ``pixel + tap - (K - 1) // 2 + 1``: shifted by one from the centred
  window (the learned offsets compensate, so parity needs it kept);
* ``offset_x`` (the decoder's *alpha*) displaces rows (y) and ``offset_y`` (*beta*)
  displaces columns (x);
* sample positions are clamped into the input; the integer corners come from the floor
  of the *unclamped* position, then are clamped; the bilinear weights use the clamped
  position, so a clamped sample counts the edge pixel twice (both weights become 1).

The position is computed in the same order of float operations as the original
(``((delta + x) + tap) - (K - 1) // 2 + 1``) so that the floor never disagrees with it.

**The one definition** of this tap geometry is :func:`tap_position` (where a tap samples)
and :func:`tap_corners` (clamping and bilinear weights); the reference and the Python test
oracles use them. The kernels restate it in their own languages and point here: the
Triton ``_tap_geometry`` (``triton_kernels/dsepconv.py``), the C++ ``make_tap``
(``csrc/ops/cpu/dsepconv_tap.h``) and the CUDA kernel (``csrc/kernels/dsepconv.cuh``).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import precision

__all__ = ["dsepconv_reference", "check_dsepconv_args", "tap_position", "tap_corners"]


def tap_position(delta, pixel, tap: int, K: int):
    """Sample coordinate of tap ``tap`` (0..K-1) of output pixel ``pixel`` along one axis.

    ``((delta + pixel) + tap) - (K - 1) // 2 + 1``, in this float-op order (the original's),
    in coordinates of the padded input. Rows use the tap row ``i`` and ``delta = offset_x``;
    columns use the tap column ``j`` and ``delta = offset_y``. Works on tensors and floats.
    """
    return (((delta + pixel) + tap) - (K - 1) // 2) + 1


def tap_corners(u: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clamping rule and bilinear weights of a sample coordinate ``u`` on an axis of ``size``.

    Returns ``(lo, hi, w_lo, w_hi)``: the integer corners ``floor(u)`` and ``floor(u) + 1``
    of the *unclamped* position, each clamped into ``[0, size - 1]``, and the weights
    ``1 + (lo - p)``, ``1 - (hi - p)`` computed with the *clamped* position
    ``p = clamp(u, 0, size - 1)`` (so a clamped sample weights the edge pixel twice). The
    corners are detached (no gradient through floor); ``u``'s gradient flows through ``p``.
    """
    p = u.clamp(0, size - 1)
    lo = torch.floor(u).detach()
    hi = (lo + 1).clamp(0, size - 1)
    lo = lo.clamp(0, size - 1)
    return lo, hi, 1 + (lo - p), 1 - (hi - p)


def check_dsepconv_args(input: Tensor, vertical: Tensor, horizontal: Tensor,
                        offset_x: Tensor, offset_y: Tensor, mask: Tensor) -> tuple[int, int, int, int, int]:
    """Validate DSepConv arguments; return ``(B, C, K, H, W)``. Raises ``ValueError``."""
    tensors = dict(input=input, vertical=vertical, horizontal=horizontal,
                   offset_x=offset_x, offset_y=offset_y, mask=mask)
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"dsepconv: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"dsepconv: {name} must be 4-D (B, ., H, W), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"dsepconv: {name} must be a floating tensor, got {t.dtype}")
        if t.device != input.device:
            raise ValueError(f"dsepconv: {name} is on {t.device}, input on {input.device}")
    B, C, Hin, Win = input.shape
    _, K, H, W = vertical.shape
    if horizontal.shape != vertical.shape:
        raise ValueError(f"dsepconv: horizontal {tuple(horizontal.shape)} != vertical {tuple(vertical.shape)}")
    for name in ("offset_x", "offset_y", "mask"):
        t = tensors[name]
        if tuple(t.shape) != (B, K * K, H, W):
            raise ValueError(f"dsepconv: {name} must have shape {(B, K * K, H, W)}, got {tuple(t.shape)}")
    if vertical.shape[0] != B:
        raise ValueError(f"dsepconv: batch of vertical ({vertical.shape[0]}) != batch of input ({B})")
    if Hin != H + K - 1 or Win != W + K - 1:
        raise ValueError(f"dsepconv: input must be the output size padded by K-1={K - 1}: "
                         f"expected spatial {(H + K - 1, W + K - 1)}, got {(Hin, Win)}")
    return B, C, K, H, W


def dsepconv_reference(input: Tensor, vertical: Tensor, horizontal: Tensor,
                       offset_x: Tensor, offset_y: Tensor, mask: Tensor) -> Tensor:
    """Deformable separable convolution, reference implementation.

    Args:
        input: (B, C, H + K - 1, W + K - 1), the frame already padded by (K - 1) / 2.
        vertical: (B, K, H, W) vertical 1-D kernel per output pixel.
        horizontal: (B, K, H, W) horizontal 1-D kernel per output pixel.
        offset_x: (B, K*K, H, W) row (y) displacement of each tap ("alpha").
        offset_y: (B, K*K, H, W) column (x) displacement of each tap ("beta").
        mask: (B, K*K, H, W) modulation of each tap.

    Returns:
        (B, C, H, W). float16/bfloat16 inputs are computed in float32 and cast back.
        Differentiable with respect to every argument (autograd).
    """
    B, C, K, H, W = check_dsepconv_args(input, vertical, horizontal, offset_x, offset_y, mask)
    out_dtype = input.dtype
    cdtype = precision.compute_dtype("dsepconv", out_dtype)  # float32 under half (precision island)
    inp = input.to(cdtype)
    vertical, horizontal = vertical.to(cdtype), horizontal.to(cdtype)
    offset_x, offset_y, mask = offset_x.to(cdtype), offset_y.to(cdtype), mask.to(cdtype)
    Hin, Win = inp.shape[-2:]
    dev = inp.device
    if B == 0 or C == 0 or H == 0 or W == 0:
        return inp.new_zeros((B, C, H, W)).to(out_dtype)
    ys = torch.arange(H, device=dev, dtype=cdtype).view(1, H, 1)
    xs = torch.arange(W, device=dev, dtype=cdtype).view(1, 1, W)
    flat = inp.reshape(B, C, Hin * Win)
    out = None
    for i in range(K):
        for j in range(K):
            tap = i * K + j
            left, right, wl, wr = tap_corners(tap_position(offset_y[:, tap], xs, j, K), Win)
            top, bottom, wt, wb = tap_corners(tap_position(offset_x[:, tap], ys, i, K), Hin)

            def gather(r: Tensor, c: Tensor) -> Tensor:
                idx = (r * Win + c).long().view(B, 1, H * W).expand(B, C, H * W)
                return flat.gather(2, idx).view(B, C, H, W)

            val = (gather(top, left) * wl.unsqueeze(1) * wt.unsqueeze(1)
                   + gather(top, right) * wr.unsqueeze(1) * wt.unsqueeze(1)
                   + gather(bottom, left) * wl.unsqueeze(1) * wb.unsqueeze(1)
                   + gather(bottom, right) * wr.unsqueeze(1) * wb.unsqueeze(1))
            term = val * vertical[:, i:i + 1] * horizontal[:, j:j + 1] * mask[:, tap:tap + 1]
            out = term if out is None else out + term
    return out.to(out_dtype)
