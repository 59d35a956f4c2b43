"""The PyTorch model (:class:`~ldmvfi_fast.models.ldmvfi.LDMVFI`) as a :class:`~.base.Backbone`."""
from __future__ import annotations

from torch import Tensor

from ..models.ldmvfi import LDMVFI

__all__ = ["TorchBackbone"]


class TorchBackbone:
    """Eager PyTorch. ``model`` is a loaded :class:`LDMVFI` on its device and dtype.

    The op backend of the custom ops (compiled, Triton or reference) is chosen per call by
    :mod:`ldmvfi_fast.ops` (or for a scope with :func:`ldmvfi_fast.ops.use_backend`).
    """

    name = "torch"

    def __init__(self, model: LDMVFI):
        if not isinstance(model, LDMVFI):
            raise TypeError(f"TorchBackbone wraps an LDMVFI model, got {type(model).__name__}")
        self.model = model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.pad_unit = model.cfg.min_pad_unit()
        self.latent_factor = model.latent_factor
        self.latent_channels = model.cfg.diffusion.channels
        self.alphas_cumprod = model.alphas_cumprod
        #: a student's distillation record (method, prediction, steps, timesteps, sampler...), None for a teacher
        self.distillation = getattr(model, "distillation", None)
        #: what :meth:`denoise` returns: ``eps`` for the teacher, the student's ``v`` / ``x0``
        self.prediction = model.prediction

    def check_size(self, height: int, width: int, batch: int) -> None:
        return None  # eager PyTorch runs any multiple of pad_unit

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.model.encode(frames)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self.model.denoise(x_t, t, cond)

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor,
               quantize: bool = True) -> Tensor:
        return self.model.decode(z, phi0, phi1, frame0, frame1, quantize=quantize)

    def __repr__(self) -> str:
        return f"TorchBackbone({self.model.cfg.name}, {self.device}, {self.dtype})"
