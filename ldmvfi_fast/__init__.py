"""ldmvfi_fast: fast, faithful inference for LDMVFI (latent diffusion video frame interpolation).

Quick start::

    from ldmvfi_fast import load_model, Interpolator
    model = load_model("ldmvfi-vqflow-f32-c256-concat_max.ckpt", device="cuda")
    mid = Interpolator(model, steps=200, eta=1.0).interpolate(frame0, frame1, seed=0)

The pipeline talks to a :class:`Backbone` (``encode`` / ``denoise`` / ``decode``): the eager
model (:class:`TorchBackbone`, what ``Interpolator(model)`` wraps), exported programs
(:class:`ExportedBackbone`, ``load_backbone("exported", engines=DIR)``) or any other runtime.
Every user error is an :class:`LdmvfiError`.
"""
from __future__ import annotations

import logging

from .checkpoint import checkpoint_info, load_model
from .config import LDMVFIConfig, official_config, tiny_config
from .errors import (CheckpointError, ConfigError, EngineError, InputError, LdmvfiError, MediaError, OptionError,
                     PaddingError)
from .models.ldmvfi import LDMVFI
from .ops import use_backend
from .padding import pad_amounts, padded_size, reflect_pad
from .pipeline import Encoded, Interpolator
from .runtime import Backbone, TorchBackbone, load_backbone
from .runtime.exported import ExportedBackbone
from .sampling import SAMPLERS, register_sampler

__version__ = "0.1.0"
__all__ = ["load_model", "checkpoint_info", "Interpolator", "Encoded", "LDMVFI", "LDMVFIConfig", "official_config",
           "tiny_config", "Backbone", "TorchBackbone", "ExportedBackbone", "load_backbone", "use_backend",
           "pad_amounts", "padded_size", "reflect_pad", "SAMPLERS", "register_sampler", "LdmvfiError",
           "CheckpointError", "ConfigError", "InputError", "PaddingError", "MediaError", "OptionError", "EngineError",
           "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
