"""Pure-PyTorch reference of MaxViT windowed (block / grid) multi-head attention.

MaxViT attends inside non-overlapping windows of ``w x w`` tokens, either *block*
windows (contiguous ``w x w`` tiles) or *grid* windows (a ``w x w`` lattice with stride
``H / w``, ``W / w``). Both add a learned relative-position bias. This module works on
channel-last projections ``(B, H, W, C)`` so that the model never materialises the
6-D rearranged tensors of the original (``b d (x w1) (y w2) -> b x y w1 w2 d``): the
only layout change is inside the attention op, which a fused kernel removes.

Token order inside a window is row-major ``(w1 w2)`` and windows are ordered
``(b x y)``, as in the original, so the relative-position index of query token
``(i1, j1)`` and key token ``(i2, j2)`` is ``(i1 - i2 + w - 1) * (2w - 1) + (j1 - j2 + w - 1)``.
"""
from __future__ import annotations

import functools

import numpy as np

import torch
from torch import Tensor

from .. import precision

__all__ = ["window_partition", "window_unpartition", "relative_position_index",
           "relative_position_bias", "maxvit_attention_reference", "check_attention_args"]

MODES = ("block", "grid")


def window_partition(x: Tensor, window: int, mode: str) -> Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C), windows in (b, x, y) order."""
    B, H, W, C = x.shape
    nh, nw = H // window, W // window
    if mode == "block":
        x = x.reshape(B, nh, window, nw, window, C).permute(0, 1, 3, 2, 4, 5)
    elif mode == "grid":
        x = x.reshape(B, window, nh, window, nw, C).permute(0, 2, 4, 1, 3, 5)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return _copy_view(x, (B * nh * nw, window * window, C))


def window_unpartition(x: Tensor, window: int, mode: str, B: int, H: int, W: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * H/w * W/w, w*w, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    nh, nw = H // window, W // window
    x = x.reshape(B, nh, nw, window, window, C)
    if mode == "block":
        x = x.permute(0, 1, 3, 2, 4, 5)
    elif mode == "grid":
        x = x.permute(0, 3, 1, 4, 2, 5)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return _copy_view(x, (B, H, W, C))


def _copy_view(x: Tensor, shape) -> Tensor:
    """``x.reshape(shape)`` for a permuted ``x``, always as a contiguous copy then a view (the
    same values). ``reshape`` and ``contiguous`` first ask whether ``x`` is already contiguous,
    which for these permutations holds exactly when a window count is 1: ``torch.export``
    would record that as a guard and specialise the graph to >= 2 windows (sides >= 512 px)."""
    return x.clone(memory_format=torch.contiguous_format).view(shape)


@functools.lru_cache(maxsize=16)
def _rel_index_np(window: int) -> np.ndarray:
    # cached as numpy, never as a tensor: a tensor cached while torch.export / torch.compile
    # trace would be a fake tensor and poison later eager calls
    pos = np.arange(window)
    grid = np.stack(np.meshgrid(pos, pos, indexing="ij")).reshape(2, -1).T  # (w*w, 2)
    rel = grid[:, None, :] - grid[None, :, :] + (window - 1)
    idx = rel[..., 0] * (2 * window - 1) + rel[..., 1]
    idx.setflags(write=False)
    return idx


def relative_position_index(window: int, device=None) -> Tensor:
    """(w*w, w*w) int64 index into the ((2w-1)^2, heads) bias table."""
    return torch.tensor(_rel_index_np(window), dtype=torch.long, device=device)


def relative_position_bias(table: Tensor, window: int) -> Tensor:
    """((2w-1)^2, heads) table -> (heads, w*w, w*w) bias."""
    idx = relative_position_index(window, table.device)
    return table[idx].permute(2, 0, 1)


def check_attention_args(q: Tensor, k: Tensor, v: Tensor, bias_table: Tensor, window: int,
                         mode: str, num_heads: int) -> None:
    """Validate the arguments of :func:`maxvit_attention_reference` (raises ValueError)."""
    if mode not in MODES:
        raise ValueError(f"maxvit_attention: mode must be one of {MODES}, got {mode!r}")
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError("maxvit_attention: q, k, v must all be (B, H, W, C) of the same shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, W, C = q.shape
    if window <= 0 or H % window or W % window:
        raise ValueError(f"maxvit_attention: H={H} and W={W} must be multiples of the window size {window}")
    if num_heads <= 0 or C % num_heads:
        raise ValueError(f"maxvit_attention: C={C} is not divisible by num_heads={num_heads}")
    if tuple(bias_table.shape) != ((2 * window - 1) ** 2, num_heads):
        raise ValueError(f"maxvit_attention: bias table must be {((2 * window - 1) ** 2, num_heads)}, "
                         f"got {tuple(bias_table.shape)}")


def maxvit_attention_reference(q: Tensor, k: Tensor, v: Tensor, bias_table: Tensor, window: int,
                               mode: str, num_heads: int, scale: float | None = None) -> Tensor:
    """Windowed multi-head attention with relative-position bias.

    Args:
        q: (B, H, W, C) queries (already projected), C = num_heads * head_dim.
        k: (B, H, W, C) keys; v: (B, H, W, C) values (self-attention: from the same
           tokens as q; cross-attention: from the context).
        bias_table: ((2w-1)^2, num_heads) learned relative-position bias.
        window: window size w (H and W must be multiples of it).
        mode: ``"block"`` (contiguous w x w tiles) or ``"grid"`` (stride H/w, W/w).
        num_heads: number of heads.
        scale: softmax scale, default head_dim ** -0.5 (applied to q, as the original).

    Returns:
        (B, H, W, C): per-token attention output with heads merged (before the output
        projection).
    """
    check_attention_args(q, k, v, bias_table, window, mode, num_heads)
    B, H, W, C = q.shape
    d = C // num_heads
    if scale is None:
        scale = d ** -0.5
    n = window * window

    def split(t: Tensor) -> Tensor:
        return window_partition(t, window, mode).reshape(-1, n, num_heads, d).transpose(1, 2)

    out_dtype = q.dtype
    # precision island "softmax": scores, bias, softmax and attn @ v in float32 under half
    qw, kw, vw = (split(t) for t in precision.upcast("softmax", q, k, v))
    sim = torch.matmul(qw * scale, kw.transpose(-1, -2))
    sim = sim + relative_position_bias(bias_table, window).to(sim.dtype)
    attn = sim.softmax(dim=-1)
    out = torch.matmul(attn, vw)  # (N, heads, n, d)
    out = out.transpose(1, 2).reshape(-1, n, C).to(out_dtype)
    return window_unpartition(out, window, mode, B, H, W)
