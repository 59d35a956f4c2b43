"""Runtimes: implementations of the :class:`~.base.Backbone` seam under the pipeline.

Which runtimes exist, what they are called, which class runs each and which options it takes is
the format registry's (:mod:`ldmvfi_fast.formats`); :func:`load_backbone` makes one by name, as
the command line's ``--runtime`` does, and :func:`check_runtime_options` checks a request before
anything loads.
"""
from __future__ import annotations

from pathlib import Path

from .. import formats
from ..errors import OptionError
from ..formats import RUNTIMES
from .base import Backbone
from .torch import TorchBackbone

__all__ = ["Backbone", "TorchBackbone", "RUNTIMES", "load_backbone", "as_backbone", "check_runtime_options"]


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

    The torch runtime runs ``dtype`` (default float32). An engine folder carries its dtype (its
    ``manifest.json``'s ``"dtype"``): ``dtype`` may be left out, and one that differs is refused
    at once, saying what the folder holds and what would work here. The pair is then checked by
    :func:`~ldmvfi_fast.checkpoint.check_device_dtype` (``device`` None: for torch ``cuda`` when
    visible, else ``cpu``; for engines the runtime's default device from the registry, else the
    manifest's).

    Raises:
        OptionError: an unknown runtime, a missing engine folder, a dtype other than the
            engines', or a device/dtype pair that cannot run (the message says what works).
        EngineError: an engine folder without a valid manifest.
    """
    from .. import dtypes
    from ..checkpoint import check_device_dtype

    fmt = formats.get(runtime)
    if not fmt.folder:
        return check_device_dtype(device, dtype, cli=cli)
    if engines is None:
        raise OptionError(f"the {runtime} runtime needs an engine folder (--engines DIR; made by {fmt.made_by})")
    from ..manifest import read_manifest

    m = read_manifest(engines)
    have = m["dtype"]
    if device is None:
        device = fmt.default_device or m.get("device", "cpu")
    if have not in dtypes.NAMES:
        raise OptionError(f"the engines in {engines} record dtype {have!r}, which ldmvfi_fast does not run")
    if dtype is not None and dtypes.canonical(dtype) != have:
        want = dtypes.canonical(dtype)
        flag = "--dtype" if cli else "dtype"
        try:  # could the asked dtype run here at all? then exporting again is a way
            check_device_dtype(device, want, cli=cli)
            again = f" or export them again in {want}"
        except OptionError as exc:
            again = f" ({want} cannot run here: {exc})"
        raise OptionError(f"the engines in {engines} are {have} (an engine folder carries its dtype, in its "
                          f"manifest.json), not {want}: leave out {flag}{again}")
    return check_device_dtype(device, have, cli=cli)


def load_backbone(runtime: str = "torch", *, ckpt=None, engines: str | Path | None = None, config=None,
                  use_ema: bool | None = None, device=None, dtype=None, options=None) -> Backbone:
    """Build the backbone of ``runtime`` (a name of :data:`ldmvfi_fast.formats.FORMATS`): ``torch``
    loads ``ckpt``; the others load the engine folder ``engines`` (and, when ``ckpt`` is given too,
    check they were made from it).

    ``device`` and ``dtype`` are checked first (:func:`check_runtime_options`); an engine folder's
    dtype is read from its manifest (``dtype`` may be left out). ``device`` None: ``cpu`` for
    the torch runtime. ``options``: the runtime's options (its dataclass, a dict or ``KEY=VALUE``
    strings; see :func:`ldmvfi_fast.formats.parse_options`)."""
    fmt = formats.get(runtime)
    opts = formats.parse_options(runtime, options)
    if not fmt.folder and device is None:
        device = "cpu"
    device, dtype = check_runtime_options(runtime, engines=engines if fmt.folder else None, device=device,
                                          dtype=dtype)
    from ..checkpoint import load_model

    if not fmt.folder:
        return fmt.backbone_class()(load_model(ckpt, config, use_ema=use_ema, device=device, dtype=dtype))
    from ..manifest import read_manifest, weights_hash

    expect = None
    if ckpt is not None:  # engines made from other weights are refused
        m = read_manifest(engines)
        model = load_model(ckpt, config, use_ema=False if m.get("unet_weights") == "raw" else use_ema)
        expect = weights_hash(model.to(dtype))
    kw = {"options": opts} if opts is not None else {}
    return fmt.backbone_class().from_dir(engines, device=device, expect_weights_hash=expect, **kw)
