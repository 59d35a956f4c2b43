"""``manifest.json``: the one description of a folder of exported sub-models.

A runtime (Python or C++) reads only this file to know the graphs' names, dtypes and
dynamic axes, the pad unit, the training schedule and prediction type, the sizes the
graphs accept and which weights made them; no rule is written twice.

The format is versioned (:data:`FORMAT`, :data:`FORMAT_VERSION`) and validated on load by
:func:`validate_manifest`: a manifest of a newer format, of another kind, or missing a
field is refused with :class:`~ldmvfi_fast.errors.EngineError`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import write_text_atomic
from ..errors import EngineError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "weights_hash", "validate_manifest", "read_manifest",
           "write_manifest", "describe_tensor", "check_engine_target", "precision_fields"]

FORMAT = "ldmvfi_fast.engines"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# field -> type(s) that every manifest of this format version has
_REQUIRED: dict[str, Any] = {
    "format": str, "format_version": int, "toolkit_version": str, "runtime": str, "config": dict,
    "pad_unit": int, "latent_factor": int, "latent_channels": int, "prediction": str,
    "alphas_cumprod": list, "weights_hash": str, "dtype": str, "op_backend": str, "graphs": dict,
    "sizes": dict,
}
_GRAPH_FIELDS = {"file": str, "inputs": list, "outputs": list}
_SIZE_FIELDS = {"min_height": int, "min_width": int, "max_height": int, "max_width": int, "multiple": int,
                "max_batch": int}
GRAPHS = ("encoder", "unet_step", "decoder")


def weights_hash(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, shapes, dtypes, values, in name order).

    Identifies the weights an engine was made from, whatever the file they came from.
    """
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def precision_fields(dtype: torch.dtype) -> dict:
    """The manifest's precision record for graphs computing in ``dtype``: ``dtype`` (the compute
    precision), ``io_dtype`` (what the graphs take and return: float32 under half, precision
    island ``io``) and ``precision_policy`` (:func:`ldmvfi_fast.precision.describe`)."""
    from .. import precision

    name = lambda d: str(d).replace("torch.", "")  # noqa: E731
    return {"dtype": name(dtype), "io_dtype": name(precision.compute_dtype("io", dtype)),
            "precision_policy": precision.describe()}


def describe_tensor(name: str, t: torch.Tensor, axes: dict[int, str] | None) -> dict:
    """``{"name", "dtype", "shape"}`` with the dynamic axes named (``batch``, ``H/32``...)."""
    shape = [axes.get(i, int(n)) if axes else int(n) for i, n in enumerate(t.shape)]
    return {"name": name, "dtype": str(t.dtype).replace("torch.", ""), "shape": shape}


def validate_manifest(m: Any, where: str = MANIFEST_NAME) -> dict:
    """Check a parsed manifest against the schema of its format version; return it."""
    if not isinstance(m, dict):
        raise EngineError(f"{where}: not a JSON object")
    if m.get("format") != FORMAT:
        raise EngineError(f"{where}: format {m.get('format')!r} is not {FORMAT!r} (not an ldmvfi_fast engine folder)")
    v = m.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise EngineError(f"{where}: format_version must be an integer, got {v!r}")
    if v > FORMAT_VERSION:
        raise EngineError(f"{where}: format version {v} is newer than this ldmvfi_fast reads ({FORMAT_VERSION}); "
                          "upgrade ldmvfi_fast or export the engines again with this version")
    if v < 1:
        raise EngineError(f"{where}: format version {v} is not valid")
    problems = []
    for key, typ in _REQUIRED.items():
        if key not in m:
            problems.append(f"missing {key!r}")
        elif not isinstance(m[key], typ) or isinstance(m[key], bool):
            problems.append(f"{key!r} must be {typ.__name__}, got {type(m[key]).__name__}")
    if not problems:
        for g in GRAPHS:
            spec = m["graphs"].get(g)
            if not isinstance(spec, dict):
                problems.append(f"graphs.{g} missing")
                continue
            problems += [f"graphs.{g}.{k} must be {t.__name__}" for k, t in _GRAPH_FIELDS.items()
                         if not isinstance(spec.get(k), t)]
        problems += [f"sizes.{k} must be {t.__name__}" for k, t in _SIZE_FIELDS.items()
                     if not isinstance(m["sizes"].get(k), t)]
        if m["prediction"] not in ("eps", "v", "x0"):
            problems.append(f"prediction {m['prediction']!r} is not eps, v or x0")
        if not all(isinstance(a, (int, float)) for a in m["alphas_cumprod"]) or not m["alphas_cumprod"]:
            problems.append("alphas_cumprod must be a non-empty list of numbers")
    if problems:
        raise EngineError(f"{where} is not a valid manifest (format version {v}): " + "; ".join(problems))
    return m


def read_manifest(folder: str | Path) -> dict:
    """Read and validate ``folder/manifest.json``."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise EngineError(f"engine folder not found: {folder}")
    if not path.is_file():
        raise EngineError(f"{folder} has no {MANIFEST_NAME}: not an exported engine folder "
                          "(make one with `ldmvfi-fast export`)")
    try:
        m = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{path} cannot be read: {exc}") from None
    return validate_manifest(m, str(path))


def check_engine_target(out: Path, overwrite: bool, files) -> None:
    """Raise :class:`EngineError` unless the folder ``out`` can receive engine ``files`` (names):
    new, empty, or with ``overwrite`` (then only those files and the manifest are replaced)."""
    if out.exists() and not out.is_dir():
        raise EngineError(f"output {out} exists and is not a folder")
    if not out.parent.is_dir():
        raise EngineError(f"the folder {out.parent} of the output does not exist")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise EngineError(f"output folder {out} is not empty; pass --overwrite (overwrite=True) to replace the "
                          f"engine files in it ({', '.join(sorted(files))}, {MANIFEST_NAME}; nothing else is touched)")
    if not os.access(out if out.is_dir() else out.parent, os.W_OK):
        raise EngineError(f"cannot write to {out if out.is_dir() else out.parent}")


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Validate and write ``folder/manifest.json`` atomically."""
    validate_manifest(manifest, "manifest being written")
    return write_text_atomic(Path(folder) / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
