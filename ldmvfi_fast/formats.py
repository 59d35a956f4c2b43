"""The engine-format registry: one entry per runtime, read by everything that names one.

Each :class:`EngineFormat` says what a runtime is called (``--runtime``, a manifest's
``runtime``), which ``ldmvfi-fast export --format`` makes its folders (if any), the files,
the exporter, the backbone class that runs it, its options (a dataclass) and its default device.
The command line's choices, :func:`ldmvfi_fast.runtime.load_backbone`, the exporters (the
``runtime`` they write), the backbone classes (the ``runtime`` they accept) and the benchmarks
all read this table; nothing else decides what a runtime is.

Code is named as ``"module:attribute"`` strings and imported only when used, so this module
imports neither torch nor :mod:`ldmvfi_fast.export` / :mod:`ldmvfi_fast.runtime` (``--help``
stays fast, and export and runtime never import each other through it).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from .errors import OptionError

__all__ = ["EngineFormat", "FORMATS", "RUNTIMES", "EXPORT_FORMATS", "get", "by_format", "for_module",
           "parse_options", "resolve_attr"]


@dataclass(frozen=True)
class EngineFormat:
    """One runtime and the engine folders it runs.

    Attributes:
        runtime: the name (``--runtime``, the manifest's ``runtime``).
        kind: words for messages ("ONNX graphs", ...).
        help: one line for ``--help``.
        backbone: ``"module:Class"`` of the :class:`~ldmvfi_fast.runtime.base.Backbone` that runs it.
        format: the ``ldmvfi-fast export --format`` that makes its folders (None: not made by ``export``).
        exporter: ``"module:function"`` that writes a folder (None for ``torch``).
        made_by: how a user makes a folder (for messages).
        suffix: the graph files' suffix.
        options: ``"module:Class"``, a dataclass of the runtime's options (None: it takes none).
        default_device: the device it runs on when none is asked for (None: the manifest's).
        folder: whether it runs an engine folder (``--engines``) rather than a checkpoint.
    """
    runtime: str
    kind: str
    help: str
    backbone: str
    format: str | None = None
    exporter: str | None = None
    made_by: str = ""
    suffix: str = ""
    options: str | None = None
    default_device: str | None = None
    folder: bool = True

    def files(self) -> dict[str, str]:
        """graph -> file name in a folder of this format."""
        return {g: f"{g}{self.suffix}" for g in ("encoder", "unet_step", "decoder")}

    def backbone_class(self):
        return resolve_attr(self.backbone)

    def exporter_function(self):
        if self.exporter is None:
            raise OptionError(f"the {self.runtime} runtime has no exporter")
        return resolve_attr(self.exporter)

    def options_class(self):
        return resolve_attr(self.options) if self.options else None

    def option_names(self) -> list[str]:
        """The names of the runtime's options (``--runtime-option KEY=VALUE``)."""
        import dataclasses as dc

        cls = self.options_class()
        return [f.name for f in dc.fields(cls)] if cls else []


FORMATS: dict[str, EngineFormat] = {f.runtime: f for f in (
    EngineFormat("torch", "the eager PyTorch model", "the eager model from --ckpt (default)",
                 "ldmvfi_fast.runtime.torch:TorchBackbone", folder=False),
    EngineFormat("exported", "exported engines", "torch.export programs (`ldmvfi-fast export`)",
                 "ldmvfi_fast.runtime.exported:ExportedBackbone", format="pt2",
                 exporter="ldmvfi_fast.export.pt2:export_pt2", made_by="ldmvfi-fast export", suffix=".pt2"),
    EngineFormat("onnxruntime", "ONNX engines", "ONNX graphs run by ONNX Runtime (`ldmvfi-fast export --format onnx`)",
                 "ldmvfi_fast.runtime.onnxruntime:OrtBackbone", format="onnx",
                 exporter="ldmvfi_fast.export.onnx:export_onnx", made_by="ldmvfi-fast export --format onnx",
                 suffix=".onnx", options="ldmvfi_fast.runtime_options:OrtOptions", default_device="cpu"),
    EngineFormat("aoti", "AOTInductor packages", "AOTInductor packages (`ldmvfi-fast export --format aoti`)",
                 "ldmvfi_fast.runtime.aoti:AotiBackbone", format="aoti",
                 exporter="ldmvfi_fast.export.aoti:build_aoti", made_by="ldmvfi-fast export --format aoti",
                 suffix=".pt2"),
    EngineFormat("tensorrt", "TensorRT engines", "TensorRT engines (export/build_trt.py; CUDA)",
                 "ldmvfi_fast.runtime.tensorrt:TrtBackbone", exporter="ldmvfi_fast.export.tensorrt:build_trt",
                 made_by="python export/build_trt.py ONNX_DIR", suffix=".engine",
                 options="ldmvfi_fast.runtime_options:TrtOptions", default_device="cuda"),
)}

#: every runtime's name, for choices
RUNTIMES = tuple(FORMATS)
#: ``ldmvfi-fast export --format`` names -> runtime
EXPORT_FORMATS = {f.format: f.runtime for f in FORMATS.values() if f.format}


def get(runtime: str) -> EngineFormat:
    """The entry of ``runtime``; :class:`OptionError` naming the runtimes otherwise."""
    try:
        return FORMATS[runtime]
    except (KeyError, TypeError):
        raise OptionError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}") from None


def by_format(fmt: str) -> EngineFormat:
    """The entry that ``ldmvfi-fast export --format fmt`` makes."""
    try:
        return FORMATS[EXPORT_FORMATS[fmt]]
    except (KeyError, TypeError):
        raise OptionError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}") from None


def for_module(module: str) -> EngineFormat:
    """The entry whose exporter or backbone lives in ``module`` (an exporter or a backbone
    class asks which runtime it writes or runs: ``for_module(__name__)``)."""
    hits = [f for f in FORMATS.values()
            if module in (f.backbone.partition(":")[0], (f.exporter or "").partition(":")[0])]
    if len(hits) != 1:
        raise LookupError(f"{module} is the exporter or backbone module of {len(hits)} formats, not 1")
    return hits[0]


def resolve_attr(ref: str) -> Any:
    """``"module:attr"`` -> the object (imports the module)."""
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


def _coerce(field: dataclasses.Field, text: str, runtime: str) -> Any:
    typ = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if "bool" in typ:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise OptionError(f"{runtime} option {field.name}={text!r}: expected 1/0 (true/false)")
    if "int" in typ:
        if not text.isdigit():
            raise OptionError(f"{runtime} option {field.name}={text!r}: expected a non-negative integer")
        return int(text)
    return text


def parse_options(runtime: str, items) -> Any:
    """The options dataclass of ``runtime`` from ``KEY=VALUE`` strings (a list, or one string
    joined with ``+``), a dict, or an instance; None when nothing is given. Unknown keys and bad
    values are :class:`OptionError` naming the runtime's options."""
    fmt = get(runtime)
    if items is None or items == [] or items == "" or items == {}:
        return None
    cls = fmt.options_class()
    if cls is None:
        raise OptionError(f"the {runtime} runtime takes no options (runtimes with options: "
                          f"{', '.join(f.runtime for f in FORMATS.values() if f.options)})")
    if isinstance(items, cls):
        return items
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if isinstance(items, dict):
        raw = dict(items)
    else:
        raw = {}
        for kv in ([p for p in items.split("+") if p] if isinstance(items, str) else items):
            k, eq, v = str(kv).partition("=")
            if not eq:
                raise OptionError(f"{runtime} option {kv!r}: write KEY=VALUE ({', '.join(fields)})")
            raw[k] = v
    values = {}
    for k, v in raw.items():
        if k not in fields:
            raise OptionError(f"unknown option {k!r} for runtime {runtime}: it takes {', '.join(fields)}")
        values[k] = _coerce(fields[k], v, runtime) if isinstance(v, str) else v
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{runtime} options: {exc}") from None
