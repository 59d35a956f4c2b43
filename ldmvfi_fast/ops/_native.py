"""The ``native`` backend: the compiled extension ``ldmvfi_fast._C`` (sources in ``csrc/``).

Importing ``ldmvfi_fast._C`` registers the ops ``torch.ops.ldmvfi_fast.*`` (C++
``TORCH_LIBRARY``): C++ kernels for CPU tensors, CUDA kernels when the extension was built
with CUDA, and the autograd of ``dsepconv``. This module adds:

* fake (meta) kernels of all four ops, so ``torch.compile`` / ``torch.export`` can trace
  them (registered only when the extension loaded);
* :data:`PROVIDER`, the dispatch provider (protocol in :mod:`._dispatch`): ``check`` says
  why a call cannot run natively (extension not built, no kernel for the device, dtype,
  shape limits of :data:`.limits.MAXVIT_NATIVE`, gradients needed from a forward-only kernel); ``get`` returns a callable
  with the reference's signature.

A missing extension is not an error: ``check`` refuses every call with the reason and the
dispatcher falls back to Triton or the reference.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch
from torch import Tensor

from .decoder_output_ref import decoder_output_reference
from .dsepconv_ref import check_dsepconv_args
from .limits import MAXVIT_NATIVE
from .maxvit_ref import MODES, check_attention_args

log = logging.getLogger(__name__)

__all__ = ["PROVIDER", "LOAD_ERROR", "has_kernel", "dsepconv", "decoder_output", "maxvit_attention"]

NAMESPACE = "ldmvfi_fast"
OPS = ("dsepconv", "decoder_output", "maxvit_attention")
#: dtypes of the kernels per dispatch key
DTYPES = {"CPU": (torch.float32, torch.float64), "CUDA": (torch.float32, torch.float16, torch.bfloat16)}
#: ops whose native kernels are forward only (no autograd formula)
FORWARD_ONLY = ("decoder_output", "maxvit_attention")

try:
    from .. import _C  # noqa: F401  (loading it registers torch.ops.ldmvfi_fast.*)
    LOAD_ERROR: str | None = None
except Exception as exc:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def has_kernel(op: str, key: str) -> bool:
    """Whether the extension registered a ``key`` ("CPU", "CUDA") kernel for ``ldmvfi_fast::op``."""
    if LOAD_ERROR is not None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", key)
    except RuntimeError:  # op not registered at all
        return False


# ----------------------------------------------------------------------------- fake kernels
def _register_fakes() -> None:
    @torch.library.register_fake(f"{NAMESPACE}::dsepconv")
    def _dsepconv_fake(input, vertical, horizontal, offset_x, offset_y, mask):
        torch._check(input.dim() == 4 and vertical.dim() == 4,
                     lambda: "dsepconv: input and vertical must be 4-D")
        K = vertical.shape[1]
        torch._check(input.shape[2] == vertical.shape[2] + K - 1 and input.shape[3] == vertical.shape[3] + K - 1,
                     lambda: "dsepconv: input must be the output size padded by K-1")
        return input.new_empty((input.shape[0], input.shape[1], vertical.shape[2], vertical.shape[3]))

    @torch.library.register_fake(f"{NAMESPACE}::dsepconv_backward")
    def _dsepconv_backward_fake(grad_out, input, vertical, horizontal, offset_x, offset_y, mask):
        return tuple(t.new_empty(t.shape) for t in (input, vertical, horizontal, offset_x, offset_y, mask))

    @torch.library.register_fake(f"{NAMESPACE}::decoder_output")
    def _decoder_output_fake(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
                             vertical1, horizontal1, offset_x1, offset_y1, mask, residual):
        torch._check(frame0.dim() == 4, lambda: "decoder_output: frame0 must be 4-D")
        return frame0.new_empty(frame0.shape)

    @torch.library.register_fake(f"{NAMESPACE}::maxvit_attention")
    def _maxvit_attention_fake(q, k, v, bias_table, window, grid, num_heads, scale):
        torch._check(q.dim() == 4, lambda: "maxvit_attention: q must be (B, H, W, C)")
        return q.new_empty(q.shape)


if LOAD_ERROR is None:
    _register_fakes()


# ----------------------------------------------------------------------------- callables
def dsepconv(input: Tensor, vertical: Tensor, horizontal: Tensor, offset_x: Tensor, offset_y: Tensor,
             mask: Tensor) -> Tensor:
    """``torch.ops.ldmvfi_fast.dsepconv``; shapes as :func:`.dsepconv_ref.dsepconv_reference`.

    Differentiable (C++ autograd through ``dsepconv_backward``).
    """
    check_dsepconv_args(input, vertical, horizontal, offset_x, offset_y, mask)
    return torch.ops.ldmvfi_fast.dsepconv(input, vertical, horizontal, offset_x, offset_y, mask)


def decoder_output(frame0: Tensor, frame1: Tensor, vertical0: Tensor, horizontal0: Tensor, offset_x0: Tensor,
                   offset_y0: Tensor, vertical1: Tensor, horizontal1: Tensor, offset_x1: Tensor,
                   offset_y1: Tensor, mask: Tensor, residual: Tensor, dsepconv=None) -> Tensor:
    """``torch.ops.ldmvfi_fast.decoder_output`` (fused, forward only); shapes as the reference.

    ``dsepconv``: as in the reference; when given, the unfused reference composition with
    that implementation is used instead of the fused kernel.
    """
    args = (frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
            vertical1, horizontal1, offset_x1, offset_y1, mask, residual)
    if dsepconv is not None:
        return decoder_output_reference(*args, dsepconv=dsepconv)
    return torch.ops.ldmvfi_fast.decoder_output(*args)


def maxvit_attention(q: Tensor, k: Tensor, v: Tensor, bias_table: Tensor, window: int, mode: str,
                     num_heads: int, scale: float | None = None) -> Tensor:
    """``torch.ops.ldmvfi_fast.maxvit_attention`` (forward only); ``mode`` -> ``grid`` bool."""
    check_attention_args(q, k, v, bias_table, window, mode, num_heads)
    if scale is None:
        scale = (q.shape[-1] // num_heads) ** -0.5
    return torch.ops.ldmvfi_fast.maxvit_attention(q, k, v, bias_table, int(window), mode == "grid",
                                                  int(num_heads), float(scale))


def _cuda_size_refusal(op: str, tensors: Sequence[Tensor]) -> str | None:
    """The CUDA DSepConv kernels use 32-bit offsets inside a (batch, 4-channel chunk):
    K*K*H*W and 4*(H+K-1)*(W+K-1) must stay below 2^31 (csrc/kernels/dsepconv.cuh)."""
    heads = tensors[1] if op == "dsepconv" else tensors[2]  # vertical: (B, K, H, W)
    if heads.dim() != 4:
        return None  # the op's own checks report malformed shapes
    K, H, W = heads.shape[1:]
    if K * K * H * W >= 2 ** 31 or 4 * (H + K - 1) * (W + K - 1) >= 2 ** 31:
        return (f"frame {H}x{W} with K={K} exceeds the CUDA kernel's 32-bit offsets "
                "(K*K*H*W and 4*(H+K-1)*(W+K-1) must be below 2^31)")
    return None


# ----------------------------------------------------------------------------- provider
class _Native:
    name = "native"
    _impl: dict[str, Callable] = {"dsepconv": dsepconv, "decoder_output": decoder_output,
                                  "maxvit_attention": maxvit_attention}

    def check(self, op: str, tensors: Sequence[Tensor], **kw) -> str | None:
        if LOAD_ERROR is not None:
            return (f"extension ldmvfi_fast._C not built or not loadable ({LOAD_ERROR}); build it with "
                    "`pip install --no-build-isolation .` or `python setup.py build_ext --inplace`")
        if op not in self._impl:
            return f"no native op {op!r}"
        tensors = [t for t in tensors if isinstance(t, Tensor)]
        if not tensors:
            return "no tensor arguments"
        dev = tensors[0].device
        if any(t.device != dev for t in tensors):
            return "tensors on different devices"
        if op == "maxvit_attention" and dev.type != "cuda":
            return (f"the {dev.type} kernel of maxvit_attention is a correctness fallback (for opcheck and C++ "
                    "callers); the reference's batched matmuls are faster on CPU")
        key = {"cpu": "CPU", "cuda": "CUDA"}.get(dev.type)
        if key is None or not has_kernel(op, key):
            extra = " (extension built without CUDA)" if key == "CUDA" else ""
            return f"no {key or dev.type} kernel for {op}{extra}"
        dtype = tensors[0].dtype
        same = tensors
        if op == "maxvit_attention" and len(tensors) == 4:
            # the bias table may be float32 under a bf16/fp16 q (autocast, half models): the
            # glue converts it (CUDA: to float32, the kernels' bias type; CPU: to q's dtype)
            same, table = tensors[:3], tensors[3]
            if not table.is_floating_point():
                return f"bias table dtype {table.dtype} is not floating"
        if any(t.dtype != dtype for t in same):
            return "mixed dtypes: " + ", ".join(sorted({str(t.dtype) for t in same}))
        if dtype not in DTYPES[key]:
            return f"dtype {dtype} not supported on {key} (supported: {', '.join(map(str, DTYPES[key]))})"
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if needs_grad:
            if op in FORWARD_ONLY:
                return f"{op} kernel is forward only and gradients are required"
            if not has_kernel(f"{op}_backward", key):
                return f"no {key} kernel for {op}_backward and gradients are required"
        if key == "CUDA" and op in ("dsepconv", "decoder_output"):
            reason = _cuda_size_refusal(op, tensors)
            if reason is not None:
                return reason
        if op == "maxvit_attention":
            window, mode, num_heads = kw.get("window"), kw.get("mode"), kw.get("num_heads")
            if mode not in MODES:
                return f"mode {mode!r} not in {MODES}"
            q = tensors[0]
            if not num_heads or q.dim() != 4 or q.shape[-1] % num_heads:
                return f"channels {tuple(q.shape)[-1:]} not divisible by num_heads={num_heads}"
            reason = MAXVIT_NATIVE.refusal(window, q.shape[-1] // num_heads)
            if reason is not None:
                return reason
        return None

    def get(self, op: str) -> Callable:
        return self._impl[op]


PROVIDER = _Native()
