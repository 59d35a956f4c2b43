"""ldmvfi_fast: fast, faithful inference for LDMVFI (latent diffusion video frame interpolation).

Quick start::

    from ldmvfi_fast import load_model, Interpolator
    model = load_model("ldmvfi-vqflow-f32-c256-concat_max.ckpt", device="cuda")
    mid = Interpolator(model, steps=200, eta=1.0).interpolate(frame0, frame1, seed=0)
"""
from __future__ import annotations

import logging

from .checkpoint import CheckpointError, checkpoint_info, load_model
from .config import LDMVFIConfig, official_config, tiny_config
from .models.ldmvfi import LDMVFI
from .pipeline import InputError, Interpolator, PaddingError

__version__ = "0.1.0"
__all__ = ["load_model", "checkpoint_info", "Interpolator", "LDMVFI", "LDMVFIConfig", "official_config",
           "tiny_config", "CheckpointError", "InputError", "PaddingError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
