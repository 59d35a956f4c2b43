"""MaxViT blocks: windowed self-attention (autoencoder middle, U-Net) and cross-attention
(decoder), channel-last throughout.

The original rearranges (B, C, H, W) into 6-D window tensors before every LayerNorm and
projection. Those are per-token operations, so this implementation keeps a single
(B, H, W, C) tensor and lets :func:`ldmvfi_fast.ops.maxvit_attention` do the window
gather and scatter (fused in the compiled kernels). Parameter names match the checkpoint
(``attn_block.norm``, ``attn_block.fn.to_q``, ``ff_block.fn.net.0`` ...).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops, precision


class WindowAttention(nn.Module):
    """Multi-head attention inside w x w windows with a relative-position bias."""

    def __init__(self, dim: int, dim_head: int, window: int, mode: str):
        super().__init__()
        if dim % dim_head:
            raise ValueError(f"dimension {dim} is not divisible by the head size {dim_head}")
        self.heads = dim // dim_head
        self.scale = dim_head ** -0.5
        self.window, self.mode = window, mode
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleDict({"0": nn.Linear(dim, dim, bias=False)})
        self.rel_pos_bias = nn.Embedding((2 * window - 1) ** 2, self.heads)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x: (B, H, W, C) normalised queries' tokens; c: (B, H, W, C) normalised context."""
        out = ops.maxvit_attention(self.to_q(x), self.to_k(c), self.to_v(c), self.rel_pos_bias.weight,
                                   self.window, self.mode, self.heads, self.scale)
        return self.to_out["0"](out)


class FeedForward(nn.Module):
    """Linear - GELU - Linear (x4 expansion)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleDict({"0": nn.Linear(dim, dim * mult), "1": nn.GELU(),
                                  "3": nn.Linear(dim * mult, dim)})

    def forward(self, x: Tensor) -> Tensor:
        return self.net["3"](self.net["1"](self.net["0"](x)))


class LayerNorm32(nn.LayerNorm):
    """LayerNorm; under float16/bfloat16 computed in float32 and cast back (precision island
    ``layernorm``). Parameter names are nn.LayerNorm's (``weight``, ``bias``)."""

    def forward(self, x: Tensor) -> Tensor:
        xc, w, b = precision.upcast("layernorm", x, self.weight, self.bias)
        return F.layer_norm(xc, self.normalized_shape, w, b, self.eps).to(x.dtype)


class PreNorm(nn.Module):
    """LayerNorm then ``fn``; the residual is added by the caller."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = LayerNorm32(dim)
        self.fn = fn


class MaxViTStages(nn.Module):
    """Block attention + FF, then grid attention + FF, on channel-last tokens."""

    def __init__(self, dim: int, dim_head: int, window: int):
        super().__init__()
        self.window = window
        self.attn_block = PreNorm(dim, WindowAttention(dim, dim_head, window, "block"))
        self.ff_block = PreNorm(dim, FeedForward(dim))
        self.attn_grid = PreNorm(dim, WindowAttention(dim, dim_head, window, "grid"))
        self.ff_grid = PreNorm(dim, FeedForward(dim))

    def _check(self, x: Tensor) -> None:
        H, W = x.shape[1], x.shape[2]
        if H % self.window or W % self.window:
            raise ValueError(f"MaxViT attention needs feature maps divisible by its window {self.window}, "
                             f"got {H}x{W}: the frame was not padded to a supported size")

    def run(self, x: Tensor, c: Tensor | None) -> Tensor:
        """x: (B, H, W, C); c: (B, H, W, C) raw context or None for self-attention."""
        self._check(x)
        for attn, ff in ((self.attn_block, self.ff_block), (self.attn_grid, self.ff_grid)):
            xn = attn.norm(x)
            x = x + attn.fn(xn, xn if c is None else attn.norm(c))
            x = x + ff.fn(ff.norm(x))
        return x


class MaxAttentionBlock(MaxViTStages):
    """MaxViT self-attention block on (B, C, H, W) features; returns (B, C, H, W)."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: int = 8):
        if heads * dim_head != dim:
            raise ValueError(f"heads ({heads}) x head size ({dim_head}) must equal the channels ({dim})")
        super().__init__(dim, dim_head, window)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x.permute(0, 2, 3, 1), None).permute(0, 3, 1, 2)


class SqueezeExcitation(nn.Module):
    def __init__(self, dim: int, shrinkage_rate: float = 0.25):
        super().__init__()
        hidden = int(dim * shrinkage_rate)
        self.gate = nn.ModuleDict({"1": nn.Linear(dim, hidden, bias=False), "2": nn.SiLU(),
                                   "3": nn.Linear(hidden, dim, bias=False)})

    def forward(self, x: Tensor) -> Tensor:
        g = x.mean(dim=(2, 3))
        g = self.gate["3"](self.gate["2"](self.gate["1"](g))).sigmoid()
        return x * g[:, :, None, None]


class MBConv(nn.Sequential):
    """Inverted bottleneck: 1x1 - BN - GELU - depthwise 3x3 - BN - GELU - SE - 1x1 - BN (eval BN).

    A Sequential so that its children are named ``proj_in.0`` ... ``proj_in.8`` as in the
    checkpoint; the residual applies only when input and output widths agree.
    """

    def __init__(self, dim_in: int, dim_out: int, expansion_rate: int = 4):
        hidden = expansion_rate * dim_out
        super().__init__(
            nn.Conv2d(dim_in, hidden, 1), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.BatchNorm2d(hidden), nn.GELU(),
            SqueezeExcitation(hidden), nn.Conv2d(hidden, dim_out, 1), nn.BatchNorm2d(dim_out))
        self.residual = dim_in == dim_out

    def forward(self, x: Tensor) -> Tensor:
        h = super().forward(x)
        return h + x if self.residual else h


class CrossAttentionWithMax(MaxViTStages):
    """Decoder cross-attention: features attend to ``MBConv(cat(phi0, phi1))``, block then grid."""

    def __init__(self, dim: int, heads: int, dim_head: int, window: int = 8):
        if heads * dim_head != dim:
            raise ValueError(f"heads ({heads}) x head size ({dim_head}) must equal the channels ({dim})")
        super().__init__(dim, dim_head, window)
        self.proj_in = MBConv(2 * dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x: (B, C, H, W) decoder features; context: (B, 2C, H, W) neighbour features."""
        c = self.proj_in(context).permute(0, 2, 3, 1)
        return self.run(x.permute(0, 2, 3, 1), c).permute(0, 3, 1, 2)
