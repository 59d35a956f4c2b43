"""Custom operations of LDMVFI with pluggable backends.

Public entry points (shapes in each docstring):

* :func:`dsepconv` - deformable separable convolution;
* :func:`decoder_output` - the decoder's two warps + mask blend + residual;
* :func:`maxvit_attention` - block / grid windowed attention with relative-position bias.

Each call goes through :func:`ldmvfi_fast.ops._dispatch.pick_backend`, which picks the
compiled kernel, then Triton, then the pure-PyTorch reference, and logs why a backend
was skipped. Forcing a backend: an op's ``backend=`` argument, or a scope
``with use_backend("reference"): ...`` (both strict: an impossible request raises);
``LDMVFI_FAST_BACKEND`` sets only the default, as a preference; :func:`current_backend`
says what is asked for (see :mod:`._dispatch`). The references live beside this file (``*_ref.py``).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from torch import Tensor

from ._dispatch import BACKENDS, available_backends, current_backend, pick_backend, use_backend
from .decoder_output_ref import decoder_output_reference
from .dsepconv_ref import dsepconv_reference
from .maxvit_ref import maxvit_attention_reference

__all__ = ["dsepconv", "decoder_output", "maxvit_attention", "dsepconv_reference",
           "decoder_output_reference", "maxvit_attention_reference", "pick_backend",
           "available_backends", "BACKENDS", "use_backend", "current_backend", "export_formulation"]

#: the innermost export_formulation() scope: None, "decompose" or "domain"
_EXPORT_FORM: contextvars.ContextVar[str | None] = contextvars.ContextVar("ldmvfi_fast_export_formulation",
                                                                          default=None)
EXPORT_FORMULATIONS = ("decompose", "domain")


@contextlib.contextmanager
def export_formulation(mode: str | None = "decompose") -> Iterator[None]:
    """Scope for tracing exports: :func:`dsepconv` and :func:`decoder_output` (without
    ``backend=``) skip dispatching and run

    * ``"decompose"``: the vectorised pure-PyTorch formulation of :mod:`.dsepconv_export`
      (the reference's results to float rounding, and small graphs when traced);
    * ``"domain"``: the ops ``torch.ops.ldmvfi_fast.*`` themselves, so a trace keeps them as
      single nodes (needs the compiled extension; its fake kernels serve tracing at any dtype);
    * None: the usual dispatch.

    Per thread / task like :func:`use_backend`.
    """
    if mode not in (None, *EXPORT_FORMULATIONS):
        raise ValueError(f"export formulation must be one of {EXPORT_FORMULATIONS} or None, got {mode!r}")
    if mode == "domain":
        from ._native import LOAD_ERROR

        if LOAD_ERROR is not None:
            raise RuntimeError(f"the 'domain' export formulation needs the compiled extension: {LOAD_ERROR}")
    token = _EXPORT_FORM.set(mode)
    try:
        yield
    finally:
        _EXPORT_FORM.reset(token)


def _formulated(op: str):
    """The implementation of ``op`` in the current export_formulation() scope, or None."""
    form = _EXPORT_FORM.get()
    if form == "decompose":
        from . import dsepconv_export

        return getattr(dsepconv_export, f"{op}_vectorized")
    if form == "domain":
        import torch

        return getattr(torch.ops.ldmvfi_fast, op)
    return None


def dsepconv(input: Tensor, vertical: Tensor, horizontal: Tensor, offset_x: Tensor, offset_y: Tensor,
             mask: Tensor, *, backend: str | None = None) -> Tensor:
    """Deformable separable convolution.

    Args:
        input: (B, C, H + K - 1, W + K - 1) frame padded by (K - 1) / 2.
        vertical, horizontal: (B, K, H, W) per-pixel 1-D kernels.
        offset_x: (B, K*K, H, W) row displacement per tap; offset_y: column displacement.
        mask: (B, K*K, H, W) per-tap modulation.
        backend: force ``"cuda"``, ``"cpp"``, ``"triton"`` or ``"reference"`` (default: the
            :func:`use_backend` scope, else auto with ``LDMVFI_FAST_BACKEND`` as a preference).

    Returns:
        (B, C, H, W) in the dtype of ``input``.
    """
    impl = _formulated("dsepconv") if backend is None else None
    if impl is not None:
        return impl(input, vertical, horizontal, offset_x, offset_y, mask)
    impl = pick_backend("dsepconv", (input, vertical, horizontal, offset_x, offset_y, mask), backend)
    return impl(input, vertical, horizontal, offset_x, offset_y, mask)


def decoder_output(frame0: Tensor, frame1: Tensor,
                   vertical0: Tensor, horizontal0: Tensor, offset_x0: Tensor, offset_y0: Tensor,
                   vertical1: Tensor, horizontal1: Tensor, offset_x1: Tensor, offset_y1: Tensor,
                   mask: Tensor, residual: Tensor, *, backend: str | None = None) -> Tensor:
    """``warp(frame0, m) + warp(frame1, 1 - m) + residual`` (see :mod:`.decoder_output_ref`).

    Args:
        frame0, frame1: (B, 3, H, W) unpadded frames; heads (B, K or K*K, H, W);
        mask: (B, K*K, H, W); residual: (B, 3, H, W).

    Returns:
        (B, 3, H, W), not clamped.
    """
    args = (frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
            vertical1, horizontal1, offset_x1, offset_y1, mask, residual)
    impl = _formulated("decoder_output") if backend is None else None
    if impl is not None:
        return impl(*args)
    impl = pick_backend("decoder_output", args, backend)
    return impl(*args)


def maxvit_attention(q: Tensor, k: Tensor, v: Tensor, bias_table: Tensor, window: int, mode: str,
                     num_heads: int, scale: float | None = None, *, backend: str | None = None) -> Tensor:
    """MaxViT block/grid windowed attention on channel-last projections.

    Args:
        q, k, v: (B, H, W, C), C = num_heads * head_dim; H, W multiples of ``window``.
        bias_table: ((2*window - 1)^2, num_heads) relative-position bias.
        window: window size; mode: ``"block"`` or ``"grid"``; num_heads: heads.
        scale: softmax scale (default head_dim ** -0.5).
        backend: see :func:`dsepconv`.

    Returns:
        (B, H, W, C) attention output, heads merged, before the output projection.
    """
    if scale is None:
        scale = (q.shape[-1] // num_heads) ** -0.5
    impl = pick_backend("maxvit_attention", (q, k, v, bias_table), backend,
                        window=window, mode=mode, num_heads=num_heads)
    return impl(q, k, v, bias_table, window, mode, num_heads, scale)
