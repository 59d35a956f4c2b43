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

__all__ = ["Backbone", "TorchBackbone", "RUNTIMES", "load_backbone", "as_backbone", "check_runtime_options"]

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


def check_runtime_options(runtime: str = "torch", *, engines: str | Path | None = None, device=None, dtype=None,
                          cli: bool = False):
    """``(device, dtype)`` a runtime will run in, checked before anything loads.

    The torch runtime runs ``dtype`` (default float32). An engine folder's dtype is its
    ``manifest.json``'s ``"dtype"``: ``dtype`` may be left out, and one that differs is refused.
    The pair is then checked by :func:`~ldmvfi_fast.checkpoint.check_device_dtype`
    (``device`` None: for torch ``cuda`` when visible, else ``cpu``; for engines the runtime's
    default: ``cuda`` for TensorRT, ``cpu`` for ONNX Runtime, the manifest's device for the others).

    Raises:
        OptionError: an unknown runtime, a missing engine folder, a dtype other than the
            engines', or a device/dtype pair that cannot run (the message says what works).
        EngineError: an engine folder without a valid manifest.
    """
    from ..checkpoint import DTYPE_NAMES, check_device_dtype

    if runtime not in RUNTIMES:
        raise OptionError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime != "torch":
        if engines is None:
            raise OptionError(f"the {runtime} runtime needs an engine folder (--engines DIR)")
        from ..export.manifest import read_manifest

        m = read_manifest(engines)
        have = m["dtype"]
        if have not in DTYPE_NAMES:
            raise OptionError(f"the engines in {engines} record dtype {have!r}, which ldmvfi_fast does not run")
        if dtype is not None:
            want = DTYPE_NAMES.get(dtype) if isinstance(dtype, str) else dtype
            if want != DTYPE_NAMES[have]:
                shown = str(dtype).replace("torch.", "")
                flag = "--dtype" if cli else "dtype"
                raise OptionError(f"the engines in {engines} are {have} (their manifest.json), not {shown}: leave "
                                  f"out {flag} (it is read from the folder) or export them again for {shown}")
        dtype = have
        if device is None:  # the runtime's own default
            device = {"tensorrt": "cuda", "onnxruntime": "cpu"}.get(runtime, m.get("device", "cpu"))
    return check_device_dtype(device, dtype, cli=cli)


def load_backbone(runtime: str = "torch", *, ckpt=None, engines: str | Path | None = None, config=None,
                  use_ema: bool | None = None, device=None, dtype=None) -> Backbone:
    """Build the backbone of ``runtime``: ``torch`` loads ``ckpt``; ``exported``, ``onnxruntime`` and ``aoti``
    load the engine folder ``engines`` (and, when ``ckpt`` is given too, check they were made from it).

    ``device`` and ``dtype`` are checked first (:func:`check_runtime_options`); an engine folder's
    dtype is read from its manifest (``dtype`` may be left out). ``device`` None: ``cpu`` for
    the torch runtime."""
    import torch

    if runtime == "torch" and device is None:
        device = "cpu"
    device, dtype = check_runtime_options(runtime, engines=engines, device=device, dtype=dtype)
    if runtime == "torch":
        from ..checkpoint import load_model

        return TorchBackbone(load_model(ckpt, config, use_ema=use_ema, device=device, dtype=dtype))
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
    return bb
