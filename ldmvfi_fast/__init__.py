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
import sys

from ._lazy import lazy_getattr

__version__ = "0.1.0"

#: public name -> the module that defines it; imported on first use (PEP 562), so
#: ``import ldmvfi_fast`` (and ``ldmvfi-fast --help``) does not import torch
_LAZY = {
    "load_model": "checkpoint", "checkpoint_info": "checkpoint",
    "LDMVFIConfig": "config", "official_config": "config", "tiny_config": "config",
    "CheckpointError": "errors", "ConfigError": "errors", "EngineError": "errors", "InputError": "errors",
    "LdmvfiError": "errors", "MediaError": "errors", "OptionError": "errors", "PaddingError": "errors",
    "LDMVFI": "models.ldmvfi", "use_backend": "ops",
    "pad_amounts": "padding", "padded_size": "padding", "reflect_pad": "padding",
    "Encoded": "pipeline", "Interpolator": "pipeline",
    "Backbone": "runtime", "TorchBackbone": "runtime", "load_backbone": "runtime",
    "ExportedBackbone": "runtime.exported",
    "SAMPLERS": "sampling", "register_sampler": "sampling",
}

__all__ = ["load_model", "checkpoint_info", "Interpolator", "Encoded", "LDMVFI", "LDMVFIConfig", "official_config",
           "tiny_config", "Backbone", "TorchBackbone", "ExportedBackbone", "load_backbone", "use_backend",
           "pad_amounts", "padded_size", "reflect_pad", "SAMPLERS", "register_sampler", "LdmvfiError",
           "CheckpointError", "ConfigError", "InputError", "PaddingError", "MediaError", "OptionError", "EngineError",
           "__version__"]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


class _TorchBeforeNativeOps:
    """``ldmvfi_fast._C`` (the compiled ops) links libtorch, found only once torch is imported;
    since this package no longer imports torch itself, ``import ldmvfi_fast._C`` imports torch first
    (then leaves the import to the normal finders)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == f"{__name__}._C":
            import torch  # noqa: F401  (loads libc10/libtorch for the extension)
        return None


if not any(type(f).__name__ == "_TorchBeforeNativeOps" for f in sys.meta_path):  # once, even on reload
    sys.meta_path.insert(0, _TorchBeforeNativeOps())


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


logging.getLogger(__name__).addHandler(logging.NullHandler())
