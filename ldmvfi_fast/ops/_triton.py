"""The Triton backend provider (``PROVIDER``, name ``"triton"``).

Importing this module never imports ``triton``: the kernels (:mod:`.triton_kernels`) are
imported on the first call that :meth:`_Triton.check` accepts, so a missing or broken
Triton is a refusal with a reason, not an ImportError.

Refusals (each with its reason, logged once by :mod:`._dispatch`):

* ``triton`` not installed, or its import fails;
* CPU tensors without ``TRITON_INTERPRET=1`` (read through :mod:`ldmvfi_fast._env`), or CPU
  tensors when the kernels were already imported without it (``triton.jit`` decides at
  import time whether a kernel is interpreted); devices other than CUDA and CPU;
* storage dtypes other than float32 / float16 / bfloat16; tensors whose element offsets
  do not fit in int32;
* ``maxvit_attention``: window or head_dim outside :data:`.limits.MAXVIT_TRITON`, q/k/v of
  different dtypes, or autograd needed (the attention kernel is forward-only).

``dsepconv`` has a Triton backward (autograd works); ``decoder_output`` with autograd pads
the frames and uses the differentiable Triton ``dsepconv`` twice.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Sequence

import torch
from torch import Tensor

from .. import _env
from .limits import MAXVIT_TRITON

__all__ = ["PROVIDER"]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INT32_MAX = 2 ** 31 - 1
_OPS = ("dsepconv", "decoder_output", "maxvit_attention")


def _max_offset(t: Tensor) -> int:
    """Largest element offset a kernel may form for ``t`` (its storage extent)."""
    if t.numel() == 0:
        return 0
    return max(t.numel() - 1, sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())))


class _Triton:
    name = "triton"

    def __init__(self) -> None:
        self._kernels = None
        self._load_error: str | None = None
        self._installed: bool | None = None

    def _is_installed(self) -> bool:
        if self._installed is None:
            self._installed = importlib.util.find_spec("triton") is not None
        return self._installed

    def _load(self) -> str | None:
        """Import the kernels once; None on success, else why it failed."""
        if self._kernels is None and self._load_error is None:
            try:
                self._kernels = importlib.import_module(".triton_kernels", __package__)
            except Exception as exc:  # broken triton install, no driver, ...
                self._load_error = f"cannot import the Triton kernels: {type(exc).__name__}: {exc}"
        return self._load_error

    def check(self, op: str, tensors: Sequence[Tensor], **kw) -> str | None:
        if not self._is_installed():
            return "triton is not installed (pip install triton)"
        if op not in _OPS:
            return f"no Triton kernel for {op!r}"
        if self._load_error is not None:
            return self._load_error
        if not tensors:
            return "no tensor arguments"
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            return f"tensors on several devices: {sorted(str(d) for d in devices)}"
        device = next(iter(devices))
        if device.type == "cpu":
            if not _env.triton_interpret():
                return (f"CPU tensors need the Triton interpreter: set {_env.TRITON_INTERPRET_VAR}=1 "
                        "before triton is imported")
            if self._kernels is not None and not self._kernels.INTERPRETED:
                return (f"the Triton kernels were imported without {_env.TRITON_INTERPRET_VAR}=1 "
                        "and cannot run on CPU tensors in this process")
        elif device.type != "cuda":
            return f"device type {device.type!r} is not supported (CUDA, or CPU with {_env.TRITON_INTERPRET_VAR}=1)"
        for t in tensors:
            if t.dtype not in DTYPES:
                return f"dtype {t.dtype} is not supported (float32, float16, bfloat16)"
            if _max_offset(t) > _INT32_MAX:
                return f"tensor of shape {tuple(t.shape)} is too large for int32 indexing"
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if op == "maxvit_attention":
            reason = self._check_attention(tensors, needs_grad, **kw)
            if reason is not None:
                return reason
        return self._load()

    @staticmethod
    def _check_attention(tensors: Sequence[Tensor], needs_grad: bool, window=None, mode=None,
                         num_heads=None, **_) -> str | None:
        if not MAXVIT_TRITON.window_ok(window):
            return MAXVIT_TRITON.refusal(window, MAXVIT_TRITON.head_dim_multiple)
        if mode not in ("block", "grid"):
            return f"mode {mode!r} is not 'block' or 'grid'"
        q = tensors[0]
        if q.dim() != 4 or not isinstance(num_heads, int) or num_heads <= 0 or q.shape[-1] % num_heads:
            return f"q of shape {tuple(q.shape)} cannot be split into {num_heads} heads"
        reason = MAXVIT_TRITON.refusal(window, q.shape[-1] // num_heads)
        if reason is not None:
            return reason
        if len({t.dtype for t in tensors[:3]}) > 1:
            return "q, k and v must share one dtype"
        if needs_grad:
            return "autograd needed but the Triton maxvit_attention kernel has no backward"
        return None

    def get(self, op: str) -> Callable:
        reason = self._load()
        if reason is not None:
            raise RuntimeError(reason)
        return self._kernels.IMPLS[op]


PROVIDER = _Triton()
