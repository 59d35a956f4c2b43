"""Reference of the decoder's output stage: two DSepConv warps blended by a mask, plus residual.

``out = dsepconv(pad(I0), v0, h0, a0, b0, m) + dsepconv(pad(I1), v1, h1, a1, b1, 1 - m) + residual``

where ``pad`` is replication padding by (K - 1) / 2 = 2. A fused kernel does all of it in
one pass, reading the unpadded frames with clamped indices instead of padded copies.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .dsepconv_ref import dsepconv_reference

__all__ = ["decoder_output_reference"]


def decoder_output_reference(frame0: Tensor, frame1: Tensor,
                             vertical0: Tensor, horizontal0: Tensor, offset_x0: Tensor, offset_y0: Tensor,
                             vertical1: Tensor, horizontal1: Tensor, offset_x1: Tensor, offset_y1: Tensor,
                             mask: Tensor, residual: Tensor, dsepconv=dsepconv_reference) -> Tensor:
    """Blend two deformable warps and a residual.

    Args:
        frame0, frame1: (B, 3, H, W) unpadded neighbour frames in [-1, 1].
        vertical*, horizontal*: (B, K, H, W); offset_x*, offset_y*: (B, K*K, H, W).
        mask: (B, K*K, H, W) in [0, 1]; frame1 is modulated by ``1 - mask``.
        residual: (B, 3, H, W).
        dsepconv: the DSepConv implementation to use (default: the reference).

    Returns:
        (B, 3, H, W), not clamped.
    """
    K = vertical0.shape[1]
    p = (K - 1) // 2
    w0 = dsepconv(F.pad(frame0, (p, p, p, p), mode="replicate"), vertical0, horizontal0, offset_x0, offset_y0, mask)
    w1 = dsepconv(F.pad(frame1, (p, p, p, p), mode="replicate"), vertical1, horizontal1, offset_x1, offset_y1,
                  1.0 - mask)
    return (w0 + w1) + residual
