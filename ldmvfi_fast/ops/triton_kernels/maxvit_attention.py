"""Triton kernel of MaxViT block / grid window attention with relative-position bias.

Design
------
One program per (window, head). The program gathers its window's ``w * w`` query, key and
value tokens straight from the channel-last ``(B, H, W, C)`` projections by index
arithmetic, so neither the 6-D window partition nor its inverse is ever materialised:

* block windows: token ``(i, j)`` of window ``(X, Y)`` is pixel ``(X*w + i, Y*w + j)``;
* grid windows: it is pixel ``(i*(H/w) + X, j*(W/w) + Y)``.

It computes ``(q * scale) @ k^T`` (scale applied to q in the storage dtype, as the
reference), adds the bias gathered from the ``((2w-1)^2, heads)`` table with the relative
index ``(i1-i2+w-1)*(2w-1) + (j1-j2+w-1)``, takes the softmax in float32, multiplies by v
(probabilities cast to the storage dtype, float32 accumulation) and stores each token back
at its pixel of a contiguous ``(B, H, W, C)`` output. Self- and cross-attention are the
same kernel (k, v from another tensor than q).

``tl.dot`` needs every dimension >= 16: a window of 2 (4 tokens) is padded to 16 tokens
with masked loads, the padded keys get ``-inf`` logits and the padded rows are not stored.
The head dim is processed in chunks of at most 64 channels (16 for float32, whose ieee
``tl.dot`` keeps its operands in registers: larger chunks spilled thousands of bytes) to
bound register use (head dims 32 .. 256). float32 inputs use ``input_precision="ieee"`` (no TF32), to match the
PyTorch reference's default fp32 matmul. Under the Triton interpreter (whose bfloat16
``tl.dot`` returns garbage in Triton 3.x) bfloat16 operands are upcast to float32 first,
which is exact for the products.

Limits: :data:`ldmvfi_fast.ops.limits.MAXVIT_TRITON` (windows, head dims; checked here and
by the provider);
q, k, v of one dtype among float32 / float16 / bfloat16; forward only (no backward);
int32 index arithmetic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..limits import MAXVIT_TRITON
from ..maxvit_ref import check_attention_args

__all__ = ["maxvit_attention"]


@triton.jit
def _maxvit_attn_kernel(q_ptr, k_ptr, v_ptr, bias_ptr, out_ptr,
                        nh, nw, scale,
                        sqb, sqh, sqw, sqc, skb, skh, skw, skc, svb, svh, svw, svc,
                        sob, soh, sow, soc, s_br, s_bh,
                        WIN: tl.constexpr, GRID: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
                        NTOK: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr):
    pid = tl.program_id(0)       # window, in (b, x, y) order
    head = tl.program_id(1)
    nwin = nh * nw
    b = pid // nwin
    rem = pid % nwin
    X = rem // nw
    Y = rem % nw
    t = tl.arange(0, NTOK)
    valid = t < WIN * WIN
    ti = t // WIN
    tj = t % WIN
    if GRID:
        row = ti * nh + X
        col = tj * nw + Y
    else:
        row = X * WIN + ti
        col = Y * WIN + tj
    q_tok = (b * sqb + row * sqh + col * sqw)[:, None]
    k_tok = (b * skb + row * skh + col * skw)[:, None]
    v_tok = (b * svb + row * svh + col * svw)[:, None]
    o_tok = (b * sob + row * soh + col * sow)[:, None]
    dd = tl.arange(0, BLOCK_D)
    vmask = valid[:, None]

    s = tl.zeros([NTOK, NTOK], dtype=tl.float32)
    for d0 in tl.static_range(0, D, BLOCK_D):
        ch = (head * D + d0 + dd)[None, :]
        q = tl.load(q_ptr + q_tok + ch * sqc, mask=vmask, other=0.0)
        q = (q.to(tl.float32) * scale).to(q.dtype)
        k = tl.load(k_ptr + k_tok + ch * skc, mask=vmask, other=0.0)
        if UPCAST:  # exact: bf16 values in fp32 (the interpreter's bf16 tl.dot is wrong)
            q = q.to(tl.float32)
            k = k.to(tl.float32)
        s = tl.dot(q, tl.trans(k), acc=s, input_precision=PREC)

    rel = (ti[:, None] - ti[None, :] + (WIN - 1)) * (2 * WIN - 1) + (tj[:, None] - tj[None, :] + (WIN - 1))
    both = valid[:, None] & valid[None, :]
    bias = tl.load(bias_ptr + rel * s_br + head * s_bh, mask=both, other=0.0).to(tl.float32)
    s = s + bias
    s = tl.where(valid[None, :], s, float("-inf"))
    m = tl.max(s, axis=1)
    p = tl.exp(s - m[:, None])
    p = p / tl.sum(p, axis=1)[:, None]

    for d0 in tl.static_range(0, D, BLOCK_D):
        ch = (head * D + d0 + dd)[None, :]
        v = tl.load(v_ptr + v_tok + ch * svc, mask=vmask, other=0.0)
        pv = p.to(v.dtype)
        if UPCAST:
            pv = pv.to(tl.float32)
            v = v.to(tl.float32)
        o = tl.dot(pv, v, input_precision=PREC)
        tl.store(out_ptr + o_tok + ch * soc, o.to(out_ptr.dtype.element_ty), mask=vmask)


#: True when the kernels were built for the Triton interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = type(_maxvit_attn_kernel).__name__ == "InterpretedFunction"


def maxvit_attention(q: Tensor, k: Tensor, v: Tensor, bias_table: Tensor, window: int, mode: str,
                     num_heads: int, scale: float | None = None) -> Tensor:
    """Fused windowed attention (Triton), same contract as ``maxvit_attention_reference``.

    Args:
        q, k, v: (B, H, W, C), any strides, one dtype; C = num_heads * head_dim.
        bias_table: ((2w-1)^2, num_heads) relative-position bias.
        window: see ``MAXVIT_TRITON``; mode: ``"block"`` or ``"grid"``; num_heads: heads.
        scale: softmax scale applied to q (default head_dim ** -0.5).

    Returns:
        (B, H, W, C) contiguous, dtype of q: attention output, heads merged. No autograd.
    """
    check_attention_args(q, k, v, bias_table, window, mode, num_heads)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"maxvit_attention (triton): q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    B, H, W, C = q.shape
    d = C // num_heads
    reason = MAXVIT_TRITON.refusal(window, d)
    if reason is not None:
        raise ValueError(f"maxvit_attention (triton): {reason}")
    if scale is None:
        scale = d ** -0.5
    out = torch.empty((B, H, W, C), dtype=q.dtype, device=q.device)
    nh, nw = H // window, W // window
    nwin = B * nh * nw
    if nwin == 0 or C == 0:
        return out
    ntok = max(16, triton.next_power_of_2(window * window))
    upcast = INTERPRETED and q.dtype == torch.bfloat16
    prec = "ieee" if q.dtype == torch.float32 or upcast else None  # None: the target's default
    if q.dtype == torch.float32:
        # ieee fp32 tl.dot runs on FMA units with its operands in registers: 16-channel chunks
        # and 8 warps for 64-token windows. Offline sm_90 compile (w 8): stack 5456 B (d 32) /
        # 12120 B (d 256) with 64-channel chunks and 4 warps -> 0 / 0 (188 / 255 registers).
        block_d = min(d, 16)
        num_warps = 8 if ntok >= 64 else 4
    else:
        block_d = min(d, 64)
        num_warps = 4 if ntok * block_d <= 64 * 64 else 8
    _maxvit_attn_kernel[(nwin, num_heads)](
        q, k, v, bias_table, out, nh, nw, float(scale),
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *bias_table.stride(),
        WIN=window, GRID=(mode == "grid"), D=d, BLOCK_D=block_d, NTOK=ntok, PREC=prec, UPCAST=upcast,
        num_warps=num_warps)
    return out
