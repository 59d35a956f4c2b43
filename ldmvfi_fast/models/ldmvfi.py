"""The whole LDMVFI model: first-stage autoencoder, denoising U-Net, training schedule.

This module computes on frames already padded to a supported size; padding, cropping,
sampling loops and video handling live in :mod:`ldmvfi_fast.pipeline`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import precision
from ..config import LDMVFIConfig
from ..parameterization import convert, to_x0
from ..sampling import SCHEDULE_BUFFERS, DiffusionSchedule, make_beta_schedule
from .autoencoder import VQFlowNet
from .unet import UNet


class LDMVFI(nn.Module):
    """LDMVFI inference model.

    Attributes:
        first_stage: :class:`VQFlowNet` (checkpoint prefix ``first_stage_model.``; also the
            conditioning encoder).
        unet: :class:`UNet` (``model.diffusion_model.`` or the EMA copy ``model_ema.``).
        schedule buffers: ``betas``, ``alphas_cumprod``, ... (T,) float32, as in the checkpoint.
    """

    def __init__(self, cfg: LDMVFIConfig):
        super().__init__()
        self.cfg = cfg
        self.first_stage = VQFlowNet(cfg.autoencoder)
        self.unet = UNet(cfg.unet)
        d = cfg.diffusion
        sched = DiffusionSchedule.from_betas(make_beta_schedule(d.beta_schedule, d.timesteps, d.linear_start,
                                                                d.linear_end))
        for name in SCHEDULE_BUFFERS:
            self.register_buffer(name, sched.buffers[name])
        self.unet_weights = "ema"  # set by the loader: which U-Net weights were loaded
        #: the distillation record of a student checkpoint (see :mod:`ldmvfi_fast.distill.student`),
        #: None for a teacher; set by the loader
        self.distillation: dict | None = None

    @property
    def schedule(self) -> DiffusionSchedule:
        return DiffusionSchedule({n: getattr(self, n) for n in SCHEDULE_BUFFERS})

    @property
    def latent_factor(self) -> int:
        return self.cfg.autoencoder.factor

    @property
    def dtype(self) -> torch.dtype:
        """The floating type of the weights (the compute precision)."""
        return self.first_stage.quant_conv.weight.dtype

    def _io(self, t: Tensor) -> Tensor:
        """A sub-model's output as returned: float32 under half (precision island ``io``)."""
        return t.float() if precision.is_half(t.dtype) and precision.keeps_fp32("io") else t

    # Inputs of encode / eps / decode may be float32 at any precision (island "io"): each
    # sub-model casts them where its first layer needs the weights' dtype; the frames reach
    # the decoder's output stage uncast (island "dsepconv").
    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, 3, H, W) padded frames in [-1, 1] -> (latent (B, 3, H/32, W/32), 5 feature maps)."""
        z, phi = self.first_stage.encode(frames)
        return self._io(z), [self._io(p) for p in phi]

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predicted noise for latent x_t (B, 3, h, w), timesteps t (B,), cond = cat(z0, z1) (B, 6, h, w)."""
        return self._io(self.unet(torch.cat([x_t, cond], dim=1).to(self.dtype), t))

    @property
    def prediction(self) -> str:
        """What :meth:`denoise` returns: ``eps`` (teacher), or the student's ``v`` / ``x0``."""
        rec = self.distillation
        return "eps" if rec is None else rec["prediction"]

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The model's output of type :attr:`prediction` (B, 3, h, w).

        A teacher returns :meth:`eps` unchanged (bit-identical). A student applies its
        record: the raw U-Net output means ``record["unet_output"]``; with a ``boundary``
        entry (consistency students) the output is ``c_skip(t) x_t + c_out(t) x0(raw)``.
        """
        raw = self.eps(x_t, t, cond)
        rec = self.distillation
        if rec is None:
            return raw
        return student_output(raw, x_t, t, self.alphas_cumprod, rec)

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor,
               quantize: bool = True) -> Tensor:
        """Sampled latent -> (B, 3, H, W) middle frame at the padded size (not clamped)."""
        return self._io(self.first_stage.decode(z / self.cfg.diffusion.scale_factor, phi0, phi1, frame0, frame1,
                                                quantize=quantize))


# ---------------------------------------------------------------------------------------------
# distilled students: what their U-Net output means (shared by the loader, the runtime and the
# distillation trainer, so every consumer applies the same scaling)


def boundary_scalings(t: Tensor, sigma_data: float = 0.5, timestep_scaling: float = 10.0) -> tuple[Tensor, Tensor]:
    """Consistency models' boundary-condition scalings (latent consistency models' form):
    ``c_skip = s_d^2 / ((k t)^2 + s_d^2)``, ``c_out = k t / sqrt((k t)^2 + s_d^2)``, both (B,) float32;
    ``c_skip(0) = 1``, ``c_out(0) = 0``, so the student is the identity at t = 0."""
    s = t.to(torch.float32) * timestep_scaling
    d = s * s + sigma_data ** 2
    return sigma_data ** 2 / d, s / d.sqrt()


def x0_from(raw: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, kind: str) -> Tensor:
    """The clean latent implied by an ``eps``, ``v`` or ``x0`` output at timesteps t (B,), float32
    (:func:`ldmvfi_fast.parameterization.to_x0`)."""
    return to_x0(raw, x_t, t, alphas_cumprod, kind)


def student_output(raw: Tensor, x_t: Tensor, t: Tensor, alphas_cumprod: Tensor, record: dict) -> Tensor:
    """A student's output of type ``record["prediction"]`` from its raw U-Net output."""
    kind = record.get("unet_output", record["prediction"])
    b = record.get("boundary")
    if b is None:
        if kind == record["prediction"]:
            return raw
        x0 = x0_from(raw, x_t, t, alphas_cumprod, kind)
    else:
        c_skip, c_out = boundary_scalings(t, b["sigma_data"], b["timestep_scaling"])
        shape = (-1,) + (1,) * (x_t.dim() - 1)
        x0 = c_skip.view(shape) * x_t.float() + c_out.view(shape) * x0_from(raw, x_t, t, alphas_cumprod, kind)
    pred = record["prediction"]
    if pred == "x0":
        return x0.to(x_t.dtype)
    return convert(x0, x_t, t, alphas_cumprod, "x0", pred).to(x_t.dtype)
