"""Export-friendly (vectorised) DSepConv and decoder output: few, large graph nodes.

The reference (:mod:`.dsepconv_ref`) loops over the K*K taps and gathers the 4 bilinear
corners of each one separately: traced into ONNX, that is ~100 small ops per tap, ~6 900 per
DSepConv and ~13 800 nodes for the decoder graph. This formulation computes the tap
geometry of a whole row of K taps at once as (B, K, H, W) tensors and gathers each corner of
those K taps with one flattened ``gather``, so a DSepConv is a few hundred nodes.

Semantics are the reference's, through the same helpers: :func:`.dsepconv_ref.tap_position`
(tap origin quirk, the same float-op order so the floor agrees) and
:func:`.dsepconv_ref.tap_corners` (floor of the unclamped position, clamped corners, weights
from the clamped position); ``offset_x`` displaces rows, ``offset_y`` columns. Only the
order of the final sum over taps differs (rows of K taps, then K), so results agree with
the reference to float rounding (tested to 1e-5), and the reference stays the oracle.

Memory: the largest intermediate is one row of taps, (B, C, K, H, W) per corner (not all
K*K taps at once): at 1080p-class sizes with C = 3, about 125 MB per corner in float32.

Used by the ONNX export in ``decompose`` mode (:func:`ldmvfi_fast.ops.export_formulation`);
plain PyTorch code, so it also runs eagerly (the tests compare it with the reference).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import precision
from .dsepconv_ref import check_dsepconv_args, tap_corners, tap_position

__all__ = ["dsepconv_vectorized", "decoder_output_vectorized"]


def dsepconv_vectorized(input: Tensor, vertical: Tensor, horizontal: Tensor,
                        offset_x: Tensor, offset_y: Tensor, mask: Tensor) -> Tensor:
    """Deformable separable convolution, one row of K taps per step (same arguments and
    result as :func:`.dsepconv_ref.dsepconv_reference`: input (B, C, H + K - 1, W + K - 1),
    vertical/horizontal (B, K, H, W), offset_x/offset_y/mask (B, K*K, H, W) -> (B, C, H, W))."""
    B, C, K, H, W = check_dsepconv_args(input, vertical, horizontal, offset_x, offset_y, mask)
    out_dtype = input.dtype
    cdtype = precision.compute_dtype("dsepconv", out_dtype)  # float32 under half (precision island)
    inp = input.to(cdtype)
    vertical, horizontal = vertical.to(cdtype), horizontal.to(cdtype)
    offset_x, offset_y, mask = offset_x.to(cdtype), offset_y.to(cdtype), mask.to(cdtype)
    Hin, Win = inp.shape[-2], inp.shape[-1]
    dev = inp.device
    if isinstance(B, int) and isinstance(H, int) and isinstance(W, int) and 0 in (B, C, H, W):
        return inp.new_zeros((B, C, H, W)).to(out_dtype)  # eager only: export sizes are symbolic
    ys = torch.arange(H, device=dev, dtype=cdtype).view(1, 1, H, 1)
    xs = torch.arange(W, device=dev, dtype=cdtype).view(1, 1, 1, W)
    cols = torch.arange(K, device=dev, dtype=cdtype).view(1, K, 1, 1)  # tap column j of a row
    flat = inp.reshape(B, C, 1, Hin * Win)
    hor = horizontal.unsqueeze(1)  # (B, 1, K, H, W): h_j for the K taps of a row
    out = None
    for i in range(K):  # one row of K taps: (B, K, H, W) geometry, (B, C, K, H, W) values
        taps = slice(i * K, (i + 1) * K)
        left, right, wl, wr = tap_corners(tap_position(offset_y[:, taps], xs, cols, K), Win)
        top, bottom, wt, wb = tap_corners(tap_position(offset_x[:, taps], ys, i, K), Hin)

        def gather(r: Tensor, c: Tensor) -> Tensor:
            idx = (r * Win + c).long().reshape(B, 1, 1, K * H * W).expand(B, C, 1, K * H * W)
            return flat.gather(3, idx).reshape(B, C, K, H, W)

        wl, wr, wt, wb = wl.unsqueeze(1), wr.unsqueeze(1), wt.unsqueeze(1), wb.unsqueeze(1)
        val = (gather(top, left) * wl * wt + gather(top, right) * wr * wt
               + gather(bottom, left) * wl * wb + gather(bottom, right) * wr * wb)
        term = val * vertical[:, i:i + 1].unsqueeze(1) * hor * mask[:, taps].unsqueeze(1)
        row = term.sum(2)
        out = row if out is None else out + row
    return out.to(out_dtype)


def decoder_output_vectorized(frame0: Tensor, frame1: Tensor,
                              vertical0: Tensor, horizontal0: Tensor, offset_x0: Tensor, offset_y0: Tensor,
                              vertical1: Tensor, horizontal1: Tensor, offset_x1: Tensor, offset_y1: Tensor,
                              mask: Tensor, residual: Tensor) -> Tensor:
    """:func:`.decoder_output_ref.decoder_output_reference` with :func:`dsepconv_vectorized`."""
    K = vertical0.shape[1]
    p = (K - 1) // 2
    w0 = dsepconv_vectorized(F.pad(frame0, (p, p, p, p), mode="replicate"), vertical0, horizontal0,
                             offset_x0, offset_y0, mask)
    w1 = dsepconv_vectorized(F.pad(frame1, (p, p, p, p), mode="replicate"), vertical1, horizontal1,
                             offset_x1, offset_y1, 1.0 - mask)
    return (w0 + w1) + residual
