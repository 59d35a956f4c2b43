"""The seam under the pipeline: what :class:`~ldmvfi_fast.pipeline.Interpolator` needs from a model.

A :class:`Backbone` runs the three sub-models of LDMVFI on frames already padded to a
multiple of ``pad_unit``; the pipeline does everything else (padding, sampling loop, scene
cuts, cropping, clamping). The PyTorch model is one implementation
(:class:`~ldmvfi_fast.runtime.torch.TorchBackbone`); programs exported with ``torch.export``
are another (:class:`~ldmvfi_fast.runtime.exported.ExportedBackbone`); engines (ONNX Runtime,
AOTInductor, TensorRT) and distilled students plug in the same way, with no change to the
pipeline.

Contracts (B batch, Hp x Wp padded frame size, h = Hp / latent_factor, w likewise):

* ``encode(frames (B, 3, Hp, Wp) in [-1, 1]) -> (z (B, latent_channels, h, w), [phi_0 ... phi_{L-1}])``,
  the latent after ``quant_conv`` (not quantised) and one feature map per level (1/2 ... 1/32);
* ``denoise(x_t (B, C, h, w), t (B,) int64, cond (B, 2C, h, w)) -> (B, C, h, w)``, the model's
  output of type ``prediction`` (``eps`` for the teacher; ``v`` or ``x0`` for students);
* ``decode(z, phi0, phi1, frame0, frame1) -> (B, 3, Hp, Wp)``, padded, not clamped.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Backbone"]


@runtime_checkable
class Backbone(Protocol):
    """What the pipeline calls. Attributes:

    * ``name``: a short label for logs (``torch``, ``exported``, ...);
    * ``device``, ``dtype``: where the sub-models run and the floating type of their tensors;
    * ``pad_unit``: frames must be padded to multiples of this (256 for LDMVFI);
    * ``latent_factor``: frame size / latent size (32); ``latent_channels``: C (3);
    * ``alphas_cumprod``: (T,) float32, the training schedule every sampler builds from;
    * ``prediction``: ``eps``, ``v`` or ``x0``: what ``denoise`` returns.
    """
    name: str
    device: torch.device
    dtype: torch.dtype
    pad_unit: int
    latent_factor: int
    latent_channels: int
    alphas_cumprod: Tensor
    prediction: str

    def check_size(self, height: int, width: int, batch: int) -> None:
        """Raise :class:`~ldmvfi_fast.errors.InputError` (or ``EngineError``) when padded frames of
        this size cannot run (e.g. outside an engine's shape profile)."""

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]: ...

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor: ...

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor) -> Tensor: ...
