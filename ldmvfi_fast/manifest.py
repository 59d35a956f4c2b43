"""``manifest.json``: the one description of a folder of exported sub-models.

A runtime (Python or C++) reads only this file to know the graphs' names, dtypes and
dynamic axes, the pad unit, the training schedule and prediction type, the sizes the
graphs accept and which weights made them; no rule is written twice.

The format is versioned (:data:`FORMAT`, :data:`FORMAT_VERSION`) and validated on load by
:func:`validate_manifest`: a manifest of a newer format, of another kind, or missing a
field is refused with :class:`~ldmvfi_fast.errors.EngineError`.

One contract, one place: :func:`manifest_header` writes the fields every engine folder shares
(the exporters add their graphs and sections), :func:`write_manifest` seals the whole manifest
with ``contract_hash`` (sha256 over every other field: what the pipeline reads, prediction
type, schedule and pad unit included), :func:`read_manifest` checks the seal, and
:func:`engine_facts` is the one reader of the facts a runtime needs. A hand-edited manifest is
refused: its engines would run with facts they were not made with. This module imports neither
:mod:`ldmvfi_fast.export` nor :mod:`ldmvfi_fast.runtime`; both import it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import dtypes
from ._atomic import write_text_atomic
from .errors import EngineError

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "GRAPHS", "weights_hash", "contract_hash", "validate_manifest",
           "read_manifest", "write_manifest", "describe_tensor", "check_engine_target", "precision_fields",
           "manifest_header", "EngineFacts", "engine_facts", "open_engine_folder", "require_compiled_ops"]

FORMAT = "ldmvfi_fast.engines"
#: 2: ``contract_hash`` seals the manifest (version 1 folders carry no seal: export them again)
FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"

# field -> type(s) that every manifest of this format version has
_REQUIRED: dict[str, Any] = {
    "format": str, "format_version": int, "toolkit_version": str, "runtime": str, "config": dict,
    "pad_unit": int, "latent_factor": int, "latent_channels": int, "prediction": str,
    "alphas_cumprod": list, "weights_hash": str, "dtype": str, "op_backend": str, "graphs": dict,
    "sizes": dict, "contract_hash": str,
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
    from . import precision

    name = lambda d: str(d).replace("torch.", "")  # noqa: E731
    return {"dtype": name(dtype), "io_dtype": name(precision.compute_dtype("io", dtype)),
            "precision_policy": precision.describe()}


def describe_tensor(name: str, t: torch.Tensor, axes: dict[int, str] | None) -> dict:
    """``{"name", "dtype", "shape"}`` with the dynamic axes named (``batch``, ``H/32``...)."""
    shape = [axes.get(i, int(n)) if axes else int(n) for i, n in enumerate(t.shape)]
    return {"name": name, "dtype": dtypes.name(t.dtype), "shape": shape}


def validate_manifest(m: Any, where: str = MANIFEST_NAME, *, seal: bool = True) -> dict:
    """Check a parsed manifest against the schema of its format version and (``seal``) its
    ``contract_hash``; return it."""
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
    if v < FORMAT_VERSION:
        raise EngineError(f"{where}: format version {v} was written by an older ldmvfi_fast and carries no "
                          "integrity hash: export the engines again with this version")
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
    if seal and m["contract_hash"] != contract_hash(m):
        raise EngineError(f"{where} does not match its integrity hash (contract_hash): it was edited or damaged "
                          "after the export, and its engines would run with facts they were not made with; "
                          "export the engines again (with other options, if that was the point of the edit)")
    return m


def contract_hash(m: dict) -> str:
    """sha256 over every field of manifest ``m`` but ``contract_hash`` (canonical JSON: sorted keys)."""
    body = {k: v for k, v in m.items() if k != "contract_hash"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"a manifest must be plain JSON (no NaN or infinity): {exc}") from None
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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
    """Seal (``contract_hash``), validate and write ``folder/manifest.json`` atomically. The
    format fields are this version's: a manifest derived from another one (TensorRT's from the
    ONNX folder's, AOTInductor's from the programs') is sealed afresh."""
    m = {**manifest, "format": FORMAT, "format_version": FORMAT_VERSION}
    m["contract_hash"] = contract_hash(m)
    validate_manifest(m, "manifest being written")
    return write_text_atomic(Path(folder) / MANIFEST_NAME, json.dumps(m, indent=1) + "\n")


def manifest_header(model, runtime: str, *, min_units: int, max_units: int, max_batch: int,
                    device: str | None = None) -> dict:
    """The fields every engine folder of ``model`` shares (the exporters add ``graphs``,
    ``op_backend``, ``custom_ops`` and their own sections): format, runtime, config, the
    backbone facts (pad unit, latent geometry, prediction type, the training schedule, a
    distilled student's record), the weights' hash, the precision record and the accepted sizes
    (``min_units``..``max_units`` pad units, batches up to ``max_batch``)."""
    from . import __version__

    p = next(model.parameters())
    unit = model.cfg.min_pad_unit()
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": __version__,
        "runtime": runtime, "config": model.cfg.to_dict(), "pad_unit": unit,
        "latent_factor": model.latent_factor, "latent_channels": model.cfg.diffusion.channels,
        "prediction": model.prediction, "distillation": getattr(model, "distillation", None),
        "alphas_cumprod": [float(a) for a in model.alphas_cumprod.float().cpu()],
        "weights_hash": weights_hash(model), "unet_weights": getattr(model, "unet_weights", "ema"),
        **precision_fields(p.dtype), "device": device or p.device.type,
        "sizes": {"min_height": min_units * unit, "min_width": min_units * unit, "max_height": max_units * unit,
                  "max_width": max_units * unit, "multiple": unit, "max_batch": max_batch},
    }


@dataclass(frozen=True)
class EngineFacts:
    """What a runtime reads from a manifest to serve the pipeline (the one reader: :func:`engine_facts`)."""
    runtime: str
    device: str
    dtype: str
    io_dtype: str
    pad_unit: int
    latent_factor: int
    latent_channels: int
    prediction: str
    alphas_cumprod: tuple
    weights_hash: str
    sizes: dict
    distillation: dict | None


def engine_facts(m: dict) -> EngineFacts:
    """The backbone facts of a validated manifest."""
    return EngineFacts(
        runtime=m["runtime"], device=m.get("device", "cpu"), dtype=m["dtype"], io_dtype=m.get("io_dtype", m["dtype"]),
        pad_unit=m["pad_unit"], latent_factor=m["latent_factor"], latent_channels=m["latent_channels"],
        prediction=m["prediction"], alphas_cumprod=tuple(m["alphas_cumprod"]), weights_hash=m["weights_hash"],
        sizes=dict(m["sizes"]), distillation=m.get("distillation"))


def open_engine_folder(folder: str | Path, runtime: str, kind: str = "engines",
                       expect_weights_hash: str | None = None) -> tuple[dict, dict[str, Path]]:
    """(manifest, {graph: path}) of an engine folder of ``runtime`` (``kind``: words for messages),
    every file present; :class:`EngineError` on anything unusable; ``expect_weights_hash``
    refuses engines made from other weights."""
    m = read_manifest(folder)
    if m["runtime"] != runtime:
        raise EngineError(f"{folder} holds {m['runtime']!r} engines, not {kind} ({runtime!r})")
    if expect_weights_hash is not None and expect_weights_hash != m["weights_hash"]:
        raise EngineError(f"the engines in {folder} were made from other weights than this checkpoint "
                          f"({m['weights_hash'][:19]}... vs {expect_weights_hash[:19]}...): export them again")
    paths = {name: Path(folder) / g["file"] for name, g in m["graphs"].items()}
    for path in paths.values():  # all present before any slow loading starts
        if not path.is_file():
            raise EngineError(f"engine file missing: {path} (named in the manifest)")
    return m, paths


def require_compiled_ops(manifest: dict, folder: str | Path, hint: str) -> None:
    """Load ``ldmvfi_fast._C`` when the engines call its ops (their schemas must be registered
    before the engines load); :class:`EngineError` with ``hint`` when it is not available."""
    if not manifest.get("custom_ops"):
        return
    from .ops import _native

    if _native.LOAD_ERROR is not None:
        raise EngineError(f"the engines in {folder} call the compiled ops {manifest['custom_ops']}, but the "
                          f"extension ldmvfi_fast._C is not available here ({_native.LOAD_ERROR}); {hint}")
