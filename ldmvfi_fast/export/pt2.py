"""Export the three sub-models with ``torch.export`` to ``.pt2`` files plus a manifest.

``export_pt2(model, out_dir)`` writes ``encoder.pt2``, ``unet_step.pt2``, ``decoder.pt2`` and
``manifest.json`` (see :mod:`.manifest`); :class:`~ldmvfi_fast.runtime.exported.ExportedBackbone`
loads them back and runs the whole pipeline from them. The graphs take dynamic batch, height
and width (multiples of the pad unit, from 2 units up: see :data:`.specs.MIN_UNITS`).

Custom ops are traced as whatever backend the op dispatcher picks inside the export (the
compiled ``ldmvfi_fast::*`` ops when the extension is built, else their PyTorch reference);
``backend=`` forces one for the whole export and the manifest records what was asked for and
which ``ldmvfi_fast`` ops the graphs call (a runtime then loads the extension first).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from .. import formats
from .._atomic import staged_folder
from ..engine_io import save_program
from ..models.ldmvfi import LDMVFI
from ..ops import current_backend, use_backend
from ..manifest import MANIFEST_NAME, check_engine_target, describe_tensor, manifest_header, write_manifest
from .specs import MAX_BATCH, MIN_UNITS, export_program, export_specs

log = logging.getLogger(__name__)

__all__ = ["export_pt2", "check_export_target", "PT2_FILES"]

#: the registry's entry of this exporter (:mod:`ldmvfi_fast.formats`): the runtime it writes, its files
FORMAT = formats.for_module(__name__)
FORMAT_RUNTIME = FORMAT.runtime
PT2_FILES = FORMAT.files()


def check_export_target(out: Path, overwrite: bool) -> None:
    """Raise :class:`EngineError` unless ``out`` can receive an export (new, empty, or ``overwrite``)."""
    check_engine_target(out, overwrite, PT2_FILES.values())


def export_pt2(model: LDMVFI, out_dir: str | Path, *, overwrite: bool = False, height: int = 512,
               width: int = 768, max_units: int = 16, backend: str | None = None) -> Path:
    """Export ``model``'s encoder, U-Net step and decoder as ``.pt2`` programs into ``out_dir``.

    Args:
        model: a loaded :class:`LDMVFI` (its device and dtype are the programs').
        out_dir: a new or empty folder (with ``overwrite``, an existing one: only the engine
            files are replaced, nothing else in it is touched).
        height, width: example frame size (multiples of the pad unit, >= 2 units).
        max_units: largest side, in pad units, the graphs accept.
        backend: op backend for the whole export (default: the dispatcher's choice).

    Returns:
        the folder. Files are written to a temporary folder beside it and moved in only when
        all are complete: an error leaves the target as it was.
    """
    out = Path(out_dir)
    check_export_target(out, overwrite)
    with staged_folder(out, names=[*PT2_FILES.values(), MANIFEST_NAME], last=[MANIFEST_NAME]) as tmp:
        graphs, ops_used, seconds = {}, set(), {}
        with use_backend(backend):
            asked = current_backend() or "auto"
            for spec in export_specs(model, height, width, max_units=max_units):
                t0 = time.perf_counter()
                ep = export_program(spec)  # size-oblivious: one program for 1..max_units pad units
                save_program(ep, tmp / PT2_FILES[spec.name])  # a full disk: OSError (one line), not an abort
                ops_used |= {str(n.target).split(".")[1] for n in ep.graph.nodes
                             if n.op == "call_function" and str(n.target).startswith("ldmvfi_fast.")}
                with torch.no_grad():
                    outs = spec.module(*spec.inputs)
                outs = outs if isinstance(outs, (tuple, list)) else (outs,)
                graphs[spec.name] = {
                    "file": PT2_FILES[spec.name],
                    "inputs": [describe_tensor(n, t, (spec.axes or {}).get(n)) for n, t in
                               zip(spec.input_names, spec.inputs)],
                    "outputs": [describe_tensor(n, t, None) for n, t in zip(spec.output_names, outs)],
                }
                seconds[spec.name] = {"export": round(time.perf_counter() - t0, 2)}
                log.info("exported %s in %.1f s", spec.name, seconds[spec.name]["export"])
        manifest = {**manifest_header(model, FORMAT_RUNTIME, min_units=MIN_UNITS, max_units=max_units,
                                      max_batch=MAX_BATCH),
                    "op_backend": asked, "custom_ops": sorted(ops_used), "graphs": graphs,
                    "build_seconds": seconds}
        write_manifest(tmp, manifest)
    log.info("wrote %s", out)
    return out
