"""Sub-models exported with ``torch.export`` (``.pt2`` + ``manifest.json``) as a :class:`~.base.Backbone`.

Made by :func:`ldmvfi_fast.export.pt2.export_pt2` (``ldmvfi-fast export``); loaded with
``torch.export.load``. Everything the pipeline needs (pad unit, schedule, prediction type,
accepted sizes) comes from the manifest; no model code or checkpoint is needed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from ..errors import EngineError, InputError
from ..export.manifest import read_manifest

log = logging.getLogger(__name__)

__all__ = ["ExportedBackbone"]


class ExportedBackbone:
    """Runs ``encoder.pt2``, ``unet_step.pt2`` and ``decoder.pt2`` from one folder.

    Use :meth:`from_dir`. The programs run on the device and dtype they were exported with
    (recorded in the manifest); ``device=`` moves them (``ExportedProgram.module().to``).
    """

    name = "exported"

    def __init__(self, folder: str | Path, manifest: dict, programs: dict, device: torch.device):
        self.folder, self.manifest = Path(folder), manifest
        self.programs = programs  # name -> torch.export.ExportedProgram
        self._mods = {k: p.module() for k, p in programs.items()}
        if device.type != manifest.get("device", "cpu"):
            for m in self._mods.values():
                m.to(device)
        self.device = device
        self.dtype = getattr(torch, manifest["dtype"])
        self.pad_unit = manifest["pad_unit"]
        self.latent_factor = manifest["latent_factor"]
        self.latent_channels = manifest["latent_channels"]
        self.prediction = manifest["prediction"]
        self.alphas_cumprod = torch.tensor(manifest["alphas_cumprod"], dtype=torch.float32, device=device)
        self.weights_hash = manifest["weights_hash"]
        self.levels = sum(1 for i in manifest["graphs"]["encoder"]["outputs"] if i["name"].startswith("phi"))

    @classmethod
    def from_dir(cls, folder: str | Path, *, device: str | torch.device | None = None,
                 expect_weights_hash: str | None = None) -> "ExportedBackbone":
        """Load an engine folder; ``expect_weights_hash`` (see :func:`~ldmvfi_fast.export.manifest.weights_hash`)
        refuses engines made from other weights."""
        m = read_manifest(folder)
        if m["runtime"] != "exported":
            raise EngineError(f"{folder} holds {m['runtime']!r} engines, not torch.export programs")
        if expect_weights_hash is not None and expect_weights_hash != m["weights_hash"]:
            raise EngineError(f"the engines in {folder} were made from other weights than this checkpoint "
                              f"({m['weights_hash'][:19]}... vs {expect_weights_hash[:19]}...): export them again")
        if m.get("custom_ops"):  # the compiled ops must be registered before the programs load
            from ..ops import _native

            if _native.LOAD_ERROR is not None:
                raise EngineError(f"the engines in {folder} call the compiled ops {m['custom_ops']}, but the "
                                  f"extension ldmvfi_fast._C is not available here ({_native.LOAD_ERROR}); "
                                  "export again with backend='reference'")
        paths = {name: Path(folder) / g["file"] for name, g in m["graphs"].items()}
        for path in paths.values():  # all present before the slow loading starts
            if not path.is_file():
                raise EngineError(f"engine file missing: {path} (named in the manifest)")
        progs = {}
        for name, path in paths.items():
            try:
                progs[name] = torch.export.load(str(path))
            except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
                raise EngineError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
        dev = torch.device(device) if device is not None else torch.device(m.get("device", "cpu"))
        log.info("loaded exported engines from %s (%s, %s)", folder, m["dtype"], dev)
        return cls(folder, m, progs, dev)

    def check_size(self, height: int, width: int, batch: int) -> None:
        s = self.manifest["sizes"]
        ok = (s["min_height"] <= height <= s["max_height"] and s["min_width"] <= width <= s["max_width"]
              and height % s["multiple"] == 0 and width % s["multiple"] == 0 and 1 <= batch <= s["max_batch"])
        if not ok:
            raise InputError(f"padded frames {height}x{width} (batch {batch}) are outside what the exported engines "
                             f"accept: heights {s['min_height']}..{s['max_height']}, widths "
                             f"{s['min_width']}..{s['max_width']}, multiples of {s['multiple']}, batch <= "
                             f"{s['max_batch']}; use the torch runtime for this size")

    def encode(self, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        z, *phi = self._mods["encoder"](frames)
        return z, list(phi)

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        return self._mods["unet_step"](x_t, t, cond)

    def decode(self, z: Tensor, phi0: list[Tensor], phi1: list[Tensor], frame0: Tensor, frame1: Tensor) -> Tensor:
        return self._mods["decoder"](z, *phi0, *phi1, frame0, frame1)

    def __repr__(self) -> str:
        return f"ExportedBackbone({str(self.folder)!r}, {self.device}, {self.dtype})"
