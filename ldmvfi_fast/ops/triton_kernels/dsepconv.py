"""Triton kernels of deformable separable convolution (DSepConv) and the fused decoder output.

Design
------
* **Forward** (:func:`dsepconv`): one program per block of ``BLOCK_P`` output pixels
  (flattened over ``B * H * W``) and a chunk of ``NC = min(C, 4)`` channels (grid axis 1).
  For each of the ``K * K`` taps the program computes the sample position and the four
  bilinear weights once per pixel and reuses them for every channel of the chunk, so the
  per-pixel heads (vertical, horizontal, offsets, mask) are read once per chunk. One
  layout: every tensor is 1-D over the pixels and the channels are a static loop of 1-D
  accumulators. (The earlier (pixel, channel) tiles mixed with 1-D per-pixel tensors
  compiled, for sm_90, fp32, K = 5, C = 3, to 239 layout conversions and 470 barriers,
  255 registers + 1160 B stack (dsepconv) and 449 / 890, 168 registers + 4472 B stack
  (decoder_output); now 0 conversions, 0 barriers, 80 registers (dsepconv, taps unrolled)
  and 48 registers (decoder_output, runtime tap loop), no stack. Not timed: no GPU.) Accumulation is float32 whatever the storage dtype (fp32 / fp16 / bf16).
  The float operations and their order are those of :mod:`..dsepconv_ref` (the original
  CUDA kernel), quirks included: tap origin ``pixel + tap - (K-1)//2 + 1``, ``offset_x``
  moves rows, ``offset_y`` moves columns, positions clamped into the input, corners from
  the floor of the *unclamped* position, then clamped.
* **Backward** (:class:`DSepConvFunction`): (pixel, channel) tiles of ``BLOCK_C`` channels
  (not yet moved to the 1-D layout); per tap it recomputes the corners,
  reduces ``grad_out * value`` over channels to get the grads of vertical / horizontal /
  mask and ``grad_out * d(value)/d(position)`` for the offsets (zero where the position
  was clamped, as ``torch.clamp``'s backward), and scatters the input grad into a float32
  buffer with ``tl.atomic_add`` (several pixels sample the same input pixel). Input strides
  are honoured, so a non-contiguous input is never copied.
* **Decoder output** (:func:`decoder_output`): both warps, the ``mask`` / ``1 - mask``
  blend and the residual in one pass. The frames are read *unpadded*: a sample at padded
  row ``r`` reads row ``clamp(r - p, 0, H - 1)``, which is exactly replication padding by
  ``p = (K - 1) // 2``, so no padded copies are made. With autograd it falls back to
  replication padding + the differentiable :func:`dsepconv` (two launches + backward).

Limits: storage dtypes float32 / float16 / bfloat16 (float64 is refused by the provider);
int32 index arithmetic (the provider refuses tensors whose largest element offset does not
fit); the heads (vertical, horizontal, offsets, mask) are made contiguous (a no-op for the
decoder's outputs); no double backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor

from ..dsepconv_ref import check_dsepconv_args

__all__ = ["dsepconv", "dsepconv_forward", "dsepconv_backward", "decoder_output", "DSepConvFunction"]

BLOCK_P = 128
NUM_WARPS = 4


@triton.jit
def _tap_geometry(offx_ptr, offy_ptr, head_off, xf, yf, Hin, Win, pmask,
                  I, J, HALF: tl.constexpr):
    """Sample position of tap (I, J) for a block of pixels: clamped corners and weights.

    Restates ``dsepconv_ref.tap_position`` / ``tap_corners`` (the one definition), plus the
    in-range flags the backward needs (clamp's gradient is zero outside the range)."""
    dy = tl.load(offx_ptr + head_off, mask=pmask, other=0.0).to(tl.float32)
    dx = tl.load(offy_ptr + head_off, mask=pmask, other=0.0).to(tl.float32)
    # same float-op order as the original kernel: ((delta + x) + tap) - half + 1
    ux = (((dx + xf) + J) - HALF) + 1
    uy = (((dy + yf) + I) - HALF) + 1
    wmax = Win - 1.0  # fp32 (also when Win == 1 is specialised into a constexpr)
    hmax = Hin - 1.0
    px = tl.minimum(tl.maximum(ux, 0.0), wmax)
    py = tl.minimum(tl.maximum(uy, 0.0), hmax)
    left = tl.floor(ux)
    top = tl.floor(uy)
    right = tl.minimum(tl.maximum(left + 1, 0.0), wmax)
    bottom = tl.minimum(tl.maximum(top + 1, 0.0), hmax)
    left = tl.minimum(tl.maximum(left, 0.0), wmax)
    top = tl.minimum(tl.maximum(top, 0.0), hmax)
    wl = 1 + (left - px)
    wr = 1 - (right - px)
    wt = 1 + (top - py)
    wb = 1 - (bottom - py)
    inx = (ux >= 0.0) & (ux <= wmax)
    iny = (uy >= 0.0) & (uy <= hmax)
    return (left.to(tl.int32), right.to(tl.int32), top.to(tl.int32), bottom.to(tl.int32),
            wl, wr, wt, wb, inx, iny)


@triton.jit
def _corner_offsets(left, right, top, bottom, Hs, Ws, s_h, s_w, PAD: tl.constexpr):
    """Element offsets (rows * s_h + cols * s_w) of the 4 corners; PAD > 0 maps padded
    coordinates onto an unpadded frame of size (Hs, Ws) by clamping (replication pad)."""
    if PAD > 0:
        left = tl.minimum(tl.maximum(left - PAD, 0), Ws - 1)
        right = tl.minimum(tl.maximum(right - PAD, 0), Ws - 1)
        top = tl.minimum(tl.maximum(top - PAD, 0), Hs - 1)
        bottom = tl.minimum(tl.maximum(bottom - PAD, 0), Hs - 1)
    o_tl = (top * s_h + left * s_w)[:, None]
    o_tr = (top * s_h + right * s_w)[:, None]
    o_bl = (bottom * s_h + left * s_w)[:, None]
    o_br = (bottom * s_h + right * s_w)[:, None]
    return o_tl, o_tr, o_bl, o_br


@triton.jit
def _tap_channel(acc, img_ptr, base, o_tl, o_tr, o_bl, o_br, wl, wr, wt, wb, vi, hj, mt, m):
    """acc (BLOCK_P,) += modulated bilinear sample of one channel (1-D, pixel layout)."""
    g_tl = tl.load(img_ptr + base + o_tl, mask=m, other=0.0).to(tl.float32)
    g_tr = tl.load(img_ptr + base + o_tr, mask=m, other=0.0).to(tl.float32)
    g_bl = tl.load(img_ptr + base + o_bl, mask=m, other=0.0).to(tl.float32)
    g_br = tl.load(img_ptr + base + o_br, mask=m, other=0.0).to(tl.float32)
    val = g_tl * wl * wt + g_tr * wr * wt + g_bl * wl * wb + g_br * wr * wb
    return acc + val * vi * hj * mt


@triton.jit
def _tap_1d(acc0, acc1, acc2, acc3, img_ptr, base, s_c, ok0, ok1, ok2, ok3,
            vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr,
            head_k, head_kk, HW, xf, yf, Hin, Win, Hs, Ws, s_h, s_w, pmask, i, j,
            K: tl.constexpr, PAD: tl.constexpr, INVERT_MASK: tl.constexpr, NC: tl.constexpr):
    """One tap (i, j) of :func:`_warp_accumulate_1d`."""
    HALF = (K - 1) // 2  # constexpr
    t = i * K + j
    vi = tl.load(vert_ptr + head_k + i * HW, mask=pmask, other=0.0).to(tl.float32)
    hj = tl.load(horz_ptr + head_k + j * HW, mask=pmask, other=0.0).to(tl.float32)
    mraw = tl.load(mask_ptr + head_kk + t * HW, mask=pmask, other=0.0)
    mt = mraw.to(tl.float32)
    if INVERT_MASK:
        # rounded to the storage dtype, as the reference's ``1.0 - mask``
        mt = (1.0 - mt).to(mraw.dtype).to(tl.float32)
    left, right, top, bottom, wl, wr, wt, wb, inx, iny = _tap_geometry(
        offx_ptr, offy_ptr, head_kk + t * HW, xf, yf, Hin, Win, pmask, i, j, HALF)
    if PAD > 0:
        left = tl.minimum(tl.maximum(left - PAD, 0), Ws - 1)
        right = tl.minimum(tl.maximum(right - PAD, 0), Ws - 1)
        top = tl.minimum(tl.maximum(top - PAD, 0), Hs - 1)
        bottom = tl.minimum(tl.maximum(bottom - PAD, 0), Hs - 1)
    o_tl = top * s_h + left * s_w
    o_tr = top * s_h + right * s_w
    o_bl = bottom * s_h + left * s_w
    o_br = bottom * s_h + right * s_w
    acc0 = _tap_channel(acc0, img_ptr, base, o_tl, o_tr, o_bl, o_br, wl, wr, wt, wb, vi, hj, mt, ok0)
    if NC > 1:
        acc1 = _tap_channel(acc1, img_ptr, base + s_c, o_tl, o_tr, o_bl, o_br, wl, wr, wt, wb, vi, hj, mt, ok1)
    if NC > 2:
        acc2 = _tap_channel(acc2, img_ptr, base + 2 * s_c, o_tl, o_tr, o_bl, o_br, wl, wr, wt, wb,
                            vi, hj, mt, ok2)
    if NC > 3:
        acc3 = _tap_channel(acc3, img_ptr, base + 3 * s_c, o_tl, o_tr, o_bl, o_br, wl, wr, wt, wb,
                            vi, hj, mt, ok3)
    return acc0, acc1, acc2, acc3


@triton.jit
def _warp_accumulate_1d(acc0, acc1, acc2, acc3, img_ptr, base, s_c, ok0, ok1, ok2, ok3,
                        vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr,
                        head_k, head_kk, HW, xf, yf, Hin, Win, Hs, Ws, s_h, s_w, pmask,
                        K: tl.constexpr, PAD: tl.constexpr, INVERT_MASK: tl.constexpr, NC: tl.constexpr,
                        UNROLL: tl.constexpr):
    """acc_c (BLOCK_P,) += sum over taps of the modulated bilinear samples of channel c of
    the chunk, c < NC <= 4. ONE layout: every tensor is 1-D over the block's pixels and the
    channels are a static loop of 1-D accumulators (no (pixel, channel) tiles, hence no
    layout conversions or barriers between them).
    ``UNROLL``: taps unrolled at compile time (dsepconv); else a runtime loop over the taps
    (decoder_output: two warps unrolled would spill registers)."""
    if UNROLL:
        for i in tl.static_range(K):
            for j in tl.static_range(K):
                acc0, acc1, acc2, acc3 = _tap_1d(
                    acc0, acc1, acc2, acc3, img_ptr, base, s_c, ok0, ok1, ok2, ok3,
                    vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr, head_k, head_kk, HW, xf, yf,
                    Hin, Win, Hs, Ws, s_h, s_w, pmask, i, j, K, PAD, INVERT_MASK, NC)
    else:
        for t in range(K * K):
            i = t // K
            j = t - i * K
            acc0, acc1, acc2, acc3 = _tap_1d(
                acc0, acc1, acc2, acc3, img_ptr, base, s_c, ok0, ok1, ok2, ok3,
                vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr, head_k, head_kk, HW, xf, yf,
                Hin, Win, Hs, Ws, s_h, s_w, pmask, i, j, K, PAD, INVERT_MASK, NC)
    return acc0, acc1, acc2, acc3


@triton.jit
def _channel_masks(pmask, c0, C):
    """Pixel mask of channels c0 .. c0 + 3 (1-D, the pixel layout)."""
    c = tl.zeros_like(pmask.to(tl.int32)) + c0
    return pmask & (c < C), pmask & (c + 1 < C), pmask & (c + 2 < C), pmask & (c + 3 < C)


@triton.jit
def _pixel_block(NP, H, W, K: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's block of output pixels: flat index p, its mask, batch b, in-plane
    index hw, float column/row xf/yf, and the offsets of its K- and K*K-channel head planes."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    HW = H * W
    b = p // HW
    hw = p % HW
    xf = (hw % W).to(tl.float32)
    yf = (hw // W).to(tl.float32)
    return p < NP, HW, b, hw, xf, yf, b * (K * HW) + hw, b * (K * K * HW) + hw


@triton.jit
def _dsepconv_fwd_kernel(inp_ptr, vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr, out_ptr,
                         NP, C, H, W, Hin, Win, s_ib, s_ic, s_ih, s_iw,
                         K: tl.constexpr, BLOCK_P: tl.constexpr, NC: tl.constexpr):
    """Program (pixel block, chunk of NC <= 4 channels); 1-D pixel layout throughout."""
    pmask, HW, b, hw, xf, yf, head_k, head_kk = _pixel_block(NP, H, W, K, BLOCK_P)
    c0 = tl.program_id(1) * NC
    ok0, ok1, ok2, ok3 = _channel_masks(pmask, c0, C)
    acc0 = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_P], dtype=tl.float32)
    acc0, acc1, acc2, acc3 = _warp_accumulate_1d(
        acc0, acc1, acc2, acc3, inp_ptr, b * s_ib + c0 * s_ic, s_ic, ok0, ok1, ok2, ok3,
        vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr, head_k, head_kk, HW, xf, yf, Hin, Win, Hin, Win,
        s_ih, s_iw, pmask, K, 0, False, NC, True)
    out_off = b * (C * HW) + hw + c0 * HW
    ty = out_ptr.dtype.element_ty
    tl.store(out_ptr + out_off, acc0.to(ty), mask=ok0)
    if NC > 1:
        tl.store(out_ptr + out_off + HW, acc1.to(ty), mask=ok1)
    if NC > 2:
        tl.store(out_ptr + out_off + 2 * HW, acc2.to(ty), mask=ok2)
    if NC > 3:
        tl.store(out_ptr + out_off + 3 * HW, acc3.to(ty), mask=ok3)


@triton.jit
def _dsepconv_bwd_kernel(inp_ptr, vert_ptr, horz_ptr, offx_ptr, offy_ptr, mask_ptr, gout_ptr,
                         ginp_ptr, gvert_ptr, ghorz_ptr, goffx_ptr, goffy_ptr, gmask_ptr,
                         NP, C, H, W, Hin, Win, s_ib, s_ic, s_ih, s_iw,
                         K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
                         NEED_INPUT: tl.constexpr):
    """All grads in float32. ginp: contiguous (B, C, Hin, Win), zero-initialised;
    ghorz: zero-initialised (accumulated over the rows of the separable kernel)."""
    HALF = (K - 1) // 2  # constexpr
    pmask, HW, b, hw, xf, yf, head_k, head_kk = _pixel_block(NP, H, W, K, BLOCK_P)
    cc = tl.arange(0, BLOCK_C)
    for i in tl.static_range(K):
        vi = tl.load(vert_ptr + head_k + i * HW, mask=pmask, other=0.0).to(tl.float32)
        gv = tl.zeros([BLOCK_P], dtype=tl.float32)
        for j in tl.static_range(K):
            t = i * K + j
            hj = tl.load(horz_ptr + head_k + j * HW, mask=pmask, other=0.0).to(tl.float32)
            mt = tl.load(mask_ptr + head_kk + t * HW, mask=pmask, other=0.0).to(tl.float32)
            left, right, top, bottom, wl, wr, wt, wb, inx, iny = _tap_geometry(
                offx_ptr, offy_ptr, head_kk + t * HW, xf, yf, Hin, Win, pmask, i, j, HALF)
            o_tl, o_tr, o_bl, o_br = _corner_offsets(left, right, top, bottom, Hin, Win, s_ih, s_iw, 0)
            wl2 = wl[:, None]
            wr2 = wr[:, None]
            wt2 = wt[:, None]
            wb2 = wb[:, None]
            coef = vi * hj * mt
            s_val = tl.zeros([BLOCK_P], dtype=tl.float32)
            s_dx = tl.zeros([BLOCK_P], dtype=tl.float32)
            s_dy = tl.zeros([BLOCK_P], dtype=tl.float32)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + cc
                m2 = pmask[:, None] & (c < C)[None, :]
                cbase = b[:, None] * s_ib + c[None, :] * s_ic
                go = tl.load(gout_ptr + (b * (C * HW) + hw)[:, None] + c[None, :] * HW,
                             mask=m2, other=0.0).to(tl.float32)
                g_tl = tl.load(inp_ptr + cbase + o_tl, mask=m2, other=0.0).to(tl.float32)
                g_tr = tl.load(inp_ptr + cbase + o_tr, mask=m2, other=0.0).to(tl.float32)
                g_bl = tl.load(inp_ptr + cbase + o_bl, mask=m2, other=0.0).to(tl.float32)
                g_br = tl.load(inp_ptr + cbase + o_br, mask=m2, other=0.0).to(tl.float32)
                val = g_tl * wl2 * wt2 + g_tr * wr2 * wt2 + g_bl * wl2 * wb2 + g_br * wr2 * wb2
                dvdx = (g_tr - g_tl) * wt2 + (g_br - g_bl) * wb2
                dvdy = (g_bl - g_tl) * wl2 + (g_br - g_tr) * wr2
                s_val += tl.sum(go * val, axis=1)
                s_dx += tl.sum(go * dvdx, axis=1)
                s_dy += tl.sum(go * dvdy, axis=1)
                if NEED_INPUT:
                    gc = go * coef[:, None]
                    gbase = (b[:, None] * C + c[None, :]) * (Hin * Win)
                    r_top = (top * Win)[:, None]
                    r_bot = (bottom * Win)[:, None]
                    tl.atomic_add(ginp_ptr + gbase + r_top + left[:, None], gc * wl2 * wt2, mask=m2, sem="relaxed")
                    tl.atomic_add(ginp_ptr + gbase + r_top + right[:, None], gc * wr2 * wt2, mask=m2, sem="relaxed")
                    tl.atomic_add(ginp_ptr + gbase + r_bot + left[:, None], gc * wl2 * wb2, mask=m2, sem="relaxed")
                    tl.atomic_add(ginp_ptr + gbase + r_bot + right[:, None], gc * wr2 * wb2, mask=m2, sem="relaxed")
            gv += s_val * hj * mt
            tap_off = head_kk + t * HW
            tl.store(gmask_ptr + tap_off, s_val * vi * hj, mask=pmask)
            tl.store(goffy_ptr + tap_off, tl.where(inx, s_dx * coef, 0.0), mask=pmask)
            tl.store(goffx_ptr + tap_off, tl.where(iny, s_dy * coef, 0.0), mask=pmask)
            # this program owns these pixels: read-modify-write is race-free
            h_off = head_k + j * HW
            gh = tl.load(ghorz_ptr + h_off, mask=pmask, other=0.0)
            tl.store(ghorz_ptr + h_off, gh + s_val * vi * mt, mask=pmask)
        tl.store(gvert_ptr + head_k + i * HW, gv, mask=pmask)


@triton.jit
def _decoder_output_kernel(f0_ptr, f1_ptr,
                           v0_ptr, h0_ptr, ox0_ptr, oy0_ptr, v1_ptr, h1_ptr, ox1_ptr, oy1_ptr,
                           mask_ptr, res_ptr, out_ptr,
                           NP, C, H, W,
                           s0b, s0c, s0h, s0w, s1b, s1c, s1h, s1w, srb, src, srh, srw,
                           K: tl.constexpr, BLOCK_P: tl.constexpr, NC: tl.constexpr):
    """Program (pixel block, chunk of NC <= 4 channels); 1-D pixel layout throughout."""
    PAD = (K - 1) // 2  # constexpr
    pmask, HW, b, hw, xf, yf, head_k, head_kk = _pixel_block(NP, H, W, K, BLOCK_P)
    x = hw % W
    y = hw // W
    Hin = H + 2 * PAD
    Win = W + 2 * PAD
    c0 = tl.program_id(1) * NC
    ok0, ok1, ok2, ok3 = _channel_masks(pmask, c0, C)
    a0 = tl.zeros([BLOCK_P], dtype=tl.float32)
    a1 = tl.zeros([BLOCK_P], dtype=tl.float32)
    a2 = tl.zeros([BLOCK_P], dtype=tl.float32)
    a3 = tl.zeros([BLOCK_P], dtype=tl.float32)
    a0, a1, a2, a3 = _warp_accumulate_1d(
        a0, a1, a2, a3, f0_ptr, b * s0b + c0 * s0c, s0c, ok0, ok1, ok2, ok3,
        v0_ptr, h0_ptr, ox0_ptr, oy0_ptr, mask_ptr, head_k, head_kk, HW, xf, yf, Hin, Win, H, W,
        s0h, s0w, pmask, K, PAD, False, NC, False)
    b0 = tl.zeros([BLOCK_P], dtype=tl.float32)
    b1 = tl.zeros([BLOCK_P], dtype=tl.float32)
    b2 = tl.zeros([BLOCK_P], dtype=tl.float32)
    b3 = tl.zeros([BLOCK_P], dtype=tl.float32)
    b0, b1, b2, b3 = _warp_accumulate_1d(
        b0, b1, b2, b3, f1_ptr, b * s1b + c0 * s1c, s1c, ok0, ok1, ok2, ok3,
        v1_ptr, h1_ptr, ox1_ptr, oy1_ptr, mask_ptr, head_k, head_kk, HW, xf, yf, Hin, Win, H, W,
        s1h, s1w, pmask, K, PAD, True, NC, False)
    r_off = b * srb + c0 * src + y * srh + x * srw
    out_off = b * (C * HW) + hw + c0 * HW
    ty = out_ptr.dtype.element_ty
    res = tl.load(res_ptr + r_off, mask=ok0, other=0.0).to(tl.float32)
    tl.store(out_ptr + out_off, ((a0 + b0) + res).to(ty), mask=ok0)
    if NC > 1:
        res = tl.load(res_ptr + r_off + src, mask=ok1, other=0.0).to(tl.float32)
        tl.store(out_ptr + out_off + HW, ((a1 + b1) + res).to(ty), mask=ok1)
    if NC > 2:
        res = tl.load(res_ptr + r_off + 2 * src, mask=ok2, other=0.0).to(tl.float32)
        tl.store(out_ptr + out_off + 2 * HW, ((a2 + b2) + res).to(ty), mask=ok2)
    if NC > 3:
        res = tl.load(res_ptr + r_off + 3 * src, mask=ok3, other=0.0).to(tl.float32)
        tl.store(out_ptr + out_off + 3 * HW, ((a3 + b3) + res).to(ty), mask=ok3)


def _block_c(C: int) -> int:
    return max(2, min(16, triton.next_power_of_2(max(C, 1))))


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK_P),)


def _nc(C: int) -> int:
    """Channels per program of the 1-D forward kernels (a static loop of at most 4)."""
    return max(1, min(4, C))


def _grid_nc(n: int, C: int) -> tuple[int, int]:
    return (triton.cdiv(n, BLOCK_P), triton.cdiv(C, _nc(C)))


def dsepconv_forward(input: Tensor, vertical: Tensor, horizontal: Tensor,
                     offset_x: Tensor, offset_y: Tensor, mask: Tensor) -> Tensor:
    """Forward kernel launch (no autograd). Shapes as :func:`dsepconv`."""
    B, C, K, H, W = check_dsepconv_args(input, vertical, horizontal, offset_x, offset_y, mask)
    out = torch.empty((B, C, H, W), dtype=input.dtype, device=input.device)
    n = B * H * W
    if n == 0 or C == 0:
        return out.zero_()
    heads = [t.contiguous() for t in (vertical, horizontal, offset_x, offset_y, mask)]
    _dsepconv_fwd_kernel[_grid_nc(n, C)](input, *heads, out, n, C, H, W, input.shape[2], input.shape[3],
                                         *input.stride(), K=K, BLOCK_P=BLOCK_P, NC=_nc(C), num_warps=NUM_WARPS)
    return out


def dsepconv_backward(grad_out: Tensor, input: Tensor, vertical: Tensor, horizontal: Tensor,
                      offset_x: Tensor, offset_y: Tensor, mask: Tensor, need_input: bool = True):
    """Grads of (input, vertical, horizontal, offset_x, offset_y, mask), in their dtypes.

    ``grad_out``: (B, C, H, W). The input grad is None when ``need_input`` is False.
    """
    B, C, K, H, W = check_dsepconv_args(input, vertical, horizontal, offset_x, offset_y, mask)
    Hin, Win = input.shape[2], input.shape[3]
    dev = input.device
    f32 = dict(dtype=torch.float32, device=dev)
    g_inp = torch.zeros((B, C, Hin, Win), **f32) if need_input else None
    g_vert = torch.zeros((B, K, H, W), **f32)
    g_horz = torch.zeros((B, K, H, W), **f32)
    g_offx = torch.zeros((B, K * K, H, W), **f32)
    g_offy = torch.zeros((B, K * K, H, W), **f32)
    g_mask = torch.zeros((B, K * K, H, W), **f32)
    n = B * H * W
    if n > 0 and C > 0:
        heads = [t.contiguous() for t in (vertical, horizontal, offset_x, offset_y, mask)]
        _dsepconv_bwd_kernel[_grid(n)](
            input, *heads, grad_out.contiguous(),
            g_inp if need_input else g_vert, g_vert, g_horz, g_offx, g_offy, g_mask,
            n, C, H, W, Hin, Win, *input.stride(),
            K=K, BLOCK_P=BLOCK_P, BLOCK_C=_block_c(C), NEED_INPUT=need_input, num_warps=NUM_WARPS)
    return (None if g_inp is None else g_inp.to(input.dtype), g_vert.to(vertical.dtype),
            g_horz.to(horizontal.dtype), g_offx.to(offset_x.dtype), g_offy.to(offset_y.dtype),
            g_mask.to(mask.dtype))


class DSepConvFunction(torch.autograd.Function):
    """Autograd wrapper: Triton forward, Triton backward (first order only)."""

    @staticmethod
    def forward(ctx, input, vertical, horizontal, offset_x, offset_y, mask):
        ctx.save_for_backward(input, vertical, horizontal, offset_x, offset_y, mask)
        return dsepconv_forward(input, vertical, horizontal, offset_x, offset_y, mask)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        grads = dsepconv_backward(grad_out, *saved, need_input=ctx.needs_input_grad[0])
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))


def dsepconv(input: Tensor, vertical: Tensor, horizontal: Tensor,
             offset_x: Tensor, offset_y: Tensor, mask: Tensor) -> Tensor:
    """Deformable separable convolution (Triton), same contract as ``dsepconv_reference``.

    Args:
        input: (B, C, H + K - 1, W + K - 1), padded frame, any strides.
        vertical, horizontal: (B, K, H, W); offset_x (rows), offset_y (columns), mask: (B, K*K, H, W).

    Returns:
        (B, C, H, W) in the dtype of ``input``; differentiable w.r.t. every argument.
    """
    tensors = (input, vertical, horizontal, offset_x, offset_y, mask)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return DSepConvFunction.apply(*tensors)
    return dsepconv_forward(*tensors)


def decoder_output(frame0: Tensor, frame1: Tensor,
                   vertical0: Tensor, horizontal0: Tensor, offset_x0: Tensor, offset_y0: Tensor,
                   vertical1: Tensor, horizontal1: Tensor, offset_x1: Tensor, offset_y1: Tensor,
                   mask: Tensor, residual: Tensor) -> Tensor:
    """Fused ``warp(pad(frame0), m) + warp(pad(frame1), 1 - m) + residual`` (Triton).

    Args:
        frame0, frame1: (B, C, H, W) unpadded frames (any strides).
        vertical*, horizontal*: (B, K, H, W); offset_x*, offset_y*, mask: (B, K*K, H, W).
        residual: (B, C, H, W).

    Returns:
        (B, C, H, W) in the dtype of ``frame0``, not clamped. With autograd, the replication
        pad is materialised and the differentiable :func:`dsepconv` is used twice.
    """
    args = (frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
            vertical1, horizontal1, offset_x1, offset_y1, mask, residual)
    K = vertical0.shape[1]
    p = (K - 1) // 2
    if torch.is_grad_enabled() and any(t.requires_grad for t in args):
        w0 = dsepconv(F.pad(frame0, (p, p, p, p), mode="replicate"), vertical0, horizontal0,
                      offset_x0, offset_y0, mask)
        w1 = dsepconv(F.pad(frame1, (p, p, p, p), mode="replicate"), vertical1, horizontal1,
                      offset_x1, offset_y1, 1.0 - mask)
        return (w0 + w1) + residual
    B, C, H, W = frame0.shape
    for name, t in (("frame1", frame1), ("residual", residual)):
        if tuple(t.shape) != (B, C, H, W):
            raise ValueError(f"decoder_output: {name} must have shape {(B, C, H, W)}, got {tuple(t.shape)}")
    # validates the heads against a (virtual) padded frame0
    check_dsepconv_args(frame0.new_empty((B, 0, H + 2 * p, W + 2 * p)),
                        vertical0, horizontal0, offset_x0, offset_y0, mask)
    check_dsepconv_args(frame1.new_empty((B, 0, H + 2 * p, W + 2 * p)),
                        vertical1, horizontal1, offset_x1, offset_y1, mask)
    out = torch.empty((B, C, H, W), dtype=frame0.dtype, device=frame0.device)
    n = B * H * W
    if n == 0 or C == 0:
        return out.zero_()
    heads = [t.contiguous() for t in (vertical0, horizontal0, offset_x0, offset_y0,
                                      vertical1, horizontal1, offset_x1, offset_y1, mask)]
    _decoder_output_kernel[_grid_nc(n, C)](frame0, frame1, *heads, residual, out, n, C, H, W,
                                           *frame0.stride(), *frame1.stride(), *residual.stride(),
                                           K=K, BLOCK_P=BLOCK_P, NC=_nc(C), num_warps=NUM_WARPS)
    return out
