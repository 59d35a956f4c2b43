"""Sub-models exported with ``torch.export`` (``.pt2`` + ``manifest.json``) as a :class:`~.base.Backbone`.

Made by :func:`ldmvfi_fast.export.pt2.export_pt2` (``ldmvfi-fast export``); loaded with
:func:`ldmvfi_fast.engine_io.load_program` (``torch.export.load`` made 2-2.5x faster, a damaged
file one line). Everything the pipeline needs (pad unit, schedule, prediction type, accepted
sizes) comes from the manifest; no model code or checkpoint is needed.

Where the time goes (tiny checkpoint, 2 cores): loading is the whole difference from the torch
runtime (plain ``torch.export.load`` of the three programs: 24 s wall, 16 CPU-s; ``load_program``:
10.5 s, 7 CPU-s; ``.module()``: ~2 s); the calls cost what the eager model's do (the unlifted
graphs run as generated Python code: no re-trace, no recompile, no per-call guard beyond the
input-shape check).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..engine_io import check_archive, load_program
from ._engine import EngineBackbone

log = logging.getLogger(__name__)

__all__ = ["ExportedBackbone"]


class ExportedBackbone(EngineBackbone):
    """Runs ``encoder.pt2``, ``unet_step.pt2`` and ``decoder.pt2`` from one folder.

    Use :meth:`from_dir`. The programs run on the device and dtype they were exported with
    (recorded in the manifest); ``device=`` moves them.
    """


    def __init__(self, folder: str | Path, manifest: dict, programs: dict, device: torch.device):
        self._init_facts(folder, manifest, device)
        self.programs = programs  # name -> torch.export.ExportedProgram
        self._mods = {k: p.module() for k, p in programs.items()}
        if device.type != manifest.get("device", "cpu"):
            for m in self._mods.values():
                m.to(device)

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device | None = None,
                 expect_weights_hash: str | None = None) -> "ExportedBackbone":
        """Load an engine folder; ``expect_weights_hash`` (see :func:`~ldmvfi_fast.manifest.weights_hash`)
        refuses engines made from other weights."""
        m, paths = cls.open_folder(folder, expect_weights_hash)
        progs = cls.load_programs(m, folder, paths)
        dev = torch.device(device) if device is not None else torch.device(m.get("device", "cpu"))
        log.info("loaded exported engines from %s (%s, %s)", folder, m["dtype"], dev)
        return cls(folder, m, progs, dev)

    @classmethod
    def load_programs(cls, manifest: dict, folder: str | Path, paths: dict[str, Path]) -> dict:
        """``{graph: ExportedProgram}`` of a checked folder (see :meth:`open_folder`)."""
        cls.require_compiled_ops(manifest, folder, "export again with backend='reference'")
        for path in paths.values():  # every archive whole (a truncated file is one line) before the slow loads
            check_archive(path)
        return {name: load_program(path, check=False) for name, path in paths.items()}

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        z, *phi = self._mods["encoder"](frames)
        return z, list(phi)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self._mods["unet_step"](x_t, t, cond)

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor) -> Tensor:
        return self._mods["decoder"](z, *phi0, *phi1, frame0, frame1)
