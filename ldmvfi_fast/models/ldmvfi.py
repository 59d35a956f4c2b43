"""The whole LDMVFI model: first-stage autoencoder, denoising U-Net, training schedule.

This module computes on frames already padded to a supported size; padding, cropping,
sampling loops and video handling live in :mod:`ldmvfi_fast.pipeline`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import LDMVFIConfig
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

    @property
    def schedule(self) -> DiffusionSchedule:
        return DiffusionSchedule({n: getattr(self, n) for n in SCHEDULE_BUFFERS})

    @property
    def latent_factor(self) -> int:
        return self.cfg.autoencoder.factor

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(B, 3, H, W) padded frames in [-1, 1] -> (latent (B, 3, H/32, W/32), 5 feature maps)."""
        return self.first_stage.encode(frames)

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predicted noise for latent x_t (B, 3, h, w), timesteps t (B,), cond = cat(z0, z1) (B, 6, h, w)."""
        return self.unet(torch.cat([x_t, cond], dim=1), t)

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor,
               quantize: bool = True) -> Tensor:
        """Sampled latent -> (B, 3, H, W) middle frame at the padded size (not clamped)."""
        return self.first_stage.decode(z / self.cfg.diffusion.scale_factor, phi0, phi1, frame0, frame1,
                                       quantize=quantize)
