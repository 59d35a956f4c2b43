"""Runtimes: implementations of the :class:`~.base.Backbone` seam under the pipeline.

* ``torch``: the eager PyTorch model (:class:`~.torch.TorchBackbone`);
* ``exported``: ``torch.export`` programs from an engine folder (:class:`~.exported.ExportedBackbone`);
* ``onnxruntime``: ONNX graphs run by ONNX Runtime (:class:`~.onnxruntime.OrtBackbone`);
* ``aoti``: AOTInductor packages from an engine folder (:class:`~.aoti.AotiBackbone`);
* ``tensorrt``: TensorRT engines from ``export/build_trt.py`` (:class:`~.tensorrt.TrtBackbone`).

:func:`load_backbone` makes one by name, as the command line's ``--runtime`` does.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import OptionError
from .base import Backbone
from .torch import TorchBackbone

__all__ = ["Backbone", "TorchBackbone", "RUNTIMES", "load_backbone", "as_backbone"]

RUNTIMES = ("torch", "exported", "onnxruntime", "aoti", "tensorrt")


def as_backbone(model_or_backbone) -> Backbone:
    """A :class:`Backbone` as is; an :class:`~ldmvfi_fast.models.ldmvfi.LDMVFI` wrapped in a
    :class:`TorchBackbone`."""
    from ..models.ldmvfi import LDMVFI

    if isinstance(model_or_backbone, LDMVFI):
        return TorchBackbone(model_or_backbone)
    if isinstance(model_or_backbone, Backbone):
        return model_or_backbone
    raise TypeError(f"expected an LDMVFI model or a Backbone, got {type(model_or_backbone).__name__}")


def load_backbone(runtime: str = "torch", *, ckpt=None, engines: str | Path | None = None, config=None,
                  use_ema: bool | None = None, device=None, dtype=None) -> Backbone:
    """Build the backbone of ``runtime``: ``torch`` loads ``ckpt``; ``exported``, ``onnxruntime`` and ``aoti``
    load the engine folder ``engines`` (and, when ``ckpt`` is given too, check they were made from it)."""
    import torch

    if runtime not in RUNTIMES:
        raise OptionError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "torch":
        from ..checkpoint import load_model

        return TorchBackbone(load_model(ckpt, config, use_ema=use_ema, device=device or "cpu",
                                        dtype=dtype or torch.float32))
    if engines is None:
        raise OptionError(f"the {runtime} runtime needs an engine folder (--engines DIR)")
    from ..export.manifest import read_manifest
    from .exported import ExportedBackbone

    expect = None
    if ckpt is not None:  # engines made from other weights are refused
        from ..checkpoint import load_model
        from ..export.manifest import weights_hash

        m = read_manifest(engines)
        model = load_model(ckpt, config, use_ema=False if m.get("unet_weights") == "raw" else use_ema)
        expect = weights_hash(model.to(getattr(torch, m["dtype"])))
    if runtime == "onnxruntime":
        from .onnxruntime import OrtBackbone

        bb = OrtBackbone.from_dir(engines, device=device, expect_weights_hash=expect)
    elif runtime == "aoti":
        from .aoti import AotiBackbone

        bb = AotiBackbone.from_dir(engines, device=device, expect_weights_hash=expect)
    elif runtime == "tensorrt":
        from .tensorrt import TrtBackbone

        bb = TrtBackbone.from_dir(engines, device=device, expect_weights_hash=expect)
    else:
        bb = ExportedBackbone.from_dir(engines, device=device, expect_weights_hash=expect)
    if dtype is not None and dtype != bb.dtype:
        raise OptionError(f"the engines in {engines} are {bb.dtype}; export them again for {dtype}")
    return bb
