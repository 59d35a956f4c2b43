"""Shape limits of the compiled and Triton kernels, written once.

The dispatch providers (:mod:`._native`, :mod:`._triton`) and the Triton wrapper check
calls against these objects; nothing else restates the numbers. The C++ sources keep
their own ``TORCH_CHECK`` / ``cudaErrorNotSupported`` checks (the library has C++ callers
and a C API) and must agree: ``tests/test_native_cpu.py`` runs the C++ check at the
boundaries on CPU (and on CUDA when there is a GPU) and reads the constants out of
``csrc/`` to compare them with these.

Where each limit comes from:

* :data:`MAXVIT_NATIVE`: ``csrc/ops/maxvit_attention.h`` (``window`` in [1, 8], shared by
  the CPU and CUDA kernels) and ``csrc/ops/cuda/maxvit_attention_cuda.cu`` /
  ``csrc/kernels/maxvit_attention.cuh`` (head_dim a multiple of 32: the block kernel
  streams q/k in 32-channel chunks, the w = 2 warp kernel gives each lane head_dim / 32
  channels). The CPU kernel has no head_dim limit, but the CPU path is not dispatched to
  (the reference is faster there).
* :data:`MAXVIT_TRITON`: ``triton_kernels/maxvit_attention.py`` (``tl.dot`` needs
  power-of-two tiles >= 16: head dims 32 .. 256 in chunks of <= 64 channels; windows 2
  and 8 are the ones the model uses and the tests cover).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MaxvitLimits", "MAXVIT_NATIVE", "MAXVIT_TRITON"]


@dataclass(frozen=True)
class MaxvitLimits:
    """Windows and head dims a maxvit_attention kernel accepts.

    Attributes:
        kernel: what the limits belong to (used in messages).
        max_window: largest window (tokens per window = window**2 <= max_window**2).
        windows: the only windows accepted, or None for every window in [1, max_window].
        head_dim_multiple: head_dim must be a positive multiple of this.
        head_dims: the only head dims accepted, or None for every multiple.
    """

    kernel: str
    max_window: int
    windows: tuple[int, ...] | None
    head_dim_multiple: int
    head_dims: tuple[int, ...] | None

    def window_ok(self, window) -> bool:
        if not isinstance(window, int) or isinstance(window, bool):
            return False
        return window in self.windows if self.windows is not None else 1 <= window <= self.max_window

    def head_dim_ok(self, head_dim: int) -> bool:
        if head_dim <= 0 or head_dim % self.head_dim_multiple:
            return False
        return self.head_dims is None or head_dim in self.head_dims

    def describe_windows(self) -> str:
        return f"windows {self.windows}" if self.windows is not None else f"windows 1..{self.max_window}"

    def describe_head_dims(self) -> str:
        if self.head_dims is not None:
            return f"head dims {self.head_dims}"
        return f"head dims that are multiples of {self.head_dim_multiple}"

    def refusal(self, window, head_dim: int) -> str | None:
        """None when the kernel accepts ``(window, head_dim)``, else the reason."""
        if not self.window_ok(window):
            return f"window {window} is not supported by the {self.kernel} ({self.describe_windows()})"
        if not self.head_dim_ok(head_dim):
            return f"head_dim {head_dim} is not supported by the {self.kernel} ({self.describe_head_dims()})"
        return None


MAXVIT_NATIVE = MaxvitLimits("native CUDA maxvit_attention kernel", max_window=8, windows=None,
                             head_dim_multiple=32, head_dims=None)
MAXVIT_TRITON = MaxvitLimits("Triton maxvit_attention kernel", max_window=8, windows=(2, 8),
                             head_dim_multiple=32, head_dims=(32, 64, 128, 256))
